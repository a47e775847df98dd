//! The RFC 5923 alias read from a message's top Via, on arbitrary bytes. Properties, besides
//! "never panics": no alias for a response, and an alias found is an address written in the
//! message's head.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siaga_engine::sip::alias::via_alias;

fuzz_target!(|data: &[u8]| {
    let Some(alias) = via_alias(data, 5061) else {
        return;
    };
    assert!(!data.starts_with(b"SIP/"), "an alias read from a response");
    let ip = alias.ip().to_string();
    let text = String::from_utf8_lossy(data);
    assert!(
        text.contains(&ip) || text.contains(&format!("[{ip}]")) || alias.ip().is_ipv6(),
        "alias {alias} is not in the message"
    );
});
