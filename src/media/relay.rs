//! Audio relayed between the two legs of a bridged call.
//!
//! Each leg decodes what its peer sends and writes the linear samples into the other leg's
//! play-out buffer (no allocation, no wake-up per packet). The receiving leg re-encodes them
//! into its own peer's codec and packet time, inside its own continuous outbound stream, so
//! the two sides may use different laws and ptimes. A small play-out buffer absorbs the
//! difference between the two packet clocks.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

/// One leg's play-out buffer, written when the peer leg receives and read when this leg
/// sends. Both legs of a call run on the same reactor, so the lock is never contended.
pub(super) type SharedRelay = Arc<Mutex<RelayBuffer>>;

/// Locks a relay buffer; a poisoned lock (a leg that panicked) still yields the buffer.
pub(super) fn lock(buf: &SharedRelay) -> MutexGuard<'_, RelayBuffer> {
    buf.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Samples in the largest frame a leg sends: the longest packet time we accept (60 ms).
pub(super) const RELAY_FRAME: usize = 480;
/// Extra audio (20 ms) held before play-out starts, so the two packet clocks' jitter does
/// not empty the buffer at every packet.
const PRIME: usize = 160;
/// Most audio held (200 ms): beyond it the oldest is dropped, so delay cannot build up.
const MAX_HELD: usize = 1600;

/// The play-out buffer of one leg's relayed audio.
#[derive(Debug)]
pub(super) struct RelayBuffer {
    samples: VecDeque<i16>,
    primed: bool,
}

impl Default for RelayBuffer {
    fn default() -> Self {
        RelayBuffer {
            samples: VecDeque::with_capacity(MAX_HELD + RELAY_FRAME),
            primed: false,
        }
    }
}

/// `out[i] += src[i]`, saturating, over the shorter of the two.
fn add_saturating(out: &mut [i16], src: &[i16]) {
    for (slot, &s) in out.iter_mut().zip(src) {
        *slot = slot.saturating_add(s);
    }
}

impl RelayBuffer {
    pub(super) fn push(&mut self, samples: &[i16]) {
        self.samples.extend(samples.iter().copied());
        if self.samples.len() > MAX_HELD {
            let excess = self.samples.len() - MAX_HELD;
            self.samples.drain(..excess);
        }
    }

    /// Adds the next `out.len()` samples into `out` (saturating, so a prompt playing at the
    /// same time is mixed, not replaced). Returns whether any relayed audio was added.
    pub(super) fn mix_into(&mut self, out: &mut [i16]) -> bool {
        if !self.primed {
            if self.samples.len() < out.len() + PRIME {
                return false;
            }
            self.primed = true;
        }
        if self.samples.len() < out.len() {
            // Ran dry: play what is left, then wait to re-prime.
            self.primed = false;
        }
        let n = out.len().min(self.samples.len());
        // The held samples are at most two contiguous runs: add them run by run (a loop the
        // compiler vectorises), then drop them from the front.
        let (first, second) = self.samples.as_slices();
        let (out_first, out_second) = out.split_at_mut(first.len().min(n));
        add_saturating(out_first, first);
        add_saturating(out_second, second);
        self.samples.drain(..n);
        n > 0
    }

    pub(super) fn clear(&mut self) {
        self.samples.clear();
        self.primed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_ms_in_thirty_ms_out_keeps_every_sample_in_order() {
        let mut buf = RelayBuffer::default();
        let mut next_in = 0i16;
        let mut out_all = Vec::new();
        // 600 ms: 30 packets of 20 ms in, 20 of 30 ms out, interleaved by time.
        for ms in 0..600 {
            if ms % 20 == 0 {
                let packet: Vec<i16> = (0..160).map(|i| next_in + i).collect();
                next_in += 160;
                buf.push(&packet);
            }
            if ms % 30 == 29 {
                let mut frame = [0i16; 240];
                buf.mix_into(&mut frame);
                out_all.extend_from_slice(&frame);
            }
        }
        let audio: Vec<i16> = out_all.iter().copied().skip_while(|&s| s == 0).collect();
        assert!(audio.len() > 4000, "{}", audio.len());
        // Apart from priming silence, the stream is the input, contiguous.
        for pair in audio.windows(2).take(4000) {
            assert_eq!(pair[1], pair[0] + 1);
        }
    }

    #[test]
    fn delay_is_bounded_and_mixing_saturates() {
        let mut buf = RelayBuffer::default();
        for _ in 0..100 {
            buf.push(&[i16::MAX; 160]);
        }
        assert!(buf.samples.len() <= MAX_HELD);
        let mut out = [100i16; 160];
        assert!(buf.mix_into(&mut out));
        assert!(out.iter().all(|&s| s == i16::MAX));
        buf.clear();
        let mut out = [0i16; 160];
        assert!(!buf.mix_into(&mut out));
    }
}
