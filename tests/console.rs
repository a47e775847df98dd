//! The supervisors' console over HTTP, against a call log filled by real SIPp calls: filters,
//! scoping by role, recordings by Range, traversal attempts, CSRF, the sign-in throttle, and
//! what a stranger gets (401 or the sign-in page, never data).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::console::{
    AUDITOR, Client, ConsoleSetup, FIRE, LOOPBACK, POLICE, Reply, SUPERVISOR, evidence_verify,
    listed_ids, login_post, login_token, request, sign_in_reply,
};
use common::wait_until;

/// The ids of the calls page with `query`, in ascending order.
fn ids(c: &Client, query: &str) -> Vec<i64> {
    let r = c.get(&format!("/calls{query}"));
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    sorted(listed_ids(&r.text()))
}

/// The recording of `call` served whole (200, ranges accepted) and by Range (206, the right
/// bytes), as `file` holds it.
fn plays_whole_and_by_range(c: &Client, call: i64, file: &[u8]) {
    let whole = c.get(&format!("/calls/{call}/recording"));
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert!(whole.body == file, "the whole file, byte for byte");
    let part = c.get_with(
        &format!("/calls/{call}/recording"),
        &[("Range", "bytes=1000-1999")],
    );
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 1000-1999/{}", file.len()).as_str())
    );
    assert!(part.body == file[1000..2000], "bytes 1000–1999");
}

/// The access trail page (a supervisor's) lists the sign-ins, the call views, the plays, the
/// class change and the agency user's visit the tests made.
fn trail_shows_what_was_done(supervisor: &Client) {
    let trail = supervisor.get("/trail").text();
    for expected in [
        "sign_in",
        "call_view",
        "recording_play",
        "class_change",
        "pol",
    ] {
        assert!(trail.contains(expected), "the trail lacks {expected}");
    }
}

fn sorted(mut ids: Vec<i64>) -> Vec<i64> {
    ids.sort_unstable();
    ids
}

#[test]
fn the_console_finds_scopes_serves_and_guards_the_calls() {
    let s = ConsoleSetup::start();
    let (police, fire, abandoned) = (s.police, s.fire, s.abandoned);

    // --- A stranger: the sign-in page for pages, 401 for the rest, never data.
    let stranger = |method: &str, path: &str| request(s.http, LOOPBACK, method, path, &[], b"");
    for path in [
        "/calls",
        &format!("/calls/{police}"),
        "/summary",
        "/trail",
        "/",
    ] {
        let r = stranger("GET", path);
        assert!(
            matches!(r.status, 303 | 401),
            "{path}: {} {}",
            r.status,
            r.text()
        );
        assert!(!r.text().contains("6281111111111"), "{path} leaks data");
    }
    assert_eq!(stranger("GET", "/calls").header("location"), Some("/login"));
    for path in [
        format!("/calls/{police}/recording"),
        "/calls/live".to_owned(),
        "/no/such/page".to_owned(),
        "/recordings/".to_owned(),
    ] {
        assert_eq!(stranger("GET", &path).status, 401, "{path}");
    }
    assert_eq!(
        stranger("POST", &format!("/calls/{police}/class")).status,
        401
    );
    let forged = Client {
        addr: s.http,
        from: LOOPBACK,
        cookie: "siaga_session=00ff".to_owned(),
        csrf: String::new(),
    };
    assert_eq!(
        forged.get(&format!("/calls/{police}/recording")).status,
        401
    );

    // --- A supervisor signs in: the cookie is HttpOnly and SameSite=Strict (no Secure on
    // plain HTTP).
    let reply = sign_in_reply(s.http, LOOPBACK, SUPERVISOR.0, SUPERVISOR.1);
    let cookie = reply.header("set-cookie").expect("cookie").to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "{cookie}");
    let sup = s.client(SUPERVISOR);
    let all = sorted(vec![police, fire, abandoned]);
    assert_eq!(ids(&sup, ""), all);

    // --- Filters.
    assert_eq!(ids(&sup, "?caller=6281111111111"), [police]);
    assert_eq!(
        ids(&sup, "?caller=%2B62-822-2222-2222"),
        [fire],
        "number written as dialled"
    );
    assert_eq!(ids(&sup, "?caller=0899"), Vec::<i64>::new());
    assert_eq!(
        ids(&sup, "?caller=SIP%3A").len(),
        3,
        "letters match in any case"
    );
    assert_eq!(ids(&sup, "?route=police"), [police]);
    assert_eq!(ids(&sup, "?route=fire"), [fire]);
    assert_eq!(ids(&sup, "?dialled=112").len(), 3);
    assert_eq!(ids(&sup, "?dialled=110"), Vec::<i64>::new());
    let mut answered = vec![police, fire];
    answered.sort_unstable();
    assert_eq!(ids(&sup, "?answered=yes"), answered);
    assert_eq!(ids(&sup, "?answered=no"), [abandoned]);
    assert_eq!(
        ids(&sup, "?min_s=4"),
        answered,
        "the talkers' calls last over 5 s"
    );
    assert_eq!(ids(&sup, "?callback=1"), [abandoned]);
    let reason: String =
        s.gw.db()
            .query_row(
                "SELECT end_reason FROM calls WHERE id = ?1",
                [abandoned],
                |r| r.get(0),
            )
            .expect("reason");
    assert_eq!(ids(&sup, &format!("?end={reason}")), [abandoned]);
    assert_eq!(
        ids(&sup, "?from=2000-01-01&to=2000-01-02"),
        Vec::<i64>::new()
    );
    assert_eq!(ids(&sup, "?from=2000-01-01").len(), 3);
    let newest = *all.last().expect("calls");
    assert_eq!(ids(&sup, &format!("?before={newest}")), &all[..2], "paging");
    assert_eq!(sup.get("/calls?end=not_a_reason").status, 400);
    assert_eq!(sup.get("/calls?from=yesterday").status, 400);

    // --- A call's page: identity, ladder with verbatim messages of both legs, recording.
    let page = sup.get(&format!("/calls/{police}")).text();
    for expected in [
        "+6281111111111",
        "agency (B1)",
        "INVITE sip:",
        "id=\"waveform\"",
        &format!("/calls/{police}/recording"),
        "agency_answered",
    ] {
        assert!(page.contains(expected), "call page lacks {expected:?}");
    }

    // --- The recording: whole, by Range (206 with the right bytes), and refused ranges.
    let path: String =
        s.gw.db()
            .query_row(
                "SELECT recording_path FROM calls WHERE id = ?1",
                [police],
                |r| r.get(0),
            )
            .expect("path");
    let file = std::fs::read(&path).expect("the recording");
    plays_whole_and_by_range(&sup, police, &file);
    let tail = sup.get_with(
        &format!("/calls/{police}/recording"),
        &[("Range", "bytes=-44")],
    );
    assert!(tail.status == 206 && tail.body == file[file.len() - 44..]);
    let beyond = format!("bytes={}-", file.len());
    let refused = sup.get_with(&format!("/calls/{police}/recording"), &[("Range", &beyond)]);
    assert_eq!(refused.status, 416);

    // --- Traversal: files are found by call id only; nothing else answers.
    for path in [
        "/calls/..%2F..%2F..%2Fetc%2Fpasswd/recording",
        "/calls/../../../../etc/passwd",
        "/calls/1/recording/../../../../etc/passwd",
        "/assets/../../Cargo.toml",
        "/assets/..%2F..%2FCargo.toml",
        "/calls/1%20OR%201=1",
        "/calls/-1/recording",
        "/recordings/",
        "/calls/%2e%2e/recording",
    ] {
        let r = sup.get(path);
        assert!(matches!(r.status, 400 | 404), "{path}: {}", r.status);
        let text = r.text();
        assert!(
            !text.contains("root:") && !text.contains("[package]"),
            "{path} leaked a file"
        );
    }

    // --- Agencies see only the calls offered to their routes; another's is "not found".
    let pol = s.client(POLICE);
    assert_eq!(ids(&pol, ""), [police]);
    assert_eq!(ids(&pol, "?route=fire"), Vec::<i64>::new());
    assert_eq!(pol.get(&format!("/calls/{police}")).status, 200);
    for path in [
        format!("/calls/{fire}"),
        format!("/calls/{fire}/recording"),
        format!("/calls/{abandoned}"),
        "/calls/999999".to_owned(),
    ] {
        assert_eq!(pol.get(&path).status, 404, "{path}");
    }
    let dam = s.client(FIRE);
    assert_eq!(ids(&dam, ""), [fire]);
    assert_eq!(dam.get(&format!("/calls/{police}/recording")).status, 404);
    assert_eq!(
        pol.get("/trail").status,
        403,
        "the trail is for supervisors"
    );
    let summary = pol.get("/summary").text();
    assert!(
        summary.contains("<td>police</td>") && !summary.contains("<td>fire</td>"),
        "the agency's summary counts only its calls"
    );
    let whole = sup.get("/summary").text();
    assert!(whole.contains("<td>police</td>") && whole.contains("<td>fire</td>"));
    assert!(
        whole.contains("emergency calls: 3, reached an agency: 2"),
        "the day's figures"
    );

    // --- Class corrections: supervisors only, with the session's CSRF token.
    let class_url = format!("/calls/{fire}/class");
    let corrections = || -> i64 {
        s.gw.db()
            .query_row("SELECT count(*) FROM call_class_corrections", [], |r| {
                r.get(0)
            })
            .expect("count")
    };
    assert_eq!(
        sup.post(&class_url, "class=prank&why=laughing").status,
        403,
        "no token"
    );
    assert_eq!(
        sup.post(&class_url, "csrf=0123&class=prank&why=laughing")
            .status,
        403,
        "a wrong token"
    );
    assert_eq!(
        sup.post(
            &class_url,
            &format!("csrf={}&class=prank&why=laughing", dam.csrf)
        )
        .status,
        403,
        "another session's token"
    );
    let auditor = s.client(AUDITOR);
    assert_eq!(
        auditor
            .post(
                &class_url,
                &format!("csrf={}&class=prank&why=x", auditor.csrf)
            )
            .status,
        403,
        "an auditor reads only"
    );
    assert_eq!(corrections(), 0);
    let ok = sup.post(
        &class_url,
        &format!("csrf={}&class=prank&why=laughing", sup.csrf),
    );
    assert_eq!(ok.status, 303, "{}", ok.text());
    assert_eq!(corrections(), 1);
    assert!(sup.get(&format!("/calls/{fire}")).text().contains("prank"));

    // --- The access trail shows who looked at what, to supervisors.
    trail_shows_what_was_done(&sup);
    let db = s.gw.db();
    let views: i64 = db
        .query_row(
            "SELECT count(*) FROM access_trail WHERE action = 'call_view' AND user_name = 'pol' AND call = ?1",
            [police],
            |r| r.get(0),
        )
        .expect("trail");
    assert_eq!(views, 1);

    // --- A live call shows with its state while it lasts.
    let addr = s.gw.udp;
    let holder = std::thread::spawn(move || {
        common::sipp(
            addr,
            "uac_call.xml",
            false,
            &["-s", "112", "-m", "1", "-d", "5000"],
        )
    });
    wait_until(
        "a live call in the console",
        Duration::from_secs(20),
        || {
            let r = sup.get("/calls/live").text();
            r.contains("in the IVR menu") || r.contains("ringing")
        },
    );
    common::assert_sipp_ok(&holder.join().expect("sipp"), "the held call");

    // --- Sign-out ends the session.
    assert_eq!(sup.post("/logout", "csrf=wrong").status, 403);
    assert_eq!(
        sup.post("/logout", &format!("csrf={}", sup.csrf)).status,
        303
    );
    assert_eq!(
        sup.get("/calls").status,
        303,
        "the old cookie no longer works"
    );

    // --- Failed sign-ins slow down the account and the address.
    let other: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    for _ in 0..4 {
        assert_eq!(sign_in_reply(s.http, LOOPBACK, "sri", "guess").status, 401);
    }
    let held = sign_in_reply(s.http, LOOPBACK, SUPERVISOR.0, SUPERVISOR.1);
    assert_eq!(held.status, 429, "even the right password waits");
    assert!(held.header("retry-after").is_some());
    assert_eq!(
        sign_in_reply(s.http, other, SUPERVISOR.0, SUPERVISOR.1).status,
        429,
        "the account waits from any address"
    );
    assert_eq!(
        sign_in_reply(s.http, LOOPBACK, AUDITOR.0, AUDITOR.1).status,
        429,
        "the address waits for any account"
    );
    assert_eq!(
        sign_in_reply(s.http, other, AUDITOR.0, AUDITOR.1).status,
        303,
        "another account from another address is not held"
    );
    let failed: i64 = db
        .query_row(
            "SELECT count(*) FROM access_trail WHERE action = 'sign_in_failed' AND user_name = 'sri'",
            [],
            |r| r.get(0),
        )
        .expect("trail");
    assert_eq!(
        failed, 4,
        "each checked failure is in the trail; held tries are not checked"
    );
}

/// The sign-in form's own token (login CSRF): a sign-in without the pair the sign-in page gave
/// is refused (403) before the throttle and the password, so forged posts lock nobody out.
fn the_sign_in_form_needs_its_token(s: &ConsoleSetup) {
    let page = request(s.http, LOOPBACK, "GET", "/login", &[], b"");
    let cookie = page.header("set-cookie").expect("the form's cookie");
    assert!(
        cookie.starts_with("siaga_login=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && !cookie.contains("Secure"),
        "{cookie}"
    );
    let form = |csrf: &str| {
        format!(
            "name={}&password={}&csrf={csrf}",
            SUPERVISOR.0, SUPERVISOR.1
        )
    };
    let (cookie, field) = login_token(s.http, LOOPBACK);
    let (other_cookie, _) = login_token(s.http, LOOPBACK);
    for (what, cookie, body) in [
        ("no cookie, no field", None, form("")),
        ("the field without its cookie", None, form(&field)),
        (
            "the cookie without the field",
            Some(cookie.as_str()),
            form(""),
        ),
        (
            "another form's cookie",
            Some(other_cookie.as_str()),
            form(&field),
        ),
        (
            "the field mangled",
            Some(cookie.as_str()),
            form(&field.replace('a', "b")),
        ),
    ] {
        let r = login_post(s.http, LOOPBACK, cookie, &body);
        assert_eq!(r.status, 403, "{what}");
        assert!(
            !r.headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("set-cookie")
                    && v.starts_with("siaga_session=")),
            "{what}: no session"
        );
        assert!(r.text().contains("sign in again"), "{what}: {}", r.text());
    }
    for _ in 0..6 {
        let forged = login_post(s.http, LOOPBACK, None, "name=sri&password=guess");
        assert_eq!(forged.status, 403);
    }
    let failed = s
        .value("SELECT count(*) FROM access_trail WHERE action = 'sign_in_failed'")
        .unwrap_or_default();
    assert_eq!(failed, "0", "refused posts are not tries");
    let ok = login_post(s.http, LOOPBACK, Some(&cookie), &form(&field));
    assert_eq!(
        ok.status,
        303,
        "the form's pair signs in, unthrottled: {}",
        ok.text()
    );
}

/// The temporary directories the console builds packages in that are still there.
fn staging_dirs(s: &ConsoleSetup) -> usize {
    std::fs::read_dir(&s.tmp)
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("siaga-console-export-")
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn the_sign_in_form_has_its_own_token() {
    let s = ConsoleSetup::start();
    the_sign_in_form_needs_its_token(&s);
}

/// An export's reply: a tar download, saved under its own name in a new directory, that
/// `siaga evidence verify` accepts; returns the directory, the file and what verify said.
fn verified_download(
    s: &ConsoleSetup,
    reply: &Reply,
) -> (tempfile::TempDir, std::path::PathBuf, String) {
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/x-tar"));
    let name = reply
        .header("content-disposition")
        .and_then(|d| d.split("filename=\"").nth(1))
        .and_then(|n| n.strip_suffix('"'))
        .expect("a download with a file name")
        .to_owned();
    let dir = tempfile::tempdir().expect("dir");
    let archive = dir.path().join(&name);
    std::fs::write(&archive, &reply.body).expect("save the download");
    let (good, said) = evidence_verify(&s.keys.join("centre.pub"), &archive);
    assert!(good, "{said}");
    (dir, archive, said)
}

/// Evidence export from a call's page: supervisors and auditors get one tar file that
/// `siaga evidence verify` accepts, as it is and unpacked; without the CSRF token, as an
/// agency or without a reason nothing is exported; the export is on the access trail.
#[test]
fn supervisors_and_auditors_export_a_call_as_one_verifiable_file() {
    let s = ConsoleSetup::start();

    let police = s.police;
    let url = format!("/calls/{police}/export");
    let exports = || {
        s.value("SELECT count(*) FROM access_trail WHERE action = 'export'")
            .unwrap_or_default()
    };
    let sup = s.client(SUPERVISOR);
    let page = sup.get(&format!("/calls/{police}")).text();
    assert!(page.contains("Export evidence") && page.contains(&format!("action=\"{url}\"")));

    // --- Refused: a stranger, no token, a wrong token, an agency (no form either), an empty
    // reason.
    let stranger = request(
        s.http,
        LOOPBACK,
        "POST",
        &url,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"reason=court",
    );
    assert_eq!(stranger.status, 401, "a stranger");
    assert_eq!(sup.post(&url, "reason=court").status, 403, "no token");
    assert_eq!(
        sup.post(&url, "csrf=0123&reason=court").status,
        403,
        "a wrong token"
    );
    let pol = s.client(POLICE);
    assert!(
        !pol.get(&format!("/calls/{police}"))
            .text()
            .contains("Export evidence"),
        "no export form for an agency"
    );
    let refused = pol.post(&url, &format!("csrf={}&reason=our+own+call", pol.csrf));
    assert_eq!(refused.status, 403, "an agency does not export");
    assert!(refused.header("content-disposition").is_none());
    let empty = sup.post(&url, &format!("csrf={}&reason=+++", sup.csrf));
    assert_eq!(empty.status, 422);
    assert!(empty.header("content-disposition").is_none());
    assert!(
        empty.text().contains("Give a reason for the export")
            && empty.text().contains("id=\"export\""),
        "the form again with its message"
    );
    assert_eq!(exports(), "0", "nothing exported");
    assert_eq!(staging_dirs(&s), 0, "nothing left behind");

    // --- A supervisor's export: one tar file named after the call and the time, which
    // `siaga evidence verify` accepts as it is and unpacked.
    let reason = "Polresta Samarinda, letter B/123/XII/2026";
    let ok = sup.post(
        &url,
        &format!(
            "csrf={}&reason=Polresta+Samarinda%2C+letter+B%2F123%2FXII%2F2026",
            sup.csrf
        ),
    );
    let (dir, archive, said) = verified_download(&s, &ok);
    let name = archive
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("evidence-") && name.ends_with(&format!("Z-call-{police}.tar")),
        "{name}"
    );
    assert!(said.contains(reason) && said.contains("sri"), "{said}");
    let untar = std::process::Command::new("tar")
        .arg("xf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .status()
        .expect("tar");
    assert!(untar.success());
    let (good, said) = evidence_verify(
        &s.keys.join("centre.pub"),
        &dir.path().join(name.trim_end_matches(".tar")),
    );
    assert!(good, "the unpacked directory: {said}");
    assert_eq!(staging_dirs(&s), 0, "the server kept no copy");

    // --- On the access trail: who, from where, why.
    let trail = s
        .value(&format!(
            "SELECT user_name || ' ' || address || ' ' || detail FROM access_trail WHERE action = 'export' AND call = {police}"
        ))
        .expect("the export on the trail");
    assert!(
        trail.starts_with("sri 127.0.0.1 ") && trail.contains(reason),
        "{trail}"
    );
    let page = sup.get("/trail").text();
    assert!(
        page.contains("export") && page.contains(reason),
        "the trail page shows it"
    );

    // --- An auditor exports too.
    let auditor = s.client(AUDITOR);
    let r = auditor.post(
        &url,
        &format!("csrf={}&reason=quality+review", auditor.csrf),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(exports(), "2");
}

/// Several calls at once from the list (a court's request for every call of one incident):
/// the ticked calls in one package that `siaga evidence verify` accepts, each call's export on
/// the access trail; no ticks, too many, a call the user may not see, no reason or an agency
/// export nothing.
#[test]
fn a_supervisor_exports_the_calls_ticked_in_the_list_as_one_package() {
    let s = ConsoleSetup::start();
    let (police, fire) = (s.police, s.fire);
    let exports = || {
        s.value("SELECT count(*) FROM access_trail WHERE action = 'export'")
            .unwrap_or_default()
    };
    let sup = s.client(SUPERVISOR);
    let list = sup.get("/calls").text();
    assert!(
        list.contains(&format!(
            "name=\"call\" value=\"{police}\" form=\"export-calls\""
        )) && list.contains("action=\"/calls/export\""),
        "a tick per call and the export form"
    );
    let pol = s.client(POLICE);
    assert!(
        !pol.get("/calls").text().contains("export-calls"),
        "no ticks and no form for an agency"
    );
    let reason = "reason=Pengadilan+Negeri+Samarinda%2C+perkara+12%2F2026";
    let post = |who: &Client, body: &str| who.post("/calls/export", body);
    assert_eq!(
        post(&pol, &format!("csrf={}&call={police}&{reason}", pol.csrf)).status,
        403,
        "an agency does not export"
    );
    assert_eq!(
        post(&sup, &format!("call={police}&{reason}")).status,
        403,
        "no token"
    );
    let none = post(&sup, &format!("csrf={}&{reason}", sup.csrf));
    assert_eq!(none.status, 422);
    assert!(none.text().contains("Tick the calls"), "{}", none.text());
    let many: String = (1..=26).map(|id| format!("&call={id}")).collect();
    let too_many = post(&sup, &format!("csrf={}{many}&{reason}", sup.csrf));
    assert_eq!(too_many.status, 422);
    assert!(
        too_many.text().contains("At most 25 calls"),
        "{}",
        too_many.text()
    );
    assert_eq!(
        post(
            &sup,
            &format!("csrf={}&call={police}&call=99999&{reason}", sup.csrf)
        )
        .status,
        404,
        "a call that is not in the log"
    );
    let no_reason = post(&sup, &format!("csrf={}&call={police}&reason=", sup.csrf));
    assert_eq!(no_reason.status, 422);
    assert!(no_reason.text().contains("Give a reason"));
    assert_eq!(exports(), "0", "nothing exported");

    // Two ticked calls (one ticked twice): one package holding both, verified.
    let ok = post(
        &sup,
        &format!(
            "csrf={}&call={fire}&call={police}&call={fire}&{reason}",
            sup.csrf
        ),
    );
    let (_dir, archive, _) = verified_download(&s, &ok);
    let (low, high) = (police.min(fire), police.max(fire));
    assert!(
        archive
            .to_string_lossy()
            .ends_with(&format!("Z-call-{low}-{high}.tar")),
        "{}",
        archive.display()
    );
    let listing = std::process::Command::new("tar")
        .arg("tf")
        .arg(&archive)
        .output()
        .expect("tar");
    let members = String::from_utf8_lossy(&listing.stdout);
    for call in [police, fire] {
        assert!(
            members.contains(&format!("calls/{call}/call.json")),
            "call {call} in the package: {members}"
        );
    }
    assert_eq!(exports(), "2", "one trail entry per call exported");
    assert_eq!(staging_dirs(&s), 0, "the server kept no copy");
}

/// The same console on a gateway whose call log is a shared PostgreSQL: accounts made by
/// `siaga users add --log-url`, the SIPp calls found and filtered, a call's page, its
/// recording served by Range, an agency's scope, the summary, a class correction and the
/// access trail — every query of the console, on the other store.
#[test]
fn the_console_works_on_a_postgresql_call_log() {
    let mut s = ConsoleSetup::start_on_postgres();
    let (police, fire, abandoned) = (s.police, s.fire, s.abandoned);
    let sup = s.client(SUPERVISOR);
    let all = sorted(vec![police, fire, abandoned]);
    assert_eq!(ids(&sup, ""), all);
    assert_eq!(ids(&sup, "?caller=%2B62-811-1111-1111"), [police]);
    assert_eq!(
        ids(&sup, "?caller=SIP%3A"),
        all,
        "letters match in any case"
    );
    assert_eq!(ids(&sup, "?route=fire"), [fire]);
    assert_eq!(ids(&sup, "?answered=no"), [abandoned]);
    assert_eq!(ids(&sup, "?callback=1"), [abandoned]);
    assert_eq!(ids(&sup, "?from=2000-01-01").len(), 3);
    let newest = *all.last().expect("calls");
    assert_eq!(ids(&sup, &format!("?before={newest}")), &all[..2], "paging");

    let page = sup.get(&format!("/calls/{police}"));
    assert_eq!(page.status, 200);
    let page = page.text();
    for expected in ["+6281111111111", "INVITE sip:", "id=\"waveform\""] {
        assert!(page.contains(expected), "call page lacks {expected:?}");
    }

    let path = s
        .value(&format!(
            "SELECT recording_path FROM calls WHERE id = {police}"
        ))
        .expect("the recording's path");
    let file = std::fs::read(&path).expect("the recording");
    plays_whole_and_by_range(&sup, police, &file);

    let pol = s.client(POLICE);
    assert_eq!(ids(&pol, ""), [police]);
    assert_eq!(pol.get(&format!("/calls/{police}")).status, 200);
    assert_eq!(pol.get(&format!("/calls/{fire}")).status, 404);
    let summary = sup.get("/summary").text();
    assert!(
        summary.contains("emergency calls: 3, reached an agency: 2"),
        "the day's figures"
    );
    let ok = sup.post(
        &format!("/calls/{fire}/class"),
        &format!("csrf={}&class=prank&why=laughing", sup.csrf),
    );
    assert_eq!(ok.status, 303, "{}", ok.text());
    trail_shows_what_was_done(&sup);
    assert_eq!(
        s.value(&format!(
            "SELECT count(*) FROM access_trail WHERE action = 'call_view' AND user_name = 'pol' AND call = {police}"
        ))
        .as_deref(),
        Some("1")
    );
    // The console's kept PostgreSQL connections close cleanly when the gateway stops.
    s.gw.stop();
    assert!(!s.gw.log().contains("panicked"), "{}", s.gw.log());
}
