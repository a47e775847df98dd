//! SDP offer/answer on arbitrary bodies: `answer` (total by contract), `accept_answer`, and
//! the re-render used for re-INVITEs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siaga_media::sdp::{self, LocalAudio};

fuzz_target!(|data: &[u8]| {
    let local = LocalAudio {
        addr: "198.51.100.1".parse().expect("addr"),
        port: 40000,
        session_id: 42,
        session_version: u64::MAX - 1,
    };
    let mut answer = sdp::answer(data, &local);
    let _ = answer.audio.samples_per_packet();
    let first = answer.sdp.clone();
    let _ = answer.rerender_with_next_version();
    let _ = answer.rerender_with_next_version();
    // Our own answer is an SDP we must be able to read back.
    let _ = sdp::accept_answer(first.as_bytes());
    if let Ok(audio) = sdp::accept_answer(data) {
        let _ = audio.samples_per_packet();
    }
    let v6 = LocalAudio {
        addr: "2001:db8::1".parse().expect("addr"),
        ..local
    };
    let _ = sdp::answer(data, &v6);
});
