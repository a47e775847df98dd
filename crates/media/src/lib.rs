//! Siaga's media core: everything the RTP path needs, without IO.
//!
//! The shell owns the sockets, the clock and the files; it calls in here once per packet
//! with bytes and an [`std::time::Instant`], and gets bytes, samples and events back. The
//! per-packet functions work on borrowed slices and caller-provided buffers and do not
//! allocate.
//!
//! - [`g711`]: A-law/µ-law codec.
//! - [`sdp`]: offer/answer for the one audio stream of a leg.
//! - [`rtp`]: header view, writer, sequence/timestamp continuity.
//! - [`dtmf`]: key presses from RFC 4733 events, SIP INFO and in-band tones, each press
//!   reported once ([`DigitFilter`]).
//! - [`recording`]: the true-timeline stereo mixer behind the call recorder; [`wav`] its file
//!   header and crash repair.
//! - [`prompt`]: prompt decoding and the paced outbound stream.
//! - [`relay`]: audio between the two legs of a bridged call: sent on as it arrives, or
//!   through a play-out buffer when it must be transcoded or mixed.
//! - [`reception`]: lost and late packets of an incoming stream.
//! - [`latch`]: which RTP sources a leg takes (symmetric RTP that an outsider cannot hijack).
//! - [`silence`]: a leg's first packet, media timeout and return of audio.
//! - [`voice`]: whether the caller speaks (speech frames, longest run), for the call's signals.

pub mod dtmf;
pub mod g711;
pub mod latch;
pub mod prompt;
pub mod reception;
pub mod recording;
pub mod relay;
pub mod rtp;
pub mod sdp;
pub mod silence;
pub mod voice;
pub mod wav;

pub use dtmf::{Digit, DigitFilter, DtmfEvent, DtmfSource};
pub use g711::Codec;
pub use latch::{Latch, LatchConfig, LatchEvent, Verdict};
pub use prompt::{OutboundConfig, OutboundFrame, OutboundStream, PlaybackId, Prompt, PromptError};
pub use reception::Reception;
pub use recording::{Channel, MixerConfig, StereoMixer};
pub use relay::{ForwardClock, RelayBuffer};
pub use rtp::{PayloadType, RtpHeader, RtpSequencer, RtpTimestamp, RtpView, SequenceNumber, Ssrc};
pub use sdp::{Answer, Direction, LocalAudio, NegotiatedAudio, SdpError, SdpWarning};
pub use silence::{SilenceEvent, SilenceWatch};
pub use voice::{VoiceConfig, VoiceMeter, VoiceTotals};
