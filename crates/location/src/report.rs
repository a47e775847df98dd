//! The one entry point the signalling engine calls for every INVITE, UPDATE and re-INVITE.
//!
//! [`extract`] gathers every location hint in a request — PIDF-LO bodies, `Geolocation`
//! references, the serving cell, the trunk default — into one [`LocationReport`] that is kept
//! with the call, written to the call log as JSON and shown by `siaga calls show`. It is total:
//! whatever the request holds, it returns a report, with trouble listed as problems.

use crate::choose::choose;
use crate::content_id::ContentId;
use crate::default_location::DefaultLocation;
use crate::geolocation::{
    GeolocationRouting, GeolocationValue, parse_geolocation, parse_geolocation_routing,
};
use crate::media_type::{MediaType, split_outside_quotes};
use crate::model::Location;
use crate::model::LocationSource;
use crate::multipart::{MultipartError, split};
use crate::pani::{CellTable, Pani, parse_pani};
use crate::pidf::parse_pidf;
use crate::problem::{LocationProblem, ProblemKind};
use serde::{Serialize, Serializer};
use std::fmt;
use std::ops::Range;

/// Largest request body we look into for locations.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Most entries we read from each kind of header (all header lines together).
pub const MAX_HEADER_VALUES: usize = 16;

/// What the engine hands over from one request: raw header values and the body.
///
/// Each header slice holds one element per header line, as received (a line may itself hold
/// several comma-separated entries).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocationInput<'a> {
    /// `Geolocation` header values.
    pub geolocation: &'a [&'a str],
    /// `Geolocation-Routing` header values.
    pub geolocation_routing: &'a [&'a str],
    /// `P-Access-Network-Info` header values.
    pub p_access_network_info: &'a [&'a str],
    /// The request's `Content-Type`, if any.
    pub content_type: Option<&'a str>,
    /// The request's own `Content-ID` (RFC 8262), which a `cid:` may name for a whole body.
    pub content_id: Option<&'a str>,
    /// The request body, exactly as received.
    pub body: &'a [u8],
    /// The trunk's default location, used only when the request yields no location at all.
    pub default_location: Option<&'a DefaultLocation>,
}

/// A by-value PIDF-LO document found in the body, kept byte for byte for forwarding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PidfBody {
    /// The part's Content-ID, if it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_id: Option<ContentId>,
    /// The part's Content-Type, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// True when a `Geolocation: <cid:…>` names this part.
    pub referenced: bool,
    /// Where the document lies in the request body.
    pub body_range: Range<usize>,
    /// True when the multipart body was cut short inside this part.
    pub truncated: bool,
    /// The exact bytes (serialised as text for the call log).
    #[serde(serialize_with = "bytes_as_text")]
    pub bytes: Vec<u8>,
}

fn bytes_as_text<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&String::from_utf8_lossy(bytes))
}

/// Everything known about where the caller is, for one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocationReport {
    /// Every location found, by value first, then cell-derived, then the default.
    pub locations: Vec<Location>,
    /// Index into [`LocationReport::locations`] of the one to show first.
    pub chosen: Option<usize>,
    /// Location URIs that point elsewhere (`sip:`, `https:` …), not dereferenced here.
    pub references: Vec<GeolocationValue>,
    /// `Geolocation-Routing`, if the request carried it.
    pub routing: Option<GeolocationRouting>,
    /// Every `P-Access-Network-Info` entry that could be read.
    pub pani: Vec<Pani>,
    /// The by-value PIDF-LO documents, in the order their locations were numbered.
    pub pidf_documents: Vec<PidfBody>,
    /// Everything that was wrong, missing or ignored.
    pub problems: Vec<LocationProblem>,
}

impl LocationReport {
    /// The location to show first.
    pub fn chosen_location(&self) -> Option<&Location> {
        self.chosen.and_then(|index| self.locations.get(index))
    }

    /// The exact bytes of each by-value PIDF-LO, to forward to the agency unchanged.
    pub fn pidf_bytes(&self) -> impl Iterator<Item = &[u8]> {
        self.pidf_documents
            .iter()
            .map(|document| document.bytes.as_slice())
    }
}

/// A body part (or the whole body) that may hold a PIDF-LO.
struct Candidate<'a> {
    content_type: Option<String>,
    essence: Option<String>,
    content_id: Option<ContentId>,
    bytes: &'a [u8],
    range: Range<usize>,
    truncated: bool,
    referenced: bool,
}

/// Reads every location hint in a request. Never fails, never panics.
pub fn extract(input: &LocationInput<'_>, cells: Option<&CellTable>) -> LocationReport {
    let mut problems = Vec::new();
    let (cid_refs, references) = read_geolocation(input.geolocation, &mut problems);
    let routing = read_routing(input.geolocation_routing, &mut problems);
    let pani = read_pani(input.p_access_network_info, &mut problems);

    let mut candidates = body_candidates(input, &mut problems);
    let mut order: Vec<usize> = Vec::new();
    for content_id in &cid_refs {
        let Some(index) = candidates.iter().position(|candidate| {
            candidate
                .content_id
                .as_ref()
                .is_some_and(|id| id.matches(content_id))
        }) else {
            let available: Vec<String> = candidates
                .iter()
                .filter_map(|candidate| candidate.content_id.as_ref().map(ToString::to_string))
                .collect();
            problems.push(LocationProblem::new(
                ProblemKind::CidNotFound,
                format!(
                    "Geolocation names cid:{} but the body has {}",
                    content_id.as_str(),
                    if available.is_empty() {
                        "no part with a Content-ID".to_owned()
                    } else {
                        format!("only {}", available.join(", "))
                    }
                ),
            ));
            continue;
        };
        if !order.contains(&index) {
            order.push(index);
        }
        if let Some(candidate) = candidates.get_mut(index) {
            candidate.referenced = true;
        }
    }
    let unreferenced_pidf = candidates
        .iter()
        .enumerate()
        .filter(|(index, candidate)| {
            !order.contains(index) && is_pidf(candidate.essence.as_deref())
        })
        .map(|(index, _)| index)
        .collect::<Vec<_>>();
    order.extend(unreferenced_pidf);

    let mut locations = Vec::new();
    let mut pidf_documents = Vec::new();
    for index in order {
        let Some(candidate) = candidates.get(index) else {
            continue;
        };
        let label = candidate
            .content_id
            .as_ref()
            .map_or_else(|| "body".to_owned(), |id| format!("part {id}"));
        if !is_pidf(candidate.essence.as_deref()) {
            let looks_like_xml = candidate
                .bytes
                .iter()
                .find(|byte| !byte.is_ascii_whitespace())
                == Some(&b'<');
            problems.push(LocationProblem::new(
                ProblemKind::WrongContentType,
                format!(
                    "{label} is {} rather than application/pidf+xml; {}",
                    candidate.content_type.as_deref().unwrap_or("untyped"),
                    if looks_like_xml {
                        "read as PIDF-LO anyway"
                    } else {
                        "not read"
                    }
                ),
            ));
            if !looks_like_xml {
                continue;
            }
        }
        let document = pidf_documents.len();
        let parsed = parse_pidf(
            candidate.bytes,
            LocationSource::ByValue {
                content_id: candidate.content_id.clone(),
                document,
                referenced: candidate.referenced,
            },
        );
        problems.extend(parsed.problems.into_iter().map(|problem| LocationProblem {
            detail: format!("{label}: {}", problem.detail),
            ..problem
        }));
        locations.extend(parsed.locations);
        pidf_documents.push(PidfBody {
            content_id: candidate.content_id.clone(),
            content_type: candidate.content_type.clone(),
            referenced: candidate.referenced,
            body_range: candidate.range.clone(),
            truncated: candidate.truncated,
            bytes: candidate.bytes.to_vec(),
        });
    }
    candidates.clear();

    if let Some(cells) = cells {
        derive_from_cells(cells, &pani, &mut locations, &mut problems);
    }
    if locations.is_empty()
        && let Some(default) = input.default_location
    {
        locations.push(default.to_location());
    }
    LocationReport {
        chosen: choose(&locations),
        locations,
        references,
        routing,
        pani,
        pidf_documents,
        problems,
    }
}

fn is_pidf(essence: Option<&str>) -> bool {
    essence == Some("application/pidf+xml")
}

fn read_geolocation(
    values: &[&str],
    problems: &mut Vec<LocationProblem>,
) -> (Vec<ContentId>, Vec<GeolocationValue>) {
    let mut cid_refs = Vec::new();
    let mut references = Vec::new();
    let mut seen = 0usize;
    for entry in values.iter().flat_map(|value| parse_geolocation(value)) {
        seen += 1;
        if seen > MAX_HEADER_VALUES {
            problems.push(LocationProblem::new(
                ProblemKind::TooManyValues,
                format!("more than {MAX_HEADER_VALUES} Geolocation entries; the rest were ignored"),
            ));
            break;
        }
        match entry {
            Ok(value) => match value.content_id() {
                Some(content_id) => cid_refs.push(content_id),
                None => references.push(value),
            },
            Err(error) => {
                problems.push(LocationProblem::new(ProblemKind::BadUri, error.to_string()))
            }
        }
    }
    (cid_refs, references)
}

/// Conflicting values resolve to `no`: routing on location the sender may not have allowed is
/// worse than routing without it (the dialplan still routes every call).
fn read_routing(
    values: &[&str],
    problems: &mut Vec<LocationProblem>,
) -> Option<GeolocationRouting> {
    let mut result: Option<GeolocationRouting> = None;
    for piece in values
        .iter()
        .flat_map(|value| split_outside_quotes(value, ','))
        .filter(|piece| !piece.trim().is_empty())
        .take(MAX_HEADER_VALUES)
    {
        let parsed = parse_geolocation_routing(piece);
        if let GeolocationRouting::Other(text) = &parsed {
            problems.push(LocationProblem::new(
                ProblemKind::BadRoutingValue,
                format!("Geolocation-Routing {text:?} is neither yes nor no"),
            ));
        }
        result = match result {
            None => Some(parsed),
            Some(previous) if previous == parsed => Some(previous),
            Some(previous) => {
                problems.push(LocationProblem::new(
                    ProblemKind::BadRoutingValue,
                    format!("conflicting Geolocation-Routing values {previous:?} and {parsed:?}; treated as no"),
                ));
                Some(GeolocationRouting::No)
            }
        };
    }
    result
}

fn read_pani(values: &[&str], problems: &mut Vec<LocationProblem>) -> Vec<Pani> {
    let mut entries = Vec::new();
    for (seen, entry) in values
        .iter()
        .flat_map(|value| parse_pani(value))
        .enumerate()
    {
        if seen >= MAX_HEADER_VALUES {
            problems.push(LocationProblem::new(
                ProblemKind::TooManyValues,
                format!("more than {MAX_HEADER_VALUES} P-Access-Network-Info entries; the rest were ignored"),
            ));
            break;
        }
        match entry {
            Ok(pani) => entries.push(pani),
            Err(error) => problems.push(LocationProblem::new(
                ProblemKind::MalformedPani,
                error.to_string(),
            )),
        }
    }
    entries
}

fn body_candidates<'a>(
    input: &LocationInput<'a>,
    problems: &mut Vec<LocationProblem>,
) -> Vec<Candidate<'a>> {
    let body = input.body;
    if body.is_empty() {
        return Vec::new();
    }
    if body.len() > MAX_BODY_BYTES {
        problems.push(LocationProblem::new(
            ProblemKind::HugeBody,
            format!(
                "body of {} bytes exceeds the {MAX_BODY_BYTES}-byte limit; not searched for locations",
                body.len()
            ),
        ));
        return Vec::new();
    }
    let media = input.content_type.and_then(MediaType::parse);
    let Some(media) = media.clone().filter(MediaType::is_multipart) else {
        return vec![Candidate {
            content_type: input.content_type.map(str::to_owned),
            essence: media.map(|media| media.essence),
            content_id: input.content_id.map(ContentId::from_header),
            bytes: body,
            range: 0..body.len(),
            truncated: false,
            referenced: false,
        }];
    };
    let multipart = match split(input.content_type.unwrap_or_default(), body) {
        Ok(multipart) => multipart,
        Err(error) => {
            problems.push(LocationProblem::new(
                ProblemKind::MalformedMultipart,
                error.to_string(),
            ));
            return Vec::new();
        }
    };
    for error in &multipart.problems {
        let kind = match error {
            MultipartError::Truncated { .. } => ProblemKind::TruncatedMultipart,
            MultipartError::TooManyParts { .. } => ProblemKind::TooManyParts,
            MultipartError::NestingTooDeep { .. } => ProblemKind::NestingTooDeep,
            _ => ProblemKind::MalformedMultipart,
        };
        problems.push(LocationProblem::new(
            kind,
            format!("{} body: {error}", media.essence),
        ));
    }
    multipart
        .parts
        .into_iter()
        .filter_map(|part| {
            let essence = part.headers.essence();
            // A nested multipart's own parts are listed after it; the container holds no location.
            if essence
                .as_deref()
                .is_some_and(|essence| essence.starts_with("multipart/"))
            {
                return None;
            }
            Some(Candidate {
                content_type: part.headers.content_type,
                essence,
                content_id: part.headers.content_id,
                bytes: part.body,
                range: part.body_range,
                truncated: part.truncated,
                referenced: false,
            })
        })
        .collect()
}

/// Adds a cell-derived location for each PANI entry whose cell is in the table,
/// network-provided entries first (the handset's own claim can be stale).
fn derive_from_cells(
    cells: &CellTable,
    pani: &[Pani],
    locations: &mut Vec<Location>,
    problems: &mut Vec<LocationProblem>,
) {
    let mut entries: Vec<&Pani> = pani.iter().collect();
    entries.sort_by_key(|entry| !entry.network_provided());
    let mut used: Vec<String> = Vec::new();
    for entry in entries {
        match cells.lookup(entry) {
            Some(derived) => {
                let key = derived.cell.cell_id.to_ascii_lowercase();
                if !used.contains(&key) {
                    used.push(key);
                    locations.push(derived.location);
                }
            }
            None => {
                if let Some(cell) = entry.cell_ids().first() {
                    problems.push(LocationProblem::new(
                        ProblemKind::UnknownCell,
                        format!(
                            "{} {} is not in the cell table; add a row to derive a location",
                            cell.kind.param_name(),
                            cell.value
                        ),
                    ));
                }
            }
        }
    }
}

impl fmt::Display for LocationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.locations.len() {
            0 => f.write_str("no location")?,
            1 => f.write_str("1 location")?,
            count => write!(f, "{count} locations")?,
        }
        if let Some(routing) = &self.routing {
            let text = match routing {
                GeolocationRouting::Yes => "yes",
                GeolocationRouting::No => "no",
                GeolocationRouting::Other(text) => text.as_str(),
            };
            write!(f, " (Geolocation-Routing: {text})")?;
        }
        writeln!(f)?;
        for (index, location) in self.locations.iter().enumerate() {
            let marker = if Some(index) == self.chosen { '*' } else { ' ' };
            writeln!(f, " {marker} {}. {location}", index + 1)?;
        }
        for reference in &self.references {
            writeln!(f, "   reference {reference} (not dereferenced)")?;
        }
        for entry in &self.pani {
            writeln!(f, "   access network {entry}")?;
        }
        if !self.problems.is_empty() {
            writeln!(f, "problems:")?;
            for problem in &self.problems {
                writeln!(f, "   - {problem}")?;
            }
        }
        Ok(())
    }
}
