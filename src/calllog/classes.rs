//! Call classes in the call log (issue 12): the rules' class, written with the call's signals;
//! people's corrections, each its own row; and the current class (the latest correction, else
//! the rules' class). The rules themselves are pure: `siaga_dialplan::classify_call`.

use std::fmt::Write as _;
use std::time::Duration;

use super::store::Db;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use siaga_dialplan::{
    CallClass, CallFacts, ClassifyRules, DialledKind, EndedBy, RULES_VERSION, Reason, Verdict,
    Voice, classify_call,
};
use siaga_engine::call::EndReason;

use super::query::{CallRow, SignalsRow, call_by_id, earlier_calls, iso_utc, signals_of};
use super::text::esc;

/// A call's class as `calls show` gives it.
#[derive(Debug, Serialize)]
pub struct ClassView {
    /// The latest correction, else the rules' class; `None`: unclassified (no signals were
    /// logged: the call is live, or the gateway stopped before they were).
    pub current: Option<CallClass>,
    pub automatic: Option<AutomaticClass>,
    /// Oldest first.
    pub corrections: Vec<Correction>,
}

/// The class the rules gave.
#[derive(Debug, Serialize)]
pub struct AutomaticClass {
    pub class: CallClass,
    /// The deciding rule first.
    pub reasons: Vec<Reason>,
    pub rules_version: u32,
    pub at: i64,
}

/// A person's correction of a call's class.
#[derive(Debug, Serialize)]
pub struct Correction {
    pub at: i64,
    pub by: String,
    /// The current class before (`None`: unclassified).
    pub from: Option<CallClass>,
    pub to: CallClass,
    pub why: String,
}

/// The class of call `call`, from what the log holds, written to `call_classes`; nothing for
/// a call without its row or signals, or of another kind than emergency or test.
pub fn classify_in(
    conn: &Db,
    call: i64,
    at_ms: i64,
    rules: &ClassifyRules,
) -> rusqlite::Result<()> {
    let Some(verdict) = verdict_for(conn, call, at_ms, rules)? else {
        return Ok(());
    };
    let reasons = serde_json::to_string(&verdict.reasons)
        .unwrap_or_else(|e| format!("[{{\"error\":\"reasons not serialisable: {e}\"}}]"));
    conn.execute(
        "INSERT INTO call_classes (call, class, reasons, rules_version, at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (call) DO UPDATE SET class = excluded.class, reasons = excluded.reasons,
            rules_version = excluded.rules_version, at = excluded.at",
        params![call, verdict.class.as_str(), reasons, RULES_VERSION, at_ms],
    )
    .map(|_| ())
}

/// What the rules say about call `call` now.
pub fn verdict_for(
    conn: &Db,
    call: i64,
    at_ms: i64,
    rules: &ClassifyRules,
) -> rusqlite::Result<Option<Verdict>> {
    let (Some(row), Some(signals)) = (call_by_id(conn, call)?, signals_of(conn, call)?) else {
        return Ok(None);
    };
    let Some(facts) = facts_of(conn, &row, &signals, at_ms)? else {
        return Ok(None);
    };
    Ok(Some(classify_call(&facts, rules)))
}

fn facts_of(
    conn: &Db,
    row: &CallRow,
    signals: &SignalsRow,
    at_ms: i64,
) -> rusqlite::Result<Option<CallFacts>> {
    let dialled = match row.kind.as_str() {
        "emergency" => DialledKind::Emergency,
        "test" => DialledKind::Test,
        _ => return Ok(None),
    };
    let ms = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0));
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let voice = match (
        signals.voice_frames,
        signals.speech_frames,
        signals.longest_speech_ms,
    ) {
        (Some(frames), Some(speech), Some(longest)) => Some(Voice {
            frames: u64::try_from(frames).unwrap_or(0),
            speech_frames: u64::try_from(speech).unwrap_or(0),
            longest_run: ms(longest),
            longest_voiced_run: signals.longest_voiced_ms.map(ms),
        }),
        _ => None,
    };
    let earlier = earlier_calls(conn, row)?.map(|e| siaga_dialplan::EarlierCalls {
        in_10_min: count(e.last_10_min),
        in_hour: count(e.last_hour),
        in_day: count(e.last_day),
    });
    Ok(Some(CallFacts {
        dialled,
        time_to_hang_up: ms(row.ended_at.unwrap_or(at_ms) - row.started_at),
        ended_by: ended_by(row.end_reason.as_deref()),
        agency_talk: signals.agency_talk_ms.map(ms),
        digits: u32::try_from(signals.digits).unwrap_or(0),
        voice,
        usable_identity: signals.usable_identity,
        caller_location: caller_sent_location(conn, row.id)?,
        earlier,
    }))
}

/// Who ended a call, from its logged end reason.
fn ended_by(end_reason: Option<&str>) -> EndedBy {
    let Some(reason) = EndReason::ALL
        .into_iter()
        .find(|r| Some(r.as_str()) == end_reason)
    else {
        // `gateway_restarted` (crash recovery, GATEWAY_RESTARTED), or none yet.
        return EndedBy::Gateway;
    };
    // Exhaustive: a new end reason must say who ended the call.
    match reason {
        EndReason::AbandonedBeforeAnswer
        | EndReason::CallerHungUp
        | EndReason::AbandonedWaitingForAgency
        | EndReason::AbandonedInIvr => EndedBy::Caller,
        EndReason::AgencyHungUp => EndedBy::Agency,
        EndReason::GatewayHungUp
        | EndReason::NotEmergency
        | EndReason::RefusedDraining
        | EndReason::TestCallEnded
        | EndReason::BlockedNumber => EndedBy::Gateway,
        EndReason::NoAck | EndReason::TransportError | EndReason::CallerLost => EndedBy::Network,
    }
}

/// The caller's phone sent a location by value (PIDF-LO) in any request of the call.
fn caller_sent_location(conn: &Db, call: i64) -> rusqlite::Result<bool> {
    // The reports are JSON text; each engine reads JSON its own way.
    let sql = match conn.dialect() {
        super::store::Dialect::Sqlite => {
            "SELECT EXISTS (SELECT 1 FROM call_locations l, json_each(l.report, '$.locations') j
                        WHERE l.call = ?1 AND json_valid(l.report)
                          AND json_extract(j.value, '$.source.kind') = 'by_value')"
        }
        super::store::Dialect::Postgres => {
            "SELECT EXISTS (SELECT 1 FROM call_locations l,
                            jsonb_array_elements(l.report::jsonb -> 'locations') j
                        WHERE l.call = ?1 AND j -> 'source' ->> 'kind' = 'by_value')"
        }
    };
    conn.query_row(sql, params![call], |r| r.get(0))
}

/// The call's class: the rules', the corrections and the current one.
pub fn of_call(conn: &Db, call: i64) -> rusqlite::Result<ClassView> {
    let automatic = conn
        .query_row(
            "SELECT class, reasons, rules_version, at FROM call_classes WHERE call = ?1",
            params![call],
            |r| {
                let class: String = r.get(0)?;
                let reasons: String = r.get(1)?;
                Ok((class, reasons, r.get::<_, u32>(2)?, r.get::<_, i64>(3)?))
            },
        )
        .optional()?
        .and_then(|(class, reasons, rules_version, at)| {
            Some(AutomaticClass {
                class: class.parse().ok()?,
                reasons: serde_json::from_str(&reasons).unwrap_or_default(),
                rules_version,
                at,
            })
        });
    let corrections: Vec<Correction> = conn
        .prepare(
            "SELECT at, by, from_class, to_class, why FROM call_class_corrections
             WHERE call = ?1 ORDER BY id",
        )?
        .query_map(params![call], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?
        .filter_map(|row| match row {
            Ok((at, by, from, to, why)) => Some(Ok(Correction {
                at,
                by,
                from: from.and_then(|f| f.parse().ok()),
                to: to.parse().ok()?,
                why,
            })),
            Err(e) => Some(Err(e)),
        })
        .collect::<rusqlite::Result<_>>()?;
    let current = corrections
        .last()
        .map(|c| c.to)
        .or(automatic.as_ref().map(|a| a.class));
    Ok(ClassView {
        current,
        automatic,
        corrections,
    })
}

/// Why a correction was refused.
#[derive(Debug, thiserror::Error)]
pub enum CorrectionError {
    #[error("no call {0} in the call log (see `siaga calls list`)")]
    NoSuchCall(i64),
    #[error("--{0} is empty: say {1}")]
    Empty(&'static str, &'static str),
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
}

/// Records a person's correction of call `call` to `to`; the rules' class stays as it was.
pub fn correct(
    conn: &Db,
    call: i64,
    to: CallClass,
    by: &str,
    why: &str,
    at_ms: i64,
) -> Result<Correction, CorrectionError> {
    let (by, why) = (by.trim(), why.trim());
    if by.is_empty() {
        return Err(CorrectionError::Empty("by", "who corrects the class"));
    }
    if why.is_empty() {
        return Err(CorrectionError::Empty("why", "why the class is wrong"));
    }
    if call_by_id(conn, call)?.is_none() {
        return Err(CorrectionError::NoSuchCall(call));
    }
    let from = of_call(conn, call)?.current;
    conn.execute(
        "INSERT INTO call_class_corrections (call, at, by, from_class, to_class, why)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            call,
            at_ms,
            by,
            from.map(CallClass::as_str),
            to.as_str(),
            why
        ],
    )?;
    Ok(Correction {
        at: at_ms,
        by: by.to_owned(),
        from,
        to,
        why: why.to_owned(),
    })
}

/// The SQL condition (on `calls`) of calls whose current class is `class` (`None`:
/// unclassified).
pub fn current_class_condition(class: Option<CallClass>) -> String {
    match class {
        // Our own constant, so it can be inlined as an SQL literal.
        Some(class) => format!(
            "calls.id IN (SELECT call FROM call_current_class WHERE class = '{}')",
            class.as_str()
        ),
        None => "calls.id IN (SELECT call FROM call_current_class WHERE class IS NULL)".to_owned(),
    }
}

/// The `class` block of `calls show`.
pub fn render(out: &mut String, view: &ClassView) {
    let e = |s: &str| esc(s).into_owned();
    let _ = writeln!(out, "class");
    let current = match (view.current, view.corrections.last()) {
        (None, _) => "unclassified (no signals logged: the call is live, or the gateway \
                      stopped before they were)"
            .to_owned(),
        (Some(class), Some(c)) => format!("{class} (corrected by {})", e(&c.by)),
        (Some(class), None) => format!("{class} (by the rules)"),
    };
    let _ = writeln!(out, "  current     {current}");
    if let Some(auto) = &view.automatic {
        let _ = writeln!(
            out,
            "  rules       {} (rules v{}, {})",
            auto.class,
            auto.rules_version,
            iso_utc(auto.at)
        );
        for (i, reason) in auto.reasons.iter().enumerate() {
            // Rules after the deciding one: overruled by a sign of a real emergency, or
            // simply also true.
            let note = match (i, auto.class) {
                (0, _) => "",
                (_, CallClass::Genuine) if reason.class != CallClass::Genuine => " [overruled]",
                _ if reason.class != auto.class => " [also]",
                _ => "",
            };
            let _ = writeln!(out, "    {}{note}", e(&reason.to_string()));
        }
    }
    for c in &view.corrections {
        let from = c.from.map_or("unclassified", CallClass::as_str);
        let _ = writeln!(
            out,
            "  corrected   {}  by {}: {from} → {}: {}",
            iso_utc(c.at),
            e(&c.by),
            c.to,
            e(&c.why)
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rusqlite::params;

    use crate::calllog::testing::{Store, TestLog};

    use super::Db;
    use siaga_dialplan::{CallClass, ClassifyRules};
    use siaga_engine::ids::CallRef;
    use siaga_engine::io::{CallSignals, LogRecord};
    use siaga_media::VoiceTotals;

    use super::{correct, of_call};
    use crate::calllog::Write;
    use crate::calllog::query::{ListFilter, list, render_detail, show};
    use crate::calllog::report::{Period, render_csv, render_table, report};

    const MINUTE: i64 = 60_000;
    const START: i64 = 20_000 * 24 * 60 * MINUTE;

    fn signals(
        digits: u32,
        agency_talk_s: Option<u64>,
        voice: Option<(u32, u32, u32)>,
    ) -> CallSignals {
        CallSignals {
            digits,
            answered_for: Some(Duration::from_secs(10)),
            agency_talk: agency_talk_s.map(Duration::from_secs),
            usable_identity: true,
            // Speech that is voiced, as a person's is.
            voice: voice.map(|(frames, speech_frames, longest_speech_ms)| VoiceTotals {
                frames,
                speech_frames,
                longest_speech_ms,
                voiced_frames: speech_frames,
                longest_voiced_ms: longest_speech_ms,
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_call(
        conn: &Db,
        id: i64,
        at: i64,
        kind: &str,
        number: &str,
        number_column: Option<&str>,
        ended_at: i64,
        reason: &str,
    ) {
        conn.execute(
            "INSERT INTO calls (id, call_id, started_at, ended_at, end_reason, kind, dialled,
                source, transport, caller_from, caller_number)
             VALUES (?1, 'c', ?2, ?3, ?4, ?5, '112', '127.0.0.1:5060', 'udp', ?6, ?7)",
            params![
                id,
                at,
                ended_at,
                reason,
                kind,
                format!("<sip:{number}@192.0.2.1>;tag=t"),
                number_column
            ],
        )
        .expect("insert call");
    }

    /// The thresholds of the plan running when a call's signals are logged are the ones used.
    #[test]
    fn a_reloaded_plans_thresholds_class_the_calls_logged_after_it() {
        a_reloaded_plans_thresholds_class_the_calls_logged_after_it_on(Store::Sqlite)
    }

    #[test]
    fn a_reloaded_plans_thresholds_class_the_calls_logged_after_it_on_postgres() {
        a_reloaded_plans_thresholds_class_the_calls_logged_after_it_on(Store::Postgres)
    }

    fn a_reloaded_plans_thresholds_class_the_calls_logged_after_it_on(store: Store) {
        let log = TestLog::new(store);
        let (calllog, _writer, _) = log.start();
        let conn = log.open();
        let number = "+6281100000009";
        for id in 1..=3 {
            let at = START + id * MINUTE;
            insert_call(
                &conn,
                id,
                at,
                "emergency",
                number,
                Some(number),
                at + 30_000,
                "caller_hung_up",
            );
        }
        let repeat_from = |n| ClassifyRules {
            repeat_in_10_min: n,
            repeat_in_hour: n,
            repeat_in_day: n,
            ..ClassifyRules::default()
        };
        let log_signals = |call| {
            calllog.engine(
                START + 10 * MINUTE,
                LogRecord::CallSignals {
                    call: CallRef(call),
                    signals: signals(0, None, Some((1_000, 0, 0))),
                },
            )
        };
        calllog.send(Write::ClassRules(repeat_from(1)));
        log_signals(2);
        calllog.send(Write::ClassRules(repeat_from(5)));
        log_signals(3);
        assert!(calllog.barrier(Duration::from_secs(10)));
        assert_eq!(class_of(&conn, 2).as_deref(), Some("repeat"));
        assert_eq!(class_of(&conn, 3).as_deref(), Some("silent"));
    }

    fn class_of(conn: &Db, call: i64) -> Option<String> {
        conn.query_row(
            "SELECT class FROM call_classes WHERE call = ?1",
            params![call],
            |r| r.get(0),
        )
        .ok()
    }

    /// Calls through the writer: each call's row and end as the engine logs them, then its
    /// signals; the writer classes each with the plan's thresholds, from what the log holds.
    #[test]
    fn the_writer_classes_calls_with_their_signals_and_people_correct_them() {
        the_writer_classes_calls_with_their_signals_and_people_correct_them_on(Store::Sqlite)
    }

    #[test]
    fn the_writer_classes_calls_with_their_signals_and_people_correct_them_on_postgres() {
        the_writer_classes_calls_with_their_signals_and_people_correct_them_on(Store::Postgres)
    }

    fn the_writer_classes_calls_with_their_signals_and_people_correct_them_on(store: Store) {
        let log = TestLog::new(store);
        let (calllog, _writer, _) = log.start();
        let conn = log.open();
        // (id, start, kind, number, ended after s, end reason)
        let calls: [(i64, i64, &str, &str, i64, &str); 8] = [
            (
                1,
                START,
                "emergency",
                "+6281100000001",
                40,
                "caller_hung_up",
            ),
            (
                2,
                START + MINUTE,
                "emergency",
                "+6281100000002",
                3,
                "abandoned_in_ivr",
            ),
            (
                3,
                START + 2 * MINUTE,
                "emergency",
                "+6281100000003",
                90,
                "agency_hung_up",
            ),
            (
                4,
                START + 3 * MINUTE,
                "test",
                "+6281100000004",
                5,
                "test_call_ended",
            ),
            (
                5,
                START + 4 * MINUTE,
                "emergency",
                "+6281100000005",
                30,
                "caller_hung_up",
            ),
            (
                6,
                START + 5 * MINUTE,
                "emergency",
                "+6281100000005",
                30,
                "caller_hung_up",
            ),
            (
                7,
                START + 6 * MINUTE,
                "emergency",
                "+6281100000005",
                30,
                "caller_hung_up",
            ),
            // Its signals never come (a crash): unclassified.
            (
                8,
                START + 7 * MINUTE,
                "emergency",
                "+6281100000008",
                30,
                "gateway_restarted",
            ),
        ];
        for (id, at, kind, number, ended_s, reason) in calls {
            // Calls 5–7 as this version logs them (their number in its own column, counted by
            // index); the others as an older version did (the number read from From).
            let column = (id >= 5).then_some(number);
            insert_call(
                &conn,
                id,
                at,
                kind,
                number,
                column,
                at + ended_s * 1000,
                reason,
            );
        }
        // The plan's thresholds reach the writer before the signals.
        calllog.send(Write::ClassRules(ClassifyRules {
            repeat_in_10_min: 2,
            ..ClassifyRules::default()
        }));
        let quiet = Some((1_240, 5, 0));
        for (call, s) in [
            (1, signals(0, None, quiet)),
            (2, signals(0, None, quiet)),
            (3, signals(1, Some(80), Some((4_000, 2_400, 6_000)))),
            (4, signals(0, None, quiet)),
            (5, signals(0, None, quiet)),
            (6, signals(0, None, quiet)),
            (7, signals(0, None, quiet)),
        ] {
            calllog.engine(
                START + 10 * MINUTE,
                LogRecord::CallSignals {
                    call: CallRef(call),
                    signals: s,
                },
            );
        }
        assert!(calllog.barrier(Duration::from_secs(10)));

        let classes: Vec<Option<String>> = (1..=8).map(|id| class_of(&conn, id)).collect();
        let expected = [
            "silent",
            "abandoned",
            "genuine",
            "test",
            "silent",
            "silent",
            "repeat",
        ];
        assert_eq!(
            classes,
            expected
                .iter()
                .map(|c| Some((*c).to_owned()))
                .chain([None])
                .collect::<Vec<_>>()
        );
        let version: u32 = conn
            .query_row(
                "SELECT rules_version FROM call_classes WHERE call = 1",
                [],
                |r| r.get(0),
            )
            .expect("version");
        assert_eq!(version, siaga_dialplan::RULES_VERSION);

        // `calls show`: the class, the deciding reason with its numbers, the overruled one.
        let shown = render_detail(&show(&conn, 7).expect("query").expect("call 7"), false);
        assert!(
            shown.contains(
                "class\n  current     repeat (by the rules)\n  rules       repeat (rules v1, "
            ),
            "{shown}"
        );
        assert!(
            shown.contains(
                "    repeat: 2 earlier call(s) from the number in the 10 min before ≥ 2 (2 in 10 min, 2 in the hour, 2 in the day)\n    silent: caller speech 0.4 % of 1,240 frames < 2 %"
            ),
            "{shown}"
        );
        let shown = render_detail(&show(&conn, 3).expect("query").expect("call 3"), false);
        assert!(
            shown.contains("    speech: caller spoke for 6,000 ms in one run ≥ 400 ms"),
            "{shown}"
        );
        assert!(
            shown.contains("    keys: 1 key(s) pressed ≥ 1\n"),
            "{shown}"
        );
        assert!(
            shown.contains("    agency_talk: an agency was on the line 80 s ≥ 60 s\n"),
            "{shown}"
        );
        let shown = render_detail(&show(&conn, 8).expect("query").expect("call 8"), false);
        assert!(
            shown.contains("class\n  current     unclassified (no signals logged"),
            "{shown}"
        );

        // A correction: its own row, the rules' class kept, the current class changed.
        let correction = correct(
            &conn,
            5,
            CallClass::Prank,
            "Sari",
            "laughing, then hung up",
            START + 20 * MINUTE,
        )
        .expect("correct");
        assert_eq!(correction.from, Some(CallClass::Silent));
        assert!(correct(&conn, 5, CallClass::Prank, "Sari", "  ", START).is_err());
        assert!(correct(&conn, 99, CallClass::Prank, "Sari", "x", START).is_err());
        let view = of_call(&conn, 5).expect("view");
        assert_eq!(view.current, Some(CallClass::Prank));
        assert_eq!(view.automatic.map(|a| a.class), Some(CallClass::Silent));
        let json =
            serde_json::to_value(show(&conn, 5).expect("query").expect("call 5")).expect("json");
        assert_eq!(json["class"]["current"], "prank", "{json}");
        assert_eq!(json["class"]["automatic"]["class"], "silent", "{json}");
        assert_eq!(json["class"]["corrections"][0]["by"], "Sari", "{json}");
        assert_eq!(json["class"]["corrections"][0]["from"], "silent", "{json}");
        let shown = render_detail(&show(&conn, 5).expect("query").expect("call 5"), false);
        assert!(
            shown.contains("  corrected   ")
                && shown.contains("by Sari: silent → prank: laughing, then hung up"),
            "{shown}"
        );

        // `calls list --class`.
        let ids = |class| {
            let filter = ListFilter {
                class: Some(class),
                ..ListFilter::default()
            };
            list(&conn, 50, &filter)
                .expect("list")
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(Some(CallClass::Silent)), vec![6, 1]);
        assert_eq!(ids(Some(CallClass::Prank)), vec![5]);
        assert_eq!(ids(None), vec![8]);

        // The report: 7 emergency calls, 6 classified, 5 false (silent 2, abandoned, repeat,
        // prank); one test call.
        let period = Period {
            from_ms: START - START % (24 * 60 * MINUTE),
            to_ms: START + 24 * 60 * MINUTE,
            offset_ms: 0,
        };
        let r = report(&conn, period, 10).expect("report");
        assert_eq!(r.calls, 8);
        assert_eq!(r.test_calls, 1);
        assert_eq!(
            (
                r.totals.emergency,
                r.totals.classified,
                r.totals.unclassified,
                r.totals.false_calls
            ),
            (7, 6, 1, 5)
        );
        assert_eq!(r.totals.false_share_percent, Some(83.3));
        let by_class: Vec<(String, i64, i64, i64)> = r
            .by_class
            .iter()
            .map(|c| (c.class.clone(), c.calls, c.by_rules, c.agency_talk_ms))
            .collect();
        assert_eq!(
            by_class,
            vec![
                ("unclassified".to_owned(), 1, 0, 0),
                ("genuine".to_owned(), 1, 1, 80_000),
                ("silent".to_owned(), 2, 3, 0),
                ("abandoned".to_owned(), 1, 1, 0),
                ("repeat".to_owned(), 1, 1, 0),
                ("test".to_owned(), 1, 1, 0),
                ("prank".to_owned(), 1, 0, 0),
            ]
        );
        assert_eq!(r.top_repeat_numbers.len(), 1);
        assert_eq!(r.top_repeat_numbers[0].number, "+6281100000005");
        assert_eq!(r.top_repeat_numbers[0].calls, 3);
        assert_eq!(r.corrections.len(), 1);
        let day: Vec<_> = r.per_day.iter().filter(|d| d.emergency > 0).collect();
        assert_eq!(day.len(), 1);
        assert_eq!(day[0].false_calls, 5);
        // No number policy was used on these calls, and no attack was detected.
        assert_eq!(r.policies_applied.as_deref().map(<[_]>::len), Some(0));
        assert_eq!(r.attacks_detected.as_deref().map(<[_]>::len), Some(0));
        let table = render_table(&r);
        assert!(
            table.contains("false calls are emergency calls whose current class"),
            "{table}"
        );
        let csv = render_csv(&r);
        assert!(csv.contains("\ntotal,all,7,6,1,5,83.3\n"), "{csv}");
        assert!(
            csv.contains(",Sari,silent,prank,\"laughing, then hung up\"\n"),
            "{csv}"
        );
    }
}
