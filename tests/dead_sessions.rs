//! Dead sessions against real peers: a SIPp caller that stops sending RTP is probed with
//! in-dialog OPTIONS. A phone that answers 481, or nothing, loses the call (`caller_lost`,
//! on the call-back list) in bounded time; one that answers 200 keeps it.

mod common;

use common::{Gateway, assert_sipp_ok};

/// A gateway with a one-second media timeout, re-probing every second, T1 = 50 ms (so an
/// unanswered OPTIONS times out after 64·T1 = 3.2 s).
fn gateway() -> (Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("siaga.toml");
    std::fs::write(
        &config,
        "[sip]\nt1_ms = 50\n\n[media]\ntimeout_s = 1\n\n[calls]\nprobe_every_s = 1\n",
    )
    .expect("config");
    let gw = Gateway::start(&["--config", config.to_str().expect("path")]);
    (gw, dir)
}

fn end_of_call_1(db: &rusqlite::Connection) -> Option<(String, String)> {
    db.query_row(
        "SELECT end_reason, coalesce(end_detail, '') FROM calls WHERE id = 1 AND end_reason IS NOT NULL",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .ok()
}

fn timeline_of_call_1(db: &rusqlite::Connection, kind: &str) -> Vec<String> {
    let mut stmt = db
        .prepare("SELECT detail FROM call_events WHERE call = 1 AND kind = ?1 ORDER BY id")
        .expect("query");
    stmt.query_map([kind], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn wait_for_end(gw: &Gateway) -> (String, String) {
    gw.wait_call_ended(1);
    end_of_call_1(&gw.db()).expect("ended")
}

#[test]
fn a_silent_caller_whose_phone_answers_481_is_lost_and_on_the_call_back_list() {
    let (mut gw, _config) = gateway();
    let out = gw.sipp("uac_silent_481.xml", false, &["-s", "112", "-m", "1"]);
    assert_sipp_ok(&out, "the probe is answered 481");
    let (reason, detail) = wait_for_end(&gw);
    assert_eq!(reason, "caller_lost");
    assert!(detail.contains("481"), "{detail}");
    gw.stop();
    let db = gw.db();
    assert_eq!(timeline_of_call_1(&db, "caller_lost").len(), 1);
    assert!(!timeline_of_call_1(&db, "media_timeout").is_empty());
    let call_backs = gw.calls_json(&["list", "--call-backs"]);
    assert_eq!(call_backs.as_array().map(Vec::len), Some(1), "{call_backs}");
}

#[test]
fn a_caller_that_vanished_is_lost_when_the_probe_times_out() {
    let (mut gw, _config) = gateway();
    let out = gw.sipp("uac_silent_gone.xml", false, &["-s", "112", "-m", "1"]);
    assert_sipp_ok(&out, "call set up, then the caller is gone");
    let (reason, detail) = wait_for_end(&gw);
    assert_eq!(reason, "caller_lost");
    assert!(detail.contains("timeout"), "{detail}");
    gw.stop();
}

#[test]
fn a_silent_caller_whose_phone_answers_200_keeps_the_call() {
    let (mut gw, _config) = gateway();
    let out = gw.sipp("uac_silent_alive.xml", false, &["-s", "112", "-m", "1"]);
    assert_sipp_ok(&out, "two probes answered 200, then the caller's BYE");
    gw.stop();
    let db = gw.db();
    let (reason, _) = end_of_call_1(&db).expect("ended");
    assert_ne!(reason, "caller_lost");
    let probes = timeline_of_call_1(&db, "caller_probe");
    assert!(
        probes
            .iter()
            .filter(|p| p.contains("answered 200: kept"))
            .count()
            >= 2,
        "{probes:?}"
    );
}
