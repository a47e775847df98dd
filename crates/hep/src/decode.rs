//! Reads a HEP v3 packet back into its chunks: for tests (every encoded packet decodes to
//! what went in) and for comparing with packets other senders made.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::{CaptureAgentId, IpProto, ProtoType, Timestamp, chunk};

/// One chunk as it was on the wire.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RawChunk {
    pub vendor: u16,
    pub kind: u16,
    pub value: Vec<u8>,
}

/// A decoded packet: what [`crate::Capture`] holds, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub proto: IpProto,
    pub time: Timestamp,
    pub agent: CaptureAgentId,
    pub proto_type: ProtoType,
    pub auth_key: Option<Vec<u8>>,
    pub correlation_id: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a HEP v3 packet (no \"HEP3\" magic)")]
    NoMagic,
    #[error("the length field says {said} bytes, the packet has {has}")]
    Length { said: usize, has: usize },
    #[error("chunk at byte {0} is cut short or has a length below its header")]
    BadChunk(usize),
    #[error("chunk type {kind:#06x} has a value of {len} bytes")]
    BadValue { kind: u16, len: usize },
    #[error("chunk type {0:#06x} is missing")]
    Missing(u16),
    #[error("IP protocol {0} is neither UDP nor TCP")]
    UnknownProto(u8),
}

/// Every chunk of the packet, in wire order.
pub fn chunks(packet: &[u8]) -> Result<Vec<RawChunk>, DecodeError> {
    if packet.get(..4) != Some(b"HEP3".as_slice()) {
        return Err(DecodeError::NoMagic);
    }
    let said = usize::from(be16(packet, 4).ok_or(DecodeError::NoMagic)?);
    if said != packet.len() {
        return Err(DecodeError::Length {
            said,
            has: packet.len(),
        });
    }
    let mut at = 6;
    let mut out = Vec::new();
    while at < packet.len() {
        let bad = DecodeError::BadChunk(at);
        let vendor = be16(packet, at).ok_or(bad.clone())?;
        let kind = be16(packet, at + 2).ok_or(bad.clone())?;
        let len = usize::from(be16(packet, at + 4).ok_or(bad.clone())?);
        let value = packet
            .get(at + 6..at + len.max(6))
            .filter(|_| len >= 6)
            .ok_or(bad)?;
        out.push(RawChunk {
            vendor,
            kind,
            value: value.to_vec(),
        });
        at += len;
    }
    Ok(out)
}

/// The packet's capture.
pub fn decode(packet: &[u8]) -> Result<Decoded, DecodeError> {
    let chunks = chunks(packet)?;
    let get = |kind: u16| {
        chunks
            .iter()
            .find(|c| c.vendor == 0 && c.kind == kind)
            .map(|c| c.value.as_slice())
    };
    let need = |kind: u16| get(kind).ok_or(DecodeError::Missing(kind));
    let fixed = |kind: u16, len: usize| {
        need(kind).and_then(|v| {
            (v.len() == len)
                .then_some(v)
                .ok_or(DecodeError::BadValue { kind, len: v.len() })
        })
    };
    let u8_of = |kind| fixed(kind, 1).map(|v| v.first().copied().unwrap_or_default());
    let u16_of = |kind| fixed(kind, 2).and_then(|v| be16(v, 0).ok_or(DecodeError::Missing(kind)));
    let u32_of = |kind| fixed(kind, 4).map(|v| u32::from_be_bytes(array(v)));
    let (source, destination) = if get(chunk::IPV4_SRC).is_some() {
        let ip = |kind| fixed(kind, 4).map(|v| IpAddr::V4(Ipv4Addr::from(array(v))));
        (ip(chunk::IPV4_SRC)?, ip(chunk::IPV4_DST)?)
    } else {
        let ip = |kind| fixed(kind, 16).map(|v| IpAddr::V6(Ipv6Addr::from(array(v))));
        (ip(chunk::IPV6_SRC)?, ip(chunk::IPV6_DST)?)
    };
    let proto = match u8_of(chunk::IP_PROTO)? {
        17 => IpProto::Udp,
        6 => IpProto::Tcp,
        other => return Err(DecodeError::UnknownProto(other)),
    };
    Ok(Decoded {
        source: SocketAddr::new(source, u16_of(chunk::SRC_PORT)?),
        destination: SocketAddr::new(destination, u16_of(chunk::DST_PORT)?),
        proto,
        time: Timestamp {
            seconds: u32_of(chunk::TIME_SECONDS)?,
            micros: u32_of(chunk::TIME_MICROS)?,
        },
        agent: CaptureAgentId(u32_of(chunk::CAPTURE_ID)?),
        proto_type: ProtoType(u8_of(chunk::PROTO_TYPE)?),
        auth_key: get(chunk::AUTH_KEY).map(<[u8]>::to_vec),
        correlation_id: get(chunk::CORRELATION_ID).map(<[u8]>::to_vec),
        payload: need(chunk::PAYLOAD)?.to_vec(),
    })
}

/// A value whose length was checked; zeros if it was not.
fn array<const N: usize>(value: &[u8]) -> [u8; N] {
    <[u8; N]>::try_from(value).unwrap_or([0; N])
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at + 2)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}
