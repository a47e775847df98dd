//! Whether the caller is speaking: a transparent per-frame energy rule over the caller's
//! decoded audio, summed over the call (share of frames with speech, longest speech run).
//!
//! The rule, per 20 ms frame (160 samples at 8 kHz) in the order the audio arrived:
//! - the frame's power is its mean square in dB relative to full scale (dBFS; a full-scale
//!   square wave is 0 dBFS, a full-scale sine −3 dBFS, digital silence is taken as −120);
//! - a **noise floor** follows quieter frames at once and otherwise rises by
//!   `floor_rise_db_per_s`, so a steady hum, tone or line noise becomes floor within seconds;
//!   it is never taken below `speech_dbfs − above_floor_db`;
//! - a frame **has speech** when its power is at least `above_floor_db` above the floor — so
//!   never below `speech_dbfs`.
//!
//! A speech **run** is a stretch of speech frames with pauses of at most `run_gap_ms` between
//! them (the gaps between syllables and words); its length is from its first speech frame to
//! its last. No clock: the audio's own samples are the time base, so tests run in virtual
//! time. Lost packets are simply absent (the meter sees what the caller's phone delivered).

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// Length of one frame.
pub const FRAME_MS: u32 = 20;

/// The thresholds of the rule (the dialplan will hold them; these are the defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VoiceConfig {
    /// A frame quieter than this is never speech (dBFS). Telephone speech is around −20 to
    /// −30 dBFS, a quiet line below −55.
    pub speech_dbfs: f32,
    /// How far above the noise floor a frame must be to count as speech (dB).
    pub above_floor_db: f32,
    /// How fast the floor rises towards louder steady sound (dB per second).
    pub floor_rise_db_per_s: f32,
    /// Pauses up to this long do not end a speech run (ms).
    pub run_gap_ms: u32,
}

impl Default for VoiceConfig {
    fn default() -> Self {
        VoiceConfig {
            speech_dbfs: -45.0,
            above_floor_db: 9.0,
            floor_rise_db_per_s: 6.0,
            run_gap_ms: 300,
        }
    }
}

/// What the meter saw over a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VoiceTotals {
    /// 20 ms frames of caller audio received.
    pub frames: u32,
    /// Of those, frames with speech energy.
    pub speech_frames: u32,
    /// The longest speech run (ms).
    pub longest_speech_ms: u32,
}

impl VoiceTotals {
    /// The share of frames with speech, 0.0 when no audio came at all.
    pub fn speech_share(&self) -> f64 {
        if self.frames == 0 {
            0.0
        } else {
            f64::from(self.speech_frames) / f64::from(self.frames)
        }
    }
}

/// What digital silence counts as.
const SILENCE_DBFS: f32 = -120.0;

fn power_dbfs(sum_of_squares: u64, samples: usize) -> f32 {
    if sum_of_squares == 0 || samples == 0 {
        return SILENCE_DBFS;
    }
    let mean = sum_of_squares as f64 / samples as f64;
    let full_scale = 32768.0f64 * 32768.0;
    ((10.0 * (mean / full_scale).log10()) as f32).max(SILENCE_DBFS)
}

/// The caller's voice meter: feed it decoded audio as it arrives; read the totals at the end.
/// Allocation-free per packet.
#[derive(Debug, Clone)]
pub struct VoiceMeter {
    cfg: VoiceConfig,
    /// Sum of squares and count of the frame being filled.
    partial_sum: u64,
    partial_len: usize,
    floor_dbfs: f32,
    frames: u32,
    speech_frames: u32,
    /// The open run: its first and latest speech frame (frame numbers).
    run: Option<(u32, u32)>,
    longest_run_frames: u32,
}

impl VoiceMeter {
    pub fn new(cfg: VoiceConfig) -> VoiceMeter {
        VoiceMeter {
            cfg,
            partial_sum: 0,
            partial_len: 0,
            floor_dbfs: cfg.speech_dbfs - cfg.above_floor_db,
            frames: 0,
            speech_frames: 0,
            run: None,
            longest_run_frames: 0,
        }
    }

    /// Adds decoded 8 kHz samples (any packet size; frames are cut every 160 samples).
    pub fn feed(&mut self, samples: &[i16]) {
        for &s in samples {
            self.partial_sum += u64::from(s.unsigned_abs()).pow(2);
            self.partial_len += 1;
            if self.partial_len == FRAME_SAMPLES {
                let power = power_dbfs(self.partial_sum, FRAME_SAMPLES);
                self.partial_sum = 0;
                self.partial_len = 0;
                self.on_frame(power);
            }
        }
    }

    fn on_frame(&mut self, power: f32) {
        let lowest_floor = self.cfg.speech_dbfs - self.cfg.above_floor_db;
        let rise = self.cfg.floor_rise_db_per_s * FRAME_MS as f32 / 1000.0;
        let speech = power >= self.floor_dbfs + self.cfg.above_floor_db;
        self.floor_dbfs = if power < self.floor_dbfs {
            power
        } else {
            (self.floor_dbfs + rise).min(power)
        }
        .max(lowest_floor);
        let frame = self.frames;
        self.frames = self.frames.saturating_add(1);
        if !speech {
            return;
        }
        self.speech_frames += 1;
        let max_gap = self.cfg.run_gap_ms / FRAME_MS;
        let start = match self.run {
            Some((start, last)) if frame - last <= max_gap + 1 => start,
            _ => frame,
        };
        self.run = Some((start, frame));
        self.longest_run_frames = self.longest_run_frames.max(frame - start + 1);
    }

    /// The totals so far (a partly filled last frame is not counted).
    pub fn totals(&self) -> VoiceTotals {
        VoiceTotals {
            frames: self.frames,
            speech_frames: self.speech_frames,
            longest_speech_ms: self.longest_run_frames.saturating_mul(FRAME_MS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The power of one frame in dBFS, computed as the meter does for each 20 ms frame.
    fn frame_dbfs(samples: &[i16]) -> f32 {
        let sum: u64 = samples
            .iter()
            .map(|&s| u64::from(s.unsigned_abs()).pow(2))
            .sum();
        power_dbfs(sum, samples.len())
    }

    const RATE: f64 = 8000.0;

    /// A deterministic pseudo-random source for noise.
    struct Noise(u64);
    impl Noise {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        }
    }

    fn amplitude(dbfs: f64) -> f64 {
        32767.0 * 10f64.powf(dbfs / 20.0)
    }

    fn to_pcm(signal: impl Iterator<Item = f64>) -> Vec<i16> {
        signal
            .map(|x| x.round().clamp(-32768.0, 32767.0) as i16)
            .collect()
    }

    fn meter(pcm: &[i16]) -> VoiceTotals {
        let mut m = VoiceMeter::new(VoiceConfig::default());
        // As RTP delivers it: 20 ms packets.
        for packet in pcm.chunks(FRAME_SAMPLES) {
            m.feed(packet);
        }
        m.totals()
    }

    /// Line noise at `dbfs` peak for `secs`.
    fn noise(secs: f64, dbfs: f64, seed: u64) -> Vec<i16> {
        let mut n = Noise(seed);
        let a = amplitude(dbfs);
        to_pcm((0..(secs * RATE) as usize).map(|_| a * n.next()))
    }

    /// Speech-like audio: voiced syllables (a 140 Hz buzz with harmonics under a raised-cosine
    /// envelope) of 180 ms, 70 ms gaps, words of 6 syllables, 600 ms pauses, over line noise.
    fn speech_like(secs: f64) -> Vec<i16> {
        let mut n = Noise(7);
        let loud = amplitude(-22.0);
        let line = amplitude(-62.0);
        to_pcm((0..(secs * RATE) as usize).map(|i| {
            let t = i as f64 / RATE;
            let word = t % 2.1; // 6 × 250 ms of syllables, then a 600 ms pause
            let syllable = word % 0.25;
            let envelope = if word < 1.5 && syllable < 0.18 {
                0.5 - 0.5 * (2.0 * std::f64::consts::PI * syllable / 0.18).cos()
            } else {
                0.0
            };
            let buzz: f64 = (1..=4)
                .map(|h| (2.0 * std::f64::consts::PI * 140.0 * h as f64 * t).sin() / h as f64)
                .sum();
            loud * envelope * buzz / 1.5 + line * n.next()
        }))
    }

    #[test]
    fn power_of_known_signals() {
        assert_eq!(frame_dbfs(&[0; 160]), -120.0);
        let square = vec![32767i16; 160];
        assert!(frame_dbfs(&square).abs() < 0.01);
        let sine = to_pcm((0..160).map(|i| 32767.0 * (i as f64 * 0.25).sin()));
        assert!(
            (frame_dbfs(&sine) + 3.0).abs() < 0.3,
            "{}",
            frame_dbfs(&sine)
        );
    }

    #[test]
    fn silence_and_line_noise_have_no_speech() {
        let totals = meter(&[0; 8000 * 10]);
        assert_eq!(totals.frames, 500);
        assert_eq!(totals.speech_frames, 0);
        assert_eq!(totals.longest_speech_ms, 0);
        let totals = meter(&noise(10.0, -55.0, 1));
        assert_eq!((totals.frames, totals.speech_frames), (500, 0));
    }

    #[test]
    fn no_audio_is_no_speech() {
        let totals = VoiceMeter::new(VoiceConfig::default()).totals();
        assert_eq!(totals, VoiceTotals::default());
        assert_eq!(totals.speech_share(), 0.0);
    }

    #[test]
    fn a_steady_tone_becomes_floor_within_seconds() {
        let mut pcm = vec![0; 8000];
        let a = amplitude(-20.0);
        pcm.extend(to_pcm((0..8000 * 30).map(|i| {
            a * (i as f64 * 2.0 * std::f64::consts::PI * 1000.0 / RATE).sin()
        })));
        let totals = meter(&pcm);
        assert_eq!(totals.frames, 1550);
        // The floor starts at −54 dBFS and rises 6 dB/s: the −23 dBFS tone stops counting
        // once the floor passes −32, after about 3.7 s.
        assert!(
            (3400..=4000).contains(&totals.longest_speech_ms),
            "{totals:?}"
        );
        assert!(totals.speech_share() < 0.15, "{totals:?}");
    }

    #[test]
    fn noise_bursts_count_but_make_only_short_runs() {
        // 100 ms bursts of loud noise once a second over a quiet line, for 20 s.
        let mut pcm = Vec::new();
        for second in 0..20 {
            pcm.extend(noise(0.1, -15.0, 100 + second));
            pcm.extend(noise(0.9, -65.0, 200 + second));
        }
        let totals = meter(&pcm);
        assert_eq!(totals.frames, 1000);
        assert_eq!(totals.speech_frames, 100);
        assert_eq!(totals.longest_speech_ms, 100);
    }

    #[test]
    fn speech_like_audio_has_speech_and_word_long_runs() {
        let totals = meter(&speech_like(21.0));
        assert_eq!(totals.frames, 1050);
        let share = totals.speech_share();
        // Syllables fill 1.08 s of every 2.1 s; their quiet edges are not speech.
        assert!((0.3..0.55).contains(&share), "{totals:?}");
        // A word (six syllables and the gaps between them) is one run of about 1.4 s; the
        // pauses between words end it.
        assert!(
            (1200..=1500).contains(&totals.longest_speech_ms),
            "{totals:?}"
        );
    }

    #[test]
    fn packet_size_does_not_matter() {
        let pcm = speech_like(6.0);
        let whole = meter(&pcm);
        for size in [80, 240, 320, 7] {
            let mut m = VoiceMeter::new(VoiceConfig::default());
            for packet in pcm.chunks(size) {
                m.feed(packet);
            }
            assert_eq!(m.totals(), whole, "packets of {size}");
        }
    }
}
