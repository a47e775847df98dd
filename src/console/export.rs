//! Evidence export from the console (issue 11 item 3): from a call's page, or for the calls
//! ticked in the list (a court's request often covers several calls of one incident or one
//! number). A supervisor or an auditor gives a reason, the server builds the package with the
//! same function as `siaga calls export` (on the access trail, signed with the centre's key)
//! and sends it as one tar archive, named after the calls and the time, which
//! `siaga evidence verify` checks as it is.
//!
//! What a user can make the server spend: one export at a time per session and
//! [`MAX_RUNNING`] on the whole console, each held until its download ends or is dropped;
//! at most [`MAX_CALLS`] calls per package (their recordings and a few JSON files; more
//! with `siaga calls export` on the gateway); the package is built in a private directory
//! under the system's temporary directory (not on the recordings' disk) and gone from the
//! file system before the first byte is sent. A crash mid-export leaves that directory
//! behind; the shipped systemd unit's `PrivateTmp` removes it with the service.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Console, Ctx, Fail, call_view, pages, recording::file_body, signed_in};
use crate::calllog::{self, users::Role};
use crate::evidence::package;

/// Exports running at once on the console, all sessions together.
pub const MAX_RUNNING: usize = 2;
/// The longest reason taken (a letter's reference and a sentence or two).
pub const MAX_REASON_CHARS: usize = 500;
/// The most calls in one package from the console's list.
pub const MAX_CALLS: usize = 25;

/// Supervisors and auditors export; agencies do not (the form is not shown to them and the
/// server refuses them).
pub fn may_export(role: Role) -> bool {
    matches!(role, Role::Supervisor | Role::Auditor)
}

/// The sessions with an export running (by their CSRF token, which is one per session).
#[derive(Default, Clone)]
pub struct Running(Arc<Mutex<HashSet<String>>>);

/// A claimed export: freed when dropped (when the download ends, fails or is abandoned).
pub struct Slot {
    running: Running,
    session: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut set) = self.running.0.lock() {
            set.remove(&self.session);
        }
    }
}

impl Running {
    /// A slot for `session`, or why not.
    fn claim(&self, session: &str) -> Result<Slot, &'static str> {
        let mut set = self.0.lock().map_err(|_| "the console is in trouble")?;
        if set.contains(session) {
            return Err("An export of yours is still running: wait for its download to finish.");
        }
        if set.len() >= MAX_RUNNING {
            return Err("Other exports are running on the gateway: try again in a minute.");
        }
        set.insert(session.to_owned());
        Ok(Slot {
            running: self.clone(),
            session: session.to_owned(),
        })
    }
}

/// A private directory for one package, removed with everything in it when dropped.
struct Staging(PathBuf);

impl Staging {
    fn new() -> anyhow::Result<Staging> {
        use std::os::unix::fs::DirBuilderExt;
        let token = super::auth::random_token()?;
        let dir = std::env::temp_dir().join(format!("siaga-console-export-{}", &token[..16]));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Staging(dir))
    }

    fn path(&self) -> &FsPath {
        &self.0
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), error = %e, "export staging not removed");
        }
    }
}

#[derive(Deserialize)]
pub struct ExportForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

pub async fn export(
    State(console): State<Arc<Console>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ExportForm>, FormRejection>,
) -> Response {
    // Checked in this order: signed in, the CSRF token, the role, the call; only then is
    // anything built or written.
    signed_in(console, &headers, addr, false, move |c, ctx| {
        let Form(form) = form.map_err(|_| Fail::Forbidden)?;
        ctx.check_csrf(&form.csrf)?;
        if !may_export(ctx.user.role) {
            return Err(Fail::Forbidden);
        }
        let id = ctx.visible_call(&id)?;
        let again = |problem: &str, status: StatusCode| -> Result<Response, Fail> {
            let mut r = call_view(c, ctx, id, Some(problem))?;
            *r.status_mut() = status;
            Ok(r)
        };
        let reason = form.reason.trim();
        let slot = match reason_and_slot(c, ctx, reason) {
            Ok(slot) => slot,
            Err((status, why)) => return again(&why, status),
        };
        build_and_send(c, ctx, &[id], reason, slot).or_else(|e| {
            tracing::error!(call = id, error = %format!("{e:#}"), "console export failed");
            again(
                &format!("The export failed: {e:#}"),
                StatusCode::INTERNAL_SERVER_ERROR,
            )
        })
    })
    .await
}

/// The calls ticked in the list (`call=ID`, repeated), with the session's `csrf` and a
/// `reason`: one package for all of them. A problem answers with a page saying what to change.
pub async fn export_ticked(
    State(console): State<Arc<Console>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    signed_in(console, &headers, addr, false, move |c, ctx| {
        let Form(fields) = form.map_err(|_| Fail::Forbidden)?;
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map_or("", |(_, v)| v.as_str())
        };
        ctx.check_csrf(field("csrf"))?;
        if !may_export(ctx.user.role) {
            return Err(Fail::Forbidden);
        }
        let not_made = |status: StatusCode, text: &str| {
            Ok(pages::message(status, "Export not made", text))
        };
        let ticked: Vec<&str> = fields
            .iter()
            .filter(|(k, _)| k == "call")
            .map(|(_, v)| v.as_str())
            .take(MAX_CALLS + 1)
            .collect();
        if ticked.is_empty() {
            return not_made(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Tick the calls to export in the list first.",
            );
        }
        if ticked.len() > MAX_CALLS {
            return not_made(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!(
                    "At most {MAX_CALLS} calls go in one package from the console; export the rest in a second package, or all of them with `siaga calls export` on the gateway."
                ),
            );
        }
        let mut ids = ticked
            .into_iter()
            .map(|id| ctx.visible_call(id))
            .collect::<Result<Vec<i64>, Fail>>()?;
        ids.sort_unstable();
        ids.dedup();
        let reason = field("reason").trim();
        let slot = match reason_and_slot(c, ctx, reason) {
            Ok(slot) => slot,
            Err((status, why)) => return not_made(status, &why),
        };
        build_and_send(c, ctx, &ids, reason, slot).or_else(|e| {
            tracing::error!(calls = ?ids, error = %format!("{e:#}"), "console export failed");
            not_made(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("The export failed: {e:#}"),
            )
        })
    })
    .await
}

/// The reason checked and an export slot claimed for the session, or the status and what to
/// change (the same rules from a call's page and from the list).
fn reason_and_slot(c: &Console, ctx: &Ctx, reason: &str) -> Result<Slot, (StatusCode, String)> {
    if reason.is_empty() {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            "Give a reason for the export: who asked for it, their reference, the purpose."
                .to_owned(),
        ));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("The reason is longer than {MAX_REASON_CHARS} characters."),
        ));
    }
    c.exports
        .claim(&ctx.session.csrf)
        .map_err(|why| (StatusCode::TOO_MANY_REQUESTS, why.to_owned()))
}

/// The package of `calls` as a tar download; `slot` is held until the download ends.
fn build_and_send(
    c: &Console,
    ctx: &Ctx,
    calls: &[i64],
    reason: &str,
    slot: Slot,
) -> anyhow::Result<Response> {
    let staging = Staging::new()?;
    let dir = package::export(
        &ctx.conn,
        &package::ExportRequest {
            calls,
            reason,
            user: &ctx.user.name,
            address: &ctx.address,
            out_dir: staging.path(),
            key_dir: &c.settings.key_dir,
            now_ms: calllog::now_ms(),
        },
    )?;
    let name = format!(
        "{}.tar",
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "evidence".to_owned())
    );
    let archive = staging.path().join(&name);
    package::write_archive(&dir, &archive)?;
    let file = std::fs::File::open(&archive)?;
    let len = file.metadata()?.len();
    // The open file stays readable; the directory goes now.
    drop(staging);
    let mut response = Response::new(file_body(file, len, slot));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    // The name is ours: ASCII letters, digits and dashes.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_export_per_session_and_a_few_in_all() {
        let running = Running::default();
        let a = running.claim("session-a").expect("the first");
        assert!(running.claim("session-a").is_err(), "one per session");
        let b = running.claim("session-b").expect("another session");
        assert_eq!(MAX_RUNNING, 2);
        assert!(running.claim("session-c").is_err(), "the total is bounded");
        drop(a);
        assert!(running.claim("session-a").is_ok(), "freed when done");
        drop(b);
    }
}
