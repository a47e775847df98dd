//! Gateways on one shared PostgreSQL call log (issue 13), each test on a throw-away cluster
//! of its own (tests/common/pg.rs): SIPp calls land in PostgreSQL with their node's name and
//! `siaga calls list/show` read them back; two nodes, one killed with `kill -9` while it holds
//! a call, the other closes that call as `node_lost` and puts it on the call-back list within
//! 10 s, and the killed node rejoins; PostgreSQL restarted while calls run loses no record.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::pg::{PgCluster, db_name};
use common::{Gateway, assert_sipp_ok, http_get, wait_until};

/// A node's config file in `dir`: the shared log, a spill directory of its own, its name.
fn node_config(dir: &Path, url: &str, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "[log]\nurl = \"{url}\"\nspill_dir = \"spill-{name}\"\n\n[node]\nname = \"{name}\"\n"
    );
    std::fs::write(&path, text).expect("config");
    path
}

fn start_node(config: &Path) -> Gateway {
    Gateway::start(&["--config", config.to_str().expect("utf8 path")])
}

/// One value (or rows joined by newlines) from the test's database.
fn sql(cluster: &PgCluster, url: &str, query: &str) -> String {
    cluster.psql(db_name(url), query)
}

fn count(cluster: &PgCluster, url: &str, query: &str) -> i64 {
    sql(cluster, url, query).parse().expect("a count")
}

/// [`count`] while the gateway may not have created its tables yet: 0 then.
fn count_soon(cluster: &PgCluster, url: &str, query: &str) -> i64 {
    cluster
        .try_psql(db_name(url), query)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn sipp_calls_land_in_postgresql_with_their_node_and_calls_list_and_show_read_them_back() {
    let cluster = PgCluster::start();
    let url = cluster.create_db();
    let config_dir = tempfile::tempdir().expect("dir");
    let mut gw = start_node(&node_config(config_dir.path(), &url, "siaga-a"));
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "5", "-l", "5", "-d", "200"],
    );
    assert_sipp_ok(&out, "5 calls");
    gw.stop();

    let listed = gw.calls_json(&["list", "--log-url", &url]);
    let rows = listed.as_array().expect("a list");
    assert_eq!(rows.len(), 5, "{listed:#}");
    let number: i64 = sql(
        &cluster,
        &url,
        "SELECT number FROM nodes WHERE name = 'siaga-a'",
    )
    .parse()
    .expect("node number");
    for row in rows {
        assert_eq!(row["end_reason"], "abandoned_in_ivr", "{row:#}");
        assert_eq!(row["node"], "siaga-a", "{row:#}");
        let id = row["id"].as_i64().expect("id");
        assert_eq!(
            id / 1_000_000_000_000,
            number,
            "call {id} in the node's block"
        );
    }
    let id = rows[0]["id"].as_i64().expect("id").to_string();
    let shown = gw.calls_json(&["show", &id, "--log-url", &url]);
    assert_eq!(
        shown["id"].as_i64().map(|i| i.to_string()),
        Some(id.clone())
    );
    let firsts: Vec<&str> = shown["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["first_line"].as_str())
        .collect();
    assert!(
        firsts.iter().any(|l| l.starts_with("INVITE sip:112@"))
            && firsts.iter().any(|l| l.starts_with("BYE ")),
        "{firsts:?}"
    );
    let text = gw.calls_cli(&["show", &id, "--log-url", &url]);
    assert!(text.contains("abandoned_in_ivr"), "{text}");
    // The other readers run on PostgreSQL too.
    let stats = gw.calls_json(&["stats", "--log-url", &url]);
    assert_eq!(stats["calls"], 5, "{stats:#}");
    let report = gw.cli(&["report", "--log-url", &url, "--format", "csv"]);
    assert!(!report.is_empty());
    // Supervisors' lists and corrections are written to it as well.
    gw.cli(&[
        "numbers",
        "block",
        "0812-3456-789",
        "--for",
        "2h",
        "--by",
        "sup",
        "--why",
        "pranks",
        "--log-url",
        &url,
    ]);
    let listed = gw.cli(&["numbers", "list", "--json", "--log-url", &url]);
    assert!(listed.contains("\"block\""), "{listed}");
    gw.calls_cli(&[
        "classify",
        &id,
        "prank",
        "--by",
        "sup",
        "--why",
        "laughing",
        "--log-url",
        &url,
    ]);
    let shown = gw.calls_json(&["show", &id, "--log-url", &url]);
    assert_eq!(shown["class"]["current"], "prank", "{:#}", shown["class"]);
    let events = sql(
        &cluster,
        &url,
        "SELECT kind FROM gateway_events ORDER BY id",
    );
    assert!(
        events.starts_with("start") && events.ends_with("stop"),
        "{events}"
    );
    // Each gateway event says which node logged it.
    let text = gw.calls_cli(&["events", "--log-url", &url]);
    assert!(text.lines().all(|l| l.contains("[siaga-a] ")), "{text}");
}

/// A cluster, its database, and the configs of nodes `a` and `b` (`a.toml`, `b.toml`).
fn cluster_for_two() -> (PgCluster, String, tempfile::TempDir, PathBuf) {
    let cluster = PgCluster::start();
    let url = cluster.create_db();
    let config_dir = tempfile::tempdir().expect("dir");
    node_config(config_dir.path(), &url, "b");
    let config_a = node_config(config_dir.path(), &url, "a");
    (cluster, url, config_dir, config_a)
}

#[test]
fn a_killed_nodes_call_is_closed_as_node_lost_by_the_other_within_10_s_and_it_rejoins() {
    let (cluster, url, _config_dir, config_a) = cluster_for_two();
    let a = start_node(&config_a);
    let b = start_node(&config_a.with_file_name("b.toml"));

    // A caller on node A who stays on the line.
    let (mut caller, _trace) = held_call(&a);
    wait_until(
        "node A's call answered in the shared log",
        Duration::from_secs(30),
        || {
            count_soon(
                &cluster,
                &url,
                "SELECT count(*) FROM calls WHERE node = 'a' AND answered_at IS NOT NULL",
            ) == 1
        },
    );
    let call = sql(&cluster, &url, "SELECT id FROM calls WHERE node = 'a'");
    let dir = a.kill9();
    let killed = Instant::now();
    let killed_ms = sql(
        &cluster,
        &url,
        "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
    );
    wait_until(
        "node B to close node A's call",
        Duration::from_secs(30),
        || {
            sql(
                &cluster,
                &url,
                &format!("SELECT coalesce(end_reason, '') FROM calls WHERE id = {call}"),
            ) == "node_lost"
        },
    );
    let took = killed.elapsed();
    let _ = caller.kill();
    let _ = caller.wait();
    eprintln!("node_lost {} ms after kill -9", took.as_millis());
    assert!(
        took <= Duration::from_secs(10),
        "node_lost after {} ms",
        took.as_millis()
    );
    // Ended at its last recorded activity, before the kill.
    let ended: i64 = sql(
        &cluster,
        &url,
        &format!("SELECT ended_at FROM calls WHERE id = {call}"),
    )
    .parse()
    .expect("ended_at");
    assert!(
        ended <= killed_ms.parse::<i64>().expect("ms"),
        "ended {ended}"
    );
    // On the call-back list, read through node B's CLI.
    let backs = b.calls_json(&["list", "--call-backs", "--log-url", &url]);
    let ids: Vec<String> = backs
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["id"].to_string())
        .collect();
    assert_eq!(ids, vec![call.clone()], "{backs:#}");
    let event = sql(
        &cluster,
        &url,
        "SELECT detail FROM gateway_events WHERE kind = 'node_lost'",
    );
    assert!(
        event.contains("node a lost") && event.contains("closed as node_lost by node b"),
        "{event}"
    );
    assert_eq!(
        sql(
            &cluster,
            &url,
            "SELECT node FROM gateway_events WHERE kind = 'node_lost'"
        ),
        "b"
    );

    // Node A rejoins: it beats again and its new calls carry its name, after its old ones.
    let a = Gateway::start_in(dir, &["--config", config_a.to_str().expect("utf8")]);
    wait_until("node A to beat again", Duration::from_secs(10), || {
        sql(
            &cluster,
            &url,
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint - heartbeat_at < 2000
             FROM nodes WHERE name = 'a'",
        ) == "t"
    });
    let out = a.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-l", "1", "-d", "200"],
    );
    assert_sipp_ok(&out, "a call on the restarted node A");
    wait_until("A's new call logged", Duration::from_secs(10), || {
        count(
            &cluster,
            &url,
            "SELECT count(*) FROM calls WHERE node = 'a' AND end_reason = 'abandoned_in_ivr'",
        ) == 1
    });
    let newest = sql(
        &cluster,
        &url,
        "SELECT id FROM calls WHERE node = 'a' ORDER BY id DESC LIMIT 1",
    );
    assert_eq!(
        newest.parse::<i64>().expect("id"),
        call.parse::<i64>().expect("id") + 1,
        "the next reference of node A's block"
    );
    // Node B lost nothing.
    assert_eq!(
        count(
            &cluster,
            &url,
            "SELECT count(*) FROM calls WHERE end_reason = 'node_lost'",
        ),
        1
    );
}

/// The records waiting in the gateway's memory for the call log.
fn queue_depth(gw: &Gateway) -> f64 {
    let text = http_get(gw.http.expect("http"), "/metrics").1;
    text.lines()
        .find_map(|l| l.strip_prefix("siaga_calllog_queue_depth "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn postgresql_restarted_while_calls_run_loses_no_record_and_keeps_their_order() {
    const CALLS: i64 = 150;
    let cluster = PgCluster::start();
    let url = cluster.create_db();
    let config_dir = tempfile::tempdir().expect("dir");
    let mut gw = start_node(&node_config(config_dir.path(), &url, "a"));
    let target = gw.udp;
    let callers = std::thread::spawn(move || {
        common::sipp(
            target,
            "uac_call.xml",
            false,
            &[
                "-s",
                "112",
                "-m",
                &CALLS.to_string(),
                "-l",
                "40",
                "-r",
                "15",
                "-d",
                "300",
            ],
        )
    });
    wait_until("20 calls in PostgreSQL", Duration::from_secs(60), || {
        count_soon(&cluster, &url, "SELECT count(*) FROM calls") >= 20
    });
    let down = Instant::now();
    cluster.stop("fast");
    // Calls go on while the database is down: their records wait in the gateway.
    wait_until(
        "records waiting for the database",
        Duration::from_secs(30),
        || queue_depth(&gw) >= 400.0,
    );
    let waiting = queue_depth(&gw);
    cluster.start_again();
    let outage = down.elapsed();
    let out = callers.join().expect("callers");
    assert_sipp_ok(&out, "every call while the database restarted");
    wait_until(
        "the queue to drain into PostgreSQL",
        Duration::from_secs(60),
        || queue_depth(&gw) == 0.0,
    );
    gw.stop();
    eprintln!(
        "PostgreSQL down for {} ms, {waiting} records waited",
        outage.as_millis()
    );

    assert_eq!(
        count(&cluster, &url, "SELECT count(*) FROM calls"),
        CALLS,
        "a row for every call SIPp made"
    );
    assert_eq!(
        count(
            &cluster,
            &url,
            "SELECT count(*) FROM calls WHERE end_reason = 'abandoned_in_ivr'",
        ),
        CALLS,
        "every call's end"
    );
    // Every call's INVITE, 200, ACK, BYE and 200, each call's in the order they happened.
    assert_eq!(
        count(
            &cluster,
            &url,
            "SELECT count(*) FROM calls c WHERE (SELECT count(*) FROM sip_messages m
                WHERE m.call = c.id) < 5",
        ),
        0
    );
    assert_eq!(
        count(
            &cluster,
            &url,
            "SELECT count(*) FROM sip_messages x JOIN sip_messages y
                ON x.call = y.call AND x.id < y.id AND x.at > y.at",
        ),
        0,
        "rows written in the order of their events"
    );
    let gap = sql(
        &cluster,
        &url,
        "SELECT detail FROM gateway_events WHERE kind = 'log_gap'",
    );
    assert!(
        gap.contains("were written in order") && gap.contains("0 lost"),
        "{gap}"
    );
    assert_eq!(
        count(
            &cluster,
            &url,
            "SELECT count(*) FROM gateway_events WHERE kind = 'log_records_lost'",
        ),
        0
    );
}

/// A caller on the line through `gw` until the test kills it.
fn held_call(gw: &Gateway) -> (std::process::Child, tempfile::TempDir) {
    let (mut cmd, trace) = common::sipp_command(
        gw.udp,
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-l", "1", "-d", "120000"],
    );
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp");
    (child, trace)
}

#[test]
fn a_restarted_node_closes_its_own_open_calls_and_leaves_the_other_nodes_live_ones() {
    let (cluster, url, _config_dir, config_a) = cluster_for_two();
    let a = start_node(&config_a);
    let b = start_node(&config_a.with_file_name("b.toml"));
    let (mut caller_a, _trace_a) = held_call(&a);
    let (mut caller_b, _trace_b) = held_call(&b);
    wait_until("both calls answered", Duration::from_secs(30), || {
        count_soon(
            &cluster,
            &url,
            "SELECT count(*) FROM calls WHERE answered_at IS NOT NULL",
        ) == 2
    });
    // Restarted at once, before node B could take A for lost.
    let dir = a.kill9();
    let a = Gateway::start_in(dir, &["--config", config_a.to_str().expect("utf8")]);
    wait_until(
        "node A to close its call at start",
        Duration::from_secs(10),
        || {
            sql(
                &cluster,
                &url,
                "SELECT coalesce(end_reason, '') FROM calls WHERE node = 'a'",
            ) == "gateway_restarted"
        },
    );
    let open_b = sql(
        &cluster,
        &url,
        "SELECT count(*) FROM calls WHERE node = 'b' AND ended_at IS NULL",
    );
    assert_eq!(open_b, "1", "node B's call is live and stays open");
    let recovery = sql(
        &cluster,
        &url,
        "SELECT detail FROM gateway_events WHERE kind = 'crash_recovery'",
    );
    assert!(recovery.starts_with("closed 1 call(s)"), "{recovery}");
    for caller in [&mut caller_a, &mut caller_b] {
        let _ = caller.kill();
        let _ = caller.wait();
    }
    drop((a, b));
}

#[test]
fn a_node_starts_and_answers_with_postgresql_down_and_its_records_land_when_it_is_back() {
    let cluster = PgCluster::start();
    let url = cluster.create_db();
    let config_dir = tempfile::tempdir().expect("dir");
    let config = node_config(config_dir.path(), &url, "a");
    // Registered once (its number kept beside its spill file), then the database goes down.
    let mut gw = start_node(&config);
    gw.stop();
    cluster.stop("fast");
    let mut gw = Gateway::start_in(
        tempfile::tempdir().expect("dir"),
        &["--config", config.to_str().expect("utf8")],
    );
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "3", "-l", "3", "-d", "200"],
    );
    assert_sipp_ok(&out, "3 calls with the call log down");
    cluster.start_again();
    wait_until(
        "the waiting records to reach PostgreSQL",
        Duration::from_secs(60),
        || {
            count_soon(
                &cluster,
                &url,
                "SELECT count(*) FROM calls WHERE ended_at IS NOT NULL",
            ) == 3
        },
    );
    gw.stop();
    let number: i64 = sql(&cluster, &url, "SELECT number FROM nodes WHERE name = 'a'")
        .parse()
        .expect("number");
    assert_eq!(
        count(
            &cluster,
            &url,
            &format!(
                "SELECT count(*) FROM calls WHERE node = 'a' AND id / 1000000000000 = {number}"
            ),
        ),
        3,
        "the calls carry the node and references from its own block"
    );
    let gap = sql(
        &cluster,
        &url,
        "SELECT detail FROM gateway_events WHERE kind = 'log_gap'",
    );
    assert!(gap.contains("0 lost"), "{gap}");
}
