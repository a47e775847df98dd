//! The IVR's glue: what the dialplan's IVR machine asks for (prompts, timeline events, the
//! route decision) carried out on the call, and its inputs fed in.

use std::time::Instant;

use siaga_dialplan::{IvrAction, IvrInput, IvrSession};

use super::{Call, RouteDecision};
use crate::agency::AgencySide;
use crate::effects::Effects;
use crate::ids::LegId;
use crate::io::{MediaCommand, PlaybackId};
use crate::timeline::CallEventKind;

impl Call {
    /// Carries out what the IVR asks for.
    pub(crate) fn pump_ivr(&mut self, now: Instant, fx: &mut Effects) {
        let call_ref = self.call_ref;
        loop {
            let Some(action) = self.ivr.as_mut().and_then(IvrSession::poll_action) else {
                if self.ivr.as_ref().is_some_and(IvrSession::is_finished) {
                    self.ivr = None;
                }
                return;
            };
            match action {
                IvrAction::Play {
                    playback, prompt, ..
                } => fx.media(MediaCommand::Play {
                    call: call_ref,
                    leg: LegId::Caller,
                    playback: PlaybackId(playback.0),
                    prompt: prompt.path,
                }),
                IvrAction::StopPlayback { playback } => fx.media(MediaCommand::StopPlayback {
                    call: call_ref,
                    leg: LegId::Caller,
                    playback: PlaybackId(playback.0),
                }),
                IvrAction::Route {
                    route,
                    reason,
                    urgent,
                    languages,
                } => {
                    self.routed = Some(RouteDecision {
                        route: route.clone(),
                        reason,
                        urgent,
                    });
                    // Leg numbers go on from an earlier agency side, if any.
                    let next_leg = self.agency.as_ref().map_or(1, |a| a.next_leg);
                    let reason = reason.to_string();
                    let side = AgencySide::start(
                        now,
                        &self.caller_view(),
                        fx,
                        route,
                        reason,
                        urgent,
                        languages,
                        next_leg,
                    );
                    self.agency = Some(side);
                }
                IvrAction::Timeline(event) => {
                    let kind = CallEventKind::from(&event.kind);
                    fx.timeline(call_ref, kind, event.kind.to_string());
                }
            }
        }
    }

    /// Feeds the IVR one input (digit, prompt end, timeout) and carries out its answer.
    pub(crate) fn ivr_input(&mut self, now: Instant, fx: &mut Effects, input: IvrInput) {
        let Some(ivr) = self.ivr.as_mut() else {
            return;
        };
        ivr.handle(now, input);
        self.pump_ivr(now, fx);
    }
}
