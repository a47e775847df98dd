//! Why a call ended: one word per outcome, shared by the engine, the call log and the CLI.

use std::fmt;

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
    /// The caller's number is on the block list: it heard the announcement and the gateway
    /// ended the call (dialplan `[policies]`).
    BlockedNumber,
}

impl EndReason {
    /// Every reason, for tools that check a name a supervisor typed.
    pub const ALL: [EndReason; 13] = [
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
        EndReason::BlockedNumber,
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
            | EndReason::AgencyHungUp
            | EndReason::BlockedNumber => false,
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
            EndReason::BlockedNumber => "blocked_number",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
            EndReason::BlockedNumber => 12,
        };
        let mut listed: Vec<usize> = EndReason::ALL.iter().map(|&r| number(r)).collect();
        listed.sort_unstable();
        assert_eq!(listed, (0..=12).collect::<Vec<_>>());
    }
}
