//! RFC 4733 telephone-events.
//!
//! An event is identified by its RTP timestamp (RFC 4733 §2.5.1.1): every packet of one key
//! press — the growing-duration updates and the three redundant end packets — carries the
//! timestamp of the event's start. We report a key press once, on the first packet we see
//! for a new timestamp, so a digit is not lost when all end packets are lost, and we never
//! look at payload sizes: only packets with the negotiated payload type are events.

use std::time::{Duration, Instant};

use super::{Digit, DtmfEvent, DtmfSource};
use crate::rtp::{PayloadType, RtpTimestamp, RtpView, Ssrc};

/// The telephone-event clock we negotiate (`telephone-event/8000`).
const EVENT_CLOCK_HZ: u64 = 8000;

/// Extra samples tolerated between the end of an un-ended event and a new timestamp for the
/// same digit before we call it a new key press (one 20 ms packet).
const CONTINUATION_SLACK_SAMPLES: i64 = 160;

/// One telephone-event payload (RFC 4733 §2.3): the first four bytes of the RTP payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0–15 are DTMF keys, 16 is flash.
    pub code: u8,
    /// E bit: this is (a retransmission of) the final packet of the event.
    pub end: bool,
    /// Power level in −dBm0 (0–63).
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the first event of a payload; `None` if it is shorter than four bytes.
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        let [code, flags, high, low] = *payload.first_chunk::<4>()?;
        Some(TelephoneEvent {
            code,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([high, low]),
        })
    }

    /// Duration as time, at the 8 kHz event clock.
    pub fn duration_time(&self) -> Duration {
        Duration::from_micros(u64::from(self.duration) * 1_000_000 / EVENT_CLOCK_HZ)
    }
}

/// The event we last saw on the stream.
#[derive(Debug, Clone, Copy)]
struct CurrentEvent {
    ssrc: Ssrc,
    timestamp: RtpTimestamp,
    code: u8,
    ended: bool,
    longest_duration: u16,
}

/// Turns one RTP stream's telephone-event packets into key presses.
#[derive(Debug, Clone)]
pub struct TelephoneEventDecoder {
    payload_type: PayloadType,
    current: Option<CurrentEvent>,
}

impl TelephoneEventDecoder {
    /// A decoder for the payload type negotiated for `telephone-event` in SDP.
    pub fn new(payload_type: PayloadType) -> Self {
        TelephoneEventDecoder {
            payload_type,
            current: None,
        }
    }

    /// The payload type this decoder listens to.
    pub fn payload_type(&self) -> PayloadType {
        self.payload_type
    }

    /// Feeds one received packet; returns a key press the first time an event is seen.
    ///
    /// Packets of other payload types (audio) are ignored, as are later packets and
    /// retransmitted end packets of an event already reported, packets of older events that
    /// arrive late, flash (16) and other non-DTMF events.
    pub fn on_packet(&mut self, packet: &RtpView<'_>, arrival: Instant) -> Option<DtmfEvent> {
        if packet.payload_type != self.payload_type {
            return None;
        }
        let event = TelephoneEvent::parse(packet.payload)?;

        if let Some(current) = self.current.as_mut()
            && current.ssrc == packet.ssrc
        {
            let ahead = packet.timestamp.since(current.timestamp);
            if ahead == 0 {
                current.ended |= event.end;
                current.longest_duration = current.longest_duration.max(event.duration);
                return None;
            }
            if ahead < 0 {
                // A late packet of an earlier event.
                return None;
            }
            // A key held longer than the 16-bit duration field allows continues under a new
            // timestamp (RFC 4733 §2.5.1.3); some senders also restamp every packet. Either
            // way it is the same key press, not a new one.
            let continues = !current.ended
                && current.code == event.code
                && ahead <= i64::from(current.longest_duration) + CONTINUATION_SLACK_SAMPLES;
            *current = CurrentEvent {
                ssrc: packet.ssrc,
                timestamp: packet.timestamp,
                code: event.code,
                ended: event.end,
                longest_duration: event.duration,
            };
            if continues {
                return None;
            }
        } else {
            self.current = Some(CurrentEvent {
                ssrc: packet.ssrc,
                timestamp: packet.timestamp,
                code: event.code,
                ended: event.end,
                longest_duration: event.duration,
            });
        }

        let digit = Digit::from_event_code(event.code)?;
        Some(DtmfEvent {
            digit,
            source: DtmfSource::Rfc4733,
            at: arrival,
            // Only an end packet knows the final duration.
            duration: event.end.then(|| event.duration_time()),
        })
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests start virtual time from one real Instant
mod tests {
    use super::*;
    use crate::rtp::{RtpHeader, SequenceNumber};
    use proptest::prelude::*;

    const TE: PayloadType = PayloadType(101);

    struct Sender {
        buffer: [u8; 16],
        len: usize,
    }

    impl Sender {
        fn new() -> Self {
            Sender {
                buffer: [0; 16],
                len: 0,
            }
        }

        #[allow(clippy::too_many_arguments)]
        fn packet(
            &mut self,
            pt: PayloadType,
            ssrc: u32,
            seq: u16,
            ts: u32,
            code: u8,
            end: bool,
            duration: u16,
        ) -> RtpView<'_> {
            let header = RtpHeader {
                marker: false,
                payload_type: pt,
                sequence: SequenceNumber(seq),
                timestamp: RtpTimestamp(ts),
                ssrc: Ssrc(ssrc),
            };
            let flags = if end { 0x8A } else { 0x0A };
            let [high, low] = duration.to_be_bytes();
            self.len = header
                .write(&[code, flags, high, low], &mut self.buffer)
                .expect("fits");
            RtpView::parse(&self.buffer[..self.len]).expect("parses")
        }
    }

    /// One key press as a sender emits it: updates every 20 ms, then three end packets.
    fn key_press(first_seq: u16, ts: u32, code: u8) -> Vec<(u16, u32, u8, bool, u16)> {
        let mut packets = Vec::new();
        let mut seq = first_seq;
        for step in 0..7u16 {
            packets.push((seq, ts, code, false, step * 160));
            seq = seq.wrapping_add(1);
        }
        for _ in 0..3 {
            packets.push((seq, ts, code, true, 1120));
        }
        packets
    }

    fn run(
        decoder: &mut TelephoneEventDecoder,
        ssrc: u32,
        packets: &[(u16, u32, u8, bool, u16)],
        start: Instant,
    ) -> Vec<DtmfEvent> {
        let mut sender = Sender::new();
        let mut events = Vec::new();
        for (i, &(seq, ts, code, end, duration)) in packets.iter().enumerate() {
            let view = sender.packet(TE, ssrc, seq, ts, code, end, duration);
            let at = start + Duration::from_millis(20 * i as u64);
            events.extend(decoder.on_packet(&view, at));
        }
        events
    }

    #[test]
    fn one_key_press_is_reported_once_on_its_first_packet() {
        let start = Instant::now();
        let mut decoder = TelephoneEventDecoder::new(TE);
        let events = run(&mut decoder, 1, &key_press(100, 8000, 5), start);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].digit, Digit::Five);
        assert_eq!(events[0].source, DtmfSource::Rfc4733);
        assert_eq!(events[0].at, start);
        assert_eq!(events[0].duration, None);
    }

    #[test]
    fn digit_survives_loss_of_every_packet_but_one_end_packet() {
        let start = Instant::now();
        let mut decoder = TelephoneEventDecoder::new(TE);
        let packets = key_press(100, 8000, 9);
        let events = run(&mut decoder, 1, &packets[8..9], start);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].digit, Digit::Nine);
        assert_eq!(events[0].duration, Some(Duration::from_millis(140)));
    }

    #[test]
    fn digit_survives_loss_of_all_end_packets() {
        let start = Instant::now();
        let mut decoder = TelephoneEventDecoder::new(TE);
        let mut packets = key_press(100, 8000, 1);
        packets.truncate(7);
        packets.extend(key_press(107, 8000 + 4000, 2));
        let events = run(&mut decoder, 1, &packets, start);
        let digits: Vec<char> = events.iter().map(|e| e.digit.as_char()).collect();
        assert_eq!(digits, vec!['1', '2']);
    }

    #[test]
    fn same_digit_twice_is_two_presses_across_sequence_wrap() {
        let start = Instant::now();
        let mut decoder = TelephoneEventDecoder::new(TE);
        let mut packets = key_press(65530, 4_294_960_000, 3);
        // The second press starts after a pause, with a wrapped timestamp and sequence.
        packets.extend(key_press(4, 4_294_960_000u32.wrapping_add(8000), 3));
        let events = run(&mut decoder, 1, &packets, start);
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e.digit == Digit::Three));
    }

    #[test]
    fn audio_packets_are_never_taken_for_events_even_with_four_byte_payloads() {
        let start = Instant::now();
        let mut decoder = TelephoneEventDecoder::new(TE);
        let mut sender = Sender::new();
        let audio = sender.packet(PayloadType(8), 1, 1, 160, 5, false, 0);
        assert_eq!(decoder.on_packet(&audio, start), None);
        // And an event under a different dynamic payload type than negotiated.
        let other = sender.packet(PayloadType(96), 1, 2, 320, 5, false, 0);
        assert_eq!(decoder.on_packet(&other, start), None);
    }

    #[test]
    fn a_late_packet_of_the_previous_event_is_ignored() {
        let start = Instant::now();
        let mut decoder = TelephoneEventDecoder::new(TE);
        let mut packets = key_press(100, 8000, 4);
        packets.extend(key_press(110, 16000, 6));
        // A delayed end packet of the '4' arrives during the '6'.
        packets.insert(12, (109, 8000, 4, true, 1120));
        let events = run(&mut decoder, 1, &packets, start);
        let digits: Vec<char> = events.iter().map(|e| e.digit.as_char()).collect();
        assert_eq!(digits, vec!['4', '6']);
    }

    #[test]
    fn a_new_ssrc_starts_a_new_event_even_with_the_same_timestamp() {
        let start = Instant::now();
        let mut decoder = TelephoneEventDecoder::new(TE);
        let mut events = run(&mut decoder, 1, &key_press(100, 8000, 7), start);
        events.extend(run(&mut decoder, 2, &key_press(100, 8000, 7), start));
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn a_long_press_continued_under_a_new_timestamp_is_one_press() {
        let start = Instant::now();
        let mut decoder = TelephoneEventDecoder::new(TE);
        let packets = [
            (1, 0, 8, false, 60000),
            (2, 0, 8, false, 65535),
            // RFC 4733 §2.5.1.3: the next segment starts where the first one ended.
            (3, 65535, 8, false, 160),
            (4, 65535, 8, true, 800),
        ];
        let events = run(&mut decoder, 1, &packets, start);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].digit, Digit::Eight);
    }

    #[test]
    fn flash_and_short_payloads_are_not_digits() {
        let start = Instant::now();
        let mut decoder = TelephoneEventDecoder::new(TE);
        let events = run(&mut decoder, 1, &[(1, 0, 16, false, 0)], start);
        assert!(events.is_empty());
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), None);
    }

    /// Reads the RTP payloads of a classic pcap (Ethernet / IPv4 / UDP).
    fn rtp_payloads_from_pcap(pcap: &[u8]) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        let little_endian = pcap.get(..4) == Some(&[0xD4, 0xC3, 0xB2, 0xA1][..]);
        let read_u32 = |at: usize| -> Option<usize> {
            let bytes: [u8; 4] = pcap.get(at..at + 4)?.try_into().ok()?;
            let value = if little_endian {
                u32::from_le_bytes(bytes)
            } else {
                u32::from_be_bytes(bytes)
            };
            usize::try_from(value).ok()
        };
        let mut offset = 24;
        while let Some(captured) = read_u32(offset + 8) {
            let Some(frame) = pcap.get(offset + 16..offset + 16 + captured) else {
                break;
            };
            offset += 16 + captured;
            // Ethernet II, IPv4 only.
            if frame.get(12..14) != Some(&[0x08, 0x00][..]) {
                continue;
            }
            let Some(ip) = frame.get(14..) else { continue };
            let header_len = usize::from(ip.first().copied().unwrap_or(0) & 0x0F) * 4;
            if ip.get(9) != Some(&17) {
                continue;
            }
            if let Some(udp_payload) = ip.get(header_len + 8..) {
                packets.push(udp_payload.to_vec());
            }
        }
        packets
    }

    #[test]
    fn sipp_dtmf_2833_1_pcap_gives_exactly_one_digit_1() {
        let path = "/usr/share/sip-tester/dtmf_2833_1.pcap";
        let Ok(pcap) = std::fs::read(path) else {
            eprintln!("skipped: {path} not installed (Debian package sip-tester)");
            return;
        };
        let start = Instant::now();
        let mut decoder = TelephoneEventDecoder::new(TE);
        let payloads = rtp_payloads_from_pcap(&pcap);
        assert_eq!(
            payloads.len(),
            10,
            "the capture holds 7 updates + 3 end packets"
        );
        let mut events = Vec::new();
        for (i, payload) in payloads.iter().enumerate() {
            let view = RtpView::parse(payload).expect("SIPp's packets are RTP");
            events.extend(decoder.on_packet(&view, start + Duration::from_millis(20 * i as u64)));
        }
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].digit, Digit::One);
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = TelephoneEvent::parse(&bytes);
        }

        /// Whatever order, duplication or loss, one event timestamp yields at most one digit.
        #[test]
        fn one_timestamp_never_yields_two_digits(
            order in proptest::collection::vec((0u16..10, any::<bool>(), any::<u16>()), 1..30)
        ) {
            let start = Instant::now();
            let mut decoder = TelephoneEventDecoder::new(TE);
            let packets: Vec<_> = order
                .iter()
                .map(|&(seq, end, duration)| (seq, 5000u32, 5u8, end, duration))
                .collect();
            let events = run(&mut decoder, 1, &packets, start);
            prop_assert_eq!(events.len(), 1);
        }
    }
}
