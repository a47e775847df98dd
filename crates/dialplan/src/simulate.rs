//! A call through the plan without a phone: the same [`IvrSession`] a real call uses, driven
//! in virtual time by a scripted caller. `siaga dialplan simulate` prints the result.

use std::collections::VecDeque;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::classify::{Classified, Dialled};
use crate::ids::{Language, RouteId};
use crate::ivr::{IvrAction, IvrInput, IvrSession, PlaybackId, RouteReason, TimelineKind};
use crate::model::{Dialplan, Entry, PromptRef, Route, Strategy};
use crate::time::{LocalTime, format_duration, human_duration};

/// The simulated caller reacts this long after the menu has finished playing.
pub const CALLER_REACTION: Duration = Duration::from_secs(1);
/// Keys of one group (e.g. `55`) are pressed this far apart: well inside any inter-digit timeout.
pub const KEY_GAP: Duration = Duration::from_millis(400);

/// Upper bound on simulated events; a validated plan finishes in far fewer.
const MAX_EVENTS: usize = 10_000;

/// What the simulated caller does with the keypad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerKeys {
    /// Presses nothing (a caller who cannot or does not respond).
    Silent,
    /// Keys in groups separated by spaces or commas. Each group is started 1 s after the IVR
    /// has finished playing a menu and waits for a key — or, while a menu's `offer_after` would
    /// hand a caller who presses nothing to a person, 1 s after the menu prompt starts (barging
    /// in, as such a caller must); keys within a group follow 400 ms apart. `"5"` is SAR after the inter-digit wait, `"55"` the silent path, `"9 1"` means
    /// "switch to English, listen, then press 1". Keys left over when the call is routed are
    /// not pressed; when the keys run out the caller falls silent.
    Digits(String),
}

/// One simulated call.
#[derive(Debug, Clone)]
pub struct SimulateRequest {
    /// The Request-URI dialled (`tel:112`, `urn:service:sos.fire`, …).
    pub to: String,
    /// Shown in the trace only.
    pub from: String,
    pub caller: CallerKeys,
    /// Selects time-of-day variants of routes.
    pub local_time: LocalTime,
    /// Any instant (the crate reads no clock); the trace shows times relative to it.
    pub start: Instant,
}

/// One line of the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceStep {
    /// Since the call was answered.
    pub after: Duration,
    pub kind: TimelineKind,
    /// For prompts: how long the file plays.
    pub prompt_length: Option<Duration>,
}

/// Where a routed call goes, as the bridging engine will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedCall {
    pub route: RouteId,
    pub reason: RouteReason,
    pub urgent: bool,
    /// Since the call was answered.
    pub after: Duration,
    pub languages: Vec<Language>,
    /// Played while the first route's targets ring.
    pub connecting: Vec<PromptRef>,
    /// The routes in the order they are tried (time-of-day variant applied), ending at the
    /// last resort.
    pub chain: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimulationOutcome {
    NotEmergency,
    /// Answered by the gateway with the centre's name.
    TestCall {
        centre: String,
    },
    Routed(RoutedCall),
    /// The IVR did not finish within the event budget (not possible with a validated plan).
    Unfinished,
}

/// The path a call takes; `Display` prints it for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulationTrace {
    pub to: String,
    pub from: String,
    pub local_time: LocalTime,
    pub dialled: Dialled,
    pub classified: Classified,
    pub steps: Vec<TraceStep>,
    pub outcome: SimulationOutcome,
}

/// Runs one call through `plan`. `prompt_duration` says how long each prompt file plays (the
/// shell reads WAV headers; tests can return a constant).
pub fn simulate(
    plan: &Arc<Dialplan>,
    request: &SimulateRequest,
    prompt_duration: &dyn Fn(&Path) -> Duration,
) -> SimulationTrace {
    let dialled = Dialled::parse(&request.to);
    let classified = plan.classify_dialled(&dialled);
    let mut trace = SimulationTrace {
        to: request.to.clone(),
        from: request.from.clone(),
        local_time: request.local_time,
        dialled,
        classified: classified.clone(),
        steps: Vec::new(),
        outcome: SimulationOutcome::Unfinished,
    };
    let entry = match classified {
        Classified::NotEmergency => {
            trace.outcome = SimulationOutcome::NotEmergency;
            return trace;
        }
        Classified::TestCall => {
            trace.outcome = SimulationOutcome::TestCall {
                centre: plan.centre().name.clone(),
            };
            return trace;
        }
        Classified::Emergency(entry) => entry,
    };

    let start = request.start;
    let mut caller = ScriptedCaller::new(&request.caller);
    let mut session = IvrSession::start(Arc::clone(plan), &entry, start);
    let mut now = start;
    let mut playing: Option<(PlaybackId, Instant)> = None;
    // Whether the prompt playing is the current menu's own (not a greeting or "invalid").
    let mut hearing_menu = false;

    for _ in 0..MAX_EVENTS {
        while let Some(action) = session.poll_action() {
            match action {
                IvrAction::Timeline(event) => {
                    let prompt_length = match &event.kind {
                        TimelineKind::PromptStarted { prompt } => {
                            Some(prompt_duration(&prompt.path))
                        }
                        _ => None,
                    };
                    trace.steps.push(TraceStep {
                        after: event.at.saturating_duration_since(start),
                        kind: event.kind,
                        prompt_length,
                    });
                }
                IvrAction::Play {
                    playback, prompt, ..
                } => {
                    playing = Some((playback, now + prompt_duration(&prompt.path)));
                    hearing_menu = plan
                        .menu(session.current_menu())
                        .is_some_and(|menu| menu.prompt == prompt.name);
                    caller.heard_prompt();
                }
                IvrAction::StopPlayback { .. } => {
                    playing = None;
                    hearing_menu = false;
                }
                IvrAction::Route {
                    route,
                    reason,
                    urgent,
                    languages,
                } => {
                    trace.outcome = SimulationOutcome::Routed(routed_call(
                        plan,
                        request.local_time,
                        route,
                        reason,
                        urgent,
                        languages,
                        now.saturating_duration_since(start),
                    ));
                }
            }
        }
        if session.is_finished() {
            break;
        }
        let offer_pending = session.silent_offer_at().is_some();
        caller.schedule(
            now,
            session.is_listening() || (hearing_menu && playing.is_some() && offer_pending),
        );

        // Earliest event first; on a tie the prompt ends before a key, a key before a timeout.
        let candidates = [
            playing.map(|(_, at)| (at, Event::PromptEnd)),
            caller.next_key_at.map(|at| (at, Event::Key)),
            session.next_timeout().map(|at| (at, Event::Timeout)),
        ];
        let Some((at, event)) = candidates
            .into_iter()
            .flatten()
            .min_by_key(|(at, event)| (*at, *event))
        else {
            break;
        };
        now = at;
        match event {
            Event::PromptEnd => {
                if let Some((playback, _)) = playing.take() {
                    session.handle(now, IvrInput::PromptFinished(playback));
                }
            }
            Event::Key => {
                if let Some(key) = caller.press(now) {
                    session.handle(now, IvrInput::Digit(key));
                }
            }
            Event::Timeout => session.handle(now, IvrInput::Timeout),
        }
    }
    trace
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    PromptEnd,
    Key,
    Timeout,
}

fn routed_call(
    plan: &Dialplan,
    local_time: LocalTime,
    route: RouteId,
    reason: RouteReason,
    urgent: bool,
    languages: Vec<Language>,
    after: Duration,
) -> RoutedCall {
    let chain: Vec<Route> = plan
        .fallback_chain(&route)
        .iter()
        .map(|id| plan.route(id, local_time).clone())
        .collect();
    let connecting = chain
        .first()
        .and_then(|first| first.connecting_prompt.as_ref())
        .map(|name| plan.prompts(name, &languages))
        .unwrap_or_default();
    RoutedCall {
        route,
        reason,
        urgent,
        after,
        languages,
        connecting,
        chain,
    }
}

/// The keypad side of the simulated caller.
struct ScriptedCaller {
    groups: VecDeque<Vec<char>>,
    /// Keys of the group being typed.
    typing: VecDeque<char>,
    next_key_at: Option<Instant>,
    /// Set when a prompt plays after the last group was typed: the caller has heard
    /// something new and will answer the next time the IVR waits.
    ready: bool,
}

impl ScriptedCaller {
    fn new(keys: &CallerKeys) -> ScriptedCaller {
        let groups = match keys {
            CallerKeys::Silent => VecDeque::new(),
            CallerKeys::Digits(keys) => keys
                .split([' ', ','])
                .filter(|group| !group.is_empty())
                .map(|group| group.chars().collect())
                .collect(),
        };
        ScriptedCaller {
            groups,
            typing: VecDeque::new(),
            next_key_at: None,
            ready: true,
        }
    }

    fn heard_prompt(&mut self) {
        if self.typing.is_empty() {
            self.ready = true;
        }
    }

    /// `may_press`: the IVR waits for a key, or the caller must press while the menu plays.
    fn schedule(&mut self, now: Instant, may_press: bool) {
        if self.next_key_at.is_some() || !self.typing.is_empty() {
            return;
        }
        if self.ready
            && may_press
            && let Some(group) = self.groups.pop_front()
        {
            self.typing = group.into();
            self.ready = false;
            self.next_key_at = Some(now + CALLER_REACTION);
        }
    }

    fn press(&mut self, now: Instant) -> Option<char> {
        let key = self.typing.pop_front();
        self.next_key_at = (!self.typing.is_empty()).then_some(now + KEY_GAP);
        key
    }
}

impl fmt::Display for SimulationTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "call from {} to {} at {}",
            if self.from.is_empty() {
                "(unknown)"
            } else {
                &self.from
            },
            self.to,
            self.local_time
        )?;
        write!(f, "dialled {}: ", self.dialled)?;
        match &self.classified {
            Classified::Emergency(entry) => writeln!(f, "emergency, enters {entry}")?,
            Classified::TestCall => writeln!(f, "test call")?,
            Classified::NotEmergency => writeln!(f, "not an emergency number")?,
        }
        for step in &self.steps {
            write!(f, "  {:>7}  {}", human_duration(step.after), step.kind)?;
            if let Some(length) = step.prompt_length {
                write!(f, " ({})", human_duration(length))?;
            }
            writeln!(f)?;
        }
        match &self.outcome {
            SimulationOutcome::NotEmergency => {
                writeln!(f, "the gateway answers 404 Not Found; no agency is rung")
            }
            SimulationOutcome::TestCall { centre } => writeln!(
                f,
                "RFC 6881 test call: the gateway answers itself with \"{centre}\"; \
                 no agency is rung"
            ),
            SimulationOutcome::Unfinished => {
                writeln!(f, "the IVR did not finish (simulation stopped)")
            }
            SimulationOutcome::Routed(call) => write_routed(f, call),
        }
    }
}

fn write_routed(f: &mut fmt::Formatter<'_>, call: &RoutedCall) -> fmt::Result {
    writeln!(
        f,
        "→ route \"{}\" after {} ({}){}",
        call.route,
        human_duration(call.after),
        call.reason,
        if call.urgent {
            ", URGENT: caller may not be able to speak"
        } else {
            ""
        }
    )?;
    if !call.connecting.is_empty() {
        let prompts: Vec<String> = call.connecting.iter().map(ToString::to_string).collect();
        writeln!(f, "  caller hears while ringing: {}", prompts.join(", "))?;
    }
    let last = call.chain.len().saturating_sub(1);
    for (index, route) in call.chain.iter().enumerate() {
        let role = match (index, index == last) {
            (0, true) => "route (last resort)".to_owned(),
            (0, false) => "route".to_owned(),
            (_, true) => "then last resort".to_owned(),
            (_, false) => "then fallback".to_owned(),
        };
        write!(
            f,
            "  {role} \"{}\": {} — {}",
            route.id, route.label, route.strategy
        )?;
        if let Some(variant) = &route.variant {
            write!(f, ", time variant \"{variant}\"")?;
        }
        writeln!(f)?;
        for (number, target) in route.targets.iter().enumerate() {
            writeln!(f, "    {}. {target}", number + 1)?;
        }
        if let Some(queue) = &route.queue {
            match queue.max_wait {
                Some(max_wait) => writeln!(
                    f,
                    "    if all busy: queue up to {}, announcement every {}",
                    format_duration(max_wait),
                    format_duration(queue.announce_every)
                )?,
                None => writeln!(
                    f,
                    "    if all busy: queue until answered, announcement every {}",
                    format_duration(queue.announce_every)
                )?,
            }
        }
    }
    let names: Vec<&str> = call.chain.iter().map(|route| route.id.as_str()).collect();
    writeln!(f, "  fallback chain: {}", names.join(" → "))?;
    writeln!(
        f,
        "time to a person: reaches \"{}\" after {} in the IVR, then {}",
        call.route,
        human_duration(call.after),
        call.chain
            .first()
            .map_or_else(|| "its ring time".to_owned(), ring_time)
    )
}

/// How long the first route may ring before it gives up (what comes on top of the IVR time).
fn ring_time(route: &Route) -> String {
    let timeouts = route.targets.iter().map(|target| target.ring_timeout);
    let (how, longest) = match route.strategy {
        Strategy::Parallel => ("all ring at once", timeouts.max()),
        Strategy::Sequential => ("one after another", Some(timeouts.sum())),
    };
    format!(
        "ring time: {} target{} {how}, up to {} in all",
        route.targets.len(),
        if route.targets.len() == 1 { "" } else { "s" },
        format_duration(longest.unwrap_or_default())
    )
}

/// One way through an entry's menu and the IVR time it takes to choose a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuPath {
    /// `silent`, `key 1`, `key 8 (invalid)`.
    pub label: String,
    pub caller: CallerKeys,
    /// `None` if the IVR did not finish (not possible with a validated plan).
    pub routed: Option<RoutedCall>,
}

/// Every first move a caller can make in the menu the dialled number enters: silence, each
/// option's key, and one invalid key. Each path is a [`simulate`] run of the same request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuPaths {
    pub to: String,
    pub entry: Option<Entry>,
    pub paths: Vec<MenuPath>,
}

/// Simulates every path of the menu `request.to` enters (`request.caller` is ignored).
pub fn simulate_paths(
    plan: &Arc<Dialplan>,
    request: &SimulateRequest,
    prompt_duration: &dyn Fn(&Path) -> Duration,
) -> MenuPaths {
    let entry = match plan.classify_dialled(&Dialled::parse(&request.to)) {
        Classified::Emergency(entry) => Some(entry),
        Classified::TestCall | Classified::NotEmergency => None,
    };
    let mut callers = vec![("silent".to_owned(), CallerKeys::Silent)];
    if let Some(Entry::Menu(menu)) = &entry
        && let Some(menu) = plan.menu(menu)
    {
        for key in menu.options.keys() {
            callers.push((
                format!("key {key}"),
                CallerKeys::Digits(key.as_str().to_owned()),
            ));
        }
        // The first key that is neither an option nor the start of one.
        let invalid = "0123456789#ABCD".chars().find(|key| {
            !menu
                .options
                .keys()
                .any(|option| option.as_str().starts_with(*key))
        });
        if let Some(key) = invalid {
            callers.push((
                format!("key {key} (invalid)"),
                CallerKeys::Digits(key.to_string()),
            ));
        }
    }
    let paths = callers
        .into_iter()
        .map(|(label, caller)| {
            let one = SimulateRequest {
                caller: caller.clone(),
                ..request.clone()
            };
            let routed = match simulate(plan, &one, prompt_duration).outcome {
                SimulationOutcome::Routed(call) => Some(call),
                _ => None,
            };
            MenuPath {
                label,
                caller,
                routed,
            }
        })
        .collect();
    MenuPaths {
        to: request.to.clone(),
        entry,
        paths,
    }
}

impl fmt::Display for MenuPaths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(entry) = &self.entry else {
            return writeln!(f, "{}: no emergency entry, no paths", self.to);
        };
        writeln!(
            f,
            "paths of {} ({} enters it): time in the IVR until the route is chosen; \
             the route's ring time comes on top",
            entry, self.to
        )?;
        let width = self.paths.iter().map(|p| p.label.len()).max().unwrap_or(0);
        for path in &self.paths {
            match &path.routed {
                Some(call) => writeln!(
                    f,
                    "  {:<width$}  reaches \"{}\" after {} ({}){}",
                    path.label,
                    call.route,
                    human_duration(call.after),
                    call.reason,
                    if call.urgent { ", URGENT" } else { "" }
                )?,
                None => writeln!(f, "  {:<width$}  did not finish", path.label)?,
            }
        }
        Ok(())
    }
}
