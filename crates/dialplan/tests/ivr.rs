//! The IVR state machine in virtual time: what the caller hears, when the waits run, and
//! where each kind of caller ends up.
#![allow(clippy::disallowed_methods)] // a test needs one starting Instant

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use siaga_dialplan::{
    Dialplan, Entry, IvrAction, IvrInput, IvrSession, PROMPT_WATCHDOG, PlaybackId, RouteReason,
    TimelineKind, TimeoutKind,
};

const IVR_PLAN: &str = r#"[centre]
name = "IVR test"
languages = ["id", "en"]
last_resort = "calltakers"

[[emergency]]
numbers = ["112"]
urns = ["urn:service:sos"]
menu = "main"

[menus.main]
greeting = "welcome"
prompt = "main-menu"
invalid_prompt = "invalid"
first_digit_timeout = "5s"
inter_digit_timeout = "2s"
retries = 2
no_input = { route = "calltakers" }
invalid = { route = "supervisor" }

[menus.main.options]
"1" = { route = "police" }
"5" = { route = "sar" }
"55" = { route = "silent", silent = true }
"7" = { menu = "health" }
"9" = { language = "en" }

[menus.health]
prompt = "health-menu"
barge_in = false
retries = 0
no_input = { menu = "main" }

[menus.health.options]
"1" = { route = "ambulance" }

[routes.calltakers]
[[routes.calltakers.targets]]
uri = "sip:calltaker@127.0.0.1:5080"

[routes.supervisor]
fallback = "calltakers"
[[routes.supervisor.targets]]
uri = "sip:supervisor@127.0.0.1:5090"

[routes.police]
fallback = "calltakers"
[[routes.police.targets]]
uri = "sip:polisi@127.0.0.1:5081"

[routes.sar]
fallback = "calltakers"
[[routes.sar.targets]]
uri = "sip:basarnas@127.0.0.1:5087"

[routes.silent]
fallback = "calltakers"
[[routes.silent.targets]]
uri = "sip:calltaker@127.0.0.1:5080"

[routes.ambulance]
fallback = "calltakers"
[[routes.ambulance.targets]]
uri = "sip:psc119@127.0.0.1:5084"
"#;

const PROMPT: Duration = Duration::from_secs(3);

fn ivr_plan() -> Arc<Dialplan> {
    Arc::new(common::check(IVR_PLAN).unwrap_or_else(|errors| panic!("{errors}")))
}

/// Drives one session and remembers everything it said.
struct Call {
    session: IvrSession,
    now: Instant,
    start: Instant,
    actions: Vec<IvrAction>,
    playing: Option<PlaybackId>,
}

impl Call {
    fn start(entry: Entry) -> Call {
        let start = Instant::now();
        let session = IvrSession::start(ivr_plan(), &entry, start);
        let mut call = Call {
            session,
            now: start,
            start,
            actions: Vec::new(),
            playing: None,
        };
        call.drain();
        call
    }

    fn main_menu() -> Call {
        Call::start(Entry::Menu("main".into()))
    }

    fn drain(&mut self) {
        while let Some(action) = self.session.poll_action() {
            match &action {
                IvrAction::Play { playback, .. } => self.playing = Some(*playback),
                IvrAction::StopPlayback { .. } => self.playing = None,
                _ => {}
            }
            self.actions.push(action);
        }
    }

    fn input(&mut self, input: IvrInput) {
        self.session.handle(self.now, input);
        self.drain();
    }

    fn wait(&mut self, duration: Duration) {
        self.now += duration;
    }

    /// Lets the current prompt play to its end.
    fn prompt_ends(&mut self) {
        let playback = self.playing.take().expect("a prompt is playing");
        self.wait(PROMPT);
        self.input(IvrInput::PromptFinished(playback));
    }

    /// Lets every queued prompt play to its end.
    fn prompts_end(&mut self) {
        while self.playing.is_some() {
            self.prompt_ends();
        }
    }

    fn press(&mut self, key: char) {
        self.input(IvrInput::Digit(key));
    }

    /// Waits until the session's timer and fires it.
    fn time_out(&mut self) {
        self.now = self.session.next_timeout().expect("a timer is running");
        self.input(IvrInput::Timeout);
    }

    /// The prompts started since `from` (an index into `actions`), as `lang/name`.
    fn played_since(&self, from: usize) -> Vec<String> {
        self.actions[from..]
            .iter()
            .filter_map(|action| match action {
                IvrAction::Play { prompt, .. } => {
                    Some(format!("{}/{}", prompt.language, prompt.name))
                }
                _ => None,
            })
            .collect()
    }

    fn played(&self) -> Vec<String> {
        self.played_since(0)
    }

    fn routed(&self) -> Option<(String, RouteReason, bool)> {
        self.actions.iter().find_map(|action| match action {
            IvrAction::Route {
                route,
                reason,
                urgent,
                ..
            } => Some((route.to_string(), *reason, *urgent)),
            _ => None,
        })
    }

    fn timeline(&self) -> Vec<&TimelineKind> {
        self.actions
            .iter()
            .filter_map(|action| match action {
                IvrAction::Timeline(event) => Some(&event.kind),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn greeting_then_menu_each_in_indonesian_then_english() {
    let mut call = Call::main_menu();
    call.prompts_end();
    assert_eq!(
        call.played(),
        ["id/welcome", "en/welcome", "id/main-menu", "en/main-menu"]
    );
    assert!(call.routed().is_none());
}

#[test]
fn the_key_wait_starts_when_the_last_prompt_ends() {
    let mut call = Call::main_menu();
    assert_eq!(
        call.session.next_timeout(),
        Some(call.start + PROMPT_WATCHDOG),
        "only the watchdog while playing"
    );
    call.prompts_end();
    assert_eq!(call.now, call.start + 4 * PROMPT);
    assert_eq!(
        call.session.next_timeout(),
        Some(call.now + Duration::from_secs(5))
    );
}

#[test]
fn a_key_during_a_prompt_stops_it_and_is_the_choice() {
    let mut call = Call::main_menu();
    call.prompt_ends(); // id/welcome
    let playing = call.playing.expect("en/welcome is playing");
    call.wait(Duration::from_millis(700));
    call.press('1');
    assert!(
        call.actions
            .contains(&IvrAction::StopPlayback { playback: playing })
    );
    assert_eq!(
        call.routed(),
        Some(("police".into(), RouteReason::Digit, false))
    );
    assert_eq!(
        call.played(),
        ["id/welcome", "en/welcome"],
        "nothing more was played"
    );
    assert!(call.session.is_finished());
}

#[test]
fn silence_replays_the_menu_then_goes_to_the_no_input_route() {
    let mut call = Call::main_menu();
    call.prompts_end();
    for retry in 1..=2 {
        let before = call.actions.len();
        call.time_out();
        assert!(call.timeline().contains(&&TimelineKind::Retry {
            attempt: retry,
            retries: 2
        }));
        call.prompts_end();
        assert_eq!(
            call.played_since(before),
            ["id/main-menu", "en/main-menu"],
            "no greeting on retries"
        );
    }
    call.time_out();
    assert_eq!(
        call.routed(),
        Some(("calltakers".into(), RouteReason::NoInput, false))
    );
    // 4 prompts + 2 × (5 s wait + 2 prompts) + 5 s wait.
    assert_eq!(
        call.now - call.start,
        8 * PROMPT + 3 * Duration::from_secs(5)
    );
}

#[test]
fn an_invalid_key_says_so_and_replays_then_goes_to_the_invalid_route() {
    let mut call = Call::main_menu();
    call.prompts_end();
    for _ in 0..2 {
        let before = call.actions.len();
        call.press('8');
        call.prompts_end();
        assert_eq!(
            call.played_since(before),
            ["id/invalid", "en/invalid", "id/main-menu", "en/main-menu"]
        );
    }
    call.press('8');
    assert_eq!(
        call.routed(),
        Some(("supervisor".into(), RouteReason::Invalid, false))
    );
    assert_eq!(
        call.timeline()
            .iter()
            .filter(|k| matches!(k, TimelineKind::InvalidChoice { .. }))
            .count(),
        3
    );
}

#[test]
fn star_repeats_the_menu_and_counts_as_a_retry() {
    let mut call = Call::main_menu();
    call.prompts_end();
    let before = call.actions.len();
    call.press('*');
    assert!(call.timeline().contains(&&TimelineKind::Repeat));
    call.prompt_ends();
    assert_eq!(call.played_since(before), ["id/main-menu", "en/main-menu"]);
    // A star while the menu replays barges in and repeats again.
    call.press('*');
    assert!(call.routed().is_none());
    call.press('*');
    assert_eq!(
        call.routed(),
        Some(("supervisor".into(), RouteReason::Invalid, false))
    );
}

#[test]
fn language_switch_plays_english_only_from_then_on() {
    let mut call = Call::main_menu();
    call.prompts_end();
    let before = call.actions.len();
    call.press('9');
    assert!(call.timeline().contains(&&TimelineKind::LanguageSwitched {
        language: "en".into()
    }));
    call.prompts_end();
    assert_eq!(call.played_since(before), ["en/main-menu"]);
    let before = call.actions.len();
    call.press('8');
    call.prompts_end();
    assert_eq!(call.played_since(before), ["en/invalid", "en/main-menu"]);
    call.press('1');
    let languages = call.actions.iter().find_map(|a| match a {
        IvrAction::Route { languages, .. } => Some(languages.clone()),
        _ => None,
    });
    assert_eq!(
        languages,
        Some(vec!["en".into()]),
        "the connecting prompt will be English too"
    );
}

#[test]
fn five_five_is_the_urgent_silent_path() {
    let mut call = Call::main_menu();
    call.prompts_end();
    call.press('5');
    assert!(call.routed().is_none(), "a single 5 could still become 55");
    call.wait(Duration::from_millis(400));
    call.press('5');
    assert_eq!(
        call.routed(),
        Some(("silent".into(), RouteReason::SilentUrgent, true))
    );
}

#[test]
fn a_single_five_gets_sar_after_the_inter_digit_wait() {
    let mut call = Call::main_menu();
    call.prompts_end();
    call.press('5');
    let pressed = call.now;
    assert_eq!(
        call.session.next_timeout(),
        Some(pressed + Duration::from_secs(2))
    );
    call.wait(Duration::from_secs(1));
    call.input(IvrInput::Timeout); // early: ignored
    assert!(call.routed().is_none());
    call.time_out();
    assert_eq!(
        call.routed(),
        Some(("sar".into(), RouteReason::Digit, false))
    );
    assert_eq!(call.now, pressed + Duration::from_secs(2));
    assert!(call.timeline().contains(&&TimelineKind::Timeout {
        timeout: TimeoutKind::InterDigit
    }));
}

#[test]
fn a_key_that_cannot_grow_into_an_option_is_invalid_at_once() {
    let mut call = Call::main_menu();
    call.prompts_end();
    call.press('5');
    call.press('1');
    assert!(
        call.timeline()
            .contains(&&TimelineKind::InvalidChoice { keys: "51".into() })
    );
}

#[test]
fn a_late_finish_for_a_stopped_prompt_does_not_cut_the_next_one() {
    let mut call = Call::main_menu();
    let stopped = call.playing.expect("welcome plays");
    call.press('7'); // health menu
    let health = call.playing.expect("health menu plays");
    call.input(IvrInput::PromptFinished(stopped));
    assert_eq!(call.playing, Some(health));
    assert_eq!(call.played(), ["id/welcome", "id/health-menu"]);
    assert_eq!(call.session.current_menu().as_str(), "health");
}

#[test]
fn without_barge_in_keys_wait_for_the_prompt_to_end() {
    let mut call = Call::main_menu();
    call.press('7');
    let before = call.actions.len();
    call.press('1'); // during id/health-menu, which does not allow barge-in
    assert!(
        !call.actions[before..]
            .iter()
            .any(|a| matches!(a, IvrAction::StopPlayback { .. }))
    );
    assert!(call.routed().is_none());
    call.prompts_end();
    assert_eq!(
        call.routed(),
        Some(("ambulance".into(), RouteReason::Digit, false))
    );
}

#[test]
fn a_menu_exit_can_lead_back_to_another_menu() {
    let mut call = Call::main_menu();
    call.press('7');
    call.prompts_end();
    let before = call.actions.len();
    call.time_out(); // health has no retries: back to main, greeting and all
    assert!(call.timeline().contains(&&TimelineKind::MenuEntered {
        menu: "main".into()
    }));
    call.prompts_end();
    assert_eq!(
        call.played_since(before),
        ["id/welcome", "en/welcome", "id/main-menu", "en/main-menu"]
    );
}

#[test]
fn a_direct_entry_routes_at_once() {
    let call = Call::start(Entry::Route("police".into()));
    assert_eq!(
        call.routed(),
        Some(("police".into(), RouteReason::Direct, false))
    );
    assert!(call.session.is_finished());
    assert_eq!(call.session.next_timeout(), None);
    assert!(call.played().is_empty());
}

#[test]
fn a_finished_session_ignores_everything() {
    let mut call = Call::main_menu();
    call.press('1');
    let count = call.actions.len();
    call.press('2');
    call.input(IvrInput::Timeout);
    call.input(IvrInput::PromptFinished(PlaybackId(0)));
    assert_eq!(call.actions.len(), count);
}

#[test]
fn a_prompt_that_never_ends_does_not_strand_the_caller() {
    let mut call = Call::main_menu();
    call.time_out(); // the watchdog
    assert!(call.timeline().contains(&&TimelineKind::Timeout {
        timeout: TimeoutKind::PromptWatchdog
    }));
    assert_eq!(call.played(), ["id/welcome", "en/welcome"]);
}

#[test]
fn keys_that_are_not_phone_keys_are_ignored() {
    let mut call = Call::main_menu();
    call.prompts_end();
    call.press('x');
    assert!(
        call.timeline()
            .contains(&&TimelineKind::DigitIgnored { digit: 'x' })
    );
    assert!(call.session.is_listening());
}

#[test]
fn every_timeline_event_carries_the_time_of_its_cause() {
    let mut call = Call::main_menu();
    call.prompts_end();
    call.wait(Duration::from_millis(1234));
    let pressed = call.now;
    call.press('1');
    let last_events: Vec<Instant> = call
        .actions
        .iter()
        .rev()
        .filter_map(|a| match a {
            IvrAction::Timeline(event) => Some(event.at),
            _ => None,
        })
        .take(2)
        .collect();
    assert_eq!(last_events, [pressed, pressed], "key and route decision");
}

#[test]
fn the_session_is_send_and_the_plan_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}
    assert_send_sync::<Dialplan>();
    assert_send::<IvrSession>();
}

#[derive(Debug, Clone)]
enum Step {
    Key(char),
    FinishCurrent,
    FinishStale,
    Wait(u64),
    TimeoutIfDue,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        prop::sample::select(vec!['0', '1', '5', '7', '8', '9', '*', '#', 'A', 'x'])
            .prop_map(Step::Key),
        Just(Step::FinishCurrent),
        Just(Step::FinishStale),
        (0u64..8000).prop_map(Step::Wait),
        Just(Step::TimeoutIfDue),
    ]
}

proptest! {
    /// Whatever a caller presses and however the player behaves, once the caller falls silent
    /// the session ends at a route with someone to answer — never nowhere.
    #[test]
    fn every_caller_ends_with_a_human(steps in prop::collection::vec(step(), 0..60)) {
        let mut call = Call::main_menu();
        for step in steps {
            match step {
                Step::Key(key) => call.press(key),
                Step::FinishCurrent => if call.playing.is_some() { call.prompt_ends() },
                Step::FinishStale => call.input(IvrInput::PromptFinished(PlaybackId(u64::MAX))),
                Step::Wait(millis) => call.wait(Duration::from_millis(millis)),
                Step::TimeoutIfDue => if call.session.next_timeout().is_some_and(|at| at <= call.now) {
                    call.input(IvrInput::Timeout)
                },
            }
        }
        for _ in 0..200 {
            if call.session.is_finished() {
                break;
            }
            if call.playing.is_some() { call.prompt_ends() } else { call.time_out() }
        }
        prop_assert!(call.session.is_finished());
        let (route, _, _) = call.routed().expect("a route");
        let plan = ivr_plan();
        let definition = plan.route_definition(&route.as_str().into());
        prop_assert!(definition.is_some_and(|d| !d.base.targets.is_empty()), "{route}");
    }
}
