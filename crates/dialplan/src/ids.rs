//! Names that a dial plan gives to things. Newtypes so that a route name can never be passed
//! where a menu name or a prompt file name is expected.

use serde::Serialize;

// Any text is accepted by `new` and `From<&str>`: the plan validator is what checks names,
// and lookups with an unknown name fail open (see `Dialplan::route`).
siaga_ids::string_id! {
    /// The name of a route (`[routes.<name>]`): an ordered set of agency targets.
    #[derive(Serialize)]
    #[serde(transparent)]
    pub struct RouteId(String);
}
siaga_ids::string_id! {
    /// The name of an IVR menu (`[menus.<name>]`).
    #[derive(Serialize)]
    #[serde(transparent)]
    pub struct MenuId(String);
}
siaga_ids::string_id! {
    /// A prompt's name: the file `<prompt_dir>/<language>/<name>.wav`. Letters, digits, `-`
    /// and `_` only, so a name can never climb out of the prompt directory.
    #[derive(Serialize)]
    #[serde(transparent)]
    pub struct PromptName(String);
}
siaga_ids::string_id! {
    /// A language tag such as `id` or `en`: also the prompt sub-directory for that language.
    #[derive(Serialize)]
    #[serde(transparent)]
    pub struct Language(String);
}
siaga_ids::string_id! {
    /// What a caller keys to pick a menu option: one or more of `0-9`, `#`, `A-D`.
    #[derive(Serialize)]
    #[serde(transparent)]
    pub struct DigitKey(String);
}

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
