//! DTMF carried in SIP INFO bodies.
//!
//! Two body formats are in the field: `application/dtmf-relay` (Cisco's, `Signal=5` and
//! `Duration=160` on separate lines) and `application/dtmf` (just the key). Phones differ in
//! spacing, case, line endings and whether `*`/`#` are sent as characters or as RFC 4733 event
//! codes 10/11, so the parser is lenient about all of those.

use std::time::{Duration, Instant};

use thiserror::Error;

use super::{Digit, DtmfEvent, DtmfSource};

/// Why an INFO body is not a key press.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SipInfoError {
    /// The INFO carries something other than DTMF (the caller may answer `415`).
    #[error("content type `{0}` does not carry DTMF")]
    NotDtmf(String),
    /// The body is not UTF-8 text.
    #[error("DTMF body is not text")]
    NotText,
    /// A `dtmf-relay` body without a `Signal=` line, or an empty `dtmf` body.
    #[error("DTMF body names no key")]
    MissingSignal,
    /// A hook flash (`!` or event 16): a real signal, but not a key.
    #[error("hook flash is not a DTMF key")]
    Flash,
    /// A key we do not know.
    #[error("`{0}` is not a DTMF key")]
    UnknownSignal(String),
}

/// Parses a SIP INFO request body as a key press that arrived at `at`.
///
/// `content_type` is the Content-Type header value; parameters after `;` are ignored.
pub fn parse_sip_info(
    content_type: &str,
    body: &[u8],
    at: Instant,
) -> Result<DtmfEvent, SipInfoError> {
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let text = std::str::from_utf8(body).map_err(|_| SipInfoError::NotText)?;
    let (signal, duration) = match media_type.as_str() {
        "application/dtmf-relay" => parse_relay(text)?,
        // Some phones send relay-style lines under the plain type.
        "application/dtmf" if text.contains('=') => parse_relay(text)?,
        "application/dtmf" => (text.trim(), None),
        _ => return Err(SipInfoError::NotDtmf(media_type)),
    };
    Ok(DtmfEvent {
        digit: parse_signal(signal)?,
        source: DtmfSource::SipInfo,
        at,
        duration,
    })
}

/// Finds `Signal` and `Duration` (milliseconds) in `key=value` lines.
fn parse_relay(text: &str) -> Result<(&str, Option<Duration>), SipInfoError> {
    let mut signal = None;
    let mut duration = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let value = value.trim();
        if key.eq_ignore_ascii_case("signal") {
            signal = Some(value);
        } else if key.eq_ignore_ascii_case("duration") {
            // A bad duration does not make the key press less real.
            duration = value.parse::<u64>().ok().map(Duration::from_millis);
        }
    }
    Ok((signal.ok_or(SipInfoError::MissingSignal)?, duration))
}

fn parse_signal(signal: &str) -> Result<Digit, SipInfoError> {
    if signal.is_empty() {
        return Err(SipInfoError::MissingSignal);
    }
    if signal == "!" || signal == "16" {
        return Err(SipInfoError::Flash);
    }
    let mut chars = signal.chars();
    if let (Some(c), None) = (chars.next(), chars.next())
        && let Some(digit) = Digit::from_char(c)
    {
        return Ok(digit);
    }
    // `*`/`#`/A–D as RFC 4733 event codes (10–15).
    signal
        .parse::<u8>()
        .ok()
        .and_then(Digit::from_event_code)
        .ok_or_else(|| SipInfoError::UnknownSignal(signal.to_owned()))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests start virtual time from one real Instant
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn digit(content_type: &str, body: &str) -> Result<(char, Option<Duration>), SipInfoError> {
        parse_sip_info(content_type, body.as_bytes(), Instant::now())
            .map(|e| (e.digit.as_char(), e.duration))
    }

    #[test]
    fn dtmf_relay_with_signal_and_duration() {
        assert_eq!(
            digit("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
            Ok(('5', Some(Duration::from_millis(160))))
        );
    }

    #[test]
    fn dtmf_relay_tolerates_spacing_case_bare_newlines_and_parameters() {
        assert_eq!(
            digit(
                "Application/DTMF-Relay; charset=utf-8",
                "signal = #\nduration= 250"
            ),
            Ok(('#', Some(Duration::from_millis(250))))
        );
        assert_eq!(digit("application/dtmf-relay", "Signal=*"), Ok(('*', None)));
        assert_eq!(
            digit("application/dtmf-relay", "Signal=11\r\nDuration=x"),
            Ok(('#', None))
        );
    }

    #[test]
    fn plain_dtmf_body_is_the_key() {
        assert_eq!(digit("application/dtmf", "5"), Ok(('5', None)));
        assert_eq!(digit("application/dtmf", " 10\r\n"), Ok(('*', None)));
        assert_eq!(digit("application/dtmf", "d"), Ok(('D', None)));
    }

    #[test]
    fn source_and_time_are_recorded() {
        let at = Instant::now();
        let event = parse_sip_info("application/dtmf", b"7", at).expect("parses");
        assert_eq!(event.source, DtmfSource::SipInfo);
        assert_eq!(event.at, at);
    }

    #[test]
    fn non_keys_are_errors_not_guesses() {
        assert_eq!(
            digit("application/dtmf-relay", "Duration=160"),
            Err(SipInfoError::MissingSignal)
        );
        assert_eq!(
            digit("application/dtmf-relay", "Signal=!"),
            Err(SipInfoError::Flash)
        );
        assert_eq!(
            digit("application/dtmf", "55"),
            Err(SipInfoError::UnknownSignal("55".into()))
        );
        assert_eq!(
            digit("application/dtmf", ""),
            Err(SipInfoError::MissingSignal)
        );
        assert_eq!(
            digit("application/sdp", "v=0"),
            Err(SipInfoError::NotDtmf("application/sdp".into()))
        );
        assert_eq!(
            parse_sip_info("application/dtmf", &[0xFF, 0xFE], Instant::now()),
            Err(SipInfoError::NotText)
        );
    }

    proptest! {
        #[test]
        fn never_panics(
            content_type in "(application/dtmf(-relay)?|[ -~]{0,20})(;[ -~]{0,10})?",
            body in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let _ = parse_sip_info(&content_type, &body, Instant::now());
        }

        #[test]
        fn every_key_round_trips_through_a_relay_body(code in 0u8..16, ms in 0u64..10_000) {
            let key = Digit::from_event_code(code).expect("0..16 are keys");
            let body = format!("Signal={}\r\nDuration={ms}\r\n", key.as_char());
            let event = parse_sip_info("application/dtmf-relay", body.as_bytes(), Instant::now())
                .expect("parses");
            prop_assert_eq!(event.digit, key);
            prop_assert_eq!(event.duration, Some(Duration::from_millis(ms)));
        }
    }
}
