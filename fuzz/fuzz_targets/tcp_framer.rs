//! `StreamFramer` fed in chunks whose sizes come from the input itself, every frame then
//! parsed as a stream message. Property: never panics, frames never exceed the size limit.
//!
//! Input layout: byte 0 = number of cut bytes `n` (mod 16); the next `n` bytes are chunk
//! lengths (0 = 1 byte); the rest is the TCP byte stream, cut with those lengths in a cycle.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siaga_engine::sip::framer::{Frame, StreamFramer};
use siaga_engine::sip::parse::{Framing, MAX_MESSAGE_BYTES, parse};

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 16).min(rest.len());
    let (cuts, stream) = rest.split_at(n);
    let mut framer = StreamFramer::new();
    let mut at = 0;
    let mut i = 0;
    let mut frames = 0usize;
    loop {
        let len = if cuts.is_empty() {
            stream.len().max(1)
        } else {
            usize::from(cuts[i % cuts.len()]).max(1)
        };
        i += 1;
        let end = (at + len).min(stream.len());
        framer.push(&stream[at..end]);
        at = end;
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(m))) => {
                    assert!(m.len() <= MAX_MESSAGE_BYTES, "frame of {} bytes", m.len());
                    let _ = parse(&m, Framing::Stream);
                    frames += 1;
                }
                Ok(Some(Frame::KeepAlivePing)) => frames += 1,
                Ok(None) => break,
                // A poisoned stream: the shell closes the connection; keep pushing to check
                // that a poisoned framer stays quiet.
                Err(_) => {
                    assert_eq!(framer.next_frame(), Ok(None));
                    break;
                }
            }
            assert!(frames <= stream.len() + 1, "more frames than bytes");
        }
        if at >= stream.len() {
            break;
        }
    }
});
