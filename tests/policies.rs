//! Number lists and policies against the real binary (issue 12): a supervisor blocks or
//! watches a number with `siaga numbers`, the running gateway picks it up without a restart,
//! and SIPp callers from that number meet the policy; a blocked number that keeps calling
//! reaches a SIPp call-taker.

mod common;

use std::path::Path;
use std::process::Command;

use common::{AgencyPorts, Gateway, assert_sipp_ok, finish_agency, sipp_agency, test_plan};

/// SIPp's callers send From: <sip:+6281234567890@…>; supervisors type it nationally.
const SIPP_NUMBER_NATIONAL: &str = "0812-3456-7890";
const SIPP_NUMBER: &str = "+6281234567890";

/// The default plan on free ports, silent callers handed to the call-takers 5 s after the menu
/// starts (offer_after), so a test call is short.
fn start() -> (Gateway, AgencyPorts, tempfile::TempDir, std::path::PathBuf) {
    let ports = AgencyPorts::new();
    let plan_dir = tempfile::tempdir().expect("dir");
    let plan = test_plan(
        plan_dir.path(),
        &ports,
        &[("offer_after = \"15s\"", "offer_after = \"5s\"")],
    );
    let gw = Gateway::start(&["--dialplan", plan.to_str().expect("utf8 path")]);
    (gw, ports, plan_dir, plan)
}

/// `siaga numbers ARGS --db DB --dialplan PLAN` (the plan gives the country code and limits).
fn numbers(db: &Path, plan: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_siaga"));
    cmd.arg("numbers").args(args).arg("--db").arg(db);
    if !matches!(args.first(), Some(&"list")) {
        cmd.arg("--dialplan").arg(plan);
    }
    cmd.output().expect("run siaga numbers")
}

/// A supervisor ("sari") puts `number` on a list (`watch` or `block`) for `duration`.
fn put_on_list(
    db: &Path,
    plan: &Path,
    change: &str,
    number: &str,
    duration: &str,
    why: &str,
) -> String {
    let args = [
        change, number, "--for", duration, "--by", "sari", "--why", why,
    ];
    ok_text(&numbers(db, plan, &args))
}

fn ok_text(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "siaga numbers failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `(kind, detail)` of a call's events matching the SQL condition `kinds`, in order.
fn events_where(db: &rusqlite::Connection, call: i64, kinds: &str) -> Vec<(String, String)> {
    db.prepare(&format!(
        "SELECT kind, detail FROM call_events WHERE call = ?1 AND ({kinds}) ORDER BY id"
    ))
    .expect("query")
    .query_map([call], |r| Ok((r.get(0)?, r.get(1)?)))
    .expect("rows")
    .collect::<Result<_, _>>()
    .expect("rows")
}

/// `(kind, detail)` of a call's policy, prompt and agency events, in order.
fn timeline(db: &rusqlite::Connection, call: i64) -> Vec<(String, String)> {
    events_where(
        db,
        call,
        "kind LIKE 'policy_%' OR kind IN ('prompt', 'menu', 'agency_answered')",
    )
}

#[test]
fn a_blocked_number_is_let_go_but_reaches_a_call_taker_when_it_keeps_calling() {
    let (mut gw, ports, _plan_dir, plan) = start();
    let db = gw.db_path();
    let out = put_on_list(
        &db,
        &plan,
        "block",
        SIPP_NUMBER_NATIONAL,
        "2h",
        "prank calls",
    );
    assert!(
        out.starts_with(&format!("blocked {SIPP_NUMBER} for 2h")),
        "{out}"
    );
    // The running gateway reads the list on its own (no restart, no signal).
    gw.stdout_line("number lists: 1 entries in force");

    // Blocked twice: the announcement, then the gateway's BYE; each call is logged.
    for call in [1, 2] {
        let sipp = gw.sipp("uac_gateway_bye.xml", false, &["-s", "112", "-m", "1"]);
        assert_sipp_ok(&sipp, "a blocked caller is hung up on");
        assert_eq!(gw.wait_call_ended(call), "blocked_number");
        let db = gw.db();
        let events = timeline(&db, call);
        assert_eq!(events[0].0, "policy_blocked", "{events:?}");
        assert!(
            events[0].1.contains("set by sari (prank calls)"),
            "{events:?}"
        );
        assert!(
            events[1..]
                .iter()
                .all(|(k, d)| k == "prompt" && d.contains("number-blocked.wav")),
            "only the blocked announcement, no menu: {events:?}"
        );
    }

    // Supervisors find them like any other call.
    let shown = gw.calls_cli(&["show", "1"]);
    assert!(
        shown.contains("blocked_number") && shown.contains("policy_blocked"),
        "{shown}"
    );
    let blocked = gw.calls_json(&["list", "--end", "blocked_number"]);
    assert_eq!(blocked.as_array().map(Vec::len), Some(2), "{blocked}");
    let call_backs = gw.calls_json(&["list", "--call-backs"]);
    assert_eq!(call_backs.as_array().map(Vec::len), Some(0), "{call_backs}");

    // The third call within 15 minutes reaches a call-taker (a SIPp agency).
    let desk = sipp_agency("agency_answer.xml", ports.calltaker, &["-m", "1"]);
    let caller = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "25000"],
    );
    assert_sipp_ok(&caller, "the third call");
    finish_agency(desk, "the call-taker desk");
    assert_eq!(gw.wait_call_ended(3), "caller_hung_up");
    let db = gw.db();
    let events = timeline(&db, 3);
    assert_eq!(events[0].0, "policy_block_overridden", "{events:?}");
    assert!(events[0].1.contains("3 calls within 15min"), "{events:?}");
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    let answered = kinds.iter().position(|k| *k == "agency_answered");
    assert!(answered.is_some(), "a call-taker answered: {events:?}");
    assert!(
        events[1].1.contains("misuse-warning.wav"),
        "warned first: {events:?}"
    );
    gw.stop();

    // The lists: live, history, and unblocking.
    let list = ok_text(&numbers(&db_path(&gw), &plan, &["list"]));
    assert!(
        list.contains(SIPP_NUMBER) && list.contains("block"),
        "{list}"
    );
    let out = ok_text(&numbers(
        &db_path(&gw),
        &plan,
        &[
            "unblock",
            "+62 812 3456 7890",
            "--by",
            "budi",
            "--why",
            "talked to the family",
        ],
    ));
    assert!(out.contains("taken off the block list"), "{out}");
    assert_eq!(
        ok_text(&numbers(&db_path(&gw), &plan, &["list"])),
        "no entries\n"
    );
    let all = ok_text(&numbers(&db_path(&gw), &plan, &["list", "--all"]));
    assert!(all.contains("unblock") && all.contains("budi"), "{all}");
}

#[test]
fn sighup_applies_a_list_change_at_once() {
    // Lists re-read only hourly: a change shows up before that only through the SIGHUP.
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("siaga.toml");
    std::fs::write(&config, "[calls]\nnumber_lists_every_s = 3600\n").expect("config");
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplans/default.toml");
    let mut gw = Gateway::start(&["--config", config.to_str().expect("utf8 path")]);
    // The read at start, before the change.
    gw.stdout_line("number lists: 0 entries in force");
    put_on_list(&gw.db_path(), &plan, "block", SIPP_NUMBER, "1h", "pranks");
    let hup = Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    gw.stdout_line("number lists: 1 entries in force");
    let sipp = gw.sipp("uac_gateway_bye.xml", false, &["-s", "112", "-m", "1"]);
    assert_sipp_ok(&sipp, "blocked right after the SIGHUP");
    assert_eq!(gw.wait_call_ended(1), "blocked_number");
}

fn db_path(gw: &Gateway) -> std::path::PathBuf {
    gw.db_path()
}

#[test]
fn a_watched_number_hears_the_warning_then_reaches_the_agency() {
    let (mut gw, ports, _plan_dir, plan) = start();
    let db = gw.db_path();
    put_on_list(&db, &plan, "watch", SIPP_NUMBER, "1h", "hoax calls");
    gw.stdout_line("number lists: 1 entries in force");
    let desk = sipp_agency("agency_answer.xml", ports.calltaker, &["-m", "1"]);
    let caller = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "25000"],
    );
    assert_sipp_ok(&caller, "the watched caller");
    finish_agency(desk, "the call-taker desk");
    gw.wait_call_ended(1);
    let events = timeline(&gw.db(), 1);
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds[0], "policy_watched", "{events:?}");
    assert!(events[0].1.contains("hoax calls"), "{events:?}");
    // The warning in both languages, then the menu, then a call-taker.
    assert!(events[1].1.contains("/id/misuse-warning.wav"), "{events:?}");
    assert!(events[2].1.contains("/en/misuse-warning.wav"), "{events:?}");
    let menu = kinds.iter().position(|k| *k == "menu").expect("the menu");
    let answered = kinds
        .iter()
        .position(|k| *k == "agency_answered")
        .expect("a call-taker answered");
    assert!(2 < menu && menu < answered, "{events:?}");
}

#[test]
fn blocks_are_capped_by_the_plan_and_need_who_and_why() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("siaga.db");
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplans/default.toml");
    let too_long = numbers(
        &db,
        &plan,
        &[
            "block",
            "0812-3456-789",
            "--for",
            "8d",
            "--by",
            "sari",
            "--why",
            "x",
        ],
    );
    assert!(!too_long.status.success());
    let err = String::from_utf8_lossy(&too_long.stderr);
    assert!(
        err.contains("longer than the plan allows (7d)") && err.contains("max_block"),
        "{err}"
    );
    let no_why = numbers(
        &db,
        &plan,
        &["watch", "0812-3456-789", "--by", "sari", "--why", " "],
    );
    assert!(!no_why.status.success());
    let not_a_number = numbers(
        &db,
        &plan,
        &["block", "anonymous", "--by", "sari", "--why", "x"],
    );
    assert!(!not_a_number.status.success());
    // The default entry lasts 24 h; national and international forms are one number.
    let out = ok_text(&numbers(
        &db,
        &plan,
        &["block", "0812-3456-789", "--by", "sari", "--why", "pranks"],
    ));
    assert!(out.starts_with("blocked +628123456789 for 1d"), "{out}");
    let out = ok_text(&numbers(
        &db,
        &plan,
        &[
            "watch",
            "+628123456789",
            "--for",
            "30min",
            "--by",
            "budi",
            "--why",
            "lighter",
        ],
    ));
    assert!(out.starts_with("watching +628123456789 for 30min"), "{out}");
    let list = ok_text(&numbers(&db, &plan, &["list"]));
    assert_eq!(list.lines().count(), 2, "one live entry per number: {list}");
    assert!(list.contains("watch") && list.contains("budi"), "{list}");
    let json: serde_json::Value =
        serde_json::from_str(&ok_text(&numbers(&db, &plan, &["list", "--all", "--json"])))
            .expect("json");
    assert_eq!(json.as_array().map(Vec::len), Some(2));
    let again = numbers(
        &db,
        &plan,
        &["unblock", "+6299999999", "--by", "sari", "--why", "x"],
    );
    assert!(!again.status.success(), "a number on no list");
}

/// `(kind, detail)` of a call's flood-challenge events, in order.
fn challenge_events(db: &rusqlite::Connection, call: i64) -> Vec<(String, String)> {
    events_where(db, call, "kind LIKE 'challenge_%'")
}

/// The challenge events of call `call` once it has ended, checked to be its start and then
/// `outcome` (`challenge_passed` or `challenge_failed`).
fn ended_challenge(gw: &Gateway, call: i64, outcome: &str) -> Vec<(String, String)> {
    gw.wait_call_ended(call);
    let events = challenge_events(&gw.db(), call);
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["challenge_started", outcome], "{events:?}");
    events
}

/// A gateway whose plan takes three new emergency calls a minute for an attack (the default
/// is 120), after three quick calls from SIPp's number: the third started the attack and,
/// being that number's third call in ten minutes (limit 2), was challenged.
fn three_calls_a_minute_are_an_attack(ports: &AgencyPorts) -> (Gateway, tempfile::TempDir) {
    let plan_dir = tempfile::tempdir().expect("dir");
    let plan = test_plan(
        plan_dir.path(),
        ports,
        &[(
            "attack_calls = { calls = 120, within = \"1min\" }",
            "attack_calls = { calls = 3, within = \"1min\" }",
        )],
    );
    let gw = Gateway::start(&["--dialplan", plan.to_str().expect("utf8 path")]);
    assert_sipp_ok(
        &gw.sipp(
            "uac_call.xml",
            false,
            &["-s", "112", "-m", "3", "-d", "300"],
        ),
        "three quick calls",
    );
    common::wait_until(
        "the attack and the challenge in the log",
        std::time::Duration::from_secs(10),
        || {
            !common::gateway_events(&gw.db_path(), "attack_started").is_empty()
                && !challenge_events(&gw.db(), 3).is_empty()
        },
    );
    (gw, plan_dir)
}

#[test]
fn under_a_flood_a_number_beyond_its_limit_is_challenged_and_a_caller_who_talks_and_presses_a_key_gets_through()
 {
    let ports = AgencyPorts::new();
    let (mut gw, _plan_dir) = three_calls_a_minute_are_an_attack(&ports);
    let started = common::gateway_events(&gw.db_path(), "attack_started");
    assert_eq!(started, ["new emergency calls reached 3 calls within 1min"]);
    assert!(challenge_events(&gw.db(), 1).is_empty() && challenge_events(&gw.db(), 2).is_empty());
    let third = challenge_events(&gw.db(), 3);
    assert_eq!(third[0].0, "challenge_started");
    assert!(
        third[0]
            .1
            .contains("number made 3 calls, limit 2 calls within 10min"),
        "{third:?}"
    );

    // A fourth call from the number: challenged, the caller talks and presses 1 — passed, the
    // menu routes it to the police (a SIPp agency), who answer.
    let desk = sipp_agency("agency_answer.xml", ports.police, &["-m", "1"]);
    let caller = common::sipp_caller_with_voice(
        gw.udp,
        "uac_two_digits.xml",
        &[
            "-s", "112", "-key", "digit", "1", "-key", "digit2", "1", "-m", "1", "-d", "3000",
        ],
    );
    assert_sipp_ok(&caller, "the challenged caller who talks and presses a key");
    finish_agency(desk, "the police desk");
    let fourth = ended_challenge(&gw, 4, "challenge_passed");
    assert!(
        fourth[1].1.starts_with("key 1") || fourth[1].1.starts_with("speech"),
        "{fourth:?}"
    );
    let answered: i64 = gw
        .db()
        .query_row(
            "SELECT count(*) FROM call_events WHERE call = 4 AND kind = 'agency_answered'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(answered, 1, "the police answered the caller who passed");
    gw.stop();
    // The supervisors' report lists the attack.
    let report: serde_json::Value =
        serde_json::from_str(&gw.cli(&["report", "--format", "json"])).expect("json");
    let attacks = report["attacks_detected"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        attacks
            .iter()
            .any(|a| a.to_string().contains("attack_started")),
        "{report}"
    );
}

/// A caller who streams `audio` (raw A-law, 20 ms packets, looped) for `hold_ms`, then hangs
/// up: SIPp's media_call.xml with an `rtp_stream` in place of its pcap.
fn caller_streaming(gw: &Gateway, audio: &[u8], hold_ms: u32) -> std::process::Output {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("audio.alaw"), audio).expect("audio");
    let scenario = std::fs::read_to_string(common::scenario_path("media_call.xml"))
        .expect("media_call.xml")
        .replace(
            r#"<exec play_pcap_audio="/usr/share/sip-tester/g711a.pcap"/>"#,
            r#"<exec rtp_stream="audio.alaw,-1,8"/>"#,
        );
    let path = dir.path().join("caller.xml");
    std::fs::write(&path, scenario).expect("scenario");
    let hold = hold_ms.to_string();
    common::sipp_caller_streaming_from(
        dir.path(),
        gw.udp,
        &path,
        &["-s", "112", "-m", "1", "-d", &hold],
    )
}

#[test]
fn under_a_flood_loud_noise_does_not_pass_the_challenge_and_one_spoken_word_does() {
    let ports = AgencyPorts::new();
    let (mut gw, _plan_dir) = three_calls_a_minute_are_an_attack(&ports);

    // The number's fourth call: 12 s of loud low rumble (an open line by a road), nobody
    // speaking. Energy alone took its first seconds for speech; it does not pass.
    let noise = siaga_media::voice::rumble_alaw(8000 * 12, 0x9E37_79B9_7F4A_7C15);
    assert_sipp_ok(&caller_streaming(&gw, &noise, 12_000), "the rumbling call");
    ended_challenge(&gw, 4, "challenge_failed");

    // The fifth: the caller says one word, "Tolong" (the recorded caller's first 0.6 s), then
    // silence. It passes by speech.
    let recorded = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/media/caller_8k.alaw"),
    )
    .expect("caller_8k.alaw");
    let mut word = recorded.get(..4800).expect("0.6 s").to_vec();
    word.extend(std::iter::repeat_n(
        siaga_media::Codec::Pcma.silence(),
        8000 * 5,
    ));
    assert_sipp_ok(
        &caller_streaming(&gw, &word, 4_000),
        "the caller who says one word",
    );
    let fifth = ended_challenge(&gw, 5, "challenge_passed");
    assert!(fifth[1].1.starts_with("speech"), "{fifth:?}");
    gw.stop();
}
