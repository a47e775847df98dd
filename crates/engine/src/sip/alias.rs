//! Connection reuse (RFC 5923): a peer that opened a connection to us and puts `;alias` in
//! its top Via asks that requests for its Via address travel back on that connection instead
//! of a new one (what SBC trunks expect: one connection each way, or one for both). Read from
//! the raw bytes, before parsing, so the shell can note it as the message passes.

use std::net::{IpAddr, SocketAddr};

/// The address of the top Via of a request on a stream when it carries `;alias`, with the
/// transport's default port when none is written. `None` for responses, for a Via without
/// `alias`, and for a sent-by that is a host name (only an address can be matched to the
/// connection's source).
pub fn via_alias(message: &[u8], default_port: u16) -> Option<SocketAddr> {
    if message.starts_with(b"SIP/") {
        return None;
    }
    let head_end = find(message, b"\r\n\r\n").unwrap_or(message.len());
    let head = std::str::from_utf8(message.get(..head_end)?).ok()?;
    let via = head.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        (name.eq_ignore_ascii_case("via") || name.eq_ignore_ascii_case("v")).then_some(value)
    })?;
    // The first of a comma-separated list is the top Via.
    let top = via.split(',').next()?.trim();
    let mut parts = top.split(';');
    let sent = parts.next()?;
    if !parts.any(|p| p.trim().eq_ignore_ascii_case("alias")) {
        return None;
    }
    // "SIP/2.0/TLS host:port"
    let sent_by = sent.split_whitespace().nth(1)?;
    if let Ok(addr) = sent_by.parse::<SocketAddr>() {
        return Some(addr);
    }
    let ip = sent_by.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default_port))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_top_via_alias_is_read_with_its_port() {
        let invite = b"INVITE sip:112@gw SIP/2.0\r\n\
            Via: SIP/2.0/TLS 192.0.2.7:5061;branch=z9hG4bK1;alias;rport, SIP/2.0/UDP 10.0.0.1\r\n\
            Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            via_alias(invite, 5061),
            Some("192.0.2.7:5061".parse().expect("addr"))
        );
        let compact = b"BYE sip:a@b SIP/2.0\r\nv: SIP/2.0/TLS [2001:db8::7];alias\r\n\r\n";
        assert_eq!(
            via_alias(compact, 5061),
            Some("[2001:db8::7]:5061".parse().expect("addr"))
        );
    }

    #[test]
    fn no_alias_without_the_parameter_on_the_top_via_nor_for_names_and_responses() {
        let lower = b"INVITE sip:112@gw SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.7:5061;branch=z\r\n\
            Via: SIP/2.0/TLS 192.0.2.8:5061;alias\r\n\r\n";
        assert_eq!(via_alias(lower, 5061), None);
        let name = b"INVITE sip:112@gw SIP/2.0\r\nVia: SIP/2.0/TLS sbc.example:5061;alias\r\n\r\n";
        assert_eq!(via_alias(name, 5061), None);
        let response = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 192.0.2.7:5061;alias\r\n\r\n";
        assert_eq!(via_alias(response, 5061), None);
        // Past the headers is body, not a Via.
        let body = b"INVITE sip:112@gw SIP/2.0\r\nContent-Length: 40\r\n\r\n\
            Via: SIP/2.0/TLS 192.0.2.7:5061;alias\r\n";
        assert_eq!(via_alias(body, 5061), None);
    }

    proptest! {
        #[test]
        fn any_bytes_are_read_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = via_alias(&bytes, 5061);
        }
    }
}
