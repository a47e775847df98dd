//! `P-Access-Network-Info` values (`parse_pani`) and cell tables (`CellTable::parse_csv`),
//! then every parsed entry looked up in the fuzzed table and in the shipped test table.
//!
//! Input layout: text up to the first NUL byte is the PANI part (each line one header value,
//! plus the whole part as one value); after it, the CSV. Without a NUL the whole input is
//! used for both.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use siaga_location::{CellTable, parse_pani};

fn cells() -> &'static CellTable {
    static CELLS: OnceLock<CellTable> = OnceLock::new();
    CELLS.get_or_init(|| {
        CellTable::parse_csv(include_str!("../../crates/location/tests/data/cells-kaltim.csv"))
            .expect("the test cell table parses")
    })
}

fuzz_target!(|data: &[u8]| {
    let (pani_part, csv_part) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let pani_text = String::from_utf8_lossy(pani_part);
    let csv_text = String::from_utf8_lossy(csv_part);

    let mut entries = Vec::new();
    for value in pani_text.lines().chain(std::iter::once(pani_text.as_ref())) {
        for entry in parse_pani(value).into_iter().flatten() {
            let _ = entry.to_string();
            let _ = entry.local_time_zone();
            let _ = entry.access_type.family();
            entries.push(entry);
        }
    }
    let table = CellTable::parse_csv(&csv_text);
    for entry in &entries {
        let _ = cells().lookup(entry);
        if let Ok(table) = &table {
            let _ = table.lookup(entry);
        }
    }
    match table {
        Ok(table) => {
            let _ = table.len();
            for line in csv_text.lines() {
                let id = line.split(',').next().unwrap_or_default();
                let _ = table.get(id);
            }
        }
        Err(errors) => {
            for e in errors {
                let _ = e.to_string();
            }
        }
    }
});
