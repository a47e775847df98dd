//! PIDF-LO documents (RFC 4119 / 5491 / 5139) on arbitrary bytes, then the RFC 5491 choice
//! between the locations found.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siaga_location::{LocationSource, PidfBuilder, choose, parse_pidf};

fuzz_target!(|data: &[u8]| {
    let doc = parse_pidf(
        data,
        LocationSource::ByValue {
            content_id: None,
            document: 0,
            referenced: true,
        },
    );
    if let Some(i) = choose(&doc.locations) {
        assert!(i < doc.locations.len(), "choose gave index {i} of {}", doc.locations.len());
    }
    for problem in &doc.problems {
        let _ = problem.kind.to_string();
    }
    // What the gateway forwards to the agency: a PIDF-LO rebuilt from a location it holds.
    let entity = doc.entity.as_deref().unwrap_or("pres:caller@example.invalid");
    for location in doc.locations.iter().take(4) {
        let xml = PidfBuilder::from_location(entity, location, "Siaga 112").render();
        let _ = parse_pidf(xml.as_bytes(), LocationSource::Default);
    }
});
