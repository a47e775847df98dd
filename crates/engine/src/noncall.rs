//! Traffic that belongs to no emergency call (OPTIONS, garbage, non-emergency INVITEs, stray
//! requests and responses) is counted, not kept: per source address and kind, per window
//! (a minute by default), with only the first message of each kind per source and window
//! stored verbatim. Replies to it are rationed per source by a token bucket, one for OPTIONS
//! (the keep-alives of an SBC must not go unanswered because the same SBC also sends stray
//! requests or INVITEs to ordinary numbers) and one for everything else. Trusted sources and
//! the agencies' addresses are never rationed. Everything here is bounded: the table of
//! sources has a fixed size (later sources share one "other sources" row, except those that
//! placed an emergency call recently, remembered in a table of their own), and so has the
//! number of samples per window.
//!
//! Bounds per window, with the defaults: at most `max_sources + 1` = 4,097 count records,
//! `samples_per_window` = 300 sampled messages (each with its reply, so 600 SIP rows), every
//! sample cut to `sample_max_bytes` = 4 KiB: about 3 MB of log per minute at worst, whatever
//! the rate (plus one row per recent emergency caller that found the table full). Memory: one
//! small entry (under 100 bytes) per source and per remembered caller, so under 1 MB.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::source_limits::Trusted;

/// What a message outside every call was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NonCallKind {
    /// Not parseable as SIP (answered 400 when a reply can be built).
    Garbage,
    /// OPTIONS outside a dialog (keep-alives, scanners).
    Options,
    /// An INVITE to a number that is not in the dialplan (answered 404 statelessly).
    NonEmergencyInvite,
    /// Any other request outside every call: BYE/INFO for an unknown dialog, REGISTER,
    /// a CANCEL that matches nothing, a request we refuse (420, 415).
    StrayRequest,
    /// An ACK that matches no dialog (including the ACK for a stateless 404).
    StrayAck,
    /// A response that matches none of our transactions.
    StrayResponse,
}

impl NonCallKind {
    pub const ALL: [NonCallKind; 6] = [
        NonCallKind::Garbage,
        NonCallKind::Options,
        NonCallKind::NonEmergencyInvite,
        NonCallKind::StrayRequest,
        NonCallKind::StrayAck,
        NonCallKind::StrayResponse,
    ];

    fn index(self) -> usize {
        match self {
            NonCallKind::Garbage => 0,
            NonCallKind::Options => 1,
            NonCallKind::NonEmergencyInvite => 2,
            NonCallKind::StrayRequest => 3,
            NonCallKind::StrayAck => 4,
            NonCallKind::StrayResponse => 5,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NonCallKind::Garbage => "garbage",
            NonCallKind::Options => "options",
            NonCallKind::NonEmergencyInvite => "non_emergency_invite",
            NonCallKind::StrayRequest => "stray_request",
            NonCallKind::StrayAck => "stray_ack",
            NonCallKind::StrayResponse => "stray_response",
        }
    }
}

const KINDS: usize = NonCallKind::ALL.len();

/// Limits for non-call traffic. Emergency INVITEs and everything inside a call, dialog or
/// transaction are never subject to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonCallLimits {
    /// Counting window: one count record per source per window.
    pub window: Duration,
    /// Sources tracked one by one; more share the "other sources" row (and its budget).
    pub max_sources: usize,
    /// Messages stored verbatim per window, over all sources (the first of each kind per
    /// source, while this lasts).
    pub samples_per_window: u32,
    /// A stored sample is cut to this many bytes.
    pub sample_max_bytes: usize,
    /// Replies per second to one source's non-call messages; beyond it they are dropped
    /// unanswered (and counted).
    pub replies_per_second: u32,
    /// Replies a source may get in a burst. OPTIONS and the other kinds have a budget each.
    pub reply_burst: u32,
    /// How long a source that placed an emergency call keeps a row of its own (it never
    /// shares the "other sources" row with a flood).
    pub caller_memory: Duration,
    /// Emergency callers remembered at most (the oldest is forgotten first).
    pub max_callers: usize,
}

impl Default for NonCallLimits {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            max_sources: 4096,
            samples_per_window: 300,
            sample_max_bytes: 4096,
            replies_per_second: 20,
            reply_burst: 100,
            caller_memory: Duration::from_secs(3600),
            max_callers: 4096,
        }
    }
}

/// What to do with one non-call message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Answer it (within the source's budget); otherwise drop it silently.
    pub reply: bool,
    /// Store it (and its reply) verbatim.
    pub sample: bool,
}

/// One source's counts for one window: a record in the call log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonCallTally {
    /// `None`: the sources that came after the table was full, together.
    pub source: Option<IpAddr>,
    pub window: Duration,
    /// Messages seen, per kind (kinds with none left out).
    pub seen: Vec<(NonCallKind, u64)>,
    /// Messages dropped without a reply (over the source's budget).
    pub unanswered: u64,
    /// Messages stored verbatim.
    pub sampled: u64,
}

impl NonCallTally {
    pub fn total(&self) -> u64 {
        self.seen.iter().map(|(_, n)| n).sum()
    }
}

impl std::fmt::Display for NonCallTally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.source {
            Some(ip) => write!(f, "source={ip}")?,
            None => f.write_str("source=other")?,
        }
        write!(f, " window_s={}", self.window.as_secs())?;
        for (kind, n) in &self.seen {
            write!(f, " {}={n}", kind.as_str())?;
        }
        write!(
            f,
            " unanswered={} sampled={}",
            self.unanswered, self.sampled
        )
    }
}

/// Counts, samples and reply budget of one source within the current window.
#[derive(Debug, Clone)]
struct Source {
    seen: [u64; KINDS],
    unanswered: u64,
    sampled: u64,
    /// Kinds already sampled this window (bit per kind).
    sampled_kinds: u8,
    /// Reply budgets, OPTIONS and the rest: when the source's next reply is due at the
    /// configured rate.
    tat: [Instant; 2],
}

/// Which reply budget a kind draws on: OPTIONS (keep-alives) apart from the rest.
fn bucket(kind: NonCallKind) -> usize {
    usize::from(kind != NonCallKind::Options)
}

impl Source {
    fn new(now: Instant) -> Self {
        Self {
            seen: [0; KINDS],
            unanswered: 0,
            sampled: 0,
            sampled_kinds: 0,
            tat: [now; 2],
        }
    }

    /// GCRA: each reply moves the source's theoretical arrival time on by one interval; a
    /// reply is allowed while that time is at most a burst ahead of now.
    fn take_token(&mut self, now: Instant, limits: &NonCallLimits, bucket: usize) -> bool {
        if limits.replies_per_second == 0 || limits.reply_burst == 0 {
            return false;
        }
        let Some(tat) = self.tat.get_mut(bucket) else {
            return false;
        };
        let interval = Duration::from_secs(1) / limits.replies_per_second;
        let due = (*tat).max(now);
        if due > now + interval * (limits.reply_burst - 1) {
            return false;
        }
        *tat = due + interval;
        true
    }

    fn tally(&self, source: Option<IpAddr>, window: Duration) -> Option<NonCallTally> {
        let seen: Vec<(NonCallKind, u64)> = NonCallKind::ALL
            .iter()
            .map(|&k| (k, self.seen[k.index()]))
            .filter(|(_, n)| *n > 0)
            .collect();
        (!seen.is_empty()).then_some(NonCallTally {
            source,
            window,
            seen,
            unanswered: self.unanswered,
            sampled: self.sampled,
        })
    }
}

/// The counter, sampler and reply budget for all non-call traffic. Pure: time is an argument.
#[derive(Debug)]
pub struct NonCallGate {
    limits: NonCallLimits,
    window_start: Instant,
    sources: HashMap<IpAddr, Source>,
    /// Everyone after the table filled up, as one source.
    other: Option<Source>,
    samples_left: u32,
    /// Sampling can be switched off (low disk) while counting goes on.
    sampling: bool,
    /// Never rationed: the configured trusted networks (the carriers' SBCs)…
    trusted: Trusted,
    /// …and the agencies' SIP addresses (their keep-alives and stray requests are answered).
    /// The port counts: a caller's SBC on an agency's host is rationed like anyone.
    agencies: HashSet<SocketAddr>,
    /// Sources that placed an emergency call, and when they last did: each keeps a row of
    /// its own even when the table is full (bounded by `max_callers`, kept across windows).
    callers: HashMap<IpAddr, Instant>,
}

impl NonCallGate {
    pub fn new(limits: NonCallLimits, now: Instant) -> Self {
        Self {
            samples_left: limits.samples_per_window,
            limits,
            window_start: now,
            sources: HashMap::new(),
            other: None,
            sampling: true,
            trusted: Trusted::default(),
            agencies: HashSet::new(),
            callers: HashMap::new(),
        }
    }

    /// Networks whose non-call messages are always answered (the transport's
    /// `trusted_sources`).
    pub fn set_trusted(&mut self, trusted: Trusted) {
        self.trusted = trusted;
    }

    /// The agencies' SIP addresses (from the dialplan's targets): always answered.
    pub fn set_agencies(&mut self, agencies: HashSet<SocketAddr>) {
        self.agencies = agencies;
    }

    /// Remembers that `source` placed an emergency call now: for `caller_memory` it gets a
    /// row (and budgets) of its own, whatever floods the table.
    pub fn note_caller(&mut self, now: Instant, source: IpAddr) {
        let max = self.limits.max_callers;
        if max == 0 {
            return;
        }
        if !self.callers.contains_key(&source) && self.callers.len() >= max {
            // Full: forget the caller heard from longest ago. A scan, but only when a new
            // caller finds the table full.
            let oldest = self
                .callers
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(ip, _)| *ip);
            if let Some(ip) = oldest {
                self.callers.remove(&ip);
            }
        }
        self.callers.insert(source, now);
    }

    /// Emergency callers remembered now.
    pub fn remembered_callers(&self) -> usize {
        self.callers.len()
    }

    fn is_recent_caller(&self, now: Instant, source: IpAddr) -> bool {
        self.callers
            .get(&source)
            .is_some_and(|at| now.saturating_duration_since(*at) < self.limits.caller_memory)
    }

    fn is_exempt(&self, from: SocketAddr) -> bool {
        self.agencies.contains(&from) || self.trusted.contains(from.ip())
    }

    pub fn limits(&self) -> &NonCallLimits {
        &self.limits
    }

    /// Switches the storing of samples on or off (counts are kept either way).
    pub fn set_sampling(&mut self, on: bool) {
        self.sampling = on;
    }

    /// Sources tracked one by one in the current window.
    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    /// Counts one message and says whether to answer and store it. Call [`Self::roll`] first
    /// so the message lands in the right window.
    pub fn observe(
        &mut self,
        now: Instant,
        from: SocketAddr,
        kind: NonCallKind,
        wants_reply: bool,
    ) -> Verdict {
        let limits = self.limits;
        let exempt = wants_reply && self.is_exempt(from);
        let source = from.ip();
        let own_row = self.sources.contains_key(&source)
            || self.sources.len() < limits.max_sources
            || self.is_recent_caller(now, source);
        let entry = if own_row {
            self.sources
                .entry(source)
                .or_insert_with(|| Source::new(now))
        } else {
            self.other.get_or_insert_with(|| Source::new(now))
        };
        entry.seen[kind.index()] += 1;
        let reply = wants_reply && (exempt || entry.take_token(now, &limits, bucket(kind)));
        if wants_reply && !reply {
            entry.unanswered += 1;
        }
        let bit = 1u8 << kind.index();
        let sample = self.sampling && self.samples_left > 0 && entry.sampled_kinds & bit == 0;
        if sample {
            entry.sampled_kinds |= bit;
            entry.sampled += 1;
            self.samples_left -= 1;
        }
        Verdict { reply, sample }
    }

    /// When the current window closes, if anything was counted in it.
    pub fn next_deadline(&self) -> Option<Instant> {
        (!self.sources.is_empty() || self.other.is_some())
            .then(|| self.window_start + self.limits.window)
    }

    /// Closes the window if its time is up: returns one tally per source seen in it (the
    /// "other sources" row last) and starts a fresh, empty table.
    pub fn roll(&mut self, now: Instant) -> Vec<NonCallTally> {
        let window = self.limits.window;
        if now < self.window_start + window || window.is_zero() {
            return Vec::new();
        }
        let periods =
            now.saturating_duration_since(self.window_start).as_nanos() / window.as_nanos().max(1);
        let periods = u32::try_from(periods).unwrap_or(u32::MAX);
        self.window_start += window.saturating_mul(periods);
        self.samples_left = self.limits.samples_per_window;
        let memory = self.limits.caller_memory;
        self.callers
            .retain(|_, at| now.saturating_duration_since(*at) < memory);
        self.tallies(window)
    }

    /// The counts so far in the current window (at shutdown), emptying the table.
    pub fn flush(&mut self, now: Instant) -> Vec<NonCallTally> {
        let so_far = now.saturating_duration_since(self.window_start);
        self.tallies(so_far.min(self.limits.window))
    }

    fn tallies(&mut self, window: Duration) -> Vec<NonCallTally> {
        let mut tallies: Vec<NonCallTally> = self
            .sources
            .drain()
            .filter_map(|(ip, s)| s.tally(Some(ip), window))
            .collect();
        // Busiest first, so a reader sees the flood at the top.
        tallies.sort_by_key(|t| std::cmp::Reverse(t.total()));
        tallies.extend(self.other.take().and_then(|s| s.tally(None, window)));
        // Give the memory of a flood back.
        if self.sources.capacity() > 64 {
            self.sources.shrink_to(64);
        }
        tallies
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // Instant::now() once, as the origin of virtual time
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    fn at(n: u32) -> SocketAddr {
        SocketAddr::new(ip(n), 5060)
    }

    #[test]
    fn one_source_is_sampled_once_per_kind_and_rationed() {
        let t0 = Instant::now();
        let mut gate = NonCallGate::new(NonCallLimits::default(), t0);
        let mut replies = 0;
        let mut samples = 0;
        // 100,000 OPTIONS in one second from one host.
        for i in 0..100_000u32 {
            let now = t0 + Duration::from_micros(u64::from(i) * 10);
            let v = gate.observe(now, at(1), NonCallKind::Options, true);
            replies += u32::from(v.reply);
            samples += u32::from(v.sample);
        }
        assert_eq!(samples, 1);
        // A burst of 100 and 20/s for one second.
        assert!((100..=121).contains(&replies), "{replies}");
        assert!(gate.roll(t0 + Duration::from_secs(59)).is_empty());
        let tallies = gate.roll(t0 + Duration::from_secs(60));
        assert_eq!(tallies.len(), 1);
        let t = &tallies[0];
        assert_eq!(t.seen, vec![(NonCallKind::Options, 100_000)]);
        assert_eq!(t.unanswered, 100_000 - u64::from(replies));
        assert_eq!(t.sampled, 1);
        assert_eq!(gate.tracked_sources(), 0);
        assert_eq!(gate.next_deadline(), None);
    }

    #[test]
    fn many_sources_fill_the_table_then_share_the_other_row() {
        let t0 = Instant::now();
        let limits = NonCallLimits::default();
        let mut gate = NonCallGate::new(limits, t0);
        let mut samples = 0;
        for i in 0..100_000u32 {
            let kind = NonCallKind::ALL[(i % 6) as usize];
            let v = gate.observe(t0, at(i % 5000), kind, true);
            samples += u32::from(v.sample);
            assert!(gate.tracked_sources() <= limits.max_sources);
        }
        assert_eq!(samples, limits.samples_per_window);
        let tallies = gate.roll(t0 + limits.window);
        assert_eq!(tallies.len(), limits.max_sources + 1);
        assert_eq!(tallies.last().and_then(|t| t.source), None);
        let total: u64 = tallies.iter().map(NonCallTally::total).sum();
        assert_eq!(total, 100_000);
    }

    #[test]
    fn options_have_a_budget_of_their_own() {
        let t0 = Instant::now();
        let limits = NonCallLimits::default();
        let mut gate = NonCallGate::new(limits, t0);
        // A carrier's SBC sends many INVITEs to ordinary numbers: their 404s run out…
        let answered_404 = (0..1000)
            .filter(|_| {
                gate.observe(t0, at(1), NonCallKind::NonEmergencyInvite, true)
                    .reply
            })
            .count();
        assert_eq!(answered_404, limits.reply_burst as usize);
        assert!(
            !gate
                .observe(t0, at(1), NonCallKind::StrayRequest, true)
                .reply
        );
        // …but its keep-alive is still answered.
        assert!(gate.observe(t0, at(1), NonCallKind::Options, true).reply);
    }

    #[test]
    fn trusted_sources_and_agencies_are_never_rationed() {
        let t0 = Instant::now();
        let mut gate = NonCallGate::new(NonCallLimits::default(), t0);
        gate.set_trusted(Trusted(vec!["10.0.0.0/24".parse().expect("net")]));
        let agency = SocketAddr::from(([127, 0, 0, 1], 5081));
        gate.set_agencies([agency].into_iter().collect());
        for source in [at(1), agency] {
            for kind in [NonCallKind::NonEmergencyInvite, NonCallKind::Options] {
                let answered = (0..10_000)
                    .filter(|_| gate.observe(t0, source, kind, true).reply)
                    .count();
                assert_eq!(answered, 10_000, "{source} {kind:?}");
            }
        }
        // Still counted.
        let tallies = gate.roll(t0 + Duration::from_secs(60));
        assert_eq!(tallies.iter().map(NonCallTally::total).sum::<u64>(), 40_000);
        assert!(tallies.iter().all(|t| t.unanswered == 0));
        // Everyone else is rationed as before, the agency's host on another port too.
        let t1 = t0 + Duration::from_secs(60);
        let caller_on_agency_host = SocketAddr::from(([127, 0, 0, 1], 40000));
        assert!(
            (0..1000)
                .filter(|_| {
                    gate.observe(t1, caller_on_agency_host, NonCallKind::Options, true)
                        .reply
                })
                .count()
                < 1000
        );
        assert!(
            (0..1000)
                .filter(|_| gate.observe(t1, at(300), NonCallKind::Options, true).reply)
                .count()
                < 1000
        );
    }

    #[test]
    fn a_recent_emergency_caller_never_shares_the_other_row_with_a_flood() {
        let t0 = Instant::now();
        let limits = NonCallLimits {
            max_sources: 100,
            reply_burst: 5,
            ..NonCallLimits::default()
        };
        let mut gate = NonCallGate::new(limits, t0);
        let sbc = IpAddr::from([192, 0, 2, 77]);
        gate.note_caller(t0, sbc);
        // Minutes later, right after a rollover, a flood from 1,000 sources fills the table
        // (and drains the shared row's budgets) before the SBC's keep-alive arrives.
        let t1 = t0 + limits.window * 5;
        gate.roll(t1);
        for i in 0..100_000u32 {
            gate.observe(t1, at(i % 1000), NonCallKind::Options, true);
        }
        assert_eq!(gate.tracked_sources(), limits.max_sources);
        assert!(!gate.observe(t1, at(5000), NonCallKind::Options, true).reply);
        let sbc_port = SocketAddr::new(sbc, 5060);
        assert!(gate.observe(t1, sbc_port, NonCallKind::Options, true).reply);
        let tallies = gate.roll(t1 + limits.window);
        let sbc_row = tallies.iter().find(|t| t.source == Some(sbc));
        assert_eq!(sbc_row.map(NonCallTally::total), Some(1));
        // Forgotten after `caller_memory`, and the memory is bounded.
        let late = t0 + limits.caller_memory + limits.window;
        gate.roll(late);
        assert_eq!(gate.remembered_callers(), 0);
        for i in 0..10_000u32 {
            gate.note_caller(late, ip(i));
        }
        assert_eq!(gate.remembered_callers(), limits.max_callers);
    }

    #[test]
    fn the_budget_refills_and_sampling_restarts_each_window() {
        let t0 = Instant::now();
        let limits = NonCallLimits {
            reply_burst: 2,
            replies_per_second: 1,
            ..NonCallLimits::default()
        };
        let mut gate = NonCallGate::new(limits, t0);
        let v: Vec<Verdict> = (0..3)
            .map(|_| gate.observe(t0, at(1), NonCallKind::StrayRequest, true))
            .collect();
        assert_eq!(
            v.iter().map(|v| v.reply).collect::<Vec<_>>(),
            [true, true, false]
        );
        let later = t0 + Duration::from_secs(1);
        assert!(
            gate.observe(later, at(1), NonCallKind::StrayRequest, true)
                .reply
        );
        // A message that wants no reply spends no budget.
        assert!(
            !gate
                .observe(later, at(1), NonCallKind::StrayAck, false)
                .reply
        );
        let next = t0 + limits.window * 3 + Duration::from_secs(1);
        assert_eq!(gate.roll(next).len(), 1);
        assert_eq!(gate.next_deadline(), None);
        assert!(
            gate.observe(next, at(1), NonCallKind::StrayRequest, true)
                .sample
        );
        assert_eq!(
            gate.next_deadline(),
            Some(t0 + limits.window * 4),
            "windows stay aligned"
        );
    }
}
