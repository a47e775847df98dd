//! Start-up after a crash or `kill -9`: the calls the previous run left open.
//!
//! Their peers do not know the gateway died: an agency's desk stays on a dead call, and the
//! caller's phone may too. So every leg that was up gets a BYE, built from the messages the
//! call log kept verbatim ([`siaga_engine::restart`]) and sent by the engine as soon as it
//! runs. And a call's logged end must not be its last logged event (often the agency's answer,
//! long before the crash) when its recording went on: the recording's end goes on the call's
//! timeline (`recording_end`), so the call log's own recovery, which closes an open call at
//! its last recorded activity, ends it there.
//!
//! This runs before the call log's recovery closes the calls (that is how they are found),
//! on a connection of its own, and never stops the start: an error costs the BYEs and is
//! logged, calls are answered anyway. Open calls are only taken for a crash's when no other
//! gateway process holds the call log ([`CallLogLock`]): a second instance started by mistake
//! on the same log must not hang up the first one's live calls.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, OpenFlags, params};

use crate::calllog::Db;

use siaga_engine::ids::{CallRef, LegId};
use siaga_engine::io::{Direction, Flow, Transport};
use siaga_engine::restart::{LoggedMessage, OpenDialog, left_open};
use siaga_engine::timeline::CallEventKind;

use crate::media::recorded_ms;

/// What the previous run left open.
#[derive(Debug, Default)]
pub struct LeftOpen {
    /// Calls that were open when the gateway stopped.
    pub calls: usize,
    /// One BYE to send per leg that was up.
    pub dialogs: Vec<OpenDialog>,
}

/// An exclusive `flock` on the call log file, held by the running gateway. SQLite's own locks
/// are `fcntl` locks, which `flock` does not touch. It is released when the process ends, a
/// `kill -9` included, so it tells a crashed run from a live one.
#[derive(Debug)]
pub struct CallLogLock(#[allow(dead_code)] std::fs::File);

impl CallLogLock {
    /// The lock for a gateway about to serve the call log at `db`: an error naming the
    /// database when another gateway holds it, since this one's start-up recovery would close
    /// that gateway's live calls. `None` when there is no log yet (it is taken once the log
    /// exists) or the lock cannot be used here (said in the log).
    pub fn acquire(db: &Path) -> anyhow::Result<Option<CallLogLock>> {
        match Self::take(db) {
            Ok(Some(lock)) => Ok(Some(lock)),
            Ok(None) => anyhow::bail!(
                "call log {} is in use by another running Siaga gateway (it holds the log's \
                 lock): a second gateway on the same log would close that one's live calls; \
                 stop it first, or give this one its own --db / log.db",
                db.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                tracing::warn!(db = %db.display(), error = %e, "cannot lock the call log");
                Ok(None)
            }
        }
    }

    /// Takes the lock on an existing call log; `Ok(None)` when another process holds it.
    pub fn take(db: &Path) -> std::io::Result<Option<CallLogLock>> {
        let file = std::fs::OpenOptions::new().read(true).open(db)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(CallLogLock(file))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// Finds the calls left open in the call log at `db`, notes their recordings' ends on their
/// timelines and builds a BYE for each leg that was up, sent from one of `listeners` (the
/// gateway's sockets now: its port may have changed).
pub fn prepare(db: &Path, spill_dir: &Path, listeners: &[(Transport, SocketAddr)]) -> LeftOpen {
    or_none(read(db, spill_dir, listeners), &db.display().to_string())
}

/// [`prepare`] for node `node` of the shared PostgreSQL at `url`: its own open calls only
/// (the other nodes' are live).
pub fn prepare_node(url: &str, node: &str, listeners: &[(Transport, SocketAddr)]) -> LeftOpen {
    or_none(
        read_node(url, node, listeners),
        &crate::calllog::store::redacted(url),
    )
}

fn or_none(read: anyhow::Result<LeftOpen>, db: &str) -> LeftOpen {
    match read {
        Ok(left) => left,
        Err(e) => {
            tracing::error!(
                db,
                error = format!("{e:#}"),
                "cannot read the calls a crash left open: their legs get no BYE"
            );
            LeftOpen::default()
        }
    }
}

/// A timeline event to add for a call left open.
struct Note {
    call: i64,
    at: i64,
    kind: CallEventKind,
    detail: String,
}

fn read(
    db: &Path,
    spill_dir: &Path,
    listeners: &[(Transport, SocketAddr)],
) -> anyhow::Result<LeftOpen> {
    if !db.exists() {
        return Ok(LeftOpen::default());
    }
    // What the previous run logged includes what only reached its spill file (the log's
    // disk full, then the crash): calls that are only there, and ends that are only there.
    // Read first, before this process holds any lock on the log (the view reads it without
    // the -shm file, which a full disk may not let grow).
    let spilled = crate::calllog::spill_exists(spill_dir, db);
    let view = match crate::calllog::open_calls_with_spill(db, spill_dir) {
        Ok(view) => Some(view),
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "cannot read the spill file at restart: calls only in it get no BYE"
            );
            None
        }
    };
    // Never creates a file; the call log opens (and migrates) it right after. It takes the
    // notes on recordings' ends, and the calls when the view could not be built.
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .context("opening the call log")?;
    conn.busy_timeout(Duration::from_secs(2))?;
    let conn = Db::from(conn);
    if view.is_none() {
        let has_calls: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'calls')",
            [],
            |r| r.get(0),
        )?;
        if !has_calls && !spilled {
            return Ok(LeftOpen::default());
        }
    }
    let calls = view.as_ref().unwrap_or(&conn);
    let left = left_open_in(calls, &conn, None, listeners)?;
    drop(view);
    Ok(left)
}

/// [`read`] for node `node` of the shared PostgreSQL at `url`. Calls that only reached this
/// node's spill file get no BYE (the spill is replayed, and its calls closed, by the writer).
fn read_node(
    url: &str,
    node: &str,
    listeners: &[(Transport, SocketAddr)],
) -> anyhow::Result<LeftOpen> {
    let conn = Db::connect_postgres(url).context("connecting to the call log")?;
    let has_calls: bool =
        conn.query_row("SELECT to_regclass('calls') IS NOT NULL", [], |r| r.get(0))?;
    if !has_calls {
        return Ok(LeftOpen::default());
    }
    left_open_in(&conn, &conn, Some(node), listeners)
}

/// The calls open in `calls` (of `node` only when given), their BYEs built, and the notes on
/// their recordings' ends written to `log`.
fn left_open_in(
    calls: &Db,
    log: &Db,
    node: Option<&str>,
    listeners: &[(Transport, SocketAddr)],
) -> anyhow::Result<LeftOpen> {
    type Open = (i64, Option<String>, Option<i64>, Option<String>);
    let sql = format!(
        "SELECT c.id, c.recording_path,
                (SELECT min(e.at) FROM call_events e
                  WHERE e.call = c.id AND e.kind = '{}'),
                c.source
         FROM calls c WHERE c.ended_at IS NULL {} ORDER BY c.id",
        CallEventKind::RecordingStarted,
        if node.is_some() {
            "AND c.node = ?1"
        } else {
            ""
        }
    );
    let row = |r: &crate::calllog::store::Row| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?));
    let open: Vec<Open> = match node {
        Some(node) => calls.prepare(&sql)?.query_map([node], row)?,
        None => calls.prepare(&sql)?.query_map([], row)?,
    }
    .collect::<Result<_, _>>()?;
    let mut left = LeftOpen {
        calls: open.len(),
        dialogs: Vec::new(),
    };
    let mut notes = Vec::new();
    for (call, path, started, source) in open {
        let source: Option<SocketAddr> = source.and_then(|s| s.parse().ok());
        if let (Some(path), Some(started)) = (path, started) {
            notes.extend(recording_end(call, &path, started));
        }
        let dialogs = dialogs_of(calls, call).unwrap_or_else(|e| {
            // One unreadable call must not cost the others their BYEs.
            tracing::error!(call, error = %e, "cannot read the messages of a call left open");
            Vec::new()
        });
        for dialog in dialogs {
            let dialog = dialog.and_then(|d| to_caller_source(d, source));
            match dialog.and_then(|(d, redirected)| Ok((on_listener(d, listeners)?, redirected))) {
                Ok((dialog, redirected)) => {
                    notes.extend(redirected.map(|detail| Note {
                        call,
                        at: crate::calllog::now_ms(),
                        kind: CallEventKind::RestartByeToSource,
                        detail,
                    }));
                    left.dialogs.push(dialog);
                }
                Err((leg, why)) => notes.push(Note {
                    call,
                    at: crate::calllog::now_ms(),
                    kind: CallEventKind::RestartByeImpossible,
                    detail: format!("leg {leg}: was up when the gateway stopped, but {why}"),
                }),
            }
        }
    }
    // The BYEs do not depend on these notes: a log that cannot be written (disk full) only
    // costs the better end times. A note for a call only in the spill goes in before the
    // spill's rows do; recovery reads both once they are there.
    if let Err(e) = write_notes(log, &notes) {
        tracing::error!(error = %e, "cannot note the recordings' ends of calls a crash left open");
    }
    Ok(left)
}

/// The `recording_end` note: where the recording of a call left open stops, as start-up
/// repair will find it (start + audio in the file).
fn recording_end(call: i64, path: &str, started: i64) -> Option<Note> {
    let len = std::fs::metadata(path).ok()?.len();
    let ms = recorded_ms(len)?;
    Some(Note {
        call,
        at: started + ms,
        kind: CallEventKind::RecordingEnd,
        detail: format!(
            "{path}: {:.1} s of audio from its start; the call lasted at least until here \
             (the gateway stopped during it)",
            ms as f64 / 1000.0
        ),
    })
}

fn write_notes(conn: &Db, notes: &[Note]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for n in notes {
        tx.execute(
            "INSERT INTO call_events (call, at, kind, detail) VALUES (?1, ?2, ?3, ?4)",
            params![n.call, n.at, n.kind.as_str(), n.detail],
        )?;
    }
    tx.commit()
}

type Built = Result<OpenDialog, (LegId, String)>;

/// The legs of `call` that were up, from its logged messages.
fn dialogs_of(conn: &Db, call: i64) -> anyhow::Result<Vec<Built>> {
    let rows: Vec<(String, String, String, String, String, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT leg, direction, transport, local, remote, raw FROM sip_messages
             WHERE call = ?1 ORDER BY id",
        )?
        .query_map([call], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let logged: Vec<LoggedMessage> = rows
        .iter()
        .filter_map(|(leg, direction, transport, local, remote, raw)| {
            Some(LoggedMessage {
                leg: leg_of(leg)?,
                direction: match direction.as_str() {
                    "in" => Direction::In,
                    "out" => Direction::Out,
                    _ => return None,
                },
                flow: Flow {
                    transport: match transport.as_str() {
                        "udp" => Transport::Udp,
                        "tcp" => Transport::Tcp,
                        "tls" => Transport::Tls,
                        _ => return None,
                    },
                    local: local.parse().ok()?,
                    remote: remote.parse().ok()?,
                    conn: None,
                },
                raw,
            })
        })
        .collect();
    let call = CallRef(u64::try_from(call).unwrap_or_default());
    Ok(left_open(call, &logged)
        .into_iter()
        .map(|d| d.map_err(|u| (u.leg, u.why)))
        .collect())
}

/// `A` is the caller's leg, `B1`, `B2`, … the agency legs.
fn leg_of(text: &str) -> Option<LegId> {
    match text {
        "A" => Some(LegId::Caller),
        _ => text.strip_prefix('B')?.parse().ok().map(LegId::Agency),
    }
}

/// A new TCP connection for a caller's BYE goes only to the IP its INVITE came from: the
/// Contact and Route a caller sent are its word, and a restart must not make the gateway
/// connect wherever a caller said. Another address there keeps its port on the source IP;
/// why is returned for the call's timeline.
fn to_caller_source(
    mut dialog: OpenDialog,
    source: Option<SocketAddr>,
) -> Result<(OpenDialog, Option<String>), (LegId, String)> {
    if dialog.leg != LegId::Caller || !dialog.flow.transport.is_stream() {
        return Ok((dialog, None));
    }
    let Some(source) = source else {
        return Err((
            dialog.leg,
            "the caller's source address is not logged, and a new TCP connection goes to no \
             other"
                .into(),
        ));
    };
    let named = dialog.flow.remote;
    if named.ip() == source.ip() {
        return Ok((dialog, None));
    }
    dialog.flow.remote = SocketAddr::new(source.ip(), named.port());
    let why = format!(
        "leg A: its Contact/Route names {named}, not the address it called from ({}): the BYE's \
         connection goes to {} instead",
        source.ip(),
        dialog.flow.remote
    );
    tracing::warn!(call = dialog.call.0, "restart BYE over TCP: {why}");
    Ok((dialog, Some(why)))
}

/// Moves the dialog's local end to a listener the gateway has now: the same address if it is
/// still served, else the one of the same transport and family (a restart on another port).
/// Over TCP the BYE goes on a new connection from the transport's pool.
fn on_listener(mut dialog: OpenDialog, listeners: &[(Transport, SocketAddr)]) -> Built {
    let local = dialog.flow.local;
    let mut same_kind = listeners
        .iter()
        .filter(|(t, a)| *t == dialog.flow.transport && a.is_ipv4() == local.is_ipv4())
        .map(|&(_, a)| a);
    let serves = |a: &SocketAddr| {
        a.port() == local.port() && (a.ip().is_unspecified() || a.ip() == local.ip())
    };
    if same_kind.clone().any(|a| serves(&a)) {
        return Ok(dialog);
    }
    let Some(listener) = same_kind.next() else {
        return Err((
            dialog.leg,
            format!(
                "the gateway has no {} listener for {} now",
                dialog.flow.transport.as_str(),
                if local.is_ipv4() { "IPv4" } else { "IPv6" }
            ),
        ));
    };
    let ip = if listener.ip().is_unspecified() {
        local.ip()
    } else {
        listener.ip()
    };
    dialog.flow.local = SocketAddr::new(ip, listener.port());
    Ok(dialog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use siaga_engine::ids::CallId;

    fn dialog(local: &str) -> OpenDialog {
        OpenDialog {
            call: CallRef(1),
            leg: LegId::Agency(1),
            flow: Flow {
                transport: Transport::Udp,
                remote: "192.0.2.20:5081".parse().expect("addr"),
                local: local.parse().expect("addr"),
                conn: None,
            },
            request_uri: "sip:desk@192.0.2.20:5081".into(),
            from: "<sip:a@b>;tag=1".into(),
            to: "<sip:c@d>;tag=2".into(),
            call_id: CallId("x".into()),
            cseq: 2,
            route_set: Vec::new(),
        }
    }

    fn local_after(local: &str, listeners: &[(Transport, &str)]) -> Result<String, String> {
        let listeners: Vec<(Transport, SocketAddr)> = listeners
            .iter()
            .map(|(t, a)| (*t, a.parse().expect("addr")))
            .collect();
        on_listener(dialog(local), &listeners)
            .map(|d| d.flow.local.to_string())
            .map_err(|(_, why)| why)
    }

    #[test]
    fn a_bye_leaves_from_the_dialogs_address_or_the_listener_that_replaced_it() {
        let udp = Transport::Udp;
        // Still served (a wildcard listener on the same port).
        assert_eq!(
            local_after("192.0.2.1:5060", &[(udp, "0.0.0.0:5060")]),
            Ok("192.0.2.1:5060".into())
        );
        // Restarted on another port: the new one, same address.
        assert_eq!(
            local_after(
                "192.0.2.1:5060",
                &[(Transport::Tcp, "0.0.0.0:5060"), (udp, "0.0.0.0:5070")]
            ),
            Ok("192.0.2.1:5070".into())
        );
        assert_eq!(
            local_after("127.0.0.1:40001", &[(udp, "127.0.0.1:40777")]),
            Ok("127.0.0.1:40777".into())
        );
        // No UDP over IPv4 any more: said, not guessed.
        assert_eq!(
            local_after("192.0.2.1:5060", &[(udp, "[::]:5060")]),
            Err("the gateway has no udp listener for IPv4 now".into())
        );
    }

    /// A call log with call 1 open: the caller's INVITE and our 200 logged.
    fn log_with_an_open_call(dir: &Path) -> std::path::PathBuf {
        log_with_an_open_caller(dir, "udp", "127.0.0.1:5062")
    }

    /// Call 1 open, its caller at 127.0.0.1:5062 over `transport`, naming `contact` as its
    /// address.
    fn log_with_an_open_caller(dir: &Path, transport: &str, contact: &str) -> std::path::PathBuf {
        let db = dir.join("siaga.db");
        let conn = crate::calllog::open(&db).expect("db");
        conn.execute(
            "INSERT INTO calls (id, call_id, started_at, kind, dialled, source, transport)
             VALUES (1, 'a-leg@x', 1, 'emergency', '112', '127.0.0.1:5062', ?1)",
            [transport],
        )
        .expect("call");
        let via = transport.to_uppercase();
        let invite = format!(
            "INVITE sip:112@127.0.0.1:5060 SIP/2.0\r\n\
            Via: SIP/2.0/{via} 127.0.0.1:5062;branch=z9hG4bKc1\r\n\
            From: <sip:+6281@127.0.0.1>;tag=caller1\r\nTo: <sip:112@127.0.0.1>\r\n\
            Call-ID: a-leg@x\r\nCSeq: 1 INVITE\r\nContact: <sip:+6281@{contact}>\r\n\
            Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let ok = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/{via} 127.0.0.1:5062;branch=z9hG4bKc1\r\n\
            From: <sip:+6281@127.0.0.1>;tag=caller1\r\nTo: <sip:112@127.0.0.1>;tag=gw1\r\n\
            Call-ID: a-leg@x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        for (direction, raw) in [("in", invite), ("out", ok)] {
            conn.execute(
                "INSERT INTO sip_messages (call, at, direction, transport, local, remote,
                    first_line, raw, leg)
                 VALUES (1, 2, ?1, ?2, '127.0.0.1:5060', '127.0.0.1:5062', '', ?3, 'A')",
                params![direction, transport, raw.as_bytes()],
            )
            .expect("message");
        }
        db
    }

    #[test]
    fn a_restart_bye_to_a_tcp_caller_connects_only_to_the_ip_it_called_from() {
        let listeners = [(Transport::Tcp, "127.0.0.1:5060".parse().expect("addr"))];
        let remote_for = |contact: &str| {
            let dir = tempfile::tempdir().expect("dir");
            let db = log_with_an_open_caller(dir.path(), "tcp", contact);
            let left = prepare(&db, &dir.path().join("spill"), &listeners);
            assert_eq!(left.dialogs.len(), 1, "{contact}");
            let notes = crate::calllog::open(&db)
                .expect("db")
                .query_row(
                    "SELECT count(*) FROM call_events WHERE kind = ?1",
                    [CallEventKind::RestartByeToSource.as_str()],
                    |r| r.get::<_, i64>(0),
                )
                .expect("notes");
            (left.dialogs[0].flow.remote.to_string(), notes)
        };
        // Its own address: as named.
        assert_eq!(remote_for("127.0.0.1:5070"), ("127.0.0.1:5070".into(), 0));
        // Someone else's: not connected to; its port on the caller's IP, and why on the
        // call's timeline.
        assert_eq!(
            remote_for("192.0.2.99:5099;transport=tcp"),
            ("127.0.0.1:5099".into(), 1)
        );
    }

    #[test]
    fn a_call_log_another_gateway_holds_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("dir");
        let db = log_with_an_open_call(dir.path());
        let live = CallLogLock::acquire(&db).expect("free").expect("lock");
        let err = CallLogLock::acquire(&db).expect_err("held");
        assert!(
            format!("{err:#}").contains(&format!("call log {} is in use", db.display())),
            "{err:#}"
        );
        drop(live);
        assert!(CallLogLock::acquire(&db).expect("free").is_some());
        let left = prepare(
            &db,
            &dir.path().join("spill"),
            &[(Transport::Udp, "127.0.0.1:5060".parse().expect("addr"))],
        );
        assert_eq!((left.calls, left.dialogs.len()), (1, 1));
        assert_eq!(left.dialogs[0].leg, LegId::Caller);
        assert!(
            CallLogLock::acquire(&dir.path().join("none.db"))
                .expect("no log yet")
                .is_none()
        );
    }

    #[test]
    fn leg_names_are_read_back() {
        assert_eq!(leg_of("A"), Some(LegId::Caller));
        assert_eq!(leg_of("B12"), Some(LegId::Agency(12)));
        assert_eq!(leg_of("C"), None);
        assert_eq!(leg_of("B"), None);
    }
}
