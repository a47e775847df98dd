//! `kill -9` with calls in progress, then a restart: 50 SIPp callers bridged to a SIPp agency
//! that stays up. After the restart every agency leg and every caller leg must get a BYE
//! (the SIPp runs succeed only when all 50 of theirs came), within 5 s, and each call's logged
//! length must match its recording's.

mod common;

use std::time::{Duration, Instant};

use common::{AgencyPorts, Gateway, assert_sipp_ok, sipp_agency, test_plan, wait_until};

const CALLS: i64 = 50;
/// Audio every recording holds before the kill, so that a wrong end time shows.
const RECORDED_BEFORE_KILL: Duration = Duration::from_secs(4);

fn count(db: &rusqlite::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).unwrap_or(0)
}

/// Calls whose recording file holds at least `audio` (8 kHz, 2 × 16 bit after a 44-byte header).
fn calls_recorded_for(db: &rusqlite::Connection, audio: Duration) -> i64 {
    let paths: Vec<String> = db
        .prepare("SELECT recording_path FROM calls WHERE recording_path IS NOT NULL")
        .and_then(|mut s| {
            s.query_map([], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()
        })
        .unwrap_or_default();
    let bytes = 44 + audio.as_millis() as u64 * 32;
    paths
        .iter()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() >= bytes))
        .count() as i64
}

#[test]
fn after_kill_9_every_leg_in_progress_gets_a_bye_and_logged_lengths_match_the_recordings() {
    let ports = AgencyPorts::new();
    let plan_dir = tempfile::tempdir().expect("dir");
    let plan = test_plan(plan_dir.path(), &ports, &[]);
    let plan_args = ["--dialplan", plan.to_str().expect("utf8 path")];
    let gw = Gateway::start(&plan_args);
    let (udp, tcp) = (gw.udp.to_string(), gw.tcp.to_string());

    // 110 goes straight to the police route, whose first desk answers every call and talks
    // until it gets a BYE.
    let mut agency = sipp_agency("agency_answer.xml", ports.police, &["-m", "50"]);
    let target = gw.udp;
    let callers = std::thread::spawn(move || {
        common::sipp(
            target,
            "uac_gateway_bye.xml",
            false,
            &["-s", "110", "-m", "50", "-l", "50", "-r", "25"],
        )
    });
    let db = gw.db();
    wait_until("50 calls bridged", Duration::from_secs(60), || {
        count(
            &db,
            "SELECT count(DISTINCT call) FROM call_events WHERE kind = 'agency_answered'",
        ) == CALLS
    });
    wait_until(
        "every recording to hold 4 s",
        Duration::from_secs(60),
        || calls_recorded_for(&db, RECORDED_BEFORE_KILL) == CALLS,
    );
    drop(db);
    let dir = gw.kill9();
    assert!(
        agency.try_wait().expect("agency").is_none(),
        "the agency is still on its calls"
    );

    let restarted = Instant::now();
    let mut gw = Gateway::start_on(dir, &udp, &tcp, &plan_args);
    let ready = restarted.elapsed();
    wait_until("the agency's SIPp to end", Duration::from_secs(60), || {
        agency.try_wait().expect("agency").is_some()
    });
    let all_byes = restarted.elapsed();
    let out = agency.wait_with_output().expect("agency");
    assert_sipp_ok(&out, "the agency: a BYE for each of its 50 calls");
    let out = callers.join().expect("callers");
    assert_sipp_ok(&out, "the callers: a BYE for each of the 50 calls");
    eprintln!(
        "restart: gateway listening after {} ms, the agency had all 50 BYEs after {} ms",
        ready.as_millis(),
        all_byes.as_millis()
    );
    assert!(
        all_byes <= Duration::from_secs(5),
        "the agency's last BYE came {} ms after the restart",
        all_byes.as_millis()
    );

    let db = gw.db();
    // The peers exit on the last 200 they send; the gateway logs it just after.
    wait_until(
        "every BYE's answer in the log",
        Duration::from_secs(20),
        || {
            count(
                &db,
                "SELECT count(*) FROM call_events WHERE kind = 'restart_bye_done'",
            ) >= 2 * CALLS
        },
    );
    // Each BYE answered, on the call's timeline, within 5 s of the new run's start.
    let started: i64 = db
        .query_row(
            "SELECT max(at) FROM gateway_events WHERE kind = 'start'",
            [],
            |r| r.get(0),
        )
        .expect("start event");
    for (leg, like) in [
        ("agency", "leg B%: answered 200"),
        ("caller", "leg A: answered 200"),
    ] {
        let answered: Vec<i64> = db
            .prepare(
                "SELECT at FROM call_events WHERE kind = 'restart_bye_done' AND detail LIKE ?1",
            )
            .expect("query")
            .query_map([like], |r| r.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(answered.len() as i64, CALLS, "{leg} legs answered");
        let latest = answered.iter().max().copied().unwrap_or_default() - started;
        assert!(latest <= 5000, "{leg} BYE answered {latest} ms after start");
    }
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM calls WHERE end_reason = 'gateway_restarted'"
        ),
        CALLS
    );
    // Cut off mid-conversation: every one is on the call-back list, agency or not.
    let call_backs = gw.calls_json(&["list", "--call-backs", "-n", "100"]);
    assert_eq!(
        call_backs.as_array().map(Vec::len),
        Some(CALLS as usize),
        "{call_backs}"
    );

    // Logged lengths against the recordings (their durations come from the start-up repair).
    wait_until("every recording recovered", Duration::from_secs(30), || {
        count(
            &db,
            "SELECT count(*) FROM calls WHERE recording_ms IS NOT NULL",
        ) == CALLS
    });
    let rows: Vec<(i64, i64, i64)> = db
        .prepare("SELECT id, ended_at - started_at, recording_ms FROM calls ORDER BY id")
        .expect("query")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    let worst = rows
        .iter()
        .map(|(_, l, r)| (l - r).abs())
        .max()
        .unwrap_or_default();
    let shortest = rows.iter().map(|(_, _, r)| *r).min().unwrap_or_default();
    eprintln!(
        "lengths: logged vs recorded differ by at most {worst} ms; shortest recording {shortest} ms"
    );
    for (call, logged, recorded) in rows {
        assert!(
            recorded >= RECORDED_BEFORE_KILL.as_millis() as i64 - 1000,
            "call {call}: only {recorded} ms recorded"
        );
        assert!(
            (logged - recorded).abs() <= 1000,
            "call {call}: logged {logged} ms, recorded {recorded} ms"
        );
    }
    gw.stop();
    drop(plan_dir);
}

/// A second gateway started by mistake on the same call log (other ports) must not start:
/// its start-up recovery would close the first one's live calls.
#[test]
fn a_second_gateway_on_the_same_call_log_refuses_to_start_and_the_first_ones_call_goes_on() {
    let gw = Gateway::start(&[]);
    let target = gw.udp;
    let caller = std::thread::spawn(move || {
        common::sipp(
            target,
            "uac_call.xml",
            false,
            &["-s", "112", "-m", "1", "-d", "4000"],
        )
    });
    let db = gw.db();
    wait_until("the call answered", Duration::from_secs(30), || {
        count(
            &db,
            "SELECT count(*) FROM calls WHERE answered_at IS NOT NULL",
        ) == 1
    });
    let other = tempfile::tempdir().expect("dir");
    let db_path = gw.db_path();
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_siaga"))
        .args([
            "serve",
            "--listen",
            "udp:127.0.0.1:0",
            "--listen",
            "tcp:127.0.0.1:0",
            "--http",
            "off",
        ])
        .arg("--db")
        .arg(&db_path)
        .arg("--recordings")
        .arg(other.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("second gateway");
    let deadline = Instant::now() + Duration::from_secs(20);
    while second.try_wait().expect("second").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if second.try_wait().expect("second").is_none() {
        let _ = second.kill();
    }
    let out = second.wait_with_output().expect("second");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the second gateway must not run:\n{err}"
    );
    assert!(
        err.contains(&format!(
            "call log {} is in use by another running Siaga gateway",
            db_path.display()
        )),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing listening: {:?}", out.stdout);

    let out = caller.join().expect("caller");
    assert_sipp_ok(&out, "the first gateway's call, through to its own end");
    wait_until("the call's end", Duration::from_secs(30), || {
        count(&db, "SELECT count(*) FROM calls WHERE ended_at IS NOT NULL") == 1
    });
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM gateway_events WHERE kind = 'crash_recovery'"
        ),
        0,
        "no recovery ran on the live call"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM calls WHERE end_reason = 'gateway_restarted'"
        ),
        0
    );
}
