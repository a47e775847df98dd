//! Traffic that belongs to no emergency call against the real binary: SIPp sends a thousand
//! INVITEs to an ordinary number and a thousand OPTIONS; the call log keeps a sample of each
//! and the real counts, no call rows, and 112 is still answered. A raw flood beyond the
//! per-source budget is dropped unanswered (and counted) while the same host's 112 call is
//! answered.

mod common;

use std::net::UdpSocket;

use common::{Gateway, assert_sipp_ok, end_reasons, noncall_counts};

fn noncall_rows(db: &rusqlite::Connection) -> i64 {
    db.query_row(
        "SELECT count(*) FROM sip_messages WHERE call IS NULL",
        [],
        |r| r.get(0),
    )
    .expect("count")
}

#[test]
fn a_thousand_invites_to_an_ordinary_number_and_options_leave_a_sample_and_the_counts() {
    // A budget large enough that SIPp gets every answer; one window for the whole test.
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("siaga.toml");
    std::fs::write(
        &config,
        "[limits]\nnoncall_window_s = 3600\nnoncall_replies_per_s = 100000\nnoncall_reply_burst = 100000\n",
    )
    .expect("config");
    let mut gw = Gateway::start(&["--config", config.to_str().expect("path")]);
    let out = gw.sipp(
        "uac_not_emergency.xml",
        false,
        &["-s", "5551234", "-m", "1000", "-r", "500", "-l", "1000"],
    );
    assert_sipp_ok(&out, "1000 INVITEs to 5551234, each 404 and ACK");
    let out = gw.sipp(
        "uac_options.xml",
        false,
        &["-m", "1000", "-r", "500", "-l", "1000"],
    );
    assert_sipp_ok(&out, "1000 OPTIONS, each 200");
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "100"],
    );
    assert_sipp_ok(&out, "112 after the flood");
    gw.stop();
    let db = gw.db();
    // Only the emergency call is a call.
    assert_eq!(end_reasons(&db), vec![("abandoned_in_ivr".to_owned(), 1)]);
    // One INVITE with its 404, one ACK, one OPTIONS with its 200: the sample.
    assert_eq!(noncall_rows(&db), 5);
    let counts = noncall_counts(&db);
    assert!(counts["non_emergency_invite"] >= 1000, "{counts:?}");
    assert!(counts["stray_ack"] >= 1000, "{counts:?}");
    assert!(counts["options"] >= 1000, "{counts:?}");
    assert_eq!(counts["unanswered"], 0, "{counts:?}");
    assert_eq!(counts["sampled"], 3, "{counts:?}");
}

#[test]
fn a_flood_beyond_the_budget_is_dropped_and_counted_and_the_hosts_112_is_answered() {
    let mut gw = Gateway::start(&[]);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let flood = 1000;
    let dropped_before = kernel_drops(gw.udp.port());
    for i in 0..flood {
        let options = format!(
            "OPTIONS sip:{0} SIP/2.0\r\nVia: SIP/2.0/UDP {1};branch=z9hG4bKflood{i}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:flood@{1}>;tag=f{i}\r\nTo: <sip:{0}>\r\n\
             Call-ID: flood-{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            gw.udp,
            socket.local_addr().expect("addr")
        );
        socket.send_to(options.as_bytes(), gw.udp).expect("send");
    }
    // The gateway reads its socket in order: once this call is answered, the flood before it
    // has been read (the call goes first; OPTIONS may still wait in the non-call queue).
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "100"],
    );
    assert_sipp_ok(&out, "112 from the flooding host");
    // What the kernel dropped before the gateway could read it (a busy machine: the burst
    // overflows the socket's receive buffer) never reached the gateway; read while the socket
    // is still open (its row goes with it).
    let kernel_dropped = kernel_drops(gw.udp.port()) - dropped_before;
    gw.stop();
    // Every answer the gateway sent is in the socket's buffer once it has stopped.
    socket.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 4096];
    let mut replies = 0u64;
    while socket.recv_from(&mut buf).is_ok() {
        replies += 1;
    }
    let db = gw.db();
    assert_eq!(end_reasons(&db), vec![("abandoned_in_ivr".to_owned(), 1)]);
    let counts = noncall_counts(&db);
    // On a busy machine the engine's queue may fill (those are dropped before the engine counts
    // them), and the 112 call, which goes first, may be over before the queue is worked off
    // (what is left at the stop is not handled): both are reported. Every datagram is
    // accounted for.
    let shed = queue_full_drops(&gw.db_path());
    assert_eq!(
        counts["options"] + shed + kernel_dropped,
        flood,
        "{counts:?}, {shed} shed, {kernel_dropped} dropped by the kernel"
    );
    // The default budget: a burst of 100 and 20 a second.
    assert!((100..300).contains(&replies), "{replies} replies");
    assert_eq!(
        counts["unanswered"],
        counts["options"] - replies,
        "{counts:?}"
    );
    assert_eq!(noncall_rows(&db), 2, "one OPTIONS and its 200");
}

/// Non-call messages the gateway dropped with the engine's queue full or left unhandled when it
/// stopped, from its `rate_limited` events.
fn queue_full_drops(db: &std::path::Path) -> u64 {
    common::gateway_events(db, "rate_limited")
        .iter()
        .flat_map(|detail| detail.split("; "))
        .filter_map(|part| {
            part.strip_suffix(" non-call message(s) dropped with the engine's queue full")
                .or_else(|| {
                    part.strip_suffix(
                        " message(s) of the non-call queue not handled: the gateway stopped",
                    )
                })?
                .rsplit(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Datagrams the kernel dropped on the UDP sockets bound to `port` (the `drops` column of
/// /proc/net/udp): they never reached the gateway.
fn kernel_drops(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").expect("/proc/net/udp");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit(':').next()?;
            (u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| fields.last()?.parse::<u64>().ok())
                .flatten()
        })
        .sum()
}
