//! `[policies]`: defaults without the table, every value checked with file, line and a hint,
//! and the shipped plan's policies.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    PLAN_PATH, SMALL_PLAN, assert_only_error_at, check, default_plan, errors, line_of, only_error,
};
use siaga_dialplan::{CallRate, Policies, PromptName, Source, validate};

fn with_policies(table: &str) -> String {
    format!("{SMALL_PLAN}\n[policies]\n{table}\n")
}

#[test]
fn a_plan_without_policies_gets_the_defaults() {
    let plan = check(SMALL_PLAN).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.policies(), &Policies::default());
    let d = Policies::default();
    assert_eq!(d.repeat_caller, None, "the repeat-caller path is opt-in");
    assert_eq!(d.block_override.calls, 3);
    assert_eq!(d.max_block, Duration::from_secs(7 * 86_400));
}

#[test]
fn every_key_is_read() {
    let plan = check(&with_policies(
        r#"repeat_caller = { calls = 4, within = "30min" }
block_override = { calls = 2, within = "5min" }
warning_prompt = "misuse-warning"
blocked_prompt = "number-blocked"
max_block = "2d"
max_watch = "12h"
tracked_numbers = 500"#,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let p = plan.policies();
    assert_eq!(
        p.repeat_caller,
        Some(CallRate {
            calls: 4,
            within: Duration::from_secs(1800)
        })
    );
    assert_eq!(
        p.block_override,
        CallRate {
            calls: 2,
            within: Duration::from_secs(300)
        }
    );
    assert_eq!(p.warning_prompt, Some(PromptName::new("misuse-warning")));
    assert_eq!(p.blocked_prompt, Some(PromptName::new("number-blocked")));
    assert_eq!(p.max_block, Duration::from_secs(2 * 86_400));
    assert_eq!(p.max_watch, Duration::from_secs(12 * 3600));
    assert_eq!(p.tracked_numbers, 500);
    let off = check(&with_policies(
        "repeat_caller = { calls = 0, within = \"10min\" }",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(off.policies().repeat_caller, None);
}

#[test]
fn bad_values_are_reported_with_their_line_and_what_to_change() {
    for (table, needle, message) in [
        (
            "block_override = { calls = 50, within = \"10min\" }",
            "block_override",
            "[policies] block_override calls is \"50\", which is not one of 2 to 10: a blocked number in real trouble must not have to call more often",
        ),
        (
            "repeat_caller = { calls = 1, within = \"10min\" }",
            "repeat_caller",
            "[policies] repeat_caller calls is \"1\", which is not one of 0 (off) or 2 to 100",
        ),
        (
            "repeat_caller = { calls = 5, within = \"30s\" }",
            "repeat_caller",
            "[policies] repeat_caller within is \"30s\", which is not one of 1min to 1440min",
        ),
        (
            "max_block = \"365d\"",
            "max_block",
            "[policies] max_block is \"365d\", which is not one of 1min to 90d",
        ),
        (
            "max_watch = \"2 weeks\"",
            "max_watch",
            "[policies] max_watch is \"2 weeks\", which is not one of 1min to 90d",
        ),
        (
            "tracked_numbers = 5",
            "tracked_numbers",
            "[policies] tracked_numbers is \"5\", which is not one of 100 to 1000000",
        ),
        (
            "warning_prompt = \"../etc/passwd\"",
            "warning_prompt",
            "[policies] warning_prompt: \"../etc/passwd\" is not a prompt name (letters, digits, '-' and '_' only)",
        ),
    ] {
        assert_only_error_at(&with_policies(table), needle, message);
    }
}

#[test]
fn unknown_keys_and_every_mistake_at_once() {
    let plan = with_policies("max_blok = \"2d\"");
    let error = only_error(&plan);
    assert_eq!(
        error.location.map(|l| l.line),
        Some(line_of(&plan, "max_blok"))
    );
    let plan = with_policies("max_block = \"0d\"\nmax_watch = \"5y\"\ntracked_numbers = -1");
    assert_eq!(errors(&plan).len(), 3);
}

#[test]
fn policy_prompts_must_exist_in_every_language() {
    let plan = with_policies("warning_prompt = \"misuse-warning\"");
    let result = validate(&[Source::new(PLAN_PATH, plan.as_str())], &|path: &Path| {
        !path.ends_with("en/misuse-warning.wav")
    });
    let errors = result.expect_err("a missing prompt").diagnostics;
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .to_string()
            .contains("[policies] warning_prompt: prompt file"),
        "{}",
        errors[0]
    );
}

#[test]
fn the_default_plan_warns_and_announces_blocks() {
    let plan = default_plan().unwrap_or_else(|e| panic!("{e}"));
    let p = plan.policies();
    assert_eq!(p.warning_prompt, Some(PromptName::new("misuse-warning")));
    assert_eq!(p.blocked_prompt, Some(PromptName::new("number-blocked")));
    assert_eq!(plan.centre().country_code.as_deref(), Some("62"));
}

#[test]
fn prompt_none_means_no_announcement() {
    let plan = check(&with_policies(
        "warning_prompt = \"none\"\nblocked_prompt = \"none\"",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.policies().warning_prompt, None);
    assert_eq!(plan.policies().blocked_prompt, None);
}
