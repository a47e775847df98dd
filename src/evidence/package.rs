//! Evidence packages (issue 11 item 3): one directory per request holding each call's record,
//! timeline, locations and SIP messages as JSON, its recording, its chain entries, and a
//! manifest listing every file with its SHA-256, who exported it, when and why, signed with
//! the centre's key. A directory rather than an archive: it opens anywhere, the WAVs play as
//! they are, `sha256sum` checks the files by hand, and the signature covers the manifest, so
//! the container adds nothing (tar or zip it to send it; verify it unpacked).

use std::path::{Component, Path, PathBuf};

use crate::calllog::Db;
use anyhow::Context;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use super::keys;
use crate::calllog::access::{AccessAction, AccessEntry, record_access_in};
use crate::calllog::chain::{self, sha256_file, sha256_hex};
use crate::calllog::query::{self, iso_utc};

pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";
pub const FORMAT: &str = "siaga-evidence/1";

/// An export request: from the CLI (`siaga calls export`) or the console.
pub struct ExportRequest<'a> {
    pub calls: &'a [i64],
    /// Why (required): a court order's number, a complaint, a quality review…
    pub reason: &'a str,
    /// Who: `cli:<unix user>` or the console account.
    pub user: &'a str,
    /// From where: `cli`, or the client's IP.
    pub address: &'a str,
    /// The package is created inside this directory.
    pub out_dir: &'a Path,
    pub key_dir: &'a Path,
    pub now_ms: i64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CallNote {
    pub call: i64,
    pub emergency_call_id: Option<String>,
    pub incident_id: Option<String>,
    /// The recording as the log knows it; `recording_file` says what the package holds.
    pub recording_sha256: Option<String>,
    /// included | deleted_by_retention | missing | altered (the file's digest differs from the
    /// log's: included, but not the recording the log vouches for) | unfinished (the call is
    /// live: a partial file, no digest logged yet) | none
    pub recording_file: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub exported_at_ms: i64,
    pub exported_at: String,
    pub exported_by: String,
    pub address: String,
    pub reason: String,
    /// The access-trail entries that record this export, one per call.
    pub access_trail: Vec<i64>,
    /// The call log's chain head when exported.
    pub chain_head: Option<chain::Head>,
    pub calls: Vec<CallNote>,
    pub public_key: String,
    pub files: Vec<FileEntry>,
}

/// Writes one package for the request and records the export on the access trail; returns
/// the package's directory. `conn` must be writable (the access trail).
pub fn export(conn: &Db, req: &ExportRequest<'_>) -> anyhow::Result<PathBuf> {
    let reason = req.reason.trim();
    if reason.is_empty() {
        anyhow::bail!("an export needs a reason (--reason \"…\"): who asked for it and why");
    }
    if req.calls.is_empty() {
        anyhow::bail!("name at least one call to export");
    }
    let mut calls = req.calls.to_vec();
    calls.sort_unstable();
    calls.dedup();
    // Before anything is written: no key, no package.
    let key = keys::load_signing(req.key_dir)?;
    let mut details = Vec::new();
    for &id in &calls {
        let detail =
            query::show(conn, id)?.with_context(|| format!("no call {id} in the call log"))?;
        details.push(detail);
    }
    std::fs::create_dir_all(req.out_dir)
        .with_context(|| format!("creating {}", req.out_dir.display()))?;
    let dir = new_package_dir(req.out_dir, req.now_ms, &calls)?;
    let mut files = Vec::new();
    let mut notes = Vec::new();
    for d in &details {
        let id = d.call.id;
        let base = format!("calls/{id}");
        std::fs::create_dir_all(dir.join(&base))?;
        let mut write_json = |name: &str, value: &dyn erased::Json| -> anyhow::Result<()> {
            let text = value.to_json()?;
            let rel = format!("{base}/{name}");
            std::fs::write(dir.join(&rel), &text)?;
            files.push(FileEntry {
                path: rel,
                sha256: sha256_hex(text.as_bytes()),
                bytes: text.len() as u64,
            });
            Ok(())
        };
        write_json("call.json", &CallJson::from(d))?;
        write_json("timeline.json", &d.events)?;
        write_json("locations.json", &d.locations)?;
        write_json("sip_messages.json", &d.messages)?;
        write_json("chain.json", &chain_json(conn, id)?)?;
        let recording_file = match (&d.call.recording_path, &d.call.recording_sha256) {
            (Some(path), logged) => {
                let rel = format!("{base}/recording.wav");
                match std::fs::copy(path, dir.join(&rel)) {
                    Ok(bytes) => {
                        let sha = sha256_file(&dir.join(&rel))?;
                        let status = match logged {
                            None => "unfinished",
                            Some(l) if *l == sha => "included",
                            Some(_) => "altered",
                        };
                        files.push(FileEntry {
                            path: rel,
                            sha256: sha,
                            bytes,
                        });
                        status
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        if crate::calllog::retention::deleted_by_retention(conn, id, "recording")?
                            .is_some()
                        {
                            "deleted_by_retention"
                        } else {
                            "missing"
                        }
                    }
                    Err(e) => return Err(e).with_context(|| format!("copying {path}")),
                }
            }
            (None, _) => "none",
        };
        notes.push(CallNote {
            call: id,
            emergency_call_id: d.call.emergency_call_id.clone(),
            incident_id: d.call.incident_id.clone(),
            recording_sha256: d.call.recording_sha256.clone(),
            recording_file: recording_file.to_owned(),
        });
    }
    // The export is on the trail before the manifest names its entries.
    let tx = conn.write_transaction()?;
    let mut trail = Vec::new();
    for &id in &calls {
        trail.push(record_access_in(
            &tx,
            &AccessEntry {
                at_ms: req.now_ms,
                user: req.user,
                address: req.address,
                action: AccessAction::Export,
                call: Some(id),
                detail: &format!("package {}: {reason}", dir.display()),
            },
        )?);
    }
    let chain_head = chain::head(&tx)?;
    tx.commit()?;
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        exported_at_ms: req.now_ms,
        exported_at: iso_utc(req.now_ms),
        exported_by: req.user.to_owned(),
        address: req.address.to_owned(),
        reason: reason.to_owned(),
        access_trail: trail,
        chain_head,
        calls: notes,
        public_key: keys::public_hex(&key.verifying_key()),
        files,
    };
    let bytes = serde_json::to_vec_pretty(&manifest)?;
    std::fs::write(dir.join(MANIFEST), &bytes)?;
    std::fs::write(
        dir.join(SIGNATURE),
        format!("{}\n", keys::sign_hex(&key, &bytes)),
    )?;
    Ok(dir)
}

/// `evidence-<UTC time>-call-<ids>`, numbered if taken.
fn new_package_dir(out: &Path, now_ms: i64, calls: &[i64]) -> anyhow::Result<PathBuf> {
    let stamp: String = iso_utc(now_ms)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(15)
        .collect();
    let mut ids: Vec<String> = calls.iter().take(5).map(i64::to_string).collect();
    if calls.len() > 5 {
        ids.push(format!("and{}more", calls.len() - 5));
    }
    let base = format!("evidence-{stamp}Z-call-{}", ids.join("-"));
    for n in 1..1000 {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = out.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    anyhow::bail!("too many packages named {base} in {}", out.display())
}

/// `call.json`: the record without the lists that have files of their own.
#[derive(Serialize)]
struct CallJson<'a> {
    #[serde(flatten)]
    call: &'a query::CallRow,
    outcome: &'a str,
    signals: &'a Option<query::SignalsRow>,
    class: &'a crate::calllog::classes::ClassView,
}

impl<'a> From<&'a query::CallDetail> for CallJson<'a> {
    fn from(d: &'a query::CallDetail) -> Self {
        CallJson {
            call: &d.call,
            outcome: &d.outcome,
            signals: &d.signals,
            class: &d.class,
        }
    }
}

/// The call's chain entries and the canonical JSON its seal's digest was computed from, so
/// a recipient can recompute the digest and compare it with a head the centre published.
fn chain_json(conn: &Db, call: i64) -> anyhow::Result<serde_json::Value> {
    let entries = chain::entries_of_call(conn, call)?;
    Ok(serde_json::json!({
        "entries": entries,
        "canonical_call_record": chain::call_canonical(conn, call)?,
    }))
}

/// Pretty JSON of anything serialisable, behind one object-safe trait.
mod erased {
    pub trait Json {
        fn to_json(&self) -> serde_json::Result<String>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> serde_json::Result<String> {
            serde_json::to_string_pretty(self)
        }
    }
}

/// What `siaga evidence verify` found in a good package.
#[derive(Debug, Serialize)]
pub struct Verified {
    pub files: usize,
    pub calls: Vec<i64>,
    pub exported_by: String,
    pub exported_at: String,
    pub reason: String,
    pub public_key: String,
    /// Whether the key was given (`--key`) rather than taken from the manifest.
    pub key_given: bool,
}

/// Checks a package on any machine, without the call log: the manifest's signature, then
/// every file's size and SHA-256, then that nothing was added. `Err` names the first problem.
pub fn verify(dir: &Path, given: Option<&VerifyingKey>) -> Result<Verified, String> {
    let manifest_bytes = std::fs::read(dir.join(MANIFEST))
        .map_err(|e| format!("{MANIFEST}: cannot be read: {e}"))?;
    let sig = std::fs::read_to_string(dir.join(SIGNATURE))
        .map_err(|e| format!("{SIGNATURE}: cannot be read: {e}"))?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| format!("{MANIFEST}: not a Siaga evidence manifest: {e}"))?;
    let named = keys::parse_public_hex(&manifest.public_key)
        .map_err(|e| format!("{MANIFEST}: public_key: {e:#}"))?;
    let key = match given {
        Some(k) if *k != named => {
            return Err(format!(
                "{MANIFEST}: signed for key {}, not the key given",
                manifest.public_key
            ));
        }
        Some(k) => *k,
        None => named,
    };
    if !keys::check(&key, &manifest_bytes, &sig) {
        return Err(format!(
            "{SIGNATURE}: the signature does not match {MANIFEST} (the manifest or the signature was changed)"
        ));
    }
    if manifest.format != FORMAT {
        return Err(format!(
            "{MANIFEST}: format {:?}, expected {FORMAT}",
            manifest.format
        ));
    }
    let mut listed = std::collections::HashSet::new();
    for f in &manifest.files {
        let rel = Path::new(&f.path);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(format!("{}: not a path inside the package", f.path));
        }
        let path = dir.join(rel);
        let meta = std::fs::metadata(&path).map_err(|e| format!("{}: missing ({e})", f.path))?;
        if meta.len() != f.bytes {
            return Err(format!(
                "{}: {} bytes, the manifest says {}",
                f.path,
                meta.len(),
                f.bytes
            ));
        }
        let sha = sha256_file(&path).map_err(|e| format!("{}: cannot be read: {e}", f.path))?;
        if sha != f.sha256 {
            return Err(format!(
                "{}: SHA-256 {sha} differs from the manifest's {} (the file was changed)",
                f.path, f.sha256
            ));
        }
        listed.insert(rel.to_path_buf());
    }
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let entries = std::fs::read_dir(dir.join(&rel))
            .map_err(|e| format!("{}: cannot be listed: {e}", rel.display()))?;
        for entry in entries.flatten() {
            let child = rel.join(entry.file_name());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(child);
            } else if child != Path::new(MANIFEST)
                && child != Path::new(SIGNATURE)
                && !listed.contains(&child)
            {
                return Err(format!(
                    "{}: not in the manifest (added after the export)",
                    child.display()
                ));
            }
        }
    }
    Ok(Verified {
        files: manifest.files.len(),
        calls: manifest.calls.iter().map(|c| c.call).collect(),
        exported_by: manifest.exported_by,
        exported_at: manifest.exported_at,
        reason: manifest.reason,
        public_key: manifest.public_key,
        key_given: given.is_some(),
    })
}
