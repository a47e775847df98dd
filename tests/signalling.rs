//! The signalling core against a real peer: the `siaga` binary on loopback, SIPp as the
//! caller, the SQLite call log read back afterwards.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{Gateway, assert_sipp_ok, end_reasons};

/// Messages stored for each call, as first lines in order.
fn first_lines(db: &rusqlite::Connection, call: i64) -> Vec<String> {
    let mut stmt = db
        .prepare(
            "SELECT direction || ' ' || first_line FROM sip_messages WHERE call = ?1 ORDER BY id",
        )
        .expect("query");
    stmt.query_map([call], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn a_call_to_112_and_one_to_urn_service_sos_are_answered_and_logged_with_every_message() {
    let mut gw = Gateway::start(&[]);
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "500"],
    );
    assert_sipp_ok(&out, "112 over UDP");
    let out = gw.sipp(
        "uac_call_urn.xml",
        false,
        &["-s", "urn:service:sos", "-m", "1", "-d", "500"],
    );
    assert_sipp_ok(&out, "urn:service:sos over UDP");
    gw.stop();
    let db = gw.db();
    let rows: Vec<(i64, String, String, Option<i64>, String)> = db
        .prepare("SELECT id, dialled, kind, answered_at, end_reason FROM calls ORDER BY id")
        .expect("q")
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[0].1.starts_with("sip:112@"));
    assert_eq!(rows[1].1, "urn:service:sos");
    for (id, _, kind, answered, end) in &rows {
        assert_eq!(kind, "emergency");
        assert!(answered.is_some());
        assert_eq!(end, "abandoned_in_ivr");
        let lines = first_lines(&db, *id);
        assert_eq!(lines.len(), 7, "{lines:?}");
        assert!(lines[0].starts_with("in INVITE "));
        assert_eq!(lines[3], "out SIP/2.0 200 OK");
        assert!(lines[5].starts_with("in BYE "));
    }
    // The caller's number and source are stored with the call.
    let from: String = db
        .query_row(
            "SELECT caller_from FROM calls WHERE id = ?1",
            [rows[0].0],
            |r| r.get(0),
        )
        .expect("from");
    assert!(from.contains("+6281234567890"), "{from}");
}

#[test]
fn a_call_over_tcp_is_answered() {
    let mut gw = Gateway::start(&[]);
    let out = gw.sipp("uac_call.xml", true, &["-s", "112", "-m", "3", "-d", "200"]);
    assert_sipp_ok(&out, "112 over TCP");
    gw.stop();
    assert_eq!(
        end_reasons(&gw.db()),
        vec![("abandoned_in_ivr".to_owned(), 3)]
    );
}

#[test]
fn cancel_before_answer_is_logged_as_abandoned() {
    let mut gw = Gateway::start(&["--ring-delay-ms", "3000"]);
    let out = gw.sipp("uac_cancel.xml", false, &["-s", "112", "-m", "1"]);
    assert_sipp_ok(&out, "CANCEL");
    gw.stop();
    assert_eq!(
        end_reasons(&gw.db()),
        vec![("abandoned_before_answer".to_owned(), 1)]
    );
}

#[test]
fn invite_retransmissions_make_one_call() {
    let mut gw = Gateway::start(&["--ring-delay-ms", "1000"]);
    let out = gw.sipp(
        "uac_invite_retrans.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "200", "-nr"],
    );
    assert_sipp_ok(&out, "INVITE retransmissions");
    gw.stop();
    let db = gw.db();
    assert_eq!(end_reasons(&db), vec![("abandoned_in_ivr".to_owned(), 1)]);
    let retrans: i64 = db
        .query_row(
            "SELECT count(*) FROM sip_messages WHERE note = 'retransmission' AND first_line LIKE 'INVITE%'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(retrans, 2, "both copies absorbed and logged");
}

#[test]
fn options_keepalive_is_200() {
    let gw = Gateway::start(&[]);
    let out = gw.sipp("uac_options.xml", false, &["-m", "3"]);
    assert_sipp_ok(&out, "OPTIONS");
}

#[test]
fn a_normal_number_gets_404_and_is_counted_but_is_not_a_call() {
    let mut gw = Gateway::start(&[]);
    let out = gw.sipp(
        "uac_not_emergency.xml",
        false,
        &["-s", "5551234", "-m", "1"],
    );
    assert_sipp_ok(&out, "404");
    gw.stop();
    // Issue 16: answered statelessly, no call row; counted and sampled instead.
    let db = gw.db();
    assert_eq!(end_reasons(&db), vec![]);
    let counts = common::noncall_counts(&db);
    assert_eq!(counts.get("non_emergency_invite"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("stray_ack"), Some(&1), "{counts:?}");
    let sampled: i64 = db
        .query_row(
            "SELECT count(*) FROM sip_messages WHERE call IS NULL AND first_line LIKE 'INVITE sip:5551234@%'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(sampled, 1, "the INVITE is kept as the sample");
}

#[test]
fn the_gateway_can_hang_up_and_the_caller_gets_a_bye() {
    let mut gw = Gateway::start(&["--max-call-secs", "1"]);
    let out = gw.sipp("uac_gateway_bye.xml", false, &["-s", "112", "-m", "1"]);
    assert_sipp_ok(&out, "gateway BYE");
    gw.stop();
    assert_eq!(
        end_reasons(&gw.db()),
        vec![("gateway_hung_up".to_owned(), 1)]
    );
}

#[test]
fn a_reinvite_is_answered_with_the_current_session() {
    let mut gw = Gateway::start(&[]);
    let out = gw.sipp(
        "uac_reinvite.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "200"],
    );
    assert_sipp_ok(&out, "re-INVITE");
    gw.stop();
    assert_eq!(
        end_reasons(&gw.db()),
        vec![("abandoned_in_ivr".to_owned(), 1)]
    );
}

#[test]
fn an_rfc_6881_test_call_is_answered_with_the_centre_name() {
    let mut gw = Gateway::start(&[]);
    let out = gw.sipp("uac_test_call.xml", false, &["-m", "1", "-d", "200"]);
    assert_sipp_ok(&out, "test call");
    gw.stop();
    let db = gw.db();
    assert_eq!(end_reasons(&db), vec![("test_call_ended".to_owned(), 1)]);
    let ok: Vec<u8> = db
        .query_row(
            "SELECT raw FROM sip_messages WHERE first_line = 'SIP/2.0 200 OK' AND direction = 'out' ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .expect("200");
    assert!(String::from_utf8_lossy(&ok).contains("Siaga 112 Kota Samarinda"));
}

#[test]
fn a_burst_of_calls_all_complete() {
    let mut gw = Gateway::start(&[]);
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &[
            "-s", "112", "-m", "300", "-r", "150", "-l", "300", "-d", "100",
        ],
    );
    assert_sipp_ok(&out, "burst of 300 calls");
    gw.stop();
    let db = gw.db();
    assert_eq!(end_reasons(&db), vec![("abandoned_in_ivr".to_owned(), 300)]);
    let messages: i64 = db
        .query_row(
            "SELECT count(*) FROM sip_messages WHERE call IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(messages, 300 * 7);
}

#[test]
fn the_rfc_4475_messages_over_udp_leave_the_gateway_answering() {
    let mut gw = Gateway::start(&[]);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rfc4475");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut sent = 0;
    let mut replies = Vec::new();
    for entry in std::fs::read_dir(dir).expect("corpus").flatten() {
        if entry.path().extension().is_some_and(|e| e == "dat") {
            let data = std::fs::read(entry.path()).expect("read");
            socket.send_to(&data, gw.udp).expect("send");
            sent += 1;
        }
    }
    // Collect what comes back (bounded by the read timeout, not used for synchronisation).
    let mut buf = [0u8; 65536];
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        replies.push(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_owned(),
        );
    }
    assert_eq!(sent, 49);
    assert!(
        replies.iter().any(|r| r.starts_with("SIP/2.0 400")),
        "{replies:?}"
    );
    assert!(
        replies.iter().any(|r| r.starts_with("SIP/2.0 505")),
        "{replies:?}"
    );
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "100"],
    );
    assert_sipp_ok(&out, "a call after the torture messages");
    gw.stop();
    let db = gw.db();
    let stored: i64 = db
        .query_row(
            "SELECT count(*) FROM sip_messages WHERE note LIKE 'rejected%'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    // Issue 16: from one source, the first rejected message of the minute is kept verbatim
    // and every one is counted.
    assert_eq!(stored, 1, "one sample of the rejected messages");
    let garbage = common::noncall_counts(&db)
        .get("garbage")
        .copied()
        .unwrap_or_default();
    assert!(garbage >= 15, "rejected messages are counted: {garbage}");
}

#[test]
fn a_thousand_calls_at_100_per_second_then_again_with_10_percent_loss() {
    let mut gw = Gateway::start(&[]);
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &[
            "-s", "112", "-m", "1000", "-r", "100", "-l", "1000", "-d", "100",
        ],
    );
    assert_sipp_ok(&out, "1000 calls at 100/s");
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &[
            "-s", "112", "-m", "1000", "-r", "100", "-l", "1000", "-d", "100", "-lost", "10",
        ],
    );
    assert_sipp_ok(&out, "1000 calls at 100/s with 10% loss");
    gw.stop();
    assert_eq!(
        end_reasons(&gw.db()),
        vec![("abandoned_in_ivr".to_owned(), 2000)]
    );
}

#[test]
fn a_shutdown_hangs_up_calls_still_up_after_the_drain_time_and_logs_them() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("siaga.toml");
    std::fs::write(&config, "[calls]\ndrain_timeout_s = 1\n").expect("config");
    let mut gw = Gateway::start(&["--config", config.to_str().expect("path")]);
    let caller = std::thread::spawn({
        let udp = gw.udp;
        move || common::sipp(udp, "uac_gateway_bye.xml", false, &["-s", "112", "-m", "1"])
    });
    let db = gw.db();
    common::wait_until("the call is answered", Duration::from_secs(20), || {
        db.query_row(
            "SELECT count(*) FROM calls WHERE answered_at IS NOT NULL",
            [],
            |r| r.get::<_, i64>(0),
        )
        .is_ok_and(|n| n == 1)
    });
    gw.stop(); // SIGTERM: drain for 1 s, then hang up what is left
    let out = caller.join().expect("caller");
    assert_sipp_ok(&out, "the caller gets the gateway's BYE");
    let (reason, detail): (String, String) = db
        .query_row(
            "SELECT end_reason, end_detail FROM calls WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row");
    assert_eq!(reason, "gateway_hung_up");
    assert_eq!(detail, "gateway shutdown");
}

/// One 112 call through a gateway started with `args`: the console's new-call line and the
/// whole log.
fn new_call_line(args: &[&str]) -> (String, String) {
    let mut gw = Gateway::start(args);
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "100"],
    );
    assert_sipp_ok(&out, "112");
    gw.stop();
    let log = gw.log();
    let line = log
        .lines()
        .find(|l| l.contains("new call"))
        .unwrap_or_else(|| panic!("no new-call line in:\n{log}"))
        .to_owned();
    (line, log)
}

#[test]
fn the_console_line_of_a_new_call_names_number_and_entry_and_the_caller_only_if_configured() {
    let caller = "6281234567890"; // the From/P-Asserted-Identity of uac_call.xml
    let (line, log) = new_call_line(&[]);
    assert!(line.contains("dialled=sip:112@"), "{line}");
    assert!(line.contains("entry="), "{line}");
    assert!(
        !log.contains(caller),
        "personal data in the INFO log:\n{log}"
    );

    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("siaga.toml");
    std::fs::write(&config, "[log]\npersonal_data = true\n").expect("config");
    let (line, _) = new_call_line(&["--config", config.to_str().expect("path")]);
    assert!(line.contains(caller), "{line}");
}
