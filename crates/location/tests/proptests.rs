//! Property tests: every parser is total (never panics) and the structured ones round-trip.

use proptest::prelude::*;
use siaga_location::model::CivicAddress;
use siaga_location::{
    CellTable, Coordinate, Crs, Degrees, Geodetic, LocationInput, LocationSource, LocationValue,
    Meters, Method, PidfBuilder, Shape, UriScheme, extract, find_sdp, parse_geolocation,
    parse_geolocation_error, parse_pani, parse_pidf, split,
};

const VOLTE_PIDF: &str = include_str!("data/rfc5491-tuple-device-person.xml");

fn source() -> LocationSource {
    LocationSource::ByValue {
        content_id: None,
        document: 0,
        referenced: true,
    }
}

/// Content-Type values that are mostly multipart, with odd boundaries.
fn content_types() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,12}".prop_map(|b| format!("multipart/mixed; boundary=\"{b}\"")),
        "[a-z0-9=_-]{0,12}".prop_map(|b| format!("multipart/related;boundary={b}")),
    ]
}

fn coordinate(three_d: bool) -> impl Strategy<Value = Coordinate> {
    (-90.0f64..=90.0, -180.0f64..=180.0, -500.0f64..9000.0).prop_map(move |(lat, lon, alt)| {
        Coordinate {
            lat,
            lon,
            alt: three_d.then_some(alt),
        }
    })
}

fn length() -> impl Strategy<Value = Meters> {
    (0.0f64..1.0e6).prop_map(Meters)
}

fn angle() -> impl Strategy<Value = Degrees> {
    (0.0f64..360.0).prop_map(Degrees)
}

/// A closed ring of 3–8 distinct vertices.
fn ring(three_d: bool) -> impl Strategy<Value = Vec<Coordinate>> {
    prop::collection::vec(coordinate(three_d), 3..8)
        .prop_filter("distinct vertices", |vertices| {
            vertices
                .iter()
                .enumerate()
                .all(|(i, a)| vertices.iter().skip(i + 1).all(|b| a != b))
        })
        .prop_map(|mut vertices| {
            if let Some(first) = vertices.first().copied() {
                vertices.push(first);
            }
            vertices
        })
}

fn geodetic() -> impl Strategy<Value = Geodetic> {
    let two = |shape: BoxedStrategy<Shape>| {
        shape.prop_map(|shape| Geodetic {
            crs: Crs::Wgs84TwoD,
            shape,
        })
    };
    let three = |shape: BoxedStrategy<Shape>| {
        shape.prop_map(|shape| Geodetic {
            crs: Crs::Wgs84ThreeD,
            shape,
        })
    };
    prop_oneof![
        two(coordinate(false)
            .prop_map(|pos| Shape::Point { pos })
            .boxed()),
        three(
            coordinate(true)
                .prop_map(|pos| Shape::Point { pos })
                .boxed()
        ),
        two((coordinate(false), length())
            .prop_map(|(center, radius)| Shape::Circle { center, radius })
            .boxed()),
        two((coordinate(false), length(), length(), angle())
            .prop_map(
                |(center, semi_major, semi_minor, orientation)| Shape::Ellipse {
                    center,
                    semi_major,
                    semi_minor,
                    orientation
                }
            )
            .boxed()),
        two((coordinate(false), length(), length(), angle(), angle())
            .prop_map(
                |(center, inner_radius, outer_radius, start_angle, opening_angle)| {
                    Shape::ArcBand {
                        center,
                        inner_radius,
                        outer_radius,
                        start_angle,
                        opening_angle,
                    }
                }
            )
            .boxed()),
        two(ring(false)
            .prop_map(|vertices| Shape::Polygon { vertices })
            .boxed()),
        three(
            (ring(true), length())
                .prop_map(|(base, height)| Shape::Prism { base, height })
                .boxed()
        ),
        three(
            (coordinate(true), length())
                .prop_map(|(center, radius)| Shape::Sphere { center, radius })
                .boxed()
        ),
        three(
            (coordinate(true), length(), length(), length(), angle())
                .prop_map(
                    |(center, semi_major, semi_minor, vertical_axis, orientation)| {
                        Shape::Ellipsoid {
                            center,
                            semi_major,
                            semi_minor,
                            vertical_axis,
                            orientation,
                        }
                    }
                )
                .boxed()
        ),
    ]
}

/// Civic text without leading/trailing or repeated whitespace (the parser collapses it).
fn civic_text() -> impl Strategy<Value = String> {
    prop::collection::vec("[\\p{L}\\p{N}&<>\"'.,/-]{1,8}", 1..4).prop_map(|words| words.join(" "))
}

fn civic() -> impl Strategy<Value = CivicAddress> {
    (
        prop::option::of("[A-Z]{2}"),
        prop::option::of(civic_text()),
        prop::option::of(civic_text()),
        prop::option::of(civic_text()),
        prop::option::of("[0-9]{1,4}[A-Z]?"),
        civic_text(),
    )
        .prop_map(|(country, a1, a2, rd, hno, loc)| CivicAddress {
            country,
            a1,
            a2,
            rd,
            hno,
            loc: Some(loc),
            ..CivicAddress::default()
        })
}

proptest! {
    #[test]
    fn multipart_split_never_panics(content_type in content_types(), body in any::<Vec<u8>>()) {
        if let Ok(multipart) = split(&content_type, &body) {
            for part in multipart.parts {
                prop_assert_eq!(&body[part.body_range.clone()], part.body);
            }
        }
        let _ = find_sdp(Some(&content_type), &body);
    }

    #[test]
    fn multipart_recovers_every_part_exactly(
        boundary in "[a-zA-Z0-9'()+_,./:=?-]{1,30}",
        bodies in prop::collection::vec("[a-z0-9 \r\n<>/=-]{0,60}", 1..10),
        bare_lf in any::<bool>(),
    ) {
        let eol = if bare_lf { "\n" } else { "\r\n" };
        let delimiter = format!("--{boundary}");
        // A generated body that contains a delimiter line is not a valid multipart; skip it.
        prop_assume!(bodies.iter().all(|b| !b.contains(&delimiter)));
        // With bare-LF line ends a part ending in CR is ambiguous (CRLF is also accepted).
        let bodies: Vec<String> = if bare_lf {
            bodies.iter().map(|b| b.trim_end_matches('\r').to_owned()).collect()
        } else {
            bodies
        };
        let mut body = format!("preamble{eol}");
        for (index, part) in bodies.iter().enumerate() {
            body.push_str(&format!(
                "--{boundary}{eol}Content-Type: text/plain{eol}Content-ID: <p{index}@x>{eol}{eol}{part}{eol}"
            ));
        }
        body.push_str(&format!("--{boundary}--{eol}epilogue"));
        let content_type = format!("multipart/mixed; boundary=\"{boundary}\"");
        let multipart = split(&content_type, body.as_bytes());
        prop_assert!(multipart.is_ok(), "{:?}", multipart);
        let multipart = multipart.unwrap_or_default();
        prop_assert!(multipart.problems.is_empty(), "{:?}", multipart.problems);
        let recovered: Vec<&[u8]> = multipart.parts.iter().map(|part| part.body).collect();
        let expected: Vec<&[u8]> = bodies.iter().map(|b| b.as_bytes()).collect();
        prop_assert_eq!(recovered, expected);
    }

    #[test]
    fn geolocation_never_panics(value in any::<String>()) {
        let _ = parse_geolocation(&value);
        let _ = parse_geolocation_error(&value);
    }

    #[test]
    fn geolocation_round_trips(
        entries in prop::collection::vec(
            (
                prop_oneof![Just("cid"), Just("sip"), Just("sips"), Just("pres"), Just("https")],
                "[a-z0-9.@%-]{1,20}",
                prop::collection::vec(("[a-z-]{1,10}", prop::option::of("[a-z0-9.]{1,10}")), 0..3),
            ),
            1..4,
        )
    ) {
        let text: Vec<String> = entries
            .iter()
            .map(|(scheme, rest, params)| {
                let mut entry = format!("<{scheme}:{rest}>");
                for (name, value) in params {
                    entry.push(';');
                    entry.push_str(name);
                    if let Some(value) = value {
                        entry.push('=');
                        entry.push_str(value);
                    }
                }
                entry
            })
            .collect();
        let joined = text.join(", ");
        let parsed: Vec<String> = parse_geolocation(&joined)
            .into_iter()
            .map(|entry| entry.map(|value| value.to_string()).unwrap_or_default())
            .collect();
        prop_assert_eq!(&parsed, &text);
        let cid_count = parse_geolocation(&joined)
            .into_iter()
            .flatten()
            .filter(|value| value.scheme == UriScheme::Cid)
            .count();
        prop_assert_eq!(cid_count, entries.iter().filter(|(scheme, _, _)| *scheme == "cid").count());
    }

    #[test]
    fn pani_never_panics(value in any::<String>()) {
        for pani in parse_pani(&value).into_iter().flatten() {
            let _ = pani.cell_ids();
            let _ = pani.to_string();
        }
    }

    #[test]
    fn pani_cell_id_is_found_whatever_the_param_order(
        access in prop_oneof![Just("3GPP-E-UTRAN-FDD"), Just("3GPP-NR-TDD"), Just("3GPP-UTRAN-FDD")],
        cell in "[0-9A-F]{15,20}",
        network_provided in any::<bool>(),
        quote in any::<bool>(),
    ) {
        let value = if quote { format!("\"{cell}\"") } else { cell.clone() };
        let np = if network_provided { ";network-provided" } else { "" };
        let header = format!("{access}{np};utran-cell-id-3gpp={value}");
        let parsed = parse_pani(&header);
        let [Ok(pani)] = parsed.as_slice() else {
            return Err(TestCaseError::fail(format!("{parsed:?}")));
        };
        prop_assert_eq!(pani.network_provided(), network_provided);
        prop_assert_eq!(pani.cell_ids().first().map(|c| c.value.clone()), Some(cell));
        prop_assert_eq!(&pani.raw, &header);
    }

    #[test]
    fn pidf_never_panics_on_bytes(bytes in any::<Vec<u8>>()) {
        let _ = parse_pidf(&bytes, source());
    }

    #[test]
    fn pidf_never_panics_on_damaged_documents(
        cut in 0usize..4000,
        flips in prop::collection::vec((0usize..4000, any::<u8>()), 0..8),
    ) {
        let mut bytes = VOLTE_PIDF.as_bytes().to_vec();
        for (at, byte) in flips {
            let len = bytes.len();
            if let Some(slot) = bytes.get_mut(at % len) {
                *slot = byte;
            }
        }
        bytes.truncate(cut.min(bytes.len()));
        let document = parse_pidf(&bytes, source());
        // Damage shows up as problems, never as silence.
        prop_assert!(!document.locations.is_empty() || !document.problems.is_empty());
    }

    #[test]
    fn built_geodetic_pidf_parses_back(geodetic in geodetic(), method in "[A-Za-z0-9-]{1,10}") {
        let value = LocationValue::Geodetic(geodetic);
        let xml = PidfBuilder::new("pres:caller@example.id", value.clone())
            .method(Method(method.clone()))
            .render();
        let document = parse_pidf(xml.as_bytes(), source());
        prop_assert!(document.problems.is_empty(), "{:?}\n{}", document.problems, xml);
        let values: Vec<&LocationValue> = document.locations.iter().map(|l| &l.value).collect();
        prop_assert_eq!(values, vec![&value]);
        prop_assert_eq!(document.locations[0].method.clone(), Some(Method(method)));
    }

    #[test]
    fn built_civic_pidf_parses_back(civic in civic()) {
        let value = LocationValue::Civic(Box::new(civic));
        let xml = PidfBuilder::new("pres:caller@example.id", value.clone()).render();
        let document = parse_pidf(xml.as_bytes(), source());
        prop_assert!(document.problems.is_empty(), "{:?}\n{}", document.problems, xml);
        let values: Vec<&LocationValue> = document.locations.iter().map(|l| &l.value).collect();
        prop_assert_eq!(values, vec![&value]);
    }

    #[test]
    fn extract_never_panics(
        geolocation in prop::collection::vec(any::<String>(), 0..3),
        pani in prop::collection::vec(any::<String>(), 0..3),
        content_type in prop::option::of(content_types()),
        body in any::<Vec<u8>>(),
    ) {
        let geolocation: Vec<&str> = geolocation.iter().map(String::as_str).collect();
        let pani: Vec<&str> = pani.iter().map(String::as_str).collect();
        let cells = CellTable::parse_csv("cell_id,lat,lon,radius_m,area\nAB,1,2,3,Kota X\n").ok();
        let report = extract(
            &LocationInput {
                geolocation: &geolocation,
                p_access_network_info: &pani,
                content_type: content_type.as_deref(),
                body: &body,
                ..LocationInput::default()
            },
            cells.as_ref(),
        );
        let _ = report.to_string();
        prop_assert!(report.chosen.is_none_or(|index| index < report.locations.len()));
    }

    #[test]
    fn cell_table_never_panics(text in any::<String>()) {
        let _ = CellTable::parse_csv(&text);
        let _ = CellTable::parse_csv(&format!("cell_id,lat,lon,radius_m,area\n{text}"));
    }
}
