//! Per-source limits for the transport shell: a message budget per source address (token
//! bucket), TCP connection counts per source and in total, the deadlines of one stream
//! connection, and the cheap look at a message's first line that decides which of these
//! apply. Pure: time is an argument, tables are bounded.
//!
//! An outsider chooses how much we spend on it; these limits make that bounded per source
//! and in total, while an emergency INVITE is never refused here: INVITEs have a budget of
//! their own, and over it only those whose Request-URI the dialplan calls emergency or test
//! pass.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use siaga_dialplan::{Classified, Dialplan};

/// Who a limit is kept for: an IPv4 address, or an IPv6 /64 (one host's usual share; keying
/// by full address would let one host take any number of entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey(IpAddr);

impl SourceKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => SourceKey(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    SourceKey(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

impl std::fmt::Display for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a network: write an address or ADDRESS/PREFIX, e.g. 10.0.0.0/8")]
pub struct IpNetError(String);

impl std::str::FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IpNetError(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) if self.addr.is_ipv4() => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            other => other,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Sources exempt from every per-source limit (the centre's own SBCs, say).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trusted(pub Vec<IpNet>);

impl Trusted {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }
}

/// How a message is treated before it is parsed, from its first bytes only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// A new INVITE: its own budget per source, and over it only emergency and test calls
    /// pass; never queued behind bulk traffic.
    Invite,
    /// Requests that only make sense inside a call (ACK, BYE, CANCEL, re-INVITEs and OPTIONS
    /// with a To-tag, …) and responses: within the source's budget, ahead of bulk traffic.
    Call,
    /// Everything else (OPTIONS, REGISTER, garbage): within the budget, and dropped when the
    /// bulk queue is full.
    Bulk,
}

impl Lane {
    /// Looks at the first token (after keep-alive line ends) and, for INVITE and OPTIONS, at
    /// the To header's tag: no parsing, no allocation.
    pub fn of(message: &[u8]) -> Lane {
        let rest = skip_line_ends(message);
        let token_end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        match rest.get(..token_end).unwrap_or_default() {
            // In a dialog: a re-INVITE, or an SBC's or agency's session check, which must be
            // answered in a flood or the peer tears down a live call.
            b"INVITE" | b"OPTIONS" if has_to_tag(rest) => Lane::Call,
            b"INVITE" => Lane::Invite,
            b"ACK" | b"BYE" | b"CANCEL" | b"PRACK" | b"UPDATE" | b"INFO" | b"REFER" | b"NOTIFY"
            | b"SIP/2.0" => Lane::Call,
            _ => Lane::Bulk,
        }
    }
}

fn skip_line_ends(message: &[u8]) -> &[u8] {
    let start = message
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(message.len());
    message.get(start..).unwrap_or_default()
}

/// Whether the header section has a To (or `t`) header with a `tag` parameter.
fn has_to_tag(message: &[u8]) -> bool {
    let mut lines = message.split(|&b| b == b'\n');
    lines.next(); // the request line
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let name = name.trim_ascii();
        if name.eq_ignore_ascii_case(b"to") || name.eq_ignore_ascii_case(b"t") {
            // A parameter: after a `;`, outside the URI's angle brackets when it has them.
            let params = match value.iter().rposition(|&b| b == b'>') {
                Some(close) => value.get(close..).unwrap_or_default(),
                None => value,
            };
            return params.split(|&b| b == b';').skip(1).any(|p| {
                let p = p.trim_ascii_start();
                p.len() > 3
                    && p[..3].eq_ignore_ascii_case(b"tag")
                    && p[3..].trim_ascii_start().starts_with(b"=")
            });
        }
    }
    false
}

/// The Request-URI of a request, from its first line (`None` when there is no such token).
fn request_uri(message: &[u8]) -> Option<&str> {
    let rest = skip_line_ends(message);
    let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let line = rest.get(..line_end)?;
    let mut tokens = line.split(|&b| b == b' ').filter(|t| !t.is_empty());
    tokens.next()?;
    std::str::from_utf8(tokens.next()?).ok()
}

/// Whether a request's Request-URI dials what `plan` answers as an emergency or a test call:
/// the check that lets an INVITE over its source's budget through. Costs one look at the
/// request line and one plan lookup, no parsing of the message.
pub fn dials_emergency(plan: &Dialplan, message: &[u8]) -> bool {
    request_uri(message).is_some_and(|uri| !matches!(plan.classify(uri), Classified::NotEmergency))
}

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

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source has its share of connections open.
    PerSource,
    /// The gateway has its total open.
    Total,
    /// Accepting would eat into the descriptors kept for calls (RTP, recordings, database).
    Descriptors,
}

/// Open inbound TCP connections per source and in total. Entries exist only while a source
/// has connections open, so the tables are bounded by the total. At the total, the
/// connection that has gone longest without a message and carries no call makes room for a
/// new one: idle connections from a few networks cannot lock every other peer out.
#[derive(Debug)]
pub struct ConnLimiter {
    per_source: u32,
    max_total: usize,
    trusted: Trusted,
    open: HashMap<SourceKey, u32>,
    /// Each counted connection (by the shell's id): its source and its last complete message.
    conns: HashMap<u64, (IpAddr, Instant)>,
    total: usize,
    refused: [u64; 3],
    evicted: u64,
}

/// A connection counted by [`ConnLimiter::open`], and the one closed to make room for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// The connection the shell must now close (already uncounted).
    pub evict: Option<u64>,
}

impl ConnLimiter {
    pub fn new(per_source: u32, max_total: usize, trusted: Trusted) -> Self {
        ConnLimiter {
            per_source,
            max_total,
            trusted,
            open: HashMap::new(),
            conns: HashMap::new(),
            total: 0,
            refused: [0; 3],
            evicted: 0,
        }
    }

    /// Counts a new connection `conn` from `ip`, or says why it is refused (and counts that).
    /// At the total, the connection idle longest among those for which `carries_call` says
    /// no is uncounted and named for the shell to close; only when every connection carries
    /// a call is the new one refused.
    pub fn open(
        &mut self,
        ip: IpAddr,
        conn: u64,
        now: Instant,
        carries_call: impl Fn(u64) -> bool,
    ) -> Result<Opened, Refusal> {
        let key = SourceKey::of(ip);
        let count = self.open.get(&key).copied().unwrap_or(0);
        if count >= self.per_source && !self.trusted.contains(ip) {
            return Err(self.refuse(Refusal::PerSource));
        }
        let mut evict = None;
        if self.total >= self.max_total {
            let victim = self
                .conns
                .iter()
                .filter(|(id, _)| !carries_call(**id))
                .min_by_key(|(id, (_, last))| (*last, **id))
                .map(|(id, _)| *id);
            let Some(victim) = victim else {
                return Err(self.refuse(Refusal::Total));
            };
            self.close(victim);
            self.evicted += 1;
            evict = Some(victim);
        }
        *self.open.entry(key).or_insert(0) += 1;
        self.conns.insert(conn, (ip, now));
        self.total += 1;
        Ok(Opened { evict })
    }

    /// A complete message arrived on `conn`.
    pub fn activity(&mut self, conn: u64, now: Instant) {
        if let Some((_, last)) = self.conns.get_mut(&conn) {
            *last = now;
        }
    }

    /// Counts a refusal decided elsewhere (descriptors).
    pub fn refuse(&mut self, why: Refusal) -> Refusal {
        self.refused[why as usize] += 1;
        why
    }

    /// A connection counted by [`ConnLimiter::open`] is gone (nothing if it was evicted).
    pub fn close(&mut self, conn: u64) {
        let Some((ip, _)) = self.conns.remove(&conn) else {
            return;
        };
        let key = SourceKey::of(ip);
        match self.open.get_mut(&key) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.open.remove(&key);
            }
            None => {}
        }
        self.total = self.total.saturating_sub(1);
    }

    /// Connections closed to make room since the last call; resets the count.
    pub fn take_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.evicted)
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Refusals since the last call, as (per source, total, descriptors); resets them.
    pub fn take_refused(&mut self) -> (u64, u64, u64) {
        let [a, b, c] = std::mem::take(&mut self.refused);
        (a, b, c)
    }
}

/// Whether a descriptor just accepted still leaves the reserve free. Descriptors are handed
/// out lowest first, so descriptor number `fd` means at least `fd + 1` are in use: a cheap
/// lower bound, no directory walk.
pub fn leaves_reserve(fd: u64, limit: u64, reserve: u64) -> bool {
    fd + 1 + reserve <= limit
}

/// The reserve actually kept under a file limit: at most half of it, so a small limit still
/// lets some TCP in.
pub fn effective_reserve(limit: u64, reserve: u64) -> u64 {
    reserve.min(limit / 2)
}

/// The timings of one stream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTimeouts {
    /// A whole message, headers and body, must arrive within this from its first byte.
    pub message: Duration,
    /// A connection carrying no call closes after this long without a message.
    pub idle: Duration,
    /// A connection carrying a call (or opened by us to an agency) closes after this long
    /// without a message.
    pub idle_with_call: Duration,
}

/// Why a stream connection is closed by its deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamExpiry {
    /// A message started and did not complete in time (slowloris, a short body).
    IncompleteMessage(Duration),
    Idle(Duration),
}

impl std::fmt::Display for StreamExpiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamExpiry::IncompleteMessage(d) => write!(
                f,
                "message not complete within {} ms of its first byte",
                d.as_millis()
            ),
            StreamExpiry::Idle(d) => write!(f, "no message for {} s", d.as_secs()),
        }
    }
}

/// Deadline arithmetic of one stream connection: only complete messages count as activity,
/// so bytes trickled one at a time cannot keep a connection open.
#[derive(Debug, Clone)]
pub struct StreamClock {
    timeouts: StreamTimeouts,
    message_started: Option<Instant>,
    last_message: Instant,
}

impl StreamClock {
    pub fn new(timeouts: StreamTimeouts, now: Instant) -> Self {
        StreamClock {
            timeouts,
            message_started: None,
            last_message: now,
        }
    }

    /// After the bytes of one read went through the framer: `complete` messages came out and
    /// `partial` says whether a message has begun and is not complete yet.
    pub fn on_read(&mut self, now: Instant, complete: usize, partial: bool) {
        if complete > 0 {
            self.last_message = now;
            // A partial message after complete ones started in this read.
            self.message_started = None;
        }
        if !partial {
            self.message_started = None;
        } else if self.message_started.is_none() {
            self.message_started = Some(now);
        }
    }

    /// When to look again, and what expires then.
    pub fn next(&self, carries_call: bool) -> (Instant, StreamExpiry) {
        let idle = if carries_call {
            self.timeouts.idle_with_call
        } else {
            self.timeouts.idle
        };
        let idle_at = (self.last_message + idle, StreamExpiry::Idle(idle));
        match self.message_started {
            Some(start) => {
                let message_at = (
                    start + self.timeouts.message,
                    StreamExpiry::IncompleteMessage(self.timeouts.message),
                );
                if message_at.0 <= idle_at.0 {
                    message_at
                } else {
                    idle_at
                }
            }
            None => idle_at,
        }
    }

    /// What has expired at `now`, if anything.
    pub fn expired(&self, now: Instant, carries_call: bool) -> Option<StreamExpiry> {
        let (at, what) = self.next(carries_call);
        (now >= at).then_some(what)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    const BUDGET: Budget = Budget {
        rate_per_s: 100.0,
        burst: 10.0,
    };
    /// Call traffic gets ten times the rest, as by default.
    const BUDGETS: Budgets = Budgets {
        invite: Budget {
            rate_per_s: 100.0,
            burst: 300.0,
        },
        call: Budget {
            rate_per_s: 1000.0,
            burst: 100.0,
        },
        bulk: BUDGET,
    };

    #[test]
    fn a_flooding_source_gets_its_budget_and_no_more_while_others_get_theirs() {
        let t0 = Instant::now();
        let mut l = MessageLimiter::new(BUDGETS, Trusted::default(), 100, 7, t0);
        // 10,000 messages over one virtual second from one source, 1 every 100 µs.
        let mut passed = 0;
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_micros(100 * i);
            if l.allow(now, ip("192.0.2.1"), Lane::Bulk, || false) {
                passed += 1;
            }
            // Another source at 50/s, within its budget, is never refused.
            if i % 200 == 0 {
                assert!(
                    l.allow(now, ip("192.0.2.2"), Lane::Bulk, || false),
                    "at {i}"
                );
                // The flooding source's own call traffic has its own budget.
                assert!(
                    l.allow(now, ip("192.0.2.1"), Lane::Call, || false),
                    "at {i}"
                );
                assert!(
                    l.allow(now, ip("192.0.2.1"), Lane::Invite, || false),
                    "at {i}"
                );
            }
        }
        // The burst plus one second at the rate (one token of rounding either way).
        assert!((109..=111).contains(&passed), "{passed}");
        let report = l.take_report();
        assert_eq!(report.dropped, 10_000 - passed);
        assert_eq!(report.sources, 1);
        assert_eq!(
            report.top,
            vec![(SourceKey::of(ip("192.0.2.1")), 10_000 - passed)]
        );
        assert!(report.to_string().contains("192.0.2.1"), "{report}");
        assert!(l.take_report().is_empty(), "counts reset");
    }

    #[test]
    fn call_traffic_has_its_own_larger_budget() {
        let t0 = Instant::now();
        let mut l = MessageLimiter::new(BUDGETS, Trusted::default(), 100, 7, t0);
        // 5,000 responses in one virtual second: the call budget's burst plus its rate.
        let passed = (0..5000u64)
            .filter(|i| {
                let now = t0 + Duration::from_micros(200 * i);
                l.allow(now, ip("192.0.2.1"), Lane::Call, || false)
            })
            .count();
        assert!((1099..=1101).contains(&passed), "{passed}");
        // The bulk budget of the same source is untouched.
        assert_eq!(
            (0..10)
                .filter(|_| l.allow(
                    t0 + Duration::from_secs(1),
                    ip("192.0.2.1"),
                    Lane::Bulk,
                    || false
                ))
                .count(),
            10
        );
    }

    #[test]
    fn trusted_networks_are_never_limited() {
        let t0 = Instant::now();
        let trusted = Trusted(vec!["10.0.0.0/8".parse().expect("net")]);
        let mut l = MessageLimiter::new(BUDGETS, trusted, 100, 7, t0);
        assert!((0..1000).all(|_| l.allow(t0, ip("10.1.2.3"), Lane::Bulk, || false)));
        assert!(!(0..1000).all(|_| l.allow(t0, ip("11.1.2.3"), Lane::Bulk, || false)));
    }

    #[test]
    fn the_table_stays_bounded_and_sources_beyond_it_share_a_budget_per_network() {
        let t0 = Instant::now();
        let mut l = MessageLimiter::new(BUDGETS, Trusted::default(), 64, 7, t0);
        // 10,000 distinct sources at once (10.0.0.0 to 10.0.39.15: 40 /24 networks): the
        // table never exceeds its size.
        for i in 0..10_000u32 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0A00_0000 + i));
            l.allow(t0, a, Lane::Bulk, || false);
            assert!(l.sources() <= 64);
        }
        // The 9,936 sources beyond the table shared one burst of 10 per network.
        let report = l.take_report();
        assert_eq!(report.overflow_buckets, 40);
        assert_eq!(report.overflow, 10_000 - 64 - 40 * 10);
        // Once the sources are at rest again, a sweep frees the table for new ones.
        let later = t0 + Duration::from_secs(2);
        assert!(l.allow(later, ip("192.0.2.9"), Lane::Bulk, || false));
        assert!(l.sources() <= 2, "{}", l.sources());
    }

    /// 65,536 /64s of one IPv6 /48 fill the table and flood on; a quiet IPv4 peer that finds
    /// the table full still has its responses and ACKs taken, from its own network's budget.
    #[test]
    fn a_flood_from_many_addresses_of_one_network_leaves_other_networks_their_budget() {
        let t0 = Instant::now();
        let mut l = MessageLimiter::new(BUDGETS, Trusted::default(), 256, 7, t0);
        let attacker = |i: u32| {
            IpAddr::V6(Ipv6Addr::from(
                (0x2001_0db8_0001u128 << 80) | (u128::from(i) << 64) | 1,
            ))
        };
        let mut peer_passed = 0;
        for i in 0..65_536u32 {
            let now = t0 + Duration::from_micros(u64::from(i) * 15);
            l.allow(now, attacker(i), Lane::Call, || false);
            if i % 1000 == 999 && l.allow(now, ip("198.51.100.7"), Lane::Call, || false) {
                peer_passed += 1;
            }
        }
        assert_eq!(peer_passed, 65, "the quiet peer lost messages to the flood");
        let report = l.take_report();
        assert!(report.overflow > 10_000, "{report}");
        assert!(l.sources() <= 256);
    }

    #[test]
    fn agencies_of_the_plan_are_exempt_until_the_plan_changes() {
        let t0 = Instant::now();
        let mut l = MessageLimiter::new(BUDGETS, Trusted::default(), 100, 7, t0);
        l.set_agencies([ip("203.0.113.5")]);
        assert!(l.is_trusted(ip("::ffff:203.0.113.5")));
        assert!((0..1000).all(|_| l.allow(t0, ip("203.0.113.5"), Lane::Call, || false)));
        // Another address of the same network is not an agency.
        assert!(!(0..1000).all(|_| l.allow(t0, ip("203.0.113.6"), Lane::Bulk, || false)));
        l.set_agencies([]);
        assert!(!(0..1000).all(|_| l.allow(t0, ip("203.0.113.5"), Lane::Bulk, || false)));
    }

    fn default_plan() -> Dialplan {
        let text = include_str!("../../../dialplans/default.toml");
        siaga_dialplan::validate(
            &[siaga_dialplan::Source::new("default.toml", text.to_owned())],
            &|_| true,
        )
        .expect("the default plan is valid")
    }

    fn invite(uri: &str) -> Vec<u8> {
        format!("INVITE {uri} SIP/2.0\r\nTo: <{uri}>\r\nContent-Length: 0\r\n\r\n").into_bytes()
    }

    /// One source sends 10,000 INVITEs to a number outside the plan in a virtual second, with
    /// an emergency INVITE every 100: the others are cut to the INVITE budget, every
    /// emergency and test INVITE passes.
    #[test]
    fn invites_have_a_budget_and_over_it_only_emergency_and_test_calls_pass() {
        let plan = default_plan();
        let t0 = Instant::now();
        let mut l = MessageLimiter::new(BUDGETS, Trusted::default(), 100, 7, t0);
        let source = ip("192.0.2.1");
        let spam = invite("sip:0811111111@gw");
        let emergency = [
            invite("sip:112@gw;user=phone"),
            invite("tel:112"),
            invite("urn:service:sos.fire"),
            invite("urn:service:test.sos"),
            invite("sip:+62112@gw"),
        ];
        let (mut passed, mut urgent) = (0, 0);
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_micros(100 * i);
            let msg = if i % 100 == 0 {
                &emergency[(i / 100) as usize % emergency.len()]
            } else {
                &spam
            };
            assert_eq!(Lane::of(msg), Lane::Invite);
            let ok = l.allow(now, source, Lane::Invite, || dials_emergency(&plan, msg));
            if i % 100 == 0 {
                assert!(ok, "emergency INVITE {i} refused");
                urgent += 1;
            } else if ok {
                passed += 1;
            }
        }
        assert_eq!(urgent, 100);
        // The burst plus one second at the rate, less the emergency INVITEs that took tokens.
        assert!((290..=400).contains(&passed), "{passed} of 9,900 passed");
        assert_eq!(l.take_report().dropped, 9_900 - passed);
    }

    #[test]
    fn the_emergency_check_reads_only_the_request_line() {
        let plan = default_plan();
        assert!(dials_emergency(&plan, b"\r\nINVITE sip:112@gw SIP/2.0\r\n"));
        assert!(dials_emergency(&plan, b"INVITE urn:service:sos SIP/2.0"));
        assert!(!dials_emergency(
            &plan,
            b"INVITE sip:999@gw SIP/2.0\r\nTo: <sip:112@gw>\r\n"
        ));
        assert!(!dials_emergency(&plan, b"INVITE"));
        assert!(!dials_emergency(&plan, b"INVITE \xff\xfe SIP/2.0"));
        assert!(!dials_emergency(&plan, b""));
    }

    #[test]
    fn a_source_holds_at_most_its_share_of_the_call_queue() {
        let mut q = QueueShare::new(3);
        assert!((0..3).all(|_| q.enter(ip("192.0.2.1"))));
        assert!(!q.enter(ip("192.0.2.1")));
        // IPv6: the whole /64 is one source.
        assert!((0..3).all(|_| q.enter(ip("2001:db8::1"))));
        assert!(!q.enter(ip("2001:db8::2")));
        assert!(q.enter(ip("192.0.2.2")));
        q.leave(ip("192.0.2.1"));
        assert!(q.enter(ip("192.0.2.1")));
        for _ in 0..3 {
            q.leave(ip("192.0.2.1"));
            q.leave(ip("2001:db8::3"));
        }
        q.leave(ip("192.0.2.2"));
        // Leaving more than entered changes nothing.
        q.leave(ip("192.0.2.2"));
        assert_eq!(q.sources(), 0);
    }

    #[test]
    fn ipv6_sources_are_kept_per_64_and_mapped_v4_as_v4() {
        assert_eq!(
            SourceKey::of(ip("2001:db8:1:2:aaaa::1")),
            SourceKey::of(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            SourceKey::of(ip("2001:db8:1:2::1")),
            SourceKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            SourceKey::of(ip("::ffff:192.0.2.1")),
            SourceKey::of(ip("192.0.2.1"))
        );
    }

    #[test]
    fn networks_parse_and_match() {
        let n: IpNet = "192.168.0.0/16".parse().expect("net");
        assert!(n.contains(ip("192.168.200.1")));
        assert!(n.contains(ip("::ffff:192.168.1.1")));
        assert!(!n.contains(ip("192.169.0.1")));
        let one: IpNet = "203.0.113.7".parse().expect("addr");
        assert!(one.contains(ip("203.0.113.7")) && !one.contains(ip("203.0.113.8")));
        let v6: IpNet = "2001:db8::/32".parse().expect("v6");
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        let all: IpNet = "0.0.0.0/0".parse().expect("all");
        assert!(all.contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "10.0.0/8", "fe80::/129", "x", ""] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn lanes_come_from_the_first_token() {
        assert_eq!(Lane::of(b"INVITE sip:112@x SIP/2.0\r\n"), Lane::Invite);
        assert_eq!(
            Lane::of(b"\r\n\r\nINVITE sip:112@x SIP/2.0\r\n"),
            Lane::Invite
        );
        assert_eq!(Lane::of(b"BYE sip:x SIP/2.0\r\n"), Lane::Call);
        assert_eq!(Lane::of(b"SIP/2.0 200 OK\r\n"), Lane::Call);
        assert_eq!(Lane::of(b"OPTIONS sip:x SIP/2.0\r\n"), Lane::Bulk);
        // In a dialog (a To-tag): session checks and re-INVITEs are call traffic.
        let in_dialog = |method: &str, to: &str| {
            Lane::of(
                format!("{method} sip:x SIP/2.0\r\nVia: x\r\n{to}\r\nCall-ID: c\r\n\r\n")
                    .as_bytes(),
            )
        };
        assert_eq!(in_dialog("OPTIONS", "To: <sip:a@b>;tag=1"), Lane::Call);
        assert_eq!(in_dialog("OPTIONS", "t: sip:a@b ; TAG = 1"), Lane::Call);
        assert_eq!(
            in_dialog("INVITE", "to:\"x\" <sip:a@b>;foo;tag=9"),
            Lane::Call
        );
        assert_eq!(in_dialog("OPTIONS", "To: <sip:a@b>"), Lane::Bulk);
        assert_eq!(in_dialog("INVITE", "To: <sip:a@b>"), Lane::Invite);
        // A tag inside the URI or the display name is not the header's.
        assert_eq!(in_dialog("OPTIONS", "To: <sip:a@b;tag=1>"), Lane::Bulk);
        assert_eq!(
            in_dialog("INVITE", "To: \";tag=x\" <sip:a@b>"),
            Lane::Invite
        );
        // Only a To header counts, and only in the header section.
        assert_eq!(in_dialog("OPTIONS", "From: <sip:a@b>;tag=1"), Lane::Bulk);
        assert_eq!(
            Lane::of(b"OPTIONS sip:x SIP/2.0\r\n\r\nTo: <sip:a@b>;tag=1\r\n"),
            Lane::Bulk
        );
        assert_eq!(Lane::of(b"INVITEX sip:x SIP/2.0\r\n"), Lane::Bulk);
        assert_eq!(Lane::of(b"invite sip:x SIP/2.0\r\n"), Lane::Bulk);
        assert_eq!(Lane::of(b"INVITE"), Lane::Invite);
        assert_eq!(Lane::of(b""), Lane::Bulk);
        assert_eq!(Lane::of(&[0xff, 0, 1]), Lane::Bulk);
    }

    #[test]
    fn connections_are_limited_per_source_and_in_total() {
        let t0 = Instant::now();
        let mut c = ConnLimiter::new(2, 5, Trusted(vec!["10.0.0.1".parse().expect("net")]));
        // Every connection carries a call: nothing may be evicted.
        let calls = |_| true;
        let open = |c: &mut ConnLimiter, a: &str, id: u64| c.open(ip(a), id, t0, calls);
        assert_eq!(open(&mut c, "192.0.2.1", 1), Ok(Opened { evict: None }));
        assert_eq!(open(&mut c, "192.0.2.1", 2), Ok(Opened { evict: None }));
        assert_eq!(open(&mut c, "192.0.2.1", 3), Err(Refusal::PerSource));
        assert!(open(&mut c, "192.0.2.2", 4).is_ok());
        // Trusted: beyond the per-source count, but not beyond the total.
        assert!(open(&mut c, "10.0.0.1", 5).is_ok());
        assert!(open(&mut c, "10.0.0.1", 6).is_ok());
        assert_eq!(open(&mut c, "10.0.0.1", 7), Err(Refusal::Total));
        c.close(1);
        assert_eq!(c.total(), 4);
        assert!(open(&mut c, "192.0.2.1", 8).is_ok());
        // Closing what was never opened (or twice) changes nothing.
        c.close(99);
        c.close(1);
        assert_eq!(c.total(), 5);
        assert_eq!(c.take_refused(), (1, 1, 0));
        assert_eq!(c.take_refused(), (0, 0, 0));
    }

    /// 32 networks fill the total with idle connections; a newcomer takes the place of the
    /// one idle longest that carries no call, never one with a call.
    #[test]
    fn at_the_total_the_longest_idle_connection_without_a_call_makes_room() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut c = ConnLimiter::new(128, 4096, Trusted::default());
        let with_call = [0u64, 5];
        let calls = |id: u64| with_call.contains(&id);
        for id in 0..4096u64 {
            let net = id / 128;
            let a = IpAddr::V6(Ipv6Addr::from(
                (0x2001_0db8_u128 << 96) | (u128::from(net) << 64) | u128::from(id),
            ));
            assert_eq!(c.open(a, id, at(id), calls), Ok(Opened { evict: None }));
        }
        // Connection 1 sent a message lately: no longer the longest idle.
        c.activity(1, at(5000));
        assert_eq!(
            c.open(ip("192.0.2.1"), 5000, at(6000), calls),
            Ok(Opened { evict: Some(2) })
        );
        assert_eq!(
            c.open(ip("192.0.2.1"), 5001, at(6000), calls),
            Ok(Opened { evict: Some(3) })
        );
        assert_eq!(c.total(), 4096);
        assert_eq!(c.take_evicted(), 2);
        // The evicted connection's own close later changes nothing.
        c.close(2);
        assert_eq!(c.total(), 4096);
        // Only connections with calls left: a newcomer is refused.
        let mut c = ConnLimiter::new(128, 2, Trusted::default());
        assert!(c.open(ip("192.0.2.1"), 0, t0, calls).is_ok());
        assert!(c.open(ip("192.0.2.1"), 5, t0, calls).is_ok());
        assert_eq!(c.open(ip("192.0.2.2"), 7, t0, calls), Err(Refusal::Total));
    }

    #[test]
    fn the_descriptor_reserve() {
        assert!(leaves_reserve(500, 1024, 512));
        assert!(!leaves_reserve(512, 1024, 512));
        assert_eq!(effective_reserve(1024, 512), 512);
        assert_eq!(effective_reserve(256, 512), 128);
    }

    const TIMEOUTS: StreamTimeouts = StreamTimeouts {
        message: Duration::from_secs(10),
        idle: Duration::from_secs(30),
        idle_with_call: Duration::from_secs(3600),
    };

    #[test]
    fn a_message_trickled_byte_by_byte_expires_from_its_first_byte() {
        let t0 = Instant::now();
        let mut c = StreamClock::new(TIMEOUTS, t0);
        // One byte a second: a partial message from t0 + 1 s on, never complete.
        for s in 1..=20u64 {
            let now = t0 + Duration::from_secs(s);
            if let Some(why) = c.expired(now, false) {
                assert_eq!(why, StreamExpiry::IncompleteMessage(TIMEOUTS.message));
                assert_eq!(s, 11);
                return;
            }
            c.on_read(now, 0, true);
        }
        panic!("the trickle was never cut");
    }

    #[test]
    fn complete_messages_keep_a_connection_and_a_call_keeps_it_longer() {
        let t0 = Instant::now();
        let mut c = StreamClock::new(TIMEOUTS, t0);
        c.on_read(t0 + Duration::from_secs(20), 1, false);
        assert_eq!(c.expired(t0 + Duration::from_secs(49), false), None);
        assert_eq!(
            c.next(false),
            (
                t0 + Duration::from_secs(50),
                StreamExpiry::Idle(TIMEOUTS.idle)
            )
        );
        assert_eq!(c.expired(t0 + Duration::from_secs(50), true), None);
        assert_eq!(
            c.expired(t0 + Duration::from_secs(3620), true),
            Some(StreamExpiry::Idle(TIMEOUTS.idle_with_call))
        );
        // A message that completes in a later read clears its deadline.
        c.on_read(t0 + Duration::from_secs(21), 0, true);
        c.on_read(t0 + Duration::from_secs(25), 1, false);
        assert_eq!(c.expired(t0 + Duration::from_secs(40), false), None);
        // Complete messages followed by the start of another: its deadline starts now.
        c.on_read(t0 + Duration::from_secs(26), 2, true);
        assert_eq!(
            c.next(true),
            (
                t0 + Duration::from_secs(36),
                StreamExpiry::IncompleteMessage(TIMEOUTS.message)
            )
        );
    }
}
