//! One emergency call as the gateway sees it: the caller's leg (a UAS dialog), its state and
//! its timers. The engine drives it; this module holds the data and the pure decisions.

use std::fmt;
use std::time::Instant;

use std::sync::Arc;

use rsipstack::sip::Request;
use siaga_dialplan::{Dialplan, Entry, IvrSession, RouteId, RouteReason};

use crate::ids::{Branch, CallId, CallRef, Tag};
use crate::io::{CallKind, Flow, MediaSession};
use crate::transaction::ServerTxKey;

/// Why a call ended: a typed column in the call log, so supervisors can count abandoned and
/// failed calls as reliably as answered ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The caller CANCELled before the gateway answered.
    AbandonedBeforeAnswer,
    /// The caller sent BYE.
    CallerHungUp,
    /// The gateway sent BYE (supervisor, maximum duration).
    GatewayHungUp,
    /// The caller never ACKed our 200 and no media arrived either.
    NoAck,
    /// The caller's transport failed (TCP reset, unreachable).
    TransportError,
    /// The dialled number is not an emergency number: answered 404. Only in logs written
    /// before such INVITEs became stateless (they are now counted, not calls).
    NotEmergency,
    /// The gateway was draining for shutdown: answered 503 so the load balancer moves on.
    RefusedDraining,
    /// An RFC 6881 test call that completed.
    TestCallEnded,
    /// The agency that had the caller hung up (the gateway then ended the caller's leg).
    AgencyHungUp,
    /// The caller hung up while agencies were ringing or while queued: call them back.
    AbandonedWaitingForAgency,
    /// The caller hung up in the IVR, before any agency was chosen: call them back.
    AbandonedInIvr,
    /// The caller sent no RTP and its UA answered our in-dialog OPTIONS with 481/408 or not
    /// at all (a BYE lost on the way, a phone that died): call them back.
    CallerLost,
}

impl EndReason {
    /// Every reason, for tools that check a name a supervisor typed.
    pub const ALL: [EndReason; 12] = [
        EndReason::AbandonedBeforeAnswer,
        EndReason::CallerHungUp,
        EndReason::GatewayHungUp,
        EndReason::NoAck,
        EndReason::TransportError,
        EndReason::NotEmergency,
        EndReason::RefusedDraining,
        EndReason::TestCallEnded,
        EndReason::AgencyHungUp,
        EndReason::AbandonedWaitingForAgency,
        EndReason::AbandonedInIvr,
        EndReason::CallerLost,
    ];

    /// Whether an emergency call that ended this way may have left a caller without help, so
    /// the centre calls back (unless an agency had answered it).
    pub fn calls_for_call_back(self) -> bool {
        // Exhaustive on purpose: a new reason must be placed on one side.
        match self {
            EndReason::AbandonedBeforeAnswer
            | EndReason::AbandonedInIvr
            | EndReason::AbandonedWaitingForAgency
            | EndReason::NoAck
            | EndReason::CallerLost
            | EndReason::TransportError => true,
            EndReason::CallerHungUp
            | EndReason::GatewayHungUp
            | EndReason::NotEmergency
            | EndReason::RefusedDraining
            | EndReason::TestCallEnded
            | EndReason::AgencyHungUp => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::AbandonedBeforeAnswer => "abandoned_before_answer",
            EndReason::CallerHungUp => "caller_hung_up",
            EndReason::GatewayHungUp => "gateway_hung_up",
            EndReason::NoAck => "no_ack",
            EndReason::TransportError => "transport_error",
            EndReason::NotEmergency => "not_emergency",
            EndReason::RefusedDraining => "refused_draining",
            EndReason::TestCallEnded => "test_call_ended",
            EndReason::AgencyHungUp => "agency_hung_up",
            EndReason::AbandonedWaitingForAgency => "abandoned_waiting_for_agency",
            EndReason::AbandonedInIvr => "abandoned_in_ivr",
            EndReason::CallerLost => "caller_lost",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

/// NENA i3 identifiers the agency and the call log share (`Call-Info` purposes
/// `emergency-CallId` / `emergency-IncidentId`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmergencyIds {
    pub call_id: String,
    pub incident_id: String,
}

/// The SDP we answered with, kept to answer re-INVITEs with the same session.
#[derive(Debug, Clone)]
pub struct LocalSession {
    pub sdp: String,
    pub media: MediaSession,
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
    pub bridging: Option<crate::bridge::Bridging>,
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
    /// The number of this call's next agency leg (B1, B2, …).
    pub next_leg: u32,
    /// The caller's RTP has stopped (media timeout) and not come back.
    pub caller_silent: bool,
    /// An in-dialog OPTIONS to the silent caller is out (its branch), or when the next is due.
    pub probe: Probe,
    /// Copies of the initial INVITE on other branches (merged requests, answered 482): only
    /// the first few are logged and get a transaction, the count is on the timeline.
    pub merged_requests: u32,
    /// ACKs for a 2xx already acknowledged (repeats): the first few are logged, then counted.
    pub repeated_acks: u32,
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
        let bridge = match &self.state {
            CallState::Answered | CallState::Confirmed => self
                .bridging
                .as_ref()
                .and_then(crate::bridge::bridge_deadline),
            _ => None,
        };
        let linger = match &self.state {
            CallState::Ended => self.ended_at.map(|t| t + crate::bridge::LINGER),
            _ => None,
        };
        let probe = match (&self.state, &self.probe) {
            (CallState::Answered | CallState::Confirmed, Probe::Again(at)) => Some(*at),
            _ => None,
        };
        [ring, hang_up, ivr, bridge, linger, probe]
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
        contact_for(self.flow)
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

/// The Contact we advertise on a flow.
pub fn contact_for(flow: Flow) -> String {
    let transport = match flow.transport {
        crate::io::Transport::Udp => "",
        crate::io::Transport::Tcp => ";transport=tcp",
    };
    format!(
        "<sip:siaga@{}{transport}>",
        crate::sip::build::host_port(flow.local)
    )
}

#[cfg(test)]
mod tests {
    use super::EndReason;

    /// `ALL` holds every reason once. The match stops compiling when a reason is added; giving
    /// the new one its number then fails this test until `ALL` lists it too.
    #[test]
    fn all_lists_every_reason_once() {
        let number = |reason: EndReason| match reason {
            EndReason::AbandonedBeforeAnswer => 0,
            EndReason::CallerHungUp => 1,
            EndReason::GatewayHungUp => 2,
            EndReason::NoAck => 3,
            EndReason::TransportError => 4,
            EndReason::NotEmergency => 5,
            EndReason::RefusedDraining => 6,
            EndReason::TestCallEnded => 7,
            EndReason::AgencyHungUp => 8,
            EndReason::AbandonedWaitingForAgency => 9,
            EndReason::AbandonedInIvr => 10,
            EndReason::CallerLost => 11,
        };
        let mut listed: Vec<usize> = EndReason::ALL.iter().map(|&r| number(r)).collect();
        listed.sort_unstable();
        assert_eq!(listed, (0..=11).collect::<Vec<_>>());
    }
}
