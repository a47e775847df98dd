//! Checking a caller whose RTP stopped: an in-dialog OPTIONS (RFC 3261 §11); a 481 or 408, or
//! no answer at all, while still silent, ends the call as `caller_lost` (RFC 5057).

use std::time::Instant;

use super::{Call, CallState, Probe};
use crate::effects::Effects;
use crate::end_reason::EndReason;
use crate::ids::LegId;
use crate::timeline::CallEventKind;
use crate::transaction::table::{ClientPurpose, ClientTxKey};

impl Call {
    /// Asks a silent caller's UA whether the dialog still exists. OPTIONS rather than an
    /// RFC 4028 session refresh: it needs nothing negotiated, every UA must answer it, and it
    /// cannot change the media session of an emergency call.
    pub(crate) fn probe_caller(&mut self, fx: &mut Effects) {
        if fx.cfg.silent_caller_probe.reprobe.is_none() {
            return;
        }
        let up = matches!(self.state, CallState::Answered | CallState::Confirmed);
        if !up || !self.caller_silent || matches!(self.probe, Probe::Sent(_)) {
            return;
        }
        let branch = fx.branch();
        let accept = vec![("Accept", "application/sdp".to_owned())];
        let bytes = self.request_to_caller("OPTIONS", &branch, accept);
        self.probe = Probe::Sent(branch.clone());
        fx.timeline(
            self.call_ref,
            CallEventKind::CallerProbe,
            "no RTP from the caller: OPTIONS sent in the dialog",
        );
        let key = ClientTxKey {
            branch,
            method: "OPTIONS",
        };
        let purpose = ClientPurpose::Probe;
        fx.send_non_invite(key, self.call_ref, LegId::Caller, purpose, self.flow, bytes);
    }

    /// The probe's outcome: a final status, or why none came (timeout, transport error).
    pub(crate) fn probe_result(
        &mut self,
        now: Instant,
        fx: &mut Effects,
        outcome: Result<u16, String>,
    ) {
        let call_ref = self.call_ref;
        self.probe = Probe::Idle;
        if !matches!(self.state, CallState::Answered | CallState::Confirmed) {
            return;
        }
        let lost = match &outcome {
            Ok(status) => matches!(status, 408 | 481),
            Err(_) => true,
        };
        let what = match &outcome {
            Ok(status) => format!("the caller answered {status}"),
            Err(why) => why.clone(),
        };
        if !self.caller_silent {
            return fx.timeline(
                call_ref,
                CallEventKind::CallerProbe,
                format!("{what}; RTP is back: kept"),
            );
        }
        if !lost {
            self.probe = match fx.cfg.silent_caller_probe.reprobe {
                Some(every) => Probe::Again(now + every),
                None => Probe::Idle,
            };
            fx.timeline(
                call_ref,
                CallEventKind::CallerProbe,
                format!("{what}: kept"),
            );
            return;
        }
        // The caller's UA has no such dialog, or is gone: a BYE lost on the way, a phone
        // that died. No BYE to it (it has nothing to end); the agency legs get theirs.
        let detail = format!("{what} and no RTP from the caller");
        fx.timeline(call_ref, CallEventKind::CallerLost, detail.clone());
        self.end_call(fx, EndReason::CallerLost, Some(detail));
    }

    /// The probe could not be sent (the caller's TCP connection dropped). That says nothing
    /// about the caller's dialog: its SBC may come back on a new connection. The call is kept
    /// and the probe tried again at the next interval; only a 481/408 or Timer F ends it.
    pub(crate) fn probe_unsent(&mut self, now: Instant, fx: &mut Effects, reason: &str) {
        let every = fx.cfg.silent_caller_probe.reprobe;
        self.probe = every.map_or(Probe::Idle, |every| Probe::Again(now + every));
        if !matches!(self.state, CallState::Answered | CallState::Confirmed) {
            return;
        }
        let next = every.map_or(String::new(), |e| {
            format!(", asked again in {} s", e.as_secs())
        });
        let detail = format!("OPTIONS not sent (transport error: {reason}): kept{next}");
        fx.timeline(self.call_ref, CallEventKind::CallerProbe, detail);
    }
}
