//! The B2BUA end to end: SIPp callers → the real gateway → SIPp agencies, over loopback.
//! Each test moves the default plan's agencies to free ports so tests run side by side.

mod common;

use std::path::Path;

use common::{
    AgencyPorts, Gateway, assert_sipp_ok, events, finish_agency, sipp_agency,
    sipp_caller_with_voice, test_plan,
};

fn start_with_plan(edits: &[(&str, &str)]) -> (Gateway, AgencyPorts) {
    let ports = AgencyPorts::new();
    let plan_dir = tempfile::tempdir().expect("dir");
    let plan = test_plan(plan_dir.path(), &ports, edits);
    let gw = Gateway::start(&["--dialplan", plan.to_str().expect("utf8 path")]);
    // The plan file must outlive the start only (it is read once).
    drop(plan_dir);
    (gw, ports)
}

/// (direction, leg, first line, time ms) of every message of call 1, in order.
fn messages(db: &rusqlite::Connection) -> Vec<(String, String, String, i64)> {
    db.prepare("SELECT direction, leg, first_line, at FROM sip_messages WHERE call = 1 ORDER BY id")
        .expect("query")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// Mean absolute sample value of one channel (0 = left, 1 = right) between two times.
fn level(wav: &Path, channel: usize, from_ms: i64, to_ms: i64) -> f64 {
    let mut reader = hound::WavReader::open(wav).expect("recording opens");
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    let frames = samples.len() / 2;
    let a = ((from_ms.max(0) as usize) * 8).min(frames);
    let b = ((to_ms.max(0) as usize) * 8).min(frames);
    if b <= a {
        return 0.0;
    }
    let sum: f64 = (a..b)
        .map(|i| f64::from(samples[2 * i + channel]).abs())
        .sum();
    sum / (b - a) as f64
}

fn recording(db: &rusqlite::Connection) -> (String, Option<String>) {
    db.query_row(
        "SELECT recording_path, recording_sha256 FROM calls WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .expect("recording row")
}

fn recording_started_at(db: &rusqlite::Connection) -> i64 {
    events(db, "recording_started")
        .first()
        .map(|(at, _)| *at)
        .expect("recording_started event")
}

#[test]
fn police_rejecting_with_503_fails_over_to_the_second_police_target_and_both_voices_are_recorded() {
    let (mut gw, ports) = start_with_plan(&[]);
    let first = sipp_agency(
        "agency_reject.xml",
        ports.police,
        &["-key", "status", "503", "-m", "1"],
    );
    let second = sipp_agency("agency_answer.xml", ports.police2, &["-m", "1"]);
    let out = sipp_caller_with_voice(
        gw.udp,
        "uac_talk.xml",
        &["-s", "112", "-key", "digit", "1", "-m", "1"],
    );
    assert_sipp_ok(&out, "caller pressing 1 (police)");
    finish_agency(first, "police 1 (503)");
    finish_agency(second, "police 2 (answers)");
    gw.stop();
    let db = gw.db();
    let msgs = messages(&db);
    let at = |leg: &str, dir: &str, prefix: &str| {
        msgs.iter()
            .find(|(d, l, f, _)| d == dir && l == leg && f.starts_with(prefix))
            .map(|(_, _, _, at)| *at)
            .unwrap_or_else(|| panic!("no {dir} {prefix} on leg {leg}: {msgs:#?}"))
    };
    let rejected = at("B1", "in", "SIP/2.0 503");
    let second_invite = at("B2", "out", "INVITE");
    let answered = at("B2", "in", "SIP/2.0 200");
    assert!(
        second_invite - rejected < 1000,
        "second target rung {} ms after the 503",
        second_invite - rejected
    );
    assert!(
        answered - rejected < 1000,
        "talking {} ms after the 503",
        answered - rejected
    );
    // Both legs' messages are in the log, linked to the one call.
    assert!(
        msgs.iter()
            .any(|(_, l, f, _)| l == "A" && f.starts_with("INFO"))
    );
    assert!(
        msgs.iter()
            .any(|(_, l, f, _)| l == "B2" && f.starts_with("BYE"))
    );
    let (path, sha) = recording(&db);
    assert!(sha.is_some(), "recording finalised with its SHA-256");
    // After the answer, the left channel has the caller and the right channel the agency.
    let t0 = recording_started_at(&db);
    let (from, to) = (answered - t0 + 300, answered - t0 + 2500);
    let caller = level(Path::new(&path), 0, from, to);
    let agency = level(Path::new(&path), 1, from, to);
    assert!(caller > 300.0, "caller's voice on the left: {caller}");
    assert!(agency > 300.0, "agency's voice on the right: {agency}");
    assert_eq!(events(&db, "agency_answered").len(), 1);
}

#[test]
fn a_target_that_never_answers_is_cancelled_at_its_ring_timeout() {
    let (mut gw, ports) = start_with_plan(&[("ring_timeout = \"20s\"", "ring_timeout = \"2s\"")]);
    let first = sipp_agency("agency_no_answer.xml", ports.police, &["-m", "1"]);
    let second = sipp_agency("agency_answer.xml", ports.police2, &["-m", "1"]);
    let out = sipp_caller_with_voice(
        gw.udp,
        "uac_talk.xml",
        &["-s", "110", "-key", "digit", "1", "-m", "1"],
    );
    assert_sipp_ok(&out, "caller to 110");
    finish_agency(first, "police 1 (never answers, gets CANCEL)");
    finish_agency(second, "police 2 (answers)");
    gw.stop();
    let db = gw.db();
    assert_eq!(events(&db, "agency_timeout").len(), 1);
    assert_eq!(events(&db, "agency_answered").len(), 1);
    assert!(
        messages(&db)
            .iter()
            .any(|(d, l, f, _)| d == "out" && l == "B1" && f.starts_with("CANCEL"))
    );
}

#[test]
fn with_every_call_taker_busy_the_caller_queues_and_is_connected_when_one_frees() {
    let (mut gw, ports) =
        start_with_plan(&[("announce_every = \"20s\"", "announce_every = \"3s\"")]);
    // Both desks are busy for the first attempt; desk 2 stays busy.
    let busy_desk1 = sipp_agency(
        "agency_reject.xml",
        ports.calltaker,
        &["-key", "status", "486", "-m", "1"],
    );
    let mut busy_desk2 = sipp_agency(
        "agency_reject.xml",
        ports.calltaker2,
        &["-key", "status", "486", "-m", "50"],
    );
    let caller = std::thread::spawn({
        let udp = gw.udp;
        move || {
            sipp_caller_with_voice(
                udp,
                "uac_talk.xml",
                &["-s", "112", "-key", "digit", "0", "-m", "1"],
            )
        }
    });
    finish_agency(busy_desk1, "desk 1 busy");
    // Desk 1 frees up: the caller at the head of the queue gets it at the next retry.
    let free_desk1 = sipp_agency("agency_answer.xml", ports.calltaker, &["-m", "1"]);
    let out = caller.join().expect("caller thread");
    assert_sipp_ok(&out, "queued caller");
    finish_agency(free_desk1, "desk 1 answers");
    // Desk 2 refused every attempt; it would wait for more calls.
    let _ = busy_desk2.kill();
    let _ = busy_desk2.wait();
    gw.stop();
    let db = gw.db();
    assert_eq!(events(&db, "queue_enter").len(), 1);
    assert!(
        !events(&db, "queue_announce").is_empty(),
        "announcements while waiting"
    );
    assert_eq!(events(&db, "queue_leave").len(), 1);
    assert_eq!(events(&db, "agency_answered").len(), 1);
    let end: String = db
        .query_row("SELECT end_reason FROM calls WHERE id = 1", [], |r| {
            r.get(0)
        })
        .expect("end");
    assert_eq!(end, "caller_hung_up");
}

#[test]
fn a_refer_from_the_police_moves_the_caller_to_the_ambulance_with_one_continuous_recording() {
    let (mut gw, ports) = start_with_plan(&[]);
    let refer_to = format!("psc119@127.0.0.1:{}", ports.psc119);
    let police = sipp_agency(
        "agency_refer.xml",
        ports.police,
        &["-key", "refer_to", &refer_to, "-d", "1000", "-m", "1"],
    );
    let ambulance = sipp_agency("agency_answer.xml", ports.psc119, &["-m", "1"]);
    let out = sipp_caller_with_voice(
        gw.udp,
        "uac_talk.xml",
        &["-s", "112", "-key", "digit", "1", "-m", "1"],
    );
    assert_sipp_ok(&out, "caller");
    finish_agency(police, "police (REFER)");
    finish_agency(ambulance, "ambulance (transfer target)");
    gw.stop();
    let db = gw.db();
    assert_eq!(events(&db, "transfer_requested").len(), 1);
    assert_eq!(events(&db, "transfer_done").len(), 1);
    let (path, sha) = recording(&db);
    assert!(sha.is_some());
    let files = std::fs::read_dir(Path::new(&path).parent().expect("dir"))
        .expect("recordings")
        .count();
    assert_eq!(files, 1, "one recording for the whole call");
    let msgs = messages(&db);
    assert!(
        msgs.iter()
            .any(|(d, l, f, _)| d == "in" && l == "B1" && f.starts_with("REFER"))
    );
    assert!(
        msgs.iter()
            .any(|(d, l, f, _)| d == "out" && l == "B2" && f.starts_with("INVITE"))
    );
}

#[test]
fn an_agency_hanging_up_first_ends_the_callers_leg() {
    let (mut gw, ports) = start_with_plan(&[]);
    // The fire brigade answers at once and hangs up after 3 s (while the caller talks).
    let fire = sipp_agency(
        "agency_hangs_up.xml",
        ports.fire,
        &["-d", "3000", "-m", "1"],
    );
    let out = sipp_caller_with_voice(
        gw.udp,
        "uac_talk.xml",
        &["-s", "113", "-key", "digit", "1", "-m", "1"],
    );
    assert_sipp_ok(&out, "caller gets the gateway's BYE");
    finish_agency(fire, "fire hangs up");
    gw.stop();
    let end: String = gw
        .db()
        .query_row("SELECT end_reason FROM calls WHERE id = 1", [], |r| {
            r.get(0)
        })
        .expect("end");
    assert_eq!(end, "agency_hung_up");
}

#[test]
fn the_pidf_lo_reaches_the_agency_byte_for_byte() {
    let (mut gw, ports) = start_with_plan(&[]);
    let fire = sipp_agency("agency_answer.xml", ports.fire, &["-m", "1"]);
    let out = gw.sipp(
        "uac_pidf.xml",
        false,
        &["-s", "urn:service:sos.fire", "-m", "1", "-d", "1500"],
    );
    assert_sipp_ok(&out, "caller with PIDF-LO");
    finish_agency(fire, "fire");
    gw.stop();
    let db = gw.db();
    let raw = |dir: &str, leg: &str| -> Vec<u8> {
        db.query_row(
            "SELECT raw FROM sip_messages WHERE call = 1 AND direction = ?1 AND leg = ?2 AND first_line LIKE 'INVITE%' ORDER BY id LIMIT 1",
            [dir, leg],
            |r| r.get(0),
        )
        .expect("INVITE")
    };
    let pidf = |msg: &[u8]| -> Vec<u8> {
        let text = String::from_utf8_lossy(msg).into_owned();
        let start = text.find("<?xml").expect("PIDF-LO in the body");
        let end = text[start..].find("</presence>").expect("end of PIDF-LO")
            + start
            + "</presence>".len();
        text.as_bytes()[start..end].to_vec()
    };
    let from_caller = pidf(&raw("in", "A"));
    let to_agency = pidf(&raw("out", "B1"));
    assert_eq!(from_caller, to_agency, "the PIDF-LO is forwarded unchanged");
    let invite = String::from_utf8_lossy(&raw("out", "B1")).into_owned();
    assert!(invite.contains("Geolocation: <cid:"), "{invite}");
    assert!(invite.contains("P-Asserted-Identity: <tel:+6281234567890>"));
}

#[test]
fn an_agency_putting_the_call_on_hold_does_not_silence_the_caller() {
    let (mut gw, ports) = start_with_plan(&[]);
    let fire = sipp_agency("agency_hold.xml", ports.fire, &["-d", "1000", "-m", "1"]);
    let out = sipp_caller_with_voice(
        gw.udp,
        "uac_talk.xml",
        &["-s", "113", "-key", "digit", "1", "-m", "1"],
    );
    assert_sipp_ok(&out, "caller");
    finish_agency(fire, "fire puts the call on hold");
    gw.stop();
    let db = gw.db();
    let hold = events(&db, "agency_hold");
    assert_eq!(hold.len(), 1, "the direction change is logged");
    assert!(hold[0].1.contains("not put on hold"), "{hold:?}");
    // The caller kept being heard and recorded after the hold.
    let (path, _) = recording(&db);
    let t0 = recording_started_at(&db);
    let held_at = hold[0].0 - t0;
    assert!(
        level(Path::new(&path), 0, held_at + 200, held_at + 1500) > 300.0,
        "caller still recorded"
    );
    let end: String = db
        .query_row("SELECT end_reason FROM calls WHERE id = 1", [], |r| {
            r.get(0)
        })
        .expect("end");
    assert_eq!(end, "caller_hung_up");
}

#[test]
fn parallel_desks_ring_together_the_late_answer_wins_and_the_other_is_cancelled() {
    let (mut gw, ports) = start_with_plan(&[]);
    // Both call-taker desks ring at once; desk 1 answers after 1.5 s, desk 2 never does.
    let desk1 = sipp_agency(
        "agency_late_answer.xml",
        ports.calltaker,
        &["-key", "answer_ms", "1500", "-m", "1"],
    );
    let desk2 = sipp_agency("agency_no_answer.xml", ports.calltaker2, &["-m", "1"]);
    let out = sipp_caller_with_voice(
        gw.udp,
        "uac_talk.xml",
        &["-s", "112", "-key", "digit", "0", "-m", "1"],
    );
    assert_sipp_ok(&out, "caller to the call-takers");
    finish_agency(desk1, "desk 1 answers late");
    finish_agency(desk2, "desk 2 is cancelled");
    gw.stop();
    let db = gw.db();
    let msgs = messages(&db);
    let invites: Vec<i64> = msgs
        .iter()
        .filter(|(d, l, f, _)| d == "out" && l != "A" && f.starts_with("INVITE"))
        .map(|(_, _, _, at)| *at)
        .collect();
    assert_eq!(invites.len(), 2, "{msgs:#?}");
    assert!(
        (invites[1] - invites[0]).abs() < 50,
        "rung together: {invites:?}"
    );
    assert!(
        msgs.iter()
            .any(|(d, _, f, _)| d == "out" && f.starts_with("CANCEL"))
    );
    assert_eq!(events(&db, "agency_answered").len(), 1);
}

#[test]
fn the_call_back_list_holds_the_callers_no_agency_answered() {
    let (mut gw, ports) = start_with_plan(&[]);
    // 1: 113 straight to the fire brigade, which answers; the caller talks and hangs up.
    let fire = sipp_agency("agency_answer.xml", ports.fire, &["-m", "1"]);
    let out = sipp_caller_with_voice(
        gw.udp,
        "uac_talk.xml",
        &["-s", "113", "-key", "digit", "1", "-m", "1"],
    );
    assert_sipp_ok(&out, "answered call");
    finish_agency(fire, "fire answers");
    // 2: hangs up in the menu.
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "2000"],
    );
    assert_sipp_ok(&out, "abandoned in the IVR");
    // 3: 113 again, with nobody at the fire brigade or the call-takers: hangs up waiting.
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "113", "-m", "1", "-d", "2000"],
    );
    assert_sipp_ok(&out, "abandoned waiting");
    gw.stop();

    let ids = |args: &[&str]| -> Vec<(i64, String)> {
        gw.calls_json(args)
            .as_array()
            .expect("array")
            .iter()
            .map(|c| {
                (
                    c["id"].as_i64().expect("id"),
                    c["end_reason"].as_str().expect("ended").to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        ids(&["list", "--call-backs"]),
        vec![
            (3, "abandoned_waiting_for_agency".to_owned()),
            (2, "abandoned_in_ivr".to_owned())
        ]
    );
    assert_eq!(
        ids(&["list", "--end", "caller_hung_up"]),
        vec![(1, "caller_hung_up".to_owned())]
    );
    // The period's figures agree with the three calls.
    let stats = gw.calls_json(&["stats"]);
    assert_eq!(stats["emergency"], 3);
    assert_eq!(stats["reached_agency"], 1);
    assert_eq!(stats["call_backs"], 2);
    assert!(stats["answer_ms_median"].as_i64().is_some());
    assert_eq!(
        stats["first_routes"],
        serde_json::json!([["fire", "number goes straight to the route", 2]])
    );
    let later = gw.calls_json(&["stats", "--since", "2999-01-01"]);
    assert_eq!(later["calls"], 0);
    let typo = std::process::Command::new(env!("CARGO_BIN_EXE_siaga"))
        .args(["calls", "list", "--end", "abandonned", "--db"])
        .arg(gw.db_path())
        .output()
        .expect("run");
    assert!(!typo.status.success());
    let said = String::from_utf8_lossy(&typo.stderr);
    assert!(
        said.contains("unknown end reason \"abandonned\"") && said.contains("abandoned_in_ivr"),
        "{said}"
    );
}
