//! Schema, migrations and crash recovery for the call log.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::{Connection, params};
use siaga_engine::timeline::CallEventKind;

use super::GatewayEventKind;
use super::store::{Db, Dialect};

/// Schema versions, applied in order; `PRAGMA user_version` (SQLite) or the `schema_version`
/// table (PostgreSQL, see [`postgres_ddl`]) says how many ran. Written in SQLite's dialect;
/// PostgreSQL gets the same text translated mechanically.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE calls (
    id                INTEGER PRIMARY KEY,   -- the gateway's call reference
    call_id           TEXT NOT NULL,         -- SIP Call-ID of the caller's leg
    started_at        INTEGER NOT NULL,      -- UTC, ms since epoch: first INVITE accepted
    answered_at       INTEGER,
    ended_at          INTEGER,
    kind              TEXT NOT NULL,         -- emergency | test | not_emergency
    dialled           TEXT NOT NULL,         -- Request-URI as received
    entry             TEXT,                  -- dialplan entry (menu or route)
    caller_from       TEXT,
    caller_pai        TEXT,                  -- JSON array of P-Asserted-Identity values
    caller_privacy    TEXT,
    caller_contact    TEXT,
    caller_user_agent TEXT,
    caller_rpid       TEXT,
    source            TEXT NOT NULL,         -- caller's address as seen by the gateway
    transport         TEXT NOT NULL,
    end_reason        TEXT,                  -- typed: see EndReason
    end_detail        TEXT,
    recording_path    TEXT,
    recording_sha256  TEXT,
    recording_ms      INTEGER
);
CREATE INDEX calls_started ON calls(started_at);
CREATE INDEX calls_call_id ON calls(call_id);

CREATE TABLE sip_messages (
    id          INTEGER PRIMARY KEY,
    call        INTEGER REFERENCES calls(id),  -- NULL: belongs to no call (OPTIONS, garbage)
    at          INTEGER NOT NULL,
    direction   TEXT NOT NULL,                 -- in | out
    transport   TEXT NOT NULL,
    local       TEXT NOT NULL,
    remote      TEXT NOT NULL,
    first_line  TEXT NOT NULL,
    raw         BLOB NOT NULL,                 -- verbatim bytes
    note        TEXT                           -- e.g. why it was rejected
);
CREATE INDEX sip_messages_call ON sip_messages(call);

CREATE TABLE call_events (
    id      INTEGER PRIMARY KEY,
    call    INTEGER NOT NULL REFERENCES calls(id),
    at      INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX call_events_call ON call_events(call);

CREATE TABLE gateway_events (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    detail  TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE call_locations (
    id       INTEGER PRIMARY KEY,
    call     INTEGER NOT NULL REFERENCES calls(id),
    at       INTEGER NOT NULL,
    source   TEXT NOT NULL,      -- invite | reinvite | update
    summary  TEXT NOT NULL,      -- human-readable, as `siaga calls show` prints it
    report   TEXT NOT NULL       -- JSON: every location, the chosen one, PANI, references, problems
);
CREATE INDEX call_locations_call ON call_locations(call);
"#,
    r#"
ALTER TABLE calls ADD COLUMN emergency_call_id TEXT;   -- NENA i3 emergency-CallId (sent to agencies)
ALTER TABLE calls ADD COLUMN incident_id TEXT;         -- NENA i3 emergency-IncidentId
ALTER TABLE sip_messages ADD COLUMN leg TEXT NOT NULL DEFAULT 'A';  -- A = caller, B1, B2 … = agency legs
"#,
    r#"
-- Start-up recovery looks for these; partial indexes keep that cheap on a large log.
CREATE INDEX calls_open ON calls(id) WHERE ended_at IS NULL;
CREATE INDEX calls_unfinished_recording ON calls(id)
    WHERE recording_path IS NOT NULL AND recording_sha256 IS NULL;
"#,
    r#"
-- How far each spill file (records kept while this database could not be written) has been
-- replayed: updated in the same transaction as the replayed rows.
CREATE TABLE log_spill (
    generation INTEGER PRIMARY KEY,
    consumed   INTEGER NOT NULL   -- file offset of the first record not yet in this database
);
"#,
    r#"
-- What the gateway measured about each call (issue 12), written once after the call's end.
CREATE TABLE call_signals (
    call              INTEGER PRIMARY KEY REFERENCES calls(id),
    digits            INTEGER NOT NULL,   -- keys the caller pressed (RFC 4733, SIP INFO, in-band)
    answered_ms       INTEGER,            -- our answer to the caller's hang-up or the end; NULL: not answered
    agency_talk_ms    INTEGER,            -- time agencies were on the line; NULL: no agency answered
    usable_identity   INTEGER NOT NULL,   -- 1: the From or P-Asserted-Identity user part is a number
    voice_frames      INTEGER,            -- 20 ms frames of caller audio; NULL: not reported
    speech_frames     INTEGER,            -- of those, frames with speech energy
    longest_speech_ms INTEGER             -- the longest run of speech (pauses under 300 ms inside)
);
"#,
    r#"
-- The caller's number as `calls show` reads it (P-Asserted-Identity, else From; digits and a
-- leading +), so that the earlier calls from a number are an indexed count. NULL: none usable,
-- or logged before this column.
ALTER TABLE calls ADD COLUMN caller_number TEXT;
CREATE INDEX calls_caller_number ON calls(caller_number, started_at)
    WHERE caller_number IS NOT NULL;
-- Call classes (issue 12): the rules' class, once, when the call's signals are logged. A call
-- whose signals never came (a crash) has no row: it is unclassified.
CREATE TABLE call_classes (
    call          INTEGER PRIMARY KEY REFERENCES calls(id),
    class         TEXT NOT NULL,      -- genuine | silent | abandoned | pocket_or_noise | repeat | test
    reasons       TEXT NOT NULL,      -- JSON [{rule, class, detail}], the deciding rule first
    rules_version INTEGER NOT NULL,   -- siaga_dialplan::RULES_VERSION
    at            INTEGER NOT NULL
);
CREATE INDEX call_classes_class ON call_classes(class);
-- People's corrections, one row each, never overwriting the rules' class: the latest one is
-- the call's current class.
CREATE TABLE call_class_corrections (
    id         INTEGER PRIMARY KEY,
    call       INTEGER NOT NULL REFERENCES calls(id),
    at         INTEGER NOT NULL,
    by         TEXT NOT NULL,
    from_class TEXT,                  -- the current class before (NULL: unclassified)
    to_class   TEXT NOT NULL,
    why        TEXT NOT NULL
);
CREATE INDEX call_class_corrections_call ON call_class_corrections(call, id);
-- Each call's current class: the latest correction, else the rules' class (NULL: neither).
CREATE VIEW call_current_class AS
SELECT calls.id AS call,
       coalesce((SELECT k.to_class FROM call_class_corrections k
                 WHERE k.call = calls.id ORDER BY k.id DESC LIMIT 1),
                (SELECT c.class FROM call_classes c WHERE c.call = calls.id)) AS class
FROM calls;
"#,
    r#"
-- The supervisors' number lists (issue 12, `siaga numbers`): every change is a row of its own,
-- never updated. A number's latest row says where it is: watched or blocked until expires_at,
-- or taken off (unblock).
CREATE TABLE number_list (
    id         INTEGER PRIMARY KEY,
    number     TEXT NOT NULL,      -- one form: +<country code><digits>, or the digits as dialled
    action     TEXT NOT NULL,      -- watch | block | unblock
    at         INTEGER NOT NULL,   -- UTC ms
    expires_at INTEGER,            -- UTC ms; NULL for unblock
    set_by     TEXT NOT NULL,      -- the supervisor
    why        TEXT NOT NULL
);
CREATE INDEX number_list_number ON number_list(number, id);
"#,
    r#"
-- Several gateway nodes on one PostgreSQL (issue 13): the node that handled each call (NULL:
-- logged before this column), and each node's heartbeat. A node whose heartbeat stops has its
-- open calls closed as node_lost by another node.
ALTER TABLE calls ADD COLUMN node TEXT;
ALTER TABLE gateway_events ADD COLUMN node TEXT;  -- the node that logged the event
CREATE INDEX calls_node_open ON calls(node) WHERE ended_at IS NULL;
CREATE TABLE nodes (
    name         TEXT PRIMARY KEY,
    number       BIGINT NOT NULL UNIQUE,  -- its call references are number × 10^12 + 1, + 2, …
    host         TEXT NOT NULL,           -- the machine it last started on
    pid          BIGINT NOT NULL,         -- its process there
    started_at   BIGINT NOT NULL,         -- UTC ms
    heartbeat_at BIGINT NOT NULL          -- UTC ms, the database's clock
);
"#,
    r#"
CREATE TABLE access_trail (
    seq        BIGINT PRIMARY KEY,   -- 1, 2, 3… in the order written
    at         BIGINT NOT NULL,      -- UTC, ms since epoch
    user_name  TEXT NOT NULL,        -- account; for a failed sign-in the name tried; "cli:<unix user>" from the CLI
    address    TEXT NOT NULL,        -- client IP (no port) for HTTP; "cli" for the command line
    action     TEXT NOT NULL,        -- AccessAction::as_str
    call       BIGINT,               -- calls.id when the entry concerns one call
    detail     TEXT NOT NULL         -- free text: reason of an export, the class set, the user changed…
);
CREATE INDEX access_trail_at ON access_trail(at);
"#,
    r#"
-- The tamper-evident chain (issue 11 item 4): every finished call record, every recording
-- digest and every access-trail entry, each committing to the previous entry's hash.
CREATE TABLE audit_chain (
    seq       BIGINT PRIMARY KEY,   -- 1, 2, 3…
    at        BIGINT NOT NULL,      -- UTC ms when chained
    kind      TEXT NOT NULL,        -- call | recording | access
    subject   BIGINT NOT NULL,      -- calls.id (call, recording) or access_trail.seq (access)
    digest    TEXT NOT NULL,        -- SHA-256 (hex) of the subject's canonical JSON
    prev_hash TEXT NOT NULL,        -- the previous entry's hash (64 zeros for the first)
    hash      TEXT NOT NULL         -- SHA-256 of prev_hash, seq, at, kind, subject, digest
);
CREATE INDEX audit_chain_subject ON audit_chain(kind, subject);
"#,
    r#"
-- Retention (issue 11 item 6): calls a supervisor put on legal hold are never swept; what a
-- sweep deleted stays known (the access-trail entry that records it), and a SIP message whose
-- verbatim bytes were deleted keeps their SHA-256, which the call's chain entry commits to.
CREATE TABLE legal_holds (
    call      BIGINT PRIMARY KEY,
    at        BIGINT NOT NULL,
    user_name TEXT NOT NULL,
    reason    TEXT NOT NULL
);
CREATE TABLE retention_deletions (
    call       BIGINT NOT NULL,
    what       TEXT NOT NULL,       -- recording | sip_messages
    at         BIGINT NOT NULL,
    access_seq BIGINT NOT NULL,     -- the access-trail entry (retention_delete) recording it
    PRIMARY KEY (call, what)
);
ALTER TABLE sip_messages ADD COLUMN raw_sha256 TEXT;   -- set when retention deleted raw
"#,
    r#"
-- `siaga calls show` finds a call by its NENA i3 call or incident id (issue 11 item 2).
CREATE INDEX calls_emergency_call_id ON calls(emergency_call_id);
CREATE INDEX calls_incident_id ON calls(incident_id);
"#,
    r#"
-- The device identity the caller's phone sent (RFC 5626 +sip.instance, e.g. an IMEI URN), so
-- that a device's earlier calls are an indexed count whatever number it calls from (issue 12).
ALTER TABLE calls ADD COLUMN caller_instance TEXT;
CREATE INDEX calls_caller_instance ON calls(caller_instance, started_at)
    WHERE caller_instance IS NOT NULL;
"#,
    r#"
-- The console's accounts (`siaga users`): one row each, the password as an argon2id PHC string.
CREATE TABLE console_users (
    name       TEXT PRIMARY KEY,
    role       TEXT NOT NULL,        -- supervisor | agency | auditor
    routes     TEXT NOT NULL,        -- agency: the dialplan routes it sees, comma-separated; else ''
    password   TEXT NOT NULL,        -- argon2id, PHC string format
    created_at BIGINT NOT NULL,
    changed_at BIGINT NOT NULL
);
"#,
    r#"
-- The console asks of each call in a range whether and when an agency answered and which
-- route it was offered first: a call's events of one kind, their times in the index itself
-- (a week's summary reads tens of thousands of calls' events). It replaces the index on the
-- call alone, which is its first column.
CREATE INDEX call_events_call_kind ON call_events(call, kind, at);
DROP INDEX call_events_call;
"#,
    r#"
-- Voicing (issue 12): of the speech frames, those periodic at a voice's pitch, and the longest
-- run of them, so steady loud noise (speech energy, no voice) is told from a person speaking.
-- NULL: logged before the meter heard voicing.
ALTER TABLE call_signals ADD COLUMN voiced_frames INTEGER;
ALTER TABLE call_signals ADD COLUMN longest_voiced_ms INTEGER;
"#,
];

/// A migration in PostgreSQL's dialect: row ids become identity columns, SQLite's loose
/// INTEGER (64-bit there) becomes BIGINT, BLOB becomes BYTEA, and foreign keys are left out
/// (SQLite does not enforce them either: `foreign_keys` is off, and records may arrive before
/// the row they refer to, from a spill file).
pub(super) fn postgres_ddl(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    for line in sql.lines() {
        let (code, comment) = match line.find("--") {
            Some(i) => line.split_at(i),
            None => (line, ""),
        };
        // A row id (`id  INTEGER PRIMARY KEY`): numbered by the database unless given.
        let code = if code.trim_start().starts_with("id ") {
            code.replace(
                "INTEGER PRIMARY KEY",
                "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            )
        } else {
            code.to_owned()
        };
        let code = code.replace("INTEGER", "BIGINT").replace("BLOB", "BYTEA");
        let code = match code.find(" REFERENCES ") {
            Some(i) => {
                let rest = &code[i + " REFERENCES ".len()..];
                let end = rest.find(')').map_or(rest.len(), |e| e + 1);
                format!("{}{}", &code[..i], &rest[end..])
            }
            None => code,
        };
        out.push_str(&code);
        out.push_str(comment);
        out.push('\n');
    }
    out
}

/// What is wrong with a call-log path, found before anything is opened or created.
#[derive(Debug, thiserror::Error)]
pub enum DbFileError {
    #[error(
        "call log {0}: no such file (check --db / log.db; the gateway creates it, reading commands do not)"
    )]
    Missing(PathBuf),
    #[error("call log {0}: not an SQLite database (wrong file? check --db / log.db)")]
    NotSqlite(PathBuf),
    #[error("call log {path}: directory {dir} does not exist (create it or change --db / log.db)")]
    NoDirectory { path: PathBuf, dir: PathBuf },
    #[error("call log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Checks the file at `path` is an SQLite database: an existing file must start with
/// SQLite's header (an empty file is a new database). `must_exist` is for reading commands,
/// which never create a database.
pub fn check_db_file(path: &Path, must_exist: bool) -> Result<(), DbFileError> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if must_exist {
                return Err(DbFileError::Missing(path.to_path_buf()));
            }
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            if !dir.is_dir() {
                return Err(DbFileError::NoDirectory {
                    path: path.to_path_buf(),
                    dir: dir.to_path_buf(),
                });
            }
            return Ok(());
        }
        Err(source) => {
            return Err(DbFileError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut header = [0u8; 16];
    let mut read = 0;
    while read < header.len() {
        match std::io::Read::read(&mut file, &mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(source) => {
                return Err(DbFileError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
    if read == 0 || header == *b"SQLite format 3\0" {
        Ok(())
    } else {
        Err(DbFileError::NotSqlite(path.to_path_buf()))
    }
}

/// Opens an existing database for reading only (the CLI): never creates or migrates it, and
/// leaves no file behind. With a gateway on it (its `-shm` WAL index exists) it reads
/// through that index; otherwise the database file is the whole log and is read as
/// immutable (SQLite would else create `-wal` and `-shm` files, owned by whoever ran the
/// command).
pub fn open_read_only(path: &Path) -> anyhow::Result<Db> {
    check_db_file(path, true)?;
    if sibling(path, "-shm").exists() {
        open_existing(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY, false).map(Db::from)
    } else {
        open_immutable(path).map(Db::from)
    }
}

/// The call log for a command: the PostgreSQL at `url` when given, else the SQLite file at
/// `path` ([`open_read_only`]). Never creates or migrates it: a gateway does that.
pub fn open_reader(path: &Path, url: Option<&str>) -> anyhow::Result<Db> {
    match url {
        Some(url) => open_postgres_existing(url),
        None => open_read_only(path),
    }
}

/// The PostgreSQL call log at `url`, which a gateway has created at this Siaga's schema.
pub fn open_postgres_existing(url: &str) -> anyhow::Result<Db> {
    let shown = super::store::redacted(url);
    let db =
        Db::connect_postgres(url).with_context(|| format!("connecting to call log {shown}"))?;
    let version = postgres_version(&db).with_context(|| format!("reading call log {shown}"))?;
    match version {
        0 => anyhow::bail!(
            "call log {shown} has no Siaga schema yet: start a gateway on it first (log.url / \
             --log-url), which creates it"
        ),
        v if v > MIGRATIONS.len() => anyhow::bail!(
            "call log {shown} has schema version {v}, newer than this Siaga ({}); use a newer binary",
            MIGRATIONS.len()
        ),
        v if v < MIGRATIONS.len() => anyhow::bail!(
            "call log {shown} has schema version {v}, older than this Siaga ({}): start a \
             gateway of this version on it once (it upgrades the schema)",
            MIGRATIONS.len()
        ),
        _ => Ok(db),
    }
}

/// Connects to the PostgreSQL call log at `url` and brings its schema to this Siaga's
/// version (the gateway's writer).
pub fn open_postgres(url: &str) -> anyhow::Result<Db> {
    let shown = super::store::redacted(url);
    let db =
        Db::connect_postgres(url).with_context(|| format!("connecting to call log {shown}"))?;
    migrate_postgres(&db).with_context(|| format!("migrating call log {shown}"))?;
    Ok(db)
}

/// How many migrations ran on a PostgreSQL call log (0: none, or not a Siaga database).
fn postgres_version(db: &Db) -> rusqlite::Result<usize> {
    let exists: bool = db.query_row(
        "SELECT to_regclass('schema_version') IS NOT NULL",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    let v: i64 = db.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    Ok(usize::try_from(v).unwrap_or(0))
}

/// [`migrate`] for PostgreSQL: each migration in a transaction of its own (PostgreSQL's DDL
/// is transactional) under an advisory lock, so nodes starting together migrate once.
fn migrate_postgres(db: &Db) -> anyhow::Result<()> {
    // Under the lock too: two sessions' CREATE TABLE IF NOT EXISTS at once can both try to
    // create it, and one fails (a gateway and `siaga users add` started together did).
    let tx = db.transaction()?;
    tx.execute_batch(
        "SELECT pg_advisory_xact_lock(112112);
         CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
    )?;
    tx.commit()?;
    if postgres_version(db)? >= MIGRATIONS.len() {
        return Ok(());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let tx = db.transaction()?;
        // Any fixed number: Siaga's schema lock.
        tx.execute_batch("SELECT pg_advisory_xact_lock(112112)")?;
        let now = postgres_version(&tx)?;
        if now > i {
            continue;
        }
        tx.execute_batch(&postgres_ddl(sql))
            .with_context(|| format!("migration {}", i + 1))?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [(i + 1) as i64],
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// Opens an existing database to record people's corrections (`siaga calls classify`),
/// beside a running gateway (WAL). Never creates a database; one written by an older Siaga
/// must be opened by the gateway first, which brings its schema up to date.
pub fn open_for_corrections(path: &Path, url: Option<&str>) -> anyhow::Result<Db> {
    if let Some(url) = url {
        return open_postgres_existing(url);
    }
    check_db_file(path, true)?;
    let conn = open_existing(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE, false)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if usize::try_from(version).unwrap_or(0) < MIGRATIONS.len() {
        anyhow::bail!(
            "call log {} has schema version {version}, older than this Siaga ({}): start the \
             gateway on it once (it upgrades the schema), then correct the class",
            path.display(),
            MIGRATIONS.len()
        );
    }
    Ok(conn.into())
}

/// Reads the database at start-up when its `-shm` index cannot be created (a full disk).
/// With WAL content left by a crash, the index is built in memory, which needs the database
/// to itself (start-up, before the writer); without, the database file is the whole log.
pub fn open_read_only_alone(path: &Path) -> anyhow::Result<Db> {
    check_db_file(path, true)?;
    if std::fs::metadata(sibling(path, "-wal")).is_ok_and(|m| m.len() > 0) {
        // Read-only cannot hold the exclusive lock an in-memory index needs.
        open_existing(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE, true).map(Db::from)
    } else {
        open_immutable(path).map(Db::from)
    }
}

/// `path` with `suffix` appended (`-wal`, `-shm`).
pub(super) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn open_immutable(path: &Path) -> anyhow::Result<Connection> {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '?' | '#' | '%' => uri.push_str(&format!("%{:02X}", c as u32)),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    let conn = Connection::open_with_flags(
        &uri,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening call log {}", path.display()))?;
    check_schema(path, conn)
}

fn open_existing(
    path: &Path,
    flags: rusqlite::OpenFlags,
    exclusive: bool,
) -> anyhow::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_context(|| format!("opening call log {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    if exclusive {
        // Before the first read: no shared-memory index is ever created.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    }
    check_schema(path, conn)
}

fn check_schema(path: &Path, conn: Connection) -> anyhow::Result<Connection> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .with_context(|| format!("reading call log {}", path.display()))?;
    if usize::try_from(version).unwrap_or(0) > MIGRATIONS.len() {
        anyhow::bail!(
            "call log {} has schema version {version}, newer than this Siaga ({}); use a newer binary",
            path.display(),
            MIGRATIONS.len()
        );
    }
    Ok(conn)
}

/// Refuses a database written by a newer Siaga. A database that cannot be read now (disk
/// errors) passes: the writer finds out when it can open it.
pub fn check_version(path: &Path) -> anyhow::Result<()> {
    if std::fs::metadata(path).map_or(true, |m| m.len() == 0) {
        return Ok(());
    }
    match open_read_only(path) {
        Err(e) if e.to_string().contains("newer than this Siaga") => Err(e),
        _ => Ok(()),
    }
}

/// Opens the database with the settings the gateway relies on, migrating it if needed.
pub fn open(path: &Path) -> anyhow::Result<Db> {
    let mut conn =
        Connection::open(path).with_context(|| format!("opening call log {}", path.display()))?;
    // First: switching to WAL, or opening right after a crash (WAL recovery), may meet a
    // reader that holds a lock for a moment (a `calls list`); wait for it, do not fail.
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL: readers (CLI, console) never block the writer. NORMAL: a committed batch
    // survives a process crash (only an OS crash can cost the last commits).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    migrate(&mut conn, path)?;
    Ok(conn.into())
}

/// Brings the schema of `conn` (the database at `path`) to this Siaga's version.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> anyhow::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let version = usize::try_from(version).unwrap_or(0);
    if version > MIGRATIONS.len() {
        anyhow::bail!(
            "call log {} has schema version {version}, newer than this Siaga ({}); use a newer binary",
            path.display(),
            MIGRATIONS.len()
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        // Under the write lock, and read again inside it: another process (the gateway
        // starting while `siaga numbers` writes) may have migrated since the first read.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if usize::try_from(now).unwrap_or(0) > i {
            continue;
        }
        tx.execute_batch(sql)
            .with_context(|| format!("migrating call log to version {}", i + 1))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// What start-up found in the call log about the previous run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The first free call reference.
    pub next_call_ref: u64,
    /// Every recording that was started but never got its SHA-256: a crash or `kill -9`
    /// interrupted it (during the call, or between the call's end and the recording's
    /// finishing).
    pub unfinished: Vec<UnfinishedRecording>,
}

/// A recording the call log knows by its path but that never got its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinishedRecording {
    pub call: u64,
    pub path: PathBuf,
    /// An earlier start already logged why it could not be finished (its file missing, say).
    /// It is tried again at each start, as the file may come back (a volume mounted late),
    /// but the reason is not logged again.
    pub failure_logged: bool,
}

/// The end reason of calls a crash left open (recovery writes it, not the engine).
pub const GATEWAY_RESTARTED: &str = "gateway_restarted";

/// The end reason another node writes for the open calls of a node whose heartbeat stopped.
pub const NODE_LOST: &str = "node_lost";

/// Whose calls a node's start-up repairs, and which call references it may give: on SQLite
/// the whole log (one gateway holds it); on a shared PostgreSQL the node's own calls and its
/// own block of references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `None`: every call (SQLite).
    pub node: Option<String>,
    pub first_id: i64,
    pub last_id: i64,
}

/// Call references per node on a shared database: node n gives n × 10^12 + 1, + 2, …
pub const IDS_PER_NODE: i64 = 1_000_000_000_000;

impl Scope {
    /// The whole log: a single gateway.
    pub fn whole() -> Scope {
        Scope {
            node: None,
            first_id: 1,
            last_id: i64::MAX,
        }
    }

    /// Node `name`, registered as number `number`.
    pub fn node(name: &str, number: i64) -> Scope {
        Scope {
            node: Some(name.to_owned()),
            first_id: number * IDS_PER_NODE + 1,
            last_id: (number + 1) * IDS_PER_NODE - 1,
        }
    }
}

/// Calls left open by a crash or `kill -9` are closed as `gateway_restarted` at their last
/// recorded activity, so no call is left looking as if it were still going. Returns the first
/// free call reference and the recordings that were never finished.
pub fn recover_after_crash(conn: &Db, now_ms: i64, scope: &Scope) -> anyhow::Result<Recovery> {
    let tx = conn.transaction()?;
    let recovery = recover_in(&tx, now_ms, scope)?;
    tx.commit()?;
    Ok(recovery)
}

/// [`recover_after_crash`] inside a transaction of the caller's (also replayed from the
/// writer's queue when the database could not be written at start).
pub fn recover_in(tx: &Db, now_ms: i64, scope: &Scope) -> rusqlite::Result<Recovery> {
    let closed = close_open_calls(
        tx,
        scope.node.as_deref(),
        GATEWAY_RESTARTED,
        "the gateway stopped during the call (crash or kill); ended at its last recorded activity",
    )?;
    if !closed.is_empty() {
        tx.execute(
            "INSERT INTO gateway_events (at, kind, detail, node) VALUES (?1, ?2, ?3, ?4)",
            params![
                now_ms,
                GatewayEventKind::CrashRecovery.as_str(),
                format!("closed {} call(s) left open: {:?}", closed.len(), closed),
                scope.node
            ],
        )?;
    }
    read_recovery(tx, scope)
}

/// Closes the open calls of `node` (all open calls for `None`) at their last recorded
/// activity with `reason`; returns their ids. Each UPDATE only touches a call still open, so
/// two nodes doing this at once close each call once.
pub(super) fn close_open_calls(
    tx: &Db,
    node: Option<&str>,
    reason: &str,
    detail: &str,
) -> rusqlite::Result<Vec<i64>> {
    let open_calls: Vec<i64> = match node {
        None => tx
            .prepare("SELECT id FROM calls WHERE ended_at IS NULL ORDER BY id")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?,
        Some(node) => tx
            .prepare("SELECT id FROM calls WHERE ended_at IS NULL AND node = ?1 ORDER BY id")?
            .query_map([node], |r| r.get(0))?
            .collect::<Result<_, _>>()?,
    };
    let mut closed = Vec::new();
    for id in open_calls {
        let last: i64 = tx.query_row(
            "SELECT max(t) FROM (
                SELECT started_at AS t FROM calls WHERE id = ?1
                UNION ALL SELECT coalesce(answered_at, 0) FROM calls WHERE id = ?1
                UNION ALL SELECT max(at) FROM sip_messages WHERE call = ?1
                UNION ALL SELECT max(at) FROM call_events WHERE call = ?1) AS activity",
            params![id],
            |r| r.get(0),
        )?;
        let changed = tx.execute(
            "UPDATE calls SET ended_at = ?2, end_reason = ?3, end_detail = ?4
             WHERE id = ?1 AND ended_at IS NULL",
            params![id, last, reason, detail],
        )?;
        if changed > 0 {
            closed.push(id);
        }
    }
    Ok(closed)
}

/// What [`recover_after_crash`] returns, read without writing (a database that cannot be
/// written at start).
pub fn read_recovery(conn: &Db, scope: &Scope) -> rusqlite::Result<Recovery> {
    // Created but never given its tables (the disk filled during the first start): it has
    // given no call references yet.
    let has_calls: bool = conn.query_row(
        match conn.dialect() {
            Dialect::Sqlite => {
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'calls')"
            }
            Dialect::Postgres => "SELECT to_regclass('calls') IS NOT NULL",
        },
        [],
        |r| r.get(0),
    )?;
    if !has_calls {
        return Ok(Recovery {
            next_call_ref: scope.first_id as u64,
            unfinished: Vec::new(),
        });
    }
    // A recording's path is logged when its file is created, its digest when it is finished.
    let unfinished = {
        let mut stmt = conn.prepare(&format!(
            "SELECT id, recording_path,
                    EXISTS (SELECT 1 FROM call_events e
                            WHERE e.call = calls.id AND e.kind = '{}')
             FROM calls
             WHERE recording_path IS NOT NULL AND recording_sha256 IS NULL
               AND id BETWEEN ?1 AND ?2 ORDER BY id",
            CallEventKind::RecordingFailed
        ))?;
        stmt.query_map([scope.first_id, scope.last_id], |r| {
            Ok(UnfinishedRecording {
                call: r.get::<_, i64>(0)? as u64,
                path: PathBuf::from(r.get::<_, String>(1)?),
                failure_logged: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?
    };
    let max_id: Option<i64> = conn.query_row(
        "SELECT max(id) FROM calls WHERE id BETWEEN ?1 AND ?2",
        [scope.first_id, scope.last_id],
        |r| r.get(0),
    )?;
    Ok(Recovery {
        next_call_ref: max_id.map_or(scope.first_id as u64, |m| m as u64 + 1),
        unfinished,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calllog::testing::{Store, TestLog};

    #[test]
    fn sessions_migrating_a_new_postgresql_log_at_once_all_succeed() {
        for _ in 0..5 {
            let log = TestLog::new(Store::Postgres);
            let url = log.options.url.clone().expect("a PostgreSQL log");
            let start = std::sync::Arc::new(std::sync::Barrier::new(4));
            let sessions: Vec<_> = (0..4)
                .map(|_| {
                    let (url, start) = (url.clone(), start.clone());
                    std::thread::spawn(move || {
                        let db = Db::connect_postgres(&url).expect("connect");
                        start.wait();
                        migrate_postgres(&db).map_err(|e| format!("{e:#}"))
                    })
                })
                .collect();
            for s in sessions {
                s.join().expect("thread").expect("every session migrates");
            }
            let db = log.open();
            assert_eq!(postgres_version(&db).expect("version"), MIGRATIONS.len());
        }
    }

    #[test]
    fn recovery_lists_the_recordings_that_never_got_a_digest() {
        recovery_lists_the_recordings_that_never_got_a_digest_on(Store::Sqlite)
    }

    #[test]
    fn recovery_lists_the_recordings_that_never_got_a_digest_on_postgres() {
        recovery_lists_the_recordings_that_never_got_a_digest_on(Store::Postgres)
    }

    fn recovery_lists_the_recordings_that_never_got_a_digest_on(store: Store) {
        let log = TestLog::new(store);
        let conn = log.open();
        // (id, ended, path, sha): still open while recording; ended before its finisher ran;
        // finished; never recorded.
        let rows = [
            (1, None, Some("/rec/call-1.wav"), None),
            (2, Some(5), Some("/rec/call-2.wav"), None),
            (3, Some(5), Some("/rec/call-3.wav"), Some("ab")),
            (4, Some(5), None, None),
        ];
        for (id, ended, path, sha) in rows {
            conn.execute(
                "INSERT INTO calls (id, call_id, started_at, ended_at, kind, dialled, source,
                    transport, recording_path, recording_sha256)
                 VALUES (?1, 'c', 1, ?2, 'emergency', '112', '127.0.0.1:5060', 'udp', ?3, ?4)",
                params![id, ended, path, sha],
            )
            .expect("insert");
        }
        // An earlier start already said why call 2's recording could not be finished.
        conn.execute(
            "INSERT INTO call_events (call, at, kind, detail) VALUES (2, 6, ?1, 'gone')",
            [CallEventKind::RecordingFailed.as_str()],
        )
        .expect("event");
        let recovery = recover_after_crash(&conn, 10, &Scope::whole()).expect("recover");
        assert_eq!(recovery.next_call_ref, 5);
        let unfinished = |call, path: &str, failure_logged| UnfinishedRecording {
            call,
            path: PathBuf::from(path),
            failure_logged,
        };
        assert_eq!(
            recovery.unfinished,
            vec![
                unfinished(1, "/rec/call-1.wav", false),
                unfinished(2, "/rec/call-2.wav", true)
            ]
        );
        let reason: String = conn
            .query_row("SELECT end_reason FROM calls WHERE id = 1", [], |r| {
                r.get(0)
            })
            .expect("row");
        assert_eq!(reason, "gateway_restarted");
    }
}
