//! Reading PIDF-LO documents (`application/pidf+xml`; RFC 4119, RFC 5491, RFC 5139).
//!
//! The parser is total and forgiving: any byte string gives a [`PidfDocument`], possibly with
//! no locations and a list of problems. One bad shape does not discard the rest of the
//! document, and a shape whose radius is unreadable still gives its centre. Elements are
//! matched by local name (prefixes and namespace spellings vary in the field); namespaces are
//! used where they tell things apart (GML shapes versus extension elements).

use crate::model::{
    CivicAddress, CivicExtra, Coordinate, Crs, Degrees, ElementKind, Geodetic, Location,
    LocationSource, LocationValue, Meters, Method, PidfOrigin, ProvidedBy, Shape, UsageRules,
};
use crate::problem::{LocationProblem, ProblemKind};
use roxmltree::{Document, Node, ParsingOptions};

/// Largest PIDF-LO we parse. Real documents are 1–4 KiB; anything far larger is abuse or error.
pub const MAX_PIDF_BYTES: usize = 64 * 1024;

/// Most XML nodes we build for one document, a second guard against pathological input.
const MAX_XML_NODES: u32 = 20_000;

const GML_NS: &str = "http://www.opengis.net/gml";
const GEOSHAPE_NS: &str = "http://www.opengis.net/pidflo/1.0";
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// The result of reading one PIDF-LO document.
#[derive(Debug, Clone, PartialEq)]
pub struct PidfDocument {
    /// The presence `entity` (e.g. `pres:alice@example.com`), if the document had one.
    pub entity: Option<String>,
    /// Every location found, in document order.
    pub locations: Vec<Location>,
    /// Everything that was wrong or ignored.
    pub problems: Vec<LocationProblem>,
}

/// Parses a PIDF-LO document; never fails, never panics.
///
/// `source` says where the bytes came from and is stamped on every location found.
pub fn parse_pidf(xml: &[u8], source: LocationSource) -> PidfDocument {
    let mut document = PidfDocument {
        entity: None,
        locations: Vec::new(),
        problems: Vec::new(),
    };
    if xml.len() > MAX_PIDF_BYTES {
        document.problems.push(LocationProblem::new(
            ProblemKind::HugeBody,
            format!(
                "PIDF-LO of {} bytes exceeds the {MAX_PIDF_BYTES}-byte limit; not parsed",
                xml.len()
            ),
        ));
        return document;
    }
    let xml = xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml);
    let text = match std::str::from_utf8(xml) {
        Ok(text) => text,
        Err(error) => {
            document.problems.push(LocationProblem::new(
                ProblemKind::NotUtf8,
                format!("PIDF-LO is not UTF-8 ({error}); only UTF-8 documents are read"),
            ));
            return document;
        }
    };
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_XML_NODES,
        ..ParsingOptions::default()
    };
    let parsed = match Document::parse_with_options(text, options) {
        Ok(parsed) => parsed,
        Err(error) => {
            document.problems.push(LocationProblem::new(
                ProblemKind::MalformedXml,
                format!("PIDF-LO is not well-formed XML: {error}"),
            ));
            return document;
        }
    };
    let root = parsed.root_element();
    if root.tag_name().name() != "presence" {
        document.problems.push(LocationProblem::new(
            ProblemKind::NotPidf,
            format!(
                "root element is <{}>, expected <presence> (urn:ietf:params:xml:ns:pidf)",
                root.tag_name().name()
            ),
        ));
        return document;
    }
    document.entity = root.attribute("entity").map(str::to_owned);
    let mut reader = Reader {
        source,
        entity: document.entity.clone(),
        locations: Vec::new(),
        problems: Vec::new(),
    };
    let elements = root
        .children()
        .filter(Node::is_element)
        .filter_map(|child| {
            let kind = match child.tag_name().name() {
                "tuple" => ElementKind::Tuple,
                "device" => ElementKind::Device,
                "person" => ElementKind::Person,
                _ => return None,
            };
            Some((kind, child))
        });
    for (element_index, (kind, element)) in elements.enumerate() {
        reader.read_element(kind, element, element_index);
    }
    document.locations = reader.locations;
    document.problems.extend(reader.problems);
    if document.locations.is_empty() {
        document.problems.push(LocationProblem::new(
            ProblemKind::NoLocation,
            "the PIDF-LO holds no readable location",
        ));
    }
    document
}

/// Collects locations and problems while walking one document.
struct Reader {
    source: LocationSource,
    entity: Option<String>,
    locations: Vec<Location>,
    problems: Vec<LocationProblem>,
}

/// What one `geopriv` says about all the locations in its `location-info`.
struct GeoprivContext {
    origin: PidfOrigin,
    method: Option<Method>,
    provided_by: Option<ProvidedBy>,
    timestamp: Option<String>,
    usage_rules: UsageRules,
    confidence_percent: Option<f64>,
}

impl Reader {
    fn problem(&mut self, kind: ProblemKind, detail: impl Into<String>) {
        self.problems.push(LocationProblem::new(kind, detail));
    }

    fn read_element(&mut self, kind: ElementKind, element: Node<'_, '_>, element_index: usize) {
        let element_id = element.attribute("id").map(str::to_owned);
        let timestamp = child(element, "timestamp").and_then(text_of);
        let device_id = child(element, "deviceID").and_then(text_of);
        let geoprivs = element
            .descendants()
            .filter(|node| node.is_element() && node.tag_name().name() == "geopriv");
        for geopriv in geoprivs {
            let mut usage_rules = child(geopriv, "usage-rules")
                .map(read_usage_rules)
                .unwrap_or_default();
            if usage_rules.note_well.is_none() {
                usage_rules.note_well = child(geopriv, "note-well").and_then(text_of);
            }
            for location_info in children(geopriv, "location-info") {
                let mut context = GeoprivContext {
                    origin: PidfOrigin {
                        entity: self.entity.clone(),
                        element: kind,
                        element_id: element_id.clone(),
                        device_id: device_id.clone(),
                        element_index,
                        chunk_index: 0,
                    },
                    method: child(geopriv, "method").and_then(text_of).map(Method),
                    provided_by: child(geopriv, "provided-by")
                        .and_then(text_of)
                        .map(ProvidedBy::Document),
                    timestamp: timestamp.clone(),
                    usage_rules: usage_rules.clone(),
                    confidence_percent: self.read_confidence(location_info),
                };
                self.read_location_info(location_info, &mut context);
            }
        }
    }

    fn read_confidence(&mut self, location_info: Node<'_, '_>) -> Option<f64> {
        let text = child(location_info, "confidence").and_then(text_of)?;
        match text.parse::<f64>() {
            Ok(value) if (0.0..=100.0).contains(&value) => Some(value),
            _ => {
                self.problem(
                    ProblemKind::MalformedShape,
                    format!("confidence {text:?} is not a percentage 0-100; ignored"),
                );
                None
            }
        }
    }

    fn read_location_info(&mut self, location_info: Node<'_, '_>, context: &mut GeoprivContext) {
        for chunk in location_info.children().filter(Node::is_element) {
            let name = chunk.tag_name().name();
            let namespace = chunk.tag_name().namespace();
            if name == "confidence" {
                continue;
            }
            if name == "location" && namespace == Some(GML_NS) {
                // RFC 4119's original examples wrap the shape in <gml:location>.
                for inner in chunk.children().filter(Node::is_element) {
                    self.read_chunk(inner, context);
                }
                continue;
            }
            self.read_chunk(chunk, context);
        }
    }

    fn read_chunk(&mut self, chunk: Node<'_, '_>, context: &mut GeoprivContext) {
        let name = chunk.tag_name().name();
        let namespace = chunk.tag_name().namespace();
        let value = if name == "civicAddress" {
            let civic = read_civic(chunk);
            if civic.is_empty() {
                self.problem(
                    ProblemKind::MalformedShape,
                    "civicAddress has no elements; ignored",
                );
                return;
            }
            Some(LocationValue::Civic(Box::new(civic)))
        } else if matches!(namespace, Some(GML_NS) | Some(GEOSHAPE_NS) | None) {
            self.read_shape(chunk).map(LocationValue::Geodetic)
        } else {
            self.problem(
                ProblemKind::UnknownShape,
                format!(
                    "location-info holds <{name}> in namespace {}; not a location format this \
                     gateway reads, ignored",
                    namespace.unwrap_or("(none)")
                ),
            );
            None
        };
        if let Some(value) = value {
            self.locations.push(Location {
                source: self.source.clone(),
                origin: Some(context.origin.clone()),
                value,
                confidence_percent: context.confidence_percent,
                method: context.method.clone(),
                provided_by: context.provided_by.clone(),
                timestamp: context.timestamp.clone(),
                usage_rules: context.usage_rules.clone(),
            });
            context.origin.chunk_index += 1;
        }
    }

    fn read_shape(&mut self, node: Node<'_, '_>) -> Option<Geodetic> {
        let name = node.tag_name().name();
        let declared_crs = match node.attribute("srsName") {
            Some(srs) => match crs_from_srs_name(srs) {
                Some(crs) => Some(crs),
                None => {
                    self.problem(
                        ProblemKind::UnsupportedCrs,
                        format!(
                            "{name} uses srsName {srs:?}; only WGS 84 (EPSG 4326 / 4979) is \
                             understood, shape ignored"
                        ),
                    );
                    return None;
                }
            },
            None => None,
        };
        let shape = match name {
            "Point" => self.position(node, name).map(|pos| Shape::Point { pos }),
            "Circle" | "Sphere" => self.centred(node, name, |reader, center| {
                let radius = reader.length(node, name, "radius")?;
                Ok(if name == "Circle" {
                    Shape::Circle { center, radius }
                } else {
                    Shape::Sphere { center, radius }
                })
            }),
            "Ellipse" => self.centred(node, name, |reader, center| {
                Ok(Shape::Ellipse {
                    center,
                    semi_major: reader.length(node, name, "semiMajorAxis")?,
                    semi_minor: reader.length(node, name, "semiMinorAxis")?,
                    orientation: reader.angle(node, name, "orientation")?,
                })
            }),
            "Ellipsoid" => self.centred(node, name, |reader, center| {
                Ok(Shape::Ellipsoid {
                    center,
                    semi_major: reader.length(node, name, "semiMajorAxis")?,
                    semi_minor: reader.length(node, name, "semiMinorAxis")?,
                    vertical_axis: reader.length(node, name, "verticalAxis")?,
                    orientation: reader.angle(node, name, "orientation")?,
                })
            }),
            "ArcBand" => self.centred(node, name, |reader, center| {
                Ok(Shape::ArcBand {
                    center,
                    inner_radius: reader.length(node, name, "innerRadius")?,
                    outer_radius: reader.length(node, name, "outerRadius")?,
                    start_angle: reader.angle(node, name, "startAngle")?,
                    opening_angle: reader.angle(node, name, "openingAngle")?,
                })
            }),
            "Polygon" => self
                .ring(node, declared_crs)
                .map(|vertices| Shape::Polygon { vertices }),
            "Prism" => {
                let polygon = node
                    .descendants()
                    .find(|inner| inner.is_element() && inner.tag_name().name() == "Polygon");
                let base = match polygon {
                    Some(polygon) => self.ring(polygon, declared_crs),
                    None => {
                        self.problem(
                            ProblemKind::MalformedShape,
                            "Prism has no base Polygon; ignored",
                        );
                        None
                    }
                };
                base.map(|base| match self.length(node, name, "height") {
                    Ok(height) => Shape::Prism { base, height },
                    Err(()) => {
                        self.problem(
                            ProblemKind::MalformedShape,
                            "Prism height unusable; kept as its base polygon",
                        );
                        Shape::Polygon { vertices: base }
                    }
                })
            }
            other => {
                self.problem(
                    ProblemKind::UnknownShape,
                    format!(
                        "<{other}> is not one of the RFC 5491 shapes (Point, Circle, Ellipse, \
                         ArcBand, Polygon, Prism, Sphere, Ellipsoid); ignored"
                    ),
                );
                None
            }
        }?;
        let crs = declared_crs.unwrap_or_else(|| {
            let has_altitude = shape.reference_point().is_some_and(|pos| pos.alt.is_some());
            self.problem(
                ProblemKind::MalformedShape,
                format!("{name} has no srsName; assumed WGS 84"),
            );
            if has_altitude {
                Crs::Wgs84ThreeD
            } else {
                Crs::Wgs84TwoD
            }
        });
        Some(Geodetic { crs, shape })
    }

    /// Reads the centre, then the rest; if the rest is unusable, keeps the centre as a Point.
    fn centred(
        &mut self,
        node: Node<'_, '_>,
        name: &str,
        rest: impl FnOnce(&mut Self, Coordinate) -> Result<Shape, ()>,
    ) -> Option<Shape> {
        let center = self.position(node, name)?;
        match rest(self, center) {
            Ok(shape) => Some(shape),
            Err(()) => {
                self.problem(
                    ProblemKind::MalformedShape,
                    format!("{name} kept as a point at its centre {center}"),
                );
                Some(Shape::Point { pos: center })
            }
        }
    }

    fn position(&mut self, node: Node<'_, '_>, shape: &str) -> Option<Coordinate> {
        let Some(text) = child(node, "pos").and_then(text_of) else {
            self.problem(
                ProblemKind::MalformedShape,
                format!("{shape} has no <pos>; ignored"),
            );
            return None;
        };
        match parse_position(&text) {
            Ok(pos) => Some(pos),
            Err(reason) => {
                self.problem(
                    ProblemKind::MalformedShape,
                    format!("{shape} <pos>: {reason}; ignored"),
                );
                None
            }
        }
    }

    /// The exterior ring of a polygon, from `posList` or a sequence of `pos`.
    fn ring(&mut self, polygon: Node<'_, '_>, crs: Option<Crs>) -> Option<Vec<Coordinate>> {
        let ring = polygon
            .descendants()
            .find(|node| node.is_element() && node.tag_name().name() == "LinearRing");
        let Some(ring) = ring else {
            self.problem(
                ProblemKind::MalformedShape,
                "Polygon has no exterior LinearRing; ignored",
            );
            return None;
        };
        let vertices = if let Some(pos_list) = child(ring, "posList") {
            let dimension = match pos_list.attribute("srsDimension") {
                Some("3") => 3,
                Some(_) => 2,
                None if crs == Some(Crs::Wgs84ThreeD) => 3,
                None => 2,
            };
            let text = text_of(pos_list).unwrap_or_default();
            let numbers: Result<Vec<f64>, _> = text.split_whitespace().map(str::parse).collect();
            let Ok(numbers) = numbers else {
                self.problem(
                    ProblemKind::MalformedShape,
                    "Polygon posList holds a non-number; ignored",
                );
                return None;
            };
            if numbers.len() % dimension != 0 {
                self.problem(
                    ProblemKind::MalformedShape,
                    format!(
                        "Polygon posList has {} numbers, not a multiple of {dimension}; ignored",
                        numbers.len()
                    ),
                );
                return None;
            }
            let mut vertices = Vec::new();
            for values in numbers.chunks(dimension) {
                match coordinate_from(values) {
                    Ok(pos) => vertices.push(pos),
                    Err(reason) => {
                        self.problem(
                            ProblemKind::MalformedShape,
                            format!("Polygon: {reason}; ignored"),
                        );
                        return None;
                    }
                }
            }
            vertices
        } else {
            let mut vertices = Vec::new();
            for pos in children(ring, "pos") {
                match parse_position(&text_of(pos).unwrap_or_default()) {
                    Ok(position) => vertices.push(position),
                    Err(reason) => {
                        self.problem(
                            ProblemKind::MalformedShape,
                            format!("Polygon: {reason}; ignored"),
                        );
                        return None;
                    }
                }
            }
            vertices
        };
        // Only "at least three distinct" matters; stop counting there to stay linear.
        let mut distinct: Vec<Coordinate> = Vec::with_capacity(3);
        for vertex in &vertices {
            if distinct.len() == 3 {
                break;
            }
            if !distinct.contains(vertex) {
                distinct.push(*vertex);
            }
        }
        let distinct = distinct.len();
        if distinct < 3 {
            self.problem(
                ProblemKind::MalformedShape,
                format!("Polygon has {distinct} distinct vertices, needs at least 3; ignored"),
            );
            return None;
        }
        if vertices.first() != vertices.last() {
            self.problem(
                ProblemKind::MalformedShape,
                "Polygon ring is not closed (first vertex differs from last); used as given",
            );
        }
        Some(vertices)
    }

    fn length(&mut self, node: Node<'_, '_>, shape: &str, element: &str) -> Result<Meters, ()> {
        let (value, uom) = self.measure(node, shape, element)?;
        let factor = match uom.as_deref().map(epsg_code) {
            None | Some(Some(9001)) => 1.0,
            Some(Some(9002)) => 0.3048,
            Some(Some(9003)) => 1200.0 / 3937.0,
            Some(Some(9036)) => 1000.0,
            Some(_) => {
                self.problem(
                    ProblemKind::UnknownUnit,
                    format!(
                        "{shape} {element} uses uom {:?}; expected urn:ogc:def:uom:EPSG::9001 (metre)",
                        uom.unwrap_or_default()
                    ),
                );
                return Err(());
            }
        };
        if value < 0.0 {
            self.problem(
                ProblemKind::MalformedShape,
                format!("{shape} {element} is negative ({value})"),
            );
            return Err(());
        }
        Ok(Meters(value * factor))
    }

    fn angle(&mut self, node: Node<'_, '_>, shape: &str, element: &str) -> Result<Degrees, ()> {
        let (value, uom) = self.measure(node, shape, element)?;
        match uom.as_deref().map(epsg_code) {
            None | Some(Some(9102)) => Ok(Degrees(value)),
            Some(Some(9101)) => Ok(Degrees(value.to_degrees())),
            Some(_) => {
                self.problem(
                    ProblemKind::UnknownUnit,
                    format!(
                        "{shape} {element} uses uom {:?}; expected urn:ogc:def:uom:EPSG::9102 (degree)",
                        uom.unwrap_or_default()
                    ),
                );
                Err(())
            }
        }
    }

    /// A number element and its `uom` attribute.
    fn measure(
        &mut self,
        node: Node<'_, '_>,
        shape: &str,
        element: &str,
    ) -> Result<(f64, Option<String>), ()> {
        let Some(measure) = child(node, element) else {
            self.problem(
                ProblemKind::MalformedShape,
                format!("{shape} has no <{element}>"),
            );
            return Err(());
        };
        let text = text_of(measure).unwrap_or_default();
        match text.parse::<f64>() {
            Ok(value) if value.is_finite() => {
                Ok((value, measure.attribute("uom").map(str::to_owned)))
            }
            _ => {
                self.problem(
                    ProblemKind::MalformedShape,
                    format!("{shape} <{element}> {text:?} is not a number"),
                );
                Err(())
            }
        }
    }
}

/// The first element child with the given local name.
fn child<'a, 'input>(node: Node<'a, 'input>, name: &str) -> Option<Node<'a, 'input>> {
    node.children()
        .find(|candidate| candidate.is_element() && candidate.tag_name().name() == name)
}

fn children<'a, 'input>(
    node: Node<'a, 'input>,
    name: &'a str,
) -> impl Iterator<Item = Node<'a, 'input>> + 'a {
    node.children()
        .filter(move |candidate| candidate.is_element() && candidate.tag_name().name() == name)
}

/// All text below a node, whitespace collapsed; `None` when there is none.
fn text_of(node: Node<'_, '_>) -> Option<String> {
    let joined: Vec<&str> = node
        .descendants()
        .filter(Node::is_text)
        .filter_map(|text| text.text())
        .flat_map(str::split_whitespace)
        .collect();
    (!joined.is_empty()).then(|| joined.join(" "))
}

/// The trailing EPSG code of a URN/URL such as `urn:ogc:def:uom:EPSG::9001`.
fn epsg_code(identifier: &str) -> Option<u32> {
    if !identifier.to_ascii_uppercase().contains("EPSG") {
        return None;
    }
    let digits_start = identifier
        .rfind(|character: char| !character.is_ascii_digit())
        .map_or(0, |index| index + 1);
    identifier.get(digits_start..)?.parse().ok()
}

/// Accepts the URN of RFC 5491 and the other common spellings of EPSG 4326 / 4979.
fn crs_from_srs_name(srs_name: &str) -> Option<Crs> {
    match epsg_code(srs_name.trim())? {
        4326 => Some(Crs::Wgs84TwoD),
        4979 => Some(Crs::Wgs84ThreeD),
        _ => None,
    }
}

fn parse_position(text: &str) -> Result<Coordinate, String> {
    let numbers: Result<Vec<f64>, _> = text.split_whitespace().map(str::parse::<f64>).collect();
    let numbers = numbers.map_err(|_| format!("{text:?} holds a non-number"))?;
    if !(2..=3).contains(&numbers.len()) {
        return Err(format!(
            "{text:?} has {} numbers; expected latitude longitude [altitude]",
            numbers.len()
        ));
    }
    coordinate_from(&numbers)
}

fn coordinate_from(values: &[f64]) -> Result<Coordinate, String> {
    let (lat, lon, alt) = match values {
        [lat, lon] => (*lat, *lon, None),
        [lat, lon, alt] => (*lat, *lon, Some(*alt)),
        _ => return Err(format!("{} numbers for one position", values.len())),
    };
    if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
        return Err(format!(
            "latitude {lat} is outside -90..90 (latitude must come first: are they swapped?)"
        ));
    }
    if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
        return Err(format!("longitude {lon} is outside -180..180"));
    }
    if alt.is_some_and(|alt| !alt.is_finite()) {
        return Err("altitude is not a finite number".to_owned());
    }
    Ok(Coordinate { lat, lon, alt })
}

fn read_civic(node: Node<'_, '_>) -> CivicAddress {
    let mut civic = CivicAddress {
        language: node.attribute((XML_NS, "lang")).map(str::to_owned),
        ..CivicAddress::default()
    };
    for element in node.children().filter(Node::is_element) {
        let Some(value) = text_of(element) else {
            continue;
        };
        let name = element.tag_name().name();
        match civic.field_mut(name) {
            Some(field) => {
                field.get_or_insert(value);
            }
            None => civic.other.push(CivicExtra {
                namespace: element.tag_name().namespace().map(str::to_owned),
                name: name.to_owned(),
                value,
            }),
        }
    }
    civic
}

fn read_usage_rules(node: Node<'_, '_>) -> UsageRules {
    let mut rules = UsageRules::default();
    for element in node.children().filter(Node::is_element) {
        let value = text_of(element);
        match element.tag_name().name() {
            "retransmission-allowed" => {
                rules.retransmission_allowed = value.as_deref().and_then(parse_flag);
            }
            "retention-expiry" => rules.retention_expiry = value,
            "ruleset-reference" | "external-ruleset" => rules.ruleset_reference = value,
            "note-well" => rules.note_well = value,
            _ => {}
        }
    }
    rules
}

/// xs:boolean plus the yes/no RFC 4119 examples use.
fn parse_flag(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" => Some(true),
        "no" | "false" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> LocationSource {
        LocationSource::ByValue {
            content_id: None,
            document: 0,
            referenced: true,
        }
    }

    fn wrap(location_info: &str) -> String {
        format!(
            r#"<presence xmlns="urn:ietf:params:xml:ns:pidf"
 xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
 xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10"
 xmlns:gml="http://www.opengis.net/gml"
 xmlns:gs="http://www.opengis.net/pidflo/1.0"
 entity="pres:caller@example.id">
 <dm:device id="d1"><gp:geopriv><gp:location-info>{location_info}</gp:location-info>
 <gp:usage-rules/><gp:method>GPS</gp:method></gp:geopriv></dm:device></presence>"#
        )
    }

    fn kinds(document: &PidfDocument) -> Vec<ProblemKind> {
        document
            .problems
            .iter()
            .map(|problem| problem.kind)
            .collect()
    }

    #[test]
    fn radians_are_converted_to_degrees() {
        let xml = wrap(
            r#"<gs:Ellipse srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>-0.5 117.1</gml:pos>
            <gs:semiMajorAxis uom="urn:ogc:def:uom:EPSG::9001">100</gs:semiMajorAxis>
            <gs:semiMinorAxis uom="urn:ogc:def:uom:EPSG::9001">50</gs:semiMinorAxis>
            <gs:orientation uom="urn:ogc:def:uom:EPSG::9101">3.141592653589793</gs:orientation>
            </gs:Ellipse>"#,
        );
        let document = parse_pidf(xml.as_bytes(), source());
        let Some(LocationValue::Geodetic(Geodetic {
            shape: Shape::Ellipse { orientation, .. },
            ..
        })) = document.locations.first().map(|l| &l.value)
        else {
            panic!("{document:?}");
        };
        assert!((orientation.0 - 180.0).abs() < 1e-9);
    }

    #[test]
    fn unknown_radius_unit_keeps_the_centre() {
        let xml = wrap(
            r#"<gs:Circle srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>-0.5 117.1</gml:pos>
            <gs:radius uom="urn:example:furlong">3</gs:radius></gs:Circle>"#,
        );
        let document = parse_pidf(xml.as_bytes(), source());
        assert!(matches!(
            document.locations.first().map(|l| &l.value),
            Some(LocationValue::Geodetic(Geodetic {
                shape: Shape::Point { .. },
                ..
            }))
        ));
        assert!(kinds(&document).contains(&ProblemKind::UnknownUnit));
    }

    #[test]
    fn swapped_coordinates_are_a_problem_with_a_hint() {
        let xml = wrap(
            r#"<gml:Point srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>117.15 -0.50</gml:pos></gml:Point>"#,
        );
        let document = parse_pidf(xml.as_bytes(), source());
        assert!(document.locations.is_empty());
        assert!(
            document
                .problems
                .iter()
                .any(|p| p.detail.contains("swapped"))
        );
    }

    #[test]
    fn projected_crs_is_refused() {
        let xml = wrap(
            r#"<gml:Point srsName="urn:ogc:def:crs:EPSG::3857"><gml:pos>1 2</gml:pos></gml:Point>"#,
        );
        let document = parse_pidf(xml.as_bytes(), source());
        assert_eq!(
            kinds(&document),
            vec![ProblemKind::UnsupportedCrs, ProblemKind::NoLocation]
        );
    }

    #[test]
    fn one_bad_shape_does_not_hide_a_good_civic_address() {
        let xml = wrap(
            r#"<gs:Blob srsName="urn:ogc:def:crs:EPSG::4326"/>
            <ca:civicAddress xmlns:ca="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr">
              <ca:country>ID</ca:country><ca:A2>Kota Samarinda</ca:A2><ca:X-RT>003</ca:X-RT>
            </ca:civicAddress>"#,
        );
        let document = parse_pidf(xml.as_bytes(), source());
        assert_eq!(kinds(&document), vec![ProblemKind::UnknownShape]);
        let Some(LocationValue::Civic(civic)) = document.locations.first().map(|l| &l.value) else {
            panic!("{document:?}");
        };
        assert_eq!(civic.a2.as_deref(), Some("Kota Samarinda"));
        assert_eq!(
            civic.other.first().map(|extra| extra.name.as_str()),
            Some("X-RT")
        );
    }

    #[test]
    fn dtd_is_refused() {
        let xml = br#"<?xml version="1.0"?><!DOCTYPE presence [<!ENTITY x "boom">]><presence>&x;</presence>"#;
        let document = parse_pidf(xml, source());
        assert_eq!(kinds(&document), vec![ProblemKind::MalformedXml]);
    }

    #[test]
    fn missing_srs_name_is_assumed_wgs84_and_reported() {
        let xml = wrap(r#"<gml:Point><gml:pos>-0.5 117.1 12</gml:pos></gml:Point>"#);
        let document = parse_pidf(xml.as_bytes(), source());
        assert!(matches!(
            document.locations.first().map(|l| &l.value),
            Some(LocationValue::Geodetic(Geodetic {
                crs: Crs::Wgs84ThreeD,
                ..
            }))
        ));
        assert_eq!(kinds(&document), vec![ProblemKind::MalformedShape]);
    }

    #[test]
    fn epsg_codes_in_their_various_spellings() {
        assert_eq!(
            crs_from_srs_name("urn:ogc:def:crs:EPSG::4326"),
            Some(Crs::Wgs84TwoD)
        );
        assert_eq!(crs_from_srs_name("EPSG:4979"), Some(Crs::Wgs84ThreeD));
        assert_eq!(
            crs_from_srs_name("http://www.opengis.net/def/crs/EPSG/0/4326"),
            Some(Crs::Wgs84TwoD)
        );
        assert_eq!(crs_from_srs_name("urn:ogc:def:crs:OGC:1.3:CRS84"), None);
    }
}
