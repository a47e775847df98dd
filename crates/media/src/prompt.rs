//! Voice prompts and the outbound RTP stream that carries them.
//!
//! An emergency caller must always receive a continuous stream: silence suppression could
//! make a frightened caller think the line is dead. So [`OutboundStream`] produces one RTP
//! packet per packet time whether or not a prompt is playing — the prompt's audio, or
//! encoded silence — with one sequence/timestamp space for the whole call
//! ([`RtpSequencer`]), which later also carries the agency's audio.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::g711::Codec;
use crate::rtp::{
    FIXED_HEADER_LEN, PayloadType, RtpError, RtpSequencer, RtpTimestamp, SequenceNumber, Ssrc,
};
use crate::sdp::NegotiatedAudio;
use crate::wav::{self, WavError};

/// Samples in the longest frame we send (SDP allows us to be asked for at most 60 ms).
pub const MAX_FRAME_SAMPLES: usize = 480;
/// Largest packet we produce: header plus 60 ms of G.711.
pub const MAX_PACKET_LEN: usize = FIXED_HEADER_LEN + MAX_FRAME_SAMPLES;

/// Why a prompt file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PromptError {
    /// Not a readable WAV file.
    #[error("prompt is not a readable WAV file: {0}")]
    Wav(#[from] WavError),
    /// A WAV file, but not 8 kHz mono 16-bit PCM.
    #[error(
        "prompt must be 8000 Hz mono 16-bit PCM, but is {sample_rate} Hz, {channels} channel(s), \
         {bits_per_sample}-bit, format {format_tag}; convert it with \
         `sox in.wav -r 8000 -c 1 -b 16 -e signed-integer out.wav`"
    )]
    WrongFormat {
        /// Sample rate found.
        sample_rate: u32,
        /// Channels found.
        channels: u16,
        /// Bits per sample found.
        bits_per_sample: u16,
        /// Format tag found (1 = PCM, 6 = A-law, 7 = µ-law).
        format_tag: u16,
    },
}

/// A decoded prompt: 8 kHz mono samples, cheap to clone and share between calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    samples: Arc<[i16]>,
}

impl Prompt {
    /// Decodes a WAV file that must be 8 kHz mono 16-bit PCM.
    pub fn from_wav(bytes: &[u8]) -> Result<Prompt, PromptError> {
        let wav = wav::parse(bytes)?;
        if !(wav.is_pcm16() && wav.channels == 1 && wav.sample_rate == 8000) {
            return Err(PromptError::WrongFormat {
                sample_rate: wav.sample_rate,
                channels: wav.channels,
                bits_per_sample: wav.bits_per_sample,
                format_tag: wav.format_tag,
            });
        }
        let samples: Vec<i16> = wav
            .data
            .chunks_exact(2)
            .map(|pair| {
                i16::from_le_bytes([
                    pair.first().copied().unwrap_or(0),
                    pair.get(1).copied().unwrap_or(0),
                ])
            })
            .collect();
        Ok(Prompt::from_samples(samples))
    }

    /// A prompt from 8 kHz samples (synthesised tones, tests).
    pub fn from_samples(samples: Vec<i16>) -> Prompt {
        Prompt {
            samples: samples.into(),
        }
    }

    /// The samples.
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// Playing time.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.samples.len() as u64 * 125)
    }
}

/// Identifies one `play`/`enqueue` request, so its end can be matched to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlaybackId(pub u64);

/// Parameters of the stream we send, from SDP and the shell's random source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundConfig {
    /// G.711 law to encode with.
    pub codec: Codec,
    /// Payload type to send it under.
    pub payload_type: PayloadType,
    /// Packet time (clamped to 10–60 ms).
    pub ptime: Duration,
    /// Our SSRC (random).
    pub ssrc: Ssrc,
    /// First sequence number (random).
    pub first_sequence: SequenceNumber,
    /// First timestamp (random).
    pub first_timestamp: RtpTimestamp,
}

impl OutboundConfig {
    /// The configuration for a negotiated stream, with the random start values.
    pub fn for_negotiated(
        audio: &NegotiatedAudio,
        ssrc: Ssrc,
        first_sequence: SequenceNumber,
        first_timestamp: RtpTimestamp,
    ) -> Self {
        OutboundConfig {
            codec: audio.codec,
            payload_type: audio.payload_type,
            ptime: audio.ptime,
            ssrc,
            first_sequence,
            first_timestamp,
        }
    }
}

/// One packet produced by [`OutboundStream::poll_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundFrame<'s> {
    /// Bytes of the packet written at the start of the output buffer.
    pub len: usize,
    /// Its RTP timestamp (for the recorder's right channel).
    pub timestamp: RtpTimestamp,
    /// Its marker bit: set on the first packet of each prompt.
    pub marker: bool,
    /// The linear audio it carries, for the recorder and in-band checks.
    pub pcm: &'s [i16],
    /// A prompt whose last samples are in this packet.
    pub finished: Option<PlaybackId>,
}

#[derive(Debug, Clone)]
struct Playing {
    id: PlaybackId,
    prompt: Prompt,
    position: usize,
    started: bool,
}

/// The paced stream of packets we send to one peer.
#[derive(Debug, Clone)]
pub struct OutboundStream {
    codec: Codec,
    sequencer: RtpSequencer,
    samples_per_frame: usize,
    frame_period: Duration,
    next_due: Instant,
    /// Relayed packets are being sent through the stream ([`OutboundStream::forward`]): it
    /// generates none of its own until this moment passes without another.
    forwarding_until: Option<Instant>,
    playing: Option<Playing>,
    queue: VecDeque<Playing>,
    next_id: u64,
    pcm: [i16; MAX_FRAME_SAMPLES],
}

/// After a relayed packet, how much longer than a packet time the stream waits for the next
/// one before filling the gap with packets of its own: real senders jitter by a few ms, and
/// an unneeded fill costs the receiver nothing but a timestamp re-mapping.
pub const FILL_MARGIN: Duration = Duration::from_millis(20);

/// If the shell falls further behind than this, the missed packet slots are skipped (their
/// time passes in the RTP timestamps) instead of being sent in a burst.
const MAX_CATCH_UP: Duration = Duration::from_millis(100);

/// The packet time a stream asked for `ptime` really uses: 10–60 ms. Two sessions with the
/// same law and effective packet time can share one stream.
pub fn effective_ptime(ptime: Duration) -> Duration {
    ptime.clamp(Duration::from_millis(10), Duration::from_millis(60))
}

impl OutboundStream {
    /// A stream whose first packet is due at `first_packet_at`.
    pub fn new(config: OutboundConfig, first_packet_at: Instant) -> Self {
        let ptime = effective_ptime(config.ptime);
        let samples_per_frame = usize::try_from(ptime.as_micros() / 125)
            .unwrap_or(160)
            .min(MAX_FRAME_SAMPLES);
        OutboundStream {
            codec: config.codec,
            sequencer: RtpSequencer::new(
                config.ssrc,
                config.payload_type,
                config.first_sequence,
                config.first_timestamp,
            ),
            samples_per_frame,
            frame_period: ptime,
            next_due: first_packet_at,
            forwarding_until: None,
            playing: None,
            queue: VecDeque::new(),
            next_id: 0,
            pcm: [0; MAX_FRAME_SAMPLES],
        }
    }

    /// When the next packet is due: the shell's timer for this stream.
    pub fn next_due(&self) -> Instant {
        self.next_due
    }

    /// Samples per packet.
    pub fn samples_per_frame(&self) -> usize {
        self.samples_per_frame
    }

    /// The sequencer, for the relay that later feeds the agency's audio into this stream.
    pub fn sequencer_mut(&mut self) -> &mut RtpSequencer {
        &mut self.sequencer
    }

    fn new_playback(&mut self, prompt: &Prompt) -> Playing {
        let id = PlaybackId(self.next_id);
        self.next_id += 1;
        Playing {
            id,
            prompt: prompt.clone(),
            position: 0,
            started: false,
        }
    }

    /// Plays `prompt` from the next packet on, cutting off whatever was playing or queued.
    pub fn play(&mut self, prompt: &Prompt) -> PlaybackId {
        self.stop();
        let playing = self.new_playback(prompt);
        let id = playing.id;
        self.playing = Some(playing);
        id
    }

    /// Plays `prompt` after the current and already queued ones.
    pub fn enqueue(&mut self, prompt: &Prompt) -> PlaybackId {
        let playing = self.new_playback(prompt);
        let id = playing.id;
        if self.playing.is_none() {
            self.playing = Some(playing);
        } else {
            self.queue.push_back(playing);
        }
        id
    }

    /// Barge-in: stops the current prompt and drops the queue. Returns the prompt that was
    /// cut off, if one was playing. No `finished` is reported for it.
    pub fn stop(&mut self) -> Option<PlaybackId> {
        self.queue.clear();
        self.playing.take().map(|p| p.id)
    }

    /// Whether a prompt is playing or queued.
    pub fn is_playing(&self) -> bool {
        self.playing.is_some()
    }

    /// Writes a relayed packet into `out`, inside this stream: `payload` (codes in the
    /// stream's law, the relayed packet's own) stamped `timestamp` (from a
    /// [`crate::relay::ForwardClock`]), our SSRC, our next sequence number. The shell sends it
    /// at once. While relayed packets keep coming the stream generates none of its own; when
    /// none came for a packet time plus [`FILL_MARGIN`], or a prompt starts, it takes over
    /// again, continuing the timestamps. Returns the packet's length.
    pub fn forward(
        &mut self,
        now: Instant,
        timestamp: RtpTimestamp,
        marker: bool,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RtpError> {
        let needed = FIXED_HEADER_LEN + payload.len();
        if out.len() < needed {
            return Err(RtpError::BufferTooSmall {
                needed,
                available: out.len(),
            });
        }
        let samples = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let header = self.sequencer.header_at(timestamp, samples, marker);
        let len = header.write(payload, out)?;
        self.forwarding_until = Some(now + self.frame_period + FILL_MARGIN);
        Ok(len)
    }

    /// Writes the next packet into `out` if one is due at `now`. Call it again until it
    /// returns `Ok(None)`: a shell that woke late gets the missed packets (up to 100 ms of
    /// them; beyond that the missed time is skipped in the timestamps, not sent in a burst).
    pub fn poll_frame(
        &mut self,
        now: Instant,
        out: &mut [u8],
    ) -> Result<Option<OutboundFrame<'_>>, RtpError> {
        if let Some(until) = self.forwarding_until {
            if now < until && self.playing.is_none() {
                return Ok(None);
            }
            // The relayed packets stopped, or a prompt starts: our own packets go on from
            // now, with no burst for the time the relay covered.
            self.forwarding_until = None;
            self.next_due = now;
        }
        if now < self.next_due {
            return Ok(None);
        }
        let needed = FIXED_HEADER_LEN + self.samples_per_frame;
        if out.len() < needed {
            return Err(RtpError::BufferTooSmall {
                needed,
                available: out.len(),
            });
        }
        let samples_per_frame = u32::try_from(self.samples_per_frame).unwrap_or(160);
        while now.saturating_duration_since(self.next_due) > MAX_CATCH_UP {
            self.sequencer.skip(samples_per_frame);
            self.next_due += self.frame_period;
        }
        self.next_due += self.frame_period;

        let frame_len = self.samples_per_frame;
        let pcm = self.pcm.get_mut(..frame_len).unwrap_or_default();
        pcm.fill(0);
        let mut marker = false;
        let mut finished = None;
        let mut prompt_samples = 0;
        if let Some(playing) = self.playing.as_mut() {
            marker = !playing.started;
            playing.started = true;
            let remaining = playing
                .prompt
                .samples()
                .get(playing.position..)
                .unwrap_or_default();
            let take = remaining.len().min(frame_len);
            if let (Some(dst), Some(src)) = (pcm.get_mut(..take), remaining.get(..take)) {
                dst.copy_from_slice(src);
            }
            playing.position += take;
            prompt_samples = take;
            if playing.position >= playing.prompt.samples().len() {
                finished = Some(playing.id);
                self.playing = self.queue.pop_front();
            }
        }

        let header = self.sequencer.next_header(samples_per_frame, marker);
        let len = header.write_header(out)?;
        let payload = out.get_mut(len..len + frame_len).unwrap_or_default();
        if prompt_samples == 0 {
            // A silent frame (most of them, once an agency talks): no need to encode zeros.
            payload.fill(self.codec.silence());
        } else {
            self.codec.encode(pcm, payload);
        }
        Ok(Some(OutboundFrame {
            len: len + frame_len,
            timestamp: header.timestamp,
            marker,
            pcm,
            finished,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests start virtual time from one real Instant
mod tests {
    use super::*;
    use crate::rtp::RtpView;
    use proptest::prelude::*;
    use std::io::Cursor;

    const MS: Duration = Duration::from_millis(1);

    fn config(ptime_ms: u64) -> OutboundConfig {
        OutboundConfig {
            codec: Codec::Pcma,
            payload_type: PayloadType(8),
            ptime: Duration::from_millis(ptime_ms),
            ssrc: Ssrc(0xC0FFEE),
            first_sequence: SequenceNumber(65534),
            first_timestamp: RtpTimestamp(u32::MAX - 100),
        }
    }

    /// Ramp prompt: sample i = (i + 1) * 10, so positions are recognisable.
    fn ramp(len: usize) -> Prompt {
        Prompt::from_samples((0..len).map(|i| ((i + 1) * 10) as i16).collect())
    }

    struct Sent {
        packet: Vec<u8>,
        pcm: Vec<i16>,
        finished: Option<PlaybackId>,
    }

    /// Polls every millisecond from `from` for `duration`, collecting packets.
    fn run(stream: &mut OutboundStream, from: Instant, duration: Duration) -> Vec<Sent> {
        let mut sent = Vec::new();
        let mut buffer = [0u8; MAX_PACKET_LEN];
        let mut now = from;
        while now < from + duration {
            while let Some(frame) = stream.poll_frame(now, &mut buffer).expect("buffer fits") {
                sent.push(Sent {
                    pcm: frame.pcm.to_vec(),
                    finished: frame.finished,
                    packet: buffer[..frame.len].to_vec(),
                });
            }
            now += MS;
        }
        sent
    }

    #[test]
    fn packet_times_are_clamped_to_what_a_stream_sends() {
        let ms = Duration::from_millis;
        assert_eq!(effective_ptime(ms(5)), ms(10));
        assert_eq!(effective_ptime(ms(30)), ms(30));
        assert_eq!(effective_ptime(ms(100)), ms(60));
    }

    #[test]
    fn one_packet_per_ptime_even_when_idle() {
        for (ptime, expected) in [(20, 50), (30, 34), (10, 100), (60, 17)] {
            let start = Instant::now();
            let mut stream = OutboundStream::new(config(ptime), start);
            let sent = run(&mut stream, start, 1000 * MS);
            assert_eq!(sent.len(), expected, "{ptime} ms");
            assert!(
                sent.iter()
                    .all(|s| s.packet.len() == 12 + ptime as usize * 8)
            );
            // Idle: A-law silence, never a missing packet.
            assert!(
                sent.iter()
                    .all(|s| s.packet[12..].iter().all(|&b| b == 0xD5))
            );
        }
    }

    #[test]
    fn sequence_and_timestamp_step_and_wrap() {
        let start = Instant::now();
        let mut stream = OutboundStream::new(config(30), start);
        let sent = run(&mut stream, start, 200 * MS);
        let views: Vec<RtpView<'_>> = sent
            .iter()
            .map(|s| RtpView::parse(&s.packet).expect("RTP"))
            .collect();
        assert_eq!(views[0].sequence, SequenceNumber(65534));
        assert_eq!(views[0].timestamp, RtpTimestamp(u32::MAX - 100));
        for pair in views.windows(2) {
            assert_eq!(pair[1].sequence, pair[0].sequence.next());
            assert_eq!(pair[1].timestamp.since(pair[0].timestamp), 240);
            assert_eq!(pair[1].ssrc, Ssrc(0xC0FFEE));
            assert_eq!(pair[1].payload_type, PayloadType(8));
        }
    }

    #[test]
    fn prompt_audio_marker_and_finish() {
        let start = Instant::now();
        let mut stream = OutboundStream::new(config(20), start);
        let prompt = ramp(400); // 2.5 packets
        run(&mut stream, start, 40 * MS); // two idle packets
        let id = stream.play(&prompt);
        let sent = run(&mut stream, start + 40 * MS, 100 * MS);
        let markers: Vec<bool> = sent
            .iter()
            .map(|s| RtpView::parse(&s.packet).expect("RTP").marker)
            .collect();
        assert_eq!(markers, vec![true, false, false, false, false]);
        let audio: Vec<i16> = sent.iter().flat_map(|s| s.pcm.clone()).collect();
        assert_eq!(&audio[..400], prompt.samples());
        assert!(audio[400..].iter().all(|&s| s == 0));
        let finished: Vec<Option<PlaybackId>> = sent.iter().map(|s| s.finished).collect();
        assert_eq!(finished, vec![None, None, Some(id), None, None]);
        assert!(!stream.is_playing());
        // The payload is the prompt encoded with the negotiated law.
        let decoded: Vec<i16> = sent[0].packet[12..]
            .iter()
            .map(|&c| Codec::Pcma.decode_sample(c))
            .collect();
        let expected: Vec<i16> = prompt.samples()[..160]
            .iter()
            .map(|&s| Codec::Pcma.decode_sample(Codec::Pcma.encode_sample(s)))
            .collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn stop_mid_prompt_goes_silent_without_a_finish() {
        let start = Instant::now();
        let mut stream = OutboundStream::new(config(20), start);
        let id = stream.play(&ramp(8000));
        let first = run(&mut stream, start, 60 * MS);
        assert_eq!(first.len(), 3);
        assert_eq!(stream.stop(), Some(id));
        assert_eq!(stream.stop(), None);
        let after = run(&mut stream, start + 60 * MS, 100 * MS);
        assert_eq!(after.len(), 5);
        assert!(
            after
                .iter()
                .all(|s| s.finished.is_none() && s.pcm.iter().all(|&x| x == 0))
        );
    }

    #[test]
    fn queued_prompts_play_in_order_each_with_a_marker() {
        let start = Instant::now();
        let mut stream = OutboundStream::new(config(20), start);
        let a = stream.enqueue(&ramp(160));
        let b = stream.enqueue(&ramp(320));
        let sent = run(&mut stream, start, 100 * MS);
        let markers: Vec<bool> = sent
            .iter()
            .map(|s| RtpView::parse(&s.packet).expect("RTP").marker)
            .collect();
        assert_eq!(markers, vec![true, true, false, false, false]);
        let finished: Vec<Option<PlaybackId>> = sent.iter().map(|s| s.finished).collect();
        assert_eq!(finished, vec![Some(a), None, Some(b), None, None]);
    }

    #[test]
    fn play_replaces_what_was_playing() {
        let start = Instant::now();
        let mut stream = OutboundStream::new(config(20), start);
        stream.play(&ramp(8000));
        stream.enqueue(&ramp(8000));
        run(&mut stream, start, 20 * MS);
        let second = stream.play(&ramp(160));
        let sent = run(&mut stream, start + 20 * MS, 40 * MS);
        assert_eq!(sent[0].finished, Some(second));
        assert!(sent[1].pcm.iter().all(|&x| x == 0));
    }

    #[test]
    fn a_late_shell_catches_up_briefly_and_skips_the_rest_in_timestamps() {
        let start = Instant::now();
        let mut stream = OutboundStream::new(config(20), start);
        let mut buffer = [0u8; MAX_PACKET_LEN];
        let first = stream
            .poll_frame(start, &mut buffer)
            .expect("fits")
            .expect("due")
            .timestamp;
        // The shell wakes 1 s late: it gets a short burst, not 50 packets.
        let mut burst = Vec::new();
        while let Some(frame) = stream
            .poll_frame(start + 1020 * MS, &mut buffer)
            .expect("fits")
        {
            burst.push(frame.timestamp);
        }
        assert!((5..=6).contains(&burst.len()), "burst of {}", burst.len());
        // The timeline stays true: the last packet is stamped at 1020 ms.
        assert_eq!(burst.last().expect("burst").since(first), 1020 * 8);
        assert!(stream.next_due() > start + 1020 * MS);
    }

    /// The timestamps and sequence numbers of `packets`, parsed.
    fn stamps(packets: &[Vec<u8>]) -> Vec<(u16, u32)> {
        packets
            .iter()
            .map(|p| {
                let view = RtpView::parse(p).expect("RTP");
                (view.sequence.0, view.timestamp.0)
            })
            .collect()
    }

    #[test]
    fn relayed_packets_replace_generated_ones_and_a_gap_is_filled_after_a_margin() {
        let start = Instant::now();
        let mut stream = OutboundStream::new(config(20), start);
        let mut out = [0u8; MAX_PACKET_LEN];
        let mut sent = Vec::new();
        let mut poll = |stream: &mut OutboundStream, at: Instant, sent: &mut Vec<Vec<u8>>| {
            while let Some(frame) = stream.poll_frame(at, &mut out).expect("fits") {
                sent.push(out[..frame.len].to_vec());
            }
        };
        // Two generated packets (0 and 20 ms).
        for ms in (0..40u32).step_by(10) {
            poll(&mut stream, start + ms * MS, &mut sent);
        }
        assert_eq!(sent.len(), 2);
        // Relayed packets at 45, 65, 85 ms, as the peer stamped them (+ an offset); ticks in
        // between generate nothing.
        let mut relay = [0u8; MAX_PACKET_LEN];
        for (k, ms) in [45u32, 65, 85].into_iter().enumerate() {
            let ts = RtpTimestamp(u32::MAX - 100).add(320 + 160 * k as u32);
            let len = stream
                .forward(start + ms * MS, ts, k == 0, &[7u8; 160], &mut relay)
                .expect("fits");
            assert_eq!(&relay[12..len], &[7u8; 160]);
            sent.push(relay[..len].to_vec());
            poll(&mut stream, start + (ms + 10) * MS, &mut sent);
        }
        assert_eq!(sent.len(), 5, "no generated packet while relayed ones come");
        // Nothing more arrives: at 85 + 20 + 20 ms the stream fills, then paces on.
        poll(&mut stream, start + 120 * MS, &mut sent);
        assert_eq!(sent.len(), 5);
        poll(&mut stream, start + 125 * MS, &mut sent);
        assert_eq!(sent.len(), 6);
        poll(&mut stream, start + 145 * MS, &mut sent);
        assert_eq!(sent.len(), 7);
        // One unbroken stream: sequence numbers step by one, timestamps by 160.
        for pair in stamps(&sent).windows(2) {
            assert_eq!(pair[1].0, pair[0].0.wrapping_add(1));
            assert_eq!(pair[1].1, pair[0].1.wrapping_add(160));
        }
        assert!(sent[5][12..].iter().all(|&c| c == Codec::Pcma.silence()));
    }

    #[test]
    fn a_prompt_takes_over_from_relayed_packets_at_once() {
        let start = Instant::now();
        let mut stream = OutboundStream::new(config(20), start);
        let mut out = [0u8; MAX_PACKET_LEN];
        let ts = stream.sequencer_mut().next_timestamp();
        stream
            .forward(start, ts, false, &[7u8; 160], &mut out)
            .expect("fits");
        stream.play(&ramp(160));
        let frame = stream
            .poll_frame(start + 5 * MS, &mut out)
            .expect("fits")
            .expect("the prompt starts without waiting for the relay's margin");
        assert!(frame.marker);
        assert_eq!(frame.timestamp, ts.add(160));
    }

    #[test]
    fn a_short_buffer_is_an_error_not_a_panic() {
        let start = Instant::now();
        let mut stream = OutboundStream::new(config(20), start);
        assert!(matches!(
            stream.poll_frame(start, &mut [0u8; 100]),
            Err(RtpError::BufferTooSmall { needed: 172, .. })
        ));
    }

    fn wav_bytes(channels: u16, rate: u32, bits: u16, samples: &[i32]) -> Vec<u8> {
        let mut cursor = Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::new(&mut cursor, spec).expect("writer");
        for &s in samples {
            writer.write_sample(s).expect("sample");
        }
        writer.finalize().expect("finalize");
        cursor.into_inner()
    }

    #[test]
    fn prompts_load_from_8k_mono_pcm_wav_only() {
        let prompt =
            Prompt::from_wav(&wav_bytes(1, 8000, 16, &[1, -2, 300, -32768])).expect("valid");
        assert_eq!(prompt.samples(), &[1, -2, 300, -32768]);
        assert_eq!(prompt.duration(), Duration::from_micros(500));

        let wrong = [
            wav_bytes(2, 8000, 16, &[1, 2]),
            wav_bytes(1, 16000, 16, &[1, 2]),
            wav_bytes(1, 8000, 8, &[1, 2]),
        ];
        for bytes in wrong {
            let error = Prompt::from_wav(&bytes).expect_err("rejected");
            assert!(matches!(error, PromptError::WrongFormat { .. }));
            assert!(error.to_string().contains("sox"), "{error}");
        }
        assert_eq!(
            Prompt::from_wav(b"ID3 mp3 file"),
            Err(PromptError::Wav(WavError::NotWave))
        );
    }

    proptest! {
        #[test]
        fn from_wav_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = Prompt::from_wav(&bytes);
        }

        /// Whatever the prompts and poll times, packets are paced: one per ptime on average,
        /// each exactly header + frame long, sequence numbers without gaps.
        #[test]
        fn pacing_is_exact_under_any_polling(
            gaps in prop::collection::vec(0u64..50, 1..200),
            prompt_len in 0usize..2000,
        ) {
            let start = Instant::now();
            let mut stream = OutboundStream::new(config(20), start);
            stream.play(&ramp(prompt_len));
            let mut buffer = [0u8; MAX_PACKET_LEN];
            let mut now = start;
            let mut count = 0u64;
            let mut last_seq: Option<SequenceNumber> = None;
            for gap in gaps {
                now += Duration::from_millis(gap);
                while let Some(frame) = stream.poll_frame(now, &mut buffer).expect("fits") {
                    prop_assert_eq!(frame.len, 172);
                    let view = RtpView::parse(&buffer[..172]).expect("RTP");
                    if let Some(prev) = last_seq {
                        prop_assert_eq!(view.sequence, prev.next());
                    }
                    last_seq = Some(view.sequence);
                    count += 1;
                }
            }
            let elapsed_frames = (now - start).as_millis() as u64 / 20 + 1;
            prop_assert_eq!(count, elapsed_frames);
        }
    }
}
