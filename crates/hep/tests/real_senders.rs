//! The encoder against packets real HEP senders made (see tests/data/README.md), and every
//! packet it makes decoding back to what went in.

use std::net::SocketAddr;

use proptest::prelude::*;
use siaga_hep::decode::{chunks, decode};
use siaga_hep::{Capture, CaptureAgentId, IpProto, ProtoType, Timestamp, call_id_of, encode};

const KAMAILIO_PACKET: &[u8] = include_bytes!("data/kamailio-siptrace-hep3.bin");
const KAMAILIO_SIP: &[u8] = include_bytes!("data/kamailio-invite.sip");
const SNGREP_PACKET: &[u8] = include_bytes!("data/sngrep-eep-send-hep3.bin");
const SNGREP_SIP: &[u8] = include_bytes!("data/sngrep-invite.sip");

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// Kamailio's siptrace, HEP v3 with an auth key and the Call-ID as correlation id: the same
/// fields give the same bytes.
#[test]
fn the_same_fields_give_kamailios_packet_byte_for_byte() {
    let capture = Capture {
        source: addr("127.0.0.1:5061"),
        destination: addr("127.0.0.2:5070"),
        proto: IpProto::Udp,
        // When Kamailio received the INVITE (the one field a replay cannot choose).
        time: Timestamp {
            seconds: 1_796_451_504,
            micros: 124_529,
        },
        agent: CaptureAgentId(2001),
        proto_type: ProtoType::SIP,
        auth_key: Some(b"s3cret"),
        correlation_id: call_id_of(KAMAILIO_SIP),
        payload: KAMAILIO_SIP,
    };
    assert_eq!(capture.correlation_id, Some(&b"hep-test-1@127.0.0.1"[..]));
    let ours = encode(&capture).expect("encodes");
    assert_eq!(
        ours, KAMAILIO_PACKET,
        "ours:\n{ours:02x?}\nkamailio's:\n{KAMAILIO_PACKET:02x?}"
    );
}

/// sngrep's own sender (`-H`) orders chunks differently: the same chunks, the same values,
/// but for the capture agent id, which sngrep 1.6.0 writes as a 16-bit network-order value in
/// the first two bytes of the 32-bit chunk (Kamailio, above, writes the u32 the spec asks for).
#[test]
fn the_same_fields_give_sngreps_chunks_value_for_value() {
    let capture = Capture {
        source: addr("127.0.0.1:5061"),
        destination: addr("127.0.0.2:5060"),
        proto: IpProto::Udp,
        // The capture time of the one packet in sngrep-invite.pcap.
        time: Timestamp {
            seconds: 1_764_921_600,
            micros: 123_456,
        },
        agent: CaptureAgentId(2002),
        proto_type: ProtoType::SIP,
        auth_key: None,
        correlation_id: None,
        payload: SNGREP_SIP,
    };
    let ours = encode(&capture).expect("encodes");
    assert_eq!(ours.len(), SNGREP_PACKET.len());
    let split = |packet: &[u8]| {
        let mut all = chunks(packet).expect("decodes");
        all.sort();
        let (agent, rest): (Vec<_>, Vec<_>) = all
            .into_iter()
            .partition(|c| c.kind == siaga_hep::chunk::CAPTURE_ID);
        (agent, rest)
    };
    let (our_agent, our_rest) = split(&ours);
    let (their_agent, their_rest) = split(SNGREP_PACKET);
    assert_eq!(our_rest, their_rest);
    let value = |agent: &[siaga_hep::decode::RawChunk]| agent.first().map(|c| c.value.clone());
    assert_eq!(value(&our_agent), Some(2002u32.to_be_bytes().to_vec()));
    let [hi, lo] = 2002u16.to_be_bytes();
    assert_eq!(value(&their_agent), Some(vec![hi, lo, 0, 0]));
}

fn socket_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<[u8; 4]>(),
            any::<u16>()
        )
            .prop_map(|(a, p, b, q)| (SocketAddr::from((a, p)), SocketAddr::from((b, q)))),
        (
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<[u8; 16]>(),
            any::<u16>()
        )
            .prop_map(|(a, p, b, q)| (SocketAddr::from((a, p)), SocketAddr::from((b, q)))),
    ]
}

proptest! {
    /// Whatever the fields, the packet decodes back to them (or, too large for the 16-bit
    /// length, is refused rather than cut).
    #[test]
    fn every_packet_decodes_back_to_its_fields(
        (source, destination) in socket_pair(),
        tcp in any::<bool>(),
        seconds in any::<u32>(),
        micros in 0u32..1_000_000,
        agent in any::<u32>(),
        proto_type in any::<u8>(),
        auth_key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        correlation_id in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..256)),
        payload in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2048),
            proptest::collection::vec(any::<u8>(), 65_300..65_536),
        ],
    ) {
        let capture = Capture {
            source,
            destination,
            proto: if tcp { IpProto::Tcp } else { IpProto::Udp },
            time: Timestamp { seconds, micros },
            agent: CaptureAgentId(agent),
            proto_type: ProtoType(proto_type),
            auth_key: auth_key.as_deref(),
            correlation_id: correlation_id.as_deref(),
            payload: &payload,
        };
        match encode(&capture) {
            Ok(packet) => {
                prop_assert!(packet.len() <= 65_535);
                let back = decode(&packet).expect("decodes");
                prop_assert_eq!(back.source, source);
                prop_assert_eq!(back.destination, destination);
                prop_assert_eq!(back.proto, capture.proto);
                prop_assert_eq!(back.time, capture.time);
                prop_assert_eq!(back.agent, capture.agent);
                prop_assert_eq!(back.proto_type, capture.proto_type);
                prop_assert_eq!(back.auth_key, auth_key);
                prop_assert_eq!(back.correlation_id, correlation_id);
                prop_assert_eq!(back.payload, payload);
            }
            Err(siaga_hep::EncodeError::TooLarge(len)) => prop_assert!(len > 65_535),
            Err(e) => prop_assert!(false, "{e}"),
        }
    }
}

/// Mixed families cannot be one packet.
#[test]
fn a_v4_source_and_a_v6_destination_are_refused() {
    let capture = Capture {
        source: addr("127.0.0.1:5060"),
        destination: addr("[::1]:5060"),
        proto: IpProto::Udp,
        time: Timestamp {
            seconds: 0,
            micros: 0,
        },
        agent: CaptureAgentId(1),
        proto_type: ProtoType::SIP,
        auth_key: None,
        correlation_id: None,
        payload: b"x",
    };
    assert!(matches!(
        encode(&capture),
        Err(siaga_hep::EncodeError::MixedFamilies { .. })
    ));
}
