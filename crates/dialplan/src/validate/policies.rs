//! `[policies]`: every value checked and reported with file, line and what to change.

use std::time::Duration;

use toml::Spanned;

use super::{FileIndex, Merged, Validator};
use crate::diagnostic::Problem;
use crate::policy::{CallRate, Policies, limits, parse_list_duration};
use crate::raw::{RawPolicies, RawRate, Text};
use crate::time::parse_duration;

/// The shortest window a rate may count over: people's calling habits are counted over
/// minutes; an attack's rate may be counted over seconds, to notice it sooner.
#[derive(Debug, Clone, Copy)]
pub(super) enum RateWindow {
    Minutes,
    Seconds,
}

impl Validator<'_> {
    /// The plan's policies, or the defaults when it has no `[policies]`.
    pub(super) fn check_policies(&mut self, merged: &Merged) -> Option<Policies> {
        let Some((file, raw)) = &merged.policies else {
            return Some(Policies::default());
        };
        let (file, raw): (FileIndex, &RawPolicies) = (*file, raw.get_ref());
        let defaults = Policies::default();
        let repeat_caller = match raw.repeat_caller.as_ref() {
            None => Some(defaults.repeat_caller),
            // `calls = 0`: the repeat-caller path is off.
            Some(spanned) if *spanned.get_ref().calls.get_ref() == 0 => Some(None),
            Some(spanned) => self
                .check_rate(
                    file,
                    "[policies] repeat_caller",
                    spanned.get_ref(),
                    2..=100,
                    "0 (off) or 2 to 100",
                    RateWindow::Minutes,
                )
                .map(Some),
        };
        let block_override = match raw.block_override.as_ref() {
            None => Some(defaults.block_override),
            Some(spanned) => self.check_rate(
                file,
                "[policies] block_override",
                spanned.get_ref(),
                2..=limits::MAX_OVERRIDE_CALLS,
                "2 to 10: a blocked number in real trouble must not have to call more often",
                RateWindow::Minutes,
            ),
        };
        let warning_prompt = self.check_optional_prompt(
            file,
            "[policies] warning_prompt",
            raw.warning_prompt.as_ref(),
        );
        let blocked_prompt = self.check_optional_prompt(
            file,
            "[policies] blocked_prompt",
            raw.blocked_prompt.as_ref(),
        );
        let max_block = self.check_list_time(
            file,
            "max_block",
            raw.max_block.as_ref(),
            defaults.max_block,
        );
        let max_watch = self.check_list_time(
            file,
            "max_watch",
            raw.max_watch.as_ref(),
            defaults.max_watch,
        );
        let tracked_numbers = match &raw.tracked_numbers {
            None => Some(defaults.tracked_numbers),
            Some(value) => self.check_count(
                file,
                "[policies] tracked_numbers",
                value,
                limits::TRACKED,
                "100 to 1000000",
            ),
        };
        Some(Policies {
            repeat_caller: repeat_caller?,
            block_override: block_override?,
            warning_prompt: warning_prompt?,
            blocked_prompt: blocked_prompt?,
            max_block: max_block?,
            max_watch: max_watch?,
            tracked_numbers: tracked_numbers?,
        })
    }

    pub(super) fn check_rate(
        &mut self,
        file: FileIndex,
        place: &str,
        raw: &RawRate,
        calls: std::ops::RangeInclusive<u32>,
        allowed: &'static str,
        window: RateWindow,
    ) -> Option<CallRate> {
        let range = (*calls.start() as usize)..=(*calls.end() as usize);
        let count = self.check_count(file, &format!("{place} calls"), &raw.calls, range, allowed);
        let (shortest, allowed_windows, hint) = match window {
            RateWindow::Minutes => (
                Duration::from_secs(60),
                "1min to 1440min",
                "count calls over minutes, e.g. \"10min\"",
            ),
            RateWindow::Seconds => (
                Duration::from_secs(10),
                "10s to 1440min",
                "count calls over 10 s or more, e.g. \"10s\" or \"1min\"",
            ),
        };
        let within = match parse_duration(raw.within.get_ref()) {
            Ok(d) if !d.is_zero() && d >= shortest => Some(d),
            Ok(_) => {
                self.report(
                    file,
                    raw.within.span(),
                    Problem::BadValue {
                        place: format!("{place} within"),
                        value: raw.within.get_ref().clone(),
                        allowed: allowed_windows,
                    },
                    hint,
                );
                None
            }
            Err(reason) => {
                self.report(
                    file,
                    raw.within.span(),
                    Problem::BadDuration {
                        place: format!("{place} within"),
                        reason,
                    },
                    "write the window with a unit, e.g. \"10min\" (at most \"1440min\")",
                );
                None
            }
        };
        Some(CallRate {
            calls: count? as u32,
            within: within?,
        })
    }

    pub(super) fn check_count(
        &mut self,
        file: FileIndex,
        place: &str,
        value: &Spanned<i64>,
        range: std::ops::RangeInclusive<usize>,
        allowed: &'static str,
    ) -> Option<usize> {
        match usize::try_from(*value.get_ref()) {
            Ok(n) if range.contains(&n) => Some(n),
            _ => {
                self.report(
                    file,
                    value.span(),
                    Problem::BadValue {
                        place: place.to_owned(),
                        value: value.get_ref().to_string(),
                        allowed,
                    },
                    format!("write a whole number from {allowed}"),
                );
                None
            }
        }
    }

    fn check_list_time(
        &mut self,
        file: FileIndex,
        key: &str,
        text: Option<&Text>,
        default: Duration,
    ) -> Option<Duration> {
        let Some(text) = text else {
            return Some(default);
        };
        match parse_list_duration(text.get_ref()) {
            Ok(d) if d <= limits::MAX_LIST_TIME => Some(d),
            result => {
                self.report(
                    file,
                    text.span(),
                    Problem::BadValue {
                        place: format!("[policies] {key}"),
                        value: text.get_ref().clone(),
                        allowed: "1min to 90d",
                    },
                    match result {
                        Err(why) => why,
                        Ok(_) => "no list entry is permanent: at most \"90d\"".to_owned(),
                    },
                );
                None
            }
        }
    }
}
