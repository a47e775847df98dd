//! Which location to show the call-taker first, when a call carries several.
//!
//! All locations are kept; this only picks the one to lead with. The order:
//!
//! 1. **Source.** What the caller's network sent by value beats anything we derive ourselves:
//!    a PIDF-LO referenced by a `Geolocation` header, then an unreferenced PIDF-LO body, then a
//!    location derived from the serving cell, then the trunk's configured default (RFC 6881
//!    SP-22: a default is only for calls that have nothing better).
//! 2. **Document.** Among by-value documents, the earlier one in the request.
//! 3. **Element kind** (RFC 5491 §3, Rule 8): the first `<dm:device>` holding a location, else
//!    the first `<tuple>`, and `<dm:person>` only as a last resort.
//! 4. **Document order** among elements of the same kind, and within one `location-info`
//!    (RFC 5491 Rule 7 puts the coarse part of a compound location first, so the first chunk
//!    is the one that stands on its own).

use crate::model::{ElementKind, Location, LocationSource};

/// The index of the location to show first, or `None` when there are none.
pub fn choose(locations: &[Location]) -> Option<usize> {
    locations
        .iter()
        .enumerate()
        .min_by_key(|(index, location)| (preference(location), *index))
        .map(|(index, _)| index)
}

/// A sort key: smaller is preferred.
fn preference(location: &Location) -> (u8, usize, u8, usize, usize) {
    let source_rank = match &location.source {
        LocationSource::ByValue {
            referenced: true, ..
        } => 0,
        LocationSource::ByValue {
            referenced: false, ..
        } => 1,
        LocationSource::DerivedFromCell { .. } => 2,
        LocationSource::Default => 3,
    };
    let document = match &location.source {
        LocationSource::ByValue { document, .. } => *document,
        _ => 0,
    };
    let (kind_rank, element_index, chunk_index) = match &location.origin {
        Some(origin) => (
            match origin.element {
                ElementKind::Device => 0,
                ElementKind::Tuple => 1,
                ElementKind::Person => 2,
            },
            origin.element_index,
            origin.chunk_index,
        ),
        None => (3, 0, 0),
    };
    (source_rank, document, kind_rank, element_index, chunk_index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Coordinate, Crs, Geodetic, LocationValue, PidfOrigin, Shape, UsageRules};

    fn located(source: LocationSource, element: Option<(ElementKind, usize, usize)>) -> Location {
        Location {
            source,
            origin: element.map(|(element, element_index, chunk_index)| PidfOrigin {
                entity: None,
                element,
                element_id: None,
                device_id: None,
                element_index,
                chunk_index,
            }),
            value: LocationValue::Geodetic(Geodetic {
                crs: Crs::Wgs84TwoD,
                shape: Shape::Point {
                    pos: Coordinate::new(0.0, 0.0),
                },
            }),
            confidence_percent: None,
            method: None,
            provided_by: None,
            timestamp: None,
            usage_rules: UsageRules::default(),
        }
    }

    fn by_value(document: usize, referenced: bool) -> LocationSource {
        LocationSource::ByValue {
            content_id: None,
            document,
            referenced,
        }
    }

    #[test]
    fn device_beats_tuple_beats_person_regardless_of_order() {
        let locations = vec![
            located(by_value(0, true), Some((ElementKind::Person, 0, 0))),
            located(by_value(0, true), Some((ElementKind::Tuple, 1, 0))),
            located(by_value(0, true), Some((ElementKind::Device, 2, 0))),
            located(by_value(0, true), Some((ElementKind::Device, 3, 0))),
        ];
        assert_eq!(choose(&locations), Some(2));
        assert_eq!(choose(&locations[..2]), Some(1));
        assert_eq!(choose(&locations[..1]), Some(0));
    }

    #[test]
    fn first_chunk_of_a_compound_location_leads() {
        let locations = vec![
            located(by_value(0, true), Some((ElementKind::Device, 0, 1))),
            located(by_value(0, true), Some((ElementKind::Device, 0, 0))),
        ];
        assert_eq!(choose(&locations), Some(1));
    }

    #[test]
    fn callers_network_beats_cell_table_beats_default() {
        let cell = LocationSource::DerivedFromCell {
            cell_id: "x".to_owned(),
            area: "Kota Samarinda".to_owned(),
            network_provided: true,
        };
        let locations = vec![
            located(LocationSource::Default, None),
            located(cell, None),
            located(by_value(1, false), Some((ElementKind::Person, 0, 0))),
            located(by_value(2, true), Some((ElementKind::Person, 0, 0))),
        ];
        assert_eq!(choose(&locations), Some(3));
        assert_eq!(choose(&locations[..3]), Some(2));
        assert_eq!(choose(&locations[..2]), Some(1));
        assert_eq!(choose(&[]), None);
    }
}
