//! One outbound leg, from its INVITE to its end: answers, forks, CANCEL and BYE.

use std::net::SocketAddr;
use std::time::Instant;

use rsipstack::sip::{Header, Response};
use siaga_dialplan::{Target, TrustDomain};

use super::{
    AgencyLeg, AgencySide, CANCEL_GIVE_UP, CallerView, LegState, StrayDialog, plan_transport,
};
use crate::effects::Effects;
use crate::ids::{Branch, CallId, LegId, LegNo, Tag};
use crate::io::MediaCommand;
use crate::sip::build::{self, ALLOW, Body, DialogRequest};
use crate::sip::parse;
use crate::sip::read::{self, header_value_resp, uri_of, without_tag};
use crate::timeline::CallEventKind;
use crate::transaction::Reliability;
use crate::transaction::client::{ClientInviteTx, ResponseVerdict};
use crate::transaction::table::{ClientPurpose, ClientTx, ClientTxEntry, ClientTxKey};

impl AgencySide {
    /// Starts one outbound leg: allocate its RTP port first, the INVITE follows.
    pub(crate) fn place_leg(
        &mut self,
        now: Instant,
        call: &CallerView<'_>,
        fx: &mut Effects,
        target: Target,
        transfer_of: Option<LegNo>,
    ) {
        let call_ref = call.call_ref;
        // Leg numbers count per call (B1, B2, … in each call's log).
        let n = LegNo(self.next_leg);
        self.next_leg += 1;
        let transport = plan_transport(target.transport);
        let Some(flow) = fx
            .directory
            .flow_for(target.uri.as_str(), transport, call.local)
        else {
            fx.timeline(
                call_ref,
                CallEventKind::AgencyUnreachable,
                format!("{}: the host cannot be resolved; next target", target.uri),
            );
            return;
        };
        let call_id = CallId(format!("{}-b{n}@siaga", fx.rng.token()));
        let local_tag = Tag(fx.rng.token());
        let trusted = target.trust == TrustDomain::Inside;
        let from_base = if trusted || !call.privacy {
            without_tag(call.remote_party)
        } else {
            "\"Anonymous\" <sip:anonymous@anonymous.invalid>".to_owned()
        };
        let leg = AgencyLeg {
            n,
            to: format!("<{}>", target.uri.as_str()),
            from: format!("{from_base};tag={local_tag}"),
            target,
            flow,
            call_id: call_id.clone(),
            local_tag: local_tag.clone(),
            invite_branch: Branch(format!("z9hG4bK{}", fx.rng.token())),
            invite_cseq: 1,
            next_cseq: 2,
            remote_target: None,
            route_set: Vec::new(),
            state: LegState::Allocating,
            session: None,
            started: now,
            transferring: false,
            transfer_of,
            on_line_since: None,
        };
        let (local_ip, peer_ip) = (leg.flow.local.ip(), leg.flow.remote.ip());
        fx.dialogs
            .insert((call_id, local_tag), (call_ref, LegId::from(n)));
        self.legs.insert(n, leg);
        fx.media(MediaCommand::Allocate {
            call: call_ref,
            leg: LegId::from(n),
            local_ip,
            peer_ip,
        });
    }

    /// The agency leg's RTP port is ready: send the INVITE.
    pub(crate) fn send_agency_invite(
        &mut self,
        now: Instant,
        call: &CallerView<'_>,
        fx: &mut Effects,
        n: LegNo,
        media_local: SocketAddr,
    ) {
        let call_ref = call.call_ref;
        let session_id = fx.rng.next() >> 1;
        let Some(leg) = self.legs.get(&n) else { return };
        if leg.state != LegState::Allocating {
            return;
        }
        let session = crate::session::offer(media_local, session_id);
        let (mut headers, body) = self.agency_payload(call, fx, leg, &session.sdp);
        headers.push(("Allow", ALLOW.to_owned()));
        let contact = build::contact_for(leg.flow, leg.target.uri.is_sips());
        let bytes = build::dialog_request(&DialogRequest {
            method: "INVITE",
            request_uri: leg.target.uri.as_str(),
            via_transport: leg.flow.transport.as_via(),
            local: leg.flow.local,
            branch: &leg.invite_branch,
            from: &leg.from,
            to: &leg.to,
            call_id: leg.call_id.as_str(),
            cseq: leg.invite_cseq,
            route_set: &[],
            contact: Some(&contact),
            headers,
            body: Some(Body {
                content_type: &body.0,
                bytes: &body.1,
            }),
        });
        let flow = leg.flow;
        let branch = leg.invite_branch.clone();
        let ring = leg.target.ring_timeout;
        let detail = format!(
            "leg B{n} → {} ({})",
            leg.target.uri,
            flow.transport.as_str()
        );
        let tx = ClientInviteTx::new(now, fx.cfg.timers, Reliability::of(flow), bytes.clone());
        let key = ClientTxKey {
            branch,
            method: "INVITE",
        };
        if let Some(leg) = self.legs.get_mut(&n) {
            leg.state = LegState::Calling {
                ring_deadline: now + ring,
                early: false,
            };
            leg.session = Some(session);
        }
        fx.timeline(call_ref, CallEventKind::AgencyInvite, detail);
        let entry = ClientTxEntry {
            tx: ClientTx::Invite(tx),
            flow,
            call: call_ref,
            leg: LegId::from(n),
            purpose: ClientPurpose::Invite,
        };
        fx.start_client_tx(key, entry, bytes);
    }

    /// A response to one of the agency-leg transactions.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_agency_response(
        &mut self,
        now: Instant,
        call: &CallerView<'_>,
        fx: &mut Effects,
        n: LegNo,
        purpose: ClientPurpose,
        resp: &Response,
        verdict: ResponseVerdict,
    ) {
        let call_ref = call.call_ref;
        let status = resp.status_code.code();
        match purpose {
            ClientPurpose::Invite => {}
            ClientPurpose::Bye
            | ClientPurpose::Cancel
            | ClientPurpose::Notify
            | ClientPurpose::Probe
            | ClientPurpose::Stray
            | ClientPurpose::Restart => {
                if status >= 200 && purpose == ClientPurpose::Bye {
                    self.leg_done(now, call, fx, n);
                }
                return;
            }
        }
        // 2xx retransmissions reach us too (RFC 6026): each gets an ACK.
        if verdict == ResponseVerdict::Absorb && !(200..300).contains(&status) {
            return;
        }
        let Some(state) = self.legs.get(&n).map(|l| l.state.clone()) else {
            return;
        };
        match status {
            100..=199 => {
                if status == 100 {
                    return;
                }
                let early_sdp = read::sdp_of_response(resp);
                if let Some(leg) = self.legs.get_mut(&n) {
                    leg.to = header_value_resp(resp, |h| matches!(h, Header::To(_)))
                        .unwrap_or_else(|| leg.to.clone());
                    if let LegState::Calling { early, .. } = &mut leg.state {
                        *early = true;
                    }
                }
                if matches!(state, LegState::Calling { early: false, .. }) {
                    fx.timeline(
                        call_ref,
                        CallEventKind::AgencyRinging,
                        format!("leg B{n}: {status}"),
                    );
                }
                if state.is_cancelling() {
                    // Given up on before any provisional: the CANCEL may go now.
                    self.send_cancel(call, fx, n);
                    return;
                }
                // Early media (183 with SDP): the caller hears the agency's announcement.
                if let Some(sdp) = early_sdp
                    && let Some(remote) = crate::session::remote_of(sdp)
                    && self.connected.is_none()
                {
                    fx.media(MediaCommand::Start {
                        call: call_ref,
                        leg: LegId::from(n),
                        session: remote,
                    });
                    self.stop_announcements(call, fx);
                    fx.media(MediaCommand::Bridge {
                        call: call_ref,
                        agency: LegId::from(n),
                    });
                    fx.timeline(
                        call_ref,
                        CallEventKind::AgencyEarlyMedia,
                        format!("leg B{n}"),
                    );
                }
            }
            200..=299 => self.on_agency_answer(now, call, fx, n, resp),
            _ => {
                if let Some(leg) = self.legs.get_mut(&n) {
                    leg.state = LegState::Done;
                }
                let outcome = format!("leg B{n}: {status} {}", parse::reason_phrase(status));
                if state.is_cancelling() {
                    fx.timeline(call_ref, CallEventKind::AgencyCancelled, outcome);
                    self.leg_done(now, call, fx, n);
                } else {
                    fx.timeline(call_ref, CallEventKind::AgencyFailed, outcome);
                    self.leg_failed(now, call, fx, n);
                }
            }
        }
    }

    pub(super) fn on_agency_answer(
        &mut self,
        now: Instant,
        call: &CallerView<'_>,
        fx: &mut Effects,
        n: LegNo,
        resp: &Response,
    ) {
        let call_ref = call.call_ref;
        let contact = header_value_resp(resp, |h| matches!(h, Header::Contact(_)))
            .and_then(|c| parse::split_header_list(&c).first().map(|v| uri_of(v)));
        let mut route_set = parse::record_routes(&resp.headers);
        route_set.reverse();
        let to = header_value_resp(resp, |h| matches!(h, Header::To(_)));
        let Some(leg) = self.legs.get_mut(&n) else {
            return;
        };
        let first_answer = matches!(
            leg.state,
            LegState::Calling { .. } | LegState::Cancelling { .. }
        );
        let tag = |v: &str| {
            v.split(";tag=")
                .nth(1)
                .map(|t| t.split(';').next().unwrap_or(t).trim().to_owned())
        };
        let forked = !first_answer
            && to
                .as_deref()
                .and_then(tag)
                .is_some_and(|t| Some(t) != tag(&leg.to));
        if forked {
            // A second desk behind a forking proxy answered too (RFC 3261 §13.2.2.4): that
            // dialog is ACKed and hung up at once, on its own tag, target and route.
            let stray = StrayDialog {
                to: to.unwrap_or_default(),
                target: contact.unwrap_or_else(|| leg.target.uri.as_str().to_owned()),
                route_set,
            };
            return self.release_stray(call, fx, n, stray);
        }
        if first_answer {
            if let Some(to) = to {
                leg.to = to;
            }
            leg.remote_target = contact.or_else(|| Some(leg.target.uri.as_str().to_owned()));
            leg.route_set = route_set;
        }
        // ACK every 2xx (retransmissions included), on the dialog's own path.
        self.send_agency_request(call, fx, n, "ACK", Vec::new(), None, false);
        if !first_answer {
            return;
        }
        let was_cancelling = self.legs.get(&n).is_some_and(|l| l.state.is_cancelling());
        let taken = self.connected.is_some_and(|c| c != n);
        let transfer_of = self.legs.get(&n).and_then(|l| l.transfer_of);
        if was_cancelling || (taken && transfer_of.is_none()) {
            // Too late: someone else has the caller. Hang this one up politely.
            if let Some(leg) = self.legs.get_mut(&n) {
                leg.state = LegState::Answered { awaiting_ack: None };
            }
            fx.timeline(
                call_ref,
                CallEventKind::AgencyLateAnswer,
                format!("leg B{n} answered after another; hanging it up"),
            );
            self.bye_leg(call, fx, n);
            return;
        }
        let answer_sdp = read::sdp_of_response(resp).and_then(crate::session::remote_of);
        let waited = now.duration_since(self.started);
        let uri = match self.legs.get_mut(&n) {
            Some(leg) => {
                leg.state = LegState::Answered { awaiting_ack: None };
                leg.target.uri.as_str().to_owned()
            }
            None => return,
        };
        if let Some(remote) = answer_sdp {
            fx.media(MediaCommand::Start {
                call: call_ref,
                leg: LegId::from(n),
                session: remote,
            });
        } else {
            fx.timeline(
                call_ref,
                CallEventKind::SdpWarning,
                format!("leg B{n} answered without SDP"),
            );
        }
        self.stop_announcements(call, fx);
        fx.media(MediaCommand::Bridge {
            call: call_ref,
            agency: LegId::from(n),
        });
        let previous = self.connected.replace(n);
        self.on_the_line(now, n);
        self.queued = None;
        self.leave_queue(now, call, fx);
        fx.timeline(
            call_ref,
            CallEventKind::AgencyAnswered,
            format!(
                "leg B{n} {uri} answered after {} ms; caller bridged",
                waited.as_millis()
            ),
        );
        // Any other attempt still ringing is cancelled.
        let others: Vec<LegNo> = self
            .legs
            .values()
            .filter(|l| l.n != n && l.state.pending())
            .map(|l| l.n)
            .collect();
        for other in others {
            self.cancel_leg(now, call, fx, other);
        }
        // A completed transfer: tell the transferor, then release it.
        if let Some(from) = transfer_of.or(previous.filter(|p| *p != n)) {
            self.notify_transfer(call, fx, from, "SIP/2.0 200 OK", true);
            if self.legs.get(&from).is_some_and(|l| l.state.is_answered()) {
                self.bye_leg(call, fx, from);
            }
            fx.timeline(
                call_ref,
                CallEventKind::TransferDone,
                format!("caller moved from leg B{from} to leg B{n}"),
            );
        }
    }

    /// ACK and BYE for an extra dialog created by a forked INVITE.
    pub(super) fn release_stray(
        &mut self,
        call: &CallerView<'_>,
        fx: &mut Effects,
        n: LegNo,
        stray: StrayDialog,
    ) {
        let call_ref = call.call_ref;
        let Some(leg) = self.legs.get(&n) else {
            return;
        };
        let (flow, from, call_id, cseq) = (
            leg.flow,
            leg.from.clone(),
            leg.call_id.clone(),
            leg.invite_cseq,
        );
        let contact = build::contact_for(flow, leg.target.uri.is_sips());
        for (method, number) in [("ACK", cseq), ("BYE", cseq + 1)] {
            let branch = Branch(format!("z9hG4bK{}", fx.rng.token()));
            let bytes = build::dialog_request(&DialogRequest {
                method,
                request_uri: &stray.target,
                via_transport: flow.transport.as_via(),
                local: flow.local,
                branch: &branch,
                from: &from,
                to: &stray.to,
                call_id: call_id.as_str(),
                cseq: number,
                route_set: &stray.route_set,
                contact: Some(&contact),
                headers: Vec::new(),
                body: None,
            });
            if method == "BYE" {
                let key = ClientTxKey {
                    branch,
                    method: "BYE",
                };
                let leg = LegId::from(n);
                fx.send_non_invite(key, call_ref, leg, ClientPurpose::Stray, flow, bytes);
            } else {
                fx.transmit_leg(Some(call_ref), LegId::from(n), flow, bytes);
            }
        }
        fx.timeline(
            call_ref,
            CallEventKind::AgencyForkReleased,
            format!("leg B{n}: a second answer ({}) was hung up", stray.to),
        );
    }

    /// Sends an in-dialog request on an agency leg (ACK, BYE, NOTIFY, …). ACK goes without a
    /// transaction; everything else gets a non-INVITE client transaction.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_agency_request(
        &mut self,
        call: &CallerView<'_>,
        fx: &mut Effects,
        n: LegNo,
        method: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Option<(&str, &[u8])>,
        with_tx: bool,
    ) -> Option<Branch> {
        let call_ref = call.call_ref;
        let branch = Branch(format!("z9hG4bK{}", fx.rng.token()));
        let leg = self.legs.get_mut(&n)?;
        let cseq = if method == "ACK" {
            leg.invite_cseq
        } else {
            let c = leg.next_cseq;
            leg.next_cseq += 1;
            c
        };
        let request_uri = leg
            .remote_target
            .clone()
            .unwrap_or_else(|| leg.target.uri.as_str().to_owned());
        let contact = build::contact_for(leg.flow, leg.target.uri.is_sips());
        let bytes = build::dialog_request(&DialogRequest {
            method,
            request_uri: &request_uri,
            via_transport: leg.flow.transport.as_via(),
            local: leg.flow.local,
            branch: &branch,
            from: &leg.from,
            to: &leg.to,
            call_id: leg.call_id.as_str(),
            cseq,
            route_set: &leg.route_set,
            contact: Some(&contact),
            headers,
            body: body.map(|(content_type, bytes)| Body {
                content_type,
                bytes,
            }),
        });
        let flow = leg.flow;
        if with_tx {
            let purpose = match method {
                "BYE" => ClientPurpose::Bye,
                "CANCEL" => ClientPurpose::Cancel,
                _ => ClientPurpose::Notify,
            };
            let key = ClientTxKey {
                branch: branch.clone(),
                method,
            };
            fx.send_non_invite(key, call_ref, LegId::from(n), purpose, flow, bytes);
        } else {
            fx.transmit_leg(Some(call_ref), LegId::from(n), flow, bytes);
        }
        Some(branch)
    }

    /// Gives up on a pending leg: CANCEL (RFC 3261 §9.1), or just forget it if the INVITE
    /// has not left yet.
    pub(crate) fn cancel_leg(
        &mut self,
        now: Instant,
        call: &CallerView<'_>,
        fx: &mut Effects,
        n: LegNo,
    ) {
        let call_ref = call.call_ref;
        let Some(leg) = self.legs.get_mut(&n) else {
            return;
        };
        match leg.state {
            LegState::Allocating => {
                leg.state = LegState::Done;
                fx.media(MediaCommand::Release {
                    call: call_ref,
                    leg: LegId::from(n),
                });
            }
            LegState::Calling { early, .. } => {
                let provisional_seen = early;
                // Whatever the agency does, the leg is forgotten after this (a lost 487 must
                // not keep it, or its transactions, forever).
                leg.state = LegState::Cancelling {
                    give_up_at: now + CANCEL_GIVE_UP,
                    cancel_sent: false,
                };
                // RFC 3261 §9.1: no CANCEL before a provisional response; it goes out when
                // the first one arrives.
                if provisional_seen {
                    self.send_cancel(call, fx, n);
                }
            }
            _ => {}
        }
    }

    /// CANCEL: same Request-URI, Call-ID, From, To (without the agency's tag), CSeq number
    /// and branch as the INVITE.
    pub(super) fn send_cancel(&mut self, call: &CallerView<'_>, fx: &mut Effects, n: LegNo) {
        let call_ref = call.call_ref;
        let Some(leg) = self.legs.get_mut(&n) else {
            return;
        };
        match &mut leg.state {
            LegState::Cancelling { cancel_sent, .. } if !*cancel_sent => *cancel_sent = true,
            _ => return,
        }
        let bytes = build::dialog_request(&DialogRequest {
            method: "CANCEL",
            request_uri: leg.target.uri.as_str(),
            via_transport: leg.flow.transport.as_via(),
            local: leg.flow.local,
            branch: &leg.invite_branch,
            from: &leg.from,
            to: &format!("<{}>", leg.target.uri.as_str()),
            call_id: leg.call_id.as_str(),
            cseq: leg.invite_cseq,
            route_set: &[],
            contact: None,
            headers: vec![(
                "Reason",
                "SIP;cause=200;text=\"Call completed elsewhere\"".to_owned(),
            )],
            body: None,
        });
        let flow = leg.flow;
        // A CANCEL shares its INVITE's branch; the CSeq method tells them apart.
        let cancel_key = ClientTxKey {
            branch: leg.invite_branch.clone(),
            method: "CANCEL",
        };
        let leg = LegId::from(n);
        fx.send_non_invite(
            cancel_key,
            call_ref,
            leg,
            ClientPurpose::Cancel,
            flow,
            bytes,
        );
    }

    /// A cancelled leg whose INVITE never ended: drop its transaction and forget it.
    pub(super) fn abandon_cancelled(
        &mut self,
        now: Instant,
        call: &CallerView<'_>,
        fx: &mut Effects,
        n: LegNo,
    ) {
        let call_ref = call.call_ref;
        if let Some(branch) = self.legs.get(&n).map(|l| l.invite_branch.clone()) {
            let key = ClientTxKey {
                branch,
                method: "INVITE",
            };
            fx.forget_client_tx(key);
        }
        fx.timeline(
            call_ref,
            CallEventKind::AgencyCancelTimeout,
            format!("leg B{n}: no final response after CANCEL; forgotten"),
        );
        self.leg_done(now, call, fx, n);
    }

    /// Hangs up an answered leg.
    pub(crate) fn bye_leg(&mut self, call: &CallerView<'_>, fx: &mut Effects, n: LegNo) {
        let call_ref = call.call_ref;
        let answered = self.legs.get(&n).is_some_and(|l| l.state.is_answered());
        if !answered {
            return;
        }
        if let Some(leg) = self.legs.get_mut(&n) {
            let awaiting_ack = leg.state.awaiting_ack_mut().and_then(Option::take);
            leg.state = LegState::HangingUp { awaiting_ack };
        }
        self.send_agency_request(call, fx, n, "BYE", vec![], None, true);
        fx.media(MediaCommand::Release {
            call: call_ref,
            leg: LegId::from(n),
        });
        self.release_target(call, fx, n);
    }

    /// A leg is over (BYE answered, CANCEL finished): forget it.
    pub(crate) fn leg_done(
        &mut self,
        now: Instant,
        call: &CallerView<'_>,
        fx: &mut Effects,
        n: LegNo,
    ) {
        let call_ref = call.call_ref;
        let Some(leg) = self.legs.get_mut(&n) else {
            return;
        };
        let was_answered = leg.state.is_answered();
        leg.state = LegState::Done;
        let key = (leg.call_id.clone(), leg.local_tag.clone());
        fx.dialogs.remove(&key);
        fx.media(MediaCommand::Release {
            call: call_ref,
            leg: LegId::from(n),
        });
        if was_answered {
            self.release_target(call, fx, n);
        }
        self.legs.remove(&n);
        self.after_leg_change(now, call, fx);
    }

    /// A target we were talking to is free again: the head of its queues may try now.
    pub(super) fn release_target(&mut self, call: &CallerView<'_>, fx: &mut Effects, n: LegNo) {
        let call_ref = call.call_ref;
        self.off_the_line(fx.now, n);
        let Some(uri) = self.legs.get(&n).map(|l| l.target.uri.as_str().to_owned()) else {
            return;
        };
        // The heads of other calls' queues that this target serves may ring it now: that
        // concerns other calls, so the dispatcher does it.
        fx.freed_targets.push((call_ref, uri));
    }

    /// A pending leg failed (error response, Timer B, transport error, ring timeout).
    pub(crate) fn leg_failed(
        &mut self,
        now: Instant,
        call: &CallerView<'_>,
        fx: &mut Effects,
        n: LegNo,
    ) {
        let call_ref = call.call_ref;
        let transfer_of = self.legs.get(&n).and_then(|l| l.transfer_of);
        let key = self
            .legs
            .get(&n)
            .map(|l| (l.call_id.clone(), l.local_tag.clone()));
        if let Some(key) = key {
            fx.dialogs.remove(&key);
        }
        fx.media(MediaCommand::Release {
            call: call_ref,
            leg: LegId::from(n),
        });
        self.legs.remove(&n);
        if let Some(from) = transfer_of {
            // The transfer target did not answer: tell the transferor; the caller stays with it
            // if it is still there, otherwise the route continues.
            self.notify_transfer(call, fx, from, "SIP/2.0 503 Service Unavailable", true);
            let still_there = self.legs.get(&from).is_some_and(|l| l.state.is_answered());
            if let Some(leg) = self.legs.get_mut(&from) {
                leg.transferring = false;
            }
            fx.timeline(
                call_ref,
                CallEventKind::TransferFailed,
                format!("leg B{n} did not answer; caller stays with leg B{from}"),
            );
            if still_there {
                return;
            }
        }
        self.after_leg_change(now, call, fx);
    }

    /// The agency ACKed our 200 to its re-INVITE: stop repeating it.
    pub(crate) fn agency_ack(&mut self, fx: &mut Effects, n: LegNo, cseq: u32) {
        let Some(leg) = self.legs.get_mut(&n) else {
            return;
        };
        let Some(awaiting_ack) = leg.state.awaiting_ack_mut() else {
            return;
        };
        if awaiting_ack
            .as_ref()
            .is_none_or(|(awaited, _)| *awaited != cseq)
        {
            return;
        }
        if let Some((_, key)) = awaiting_ack.take() {
            fx.acked_2xx(&key);
        }
    }
}
