//! `siaga_engine::sip::parse::parse` on arbitrary bytes, as a UDP datagram and as a TCP frame.
//! Property: never panics; a stateless reply, when one is built, is itself a SIP response the
//! same parser reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siaga_engine::sip::parse::{Framing, Message, parse, split_header_list};

fuzz_target!(|data: &[u8]| {
    for framing in [Framing::Datagram, Framing::Stream] {
        match parse(data, framing) {
            Ok(inbound) => {
                // Touch what every later layer reads.
                let _ = inbound.top_via.has_rfc3261_branch();
                let _ = inbound.message.as_request().map(|r| r.to_string());
                if let Message::Response(resp) = &inbound.message {
                    let _ = resp.to_string();
                }
            }
            Err(rejection) => {
                if let Some(reply) = rejection.reply {
                    let _ = parse(&reply, Framing::Datagram);
                }
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = split_header_list(text);
    }
});
