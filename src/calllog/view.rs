//! The calls a stop left open as the previous run saw them: what the database has, with the
//! spill file's records (those the database could not take before the stop) applied on top,
//! in a private in-memory copy. Start-up reads it before the spill is replayed, which may
//! take long or be impossible now (the log's disk still full).

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use rusqlite::{Connection, params};

use super::ops::{Entry, Op};
use super::schema;
use super::spill::Spill;
use super::store::Db;

/// Applied records between two purges of ended calls' messages (they bound the copy's size
/// to the calls still open).
const PURGE_EVERY: usize = 2_000;

/// An in-memory call log holding the calls open in the database at `db` (with their
/// messages and timelines), then every unreplayed record of its spill file in `spill_dir`
/// that belongs to a call. Calls ended by then keep only their row.
pub fn open_calls_with_spill(db: &Path, spill_dir: &Path) -> anyhow::Result<Db> {
    let mut view = Connection::open_in_memory().context("opening an in-memory call log")?;
    schema::migrate(&mut view, Path::new(":memory:"))?;
    let view = Db::from(view);
    view.execute("ATTACH DATABASE ?1 AS src", params![db.to_string_lossy()])
        .with_context(|| format!("reading call log {}", db.display()))?;
    // Before any read of it: in exclusive locking mode SQLite keeps the WAL index in this
    // process's memory instead of the -shm file, which a full disk may not let grow (the
    // restart after a crash on a full disk must still read the calls left open). No other
    // process uses the log yet: the start holds its lock.
    view.execute_batch("PRAGMA src.locking_mode = EXCLUSIVE")
        .with_context(|| format!("reading call log {}", db.display()))?;
    // A log whose schema could not be created yet (a first start on a full disk) has only
    // the spill.
    let has_calls: bool = view.query_row(
        "SELECT EXISTS (SELECT 1 FROM src.sqlite_master WHERE type = 'table' AND name = 'calls')",
        [],
        |r| r.get(0),
    )?;
    if has_calls {
        for (table, rows) in [
            ("calls", "ended_at IS NULL"),
            ("sip_messages", "call IN (SELECT id FROM main.calls)"),
            ("call_events", "call IN (SELECT id FROM main.calls)"),
        ] {
            copy(&view, table, rows)
                .with_context(|| format!("reading the open calls of {}", db.display()))?;
        }
    }
    // How far the database has each spill file (none in a log that never spilled).
    let consumed: HashMap<i64, i64> = view
        .prepare("SELECT generation, consumed FROM src.log_spill")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()
        })
        .unwrap_or_default();
    let consumed = move |generation| {
        consumed
            .get(&generation)
            .and_then(|&c| u64::try_from(c).ok())
    };
    view.execute_batch("DETACH DATABASE src")?;
    let mut applied = 0;
    let mut failure = None;
    Spill::read_unreplayed(spill_dir, db, consumed, |entry| {
        if failure.is_some() || !(entry.call.is_some() || recovers(&entry)) {
            return;
        }
        if let Err(e) = apply(&view, &entry) {
            failure = Some(e);
            return;
        }
        applied += 1;
        if applied % PURGE_EVERY == 0
            && let Err(e) = purge(&view)
        {
            failure = Some(e);
        }
    })?;
    if let Some(e) = failure {
        return Err(e).context("applying the spill file to the open calls");
    }
    purge(&view)?;
    Ok(view)
}

/// The `rows` of `table` from the database into the copy, by the columns both have (the
/// database's migrations may not have run yet: a start on a full disk).
fn copy(view: &Db, table: &str, rows: &str) -> rusqlite::Result<()> {
    let columns = |schema: &str| -> rusqlite::Result<Vec<String>> {
        view.prepare("SELECT name FROM pragma_table_info(?1, ?2)")?
            .query_map(params![table, schema], |r| r.get(0))?
            .collect()
    };
    let theirs = columns("src")?;
    let shared: Vec<String> = columns("main")?
        .into_iter()
        .filter(|c| theirs.contains(c))
        .map(|c| format!("\"{c}\""))
        .collect();
    let list = shared.join(", ");
    view.execute(
        &format!("INSERT INTO main.{table} ({list}) SELECT {list} FROM src.{table} WHERE {rows}"),
        [],
    )
    .map(|_| ())
}

fn recovers(entry: &Entry) -> bool {
    entry.ops.iter().any(|op| matches!(op, Op::Recover { .. }))
}

/// One record, as the writer would write it; a statement the copy cannot run (a table it
/// does not hold) is skipped, as the writer skips a record wrong in itself.
fn apply(view: &Db, entry: &Entry) -> rusqlite::Result<()> {
    let tx = view.transaction()?;
    // An earlier start's recovery (queued while the database could not be written) closes
    // the calls of the run before it: they got their BYEs then.
    for op in &entry.ops {
        let _ = super::writer::run_op(&tx, op, &schema::Scope::whole());
    }
    tx.commit()
}

fn purge(view: &Db) -> rusqlite::Result<()> {
    view.execute_batch(
        "DELETE FROM sip_messages WHERE call IN (SELECT id FROM calls WHERE ended_at IS NOT NULL);
         DELETE FROM call_events WHERE call IN (SELECT id FROM calls WHERE ended_at IS NOT NULL);",
    )
}
