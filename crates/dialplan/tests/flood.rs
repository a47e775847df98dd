//! `[flood]`: defaults without the table, every value checked with file, line and a hint, and
//! the shipped plan's challenge.

mod common;

use std::time::Duration;

use common::{SMALL_PLAN, assert_only_error_at, check, default_plan};
use siaga_dialplan::{CallRate, ChallengeScope, FloodRules, PromptName};

fn with_flood(table: &str) -> String {
    format!("{SMALL_PLAN}\n[flood]\n{table}\n")
}

#[test]
fn a_plan_without_flood_gets_the_defaults() {
    let plan = check(SMALL_PLAN).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.flood(), &FloodRules::default());
    assert_eq!(
        FloodRules::default().challenge_prompt,
        None,
        "no challenge unless the plan names its prompt"
    );
}

#[test]
fn every_key_is_read() {
    let plan = check(&with_flood(
        r#"attack_calls = { calls = 300, within = "2min" }
attack_silent = { calls = 0, within = "1min" }
calm_for = "10min"
number_limit = { calls = 3, within = "30min" }
source_limit = { calls = 50, within = "1min" }
challenge = "all"
challenge_prompt = "misuse-warning"
challenge_timeout = "8s"
tracked = 2000"#,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let f = plan.flood();
    assert_eq!(
        f.attack_calls,
        Some(CallRate {
            calls: 300,
            within: Duration::from_secs(120)
        })
    );
    assert_eq!(f.attack_silent, None, "calls = 0 turns it off");
    assert_eq!(f.calm_for, Duration::from_secs(600));
    assert_eq!(f.number_limit.calls, 3);
    assert_eq!(f.source_limit.calls, 50);
    assert_eq!(f.scope, ChallengeScope::All);
    assert_eq!(f.challenge_prompt, Some(PromptName::new("misuse-warning")));
    assert_eq!(f.challenge_timeout, Duration::from_secs(8));
    assert_eq!(f.tracked, 2000);
}

#[test]
fn bad_values_are_reported_with_their_line_and_what_to_change() {
    for (table, needle, message) in [
        (
            "challenge = \"everyone\"",
            "challenge",
            "[flood] challenge is \"everyone\", which is not one of over_limit or all",
        ),
        (
            "challenge_timeout = \"2min\"",
            "challenge_timeout",
            "[flood] challenge_timeout is \"2min\", which is not one of 3s to 60s",
        ),
        (
            "attack_calls = { calls = 1, within = \"1min\" }",
            "attack_calls",
            "[flood] attack_calls calls is \"1\", which is not one of 0 (off) or 2 to 100000",
        ),
        (
            "number_limit = { calls = 0, within = \"10min\" }",
            "number_limit",
            "[flood] number_limit calls is \"0\", which is not one of 1 to 10000",
        ),
        (
            "calm_for = \"10s\"",
            "calm_for",
            "[flood] calm_for is \"10s\", which is not one of 1min to 1440min",
        ),
        (
            "attack_calls = { calls = 50, within = \"5s\" }",
            "attack_calls",
            "[flood] attack_calls within is \"5s\", which is not one of 10s to 1440min",
        ),
        (
            "source_limit = { calls = 5, within = \"10s\" }",
            "source_limit",
            "[flood] source_limit within is \"10s\", which is not one of 1min to 1440min",
        ),
    ] {
        assert_only_error_at(&with_flood(table), needle, message);
    }
}

#[test]
fn the_default_plan_challenges_callers_beyond_their_limits_under_attack() {
    let plan = default_plan().unwrap_or_else(|e| panic!("{e}"));
    let f = plan.flood();
    assert_eq!(f.challenge_prompt, Some(PromptName::new("challenge")));
    assert_eq!(f.scope, ChallengeScope::OverLimit);
}

#[test]
fn an_attack_level_may_count_over_seconds_to_notice_a_flood_sooner() {
    let plan = check(&with_flood(
        r#"attack_calls = { calls = 150, within = "10s" }"#,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        plan.flood().attack_calls,
        Some(CallRate {
            calls: 150,
            within: Duration::from_secs(10)
        })
    );
}

#[test]
fn challenge_prompt_none_detects_attacks_and_challenges_no_one() {
    let plan = check(&with_flood(r#"challenge_prompt = "none""#)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.flood().challenge_prompt, None);
}
