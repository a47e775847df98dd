//! What the voice meter costs on the packet path: it runs on every caller packet of every
//! call (up to ~800 calls, 50 packets a second each). The voicing search runs only on frames
//! with speech energy, so the cost depends on the audio: the recorded caller (most frames
//! speech), steady loud noise right after silence (every frame speech energy while the floor
//! rises: the worst case) and digital silence (energy only).
//!
//! `cargo bench -p siaga-media --bench voice` prints nanoseconds per 20 ms frame (median of
//! rounds) and, from it, the share of one core that 800 callers would take.

use std::hint::black_box;
use std::time::Instant;

use siaga_media::voice::{self, FRAME_SAMPLES};
use siaga_media::{Codec, VoiceConfig, VoiceMeter, VoiceTotals};

const ROUNDS: usize = 7;
/// Frames fed per round (2,000 s of audio).
const FRAMES: usize = 100_000;
const CALLS: f64 = 800.0;
const FRAMES_PER_S: f64 = 50.0;

#[expect(
    clippy::disallowed_methods,
    reason = "a benchmark reads the clock; the crate itself never does"
)]
fn median_ns_per_frame(audio: &[i16]) -> (f64, VoiceTotals) {
    let packets: Vec<&[i16]> = audio.chunks_exact(FRAME_SAMPLES).collect();
    let mut whole = VoiceMeter::new(VoiceConfig::default());
    packets.iter().for_each(|p| whole.feed(p));
    let mut per_frame: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let mut meter = VoiceMeter::new(VoiceConfig::default());
            let start = Instant::now();
            for i in 0..FRAMES {
                // A new meter per pass over the audio, as a new call would have.
                if i % packets.len() == 0 {
                    meter = VoiceMeter::new(VoiceConfig::default());
                }
                meter.feed(black_box(packets[i % packets.len()]));
            }
            let elapsed = start.elapsed().as_nanos() as f64 / FRAMES as f64;
            black_box(meter.totals());
            elapsed
        })
        .collect();
    per_frame.sort_by(f64::total_cmp);
    (per_frame[ROUNDS / 2], whole.totals())
}

fn main() {
    let alaw = include_bytes!("../../../tests/data/media/caller_8k.alaw");
    let mut caller = vec![0i16; alaw.len()];
    Codec::Pcma.decode(alaw, &mut caller);
    // 5 s of rumble (about −19 dBFS) after 1 s of silence: for the 4 s the floor takes to
    // rise to it, every frame has speech energy and is searched through every lag (no lag is
    // a pitch), the most a frame can cost.
    let mut noise_onset = vec![0i16; 8000];
    let rumble = voice::rumble_alaw(8000 * 5, 0x9E37_79B9_7F4A_7C15);
    let mut pcm = vec![0i16; rumble.len()];
    Codec::Pcma.decode(&rumble, &mut pcm);
    noise_onset.extend(pcm);
    let silence = vec![0i16; 8000 * 5];

    println!("voice meter, median of {ROUNDS} rounds of {FRAMES} frames (20 ms):");
    for (name, audio) in [
        ("recorded caller", &caller),
        ("loud rumble after silence", &noise_onset),
        ("digital silence", &silence),
    ] {
        let (ns, totals) = median_ns_per_frame(audio);
        let searched = f64::from(totals.speech_frames) / f64::from(totals.frames.max(1));
        let core = ns * CALLS * FRAMES_PER_S / 1e9 * 100.0;
        println!(
            "  {name:26} {ns:7.0} ns/frame ({:3.0} % of frames searched for a pitch); \
             {CALLS} such callers: {core:4.1} % of a core",
            searched * 100.0
        );
    }
}
