//! Reading the call log for supervisors: `siaga calls list|show`.

use std::fmt::Write as _;

use super::store::Db;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use siaga_engine::call::EndReason;
use siaga_engine::timeline::CallEventKind;

use super::schema::{GATEWAY_RESTARTED, NODE_LOST};
use super::text::{esc, fit, message_lines};

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
    /// The gateway node that handled the call (`[node] name`; none in rows logged before).
    pub node: Option<String>,
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
    /// For a gateway event: the node that logged it (several nodes on one call log).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LocationRow {
    pub at: i64,
    pub source: String,
    pub summary: String,
    pub report: serde_json::Value,
}

/// What the gateway measured about a call (`call_signals`), written after its end.
#[derive(Debug, Serialize)]
pub struct SignalsRow {
    pub digits: i64,
    pub answered_ms: Option<i64>,
    pub agency_talk_ms: Option<i64>,
    pub usable_identity: bool,
    pub voice_frames: Option<i64>,
    pub speech_frames: Option<i64>,
    pub longest_speech_ms: Option<i64>,
}

impl SignalsRow {
    /// The share of the caller's 20 ms frames with speech, if the voice was reported.
    pub fn speech_share(&self) -> Option<f64> {
        match (self.voice_frames, self.speech_frames) {
            (Some(0), Some(_)) => Some(0.0),
            (Some(frames), Some(speech)) => Some(speech as f64 / frames as f64),
            _ => None,
        }
    }
}

/// Other calls from the caller's number before this one (counted when shown).
#[derive(Debug, Serialize)]
pub struct EarlierCalls {
    pub number: String,
    pub last_10_min: usize,
    pub last_hour: usize,
    pub last_day: usize,
}

#[derive(Debug, Serialize)]
pub struct CallDetail {
    #[serde(flatten)]
    pub call: CallRow,
    /// Absent while the call is live (and in logs written before signals existed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signals: Option<SignalsRow>,
    /// Absent when the caller sent no usable number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub earlier_calls: Option<EarlierCalls>,
    /// The call's class: the rules', people's corrections and the current one.
    pub class: super::classes::ClassView,
    pub locations: Vec<LocationRow>,
    pub events: Vec<EventRow>,
    pub messages: Vec<MessageRow>,
}

pub(crate) const CALL_COLUMNS: &str =
    "id, call_id, started_at, answered_at, ended_at, kind, dialled, entry,
    caller_from, caller_pai, caller_privacy, caller_contact, caller_user_agent, source, transport,
    end_reason, end_detail, recording_path, recording_sha256, recording_ms, node";

pub(crate) fn call_row(r: &super::store::Row) -> rusqlite::Result<CallRow> {
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
        node: r.get(20)?,
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
    /// Only calls whose current class is this (`Some(None)`: unclassified).
    pub class: Option<Option<siaga_dialplan::CallClass>>,
}

/// Every end reason the log can hold, with whether it puts an emergency call on the call-back
/// list: the engine's, and the ones crash recovery and node-loss recovery write (a crash also
/// leaves callers waiting).
fn logged_end_reasons() -> impl Iterator<Item = (&'static str, bool)> {
    EndReason::ALL
        .iter()
        .map(|r| (r.as_str(), r.calls_for_call_back()))
        .chain([(GATEWAY_RESTARTED, true), (NODE_LOST, true)])
}

/// The end reason names a supervisor may filter on.
pub fn known_end_reasons() -> Vec<&'static str> {
    logged_end_reasons().map(|(name, _)| name).collect()
}

pub fn list(conn: &Db, limit: usize, filter: &ListFilter) -> rusqlite::Result<Vec<CallRow>> {
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
    if let Some(class) = filter.class {
        conditions.push(super::classes::current_class_condition(class));
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
/// the caller without help and that no agency answered — and every emergency call the gateway
/// itself cut (a crash and restart, a lost node), answered or not: the caller was cut off
/// mid-call, and the agency that had them lost them too.
pub fn call_back_condition() -> String {
    // The names are our own constants, so they can be inlined as SQL literals.
    let reasons: Vec<String> = logged_end_reasons()
        .filter(|&(_, call_back)| call_back)
        .map(|(name, _)| format!("'{name}'"))
        .collect();
    format!(
        "calls.kind = 'emergency' AND (calls.end_reason IN ('{GATEWAY_RESTARTED}', '{NODE_LOST}') \
         OR (calls.end_reason IN ({}) AND NOT EXISTS \
         (SELECT 1 FROM call_events e WHERE e.call = calls.id AND e.kind = '{}')))",
        reasons.join(", "),
        CallEventKind::AgencyAnswered
    )
}

/// `?first, ?first+1, …` for `count` numbered SQL parameters.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn show(conn: &Db, id: i64) -> rusqlite::Result<Option<CallDetail>> {
    let Some(call) = call_by_id(conn, id)? else {
        return Ok(None);
    };
    let events = conn
        .prepare("SELECT at, kind, detail FROM call_events WHERE call = ?1 ORDER BY at, id")?
        .query_map(params![id], |r| {
            Ok(EventRow {
                at: r.get(0)?,
                kind: r.get(1)?,
                detail: r.get(2)?,
                node: None,
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
    let signals = signals_of(conn, id)?;
    let earlier_calls = earlier_calls(conn, &call)?;
    let class = super::classes::of_call(conn, id)?;
    Ok(Some(CallDetail {
        call,
        signals,
        earlier_calls,
        class,
        locations,
        events,
        messages,
    }))
}

/// The call's row, if the log has it.
pub(super) fn call_by_id(conn: &Db, id: i64) -> rusqlite::Result<Option<CallRow>> {
    conn.query_row(
        &format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = ?1"),
        params![id],
        call_row,
    )
    .optional()
}

/// The call's signals, once logged.
pub(super) fn signals_of(conn: &Db, id: i64) -> rusqlite::Result<Option<SignalsRow>> {
    conn.query_row(
        "SELECT digits, answered_ms, agency_talk_ms, usable_identity, voice_frames,
            speech_frames, longest_speech_ms FROM call_signals WHERE call = ?1",
        params![id],
        |r| {
            Ok(SignalsRow {
                digits: r.get(0)?,
                answered_ms: r.get(1)?,
                agency_talk_ms: r.get(2)?,
                usable_identity: r.get(3)?,
                voice_frames: r.get(4)?,
                speech_frames: r.get(5)?,
                longest_speech_ms: r.get(6)?,
            })
        },
    )
    .optional()
}

/// The number a logged call came from, as the engine reads it.
pub(super) fn number_of(from: Option<String>, pai: Vec<String>) -> Option<String> {
    let identity = siaga_engine::io::CallerIdentity {
        from: from.unwrap_or_default(),
        p_asserted_identity: pai,
        ..Default::default()
    };
    siaga_engine::call::signals::caller_number(&identity)
}

/// Earlier calls are counted up to this many per window: a number that floods the centre
/// cannot make counting its next call cost more (the writer counts for every call).
pub const EARLIER_CALLS_COUNTED: usize = 1000;

const MINUTE_MS: i64 = 60_000;

/// Calls from `call`'s number in the 10 minutes, the hour and the day before it started,
/// each up to [`EARLIER_CALLS_COUNTED`]. By the `caller_number` column (indexed) where the
/// call has it; in a log written before it existed, by reading the numbers of the day's calls.
pub(super) fn earlier_calls(conn: &Db, call: &CallRow) -> rusqlite::Result<Option<EarlierCalls>> {
    let stored: Option<String> = conn.query_row(
        "SELECT caller_number FROM calls WHERE id = ?1",
        params![call.id],
        |r| r.get(0),
    )?;
    let Some(number) = stored else {
        return earlier_calls_by_reading(conn, call);
    };
    let count = |minutes: i64| -> rusqlite::Result<usize> {
        conn.prepare_cached(
            "SELECT count(*) FROM (SELECT 1 FROM calls
             WHERE caller_number = ?1 AND started_at >= ?2 AND started_at <= ?3 AND id != ?4
             LIMIT ?5) AS earlier",
        )?
        .query_row(
            params![
                number,
                call.started_at - minutes * MINUTE_MS,
                call.started_at,
                call.id,
                EARLIER_CALLS_COUNTED as i64
            ],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| usize::try_from(n).unwrap_or(0))
    };
    Ok(Some(EarlierCalls {
        last_10_min: count(10)?,
        last_hour: count(60)?,
        last_day: count(24 * 60)?,
        number,
    }))
}

/// [`earlier_calls`] for a call logged before `caller_number` existed: the numbers of the
/// day's calls are read and compared as sent.
fn earlier_calls_by_reading(conn: &Db, call: &CallRow) -> rusqlite::Result<Option<EarlierCalls>> {
    let Some(number) = number_of(call.caller_from.clone(), call.caller_pai.clone()) else {
        return Ok(None);
    };
    let starts: Vec<i64> = conn
        .prepare(
            "SELECT started_at, caller_from, caller_pai FROM calls
             WHERE started_at >= ?1 AND started_at <= ?2 AND id != ?3",
        )?
        .query_map(
            params![
                call.started_at - 24 * 60 * MINUTE_MS,
                call.started_at,
                call.id
            ],
            |r| {
                let pai: Option<String> = r.get(2)?;
                let pai = pai
                    .and_then(|p| serde_json::from_str(&p).ok())
                    .unwrap_or_default();
                Ok((r.get::<_, i64>(0)?, number_of(r.get(1)?, pai)))
            },
        )?
        .filter_map(|row| match row {
            Ok((at, Some(n))) if n == number => Some(Ok(at)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<rusqlite::Result<_>>()?;
    let within = |minutes: i64| {
        starts
            .iter()
            .filter(|&&at| at >= call.started_at - minutes * MINUTE_MS)
            .count()
            .min(EARLIER_CALLS_COUNTED)
    };
    Ok(Some(EarlierCalls {
        number,
        last_10_min: within(10),
        last_hour: within(60),
        last_day: within(24 * 60),
    }))
}

/// The `signals` block of `calls show`.
fn render_signals(out: &mut String, s: &SignalsRow) {
    let secs = |ms: i64| format!("{:.1} s", ms as f64 / 1000.0);
    let _ = writeln!(out, "signals");
    let voice = match (s.voice_frames, s.speech_share()) {
        (Some(frames), Some(share)) => format!(
            "speech in {:.0}% of {frames} frames of 20 ms ({} of caller audio), longest run {}",
            share * 100.0,
            secs(frames * 20),
            secs(s.longest_speech_ms.unwrap_or(0))
        ),
        _ => "not reported by the media side".to_owned(),
    };
    let on_line = s.answered_ms.map_or_else(
        || "never answered".to_owned(),
        |ms| format!("{} from our answer to the hang-up", secs(ms)),
    );
    let agency = s.agency_talk_ms.map_or_else(
        || "none answered".to_owned(),
        |ms| format!("answered, on the line {}", secs(ms)),
    );
    let identity = if s.usable_identity {
        "a number"
    } else {
        "none usable (anonymous or not a number)"
    };
    for (label, value) in [
        ("voice", voice),
        ("keys", format!("{} pressed", s.digits)),
        ("on the line", on_line),
        ("agency", agency),
        ("identity", identity.to_owned()),
    ] {
        let _ = writeln!(out, "  {label:<11} {value}");
    }
}

/// The gateway's own events (start, stop, reloads, call-log gaps, disk alarms), newest first.
pub fn gateway_events(conn: &Db, limit: usize) -> rusqlite::Result<Vec<EventRow>> {
    conn.prepare(
        "SELECT at, kind, detail, node FROM gateway_events ORDER BY at DESC, id DESC LIMIT ?1",
    )?
    .query_map(params![limit as i64], |r| {
        Ok(EventRow {
            at: r.get(0)?,
            kind: r.get(1)?,
            detail: r.get(2)?,
            node: r.get(3)?,
        })
    })?
    .collect()
}

pub fn render_events(events: &[EventRow]) -> String {
    let width = events
        .iter()
        .map(|ev| esc(&ev.kind).chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for ev in events {
        let kind = esc(&ev.kind);
        let pad = " ".repeat(width.saturating_sub(kind.chars().count()));
        let node = ev
            .node
            .as_deref()
            .map_or(String::new(), |n| format!("[{}] ", esc(n)));
        let _ = writeln!(
            out,
            "{}  {kind}{pad}  {node}{}",
            iso_utc(ev.at),
            esc(&ev.detail)
        );
    }
    out
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
pub(crate) fn caller(row: &CallRow) -> String {
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

/// The widest a free-text column of `calls list` gets; longer values are cut with "…".
const LIST_TEXT_MAX: usize = 40;

/// One line per call, in columns sized to their content (every field escaped, long text cut),
/// so a long end reason or a hostile caller name cannot shift the columns.
pub fn render_list(rows: &[CallRow]) -> String {
    const HEADER: [&str; 8] = [
        "id",
        "started (UTC)",
        "kind",
        "dialled",
        "caller",
        "length",
        "end",
        "recording",
    ];
    let cell = |s: &str| fit(&esc(s), LIST_TEXT_MAX).into_owned();
    let table: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.id.to_string(),
                iso_utc(r.started_at),
                cell(&r.kind),
                cell(&r.dialled),
                cell(&caller(r)),
                duration(r),
                cell(r.end_reason.as_deref().unwrap_or("-")),
                esc(r.recording_path.as_deref().unwrap_or("-")).into_owned(),
            ]
        })
        .collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for row in &table {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 8]| {
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            let pad = " ".repeat(w.saturating_sub(c.chars().count()));
            match i {
                // Numbers right-aligned; the last column is not padded.
                0 | 5 => out.push_str(&format!("{pad}{c}  ")),
                7 => out.push_str(c),
                _ => out.push_str(&format!("{c}{pad}  ")),
            }
        }
        out.push('\n');
    };
    line(HEADER);
    for row in &table {
        line(row.each_ref().map(String::as_str));
    }
    out
}

pub fn render_detail(d: &CallDetail, with_messages: bool) -> String {
    let c = &d.call;
    let e = |s: &str| esc(s).into_owned();
    let opt = |s: &Option<String>| s.as_deref().map_or_else(|| "-".to_owned(), e);
    let mut out = String::new();
    let _ = writeln!(out, "call {}  (Call-ID {})", c.id, e(&c.call_id));
    let _ = writeln!(
        out,
        "  kind        {}  dialled {}  entry {}",
        e(&c.kind),
        e(&c.dialled),
        opt(&c.entry)
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
        c.end_reason.as_deref().map_or_else(|| "(live)".into(), e),
        c.end_detail.as_deref().map(e).unwrap_or_default()
    );
    let _ = writeln!(out, "caller");
    let _ = writeln!(
        out,
        "  asserted    {}",
        if c.caller_pai.is_empty() {
            "-".to_owned()
        } else {
            e(&c.caller_pai.join(", "))
        }
    );
    let _ = writeln!(out, "  from        {}", opt(&c.caller_from));
    if let Some(p) = &c.caller_privacy {
        let _ = writeln!(
            out,
            "  privacy     {}  (number kept for the centre; withheld outside the trust domain)",
            e(p)
        );
    }
    let _ = writeln!(out, "  contact     {}", opt(&c.caller_contact));
    let _ = writeln!(out, "  user-agent  {}", opt(&c.caller_user_agent));
    let _ = writeln!(out, "  source      {} ({})", e(&c.source), e(&c.transport));
    if let Some(n) = &d.earlier_calls {
        let _ = writeln!(
            out,
            "  earlier     {} call(s) from {} in the 10 min before, {} in the hour, {} in the day",
            n.last_10_min,
            e(&n.number),
            n.last_hour,
            n.last_day
        );
    }
    let _ = writeln!(out, "location");
    if d.locations.is_empty() {
        let _ = writeln!(out, "  -");
    }
    for l in &d.locations {
        // The summary's own lines are ours; what is inside each line came from the caller.
        let summary: Vec<String> = l.summary.trim_end().lines().map(e).collect();
        let _ = writeln!(
            out,
            "  {} from the {}: {}",
            iso_utc(l.at),
            e(&l.source),
            summary.join("\n    ")
        );
    }
    let _ = writeln!(out, "recording");
    match &c.recording_path {
        Some(p) => {
            let _ = writeln!(
                out,
                "  {}  {}  sha256 {}",
                e(p),
                c.recording_ms
                    .map(|ms| format!("{:.2}s", ms as f64 / 1000.0))
                    .unwrap_or_else(|| "?".into()),
                opt(&c.recording_sha256)
            );
        }
        None => {
            let _ = writeln!(out, "  -");
        }
    }
    if let Some(s) = &d.signals {
        render_signals(&mut out, s);
    }
    super::classes::render(&mut out, &d.class);
    let _ = writeln!(out, "timeline");
    // On equal milliseconds the SIP message comes first: it is what caused the events.
    let mut timeline: Vec<(i64, u8, String)> = d
        .events
        .iter()
        .map(|ev| (ev.at, 1, format!("{:<16} {}", e(&ev.kind), e(&ev.detail))))
        .collect();
    timeline.extend(d.messages.iter().map(|m| {
        let arrow = if m.direction == "in" { "<-" } else { "->" };
        let note = m
            .note
            .as_deref()
            .map(|n| format!("  [{}]", e(n)))
            .unwrap_or_default();
        (
            m.at,
            0,
            format!(
                "sip {arrow} {:<12} {}{note}",
                e(&m.remote),
                e(&m.first_line)
            ),
        )
    }));
    timeline.sort_by_key(|(at, order, _)| (*at, *order));
    for (at, _, line) in timeline {
        let _ = writeln!(out, "  {}  {line}", iso_utc(at));
    }
    if with_messages {
        let _ = writeln!(out, "messages");
        for m in &d.messages {
            let _ = writeln!(
                out,
                "--- {} {} {}",
                iso_utc(m.at),
                e(&m.direction),
                e(&m.remote)
            );
            for line in message_lines(&m.raw) {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use siaga_engine::ids::CallRef;
    use siaga_engine::io::{CallSignals, LogRecord};

    use super::{iso_utc, render_detail, show};
    use crate::calllog::testing::{Store, TestLog};

    #[test]
    fn signals_are_written_by_the_log_and_shown_with_earlier_calls_from_the_number() {
        signals_are_written_by_the_log_and_shown_with_earlier_calls_from_the_number_on(
            Store::Sqlite,
        )
    }

    #[test]
    fn signals_are_written_by_the_log_and_shown_with_earlier_calls_from_the_number_on_postgres() {
        signals_are_written_by_the_log_and_shown_with_earlier_calls_from_the_number_on(
            Store::Postgres,
        )
    }

    fn signals_are_written_by_the_log_and_shown_with_earlier_calls_from_the_number_on(
        store: Store,
    ) {
        let log = TestLog::new(store);
        let (calllog, _writer, _) = log.start();
        let conn = log.open();
        const MINUTE: i64 = 60_000;
        let start = 100 * 24 * 60 * MINUTE;
        // Call 4 at `start`; before it, from the same number: 2 h, 30 min and 5 min
        // earlier, and 2 days earlier (outside the day); call 5 from another number.
        for (id, at, from) in [
            (1, start - 2 * 24 * 60 * MINUTE, "+6281234567890"),
            (2, start - 120 * MINUTE, "+62-812-3456-7890"),
            (3, start - 5 * MINUTE, "+6281234567890"),
            (4, start, "+6281234567890"),
            (5, start - MINUTE, "+6281111111111"),
            (6, start - 30 * MINUTE, "+6281234567890"),
        ] {
            conn.execute(
                "INSERT INTO calls (id, call_id, started_at, kind, dialled, source, transport, caller_from)
                 VALUES (?1, 'c', ?2, 'emergency', '112', '127.0.0.1:5060', 'udp', ?3)",
                rusqlite::params![id, at, format!("<sip:{from}@192.0.2.1>;tag=t")],
            )
            .expect("insert call");
        }
        let signals = CallSignals {
            digits: 2,
            answered_for: Some(Duration::from_millis(15_000)),
            agency_talk: None,
            usable_identity: true,
            voice: Some(siaga_media::VoiceTotals {
                frames: 500,
                speech_frames: 125,
                longest_speech_ms: 2_400,
            }),
        };
        calllog.engine(
            start + 16_000,
            LogRecord::CallSignals {
                call: CallRef(4),
                signals,
            },
        );
        assert!(calllog.barrier(Duration::from_secs(10)));
        let detail = show(&conn, 4).expect("query").expect("call 4");
        let shown = render_detail(&detail, false);
        assert!(
            shown.contains(
                "signals\n  voice       speech in 25% of 500 frames of 20 ms (10.0 s of caller audio), longest run 2.4 s\n  keys        2 pressed\n  on the line 15.0 s from our answer to the hang-up\n  agency      none answered\n  identity    a number\n"
            ),
            "{shown}"
        );
        assert!(
            shown.contains(
                "  earlier     1 call(s) from +6281234567890 in the 10 min before, 2 in the hour, 3 in the day"
            ),
            "{shown}"
        );
        // A call without signals (still live, or logged before them) shows no block.
        let shown = render_detail(&show(&conn, 5).expect("query").expect("call 5"), false);
        assert!(!shown.contains("\nsignals\n"), "{shown}");
    }

    #[test]
    fn iso_dates_are_right_across_leap_years() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso_utc(1_795_821_908_123), "2026-11-27T23:25:08.123Z");
    }
}
