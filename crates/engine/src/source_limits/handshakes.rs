//! TLS handshakes in progress: per source and in total. A handshake costs a connection, a
//! few tens of kB of buffers and CPU for the key exchange until it completes or its deadline
//! passes; a source that opens connections and never finishes them (or finishes them
//! slowly) holds only its share of these slots, and the total keeps the memory bounded.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{SourceKey, Trusted};

/// Why a handshake was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeRefusal {
    PerSource,
    Total,
}

/// Counts handshakes in progress. Entries exist only while a source has handshakes in
/// progress, so the table is bounded by the total.
#[derive(Debug)]
pub struct HandshakeLimiter {
    per_source: u32,
    max_total: usize,
    trusted: Trusted,
    open: HashMap<SourceKey, u32>,
    total: usize,
}

impl HandshakeLimiter {
    pub fn new(per_source: u32, max_total: usize, trusted: Trusted) -> Self {
        HandshakeLimiter {
            per_source,
            max_total,
            trusted,
            open: HashMap::new(),
            total: 0,
        }
    }

    /// Takes a slot for a handshake from `ip`, or says why there is none. Trusted sources
    /// (the centre's SBCs) have no per-source share but count towards the total.
    pub fn start(&mut self, ip: IpAddr) -> Result<(), HandshakeRefusal> {
        if self.total >= self.max_total {
            return Err(HandshakeRefusal::Total);
        }
        let count = self.open.entry(SourceKey::of(ip)).or_insert(0);
        if *count >= self.per_source && !self.trusted.contains(ip) {
            if *count == 0 {
                self.open.remove(&SourceKey::of(ip));
            }
            return Err(HandshakeRefusal::PerSource);
        }
        *count += 1;
        self.total += 1;
        Ok(())
    }

    /// The handshake from `ip` ended (done, failed or timed out).
    pub fn finish(&mut self, ip: IpAddr) {
        let key = SourceKey::of(ip);
        if let Some(count) = self.open.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.open.remove(&key);
            }
            self.total = self.total.saturating_sub(1);
        }
    }

    pub fn in_progress(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_source_holds_its_share_and_the_total_holds_for_all() {
        let trusted = Trusted(vec!["10.0.0.0/8".parse().expect("net")]);
        let mut slots = HandshakeLimiter::new(2, 5, trusted);
        assert_eq!(slots.start(ip("192.0.2.1")), Ok(()));
        assert_eq!(slots.start(ip("192.0.2.1")), Ok(()));
        assert_eq!(
            slots.start(ip("192.0.2.1")),
            Err(HandshakeRefusal::PerSource)
        );
        // The SBC's network has no share of its own, but the total holds.
        for _ in 0..3 {
            assert_eq!(slots.start(ip("10.1.1.1")), Ok(()));
        }
        assert_eq!(slots.start(ip("192.0.2.9")), Err(HandshakeRefusal::Total));
        slots.finish(ip("192.0.2.1"));
        assert_eq!(slots.in_progress(), 4);
        assert_eq!(slots.start(ip("192.0.2.1")), Ok(()));
        // Finishing what was never started changes nothing.
        slots.finish(ip("198.51.100.1"));
        assert_eq!(slots.in_progress(), 5);
        for _ in 0..2 {
            slots.finish(ip("192.0.2.1"));
        }
        for _ in 0..3 {
            slots.finish(ip("10.1.1.1"));
        }
        assert_eq!(slots.in_progress(), 0);
        assert!(slots.open.is_empty());
    }
}
