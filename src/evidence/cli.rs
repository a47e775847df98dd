//! The evidence commands: `siaga keys`, `siaga evidence verify`, `siaga audit`, `siaga
//! recordings verify`, `siaga retention run`, `siaga events`, and `siaga calls
//! export|hold|unhold` and the filters of `siaga calls list`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use super::{keys, package};
use crate::calllog::access::{self, AccessAction, AccessEntry};
use crate::calllog::query::{self, Zone};
use crate::calllog::{self, chain, retention, text::esc};

const DEFAULT_DB: &str = "siaga.db";

/// Where the centre's key is: `--key-dir`, else the config file's `[evidence] key_dir`, else
/// `keys`.
#[derive(Args, Clone)]
pub struct KeyDirArgs {
    /// Directory of the centre's key (centre.key, centre.pub) [default: [evidence] key_dir
    /// of --config, else keys]
    #[arg(long, value_name = "DIR")]
    pub key_dir: Option<PathBuf>,
    /// The gateway's config file, for [evidence] key_dir and [retention].
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

impl KeyDirArgs {
    fn settings(&self) -> anyhow::Result<crate::config::Settings> {
        let mut s = crate::config::Settings::default();
        if let Some(path) = &self.config {
            crate::config::apply_file(&mut s, path)?;
        }
        Ok(s)
    }

    fn dir(&self) -> anyhow::Result<PathBuf> {
        match &self.key_dir {
            Some(d) => Ok(d.clone()),
            None => Ok(self.settings()?.key_dir),
        }
    }
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create the centre's Ed25519 signing key (private key file mode 0600); refuses to
    /// replace an existing one. Prints the public key.
    Init {
        #[command(flatten)]
        key: KeyDirArgs,
        /// The call log, where the creation is put on the access trail (if it exists).
        #[arg(long, default_value = DEFAULT_DB)]
        db: PathBuf,
    },
    /// Print the centre's public key (64 hex digits): give it to whoever checks packages.
    Show {
        #[command(flatten)]
        key: KeyDirArgs,
    },
}

#[derive(Subcommand)]
pub enum EvidenceCommand {
    /// Check an evidence package on any machine, without the call log: the manifest's
    /// signature and every file's SHA-256. Exits 1 naming the first problem.
    Verify {
        /// The package: its directory, or the tar archive the console downloads.
        package: PathBuf,
        /// The centre's public key (64 hex digits, or a centre.pub file) [default: the one
        /// named in the manifest, which proves only that the package is intact]
        #[arg(long, value_name = "PUB")]
        key: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Walk the tamper-evident chain and the recordings: names the first entry or file that
    /// was changed, deleted or added out of order. Exits 1 on any problem.
    Verify {
        #[arg(long, default_value = DEFAULT_DB)]
        db: PathBuf,
        /// A signed head from `siaga audit head`: the chain must still hold it (catches a
        /// chain rewritten by someone with write access to the database).
        #[arg(long, value_name = "FILE")]
        head: Option<PathBuf>,
        /// The centre's public key for --head [default: the one in the head file]
        #[arg(long, value_name = "PUB")]
        key: Option<String>,
        /// On a shared PostgreSQL log: the node this runs on, whose calls' recordings are
        /// on this machine; other nodes' are left to them [default: the host name]
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The access trail, newest first: who viewed, played, exported, held or deleted what.
    Trail {
        #[arg(long, default_value = DEFAULT_DB)]
        db: PathBuf,
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: usize,
        /// Paging: entries older than this seq.
        #[arg(long, value_name = "SEQ")]
        before: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Print the chain's current head signed with the centre's key (JSON): print or store it
    /// off the machine daily; `audit verify --head` checks the chain still holds it.
    Head {
        #[arg(long, default_value = DEFAULT_DB)]
        db: PathBuf,
        #[command(flatten)]
        key: KeyDirArgs,
    },
}

#[derive(Subcommand)]
pub enum RecordingsCommand {
    /// Re-hash every recording against the digest in the call log; lists missing and
    /// altered files (recordings deleted by retention are listed as such). Exits 1 if any
    /// is missing or altered.
    Verify {
        #[arg(long, default_value = DEFAULT_DB)]
        db: PathBuf,
        /// Also list WAV files in this recordings directory that no call has (added from
        /// outside) [config: media.recordings].
        #[arg(long, value_name = "DIR")]
        recordings: Option<PathBuf>,
        /// List every recording, not only the problems.
        #[arg(long)]
        all: bool,
        /// On a shared PostgreSQL log: the node this runs on, whose calls' recordings are
        /// on this machine; other nodes' are left to them [default: the host name]
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Run the retention sweep now (the gateway runs it daily): deletes recordings and
    /// verbatim SIP messages older than the periods, except calls on legal hold; each
    /// deletion is on the access trail; digests stay.
    Run {
        #[arg(long, default_value = DEFAULT_DB)]
        db: PathBuf,
        /// The gateway's config file, for [retention].
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Keep recordings this many days (0: for ever) [default: [retention] recordings_days]
        #[arg(long)]
        recordings_days: Option<u32>,
        /// Keep verbatim SIP messages this many days (0: for ever) [default: [retention]
        /// sip_bodies_days]
        #[arg(long)]
        sip_bodies_days: Option<u32>,
        /// Sweep as of this UTC day or minute instead of now (what a sweep then would
        /// delete; the deletions are real and logged with this time).
        #[arg(long, value_name = "YYYY-MM-DD[THH:MM]")]
        as_of: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The calls on legal hold.
    Holds {
        #[arg(long, default_value = DEFAULT_DB)]
        db: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// Times in UTC, or in the centre's local time.
#[derive(Args, Clone)]
pub struct TimeArgs {
    /// Times (and --since/--until) in local time: --utc-offset, else the system's offset.
    #[arg(long)]
    pub local: bool,
    /// The centre's offset for --local, e.g. +08:00 (WITA).
    #[arg(
        long,
        value_name = "±HH:MM",
        allow_hyphen_values = true,
        requires = "local"
    )]
    pub utc_offset: Option<String>,
    /// The gateway's config file: --local uses its [dialplan] utc_offset.
    #[arg(long = "config", value_name = "FILE", requires = "local")]
    pub config: Option<PathBuf>,
}

impl TimeArgs {
    pub fn zone(&self) -> anyhow::Result<Zone> {
        if !self.local {
            return Ok(Zone::Utc);
        }
        match &self.utc_offset {
            None if self.config.is_some() => Ok(Zone::Offset(
                KeyDirArgs {
                    key_dir: None,
                    config: self.config.clone(),
                }
                .settings()?
                .utc_offset_minutes,
            )),
            None => Ok(Zone::system()),
            Some(text) => crate::config::parse_utc_offset(text)
                .map(Zone::Offset)
                .ok_or_else(|| anyhow::anyhow!("--utc-offset {text:?}: write ±HH:MM, e.g. +08:00")),
        }
    }
}

/// `--since`/`--until`: a day or minute, in `zone`.
fn bound(flag: &str, text: Option<&str>, zone: Zone) -> anyhow::Result<Option<i64>> {
    text.map(|t| {
        calllog::stats::parse_utc(t)
            .map(|ms| ms - zone.offset_ms())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--{flag} {t:?}: write a day or minute, e.g. 2026-11-28 or 2026-11-28T08:00"
                )
            })
    })
    .transpose()
}

/// The filters `calls list` shares with the console.
#[derive(Args, Clone)]
pub struct ListFilters {
    /// Started from this day or minute on (YYYY-MM-DD or YYYY-MM-DDTHH:MM; UTC, or local
    /// with --local).
    #[arg(long)]
    pub since: Option<String>,
    /// Started before this day or minute.
    #[arg(long)]
    pub until: Option<String>,
    /// The caller's number, in From or P-Asserted-Identity (digits; a leading 0 or + is
    /// ignored, so 0812… finds +62812…).
    #[arg(long, value_name = "NUMBER")]
    pub caller: Option<String>,
    /// What was dialled: 112 (sip:112@…, tel:112), or a whole URI such as urn:service:sos.
    #[arg(long)]
    pub dialled: Option<String>,
    /// Calls offered to this dialplan route (agency), e.g. police.
    #[arg(long)]
    pub route: Option<String>,
    /// Only calls an agency answered.
    #[arg(long, conflicts_with = "unanswered")]
    pub answered: bool,
    /// Only calls no agency answered.
    #[arg(long)]
    pub unanswered: bool,
    /// At least this long, INVITE to end, in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub min_secs: Option<f64>,
    /// Paging: calls older than this id (the next page starts below the last id shown).
    #[arg(long, value_name = "ID")]
    pub before: Option<i64>,
    #[command(flatten)]
    pub time: TimeArgs,
}

impl ListFilters {
    /// The query's filter, with the options `calls list` had before these.
    pub fn filter(
        &self,
        end_reasons: Vec<String>,
        call_backs: bool,
        class: Option<Option<siaga_dialplan::CallClass>>,
    ) -> anyhow::Result<query::ListFilter> {
        let zone = self.time.zone()?;
        Ok(query::ListFilter {
            end_reasons,
            call_backs,
            class,
            since_ms: bound("since", self.since.as_deref(), zone)?,
            until_ms: bound("until", self.until.as_deref(), zone)?,
            caller: self.caller.clone(),
            dialled: self.dialled.clone(),
            route: self.route.clone(),
            answered: match (self.answered, self.unanswered) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
            min_duration_ms: self.min_secs.map(|s| (s * 1000.0).round() as i64),
            before_id: self.before,
        })
    }
}

/// `calls list`: the table, and how to get the next page.
pub fn print_list(rows: &[query::CallRow], limit: usize, zone: Zone) {
    print!("{}", query::render_list_in(rows, zone));
    if rows.len() == limit
        && let Some(last) = rows.last()
    {
        println!("(more: add --before {})", last.id);
    }
}

/// `siaga events`.
#[derive(Args)]
pub struct EventsArgs {
    #[arg(long, default_value = DEFAULT_DB)]
    db: PathBuf,
    #[arg(long, short = 'n', default_value_t = 50)]
    limit: usize,
    /// Only these kinds (repeat), e.g. start, dialplan_reloaded, dialplan_rejected,
    /// crash_recovery.
    #[arg(long = "kind", value_name = "KIND")]
    kinds: Vec<String>,
    /// From this day or minute on.
    #[arg(long)]
    since: Option<String>,
    /// Before this day or minute.
    #[arg(long)]
    until: Option<String>,
    #[command(flatten)]
    time: TimeArgs,
    #[arg(long)]
    json: bool,
}

pub fn events(args: EventsArgs, log_url: Option<&str>) -> anyhow::Result<()> {
    let known: Vec<&str> = calllog::GatewayEventKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    if let Some(unknown) = args.kinds.iter().find(|k| !known.contains(&k.as_str())) {
        anyhow::bail!(
            "unknown event kind {unknown:?}; kinds: {}",
            known.join(", ")
        );
    }
    let zone = args.time.zone()?;
    let conn = calllog::open_reader(&args.db, log_url)?;
    let rows = query::gateway_events_filtered(
        &conn,
        &args.kinds,
        bound("since", args.since.as_deref(), zone)?,
        bound("until", args.until.as_deref(), zone)?,
        args.limit,
    )?;
    if args.json {
        crate::print_json(&rows)
    } else {
        print!("{}", query::render_events_in(&rows, zone));
        Ok(())
    }
}

/// A call named by its id or its NENA i3 call or incident id.
pub fn resolve_call(conn: &crate::calllog::Db, key: &str, db: &Path) -> anyhow::Result<i64> {
    query::find_call(conn, key)?.with_context(|| {
        format!(
            "no call {key:?} in {} (an id, or an i3 call or incident id)",
            db.display()
        )
    })
}

/// `siaga calls export`.
#[derive(Args)]
pub struct ExportArgs {
    /// Calls: ids, or NENA i3 call or incident ids.
    #[arg(required = true)]
    calls: Vec<String>,
    /// Why (required): who asked, their reference, the purpose.
    #[arg(long)]
    reason: String,
    /// The package is created inside this directory.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[arg(long, default_value = DEFAULT_DB)]
    db: PathBuf,
    #[command(flatten)]
    key: KeyDirArgs,
}

pub fn export(args: ExportArgs, log_url: Option<&str>) -> anyhow::Result<()> {
    let conn = calllog::open_for_corrections(&args.db, log_url)?;
    let calls = args
        .calls
        .iter()
        .map(|c| resolve_call(&conn, c, &args.db))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let user = access::cli_user();
    let dir = package::export(
        &conn,
        &package::ExportRequest {
            calls: &calls,
            reason: &args.reason,
            user: &user,
            address: "cli",
            out_dir: &args.out,
            key_dir: &args.key.dir()?,
            now_ms: calllog::now_ms(),
        },
    )?;
    println!("{}", dir.display());
    Ok(())
}

/// `siaga calls hold|unhold`.
#[derive(Args)]
pub struct HoldArgs {
    /// The call: its id, or its i3 call or incident id.
    call: String,
    /// Why (required): the case, the order.
    #[arg(long)]
    reason: String,
    #[arg(long, default_value = DEFAULT_DB)]
    db: PathBuf,
}

pub fn hold(args: HoldArgs, on: bool, log_url: Option<&str>) -> anyhow::Result<()> {
    if args.reason.trim().is_empty() {
        anyhow::bail!("--reason is required: the case or order the hold is for");
    }
    let conn = calllog::open_for_corrections(&args.db, log_url)?;
    let call = resolve_call(&conn, &args.call, &args.db)?;
    retention::set_hold(
        &conn,
        call,
        on,
        args.reason.trim(),
        calllog::now_ms(),
        &access::cli_user(),
        "cli",
    )?;
    println!(
        "call {call}: {}",
        if on {
            "on legal hold (retention keeps everything)"
        } else {
            "legal hold released"
        }
    );
    Ok(())
}

pub fn keys_command(cmd: KeysCommand, log_url: Option<&str>) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Init { key, db } => {
            let dir = key.dir()?;
            let public = keys::init(&dir)?;
            if log_url.is_some() || db.exists() {
                let conn = calllog::open_for_corrections(&db, log_url)?;
                access::record_access(
                    &conn,
                    &AccessEntry {
                        at_ms: calllog::now_ms(),
                        user: &access::cli_user(),
                        address: "cli",
                        action: AccessAction::KeysInit,
                        call: None,
                        detail: &format!("public key {}", keys::public_hex(&public)),
                    },
                )?;
            }
            eprintln!(
                "created {} (keep it secret; back it up offline) and {}",
                keys::secret_path(&dir).display(),
                dir.join(keys::PUBLIC_FILE).display()
            );
            println!("{}", keys::public_hex(&public));
            Ok(())
        }
        KeysCommand::Show { key } => {
            let dir = key.dir()?;
            let public = keys::parse_public(&dir.join(keys::PUBLIC_FILE).to_string_lossy())
                .or_else(|_| keys::load_signing(&dir).map(|k| k.verifying_key()))?;
            println!("{}", keys::public_hex(&public));
            Ok(())
        }
    }
}

pub fn evidence_command(cmd: EvidenceCommand) -> anyhow::Result<()> {
    let EvidenceCommand::Verify { package, key, json } = cmd;
    let key = key.as_deref().map(keys::parse_public).transpose()?;
    match package::verify(&package, key.as_ref()) {
        Ok(v) => {
            if json {
                crate::print_json(&v)?;
            } else {
                println!(
                    "ok: {} file(s) of call(s) {:?} intact, signed by {}{}",
                    v.files,
                    v.calls,
                    v.public_key,
                    if v.key_given {
                        " (the key given)"
                    } else {
                        " (the key the manifest names: compare it with the centre's published key, or pass --key)"
                    }
                );
                println!(
                    "exported {} by {}: {}",
                    esc(&v.exported_at),
                    esc(&v.exported_by),
                    esc(&v.reason)
                );
            }
            Ok(())
        }
        Err(problem) => {
            eprintln!("FAILED: {}: {}", package.display(), esc(&problem));
            std::process::exit(1);
        }
    }
}

/// The signed head `siaga audit head` prints.
#[derive(Debug, Serialize, Deserialize)]
pub struct SignedHead {
    pub format: String,
    pub seq: i64,
    pub at: i64,
    pub at_utc: String,
    pub hash: String,
    pub public_key: String,
    pub signature: String,
}

const HEAD_FORMAT: &str = "siaga-audit-head/1";

fn head_message(seq: i64, at: i64, hash: &str) -> Vec<u8> {
    format!("{HEAD_FORMAT}\n{seq}\n{at}\n{hash}").into_bytes()
}

pub fn audit_command(cmd: AuditCommand, log_url: Option<&str>) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Trail {
            db,
            limit,
            before,
            json,
        } => {
            let conn = calllog::open_reader(&db, log_url)?;
            let rows = access::list_access(&conn, before, limit)?;
            if json {
                return crate::print_json(&rows);
            }
            for r in &rows {
                println!(
                    "{:>6}  {}  {:<16} {:<18} {:<15} {:<6} {}",
                    r.seq,
                    query::iso_utc(r.at_ms),
                    esc(&r.action),
                    esc(&r.user),
                    esc(&r.address),
                    r.call.map_or_else(|| "-".to_owned(), |c| c.to_string()),
                    esc(&r.detail)
                );
            }
            Ok(())
        }
        AuditCommand::Head { db, key } => {
            let signing = keys::load_signing(&key.dir()?)?;
            let conn = calllog::open_reader(&db, log_url)?;
            let head = chain::head(&conn)?.context("the chain is empty: nothing to sign yet")?;
            let signed = SignedHead {
                format: HEAD_FORMAT.to_owned(),
                seq: head.seq,
                at: head.at,
                at_utc: query::iso_utc(head.at),
                signature: keys::sign_hex(&signing, &head_message(head.seq, head.at, &head.hash)),
                hash: head.hash,
                public_key: keys::public_hex(&signing.verifying_key()),
            };
            crate::print_json(&signed)
        }
        AuditCommand::Verify {
            db,
            head,
            key,
            node,
            json,
        } => {
            let conn = calllog::open_reader(&db, log_url)?;
            let here = this_node(log_url, node);
            let mut v = chain::verify(&conn, calllog::now_ms(), here.as_deref())?;
            if let Some(path) = &head
                && let Some(problem) = check_head(&conn, path, key.as_deref())?
            {
                v.problems.insert(0, problem);
            }
            drop(conn);
            // The verification itself is on the trail when the log can be written.
            if let Ok(conn) = calllog::open_for_corrections(&db, log_url) {
                let detail = match v.problems.first() {
                    None => format!("ok: {} entries", v.entries),
                    Some(p) => format!("FAILED: {p}"),
                };
                let _ = access::record_access(
                    &conn,
                    &AccessEntry {
                        at_ms: calllog::now_ms(),
                        user: &access::cli_user(),
                        address: "cli",
                        action: AccessAction::AuditVerify,
                        call: None,
                        detail: &detail,
                    },
                );
            }
            if json {
                crate::print_json(&v)?;
            } else {
                print!("{}", render_verification(&v));
            }
            if !v.problems.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// Whether the chain still holds a signed head; `Some(problem)` if not.
fn check_head(
    conn: &crate::calllog::Db,
    path: &Path,
    key: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let signed: SignedHead = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a signed head from `siaga audit head`",
            path.display()
        )
    })?;
    let public = match key {
        Some(k) => keys::parse_public(k)?,
        None => keys::parse_public_hex(&signed.public_key)?,
    };
    if !keys::check(
        &public,
        &head_message(signed.seq, signed.at, &signed.hash),
        &signed.signature,
    ) {
        return Ok(Some(format!(
            "signed head {}: its signature does not verify (the file was changed, or another key signed it)",
            path.display()
        )));
    }
    let held: Option<String> = conn
        .query_row(
            "SELECT hash FROM audit_chain WHERE seq = ?1",
            [signed.seq],
            |r| r.get(0),
        )
        .ok();
    Ok(match held {
        Some(h) if h == signed.hash => None,
        Some(_) => Some(format!(
            "entry #{}: differs from the signed head of {} (the chain was rewritten up to there)",
            signed.seq, signed.at_utc
        )),
        None => Some(format!(
            "entry #{}: the signed head of {} is no longer in the chain (entries were deleted)",
            signed.seq, signed.at_utc
        )),
    })
}

fn render_verification(v: &chain::Verification) -> String {
    let mut out = String::new();
    match v.problems.first() {
        None => out.push_str("ok: the chain and the recordings verify\n"),
        Some(first) => out.push_str(&format!("FAILED: {}\n", esc(first))),
    }
    out.push_str(&format!(
        "  {} entries: {} call records, {} recordings ({} deleted by retention), {} access-trail entries\n",
        v.entries, v.calls, v.recordings, v.recordings_deleted_by_retention, v.access_entries
    ));
    if let Some(h) = &v.head {
        out.push_str(&format!(
            "  head #{} {} {}\n",
            h.seq,
            query::iso_utc(h.at),
            h.hash
        ));
    }
    if v.recordings_on_other_nodes > 0 {
        out.push_str(&format!(
            "  {} recording(s) of other nodes' calls not re-hashed here (run audit verify on them)\n",
            v.recordings_on_other_nodes
        ));
    }
    if !v.calls_awaiting_seal.is_empty() {
        out.push_str(&format!(
            "  calls ended in the last minutes, not sealed yet: {:?}\n",
            v.calls_awaiting_seal
        ));
    }
    for p in v.problems.iter().skip(1) {
        out.push_str(&format!("  also: {}\n", esc(p)));
    }
    out
}

/// The node whose recordings are on this machine: only on a shared PostgreSQL log (one
/// gateway's log has all its recordings here).
fn this_node(log_url: Option<&str>, node: Option<String>) -> Option<String> {
    log_url.map(|_| node.unwrap_or_else(calllog::host_name))
}

pub fn recordings_command(cmd: RecordingsCommand, log_url: Option<&str>) -> anyhow::Result<()> {
    let RecordingsCommand::Verify {
        db,
        recordings,
        all,
        node,
        json,
    } = cmd;
    let conn = calllog::open_reader(&db, log_url)?;
    let here = this_node(log_url, node);
    let mut checks = chain::check_recordings(&conn, here.as_deref())?;
    if let Some(dir) = &recordings {
        checks.extend(chain::unknown_recordings(&conn, dir)?);
    }
    let bad = |c: &&chain::RecordingCheck| {
        matches!(c.status, "missing" | "altered" | "unreadable" | "unknown")
    };
    let failed = checks.iter().filter(bad).count();
    if json {
        crate::print_json(&checks)?;
    } else {
        for c in checks.iter().filter(|c| all || bad(c)) {
            println!(
                "{:<20} call {:<6} {}  {}",
                c.status,
                c.call,
                esc(&c.path),
                esc(&c.detail)
            );
        }
        let count = |s: &str| checks.iter().filter(|c| c.status == s).count();
        println!(
            "{} recording(s): {} ok, {} missing, {} altered, {} deleted by retention, {} unfinished{}{}",
            checks.len() - count("unknown"),
            count("ok"),
            count("missing"),
            count("altered"),
            count("deleted_by_retention"),
            count("unfinished"),
            match count("other_node") {
                0 => String::new(),
                n => format!("; {n} on other nodes (verify them there)"),
            },
            match count("unknown") {
                0 => String::new(),
                n => format!("; {n} unknown file(s) in the recordings directory"),
            }
        );
    }
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

pub fn retention_command(cmd: RetentionCommand, log_url: Option<&str>) -> anyhow::Result<()> {
    match cmd {
        RetentionCommand::Run {
            db,
            config,
            recordings_days,
            sip_bodies_days,
            as_of,
            json,
        } => {
            let now = bound("as-of", as_of.as_deref(), Zone::Utc)?.unwrap_or_else(calllog::now_ms);
            let settings = KeyDirArgs {
                key_dir: None,
                config,
            }
            .settings()?;
            let mut periods = settings.retention;
            if let Some(d) = recordings_days {
                periods.recordings_days = d;
            }
            if let Some(d) = sip_bodies_days {
                periods.sip_bodies_days = d;
            }
            if periods.is_off() {
                anyhow::bail!(
                    "no retention period set: give --recordings-days / --sip-bodies-days, or \
                     --config with [retention]"
                );
            }
            let conn = calllog::open_for_corrections(&db, log_url)?;
            // On a shared PostgreSQL, this box's recordings are its node's calls' only.
            let node = log_url.map(|_| settings.log.node.as_str());
            let report = retention::sweep(&conn, periods, now, node, &access::cli_user(), "cli")?;
            if json {
                crate::print_json(&report)?;
            } else {
                println!(
                    "deleted {} recording(s) {:?}; verbatim SIP messages of {} call(s) and {} \
                     sampled message(s); {} call(s) on legal hold kept",
                    report.recordings_deleted.len(),
                    report.recordings_deleted,
                    report.sip_messages_deleted_for.len(),
                    report.noncall_messages_deleted,
                    report.held_calls_kept
                );
                for f in &report.failures {
                    println!("  could not remove: {}", esc(f));
                }
            }
            if !report.failures.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
        RetentionCommand::Holds { db, json } => {
            let conn = calllog::open_reader(&db, log_url)?;
            let holds = retention::holds(&conn)?;
            if json {
                return crate::print_json(&holds);
            }
            for h in &holds {
                println!(
                    "call {:<6} {} by {}: {}",
                    h.call,
                    query::iso_utc(h.at),
                    esc(&h.user),
                    esc(&h.reason)
                );
            }
            Ok(())
        }
    }
}
