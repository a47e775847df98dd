//! RTP (RFC 3550) without allocation: a borrowed header view for received packets, a writer
//! that fills a caller-provided buffer, and the sequence/timestamp continuity of one
//! outgoing stream.

use thiserror::Error;

/// RTP payload type (7 bits on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PayloadType(pub u8);

/// Synchronisation source: identifies one RTP stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ssrc(pub u32);

/// RTP sequence number (wraps at 2^16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SequenceNumber(pub u16);

/// RTP media timestamp, in samples of the payload's clock (8 kHz for G.711; wraps at 2^32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RtpTimestamp(pub u32);

impl SequenceNumber {
    /// The next sequence number, wrapping.
    pub const fn next(self) -> SequenceNumber {
        SequenceNumber(self.0.wrapping_add(1))
    }
}

impl RtpTimestamp {
    /// This timestamp advanced by `samples`, wrapping.
    pub const fn add(self, samples: u32) -> RtpTimestamp {
        RtpTimestamp(self.0.wrapping_add(samples))
    }

    /// Signed distance `self − earlier` in samples, valid while the two are within 2^31 samples
    /// (three days at 8 kHz) of each other.
    pub const fn since(self, earlier: RtpTimestamp) -> i64 {
        self.0.wrapping_sub(earlier.0) as i32 as i64
    }
}

/// Length of the fixed RTP header (no CSRCs, no extension).
pub const FIXED_HEADER_LEN: usize = 12;

/// Why a datagram is not an RTP packet we can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpError {
    /// Shorter than the fixed header plus the CSRCs and extension it announces.
    #[error("RTP packet truncated: {needed} bytes needed, {len} present")]
    Truncated {
        /// Bytes the header announces.
        needed: usize,
        /// Bytes received.
        len: usize,
    },
    /// Version field is not 2 (STUN, DTLS or garbage on the media port).
    #[error("not RTP version 2 (version field {0})")]
    BadVersion(u8),
    /// The padding count is zero or longer than the payload.
    #[error("RTP padding of {padding} bytes does not fit a {available}-byte payload")]
    BadPadding {
        /// Padding length from the last byte.
        padding: usize,
        /// Bytes after the header.
        available: usize,
    },
    /// Payload types 72–76 with the marker set are RTCP SR/RR/SDES/BYE/APP multiplexed on the
    /// RTP port (RFC 5761 §4).
    #[error("RTCP packet (type {0}) on the RTP port")]
    Rtcp(u8),
    /// The output buffer cannot hold header plus payload.
    #[error("output buffer of {available} bytes is too small for {needed}")]
    BufferTooSmall {
        /// Bytes the packet needs.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
}

/// A received RTP packet, borrowed from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpView<'a> {
    /// Marker bit: first packet of a talkspurt, or the start of a DTMF event.
    pub marker: bool,
    /// Payload type.
    pub payload_type: PayloadType,
    /// Sequence number.
    pub sequence: SequenceNumber,
    /// Media timestamp.
    pub timestamp: RtpTimestamp,
    /// Synchronisation source.
    pub ssrc: Ssrc,
    /// Whether padding was present (and removed from `payload`).
    pub padded: bool,
    csrc_bytes: &'a [u8],
    extension: Option<HeaderExtension<'a>>,
    /// The payload, without padding.
    pub payload: &'a [u8],
}

/// A header extension (RFC 3550 §5.3.1), kept as raw bytes: we only need to skip it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderExtension<'a> {
    /// The profile-defined 16 bits (0xBEDE for RFC 8285 one-byte headers).
    pub profile: u16,
    /// The extension data, a multiple of four bytes.
    pub data: &'a [u8],
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([
        *b.first()?,
        *b.get(1)?,
        *b.get(2)?,
        *b.get(3)?,
    ]))
}

impl<'a> RtpView<'a> {
    /// Parses a datagram. Total: any byte string gives `Ok` or `Err`.
    pub fn parse(packet: &'a [u8]) -> Result<RtpView<'a>, RtpError> {
        let truncated = |needed: usize| RtpError::Truncated {
            needed,
            len: packet.len(),
        };
        let (Some(&first), Some(&second)) = (packet.first(), packet.get(1)) else {
            return Err(truncated(FIXED_HEADER_LEN));
        };
        let version = first >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        if packet.len() < FIXED_HEADER_LEN {
            return Err(truncated(FIXED_HEADER_LEN));
        }
        let marker = second & 0x80 != 0;
        let payload_type = second & 0x7F;
        if marker && (72..=76).contains(&payload_type) {
            return Err(RtpError::Rtcp(second));
        }
        let padded = first & 0x20 != 0;
        let has_extension = first & 0x10 != 0;
        let csrc_count = usize::from(first & 0x0F);

        let sequence = read_u16(packet, 2).ok_or(truncated(FIXED_HEADER_LEN))?;
        let timestamp = read_u32(packet, 4).ok_or(truncated(FIXED_HEADER_LEN))?;
        let ssrc = read_u32(packet, 8).ok_or(truncated(FIXED_HEADER_LEN))?;

        let csrc_end = FIXED_HEADER_LEN + 4 * csrc_count;
        let csrc_bytes = packet
            .get(FIXED_HEADER_LEN..csrc_end)
            .ok_or(truncated(csrc_end))?;

        let mut offset = csrc_end;
        let extension = if has_extension {
            let profile = read_u16(packet, offset).ok_or(truncated(offset + 4))?;
            let words = read_u16(packet, offset + 2).ok_or(truncated(offset + 4))?;
            let data_start = offset + 4;
            let data_end = data_start + 4 * usize::from(words);
            let data = packet
                .get(data_start..data_end)
                .ok_or(truncated(data_end))?;
            offset = data_end;
            Some(HeaderExtension { profile, data })
        } else {
            None
        };

        let after_header = packet.get(offset..).ok_or(truncated(offset))?;
        let payload = if padded {
            let padding = usize::from(after_header.last().copied().unwrap_or(0));
            if padding == 0 || padding > after_header.len() {
                return Err(RtpError::BadPadding {
                    padding,
                    available: after_header.len(),
                });
            }
            after_header
                .get(..after_header.len() - padding)
                .unwrap_or_default()
        } else {
            after_header
        };

        Ok(RtpView {
            marker,
            payload_type: PayloadType(payload_type),
            sequence: SequenceNumber(sequence),
            timestamp: RtpTimestamp(timestamp),
            ssrc: Ssrc(ssrc),
            padded,
            csrc_bytes,
            extension,
            payload,
        })
    }

    /// Contributing sources (set by mixers), in packet order.
    pub fn csrcs(&self) -> impl Iterator<Item = Ssrc> + 'a {
        self.csrc_bytes.chunks_exact(4).filter_map(|chunk| {
            let bytes: [u8; 4] = chunk.try_into().ok()?;
            Some(Ssrc(u32::from_be_bytes(bytes)))
        })
    }

    /// Number of contributing sources.
    pub fn csrc_count(&self) -> usize {
        self.csrc_bytes.len() / 4
    }

    /// The header extension, if the X bit was set.
    pub fn extension(&self) -> Option<HeaderExtension<'a>> {
        self.extension
    }
}

/// The header of a packet we send. We always originate our own streams (the gateway is a
/// B2BUA), so there are no CSRCs, no extension and no padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Marker bit.
    pub marker: bool,
    /// Payload type.
    pub payload_type: PayloadType,
    /// Sequence number.
    pub sequence: SequenceNumber,
    /// Media timestamp.
    pub timestamp: RtpTimestamp,
    /// Synchronisation source.
    pub ssrc: Ssrc,
}

impl RtpHeader {
    /// Writes the 12-byte header into the start of `out`.
    pub fn write_header(&self, out: &mut [u8]) -> Result<usize, RtpError> {
        let available = out.len();
        let header = out
            .get_mut(..FIXED_HEADER_LEN)
            .ok_or(RtpError::BufferTooSmall {
                needed: FIXED_HEADER_LEN,
                available,
            })?;
        let seq = self.sequence.0.to_be_bytes();
        let ts = self.timestamp.0.to_be_bytes();
        let ssrc = self.ssrc.0.to_be_bytes();
        let second = (u8::from(self.marker) << 7) | (self.payload_type.0 & 0x7F);
        let bytes = [
            0x80, second, seq[0], seq[1], ts[0], ts[1], ts[2], ts[3], ssrc[0], ssrc[1], ssrc[2],
            ssrc[3],
        ];
        header.copy_from_slice(&bytes);
        Ok(FIXED_HEADER_LEN)
    }

    /// Writes header and payload into `out`; returns the packet length.
    pub fn write(&self, payload: &[u8], out: &mut [u8]) -> Result<usize, RtpError> {
        let needed = FIXED_HEADER_LEN + payload.len();
        let available = out.len();
        let packet = out
            .get_mut(..needed)
            .ok_or(RtpError::BufferTooSmall { needed, available })?;
        self.write_header(packet)?;
        if let Some(body) = packet.get_mut(FIXED_HEADER_LEN..) {
            body.copy_from_slice(payload);
        }
        Ok(needed)
    }
}

/// Sequence number and timestamp continuity for one stream we originate.
///
/// Whatever feeds the stream — prompts, silence, later the agency's relayed audio — goes
/// through one sequencer, so the receiver sees one unbroken stream: sequence numbers step by
/// one per packet and timestamps by the samples each packet covers (plus any gap the caller
/// declares). Start values are random and passed in (RFC 3550 §5.1), since this crate has no
/// random source.
#[derive(Debug, Clone)]
pub struct RtpSequencer {
    ssrc: Ssrc,
    payload_type: PayloadType,
    next_sequence: SequenceNumber,
    next_timestamp: RtpTimestamp,
}

impl RtpSequencer {
    /// A sequencer whose first packet carries `first_sequence` and `first_timestamp`.
    pub fn new(
        ssrc: Ssrc,
        payload_type: PayloadType,
        first_sequence: SequenceNumber,
        first_timestamp: RtpTimestamp,
    ) -> Self {
        RtpSequencer {
            ssrc,
            payload_type,
            next_sequence: first_sequence,
            next_timestamp: first_timestamp,
        }
    }

    /// Header for the next packet, covering `samples` samples; advances the stream.
    pub fn next_header(&mut self, samples: u32, marker: bool) -> RtpHeader {
        let header = RtpHeader {
            marker,
            payload_type: self.payload_type,
            sequence: self.next_sequence,
            timestamp: self.next_timestamp,
            ssrc: self.ssrc,
        };
        self.next_sequence = self.next_sequence.next();
        self.next_timestamp = self.next_timestamp.add(samples);
        header
    }

    /// Header for a packet stamped `timestamp` (a relayed packet keeps its sender's timing),
    /// covering `samples` samples; the stream goes on from its end. The caller keeps the
    /// timestamps monotonic ([`crate::relay::ForwardClock`]).
    pub fn header_at(&mut self, timestamp: RtpTimestamp, samples: u32, marker: bool) -> RtpHeader {
        self.next_timestamp = timestamp;
        self.next_header(samples, marker)
    }

    /// Advances the timestamp over `samples` that are not sent (a declared gap), keeping
    /// the timeline true without spending sequence numbers (the receiver must not count it
    /// as loss).
    pub fn skip(&mut self, samples: u32) {
        self.next_timestamp = self.next_timestamp.add(samples);
    }

    /// The timestamp the next packet will carry.
    pub fn next_timestamp(&self) -> RtpTimestamp {
        self.next_timestamp
    }

    /// The sequence number the next packet will carry.
    pub fn next_sequence(&self) -> SequenceNumber {
        self.next_sequence
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> Ssrc {
        self.ssrc
    }

    /// Changes the payload type (after a re-INVITE renegotiates the codec).
    pub fn set_payload_type(&mut self, payload_type: PayloadType) {
        self.payload_type = payload_type;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;
    use rtc_shared::marshal::{Marshal, Unmarshal};

    fn packet_with(first: u8, second: u8, rest: &[u8]) -> Vec<u8> {
        let mut packet = vec![
            first, second, 0x12, 0x34, 0, 0, 0x01, 0x40, 0xDE, 0xAD, 0xBE, 0xEF,
        ];
        packet.extend_from_slice(rest);
        packet
    }

    /// Compares our view with rtc-rtp's parse of the same bytes.
    fn assert_same_as_rtc_rtp(packet: &[u8]) {
        let ours = RtpView::parse(packet).expect("our parser accepts it");
        let mut buf = Bytes::copy_from_slice(packet);
        let theirs = rtc_rtp::Packet::unmarshal(&mut buf).expect("rtc-rtp accepts it");
        assert_eq!(ours.marker, theirs.header.marker);
        assert_eq!(ours.payload_type.0, theirs.header.payload_type);
        assert_eq!(ours.sequence.0, theirs.header.sequence_number);
        assert_eq!(ours.timestamp.0, theirs.header.timestamp);
        assert_eq!(ours.ssrc.0, theirs.header.ssrc);
        assert_eq!(ours.padded, theirs.header.padding);
        let csrcs: Vec<u32> = ours.csrcs().map(|s| s.0).collect();
        assert_eq!(csrcs, theirs.header.csrc);
        assert_eq!(ours.payload, &theirs.payload[..]);
    }

    #[test]
    fn pcma_packet_matches_rtc_rtp() {
        let payload = [0xD5u8; 160];
        assert_same_as_rtc_rtp(&packet_with(0x80, 0x88, &payload));
    }

    #[test]
    fn telephone_event_with_marker_matches_rtc_rtp() {
        assert_same_as_rtc_rtp(&packet_with(0x80, 0x80 | 101, &[0x05, 0x0A, 0x00, 0xA0]));
    }

    #[test]
    fn csrcs_are_skipped_and_listed() {
        let mut rest = vec![0, 0, 0, 1, 0, 0, 0, 2];
        rest.extend_from_slice(&[1, 2, 3]);
        let packet = packet_with(0x82, 0x08, &rest);
        assert_same_as_rtc_rtp(&packet);
        let view = RtpView::parse(&packet).expect("parses");
        assert_eq!(view.csrc_count(), 2);
        assert_eq!(view.csrcs().collect::<Vec<_>>(), vec![Ssrc(1), Ssrc(2)]);
        assert_eq!(view.payload, &[1, 2, 3]);
    }

    #[test]
    fn padding_is_removed_from_the_payload() {
        let packet = packet_with(0xA0, 0x08, &[9, 9, 9, 9, 0, 0, 3]);
        assert_same_as_rtc_rtp(&packet);
        let view = RtpView::parse(&packet).expect("parses");
        assert_eq!(view.payload, &[9, 9, 9, 9]);
    }

    #[test]
    fn csrcs_extension_and_padding_together() {
        // CC=1, X=1, P=1; extension profile 0xBEDE with one word.
        let rest = [
            0, 0, 0, 7, 0xBE, 0xDE, 0, 1, 0x10, 0xAA, 0, 0, 0x55, 0x55, 0, 2,
        ];
        let packet = packet_with(0xB1, 0x08, &rest);
        assert_same_as_rtc_rtp(&packet);
        let view = RtpView::parse(&packet).expect("parses");
        let extension = view.extension().expect("extension present");
        assert_eq!(extension.profile, 0xBEDE);
        assert_eq!(extension.data, &[0x10, 0xAA, 0, 0]);
        assert_eq!(view.payload, &[0x55, 0x55]);
    }

    #[test]
    fn rejects_what_is_not_rtp() {
        assert!(matches!(
            RtpView::parse(&[]),
            Err(RtpError::Truncated { .. })
        ));
        // STUN binding request starts with 0x00 0x01.
        assert_eq!(
            RtpView::parse(&[0x00, 0x01, 0, 0, 0x21, 0x12, 0xA4, 0x42, 0, 0, 0, 0]),
            Err(RtpError::BadVersion(0))
        );
        assert!(matches!(
            RtpView::parse(&packet_with(0x83, 0x08, &[0, 0, 0, 1])),
            Err(RtpError::Truncated { needed: 24, .. })
        ));
        assert!(matches!(
            RtpView::parse(&packet_with(0xA0, 0x08, &[1, 2, 9])),
            Err(RtpError::BadPadding { padding: 9, .. })
        ));
        // RTCP receiver report (type 201) multiplexed on the RTP port.
        assert_eq!(
            RtpView::parse(&packet_with(0x81, 201, &[])),
            Err(RtpError::Rtcp(201))
        );
    }

    #[test]
    fn written_packets_parse_back_and_match_rtc_rtp() {
        let header = RtpHeader {
            marker: true,
            payload_type: PayloadType(8),
            sequence: SequenceNumber(65535),
            timestamp: RtpTimestamp(0xFFFF_FF00),
            ssrc: Ssrc(0x0102_0304),
        };
        let mut out = [0u8; 200];
        let len = header.write(&[0xD5; 160], &mut out).expect("fits");
        assert_eq!(len, 172);
        let packet = out.get(..len).expect("in range");
        assert_same_as_rtc_rtp(packet);

        let theirs = rtc_rtp::Packet {
            header: rtc_rtp::Header {
                version: 2,
                marker: true,
                payload_type: 8,
                sequence_number: 65535,
                timestamp: 0xFFFF_FF00,
                ssrc: 0x0102_0304,
                ..Default::default()
            },
            payload: Bytes::from_static(&[0xD5; 160]),
        };
        assert_eq!(&theirs.marshal().expect("marshals")[..], packet);
    }

    #[test]
    fn writer_refuses_a_short_buffer() {
        let header = RtpHeader {
            marker: false,
            payload_type: PayloadType(0),
            sequence: SequenceNumber(1),
            timestamp: RtpTimestamp(1),
            ssrc: Ssrc(1),
        };
        assert_eq!(
            header.write(&[0; 160], &mut [0u8; 100]),
            Err(RtpError::BufferTooSmall {
                needed: 172,
                available: 100
            })
        );
    }

    #[test]
    fn sequencer_steps_and_wraps() {
        let mut seq = RtpSequencer::new(
            Ssrc(7),
            PayloadType(8),
            SequenceNumber(65535),
            RtpTimestamp(u32::MAX - 79),
        );
        let first = seq.next_header(160, true);
        let second = seq.next_header(160, false);
        assert_eq!(first.sequence, SequenceNumber(65535));
        assert_eq!(second.sequence, SequenceNumber(0));
        assert_eq!(second.timestamp, RtpTimestamp(80));
        assert_eq!(second.timestamp.since(first.timestamp), 160);
        seq.skip(800);
        let third = seq.next_header(160, false);
        assert_eq!(third.sequence, SequenceNumber(1));
        assert_eq!(third.timestamp, RtpTimestamp(1040));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = RtpView::parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_version_2(mut bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Some(first) = bytes.first_mut() {
                *first = (*first & 0x3F) | 0x80;
            }
            if let Ok(view) = RtpView::parse(&bytes) {
                prop_assert!(view.payload.len() + FIXED_HEADER_LEN <= bytes.len());
            }
        }

        #[test]
        fn write_then_parse_round_trips(
            marker in any::<bool>(),
            pt in 0u8..128,
            seq in any::<u16>(),
            ts in any::<u32>(),
            ssrc in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            prop_assume!(!(marker && (72..=76).contains(&pt)));
            let header = RtpHeader {
                marker,
                payload_type: PayloadType(pt),
                sequence: SequenceNumber(seq),
                timestamp: RtpTimestamp(ts),
                ssrc: Ssrc(ssrc),
            };
            let mut out = [0u8; 412];
            let len = header.write(&payload, &mut out).expect("fits");
            let view = RtpView::parse(out.get(..len).expect("in range")).expect("parses");
            prop_assert_eq!(view.marker, marker);
            prop_assert_eq!(view.payload_type, PayloadType(pt));
            prop_assert_eq!(view.sequence, SequenceNumber(seq));
            prop_assert_eq!(view.timestamp, RtpTimestamp(ts));
            prop_assert_eq!(view.ssrc, Ssrc(ssrc));
            prop_assert_eq!(view.payload, &payload[..]);
        }
    }
}
