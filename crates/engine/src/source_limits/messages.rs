//! Message budgets per source (token buckets) before parsing, with a bounded source table,
//! per-network overflow buckets and each source's share of the call queue.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{Lane, SourceKey, Trusted, canonical};

/// A message budget: `rate` per second on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub rate_per_s: f64,
    pub burst: f64,
}

/// The budgets of one source, one per lane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budgets {
    /// New INVITEs: over it, only emergency and test calls pass.
    pub invite: Budget,
    /// In-dialog requests and responses: generous, so the calls of a busy SBC pass.
    pub call: Budget,
    /// Everything else: OPTIONS, REGISTER, garbage.
    pub bulk: Budget,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(budget: Budget, now: Instant) -> Self {
        Bucket {
            tokens: budget.burst,
            updated: now,
        }
    }

    fn refill(&mut self, budget: Budget, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * budget.rate_per_s).min(budget.burst);
        self.updated = now.max(self.updated);
    }

    fn take(&mut self, budget: Budget, now: Instant) -> bool {
        self.refill(budget, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn is_full(&self, budget: Budget, now: Instant) -> bool {
        let mut b = *self;
        b.refill(budget, now);
        b.tokens >= budget.burst
    }
}

/// One source: a budget per lane, so a source's flood of OPTIONS or of INVITEs to other
/// numbers cannot starve the ACKs and BYEs of its own calls.
#[derive(Debug, Clone, Copy)]
struct Entry {
    invite: Bucket,
    call: Bucket,
    bulk: Bucket,
    /// Dropped since the last report.
    dropped: u64,
}

impl Entry {
    fn new(budgets: Budgets, now: Instant) -> Self {
        Entry {
            invite: Bucket::full(budgets.invite, now),
            call: Bucket::full(budgets.call, now),
            bulk: Bucket::full(budgets.bulk, now),
            dropped: 0,
        }
    }

    fn at_rest(&self, budgets: Budgets, now: Instant) -> bool {
        self.dropped == 0
            && self.invite.is_full(budgets.invite, now)
            && self.call.is_full(budgets.call, now)
            && self.bulk.is_full(budgets.bulk, now)
    }
}

/// Per-source message budgets (one per lane) in a table of bounded size. Sources that find
/// the table full (and nothing in it at rest) share overflow budgets, one per network (IPv4
/// /24, IPv6 /48) hashed into [`OVERFLOW_BUCKETS`]: spoofed or rotating sources cost memory
/// only up to the bound, and a flood from one network, however many addresses it uses, only
/// ever empties its own bucket, not the one a quiet peer elsewhere falls back to.
#[derive(Debug)]
pub struct MessageLimiter {
    budgets: Budgets,
    trusted: Trusted,
    /// The agencies of the dialplan: exempt like trusted networks (they answer our INVITEs;
    /// their 18x and 200 must never be dropped), updated when the plan is reloaded.
    agencies: HashSet<IpAddr>,
    max_sources: usize,
    table: HashMap<SourceKey, Entry>,
    overflow: Vec<Entry>,
    /// Keys the overflow hash, so an outsider cannot pick networks that share a peer's bucket.
    seed: u64,
    last_sweep: Option<Instant>,
}

/// How many overflow budgets sources beyond the table share (by network).
pub const OVERFLOW_BUCKETS: usize = 1024;

/// What a limiter has dropped since its last report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DropReport {
    pub dropped: u64,
    /// Sources that had messages dropped.
    pub sources: usize,
    /// The sources with most drops, most first (at most [`DropReport::TOP`]).
    pub top: Vec<(SourceKey, u64)>,
    /// Drops charged to the shared overflow budgets (sources beyond the table's size).
    pub overflow: u64,
    /// Of the overflow budgets, how many had drops.
    pub overflow_buckets: usize,
}

impl DropReport {
    pub const TOP: usize = 5;

    pub fn is_empty(&self) -> bool {
        self.dropped == 0
    }
}

impl std::fmt::Display for DropReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} message(s) over the per-source budget dropped from {} source(s)",
            self.dropped, self.sources
        )?;
        if !self.top.is_empty() {
            let top: Vec<String> = self.top.iter().map(|(k, n)| format!("{k} {n}")).collect();
            write!(f, "; most: {}", top.join(", "))?;
        }
        if self.overflow > 0 {
            write!(
                f,
                "; {} from sources beyond the table ({} shared budget(s), one per network)",
                self.overflow, self.overflow_buckets
            )?;
        }
        Ok(())
    }
}

/// A full table is swept for sources at rest at most this often: a stream of new sources must
/// not make every message walk the table.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl MessageLimiter {
    /// `seed` keys the hash that spreads networks over the overflow budgets.
    pub fn new(
        budgets: Budgets,
        trusted: Trusted,
        max_sources: usize,
        seed: u64,
        now: Instant,
    ) -> Self {
        MessageLimiter {
            budgets,
            trusted,
            agencies: HashSet::new(),
            max_sources: max_sources.max(1),
            table: HashMap::new(),
            overflow: vec![Entry::new(budgets, now); OVERFLOW_BUCKETS],
            seed,
            last_sweep: None,
        }
    }

    /// The dialplan's agency addresses (replacing the previous plan's).
    pub fn set_agencies(&mut self, agencies: impl IntoIterator<Item = IpAddr>) {
        self.agencies = agencies.into_iter().map(canonical).collect();
    }

    /// Whether `ip` is exempt from the budgets: a trusted network or an agency of the plan.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.contains(ip) || self.agencies.contains(&canonical(ip))
    }

    /// Whether a message of `lane` from `ip` may go on (and takes one unit of its budget); a
    /// refusal is counted for the next report. An INVITE over the budget still may when
    /// `emergency()` says it dials an emergency or test number (asked only then).
    pub fn allow(
        &mut self,
        now: Instant,
        ip: IpAddr,
        lane: Lane,
        emergency: impl FnOnce() -> bool,
    ) -> bool {
        if self.is_trusted(ip) {
            return true;
        }
        let key = SourceKey::of(ip);
        if !self.table.contains_key(&key) && self.table.len() >= self.max_sources {
            self.sweep(now);
        }
        let budgets = self.budgets;
        let entry = if self.table.len() < self.max_sources || self.table.contains_key(&key) {
            self.table
                .entry(key)
                .or_insert_with(|| Entry::new(budgets, now))
        } else {
            let bucket = self.overflow_bucket(ip);
            match self.overflow.get_mut(bucket) {
                Some(entry) => entry,
                None => return false,
            }
        };
        let ok = match lane {
            Lane::Invite => entry.invite.take(budgets.invite, now),
            Lane::Call => entry.call.take(budgets.call, now),
            Lane::Bulk => entry.bulk.take(budgets.bulk, now),
        };
        if ok || (lane == Lane::Invite && emergency()) {
            return true;
        }
        entry.dropped += 1;
        false
    }

    /// The overflow budget of `ip`'s network: IPv4 /24, IPv6 /48 (a site's usual share).
    fn overflow_bucket(&self, ip: IpAddr) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.seed.hash(&mut h);
        match canonical(ip) {
            IpAddr::V4(v4) => (u32::from(v4) >> 8).hash(&mut h),
            IpAddr::V6(v6) => (u128::from(v6) >> 80).hash(&mut h),
        }
        (h.finish() % OVERFLOW_BUCKETS as u64) as usize
    }

    /// Forgets sources whose budget is full again (they are as good as new) and that have no
    /// unreported drops.
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|at| now.saturating_duration_since(at) < SWEEP_EVERY)
        {
            return;
        }
        self.last_sweep = Some(now);
        let budgets = self.budgets;
        self.table.retain(|_, e| !e.at_rest(budgets, now));
    }

    pub fn sources(&self) -> usize {
        self.table.len()
    }

    /// The drops since the last report; resets the counts.
    pub fn take_report(&mut self) -> DropReport {
        let mut report = DropReport::default();
        for bucket in &mut self.overflow {
            let n = std::mem::take(&mut bucket.dropped);
            if n > 0 {
                report.overflow += n;
                report.overflow_buckets += 1;
            }
        }
        report.dropped = report.overflow;
        report.sources = report.overflow_buckets;
        for (key, entry) in &mut self.table {
            let n = std::mem::take(&mut entry.dropped);
            if n == 0 {
                continue;
            }
            report.dropped += n;
            report.sources += 1;
            report.top.push((*key, n));
            report.top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            report.top.truncate(DropReport::TOP);
        }
        report
    }
}

/// What each source holds in the engine's call queue (messages waiting, not yet handled), so
/// one host cannot fill it: a source at its share has its further messages sent the bulk way
/// (emergency INVITEs excepted, decided by the caller). Entries exist only while a source has
/// messages waiting, so the table is bounded by the queue.
#[derive(Debug)]
pub struct QueueShare {
    per_source: u32,
    held: HashMap<SourceKey, u32>,
}

impl QueueShare {
    pub fn new(per_source: u32) -> Self {
        QueueShare {
            per_source: per_source.max(1),
            held: HashMap::new(),
        }
    }

    /// Takes a place for a message from `ip`; `false` when the source has its share.
    pub fn enter(&mut self, ip: IpAddr) -> bool {
        let held = self.held.entry(SourceKey::of(ip)).or_insert(0);
        if *held >= self.per_source {
            return false;
        }
        *held += 1;
        true
    }

    /// A message that took a place with [`QueueShare::enter`] has been handled.
    pub fn leave(&mut self, ip: IpAddr) {
        let key = SourceKey::of(ip);
        match self.held.get_mut(&key) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.held.remove(&key);
            }
            None => {}
        }
    }

    /// Sources with messages waiting.
    pub fn sources(&self) -> usize {
        self.held.len()
    }
}
