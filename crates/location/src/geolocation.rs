//! The SIP location-conveyance headers of RFC 6442: `Geolocation`, `Geolocation-Routing`,
//! `Geolocation-Error`.
//!
//! `Geolocation` says where the caller's location is: in the body (`cid:`) or somewhere to be
//! fetched (`sip:`, `pres:`, `https:` …). We never dereference a URI here; references are kept
//! so the agency (or a later component) can.

use crate::content_id::ContentId;
use crate::media_type::{split_outside_quotes, unquote};
use serde::Serialize;
use std::fmt;
use thiserror::Error;

/// The scheme of a location URI; it decides whether the location is in the body or elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UriScheme {
    /// `cid:` — location by value, in a body part (RFC 2392).
    Cid,
    /// `sip:` — location by reference, via SIP presence.
    Sip,
    /// `sips:` — as `sip:`, over TLS.
    Sips,
    /// `pres:` — presence URI.
    Pres,
    /// `http:` — HELD-style dereference (RFC 6753).
    Http,
    /// `https:` — as `http:`, over TLS.
    Https,
    /// Any other scheme, lower case; kept because RFC 6442 allows absoluteURI.
    Other(String),
}

impl UriScheme {
    fn from_name(name: &str) -> Self {
        match name.to_ascii_lowercase().as_str() {
            "cid" => Self::Cid,
            "sip" => Self::Sip,
            "sips" => Self::Sips,
            "pres" => Self::Pres,
            "http" => Self::Http,
            "https" => Self::Https,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// One `Geolocation` entry: the URI and its header parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeolocationValue {
    /// The URI's scheme.
    pub scheme: UriScheme,
    /// The URI as written between the angle brackets.
    pub uri: String,
    /// Header parameters after the `>` (e.g. `inserted-by`, `loc-src` of RFC 8787), in order.
    pub params: Vec<HeaderParam>,
}

impl GeolocationValue {
    /// For a `cid:` URI, the Content-ID it points at.
    pub fn content_id(&self) -> Option<ContentId> {
        match self.scheme {
            UriScheme::Cid => ContentId::from_cid_url(&self.uri),
            _ => None,
        }
    }
}

impl fmt::Display for GeolocationValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.uri)?;
        for param in &self.params {
            write!(f, ";{param}")?;
        }
        Ok(())
    }
}

/// A `name[=value]` header parameter; the value is unquoted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeaderParam {
    /// Parameter name, as written.
    pub name: String,
    /// Parameter value without quotes, if any.
    pub value: Option<String>,
}

impl fmt::Display for HeaderParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}={}", self.name, value),
            None => f.write_str(&self.name),
        }
    }
}

/// Why one `Geolocation` entry could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GeolocationParseError {
    /// An empty entry (e.g. a stray comma).
    #[error("empty Geolocation entry")]
    Empty,
    /// `<` without a matching `>`.
    #[error("{entry:?}: '<' is never closed with '>'")]
    Unclosed {
        /// The entry as received.
        entry: String,
    },
    /// No `scheme:` in front of the URI.
    #[error(
        "{entry:?}: the URI has no scheme (expected cid:, sip:, sips:, pres:, http: or https:)"
    )]
    MissingScheme {
        /// The entry as received.
        entry: String,
    },
}

/// Parses one `Geolocation` header value (possibly several comma-separated entries).
///
/// Each entry is read on its own, so one bad entry does not hide a good one. A URI written
/// without angle brackets is accepted: the location matters more than the syntax.
pub fn parse_geolocation(value: &str) -> Vec<Result<GeolocationValue, GeolocationParseError>> {
    split_outside_quotes(value, ',')
        .into_iter()
        .filter(|entry| !entry.trim().is_empty())
        .map(parse_entry)
        .collect()
}

fn parse_entry(entry: &str) -> Result<GeolocationValue, GeolocationParseError> {
    let entry = entry.trim();
    if entry.is_empty() {
        return Err(GeolocationParseError::Empty);
    }
    let (uri, params_text) = match entry.strip_prefix('<') {
        Some(rest) => {
            let close = rest
                .find('>')
                .ok_or_else(|| GeolocationParseError::Unclosed {
                    entry: entry.to_owned(),
                })?;
            (
                rest.get(..close).unwrap_or_default().trim(),
                rest.get(close + 1..).unwrap_or_default(),
            )
        }
        None => match entry.find(';') {
            Some(semicolon) => (
                entry.get(..semicolon).unwrap_or_default().trim(),
                entry.get(semicolon..).unwrap_or_default(),
            ),
            None => (entry, ""),
        },
    };
    let scheme_name = uri
        .split_once(':')
        .map(|(scheme, _)| scheme)
        .filter(|scheme| is_scheme(scheme))
        .ok_or_else(|| GeolocationParseError::MissingScheme {
            entry: entry.to_owned(),
        })?;
    Ok(GeolocationValue {
        scheme: UriScheme::from_name(scheme_name),
        uri: uri.to_owned(),
        params: parse_params(params_text),
    })
}

/// RFC 3986 scheme: a letter, then letters, digits, `+`, `-`, `.`.
fn is_scheme(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.'))
}

/// Reads `;name=value;flag` parameters; empty pieces are skipped.
pub(crate) fn parse_params(text: &str) -> Vec<HeaderParam> {
    split_outside_quotes(text, ';')
        .into_iter()
        .filter_map(|piece| {
            let piece = piece.trim();
            if piece.is_empty() {
                return None;
            }
            Some(match piece.split_once('=') {
                Some((name, value)) => HeaderParam {
                    name: name.trim().to_owned(),
                    value: Some(unquote(value.trim())),
                },
                None => HeaderParam {
                    name: piece.to_owned(),
                    value: None,
                },
            })
        })
        .collect()
}

/// `Geolocation-Routing`: may proxies route on the caller's location?
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GeolocationRouting {
    /// `yes`: location may be used for routing.
    Yes,
    /// `no`: location must not be used for routing.
    No,
    /// An extension value we do not understand, as written.
    Other(String),
}

/// Parses one `Geolocation-Routing` value (`yes`, `no`, or an extension token).
pub fn parse_geolocation_routing(value: &str) -> GeolocationRouting {
    let token = value.trim();
    if token.eq_ignore_ascii_case("yes") {
        GeolocationRouting::Yes
    } else if token.eq_ignore_ascii_case("no") {
        GeolocationRouting::No
    } else {
        GeolocationRouting::Other(token.to_owned())
    }
}

/// A location error code of RFC 6442 §4.3 (e.g. 100 "Cannot Process Location").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct LocationErrorCode(pub u16);

impl LocationErrorCode {
    /// The reason phrase RFC 6442 registers for this code, if it is a registered one.
    pub fn registered_text(self) -> Option<&'static str> {
        match self.0 {
            100 => Some("Cannot Process Location"),
            200 => Some("Permission To Use Location Information"),
            201 => Some("Permission To Retransmit Location Information to a Third Party"),
            202 => Some("Permission to Route based on Location Information"),
            300 => Some("Dereference Failure"),
            _ => None,
        }
    }
}

/// A parsed `Geolocation-Error` header (sent back when location could not be used).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GeolocationErrorHeader {
    /// The three-digit code.
    pub code: LocationErrorCode,
    /// The `code="…"` text, if given.
    pub text: Option<String>,
    /// Every other parameter.
    pub params: Vec<HeaderParam>,
}

/// Why a `Geolocation-Error` value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GeolocationErrorParseError {
    /// The value does not start with a 1–3 digit code.
    #[error("Geolocation-Error {value:?} does not start with a 1-3 digit code")]
    BadCode {
        /// The value as received.
        value: String,
    },
}

/// Parses a `Geolocation-Error` value such as `100;code="Cannot Process Location"`.
pub fn parse_geolocation_error(
    value: &str,
) -> Result<GeolocationErrorHeader, GeolocationErrorParseError> {
    let bad = || GeolocationErrorParseError::BadCode {
        value: value.to_owned(),
    };
    let trimmed = value.trim();
    let (code_text, rest) = trimmed.split_once(';').unwrap_or((trimmed, ""));
    let code_text = code_text.trim();
    if code_text.is_empty() || code_text.len() > 3 || !code_text.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let code = code_text.parse::<u16>().map_err(|_| bad())?;
    let mut params = parse_params(rest);
    let text = params
        .iter()
        .position(|param| param.name.eq_ignore_ascii_case("code"))
        .and_then(|index| params.remove(index).value);
    Ok(GeolocationErrorHeader {
        code: LocationErrorCode(code),
        text,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6442_cid_reference_is_read() {
        let values = parse_geolocation("<cid:target123@atlanta.example.com>");
        let [Ok(value)] = values.as_slice() else {
            panic!("{values:?}");
        };
        assert_eq!(value.scheme, UriScheme::Cid);
        assert_eq!(
            value
                .content_id()
                .map(|cid| cid.as_str().to_owned())
                .as_deref(),
            Some("target123@atlanta.example.com")
        );
    }

    #[test]
    fn several_entries_with_params_and_commas_inside_uris() {
        let values = parse_geolocation(
            "<sips:target123@server5.atlanta.example.com>;inserted-by=\"server5, atlanta\", \
             <https://lis.example.com:8222/y77syc7cuecbh>;loc-src=lis.example.com",
        );
        let read: Vec<(UriScheme, Vec<String>)> = values
            .into_iter()
            .flatten()
            .map(|value| {
                (
                    value.scheme,
                    value.params.iter().map(|p| p.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(
            read,
            vec![
                (
                    UriScheme::Sips,
                    vec!["inserted-by=server5, atlanta".to_owned()]
                ),
                (UriScheme::Https, vec!["loc-src=lis.example.com".to_owned()]),
            ]
        );
    }

    #[test]
    fn bare_uri_is_accepted() {
        let values = parse_geolocation("pres:alice@example.com;x=1");
        let [Ok(value)] = values.as_slice() else {
            panic!("{values:?}");
        };
        assert_eq!(value.scheme, UriScheme::Pres);
        assert_eq!(value.uri, "pres:alice@example.com");
    }

    #[test]
    fn bad_entries_fail_alone() {
        let values = parse_geolocation("<cid:ok@x>, <no-scheme>, <unclosed");
        assert!(values[0].is_ok());
        assert!(matches!(
            values[1],
            Err(GeolocationParseError::MissingScheme { .. })
        ));
        assert!(matches!(
            values[2],
            Err(GeolocationParseError::Unclosed { .. })
        ));
    }

    #[test]
    fn unknown_scheme_is_kept() {
        let values = parse_geolocation("<urn:x-example:loc>");
        assert!(matches!(
            values.as_slice(),
            [Ok(GeolocationValue { scheme: UriScheme::Other(name), .. })] if name == "urn"
        ));
    }

    #[test]
    fn routing_values() {
        assert_eq!(parse_geolocation_routing(" YES "), GeolocationRouting::Yes);
        assert_eq!(parse_geolocation_routing("no"), GeolocationRouting::No);
        assert_eq!(
            parse_geolocation_routing("maybe"),
            GeolocationRouting::Other("maybe".to_owned())
        );
    }

    #[test]
    fn geolocation_error_header() {
        let parsed = parse_geolocation_error("100 ; code=\"Cannot Process Location\"");
        let Ok(parsed) = parsed else {
            panic!("{parsed:?}");
        };
        assert_eq!(parsed.code, LocationErrorCode(100));
        assert_eq!(parsed.text.as_deref(), Some("Cannot Process Location"));
        assert_eq!(
            parsed.code.registered_text(),
            Some("Cannot Process Location")
        );
        assert!(parse_geolocation_error("abc").is_err());
        assert!(parse_geolocation_error("1000").is_err());
    }
}
