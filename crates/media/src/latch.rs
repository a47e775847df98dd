//! Which sources a leg takes RTP from, and where it sends: symmetric RTP without hijacking.
//!
//! A leg knows two facts about its peer from signalling: the address in the peer's SDP, and
//! the IP its SIP comes from. Anybody can send a datagram to our port, so only these count:
//! - packets from the **SDP address** are always taken, and the leg sends there (back to it
//!   whenever it speaks again, even after another source was latched);
//! - a source on one of the **peer's IPs** — the IP of the source latched now, the peer's
//!   signalling IP (a phone behind NAT, whose SDP holds a private address) or the IP of its
//!   SDP (a device that sends from another port than it receives on) — is latched when
//!   nothing is latched yet, or when the latched source has been silent for
//!   [`LatchConfig::relatch_after`] (a NAT binding that moved to another port mid-call:
//!   CGNAT, a Wi-Fi/LTE handover). While the latched source still sends, a second one is
//!   refused, so two streams cannot make the leg flap;
//! - everything else — any other IP — is refused at any time: neither relayed nor recorded
//!   nor answered. The first refusal of each source is an event, later ones are only counted
//!   ([`Latch::refusals`]), so a flood cannot turn into one log row per packet.
//!
//! There is no learning window: the first packet from a peer's IP is always learnt, however
//! late it comes (a silent caller, silence suppression), and later moves need the silence
//! above, at any time of the call. What a window bounded — a stranger taking the audio — is
//! already excluded by the IP rule.
//!
//! Pure: the shell passes the time of each packet. Each decision is a few comparisons and
//! allocates nothing once a source is known.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The latch's tunables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatchConfig {
    /// A latched source silent this long may give way to a new one on the peer's IPs (its NAT
    /// binding changed); before that, a second source is refused.
    pub relatch_after: Duration,
}

impl Default for LatchConfig {
    fn default() -> Self {
        LatchConfig {
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
    /// The SDP address speaks again after another source had been latched.
    BackToSdp,
    /// Learnt: the peer's IP on another port than its SDP says, nothing latched yet.
    Nat,
    /// The peer's IP on a new port or address, after the latched `previous` source had been
    /// silent for `silent_for`.
    Relatch {
        previous: SocketAddr,
        silent_for: Duration,
    },
}

/// Why a packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its IP is none of the peer's: not the latched source's, the signalling IP or the SDP's.
    UnknownSource,
    /// The peer's IP, but the SDP address is sending.
    SdpAddressSpeaks,
    /// The peer's IP, but another latched source is still sending.
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

/// The source a leg takes packets from and sends to.
#[derive(Debug, Clone, Copy)]
struct Latched {
    source: SocketAddr,
    /// Its last packet.
    last: Instant,
}

/// The latch of one leg.
#[derive(Debug, Clone)]
pub struct Latch {
    config: LatchConfig,
    /// Where the peer's SDP says it is.
    sdp: Option<SocketAddr>,
    /// Where the peer's SIP comes from.
    signalling_ip: Option<IpAddr>,
    /// What the leg takes and sends to; `None` until a source is latched, and after the SDP
    /// address moved.
    latched: Option<Latched>,
    /// Whether anything came from the SDP address since it was set (its first packet is an
    /// event even when that address had been learnt before the SDP named it).
    sdp_heard: bool,
    refusals: Refusals,
}

impl Latch {
    /// A latch for a peer whose SIP comes from `signalling_ip` (when known). Until
    /// [`Latch::set_remote`], only that IP can be learnt.
    pub fn new(config: LatchConfig, signalling_ip: Option<IpAddr>) -> Latch {
        Latch {
            config,
            sdp: None,
            signalling_ip,
            latched: None,
            sdp_heard: false,
            refusals: Refusals::default(),
        }
    }

    /// The peer's SDP address from an offer or answer (also after a re-INVITE). A changed
    /// address means the peer moved: the latched source is forgotten, and the next packet
    /// from one of the peer's IPs is learnt at once.
    pub fn set_remote(&mut self, sdp: Option<SocketAddr>) {
        if sdp == self.sdp && self.sdp.is_some() {
            return;
        }
        let first = self.sdp.is_none();
        self.sdp = sdp;
        self.sdp_heard = false;
        // A source learnt before the first SDP (early packets from the signalling IP) stays
        // until the SDP address speaks; after a real move it is stale.
        if !first {
            self.latched = None;
        }
    }

    /// The peer's SIP now comes from `ip` (an in-dialog request from another address: a
    /// handover). RTP from it may be learnt from now on; the latched source stays until it
    /// falls silent.
    pub fn set_signalling_ip(&mut self, ip: IpAddr) {
        self.signalling_ip = Some(ip);
    }

    /// Where to send: the latched source, else the SDP address.
    pub fn target(&self) -> Option<SocketAddr> {
        self.latched.map(|l| l.source).or(self.sdp)
    }

    /// What was refused so far.
    pub fn refusals(&self) -> &Refusals {
        &self.refusals
    }

    /// Decides on one packet from `from`, received at `now`. Returns at most one event: a
    /// (re)latch or the first refusal of a source.
    pub fn on_packet(&mut self, from: SocketAddr, now: Instant) -> (Verdict, Option<LatchEvent>) {
        // Nearly every packet: the latched source again (an SDP address's first packet is an
        // event even when it was latched before the SDP named it).
        if let Some(latched) = self.latched.as_mut()
            && latched.source == from
            && (self.sdp_heard || Some(from) != self.sdp)
        {
            latched.last = now;
            return (Verdict::Accept, None);
        }
        let current = self.latched.map(|l| l.source);
        if Some(from) == self.sdp {
            let back = current.is_some_and(|c| c != from);
            let event = (!self.sdp_heard || back).then_some(LatchEvent::Latched {
                source: from,
                reason: if back {
                    LatchReason::BackToSdp
                } else {
                    LatchReason::Sdp
                },
            });
            self.sdp_heard = true;
            self.latched = Some(Latched {
                source: from,
                last: now,
            });
            return (Verdict::Accept, event);
        }
        match self.may_latch(from, now) {
            Ok(reason) => {
                self.latched = Some(Latched {
                    source: from,
                    last: now,
                });
                let event = LatchEvent::Latched {
                    source: from,
                    reason,
                };
                (Verdict::Accept, Some(event))
            }
            Err(why) => (Verdict::Refuse, self.refuse(from, why)),
        }
    }

    /// Whether `from` (neither the SDP address nor the latched source) may be latched now.
    fn may_latch(&self, from: SocketAddr, now: Instant) -> Result<LatchReason, Refusal> {
        let ip = from.ip();
        let peers = Some(ip) == self.signalling_ip
            || self.sdp.is_some_and(|sdp| sdp.ip() == ip)
            || self.latched.is_some_and(|l| l.source.ip() == ip);
        if !peers {
            return Err(Refusal::UnknownSource);
        }
        let Some(latched) = self.latched else {
            return Ok(LatchReason::Nat);
        };
        let silent_for = now.saturating_duration_since(latched.last);
        if silent_for < self.config.relatch_after {
            return Err(if Some(latched.source) == self.sdp {
                Refusal::SdpAddressSpeaks
            } else {
                Refusal::OtherSourceActive
            });
        }
        Ok(LatchReason::Relatch {
            previous: latched.source,
            silent_for,
        })
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
        match self {
            LatchReason::Sdp => f.write_str("the address in the peer's SDP"),
            LatchReason::BackToSdp => f.write_str("back to the address in the peer's SDP"),
            LatchReason::Nat => {
                f.write_str("learnt (NAT): the peer's IP on another port, nothing latched before")
            }
            LatchReason::Relatch {
                previous,
                silent_for,
            } => write!(
                f,
                "re-latched (NAT moved): the peer's IP, after {previous} was silent for {} ms",
                silent_for.as_millis()
            ),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::UnknownSource => "none of the peer's IPs (latched source, signalling, SDP)",
            Refusal::SdpAddressSpeaks => "the peer's IP, but its SDP address is sending",
            Refusal::OtherSourceActive => "the peer's IP, but the latched source is sending",
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
        );
        latch.set_remote(Some(addr(sdp)));
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
    fn a_nated_peer_is_learnt_from_its_signalling_ip() {
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
        // It stays, however long the call.
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
    fn while_the_sdp_address_speaks_no_other_port_is_taken() {
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
        // The first goes quiet (its NAT binding changed): the second takes over.
        assert_eq!(
            latch.on_packet(second, t.at(700)),
            (
                Verdict::Accept,
                Some(LatchEvent::Latched {
                    source: second,
                    reason: LatchReason::Relatch {
                        previous: first,
                        silent_for: Duration::from_millis(700)
                    }
                })
            )
        );
        assert_eq!(latch.target(), Some(second));
        assert_eq!(latch.on_packet(first, t.at(720)).0, Verdict::Refuse);
    }

    #[test]
    fn before_any_sdp_only_the_signalling_ip_is_learnt() {
        let t = Clock(Instant::now());
        let mut latch = Latch::new(
            LatchConfig::default(),
            Some(SIGNALLING.parse().expect("ip")),
        );
        assert_eq!(latch.target(), None);
        assert_eq!(
            latch.on_packet(addr("203.0.113.9:1"), t.at(5)).0,
            Verdict::Refuse
        );
        let early = addr("198.51.100.7:4000");
        assert_eq!(latch.on_packet(early, t.at(10)).0, Verdict::Accept);
        // The answer names that very address: from now on it is taken as the SDP address.
        latch.set_remote(Some(early));
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
    fn a_moved_sdp_address_forgets_the_learnt_source() {
        let (mut latch, t) = latch_with_sdp("192.168.1.20:4000");
        let nat = addr("198.51.100.7:61000");
        assert_eq!(latch.on_packet(nat, t.at(0)).0, Verdict::Accept);
        // A re-INVITE much later moves the media.
        latch.set_remote(Some(addr("192.168.1.30:5000")));
        assert_eq!(latch.target(), Some(addr("192.168.1.30:5000")));
        let new_nat = addr("198.51.100.7:63000");
        assert_eq!(latch.on_packet(new_nat, t.at(60_100)).0, Verdict::Accept);
        // The same SDP again (a session refresh) changes nothing.
        latch.set_remote(Some(addr("192.168.1.30:5000")));
        assert_eq!(latch.target(), Some(new_nat));
    }

    #[test]
    fn without_a_signalling_ip_only_the_sdp_ip_counts() {
        let t = Clock(Instant::now());
        let mut latch = Latch::new(LatchConfig::default(), None);
        latch.set_remote(Some(addr("192.0.2.1:4000")));
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

    /// A NAT binding that moves long after the call started (CGNAT, a Wi-Fi/LTE handover
    /// behind the same public IP): the new port takes over once the old one has been silent
    /// for `relatch_after`, and not earlier.
    #[test]
    fn late_in_the_call_a_new_port_on_the_same_ip_relatches_after_500_ms_of_silence() {
        let (mut latch, t) = latch_with_sdp("192.168.1.20:4000");
        let old = addr("198.51.100.7:61000");
        let new = addr("198.51.100.7:61888");
        for ms in (0..=600_000).step_by(20) {
            assert_eq!(latch.on_packet(old, t.at(ms)).0, Verdict::Accept);
        }
        // The binding moved at 600 s: the old port is silent from now on.
        assert_eq!(
            latch.on_packet(new, t.at(600_020)),
            (
                Verdict::Refuse,
                Some(LatchEvent::Refused {
                    source: new,
                    why: Refusal::OtherSourceActive
                })
            )
        );
        for ms in (600_040..600_500).step_by(20) {
            assert_eq!(latch.on_packet(new, t.at(ms)), (Verdict::Refuse, None));
        }
        assert_eq!(latch.target(), Some(old));
        assert_eq!(
            latch.on_packet(new, t.at(600_500)),
            (
                Verdict::Accept,
                Some(LatchEvent::Latched {
                    source: new,
                    reason: LatchReason::Relatch {
                        previous: old,
                        silent_for: Duration::from_millis(500)
                    }
                })
            )
        );
        assert_eq!(latch.target(), Some(new));
        assert_eq!(latch.on_packet(new, t.at(600_520)), (Verdict::Accept, None));
        // 24 packets were refused during the half second, as one count.
        assert_eq!(latch.refusals().total_packets(), 24);
    }

    /// A stranger on another IP is refused whenever it sends, also while the caller is silent
    /// for minutes: only the peer's IPs ever re-latch.
    #[test]
    fn another_ip_never_relatches_however_long_the_caller_is_silent() {
        let (mut latch, t) = latch_with_sdp("192.168.1.20:4000");
        let caller = addr("198.51.100.7:61000");
        assert_eq!(latch.on_packet(caller, t.at(0)).0, Verdict::Accept);
        let stranger = addr("203.0.113.9:61000");
        let mut events = Vec::new();
        for ms in (1_000..300_000).step_by(20) {
            let (v, e) = latch.on_packet(stranger, t.at(ms));
            assert_eq!(v, Verdict::Refuse, "at {ms} ms");
            events.extend(e);
        }
        assert_eq!(
            events,
            vec![LatchEvent::Refused {
                source: stranger,
                why: Refusal::UnknownSource
            }]
        );
        assert_eq!(latch.target(), Some(caller));
        assert_eq!(
            latch.on_packet(caller, t.at(300_000)),
            (Verdict::Accept, None)
        );
    }

    /// A NATed caller whose first packet comes 8 s after the answer (it said nothing, or its
    /// phone suppresses silence) is learnt all the same.
    #[test]
    fn a_late_first_packet_from_a_nated_caller_is_learnt() {
        let (mut latch, t) = latch_with_sdp("192.168.1.20:4000");
        let nat = addr("198.51.100.7:61000");
        assert_eq!(
            latch.on_packet(nat, t.at(8_000)),
            (
                Verdict::Accept,
                Some(LatchEvent::Latched {
                    source: nat,
                    reason: LatchReason::Nat
                })
            )
        );
        assert_eq!(latch.target(), Some(nat));
    }

    /// The SDP address (a phone with a public address) falls silent and its IP sends from a
    /// new port: re-latched after the silence; the SDP address wins again when it speaks.
    #[test]
    fn a_silent_sdp_address_gives_way_to_its_ip_on_a_new_port_and_wins_back() {
        let (mut latch, t) = latch_with_sdp("198.51.100.7:4000");
        let sdp = addr("198.51.100.7:4000");
        let moved = addr("198.51.100.7:4100");
        assert_eq!(latch.on_packet(sdp, t.at(0)).0, Verdict::Accept);
        assert_eq!(latch.on_packet(moved, t.at(90_100)).0, Verdict::Accept);
        assert_eq!(latch.target(), Some(moved));
        assert_eq!(
            latch.on_packet(sdp, t.at(90_200)),
            (
                Verdict::Accept,
                Some(LatchEvent::Latched {
                    source: sdp,
                    reason: LatchReason::BackToSdp
                })
            )
        );
        assert_eq!(latch.target(), Some(sdp));
    }

    /// A handover to another network: the caller's SIP now comes from a new IP, and so does its
    /// RTP once the old path is silent. The old IP is nobody's after that.
    #[test]
    fn a_new_signalling_ip_is_learnt_after_the_old_source_falls_silent() {
        let (mut latch, t) = latch_with_sdp("192.168.1.20:4000");
        let wifi = addr("198.51.100.7:61000");
        let lte = addr("100.64.3.9:40000");
        assert_eq!(latch.on_packet(wifi, t.at(0)).0, Verdict::Accept);
        // Before the engine saw SIP from the new IP, its RTP is a stranger's.
        assert_eq!(
            latch.on_packet(lte, t.at(30_000)),
            (
                Verdict::Refuse,
                Some(LatchEvent::Refused {
                    source: lte,
                    why: Refusal::UnknownSource
                })
            )
        );
        latch.set_signalling_ip(lte.ip());
        assert_eq!(latch.on_packet(lte, t.at(30_020)).0, Verdict::Accept);
        assert_eq!(latch.target(), Some(lte));
        // The Wi-Fi IP is neither the latched one nor the signalling IP any more.
        assert_eq!(latch.on_packet(wifi, t.at(40_000)).0, Verdict::Refuse);
        assert_eq!(
            latch.on_packet(addr("198.51.100.7:61002"), t.at(40_020)).0,
            Verdict::Refuse
        );
        assert_eq!(latch.target(), Some(lte));
    }

    /// The same SDP again (a session refresh, a re-INVITE after a handover) keeps what was
    /// latched, and a moved port on its IP still re-latches after the silence.
    #[test]
    fn an_unchanged_sdp_keeps_the_source_and_later_moves_still_relatch() {
        let (mut latch, t) = latch_with_sdp("192.168.1.20:4000");
        let nat = addr("198.51.100.7:61000");
        assert_eq!(latch.on_packet(nat, t.at(0)).0, Verdict::Accept);
        latch.set_remote(Some(addr("192.168.1.20:4000")));
        assert_eq!(latch.target(), Some(nat));
        assert_eq!(latch.on_packet(nat, t.at(20)), (Verdict::Accept, None));
        let moved = addr("198.51.100.7:62000");
        assert_eq!(latch.on_packet(moved, t.at(100_000)).0, Verdict::Accept);
        assert_eq!(latch.target(), Some(moved));
    }
}
