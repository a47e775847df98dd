//! Audio passed between the two legs of a bridged call: what one leg receives, the other
//! sends.
//!
//! The usual case — both legs in the same law and packet time, no prompt playing — needs no
//! buffer at all: each packet is sent on as soon as it arrives, its codes unchanged, inside
//! the sending leg's own stream (its SSRC and sequence numbers); [`ForwardClock`] maps the
//! sender's timestamps onto that stream so the receiver sees the sender's timing, and keeps
//! them monotonic across the switches between generated and relayed audio.
//!
//! Otherwise (another law, another packet time, or a prompt mixed over the relayed audio)
//! the codes wait in a [`RelayBuffer`] and the sending leg takes them at its own pacing
//! ticks, decoded and mixed ([`RelayBuffer::mix_into`]) or copied
//! ([`RelayBuffer::copy_into`]). A little priming absorbs the difference between the two
//! packet clocks, and a bound on what is held keeps delay from building up: this path adds
//! up to a frame plus 20 ms.
//!
//! Pure: no clock; the shell decides when to take.

use std::collections::VecDeque;

use crate::g711::Codec;
use crate::prompt::MAX_FRAME_SAMPLES;
use crate::rtp::{RtpTimestamp, Ssrc};

/// The largest jump forward in a sender's timestamps still taken as its own timing (a lost
/// packet, a pause in its stream): 1 s. Beyond it the sender restarted its clock, and the
/// relayed audio simply continues our stream.
const MAX_TIMESTAMP_JUMP: i64 = 8000;

/// Maps the timestamps of relayed packets onto the stream that carries them.
///
/// While one sender's packets keep coming, a packet's timestamp is the sender's plus a fixed
/// offset, so gaps and jitter in its timing reach the receiver as they were. The offset is
/// (re)set so the packet continues our stream exactly — no overlap, no jump back — when the
/// sender changes (a new SSRC), when its timestamp would fall before what we already sent
/// (we filled a gap with our own packets, or it arrived out of order), or when it jumps
/// implausibly far.
#[derive(Debug, Default, Clone, Copy)]
pub struct ForwardClock {
    mapping: Option<(Ssrc, u32)>,
}

impl ForwardClock {
    /// Our timestamp for a packet `source` stamped `timestamp`, when the stream's next
    /// packet would be stamped `next`. Never before `next`.
    pub fn map(
        &mut self,
        source: Ssrc,
        timestamp: RtpTimestamp,
        next: RtpTimestamp,
    ) -> RtpTimestamp {
        if let Some((ssrc, offset)) = self.mapping
            && ssrc == source
        {
            let mapped = RtpTimestamp(timestamp.0.wrapping_add(offset));
            let ahead = mapped.since(next);
            if (0..=MAX_TIMESTAMP_JUMP).contains(&ahead) {
                return mapped;
            }
        }
        self.mapping = Some((source, next.0.wrapping_sub(timestamp.0)));
        next
    }

    /// Forgets the sender (unbridged): the next relayed audio continues the stream.
    pub fn reset(&mut self) {
        self.mapping = None;
    }
}

/// Extra audio (20 ms) held before play-out starts, so the two packet clocks' jitter does
/// not empty the buffer at every packet.
const PRIME: usize = 160;
/// Most audio held (200 ms): beyond it the oldest is dropped, so delay cannot build up.
const MAX_HELD: usize = 1600;

/// The play-out buffer of one leg's relayed audio: G.711 codes (one per sample) in the law
/// the peer sent.
#[derive(Debug)]
pub struct RelayBuffer {
    codes: VecDeque<u8>,
    law: Option<Codec>,
    primed: bool,
}

impl Default for RelayBuffer {
    fn default() -> Self {
        RelayBuffer {
            codes: VecDeque::with_capacity(MAX_HELD + MAX_FRAME_SAMPLES),
            law: None,
            primed: false,
        }
    }
}

impl RelayBuffer {
    /// Queues one packet's codes.
    pub fn push(&mut self, law: Codec, codes: &[u8]) {
        if let Some(held) = self.law.filter(|&held| held != law) {
            // The peer changed law (a re-INVITE, or an offerer that switches between the laws
            // it offered): what is held is converted, so no audio is dropped or delayed.
            for code in self.codes.iter_mut() {
                *code = law.encode_sample(held.decode_sample(*code));
            }
        }
        self.law = Some(law);
        self.codes.extend(codes);
        if self.codes.len() > MAX_HELD {
            let excess = self.codes.len() - MAX_HELD;
            self.codes.drain(..excess);
        }
    }

    /// The law of the held codes.
    pub fn law(&self) -> Option<Codec> {
        self.law
    }

    /// The held codes the next frame of `frame_len` samples plays, after priming.
    fn take(&mut self, frame_len: usize) -> std::collections::vec_deque::Drain<'_, u8> {
        let n = if !self.primed && self.codes.len() < frame_len + PRIME {
            0
        } else {
            // Ran dry: play what is left, then wait to re-prime.
            self.primed = self.codes.len() >= frame_len;
            frame_len.min(self.codes.len())
        };
        self.codes.drain(..n)
    }

    /// Copies the next codes unchanged over the start of `payload` (a frame of our silence
    /// in the same law, so a short buffer leaves silence after them). Returns whether any
    /// relayed audio was copied.
    pub fn copy_into(&mut self, payload: &mut [u8]) -> bool {
        let codes = self.take(payload.len());
        let any = codes.len() > 0;
        for (slot, code) in payload.iter_mut().zip(codes) {
            *slot = code;
        }
        any
    }

    /// Decodes the next `pcm.len()` samples and adds them into `pcm` (saturating, so a
    /// prompt playing at the same time is mixed, not replaced). Returns whether any relayed
    /// audio was added.
    pub fn mix_into(&mut self, pcm: &mut [i16]) -> bool {
        let Some(law) = self.law else {
            return false;
        };
        let codes = self.take(pcm.len());
        let any = codes.len() > 0;
        for (slot, code) in pcm.iter_mut().zip(codes) {
            *slot = slot.saturating_add(law.decode_sample(code));
        }
        any
    }

    /// Whether any codes are held.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// Takes up to `payload.len()` held codes, converted to `law`, regardless of priming (the
    /// rest of a prompt's mix, sent before relayed packets go straight through again).
    /// Returns how many were written at the start of `payload`.
    pub fn take_into(&mut self, law: Codec, payload: &mut [u8]) -> usize {
        let held = self.law.unwrap_or(law);
        let n = payload.len().min(self.codes.len());
        for (slot, code) in payload.iter_mut().zip(self.codes.drain(..n)) {
            *slot = if held == law {
                code
            } else {
                law.encode_sample(held.decode_sample(code))
            };
        }
        if self.codes.is_empty() {
            self.primed = false;
        }
        n
    }

    /// Drops what is held (the bridge ended), so a later bridge starts primed afresh.
    pub fn clear(&mut self) {
        self.codes.clear();
        self.primed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 600 ms of 20 ms packets in and 30 ms frames out, interleaved by time, through `take`.
    fn relay_20_in_30_out(mut take: impl FnMut(&mut RelayBuffer) -> Vec<u8>) -> Vec<u8> {
        let mut buf = RelayBuffer::default();
        let mut next_in = 0u8;
        let mut out_all = Vec::new();
        for ms in 0..600 {
            if ms % 20 == 0 {
                let packet: Vec<u8> = (0..160)
                    .map(|_| {
                        next_in = next_in.wrapping_add(1);
                        next_in
                    })
                    .collect();
                buf.push(Codec::Pcma, &packet);
            }
            if ms % 30 == 29 {
                out_all.extend(take(&mut buf));
            }
        }
        out_all
    }

    /// Apart from priming silence, the stream is the input, contiguous.
    fn assert_in_order(out: &[u8], silence: u8) {
        let audio: Vec<u8> = out.iter().copied().skip_while(|&c| c == silence).collect();
        assert!(audio.len() > 4000, "{}", audio.len());
        for pair in audio.windows(2).take(4000) {
            assert_eq!(pair[1], pair[0].wrapping_add(1));
        }
    }

    #[test]
    fn same_law_codes_go_out_unchanged_and_in_order() {
        let silence = Codec::Pcma.silence();
        let out = relay_20_in_30_out(|buf| {
            let mut frame = [silence; 240];
            buf.copy_into(&mut frame);
            frame.to_vec()
        });
        assert_in_order(&out, silence);
    }

    #[test]
    fn mixed_audio_is_the_decoded_codes_in_order() {
        let out = relay_20_in_30_out(|buf| {
            let mut frame = [0i16; 240];
            buf.mix_into(&mut frame);
            // Back to codes to compare: decode then encode is exact for A-law.
            frame
                .iter()
                .map(|&s| Codec::Pcma.encode_sample(s))
                .collect()
        });
        assert_in_order(&out, Codec::Pcma.encode_sample(0));
    }

    #[test]
    fn a_short_buffer_leaves_our_silence_after_the_codes() {
        let mut buf = RelayBuffer::default();
        buf.push(Codec::Pcmu, &[1; 320]);
        let silence = Codec::Pcmu.silence();
        let mut frame = [silence; 160];
        assert!(buf.copy_into(&mut frame));
        assert!(frame.iter().all(|&c| c == 1));
        // 160 left, a 240-sample frame: they play, then silence, and the buffer re-primes.
        let mut frame = [silence; 240];
        assert!(buf.copy_into(&mut frame));
        assert!(frame[..160].iter().all(|&c| c == 1));
        assert!(frame[160..].iter().all(|&c| c == silence));
        let mut frame = [silence; 160];
        assert!(!buf.copy_into(&mut frame));
    }

    #[test]
    fn delay_is_bounded_and_mixing_saturates() {
        let mut buf = RelayBuffer::default();
        let loudest = Codec::Pcma.encode_sample(i16::MAX);
        for _ in 0..100 {
            buf.push(Codec::Pcma, &[loudest; 160]);
        }
        assert!(buf.codes.len() <= MAX_HELD);
        let mut out = [i16::MAX - 100; 160];
        assert!(buf.mix_into(&mut out));
        assert!(out.iter().all(|&s| s == i16::MAX));
        buf.clear();
        let mut out = [0i16; 160];
        assert!(!buf.mix_into(&mut out));
    }

    #[test]
    fn held_codes_are_taken_whole_and_in_the_asked_law() {
        let mut buf = RelayBuffer::default();
        let tone: Vec<u8> = (0..100)
            .map(|i| Codec::Pcmu.encode_sample(i * 50))
            .collect();
        buf.push(Codec::Pcmu, &tone);
        let mut out = [0u8; 160];
        // Not primed, still taken: 100 codes, converted to A-law.
        assert_eq!(buf.take_into(Codec::Pcma, &mut out), 100);
        for (&a, &u) in out.iter().zip(&tone) {
            let (a, u) = (Codec::Pcma.decode_sample(a), Codec::Pcmu.decode_sample(u));
            assert!((i32::from(a) - i32::from(u)).abs() <= 64.max(i32::from(u).abs() / 16));
        }
        assert!(buf.is_empty());
        assert_eq!(buf.take_into(Codec::Pcma, &mut out), 0);
    }

    const A: Ssrc = Ssrc(1);
    const B: Ssrc = Ssrc(2);

    #[test]
    fn a_senders_timing_is_kept_gaps_included() {
        let mut clock = ForwardClock::default();
        // Our stream is at 5000; the sender starts at 100 and its packets follow it exactly.
        assert_eq!(
            clock.map(A, RtpTimestamp(100), RtpTimestamp(5000)),
            RtpTimestamp(5000)
        );
        assert_eq!(
            clock.map(A, RtpTimestamp(260), RtpTimestamp(5160)),
            RtpTimestamp(5160)
        );
        // A lost packet: the gap stays a gap.
        assert_eq!(
            clock.map(A, RtpTimestamp(580), RtpTimestamp(5320)),
            RtpTimestamp(5480)
        );
        // Across the wrap of the sender's clock.
        let mut clock = ForwardClock::default();
        assert_eq!(
            clock.map(A, RtpTimestamp(u32::MAX - 79), RtpTimestamp(7)),
            RtpTimestamp(7)
        );
        assert_eq!(
            clock.map(A, RtpTimestamp(80), RtpTimestamp(167)),
            RtpTimestamp(167)
        );
    }

    #[test]
    fn relayed_timestamps_never_go_back_or_leap() {
        let mut clock = ForwardClock::default();
        clock.map(A, RtpTimestamp(0), RtpTimestamp(1000));
        // We filled a gap with two packets of our own (stream now at 1480), then the late
        // packet comes: it continues our stream instead of overlapping it.
        assert_eq!(
            clock.map(A, RtpTimestamp(160), RtpTimestamp(1480)),
            RtpTimestamp(1480)
        );
        // …and the next follows the sender's timing from there.
        assert_eq!(
            clock.map(A, RtpTimestamp(320), RtpTimestamp(1640)),
            RtpTimestamp(1640)
        );
        // Out of order: an older packet is stamped at the stream's position, not before it.
        assert_eq!(
            clock.map(A, RtpTimestamp(160), RtpTimestamp(1800)),
            RtpTimestamp(1800)
        );
        // A leap of more than a second is a restarted clock, not a pause.
        assert_eq!(
            clock.map(A, RtpTimestamp(900_000), RtpTimestamp(1960)),
            RtpTimestamp(1960)
        );
        // A new sender continues the stream too.
        assert_eq!(
            clock.map(B, RtpTimestamp(42), RtpTimestamp(2120)),
            RtpTimestamp(2120)
        );
        clock.reset();
        assert_eq!(
            clock.map(B, RtpTimestamp(202), RtpTimestamp(9000)),
            RtpTimestamp(9000)
        );
    }

    #[test]
    fn audio_in_alternating_laws_keeps_flowing_in_the_latest_law() {
        let mut buf = RelayBuffer::default();
        let tone: Vec<i16> = (0..160).map(|i| (i * 100) as i16).collect();
        let mut heard = Vec::new();
        for k in 0..20 {
            let law = if k % 2 == 0 { Codec::Pcma } else { Codec::Pcmu };
            let codes: Vec<u8> = tone.iter().map(|&s| law.encode_sample(s)).collect();
            buf.push(law, &codes);
            assert_eq!(buf.law(), Some(law));
            let mut frame = [0i16; 160];
            if buf.mix_into(&mut frame) {
                heard.extend_from_slice(&frame);
            }
        }
        // Every packet after priming plays: nothing is dropped at a change of law.
        assert_eq!(heard.len(), 19 * 160);
        // …and each sample survives the conversions, each re-quantising it, within about
        // G.711's own precision (a few per cent).
        for (&out, &sent) in heard.iter().zip(tone.iter().cycle()) {
            let error = (i32::from(out) - i32::from(sent)).abs();
            assert!(
                error <= 64.max(i32::from(sent).abs() / 16),
                "{out} vs {sent}"
            );
        }
    }
}
