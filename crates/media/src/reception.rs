//! What arrived of a peer's RTP stream, from its sequence numbers (RFC 3550 A.1/A.3): how
//! many packets were lost on the way and how many came late (after a later one, or twice).

use crate::rtp::SequenceNumber;

/// A jump forward this large is a restarted stream, not loss (RFC 3550's MAX_DROPOUT).
const MAX_DROPOUT: u16 = 3000;

/// Counts of one leg's incoming stream.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reception {
    /// Sequence numbers expected before the last restart of the stream.
    expected_before: u64,
    /// First and highest sequence number since the last restart, and wraps of the highest.
    base: Option<u16>,
    highest: u16,
    cycles: u64,
    received: u64,
    late: u64,
    /// Bit i: `highest - i` arrived (tells a duplicate from a straggler).
    recent: u64,
}

impl Reception {
    pub fn on_packet(&mut self, seq: SequenceNumber) {
        let seq = seq.0;
        let Some(base) = self.base else {
            self.base = Some(seq);
            self.highest = seq;
            self.received += 1;
            self.recent = 1;
            return;
        };
        let ahead = seq.wrapping_sub(self.highest);
        if ahead == 0 {
            self.late += 1;
        } else if ahead < MAX_DROPOUT {
            if seq < self.highest {
                self.cycles += 1;
            }
            self.highest = seq;
            self.received += 1;
            self.recent = self.recent.checked_shl(u32::from(ahead)).unwrap_or(0) | 1;
        } else if ahead <= u16::MAX / 2 {
            // The sender restarted its numbering: count what was expected so far, go on.
            self.expected_before += self.expected_since(base);
            self.base = Some(seq);
            self.highest = seq;
            self.cycles = 0;
            self.received += 1;
            self.recent = 1;
        } else {
            // Behind the highest: reordered or delayed (it arrived, but late), or a copy.
            self.late += 1;
            let behind = self.highest.wrapping_sub(seq);
            let bit = 1u64.checked_shl(u32::from(behind)).unwrap_or(0);
            if self.recent & bit == 0 {
                self.recent |= bit;
                self.received += 1;
            }
        }
    }

    fn expected_since(&self, base: u16) -> u64 {
        (self.cycles << 16) + u64::from(self.highest) + 1 - u64::from(base)
    }

    /// Packets the sender sent (by sequence number) that never arrived.
    pub fn lost(&self) -> u64 {
        let expected = self.expected_before + self.base.map_or(0, |b| self.expected_since(b));
        expected.saturating_sub(self.received)
    }

    /// Packets that arrived after a later one, or a second time.
    pub fn late(&self) -> u64 {
        self.late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(seqs: impl IntoIterator<Item = u16>) -> Reception {
        let mut r = Reception::default();
        for s in seqs {
            r.on_packet(SequenceNumber(s));
        }
        r
    }

    #[test]
    fn a_clean_stream_loses_nothing_across_the_wrap() {
        let r = feed((65_000..=65_535).chain(0..1_000));
        assert_eq!((r.lost(), r.late()), (0, 0));
    }

    #[test]
    fn gaps_are_lost_and_stragglers_late() {
        // 10 and 11 missing; 5 comes again; 20 comes after 21.
        let r = feed((0..10).chain(12..20).chain([21, 5, 20]));
        assert_eq!(r.lost(), 2);
        assert_eq!(r.late(), 2);
        assert_eq!(feed([7, 7, 8]).late(), 1);
    }

    #[test]
    fn a_restarted_stream_is_not_thousands_lost() {
        let r = feed((100..200).chain(40_000..40_100));
        assert_eq!(r.lost(), 0);
    }
}
