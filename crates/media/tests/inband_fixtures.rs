//! In-band DTMF against recorded fixtures (regenerate with `tests/data/make-fixtures.sh`).
#![allow(clippy::disallowed_methods)] // one real Instant as the base of virtual time

use std::io::Cursor;
use std::time::{Duration, Instant};

use siaga_media::dtmf::InbandDetector;

fn samples(wav: &[u8]) -> Vec<i16> {
    let reader = hound::WavReader::new(Cursor::new(wav)).expect("fixture is a WAV");
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (8000, 1, 16)
    );
    reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("fixture decodes")
}

/// Keys detected when the audio arrives in RTP-sized frames.
fn keys(samples: &[i16], frame: usize) -> String {
    let start = Instant::now();
    let mut detector = InbandDetector::default();
    let mut keys = String::new();
    for (i, chunk) in samples.chunks(frame).enumerate() {
        let at = start + Duration::from_micros(125 * (i * frame) as u64);
        detector.feed(chunk, at, |event| keys.push(event.digit.as_char()));
    }
    keys
}

#[test]
fn every_digit_of_the_sequence_is_detected_once_in_order() {
    let audio = samples(include_bytes!("data/dtmf-sequence.wav"));
    for frame in [80, 160, 240] {
        assert_eq!(
            keys(&audio, frame),
            "0123456789*#ABCD11",
            "{frame}-sample frames"
        );
    }
}

#[test]
fn music_like_chords_give_no_digit() {
    let audio = samples(include_bytes!("data/chords.wav"));
    for frame in [80, 160, 240] {
        assert_eq!(keys(&audio, frame), "", "{frame}-sample frames");
    }
}

#[test]
fn indonesian_speech_gives_no_digit() {
    let audio = samples(include_bytes!("data/speech-id.wav"));
    assert_eq!(keys(&audio, 160), "");
}

#[test]
fn english_speech_gives_no_digit() {
    let audio = samples(include_bytes!("data/speech-en.wav"));
    assert_eq!(keys(&audio, 160), "");
}
