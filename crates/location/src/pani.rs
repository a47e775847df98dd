//! `P-Access-Network-Info` (3GPP TS 24.229 §7.2A.4, RFC 7315) and the cell table.
//!
//! A VoLTE call rarely carries a handset position, but the P-CSCF nearly always adds the serving
//! cell. With a table of cell sites the gateway can turn that into a coarse circle — clearly
//! marked as derived from the cell, never passed off as the caller's own position.

use crate::geolocation::{HeaderParam, parse_params};
use crate::media_type::split_outside_quotes;
use crate::model::{
    Coordinate, Crs, Geodetic, Location, LocationSource, LocationValue, Meters, Method, ProvidedBy,
    UsageRules,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use thiserror::Error;

siaga_ids::string_id! {
    /// The access type token, e.g. `3GPP-E-UTRAN-FDD`, as written.
    #[derive(Serialize)]
    #[serde(transparent)]
    pub struct AccessType(pub String);
}

/// The radio family behind an access type, for display and for judging the cell id format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessFamily {
    /// 2G: `3GPP-GERAN`.
    Gsm,
    /// 3G: `3GPP-UTRAN-FDD` / `-TDD`.
    Umts,
    /// 4G: `3GPP-E-UTRAN-FDD` / `-TDD` (VoLTE).
    Lte,
    /// 5G: `3GPP-NR`, `3GPP-NR-FDD`, `3GPP-NR-TDD` … (VoNR).
    Nr,
    /// Wi-Fi: `IEEE-802.11*`, `3GPP-WLAN` (VoWiFi).
    Wlan,
    /// Anything else (DSL, cable, fibre, extension tokens).
    Other,
}

impl AccessType {
    /// Which radio family this access type belongs to.
    pub fn family(&self) -> AccessFamily {
        let upper = self.0.to_ascii_uppercase();
        if upper.starts_with("3GPP-E-UTRAN") {
            AccessFamily::Lte
        } else if upper.starts_with("3GPP-UTRAN") {
            AccessFamily::Umts
        } else if upper.starts_with("3GPP-GERAN") {
            AccessFamily::Gsm
        } else if upper.starts_with("3GPP-NR") {
            AccessFamily::Nr
        } else if upper.starts_with("IEEE-802.11") || upper == "3GPP-WLAN" {
            AccessFamily::Wlan
        } else {
            AccessFamily::Other
        }
    }
}

/// Which PANI parameter a cell identity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellIdKind {
    /// `utran-cell-id-3gpp`: MCC+MNC+LAC/TAC+cell id (UTRAN, E-UTRAN and NR use it).
    UtranCellId3gpp,
    /// `cgi-3gpp`: GERAN cell global identity.
    Cgi3gpp,
    /// `nrcgi`: NR cell global identity, where a network sends it on its own.
    Nrcgi,
    /// `utran-sai-3gpp`: service area identity (coarser than a cell).
    UtranSai3gpp,
    /// `i-wlan-node-id`: the Wi-Fi access point (BSSID).
    IWlanNodeId,
}

impl CellIdKind {
    /// The parameter name on the wire.
    pub fn param_name(self) -> &'static str {
        match self {
            CellIdKind::UtranCellId3gpp => "utran-cell-id-3gpp",
            CellIdKind::Cgi3gpp => "cgi-3gpp",
            CellIdKind::Nrcgi => "nrcgi",
            CellIdKind::UtranSai3gpp => "utran-sai-3gpp",
            CellIdKind::IWlanNodeId => "i-wlan-node-id",
        }
    }

    /// Most precise first: this is the order cells are looked up in.
    const BY_PRECISION: [CellIdKind; 5] = [
        CellIdKind::UtranCellId3gpp,
        CellIdKind::Nrcgi,
        CellIdKind::Cgi3gpp,
        CellIdKind::IWlanNodeId,
        CellIdKind::UtranSai3gpp,
    ];
}

/// A cell (or access point) identity from a PANI entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CellIdentity {
    /// Which parameter it came from.
    pub kind: CellIdKind,
    /// The value, unquoted, as written.
    pub value: String,
}

/// One `access-net-spec` of a `P-Access-Network-Info` header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pani {
    /// This entry exactly as received, for the audit log.
    pub raw: String,
    /// The access type token.
    pub access_type: AccessType,
    /// Its parameters in order (`utran-cell-id-3gpp`, `network-provided`, …).
    pub params: Vec<HeaderParam>,
}

impl Pani {
    /// A parameter's value by case-insensitive name (`None` for absent or valueless).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|param| param.name.eq_ignore_ascii_case(name))
            .and_then(|param| param.value.as_deref())
    }

    /// True when the P-CSCF added it (`network-provided`); handset-supplied values can be stale
    /// or spoofed, network-provided ones are what the operator saw.
    pub fn network_provided(&self) -> bool {
        self.params
            .iter()
            .any(|param| param.name.eq_ignore_ascii_case("network-provided"))
    }

    /// `local-time-zone`, e.g. `UTC+08:00`.
    pub fn local_time_zone(&self) -> Option<&str> {
        self.param("local-time-zone")
    }

    /// Every cell identity in the entry, most precise first.
    pub fn cell_ids(&self) -> Vec<CellIdentity> {
        CellIdKind::BY_PRECISION
            .into_iter()
            .filter_map(|kind| {
                let value = self.param(kind.param_name())?.trim();
                (!value.is_empty()).then(|| CellIdentity {
                    kind,
                    value: value.to_owned(),
                })
            })
            .collect()
    }
}

impl fmt::Display for Pani {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.access_type.0)?;
        match self.cell_ids().first() {
            Some(cell) => write!(f, " cell {}", cell.value)?,
            None => f.write_str(" (no cell id)")?,
        }
        if self.network_provided() {
            f.write_str(", network-provided")?;
        }
        Ok(())
    }
}

/// Why a PANI entry could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PaniError {
    /// The entry does not start with an access type token.
    #[error("{entry:?} does not start with an access type such as 3GPP-E-UTRAN-FDD")]
    MissingAccessType {
        /// The entry as received.
        entry: String,
    },
}

/// Parses one `P-Access-Network-Info` header value (possibly several comma-separated entries).
pub fn parse_pani(value: &str) -> Vec<Result<Pani, PaniError>> {
    split_outside_quotes(value, ',')
        .into_iter()
        .filter(|entry| !entry.trim().is_empty())
        .map(parse_entry)
        .collect()
}

fn parse_entry(entry: &str) -> Result<Pani, PaniError> {
    let entry = entry.trim();
    let (access, rest) = entry.split_once(';').unwrap_or((entry, ""));
    let access = access.trim();
    let is_token = !access.is_empty()
        && access
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&byte));
    if !is_token {
        return Err(PaniError::MissingAccessType {
            entry: entry.to_owned(),
        });
    }
    Ok(Pani {
        raw: entry.to_owned(),
        access_type: AccessType(access.to_owned()),
        params: parse_params(rest),
    })
}

/// One row of the cell table: where a cell site is and how far it reaches.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellEntry {
    /// The cell identity as written in the table.
    pub cell_id: String,
    /// The site (or sector centroid).
    pub center: Coordinate,
    /// How far from the centre a caller can be.
    pub radius: Meters,
    /// The administrative area, e.g. `Kota Samarinda`.
    pub area: String,
}

/// A location derived from the serving cell, plus the table row it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DerivedLocation {
    /// The matching row.
    pub cell: CellEntry,
    /// The location: a circle, `method=Cell`, provided by this gateway, source derived-from-cell.
    pub location: Location,
}

/// What is wrong with one line of a cell table, and what to change.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CellTableProblem {
    /// No header row at all.
    #[error("the file is empty; the first line must be the header cell_id,lat,lon,radius_m,area")]
    Empty,
    /// A required column is missing from the header.
    #[error("the header lacks column(s) {missing:?}; it must name cell_id,lat,lon,radius_m,area")]
    MissingColumns {
        /// The missing column names.
        missing: Vec<&'static str>,
    },
    /// A row with a different number of fields than the header.
    #[error("{found} fields but the header has {expected}; quote values that contain commas")]
    FieldCount {
        /// Fields in the header.
        expected: usize,
        /// Fields in this row.
        found: usize,
    },
    /// A `"` that is never closed.
    #[error("a quoted field is never closed; add the closing \"")]
    UnclosedQuote,
    /// An empty cell id.
    #[error("cell_id is empty; write the identity as sent in utran-cell-id-3gpp / cgi-3gpp")]
    EmptyCellId,
    /// A column that must be a number is not.
    #[error("{column} {value:?} is not a number; use a decimal point, e.g. -0.5022")]
    NotANumber {
        /// The column.
        column: &'static str,
        /// The value found.
        value: String,
    },
    /// Latitude outside −90…90.
    #[error("lat {value} is outside -90..90; are lat and lon swapped?")]
    LatitudeOutOfRange {
        /// The value found.
        value: f64,
    },
    /// Longitude outside −180…180.
    #[error("lon {value} is outside -180..180")]
    LongitudeOutOfRange {
        /// The value found.
        value: f64,
    },
    /// A radius that is not a positive number of metres.
    #[error("radius_m {value} must be greater than 0 (metres)")]
    BadRadius {
        /// The value found.
        value: f64,
    },
    /// An empty area name.
    #[error("area is empty; name the kabupaten/kota, e.g. \"Kota Samarinda\"")]
    EmptyArea,
    /// The same cell id twice (compared case-insensitively).
    #[error("cell_id {cell_id:?} already appears on line {first_line}; keep one row per cell")]
    DuplicateCellId {
        /// The repeated id.
        cell_id: String,
        /// Where it first appeared.
        first_line: usize,
    },
}

/// A cell table error with the 1-based line it is on.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("line {line}: {problem}")]
pub struct CellTableError {
    /// 1-based line number in the CSV text.
    pub line: usize,
    /// What is wrong there.
    pub problem: CellTableProblem,
}

/// Cell sites by identity, looked up case-insensitively.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CellTable {
    /// Keyed by lower-case cell id; value keeps the id as written and its line.
    cells: BTreeMap<String, (CellEntry, usize)>,
}

const COLUMNS: [&str; 5] = ["cell_id", "lat", "lon", "radius_m", "area"];

impl CellTable {
    /// Parses the CSV text of a cell table (`cell_id,lat,lon,radius_m,area` header row).
    ///
    /// Every bad line is reported, not just the first, so an engineer fixes the file in one
    /// pass. Blank lines and lines starting with `#` are skipped; columns may come in any
    /// order and extra columns are ignored.
    pub fn parse_csv(text: &str) -> Result<CellTable, Vec<CellTableError>> {
        let mut errors = Vec::new();
        let mut lines = text
            .split('\n')
            .enumerate()
            .map(|(index, line)| (index + 1, line.strip_suffix('\r').unwrap_or(line)))
            .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'));
        let Some((header_line, header)) = lines.next() else {
            return Err(vec![CellTableError {
                line: 1,
                problem: CellTableProblem::Empty,
            }]);
        };
        let header_fields = match split_csv_line(header) {
            Ok(fields) => fields,
            Err(problem) => {
                return Err(vec![CellTableError {
                    line: header_line,
                    problem,
                }]);
            }
        };
        let column_of = |name: &str| {
            header_fields
                .iter()
                .position(|field| field.trim().eq_ignore_ascii_case(name))
        };
        let positions: Vec<Option<usize>> = COLUMNS.iter().map(|name| column_of(name)).collect();
        let missing: Vec<&'static str> = COLUMNS
            .iter()
            .zip(&positions)
            .filter(|(_, position)| position.is_none())
            .map(|(name, _)| *name)
            .collect();
        let [
            Some(id_at),
            Some(lat_at),
            Some(lon_at),
            Some(radius_at),
            Some(area_at),
        ] = positions.as_slice()
        else {
            return Err(vec![CellTableError {
                line: header_line,
                problem: CellTableProblem::MissingColumns { missing },
            }]);
        };
        let mut table = CellTable::default();
        for (line, row) in lines {
            let mut fail = |problem| errors.push(CellTableError { line, problem });
            let fields = match split_csv_line(row) {
                Ok(fields) => fields,
                Err(problem) => {
                    fail(problem);
                    continue;
                }
            };
            if fields.len() != header_fields.len() {
                fail(CellTableProblem::FieldCount {
                    expected: header_fields.len(),
                    found: fields.len(),
                });
                continue;
            }
            let field = |at: &usize| fields.get(*at).map(|text| text.trim()).unwrap_or_default();
            let number = |column: &'static str, at: &usize| {
                field(at)
                    .parse::<f64>()
                    .ok()
                    .filter(|value| value.is_finite())
                    .ok_or_else(|| CellTableProblem::NotANumber {
                        column,
                        value: field(at).to_owned(),
                    })
            };
            let cell_id = field(id_at);
            let area = field(area_at);
            let checked = (|| {
                if cell_id.is_empty() {
                    return Err(CellTableProblem::EmptyCellId);
                }
                let lat = number("lat", lat_at)?;
                let lon = number("lon", lon_at)?;
                let radius = number("radius_m", radius_at)?;
                if !(-90.0..=90.0).contains(&lat) {
                    return Err(CellTableProblem::LatitudeOutOfRange { value: lat });
                }
                if !(-180.0..=180.0).contains(&lon) {
                    return Err(CellTableProblem::LongitudeOutOfRange { value: lon });
                }
                if radius <= 0.0 {
                    return Err(CellTableProblem::BadRadius { value: radius });
                }
                if area.is_empty() {
                    return Err(CellTableProblem::EmptyArea);
                }
                Ok((lat, lon, radius))
            })();
            let (lat, lon, radius) = match checked {
                Ok(values) => values,
                Err(problem) => {
                    fail(problem);
                    continue;
                }
            };
            let key = cell_id.to_ascii_lowercase();
            if let Some((_, first_line)) = table.cells.get(&key) {
                fail(CellTableProblem::DuplicateCellId {
                    cell_id: cell_id.to_owned(),
                    first_line: *first_line,
                });
                continue;
            }
            let entry = CellEntry {
                cell_id: cell_id.to_owned(),
                center: Coordinate::new(lat, lon),
                radius: Meters(radius),
                area: area.to_owned(),
            };
            table.cells.insert(key, (entry, line));
        }
        if errors.is_empty() {
            Ok(table)
        } else {
            Err(errors)
        }
    }

    /// Number of cells in the table.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// True when the table has no cells.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The row for a cell id, compared case-insensitively.
    pub fn get(&self, cell_id: &str) -> Option<&CellEntry> {
        self.cells
            .get(&cell_id.trim().to_ascii_lowercase())
            .map(|(entry, _)| entry)
    }

    /// The location of the PANI entry's cell, trying its most precise identity first.
    pub fn lookup(&self, pani: &Pani) -> Option<DerivedLocation> {
        let cell = pani
            .cell_ids()
            .into_iter()
            .find_map(|identity| self.get(&identity.value))?
            .clone();
        let location = Location {
            source: LocationSource::DerivedFromCell {
                cell_id: cell.cell_id.clone(),
                area: cell.area.clone(),
                network_provided: pani.network_provided(),
            },
            origin: None,
            value: LocationValue::Geodetic(Geodetic {
                crs: Crs::Wgs84TwoD,
                shape: crate::model::Shape::Circle {
                    center: cell.center,
                    radius: cell.radius,
                },
            }),
            confidence_percent: None,
            method: Some(Method::cell()),
            provided_by: Some(ProvidedBy::Gateway),
            timestamp: None,
            usage_rules: UsageRules::default(),
        };
        Some(DerivedLocation { cell, location })
    }
}

/// Splits one CSV line (RFC 4180 quoting: `"a, b"` and `""` for a quote inside quotes).
fn split_csv_line(line: &str) -> Result<Vec<String>, CellTableProblem> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut characters = line.chars().peekable();
    while let Some(character) = characters.next() {
        match (character, in_quotes) {
            ('"', true) if characters.peek() == Some(&'"') => {
                current.push('"');
                characters.next();
            }
            ('"', true) => in_quotes = false,
            ('"', false) if current.trim().is_empty() => {
                current.clear();
                in_quotes = true;
            }
            (',', false) => fields.push(std::mem::take(&mut current)),
            (other, _) => current.push(other),
        }
    }
    if in_quotes {
        return Err(CellTableProblem::UnclosedQuote);
    }
    fields.push(current);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "cell_id,lat,lon,radius_m,area\r\n\
# Samarinda, Telkomsel LTE\r\n\
5101F0001A2B3C4D5,-0.5022,117.1536,850,Kota Samarinda\r\n\
\r\n\
51010000AB12345,-1.2379,116.8529,2000,\"Kota Balikpapan, Kalimantan Timur\"\r\n";

    #[test]
    fn volte_pani_with_network_provided_cell() {
        let entries = parse_pani(
            "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101F0001A2B3C4D5; \
             network-provided; local-time-zone=\"UTC+08:00\"",
        );
        let [Ok(pani)] = entries.as_slice() else {
            panic!("{entries:?}");
        };
        assert_eq!(pani.access_type.family(), AccessFamily::Lte);
        assert!(pani.network_provided());
        assert_eq!(pani.local_time_zone(), Some("UTC+08:00"));
        assert_eq!(
            pani.cell_ids(),
            vec![CellIdentity {
                kind: CellIdKind::UtranCellId3gpp,
                value: "5101F0001A2B3C4D5".to_owned()
            }]
        );
    }

    #[test]
    fn several_entries_and_families() {
        let entries = parse_pani(
            "3GPP-NR-FDD;utran-cell-id-3gpp=51010ABCDEF0123456789, \
             IEEE-802.11;i-wlan-node-id=ffeeddccbbaa, 3GPP-GERAN;cgi-3gpp=51010123412345",
        );
        let families: Vec<AccessFamily> = entries
            .iter()
            .flatten()
            .map(|pani| pani.access_type.family())
            .collect();
        assert_eq!(
            families,
            vec![AccessFamily::Nr, AccessFamily::Wlan, AccessFamily::Gsm]
        );
        assert!(
            entries
                .iter()
                .flatten()
                .all(|pani| !pani.network_provided())
        );
    }

    #[test]
    fn entry_without_access_type_is_an_error() {
        let entries = parse_pani(";utran-cell-id-3gpp=1, 3GPP-UTRAN-FDD");
        assert!(matches!(
            entries[0],
            Err(PaniError::MissingAccessType { .. })
        ));
        assert!(entries[1].is_ok());
    }

    #[test]
    fn table_lookup_is_case_insensitive_and_marked_as_derived() {
        let Ok(table) = CellTable::parse_csv(TABLE) else {
            panic!("table must parse");
        };
        assert_eq!(table.len(), 2);
        let entries =
            parse_pani("3GPP-E-UTRAN-FDD;utran-cell-id-3gpp=5101f0001a2b3c4d5;network-provided");
        let Some(Ok(pani)) = entries.first() else {
            panic!("{entries:?}");
        };
        let Some(derived) = table.lookup(pani) else {
            panic!("cell must be found");
        };
        assert_eq!(derived.cell.area, "Kota Samarinda");
        assert_eq!(derived.location.method, Some(Method::cell()));
        assert_eq!(derived.location.provided_by, Some(ProvidedBy::Gateway));
        assert!(matches!(
            derived.location.source,
            LocationSource::DerivedFromCell {
                network_provided: true,
                ..
            }
        ));
        assert_eq!(
            derived.location.to_string(),
            "circle centre -0.5022, 117.1536 radius 850 m (Cell, provided-by this gateway) \
             [derived from cell 5101F0001A2B3C4D5 (Kota Samarinda)]"
        );
        assert_eq!(
            table.get("51010000ab12345").map(|cell| cell.area.as_str()),
            Some("Kota Balikpapan, Kalimantan Timur")
        );
    }

    #[test]
    fn unknown_cell_gives_nothing() {
        let Ok(table) = CellTable::parse_csv(TABLE) else {
            panic!("table must parse");
        };
        let entries = parse_pani("3GPP-E-UTRAN-FDD;utran-cell-id-3gpp=999");
        let Some(Ok(pani)) = entries.first() else {
            panic!("{entries:?}");
        };
        assert_eq!(table.lookup(pani), None);
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let text = "cell_id,lat,lon,radius_m,area\n\
a,117.15,-0.50,100,Kota Samarinda\n\
b,-0.5,117.1,0,Kota Samarinda\n\
c,-0.5,117.1,100\n\
A,-0.5,117.1,100,Kota Samarinda\n\
a,-0.5,117.1,100,Kota Samarinda\n\
d,-0.5,abc,100,Kota Samarinda\n\
e,-0.5,117.1,100,\"unclosed\n";
        let Err(errors) = CellTable::parse_csv(text) else {
            panic!("table must be refused");
        };
        let lines: Vec<usize> = errors.iter().map(|error| error.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 6, 7, 8]);
        assert!(matches!(
            errors[0].problem,
            CellTableProblem::LatitudeOutOfRange { .. }
        ));
        assert!(matches!(
            errors[3].problem,
            CellTableProblem::DuplicateCellId { first_line: 5, .. }
        ));
        assert_eq!(
            errors[4].to_string(),
            "line 7: lon \"abc\" is not a number; use a decimal point, e.g. -0.5022"
        );
    }

    #[test]
    fn header_must_name_the_columns() {
        let Err(errors) = CellTable::parse_csv("id,lat,lon\n1,2,3\n") else {
            panic!("table must be refused");
        };
        assert_eq!(
            errors,
            vec![CellTableError {
                line: 1,
                problem: CellTableProblem::MissingColumns {
                    missing: vec!["cell_id", "radius_m", "area"]
                }
            }]
        );
        assert!(CellTable::parse_csv("\n# only a comment\n").is_err());
    }

    #[test]
    fn columns_may_come_in_any_order() {
        let table = CellTable::parse_csv(
            "area,radius_m,lon,lat,cell_id,operator\nKota Bontang,500,117.5,0.13,X1,Indosat\n",
        );
        assert_eq!(
            table
                .ok()
                .and_then(|table| table.get("x1").map(|cell| cell.center)),
            Some(Coordinate::new(0.13, 117.5))
        );
    }
}
