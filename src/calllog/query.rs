//! Reading the call log for supervisors: `siaga calls list|show`.

use std::fmt::Write as _;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use siaga_engine::call::EndReason;

use super::schema::GATEWAY_RESTARTED;

#[derive(Debug, Serialize)]
pub struct CallRow {
    pub id: i64,
    pub call_id: String,
    pub started_at: i64,
    pub answered_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub kind: String,
    pub dialled: String,
    pub entry: Option<String>,
    pub caller_from: Option<String>,
    pub caller_pai: Vec<String>,
    pub caller_privacy: Option<String>,
    pub caller_contact: Option<String>,
    pub caller_user_agent: Option<String>,
    pub source: String,
    pub transport: String,
    pub end_reason: Option<String>,
    pub end_detail: Option<String>,
    pub recording_path: Option<String>,
    pub recording_sha256: Option<String>,
    pub recording_ms: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct MessageRow {
    pub at: i64,
    pub direction: String,
    pub transport: String,
    pub remote: String,
    pub first_line: String,
    pub note: Option<String>,
    pub raw: String,
}

#[derive(Debug, Serialize)]
pub struct EventRow {
    pub at: i64,
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct LocationRow {
    pub at: i64,
    pub source: String,
    pub summary: String,
    pub report: serde_json::Value,
}

#[derive(Debug, Serialize)]
pub struct CallDetail {
    #[serde(flatten)]
    pub call: CallRow,
    pub locations: Vec<LocationRow>,
    pub events: Vec<EventRow>,
    pub messages: Vec<MessageRow>,
}

const CALL_COLUMNS: &str = "id, call_id, started_at, answered_at, ended_at, kind, dialled, entry,
    caller_from, caller_pai, caller_privacy, caller_contact, caller_user_agent, source, transport,
    end_reason, end_detail, recording_path, recording_sha256, recording_ms";

fn call_row(r: &rusqlite::Row) -> rusqlite::Result<CallRow> {
    let pai: Option<String> = r.get(9)?;
    Ok(CallRow {
        id: r.get(0)?,
        call_id: r.get(1)?,
        started_at: r.get(2)?,
        answered_at: r.get(3)?,
        ended_at: r.get(4)?,
        kind: r.get(5)?,
        dialled: r.get(6)?,
        entry: r.get(7)?,
        caller_from: r.get(8)?,
        caller_pai: pai
            .and_then(|p| serde_json::from_str(&p).ok())
            .unwrap_or_default(),
        caller_privacy: r.get(10)?,
        caller_contact: r.get(11)?,
        caller_user_agent: r.get(12)?,
        source: r.get(13)?,
        transport: r.get(14)?,
        end_reason: r.get(15)?,
        end_detail: r.get(16)?,
        recording_path: r.get(17)?,
        recording_sha256: r.get(18)?,
        recording_ms: r.get(19)?,
    })
}

/// Which calls `calls list` shows.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    /// Only calls that ended for one of these reasons (all when empty).
    pub end_reasons: Vec<String>,
    /// Only emergency calls that may have left the caller without help and that no agency
    /// answered: the centre's call-back list.
    pub call_backs: bool,
}

/// Every end reason the log can hold, with whether it puts an emergency call on the call-back
/// list: the engine's, and the one crash recovery writes (a crash also leaves callers waiting).
fn logged_end_reasons() -> impl Iterator<Item = (&'static str, bool)> {
    EndReason::ALL
        .iter()
        .map(|r| (r.as_str(), r.calls_for_call_back()))
        .chain([(GATEWAY_RESTARTED, true)])
}

/// The end reason names a supervisor may filter on.
pub fn known_end_reasons() -> Vec<&'static str> {
    logged_end_reasons().map(|(name, _)| name).collect()
}

pub fn list(
    conn: &Connection,
    limit: usize,
    filter: &ListFilter,
) -> rusqlite::Result<Vec<CallRow>> {
    // ?1 is the limit; the end reasons follow as ?2, ?3, …
    let mut conditions = Vec::new();
    if !filter.end_reasons.is_empty() {
        conditions.push(format!(
            "end_reason IN ({})",
            placeholders(2, filter.end_reasons.len())
        ));
    }
    if filter.call_backs {
        conditions.push(call_back_condition());
    }
    let filter_sql = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT {CALL_COLUMNS} FROM calls {filter_sql} ORDER BY id DESC LIMIT ?1"
    ))?;
    let limit = limit as i64;
    let params: Vec<&dyn rusqlite::ToSql> = std::iter::once(&limit as &dyn rusqlite::ToSql)
        .chain(filter.end_reasons.iter().map(|r| r as &dyn rusqlite::ToSql))
        .collect();
    stmt.query_map(params.as_slice(), call_row)?.collect()
}

/// The SQL condition (on `calls`) of the call-back list: emergency calls that may have left
/// the caller without help and that no agency answered.
pub fn call_back_condition() -> String {
    // The names are our own constants, so they can be inlined as SQL literals.
    let reasons: Vec<String> = logged_end_reasons()
        .filter(|&(_, call_back)| call_back)
        .map(|(name, _)| format!("'{name}'"))
        .collect();
    format!(
        "calls.kind = 'emergency' AND calls.end_reason IN ({}) AND NOT EXISTS \
         (SELECT 1 FROM call_events e WHERE e.call = calls.id AND e.kind = 'agency_answered')",
        reasons.join(", ")
    )
}

/// `?first, ?first+1, …` for `count` numbered SQL parameters.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn show(conn: &Connection, id: i64) -> rusqlite::Result<Option<CallDetail>> {
    let call = conn
        .query_row(
            &format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = ?1"),
            params![id],
            call_row,
        )
        .optional()?;
    let Some(call) = call else { return Ok(None) };
    let events = conn
        .prepare("SELECT at, kind, detail FROM call_events WHERE call = ?1 ORDER BY at, id")?
        .query_map(params![id], |r| {
            Ok(EventRow {
                at: r.get(0)?,
                kind: r.get(1)?,
                detail: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let messages = conn
        .prepare(
            "SELECT at, direction, transport, remote, first_line, note, raw
             FROM sip_messages WHERE call = ?1 ORDER BY at, id",
        )?
        .query_map(params![id], |r| {
            let raw: Vec<u8> = r.get(6)?;
            Ok(MessageRow {
                at: r.get(0)?,
                direction: r.get(1)?,
                transport: r.get(2)?,
                remote: r.get(3)?,
                first_line: r.get(4)?,
                note: r.get(5)?,
                raw: String::from_utf8_lossy(&raw).into_owned(),
            })
        })?
        .collect::<Result<_, _>>()?;
    let locations = conn
        .prepare("SELECT at, source, summary, report FROM call_locations WHERE call = ?1 ORDER BY at, id")?
        .query_map(params![id], |r| {
            let report: String = r.get(3)?;
            Ok(LocationRow {
                at: r.get(0)?,
                source: r.get(1)?,
                summary: r.get(2)?,
                report: serde_json::from_str(&report).unwrap_or(serde_json::Value::Null),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(CallDetail {
        call,
        locations,
        events,
        messages,
    }))
}

/// `2026-11-27T23:25:08.123Z` without pulling in a date crate.
pub fn iso_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (year, month, day) = crate::civil::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Who called, for a one-line listing: the asserted identity, else the From URI.
fn caller(row: &CallRow) -> String {
    let value = row
        .caller_pai
        .first()
        .map(String::as_str)
        .or(row.caller_from.as_deref())
        .unwrap_or("-");
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => value[a + 1..b].to_owned(),
        _ => value.split(';').next().unwrap_or(value).trim().to_owned(),
    }
}

fn duration(row: &CallRow) -> String {
    match row.ended_at {
        Some(end) => format!("{:.1}s", (end - row.started_at) as f64 / 1000.0),
        None => "live".to_owned(),
    }
}

pub fn render_list(rows: &[CallRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>6}  {:<24}  {:<13}  {:<22}  {:<30}  {:>8}  {:<24}  recording",
        "id", "started (UTC)", "kind", "dialled", "caller", "length", "end"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:>6}  {:<24}  {:<13}  {:<22}  {:<30}  {:>8}  {:<24}  {}",
            r.id,
            iso_utc(r.started_at),
            r.kind,
            r.dialled,
            caller(r),
            duration(r),
            r.end_reason.as_deref().unwrap_or("-"),
            r.recording_path.as_deref().unwrap_or("-")
        );
    }
    out
}

pub fn render_detail(d: &CallDetail, with_messages: bool) -> String {
    let c = &d.call;
    let mut out = String::new();
    let _ = writeln!(out, "call {}  (Call-ID {})", c.id, c.call_id);
    let _ = writeln!(
        out,
        "  kind        {}  dialled {}  entry {}",
        c.kind,
        c.dialled,
        c.entry.as_deref().unwrap_or("-")
    );
    let _ = writeln!(out, "  started     {}", iso_utc(c.started_at));
    let _ = writeln!(
        out,
        "  answered    {}",
        c.answered_at.map(iso_utc).unwrap_or_else(|| "-".into())
    );
    let _ = writeln!(
        out,
        "  ended       {}  {} {}",
        c.ended_at.map(iso_utc).unwrap_or_else(|| "-".into()),
        c.end_reason.as_deref().unwrap_or("(live)"),
        c.end_detail.as_deref().unwrap_or("")
    );
    let _ = writeln!(out, "caller");
    let _ = writeln!(
        out,
        "  asserted    {}",
        if c.caller_pai.is_empty() {
            "-".to_owned()
        } else {
            c.caller_pai.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "  from        {}",
        c.caller_from.as_deref().unwrap_or("-")
    );
    if let Some(p) = &c.caller_privacy {
        let _ = writeln!(
            out,
            "  privacy     {p}  (number kept for the centre; withheld outside the trust domain)"
        );
    }
    let _ = writeln!(
        out,
        "  contact     {}",
        c.caller_contact.as_deref().unwrap_or("-")
    );
    let _ = writeln!(
        out,
        "  user-agent  {}",
        c.caller_user_agent.as_deref().unwrap_or("-")
    );
    let _ = writeln!(out, "  source      {} ({})", c.source, c.transport);
    let _ = writeln!(out, "location");
    if d.locations.is_empty() {
        let _ = writeln!(out, "  -");
    }
    for l in &d.locations {
        let _ = writeln!(
            out,
            "  {} from the {}: {}",
            iso_utc(l.at),
            l.source,
            l.summary.trim_end().replace('\n', "\n    ")
        );
    }
    let _ = writeln!(out, "recording");
    match &c.recording_path {
        Some(p) => {
            let _ = writeln!(
                out,
                "  {p}  {}  sha256 {}",
                c.recording_ms
                    .map(|ms| format!("{:.2}s", ms as f64 / 1000.0))
                    .unwrap_or_else(|| "?".into()),
                c.recording_sha256.as_deref().unwrap_or("-")
            );
        }
        None => {
            let _ = writeln!(out, "  -");
        }
    }
    let _ = writeln!(out, "timeline");
    // On equal milliseconds the SIP message comes first: it is what caused the events.
    let mut timeline: Vec<(i64, u8, String)> = d
        .events
        .iter()
        .map(|e| (e.at, 1, format!("{:<16} {}", e.kind, e.detail)))
        .collect();
    timeline.extend(d.messages.iter().map(|m| {
        let arrow = if m.direction == "in" { "<-" } else { "->" };
        let note = m
            .note
            .as_deref()
            .map(|n| format!("  [{n}]"))
            .unwrap_or_default();
        (
            m.at,
            0,
            format!("sip {arrow} {:<12} {}{note}", m.remote, m.first_line),
        )
    }));
    timeline.sort_by_key(|(at, order, _)| (*at, *order));
    for (at, _, line) in timeline {
        let _ = writeln!(out, "  {}  {line}", iso_utc(at));
    }
    if with_messages {
        let _ = writeln!(out, "messages");
        for m in &d.messages {
            let _ = writeln!(out, "--- {} {} {}", iso_utc(m.at), m.direction, m.remote);
            out.push_str(&m.raw);
            if !m.raw.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::iso_utc;

    #[test]
    fn iso_dates_are_right_across_leap_years() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso_utc(1_795_821_908_123), "2026-11-27T23:25:08.123Z");
    }
}
