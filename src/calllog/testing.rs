//! The call log's unit tests on both stores: a fresh SQLite file, or a fresh database on a
//! throw-away PostgreSQL cluster shared by the test process (tests/common/pg.rs; stopped at
//! exit).

use std::path::PathBuf;
use std::sync::OnceLock;

use super::store::Db;
use super::{CallLog, LogOptions, LogWriter, Recovery};

#[path = "../../tests/common/pg.rs"]
mod pg;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Postgres,
}

static CLUSTER: OnceLock<pg::PgCluster> = OnceLock::new();

extern "C" fn stop_cluster() {
    if let Some(cluster) = CLUSTER.get() {
        cluster.stop("immediate");
    }
}

fn cluster() -> &'static pg::PgCluster {
    CLUSTER.get_or_init(|| {
        // The test harness ends the process with exit(): atexit handlers run, statics'
        // destructors do not.
        // SAFETY: registers a plain function with no arguments.
        unsafe { libc::atexit(stop_cluster) };
        pg::PgCluster::start()
    })
}

/// One test's call log.
pub struct TestLog {
    /// Holds the SQLite file and the spill directory until the test ends.
    _dir: tempfile::TempDir,
    /// The SQLite file (unused on PostgreSQL).
    pub db: PathBuf,
    pub options: LogOptions,
}

impl TestLog {
    pub fn new(store: Store) -> TestLog {
        let dir = tempfile::tempdir().expect("dir");
        let options = LogOptions {
            spill_dir: dir.path().join("spill"),
            url: (store == Store::Postgres).then(|| cluster().create_db()),
            node: "test-node".into(),
            ..LogOptions::default()
        };
        TestLog {
            db: dir.path().join("siaga.db"),
            _dir: dir,
            options,
        }
    }

    /// The gateway's writer on this log.
    pub fn start(&self) -> (CallLog, LogWriter, Recovery) {
        CallLog::start_with(&self.db, self.options.clone()).expect("start")
    }

    /// A connection for the test's own reads and writes (schema up to date).
    pub fn open(&self) -> Db {
        match &self.options.url {
            None => super::schema::open(&self.db).expect("db"),
            Some(url) => super::schema::open_postgres(url).expect("db"),
        }
    }
}
