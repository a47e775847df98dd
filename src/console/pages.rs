//! The console's pages, rendered with maud (every value escaped unless marked otherwise; no
//! value is ever marked otherwise).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use siaga_engine::LiveCall;

use super::store::{LadderMessage, ListedCall, Summary};
use super::{CallsQuery, Console, Ctx, svg};
use crate::calllog::access::AccessRow;
use crate::calllog::query::{CallDetail, CallRow, iso_utc};
use crate::calllog::users::Role;

pub fn html(markup: Markup) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// `2026-12-05 16:03:11` in the centre's local time.
fn local(ms: i64, offset_ms: i64) -> String {
    let iso = iso_utc(ms + offset_ms);
    format!("{} {}", &iso[..10], &iso[11..19])
}

fn offset_label(minutes: i32) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.unsigned_abs();
    format!("UTC{sign}{:02}:{:02}", m / 60, m % 60)
}

fn seconds(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// A wait as people read it: milliseconds under a second, else seconds.
fn wait(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        seconds(ms)
    }
}

fn layout(title: &str, ctx: Option<&Ctx>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Siaga 112" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                header.top {
                    span.brand { "Siaga 112" }
                    @if let Some(ctx) = ctx {
                        nav {
                            a href="/calls" { "Calls" }
                            a href="/summary" { "Summary" }
                            @if ctx.user.role == Role::Supervisor {
                                a href="/trail" { "Access trail" }
                            }
                        }
                        form.signout method="post" action="/logout" {
                            span.who { (ctx.user.name) " · " (ctx.user.role.as_str())
                                @if !ctx.user.routes.is_empty() { " (" (ctx.user.routes.join(", ")) ")" } }
                            input type="hidden" name="csrf" value=(ctx.session.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn message(status: StatusCode, title: &str, text: &str) -> Response {
    let mut r = html(layout(
        title,
        None,
        html! { h1 { (title) } p { (text) } p { a href="/calls" { "Back to the calls" } } },
    ));
    *r.status_mut() = status;
    r
}

/// The sign-in form; `csrf` is the pre-session token also set in its cookie.
pub fn login(csrf: &str, problem: Option<&str>, status: StatusCode) -> Response {
    let mut r = html(layout(
        "Sign in",
        None,
        html! {
            form.login method="post" action="/login" {
                h1 { "Sign in" }
                @if let Some(p) = problem { p.problem role="alert" { (p) } }
                input type="hidden" name="csrf" value=(csrf);
                label { "Name" input name="name" autocomplete="username" required autofocus; }
                label { "Password" input name="password" type="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
        },
    ));
    *r.status_mut() = status;
    r
}

/// The caller as a person reads it: the asserted identity's URI, else From's.
pub fn caller_of(row: &CallRow) -> String {
    let uri = crate::calllog::query::caller(row);
    uri.trim_start_matches("sip:")
        .trim_start_matches("sips:")
        .trim_start_matches("tel:")
        .to_owned()
}

fn phase_text(l: &LiveCall) -> String {
    use siaga_engine::CallPhase::*;
    let route = l.route.as_deref().unwrap_or("?");
    match l.phase {
        Ringing => "ringing the gateway".to_owned(),
        Ivr => "in the IVR menu".to_owned(),
        AgencyRinging => format!("ringing {route}: {}", l.agencies.join(", ")),
        Queued => format!(
            "queued for {route}, position {}",
            l.queue_position.map_or("?".to_owned(), |p| p.to_string())
        ),
        Talking => format!("talking to {route}: {}", l.agencies.join(", ")),
        Ending => "ending".to_owned(),
    }
}

pub fn live_table(live: &[LiveCall]) -> Markup {
    html! {
        @if live.is_empty() {
            p.quiet { "No call in progress." }
        } @else {
            table.live {
                thead { tr { th { "call" } th { "state" } } }
                tbody {
                    @for l in live {
                        tr.(l.phase.as_str()) {
                            td { a href={ "/calls/" (l.call.0) } { (l.call.0) } }
                            td { (phase_text(l)) }
                        }
                    }
                }
            }
        }
    }
}

fn select(name: &str, current: Option<&str>, choices: &[(&str, &str)]) -> Markup {
    html! {
        select name=(name) {
            @for (value, label) in choices {
                option value=(value) selected[current == Some(*value)] { (label) }
            }
        }
    }
}

/// The query string of `q` with `before` replaced (the next page's link).
fn page_link(q: &CallsQuery, before: i64) -> String {
    let pairs = [
        ("from", &q.from),
        ("to", &q.to),
        ("caller", &q.caller),
        ("dialled", &q.dialled),
        ("route", &q.route),
        ("end", &q.end),
        ("answered", &q.answered),
        ("min_s", &q.min_s),
        ("callback", &q.callback),
    ];
    let mut out = String::from("/calls?");
    for (k, v) in pairs {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            out.push_str(k);
            out.push('=');
            out.push_str(&url_encode(v));
            out.push('&');
        }
    }
    out.push_str(&format!("before={before}"));
    out
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn calls(
    c: &Console,
    ctx: &Ctx,
    q: &CallsQuery,
    calls: &[ListedCall],
    older: bool,
    live: &[LiveCall],
) -> Response {
    let offset = c.offset_ms();
    let v = |s: &Option<String>| s.clone().unwrap_or_default();
    let mut routes: Vec<(&str, &str)> = vec![("", "any")];
    let allowed: Vec<&String> = match ctx.user.role {
        Role::Agency => ctx.user.routes.iter().collect(),
        _ => c.settings.routes.iter().collect(),
    };
    routes.extend(allowed.iter().map(|r| (r.as_str(), r.as_str())));
    let reasons = crate::calllog::query::known_end_reasons();
    let mut reason_choices: Vec<(&str, &str)> = vec![("", "any")];
    reason_choices.extend(reasons.iter().map(|r| (*r, *r)));
    html(layout(
        "Calls",
        Some(ctx),
        html! {
            section.live-box {
                h2 { "In progress" }
                div #live data-src="/calls/live" { (live_table(live)) }
            }
            h1 { "Calls" }
            form.filters method="get" action="/calls" {
                label { "From (" (offset_label(c.settings.utc_offset_minutes)) ")" input name="from" placeholder="2026-12-05T08:00" value=(v(&q.from)); }
                label { "To" input name="to" placeholder="2026-12-06" value=(v(&q.to)); }
                label { "Caller (From or PAI)" input name="caller" value=(v(&q.caller)); }
                label { "Dialled" input name="dialled" value=(v(&q.dialled)); }
                label { "Route / agency" (select("route", q.route.as_deref(), &routes)) }
                label { "End reason" (select("end", q.end.as_deref(), &reason_choices)) }
                label { "Answered by an agency" (select("answered", q.answered.as_deref(), &[("", "either"), ("yes", "yes"), ("no", "no")])) }
                label { "Min. length (s)" input name="min_s" inputmode="numeric" value=(v(&q.min_s)); }
                label.check { input type="checkbox" name="callback" value="1" checked[q.callback.is_some()]; "Call-back needed" }
                button type="submit" { "Filter" }
                a.reset href="/calls" { "Clear" }
            }
            @let exports = super::export::may_export(ctx.user.role);
            table.calls #calls {
                thead { tr {
                    @if exports { th { "export" } }
                    th { "id" } th { "started (" (offset_label(c.settings.utc_offset_minutes)) ")" } th { "kind" } th { "dialled" }
                    th { "caller" } th { "route" } th { "agency" } th { "length" } th { "end" }
                } }
                tbody {
                    @for call in calls {
                        @let r = &call.row;
                        tr {
                            // The tick belongs to the export form below the table.
                            @if exports { td { input type="checkbox" name="call" value=(r.id) form="export-calls" aria-label={ "export call " (r.id) }; } }
                            td { a href={ "/calls/" (r.id) } { (r.id) } }
                            td { (local(r.started_at, offset)) }
                            td { (r.kind) }
                            td { (r.dialled) }
                            td.caller { (caller_of(r)) }
                            td { (call.route.as_deref().unwrap_or("-")) }
                            td { @if call.agency_answered { "answered" } @else { "-" } }
                            td.num { @match r.ended_at { Some(end) => (seconds(end - r.started_at)), None => "live" } }
                            td { (r.end_reason.as_deref().unwrap_or("-")) }
                        }
                    }
                }
            }
            @if calls.is_empty() { p.quiet { "No call matches." } }
            @if exports && !calls.is_empty() {
                form.exportform #export-calls method="post" action="/calls/export" {
                    input type="hidden" name="csrf" value=(ctx.session.csrf);
                    label { "Export the ticked calls as one package (up to " (super::export::MAX_CALLS) "; reason: who asked, their reference, the purpose)"
                        input name="reason" required maxlength=(super::export::MAX_REASON_CHARS)
                            placeholder="e.g. Polresta Samarinda, letter B/123/XII/2026"; }
                    button type="submit" { "Export ticked calls" }
                }
            }
            @if older {
                @if let Some(last) = calls.last() {
                    p.paging { a href=(page_link(q, last.row.id)) rel="next" { "Older calls →" } }
                }
            }
        },
    ))
}

pub fn call(
    c: &Console,
    ctx: &Ctx,
    d: &CallDetail,
    messages: &[LadderMessage],
    live: Option<&LiveCall>,
    export_problem: Option<&str>,
) -> Response {
    let offset = c.offset_ms();
    let t = |ms: i64| local(ms, offset);
    let r = &d.call;
    let id = r.id;
    // The recorder logs the moment its file's 0:00 stands for; older logs: the answer.
    let rec_start = d
        .events
        .iter()
        .find(|e| e.kind == siaga_engine::timeline::CallEventKind::RecordingStarted.as_str())
        .map_or(r.answered_at.unwrap_or(r.started_at), |e| e.at);
    let recording_file = r
        .recording_path
        .as_deref()
        .and_then(|p| super::recording::resolve(&c.settings.recordings, p));
    let peaks = recording_file
        .as_deref()
        .and_then(|p| svg::peaks(p, svg::WAVE_WIDTH).ok());
    let marks: Vec<svg::Mark> = d
        .events
        .iter()
        .map(|e| svg::Mark {
            at_ms: e.at - rec_start,
            label: format!("{} {}: {}", t(e.at), e.kind, e.detail),
        })
        .collect();
    let reports: Vec<serde_json::Value> = d.locations.iter().map(|l| l.report.clone()).collect();
    let short_time = |ms: i64| {
        let s = local(ms, offset);
        s[11..].to_owned() + &format!(".{:03}", ms.rem_euclid(1000))
    };
    // The log's end wins: the engine's snapshot may be up to a second old.
    let state = match (&r.end_reason, live) {
        (Some(reason), _) => format!("ended: {reason}"),
        (None, Some(l)) => phase_text(l),
        (None, None) => "in progress".to_owned(),
    };
    html(layout(
        &format!("Call {id}"),
        Some(ctx),
        html! {
            h1 { "Call " (id) " " span.state { (state) } }
            // Evidence export: supervisors and auditors (agencies do not get the form; the
            // server refuses them too).
            @if super::export::may_export(ctx.user.role) {
                form.exportform #export method="post" action={ "/calls/" (id) "/export" } {
                    input type="hidden" name="csrf" value=(ctx.session.csrf);
                    label { "Export evidence (reason: who asked, their reference, the purpose)"
                        input name="reason" required maxlength=(super::export::MAX_REASON_CHARS)
                            placeholder="e.g. Polresta Samarinda, letter B/123/XII/2026"; }
                    button type="submit" { "Export evidence" }
                    @if let Some(p) = export_problem { p.problem role="alert" { (p) } }
                    p.quiet {
                        "One signed file (tar): the recording, the record, timeline, locations and SIP messages, "
                        "and a manifest of their SHA-256 digests, signed with the centre's key. Check it anywhere with "
                        code { "siaga evidence verify FILE" } "."
                    }
                }
            }
            section.grid {
                div.card {
                    h2 { "Call" }
                    dl {
                        dt { "kind" } dd { (r.kind) }
                        dt { "dialled" } dd { (r.dialled) }
                        dt { "entry" } dd { (r.entry.as_deref().unwrap_or("-")) }
                        dt { "started" } dd { (t(r.started_at)) " " (offset_label(c.settings.utc_offset_minutes)) }
                        dt { "answered" } dd { (r.answered_at.map(t).unwrap_or_else(|| "-".into())) }
                        dt { "ended" } dd { (r.ended_at.map(t).unwrap_or_else(|| "-".into())) " " (r.end_reason.as_deref().unwrap_or("")) }
                        @if let Some(detail) = &r.end_detail { dt { "why" } dd { (detail) } }
                        @if let Some(end) = r.ended_at { dt { "length" } dd { (seconds(end - r.started_at)) } }
                        dt { "Call-ID" } dd.mono { (r.call_id) }
                    }
                }
                div.card {
                    h2 { "Caller" }
                    dl {
                        dt { "asserted" } dd.mono { @if r.caller_pai.is_empty() { "-" } @else { (r.caller_pai.join(", ")) } }
                        dt { "from" } dd.mono { (r.caller_from.as_deref().unwrap_or("-")) }
                        @if let Some(p) = &r.caller_privacy { dt { "privacy" } dd { (p) " (kept for the centre; withheld outside the trust domain)" } }
                        dt { "contact" } dd.mono { (r.caller_contact.as_deref().unwrap_or("-")) }
                        dt { "user agent" } dd { (r.caller_user_agent.as_deref().unwrap_or("-")) }
                        dt { "source" } dd.mono { (r.source) " (" (r.transport) ")" }
                        @if let Some(n) = &d.earlier_calls {
                            dt { "earlier calls" } dd { (n.last_10_min) " in 10 min, " (n.last_hour) " in the hour, " (n.last_day) " in the day from " (n.number) }
                        }
                    }
                }
                div.card #class {
                    h2 { "Class" }
                    p { "current: " strong { (d.class.current.map_or("unclassified", |c| c.as_str())) } }
                    @if let Some(a) = &d.class.automatic {
                        p.quiet { "rules: " (a.class.as_str()) }
                        ul.reasons { @for reason in &a.reasons { li { (reason.to_string()) } } }
                    }
                    @for k in &d.class.corrections {
                        p.quiet { (t(k.at)) " " (k.by) ": " (k.from.map_or("unclassified", |c| c.as_str())) " → " (k.to.as_str()) " (" (k.why) ")" }
                    }
                    @if ctx.user.role == Role::Supervisor {
                        form.classform method="post" action={ "/calls/" (id) "/class" } {
                            input type="hidden" name="csrf" value=(ctx.session.csrf);
                            select name="class" {
                                @for class in siaga_dialplan::CallClass::ALL {
                                    option value=(class.as_str()) selected[d.class.current == Some(class)] { (class.as_str()) }
                                }
                            }
                            input name="why" placeholder="why (required)" required maxlength="500";
                            button type="submit" { "Correct the class" }
                        }
                    }
                }
            }
            section.card {
                h2 { "Location" }
                @if d.locations.is_empty() { p.quiet { "The caller sent no location." } }
                div.location {
                    @if let Some(map) = svg::map(&reports) { (map) }
                    div {
                        @for l in &d.locations {
                            p { strong { (t(l.at)) } " from the " (l.source) }
                            pre { (l.summary.trim_end()) }
                        }
                    }
                }
            }
            section.card #recording {
                h2 { "Recording" }
                @match (&r.recording_path, recording_file.is_some()) {
                    (None, _) => p.quiet { "No recording." },
                    (Some(_), false) => p.quiet { "The recording file is missing." },
                    (Some(_), true) => {
                        audio #player controls preload="metadata" src={ "/calls/" (id) "/recording" } {}
                        @if let Some(p) = &peaks { (svg::waveform(p, &marks)) }
                        p.quiet {
                            (r.recording_ms.map(seconds).unwrap_or_default())
                            " · sha256 " span.mono { (r.recording_sha256.as_deref().unwrap_or("not finished")) }
                            " · " a href={ "/calls/" (id) "/recording?download=1" } { "download" }
                        }
                    }
                }
            }
            section.card {
                h2 { "Timeline" }
                table.timeline {
                    @for e in &d.events {
                        tr { td.mono { (short_time(e.at)) } td { (e.kind) } td { (e.detail) } }
                    }
                }
            }
            section.card #ladder {
                h2 { "SIP ladder" }
                p.quiet { "Select an arrow to read the message." }
                div.ladder-box {
                    div.ladder-wrap { (svg::ladder(messages, short_time)) }
                    div.sipmsgs {
                        @for (i, m) in messages.iter().enumerate() {
                            section.sipmsg id={ "msg-" (i) } {
                                h3 { (short_time(m.at)) " leg " (m.leg) " " (if m.incoming { "from " } else { "to " }) (m.remote) " (local " (m.local) ")"
                                     @if let Some(n) = &m.note { " — " (n) } }
                                pre.raw { (m.raw) }
                            }
                        }
                    }
                }
            }
        },
    ))
}

pub fn summary(c: &Console, ctx: &Ctx, from: i64, to: i64, s: &Summary) -> Response {
    let offset = c.offset_ms();
    let day = |ms: i64| local(ms, offset)[..10].to_owned();
    let hours: Vec<(String, i64)> = s
        .per_hour
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let at = from + i as i64 * 3_600_000;
            (local(at, offset)[11..13].to_owned() + "h", *n)
        })
        .collect();
    let label_every = (hours.len() / 24).max(1) * 3;
    let pct = |v: &[i64], p: usize| -> String {
        let rank = (v.len() * p).div_ceil(100).max(1);
        v.get(rank - 1).map_or("-".to_owned(), |ms| wait(*ms))
    };
    let table = |rows: &[(String, i64)]| {
        html! {
            table.figures { @for (k, n) in rows { tr { td { (k) } td.num { (n) } } } }
        }
    };
    html(layout(
        "Summary",
        Some(ctx),
        html! {
            h1 { "Summary " (day(from)) @if to - from > 86_400_000 { " – " (day(to - 1)) } }
            form.filters method="get" action="/summary" {
                label { "First day" input name="from" placeholder="2026-12-05" value=(day(from)); }
                label { "Last day" input name="to" placeholder="2026-12-05" value=(day(to - 1)); }
                button type="submit" { "Show" }
            }
            section.card {
                h2 { "Calls per hour (" (offset_label(c.settings.utc_offset_minutes)) ")" }
                (svg::bars(&hours, label_every))
            }
            section.grid {
                div.card {
                    h2 { "By kind" }
                    (table(&s.by_kind))
                    p { "emergency calls: " (s.emergency) ", reached an agency: " (s.reached_agency) }
                    p { "call-backs outstanding: " a href={ "/calls?callback=1&from=" (day(from)) "&to=" (day(to)) } { (s.call_backs) } }
                }
                div.card {
                    h2 { "By end reason (emergency)" }
                    (table(&s.end_reasons))
                }
                div.card {
                    h2 { "By route (calls offered)" }
                    (table(&s.per_route))
                }
                div.card {
                    h2 { "Time to answer by agency" }
                    table.figures {
                        tr { th { "route" } th { "answered" } th { "median" } th { "p90" } }
                        @for (route, v) in &s.answer_ms_by_route {
                            tr { td { (route) } td.num { (v.len()) } td.num { (pct(v, 50)) } td.num { (pct(v, 90)) } }
                        }
                    }
                    p.quiet { "From the route's first ring to the agency's answer." }
                }
            }
        },
    ))
}

pub fn trail(c: &Console, ctx: &Ctx, rows: &[AccessRow]) -> Response {
    let offset = c.offset_ms();
    html(layout(
        "Access trail",
        Some(ctx),
        html! {
            h1 { "Access trail" }
            table.trail {
                thead { tr { th { "#" } th { "time (" (offset_label(c.settings.utc_offset_minutes)) ")" } th { "user" } th { "address" } th { "action" } th { "call" } th { "detail" } } }
                tbody {
                    @for r in rows {
                        tr {
                            td.num { (r.seq) }
                            td { (local(r.at_ms, offset)) }
                            td { (r.user) }
                            td.mono { (r.address) }
                            td { (r.action) }
                            td { @if let Some(call) = r.call { a href={ "/calls/" (call) } { (call) } } }
                            td { (r.detail) }
                        }
                    }
                }
            }
            @if let Some(last) = rows.last() {
                @if last.seq > 1 { p.paging { a href={ "/trail?before=" (last.seq) } { "Older entries →" } } }
            }
        },
    ))
}
