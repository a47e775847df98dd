//! The supervisors' watch and block lists (issue 12) in the call log's `number_list` table:
//! every change is a row of its own (who, when, why, until when), never updated. `siaga
//! numbers` writes and lists them; the running gateway reads the live entries every few
//! seconds and hands the engine a snapshot.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::store::Db;
use rusqlite::params;
use serde::Serialize;
use siaga_engine::dialplan::{CallerNumber, ListEntry, ListKind, NumberLists};

use super::query::iso_utc;
use super::text::esc;

/// Live entries read at most: the lists are set by supervisors, not by callers, but a
/// snapshot still has a bound.
pub const MAX_LIVE: usize = 100_000;

/// One supervisor's change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Watch,
    Block,
    /// Takes the number off whichever list it is on.
    Unblock,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Watch => "watch",
            Change::Block => "block",
            Change::Unblock => "unblock",
        }
    }

    fn list(action: &str) -> Option<ListKind> {
        match action {
            "watch" => Some(ListKind::Watch),
            "block" => Some(ListKind::Block),
            _ => None,
        }
    }
}

/// A row of `number_list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListRow {
    pub id: i64,
    pub number: String,
    pub action: String,
    /// UTC ms.
    pub at: i64,
    /// UTC ms; `None` for an unblock.
    pub expires_at: Option<i64>,
    pub set_by: String,
    pub why: String,
}

/// Records one change; returns its row id.
pub fn record(
    conn: &Db,
    number: &CallerNumber,
    change: Change,
    at_ms: i64,
    expires_at_ms: Option<i64>,
    set_by: &str,
    why: &str,
) -> rusqlite::Result<i64> {
    conn.query_row(
        "INSERT INTO number_list (number, action, at, expires_at, set_by, why)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
        params![
            number.as_str(),
            change.as_str(),
            at_ms,
            expires_at_ms,
            set_by,
            why
        ],
        |r| r.get(0),
    )
}

const COLUMNS: &str = "id, number, action, at, expires_at, set_by, why";

fn rows(conn: &Db, sql: &str, args: impl rusqlite::Params) -> rusqlite::Result<Vec<ListRow>> {
    let mut stmt = conn.prepare(sql)?;
    stmt.query_map(args, |r| {
        Ok(ListRow {
            id: r.get(0)?,
            number: r.get(1)?,
            action: r.get(2)?,
            at: r.get(3)?,
            expires_at: r.get(4)?,
            set_by: r.get(5)?,
            why: r.get(6)?,
        })
    })?
    .collect()
}

/// The entries in force at `now_ms`: each number's latest change, if it is a watch or a block
/// that has not expired. Ordered by number.
pub fn live(conn: &Db, now_ms: i64) -> rusqlite::Result<Vec<ListRow>> {
    rows(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM number_list n
             WHERE n.id = (SELECT max(id) FROM number_list m WHERE m.number = n.number)
               AND n.action IN ('watch', 'block') AND n.expires_at > ?1
             ORDER BY n.number LIMIT ?2"
        ),
        params![now_ms, MAX_LIVE as i64],
    )
}

/// The most numbers with genuine calls handed to the engine (bounded memory: ~100 bytes each).
pub const MAX_GENUINE: usize = 200_000;

/// Numbers (as `calls.caller_number` holds them) with a call whose current class — people's
/// corrections included — is `genuine`, started since `since_ms`. During a flood these
/// callers are never challenged.
pub fn genuine_numbers(conn: &Db, since_ms: i64) -> rusqlite::Result<Vec<String>> {
    let genuine = super::classes::current_class_condition(Some(siaga_dialplan::CallClass::Genuine));
    let mut stmt = conn.prepare(&format!(
        "SELECT DISTINCT caller_number FROM calls
         WHERE caller_number IS NOT NULL AND started_at >= ?1 AND {genuine} LIMIT ?2"
    ))?;
    stmt.query_map(params![since_ms, MAX_GENUINE as i64], |r| r.get(0))?
        .collect()
}

/// Every change, newest first (`list --all`), optionally of one number.
pub fn history(
    conn: &Db,
    number: Option<&CallerNumber>,
    limit: usize,
) -> rusqlite::Result<Vec<ListRow>> {
    rows(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM number_list WHERE CAST(?1 AS TEXT) IS NULL OR number = ?1
             ORDER BY id DESC LIMIT ?2"
        ),
        params![number.map(CallerNumber::as_str), limit as i64],
    )
}

/// The live rows as the engine's snapshot: each expiry becomes an `Instant` on the engine's
/// clock (`now` is `now_ms`), so an entry ends on time however late the next snapshot is.
/// Numbers are put in the current plan's form (`country_code`).
pub fn snapshot(
    rows: &[ListRow],
    now_ms: i64,
    now: Instant,
    country_code: Option<&str>,
) -> NumberLists {
    NumberLists::new(rows.iter().filter_map(|row| {
        let kind = Change::list(&row.action)?;
        let left = row.expires_at?.saturating_sub(now_ms);
        let number = CallerNumber::normalise(&row.number, country_code).ok()?;
        let entry = ListEntry {
            kind,
            expires_at: now + Duration::from_millis(u64::try_from(left).ok()?),
            by: row.set_by.clone(),
            why: row.why.clone(),
        };
        Some((number, entry))
    }))
}

/// A table for supervisors: live entries (with the time left) or the history.
pub fn render(rows: &[ListRow], now_ms: i64) -> String {
    if rows.is_empty() {
        return "no entries\n".to_owned();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<6} {:<16} {:<8} {:<20} {:<20} {:<12} why",
        "id", "number", "action", "set at (UTC)", "until (UTC)", "by"
    );
    for row in rows {
        let until = match row.expires_at {
            Some(at) if at > now_ms => format!("{} ", &iso_utc(at)[..16]),
            Some(at) => format!("{} (over)", &iso_utc(at)[..16]),
            None => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<6} {:<16} {:<8} {:<20} {:<20} {:<12} {}",
            row.id,
            esc(&row.number),
            esc(&row.action),
            &iso_utc(row.at)[..16],
            until.trim_end(),
            esc(&row.set_by),
            esc(&row.why)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // one real Instant as the origin of the snapshot
    use super::*;
    use crate::calllog::testing::{Store, TestLog};

    fn number(text: &str) -> CallerNumber {
        CallerNumber::normalise(text, Some("62")).expect("number")
    }

    #[test]
    fn the_latest_change_of_each_number_is_what_is_live() {
        the_latest_change_of_each_number_is_what_is_live_on(Store::Sqlite)
    }

    #[test]
    fn the_latest_change_of_each_number_is_what_is_live_on_postgres() {
        the_latest_change_of_each_number_is_what_is_live_on(Store::Postgres)
    }

    fn the_latest_change_of_each_number_is_what_is_live_on(store: Store) {
        let log = TestLog::new(store);
        let conn = log.open();
        let (a, b, c) = (
            number("0811-1111-111"),
            number("+628222222222"),
            number("628333333333"),
        );
        let hour = 3_600_000;
        record(&conn, &a, Change::Watch, 0, Some(hour), "sari", "pranks").expect("row");
        record(
            &conn,
            &a,
            Change::Block,
            10,
            Some(2 * hour),
            "budi",
            "worse",
        )
        .expect("row");
        record(&conn, &b, Change::Block, 0, Some(hour), "sari", "x").expect("row");
        record(&conn, &b, Change::Unblock, 20, None, "sari", "sorry").expect("row");
        record(&conn, &c, Change::Watch, 0, Some(100), "sari", "short").expect("row");
        let now = 1000;
        let rows = live(&conn, now).expect("live");
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].number, "+628111111111");
        assert_eq!(rows[0].action, "block");
        assert_eq!(rows[0].set_by, "budi");
        assert_eq!(history(&conn, None, 100).expect("all").len(), 5);
        assert_eq!(history(&conn, Some(&b), 100).expect("b").len(), 2);
        let table = render(&rows, now);
        assert!(
            table.contains("+628111111111    block    1970-01-01T00:00"),
            "{table}"
        );

        let t = Instant::now();
        let lists = snapshot(&rows, now, t, Some("62"));
        let entry = lists.live(&a, t).expect("blocked");
        assert_eq!(entry.kind, ListKind::Block);
        assert_eq!(
            entry.expires_at,
            t + Duration::from_millis((2 * hour - now) as u64)
        );
        assert!(lists.live(&a, entry.expires_at).is_none(), "over on time");
    }
}
