//! Agency traffic handed to the call's agency side, and the few places where the agency side
//! and the caller's half meet (an agency hanging up ends the caller's leg).

use std::time::Instant;

use rsipstack::sip::{Request, Response};

use super::Call;
use crate::agency::AgencyRequest;
use crate::effects::Effects;
use crate::end_reason::EndReason;
use crate::ids::LegNo;
use crate::net::Flow;
use crate::transaction::ServerTxKey;
use crate::transaction::client::ResponseVerdict;
use crate::transaction::table::ClientPurpose;

impl Call {
    /// A response on one of the agency legs' transactions.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_agency_response(
        &mut self,
        now: Instant,
        fx: &mut Effects,
        n: LegNo,
        purpose: ClientPurpose,
        resp: &Response,
        verdict: ResponseVerdict,
    ) {
        self.with_agency(fx, |a, view, fx| {
            a.on_agency_response(now, view, fx, n, purpose, resp, verdict)
        });
    }

    /// A request from an agency inside its dialog.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_agency_request(
        &mut self,
        now: Instant,
        fx: &mut Effects,
        flow: Flow,
        req: Request,
        key: ServerTxKey,
        n: LegNo,
    ) {
        let outcome = self.with_agency(fx, |a, view, fx| {
            a.on_agency_request(now, view, fx, flow, req, key, n)
        });
        if let Some(AgencyRequest::CallerToHangUp { leg }) = outcome {
            // The agency ended the call: the caller is told with a BYE first, so the route is
            // not rung again for a caller who is being released.
            self.hang_up(now, fx, EndReason::AgencyHungUp);
            self.with_agency(fx, |a, view, fx| a.leg_done(now, view, fx, leg));
        }
    }

    /// A client transaction of an agency leg failed (Timer B/F, transport error).
    pub(crate) fn agency_tx_failed(
        &mut self,
        now: Instant,
        fx: &mut Effects,
        n: LegNo,
        purpose: ClientPurpose,
        why: &str,
    ) {
        self.with_agency(fx, |a, view, fx| {
            a.tx_failed(now, view, fx, n, purpose, why)
        });
    }

    /// The agency ACKed our 200 to its re-INVITE.
    pub(crate) fn agency_ack(&mut self, fx: &mut Effects, n: LegNo, cseq: u32) {
        self.with_agency(fx, |a, _, fx| a.agency_ack(fx, n, cseq));
    }

    /// The head of a route's queue: ring again now that a target it waits for is free.
    pub(crate) fn retry_from_queue(&mut self, now: Instant, fx: &mut Effects) {
        self.with_agency(fx, |a, view, fx| a.retry_from_queue(now, view, fx));
    }

    /// Whether this call waits for a route that rings `uri`.
    pub(crate) fn waits_for(&self, uri: &str) -> bool {
        self.agency
            .as_ref()
            .is_some_and(|a| a.route.targets.iter().any(|t| t.uri.as_str() == uri))
    }

    /// The final response to one of our requests on the caller's leg (BYE, OPTIONS probe).
    pub(crate) fn on_caller_tx_done(
        &mut self,
        now: Instant,
        fx: &mut Effects,
        purpose: ClientPurpose,
        status: u16,
    ) {
        match purpose {
            ClientPurpose::Probe => self.probe_result(now, fx, Ok(status)),
            _ => self.finish_hang_up(fx),
        }
    }
}
