//! What the media side reports about a call's legs: ports bound (or not), first packets,
//! digits, prompt ends, silence and its end.

use std::net::SocketAddr;
use std::time::Instant;

use siaga_dialplan::IvrInput;

use super::challenge::is_challenge_prompt;
use super::policy::is_policy_prompt;
use super::{Call, CallState, Probe};
use crate::agency::is_announcement;
use crate::effects::Effects;
use crate::ids::{LegId, LegNo};
use crate::io::MediaEvent;
use crate::timeline::CallEventKind;

impl Call {
    pub(crate) fn on_media(
        &mut self,
        now: Instant,
        fx: &mut Effects,
        leg: LegId,
        event: MediaEvent,
    ) {
        let call_ref = self.call_ref;
        match (event, leg) {
            (MediaEvent::Allocated { local }, LegId::Agency(n)) => {
                let n = LegNo(n);
                self.with_agency(fx, |a, view, fx| {
                    a.send_agency_invite(now, view, fx, n, local)
                });
            }
            (MediaEvent::AllocationFailed { reason }, LegId::Agency(n)) => {
                let n = LegNo(n);
                // Ring the agency anyway: a human on the line beats no call; audio is logged
                // as failed.
                let fallback = SocketAddr::new(self.flow.local.ip(), 9);
                fx.timeline(
                    call_ref,
                    CallEventKind::MediaFailed,
                    format!("leg B{n}: {reason}"),
                );
                self.with_agency(fx, |a, view, fx| {
                    a.send_agency_invite(now, view, fx, n, fallback)
                });
            }
            (MediaEvent::Allocated { local }, LegId::Caller) => {
                self.signals.media_leg = true;
                if let CallState::Ringing { media_local, .. } = &mut self.state {
                    *media_local = Some(local);
                    self.try_answer(now, fx);
                }
            }
            (MediaEvent::AllocationFailed { reason }, LegId::Caller) => {
                // Answer anyway: a caller who can be heard later beats a refused call. The
                // SDP points at our signalling address with port 9 (discard).
                let fallback = SocketAddr::new(self.flow.local.ip(), 9);
                if let CallState::Ringing { media_local, .. } = &mut self.state {
                    *media_local = Some(fallback);
                }
                fx.timeline(call_ref, CallEventKind::MediaFailed, reason);
                self.try_answer(now, fx);
            }
            (MediaEvent::FirstPacket, _) => {
                if leg == LegId::Caller {
                    self.media_seen = true;
                    self.caller_silent = false;
                }
                fx.timeline(
                    call_ref,
                    CallEventKind::MediaStarted,
                    format!("first RTP on leg {leg}"),
                );
            }
            (MediaEvent::Digit { digit, source }, _) => {
                if leg == LegId::Caller {
                    self.signals.digits += 1;
                    fx.timeline(
                        call_ref,
                        CallEventKind::Dtmf,
                        format!("{digit} via {source}"),
                    );
                    // A key that answers the flood challenge is not the IVR's.
                    if self.is_challenged() {
                        self.challenge_answered(now, fx, &format!("key {digit}"));
                    } else {
                        self.ivr_input(now, fx, IvrInput::Digit(digit));
                    }
                } else {
                    fx.timeline(
                        call_ref,
                        CallEventKind::AgencyDtmf,
                        format!("{digit} via {source} on leg {leg}"),
                    );
                }
            }
            (MediaEvent::PromptFinished { playback }, _) if is_announcement(playback) => {
                self.with_agency(fx, |a, view, fx| {
                    a.announcement_finished(now, view, fx, playback)
                });
            }
            (MediaEvent::PromptFinished { playback }, _) if is_policy_prompt(playback) => {
                self.policy_prompt_finished(now, fx, playback);
            }
            (MediaEvent::PromptFinished { playback }, _) if is_challenge_prompt(playback) => {
                self.challenge_prompt_finished(fx, playback);
            }
            (MediaEvent::PromptFinished { playback }, _) => {
                let id = siaga_dialplan::PlaybackId(playback.0);
                self.ivr_input(now, fx, IvrInput::PromptFinished(id));
            }
            (MediaEvent::Timeout { silent_for }, _) => {
                if leg == LegId::Caller {
                    self.caller_silent = true;
                }
                fx.timeline(
                    call_ref,
                    CallEventKind::MediaTimeout,
                    format!("no RTP for {} s on leg {leg}", silent_for.as_secs()),
                );
                if leg == LegId::Caller {
                    self.probe_caller(fx);
                }
            }
            (MediaEvent::Speech, LegId::Caller) if self.is_challenged() => {
                self.challenge_answered(now, fx, "speech");
            }
            (MediaEvent::Speech, _) => {}
            (MediaEvent::VoiceActivity(totals), LegId::Caller) => self.on_voice(fx, totals),
            // Only the caller's leg is metered.
            (MediaEvent::VoiceActivity(_), LegId::Agency(_)) => {}
            (MediaEvent::Resumed { silent_for }, _) => {
                if leg == LegId::Caller {
                    self.caller_silent = false;
                    if matches!(self.probe, Probe::Again(_)) {
                        self.probe = Probe::Idle;
                    }
                }
                fx.timeline(
                    call_ref,
                    CallEventKind::MediaResumed,
                    format!("RTP again on leg {leg} after {} s", silent_for.as_secs()),
                );
            }
        }
    }
}
