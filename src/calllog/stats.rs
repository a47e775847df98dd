//! `siaga calls stats`: the figures a supervisor audits a period by — how many emergency calls
//! reached an agency and how fast, how many callers wait for a call-back, why calls ended,
//! where the IVR sent callers (silent and no-input callers included), and how often a call
//! was moved between agencies.

use std::fmt::Write as _;

use super::store::Db;
use rusqlite::params;
use serde::Serialize;
use siaga_engine::timeline::CallEventKind;

use super::query::{call_back_condition, iso_utc};
use super::text::esc;

/// Calls that started in `[from_ms, to_ms)`; an open side is unbounded.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Window {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct Stats {
    pub window: Window,
    pub calls: i64,
    /// (kind, count): emergency, test, not_emergency, …
    pub by_kind: Vec<(String, i64)>,
    pub emergency: i64,
    /// Emergency calls an agency answered.
    pub reached_agency: i64,
    /// From the caller's INVITE to the first agency answer, over the calls that reached one.
    pub answer_ms_median: Option<i64>,
    pub answer_ms_p90: Option<i64>,
    /// Emergency calls on the call-back list (`calls list --call-backs`).
    pub call_backs: i64,
    /// (end reason, count) of emergency calls; calls still going count as "in progress".
    pub end_reasons: Vec<(String, i64)>,
    /// (route, why) of the first route each emergency call took, e.g. ("police", "chosen by
    /// key"), ("calltakers", "no input"), ("silent", "silent caller, urgent").
    pub first_routes: Vec<(String, String, i64)>,
    /// Completed transfers between agencies (REFER).
    pub transfers: i64,
}

/// The timeline events the figures count, inlined as SQL literals (our own constants).
const ANSWERED: &str = CallEventKind::AgencyAnswered.as_str();
const ROUTE: &str = CallEventKind::RouteDecided.as_str();
const TRANSFERRED: &str = CallEventKind::TransferDone.as_str();

/// `started_at` bounds as SQL, numbered `?1`/`?2`. As a range with constant ends (an open
/// side is the whole range), so that the `calls_started` index serves it: `?1 IS NULL OR …`
/// made SQLite scan every call (a day's figures took 200 ms over 100,000 calls). The casts
/// give PostgreSQL the parameters' type.
const IN_WINDOW: &str = "calls.started_at >= coalesce(CAST(?1 AS BIGINT), -9223372036854775807) \
     AND calls.started_at < coalesce(CAST(?2 AS BIGINT), 9223372036854775807)";

pub fn stats(conn: &Db, window: Window) -> rusqlite::Result<Stats> {
    let bounds = params![window.from_ms, window.to_ms];
    let count = |condition: &str| -> rusqlite::Result<i64> {
        conn.query_row(
            &format!("SELECT count(*) FROM calls WHERE {IN_WINDOW} AND {condition}"),
            bounds,
            |r| r.get(0),
        )
    };
    let pairs = |sql: &str| -> rusqlite::Result<Vec<(String, i64)>> {
        conn.prepare(sql)?
            .query_map(bounds, |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    };
    let by_kind = pairs(&format!(
        "SELECT kind, count(*) FROM calls WHERE {IN_WINDOW} GROUP BY kind ORDER BY count(*) DESC, kind"
    ))?;
    let end_reasons = pairs(&format!(
        "SELECT coalesce(end_reason, 'in progress'), count(*) FROM calls
         WHERE {IN_WINDOW} AND kind = 'emergency'
         GROUP BY 1 ORDER BY count(*) DESC, 1"
    ))?;
    let mut answer_ms: Vec<i64> = conn
        // Each call's first answer as a subquery: the window's index leads (a join grouped by
        // call made SQLite scan every call).
        .prepare(&format!(
            "SELECT answered - started_at FROM (
                SELECT calls.started_at,
                    (SELECT min(e.at) FROM call_events e
                     WHERE e.call = calls.id AND e.kind = '{ANSWERED}') AS answered
                FROM calls WHERE {IN_WINDOW} AND calls.kind = 'emergency') AS window_calls
             WHERE answered IS NOT NULL"
        ))?
        .query_map(bounds, |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    answer_ms.sort_unstable();
    // The first `route` event of each call: `route "NAME" (WHY)`, maybe `, URGENT`.
    let first_route_details: Vec<String> = conn
        .prepare(&format!(
            "SELECT e.detail FROM calls
             JOIN call_events e ON e.id = (SELECT min(id) FROM call_events
                                           WHERE call = calls.id AND kind = '{ROUTE}')
             WHERE {IN_WINDOW} AND calls.kind = 'emergency'"
        ))?
        .query_map(bounds, |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut first_routes: Vec<(String, String, i64)> = Vec::new();
    for (route, why) in first_route_details.iter().map(|d| route_and_reason(d)) {
        match first_routes
            .iter_mut()
            .find(|(r, w, _)| *r == route && *w == why)
        {
            Some(entry) => entry.2 += 1,
            None => first_routes.push((route, why, 1)),
        }
    }
    first_routes.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    let transfers = conn.query_row(
        &format!(
            "SELECT count(*) FROM call_events e JOIN calls ON calls.id = e.call
             WHERE {IN_WINDOW} AND calls.kind = 'emergency' AND e.kind = '{TRANSFERRED}'"
        ),
        bounds,
        |r| r.get(0),
    )?;
    Ok(Stats {
        window,
        calls: by_kind.iter().map(|(_, n)| n).sum(),
        emergency: by_kind
            .iter()
            .find(|(kind, _)| kind == "emergency")
            .map_or(0, |&(_, n)| n),
        by_kind,
        reached_agency: answer_ms.len() as i64,
        answer_ms_median: percentile(&answer_ms, 50),
        answer_ms_p90: percentile(&answer_ms, 90),
        call_backs: count(&call_back_condition())?,
        end_reasons,
        first_routes,
        transfers,
    })
}

/// The route name and the reason of a `route` timeline event's text,
/// `route "NAME" (WHY)` with maybe `, URGENT`; read from the right, as a route name may hold
/// quotes or brackets and the reasons never do.
fn route_and_reason(detail: &str) -> (String, String) {
    let body = detail.strip_prefix("route \"").unwrap_or(detail);
    let (route, rest) = body.rsplit_once("\" (").unwrap_or((body, ""));
    let (why, rest) = rest.rsplit_once(')').unwrap_or(("?", ""));
    let why = if why.is_empty() { "?" } else { why };
    let route = route.to_owned();
    let urgent = if rest.contains("URGENT") && !why.contains("urgent") {
        ", urgent"
    } else {
        ""
    };
    (route, format!("{why}{urgent}"))
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], pct: usize) -> Option<i64> {
    let rank = (sorted.len() * pct).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

fn share(part: i64, whole: i64) -> String {
    if whole == 0 {
        "-".to_owned()
    } else {
        format!("{:.1} %", part as f64 * 100.0 / whole as f64)
    }
}

fn seconds(ms: Option<i64>) -> String {
    ms.map_or("-".to_owned(), |ms| format!("{:.1} s", ms as f64 / 1000.0))
}

pub fn render(s: &Stats) -> String {
    let mut out = String::new();
    let bound = |ms: Option<i64>, open: &str| ms.map_or(open.to_owned(), iso_utc);
    let _ = writeln!(
        out,
        "calls that started from {} until {}",
        bound(s.window.from_ms, "the first"),
        bound(s.window.to_ms, "now")
    );
    let kinds: Vec<String> = s
        .by_kind
        .iter()
        .map(|(k, n)| format!("{} {n}", esc(k)))
        .collect();
    let _ = writeln!(out, "  {} calls: {}", s.calls, kinds.join(", "));
    let _ = writeln!(out, "emergency calls: {}", s.emergency);
    let _ = writeln!(
        out,
        "  reached an agency   {:>6}  {:>7}   from the INVITE: median {}, p90 {}",
        s.reached_agency,
        share(s.reached_agency, s.emergency),
        seconds(s.answer_ms_median),
        seconds(s.answer_ms_p90)
    );
    let _ = writeln!(
        out,
        "  to call back        {:>6}  {:>7}   (siaga calls list --call-backs)",
        s.call_backs,
        share(s.call_backs, s.emergency)
    );
    let _ = writeln!(out, "  transfers between agencies {}", s.transfers);
    let _ = writeln!(out, "  how they ended:");
    for (reason, n) in &s.end_reasons {
        let _ = writeln!(
            out,
            "    {:<30} {n:>6}  {:>7}",
            esc(reason),
            share(*n, s.emergency)
        );
    }
    let _ = writeln!(out, "  first route:");
    for (route, why, n) in &s.first_routes {
        let _ = writeln!(
            out,
            "    {:<30} {n:>6}  {:>7}",
            esc(&format!("{route} ({why})")),
            share(*n, s.emergency)
        );
    }
    out
}

/// Milliseconds since the epoch of a UTC `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM`.
pub fn parse_utc(text: &str) -> Option<i64> {
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    // Four-digit years only: no arithmetic below can overflow, and no audit needs more.
    let year: i64 = parts
        .next()
        .filter(|y| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()))?
        .parse()
        .ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let minutes = match time {
        None => 0,
        Some(t) => {
            let (h, m) = t.split_once(':')?;
            let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
            if !(0..24).contains(&h) || !(0..60).contains(&m) {
                return None;
            }
            h * 60 + m
        }
    };
    let days = crate::civil::days_from_civil(year, month, day);
    let ms = (days * 1440 + minutes) * 60_000;
    // A day that does not exist (2026-02-30) does not read back the same.
    iso_utc(ms).starts_with(date).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calllog::testing::{Store, TestLog};

    #[test]
    fn utc_dates_parse_and_read_back() {
        assert_eq!(parse_utc("1970-01-01"), Some(0));
        assert_eq!(parse_utc("2000-02-29"), Some(951_782_400_000));
        let ms = parse_utc("2026-11-28T13:45").expect("parses");
        assert_eq!(iso_utc(ms), "2026-11-28T13:45:00.000Z");
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "28-11-2026",
            "2026-11-28T24:00",
            "yesterday",
            "300000000-01-01",
            "-001-01-01",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn route_events_give_the_route_and_why() {
        assert_eq!(
            route_and_reason("route \"police\" (chosen by key)"),
            ("police".to_owned(), "chosen by key".to_owned())
        );
        assert_eq!(
            route_and_reason("route \"silent\" (silent caller, urgent), URGENT"),
            ("silent".to_owned(), "silent caller, urgent".to_owned())
        );
        assert_eq!(
            route_and_reason("route \"desk \"A\" (night)\" (no input), URGENT"),
            (
                "desk \"A\" (night)".to_owned(),
                "no input, urgent".to_owned()
            )
        );
    }

    #[test]
    fn a_periods_figures_count_only_its_calls() {
        a_periods_figures_count_only_its_calls_on(Store::Sqlite)
    }

    #[test]
    fn a_periods_figures_count_only_its_calls_on_postgres() {
        a_periods_figures_count_only_its_calls_on(Store::Postgres)
    }

    fn a_periods_figures_count_only_its_calls_on(store: Store) {
        let log = TestLog::new(store);
        let conn = log.open();
        // (id, kind, started, end reason)
        let calls = [
            (1, "emergency", 1_000, Some("caller_hung_up")),
            (2, "emergency", 2_000, Some("agency_hung_up")),
            (3, "emergency", 3_000, Some("abandoned_waiting_for_agency")),
            (4, "emergency", 4_000, None),
            (5, "test", 5_000, Some("test_call_ended")),
            (6, "emergency", 10_000, Some("abandoned_in_ivr")),
            (7, "emergency", 999, Some("abandoned_before_answer")),
        ];
        for (id, kind, started, end) in calls {
            conn.execute(
                "INSERT INTO calls (id, call_id, started_at, ended_at, kind, dialled, source,
                    transport, end_reason)
                 VALUES (?1, 'c', ?2, ?3, ?4, '112', '127.0.0.1:5060', 'udp', ?5)",
                params![id, started, end.map(|_| started + 60_000), kind, end],
            )
            .expect("call");
        }
        let events = [
            (
                1,
                1_500,
                CallEventKind::RouteDecided,
                "route \"police\" (chosen by key)",
            ),
            (1, 3_000, CallEventKind::AgencyAnswered, "leg B1"),
            (
                1,
                4_000,
                CallEventKind::TransferDone,
                "caller moved from leg B1 to leg B2",
            ),
            (1, 9_000, CallEventKind::AgencyAnswered, "leg B2"),
            (
                2,
                2_500,
                CallEventKind::RouteDecided,
                "route \"silent\" (silent caller, urgent), URGENT",
            ),
            (2, 12_000, CallEventKind::AgencyAnswered, "leg B1"),
            (
                3,
                3_500,
                CallEventKind::RouteDecided,
                "route \"calltakers\" (no input)",
            ),
            (5, 5_500, CallEventKind::TransferDone, "a test call"),
            (
                6,
                10_500,
                CallEventKind::RouteDecided,
                "route \"fire\" (chosen by key)",
            ),
        ];
        for (call, at, kind, detail) in events {
            conn.execute(
                "INSERT INTO call_events (call, at, kind, detail) VALUES (?1, ?2, ?3, ?4)",
                params![call, at, kind.as_str(), detail],
            )
            .expect("event");
        }
        let s = stats(
            &conn,
            Window {
                from_ms: Some(1_000),
                to_ms: Some(10_000),
            },
        )
        .expect("stats");
        let pairs = |v: &[(&str, i64)]| -> Vec<(String, i64)> {
            v.iter().map(|&(k, n)| (k.to_owned(), n)).collect()
        };
        assert_eq!(s.calls, 5);
        assert_eq!(s.by_kind, pairs(&[("emergency", 4), ("test", 1)]));
        assert_eq!(s.emergency, 4);
        assert_eq!(s.reached_agency, 2);
        // From each call's start to its first agency answer: 2.0 s and 10.0 s.
        assert_eq!(
            (s.answer_ms_median, s.answer_ms_p90),
            (Some(2_000), Some(10_000))
        );
        assert_eq!(s.call_backs, 1);
        assert_eq!(
            s.end_reasons,
            pairs(&[
                ("abandoned_waiting_for_agency", 1),
                ("agency_hung_up", 1),
                ("caller_hung_up", 1),
                ("in progress", 1),
            ])
        );
        let route = |r: &str, why: &str| (r.to_owned(), why.to_owned(), 1);
        assert_eq!(
            s.first_routes,
            vec![
                route("calltakers", "no input"),
                route("police", "chosen by key"),
                route("silent", "silent caller, urgent"),
            ]
        );
        assert_eq!(
            s.transfers, 1,
            "the test call's transfer is not an emergency's"
        );
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 90), Some(7));
        let ten: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&ten, 50), Some(5));
        assert_eq!(percentile(&ten, 90), Some(9));
    }
}
