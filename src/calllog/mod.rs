//! The call log: one SQLite file (WAL) written by a dedicated thread in batches, so
//! signalling never waits on the disk. Every call — answered, abandoned, failed, refused —
//! gets a row the moment its first INVITE is accepted; every SIP message in and out is kept
//! verbatim and linked to its call.

pub mod query;
mod schema;
pub mod stats;

use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use rusqlite::{Connection, params};
use siaga_engine::io::{CallStarted, LogRecord};

pub use schema::{Recovery, UnfinishedRecording, open};

/// Milliseconds since the Unix epoch, UTC.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A write for the log thread.
pub enum Write {
    Engine {
        at_ms: i64,
        record: LogRecord,
    },
    /// A call's recording: sent with only the path when its file is created (digest and
    /// duration NULL: unfinished, see [`Recovery::unfinished`]), then again with all three
    /// once it is finished.
    Recording {
        call: u64,
        path: String,
        sha256: Option<String>,
        duration_ms: Option<i64>,
    },
    Event {
        call: Option<u64>,
        at_ms: i64,
        kind: String,
        detail: String,
    },
    /// Answered once everything sent before it is committed (tests, shutdown).
    Barrier(std::sync::mpsc::Sender<()>),
}

/// The sending side, cheap to clone. Never blocks: if the queue is full (the disk has
/// stalled for a long time) the record is counted as lost and an error is logged.
#[derive(Clone)]
pub struct CallLog {
    tx: Sender<Write>,
}

/// Room for many seconds of peak load while the disk catches up.
const QUEUE: usize = 200_000;
/// Records per transaction at most.
const BATCH: usize = 5_000;

impl CallLog {
    /// Opens (or creates) the database, repairs calls left open by a crash, and starts the
    /// writer thread. Returns what the previous run left: the first call reference that is
    /// free and the recordings a crash kept from being finished.
    pub fn start(path: &Path) -> anyhow::Result<(CallLog, LogWriter, Recovery)> {
        let mut conn = open(path)?;
        let recovery = schema::recover_after_crash(&mut conn, now_ms())?;
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let thread = std::thread::Builder::new()
            .name("calllog".into())
            .spawn(move || writer_loop(conn, rx))
            .context("starting the call-log writer thread")?;
        Ok((
            CallLog { tx },
            LogWriter {
                thread: Some(thread),
            },
            recovery,
        ))
    }

    pub fn send(&self, write: Write) {
        match self.tx.try_send(write) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::error!("call-log queue full: a record was lost (disk stalled?)")
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("call-log writer has stopped: a record was lost")
            }
        }
    }

    pub fn engine(&self, at_ms: i64, record: LogRecord) {
        self.send(Write::Engine { at_ms, record });
    }

    /// Waits (blocking) until every earlier record is committed.
    #[allow(dead_code)]
    pub fn barrier(&self, timeout: Duration) -> bool {
        let (tx, rx) = std::sync::mpsc::channel();
        self.send(Write::Barrier(tx));
        rx.recv_timeout(timeout).is_ok()
    }
}

/// Owns the writer thread; dropping all `CallLog`s lets it finish.
pub struct LogWriter {
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn writer_loop(mut conn: Connection, rx: Receiver<Write>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let mut barriers = Vec::new();
        if let Err(e) = write_batch(&mut conn, &mut batch, &mut barriers) {
            tracing::error!(error = %e, "call-log write failed");
        }
        for b in barriers {
            let _ = b.send(());
        }
    }
}

fn write_batch(
    conn: &mut Connection,
    batch: &mut Vec<Write>,
    barriers: &mut Vec<std::sync::mpsc::Sender<()>>,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for write in batch.drain(..) {
        let result = match write {
            Write::Engine { at_ms, record } => apply(&tx, at_ms, record),
            Write::Recording {
                call,
                path,
                sha256,
                duration_ms,
            } => tx
                .prepare_cached(
                    "UPDATE calls SET recording_path = ?2, recording_sha256 = ?3, recording_ms = ?4 WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![call as i64, path, sha256, duration_ms]))
                .map(|_| ()),
            Write::Event {
                call,
                at_ms,
                kind,
                detail,
            } => insert_event(&tx, call, at_ms, &kind, &detail),
            Write::Barrier(b) => {
                barriers.push(b);
                Ok(())
            }
        };
        if let Err(e) = result {
            // One bad record must not cost the rest of the batch.
            tracing::error!(error = %e, "call-log record not written");
        }
    }
    tx.commit()
}

fn insert_event(
    tx: &rusqlite::Transaction,
    call: Option<u64>,
    at_ms: i64,
    kind: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    match call {
        Some(call) => tx
            .prepare_cached(
                "INSERT INTO call_events (call, at, kind, detail) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![call as i64, at_ms, kind, detail])
            .map(|_| ()),
        None => tx
            .prepare_cached("INSERT INTO gateway_events (at, kind, detail) VALUES (?1, ?2, ?3)")?
            .execute(params![at_ms, kind, detail])
            .map(|_| ()),
    }
}

fn apply(tx: &rusqlite::Transaction, at_ms: i64, record: LogRecord) -> rusqlite::Result<()> {
    match record {
        LogRecord::CallStarted(started) => insert_call(tx, at_ms, &started),
        LogRecord::CallAnswered { call } => tx
            .prepare_cached("UPDATE calls SET answered_at = ?2 WHERE id = ?1")?
            .execute(params![call.0 as i64, at_ms])
            .map(|_| ()),
        LogRecord::CallEnded {
            call,
            reason,
            detail,
        } => tx
            .prepare_cached(
                "UPDATE calls SET ended_at = ?2, end_reason = ?3, end_detail = ?4 WHERE id = ?1",
            )?
            .execute(params![call.0 as i64, at_ms, reason.as_str(), detail])
            .map(|_| ()),
        LogRecord::Sip {
            call,
            leg,
            direction,
            flow,
            bytes,
            note,
        } => {
            let first_line = bytes
                .split(|&b| b == b'\n')
                .next()
                .map(|l| String::from_utf8_lossy(l).trim_end().to_owned())
                .unwrap_or_default();
            tx.prepare_cached(
                "INSERT INTO sip_messages (call, at, direction, transport, local, remote, first_line, raw, note, leg)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                call.map(|c| c.0 as i64),
                at_ms,
                direction.as_str(),
                flow.transport.as_str(),
                flow.local.to_string(),
                flow.remote.to_string(),
                first_line,
                bytes,
                note,
                leg.to_string()
            ])
            .map(|_| ())
        }
        LogRecord::Timeline { call, kind, detail } => {
            insert_event(tx, Some(call.0), at_ms, kind, &detail)
        }
        // One row per source and minute however many messages it sent (only samples of
        // them are in sip_messages).
        LogRecord::NonCallCounts(tally) => {
            insert_event(tx, None, at_ms, "noncall_counts", &tally.to_string())
        }
        LogRecord::Location {
            call,
            source,
            report,
        } => {
            let json = serde_json::to_string(&report).unwrap_or_else(|e| {
                format!("{{\"error\":\"location report not serialisable: {e}\"}}")
            });
            tx.prepare_cached(
                "INSERT INTO call_locations (call, at, source, summary, report) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![call.0 as i64, at_ms, source, report.to_string(), json])
            .map(|_| ())
        }
    }
}

fn insert_call(tx: &rusqlite::Transaction, at_ms: i64, s: &CallStarted) -> rusqlite::Result<()> {
    let entry = match &s.kind {
        siaga_engine::io::CallKind::Emergency { entry } => Some(entry.as_str()),
        _ => None,
    };
    let pai = serde_json::to_string(&s.caller.p_asserted_identity).unwrap_or_default();
    tx.prepare_cached(
        "INSERT OR REPLACE INTO calls (id, call_id, started_at, kind, dialled, entry, caller_from,
            caller_pai, caller_privacy, caller_contact, caller_user_agent, caller_rpid, source, transport,
            emergency_call_id, incident_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?
    .execute(params![
        s.call.0 as i64,
        s.call_id.as_str(),
        at_ms,
        s.kind.as_str(),
        s.dialled,
        entry,
        s.caller.from,
        pai,
        s.caller.privacy,
        s.caller.contact,
        s.caller.user_agent,
        s.caller.remote_party_id,
        s.flow.remote.to_string(),
        s.flow.transport.as_str(),
        s.emergency_call_id,
        s.incident_id,
    ])
    .map(|_| ())
}
