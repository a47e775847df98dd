//! How a call ends: the gateway's hang-up, the end itself (logged once, with its reason), the
//! call's own timers, a lost ACK and a failed transport.

use std::time::Instant;

use siaga_dialplan::{IvrInput, IvrSession};

use super::{Call, CallState, LINGER, Probe};
use crate::effects::Effects;
use crate::end_reason::EndReason;
use crate::ids::LegId;
use crate::io::{LogRecord, MediaCommand};
use crate::timeline::CallEventKind;
use crate::transaction::table::{ClientPurpose, ClientTxKey, VERBATIM_REPEATS};

/// What a call timer asks of the dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerOutcome {
    Kept,
    /// Lingered too long after its end: forget it, whatever its legs still do.
    Forget,
}

impl Call {
    /// The gateway ends a call: BYE if answered, a final response if still ringing.
    pub(crate) fn hang_up(&mut self, now: Instant, fx: &mut Effects, reason: EndReason) {
        let call_ref = self.call_ref;
        match &self.state {
            CallState::HangingUp { .. } | CallState::Ended => {}
            CallState::Ringing { .. } => {
                let key = self.invite_tx.clone();
                let bytes = self.response_for(480, None);
                fx.respond(now, &key, 480, bytes);
                self.end_call(fx, reason, None);
            }
            CallState::Answered | CallState::Confirmed => {
                let branch = fx.branch();
                let why = vec![("Reason", format!("SIP;cause=200;text=\"{reason}\""))];
                let bytes = self.request_to_caller("BYE", &branch, why);
                self.state = CallState::HangingUp {
                    bye_branch: branch.clone(),
                };
                self.pending_end = Some(reason);
                let key = ClientTxKey {
                    branch,
                    method: "BYE",
                };
                let purpose = ClientPurpose::Bye;
                fx.send_non_invite(key, call_ref, LegId::Caller, purpose, self.flow, bytes);
                fx.media(MediaCommand::Release {
                    call: call_ref,
                    leg: LegId::Caller,
                });
                self.release_agency_legs(now, fx);
            }
        }
    }

    /// Our BYE got its final response (or timed out): the call is over.
    pub(crate) fn finish_hang_up(&mut self, fx: &mut Effects) {
        let reason = self.pending_end.unwrap_or(EndReason::GatewayHungUp);
        self.end_call(fx, reason, None);
    }

    /// The call is over: logged once with its reason; agency legs are released and the call
    /// lingers until they are done.
    pub(crate) fn end_call(&mut self, fx: &mut Effects, reason: EndReason, detail: Option<String>) {
        if matches!(self.state, CallState::Ended) {
            return;
        }
        let call_ref = self.call_ref;
        let now = fx.now;
        // Our own hang-up crossed with the caller's: the reason we had is the true one.
        let reason = self.pending_end.unwrap_or(reason);
        // A caller who gives up while an agency is still being rung, or while queued, is an
        // abandoned call: the centre calls such callers back.
        let reason = match (reason, self.agency.as_ref()) {
            (EndReason::CallerHungUp, Some(a)) if a.connected.is_none() => {
                EndReason::AbandonedWaitingForAgency
            }
            (r, _) => r,
        };
        {
            let _e = self.span.enter();
            tracing::info!(reason = reason.as_str(), "call ended");
        }
        let (merged, acks) = (self.merged_requests, self.repeated_acks);
        if merged > VERBATIM_REPEATS {
            let detail = format!(
                "{merged} copies of the INVITE on other branches answered 482; the first \
                 {VERBATIM_REPEATS} logged"
            );
            fx.timeline(call_ref, CallEventKind::MergedRequests, detail);
        }
        if acks > VERBATIM_REPEATS {
            let detail = format!("{acks} repeated ACKs; the first {VERBATIM_REPEATS} logged");
            fx.timeline(call_ref, CallEventKind::RepeatedAcks, detail);
        }
        // Still ringing (a transport error, an early BYE): the INVITE gets its final answer.
        if matches!(self.state, CallState::Ringing { .. }) {
            let bytes = self.response_for(487, None);
            fx.respond(now, &self.invite_tx.clone(), 487, bytes);
        }
        self.release_agency_legs(now, fx);
        let previous = std::mem::replace(&mut self.state, CallState::Ended);
        self.ended_at = Some(now);
        self.ivr = None;
        let dialog_key = (self.dialog.call_id.clone(), self.dialog.local_tag.clone());
        fx.dialogs.remove(&dialog_key);
        // A caller who sends BYE has our 200 even if its ACK was lost: stop repeating it.
        if let Some((_, tx_key)) = &self.awaiting_ack {
            fx.acked_2xx(tx_key);
        }
        fx.origins.retain(|_, c| *c != call_ref);
        if !matches!(previous, CallState::HangingUp { .. }) {
            fx.media(MediaCommand::Release {
                call: call_ref,
                leg: LegId::Caller,
            });
        }
        fx.log(LogRecord::CallEnded {
            call: call_ref,
            reason,
            detail,
        });
        self.log_signals(fx);
    }

    /// Tears down every agency leg (the caller is leaving).
    pub(crate) fn release_agency_legs(&mut self, now: Instant, fx: &mut Effects) {
        let released = self.with_agency(fx, |agency, view, fx| agency.release_all(now, view, fx));
        if released.is_none() {
            // No agency side: the media side is still told to stop any relay, as always.
            fx.media(MediaCommand::Unbridge {
                call: self.call_ref,
            });
        }
    }

    /// The call's own deadline came: IVR timeout, answer after the ring delay, maximum
    /// duration, a probe due again, agency ring timeouts and queue, lingering after the end.
    pub(crate) fn on_timer(&mut self, now: Instant, fx: &mut Effects) -> TimerOutcome {
        let call_ref = self.call_ref;
        if self
            .ivr
            .as_ref()
            .and_then(IvrSession::next_timeout)
            .is_some_and(|at| now >= at)
        {
            self.ivr_input(now, fx, IvrInput::Timeout);
        }
        match self.state {
            CallState::Ringing { .. } => self.try_answer(now, fx),
            CallState::Answered | CallState::Confirmed => {
                if self.hang_up_at.is_some_and(|at| now >= at) {
                    fx.timeline(
                        call_ref,
                        CallEventKind::MaxDuration,
                        "maximum call duration reached",
                    );
                    self.hang_up(now, fx, EndReason::GatewayHungUp);
                    return TimerOutcome::Kept;
                }
                if matches!(self.probe, Probe::Again(at) if now >= at) {
                    self.probe = Probe::Idle;
                    self.probe_caller(fx);
                }
                self.policy_timer(now, fx);
                self.challenge_timer(now, fx);
                self.with_agency(fx, |agency, view, fx| agency.on_timer(now, view, fx));
            }
            CallState::HangingUp { .. } => {}
            CallState::Ended => {
                if self.ended_at.is_some_and(|at| now >= at + LINGER) {
                    // Legs that never finished: give up on them.
                    return TimerOutcome::Forget;
                }
            }
        }
        TimerOutcome::Kept
    }

    /// No ACK for our 200 after 64·T1. RFC 3261 says end the session; an emergency caller
    /// whose audio is reaching us is kept (a lost ACK is not a hang-up).
    pub(crate) fn on_no_ack(&mut self, now: Instant, fx: &mut Effects) {
        if !matches!(self.state, CallState::Answered) {
            return;
        }
        if self.media_seen {
            fx.timeline(
                self.call_ref,
                CallEventKind::NoAck,
                "no ACK for 200, kept: caller media is flowing",
            );
            self.state = CallState::Confirmed;
            self.policy_acked(now, fx);
            return;
        }
        fx.timeline(
            self.call_ref,
            CallEventKind::NoAck,
            "no ACK for 200 and no media: hanging up",
        );
        self.hang_up(now, fx, EndReason::NoAck);
    }

    /// The caller's transport failed (TCP reset, ICMP unreachable).
    pub(crate) fn on_transport_error(&mut self, fx: &mut Effects, reason: &str) {
        fx.timeline(
            self.call_ref,
            CallEventKind::TransportError,
            reason.to_owned(),
        );
        // A caller whose audio still flows may come back on a new connection.
        if !self.media_seen {
            self.end_call(fx, EndReason::TransportError, Some(reason.to_owned()));
        }
    }
}
