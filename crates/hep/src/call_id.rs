//! The Call-ID of a raw SIP message, for the correlation id, without parsing the message:
//! captured messages may be malformed, and the capture must not depend on the parser.

/// The value of the first `Call-ID` (or compact `i`) header in the message's header
/// section, trimmed; `None` when there is none or it is empty.
pub fn call_id_of(message: &[u8]) -> Option<&[u8]> {
    // Line by line up to the blank line that ends the headers: the Call-ID is usually near
    // the top, and the body is never read. The first line is the request or status line.
    message
        .split(|&b| b == b'\n')
        .take_while(|line| !trim(line).is_empty())
        .skip(1)
        .find_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let name = trim(line.get(..colon)?);
            let is_call_id =
                name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i");
            let value = trim(line.get(colon + 1..)?);
            (is_call_id && !value.is_empty()).then_some(value)
        })
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_long_and_the_compact_form_and_ignores_the_body() {
        let long =
            b"INVITE sip:112@gw SIP/2.0\r\nVia: x\r\nCall-ID:  abc@host \r\n\r\nCall-ID: body";
        assert_eq!(call_id_of(long), Some(&b"abc@host"[..]));
        let compact = b"SIP/2.0 200 OK\r\ni:xyz\r\n\r\n";
        assert_eq!(call_id_of(compact), Some(&b"xyz"[..]));
        let none = b"OPTIONS sip:gw SIP/2.0\r\nVia: x\r\n\r\nCall-ID: in-body\r\n";
        assert_eq!(call_id_of(none), None);
        assert_eq!(call_id_of(b"garbage"), None);
        // A request line that looks like a header is not one.
        assert_eq!(call_id_of(b"i: not-a-header\r\n\r\n"), None);
    }
}
