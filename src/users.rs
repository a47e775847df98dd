//! `siaga users`: the console's accounts. Passwords are read from standard input (never a
//! command-line argument, which other users of the machine can see) and stored as argon2id
//! hashes; every change is an access-trail entry by `cli:<unix user>`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::calllog::access::{AccessAction, AccessEntry, record_access};
use crate::calllog::users::{self, Role};
use crate::calllog::{self, Db};
use crate::console::password;

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Add an account; its password is read from standard input (asked for on a terminal).
    Add {
        name: String,
        /// supervisor (everything), agency (only the calls offered to its --route), auditor
        /// (every call, read-only)
        #[arg(long)]
        role: String,
        /// For an agency account: a dialplan route whose calls it sees (repeat for several).
        #[arg(long = "route")]
        routes: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Remove an account (its sessions end at their next request).
    Remove {
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// Set a new password, read from standard input.
    Passwd {
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// The accounts, their roles and routes.
    List {
        #[arg(long, default_value = "siaga.db")]
        db: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct Common {
    #[arg(long, default_value = "siaga.db")]
    db: PathBuf,
    /// Plan files, to check an agency's routes [default: dialplans/default.toml]
    #[arg(long = "dialplan", value_name = "FILE")]
    dialplans: Vec<PathBuf>,
}

/// `log_url`: the shared PostgreSQL call log (`--log-url`) instead of `--db`.
pub fn run(cmd: UsersCommand, log_url: Option<&str>) -> anyhow::Result<()> {
    match cmd {
        UsersCommand::List { db, json } => {
            let conn = calllog::open_reader(&db, log_url)?;
            let list = users::list(&conn)?;
            if json {
                return crate::print_json(&list);
            }
            for u in &list {
                println!(
                    "{:<20} {:<10} {}",
                    calllog::text::esc(&u.name),
                    u.role.as_str(),
                    calllog::text::esc(&u.routes.join(","))
                );
            }
            Ok(())
        }
        UsersCommand::Add {
            name,
            role,
            routes,
            common,
        } => {
            let role: Role = role.parse().map_err(|e| anyhow::anyhow!("--role: {e}"))?;
            check_name(&name)?;
            match (role, routes.is_empty()) {
                (Role::Agency, true) => anyhow::bail!(
                    "an agency account needs at least one --route (a route of the dialplan, e.g. police)"
                ),
                (Role::Supervisor | Role::Auditor, false) => {
                    anyhow::bail!(
                        "--route is for agency accounts; a {} sees every call",
                        role.as_str()
                    )
                }
                _ => {}
            }
            if !routes.is_empty() {
                check_routes(&routes, &common.dialplans)?;
            }
            let conn = open(&common.db, log_url)?;
            if users::get(&conn, &name)?.is_some() {
                anyhow::bail!(
                    "there is already an account {name:?} (`siaga users passwd` changes its password)"
                );
            }
            let hash = password::hash(&read_password(&name)?)?;
            let now = calllog::now_ms();
            if !users::add(&conn, &name, role, &routes, &hash, now)? {
                anyhow::bail!("there is already an account {name:?}");
            }
            let detail = format!(
                "added {name} as {}{}",
                role.as_str(),
                if routes.is_empty() {
                    String::new()
                } else {
                    format!(" for {}", routes.join(","))
                }
            );
            trail(&conn, &detail)?;
            println!("{detail}");
            Ok(())
        }
        UsersCommand::Remove { name, common } => {
            let conn = open(&common.db, log_url)?;
            if !users::remove(&conn, &name)? {
                anyhow::bail!("no account {name:?} (`siaga users list` shows them)");
            }
            let detail = format!("removed {name}");
            trail(&conn, &detail)?;
            println!("{detail}");
            Ok(())
        }
        UsersCommand::Passwd { name, common } => {
            let conn = open(&common.db, log_url)?;
            if users::get(&conn, &name)?.is_none() {
                anyhow::bail!("no account {name:?} (`siaga users list` shows them)");
            }
            let hash = password::hash(&read_password(&name)?)?;
            users::set_password(&conn, &name, &hash, calllog::now_ms())?;
            let detail = format!("new password for {name}");
            trail(&conn, &detail)?;
            println!("{detail}");
            Ok(())
        }
    }
}

/// The log to change accounts in, created or brought up to date if needed (accounts can be
/// set up before the gateway's first start), on either store.
fn open(db: &std::path::Path, log_url: Option<&str>) -> anyhow::Result<Db> {
    if let Some(url) = log_url {
        return calllog::open_postgres(url);
    }
    calllog::check_db_file(db, false)?;
    calllog::open(db)
}

/// Names are shown in the console and the trail: printable, no spaces, bounded.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if !ok {
        anyhow::bail!("account name {name:?}: 1 to 64 letters, digits, '.', '_', '-' or '@'");
    }
    Ok(())
}

fn check_routes(routes: &[String], dialplans: &[PathBuf]) -> anyhow::Result<()> {
    let files = crate::plan_files(dialplans.to_vec());
    let plan = crate::plan::load(&files)
        .map_err(|e| anyhow::anyhow!("the dialplan names the routes, but:\n{e}"))?;
    let known: Vec<&str> = plan.routes().map(|r| r.base.id.as_str()).collect();
    if let Some(unknown) = routes.iter().find(|r| !known.contains(&r.as_str())) {
        anyhow::bail!(
            "--route {unknown:?} is not a route of the dialplan; its routes: {}",
            known.join(", ")
        );
    }
    Ok(())
}

/// The CLI's entries in the access trail name the Unix account that ran the command.
fn trail(conn: &Db, detail: &str) -> anyhow::Result<()> {
    let unix = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        // SAFETY: getuid takes no arguments and cannot fail.
        .unwrap_or_else(|_| format!("uid {}", unsafe { libc::getuid() }));
    record_access(
        conn,
        &AccessEntry {
            at_ms: calllog::now_ms(),
            user: &format!("cli:{unix}"),
            address: "cli",
            action: AccessAction::UserChange,
            call: None,
            detail,
        },
    )
    .map(|_| ())
}

/// One line from standard input; on a terminal, asked for twice without echo.
fn read_password(name: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    let ask = |prompt: &str| -> anyhow::Result<String> {
        if terminal {
            eprint!("{prompt}");
            let _ = std::io::stderr().flush();
        }
        let _echo = terminal.then(EchoOff::new);
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("reading the password")?;
        if terminal {
            eprintln!();
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    };
    let password = ask(&format!("password for {name}: "))?;
    if password.chars().count() < password::MIN_LENGTH {
        anyhow::bail!(
            "the password must have at least {} characters",
            password::MIN_LENGTH
        );
    }
    if terminal && ask("again: ")? != password {
        anyhow::bail!("the two passwords differ; nothing changed");
    }
    Ok(password)
}

/// Turns the terminal's echo off while it lives.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> Self {
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return EchoOff(None);
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            libc::tcsetattr(0, libc::TCSANOW, &t);
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = self.0 {
            // SAFETY: restores the settings read in `new`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &saved);
            }
        }
    }
}
