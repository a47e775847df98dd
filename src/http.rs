//! The HTTP listener: `/metrics` (Prometheus), `/healthz` (alive) and `/readyz` (able to take
//! calls), and the supervisors' console (`crate::console`). Loopback by default (the figures
//! and the pages are the centre's).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::calllog::CallLog;
use crate::metrics::Metrics;

/// What `/readyz` checks, shared with the gateway.
pub struct Health {
    /// The gateway drains (SIGTERM): it takes no new calls.
    pub draining: AtomicBool,
    pub calllog: CallLog,
    pub recordings: PathBuf,
    /// Where call-log records wait while the database cannot be written.
    pub spill_dir: PathBuf,
}

impl Health {
    /// Each check and whether it passes: SIP listening (the process runs the engine),
    /// dialplan loaded (it cannot run without one), the call log taking writes, the
    /// recordings directory writable, not draining.
    fn checks(&self) -> Vec<(&'static str, bool)> {
        let recordings = writable_dir(&self.recordings);
        let calllog = self.calllog.writable();
        vec![
            ("sip_listening", true),
            ("dialplan_loaded", true),
            ("calllog_writable", calllog),
            ("recordings_writable", recordings),
            ("taking_calls", !self.draining.load(Ordering::Relaxed)),
        ]
    }

    /// Whether this node can keep its calls' records — the database takes writes or, while
    /// it does not (a shared PostgreSQL restarting), the spill directory does — and whether
    /// the recordings directory takes writes. Touches the disk: call it off the async
    /// workers. A load balancer's OPTIONS get 503 while either is false. (With the database
    /// down for every node at once, records wait in each node's spill: the nodes stay in.)
    pub fn storage(&self) -> (bool, bool) {
        let records = self.calllog.writable() || writable_dir(&self.spill_dir);
        (records, writable_dir(&self.recordings))
    }
}

/// Creates and removes a probe file in `dir`.
fn writable_dir(dir: &std::path::Path) -> bool {
    let probe = dir.join(format!(".siaga-ready-{}", std::process::id()));
    std::fs::write(&probe, b"").is_ok() && std::fs::remove_file(&probe).is_ok()
}

#[derive(Clone)]
struct AppState {
    metrics: Option<Metrics>,
    health: Arc<Health>,
}

/// Serves until the process ends (the gateway's shutdown drops the task).
pub async fn serve(
    listener: TcpListener,
    metrics: Option<Metrics>,
    health: Arc<Health>,
    console: Option<Arc<crate::console::Console>>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) {
    let mut app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(AppState { metrics, health });
    if let Some(console) = console {
        app = app.merge(crate::console::router(console));
    }
    // The console logs each client's address in the access trail.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = match tls {
        None => axum::serve(listener, app).await,
        Some(config) => match crate::console::https::HttpsListener::new(listener, config) {
            // tap_io: axum gives the peer's address (ConnectInfo) for any listener seen
            // through it.
            Ok(https) => {
                use axum::serve::ListenerExt;
                axum::serve(https.tap_io(|_| {}), app).await
            }
            Err(e) => Err(e),
        },
    };
    if let Err(e) = served {
        tracing::error!(error = %e, "HTTP listener stopped");
    }
}

async fn metrics_page(State(state): State<AppState>) -> impl IntoResponse {
    match state.metrics {
        Some(metrics) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            metrics.render(),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain")],
            "metrics recorder not installed\n".to_owned(),
        ),
    }
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let health = state.health.clone();
    // The recordings probe touches the disk: off the async workers.
    let checks = tokio::task::spawn_blocking(move || health.checks())
        .await
        .unwrap_or_default();
    let ok = !checks.is_empty() && checks.iter().all(|(_, pass)| *pass);
    let body: String = checks
        .iter()
        .map(|(name, pass)| format!("{name} {}\n", if *pass { "ok" } else { "FAIL" }))
        .collect();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, [(header::CONTENT_TYPE, "text/plain")], body)
}
