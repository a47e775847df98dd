//! Broken input gives problems with reasons — never a panic, never a failed call.

mod common;

use common::SipMessage;
use siaga_location::{
    DefaultLocation, GeolocationRouting, LocationInput, LocationReport, LocationSource, Meters,
    ProblemKind, extract, find_sdp, parse_pidf,
};

const INVITE: &[u8] = include_bytes!("data/volte-invite-samarinda.sip");
const CONTENT_TYPE: &str = "multipart/mixed;boundary=\"++Boundary_VoLTE_7a3c\"";

fn kinds(report: &LocationReport) -> Vec<ProblemKind> {
    report.problems.iter().map(|problem| problem.kind).collect()
}

fn extract_body(geolocation: &[&str], content_type: &str, body: &[u8]) -> LocationReport {
    extract(
        &LocationInput {
            geolocation,
            content_type: Some(content_type),
            body,
            ..LocationInput::default()
        },
        None,
    )
}

fn volte_body() -> Vec<u8> {
    SipMessage::parse(INVITE).body
}

const CID: &str = "<cid:sos-loc-1@ims.mnc010.mcc510.3gppnetwork.org>";

#[test]
fn malformed_xml_in_the_body_is_a_problem_and_the_sdp_survives() {
    let body = volte_body();
    let broken = String::from_utf8(body)
        .expect("fixture is UTF-8")
        .replace("</gs:Circle>", "</gs:Circel>");
    let report = extract_body(&[CID], CONTENT_TYPE, broken.as_bytes());
    assert!(report.locations.is_empty());
    assert_eq!(kinds(&report), vec![ProblemKind::MalformedXml]);
    assert!(report.problems[0].detail.starts_with("part <sos-loc-1@"));
    // The PIDF-LO bytes are still kept for the agency, whatever we made of them.
    assert_eq!(report.pidf_documents.len(), 1);
    assert!(find_sdp(Some(CONTENT_TYPE), broken.as_bytes()).is_some());
}

#[test]
fn malformed_fixture_and_default_location() {
    let default =
        DefaultLocation::circle(siaga_location::Coordinate::new(-0.5, 117.1), Meters(3000.0));
    let report = extract(
        &LocationInput {
            content_type: Some("application/pidf+xml"),
            body: include_bytes!("data/malformed-unclosed.xml"),
            default_location: Some(&default),
            ..LocationInput::default()
        },
        None,
    );
    assert_eq!(kinds(&report), vec![ProblemKind::MalformedXml]);
    assert!(report.problems[0].detail.contains("not well-formed XML"));
    assert_eq!(
        report.chosen_location().map(|location| &location.source),
        Some(&LocationSource::Default)
    );
}

#[test]
fn wrong_content_id_is_reported_and_the_unreferenced_pidf_still_read() {
    let report = extract_body(&["<cid:nope@example.com>"], CONTENT_TYPE, &volte_body());
    assert_eq!(kinds(&report), vec![ProblemKind::CidNotFound]);
    assert!(
        report.problems[0]
            .detail
            .contains("only <sos-loc-1@ims.mnc010.mcc510.3gppnetwork.org>"),
        "{}",
        report.problems[0].detail
    );
    let location = report
        .chosen_location()
        .expect("the body's PIDF-LO is still used");
    assert!(matches!(
        location.source,
        LocationSource::ByValue {
            referenced: false,
            ..
        }
    ));
}

#[test]
fn cid_pointing_at_the_sdp_is_the_wrong_content_type() {
    let body =
        b"--b\r\nContent-Type: application/sdp\r\nContent-ID: <sdp@x>\r\n\r\nv=0\r\n--b--\r\n";
    let report = extract_body(&["<cid:sdp@x>"], "multipart/mixed; boundary=b", body);
    assert_eq!(kinds(&report), vec![ProblemKind::WrongContentType]);
    assert!(report.problems[0].detail.contains("not read"));
    assert!(report.locations.is_empty());
}

#[test]
fn truncated_inside_the_pidf() {
    let body = volte_body();
    let cut = &body[..body.len() - 120];
    let report = extract_body(&[CID], CONTENT_TYPE, cut);
    assert_eq!(
        kinds(&report),
        vec![ProblemKind::TruncatedMultipart, ProblemKind::MalformedXml]
    );
    assert!(report.pidf_documents[0].truncated);
    assert!(find_sdp(Some(CONTENT_TYPE), cut).is_some_and(|sdp| sdp.starts_with(b"v=0")));
}

#[test]
fn truncated_after_the_pidf_still_gives_the_location() {
    let body = volte_body();
    let cut_at = body.len() - "--++Boundary_VoLTE_7a3c--\r\n".len();
    let report = extract_body(&[CID], CONTENT_TYPE, &body[..cut_at]);
    assert_eq!(kinds(&report), vec![ProblemKind::TruncatedMultipart]);
    assert!(report.chosen_location().is_some());
}

#[test]
fn multipart_without_boundary_is_malformed() {
    let report = extract_body(&[CID], "multipart/mixed", &volte_body());
    assert_eq!(
        kinds(&report),
        vec![ProblemKind::MalformedMultipart, ProblemKind::CidNotFound]
    );
}

#[test]
fn huge_body_is_refused_early() {
    let mut body = volte_body();
    body.resize(300 * 1024, b' ');
    let report = extract_body(&[CID], CONTENT_TYPE, &body);
    assert_eq!(
        kinds(&report),
        vec![ProblemKind::HugeBody, ProblemKind::CidNotFound]
    );
}

#[test]
fn huge_pidf_part_is_refused_but_kept_for_forwarding() {
    let padding = " ".repeat(70 * 1024);
    let body = format!(
        "--b\r\nContent-Type: application/pidf+xml\r\nContent-ID: <big@x>\r\n\r\n<presence>{padding}</presence>\r\n--b--\r\n"
    );
    let report = extract_body(
        &["<cid:big@x>"],
        "multipart/mixed; boundary=b",
        body.as_bytes(),
    );
    assert_eq!(kinds(&report), vec![ProblemKind::HugeBody]);
    assert_eq!(report.pidf_documents.len(), 1);
}

#[test]
fn entity_expansion_and_external_entities_are_refused() {
    let document = parse_pidf(
        include_bytes!("data/billion-laughs.xml"),
        LocationSource::Default,
    );
    assert!(document.locations.is_empty());
    assert_eq!(document.problems.len(), 1);
    assert_eq!(document.problems[0].kind, ProblemKind::MalformedXml);
}

#[test]
fn non_utf8_pidf_is_reported() {
    let document = parse_pidf(b"<presence entity=\"\xff\"/>", LocationSource::Default);
    assert_eq!(document.problems[0].kind, ProblemKind::NotUtf8);
}

#[test]
fn bad_header_values_are_reported_one_by_one() {
    let geolocation = ["<cid:a@x>, <broken", "no-scheme-here"];
    let routing = ["yes", "no"];
    let pani = ["; utran-cell-id-3gpp=1"];
    let report = extract(
        &LocationInput {
            geolocation: &geolocation,
            geolocation_routing: &routing,
            p_access_network_info: &pani,
            ..LocationInput::default()
        },
        None,
    );
    assert_eq!(
        kinds(&report),
        vec![
            ProblemKind::BadUri,
            ProblemKind::BadUri,
            ProblemKind::BadRoutingValue,
            ProblemKind::MalformedPani,
            ProblemKind::CidNotFound,
        ]
    );
    assert_eq!(report.routing, Some(GeolocationRouting::No));
}

#[test]
fn too_many_geolocation_values_are_capped() {
    let many = vec!["<https://lis.example/loc>"; 40];
    let report = extract(
        &LocationInput {
            geolocation: &many,
            ..LocationInput::default()
        },
        None,
    );
    assert_eq!(
        report.references.len(),
        siaga_location::report::MAX_HEADER_VALUES
    );
    assert_eq!(kinds(&report), vec![ProblemKind::TooManyValues]);
}
