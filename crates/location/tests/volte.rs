//! A realistic VoLTE emergency INVITE from Samarinda: multipart SDP + PIDF-LO circle,
//! P-Access-Network-Info from handset and P-CSCF, and a gateway cell table.

mod common;

use common::{SipMessage, find};
use siaga_location::pani::AccessFamily;
use siaga_location::{
    CellTable, Coordinate, DefaultLocation, GeolocationRouting, LocationInput, LocationReport,
    LocationSource, LocationValue, Meters, Method, ProblemKind, ProvidedBy, Shape, extract,
    find_sdp,
};

const INVITE: &[u8] = include_bytes!("data/volte-invite-samarinda.sip");
const CELLS: &str = include_str!("data/cells-kaltim.csv");

fn cells() -> CellTable {
    CellTable::parse_csv(CELLS).expect("the fixture cell table is valid")
}

fn report_for(message: &SipMessage, cells: Option<&CellTable>) -> LocationReport {
    let input = LocationInput {
        geolocation: &message.values("Geolocation"),
        geolocation_routing: &message.values("Geolocation-Routing"),
        p_access_network_info: &message.values("P-Access-Network-Info"),
        content_type: message.value("Content-Type"),
        body: &message.body,
        ..LocationInput::default()
    };
    extract(&input, cells)
}

#[test]
fn handset_position_is_chosen_and_cell_estimate_kept() {
    let message = SipMessage::parse(INVITE);
    let table = cells();
    let report = report_for(&message, Some(&table));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.routing, Some(GeolocationRouting::Yes));
    assert_eq!(report.locations.len(), 2, "{report}");
    let chosen = report.chosen_location().expect("a location is chosen");
    assert_eq!(
        chosen.value,
        LocationValue::Geodetic(siaga_location::Geodetic {
            crs: siaga_location::Crs::Wgs84TwoD,
            shape: Shape::Circle {
                center: Coordinate::new(-0.5022, 117.1536),
                radius: Meters(850.0)
            }
        })
    );
    assert_eq!(chosen.confidence_percent, Some(68.0));
    assert_eq!(chosen.method, Some(Method("GPS".to_owned())));
    assert_eq!(chosen.usage_rules.retransmission_allowed, Some(true));
    let derived = &report.locations[1];
    assert_eq!(derived.method, Some(Method::cell()));
    assert_eq!(derived.provided_by, Some(ProvidedBy::Gateway));
    assert!(matches!(
        &derived.source,
        LocationSource::DerivedFromCell { area, network_provided: true, .. } if area == "Kota Samarinda"
    ));
}

#[test]
fn pidf_is_forwarded_byte_for_byte() {
    let message = SipMessage::parse(INVITE);
    let report = report_for(&message, None);
    let forwarded: Vec<&[u8]> = report.pidf_bytes().collect();
    let start = find(&message.body, b"<?xml").expect("PIDF-LO in body");
    let end = find(&message.body, b"</presence>").expect("PIDF-LO ends") + b"</presence>".len();
    assert_eq!(forwarded, vec![&message.body[start..end]]);
    assert_eq!(report.pidf_documents[0].body_range, start..end);
}

#[test]
fn both_pani_headers_are_kept_raw_and_sdp_is_found() {
    let message = SipMessage::parse(INVITE);
    let report = report_for(&message, None);
    let raw: Vec<&str> = report.pani.iter().map(|pani| pani.raw.as_str()).collect();
    assert_eq!(raw, message.values("P-Access-Network-Info"));
    assert!(
        report
            .pani
            .iter()
            .all(|pani| pani.access_type.family() == AccessFamily::Lte)
    );
    assert_eq!(
        report
            .pani
            .iter()
            .map(|pani| pani.network_provided())
            .collect::<Vec<_>>(),
        vec![false, true]
    );
    assert_eq!(report.pani[1].local_time_zone(), Some("UTC+08:00"));
    let sdp = find_sdp(message.value("Content-Type"), &message.body).expect("SDP present");
    assert!(sdp.starts_with(b"v=0\r\n"));
    assert!(sdp.ends_with(b"a=sendrecv\r\n"));
}

#[test]
fn display_reads_like_the_cli() {
    let message = SipMessage::parse(INVITE);
    let report = report_for(&message, Some(&cells()));
    let text = report.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "2 locations (Geolocation-Routing: yes)");
    assert_eq!(
        lines[1],
        " * 1. circle centre -0.5022, 117.1536 radius 850 m (GPS, confidence 68%, \
         at 2026-11-04T08:15:02+08:00) [by value <sos-loc-1@ims.mnc010.mcc510.3gppnetwork.org>, \
         device \"handset\"]"
    );
    assert!(lines[2].starts_with(
        "   2. circle centre -0.5022, 117.1536 radius 850 m (Cell, provided-by this gateway)"
    ));
    assert!(
        text.contains("access network 3GPP-E-UTRAN-FDD cell 5101F0001A2B3C4D5, network-provided")
    );
}

#[test]
fn json_for_the_call_log() {
    let message = SipMessage::parse(INVITE);
    let report = report_for(&message, Some(&cells()));
    let json = serde_json::to_value(&report).expect("the report serialises");
    assert_eq!(json["chosen"], 0);
    assert_eq!(json["routing"], "yes");
    let first = &json["locations"][0];
    assert_eq!(first["source"]["kind"], "by_value");
    assert_eq!(
        first["source"]["content_id"],
        "sos-loc-1@ims.mnc010.mcc510.3gppnetwork.org"
    );
    assert_eq!(first["value"]["type"], "geodetic");
    assert_eq!(first["value"]["shape"], "circle");
    assert_eq!(first["value"]["crs"], "EPSG:4326");
    assert_eq!(first["value"]["center"]["lat"], -0.5022);
    assert_eq!(first["value"]["radius"], 850.0);
    assert_eq!(json["locations"][1]["source"]["kind"], "derived_from_cell");
    assert_eq!(json["locations"][1]["provided_by"]["by"], "gateway");
    let pidf_text = json["pidf_documents"][0]["bytes"]
        .as_str()
        .expect("PIDF-LO as text");
    assert!(pidf_text.starts_with("<?xml") && pidf_text.ends_with("</presence>"));
}

#[test]
fn cell_only_call_gets_a_derived_location() {
    let pani = ["3GPP-E-UTRAN-FDD;utran-cell-id-3gpp=5101f00027100abcd;network-provided"];
    let table = cells();
    let report = extract(
        &LocationInput {
            p_access_network_info: &pani,
            ..LocationInput::default()
        },
        Some(&table),
    );
    let chosen = report.chosen_location().expect("cell gives a location");
    assert!(matches!(
        &chosen.source,
        LocationSource::DerivedFromCell { area, .. } if area == "Kota Bontang"
    ));
}

#[test]
fn unknown_cell_is_reported_and_the_default_steps_in() {
    let pani = ["3GPP-E-UTRAN-FDD;utran-cell-id-3gpp=5101F00099999999;network-provided"];
    let default = DefaultLocation::circle(Coordinate::new(-0.4948, 117.1436), Meters(5000.0));
    let table = cells();
    let report = extract(
        &LocationInput {
            p_access_network_info: &pani,
            default_location: Some(&default),
            ..LocationInput::default()
        },
        Some(&table),
    );
    assert_eq!(
        report.problems.iter().map(|p| p.kind).collect::<Vec<_>>(),
        vec![ProblemKind::UnknownCell]
    );
    let chosen = report.chosen_location().expect("default applies");
    assert_eq!(chosen.source, LocationSource::Default);
    assert_eq!(chosen.method, Some(Method::default_location()));
    assert_eq!(chosen.provided_by, Some(ProvidedBy::Gateway));
}

#[test]
fn default_is_not_used_when_the_caller_sent_a_location() {
    let message = SipMessage::parse(INVITE);
    let default = DefaultLocation::point(Coordinate::new(0.0, 0.0));
    let geolocation = message.values("Geolocation");
    let input = LocationInput {
        geolocation: &geolocation,
        content_type: message.value("Content-Type"),
        body: &message.body,
        default_location: Some(&default),
        ..LocationInput::default()
    };
    let report = extract(&input, None);
    assert!(
        report
            .locations
            .iter()
            .all(|l| l.source != LocationSource::Default)
    );
}
