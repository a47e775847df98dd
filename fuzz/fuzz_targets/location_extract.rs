//! Every location hint of a request (`siaga_location::extract`): Geolocation,
//! Geolocation-Routing, P-Access-Network-Info, Content-Type, Content-ID and the body
//! (multipart or a bare PIDF-LO).
//!
//! Input layout: a SIP-like header section — lines up to the first empty line; lines named
//! `Geolocation`, `Geolocation-Routing`, `Geolocation-Error`, `P-Access-Network-Info`,
//! `Content-Type` (`c`) and `Content-ID` are used, any other line (a request line, Via …) is
//! ignored — then the body. Real INVITEs are therefore valid seeds. Each input is extracted
//! three times: bare, with a cell table, and with a trunk default location.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use siaga_location::{
    CellTable, Coordinate, DefaultLocation, LocationInput, Meters, extract, find_sdp,
    parse_geolocation_error, split,
};

fn cells() -> &'static CellTable {
    static CELLS: OnceLock<CellTable> = OnceLock::new();
    CELLS.get_or_init(|| {
        CellTable::parse_csv(include_str!("../../crates/location/tests/data/cells-kaltim.csv"))
            .expect("the test cell table parses")
    })
}

fn split_head(data: &[u8]) -> (&[u8], &[u8]) {
    for (i, w) in data.windows(2).enumerate() {
        if w == b"\n\n" {
            return (&data[..i], &data[i + 2..]);
        }
        if i + 4 <= data.len() && &data[i..i + 4] == b"\r\n\r\n" {
            return (&data[..i], &data[i + 4..]);
        }
    }
    (data, &[])
}

fuzz_target!(|data: &[u8]| {
    let (head, body) = split_head(data);
    let head = String::from_utf8_lossy(head);
    let mut geolocation = Vec::new();
    let mut routing = Vec::new();
    let mut pani = Vec::new();
    let mut content_type = None;
    let mut content_id = None;
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "geolocation" => geolocation.push(value),
            "geolocation-routing" => routing.push(value),
            "geolocation-error" => {
                let _ = parse_geolocation_error(value);
            }
            "p-access-network-info" => pani.push(value),
            "content-type" | "c" => content_type = Some(value),
            "content-id" => content_id = Some(value),
            _ => {}
        }
    }
    let default = DefaultLocation::circle(Coordinate::new(-0.5022, 117.1536), Meters(500.0));
    let mut input = LocationInput {
        geolocation: &geolocation,
        geolocation_routing: &routing,
        p_access_network_info: &pani,
        content_type,
        content_id,
        body,
        default_location: None,
    };
    let report = extract(&input, None);
    check(&report);
    let report = extract(&input, Some(cells()));
    check(&report);
    input.default_location = Some(&default);
    let report = extract(&input, Some(cells()));
    check(&report);
    assert!(!report.locations.is_empty(), "a default location was configured but none came out");

    let _ = find_sdp(content_type, body);
    if let Some(ct) = content_type {
        let _ = split(ct, body);
    }
});

fn check(report: &siaga_location::LocationReport) {
    if let Some(i) = report.chosen {
        assert!(i < report.locations.len(), "chosen {i} of {}", report.locations.len());
    }
    for bytes in report.pidf_bytes() {
        let _ = bytes.len();
    }
}
