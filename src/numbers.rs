//! `siaga numbers`: supervisors' watch and block lists for callers' numbers (issue 12). Every
//! change is a row of the call log with who, when, why and until when; a block always expires
//! (at most the plan's `[policies] max_block`). A running gateway picks changes up within
//! `[calls] number_lists_every_s` (default `LIST_REFRESH`), or at once on SIGHUP.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use siaga_engine::dialplan::{CallerNumber, format_list_duration, parse_list_duration};

use crate::calllog::{self, numbers};

/// How often the gateway re-reads the lists unless configured.
pub const LIST_REFRESH: Duration = Duration::from_secs(5);

/// How long an entry lasts when `--for` is not given (always capped by the plan's maximum).
const DEFAULT_FOR: Duration = Duration::from_secs(24 * 3600);

#[derive(Subcommand)]
pub enum NumbersCommand {
    /// Warn this number on each call ("misuse of 112 is an offence") and queue it behind other
    /// callers; it still reaches a call-taker.
    Watch(SetArgs),
    /// Play the blocked announcement and end this number's calls. It still reaches a
    /// call-taker when it calls again often ([policies] block_override) and always when it
    /// dials urn:service:sos with a location. The call is logged either way.
    Block(SetArgs),
    /// Take the number off the watch or block list.
    Unblock(UnblockArgs),
    /// The entries in force; with --all, every change, newest first.
    List {
        #[arg(long, default_value = "siaga.db")]
        db: PathBuf,
        /// Every change (watch, block, unblock, expired ones too), newest first.
        #[arg(long)]
        all: bool,
        #[arg(long, short = 'n', default_value_t = 200)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

/// Who changes the list, and why (both stored with the entry).
#[derive(Args)]
pub struct Author {
    /// Who makes the change (stored with it).
    #[arg(long)]
    by: String,
    /// Why (stored with it, and shown on the timeline of every call it touches).
    #[arg(long)]
    why: String,
    #[arg(long, default_value = "siaga.db")]
    db: PathBuf,
    /// Plan files: the country code numbers are read with, and the longest entry allowed
    /// [default: dialplans/default.toml]
    #[arg(long = "dialplan", value_name = "FILE")]
    dialplans: Vec<PathBuf>,
}

#[derive(Args)]
pub struct SetArgs {
    /// The number in any form: 0812-3456-789, 628123456789, +628123456789.
    number: String,
    /// How long: 30min, 2h, 7d [default: 24h, at most [policies] max_block / max_watch].
    #[arg(long = "for", value_name = "DURATION")]
    duration: Option<String>,
    #[command(flatten)]
    author: Author,
}

#[derive(Args)]
pub struct UnblockArgs {
    /// The number in any form.
    number: String,
    #[command(flatten)]
    author: Author,
}

pub fn run(cmd: NumbersCommand, log_url: Option<&str>) -> anyhow::Result<()> {
    match cmd {
        NumbersCommand::Watch(args) => set(numbers::Change::Watch, args, log_url),
        NumbersCommand::Block(args) => set(numbers::Change::Block, args, log_url),
        NumbersCommand::Unblock(args) => unblock(args, log_url),
        NumbersCommand::List {
            db,
            all,
            limit,
            json,
        } => {
            let conn = calllog::open_reader(&db, log_url)?;
            let now = calllog::now_ms();
            let rows = if all {
                numbers::history(&conn, None, limit)?
            } else {
                numbers::live(&conn, now)?
            };
            if json {
                crate::print_json(&rows)
            } else {
                print!("{}", numbers::render(&rows, now));
                Ok(())
            }
        }
    }
}

/// The plan (for the country code and the limits), the number in its one form, and the log.
fn prepare(
    number: &str,
    author: &Author,
    log_url: Option<&str>,
) -> anyhow::Result<(
    std::sync::Arc<siaga_engine::dialplan::Dialplan>,
    CallerNumber,
    calllog::Db,
)> {
    if author.by.trim().is_empty() || author.why.trim().is_empty() {
        anyhow::bail!("--by and --why must not be empty: every list entry says who and why");
    }
    let files = crate::plan_files(author.dialplans.clone());
    let plan = crate::plan::load(&files).map_err(|e| {
        anyhow::anyhow!("the dialplan gives the country code and the limits, but:\n{e}")
    })?;
    let country = plan.centre().country_code.as_deref();
    let number = CallerNumber::normalise(number, country)
        .map_err(|e| anyhow::anyhow!("{e}; write it as dialled, e.g. 0812-3456-789"))?;
    let conn = match log_url {
        Some(url) => calllog::open_postgres_existing(url)?,
        None => {
            calllog::check_db_file(&author.db, false)?;
            calllog::open(&author.db)?
        }
    };
    Ok((plan, number, conn))
}

fn set(change: numbers::Change, args: SetArgs, log_url: Option<&str>) -> anyhow::Result<()> {
    let (plan, number, conn) = prepare(&args.number, &args.author, log_url)?;
    let policies = plan.policies();
    let (max, key) = match change {
        numbers::Change::Block => (policies.max_block, "max_block"),
        _ => (policies.max_watch, "max_watch"),
    };
    let duration = match &args.duration {
        Some(text) => parse_list_duration(text).map_err(|e| anyhow::anyhow!("--for {e}"))?,
        None => DEFAULT_FOR.min(max),
    };
    if duration > max {
        anyhow::bail!(
            "--for {} is longer than the plan allows ({}); no entry is permanent: set it again \
             when it runs out, or raise [policies] {key} in the dialplan",
            format_list_duration(duration),
            format_list_duration(max)
        );
    }
    let now = calllog::now_ms();
    let until = now.saturating_add(duration.as_millis() as i64);
    let (by, why) = (&args.author.by, &args.author.why);
    numbers::record(&conn, &number, change, now, Some(until), by, why)
        .with_context(|| format!("writing to {}", args.author.db.display()))?;
    println!(
        "{} {number} for {} (until {} UTC), by {by}: {why}",
        match change {
            numbers::Change::Block => "blocked",
            _ => "watching",
        },
        format_list_duration(duration),
        &calllog::query::iso_utc(until)[..16]
    );
    Ok(())
}

fn unblock(args: UnblockArgs, log_url: Option<&str>) -> anyhow::Result<()> {
    let (_, number, conn) = prepare(&args.number, &args.author, log_url)?;
    let now = calllog::now_ms();
    let live = numbers::live(&conn, now)?;
    let Some(entry) = live.iter().find(|r| r.number == number.as_str()) else {
        anyhow::bail!("{number} is on no list now (`siaga numbers list` shows the live entries)");
    };
    let (by, why) = (&args.author.by, &args.author.why);
    numbers::record(&conn, &number, numbers::Change::Unblock, now, None, by, why)
        .with_context(|| format!("writing to {}", args.author.db.display()))?;
    println!(
        "{number} taken off the {} list, by {by}: {why}",
        entry.action
    );
    Ok(())
}
