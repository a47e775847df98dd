//! A media reactor: one thread that owns many legs, sends each relayed packet on as it
//! arrives and paces everything else from one 10 ms tick (see the design note in `mod.rs`).
//!
//! The thread blocks in its readiness set ([`Poller`]) until a leg's socket has a datagram,
//! the manager wakes it with commands, or the next tick is due. Each ready socket gives one
//! datagram per wake-up, so one flooding peer cannot starve the others; under load wake-ups
//! are spaced ([`BUSY_WAKE_GAP_PER_LEG`]), so one `epoll_wait` serves many datagrams. Each
//! datagram goes to [`Leg::on_datagram`] with the time of the wake-up; audio a bridged
//! leg received goes straight to its peer's [`Leg::on_relayed`], which sends it. At each tick
//! every leg sends what its outbound stream has due (prompts, silence, a gap in the relayed
//! audio; any ptime from 10 to 60 ms), and every 10th tick (staggered per leg)
//! [`Leg::on_housekeeping`] runs.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use siaga_engine::ids::{CallRef, LegId};

use super::leg::{Leg, LegCommand, LegSetup, MAX_DATAGRAM, MediaCounts, now};
use super::poller::{Poller, WAKER_TOKEN, Waker};

/// The reactor's period: every leg is paced and checked this often.
const TICK: Duration = Duration::from_millis(10);
/// Ticks between two housekeeping passes of a leg (100 ms).
const HOUSEKEEPING_TICKS: u8 = 10;
/// Datagrams read from one ready socket per wake-up. One: the set is level-triggered, so a
/// socket with more queued is reported again at once, after the other ready sockets had
/// theirs; reading on until `EAGAIN` would cost a failed `recvfrom` per socket and wake-up.
const PACKETS_PER_WAKE: usize = 1;
/// Under load, wake-ups that carried datagrams are spaced by this much per leg the reactor
/// serves (clamped to [`BUSY_WAKE_GAP_MIN`, `BUSY_WAKE_GAP_MAX`]): the datagrams that arrive
/// meanwhile are read together, one `epoll_wait` for all of them instead of one each, so the
/// wake-ups per second stay bounded as the packets per second grow with the legs. Measured on
/// the 2-core bench box: 0.2 ms at 400 legs a reactor added 0.44 / 1.97 ms (p50 / p99); at 800
/// legs 0.2 ms saturated the box (p99 481 ms, a third of the packets late) where 0.5 ms held
/// (p50 5 ms, p90 11 ms). A lone packet after a quiet spell is read at once.
const BUSY_WAKE_GAP_PER_LEG: Duration = Duration::from_nanos(600);
const BUSY_WAKE_GAP_MIN: Duration = Duration::from_micros(100);
const BUSY_WAKE_GAP_MAX: Duration = Duration::from_millis(1);
/// Most datagrams read from an unwatched socket per tick.
const MAX_PACKETS_PER_TICK: usize = 64;
/// Ticks between two hand-overs of the reactor's counts to the metrics (1 s).
const METRICS_TICKS: u32 = 100;

/// Work for a reactor.
pub(super) enum ReactorCommand {
    /// Take over a new leg (its socket is bound, its recording opened).
    Create(Box<LegSetup>),
    /// A command for one of the reactor's legs; `Release` finishes and drops it.
    Leg {
        call: CallRef,
        leg: LegId,
        cmd: LegCommand,
    },
}

/// A leg and its bookkeeping.
struct Slot {
    leg: Leg,
    /// Ticks until the next housekeeping. Legs start at different ticks, so their
    /// housekeeping (and the recording chunks it hands to the writer) is spread out.
    housekeeping_in: u8,
    /// Whether the poller watches the socket; if not, it is read at every tick.
    watched: bool,
    /// The leg's code panicked: it is dropped at the end of the wake-up.
    broken: bool,
}

struct Reactor {
    /// The legs, by token (index); `free` lists the empty places.
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    tokens: HashMap<(CallRef, LegId), usize>,
    poller: Option<Poller>,
    /// The tokens the last wait reported.
    ready: Vec<u64>,
    /// A leg's code panicked since the last [`Reactor::drop_broken`].
    any_broken: bool,
    /// Packets handled since the last hand-over to the metrics.
    counts: MediaCounts,
    /// Relayed packets by time spent in the reactor (the buckets of
    /// [`crate::metrics::RELAY_DELAY_BUCKETS`], then one beyond), since the last hand-over.
    relay_delay: [u64; RELAY_DELAY_SLOTS],
    ticks_to_metrics: u32,
    rx_buf: Box<[u8; MAX_DATAGRAM]>,
}

/// The readiness set and waker of a new reactor: the waker is in the set, so commands wake
/// the thread. Without epoll (never seen on Linux) the reactor still works: it reads every
/// socket and its commands at each tick.
pub(super) fn readiness() -> (Option<Poller>, Option<Waker>) {
    let made = Poller::new().and_then(|poller| {
        let waker = Waker::new()?;
        poller.add(&waker, WAKER_TOKEN)?;
        Ok((poller, waker))
    });
    match made {
        Ok((poller, waker)) => (Some(poller), Some(waker)),
        Err(e) => {
            tracing::warn!(error = %e, "no epoll set for RTP: every socket is read at each tick");
            (None, None)
        }
    }
}

/// The reactor thread: runs until the manager drops its sender (shutdown, or the manager is
/// gone), then finishes every leg it still has.
pub(super) fn run(
    commands: Receiver<ReactorCommand>,
    poller: Option<Poller>,
    waker: Option<Waker>,
) {
    let mut reactor = Reactor {
        slots: Vec::new(),
        free: Vec::new(),
        tokens: HashMap::new(),
        poller,
        ready: Vec::new(),
        any_broken: false,
        counts: MediaCounts::default(),
        relay_delay: [0; RELAY_DELAY_SLOTS],
        ticks_to_metrics: METRICS_TICKS,
        rx_buf: Box::new([0; MAX_DATAGRAM]),
    };
    let mut next_tick = now() + TICK;
    // When the last wake-up that read datagrams happened.
    let mut last_busy_wake: Option<Instant> = None;
    'run: loop {
        let at = now();
        // Commands are also looked at once per tick, so a manager dropped without waking its
        // reactors still ends them.
        let mut ticked = false;
        if at >= next_tick {
            ticked = true;
            reactor.on_tick(at);
            next_tick += TICK;
            if next_tick <= at {
                // Never burst after a stall: the outbound streams skip time they could not send.
                next_tick = at + TICK;
            }
        }
        if let Some(last) = last_busy_wake {
            let legs = u32::try_from(reactor.tokens.len()).unwrap_or(u32::MAX);
            let gap = (BUSY_WAKE_GAP_PER_LEG * legs).clamp(BUSY_WAKE_GAP_MIN, BUSY_WAKE_GAP_MAX);
            let due = (last + gap).min(next_tick);
            let pause = due.saturating_duration_since(now());
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
        let woken = reactor.wait(next_tick.saturating_duration_since(now()));
        // Datagrams before commands: what arrived before a leg's release is still relayed.
        let at = now();
        last_busy_wake = reactor.receive(at).then_some(at);
        if woken || ticked {
            if let Some(waker) = waker.as_ref().filter(|_| woken) {
                waker.reset();
            }
            loop {
                match commands.try_recv() {
                    Ok(cmd) => reactor.apply(cmd),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => break 'run,
                }
            }
        }
    }
    let at = now();
    for slot in reactor.slots.iter_mut().flatten() {
        reactor.counts += slot.leg.take_counts();
        slot.leg.finish(at);
    }
    reactor.hand_over_metrics();
}

/// Places for [`Reactor::relay_delay`]: one per bucket and one beyond the last.
const RELAY_DELAY_SLOTS: usize = crate::metrics::RELAY_DELAY_BUCKETS.len() + 1;

impl Reactor {
    /// Waits for datagrams, a wake-up or the timeout; fills `ready`. Returns whether
    /// commands may be waiting.
    fn wait(&mut self, timeout: Duration) -> bool {
        self.ready.clear();
        let Some(poller) = self.poller.as_mut() else {
            // No readiness set: the loop's own pacing. Commands are read at each tick.
            std::thread::sleep(timeout);
            return true;
        };
        let mut woken = false;
        for token in poller.wait(timeout) {
            if token == WAKER_TOKEN {
                woken = true;
            } else {
                self.ready.push(token);
            }
        }
        woken
    }

    fn apply(&mut self, cmd: ReactorCommand) {
        match cmd {
            ReactorCommand::Create(setup) => {
                let key = (setup.call, setup.leg);
                if let Some(mut old) = self.remove(key) {
                    // The manager releases a leg before allocating it again; should a create
                    // still overtake, the old leg's recording is finalised all the same.
                    old.leg.finish(now());
                }
                self.insert(key, Leg::new(*setup));
            }
            ReactorCommand::Leg {
                call,
                leg,
                cmd: LegCommand::Release,
            } => {
                if let Some(mut slot) = self.remove((call, leg)) {
                    self.counts += slot.leg.take_counts();
                    slot.leg.finish(now());
                }
            }
            ReactorCommand::Leg { call, leg, cmd } => {
                let Some(slot) = self.slot_mut((call, leg)) else {
                    return;
                };
                let done = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    slot.leg.on_command(cmd, now());
                }));
                if done.is_err() {
                    slot.broken = true;
                    self.drop_broken();
                }
            }
        }
    }

    fn insert(&mut self, key: (CallRef, LegId), leg: Leg) {
        let token = self.free.pop().unwrap_or(self.slots.len());
        let watched = match self
            .poller
            .as_ref()
            .map(|p| p.add(leg.socket(), token as u64))
        {
            Some(Ok(())) => true,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "RTP socket not watched: read at each tick");
                false
            }
            None => false,
        };
        let slot = Slot {
            leg,
            housekeeping_in: 1,
            watched,
            broken: false,
        };
        match self.slots.get_mut(token) {
            Some(place) => *place = Some(slot),
            None => self.slots.push(Some(slot)),
        }
        self.tokens.insert(key, token);
    }

    fn remove(&mut self, key: (CallRef, LegId)) -> Option<Slot> {
        let token = self.tokens.remove(&key)?;
        let slot = self.slots.get_mut(token)?.take()?;
        self.free.push(token);
        if let (true, Some(poller)) = (slot.watched, self.poller.as_ref()) {
            poller.remove(slot.leg.socket());
        }
        Some(slot)
    }

    fn slot_mut(&mut self, key: (CallRef, LegId)) -> Option<&mut Slot> {
        let token = *self.tokens.get(&key)?;
        self.slots.get_mut(token)?.as_mut()
    }

    /// One tick: every leg sends what is due and, in turn, does its housekeeping.
    fn on_tick(&mut self, at: Instant) {
        let unwatched: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_some_and(|s| !s.watched))
            .map(|(token, _)| token)
            .collect();
        for token in unwatched {
            self.read(token, MAX_PACKETS_PER_TICK, at);
        }
        let mut broken = self.any_broken;
        for slot in self.slots.iter_mut().flatten() {
            // A bug in one leg must not silence every call of the reactor.
            let done = std::panic::catch_unwind(AssertUnwindSafe(|| {
                slot.leg.on_pacing(at);
                slot.housekeeping_in = slot.housekeeping_in.saturating_sub(1);
                if slot.housekeeping_in == 0 {
                    slot.housekeeping_in = HOUSEKEEPING_TICKS;
                    slot.leg.on_housekeeping(at);
                }
            }));
            if done.is_err() {
                slot.broken = true;
                broken = true;
            }
        }
        if broken {
            self.drop_broken();
        }
        self.ticks_to_metrics = self.ticks_to_metrics.saturating_sub(1);
        if self.ticks_to_metrics == 0 {
            self.ticks_to_metrics = METRICS_TICKS;
            for slot in self.slots.iter_mut().flatten() {
                self.counts += slot.leg.take_counts();
            }
            self.hand_over_metrics();
        }
    }

    /// Adds the counts since the last hand-over to the process's metrics.
    fn hand_over_metrics(&mut self) {
        let counts = std::mem::take(&mut self.counts);
        metrics::counter!("siaga_rtp_packets_received_total").increment(counts.received);
        metrics::counter!("siaga_rtp_packets_sent_total", "kind" => "relayed")
            .increment(counts.sent_relayed);
        metrics::counter!("siaga_rtp_packets_sent_total", "kind" => "generated")
            .increment(counts.sent_generated);
        metrics::counter!("siaga_rtp_packets_lost_total").increment(counts.lost);
        metrics::counter!("siaga_rtp_packets_late_total").increment(counts.late);
        let delay = metrics::histogram!("siaga_rtp_relay_delay_seconds");
        let buckets = crate::metrics::RELAY_DELAY_BUCKETS;
        for (slot, count) in std::mem::take(&mut self.relay_delay)
            .into_iter()
            .enumerate()
        {
            // Each packet counts in its bucket: recorded at the bucket's bound (beyond the
            // last, at twice the last bound). The histogram's sum is thus an upper bound.
            let value = buckets
                .get(slot)
                .copied()
                .unwrap_or_else(|| buckets.last().copied().unwrap_or(0.05) * 2.0);
            if count > 0 {
                delay.record_many(value, usize::try_from(count).unwrap_or(usize::MAX));
            }
        }
    }

    /// Reads the sockets the last wait reported; returns whether there were any.
    fn receive(&mut self, at: Instant) -> bool {
        let ready = std::mem::take(&mut self.ready);
        let any = !ready.is_empty();
        for token in &ready {
            if let Ok(token) = usize::try_from(*token) {
                self.read(token, PACKETS_PER_WAKE, at);
            }
        }
        self.ready = ready;
        if self.any_broken {
            self.drop_broken();
        }
        any
    }

    /// Reads up to `most` datagrams from one leg's socket; bridged audio goes on to the peer
    /// leg at once.
    fn read(&mut self, token: usize, most: usize, at: Instant) {
        for _ in 0..most {
            let Some(slot) = self
                .slots
                .get_mut(token)
                .and_then(Option::as_mut)
                .filter(|s| !s.broken)
            else {
                return;
            };
            let (len, from) = match slot.leg.socket().recv_from(&mut self.rx_buf[..]) {
                Ok(got) => got,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // ICMP errors for earlier sends (ECONNREFUSED) and the like: not fatal.
                Err(e) => {
                    tracing::trace!(error = %e, "RTP receive error");
                    continue;
                }
            };
            let datagram = self.rx_buf.get(..len).unwrap_or_default();
            // A bug in one leg must not silence every call of the reactor.
            let relayed = std::panic::catch_unwind(AssertUnwindSafe(|| {
                slot.leg.on_datagram(datagram, from, at)
            }));
            let relayed = match relayed {
                Ok(relayed) => relayed,
                Err(_) => {
                    slot.broken = true;
                    self.any_broken = true;
                    return;
                }
            };
            let Some(packet) = relayed else {
                continue;
            };
            let call = slot.leg.call();
            let sender = slot.leg.id();
            let Some(peer) = self
                .tokens
                .get(&(call, packet.peer))
                .and_then(|&t| self.slots.get_mut(t))
                .and_then(Option::as_mut)
                .filter(|s| !s.broken && s.leg.peer() == Some(sender))
            else {
                continue;
            };
            let payload = self.rx_buf.get(packet.payload.clone()).unwrap_or_default();
            let sent = std::panic::catch_unwind(AssertUnwindSafe(|| {
                peer.leg.on_relayed(&packet, payload, at)
            }));
            let Ok(sent) = sent else {
                peer.broken = true;
                self.any_broken = true;
                continue;
            };
            if !sent {
                // Held for the pacing ticks (transcoding, a prompt's mix): not a relay delay.
                continue;
            }
            let spent = now().saturating_duration_since(at).as_secs_f64();
            let slot = crate::metrics::RELAY_DELAY_BUCKETS
                .iter()
                .position(|&bound| spent <= bound)
                .unwrap_or(RELAY_DELAY_SLOTS - 1);
            if let Some(n) = self.relay_delay.get_mut(slot) {
                *n += 1;
            }
        }
    }

    /// Drops the legs whose code panicked, as a leg's own task used to end: its port is freed
    /// and it sends nothing more; the other legs go on.
    fn drop_broken(&mut self) {
        self.any_broken = false;
        let keys: Vec<(CallRef, LegId)> = self
            .tokens
            .iter()
            .filter(|&(_, &t)| {
                self.slots
                    .get(t)
                    .and_then(Option::as_ref)
                    .is_some_and(|s| s.broken)
            })
            .map(|(&k, _)| k)
            .collect();
        for (call, leg) in keys {
            tracing::error!(%call, %leg, "media leg panicked and was dropped");
            self.remove((call, leg));
        }
    }
}
