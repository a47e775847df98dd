//! The `[classify]` table: defaults when absent, the shipped plan's values, and every bad
//! value reported with its file, line and what to change.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{PLAN_PATH, SMALL_PLAN, check, errors, line_of};
use siaga_dialplan::{ClassifyRules, Source, validate};

fn with_classify(body: &str) -> String {
    format!("{SMALL_PLAN}\n[classify]\n{body}\n")
}

#[test]
fn a_plan_without_the_table_uses_the_defaults() {
    let plan = check(SMALL_PLAN).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.classify_rules(), &ClassifyRules::default());
}

#[test]
fn the_default_plan_states_the_defaults() {
    let plan = common::default_plan().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.classify_rules(), &ClassifyRules::default());
}

#[test]
fn every_key_is_read() {
    let plan = check(&with_classify(
        "speech_run = \"1500ms\"\nsilent_speech_below_percent = 1\nabandoned_within = \"10s\"\n\
         agency_talk_genuine = \"2min\"\nrepeat_in_10_min = 3\nrepeat_in_hour = 4\n\
         repeat_in_day = 6\nlocation_is_genuine = false",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        plan.classify_rules(),
        &ClassifyRules {
            silent_speech_below_percent: 1.0,
            speech_run: Duration::from_millis(1500),
            abandoned_within: Duration::from_secs(10),
            agency_talk_genuine: Duration::from_secs(120),
            repeat_in_10_min: 3,
            repeat_in_hour: 4,
            repeat_in_day: 6,
            location_is_genuine: false,
        }
    );
}

#[test]
fn bad_values_are_all_reported_with_their_lines_and_hints() {
    let plan = with_classify(
        "speech_run = \"5s\"\nsilent_speech_below_percent = 0\nabandoned_within = \"20\"\n\
         agency_talk_genuine = \"0s\"\nrepeat_in_10_min = 0",
    );
    let all = errors(&plan);
    let shown: Vec<String> = all.iter().map(ToString::to_string).collect();
    assert_eq!(all.len(), 5, "{shown:#?}");
    for (diagnostic, (key, message)) in all.iter().zip([
        (
            "speech_run",
            "[classify] speech_run is \"5s\", which is not one of a duration within the limit in the hint",
        ),
        (
            "silent_speech_below_percent",
            "[classify] silent_speech_below_percent is \"0\", which is not one of a share above 0 and at most 20 (per cent)",
        ),
        (
            "abandoned_within",
            "[classify] abandoned_within: \"20\" is not a duration",
        ),
        ("agency_talk_genuine", "[classify] agency_talk_genuine is zero"),
        (
            "repeat_in_10_min",
            "[classify] repeat_in_10_min is \"0\", which is not one of 1 to 1000",
        ),
    ]) {
        let location = diagnostic.location.as_ref().expect("a location");
        assert_eq!(location.file, Path::new(PLAN_PATH));
        assert_eq!(location.line, line_of(&plan, key), "{diagnostic}");
        assert!(
            diagnostic.problem.to_string().starts_with(message)
                || diagnostic.problem.to_string() == message,
            "{diagnostic}"
        );
        assert!(diagnostic.hint.is_some(), "{diagnostic}");
    }
    assert!(shown[0].contains("at most \"3s\""), "{}", shown[0]);
}

#[test]
fn unknown_keys_and_a_second_table_are_errors() {
    let plan = with_classify("speech_runs = \"1s\"");
    let all = errors(&plan);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(all[0].to_string().contains("speech_runs"), "{}", all[0]);

    let second = "[classify]\nrepeat_in_day = 9\n";
    let result = validate(
        &[
            Source::new(PLAN_PATH, with_classify("repeat_in_day = 5")),
            Source::new("dialplans/more.toml", second),
        ],
        &common::every_prompt_exists,
    );
    let all = result.expect_err("two [classify] tables").diagnostics;
    assert_eq!(all.len(), 1, "{all:#?}");
    let text = all[0].to_string();
    assert!(
        text.starts_with("dialplans/more.toml:1: error: table \"[classify]\" is defined a second time (first at dialplans/test.toml:"),
        "{text}"
    );
}
