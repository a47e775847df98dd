//! `siaga report` (issue 12 item 6): false calls over a period — the false-call share per day
//! and per hour of day, calls by class, the numbers that call most, the time call-takers spent
//! on each class, and the corrections people made. As a table, CSV or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::store::Db;
use rusqlite::params;
use serde::Serialize;
use siaga_dialplan::CallClass;
use siaga_engine::timeline::CallEventKind;

use super::GatewayEventKind;
use super::query::{iso_utc, number_of};
use super::text::esc;

/// Said in the help and printed with every report.
pub const FALSE_CALL_DEFINITION: &str = "false calls are emergency calls whose current class \
    is silent, abandoned, pocket_or_noise, repeat or prank; the share is over the emergency \
    calls that have a class (test calls and unclassified calls are not counted in it)";

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// Calls that started in `[from_ms, to_ms)` (UTC ms), counted in days and hours of the
/// centre's local time, `offset_ms` ahead of UTC.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Period {
    pub from_ms: i64,
    pub to_ms: i64,
    pub offset_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    /// Days and hours are local time this far from UTC, e.g. `+08:00`.
    pub utc_offset: String,
    pub false_call_definition: &'static str,
    pub totals: Share,
    /// Every call of the period (emergency and test).
    pub calls: i64,
    pub test_calls: i64,
    /// Local days of the period, each one.
    pub per_day: Vec<Share>,
    /// Local hours of the day 00–23, over the whole period.
    pub per_hour: Vec<Share>,
    pub by_class: Vec<ClassFigures>,
    pub top_repeat_numbers: Vec<RepeatNumber>,
    /// Corrections made in the period (whenever their call was).
    pub corrections: Vec<CorrectionRow>,
    /// Only when the gateway logs policy events (their kinds exist).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies_applied: Option<Vec<EventCount>>,
    /// Only when the gateway logs attack events (their kinds exist).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attacks_detected: Option<Vec<AttackEvent>>,
}

/// Emergency calls in a bucket and the false-call share among the classified ones.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Share {
    /// The day (`2026-12-05`), the hour (`07`), or `all`.
    pub key: String,
    pub emergency: i64,
    pub classified: i64,
    pub unclassified: i64,
    pub false_calls: i64,
    /// Per cent of the classified; `None` without any.
    pub false_share_percent: Option<f64>,
}

impl Share {
    fn add(&mut self, class: Option<CallClass>) {
        self.emergency += 1;
        match class {
            None => self.unclassified += 1,
            Some(class) => {
                self.classified += 1;
                self.false_calls += i64::from(class.is_false_call());
            }
        }
        self.false_share_percent = (self.classified > 0)
            .then(|| (self.false_calls as f64 * 1000.0 / self.classified as f64).round() / 10.0);
    }
}

#[derive(Debug, Serialize)]
pub struct ClassFigures {
    /// A class, or `unclassified`.
    pub class: String,
    /// Calls whose current class this is.
    pub calls: i64,
    /// Calls the rules gave this class (before any correction).
    pub by_rules: i64,
    /// Of `calls`, those that a person corrected to it.
    pub corrected_to: i64,
    /// Of `calls`, those an agency answered, and the time agencies were on the line with them.
    pub agency_answered: i64,
    pub agency_talk_ms: i64,
}

impl ClassFigures {
    fn new(class: &str) -> ClassFigures {
        ClassFigures {
            class: class.to_owned(),
            calls: 0,
            by_rules: 0,
            corrected_to: 0,
            agency_answered: 0,
            agency_talk_ms: 0,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RepeatNumber {
    pub number: String,
    pub calls: i64,
    pub last_call: String,
    /// (current class or `unclassified`, calls).
    pub classes: Vec<(String, i64)>,
}

#[derive(Debug, Serialize)]
pub struct CorrectionRow {
    pub call: i64,
    pub at: String,
    pub by: String,
    pub from: Option<String>,
    pub to: String,
    pub why: String,
}

#[derive(Debug, Serialize)]
pub struct EventCount {
    pub kind: String,
    pub events: i64,
    pub calls: i64,
}

#[derive(Debug, Serialize)]
pub struct AttackEvent {
    pub at: String,
    pub kind: String,
    pub detail: String,
}

/// One call of the period, as the report needs it.
struct CallLine {
    kind: String,
    started_at: i64,
    number: Option<String>,
    current: Option<CallClass>,
    by_rules: Option<CallClass>,
    corrected: bool,
    agency_talk_ms: Option<i64>,
}

pub fn report(conn: &Db, period: Period, top: usize) -> rusqlite::Result<Report> {
    let lines: Vec<CallLine> = conn
        .prepare(
            "SELECT calls.kind, calls.started_at, calls.caller_from, calls.caller_pai,
                    cur.class, auto.class, s.agency_talk_ms,
                    EXISTS (SELECT 1 FROM call_class_corrections k WHERE k.call = calls.id)
             FROM calls
             LEFT JOIN call_current_class cur ON cur.call = calls.id
             LEFT JOIN call_classes auto ON auto.call = calls.id
             LEFT JOIN call_signals s ON s.call = calls.id
             WHERE calls.started_at >= ?1 AND calls.started_at < ?2
               AND calls.kind IN ('emergency', 'test')
             ORDER BY calls.started_at",
        )?
        .query_map(params![period.from_ms, period.to_ms], |r| {
            let pai: Option<String> = r.get(3)?;
            let pai = pai
                .and_then(|p| serde_json::from_str(&p).ok())
                .unwrap_or_default();
            let class = |s: Option<String>| s.and_then(|s| s.parse::<CallClass>().ok());
            Ok(CallLine {
                kind: r.get(0)?,
                started_at: r.get(1)?,
                number: number_of(r.get(2)?, pai),
                current: class(r.get(4)?),
                by_rules: class(r.get(5)?),
                agency_talk_ms: r.get(6)?,
                corrected: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;

    let mut totals = Share {
        key: "all".into(),
        ..Share::default()
    };
    let local = |ms: i64| ms + period.offset_ms;
    let first_day = local(period.from_ms).div_euclid(DAY_MS);
    let days = (local(period.to_ms - 1).div_euclid(DAY_MS) - first_day + 1).clamp(1, 3660);
    let mut per_day: Vec<Share> = (0..days)
        .map(|d| Share {
            key: iso_utc((first_day + d) * DAY_MS)[..10].to_owned(),
            ..Share::default()
        })
        .collect();
    let mut per_hour: Vec<Share> = (0..24)
        .map(|h| Share {
            key: format!("{h:02}"),
            ..Share::default()
        })
        .collect();
    let mut classes: BTreeMap<Option<CallClass>, ClassFigures> = BTreeMap::new();
    let mut numbers: BTreeMap<String, (i64, i64, BTreeMap<String, i64>)> = BTreeMap::new();
    let mut test_calls = 0;
    let class_name = |c: Option<CallClass>| c.map_or("unclassified", CallClass::as_str);
    for line in &lines {
        let figures = classes
            .entry(line.current)
            .or_insert_with(|| ClassFigures::new(class_name(line.current)));
        figures.calls += 1;
        figures.corrected_to += i64::from(line.corrected);
        if let Some(ms) = line.agency_talk_ms {
            figures.agency_answered += 1;
            figures.agency_talk_ms += ms;
        }
        if let Some(rules) = line.by_rules {
            classes
                .entry(Some(rules))
                .or_insert_with(|| ClassFigures::new(rules.as_str()))
                .by_rules += 1;
        }
        if line.kind != "emergency" {
            test_calls += 1;
            continue;
        }
        totals.add(line.current);
        let day = local(line.started_at).div_euclid(DAY_MS) - first_day;
        if let Some(bucket) = usize::try_from(day).ok().and_then(|d| per_day.get_mut(d)) {
            bucket.add(line.current);
        }
        let hour = local(line.started_at).rem_euclid(DAY_MS) / HOUR_MS;
        if let Some(bucket) = per_hour.get_mut(hour as usize) {
            bucket.add(line.current);
        }
        if let Some(number) = &line.number {
            let entry = numbers.entry(number.clone()).or_default();
            entry.0 += 1;
            entry.1 = entry.1.max(line.started_at);
            *entry
                .2
                .entry(class_name(line.current).to_owned())
                .or_default() += 1;
        }
    }
    let mut top_repeat_numbers: Vec<RepeatNumber> = numbers
        .into_iter()
        .filter(|(_, (calls, _, _))| *calls >= 2)
        .map(|(number, (calls, last, mix))| {
            let mut classes: Vec<(String, i64)> = mix.into_iter().collect();
            classes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            RepeatNumber {
                number,
                calls,
                last_call: iso_utc(last),
                classes,
            }
        })
        .collect();
    top_repeat_numbers.sort_by(|a, b| {
        b.calls
            .cmp(&a.calls)
            .then_with(|| b.last_call.cmp(&a.last_call))
    });
    top_repeat_numbers.truncate(top);

    Ok(Report {
        from: iso_utc(period.from_ms),
        to: iso_utc(period.to_ms),
        utc_offset: offset_text(period.offset_ms),
        false_call_definition: FALSE_CALL_DEFINITION,
        totals,
        calls: lines.len() as i64,
        test_calls,
        per_day,
        per_hour,
        by_class: classes.into_values().collect(),
        top_repeat_numbers,
        corrections: corrections(conn, period)?,
        policies_applied: policies_applied(conn, period)?,
        attacks_detected: attacks_detected(conn, period)?,
    })
}

/// `+08:00`, `-03:30`.
fn offset_text(offset_ms: i64) -> String {
    let minutes = offset_ms / 60_000;
    let sign = if minutes < 0 { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", minutes.abs() / 60, minutes.abs() % 60)
}

fn corrections(conn: &Db, period: Period) -> rusqlite::Result<Vec<CorrectionRow>> {
    conn.prepare(
        "SELECT call, at, by, from_class, to_class, why FROM call_class_corrections
         WHERE at >= ?1 AND at < ?2 ORDER BY at, id",
    )?
    .query_map(params![period.from_ms, period.to_ms], |r| {
        Ok(CorrectionRow {
            call: r.get(0)?,
            at: iso_utc(r.get(1)?),
            by: r.get(2)?,
            from: r.get(3)?,
            to: r.get(4)?,
            why: r.get(5)?,
        })
    })?
    .collect()
}

/// The timeline kinds that record a number policy used on a call (issue 12 item 3).
fn policy_kinds() -> Vec<&'static str> {
    [
        CallEventKind::PolicyWatched,
        CallEventKind::PolicyRepeatCaller,
        CallEventKind::PolicyBlocked,
        CallEventKind::PolicyBlockOverridden,
    ]
    .iter()
    .map(|k| k.as_str())
    .collect()
}

/// The gateway events of the attack (TDoS) mode (issue 12 item 4): `attack_started` and
/// `attack_ended`, any kind whose name says `attack`.
fn attack_kinds() -> Vec<&'static str> {
    GatewayEventKind::ALL
        .iter()
        .map(|k| k.as_str())
        .filter(|k| k.contains("attack"))
        .collect()
}

/// `'a', 'b'`: our own constants, inlined as SQL literals.
fn sql_list(kinds: &[&str]) -> String {
    kinds
        .iter()
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn policies_applied(conn: &Db, period: Period) -> rusqlite::Result<Option<Vec<EventCount>>> {
    let kinds = policy_kinds();
    if kinds.is_empty() {
        return Ok(None);
    }
    conn.prepare(&format!(
        "SELECT e.kind, count(*), count(DISTINCT e.call) FROM call_events e
         JOIN calls ON calls.id = e.call
         WHERE calls.started_at >= ?1 AND calls.started_at < ?2 AND e.kind IN ({})
         GROUP BY e.kind ORDER BY count(*) DESC, e.kind",
        sql_list(&kinds)
    ))?
    .query_map(params![period.from_ms, period.to_ms], |r| {
        Ok(EventCount {
            kind: r.get(0)?,
            events: r.get(1)?,
            calls: r.get(2)?,
        })
    })?
    .collect::<rusqlite::Result<_>>()
    .map(Some)
}

fn attacks_detected(conn: &Db, period: Period) -> rusqlite::Result<Option<Vec<AttackEvent>>> {
    let kinds = attack_kinds();
    if kinds.is_empty() {
        return Ok(None);
    }
    conn.prepare(&format!(
        "SELECT at, kind, detail FROM gateway_events
         WHERE at >= ?1 AND at < ?2 AND kind IN ({}) ORDER BY at, id",
        sql_list(&kinds)
    ))?
    .query_map(params![period.from_ms, period.to_ms], |r| {
        Ok(AttackEvent {
            at: iso_utc(r.get(0)?),
            kind: r.get(1)?,
            detail: r.get(2)?,
        })
    })?
    .collect::<rusqlite::Result<_>>()
    .map(Some)
}

/// One section of the report: a title, a header and rows (cells already written out).
struct Section {
    name: &'static str,
    title: String,
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

fn percent(p: Option<f64>) -> String {
    p.map_or_else(|| "-".to_owned(), |p| format!("{p:.1}"))
}

fn share_rows(shares: &[Share]) -> Vec<Vec<String>> {
    shares
        .iter()
        .map(|s| {
            vec![
                s.key.clone(),
                s.emergency.to_string(),
                s.classified.to_string(),
                s.unclassified.to_string(),
                s.false_calls.to_string(),
                percent(s.false_share_percent),
            ]
        })
        .collect()
}

const SHARE_HEADER: [&str; 6] = [
    "",
    "emergency",
    "classified",
    "unclassified",
    "false",
    "false %",
];

fn sections(r: &Report) -> Vec<Section> {
    let header = |first: &'static str| {
        let mut h = SHARE_HEADER.to_vec();
        h[0] = first;
        h
    };
    let mut sections = vec![
        Section {
            name: "total",
            title: format!(
                "{} calls ({} test calls) from {} to {}",
                r.calls, r.test_calls, r.from, r.to
            ),
            header: header("period"),
            rows: share_rows(std::slice::from_ref(&r.totals)),
        },
        Section {
            name: "per_day",
            title: format!("per day (UTC{})", r.utc_offset),
            header: header("day"),
            rows: share_rows(&r.per_day),
        },
        Section {
            name: "per_hour",
            title: format!("per hour of the day (UTC{}), over the period", r.utc_offset),
            header: header("hour"),
            rows: share_rows(&r.per_hour),
        },
        Section {
            name: "by_class",
            title: "by class (current class; by_rules: before corrections; agency time: \
                    call-takers' and agencies' time on the line)"
                .into(),
            header: vec![
                "class",
                "calls",
                "by rules",
                "corrected to",
                "agency answered",
                "agency time s",
            ],
            rows: r
                .by_class
                .iter()
                .map(|c| {
                    vec![
                        c.class.clone(),
                        c.calls.to_string(),
                        c.by_rules.to_string(),
                        c.corrected_to.to_string(),
                        c.agency_answered.to_string(),
                        format!("{:.1}", c.agency_talk_ms as f64 / 1000.0),
                    ]
                })
                .collect(),
        },
        Section {
            name: "repeat_numbers",
            title: "numbers with more than one emergency call, most first".into(),
            header: vec!["number", "calls", "last call", "classes"],
            rows: r
                .top_repeat_numbers
                .iter()
                .map(|n| {
                    let mix: Vec<String> =
                        n.classes.iter().map(|(c, k)| format!("{c} {k}")).collect();
                    vec![
                        n.number.clone(),
                        n.calls.to_string(),
                        n.last_call.clone(),
                        mix.join(" "),
                    ]
                })
                .collect(),
        },
        Section {
            name: "corrections",
            title: format!("corrections made in the period: {}", r.corrections.len()),
            header: vec!["call", "at", "by", "from", "to", "why"],
            rows: r
                .corrections
                .iter()
                .map(|c| {
                    vec![
                        c.call.to_string(),
                        c.at.clone(),
                        c.by.clone(),
                        c.from.clone().unwrap_or_else(|| "unclassified".into()),
                        c.to.clone(),
                        c.why.clone(),
                    ]
                })
                .collect(),
        },
    ];
    if let Some(policies) = &r.policies_applied {
        sections.push(Section {
            name: "policies",
            title: "policies applied".into(),
            header: vec!["kind", "events", "calls"],
            rows: policies
                .iter()
                .map(|p| vec![p.kind.clone(), p.events.to_string(), p.calls.to_string()])
                .collect(),
        });
    }
    if let Some(attacks) = &r.attacks_detected {
        sections.push(Section {
            name: "attacks",
            title: "attacks detected".into(),
            header: vec!["at", "kind", "detail"],
            rows: attacks
                .iter()
                .map(|a| vec![a.at.clone(), a.kind.clone(), a.detail.clone()])
                .collect(),
        });
    }
    sections
}

/// Aligned columns per section; text from callers and people (numbers, names, reasons)
/// escaped so it cannot act on a terminal.
pub fn render_table(r: &Report) -> String {
    let mut out = String::new();
    for section in sections(r) {
        let _ = writeln!(out, "{}", section.title);
        let rows: Vec<Vec<String>> = section
            .rows
            .iter()
            .map(|row| row.iter().map(|c| esc(c).into_owned()).collect())
            .collect();
        let mut widths: Vec<usize> = section.header.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let last = widths.len().saturating_sub(1);
        let mut line = |cells: Vec<&str>| {
            let mut text = String::from(" ");
            for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
                let pad = " ".repeat(w.saturating_sub(c.chars().count()));
                let numeric = i > 0 && c.parse::<f64>().is_ok();
                match (i == last, numeric) {
                    (_, true) => text.push_str(&format!(" {pad}{c}")),
                    (true, false) => text.push_str(&format!(" {c}")),
                    (false, false) => text.push_str(&format!(" {c}{pad}")),
                }
            }
            let _ = writeln!(out, "{}", text.trim_end());
        };
        line(section.header.clone());
        if rows.is_empty() {
            line(vec!["(none)"]);
        }
        for row in &rows {
            line(row.iter().map(String::as_str).collect());
        }
        out.push('\n');
    }
    let _ = writeln!(out, "{FALSE_CALL_DEFINITION}");
    out
}

/// One CSV table per section, each row led by the section's name (`total`, `per_day`, …) so
/// a tool can split them; RFC 4180 quoting.
pub fn render_csv(r: &Report) -> String {
    let field = |s: &str| {
        let s = esc(s);
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.into_owned()
        }
    };
    let mut out = String::new();
    for section in sections(r) {
        let header: Vec<String> = std::iter::once("section")
            .chain(section.header.iter().copied())
            .map(|h| field(&h.replace(' ', "_").replace('%', "percent")))
            .collect();
        let _ = writeln!(out, "{}", header.join(","));
        for row in &section.rows {
            let cells: Vec<String> = std::iter::once(section.name)
                .chain(row.iter().map(String::as_str))
                .map(field)
                .collect();
            let _ = writeln!(out, "{}", cells.join(","));
        }
    }
    out
}

/// The period of `--from`/`--to`, given in local time `offset_ms` ahead of UTC: a day
/// (`--to`'s day included) or a minute (`--to`'s minute not included); without them the last
/// 7 days up to the end of today.
pub fn period(from: Option<i64>, to: Option<(i64, bool)>, now_ms: i64, offset_ms: i64) -> Period {
    let local_to = match to {
        Some((day_start, true)) => day_start + DAY_MS,
        Some((minute, false)) => minute,
        None => ((now_ms + offset_ms).div_euclid(DAY_MS) + 1) * DAY_MS,
    };
    let local_from = from.unwrap_or(local_to - 7 * DAY_MS);
    Period {
        from_ms: local_from - offset_ms,
        to_ms: local_to - offset_ms,
        offset_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calllog::testing::{Store, TestLog};

    const WITA: i64 = 8 * HOUR_MS;

    #[test]
    fn days_and_hours_are_counted_in_local_time() {
        days_and_hours_are_counted_in_local_time_on(Store::Sqlite)
    }

    #[test]
    fn days_and_hours_are_counted_in_local_time_on_postgres() {
        days_and_hours_are_counted_in_local_time_on(Store::Postgres)
    }

    fn days_and_hours_are_counted_in_local_time_on(store: Store) {
        let log = TestLog::new(store);
        let conn = log.open();
        let day = 20_000 * DAY_MS;
        // 23:30 UTC is 07:30 the next day in WITA; 10:00 UTC is 18:00 the same day.
        for (id, at) in [
            (1, day + 23 * HOUR_MS + 30 * 60_000),
            (2, day + 10 * HOUR_MS),
        ] {
            conn.execute(
                "INSERT INTO calls (id, call_id, started_at, kind, dialled, source, transport)
                 VALUES (?1, 'c', ?2, 'emergency', '112', '127.0.0.1:5060', 'udp')",
                params![id, at],
            )
            .expect("insert");
        }
        let local_day = |d: i64| iso_utc(d)[..10].to_owned();
        // --from and --to are the two local days.
        let period = period(Some(day), Some((day + DAY_MS, true)), 0, WITA);
        assert_eq!(period.from_ms, day - WITA);
        assert_eq!(period.to_ms, day + 2 * DAY_MS - WITA);
        let r = report(&conn, period, 10).expect("report");
        assert_eq!(r.utc_offset, "+08:00");
        let days: Vec<(String, i64)> = r
            .per_day
            .iter()
            .map(|d| (d.key.clone(), d.emergency))
            .collect();
        assert_eq!(
            days,
            vec![(local_day(day), 1), (local_day(day + DAY_MS), 1)]
        );
        let hours: Vec<&str> = r
            .per_hour
            .iter()
            .filter(|h| h.emergency > 0)
            .map(|h| h.key.as_str())
            .collect();
        assert_eq!(hours, ["07", "18"]);
        // Both unclassified: no share.
        assert_eq!(
            (r.totals.unclassified, r.totals.false_share_percent),
            (2, None)
        );
    }

    #[test]
    fn the_default_period_is_the_last_seven_local_days_through_today() {
        let now = 20_000 * DAY_MS + 20 * HOUR_MS; // 04:00 the next day in WITA
        let p = period(None, None, now, WITA);
        assert_eq!(p.to_ms, 20_002 * DAY_MS - WITA);
        assert_eq!(p.to_ms - p.from_ms, 7 * DAY_MS);
        // A minute for --to is not included.
        let p = period(None, Some((now, false)), now, 0);
        assert_eq!(p.to_ms, now);
        assert_eq!(offset_text(-(3 * HOUR_MS + 30 * 60_000)), "-03:30");
    }
}
