//! The access trail (issue 11 item 5): who looked at, exported, held or deleted what, from
//! where and when. Every entry is appended to the tamper-evident chain in the same
//! transaction as its row ([`super::chain`]), so an entry edited or deleted later is named by
//! `siaga audit verify`. The console and the CLI write it through this API only.

use rusqlite::{OptionalExtension, params};

use super::store::{Db, Row};
use serde::Serialize;

use super::chain;

// Sign-ins, views, plays, class and user changes are the console's to record.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessAction {
    SignIn,
    SignInFailed,
    SignOut,
    CallView,
    RecordingPlay,
    RecordingDownload,
    Export,
    ClassChange,
    UserChange,
    LegalHold,
    RetentionDelete,
    KeysInit,
    AuditVerify,
}

impl AccessAction {
    pub const ALL: [AccessAction; 13] = [
        AccessAction::SignIn,
        AccessAction::SignInFailed,
        AccessAction::SignOut,
        AccessAction::CallView,
        AccessAction::RecordingPlay,
        AccessAction::RecordingDownload,
        AccessAction::Export,
        AccessAction::ClassChange,
        AccessAction::UserChange,
        AccessAction::LegalHold,
        AccessAction::RetentionDelete,
        AccessAction::KeysInit,
        AccessAction::AuditVerify,
    ];

    /// The text in the `action` column: stored, so never changed.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessAction::SignIn => "sign_in",
            AccessAction::SignInFailed => "sign_in_failed",
            AccessAction::SignOut => "sign_out",
            AccessAction::CallView => "call_view",
            AccessAction::RecordingPlay => "recording_play",
            AccessAction::RecordingDownload => "recording_download",
            AccessAction::Export => "export",
            AccessAction::ClassChange => "class_change",
            AccessAction::UserChange => "user_change",
            AccessAction::LegalHold => "legal_hold",
            AccessAction::RetentionDelete => "retention_delete",
            AccessAction::KeysInit => "keys_init",
            AccessAction::AuditVerify => "audit_verify",
        }
    }

    #[allow(dead_code)] // the console's filters
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

pub struct AccessEntry<'a> {
    pub at_ms: i64,
    pub user: &'a str,
    pub address: &'a str,
    pub action: AccessAction,
    pub call: Option<i64>,
    pub detail: &'a str,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AccessRow {
    pub seq: i64,
    pub at_ms: i64,
    pub user: String,
    pub address: String,
    pub action: String,
    pub call: Option<i64>,
    pub detail: String,
}

/// Appends one entry (seq = previous max + 1, in one write transaction) and its chain entry;
/// returns its seq.
pub fn record_access(conn: &Db, entry: &AccessEntry<'_>) -> anyhow::Result<i64> {
    let tx = conn.write_transaction()?;
    let seq = record_access_in(&tx, entry)?;
    tx.commit()?;
    Ok(seq)
}

/// [`record_access`] inside a transaction of the caller's (a [`Db::write_transaction`], or
/// one that has written already on SQLite), so the entry commits or rolls back with what it
/// records.
pub fn record_access_in(conn: &Db, entry: &AccessEntry<'_>) -> rusqlite::Result<i64> {
    // Several nodes (and the CLI) append to one trail and one chain on PostgreSQL: both are
    // numbered "previous max + 1", so both are locked first, always in this order.
    conn.lock_for_append("access_trail")?;
    conn.lock_for_append("audit_chain")?;
    let seq: i64 = conn.query_row(
        "SELECT coalesce(max(seq), 0) + 1 FROM access_trail",
        [],
        |r| r.get(0),
    )?;
    conn.execute(
        "INSERT INTO access_trail (seq, at, user_name, address, action, call, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            seq,
            entry.at_ms,
            entry.user,
            entry.address,
            entry.action.as_str(),
            entry.call,
            entry.detail
        ],
    )?;
    let row = AccessRow {
        seq,
        at_ms: entry.at_ms,
        user: entry.user.to_owned(),
        address: entry.address.to_owned(),
        action: entry.action.as_str().to_owned(),
        call: entry.call,
        detail: entry.detail.to_owned(),
    };
    chain::append(
        conn,
        entry.at_ms,
        chain::ChainKind::Access,
        seq,
        &access_digest(&row),
    )?;
    Ok(seq)
}

/// Newest first; `before_seq` pages backwards.
pub fn list_access(
    conn: &Db,
    before_seq: Option<i64>,
    limit: usize,
) -> anyhow::Result<Vec<AccessRow>> {
    let rows = conn
        .prepare(
            "SELECT seq, at, user_name, address, action, call, detail FROM access_trail
             WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2",
        )?
        .query_map(
            params![before_seq.unwrap_or(i64::MAX), limit as i64],
            access_row,
        )?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// One entry, if it exists.
pub fn access_by_seq(conn: &Db, seq: i64) -> rusqlite::Result<Option<AccessRow>> {
    conn.query_row(
        "SELECT seq, at, user_name, address, action, call, detail FROM access_trail
         WHERE seq = ?1",
        params![seq],
        access_row,
    )
    .optional()
}

/// Entries the chain does not know (inserted behind Siaga's back), oldest first.
pub(super) fn unchained(conn: &Db) -> rusqlite::Result<Vec<i64>> {
    conn.prepare(
        "SELECT seq FROM access_trail a WHERE NOT EXISTS
            (SELECT 1 FROM audit_chain c WHERE c.kind = 'access' AND c.subject = a.seq)
         ORDER BY seq",
    )?
    .query_map([], |r| r.get(0))?
    .collect()
}

fn access_row(r: &Row) -> rusqlite::Result<AccessRow> {
    Ok(AccessRow {
        seq: r.get(0)?,
        at_ms: r.get(1)?,
        user: r.get(2)?,
        address: r.get(3)?,
        action: r.get(4)?,
        call: r.get(5)?,
        detail: r.get(6)?,
    })
}

/// The digest the chain commits to: SHA-256 of the row's canonical JSON (sorted keys).
pub(super) fn access_digest(row: &AccessRow) -> String {
    let value = serde_json::json!({
        "seq": row.seq, "at": row.at_ms, "user": row.user, "address": row.address,
        "action": row.action, "call": row.call, "detail": row.detail,
    });
    chain::sha256_hex(value.to_string().as_bytes())
}

/// Who runs a command: `cli:<unix user>` (the one behind sudo, if any).
pub fn cli_user() -> String {
    let name = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .or_else(account_name)
        .unwrap_or_else(|| {
            // SAFETY: getuid cannot fail and touches no memory of ours.
            format!("uid{}", unsafe { libc::getuid() })
        });
    format!("cli:{name}")
}

/// The account name of the process's user, from the password database.
fn account_name() -> Option<String> {
    // SAFETY: passwd is plain data for getpwuid_r to fill; `buf` outlives the call and
    // the name it points into is copied out before `buf` goes.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::getuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        );
        if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(pwd.pw_name)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::calllog::testing::{Store, TestLog};

    #[test]
    fn entries_are_numbered_listed_newest_first_and_chained() {
        entries_are_numbered_listed_newest_first_and_chained_on(Store::Sqlite)
    }

    #[test]
    fn entries_are_numbered_listed_newest_first_and_chained_on_postgres() {
        entries_are_numbered_listed_newest_first_and_chained_on(Store::Postgres)
    }

    fn entries_are_numbered_listed_newest_first_and_chained_on(store: Store) {
        let log = TestLog::new(store);
        let conn = log.open();
        for (i, action) in [
            AccessAction::SignIn,
            AccessAction::CallView,
            AccessAction::Export,
        ]
        .into_iter()
        .enumerate()
        {
            let seq = record_access(
                &conn,
                &AccessEntry {
                    at_ms: 1000 + i as i64,
                    user: "sari",
                    address: "192.0.2.7",
                    action,
                    call: (i > 0).then_some(4),
                    detail: "x",
                },
            )
            .expect("record");
            assert_eq!(seq, i as i64 + 1);
        }
        let rows = list_access(&conn, None, 10).expect("list");
        let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions, ["export", "call_view", "sign_in"]);
        let older = list_access(&conn, Some(3), 1).expect("page");
        assert_eq!(older[0].seq, 2);
        let chained: i64 = conn
            .query_row(
                "SELECT count(*) FROM audit_chain WHERE kind = 'access'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(chained, 3);
        for a in AccessAction::ALL {
            assert_eq!(AccessAction::parse(a.as_str()), Some(a));
        }
    }

    /// Several writers at once (nodes, CLI commands) on one log: every entry gets its own
    /// number and the chain stays one unbroken line.
    #[test]
    fn concurrent_writers_number_and_chain_without_gaps_or_forks() {
        concurrent_writers_on(Store::Sqlite)
    }

    #[test]
    fn concurrent_writers_number_and_chain_without_gaps_or_forks_on_postgres() {
        concurrent_writers_on(Store::Postgres)
    }

    fn concurrent_writers_on(store: Store) {
        const WRITERS: i64 = 4;
        const EACH: i64 = 25;
        let log = TestLog::new(store);
        drop(log.open());
        std::thread::scope(|s| {
            for w in 0..WRITERS {
                let log = &log;
                s.spawn(move || {
                    let conn = log.open();
                    for i in 0..EACH {
                        record_access(
                            &conn,
                            &AccessEntry {
                                at_ms: w * 1000 + i,
                                user: &format!("writer{w}"),
                                address: "192.0.2.7",
                                action: AccessAction::CallView,
                                call: None,
                                detail: "",
                            },
                        )
                        .expect("record");
                    }
                });
            }
        });
        let conn = log.open();
        let seqs: Vec<i64> = list_access(&conn, None, 1000)
            .expect("list")
            .iter()
            .map(|r| r.seq)
            .rev()
            .collect();
        assert_eq!(seqs, (1..=WRITERS * EACH).collect::<Vec<_>>());
        let v = chain::verify(&conn, 0, None).expect("verify");
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.access_entries, WRITERS * EACH);
    }
}
