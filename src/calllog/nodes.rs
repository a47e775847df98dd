//! Several gateway nodes on one PostgreSQL call log: each node's name and number (its block
//! of call references), its heartbeat, and the closing of a lost node's calls.
//!
//! Every node writes `nodes.heartbeat_at` every [`HEARTBEAT`] with the database's clock (so
//! the nodes' clocks need not agree). Every node also looks for nodes whose heartbeat is older
//! than [`LOST_AFTER`] and still have open calls: those calls are closed as `node_lost` at
//! their last recorded activity, which puts the emergency ones on the call-back list. The
//! UPDATE only touches calls still open, so when several nodes see the loss at once each call
//! is closed once, and only the node that closed some writes the `node_lost` gateway event.
//! A lost node that comes back (a network split, not a crash) logs its calls' real ends over
//! `node_lost`; one that restarts closes its own open calls as `gateway_restarted`, as a
//! single gateway does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::{OptionalExtension, params};

use super::schema;
use super::store::Db;
use super::{GatewayEventKind, now_ms};

/// How often a node writes its heartbeat (and looks for lost nodes).
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node whose heartbeat is older than this is lost. Five beats: a database restart or a
/// slow checkpoint does not make a live node lost.
pub const LOST_AFTER: Duration = Duration::from_secs(5);

/// Milliseconds since the epoch on the database's clock.
const DB_NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// This node's number on the database at `url` (registering it on its first start): its
/// call references are `number × 10^12 + 1, + 2, …`. When the database cannot be reached,
/// the number the last start got (kept in `spill_dir`); a node that never reached it cannot
/// start, as it could give references another node gives.
pub fn node_number(url: &str, name: &str, spill_dir: &Path) -> anyhow::Result<i64> {
    let kept = number_file(spill_dir, url, name);
    let registered = schema::open_postgres(url).and_then(|db| register(&db, name));
    match registered {
        Ok(number) => {
            if let Err(e) = std::fs::create_dir_all(spill_dir)
                .and_then(|()| std::fs::write(&kept, number.to_string()))
            {
                tracing::warn!(file = %kept.display(), error = %e, "cannot keep the node's number");
            }
            Ok(number)
        }
        Err(e) if e.to_string().contains("is in use by a running gateway") => Err(e),
        Err(e) => {
            let number = std::fs::read_to_string(&kept)
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok());
            match number {
                Some(n) => {
                    tracing::error!(
                        error = format!("{e:#}"),
                        node = name,
                        number = n,
                        "call log unreachable at start: the node keeps the number of its last start"
                    );
                    Ok(n)
                }
                None => Err(e).context(format!(
                    "node {name} has never registered with the call log and cannot reach it \
                     now: start it once with the database up (log.url)"
                )),
            }
        }
    }
}

/// What names node `name`'s spill file (and its kept number) for the database at `url`: one
/// per node and database, whatever else shares the spill directory.
pub fn spill_key(url: &str, name: &str) -> PathBuf {
    PathBuf::from("/postgres").join(file_safe(&format!(
        "{name}@{}",
        super::store::redacted(url)
            .split_once("://")
            .map_or(url, |(_, rest)| rest)
    )))
}

/// A name usable in a file name.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Registers node `name` (or finds it), refusing a name a live gateway elsewhere is using.
fn register(db: &Db, name: &str) -> anyhow::Result<i64> {
    let host = super::host_name();
    let pid = i64::from(std::process::id());
    let tx = db.write_transaction()?;
    // One registration at a time: two new nodes must not take the same number.
    tx.lock_for_append("nodes")?;
    let existing: Option<(i64, String, i64, i64)> = tx
        .query_row(
            &format!(
                "SELECT number, host, pid, {DB_NOW_MS} - heartbeat_at FROM nodes WHERE name = ?1"
            ),
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let number = match existing {
        Some((number, their_host, their_pid, age_ms)) => {
            let fresh = age_ms < LOST_AFTER.as_millis() as i64;
            // The same machine can tell a crashed process (its pid is gone) from a live one.
            let alive_here = their_host == host && their_pid != pid && process_alive(their_pid);
            if fresh && (their_host != host || alive_here) {
                anyhow::bail!(
                    "node name {name} is in use by a running gateway (pid {their_pid} on \
                     {their_host}, heart-beating {age_ms} ms ago): give this one its own \
                     [node] name"
                );
            }
            tx.execute(
                &format!(
                    "UPDATE nodes SET host = ?2, pid = ?3, started_at = ?4, \
                     heartbeat_at = {DB_NOW_MS} WHERE name = ?1"
                ),
                params![name, host, pid, now_ms()],
            )?;
            number
        }
        None => tx.query_row(
            &format!(
                "INSERT INTO nodes (name, number, host, pid, started_at, heartbeat_at)
                 VALUES (?1, (SELECT coalesce(max(number), 0) + 1 FROM nodes), ?2, ?3, ?4,
                         {DB_NOW_MS})
                 RETURNING number"
            ),
            params![name, host, pid, now_ms()],
            |r| r.get(0),
        )?,
    };
    tx.commit()?;
    Ok(number)
}

fn process_alive(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// The heartbeat thread of a node; stops when dropped.
pub struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts beating for node `name` on the database at `url`, on a thread of its own with
    /// its own connection (a database that is down only delays the beats, never a call).
    pub fn start(url: String, name: String) -> anyhow::Result<Heartbeat> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || beat(&url, &name, &flag))
            .context("starting the heartbeat thread")?;
        Ok(Heartbeat {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn beat(url: &str, name: &str, stop: &AtomicBool) {
    let mut db: Option<Db> = None;
    let mut failing = false;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            // Short naps: a stopping gateway does not wait a whole beat.
            std::thread::sleep((next - now).min(Duration::from_millis(100)));
            continue;
        }
        next = now + HEARTBEAT;
        if db.as_ref().is_none_or(Db::is_closed) {
            db = Db::connect_postgres(url).ok();
        }
        let Some(conn) = &db else {
            if !failing {
                tracing::error!(node = name, "heartbeat: cannot reach the call log");
                failing = true;
            }
            continue;
        };
        match heartbeat_once(conn, name) {
            Ok(lost) => {
                if failing {
                    tracing::info!(node = name, "heartbeat: the call log is reachable again");
                    failing = false;
                }
                for (node, calls) in lost {
                    tracing::warn!(
                        node,
                        calls = calls.len(),
                        "node lost: its open calls closed as node_lost"
                    );
                }
            }
            Err(e) => {
                if !failing {
                    tracing::error!(node = name, error = %e, "heartbeat failed");
                    failing = true;
                }
                if conn.is_closed() {
                    db = None;
                }
            }
        }
    }
}

/// One beat: this node's heartbeat, then the open calls of every lost node closed. Returns
/// the nodes whose calls this beat closed, with the calls.
pub fn heartbeat_once(db: &Db, name: &str) -> rusqlite::Result<Vec<(String, Vec<i64>)>> {
    db.execute(
        &format!("UPDATE nodes SET heartbeat_at = {DB_NOW_MS} WHERE name = ?1"),
        [name],
    )?;
    let lost: Vec<(String, i64)> = db
        .prepare(&format!(
            "SELECT n.name, n.heartbeat_at FROM nodes n
             WHERE n.name <> ?1 AND n.heartbeat_at < {DB_NOW_MS} - ?2
               AND EXISTS (SELECT 1 FROM calls c WHERE c.node = n.name AND c.ended_at IS NULL)
             ORDER BY n.name"
        ))?
        .query_map(params![name, LOST_AFTER.as_millis() as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut closed_by_me = Vec::new();
    for (node, last_beat) in lost {
        let tx = db.transaction()?;
        let detail = format!(
            "node {node} stopped heart-beating at {} (lost after {} s without a beat); closed by \
             node {name} at the call's last recorded activity",
            super::query::iso_utc(last_beat),
            LOST_AFTER.as_secs()
        );
        let closed = schema::close_open_calls(&tx, Some(&node), schema::NODE_LOST, &detail)?;
        if !closed.is_empty() {
            tx.execute(
                "INSERT INTO gateway_events (at, kind, detail, node) VALUES (?1, ?2, ?3, ?4)",
                params![
                    now_ms(),
                    GatewayEventKind::NodeLost.as_str(),
                    format!(
                        "node {node} lost (last heartbeat {}): {} open call(s) closed as \
                         node_lost by node {name}: {closed:?}",
                        super::query::iso_utc(last_beat),
                        closed.len()
                    ),
                    name
                ],
            )?;
        }
        tx.commit()?;
        if !closed.is_empty() {
            closed_by_me.push((node, closed));
        }
    }
    Ok(closed_by_me)
}

/// Where a node keeps its number between starts.
fn number_file(spill_dir: &Path, url: &str, name: &str) -> PathBuf {
    let key = spill_key(url, name);
    let key = key
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    spill_dir.join(format!("node-{key}.number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calllog::query::{self, ListFilter};
    use crate::calllog::testing::{Store, TestLog};

    /// Node b stopped beating with two calls open; node a's beat closes them at their last
    /// activity as node_lost, the emergency one on the call-back list; node c's beat right
    /// after finds nothing left to close.
    #[test]
    fn a_lost_nodes_open_calls_are_closed_once_and_the_emergency_ones_called_back() {
        let log = TestLog::new(Store::Postgres);
        let db = log.open();
        for name in ["a", "c"] {
            register(&db, name).expect("register");
        }
        db.execute(
            "INSERT INTO nodes (name, number, host, pid, started_at, heartbeat_at)
             VALUES ('b', 9, 'elsewhere', 1, 0, 0)",
            [],
        )
        .expect("node b");
        // (id, node, kind, ended): b's emergency and test calls open, one ended; a's open.
        for (id, node, kind, ended) in [
            (1, "b", "emergency", None),
            (2, "b", "test", None),
            (3, "b", "emergency", Some(5_000)),
            (4, "a", "emergency", None),
        ] {
            db.execute(
                "INSERT INTO calls (id, call_id, started_at, ended_at, end_reason, kind, dialled,
                    source, transport, node)
                 VALUES (?1, 'c', 1000, ?2, CASE WHEN CAST(?2 AS BIGINT) IS NULL THEN NULL
                    ELSE 'caller_hung_up' END, ?3, '112', '127.0.0.1:5060', 'udp', ?4)",
                params![id, ended, kind, node],
            )
            .expect("call");
        }
        db.execute(
            "INSERT INTO call_events (call, at, kind, detail) VALUES (1, 7000, 'media_started', '')",
            [],
        )
        .expect("event");
        let closed = heartbeat_once(&db, "a").expect("beat");
        assert_eq!(closed, vec![("b".to_owned(), vec![1, 2])]);
        assert_eq!(heartbeat_once(&db, "c").expect("beat"), vec![]);
        let ends: Vec<(i64, Option<i64>, Option<String>)> = db
            .prepare("SELECT id, ended_at, end_reason FROM calls ORDER BY id")
            .expect("query")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows");
        let end = |id, at: Option<i64>, why: Option<&str>| (id, at, why.map(str::to_owned));
        assert_eq!(
            ends,
            vec![
                end(1, Some(7000), Some("node_lost")),
                end(2, Some(1000), Some("node_lost")),
                end(3, Some(5000), Some("caller_hung_up")),
                end(4, None, None),
            ]
        );
        let filter = ListFilter {
            call_backs: true,
            ..ListFilter::default()
        };
        let call_backs: Vec<i64> = query::list(&db, 10, &filter)
            .expect("list")
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(call_backs, vec![1]);
        let events: i64 = db
            .query_row(
                "SELECT count(*) FROM gateway_events WHERE kind = 'node_lost'",
                [],
                |r| r.get(0),
            )
            .expect("events");
        assert_eq!(events, 1, "one event, from the node that closed the calls");
    }

    /// Two live gateways may not share a name; a crashed one's name is taken over.
    #[test]
    fn a_name_in_use_by_a_live_gateway_elsewhere_is_refused() {
        let log = TestLog::new(Store::Postgres);
        let db = log.open();
        db.execute(
            &format!(
                "INSERT INTO nodes (name, number, host, pid, started_at, heartbeat_at)
                 VALUES ('x', 1, 'other-host', 1, 0, {DB_NOW_MS})"
            ),
            [],
        )
        .expect("node x");
        let err = register(&db, "x").expect_err("in use");
        assert!(err.to_string().contains("node name x is in use"), "{err}");
        db.execute("UPDATE nodes SET heartbeat_at = 0 WHERE name = 'x'", [])
            .expect("stale");
        assert_eq!(register(&db, "x").expect("taken over"), 1);
        assert_eq!(register(&db, "y").expect("new"), 2);
    }
}
