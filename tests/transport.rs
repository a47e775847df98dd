//! The transport under attack, through the real binary on loopback: floods of idle and
//! trickling TCP connections, a flooding UDP source, a second gateway on the same port. Other
//! sources are other loopback addresses (127.0.0.2, …), all on this host.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Gateway, assert_sipp_ok, wait_until};

/// Writes a config file with `[limits]` keys into the gateway's future directory.
fn limits_config(dir: &Path, limits: &str) -> String {
    let path = dir.join("limits.toml");
    std::fs::write(&path, format!("[limits]\n{limits}")).expect("write config");
    path.display().to_string()
}

/// A TCP connection from `source` (a loopback address) to `to`; `None` if it could not be
/// made within a second (a full backlog).
fn connect_from(source: &str, to: SocketAddr) -> Option<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    let from: SocketAddr = format!("{source}:0").parse().ok()?;
    socket.bind(&from.into()).ok()?;
    socket
        .connect_timeout(&to.into(), Duration::from_secs(1))
        .ok()?;
    Some(socket.into())
}

/// Whether the gateway has closed (or reset) the connection: a read sees EOF or an error.
/// Reads nothing the gateway sends otherwise (these peers send no complete request).
fn closed_by_peer(mut stream: &TcpStream) -> bool {
    let _ = stream.set_nonblocking(true);
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// Up to 5,000 connections from `source` that send nothing (at most a minute of trying).
fn idle_flood(source: &str, to: SocketAddr) -> Vec<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(60);
    (0..5000)
        .take_while(|_| Instant::now() < deadline)
        .filter_map(|_| connect_from(source, to))
        .collect()
}

fn open_count(streams: &[TcpStream]) -> usize {
    streams.iter().filter(|s| !closed_by_peer(s)).count()
}

/// Raises this test process's own file limit: it holds thousands of client sockets.
fn raise_own_file_limit() {
    let out = Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            "--nofile=20000:20000",
        ])
        .output()
        .expect("prlimit (util-linux) is installed");
    assert!(
        out.status.success(),
        "raising the test's file limit to 20000 needs root: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const INVITE_HEAD: &str = "INVITE sip:112@gateway SIP/2.0\r\n\
    Via: SIP/2.0/TCP 127.0.0.3:5060;branch=z9hG4bK-slow\r\n\
    From: <sip:+6281111111111@127.0.0.3>;tag=slow\r\nTo: <sip:112@gateway>\r\n\
    Call-ID: slowloris\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n";

/// 5,000 idle connections from 127.0.0.2, 300 slowloris connections (a byte a second) from
/// 127.0.0.3 and one with a body shorter than its Content-Length from 127.0.0.4; then a TCP
/// 112 call from 127.0.0.1 must be answered and recorded, and the trickling connections must
/// be closed by the whole-message deadline.
fn tcp_flood_leaves_a_tcp_call_through(file_limit: Option<u64>) {
    raise_own_file_limit();
    let dir = tempfile::tempdir().expect("dir");
    // Idle connections must stay while the call is made (long idle); messages get 2 s.
    let config = limits_config(
        dir.path(),
        "tcp_message_timeout_ms = 2000\ntcp_idle_s = 120\n",
    );
    let mut gw = match file_limit {
        Some(n) => Gateway::start_with_file_limit(&["--config", &config], n),
        None => Gateway::start(&["--config", &config]),
    };
    let idle = idle_flood("127.0.0.2", gw.tcp);
    let mut slow = Vec::new();
    for _ in 0..300 {
        if let Some(mut s) = connect_from("127.0.0.3", gw.tcp) {
            let _ = s.write_all(b"I");
            slow.push((s, Instant::now()));
        }
    }
    let mut short_body = connect_from("127.0.0.4", gw.tcp).expect("connect from 127.0.0.4");
    short_body
        .write_all(
            format!(
                "{INVITE_HEAD}Content-Type: application/sdp\r\nContent-Length: 500\r\n\r\nv=0\r\n"
            )
            .as_bytes(),
        )
        .expect("send a short body");
    let short_sent = Instant::now();
    // The slowloris peers trickle one byte a second on another thread, for at most 15 s.
    let mut slow_streams: Vec<TcpStream> = slow
        .iter()
        .filter_map(|(s, _)| s.try_clone().ok())
        .collect();
    let trickler = std::thread::spawn(move || {
        let head = INVITE_HEAD.as_bytes();
        for i in 1..16 {
            std::thread::sleep(Duration::from_secs(1)); // the attack's own pace, not a wait
            for s in &mut slow_streams {
                let _ = s.write_all(&head[i % head.len()..i % head.len() + 1]);
            }
        }
    });

    // Whatever else is connected, the call gets through, with its recording.
    let out = gw.sipp("uac_call.xml", true, &["-s", "112", "-m", "1", "-d", "500"]);
    assert_sipp_ok(&out, "a TCP 112 call during the TCP flood");

    // One host holds at most its share of the gateway's connections; the rest were reset.
    let held = open_count(&idle);
    assert!(
        held > 0 && held <= 128,
        "{held} of {} idle connections from one host held open (per-source limit 128)",
        idle.len()
    );
    // Every trickling connection is closed within the 2 s deadline of its first byte (with
    // room for a loaded machine), and so is the one whose body never completes.
    wait_until(
        "the gateway to close the slowloris connections",
        Duration::from_secs(20),
        || slow.iter().all(|(s, _)| closed_by_peer(s)),
    );
    wait_until(
        "the gateway to close the short-body connection",
        Duration::from_secs(10),
        || closed_by_peer(&short_body),
    );
    assert!(
        short_sent.elapsed() < Duration::from_secs(12),
        "short body held {:?}",
        short_sent.elapsed()
    );
    trickler.join().expect("trickler");
    drop(idle);
    gw.stop();
    let db = gw.db();
    let (path, sha): (Option<String>, Option<String>) = db
        .query_row(
            "SELECT recording_path, recording_sha256 FROM calls WHERE caller_from LIKE '%6281234567890%'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the TCP call is logged");
    let path = path.expect("the TCP call was recorded");
    assert!(
        Path::new(&path).exists() || gw.recordings().join(&path).exists(),
        "{path}"
    );
    assert!(sha.is_some(), "the recording was finalised");
    // The refusals are counted in a bounded number of lines, not one per connection.
    let log = gw.log();
    let refusal_lines = log.lines().filter(|l| l.contains("refused")).count();
    assert!(refusal_lines <= 10, "{refusal_lines} lines about refusals");
    let events = rate_limited_events(&db);
    assert!(
        events.contains("TCP connection(s) refused: the source had its share open"),
        "{events}"
    );
}

/// The gateway's `rate_limited` events, joined with ` | `.
fn rate_limited_events(db: &rusqlite::Connection) -> String {
    db.query_row(
        "SELECT group_concat(detail, ' | ') FROM gateway_events WHERE kind = 'rate_limited'",
        [],
        |r| r.get(0),
    )
    .expect("rate_limited events")
}

/// With the per-source limit out of the way (a trusted SBC gone wrong, say), TCP still stops
/// short of the descriptors kept for calls: under a file limit of 1024 a UDP 112 call gets
/// its RTP port (not `c=0.0.0.0`, port 9) and its recording, and the refusals cost no more
/// than a few log lines.
#[test]
fn tcp_never_takes_the_descriptors_kept_for_calls() {
    raise_own_file_limit();
    let dir = tempfile::tempdir().expect("dir");
    let config = limits_config(dir.path(), "tcp_per_source = 100000\ntcp_idle_s = 120\n");
    let mut gw = Gateway::start_with_file_limit(&["--config", &config], 1024);
    let idle = idle_flood("127.0.0.2", gw.tcp);
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "500"],
    );
    assert_sipp_ok(&out, "a UDP 112 call with TCP at the descriptor reserve");
    let held = open_count(&idle);
    // The reserve is 512 of 1024: TCP gets the rest, less what the gateway itself has open.
    assert!(
        (300..=512).contains(&held),
        "{held} of {} connections held under a file limit of 1024",
        idle.len()
    );
    drop(idle);
    gw.stop();
    let db = gw.db();
    let (answer, recording): (Vec<u8>, Option<String>) = db
        .query_row(
            "SELECT m.raw, c.recording_sha256 FROM sip_messages m JOIN calls c ON c.id = m.call \
             WHERE m.direction = 'out' AND m.first_line = 'SIP/2.0 200 OK' AND m.raw LIKE '%m=audio%'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the 200 OK with the SDP answer is logged");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.contains("c=IN IP4 127.0.0.1") && !answer.contains("m=audio 9 "),
        "{answer}"
    );
    assert!(recording.is_some(), "the call was recorded");
    let log = gw.log();
    assert!(
        log.len() < 100_000 && log.lines().filter(|l| l.contains("refused")).count() <= 10,
        "{} bytes of log:\n{}",
        log.len(),
        &log[..log.len().min(3000)]
    );
}

/// CPU time (user + system) the process has used, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name (which may hold spaces) start at field 3.
    let after = stat.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<u64> = after
        .split(' ')
        .skip(11)
        .take(2)
        .map(|f| f.parse().expect("utime/stime"))
        .collect();
    // Clock ticks of 1/100 s (USER_HZ on Linux).
    Duration::from_millis(10 * fields.iter().sum::<u64>())
}

/// Out of descriptors (no reserve configured, a limit of 256), with connections waiting in the
/// backlog: the accept loop backs off instead of spinning, and logs a line per interval.
#[test]
fn the_accept_loop_backs_off_when_out_of_descriptors() {
    raise_own_file_limit();
    let dir = tempfile::tempdir().expect("dir");
    let config = limits_config(dir.path(), "tcp_per_source = 100000\nfd_reserve = 0\n");
    let mut gw = Gateway::start_with_file_limit(&["--config", &config], 256);
    let idle: Vec<TcpStream> = (0..600)
        .filter_map(|_| connect_from("127.0.0.2", gw.tcp))
        .collect();
    wait_until(
        "the gateway to run out of descriptors",
        Duration::from_secs(20),
        || gw.log().contains("tcp accept failed"),
    );
    // A measuring window, not a wait for anything: a spinning loop would burn it all.
    let before = cpu_time(gw.pid());
    let window = Duration::from_secs(3);
    std::thread::sleep(window);
    let used = cpu_time(gw.pid()) - before;
    assert!(
        used < window / 5,
        "the gateway used {used:?} of CPU in {window:?} with connections it cannot accept"
    );
    let lines = gw
        .log()
        .lines()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(lines <= 2, "{lines} log lines about accept failures");
    drop(idle);
    gw.stop();
}

#[test]
fn a_tcp_112_call_gets_through_5000_idle_and_300_slowloris_connections_from_one_host() {
    tcp_flood_leaves_a_tcp_call_through(None);
}

#[test]
fn the_same_with_a_file_limit_of_1024() {
    tcp_flood_leaves_a_tcp_call_through(Some(1024));
}

/// Connections that carry no call close after the short idle time; one that carries a call
/// stays open for the whole call.
#[test]
fn idle_connections_without_a_call_close_and_a_call_keeps_its_connection() {
    let dir = tempfile::tempdir().expect("dir");
    let config = limits_config(dir.path(), "tcp_idle_s = 1\n");
    let mut gw = Gateway::start(&["--config", &config]);
    let idle = connect_from("127.0.0.5", gw.tcp).expect("connect");
    let opened = Instant::now();
    // A call held for 4 s, four idle times: its connection must not be closed under it.
    let out = gw.sipp(
        "uac_call.xml",
        true,
        &["-s", "112", "-m", "1", "-d", "4000"],
    );
    assert_sipp_ok(&out, "a TCP call longer than the idle time");
    wait_until(
        "the idle connection to be closed",
        Duration::from_secs(10),
        || closed_by_peer(&idle),
    );
    assert!(opened.elapsed() >= Duration::from_secs(1));
    gw.stop();
}

/// Runs `siaga serve` with `args` and returns its exit status and stderr; kills it (and fails)
/// if it is still running after 20 s.
fn serve_briefly(args: &[&str]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().expect("dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_siaga"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("serve")
        .args(["--http", "off"])
        .args(args)
        .arg("--db")
        .arg(dir.path().join("second.db"))
        .arg("--recordings")
        .arg(dir.path().join("recordings"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a second siaga");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the second gateway with {args:?} kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    (status, stderr)
}

#[test]
fn a_second_gateway_on_the_same_port_fails_naming_the_address() {
    let mut gw = Gateway::start(&[]);
    for listen in [format!("udp:{}", gw.udp), format!("tcp:{}", gw.tcp)] {
        let (status, stderr) = serve_briefly(&["--listen", &listen]);
        assert!(!status.success(), "a second gateway on {listen} started");
        assert!(
            stderr.contains(&listen) && stderr.contains("already in use"),
            "{listen}: {stderr}"
        );
    }
    // The first gateway still has the calls.
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "200"],
    );
    assert_sipp_ok(&out, "a call to the first gateway");
    gw.stop();
}

/// Sends OPTIONS from `socket` as fast as it can for `duration` (at most `max` datagrams),
/// counting the replies; returns (sent, replies).
fn flood_options(socket: &UdpSocket, to: SocketAddr, duration: Duration, max: u64) -> (u64, u64) {
    flood(socket, to, duration, max, "OPTIONS", "sip:gateway")
}

/// Sends `method` requests for `uri` from `socket` as fast as it can for `duration` (at most
/// `max` datagrams), counting the replies; returns (sent, replies).
fn flood(
    socket: &UdpSocket,
    to: SocketAddr,
    duration: Duration,
    max: u64,
    method: &str,
    uri: &str,
) -> (u64, u64) {
    socket.set_nonblocking(true).expect("nonblocking");
    let local = socket.local_addr().expect("addr");
    let (mut sent, mut replies) = (0u64, 0u64);
    let mut buf = [0u8; 4096];
    let end = Instant::now() + duration;
    while Instant::now() < end && sent < max {
        let msg = format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-f{sent}\r\n\
             From: <sip:flood@{local}>;tag=f\r\nTo: <{uri}>\r\nCall-ID: flood-{sent}\r\n\
             CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        if socket.send_to(msg.as_bytes(), to).is_ok() {
            sent += 1;
        }
        while socket.recv_from(&mut buf).is_ok() {
            replies += 1;
        }
    }
    // Replies still in flight.
    socket.set_nonblocking(false).expect("blocking");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    while socket.recv_from(&mut buf).is_ok() {
        replies += 1;
    }
    (sent, replies)
}

/// A source over its message budget has the excess dropped and counted, while a 112 call from
/// another source and one from the flooding source itself are answered.
#[test]
fn a_flooding_source_is_cut_to_its_budget_and_calls_still_get_through() {
    let dir = tempfile::tempdir().expect("dir");
    let config = limits_config(
        dir.path(),
        "source_messages_per_s = 20\nsource_burst = 20\n",
    );
    let mut gw = Gateway::start(&["--config", &config]);
    let flooder = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    let target = gw.udp;
    let started = Instant::now();
    let flood = std::thread::spawn(move || {
        flood_options(&flooder, target, Duration::from_secs(6), 3_000_000)
    });
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "500"],
    );
    assert_sipp_ok(&out, "a 112 call from another source during the flood");
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "500", "-i", "127.0.0.2"],
    );
    assert_sipp_ok(&out, "a 112 call from the flooding source");
    let (sent, replies) = flood.join().expect("flood");
    let elapsed = started.elapsed().as_secs_f64();
    gw.stop();
    // Answered at most the budget: the burst plus the rate over the flood (with a second of
    // slack); everything else was dropped before parsing.
    let budget = 20.0 + 20.0 * (elapsed + 1.0);
    assert!(
        sent > 2000 && (replies as f64) <= budget,
        "{replies} replies to {sent} OPTIONS in {elapsed:.1} s (budget {budget:.0})"
    );
    let db = gw.db();
    let events: Vec<String> = db
        .prepare("SELECT detail FROM gateway_events WHERE kind = 'rate_limited'")
        .expect("query")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(events.iter().any(|e| e.contains("127.0.0.2")), "{events:?}");
    // Counted once per report interval (10 s) and at the stop, never once per message.
    assert!(events.len() as f64 <= 2.0 + elapsed / 10.0, "{events:?}");
    let dropped: u64 = events
        .iter()
        .filter_map(|e| e.split(" message(s) over").next()?.parse::<u64>().ok())
        .sum();
    assert!(
        dropped > 1000 && dropped + replies <= sent,
        "{dropped} counted as dropped, {replies} answered, {sent} sent"
    );
    let calls: i64 = db
        .query_row(
            "SELECT count(*) FROM calls WHERE answered_at IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .expect("calls");
    assert_eq!(calls, 2);
}

/// INVITEs have a budget of their own: a source flooding INVITEs to a number outside the plan
/// gets at most that many answered (the rest dropped before parsing, counted), and an emergency
/// call from the same source during its flood is still answered.
#[test]
fn invites_to_other_numbers_are_cut_to_the_invite_budget_and_112_still_passes() {
    let dir = tempfile::tempdir().expect("dir");
    // Every INVITE that reaches the engine is answered (no reply rationing there), so the
    // replies count what passed the transport.
    let config = limits_config(
        dir.path(),
        "source_invites_per_s = 20\nsource_invite_burst = 20\n\
         noncall_replies_per_s = 1000000\nnoncall_reply_burst = 1000000\n",
    );
    let mut gw = Gateway::start(&["--config", &config]);
    let flooder = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    let target = gw.udp;
    let started = Instant::now();
    let flood = std::thread::spawn(move || {
        flood(
            &flooder,
            target,
            Duration::from_secs(4),
            1_000_000,
            "INVITE",
            "sip:0811111111@gateway",
        )
    });
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "500", "-i", "127.0.0.2"],
    );
    assert_sipp_ok(&out, "a 112 call from a source flooding INVITEs");
    let (sent, replies) = flood.join().expect("flood");
    let elapsed = started.elapsed().as_secs_f64();
    gw.stop();
    // The burst plus the rate over the flood, with a second of slack.
    let budget = 20.0 + 20.0 * (elapsed + 1.0);
    assert!(sent > 2000, "{sent} INVITEs sent");
    assert!(
        (replies as f64) <= budget,
        "{replies} replies to {sent} INVITEs in {elapsed:.1} s (budget {budget:.0})"
    );
    let db = gw.db();
    let events = rate_limited_events(&db);
    assert!(events.contains("127.0.0.2"), "{events}");
    let calls: i64 = db
        .query_row(
            "SELECT count(*) FROM calls WHERE answered_at IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .expect("calls");
    assert_eq!(calls, 1);
}

/// A connection the gateway has taken up: it answers a keep-alive ping (CRLF CRLF) with CRLF.
fn pinged(mut stream: &TcpStream) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut pong = [0u8; 2];
    stream.write_all(b"\r\n\r\n").is_ok() && stream.read_exact(&mut pong).is_ok()
}

/// Idle connections from two hosts hold the gateway's whole TCP total: a TCP 112 call is not
/// refused; the connection idle longest (and carrying no call) is closed to make room.
#[test]
fn at_the_tcp_total_an_idle_connection_makes_room_for_a_call() {
    let dir = tempfile::tempdir().expect("dir");
    let config = limits_config(
        dir.path(),
        "tcp_per_source = 10\ntcp_max_connections = 20\ntcp_idle_s = 120\n",
    );
    let mut gw = Gateway::start(&["--config", &config]);
    let idle: Vec<TcpStream> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .flat_map(|source| (0..10).filter_map(|_| connect_from(source, gw.tcp)))
        .collect();
    assert_eq!(idle.len(), 20);
    assert!(
        idle.iter().all(pinged),
        "the gateway took up every connection"
    );
    let out = gw.sipp("uac_call.xml", true, &["-s", "112", "-m", "1", "-d", "500"]);
    assert_sipp_ok(
        &out,
        "a TCP 112 call with the TCP total held by idle connections",
    );
    wait_until(
        "an idle connection to be closed",
        Duration::from_secs(10),
        || idle.iter().any(closed_by_peer),
    );
    assert_eq!(idle.iter().filter(|s| closed_by_peer(s)).count(), 1);
    gw.stop();
    let events = rate_limited_events(&gw.db());
    assert!(events.contains("closed to make room"), "{events}");
}
