//! The caller's dialog (the UAS half of the B2BUA): the answer, the ACK, CANCEL, requests
//! inside the dialog and re-INVITEs.

use std::time::Instant;

use rsipstack::sip::{Header, Method, Request};
use siaga_dialplan::IvrInput;

use super::{Call, CallState};
use crate::effects::Effects;
use crate::end_reason::EndReason;
use crate::ids::{CallRef, LegId};
use crate::io::{CallKind, LogRecord, MediaCommand};
use crate::net::{Direction, Flow};
use crate::sip::build::{self, ALLOW, Body, ResponseExtras};
use crate::sip::parse::Inbound;
use crate::sip::read::{header_value, sdp_of};
use crate::timeline::CallEventKind;
use crate::transaction::ServerTxKey;
use crate::transaction::table::{VERBATIM_REPEATS, repeat_note};

impl Call {
    /// Answers once the ring delay has passed and the RTP port is ready: 200 with our SDP,
    /// media started, and the IVR begins.
    pub(crate) fn try_answer(&mut self, now: Instant, fx: &mut Effects) {
        let CallState::Ringing {
            answer_not_before,
            media_local,
        } = &self.state
        else {
            return;
        };
        if now < *answer_not_before {
            return;
        }
        let Some(local) = *media_local else {
            return;
        };
        let call_ref = self.call_ref;
        let session_id = fx.rng.next() >> 1;
        let (session, warnings) = match sdp_of(&self.invite) {
            Some(offer) => {
                let n = crate::session::answer(offer, local, session_id);
                (n.local, n.warnings)
            }
            None => (crate::session::offer(local, session_id), Vec::new()),
        };
        self.state = CallState::Answered;
        self.awaiting_ack = Some((self.dialog.remote_cseq, self.invite_tx.clone()));
        self.hang_up_at = fx.cfg.max_call_duration.map(|d| now + d);
        self.session = Some(session.clone());
        let key = self.invite_tx.clone();
        let bytes = self.response_for(200, Some(("application/sdp", session.sdp.as_bytes())));
        for w in warnings {
            fx.timeline(call_ref, CallEventKind::SdpWarning, w);
        }
        fx.respond(now, &key, 200, bytes);
        fx.log(LogRecord::CallAnswered { call: call_ref });
        self.signals.answered_at = Some(now);
        // Even with the caller's address still unknown (no SDP in the INVITE), the leg needs
        // our codec, packet time and DTMF payload type; it latches the address from the first
        // packet.
        fx.media(MediaCommand::Start {
            call: call_ref,
            leg: LegId::Caller,
            session: session.media,
        });
        // The IVR starts with the answer (after a policy's announcement, if any): the caller
        // hears the centre at once, and prompts reach the recording from the first packet.
        self.after_answer(now, fx);
    }

    /// The ACK for our 2xx (matched by dialog): the call is confirmed; an INVITE without SDP
    /// gets its answer here.
    pub(crate) fn on_ack(
        &mut self,
        fx: &mut Effects,
        flow: Flow,
        msg: &Inbound,
        req: &Request,
        raw: &[u8],
    ) {
        let call_ref = self.call_ref;
        let awaited = self
            .awaiting_ack
            .clone()
            .filter(|(cseq, _)| *cseq == msg.cseq);
        let Some((_, tx_key)) = awaited else {
            // A repeated ACK: the first few are logged, the rest counted (timeline at the end).
            self.repeated_acks = self.repeated_acks.saturating_add(1);
            let repeats = self.repeated_acks;
            if repeats <= VERBATIM_REPEATS {
                let note = Some(repeat_note("repeated ACK", repeats));
                fx.log_sip(Some(call_ref), Direction::In, flow, raw.to_vec(), note);
            }
            return;
        };
        fx.log_sip(Some(call_ref), Direction::In, flow, raw.to_vec(), None);
        self.awaiting_ack = None;
        if matches!(self.state, CallState::Answered) {
            self.state = CallState::Confirmed;
            self.policy_acked(fx.now, fx);
        }
        // An INVITE without SDP got our offer in the 200; the answer is in this ACK.
        let needs_answer = self
            .session
            .as_ref()
            .is_some_and(|s| s.media.remote.is_none());
        let remote = if needs_answer && !req.body.is_empty() {
            crate::session::remote_of(&req.body)
        } else {
            None
        };
        if let Some(remote) = remote
            && let Some(session) = self.session.as_mut()
        {
            session.media = remote;
            fx.media(MediaCommand::Start {
                call: call_ref,
                leg: LegId::Caller,
                session: remote,
            });
        }
        fx.acked_2xx(&tx_key);
    }

    /// The caller's CANCEL reached the INVITE while it was still proceeding.
    pub(crate) fn on_cancel(&mut self, now: Instant, fx: &mut Effects, invite_key: &ServerTxKey) {
        let bytes = self.response_for(487, None);
        fx.respond(now, invite_key, 487, bytes);
        self.end_call(fx, EndReason::AbandonedBeforeAnswer, None);
    }

    /// A request from the caller inside the dialog (not ACK or CANCEL).
    pub(crate) fn on_in_dialog(
        &mut self,
        now: Instant,
        fx: &mut Effects,
        flow: Flow,
        msg: &Inbound,
        req: Request,
        key: ServerTxKey,
    ) {
        let call_ref = self.call_ref;
        // A TCP caller may come back on a new connection: answer where it is now.
        let moved = self.flow.remote.ip() != flow.remote.ip();
        self.flow = flow;
        // Any request in the dialog proves the caller has our 200, even if its ACK was lost.
        if let Some((_, tx_key)) = self.awaiting_ack.take() {
            if matches!(self.state, CallState::Answered) {
                self.state = CallState::Confirmed;
            }
            fx.acked_2xx(&tx_key);
        }
        if moved {
            // A handover: the caller's RTP will come from its new IP too.
            fx.media(MediaCommand::PeerMoved {
                call: call_ref,
                leg: LegId::Caller,
                peer_ip: flow.remote.ip(),
            });
        }
        if msg.cseq > self.dialog.remote_cseq {
            self.dialog.remote_cseq = msg.cseq;
        }
        match req.method {
            Method::Bye => {
                let reason = if self.kind == CallKind::Test {
                    EndReason::TestCallEnded
                } else if self.is_being_blocked() {
                    // Gone during the blocked announcement: the policy's end, not a caller
                    // to call back.
                    EndReason::BlockedNumber
                } else if self.agency.is_none() {
                    // Gone before the IVR chose an agency: a call the centre calls back.
                    EndReason::AbandonedInIvr
                } else {
                    EndReason::CallerHungUp
                };
                reply_plain(now, fx, flow, &req, key, 200, Some(call_ref));
                self.end_call(fx, reason, None);
            }
            Method::Invite => self.on_reinvite(now, fx, flow, msg, req, key),
            Method::Update => {
                if let Some(report) = self.record_location(fx, "update", &req, false) {
                    self.location = Some(report);
                }
                // A new offer gets the current session as answer; a session refresh without
                // an offer gets a 200 without a body (RFC 3311).
                let body = self.refresh_session(fx, &req);
                let body = body.filter(|_| sdp_of(&req).is_some());
                self.reply_in_dialog(now, fx, flow, &req, key, 200, body);
            }
            Method::Info => {
                let content_type = header_value(&req, |h| matches!(h, Header::ContentType(_)));
                self.reply_in_dialog(now, fx, flow, &req, key, 200, None);
                match siaga_media::dtmf::parse_sip_info(
                    content_type.as_deref().unwrap_or_default(),
                    &req.body,
                    now,
                ) {
                    Ok(event) => {
                        let digit = event.digit.as_char();
                        fx.timeline(
                            call_ref,
                            CallEventKind::Dtmf,
                            format!("{digit} via sip_info"),
                        );
                        self.signals.digits += 1;
                        self.ivr_input(now, fx, IvrInput::Digit(digit));
                    }
                    Err(e) => fx.timeline(
                        call_ref,
                        CallEventKind::SipInfo,
                        format!("not a digit: {e}"),
                    ),
                }
            }
            Method::Options | Method::PRack | Method::Notify => {
                self.reply_in_dialog(now, fx, flow, &req, key, 200, None);
            }
            _ => self.reply_in_dialog(now, fx, flow, &req, key, 405, None),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn reply_in_dialog(
        &mut self,
        now: Instant,
        fx: &mut Effects,
        flow: Flow,
        req: &Request,
        key: ServerTxKey,
        status: u16,
        sdp: Option<String>,
    ) {
        let contact = self.contact();
        let extras = ResponseExtras {
            to_tag: Some(&self.dialog.local_tag),
            contact: Some(&contact),
            headers: vec![("Allow", ALLOW.to_owned())],
            body: sdp.as_ref().map(|s| Body {
                content_type: "application/sdp",
                bytes: s.as_bytes(),
            }),
        };
        let bytes = build::response(req, flow.remote, status, &extras);
        let invite = req.method == Method::Invite;
        let call = Some(self.call_ref);
        fx.respond_new(now, &key, invite, flow, call, LegId::Caller, status, bytes);
    }

    /// Applies a new remote offer (re-INVITE/UPDATE) and returns our SDP for the answer.
    fn refresh_session(&mut self, fx: &mut Effects, req: &Request) -> Option<String> {
        let offer = sdp_of(req);
        let session = self.session.as_mut()?;
        if let Some(remote) = offer.and_then(crate::session::remote_of)
            && remote != session.media
        {
            session.media = remote;
            let detail = format!(
                "remote media now {}",
                remote
                    .remote
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "none".into())
            );
            fx.media(MediaCommand::Start {
                call: self.call_ref,
                leg: LegId::Caller,
                session: remote,
            });
            fx.timeline(self.call_ref, CallEventKind::MediaUpdate, detail);
        }
        self.session.as_ref().map(|s| s.sdp.clone())
    }

    fn on_reinvite(
        &mut self,
        now: Instant,
        fx: &mut Effects,
        flow: Flow,
        msg: &Inbound,
        req: Request,
        key: ServerTxKey,
    ) {
        if let Some(report) = self.record_location(fx, "reinvite", &req, false) {
            self.location = Some(report);
        }
        let sdp = self.refresh_session(fx, &req);
        self.awaiting_ack = Some((msg.cseq, key.clone()));
        self.reply_in_dialog(now, fx, flow, &req, key, 200, sdp);
    }

    /// A response to the call's INVITE with our tag, Contact and optional body.
    pub(crate) fn response_for(&self, status: u16, body: Option<(&str, &[u8])>) -> Vec<u8> {
        let contact = self.contact();
        let extras = ResponseExtras {
            to_tag: Some(&self.dialog.local_tag),
            contact: (status < 300 && status > 100).then_some(contact.as_str()),
            headers: if (200..300).contains(&status) {
                vec![
                    ("Allow", ALLOW.to_owned()),
                    ("Supported", "replaces".to_owned()),
                ]
            } else {
                Vec::new()
            },
            body: body.map(|(content_type, bytes)| Body {
                content_type,
                bytes,
            }),
        };
        build::response(&self.invite, self.flow.remote, status, &extras)
    }
}

/// Answers a non-INVITE request through a fresh server transaction (so retransmissions are
/// absorbed) with a status and no dialog.
pub(crate) fn reply_plain(
    now: Instant,
    fx: &mut Effects,
    flow: Flow,
    req: &Request,
    key: ServerTxKey,
    status: u16,
    call: Option<CallRef>,
) {
    let tag = crate::ids::Tag(fx.rng.token());
    let extras = ResponseExtras {
        to_tag: Some(&tag),
        headers: crate::sip::support::plain_headers(req, status),
        ..Default::default()
    };
    let bytes = build::response(req, flow.remote, status, &extras);
    fx.respond_new(now, &key, false, flow, call, LegId::Caller, status, bytes);
}
