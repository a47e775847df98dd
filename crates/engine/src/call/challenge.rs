//! The flood challenge (issue 12 item 4): while the centre is under attack, a caller beyond
//! its limits hears "press any key or speak" right after the answer. A key or speech passes
//! (the number is not asked again in this attack); nothing within the timeout and the call
//! still goes on — into the IVR and to the call-takers — but waits behind every other
//! caller, and without the menu's early offer (`offer_after`): a flood's silent calls would
//! otherwise each take a call-taker 15 s after the answer. No one is ever hung up on here.

use std::time::{Duration, Instant};

use siaga_dialplan::{CallerNumber, Dialplan, FloodVerdict, NewCallFacts, PromptName, Voice};

use super::Call;
use super::prompt_queue::PromptQueue;
use crate::agency::QueuePriority;
use crate::effects::Effects;
use crate::ids::CallRef;
use crate::io::{CallSignals, LogRecord, PlaybackId};
use crate::timeline::CallEventKind;

/// Challenge prompts use this bit (policy announcements the next one up, the agency side's
/// the top one), so their ends are told apart from the IVR's prompts.
const CHALLENGE_PLAYBACK: u64 = 1 << 61;

pub(crate) fn is_challenge_prompt(id: PlaybackId) -> bool {
    id.0 & CHALLENGE_PLAYBACK != 0
        && !super::policy::is_policy_prompt(id)
        && !crate::agency::is_announcement(id)
}

/// A challenge from the answer until the caller passes or its time is up.
#[derive(Debug)]
pub struct Challenge {
    /// Why this call is challenged (on the timeline).
    reason: String,
    prompts: PromptQueue,
    timeout: Duration,
    /// Set when the first prompt starts.
    deadline: Option<Instant>,
    number: Option<CallerNumber>,
}

impl Challenge {
    fn new(
        plan: &Dialplan,
        prompt: &PromptName,
        reason: String,
        number: Option<CallerNumber>,
    ) -> Self {
        let prompts = plan
            .prompts(prompt, &plan.centre().languages)
            .into_iter()
            .map(|p| p.path);
        Challenge {
            reason,
            prompts: PromptQueue::new(prompts, CHALLENGE_PLAYBACK, "flood challenge"),
            timeout: plan.flood().challenge_timeout,
            deadline: None,
            number,
        }
    }
}

/// A new emergency call meets the flood guard: counted, the attack's start or end logged as
/// a gateway event, and the challenge it must pass, if any (on its timeline).
pub(crate) fn admit(
    now: Instant,
    fx: &mut Effects,
    call: CallRef,
    plan: &Dialplan,
    facts: NewCallFacts<'_>,
) -> Option<Challenge> {
    let (verdict, change) = fx.flood.new_call(now, facts);
    if let Some(change) = change {
        fx.log(LogRecord::Attack(change));
    }
    match verdict {
        FloodVerdict::Admit => None,
        FloodVerdict::Exempt(why) => {
            fx.timeline(
                call,
                CallEventKind::ChallengeExempt,
                format!("under attack; not challenged: {why}"),
            );
            None
        }
        FloodVerdict::Challenge(reason) => {
            let prompt = plan.flood().challenge_prompt.as_ref()?;
            let reason = reason.to_string();
            fx.timeline(call, CallEventKind::ChallengeStarted, reason.clone());
            Some(Challenge::new(plan, prompt, reason, facts.number.cloned()))
        }
    }
}

/// Time passes: an attack may end.
pub(crate) fn poll(now: Instant, fx: &mut Effects) {
    if let Some(change) = fx.flood.poll(now) {
        fx.log(LogRecord::Attack(change));
    }
    fx.flood_timer(now);
}

impl Effects {
    /// A call's signals, about to be logged: a silent short call (answered, no voiced run of
    /// `speech_run`, speech under the class threshold, no key, no agency, over before
    /// `abandoned_within`) counts toward an attack — the same thresholds as the `silent` class.
    pub(crate) fn count_silent_short(&mut self, signals: &CallSignals) {
        let rules = &self.silent_rules;
        let short = signals
            .answered_for
            .is_some_and(|d| d < rules.abandoned_within);
        let silent = signals.voice.is_none_or(|v| {
            rules.voice_is_silent(&Voice {
                frames: v.frames.into(),
                speech_frames: v.speech_frames.into(),
                longest_run: Duration::from_millis(v.longest_speech_ms.into()),
                longest_voiced_run: Some(Duration::from_millis(v.longest_voiced_ms.into())),
            })
        });
        if short && silent && signals.digits == 0 && signals.agency_talk.is_none() {
            let now = self.now;
            if let Some(change) = self.flood.silent_short_call(now) {
                self.log(LogRecord::Attack(change));
            }
            self.flood_timer(now);
        }
    }

    /// Under attack, the engine looks again when it may be calm; otherwise no timer.
    pub(crate) fn flood_timer(&mut self, now: Instant) {
        let next = self.flood.next_check(now);
        self.timers.set(crate::effects::TimerKey::Flood, next);
    }
}

impl Call {
    /// Right after the answer: the challenge's prompts start, and its clock.
    pub(crate) fn start_challenge(&mut self, now: Instant, fx: &mut Effects) {
        if let Some(challenge) = self.challenge.as_mut() {
            challenge.deadline = Some(now + challenge.timeout);
        }
        self.play_next_challenge_prompt(fx);
    }

    fn play_next_challenge_prompt(&mut self, fx: &mut Effects) {
        if let Some(challenge) = self.challenge.as_mut() {
            challenge.prompts.play_next(self.call_ref, fx);
        }
    }

    /// The media side finished (or could not play) a challenge prompt.
    pub(crate) fn challenge_prompt_finished(&mut self, fx: &mut Effects, playback: PlaybackId) {
        if self
            .challenge
            .as_ref()
            .is_some_and(|c| c.prompts.is_playing(playback))
        {
            self.play_next_challenge_prompt(fx);
        }
    }

    /// Whether a key or speech now answers a challenge (and is not the IVR's).
    pub(crate) fn is_challenged(&self) -> bool {
        self.challenge.is_some()
    }

    /// A key or speech: the caller passes.
    pub(crate) fn challenge_answered(&mut self, now: Instant, fx: &mut Effects, how: &str) {
        self.end_challenge(now, fx, Some(how));
    }

    pub(crate) fn challenge_deadline(&self) -> Option<Instant> {
        self.challenge.as_ref().and_then(|c| c.deadline)
    }

    /// At the call's deadline: nothing came in time.
    pub(crate) fn challenge_timer(&mut self, now: Instant, fx: &mut Effects) {
        if self.challenge_deadline().is_some_and(|at| now >= at) {
            self.end_challenge(now, fx, None);
        }
    }

    fn end_challenge(&mut self, now: Instant, fx: &mut Effects, passed_by: Option<&str>) {
        let Some(mut challenge) = self.challenge.take() else {
            return;
        };
        challenge.prompts.stop(self.call_ref, fx);
        match passed_by {
            Some(how) => {
                fx.flood.passed(challenge.number.as_ref(), now);
                fx.timeline(
                    self.call_ref,
                    CallEventKind::ChallengePassed,
                    format!("{how}; challenged because {}", challenge.reason),
                );
            }
            None => {
                self.priority = QueuePriority::Lowest;
                fx.timeline(
                    self.call_ref,
                    CallEventKind::ChallengeFailed,
                    format!(
                        "no key and no speech within {} s: the call goes on, behind every other caller, through the whole menu (no early offer to the call-takers)",
                        challenge.timeout.as_secs()
                    ),
                );
            }
        }
        self.after_challenge(now, fx);
    }
}
