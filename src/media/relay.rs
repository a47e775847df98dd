//! Audio relayed between the two legs of a bridged call: the sharing of each leg's play-out
//! buffer ([`siaga_media::relay::RelayBuffer`], which decides what plays when).
//!
//! Each leg writes the G.711 codes its peer sends, as they arrive, into the other leg's
//! play-out buffer (no allocation, no wake-up per packet), and reads its own at its pacing
//! ticks.

use std::sync::{Arc, Mutex, MutexGuard};

use siaga_media::relay::RelayBuffer;

/// One leg's play-out buffer, written when the peer leg receives and read when this leg
/// sends. Both legs of a call run on the same reactor, so the lock is never contended.
pub(super) type SharedRelay = Arc<Mutex<RelayBuffer>>;

/// Locks a relay buffer; a poisoned lock (a leg that panicked) still yields the buffer.
pub(super) fn lock(buf: &SharedRelay) -> MutexGuard<'_, RelayBuffer> {
    buf.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
