//! Starts the real `siaga` binary on loopback port 0 and drives it with real peers (SIPp).
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod console;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub mod pg;

/// A running gateway with its own database and recordings directory.
pub struct Gateway {
    child: Option<Child>,
    /// Lines the gateway prints on stdout after start-up (reload results), in order.
    stdout_lines: std::sync::mpsc::Receiver<String>,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    /// The HTTP listener (metrics, health): on a free loopback port unless `extra` sets one.
    pub http: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    pub stderr_log: PathBuf,
}

impl Gateway {
    /// Starts `siaga serve` with UDP and TCP listeners on 127.0.0.1:0 and `extra` flags.
    pub fn start(extra: &[&str]) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, extra)
    }

    /// Starts again on an existing directory (after a crash), keeping db and recordings.
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Gateway {
        Self::start_on(dir, "127.0.0.1:0", "127.0.0.1:0", extra)
    }

    /// As [`Gateway::start_in`], listening on given addresses (a restart on the same ports).
    pub fn start_on(dir: tempfile::TempDir, udp: &str, tcp: &str, extra: &[&str]) -> Gateway {
        Self::launch(dir, udp, tcp, extra, None, &[])
    }

    /// Starts under an open-file limit (soft and hard), as a service manager may set it.
    pub fn start_with_file_limit(extra: &[&str], nofile: u64) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::launch(dir, "127.0.0.1:0", "127.0.0.1:0", extra, Some(nofile), &[])
    }

    /// Starts with extra environment variables, as a service manager sets them
    /// (`NOTIFY_SOCKET`, `WATCHDOG_USEC`).
    pub fn start_with_env(dir: tempfile::TempDir, extra: &[&str], env: &[(&str, &str)]) -> Gateway {
        Self::launch(dir, "127.0.0.1:0", "127.0.0.1:0", extra, None, env)
    }

    fn launch(
        dir: tempfile::TempDir,
        udp: &str,
        tcp: &str,
        extra: &[&str],
        nofile: Option<u64>,
        env: &[(&str, &str)],
    ) -> Gateway {
        let db = dir.path().join("siaga.db");
        let recordings = dir.path().join("recordings");
        let stderr_log = dir
            .path()
            .join(format!("gateway-{}.log", std::process::id()));
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_log)
            .expect("log file");
        let mut command = match nofile {
            // util-linux prlimit execs the gateway: the child's pid is the gateway's.
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}"))
                    .arg("--")
                    .arg(env!("CARGO_BIN_EXE_siaga"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_siaga")),
        };
        let mut child = command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("serve")
            .arg("--listen")
            .arg(format!("udp:{udp}"))
            .arg("--listen")
            .arg(format!("tcp:{tcp}"))
            .arg("--db")
            .arg(&db)
            // Nodes sharing one recordings directory pass their own.
            .args(if extra.contains(&"--recordings") {
                Vec::new()
            } else {
                vec![
                    std::ffi::OsString::from("--recordings"),
                    recordings.into_os_string(),
                ]
            })
            .args(extra)
            // Side-by-side gateways must not all want the default HTTP port.
            .args(if extra.contains(&"--http") {
                &[][..]
            } else {
                &["--http", "127.0.0.1:0"][..]
            })
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start siaga");
        let stdout = child.stdout.take().expect("stdout");
        let mut udp = None;
        let mut tcp = None;
        let mut http = None;
        let (line_tx, stdout_lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        // The gateway prints its bound addresses before serving: no sleeping, just reading.
        while let Ok(line) = stdout_lines.recv_timeout(std::time::Duration::from_secs(30)) {
            if let Some(a) = line.strip_prefix("listening http ") {
                http = a.parse().ok();
            } else if let Some(a) = line.strip_prefix("listening udp ") {
                udp = a.parse().ok();
            } else if let Some(a) = line.strip_prefix("listening tcp ") {
                tcp = a.parse().ok();
            }
            if udp.is_some() && tcp.is_some() {
                break;
            }
        }
        let (Some(udp), Some(tcp)) = (udp, tcp) else {
            let log = std::fs::read_to_string(&stderr_log).unwrap_or_default();
            panic!("gateway did not start:\n{log}");
        };
        Gateway {
            child: Some(child),
            stdout_lines,
            udp,
            tcp,
            http,
            dir,
            stderr_log,
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("siaga.db")
    }

    pub fn recordings(&self) -> PathBuf {
        self.dir.path().join("recordings")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// SIGHUP (reload the dialplan); returns the gateway's verdict line ("dialplan reloaded…"
    /// or "dialplan rejected…") once it has acted.
    pub fn hup(&mut self) -> String {
        signal(self.pid(), "HUP");
        loop {
            let line = self
                .stdout_lines
                .recv_timeout(std::time::Duration::from_secs(30))
                .expect("the gateway answers a SIGHUP");
            if line.starts_with("dialplan ") {
                return line;
            }
        }
    }

    /// Waits (up to 30 s) for a line the gateway prints on stdout that starts with `prefix`,
    /// skipping the lines before it; returns it.
    pub fn stdout_line(&mut self, prefix: &str) -> String {
        loop {
            let line = self
                .stdout_lines
                .recv_timeout(std::time::Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("the gateway never printed {prefix:?}"));
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// Graceful stop (SIGTERM): the gateway drains and commits its call log before exiting.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "TERM");
            let status = child.wait().expect("wait");
            assert!(
                status.success(),
                "gateway exited with {status}: {}",
                self.log()
            );
        }
    }

    /// `kill -9`: what a crash looks like. Returns the directory for a restart.
    pub fn kill9(mut self) -> tempfile::TempDir {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "KILL");
            let _ = child.wait();
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("dir"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Opens the call log (read-write: WAL readers need the -shm file).
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db_path()).expect("open db")
    }

    /// Waits (up to 30 s) until call `call`'s row has its end reason, and returns it. The
    /// gateway logs a call's end after the last SIP exchange, so a SIPp peer can exit before the
    /// row is written; everything the call logged before its end is in by then.
    pub fn wait_call_ended(&self, call: i64) -> String {
        let mut reason = None;
        wait_until(
            &format!("call {call} ended in the log"),
            std::time::Duration::from_secs(30),
            || {
                reason = self
                    .db()
                    .query_row("SELECT end_reason FROM calls WHERE id = ?1", [call], |r| {
                        r.get::<_, Option<String>>(0)
                    })
                    .ok()
                    .flatten();
                reason.is_some()
            },
        );
        reason.unwrap_or_default()
    }

    /// Runs a SIPp scenario from tests/sipp against the gateway's UDP (or TCP) address.
    pub fn sipp(&self, scenario: &str, tcp: bool, args: &[&str]) -> Output {
        let target = if tcp { self.tcp } else { self.udp };
        sipp(target, scenario, tcp, args)
    }

    /// `siaga calls …` against this gateway's database.
    pub fn calls_cli(&self, args: &[&str]) -> String {
        let mut args = args.to_vec();
        args.insert(0, "calls");
        self.cli(&args)
    }

    /// `siaga …` (a command reading the call log: calls, report) against this gateway's
    /// database; fails the test if it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_siaga"))
            .args(args)
            .arg("--db")
            .arg(self.db_path())
            .output()
            .expect("run siaga");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `siaga calls … --json` against this gateway's database, parsed.
    pub fn calls_json(&self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.calls_cli(&args)).expect("calls … --json prints JSON")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// The number every scenario in tests/sipp calls from.
pub const SCENARIO_NUMBER: &str = "+6281234567890";

/// A copy of a tests/sipp scenario in `dir` calling from `number` instead.
pub fn scenario_from_number(dir: &Path, scenario: &str, number: &str) -> PathBuf {
    let text = std::fs::read_to_string(scenario_path(scenario)).expect("scenario");
    assert!(
        text.contains(SCENARIO_NUMBER),
        "{scenario} has a caller number"
    );
    let path = dir.join(format!("{number}-{scenario}"));
    std::fs::write(&path, text.replace(SCENARIO_NUMBER, number)).expect("write scenario");
    path
}

/// GET `path` over HTTP/1.1: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the HTTP listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

pub fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// Runs SIPp as a UAC with a bounded timeout and returns its output (exit code 0 = every call
/// succeeded).
pub fn sipp(target: SocketAddr, scenario: &str, tcp: bool, args: &[&str]) -> Output {
    let (mut cmd, trace_dir) = sipp_command(target, scenario, tcp, args);
    let mut out = cmd
        .output()
        .expect("sipp is installed (apt-get install sip-tester)");
    // Keep SIPp's error log in the output for a failing assertion to show.
    for entry in std::fs::read_dir(trace_dir.path())
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.file_name().to_string_lossy().ends_with("_errors.log") {
            out.stderr
                .extend_from_slice(&std::fs::read(entry.path()).unwrap_or_default());
        }
    }
    out
}

/// The SIPp UAC command [`sipp`] runs (in the returned trace directory), for a test that
/// starts it and stops it itself.
pub fn sipp_command(
    target: SocketAddr,
    scenario: &str,
    tcp: bool,
    args: &[&str],
) -> (Command, tempfile::TempDir) {
    let trace_dir = tempfile::tempdir().expect("trace dir");
    let mut cmd = Command::new("sipp");
    // SIPp's media and control ports default to fixed numbers (6000, 8888): give each run
    // free ones so tests can run in parallel.
    let media_port = free_udp_port_pair();
    let control_port = free_udp_port_pair();
    cmd.current_dir(trace_dir.path())
        .arg(target.to_string())
        .arg("-i")
        .arg("127.0.0.1")
        .args([
            "-mp",
            &media_port.to_string(),
            "-cp",
            &control_port.to_string(),
        ])
        .args([
            "-timeout",
            "90s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        // Like a phone, answer the gateway's in-dialog OPTIONS (it probes callers that send
        // no RTP, as SIPp callers without a pcap do) with 200.
        .arg("-aa");
    if !scenario.is_empty() {
        cmd.arg("-sf").arg(scenario_path(scenario));
    }
    if tcp {
        cmd.args(["-t", "t1"]);
    }
    cmd.args(args).stdin(Stdio::null());
    (cmd, trace_dir)
}

/// The first of four UDP ports free a moment ago, even (SIPp's media port pair and the one
/// after next). Ports are handed out in blocks below the kernel's ephemeral range (32768 and
/// up by default) and the gateways' RTP range (40000–49999), where nothing binds by chance: no two calls in this process get the same
/// block — a SIPp run's media and control ports, or two agencies of one plan, once could, when
/// each was a port the kernel had just handed out and taken back.
pub fn free_udp_port_pair() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const BLOCKS: u32 = (32_000 - FIRST) / 4;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Another test binary running beside this one starts elsewhere in the range.
    let start = std::process::id() % BLOCKS;
    for _ in 0..BLOCKS {
        let block = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % BLOCKS;
        let Ok(port) = u16::try_from(FIRST + block * 4) else {
            continue;
        };
        let free = (0..4).all(|i| std::net::UdpSocket::bind(("127.0.0.1", port + i)).is_ok());
        if free {
            return port;
        }
    }
    panic!("no free UDP ports");
}

/// Counts of the call log: calls by end reason, and SIP messages linked to calls.
pub fn end_reasons(db: &rusqlite::Connection) -> Vec<(String, i64)> {
    let mut stmt = db
        .prepare("SELECT coalesce(end_reason, 'live'), count(*) FROM calls GROUP BY 1 ORDER BY 1")
        .expect("query");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// The details of the gateway events of `kind` in the call log at `db`, in order.
pub fn gateway_events(db: &Path, kind: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).expect("db");
    let mut stmt = conn
        .prepare("SELECT detail FROM gateway_events WHERE kind = ?1 ORDER BY id")
        .expect("query");
    stmt.query_map([kind], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// `(at, detail)` of call 1's timeline events of `kind`, in order.
pub fn events(db: &rusqlite::Connection, kind: &str) -> Vec<(i64, String)> {
    db.prepare("SELECT at, detail FROM call_events WHERE call = 1 AND kind = ?1 ORDER BY id")
        .expect("query")
        .query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}

pub fn assert_sipp_ok(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The usual reason on a developer's machine; say it first instead of under the screen dump.
    let hint = if stderr.contains("Can't create raw") {
        "\nSIPp could not open a raw socket for play_pcap_audio: run the tests as root, or \
         `sudo setcap cap_net_raw+ep \"$(command -v sipp)\"`"
    } else {
        ""
    };
    assert!(
        out.status.success(),
        "{what}: sipp exit {:?}{hint}\nstdout tail:\n{}\nstderr:\n{stderr}",
        out.status.code(),
        tail(&String::from_utf8_lossy(&out.stdout), 30),
    );
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A UDP port that was free a moment ago (for SIPp agencies the plan points at): the first of
/// a block of [`free_udp_port_pair`], so never one another call in this process got.
pub fn free_udp_port() -> u16 {
    free_udp_port_pair()
}

/// The agencies of the default plan, moved to free ports so tests can run side by side.
pub struct AgencyPorts {
    pub calltaker: u16,
    pub calltaker2: u16,
    pub police: u16,
    pub police2: u16,
    pub fire: u16,
    pub psc119: u16,
    pub hospital: u16,
}

impl AgencyPorts {
    pub fn new() -> Self {
        Self {
            calltaker: free_udp_port(),
            calltaker2: free_udp_port(),
            police: free_udp_port(),
            police2: free_udp_port(),
            fire: free_udp_port(),
            psc119: free_udp_port(),
            hospital: free_udp_port(),
        }
    }
}

/// Writes the default plan with its agencies on `ports`, prompts from the repository, and
/// text replacements (e.g. shorter ring timeouts or queue announcements) for one test.
pub fn test_plan(dir: &Path, ports: &AgencyPorts, edits: &[(&str, &str)]) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(root.join("dialplans/default.toml")).expect("plan");
    let moves = [
        ("127.0.0.1:5080", ports.calltaker),
        ("127.0.0.1:5089", ports.calltaker2),
        ("127.0.0.1:5081", ports.police),
        ("127.0.0.1:5082", ports.police2),
        ("127.0.0.1:5083", ports.fire),
        ("127.0.0.1:5084", ports.psc119),
        ("127.0.0.1:5085", ports.hospital),
    ];
    // Two passes through placeholders: a new port must never be rewritten by a later move
    // (a free port can be 5081).
    for (i, (from, _)) in moves.iter().enumerate() {
        text = text.replace(from, &format!("@@agency{i}@@"));
    }
    for (i, (_, to)) in moves.iter().enumerate() {
        text = text.replace(&format!("@@agency{i}@@"), &format!("127.0.0.1:{to}"));
    }
    text = text.replace(
        "prompt_dir = \"prompts\"",
        &format!(
            "prompt_dir = {:?}",
            root.join("dialplans/prompts").display().to_string()
        ),
    );
    for (from, to) in edits {
        assert!(text.contains(from), "plan edit {from:?} does not apply");
        text = text.replacen(from, to, 1);
    }
    let path = dir.join("plan.toml");
    std::fs::write(&path, text).expect("write plan");
    path
}

/// A SIPp agency (UAS) on `port`, run from tests/data/media so its scenarios find their
/// voice file. Returns the child; `finish` waits for it.
pub fn sipp_agency(scenario: &str, port: u16, args: &[&str]) -> Child {
    let media = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/media");
    let media_port = free_udp_port_pair();
    let control_port = free_udp_port_pair();
    Command::new("sipp")
        .current_dir(&media)
        .arg("-sf")
        .arg(scenario_path(scenario))
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-mp",
            &media_port.to_string(),
            "-cp",
            &control_port.to_string(),
        ])
        .args(["-timeout", "90s", "-timeout_error", "-nostdin", "-aa"])
        .args(["-trace_err", "-error_file"])
        .arg(std::env::temp_dir().join(format!("sipp-agency-{port}-errors.log")))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp is installed (apt-get install sip-tester)")
}

/// Waits for a SIPp agency and asserts every call it took succeeded.
pub fn finish_agency(child: Child, what: &str) {
    let out = child.wait_with_output().expect("wait for sipp");
    assert_sipp_ok(&out, what);
}

/// A caller SIPp run from tests/data/media (for scenarios that stream a voice).
pub fn sipp_caller_with_voice(target: SocketAddr, scenario: &str, args: &[&str]) -> Output {
    let media = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/media");
    sipp_caller_streaming_from(&media, target, &scenario_path(scenario), args)
}

/// A caller SIPp run from `media` (where its scenario's `rtp_stream` files are).
pub fn sipp_caller_streaming_from(
    media: &Path,
    target: SocketAddr,
    scenario: &Path,
    args: &[&str],
) -> Output {
    let media_port = free_udp_port_pair();
    let control_port = free_udp_port_pair();
    Command::new("sipp")
        .current_dir(media)
        .arg(target.to_string())
        .arg("-sf")
        .arg(scenario)
        .args(["-i", "127.0.0.1"])
        .args([
            "-mp",
            &media_port.to_string(),
            "-cp",
            &control_port.to_string(),
        ])
        .args(["-timeout", "90s", "-timeout_error", "-nostdin"])
        .args(["-trace_err", "-error_file"])
        .arg(std::env::temp_dir().join(format!("sipp-caller-{control_port}-errors.log")))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("sipp is installed (apt-get install sip-tester)")
}

/// Waits (bounded) until `condition` holds, checking every 50 ms: for states only the call log
/// shows (calls answered), not a fixed sleep.
pub fn wait_until(what: &str, timeout: std::time::Duration, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The counts of traffic outside every call the gateway logged (`noncall_counts` gateway
/// events, one per source and window), summed per key: `options`, `garbage`,
/// `non_emergency_invite`, `stray_ack`, …, `unanswered`, `sampled`.
pub fn noncall_counts(db: &rusqlite::Connection) -> std::collections::BTreeMap<String, u64> {
    let mut stmt = db
        .prepare("SELECT detail FROM gateway_events WHERE kind = 'noncall_counts'")
        .expect("query");
    let details: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    let mut sums = std::collections::BTreeMap::new();
    for detail in details {
        for (key, value) in detail.split(' ').filter_map(|kv| kv.split_once('=')) {
            if let Ok(n) = value.parse::<u64>()
                && key != "window_s"
            {
                *sums.entry(key.to_owned()).or_default() += n;
            }
        }
    }
    sums
}
