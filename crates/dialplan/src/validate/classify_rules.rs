//! `[classify]`: the thresholds of the call-class rules. Every key is optional (the defaults
//! of [`ClassifyRules`]); a value that would make the rules class callers who speak or
//! press keys as false calls, or make every call a false call, is refused.

use std::time::Duration;

use toml::Spanned;

use super::{FileIndex, Validator};
use crate::call_class::ClassifyRules;
use crate::diagnostic::Problem;
use crate::raw::{RawClassify, Text};
use crate::time::format_duration;

/// A longer speech run would class a caller who only says a few words as noise.
const MAX_SPEECH_RUN: Duration = Duration::from_secs(3);
/// Above this share a caller who speaks a little would be called silent.
const MAX_SILENT_PERCENT: f64 = 20.0;
/// A caller still on the line after this is waiting for help, not abandoning.
const MAX_ABANDONED_WITHIN: Duration = Duration::from_secs(60);
/// The call log counts a number's earlier calls up to this many per window (a flooding
/// number cannot make the count cost more), so a higher threshold could never be met.
const MAX_REPEAT: u32 = 1000;

impl Validator<'_> {
    pub(super) fn check_classify(
        &mut self,
        table: Option<&(FileIndex, Spanned<RawClassify>)>,
    ) -> Option<ClassifyRules> {
        let defaults = ClassifyRules::default();
        let Some((file, raw)) = table else {
            return Some(defaults);
        };
        let (file, raw) = (*file, raw.get_ref());
        let mut ok = true;
        let silent_speech_below_percent = match &raw.silent_speech_below_percent {
            Some(value) => {
                let percent = *value.get_ref();
                if percent > 0.0 && percent <= MAX_SILENT_PERCENT {
                    percent
                } else {
                    ok = false;
                    self.report(
                        file,
                        value.span(),
                        Problem::BadValue {
                            place: "[classify] silent_speech_below_percent".into(),
                            value: percent.to_string(),
                            allowed: "a share above 0 and at most 20 (per cent)",
                        },
                        format!(
                            "a caller with more speech than this is not silent; the default is {}",
                            defaults.silent_speech_below_percent
                        ),
                    );
                    defaults.silent_speech_below_percent
                }
            }
            None => defaults.silent_speech_below_percent,
        };
        let mut duration = |key: &str, text: &Option<Text>, default: Duration, max: Duration| {
            let place = format!("[classify] {key}");
            let value = self.check_timeout(file, &place, text.as_ref(), default);
            match (value, text) {
                (Some(value), Some(text)) if value > max => {
                    self.report(
                        file,
                        text.span(),
                        Problem::BadValue {
                            place,
                            value: text.get_ref().clone(),
                            allowed: "a duration within the limit in the hint",
                        },
                        format!(
                            "at most \"{}\": more would class genuine callers as false calls; \
                             the default is \"{}\"",
                            format_duration(max),
                            format_duration(default)
                        ),
                    );
                    None
                }
                (value, _) => value,
            }
        };
        let speech_run = duration(
            "speech_run",
            &raw.speech_run,
            defaults.speech_run,
            MAX_SPEECH_RUN,
        );
        let abandoned_within = duration(
            "abandoned_within",
            &raw.abandoned_within,
            defaults.abandoned_within,
            MAX_ABANDONED_WITHIN,
        );
        let agency_talk_genuine = duration(
            "agency_talk_genuine",
            &raw.agency_talk_genuine,
            defaults.agency_talk_genuine,
            Duration::MAX,
        );
        let mut count = |key: &str, value: &Option<Spanned<i64>>, default: u32| match value {
            None => Some(default),
            Some(v) => match u32::try_from(*v.get_ref()) {
                Ok(n) if (1..=MAX_REPEAT).contains(&n) => Some(n),
                _ => {
                    self.report(
                        file,
                        v.span(),
                        Problem::BadValue {
                            place: format!("[classify] {key}"),
                            value: v.get_ref().to_string(),
                            allowed: "1 to 1000",
                        },
                        format!(
                            "the number of earlier calls from one number that makes a call a \
                             repeat (0 would make every call one; earlier calls are counted up to \
                             {MAX_REPEAT}); the default is {default}"
                        ),
                    );
                    None
                }
            },
        };
        let repeat_in_10_min = count(
            "repeat_in_10_min",
            &raw.repeat_in_10_min,
            defaults.repeat_in_10_min,
        );
        let repeat_in_hour = count(
            "repeat_in_hour",
            &raw.repeat_in_hour,
            defaults.repeat_in_hour,
        );
        let repeat_in_day = count("repeat_in_day", &raw.repeat_in_day, defaults.repeat_in_day);
        let rules = ClassifyRules {
            silent_speech_below_percent,
            speech_run: speech_run?,
            abandoned_within: abandoned_within?,
            agency_talk_genuine: agency_talk_genuine?,
            repeat_in_10_min: repeat_in_10_min?,
            repeat_in_hour: repeat_in_hour?,
            repeat_in_day: repeat_in_day?,
            location_is_genuine: raw
                .location_is_genuine
                .unwrap_or(defaults.location_is_genuine),
        };
        ok.then_some(rules)
    }
}
