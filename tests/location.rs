//! Caller identity and location through the real gateway: SIPp sends VoLTE-style INVITEs,
//! `siaga calls show` shows who and where.

mod common;

use common::{Gateway, assert_sipp_ok};

const CELLS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/cells-samarinda.csv"
);

#[test]
fn a_pidf_lo_circle_and_the_asserted_number_are_shown_for_the_call() {
    let mut gw = Gateway::start(&["--cell-table", CELLS]);
    let out = gw.sipp(
        "uac_pidf.xml",
        false,
        &["-s", "urn:service:sos", "-m", "1", "-d", "200"],
    );
    assert_sipp_ok(&out, "INVITE with SDP + PIDF-LO");
    gw.stop();
    let shown = gw.calls_cli(&["show", "1"]);
    assert!(
        shown.contains("tel:+6281234567890"),
        "asserted number: {shown}"
    );
    assert!(shown.contains("privacy     id"), "privacy flagged: {shown}");
    assert!(
        shown.contains("-0.5022") && shown.contains("117.1536"),
        "circle centre: {shown}"
    );
    assert!(shown.contains("850"), "radius: {shown}");
    // The by-value document is kept byte for byte for forwarding.
    let json = gw.calls_cli(&["show", "1", "--json"]);
    assert!(
        json.contains("gs:Circle") || json.contains("Circle"),
        "{json}"
    );
}

#[test]
fn a_cell_id_in_the_table_gives_a_derived_area() {
    let mut gw = Gateway::start(&["--cell-table", CELLS]);
    let out = gw.sipp(
        "uac_pani.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "200"],
    );
    assert_sipp_ok(&out, "INVITE with only a PANI cell id");
    gw.stop();
    let shown = gw.calls_cli(&["show", "1"]);
    assert!(shown.contains("Kota Balikpapan"), "derived area: {shown}");
    assert!(
        shown.to_lowercase().contains("cell"),
        "marked as derived from the cell: {shown}"
    );
}
