//! Splitting `multipart/mixed` and `multipart/related` SIP bodies (RFC 2046 §5.1).
//!
//! A VoLTE emergency INVITE usually carries SDP and a PIDF-LO in one multipart body. Parts are
//! returned as byte ranges into the original body, never re-encoded, so the caller's location
//! can be forwarded to the agency byte for byte. Damage is reported, not fatal: a body cut
//! short still yields the parts that arrived, flagged as truncated.

use crate::content_id::ContentId;
use crate::media_type::MediaType;
use std::ops::Range;
use thiserror::Error;

/// Most parts we split out of one body (all nesting levels together); the rest are ignored.
pub const MAX_PARTS: usize = 16;

/// How many levels of multipart-inside-multipart we open (SDP + `multipart/related` is common).
pub const MAX_NESTING: u8 = 1;

/// Why a body could not be split, or what was wrong with a body that was split anyway.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MultipartError {
    /// The Content-Type is missing or not `multipart/*`.
    #[error("Content-Type {content_type:?} is not multipart/*")]
    NotMultipart {
        /// The Content-Type as received.
        content_type: String,
    },
    /// `multipart/*` without a usable `boundary` parameter.
    #[error("Content-Type {content_type:?} has no boundary parameter; add boundary=…")]
    MissingBoundary {
        /// The Content-Type as received.
        content_type: String,
    },
    /// The boundary never appears as a delimiter line in the body.
    #[error("the body never contains the delimiter line --{boundary}")]
    NoDelimiter {
        /// The boundary from the Content-Type.
        boundary: String,
    },
    /// No closing delimiter: the body was probably cut short; the last part may be incomplete.
    #[error(
        "no closing delimiter --{boundary}-- (body truncated?); the last part may be incomplete"
    )]
    Truncated {
        /// The boundary from the Content-Type.
        boundary: String,
    },
    /// More parts than [`MAX_PARTS`]; only the first ones were kept.
    #[error("more than {limit} body parts; the rest were ignored")]
    TooManyParts {
        /// The limit that was hit.
        limit: usize,
    },
    /// A multipart nested deeper than [`MAX_NESTING`]; it was kept as one unsplit part.
    #[error("multipart nested more than {limit} level deep was not split")]
    NestingTooDeep {
        /// The limit that was hit.
        limit: u8,
    },
}

/// The headers of one body part. Only the ones location handling needs are typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartHeaders {
    /// `Content-Type`, as written (absent means `text/plain` per RFC 2046).
    pub content_type: Option<String>,
    /// `Content-ID`, normalised for comparison with `cid:` URLs.
    pub content_id: Option<ContentId>,
    /// `Content-Disposition`, as written (e.g. `render;handling=optional`).
    pub content_disposition: Option<String>,
    /// Every other header, name and value as written, in order.
    pub other: Vec<(String, String)>,
}

impl PartHeaders {
    /// The lower-case `type/subtype` of the part, if it has a readable Content-Type.
    pub fn essence(&self) -> Option<String> {
        self.content_type
            .as_deref()
            .and_then(MediaType::parse)
            .map(|media| media.essence)
    }
}

/// One body part: its headers and its body as a slice of (and range into) the original body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// The part's headers.
    pub headers: PartHeaders,
    /// The part's body bytes, exactly as received.
    pub body: &'a [u8],
    /// Where [`Part::body`] lies in the body given to [`split`].
    pub body_range: Range<usize>,
    /// 0 for top-level parts, 1 for parts of a nested multipart (which is listed too).
    pub depth: u8,
    /// True for a last part that ran to the end of a body with no closing delimiter.
    pub truncated: bool,
}

/// A split body: its parts in order (nested parts follow their container) and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Multipart<'a> {
    /// Every part found, top-level and nested, in body order.
    pub parts: Vec<Part<'a>>,
    /// Damage that did not stop the split (truncation, too many parts, deep nesting).
    pub problems: Vec<MultipartError>,
}

/// Splits a multipart body given the request's Content-Type value.
///
/// Errors only when nothing could be split at all; recoverable damage is in
/// [`Multipart::problems`]. Tolerates bare-LF line ends, a preamble and an epilogue.
pub fn split<'a>(content_type: &str, body: &'a [u8]) -> Result<Multipart<'a>, MultipartError> {
    let boundary = boundary_of(content_type)?;
    let mut multipart = Multipart::default();
    split_level(body, 0, &boundary, 0, &mut multipart)?;
    Ok(multipart)
}

/// Returns the SDP of a request whose body is plain `application/sdp` or a multipart holding it.
///
/// With no Content-Type at all, a body that starts like SDP (`v=0`) is taken as SDP: an
/// emergency call is not refused because a sender forgot a header.
pub fn find_sdp<'a>(content_type: Option<&str>, body: &'a [u8]) -> Option<&'a [u8]> {
    let Some(media) = content_type.and_then(MediaType::parse) else {
        return looks_like_sdp(body).then_some(body);
    };
    if media.essence == "application/sdp" {
        return Some(body);
    }
    if !media.is_multipart() {
        return None;
    }
    let multipart = split(content_type.unwrap_or_default(), body).ok()?;
    multipart
        .parts
        .into_iter()
        .find(|part| part.headers.essence().as_deref() == Some("application/sdp"))
        .map(|part| part.body)
}

fn looks_like_sdp(body: &[u8]) -> bool {
    let trimmed = body
        .iter()
        .position(|byte| !byte.is_ascii_whitespace())
        .and_then(|start| body.get(start..))
        .unwrap_or_default();
    trimmed.starts_with(b"v=0")
}

fn boundary_of(content_type: &str) -> Result<String, MultipartError> {
    let media = MediaType::parse(content_type).ok_or_else(|| MultipartError::NotMultipart {
        content_type: content_type.to_owned(),
    })?;
    if !media.is_multipart() {
        return Err(MultipartError::NotMultipart {
            content_type: content_type.to_owned(),
        });
    }
    match media.param("boundary") {
        // RFC 2046 limits a boundary to 70 characters; we accept up to 200 to be forgiving.
        Some(boundary) if !boundary.is_empty() && boundary.len() <= 200 => Ok(boundary.to_owned()),
        _ => Err(MultipartError::MissingBoundary {
            content_type: content_type.to_owned(),
        }),
    }
}

/// A delimiter line found in the body.
struct Delimiter {
    /// Index of the first `-` of the line.
    line_start: usize,
    /// Index just past the delimiter line's line end (where the part's headers begin).
    content_start: usize,
    /// True for the closing `--boundary--`.
    is_close: bool,
}

fn split_level<'a>(
    body: &'a [u8],
    offset: usize,
    boundary: &str,
    depth: u8,
    out: &mut Multipart<'a>,
) -> Result<(), MultipartError> {
    let delimiters = find_delimiters(body, boundary.as_bytes());
    if delimiters.is_empty() {
        return Err(MultipartError::NoDelimiter {
            boundary: boundary.to_owned(),
        });
    }
    let closed = delimiters.iter().any(|delimiter| delimiter.is_close);
    if !closed {
        out.problems.push(MultipartError::Truncated {
            boundary: boundary.to_owned(),
        });
    }
    for (index, delimiter) in delimiters.iter().enumerate() {
        if delimiter.is_close {
            break;
        }
        if out.parts.len() >= MAX_PARTS {
            out.problems
                .push(MultipartError::TooManyParts { limit: MAX_PARTS });
            break;
        }
        let next = delimiters.get(index + 1);
        let end = match next {
            Some(next) => end_before_line_break(body, next.line_start).max(delimiter.content_start),
            None => body.len(),
        };
        let truncated = next.is_none();
        let content_range = delimiter.content_start..end;
        let content = body.get(content_range.clone()).unwrap_or_default();
        let (headers, body_start) = read_part_headers(content);
        let local_body = (content_range.start + body_start).min(end)..end;
        let part_body = body.get(local_body.clone()).unwrap_or_default();
        let nested_media = headers
            .content_type
            .as_deref()
            .and_then(MediaType::parse)
            .filter(MediaType::is_multipart);
        out.parts.push(Part {
            headers,
            body: part_body,
            body_range: (local_body.start + offset)..(local_body.end + offset),
            depth,
            truncated,
        });
        if let Some(media) = nested_media {
            if depth >= MAX_NESTING {
                out.problems
                    .push(MultipartError::NestingTooDeep { limit: MAX_NESTING });
                continue;
            }
            match media.param("boundary") {
                Some(inner) if !inner.is_empty() => {
                    if let Err(error) =
                        split_level(part_body, offset + local_body.start, inner, depth + 1, out)
                    {
                        out.problems.push(error);
                    }
                }
                _ => out.problems.push(MultipartError::MissingBoundary {
                    content_type: media.essence.clone(),
                }),
            }
        }
    }
    Ok(())
}

/// Every delimiter line `--boundary[--]` that starts a line, in order.
fn find_delimiters(body: &[u8], boundary: &[u8]) -> Vec<Delimiter> {
    let mut delimiters = Vec::new();
    let line_starts = std::iter::once(0).chain(
        body.iter()
            .enumerate()
            .filter(|(_, byte)| **byte == b'\n')
            .map(|(index, _)| index + 1),
    );
    for line_start in line_starts {
        let Some(line) = body.get(line_start..) else {
            continue;
        };
        let Some(after_dashes) = line.strip_prefix(b"--") else {
            continue;
        };
        let Some(after_boundary) = after_dashes.strip_prefix(boundary) else {
            continue;
        };
        let boundary_end = line_start + 2 + boundary.len();
        if after_boundary.starts_with(b"--") {
            delimiters.push(Delimiter {
                line_start,
                content_start: body.len(),
                is_close: true,
            });
            // Everything after the closing delimiter is epilogue.
            break;
        }
        // Transport padding (spaces/tabs) may follow the boundary before the line end.
        let padding = after_boundary
            .iter()
            .take_while(|byte| **byte == b' ' || **byte == b'\t')
            .count();
        let rest = after_boundary.get(padding..).unwrap_or_default();
        let line_end_len = if rest.starts_with(b"\r\n") {
            2
        } else if rest.starts_with(b"\n") || rest.is_empty() {
            usize::from(!rest.is_empty())
        } else {
            // `--boundaryX…`: a longer word that merely starts with the boundary.
            continue;
        };
        delimiters.push(Delimiter {
            line_start,
            content_start: boundary_end + padding + line_end_len,
            is_close: false,
        });
    }
    delimiters
}

/// The index where a part ends: before the CRLF (or bare LF) that precedes the next delimiter.
fn end_before_line_break(body: &[u8], line_start: usize) -> usize {
    let mut end = line_start;
    if end > 0 && body.get(end - 1) == Some(&b'\n') {
        end -= 1;
        if end > 0 && body.get(end - 1) == Some(&b'\r') {
            end -= 1;
        }
    }
    end
}

/// Reads a part's header block; returns the headers and where the body starts in `content`.
fn read_part_headers(content: &[u8]) -> (PartHeaders, usize) {
    // A part that begins with an empty line has no headers.
    if content.starts_with(b"\r\n") {
        return (PartHeaders::default(), 2);
    }
    if content.starts_with(b"\n") {
        return (PartHeaders::default(), 1);
    }
    let blank_line = content.windows(2).enumerate().find_map(|(index, pair)| {
        if pair != b"\n\n" && pair != b"\n\r" {
            return None;
        }
        let after = if pair == b"\n\n" {
            index + 2
        } else if content.get(index + 2) == Some(&b'\n') {
            index + 3
        } else {
            return None;
        };
        Some((index + 1, after))
    });
    match blank_line {
        Some((header_end, body_start)) => (
            parse_header_block(content.get(..header_end).unwrap_or_default()),
            body_start,
        ),
        // No blank line: either only headers (empty body) or only a body without headers.
        None if looks_like_header_block(content) => (parse_header_block(content), content.len()),
        None => (PartHeaders::default(), 0),
    }
}

fn looks_like_header_block(content: &[u8]) -> bool {
    let text = String::from_utf8_lossy(content);
    let mut lines = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .peekable();
    lines.peek().is_some()
        && lines.all(|line| {
            line.starts_with([' ', '\t'])
                || line
                    .split_once(':')
                    .is_some_and(|(name, _)| is_header_name(name.trim_end()))
        })
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&byte))
}

fn parse_header_block(block: &[u8]) -> PartHeaders {
    let text = String::from_utf8_lossy(block);
    // Unfold continuation lines first (RFC 5322 §2.2.3).
    let mut unfolded: Vec<String> = Vec::new();
    for raw_line in text.split('\n') {
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        if line.starts_with([' ', '\t'])
            && let Some(previous) = unfolded.last_mut()
        {
            previous.push(' ');
            previous.push_str(line.trim());
            continue;
        }
        if !line.trim().is_empty() {
            unfolded.push(line.to_owned());
        }
    }
    let mut headers = PartHeaders::default();
    for line in unfolded {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let value = value.trim().to_owned();
        if name.eq_ignore_ascii_case("content-type") {
            headers.content_type.get_or_insert(value);
        } else if name.eq_ignore_ascii_case("content-id") {
            headers
                .content_id
                .get_or_insert_with(|| ContentId::from_header(&value));
        } else if name.eq_ignore_ascii_case("content-disposition") {
            headers.content_disposition.get_or_insert(value);
        } else {
            headers.other.push((name.to_owned(), value));
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRLF_BODY: &[u8] = b"preamble to ignore\r\n\
--b1\r\n\
Content-Type: application/sdp\r\n\
\r\n\
v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\n\
\r\n\
--b1\r\n\
Content-Type: application/pidf+xml\r\n\
Content-ID: <loc1@ims.example>\r\n\
Content-Disposition: by-reference;handling=optional\r\n\
X-Extra: kept\r\n\
\r\n\
<presence/>\r\n\
--b1--\r\n\
epilogue";

    #[test]
    fn crlf_body_splits_into_parts_with_exact_ranges() {
        let multipart = split("multipart/mixed; boundary=b1", CRLF_BODY);
        let Ok(multipart) = multipart else {
            panic!("split failed: {multipart:?}");
        };
        assert!(multipart.problems.is_empty(), "{:?}", multipart.problems);
        assert_eq!(multipart.parts.len(), 2);
        let sdp = &multipart.parts[0];
        // The body keeps its own trailing CRLF but not the one that belongs to the delimiter.
        assert_eq!(sdp.body, b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\n");
        let pidf = &multipart.parts[1];
        assert_eq!(pidf.body, b"<presence/>");
        assert_eq!(&CRLF_BODY[pidf.body_range.clone()], b"<presence/>");
        assert_eq!(
            pidf.headers.content_id.as_ref().map(ContentId::as_str),
            Some("loc1@ims.example")
        );
        assert_eq!(
            pidf.headers.content_disposition.as_deref(),
            Some("by-reference;handling=optional")
        );
        assert_eq!(
            pidf.headers.other,
            vec![("X-Extra".to_owned(), "kept".to_owned())]
        );
    }

    #[test]
    fn bare_lf_and_quoted_boundary_are_tolerated() {
        let body = b"--a b\nContent-Type: application/sdp\n\nv=0\n--a b--\n";
        let parts = split("multipart/mixed;boundary=\"a b\"", body).map(|m| m.parts);
        let bodies: Vec<&[u8]> = parts.iter().flatten().map(|part| part.body).collect();
        assert_eq!(bodies, vec![&b"v=0"[..]]);
    }

    #[test]
    fn missing_boundary_is_an_error() {
        let result = split("multipart/mixed", CRLF_BODY);
        assert!(matches!(
            result,
            Err(MultipartError::MissingBoundary { .. })
        ));
    }

    #[test]
    fn not_multipart_is_an_error() {
        let result = split("application/sdp", b"v=0");
        assert!(matches!(result, Err(MultipartError::NotMultipart { .. })));
    }

    #[test]
    fn boundary_absent_from_body_is_an_error() {
        let result = split("multipart/mixed; boundary=zz", CRLF_BODY);
        assert!(matches!(result, Err(MultipartError::NoDelimiter { .. })));
    }

    #[test]
    fn truncated_body_keeps_what_arrived_and_says_so() {
        let cut = &CRLF_BODY[..CRLF_BODY.len() - 20];
        let Ok(multipart) = split("multipart/mixed; boundary=b1", cut) else {
            panic!("a truncated body must still split");
        };
        assert_eq!(multipart.parts.len(), 2);
        assert!(multipart.parts[1].truncated);
        assert!(!multipart.parts[0].truncated);
        assert!(matches!(
            multipart.problems.as_slice(),
            [MultipartError::Truncated { .. }]
        ));
    }

    #[test]
    fn too_many_parts_keeps_the_first_ones() {
        let mut body = Vec::new();
        for index in 0..(MAX_PARTS + 4) {
            body.extend_from_slice(format!("--x\r\n\r\npart {index}\r\n").as_bytes());
        }
        body.extend_from_slice(b"--x--");
        let Ok(multipart) = split("multipart/mixed; boundary=x", &body) else {
            panic!("split failed");
        };
        assert_eq!(multipart.parts.len(), MAX_PARTS);
        assert_eq!(multipart.parts[0].body, b"part 0");
        assert!(
            multipart
                .problems
                .contains(&MultipartError::TooManyParts { limit: MAX_PARTS })
        );
    }

    #[test]
    fn one_level_of_nesting_is_opened_and_deeper_is_not() {
        let body = b"--outer\r\n\
Content-Type: application/sdp\r\n\r\nv=0\r\n\
--outer\r\n\
Content-Type: multipart/related; boundary=inner\r\n\r\n\
--inner\r\n\
Content-Type: application/pidf+xml\r\nContent-ID: <p@x>\r\n\r\n<presence/>\r\n\
--inner\r\n\
Content-Type: multipart/mixed; boundary=deepest\r\n\r\n\
--deepest\r\n\r\nhidden\r\n--deepest--\r\n\
--inner--\r\n\
--outer--\r\n";
        let Ok(multipart) = split("multipart/mixed; boundary=outer", body) else {
            panic!("split failed");
        };
        let summary: Vec<(u8, Option<String>)> = multipart
            .parts
            .iter()
            .map(|part| (part.depth, part.headers.essence()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, Some("application/sdp".to_owned())),
                (0, Some("multipart/related".to_owned())),
                (1, Some("application/pidf+xml".to_owned())),
                (1, Some("multipart/mixed".to_owned())),
            ]
        );
        assert_eq!(&body[multipart.parts[2].body_range.clone()], b"<presence/>");
        assert!(
            multipart
                .problems
                .contains(&MultipartError::NestingTooDeep { limit: MAX_NESTING })
        );
    }

    #[test]
    fn a_longer_word_starting_with_the_boundary_is_not_a_delimiter() {
        let body = b"--b\r\n\r\nline\r\n--bb not a delimiter\r\n--b--";
        let parts = split("multipart/mixed; boundary=b", body).map(|m| m.parts);
        let bodies: Vec<&[u8]> = parts.iter().flatten().map(|part| part.body).collect();
        assert_eq!(bodies, vec![&b"line\r\n--bb not a delimiter"[..]]);
    }

    #[test]
    fn folded_part_headers_are_unfolded() {
        let body =
            b"--b\r\nContent-Type: application/pidf+xml;\r\n charset=utf-8\r\n\r\nx\r\n--b--";
        let parts = split("multipart/mixed; boundary=b", body).map(|m| m.parts);
        let content_type = parts
            .ok()
            .and_then(|parts| parts.into_iter().next())
            .and_then(|part| part.headers.content_type);
        assert_eq!(
            content_type.as_deref(),
            Some("application/pidf+xml; charset=utf-8")
        );
    }

    #[test]
    fn find_sdp_handles_plain_multipart_and_missing_content_type() {
        assert_eq!(
            find_sdp(Some("application/sdp"), b"v=0\r\n"),
            Some(&b"v=0\r\n"[..])
        );
        assert_eq!(
            find_sdp(Some("multipart/mixed; boundary=b1"), CRLF_BODY),
            Some(&b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\n"[..])
        );
        assert_eq!(find_sdp(None, b"\r\nv=0\r\n"), Some(&b"\r\nv=0\r\n"[..]));
        assert_eq!(find_sdp(None, b"<presence/>"), None);
        assert_eq!(find_sdp(Some("application/pidf+xml"), b"<presence/>"), None);
    }
}
