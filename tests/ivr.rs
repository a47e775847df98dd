//! The IVR with real callers: every key of the default menu ends where `siaga dialplan
//! simulate` says it does; a silent caller reaches a call-taker 15 s after the answer; a plan reloaded under
//! load fails no call, and a bad plan is refused while the old one keeps serving.

mod common;

use std::process::Command;

use common::{AgencyPorts, Gateway, assert_sipp_ok, end_reasons, sipp, test_plan, wait_until};

/// Why the route was taken: the text in parentheses after the route name.
fn route_reason(text: &str) -> String {
    let after = text.find("route \"").map_or(text, |i| &text[i..]);
    after
        .split_once('(')
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(r, _)| r.to_owned())
        .unwrap_or_default()
}

/// The quoted route name in `… route "fire" …`.
fn quoted_route(text: &str) -> Option<String> {
    let start = text.find("route \"")? + 7;
    let end = text[start..].find('"')? + start;
    Some(text[start..end].to_owned())
}

/// What the simulator says a caller pressing `digits` gets: the route and why.
fn simulated(plan: &std::path::Path, digits: Option<&str>) -> (String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_siaga"));
    cmd.args(["dialplan", "simulate", "--to", "112"]);
    match digits {
        Some(d) => cmd.args(["--digits", d]),
        None => cmd.arg("--silent"),
    };
    let out = cmd.arg(plan).output().expect("simulate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let decision = text
        .lines()
        .find(|l| l.starts_with('→'))
        .unwrap_or_else(|| panic!("no route in:\n{text}"))
        .to_owned();
    let route = quoted_route(&decision).expect("route name");
    (route, route_reason(&decision))
}

/// The route decision the gateway logged for the call whose INVITE carries `label`.
fn logged_route(db: &rusqlite::Connection, label: &str) -> Option<(String, String)> {
    let call: i64 = db
        .query_row(
            "SELECT call FROM sip_messages WHERE direction = 'in' AND first_line LIKE 'INVITE%'
             AND CAST(raw AS TEXT) LIKE ?1",
            [format!("%Subject: ivr {label}\r%")],
            |r| r.get(0),
        )
        .ok()?;
    let detail: String = db
        .query_row(
            "SELECT detail FROM call_events WHERE call = ?1 AND kind = 'route'",
            [call],
            |r| r.get(0),
        )
        .ok()?;
    let route = quoted_route(&detail)?;
    Some((route, route_reason(&detail)))
}

#[test]
fn every_key_of_the_default_menu_goes_where_the_simulator_says() {
    let ports = AgencyPorts::new();
    let plan_dir = tempfile::tempdir().expect("dir");
    let plan = test_plan(plan_dir.path(), &ports, &[]);
    let mut gw = Gateway::start(&["--dialplan", plan.to_str().expect("path")]);
    // (keys pressed, how long the caller stays after them, in ms)
    let cases: &[(&str, &str, u32)] = &[
        ("1", "none", 3000),
        ("2", "none", 3000),
        ("3", "none", 3000),
        ("4", "none", 3000),
        ("5", "none", 4000),
        ("5", "5", 3000),
        ("0", "none", 3000),
        ("9", "1", 3000),
        ("*", "none", 45000),
    ];
    let callers: Vec<_> = cases
        .iter()
        .map(|(d1, d2, hold)| {
            let udp = gw.udp;
            let label = format!("{d1}{d2}");
            let (d1, d2, hold) = (d1.to_string(), d2.to_string(), hold.to_string());
            std::thread::spawn(move || {
                let out = sipp(
                    udp,
                    "uac_ivr.xml",
                    false,
                    &[
                        "-s", "112", "-key", "digit", &d1, "-key", "digit2", &d2, "-key", "label",
                        &label, "-m", "1", "-d", &hold,
                    ],
                );
                (label, out)
            })
        })
        .collect();
    for c in callers {
        let (label, out) = c.join().expect("caller thread");
        assert_sipp_ok(&out, &format!("IVR caller {label}"));
    }
    gw.stop();
    let db = gw.db();
    for (d1, d2, _) in cases {
        let keys = if *d2 == "none" {
            d1.to_string()
        } else {
            format!("{d1}{d2}")
        };
        let label = format!("{d1}{d2}");
        let expected = simulated(&plan, Some(&keys));
        let real =
            logged_route(&db, &label).unwrap_or_else(|| panic!("no route logged for keys {keys}"));
        assert_eq!(real, expected, "keys {keys}: real call vs simulator");
    }
}

#[test]
fn a_silent_caller_reaches_a_call_taker_15_s_after_the_answer() {
    let ports = AgencyPorts::new();
    let plan_dir = tempfile::tempdir().expect("dir");
    let plan = test_plan(plan_dir.path(), &ports, &[]);
    let mut gw = Gateway::start(&["--dialplan", plan.to_str().expect("path")]);
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "40000"],
    );
    assert_sipp_ok(&out, "silent caller");
    gw.stop();
    let db = gw.db();
    let events: Vec<(String, String, i64)> = db
        .prepare("SELECT kind, detail, at FROM call_events WHERE call = 1 ORDER BY at, id")
        .expect("q")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    let timeline: Vec<(String, String)> = events
        .iter()
        .map(|(kind, detail, _)| (kind.clone(), detail.clone()))
        .collect();
    let prompts: Vec<&String> = timeline
        .iter()
        .filter(|(k, _)| k == "prompt")
        .map(|(_, d)| d)
        .collect();
    // The menu's offer_after (15 s) hands the caller on during the Indonesian menu: the
    // English menu (which started at 19.5 s, and the route at 34.5 s, before issue 12) never plays.
    for expected in ["id/welcome.wav", "en/welcome.wav", "id/main-menu.wav"] {
        assert!(
            prompts.iter().any(|p| p.contains(expected)),
            "{expected} in {prompts:?}"
        );
    }
    assert!(
        !prompts.iter().any(|p| p.contains("en/main-menu.wav")),
        "{prompts:?}"
    );
    let at = |kind: &str| {
        events
            .iter()
            .find(|(k, _, _)| k == kind)
            .map(|(_, _, at)| *at)
            .unwrap_or_else(|| panic!("no {kind} in {timeline:?}"))
    };
    let ivr_ms = at("route") - at("menu");
    assert!(
        (14_900..=16_000).contains(&ivr_ms),
        "route chosen {ivr_ms} ms after the menu began: {timeline:?}"
    );
    assert!(timeline.iter().any(|(k, _)| k == "timeout"), "{timeline:?}");
    let route = timeline
        .iter()
        .find(|(k, _)| k == "route")
        .map(|(_, d)| d.clone())
        .expect("routed");
    assert_eq!(
        quoted_route(&route).as_deref(),
        Some("calltakers"),
        "{route}"
    );
    assert_eq!(simulated(&plan, None).0, "calltakers");
    // The call-takers were rung: a human is being reached.
    assert!(
        timeline.iter().any(|(k, _)| k == "agency_invite"),
        "{timeline:?}"
    );
}

#[test]
fn a_reload_under_load_fails_no_call_and_new_calls_use_the_new_plan() {
    let ports = AgencyPorts::new();
    let plan_dir = tempfile::tempdir().expect("dir");
    let plan = test_plan(plan_dir.path(), &ports, &[]);
    let mut gw = Gateway::start(&["--dialplan", plan.to_str().expect("path")]);
    // 100 calls up at once, each held 8 s, while the plan is swapped twice.
    let load = std::thread::spawn({
        let udp = gw.udp;
        move || {
            sipp(
                udp,
                "uac_call.xml",
                false,
                &[
                    "-s", "112", "-m", "100", "-l", "100", "-r", "100", "-d", "8000",
                ],
            )
        }
    });
    // Reload only once all 100 calls are answered and up.
    let db = gw.db();
    wait_until(
        "100 answered calls",
        std::time::Duration::from_secs(20),
        || {
            db.query_row(
                "SELECT count(*) FROM calls WHERE answered_at IS NOT NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
            .is_ok_and(|n| n >= 100)
        },
    );
    // A broken plan is refused; the old one stays.
    let good = std::fs::read_to_string(&plan).expect("plan");
    std::fs::write(
        &plan,
        good.replace("last_resort = \"calltakers\"", "last_resort = \"nobody\""),
    )
    .expect("write bad plan");
    assert!(gw.hup().starts_with("dialplan rejected"));
    // A new plan: 999 becomes an emergency number (straight to the call-takers).
    let new_plan = good.replace("numbers = [\"112\"]", "numbers = [\"112\", \"999\"]");
    assert_ne!(new_plan, good);
    std::fs::write(&plan, new_plan).expect("write new plan");
    assert!(gw.hup().starts_with("dialplan reloaded"));
    let out = load.join().expect("load thread");
    assert_sipp_ok(&out, "100 calls across two reloads");
    let after = sipp(
        gw.udp,
        "uac_call.xml",
        false,
        &["-s", "999", "-m", "1", "-d", "200"],
    );
    assert_sipp_ok(&after, "999 is an emergency number under the new plan");
    gw.stop();
    let reasons = end_reasons(&db);
    assert!(
        reasons
            .iter()
            .all(|(r, _)| r == "abandoned_in_ivr" || r == "abandoned_waiting_for_agency"),
        "{reasons:?}"
    );
    assert_eq!(reasons.iter().map(|(_, n)| n).sum::<i64>(), 101);
    let kinds: Vec<String> = db
        .prepare("SELECT kind FROM gateway_events WHERE kind LIKE 'dialplan%' ORDER BY id")
        .expect("q")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(kinds, ["dialplan_rejected", "dialplan_reloaded"]);
}
