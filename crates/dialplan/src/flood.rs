//! Floods of emergency calls (issue 12 item 4, telephony denial of service). Pure: the engine
//! tells the guard about each new emergency call and each silent short call, with the time.
//!
//! - [`FloodRules`]: the plan's `[flood]` table;
//! - [`FloodGuard`]: the rates that put the centre "under attack" and take it out again, and
//!   per number and per source counts; under attack, a new call beyond its limits (or every
//!   new call, with `challenge = "all"`) is challenged ("press any key or speak") before it
//!   may take a call-taker's time. Never challenged: URN calls with a location, numbers with a
//!   history of genuine calls, callers who passed a challenge. A caller who does not pass is
//!   kept at the lowest priority — never hung up on.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::ids::PromptName;
use crate::policy::{CallRate, CallerNumber, RecentCalls};
use crate::time::format_duration;

/// Who is challenged while the centre is under attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeScope {
    /// Calls from numbers or sources beyond their limits (and calls with no usable number
    /// from a source beyond its limit).
    OverLimit,
    /// Every new call that is not exempt: for floods from many random numbers through a
    /// carrier's trunk, where neither numbers nor the source stand out.
    All,
}

/// The plan's `[flood]`: defaults in [`FloodRules::default`], documented in
/// `dialplans/default.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodRules {
    /// New emergency calls at this rate put the centre under attack; `None`: not by rate.
    pub attack_calls: Option<CallRate>,
    /// Silent short calls at this rate put the centre under attack; `None`: not by them.
    pub attack_silent: Option<CallRate>,
    /// Under attack ends once both rates stay under half their levels this long.
    pub calm_for: Duration,
    /// Under attack, a number with more calls than this is challenged.
    pub number_limit: CallRate,
    /// Under attack, a source address (not a trusted one: an SBC carries everyone) with more
    /// calls than this is challenged.
    pub source_limit: CallRate,
    pub scope: ChallengeScope,
    /// "Press any key or speak"; `None`: no challenge (under attack is still detected and
    /// logged).
    pub challenge_prompt: Option<PromptName>,
    /// No key and no speech this long after the prompt started: the caller did not pass.
    pub challenge_timeout: Duration,
    /// Sources and numbers remembered; beyond it the quietest are forgotten.
    pub tracked: usize,
}

impl Default for FloodRules {
    fn default() -> Self {
        FloodRules {
            attack_calls: Some(CallRate {
                calls: 120,
                within: Duration::from_secs(60),
            }),
            attack_silent: Some(CallRate {
                calls: 30,
                within: Duration::from_secs(60),
            }),
            calm_for: Duration::from_secs(5 * 60),
            number_limit: CallRate {
                calls: 2,
                within: Duration::from_secs(10 * 60),
            },
            source_limit: CallRate {
                calls: 10,
                within: Duration::from_secs(60),
            },
            scope: ChallengeScope::OverLimit,
            challenge_prompt: None,
            challenge_timeout: Duration::from_secs(10),
            tracked: 10_000,
        }
    }
}

/// What the engine knows about a new emergency call.
#[derive(Debug, Clone, Copy)]
pub struct NewCallFacts<'a> {
    pub number: Option<&'a CallerNumber>,
    /// The caller's address; `None` for a trusted source (a carrier's SBC).
    pub source: Option<IpAddr>,
    /// A URN call with a PIDF-LO location: never challenged.
    pub urn_with_location: bool,
    /// The number has genuine calls in the call log: never challenged.
    pub known_genuine: bool,
}

/// Why a call is challenged (on its timeline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChallengeReason {
    NumberOverLimit {
        calls: u32,
        limit: CallRate,
    },
    SourceOverLimit {
        source: IpAddr,
        calls: u32,
        limit: CallRate,
    },
    EveryNewCall,
}

impl std::fmt::Display for ChallengeReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChallengeReason::NumberOverLimit { calls, limit } => {
                write!(f, "under attack: number made {calls} calls, limit {limit}")
            }
            ChallengeReason::SourceOverLimit {
                source,
                calls,
                limit,
            } => write!(
                f,
                "under attack: source {source} made {calls} calls, limit {limit}"
            ),
            ChallengeReason::EveryNewCall => f.write_str("under attack: every new call"),
        }
    }
}

/// What a new call meets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloodVerdict {
    Admit,
    /// Under attack and exempt (the reason), or not under attack: admitted as any call.
    Exempt(&'static str),
    Challenge(ChallengeReason),
}

/// The centre went under attack, or came out of it: a gateway event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttackChange {
    Started {
        reason: String,
    },
    Ended {
        lasted: Duration,
        calls: u64,
        challenged: u64,
    },
}

impl AttackChange {
    pub fn detail(&self) -> String {
        match self {
            AttackChange::Started { reason } => reason.clone(),
            AttackChange::Ended {
                lasted,
                calls,
                challenged,
            } => format!(
                "calm again after {}: {calls} new calls meanwhile, {challenged} challenged",
                format_duration(*lasted)
            ),
        }
    }
}

/// The last `level` event times: the rate is at its level when all are within the window.
#[derive(Debug, Clone)]
struct RateWindow {
    times: VecDeque<Instant>,
    rate: CallRate,
}

impl RateWindow {
    fn new(rate: CallRate) -> Self {
        RateWindow {
            times: VecDeque::with_capacity(rate.calls as usize),
            rate,
        }
    }

    fn note(&mut self, now: Instant) {
        self.times.push_back(now);
        while self.times.len() > self.rate.calls as usize {
            self.times.pop_front();
        }
    }

    fn within(&self, now: Instant) -> u32 {
        self.times
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < self.rate.within)
            .count() as u32
    }

    fn at_level(&self, now: Instant) -> bool {
        self.within(now) >= self.rate.calls
    }

    fn calm(&self, now: Instant) -> bool {
        self.within(now) * 2 < self.rate.calls
    }
}

/// Recent calls per key and their count within `rate` (this call included).
#[derive(Debug, Clone)]
struct Counts<K> {
    recent: RecentCalls<K>,
    rate: CallRate,
}

impl<K: std::hash::Hash + Eq + Clone> Counts<K> {
    fn new(capacity: usize, rate: CallRate) -> Self {
        // One more than the limit is enough to know it is exceeded.
        let recent = RecentCalls::new(capacity, rate.calls as usize + 1, rate.within);
        Counts { recent, rate }
    }

    /// Notes a call and returns the calls of `key` within the window, this one included.
    fn note(&mut self, key: &K, now: Instant) -> u32 {
        self.recent.note(key, now);
        self.recent.count_within(key, self.rate.within, now)
    }

    fn len(&self) -> usize {
        self.recent.len()
    }
}

#[derive(Debug, Clone)]
struct Attack {
    since: Instant,
    calm_since: Option<Instant>,
    calls: u64,
    challenged: u64,
}

/// The centre's flood state, in bounded memory.
#[derive(Debug, Clone)]
pub struct FloodGuard {
    rules: FloodRules,
    new_calls: Option<RateWindow>,
    silent_calls: Option<RateWindow>,
    numbers: Counts<CallerNumber>,
    sources: Counts<IpAddr>,
    /// Numbers that passed a challenge in this attack: not asked again.
    passed: HashMap<CallerNumber, Instant>,
    attack: Option<Attack>,
}

impl FloodGuard {
    pub fn new(rules: &FloodRules) -> Self {
        FloodGuard {
            new_calls: rules.attack_calls.map(RateWindow::new),
            silent_calls: rules.attack_silent.map(RateWindow::new),
            numbers: Counts::new(rules.tracked, rules.number_limit),
            sources: Counts::new(rules.tracked, rules.source_limit),
            passed: HashMap::new(),
            attack: None,
            rules: rules.clone(),
        }
    }

    pub fn rules(&self) -> &FloodRules {
        &self.rules
    }

    pub fn under_attack(&self) -> bool {
        self.attack.is_some()
    }

    /// Numbers and sources remembered (bounded by `tracked` each, plus the passed numbers).
    pub fn tracked(&self) -> usize {
        self.numbers.len() + self.sources.len() + self.passed.len()
    }

    /// A new emergency call: counted, and what it meets. The change, if this call tipped the
    /// centre into an attack.
    pub fn new_call(
        &mut self,
        now: Instant,
        facts: NewCallFacts<'_>,
    ) -> (FloodVerdict, Option<AttackChange>) {
        let number_calls = facts.number.map(|n| self.numbers.note(n, now));
        let source_calls = facts.source.map(|s| (s, self.sources.note(&s, now)));
        let tipped = self.new_calls.as_mut().and_then(|w| {
            w.note(now);
            w.at_level(now)
                .then(|| format!("new emergency calls reached {}", w.rate))
        });
        let change = match tipped {
            Some(reason) if self.attack.is_none() => Some(self.start(now, reason)),
            _ => self.check_calm(now),
        };
        if self.attack.is_none() {
            return (FloodVerdict::Admit, change);
        }
        let exempt = if facts.urn_with_location {
            Some("URN call with a location")
        } else if facts.known_genuine {
            Some("number with genuine calls")
        } else if facts.number.is_some_and(|n| self.passed.contains_key(n)) {
            Some("passed a challenge in this attack")
        } else {
            None
        };
        let limit = self.rules.number_limit;
        let over_number = number_calls
            .filter(|&calls| calls > limit.calls)
            .map(|calls| ChallengeReason::NumberOverLimit { calls, limit });
        let limit = self.rules.source_limit;
        let over_source =
            source_calls
                .filter(|&(_, calls)| calls > limit.calls)
                .map(|(source, calls)| ChallengeReason::SourceOverLimit {
                    source,
                    calls,
                    limit,
                });
        let reason = over_number.or(over_source).or(match self.rules.scope {
            ChallengeScope::All => Some(ChallengeReason::EveryNewCall),
            ChallengeScope::OverLimit => None,
        });
        let verdict = match (exempt, reason) {
            (Some(why), _) => FloodVerdict::Exempt(why),
            (None, Some(reason)) if self.rules.challenge_prompt.is_some() => {
                FloodVerdict::Challenge(reason)
            }
            (None, _) => FloodVerdict::Admit,
        };
        if let Some(attack) = self.attack.as_mut() {
            attack.calls += 1;
            attack.challenged += u64::from(matches!(verdict, FloodVerdict::Challenge(_)));
        }
        (verdict, change)
    }

    /// A call ended silent and short (the engine's call signals say so).
    pub fn silent_short_call(&mut self, now: Instant) -> Option<AttackChange> {
        let w = self.silent_calls.as_mut()?;
        w.note(now);
        let tipped = w
            .at_level(now)
            .then(|| format!("silent short calls reached {}", w.rate));
        match tipped {
            Some(reason) if self.attack.is_none() => Some(self.start(now, reason)),
            _ => self.check_calm(now),
        }
    }

    /// A challenged caller pressed a key or spoke: not asked again in this attack.
    pub fn passed(&mut self, number: Option<&CallerNumber>, now: Instant) {
        if let Some(n) = number
            && self.attack.is_some()
            && self.passed.len() < self.rules.tracked
        {
            self.passed.insert(n.clone(), now);
        }
    }

    /// Time passes with no call: the attack may end. The engine calls this at
    /// [`FloodGuard::next_check`].
    pub fn poll(&mut self, now: Instant) -> Option<AttackChange> {
        self.check_calm(now)
    }

    /// When `poll` should next run (only while under attack).
    pub fn next_check(&self, now: Instant) -> Option<Instant> {
        let attack = self.attack.as_ref()?;
        Some(match attack.calm_since {
            Some(since) => (since + self.rules.calm_for).max(now),
            None => now + Duration::from_secs(1),
        })
    }

    fn start(&mut self, now: Instant, reason: String) -> AttackChange {
        self.attack = Some(Attack {
            since: now,
            calm_since: None,
            calls: 0,
            challenged: 0,
        });
        AttackChange::Started { reason }
    }

    fn check_calm(&mut self, now: Instant) -> Option<AttackChange> {
        let calm = self.new_calls.as_ref().is_none_or(|w| w.calm(now))
            && self.silent_calls.as_ref().is_none_or(|w| w.calm(now));
        let attack = self.attack.as_mut()?;
        if !calm {
            attack.calm_since = None;
            return None;
        }
        let since = *attack.calm_since.get_or_insert(now);
        if now.saturating_duration_since(since) < self.rules.calm_for {
            return None;
        }
        let ended = AttackChange::Ended {
            lasted: now.saturating_duration_since(attack.since),
            calls: attack.calls,
            challenged: attack.challenged,
        };
        self.attack = None;
        self.passed.clear();
        Some(ended)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
    use super::*;

    fn rules() -> FloodRules {
        FloodRules {
            attack_calls: Some(CallRate {
                calls: 10,
                within: Duration::from_secs(60),
            }),
            attack_silent: Some(CallRate {
                calls: 5,
                within: Duration::from_secs(60),
            }),
            calm_for: Duration::from_secs(120),
            challenge_prompt: Some(PromptName::new("challenge")),
            ..FloodRules::default()
        }
    }

    fn number(n: &str) -> CallerNumber {
        CallerNumber::normalise(n, Some("62")).expect("number")
    }

    fn facts<'a>(n: Option<&'a CallerNumber>, source: &str) -> NewCallFacts<'a> {
        NewCallFacts {
            number: n,
            source: Some(source.parse().expect("ip")),
            urn_with_location: false,
            known_genuine: false,
        }
    }

    #[test]
    fn the_rate_of_new_calls_starts_an_attack_and_calm_ends_it() {
        let t0 = Instant::now();
        let mut g = FloodGuard::new(&rules());
        let mut changes = Vec::new();
        // Nine calls in a minute: below the level.
        for i in 0..9u64 {
            let n = number(&format!("08120000{i:03}"));
            let (verdict, change) =
                g.new_call(t0 + Duration::from_secs(i), facts(Some(&n), "10.0.0.1"));
            assert_eq!(verdict, FloodVerdict::Admit);
            changes.extend(change);
        }
        assert!(changes.is_empty() && !g.under_attack());
        let n = number("0812000099");
        let (_, change) = g.new_call(t0 + Duration::from_secs(9), facts(Some(&n), "10.0.0.1"));
        assert!(
            matches!(change, Some(AttackChange::Started { .. })),
            "{change:?}"
        );
        assert!(g.under_attack());
        // The call that tipped it counts as a call under attack. Quiet from now on: under half
        // the level after the window, then calm for 120 s.
        let quiet = t0 + Duration::from_secs(70);
        assert_eq!(g.poll(quiet), None);
        assert_eq!(g.next_check(quiet), Some(quiet + Duration::from_secs(120)));
        assert_eq!(g.poll(quiet + Duration::from_secs(119)), None);
        let ended = g.poll(quiet + Duration::from_secs(120));
        assert!(
            matches!(ended, Some(AttackChange::Ended { calls: 1, .. })),
            "{ended:?}"
        );
        assert!(!g.under_attack());
        assert_eq!(g.next_check(quiet), None);
    }

    #[test]
    fn silent_short_calls_start_an_attack() {
        let t0 = Instant::now();
        let mut g = FloodGuard::new(&rules());
        for i in 0..4 {
            assert_eq!(g.silent_short_call(t0 + Duration::from_secs(i)), None);
        }
        let change = g.silent_short_call(t0 + Duration::from_secs(4));
        assert_eq!(
            change,
            Some(AttackChange::Started {
                reason: "silent short calls reached 5 calls within 1min".into()
            })
        );
    }

    #[test]
    fn under_attack_numbers_and_sources_beyond_their_limits_are_challenged_and_the_exempt_never() {
        let t0 = Instant::now();
        let mut g = FloodGuard::new(&rules());
        for i in 0..5 {
            g.silent_short_call(t0 + Duration::from_secs(i));
        }
        assert!(g.under_attack());
        let at = |s: u64| t0 + Duration::from_secs(10 + s);
        let prank = number("081299");
        // Two calls from a number are within its limit; the third is challenged.
        assert_eq!(
            g.new_call(at(0), facts(Some(&prank), "10.0.0.2")).0,
            FloodVerdict::Admit
        );
        assert_eq!(
            g.new_call(at(1), facts(Some(&prank), "10.0.0.3")).0,
            FloodVerdict::Admit
        );
        let (verdict, _) = g.new_call(at(2), facts(Some(&prank), "10.0.0.4"));
        assert!(
            matches!(
                verdict,
                FloodVerdict::Challenge(ChallengeReason::NumberOverLimit { calls: 3, .. })
            ),
            "{verdict:?}"
        );
        // A URN call with a location and a number with genuine calls: never challenged.
        let mut urn = facts(Some(&prank), "10.0.0.4");
        urn.urn_with_location = true;
        assert_eq!(
            g.new_call(at(3), urn).0,
            FloodVerdict::Exempt("URN call with a location")
        );
        let mut genuine = facts(Some(&prank), "10.0.0.4");
        genuine.known_genuine = true;
        assert_eq!(
            g.new_call(at(4), genuine).0,
            FloodVerdict::Exempt("number with genuine calls")
        );
        // It passes the challenge: not asked again in this attack.
        g.passed(Some(&prank), at(5));
        assert_eq!(
            g.new_call(at(6), facts(Some(&prank), "10.0.0.4")).0,
            FloodVerdict::Exempt("passed a challenge in this attack")
        );
        // A source with 11 calls a minute, each from a new number, is over its limit (10);
        // a trusted source (None) never is.
        let verdicts: Vec<FloodVerdict> = (0..11)
            .map(|i| {
                let n = number(&format!("08130000{i:03}"));
                g.new_call(at(7), facts(Some(&n), "192.0.2.9")).0
            })
            .collect();
        assert_eq!(verdicts[9], FloodVerdict::Admit, "the tenth is within");
        assert!(
            matches!(
                verdicts[10],
                FloodVerdict::Challenge(ChallengeReason::SourceOverLimit { calls: 11, .. })
            ),
            "{:?}",
            verdicts[10]
        );
        let n = number("0813999999");
        let trusted = NewCallFacts {
            source: None,
            ..facts(Some(&n), "192.0.2.9")
        };
        assert_eq!(g.new_call(at(8), trusted).0, FloodVerdict::Admit);
    }

    #[test]
    fn with_scope_all_every_new_call_is_challenged_but_without_a_prompt_none_is() {
        let t0 = Instant::now();
        let mut all = FloodGuard::new(&FloodRules {
            scope: ChallengeScope::All,
            ..rules()
        });
        let mut silent_prompt = FloodGuard::new(&FloodRules {
            challenge_prompt: None,
            scope: ChallengeScope::All,
            ..rules()
        });
        for g in [&mut all, &mut silent_prompt] {
            for i in 0..5 {
                g.silent_short_call(t0 + Duration::from_secs(i));
            }
        }
        let n = number("0812777");
        let later = t0 + Duration::from_secs(6);
        assert_eq!(
            all.new_call(later, facts(Some(&n), "10.0.0.1")).0,
            FloodVerdict::Challenge(ChallengeReason::EveryNewCall)
        );
        assert_eq!(
            silent_prompt.new_call(later, facts(Some(&n), "10.0.0.1")).0,
            FloodVerdict::Admit
        );
    }

    #[test]
    fn a_flood_of_random_numbers_and_sources_keeps_memory_bounded() {
        let t0 = Instant::now();
        let mut g = FloodGuard::new(&FloodRules {
            tracked: 1_000,
            ..rules()
        });
        for i in 0..50_000u32 {
            let n = number(&format!("0812{i:08}"));
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let at = t0 + Duration::from_millis(u64::from(i));
            g.new_call(
                at,
                NewCallFacts {
                    number: Some(&n),
                    source: Some(ip),
                    urn_with_location: false,
                    known_genuine: false,
                },
            );
            g.passed(Some(&n), at);
        }
        assert!(g.tracked() <= 3_000, "{}", g.tracked());
    }
}
