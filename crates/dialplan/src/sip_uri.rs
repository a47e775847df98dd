//! Agency target addresses. Only the shape a B-leg INVITE needs is checked here: a `sip:` or
//! `sips:` URI with a host the shell can resolve and an optional port. A typo in a target is caught when
//! the plan is loaded, not when a fire call tries to reach it.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::Serialize;
use thiserror::Error;

/// A validated `sip:` or `sips:` URI of an agency target, kept exactly as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SipUri {
    text: String,
    #[serde(skip)]
    host: String,
    #[serde(skip)]
    port: Option<u16>,
    /// `sips:`: every hop over TLS (RFC 3261 §19.1).
    #[serde(skip)]
    secure: bool,
    /// The `;transport=` parameter, lower case.
    #[serde(skip)]
    transport: Option<String>,
}

impl SipUri {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Host name or address literal (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The explicit port, if any (5060 is implied otherwise, 5061 over TLS).
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// A `sips:` URI: the target is reached over TLS.
    pub fn is_sips(&self) -> bool {
        self.secure
    }

    /// The `;transport=` parameter, lower case (`"tls"`, `"tcp"`, …), if any.
    pub fn transport_param(&self) -> Option<&str> {
        self.transport.as_deref()
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What is wrong with a target URI.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SipUriError {
    #[error("it does not start with \"sip:\" or \"sips:\"")]
    NotSip,
    #[error("it contains spaces or control characters")]
    Whitespace,
    #[error("it has no host")]
    NoHost,
    #[error("the user part before '@' is empty or has characters SIP does not allow")]
    BadUser,
    #[error("\"{0}\" is not a host name or IP address")]
    BadHost(String),
    #[error("\"{0}\" is not a port (1–65535)")]
    BadPort(String),
    #[error("URI headers ('?…') are not allowed in a target")]
    Headers,
}

impl FromStr for SipUri {
    type Err = SipUriError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(SipUriError::Whitespace);
        }
        let (rest, secure) = match strip_prefix_ignore_case(text, "sip:") {
            Some(rest) => (rest, false),
            None => (
                strip_prefix_ignore_case(text, "sips:").ok_or(SipUriError::NotSip)?,
                true,
            ),
        };
        if rest.contains('?') {
            return Err(SipUriError::Headers);
        }
        let after_user = match rest.split_once('@') {
            Some((user, after)) => {
                if !is_valid_user(user) {
                    return Err(SipUriError::BadUser);
                }
                after
            }
            None => rest,
        };
        let mut parts = after_user.split(';');
        let host_port = parts.next().unwrap_or_default();
        let (host, port) = split_host_port(host_port)?;
        let transport = parts.find_map(|param| {
            let (name, value) = param.split_once('=')?;
            name.eq_ignore_ascii_case("transport")
                .then(|| value.to_ascii_lowercase())
        });
        Ok(SipUri {
            text: text.to_owned(),
            host,
            port,
            secure,
            transport,
        })
    }
}

pub(crate) fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text.get(prefix.len()..))
        .flatten()
}

fn is_valid_user(user: &str) -> bool {
    !user.is_empty()
        && user
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b'@' | b'[' | b']'))
}

fn split_host_port(host_port: &str) -> Result<(String, Option<u16>), SipUriError> {
    if host_port.is_empty() {
        return Err(SipUriError::NoHost);
    }
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (literal, after) = bracketed
            .split_once(']')
            .ok_or_else(|| SipUriError::BadHost(host_port.to_owned()))?;
        if literal.parse::<Ipv6Addr>().is_err() {
            return Err(SipUriError::BadHost(literal.to_owned()));
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| SipUriError::BadHost(host_port.to_owned()))?,
            ),
        };
        (literal, port)
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(SipUriError::NoHost);
    }
    if !host_port.starts_with('[') && !is_valid_host_name(host) {
        return Err(SipUriError::BadHost(host.to_owned()));
    }
    let port = port.map(parse_port).transpose()?;
    Ok((host.to_owned(), port))
}

fn parse_port(port: &str) -> Result<u16, SipUriError> {
    let bad = || SipUriError::BadPort(port.to_owned());
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(number) => Ok(number),
    }
}

/// An IPv4 literal or a DNS name: dot-separated labels of letters, digits and inner hyphens.
fn is_valid_host_name(host: &str) -> bool {
    if host.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let looks_numeric = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    !looks_numeric
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Result<SipUri, SipUriError> {
        text.parse()
    }

    #[test]
    fn accepts_the_targets_a_centre_uses() {
        let uri = parse("sip:polisi@127.0.0.1:5081").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((uri.host(), uri.port()), ("127.0.0.1", Some(5081)));
        let uri = parse("sip:+62541123@psap.samarinda.go.id;transport=tcp")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((uri.host(), uri.port()), ("psap.samarinda.go.id", None));
        let uri = parse("SIP:desk1@[2001:db8::1]:5070").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((uri.host(), uri.port()), ("2001:db8::1", Some(5070)));
    }

    #[test]
    fn sips_and_the_transport_parameter_are_read() {
        let uri = parse("sips:polisi@psap.example.org:5061").unwrap_or_else(|e| panic!("{e}"));
        assert!(uri.is_sips());
        assert_eq!((uri.host(), uri.port()), ("psap.example.org", Some(5061)));
        let uri = parse("sip:polisi@10.0.0.5;Transport=TLS;lr").unwrap_or_else(|e| panic!("{e}"));
        assert!(!uri.is_sips());
        assert_eq!(uri.transport_param(), Some("tls"));
        assert_eq!(parse("sip:polisi@10.0.0.5").map(|u| u.is_sips()), Ok(false));
    }

    #[test]
    fn rejects_typos_with_a_reason() {
        assert_eq!(
            parse("sip:polisi@127.0.0.1:99999"),
            Err(SipUriError::BadPort("99999".into()))
        );
        assert_eq!(parse("polisi@127.0.0.1"), Err(SipUriError::NotSip));
        assert_eq!(parse("sips:polisi@"), Err(SipUriError::NoHost));
        assert_eq!(parse("sip:polisi@"), Err(SipUriError::NoHost));
        assert_eq!(
            parse("sip:polisi@127.0.0.300"),
            Err(SipUriError::BadHost("127.0.0.300".into()))
        );
        assert_eq!(
            parse("sip:polisi@exa mple.org"),
            Err(SipUriError::Whitespace)
        );
        assert_eq!(parse("sip:@example.org"), Err(SipUriError::BadUser));
        assert_eq!(
            parse("sip:a@b.org:0"),
            Err(SipUriError::BadPort("0".into()))
        );
    }

    proptest! {
        #[test]
        fn parser_is_total(text in "\\PC{0,40}") {
            let _ = parse(&text);
        }

        #[test]
        fn valid_uris_keep_their_parts(user in "[a-z0-9+]{1,10}", host in "[a-z]{1,10}(\\.[a-z]{2,5}){0,2}", port in 1u16..) {
            let text = format!("sip:{user}@{host}:{port}");
            let uri = parse(&text);
            prop_assert!(uri.is_ok(), "{text}: {uri:?}");
            if let Ok(uri) = uri {
                prop_assert_eq!(uri.as_str(), text.as_str());
                prop_assert_eq!(uri.host(), host.as_str());
                prop_assert_eq!(uri.port(), Some(port));
            }
        }
    }
}
