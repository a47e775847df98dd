//! The shipped plan, end to end: what each way of dialling reaches, and what the simulator
//! says a caller hears for every key of the main menu, for a timeout and for silence.
#![allow(clippy::disallowed_methods)] // tests read the shipped plan and take a starting Instant

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{dialplans_dir, wav_length};
use siaga_dialplan::{
    CALLER_REACTION, CallerKeys, Classified, Dialplan, Entry, IvrAction, IvrInput, IvrSession,
    KEY_GAP, LocalTime, PlaybackId, RouteReason, SimulateRequest, SimulationOutcome,
    SimulationTrace, Strategy, TimelineKind, TimeoutKind, simulate, simulate_paths,
};

/// Emergency-centre practice (NENA): 95 % of calls answered by a person within 20 s.
const TO_A_PERSON: Duration = Duration::from_secs(20);
/// The IVR's share of it for a silent caller; the rest is the call-takers' ring time.
const SILENT_IVR_BUDGET: Duration = Duration::from_secs(15);

fn plan() -> Arc<Dialplan> {
    Arc::new(common::default_plan().unwrap_or_else(|errors| panic!("{errors}")))
}

fn at(text: &str) -> LocalTime {
    text.parse().unwrap_or_else(|e| panic!("{e}"))
}

fn call(to: &str, caller: CallerKeys, local_time: &str) -> SimulationTrace {
    let request = SimulateRequest {
        to: to.into(),
        from: "tel:+6281234567890".into(),
        caller,
        local_time: at(local_time),
        start: common::start_instant(),
    };
    simulate(&plan(), &request, &wav_length)
}

fn keys(keys: &str) -> CallerKeys {
    CallerKeys::Digits(keys.into())
}

/// (route, reason, urgent) of a routed call.
fn outcome(trace: &SimulationTrace) -> (String, RouteReason, bool) {
    match &trace.outcome {
        SimulationOutcome::Routed(call) => (call.route.to_string(), call.reason, call.urgent),
        other => panic!("not routed: {other:?}\n{trace}"),
    }
}

fn played(trace: &SimulationTrace) -> Vec<String> {
    trace
        .steps
        .iter()
        .filter_map(|step| match &step.kind {
            TimelineKind::PromptStarted { prompt } => {
                Some(format!("{}/{}", prompt.language, prompt.name))
            }
            _ => None,
        })
        .collect()
}

/// The main menu's keys that choose a route at once: keys, route, reason, urgent.
const ROUTE_KEYS: [(&str, &str, RouteReason, bool); 7] = [
    ("1", "police", RouteReason::Digit, false),
    ("2", "fire", RouteReason::Digit, false),
    ("3", "ambulance", RouteReason::Digit, false),
    ("4", "disaster", RouteReason::Digit, false),
    ("5", "sar", RouteReason::Digit, false),
    ("55", "silent", RouteReason::SilentUrgent, true),
    ("0", "calltakers", RouteReason::Digit, false),
];

/// How long the named prompts play, from the real files.
fn length_of(names: &[&str]) -> Duration {
    names
        .iter()
        .map(|name| wav_length(&dialplans_dir().join(format!("prompts/{name}.wav"))))
        .sum()
}

/// How long the welcome and the menu take in both languages.
fn full_menu_length() -> Duration {
    length_of(&["id/welcome", "en/welcome", "id/main-menu", "en/main-menu"])
}

/// The welcome in both languages: the main menu's prompt starts after it.
fn greeting_length() -> Duration {
    length_of(&["id/welcome", "en/welcome"])
}

/// A caller of 112 who presses `keys` (400 ms apart) starting `at` after the answer, whatever
/// is playing then; the real prompt lengths. Returns route, reason, urgent and the IVR time.
fn press_at(at: Duration, keys: &str) -> (String, RouteReason, bool, Duration) {
    let start = common::start_instant();
    let mut session = IvrSession::start(plan(), &Entry::Menu("main".into()), start);
    let mut presses: VecDeque<(Instant, char)> = (0u32..)
        .zip(keys.chars())
        .map(|(index, key)| (start + at + KEY_GAP * index, key))
        .collect();
    let mut playing: Option<(PlaybackId, Instant)> = None;
    let mut now = start;
    loop {
        while let Some(action) = session.poll_action() {
            match action {
                IvrAction::Play {
                    playback, prompt, ..
                } => playing = Some((playback, now + wav_length(&prompt.path))),
                IvrAction::StopPlayback { .. } => playing = None,
                IvrAction::Route {
                    route,
                    reason,
                    urgent,
                    ..
                } => return (route.to_string(), reason, urgent, now - start),
                IvrAction::Timeline(_) => {}
            }
        }
        // On a tie the prompt ends first, then the key, then the timer (as the simulator does).
        let due = [
            playing.map(|(_, end)| (end, 0)),
            presses.front().map(|(when, _)| (*when, 1)),
            session.next_timeout().map(|when| (when, 2)),
        ];
        let (when, what) = due.into_iter().flatten().min().expect("something is due");
        now = when;
        match (what, playing.take(), presses.front().copied()) {
            (0, Some((playback, _)), _) => session.handle(now, IvrInput::PromptFinished(playback)),
            (1, still, Some((_, key))) => {
                playing = still;
                presses.pop_front();
                session.handle(now, IvrInput::Digit(key));
            }
            (_, still, _) => {
                playing = still;
                session.handle(now, IvrInput::Timeout);
            }
        }
    }
}

#[test]
fn every_way_of_dialling_112_reaches_the_main_menu() {
    let plan = plan();
    let main = Classified::Emergency(Entry::Menu("main".into()));
    for uri in [
        "tel:112",
        "sip:112@gw.samarinda.example;user=phone",
        "sip:112@10.0.0.1",
        "tel:+62112",
        "tel:+62-112",
        "urn:service:sos",
        "urn:service:sos.animal-control", // unknown sub-service: treated as sos (RFC 5031)
        "sip:sos@gw.example",
    ] {
        assert_eq!(plan.classify(uri), main, "{uri}");
    }
}

#[test]
fn agency_numbers_and_services_go_straight_to_the_agency() {
    let plan = plan();
    for (uri, route) in [
        ("tel:110", "police"),
        ("urn:service:sos.police", "police"),
        ("tel:113", "fire"),
        ("urn:service:sos.fire", "fire"),
        ("urn:service:sos.fire.forest", "fire"),
        ("tel:118", "ambulance"),
        ("sip:119@gw;user=phone", "ambulance"),
        ("urn:service:sos.ambulance", "ambulance"),
        ("tel:115", "sar"),
        ("urn:service:sos.marine", "sar"),
    ] {
        assert_eq!(
            plan.classify(uri),
            Classified::Emergency(Entry::Route(route.into())),
            "{uri}"
        );
    }
}

#[test]
fn test_calls_and_other_numbers() {
    let plan = plan();
    assert_eq!(plan.classify("urn:service:test.sos"), Classified::TestCall);
    assert_eq!(
        plan.classify("urn:service:test.sos.fire"),
        Classified::TestCall
    );
    for uri in [
        "tel:911",
        "tel:+1112",
        "sip:alice@example.org",
        "tel:1120",
        "urn:service:counseling",
    ] {
        assert_eq!(plan.classify(uri), Classified::NotEmergency, "{uri}");
    }
}

#[test]
fn each_key_of_the_main_menu() {
    let more = [
        ("9 1", "police", RouteReason::Digit, false),
        ("* 2", "fire", RouteReason::Digit, false),
        ("8 3", "ambulance", RouteReason::Digit, false),
    ];
    for (keys_pressed, route, reason, urgent) in ROUTE_KEYS.into_iter().chain(more) {
        let trace = call("tel:112", keys(keys_pressed), "mon 10:00");
        assert_eq!(
            outcome(&trace),
            (route.to_owned(), reason, urgent),
            "keys {keys_pressed}:\n{trace}"
        );
    }
}

#[test]
fn a_choice_is_acted_on_as_soon_as_it_is_unambiguous() {
    // The main menu hands silent callers on mid-prompt (offer_after), so the simulated caller
    // presses while the menu plays: 1 s after it starts.
    let listening = greeting_length() + CALLER_REACTION;
    let trace = call("tel:112", keys("1"), "mon 10:00");
    let SimulationOutcome::Routed(police) = &trace.outcome else {
        panic!("{trace}")
    };
    assert_eq!(police.after, listening);

    // A single 5 could still be 55: SAR after the 1.5 s inter-digit wait.
    let trace = call("tel:112", keys("5"), "mon 10:00");
    let SimulationOutcome::Routed(sar) = &trace.outcome else {
        panic!("{trace}")
    };
    assert_eq!(sar.after, listening + Duration::from_millis(1500));
}

#[test]
fn silence_reaches_a_call_taker_15_s_after_the_answer_mid_menu() {
    let trace = call("tel:112", CallerKeys::Silent, "mon 10:00");
    assert_eq!(
        outcome(&trace),
        ("calltakers".into(), RouteReason::NoInput, false)
    );
    // Cut off during the Indonesian menu; the English one never starts.
    assert_eq!(played(&trace), ["id/welcome", "en/welcome", "id/main-menu"]);
    assert!(trace.steps.iter().any(|s| s.kind
        == TimelineKind::Timeout {
            timeout: TimeoutKind::NoKeySinceAnswer
        }));
    let SimulationOutcome::Routed(routed) = &trace.outcome else {
        panic!("{trace}")
    };
    assert_eq!(routed.after, Duration::from_secs(15));
    assert!(
        full_menu_length() + Duration::from_secs(4) > Duration::from_secs(34),
        "before offer_after the same caller waited 34.5 s"
    );
}

#[test]
fn a_silent_caller_can_reach_a_person_within_20_s() {
    let trace = call("tel:112", CallerKeys::Silent, "mon 10:00");
    let SimulationOutcome::Routed(routed) = &trace.outcome else {
        panic!("{trace}")
    };
    assert!(routed.after <= SILENT_IVR_BUDGET, "{trace}");
    // The ring part: every call-taker desk rings at once from that moment, so the first free
    // call-taker has TO_A_PERSON - IVR time (5 s) to answer; the desks' ring timeout only
    // bounds a call nobody takes (then the queue keeps the caller, never hung up on).
    let calltakers = &routed.chain[0];
    assert_eq!(calltakers.id.as_str(), "calltakers");
    assert_eq!(calltakers.strategy, Strategy::Parallel);
    assert!(calltakers.targets.len() >= 2);
    assert!(TO_A_PERSON - routed.after >= Duration::from_secs(5));
    assert!(
        trace
            .to_string()
            .contains("time to a person: reaches \"calltakers\" after 15.0s in the IVR"),
        "{trace}"
    );
}

#[test]
fn a_key_pressed_before_offer_after_keeps_the_menu() {
    let seconds = [3.0, 8.0, 12.0, 14.9];
    for at in seconds.map(Duration::from_secs_f64) {
        for (keys, route, reason, urgent) in ROUTE_KEYS {
            let (got_route, got_reason, got_urgent, after) = press_at(at, keys);
            assert_eq!(
                (got_route.as_str(), got_reason, got_urgent),
                (route, reason, urgent),
                "keys {keys} at {at:?}"
            );
            let last_key = at + KEY_GAP * (u32::try_from(keys.len()).expect("short") - 1);
            let waited = if keys == "5" {
                Duration::from_millis(1500) // the inter-digit wait: 5 could still become 55
            } else {
                Duration::ZERO
            };
            assert_eq!(after, last_key + waited, "keys {keys} at {at:?}");
        }
        // 9 (English) and then nothing: the English menu plays in full and the usual 4 s wait
        // follows, well past offer_after: a caller who used the keypad keeps the menu.
        let (route, reason, _, after) = press_at(at, "9");
        assert_eq!(
            (route.as_str(), reason),
            ("calltakers", RouteReason::NoInput)
        );
        assert_eq!(
            after,
            at + length_of(&["en/main-menu"]) + Duration::from_secs(4)
        );
    }
}

#[test]
fn a_key_after_offer_after_is_too_late() {
    let (route, reason, _, after) = press_at(Duration::from_millis(15_100), "1");
    assert_eq!(
        (route.as_str(), reason, after),
        ("calltakers", RouteReason::NoInput, Duration::from_secs(15))
    );
}

#[test]
fn the_paths_of_the_main_menu_and_their_ivr_times() {
    let request = SimulateRequest {
        to: "tel:112".into(),
        from: String::new(),
        caller: CallerKeys::Silent,
        local_time: at("mon 10:00"),
        start: common::start_instant(),
    };
    let paths = simulate_paths(&plan(), &request, &wav_length);
    let summary: Vec<(String, String, RouteReason)> = paths
        .paths
        .iter()
        .map(|path| {
            let routed = path.routed.as_ref().expect("routed");
            (path.label.clone(), routed.route.to_string(), routed.reason)
        })
        .collect();
    let expect = |label: &str, route: &str, reason| (label.to_owned(), route.to_owned(), reason);
    assert_eq!(
        summary,
        [
            expect("silent", "calltakers", RouteReason::NoInput),
            expect("key 0", "calltakers", RouteReason::Digit),
            expect("key 1", "police", RouteReason::Digit),
            expect("key 2", "fire", RouteReason::Digit),
            expect("key 3", "ambulance", RouteReason::Digit),
            expect("key 4", "disaster", RouteReason::Digit),
            expect("key 5", "sar", RouteReason::Digit),
            expect("key 55", "silent", RouteReason::SilentUrgent),
            expect("key 9", "calltakers", RouteReason::NoInput),
            expect("key 6 (invalid)", "calltakers", RouteReason::NoInput),
        ]
    );
    let silent = paths.paths[0].routed.as_ref().expect("routed");
    assert_eq!(silent.after, Duration::from_secs(15));
    let printed = paths.to_string();
    assert!(
        printed.contains("silent           reaches \"calltakers\" after 15.0s (no input)"),
        "{printed}"
    );
}

#[test]
fn a_wrong_key_then_silence_times_out_to_a_call_taker() {
    let trace = call("tel:112", keys("8"), "mon 10:00");
    assert_eq!(
        outcome(&trace),
        ("calltakers".into(), RouteReason::NoInput, false)
    );
    // The key barges into the Indonesian menu (offer_after); the caller keeps the menu after.
    assert_eq!(
        played(&trace),
        [
            "id/welcome",
            "en/welcome",
            "id/main-menu",
            "id/invalid",
            "en/invalid",
            "id/main-menu",
            "en/main-menu"
        ]
    );
    assert!(trace.steps.iter().any(|s| s.kind
        == TimelineKind::Timeout {
            timeout: siaga_dialplan::TimeoutKind::FirstDigit
        }));
}

#[test]
fn the_silent_path_is_urgent_and_reassures_the_caller() {
    let trace = call("tel:112", keys("55"), "mon 10:00");
    let SimulationOutcome::Routed(routed) = &trace.outcome else {
        panic!("{trace}")
    };
    assert!(routed.urgent);
    let connecting: Vec<String> = routed
        .connecting
        .iter()
        .map(|p| format!("{}/{}", p.language, p.name))
        .collect();
    assert_eq!(connecting, ["id/silent-confirm", "en/silent-confirm"]);
    assert!(trace.to_string().contains("URGENT"), "{trace}");
}

#[test]
fn direct_numbers_play_no_menu() {
    let trace = call("tel:113", CallerKeys::Silent, "mon 10:00");
    assert_eq!(outcome(&trace), ("fire".into(), RouteReason::Direct, false));
    assert!(played(&trace).is_empty());
}

#[test]
fn the_ambulance_route_changes_at_night() {
    let plan = plan();
    let ambulance = "ambulance".into();
    let day = plan.route(&ambulance, at("wed 14:00"));
    assert_eq!(
        (day.strategy, day.variant.as_deref()),
        (Strategy::Sequential, None)
    );
    let night = plan.route(&ambulance, at("wed 23:30"));
    assert_eq!(
        (night.strategy, night.variant.as_deref()),
        (Strategy::Parallel, Some("night"))
    );
    let early = plan.route(&ambulance, at("thu 05:59"));
    assert_eq!(early.variant.as_deref(), Some("night"));

    let trace = call("tel:112", keys("3"), "sat 23:00");
    let printed = trace.to_string();
    assert!(
        printed
            .contains("route \"ambulance\": PSC 119 Samarinda — parallel, time variant \"night\""),
        "{printed}"
    );
}

#[test]
fn unknown_routes_fail_open_to_the_call_takers() {
    let plan = plan();
    assert_eq!(
        plan.route(&"no-such-route".into(), at("mon 10:00"))
            .id
            .as_str(),
        "calltakers"
    );
    let chain: Vec<String> = plan
        .fallback_chain(&"no-such-route".into())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(chain, ["calltakers"]);
}

#[test]
fn fallback_chains_end_at_the_call_takers() {
    let plan = plan();
    let chain: Vec<String> = plan
        .fallback_chain(&"silent".into())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(chain, ["silent", "calltakers"]);
    let chain: Vec<String> = plan
        .fallback_chain(&"calltakers".into())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(chain, ["calltakers"]);
}

#[test]
fn the_queue_announces_the_position_up_to_nine() {
    let plan = plan();
    let languages = plan.centre().languages.clone();
    let calltakers = plan.route(&"calltakers".into(), at("mon 10:00"));
    let heard = |position| -> Vec<String> {
        plan.queue_announcement(calltakers, position, &languages)
            .iter()
            .map(|p| format!("{}/{}", p.language, p.name))
            .collect()
    };
    assert_eq!(
        heard(3),
        [
            "id/all-busy",
            "id/you-are-number",
            "id/number-3",
            "en/all-busy",
            "en/you-are-number",
            "en/number-3"
        ]
    );
    assert_eq!(heard(12), ["id/all-busy", "en/all-busy"]);
    for prompt in plan.queue_announcement(calltakers, 9, &languages) {
        assert!(prompt.path.is_file(), "{}", prompt.path.display());
    }
}

#[test]
fn the_trace_shows_targets_in_order_and_the_chain() {
    let trace = call("sip:112@gw;user=phone", keys("1"), "mon 10:00");
    let printed = trace.to_string();
    let expected_in_order = [
        "dialled number 112: emergency, enters menu \"main\"",
        "play ",
        "key 1",
        "→ route \"police\"",
        "caller hears while ringing:",
        "route \"police\": Polresta Samarinda — sequential",
        "1. sip:polisi@127.0.0.1:5081 (udp, ring 20s, location by value, trusted)",
        "2. sip:polisi-piket@127.0.0.1:5082 (udp, ring 15s, location by value, trusted)",
        "then last resort \"calltakers\"",
        "if all busy: queue until answered",
        "fallback chain: police → calltakers",
    ];
    let mut rest = printed.as_str();
    for expected in expected_in_order {
        let found = rest
            .find(expected)
            .unwrap_or_else(|| panic!("{expected:?} missing or out of order in:\n{printed}"));
        rest = &rest[found + expected.len()..];
    }
}

#[test]
fn test_calls_and_wrong_numbers_are_explained() {
    let test = call("urn:service:test.sos", CallerKeys::Silent, "mon 10:00");
    assert!(
        test.to_string()
            .contains("answers itself with \"Siaga 112 Kota Samarinda\""),
        "{test}"
    );
    let wrong = call("tel:12345", CallerKeys::Silent, "mon 10:00");
    assert_eq!(wrong.outcome, SimulationOutcome::NotEmergency);
    assert!(wrong.to_string().contains("404"), "{wrong}");
}
