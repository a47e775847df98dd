//! Shared test helpers: a small valid plan to plant mistakes in, and the real default plan.
#![allow(dead_code)] // each test binary uses a different subset
#![allow(clippy::disallowed_methods)] // tests may read files and take a starting Instant

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use siaga_dialplan::{Diagnostic, Dialplan, Source, ValidationErrors, validate};

/// A small plan that validates. Tests edit it with [`edit`] to plant one mistake.
pub const SMALL_PLAN: &str = r#"[centre]
name = "Test centre"
languages = ["id", "en"]
last_resort = "calltakers"

[[emergency]]
numbers = ["112"]
urns = ["urn:service:sos"]
menu = "main"

[menus.main]
prompt = "main-menu"

[menus.main.options]
"1" = { route = "police" }
"2" = { route = "fire" }

[routes.calltakers]
[[routes.calltakers.targets]]
uri = "sip:calltaker@127.0.0.1:5080"

[routes.police]
fallback = "calltakers"
[[routes.police.targets]]
uri = "sip:polisi@127.0.0.1:5081"

[routes.fire]
fallback = "calltakers"
[[routes.fire.targets]]
uri = "sip:damkar@127.0.0.1:5083"
"#;

pub const PLAN_PATH: &str = "dialplans/test.toml";

/// `text` with `from` replaced by `to`; fails the test if `from` is not there (so an edit
/// can never silently do nothing).
pub fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "test setup: {from:?} is not in the plan"
    );
    text.replacen(from, to, 1)
}

/// 1-based line of the only line containing `needle`.
pub fn line_of(text: &str, needle: &str) -> u32 {
    let lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains(needle))
        .map(|(index, _)| index + 1)
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "test setup: {needle:?} must be on exactly one line"
    );
    u32::try_from(lines[0]).expect("small file")
}

pub fn every_prompt_exists(_: &Path) -> bool {
    true
}

pub fn check(text: &str) -> Result<Dialplan, ValidationErrors> {
    validate(&[Source::new(PLAN_PATH, text)], &every_prompt_exists)
}

/// The diagnostics of a plan that must fail.
pub fn errors(text: &str) -> Vec<Diagnostic> {
    match check(text) {
        Ok(_) => panic!("the plan was accepted, but it has a planted mistake"),
        Err(errors) => errors.diagnostics,
    }
}

/// The one diagnostic of a plan with one planted mistake.
pub fn only_error(text: &str) -> Diagnostic {
    let mut all = errors(text);
    assert_eq!(all.len(), 1, "expected exactly one error, got:\n{all:#?}");
    all.remove(0)
}

/// `plan` has one mistake, reported on the line holding `needle` of the plan's file, with
/// `message` and a hint saying what to change.
pub fn assert_only_error_at(plan: &str, needle: &str, message: &str) {
    let error = only_error(plan);
    let location = error.location.as_ref().expect("a location");
    assert_eq!(location.file, Path::new(PLAN_PATH), "{needle}");
    assert_eq!(location.line, line_of(plan, needle), "{needle}");
    assert_eq!(error.problem.to_string(), message, "{needle}");
    assert!(error.hint.is_some(), "no hint for {needle}");
}

pub fn small_plan() -> Arc<Dialplan> {
    Arc::new(check(SMALL_PLAN).unwrap_or_else(|e| panic!("{e}")))
}

/// `<repo>/dialplans`, from the crate directory tests run in.
pub fn dialplans_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dialplans")
}

/// The shipped default plan, with its prompts checked on disk.
pub fn default_plan() -> Result<Dialplan, ValidationErrors> {
    let path = dialplans_dir().join("default.toml");
    let text = std::fs::read_to_string(&path).expect("dialplans/default.toml is readable");
    validate(&[Source::new(path, text)], &|prompt: &Path| {
        prompt.is_file()
    })
}

/// How long a prompt file plays: 8 kHz mono 16-bit is 16 bytes per millisecond after the
/// 44-byte header. Missing files play for 0 s.
pub fn wav_length(path: &Path) -> Duration {
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Duration::from_millis(bytes.saturating_sub(44) / 16)
}

pub fn start_instant() -> Instant {
    Instant::now()
}
