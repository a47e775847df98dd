//! The engine's two doors: what goes in ([`Input`]) and what comes out ([`Output`]).

use std::net::SocketAddr;
use std::time::Duration;

use crate::end_reason::EndReason;
use crate::ids::{CallId, CallRef, LegId};
pub use crate::net::{Direction, Flow, Transport};
use crate::timeline::CallEventKind;

/// Events from the media side of a call leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// An RTP port is bound for the leg.
    Allocated { local: SocketAddr },
    /// No port could be bound; the call is still answered (without audio) and the failure logged.
    AllocationFailed { reason: String },
    /// The first RTP packet arrived from the peer.
    FirstPacket,
    /// A DTMF digit from any of the three sources.
    Digit { digit: char, source: &'static str },
    /// The prompt started by `MediaCommand::Play` reached its end.
    PromptFinished { playback: PlaybackId },
    /// No RTP for the configured time: logged, and the caller is probed (in-dialog OPTIONS);
    /// an emergency call is never ended for the silence alone.
    Timeout { silent_for: Duration },
    /// RTP came back after a `Timeout`: the caller is there.
    Resumed { silent_for: Duration },
    /// The caller spoke: the first voiced run of `SPEECH_EVENT_MS` (once per leg; loud noise
    /// is not a voice). A caller challenged during a call flood passes by speaking.
    Speech,
    /// The caller's leg was released: what its voice meter saw over the call.
    VoiceActivity(siaga_media::VoiceTotals),
}

/// How long the caller's first voiced run must be before `MediaEvent::Speech`: longer than a
/// click or a burst of line noise, short enough for "hello?" or "tolong".
pub const SPEECH_EVENT_MS: u32 = 300;

pub enum Input<'a> {
    /// One UDP datagram or one framed TCP message.
    Sip { flow: Flow, data: &'a [u8] },
    /// The time returned by `poll_timeout` has come.
    Timeout,
    /// The shell could not send on a flow (TCP connection gone, ICMP unreachable).
    TransportError { flow: Flow, reason: String },
    Media {
        call: CallRef,
        leg: LegId,
        event: MediaEvent,
    },
    /// A supervisor or the console ends a call.
    HangUp { call: CallRef },
    /// Stop taking new calls; calls in progress continue.
    Drain,
    /// Whether the call log and the recordings take writes (the shell probes them). Only
    /// OPTIONS answers change (503 while they do not), so a load balancer in front sends new
    /// calls to another node; a call that still arrives here is answered as always.
    StorageHealthy(bool),
    /// At start: end a dialog the previous run left up (a crash), with a BYE of its own.
    ByeAfterRestart(Box<crate::restart::OpenDialog>),
}

/// The caller's identity as received. Personal data: not logged at INFO level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerIdentity {
    pub from: String,
    pub p_asserted_identity: Vec<String>,
    pub privacy: Option<String>,
    pub contact: Option<String>,
    pub user_agent: Option<String>,
    pub remote_party_id: Option<String>,
}

/// How the dialled number was classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallKind {
    Emergency {
        entry: String,
    },
    Test,
    /// Only in old logs: INVITEs to numbers outside the dialplan are no longer calls.
    NotEmergency,
}

impl CallKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            CallKind::Emergency { .. } => "emergency",
            CallKind::Test => "test",
            CallKind::NotEmergency => "not_emergency",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallStarted {
    pub call: CallRef,
    pub call_id: CallId,
    /// NENA i3 `emergency-CallId` and `emergency-IncidentId`, also sent to agencies.
    pub emergency_call_id: String,
    pub incident_id: String,
    pub flow: Flow,
    pub dialled: String,
    pub kind: CallKind,
    pub caller: CallerIdentity,
}

/// Records for the call log. The shell stamps wall-clock time when it drains them (the same
/// instant as the input that caused them).
#[derive(Debug, Clone, PartialEq)]
pub enum LogRecord {
    CallStarted(Box<CallStarted>),
    CallAnswered {
        call: CallRef,
    },
    CallEnded {
        call: CallRef,
        reason: EndReason,
        detail: Option<String>,
    },
    /// A SIP message in or out, verbatim. `call` is `None` for messages that belong to no
    /// call (OPTIONS, garbage): of those only a sample is logged, see `NonCallCounts`.
    Sip {
        call: Option<CallRef>,
        /// The caller's leg or an agency leg of the call.
        leg: LegId,
        direction: Direction,
        flow: Flow,
        bytes: Vec<u8>,
        note: Option<String>,
    },
    /// Where the caller is, from one request (the INVITE, then re-INVITEs/UPDATEs): every
    /// location hint, the chosen one, cell-derived ones and problems. Kept as history.
    Location {
        call: CallRef,
        /// "invite", "reinvite" or "update".
        source: &'static str,
        report: Box<siaga_location::LocationReport>,
    },
    /// How many messages outside every call one source sent in one counting window (only
    /// a sample of them is kept as `Sip` records).
    NonCallCounts(Box<crate::noncall::NonCallTally>),
    /// One event on a call's timeline (prompt, digit, route decision, media timeout, …).
    Timeline {
        call: CallRef,
        kind: CallEventKind,
        detail: String,
    },
    /// What the gateway measured about the call; once per call, after its `CallEnded`.
    CallSignals {
        call: CallRef,
        signals: CallSignals,
    },
    /// The centre went under attack (a flood of emergency calls) or came out of it: a
    /// gateway event.
    Attack(siaga_dialplan::AttackChange),
}

/// Per-call signals for telling silent, abandoned and false calls from genuine ones (issue 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallSignals {
    /// Digits the caller pressed (RFC 4733, SIP INFO, in-band).
    pub digits: u32,
    /// From our answer to the caller's hang-up (or the call's end); `None`: never answered.
    pub answered_for: Option<Duration>,
    /// How long agencies were on the line (all answered legs); `None`: no agency answered.
    pub agency_talk: Option<Duration>,
    /// The caller sent a number (From or P-Asserted-Identity user part), not `anonymous`.
    pub usable_identity: bool,
    /// The caller's voice activity; `None` when the media side never reported it.
    pub voice: Option<siaga_media::VoiceTotals>,
}

/// Identifies one prompt playback, so a late "finished" for a stopped prompt cannot end the
/// next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlaybackId(pub u64);

/// Work for the media side of a call leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCommand {
    /// Bind an RTP port for this leg on `local_ip` (the address the peer reaches us on);
    /// answer with `MediaEvent::Allocated`. For the caller's leg this also starts the call's
    /// recording, from the first packet in either direction.
    Allocate {
        call: CallRef,
        leg: LegId,
        local_ip: std::net::IpAddr,
        /// The IP the peer's SIP comes from (the caller's source, the agency's address): RTP
        /// from it may be learnt when a NAT hides the address in the peer's SDP.
        peer_ip: std::net::IpAddr,
    },
    /// The remote side and codec are known (or changed, after a re-INVITE): send and receive.
    Start {
        call: CallRef,
        leg: LegId,
        session: MediaSession,
    },
    /// The peer's SIP now comes from `peer_ip` (an in-dialog request from another address, as
    /// after a Wi-Fi/LTE handover): RTP from that IP may be latched from now on.
    PeerMoved {
        call: CallRef,
        leg: LegId,
        peer_ip: std::net::IpAddr,
    },
    /// Play a prompt WAV (8 kHz mono 16-bit) to the leg now, replacing any prompt playing;
    /// answer with `MediaEvent::PromptFinished` when it ends.
    Play {
        call: CallRef,
        leg: LegId,
        playback: PlaybackId,
        prompt: std::path::PathBuf,
    },
    /// Stop that prompt (barge-in). No `PromptFinished` follows for it.
    StopPlayback {
        call: CallRef,
        leg: LegId,
        playback: PlaybackId,
    },
    /// Relay audio between the caller's leg and an agency leg (both allocated): what the agency
    /// sends goes to the caller (and the recording's right channel), and the reverse. Replaces
    /// any earlier bridge of this call.
    Bridge { call: CallRef, agency: LegId },
    /// Stop relaying; the caller's leg goes back to prompts/silence.
    Unbridge { call: CallRef },
    /// The leg is over: close its port. Releasing the caller's leg finalises the recording
    /// (SHA-256, duration and path go to the call log).
    Release { call: CallRef, leg: LegId },
}

/// What the media side needs to know about a negotiated stream.
pub use siaga_media::sdp::NegotiatedAudio as MediaSession;

#[derive(Debug)]
pub enum Output {
    Transmit { flow: Flow, bytes: Vec<u8> },
    Log(LogRecord),
    Media(MediaCommand),
}
