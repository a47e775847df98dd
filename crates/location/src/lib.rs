//! siaga-location: every hint about where an emergency caller is, read without ever failing
//! the call.
//!
//! Networks send a handset position as a PIDF-LO body (RFC 4119 / 5491 / 5139) referenced by
//! a `Geolocation` header (RFC 6442), and the serving cell in `P-Access-Network-Info`
//! (3GPP TS 24.229). [`extract`] gathers them all into a [`LocationReport`]; by-value PIDF-LO
//! bytes are kept exactly as received so they can be forwarded to the agency unchanged.
//!
//! The crate is pure: no clock, no IO. Every parser is total — any input gives a result, and
//! trouble is reported as [`LocationProblem`]s next to whatever could still be used.

#![warn(missing_docs)]

pub mod choose;
pub mod content_id;
pub mod default_location;
pub mod geolocation;
mod media_type;
pub mod model;
pub mod multipart;
pub mod pani;
pub mod pidf;
pub mod problem;
pub mod report;

pub use choose::choose;
pub use content_id::ContentId;
pub use default_location::{DefaultLocation, PidfBuilder};
pub use geolocation::{
    GeolocationErrorHeader, GeolocationRouting, GeolocationValue, UriScheme, parse_geolocation,
    parse_geolocation_error, parse_geolocation_routing,
};
pub use model::{
    CivicAddress, Coordinate, Crs, Degrees, ElementKind, Geodetic, Location, LocationSource,
    LocationValue, Meters, Method, PidfOrigin, ProvidedBy, Shape, UsageRules,
};
pub use multipart::{Multipart, MultipartError, Part, find_sdp, split};
pub use pani::{CellTable, CellTableError, DerivedLocation, Pani, parse_pani};
pub use pidf::{PidfDocument, parse_pidf};
pub use problem::{LocationProblem, ProblemKind};
pub use report::{LocationInput, LocationReport, PidfBody, extract};
