//! The access trail: who signed in, looked at a call, played or downloaded a recording,
//! exported, changed a class or an account — with time and address. Written by the console
//! and the CLI; shown to supervisors. (The evidence branch replaces this minimal version with
//! one that also chains every entry; callers use only this API, never the table.)

use anyhow::Context;
use rusqlite::params;

use super::store::Db;
use serde::Serialize;

// Some actions are written only by the evidence work (export, legal hold, retention, keys,
// audit), which shares this contract.
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

#[allow(dead_code)]
impl AccessAction {
    const ALL: [AccessAction; 13] = [
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

#[derive(Debug, Clone, Serialize)]
pub struct AccessRow {
    pub seq: i64,
    pub at_ms: i64,
    pub user: String,
    pub address: String,
    pub action: String,
    pub call: Option<i64>,
    pub detail: String,
}

/// Appends one entry (seq = previous max + 1, in one immediate transaction); returns its seq.
pub fn record_access(conn: &Db, entry: &AccessEntry<'_>) -> anyhow::Result<i64> {
    // A write transaction with the table locked: two writers (console, CLI, other nodes)
    // never read the same max and collide.
    let tx = conn
        .write_transaction()
        .context("access trail: taking the write lock")?;
    let result = (|| -> rusqlite::Result<i64> {
        tx.lock_for_append("access_trail")?;
        let seq: i64 = tx.query_row(
            "SELECT coalesce(max(seq), 0) + 1 FROM access_trail",
            [],
            |r| r.get(0),
        )?;
        tx.execute(
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
        Ok(seq)
    })();
    // A failed entry is rolled back when `tx` is dropped.
    let seq = result.context("access trail: writing an entry")?;
    tx.commit().context("access trail: committing")?;
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
             WHERE CAST(?1 AS BIGINT) IS NULL OR seq < ?1 ORDER BY seq DESC LIMIT ?2",
        )?
        .query_map(params![before_seq, limit as i64], |r| {
            Ok(AccessRow {
                seq: r.get(0)?,
                at_ms: r.get(1)?,
                user: r.get(2)?,
                address: r.get(3)?,
                action: r.get(4)?,
                call: r.get(5)?,
                detail: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calllog::testing::{Store, TestLog};

    #[test]
    fn entries_are_numbered_in_order_and_listed_newest_first() {
        entries_are_numbered_in_order_and_listed_newest_first_on(Store::Sqlite)
    }

    #[test]
    fn entries_are_numbered_in_order_and_listed_newest_first_on_postgres() {
        entries_are_numbered_in_order_and_listed_newest_first_on(Store::Postgres)
    }

    fn entries_are_numbered_in_order_and_listed_newest_first_on(store: Store) {
        let log = TestLog::new(store);
        let conn = log.open();
        for (i, action) in [
            AccessAction::SignIn,
            AccessAction::CallView,
            AccessAction::SignOut,
        ]
        .into_iter()
        .enumerate()
        {
            let seq = record_access(
                &conn,
                &AccessEntry {
                    at_ms: 1000 + i as i64,
                    user: "sri",
                    address: "192.0.2.7",
                    action,
                    call: (action == AccessAction::CallView).then_some(42),
                    detail: "",
                },
            )
            .expect("record");
            assert_eq!(seq, i as i64 + 1);
        }
        let rows = list_access(&conn, None, 10).expect("list");
        let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions, ["sign_out", "call_view", "sign_in"]);
        assert_eq!(rows[1].call, Some(42));
        let older = list_access(&conn, Some(2), 10).expect("page");
        assert_eq!(older.len(), 1);
        assert_eq!(
            AccessAction::parse("call_view"),
            Some(AccessAction::CallView)
        );
        assert_eq!(AccessAction::parse("nonsense"), None);
    }
}
