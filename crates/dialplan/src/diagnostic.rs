//! What validation reports: every problem at once, each at `file:line`, with a hint saying what
//! to change. Printed like rustc so an engineer's editor and eyes both know the format.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

use crate::ids::{MenuId, RouteId};
use crate::sip_uri::SipUriError;
use crate::time::{DurationError, TimeParseError};

/// One dial-plan file as the shell read it. The crate does no file IO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The path the file was read from; used in messages and to find prompts.
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Source {
        Source {
            path: path.into(),
            text: text.into(),
        }
    }
}

/// A line in a dial-plan file (1-based).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceLocation {
    pub file: PathBuf,
    pub line: u32,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// What is wrong with a plan. One variant per kind of mistake so tests and tools can match on
/// it; the Display text is the message after `error: `.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Problem {
    #[error("no dial-plan files were given")]
    NoSources,
    #[error("the file is not a valid dial plan: {message}")]
    Syntax { message: String },
    #[error("no file has a [centre] table")]
    MissingCentre,
    #[error("[centre] is declared a second time (first at {first})")]
    DuplicateCentre { first: SourceLocation },
    #[error("{what} \"{name}\" is defined a second time (first at {first})")]
    DuplicateDefinition {
        what: &'static str,
        name: String,
        first: SourceLocation,
    },
    #[error("{place} goes to unknown route \"{route}\"")]
    UnknownRoute { place: String, route: String },
    #[error("{place} goes to unknown menu \"{menu}\"")]
    UnknownMenu { place: String, menu: String },
    #[error("{place} names language \"{language}\", which [centre] languages does not list")]
    UnknownLanguage { place: String, language: String },
    #[error("{place}: prompt file {} does not exist", path.display())]
    MissingPrompt { place: String, path: PathBuf },
    #[error("{place}: \"{name}\" is not a prompt name (letters, digits, '-' and '_' only)")]
    BadPromptName { place: String, name: String },
    #[error("\"{tag}\" is not a language tag")]
    BadLanguage { tag: String },
    #[error("route \"{route}\" has no fallback")]
    NoFallback { route: RouteId },
    #[error("the last-resort route \"{route}\" has a fallback, but it must end every chain")]
    LastResortHasFallback { route: RouteId },
    #[error("{dialled} is mapped a second time (first at {first})")]
    MappedTwice {
        dialled: String,
        first: SourceLocation,
    },
    #[error("fallback routes form a cycle: {}", join_cycle(cycle))]
    FallbackCycle { cycle: Vec<RouteId> },
    #[error(
        "menus form a loop that a caller who makes no valid choice never leaves: {}",
        join_cycle(cycle)
    )]
    MenuLoop { cycle: Vec<MenuId> },
    #[error("menu \"{menu}\" has an invalid key \"{key}\": {reason}")]
    InvalidDigitKey {
        menu: MenuId,
        key: String,
        reason: &'static str,
    },
    #[error("{place} has a bad SIP URI \"{uri}\": {reason}")]
    BadSipUri {
        place: String,
        uri: String,
        reason: SipUriError,
    },
    #[error("{place} is zero")]
    ZeroTimeout { place: String },
    #[error("{place}: {reason}")]
    BadDuration {
        place: String,
        reason: DurationError,
    },
    #[error("{place}: {reason}")]
    BadTime {
        place: String,
        reason: TimeParseError,
    },
    #[error("{place} has the same start and end time")]
    EmptyTimeWindow { place: String },
    #[error("{place} has `{given}` but not `{missing}`")]
    HalfTimeWindow {
        place: String,
        given: &'static str,
        missing: &'static str,
    },
    #[error("{place} has no targets: a call that ends here reaches no human")]
    NoTargets { place: String },
    #[error("\"{number}\" is not an emergency number (digits only, 1–15 of them)")]
    BadNumber { number: String },
    #[error("\"{urn}\" is not an emergency service URN: {reason}")]
    BadServiceUrn { urn: String, reason: &'static str },
    #[error("{place} {reason}")]
    BadChoice { place: String, reason: &'static str },
    #[error("{place} is \"{value}\", which is not one of {allowed}")]
    BadValue {
        place: String,
        value: String,
        allowed: &'static str,
    },
    #[error(
        "menu \"{menu}\" has {key} = {retries}; more than {max} keeps a frightened caller waiting"
    )]
    TooManyRetries {
        menu: MenuId,
        key: &'static str,
        retries: i64,
        max: u32,
    },
    #[error("{place} is empty")]
    Empty { place: String },
    #[error("urn:service:sos is not mapped, but every unknown urn:service:sos.* falls back to it")]
    SosNotMapped,
}

fn join_cycle<T: fmt::Display>(cycle: &[T]) -> String {
    let mut names: Vec<String> = cycle.iter().map(ToString::to_string).collect();
    if let Some(first) = names.first().cloned() {
        names.push(first);
    }
    names.join(" → ")
}

/// One problem in a plan, where it is, and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// `None` only for problems of the plan as a whole (no files, no `[centre]`).
    pub location: Option<SourceLocation>,
    pub problem: Problem,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = &self.location {
            write!(f, "{location}: ")?;
        }
        write!(f, "error: {}", self.problem)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Everything wrong with a plan. The plan is not used until this list is empty.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct ValidationErrors {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for diagnostic in &self.diagnostics {
            writeln!(f, "{diagnostic}")?;
        }
        let count = self.diagnostics.len();
        write!(
            f,
            "{count} error{} in the dial plan; it was not loaded",
            if count == 1 { "" } else { "s" }
        )
    }
}
