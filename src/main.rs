//! `siaga`: the SIP edge of an integrated 112 emergency-call centre.

mod calllog;
mod config;
mod gateway;
mod media;
mod router;
mod transport;

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
}

#[derive(Args)]
struct ServeArgs {
    /// A TOML config file; flags given here override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// SIP listener as udp:IP:PORT or tcp:IP:PORT; repeat for several
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
}

#[derive(Subcommand)]
enum CallsCommand {
    /// The latest calls, newest first.
    List {
        #[arg(long, default_value = "siaga.db")]
        db: PathBuf,
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: usize,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One call: caller, timeline, SIP messages, recording.
    Show {
        /// The call's id (first column of `calls list`).
        id: i64,
        #[arg(long, default_value = "siaga.db")]
        db: PathBuf,
        /// Print every SIP message in full.
        #[arg(long)]
        messages: bool,
        #[arg(long)]
        json: bool,
    },
}

fn settings_from(args: ServeArgs) -> anyhow::Result<Settings> {
    let mut s = Settings::default();
    if let Some(path) = &args.config {
        config::apply_file(&mut s, path)?;
    }
    if !args.listen.is_empty() {
        s.listen = args.listen;
    }
    if !args.dialplans.is_empty() {
        s.dialplans = args.dialplans;
    }
    if let Some(db) = args.db {
        s.db = db;
    }
    if let Some(r) = args.recordings {
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
    if let Some(ms) = args.t1_ms {
        s.t1 = std::time::Duration::from_millis(ms.max(1));
    }
    Ok(s)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = settings_from(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        std::fs::create_dir_all(&settings.recordings).with_context(|| {
            format!(
                "creating recordings directory {}",
                settings.recordings.display()
            )
        })?;
        let bound = gateway::bind(&settings.listen)?;
        let mut stdout = std::io::stdout();
        for line in bound.describe() {
            writeln!(stdout, "listening {line}")?;
        }
        stdout.flush()?;
        tracing::info!(db = %settings.db.display(), "Siaga 112 gateway running");
        gateway::run(
            settings,
            Arc::new(router::StaticRouter),
            bound,
            shutdown_signal(),
        )
        .await
    })
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Calls(CallsCommand::List { db, limit, json }) => {
            let conn = calllog::open(&db)?;
            let rows = calllog::query::list(&conn, limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", calllog::query::render_list(&rows));
            }
            Ok(())
        }
        Command::Calls(CallsCommand::Show {
            id,
            db,
            messages,
            json,
        }) => {
            let conn = calllog::open(&db)?;
            let detail = calllog::query::show(&conn, id)?
                .with_context(|| format!("no call {id} in {}", db.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&detail)?);
            } else {
                print!("{}", calllog::query::render_detail(&detail, messages));
            }
            Ok(())
        }
    }
}
