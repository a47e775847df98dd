//! DTMF from all three places a caller's key press can arrive: RFC 4733 telephone-events in
//! the RTP stream, SIP INFO requests, and tones in the audio itself. All three produce the
//! same [`DtmfEvent`], so the IVR does not care how the phone chose to signal.

mod inband;
mod one_press;
mod rfc4733;
mod sip_info;

use std::time::{Duration, Instant};

pub use inband::{InbandDetector, InbandDetectorConfig};
pub use one_press::DigitFilter;
pub use rfc4733::{TelephoneEvent, TelephoneEventDecoder};
pub use sip_info::{SipInfoError, parse_sip_info};

/// One key of the DTMF keypad (including the A–D column military/data phones have).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Digit {
    /// 0
    Zero,
    /// 1
    One,
    /// 2
    Two,
    /// 3
    Three,
    /// 4
    Four,
    /// 5
    Five,
    /// 6
    Six,
    /// 7
    Seven,
    /// 8
    Eight,
    /// 9
    Nine,
    /// *
    Star,
    /// #
    Pound,
    /// A
    A,
    /// B
    B,
    /// C
    C,
    /// D
    D,
}

/// All digits in RFC 4733 event-code order (0–9, *, #, A–D).
const BY_EVENT_CODE: [Digit; 16] = [
    Digit::Zero,
    Digit::One,
    Digit::Two,
    Digit::Three,
    Digit::Four,
    Digit::Five,
    Digit::Six,
    Digit::Seven,
    Digit::Eight,
    Digit::Nine,
    Digit::Star,
    Digit::Pound,
    Digit::A,
    Digit::B,
    Digit::C,
    Digit::D,
];

impl Digit {
    /// The character a dialplan writes for this key.
    pub const fn as_char(self) -> char {
        match self {
            Digit::Zero => '0',
            Digit::One => '1',
            Digit::Two => '2',
            Digit::Three => '3',
            Digit::Four => '4',
            Digit::Five => '5',
            Digit::Six => '6',
            Digit::Seven => '7',
            Digit::Eight => '8',
            Digit::Nine => '9',
            Digit::Star => '*',
            Digit::Pound => '#',
            Digit::A => 'A',
            Digit::B => 'B',
            Digit::C => 'C',
            Digit::D => 'D',
        }
    }

    /// The key for a character (`a`–`d` accepted in lower case too).
    pub fn from_char(c: char) -> Option<Digit> {
        BY_EVENT_CODE
            .iter()
            .copied()
            .find(|d| d.as_char() == c.to_ascii_uppercase())
    }

    /// The RFC 4733 §3.2 event code (0–9, 10 = *, 11 = #, 12–15 = A–D).
    pub const fn event_code(self) -> u8 {
        match self {
            Digit::Zero => 0,
            Digit::One => 1,
            Digit::Two => 2,
            Digit::Three => 3,
            Digit::Four => 4,
            Digit::Five => 5,
            Digit::Six => 6,
            Digit::Seven => 7,
            Digit::Eight => 8,
            Digit::Nine => 9,
            Digit::Star => 10,
            Digit::Pound => 11,
            Digit::A => 12,
            Digit::B => 13,
            Digit::C => 14,
            Digit::D => 15,
        }
    }

    /// The key for an RFC 4733 event code; `None` for flash (16) and non-DTMF events.
    pub fn from_event_code(code: u8) -> Option<Digit> {
        BY_EVENT_CODE.get(usize::from(code)).copied()
    }
}

impl std::fmt::Display for Digit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

/// How the digit reached us; kept in the call's timeline for audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtmfSource {
    /// RFC 4733 (formerly RFC 2833) telephone-event packets.
    Rfc4733,
    /// A SIP INFO request (`application/dtmf-relay` or `application/dtmf`).
    SipInfo,
    /// Tones detected in the audio.
    Inband,
}

impl DtmfSource {
    /// The stable text form, as the call's timeline records it.
    pub fn name(self) -> &'static str {
        match self {
            DtmfSource::Rfc4733 => "rfc4733",
            DtmfSource::Inband => "inband",
            DtmfSource::SipInfo => "info",
        }
    }
}

/// One key press, reported once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfEvent {
    /// The key.
    pub digit: Digit,
    /// Where it came from.
    pub source: DtmfSource,
    /// When the key press began, as far as the source tells: arrival of the first
    /// telephone-event packet or of the INFO, or the start of the tone.
    pub at: Instant,
    /// How long the key was held, when the source says so at the time of reporting.
    pub duration: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_digit_round_trips_through_char_and_event_code() {
        for (code, digit) in BY_EVENT_CODE.iter().enumerate() {
            let code = u8::try_from(code).expect("16 codes");
            assert_eq!(Digit::from_event_code(code), Some(*digit));
            assert_eq!(digit.event_code(), code);
            assert_eq!(Digit::from_char(digit.as_char()), Some(*digit));
        }
        assert_eq!(Digit::from_char('b'), Some(Digit::B));
        assert_eq!(Digit::from_char('E'), None);
        assert_eq!(Digit::from_event_code(16), None);
        assert_eq!(Digit::Pound.to_string(), "#");
    }

    #[test]
    fn source_names_are_the_timeline_s() {
        assert_eq!(DtmfSource::Rfc4733.name(), "rfc4733");
        assert_eq!(DtmfSource::Inband.name(), "inband");
        assert_eq!(DtmfSource::SipInfo.name(), "info");
    }
}
