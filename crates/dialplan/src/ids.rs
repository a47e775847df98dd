//! Names that a dial plan gives to things. Newtypes so that a route name can never be passed
//! where a menu name or a prompt file name is expected.

use std::fmt;

use serde::Serialize;

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a name. Any text is accepted here; the plan validator is what checks
            /// names, and lookups with an unknown name fail open (see [`crate::Dialplan::route`]).
            pub fn new(name: impl Into<String>) -> Self {
                Self(name.into())
            }

            /// The name as written in the plan.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(name: &str) -> Self {
                Self(name.to_owned())
            }
        }
    };
}

name_type!(
    /// The name of a route (`[routes.<name>]`): an ordered set of agency targets.
    RouteId
);
name_type!(
    /// The name of an IVR menu (`[menus.<name>]`).
    MenuId
);
name_type!(
    /// A prompt's name: the file `<prompt_dir>/<language>/<name>.wav`. Letters, digits, `-`
    /// and `_` only, so a name can never climb out of the prompt directory.
    PromptName
);
name_type!(
    /// A language tag such as `id` or `en`: also the prompt sub-directory for that language.
    Language
);
name_type!(
    /// What a caller keys to pick a menu option: one or more of `0-9`, `#`, `A-D`.
    DigitKey
);

impl PromptName {
    /// Whether `name` is usable as a prompt file name.
    pub(crate) fn is_valid(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
}

impl Language {
    /// Whether `tag` looks like a BCP 47 language tag (`id`, `en`, `en-GB`): letters, digits
    /// and `-`, starting with 2–3 letters. It is also used as a directory name, so nothing else.
    pub(crate) fn is_valid(tag: &str) -> bool {
        let mut parts = tag.split('-');
        let primary_ok = parts.next().is_some_and(|primary| {
            (2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_lowercase())
        });
        primary_ok
            && parts.all(|part| {
                (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
            })
    }
}

/// The keys a caller can press that the IVR understands (RFC 4733 events 0–15).
pub(crate) fn is_dtmf(key: char) -> bool {
    matches!(key, '0'..='9' | '*' | '#' | 'A'..='D')
}

impl DigitKey {
    /// Longest key string a menu may use; longer strings are error-prone under stress.
    pub(crate) const MAX_LEN: usize = 4;
}
