//! Cuts a TCP byte stream into SIP messages by Content-Length (RFC 3261 §18.3).
//!
//! Keep-alive CRLFs between messages (RFC 5626 §3.5.1) are skipped. A header section or body
//! over the size limit poisons the stream: there is no way to find the next message boundary,
//! so the shell closes the connection.

use super::parse::MAX_MESSAGE_BYTES;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("header section longer than {MAX_MESSAGE_BYTES} bytes without an empty line")]
    HeadersTooLong,
    #[error("Content-Length {0} exceeds the {MAX_MESSAGE_BYTES}-byte message limit")]
    BodyTooLarge(usize),
    #[error("invalid Content-Length {0:?}")]
    BadContentLength(String),
}

/// What came out of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Message(Vec<u8>),
    /// A CRLF CRLF keep-alive ping; RFC 5626 peers expect a CRLF pong.
    KeepAlivePing,
}

#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    poisoned: bool,
    /// How far `buf` has been searched for the end of the headers without finding it: a
    /// header trickled in one byte per segment is then scanned once, not once per segment.
    scanned: usize,
    /// The length of the message whose headers are complete, once known: a body trickled
    /// in does not make the headers be read again for each segment.
    expected: Option<usize>,
    /// Bytes of header sections looked at, ever (what framing costs, for tests).
    scan_work: u64,
}

impl StreamFramer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, data: &[u8]) {
        if !self.poisoned {
            self.buf.extend_from_slice(data);
        }
    }

    /// Whether a message has begun and is not complete (after `next_frame` said `Ok(None)`):
    /// leftover keep-alive line ends do not count. The shell times whole messages with it.
    pub fn in_message(&self) -> bool {
        !self.poisoned && self.buf.iter().any(|b| !matches!(b, b'\r' | b'\n'))
    }

    /// Bytes examined so far looking for the ends of header sections.
    pub fn scan_work(&self) -> u64 {
        self.scan_work
    }

    /// Drops the first `n` bytes of the buffer, keeping the search position on the same bytes.
    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
        self.scanned = self.scanned.saturating_sub(n);
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.poisoned {
            return Ok(None);
        }
        // Leading CRLFs are keep-alives; a double CRLF on its own is a ping.
        let leading = self
            .buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        if leading > 0 {
            // A double CRLF among the leading line ends is a ping, stray LFs around it or not.
            if let Some(at) = self.buf[..leading]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
            {
                self.consume(at + 4);
                return Ok(Some(Frame::KeepAlivePing));
            }
            if leading == self.buf.len() {
                // The run may continue in the next segment: keep its tail if it could still
                // begin a ping, so the frames do not depend on how TCP cut the stream.
                let keep = (1..=3)
                    .rev()
                    .find(|&n| n <= leading && self.buf[leading - n..] == b"\r\n\r\n"[..n])
                    .unwrap_or(0);
                self.consume(leading - keep);
                return Ok(None);
            }
            self.consume(leading);
        }
        if let Some(total) = self.expected {
            return Ok(self.take_message(total));
        }
        // An empty line needs up to three bytes after a line feed: look again from just
        // before where the last search stopped.
        let from = self.scanned.saturating_sub(2);
        let found = find_head_end(&self.buf, from);
        let stopped = found.unwrap_or(self.buf.len());
        self.scan_work += (stopped.saturating_sub(from)) as u64;
        let Some(head_end) = found else {
            self.scanned = self.buf.len();
            if self.buf.len() > MAX_MESSAGE_BYTES {
                self.poisoned = true;
                return Err(FrameError::HeadersTooLong);
            }
            return Ok(None);
        };
        self.scan_work += head_end as u64;
        let content_length = match content_length(&self.buf[..head_end]) {
            Ok(n) => n,
            Err(e) => {
                self.poisoned = true;
                return Err(e);
            }
        };
        let total = match head_end.checked_add(content_length) {
            Some(total) if total <= MAX_MESSAGE_BYTES => total,
            _ => {
                self.poisoned = true;
                return Err(FrameError::BodyTooLarge(content_length));
            }
        };
        self.expected = Some(total);
        Ok(self.take_message(total))
    }

    /// The message of `total` bytes at the front of the buffer, once all of it is there.
    fn take_message(&mut self, total: usize) -> Option<Frame> {
        if self.buf.len() < total {
            return None;
        }
        let rest = self.buf.split_off(total);
        let message = std::mem::replace(&mut self.buf, rest);
        self.scanned = 0;
        self.expected = None;
        Some(Frame::Message(message))
    }
}

/// Index just past the first empty line (CRLF or bare LF), the one that ends the headers —
/// the same rule as the parser, so a stream splits the same however TCP segments it.
/// Searches from `from` on.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            let rest = &buf[i + 1..];
            if rest.starts_with(b"\r\n") {
                return Some(i + 3);
            }
            if rest.starts_with(b"\n") {
                return Some(i + 2);
            }
        }
        i += 1;
    }
    None
}

/// Content-Length from a header section; absent means 0 (the parser then rejects a body-less
/// message that needed one).
fn content_length(head: &[u8]) -> Result<usize, FrameError> {
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let value = line[colon + 1..].trim_ascii();
            let text = String::from_utf8_lossy(value);
            return text
                .parse()
                .ok()
                .filter(|_| value.iter().all(u8::is_ascii_digit))
                .ok_or(FrameError::BadContentLength(text.into_owned()));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:112@gw SIP/2.0\r\nContent-Length: 5\r\n\r\nhello";

    /// Every frame of `stream` delivered `chunk` bytes at a time.
    fn frames_in_chunks(stream: &[u8], chunk: usize) -> Vec<Frame> {
        let mut framer = StreamFramer::new();
        let mut frames = Vec::new();
        for piece in stream.chunks(chunk) {
            framer.push(piece);
            while let Some(f) = framer.next_frame().expect("frame") {
                frames.push(f);
            }
        }
        frames
    }

    #[test]
    fn a_begun_message_is_in_progress_and_keep_alives_are_not() {
        let mut framer = StreamFramer::new();
        framer.push(b"\r\n");
        assert_eq!(framer.next_frame(), Ok(None));
        assert!(!framer.in_message());
        framer.push(&MSG[..10]);
        assert_eq!(framer.next_frame(), Ok(None));
        assert!(framer.in_message());
        framer.push(&MSG[10..]);
        assert!(matches!(framer.next_frame(), Ok(Some(Frame::Message(_)))));
        assert_eq!(framer.next_frame(), Ok(None));
        assert!(!framer.in_message());
    }

    #[test]
    fn messages_split_at_any_chunk_boundary() {
        let mut stream = Vec::new();
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(MSG);
        for chunk in 1..stream.len() {
            let frames = frames_in_chunks(&stream[..], chunk);
            assert_eq!(
                frames,
                vec![
                    Frame::Message(MSG.to_vec()),
                    Frame::KeepAlivePing,
                    Frame::Message(MSG.to_vec())
                ],
                "chunk size {chunk}"
            );
        }
    }

    #[test]
    fn a_ping_after_a_stray_cr_is_seen_whatever_the_segmentation() {
        let stream = b"\r\n\r\r\n\r\nOPTIONS sip:112@gw SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        for chunk in 1..stream.len() {
            let frames = frames_in_chunks(&stream[..], chunk);
            assert_eq!(
                frames.first(),
                Some(&Frame::KeepAlivePing),
                "chunk size {chunk}"
            );
            assert_eq!(frames.len(), 2, "chunk size {chunk}");
        }
    }

    #[test]
    fn an_oversized_body_poisons_the_stream() {
        let mut framer = StreamFramer::new();
        framer.push(b"INVITE sip:a@b SIP/2.0\r\nl: 999999\r\n\r\n");
        assert_eq!(framer.next_frame(), Err(FrameError::BodyTooLarge(999_999)));
        framer.push(MSG);
        assert_eq!(framer.next_frame(), Ok(None));
    }

    #[test]
    fn a_content_length_at_usize_max_is_refused_not_overflowed() {
        let mut framer = StreamFramer::new();
        framer.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 18446744073709551615\r\n\r\n");
        assert_eq!(
            framer.next_frame(),
            Err(FrameError::BodyTooLarge(usize::MAX))
        );
    }

    #[test]
    fn the_first_empty_line_ends_the_headers_whatever_the_line_ends() {
        let stream = b"OPTIONS sip:a SIP/2.0\nl: 0\n\nOPTIONS sip:b SIP/2.0\r\nl: 0\r\n\r\n";
        let mut whole = StreamFramer::new();
        whole.push(stream);
        let mut frames = Vec::new();
        while let Ok(Some(f)) = whole.next_frame() {
            frames.push(f);
        }
        assert_eq!(frames.len(), 2, "{frames:?}");
        let mut ping = StreamFramer::new();
        ping.push(b"\n\r\n\r\n");
        assert_eq!(ping.next_frame(), Ok(Some(Frame::KeepAlivePing)));
    }

    #[test]
    fn a_header_trickled_byte_by_byte_is_scanned_in_linear_work() {
        // 64 KiB of header lines, one byte per segment: each byte is looked at a few times at
        // most, not once per segment after it (which would be 2 billion looks).
        let mut head = b"OPTIONS sip:a SIP/2.0\r\n".to_vec();
        while head.len() < MAX_MESSAGE_BYTES - 64 {
            head.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        head.extend_from_slice(b"l: 0\r\n\r\n");
        let mut framer = StreamFramer::new();
        let mut frames = Vec::new();
        for byte in head.chunks(1) {
            framer.push(byte);
            while let Some(f) = framer.next_frame().expect("frame") {
                frames.push(f);
            }
        }
        assert_eq!(frames, vec![Frame::Message(head.clone())]);
        let work = framer.scan_work();
        assert!(
            work <= 4 * head.len() as u64,
            "{work} bytes scanned for a {}-byte header",
            head.len()
        );
    }

    #[test]
    fn a_body_trickled_byte_by_byte_does_not_reread_the_headers() {
        let mut message = b"INVITE sip:a SIP/2.0\r\n".to_vec();
        while message.len() < 30_000 {
            message.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let head_len = message.len() + "l: 30000\r\n\r\n".len();
        message.extend_from_slice(b"l: 30000\r\n\r\n");
        message.extend(std::iter::repeat_n(b'v', 30_000));
        let mut framer = StreamFramer::new();
        let mut frames = 0;
        for byte in message.chunks(1) {
            framer.push(byte);
            while framer.next_frame().expect("frame").is_some() {
                frames += 1;
            }
        }
        assert_eq!(frames, 1);
        let work = framer.scan_work();
        assert!(
            work <= 4 * head_len as u64,
            "{work} header bytes looked at for a {head_len}-byte header"
        );
    }

    #[test]
    fn endless_headers_are_cut_off() {
        let mut framer = StreamFramer::new();
        framer.push(&vec![b'a'; MAX_MESSAGE_BYTES + 1]);
        assert_eq!(framer.next_frame(), Err(FrameError::HeadersTooLong));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(chunks in proptest::collection::vec(
            proptest::collection::vec(proptest::num::u8::ANY, 0..200), 0..8)) {
            let mut framer = StreamFramer::new();
            for c in chunks {
                framer.push(&c);
                while let Ok(Some(_)) = framer.next_frame() {}
            }
        }
    }
}
