//! In-band DTMF: Goertzel filters over 8 kHz linear audio.
//!
//! The audio is cut into blocks of 102 samples (12.75 ms). In each block eight Goertzel
//! filters measure the four row (697–941 Hz) and four column (1209–1633 Hz) frequencies. A
//! block holds a key when the strongest row and column are both loud enough, their levels
//! are within the twist limits, each clearly beats the other frequencies of its group, and
//! together they carry almost all the block's energy — the test that speech and music fail,
//! since their energy is spread over many harmonics.
//!
//! A key must fill [`InbandDetectorConfig::min_tone`] worth of consecutive blocks before it is
//! reported (once), and the tone must stop for [`InbandDetectorConfig::min_pause`] before the
//! same key can be reported again. With 102-sample blocks, every tone of 40 ms or more fills
//! two whole blocks wherever it starts. A block only passes the energy-share test when at
//! least 70 % of it is tone, so no tone shorter than 2 × 71 samples (18 ms) is ever reported,
//! and the reported start lies between 4 ms before and 9 ms after the real one.

use std::f32::consts::PI;
use std::time::{Duration, Instant};

use super::{Digit, DtmfEvent, DtmfSource};

const SAMPLE_RATE_HZ: f32 = 8000.0;
/// Samples per analysis block.
const BLOCK_LEN: usize = 102;
/// Duration of one sample at 8 kHz.
const SAMPLE_PERIOD: Duration = Duration::from_nanos(125_000);

const ROW_HZ: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLUMN_HZ: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYPAD: [[Digit; 4]; 4] = [
    [Digit::One, Digit::Two, Digit::Three, Digit::A],
    [Digit::Four, Digit::Five, Digit::Six, Digit::B],
    [Digit::Seven, Digit::Eight, Digit::Nine, Digit::C],
    [Digit::Star, Digit::Zero, Digit::Pound, Digit::D],
];

/// Detection thresholds. The defaults follow ITU-T Q.24 practice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InbandDetectorConfig {
    /// Quietest tone accepted, as the peak amplitude of each of the two sine waves in 16-bit
    /// linear units (default 400, about −38 dB below full scale).
    pub min_amplitude: f32,
    /// How much louder the row (low) tone may be than the column (high) tone, in dB. Lines
    /// attenuate high frequencies, so this "normal twist" is the larger allowance (8 dB).
    pub normal_twist_db: f32,
    /// How much louder the column tone may be than the row tone, in dB (4 dB).
    pub reverse_twist_db: f32,
    /// How far, in dB, the strongest row (and column) must stand above every other row
    /// (column) frequency (8 dB).
    pub relative_peak_db: f32,
    /// Share of the block's energy the two tones must carry (0.7). Speech and music spread
    /// their energy and stay well below.
    pub min_tone_to_total: f32,
    /// Shortest tone reported (40 ms).
    pub min_tone: Duration,
    /// Shortest silence that separates two presses of the same key (40 ms).
    pub min_pause: Duration,
}

impl Default for InbandDetectorConfig {
    fn default() -> Self {
        InbandDetectorConfig {
            min_amplitude: 400.0,
            normal_twist_db: 8.0,
            reverse_twist_db: 4.0,
            relative_peak_db: 8.0,
            min_tone_to_total: 0.7,
            min_tone: Duration::from_millis(40),
            min_pause: Duration::from_millis(40),
        }
    }
}

/// Whole blocks that any signal lasting `duration` is sure to fill, at least one.
fn blocks_always_filled(duration: Duration) -> u32 {
    let samples = duration.as_micros() / 125;
    let blocks = samples.saturating_sub(BLOCK_LEN as u128 - 1) / BLOCK_LEN as u128;
    u32::try_from(blocks).unwrap_or(u32::MAX).max(1)
}

fn db_to_power_ratio(db: f32) -> f32 {
    10f32.powf(db / 10.0)
}

/// One Goertzel filter tuned to an exact frequency (not a DFT bin).
#[derive(Debug, Clone, Copy)]
struct Goertzel {
    coefficient: f32,
    s1: f32,
    s2: f32,
}

impl Goertzel {
    fn new(frequency_hz: f32) -> Self {
        Goertzel {
            coefficient: 2.0 * (2.0 * PI * frequency_hz / SAMPLE_RATE_HZ).cos(),
            s1: 0.0,
            s2: 0.0,
        }
    }

    fn push(&mut self, sample: f32) {
        let s0 = sample + self.coefficient * self.s1 - self.s2;
        self.s2 = self.s1;
        self.s1 = s0;
    }

    /// Squared magnitude at the filter's frequency; resets the filter for the next block.
    fn take_power(&mut self) -> f32 {
        let power = self.s1 * self.s1 + self.s2 * self.s2 - self.coefficient * self.s1 * self.s2;
        self.s1 = 0.0;
        self.s2 = 0.0;
        power.max(0.0)
    }
}

/// In-band DTMF detector for one audio direction. Feed it decoded samples in chunks of any
/// size; it keeps its state across chunks.
#[derive(Debug, Clone)]
pub struct InbandDetector {
    config: InbandDetectorConfig,
    rows: [Goertzel; 4],
    columns: [Goertzel; 4],
    block_energy: f32,
    block_fill: usize,
    block_started_at: Option<Instant>,
    /// Candidate of the latest blocks and how many consecutive blocks agreed on it.
    candidate: Option<Digit>,
    candidate_blocks: u32,
    candidate_started_at: Option<Instant>,
    /// The key reported and not yet released by a pause.
    held: Option<Digit>,
    blocks_for_tone: u32,
    blocks_for_pause: u32,
}

impl Default for InbandDetector {
    fn default() -> Self {
        InbandDetector::new(InbandDetectorConfig::default())
    }
}

impl InbandDetector {
    /// A detector with the given thresholds.
    pub fn new(config: InbandDetectorConfig) -> Self {
        InbandDetector {
            config,
            rows: ROW_HZ.map(Goertzel::new),
            columns: COLUMN_HZ.map(Goertzel::new),
            block_energy: 0.0,
            block_fill: 0,
            block_started_at: None,
            candidate: None,
            candidate_blocks: 0,
            candidate_started_at: None,
            held: None,
            blocks_for_tone: blocks_always_filled(config.min_tone),
            blocks_for_pause: blocks_always_filled(config.min_pause),
        }
    }

    /// Feeds consecutive samples, the first of which was captured at `first_sample_at`;
    /// calls `on_key` for each key press detected (at most once per press).
    pub fn feed(
        &mut self,
        samples: &[i16],
        first_sample_at: Instant,
        mut on_key: impl FnMut(DtmfEvent),
    ) {
        let mut at = first_sample_at;
        for &sample in samples {
            if self.block_fill == 0 {
                self.block_started_at = Some(at);
            }
            let x = f32::from(sample);
            for filter in self.rows.iter_mut().chain(self.columns.iter_mut()) {
                filter.push(x);
            }
            self.block_energy += x * x;
            self.block_fill += 1;
            if self.block_fill == BLOCK_LEN {
                let found = self.classify_block();
                if let Some(event) = self.advance(found) {
                    on_key(event);
                }
            }
            at += SAMPLE_PERIOD;
        }
    }

    /// Convenience for tests and offline checks: all key presses in `samples`.
    pub fn detect_all(&mut self, samples: &[i16], first_sample_at: Instant) -> Vec<DtmfEvent> {
        let mut events = Vec::new();
        self.feed(samples, first_sample_at, |event| events.push(event));
        events
    }

    /// The key the finished block holds, if any; resets the block.
    fn classify_block(&mut self) -> Option<Digit> {
        let rows = self.rows.each_mut().map(|f| f.take_power());
        let columns = self.columns.each_mut().map(|f| f.take_power());
        let energy = std::mem::take(&mut self.block_energy);
        self.block_fill = 0;

        let (row, row_power) = strongest(&rows)?;
        let (column, column_power) = strongest(&columns)?;
        let n = BLOCK_LEN as f32;

        // A sine of amplitude A gives a Goertzel power of (A·N/2)².
        let min_power = (self.config.min_amplitude * n / 2.0).powi(2);
        if row_power < min_power || column_power < min_power {
            return None;
        }
        if row_power > column_power * db_to_power_ratio(self.config.normal_twist_db)
            || column_power > row_power * db_to_power_ratio(self.config.reverse_twist_db)
        {
            return None;
        }
        let relative_peak = db_to_power_ratio(self.config.relative_peak_db);
        let clear_peak = |powers: &[f32; 4], best: usize, best_power: f32| {
            powers
                .iter()
                .enumerate()
                .all(|(i, &p)| i == best || p * relative_peak < best_power)
        };
        if !clear_peak(&rows, row, row_power) || !clear_peak(&columns, column, column_power) {
            return None;
        }
        // Power (A·N/2)² of a sine holds (N/2)·(A²N/2) = (N/2)·energy, so 2·power/N is the
        // part of the block's energy the tone accounts for.
        let tone_energy = 2.0 * (row_power + column_power) / n;
        if tone_energy < self.config.min_tone_to_total * energy {
            return None;
        }
        KEYPAD.get(row)?.get(column).copied()
    }

    /// Updates the press/release state with one block's finding.
    fn advance(&mut self, found: Option<Digit>) -> Option<DtmfEvent> {
        if found == self.candidate {
            self.candidate_blocks = self.candidate_blocks.saturating_add(1);
        } else {
            self.candidate = found;
            self.candidate_blocks = 1;
            self.candidate_started_at = self.block_started_at;
        }
        match found {
            Some(digit) if self.candidate_blocks >= self.blocks_for_tone => {
                if self.held == Some(digit) {
                    return None;
                }
                self.held = Some(digit);
                Some(DtmfEvent {
                    digit,
                    source: DtmfSource::Inband,
                    at: self.candidate_started_at?,
                    duration: None,
                })
            }
            None if self.candidate_blocks >= self.blocks_for_pause => {
                self.held = None;
                None
            }
            _ => None,
        }
    }
}

/// Index and power of the largest entry.
fn strongest(powers: &[f32; 4]) -> Option<(usize, f32)> {
    powers
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests start virtual time from one real Instant
mod tests {
    use super::*;
    use crate::g711::Codec;
    use proptest::prelude::*;

    fn frequencies(digit: Digit) -> (f32, f32) {
        for (r, row) in KEYPAD.iter().enumerate() {
            for (c, key) in row.iter().enumerate() {
                if *key == digit {
                    return (ROW_HZ[r], COLUMN_HZ[c]);
                }
            }
        }
        unreachable!("every digit is on the keypad")
    }

    /// Appends `ms` of a sum of sines (amplitude each) to `out`, continuing its phase.
    fn sines(out: &mut Vec<i16>, freqs: &[f32], amplitude: f32, ms: usize) {
        let start = out.len();
        for i in start..start + ms * 8 {
            let t = i as f32 / SAMPLE_RATE_HZ;
            let v: f32 = freqs
                .iter()
                .map(|f| amplitude * (2.0 * PI * f * t).sin())
                .sum();
            out.push(v.clamp(-32768.0, 32767.0) as i16);
        }
    }

    fn tone(out: &mut Vec<i16>, digit: Digit, amplitude: f32, ms: usize) {
        let (row, column) = frequencies(digit);
        sines(out, &[row, column], amplitude, ms);
    }

    fn silence(out: &mut Vec<i16>, ms: usize) {
        out.extend(std::iter::repeat_n(0, ms * 8));
    }

    /// Deterministic white noise (xorshift), amplitude ±`level`.
    fn noise(out: &mut Vec<i16>, level: i32, ms: usize, seed: u32) {
        let mut state = seed.max(1);
        for _ in 0..ms * 8 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let v = (state % (2 * level as u32 + 1)) as i32 - level;
            out.push(v as i16);
        }
    }

    fn detect_in_chunks(samples: &[i16], chunk: usize) -> Vec<DtmfEvent> {
        let start = Instant::now();
        let mut detector = InbandDetector::default();
        let mut events = Vec::new();
        for (i, part) in samples.chunks(chunk).enumerate() {
            let at = start + SAMPLE_PERIOD * (i * chunk) as u32;
            detector.feed(part, at, |e| events.push(e));
        }
        events
    }

    fn keys(events: &[DtmfEvent]) -> String {
        events.iter().map(|e| e.digit.as_char()).collect()
    }

    #[test]
    fn every_key_is_detected_once_in_any_chunk_size() {
        let all = "123A456B789C*0#D";
        let mut samples = Vec::new();
        for c in all.chars() {
            tone(&mut samples, Digit::from_char(c).expect("key"), 6000.0, 70);
            silence(&mut samples, 60);
        }
        for chunk in [80, 160, 240, 1, 7, 1000, samples.len()] {
            assert_eq!(
                keys(&detect_in_chunks(&samples, chunk)),
                all,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn tones_through_alaw_and_ulaw_are_detected() {
        for codec in [Codec::Pcma, Codec::Pcmu] {
            let mut samples = Vec::new();
            for digit in [
                Digit::One,
                Digit::Five,
                Digit::Nine,
                Digit::Pound,
                Digit::Zero,
            ] {
                tone(&mut samples, digit, 3000.0, 50);
                silence(&mut samples, 50);
            }
            let coded: Vec<i16> = samples
                .iter()
                .map(|&s| codec.decode_sample(codec.encode_sample(s)))
                .collect();
            assert_eq!(keys(&detect_in_chunks(&coded, 160)), "159#0", "{codec:?}");
        }
    }

    #[test]
    fn event_time_is_the_start_of_the_tone() {
        for lead_in_samples in [4000, 4001, 4030, 4060, 4101] {
            let mut samples = vec![0; lead_in_samples];
            tone(&mut samples, Digit::Seven, 5000.0, 100);
            let start = Instant::now();
            let events = InbandDetector::default().detect_all(&samples, start);
            assert_eq!(events.len(), 1);
            let tone_start = start + SAMPLE_PERIOD * lead_in_samples as u32;
            let error = if events[0].at > tone_start {
                events[0].at - tone_start
            } else {
                tone_start - events[0].at
            };
            // A block counts once 70 % of it is tone: at most 31 samples early, 71 late.
            assert!(
                error <= SAMPLE_PERIOD * 71,
                "tone at sample {lead_in_samples}, reported {error:?} away"
            );
        }
    }

    #[test]
    fn a_held_key_is_one_press_and_a_pause_makes_a_second() {
        let mut samples = Vec::new();
        tone(&mut samples, Digit::Two, 5000.0, 2000);
        silence(&mut samples, 45);
        tone(&mut samples, Digit::Two, 5000.0, 60);
        assert_eq!(keys(&detect_in_chunks(&samples, 160)), "22");
    }

    #[test]
    fn minimum_duration_is_enforced() {
        // 40 ms must be accepted wherever it falls relative to block boundaries.
        for lead_in in [0, 3, 6, 9, 12] {
            let mut samples = Vec::new();
            silence(&mut samples, lead_in);
            tone(&mut samples, Digit::Four, 5000.0, 40);
            silence(&mut samples, 50);
            assert_eq!(
                keys(&detect_in_chunks(&samples, 160)),
                "4",
                "lead-in {lead_in} ms"
            );
        }
        // 17 ms never fills two blocks to 70 %, wherever it falls.
        for lead_in_samples in 0..BLOCK_LEN {
            let mut samples = vec![0; lead_in_samples];
            tone(&mut samples, Digit::Four, 5000.0, 17);
            silence(&mut samples, 50);
            assert_eq!(keys(&detect_in_chunks(&samples, 160)), "");
        }
    }

    #[test]
    fn twist_limits_are_enforced() {
        let (row, column) = frequencies(Digit::Five);
        let accept_and_reject = [
            // Row louder by 6 dB: normal twist within 8 dB.
            (2.0, 1.0, "5"),
            // Row louder by 12 dB: beyond normal twist.
            (4.0, 1.0, ""),
            // Column louder by 3 dB: within reverse twist of 4 dB.
            (1.0, 1.41, "5"),
            // Column louder by 8 dB: beyond reverse twist.
            (1.0, 2.5, ""),
        ];
        for (row_gain, column_gain, expected) in accept_and_reject {
            let mut samples = Vec::new();
            let mut row_part = Vec::new();
            let mut column_part = Vec::new();
            sines(&mut row_part, &[row], 2500.0 * row_gain, 100);
            sines(&mut column_part, &[column], 2500.0 * column_gain, 100);
            samples.extend(row_part.iter().zip(&column_part).map(|(a, b)| a + b));
            silence(&mut samples, 50);
            assert_eq!(
                keys(&detect_in_chunks(&samples, 160)),
                expected,
                "row ×{row_gain}, column ×{column_gain}"
            );
        }
    }

    #[test]
    fn off_frequency_tones_within_tolerance_are_accepted() {
        let (row, column) = frequencies(Digit::D);
        let mut samples = Vec::new();
        sines(&mut samples, &[row * 1.015, column * 0.985], 5000.0, 80);
        silence(&mut samples, 50);
        assert_eq!(keys(&detect_in_chunks(&samples, 160)), "D");
    }

    #[test]
    fn tones_in_moderate_noise_are_detected() {
        let mut tone_part = Vec::new();
        let mut noise_part = Vec::new();
        let mut samples = Vec::new();
        tone(&mut tone_part, Digit::Eight, 5000.0, 100);
        silence(&mut tone_part, 100);
        noise(&mut noise_part, 800, 200, 42);
        samples.extend(
            tone_part
                .iter()
                .zip(&noise_part)
                .map(|(a, b)| a.saturating_add(*b)),
        );
        assert_eq!(keys(&detect_in_chunks(&samples, 160)), "8");
    }

    #[test]
    fn silence_noise_chords_and_single_tones_give_nothing() {
        let mut samples = Vec::new();
        silence(&mut samples, 500);
        noise(&mut samples, 8000, 1000, 7);
        // A 440 Hz + 523 Hz chord (A4 + C5), and with E5 and harmonics.
        sines(&mut samples, &[440.0, 523.25], 8000.0, 1000);
        sines(
            &mut samples,
            &[440.0, 523.25, 659.25, 880.0, 1046.5],
            4000.0,
            1000,
        );
        // One DTMF frequency alone (dial tone-like), and a row+row pair.
        sines(&mut samples, &[697.0], 8000.0, 500);
        sines(&mut samples, &[697.0, 852.0], 6000.0, 500);
        // Two column tones: not a key either.
        sines(&mut samples, &[1209.0, 1477.0], 6000.0, 500);
        assert_eq!(keys(&detect_in_chunks(&samples, 160)), "");
    }

    #[test]
    fn too_quiet_tones_are_ignored() {
        let mut samples = Vec::new();
        tone(&mut samples, Digit::Three, 200.0, 100);
        assert_eq!(keys(&detect_in_chunks(&samples, 160)), "");
    }

    #[test]
    fn duration_to_blocks_conversion() {
        assert_eq!(blocks_always_filled(Duration::from_millis(40)), 2);
        assert_eq!(blocks_always_filled(Duration::from_millis(0)), 1);
        assert_eq!(blocks_always_filled(Duration::from_millis(65)), 4);
    }

    proptest! {
        #[test]
        fn never_panics_and_never_fires_on_random_audio(
            samples in proptest::collection::vec(any::<i16>(), 0..4000)
        ) {
            let events = detect_in_chunks(&samples, 160);
            prop_assert!(events.is_empty());
        }
    }
}
