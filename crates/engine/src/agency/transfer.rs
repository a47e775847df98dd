//! Requests from an agency inside its dialog: BYE, re-INVITE/UPDATE (never hold for the
//! caller), REFER (transfer to another desk) and its NOTIFYs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rsipstack::sip::{Header, Method, Request};
use siaga_dialplan::Target;

use super::{AgencySide, CallerView, LegState};
use crate::effects::Effects;
use crate::ids::{LegId, LegNo};
use crate::io::MediaCommand;
use crate::net::Flow;
use crate::sip::build::{self, Body, ResponseExtras};
use crate::sip::read::{self, cseq_of, sdp_port, uri_of};
use crate::timeline::CallEventKind;
use crate::transaction::ServerTxKey;
use crate::transaction::table::ServerTxEntry;

/// What the call must do after an agency's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AgencyRequest {
    Done,
    /// The connected agency hung up: the caller gets a BYE, then the leg is finished
    /// (`AgencySide::leg_done`), so the route is not rung again for a caller being released.
    CallerToHangUp {
        leg: LegNo,
    },
}

impl AgencySide {
    /// A request from an agency inside its dialog.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_agency_request(
        &mut self,
        now: Instant,
        call: &CallerView<'_>,
        fx: &mut Effects,
        flow: Flow,
        req: Request,
        key: ServerTxKey,
        n: LegNo,
    ) -> AgencyRequest {
        let call_ref = call.call_ref;
        let connected = self.connected == Some(n);
        match req.method {
            Method::Bye => {
                self.reply_agency(now, call, fx, flow, &req, key, n, 200, vec![], None);
                let transferring = self.legs.get(&n).is_some_and(|l| l.transferring);
                let answered = self.legs.get(&n).is_some_and(|l| l.state.is_answered());
                if answered {
                    self.release_target(call, fx, n);
                }
                if let Some(leg) = self.legs.get_mut(&n) {
                    leg.state = LegState::Done;
                }
                fx.timeline(call_ref, CallEventKind::AgencyHungUp, format!("leg B{n}"));
                if connected && !transferring {
                    // The agency ended the call: the caller is told with a BYE first, so the
                    // route is not rung again for a caller who is being released.
                    return AgencyRequest::CallerToHangUp { leg: n };
                }
                self.leg_done(now, call, fx, n);
            }
            Method::Refer => self.on_refer(now, call, fx, flow, req, key, n),
            Method::Invite | Method::Update => {
                // A re-INVITE: hold is not applied to an emergency call (RFC 6881 ED-66): the
                // caller's leg keeps sending and recording; the direction change is logged.
                let offer = read::sdp_of(&req).map(<[u8]>::to_vec);
                let mut answer = None;
                if let Some(offer) = &offer
                    && let Some(leg) = self.legs.get_mut(&n)
                    && let Some(session) = leg.session.as_ref()
                {
                    let local = SocketAddr::new(leg.flow.local.ip(), sdp_port(&session.sdp));
                    let negotiated = crate::session::answer(offer, local, 1);
                    let direction = negotiated.local.media.direction;
                    answer = Some((
                        negotiated.local.sdp.clone(),
                        negotiated.local.media,
                        direction,
                    ));
                }
                if let Some((_, media, direction)) = &answer {
                    fx.media(MediaCommand::Start {
                        call: call_ref,
                        leg: LegId::from(n),
                        session: *media,
                    });
                    if *direction != siaga_media::sdp::Direction::SendRecv {
                        fx.timeline(
                            call_ref,
                            CallEventKind::AgencyHold,
                            format!("leg B{n} changed direction ({direction:?} for us); the caller is not put on hold"),
                        );
                    }
                }
                let sdp = answer.map(|(sdp, _, _)| sdp);
                self.reply_agency(now, call, fx, flow, &req, key, n, 200, vec![], sdp);
            }
            Method::Info | Method::Notify | Method::Options | Method::Ack => {
                if req.method != Method::Ack {
                    self.reply_agency(now, call, fx, flow, &req, key, n, 200, vec![], None);
                }
            }
            _ => self.reply_agency(now, call, fx, flow, &req, key, n, 405, vec![], None),
        }
        AgencyRequest::Done
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_refer(
        &mut self,
        now: Instant,
        call: &CallerView<'_>,
        fx: &mut Effects,
        flow: Flow,
        req: Request,
        key: ServerTxKey,
        n: LegNo,
    ) {
        let call_ref = call.call_ref;
        let refer_to = req
            .headers
            .iter()
            .find(|h| matches!(h, Header::ReferTo(_)))
            .map(|h| uri_of(h.value()));
        let Some(refer_to) = refer_to else {
            return self.reply_agency(now, call, fx, flow, &req, key, n, 400, vec![], None);
        };
        let Some(template) = self.legs.get(&n).map(|l| l.target.clone()) else {
            return self.reply_agency(now, call, fx, flow, &req, key, n, 481, vec![], None);
        };
        let Ok(uri) = refer_to.parse::<siaga_dialplan::SipUri>() else {
            fx.timeline(
                call_ref,
                CallEventKind::TransferRefused,
                format!("leg B{n}: Refer-To {refer_to} is not a SIP URI"),
            );
            return self.reply_agency(now, call, fx, flow, &req, key, n, 400, vec![], None);
        };
        self.reply_agency(now, call, fx, flow, &req, key, n, 202, vec![], None);
        self.notify_transfer(call, fx, n, "SIP/2.0 100 Trying", false);
        if let Some(leg) = self.legs.get_mut(&n) {
            leg.transferring = true;
        }
        fx.timeline(
            call_ref,
            CallEventKind::TransferRequested,
            format!("leg B{n} transfers the caller to {refer_to}"),
        );
        let target = Target {
            uri,
            ring_timeout: Duration::from_secs(30),
            ..template
        };
        self.place_leg(now, call, fx, target, Some(n));
        let placed = self.legs.values().any(|l| l.transfer_of == Some(n));
        if !placed {
            // The transfer target cannot be reached: the transferor keeps the caller.
            self.notify_transfer(call, fx, n, "SIP/2.0 503 Service Unavailable", true);
            if let Some(leg) = self.legs.get_mut(&n) {
                leg.transferring = false;
            }
            fx.timeline(
                call_ref,
                CallEventKind::TransferFailed,
                format!("{refer_to} cannot be reached; the caller stays with leg B{n}"),
            );
            self.after_leg_change(now, call, fx);
        }
    }

    /// RFC 3515 NOTIFY with a sipfrag of the transfer's progress.
    pub(super) fn notify_transfer(
        &mut self,
        call: &CallerView<'_>,
        fx: &mut Effects,
        n: LegNo,
        frag: &str,
        done: bool,
    ) {
        let alive = self.legs.get(&n).is_some_and(|l| l.state.is_answered());
        if !alive {
            return;
        }
        let state = if done {
            "terminated;reason=noresource"
        } else {
            "active;expires=60"
        };
        let body = format!("{frag}\r\n");
        self.send_agency_request(
            call,
            fx,
            n,
            "NOTIFY",
            vec![
                ("Event", "refer".to_owned()),
                ("Subscription-State", state.to_owned()),
            ],
            Some(("message/sipfrag;version=2.0", body.as_bytes())),
            true,
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn reply_agency(
        &mut self,
        now: Instant,
        call: &CallerView<'_>,
        fx: &mut Effects,
        flow: Flow,
        req: &Request,
        key: ServerTxKey,
        n: LegNo,
        status: u16,
        headers: Vec<(&'static str, String)>,
        sdp: Option<String>,
    ) {
        let call_ref = call.call_ref;
        let Some(leg) = self.legs.get(&n) else {
            return;
        };
        let contact = build::contact_for(leg.flow, leg.target.uri.is_sips());
        let extras = ResponseExtras {
            to_tag: None,
            contact: Some(&contact),
            headers,
            body: sdp.as_ref().map(|s| Body {
                content_type: "application/sdp",
                bytes: s.as_bytes(),
            }),
        };
        let bytes = build::response(req, flow.remote, status, &extras);
        let is_invite = req.method == Method::Invite;
        let entry = ServerTxEntry::new(
            is_invite,
            fx.cfg.timers,
            flow,
            Some(call_ref),
            LegId::from(n),
        );
        fx.txs.add_server(key.clone(), entry);
        if req.method == Method::Invite
            && (200..300).contains(&status)
            && let Some(leg) = self.legs.get_mut(&n)
            && let Some(awaiting_ack) = leg.state.awaiting_ack_mut()
        {
            *awaiting_ack = Some((cseq_of(req), key.clone()));
        }
        fx.respond(now, &key, status, bytes);
    }
}
