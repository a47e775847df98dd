//! The tamper-evident chain (issue 11 item 4). Each finished call record, each recording
//! digest and each access-trail entry becomes an `audit_chain` row, written in the same
//! transaction as what it covers, holding the SHA-256 of the subject's canonical JSON and a
//! hash over the previous row's hash: changing, deleting or inserting anything covered breaks
//! either a digest or the links. A call's SIP messages enter by their digest, and a recording
//! by its path and digest, so retention may delete the bytes and the chain still verifies.
//!
//! What it cannot stop: someone with write access to the database can recompute the whole
//! chain. The signed head (`siaga audit head`), printed or kept elsewhere, is the anchor that
//! catches that: `siaga audit verify --head FILE` checks the chain still holds it.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{OptionalExtension, params};

use super::store::Db;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How long after its end a call is sealed: its last retransmitted BYE (Timer J, 64 × T1)
/// and the outcome of restart BYEs are logged by then.
pub const SEAL_DELAY_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainKind {
    Call,
    Recording,
    Access,
}

impl ChainKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChainKind::Call => "call",
            ChainKind::Recording => "recording",
            ChainKind::Access => "access",
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash of an entry: over every field, each on its own line.
pub fn entry_hash(prev: &str, seq: i64, at: i64, kind: &str, subject: i64, digest: &str) -> String {
    sha256_hex(format!("{prev}\n{seq}\n{at}\n{kind}\n{subject}\n{digest}").as_bytes())
}

/// The newest entry.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub at: i64,
    pub hash: String,
}

pub fn head(conn: &Db) -> rusqlite::Result<Option<Head>> {
    conn.query_row(
        "SELECT seq, at, hash FROM audit_chain ORDER BY seq DESC LIMIT 1",
        [],
        |r| {
            Ok(Head {
                seq: r.get(0)?,
                at: r.get(1)?,
                hash: r.get(2)?,
            })
        },
    )
    .optional()
}

/// One row of the chain.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub subject: i64,
    pub digest: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The entries matching an SQL condition, in chain order.
fn entries_where(
    conn: &Db,
    condition: &str,
    values: impl rusqlite::Params,
) -> rusqlite::Result<Vec<Entry>> {
    conn.prepare(&format!(
        "SELECT seq, at, kind, subject, digest, prev_hash, hash FROM audit_chain
         WHERE {condition} ORDER BY seq"
    ))?
    .query_map(values, |r| {
        Ok(Entry {
            seq: r.get(0)?,
            at: r.get(1)?,
            kind: r.get(2)?,
            subject: r.get(3)?,
            digest: r.get(4)?,
            prev_hash: r.get(5)?,
            hash: r.get(6)?,
        })
    })?
    .collect()
}

/// A call's entries: its seal and its recording's.
pub fn entries_of_call(conn: &Db, call: i64) -> rusqlite::Result<Vec<Entry>> {
    entries_where(
        conn,
        "kind IN ('call', 'recording') AND subject = ?1",
        params![call],
    )
}

/// Appends an entry; the caller's transaction holds the write lock (the seq and the link are
/// read inside it). Returns its seq.
pub fn append(
    conn: &Db,
    at: i64,
    kind: ChainKind,
    subject: i64,
    digest: &str,
) -> rusqlite::Result<i64> {
    // Nodes sharing a PostgreSQL append to one chain: no other may read the same head.
    conn.lock_for_append("audit_chain")?;
    let (seq, prev) = match head(conn)? {
        Some(h) => (h.seq + 1, h.hash),
        None => (1, GENESIS.to_owned()),
    };
    let hash = entry_hash(&prev, seq, at, kind.as_str(), subject, digest);
    conn.execute(
        "INSERT INTO audit_chain (seq, at, kind, subject, digest, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![seq, at, kind.as_str(), subject, digest, prev, hash],
    )?;
    Ok(seq)
}

/// The call's canonical JSON: its row (without the recording, chained on its own), timeline,
/// locations and SIP messages (each by the SHA-256 of its bytes); `None` without a row.
pub fn call_canonical(conn: &Db, call: i64) -> rusqlite::Result<Option<serde_json::Value>> {
    use rusqlite::types::Value as Sql;
    let to_json = |v: Sql| match v {
        Sql::Null => serde_json::Value::Null,
        Sql::Integer(i) => i.into(),
        Sql::Real(f) => f.into(),
        Sql::Text(t) => t.into(),
        Sql::Blob(b) => sha256_hex(&b).into(),
    };
    const COLUMNS: [&str; 21] = [
        "id",
        "call_id",
        "started_at",
        "answered_at",
        "ended_at",
        "kind",
        "dialled",
        "entry",
        "caller_from",
        "caller_pai",
        "caller_privacy",
        "caller_contact",
        "caller_user_agent",
        "caller_rpid",
        "source",
        "transport",
        "end_reason",
        "end_detail",
        "emergency_call_id",
        "incident_id",
        "caller_number",
    ];
    let row = conn
        .query_row(
            &format!("SELECT {} FROM calls WHERE id = ?1", COLUMNS.join(", ")),
            params![call],
            |r| {
                let mut map = serde_json::Map::new();
                for (i, name) in COLUMNS.iter().enumerate() {
                    map.insert((*name).to_owned(), to_json(r.get(i)?));
                }
                Ok(map)
            },
        )
        .optional()?;
    let Some(row) = row else {
        return Ok(None);
    };
    let events: Vec<serde_json::Value> = conn
        .prepare_cached("SELECT id, at, kind, detail FROM call_events WHERE call = ?1 ORDER BY id")?
        .query_map(params![call], |r| {
            Ok(serde_json::json!({
                "id": r.get::<_, i64>(0)?, "at": r.get::<_, i64>(1)?,
                "kind": r.get::<_, String>(2)?, "detail": r.get::<_, String>(3)?,
            }))
        })?
        .collect::<Result<_, _>>()?;
    let locations: Vec<serde_json::Value> = conn
        .prepare_cached(
            "SELECT id, at, source, summary, report FROM call_locations WHERE call = ?1 ORDER BY id",
        )?
        .query_map(params![call], |r| {
            Ok(serde_json::json!({
                "id": r.get::<_, i64>(0)?, "at": r.get::<_, i64>(1)?,
                "source": r.get::<_, String>(2)?, "summary": r.get::<_, String>(3)?,
                "report": r.get::<_, String>(4)?,
            }))
        })?
        .collect::<Result<_, _>>()?;
    let messages: Vec<serde_json::Value> = conn
        .prepare_cached(
            "SELECT id, at, leg, direction, transport, local, remote, first_line, note, raw,
                raw_sha256 FROM sip_messages WHERE call = ?1 ORDER BY id",
        )?
        .query_map(params![call], |r| {
            let raw: Vec<u8> = r.get(9)?;
            // Retention replaced the bytes by their digest.
            let digest: Option<String> = r.get(10)?;
            Ok(serde_json::json!({
                "id": r.get::<_, i64>(0)?, "at": r.get::<_, i64>(1)?,
                "leg": r.get::<_, String>(2)?, "direction": r.get::<_, String>(3)?,
                "transport": r.get::<_, String>(4)?, "local": r.get::<_, String>(5)?,
                "remote": r.get::<_, String>(6)?, "first_line": r.get::<_, String>(7)?,
                "note": r.get::<_, Option<String>>(8)?,
                "sha256": digest.unwrap_or_else(|| sha256_hex(&raw)),
            }))
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(serde_json::json!({
        "call": row, "events": events, "locations": locations, "sip_messages": messages,
    })))
}

fn call_digest(conn: &Db, call: i64) -> rusqlite::Result<Option<String>> {
    Ok(call_canonical(conn, call)?.map(|v| sha256_hex(v.to_string().as_bytes())))
}

/// A recording as the log knows it: path, digest and length (`None` without a finished one).
fn recording_canonical(conn: &Db, call: i64) -> rusqlite::Result<Option<(String, String)>> {
    let row: Option<(Option<String>, Option<String>, Option<i64>)> = conn
        .query_row(
            "SELECT recording_path, recording_sha256, recording_ms FROM calls WHERE id = ?1",
            params![call],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(match row {
        Some((Some(path), Some(sha), ms)) => {
            let value = serde_json::json!({"call": call, "path": path, "sha256": sha, "ms": ms});
            Some((path, sha256_hex(value.to_string().as_bytes())))
        }
        _ => None,
    })
}

/// Seals a finished call: one `call` entry for its record as it stands, in the caller's
/// transaction. Idempotent.
pub fn seal_call(conn: &Db, call: i64, at: i64) -> rusqlite::Result<()> {
    // Before looking: two nodes sealing the same call (after a node was lost) seal it once.
    conn.lock_for_append("audit_chain")?;
    let sealed: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM audit_chain WHERE kind = 'call' AND subject = ?1)",
        params![call],
        |r| r.get(0),
    )?;
    if sealed {
        return Ok(());
    }
    if let Some(digest) = call_digest(conn, call)? {
        append(conn, at, ChainKind::Call, call, &digest)?;
    }
    Ok(())
}

/// Chains the call's finished recording (path, digest, length).
pub fn chain_recording(conn: &Db, call: i64, at: i64) -> rusqlite::Result<()> {
    if let Some((_, digest)) = recording_canonical(conn, call)? {
        append(conn, at, ChainKind::Recording, call, &digest)?;
    }
    Ok(())
}

/// Ended calls without a seal (left by a crash or a stop before their seal was due).
pub fn unsealed_ended_calls(conn: &Db) -> rusqlite::Result<Vec<i64>> {
    conn.prepare(
        "SELECT id FROM calls WHERE ended_at IS NOT NULL AND NOT EXISTS
            (SELECT 1 FROM audit_chain c WHERE c.kind = 'call' AND c.subject = calls.id)
         ORDER BY id",
    )?
    .query_map([], |r| r.get(0))?
    .collect()
}

/// SHA-256 (hex) of a file, read in blocks.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    sha256_reader(std::fs::File::open(path)?).map(|(_, sha)| sha)
}

/// The SHA-256 (hex) of everything `reader` yields, and how many bytes that was.
pub fn sha256_reader(mut reader: impl std::io::Read) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok((total, hex(&hasher.finalize())))
}

/// What `siaga audit verify` found.
#[derive(Debug, Default, Serialize)]
pub struct Verification {
    pub entries: i64,
    pub calls: i64,
    pub recordings: i64,
    pub access_entries: i64,
    /// Recordings deleted by retention (their digest still chained).
    pub recordings_deleted_by_retention: i64,
    /// Recordings of other nodes' calls on a shared log: on their disks, not re-hashed here
    /// (their chain entries and logged digests are checked).
    pub recordings_on_other_nodes: i64,
    /// Calls ended too recently to be sealed yet.
    pub calls_awaiting_seal: Vec<i64>,
    pub head: Option<Head>,
    /// Every problem, the first one first.
    pub problems: Vec<String>,
}

/// At most this many problems are listed (the first one is what matters).
const MAX_PROBLEMS: usize = 1000;

/// Walks the chain: links and hashes, then each entry's subject against the log and the
/// recording files, then what the log holds that the chain does not cover. On node `here` of
/// a shared log only the recordings of its own calls (and of calls logged without a node)
/// are re-hashed: the files of the others are on their nodes (`None`: every one).
pub fn verify(conn: &Db, now_ms: i64, here: Option<&str>) -> rusqlite::Result<Verification> {
    let mut v = Verification::default();
    let mut problem = |v: &mut Verification, text: String| {
        if v.problems.len() < MAX_PROBLEMS {
            v.problems.push(text);
        }
    };
    let rows = entries_where(conn, "1 = 1", [])?;
    // The latest recording entry of each call is the one its file is checked against.
    let mut last_recording: HashMap<i64, i64> = HashMap::new();
    for Entry {
        seq, kind, subject, ..
    } in &rows
    {
        if kind == "recording" {
            last_recording.insert(*subject, *seq);
        }
    }
    let mut prev = GENESIS.to_owned();
    let mut expected = 1;
    for Entry {
        seq,
        at,
        kind,
        subject,
        digest,
        prev_hash,
        hash,
    } in &rows
    {
        v.entries += 1;
        if *seq != expected {
            problem(
                &mut v,
                format!(
                    "entry #{expected}: missing (the chain jumps from #{} to #{seq}): deleted",
                    expected - 1
                ),
            );
        }
        expected = seq + 1;
        if *prev_hash != prev {
            problem(
                &mut v,
                format!(
                    "entry #{seq}: does not link to the entry before it (changed, or inserted out of order)"
                ),
            );
        }
        if entry_hash(prev_hash, *seq, *at, kind, *subject, digest) != *hash {
            problem(
                &mut v,
                format!(
                    "entry #{seq}: its own hash does not match its fields (the entry was edited)"
                ),
            );
        }
        prev = hash.clone();
        match kind.as_str() {
            "call" => {
                v.calls += 1;
                match call_digest(conn, *subject)? {
                    None => problem(
                        &mut v,
                        format!("entry #{seq}: call {subject}'s record is missing (deleted)"),
                    ),
                    Some(d) if d != *digest => problem(
                        &mut v,
                        format!(
                            "entry #{seq}: call {subject}'s record (row, timeline, locations or SIP messages) was changed after it was sealed"
                        ),
                    ),
                    Some(_) => {}
                }
            }
            "recording" => {
                v.recordings += 1;
                let latest = last_recording.get(subject) == Some(seq);
                let row_exists: bool = conn.query_row(
                    "SELECT EXISTS (SELECT 1 FROM calls WHERE id = ?1)",
                    params![subject],
                    |r| r.get(0),
                )?;
                match recording_canonical(conn, *subject)? {
                    _ if !row_exists => problem(
                        &mut v,
                        format!(
                            "entry #{seq}: call {subject}'s record is missing (deleted), with its recording's digest"
                        ),
                    ),
                    None if latest => problem(
                        &mut v,
                        format!(
                            "entry #{seq}: call {subject}'s recording digest was removed from the log"
                        ),
                    ),
                    Some((_, d)) if latest && d != *digest => problem(
                        &mut v,
                        format!(
                            "entry #{seq}: call {subject}'s recording path, digest or length was changed in the log"
                        ),
                    ),
                    Some(_) if latest && elsewhere(conn, *subject, here)?.is_some() => {
                        v.recordings_on_other_nodes += 1
                    }
                    Some((path, _)) if latest => {
                        check_recording_file(conn, &mut v, *seq, *subject, &path, &mut problem)?
                    }
                    _ => {}
                }
            }
            "access" => {
                v.access_entries += 1;
                match super::access::access_by_seq(conn, *subject)? {
                    None => problem(
                        &mut v,
                        format!("entry #{seq}: access-trail entry {subject} is missing (deleted)"),
                    ),
                    Some(row) if super::access::access_digest(&row) != *digest => problem(
                        &mut v,
                        format!("entry #{seq}: access-trail entry {subject} was changed"),
                    ),
                    Some(_) => {}
                }
            }
            other => problem(&mut v, format!("entry #{seq}: unknown kind {other:?}")),
        }
    }
    for seq in super::access::unchained(conn)? {
        problem(
            &mut v,
            format!("access-trail entry {seq} is not in the chain (added outside Siaga)"),
        );
    }
    let ended: Vec<(i64, i64)> = conn
        .prepare(
            "SELECT id, ended_at FROM calls WHERE ended_at IS NOT NULL AND NOT EXISTS
                (SELECT 1 FROM audit_chain c WHERE c.kind = 'call' AND c.subject = calls.id)
             ORDER BY id",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (call, ended_at) in ended {
        // A live gateway seals a call a minute after its end (ten minutes for a call a
        // crash left open, closed at start).
        if now_ms - ended_at < 10 * SEAL_DELAY_MS {
            v.calls_awaiting_seal.push(call);
        } else {
            problem(
                &mut v,
                format!(
                    "call {call} is not in the chain (added outside the gateway, or its seal was deleted)"
                ),
            );
        }
    }
    let unchained_recordings: Vec<i64> = conn
        .prepare(
            "SELECT id FROM calls WHERE recording_sha256 IS NOT NULL AND NOT EXISTS
                (SELECT 1 FROM audit_chain c WHERE c.kind = 'recording' AND c.subject = calls.id)
             ORDER BY id",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for call in unchained_recordings {
        problem(
            &mut v,
            format!("call {call}'s recording digest is not in the chain (set outside the gateway)"),
        );
    }
    v.head = head(conn)?;
    Ok(v)
}

/// Re-hashes one chained recording; a file retention deleted is fine when the deletion is
/// on the access trail.
fn check_recording_file(
    conn: &Db,
    v: &mut Verification,
    seq: i64,
    call: i64,
    path: &str,
    problem: &mut impl FnMut(&mut Verification, String),
) -> rusqlite::Result<()> {
    let logged_sha: Option<String> = conn.query_row(
        "SELECT recording_sha256 FROM calls WHERE id = ?1",
        params![call],
        |r| r.get(0),
    )?;
    match sha256_file(Path::new(path)) {
        Ok(sha) if Some(&sha) == logged_sha.as_ref() => {}
        Ok(_) => problem(
            v,
            format!(
                "entry #{seq}: call {call}'s recording {path} was altered (its SHA-256 differs from the chained one)"
            ),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if super::retention::deleted_by_retention(conn, call, "recording")?.is_some() {
                v.recordings_deleted_by_retention += 1;
            } else {
                problem(
                    v,
                    format!(
                        "entry #{seq}: call {call}'s recording {path} is missing (deleted, not by retention)"
                    ),
                );
            }
        }
        Err(e) => problem(
            v,
            format!("entry #{seq}: call {call}'s recording {path} cannot be read: {e}"),
        ),
    }
    Ok(())
}

/// One recording in `siaga recordings verify`.
#[derive(Debug, Serialize)]
pub struct RecordingCheck {
    pub call: i64,
    pub path: String,
    /// ok | missing | altered | deleted_by_retention | unreadable | unfinished | other_node (a
    /// shared log: the file is on the call's node) | unknown (a WAV in the recordings
    /// directory no call has; `call` is 0)
    pub status: &'static str,
    pub detail: String,
}

/// The node a call's files are on when it is not `here` (`None`: here, or a single gateway).
fn elsewhere(conn: &Db, call: i64, here: Option<&str>) -> rusqlite::Result<Option<String>> {
    let Some(here) = here else {
        return Ok(None);
    };
    let node: Option<String> = conn
        .query_row("SELECT node FROM calls WHERE id = ?1", params![call], |r| {
            r.get(0)
        })
        .optional()?
        .flatten();
    Ok(node.filter(|n| n != here))
}

/// Re-hashes every recording the log knows against its logged digest; on node `here` of a
/// shared log, other nodes' recordings are listed as `other_node`, not re-hashed.
pub fn check_recordings(conn: &Db, here: Option<&str>) -> rusqlite::Result<Vec<RecordingCheck>> {
    let rows: Vec<(i64, String, Option<String>, Option<String>)> = conn
        .prepare(
            "SELECT id, recording_path, recording_sha256, node FROM calls
             WHERE recording_path IS NOT NULL ORDER BY id",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (call, path, logged, node) in rows {
        if let (Some(here), Some(node)) = (here, &node)
            && node != here
        {
            out.push(RecordingCheck {
                call,
                path,
                status: "other_node",
                detail: format!("on node {node}: run recordings verify there"),
            });
            continue;
        }
        let (status, detail) = match (&logged, sha256_file(Path::new(&path))) {
            (None, _) => (
                "unfinished",
                "no digest logged (live, or never finished)".to_owned(),
            ),
            (Some(l), Ok(sha)) if *l == sha => ("ok", sha),
            (Some(l), Ok(sha)) => ("altered", format!("sha256 {sha}, logged {l}")),
            (Some(_), Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                match super::retention::deleted_by_retention(conn, call, "recording")? {
                    Some(at) => (
                        "deleted_by_retention",
                        format!("deleted by retention at {}", super::query::iso_utc(at)),
                    ),
                    None => ("missing", "no such file".to_owned()),
                }
            }
            (Some(_), Err(e)) => ("unreadable", e.to_string()),
        };
        out.push(RecordingCheck {
            call,
            path,
            status,
            detail,
        });
    }
    Ok(out)
}

/// WAV files under `dir` that no call's recording is: put there from outside (a recording
/// the log would vouch for is never among them).
pub fn unknown_recordings(conn: &Db, dir: &Path) -> anyhow::Result<Vec<RecordingCheck>> {
    let known: std::collections::HashSet<std::path::PathBuf> = conn
        .prepare("SELECT recording_path FROM calls WHERE recording_path IS NOT NULL")?
        .query_map([], |r| r.get::<_, String>(0))?
        .filter_map(|p| p.ok().and_then(|p| std::fs::canonicalize(p).ok()))
        .collect();
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let entries = std::fs::read_dir(&d)
            .map_err(|e| anyhow::anyhow!("recordings directory {}: {e}", d.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                // <recordings>/<day>/call-….wav: no deeper.
                if depth < 2 {
                    stack.push((path, depth + 1));
                }
            } else if path.extension().is_some_and(|e| e == "wav")
                && !std::fs::canonicalize(&path).is_ok_and(|p| known.contains(&p))
            {
                out.push(RecordingCheck {
                    call: 0,
                    path: path.to_string_lossy().into_owned(),
                    status: "unknown",
                    detail: "no call in the log has this recording (added from outside)".to_owned(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use siaga_engine::ids::CallRef;
    use siaga_engine::io::LogRecord;

    use super::*;
    use crate::calllog::access::{AccessAction, AccessEntry, record_access};
    use crate::calllog::testing::{Store, TestLog};

    const HOUR: i64 = 3_600_000;

    fn insert_call(conn: &Db, id: i64, ended: Option<i64>) {
        conn.execute(
            "INSERT INTO calls (id, call_id, started_at, ended_at, kind, dialled, source, transport)
             VALUES (?1, 'c', 1000, ?2, 'emergency', 'sip:112@gw', '192.0.2.1:5060', 'udp')",
            params![id, ended],
        )
        .expect("call");
        conn.execute(
            "INSERT INTO sip_messages (call, at, direction, transport, local, remote, first_line, raw, leg)
             VALUES (?1, 1000, 'in', 'udp', 'a', 'b', 'INVITE sip:112@gw SIP/2.0', ?2, 'A')",
            params![id, b"INVITE".to_vec()],
        )
        .expect("message");
        conn.execute(
            "INSERT INTO call_events (call, at, kind, detail) VALUES (?1, 1001, 'answered', '')",
            params![id],
        )
        .expect("event");
    }

    /// As the writer seals: inside its transaction.
    fn seal(conn: &Db, call: i64, at: i64) -> rusqlite::Result<()> {
        let tx = conn.write_transaction()?;
        seal_call(&tx, call, at)?;
        tx.commit()
    }

    fn access(conn: &Db, detail: &str) {
        record_access(
            conn,
            &AccessEntry {
                at_ms: 5,
                user: "sari",
                address: "cli",
                action: AccessAction::CallView,
                call: Some(1),
                detail,
            },
        )
        .expect("access");
    }

    fn first_problem(conn: &Db) -> String {
        verify(conn, 100 * HOUR, None)
            .expect("verify")
            .problems
            .first()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn verify_names_the_entry_that_was_edited_deleted_or_linked_out_of_order() {
        verify_names_the_entry_that_was_edited_deleted_or_linked_out_of_order_on(Store::Sqlite)
    }

    #[test]
    fn verify_names_the_entry_that_was_edited_deleted_or_linked_out_of_order_on_postgres() {
        verify_names_the_entry_that_was_edited_deleted_or_linked_out_of_order_on(Store::Postgres)
    }

    fn verify_names_the_entry_that_was_edited_deleted_or_linked_out_of_order_on(store: Store) {
        let log = TestLog::new(store);
        let conn = log.open();
        insert_call(&conn, 1, Some(2000));
        seal(&conn, 1, 3000).expect("seal");
        seal(&conn, 1, 3001).expect("sealed once");
        access(&conn, "first");
        access(&conn, "second");
        let v = verify(&conn, 100 * HOUR, None).expect("verify");
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!((v.entries, v.calls, v.access_entries), (3, 1, 2));

        // A SIP message's bytes.
        conn.execute(
            "UPDATE sip_messages SET raw = ?1 WHERE call = 1",
            [b"A".to_vec()],
        )
        .expect("edit");
        assert_eq!(
            first_problem(&conn),
            "entry #1: call 1's record (row, timeline, locations or SIP messages) was changed after it was sealed"
        );
        conn.execute(
            "UPDATE sip_messages SET raw = ?1 WHERE call = 1",
            [b"INVITE".to_vec()],
        )
        .expect("restore");
        // Retention's form of the same message (bytes replaced by their digest) is the same record.
        conn.execute(
            "UPDATE sip_messages SET raw = ?2, raw_sha256 = ?1 WHERE call = 1",
            params![sha256_hex(b"INVITE"), Vec::<u8>::new()],
        )
        .expect("strip");
        assert_eq!(first_problem(&conn), "");

        // An ended call nobody sealed, ten minutes on.
        insert_call(&conn, 2, Some(2000));
        assert_eq!(
            first_problem(&conn),
            "call 2 is not in the chain (added outside the gateway, or its seal was deleted)"
        );
        seal(&conn, 2, 4000).expect("seal");
        assert_eq!(first_problem(&conn), "");

        // The chain's own entries: an edited one, a deleted one.
        conn.execute("UPDATE audit_chain SET at = 7 WHERE seq = 2", [])
            .expect("edit");
        assert_eq!(
            first_problem(&conn),
            "entry #2: its own hash does not match its fields (the entry was edited)"
        );
        conn.execute("UPDATE audit_chain SET at = 5 WHERE seq = 2", [])
            .expect("restore");
        conn.execute("DELETE FROM audit_chain WHERE seq = 2", [])
            .expect("delete");
        let v = verify(&conn, 100 * HOUR, None).expect("verify");
        assert_eq!(
            v.problems[..2],
            [
                "entry #2: missing (the chain jumps from #1 to #3): deleted".to_owned(),
                "entry #3: does not link to the entry before it (changed, or inserted out of order)"
                    .to_owned()
            ]
        );
        assert!(
            v.problems.contains(
                &"access-trail entry 1 is not in the chain (added outside Siaga)".to_owned()
            ),
            "{:?}",
            v.problems
        );
    }

    /// On a shared log a node re-hashes the recordings on its own disk; another node's call's
    /// recording is left to that node, not called missing.
    #[test]
    fn another_nodes_recordings_are_left_to_it() {
        let log = TestLog::new(Store::Postgres);
        let conn = log.open();
        insert_call(&conn, 1, Some(2000));
        conn.execute(
            "UPDATE calls SET node = 'b', recording_path = '/nowhere/call-1.wav',
                recording_sha256 = ?1, recording_ms = 0 WHERE id = 1",
            [sha256_hex(b"")],
        )
        .expect("recording");
        let tx = conn.write_transaction().expect("tx");
        seal_call(&tx, 1, 3000).expect("seal");
        chain_recording(&tx, 1, 3000).expect("chain");
        tx.commit().expect("commit");
        let here = verify(&conn, 100 * HOUR, Some("a")).expect("verify");
        assert!(here.problems.is_empty(), "{:?}", here.problems);
        assert_eq!(here.recordings_on_other_nodes, 1);
        assert_eq!(
            first_problem(&conn),
            "entry #2: call 1's recording /nowhere/call-1.wav is missing (deleted, not by retention)"
        );
        let checks = check_recordings(&conn, Some("a")).expect("checks");
        assert_eq!(checks[0].status, "other_node");
        assert_eq!(
            check_recordings(&conn, Some("b")).expect("checks")[0].status,
            "missing"
        );
    }

    #[test]
    fn the_writer_seals_an_ended_call_and_chains_its_recording_digest() {
        the_writer_seals_an_ended_call_and_chains_its_recording_digest_on(Store::Sqlite)
    }

    #[test]
    fn the_writer_seals_an_ended_call_and_chains_its_recording_digest_on_postgres() {
        the_writer_seals_an_ended_call_and_chains_its_recording_digest_on(Store::Postgres)
    }

    fn the_writer_seals_an_ended_call_and_chains_its_recording_digest_on(store: Store) {
        let dir = tempfile::tempdir().expect("dir");
        let test_log = TestLog::new(store);
        let conn = test_log.open();
        insert_call(&conn, 1, None);
        let (log, writer, _) = test_log.start();
        log.engine(
            2000,
            LogRecord::CallEnded {
                call: CallRef(1),
                reason: siaga_engine::call::EndReason::CallerHungUp,
                detail: None,
            },
        );
        log.send(crate::calllog::Write::Recording {
            call: 1,
            path: dir.path().join("1.wav").to_string_lossy().into_owned(),
            sha256: Some(sha256_hex(b"")),
            duration_ms: Some(0),
        });
        std::fs::write(dir.path().join("1.wav"), b"").expect("wav");
        assert!(log.barrier(Duration::from_secs(10)));
        // Written, not sealed yet: the seal waits for late messages.
        let kinds = |conn: &Db| -> Vec<String> {
            conn.prepare("SELECT kind FROM audit_chain ORDER BY seq")
                .expect("query")
                .query_map([], |r| r.get(0))
                .expect("rows")
                .collect::<Result<_, _>>()
                .expect("rows")
        };
        assert_eq!(kinds(&conn), ["recording"]);
        // A stop seals it at once.
        drop(log);
        writer.join();
        assert_eq!(kinds(&conn), ["recording", "call"]);
        let v = verify(&conn, crate::calllog::now_ms(), None).expect("verify");
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }
}

/// What sealing and verifying cost (`cargo test --release --bin siaga -- --ignored
/// chain_cost --nocapture`): 10,000 calls of 12 SIP messages (800 bytes each) and 15 events.
#[cfg(test)]
mod cost {
    use std::time::Instant;

    use rusqlite::params;

    use super::{seal_call, verify};

    #[test]
    #[ignore]
    fn chain_cost() {
        let dir = tempfile::tempdir().expect("dir");
        let conn = crate::calllog::open(&dir.path().join("siaga.db")).expect("db");
        const CALLS: i64 = 10_000;
        let raw = vec![b'x'; 800];
        let tx = conn.transaction().expect("tx");
        for id in 1..=CALLS {
            tx.execute(
                "INSERT INTO calls (id, call_id, started_at, ended_at, kind, dialled, source, transport)
                 VALUES (?1, 'c', 1000, 2000, 'emergency', 'sip:112@gw', '192.0.2.1:5060', 'udp')",
                params![id],
            )
            .expect("call");
            for m in 0..12 {
                tx.execute(
                    "INSERT INTO sip_messages (call, at, direction, transport, local, remote, first_line, raw, leg)
                     VALUES (?1, ?2, 'in', 'udp', 'a', 'b', 'INVITE sip:112@gw SIP/2.0', ?3, 'A')",
                    params![id, 1000 + m, raw],
                )
                .expect("message");
            }
            for e in 0..15 {
                tx.execute(
                    "INSERT INTO call_events (call, at, kind, detail) VALUES (?1, ?2, 'prompt', 'welcome')",
                    params![id, 1000 + e],
                )
                .expect("event");
            }
        }
        tx.commit().expect("commit");
        let started = Instant::now();
        let tx = conn.transaction().expect("tx");
        for id in 1..=CALLS {
            seal_call(&tx, id, 3000).expect("seal");
        }
        tx.commit().expect("commit");
        let sealed = started.elapsed();
        let started = Instant::now();
        let v = verify(&conn, 4000, None).expect("verify");
        let verified = started.elapsed();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        println!(
            "{CALLS} calls: sealed in {:.2} s ({:.0} µs per call), verified in {:.2} s",
            sealed.as_secs_f64(),
            sealed.as_secs_f64() * 1e6 / CALLS as f64,
            verified.as_secs_f64()
        );
    }
}
