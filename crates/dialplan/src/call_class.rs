//! Call classes (issue 12): what kind of call an ended call was, and why, from its measured
//! signals. Transparent rules, no score: each reason names its rule and the numbers that
//! made it match, so a supervisor can check it and a correction can say what was wrong.
//!
//! The rules run in a fixed order and the first that matches decides:
//!
//! 1. `test` — an RFC 6881 test call (`urn:service:test.sos`); it never reaches an agency.
//! 2. `genuine` — any sign of a real emergency: speech (a voiced run of at least
//!    `speech_run`: periodic at a voice's pitch, so loud steady noise is not speech),
//!    a key pressed, a location the caller's phone sent (unless `location_is_genuine` is
//!    off), or a call-taker on the line for at least `agency_talk_genuine`. These come
//!    before every false-call rule, so a genuine call is never classed as anything that
//!    lowers its priority.
//! 3. `repeat` — earlier calls from the same number reach `repeat_in_10_min`,
//!    `repeat_in_hour` or `repeat_in_day`.
//! 4. `abandoned` — the caller hung up within `abandoned_within` of the INVITE, before any
//!    agency answered.
//! 5. `silent` — caller speech below `silent_speech_below_percent` of the frames.
//! 6. `pocket_or_noise` — sound on the caller's side, but no voiced run long enough to be
//!    speech.
//! 7. otherwise `genuine`: no false-call rule matched (e.g. the voice was not measured).
//!
//! `prank` is only ever set by a person (a correction); no rule returns it.
//!
//! Pure: no clock and no IO; the thresholds come from the dialplan's `[classify]` table.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Bumped whenever a rule or its order changes: stored with every automatic class, so a
/// report can tell classes made by different rules apart. (The voiced run did not bump it: the
/// rules read it where the stored signals have it and the run of speech energy where they do
/// not, so a class still follows from its call's stored signals and these rules.)
pub const RULES_VERSION: u32 = 1;

/// What kind of call it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallClass {
    Genuine,
    Silent,
    Abandoned,
    PocketOrNoise,
    Repeat,
    Test,
    /// Set only by a person.
    Prank,
}

impl CallClass {
    pub const ALL: [CallClass; 7] = [
        CallClass::Genuine,
        CallClass::Silent,
        CallClass::Abandoned,
        CallClass::PocketOrNoise,
        CallClass::Repeat,
        CallClass::Test,
        CallClass::Prank,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallClass::Genuine => "genuine",
            CallClass::Silent => "silent",
            CallClass::Abandoned => "abandoned",
            CallClass::PocketOrNoise => "pocket_or_noise",
            CallClass::Repeat => "repeat",
            CallClass::Test => "test",
            CallClass::Prank => "prank",
        }
    }

    /// Counted in the false-call share: every class but `genuine` and `test`.
    pub fn is_false_call(self) -> bool {
        !matches!(self, CallClass::Genuine | CallClass::Test)
    }
}

impl fmt::Display for CallClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A class name that is not one of [`CallClass::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "\"{0}\" is not a call class (genuine, silent, abandoned, pocket_or_noise, repeat, test, prank)"
)]
pub struct UnknownClass(pub String);

impl std::str::FromStr for CallClass {
    type Err = UnknownClass;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CallClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownClass(s.to_owned()))
    }
}

/// The thresholds of the rules: the dialplan's `[classify]` table, these defaults where a
/// key (or the table) is absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifyRules {
    /// Below this share of the caller's frames with speech (and no speech run) a call is
    /// silent.
    pub silent_speech_below_percent: f64,
    /// A speech run at least this long is a person speaking: the call is genuine.
    pub speech_run: Duration,
    /// A caller who hangs up this soon after the INVITE, before any agency answered, abandoned
    /// the call.
    pub abandoned_within: Duration,
    /// A call-taker on the line at least this long took the call as real.
    pub agency_talk_genuine: Duration,
    /// This many earlier calls from the number in the 10 minutes before make a repeat call.
    pub repeat_in_10_min: u32,
    /// … in the hour before.
    pub repeat_in_hour: u32,
    /// … in the day before.
    pub repeat_in_day: u32,
    /// A location sent by the caller's phone (PIDF-LO) is a sign of a real emergency.
    pub location_is_genuine: bool,
}

impl Default for ClassifyRules {
    fn default() -> Self {
        ClassifyRules {
            silent_speech_below_percent: 2.0,
            // One spoken word ("tolong", ~500 ms) is a person: measured on the labelled
            // calls (benches/labelled_calls.sh), 800 ms classed such callers pocket_or_noise.
            speech_run: Duration::from_millis(400),
            abandoned_within: Duration::from_secs(20),
            agency_talk_genuine: Duration::from_secs(60),
            repeat_in_10_min: 2,
            repeat_in_hour: 3,
            repeat_in_day: 5,
            location_is_genuine: true,
        }
    }
}

impl ClassifyRules {
    /// Whether the caller's voice is that of a silent call: no frames at all, or no speech run
    /// long enough and speech in under `silent_speech_below_percent` of the frames. The
    /// `silent` class and the flood's count of silent short calls both ask this.
    pub fn voice_is_silent(&self, voice: &Voice) -> bool {
        voice.frames == 0
            || (voice.speech_run().0 < self.speech_run
                && (voice.speech_frames as f64) * 100.0
                    < self.silent_speech_below_percent * voice.frames as f64)
    }
}

/// What kind of number was dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialledKind {
    Emergency,
    /// An RFC 6881 test call.
    Test,
}

/// Who ended the call, from its end reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    /// The caller hung up or cancelled.
    Caller,
    /// The agency that had the caller hung up.
    Agency,
    /// The gateway (maximum length, shutdown, a restart after a crash).
    Gateway,
    /// The caller's network or phone was lost (no ACK, transport error, no answer to probes).
    Network,
}

/// The caller's voice on the caller's channel, as the media side measured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Voice {
    /// 20 ms frames received from the caller.
    pub frames: u64,
    /// Of those, frames with speech energy.
    pub speech_frames: u64,
    /// The longest run of speech energy.
    pub longest_run: Duration,
    /// The longest voiced run (speech energy periodic at a voice's pitch); `None`: measured
    /// before the meter heard voicing.
    pub longest_voiced_run: Option<Duration>,
}

impl Voice {
    /// The run the rules weigh, and what it is called in a reason: the longest voiced run (a
    /// person speaking, not only something loud), or for calls measured before the meter
    /// heard voicing, the longest run of speech energy.
    fn speech_run(&self) -> (Duration, &'static str) {
        match self.longest_voiced_run {
            Some(run) => (run, "voiced run"),
            None => (self.longest_run, "run"),
        }
    }
}

/// Calls from the same number before this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EarlierCalls {
    pub in_10_min: u32,
    pub in_hour: u32,
    pub in_day: u32,
}

/// What is known about an ended call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallFacts {
    pub dialled: DialledKind,
    /// From the INVITE to the end of the call.
    pub time_to_hang_up: Duration,
    pub ended_by: EndedBy,
    /// How long agencies were on the line; `None`: none answered.
    pub agency_talk: Option<Duration>,
    /// Keys the caller pressed.
    pub digits: u32,
    /// `None`: the media side never reported the caller's voice.
    pub voice: Option<Voice>,
    /// The caller sent a number (From or P-Asserted-Identity).
    pub usable_identity: bool,
    /// The caller's phone sent a location (PIDF-LO), not one derived from the cell or a default.
    pub caller_location: bool,
    /// `None` without a usable number to count by.
    pub earlier: Option<EarlierCalls>,
}

/// The rule a reason comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    TestCall,
    Speech,
    Keys,
    Location,
    AgencyTalk,
    Repeat,
    Abandoned,
    Silent,
    PocketOrNoise,
    /// No false-call rule matched.
    NoFalseCallRule,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::TestCall => "test_call",
            Rule::Speech => "speech",
            Rule::Keys => "keys",
            Rule::Location => "location",
            Rule::AgencyTalk => "agency_talk",
            Rule::Repeat => "repeat",
            Rule::Abandoned => "abandoned",
            Rule::Silent => "silent",
            Rule::PocketOrNoise => "pocket_or_noise",
            Rule::NoFalseCallRule => "no_false_call_rule",
        }
    }
}

/// One rule that matched, the class it points to and the numbers that made it match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub rule: Rule,
    /// The class this rule alone would give; only the first reason's decided.
    pub class: CallClass,
    pub detail: String,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule.as_str(), self.detail)
    }
}

/// The class and every rule that matched, the deciding one first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub class: CallClass,
    pub reasons: Vec<Reason>,
}

/// Classifies an ended call. Every rule that matches is given as a reason, the deciding one
/// first; false-call rules that a sign of a real emergency overruled are listed after it.
pub fn classify_call(facts: &CallFacts, rules: &ClassifyRules) -> Verdict {
    let reason = |rule, class, detail: String| Reason {
        rule,
        class,
        detail,
    };
    if facts.dialled == DialledKind::Test {
        return Verdict {
            class: CallClass::Test,
            reasons: vec![reason(
                Rule::TestCall,
                CallClass::Test,
                "dialled urn:service:test.sos (RFC 6881 test call)".to_owned(),
            )],
        };
    }
    let genuine: Vec<Reason> = genuine_signs(facts, rules)
        .into_iter()
        .map(|(rule, detail)| reason(rule, CallClass::Genuine, detail))
        .collect();
    let false_calls: Vec<Reason> = false_call_rules(facts, rules)
        .into_iter()
        .map(|(rule, class, detail)| reason(rule, class, detail))
        .collect();
    let class = match (genuine.first(), false_calls.first()) {
        (Some(_), _) | (None, None) => CallClass::Genuine,
        (None, Some(first)) => first.class,
    };
    let mut reasons = genuine;
    if reasons.is_empty() && false_calls.is_empty() {
        reasons.push(reason(
            Rule::NoFalseCallRule,
            CallClass::Genuine,
            no_rule_detail(facts),
        ));
    }
    reasons.extend(false_calls);
    Verdict { class, reasons }
}

/// Signs of a real emergency, each with its numbers.
fn genuine_signs(facts: &CallFacts, rules: &ClassifyRules) -> Vec<(Rule, String)> {
    let mut signs = Vec::new();
    // "Spoke": the run is a voiced one wherever the meter measured voicing.
    if let Some(voice) = facts.voice
        && let (run, _) = voice.speech_run()
        && run >= rules.speech_run
    {
        signs.push((
            Rule::Speech,
            format!(
                "caller spoke for {} in one run ≥ {} ({} of {} frames with speech)",
                ms(run),
                ms(rules.speech_run),
                percent(voice),
                thousands(voice.frames)
            ),
        ));
    }
    if facts.digits > 0 {
        signs.push((Rule::Keys, format!("{} key(s) pressed ≥ 1", facts.digits)));
    }
    if facts.caller_location && rules.location_is_genuine {
        signs.push((
            Rule::Location,
            "the caller's phone sent its location (PIDF-LO)".to_owned(),
        ));
    }
    if let Some(talk) = facts.agency_talk
        && talk >= rules.agency_talk_genuine
    {
        signs.push((
            Rule::AgencyTalk,
            format!(
                "an agency was on the line {} ≥ {}",
                secs(talk),
                secs(rules.agency_talk_genuine)
            ),
        ));
    }
    signs
}

/// Every false-call rule that matches, in rule order.
fn false_call_rules(facts: &CallFacts, rules: &ClassifyRules) -> Vec<(Rule, CallClass, String)> {
    let mut matched = Vec::new();
    if let Some(earlier) = facts.earlier {
        let windows = [
            ("10 min", earlier.in_10_min, rules.repeat_in_10_min),
            ("hour", earlier.in_hour, rules.repeat_in_hour),
            ("day", earlier.in_day, rules.repeat_in_day),
        ];
        if let Some((window, count, limit)) = windows.into_iter().find(|(_, n, l)| n >= l) {
            matched.push((
                Rule::Repeat,
                CallClass::Repeat,
                format!(
                    "{count} earlier call(s) from the number in the {window} before ≥ {limit} \
                     ({} in 10 min, {} in the hour, {} in the day)",
                    earlier.in_10_min, earlier.in_hour, earlier.in_day
                ),
            ));
        }
    }
    if facts.ended_by == EndedBy::Caller
        && facts.agency_talk.is_none()
        && facts.time_to_hang_up < rules.abandoned_within
    {
        matched.push((
            Rule::Abandoned,
            CallClass::Abandoned,
            format!(
                "caller hung up {} after the INVITE < {}, no agency answered",
                secs(facts.time_to_hang_up),
                secs(rules.abandoned_within)
            ),
        ));
    }
    if let Some(voice) = facts.voice
        && let (run, run_name) = voice.speech_run()
        && run < rules.speech_run
    {
        let quiet = rules.voice_is_silent(&voice);
        let no_key = if facts.digits == 0 { ", no key" } else { "" };
        let agency = match facts.agency_talk {
            None => "no agency talk".to_owned(),
            Some(t) => format!("agency on the line {}", secs(t)),
        };
        let numbers = format!(
            "caller speech {} of {} frames {} {} %, longest {run_name} {} < {}{no_key}, {agency}",
            percent(voice),
            thousands(voice.frames),
            if quiet { "<" } else { "≥" },
            trim_float(rules.silent_speech_below_percent),
            ms(run),
            ms(rules.speech_run),
        );
        if quiet {
            matched.push((Rule::Silent, CallClass::Silent, numbers));
        } else {
            matched.push((Rule::PocketOrNoise, CallClass::PocketOrNoise, numbers));
        }
    }
    matched
}

fn no_rule_detail(facts: &CallFacts) -> String {
    if facts.voice.is_none() {
        "the caller's voice was not measured and no other false-call rule matched; \
         without evidence a call counts as genuine"
            .to_owned()
    } else {
        "no false-call rule matched".to_owned()
    }
}

/// `0.4 %` of the frames, one decimal.
fn percent(voice: Voice) -> String {
    if voice.frames == 0 {
        return "0 %".to_owned();
    }
    let share = voice.speech_frames as f64 * 100.0 / voice.frames as f64;
    format!("{} %", trim_float((share * 10.0).round() / 10.0))
}

/// `2`, `0.5`: a float without a trailing `.0`.
fn trim_float(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

/// `1,240`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{} ms", thousands(d.as_millis() as u64))
}

/// `12.3 s`: cut, not rounded, so a value just under a threshold never reads as equal to it.
fn secs(d: Duration) -> String {
    format!("{} s", trim_float((d.as_millis() / 100) as f64 / 10.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rules' mechanics at a round threshold (the default is 400 ms).
    fn rules_800() -> ClassifyRules {
        ClassifyRules {
            speech_run: Duration::from_millis(800),
            ..ClassifyRules::default()
        }
    }
    const RULES: fn() -> ClassifyRules = rules_800;

    /// An answered emergency call the caller ended after 40 s, in which the caller said
    /// nothing (frames measured, no speech) and pressed nothing; first call from its number.
    fn quiet_call() -> CallFacts {
        CallFacts {
            dialled: DialledKind::Emergency,
            time_to_hang_up: Duration::from_secs(40),
            ended_by: EndedBy::Caller,
            agency_talk: None,
            digits: 0,
            voice: Some(Voice {
                frames: 1_240,
                speech_frames: 5,
                longest_run: Duration::ZERO,
                longest_voiced_run: None,
            }),
            usable_identity: true,
            caller_location: false,
            earlier: Some(EarlierCalls::default()),
        }
    }

    fn talking(mut facts: CallFacts, run_ms: u64) -> CallFacts {
        facts.voice = Some(Voice {
            frames: 1_240,
            speech_frames: 600,
            longest_run: Duration::from_millis(run_ms),
            longest_voiced_run: None,
        });
        facts
    }

    fn class(facts: &CallFacts) -> CallClass {
        classify_call(facts, &RULES()).class
    }

    fn rules_of(verdict: &Verdict) -> Vec<Rule> {
        verdict.reasons.iter().map(|r| r.rule).collect()
    }

    #[test]
    fn a_quiet_call_is_silent_with_its_numbers() {
        let verdict = classify_call(&quiet_call(), &RULES());
        assert_eq!(verdict.class, CallClass::Silent);
        assert_eq!(
            verdict.reasons[0].to_string(),
            "silent: caller speech 0.4 % of 1,240 frames < 2 %, longest run 0 ms < 800 ms, \
             no key, no agency talk"
        );
    }

    #[test]
    fn a_caller_sending_no_audio_at_all_is_silent() {
        let mut facts = quiet_call();
        facts.voice = Some(Voice {
            frames: 0,
            speech_frames: 0,
            longest_run: Duration::ZERO,
            longest_voiced_run: None,
        });
        assert_eq!(class(&facts), CallClass::Silent);
    }

    #[test]
    fn the_silent_share_boundary_is_strict() {
        // 2 % of 1,000 frames is 20: 19 is silent, 20 is sound (noise without a speech run).
        let mut facts = quiet_call();
        let voice = |speech_frames| Voice {
            frames: 1_000,
            speech_frames,
            longest_run: Duration::from_millis(300),
            longest_voiced_run: None,
        };
        facts.voice = Some(voice(19));
        assert_eq!(class(&facts), CallClass::Silent);
        facts.voice = Some(voice(20));
        assert_eq!(class(&facts), CallClass::PocketOrNoise);
    }

    #[test]
    fn sound_without_a_speech_run_is_pocket_or_noise() {
        let verdict = classify_call(&talking(quiet_call(), 799), &RULES());
        assert_eq!(verdict.class, CallClass::PocketOrNoise);
        assert_eq!(
            verdict.reasons[0].to_string(),
            "pocket_or_noise: caller speech 48.4 % of 1,240 frames ≥ 2 %, longest run 799 ms \
             < 800 ms, no key, no agency talk"
        );
    }

    #[test]
    fn a_speech_run_at_the_threshold_is_genuine() {
        let verdict = classify_call(&talking(quiet_call(), 800), &RULES());
        assert_eq!(verdict.class, CallClass::Genuine);
        assert_eq!(
            verdict.reasons[0].to_string(),
            "speech: caller spoke for 800 ms in one run ≥ 800 ms (48.4 % of 1,240 frames with speech)"
        );
    }

    #[test]
    fn a_key_makes_a_quiet_call_genuine_and_the_overruled_rule_is_still_shown() {
        let mut facts = quiet_call();
        facts.digits = 1;
        let verdict = classify_call(&facts, &RULES());
        assert_eq!(verdict.class, CallClass::Genuine);
        assert_eq!(rules_of(&verdict), vec![Rule::Keys, Rule::Silent]);
        assert_eq!(verdict.reasons[0].detail, "1 key(s) pressed ≥ 1");
        assert_eq!(verdict.reasons[1].class, CallClass::Silent);
    }

    #[test]
    fn a_caller_location_is_genuine_unless_the_plan_says_otherwise() {
        let mut facts = quiet_call();
        facts.caller_location = true;
        assert_eq!(class(&facts), CallClass::Genuine);
        let rules = ClassifyRules {
            location_is_genuine: false,
            ..RULES()
        };
        assert_eq!(classify_call(&facts, &rules).class, CallClass::Silent);
    }

    #[test]
    fn a_long_agency_talk_is_genuine_a_short_one_is_not() {
        let mut facts = quiet_call();
        facts.ended_by = EndedBy::Agency;
        facts.agency_talk = Some(Duration::from_secs(60));
        let verdict = classify_call(&facts, &RULES());
        assert_eq!(verdict.class, CallClass::Genuine);
        assert_eq!(
            verdict.reasons[0].to_string(),
            "agency_talk: an agency was on the line 60 s ≥ 60 s"
        );
        facts.agency_talk = Some(Duration::from_millis(59_999));
        let verdict = classify_call(&facts, &RULES());
        assert_eq!(verdict.class, CallClass::Silent);
        assert!(
            verdict.reasons[0]
                .detail
                .ends_with("agency on the line 59.9 s"),
            "{}",
            verdict.reasons[0]
        );
    }

    #[test]
    fn a_quick_hang_up_before_any_agency_is_abandoned() {
        let mut facts = quiet_call();
        facts.time_to_hang_up = Duration::from_millis(19_999);
        let verdict = classify_call(&facts, &RULES());
        assert_eq!(verdict.class, CallClass::Abandoned);
        assert_eq!(
            verdict.reasons[0].to_string(),
            "abandoned: caller hung up 19.9 s after the INVITE < 20 s, no agency answered"
        );
        // Also silent, listed after.
        assert_eq!(rules_of(&verdict), vec![Rule::Abandoned, Rule::Silent]);
        facts.time_to_hang_up = Duration::from_secs(20);
        assert_eq!(class(&facts), CallClass::Silent);
    }

    #[test]
    fn only_the_caller_abandons_and_only_before_an_agency() {
        let mut facts = quiet_call();
        facts.time_to_hang_up = Duration::from_secs(3);
        for ended_by in [EndedBy::Agency, EndedBy::Gateway, EndedBy::Network] {
            facts.ended_by = ended_by;
            assert_eq!(class(&facts), CallClass::Silent, "{ended_by:?}");
        }
        facts.ended_by = EndedBy::Caller;
        facts.agency_talk = Some(Duration::from_secs(1));
        assert_eq!(class(&facts), CallClass::Silent);
    }

    #[test]
    fn a_quick_hang_up_with_speech_or_keys_is_genuine() {
        let mut facts = talking(quiet_call(), 2_000);
        facts.time_to_hang_up = Duration::from_secs(5);
        assert_eq!(class(&facts), CallClass::Genuine);
        let mut facts = quiet_call();
        facts.time_to_hang_up = Duration::from_secs(5);
        facts.digits = 2;
        assert_eq!(class(&facts), CallClass::Genuine);
    }

    #[test]
    fn repeat_thresholds_per_window() {
        let rules = RULES();
        let at = |in_10_min, in_hour, in_day| {
            let mut facts = quiet_call();
            facts.earlier = Some(EarlierCalls {
                in_10_min,
                in_hour,
                in_day,
            });
            class(&facts)
        };
        assert_eq!(at(rules.repeat_in_10_min, 2, 2), CallClass::Repeat);
        assert_eq!(at(rules.repeat_in_10_min - 1, 1, 1), CallClass::Silent);
        assert_eq!(at(0, rules.repeat_in_hour, 3), CallClass::Repeat);
        assert_eq!(at(0, rules.repeat_in_hour - 1, 2), CallClass::Silent);
        assert_eq!(at(0, 0, rules.repeat_in_day), CallClass::Repeat);
        assert_eq!(at(0, 0, rules.repeat_in_day - 1), CallClass::Silent);
    }

    #[test]
    fn repeat_comes_before_abandoned_and_names_the_window() {
        let mut facts = quiet_call();
        facts.time_to_hang_up = Duration::from_secs(2);
        facts.earlier = Some(EarlierCalls {
            in_10_min: 2,
            in_hour: 2,
            in_day: 4,
        });
        let verdict = classify_call(&facts, &RULES());
        assert_eq!(verdict.class, CallClass::Repeat);
        assert_eq!(
            rules_of(&verdict),
            vec![Rule::Repeat, Rule::Abandoned, Rule::Silent]
        );
        assert_eq!(
            verdict.reasons[0].detail,
            "2 earlier call(s) from the number in the 10 min before ≥ 2 \
             (2 in 10 min, 2 in the hour, 4 in the day)"
        );
    }

    #[test]
    fn a_repeat_caller_who_speaks_is_genuine() {
        let mut facts = talking(quiet_call(), 5_000);
        facts.earlier = Some(EarlierCalls {
            in_10_min: 9,
            in_hour: 9,
            in_day: 9,
        });
        let verdict = classify_call(&facts, &RULES());
        assert_eq!(verdict.class, CallClass::Genuine);
        assert_eq!(rules_of(&verdict), vec![Rule::Speech, Rule::Repeat]);
    }

    #[test]
    fn without_a_number_there_is_no_repeat() {
        let mut facts = quiet_call();
        facts.usable_identity = false;
        facts.earlier = None;
        assert_eq!(class(&facts), CallClass::Silent);
    }

    #[test]
    fn an_unmeasured_voice_is_genuine_unless_another_rule_matches() {
        let mut facts = quiet_call();
        facts.voice = None;
        let verdict = classify_call(&facts, &RULES());
        assert_eq!(verdict.class, CallClass::Genuine);
        assert_eq!(rules_of(&verdict), vec![Rule::NoFalseCallRule]);
        facts.time_to_hang_up = Duration::from_secs(1);
        assert_eq!(class(&facts), CallClass::Abandoned);
    }

    #[test]
    fn a_test_call_is_test_whatever_else_happened() {
        let mut facts = talking(quiet_call(), 5_000);
        facts.dialled = DialledKind::Test;
        facts.digits = 3;
        let verdict = classify_call(&facts, &RULES());
        assert_eq!(verdict.class, CallClass::Test);
        assert_eq!(rules_of(&verdict), vec![Rule::TestCall]);
    }

    /// Every combination of signs: whenever one sign of a real emergency is present, the
    /// class is genuine; no rule ever says prank.
    #[test]
    fn no_genuine_sign_is_ever_overruled_and_no_rule_says_prank() {
        let voices = [
            None,
            Some((0, 0, 0)),
            Some((1_000, 5, 100)),
            Some((1_000, 400, 700)),
            Some((1_000, 400, 2_000)),
        ];
        for voice in voices {
            for digits in [0, 1] {
                for caller_location in [false, true] {
                    for talk in [None, Some(5), Some(90)] {
                        for hang_up in [2, 40] {
                            for earlier in [0, 9] {
                                let facts = CallFacts {
                                    dialled: DialledKind::Emergency,
                                    time_to_hang_up: Duration::from_secs(hang_up),
                                    ended_by: EndedBy::Caller,
                                    agency_talk: talk.map(Duration::from_secs),
                                    digits,
                                    voice: voice.map(|(frames, speech_frames, run)| Voice {
                                        frames,
                                        speech_frames,
                                        longest_run: Duration::from_millis(run),
                                        longest_voiced_run: None,
                                    }),
                                    usable_identity: true,
                                    caller_location,
                                    earlier: Some(EarlierCalls {
                                        in_10_min: earlier,
                                        in_hour: earlier,
                                        in_day: earlier,
                                    }),
                                };
                                let verdict = classify_call(&facts, &RULES());
                                let sign = digits > 0
                                    || caller_location
                                    || talk == Some(90)
                                    || voice.is_some_and(|(_, _, run)| run >= 800);
                                assert_ne!(verdict.class, CallClass::Prank);
                                if sign {
                                    assert_eq!(verdict.class, CallClass::Genuine, "{facts:?}");
                                }
                                assert_eq!(
                                    verdict.reasons.first().map(|r| r.class),
                                    Some(verdict.class),
                                    "the first reason decides: {verdict:?}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn class_names_read_back() {
        for class in CallClass::ALL {
            assert_eq!(class.as_str().parse::<CallClass>(), Ok(class));
        }
        assert!("hoax".parse::<CallClass>().is_err());
        assert!(!CallClass::Genuine.is_false_call());
        assert!(!CallClass::Test.is_false_call());
        assert!(CallClass::Prank.is_false_call());
    }

    #[test]
    fn numbers_are_written_for_people() {
        assert_eq!(thousands(1_240), "1,240");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(secs(Duration::from_millis(12_390)), "12.3 s");
        assert_eq!(secs(Duration::from_secs(60)), "60 s");
    }

    #[test]
    fn loud_noise_without_a_voiced_run_is_pocket_or_noise() {
        // Steady loud noise: seconds of speech energy while the meter's floor rises to it,
        // but nothing periodic at a voice's pitch.
        let mut facts = quiet_call();
        facts.voice = Some(Voice {
            frames: 1_250,
            speech_frames: 310,
            longest_run: Duration::from_millis(6_200),
            longest_voiced_run: Some(Duration::ZERO),
        });
        let verdict = classify_call(&facts, &RULES());
        assert_eq!(verdict.class, CallClass::PocketOrNoise);
        assert_eq!(
            verdict.reasons[0].to_string(),
            "pocket_or_noise: caller speech 24.8 % of 1,250 frames ≥ 2 %, longest voiced run \
             0 ms < 800 ms, no key, no agency talk"
        );
    }

    #[test]
    fn a_voiced_run_at_the_threshold_is_genuine() {
        let mut facts = quiet_call();
        let voice = |voiced_ms| Voice {
            frames: 1_000,
            speech_frames: 40,
            longest_run: Duration::from_millis(900),
            longest_voiced_run: Some(Duration::from_millis(voiced_ms)),
        };
        facts.voice = Some(voice(780));
        assert_eq!(class(&facts), CallClass::PocketOrNoise);
        facts.voice = Some(voice(800));
        let verdict = classify_call(&facts, &RULES());
        assert_eq!(verdict.class, CallClass::Genuine);
        assert_eq!(
            verdict.reasons[0].to_string(),
            "speech: caller spoke for 800 ms in one run ≥ 800 ms (4 % of 1,000 frames with \
             speech)"
        );
    }
}
