//! Number policies on a call (issue 12, dialplan `[policies]`): what applied is put on the
//! timeline when the call starts; after the answer the caller hears the warning (then the IVR,
//! at lower queue priority) or the blocked announcement (then the gateway ends the call).

use std::time::Instant;

use siaga_dialplan::{
    Applied, CallerNumber, Decision, Dialled, Dialplan, IvrSession, NumberLists, Override,
    PROMPT_WATCHDOG, PolicyAction, PolicyFacts, RepeatCounter,
};

use super::prompt_queue::PromptQueue;
use super::{Call, CallState};
use crate::agency::QueuePriority;
use crate::effects::Effects;
use crate::end_reason::EndReason;
use crate::ids::CallRef;
use crate::io::{CallerIdentity, PlaybackId};
use crate::timeline::CallEventKind;

/// Policy announcements use this bit (the agency side's use the top one), so their ends are
/// told apart from the IVR's prompts.
pub(crate) const POLICY_PLAYBACK: u64 = 1 << 62;

pub(crate) fn is_policy_prompt(id: PlaybackId) -> bool {
    id.0 & POLICY_PLAYBACK != 0 && !crate::agency::is_announcement(id)
}

/// What the call does once its policy announcement has played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAnnouncement {
    /// The IVR (or the entry's route) as for any caller.
    Ivr,
    /// The gateway ends the call: `blocked_number`.
    HangUp,
}

/// The policy's announcement, from the answer until it has played.
#[derive(Debug)]
pub struct PolicyAnnouncement {
    pub then: AfterAnnouncement,
    prompts: PromptQueue,
    /// A prompt that never reports its end is given up on here.
    give_up_at: Option<Instant>,
}

/// What the number policies and the flood guard know of a new call's caller.
#[derive(Debug)]
pub(crate) struct CallerFacts {
    /// The caller's number in its one form (P-Asserted-Identity, else From).
    pub(crate) number: Option<CallerNumber>,
    /// A URN call with a PIDF-LO location (a device's emergency call).
    pub(crate) urn_with_location: bool,
}

impl CallerFacts {
    pub(crate) fn of(
        plan: &Dialplan,
        identity: &CallerIdentity,
        dialled: &str,
        location: Option<&siaga_location::LocationReport>,
    ) -> Self {
        let country = plan.centre().country_code.as_deref();
        let number = super::signals::caller_number(identity)
            .and_then(|n| CallerNumber::normalise(&n, country).ok());
        let urn = matches!(Dialled::parse(dialled), Dialled::Service(_));
        CallerFacts {
            number,
            urn_with_location: urn && location.is_some_and(|l| !l.pidf_documents.is_empty()),
        }
    }
}

/// What a call does with the policies that applied to it.
#[derive(Debug, Default)]
pub(crate) struct PolicyOutcome {
    pub(crate) priority: QueuePriority,
    pub(crate) announcement: Option<PolicyAnnouncement>,
    /// For the agency (`X-Siaga-Policy`): which policies applied, no personal data.
    pub(crate) note: Option<String>,
}

impl PolicyOutcome {
    /// The call ends after its announcement (a blocked number).
    pub(crate) fn blocks(&self) -> bool {
        self.announcement
            .as_ref()
            .is_some_and(|a| a.then == AfterAnnouncement::HangUp)
    }
}

/// The engine's side of the policies: the lists the shell hands in and the recent calls.
#[derive(Debug)]
pub(crate) struct NumberPolicies {
    pub(crate) lists: std::sync::Arc<NumberLists>,
    pub(crate) counter: RepeatCounter,
}

impl NumberPolicies {
    pub(crate) fn new(plan: &Dialplan) -> Self {
        NumberPolicies {
            lists: Default::default(),
            counter: RepeatCounter::for_policies(plan.policies()),
        }
    }

    /// A reloaded plan with other limits starts counting afresh (sized for them).
    pub(crate) fn plan_changed(&mut self, old: &Dialplan, new: &Dialplan) {
        if old.policies() != new.policies() {
            self.counter = RepeatCounter::for_policies(new.policies());
        }
    }

    /// Decides for a new emergency call, puts what applied on its timeline, and returns what
    /// the call does with it.
    pub(crate) fn start_call(
        &mut self,
        now: Instant,
        fx: &mut Effects,
        call: CallRef,
        plan: &Dialplan,
        caller: &CallerFacts,
    ) -> PolicyOutcome {
        let facts = PolicyFacts {
            number: caller.number.as_ref(),
            urn_with_location: caller.urn_with_location,
        };
        let policies = plan.policies();
        let Decision { action, applied } =
            policies.decide(&self.lists, &mut self.counter, facts, now);
        for a in &applied {
            let kind = match a {
                Applied::RepeatCaller { .. } => CallEventKind::PolicyRepeatCaller,
                Applied::Watched(_) => CallEventKind::PolicyWatched,
                Applied::Blocked(_) => CallEventKind::PolicyBlocked,
                Applied::BlockOverridden { .. } => CallEventKind::PolicyBlockOverridden,
            };
            fx.timeline(call, kind, a.detail(now));
        }
        let languages = &plan.centre().languages;
        let announcement = |prompt: &Option<siaga_dialplan::PromptName>, then| {
            let prompts = prompt
                .iter()
                .flat_map(|p| plan.prompts(p, languages))
                .map(|p| p.path);
            Some(PolicyAnnouncement {
                then,
                prompts: PromptQueue::new(prompts, POLICY_PLAYBACK, "policy announcement"),
                give_up_at: None,
            })
        };
        let note = applied
            .iter()
            .map(|a| match a {
                Applied::RepeatCaller { .. } => "repeat caller",
                Applied::Watched(_) => "watched number",
                Applied::Blocked(_) => "blocked number",
                Applied::BlockOverridden {
                    reason: Override::CalledAgain { .. },
                    ..
                } => "blocked number, let through: called again",
                Applied::BlockOverridden {
                    reason: Override::UrnWithLocation,
                    ..
                } => "blocked number, let through: URN with location",
            })
            .collect::<Vec<_>>()
            .join("; ");
        let (priority, announcement) = match action {
            PolicyAction::Normal => (QueuePriority::Normal, None),
            PolicyAction::WarnLowPriority => (
                QueuePriority::Low,
                announcement(&policies.warning_prompt, AfterAnnouncement::Ivr),
            ),
            PolicyAction::Block => (
                QueuePriority::Normal,
                announcement(&policies.blocked_prompt, AfterAnnouncement::HangUp),
            ),
        };
        PolicyOutcome {
            priority,
            announcement,
            note: (!note.is_empty()).then_some(note),
        }
    }
}

impl Call {
    /// Right after the answer: a flood challenge if the call must pass one, then the
    /// policy's announcement if there is one, else the IVR.
    pub(crate) fn after_answer(&mut self, now: Instant, fx: &mut Effects) {
        if self.is_challenged() {
            self.start_challenge(now, fx);
        } else {
            self.after_challenge(now, fx);
        }
    }

    /// The challenge is over (or there was none): the announcement or the IVR.
    pub(crate) fn after_challenge(&mut self, now: Instant, fx: &mut Effects) {
        if self.announcement.is_some() {
            self.play_next_policy_prompt(now, fx);
        } else {
            self.start_ivr(now, fx);
        }
    }

    /// The IVR starts: the caller hears the centre, and prompts reach the recording. A menu's
    /// `offer_after` counts from the answer, the warning included.
    fn start_ivr(&mut self, now: Instant, fx: &mut Effects) {
        if let Some(entry) = self.entry.clone() {
            let answered = self.signals.answered_at.unwrap_or(now);
            let plan = self.plan.clone();
            self.ivr = Some(if self.priority == QueuePriority::Lowest {
                IvrSession::start_without_silent_offer(plan, &entry, now)
            } else {
                IvrSession::start_after(plan, &entry, answered, now)
            });
            self.pump_ivr(now, fx);
        }
    }

    fn play_next_policy_prompt(&mut self, now: Instant, fx: &mut Effects) {
        let Some(announcement) = self.announcement.as_mut() else {
            return;
        };
        if announcement.prompts.play_next(self.call_ref, fx) {
            announcement.give_up_at = Some(now + PROMPT_WATCHDOG);
            return;
        }
        announcement.give_up_at = None;
        match announcement.then {
            AfterAnnouncement::Ivr => {
                self.announcement = None;
                self.start_ivr(now, fx);
            }
            // A BYE waits for the caller's ACK (RFC 3261 §15): `policy_acked` sends it then.
            AfterAnnouncement::HangUp if matches!(self.state, CallState::Answered) => {}
            AfterAnnouncement::HangUp => {
                self.announcement = None;
                self.hang_up(now, fx, EndReason::BlockedNumber);
            }
        }
    }

    /// The media side finished (or could not play) a policy prompt.
    pub(crate) fn policy_prompt_finished(
        &mut self,
        now: Instant,
        fx: &mut Effects,
        playback: PlaybackId,
    ) {
        if self
            .announcement
            .as_ref()
            .is_some_and(|a| a.prompts.is_playing(playback))
        {
            self.play_next_policy_prompt(now, fx);
        }
    }

    /// The ACK came: a blocked caller whose announcement is over is released now.
    pub(crate) fn policy_acked(&mut self, now: Instant, fx: &mut Effects) {
        let done = self
            .announcement
            .as_ref()
            .is_some_and(|a| a.then == AfterAnnouncement::HangUp && a.prompts.is_done());
        if done {
            self.play_next_policy_prompt(now, fx);
        }
    }

    /// The caller hears the blocked announcement (or waits for its end).
    pub(crate) fn is_being_blocked(&self) -> bool {
        self.announcement
            .as_ref()
            .is_some_and(|a| a.then == AfterAnnouncement::HangUp)
    }

    /// When a policy prompt that never ends is given up on.
    pub(crate) fn policy_deadline(&self) -> Option<Instant> {
        self.announcement.as_ref().and_then(|a| a.give_up_at)
    }

    /// At the call's deadline: a prompt past its watchdog is stopped and the call goes on.
    pub(crate) fn policy_timer(&mut self, now: Instant, fx: &mut Effects) {
        let Some(announcement) = self.announcement.as_mut() else {
            return;
        };
        if announcement.give_up_at.is_none_or(|at| now < at) {
            return;
        }
        announcement.prompts.stop(self.call_ref, fx);
        self.play_next_policy_prompt(now, fx);
    }
}
