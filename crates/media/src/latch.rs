//! Which sources a leg takes RTP from, and where it sends: symmetric RTP without hijacking.
//!
//! A leg knows two facts about its peer from signalling: the address in the peer's SDP, and
//! the IP its SIP came from. Anybody can send a datagram to our port, so only these count:
//! - packets from the **SDP address** are always taken, and the leg sends there (back to it
//!   whenever it speaks again, even after a NAT source was learnt);
//! - while **nothing came from the SDP address**, a source whose IP is one the peer named —
//!   its signalling IP (a phone behind NAT, whose SDP holds a private address) or the IP of
//!   its SDP (a device that sends from another port than it receives on) — is learnt, but
//!   only within a short **learning window** from the session's start;
//! - everything else is refused: neither relayed nor recorded nor answered. The first
//!   refusal of each source is an event, later ones are only counted ([`Latch::refusals`]),
//!   so a flood cannot turn into one log row per packet.
//!
//! Pure: the shell passes the time of each packet. Each decision is a few comparisons and
//! allocates nothing once a source is known.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The latch's tunables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatchConfig {
    /// From the session's start (its SDP), how long a NAT source may be learnt.
    pub learning_window: Duration,
    /// Within the window, a learnt source silent this long may give way to another one from
    /// the same peer (its NAT binding changed); before that, a second source is refused so two
    /// streams cannot make the leg flap.
    pub relatch_after: Duration,
}

impl Default for LatchConfig {
    fn default() -> Self {
        LatchConfig {
            learning_window: Duration::from_secs(5),
            relatch_after: Duration::from_millis(500),
        }
    }
}

/// Distinct refused sources that get an event and a count of their own; the rest are
/// counted together, so memory stays bounded under a spoofed flood.
pub const TRACKED_SOURCES: usize = 8;

/// Why a source was latched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatchReason {
    /// The first packet from the address in the peer's SDP.
    Sdp,
    /// The SDP address speaks again after a NAT source had been learnt.
    BackToSdp,
    /// Learnt: the peer's IP (signalling or SDP) on another port, within the window.
    Nat,
}

/// Why a packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its IP is neither the peer's signalling IP nor the IP of its SDP.
    UnknownSource,
    /// The peer's IP, but the SDP address has already been heard: no learning needed.
    SdpAddressSpeaks,
    /// The peer's IP, but the learning window is over.
    WindowOver,
    /// The peer's IP, but another learnt source is still sending.
    OtherSourceActive,
}

/// Something for the call's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatchEvent {
    /// The leg now takes packets from, and sends to, `source`.
    Latched {
        source: SocketAddr,
        reason: LatchReason,
    },
    /// The first packet refused from `source` (later ones are only counted).
    Refused { source: SocketAddr, why: Refusal },
    /// More than [`TRACKED_SOURCES`] sources were refused; `source` and every later new one are
    /// counted together without an event each.
    TooManySources { source: SocketAddr },
}

impl LatchEvent {
    /// The event kind for a timeline.
    pub fn kind(&self) -> &'static str {
        match self {
            LatchEvent::Latched { .. } => "rtp_latched",
            LatchEvent::Refused { .. } | LatchEvent::TooManySources { .. } => "rtp_refused",
        }
    }
}

/// Whether a packet may be used (relayed, recorded, decoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Refuse,
}

/// A refused source and how many of its packets were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusedSource {
    pub source: SocketAddr,
    pub packets: u64,
}

/// Everything refused on a leg, for the timeline at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusals {
    /// The first [`TRACKED_SOURCES`] refused sources, in order of their first packet.
    pub sources: Vec<RefusedSource>,
    /// Packets from further sources (not remembered one by one).
    pub other_packets: u64,
}

impl Refusals {
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.other_packets == 0
    }

    pub fn total_packets(&self) -> u64 {
        self.sources.iter().map(|s| s.packets).sum::<u64>() + self.other_packets
    }
}

/// The latch of one leg.
#[derive(Debug, Clone)]
pub struct Latch {
    config: LatchConfig,
    /// Where the peer's SDP says it is.
    sdp: Option<SocketAddr>,
    /// Where the peer's SIP came from.
    signalling_ip: Option<IpAddr>,
    /// When learning started: the session's start, or a changed SDP address.
    window_start: Option<Instant>,
    /// A learnt (NAT) source the leg uses instead of the SDP address.
    learnt: Option<SocketAddr>,
    /// The last packet from `learnt`.
    learnt_last: Option<Instant>,
    /// Whether anything came from the SDP address since it was set.
    sdp_heard: bool,
    refusals: Refusals,
}

impl Latch {
    /// A latch for a peer whose SIP came from `signalling_ip` (when known). Until
    /// [`Latch::set_remote`], only that IP can be learnt.
    pub fn new(config: LatchConfig, signalling_ip: Option<IpAddr>, now: Instant) -> Latch {
        Latch {
            config,
            sdp: None,
            signalling_ip,
            window_start: Some(now),
            learnt: None,
            learnt_last: None,
            sdp_heard: false,
            refusals: Refusals::default(),
        }
    }

    /// The peer's SDP address from an offer or answer (also after a re-INVITE). A changed
    /// address means the peer moved: what was learnt is forgotten and learning starts again.
    pub fn set_remote(&mut self, sdp: Option<SocketAddr>, now: Instant) {
        if sdp == self.sdp && self.sdp.is_some() {
            return;
        }
        let first = self.sdp.is_none();
        self.sdp = sdp;
        self.sdp_heard = false;
        self.window_start = Some(now);
        // A source learnt before the first SDP (early packets from the signalling IP) stays
        // until the SDP address speaks; after a real move it is stale.
        if !first {
            self.learnt = None;
            self.learnt_last = None;
        }
    }

    /// Where to send: the learnt source while the SDP address is silent, else the SDP address.
    pub fn target(&self) -> Option<SocketAddr> {
        self.learnt.or(self.sdp)
    }

    /// What was refused so far.
    pub fn refusals(&self) -> &Refusals {
        &self.refusals
    }

    /// Decides on one packet from `from`, received at `now`. Returns at most one event: a
    /// (re)latch or the first refusal of a source.
    pub fn on_packet(&mut self, from: SocketAddr, now: Instant) -> (Verdict, Option<LatchEvent>) {
        if Some(from) == self.sdp {
            let back = self.learnt.is_some_and(|learnt| learnt != from);
            let event = (!self.sdp_heard || back).then_some(LatchEvent::Latched {
                source: from,
                reason: if back {
                    LatchReason::BackToSdp
                } else {
                    LatchReason::Sdp
                },
            });
            self.sdp_heard = true;
            self.learnt = None;
            self.learnt_last = None;
            return (Verdict::Accept, event);
        }
        if Some(from) == self.learnt {
            self.learnt_last = Some(now);
            return (Verdict::Accept, None);
        }
        match self.may_learn(from, now) {
            Ok(()) => {
                self.learnt = Some(from);
                self.learnt_last = Some(now);
                let event = LatchEvent::Latched {
                    source: from,
                    reason: LatchReason::Nat,
                };
                (Verdict::Accept, Some(event))
            }
            Err(why) => (Verdict::Refuse, self.refuse(from, why)),
        }
    }

    fn may_learn(&self, from: SocketAddr, now: Instant) -> Result<(), Refusal> {
        let named_by_peer = Some(from.ip()) == self.signalling_ip
            || self.sdp.is_some_and(|sdp| sdp.ip() == from.ip());
        if !named_by_peer {
            return Err(Refusal::UnknownSource);
        }
        if self.sdp_heard {
            return Err(Refusal::SdpAddressSpeaks);
        }
        let in_window = self.window_start.is_some_and(|start| {
            now.saturating_duration_since(start) < self.config.learning_window
        });
        if !in_window {
            return Err(Refusal::WindowOver);
        }
        let other_active = self
            .learnt_last
            .is_some_and(|last| now.saturating_duration_since(last) < self.config.relatch_after);
        if other_active {
            return Err(Refusal::OtherSourceActive);
        }
        Ok(())
    }

    /// Counts a refused packet; an event for a source's first one.
    fn refuse(&mut self, source: SocketAddr, why: Refusal) -> Option<LatchEvent> {
        let r = &mut self.refusals;
        if let Some(known) = r.sources.iter_mut().find(|s| s.source == source) {
            known.packets += 1;
            return None;
        }
        if r.sources.len() < TRACKED_SOURCES {
            r.sources.push(RefusedSource { source, packets: 1 });
            return Some(LatchEvent::Refused { source, why });
        }
        r.other_packets += 1;
        (r.other_packets == 1).then_some(LatchEvent::TooManySources { source })
    }
}

impl fmt::Display for LatchReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LatchReason::Sdp => "the address in the peer's SDP",
            LatchReason::BackToSdp => "back to the address in the peer's SDP",
            LatchReason::Nat => {
                "learnt (NAT): the peer's IP on another port, nothing from its SDP address yet"
            }
        })
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::UnknownSource => "neither the peer's SDP address nor its signalling IP",
            Refusal::SdpAddressSpeaks => "the peer's IP, but its SDP address is sending",
            Refusal::WindowOver => "the peer's IP, but after the learning window",
            Refusal::OtherSourceActive => "the peer's IP, but another learnt source is sending",
        })
    }
}

impl fmt::Display for LatchEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LatchEvent::Latched { source, reason } => write!(f, "RTP from {source}: {reason}"),
            LatchEvent::Refused { source, why } => write!(
                f,
                "RTP from {source} refused ({why}): not relayed, not recorded; later packets only counted"
            ),
            LatchEvent::TooManySources { source } => write!(
                f,
                "RTP from {source} refused: more than {TRACKED_SOURCES} sources refused, the rest are counted together"
            ),
        }
    }
}

impl fmt::Display for Refusals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} RTP packet(s) refused:", self.total_packets())?;
        for (i, s) in self.sources.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{} from {}", s.packets, s.source)?;
        }
        if self.other_packets > 0 {
            write!(f, ", {} from further sources", self.other_packets)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests start virtual time from one real Instant
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    const SIGNALLING: &str = "198.51.100.7";

    struct Clock(Instant);
    impl Clock {
        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
    }

    fn latch_with_sdp(sdp: &str) -> (Latch, Clock) {
        let clock = Clock(Instant::now());
        let mut latch = Latch::new(
            LatchConfig::default(),
            Some(SIGNALLING.parse().expect("ip")),
            clock.at(0),
        );
        latch.set_remote(Some(addr(sdp)), clock.at(0));
        (latch, clock)
    }

    #[test]
    fn a_third_party_first_is_refused_and_the_sdp_address_is_latched_when_it_speaks() {
        let (mut latch, t) = latch_with_sdp("198.51.100.7:4000");
        let intruder = addr("203.0.113.9:5555");
        let (v, e) = latch.on_packet(intruder, t.at(10));
        assert_eq!(v, Verdict::Refuse);
        assert_eq!(
            e,
            Some(LatchEvent::Refused {
                source: intruder,
                why: Refusal::UnknownSource
            })
        );
        // Later packets from it are refused silently, and it never becomes the target.
        for ms in 20..170 {
            assert_eq!(latch.on_packet(intruder, t.at(ms)), (Verdict::Refuse, None));
        }
        assert_eq!(latch.target(), Some(addr("198.51.100.7:4000")));
        let caller = addr("198.51.100.7:4000");
        assert_eq!(
            latch.on_packet(caller, t.at(2000)),
            (
                Verdict::Accept,
                Some(LatchEvent::Latched {
                    source: caller,
                    reason: LatchReason::Sdp
                })
            )
        );
        assert_eq!(latch.on_packet(caller, t.at(2020)), (Verdict::Accept, None));
        assert_eq!(latch.on_packet(intruder, t.at(2030)).0, Verdict::Refuse);
        assert_eq!(
            latch.refusals().sources,
            vec![RefusedSource {
                source: intruder,
                packets: 152
            }]
        );
        assert_eq!(
            latch.refusals().to_string(),
            "152 RTP packet(s) refused: 152 from 203.0.113.9:5555"
        );
    }

    #[test]
    fn a_nated_peer_is_learnt_from_its_signalling_ip_within_the_window() {
        // SDP holds a private address; packets come from the NAT's public side.
        let (mut latch, t) = latch_with_sdp("192.168.1.20:4000");
        let nat = addr("198.51.100.7:61000");
        let (v, e) = latch.on_packet(nat, t.at(300));
        assert_eq!(v, Verdict::Accept);
        assert_eq!(
            e,
            Some(LatchEvent::Latched {
                source: nat,
                reason: LatchReason::Nat
            })
        );
        assert_eq!(latch.target(), Some(nat));
        // Long after the window it stays: the window limits learning, not keeping.
        assert_eq!(latch.on_packet(nat, t.at(60_000)), (Verdict::Accept, None));
    }

    #[test]
    fn the_peers_sdp_ip_on_another_port_is_learnt_too() {
        let (mut latch, t) = latch_with_sdp("192.0.2.50:4000");
        let asymmetric = addr("192.0.2.50:4002");
        assert_eq!(latch.on_packet(asymmetric, t.at(100)).0, Verdict::Accept);
        assert_eq!(latch.target(), Some(asymmetric));
    }

    #[test]
    fn the_signalling_ip_is_not_learnt_after_the_window() {
        let (mut latch, t) = latch_with_sdp("192.168.1.20:4000");
        let late = addr("198.51.100.7:61000");
        assert_eq!(
            latch.on_packet(late, t.at(5000)),
            (
                Verdict::Refuse,
                Some(LatchEvent::Refused {
                    source: late,
                    why: Refusal::WindowOver
                })
            )
        );
        assert_eq!(latch.target(), Some(addr("192.168.1.20:4000")));
    }

    #[test]
    fn once_the_sdp_address_spoke_nothing_else_is_learnt() {
        let (mut latch, t) = latch_with_sdp("198.51.100.7:4000");
        assert_eq!(
            latch.on_packet(addr("198.51.100.7:4000"), t.at(0)).0,
            Verdict::Accept
        );
        let other = addr("198.51.100.7:4444");
        assert_eq!(
            latch.on_packet(other, t.at(100)),
            (
                Verdict::Refuse,
                Some(LatchEvent::Refused {
                    source: other,
                    why: Refusal::SdpAddressSpeaks
                })
            )
        );
    }

    #[test]
    fn back_to_the_sdp_address_whenever_it_speaks() {
        let (mut latch, t) = latch_with_sdp("198.51.100.7:4000");
        let nat = addr("198.51.100.7:61000");
        assert_eq!(latch.on_packet(nat, t.at(0)).0, Verdict::Accept);
        let sdp = addr("198.51.100.7:4000");
        assert_eq!(
            latch.on_packet(sdp, t.at(3000)),
            (
                Verdict::Accept,
                Some(LatchEvent::Latched {
                    source: sdp,
                    reason: LatchReason::BackToSdp
                })
            )
        );
        assert_eq!(latch.target(), Some(sdp));
        // The learnt source is no longer taken.
        assert_eq!(latch.on_packet(nat, t.at(3020)).0, Verdict::Refuse);
    }

    #[test]
    fn a_second_learnt_source_waits_until_the_first_is_silent() {
        let (mut latch, t) = latch_with_sdp("192.168.1.20:4000");
        let first = addr("198.51.100.7:61000");
        let second = addr("198.51.100.7:62000");
        assert_eq!(latch.on_packet(first, t.at(0)).0, Verdict::Accept);
        assert_eq!(
            latch.on_packet(second, t.at(100)),
            (
                Verdict::Refuse,
                Some(LatchEvent::Refused {
                    source: second,
                    why: Refusal::OtherSourceActive
                })
            )
        );
        // The first goes quiet (its NAT binding changed): the second takes over, in the window.
        assert_eq!(latch.on_packet(second, t.at(700)).0, Verdict::Accept);
        assert_eq!(latch.target(), Some(second));
        assert_eq!(latch.on_packet(first, t.at(720)).0, Verdict::Refuse);
    }

    #[test]
    fn before_any_sdp_only_the_signalling_ip_is_learnt() {
        let t = Clock(Instant::now());
        let mut latch = Latch::new(
            LatchConfig::default(),
            Some(SIGNALLING.parse().expect("ip")),
            t.at(0),
        );
        assert_eq!(latch.target(), None);
        assert_eq!(
            latch.on_packet(addr("203.0.113.9:1"), t.at(5)).0,
            Verdict::Refuse
        );
        let early = addr("198.51.100.7:4000");
        assert_eq!(latch.on_packet(early, t.at(10)).0, Verdict::Accept);
        // The answer names that very address: from now on it is taken as the SDP address.
        latch.set_remote(Some(early), t.at(20));
        assert_eq!(latch.target(), Some(early));
        assert_eq!(
            latch.on_packet(early, t.at(40)),
            (
                Verdict::Accept,
                Some(LatchEvent::Latched {
                    source: early,
                    reason: LatchReason::Sdp
                })
            )
        );
        assert_eq!(latch.on_packet(early, t.at(60)), (Verdict::Accept, None));
    }

    #[test]
    fn a_moved_sdp_address_forgets_the_learnt_source_and_reopens_the_window() {
        let (mut latch, t) = latch_with_sdp("192.168.1.20:4000");
        let nat = addr("198.51.100.7:61000");
        assert_eq!(latch.on_packet(nat, t.at(0)).0, Verdict::Accept);
        // A re-INVITE much later moves the media.
        latch.set_remote(Some(addr("192.168.1.30:5000")), t.at(60_000));
        assert_eq!(latch.target(), Some(addr("192.168.1.30:5000")));
        let new_nat = addr("198.51.100.7:63000");
        assert_eq!(latch.on_packet(new_nat, t.at(60_100)).0, Verdict::Accept);
        // The same SDP again (a session refresh) changes nothing.
        latch.set_remote(Some(addr("192.168.1.30:5000")), t.at(70_000));
        assert_eq!(latch.target(), Some(new_nat));
    }

    #[test]
    fn without_a_signalling_ip_only_the_sdp_ip_counts() {
        let t = Clock(Instant::now());
        let mut latch = Latch::new(LatchConfig::default(), None, t.at(0));
        latch.set_remote(Some(addr("192.0.2.1:4000")), t.at(0));
        assert_eq!(
            latch.on_packet(addr("192.0.2.2:4000"), t.at(1)).0,
            Verdict::Refuse
        );
        assert_eq!(
            latch.on_packet(addr("192.0.2.1:4002"), t.at(2)).0,
            Verdict::Accept
        );
    }

    #[test]
    fn a_spoofed_flood_from_many_sources_costs_bounded_memory_and_few_events() {
        let (mut latch, t) = latch_with_sdp("198.51.100.7:4000");
        let mut events = 0;
        for port in 0..10_000u16 {
            let from = SocketAddr::new("203.0.113.9".parse().expect("ip"), port);
            let (v, e) = latch.on_packet(from, t.at(u64::from(port)));
            assert_eq!(v, Verdict::Refuse);
            events += usize::from(e.is_some());
        }
        assert_eq!(events, TRACKED_SOURCES + 1);
        assert_eq!(latch.refusals().sources.len(), TRACKED_SOURCES);
        assert_eq!(latch.refusals().total_packets(), 10_000);
        assert!(
            latch.refusals().to_string().ends_with(&format!(
                ", {} from further sources",
                10_000 - TRACKED_SOURCES
            )),
            "{}",
            latch.refusals()
        );
    }
}
