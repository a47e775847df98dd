//! Problems found while reading location hints.
//!
//! A location problem never fails a call: every parser in this crate reports trouble as a
//! [`LocationProblem`] next to whatever it could still use, so the call log shows *why* a
//! location is missing or partial while the call goes on.

use serde::Serialize;
use std::fmt;

/// What kind of trouble was found; a stable, machine-readable column for the call log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The body (or one part) is larger than we are willing to parse.
    HugeBody,
    /// A multipart body whose closing delimiter never came: it was probably cut short.
    TruncatedMultipart,
    /// A multipart body that could not be split (no boundary, no delimiter, …).
    MalformedMultipart,
    /// More body parts than the limit; the rest were ignored.
    TooManyParts,
    /// A multipart inside a multipart inside a multipart; the innermost was not split.
    NestingTooDeep,
    /// A body part's Content-Type is not what its use needs (e.g. a `cid:` pointing at SDP).
    WrongContentType,
    /// A `Geolocation: <cid:…>` whose Content-ID matches no body part.
    CidNotFound,
    /// A `Geolocation` value that is not a usable URI.
    BadUri,
    /// More header values than the limit; the rest were ignored.
    TooManyValues,
    /// A `Geolocation-Routing` value other than yes/no, or conflicting values.
    BadRoutingValue,
    /// The PIDF-LO bytes are not UTF-8.
    NotUtf8,
    /// The PIDF-LO is not well-formed XML (or uses a DTD, which we refuse).
    MalformedXml,
    /// Well-formed XML, but not a `presence` document.
    NotPidf,
    /// A PIDF-LO document that carries no usable location at all.
    NoLocation,
    /// A location element we do not know how to read (kept out, named in the detail).
    UnknownShape,
    /// A known shape with a value that cannot be right (latitude 117, radius -5, …).
    MalformedShape,
    /// A coordinate reference system other than WGS 84 (EPSG 4326 / 4979).
    UnsupportedCrs,
    /// A unit of measure we cannot convert; the shape was reduced to what is still certain.
    UnknownUnit,
    /// A `P-Access-Network-Info` value that could not be read.
    MalformedPani,
    /// The serving cell is not in the gateway's cell table (add it to derive a location).
    UnknownCell,
}

/// One problem: its kind plus a sentence for the engineer reading the call log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocationProblem {
    /// What went wrong, as a stable code.
    pub kind: ProblemKind,
    /// What went wrong, for a person: what was seen and, where possible, what to change.
    pub detail: String,
}

impl LocationProblem {
    /// Builds a problem from its kind and a human-readable detail.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            ProblemKind::HugeBody => "huge body",
            ProblemKind::TruncatedMultipart => "truncated multipart",
            ProblemKind::MalformedMultipart => "malformed multipart",
            ProblemKind::TooManyParts => "too many parts",
            ProblemKind::NestingTooDeep => "nesting too deep",
            ProblemKind::WrongContentType => "wrong content type",
            ProblemKind::CidNotFound => "cid not found",
            ProblemKind::BadUri => "bad URI",
            ProblemKind::TooManyValues => "too many values",
            ProblemKind::BadRoutingValue => "bad Geolocation-Routing",
            ProblemKind::NotUtf8 => "not UTF-8",
            ProblemKind::MalformedXml => "malformed XML",
            ProblemKind::NotPidf => "not PIDF",
            ProblemKind::NoLocation => "no location",
            ProblemKind::UnknownShape => "unknown shape",
            ProblemKind::MalformedShape => "malformed shape",
            ProblemKind::UnsupportedCrs => "unsupported CRS",
            ProblemKind::UnknownUnit => "unknown unit",
            ProblemKind::MalformedPani => "malformed P-Access-Network-Info",
            ProblemKind::UnknownCell => "unknown cell",
        };
        f.write_str(text)
    }
}

impl fmt::Display for LocationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}
