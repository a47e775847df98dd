//! Log text made safe for a terminal. What a caller put in a SIP message (a From display
//! name, a User-Agent) reaches a supervisor's screen: control characters are shown, never
//! obeyed — no clearing the screen, no colours, no window title, no carriage return writing
//! over a line, no bidirectional override reordering it.

use std::borrow::Cow;
use std::fmt::Write as _;

/// A character a terminal could act on instead of showing: C0 (tab included), DEL, C1 (CSI,
/// OSC, … as single code points) and the invisible format characters that reorder or hide
/// text.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// One field, every unsafe character shown as an escape: `\x1b`, `\r`, `\n`, `\t`,
/// `\u{202e}`.
pub fn esc(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A whole SIP message for display: one line per CRLF-terminated line (a message with no
/// CRLF at all is split at LF, as a lenient parser reads it); a bare CR or LF inside a line
/// is shown, so it never starts a line of its own.
pub fn message_lines(raw: &str) -> Vec<Cow<'_, str>> {
    let sep = if raw.contains("\r\n") { "\r\n" } else { "\n" };
    let body = raw.strip_suffix(sep).unwrap_or(raw);
    body.split(sep).map(esc).collect()
}

/// JSON from serde_json (which escapes C0 already) with DEL, C1 and format characters
/// escaped as well, so a terminal shown the JSON cannot be driven by it either.
pub fn json_safe(json: String) -> String {
    if !json.chars().any(unsafe_char) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if unsafe_char(c) {
            // Outside strings serde_json writes only ASCII structure and whitespace.
            if matches!(c, '\n' | '\t' | '\r') {
                out.push(c);
            } else {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// At most `max` characters, cut with an ellipsis.
pub fn fit(s: &str, max: usize) -> Cow<'_, str> {
    if s.chars().count() <= max {
        return Cow::Borrowed(s);
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_shown_not_obeyed() {
        assert_eq!(esc("Budi"), "Budi");
        assert_eq!(
            esc("\u{1b}[2J\u{1b}]0;pwned\u{7}A\rB\nC\tD\u{7f}\u{9b}31m\u{202e}x"),
            "\\x1b[2J\\x1b]0;pwned\\x07A\\rB\\nC\\tD\\x7f\\x9b31m\\u{202e}x"
        );
        assert!(!esc("\u{85}\u{0}\u{1f}").chars().any(char::is_control));
    }

    #[test]
    fn a_bare_cr_or_lf_stays_inside_its_line() {
        let raw =
            "INVITE sip:112@x SIP/2.0\r\nFrom: \"A\rB\nC\" <sip:a@b>\r\nTo: <sip:112@x>\r\n\r\n";
        assert_eq!(
            message_lines(raw),
            vec![
                "INVITE sip:112@x SIP/2.0",
                "From: \"A\\rB\\nC\" <sip:a@b>",
                "To: <sip:112@x>",
                ""
            ]
        );
        assert_eq!(
            message_lines("OPTIONS x\nVia: y\n"),
            vec!["OPTIONS x", "Via: y"]
        );
    }

    #[test]
    fn json_keeps_its_meaning_without_raw_controls() {
        let json = serde_json::to_string(&"a\u{1b}b\u{9b}c\u{7f}").expect("json");
        let safe = json_safe(json);
        assert!(!safe.chars().any(char::is_control), "{safe}");
        let back: String = serde_json::from_str(&safe).expect("still JSON");
        assert_eq!(back, "a\u{1b}b\u{9b}c\u{7f}");
    }
}
