//! Retention (issue 11 item 6): recordings and verbatim SIP messages older than the configured
//! periods are deleted, except calls on legal hold. What remains: the call record, the
//! recording's path and SHA-256, each message's first line, addresses and SHA-256, and an
//! access-trail entry per deletion. The chain commits to digests, so it still verifies.

use rusqlite::{OptionalExtension, params};

use super::store::Db;
use serde::Serialize;

use super::access::{AccessAction, AccessEntry, record_access_in};
use super::chain::sha256_hex;

const DAY_MS: i64 = 86_400_000;

/// `[retention]`: 0 keeps for ever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPeriods {
    pub recordings_days: u32,
    pub sip_bodies_days: u32,
}

impl RetentionPeriods {
    pub fn is_off(&self) -> bool {
        self.recordings_days == 0 && self.sip_bodies_days == 0
    }
}

/// What one sweep deleted.
#[derive(Debug, Default, Serialize)]
pub struct SweepReport {
    pub recordings_deleted: Vec<i64>,
    pub sip_messages_deleted_for: Vec<i64>,
    /// Sampled messages of no call whose bytes were deleted.
    pub noncall_messages_deleted: i64,
    pub held_calls_kept: i64,
    /// Files the log says were deleted but that could not be removed.
    pub failures: Vec<String>,
}

/// Calls swept per transaction: a large first sweep never holds the write lock for long
/// (the gateway's writer shares it).
const CALLS_PER_TRANSACTION: usize = 50;

/// Runs one sweep at `now_ms` as `user` (`retention` for the gateway's daily sweep). On a
/// shared database `node` limits the recordings to that node's calls: the files are on its
/// own disk (`None`: every call's, one gateway).
pub fn sweep(
    conn: &Db,
    periods: RetentionPeriods,
    now_ms: i64,
    node: Option<&str>,
    user: &str,
    address: &str,
) -> anyhow::Result<SweepReport> {
    let mut report = SweepReport::default();
    let held: i64 = conn.query_row("SELECT count(*) FROM legal_holds", [], |r| r.get(0))?;
    report.held_calls_kept = held;
    if periods.recordings_days > 0 {
        let cutoff = now_ms - i64::from(periods.recordings_days) * DAY_MS;
        let due: Vec<(i64, String, String)> = conn
            .prepare(
                "SELECT id, recording_path, recording_sha256 FROM calls
                 WHERE started_at < ?1 AND recording_sha256 IS NOT NULL
                   AND (CAST(?2 AS TEXT) IS NULL OR node = ?2)
                   AND NOT EXISTS (SELECT 1 FROM legal_holds h WHERE h.call = calls.id)
                   AND NOT EXISTS (SELECT 1 FROM retention_deletions d
                                   WHERE d.call = calls.id AND d.what = 'recording')
                 ORDER BY id",
            )?
            .query_map(params![cutoff, node], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        for chunk in due.chunks(CALLS_PER_TRANSACTION) {
            in_transaction(conn, |tx| {
                for (call, path, sha) in chunk {
                    let detail = format!(
                        "recording {path} (sha256 {sha}) deleted: older than retention.recordings_days = {}",
                        periods.recordings_days
                    );
                    mark_deleted(tx, *call, "recording", now_ms, user, address, &detail)?;
                }
                Ok(())
            })?;
            // The log says so first: a file that cannot be removed is reported, never a
            // recording gone without a record of it.
            for (call, path, _) in chunk {
                match std::fs::remove_file(path) {
                    Ok(()) => report.recordings_deleted.push(*call),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        report.recordings_deleted.push(*call)
                    }
                    Err(e) => report.failures.push(format!("call {call}: {path}: {e}")),
                }
            }
        }
    }
    if periods.sip_bodies_days > 0 {
        let cutoff = now_ms - i64::from(periods.sip_bodies_days) * DAY_MS;
        let due: Vec<i64> = conn
            .prepare(
                "SELECT id FROM calls
                 WHERE started_at < ?1 AND ended_at IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM legal_holds h WHERE h.call = calls.id)
                   AND NOT EXISTS (SELECT 1 FROM retention_deletions d
                                   WHERE d.call = calls.id AND d.what = 'sip_messages')
                 ORDER BY id",
            )?
            .query_map(params![cutoff], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for chunk in due.chunks(CALLS_PER_TRANSACTION) {
            in_transaction(conn, |tx| {
                for call in chunk {
                    let n = strip_messages(tx, Some(*call), cutoff)?;
                    let detail = format!(
                        "{n} SIP message(s) deleted verbatim (first line, addresses and SHA-256 \
                         kept): older than retention.sip_bodies_days = {}",
                        periods.sip_bodies_days
                    );
                    mark_deleted(tx, *call, "sip_messages", now_ms, user, address, &detail)?;
                }
                Ok(())
            })?;
            report.sip_messages_deleted_for.extend_from_slice(chunk);
        }
        let mut n = 0;
        in_transaction(conn, |tx| {
            n = strip_messages(tx, None, cutoff)?;
            if n > 0 {
                record_access_in(
                    tx,
                    &AccessEntry {
                        at_ms: now_ms,
                        user,
                        address,
                        action: AccessAction::RetentionDelete,
                        call: None,
                        detail: &format!(
                            "{n} sampled SIP message(s) of no call deleted verbatim: older than \
                             retention.sip_bodies_days = {}",
                            periods.sip_bodies_days
                        ),
                    },
                )?;
            }
            Ok(())
        })?;
        report.noncall_messages_deleted = n as i64;
    }
    Ok(report)
}

/// Runs `f` in an immediate transaction (the write lock from the start: the access trail's
/// and the chain's next numbers are read inside it).
fn in_transaction(conn: &Db, f: impl FnOnce(&Db) -> rusqlite::Result<()>) -> rusqlite::Result<()> {
    let tx = conn.write_transaction()?;
    f(&tx)?;
    tx.commit()
}

/// The access-trail entry and the deletion row, in the caller's transaction.
fn mark_deleted(
    tx: &Db,
    call: i64,
    what: &str,
    now_ms: i64,
    user: &str,
    address: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    let seq = record_access_in(
        tx,
        &AccessEntry {
            at_ms: now_ms,
            user,
            address,
            action: AccessAction::RetentionDelete,
            call: Some(call),
            detail,
        },
    )?;
    tx.execute(
        "INSERT INTO retention_deletions (call, what, at, access_seq) VALUES (?1, ?2, ?3, ?4)",
        params![call, what, now_ms, seq],
    )?;
    Ok(())
}

/// Replaces the verbatim bytes of a call's messages (or, `None`, of sampled messages of no
/// call older than `cutoff`) by their SHA-256; returns how many.
fn strip_messages(tx: &Db, call: Option<i64>, cutoff: i64) -> rusqlite::Result<usize> {
    let rows: Vec<(i64, Vec<u8>)> = match call {
        Some(call) => tx
            .prepare("SELECT id, raw FROM sip_messages WHERE call = ?1 AND raw_sha256 IS NULL")?
            .query_map(params![call], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?,
        None => tx
            .prepare(
                "SELECT id, raw FROM sip_messages
                 WHERE call IS NULL AND at < ?1 AND raw_sha256 IS NULL",
            )?
            .query_map(params![cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?,
    };
    for (id, raw) in &rows {
        tx.execute(
            "UPDATE sip_messages SET raw = ?2, raw_sha256 = ?3 WHERE id = ?1",
            params![id, Vec::<u8>::new(), sha256_hex(raw)],
        )?;
    }
    Ok(rows.len())
}

/// When retention deleted `what` (recording | sip_messages) of the call, if it did and its
/// access-trail entry is there.
pub fn deleted_by_retention(conn: &Db, call: i64, what: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT d.at FROM retention_deletions d JOIN access_trail a ON a.seq = d.access_seq
         WHERE d.call = ?1 AND d.what = ?2 AND a.action = 'retention_delete' AND a.call = ?1",
        params![call, what],
        |r| r.get(0),
    )
    .optional()
}

/// A call on legal hold.
#[derive(Debug, Serialize)]
pub struct Hold {
    pub call: i64,
    pub at: i64,
    pub user: String,
    pub reason: String,
}

/// Puts a call on legal hold (or `hold = false`: releases it), with its access-trail entry.
pub fn set_hold(
    conn: &Db,
    call: i64,
    hold: bool,
    reason: &str,
    now_ms: i64,
    user: &str,
    address: &str,
) -> anyhow::Result<()> {
    let tx = conn.write_transaction()?;
    let exists: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM calls WHERE id = ?1)",
        params![call],
        |r| r.get(0),
    )?;
    if !exists {
        anyhow::bail!("no call {call} in the call log");
    }
    if hold {
        tx.execute(
            "INSERT INTO legal_holds (call, at, user_name, reason) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (call) DO UPDATE SET at = ?2, user_name = ?3, reason = ?4",
            params![call, now_ms, user, reason],
        )?;
    } else if tx.execute("DELETE FROM legal_holds WHERE call = ?1", params![call])? == 0 {
        anyhow::bail!("call {call} is not on legal hold");
    }
    record_access_in(
        &tx,
        &AccessEntry {
            at_ms: now_ms,
            user,
            address,
            action: AccessAction::LegalHold,
            call: Some(call),
            detail: &format!("{}: {reason}", if hold { "hold" } else { "unhold" }),
        },
    )?;
    tx.commit()?;
    Ok(())
}

pub fn holds(conn: &Db) -> rusqlite::Result<Vec<Hold>> {
    conn.prepare("SELECT call, at, user_name, reason FROM legal_holds ORDER BY call")?
        .query_map([], |r| {
            Ok(Hold {
                call: r.get(0)?,
                at: r.get(1)?,
                user: r.get(2)?,
                reason: r.get(3)?,
            })
        })?
        .collect()
}
