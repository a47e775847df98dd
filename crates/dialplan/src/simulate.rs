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
use crate::model::{Dialplan, PromptRef, Route};
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
    /// has finished playing a menu and waits for a key; keys within a group follow 400 ms
    /// apart. `"5"` is SAR after the inter-digit wait, `"55"` the silent path, `"9 1"` means
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
                    caller.heard_prompt();
                }
                IvrAction::StopPlayback { .. } => playing = None,
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
        caller.schedule(now, session.is_listening());

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

    fn schedule(&mut self, now: Instant, ivr_listening: bool) {
        if self.next_key_at.is_some() || !self.typing.is_empty() {
            return;
        }
        if self.ready
            && ivr_listening
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
    writeln!(f, "  fallback chain: {}", names.join(" → "))
}
