//! Whether a leg's peer is sending audio: its first packet, silence beyond the media
//! timeout, and audio coming back after it.
//!
//! The engine probes a caller whose audio stops (a phone that lost coverage) and ends the
//! call if nothing answers; so it must hear of the silence once, of the first packet, and of
//! the audio's return. Pure: the shell passes the time of each accepted packet and of its
//! periodic check.

use std::time::{Duration, Instant};

/// What the engine hears about a leg's incoming audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilenceEvent {
    /// The leg's first accepted packet.
    FirstPacket,
    /// Audio again after a reported silence.
    Resumed { silent_for: Duration },
    /// No audio for the media timeout (reported once per silence).
    Timeout { silent_for: Duration },
}

/// The silence clock of one leg.
#[derive(Debug, Clone)]
pub struct SilenceWatch {
    timeout: Duration,
    /// The last accepted packet, or when waiting for one began.
    last_rx: Instant,
    timeout_reported: bool,
    first_packet_seen: bool,
}

impl SilenceWatch {
    /// A leg created at `now`, waiting for its first packet.
    pub fn new(timeout: Duration, now: Instant) -> SilenceWatch {
        SilenceWatch {
            timeout,
            last_rx: now,
            timeout_reported: false,
            first_packet_seen: false,
        }
    }

    /// An accepted packet at `now`: the first one, or the first after a reported silence,
    /// is an event.
    pub fn on_packet(&mut self, now: Instant) -> Option<SilenceEvent> {
        let event = if !self.first_packet_seen {
            Some(SilenceEvent::FirstPacket)
        } else if self.timeout_reported {
            Some(SilenceEvent::Resumed {
                silent_for: now.saturating_duration_since(self.last_rx),
            })
        } else {
            None
        };
        self.first_packet_seen = true;
        self.last_rx = now;
        self.timeout_reported = false;
        event
    }

    /// The peer takes the call off hold at `now`: the silence clock starts again.
    pub fn restart(&mut self, now: Instant) {
        self.last_rx = now;
        self.timeout_reported = false;
    }

    /// The periodic check at `now`; `expecting` is false while the peer may be silent (on
    /// hold). A silence is reported once, when it reaches the timeout.
    pub fn check(&mut self, now: Instant, expecting: bool) -> Option<SilenceEvent> {
        let silent_for = now.saturating_duration_since(self.last_rx);
        if expecting && !self.timeout_reported && silent_for >= self.timeout {
            self.timeout_reported = true;
            return Some(SilenceEvent::Timeout { silent_for });
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests start virtual time from one real Instant
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);
    const S: Duration = Duration::from_secs(1);

    #[test]
    fn first_packet_then_one_timeout_then_resumed() {
        let t = Instant::now();
        let mut watch = SilenceWatch::new(TIMEOUT, t);
        assert_eq!(watch.check(t + 9 * S, true), None);
        assert_eq!(watch.on_packet(t + 9 * S), Some(SilenceEvent::FirstPacket));
        assert_eq!(watch.on_packet(t + 10 * S), None);
        assert_eq!(watch.check(t + 19 * S, true), None);
        assert_eq!(
            watch.check(t + 20 * S, true),
            Some(SilenceEvent::Timeout {
                silent_for: TIMEOUT
            })
        );
        // Reported once per silence.
        assert_eq!(watch.check(t + 40 * S, true), None);
        assert_eq!(
            watch.on_packet(t + 45 * S),
            Some(SilenceEvent::Resumed { silent_for: 35 * S })
        );
        assert_eq!(watch.on_packet(t + 46 * S), None);
    }

    #[test]
    fn a_leg_that_never_hears_anything_times_out_from_its_start() {
        let t = Instant::now();
        let mut watch = SilenceWatch::new(TIMEOUT, t);
        assert_eq!(
            watch.check(t + 12 * S, true),
            Some(SilenceEvent::Timeout { silent_for: 12 * S })
        );
        // Its first packet after that is the first packet, not a return.
        assert_eq!(watch.on_packet(t + 13 * S), Some(SilenceEvent::FirstPacket));
    }

    #[test]
    fn no_timeout_on_hold_and_the_clock_restarts_after_it() {
        let t = Instant::now();
        let mut watch = SilenceWatch::new(TIMEOUT, t);
        assert_eq!(watch.on_packet(t), Some(SilenceEvent::FirstPacket));
        // On hold from t+1 s: silence is expected.
        assert_eq!(watch.check(t + 30 * S, false), None);
        // Off hold at t+60 s: a full timeout from then, not from the last packet.
        watch.restart(t + 60 * S);
        assert_eq!(watch.check(t + 69 * S, true), None);
        assert!(matches!(
            watch.check(t + 70 * S, true),
            Some(SilenceEvent::Timeout { .. })
        ));
    }
}
