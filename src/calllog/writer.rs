//! The call-log writer thread. Calls never wait on it, and it never lets a call record go:
//! a batch the database refuses (disk full, I/O error, locked) is rolled back and kept,
//! retried with back-off, while new records queue in memory up to a bound in bytes and then
//! in the spill file; once the database takes writes again they go in, in order (spill
//! first, then memory), and the gap becomes a gateway event. It also watches the free space
//! of the database's file system: sampled messages of no call stop being stored first, then
//! an alarm is raised.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use rusqlite::types::Value;
use rusqlite::{ErrorCode, params};

use super::ops::{Entry, Op};
use super::query::iso_utc;
use super::schema::Scope;
use super::spill::Spill;
use super::store::{Db, Dialect};
use super::{GatewayEventKind, LogOptions, Recovery, UnfinishedRecording, Write, now_ms, schema};

/// Records per transaction at most.
const BATCH: usize = 5_000;
/// Retry back-off while the database cannot be written.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);
/// Records taken off the channel in one loop pass at most (memory is bounded as they come).
const INTAKE: usize = 50_000;
/// How often the free space is looked at.
const SPACE_CHECK: Duration = Duration::from_secs(2);
/// 2025-01-01T00:00Z: call references from the clock on a shared database count from here.
const CLOCK_BASE_MS: i64 = 1_735_689_600_000;

/// Counters the senders update.
pub struct Shared {
    /// Bytes handed to the writer and not yet taken.
    pub handover_bytes: AtomicUsize,
    /// The bound on `handover_bytes` ([`LogOptions::handover_bytes`]).
    pub handover_limit: usize,
    /// Records the senders could not hand over.
    pub lost: AtomicU64,
    /// The database takes writes (no gap open): the gateway's readiness.
    pub writable: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub fn new(handover_limit: usize) -> Shared {
        Shared {
            handover_bytes: AtomicUsize::new(0),
            handover_limit,
            lost: AtomicU64::new(0),
            writable: std::sync::atomic::AtomicBool::new(true),
        }
    }
}

/// A time the database could not be written.
struct Gap {
    began_ms: i64,
    first_error: String,
    waited: u64,
    spilled: u64,
    lost: u64,
    dropped: u64,
}

#[derive(Default)]
struct Space {
    low: bool,
    alarm: bool,
    /// Sampled records of no call not stored while space was low.
    dropped: u64,
}

pub struct Writer {
    /// The SQLite file; for PostgreSQL, a name for the spill file ([`super::nodes::spill_key`]).
    path: PathBuf,
    options: LogOptions,
    conn: Option<Db>,
    /// Whose calls start-up repairs and which references this node gives.
    scope: Scope,
    memory: VecDeque<(u64, Entry)>,
    memory_bytes: usize,
    /// Sequence number of the last entry queued.
    seq: u64,
    spill: Spill,
    barriers: Vec<(u64, std::sync::mpsc::Sender<()>)>,
    gap: Option<Gap>,
    retry_at: Instant,
    backoff: Duration,
    space: Space,
    space_checked: Option<Instant>,
    shared: Arc<Shared>,
    /// The thresholds calls are classed with (the running plan's, once the gateway says).
    class_rules: siaga_dialplan::ClassifyRules,
}

/// A failure that says nothing about the record: the database cannot be written now.
fn is_storage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::CannotOpen
                | ErrorCode::ReadOnly
                | ErrorCode::OutOfMemory
                | ErrorCode::PermissionDenied
                | ErrorCode::FileLockingProtocolFailed
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::NotADatabase
        )
    )
}

impl Writer {
    /// Opens the database, replays an earlier run's spill and repairs what a crash left, or,
    /// when the database cannot be written now, works out the same from what can be read
    /// and queues the repair to run before this run's first record.
    pub fn start(
        path: &Path,
        options: LogOptions,
        shared: Arc<Shared>,
        now: i64,
    ) -> anyhow::Result<(Writer, Recovery)> {
        // A node of a shared PostgreSQL: its number (its block of call references) is known
        // before anything is written, from the database or, when it is down, from the last
        // start (kept beside the spill file).
        let (path, scope) = match &options.url {
            None => (path.to_path_buf(), Scope::whole()),
            Some(url) => {
                let number = super::nodes::node_number(url, &options.node, &options.spill_dir)?;
                (
                    super::nodes::spill_key(url, &options.node),
                    Scope::node(&options.node, number),
                )
            }
        };
        let path = path.as_path();
        let (spill, found) = match Spill::open(&options.spill_dir, path) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "spill file unreadable: moved aside");
                let mut spill = Spill::new(&options.spill_dir, path);
                spill.abandon();
                (spill, Default::default())
            }
        };
        if found.records > 0 {
            tracing::warn!(
                records = found.records,
                spill = %spill.path().display(),
                "records an earlier run could not write: replaying them"
            );
        }
        let damaged = found.damaged;
        let mut w = Writer {
            path: path.to_path_buf(),
            options,
            conn: None,
            scope,
            memory: VecDeque::new(),
            memory_bytes: 0,
            seq: 0,
            spill,
            barriers: Vec::new(),
            gap: None,
            retry_at: Instant::now(),
            backoff: FIRST_RETRY,
            space: Space::default(),
            space_checked: None,
            shared,
            class_rules: Default::default(),
        };
        if damaged.places > 0 {
            let detail = format!(
                "spill file {}: {} damaged byte(s) in {} place(s) skipped to the next whole \
                 record; the records there are lost",
                w.spill.path().display(),
                damaged.bytes,
                damaged.places
            );
            tracing::error!("{detail}");
            w.event(GatewayEventKind::LogRecordsLost, detail);
        }
        // A large spill is replayed in the background after a first slice: the gateway
        // answers calls meanwhile.
        let deadline = Instant::now() + w.options.start_replay;
        let written = w.connection().map(|_| ()).map_err(Some).and_then(|()| {
            while w.backlog() {
                if Instant::now() >= deadline {
                    return Err(None);
                }
                w.write_next().map_err(Some)?;
            }
            let conn = w.conn.as_ref().ok_or(Some("no connection".to_owned()))?;
            schema::recover_after_crash(conn, now, &w.scope).map_err(|e| Some(format!("{e:#}")))
        });
        let recovery = match written {
            Ok(r) => r,
            Err(failure) => {
                let mut recovery = w.read_recovery(now);
                w.spilled_recordings(&mut recovery.unfinished);
                // The repair runs in the stream, after what an earlier run left and before
                // this run's first record.
                w.push(Entry {
                    ops: vec![Op::Recover { now_ms: now }],
                    ..Entry::default()
                });
                if let Some(error) = failure {
                    w.failed(error);
                }
                recovery
            }
        };
        let next = recovery
            .next_call_ref
            .max(found.max_call.map_or(1, |c| c + 1));
        Ok((
            w,
            Recovery {
                next_call_ref: next,
                ..recovery
            },
        ))
    }

    /// What the previous run left, read without writing; the first free call reference at
    /// the least.
    fn read_recovery(&self, now: i64) -> Recovery {
        let scope = &self.scope;
        let read = |c: anyhow::Result<Db>| {
            c.map_err(|e| format!("{e:#}"))
                .and_then(|c| schema::read_recovery(&c, scope).map_err(|e| e.to_string()))
        };
        let sqlite = self.options.url.is_none();
        let from_db = match &self.conn {
            Some(c) => schema::read_recovery(c, scope).map_err(|e| e.to_string()),
            None => Err("not open".to_owned()),
        }
        .or_else(|e| {
            if sqlite {
                read(schema::open_read_only(&self.path))
            } else {
                Err(e)
            }
        })
        .or_else(|e| {
            if sqlite {
                read(schema::open_read_only_alone(&self.path))
            } else {
                Err(e)
            }
        });
        let empty = |p: &Path| std::fs::metadata(p).map_or(true, |m| m.len() == 0);
        match from_db {
            Ok(r) => r,
            // A database never written (missing, or an empty file and no WAL) has given no
            // references yet.
            Err(_)
                if sqlite && empty(&self.path) && empty(&schema::sibling(&self.path, "-wal")) =>
            {
                Recovery {
                    next_call_ref: 1,
                    unfinished: Vec::new(),
                }
            }
            Err(error) => {
                // Nothing readable: a reference from the clock is above any an earlier run
                // gave, unless that run averaged more than a call per millisecond (on a
                // shared database: inside this node's block, counted from 2025).
                let next = match self.scope.node {
                    None => u64::try_from(now).unwrap_or(1).max(1),
                    Some(_) => (self.scope.first_id + (now - CLOCK_BASE_MS).max(0)) as u64,
                };
                tracing::error!(%error, next_call_ref = next,
                    "call log unreadable at start: call references continue from the clock");
                Recovery {
                    next_call_ref: next,
                    unfinished: Vec::new(),
                }
            }
        }
    }

    /// One transaction per pass at most: between two, whatever the senders handed over is
    /// taken into memory (then the spill file), so a long backlog (a large spill after a
    /// gap or at start) never fills the hand-over queue.
    /// Recordings the unreplayed spill starts or finishes, applied to those the database
    /// lists as unfinished: a call whose recording is only in the spill is repaired and
    /// hashed at start too.
    fn spilled_recordings(&self, unfinished: &mut Vec<UnfinishedRecording>) {
        let read = self.spill.for_each_unread(|entry| {
            for op in &entry.ops {
                let Op::Sql { sql, params } = op else {
                    continue;
                };
                let (Some(Value::Integer(call)), Some(Value::Text(path)), Some(sha256)) =
                    (params.first(), params.get(1), params.get(2))
                else {
                    continue;
                };
                if sql != super::SET_RECORDING {
                    continue;
                }
                let call = *call as u64;
                unfinished.retain(|u| u.call != call);
                if *sha256 == Value::Null {
                    unfinished.push(UnfinishedRecording {
                        call,
                        path: PathBuf::from(path),
                        failure_logged: false,
                    });
                }
            }
        });
        if let Err(e) = read {
            tracing::error!(error = %format!("{e:#}"), "cannot read the spill file's recordings");
        }
        unfinished.sort_by_key(|u| u.call);
    }

    pub fn run(mut self, rx: Receiver<(usize, Write)>) {
        loop {
            let wait = if self.backlog() {
                self.retry_at.saturating_duration_since(Instant::now())
            } else {
                SPACE_CHECK
            };
            match rx.recv_timeout(wait) {
                Ok(first) => {
                    self.take(first);
                    for taken in 1..INTAKE {
                        match rx.try_recv() {
                            Ok(w) => self.take(w),
                            Err(_) => break,
                        }
                        if taken % BATCH == 0 {
                            self.bound_memory();
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.check_space();
            self.count_lost_at_door();
            if self.gap.is_none() || Instant::now() >= self.retry_at {
                self.flush();
            }
            self.bound_memory();
            let waiting = self.memory.len() as u64 + self.spill.unread();
            metrics::gauge!("siaga_calllog_queue_depth").set(waiting as f64);
        }
        self.stop();
    }

    fn backlog(&self) -> bool {
        !self.memory.is_empty() || self.spill.unread() > 0
    }

    fn take(&mut self, (bytes, write): (usize, Write)) {
        self.shared
            .handover_bytes
            .fetch_sub(bytes, Ordering::Relaxed);
        match write {
            Write::Barrier(b) => self.barriers.push((self.seq, b)),
            Write::ClassRules(rules) => self.class_rules = rules,
            write => {
                if let Some(entry) = write.lower(&self.class_rules, &self.options.node) {
                    if entry.droppable && (self.space.low || self.gap.is_some()) {
                        self.space.dropped += 1;
                        if let Some(g) = &mut self.gap {
                            g.dropped += 1;
                        }
                        return;
                    }
                    self.push(entry);
                }
            }
        }
    }

    fn push(&mut self, entry: Entry) {
        self.seq += 1;
        self.memory_bytes += entry.bytes();
        if let Some(g) = &mut self.gap {
            g.waited += 1;
        }
        self.memory.push_back((self.seq, entry));
    }

    fn event(&mut self, kind: GatewayEventKind, detail: String) {
        self.event_at(now_ms(), kind, detail);
    }

    fn event_at(&mut self, at_ms: i64, kind: GatewayEventKind, detail: String) {
        let mut entry = Entry::default();
        super::insert_gateway_event(&mut entry, at_ms, kind, detail, &self.options.node);
        self.push(entry);
    }

    /// Writes the oldest batch queued, or notes the failure and when to try again; `false`
    /// when the database refused it. A gap ends once nothing waits.
    fn flush(&mut self) -> bool {
        let written = match self.backlog().then(|| self.write_next()) {
            Some(Err(e)) => {
                self.failed(e);
                false
            }
            _ => {
                self.backoff = FIRST_RETRY;
                if !self.backlog()
                    && let Some(gap) = self.gap.take()
                {
                    // Its event is written by the next pass.
                    self.gap_ended(gap);
                }
                true
            }
        };
        self.answer_barriers();
        written
    }

    fn connection(&mut self) -> Result<&Db, String> {
        if self.conn.as_ref().is_some_and(Db::is_closed) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let conn = match &self.options.url {
                None => schema::open(&self.path),
                Some(url) => schema::open_postgres(url),
            }
            .map_err(|e| format!("{e:#}"))?;
            // Where an earlier try (or run) got to in the spill file.
            if let Some(generation) = self.spill.generation() {
                let consumed: Option<i64> = conn
                    .query_row(
                        "SELECT consumed FROM log_spill WHERE generation = ?1",
                        params![generation],
                        |r| r.get(0),
                    )
                    .ok();
                if let Some(c) = consumed {
                    self.spill.skip_to(c as u64).map_err(|e| format!("{e:#}"))?;
                }
            }
            self.conn = Some(conn);
        }
        self.conn.as_ref().ok_or_else(|| "no connection".into())
    }

    /// One transaction: the oldest spilled records, else the oldest in memory.
    fn write_next(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let written = self.write_batch();
        if written.is_ok() {
            metrics::histogram!("siaga_calllog_write_seconds")
                .record(started.elapsed().as_secs_f64());
        }
        written
    }

    fn write_batch(&mut self) -> Result<(), String> {
        self.connection()?;
        if self.spill.unread() > 0 {
            let (entries, offset) = match self.spill.peek(BATCH) {
                Ok(read) => read,
                Err(e) => {
                    let lost = self.spill.abandon();
                    tracing::error!(error = %format!("{e:#}"), lost, "spill file unreadable: its records are lost");
                    self.event(
                        GatewayEventKind::LogRecordsLost,
                        format!("{lost} record(s) in an unreadable spill file were lost: {e:#}"),
                    );
                    return Ok(());
                }
            };
            let generation = self.spill.generation();
            let conn = self.conn.as_ref().ok_or("no connection")?;
            write_entries(conn, entries.iter(), &self.scope, |tx| {
                tx.execute(
                    "INSERT INTO log_spill (generation, consumed) VALUES (?1, ?2)
                     ON CONFLICT (generation) DO UPDATE SET consumed = excluded.consumed",
                    params![generation, offset as i64],
                )
                .map(|_| ())
            })
            .map_err(|e| e.to_string())?;
            self.spill.consumed(offset, entries.len());
            return Ok(());
        }
        let n = self.memory.len().min(BATCH);
        let conn = self.conn.as_ref().ok_or("no connection")?;
        write_entries(
            conn,
            self.memory.iter().take(n).map(|(_, e)| e),
            &self.scope,
            |_| Ok(()),
        )
        .map_err(|e| e.to_string())?;
        for (_, e) in self.memory.drain(..n) {
            self.memory_bytes = self.memory_bytes.saturating_sub(e.bytes());
        }
        Ok(())
    }

    fn failed(&mut self, error: String) {
        self.shared.writable.store(false, Ordering::Relaxed);
        if self.gap.is_none() {
            tracing::error!(
                %error,
                memory_mb = self.options.queue_memory_bytes >> 20,
                spill = %self.spill.path().display(),
                "the call log cannot be written: records wait in memory, then in the spill file, \
                 and are written when it can be (calls are not affected)"
            );
            self.gap = Some(Gap {
                began_ms: now_ms(),
                first_error: error,
                waited: self.memory.len() as u64 + self.spill.unread(),
                spilled: 0,
                lost: 0,
                dropped: 0,
            });
        }
        // A connection that could not be opened is opened afresh; one that failed to write
        // is kept (SQLite rolled the batch back), unless it is gone (PostgreSQL restarted).
        if self.conn.as_ref().is_some_and(Db::is_closed) {
            self.conn = None;
        }
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(LAST_RETRY);
    }

    fn gap_ended(&mut self, gap: Gap) {
        self.shared.writable.store(true, Ordering::Relaxed);
        let ended = now_ms();
        let spilled = match gap.spilled {
            0 => "none spilled".to_owned(),
            n => format!(
                "{n} of them through the spill file {}",
                self.spill.path().display()
            ),
        };
        let detail = format!(
            "the call log could not be written from {} to {} ({:.1} s): {} record(s) waited and \
             were written in order, {spilled}; {} lost; {} sampled message(s) of no call not \
             stored; first error: {}",
            iso_utc(gap.began_ms),
            iso_utc(ended),
            (ended - gap.began_ms) as f64 / 1000.0,
            gap.waited,
            gap.lost,
            gap.dropped,
            gap.first_error
        );
        tracing::warn!("{detail}");
        self.event_at(gap.began_ms, GatewayEventKind::LogGap, detail);
    }

    /// Moves the oldest records in memory to the spill file while memory is over its bound.
    fn bound_memory(&mut self) {
        while self.memory_bytes > self.options.queue_memory_bytes && !self.memory.is_empty() {
            let mut chunk = Vec::new();
            let mut freed = 0;
            while let Some((_, e)) = self.memory.front() {
                if chunk.len() >= 1000
                    || self.memory_bytes - freed <= self.options.queue_memory_bytes
                {
                    break;
                }
                freed += e.bytes();
                if let Some((_, e)) = self.memory.pop_front() {
                    chunk.push(e);
                }
            }
            self.memory_bytes = self.memory_bytes.saturating_sub(freed);
            let result = self.spill.append(&chunk);
            let gap = self.gap.get_or_insert_with(|| Gap {
                began_ms: now_ms(),
                first_error: "the writer fell behind".into(),
                waited: chunk.len() as u64,
                spilled: 0,
                lost: 0,
                dropped: 0,
            });
            match result {
                Ok(()) => gap.spilled += chunk.len() as u64,
                Err(e) => {
                    gap.lost += chunk.len() as u64;
                    tracing::error!(
                        error = %format!("{e:#}"),
                        records = chunk.len(),
                        "the call log and its spill file cannot be written: records lost"
                    );
                }
            }
        }
    }

    fn count_lost_at_door(&mut self) {
        let lost = self.shared.lost.swap(0, Ordering::Relaxed);
        if lost == 0 {
            return;
        }
        match &mut self.gap {
            Some(g) => g.lost += lost,
            None => self.event(
                GatewayEventKind::LogRecordsLost,
                format!("{lost} record(s) lost: the call-log writer could not keep up"),
            ),
        }
    }

    fn answer_barriers(&mut self) {
        let done = if self.spill.unread() > 0 {
            0
        } else {
            self.memory.front().map_or(self.seq, |(s, _)| s - 1)
        };
        self.barriers.retain(|(seq, b)| {
            if *seq <= done {
                let _ = b.send(());
                false
            } else {
                true
            }
        });
    }

    /// Free space on the database's file system against the two thresholds.
    fn check_space(&mut self) {
        // A shared database's disk is its own server's to watch.
        if self.options.url.is_some() {
            return;
        }
        if self
            .space_checked
            .is_some_and(|at| at.elapsed() < SPACE_CHECK)
        {
            return;
        }
        self.space_checked = Some(Instant::now());
        let Some(free) = free_bytes(&self.path) else {
            return;
        };
        let mb = |b: u64| b >> 20;
        let (low, alarm) = (self.options.low_space_bytes, self.options.alarm_space_bytes);
        // 5 % hysteresis: a level hovering at a threshold gives one event, not a stream.
        let cleared = |limit: u64| free >= limit + limit / 20;
        if !self.space.low && free < low {
            self.space.low = true;
            tracing::warn!(
                free_mb = mb(free),
                "call-log disk low: sampled messages of no call are no longer stored"
            );
            self.event(
                GatewayEventKind::LogDiskLow,
                format!(
                    "{} MiB free on the call log's file system, under log.low_space_mb ({} MiB): \
                     sampled messages of no call are no longer stored",
                    mb(free),
                    mb(low)
                ),
            );
        } else if self.space.low && cleared(low) {
            self.space.low = false;
            let dropped = std::mem::take(&mut self.space.dropped);
            self.event(
                GatewayEventKind::LogDiskLowCleared,
                format!(
                    "{} MiB free again: sampled messages of no call are stored again; {dropped} \
                     were not stored",
                    mb(free)
                ),
            );
        }
        if !self.space.alarm && free < alarm {
            self.space.alarm = true;
            tracing::error!(
                free_mb = mb(free),
                "ALARM: the call log's disk is nearly full"
            );
            self.event(
                GatewayEventKind::LogDiskAlarm,
                format!(
                    "ALARM: {} MiB free on the call log's file system, under \
                     log.alarm_space_mb ({} MiB): free space now",
                    mb(free),
                    mb(alarm)
                ),
            );
        } else if self.space.alarm && cleared(alarm) {
            self.space.alarm = false;
            self.event(
                GatewayEventKind::LogDiskAlarmCleared,
                format!("{} MiB free again on the call log's file system", mb(free)),
            );
        }
    }

    /// At stop: one last try, and whatever still cannot be written goes to the spill file
    /// for the next start.
    fn stop(mut self) {
        self.count_lost_at_door();
        // The first pass also ends a gap with nothing left waiting (its event is then written).
        while self.flush() && self.backlog() {}
        if !self.backlog() {
            return;
        }
        if let Some(gap) = &self.gap {
            let detail = format!(
                "the call log could not be written from {} until the gateway stopped: {} \
                 record(s) waited, kept in the spill file {} and written at the next start; {} \
                 lost; first error: {}",
                iso_utc(gap.began_ms),
                gap.waited,
                self.spill.path().display(),
                gap.lost,
                gap.first_error
            );
            self.event_at(gap.began_ms, GatewayEventKind::LogGap, detail);
        }
        let rest: Vec<Entry> = self.memory.drain(..).map(|(_, e)| e).collect();
        match self.spill.append(&rest) {
            Ok(()) => tracing::warn!(
                records = rest.len(),
                spill = %self.spill.path().display(),
                "call log still unwritable at stop: records kept in the spill file for the next start"
            ),
            Err(e) => tracing::error!(
                error = %format!("{e:#}"),
                records = rest.len(),
                "call log and spill file unwritable at stop: records lost"
            ),
        }
    }
}

/// Writes entries in one transaction (and `finish` in it too); a storage failure rolls it
/// all back. One record that is wrong in itself is logged and skipped, so it cannot hold up
/// the rest. (PostgreSQL aborts a whole transaction at its first error: there a batch that
/// meets one is written again with a savepoint around each record.)
fn write_entries<'a>(
    conn: &Db,
    entries: impl Iterator<Item = &'a Entry> + Clone,
    scope: &Scope,
    finish: impl Fn(&Db) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let careful = match write_batch_once(conn, entries.clone(), scope, &finish, false) {
        Ok(()) => return Ok(()),
        Err(e) if is_storage(&e) || conn.dialect() == Dialect::Sqlite => return Err(e),
        Err(_) => true,
    };
    write_batch_once(conn, entries, scope, &finish, careful)
}

fn write_batch_once<'a>(
    conn: &Db,
    entries: impl Iterator<Item = &'a Entry>,
    scope: &Scope,
    finish: &impl Fn(&Db) -> rusqlite::Result<()>,
    careful: bool,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let strict = tx.dialect() == Dialect::Postgres;
    for entry in entries {
        if careful {
            tx.savepoint()?;
        }
        let mut wrong = false;
        for op in &entry.ops {
            match run_op(&tx, op, scope) {
                Err(e) if is_storage(&e) => return Err(e),
                // PostgreSQL: the transaction is now aborted; try again record by record.
                Err(e) if strict && !careful => return Err(e),
                Err(e) => {
                    tracing::error!(error = %e, "call-log record not written");
                    wrong = true;
                    if strict {
                        break;
                    }
                }
                Ok(()) => {}
            }
        }
        if careful {
            if wrong {
                tx.rollback_to_savepoint()?;
            } else {
                tx.release_savepoint()?;
            }
        }
    }
    finish(&tx)?;
    tx.commit()
}

/// One statement of a record.
pub(super) fn run_op(tx: &Db, op: &Op, scope: &Scope) -> rusqlite::Result<()> {
    match op {
        Op::Sql { sql, params } => tx.execute_values(sql, params).map(|_| ()),
        Op::Recover { now_ms } => schema::recover_in(tx, *now_ms, scope).map(|_| ()),
        Op::Classify { call, at_ms, rules } => {
            super::classes::classify_in(tx, *call as i64, *at_ms, rules)
        }
    }
}

/// Free bytes for an unprivileged writer on the file system holding `db`.
fn free_bytes(db: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    // Where the file really is (a database behind a symbolic link).
    let real = std::fs::canonicalize(db).ok();
    let db = real.as_deref().unwrap_or(db);
    let dir = match db.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated path and `st` is writable memory for one statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    // Both are u64 on 64-bit Linux, narrower elsewhere.
    #[allow(clippy::unnecessary_cast)]
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use rusqlite::types::Value;
    use siaga_engine::ids::CallRef;
    use siaga_engine::io::LogRecord;
    use siaga_engine::timeline::CallEventKind;

    use super::super::{CallLog, LogOptions};
    use super::*;

    fn call_row(id: i64) -> Entry {
        let mut e = Entry {
            call: Some(id as u64),
            ..Entry::default()
        };
        e.sql(
            "INSERT INTO calls (id, call_id, started_at, kind, dialled, source, transport)
             VALUES (?1, 'c', 1, 'emergency', '112', '127.0.0.1:5060', 'udp')",
            vec![Value::Integer(id)],
        );
        e
    }

    #[test]
    fn an_earlier_runs_spill_is_written_before_crash_recovery_closes_what_is_still_open() {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("siaga.db");
        let options = LogOptions {
            spill_dir: dir.path().join("spill"),
            ..LogOptions::default()
        };
        // The earlier run: call 1 in the database; its end, and all of call 2, in the spill.
        let conn = schema::open(&db).expect("db");
        for op in call_row(1).ops {
            if let Op::Sql { sql, params } = op {
                conn.execute(&sql, rusqlite::params_from_iter(params))
                    .expect("insert");
            }
        }
        drop(conn);
        let mut ended = Entry {
            call: Some(1),
            ..Entry::default()
        };
        ended.sql(
            "UPDATE calls SET ended_at = 5, end_reason = 'caller_hung_up' WHERE id = ?1",
            vec![Value::Integer(1)],
        );
        let (mut spill, _) = Spill::open(&options.spill_dir, &db).expect("spill");
        spill.append(&[ended, call_row(2)]).expect("append");
        let spill_path = spill.path().to_path_buf();
        drop(spill);

        let (log, writer, recovery) = CallLog::start_with(&db, options).expect("start");
        assert_eq!(recovery.next_call_ref, 3);
        assert!(log.barrier(Duration::from_secs(10)));
        drop(log);
        writer.join();
        let conn = schema::open_read_only(&db).expect("db");
        let ends: Vec<(i64, String)> = conn
            .prepare("SELECT id, end_reason FROM calls ORDER BY id")
            .expect("query")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            ends,
            vec![
                (1, "caller_hung_up".to_owned()),
                (2, schema::GATEWAY_RESTARTED.to_owned())
            ]
        );
        assert!(!spill_path.exists(), "a replayed spill is removed");
    }

    /// On a shared PostgreSQL: an earlier run's spill is replayed into the database (in two
    /// batches, so where the replay got to is recorded in between), then the node's own calls
    /// still open are closed, and only its own; its next reference is in its block.
    #[test]
    fn a_nodes_spill_is_replayed_into_postgresql_before_it_closes_its_own_open_calls() {
        use crate::calllog::testing::{Store, TestLog};
        let log = TestLog::new(Store::Postgres);
        let options = LogOptions {
            start_replay: Duration::ZERO,
            ..log.options.clone()
        };
        let url = options.url.clone().expect("url");
        let call = |id: i64, node: &str| {
            let mut e = Entry {
                call: Some(id as u64),
                ..Entry::default()
            };
            e.sql(
                "INSERT INTO calls (id, call_id, started_at, kind, dialled, source, transport, node)
                 VALUES (?1, 'c', 1, 'emergency', '112', '127.0.0.1:5060', 'udp', ?2)",
                vec![Value::Integer(id), Value::Text(node.into())],
            );
            e
        };
        // Another node's open call, in the database; this node's, only in its spill.
        let conn = log.open();
        for op in call(1, "other").ops {
            if let Op::Sql { sql, params } = op {
                conn.execute_values(&sql, &params).expect("insert");
            }
        }
        let mine: Vec<Entry> = (2..=BATCH as i64 + 2)
            .map(|id| call(id, &options.node))
            .collect();
        let key = super::super::nodes::spill_key(&url, &options.node);
        let (mut spill, _) = Spill::open(&options.spill_dir, &key).expect("spill");
        spill.append(&mine).expect("append");
        let spill_path = spill.path().to_path_buf();
        drop(spill);

        let (log_, writer, recovery) = CallLog::start_with(&log.db, options).expect("start");
        assert!(log_.barrier(Duration::from_secs(60)));
        drop(log_);
        writer.join();
        assert!(!spill_path.exists(), "a replayed spill is removed");
        let number: i64 = conn
            .query_row(
                "SELECT number FROM nodes WHERE name = 'test-node'",
                [],
                |r| r.get(0),
            )
            .expect("registered");
        assert_eq!(
            recovery.next_call_ref,
            (number * schema::IDS_PER_NODE + 1) as u64
        );
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect("count") };
        assert_eq!(
            count(
                "SELECT count(*) FROM calls WHERE node = 'test-node' AND end_reason = 'gateway_restarted'"
            ),
            BATCH as i64 + 1,
            "every spilled call written, then closed"
        );
        assert_eq!(
            count("SELECT count(*) FROM calls WHERE node = 'other' AND ended_at IS NULL"),
            1,
            "another node's call is not this node's to close"
        );
        assert!(count("SELECT count(*) FROM log_spill") >= 1);
    }

    /// The live records a replay's senders hand over while a large spill is written.
    #[test]
    fn a_large_spill_replay_takes_new_call_records_between_batches_and_loses_none() {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("siaga.db");
        drop(schema::open(&db).expect("db"));
        let options = LogOptions {
            spill_dir: dir.path().join("spill"),
            // Call records may use 64 KiB of hand-over queue.
            handover_bytes: 16 << 10,
            // All of the replay in the writer thread, as after a gap.
            start_replay: Duration::ZERO,
            ..LogOptions::default()
        };
        // Eight transactions' worth left by an earlier run.
        let spilled = 8 * BATCH as i64;
        let (mut spill, _) = Spill::open(&options.spill_dir, &db).expect("spill");
        let rows: Vec<Entry> = (1..=spilled).map(call_row).collect();
        spill.append(&rows).expect("append");
        let spill_path = spill.path().to_path_buf();
        drop(spill);

        let (log, writer, _) = CallLog::start_with(&db, options).expect("start");
        let reader = rusqlite::Connection::open(&db).expect("reader");
        let consumed = || -> i64 {
            reader
                .query_row(
                    "SELECT coalesce(max(consumed), 0) FROM log_spill",
                    [],
                    |r| r.get(0),
                )
                .unwrap_or(0)
        };
        // Each round hands over more than half the bound for call records (a live call's start, its
        // messages, its end: events here), then waits until the writer took them, or until
        // it wrote two more batches without taking them (two rounds then overflow).
        let per_round = 40;
        // Any event of a call's timeline.
        let live = CallEventKind::MediaStarted;
        let detail = "x".repeat(1000);
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut sent = 0i64;
        while spill_path.exists() && Instant::now() < deadline {
            for _ in 0..per_round {
                sent += 1;
                log.engine(
                    1,
                    LogRecord::Timeline {
                        call: CallRef(sent as u64),
                        kind: live,
                        detail: detail.clone(),
                    },
                );
            }
            let (mut last, mut advanced) = (consumed(), 0);
            while log.shared.handover_bytes.load(Ordering::Relaxed) > 0
                && advanced < 2
                && Instant::now() < deadline
            {
                let now = consumed();
                if now != last {
                    (last, advanced) = (now, advanced + 1);
                }
                std::thread::yield_now();
            }
        }
        assert!(!spill_path.exists(), "the spill was replayed within 120 s");
        assert!(sent >= 2 * per_round, "records arrived during the replay");
        assert!(log.barrier(Duration::from_secs(60)));
        drop(log);
        writer.join();
        let conn = schema::open_read_only(&db).expect("db");
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect("count") };
        assert_eq!(
            count(&format!(
                "SELECT count(*) FROM gateway_events WHERE kind = '{}'",
                GatewayEventKind::LogRecordsLost
            )),
            0
        );
        assert_eq!(count("SELECT count(*) FROM calls"), spilled);
        assert_eq!(
            count(&format!(
                "SELECT count(*) FROM call_events WHERE kind = '{live}'"
            )),
            sent,
            "every live record written"
        );
    }

    /// A start-up replay cut short still repairs the recordings only the spill knows of.
    #[test]
    fn recordings_only_in_an_unreplayed_spill_are_among_the_unfinished() {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("siaga.db");
        let conn = schema::open(&db).expect("db");
        // Call 1's recording unfinished in the database; the spill has its digest.
        conn.execute(
            "INSERT INTO calls (id, call_id, started_at, kind, dialled, source, transport,
                recording_path) VALUES (1, 'c', 1, 'emergency', '112', 'x', 'udp', '/r/1.wav')",
            [],
        )
        .expect("call 1");
        drop(conn);
        let options = LogOptions {
            spill_dir: dir.path().join("spill"),
            start_replay: Duration::ZERO,
            ..LogOptions::default()
        };
        let recording = |call: u64, sha: Option<&str>| {
            Write::Recording {
                call,
                path: format!("/r/{call}.wav"),
                sha256: sha.map(str::to_owned),
                duration_ms: sha.map(|_| 1000),
            }
            .lower(&Default::default(), "test")
            .expect("entry")
        };
        let (mut spill, _) = Spill::open(&options.spill_dir, &db).expect("spill");
        spill
            .append(&[
                call_row(2),
                recording(2, None),
                recording(1, Some("ab")),
                call_row(3),
                recording(3, None),
                recording(3, Some("cd")),
            ])
            .expect("append");
        drop(spill);
        let (log, writer, recovery) = CallLog::start_with(&db, options).expect("start");
        let calls: Vec<u64> = recovery.unfinished.iter().map(|u| u.call).collect();
        assert_eq!(calls, vec![2]);
        assert_eq!(recovery.unfinished[0].path, PathBuf::from("/r/2.wav"));
        drop(log);
        writer.join();
    }
}
