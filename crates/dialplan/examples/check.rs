//! Validates plan files as `siaga dialplan check` will:
//! `cargo run -p siaga-dialplan --example check -- dialplans/default.toml [more.toml …]`.
#![allow(clippy::disallowed_methods)] // an example is a tiny shell: it may read files

use std::path::Path;

use siaga_dialplan::{Source, validate};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut sources = Vec::new();
    for path in std::env::args().skip(1) {
        let text = std::fs::read_to_string(&path)?;
        sources.push(Source::new(path, text));
    }
    match validate(&sources, &|prompt: &Path| prompt.is_file()) {
        Ok(plan) => {
            let routes = plan.routes().count();
            let menus = plan.menus().count();
            println!(
                "ok: \"{}\", {routes} routes, {menus} menus",
                plan.centre().name
            );
            Ok(())
        }
        Err(errors) => {
            eprintln!("{errors}");
            std::process::exit(1);
        }
    }
}
