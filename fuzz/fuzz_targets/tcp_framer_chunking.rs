//! Differential: the frames a `StreamFramer` cuts must not depend on how TCP segmented the
//! stream. The whole stream pushed at once and the same stream pushed one byte at a time
//! must give the same frames (compared up to the first error, if any).
#![no_main]

use libfuzzer_sys::fuzz_target;
use siaga_engine::sip::framer::{Frame, StreamFramer};

fn frames(stream: &[u8], chunk: usize) -> (Vec<Frame>, bool) {
    let mut framer = StreamFramer::new();
    let mut out = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        framer.push(piece);
        loop {
            match framer.next_frame() {
                Ok(Some(f)) => out.push(f),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let (whole, whole_err) = frames(data, data.len());
    let (bytewise, bytewise_err) = frames(data, 1);
    if !whole_err && !bytewise_err {
        assert_eq!(whole, bytewise, "segmentation changed the frames");
    } else {
        let common = whole.len().min(bytewise.len());
        assert_eq!(whole[..common], bytewise[..common], "segmentation changed the frames");
    }
});
