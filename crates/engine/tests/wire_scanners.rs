//! What reads raw network bytes outside the fuzzed parser, fed arbitrary input: the
//! per-source limits' pre-parse look (lane, To-tag scan, the emergency check on the request
//! line) and the crash-restart rebuild of dialogs from logged messages (stored verbatim from
//! the wire). Properties, besides "never panics": an INVITE to 112 passes the emergency check
//! whatever headers follow; a stray BYE or a response is always call traffic.

use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use siaga_dialplan::{Dialplan, Source};
use siaga_engine::ids::{CallRef, LegId};
use siaga_engine::io::{Direction, Flow, Transport};
use siaga_engine::restart::{LoggedMessage, left_open};
use siaga_engine::source_limits::{Lane, dials_emergency};

fn plan() -> &'static Arc<Dialplan> {
    static PLAN: OnceLock<Arc<Dialplan>> = OnceLock::new();
    PLAN.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dialplans/default.toml");
        let text = include_str!("../../../dialplans/default.toml");
        let plan = siaga_dialplan::validate(&[Source::new(path, text)], &|_| true).expect("valid");
        Arc::new(plan)
    })
}

/// Bytes that look like SIP often enough to reach the scanners' inner branches.
fn wire() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"INVITE ".to_vec()),
        Just(b"OPTIONS ".to_vec()),
        Just(b"BYE ".to_vec()),
        Just(b"SIP/2.0 200 OK".to_vec()),
        Just(b"sip:112@gw SIP/2.0".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"To: <sip:a@b>;tag=x".to_vec()),
        Just(b"t: x;TAG =".to_vec()),
        Just(b"Call-ID: c@h".to_vec()),
        Just(b"CSeq: 1 INVITE".to_vec()),
        Just(b"Contact: <sip:h:5060>".to_vec()),
        Just(b":;<>".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..24),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_pre_parse_look_never_panics_and_never_refuses_112(data in wire()) {
        let _ = Lane::of(&data);
        let _ = dials_emergency(plan(), &data);
        let mut invite = b"INVITE sip:112@gw SIP/2.0\r\n".to_vec();
        invite.extend_from_slice(&data);
        prop_assert!(dials_emergency(plan(), &invite));
        let mut bye = b"BYE sip:x SIP/2.0\r\n".to_vec();
        bye.extend_from_slice(&data);
        prop_assert_eq!(Lane::of(&bye), Lane::Call);
    }

    #[test]
    fn rebuilding_dialogs_from_logged_bytes_never_panics(
        messages in proptest::collection::vec((any::<u8>(), wire()), 0..12)
    ) {
        let flow = Flow {
            transport: Transport::Udp,
            remote: "127.0.0.1:5070".parse().expect("literal"),
            local: "127.0.0.1:5060".parse().expect("literal"),
            conn: None,
        };
        let logged: Vec<LoggedMessage<'_>> = messages
            .iter()
            .map(|(head, raw)| LoggedMessage {
                leg: if head % 2 == 0 { LegId::Caller } else { LegId::Agency(u32::from(head >> 2) % 4 + 1) },
                direction: if head & 2 == 0 { Direction::In } else { Direction::Out },
                flow,
                raw,
            })
            .collect();
        let _ = left_open(CallRef(1), &logged);
    }
}
