//! Every SQL statement of the console (the call list's filters, an agency's scope, the
//! ladder's messages, the summary's figures), in SQL that SQLite and PostgreSQL both take.

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params, params_from_iter};
use siaga_engine::timeline::CallEventKind;

use crate::calllog::Db;
use crate::calllog::query::{CALL_COLUMNS, CallRow, call_back_condition, call_row};
use crate::calllog::store::Dialect;

const ROUTE_START: &str = CallEventKind::RouteStart.as_str();
const ANSWERED: &str = CallEventKind::AgencyAnswered.as_str();

/// Which calls an account sees.
#[derive(Debug, Clone)]
pub enum Scope {
    All,
    /// Only the calls offered to one of these routes (a `route_start` event names it).
    Routes(Vec<String>),
}

/// The call list's filters, as the form sends them (already parsed).
#[derive(Debug, Default, Clone)]
pub struct CallFilter {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Part of the caller's number or URI (From or P-Asserted-Identity).
    pub caller: Option<String>,
    /// Part of the number dialled.
    pub dialled: Option<String>,
    pub route: Option<String>,
    pub end_reason: Option<String>,
    /// Some(true): an agency answered; Some(false): none did.
    pub answered: Option<bool>,
    pub min_duration_ms: Option<i64>,
    pub call_backs: bool,
    /// Paging: only calls older than this id.
    pub before_id: Option<i64>,
}

/// A call in the list, with what the table shows beside the row.
pub struct ListedCall {
    pub row: CallRow,
    /// The first route the call was offered to.
    pub route: Option<String>,
    pub agency_answered: bool,
}

/// SQL conditions and their values, numbered as they are added.
#[derive(Default)]
struct Conditions {
    sql: Vec<String>,
    values: Vec<Value>,
}

impl Conditions {
    /// Adds a condition whose `?` marks take `values` in order.
    fn push(&mut self, template: &str, values: Vec<Value>) {
        let mut sql = String::new();
        let mut rest = template;
        let mut values = values.into_iter();
        while let Some(i) = rest.find('?') {
            sql.push_str(&rest[..i]);
            self.values.push(values.next().unwrap_or(Value::Null));
            sql.push_str(&format!("?{}", self.values.len()));
            rest = &rest[i + 1..];
        }
        sql.push_str(rest);
        self.sql.push(sql);
    }

    fn where_clause(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.sql.join(" AND "))
        }
    }
}

/// `route "NAME"`: how a `route_start` event's text begins for route NAME.
fn route_prefix(route: &str) -> String {
    format!("route \"{route}\"")
}

/// The condition "offered to one of `routes`" (an EXISTS on the call's route_start events).
fn offered_to(c: &mut Conditions, routes: &[String]) {
    if routes.is_empty() {
        c.push("1 = 0", vec![]);
        return;
    }
    // substr and = instead of LIKE: a route name's `_` is no wildcard.
    let alternatives: Vec<String> = routes
        .iter()
        .map(|r| {
            format!(
                "substr(e.detail, 1, {}) = ?",
                route_prefix(r).chars().count()
            )
        })
        .collect();
    c.push(
        &format!(
            "EXISTS (SELECT 1 FROM call_events e WHERE e.call = calls.id AND e.kind = '{ROUTE_START}' AND ({}))",
            alternatives.join(" OR ")
        ),
        routes.iter().map(|r| Value::Text(route_prefix(r))).collect(),
    );
}

/// `%text%` for LIKE, with LIKE's own wildcards in `text` taken literally; lower case, to be
/// matched by [`like_any_case`].
fn contains_pattern(text: &str) -> Value {
    let mut p = String::from("%");
    for ch in text.to_lowercase().chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    Value::Text(p)
}

/// `column LIKE ?` ignoring ASCII case, for a lower-case pattern: SQLite's LIKE does so by
/// itself (its `lower` folds only ASCII too, so the answers are the same); PostgreSQL's needs
/// the column lowered. Lowering every row cost SQLite about 40 % of a caller search's scan.
fn like_any_case(conn: &Db, column: &str) -> String {
    match conn.dialect() {
        Dialect::Sqlite => format!("{column} LIKE ? ESCAPE '\\'"),
        Dialect::Postgres => format!("lower({column}) LIKE ? ESCAPE '\\'"),
    }
}

fn scope_conditions(c: &mut Conditions, scope: &Scope) {
    if let Scope::Routes(routes) = scope {
        offered_to(c, routes);
    }
}

/// One page of the calls `scope` sees that pass `filter`, newest first; `limit` + 1 rows are
/// read so the caller knows whether there is an older page.
pub fn list_calls(
    conn: &Db,
    scope: &Scope,
    filter: &CallFilter,
    limit: usize,
) -> rusqlite::Result<Vec<ListedCall>> {
    let mut c = Conditions::default();
    scope_conditions(&mut c, scope);
    if let Some(from) = filter.from_ms {
        c.push("calls.started_at >= ?", vec![Value::Integer(from)]);
    }
    if let Some(to) = filter.to_ms {
        c.push("calls.started_at < ?", vec![Value::Integer(to)]);
    }
    if let Some(before) = filter.before_id {
        c.push("calls.id < ?", vec![Value::Integer(before)]);
    }
    if let Some(caller) = &filter.caller {
        // Digits as people write them: 0812-… (national trunk 0) matches +62812….
        let digits: String = caller.chars().filter(char::is_ascii_digit).collect();
        let digits = digits.trim_start_matches('0');
        let pattern = contains_pattern(caller.trim());
        c.push(
            &format!(
                "(calls.caller_number LIKE ? ESCAPE '\\' OR {} OR {})",
                like_any_case(conn, "calls.caller_from"),
                like_any_case(conn, "calls.caller_pai")
            ),
            vec![
                contains_pattern(if digits.is_empty() {
                    caller.trim()
                } else {
                    digits
                }),
                pattern.clone(),
                pattern,
            ],
        );
    }
    if let Some(dialled) = &filter.dialled {
        c.push(
            &like_any_case(conn, "calls.dialled"),
            vec![contains_pattern(dialled.trim())],
        );
    }
    if let Some(route) = &filter.route {
        offered_to(&mut c, std::slice::from_ref(route));
    }
    if let Some(reason) = &filter.end_reason {
        c.push("calls.end_reason = ?", vec![Value::Text(reason.clone())]);
    }
    match filter.answered {
        Some(true) => c.push(&format!("EXISTS (SELECT 1 FROM call_events a WHERE a.call = calls.id AND a.kind = '{ANSWERED}')"), vec![]),
        Some(false) => c.push(&format!("NOT EXISTS (SELECT 1 FROM call_events a WHERE a.call = calls.id AND a.kind = '{ANSWERED}')"), vec![]),
        None => {}
    }
    if let Some(ms) = filter.min_duration_ms {
        c.push(
            "calls.ended_at IS NOT NULL AND calls.ended_at - calls.started_at >= ?",
            vec![Value::Integer(ms)],
        );
    }
    if filter.call_backs {
        c.push(&call_back_condition(), vec![]);
    }
    let limit_at = c.values.len() + 1;
    c.values.push(Value::Integer(limit as i64 + 1));
    let columns = CALL_COLUMNS
        .split(',')
        .map(|col| format!("calls.{}", col.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {columns},
            (SELECT r.detail FROM call_events r WHERE r.call = calls.id AND r.kind = '{ROUTE_START}' ORDER BY r.id LIMIT 1),
            EXISTS (SELECT 1 FROM call_events a WHERE a.call = calls.id AND a.kind = '{ANSWERED}')
         FROM calls {} ORDER BY calls.id DESC LIMIT ?{limit_at}",
        c.where_clause()
    );
    // The two columns after the call's own.
    let extra = CALL_COLUMNS.split(',').count();
    let mut stmt = conn.prepare_cached(&sql)?;
    stmt.query_map(params_from_iter(c.values.iter()), |r| {
        let route: Option<String> = r.get(extra)?;
        Ok(ListedCall {
            row: call_row(r)?,
            route: route.as_deref().and_then(route_of_start),
            agency_answered: r.get(extra + 1)?,
        })
    })?
    .collect()
}

/// The route name in a `route_start` event's text: `route "NAME" (…)`.
pub fn route_of_start(detail: &str) -> Option<String> {
    let rest = detail.strip_prefix("route \"")?;
    rest.split_once('"').map(|(name, _)| name.to_owned())
}

/// Whether `scope` sees call `id` (false also when there is no such call).
pub fn visible(conn: &Db, scope: &Scope, id: i64) -> rusqlite::Result<bool> {
    let mut c = Conditions::default();
    c.push("calls.id = ?", vec![Value::Integer(id)]);
    scope_conditions(&mut c, scope);
    conn.prepare_cached(&format!("SELECT count(*) FROM calls {}", c.where_clause()))?
        .query_row(params_from_iter(c.values.iter()), |r| r.get::<_, i64>(0))
        .map(|n| n > 0)
}

/// Of the live calls, those `scope` sees (the ids the log holds with a matching route).
pub fn visible_ids(conn: &Db, scope: &Scope, ids: &[i64]) -> rusqlite::Result<Vec<i64>> {
    let mut out = Vec::new();
    for &id in ids {
        if visible(conn, scope, id)? {
            out.push(id);
        }
    }
    Ok(out)
}

/// A SIP message of the ladder: which leg, which way, verbatim.
pub struct LadderMessage {
    pub at: i64,
    pub leg: String,
    pub incoming: bool,
    pub local: String,
    pub remote: String,
    pub first_line: String,
    pub note: Option<String>,
    pub raw: String,
}

pub fn ladder_messages(conn: &Db, id: i64) -> rusqlite::Result<Vec<LadderMessage>> {
    conn.prepare_cached(
        "SELECT at, leg, direction, local, remote, first_line, note, raw FROM sip_messages
         WHERE call = ?1 ORDER BY at, id",
    )?
    .query_map(params![id], |r| {
        let raw: Vec<u8> = r.get(7)?;
        Ok(LadderMessage {
            at: r.get(0)?,
            leg: r.get(1)?,
            incoming: r.get::<_, String>(2)? == "in",
            local: r.get(3)?,
            remote: r.get(4)?,
            first_line: r.get(5)?,
            note: r.get(6)?,
            raw: String::from_utf8_lossy(&raw).into_owned(),
        })
    })?
    .collect()
}

/// The recording of call `id`: its path as the log stored it, and its length.
pub fn recording_of(conn: &Db, id: i64) -> rusqlite::Result<Option<(String, Option<i64>)>> {
    conn.prepare_cached("SELECT recording_path, recording_ms FROM calls WHERE id = ?1")?
        .query_row(params![id], |r| {
            Ok(r.get::<_, Option<String>>(0)?
                .map(|p| (p, r.get(1).ok().flatten())))
        })
        .optional()
        .map(Option::flatten)
}

/// The summary page's figures over the calls a scope sees. (`calls stats` has more figures,
/// each its own pass over the window; these are the ones the page shows, in fewer passes, so
/// a week over a busy log stays quick.)
pub struct Summary {
    /// (kind, calls), most first.
    pub by_kind: Vec<(String, i64)>,
    pub emergency: i64,
    /// Emergency calls an agency answered.
    pub reached_agency: i64,
    /// Emergency calls on the call-back list.
    pub call_backs: i64,
    /// (end reason, emergency calls), most first; calls still going are "in progress".
    pub end_reasons: Vec<(String, i64)>,
    /// Calls started in each hour of the range (index 0 = the first hour).
    pub per_hour: Vec<i64>,
    /// (route, calls offered to it).
    pub per_route: Vec<(String, i64)>,
    /// (route, time from the route's start to an agency's answer, each answered call), sorted.
    pub answer_ms_by_route: Vec<(String, Vec<i64>)>,
}

pub fn summary(conn: &Db, scope: &Scope, from_ms: i64, to_ms: i64) -> rusqlite::Result<Summary> {
    let mut c = Conditions::default();
    c.push("calls.started_at >= ?", vec![Value::Integer(from_ms)]);
    c.push("calls.started_at < ?", vec![Value::Integer(to_ms)]);
    scope_conditions(&mut c, scope);
    let hours = ((to_ms - from_ms + 3_599_999) / 3_600_000).clamp(1, 24 * 62) as usize;
    let mut per_hour = vec![0; hours];
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT (calls.started_at - {from_ms}) / 3600000, count(*) FROM calls {} GROUP BY 1",
        c.where_clause()
    ))?;
    for row in stmt.query_map(params_from_iter(c.values.iter()), |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    })? {
        let (hour, n) = row?;
        if let Some(slot) = usize::try_from(hour).ok().and_then(|h| per_hour.get_mut(h)) {
            *slot += n;
        }
    }
    // Each route start with, if an agency answered on that route, the first answer after it.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT e.detail, e.at,
            (SELECT min(a.at) FROM call_events a WHERE a.call = e.call AND a.kind = '{ANSWERED}' AND a.at >= e.at)
         FROM calls JOIN call_events e ON e.call = calls.id AND e.kind = '{ROUTE_START}'
         {}",
        c.where_clause()
    ))?;
    let mut per_route: Vec<(String, i64)> = Vec::new();
    let mut answers: Vec<(String, Vec<i64>)> = Vec::new();
    let rows: Vec<(String, i64, Option<i64>)> = stmt
        .query_map(params_from_iter(c.values.iter()), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    for (detail, at, answered) in rows {
        let Some(route) = route_of_start(&detail) else {
            continue;
        };
        match per_route.iter_mut().find(|(r, _)| *r == route) {
            Some((_, n)) => *n += 1,
            None => per_route.push((route.clone(), 1)),
        }
        if let Some(answered) = answered {
            match answers.iter_mut().find(|(r, _)| *r == route) {
                Some((_, v)) => v.push(answered - at),
                None => answers.push((route, vec![answered - at])),
            }
        }
    }
    per_route.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (_, v) in &mut answers {
        v.sort_unstable();
    }
    answers.sort_by(|a, b| a.0.cmp(&b.0));
    let pairs = |sql: String| -> rusqlite::Result<Vec<(String, i64)>> {
        conn.prepare_cached(&sql)?
            .query_map(params_from_iter(c.values.iter()), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect()
    };
    let by_kind = pairs(format!(
        "SELECT calls.kind, count(*) FROM calls {} GROUP BY calls.kind ORDER BY count(*) DESC, calls.kind",
        c.where_clause()
    ))?;
    // One pass over the window's emergency calls: end reason, answered, call-back.
    let end_rows: Vec<(String, i64, i64, i64)> = conn
        .prepare_cached(&format!(
            "SELECT coalesce(calls.end_reason, 'in progress'), count(*),
                sum(CASE WHEN EXISTS (SELECT 1 FROM call_events a WHERE a.call = calls.id AND a.kind = '{ANSWERED}') THEN 1 ELSE 0 END),
                sum(CASE WHEN {} THEN 1 ELSE 0 END)
             FROM calls {} AND calls.kind = 'emergency' GROUP BY 1 ORDER BY count(*) DESC, 1",
            call_back_condition(),
            c.where_clause()
        ))?
        .query_map(params_from_iter(c.values.iter()), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(Summary {
        emergency: end_rows.iter().map(|r| r.1).sum(),
        reached_agency: end_rows.iter().map(|r| r.2).sum(),
        call_backs: end_rows.iter().map(|r| r.3).sum(),
        end_reasons: end_rows.into_iter().map(|r| (r.0, r.1)).collect(),
        by_kind,
        per_hour,
        per_route,
        answer_ms_by_route: answers,
    })
}
