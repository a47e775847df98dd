//! `[flood]`: every value checked and reported with file, line and what to change.

use std::time::Duration;

use super::policies::RateWindow;
use super::{FileIndex, Merged, Validator};
use crate::diagnostic::Problem;
use crate::flood::{ChallengeScope, FloodRules};
use crate::raw::{RawFlood, RawRate, Text};
use crate::time::parse_duration;

impl Validator<'_> {
    /// The plan's flood rules, or the defaults when it has no `[flood]`.
    pub(super) fn check_flood(&mut self, merged: &Merged) -> Option<FloodRules> {
        let Some((file, raw)) = &merged.flood else {
            return Some(FloodRules::default());
        };
        let (file, raw): (FileIndex, &RawFlood) = (*file, raw.get_ref());
        let defaults = FloodRules::default();
        let level = |v: &mut Self, key: &str, raw: Option<&toml::Spanned<RawRate>>, default| {
            match raw {
                None => Some(default),
                // `calls = 0`: this rate does not start an attack.
                Some(spanned) if *spanned.get_ref().calls.get_ref() == 0 => Some(None),
                Some(spanned) => v
                    .check_rate(
                        file,
                        &format!("[flood] {key}"),
                        spanned.get_ref(),
                        2..=100_000,
                        "0 (off) or 2 to 100000",
                        RateWindow::Seconds,
                    )
                    .map(Some),
            }
        };
        let attack_calls = level(
            self,
            "attack_calls",
            raw.attack_calls.as_ref(),
            defaults.attack_calls,
        );
        let attack_silent = level(
            self,
            "attack_silent",
            raw.attack_silent.as_ref(),
            defaults.attack_silent,
        );
        let limit =
            |v: &mut Self, key: &str, raw: Option<&toml::Spanned<RawRate>>, default| match raw {
                None => Some(default),
                Some(spanned) => v.check_rate(
                    file,
                    &format!("[flood] {key}"),
                    spanned.get_ref(),
                    1..=10_000,
                    "1 to 10000",
                    RateWindow::Minutes,
                ),
            };
        let number_limit = limit(
            self,
            "number_limit",
            raw.number_limit.as_ref(),
            defaults.number_limit,
        );
        let source_limit = limit(
            self,
            "source_limit",
            raw.source_limit.as_ref(),
            defaults.source_limit,
        );
        let calm_for = self.check_flood_time(
            file,
            "calm_for",
            raw.calm_for.as_ref(),
            defaults.calm_for,
            Duration::from_secs(60)..=Duration::from_secs(24 * 3600),
            "1min to 1440min",
        );
        let challenge_timeout = self.check_flood_time(
            file,
            "challenge_timeout",
            raw.challenge_timeout.as_ref(),
            defaults.challenge_timeout,
            Duration::from_secs(3)..=Duration::from_secs(60),
            "3s to 60s",
        );
        let scope = match raw.challenge.as_ref() {
            None => Some(defaults.scope),
            Some(text) => match text.get_ref().as_str() {
                "over_limit" => Some(ChallengeScope::OverLimit),
                "all" => Some(ChallengeScope::All),
                other => {
                    self.report(
                        file,
                        text.span(),
                        Problem::BadValue {
                            place: "[flood] challenge".into(),
                            value: other.to_owned(),
                            allowed: "over_limit or all",
                        },
                        "write \"over_limit\" (numbers and sources beyond their limits) or \"all\" (every new call that is not exempt)",
                    );
                    None
                }
            },
        };
        let challenge_prompt = self.check_optional_prompt(
            file,
            "[flood] challenge_prompt",
            raw.challenge_prompt.as_ref(),
        );
        let tracked = match &raw.tracked {
            None => Some(defaults.tracked),
            Some(value) => self.check_count(
                file,
                "[flood] tracked",
                value,
                100..=1_000_000,
                "100 to 1000000",
            ),
        };
        Some(FloodRules {
            attack_calls: attack_calls?,
            attack_silent: attack_silent?,
            calm_for: calm_for?,
            number_limit: number_limit?,
            source_limit: source_limit?,
            scope: scope?,
            challenge_prompt: challenge_prompt?,
            challenge_timeout: challenge_timeout?,
            tracked: tracked?,
        })
    }

    fn check_flood_time(
        &mut self,
        file: FileIndex,
        key: &str,
        text: Option<&Text>,
        default: Duration,
        range: std::ops::RangeInclusive<Duration>,
        allowed: &'static str,
    ) -> Option<Duration> {
        let Some(text) = text else {
            return Some(default);
        };
        match parse_duration(text.get_ref()) {
            Ok(d) if range.contains(&d) => Some(d),
            result => {
                self.report(
                    file,
                    text.span(),
                    Problem::BadValue {
                        place: format!("[flood] {key}"),
                        value: text.get_ref().clone(),
                        allowed,
                    },
                    match result {
                        Err(why) => format!("{why}; write e.g. \"10s\" or \"5min\""),
                        Ok(_) => format!("write a time from {allowed}"),
                    },
                );
                None
            }
        }
    }
}
