//! HEP v3 (the Homer Encapsulation Protocol, also called EEP): one captured SIP message with
//! its addresses, transport, time and capture agent, framed as chunks for a Homer or sngrep
//! collector.
//!
//! Pure: the caller passes the time and the bytes; nothing here reads a clock or opens a
//! socket. The chunks come in the order Kamailio's `siptrace` module sends them (the test
//! data holds a packet it sent): IP family, IP protocol, source and destination address,
//! ports, seconds, microseconds, protocol type, capture agent id, correlation id, auth key,
//! payload. Collectors read chunks by type, so the order is only there to compare bytes.
//!
//! Packet layout: `"HEP3"`, total length (u16), then chunks of vendor id (u16, 0 = generic),
//! type (u16), length including this 6-byte header (u16) and the value; all in network byte
//! order.

use std::net::{IpAddr, SocketAddr};

mod call_id;
pub mod decode;

pub use call_id::call_id_of;

/// The generic chunk types of HEP v3 used here.
pub mod chunk {
    pub const IP_FAMILY: u16 = 0x0001;
    pub const IP_PROTO: u16 = 0x0002;
    pub const IPV4_SRC: u16 = 0x0003;
    pub const IPV4_DST: u16 = 0x0004;
    pub const IPV6_SRC: u16 = 0x0005;
    pub const IPV6_DST: u16 = 0x0006;
    pub const SRC_PORT: u16 = 0x0007;
    pub const DST_PORT: u16 = 0x0008;
    pub const TIME_SECONDS: u16 = 0x0009;
    pub const TIME_MICROS: u16 = 0x000a;
    pub const PROTO_TYPE: u16 = 0x000b;
    pub const CAPTURE_ID: u16 = 0x000c;
    pub const AUTH_KEY: u16 = 0x000e;
    pub const PAYLOAD: u16 = 0x000f;
    pub const CORRELATION_ID: u16 = 0x0011;
}

const MAGIC: &[u8; 4] = b"HEP3";
const HEADER_LEN: usize = 6;
const CHUNK_HEADER_LEN: usize = 6;
/// A packet's length field is 16 bits.
pub const MAX_PACKET_LEN: usize = u16::MAX as usize;

/// Address family values of the IP family chunk (the BSD `AF_INET`/`AF_INET6` of Linux).
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// The transport that carried the message (the IP protocol chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpProto {
    Udp,
    Tcp,
}

impl IpProto {
    pub fn number(self) -> u8 {
        match self {
            IpProto::Udp => 17,
            IpProto::Tcp => 6,
        }
    }
}

/// The capture agent id: which node captured the message (Homer shows it as the node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureAgentId(pub u32);

/// HEP's protocol type chunk; SIP is 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtoType(pub u8);

impl ProtoType {
    pub const SIP: ProtoType = ProtoType(1);
}

/// Wall-clock time of the capture, as seconds and microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub seconds: u32,
    pub micros: u32,
}

impl Timestamp {
    /// From a time since the Unix epoch (`SystemTime::duration_since(UNIX_EPOCH)` in the
    /// shell). Seconds past 2106 do not fit the chunk and wrap.
    pub fn from_unix(since_epoch: std::time::Duration) -> Timestamp {
        Timestamp {
            seconds: since_epoch.as_secs() as u32,
            micros: since_epoch.subsec_micros(),
        }
    }
}

/// One captured message and what the collector is told about it.
#[derive(Debug, Clone, Copy)]
pub struct Capture<'a> {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub proto: IpProto,
    pub time: Timestamp,
    pub agent: CaptureAgentId,
    pub proto_type: ProtoType,
    /// The collector's password, if it wants one (auth key chunk).
    pub auth_key: Option<&'a [u8]>,
    /// What ties messages of one dialog together: for SIP, the Call-ID.
    pub correlation_id: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("source {from} and destination {to} are not of one IP family")]
    MixedFamilies { from: IpAddr, to: IpAddr },
    #[error("the packet would be {0} bytes; HEP v3 carries at most 65535")]
    TooLarge(usize),
}

/// The packet's length for `capture`, or why it cannot be encoded.
pub fn encoded_len(capture: &Capture<'_>) -> Result<usize, EncodeError> {
    let ips = match (capture.source.ip(), capture.destination.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => 2 * 4,
        (IpAddr::V6(_), IpAddr::V6(_)) => 2 * 16,
        (from, to) => return Err(EncodeError::MixedFamilies { from, to }),
    };
    // family, proto type, IP protocol (u8 each); ports (u16 each); seconds, micros, agent (u32).
    let fixed =
        3 * (CHUNK_HEADER_LEN + 1) + 2 * (CHUNK_HEADER_LEN + 2) + 3 * (CHUNK_HEADER_LEN + 4);
    let optional = [capture.correlation_id, capture.auth_key]
        .iter()
        .flatten()
        .map(|v| CHUNK_HEADER_LEN + v.len())
        .sum::<usize>();
    let len = HEADER_LEN
        + fixed
        + 2 * CHUNK_HEADER_LEN
        + ips
        + optional
        + CHUNK_HEADER_LEN
        + capture.payload.len();
    if len > MAX_PACKET_LEN {
        return Err(EncodeError::TooLarge(len));
    }
    Ok(len)
}

/// Appends the HEP v3 packet for `capture` to `out` (cleared first), so a sender can reuse
/// one buffer.
pub fn encode_into(capture: &Capture<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let len = encoded_len(capture)?;
    out.clear();
    out.reserve(len);
    out.extend_from_slice(MAGIC);
    // Checked above: fits in 16 bits.
    out.extend_from_slice(&(len as u16).to_be_bytes());
    match (capture.source.ip(), capture.destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            push(out, chunk::IP_FAMILY, &[AF_INET]);
            push(out, chunk::IP_PROTO, &[capture.proto.number()]);
            push(out, chunk::IPV4_SRC, &s.octets());
            push(out, chunk::IPV4_DST, &d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            push(out, chunk::IP_FAMILY, &[AF_INET6]);
            push(out, chunk::IP_PROTO, &[capture.proto.number()]);
            push(out, chunk::IPV6_SRC, &s.octets());
            push(out, chunk::IPV6_DST, &d.octets());
        }
        // Refused by encoded_len.
        (from, to) => return Err(EncodeError::MixedFamilies { from, to }),
    }
    push(out, chunk::SRC_PORT, &capture.source.port().to_be_bytes());
    push(
        out,
        chunk::DST_PORT,
        &capture.destination.port().to_be_bytes(),
    );
    push(
        out,
        chunk::TIME_SECONDS,
        &capture.time.seconds.to_be_bytes(),
    );
    push(out, chunk::TIME_MICROS, &capture.time.micros.to_be_bytes());
    push(out, chunk::PROTO_TYPE, &[capture.proto_type.0]);
    push(out, chunk::CAPTURE_ID, &capture.agent.0.to_be_bytes());
    if let Some(id) = capture.correlation_id {
        push(out, chunk::CORRELATION_ID, id);
    }
    if let Some(key) = capture.auth_key {
        push(out, chunk::AUTH_KEY, key);
    }
    push(out, chunk::PAYLOAD, capture.payload);
    debug_assert_eq!(out.len(), len);
    Ok(())
}

/// The HEP v3 packet for `capture`.
pub fn encode(capture: &Capture<'_>) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_into(capture, &mut out)?;
    Ok(out)
}

/// One generic chunk; the caller has checked the packet's total fits in 16 bits.
fn push(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&((CHUNK_HEADER_LEN + value.len()) as u16).to_be_bytes());
    out.extend_from_slice(value);
}
