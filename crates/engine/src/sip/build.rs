//! Building the messages the gateway sends: responses to a request, and requests within a
//! dialog. Output is wire bytes; header values we copy are copied verbatim.

use std::fmt::Write as _;
use std::net::SocketAddr;

use rsipstack::sip::{Header, Request, Response};

use super::parse::{self, reason_phrase};
use crate::ids::{Branch, Tag};
use crate::net::Flow;

/// What we call ourselves in Server / User-Agent headers.
pub const PRODUCT: &str = concat!("Siaga/", env!("CARGO_PKG_VERSION"));

/// Methods we answer; sent in Allow.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, REFER, NOTIFY";

/// A message body with its media type.
#[derive(Debug, Clone, Copy)]
pub struct Body<'a> {
    pub content_type: &'a str,
    pub bytes: &'a [u8],
}

/// Extra headers for a response, beyond the ones copied from the request.
#[derive(Debug, Default, Clone)]
pub struct ResponseExtras<'a> {
    /// Our To tag; added when the request's To has none (every response but 100).
    pub to_tag: Option<&'a Tag>,
    pub contact: Option<&'a str>,
    pub headers: Vec<(&'a str, String)>,
    pub body: Option<Body<'a>>,
}

/// Builds a response to `req`, received from `source`.
pub fn response(
    req: &Request,
    source: SocketAddr,
    status: u16,
    extras: &ResponseExtras,
) -> Vec<u8> {
    let mut out = String::with_capacity(512);
    let _ = write!(out, "SIP/2.0 {status} {}\r\n", reason_phrase(status));
    let mut first_via = true;
    for h in req.headers.iter() {
        match h {
            Header::Via(v) => {
                for (i, entry) in super::parse::split_header_list(v.value())
                    .into_iter()
                    .enumerate()
                {
                    out.push_str("Via: ");
                    if first_via && i == 0 {
                        push_top_via(&mut out, entry, source);
                        first_via = false;
                    } else {
                        out.push_str(entry);
                    }
                    out.push_str("\r\n");
                }
            }
            Header::RecordRoute(rr) if (101..300).contains(&status) => {
                // Dialog-creating responses echo Record-Route (RFC 3261 §12.1.1).
                let _ = write!(out, "Record-Route: {}\r\n", rr.value());
            }
            _ => {}
        }
    }
    for h in req.headers.iter() {
        match h {
            Header::From(v) => {
                let _ = write!(out, "From: {}\r\n", v.value());
            }
            Header::To(v) => {
                out.push_str("To: ");
                out.push_str(v.value());
                if let Some(tag) = extras.to_tag
                    && status != 100
                    && !has_tag(v.value())
                {
                    let _ = write!(out, ";tag={tag}");
                }
                out.push_str("\r\n");
            }
            Header::CallId(v) => {
                let _ = write!(out, "Call-ID: {}\r\n", v.value());
            }
            Header::CSeq(v) => {
                let _ = write!(out, "CSeq: {}\r\n", v.value());
            }
            Header::Timestamp(v) if status == 100 => {
                let _ = write!(out, "Timestamp: {}\r\n", v.value());
            }
            _ => {}
        }
    }
    if let Some(contact) = extras.contact {
        let _ = write!(out, "Contact: {contact}\r\n");
    }
    for (name, value) in &extras.headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    let _ = write!(out, "Server: {PRODUCT}\r\n");
    finish(out, extras.body)
}

fn finish(mut head: String, body: Option<Body>) -> Vec<u8> {
    match body {
        Some(b) => {
            let _ = write!(
                head,
                "Content-Type: {}\r\nContent-Length: {}\r\n\r\n",
                b.content_type,
                b.bytes.len()
            );
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(b.bytes);
            bytes
        }
        None => {
            head.push_str("Content-Length: 0\r\n\r\n");
            head.into_bytes()
        }
    }
}

/// True when a From/To value carries a tag parameter (outside the URI's angle brackets).
pub fn has_tag(value: &str) -> bool {
    let params = match value.rfind('>') {
        Some(i) => &value[i..],
        None => value,
    };
    params
        .split(';')
        .skip(1)
        .any(|p| p.trim().to_ascii_lowercase().starts_with("tag="))
}

/// RFC 3261 §18.2.1 / RFC 3581: tell the client where its request really came from, so
/// callers behind NAT get their responses.
fn push_top_via(out: &mut String, via: &str, source: SocketAddr) {
    let lower = via.to_ascii_lowercase();
    let sent_by_host = via
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.split(';').next())
        .map(host_of)
        .unwrap_or_default();
    let src_ip = source.ip().to_string();
    let mut rebuilt = String::with_capacity(via.len() + 40);
    for (i, part) in via.split(';').enumerate() {
        if i > 0 {
            rebuilt.push(';');
        }
        if part.trim().eq_ignore_ascii_case("rport") {
            let _ = write!(rebuilt, "rport={}", source.port());
        } else {
            rebuilt.push_str(part);
        }
    }
    out.push_str(&rebuilt);
    if sent_by_host != src_ip && !lower.contains(";received=") {
        let _ = write!(out, ";received={src_ip}");
    }
}

fn host_of(sent_by: &str) -> String {
    let s = sent_by.trim();
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_owned();
    }
    s.split(':').next().unwrap_or_default().to_owned()
}

/// The local end of a flow as a Via sent-by / URI host:port.
pub fn host_port(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// Everything needed to send a request inside an existing dialog.
#[derive(Debug, Clone)]
pub struct DialogRequest<'a> {
    pub method: &'a str,
    pub request_uri: &'a str,
    pub via_transport: &'a str,
    pub local: SocketAddr,
    pub branch: &'a Branch,
    /// Our identity with our tag (name-addr incl. `;tag=`).
    pub from: &'a str,
    /// The peer's identity with its tag.
    pub to: &'a str,
    pub call_id: &'a str,
    pub cseq: u32,
    pub route_set: &'a [String],
    pub contact: Option<&'a str>,
    pub headers: Vec<(&'a str, String)>,
    pub body: Option<Body<'a>>,
}

pub fn dialog_request(r: &DialogRequest) -> Vec<u8> {
    let mut out = String::with_capacity(512);
    // Over TLS our Via names our listener: `alias` lets the peer send its requests back on
    // this connection instead of opening one to it (RFC 5923).
    let alias = if r.via_transport == "TLS" {
        ";alias"
    } else {
        ""
    };
    let _ = write!(
        out,
        "{} {} SIP/2.0\r\nVia: SIP/2.0/{} {};branch={};rport{alias}\r\nMax-Forwards: 70\r\n",
        r.method,
        r.request_uri,
        r.via_transport,
        host_port(r.local),
        r.branch
    );
    for route in r.route_set {
        let _ = write!(out, "Route: {route}\r\n");
    }
    let _ = write!(
        out,
        "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {}\r\n",
        r.from, r.to, r.call_id, r.cseq, r.method
    );
    if let Some(c) = r.contact {
        let _ = write!(out, "Contact: {c}\r\n");
    }
    for (name, value) in &r.headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    let _ = write!(out, "User-Agent: {PRODUCT}\r\n");
    finish(out, r.body)
}

/// The Contact we advertise on a flow. In a `sips:` dialog (its request was to a `sips:` URI)
/// it must be `sips:` too (RFC 3261 §8.1.1.8, §12.1.1); otherwise over TLS it is `sip:` with
/// `;transport=tls` (RFC 5630 §4.2 keeps the two apart, and peers such as baresip 1.0 cannot
/// send to a `sips:` Contact at all).
pub fn contact_for(flow: Flow, sips_dialog: bool) -> String {
    let host = host_port(flow.local);
    match flow.transport {
        crate::net::Transport::Tls if sips_dialog => format!("<sips:siaga@{host}>"),
        crate::net::Transport::Tls => format!("<sip:siaga@{host};transport=tls>"),
        crate::net::Transport::Tcp => format!("<sip:siaga@{host};transport=tcp>"),
        crate::net::Transport::Udp => format!("<sip:siaga@{host}>"),
    }
}

/// The ACK a client INVITE transaction sends for a 3xx–6xx (RFC 3261 §17.1.1.3): the
/// INVITE's Via (same branch), Call-ID, From and CSeq number, the response's To.
pub(crate) fn ack_for_failure(resp: &Response) -> Vec<u8> {
    let get = |pick: fn(&Header) -> bool| {
        resp.headers
            .iter()
            .find(|h| pick(h))
            .map(|h| h.value().to_owned())
            .unwrap_or_default()
    };
    let via = get(|h| matches!(h, Header::Via(_)));
    let via = parse::split_header_list(&via)
        .first()
        .map(|v| (*v).to_owned())
        .unwrap_or_default();
    let from = get(|h| matches!(h, Header::From(_)));
    let to = get(|h| matches!(h, Header::To(_)));
    let call_id = get(|h| matches!(h, Header::CallId(_)));
    let cseq = get(|h| matches!(h, Header::CSeq(_)));
    let num = cseq.split_whitespace().next().unwrap_or("1");
    let request_uri = crate::sip::read::uri_of(&to);
    format!(
        "ACK {request_uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\n\
         Call-ID: {call_id}\r\nCSeq: {num} ACK\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::parse::{Framing, Message, parse};

    const INVITE: &str = "INVITE sip:112@gw SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa;rport, SIP/2.0/UDP p1:5060;branch=z9hG4bKb\r\n\
        Record-Route: <sip:p1;lr>\r\n\
        From: <sip:caller@a>;tag=x\r\nTo: <sip:112@gw>\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\n\
        Content-Length: 0\r\n\r\n";

    /// Over TLS the Contact is sips: only in a sips: dialog; Via says TLS and offers the
    /// connection back (RFC 5923).
    #[test]
    fn tls_contact_and_via_name_the_transport() {
        let flow = |transport| Flow {
            transport,
            remote: "192.0.2.9:5061".parse().expect("addr"),
            local: "192.0.2.1:5061".parse().expect("addr"),
            conn: None,
        };
        use crate::net::Transport;
        assert_eq!(
            contact_for(flow(Transport::Tls), true),
            "<sips:siaga@192.0.2.1:5061>"
        );
        assert_eq!(
            contact_for(flow(Transport::Tls), false),
            "<sip:siaga@192.0.2.1:5061;transport=tls>"
        );
        assert_eq!(
            contact_for(flow(Transport::Udp), true),
            "<sip:siaga@192.0.2.1:5061>"
        );
        let bytes = dialog_request(&DialogRequest {
            method: "OPTIONS",
            request_uri: "sips:desk@192.0.2.9",
            via_transport: Transport::Tls.as_via(),
            local: flow(Transport::Tls).local,
            branch: &crate::ids::Branch("z9hG4bKt".into()),
            from: "<sip:siaga@192.0.2.1>;tag=a",
            to: "<sips:desk@192.0.2.9>",
            call_id: "c@x",
            cseq: 1,
            route_set: &[],
            contact: None,
            headers: Vec::new(),
            body: None,
        });
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("Via: SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bKt;rport;alias\r\n"),
            "{text}"
        );
    }

    fn request() -> Request {
        match parse(INVITE.as_bytes(), Framing::Datagram).map(|m| m.message) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_response_echoes_vias_adds_received_rport_and_our_tag() {
        let tag = Tag("gw1".into());
        let src: SocketAddr = "198.51.100.7:40000".parse().expect("addr");
        let bytes = response(
            &request(),
            src,
            180,
            &ResponseExtras {
                to_tag: Some(&tag),
                ..Default::default()
            },
        );
        let text = String::from_utf8(bytes.clone()).expect("utf8");
        assert!(text.starts_with("SIP/2.0 180 Ringing\r\n"));
        assert!(text.contains(
            "Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa;rport=40000;received=198.51.100.7\r\n"
        ));
        assert!(text.contains("Via: SIP/2.0/UDP p1:5060;branch=z9hG4bKb\r\n"));
        assert!(text.contains("To: <sip:112@gw>;tag=gw1\r\n"));
        assert!(text.contains("Record-Route: <sip:p1;lr>\r\n"));
        // What we send parses with our own parser.
        let parsed = parse(&bytes, Framing::Datagram).expect("parses");
        assert_eq!(parsed.to_tag, Some(tag));
    }

    #[test]
    fn has_tag_ignores_uri_parameters() {
        assert!(!has_tag("<sip:a@b;tag=no>"));
        assert!(has_tag("<sip:a@b>;tag=yes"));
        assert!(has_tag("sip:a@b;tag=yes"));
    }
}
