//! Parsers are total: any text gives a plan or a list of errors, never a panic; and emergency
//! service URNs are never turned away.
#![allow(clippy::disallowed_methods)] // tests read the shipped plan from disk

mod common;

use std::path::Path;

use proptest::prelude::*;
use siaga_dialplan::{Classified, Source, validate};

fn default_text() -> String {
    std::fs::read_to_string(common::dialplans_dir().join("default.toml")).expect("readable")
}

/// Every reported line exists in the file it names.
fn lines_are_real(
    text: &str,
    result: &Result<siaga_dialplan::Dialplan, siaga_dialplan::ValidationErrors>,
) -> bool {
    let line_count = u32::try_from(text.lines().count().max(1)).unwrap_or(u32::MAX);
    match result {
        Ok(_) => true,
        Err(errors) => errors
            .diagnostics
            .iter()
            .filter_map(|d| d.location.as_ref())
            .all(|location| (1..=line_count).contains(&location.line)),
    }
}

proptest! {
    #[test]
    fn any_text_gives_a_plan_or_errors(text in "\\PC{0,400}") {
        let result = validate(&[Source::new("x.toml", text.as_str())], &|_: &Path| true);
        prop_assert!(lines_are_real(&text, &result));
    }

    #[test]
    fn toml_shaped_text_gives_a_plan_or_errors(text in "(\\[[a-z._]{1,20}\\]\n|[a-z_]{1,12} = (\"[a-z0-9:@.]{0,12}\"|[0-9]{1,3}|true|\\[\\])\n){0,20}") {
        let result = validate(&[Source::new("x.toml", text.as_str())], &|_: &Path| true);
        prop_assert!(lines_are_real(&text, &result));
    }

    #[test]
    fn the_default_plan_with_a_line_removed(index in 0usize..400) {
        let text = default_text();
        let lines: Vec<&str> = text.lines().collect();
        let index = index % lines.len();
        let mutated: String = lines.iter().enumerate().filter(|(i, _)| *i != index).map(|(_, l)| format!("{l}\n")).collect();
        let result = validate(&[Source::new("default.toml", mutated.as_str())], &|_: &Path| true);
        prop_assert!(lines_are_real(&mutated, &result));
    }

    #[test]
    fn the_default_plan_with_a_value_changed(index in 0usize..400, value in "\"[a-z0-9:@.*-]{0,10}\"|-?[0-9]{1,4}|true") {
        let text = default_text();
        let lines: Vec<&str> = text.lines().collect();
        let index = index % lines.len();
        let mutated: String = lines
            .iter()
            .enumerate()
            .map(|(i, line)| match line.split_once(" = ") {
                Some((key, _)) if i == index => format!("{key} = {value}\n"),
                _ => format!("{line}\n"),
            })
            .collect();
        let result = validate(&[Source::new("default.toml", mutated.as_str())], &|_: &Path| true);
        prop_assert!(lines_are_real(&mutated, &result));
    }

    #[test]
    fn every_sos_urn_is_an_emergency(service in "sos(\\.[a-z0-9-]{1,10}){0,3}") {
        let plan = common::default_plan().unwrap_or_else(|e| panic!("{e}"));
        let classified = plan.classify(&format!("urn:service:{service}"));
        prop_assert!(matches!(classified, Classified::Emergency(_)), "{service}: {classified:?}");
    }

    #[test]
    fn classify_is_total(uri in "\\PC{0,80}") {
        let plan = common::small_plan();
        let _ = plan.classify(&uri);
    }
}
