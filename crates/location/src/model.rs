//! What a location *is*, independent of where it was read from.
//!
//! Geodetic shapes follow RFC 5491 §5.2 (GML 3.1.1 / GeoShape); civic addresses follow
//! RFC 5139. Units are normalised at parse time — metres and degrees — so nobody downstream
//! has to remember that an angle might have been in radians.

use crate::content_id::ContentId;
use serde::Serialize;
use std::fmt;

/// A length in metres.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Meters(pub f64);

/// An angle in degrees (clockwise from north for orientations, per RFC 5491).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Degrees(pub f64);

/// A WGS 84 position: latitude and longitude in degrees, altitude in metres when 3-D.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Coordinate {
    /// Degrees north (negative south), −90…90.
    pub lat: f64,
    /// Degrees east (negative west), −180…180.
    pub lon: f64,
    /// Metres, present for EPSG 4979 positions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alt: Option<f64>,
}

impl Coordinate {
    /// A 2-D position.
    pub fn new(lat: f64, lon: f64) -> Self {
        Self {
            lat,
            lon,
            alt: None,
        }
    }
}

/// The coordinate reference system of a shape (RFC 5491 §5.1 allows exactly these two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Crs {
    /// `urn:ogc:def:crs:EPSG::4326`: latitude, longitude.
    #[serde(rename = "EPSG:4326")]
    Wgs84TwoD,
    /// `urn:ogc:def:crs:EPSG::4979`: latitude, longitude, altitude.
    #[serde(rename = "EPSG:4979")]
    Wgs84ThreeD,
}

impl Crs {
    /// The URN used in `srsName`.
    pub fn urn(self) -> &'static str {
        match self {
            Crs::Wgs84TwoD => "urn:ogc:def:crs:EPSG::4326",
            Crs::Wgs84ThreeD => "urn:ogc:def:crs:EPSG::4979",
        }
    }
}

/// A geodetic shape of RFC 5491 §5.2.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "shape", rename_all = "snake_case")]
pub enum Shape {
    /// A single position.
    Point {
        /// The position.
        pos: Coordinate,
    },
    /// A disc around a centre.
    Circle {
        /// The centre.
        center: Coordinate,
        /// The radius.
        radius: Meters,
    },
    /// An ellipse around a centre; orientation of the major axis from north.
    Ellipse {
        /// The centre.
        center: Coordinate,
        /// Half the major axis.
        semi_major: Meters,
        /// Half the minor axis.
        semi_minor: Meters,
        /// Direction of the major axis, degrees clockwise from north.
        orientation: Degrees,
    },
    /// A ring sector (typical for a cell sector with timing advance).
    ArcBand {
        /// The centre.
        center: Coordinate,
        /// Inner radius.
        inner_radius: Meters,
        /// Outer radius.
        outer_radius: Meters,
        /// Where the arc starts, degrees clockwise from north.
        start_angle: Degrees,
        /// How wide the arc is, in degrees.
        opening_angle: Degrees,
    },
    /// A polygon; the ring as written (normally closed: first vertex = last vertex).
    Polygon {
        /// The vertices.
        vertices: Vec<Coordinate>,
    },
    /// A polygon extruded upwards (3-D only).
    Prism {
        /// The base polygon's vertices.
        base: Vec<Coordinate>,
        /// How far the prism extends above its base.
        height: Meters,
    },
    /// A ball around a 3-D centre.
    Sphere {
        /// The centre.
        center: Coordinate,
        /// The radius.
        radius: Meters,
    },
    /// An ellipsoid around a 3-D centre.
    Ellipsoid {
        /// The centre.
        center: Coordinate,
        /// Half the major axis.
        semi_major: Meters,
        /// Half the minor axis.
        semi_minor: Meters,
        /// Half the vertical axis.
        vertical_axis: Meters,
        /// Direction of the major axis, degrees clockwise from north.
        orientation: Degrees,
    },
}

impl Shape {
    /// The shape's GML / GeoShape element name.
    pub fn name(&self) -> &'static str {
        match self {
            Shape::Point { .. } => "Point",
            Shape::Circle { .. } => "Circle",
            Shape::Ellipse { .. } => "Ellipse",
            Shape::ArcBand { .. } => "ArcBand",
            Shape::Polygon { .. } => "Polygon",
            Shape::Prism { .. } => "Prism",
            Shape::Sphere { .. } => "Sphere",
            Shape::Ellipsoid { .. } => "Ellipsoid",
        }
    }

    /// A single representative position (centre, or first vertex), for maps and sorting.
    pub fn reference_point(&self) -> Option<Coordinate> {
        match self {
            Shape::Point { pos } => Some(*pos),
            Shape::Circle { center, .. }
            | Shape::Ellipse { center, .. }
            | Shape::ArcBand { center, .. }
            | Shape::Sphere { center, .. }
            | Shape::Ellipsoid { center, .. } => Some(*center),
            Shape::Polygon { vertices } => vertices.first().copied(),
            Shape::Prism { base, .. } => base.first().copied(),
        }
    }
}

/// A geodetic location: a shape in a coordinate reference system.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Geodetic {
    /// 2-D or 3-D WGS 84.
    pub crs: Crs,
    /// The shape.
    #[serde(flatten)]
    pub shape: Shape,
}

/// A civic address (RFC 5139 element names; RFC 4119's older namespace is read the same way).
///
/// Each field is the element's trimmed text. Unknown elements are kept in
/// [`CivicAddress::other`] so nothing the caller's network sent is lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[allow(missing_docs)] // The fields are the RFC 5139 element names; see RFC 5139 §3.1.
pub struct CivicAddress {
    /// Language of the address (`xml:lang`), if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// ISO 3166 alpha-2 country code, e.g. `ID`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Province (provinsi) / state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a1: Option<String>,
    /// Regency or city (kabupaten/kota).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a2: Option<String>,
    /// District (kecamatan) / city.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a3: Option<String>,
    /// Village (kelurahan/desa) / city division.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a4: Option<String>,
    /// Neighbourhood.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a5: Option<String>,
    /// Street (RFC 4119 usage) or street group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pom: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rdsec: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rdbr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rdsubbr: Option<String>,
    /// House number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hno: Option<String>,
    /// House number suffix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hns: Option<String>,
    /// Landmark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lmk: Option<String>,
    /// Additional location information (free text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loc: Option<String>,
    /// Floor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flr: Option<String>,
    /// Name (resident, business).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nam: Option<String>,
    /// Postal code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bld: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seat: Option<String>,
    /// Place type (e.g. `office`, `residence`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plc: Option<String>,
    /// Postal community name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pobox: Option<String>,
    /// Additional code (RFC 5139).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addcode: Option<String>,
    /// Elements we do not model (extensions, RFC 6848), name and text as received.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<CivicExtra>,
}

/// A civic element this crate does not model by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CivicExtra {
    /// The element's namespace URI, if any.
    pub namespace: Option<String>,
    /// The element's local name.
    pub name: String,
    /// Its trimmed text.
    pub value: String,
}

impl CivicAddress {
    /// The field for an RFC 5139 element name (`A1`, `HNO`, `country` …), for reading and writing.
    pub fn field_mut(&mut self, element: &str) -> Option<&mut Option<String>> {
        Some(match element {
            "country" => &mut self.country,
            "A1" => &mut self.a1,
            "A2" => &mut self.a2,
            "A3" => &mut self.a3,
            "A4" => &mut self.a4,
            "A5" => &mut self.a5,
            "A6" => &mut self.a6,
            "PRM" => &mut self.prm,
            "PRD" => &mut self.prd,
            "RD" => &mut self.rd,
            "STS" => &mut self.sts,
            "POD" => &mut self.pod,
            "POM" => &mut self.pom,
            "RDSEC" => &mut self.rdsec,
            "RDBR" => &mut self.rdbr,
            "RDSUBBR" => &mut self.rdsubbr,
            "HNO" => &mut self.hno,
            "HNS" => &mut self.hns,
            "LMK" => &mut self.lmk,
            "LOC" => &mut self.loc,
            "FLR" => &mut self.flr,
            "NAM" => &mut self.nam,
            "PC" => &mut self.pc,
            "BLD" => &mut self.bld,
            "UNIT" => &mut self.unit,
            "ROOM" => &mut self.room,
            "SEAT" => &mut self.seat,
            "PLC" => &mut self.plc,
            "PCN" => &mut self.pcn,
            "POBOX" => &mut self.pobox,
            "ADDCODE" => &mut self.addcode,
            _ => return None,
        })
    }

    /// Every modelled field as (RFC 5139 element name, value), in schema order.
    pub fn fields(&self) -> Vec<(&'static str, &str)> {
        let all: [(&'static str, &Option<String>); 31] = [
            ("country", &self.country),
            ("A1", &self.a1),
            ("A2", &self.a2),
            ("A3", &self.a3),
            ("A4", &self.a4),
            ("A5", &self.a5),
            ("A6", &self.a6),
            ("PRM", &self.prm),
            ("PRD", &self.prd),
            ("RD", &self.rd),
            ("STS", &self.sts),
            ("POD", &self.pod),
            ("POM", &self.pom),
            ("RDSEC", &self.rdsec),
            ("RDBR", &self.rdbr),
            ("RDSUBBR", &self.rdsubbr),
            ("HNO", &self.hno),
            ("HNS", &self.hns),
            ("LMK", &self.lmk),
            ("LOC", &self.loc),
            ("FLR", &self.flr),
            ("NAM", &self.nam),
            ("PC", &self.pc),
            ("BLD", &self.bld),
            ("UNIT", &self.unit),
            ("ROOM", &self.room),
            ("SEAT", &self.seat),
            ("PLC", &self.plc),
            ("PCN", &self.pcn),
            ("POBOX", &self.pobox),
            ("ADDCODE", &self.addcode),
        ];
        all.into_iter()
            .filter_map(|(name, value)| value.as_deref().map(|value| (name, value)))
            .collect()
    }

    /// True when no field (modelled or extra) holds anything.
    pub fn is_empty(&self) -> bool {
        self.fields().is_empty() && self.other.is_empty()
    }
}

/// What kind of location it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LocationValue {
    /// Coordinates and a shape.
    Geodetic(Geodetic),
    /// A street address (boxed: it is ten times the size of a shape).
    Civic(Box<CivicAddress>),
}

siaga_ids::string_id! {
    /// How the location was determined (`<gp:method>`, IANA "Method Tokens": GPS, A-GPS,
    /// Cell …).
    #[derive(Serialize)]
    #[serde(transparent)]
    pub struct Method(pub String);
}

impl Method {
    /// `Cell`: derived from the serving cell.
    pub fn cell() -> Self {
        Self("Cell".to_owned())
    }

    /// `Default`: a configured fallback, not a measurement (RFC 6881 SP-22).
    pub fn default_location() -> Self {
        Self("Default".to_owned())
    }
}

/// Who provided the location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", content = "text", rename_all = "snake_case")]
pub enum ProvidedBy {
    /// The text of the document's `<gp:provided-by>` element.
    Document(String),
    /// This gateway (a cell-table lookup or a configured default), not the caller's network.
    Gateway,
}

/// The RFC 4119 / RFC 4745 basic usage rules attached to a location.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UsageRules {
    /// `retransmission-allowed`; absent means "no" per RFC 4119.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retransmission_allowed: Option<bool>,
    /// `retention-expiry`, as written (an xs:dateTime).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_expiry: Option<String>,
    /// `ruleset-reference` (RFC 4119) or `external-ruleset` (RFC 4745) URI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ruleset_reference: Option<String>,
    /// `note-well`: free text for a human.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note_well: Option<String>,
}

/// Which kind of PIDF element carried the location (RFC 4479 data model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ElementKind {
    /// `<dm:device>`: the device the caller is using — preferred by RFC 5491 Rule 8.
    Device,
    /// `<tuple>`: a communication service.
    Tuple,
    /// `<dm:person>`: the person — a last resort per RFC 5491 Rule 8.
    Person,
}

/// Where in a PIDF document a location was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PidfOrigin {
    /// The presence `entity` attribute (e.g. `pres:alice@example.com`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// Tuple, device or person.
    pub element: ElementKind,
    /// The element's `id` attribute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub element_id: Option<String>,
    /// `<dm:deviceID>`, e.g. `mac:1234567890ab` or `imei:…`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Position of the element among the document's tuples/devices/persons (0-based).
    pub element_index: usize,
    /// Position of this location inside its `location-info` (0-based; >0 means compound).
    pub chunk_index: usize,
}

/// Where a location came from: the caller's network, our cell table, or configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LocationSource {
    /// A PIDF-LO carried in the request body.
    ByValue {
        /// The body part's Content-ID, if it had one.
        #[serde(skip_serializing_if = "Option::is_none")]
        content_id: Option<ContentId>,
        /// Index of the PIDF-LO document in [`crate::LocationReport::pidf_documents`].
        document: usize,
        /// True when a `Geolocation: <cid:…>` header points at this document.
        referenced: bool,
    },
    /// Looked up from the serving cell in `P-Access-Network-Info` — an estimate, not a fix.
    DerivedFromCell {
        /// The cell identity that matched the table.
        cell_id: String,
        /// The area (kabupaten/kota) the table names for the cell.
        area: String,
        /// Whether the P-CSCF (not the handset) inserted the cell identity.
        network_provided: bool,
    },
    /// The trunk's configured default location (RFC 6881 SP-22/23).
    Default,
}

/// One location hint about the caller, with everything needed to judge and forward it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Location {
    /// Where it came from.
    pub source: LocationSource,
    /// Where in its PIDF document it was (by-value locations only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<PidfOrigin>,
    /// The location itself.
    pub value: LocationValue,
    /// `<con:confidence>` in percent (RFC 7459), if stated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence_percent: Option<f64>,
    /// How it was determined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// Who determined it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provided_by: Option<ProvidedBy>,
    /// `<timestamp>` / `<dm:timestamp>`, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Usage rules (retransmission, retention).
    pub usage_rules: UsageRules,
}

/// Formats a number with at most `places` decimals and no trailing zeros.
pub(crate) fn trimmed(value: f64, places: usize) -> String {
    let text = format!("{value:.places$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    };
    if text == "-0" { "0".to_owned() } else { text }
}

impl fmt::Display for Meters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} m", trimmed(self.0, 1))
    }
}

impl fmt::Display for Degrees {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}°", trimmed(self.0, 2))
    }
}

impl fmt::Display for Coordinate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {}", trimmed(self.lat, 6), trimmed(self.lon, 6))?;
        if let Some(alt) = self.alt {
            write!(f, " alt {}", Meters(alt))?;
        }
        Ok(())
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Point { pos } => write!(f, "point {pos}"),
            Shape::Circle { center, radius } => write!(f, "circle centre {center} radius {radius}"),
            Shape::Ellipse {
                center,
                semi_major,
                semi_minor,
                orientation,
            } => write!(
                f,
                "ellipse centre {center} semi-major {semi_major} semi-minor {semi_minor} \
                 orientation {orientation}"
            ),
            Shape::ArcBand {
                center,
                inner_radius,
                outer_radius,
                start_angle,
                opening_angle,
            } => write!(
                f,
                "arc band centre {center} radius {inner_radius}–{outer_radius} \
                 from {start_angle} opening {opening_angle}"
            ),
            Shape::Polygon { vertices } => {
                write!(f, "polygon of {} vertices", vertices.len())?;
                if let Some(first) = vertices.first() {
                    write!(f, " starting {first}")?;
                }
                Ok(())
            }
            Shape::Prism { base, height } => {
                write!(f, "prism of {} base vertices height {height}", base.len())?;
                if let Some(first) = base.first() {
                    write!(f, " starting {first}")?;
                }
                Ok(())
            }
            Shape::Sphere { center, radius } => write!(f, "sphere centre {center} radius {radius}"),
            Shape::Ellipsoid {
                center,
                semi_major,
                semi_minor,
                vertical_axis,
                orientation,
            } => write!(
                f,
                "ellipsoid centre {center} semi-major {semi_major} semi-minor {semi_minor} \
                 vertical {vertical_axis} orientation {orientation}"
            ),
        }
    }
}

impl fmt::Display for CivicAddress {
    /// Street first, then the administrative areas from small to large, then the country:
    /// the order a dispatcher reads an address aloud.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // RFC 4119 put the street in A6; RFC 5139 moved it to RD (A6 became a street group).
        let road = [
            &self.prm, &self.prd, &self.rd, &self.sts, &self.pod, &self.pom,
        ];
        let has_road = road.iter().any(|part| part.is_some());
        let street: Vec<&str> = road
            .into_iter()
            .chain(if has_road { None } else { Some(&self.a6) })
            .chain([&self.hno, &self.hns])
            .filter_map(|part| part.as_deref())
            .collect();
        let mut pieces: Vec<String> = Vec::new();
        if let Some(name) = &self.nam {
            pieces.push(name.clone());
        }
        if !street.is_empty() {
            pieces.push(street.join(" "));
        }
        if has_road && let Some(a6) = &self.a6 {
            pieces.push(a6.clone());
        }
        for (label, value) in [
            ("bld", &self.bld),
            ("floor", &self.flr),
            ("unit", &self.unit),
            ("room", &self.room),
            ("seat", &self.seat),
        ] {
            if let Some(value) = value {
                pieces.push(format!("{label} {value}"));
            }
        }
        for value in [
            &self.loc,
            &self.lmk,
            &self.a5,
            &self.a4,
            &self.a3,
            &self.a2,
            &self.a1,
            &self.pc,
            &self.country,
        ]
        .into_iter()
        .flatten()
        {
            pieces.push(value.clone());
        }
        for extra in &self.other {
            pieces.push(format!("{}={}", extra.name, extra.value));
        }
        if pieces.is_empty() {
            f.write_str("civic address (empty)")
        } else {
            write!(f, "civic address {}", pieces.join(", "))
        }
    }
}

impl fmt::Display for LocationValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocationValue::Geodetic(geodetic) => write!(f, "{}", geodetic.shape),
            LocationValue::Civic(civic) => write!(f, "{civic}"),
        }
    }
}

impl fmt::Display for ProvidedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProvidedBy::Document(text) => f.write_str(text),
            ProvidedBy::Gateway => f.write_str("this gateway"),
        }
    }
}

impl fmt::Display for LocationSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocationSource::ByValue {
                content_id,
                referenced,
                ..
            } => {
                f.write_str("by value")?;
                if let Some(content_id) = content_id {
                    write!(f, " {content_id}")?;
                }
                if !referenced {
                    f.write_str(", not referenced by Geolocation")?;
                }
                Ok(())
            }
            LocationSource::DerivedFromCell {
                cell_id,
                area,
                network_provided,
            } => {
                write!(f, "derived from cell {cell_id} ({area})")?;
                if !network_provided {
                    f.write_str(", cell reported by the handset")?;
                }
                Ok(())
            }
            LocationSource::Default => f.write_str("trunk default location"),
        }
    }
}

impl fmt::Display for Location {
    /// `circle centre -0.5022, 117.1536 radius 850 m (GPS, provided-by …) [by value <cid>]`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.value)?;
        let mut notes: Vec<String> = Vec::new();
        if let Some(method) = &self.method {
            notes.push(method.0.clone());
        }
        if let Some(provided_by) = &self.provided_by {
            notes.push(format!("provided-by {provided_by}"));
        }
        if let Some(confidence) = self.confidence_percent {
            notes.push(format!("confidence {}%", trimmed(confidence, 1)));
        }
        if let Some(timestamp) = &self.timestamp {
            notes.push(format!("at {timestamp}"));
        }
        if !notes.is_empty() {
            write!(f, " ({})", notes.join(", "))?;
        }
        write!(f, " [{}", self.source)?;
        if let Some(origin) = &self.origin {
            let kind = match origin.element {
                ElementKind::Device => "device",
                ElementKind::Tuple => "tuple",
                ElementKind::Person => "person",
            };
            write!(f, ", {kind}")?;
            if let Some(id) = &origin.element_id {
                write!(f, " {id:?}")?;
            }
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circle_reads_like_the_cli_example() {
        let location = Location {
            source: LocationSource::Default,
            origin: None,
            value: LocationValue::Geodetic(Geodetic {
                crs: Crs::Wgs84TwoD,
                shape: Shape::Circle {
                    center: Coordinate::new(-0.5022, 117.1536),
                    radius: Meters(850.0),
                },
            }),
            confidence_percent: None,
            method: Some(Method("GPS".to_owned())),
            provided_by: Some(ProvidedBy::Document("Telkomsel LIS".to_owned())),
            timestamp: None,
            usage_rules: UsageRules::default(),
        };
        assert_eq!(
            location.to_string(),
            "circle centre -0.5022, 117.1536 radius 850 m (GPS, provided-by Telkomsel LIS) \
             [trunk default location]"
        );
    }

    #[test]
    fn civic_address_reads_street_then_areas() {
        let civic = CivicAddress {
            country: Some("ID".to_owned()),
            a1: Some("Kalimantan Timur".to_owned()),
            a2: Some("Kota Samarinda".to_owned()),
            rd: Some("Jalan Jenderal Sudirman".to_owned()),
            hno: Some("12".to_owned()),
            flr: Some("2".to_owned()),
            ..CivicAddress::default()
        };
        assert_eq!(
            civic.to_string(),
            "civic address Jalan Jenderal Sudirman 12, floor 2, Kota Samarinda, Kalimantan Timur, ID"
        );
    }

    #[test]
    fn numbers_are_trimmed_for_people() {
        assert_eq!(trimmed(850.24, 1), "850.2");
        assert_eq!(trimmed(43.2000000001, 2), "43.2");
        assert_eq!(trimmed(-0.00001, 2), "0");
        assert_eq!(Meters(2215.4).to_string(), "2215.4 m");
    }
}
