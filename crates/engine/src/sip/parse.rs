//! Tolerant tokenizing plus strict validation of one SIP message.
//!
//! rsipstack's own `parse_message` is lenient in ways a 112 gateway cannot accept: it stops
//! at the first non-UTF-8 header line (silently losing every header after it), drops header
//! lines without a colon, reads a bad Content-Length as 0 and has a closed method set. So the
//! framing of the message (start line, header lines, folding, Content-Length) is ours, and the
//! message is then built from rsipstack's types (`Method`, `Uri`, `Headers`, typed Via/CSeq/
//! From/To), which cope with `urn:service:sos`, `tel:` and IPv6.
//!
//! Every input gives `Ok` or a [`Rejection`]; nothing here panics on any byte string.

use rsipstack::sip::headers::make_header;
use rsipstack::sip::typed::{From as TypedFrom, To as TypedTo};
use rsipstack::sip::{Headers, Method, Request, Response, StatusCode, Uri, Version, parse_uri};

use crate::ids::{Branch, CallId, Tag};

/// The largest message we accept (UDP datagrams and TCP frames alike).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A message that passed validation, with the fields every layer needs already typed.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub message: Message,
    pub call_id: CallId,
    pub cseq: u32,
    /// The CSeq method as written (upper-case for the known methods).
    pub cseq_method: String,
    pub from_tag: Option<Tag>,
    pub to_tag: Option<Tag>,
    pub top_via: TopVia,
}

#[derive(Debug, Clone)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Message {
    pub fn as_request(&self) -> Option<&Request> {
        match self {
            Message::Request(r) => Some(r),
            Message::Response(_) => None,
        }
    }
}

/// The parts of the topmost Via the transaction layer and the response path need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopVia {
    /// The raw header value of the first Via entry, for keying RFC 2543 transactions.
    pub raw: String,
    pub branch: Option<Branch>,
    pub sent_by: String,
}

impl TopVia {
    /// RFC 3261 branches start with the magic cookie; older peers' do not.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch
            .as_ref()
            .is_some_and(|b| b.as_str().starts_with("z9hG4bK"))
    }
}

/// Why a message was not accepted, and the stateless reply to send when one can be formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: String,
    /// `None` when no reply can be formed (a response, an ACK, or the headers needed for a
    /// reply are missing): the message is dropped and logged.
    pub reply: Option<Vec<u8>>,
}

/// Where the header section ends and the body begins.
struct Split<'a> {
    head: &'a [u8],
    body: &'a [u8],
}

fn split_head(data: &[u8]) -> Option<Split<'_>> {
    // The first empty line ends the headers. CRLF is the rule; a bare LF is tolerated
    // because some embedded phones emit it and the caller must still be answered.
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\n' {
            let rest = &data[i + 1..];
            if rest.starts_with(b"\r\n") {
                return Some(Split {
                    head: &data[..i + 1],
                    body: &rest[2..],
                });
            }
            if rest.starts_with(b"\n") {
                return Some(Split {
                    head: &data[..i + 1],
                    body: &rest[1..],
                });
            }
        }
        i += 1;
    }
    None
}

/// Header lines after unfolding: `(name, value)` in order, names as written.
type RawHeaders = Vec<(String, String)>;

enum StartLine {
    Request {
        method: String,
        uri: String,
        version: String,
    },
    Response {
        version: String,
        code: String,
        reason: String,
    },
}

fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

fn parse_start_line(line: &str) -> Result<StartLine, String> {
    if line.starts_with("SIP/") || line.starts_with("sip/") {
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_owned();
        let code = parts.next().unwrap_or_default().to_owned();
        let reason = parts.next().unwrap_or_default().to_owned();
        return Ok(StartLine::Response {
            version,
            code,
            reason,
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly single spaces (RFC 3261
    // §25.1); extra whitespace is one of RFC 4475's invalid cases.
    let parts: Vec<&str> = line.split(' ').collect();
    match parts.as_slice() {
        [method, uri, version] if !method.is_empty() && !uri.is_empty() && !version.is_empty() => {
            if !method.chars().all(is_token_char) {
                return Err(format!("method {method:?} is not a token"));
            }
            Ok(StartLine::Request {
                method: (*method).to_owned(),
                uri: (*uri).to_owned(),
                version: (*version).to_owned(),
            })
        }
        _ => Err("malformed Request-Line (expected `METHOD SP URI SP SIP/2.0`)".to_owned()),
    }
}

fn unfold_headers(head_lines: &mut dyn Iterator<Item = &[u8]>) -> Result<RawHeaders, String> {
    let mut headers: RawHeaders = Vec::new();
    for raw in head_lines {
        if raw.is_empty() {
            break;
        }
        // Lossy, not strict: a Latin-1 display name must not cost the caller their call.
        let line = String::from_utf8_lossy(raw);
        if line.starts_with(' ') || line.starts_with('\t') {
            match headers.last_mut() {
                Some((_, value)) => {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                None => return Err("continuation line before the first header".to_owned()),
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!(
                "header line without a colon: {:?}",
                truncate(&line)
            ));
        };
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.chars().all(is_token_char) {
            return Err(format!("invalid header name {:?}", truncate(name)));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(headers)
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Canonical long name for the headers whose presence we check.
fn canonical(name: &str) -> &str {
    const COMPACT: &[(&str, &str)] = &[
        ("i", "call-id"),
        ("f", "from"),
        ("t", "to"),
        ("v", "via"),
        ("l", "content-length"),
        ("c", "content-type"),
        ("m", "contact"),
    ];
    for (short, long) in COMPACT {
        if name.eq_ignore_ascii_case(short) {
            return long;
        }
    }
    name
}

fn values<'a>(headers: &'a RawHeaders, long_name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .filter(move |(n, _)| canonical(n).eq_ignore_ascii_case(long_name))
        .map(|(_, v)| v.as_str())
}

/// Splits a header value at top-level commas (outside quotes and angle brackets).
pub fn split_header_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth_angle = false;
    let mut in_quote = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '<' if !in_quote => depth_angle = true,
            '>' if !in_quote => depth_angle = false,
            ',' if !in_quote && !depth_angle => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

/// Every Record-Route value of a message, in order (each header may hold several).
pub fn record_routes(headers: &rsipstack::sip::Headers) -> Vec<String> {
    headers
        .iter()
        .filter_map(|h| match h {
            rsipstack::sip::Header::RecordRoute(rr) => Some(rr.value()),
            _ => None,
        })
        .flat_map(split_header_list)
        .map(str::to_owned)
        .collect()
}

/// Context for forming a stateless error reply from headers that may themselves be broken.
struct ReplyContext<'a> {
    headers: &'a RawHeaders,
    is_ack: bool,
}

impl ReplyContext<'_> {
    fn reject(&self, status: u16, reason: impl Into<String>) -> Rejection {
        let reason = reason.into();
        let reply = if self.is_ack {
            None
        } else {
            stateless_reply(self.headers, status, &reason)
        };
        Rejection {
            status,
            reason,
            reply,
        }
    }
}

/// The standard phrase for the statuses this module produces.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        _ => "Unknown",
    }
}

/// A reply built only from the raw header strings, for requests we could not fully parse.
/// Needs Via, From, To and Call-ID; CSeq is echoed when present.
fn stateless_reply(headers: &RawHeaders, status: u16, why: &str) -> Option<Vec<u8>> {
    // Only Via is indispensable: it is how the reply finds its way back. The client matches
    // it by branch and CSeq; From/To/Call-ID are echoed when the request had them.
    let vias: Vec<&str> = values(headers, "via").collect();
    if vias.is_empty() {
        return None;
    }
    let from = values(headers, "from").next().unwrap_or_default();
    let to = values(headers, "to").next().unwrap_or_default();
    let call_id = values(headers, "call-id").next().unwrap_or_default();
    let mut out = format!("SIP/2.0 {status} {}\r\n", reason_phrase(status));
    for via in vias {
        out.push_str("Via: ");
        out.push_str(via);
        out.push_str("\r\n");
    }
    out.push_str("From: ");
    out.push_str(from);
    out.push_str("\r\nTo: ");
    out.push_str(to);
    if !to.contains(";tag=") {
        out.push_str(";tag=siaga-reject");
    }
    out.push_str("\r\nCall-ID: ");
    out.push_str(call_id);
    out.push_str("\r\n");
    if let Some(cseq) = values(headers, "cseq").next() {
        out.push_str("CSeq: ");
        out.push_str(cseq);
        out.push_str("\r\n");
    }
    // Say what was wrong: the engineer reading a trace should not have to guess.
    let why: String = why
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .take(120)
        .collect();
    out.push_str("Warning: 399 siaga \"");
    out.push_str(&why);
    out.push_str("\"\r\nContent-Length: 0\r\n\r\n");
    Some(out.into_bytes())
}

/// Which transport the bytes came over: on a stream the framer has already cut the body to
/// Content-Length, on a datagram a short body is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Datagram,
    Stream,
}

/// Parses and validates one message.
pub fn parse(data: &[u8], framing: Framing) -> Result<Inbound, Rejection> {
    let drop = |reason: String| Rejection {
        status: 400,
        reason,
        reply: None,
    };
    if data.len() > MAX_MESSAGE_BYTES {
        return Err(drop(format!(
            "message of {} bytes is too large",
            data.len()
        )));
    }
    let split = match (split_head(data), framing) {
        (Some(split), _) => split,
        // A datagram is the whole message: a missing final empty line is a sender's slip
        // we can work around, not a reason to lose the call.
        (None, Framing::Datagram) => Split {
            head: data,
            body: &[],
        },
        (None, Framing::Stream) => {
            return Err(drop("no empty line ends the header section".to_owned()));
        }
    };
    let mut head_lines = lines(split.head);
    let start_raw = head_lines.next().unwrap_or_default();
    let start_str = String::from_utf8_lossy(start_raw);
    let start = parse_start_line(&start_str);
    let headers = unfold_headers(&mut head_lines);

    let is_ack = matches!(&start, Ok(StartLine::Request { method, .. }) if method == "ACK");
    let is_response = matches!(&start, Ok(StartLine::Response { .. }));
    let headers = match headers {
        Ok(h) => h,
        Err(why) => {
            // Without a header list we cannot address a reply.
            return Err(drop(why));
        }
    };
    let ctx = ReplyContext {
        headers: &headers,
        is_ack: is_ack || is_response,
    };
    let start = start.map_err(|why| ctx.reject(400, why))?;

    // Content-Length: digits only, never two different values, never more than we have.
    let mut content_length: Option<usize> = None;
    for v in values(&headers, "content-length") {
        let n: usize = v
            .parse()
            .ok()
            .filter(|_| v.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| ctx.reject(400, format!("invalid Content-Length {v:?}")))?;
        if content_length.is_some_and(|prev| prev != n) {
            return Err(ctx.reject(400, "conflicting Content-Length values"));
        }
        content_length = Some(n);
    }
    let body = match (content_length, framing) {
        (Some(n), _) if n > split.body.len() => {
            return Err(ctx.reject(
                400,
                format!(
                    "Content-Length {n} is larger than the {} body bytes received",
                    split.body.len()
                ),
            ));
        }
        (Some(n), _) => split.body.get(..n).unwrap_or_default().to_vec(),
        (None, Framing::Datagram) => split.body.to_vec(),
        (None, Framing::Stream) => Vec::new(),
    };

    // Headers that must be there exactly once (RFC 3261 §8.1.1, §20).
    for name in ["call-id", "cseq", "from", "to"] {
        match values(&headers, name).count() {
            1 => {}
            0 => return Err(ctx.reject(400, format!("missing {name} header"))),
            _ => {
                return Err(ctx.reject(400, format!("{name} header appears more than once")));
            }
        }
    }
    let via_values: Vec<&str> = values(&headers, "via")
        .flat_map(split_header_list)
        .collect();
    let mut parsed_vias = Vec::with_capacity(via_values.len());
    for entry in &via_values {
        parsed_vias.push(parse_via(entry).map_err(|why| {
            ctx.reject(400, format!("malformed Via {:?}: {why}", truncate(entry)))
        })?);
    }
    if values(&headers, "via").any(|v| v.split(',').any(|p| p.trim().is_empty())) {
        return Err(ctx.reject(400, "empty Via entry"));
    }
    let top_via = match parsed_vias.into_iter().next() {
        Some(v) => v,
        None => return Err(drop("missing Via header".to_owned())),
    };
    let call_id_raw = values(&headers, "call-id").next().unwrap_or_default();
    if call_id_raw.is_empty() || call_id_raw.contains(char::is_whitespace) {
        return Err(ctx.reject(400, "malformed Call-ID"));
    }
    let cseq_raw = values(&headers, "cseq").next().unwrap_or_default();
    let (cseq, cseq_method) = parse_cseq(cseq_raw).map_err(|why| ctx.reject(400, why))?;
    let from_raw = values(&headers, "from").next().unwrap_or_default();
    let to_raw = values(&headers, "to").next().unwrap_or_default();
    let from_tag = parse_tag_of(from_raw, true).map_err(|why| ctx.reject(400, why))?;
    let to_tag = parse_tag_of(to_raw, false).map_err(|why| ctx.reject(400, why))?;
    if let Some(v) = values(&headers, "max-forwards").next()
        && v.parse::<u8>().is_err()
    {
        return Err(ctx.reject(400, format!("invalid Max-Forwards {v:?}")));
    }

    let mut typed_headers = Headers::default();
    for (name, value) in &headers {
        typed_headers.push(make_header(name, value.clone()));
    }

    let message = match start {
        StartLine::Response {
            version,
            code,
            reason,
        } => {
            if !version.eq_ignore_ascii_case("SIP/2.0") {
                return Err(drop(format!("response with version {version:?}")));
            }
            let code: u16 = code
                .parse()
                .ok()
                .filter(|c| (100..=699).contains(c) && code.len() == 3)
                .ok_or_else(|| drop(format!("invalid status code {code:?}")))?;
            let status_code = StatusCode::try_from((code, reason.trim()))
                .map_err(|e| drop(format!("status code: {e}")))?;
            Message::Response(Response {
                status_code,
                wire_reason: None,
                version: Version::V2,
                headers: typed_headers,
                body,
            })
        }
        StartLine::Request {
            method,
            uri,
            version,
        } => {
            if !version.eq_ignore_ascii_case("SIP/2.0") {
                return Err(if version.to_ascii_uppercase().starts_with("SIP/") {
                    ctx.reject(505, format!("SIP version {version:?} is not supported"))
                } else {
                    ctx.reject(400, format!("invalid SIP version {version:?}"))
                });
            }
            if method != cseq_method {
                return Err(ctx.reject(
                    400,
                    format!("CSeq method {cseq_method:?} does not match request method {method:?}"),
                ));
            }
            let uri = parse_request_uri(&uri).map_err(|(status, why)| ctx.reject(status, why))?;
            // SIP methods are case-sensitive: `invite` is an extension method, not INVITE.
            let known = method
                .parse::<Method>()
                .ok()
                .filter(|m| m.to_string() == method);
            let Some(method) = known else {
                return Err(ctx.reject(501, format!("method {method:?} is not implemented")));
            };
            Message::Request(Request {
                method,
                uri,
                version: Version::V2,
                headers: typed_headers,
                body,
            })
        }
    };
    Ok(Inbound {
        message,
        call_id: CallId(call_id_raw.to_owned()),
        cseq,
        cseq_method,
        from_tag,
        to_tag,
        top_via,
    })
}

/// One Via entry: `SIP/2.0/transport sent-by *(;param)`. The transport may be one we do not
/// speak (a lower hop's SCTP): only the structure is checked.
fn parse_via(entry: &str) -> Result<TopVia, String> {
    // RFC 3261 allows linear white space around "/", ";", "=" and ":" (SLASH, SEMI, EQUAL,
    // COLON): squeeze it out so `SIP / 2.0 / UDP host ; branch = x` reads normally.
    let squeezed = squeeze_separators(entry.trim(), &['/', ';', '=', ':']);
    let entry = squeezed.as_str();
    let (protocol, rest) = entry
        .split_once([' ', '\t'])
        .ok_or("no sent-by after the protocol")?;
    let parts: Vec<&str> = protocol.split('/').map(str::trim).collect();
    if parts.len() != 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.chars().all(is_token_char))
    {
        return Err(format!(
            "protocol {protocol:?} is not name/version/transport"
        ));
    }
    let mut params = rest.split(';');
    let sent_by = params.next().unwrap_or_default().trim();
    let host_ok = if let Some(v6) = sent_by.strip_prefix('[') {
        v6.split_once(']').is_some_and(|(ip, port)| {
            let ip = ip.replacen(":::", "::", 1); // RFC 5118 §4.10
            ip.parse::<std::net::Ipv6Addr>().is_ok() && valid_port_suffix(port)
        })
    } else {
        let (host, port) = match sent_by.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (sent_by, None),
        };
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            && port.is_none_or(|p| p.parse::<u16>().is_ok())
    };
    if !host_ok {
        return Err(format!("sent-by {sent_by:?} is not host[:port]"));
    }
    let mut branch = None;
    for param in params {
        let param = param.trim();
        if param.is_empty() {
            return Err("empty parameter".to_owned());
        }
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        if name.trim().eq_ignore_ascii_case("branch") {
            branch = Some(Branch(value.trim().to_owned()));
        }
    }
    Ok(TopVia {
        raw: entry.to_owned(),
        branch,
        sent_by: sent_by.to_owned(),
    })
}

fn squeeze_separators(s: &str, seps: &[char]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.chars() {
        if c == ' ' || c == '\t' {
            pending_space = true;
            continue;
        }
        if pending_space && !seps.contains(&c) && !out.ends_with(seps) && !out.is_empty() {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
    }
    out
}

fn valid_port_suffix(s: &str) -> bool {
    s.is_empty()
        || s.strip_prefix(':')
            .is_some_and(|p| p.parse::<u16>().is_ok())
}

fn parse_cseq(raw: &str) -> Result<(u32, String), String> {
    let mut parts = raw.split_whitespace();
    let (Some(num), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("malformed CSeq {:?}", truncate(raw)));
    };
    // RFC 3261 §8.1.1.5: the number is below 2**31.
    let num: u32 = num
        .parse()
        .ok()
        .filter(|n| *n < 1 << 31 && num.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("CSeq number {num:?} is out of range"))?;
    if !method.chars().all(is_token_char) {
        return Err(format!("CSeq method {method:?} is not a token"));
    }
    Ok((num, method.to_owned()))
}

/// Checks the From/To value parses and returns its tag. From requires a tag only in RFC 3261
/// peers; a missing one is tolerated (RFC 2543 interop).
fn parse_tag_of(raw: &str, is_from: bool) -> Result<Option<Tag>, String> {
    let tolerated = three_colons_tolerated(raw);
    let raw = tolerated.as_deref().unwrap_or(raw);
    let tag = if is_from {
        TypedFrom::parse(raw)
            .map_err(|e| format!("malformed From: {e}"))?
            .tag()
            .map(|t| Tag(t.value().to_owned()))
    } else {
        TypedTo::parse(raw)
            .map_err(|e| format!("malformed To: {e}"))?
            .tag()
            .map(|t| Tag(t.value().to_owned()))
    };
    Ok(tag)
}

/// Parses the Request-URI. Schemes we cannot route get 416 (RFC 3261 §8.2.2.1), bad syntax 400.
fn parse_request_uri(raw: &str) -> Result<Uri, (u16, String)> {
    let Some((scheme, rest)) = raw.split_once(':') else {
        return Err((
            400,
            format!("Request-URI {:?} has no scheme", truncate(raw)),
        ));
    };
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err((
            400,
            format!("Request-URI {:?} has no scheme", truncate(raw)),
        ));
    }
    if rest.is_empty() {
        return Err((400, "empty Request-URI".to_owned()));
    }
    let lower = scheme.to_ascii_lowercase();
    if !matches!(lower.as_str(), "sip" | "sips" | "tel" | "urn") {
        return Err((416, format!("URI scheme {scheme:?} is not supported")));
    }
    parse_uri(raw)
        .or_else(|e| {
            // RFC 5118 §4.10: be liberal with RFC 3261's three-colon IPv6 reference.
            match three_colons_tolerated(raw) {
                Some(fixed) => parse_uri(&fixed),
                None => Err(e),
            }
        })
        .map_err(|e| (400, format!("malformed Request-URI: {e}")))
}

/// `raw` with a `:::` inside an IPv6 reference (`[2001:db8:::192.0.2.1]`, which RFC 3261's
/// ABNF let through until RFC 5954) read as the `::` it stands for; `None` if there is none.
fn three_colons_tolerated(raw: &str) -> Option<String> {
    let open = raw.find('[')?;
    let close = open + raw.get(open..)?.find(']')?;
    let inside = raw.get(open..close)?;
    inside.contains(":::").then(|| {
        format!(
            "{}{}{}",
            &raw[..open],
            inside.replacen(":::", "::", 1),
            &raw[close..]
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE urn:service:sos SIP/2.0\r\n\
        Via: SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bK776asdhds\r\n\
        Max-Forwards: 70\r\n\
        To: <urn:service:sos>\r\n\
        From: \"Ani\" <tel:+6281234567890>;tag=1928301774\r\n\
        Call-ID: a84b4c76e66710@pc33\r\n\
        CSeq: 314159 INVITE\r\n\
        Contact: <sip:ani@[2001:db8::9]>\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 4\r\n\r\nv=0\n";

    #[test]
    fn rfc5118_three_colon_reference_parses() {
        let msg = ok("OPTIONS sip:user@[2001:db8:::192.0.2.1] SIP/2.0\r\n\
            To: sip:user@[2001:db8:::192.0.2.1]\r\nFrom: sip:user@example.com;tag=810x2\r\n\
            Via: SIP/2.0/UDP [2001:db8:::192.0.2.2];branch=z9hG4bKas3-111\r\n\
            Call-ID: G9EB9rweAH45Ebh@example.com\r\nMax-Forwards: 70\r\n\
            CSeq: 921 OPTIONS\r\nContent-Length: 0\r\n\r\n");
        let Message::Request(req) = msg.message else {
            panic!("a request")
        };
        // The same address as `[2001:db8::192.0.2.1]`.
        assert_eq!(req.uri.to_string(), "sip:user@[2001:db8::c000:201]");
    }

    fn ok(text: &str) -> Inbound {
        match parse(text.as_bytes(), Framing::Datagram) {
            Ok(i) => i,
            Err(r) => panic!("rejected: {r:?}"),
        }
    }

    fn rejected(text: &str) -> Rejection {
        match parse(text.as_bytes(), Framing::Datagram) {
            Ok(i) => panic!("accepted: {i:?}"),
            Err(r) => r,
        }
    }

    #[test]
    fn an_emergency_urn_over_ipv6_parses_with_its_essentials() {
        let m = ok(INVITE);
        assert_eq!(m.call_id.as_str(), "a84b4c76e66710@pc33");
        assert_eq!((m.cseq, m.cseq_method.as_str()), (314159, "INVITE"));
        assert_eq!(m.from_tag, Some(Tag("1928301774".into())));
        assert_eq!(m.to_tag, None);
        assert!(m.top_via.has_rfc3261_branch());
        let req = m.message.as_request().expect("request");
        assert_eq!(req.uri.to_string(), "urn:service:sos");
        assert_eq!(req.body, b"v=0\n");
    }

    #[test]
    fn tel_and_user_phone_uris_parse() {
        for uri in [
            "tel:112",
            "sip:112@192.0.2.1;user=phone",
            "urn:service:sos.fire",
        ] {
            let text = INVITE.replacen("urn:service:sos SIP", &format!("{uri} SIP"), 1);
            let m = ok(&text);
            assert!(m.message.as_request().is_some(), "{uri}");
        }
    }

    #[test]
    fn a_latin1_display_name_does_not_lose_the_headers_after_it() {
        let mut bytes = INVITE.as_bytes().to_vec();
        let at = INVITE.find("\"Ani\"").expect("display name") + 2;
        bytes[at] = 0xE9; // é in Latin-1, invalid UTF-8
        let m = parse(&bytes, Framing::Datagram).expect("accepted");
        let req = m.message.as_request().expect("request");
        assert!(req.headers.iter().any(|h| h.name() == "Contact"));
    }

    #[test]
    fn folded_and_compact_headers_are_accepted() {
        let text = INVITE
            .replace("Call-ID:", "i:")
            .replace("Max-Forwards: 70", "Subject: a\r\n  folded line");
        let m = ok(&text);
        assert_eq!(m.call_id.as_str(), "a84b4c76e66710@pc33");
    }

    #[test]
    fn a_short_body_gets_400_with_the_reason() {
        let r = rejected(&INVITE.replace("Content-Length: 4", "Content-Length: 40"));
        assert_eq!(r.status, 400);
        let reply = String::from_utf8(r.reply.expect("reply")).expect("utf8");
        assert!(reply.starts_with("SIP/2.0 400 Bad Request\r\n"), "{reply}");
        assert!(reply.contains("Content-Length 40 is larger"), "{reply}");
        assert!(reply.contains("Call-ID: a84b4c76e66710@pc33"));
    }

    #[test]
    fn a_header_line_without_colon_is_dropped_not_guessed() {
        let r = rejected(&INVITE.replace("Max-Forwards: 70", "Max-Forwards 70"));
        assert_eq!(r.status, 400);
    }

    #[test]
    fn unknown_scheme_is_416_and_bad_version_505() {
        assert_eq!(
            rejected(&INVITE.replace("urn:service:sos SIP", "mailto:a@b SIP")).status,
            416
        );
        assert_eq!(
            rejected(&INVITE.replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia")).status,
            505
        );
    }

    #[test]
    fn an_extension_method_gets_501() {
        let text = INVITE
            .replace("INVITE urn", "NEWMETHOD urn")
            .replace("314159 INVITE", "314159 NEWMETHOD");
        assert_eq!(rejected(&text).status, 501);
    }

    #[test]
    fn cseq_method_mismatch_and_duplicates_are_400() {
        assert_eq!(
            rejected(&INVITE.replace("314159 INVITE", "314159 BYE")).status,
            400
        );
        let dup = INVITE.replace(
            "CSeq: 314159 INVITE\r\n",
            "CSeq: 1 INVITE\r\nCSeq: 2 INVITE\r\n",
        );
        assert_eq!(rejected(&dup).status, 400);
    }

    #[test]
    fn an_invalid_ack_is_dropped_without_reply() {
        let text = INVITE
            .replace("INVITE urn", "ACK urn")
            .replace("314159 INVITE", "314159 ACK")
            .replace("Content-Length: 4", "Content-Length: 99");
        assert_eq!(rejected(&text).reply, None);
    }

    #[test]
    fn bare_lf_line_ends_are_tolerated() {
        let m = ok(&INVITE.replace("\r\n", "\n"));
        assert_eq!(m.cseq, 314159);
    }

    #[test]
    fn header_lists_split_outside_quotes_and_brackets() {
        assert_eq!(
            split_header_list("\"a, b\" <sip:x@y;p=1,2>, <tel:112>"),
            vec!["\"a, b\" <sip:x@y;p=1,2>", "<tel:112>"]
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_bytes(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = parse(&data, Framing::Datagram);
            let _ = parse(&data, Framing::Stream);
        }

        #[test]
        fn never_panics_on_mutated_invites(pos in 0usize..400, byte in proptest::num::u8::ANY) {
            let mut data = INVITE.as_bytes().to_vec();
            if let Some(b) = data.get_mut(pos) { *b = byte; }
            let _ = parse(&data, Framing::Datagram);
        }
    }
}
