//! Evidence packages (issue 11 item 3): one directory per request holding each call's record,
//! timeline, locations and SIP messages as JSON, its recording, its chain entries, and a
//! manifest listing every file with its SHA-256, who exported it, when and why, signed with
//! the centre's key. A directory: it opens anywhere, the WAVs play as they are, `sha256sum`
//! checks the files by hand, and the signature covers the manifest, so a container adds
//! nothing. The console sends it as one tar archive of that directory (a browser downloads
//! one file); `verify` checks either form.

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
/// every file's size and SHA-256, then that nothing was added. The package is its directory
/// or a tar archive of it (the console's download). `Err` names the first problem.
pub fn verify(package: &Path, given: Option<&VerifyingKey>) -> Result<Verified, String> {
    if package.is_file() {
        verify_archive(package, given)
    } else {
        verify_dir(package, given)
    }
}

fn verify_dir(dir: &Path, given: Option<&VerifyingKey>) -> Result<Verified, String> {
    let manifest_bytes = std::fs::read(dir.join(MANIFEST))
        .map_err(|e| format!("{MANIFEST}: cannot be read: {e}"))?;
    let sig = std::fs::read_to_string(dir.join(SIGNATURE))
        .map_err(|e| format!("{SIGNATURE}: cannot be read: {e}"))?;
    let manifest = signed_manifest(&manifest_bytes, &sig, given)?;
    let listed = check_listed(&manifest, |rel| {
        let path = dir.join(rel);
        let meta = std::fs::metadata(&path).map_err(|e| format!("missing ({e})"))?;
        let sha = sha256_file(&path).map_err(|e| format!("cannot be read: {e}"))?;
        Ok((meta.len(), sha))
    })?;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let entries = std::fs::read_dir(dir.join(&rel))
            .map_err(|e| format!("{}: cannot be listed: {e}", rel.display()))?;
        for entry in entries.flatten() {
            let child = rel.join(entry.file_name());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(child);
            } else {
                not_added(&listed, &child)?;
            }
        }
    }
    Ok(verified(manifest, given))
}

/// The manifest, if `sig` is its signature by the key it names (and that key is `given`,
/// when one is).
fn signed_manifest(
    manifest_bytes: &[u8],
    sig: &str,
    given: Option<&VerifyingKey>,
) -> Result<Manifest, String> {
    let manifest: Manifest = serde_json::from_slice(manifest_bytes)
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
    if !keys::check(&key, manifest_bytes, sig) {
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
    Ok(manifest)
}

/// Every file the manifest lists, its size and SHA-256 as `actual` finds them (`Err`: why
/// not, e.g. missing), compared with the manifest's; returns the listed paths.
fn check_listed(
    manifest: &Manifest,
    mut actual: impl FnMut(&Path) -> Result<(u64, String), String>,
) -> Result<std::collections::HashSet<PathBuf>, String> {
    let mut listed = std::collections::HashSet::new();
    for f in &manifest.files {
        let rel = Path::new(&f.path);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(format!("{}: not a path inside the package", f.path));
        }
        let (bytes, sha) = actual(rel).map_err(|why| format!("{}: {why}", f.path))?;
        if bytes != f.bytes {
            return Err(format!(
                "{}: {bytes} bytes, the manifest says {}",
                f.path, f.bytes
            ));
        }
        if sha != f.sha256 {
            return Err(format!(
                "{}: SHA-256 {sha} differs from the manifest's {} (the file was changed)",
                f.path, f.sha256
            ));
        }
        listed.insert(rel.to_path_buf());
    }
    Ok(listed)
}

/// A file found in the package must be the manifest, its signature, or listed.
fn not_added(listed: &std::collections::HashSet<PathBuf>, rel: &Path) -> Result<(), String> {
    if rel == Path::new(MANIFEST) || rel == Path::new(SIGNATURE) || listed.contains(rel) {
        Ok(())
    } else {
        Err(format!(
            "{}: not in the manifest (added after the export)",
            rel.display()
        ))
    }
}

fn verified(manifest: Manifest, given: Option<&VerifyingKey>) -> Verified {
    Verified {
        files: manifest.files.len(),
        calls: manifest.calls.iter().map(|c| c.call).collect(),
        exported_by: manifest.exported_by,
        exported_at: manifest.exported_at,
        reason: manifest.reason,
        public_key: manifest.public_key,
        key_given: given.is_some(),
    }
}

/// The largest manifest or signature read from an archive into memory (a manifest lists a
/// few files per call: far below this).
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Writes `dir` (a package) as a tar archive at `out`, its files under the package's name,
/// so that `tar xf` gives back the directory.
pub fn write_archive(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let name = dir
        .file_name()
        .with_context(|| format!("{}: not a package directory", dir.display()))?;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    tar.append_dir_all(name, dir)
        .with_context(|| format!("archiving {}", dir.display()))?;
    let mut writer = tar.into_inner()?;
    std::io::Write::flush(&mut writer)?;
    writer
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok(())
}

/// [`verify`] on a tar archive of a package, read once from start to end: every plain file's
/// size and SHA-256 (the manifest and its signature kept), then the same checks as on a
/// directory. The package may sit in one top directory (as exported) or at the top.
fn verify_archive(path: &Path, given: Option<&VerifyingKey>) -> Result<Verified, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let entries = archive
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?;
    // Each plain file by its path in the archive (`.` components dropped).
    let mut found: std::collections::HashMap<PathBuf, (u64, String)> = Default::default();
    let mut kept: std::collections::HashMap<PathBuf, Vec<u8>> = Default::default();
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("not a readable tar archive: {e}"))?;
        let raw = entry
            .path()
            .map_err(|e| format!("an entry's name cannot be read: {e}"))?
            .into_owned();
        let rel: PathBuf = raw
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect();
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(format!("{}: not a path inside the package", raw.display()));
        }
        match entry.header().entry_type() {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            other => {
                return Err(format!(
                    "{}: not a plain file ({other:?}) in the archive",
                    rel.display()
                ));
            }
        }
        let is_manifest = rel
            .file_name()
            .is_some_and(|n| n == MANIFEST || n == SIGNATURE);
        let digest = if is_manifest {
            let mut bytes = Vec::new();
            (&mut entry)
                .take(MAX_MANIFEST_BYTES)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("{}: cannot be read: {e}", rel.display()))?;
            let digest = (bytes.len() as u64, sha256_hex(&bytes));
            kept.insert(rel.clone(), bytes);
            digest
        } else {
            crate::calllog::chain::sha256_reader(&mut entry)
                .map_err(|e| format!("{}: cannot be read: {e}", rel.display()))?
        };
        if found.insert(rel.clone(), digest).is_some() {
            return Err(format!("{}: twice in the archive", rel.display()));
        }
    }
    // The package's root: where its manifest is.
    let root = if found.contains_key(Path::new(MANIFEST)) {
        PathBuf::new()
    } else {
        let mut roots = found
            .keys()
            .filter(|p| p.file_name().is_some_and(|n| n == MANIFEST) && p.components().count() == 2)
            .filter_map(|p| p.parent().map(Path::to_path_buf));
        match (roots.next(), roots.next()) {
            (Some(root), None) => root,
            (None, _) => return Err(format!("{MANIFEST}: not in the archive")),
            (Some(_), Some(_)) => {
                return Err("more than one package in the archive".to_owned());
            }
        }
    };
    let text = |name: &str| -> Result<&Vec<u8>, String> {
        kept.get(&root.join(name))
            .ok_or_else(|| format!("{name}: not in the archive"))
    };
    let manifest_bytes = text(MANIFEST)?;
    let sig = String::from_utf8_lossy(text(SIGNATURE)?);
    let manifest = signed_manifest(manifest_bytes, &sig, given)?;
    let listed = check_listed(&manifest, |rel| {
        found
            .get(&root.join(rel))
            .cloned()
            .ok_or_else(|| "missing (not in the archive)".to_owned())
    })?;
    let mut names: Vec<&PathBuf> = found.keys().collect();
    names.sort();
    for name in names {
        let rel = name.strip_prefix(&root).map_err(|_| {
            format!(
                "{}: outside the package's directory {}",
                name.display(),
                root.display()
            )
        })?;
        not_added(&listed, rel)?;
    }
    Ok(verified(manifest, given))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signed package of one call by hand (no call log): a "recording" and a record.
    fn package(root: &Path) -> (PathBuf, VerifyingKey) {
        let keys_dir = root.join("keys");
        let public = keys::init(&keys_dir).expect("key");
        let key = keys::load_signing(&keys_dir).expect("key");
        let dir = root.join("evidence-20261205T091317Z-call-7");
        std::fs::create_dir_all(dir.join("calls/7")).expect("dir");
        let mut files = Vec::new();
        for (rel, bytes) in [
            ("calls/7/recording.wav", vec![7u8; 5000]),
            ("calls/7/call.json", b"{\"id\": 7}".to_vec()),
        ] {
            std::fs::write(dir.join(rel), &bytes).expect("file");
            files.push(FileEntry {
                path: rel.to_owned(),
                sha256: sha256_hex(&bytes),
                bytes: bytes.len() as u64,
            });
        }
        let manifest = Manifest {
            format: FORMAT.to_owned(),
            exported_at_ms: 0,
            exported_at: iso_utc(0),
            exported_by: "sri".to_owned(),
            address: "127.0.0.1".to_owned(),
            reason: "a test".to_owned(),
            access_trail: vec![1],
            chain_head: None,
            calls: Vec::new(),
            public_key: keys::public_hex(&public),
            files,
        };
        let bytes = serde_json::to_vec_pretty(&manifest).expect("json");
        std::fs::write(dir.join(MANIFEST), &bytes).expect("manifest");
        std::fs::write(dir.join(SIGNATURE), keys::sign_hex(&key, &bytes)).expect("sig");
        (dir, public)
    }

    /// `dir`'s archive with `extra` (name, bytes) appended as plain files.
    fn archive_with(dir: &Path, out: &Path, extra: &[(&str, &[u8])]) {
        write_archive(dir, out).expect("archive");
        if extra.is_empty() {
            return;
        }
        // Rebuilt with the extra members after the package's own.
        let mut tar = tar::Builder::new(std::fs::File::create(out).expect("file"));
        tar.append_dir_all(dir.file_name().expect("name"), dir)
            .expect("package");
        for (name, bytes) in extra {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, *bytes).expect("extra");
        }
        tar.finish().expect("finish");
    }

    #[test]
    fn an_archive_verifies_like_its_directory_and_names_what_was_changed_or_added() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (dir, key) = package(tmp.path());
        let archive = tmp.path().join("package.tar");
        archive_with(&dir, &archive, &[]);
        let v = verify(&archive, Some(&key)).expect("the archive verifies");
        assert_eq!((v.files, v.reason.as_str()), (2, "a test"));
        verify(&dir, Some(&key)).expect("the directory verifies");

        // One byte of the recording changed inside the archive.
        let mut bytes = std::fs::read(&archive).expect("read");
        let at = bytes
            .windows(64)
            .position(|w| w.iter().all(|&b| b == 7))
            .expect("the recording's bytes");
        bytes[at + 10] ^= 1;
        let changed = tmp.path().join("changed.tar");
        std::fs::write(&changed, &bytes).expect("write");
        let why = verify(&changed, Some(&key)).expect_err("changed");
        assert!(why.starts_with("calls/7/recording.wav: SHA-256"), "{why}");

        // Added files, a second copy of a listed one, a second package: each named.
        let name = dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for (extra, expected) in [
            (
                format!("{name}/calls/7/note.txt"),
                "calls/7/note.txt: not in the manifest",
            ),
            (
                format!("{name}/calls/7/call.json"),
                "/calls/7/call.json: twice in the archive",
            ),
            (
                "elsewhere/readme.txt".to_owned(),
                "elsewhere/readme.txt: outside the package",
            ),
        ] {
            let added = tmp.path().join("added.tar");
            archive_with(&dir, &added, &[(extra.as_str(), b"{\"id\": 8}")]);
            let why = verify(&added, Some(&key)).expect_err(&extra);
            assert!(why.contains(expected), "{extra}: {why}");
        }
        let not_tar = tmp.path().join("not.tar");
        std::fs::write(&not_tar, b"hello").expect("write");
        assert!(verify(&not_tar, Some(&key)).is_err());
    }
}
