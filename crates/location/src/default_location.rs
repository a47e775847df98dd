//! A trunk's configured default location, and rendering PIDF-LO documents of our own.
//!
//! RFC 6881 SP-22/23: when a call arrives with no location, the service provider supplies a
//! default one, and says so (`method=Default`, provided by the gateway). When Siaga must add a
//! location to an agency leg (a cell-derived or default location) it renders a PIDF-LO with
//! [`PidfBuilder`]; a location the caller's network sent is never re-rendered — its bytes are
//! forwarded unchanged.

use crate::model::{
    CivicAddress, Coordinate, Crs, Geodetic, Location, LocationSource, LocationValue, Meters,
    Method, ProvidedBy, Shape, UsageRules,
};
use serde::Serialize;
use std::fmt::Write as _;

/// The location a trunk gives calls that carry none (e.g. the building a PBX trunk serves).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DefaultLocation {
    /// The configured location.
    pub value: LocationValue,
}

impl DefaultLocation {
    /// A circle around a point, e.g. the coverage of a rural trunk.
    pub fn circle(center: Coordinate, radius: Meters) -> Self {
        Self {
            value: LocationValue::Geodetic(Geodetic {
                crs: crs_for(&[center]),
                shape: Shape::Circle { center, radius },
            }),
        }
    }

    /// A single point, e.g. the front door of the building a PBX serves.
    pub fn point(pos: Coordinate) -> Self {
        Self {
            value: LocationValue::Geodetic(Geodetic {
                crs: crs_for(&[pos]),
                shape: Shape::Point { pos },
            }),
        }
    }

    /// A civic address.
    pub fn civic(address: CivicAddress) -> Self {
        Self {
            value: LocationValue::Civic(Box::new(address)),
        }
    }

    /// The location as it is recorded for a call: `method=Default`, provided by this gateway.
    pub fn to_location(&self) -> Location {
        Location {
            source: LocationSource::Default,
            origin: None,
            value: self.value.clone(),
            confidence_percent: None,
            method: Some(Method::default_location()),
            provided_by: Some(ProvidedBy::Gateway),
            timestamp: None,
            usage_rules: UsageRules::default(),
        }
    }
}

fn crs_for(positions: &[Coordinate]) -> Crs {
    if positions.iter().any(|pos| pos.alt.is_some()) {
        Crs::Wgs84ThreeD
    } else {
        Crs::Wgs84TwoD
    }
}

/// Namespace for our `<gp:provided-by>` content; RFC 4119 lets it hold any foreign element.
pub const PROVIDED_BY_NS: &str = "urn:x-siaga:pidf:provided-by";

/// Renders a PIDF-LO (RFC 4119 / RFC 5491 profile) for one location, in a `<dm:device>`.
#[derive(Debug, Clone, PartialEq)]
pub struct PidfBuilder {
    entity: String,
    element_id: String,
    value: LocationValue,
    method: Option<Method>,
    provided_by: Option<String>,
    timestamp: Option<String>,
    usage_rules: UsageRules,
}

impl PidfBuilder {
    /// A document about `entity` (e.g. `pres:+6281234567890@ims.example`) holding `value`.
    pub fn new(entity: impl Into<String>, value: LocationValue) -> Self {
        Self {
            entity: entity.into(),
            element_id: "siaga-1".to_owned(),
            value,
            method: None,
            provided_by: None,
            timestamp: None,
            usage_rules: UsageRules::default(),
        }
    }

    /// A document for a location we hold, keeping its method, timestamp and usage rules.
    ///
    /// `gateway_name` fills `provided-by` when the gateway itself produced the location.
    pub fn from_location(
        entity: impl Into<String>,
        location: &Location,
        gateway_name: &str,
    ) -> Self {
        let provided_by = location
            .provided_by
            .as_ref()
            .map(|provided_by| match provided_by {
                ProvidedBy::Document(text) => text.clone(),
                ProvidedBy::Gateway => gateway_name.to_owned(),
            });
        Self {
            method: location.method.clone(),
            provided_by,
            timestamp: location.timestamp.clone(),
            usage_rules: location.usage_rules.clone(),
            ..Self::new(entity, location.value.clone())
        }
    }

    /// The `<dm:device id>`; defaults to `siaga-1`.
    pub fn element_id(mut self, id: impl Into<String>) -> Self {
        self.element_id = id.into();
        self
    }

    /// `<gp:method>`, e.g. [`Method::default_location`].
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// `<gp:provided-by>` text (rendered inside an element of [`PROVIDED_BY_NS`]).
    pub fn provided_by(mut self, text: impl Into<String>) -> Self {
        self.provided_by = Some(text.into());
        self
    }

    /// `<dm:timestamp>` (xs:dateTime), passed in because this crate never reads the clock.
    pub fn timestamp(mut self, timestamp: impl Into<String>) -> Self {
        self.timestamp = Some(timestamp.into());
        self
    }

    /// Usage rules; by default retransmission is not allowed (the RFC 4119 default).
    pub fn usage_rules(mut self, rules: UsageRules) -> Self {
        self.usage_rules = rules;
        self
    }

    /// The document, as UTF-8 XML text.
    pub fn render(&self) -> String {
        let mut xml = String::with_capacity(1024);
        xml.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = write!(
            xml,
            "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\"\n \
             xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\"\n \
             xmlns:gp=\"urn:ietf:params:xml:ns:pidf:geopriv10\"\n \
             xmlns:gbp=\"urn:ietf:params:xml:ns:pidf:geopriv10:basicPolicy\"\n \
             xmlns:ca=\"urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr\"\n \
             xmlns:gml=\"http://www.opengis.net/gml\"\n \
             xmlns:gs=\"http://www.opengis.net/pidflo/1.0\"\n \
             entity=\"{}\">\n",
            escape(&self.entity)
        );
        let _ = writeln!(xml, " <dm:device id=\"{}\">", escape(&self.element_id));
        xml.push_str("  <gp:geopriv>\n   <gp:location-info>\n");
        match &self.value {
            LocationValue::Geodetic(geodetic) => render_geodetic(&mut xml, geodetic),
            LocationValue::Civic(civic) => render_civic(&mut xml, civic),
        }
        xml.push_str("   </gp:location-info>\n");
        render_usage_rules(&mut xml, &self.usage_rules);
        if let Some(method) = &self.method {
            let _ = writeln!(xml, "   <gp:method>{}</gp:method>", escape(&method.0));
        }
        if let Some(provided_by) = &self.provided_by {
            let _ = writeln!(
                xml,
                "   <gp:provided-by><sg:gateway xmlns:sg=\"{PROVIDED_BY_NS}\">{}</sg:gateway></gp:provided-by>",
                escape(provided_by)
            );
        }
        xml.push_str("  </gp:geopriv>\n");
        if let Some(timestamp) = &self.timestamp {
            let _ = writeln!(xml, "  <dm:timestamp>{}</dm:timestamp>", escape(timestamp));
        }
        xml.push_str(" </dm:device>\n</presence>\n");
        xml
    }
}

const METRE: &str = "urn:ogc:def:uom:EPSG::9001";
const DEGREE: &str = "urn:ogc:def:uom:EPSG::9102";

fn position(pos: &Coordinate) -> String {
    match pos.alt {
        Some(alt) => format!("{} {} {}", pos.lat, pos.lon, alt),
        None => format!("{} {}", pos.lat, pos.lon),
    }
}

fn render_geodetic(xml: &mut String, geodetic: &Geodetic) {
    let srs = geodetic.crs.urn();
    let pos = |xml: &mut String, pos: &Coordinate| {
        let _ = writeln!(xml, "     <gml:pos>{}</gml:pos>", position(pos));
    };
    let measure = |xml: &mut String, name: &str, uom: &str, value: f64| {
        let _ = writeln!(xml, "     <gs:{name} uom=\"{uom}\">{value}</gs:{name}>");
    };
    let ring = |xml: &mut String, vertices: &[Coordinate]| {
        xml.push_str("     <gml:exterior><gml:LinearRing>\n");
        for vertex in vertices {
            let _ = writeln!(xml, "      <gml:pos>{}</gml:pos>", position(vertex));
        }
        xml.push_str("     </gml:LinearRing></gml:exterior>\n");
    };
    match &geodetic.shape {
        Shape::Point { pos: point } => {
            let _ = writeln!(xml, "    <gml:Point srsName=\"{srs}\">");
            pos(xml, point);
            xml.push_str("    </gml:Point>\n");
        }
        Shape::Circle { center, radius } | Shape::Sphere { center, radius } => {
            let name = geodetic.shape.name();
            let _ = writeln!(xml, "    <gs:{name} srsName=\"{srs}\">");
            pos(xml, center);
            measure(xml, "radius", METRE, radius.0);
            let _ = writeln!(xml, "    </gs:{name}>");
        }
        Shape::Ellipse {
            center,
            semi_major,
            semi_minor,
            orientation,
        } => {
            let _ = writeln!(xml, "    <gs:Ellipse srsName=\"{srs}\">");
            pos(xml, center);
            measure(xml, "semiMajorAxis", METRE, semi_major.0);
            measure(xml, "semiMinorAxis", METRE, semi_minor.0);
            measure(xml, "orientation", DEGREE, orientation.0);
            xml.push_str("    </gs:Ellipse>\n");
        }
        Shape::ArcBand {
            center,
            inner_radius,
            outer_radius,
            start_angle,
            opening_angle,
        } => {
            let _ = writeln!(xml, "    <gs:ArcBand srsName=\"{srs}\">");
            pos(xml, center);
            measure(xml, "innerRadius", METRE, inner_radius.0);
            measure(xml, "outerRadius", METRE, outer_radius.0);
            measure(xml, "startAngle", DEGREE, start_angle.0);
            measure(xml, "openingAngle", DEGREE, opening_angle.0);
            xml.push_str("    </gs:ArcBand>\n");
        }
        Shape::Ellipsoid {
            center,
            semi_major,
            semi_minor,
            vertical_axis,
            orientation,
        } => {
            let _ = writeln!(xml, "    <gs:Ellipsoid srsName=\"{srs}\">");
            pos(xml, center);
            measure(xml, "semiMajorAxis", METRE, semi_major.0);
            measure(xml, "semiMinorAxis", METRE, semi_minor.0);
            measure(xml, "verticalAxis", METRE, vertical_axis.0);
            measure(xml, "orientation", DEGREE, orientation.0);
            xml.push_str("    </gs:Ellipsoid>\n");
        }
        Shape::Polygon { vertices } => {
            let _ = writeln!(xml, "    <gml:Polygon srsName=\"{srs}\">");
            ring(xml, vertices);
            xml.push_str("    </gml:Polygon>\n");
        }
        Shape::Prism { base, height } => {
            let _ = writeln!(xml, "    <gs:Prism srsName=\"{srs}\">");
            let _ = writeln!(xml, "     <gs:base><gml:Polygon srsName=\"{srs}\">");
            ring(xml, base);
            xml.push_str("     </gml:Polygon></gs:base>\n");
            measure(xml, "height", METRE, height.0);
            xml.push_str("    </gs:Prism>\n");
        }
    }
}

fn render_civic(xml: &mut String, civic: &CivicAddress) {
    match &civic.language {
        Some(language) => {
            let _ = writeln!(
                xml,
                "    <ca:civicAddress xml:lang=\"{}\">",
                escape(language)
            );
        }
        None => xml.push_str("    <ca:civicAddress>\n"),
    }
    for (name, value) in civic.fields() {
        let _ = writeln!(xml, "     <ca:{name}>{}</ca:{name}>", escape(value));
    }
    for extra in civic.other.iter().filter(|extra| is_xml_name(&extra.name)) {
        match &extra.namespace {
            Some(namespace) => {
                let _ = writeln!(
                    xml,
                    "     <ext:{name} xmlns:ext=\"{}\">{}</ext:{name}>",
                    escape(namespace),
                    escape(&extra.value),
                    name = extra.name
                );
            }
            None => {
                let _ = writeln!(
                    xml,
                    "     <{name} xmlns=\"\">{}</{name}>",
                    escape(&extra.value),
                    name = extra.name
                );
            }
        }
    }
    xml.push_str("    </ca:civicAddress>\n");
}

fn render_usage_rules(xml: &mut String, rules: &UsageRules) {
    xml.push_str("   <gp:usage-rules>\n");
    let allowed = if rules.retransmission_allowed == Some(true) {
        "yes"
    } else {
        "no"
    };
    let _ = writeln!(
        xml,
        "    <gbp:retransmission-allowed>{allowed}</gbp:retransmission-allowed>"
    );
    if let Some(expiry) = &rules.retention_expiry {
        let _ = writeln!(
            xml,
            "    <gbp:retention-expiry>{}</gbp:retention-expiry>",
            escape(expiry)
        );
    }
    if let Some(reference) = &rules.ruleset_reference {
        let _ = writeln!(
            xml,
            "    <gbp:external-ruleset>{}</gbp:external-ruleset>",
            escape(reference)
        );
    }
    if let Some(note) = &rules.note_well {
        let _ = writeln!(xml, "    <gbp:note-well>{}</gbp:note-well>", escape(note));
    }
    xml.push_str("   </gp:usage-rules>\n");
}

/// A conservative XML NCName check, so a configured extra field can never break the document.
fn is_xml_name(name: &str) -> bool {
    let mut characters = name.chars();
    characters
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && characters.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            // XML 1.0 cannot carry most control characters at all; drop them.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => {}
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pidf::parse_pidf;

    fn reparse(xml: &str) -> Vec<Location> {
        let document = parse_pidf(
            xml.as_bytes(),
            LocationSource::ByValue {
                content_id: None,
                document: 0,
                referenced: true,
            },
        );
        assert!(
            document.problems.is_empty(),
            "{:?}\n{xml}",
            document.problems
        );
        document.locations
    }

    #[test]
    fn default_circle_renders_and_parses_back() {
        let default = DefaultLocation::circle(Coordinate::new(-0.5022, 117.1536), Meters(850.0));
        let location = default.to_location();
        assert_eq!(location.method, Some(Method::default_location()));
        let xml =
            PidfBuilder::from_location("pres:112@siaga.example", &location, "Siaga Samarinda")
                .timestamp("2026-11-04T08:15:00+08:00")
                .render();
        let parsed = reparse(&xml);
        let [reparsed] = parsed.as_slice() else {
            panic!("{parsed:?}");
        };
        assert_eq!(reparsed.value, default.value);
        assert_eq!(reparsed.method, Some(Method::default_location()));
        assert_eq!(
            reparsed.provided_by,
            Some(ProvidedBy::Document("Siaga Samarinda".to_owned()))
        );
        assert_eq!(
            reparsed.timestamp.as_deref(),
            Some("2026-11-04T08:15:00+08:00")
        );
        assert_eq!(reparsed.usage_rules.retransmission_allowed, Some(false));
    }

    #[test]
    fn civic_with_awkward_text_is_escaped_and_parses_back() {
        let civic = CivicAddress {
            language: Some("id".to_owned()),
            country: Some("ID".to_owned()),
            a2: Some("Kota Samarinda".to_owned()),
            rd: Some("Jl. \"Juanda\" <Gang 3> & Sons".to_owned()),
            ..CivicAddress::default()
        };
        let xml = PidfBuilder::new("pres:a@b", LocationValue::Civic(Box::new(civic.clone())))
            .method(Method::default_location())
            .render();
        let parsed = reparse(&xml);
        assert_eq!(
            parsed.first().map(|l| &l.value),
            Some(&LocationValue::Civic(Box::new(civic)))
        );
    }
}
