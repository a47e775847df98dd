//! WAV headers (`wav::parse`) and prompts (`Prompt::from_wav`); a prompt that loads is then
//! played through an `OutboundStream` for its first frames, as the shell would.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use siaga_media::prompt::{OutboundConfig, OutboundStream, Prompt};
use siaga_media::wav::{self, PcmFormat};
use siaga_media::{Codec, PayloadType, RtpTimestamp, SequenceNumber, Ssrc};

fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(w) = wav::parse(data) {
        let _ = w.is_pcm16();
        assert!(w.data.len() <= data.len());
    }
    let _ = PcmFormat::STEREO_8K.repair_sizes(data.len() as u64);
    if let Ok(prompt) = Prompt::from_wav(data) {
        let _ = prompt.duration();
        let ptime = Duration::from_millis(10 * u64::from(data.len() as u8 % 8));
        let config = OutboundConfig {
            codec: if data.len() % 2 == 0 { Codec::Pcma } else { Codec::Pcmu },
            payload_type: PayloadType(8),
            ptime,
            ssrc: Ssrc(0xdead_beef),
            first_sequence: SequenceNumber(u16::MAX - 2),
            first_timestamp: RtpTimestamp(u32::MAX - 100),
        };
        let start = t0();
        let mut stream = OutboundStream::new(config, start);
        stream.play(&prompt);
        stream.enqueue(&prompt);
        let mut out = [0u8; 1500];
        let mut now = start;
        for _ in 0..50 {
            while let Ok(Some(_frame)) = stream.poll_frame(now, &mut out) {}
            now += Duration::from_millis(37);
        }
    }
});
