//! Whether the caller is speaking: a transparent per-frame rule over the caller's decoded
//! audio, summed over the call (share of frames with speech energy, longest speech run, and
//! the same for **voiced** frames: speech energy that repeats at a voice's pitch).
//!
//! The rule, per 20 ms frame (160 samples at 8 kHz) in the order the audio arrived:
//! - the frame's power is its mean square in dB relative to full scale (dBFS; a full-scale
//!   square wave is 0 dBFS, a full-scale sine −3 dBFS, digital silence is taken as −120);
//! - a **noise floor** follows quieter frames at once and otherwise rises by
//!   `floor_rise_db_per_s`, so a steady hum, tone or line noise becomes floor within seconds;
//!   it is never taken below `speech_dbfs − above_floor_db`;
//! - a frame **has speech energy** when its power is at least `above_floor_db` above the floor
//!   — so never below `speech_dbfs`;
//! - a frame with speech energy is **voiced** when it repeats itself at a pitch period: after
//!   a filter rising 6 dB per octave up to 1 kHz (which flattens the low rumble of traffic,
//!   wind or engines, and keeps the voice's harmonics), its normalised autocorrelation
//!   (1: the frame repeats exactly, 0: no likeness) has a peak of at least
//!   `voicing_min` at a lag of 2.5–14.4 ms (a pitch of 70–400 Hz) that stands at least
//!   `voicing_dip` above the lowest value at a shorter lag (from half the shortest period).
//!   Voiced speech (vowels, voiced consonants) is periodic at the speaker's pitch; noise of
//!   any colour is not, and whatever correlation it has falls with the lag without rising to
//!   a peak.
//!
//! A speech **run** is a stretch of speech frames with pauses of at most `run_gap_ms` between
//! them (the gaps between syllables and words); its length is from its first speech frame to
//! its last. A **voiced run** is the same over voiced frames (the pauses bridge unvoiced
//! consonants too): loud steady noise makes speech runs until the floor catches up, but no
//! voiced run. No clock: the audio's own samples are the time base, so tests run in virtual
//! time. Lost packets are simply absent (the meter sees what the caller's phone delivered).

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// Length of one frame.
pub const FRAME_MS: u32 = 20;

/// The shortest pitch period searched: 20 samples, 2.5 ms, a 400 Hz voice.
const MIN_PITCH_LAG: usize = 20;
/// The longest: 115 samples, 14.4 ms, a 70 Hz voice.
const MAX_PITCH_LAG: usize = 115;
/// The dip before a peak is looked for from half the shortest period.
const FIRST_DIP_LAG: usize = MIN_PITCH_LAG / 2;
/// The frame and the filtered audio before it that the longest lag reaches back into.
const WINDOW: usize = 2 * FRAME_SAMPLES;
/// The voicing search looks at the sample-to-sample change, smoothed by a one-pole filter
/// of this weight: a response rising 6 dB per octave up to about 1 kHz and flat above. It
/// flattens the spectrum of the loud low rumble of traffic, wind or engines (which would
/// otherwise swing slowly enough to look periodic within 20 ms) and keeps the voice's
/// harmonics, whose spacing is the pitch.
const SMOOTHING: f32 = 0.6;

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
    /// Pauses up to this long do not end a speech run or a voiced run (ms).
    pub run_gap_ms: u32,
    /// The normalised autocorrelation a frame with speech energy must reach at its pitch
    /// period to be voiced (1 is a perfectly repeating frame, 0 no likeness). Vowels of a
    /// recorded caller reach 0.7–0.99, vowels in loud noise 0.4–0.7; steady noise of any
    /// colour stays mostly under 0.3 after the filter.
    pub voicing_min: f32,
    /// How far that peak must stand above the lowest correlation at a shorter lag: a pitch
    /// period is a return to likeness after unlikeness, not the slow fall of a low rumble.
    pub voicing_dip: f32,
}

impl Default for VoiceConfig {
    fn default() -> Self {
        VoiceConfig {
            speech_dbfs: -45.0,
            above_floor_db: 9.0,
            floor_rise_db_per_s: 6.0,
            run_gap_ms: 300,
            voicing_min: 0.4,
            voicing_dip: 0.2,
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
    /// Of the speech frames, those voiced (periodic at a voice's pitch).
    pub voiced_frames: u32,
    /// The longest voiced run (ms): a person speaking, not only something loud.
    pub longest_voiced_ms: u32,
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

/// Σ a·b in eight independent lanes, so the compiler can use vector instructions (one float
/// sum in order cannot be reordered, and would not be).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    lanes.iter().sum()
}

/// Whether the frame is voiced: a normalised autocorrelation of at least `cfg.voicing_min`
/// at a lag of `MIN_PITCH_LAG..=MAX_PITCH_LAG` that stands at least `cfg.voicing_dip` above
/// the lowest one at a shorter lag (from `FIRST_DIP_LAG`). `audio` holds the previous frame
/// and this one. The search stops at the first such lag.
fn is_voiced(audio: &[i16; WINDOW], cfg: &VoiceConfig) -> bool {
    // Filtered here, only for frames with speech energy; the filter starts afresh at the
    // window's start, and its start-up (0.4ⁿ) has died out long before the longest lag.
    let mut window = [0f32; WINDOW];
    let mut previous = f32::from(audio[0]);
    let mut smoothed_change = 0f32;
    for (filtered, &s) in window.iter_mut().zip(audio) {
        let sample = f32::from(s);
        smoothed_change += SMOOTHING * (sample - previous - smoothed_change);
        previous = sample;
        *filtered = smoothed_change;
    }
    let frame = &window[FRAME_SAMPLES..];
    let frame_energy = f64::from(dot(frame, frame));
    if frame_energy <= 0.0 {
        return false;
    }
    // The energy of the lagged stretch, slid one sample per lag instead of summed again.
    let first = &window[FRAME_SAMPLES - FIRST_DIP_LAG..WINDOW - FIRST_DIP_LAG];
    let mut lagged_energy = f64::from(dot(first, first));
    let mut lowest = f32::INFINITY;
    for lag in FIRST_DIP_LAG..=MAX_PITCH_LAG {
        let lagged = &window[FRAME_SAMPLES - lag..WINDOW - lag];
        let denominator = (frame_energy * lagged_energy).sqrt();
        let likeness = if denominator > 0.0 {
            (f64::from(dot(frame, lagged)) / denominator) as f32
        } else {
            0.0
        };
        if lag >= MIN_PITCH_LAG
            && likeness >= cfg.voicing_min
            && likeness - lowest >= cfg.voicing_dip
        {
            return true;
        }
        lowest = lowest.min(likeness);
        // Slide: the stretch for lag + 1 gains the sample before it and loses its last.
        let gained = f64::from(window[FRAME_SAMPLES - lag - 1]);
        let lost = f64::from(window[WINDOW - lag - 1]);
        lagged_energy = (lagged_energy + gained * gained - lost * lost).max(0.0);
    }
    false
}

/// The longest of the runs of marked frames with pauses of at most a gap between them.
#[derive(Debug, Clone, Copy, Default)]
struct Runs {
    /// The open run: its first and latest frame (frame numbers).
    open: Option<(u32, u32)>,
    longest_frames: u32,
}

impl Runs {
    fn mark(&mut self, frame: u32, max_gap_frames: u32) {
        let start = match self.open {
            Some((start, last)) if frame - last <= max_gap_frames + 1 => start,
            _ => frame,
        };
        self.open = Some((start, frame));
        self.longest_frames = self.longest_frames.max(frame - start + 1);
    }

    fn longest_ms(&self) -> u32 {
        self.longest_frames.saturating_mul(FRAME_MS)
    }
}

/// The caller's voice meter: feed it decoded audio as it arrives; read the totals at the end.
/// Allocation-free per packet; the voicing search (about 17,000 multiply-adds) runs only on
/// frames with speech energy.
#[derive(Debug, Clone)]
pub struct VoiceMeter {
    cfg: VoiceConfig,
    /// Sum of squares and count of the frame being filled.
    partial_sum: u64,
    partial_len: usize,
    /// The previous frame and the one being filled.
    window: [i16; WINDOW],
    floor_dbfs: f32,
    frames: u32,
    speech_frames: u32,
    voiced_frames: u32,
    speech_runs: Runs,
    voiced_runs: Runs,
}

impl VoiceMeter {
    pub fn new(cfg: VoiceConfig) -> VoiceMeter {
        VoiceMeter {
            cfg,
            partial_sum: 0,
            partial_len: 0,
            window: [0; WINDOW],
            floor_dbfs: cfg.speech_dbfs - cfg.above_floor_db,
            frames: 0,
            speech_frames: 0,
            voiced_frames: 0,
            speech_runs: Runs::default(),
            voiced_runs: Runs::default(),
        }
    }

    /// Adds decoded 8 kHz samples (any packet size; frames are cut every 160 samples).
    pub fn feed(&mut self, mut samples: &[i16]) {
        while !samples.is_empty() {
            let room = FRAME_SAMPLES - self.partial_len;
            let (now, rest) = samples.split_at(room.min(samples.len()));
            self.window[FRAME_SAMPLES + self.partial_len..][..now.len()].copy_from_slice(now);
            for &s in now {
                self.partial_sum += u64::from(s.unsigned_abs()).pow(2);
            }
            self.partial_len += now.len();
            samples = rest;
            if self.partial_len == FRAME_SAMPLES {
                let power = power_dbfs(self.partial_sum, FRAME_SAMPLES);
                self.partial_sum = 0;
                self.partial_len = 0;
                self.on_frame(power);
                self.window.copy_within(FRAME_SAMPLES.., 0);
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
        let max_gap = self.cfg.run_gap_ms / FRAME_MS;
        self.speech_frames += 1;
        self.speech_runs.mark(frame, max_gap);
        if is_voiced(&self.window, &self.cfg) {
            self.voiced_frames += 1;
            self.voiced_runs.mark(frame, max_gap);
        }
    }

    /// The totals so far (a partly filled last frame is not counted).
    pub fn totals(&self) -> VoiceTotals {
        VoiceTotals {
            frames: self.frames,
            speech_frames: self.speech_frames,
            longest_speech_ms: self.speech_runs.longest_ms(),
            voiced_frames: self.voiced_frames,
            longest_voiced_ms: self.voiced_runs.longest_ms(),
        }
    }
}

/// A loud low rumble (leaky-integrated white noise, a −6 dB per octave spectrum, about
/// −19 dBFS), deterministic from `seed`, as A-law: what an open line by a road sounds like.
/// Energy alone takes its first seconds for speech; for the tests and benches that show the
/// meter does not (the gateway never calls it).
pub fn rumble_alaw(samples: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut level = 0.0f64;
    let pcm: Vec<i16> = (0..samples)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let white = (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
            level = 0.995 * level + white * 600.0;
            level.clamp(-32768.0, 32767.0) as i16
        })
        .collect();
    let mut alaw = vec![0u8; samples];
    crate::Codec::Pcma.encode(&pcm, &mut alaw);
    alaw
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
        assert_eq!(totals.voiced_frames, 0);
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
        // The buzz is periodic at 140 Hz: every speech frame is voiced.
        assert_eq!(totals.voiced_frames, totals.speech_frames);
        assert_eq!(totals.longest_voiced_ms, totals.longest_speech_ms);
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

    /// The recorded caller (espeak-ng, Indonesian: "Tolong, rumah saya terbakar …", 8.9 s),
    /// the audio the SIPp callers stream, decoded from A-law.
    fn recorded_caller() -> Vec<i16> {
        let alaw = include_bytes!("../../../tests/data/media/caller_8k.alaw");
        let mut pcm = vec![0i16; alaw.len()];
        crate::Codec::Pcma.decode(alaw, &mut pcm);
        pcm
    }

    fn rms(signal: &[f64]) -> f64 {
        (signal.iter().map(|x| x * x).sum::<f64>() / signal.len().max(1) as f64).sqrt()
    }

    #[derive(Debug, Clone, Copy)]
    enum Colour {
        /// Flat spectrum (hiss).
        White,
        /// −3 dB per octave (Paul Kellet's three-pole approximation): a crowd, rain.
        Pink,
        /// −6 dB per octave (leaky integrated white noise): the rumble of traffic, wind.
        Brown,
    }

    /// Steady noise of a colour at `rms_dbfs` (mean square, as the meter measures it).
    fn steady_noise(colour: Colour, secs: f64, rms_dbfs: f64, seed: u64) -> Vec<f64> {
        let mut white = Noise(seed);
        let (mut b0, mut b1, mut b2, mut brown) = (0.0, 0.0, 0.0, 0.0);
        let raw: Vec<f64> = (0..(secs * RATE) as usize)
            .map(|_| {
                let w = white.next();
                match colour {
                    Colour::White => w,
                    Colour::Pink => {
                        b0 = 0.99765 * b0 + w * 0.0990460;
                        b1 = 0.96300 * b1 + w * 0.2965164;
                        b2 = 0.57000 * b2 + w * 1.0526913;
                        b0 + b1 + b2 + w * 0.1848
                    }
                    Colour::Brown => {
                        brown = 0.995 * brown + w;
                        brown
                    }
                }
            })
            .collect();
        let gain = amplitude(rms_dbfs) / rms(&raw);
        raw.into_iter().map(|x| x * gain).collect()
    }

    /// The recorded caller twice over (as SIPp loops it), with steady noise `snr_db` below
    /// the speech's mean power over the whole recording (pauses included).
    fn recorded_caller_in_noise(colour: Colour, snr_db: f64, seed: u64) -> Vec<i16> {
        let speech: Vec<f64> = recorded_caller()
            .repeat(2)
            .into_iter()
            .map(f64::from)
            .collect();
        let speech_dbfs = 20.0 * (rms(&speech) / 32767.0).log10();
        let noise = steady_noise(
            colour,
            speech.len() as f64 / RATE,
            speech_dbfs - snr_db,
            seed,
        );
        to_pcm(speech.iter().zip(&noise).map(|(s, n)| s + n))
    }

    #[test]
    fn recorded_speech_is_voiced() {
        let totals = meter(&recorded_caller());
        assert!(totals.longest_voiced_ms >= 3000, "{totals:?}");
        // Most frames with speech energy are voiced; the rest are consonants and the quiet
        // ends of words.
        assert!(
            totals.voiced_frames * 10 >= totals.speech_frames * 8,
            "{totals:?}"
        );
    }

    #[test]
    fn one_recorded_word_is_a_voiced_run() {
        // "Tolong," the first word of the recording, then silence.
        let mut pcm: Vec<i16> = recorded_caller().into_iter().take(4800).collect();
        pcm.extend(std::iter::repeat_n(0, 8000 * 10));
        let totals = meter(&pcm);
        // About half a second of speech; its unvoiced "t" is not voiced.
        assert!(
            (400..=600).contains(&totals.longest_speech_ms),
            "{totals:?}"
        );
        assert!(
            totals.longest_voiced_ms + 60 >= totals.longest_speech_ms,
            "{totals:?}"
        );
    }

    #[test]
    fn recorded_speech_over_steady_noise_is_voiced() {
        for colour in [Colour::White, Colour::Pink, Colour::Brown] {
            for snr_db in [20.0, 10.0, 5.0, 0.0] {
                let totals = meter(&recorded_caller_in_noise(colour, snr_db, 11));
                // Sentences of voiced runs of seconds; at 0 dB the noise hides the quieter
                // syllables, not the loud ones.
                assert!(
                    totals.longest_voiced_ms >= 1000,
                    "{colour:?} at {snr_db} dB: {totals:?}"
                );
            }
        }
    }

    #[test]
    fn steady_noise_of_any_colour_is_not_voiced() {
        for colour in [Colour::White, Colour::Pink, Colour::Brown] {
            for rms_dbfs in [-35.0, -20.0, -10.0] {
                for seed in [3, 4, 5] {
                    let mut pcm = vec![0; 8000];
                    pcm.extend(to_pcm(
                        steady_noise(colour, 12.0, rms_dbfs, seed).into_iter(),
                    ));
                    let totals = meter(&pcm);
                    let case = format!("{colour:?} at {rms_dbfs} dBFS, seed {seed}: {totals:?}");
                    // Energy alone hears a second or more of "speech" while the floor rises
                    // to the new sound; voicing hears none.
                    assert!(totals.longest_speech_ms >= 1000, "{case}");
                    assert!(totals.longest_voiced_ms < 100, "{case}");
                }
            }
        }
    }
}
