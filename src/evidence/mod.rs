//! Evidence (issue 11 items 2–4 and 6 on the command line): the centre's key, evidence
//! packages, the audit chain's verification and head, retention and legal holds. The SQL is
//! in `calllog::{access, chain, retention}`; this is files, keys and commands.

pub mod cli;
pub mod keys;
pub mod package;

use std::path::PathBuf;
use std::time::Duration;

use crate::calllog::retention::{RetentionPeriods, sweep};

/// The first sweep a minute after start (not in the middle of start-up), then daily.
const FIRST_SWEEP: Duration = Duration::from_secs(60);
const SWEEP_EVERY: Duration = Duration::from_secs(24 * 3600);

/// Runs the retention sweep daily in the gateway, on a connection of its own off the
/// runtime's threads. Nothing to do when no period is set. On a shared PostgreSQL (`url`)
/// each node sweeps the recordings of its own calls (on its own disk); any node may strip
/// the SIP messages.
pub fn spawn_daily_retention(
    db: PathBuf,
    url: Option<String>,
    node: String,
    periods: RetentionPeriods,
) {
    if periods.is_off() {
        return;
    }
    tokio::spawn(async move {
        let mut every =
            tokio::time::interval_at(tokio::time::Instant::now() + FIRST_SWEEP, SWEEP_EVERY);
        loop {
            every.tick().await;
            let (db, url, node) = (db.clone(), url.clone(), node.clone());
            let swept = tokio::task::spawn_blocking(move || {
                let conn = match &url {
                    Some(url) => crate::calllog::open_postgres_existing(url)?,
                    None => crate::calllog::open(&db)?,
                };
                sweep(
                    &conn,
                    periods,
                    crate::calllog::now_ms(),
                    url.as_ref().map(|_| node.as_str()),
                    "retention",
                    "gateway",
                )
            })
            .await;
            match swept {
                Ok(Ok(r)) => tracing::info!(
                    recordings = r.recordings_deleted.len(),
                    sip_message_calls = r.sip_messages_deleted_for.len(),
                    held = r.held_calls_kept,
                    failures = r.failures.len(),
                    "retention sweep done"
                ),
                Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "retention sweep failed"),
                Err(e) => tracing::error!(error = %e, "retention sweep panicked"),
            }
        }
    });
}
