//! The call log: one SQLite file (WAL) written by a dedicated thread in batches, so
//! signalling never waits on the disk. Every call — answered, abandoned, failed, refused —
//! gets a row the moment its first INVITE is accepted; every SIP message in and out is kept
//! verbatim and linked to its call.

pub mod access;
pub mod chain;
pub mod classes;
mod gateway_event;
pub mod nodes;
pub mod numbers;
mod ops;
pub mod query;
pub mod report;
pub mod retention;
mod schema;
mod spill;
pub mod stats;
pub mod store;
#[cfg(test)]
pub(crate) mod testing;
pub mod text;
pub mod users;
mod view;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use crossbeam_channel::Sender;
use rusqlite::types::Value;
use siaga_engine::ids::CallRef;
use siaga_engine::io::{CallSignals, CallStarted, LogRecord};
use siaga_engine::timeline::CallEventKind;

pub use gateway_event::GatewayEventKind;
use ops::Entry;
pub use schema::open;
pub use schema::{
    Recovery, UnfinishedRecording, check_db_file, open_for_corrections, open_postgres,
    open_postgres_existing, open_reader,
};
pub use store::Db;
pub use view::open_calls_with_spill;

/// Whether records the database at `db` could not take wait in a spill file in `dir`.
pub fn spill_exists(dir: &Path, db: &Path) -> bool {
    spill::Spill::path_for(dir, db).exists()
}

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
    /// A gateway-wide event (`gateway_events`: start, stop, rate limiting, …). A call's events
    /// are `Engine` records ([`LogRecord::Timeline`]), whoever logs them.
    Event {
        at_ms: i64,
        kind: GatewayEventKind,
        detail: String,
    },
    /// Answered once everything sent before it is committed (tests, shutdown).
    Barrier(std::sync::mpsc::Sender<()>),
    /// The call-class thresholds of the plan now running (at start and after each reload):
    /// calls whose signals are logged from here on are classed with them.
    ClassRules(siaga_dialplan::ClassifyRules),
}

/// The sending side, cheap to clone. Never blocks: records go to the writer thread, which
/// keeps them (memory, then the spill file) for as long as the database cannot take them.
/// Only if even the hand-over queue is full (the writer thread stuck) is a record lost, and
/// then it is counted and reported as a gateway event.
#[derive(Clone)]
pub struct CallLog {
    tx: Sender<(usize, Write)>,
    shared: Arc<writer::Shared>,
}

/// Where the call log keeps records the database cannot take yet, and how much disk it
/// wants left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// The spill file's directory: on another disk than the database if possible.
    pub spill_dir: PathBuf,
    /// Records kept in memory while the database cannot be written, before they are
    /// spilled.
    pub queue_memory_bytes: usize,
    /// Below this much free space on the database's file system, sampled messages of no
    /// call are no longer stored (0: never).
    pub low_space_bytes: u64,
    /// Below this much free space, an alarm (a gateway event, an error line) (0: never).
    pub alarm_space_bytes: u64,
    /// Records handed to the writer thread and not yet taken, in bytes, before new ones are
    /// lost (counted): reached only while the thread is held inside one database call. Call
    /// records may use four times this; sampled messages of no call go first.
    pub handover_bytes: usize,
    /// How long start-up replays an earlier run's spill before leaving the rest to the
    /// writer thread (the gateway answers calls meanwhile).
    pub start_replay: Duration,
    /// `[log] url`: a shared PostgreSQL (`postgres://…`) instead of the SQLite file.
    pub url: Option<String>,
    /// `[node] name`: this gateway among several on one database; every call row carries it.
    pub node: String,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            spill_dir: PathBuf::from(DEFAULT_SPILL_DIR),
            queue_memory_bytes: 64 << 20,
            low_space_bytes: 1 << 30,
            alarm_space_bytes: 256 << 20,
            handover_bytes: 32 << 20,
            start_replay: Duration::from_secs(2),
            url: None,
            node: host_name(),
        }
    }
}

/// This machine's host name: a node's name unless `[node] name` says otherwise.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its whole length; gethostname NUL-terminates within it
    // when the name fits (the last byte stays 0 otherwise).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    let len = buf.iter().position(|&b| b == 0).unwrap_or(0);
    match rc {
        0 if len > 0 => String::from_utf8_lossy(&buf[..len]).into_owned(),
        _ => "siaga".to_owned(),
    }
}

/// `/var/tmp` survives a reboot and is usually not where a deployment puts its database.
pub const DEFAULT_SPILL_DIR: &str = "/var/tmp/siaga-spill";

impl CallLog {
    /// Whether the database takes writes now (no records waiting for it after a failure).
    pub fn writable(&self) -> bool {
        self.shared
            .writable
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// [`CallLog::start_with`] with the default options.
    #[cfg(test)]
    pub fn start(path: &Path) -> anyhow::Result<(CallLog, LogWriter, Recovery)> {
        Self::start_with(path, LogOptions::default())
    }

    /// Starts the writer thread on the database at `path`: replays what an earlier run
    /// spilled, repairs calls left open by a crash and returns what the previous run left
    /// (the first free call reference, unfinished recordings). Fails only for a file that is
    /// not a usable call log (not SQLite, a newer schema, no such directory); a database that
    /// cannot be written (disk full, I/O errors, locked) is retried in the background while
    /// records wait.
    pub fn start_with(
        path: &Path,
        options: LogOptions,
    ) -> anyhow::Result<(CallLog, LogWriter, Recovery)> {
        if options.url.is_none() {
            schema::check_db_file(path, false)?;
            schema::check_version(path)?;
        }
        let shared = Arc::new(writer::Shared::new(options.handover_bytes));
        let (writer, recovery) = writer::Writer::start(path, options, shared.clone(), now_ms())?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("calllog".into())
            .spawn(move || writer.run(rx))
            .context("starting the call-log writer thread")?;
        Ok((
            CallLog { tx, shared },
            LogWriter {
                thread: Some(thread),
            },
            recovery,
        ))
    }

    pub fn send(&self, write: Write) {
        let bytes = write.approx_bytes();
        // The writer takes records off the channel between any two transactions (into memory,
        // then the spill file), so this bound is only met while it is held inside one
        // database call; a call's records may then wait longer than sampled messages.
        let limit = match &write {
            Write::Engine { record, .. } if droppable(record) => self.shared.handover_limit,
            _ => self.shared.handover_limit.saturating_mul(4),
        };
        if self
            .shared
            .handover_bytes
            .fetch_add(bytes, Ordering::Relaxed)
            > limit
        {
            self.shared
                .handover_bytes
                .fetch_sub(bytes, Ordering::Relaxed);
            // One line until the writer has counted these (it reports the total).
            if self.shared.lost.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::error!(
                    "call-log writer held up and its hand-over queue full: records are lost \
                     (counted, reported as a gateway event)"
                );
            }
            return;
        }
        if self.tx.send((bytes, write)).is_err() {
            self.shared
                .handover_bytes
                .fetch_sub(bytes, Ordering::Relaxed);
            tracing::error!("call-log writer has stopped: a record was lost");
        }
    }

    pub fn engine(&self, at_ms: i64, record: LogRecord) {
        self.send(Write::Engine { at_ms, record });
    }

    /// An event on a call's timeline from outside the engine (media threads, start-up
    /// repair), now: the same record the engine's own events are.
    pub fn timeline(&self, call: CallRef, kind: CallEventKind, detail: String) {
        self.engine(now_ms(), LogRecord::Timeline { call, kind, detail });
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

impl Write {
    /// What the record holds in memory, roughly (the hand-over queue's bound counts it).
    fn approx_bytes(&self) -> usize {
        128 + match self {
            Write::Engine {
                record: LogRecord::Sip { bytes, .. },
                ..
            } => bytes.len() * 2,
            Write::Engine { .. } => 1024,
            Write::Recording { path, .. } => path.len(),
            Write::Event { detail, .. } => detail.len(),
            Write::Barrier(_) | Write::ClassRules(_) => 0,
        }
    }

    /// The statements the record needs, a call's signals classed with `class_rules`. `None`
    /// for a barrier and new rules (the writer acts on those itself).
    fn lower(self, class_rules: &siaga_dialplan::ClassifyRules, node: &str) -> Option<Entry> {
        let mut entry = Entry::default();
        match self {
            Write::Engine { at_ms, record } => {
                entry.droppable = droppable(&record);
                entry.call = record_call(&record);
                let classify = match &record {
                    LogRecord::CallSignals { call, .. } => Some(call.0),
                    _ => None,
                };
                apply(&mut entry, at_ms, record, node);
                // In the same entry as the signals: written together or not at all.
                if let Some(call) = classify {
                    entry.ops.push(ops::Op::Classify {
                        call,
                        at_ms,
                        rules: class_rules.clone(),
                    });
                }
            }
            Write::Recording {
                call,
                path,
                sha256,
                duration_ms,
            } => {
                entry.call = Some(call);
                let finished = sha256.is_some();
                entry.sql(
                    SET_RECORDING,
                    vec![
                        Value::from(call as i64),
                        Value::from(path),
                        Value::from(sha256),
                        Value::from(duration_ms),
                    ],
                );
                // In the same transaction as the digest it commits to.
                if finished {
                    entry.ops.push(ops::Op::ChainRecording {
                        call,
                        at_ms: now_ms(),
                    });
                }
            }
            Write::Event {
                at_ms,
                kind,
                detail,
            } => insert_gateway_event(&mut entry, at_ms, kind, detail, node),
            Write::Barrier(_) | Write::ClassRules(_) => return None,
        }
        Some(entry)
    }
}

/// A call's recording: `?1` the call, `?2` its path, `?3` its SHA-256 and `?4` its length
/// (both NULL while unfinished). Start-up also looks for it in a spill file.
const SET_RECORDING: &str =
    "UPDATE calls SET recording_path = ?2, recording_sha256 = ?3, recording_ms = ?4 WHERE id = ?1";

/// Records that belong to no call: sampled, and the first thing not stored when the disk
/// runs low or the database cannot be written. Emergency call records never are.
fn droppable(record: &LogRecord) -> bool {
    matches!(record, LogRecord::Sip { call: None, .. })
}

fn record_call(record: &LogRecord) -> Option<u64> {
    match record {
        LogRecord::CallStarted(s) => Some(s.call.0),
        LogRecord::CallAnswered { call }
        | LogRecord::CallEnded { call, .. }
        | LogRecord::Timeline { call, .. }
        | LogRecord::CallSignals { call, .. }
        | LogRecord::Location { call, .. } => Some(call.0),
        LogRecord::Sip { call, .. } => call.map(|c| c.0),
        LogRecord::NonCallCounts(_) | LogRecord::Attack(_) => None,
    }
}

fn insert_gateway_event(
    entry: &mut Entry,
    at_ms: i64,
    kind: GatewayEventKind,
    detail: String,
    node: &str,
) {
    entry.sql(
        "INSERT INTO gateway_events (at, kind, detail, node) VALUES (?1, ?2, ?3, ?4)",
        vec![
            Value::from(at_ms),
            Value::from(kind.as_str().to_owned()),
            Value::from(detail),
            Value::from(node.to_owned()),
        ],
    );
}

/// The statements one engine record needs, in `entry`.
fn apply(entry: &mut Entry, at_ms: i64, record: LogRecord, node: &str) {
    match record {
        LogRecord::CallStarted(started) => insert_call(entry, at_ms, &started, node),
        LogRecord::CallAnswered { call } => entry.sql(
            "UPDATE calls SET answered_at = ?2 WHERE id = ?1",
            vec![Value::from(call.0 as i64), Value::from(at_ms)],
        ),
        LogRecord::CallEnded {
            call,
            reason,
            detail,
        } => entry.sql(
            "UPDATE calls SET ended_at = ?2, end_reason = ?3, end_detail = ?4 WHERE id = ?1",
            vec![
                Value::from(call.0 as i64),
                Value::from(at_ms),
                Value::from(reason.as_str().to_owned()),
                Value::from(detail),
            ],
        ),
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
            entry.sql(
                "INSERT INTO sip_messages (call, at, direction, transport, local, remote, first_line, raw, note, leg)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                vec![
                    Value::from(call.map(|c| c.0 as i64)),
                    Value::from(at_ms),
                    Value::from(direction.as_str().to_owned()),
                    Value::from(flow.transport.as_str().to_owned()),
                    Value::from(flow.local.to_string()),
                    Value::from(flow.remote.to_string()),
                    Value::from(first_line),
                    Value::from(bytes),
                    Value::from(note),
                    Value::from(leg.to_string()),
                ],
            )
        }
        LogRecord::Timeline { call, kind, detail } => entry.sql(
            "INSERT INTO call_events (call, at, kind, detail) VALUES (?1, ?2, ?3, ?4)",
            vec![
                Value::from(call.0 as i64),
                Value::from(at_ms),
                Value::from(kind.as_str().to_owned()),
                Value::from(detail),
            ],
        ),
        LogRecord::CallSignals { call, signals } => insert_signals(entry, call, &signals),
        // One row per source and minute however many messages it sent (only samples of
        // them are in sip_messages).
        LogRecord::NonCallCounts(tally) => insert_gateway_event(
            entry,
            at_ms,
            GatewayEventKind::NonCallCounts,
            tally.to_string(),
            node,
        ),
        LogRecord::Attack(change) => {
            let kind = match change {
                siaga_dialplan::AttackChange::Started { .. } => GatewayEventKind::AttackStarted,
                siaga_dialplan::AttackChange::Ended { .. } => GatewayEventKind::AttackEnded,
            };
            insert_gateway_event(entry, at_ms, kind, change.detail(), node);
        }
        LogRecord::Location {
            call,
            source,
            report,
        } => {
            let json = serde_json::to_string(&report).unwrap_or_else(|e| {
                format!("{{\"error\":\"location report not serialisable: {e}\"}}")
            });
            entry.sql(
                "INSERT INTO call_locations (call, at, source, summary, report) VALUES (?1, ?2, ?3, ?4, ?5)",
                vec![
                    Value::from(call.0 as i64),
                    Value::from(at_ms),
                    Value::from(source.to_owned()),
                    Value::from(report.to_string()),
                    Value::from(json),
                ],
            )
        }
    }
}

fn insert_signals(entry: &mut Entry, call: CallRef, s: &CallSignals) {
    let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as i64);
    let voice = s.voice;
    entry.sql(
        "INSERT INTO call_signals (call, digits, answered_ms, agency_talk_ms,
            usable_identity, voice_frames, speech_frames, longest_speech_ms, voiced_frames,
            longest_voiced_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (call) DO UPDATE SET digits = excluded.digits,
            answered_ms = excluded.answered_ms, agency_talk_ms = excluded.agency_talk_ms,
            usable_identity = excluded.usable_identity, voice_frames = excluded.voice_frames,
            speech_frames = excluded.speech_frames, longest_speech_ms = excluded.longest_speech_ms,
            voiced_frames = excluded.voiced_frames, longest_voiced_ms = excluded.longest_voiced_ms",
        vec![
            Value::from(call.0 as i64),
            Value::from(s.digits),
            Value::from(ms(s.answered_for)),
            Value::from(ms(s.agency_talk)),
            Value::from(s.usable_identity),
            Value::from(voice.map(|v| v.frames)),
            Value::from(voice.map(|v| v.speech_frames)),
            Value::from(voice.map(|v| v.longest_speech_ms)),
            Value::from(voice.map(|v| v.voiced_frames)),
            Value::from(voice.map(|v| v.longest_voiced_ms)),
        ],
    )
}

fn insert_call(entry: &mut Entry, at_ms: i64, s: &CallStarted, node: &str) {
    let entry_name = match &s.kind {
        siaga_engine::io::CallKind::Emergency { entry } => Some(entry.clone()),
        _ => None,
    };
    let pai = serde_json::to_string(&s.caller.p_asserted_identity).unwrap_or_default();
    let text = |t: &Option<String>| Value::from(t.clone());
    entry.sql(
        "INSERT INTO calls (id, call_id, started_at, kind, dialled, entry, caller_from,
            caller_pai, caller_privacy, caller_contact, caller_user_agent, caller_rpid, source, transport,
            emergency_call_id, incident_id, caller_number, node, caller_instance)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
         ON CONFLICT (id) DO UPDATE SET call_id = excluded.call_id, started_at = excluded.started_at,
            kind = excluded.kind, dialled = excluded.dialled, entry = excluded.entry,
            caller_from = excluded.caller_from, caller_pai = excluded.caller_pai,
            caller_privacy = excluded.caller_privacy, caller_contact = excluded.caller_contact,
            caller_user_agent = excluded.caller_user_agent, caller_rpid = excluded.caller_rpid,
            source = excluded.source, transport = excluded.transport,
            emergency_call_id = excluded.emergency_call_id, incident_id = excluded.incident_id,
            caller_number = excluded.caller_number, node = excluded.node,
            caller_instance = excluded.caller_instance",
        vec![
            Value::from(s.call.0 as i64),
            Value::from(s.call_id.as_str().to_owned()),
            Value::from(at_ms),
            Value::from(s.kind.as_str().to_owned()),
            Value::from(s.dialled.clone()),
            Value::from(entry_name),
            Value::from(s.caller.from.clone()),
            Value::from(pai),
            text(&s.caller.privacy),
            text(&s.caller.contact),
            text(&s.caller.user_agent),
            text(&s.caller.remote_party_id),
            Value::from(s.flow.remote.to_string()),
            Value::from(s.flow.transport.as_str().to_owned()),
            Value::from(s.emergency_call_id.clone()),
            Value::from(s.incident_id.clone()),
            Value::from(siaga_engine::call::signals::caller_number(&s.caller)),
            Value::from(node.to_owned()),
            Value::from(siaga_engine::call::signals::caller_instance(&s.caller)),
        ],
    )
}
