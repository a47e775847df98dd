//! One emergency call as the gateway sees it: the caller's leg (a UAS dialog), its state, its
//! timers, and its agency side. The dispatcher routes each input to its call; the call acts
//! through `Effects` and never looks itself up again.
//!
//! - `mod.rs` (here): the call's data and its next deadline;
//! - `dialog`: the caller's dialog — answer, ACK, CANCEL, in-dialog requests, re-INVITE;
//! - `ending`: hanging up and ending, timers, lost ACKs, transport errors;
//! - `ivr`: the IVR's glue (prompts, digits, the route decision);
//! - `probe`: checking a caller whose RTP stopped;
//! - `media_events`: what the media side reports about the call's legs;
//! - `location`: the caller's location hints, read and logged;
//! - `agency_glue`: handing agency traffic to the call's `AgencySide`;
//! - `signals`: what the call counts for its signals (digits, times, voice, identity);
//! - `policy`: number policies (repeat callers, watch and block lists) and their announcements;
//! - `challenge`: the flood challenge a caller beyond its limits hears while under attack;
//! - `prompt_queue`: the prompts those two play to the caller, one after another.

mod agency_glue;
pub(crate) mod challenge;
mod dialog;
mod ending;
mod ivr;
pub(crate) mod location;
mod media_events;
pub(crate) mod policy;
mod probe;
mod prompt_queue;
pub mod signals;

use std::time::Instant;

use std::sync::Arc;

use rsipstack::sip::Request;
use siaga_dialplan::{Dialplan, Entry, IvrSession, RouteId, RouteReason};

use crate::agency::{AgencySide, CallerView, QueuePriority};
use crate::effects::Effects;
pub use crate::end_reason::EndReason;
use crate::ids::{Branch, CallId, CallRef, Tag};
use crate::io::{CallKind, Flow};
pub use crate::session::LocalSession;
use crate::transaction::ServerTxKey;
pub(crate) use dialog::reply_plain;
pub(crate) use ending::TimerOutcome;

/// The UAS side of the caller's dialog (RFC 3261 §12.1.1).
#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: CallId,
    pub local_tag: Tag,
    pub remote_tag: Option<Tag>,
    /// Our identity: the INVITE's To value plus our tag.
    pub local_party: String,
    /// The caller's From value, verbatim (with its tag).
    pub remote_party: String,
    /// The caller's Contact URI: the Request-URI of our in-dialog requests.
    pub remote_target: String,
    /// Record-Route values in order (UAS route set).
    pub route_set: Vec<String>,
    pub local_cseq: u32,
    pub remote_cseq: u32,
}

/// Where a call is in its life. Each state carries only what is valid in it.
#[derive(Debug)]
pub enum CallState {
    /// 100/180 sent; waiting for the RTP port and the configured ring delay.
    Ringing {
        answer_not_before: Instant,
        media_local: Option<std::net::SocketAddr>,
    },
    /// 200 sent, waiting for the ACK.
    Answered,
    /// ACK received: the call is up.
    Confirmed,
    /// We sent BYE; waiting for its response (or Timer F).
    HangingUp { bye_branch: Branch },
    /// Over and logged; kept only while agency legs finish their CANCEL/BYE.
    Ended,
}

/// How long a call whose caller has gone may linger while agency legs are torn down.
pub(crate) const LINGER: std::time::Duration = std::time::Duration::from_secs(40);

/// NENA i3 identifiers the agency and the call log share (`Call-Info` purposes
/// `emergency-CallId` / `emergency-IncidentId`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmergencyIds {
    pub call_id: String,
    pub incident_id: String,
}

/// Checking a caller whose RTP stopped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Probe {
    #[default]
    Idle,
    /// An OPTIONS is out; its client transaction has this branch.
    Sent(Branch),
    /// The caller answered; ask again at this time if still silent.
    Again(Instant),
}

/// Where the IVR sent the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecision {
    pub route: RouteId,
    pub reason: RouteReason,
    pub urgent: bool,
}

#[derive(Debug)]
pub struct Call {
    pub call_ref: CallRef,
    pub kind: CallKind,
    /// The plan the call started with: a reload does not change a call in progress.
    pub plan: Arc<Dialplan>,
    /// Where the call enters the plan (`None` for test calls).
    pub entry: Option<Entry>,
    /// The IVR, from the answer until it routes the call.
    pub ivr: Option<IvrSession>,
    pub routed: Option<RouteDecision>,
    /// The caller's latest location report with a location in it (forwarded to the agency).
    pub location: Option<siaga_location::LocationReport>,
    /// Who is calling, as received (forwarded to agencies inside the trust domain).
    pub identity: crate::io::CallerIdentity,
    pub emergency_ids: EmergencyIds,
    /// Getting the caller to an agency (after the IVR routed the call).
    pub agency: Option<AgencySide>,
    pub ended_at: Option<Instant>,
    pub flow: Flow,
    pub dialog: Dialog,
    pub invite: Request,
    pub invite_tx: ServerTxKey,
    /// The latest INVITE (initial or re-INVITE) whose 2xx awaits an ACK: (CSeq, transaction).
    pub awaiting_ack: Option<(u32, ServerTxKey)>,
    pub state: CallState,
    pub session: Option<LocalSession>,
    /// The gateway ends the call at this time (configured maximum duration).
    pub hang_up_at: Option<Instant>,
    /// RTP has arrived from the caller: the call is alive even if an ACK was lost.
    pub media_seen: bool,
    /// Why the call is ending, decided when we sent BYE.
    pub pending_end: Option<EndReason>,
    /// The caller's RTP has stopped (media timeout) and not come back.
    pub caller_silent: bool,
    /// An in-dialog OPTIONS to the silent caller is out (its branch), or when the next is due.
    pub probe: Probe,
    /// Copies of the initial INVITE on other branches (merged requests, answered 482): only
    /// the first few are logged and get a transaction, the count is on the timeline.
    pub merged_requests: u32,
    /// ACKs for a 2xx already acknowledged (repeats): the first few are logged, then counted.
    pub repeated_acks: u32,
    /// Counted for the call's signals, logged at its end.
    pub signals: signals::SignalCounters,
    /// Where the caller waits in a busy queue (lowered by a policy, issue 12).
    pub priority: QueuePriority,
    /// A policy's announcement, played after the answer before the IVR or the end.
    pub announcement: Option<policy::PolicyAnnouncement>,
    /// Which policies applied, for the agency (`X-Siaga-Policy`).
    pub policy_note: Option<String>,
    /// Under attack: the challenge this caller must pass first (issue 12 item 4).
    pub challenge: Option<challenge::Challenge>,
    pub span: tracing::Span,
}

impl Call {
    /// When the call needs the engine next, if at all.
    pub fn next_deadline(&self) -> Option<Instant> {
        let ring = match &self.state {
            CallState::Ringing {
                answer_not_before, ..
            } => Some(*answer_not_before),
            _ => None,
        };
        let hang_up = match &self.state {
            CallState::Answered | CallState::Confirmed => self.hang_up_at,
            _ => None,
        };
        let ivr = self.ivr.as_ref().and_then(IvrSession::next_timeout);
        let agency = match &self.state {
            CallState::Answered | CallState::Confirmed => {
                self.agency.as_ref().and_then(AgencySide::next_deadline)
            }
            _ => None,
        };
        let linger = match &self.state {
            CallState::Ended => self.ended_at.map(|t| t + LINGER),
            _ => None,
        };
        let probe = match (&self.state, &self.probe) {
            (CallState::Answered | CallState::Confirmed, Probe::Again(at)) => Some(*at),
            _ => None,
        };
        let announcement = match &self.state {
            CallState::Answered | CallState::Confirmed => self
                .policy_deadline()
                .into_iter()
                .chain(self.challenge_deadline())
                .min(),
            _ => None,
        };
        [ring, hang_up, ivr, agency, linger, probe, announcement]
            .into_iter()
            .flatten()
            .min()
    }

    /// The caller asked for privacy (RFC 3323/3325 `Privacy: id`, `user` or `header`).
    pub fn privacy_requested(&self) -> bool {
        self.identity.privacy.as_deref().is_some_and(|p| {
            p.split([';', ',']).any(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "id" | "user" | "header"
                )
            })
        })
    }

    /// Our Contact, as put in responses and requests on this dialog.
    pub fn contact(&self) -> String {
        let sips = self.invite.uri.to_string().get(..5) == Some("sips:");
        crate::sip::build::contact_for(self.flow, sips)
    }

    /// Over, and no agency leg needs it any more: the dispatcher may forget it.
    pub(crate) fn is_finished(&self) -> bool {
        matches!(self.state, CallState::Ended)
            && !self.agency.as_ref().is_some_and(AgencySide::has_live_legs)
    }

    /// What the agency side may know of the caller's half.
    pub(crate) fn caller_view(&self) -> CallerView<'_> {
        CallerView {
            call_ref: self.call_ref,
            plan: &self.plan,
            identity: &self.identity,
            remote_party: &self.dialog.remote_party,
            invite: &self.invite,
            emergency_call_id: &self.emergency_ids.call_id,
            incident_id: &self.emergency_ids.incident_id,
            location: self.location.as_ref(),
            local: self.flow.local,
            privacy: self.privacy_requested(),
            ending: matches!(self.state, CallState::HangingUp { .. } | CallState::Ended),
            priority: self.priority,
            policy_note: self.policy_note.as_deref(),
            span: &self.span,
        }
    }

    /// Runs `act` on the agency side, if the call has one.
    pub(crate) fn with_agency<R>(
        &mut self,
        fx: &mut Effects,
        act: impl FnOnce(&mut AgencySide, &CallerView<'_>, &mut Effects) -> R,
    ) -> Option<R> {
        // Taken out while it acts, so it can read the caller's half beside it.
        let mut agency = self.agency.take()?;
        let result = act(&mut agency, &self.caller_view(), fx);
        self.agency = Some(agency);
        Some(result)
    }

    /// The next request of ours in the caller's dialog (BYE, OPTIONS), with a new CSeq.
    pub(crate) fn request_to_caller(
        &mut self,
        method: &str,
        branch: &Branch,
        headers: Vec<(&str, String)>,
    ) -> Vec<u8> {
        self.dialog.local_cseq += 1;
        let contact = self.contact();
        crate::sip::build::dialog_request(&crate::sip::build::DialogRequest {
            method,
            request_uri: &self.dialog.remote_target,
            via_transport: self.flow.transport.as_via(),
            local: self.flow.local,
            branch,
            from: &self.dialog.local_party,
            to: &self.dialog.remote_party,
            call_id: self.dialog.call_id.as_str(),
            cseq: self.dialog.local_cseq,
            route_set: &self.dialog.route_set,
            contact: Some(&contact),
            headers,
            body: None,
        })
    }
}
