//! `siaga`: the SIP edge of an integrated 112 emergency-call centre.

mod calllog;
mod capture;
mod civil;
mod config;
mod console;
mod evidence;
mod gateway;
mod http;
mod logging;
mod media;
mod memory;
mod metrics;
mod numbers;
mod plan;
mod restart;
mod systemd;
mod tls;
mod transport;
mod users;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::{Listen, PortRange, Settings};

#[derive(Parser)]
#[command(
    name = "siaga",
    version,
    about = "Siaga 112: answers every emergency call over SIP, records it, sorts it with an IVR, \
             bridges it to the right agency and logs it for audit."
)]
struct Cli {
    /// A shared PostgreSQL call log (several gateway nodes) instead of the SQLite file of
    /// --db, for every command [config: log.url]
    #[arg(
        long,
        global = true,
        env = "SIAGA_LOG_URL",
        value_name = "postgres://…"
    )]
    log_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway. With no flags: SIP on UDP and TCP port 5060 on all addresses,
    /// dialplans/default.toml, call log siaga.db, recordings in recordings/.
    Serve(ServeArgs),
    /// Read the call log.
    #[command(subcommand)]
    Calls(CallsCommand),
    /// Check a dialplan, or simulate a call through it without placing one.
    #[command(subcommand)]
    Dialplan(DialplanCommand),
    /// False calls over a period: the false-call share per day and per hour of day, calls by
    /// class, the numbers that call most, call-takers' time per class, corrections. False
    /// calls are emergency calls whose current class is silent, abandoned, pocket_or_noise,
    /// repeat or prank; the share is over the emergency calls that have a class (test calls
    /// and unclassified calls, whose signals were never logged, are not in it).
    Report(ReportArgs),
    /// Watch and block lists for callers' numbers (dialplan [policies]); every entry expires.
    #[command(subcommand)]
    Numbers(numbers::NumbersCommand),
    /// The gateway's own events, newest first (starts, stops, reloads and rejections, crash
    /// recoveries, call-log gaps), with filters.
    Events(evidence::cli::EventsArgs),
    /// The centre's Ed25519 key, which signs evidence packages and the audit head.
    #[command(subcommand)]
    Keys(evidence::cli::KeysCommand),
    /// Evidence packages (made by `calls export`).
    #[command(subcommand)]
    Evidence(evidence::cli::EvidenceCommand),
    /// The tamper-evident chain over call records, recordings and the access trail.
    #[command(subcommand)]
    Audit(evidence::cli::AuditCommand),
    /// Recordings against the digests in the call log.
    #[command(subcommand)]
    Recordings(evidence::cli::RecordingsCommand),
    /// Retention of recordings and verbatim SIP messages; legal holds.
    #[command(subcommand)]
    Retention(evidence::cli::RetentionCommand),
    /// The web console's accounts: supervisor, agency (scoped to routes) or auditor.
    #[command(subcommand)]
    Users(users::UsersCommand),
}

#[derive(Args)]
struct ReportArgs {
    #[arg(long, default_value = "siaga.db")]
    db: PathBuf,
    /// First day (YYYY-MM-DD) or minute (YYYY-MM-DDTHH:MM), local time [default: 7 days
    /// before --to]
    #[arg(long)]
    from: Option<String>,
    /// Last day, included, or a minute, not included, local time [default: today]
    #[arg(long)]
    to: Option<String>,
    /// Local time for days, hours, --from and --to, e.g. +08:00 (WITA) [default: +00:00, UTC]
    #[arg(long, value_name = "±HH:MM", allow_hyphen_values = true)]
    utc_offset: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: ReportFormat,
    /// How many of the numbers that call most to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Table,
    Csv,
    Json,
}

#[derive(Subcommand)]
enum DialplanCommand {
    /// Validate plan files; every error is reported with file, line and a hint. Exits 1 on error.
    Check {
        /// Plan files [default: dialplans/default.toml]
        files: Vec<PathBuf>,
    },
    /// Print the path a call would take: menus heard, digits read, route, targets, fallbacks.
    Simulate {
        /// What the caller dials: 112, tel:112, urn:service:sos.fire, …
        #[arg(long)]
        to: String,
        /// The caller's number.
        #[arg(long, default_value = "+6281234567890")]
        from: String,
        /// Keys the caller presses, in order (spaces = pauses between menus), e.g. "9 1".
        #[arg(long, conflicts_with = "silent")]
        digits: Option<String>,
        /// The caller presses nothing.
        #[arg(long)]
        silent: bool,
        /// Every first move in the entry's menu (silence, each key, an invalid key) and the
        /// IVR time until its route is chosen.
        #[arg(long, conflicts_with_all = ["silent", "digits"])]
        paths: bool,
        /// Local time of the call, e.g. "sat 23:15" [default: now, UTC]
        #[arg(long)]
        time: Option<String>,
        /// Plan files [default: dialplans/default.toml]
        files: Vec<PathBuf>,
    },
}

/// A flag given twice takes its last value (a wrapper script's default, then the operator's
/// choice); repeatable flags (--listen, --dialplan) still add up.
#[derive(Args)]
#[command(args_override_self = true)]
struct ServeArgs {
    /// A TOML config file; flags given here override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// SIP listener as udp:IP:PORT, tcp:IP:PORT or tls:IP:PORT; repeat for several
    /// [default: udp:0.0.0.0:5060 udp:[::]:5060 tcp:0.0.0.0:5060 tcp:[::]:5060]
    #[arg(long = "listen", value_name = "TRANSPORT:IP:PORT")]
    listen: Vec<Listen>,
    /// Dialplan file(s) [default: dialplans/default.toml]
    #[arg(long = "dialplan", value_name = "FILE")]
    dialplans: Vec<PathBuf>,
    /// SQLite call log [default: siaga.db]
    #[arg(long)]
    db: Option<PathBuf>,
    /// Directory for call recordings [default: recordings]
    #[arg(long)]
    recordings: Option<PathBuf>,
    /// UDP port range for RTP [default: 40000-49999]
    #[arg(long, value_name = "FIRST-LAST")]
    rtp_ports: Option<PortRange>,
    /// Ring time between 180 and 200 in ms [default: 0: answer at once]
    #[arg(long, value_name = "MS")]
    ring_delay_ms: Option<u64>,
    /// The gateway hangs up calls longer than this; 0 = never [default: 14400]
    #[arg(long, value_name = "SECONDS")]
    max_call_secs: Option<u64>,
    /// RFC 3261 T1 in ms [default: 500]
    #[arg(long, value_name = "MS")]
    t1_ms: Option<u64>,
    /// CSV of cell IDs → approximate locations (cell_id,lat,lon,radius_m,area)
    #[arg(long, value_name = "CSV")]
    cell_table: Option<PathBuf>,
    /// HTTP listener for /metrics, /healthz and /readyz, as IP:PORT (loopback), or off
    /// [default: 127.0.0.1:8112]
    #[arg(long, value_name = "IP:PORT|off")]
    http: Option<String>,
    /// Send every SIP message, in and out, to a HEP v3 collector (Homer, sngrep -L)
    /// [config: capture.hep]
    #[arg(long, value_name = "udp:HOST:PORT")]
    hep: Option<capture::HepCollector>,
    /// The TLS listeners' certificate chain (PEM), reloaded on SIGHUP [config: sip.tls_cert]
    #[arg(long, value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// The TLS listeners' private key (PEM), reloaded on SIGHUP [config: sip.tls_key]
    #[arg(long, value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// Console log lines as text or as one JSON object per line [config: log.console_format]
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<logging::LogFormat>,
    /// This gateway's name among several on one call log; every call row carries it
    /// [config: node.name; default: the host name]
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
}

#[derive(Subcommand)]
enum CallsCommand {
    /// The latest calls, newest first.
    List {
        #[arg(long, default_value = "siaga.db")]
        db: PathBuf,
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: usize,
        /// Only calls that ended this way (repeat for several), e.g. abandoned_in_ivr.
        #[arg(long = "end", value_name = "REASON")]
        end_reasons: Vec<String>,
        /// The call-back list: emergency calls no agency answered that were abandoned, lost
        /// (no ACK, transport error) or cut by a gateway restart.
        #[arg(long)]
        call_backs: bool,
        /// Only calls whose current class is this (a person's latest correction, else the
        /// rules'): genuine, silent, abandoned, pocket_or_noise, repeat, test, prank, or
        /// unclassified.
        #[arg(long, value_name = "CLASS")]
        class: Option<String>,
        #[command(flatten)]
        filters: evidence::cli::ListFilters,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write an evidence package of calls: recordings, records, timelines, locations and
    /// SIP messages, with a manifest of SHA-256s signed with the centre's key; on the
    /// access trail. Prints the package's directory.
    Export(evidence::cli::ExportArgs),
    /// Put a call on legal hold: retention deletes nothing of it.
    Hold(evidence::cli::HoldArgs),
    /// Release a legal hold.
    Unhold(evidence::cli::HoldArgs),
    /// Figures for an audit period: calls that reached an agency and how fast, callers to
    /// call back, end reasons, first routes (silent and no-input callers too), transfers.
    Stats {
        #[arg(long, default_value = "siaga.db")]
        db: PathBuf,
        /// From this UTC day or minute on: YYYY-MM-DD or YYYY-MM-DDTHH:MM.
        #[arg(long)]
        since: Option<String>,
        /// Before this UTC day or minute (not included).
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The gateway's own events, newest first: starts, stops, reloads, call-log gaps, disk
    /// alarms.
    Events {
        #[arg(long, default_value = "siaga.db")]
        db: PathBuf,
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Correct a call's class (any class, also prank). Each correction is kept with who, when
    /// and why; the rules' class stays, and the latest correction is the call's class.
    Classify {
        /// The call's id (first column of `calls list`).
        id: i64,
        /// genuine, silent, abandoned, pocket_or_noise, repeat, test or prank.
        class: siaga_dialplan::CallClass,
        /// Who corrects it (a call-taker's or supervisor's name).
        #[arg(long)]
        by: String,
        /// Why: what the rules got wrong, or what the call was.
        #[arg(long)]
        why: String,
        #[arg(long, default_value = "siaga.db")]
        db: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// One call: caller, outcome, i3 ids, timeline, SIP messages, recording.
    Show {
        /// The call's id (first column of `calls list`), or its NENA i3 call or incident id.
        id: String,
        #[arg(long, default_value = "siaga.db")]
        db: PathBuf,
        #[command(flatten)]
        time: evidence::cli::TimeArgs,
        /// Print every SIP message in full.
        #[arg(long)]
        messages: bool,
        #[arg(long)]
        json: bool,
    },
}

fn settings_from(args: ServeArgs, log_url: Option<String>) -> anyhow::Result<Settings> {
    let mut s = Settings::default();
    if let Some(path) = &args.config {
        config::apply_file(&mut s, path)?;
    }
    if let Some(url) = log_url {
        s.set_origin("log.url", "--log-url".into());
        s.log.url = Some(url);
    }
    if let Some(node) = args.node {
        s.log.node = node;
    }
    if !args.listen.is_empty() {
        s.listen = args.listen;
    }
    if !args.dialplans.is_empty() {
        s.set_origin("dialplan.files", "--dialplan".into());
        s.dialplans = args.dialplans;
    }
    if let Some(db) = args.db {
        s.set_origin("log.db", "--db".into());
        s.db = db;
    }
    if let Some(r) = args.recordings {
        s.set_origin("media.recordings", "--recordings".into());
        s.recordings = r;
    }
    if let Some(p) = args.rtp_ports {
        s.rtp_ports = p;
    }
    if let Some(ms) = args.ring_delay_ms {
        s.ring_delay = std::time::Duration::from_millis(ms);
    }
    if let Some(secs) = args.max_call_secs {
        s.max_call_duration = (secs > 0).then(|| std::time::Duration::from_secs(secs));
    }
    if let Some(p) = args.cell_table {
        s.set_origin("location.cell_table", "--cell-table".into());
        s.cell_table = Some(p);
    }
    if let Some(ms) = args.t1_ms {
        s.t1 = std::time::Duration::from_millis(ms.max(1));
    }
    if let Some(http) = args.http {
        s.http =
            config::parse_http_listen(&http, false).map_err(|e| anyhow::anyhow!("--http: {e}"))?;
    }
    if let Some(hep) = args.hep {
        s.capture.hep = Some(hep);
    }
    if let Some(format) = args.log_format {
        s.log_format = format;
    }
    if let Some(cert) = args.tls_cert {
        s.set_origin("sip.tls_cert", "--tls-cert".into());
        s.tls_cert = Some(cert);
    }
    if let Some(key) = args.tls_key {
        s.set_origin("sip.tls_key", "--tls-key".into());
        s.tls_key = Some(key);
    }
    s.validate()?;
    Ok(s)
}

/// SIGINT or SIGTERM. Installed before the gateway says it is listening, so a supervisor
/// (or a test) that stops it right away gets a clean drain, not a killed process.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// Every file the settings name, checked before the gateway says anything is running; an
/// error names the setting (config file and line, or flag) and what to change.
fn check_files(settings: &Settings) -> anyhow::Result<Arc<siaga_engine::dialplan::Dialplan>> {
    if let Some(path) = &settings.cell_table {
        gateway::load_cell_table(Some(path)).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e:#}\n  hint: create the file (cell_id,lat,lon,radius_m,area; see \
                 tests/data/cells-samarinda.csv), or point the setting at it, or remove it",
                settings.origin("location.cell_table")
            )
        })?;
    }
    if settings.log.url.is_none() {
        calllog::check_db_file(&settings.db, false)
            .map_err(|e| anyhow::anyhow!("{}: {e}", settings.origin("log.db")))?;
    }
    std::fs::create_dir_all(&settings.recordings).map_err(|e| {
        anyhow::anyhow!(
            "{}: cannot create the recordings directory {}: {e}\n  hint: create it, or \
             point the setting at a writable directory",
            settings.origin("media.recordings"),
            settings.recordings.display()
        )
    })?;
    // Found now, not on the day the log's disk fills and records need it.
    if let Err(e) = check_writable_dir(&settings.log.spill_dir) {
        let what = format!(
            "{}: the call log's spill directory {} is not usable: {e}",
            settings.origin("log.spill_dir"),
            settings.log.spill_dir.display()
        );
        if settings.origins.iter().any(|(k, _)| *k == "log.spill_dir") {
            anyhow::bail!(
                "{what}\n  hint: create it writable, or point the setting at a directory on another disk than the call log"
            );
        }
        // The default: a gateway without it still serves calls (it only matters on a day
        // the database cannot be written), but says so.
        tracing::error!("{what}; set log.spill_dir to a writable directory");
    }
    plan::load(&settings.dialplans).map_err(|errors| {
        anyhow::anyhow!(
            "the dialplan has errors, not starting (files from {}):\n{errors}",
            settings.origin("dialplan.files")
        )
    })
}

/// Creates `dir` if needed and checks a file can be created in it.
fn check_writable_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".siaga-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

fn serve(args: ServeArgs, log_url: Option<String>) -> anyhow::Result<()> {
    let settings = settings_from(args, log_url)?;
    // Only now is the console format known; nothing above logs (its errors are returned).
    logging::init(settings.log_format);
    // Before any socket or file is opened: TCP peers, RTP ports and recordings all need
    // descriptors, and a soft limit of 1024 is a common service default.
    match transport::raise_fd_limit() {
        Ok(limit) => tracing::info!(open_files = limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    // Before anything is created: the log and the recordings hold callers' numbers,
    // locations and voices.
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe { libc::umask(settings.umask as libc::mode_t) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let dialplan = check_files(&settings)?;
        let tls_server = gateway::tls_server_for(&settings)?;
        let shutdown = shutdown_signal()?;
        // Before any port is bound: a second gateway on this call log would close the first
        // one's live calls at start.
        // (A shared PostgreSQL has no such lock: each node repairs only its own calls.)
        let lock = match settings.log.url {
            None => restart::CallLogLock::acquire(&settings.db)?,
            Some(_) => None,
        };
        let mut bound = gateway::bind(&settings.listen)?;
        bound.tls_server = tls_server;
        let mut stdout = std::io::stdout();
        // Metrics and health are not worth a refused start: a gateway whose HTTP port is
        // taken still answers 112, and says why it has no /metrics.
        if let Some(addr) = settings.http {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    if let Ok(a) = listener.local_addr() {
                        writeln!(stdout, "listening http {a}")?;
                    }
                    bound.http = Some(listener);
                }
                Err(e) => tracing::error!(
                    %addr,
                    error = %e,
                    "HTTP listener (metrics, health) not started; set http.listen or --http"
                ),
            }
        }
        for line in bound.describe() {
            writeln!(stdout, "listening {line}")?;
        }
        stdout.flush()?;
        match &settings.log.url {
            None => tracing::info!(db = %settings.db.display(), "Siaga 112 gateway running"),
            Some(url) => tracing::info!(log = %calllog::store::redacted(url),
                node = %settings.log.node, "Siaga 112 gateway running"),
        }
        gateway::run(settings, dialplan, bound, lock, shutdown).await
    })
}

fn plan_files(files: Vec<PathBuf>) -> Vec<PathBuf> {
    if files.is_empty() {
        Settings::default().dialplans
    } else {
        files
    }
}

fn dialplan_command(cmd: DialplanCommand) -> anyhow::Result<()> {
    match cmd {
        DialplanCommand::Check { files } => {
            let files = plan_files(files);
            match plan::load(&files) {
                Ok(p) => {
                    println!(
                        "ok: \"{}\": {} routes, {} menus ({})",
                        p.centre().name,
                        p.routes().count(),
                        p.menus().count(),
                        files
                            .iter()
                            .map(|f| f.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    Ok(())
                }
                Err(errors) => {
                    eprintln!("{errors}");
                    std::process::exit(1);
                }
            }
        }
        DialplanCommand::Simulate {
            to,
            from,
            digits,
            silent,
            paths,
            time,
            files,
        } => {
            let plan = plan::load(&plan_files(files)).map_err(|e| anyhow::anyhow!("{e}"))?;
            let caller = match (digits, silent) {
                (Some(d), false) => siaga_dialplan::CallerKeys::Digits(d),
                _ => siaga_dialplan::CallerKeys::Silent,
            };
            let local_time = match time {
                Some(t) => t
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--time {t:?}: {e}"))?,
                None => now_local_time(),
            };
            // `--to 112` means the number 112, as dialled from a phone.
            let to = if to.contains(':') {
                to
            } else {
                format!("tel:{to}")
            };
            let request = siaga_dialplan::SimulateRequest {
                to,
                from,
                caller,
                local_time,
                start: std::time::Instant::now(),
            };
            if paths {
                print!(
                    "{}",
                    siaga_dialplan::simulate_paths(&plan, &request, &plan::prompt_duration)
                );
            } else {
                print!(
                    "{}",
                    siaga_dialplan::simulate(&plan, &request, &plan::prompt_duration)
                );
            }
            Ok(())
        }
    }
}

/// The current UTC time as the dialplan's weekday + HH:MM.
fn now_local_time() -> siaga_dialplan::LocalTime {
    siaga_dialplan::LocalTime::from_unix(calllog::now_ms() / 1000, 0)
}

/// JSON for tools, with nothing in it a terminal would act on.
pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!(
        "{}",
        calllog::text::json_safe(serde_json::to_string_pretty(value)?)
    );
    Ok(())
}

fn report(args: ReportArgs, log_url: Option<&str>) -> anyhow::Result<()> {
    let day_or_minute = |flag: &str, text: &str| {
        calllog::stats::parse_utc(text).ok_or_else(|| {
            anyhow::anyhow!(
                "--{flag} {text:?}: write a day or minute, e.g. 2026-11-28 or 2026-11-28T08:00"
            )
        })
    };
    let from = args
        .from
        .as_deref()
        .map(|t| day_or_minute("from", t))
        .transpose()?;
    let to = args
        .to
        .as_deref()
        .map(|t| day_or_minute("to", t).map(|ms| (ms, !t.contains(['T', ' ']))))
        .transpose()?;
    let offset_minutes = match args.utc_offset.as_deref() {
        None => 0,
        Some(text) => config::parse_utc_offset(text).ok_or_else(|| {
            anyhow::anyhow!("--utc-offset {text:?}: write ±HH:MM, e.g. +08:00 for WITA")
        })?,
    };
    let period = calllog::report::period(
        from,
        to,
        calllog::now_ms(),
        i64::from(offset_minutes) * 60_000,
    );
    if period.from_ms >= period.to_ms {
        anyhow::bail!("--from must be before --to");
    }
    let conn = calllog::open_reader(&args.db, log_url)?;
    let report = calllog::report::report(&conn, period, args.top)?;
    match args.format {
        ReportFormat::Table => print!("{}", calllog::report::render_table(&report)),
        ReportFormat::Csv => print!("{}", calllog::report::render_csv(&report)),
        ReportFormat::Json => print_json(&report)?,
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        logging::init(logging::LogFormat::Text);
    }
    let log_url = cli.log_url.as_deref();
    match cli.command {
        Command::Serve(args) => serve(args, cli.log_url),
        Command::Dialplan(cmd) => dialplan_command(cmd),
        Command::Report(args) => report(args, log_url),
        Command::Numbers(cmd) => numbers::run(cmd, log_url),
        Command::Events(args) => evidence::cli::events(args, log_url),
        Command::Keys(cmd) => evidence::cli::keys_command(cmd, log_url),
        Command::Evidence(cmd) => evidence::cli::evidence_command(cmd),
        Command::Audit(cmd) => evidence::cli::audit_command(cmd, log_url),
        Command::Recordings(cmd) => evidence::cli::recordings_command(cmd, log_url),
        Command::Retention(cmd) => evidence::cli::retention_command(cmd, log_url),
        Command::Calls(CallsCommand::Export(args)) => evidence::cli::export(args, log_url),
        Command::Calls(CallsCommand::Hold(args)) => evidence::cli::hold(args, true, log_url),
        Command::Calls(CallsCommand::Unhold(args)) => evidence::cli::hold(args, false, log_url),
        Command::Users(cmd) => users::run(cmd, log_url),
        Command::Calls(CallsCommand::List {
            db,
            limit,
            end_reasons,
            call_backs,
            class,
            filters,
            json,
        }) => {
            let known = calllog::query::known_end_reasons();
            if let Some(unknown) = end_reasons.iter().find(|r| !known.contains(&r.as_str())) {
                anyhow::bail!(
                    "unknown end reason {unknown:?}; the call log uses: {}",
                    known.join(", ")
                );
            }
            let conn = calllog::open_reader(&db, log_url)?;
            let class = match class.as_deref() {
                None => None,
                Some("unclassified") => Some(None),
                Some(name) => Some(Some(
                    name.parse::<siaga_dialplan::CallClass>()
                        .map_err(|e| anyhow::anyhow!("--class: {e}, or unclassified"))?,
                )),
            };
            let filter = filters.filter(end_reasons, call_backs, class)?;
            let rows = calllog::query::list(&conn, limit, &filter)?;
            if json {
                print_json(&rows)?;
            } else {
                evidence::cli::print_list(&rows, limit, filters.time.zone()?);
            }
            Ok(())
        }
        Command::Calls(CallsCommand::Stats {
            db,
            since,
            until,
            json,
        }) => {
            let bound = |flag: &str, text: Option<String>| -> anyhow::Result<Option<i64>> {
                text.map(|t| {
                    calllog::stats::parse_utc(&t).ok_or_else(|| {
                        anyhow::anyhow!(
                            "--{flag} {t:?}: write a UTC day or minute, e.g. 2026-11-28 or 2026-11-28T08:00"
                        )
                    })
                })
                .transpose()
            };
            let window = calllog::stats::Window {
                from_ms: bound("since", since)?,
                to_ms: bound("until", until)?,
            };
            let conn = calllog::open_reader(&db, log_url)?;
            let stats = calllog::stats::stats(&conn, window)?;
            if json {
                print_json(&stats)?;
            } else {
                print!("{}", calllog::stats::render(&stats));
            }
            Ok(())
        }
        Command::Calls(CallsCommand::Events { db, limit, json }) => {
            let conn = calllog::open_reader(&db, log_url)?;
            let events = calllog::query::gateway_events(&conn, limit)?;
            if json {
                print_json(&events)?;
            } else {
                print!("{}", calllog::query::render_events(&events));
            }
            Ok(())
        }
        Command::Calls(CallsCommand::Classify {
            id,
            class,
            by,
            why,
            db,
            json,
        }) => {
            let conn = calllog::open_for_corrections(&db, log_url)?;
            let correction =
                calllog::classes::correct(&conn, id, class, &by, &why, calllog::now_ms())?;
            // Issue 11 item 5: a class change is on the access trail (and so in the chain).
            calllog::access::record_access(
                &conn,
                &calllog::access::AccessEntry {
                    at_ms: calllog::now_ms(),
                    user: &calllog::access::cli_user(),
                    address: "cli",
                    action: calllog::access::AccessAction::ClassChange,
                    call: Some(id),
                    detail: &format!("→ {} by {by}: {why}", correction.to),
                },
            )?;
            if json {
                print_json(&correction)?;
            } else {
                println!(
                    "call {id}: {} → {} by {} ({})",
                    correction
                        .from
                        .map_or("unclassified", siaga_dialplan::CallClass::as_str),
                    correction.to,
                    calllog::text::esc(&correction.by),
                    calllog::text::esc(&correction.why)
                );
            }
            Ok(())
        }
        Command::Calls(CallsCommand::Show {
            id,
            db,
            time,
            messages,
            json,
        }) => {
            let conn = calllog::open_reader(&db, log_url)?;
            let id = evidence::cli::resolve_call(&conn, &id, &db)?;
            let detail = calllog::query::show(&conn, id)?
                .with_context(|| format!("no call {id} in {}", db.display()))?;
            if json {
                print_json(&detail)?;
            } else {
                print!(
                    "{}",
                    calllog::query::render_detail_in(&detail, messages, time.zone()?)
                );
            }
            Ok(())
        }
    }
}
