//! A tolerant reading of Content-Type values.
//!
//! The `mime` crate reads well-formed values; real SIP stacks also send boundaries with
//! characters a strict token may not hold (`boundary=----=_Part_1`). When `mime` refuses, a
//! forgiving fallback still finds the type and the parameters, because a refused Content-Type
//! would otherwise hide both the SDP and the caller's location.

/// A media type reduced to what this crate needs: the lower-case essence and the parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MediaType {
    /// `type/subtype`, lower case, e.g. `multipart/mixed`.
    pub(crate) essence: String,
    /// Parameters in order; names lower case, values unquoted.
    pub(crate) params: Vec<(String, String)>,
}

impl MediaType {
    /// Reads a Content-Type value; `None` only when there is no `type/subtype` at all.
    pub(crate) fn parse(value: &str) -> Option<Self> {
        if let Ok(parsed) = value.trim().parse::<mime::Mime>() {
            return Some(Self {
                essence: parsed.essence_str().to_ascii_lowercase(),
                params: parsed
                    .params()
                    .map(|(name, value)| (name.as_str().to_ascii_lowercase(), value.to_string()))
                    .collect(),
            });
        }
        Self::parse_leniently(value)
    }

    fn parse_leniently(value: &str) -> Option<Self> {
        let pieces = split_outside_quotes(value, ';');
        let mut pieces = pieces.into_iter();
        let essence = pieces.next()?.trim().to_ascii_lowercase();
        let (kind, subtype) = essence.split_once('/')?;
        if kind.trim().is_empty() || subtype.trim().is_empty() {
            return None;
        }
        let params = pieces
            .filter_map(|piece| {
                let (name, value) = piece.split_once('=')?;
                Some((name.trim().to_ascii_lowercase(), unquote(value.trim())))
            })
            .collect();
        Some(Self { essence, params })
    }

    /// The value of a parameter, by case-insensitive name.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// True for `multipart/*`.
    pub(crate) fn is_multipart(&self) -> bool {
        self.essence.starts_with("multipart/")
    }
}

/// Splits on `separator` except inside double quotes or angle brackets.
///
/// Used for header lists too (`Geolocation: <a>, <b>`), where a URI may itself hold commas.
pub(crate) fn split_outside_quotes(value: &str, separator: char) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut in_quotes = false;
    let mut angle_depth = 0usize;
    let mut escaped = false;
    let mut start = 0;
    for (index, character) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match character {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => angle_depth += 1,
            '>' if !in_quotes => angle_depth = angle_depth.saturating_sub(1),
            _ if character == separator && !in_quotes && angle_depth == 0 => {
                pieces.push(value.get(start..index).unwrap_or_default());
                start = index + character.len_utf8();
            }
            _ => {}
        }
    }
    pieces.push(value.get(start..).unwrap_or_default());
    pieces
}

/// Removes one pair of surrounding double quotes and resolves `\"`-style escapes.
pub(crate) fn unquote(value: &str) -> String {
    let Some(inner) = value
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return value.to_owned();
    };
    let mut result = String::with_capacity(inner.len());
    let mut characters = inner.chars();
    while let Some(character) = characters.next() {
        if character == '\\' {
            if let Some(next) = characters.next() {
                result.push(next);
            }
        } else {
            result.push(character);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_and_plain_boundaries_are_read() {
        let quoted = MediaType::parse("multipart/mixed; boundary=\"a b:c\"");
        assert_eq!(
            quoted.as_ref().and_then(|m| m.param("boundary")),
            Some("a b:c")
        );
        let plain = MediaType::parse("Multipart/Related;Boundary=unique-boundary-1");
        assert_eq!(
            plain.as_ref().map(|m| m.essence.as_str()),
            Some("multipart/related")
        );
        assert_eq!(
            plain.as_ref().and_then(|m| m.param("BOUNDARY")),
            Some("unique-boundary-1")
        );
    }

    #[test]
    fn boundary_with_equals_sign_survives_the_fallback() {
        let parsed = MediaType::parse("multipart/mixed; boundary=----=_Part_0_1");
        assert_eq!(
            parsed.as_ref().and_then(|m| m.param("boundary")),
            Some("----=_Part_0_1")
        );
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(MediaType::parse("not a type"), None);
        assert_eq!(MediaType::parse(""), None);
        assert_eq!(MediaType::parse("/x"), None);
    }

    #[test]
    fn splitting_respects_quotes_and_brackets() {
        let pieces = split_outside_quotes("<sip:a,b@x>;p=\"1,2\", <cid:c>", ',');
        assert_eq!(pieces, vec!["<sip:a,b@x>;p=\"1,2\"", " <cid:c>"]);
    }
}
