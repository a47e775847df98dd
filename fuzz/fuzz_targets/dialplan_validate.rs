//! Dial plan validation on arbitrary TOML text, then lookups and simulated calls through any
//! plan that validates.
//!
//! Input layout: UTF-8 (lossy) text; a form feed (`\x0c`) starts another plan file (the
//! validator merges a main plan with per-agency files).
//!
//! Properties, besides "never panics":
//! - every diagnostic's line exists in the file it names;
//! - a valid plan answers urn:service:sos as an emergency;
//! - every fallback chain ends at the last resort;
//! - every simulated emergency call is routed (never `Unfinished`) and its chain ends at the
//!   last resort: emergency routing fails open, every path ends at a human.
#![no_main]

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use siaga_dialplan::{
    CallerKeys, Classified, ClockTime, LocalTime, SimulateRequest, SimulationOutcome, Source,
    Weekday, simulate, validate,
};

fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let files: Vec<&str> = text.split('\x0c').take(4).collect();
    let sources: Vec<Source> = files
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let name = if i == 0 { "plan.toml".to_owned() } else { format!("agency{i}.toml") };
            Source::new(name, *t)
        })
        .collect();
    let plan = match validate(&sources, &|_: &Path| true) {
        Ok(plan) => plan,
        Err(errors) => {
            for d in &errors.diagnostics {
                if let Some(loc) = &d.location {
                    let file = sources.iter().find(|s| s.path == loc.file);
                    let Some(file) = file else {
                        panic!("diagnostic names unknown file {:?}", loc.file);
                    };
                    let lines = u32::try_from(file.text.lines().count().max(1)).unwrap_or(u32::MAX);
                    assert!(
                        (1..=lines).contains(&loc.line),
                        "diagnostic at {}:{} but the file has {lines} lines",
                        loc.file.display(),
                        loc.line
                    );
                }
            }
            let _ = errors.to_string();
            return;
        }
    };
    let plan = Arc::new(plan);
    let last_resort = plan.last_resort().clone();
    assert!(
        matches!(plan.classify("urn:service:sos"), Classified::Emergency(_)),
        "a valid plan turned urn:service:sos away"
    );
    for route in plan.routes() {
        let chain = plan.fallback_chain(&route.base.id);
        assert_eq!(chain.last(), Some(&last_resort), "fallback chain {chain:?}");
    }

    let mut uris: Vec<String> = [
        "urn:service:sos",
        "urn:service:sos.fire",
        "urn:service:sos.police",
        "urn:service:sos.unknown",
        "urn:service:test.sos",
        "tel:112",
        "sip:112@gw;user=phone",
        "tel:+62112",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    // Quoted strings of the plan (numbers, URNs) are the interesting Request-URIs.
    for quoted in text.split('"').skip(1).step_by(2).take(12) {
        uris.push(quoted.to_owned());
        uris.push(format!("tel:{quoted}"));
    }
    let keys = [
        CallerKeys::Silent,
        CallerKeys::Digits("1".into()),
        CallerKeys::Digits("9 1".into()),
        CallerKeys::Digits("55".into()),
        CallerKeys::Digits("0 0 0 0".into()),
        CallerKeys::Digits(format!("{}", data.len() % 10)),
    ];
    let time = LocalTime::new(
        Weekday::ALL[data.len() % 7],
        ClockTime::new((data.len() % 24) as u8, 30).expect("valid time"),
    );
    for uri in &uris {
        let classified = plan.classify(uri);
        let Classified::Emergency(_) = classified else {
            continue;
        };
        for caller in &keys {
            let request = SimulateRequest {
                to: uri.clone(),
                from: "tel:+6281234567890".into(),
                caller: caller.clone(),
                local_time: time,
                start: t0(),
            };
            let trace = simulate(&plan, &request, &|_: &Path| Duration::from_secs(3));
            let _ = trace.to_string();
            match &trace.outcome {
                SimulationOutcome::Routed(routed) => {
                    let last = routed.chain.last().map(|r| r.id.clone());
                    assert_eq!(last.as_ref(), Some(&last_resort), "{uri} {caller:?}: chain {:?}", routed.chain);
                }
                other => panic!("{uri} {caller:?}: emergency call ended as {other:?}"),
            }
        }
    }
});
