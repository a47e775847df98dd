//! The call's signals through the whole gateway (issue 12): SIPp callers, one talking (the
//! pcap's speech as real RTP; raw sockets: root or CAP_NET_RAW, as in tests/media.rs) and one
//! silent (no RTP at all), then `siaga calls show` reads the signals back from the call log,
//! with the count of earlier calls from the same number.

mod common;

use common::{Gateway, assert_sipp_ok};

/// `calls show N --json`'s signals, which every ended call has.
fn signals(gw: &Gateway, call: &str) -> serde_json::Value {
    let shown = gw.calls_json(&["show", call]);
    shown
        .get("signals")
        .cloned()
        .unwrap_or_else(|| panic!("call {call} has signals: {shown}\n{}", gw.log()))
}

fn number(v: &serde_json::Value, key: &str) -> i64 {
    v.get(key)
        .and_then(serde_json::Value::as_i64)
        .unwrap_or_else(|| panic!("{key} in {v}"))
}

#[test]
fn a_talking_caller_has_speech_and_a_silent_one_has_none() {
    let mut gw = Gateway::start(&[]);
    // SIPp's g711a.pcap: 7.08 s of speech, the call held 9 s in all.
    let out = gw.sipp(
        "media_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "9000"],
    );
    assert_sipp_ok(&out, "call with speech");
    // A caller that sends no RTP at all, held 3 s.
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "3000"],
    );
    assert_sipp_ok(&out, "silent call");
    gw.stop();

    let talking = signals(&gw, "1");
    let frames = number(&talking, "voice_frames");
    let speech = number(&talking, "speech_frames");
    // 7.08 s of audio is 354 frames of 20 ms.
    assert!((340..=360).contains(&frames), "{talking}");
    let share = speech as f64 / frames as f64;
    assert!(share > 0.3, "speech share {share}: {talking}");
    assert!(number(&talking, "longest_speech_ms") >= 1000, "{talking}");
    assert_eq!(number(&talking, "digits"), 0);
    assert!(number(&talking, "answered_ms") >= 8000, "{talking}");
    assert_eq!(talking.get("usable_identity"), Some(&true.into()));
    assert_eq!(
        talking.get("agency_talk_ms"),
        Some(&serde_json::Value::Null)
    );

    let silent = signals(&gw, "2");
    assert_eq!(number(&silent, "voice_frames"), 0, "{silent}");
    assert_eq!(number(&silent, "speech_frames"), 0, "{silent}");
    assert_eq!(number(&silent, "longest_speech_ms"), 0, "{silent}");

    let shown = gw.calls_cli(&["show", "1"]);
    let block = shown
        .split("\nsignals\n")
        .nth(1)
        .unwrap_or_else(|| panic!("a signals block: {shown}"));
    assert!(block.starts_with("  voice       speech in "), "{shown}");
    assert!(block.contains("  keys        0 pressed"), "{shown}");
    assert!(block.contains("  agency      none answered"), "{shown}");
    assert!(block.contains("  identity    a number"), "{shown}");
    let shown = gw.calls_cli(&["show", "2"]);
    assert!(
        shown.contains("  voice       speech in 0% of 0 frames"),
        "{shown}"
    );
    // Both calls came from one number: the second counts the first.
    assert!(
        shown.contains(
            "  earlier     1 call(s) from +6281234567890 in the 10 min before, 1 in the hour, 1 in the day"
        ),
        "{shown}"
    );
    let earlier = gw.calls_json(&["show", "1"]);
    assert_eq!(
        earlier.get("earlier_calls").and_then(|e| e.get("last_day")),
        Some(&0.into()),
        "{earlier}"
    );
}
