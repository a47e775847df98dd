//! The supervisors' console: server-rendered pages on the HTTP listener (issue 11).
//!
//! Sign-in with the accounts of `siaga users`; every page and file needs a live session
//! (else 401, or a redirect to the sign-in page for a page); every form that changes something
//! carries the session's CSRF token; agency accounts see only the calls offered to their
//! routes (another call is "not found"); recordings are found by call id, never by a path
//! from the request. Every sign-in, failed sign-in, call view, recording play or download and
//! class change is an access-trail entry. The sign-in form itself carries a pre-session token
//! (login CSRF: another site cannot sign a browser in to an account of its choosing).
//! Supervisors and auditors export a call's evidence package from its page.

mod auth;
mod export;
pub mod https;
mod pages;
pub mod password;
mod recording;
pub mod store;
mod svg;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use siaga_engine::LiveCall;

use crate::calllog::access::{AccessAction, AccessEntry, record_access};
use crate::calllog::users::{Role, User};
use crate::calllog::{self, Db};
use store::Scope;

const COOKIE: &str = "siaga_session";
/// The sign-in form's token cookie; over HTTPS with the `__Host-` prefix (the browser then
/// takes it only from this origin over TLS, never from a sibling domain).
const LOGIN_COOKIE: &str = "siaga_login";
const LOGIN_COOKIE_SECURE: &str = "__Host-siaga_login";

/// What the console needs from the gateway's settings.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    pub db: PathBuf,
    /// `[log] url`: the shared PostgreSQL call log instead of the SQLite file `db`.
    pub log_url: Option<String>,
    pub recordings: PathBuf,
    /// The listener is HTTPS: cookies get `Secure`.
    pub secure_cookies: bool,
    /// The centre's local time, for the times shown and the filters typed.
    pub utc_offset_minutes: i32,
    /// The dialplan's routes (the route filter's choices).
    pub routes: Vec<String>,
    /// The centre's signing key (`[evidence] key_dir`), for evidence exports.
    pub key_dir: PathBuf,
}

pub struct Console {
    settings: ConsoleSettings,
    sessions: Mutex<auth::Sessions>,
    throttle: Mutex<auth::Throttle>,
    /// The calls in progress, as the engine last reported them (once a second).
    live: RwLock<Vec<LiveCall>>,
    /// Password checks are deliberately costly: at most this many at once.
    hashing: tokio::sync::Semaphore,
    /// Connections to the call log between requests (a PostgreSQL connection costs a
    /// handshake, an SQLite one a schema check).
    idle: Arc<Mutex<Vec<Db>>>,
    /// The evidence exports running, by session (bounded per session and in total).
    exports: export::Running,
}

/// Connections kept between requests; more requests at once open more, then close them.
const IDLE_CONNECTIONS: usize = 4;

/// A call-log connection for one request, kept for the next one when it ends (unless the
/// database dropped it). Used only on blocking threads: PostgreSQL's client runs its own
/// runtime, which must not run on a tokio worker.
pub struct Conn {
    db: Option<Db>,
    idle: Arc<Mutex<Vec<Db>>>,
}

impl Drop for Console {
    fn drop(&mut self) {
        // The last handle may go on a tokio worker, where closing a PostgreSQL connection
        // (its client blocks on a runtime of its own) would panic: closed on a plain thread.
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("console-close".into())
                .spawn(move || drop(idle));
        }
    }
}

impl std::ops::Deref for Conn {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db.as_ref().expect("a connection until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(db) = self.db.take() else { return };
        if db.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE_CONNECTIONS
        {
            idle.push(db);
        }
    }
}

impl Console {
    pub fn new(settings: ConsoleSettings) -> Arc<Console> {
        Arc::new(Console {
            settings,
            sessions: Mutex::default(),
            throttle: Mutex::default(),
            live: RwLock::default(),
            hashing: tokio::sync::Semaphore::new(2),
            idle: Arc::default(),
            exports: export::Running::default(),
        })
    }

    /// The engine's view of the calls in progress (the gateway calls this once a second).
    pub fn set_live(&self, calls: Vec<LiveCall>) {
        if let Ok(mut live) = self.live.write() {
            *live = calls;
        }
    }

    fn live(&self) -> Vec<LiveCall> {
        self.live.read().map(|l| l.clone()).unwrap_or_default()
    }

    /// A connection to the call log (call only on a blocking thread).
    fn open_db(&self) -> Result<Conn, Fail> {
        let kept = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let db = match kept {
            Some(db) => db,
            None => {
                calllog::open_for_corrections(&self.settings.db, self.settings.log_url.as_deref())
                    .map_err(Fail::Internal)?
            }
        };
        Ok(Conn {
            db: Some(db),
            idle: self.idle.clone(),
        })
    }

    fn offset_ms(&self) -> i64 {
        i64::from(self.settings.utc_offset_minutes) * 60_000
    }

    fn login_cookie_name(&self) -> &'static str {
        if self.settings.secure_cookies {
            LOGIN_COOKIE_SECURE
        } else {
            LOGIN_COOKIE
        }
    }

    /// The sign-in form's token cookie (`Path=/` as `__Host-` requires; an hour to sign in).
    fn login_cookie(&self, token: &str, max_age: i64) -> String {
        format!(
            "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
            self.login_cookie_name(),
            if self.settings.secure_cookies {
                "; Secure"
            } else {
                ""
            }
        )
    }

    /// The sign-in page with a fresh pre-session token in its cookie and hidden field.
    fn login_form(&self, problem: Option<&str>, status: StatusCode) -> Response {
        let token = match auth::random_token() {
            Ok(t) => t,
            Err(e) => return Fail::Internal(e).into_response(),
        };
        let mut r = pages::login(&token, problem, status);
        if let Ok(v) = HeaderValue::from_str(&self.login_cookie(&token, 3600)) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        r
    }

    fn cookie(&self, token: &str, max_age: i64) -> String {
        format!(
            "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
            if self.settings.secure_cookies {
                "; Secure"
            } else {
                ""
            }
        )
    }
}

/// Why a request gets no page.
pub enum Fail {
    /// Not signed in: a redirect to the sign-in page for pages, 401 for the rest.
    Unauthenticated {
        page: bool,
    },
    /// No such call, or not one this account may see: the same answer for both.
    NotFound,
    Forbidden,
    BadRequest(String),
    Internal(anyhow::Error),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Internal(e.into())
    }
}

impl From<anyhow::Error> for Fail {
    fn from(e: anyhow::Error) -> Self {
        Fail::Internal(e)
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        match self {
            Fail::Unauthenticated { page: true } => Redirect::to("/login").into_response(),
            Fail::Unauthenticated { page: false } => {
                (StatusCode::UNAUTHORIZED, "sign in first\n").into_response()
            }
            Fail::NotFound => pages::message(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such call or page.",
            ),
            Fail::Forbidden => pages::message(
                StatusCode::FORBIDDEN,
                "Not allowed",
                "Your role does not allow this.",
            ),
            Fail::BadRequest(why) => pages::message(StatusCode::BAD_REQUEST, "Bad request", &why),
            Fail::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "console");
                pages::message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Error",
                    "The console could not read the call log; see the gateway's log.",
                )
            }
        }
    }
}

/// A signed-in request: the account (read again from the log: a removed account's sessions
/// stop at once), its session, the log, and the client's address.
pub struct Ctx {
    pub user: User,
    pub session: auth::Session,
    pub conn: Conn,
    pub address: String,
}

impl Ctx {
    pub fn scope(&self) -> Scope {
        match self.user.role {
            Role::Agency => Scope::Routes(self.user.routes.clone()),
            Role::Supervisor | Role::Auditor => Scope::All,
        }
    }

    pub fn trail(&self, action: AccessAction, call: Option<i64>, detail: &str) -> Result<(), Fail> {
        record_access(
            &self.conn,
            &AccessEntry {
                at_ms: calllog::now_ms(),
                user: &self.user.name,
                address: &self.address,
                action,
                call,
                detail,
            },
        )?;
        Ok(())
    }

    /// A call this account may see; anything else is "not found".
    pub fn visible_call(&self, id: &str) -> Result<i64, Fail> {
        let id: i64 = id.parse().map_err(|_| Fail::NotFound)?;
        if store::visible(&self.conn, &self.scope(), id)? {
            Ok(id)
        } else {
            Err(Fail::NotFound)
        }
    }

    pub fn check_csrf(&self, sent: &str) -> Result<(), Fail> {
        if auth::same(sent, &self.session.csrf) {
            Ok(())
        } else {
            Err(Fail::Forbidden)
        }
    }
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    cookie_named(headers, COOKIE)
}

fn cookie_named(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Runs `f` for a signed-in request on a blocking thread (SQLite, files).
async fn signed_in<F>(
    console: Arc<Console>,
    headers: &HeaderMap,
    addr: SocketAddr,
    page: bool,
    f: F,
) -> Response
where
    F: FnOnce(&Console, &Ctx) -> Result<Response, Fail> + Send + 'static,
{
    let token = cookie_token(headers);
    let session = token
        .as_deref()
        .and_then(|t| console.sessions.lock().ok()?.touch(t, calllog::now_ms()));
    let Some(session) = session else {
        return Fail::Unauthenticated { page }.into_response();
    };
    let result = tokio::task::spawn_blocking(move || {
        let conn = console.open_db()?;
        let Some(user) = crate::calllog::users::get(&conn, &session.user)? else {
            if let (Ok(mut s), Some(t)) = (console.sessions.lock(), token) {
                s.end(&t);
            }
            return Err(Fail::Unauthenticated { page });
        };
        let ctx = Ctx {
            user,
            session,
            conn,
            address: addr.ip().to_string(),
        };
        f(&console, &ctx)
    })
    .await;
    match result {
        Ok(Ok(response)) => response,
        Ok(Err(fail)) => fail.into_response(),
        Err(e) => Fail::Internal(anyhow::anyhow!("console task: {e}")).into_response(),
    }
}

pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/calls") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/calls", get(calls_page))
        .route("/calls/live", get(live_fragment))
        .route("/calls/export", post(export::export_ticked))
        .route("/calls/{id}", get(call_page))
        .route("/calls/{id}/recording", get(recording::serve))
        .route("/calls/{id}/class", post(class_change))
        .route("/calls/{id}/export", post(export::export))
        .route("/summary", get(summary_page))
        .route("/trail", get(trail_page))
        .route(
            "/assets/console.css",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css")],
                    include_str!("assets/console.css"),
                )
            }),
        )
        .route(
            "/assets/console.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript")],
                    include_str!("assets/console.js"),
                )
            }),
        )
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

/// Pages hold callers' data: never cached, never framed, scripts and styles only our own.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; \
             script-src 'self'; object-src 'none'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Unknown paths: 401 to strangers (nothing about what exists), 404 to the signed-in.
async fn not_found(
    State(console): State<Arc<Console>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    signed_in(console, &headers, addr, false, |_, _| Err(Fail::NotFound)).await
}

async fn login_page(State(console): State<Arc<Console>>) -> Response {
    console.login_form(None, StatusCode::OK)
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
    /// The sign-in page's token; it must equal the token in its cookie.
    #[serde(default)]
    csrf: String,
}

async fn login(
    State(console): State<Arc<Console>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    // Login CSRF: only a form this server gave to this browser signs in. Refused before the
    // throttle and the password: a forged post checks nothing, so it counts as no attempt
    // (another site cannot lock an account by posting wrong passwords from a victim's browser).
    let paired = cookie_named(&headers, console.login_cookie_name())
        .is_some_and(|t| t.len() == 64 && auth::same(&t, &form.csrf));
    if !paired {
        return console.login_form(
            Some("The sign-in form expired or did not come from this console: sign in again."),
            StatusCode::FORBIDDEN,
        );
    }
    let now = calllog::now_ms();
    // A name is shown in the trail: bounded and printable.
    let name: String = calllog::text::fit(&calllog::text::esc(form.name.trim()), 64).into_owned();
    let address = addr.ip().to_string();
    let keys = [format!("user:{name}"), format!("addr:{address}")];
    let wait = console
        .throttle
        .lock()
        .map(|t| t.retry_in(&keys, now))
        .unwrap_or_default();
    if !wait.is_zero() {
        // Not even checked: a guesser learns nothing until the wait is over.
        let secs = wait.as_secs().max(1);
        let mut r = console.login_form(
            Some(&format!("Too many failed sign-ins: try again in {secs} s.")),
            StatusCode::TOO_MANY_REQUESTS,
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return r;
    }
    let Ok(_permit) = console.hashing.acquire().await else {
        return Fail::Internal(anyhow::anyhow!("hashing closed")).into_response();
    };
    let c = console.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<Option<User>, Fail> {
        let conn = c.open_db()?;
        let user = crate::calllog::users::get(&conn, &name)?;
        let stored = user
            .as_ref()
            .map_or(password::decoy(), |u| u.password_hash.as_str());
        let ok = password::verify(stored, &form.password) && user.is_some();
        let entry = |action, detail: &str| {
            record_access(
                &conn,
                &AccessEntry {
                    at_ms: calllog::now_ms(),
                    user: &name,
                    address: &address,
                    action,
                    call: None,
                    detail,
                },
            )
        };
        if ok {
            entry(AccessAction::SignIn, "")?;
            Ok(user)
        } else {
            entry(
                AccessAction::SignInFailed,
                if user.is_some() {
                    "wrong password"
                } else {
                    "no such account"
                },
            )?;
            Ok(None)
        }
    })
    .await;
    let user = match result {
        Ok(Ok(user)) => user,
        Ok(Err(fail)) => return fail.into_response(),
        Err(e) => return Fail::Internal(anyhow::anyhow!("{e}")).into_response(),
    };
    let Some(user) = user else {
        if let Ok(mut t) = console.throttle.lock() {
            t.failed(&keys, now);
        }
        return console.login_form(Some("Wrong name or password."), StatusCode::UNAUTHORIZED);
    };
    if let Ok(mut t) = console.throttle.lock() {
        t.succeeded(&keys[0]);
    }
    let created = console
        .sessions
        .lock()
        .map_err(|_| anyhow::anyhow!("sessions poisoned"))
        .and_then(|mut s| s.create(&user.name, now));
    match created {
        Ok((token, _)) => {
            let mut r = Redirect::to("/calls").into_response();
            if let Ok(v) =
                HeaderValue::from_str(&console.cookie(&token, auth::ABSOLUTE.as_secs() as i64))
            {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            // The sign-in form's token is spent.
            if let Ok(v) = HeaderValue::from_str(&console.login_cookie("", 0)) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => Fail::Internal(e).into_response(),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(console): State<Arc<Console>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let token = cookie_token(&headers);
    signed_in(console, &headers, addr, false, move |c, ctx| {
        let Form(form) = form.map_err(|_| Fail::Forbidden)?;
        ctx.check_csrf(&form.csrf)?;
        if let (Ok(mut s), Some(t)) = (c.sessions.lock(), token) {
            s.end(&t);
        }
        ctx.trail(AccessAction::SignOut, None, "")?;
        let mut r = Redirect::to("/login").into_response();
        if let Ok(v) = HeaderValue::from_str(&c.cookie("", 0)) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        Ok(r)
    })
    .await
}

/// The call list's query string, as typed (every field optional, checked when parsed).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct CallsQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub caller: Option<String>,
    pub dialled: Option<String>,
    pub route: Option<String>,
    pub end: Option<String>,
    pub answered: Option<String>,
    pub min_s: Option<String>,
    pub callback: Option<String>,
    pub before: Option<String>,
}

/// Calls shown per page.
pub const PAGE: usize = 50;

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl CallsQuery {
    pub fn filter(&self, offset_ms: i64) -> Result<store::CallFilter, String> {
        let time = |field: &str, v: Option<&str>| -> Result<Option<i64>, String> {
            v.map(|t| {
                calllog::stats::parse_utc(t)
                    .map(|ms| ms - offset_ms)
                    .ok_or_else(|| {
                        format!(
                            "{field}: write a day or a minute, e.g. 2026-12-05 or 2026-12-05T08:00"
                        )
                    })
            })
            .transpose()
        };
        let known = calllog::query::known_end_reasons();
        let end_reason = nonempty(&self.end).map(str::to_owned);
        if let Some(r) = &end_reason
            && !known.contains(&r.as_str())
        {
            return Err(format!("unknown end reason {r:?}"));
        }
        Ok(store::CallFilter {
            from_ms: time("from", nonempty(&self.from))?,
            to_ms: time("to", nonempty(&self.to))?,
            caller: nonempty(&self.caller).map(|s| s.chars().take(64).collect()),
            dialled: nonempty(&self.dialled).map(|s| s.chars().take(64).collect()),
            route: nonempty(&self.route).map(|s| s.chars().take(64).collect()),
            end_reason,
            answered: match nonempty(&self.answered) {
                Some("yes") => Some(true),
                Some("no") => Some(false),
                _ => None,
            },
            min_duration_ms: nonempty(&self.min_s)
                .map(|s| {
                    s.parse::<u32>()
                        .map(|s| i64::from(s) * 1000)
                        .map_err(|_| "minimum duration: whole seconds".to_owned())
                })
                .transpose()?,
            call_backs: nonempty(&self.callback).is_some(),
            before_id: nonempty(&self.before).and_then(|s| s.parse().ok()),
        })
    }
}

async fn calls_page(
    State(console): State<Arc<Console>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<CallsQuery>,
) -> Response {
    signed_in(console, &headers, addr, true, move |c, ctx| {
        let filter = query.filter(c.offset_ms()).map_err(Fail::BadRequest)?;
        let mut calls = store::list_calls(&ctx.conn, &ctx.scope(), &filter, PAGE)?;
        let older = calls.len() > PAGE;
        calls.truncate(PAGE);
        let live = live_rows(c, ctx)?;
        Ok(pages::calls(c, ctx, &query, &calls, older, &live))
    })
    .await
}

/// The live calls this account may see, each with its log row.
fn live_rows(c: &Console, ctx: &Ctx) -> Result<Vec<LiveCall>, Fail> {
    let live = c.live();
    let ids: Vec<i64> = live.iter().map(|l| l.call.0 as i64).collect();
    let visible = store::visible_ids(&ctx.conn, &ctx.scope(), &ids)?;
    Ok(live
        .into_iter()
        .filter(|l| visible.contains(&(l.call.0 as i64)))
        .collect())
}

async fn live_fragment(
    State(console): State<Arc<Console>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    signed_in(console, &headers, addr, false, |c, ctx| {
        let live = live_rows(c, ctx)?;
        Ok(pages::html(pages::live_table(&live)))
    })
    .await
}

async fn call_page(
    State(console): State<Arc<Console>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    signed_in(console, &headers, addr, true, move |c, ctx| {
        let id = ctx.visible_call(&id)?;
        call_view(c, ctx, id, None)
    })
    .await
}

/// A call's page (a view on the access trail); `export_problem`: why the export form came
/// back instead of a package, shown at the form.
fn call_view(
    c: &Console,
    ctx: &Ctx,
    id: i64,
    export_problem: Option<&str>,
) -> Result<Response, Fail> {
    let detail = calllog::query::show(&ctx.conn, id)?.ok_or(Fail::NotFound)?;
    let messages = store::ladder_messages(&ctx.conn, id)?;
    ctx.trail(AccessAction::CallView, Some(id), "")?;
    let live = c.live().into_iter().find(|l| l.call.0 as i64 == id);
    Ok(pages::call(
        c,
        ctx,
        &detail,
        &messages,
        live.as_ref(),
        export_problem,
    ))
}

#[derive(Deserialize)]
struct ClassForm {
    csrf: String,
    class: String,
    why: String,
}

async fn class_change(
    State(console): State<Arc<Console>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ClassForm>, FormRejection>,
) -> Response {
    // Checked in this order: signed in, then the CSRF token (a form without one is forged).
    signed_in(console, &headers, addr, false, move |_, ctx| {
        let Form(form) = form.map_err(|_| Fail::Forbidden)?;
        ctx.check_csrf(&form.csrf)?;
        if ctx.user.role != Role::Supervisor {
            return Err(Fail::Forbidden);
        }
        let id = ctx.visible_call(&id)?;
        let class: siaga_dialplan::CallClass = form
            .class
            .parse()
            .map_err(|e| Fail::BadRequest(format!("class: {e}")))?;
        let why: String = form.why.chars().take(500).collect();
        let correction = calllog::classes::correct(
            &ctx.conn,
            id,
            class,
            &ctx.user.name,
            &why,
            calllog::now_ms(),
        )
        .map_err(|e| Fail::BadRequest(e.to_string()))?;
        ctx.trail(
            AccessAction::ClassChange,
            Some(id),
            &format!(
                "{} → {}: {}",
                correction
                    .from
                    .map_or("unclassified", siaga_dialplan::CallClass::as_str),
                correction.to.as_str(),
                correction.why
            ),
        )?;
        Ok(Redirect::to(&format!("/calls/{id}#class")).into_response())
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
pub struct SummaryQuery {
    pub from: Option<String>,
    pub to: Option<String>,
}

async fn summary_page(
    State(console): State<Arc<Console>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<SummaryQuery>,
) -> Response {
    signed_in(console, &headers, addr, true, move |c, ctx| {
        let offset = c.offset_ms();
        let today = (calllog::now_ms() + offset).div_euclid(86_400_000) * 86_400_000 - offset;
        let day = |v: Option<&str>, default: i64| -> Result<i64, Fail> {
            match v {
                None => Ok(default),
                Some(t) => calllog::stats::parse_utc(t)
                    .map(|ms| ms - offset)
                    .ok_or_else(|| Fail::BadRequest("write days as 2026-12-05".to_owned())),
            }
        };
        let from = day(nonempty(&query.from), today)?;
        // The last day is included.
        let to = day(nonempty(&query.to), from)? + 86_400_000;
        if to <= from || to - from > 62 * 86_400_000 {
            return Err(Fail::BadRequest(
                "the range is 1 to 62 days, from before to".to_owned(),
            ));
        }
        let summary = store::summary(&ctx.conn, &ctx.scope(), from, to)?;
        Ok(pages::summary(c, ctx, from, to, &summary))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
struct TrailQuery {
    before: Option<String>,
}

async fn trail_page(
    State(console): State<Arc<Console>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<TrailQuery>,
) -> Response {
    signed_in(console, &headers, addr, true, move |c, ctx| {
        if ctx.user.role != Role::Supervisor {
            return Err(Fail::Forbidden);
        }
        let before = nonempty(&query.before).and_then(|s| s.parse().ok());
        let rows = calllog::access::list_access(&ctx.conn, before, 100)?;
        Ok(pages::trail(c, ctx, &rows))
    })
    .await
}
