//! Structured logs: `--log-format json` prints one JSON object per line on stderr, and the
//! lines logged for a call carry its SIP Call-ID (the call's span) for a log shipper to
//! group them by.

mod common;

use common::{Gateway, assert_sipp_ok};

#[test]
fn with_log_format_json_every_line_is_json_and_the_calls_lines_carry_its_call_id() {
    let mut gw = Gateway::start(&["--log-format", "json"]);
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "1000"],
    );
    assert_sipp_ok(&out, "a caller who hangs up in the menu");
    gw.stop();
    let call_id: String = gw
        .db()
        .query_row("SELECT call_id FROM calls WHERE id = 1", [], |r| r.get(0))
        .expect("call 1");
    let log = gw.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "gateway stopped"),
        "the gateway's own lines are there too:\n{log}"
    );
    let of_call: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["span"]["call_id"] == call_id.as_str())
        .collect();
    let messages: Vec<&str> = of_call
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    assert!(
        messages.contains(&"new call") && messages.contains(&"call ended"),
        "the call's start and end carry Call-ID {call_id}: {messages:?}\n{log}"
    );
    for line in &of_call {
        assert_eq!(line["span"]["call"], 1, "and the call's ref: {line}");
        assert!(
            line["level"].is_string() && line["timestamp"].is_string(),
            "{line}"
        );
    }
}
