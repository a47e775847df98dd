//! The IVR as a sans-IO state machine. The call engine and the simulator drive the same
//! [`IvrSession`], so the path the simulator prints is by construction the path a real call
//! takes. Time comes in as an argument; the session never reads a clock.
//!
//! The rules, in the caller's terms:
//! - Prompts play phase by phase, each phase in every language (Bahasa Indonesia first, then
//!   English): greeting id, greeting en, menu id, menu en.
//! - A key press during a prompt stops it (barge-in) and counts as the choice.
//! - The wait for a key starts when the last prompt has finished.
//! - A key that is a whole option and not the start of a longer one acts at once. A key that
//!   could still grow (`5` when `55` exists) waits for the inter-digit timeout, then acts.
//! - `*` replays the menu. Silence, an invalid key and `*` each use one retry; when the
//!   retries are used up the caller goes to the menu's `no_input` or `invalid` exit: a human.
//!   Silence may have fewer retries of its own (`no_input_retries`).
//! - A menu with `offer_after` hands a caller who has pressed no key since the answer to its
//!   `no_input` exit when that time is up, even mid-prompt: a caller who cannot speak reaches a
//!   person in time. Any key pressed before then keeps the menu for the rest of the call.
//! - A language option switches every later prompt to that language only and replays the menu.
//! - After [`IvrAction::Route`] the session is finished and ignores further input.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::ids::{DigitKey, Language, MenuId, RouteId, is_dtmf};
use crate::model::{Choice, Dialplan, Entry, Exit, Menu, PromptRef};

/// If the player never reports the end of a prompt (a media fault), the IVR carries on after
/// this long rather than leaving the caller in silence.
pub const PROMPT_WATCHDOG: Duration = Duration::from_secs(60);

/// Menu changes through `no_input`/`invalid` exits or options beyond this are a loop; the
/// caller is sent to the last resort. A validated plan cannot loop; this is belt and braces.
const MAX_MENU_ENTRIES: u32 = 32;

/// Identifies one `Play`, so that a late "finished" for a prompt that was stopped is not
/// mistaken for the end of the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct PlaybackId(pub u64);

/// What happens to the caller, as the engine or simulator observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IvrInput {
    /// The player reached the end of the prompt started by that `Play`.
    PromptFinished(PlaybackId),
    /// A key (RFC 4733, SIP INFO or in-band). Lower-case `a`–`d` are accepted.
    Digit(char),
    /// [`IvrSession::next_timeout`] has passed.
    Timeout,
}

/// What the engine must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IvrAction {
    /// Play a prompt; report `PromptFinished(playback)` at its end.
    Play {
        playback: PlaybackId,
        prompt: PromptRef,
        barge_in: bool,
    },
    /// Stop the prompt now (the caller pressed a key).
    StopPlayback { playback: PlaybackId },
    /// Route the call; the session is finished. `languages` are those the caller chose, for
    /// the route's connecting and queue prompts.
    Route {
        route: RouteId,
        reason: RouteReason,
        urgent: bool,
        languages: Vec<Language>,
    },
    /// Something for the call's timeline in the call log.
    Timeline(TimelineEvent),
}

/// Why a call left the IVR for a route (a call-log column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum RouteReason {
    /// The caller chose an option.
    Digit,
    /// The number dialled goes straight to a route (110, `sos.fire`, …).
    Direct,
    /// The caller stayed silent through every retry.
    NoInput,
    /// The caller's last attempt was an invalid choice (or `*` with no retries left).
    Invalid,
    /// The caller used the cannot-speak path ("press 5 5").
    SilentUrgent,
    /// The plan could not be followed (unknown menu, loop guard): sent to the last resort.
    Failsafe,
}

impl fmt::Display for RouteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouteReason::Digit => "chosen by key",
            RouteReason::Direct => "number goes straight to the route",
            RouteReason::NoInput => "no input",
            RouteReason::Invalid => "invalid input",
            RouteReason::SilentUrgent => "silent caller, urgent",
            RouteReason::Failsafe => "failsafe",
        })
    }
}

/// Which wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum TimeoutKind {
    /// Nothing was pressed after the prompts ended.
    FirstDigit,
    /// The caller stopped after a key that could have grown into a longer one.
    InterDigit,
    /// The player never reported the end of a prompt.
    PromptWatchdog,
    /// The menu's `offer_after` passed without a key since the answer.
    NoKeySinceAnswer,
}

/// One entry of a call's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEvent {
    pub at: Instant,
    pub kind: TimelineKind,
}

/// What happened, for the call log (serialisable as it is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TimelineKind {
    MenuEntered {
        menu: MenuId,
    },
    PromptStarted {
        prompt: PromptRef,
    },
    PromptInterrupted {
        prompt: PromptRef,
    },
    DigitReceived {
        digit: char,
    },
    /// Not a telephone key; ignored.
    DigitIgnored {
        digit: char,
    },
    Timeout {
        timeout: TimeoutKind,
    },
    InvalidChoice {
        keys: String,
    },
    Repeat,
    /// The menu is played again; `attempt` of `retries`.
    Retry {
        attempt: u32,
        retries: u32,
    },
    LanguageSwitched {
        language: Language,
    },
    RouteDecided {
        route: RouteId,
        reason: RouteReason,
        urgent: bool,
    },
}

impl fmt::Display for TimelineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimelineKind::MenuEntered { menu } => write!(f, "menu \"{menu}\""),
            TimelineKind::PromptStarted { prompt } => write!(f, "play {prompt}"),
            TimelineKind::PromptInterrupted { prompt } => write!(f, "stop {prompt} (barge-in)"),
            TimelineKind::DigitReceived { digit } => write!(f, "key {digit}"),
            TimelineKind::DigitIgnored { digit } => write!(f, "ignored {digit:?}: not a phone key"),
            TimelineKind::Timeout { timeout } => f.write_str(match timeout {
                TimeoutKind::FirstDigit => "no key pressed (first-digit timeout)",
                TimeoutKind::InterDigit => "no further key (inter-digit timeout)",
                TimeoutKind::PromptWatchdog => "prompt did not finish (watchdog)",
                TimeoutKind::NoKeySinceAnswer => "no key since the answer (offer_after)",
            }),
            TimelineKind::InvalidChoice { keys } => write!(f, "invalid choice \"{keys}\""),
            TimelineKind::Repeat => f.write_str("repeat (*)"),
            TimelineKind::Retry { attempt, retries } => write!(f, "retry {attempt} of {retries}"),
            TimelineKind::LanguageSwitched { language } => write!(f, "language → {language}"),
            TimelineKind::RouteDecided {
                route,
                reason,
                urgent,
            } => write!(
                f,
                "route \"{route}\" ({reason}){}",
                if *urgent { ", URGENT" } else { "" }
            ),
        }
    }
}

/// Why the menu is being replayed or left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    NoInput,
    Invalid,
    Repeat,
}

/// Whether a key has just been pressed or was held back while a prompt without barge-in
/// played (and is already in the timeline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyOrigin {
    Pressed,
    TypedAhead,
}

#[derive(Debug)]
enum Phase {
    Playing {
        playback: PlaybackId,
        prompt: PromptRef,
        /// Prompts still to play after this one.
        queued: VecDeque<PromptRef>,
        /// Keys pressed during a prompt without barge-in, handled when it ends.
        typeahead: Vec<char>,
        watchdog: Instant,
    },
    Collecting {
        keys: String,
        deadline: Instant,
    },
    Finished,
}

/// The `offer_after` deadline of a call: armed on entering a menu that has one, spent for good
/// once the caller presses a key or the deadline hands the call on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SilentOffer {
    NotArmed,
    Armed(Instant),
    Spent,
}

/// One caller's walk through the IVR.
#[derive(Debug)]
pub struct IvrSession {
    plan: Arc<Dialplan>,
    menu: MenuId,
    languages: Vec<Language>,
    /// Replays used in the current menu, for any reason.
    failures: u32,
    /// Of those, replays after silence.
    silences: u32,
    menu_entries: u32,
    next_playback: u64,
    /// When the call was answered (the session started): `offer_after` counts from here.
    answered: Instant,
    silent_offer: SilentOffer,
    phase: Phase,
    actions: VecDeque<IvrAction>,
}

impl IvrSession {
    /// Starts at `entry` (from [`Dialplan::classify`]). An entry that is a route finishes at
    /// once with [`RouteReason::Direct`].
    pub fn start(plan: Arc<Dialplan>, entry: &Entry, now: Instant) -> IvrSession {
        Self::start_after(plan, entry, now, now)
    }

    /// As [`IvrSession::start`], for a call answered at `answered` that heard something else
    /// first (a policy's warning): `offer_after` still counts from the answer, so a silent
    /// caller reaches a person as soon as any other.
    pub fn start_after(
        plan: Arc<Dialplan>,
        entry: &Entry,
        answered: Instant,
        now: Instant,
    ) -> IvrSession {
        Self::begin(plan, entry, answered, now, SilentOffer::NotArmed)
    }

    /// As [`IvrSession::start`], without the menus' early offer (`offer_after`) to a caller
    /// who presses nothing: for a call that did not pass the flood challenge, which would
    /// otherwise take a call-taker 15 s after the answer. It still hears the whole menu and
    /// reaches a person through the menu's no-input path — later, never not at all.
    pub fn start_without_silent_offer(
        plan: Arc<Dialplan>,
        entry: &Entry,
        now: Instant,
    ) -> IvrSession {
        Self::begin(plan, entry, now, now, SilentOffer::Spent)
    }

    fn begin(
        plan: Arc<Dialplan>,
        entry: &Entry,
        answered: Instant,
        now: Instant,
        silent_offer: SilentOffer,
    ) -> IvrSession {
        let languages = plan.centre().languages.clone();
        let mut session = IvrSession {
            menu: MenuId::new(""),
            plan,
            languages,
            failures: 0,
            silences: 0,
            menu_entries: 0,
            next_playback: 0,
            answered: answered.min(now),
            silent_offer,
            phase: Phase::Finished,
            actions: VecDeque::new(),
        };
        match entry {
            Entry::Route(route) => session.finish(now, route.clone(), RouteReason::Direct, false),
            Entry::Menu(menu) => session.enter_menu(now, menu.clone()),
        }
        session
    }

    /// Feeds one input. Afterwards drain [`IvrSession::poll_action`] until it returns `None`.
    pub fn handle(&mut self, now: Instant, input: IvrInput) {
        match input {
            IvrInput::PromptFinished(finished) => self.on_prompt_finished(now, finished),
            IvrInput::Digit(key) => {
                let key = if matches!(key, 'a'..='d') {
                    key.to_ascii_uppercase()
                } else {
                    key
                };
                self.on_key(now, key, KeyOrigin::Pressed);
            }
            IvrInput::Timeout => self.on_timeout(now),
        }
    }

    pub fn poll_action(&mut self) -> Option<IvrAction> {
        self.actions.pop_front()
    }

    /// When to send [`IvrInput::Timeout`]: the key wait while collecting, the watchdog while
    /// playing, `None` once finished.
    pub fn next_timeout(&self) -> Option<Instant> {
        let phase = match &self.phase {
            Phase::Playing { watchdog, .. } => *watchdog,
            Phase::Collecting { deadline, .. } => *deadline,
            Phase::Finished => return None,
        };
        Some(
            self.silent_offer_at()
                .map_or(phase, |offer| offer.min(phase)),
        )
    }

    /// When a caller who presses nothing is handed to the menu's `no_input` exit
    /// (`offer_after`), while that can still happen.
    pub fn silent_offer_at(&self) -> Option<Instant> {
        match self.silent_offer {
            SilentOffer::Armed(at) if !self.is_finished() => Some(at),
            _ => None,
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished)
    }

    /// Whether the session is waiting for a first key (prompts done, nothing pressed yet).
    pub fn is_listening(&self) -> bool {
        matches!(&self.phase, Phase::Collecting { keys, .. } if keys.is_empty())
    }

    pub fn current_menu(&self) -> &MenuId {
        &self.menu
    }

    /// The languages prompts are played in, first first.
    pub fn languages(&self) -> &[Language] {
        &self.languages
    }

    pub fn plan(&self) -> &Arc<Dialplan> {
        &self.plan
    }

    // ----- transitions -----

    fn timeline(&mut self, now: Instant, kind: TimelineKind) {
        self.actions
            .push_back(IvrAction::Timeline(TimelineEvent { at: now, kind }));
    }

    fn finish(&mut self, now: Instant, route: RouteId, reason: RouteReason, urgent: bool) {
        self.timeline(
            now,
            TimelineKind::RouteDecided {
                route: route.clone(),
                reason,
                urgent,
            },
        );
        self.actions.push_back(IvrAction::Route {
            route,
            reason,
            urgent,
            languages: self.languages.clone(),
        });
        self.phase = Phase::Finished;
    }

    fn failsafe(&mut self, now: Instant) {
        let last_resort = self.plan.last_resort().clone();
        self.finish(now, last_resort, RouteReason::Failsafe, false);
    }

    fn enter_menu(&mut self, now: Instant, menu: MenuId) {
        self.menu_entries += 1;
        if self.menu_entries > MAX_MENU_ENTRIES || self.plan.menu(&menu).is_none() {
            self.failsafe(now);
            return;
        }
        self.menu = menu.clone();
        self.failures = 0;
        self.silences = 0;
        if self.silent_offer == SilentOffer::NotArmed
            && let Some(offer_after) = self.plan.menu(&menu).and_then(|m| m.offer_after)
        {
            self.silent_offer = SilentOffer::Armed(self.answered + offer_after);
        }
        self.timeline(now, TimelineKind::MenuEntered { menu });
        self.play_menu(now, None, true);
    }

    /// Plays the menu: after an invalid choice the invalid prompt first, on first entry the
    /// greeting, then the menu prompt; each in every current language.
    fn play_menu(&mut self, now: Instant, after: Option<Failure>, with_greeting: bool) {
        // A second handle on the plan, so the menu can be read while `self` changes.
        let plan = Arc::clone(&self.plan);
        let Some(menu) = plan.menu(&self.menu) else {
            self.failsafe(now);
            return;
        };
        let invalid = menu
            .invalid_prompt
            .as_ref()
            .filter(|_| after == Some(Failure::Invalid));
        let greeting = menu.greeting.as_ref().filter(|_| with_greeting);
        let mut queued = VecDeque::new();
        for name in [invalid, greeting, Some(&menu.prompt)]
            .into_iter()
            .flatten()
        {
            queued.extend(plan.prompts(name, &self.languages));
        }
        self.play_next(now, queued, Vec::new());
    }

    fn play_next(&mut self, now: Instant, mut queued: VecDeque<PromptRef>, typeahead: Vec<char>) {
        let Some(prompt) = queued.pop_front() else {
            self.start_collecting(now, typeahead);
            return;
        };
        let barge_in = self.plan.menu(&self.menu).is_none_or(|menu| menu.barge_in);
        let playback = PlaybackId(self.next_playback);
        self.next_playback += 1;
        self.timeline(
            now,
            TimelineKind::PromptStarted {
                prompt: prompt.clone(),
            },
        );
        self.actions.push_back(IvrAction::Play {
            playback,
            prompt: prompt.clone(),
            barge_in,
        });
        self.phase = Phase::Playing {
            playback,
            prompt,
            queued,
            typeahead,
            watchdog: now + PROMPT_WATCHDOG,
        };
    }

    fn start_collecting(&mut self, now: Instant, typeahead: Vec<char>) {
        let Some(menu) = self.plan.menu(&self.menu) else {
            self.failsafe(now);
            return;
        };
        self.phase = Phase::Collecting {
            keys: String::new(),
            deadline: now + menu.first_digit_timeout,
        };
        // Already in the timeline from when they were pressed.
        for key in typeahead {
            self.on_key(now, key, KeyOrigin::TypedAhead);
        }
    }

    fn on_prompt_finished(&mut self, now: Instant, finished: PlaybackId) {
        let phase = std::mem::replace(&mut self.phase, Phase::Finished);
        match phase {
            Phase::Playing {
                playback,
                queued,
                typeahead,
                ..
            } if playback == finished => self.play_next(now, queued, typeahead),
            // A late report for a prompt that was already stopped, or after the end.
            other => self.phase = other,
        }
    }

    fn on_timeout(&mut self, now: Instant) {
        if self.silent_offer_at().is_some_and(|at| now >= at) {
            self.offer_silent_caller(now);
            return;
        }
        let phase = std::mem::replace(&mut self.phase, Phase::Finished);
        match phase {
            Phase::Playing {
                watchdog,
                queued,
                typeahead,
                ..
            } if now >= watchdog => {
                self.timeline(
                    now,
                    TimelineKind::Timeout {
                        timeout: TimeoutKind::PromptWatchdog,
                    },
                );
                self.play_next(now, queued, typeahead);
            }
            Phase::Collecting { keys, deadline } if now >= deadline => {
                if keys.is_empty() {
                    self.timeline(
                        now,
                        TimelineKind::Timeout {
                            timeout: TimeoutKind::FirstDigit,
                        },
                    );
                    self.fail(now, Failure::NoInput);
                    return;
                }
                self.timeline(
                    now,
                    TimelineKind::Timeout {
                        timeout: TimeoutKind::InterDigit,
                    },
                );
                match self.option(&keys) {
                    Some(choice) => self.choose(now, choice),
                    None => {
                        self.timeline(now, TimelineKind::InvalidChoice { keys });
                        self.fail(now, Failure::Invalid);
                    }
                }
            }
            // Early or stale: nothing is due yet.
            other => self.phase = other,
        }
    }

    fn on_key(&mut self, now: Instant, key: char, origin: KeyOrigin) {
        if matches!(self.phase, Phase::Finished) {
            return;
        }
        if !is_dtmf(key) {
            self.timeline(now, TimelineKind::DigitIgnored { digit: key });
            return;
        }
        if origin == KeyOrigin::Pressed {
            self.timeline(now, TimelineKind::DigitReceived { digit: key });
        }
        // The caller uses the keypad: the menu is theirs, however long they take.
        self.silent_offer = SilentOffer::Spent;
        let phase = std::mem::replace(&mut self.phase, Phase::Finished);
        match phase {
            Phase::Playing {
                playback,
                prompt,
                queued,
                mut typeahead,
                watchdog,
            } => {
                let barge_in = self.plan.menu(&self.menu).is_none_or(|menu| menu.barge_in);
                if barge_in {
                    self.actions.push_back(IvrAction::StopPlayback { playback });
                    self.timeline(now, TimelineKind::PromptInterrupted { prompt });
                    self.phase = Phase::Collecting {
                        keys: String::new(),
                        deadline: now,
                    };
                    self.collect(now, key);
                } else {
                    typeahead.push(key);
                    self.phase = Phase::Playing {
                        playback,
                        prompt,
                        queued,
                        typeahead,
                        watchdog,
                    };
                }
            }
            Phase::Collecting { keys, deadline } => {
                self.phase = Phase::Collecting { keys, deadline };
                self.collect(now, key);
            }
            Phase::Finished => {}
        }
    }

    /// Adds a key to what the caller has typed in the current menu and acts on it.
    fn collect(&mut self, now: Instant, key: char) {
        if key == '*' {
            self.timeline(now, TimelineKind::Repeat);
            self.fail(now, Failure::Repeat);
            return;
        }
        let Some(menu) = self.plan.menu(&self.menu) else {
            self.failsafe(now);
            return;
        };
        let inter_digit_timeout = menu.inter_digit_timeout;
        let Phase::Collecting { keys, .. } = &mut self.phase else {
            return;
        };
        keys.push(key);
        let typed = keys.clone();
        let exact = menu.options.get(&DigitKey::new(typed.as_str())).cloned();
        let could_grow = menu.options.keys().any(|option| {
            option.as_str().len() > typed.len() && option.as_str().starts_with(&typed)
        });
        match (exact, could_grow) {
            (_, true) => {
                self.phase = Phase::Collecting {
                    keys: typed,
                    deadline: now + inter_digit_timeout,
                };
            }
            (Some(choice), false) => self.choose(now, choice),
            (None, false) => {
                self.timeline(now, TimelineKind::InvalidChoice { keys: typed });
                self.fail(now, Failure::Invalid);
            }
        }
    }

    fn option(&self, keys: &str) -> Option<Choice> {
        self.plan
            .menu(&self.menu)
            .and_then(|menu| menu.options.get(&DigitKey::new(keys)))
            .cloned()
    }

    fn choose(&mut self, now: Instant, choice: Choice) {
        match choice {
            Choice::Route { route, silent } => {
                let reason = if silent {
                    RouteReason::SilentUrgent
                } else {
                    RouteReason::Digit
                };
                self.finish(now, route, reason, silent);
            }
            Choice::Menu(menu) => self.enter_menu(now, menu),
            Choice::Language(language) => {
                self.languages = vec![language.clone()];
                self.timeline(now, TimelineKind::LanguageSwitched { language });
                self.play_menu(now, None, false);
            }
        }
    }

    /// Silence, an invalid choice or `*`: replay the menu if a retry is left, else leave by
    /// the menu's exit.
    fn fail(&mut self, now: Instant, failure: Failure) {
        let Some(menu) = self.plan.menu(&self.menu).cloned() else {
            self.failsafe(now);
            return;
        };
        self.failures += 1;
        if failure == Failure::NoInput {
            self.silences += 1;
        }
        let retry_left = self.failures <= menu.retries
            && (failure != Failure::NoInput || self.silences <= menu.no_input_retries);
        if retry_left {
            self.timeline(
                now,
                TimelineKind::Retry {
                    attempt: self.failures,
                    retries: menu.retries,
                },
            );
            self.play_menu(now, Some(failure), false);
            return;
        }
        self.leave(now, &menu, failure);
    }

    /// `offer_after` is up and no key came since the answer: to the `no_input` exit now, the
    /// prompt that plays stopped (the route's connecting prompt follows).
    fn offer_silent_caller(&mut self, now: Instant) {
        self.silent_offer = SilentOffer::Spent;
        let Some(menu) = self.plan.menu(&self.menu).cloned() else {
            self.failsafe(now);
            return;
        };
        if let Phase::Playing { playback, .. } = &self.phase {
            self.actions.push_back(IvrAction::StopPlayback {
                playback: *playback,
            });
        }
        self.timeline(
            now,
            TimelineKind::Timeout {
                timeout: TimeoutKind::NoKeySinceAnswer,
            },
        );
        self.leave(now, &menu, Failure::NoInput);
    }

    fn leave(&mut self, now: Instant, menu: &Menu, failure: Failure) {
        let (exit, reason) = match failure {
            Failure::NoInput => (&menu.no_input, RouteReason::NoInput),
            Failure::Invalid | Failure::Repeat => (&menu.invalid, RouteReason::Invalid),
        };
        match exit.clone() {
            Exit::Route(route) => self.finish(now, route, reason, false),
            Exit::Menu(next) => self.enter_menu(now, next),
        }
    }
}
