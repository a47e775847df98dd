//! Content-ID values and `cid:` URLs (RFC 2392).
//!
//! A `Geolocation: <cid:target123@example.com>` header points at the body part whose
//! `Content-ID: <target123@example.com>` matches. The URL form is percent-encoded, the header
//! form is bracketed; both normalise to the same bare `addr-spec` here so they can be compared.

use serde::Serialize;
use std::fmt;

/// A Content-ID without its angle brackets and with `cid:` percent-escapes decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ContentId(String);

impl ContentId {
    /// From a `Content-ID` header value such as `<target123@example.com>`.
    ///
    /// Brackets are optional (some stacks omit them); surrounding whitespace is ignored.
    pub fn from_header(value: &str) -> Self {
        let trimmed = value.trim();
        let inner = trimmed
            .strip_prefix('<')
            .and_then(|rest| rest.strip_suffix('>'))
            .unwrap_or(trimmed);
        Self(inner.trim().to_owned())
    }

    /// From a `cid:` URL such as `cid:target123%40example.com`; `None` if it is not a cid URL.
    ///
    /// RFC 2392 says the URL carries the addr-spec percent-encoded; invalid escapes are kept
    /// literally rather than rejected, because a slightly wrong reference is still worth trying.
    pub fn from_cid_url(url: &str) -> Option<Self> {
        let trimmed = url.trim();
        let scheme = trimmed.get(..4)?;
        if !scheme.eq_ignore_ascii_case("cid:") {
            return None;
        }
        let rest = trimmed.get(4..)?;
        // Some senders wrap the addr-spec in brackets inside the URL as well; accept that too.
        let rest = rest
            .strip_prefix('<')
            .and_then(|inner| inner.strip_suffix('>'))
            .unwrap_or(rest);
        Some(Self(percent_decode(rest)))
    }

    /// The bare addr-spec, e.g. `target123@example.com`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when both name the same part.
    ///
    /// Exact match first; otherwise ASCII case-insensitive, because a sender that changes the
    /// case of a host name still means the same part and a missed location costs far more than
    /// a lenient match.
    pub fn matches(&self, other: &ContentId) -> bool {
        self.0 == other.0 || self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.0)
    }
}

/// Decodes `%XX` escapes; anything that is not a valid escape stays as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let high = bytes.get(index + 1).and_then(|b| hex_value(*b));
            let low = bytes.get(index + 2).and_then(|b| hex_value(*b));
            if let (Some(high), Some(low)) = (high, low) {
                decoded.push(high * 16 + low);
                index += 3;
                continue;
            }
        }
        decoded.push(byte);
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_url_forms_name_the_same_part() {
        let header = ContentId::from_header(" <target123@atlanta.example.com> ");
        let url = ContentId::from_cid_url("cid:target123@atlanta.example.com");
        assert_eq!(url.as_ref(), Some(&header));
    }

    #[test]
    fn url_escapes_are_decoded() {
        let url = ContentId::from_cid_url("CID:loc%20one%40host.example").map(|c| c.0);
        assert_eq!(url.as_deref(), Some("loc one@host.example"));
    }

    #[test]
    fn broken_escape_is_kept_literally() {
        let url = ContentId::from_cid_url("cid:50%zz@x").map(|c| c.0);
        assert_eq!(url.as_deref(), Some("50%zz@x"));
    }

    #[test]
    fn other_schemes_are_not_cid() {
        assert_eq!(ContentId::from_cid_url("sip:alice@example.com"), None);
        assert_eq!(ContentId::from_cid_url("ci"), None);
    }

    #[test]
    fn case_differences_still_match() {
        let a = ContentId::from_header("<Loc@Example.COM>");
        let b = ContentId::from_header("<loc@example.com>");
        assert!(a.matches(&b));
        assert!(!a.matches(&ContentId::from_header("<other@example.com>")));
    }

    #[test]
    fn bare_header_without_brackets_is_accepted() {
        assert_eq!(ContentId::from_header("abc@x").as_str(), "abc@x");
    }
}
