//! One call leg's RTP endpoint: receive (latching without hijack, DTMF, media timeout), send (a
//! continuous stream: prompt, silence or relayed audio) and feed the call's recording when it
//! is the caller's leg. A leg owns no task or timer: its media reactor ([`super::reactor`])
//! hands it its datagrams as they arrive, the peer leg's relayed packets, and its pacing
//! ticks.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

use std::net::UdpSocket;

use tokio::sync::mpsc;

use siaga_engine::ids::{CallRef, LegId};
use siaga_engine::io::{MediaEvent, MediaSession, PlaybackId};
use siaga_engine::timeline::CallEventKind;
use siaga_media::dtmf::{InbandDetector, TelephoneEventDecoder};
use siaga_media::prompt::{MAX_FRAME_SAMPLES, MAX_PACKET_LEN, effective_ptime};
use siaga_media::recording::{MixerConfig, StereoMixer};
use siaga_media::rtp::FIXED_HEADER_LEN;
use siaga_media::{
    Channel, Codec, DigitFilter, DtmfEvent, ForwardClock, Latch, LatchConfig, OutboundConfig,
    OutboundStream, Prompt, Reception, RelayBuffer, RtpTimestamp, RtpView, SequenceNumber,
    SilenceEvent, SilenceWatch, Ssrc, Verdict, VoiceConfig, VoiceMeter,
};

use super::MediaEventOut;
use super::recorder::{ChunkRejected, RecorderHandle, RecordingId};
use crate::calllog::CallLog;

/// Work for a leg.
pub(super) enum LegCommand {
    Start(MediaSession),
    /// The peer's SIP comes from this IP now: its RTP may be latched.
    PeerMoved(IpAddr),
    Play {
        playback: PlaybackId,
        prompt: Prompt,
    },
    StopPlayback {
        playback: PlaybackId,
    },
    /// Relay audio with this leg of the same call (on the same reactor): what one receives,
    /// the other sends.
    Bridge {
        peer: LegId,
    },
    Unbridge,
    /// End the leg (finalising the recording).
    Release,
}

/// Decode buffer: the largest datagram we read.
pub(super) const MAX_DATAGRAM: usize = 2048;

/// An audio packet a bridged leg received, for its peer to send on: where its payload lies
/// in the datagram, and what the peer needs to stamp it.
pub(super) struct RelayedPacket {
    pub peer: LegId,
    pub codec: Codec,
    pub ssrc: Ssrc,
    pub timestamp: RtpTimestamp,
    pub marker: bool,
    pub payload: Range<usize>,
}

/// Packets a leg (or a reactor's legs) handled, for the metrics.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct MediaCounts {
    pub received: u64,
    pub sent_relayed: u64,
    pub sent_generated: u64,
    pub lost: u64,
    pub late: u64,
}

impl std::ops::AddAssign for MediaCounts {
    fn add_assign(&mut self, other: MediaCounts) {
        self.received += other.received;
        self.sent_relayed += other.sent_relayed;
        self.sent_generated += other.sent_generated;
        self.lost += other.lost;
        self.late += other.late;
    }
}

/// The call's recording, fed by the caller's leg.
pub(super) struct RecordingFeed {
    pub id: RecordingId,
    pub path: std::path::PathBuf,
    pub writer: RecorderHandle,
    mixer: Option<StereoMixer>,
    out: Vec<i16>,
    dropped_chunks: u64,
}

impl RecordingFeed {
    pub(super) fn new(id: RecordingId, path: std::path::PathBuf, writer: RecorderHandle) -> Self {
        RecordingFeed {
            id,
            path,
            writer,
            mixer: None,
            out: Vec::new(),
            dropped_chunks: 0,
        }
    }
}

/// Everything a leg starts with.
pub(super) struct LegSetup {
    pub call: CallRef,
    pub leg: LegId,
    /// Bound and non-blocking; the reactor reads it at each tick.
    pub socket: UdpSocket,
    pub events: mpsc::Sender<MediaEventOut>,
    pub calllog: CallLog,
    pub media_timeout: Duration,
    pub recording: Option<RecordingFeed>,
    /// Random bits for SSRC, first sequence number and timestamp.
    pub random: u64,
    /// The IP the peer's SIP comes from: the only other IP whose RTP may be learnt (NAT).
    pub peer_ip: IpAddr,
    pub latch: LatchConfig,
}

/// The prompt the engine asked for, under both ids.
#[derive(Clone, Copy)]
struct Playing {
    engine: PlaybackId,
    stream: siaga_media::PlaybackId,
    /// Samples sent so far (to continue after a codec change).
    position: usize,
}

pub(super) struct Leg {
    call: CallRef,
    leg: LegId,
    socket: UdpSocket,
    events: mpsc::Sender<MediaEventOut>,
    calllog: CallLog,
    random: u64,

    session: Option<MediaSession>,
    /// Which sources are taken and where to send (the SDP address, or a learnt NAT source).
    latch: Latch,

    /// First packet, media timeout, audio back.
    silence: SilenceWatch,

    outbound: Option<OutboundStream>,
    /// The law `outbound` encodes with.
    stream_codec: Codec,
    playing: Option<Playing>,
    prompt: Option<Prompt>,
    tx_buf: [u8; MAX_PACKET_LEN],
    tx_pcm: [i16; MAX_FRAME_SAMPLES],

    events_decoder: Option<TelephoneEventDecoder>,
    inband: Option<InbandDetector>,
    digit_filter: DigitFilter,
    rx_pcm: Box<[i16; MAX_DATAGRAM]>,

    /// The leg this one is bridged with.
    peer: Option<LegId>,
    /// The peer's audio that cannot be sent on as it came (another law or packet time, or a
    /// prompt playing over it): mixed in at the pacing ticks.
    relay_in: RelayBuffer,
    /// Stamps the peer's packets sent on as they came.
    forward_clock: ForwardClock,

    recording: Option<RecordingFeed>,
    /// The caller's voice activity (caller's leg only), reported to the engine at release.
    voice: Option<VoiceMeter>,
    /// `MediaEvent::Speech` was sent (once per leg).
    speech_reported: bool,
    /// Lost and late packets of the peer's stream.
    reception: Reception,
    /// Counts not yet taken by the reactor (lost and late: those already taken).
    counts: MediaCounts,
    taken: MediaCounts,
}

/// The media clock.
pub(super) fn now() -> Instant {
    Instant::now()
}

impl Leg {
    pub(super) fn new(setup: LegSetup) -> Leg {
        let is_caller = setup.leg == LegId::Caller;
        let now = now();
        Leg {
            call: setup.call,
            leg: setup.leg,
            socket: setup.socket,
            events: setup.events,
            calllog: setup.calllog,
            random: setup.random,
            session: None,
            latch: Latch::new(setup.latch, Some(setup.peer_ip)),
            silence: SilenceWatch::new(setup.media_timeout, now),
            outbound: None,
            stream_codec: Codec::Pcma,
            playing: None,
            prompt: None,
            tx_buf: [0; MAX_PACKET_LEN],
            tx_pcm: [0; MAX_FRAME_SAMPLES],
            events_decoder: None,
            // In-band digits matter on the caller's leg only.
            inband: is_caller.then(InbandDetector::default),
            digit_filter: DigitFilter::default(),
            rx_pcm: Box::new([0; MAX_DATAGRAM]),
            peer: None,
            relay_in: RelayBuffer::default(),
            forward_clock: ForwardClock::default(),
            recording: setup.recording,
            voice: is_caller.then(|| VoiceMeter::new(VoiceConfig::default())),
            speech_reported: false,
            reception: Reception::default(),
            counts: MediaCounts::default(),
            taken: MediaCounts::default(),
        }
    }

    fn emit(&self, event: MediaEvent) {
        let out = MediaEventOut {
            call: self.call,
            leg: self.leg,
            event,
        };
        if let Err(e) = self.events.try_send(out) {
            tracing::warn!(call = %self.call, leg = %self.leg, error = %e, "media event not delivered");
        }
    }

    fn log_event(&self, kind: CallEventKind, detail: String) {
        self.calllog.timeline(self.call, kind, detail);
    }

    /// The leg's RTP socket (non-blocking), for the reactor to drain.
    pub(super) fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    pub(super) fn on_command(&mut self, cmd: LegCommand, now: Instant) {
        match cmd {
            LegCommand::Start(session) => self.start(session, now),
            LegCommand::PeerMoved(ip) => self.latch.set_signalling_ip(ip),
            LegCommand::Play { playback, prompt } => self.play(playback, prompt, now),
            LegCommand::StopPlayback { playback } => {
                if self.playing.is_some_and(|p| p.engine == playback) {
                    self.playing = None;
                    self.prompt = None;
                    if let Some(stream) = self.outbound.as_mut() {
                        stream.stop();
                    }
                }
            }
            LegCommand::Bridge { peer } => {
                self.unbridge();
                self.peer = Some(peer);
            }
            LegCommand::Unbridge => self.unbridge(),
            LegCommand::Release => {}
        }
    }

    fn unbridge(&mut self) {
        self.peer = None;
        self.relay_in.clear();
        self.forward_clock.reset();
    }

    /// The packets handled since the last call (lost and late: newly counted ones).
    pub(super) fn take_counts(&mut self) -> MediaCounts {
        let (lost, late) = (self.reception.lost(), self.reception.late());
        let mut counts = std::mem::take(&mut self.counts);
        // A straggler can turn a lost packet into a late one: what was taken stays taken.
        counts.lost = lost.saturating_sub(self.taken.lost);
        counts.late = late.saturating_sub(self.taken.late);
        self.taken.lost = self.taken.lost.max(lost);
        self.taken.late = late;
        counts
    }

    /// The call this leg belongs to.
    pub(super) fn call(&self) -> CallRef {
        self.call
    }

    /// Which leg of the call this is.
    pub(super) fn id(&self) -> LegId {
        self.leg
    }

    /// The leg this one is bridged with.
    pub(super) fn peer(&self) -> Option<LegId> {
        self.peer
    }

    /// A new or changed session (answer, re-INVITE).
    fn start(&mut self, session: MediaSession, now: Instant) {
        let previous = self.session.replace(session);
        // A changed address in SDP wins over what was learnt: the peer moved.
        self.latch.set_remote(session.remote);
        let was_receiving = previous.is_none_or(|p| p.direction.receives());
        if session.direction.receives() && !was_receiving {
            // Back from hold: the silence clock starts now.
            self.silence.restart(now);
        }
        if self.events_decoder.as_ref().map(|d| d.payload_type()) != session.dtmf_payload_type {
            self.events_decoder = session.dtmf_payload_type.map(TelephoneEventDecoder::new);
        }
        match (&mut self.outbound, previous) {
            (None, _) => self.start_stream(&session, None, now),
            (Some(stream), Some(old))
                if old.codec == session.codec
                    && effective_ptime(old.ptime) == effective_ptime(session.ptime) =>
            {
                stream
                    .sequencer_mut()
                    .set_payload_type(session.payload_type);
            }
            (Some(_), _) => {
                // New law or packet time: a new stream, same SSRC and continuous numbering.
                let continuity = self.outbound.as_mut().map(|s| {
                    let seq = s.sequencer_mut();
                    (seq.ssrc(), seq.next_sequence(), seq.next_timestamp())
                });
                self.start_stream(&session, continuity, now);
            }
        }
    }

    /// (Re)creates the outbound stream, which the reactor's ticks pace; a prompt that was
    /// playing continues where it was.
    fn start_stream(
        &mut self,
        session: &MediaSession,
        continuity: Option<(Ssrc, SequenceNumber, RtpTimestamp)>,
        now: Instant,
    ) {
        let r = self.random;
        let (ssrc, seq, ts) = continuity.unwrap_or((
            Ssrc((r >> 32) as u32),
            SequenceNumber((r >> 16) as u16 & 0x7FFF),
            RtpTimestamp(r as u32),
        ));
        let config = OutboundConfig::for_negotiated(session, ssrc, seq, ts);
        let mut stream = OutboundStream::new(config, now);
        if let (Some(playing), Some(prompt)) = (self.playing.as_mut(), self.prompt.as_ref()) {
            let rest = prompt
                .samples()
                .get(playing.position..)
                .unwrap_or_default()
                .to_vec();
            let rest = Prompt::from_samples(rest);
            playing.stream = stream.play(&rest);
            playing.position = 0;
            self.prompt = Some(rest);
        }
        // The stream itself knows which frames are due at each tick, and skips time it
        // could not send instead of bursting after a stall.
        self.outbound = Some(stream);
        self.stream_codec = session.codec;
    }

    fn play(&mut self, playback: PlaybackId, prompt: Prompt, now: Instant) {
        if self.outbound.is_none() {
            // A prompt before any `Start`: it plays out in time (the IVR never stalls) and is
            // sent as soon as the remote is known.
            let session = self.session.unwrap_or_else(MediaSession::fallback);
            self.start_stream(&session, None, now);
        }
        let Some(stream) = self.outbound.as_mut() else {
            return;
        };
        let id = stream.play(&prompt);
        self.playing = Some(Playing {
            engine: playback,
            stream: id,
            position: 0,
        });
        self.prompt = Some(prompt);
    }

    /// Where to send: the learnt source, else what SDP said.
    fn target(&self) -> Option<SocketAddr> {
        self.latch.target()
    }

    fn may_send(&self) -> bool {
        self.session.is_none_or(|s| s.direction.sends())
    }

    /// Sends every packet due now.
    pub(super) fn on_pacing(&mut self, now: Instant) {
        loop {
            let Some(stream) = self.outbound.as_mut() else {
                return;
            };
            let ssrc = stream.sequencer_mut().ssrc();
            let (len, timestamp, finished, samples) = match stream.poll_frame(now, &mut self.tx_buf)
            {
                Ok(Some(frame)) => {
                    let samples = frame.pcm.len().min(MAX_FRAME_SAMPLES);
                    if let (Some(dst), Some(src)) =
                        (self.tx_pcm.get_mut(..samples), frame.pcm.get(..samples))
                    {
                        dst.copy_from_slice(src);
                    }
                    (frame.len, frame.timestamp, frame.finished, samples)
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e, "outbound RTP frame");
                    return;
                }
            };
            let codec = self.stream_codec;
            let pcm = self.tx_pcm.get_mut(..samples).unwrap_or_default();
            let payload = self
                .tx_buf
                .get_mut(FIXED_HEADER_LEN..len)
                .unwrap_or_default();
            if self.peer.is_some() {
                let buf = &mut self.relay_in;
                if self.playing.is_none() && buf.law() == Some(codec) {
                    // Same law and only our silence in the frame: the peer's codes go out as
                    // they came, with no decoding or re-encoding.
                    buf.copy_into(payload);
                } else if buf.mix_into(pcm) {
                    // Relayed audio joins a prompt, or changes law: re-encode the payload.
                    codec.encode(pcm, payload);
                }
            }
            if let Some(playing) = self.playing.as_mut() {
                playing.position += samples;
            }
            self.send(len, ssrc, timestamp, now, false);
            if let (Some(done), Some(playing)) = (finished, self.playing)
                && done == playing.stream
            {
                self.playing = None;
                self.prompt = None;
                self.emit(MediaEvent::PromptFinished {
                    playback: playing.engine,
                });
            }
        }
    }

    /// Sends the packet in `tx_buf[..len]` to the peer and, on the caller's leg, records
    /// what the caller hears — only what was really sent, as the phone decodes it.
    fn send(
        &mut self,
        len: usize,
        ssrc: Ssrc,
        timestamp: RtpTimestamp,
        now: Instant,
        relayed: bool,
    ) {
        let Some(to) = self.target().filter(|_| self.may_send()) else {
            return;
        };
        if relayed {
            self.counts.sent_relayed += 1;
        } else {
            self.counts.sent_generated += 1;
        }
        if let Some(packet) = self.tx_buf.get(..len)
            && let Err(e) = self.socket.send_to(packet, to)
        {
            tracing::trace!(error = %e, %to, "RTP send failed");
        }
        if let Some(rec) = self.recording.as_mut() {
            let payload = self.tx_buf.get(FIXED_HEADER_LEN..len).unwrap_or_default();
            let heard = self.stream_codec.decode(payload, &mut self.tx_pcm);
            let pcm = self.tx_pcm.get(..heard).unwrap_or_default();
            record(
                rec,
                &self.calllog,
                self.call,
                Channel::ToCaller,
                ssrc,
                timestamp,
                now,
                pcm,
            );
        }
    }

    /// The peer leg received `packet` (`payload` is its audio): sent on at once when it
    /// fits this leg's stream as it is (same law and packet time, no prompt playing), else
    /// held for the pacing ticks to transcode or mix. Returns whether it was sent now.
    pub(super) fn on_relayed(
        &mut self,
        packet: &RelayedPacket,
        payload: &[u8],
        now: Instant,
    ) -> bool {
        if self.peer.is_none() {
            return false;
        }
        let fits = self.playing.is_none()
            && packet.codec == self.stream_codec
            && self
                .outbound
                .as_ref()
                .is_some_and(|s| s.samples_per_frame() == payload.len());
        if !fits {
            self.relay_in.push(packet.codec, payload);
            return false;
        }
        // What a prompt's mix left held goes first, so nothing is lost or reordered.
        self.flush_held(now);
        let Some(stream) = self.outbound.as_mut() else {
            return false;
        };
        let ssrc = stream.sequencer_mut().ssrc();
        let next = stream.sequencer_mut().next_timestamp();
        let timestamp = self.forward_clock.map(packet.ssrc, packet.timestamp, next);
        match stream.forward(now, timestamp, packet.marker, payload, &mut self.tx_buf) {
            Ok(len) => {
                self.send(len, ssrc, timestamp, now, true);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "relayed RTP packet");
                false
            }
        }
    }

    /// Sends whatever the play-out buffer still holds, now, as packets of this leg's stream.
    fn flush_held(&mut self, now: Instant) {
        let codec = self.stream_codec;
        let mut codes = [0u8; MAX_FRAME_SAMPLES];
        while !self.relay_in.is_empty() {
            let Some(stream) = self.outbound.as_mut() else {
                return;
            };
            let frame = codes
                .get_mut(..stream.samples_per_frame())
                .unwrap_or_default();
            let n = self.relay_in.take_into(codec, frame);
            let ssrc = stream.sequencer_mut().ssrc();
            let timestamp = stream.sequencer_mut().next_timestamp();
            let held = codes.get(..n).unwrap_or_default();
            match stream.forward(now, timestamp, false, held, &mut self.tx_buf) {
                Ok(len) => self.send(len, ssrc, timestamp, now, false),
                Err(e) => {
                    tracing::error!(error = %e, "held relayed audio");
                    self.relay_in.clear();
                }
            }
        }
    }

    /// Whether a packet's source is taken (see [`Latch`]); latches and first refusals go to
    /// the call's timeline, later refusals are only counted.
    fn accept_source(&mut self, from: SocketAddr, now: Instant) -> bool {
        let (verdict, event) = self.latch.on_packet(from, now);
        if let Some(event) = event {
            tracing::debug!(call = %self.call, leg = %self.leg, %event, "RTP source");
            self.log_event(
                CallEventKind::from(&event),
                format!("leg {}: {event}", self.leg),
            );
        }
        verdict == Verdict::Accept
    }

    /// A datagram for this leg. Returns the audio its peer is to send on, if bridged.
    pub(super) fn on_datagram(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        now: Instant,
    ) -> Option<RelayedPacket> {
        let Ok(packet) = RtpView::parse(datagram) else {
            // STUN, RTCP-mux, garbage: not RTP audio.
            return None;
        };
        if !self.accept_source(from, now) {
            return None;
        }
        self.counts.received += 1;
        self.reception.on_packet(packet.sequence);
        // The engine probes a silent caller; it must know the audio is back.
        if let Some(event) = self.silence.on_packet(now) {
            self.emit(media_event(event));
        }
        if let Some(decoder) = self.events_decoder.as_mut()
            && packet.payload_type == decoder.payload_type()
        {
            if let Some(event) = decoder.on_packet(&packet, now) {
                self.digit(event);
            }
            return None;
        }
        let Some(codec) = Codec::from_static_payload_type(packet.payload_type) else {
            // Comfort noise (13) or a codec we did not negotiate: leave silence.
            return None;
        };
        let relayed = self.peer.and_then(|peer| {
            // The payload's place in the datagram (it is a sub-slice of it).
            let start = (packet.payload.as_ptr() as usize).wrapping_sub(datagram.as_ptr() as usize);
            let payload = start..start.saturating_add(packet.payload.len());
            datagram.get(payload.clone())?;
            Some(RelayedPacket {
                peer,
                codec,
                ssrc: packet.ssrc,
                timestamp: packet.timestamp,
                marker: packet.marker,
                payload,
            })
        });
        // In-band keys matter to the IVR; once an agency is on the line the tones reach it as
        // audio, so the detector (a few µs per packet) rests.
        let detecting = self.inband.is_some() && self.peer.is_none();
        if self.recording.is_none() && !detecting && self.voice.is_none() {
            // An agency's leg: its audio is relayed as codes; nothing here needs it decoded.
            return relayed;
        }
        let samples = codec.decode(packet.payload, &mut self.rx_pcm[..]);
        let pcm = self.rx_pcm.get(..samples).unwrap_or_default();
        if let Some(voice) = self.voice.as_mut() {
            voice.feed(pcm);
            if !self.speech_reported
                && voice.totals().longest_voiced_ms >= siaga_engine::io::SPEECH_EVENT_MS
            {
                self.speech_reported = true;
                self.emit(MediaEvent::Speech);
            }
        }
        if let Some(rec) = self.recording.as_mut() {
            record(
                rec,
                &self.calllog,
                self.call,
                Channel::FromCaller,
                packet.ssrc,
                packet.timestamp,
                now,
                pcm,
            );
        }
        let mut found: Vec<DtmfEvent> = Vec::new();
        if let Some(detector) = self.inband.as_mut().filter(|_| detecting) {
            detector.feed(pcm, now, |event| found.push(event));
        }
        for event in found {
            self.digit(event);
        }
        relayed
    }

    fn digit(&mut self, event: DtmfEvent) {
        if self.digit_filter.accept(&event) {
            self.emit(MediaEvent::Digit {
                digit: event.digit.as_char(),
                source: event.source.name(),
            });
        }
    }

    pub(super) fn on_housekeeping(&mut self, now: Instant) {
        if let Some(rec) = self.recording.as_mut() {
            drain(rec, &self.calllog, self.call, now, false);
        }
        let expecting = self.session.is_none_or(|s| s.direction.receives());
        if let Some(event) = self.silence.check(now, expecting) {
            self.emit(media_event(event));
        }
    }

    /// Release: the last audio goes to the writer, which finalises the file.
    pub(super) fn finish(&mut self, now: Instant) {
        if let Some(voice) = self.voice.take() {
            self.emit(MediaEvent::VoiceActivity(voice.totals()));
        }
        let refused = self.latch.refusals();
        if !refused.is_empty() {
            self.log_event(
                CallEventKind::RtpRefusedTotal,
                format!("leg {}: {refused}", self.leg),
            );
        }
        if let Some(mut rec) = self.recording.take() {
            drain(&mut rec, &self.calllog, self.call, now, true);
            if rec.dropped_chunks > 0 {
                self.log_event(
                    CallEventKind::RecordingGaps,
                    format!(
                        "{}: {} chunk(s) of about 100 ms were dropped (writer queue full) and are silence",
                        rec.path.display(),
                        rec.dropped_chunks
                    ),
                );
            }
            rec.writer.close(rec.id);
        }
    }
}

/// The engine's form of a silence event.
fn media_event(event: SilenceEvent) -> MediaEvent {
    match event {
        SilenceEvent::FirstPacket => MediaEvent::FirstPacket,
        SilenceEvent::Resumed { silent_for } => MediaEvent::Resumed { silent_for },
        SilenceEvent::Timeout { silent_for } => MediaEvent::Timeout { silent_for },
    }
}

/// Places one packet's audio on the recording's timeline; the first packet either way
/// starts the recording.
#[allow(clippy::too_many_arguments)]
fn record(
    rec: &mut RecordingFeed,
    calllog: &CallLog,
    call: CallRef,
    channel: Channel,
    ssrc: Ssrc,
    timestamp: RtpTimestamp,
    at: Instant,
    pcm: &[i16],
) {
    let mixer = match rec.mixer.as_mut() {
        Some(mixer) => mixer,
        None => {
            calllog.timeline(
                call,
                CallEventKind::RecordingStarted,
                format!(
                    "{}: 0:00 in the file is this moment (first RTP packet)",
                    rec.path.display()
                ),
            );
            rec.mixer
                .insert(StereoMixer::new(at, MixerConfig::default()))
        }
    };
    let placement = mixer.push(channel, ssrc, timestamp, at, pcm);
    if placement.too_far_ahead > 0 {
        tracing::debug!(%call, ?placement, "audio beyond the recording window");
    }
}

/// Hands released audio to the writer (all of it at the end).
fn drain(rec: &mut RecordingFeed, calllog: &CallLog, call: CallRef, now: Instant, last: bool) {
    let Some(mixer) = rec.mixer.as_mut() else {
        return;
    };
    let first_frame = mixer.released_frames();
    if last {
        mixer.finish(&mut rec.out);
    } else {
        mixer.drain_ready(now, &mut rec.out);
    }
    if rec.out.is_empty() {
        return;
    }
    let samples = std::mem::take(&mut rec.out);
    match rec.writer.chunk(rec.id, first_frame, samples) {
        Ok(()) => {}
        Err(why) => {
            rec.dropped_chunks += 1;
            if rec.dropped_chunks == 1 {
                let why = match why {
                    ChunkRejected::QueueFull => "the writer is behind (disk slow?)",
                    ChunkRejected::WriterGone => "the writer has stopped",
                };
                tracing::error!(%call, why, "recording audio dropped; it becomes silence");
                calllog.timeline(
                    call,
                    CallEventKind::RecordingDropped,
                    format!(
                        "{}: audio dropped because {why}; the gap is kept as silence",
                        rec.path.display()
                    ),
                );
            }
        }
    }
}
