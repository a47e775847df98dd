//! Call classes through the whole gateway (issue 12 items 2 and 6): SIPp callers — silent, a
//! quick hang-up, one speaking to a SIPp agency (the pcap's speech as real RTP; raw sockets:
//! root or CAP_NET_RAW, as in tests/media.rs), an RFC 6881 test call, three quick calls from
//! one number — then `siaga calls show --json` gives each its class and reasons, and
//! `siaga report --format json` counts them; a correction through `siaga calls classify`
//! changes the current class and the report.

mod common;

use common::{AgencyPorts, Gateway, assert_sipp_ok, finish_agency, sipp_agency, test_plan};

/// `calls show N --json`'s class.
fn class(gw: &Gateway, call: &str) -> serde_json::Value {
    let shown = gw.calls_json(&["show", call]);
    shown
        .get("class")
        .cloned()
        .unwrap_or_else(|| panic!("call {call} has a class block: {shown}"))
}

fn current(gw: &Gateway, call: &str) -> String {
    class(gw, call)["current"]
        .as_str()
        .unwrap_or_else(|| panic!("call {call} is classified: {}", class(gw, call)))
        .to_owned()
}

/// The rules of the reasons the rules gave, deciding one first.
fn rules(gw: &Gateway, call: &str) -> Vec<String> {
    let class = class(gw, call);
    class["automatic"]["reasons"]
        .as_array()
        .unwrap_or_else(|| panic!("reasons: {class}"))
        .iter()
        .map(|r| r["rule"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn report_json(gw: &Gateway) -> serde_json::Value {
    serde_json::from_str(&gw.cli(&["report", "--format", "json"]))
        .expect("report --format json prints JSON")
}

/// (class, calls) of the report's `by_class`.
fn by_class(report: &serde_json::Value) -> Vec<(String, i64)> {
    report["by_class"]
        .as_array()
        .unwrap_or_else(|| panic!("by_class: {report}"))
        .iter()
        .map(|c| {
            (
                c["class"].as_str().unwrap_or_default().to_owned(),
                c["calls"].as_i64().unwrap_or_default(),
            )
        })
        .collect()
}

fn totals(report: &serde_json::Value) -> (i64, i64, i64) {
    let t = &report["totals"];
    let n = |key: &str| t[key].as_i64().unwrap_or_else(|| panic!("{key}: {t}"));
    (n("emergency"), n("classified"), n("false_calls"))
}

#[test]
fn each_kind_of_call_gets_its_class_and_a_correction_changes_it_and_the_report() {
    let ports = AgencyPorts::new();
    let dir = tempfile::tempdir().expect("dir");
    // A shorter `abandoned_within` keeps the silent call short: held 6 s, it is silent, not
    // abandoned.
    let plan = test_plan(
        dir.path(),
        &ports,
        &[("abandoned_within = \"20s\"", "abandoned_within = \"4s\"")],
    );
    let mut gw = Gateway::start(&["--dialplan", plan.to_str().expect("utf8 path")]);
    let run = |scenario: &str, number: &str, args: &[&str], what: &str| {
        let path = common::scenario_from_number(dir.path(), scenario, number);
        let out = gw.sipp(path.to_str().expect("utf8 path"), false, args);
        assert_sipp_ok(&out, what);
    };

    // 1: silent (sends no RTP), on the line 6 s.
    run(
        "uac_call.xml",
        "+6281100000001",
        &["-s", "112", "-m", "1", "-d", "6000"],
        "silent caller",
    );
    // 2: hangs up after 1 s, in the menu.
    run(
        "uac_call.xml",
        "+6281100000002",
        &["-s", "112", "-m", "1", "-d", "1000"],
        "quick hang-up",
    );
    // 3: dials 110 (straight to the police) and speaks (SIPp's recorded speech) to a SIPp
    // agency; presses nothing.
    let police = sipp_agency("agency_answer.xml", ports.police, &["-m", "1"]);
    run(
        "media_call.xml",
        "+6281100000003",
        &["-s", "110", "-m", "1", "-d", "9000"],
        "caller speaking to the police",
    );
    finish_agency(police, "police answers");
    // 4: an RFC 6881 test call.
    run(
        "uac_test_call.xml",
        "+6281100000004",
        &["-m", "1", "-d", "500"],
        "test call",
    );
    // 5, 6, 7: three quick calls from one number.
    for n in 1..=3 {
        run(
            "uac_call.xml",
            "+6281100000005",
            &["-s", "112", "-m", "1", "-d", "1000"],
            &format!("repeat caller, call {n}"),
        );
    }
    gw.stop();

    assert_eq!(current(&gw, "1"), "silent");
    assert_eq!(rules(&gw, "1"), ["silent"]);
    let silent_reason = class(&gw, "1")["automatic"]["reasons"][0]["detail"].clone();
    assert!(
        silent_reason
            .as_str()
            .is_some_and(|d| d.starts_with("caller speech 0 % of 0 frames < 2 %")),
        "{silent_reason}"
    );
    assert_eq!(current(&gw, "2"), "abandoned");
    assert_eq!(rules(&gw, "2")[0], "abandoned");
    assert_eq!(current(&gw, "3"), "genuine");
    assert_eq!(rules(&gw, "3"), ["speech"], "{}", class(&gw, "3"));
    let shown = gw.calls_json(&["show", "3"]);
    assert!(
        shown["signals"]["agency_talk_ms"].as_i64().unwrap_or(0) > 0,
        "the police were on the line: {shown}"
    );
    assert_eq!(current(&gw, "4"), "test");
    assert_eq!(current(&gw, "5"), "abandoned");
    assert_eq!(current(&gw, "6"), "abandoned");
    assert_eq!(current(&gw, "7"), "repeat");
    assert_eq!(rules(&gw, "7"), ["repeat", "abandoned", "silent"]);
    let shown = gw.calls_cli(&["show", "7"]);
    assert!(
        shown.contains(
            "\nclass\n  current     repeat (by the rules)\n  rules       repeat (rules v1, "
        ),
        "{shown}"
    );
    assert!(
        shown.contains(
            "    repeat: 2 earlier call(s) from the number in the 10 min before ≥ 2 (2 in 10 min, 2 in the hour, 2 in the day)\n"
        ),
        "{shown}"
    );

    // The report: 6 emergency calls, all classified; silent, abandoned ×3 and repeat are
    // false calls; one test call; the number that called three times on top.
    let report = report_json(&gw);
    assert_eq!(totals(&report), (6, 6, 5), "{report}");
    assert_eq!(report["totals"]["false_share_percent"], 83.3);
    assert_eq!(report["test_calls"], 1);
    assert_eq!(
        by_class(&report),
        [
            ("genuine".to_owned(), 1),
            ("silent".to_owned(), 1),
            ("abandoned".to_owned(), 3),
            ("repeat".to_owned(), 1),
            ("test".to_owned(), 1),
        ]
    );
    let top = &report["top_repeat_numbers"][0];
    assert_eq!(top["number"], "+6281100000005", "{report}");
    assert_eq!(top["calls"], 3);

    // Corrections: the silent caller was a real one; the repeat caller a prank.
    let said = gw.calls_cli(&[
        "classify",
        "1",
        "genuine",
        "--by",
        "Sari",
        "--why",
        "breathing heard; the caller could not speak",
    ]);
    assert_eq!(
        said.trim(),
        "call 1: silent → genuine by Sari (breathing heard; the caller could not speak)"
    );
    gw.calls_cli(&[
        "classify",
        "7",
        "prank",
        "--by",
        "Budi",
        "--why",
        "laughter, third call in two minutes",
    ]);
    let corrected = class(&gw, "1");
    assert_eq!(corrected["current"], "genuine");
    assert_eq!(
        corrected["automatic"]["class"], "silent",
        "the rules' class stays"
    );
    assert_eq!(corrected["corrections"][0]["by"], "Sari");
    assert_eq!(corrected["corrections"][0]["from"], "silent");
    assert_eq!(current(&gw, "7"), "prank");
    let listed = gw.calls_json(&["list", "--class", "prank"]);
    let ids: Vec<i64> = listed
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r["id"].as_i64()).collect())
        .unwrap_or_default();
    assert_eq!(ids, [7]);

    let report = report_json(&gw);
    assert_eq!(totals(&report), (6, 6, 4), "{report}");
    // Classes the rules gave and nobody holds now stay listed, with no calls.
    assert_eq!(
        by_class(&report),
        [
            ("genuine".to_owned(), 2),
            ("silent".to_owned(), 0),
            ("abandoned".to_owned(), 3),
            ("repeat".to_owned(), 0),
            ("test".to_owned(), 1),
            ("prank".to_owned(), 1),
        ]
    );
    let corrections = report["corrections"].as_array().map_or(0, Vec::len);
    assert_eq!(corrections, 2, "{report}");
}

/// Issue 12 item 1: a phone that sends its device identity (`+sip.instance`, an IMEI URN) is
/// counted across numbers — three calls from three numbers on one handset.
#[test]
fn a_device_calling_from_three_numbers_is_counted_by_its_instance() {
    let gw = Gateway::start(&[]);
    let dir = tempfile::tempdir().expect("dir");
    let imei = "urn:gsma:imei:35209900-176148-1";
    for number in ["+6281111111111", "+6282222222222", "+6283333333333"] {
        let path = common::scenario_from_number(dir.path(), "uac_call.xml", number);
        let text = std::fs::read_to_string(&path).expect("scenario");
        let with_instance = text.replace(
            ";transport=[transport]>",
            &format!(";transport=[transport]>;+sip.instance=\"<{imei}>\""),
        );
        assert_ne!(text, with_instance, "the scenario has a Contact");
        std::fs::write(&path, with_instance).expect("write scenario");
        let out = common::sipp(
            gw.udp,
            path.to_str().expect("utf8 path"),
            false,
            &["-s", "112", "-m", "1", "-d", "200"],
        );
        assert_sipp_ok(&out, "a call from the handset");
    }
    common::wait_until(
        "three calls ended",
        std::time::Duration::from_secs(10),
        || {
            gw.calls_json(&["list"]).as_array().is_some_and(|calls| {
                calls.len() == 3 && calls.iter().all(|c| !c["ended_at"].is_null())
            })
        },
    );
    let third = gw.calls_json(&["show", "3"]);
    assert_eq!(third["device_calls"]["instance"], imei, "{third}");
    assert_eq!(third["device_calls"]["last_10_min"], 2, "{third}");
    // By number, each is its first call.
    assert_eq!(third["earlier_calls"]["last_10_min"], 0, "{third}");
    let shown = gw.calls_cli(&["show", "3"]);
    assert!(
        shown.contains(&format!(
            "device      2 call(s) from device {imei} in the 10 min before"
        )),
        "{shown}"
    );
    // A call without the parameter has no device block.
    let first_without = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "200"],
    );
    assert_sipp_ok(&first_without, "a call without a device identity");
    common::wait_until(
        "the fourth call logged",
        std::time::Duration::from_secs(10),
        || {
            gw.calls_json(&["list"])
                .as_array()
                .is_some_and(|c| c.len() == 4)
        },
    );
    assert!(gw.calls_json(&["show", "4"]).get("device_calls").is_none());
}
