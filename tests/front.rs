//! Two Siaga nodes behind a real Kamailio running `deploy/kamailio/kamailio.cfg`: the
//! dispatcher spreads calls over the nodes, stops sending calls to a node that cannot keep
//! their records (it answers the front's OPTIONS 503) or that died, fails a call over to the
//! other node when its node does not answer, and takes a node back once it answers again.
//! SIPp is the carrier.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::pg::{PgCluster, db_name};
use common::{Gateway, assert_sipp_ok, free_udp_port, sipp, wait_until};

/// Kamailio with the shipped front configuration, in the foreground, on a free port.
struct Front {
    child: Child,
    addr: SocketAddr,
    ctl: String,
    _dir: tempfile::TempDir,
}

impl Front {
    fn start(nodes: &[SocketAddr]) -> Front {
        let dir = tempfile::tempdir().expect("dir");
        let list = dir.path().join("nodes.list");
        let entries: String = nodes.iter().map(|n| format!("1 sip:{n} 0 0\n")).collect();
        std::fs::write(&list, entries).expect("node list");
        let port = free_udp_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let ctl = format!("unix:{}", dir.path().join("front.ctl").display());
        let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kamailio/kamailio.cfg");
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-w"])
            .arg(dir.path())
            .arg("-P")
            .arg(dir.path().join("k.pid"))
            .args(["-A", &format!("LISTEN=udp:{addr}")])
            .args(["-A", &format!("DISPATCHER=\"{}\"", list.display())])
            .args(["-A", &format!("FALLBACK_NODE=\"sip:{}\"", nodes[0])])
            .args(["-A", &format!("CTL=\"{ctl}\"")])
            .args([
                "-A",
                &format!("FIFO=\"{}\"", dir.path().join("front.fifo").display()),
            ])
            .args(["-A", "CHILDREN=2"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("kamailio.log")).expect("log"))
            .spawn()
            .expect("kamailio is installed (apt-get install kamailio)");
        Front {
            child,
            addr,
            ctl,
            _dir: dir,
        }
    }

    /// The dispatcher's flags for each node ("AP": active and probed; "IP": inactive).
    fn node_flags(&self) -> Vec<(String, String)> {
        let out = Command::new("kamcmd")
            .args(["-s", &self.ctl, "dispatcher.list"])
            .output()
            .expect("kamcmd is installed with kamailio");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut flags = Vec::new();
        let mut uri = None;
        for line in text.lines().map(str::trim) {
            if let Some(u) = line.strip_prefix("URI: ") {
                uri = Some(u.trim_start_matches("sip:").to_owned());
            } else if let (Some(f), Some(u)) = (line.strip_prefix("FLAGS: "), uri.take()) {
                flags.push((u, f.to_owned()));
            }
        }
        flags
    }

    fn wait_flags(&self, node: SocketAddr, wanted: &str) {
        wait_until(
            &format!("the dispatcher's flags {wanted} for {node}"),
            Duration::from_secs(20),
            || {
                self.node_flags()
                    .iter()
                    .any(|(n, f)| *n == node.to_string() && f == wanted)
            },
        );
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn node(dir: tempfile::TempDir, udp: &str) -> Gateway {
    let config = dir.path().join("siaga.toml");
    std::fs::write(&config, "[sip]\nload_balancers = [\"127.0.0.1/32\"]\n").expect("config");
    let config = config.display().to_string();
    Gateway::start_on(dir, udp, "127.0.0.1:0", &["--config", &config])
}

fn answered_calls(gw: &Gateway) -> i64 {
    gw.db()
        .query_row(
            "SELECT count(*) FROM calls WHERE answered_at IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .expect("count")
}

fn calls_through(front: &Front, calls: u32, what: &str) {
    let n = calls.to_string();
    assert_sipp_ok(
        &sipp(
            front.addr,
            "uac_call.xml",
            false,
            &["-s", "112", "-m", &n, "-r", "20", "-d", "100"],
        ),
        what,
    );
}

#[test]
fn the_front_spreads_calls_and_skips_a_node_that_cannot_record_until_it_can() {
    let a = node(tempfile::tempdir().expect("dir"), "127.0.0.1:0");
    let b = node(tempfile::tempdir().expect("dir"), "127.0.0.1:0");
    let front = Front::start(&[a.udp, b.udp]);
    front.wait_flags(a.udp, "AP");
    front.wait_flags(b.udp, "AP");

    calls_through(&front, 20, "20 calls through the front");
    let (on_a, on_b) = (answered_calls(&a), answered_calls(&b));
    assert_eq!(on_a + on_b, 20, "every call answered by one node");
    assert!(on_a >= 5 && on_b >= 5, "spread over both: {on_a} / {on_b}");

    // B's recordings go away: it answers the front's probe 503 and gets no new calls.
    let recordings = b.recordings();
    std::fs::remove_dir_all(&recordings).expect("remove recordings");
    std::fs::write(&recordings, b"not a directory").expect("file in its place");
    front.wait_flags(b.udp, "IP");
    calls_through(&front, 10, "10 calls while B cannot record");
    assert_eq!(
        answered_calls(&b),
        on_b,
        "no call to the node that cannot record"
    );
    assert_eq!(answered_calls(&a), on_a + 10);

    // Back: B takes calls again.
    std::fs::remove_file(&recordings).expect("remove the file");
    std::fs::create_dir(&recordings).expect("recordings back");
    front.wait_flags(b.udp, "AP");
    calls_through(&front, 10, "10 calls after B recovered");
    assert!(answered_calls(&b) > on_b, "B rejoined");
}

#[test]
fn a_killed_node_loses_only_its_own_calls_new_calls_fail_over_and_it_rejoins() {
    let a = node(tempfile::tempdir().expect("dir"), "127.0.0.1:0");
    let b = node(tempfile::tempdir().expect("dir"), "127.0.0.1:0");
    let front = Front::start(&[a.udp, b.udp]);
    front.wait_flags(a.udp, "AP");
    front.wait_flags(b.udp, "AP");
    let b_udp = b.udp;

    // B dies (kill -9) before the front's next probe: the next call sent to it gets no 100
    // Trying and goes to A; from then on every call goes to A.
    let b_dir = b.kill9();
    let started = Instant::now();
    calls_through(&front, 10, "10 calls right after B was killed");
    let failover_run = started.elapsed();
    assert_eq!(answered_calls(&a), 10, "A answered every call");
    front.wait_flags(b_udp, "IP");

    // B restarts on its address and the front takes it back.
    let b = node(b_dir, &b_udp.to_string());
    front.wait_flags(b_udp, "AP");
    let before = answered_calls(&b);
    calls_through(&front, 10, "10 calls after B restarted");
    assert!(
        answered_calls(&b) > before,
        "B rejoined (the 10 calls after the kill took {failover_run:?})"
    );
}

/// A node of a cluster on one PostgreSQL call log, writing to the recordings directory all
/// nodes share (a network file system mounted at the same path on every node).
fn shared_node(url: &str, name: &str, recordings: &Path) -> Gateway {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("siaga.toml");
    let text = format!(
        "[sip]\nload_balancers = [\"127.0.0.1/32\"]\n[log]\nurl = \"{url}\"\nspill_dir = \"spill\"\n[node]\nname = \"{name}\"\n"
    );
    std::fs::write(&config, text).expect("config");
    let config = config.display().to_string();
    let recordings = recordings.display().to_string();
    Gateway::start_in(dir, &["--config", &config, "--recordings", &recordings])
}

fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn behind_the_front_on_one_log_every_call_and_its_recording_is_found_whichever_node_took_it() {
    let cluster = PgCluster::start();
    let url = cluster.create_db();
    let shared = tempfile::tempdir().expect("shared recordings");
    let a = shared_node(&url, "a", shared.path());
    let b = shared_node(&url, "b", shared.path());
    let front = Front::start(&[a.udp, b.udp]);
    front.wait_flags(a.udp, "AP");
    front.wait_flags(b.udp, "AP");

    calls_through(&front, 10, "10 calls through the front");
    wait_until(
        "every call ended in the shared log",
        Duration::from_secs(30),
        || {
            cluster
            .try_psql(db_name(&url), "SELECT count(*) FROM calls WHERE ended_at IS NOT NULL AND recording_sha256 IS NOT NULL")
            .is_ok_and(|n| n == "10")
        },
    );
    let by_node = cluster.psql(
        db_name(&url),
        "SELECT node || ':' || count(*) FROM calls GROUP BY node ORDER BY node",
    );
    let nodes: Vec<&str> = by_node.lines().collect();
    assert_eq!(nodes.len(), 2, "both nodes took calls: {by_node}");

    // A supervisor's CLI anywhere reads every call from the shared log, and the recording it
    // names is there and matches its digest, whichever node recorded it.
    let listed = a.calls_json(&["list", "--log-url", &url]);
    let rows = listed.as_array().expect("a list");
    assert_eq!(rows.len(), 10, "{listed:#}");
    for row in rows {
        let id = row["id"].to_string();
        let shown = b.calls_json(&["show", &id, "--log-url", &url]);
        let text = shown.to_string();
        let path = shown["recording_path"]
            .as_str()
            .unwrap_or_else(|| panic!("call {id} names its recording: {text}"));
        let digest = shown["recording_sha256"]
            .as_str()
            .unwrap_or_else(|| panic!("call {id} has its digest: {text}"));
        let path = Path::new(path);
        assert!(path.starts_with(shared.path()), "{}", path.display());
        assert_eq!(sha256_hex(path), digest, "call {id}'s recording is intact");
    }
}
