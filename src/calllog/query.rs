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
    /// NENA i3 `urn:emergency:uid:callid:…` (sent to agencies in Call-Info).
    pub emergency_call_id: Option<String>,
    /// NENA i3 `urn:emergency:uid:incidentid:…`.
    pub incident_id: Option<String>,
    /// The gateway node that handled the call (`[node] name`; none in rows logged before).
    pub node: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MessageRow {
    pub at: i64,
    /// A = the caller's leg, B1, B2… = agency legs.
    pub leg: String,
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
    /// Of the speech frames, those voiced; NULL: logged before the meter heard voicing.
    pub voiced_frames: Option<i64>,
    pub longest_voiced_ms: Option<i64>,
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

/// Other calls from the same device (its `+sip.instance`, e.g. an IMEI URN) before this one,
/// whatever number they came from.
#[derive(Debug, Serialize)]
pub struct DeviceCalls {
    pub instance: String,
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
    /// Absent when the caller's phone sent no device identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_calls: Option<DeviceCalls>,
    /// One line: which agency answered, after how long, the talk time (or why none did).
    pub outcome: String,
    /// The call's class: the rules', people's corrections and the current one.
    pub class: super::classes::ClassView,
    pub locations: Vec<LocationRow>,
    pub events: Vec<EventRow>,
    pub messages: Vec<MessageRow>,
}

pub(crate) const CALL_COLUMNS: &str =
    "id, call_id, started_at, answered_at, ended_at, kind, dialled, entry,
    caller_from, caller_pai, caller_privacy, caller_contact, caller_user_agent, source, transport,
    end_reason, end_detail, recording_path, recording_sha256, recording_ms, emergency_call_id,
    incident_id, node";

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
        emergency_call_id: r.get(20)?,
        incident_id: r.get(21)?,
        node: r.get(22)?,
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
    /// Started at or after (UTC ms).
    pub since_ms: Option<i64>,
    /// Started before (UTC ms).
    pub until_ms: Option<i64>,
    /// The caller's number: its digits anywhere in From, P-Asserted-Identity or the caller's
    /// number (a leading 0 or + ignored, so 0812… finds +62812…).
    pub caller: Option<String>,
    /// What was dialled: a number (112 matches sip:112@…, tel:112) or a whole URI.
    pub dialled: Option<String>,
    /// Calls that went to this dialplan route (agency).
    pub route: Option<String>,
    /// `Some(true)`: an agency answered; `Some(false)`: none did.
    pub answered: Option<bool>,
    /// At least this long, INVITE to end (ms); live calls are left out.
    pub min_duration_ms: Option<i64>,
    /// Paging, newest first: only calls with a smaller id.
    pub before_id: Option<i64>,
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
    use rusqlite::types::Value;
    // ?1 is the limit; each condition's values follow as ?2, ?3, …
    let mut values: Vec<Value> = vec![Value::from(limit as i64)];
    let next = |v: Value, values: &mut Vec<Value>| {
        values.push(v);
        format!("?{}", values.len())
    };
    let mut conditions = Vec::new();
    if !filter.end_reasons.is_empty() {
        let marks: Vec<String> = filter
            .end_reasons
            .iter()
            .map(|r| next(Value::from(r.clone()), &mut values))
            .collect();
        conditions.push(format!("end_reason IN ({})", marks.join(", ")));
    }
    if filter.call_backs {
        conditions.push(call_back_condition());
    }
    if let Some(class) = filter.class {
        conditions.push(super::classes::current_class_condition(class));
    }
    if let Some(ms) = filter.since_ms {
        conditions.push(format!(
            "started_at >= {}",
            next(Value::from(ms), &mut values)
        ));
    }
    if let Some(ms) = filter.until_ms {
        conditions.push(format!(
            "started_at < {}",
            next(Value::from(ms), &mut values)
        ));
    }
    if let Some(id) = filter.before_id {
        conditions.push(format!("id < {}", next(Value::from(id), &mut values)));
    }
    if let Some(caller) = &filter.caller {
        let digits: String = caller.chars().filter(char::is_ascii_digit).collect();
        let digits = digits.trim_start_matches('0');
        let pattern = next(
            Value::from(format!("%{}%", like_escape(digits))),
            &mut values,
        );
        conditions.push(format!(
            "(caller_number LIKE {pattern} ESCAPE '\\' OR caller_from LIKE {pattern} ESCAPE '\\' \
             OR caller_pai LIKE {pattern} ESCAPE '\\')"
        ));
    }
    // LIKE ignores case in SQLite, not in PostgreSQL: lower() on both sides, so both stores
    // find `SIP:112@…` and route "Police" alike.
    if let Some(dialled) = &filter.dialled {
        if dialled.contains(':') {
            conditions.push(format!(
                "dialled = {}",
                next(Value::from(dialled.clone()), &mut values)
            ));
        } else {
            let e = like_escape(dialled);
            let sip = next(Value::from(format!("sip:{e}@%")), &mut values);
            let sips = next(Value::from(format!("sips:{e}@%")), &mut values);
            let tel = next(Value::from(format!("tel:{dialled}")), &mut values);
            let tel_params = next(Value::from(format!("tel:{e};%")), &mut values);
            conditions.push(format!(
                "(lower(dialled) LIKE lower({sip}) ESCAPE '\\' \
                 OR lower(dialled) LIKE lower({sips}) ESCAPE '\\' OR dialled = {tel} \
                 OR lower(dialled) LIKE lower({tel_params}) ESCAPE '\\')"
            ));
        }
    }
    if let Some(route) = &filter.route {
        // The engine's `route_start` text: `route "NAME" (label), …`.
        let pattern = next(
            Value::from(format!("route \"{}\" (%", like_escape(route))),
            &mut values,
        );
        conditions.push(format!(
            "EXISTS (SELECT 1 FROM call_events e WHERE e.call = calls.id AND e.kind = '{}' \
             AND lower(e.detail) LIKE lower({pattern}) ESCAPE '\\')",
            CallEventKind::RouteStart
        ));
    }
    if let Some(answered) = filter.answered {
        conditions.push(format!(
            "{}EXISTS (SELECT 1 FROM call_events e WHERE e.call = calls.id AND e.kind = '{}')",
            if answered { "" } else { "NOT " },
            CallEventKind::AgencyAnswered
        ));
    }
    if let Some(ms) = filter.min_duration_ms {
        conditions.push(format!(
            "ended_at IS NOT NULL AND ended_at - started_at >= {}",
            next(Value::from(ms), &mut values)
        ));
    }
    let filter_sql = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT {CALL_COLUMNS} FROM calls {filter_sql} ORDER BY id DESC LIMIT ?1"
    ))?;
    stmt.query_map(rusqlite::params_from_iter(values.iter()), call_row)?
        .collect()
}

/// `text` for a LIKE pattern with `\` as the escape character.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A call named by its id or by either NENA i3 identifier.
pub fn find_call(conn: &Db, key: &str) -> rusqlite::Result<Option<i64>> {
    let key = key.trim();
    if let Ok(id) = key.parse::<i64>() {
        return Ok(Some(id));
    }
    conn.query_row(
        "SELECT id FROM calls WHERE emergency_call_id = ?1 OR incident_id = ?1 ORDER BY id LIMIT 1",
        params![key],
        |r| r.get(0),
    )
    .optional()
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

pub fn show(conn: &Db, id: i64) -> rusqlite::Result<Option<CallDetail>> {
    let Some(call) = call_by_id(conn, id)? else {
        return Ok(None);
    };
    let events: Vec<EventRow> = conn
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
            "SELECT at, direction, transport, remote, first_line, note, raw, leg
             FROM sip_messages WHERE call = ?1 ORDER BY at, id",
        )?
        .query_map(params![id], |r| {
            let raw: Vec<u8> = r.get(6)?;
            Ok(MessageRow {
                at: r.get(0)?,
                leg: r.get(7)?,
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
    let device_calls = device_calls(conn, &call)?;
    let class = super::classes::of_call(conn, id)?;
    let outcome = outcome(&call, &events, signals.as_ref());
    Ok(Some(CallDetail {
        call,
        signals,
        earlier_calls,
        device_calls,
        outcome,
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
            speech_frames, longest_speech_ms, voiced_frames, longest_voiced_ms
         FROM call_signals WHERE call = ?1",
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
                voiced_frames: r.get(7)?,
                longest_voiced_ms: r.get(8)?,
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
    let (last_10_min, last_hour, last_day) = calls_before(conn, "caller_number", &number, call)?;
    Ok(Some(EarlierCalls {
        last_10_min,
        last_hour,
        last_day,
        number,
    }))
}

/// Calls whose `column` (our constant: `caller_number` or `caller_instance`, both indexed with
/// `started_at`) is `value`, in the 10 minutes, the hour and the day before `call` started, each
/// up to [`EARLIER_CALLS_COUNTED`].
fn calls_before(
    conn: &Db,
    column: &str,
    value: &str,
    call: &CallRow,
) -> rusqlite::Result<(usize, usize, usize)> {
    let count = |minutes: i64| -> rusqlite::Result<usize> {
        conn.prepare_cached(&format!(
            "SELECT count(*) FROM (SELECT 1 FROM calls
             WHERE {column} = ?1 AND started_at >= ?2 AND started_at <= ?3 AND id != ?4
             LIMIT ?5) AS earlier"
        ))?
        .query_row(
            params![
                value,
                call.started_at - minutes * MINUTE_MS,
                call.started_at,
                call.id,
                EARLIER_CALLS_COUNTED as i64
            ],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| usize::try_from(n).unwrap_or(0))
    };
    Ok((count(10)?, count(60)?, count(24 * 60)?))
}

/// Calls from `call`'s device (`caller_instance`) before it, as [`calls_before`] counts them.
fn device_calls(conn: &Db, call: &CallRow) -> rusqlite::Result<Option<DeviceCalls>> {
    let stored: Option<String> = conn.query_row(
        "SELECT caller_instance FROM calls WHERE id = ?1",
        params![call.id],
        |r| r.get(0),
    )?;
    let Some(instance) = stored else {
        return Ok(None);
    };
    let (last_10_min, last_hour, last_day) =
        calls_before(conn, "caller_instance", &instance, call)?;
    Ok(Some(DeviceCalls {
        last_10_min,
        last_hour,
        last_day,
        instance,
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

/// One line: which agency answered (the route, the target), how long after the call came in,
/// and the talk time; or that none did and how the call ended.
pub fn outcome(call: &CallRow, events: &[EventRow], signals: Option<&SignalsRow>) -> String {
    let secs = |ms: i64| format!("{:.1} s", ms as f64 / 1000.0);
    let answered = CallEventKind::AgencyAnswered.as_str();
    match events.iter().find(|ev| ev.kind == answered) {
        Some(ev) => {
            let route = events
                .iter()
                .rfind(|r| r.kind == CallEventKind::RouteStart.as_str() && r.at <= ev.at)
                .and_then(|r| r.detail.strip_prefix("route \""))
                .and_then(|d| d.split_once("\" (").map(|(name, _)| name.to_owned()))
                .unwrap_or_else(|| "an agency".to_owned());
            // `leg B1 sip:… answered after N ms; …`
            let target = ev
                .detail
                .split_once(' ')
                .and_then(|(_, rest)| rest.split_once(' '))
                .and_then(|(_, rest)| rest.split_once(" answered"))
                .map(|(uri, _)| uri.to_owned())
                .unwrap_or_default();
            let talk = signals
                .and_then(|s| s.agency_talk_ms)
                .or(call.ended_at.map(|end| end - ev.at));
            format!(
                "answered by {route}{} {} after the call came in; talk {}",
                if target.is_empty() {
                    String::new()
                } else {
                    format!(" ({target})")
                },
                secs(ev.at - call.started_at),
                talk.map_or_else(|| "still going".to_owned(), secs)
            )
        }
        None => match (call.ended_at, &call.end_reason) {
            (Some(end), reason) => format!(
                "no agency answered; ended {} after {}",
                reason.as_deref().unwrap_or("?"),
                secs(end - call.started_at)
            ),
            (None, _) => "live; no agency has answered yet".to_owned(),
        },
    }
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
    // Calls logged before the meter heard voicing have no such line.
    if let (Some(frames), Some(longest)) = (s.voiced_frames, s.longest_voiced_ms) {
        let _ = writeln!(
            out,
            "  {:<11} {frames} voiced frames (periodic at a voice's pitch), longest voiced run {}",
            "voicing",
            secs(longest)
        );
    }
}

/// The gateway's own events (start, stop, reloads, call-log gaps, disk alarms), newest first.
pub fn gateway_events(conn: &Db, limit: usize) -> rusqlite::Result<Vec<EventRow>> {
    gateway_events_filtered(conn, &[], None, None, limit)
}

/// Gateway events of the given kinds (all when empty) in `[since, until)`, newest first.
pub fn gateway_events_filtered(
    conn: &Db,
    kinds: &[String],
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    limit: usize,
) -> rusqlite::Result<Vec<EventRow>> {
    use rusqlite::types::Value;
    let mut values: Vec<Value> = vec![
        Value::from(limit as i64),
        Value::from(since_ms.unwrap_or(i64::MIN)),
        Value::from(until_ms.unwrap_or(i64::MAX)),
    ];
    let mut kind_sql = String::new();
    if !kinds.is_empty() {
        let marks: Vec<String> = kinds
            .iter()
            .map(|k| {
                values.push(Value::from(k.clone()));
                format!("?{}", values.len())
            })
            .collect();
        kind_sql = format!("AND kind IN ({})", marks.join(", "));
    }
    conn.prepare(&format!(
        "SELECT at, kind, detail, node FROM gateway_events WHERE at >= ?2 AND at < ?3 {kind_sql}
         ORDER BY at DESC, id DESC LIMIT ?1"
    ))?
    .query_map(rusqlite::params_from_iter(values.iter()), |r| {
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
    render_events_in(events, Zone::Utc)
}

/// [`render_events`] with times in `zone`.
pub fn render_events_in(events: &[EventRow], zone: Zone) -> String {
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
            stamp(ev.at, zone),
            esc(&ev.detail)
        );
    }
    out
}

/// How the CLI writes times: UTC, or the centre's local time at a fixed offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Zone {
    #[default]
    Utc,
    /// Minutes east of UTC.
    Offset(i32),
}

impl Zone {
    /// The system's offset now (TZ / /etc/localtime), in minutes east of UTC.
    pub fn system() -> Zone {
        let now = now_secs();
        // SAFETY: `tm` is plain data for localtime_r to fill; `now` outlives the call.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        let t: libc::time_t = now as libc::time_t;
        // SAFETY: both pointers are valid for the call.
        let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
        Zone::Offset(if ok { (tm.tm_gmtoff / 60) as i32 } else { 0 })
    }

    /// `UTC`, or `+08:00`.
    pub fn label(self) -> String {
        match self {
            Zone::Utc => "UTC".to_owned(),
            Zone::Offset(m) => offset_text(m),
        }
    }

    pub fn offset_ms(self) -> i64 {
        match self {
            Zone::Utc => 0,
            Zone::Offset(m) => i64::from(m) * 60_000,
        }
    }
}

fn now_secs() -> i64 {
    super::now_ms() / 1000
}

fn offset_text(minutes: i32) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.unsigned_abs();
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

/// A time in `zone`: `2026-11-27T23:25:08.123Z` or `2026-11-28T07:25:08.123+08:00`.
pub fn stamp(ms: i64, zone: Zone) -> String {
    match zone {
        Zone::Utc => iso_utc(ms),
        Zone::Offset(m) => {
            let local = iso_utc(ms + zone.offset_ms());
            format!("{}{}", local.trim_end_matches('Z'), offset_text(m))
        }
    }
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
pub fn render_list_in(rows: &[CallRow], zone: Zone) -> String {
    let started = format!("started ({})", zone.label());
    let header: [&str; 8] = [
        "id",
        &started,
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
                stamp(r.started_at, zone),
                cell(&r.kind),
                cell(&r.dialled),
                cell(&caller(r)),
                duration(r),
                cell(r.end_reason.as_deref().unwrap_or("-")),
                esc(r.recording_path.as_deref().unwrap_or("-")).into_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
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
    line(header);
    for row in &table {
        line(row.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
pub fn render_detail(d: &CallDetail, with_messages: bool) -> String {
    render_detail_in(d, with_messages, Zone::Utc)
}

/// [`render_detail`] with times in `zone`.
pub fn render_detail_in(d: &CallDetail, with_messages: bool, zone: Zone) -> String {
    let iso_utc = |ms: i64| stamp(ms, zone);
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
    let _ = writeln!(out, "  outcome     {}", e(&d.outcome));
    let _ = writeln!(out, "  i3 call id  {}", opt(&c.emergency_call_id));
    let _ = writeln!(out, "  incident id {}", opt(&c.incident_id));
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
    if let Some(n) = &d.device_calls {
        let _ = writeln!(
            out,
            "  device      {} call(s) from device {} in the 10 min before, {} in the hour, {} in the day",
            n.last_10_min,
            e(&n.instance),
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
                "sip {:<2} {arrow} {:<12} {}{note}",
                e(&m.leg),
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
                "--- {} {} {} {}",
                iso_utc(m.at),
                e(&m.leg),
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

    use super::{ListFilter, iso_utc, list, render_detail, show};
    use crate::calllog::testing::{Store, TestLog};

    #[test]
    fn dialled_and_route_filters_ignore_case_on_both_stores() {
        for store in [Store::Sqlite, Store::Postgres] {
            let log = TestLog::new(store);
            let db = log.open();
            for (id, dialled, route) in [(1, "SIP:112@GW", "Police"), (2, "sip:110@gw", "fire")] {
                db.execute(
                    "INSERT INTO calls (id, call_id, started_at, kind, dialled, source, transport)
                     VALUES (?1, 'c', 1000, 'emergency', ?2, '192.0.2.1:5060', 'udp')",
                    rusqlite::params![id, dialled],
                )
                .expect("call");
                db.execute(
                    "INSERT INTO call_events (call, at, kind, detail) VALUES (?1, 1001, 'route_start', ?2)",
                    rusqlite::params![id, format!("route \"{route}\" (desk), attempt 1")],
                )
                .expect("event");
            }
            let ids = |filter: ListFilter| -> Vec<i64> {
                list(&db, 10, &filter)
                    .expect("list")
                    .iter()
                    .map(|c| c.id)
                    .collect()
            };
            let by_dialled = ids(ListFilter {
                dialled: Some("112".into()),
                ..ListFilter::default()
            });
            let by_route = ids(ListFilter {
                route: Some("police".into()),
                ..ListFilter::default()
            });
            assert_eq!((by_dialled, by_route), (vec![1], vec![1]), "{store:?}");
        }
    }

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
                voiced_frames: 110,
                longest_voiced_ms: 2_300,
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
                "  identity    a number\n  voicing     110 voiced frames (periodic at a voice's pitch), longest voiced run 2.3 s\n"
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
