//! A call's timeline: what happened to it and when, one row in the call log's `call_events`
//! per event. [`CallEventKind`] names every kind of event there is; its text form is what
//! the log stores and what the call-log queries look for, so it never changes (existing
//! databases hold it). The engine, the media threads and the restart code all log through it.

use std::fmt;
use std::str::FromStr;

use siaga_media::LatchEvent;

/// The kind of one event on a call's timeline (the `kind` column of `call_events`), named
/// for the table it goes to, as the gateway-wide events of `gateway_events` are not these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallEventKind {
    // The caller's leg.
    /// An emergency INVITE was answered although a normal call would have been refused.
    NotRefused,
    /// The caller's location (PIDF-LO, cell, P-ANI) could not be read in full.
    LocationProblem,
    /// An SDP offer or answer was odd or missing but usable.
    SdpWarning,
    /// A re-INVITE changed the caller's media.
    MediaUpdate,
    /// The caller pressed a key (RTP event, in-band or SIP INFO).
    Dtmf,
    /// The caller sent a SIP INFO that carried no digit.
    SipInfo,
    /// Retransmissions of a request were absorbed past the number logged verbatim.
    Retransmissions,
    /// Copies of the INVITE on other branches were answered 482, past those logged.
    MergedRequests,
    /// The caller repeated its ACK past the number logged verbatim.
    RepeatedAcks,
    /// No ACK came for our 200 (kept if media flows, hung up if not).
    NoAck,
    /// Our BYE to the caller got no response.
    ByeTimeout,
    /// The call reached the maximum call duration and is hung up.
    MaxDuration,
    /// The caller's transport (TCP connection) failed.
    TransportError,
    /// The silent caller was probed with an in-dialog OPTIONS, or its outcome kept the call.
    CallerProbe,
    /// The silent caller's UA no longer knows the dialog: the call ends.
    CallerLost,
    /// The gateway stopped with the call still up.
    Shutdown,

    // Number policies (dialplan `[policies]`, the supervisors' lists).
    /// The number called often enough to be a repeat caller: warned, lower queue priority.
    PolicyRepeatCaller,
    /// The number is on the watch list: warned, lower queue priority.
    PolicyWatched,
    /// The number is on the block list: announcement, then the call ends.
    PolicyBlocked,
    /// The number is blocked but reaches a call-taker anyway (called again, or a URN with a
    /// location), with the reason.
    PolicyBlockOverridden,
    /// Under attack, the caller is beyond its limits: it hears the challenge (why).
    ChallengeStarted,
    /// The challenged caller pressed a key or spoke.
    ChallengePassed,
    /// The challenged caller did neither in time: the call goes on at the lowest priority.
    ChallengeFailed,
    /// Under attack, but the caller is never challenged (a URN with a location, genuine
    /// history, passed before).
    ChallengeExempt,

    // Media (the engine's view).
    /// A leg's media could not be set up (the call goes on without it).
    MediaFailed,
    /// The first RTP packet arrived on a leg.
    MediaStarted,
    /// A leg has sent no RTP for the media timeout.
    MediaTimeout,
    /// RTP flows again on a leg after a media timeout.
    MediaResumed,
    /// An agency leg sent a digit (logged, not acted on).
    AgencyDtmf,

    // The IVR (dialplan `TimelineKind`).
    /// The IVR entered a menu.
    MenuEntered,
    /// The IVR started a prompt.
    PromptStarted,
    /// A prompt was stopped by a key (barge-in).
    PromptInterrupted,
    /// The IVR took a key.
    DigitReceived,
    /// The IVR ignored a character that is not a phone key.
    DigitIgnored,
    /// The IVR waited in vain (first digit, inter-digit, prompt watchdog).
    MenuTimeout,
    /// The keys pressed match no choice of the menu.
    InvalidChoice,
    /// The caller asked for the menu again.
    Repeat,
    /// The menu is played again after a timeout or an invalid choice.
    Retry,
    /// The caller switched the IVR's language.
    LanguageSwitched,
    /// The IVR (or the entry) decided the route to the agencies.
    RouteDecided,

    // The agency side: route, targets, queue, transfer.
    /// The gateway starts ringing a route's targets.
    RouteStart,
    /// A target's host cannot be resolved: the next target is tried.
    AgencyUnreachable,
    /// An INVITE went to an agency target (a new leg B<n>).
    AgencyInvite,
    /// An agency leg answered with a provisional response.
    AgencyRinging,
    /// An agency leg sent early media: the caller hears it.
    AgencyEarlyMedia,
    /// An agency answered and the caller is bridged to it.
    AgencyAnswered,
    /// An agency leg answered after another had: it is hung up.
    AgencyLateAnswer,
    /// A second answer from a forking agency was hung up.
    AgencyForkReleased,
    /// A ringing agency leg ended after our CANCEL.
    AgencyCancelled,
    /// No final response came after our CANCEL: the leg is forgotten.
    AgencyCancelTimeout,
    /// An agency leg failed (error response, timeout, transport error).
    AgencyFailed,
    /// An agency leg did not answer in time.
    AgencyTimeout,
    /// An agency leg sent BYE.
    AgencyHungUp,
    /// An agency leg changed its media direction (the caller is not put on hold).
    AgencyHold,
    /// The connected agency left and no transfer target answered: the route rings again.
    AgencyLost,
    /// A route's targets are exhausted: its fallback route is tried.
    Fallback,
    /// Every target of the route is busy: the caller waits in its queue.
    QueueEnter,
    /// The caller is told its position in the queue.
    QueueAnnounce,
    /// The queued caller's route is rung again.
    QueueRetry,
    /// The caller left the queue.
    QueueLeave,
    /// The caller waited in the queue for the longest allowed.
    QueueTimeout,
    /// An agency asked (REFER) to transfer the caller.
    TransferRequested,
    /// An agency's transfer request cannot be followed (bad Refer-To).
    TransferRefused,
    /// The caller was moved to the transfer target.
    TransferDone,
    /// A transfer target did not answer: the caller stays with the agency.
    TransferFailed,

    // The gateway's media threads.
    /// A leg latched onto an RTP source (sends to and takes from it).
    RtpLatched,
    /// A leg refused RTP from a source (first packet; later ones only counted).
    RtpRefused,
    /// At a leg's end: every source it refused and how many packets each.
    RtpRefusedTotal,
    /// A prompt file cannot be played (the IVR takes it as finished).
    PromptFailed,
    /// Audio cannot be relayed: a leg of the bridge has no media.
    BridgeFailed,
    /// The recording started: 0:00 in the file is this moment.
    RecordingStarted,
    /// Recording audio was dropped (writer behind or gone); the gap is silence.
    RecordingDropped,
    /// At the call's end: how many recording chunks were dropped as silence.
    RecordingGaps,
    /// The recording failed; the call continues without it.
    RecordingFailed,
    /// Start-up finished a recording a gateway stop interrupted.
    RecordingRecovered,

    // A restart after a stop (crash or kill).
    /// Where the recording of a call left open stops: the call lasted at least until here.
    RecordingEnd,
    /// The BYE for a dialog left up goes to the caller's source address instead.
    RestartByeToSource,
    /// A leg was up when the gateway stopped but cannot be sent a BYE.
    RestartByeImpossible,
    /// A BYE went to a dialog the previous run left up.
    RestartBye,
    /// The outcome of such a BYE.
    RestartByeDone,
}

impl CallEventKind {
    /// Every kind, in the order above.
    pub const ALL: [CallEventKind; 80] = [
        CallEventKind::NotRefused,
        CallEventKind::LocationProblem,
        CallEventKind::SdpWarning,
        CallEventKind::MediaUpdate,
        CallEventKind::Dtmf,
        CallEventKind::SipInfo,
        CallEventKind::Retransmissions,
        CallEventKind::MergedRequests,
        CallEventKind::RepeatedAcks,
        CallEventKind::NoAck,
        CallEventKind::ByeTimeout,
        CallEventKind::MaxDuration,
        CallEventKind::TransportError,
        CallEventKind::CallerProbe,
        CallEventKind::CallerLost,
        CallEventKind::Shutdown,
        CallEventKind::MediaFailed,
        CallEventKind::MediaStarted,
        CallEventKind::MediaTimeout,
        CallEventKind::MediaResumed,
        CallEventKind::AgencyDtmf,
        CallEventKind::MenuEntered,
        CallEventKind::PromptStarted,
        CallEventKind::PromptInterrupted,
        CallEventKind::DigitReceived,
        CallEventKind::DigitIgnored,
        CallEventKind::MenuTimeout,
        CallEventKind::InvalidChoice,
        CallEventKind::Repeat,
        CallEventKind::Retry,
        CallEventKind::LanguageSwitched,
        CallEventKind::RouteDecided,
        CallEventKind::RouteStart,
        CallEventKind::AgencyUnreachable,
        CallEventKind::AgencyInvite,
        CallEventKind::AgencyRinging,
        CallEventKind::AgencyEarlyMedia,
        CallEventKind::AgencyAnswered,
        CallEventKind::AgencyLateAnswer,
        CallEventKind::AgencyForkReleased,
        CallEventKind::AgencyCancelled,
        CallEventKind::AgencyCancelTimeout,
        CallEventKind::AgencyFailed,
        CallEventKind::AgencyTimeout,
        CallEventKind::AgencyHungUp,
        CallEventKind::AgencyHold,
        CallEventKind::AgencyLost,
        CallEventKind::Fallback,
        CallEventKind::QueueEnter,
        CallEventKind::QueueAnnounce,
        CallEventKind::QueueRetry,
        CallEventKind::QueueLeave,
        CallEventKind::QueueTimeout,
        CallEventKind::TransferRequested,
        CallEventKind::TransferRefused,
        CallEventKind::TransferDone,
        CallEventKind::TransferFailed,
        CallEventKind::RtpLatched,
        CallEventKind::RtpRefused,
        CallEventKind::RtpRefusedTotal,
        CallEventKind::PromptFailed,
        CallEventKind::BridgeFailed,
        CallEventKind::RecordingStarted,
        CallEventKind::RecordingDropped,
        CallEventKind::RecordingGaps,
        CallEventKind::RecordingFailed,
        CallEventKind::RecordingRecovered,
        CallEventKind::RecordingEnd,
        CallEventKind::RestartByeToSource,
        CallEventKind::RestartByeImpossible,
        CallEventKind::RestartBye,
        CallEventKind::RestartByeDone,
        CallEventKind::PolicyRepeatCaller,
        CallEventKind::PolicyWatched,
        CallEventKind::PolicyBlocked,
        CallEventKind::PolicyBlockOverridden,
        CallEventKind::ChallengeStarted,
        CallEventKind::ChallengePassed,
        CallEventKind::ChallengeFailed,
        CallEventKind::ChallengeExempt,
    ];

    /// The text in the log's `kind` column: stored in existing databases, so never changed.
    pub const fn as_str(self) -> &'static str {
        match self {
            CallEventKind::NotRefused => "not_refused",
            CallEventKind::LocationProblem => "location_problem",
            CallEventKind::SdpWarning => "sdp_warning",
            CallEventKind::MediaUpdate => "media_update",
            CallEventKind::Dtmf => "dtmf",
            CallEventKind::SipInfo => "sip_info",
            CallEventKind::Retransmissions => "retransmissions",
            CallEventKind::MergedRequests => "merged_requests",
            CallEventKind::RepeatedAcks => "repeated_acks",
            CallEventKind::NoAck => "no_ack",
            CallEventKind::ByeTimeout => "bye_timeout",
            CallEventKind::MaxDuration => "max_duration",
            CallEventKind::TransportError => "transport_error",
            CallEventKind::CallerProbe => "caller_probe",
            CallEventKind::CallerLost => "caller_lost",
            CallEventKind::Shutdown => "shutdown",
            CallEventKind::MediaFailed => "media_failed",
            CallEventKind::MediaStarted => "media_started",
            CallEventKind::MediaTimeout => "media_timeout",
            CallEventKind::MediaResumed => "media_resumed",
            CallEventKind::AgencyDtmf => "agency_dtmf",
            CallEventKind::MenuEntered => "menu",
            CallEventKind::PromptStarted => "prompt",
            CallEventKind::PromptInterrupted => "prompt_interrupted",
            CallEventKind::DigitReceived => "digit",
            CallEventKind::DigitIgnored => "digit_ignored",
            CallEventKind::MenuTimeout => "timeout",
            CallEventKind::InvalidChoice => "invalid_choice",
            CallEventKind::Repeat => "repeat",
            CallEventKind::Retry => "retry",
            CallEventKind::LanguageSwitched => "language",
            CallEventKind::RouteDecided => "route",
            CallEventKind::RouteStart => "route_start",
            CallEventKind::AgencyUnreachable => "agency_unreachable",
            CallEventKind::AgencyInvite => "agency_invite",
            CallEventKind::AgencyRinging => "agency_ringing",
            CallEventKind::AgencyEarlyMedia => "agency_early_media",
            CallEventKind::AgencyAnswered => "agency_answered",
            CallEventKind::AgencyLateAnswer => "agency_late_answer",
            CallEventKind::AgencyForkReleased => "agency_fork_released",
            CallEventKind::AgencyCancelled => "agency_cancelled",
            CallEventKind::AgencyCancelTimeout => "agency_cancel_timeout",
            CallEventKind::AgencyFailed => "agency_failed",
            CallEventKind::AgencyTimeout => "agency_timeout",
            CallEventKind::AgencyHungUp => "agency_hung_up",
            CallEventKind::AgencyHold => "agency_hold",
            CallEventKind::AgencyLost => "agency_lost",
            CallEventKind::Fallback => "fallback",
            CallEventKind::QueueEnter => "queue_enter",
            CallEventKind::QueueAnnounce => "queue_announce",
            CallEventKind::QueueRetry => "queue_retry",
            CallEventKind::QueueLeave => "queue_leave",
            CallEventKind::QueueTimeout => "queue_timeout",
            CallEventKind::TransferRequested => "transfer_requested",
            CallEventKind::TransferRefused => "transfer_refused",
            CallEventKind::TransferDone => "transfer_done",
            CallEventKind::TransferFailed => "transfer_failed",
            CallEventKind::RtpLatched => "rtp_latched",
            CallEventKind::RtpRefused => "rtp_refused",
            CallEventKind::RtpRefusedTotal => "rtp_refused_total",
            CallEventKind::PromptFailed => "prompt_failed",
            CallEventKind::BridgeFailed => "bridge_failed",
            CallEventKind::RecordingStarted => "recording_started",
            CallEventKind::RecordingDropped => "recording_dropped",
            CallEventKind::RecordingGaps => "recording_gaps",
            CallEventKind::RecordingFailed => "recording_failed",
            CallEventKind::RecordingRecovered => "recording_recovered",
            CallEventKind::RecordingEnd => "recording_end",
            CallEventKind::RestartByeToSource => "restart_bye_to_source",
            CallEventKind::RestartByeImpossible => "restart_bye_impossible",
            CallEventKind::RestartBye => "restart_bye",
            CallEventKind::RestartByeDone => "restart_bye_done",
            CallEventKind::PolicyRepeatCaller => "policy_repeat_caller",
            CallEventKind::PolicyWatched => "policy_watched",
            CallEventKind::PolicyBlocked => "policy_blocked",
            CallEventKind::PolicyBlockOverridden => "policy_block_overridden",
            CallEventKind::ChallengeStarted => "challenge_started",
            CallEventKind::ChallengePassed => "challenge_passed",
            CallEventKind::ChallengeFailed => "challenge_failed",
            CallEventKind::ChallengeExempt => "challenge_exempt",
        }
    }
}

impl fmt::Display for CallEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `kind` text that names no [`CallEventKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown call event kind {0:?}")]
pub struct UnknownEventKind(pub String);

impl FromStr for CallEventKind {
    type Err = UnknownEventKind;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        CallEventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| UnknownEventKind(text.to_owned()))
    }
}

impl From<&LatchEvent> for CallEventKind {
    fn from(event: &LatchEvent) -> Self {
        match event {
            LatchEvent::Latched { .. } => CallEventKind::RtpLatched,
            LatchEvent::Refused { .. } | LatchEvent::TooManySources { .. } => {
                CallEventKind::RtpRefused
            }
        }
    }
}

/// The IVR's own event kinds, as the call log names them.
impl From<&siaga_dialplan::TimelineKind> for CallEventKind {
    fn from(kind: &siaga_dialplan::TimelineKind) -> Self {
        use siaga_dialplan::TimelineKind;
        match kind {
            TimelineKind::MenuEntered { .. } => CallEventKind::MenuEntered,
            TimelineKind::PromptStarted { .. } => CallEventKind::PromptStarted,
            TimelineKind::PromptInterrupted { .. } => CallEventKind::PromptInterrupted,
            TimelineKind::DigitReceived { .. } => CallEventKind::DigitReceived,
            TimelineKind::DigitIgnored { .. } => CallEventKind::DigitIgnored,
            TimelineKind::Timeout { .. } => CallEventKind::MenuTimeout,
            TimelineKind::InvalidChoice { .. } => CallEventKind::InvalidChoice,
            TimelineKind::Repeat => CallEventKind::Repeat,
            TimelineKind::Retry { .. } => CallEventKind::Retry,
            TimelineKind::LanguageSwitched { .. } => CallEventKind::LanguageSwitched,
            TimelineKind::RouteDecided { .. } => CallEventKind::RouteDecided,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CallEventKind;

    /// `ALL` holds every kind once. The match stops compiling when a kind is added; giving the
    /// new one its number then fails this test until `ALL` lists it too.
    #[test]
    fn all_lists_every_kind_once() {
        let number = |kind: CallEventKind| match kind {
            CallEventKind::NotRefused => 0,
            CallEventKind::LocationProblem => 1,
            CallEventKind::SdpWarning => 2,
            CallEventKind::MediaUpdate => 3,
            CallEventKind::Dtmf => 4,
            CallEventKind::SipInfo => 5,
            CallEventKind::Retransmissions => 6,
            CallEventKind::MergedRequests => 7,
            CallEventKind::RepeatedAcks => 8,
            CallEventKind::NoAck => 9,
            CallEventKind::ByeTimeout => 10,
            CallEventKind::MaxDuration => 11,
            CallEventKind::TransportError => 12,
            CallEventKind::CallerProbe => 13,
            CallEventKind::CallerLost => 14,
            CallEventKind::Shutdown => 15,
            CallEventKind::MediaFailed => 16,
            CallEventKind::MediaStarted => 17,
            CallEventKind::MediaTimeout => 18,
            CallEventKind::MediaResumed => 19,
            CallEventKind::AgencyDtmf => 20,
            CallEventKind::MenuEntered => 21,
            CallEventKind::PromptStarted => 22,
            CallEventKind::PromptInterrupted => 23,
            CallEventKind::DigitReceived => 24,
            CallEventKind::DigitIgnored => 25,
            CallEventKind::MenuTimeout => 26,
            CallEventKind::InvalidChoice => 27,
            CallEventKind::Repeat => 28,
            CallEventKind::Retry => 29,
            CallEventKind::LanguageSwitched => 30,
            CallEventKind::RouteDecided => 31,
            CallEventKind::RouteStart => 32,
            CallEventKind::AgencyUnreachable => 33,
            CallEventKind::AgencyInvite => 34,
            CallEventKind::AgencyRinging => 35,
            CallEventKind::AgencyEarlyMedia => 36,
            CallEventKind::AgencyAnswered => 37,
            CallEventKind::AgencyLateAnswer => 38,
            CallEventKind::AgencyForkReleased => 39,
            CallEventKind::AgencyCancelled => 40,
            CallEventKind::AgencyCancelTimeout => 41,
            CallEventKind::AgencyFailed => 42,
            CallEventKind::AgencyTimeout => 43,
            CallEventKind::AgencyHungUp => 44,
            CallEventKind::AgencyHold => 45,
            CallEventKind::AgencyLost => 46,
            CallEventKind::Fallback => 47,
            CallEventKind::QueueEnter => 48,
            CallEventKind::QueueAnnounce => 49,
            CallEventKind::QueueRetry => 50,
            CallEventKind::QueueLeave => 51,
            CallEventKind::QueueTimeout => 52,
            CallEventKind::TransferRequested => 53,
            CallEventKind::TransferRefused => 54,
            CallEventKind::TransferDone => 55,
            CallEventKind::TransferFailed => 56,
            CallEventKind::RtpLatched => 57,
            CallEventKind::RtpRefused => 58,
            CallEventKind::RtpRefusedTotal => 59,
            CallEventKind::PromptFailed => 60,
            CallEventKind::BridgeFailed => 61,
            CallEventKind::RecordingStarted => 62,
            CallEventKind::RecordingDropped => 63,
            CallEventKind::RecordingGaps => 64,
            CallEventKind::RecordingFailed => 65,
            CallEventKind::RecordingRecovered => 66,
            CallEventKind::RecordingEnd => 67,
            CallEventKind::RestartByeToSource => 68,
            CallEventKind::RestartByeImpossible => 69,
            CallEventKind::RestartBye => 70,
            CallEventKind::RestartByeDone => 71,
            CallEventKind::PolicyRepeatCaller => 72,
            CallEventKind::PolicyWatched => 73,
            CallEventKind::PolicyBlocked => 74,
            CallEventKind::PolicyBlockOverridden => 75,
            CallEventKind::ChallengeStarted => 76,
            CallEventKind::ChallengePassed => 77,
            CallEventKind::ChallengeFailed => 78,
            CallEventKind::ChallengeExempt => 79,
        };
        let mut listed: Vec<usize> = CallEventKind::ALL.iter().map(|&k| number(k)).collect();
        listed.sort_unstable();
        assert_eq!(listed, (0..CallEventKind::ALL.len()).collect::<Vec<_>>());
    }

    /// Each text names one kind and reads back as it.
    #[test]
    fn texts_are_unique_and_read_back() {
        let mut texts: Vec<&str> = CallEventKind::ALL.iter().map(|k| k.as_str()).collect();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), CallEventKind::ALL.len());
        for kind in CallEventKind::ALL {
            assert_eq!(kind.as_str().parse::<CallEventKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert!("no_such_kind".parse::<CallEventKind>().is_err());
    }
}
