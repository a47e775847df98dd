//! Test helpers: turn a SIP message fixture into what the engine hands to `extract`.

#![allow(dead_code)]

/// A SIP request split the way the signalling engine would split it.
pub struct SipMessage {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SipMessage {
    /// Splits at the first empty line; header names keep their case, values are trimmed.
    pub fn parse(raw: &[u8]) -> SipMessage {
        let split = raw
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .expect("fixture has a header/body separator");
        let head = String::from_utf8(raw[..split].to_vec()).expect("fixture headers are UTF-8");
        let headers = head
            .split("\r\n")
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect();
        SipMessage {
            headers,
            body: raw[split + 4..].to_vec(),
        }
    }

    /// Every value of a header, in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// The first value of a header.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values(name).into_iter().next()
    }
}

/// Where `needle` occurs in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
