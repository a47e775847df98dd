//! TCP connections: counts per source and in total, the descriptor reserve, and the deadlines
//! of one stream connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{SourceKey, Trusted};

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
