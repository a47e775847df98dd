//! Runs the simulator against a plan file, as `siaga dialplan simulate` will:
//! `cargo run -p siaga-dialplan --example simulate -- dialplans/default.toml tel:112 "9 1" "sat 23:00"`.
#![allow(clippy::disallowed_methods)] // an example is a tiny shell: it may read files and the clock

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use siaga_dialplan::{CallerKeys, SimulateRequest, Source, simulate, validate};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "dialplans/default.toml".into());
    let to = args.next().unwrap_or_else(|| "tel:112".into());
    let caller = match args.next() {
        None => CallerKeys::Silent,
        Some(keys) if keys == "silent" => CallerKeys::Silent,
        Some(keys) => CallerKeys::Digits(keys),
    };
    let local_time = args.next().unwrap_or_else(|| "mon 10:00".into()).parse()?;
    let text = std::fs::read_to_string(&path)?;
    let plan = match validate(&[Source::new(&path, text)], &|p: &Path| p.exists()) {
        Ok(plan) => Arc::new(plan),
        Err(errors) => {
            eprintln!("{errors}");
            std::process::exit(1);
        }
    };
    // 8 kHz mono 16-bit: 16 000 bytes per second after the 44-byte header.
    let length = |p: &Path| {
        let bytes = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        Duration::from_millis(bytes.saturating_sub(44) / 16)
    };
    let request = SimulateRequest {
        to,
        from: "tel:+6281234567890".into(),
        caller,
        local_time,
        start: Instant::now(),
    };
    print!("{}", simulate(&plan, &request, &length));
    Ok(())
}
