//! One key press, one digit: many phones signal a press both as RFC 4733 events and as
//! tones in the audio. When both arrive for the same press, only the first is reported.
//!
//! Pure: each event carries its own time ([`DtmfEvent::at`]); the filter reads no clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Digit, DtmfEvent, DtmfSource};

/// How far apart the two reports of one press may start. RFC 4733 stamps the arrival of
/// the first event packet, the in-band detector the start of the tone; both mark the same
/// moment up to a few packets of jitter.
const SAME_PRESS: Duration = Duration::from_millis(250);
/// Reports kept for pairing.
const KEEP: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Reported {
    digit: Digit,
    source: DtmfSource,
    at: Instant,
    /// Already matched with a report of the other kind.
    paired: bool,
}

/// Decides which key presses to report.
#[derive(Debug, Default)]
pub struct DigitFilter {
    recent: VecDeque<Reported>,
}

impl DigitFilter {
    /// Whether `event` is a new press (report it) or the other signalling of a press
    /// already reported (drop it). Each report pairs with at most one of the other kind, so
    /// a quick double press of the same key stays two presses.
    pub fn accept(&mut self, event: &DtmfEvent) -> bool {
        let other = match event.source {
            DtmfSource::Rfc4733 => DtmfSource::Inband,
            DtmfSource::Inband => DtmfSource::Rfc4733,
            DtmfSource::SipInfo => return true,
        };
        let twin = self.recent.iter_mut().find(|r| {
            r.source == other
                && !r.paired
                && r.digit == event.digit
                && abs_diff(r.at, event.at) <= SAME_PRESS
        });
        if let Some(twin) = twin {
            twin.paired = true;
            return false;
        }
        if self.recent.len() >= KEEP {
            self.recent.pop_front();
        }
        self.recent.push_back(Reported {
            digit: event.digit,
            source: event.source,
            at: event.at,
            paired: false,
        });
        true
    }
}

fn abs_diff(a: Instant, b: Instant) -> Duration {
    a.saturating_duration_since(b)
        .max(b.saturating_duration_since(a))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests start virtual time from one real Instant
mod tests {
    use super::*;

    fn ev(digit: Digit, source: DtmfSource, at: Instant) -> DtmfEvent {
        DtmfEvent {
            digit,
            source,
            at,
            duration: None,
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn both_signallings_of_one_press_give_one_digit() {
        let t = Instant::now();
        let mut f = DigitFilter::default();
        assert!(f.accept(&ev(Digit::Five, DtmfSource::Rfc4733, t)));
        assert!(!f.accept(&ev(Digit::Five, DtmfSource::Inband, t + 10 * MS)));
        // In-band first, events late.
        assert!(f.accept(&ev(Digit::Six, DtmfSource::Inband, t + 500 * MS)));
        assert!(!f.accept(&ev(Digit::Six, DtmfSource::Rfc4733, t + 560 * MS)));
    }

    #[test]
    fn different_keys_and_distant_presses_are_all_reported() {
        let t = Instant::now();
        let mut f = DigitFilter::default();
        assert!(f.accept(&ev(Digit::One, DtmfSource::Rfc4733, t)));
        assert!(f.accept(&ev(Digit::Two, DtmfSource::Inband, t + 5 * MS)));
        assert!(f.accept(&ev(Digit::One, DtmfSource::Inband, t + 400 * MS)));
        // Same source twice is two presses (the decoders already debounce).
        assert!(f.accept(&ev(Digit::Nine, DtmfSource::Rfc4733, t + 600 * MS)));
        assert!(f.accept(&ev(Digit::Nine, DtmfSource::Rfc4733, t + 700 * MS)));
    }

    #[test]
    fn a_quick_double_press_sent_both_ways_is_two_digits() {
        let t = Instant::now();
        let mut f = DigitFilter::default();
        let mut reported = 0;
        for at in [t, t + 200 * MS] {
            reported += usize::from(f.accept(&ev(Digit::Three, DtmfSource::Rfc4733, at)));
            reported += usize::from(f.accept(&ev(Digit::Three, DtmfSource::Inband, at + 8 * MS)));
        }
        assert_eq!(reported, 2);
    }

    #[test]
    fn sip_info_digits_are_always_reported() {
        // INFO is signalling, not audio: it has no twin in the RTP stream to pair with.
        let t = Instant::now();
        let mut f = DigitFilter::default();
        assert!(f.accept(&ev(Digit::Four, DtmfSource::Rfc4733, t)));
        assert!(f.accept(&ev(Digit::Four, DtmfSource::SipInfo, t + 5 * MS)));
        assert!(f.accept(&ev(Digit::Four, DtmfSource::SipInfo, t + 10 * MS)));
        // …and an INFO does not use up the RFC 4733 report's in-band twin.
        assert!(!f.accept(&ev(Digit::Four, DtmfSource::Inband, t + 12 * MS)));
    }

    #[test]
    fn only_recent_reports_are_kept_for_pairing() {
        let t = Instant::now();
        let mut f = DigitFilter::default();
        assert!(f.accept(&ev(Digit::Seven, DtmfSource::Rfc4733, t)));
        // KEEP later reports of other keys push the first one out…
        for k in 0..KEEP {
            let at = t + u32::try_from(k).expect("small") * MS;
            assert!(f.accept(&ev(Digit::Zero, DtmfSource::Rfc4733, at)));
        }
        // …so its in-band twin, though within SAME_PRESS, is a new press.
        assert!(f.accept(&ev(Digit::Seven, DtmfSource::Inband, t + 20 * MS)));
    }
}
