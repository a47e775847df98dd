//! What the gateway supports (RFC 3261 §8.2.2): extensions, body types, and the headers its
//! plain answers carry.

use rsipstack::sip::{Header, Method, Request};

use crate::sip::build::ALLOW;
use crate::sip::read::header_value;

/// The headers a plain final response outside a dialog carries for its status.
pub(crate) fn plain_headers(req: &Request, status: u16) -> Vec<(&'static str, String)> {
    let mut headers = Vec::new();
    if matches!(status, 200 | 405) {
        headers.push(("Allow", ALLOW.to_owned()));
    }
    if status == 200 && req.method == Method::Options {
        headers.push(("Accept", "application/sdp".to_owned()));
    }
    if status == 503 {
        headers.push(("Retry-After", "5".to_owned()));
    }
    headers
}

/// Extensions we support (RFC 3261 §8.2.2.3): anything else in Require is refused with 420,
/// except on an emergency call, which is never refused for it.
const SUPPORTED: &[&str] = &["replaces", "timer", "path", "outbound", "gruu"];

/// Body types we can read.
const ACCEPTED_TYPES: &[&str] = &[
    "application/sdp",
    "multipart/mixed",
    "multipart/related",
    "application/pidf+xml",
    "application/dtmf-relay",
    "application/dtmf",
    "text/plain",
];

/// Why a request cannot be served as sent: `(status, extra headers)`.
pub(crate) fn unsupported(req: &Request) -> Option<(u16, Vec<(&'static str, String)>)> {
    let unknown: Vec<String> = req
        .headers
        .iter()
        .filter_map(|h| match h {
            Header::Require(v) => Some(v.value().to_owned()),
            _ => None,
        })
        .flat_map(|v| {
            v.split(',')
                .map(|t| t.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|t| !t.is_empty() && !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
        .collect();
    if !unknown.is_empty() {
        return Some((420, vec![("Unsupported", unknown.join(", "))]));
    }
    if !req.body.is_empty() {
        let content_type = header_value(req, |h| matches!(h, Header::ContentType(_)));
        let essence = content_type
            .as_deref()
            .and_then(|ct| ct.split(';').next())
            .map(|e| e.trim().to_ascii_lowercase());
        let encoding = header_value(req, |h| matches!(h, Header::ContentEncoding(_)));
        if essence.is_some_and(|e| !ACCEPTED_TYPES.contains(&e.as_str()))
            || encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"))
        {
            return Some((
                415,
                vec![
                    ("Accept", ACCEPTED_TYPES.join(", ")),
                    ("Accept-Encoding", "identity".to_owned()),
                ],
            ));
        }
    }
    if req.method == Method::Invite
        && let Some(accept) = header_value(req, |h| matches!(h, Header::Accept(_)))
    {
        let takes_sdp = accept.split(',').any(|a| {
            let a = a
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            matches!(a.as_str(), "application/sdp" | "application/*" | "*/*")
        });
        if !accept.trim().is_empty() && !takes_sdp {
            return Some((406, vec![("Accept", "application/sdp".to_owned())]));
        }
    }
    None
}
