//! SIP INFO key presses. Input: the Content-Type up to the first `\n`, then the body. The
//! body is also tried under both supported media types, so the fuzzer need not find them.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use siaga_media::dtmf::parse_sip_info;

fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

fuzz_target!(|data: &[u8]| {
    let at = t0();
    let (ct, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let ct = String::from_utf8_lossy(ct);
    let _ = parse_sip_info(&ct, body, at);
    let _ = parse_sip_info("application/dtmf-relay", body, at);
    let _ = parse_sip_info("Application/DTMF; charset=utf-8", body, at);
    let _ = parse_sip_info("application/dtmf-relay", data, at);
});
