//! Policies for callers' numbers (issue 12): who is warned, who waits behind others, who is
//! blocked — and why a blocked number still reaches a person. Pure: the lists are a snapshot
//! the shell hands in, and every decision takes the time as an argument.
//!
//! - [`CallerNumber`]: one form per number (`0812-3456-789` and `+628123456789` are one);
//! - [`Policies`]: the plan's `[policies]` table, validated with the rest of the plan;
//! - [`NumberLists`]: the supervisors' watch and block entries, each with its expiry;
//! - [`RepeatCounter`]: recent calls per number, in bounded memory;
//! - [`Policies::decide`]: what a new call from a number meets.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use crate::ids::PromptName;
use crate::time::format_duration;

siaga_ids::string_id! {
    /// A caller's number in one canonical form: `+<country code><digits>` when the country is
    /// known, otherwise the digits as dialled. Built only by [`CallerNumber::normalise`].
    pub struct CallerNumber(String);
}

/// Why a text is not a phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("{0:?} has a character that is not a digit, a leading '+' or a separator")]
    NotANumber(String),
    #[error("{0:?} has {1} digits; a phone number has 3 to 15")]
    Length(String, usize),
}

/// Digits beyond the country code that a national number has at least (`62` + `812…`):
/// shorter digit strings that start with the country code are local numbers, not national ones.
const MIN_NATIONAL_DIGITS: usize = 7;

impl CallerNumber {
    /// One form per number. Separators (space, `-`, `.`, `(`, `)`) go; `+…` is kept; with a
    /// country code, a national `0…` becomes `+<code>…` and a bare `<code>…` long enough to be
    /// national gets its `+`. `0812-3456-789`, `628123456789` and `+628123456789` are one
    /// number for country code 62.
    pub fn normalise(text: &str, country_code: Option<&str>) -> Result<Self, NumberError> {
        let trimmed = text.trim();
        let (plus, rest) = match trimmed.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(NumberError::NotANumber(text.to_owned())),
            }
        }
        if !(3..=15).contains(&digits.len()) {
            return Err(NumberError::Length(text.to_owned(), digits.len()));
        }
        let canonical = match (plus, country_code) {
            (true, _) => format!("+{digits}"),
            (false, Some(code)) => match digits.strip_prefix('0') {
                Some(national) if !national.starts_with('0') => format!("+{code}{national}"),
                Some(_) => digits,
                None if digits.starts_with(code)
                    && digits.len() >= code.len() + MIN_NATIONAL_DIGITS =>
                {
                    format!("+{digits}")
                }
                None => digits,
            },
            (false, None) => digits,
        };
        Ok(CallerNumber(canonical))
    }
}

/// `calls` calls from one number within `within` (this call included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRate {
    pub calls: u32,
    pub within: Duration,
}

impl fmt::Display for CallRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} calls within {}",
            self.calls,
            format_duration(self.within)
        )
    }
}

/// The plan's `[policies]`: defaults in [`Policies::default`], documented in
/// `dialplans/default.toml` and `docs/dialplan.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policies {
    /// A number that calls this often is a repeat caller: warned, then queued behind others.
    /// `None` (the default): the repeat-caller path is off.
    pub repeat_caller: Option<CallRate>,
    /// A blocked number that calls this often reaches a person anyway.
    pub block_override: CallRate,
    /// Played to repeat callers and watched numbers before the call goes on ("misuse of 112
    /// is an offence"); none: no announcement.
    pub warning_prompt: Option<PromptName>,
    /// Played to a blocked number before the call ends; none: the call ends at once.
    pub blocked_prompt: Option<PromptName>,
    /// The longest block a supervisor may set (no block is permanent).
    pub max_block: Duration,
    /// The longest watch a supervisor may set.
    pub max_watch: Duration,
    /// Numbers whose recent calls are remembered; beyond it the quietest are forgotten.
    pub tracked_numbers: usize,
}

impl Default for Policies {
    fn default() -> Self {
        Policies {
            // Off unless the plan turns it on: a count alone cannot tell a prank from someone
            // calling back in a real emergency, and it lowers the caller's priority.
            repeat_caller: None,
            block_override: CallRate {
                calls: 3,
                within: Duration::from_secs(15 * 60),
            },
            warning_prompt: None,
            blocked_prompt: None,
            max_block: Duration::from_secs(7 * DAY),
            max_watch: Duration::from_secs(30 * DAY),
            tracked_numbers: 10_000,
        }
    }
}

const DAY: u64 = 24 * 60 * 60;

/// Limits the validator holds `[policies]` to.
pub(crate) mod limits {
    use std::time::Duration;

    /// A blocked number in real trouble must not have to call more often than this.
    pub const MAX_OVERRIDE_CALLS: u32 = 10;
    /// No block or watch outlives this, whatever the plan says.
    pub const MAX_LIST_TIME: Duration = Duration::from_secs(90 * super::DAY);
    pub const TRACKED: std::ops::RangeInclusive<usize> = 100..=1_000_000;
}

/// Reads a list duration: a whole number and `min`, `h` or `d` (`"30min"`, `"2h"`, `"7d"`).
pub fn parse_list_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like \"30min\", \"2h\" or \"7d\""))?;
    let seconds = match unit {
        "min" => 60,
        "h" => 3600,
        "d" => DAY,
        _ => {
            return Err(format!(
                "{text:?}: write the unit as min, h or d, e.g. \"2h\" or \"7d\""
            ));
        }
    };
    let duration = Duration::from_secs(value.saturating_mul(seconds));
    if duration.is_zero() {
        return Err(format!("{text:?} is zero"));
    }
    Ok(duration)
}

/// A duration the way lists show it: the largest exact unit of `d`, `h` or `min`.
pub fn format_list_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= DAY && secs.is_multiple_of(DAY) {
        format!("{}d", secs / DAY)
    } else if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else {
        format!("{}min", secs.div_ceil(60))
    }
}

/// Which list a number is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// Warned on every call and queued behind other callers; still reaches a person.
    Watch,
    /// Hears a short announcement and the call ends (with the overrides of [`Policies`]).
    Block,
}

impl ListKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Watch => "watch",
            ListKind::Block => "block",
        }
    }
}

/// One live entry of the supervisors' lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub kind: ListKind,
    /// The entry ends here, whether or not the snapshot is refreshed.
    pub expires_at: Instant,
    /// Who set it and why (for the call's timeline).
    pub by: String,
    pub why: String,
}

/// A snapshot of the watch and block lists, one entry per number at most.
#[derive(Debug, Clone, Default)]
pub struct NumberLists {
    entries: HashMap<CallerNumber, ListEntry>,
}

impl NumberLists {
    pub fn new(entries: impl IntoIterator<Item = (CallerNumber, ListEntry)>) -> Self {
        NumberLists {
            entries: entries.into_iter().collect(),
        }
    }

    /// The number's entry if it has not expired at `now`.
    pub fn live(&self, number: &CallerNumber, now: Instant) -> Option<&ListEntry> {
        self.entries.get(number).filter(|e| now < e.expires_at)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Recent call times per key (a number, a source address), in bounded memory: at most
/// `capacity` keys, each with at most `per_key` times no older than `keep`; when full, the
/// keys whose latest call is oldest are forgotten.
#[derive(Debug, Clone)]
pub(crate) struct RecentCalls<K> {
    calls: HashMap<K, VecDeque<Instant>>,
    capacity: usize,
    per_key: usize,
    keep: Duration,
}

impl<K: std::hash::Hash + Eq + Clone> RecentCalls<K> {
    pub(crate) fn new(capacity: usize, per_key: usize, keep: Duration) -> Self {
        RecentCalls {
            calls: HashMap::new(),
            capacity: capacity.max(1),
            per_key: per_key.max(1),
            keep,
        }
    }

    /// Notes a call from `key` at `now`.
    pub(crate) fn note(&mut self, key: &K, now: Instant) {
        if !self.calls.contains_key(key) && self.calls.len() >= self.capacity {
            self.make_room(now);
        }
        let times = self.calls.entry(key.clone()).or_default();
        times.push_back(now);
        while times.len() > self.per_key {
            times.pop_front();
        }
    }

    /// Calls from `key` in the `within` before `now` (bounded by what is kept).
    pub(crate) fn count_within(&self, key: &K, within: Duration, now: Instant) -> u32 {
        self.calls.get(key).map_or(0, |times| {
            times
                .iter()
                .filter(|t| now.saturating_duration_since(**t) < within)
                .count() as u32
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }

    /// Forgets keys whose calls are all older than `keep`; if that is not enough, the eighth
    /// of the table whose latest calls are oldest, so a flood of new keys pays for a scan
    /// once per `capacity / 8` calls, not on every call.
    fn make_room(&mut self, now: Instant) {
        let keep = self.keep;
        self.calls.retain(|_, times| {
            times
                .back()
                .is_some_and(|t| now.saturating_duration_since(*t) < keep)
        });
        if self.calls.len() < self.capacity {
            return;
        }
        let mut latest: Vec<(Instant, K)> = self
            .calls
            .iter()
            .filter_map(|(k, times)| times.back().map(|t| (*t, k.clone())))
            .collect();
        let evict = (self.capacity / 8).clamp(1, latest.len());
        latest.select_nth_unstable_by_key(evict - 1, |(t, _)| *t);
        for (_, key) in latest.into_iter().take(evict) {
            self.calls.remove(&key);
        }
    }
}

/// Recent calls per number, for the repeat-caller and block-override counts, in bounded
/// memory ([`Policies::tracked_numbers`] numbers).
#[derive(Debug, Clone)]
pub struct RepeatCounter {
    recent: RecentCalls<CallerNumber>,
}

impl RepeatCounter {
    /// A counter sized for `policies`.
    pub fn for_policies(policies: &Policies) -> Self {
        let rates = [Some(policies.block_override), policies.repeat_caller];
        let rates = rates.iter().flatten();
        RepeatCounter {
            recent: RecentCalls::new(
                policies.tracked_numbers,
                rates.clone().map(|r| r.calls as usize).max().unwrap_or(1),
                rates.map(|r| r.within).max().unwrap_or_default(),
            ),
        }
    }

    /// Notes a call from `number` at `now`.
    pub fn note(&mut self, number: &CallerNumber, now: Instant) {
        self.recent.note(number, now);
    }

    /// Calls from `number` in the `within` before `now` (bounded by what is kept).
    pub fn count_within(&self, number: &CallerNumber, within: Duration, now: Instant) -> u32 {
        self.recent.count_within(number, within, now)
    }

    /// Numbers remembered now (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.recent.len()
    }
}

/// What a call meets, and every policy that applied (each goes on the call's timeline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: PolicyAction,
    pub applied: Vec<Applied>,
}

/// What happens to the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyAction {
    /// Nothing special.
    Normal,
    /// The warning, then the call goes on as usual, at lower queue priority.
    WarnLowPriority,
    /// The blocked announcement, then the call ends.
    Block,
}

/// One policy that applied to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    RepeatCaller { calls: u32, rate: CallRate },
    Watched(ListEntry),
    Blocked(ListEntry),
    BlockOverridden { entry: ListEntry, reason: Override },
}

/// Why a blocked number reached a person anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Override {
    /// It called this often: whoever calls again and again may be in real trouble.
    CalledAgain { calls: u32, rate: CallRate },
    /// It dialled a service URN with a PIDF-LO location: a device's emergency call.
    UrnWithLocation,
}

/// What a new call brings to the decision.
#[derive(Debug, Clone, Copy)]
pub struct PolicyFacts<'a> {
    /// The caller's usable number; without one, no policy applies.
    pub number: Option<&'a CallerNumber>,
    /// The call dialled `urn:service:sos…` and carries a PIDF-LO location.
    pub urn_with_location: bool,
}

impl Policies {
    /// Decides for a new call at `now` and counts it. Blocks only ever come from a live list
    /// entry, and give way to a URN call with a location or to a number that keeps calling.
    pub fn decide(
        &self,
        lists: &NumberLists,
        counter: &mut RepeatCounter,
        facts: PolicyFacts<'_>,
        now: Instant,
    ) -> Decision {
        let normal = Decision {
            action: PolicyAction::Normal,
            applied: Vec::new(),
        };
        let Some(number) = facts.number else {
            return normal;
        };
        counter.note(number, now);
        let count = |rate: CallRate| counter.count_within(number, rate.within, now);
        let entry = lists.live(number, now).cloned();
        if let Some(entry) = entry.clone().filter(|e| e.kind == ListKind::Block) {
            let rate = self.block_override;
            let calls = count(rate);
            let (action, reason) = if facts.urn_with_location {
                (PolicyAction::Normal, Override::UrnWithLocation)
            } else if calls >= rate.calls {
                let reason = Override::CalledAgain { calls, rate };
                (PolicyAction::WarnLowPriority, reason)
            } else {
                return Decision {
                    action: PolicyAction::Block,
                    applied: vec![Applied::Blocked(entry)],
                };
            };
            return Decision {
                action,
                applied: vec![Applied::BlockOverridden { entry, reason }],
            };
        }
        let mut applied = Vec::new();
        if let Some(entry) = entry.filter(|e| e.kind == ListKind::Watch) {
            applied.push(Applied::Watched(entry));
        }
        if let Some(rate) = self.repeat_caller {
            let calls = count(rate);
            if calls >= rate.calls {
                applied.push(Applied::RepeatCaller { calls, rate });
            }
        }
        if applied.is_empty() {
            return normal;
        }
        Decision {
            action: PolicyAction::WarnLowPriority,
            applied,
        }
    }
}

impl Applied {
    /// The timeline's detail text: what applied and the figures or entry behind it. `now` is
    /// the decision's time, for how long the entry still runs.
    pub fn detail(&self, now: Instant) -> String {
        let entry_text = |e: &ListEntry| {
            format!(
                "set by {} ({}), {} left",
                e.by,
                e.why,
                format_list_duration(e.expires_at.saturating_duration_since(now))
            )
        };
        match self {
            Applied::RepeatCaller { calls, rate } => {
                format!(
                    "{calls} calls from this number within {}, at least {} make a repeat caller: warned, lower queue priority",
                    format_duration(rate.within),
                    rate.calls
                )
            }
            Applied::Watched(e) => {
                format!(
                    "on the watch list, {}: warned, lower queue priority",
                    entry_text(e)
                )
            }
            Applied::Blocked(e) => {
                format!(
                    "on the block list, {}: announcement, call ended",
                    entry_text(e)
                )
            }
            Applied::BlockOverridden { entry, reason } => match reason {
                Override::CalledAgain { calls, rate } => format!(
                    "blocked ({}), but {calls} calls within {} (override at {}): put through, warned, lower queue priority",
                    entry_text(entry),
                    format_duration(rate.within),
                    rate.calls
                ),
                Override::UrnWithLocation => format!(
                    "blocked ({}), but dialled a service URN with a PIDF-LO location: put through",
                    entry_text(entry)
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
    use super::*;

    fn number(text: &str) -> CallerNumber {
        CallerNumber::normalise(text, Some("62")).expect("a number")
    }

    #[test]
    fn one_number_in_every_form() {
        for form in [
            "0812-3456-789",
            "+628123456789",
            "628123456789",
            "+62 812 3456 789",
            "(0812) 3456.789",
        ] {
            assert_eq!(number(form).as_str(), "+628123456789", "{form}");
        }
        // Short local numbers and other countries keep their form.
        assert_eq!(number("112").as_str(), "112");
        assert_eq!(number("+6512345678").as_str(), "+6512345678");
        assert_eq!(number("6212").as_str(), "6212");
        // Without a country code a national number stays national.
        let national = CallerNumber::normalise("0812-3456-789", None).expect("number");
        assert_eq!(national.as_str(), "08123456789");
    }

    #[test]
    fn what_is_not_a_number() {
        for bad in [
            "",
            "12",
            "anonymous",
            "+62x812",
            "1234567890123456",
            "++62812",
        ] {
            assert!(CallerNumber::normalise(bad, Some("62")).is_err(), "{bad}");
        }
    }

    #[test]
    fn list_durations() {
        assert_eq!(parse_list_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_list_duration("7d"), Ok(Duration::from_secs(7 * DAY)));
        assert_eq!(parse_list_duration("30min"), Ok(Duration::from_secs(1800)));
        for bad in ["", "2", "h", "0h", "2 weeks", "-1d"] {
            assert!(parse_list_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_list_duration(Duration::from_secs(7 * DAY)), "7d");
        assert_eq!(format_list_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_list_duration(Duration::from_secs(61)), "2min");
    }

    fn entry(kind: ListKind, expires_at: Instant) -> ListEntry {
        ListEntry {
            kind,
            expires_at,
            by: "sari".into(),
            why: "pranks".into(),
        }
    }

    /// The default policies, and `caller` blocked for an hour from the returned instant.
    fn blocked_for_an_hour(caller: &str) -> (Instant, Policies, NumberLists, RepeatCounter) {
        let t0 = Instant::now();
        let policies = Policies::default();
        let lists = NumberLists::new([(
            number(caller),
            entry(ListKind::Block, t0 + Duration::from_secs(3600)),
        )]);
        let counter = RepeatCounter::for_policies(&policies);
        (t0, policies, lists, counter)
    }

    #[test]
    fn a_blocked_number_is_let_through_when_it_keeps_calling_and_its_block_expires() {
        let (t0, policies, lists, mut counter) = blocked_for_an_hour("+628123456789");
        let caller = number("+628123456789");
        let facts = PolicyFacts {
            number: Some(&caller),
            urn_with_location: false,
        };
        let at = |min: u64| t0 + Duration::from_secs(min * 60);
        let first = policies.decide(&lists, &mut counter, facts, at(0));
        assert_eq!(first.action, PolicyAction::Block);
        let second = policies.decide(&lists, &mut counter, facts, at(1));
        assert_eq!(second.action, PolicyAction::Block);
        // The third call within 15 minutes reaches a person.
        let third = policies.decide(&lists, &mut counter, facts, at(2));
        assert_eq!(third.action, PolicyAction::WarnLowPriority);
        assert!(matches!(
            third.applied.as_slice(),
            [Applied::BlockOverridden {
                reason: Override::CalledAgain { calls: 3, .. },
                ..
            }]
        ));
        // Spaced out, it is blocked again...
        let later = policies.decide(&lists, &mut counter, facts, at(30));
        assert_eq!(later.action, PolicyAction::Block);
        // ...until the block runs out: then it is a normal caller.
        let after = policies.decide(&lists, &mut counter, facts, at(60));
        assert_eq!(after.action, PolicyAction::Normal);
    }

    #[test]
    fn a_urn_call_with_a_location_always_passes_a_block() {
        let (t0, policies, lists, mut counter) = blocked_for_an_hour("+628123456789");
        // The same number as dialled nationally.
        let caller = number("08123456789");
        let facts = PolicyFacts {
            number: Some(&caller),
            urn_with_location: true,
        };
        let decision = policies.decide(&lists, &mut counter, facts, t0);
        assert_eq!(decision.action, PolicyAction::Normal);
        assert!(matches!(
            decision.applied.as_slice(),
            [Applied::BlockOverridden {
                reason: Override::UrnWithLocation,
                ..
            }]
        ));
    }

    #[test]
    fn watched_and_repeat_callers_are_warned_and_anonymous_callers_are_not_counted() {
        let t0 = Instant::now();
        let policies = Policies {
            repeat_caller: Some(CallRate {
                calls: 5,
                within: Duration::from_secs(600),
            }),
            ..Policies::default()
        };
        let watched = number("+628111111111");
        let other = number("+628222222222");
        let lists = NumberLists::new([(
            watched.clone(),
            entry(ListKind::Watch, t0 + Duration::from_secs(60)),
        )]);
        let mut counter = RepeatCounter::for_policies(&policies);
        let facts = |n| PolicyFacts {
            number: Some(n),
            urn_with_location: false,
        };
        let d = policies.decide(&lists, &mut counter, facts(&watched), t0);
        assert_eq!(d.action, PolicyAction::WarnLowPriority);
        assert!(matches!(d.applied.as_slice(), [Applied::Watched(_)]));
        for i in 0..4 {
            let d = policies.decide(
                &lists,
                &mut counter,
                facts(&other),
                t0 + Duration::from_secs(i),
            );
            assert_eq!(d.action, PolicyAction::Normal, "call {i}");
        }
        let fifth = policies.decide(
            &lists,
            &mut counter,
            facts(&other),
            t0 + Duration::from_secs(9),
        );
        assert!(matches!(
            fifth.applied.as_slice(),
            [Applied::RepeatCaller { calls: 5, .. }]
        ));
        let anonymous = PolicyFacts {
            number: None,
            urn_with_location: false,
        };
        for _ in 0..10 {
            let d = policies.decide(&lists, &mut counter, anonymous, t0);
            assert_eq!(d.action, PolicyAction::Normal);
        }
        assert_eq!(counter.tracked(), 2);
    }

    #[test]
    fn the_counter_stays_within_its_capacity() {
        let t0 = Instant::now();
        let policies = Policies {
            tracked_numbers: 100,
            ..Policies::default()
        };
        let mut counter = RepeatCounter::for_policies(&policies);
        for i in 0..10_000u64 {
            let n = CallerNumber::normalise(&format!("+62811{i:07}"), Some("62")).expect("n");
            for _ in 0..20 {
                counter.note(&n, t0 + Duration::from_millis(i));
            }
        }
        assert!(
            (88..=100).contains(&counter.tracked()),
            "{}",
            counter.tracked()
        );
        // The newest number is still counted, up to what a decision needs (the block
        // override's 3 calls).
        let last = CallerNumber::normalise("+628110009999", Some("62")).expect("n");
        let within = Duration::from_secs(600);
        assert_eq!(
            counter.count_within(&last, within, t0 + Duration::from_secs(10)),
            3
        );
    }
}
