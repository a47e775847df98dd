//! The pure half of the evidential call recorder: placing audio on a true timeline.
//!
//! A recording is stereo 8 kHz: left is what the caller sent, right is what the caller
//! heard (prompts, later the agency). Time in the file must be real time, because a
//! supervisor reviewing a call asks "how long was the caller silent before the agent
//! spoke?". So packets are never appended back to back: each stream is anchored on its first
//! packet by arrival time (a stream that starts late starts late in the file) and then
//! follows its RTP timestamps, so loss, DTX and jitter leave silence exactly where the audio
//! is missing. A stream is re-anchored on its arrival time when its SSRC changes, or when
//! its timestamps and its arrival times disagree by more than
//! [`MixerConfig::reanchor_after`] (a timestamp jump, or clock drift grown too large).
//!
//! Frames are handed out [`MixerConfig::playout_delay`] behind real time so that late and
//! reordered packets still land in place. Memory is one fixed ring buffer per recording.

use std::time::{Duration, Instant};

use crate::rtp::{RtpTimestamp, Ssrc};

/// Which side of the call a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// What the caller sent (left).
    FromCaller,
    /// What the caller heard: prompts, then the agency (right).
    ToCaller,
}

impl Channel {
    const fn index(self) -> usize {
        match self {
            Channel::FromCaller => 0,
            Channel::ToCaller => 1,
        }
    }
}

/// Timing policy of a [`StereoMixer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixerConfig {
    /// How far behind real time frames are released (200 ms): packets later than this
    /// cannot be placed any more.
    pub playout_delay: Duration,
    /// Disagreement between a packet's timestamp position and its arrival time beyond
    /// which the stream is re-anchored on arrival (300 ms).
    pub reanchor_after: Duration,
    /// Audio the ring buffer can hold ahead of the released point (2 s, 64 KiB). Must
    /// cover `playout_delay + reanchor_after` plus the longest gap between two calls of
    /// [`StereoMixer::drain_ready`].
    pub capacity: Duration,
}

impl Default for MixerConfig {
    fn default() -> Self {
        MixerConfig {
            playout_delay: Duration::from_millis(200),
            reanchor_after: Duration::from_millis(300),
            capacity: Duration::from_secs(2),
        }
    }
}

/// Why a stream's position was (re)set from its arrival time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// The stream's first packet.
    FirstPacket,
    /// The SSRC changed (new source, e.g. after a transfer).
    NewSsrc,
    /// Timestamps and arrival times disagreed beyond the bound.
    TimestampJump,
}

/// Where one packet went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Frame index (since the recording start) of the packet's first sample.
    pub first_frame: i64,
    /// Samples written.
    pub written: usize,
    /// Samples dropped because their place was already released (too late).
    pub too_late: usize,
    /// Samples dropped because they lie beyond the ring buffer.
    pub too_far_ahead: usize,
    /// Set when this packet (re)anchored its stream.
    pub anchored: Option<Anchor>,
}

/// The timestamp/position correspondence of one stream.
#[derive(Debug, Clone, Copy)]
struct StreamClock {
    ssrc: Ssrc,
    timestamp: RtpTimestamp,
    frame: i64,
}

/// Places two mono streams on one stereo timeline and releases interleaved frames.
#[derive(Debug, Clone)]
pub struct StereoMixer {
    config: MixerConfig,
    start: Instant,
    /// `[left, right]` per frame; slot `f % len` holds frame `f` for
    /// `released <= f < released + len`.
    ring: Vec<[i16; 2]>,
    /// First frame not yet handed out.
    released: i64,
    /// One past the last frame any packet wrote.
    written_end: i64,
    streams: [Option<StreamClock>; 2],
}

/// Frames (8 kHz) in a duration.
fn frames_in(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos() / 125_000).unwrap_or(i64::MAX)
}

impl StereoMixer {
    /// A mixer whose frame 0 is `start`, the moment the recording began.
    pub fn new(start: Instant, config: MixerConfig) -> Self {
        let needed = config.playout_delay + config.reanchor_after + Duration::from_millis(100);
        let capacity = usize::try_from(frames_in(config.capacity.max(needed))).unwrap_or(16_000);
        StereoMixer {
            config,
            start,
            ring: vec![[0, 0]; capacity],
            released: 0,
            written_end: 0,
            streams: [None, None],
        }
    }

    fn frame_at(&self, at: Instant) -> i64 {
        frames_in(at.saturating_duration_since(self.start))
    }

    /// Places one packet's decoded samples. `arrival` is when the packet was received.
    pub fn push(
        &mut self,
        channel: Channel,
        ssrc: Ssrc,
        timestamp: RtpTimestamp,
        arrival: Instant,
        samples: &[i16],
    ) -> Placement {
        let arrival_frame = self.frame_at(arrival);
        let slot = channel.index();
        let by_timestamp = match self.streams.get(slot).copied().flatten() {
            None => Err(Anchor::FirstPacket),
            Some(clock) if clock.ssrc != ssrc => Err(Anchor::NewSsrc),
            Some(clock) => {
                let frame = clock.frame + timestamp.since(clock.timestamp);
                if (frame - arrival_frame).abs() > frames_in(self.config.reanchor_after) {
                    Err(Anchor::TimestampJump)
                } else {
                    Ok((frame, clock))
                }
            }
        };
        let (first_frame, anchored) = match by_timestamp {
            Ok((frame, clock)) => {
                // Follow the newest packet so timestamp differences stay small (wrap-safe).
                if timestamp.since(clock.timestamp) > 0 {
                    self.set_clock(slot, ssrc, timestamp, frame);
                }
                (frame, None)
            }
            Err(reason) => {
                self.set_clock(slot, ssrc, timestamp, arrival_frame);
                (arrival_frame, Some(reason))
            }
        };
        let mut placement = Placement {
            first_frame,
            written: 0,
            too_late: 0,
            too_far_ahead: 0,
            anchored,
        };
        // The packet's frames that fall inside the ring, placed run by run.
        let ring_len = self.ring.len() as i64;
        let n = i64::try_from(samples.len()).unwrap_or(i64::MAX);
        let too_late = (self.released - first_frame).clamp(0, n);
        let too_far = (first_frame + n - (self.released + ring_len)).clamp(0, n - too_late);
        placement.too_late = too_late as usize;
        placement.too_far_ahead = too_far as usize;
        let placed = &samples[too_late as usize..(n - too_far) as usize];
        if !placed.is_empty() {
            let mut rest = placed;
            self.for_each_run(first_frame + too_late, placed.len(), |run| {
                for (pair, &sample) in run.iter_mut().zip(rest) {
                    pair[slot] = sample;
                }
                rest = rest.get(run.len()..).unwrap_or_default();
            });
            placement.written = placed.len();
            self.written_end = self.written_end.max(first_frame + n - too_far);
        }
        placement
    }

    /// Calls `f` on the ring's slots for `count` frames from frame index `from`, in
    /// contiguous runs: one modulo per call rather than per frame (the hottest loop of a
    /// recorded call). `count` may exceed the ring (a release after a long gap).
    fn for_each_run(&mut self, from: i64, count: usize, mut f: impl FnMut(&mut [[i16; 2]])) {
        let len = self.ring.len();
        let mut at = from.rem_euclid(len as i64) as usize;
        let mut left = count;
        while left > 0 {
            let run = left.min(len - at);
            f(&mut self.ring[at..at + run]);
            left -= run;
            at = (at + run) % len;
        }
    }

    fn set_clock(&mut self, slot: usize, ssrc: Ssrc, timestamp: RtpTimestamp, frame: i64) {
        if let Some(stream) = self.streams.get_mut(slot) {
            *stream = Some(StreamClock {
                ssrc,
                timestamp,
                frame,
            });
        }
    }

    /// Appends every frame that is now `playout_delay` old to `out`, interleaved
    /// `[left, right, left, right, …]`, silence where no audio was placed. Returns the
    /// number of frames appended. Reuse `out` between calls to avoid allocation.
    pub fn drain_ready(&mut self, now: Instant, out: &mut Vec<i16>) -> usize {
        let ready_until = self.frame_at(now) - frames_in(self.config.playout_delay);
        self.release_until(ready_until, out)
    }

    /// Releases everything placed so far, for the end of the recording.
    pub fn finish(&mut self, out: &mut Vec<i16>) -> usize {
        self.release_until(self.written_end, out)
    }

    /// Frame index of the next frame to be released (the recording's length so far).
    pub fn released_frames(&self) -> i64 {
        self.released
    }

    fn release_until(&mut self, until: i64, out: &mut Vec<i16>) -> usize {
        if until <= self.released {
            return 0;
        }
        let count = until - self.released;
        out.reserve(usize::try_from(count).unwrap_or(0).saturating_mul(2));
        // Each released pair is copied out and reset to silence.
        self.for_each_run(
            self.released,
            usize::try_from(count).unwrap_or(usize::MAX),
            |pairs| {
                out.extend_from_slice(pairs.as_flattened());
                pairs.fill([0, 0]);
            },
        );
        self.released = until;
        usize::try_from(count).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests start virtual time from one real Instant
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn left(frames: &[i16]) -> Vec<i16> {
        frames.iter().step_by(2).copied().collect()
    }

    fn right(frames: &[i16]) -> Vec<i16> {
        frames.iter().skip(1).step_by(2).copied().collect()
    }

    /// 20 ms packets whose samples all carry `value`.
    fn packet(value: i16) -> Vec<i16> {
        vec![value; 160]
    }

    /// Runs of equal values as (value, start frame, length).
    fn runs(samples: &[i16]) -> Vec<(i16, usize, usize)> {
        let mut runs: Vec<(i16, usize, usize)> = Vec::new();
        for (i, &s) in samples.iter().enumerate() {
            match runs.last_mut() {
                Some((value, _, len)) if *value == s => *len += 1,
                _ => runs.push((s, i, 1)),
            }
        }
        runs
    }

    #[test]
    fn late_start_of_one_side_is_silence_not_a_shift() {
        let start = Instant::now();
        let mut mixer = StereoMixer::new(start, MixerConfig::default());
        // Caller speaks from 0 ms; the prompt side starts at 1 s.
        for i in 0..100u32 {
            mixer.push(
                Channel::FromCaller,
                Ssrc(1),
                RtpTimestamp(5000 + 160 * i),
                start + 20 * MS * i,
                &packet(1),
            );
        }
        for i in 0..50u32 {
            mixer.push(
                Channel::ToCaller,
                Ssrc(2),
                RtpTimestamp(77 + 160 * i),
                start + 1000 * MS + 20 * MS * i,
                &packet(2),
            );
        }
        let mut out = Vec::new();
        mixer.finish(&mut out);
        assert_eq!(runs(&left(&out)), vec![(1, 0, 16000)]);
        assert_eq!(runs(&right(&out)), vec![(0, 0, 8000), (2, 8000, 8000)]);
    }

    #[test]
    fn lost_packets_leave_silence_in_their_place() {
        let start = Instant::now();
        let mut mixer = StereoMixer::new(start, MixerConfig::default());
        for i in [0u32, 1, 3, 4] {
            mixer.push(
                Channel::FromCaller,
                Ssrc(1),
                RtpTimestamp(160 * i),
                start + 20 * MS * i,
                &packet(i as i16 + 1),
            );
        }
        let mut out = Vec::new();
        mixer.finish(&mut out);
        assert_eq!(
            runs(&left(&out)),
            vec![
                (1, 0, 160),
                (2, 160, 160),
                (0, 320, 160),
                (4, 480, 160),
                (5, 640, 160)
            ]
        );
    }

    #[test]
    fn dtx_silence_follows_timestamps() {
        let start = Instant::now();
        let mut mixer = StereoMixer::new(start, MixerConfig::default());
        mixer.push(
            Channel::FromCaller,
            Ssrc(1),
            RtpTimestamp(0),
            start,
            &packet(1),
        );
        let mut out = Vec::new();
        // The phone sent nothing for 2 s (DTX), then resumed; the shell drained meanwhile.
        mixer.drain_ready(start + 2020 * MS, &mut out);
        mixer.push(
            Channel::FromCaller,
            Ssrc(1),
            RtpTimestamp(16160),
            start + 2020 * MS,
            &packet(2),
        );
        mixer.finish(&mut out);
        assert_eq!(
            runs(&left(&out)),
            vec![(1, 0, 160), (0, 160, 16000), (2, 16160, 160)]
        );
    }

    #[test]
    fn reordered_packets_land_in_place() {
        let start = Instant::now();
        let mut mixer = StereoMixer::new(start, MixerConfig::default());
        let order = [0u32, 2, 1, 4, 3, 5];
        for (arrival, &i) in order.iter().enumerate() {
            let placement = mixer.push(
                Channel::FromCaller,
                Ssrc(1),
                RtpTimestamp(1000 + 160 * i),
                start + 20 * MS * arrival as u32 + 7 * MS,
                &packet(i as i16 + 1),
            );
            assert_eq!(placement.written, 160);
            assert_eq!(placement.first_frame, 56 + 160 * i64::from(i));
        }
        let mut out = Vec::new();
        mixer.finish(&mut out);
        let expected: Vec<(i16, usize, usize)> = std::iter::once((0, 0, 56))
            .chain((0..6).map(|i| (i as i16 + 1, 56 + 160 * i, 160)))
            .collect();
        assert_eq!(runs(&left(&out)), expected);
    }

    #[test]
    fn ssrc_change_reanchors_on_arrival() {
        let start = Instant::now();
        let mut mixer = StereoMixer::new(start, MixerConfig::default());
        mixer.push(
            Channel::ToCaller,
            Ssrc(1),
            RtpTimestamp(0),
            start,
            &packet(1),
        );
        // A new source with an unrelated timestamp, 500 ms later.
        let placement = mixer.push(
            Channel::ToCaller,
            Ssrc(9),
            RtpTimestamp(3_000_000_000),
            start + 500 * MS,
            &packet(2),
        );
        assert_eq!(placement.anchored, Some(Anchor::NewSsrc));
        assert_eq!(placement.first_frame, 4000);
        let next = mixer.push(
            Channel::ToCaller,
            Ssrc(9),
            RtpTimestamp(3_000_000_160),
            start + 520 * MS,
            &packet(3),
        );
        assert_eq!(next.anchored, None);
        assert_eq!(next.first_frame, 4160);
    }

    #[test]
    fn timestamp_jump_reanchors_on_arrival() {
        let start = Instant::now();
        let mut mixer = StereoMixer::new(start, MixerConfig::default());
        mixer.push(
            Channel::FromCaller,
            Ssrc(1),
            RtpTimestamp(0),
            start,
            &packet(1),
        );
        mixer.push(
            Channel::FromCaller,
            Ssrc(1),
            RtpTimestamp(160),
            start + 20 * MS,
            &packet(2),
        );
        // Same SSRC, but the timestamp leaps 10 minutes ahead 20 ms later.
        let jumped = mixer.push(
            Channel::FromCaller,
            Ssrc(1),
            RtpTimestamp(320 + 8000 * 600),
            start + 40 * MS,
            &packet(3),
        );
        assert_eq!(jumped.anchored, Some(Anchor::TimestampJump));
        assert_eq!(jumped.first_frame, 320);
        // And a jump backwards.
        let back = mixer.push(
            Channel::FromCaller,
            Ssrc(1),
            RtpTimestamp(7),
            start + 60 * MS,
            &packet(4),
        );
        assert_eq!(back.anchored, Some(Anchor::TimestampJump));
        assert_eq!(back.first_frame, 480);
        let mut out = Vec::new();
        mixer.finish(&mut out);
        assert_eq!(
            runs(&left(&out)),
            vec![(1, 0, 160), (2, 160, 160), (3, 320, 160), (4, 480, 160)]
        );
    }

    #[test]
    fn slow_drift_is_followed_until_the_bound_then_reanchored() {
        let start = Instant::now();
        let mut mixer = StereoMixer::new(start, MixerConfig::default());
        // The sender's clock runs 1 % fast: 162 samples of timestamp per 20 ms of real time.
        let mut anchors = Vec::new();
        for i in 0..2000u32 {
            let placement = mixer.push(
                Channel::FromCaller,
                Ssrc(1),
                RtpTimestamp(162 * i),
                start + 20 * MS * i,
                &packet(1),
            );
            if let Some(anchor) = placement.anchored {
                anchors.push((i, anchor));
            }
            let mut out = Vec::new();
            mixer.drain_ready(start + 20 * MS * i, &mut out);
        }
        // 300 ms of drift accumulates after 2400 samples / 2 per packet = 1200 packets.
        assert_eq!(anchors.first(), Some(&(0, Anchor::FirstPacket)));
        assert_eq!(anchors.len(), 2);
        let (at, reason) = anchors[1];
        assert_eq!(reason, Anchor::TimestampJump);
        assert!((1195..=1205).contains(&at), "re-anchored at packet {at}");
    }

    #[test]
    fn timestamp_wrap_is_seamless() {
        let start = Instant::now();
        let mut mixer = StereoMixer::new(start, MixerConfig::default());
        for i in 0..4u32 {
            let placement = mixer.push(
                Channel::FromCaller,
                Ssrc(1),
                RtpTimestamp((u32::MAX - 200).wrapping_add(160 * i)),
                start + 20 * MS * i,
                &packet(1),
            );
            assert_eq!(placement.first_frame, 160 * i64::from(i));
            assert_eq!(placement.anchored.is_some(), i == 0);
        }
    }

    #[test]
    fn frames_are_released_after_the_playout_delay_and_late_packets_dropped() {
        let start = Instant::now();
        let mut mixer = StereoMixer::new(start, MixerConfig::default());
        let mut out = Vec::new();
        assert_eq!(mixer.drain_ready(start + 199 * MS, &mut out), 0);
        mixer.push(
            Channel::FromCaller,
            Ssrc(1),
            RtpTimestamp(0),
            start,
            &packet(1),
        );
        assert_eq!(mixer.drain_ready(start + 300 * MS, &mut out), 800);
        assert_eq!(out.len(), 1600);
        assert_eq!(runs(&left(&out)), vec![(1, 0, 160), (0, 160, 640)]);
        // A packet for frames 640..800 arriving now is too late: already released.
        let late = mixer.push(
            Channel::FromCaller,
            Ssrc(1),
            RtpTimestamp(640),
            start + 300 * MS,
            &packet(5),
        );
        assert_eq!((late.written, late.too_late), (0, 160));
        assert_eq!(mixer.released_frames(), 800);
    }

    #[test]
    fn ring_is_bounded_and_overflow_is_counted() {
        let start = Instant::now();
        let mut mixer = StereoMixer::new(start, MixerConfig::default());
        assert_eq!(mixer.ring.len(), 16_000);
        mixer.push(
            Channel::FromCaller,
            Ssrc(1),
            RtpTimestamp(0),
            start,
            &packet(1),
        );
        // The shell stopped draining: 3 s later there is no room left for new audio.
        let ahead = mixer.push(
            Channel::ToCaller,
            Ssrc(2),
            RtpTimestamp(0),
            start + 3000 * MS,
            &packet(2),
        );
        assert_eq!((ahead.written, ahead.too_far_ahead), (0, 160));
        // Once drained, audio is placed again.
        let mut out = Vec::new();
        mixer.drain_ready(start + 3000 * MS, &mut out);
        let placed = mixer.push(
            Channel::ToCaller,
            Ssrc(2),
            RtpTimestamp(160),
            start + 3020 * MS,
            &packet(2),
        );
        assert_eq!(placed.written, 160);
    }

    proptest! {
        /// Whatever arrives, the mixer never panics and releases exactly one stereo frame per
        /// frame of elapsed time.
        #[test]
        fn output_length_is_elapsed_time(
            packets in prop::collection::vec(
                (any::<bool>(), 0u32..3, any::<u32>(), 0u64..5000, 0usize..400),
                0..60,
            )
        ) {
            let start = Instant::now();
            let mut mixer = StereoMixer::new(start, MixerConfig::default());
            let mut out = Vec::new();
            let mut now = start;
            for (to_caller, ssrc, ts, arrival_ms, len) in packets {
                let channel = if to_caller { Channel::ToCaller } else { Channel::FromCaller };
                let arrival = start + Duration::from_millis(arrival_ms);
                now = now.max(arrival);
                let placement = mixer.push(channel, Ssrc(ssrc), RtpTimestamp(ts), arrival, &vec![1; len]);
                prop_assert_eq!(placement.written + placement.too_late + placement.too_far_ahead, len);
                mixer.drain_ready(now, &mut out);
            }
            let released = mixer.released_frames();
            prop_assert_eq!(out.len() as i64, 2 * released);
            prop_assert!(released >= frames_in(now.saturating_duration_since(start)) - 1600);
            mixer.finish(&mut out);
            prop_assert_eq!(out.len() as i64, 2 * mixer.released_frames());
        }

        /// Every released frame holds exactly what a frame-by-frame model of the ring says:
        /// the last sample placed there on each side, silence elsewhere, whatever the wraps.
        #[test]
        fn released_audio_matches_a_frame_by_frame_model(
            packets in prop::collection::vec(
                (any::<bool>(), 0u32..2, any::<u32>(), 0u64..8000, 0usize..480, any::<i16>()),
                0..80,
            )
        ) {
            let start = Instant::now();
            let config = MixerConfig { capacity: Duration::from_millis(10), ..MixerConfig::default() };
            let mut mixer = StereoMixer::new(start, config);
            let ring_len = mixer.ring.len() as i64;
            let mut model: std::collections::BTreeMap<i64, [i16; 2]> = Default::default();
            let mut out = Vec::new();
            let mut now = start;
            for (to_caller, ssrc, ts, arrival_ms, len, value) in packets {
                let channel = if to_caller { Channel::ToCaller } else { Channel::FromCaller };
                let arrival = start + Duration::from_millis(arrival_ms);
                now = now.max(arrival);
                let released = mixer.released_frames();
                let placement = mixer.push(channel, Ssrc(ssrc), RtpTimestamp(ts), arrival, &vec![value; len]);
                let (mut late, mut ahead) = (0, 0);
                for frame in placement.first_frame..placement.first_frame + len as i64 {
                    if frame < released {
                        late += 1;
                    } else if frame >= released + ring_len {
                        ahead += 1;
                    } else {
                        model.entry(frame).or_default()[channel.index()] = value;
                    }
                }
                prop_assert_eq!((placement.too_late, placement.too_far_ahead), (late, ahead));
                let from = mixer.released_frames();
                let before = out.len();
                mixer.drain_ready(now, &mut out);
                for (i, frame) in (from..mixer.released_frames()).enumerate() {
                    let expected = model.remove(&frame).unwrap_or_default();
                    prop_assert_eq!(&out[before + 2 * i..before + 2 * i + 2], &expected[..], "frame {}", frame);
                }
            }
        }
    }
}
