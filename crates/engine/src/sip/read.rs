//! Reading what a peer sent: header values, SDP bodies, URIs and tags, the caller's identity.

use rsipstack::sip::{Header, Request, Response};

use crate::sip::parse;

pub(crate) fn header_value(req: &Request, pick: impl Fn(&Header) -> bool) -> Option<String> {
    req.headers
        .iter()
        .find(|h| pick(h))
        .map(|h| h.value().to_owned())
}

pub(crate) fn header_value_resp(resp: &Response, pick: impl Fn(&Header) -> bool) -> Option<String> {
    resp.headers
        .iter()
        .find(|h| pick(h))
        .map(|h| h.value().to_owned())
}

/// The SDP of a request, whether the body is plain SDP or multipart with an SDP part.
pub(crate) fn sdp_of(req: &Request) -> Option<&[u8]> {
    if req.body.is_empty() {
        return None;
    }
    let content_type = header_value(req, |h| matches!(h, Header::ContentType(_)));
    siaga_location::find_sdp(content_type.as_deref(), &req.body)
}

/// The SDP of a response (plain or inside multipart).
pub(crate) fn sdp_of_response(resp: &Response) -> Option<&[u8]> {
    if resp.body.is_empty() {
        return None;
    }
    let content_type = resp
        .headers
        .iter()
        .find(|h| matches!(h, Header::ContentType(_)))
        .map(|h| h.value().to_owned());
    siaga_location::find_sdp(content_type.as_deref(), &resp.body)
}

/// The URI inside the first Contact value.
pub(crate) fn contact_uri(req: &Request) -> Option<String> {
    let value = header_value(req, |h| matches!(h, Header::Contact(_)))?;
    let first = parse::split_header_list(&value)
        .into_iter()
        .next()?
        .to_owned();
    match (first.find('<'), first.find('>')) {
        (Some(a), Some(b)) if a < b => Some(first[a + 1..b].to_owned()),
        _ => first.split(';').next().map(|s| s.trim().to_owned()),
    }
}

/// The URI inside a name-addr or addr-spec.
pub(crate) fn uri_of(value: &str) -> String {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => value[a + 1..b].to_owned(),
        _ => value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// Removes a `;tag=` header parameter from a From/To value.
pub(crate) fn without_tag(value: &str) -> String {
    let (head, params) = match value.rfind('>') {
        Some(i) => value.split_at(i + 1),
        None => match value.find(';') {
            Some(i) => value.split_at(i),
            None => (value, ""),
        },
    };
    let kept: Vec<&str> = params
        .split(';')
        .filter(|p| !p.trim().is_empty() && !p.trim().to_ascii_lowercase().starts_with("tag="))
        .collect();
    let mut out = head.to_owned();
    for p in kept {
        out.push(';');
        out.push_str(p.trim());
    }
    out
}

/// The CSeq number of a request (0 if unreadable; our own parser validated it already).
pub(crate) fn cseq_of(req: &Request) -> u32 {
    req.headers
        .iter()
        .find(|h| matches!(h, Header::CSeq(_)))
        .and_then(|h| h.value().split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The port of the `m=audio` line of an SDP we wrote.
pub(crate) fn sdp_port(sdp: &str) -> u16 {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_removed_but_other_params_kept() {
        assert_eq!(
            without_tag("\"A\" <sip:a@b>;tag=1;x=y"),
            "\"A\" <sip:a@b>;x=y"
        );
        assert_eq!(without_tag("sip:a@b;tag=1"), "sip:a@b");
    }
}
