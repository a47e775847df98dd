//! A media reactor: one tokio task that owns many legs and drives them all from one 10 ms
//! tick (see the design note in `mod.rs`).
//!
//! At each tick the reactor first receives: it asks its private readiness set
//! ([`Poller`]) which sockets have datagrams queued and reads one datagram from each, again
//! until none is left (at most [`MAX_PACKETS_PER_TICK`] rounds, so one flooding peer cannot
//! starve the others), each going to [`Leg::on_datagram`] with the tick's time. Then, for
//! every leg, [`Leg::on_pacing`] sends whatever the outbound stream has due (any ptime from
//! 10 to 60 ms), and every 10th tick (staggered per leg) [`Leg::on_housekeeping`] runs.
//! Commands from the manager are applied as they arrive, between ticks.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use siaga_engine::ids::{CallRef, LegId};

use super::leg::{Leg, LegCommand, LegSetup, MAX_DATAGRAM, now};
use super::poller::Poller;

/// The reactor's period: every leg is read, paced and checked this often.
const TICK: Duration = Duration::from_millis(10);
/// Ticks between two housekeeping passes of a leg (100 ms).
const HOUSEKEEPING_TICKS: u8 = 10;
/// Most datagrams read from one leg's socket in one tick (a 20 ms stream brings 0–2).
const MAX_PACKETS_PER_TICK: usize = 64;

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
    /// The leg's code panicked: it is dropped at the end of the tick.
    broken: bool,
}

struct Reactor {
    /// The legs, by token (index); `free` lists the empty places.
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    tokens: HashMap<(CallRef, LegId), usize>,
    poller: Option<Poller>,
    rx_buf: Box<[u8; MAX_DATAGRAM]>,
}

/// The reactor task: runs until the manager drops its sender (shutdown, or the manager is
/// gone), then finishes every leg it still has.
pub(super) async fn run(mut commands: mpsc::UnboundedReceiver<ReactorCommand>) {
    let poller = match Poller::new() {
        Ok(poller) => Some(poller),
        Err(e) => {
            tracing::warn!(error = %e, "no epoll set for RTP: every socket is read at each tick");
            None
        }
    };
    let mut reactor = Reactor {
        slots: Vec::new(),
        free: Vec::new(),
        tokens: HashMap::new(),
        poller,
        rx_buf: Box::new([0; MAX_DATAGRAM]),
    };
    let mut tick = tokio::time::interval(TICK);
    // Never burst after a stall: the outbound streams skip time they could not send.
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { break };
                reactor.apply(cmd);
                while let Ok(cmd) = commands.try_recv() {
                    reactor.apply(cmd);
                }
            }
            at = tick.tick() => reactor.on_tick(at.into_std()),
        }
    }
    let at = now();
    for mut slot in reactor.slots.into_iter().flatten() {
        slot.leg.finish(at);
    }
}

impl Reactor {
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

    /// One tick: every leg receives, sends what is due and, in turn, does its housekeeping.
    fn on_tick(&mut self, at: Instant) {
        self.receive(at);
        let mut broken = false;
        for slot in self.slots.iter_mut().flatten() {
            // A bug in one leg must not silence every call of the reactor.
            let done = std::panic::catch_unwind(AssertUnwindSafe(|| {
                if !slot.watched {
                    drain(&mut slot.leg, &mut self.rx_buf[..], at);
                }
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
    }

    /// Reads the watched sockets that have datagrams: one datagram per ready socket per
    /// round, so every peer gets its turn, until nothing is left.
    fn receive(&mut self, at: Instant) {
        let Reactor {
            slots,
            poller: Some(poller),
            rx_buf,
            ..
        } = self
        else {
            return;
        };
        let mut broken = false;
        for _ in 0..MAX_PACKETS_PER_TICK {
            let mut any = false;
            for token in poller.ready() {
                any = true;
                let Some(slot) = usize::try_from(token)
                    .ok()
                    .and_then(|t| slots.get_mut(t))
                    .and_then(Option::as_mut)
                    .filter(|s| !s.broken)
                else {
                    continue;
                };
                let done = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    receive_one(&mut slot.leg, &mut rx_buf[..], at);
                }));
                if done.is_err() {
                    slot.broken = true;
                    broken = true;
                }
            }
            if !any {
                break;
            }
        }
        if broken {
            self.drop_broken();
        }
    }

    /// Drops the legs whose code panicked, as a leg's own task used to end: its port is freed
    /// and it sends nothing more; the other legs go on.
    fn drop_broken(&mut self) {
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

/// Reads one datagram, if there is one. Returns whether to read again.
fn receive_one(leg: &mut Leg, rx_buf: &mut [u8], at: Instant) -> bool {
    match leg.socket().recv_from(rx_buf) {
        Ok((len, from)) => {
            if let Some(datagram) = rx_buf.get(..len) {
                leg.on_datagram(datagram, from, at);
            }
            true
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        // ICMP errors for earlier sends (ECONNREFUSED) and the like: not fatal.
        Err(e) => {
            tracing::trace!(error = %e, "RTP receive error");
            true
        }
    }
}

/// Reads an unwatched socket until it would block.
fn drain(leg: &mut Leg, rx_buf: &mut [u8], at: Instant) {
    for _ in 0..MAX_PACKETS_PER_TICK {
        if !receive_one(leg, rx_buf, at) {
            break;
        }
    }
}
