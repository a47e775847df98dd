//! What did the caller dial? Phones and networks write 112 in many ways; all of them must find
//! the same entry. Emergency first: an `urn:service:sos…` request is never turned away, even
//! when the plan does not know the sub-service.

use std::fmt;

use serde::Serialize;

use crate::model::{Dialplan, Entry};
use crate::sip_uri::strip_prefix_ignore_case;

/// What a Request-URI dials, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum Dialled {
    /// Digits, with a leading `+` for international form; visual separators removed.
    Number(String),
    /// The service of an `urn:service:` URN, lower case: `sos`, `sos.fire`, `test.sos`.
    Service(String),
    /// Anything else (a name such as `sip:alice@host`, an unknown scheme, garbage).
    Other,
}

impl fmt::Display for Dialled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dialled::Number(number) => write!(f, "number {number}"),
            Dialled::Service(service) => write!(f, "urn:service:{service}"),
            Dialled::Other => f.write_str("no number"),
        }
    }
}

/// What the gateway does with a call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum Classified {
    /// An emergency call and where it enters the plan.
    Emergency(Entry),
    /// An RFC 6881 test call (`urn:service:test.sos…`): the gateway answers it itself with the
    /// centre's name and never rings an agency.
    TestCall,
    /// Not an emergency number: the gateway answers 404.
    NotEmergency,
}

impl Dialled {
    /// Normalises a Request-URI (or To URI). Total: any text gives a value.
    ///
    /// - `tel:112`, `tel:1-1-2;phone-context=+62` → `112` (RFC 3966 visual separators
    ///   `-` `.` `(` `)` and spaces are dropped; parameters after `;` are ignored).
    /// - `sip:112@host;user=phone`, `sips:112@host`, `sip:112;npdi@host` → `112`.
    /// - `sip:+62112@host` → `+62112` (the plan's country code is removed later).
    /// - `urn:service:SOS.Fire` → service `sos.fire` (service URNs are case-insensitive).
    /// - `sip:sos@host`, `sip:sos.fire@host` → service `sos`/`sos.fire` (older phones).
    /// - Angle brackets and surrounding whitespace are tolerated.
    pub fn parse(request_uri: &str) -> Dialled {
        let trimmed = request_uri.trim();
        let uri = trimmed
            .strip_prefix('<')
            .and_then(|inner| inner.strip_suffix('>'))
            .unwrap_or(trimmed)
            .trim();
        if let Some(rest) = strip_prefix_ignore_case(uri, "urn:service:") {
            return service(rest);
        }
        if let Some(rest) = strip_prefix_ignore_case(uri, "tel:") {
            return number(rest.split(';').next().unwrap_or_default());
        }
        let Some(rest) = strip_prefix_ignore_case(uri, "sip:")
            .or_else(|| strip_prefix_ignore_case(uri, "sips:"))
        else {
            return Dialled::Other;
        };
        let Some((user_info, _host)) = rest.split_once('@') else {
            return Dialled::Other;
        };
        let user = user_info
            .split([';', ':'])
            .next()
            .map(percent_decode)
            .unwrap_or_default();
        let lower = user.to_ascii_lowercase();
        if lower == "sos" || lower.starts_with("sos.") {
            return service(&lower);
        }
        number(&user)
    }
}

fn service(text: &str) -> Dialled {
    let lower = text.trim().to_ascii_lowercase();
    let well_formed = lower.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if well_formed {
        Dialled::Service(lower)
    } else {
        Dialled::Other
    }
}

fn number(text: &str) -> Dialled {
    let kept: String = text
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' '))
        .collect();
    let (plus, digits) = match kept.strip_prefix('+') {
        Some(digits) => ("+", digits),
        None => ("", kept.as_str()),
    };
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Dialled::Other;
    }
    Dialled::Number(format!("{plus}{digits}"))
}

/// `%2B62112` → `+62112`; malformed escapes are kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let escaped = (byte == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(value) => {
                decoded.push(value);
                index += 3;
            }
            None => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

impl Dialplan {
    /// Where a call to `request_uri` goes. See [`Dialled::parse`] for the forms understood.
    ///
    /// Numbers: a leading `+<country_code>` is dropped (`+62112` → `112`); other international
    /// numbers are not emergency numbers. Services: an unknown `sos.x.y` is looked up as
    /// `sos.x`, then `sos` (RFC 5031 §4); if even `sos` were missing the call still goes to the
    /// last-resort route. `test.sos` and `test.sos.*` are test calls.
    pub fn classify(&self, request_uri: &str) -> Classified {
        self.classify_dialled(&Dialled::parse(request_uri))
    }

    pub fn classify_dialled(&self, dialled: &Dialled) -> Classified {
        match dialled {
            Dialled::Service(service)
                if service == "test.sos" || service.starts_with("test.sos.") =>
            {
                Classified::TestCall
            }
            Dialled::Service(service) if service == "sos" || service.starts_with("sos.") => {
                let mut candidate = service.as_str();
                loop {
                    if let Some(entry) = self.services.get(candidate) {
                        return Classified::Emergency(entry.clone());
                    }
                    match candidate.rsplit_once('.') {
                        Some((parent, _)) => candidate = parent,
                        None => {
                            return Classified::Emergency(Entry::Route(self.last_resort().clone()));
                        }
                    }
                }
            }
            Dialled::Number(number) => {
                let local = match (number.strip_prefix('+'), &self.centre.country_code) {
                    (None, _) => Some(number.as_str()),
                    (Some(international), Some(code)) => international.strip_prefix(code.as_str()),
                    (Some(_), None) => None,
                };
                local
                    .and_then(|local| self.numbers.get(local))
                    .map_or(Classified::NotEmergency, |entry| {
                        Classified::Emergency(entry.clone())
                    })
            }
            Dialled::Service(_) | Dialled::Other => Classified::NotEmergency,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_many_ways_to_write_112() {
        for uri in [
            "tel:112",
            "TEL:1-1-2;phone-context=+62",
            "sip:112@gw.example;user=phone",
            "<sip:112@10.0.0.1:5060>",
            "sips:112@gw.example",
            "sip:112;npdi@gw.example",
            "  sip:112@gw  ",
        ] {
            assert_eq!(Dialled::parse(uri), Dialled::Number("112".into()), "{uri}");
        }
        assert_eq!(
            Dialled::parse("sip:%2B62112@gw"),
            Dialled::Number("+62112".into())
        );
        assert_eq!(
            Dialled::parse("tel:+62 (112)"),
            Dialled::Number("+62112".into())
        );
    }

    #[test]
    fn service_urns_are_case_insensitive() {
        assert_eq!(
            Dialled::parse("urn:service:SOS.Fire"),
            Dialled::Service("sos.fire".into())
        );
        assert_eq!(
            Dialled::parse("URN:SERVICE:sos"),
            Dialled::Service("sos".into())
        );
        assert_eq!(Dialled::parse("sip:sos@gw"), Dialled::Service("sos".into()));
        assert_eq!(Dialled::parse("urn:service:sos..fire"), Dialled::Other);
    }

    #[test]
    fn names_and_other_schemes_are_not_numbers() {
        assert_eq!(Dialled::parse("sip:alice@example.org"), Dialled::Other);
        assert_eq!(Dialled::parse("mailto:a@b"), Dialled::Other);
        assert_eq!(Dialled::parse("sip:gw.example"), Dialled::Other);
        assert_eq!(Dialled::parse(""), Dialled::Other);
    }

    proptest! {
        #[test]
        fn parse_is_total(text in "\\PC{0,60}") {
            let _ = Dialled::parse(&text);
        }

        #[test]
        fn parse_survives_escapes(text in "(sip:|tel:|urn:service:)[%0-9a-fA-F@;.+-]{0,20}") {
            let _ = Dialled::parse(&text);
        }

        #[test]
        fn tel_and_sip_forms_agree(number in "[0-9]{1,15}") {
            prop_assert_eq!(Dialled::parse(&format!("tel:{number}")), Dialled::Number(number.clone()));
            prop_assert_eq!(Dialled::parse(&format!("sip:{number}@gw;user=phone")), Dialled::Number(number));
        }
    }
}
