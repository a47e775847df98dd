//! The agency side of a call (a B2BUA's outbound half): from a route decision to an agency
//! on the line, and keeping it there.
//!
//! A route's targets are rung (sequentially or in parallel), each for its ring timeout;
//! failures move to the next target at once, then to the route's fallback, and at a route with
//! a queue the caller waits (hearing announcements) and is retried in arrival order. Every
//! path ends at the centre's call-takers, and the caller is never disconnected by the gateway
//! while waiting.
//!
//! - `mod.rs` (here): the route and its failover;
//! - `legs`: one outbound leg from INVITE to BYE (answers, forks, CANCEL);
//! - `payload`: what the agency learns (identity, location, category, emergency IDs);
//! - `queue`: waiting for a busy route, and what the caller hears meanwhile;
//! - `transfer`: requests from an agency in its dialog (BYE, re-INVITE, REFER).

mod legs;
mod payload;
mod queue;
mod transfer;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rsipstack::sip::Request;
use siaga_dialplan::{
    Dialplan, Language, PromptName, Route, RouteId, Strategy, Target, Transport as PlanTransport,
};

use crate::effects::Effects;
use crate::ids::{Branch, CallId, CallRef, LegNo, Tag};
use crate::io::{CallerIdentity, MediaCommand, PlaybackId};
use crate::net::{Flow, Transport};
use crate::session::LocalSession;
use crate::timeline::CallEventKind;
use crate::transaction::ServerTxKey;
use crate::transaction::table::ClientPurpose;

pub use crate::route_queue::QueuePriority;
pub(crate) use transfer::AgencyRequest;

/// What the agency side needs to know about the caller's half of the call (read-only).
pub(crate) struct CallerView<'a> {
    pub(crate) call_ref: CallRef,
    /// The plan the call started with.
    pub(crate) plan: &'a Arc<Dialplan>,
    pub(crate) identity: &'a CallerIdentity,
    /// The caller's From, verbatim.
    pub(crate) remote_party: &'a str,
    pub(crate) invite: &'a Request,
    pub(crate) emergency_call_id: &'a str,
    pub(crate) incident_id: &'a str,
    pub(crate) location: Option<&'a siaga_location::LocationReport>,
    /// Our address on the caller's flow (for targets with no resolved local address).
    pub(crate) local: SocketAddr,
    /// The caller asked for privacy (`Privacy: id`).
    pub(crate) privacy: bool,
    /// The caller's leg is hanging up or over: nothing more is rung.
    pub(crate) ending: bool,
    /// Where the caller waits in a busy route's queue (lower for repeat and watched callers).
    pub(crate) priority: QueuePriority,
    /// Which number policies applied to the call (told to the agency).
    pub(crate) policy_note: Option<&'a str>,
    pub(crate) span: &'a tracing::Span,
}

/// One outbound INVITE towards an agency target.
#[derive(Debug)]
pub struct AgencyLeg {
    pub n: LegNo,
    pub target: Target,
    pub flow: Flow,
    pub call_id: CallId,
    pub local_tag: Tag,
    /// Our From (the caller's identity or anonymous) with our tag.
    pub from: String,
    /// To as sent; with the agency's tag once it answers.
    pub to: String,
    pub invite_branch: Branch,
    pub invite_cseq: u32,
    pub next_cseq: u32,
    pub remote_target: Option<String>,
    pub route_set: Vec<String>,
    pub state: LegState,
    /// Our SDP offer, from the INVITE on (answers the agency's re-INVITEs).
    pub session: Option<LocalSession>,
    pub started: Instant,
    /// It asked to transfer the caller (REFER, possibly before it answered): its hang-up
    /// does not end the call.
    pub transferring: bool,
    /// This leg is the new target of a transfer started by that leg.
    pub transfer_of: Option<LegNo>,
    /// When it answered and took the caller, while it is on the line (for the call's signals).
    pub on_line_since: Option<Instant>,
}

/// Where one agency leg is; each state carries what is valid in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegState {
    /// Waiting for the RTP port.
    Allocating,
    /// INVITE sent; `early` once a 1xx came. Given up on at `ring_deadline`.
    Calling {
        ring_deadline: Instant,
        early: bool,
    },
    /// Given up on (ring timeout, another target answered): CANCEL sent, or due at the first
    /// 1xx (RFC 3261 §9.1); the leg is forgotten at `give_up_at` whatever the agency does.
    Cancelling {
        give_up_at: Instant,
        cancel_sent: bool,
    },
    /// 2xx received and ACKed: this is (or was) the agency on the line.
    Answered {
        /// Its re-INVITE we answered 200 and whose ACK we await: (CSeq, transaction).
        awaiting_ack: Option<(u32, ServerTxKey)>,
    },
    /// We sent BYE; an ACK for a 200 of ours may still come (a re-INVITE crossed the BYE).
    HangingUp {
        awaiting_ack: Option<(u32, ServerTxKey)>,
    },
    Done,
}

impl LegState {
    /// Still trying to reach the agency (nothing given up on, nothing answered).
    pub(crate) fn pending(&self) -> bool {
        matches!(self, LegState::Allocating | LegState::Calling { .. })
    }

    pub(crate) fn is_answered(&self) -> bool {
        matches!(self, LegState::Answered { .. })
    }

    pub(crate) fn is_cancelling(&self) -> bool {
        matches!(self, LegState::Cancelling { .. })
    }

    /// When the leg must be acted on: its ring timeout, or giving up on a CANCEL.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self {
            LegState::Calling { ring_deadline, .. } => Some(*ring_deadline),
            LegState::Cancelling { give_up_at, .. } => Some(*give_up_at),
            _ => None,
        }
    }

    /// The ACK we await from the agency for a 200 to its re-INVITE, in the states that have one.
    pub(crate) fn awaiting_ack_mut(&mut self) -> Option<&mut Option<(u32, ServerTxKey)>> {
        match self {
            LegState::Answered { awaiting_ack } | LegState::HangingUp { awaiting_ack } => {
                Some(awaiting_ack)
            }
            _ => None,
        }
    }
}

/// A second dialog from a forked INVITE, to be released.
pub(crate) struct StrayDialog {
    pub(crate) to: String,
    pub(crate) target: String,
    pub(crate) route_set: Vec<String>,
}

/// A caller waiting for a busy route.
#[derive(Debug, Clone)]
pub struct Queued {
    pub since: Instant,
    pub next_announce: Instant,
    pub give_up_at: Option<Instant>,
}

/// Prompts to the caller while no agency is on the line: connecting prompts, queue
/// announcements, then ringback, looped.
#[derive(Debug, Default)]
pub struct Announcer {
    pub pending: VecDeque<PathBuf>,
    pub playing: Option<(PlaybackId, Instant, bool)>,
    pub ringback: Option<PathBuf>,
}

/// Everything about getting this call to an agency: the route, its fallbacks, the legs
/// rung, the queue, the announcements.
#[derive(Debug)]
pub struct AgencySide {
    pub route_id: RouteId,
    pub route: Route,
    /// Fallback routes still to try, in order.
    pub chain: VecDeque<RouteId>,
    pub next_target: usize,
    pub legs: BTreeMap<LegNo, AgencyLeg>,
    pub connected: Option<LegNo>,
    pub queued: Option<Queued>,
    pub languages: Vec<Language>,
    pub urgent: bool,
    /// How the IVR chose the route (for the agency and the log).
    pub reason: String,
    pub announcer: Announcer,
    pub started: Instant,
    /// The number of this call's next agency leg (B1, B2, …).
    pub next_leg: u32,
    /// Time agency legs spent on the line and are gone; `None` until one answers.
    pub talk: Option<Duration>,
}

/// A message body we build: media type and bytes.
pub(crate) type OwnedBody = (String, Vec<u8>);

/// The agency side's announcements use the top bit so they never collide with the IVR's ids.
pub(crate) const ANNOUNCEMENT_PLAYBACK: u64 = 1 << 63;
/// A ringback that "finishes" faster than this is not a real file: don't loop on it.
pub(crate) const MIN_RINGBACK: Duration = Duration::from_millis(300);
/// How often a failed last resort without a queue is rung again.
pub(crate) const LAST_RESORT_RETRY: Duration = Duration::from_secs(5);
/// How long we wait for the final response after a CANCEL before forgetting the leg.
pub(crate) const CANCEL_GIVE_UP: Duration = Duration::from_secs(32);

pub(crate) fn is_announcement(id: PlaybackId) -> bool {
    id.0 & ANNOUNCEMENT_PLAYBACK != 0
}

/// The transport a plan target is reached over.
pub fn plan_transport(t: PlanTransport) -> Transport {
    match t {
        PlanTransport::Udp => Transport::Udp,
        PlanTransport::Tcp => Transport::Tcp,
        PlanTransport::Tls => Transport::Tls,
    }
}

impl AgencySide {
    /// Leg `n` answered and took the caller.
    pub(crate) fn on_the_line(&mut self, now: Instant, n: LegNo) {
        self.talk.get_or_insert(Duration::ZERO);
        if let Some(leg) = self.legs.get_mut(&n) {
            leg.on_line_since = Some(now);
        }
    }

    /// Leg `n` left the line (either side hung up); its time is added once.
    pub(crate) fn off_the_line(&mut self, now: Instant, n: LegNo) {
        let on_since = self.legs.get_mut(&n).and_then(|l| l.on_line_since.take());
        if let (Some(since), Some(talk)) = (on_since, self.talk.as_mut()) {
            *talk += now.saturating_duration_since(since);
        }
    }

    /// How long agencies were on the line, counting legs still on it until `now`; `None` if
    /// none answered.
    pub(crate) fn talk_time(&self, now: Instant) -> Option<Duration> {
        let open: Duration = self
            .legs
            .values()
            .filter_map(|l| l.on_line_since)
            .map(|at| now.saturating_duration_since(at))
            .sum();
        self.talk.map(|t| t + open)
    }

    /// The IVR (or the dialled number) chose a route: the agency side starts ringing it.
    /// `next_leg` numbers the call's legs on from any earlier agency side.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        now: Instant,
        call: &CallerView<'_>,
        fx: &mut Effects,
        route_id: RouteId,
        reason: String,
        urgent: bool,
        languages: Vec<Language>,
        next_leg: u32,
    ) -> Self {
        let plan = call.plan.clone();
        let route = plan.route(&route_id, fx.local_time).clone();
        {
            let _entered = call.span.enter();
            tracing::info!(route = %route.id, %reason, urgent, "call routed");
        }
        let chain: VecDeque<RouteId> = plan.fallback_chain(&route.id).into_iter().skip(1).collect();
        let ringback = languages
            .first()
            .map(|l| plan.prompt(&PromptName::new("ringback"), l).path);
        let mut side = AgencySide {
            route_id: route.id.clone(),
            route,
            chain,
            next_target: 0,
            legs: BTreeMap::new(),
            connected: None,
            queued: None,
            languages,
            urgent,
            reason,
            announcer: Announcer {
                ringback,
                ..Announcer::default()
            },
            started: now,
            next_leg,
            talk: None,
        };
        side.enter_route(now, call, fx);
        side
    }

    /// Announces the current route and rings its first target(s).
    fn enter_route(&mut self, now: Instant, call: &CallerView<'_>, fx: &mut Effects) {
        self.next_target = 0;
        let detail = format!(
            "route \"{}\" ({}), {} target(s), {}",
            self.route.id,
            self.route.label,
            self.route.targets.len(),
            self.route.strategy
        );
        if let Some(prompt) = &self.route.connecting_prompt {
            let prompts = call.plan.prompts(prompt, &self.languages);
            self.announcer
                .pending
                .extend(prompts.into_iter().map(|p| p.path));
        }
        fx.timeline(call.call_ref, CallEventKind::RouteStart, detail);
        self.announce(now, call, fx);
        self.ring_next(now, call, fx);
    }

    /// Places the next leg(s) of the current route.
    fn ring_next(&mut self, now: Instant, call: &CallerView<'_>, fx: &mut Effects) {
        let indices: Vec<usize> = match self.route.strategy {
            Strategy::Sequential => (self.next_target < self.route.targets.len())
                .then_some(self.next_target)
                .into_iter()
                .collect(),
            Strategy::Parallel => (self.next_target..self.route.targets.len()).collect(),
        };
        self.next_target += indices.len();
        for i in indices {
            let Some(target) = self.route.targets.get(i).cloned() else {
                continue;
            };
            self.place_leg(now, call, fx, target, None);
        }
        self.after_leg_change(now, call, fx);
    }

    /// Decides what comes next once a leg changed: another target, the queue, the fallback.
    fn after_leg_change(&mut self, now: Instant, call: &CallerView<'_>, fx: &mut Effects) {
        let call_ref = call.call_ref;
        if call.ending {
            return;
        }
        if self.connected.is_some_and(|c| self.legs.contains_key(&c)) {
            return;
        }
        let pending = self.legs.values().any(|l| l.state.pending());
        if pending {
            return;
        }
        if let Some(gone) = self.connected {
            // The agency that had the caller left during a transfer that did not complete:
            // the caller must not be left with nobody. Ring the route again (its fallback
            // chain ends at the call-takers).
            self.connected = None;
            self.next_target = 0;
            fx.media(MediaCommand::Unbridge { call: call_ref });
            fx.timeline(
                call_ref,
                CallEventKind::AgencyLost,
                format!(
                    "leg B{gone} left and no transfer target answered; ringing the route again"
                ),
            );
            self.announce(now, call, fx);
            self.ring_next(now, call, fx);
            return;
        }
        let more_targets = self.next_target < self.route.targets.len();
        if more_targets {
            self.ring_next(now, call, fx);
            return;
        }
        // Every target of this route failed.
        let has_queue = self.route.queue.is_some();
        match (has_queue, &self.queued) {
            (true, None) => self.enter_queue(now, call, fx),
            // Still waiting: the next retry comes with the next announcement.
            (true, Some(q)) if q.give_up_at.is_none_or(|t| now < t) => {}
            _ => self.next_route(now, call, fx),
        }
    }

    /// Moves to the next fallback route (the chain always ends at the call-takers).
    fn next_route(&mut self, now: Instant, call: &CallerView<'_>, fx: &mut Effects) {
        self.leave_queue(now, call, fx);
        let plan = call.plan;
        let from = self.route_id.clone();
        let next = match self.chain.pop_front() {
            Some(next) => next,
            // The last resort has been tried and has no queue: keep trying it, never give up.
            None => plan.last_resort().clone(),
        };
        self.route = plan.route(&next, fx.local_time).clone();
        self.route_id = next.clone();
        self.queued = None;
        fx.timeline(
            call.call_ref,
            CallEventKind::Fallback,
            format!("route \"{from}\" exhausted → \"{next}\""),
        );
        if from == next {
            // The last resort failed and has no queue of its own: ring it again every 5 s, for
            // as long as the caller stays (a dead network is not hammered; nobody is dropped).
            self.queued = Some(Queued {
                since: now,
                next_announce: now + LAST_RESORT_RETRY,
                give_up_at: None,
            });
            return;
        }
        self.enter_route(now, call, fx);
    }

    /// Ring timeouts of pending legs and the queue's housekeeping, at the call's deadline.
    pub(crate) fn on_timer(&mut self, now: Instant, call: &CallerView<'_>, fx: &mut Effects) {
        let call_ref = call.call_ref;
        let stale: Vec<LegNo> = self
            .legs
            .values()
            .filter(|l| l.state.is_cancelling())
            .filter(|l| l.state.deadline().is_some_and(|d| now >= d))
            .map(|l| l.n)
            .collect();
        for n in stale {
            self.abandon_cancelled(now, call, fx, n);
        }
        let expired: Vec<LegNo> = self
            .legs
            .values()
            .filter(|l| l.state.pending() && l.state.deadline().is_some_and(|d| now >= d))
            .map(|l| l.n)
            .collect();
        for n in expired {
            let uri = self
                .legs
                .get(&n)
                .map(|l| l.target.uri.to_string())
                .unwrap_or_default();
            fx.timeline(
                call_ref,
                CallEventKind::AgencyTimeout,
                format!("leg B{n} {uri}: no answer in time"),
            );
            let transfer_of = self.legs.get(&n).and_then(|l| l.transfer_of);
            self.cancel_leg(now, call, fx, n);
            if let Some(from) = transfer_of {
                // Count it as failed now; the CANCEL finishes in the background.
                if let Some(leg) = self.legs.get_mut(&n) {
                    leg.transfer_of = None;
                }
                self.notify_transfer(call, fx, from, "SIP/2.0 408 Request Timeout", true);
                if let Some(l) = self.legs.get_mut(&from) {
                    l.transferring = false;
                }
            }
            self.after_leg_change(now, call, fx);
        }
        self.queue_tick(now, call, fx);
    }

    /// Tears down every agency leg of a call that is ending.
    pub(crate) fn release_all(&mut self, now: Instant, call: &CallerView<'_>, fx: &mut Effects) {
        self.leave_queue(now, call, fx);
        let legs: Vec<(LegNo, bool, bool)> = self
            .legs
            .values()
            .map(|l| (l.n, l.state.is_answered(), l.state.pending()))
            .collect();
        for (n, answered, pending) in legs {
            if answered {
                self.bye_leg(call, fx, n);
            } else if pending {
                self.cancel_leg(now, call, fx, n);
            }
        }
        fx.media(MediaCommand::Unbridge {
            call: call.call_ref,
        });
    }

    /// Whether any agency leg still needs the call object.
    pub(crate) fn has_live_legs(&self) -> bool {
        self.legs.values().any(|l| l.state != LegState::Done)
    }

    /// Client transaction events for an agency leg (Timer B, transport errors).
    pub(crate) fn tx_failed(
        &mut self,
        now: Instant,
        call: &CallerView<'_>,
        fx: &mut Effects,
        n: LegNo,
        purpose: ClientPurpose,
        why: &str,
    ) {
        match purpose {
            ClientPurpose::Invite => {
                let state = self
                    .legs
                    .get(&n)
                    .map(|l| (l.state.pending(), l.state.is_cancelling()));
                if state.is_some_and(|(pending, _)| pending) {
                    fx.timeline(
                        call.call_ref,
                        CallEventKind::AgencyFailed,
                        format!("leg B{n}: {why}"),
                    );
                    if let Some(leg) = self.legs.get_mut(&n) {
                        leg.state = LegState::Done;
                    }
                    self.leg_failed(now, call, fx, n);
                } else if state.is_some_and(|(_, cancelling)| cancelling) {
                    self.leg_done(now, call, fx, n);
                }
            }
            ClientPurpose::Bye => self.leg_done(now, call, fx, n),
            ClientPurpose::Cancel
            | ClientPurpose::Notify
            | ClientPurpose::Probe
            | ClientPurpose::Stray
            | ClientPurpose::Restart => {}
        }
    }

    /// The earliest deadline of the agency side: ring timeouts, queue announcements and waits.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let rings = self.legs.values().filter_map(|l| l.state.deadline());
        let queue = self
            .queued
            .as_ref()
            .into_iter()
            .flat_map(|q| [Some(q.next_announce), q.give_up_at])
            .flatten();
        rings.chain(queue).min()
    }
}
