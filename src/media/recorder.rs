//! The evidential call recorder's file side: one thread writes every recording.
//!
//! Legs place audio on a true timeline with [`siaga_media::StereoMixer`] and hand the
//! finished PCM here in chunks (about 100 ms each) tagged with the frame they start at. This
//! thread appends them to `<recordings>/<YYYY-MM-DD>/call-<ref>-<yyyymmddThhmmss>.wav`
//! (16-bit PCM, 8 kHz stereo) and, at least twice a second, writes the buffered audio and
//! patches the header's two size fields in place, so a `kill -9` leaves a playable file
//! that lacks at most the last second. A chunk the media side had to drop (queue full)
//! becomes silence of the same length: the timeline stays true.
//!
//! When the call ends the header is finalised, the file synced, and its SHA-256 computed on
//! a short-lived thread (a four-hour call is half a gigabyte; hashing must not hold up the
//! other recordings), then path, digest and duration go to the call log.
//!
//! Nothing here can stop a call: sends never block, every failure becomes a
//! `recording_failed` event in the call's timeline.
//!
//! The call log is the in-progress marker: the recording's path goes into the call's row as
//! soon as the file is created, its digest only once it is finished. At start-up
//! [`start_repair`] fixes the header of every WAV a crash left behind, and the recordings the
//! call log lists as unfinished (a path, no digest) get their SHA-256 and duration into the
//! call log as if the call had ended normally.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use siaga_engine::ids::CallRef;
use siaga_engine::timeline::CallEventKind;
use siaga_media::wav::{DATA_SIZE_OFFSET, HEADER_LEN, PcmFormat, RIFF_SIZE_OFFSET};

use crate::calllog::{self, CallLog, GatewayEventKind, UnfinishedRecording, Write};

/// Recordings are 8 kHz stereo 16-bit: 4 bytes per frame.
const FORMAT: PcmFormat = PcmFormat::STEREO_8K;
const BYTES_PER_FRAME: u64 = 4;
/// Buffered audio is written and the header patched at least this often.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// …or when this much is buffered.
const FLUSH_BYTES: usize = 256 * 1024;
/// How long the writer lets messages gather after handling a batch (wakes ≤ 50 times a
/// second, however many calls there are).
const GATHER: Duration = Duration::from_millis(20);
/// PCM chunks queued for the writer, over all calls, beyond which the media side drops
/// (and counts) chunks instead of queueing more: 2048 × ~100 ms ≈ 3.4 minutes of call-audio.
pub(crate) const MAX_QUEUED_CHUNKS: usize = 2048;
/// RIFF size field = data size + this.
const RIFF_OVERHEAD: u64 = 36;

/// Identifies one recording between the media side and the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RecordingId(pub u64);

pub(crate) enum RecorderMsg {
    Open {
        id: RecordingId,
        call: u64,
        path: PathBuf,
    },
    /// Interleaved stereo samples whose first frame is `first_frame` of the recording.
    Chunk {
        id: RecordingId,
        first_frame: i64,
        samples: Vec<i16>,
    },
    Close {
        id: RecordingId,
    },
    /// Finalise every open recording and stop.
    Shutdown,
}

/// The sending side, cheap to clone. One FIFO queue keeps opens, chunks and closes in
/// order; chunks are bounded by a shared counter, control messages always go through.
#[derive(Clone)]
pub(crate) struct RecorderHandle {
    tx: Sender<RecorderMsg>,
    queued_chunks: Arc<AtomicUsize>,
}

/// Why a chunk did not reach the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkRejected {
    QueueFull,
    WriterGone,
}

impl RecorderHandle {
    pub(crate) fn open(&self, id: RecordingId, call: u64, path: PathBuf) {
        if self.tx.send(RecorderMsg::Open { id, call, path }).is_err() {
            tracing::error!(call, "recording writer has stopped: recording not started");
        }
    }

    /// Queues a chunk without ever blocking.
    pub(crate) fn chunk(
        &self,
        id: RecordingId,
        first_frame: i64,
        samples: Vec<i16>,
    ) -> Result<(), ChunkRejected> {
        let queued = self.queued_chunks.fetch_add(1, Ordering::AcqRel);
        if queued >= MAX_QUEUED_CHUNKS {
            self.queued_chunks.fetch_sub(1, Ordering::AcqRel);
            return Err(ChunkRejected::QueueFull);
        }
        self.tx
            .send(RecorderMsg::Chunk {
                id,
                first_frame,
                samples,
            })
            .map_err(|_| {
                self.queued_chunks.fetch_sub(1, Ordering::AcqRel);
                ChunkRejected::WriterGone
            })
    }

    pub(crate) fn close(&self, id: RecordingId) {
        if self.tx.send(RecorderMsg::Close { id }).is_err() {
            tracing::error!(
                id = id.0,
                "recording writer has stopped: recording not finalised"
            );
        }
    }

    /// Asks the writer to finalise every open recording and stop.
    pub(crate) fn shutdown(&self) {
        let _ = self.tx.send(RecorderMsg::Shutdown);
    }
}

/// Owns the writer thread.
pub(crate) struct RecorderThread {
    thread: Option<JoinHandle<()>>,
}

impl RecorderThread {
    /// Starts the writer thread. It ends (after finalising every open recording) on
    /// [`RecorderHandle::shutdown`] or when every handle is dropped.
    pub(crate) fn start(calllog: CallLog) -> (RecorderHandle, RecorderThread) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let queued_chunks = Arc::new(AtomicUsize::new(0));
        let (finish_tx, finish_rx) = crossbeam_channel::unbounded();
        let finisher_log = calllog.clone();
        let finisher_thread = std::thread::Builder::new()
            .name("recording-finish".into())
            .spawn(move || finisher_loop(finish_rx, finisher_log))
            .map_err(|e| tracing::error!(error = %e, "cannot start the recording finisher"))
            .ok();
        let writer = Writer {
            rx,
            queued_chunks: queued_chunks.clone(),
            calllog,
            recordings: HashMap::new(),
            finisher: Some(finish_tx),
            finisher_thread,
        };
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || writer.run())
            .map_err(|e| tracing::error!(error = %e, "cannot start the recording thread"))
            .ok();
        (
            RecorderHandle { tx, queued_chunks },
            RecorderThread { thread },
        )
    }

    /// A handle with no thread (what is left after [`RecorderThread::join`]).
    pub(crate) fn none() -> RecorderThread {
        RecorderThread { thread: None }
    }

    /// Waits for the thread (after [`RecorderHandle::shutdown`]).
    pub(crate) fn join(&mut self) {
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the recording thread panicked");
        }
    }
}

/// One recording being written.
struct Recording {
    call: u64,
    path: PathBuf,
    /// The file was created (and its path sent to the call log).
    created: bool,
    /// `None` once the file could not be created or written.
    file: Option<File>,
    /// Audio bytes on disk after the header.
    data_bytes: u64,
    /// Audio bytes buffered, not yet on disk.
    pending: Vec<u8>,
    /// Frames accounted for (on disk + buffered).
    frames: i64,
    last_flush: Instant,
}

struct Writer {
    rx: Receiver<RecorderMsg>,
    queued_chunks: Arc<AtomicUsize>,
    calllog: CallLog,
    recordings: HashMap<RecordingId, Recording>,
    /// Finished recordings go to one finisher thread (fsync, SHA-256, call log) so the writer
    /// never waits on the disk's sync or on hashing while other calls' audio queues up.
    finisher: Option<crossbeam_channel::Sender<Finished>>,
    finisher_thread: Option<JoinHandle<()>>,
}

/// A closed recording for the finisher.
struct Finished {
    call: u64,
    path: PathBuf,
    file: Option<File>,
    duration_ms: Option<i64>,
}

fn finisher_loop(rx: Receiver<Finished>, calllog: CallLog) {
    while let Ok(done) = rx.recv() {
        if let Some(file) = done.file {
            // Evidence: on disk before its digest is declared.
            if let Err(e) = file.sync_all() {
                failed(
                    &calllog,
                    done.call,
                    &done.path,
                    &format!("sync failed: {e}"),
                );
            }
        }
        let sha256 = match sha256_file(&done.path) {
            Ok(digest) => Some(digest),
            Err(e) => {
                failed(
                    &calllog,
                    done.call,
                    &done.path,
                    &format!("cannot hash: {e}"),
                );
                None
            }
        };
        tracing::debug!(call = done.call, path = %done.path.display(), duration_ms = ?done.duration_ms, "recording finished");
        calllog.send(Write::Recording {
            call: done.call,
            path: done.path.display().to_string(),
            sha256,
            duration_ms: done.duration_ms,
        });
    }
}

impl Writer {
    fn run(mut self) {
        'run: loop {
            match self.rx.recv_timeout(FLUSH_EVERY / 2) {
                Ok(RecorderMsg::Shutdown) => break,
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Every call hands over a chunk ten times a second: take all that is queued,
            // then let the next ones gather for a moment instead of waking for each.
            loop {
                match self.rx.try_recv() {
                    Ok(RecorderMsg::Shutdown) => break 'run,
                    Ok(msg) => self.handle(msg),
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => break 'run,
                }
            }
            self.flush_due();
            std::thread::sleep(GATHER);
        }
        // Shutdown, or every sender is gone: finalise what is still open.
        let open: Vec<RecordingId> = self.recordings.keys().copied().collect();
        for id in open {
            self.close(id);
        }
        // Let the finisher complete every recording before the process ends.
        self.finisher = None;
        if let Some(t) = self.finisher_thread.take() {
            let _ = t.join();
        }
    }

    fn handle(&mut self, msg: RecorderMsg) {
        match msg {
            RecorderMsg::Open { id, call, path } => self.open(id, call, path),
            RecorderMsg::Chunk {
                id,
                first_frame,
                samples,
            } => {
                self.queued_chunks.fetch_sub(1, Ordering::AcqRel);
                self.chunk(id, first_frame, &samples);
            }
            RecorderMsg::Close { id } => self.close(id),
            RecorderMsg::Shutdown => {}
        }
    }

    fn open(&mut self, id: RecordingId, call: u64, path: PathBuf) {
        let (path, file) = match create_recording_file(&path) {
            Ok((path, file)) => (path, Some(file)),
            Err(e) => {
                failed(
                    &self.calllog,
                    call,
                    &path,
                    &format!("cannot create the file: {e}"),
                );
                (path, None)
            }
        };
        let created = file.is_some();
        if created {
            tracing::debug!(call, path = %path.display(), "recording");
            // The in-progress marker: a path without a digest is a recording not yet
            // finished, which start-up recovery finishes if a crash comes first.
            self.calllog.send(Write::Recording {
                call,
                path: path.display().to_string(),
                sha256: None,
                duration_ms: None,
            });
        }
        self.recordings.insert(
            id,
            Recording {
                call,
                path,
                created,
                file,
                data_bytes: 0,
                pending: Vec::with_capacity(64 * 1024),
                frames: 0,
                last_flush: Instant::now(),
            },
        );
    }

    fn chunk(&mut self, id: RecordingId, first_frame: i64, samples: &[i16]) {
        let Some(rec) = self.recordings.get_mut(&id) else {
            return;
        };
        if rec.file.is_none() {
            return;
        }
        let frames = i64::try_from(samples.len() / 2).unwrap_or(0);
        // A dropped chunk leaves a gap: fill it with silence so later audio stays in place.
        let mut gap = first_frame - rec.frames;
        while gap > 0 {
            let step = gap.min(8000);
            let bytes = usize::try_from(step).unwrap_or(0) * BYTES_PER_FRAME as usize;
            rec.pending.resize(rec.pending.len() + bytes, 0);
            rec.frames += step;
            gap -= step;
            if rec.pending.len() >= FLUSH_BYTES {
                flush(rec, &self.calllog);
                if rec.file.is_none() {
                    return;
                }
            }
        }
        // Overlap (never expected): skip what is already written.
        let skip = usize::try_from(rec.frames - first_frame).unwrap_or(0) * 2;
        let fresh = samples.get(skip..).unwrap_or_default();
        let start = rec.pending.len();
        rec.pending.resize(start + fresh.len() * 2, 0);
        let bytes = rec.pending.get_mut(start..).unwrap_or_default();
        for (dst, s) in bytes.chunks_exact_mut(2).zip(fresh) {
            dst.copy_from_slice(&s.to_le_bytes());
        }
        rec.frames = rec.frames.max(first_frame + frames);
        if rec.pending.len() >= FLUSH_BYTES {
            flush(rec, &self.calllog);
        }
    }

    fn flush_due(&mut self) {
        let now = Instant::now();
        for rec in self.recordings.values_mut() {
            if now.duration_since(rec.last_flush) >= FLUSH_EVERY {
                flush(rec, &self.calllog);
            }
        }
    }

    fn close(&mut self, id: RecordingId) {
        let Some(mut rec) = self.recordings.remove(&id) else {
            return;
        };
        flush(&mut rec, &self.calllog);
        if !rec.created {
            // Never created: `recording_failed` says why, and the call log has no path.
            return;
        }
        let file = rec.file.take();
        metrics::counter!("siaga_recordings_finished_total").increment(1);
        // A file once created is in the call log: whatever reached the disk is synced, hashed
        // and logged, even after a failure, so that it is not taken for an unfinished one.
        let done = Finished {
            call: rec.call,
            path: rec.path,
            file,
            duration_ms: i64::try_from(rec.data_bytes / BYTES_PER_FRAME / 8).ok(),
        };
        if let Some(finisher) = &self.finisher {
            let _ = finisher.send(done);
        }
    }
}

/// Creates the file (and its day directory) with a provisional header. Never overwrites:
/// a name already taken gets a `-1`, `-2`, … suffix.
fn create_recording_file(path: &Path) -> std::io::Result<(PathBuf, File)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut candidate = path.to_path_buf();
    for n in 1..100 {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&candidate)
        {
            Ok(mut file) => {
                file.write_all(&FORMAT.header(0))?;
                return Ok((candidate, file));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                candidate = path.with_file_name(format!("{stem}-{n}.wav"));
            }
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free file name"))
}

/// Writes buffered audio, then the header's size fields. On error the recording stops
/// (the call goes on) and a `recording_failed` event is logged.
fn flush(rec: &mut Recording, calllog: &CallLog) {
    rec.last_flush = Instant::now();
    let Some(file) = rec.file.as_ref() else {
        rec.pending.clear();
        return;
    };
    if rec.pending.is_empty() {
        return;
    }
    let new_size = rec.data_bytes + rec.pending.len() as u64;
    if new_size + RIFF_OVERHEAD > u64::from(u32::MAX) {
        rec.file = None;
        rec.pending.clear();
        failed(
            calllog,
            rec.call,
            &rec.path,
            "the WAV size limit (4 GiB) is reached; recording stopped",
        );
        return;
    }
    let result = file
        .write_all_at(&rec.pending, HEADER_LEN as u64 + rec.data_bytes)
        .and_then(|()| write_sizes(file, new_size));
    match result {
        Ok(()) => {
            metrics::counter!("siaga_recording_bytes_total").increment(rec.pending.len() as u64);
            rec.data_bytes = new_size;
            rec.pending.clear();
        }
        Err(e) => {
            rec.file = None;
            rec.pending.clear();
            failed(calllog, rec.call, &rec.path, &format!("write failed: {e}"));
        }
    }
}

/// Patches the RIFF and data sizes of a canonical header in place.
fn write_sizes(file: &File, data_size: u64) -> std::io::Result<()> {
    let data = u32::try_from(data_size).unwrap_or(u32::MAX);
    let riff = u32::try_from(data_size + RIFF_OVERHEAD).unwrap_or(u32::MAX);
    file.write_all_at(&riff.to_le_bytes(), RIFF_SIZE_OFFSET as u64)?;
    file.write_all_at(&data.to_le_bytes(), DATA_SIZE_OFFSET as u64)
}

fn failed(calllog: &CallLog, call: u64, path: &Path, why: &str) {
    metrics::counter!("siaga_recording_failures_total").increment(1);
    tracing::error!(call, path = %path.display(), why, "recording failed; the call continues");
    calllog.timeline(
        CallRef(call),
        CallEventKind::RecordingFailed,
        format!("{}: {why}", path.display()),
    );
}

/// Lower-case hex SHA-256 of a file (the chain re-hashes recordings the same way).
pub(crate) use crate::calllog::chain::sha256_file;

/// `<root>/<YYYY-MM-DD>/call-<call>-<yyyymmddThhmmss>.wav`, in UTC.
pub(crate) fn recording_path(root: &Path, call: u64, at: SystemTime) -> PathBuf {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (y, m, d) = crate::civil::civil_from_days(days);
    let rem = secs % 86_400;
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    root.join(format!("{y:04}-{m:02}-{d:02}")).join(format!(
        "call-{call}-{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}.wav"
    ))
}

/// A header of ours checked against its file's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    pub path: PathBuf,
    /// `(claimed, actual)` audio bytes when the header was wrong and has been rewritten.
    pub header_fixed: Option<(u32, u32)>,
    /// Audio bytes in the file (whole frames).
    pub audio_bytes: u32,
}

/// Finds the recordings a crash or `kill -9` left with a wrong header, among files last
/// written before `before` (later ones belong to this run), and rewrites every header of ours
/// (canonical 8 kHz stereo) whose sizes disagree with the file's length.
pub(crate) fn repair_recordings(root: &Path, before: SystemTime) -> Vec<Checked> {
    let mut found = Vec::new();
    let mut dirs = vec![(root.to_path_buf(), 0u8)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                if depth < 3 {
                    dirs.push((path, depth + 1));
                }
                continue;
            }
            let is_wav = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("wav"));
            let old = meta.modified().map(|m| m < before).unwrap_or(false);
            if !(is_wav && meta.is_file() && old) {
                continue;
            }
            match check_header(&path, meta.len()) {
                Ok(Some(r)) if r.header_fixed.is_some() => found.push(r),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot check recording")
                }
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

/// Checks (and if needed rewrites) the header of one recording of ours. `None`: not ours, or
/// too short to hold a header.
fn check_header(path: &Path, len: u64) -> std::io::Result<Option<Checked>> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let mut header = [0u8; HEADER_LEN];
    if file.read_exact_at(&mut header, 0).is_err() {
        return Ok(None);
    }
    let Some(check) = FORMAT.check_header(&header, len) else {
        return Ok(None);
    };
    let header_fixed = if check.needs_repair {
        write_sizes(&file, u64::from(check.sizes.data_size))?;
        file.sync_all()?;
        Some((check.claimed_data_size, check.sizes.data_size))
    } else {
        None
    };
    Ok(Some(Checked {
        path: path.to_path_buf(),
        header_fixed,
        audio_bytes: check.sizes.data_size,
    }))
}

/// Milliseconds of audio in `audio_bytes` of a recording.
fn audio_ms(audio_bytes: u32) -> i64 {
    i64::from(audio_bytes) * 1000 / (BYTES_PER_FRAME as i64 * 8000)
}

/// How much audio a recording file of `file_len` bytes holds, as start-up repair will find it
/// (whatever its header says after a crash).
pub(crate) fn recorded_ms(file_len: u64) -> Option<i64> {
    FORMAT.repair_sizes(file_len).map(|s| audio_ms(s.data_size))
}

fn seconds(audio_bytes: u32) -> f64 {
    f64::from(audio_bytes) / (BYTES_PER_FRAME as f64 * 8000.0)
}

/// The gateway event for a rewritten header.
fn log_repaired(calllog: &CallLog, r: &Checked) {
    let Some((claimed, actual)) = r.header_fixed else {
        return;
    };
    tracing::warn!(path = %r.path.display(), "repaired a recording left by a crash");
    calllog.send(Write::Event {
        at_ms: calllog::now_ms(),
        kind: GatewayEventKind::RecordingRepaired,
        detail: format!(
            "{}: header claimed {claimed} audio bytes, the file holds {actual} ({:.1} s); header rewritten",
            r.path.display(),
            seconds(actual),
        ),
    });
}

/// Finishes one recording a crash interrupted: its header right, then its path, SHA-256 and
/// duration in the call's row and a `recording_recovered` event in its timeline. One that
/// cannot be finished is logged once (`recording_failed`) and tried again at the next start.
fn finish_unfinished(calllog: &CallLog, unfinished: &UnfinishedRecording) {
    let UnfinishedRecording {
        call,
        ref path,
        failure_logged,
    } = *unfinished;
    let fail = |why: &str| {
        if !failure_logged {
            failed(calllog, call, path, why);
        }
    };
    let len = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fail("interrupted by a gateway stop (crash or kill) and the file no longer exists");
            return;
        }
        Err(e) => {
            fail(&format!(
                "interrupted by a gateway stop (crash or kill); cannot read: {e}"
            ));
            return;
        }
    };
    let checked = match check_header(path, len) {
        Ok(checked) => checked,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot check recording");
            None
        }
    };
    if let Some(r) = &checked {
        log_repaired(calllog, r);
    }
    let sha256 = match sha256_file(path) {
        Ok(digest) => Some(digest),
        Err(e) => {
            fail(&format!("cannot hash: {e}"));
            None
        }
    };
    let audio_bytes = checked.map(|r| r.audio_bytes);
    calllog.send(Write::Recording {
        call,
        path: path.display().to_string(),
        sha256,
        duration_ms: audio_bytes.map(audio_ms),
    });
    let kept = match audio_bytes {
        Some(b) => format!("{:.1} s kept", seconds(b)),
        None => "not a readable recording; kept as found".to_owned(),
    };
    calllog.timeline(
        CallRef(call),
        CallEventKind::RecordingRecovered,
        format!(
            "{}: interrupted by a gateway stop (crash or kill); {kept}",
            path.display()
        ),
    );
}

/// Start-up repair on its own thread: [`repair_recordings`] under `root` (one gateway event
/// per rewritten header), then each recording the call log lists as `unfinished` (a path and
/// no digest) gets its path, SHA-256 and duration in the call's row (as a normal end would
/// have done) plus a `recording_recovered` event in its timeline.
pub(crate) fn start_repair(
    root: PathBuf,
    before: SystemTime,
    unfinished: Vec<UnfinishedRecording>,
    calllog: CallLog,
) -> Option<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("recording-repair".into())
        .spawn(move || {
            for r in repair_recordings(&root, before) {
                log_repaired(&calllog, &r);
            }
            for recording in &unfinished {
                finish_unfinished(&calllog, recording);
            }
        })
        .map_err(|e| tracing::error!(error = %e, "cannot start the recording repair thread"))
        .ok()
}
