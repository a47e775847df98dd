//! The example documents of RFC 4119, RFC 5491 and RFC 6442 read as the RFCs intend.

mod common;

use common::{SipMessage, find};
use siaga_location::model::{CivicAddress, ElementKind};
use siaga_location::{
    Coordinate, Crs, Degrees, Geodetic, GeolocationRouting, LocationInput, LocationSource,
    LocationValue, Meters, Method, Shape, choose, extract, find_sdp, parse_geolocation_error,
    parse_pidf,
};

fn by_value() -> LocationSource {
    LocationSource::ByValue {
        content_id: None,
        document: 0,
        referenced: true,
    }
}

/// Parses a fixture, insists on no problems and exactly one location, returns its geodetic value.
fn only_geodetic(xml: &str) -> Geodetic {
    let document = parse_pidf(xml.as_bytes(), by_value());
    assert!(document.problems.is_empty(), "{:?}", document.problems);
    let [location] = document.locations.as_slice() else {
        panic!("expected one location: {:?}", document.locations);
    };
    match &location.value {
        LocationValue::Geodetic(geodetic) => geodetic.clone(),
        other => panic!("expected geodetic, got {other:?}"),
    }
}

fn pos2(lat: f64, lon: f64) -> Coordinate {
    Coordinate::new(lat, lon)
}

fn pos3(lat: f64, lon: f64, alt: f64) -> Coordinate {
    Coordinate {
        lat,
        lon,
        alt: Some(alt),
    }
}

#[test]
fn rfc5491_point_2d_and_3d() {
    assert_eq!(
        only_geodetic(include_str!("data/rfc5491-point-2d.xml")),
        Geodetic {
            crs: Crs::Wgs84TwoD,
            shape: Shape::Point {
                pos: pos2(-34.407, 150.883)
            }
        }
    );
    assert_eq!(
        only_geodetic(include_str!("data/rfc5491-point-3d.xml")),
        Geodetic {
            crs: Crs::Wgs84ThreeD,
            shape: Shape::Point {
                pos: pos3(-34.407, 150.883, 24.8)
            }
        }
    );
}

#[test]
fn rfc5491_polygon_from_pos_and_pos_list_agree() {
    let expected = vec![
        pos2(43.311, -73.422),
        pos2(43.111, -73.322),
        pos2(43.111, -73.222),
        pos2(43.311, -73.122),
        pos2(43.411, -73.222),
        pos2(43.411, -73.322),
        pos2(43.311, -73.422),
    ];
    for xml in [
        include_str!("data/rfc5491-polygon-pos.xml"),
        include_str!("data/rfc5491-polygon-poslist.xml"),
    ] {
        assert_eq!(
            only_geodetic(xml).shape,
            Shape::Polygon {
                vertices: expected.clone()
            }
        );
    }
}

#[test]
fn rfc5491_circle_and_ellipse() {
    let center = pos2(42.5463, -73.2512);
    assert_eq!(
        only_geodetic(include_str!("data/rfc5491-circle.xml")).shape,
        Shape::Circle {
            center,
            radius: Meters(850.24)
        }
    );
    assert_eq!(
        only_geodetic(include_str!("data/rfc5491-ellipse.xml")).shape,
        Shape::Ellipse {
            center,
            semi_major: Meters(1275.0),
            semi_minor: Meters(670.0),
            orientation: Degrees(43.2)
        }
    );
}

/// RFC 5491 section 5.2.5 (Figure 12): an arc band carried in a `<tuple>`, not a device.
#[test]
fn rfc5491_arcband_in_a_tuple() {
    let document = parse_pidf(include_bytes!("data/rfc5491-arcband.xml"), by_value());
    assert!(document.problems.is_empty(), "{:?}", document.problems);
    assert_eq!(
        document.entity.as_deref(),
        Some("pres:paul@somecell.example.com")
    );
    let [location] = document.locations.as_slice() else {
        panic!("expected one location: {:?}", document.locations);
    };
    assert_eq!(
        location.value,
        LocationValue::Geodetic(Geodetic {
            crs: Crs::Wgs84TwoD,
            shape: Shape::ArcBand {
                center: pos2(-43.5723, 153.2176),
                inner_radius: Meters(3594.0),
                outer_radius: Meters(4148.0),
                start_angle: Degrees(20.0),
                opening_angle: Degrees(20.0)
            }
        })
    );
    assert_eq!(location.method, Some(Method("TA-NMR".to_owned())));
    assert_eq!(location.timestamp.as_deref(), Some("2007-06-22T20:57:29Z"));
    assert_eq!(
        location.origin.as_ref().map(|origin| origin.element),
        Some(ElementKind::Tuple)
    );
}

#[test]
fn rfc5491_three_dimensional_shapes() {
    let center = pos3(42.5463, -73.2512, 26.3);
    let sphere = only_geodetic(include_str!("data/rfc5491-sphere.xml"));
    assert_eq!(sphere.crs, Crs::Wgs84ThreeD);
    assert_eq!(
        sphere.shape,
        Shape::Sphere {
            center,
            radius: Meters(850.24)
        }
    );
    assert_eq!(
        only_geodetic(include_str!("data/rfc5491-ellipsoid.xml")).shape,
        Shape::Ellipsoid {
            center,
            semi_major: Meters(7.7156),
            semi_minor: Meters(3.31),
            vertical_axis: Meters(28.7),
            orientation: Degrees(90.0)
        }
    );
    let prism = only_geodetic(include_str!("data/rfc5491-prism.xml"));
    assert_eq!(
        prism.shape,
        Shape::Prism {
            base: vec![
                pos3(42.556844, -73.248157, 36.6),
                pos3(42.656844, -73.248157, 36.6),
                pos3(42.656844, -73.348157, 36.6),
                pos3(42.556844, -73.348157, 36.6),
                pos3(42.556844, -73.248157, 36.6),
            ],
            height: Meters(2.4)
        }
    );
}

#[test]
fn rfc5491_device_metadata_is_kept() {
    let document = parse_pidf(include_bytes!("data/rfc5491-point-2d.xml"), by_value());
    let location = &document.locations[0];
    assert_eq!(document.entity.as_deref(), Some("pres:point2d@example.com"));
    assert_eq!(location.method, Some(Method("Wiremap".to_owned())));
    assert_eq!(location.timestamp.as_deref(), Some("2007-06-22T20:57:29Z"));
    let origin = location
        .origin
        .as_ref()
        .expect("by-value locations carry their origin");
    assert_eq!(origin.element, ElementKind::Device);
    assert_eq!(origin.device_id.as_deref(), Some("mac:1234567890ab"));
}

#[test]
fn rfc4119_civic_in_a_tuple() {
    let document = parse_pidf(include_bytes!("data/rfc4119-civic.xml"), by_value());
    assert!(document.problems.is_empty(), "{:?}", document.problems);
    let [location] = document.locations.as_slice() else {
        panic!("{:?}", document.locations);
    };
    let expected = CivicAddress {
        country: Some("US".to_owned()),
        a1: Some("New York".to_owned()),
        a3: Some("New York".to_owned()),
        a6: Some("Broadway".to_owned()),
        hno: Some("123".to_owned()),
        loc: Some("Suite 75".to_owned()),
        pc: Some("10027-0401".to_owned()),
        ..CivicAddress::default()
    };
    assert_eq!(location.value, LocationValue::Civic(Box::new(expected)));
    assert_eq!(location.usage_rules.retransmission_allowed, Some(true));
    assert_eq!(
        location.usage_rules.retention_expiry.as_deref(),
        Some("2003-06-23T04:57:29Z")
    );
    assert_eq!(location.timestamp.as_deref(), Some("2003-06-22T20:57:29Z"));
    assert_eq!(
        location.value.to_string(),
        "civic address Broadway 123, Suite 75, New York, New York, 10027-0401, US"
    );
}

#[test]
fn rfc5491_rule_8_prefers_the_device_over_tuple_and_person() {
    let document = parse_pidf(
        include_bytes!("data/rfc5491-tuple-device-person.xml"),
        by_value(),
    );
    assert!(document.problems.is_empty(), "{:?}", document.problems);
    let kinds: Vec<ElementKind> = document
        .locations
        .iter()
        .filter_map(|location| location.origin.as_ref().map(|origin| origin.element))
        .collect();
    assert_eq!(
        kinds,
        vec![ElementKind::Tuple, ElementKind::Device, ElementKind::Person]
    );
    let chosen = choose(&document.locations).expect("a location is chosen");
    assert_eq!(chosen, 1);
    assert_eq!(
        document.locations[chosen].value.to_string(),
        "point -34.410649, 150.87651"
    );
    // Without the device, the tuple comes before the person.
    let without_device = [document.locations[2].clone(), document.locations[0].clone()];
    assert_eq!(choose(&without_device), Some(1));
    let LocationValue::Civic(tuple_civic) = &document.locations[0].value else {
        panic!("tuple holds a civic address");
    };
    assert_eq!(tuple_civic.language.as_deref(), Some("en-AU"));
    assert_eq!(tuple_civic.rdbr.as_deref(), Some("Campbell Street"));
    assert_eq!(tuple_civic.pobox.as_deref(), Some("Private Box 15"));
    assert_eq!(tuple_civic.lmk.as_deref(), Some("Gilligan's Island"));
}

/// The fixture joins RFC 6442's two section 5 examples: the headers of 5.1 (with `sip:` and
/// `SIP/2.0/TLS` where the RFC has `sips:` and `SIPS/2.0/TLS`) and the PIDF-LO of 5.2, whose
/// `dm:person` part 5.1 lacks. The SDP and Content-Length are ours: the RFC elides them.
#[test]
fn rfc6442_invite_location_by_value() {
    let raw = include_bytes!("data/rfc6442-invite.sip");
    let message = SipMessage::parse(raw);
    let input = LocationInput {
        geolocation: &message.values("Geolocation"),
        geolocation_routing: &message.values("Geolocation-Routing"),
        content_type: message.value("Content-Type"),
        body: &message.body,
        ..LocationInput::default()
    };
    let report = extract(&input, None);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.routing, Some(GeolocationRouting::No));
    let location = report
        .chosen_location()
        .expect("the INVITE carries a location");
    assert_eq!(
        location.value,
        LocationValue::Geodetic(Geodetic {
            crs: Crs::Wgs84TwoD,
            shape: Shape::Point {
                pos: pos2(32.86726, -97.16054)
            }
        })
    );
    assert_eq!(location.method, Some(Method("802.11".to_owned())));
    assert_eq!(location.usage_rules.retransmission_allowed, Some(false));
    assert_eq!(
        location.usage_rules.retention_expiry.as_deref(),
        Some("2010-11-14T20:00:00Z")
    );
    // The same document also gives the person's civic address; the device wins (RFC 5491 rule 8).
    let person = report
        .locations
        .iter()
        .find(|location| {
            location.origin.as_ref().map(|origin| origin.element) == Some(ElementKind::Person)
        })
        .expect("the PIDF-LO has a <dm:person>");
    let expected = CivicAddress {
        country: Some("US".to_owned()),
        a1: Some("Texas".to_owned()),
        a3: Some("Colleyville".to_owned()),
        rd: Some("Treemont".to_owned()),
        sts: Some("Circle".to_owned()),
        hno: Some("3913".to_owned()),
        flr: Some("1".to_owned()),
        nam: Some("Haley's Place".to_owned()),
        pc: Some("76034".to_owned()),
        ..CivicAddress::default()
    };
    assert_eq!(person.value, LocationValue::Civic(Box::new(expected)));
    assert_eq!(person.method, Some(Method("triangulation".to_owned())));
    assert_eq!(person.timestamp.as_deref(), Some("2010-11-04T12:28:04Z"));
    assert_eq!(person.usage_rules.retransmission_allowed, Some(false));
    // The document is kept byte for byte, exactly where it sits in the body.
    let [document] = report.pidf_documents.as_slice() else {
        panic!("{:?}", report.pidf_documents);
    };
    assert!(document.referenced);
    let start = find(&message.body, b"<?xml").expect("the body holds the PIDF-LO");
    let end = find(&message.body, b"</presence>").expect("the PIDF-LO ends") + b"</presence>".len();
    assert_eq!(document.body_range, start..end);
    assert_eq!(document.bytes, &message.body[start..end]);
    // And the SDP is still found for the media side.
    let sdp = find_sdp(message.value("Content-Type"), &message.body).expect("SDP present");
    assert!(sdp.starts_with(b"v=0\r\no=alice"));
    assert!(sdp.ends_with(b"a=rtpmap:0 PCMU/8000\r\n"));
}

#[test]
fn rfc6442_location_by_reference_is_kept_not_fetched() {
    let geolocation = ["<sip:target123@server5.atlanta.example.com>"];
    let input = LocationInput {
        geolocation: &geolocation,
        ..LocationInput::default()
    };
    let report = extract(&input, None);
    assert!(report.locations.is_empty());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        report
            .references
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec!["<sip:target123@server5.atlanta.example.com>"]
    );
}

#[test]
fn rfc6442_geolocation_error() {
    let parsed = parse_geolocation_error("300 ;code=\"Dereference Failure\"")
        .expect("a registered error code");
    assert_eq!(parsed.code.0, 300);
    assert_eq!(parsed.text.as_deref(), Some("Dereference Failure"));
}

#[test]
fn rfc8262_cid_may_name_the_whole_body() {
    let geolocation = ["<cid:whole%40example.com>"];
    let input = LocationInput {
        geolocation: &geolocation,
        content_type: Some("application/pidf+xml"),
        content_id: Some("<whole@example.com>"),
        body: include_bytes!("data/rfc5491-circle.xml"),
        ..LocationInput::default()
    };
    let report = extract(&input, None);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(matches!(
        report.chosen_location().map(|location| &location.source),
        Some(LocationSource::ByValue {
            referenced: true,
            ..
        })
    ));
    assert_eq!(
        report.pidf_bytes().collect::<Vec<_>>(),
        vec![&include_bytes!("data/rfc5491-circle.xml")[..]]
    );
}
