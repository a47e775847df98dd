//! Running under systemd and behind a load balancer: the gateway speaks systemd's notify
//! protocol (READY=1 once it takes calls, WATCHDOG=1 from its loop, STOPPING=1 when it
//! drains, STATUS= when storage fails), and its OPTIONS answer tells a front such as
//! Kamailio's dispatcher (`[sip] load_balancers`) whether to send it new calls. The notify socket here is the same
//! kind systemd gives a `Type=notify` service (a Unix datagram socket in NOTIFY_SOCKET).

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Gateway, assert_sipp_ok};

/// Receives notify datagrams until one satisfies `wanted` (30 s at most); returns it and
/// everything seen before it.
fn until(
    socket: &UnixDatagram,
    what: &str,
    wanted: impl Fn(&str) -> bool,
) -> (String, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        if wanted(&message) {
            return (message, seen);
        }
        seen.push(message);
    }
    panic!("no notify message {what} within 30 s; seen: {seen:?}");
}

#[test]
fn systemd_hears_ready_watchdog_and_stopping_and_options_follows_the_storage() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let socket_env = socket_path.to_str().expect("utf-8 path").to_owned();
    // The load balancer in front is 127.0.0.1; a carrier's SBC probing directly is 127.0.0.2.
    let config = dir.path().join("siaga.toml");
    std::fs::write(&config, "[sip]\nload_balancers = [\"127.0.0.1/32\"]\n").expect("config");
    let config = config.to_str().expect("utf-8 path").to_owned();
    // WatchdogSec=0.4 s: the gateway must ping every 0.2 s.
    let mut gw = Gateway::start_with_env(
        dir,
        &["--config", &config],
        &[("NOTIFY_SOCKET", &socket_env), ("WATCHDOG_USEC", "400000")],
    );

    let (ready, _) = until(&socket, "READY=1", |m| m.contains("READY=1"));
    assert!(
        ready.contains("STATUS=taking calls on udp "),
        "the status names the listeners: {ready}"
    );
    // The watchdog keeps coming while the gateway runs.
    let started = Instant::now();
    for _ in 0..5 {
        until(&socket, "WATCHDOG=1", |m| m.contains("WATCHDOG=1"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "five pings took {:?} with WatchdogSec 0.4 s",
        started.elapsed()
    );
    assert_sipp_ok(
        &gw.sipp("uac_options.xml", false, &["-m", "1"]),
        "OPTIONS while healthy: 200",
    );

    // The recordings directory goes away (a lost mount): OPTIONS says 503 so the front sends
    // new calls elsewhere, and systemd's status says why.
    let recordings = gw.recordings();
    std::fs::remove_dir_all(&recordings).expect("remove recordings");
    std::fs::write(&recordings, b"not a directory").expect("file in its place");
    let (status, _) = until(&socket, "a status about storage", |m| {
        m.contains("STATUS=call log or recordings not writable")
    });
    assert!(status.contains("OPTIONS answers 503"), "{status}");
    assert_sipp_ok(
        &gw.sipp("uac_options_503.xml", false, &["-m", "1"]),
        "the load balancer's OPTIONS while the recordings cannot be written: 503",
    );
    assert_sipp_ok(
        &gw.sipp("uac_options.xml", false, &["-m", "1", "-i", "127.0.0.2"]),
        "a carrier's OPTIONS meanwhile: 200 (it has no other node to send 112 to)",
    );
    // A caller that reaches this node anyway is answered (emergency first).
    assert_sipp_ok(
        &gw.sipp(
            "uac_call.xml",
            false,
            &["-s", "112", "-m", "1", "-d", "200"],
        ),
        "a 112 call while the recordings cannot be written",
    );

    std::fs::remove_file(&recordings).expect("remove the file");
    std::fs::create_dir(&recordings).expect("recordings back");
    until(&socket, "a status about storage back", |m| {
        m.contains("STATUS=call log and recordings take writes again")
    });
    assert_sipp_ok(
        &gw.sipp("uac_options.xml", false, &["-m", "1"]),
        "OPTIONS when storage is back: 200",
    );

    // SIGTERM: systemd hears that the service is stopping (draining) before it exits.
    common::signal(gw.pid(), "TERM");
    let (stopping, _) = until(&socket, "STOPPING=1", |m| m.contains("STOPPING=1"));
    assert!(stopping.contains("STATUS=draining"), "{stopping}");
    gw.stop();
    assert_eq!(common::gateway_events(&gw.db_path(), "unready").len(), 1);
    assert_eq!(common::gateway_events(&gw.db_path(), "ready").len(), 1);
    let answered: i64 = gw
        .db()
        .query_row(
            "SELECT count(*) FROM calls WHERE answered_at IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(
        answered, 1,
        "the call made while unready was answered and logged"
    );
}

/// `systemd-analyze verify` reports what systemd would ignore in a unit (a misspelt key or
/// value is only a warning to systemd, so the service would start without it).
fn systemd_verify(unit_text: &str, dir: &Path) -> String {
    let unit = dir.join("siaga.service");
    std::fs::write(&unit, unit_text).expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("run systemd-analyze (Debian package systemd)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_shipped_unit_file_is_one_systemd_reads_without_complaint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/siaga.service"),
    )
    .expect("deploy/systemd/siaga.service");
    assert!(shipped.contains("Type=notify") && shipped.contains("WatchdogSec="));
    // systemd checks that ExecStart names an executable: point it at the one just built.
    let here = shipped.replace("/usr/local/bin/siaga", env!("CARGO_BIN_EXE_siaga"));
    let complaints = systemd_verify(&here, dir.path());
    assert!(
        complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
    // The check can fail: a misspelt service type is reported.
    let broken = here.replace("Type=notify", "Type=notfy");
    assert!(systemd_verify(&broken, dir.path()).contains("Failed to parse service type"));
}
