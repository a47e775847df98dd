//! A new INVITE: one caller, one call. Copies of a live INVITE on other branches are merged
//! requests; numbers outside the plan are no calls at all; everything else becomes a [`Call`]
//! that is answered (never refused for what can be worked around).

use std::time::{Duration, Instant};

use rsipstack::sip::{Header, Request};
use siaga_dialplan::Classified;

use super::Engine;
use crate::call::{Call, CallState, Dialog, EmergencyIds, Probe};
use crate::ids::{CallRef, LegId, Tag};
use crate::io::{CallKind, CallStarted, CallerIdentity, LogRecord, MediaCommand};
use crate::net::{Direction, Flow};
use crate::noncall::NonCallKind;
use crate::sip::build::{self, ResponseExtras};
use crate::sip::parse::{self, Inbound};
use crate::sip::read::{contact_uri, header_value, uri_of};
use crate::sip::support::unsupported;
use crate::timeline::CallEventKind;
use crate::transaction::ServerTxKey;
use crate::transaction::table::{ServerTxEntry, VERBATIM_REPEATS, repeat_note};

impl Engine {
    pub(super) fn on_new_invite(
        &mut self,
        now: Instant,
        flow: Flow,
        msg: &Inbound,
        req: Request,
        key: ServerTxKey,
        raw: &[u8],
    ) {
        let origin = (msg.call_id.clone(), msg.from_tag.clone(), msg.cseq);
        if let Some(existing) = self.fx.origins.get(&origin).copied() {
            return self.merged_request(now, flow, msg, &req, key, raw, existing);
        }
        let dialled = req.uri.to_string();
        let classified = self.plan.classify(&dialled);
        let kind = match &classified {
            Classified::Emergency(entry) => CallKind::Emergency {
                entry: entry.to_string(),
            },
            Classified::TestCall => CallKind::Test,
            Classified::NotEmergency => {
                // Not a call for us: answered without any state (RFC 3261 §8.2.7), counted
                // and sampled like every other message outside a call. Retransmissions get
                // the same answer, their ACK is absorbed as a stray ACK.
                let (status, headers) = unsupported(&req).unwrap_or((404, Vec::new()));
                let kind = NonCallKind::NonEmergencyInvite;
                return self.noncall_request(now, flow, msg, &req, raw, kind, status, headers);
            }
        };
        let fx = &mut self.fx;
        let call_ref = CallRef(fx.next_call_ref);
        fx.next_call_ref += 1;
        // A source that places calls (a carrier's SBC) keeps a non-call row of its own.
        self.noncall.note_caller(now, flow.remote.ip());
        let identity = identity_of(&req);
        let span = tracing::info_span!("call", call = call_ref.0, call_id = %msg.call_id);
        let _entered = span.enter();
        let entry_name = match &kind {
            CallKind::Emergency { entry } => entry.as_str(),
            _ => "",
        };
        // The caller's number is personal data (DESIGN habit 5): only when configured.
        let caller = fx.cfg.log_personal_data.then(|| {
            let asserted = identity.p_asserted_identity.first();
            uri_of(asserted.unwrap_or(&identity.from))
        });
        tracing::info!(
            kind = kind.as_str(),
            %dialled,
            entry = entry_name,
            caller = caller.as_deref().unwrap_or("(not logged)"),
            transport = flow.transport.as_str(),
            "new call"
        );
        let emergency_ids = EmergencyIds {
            call_id: format!(
                "urn:emergency:uid:callid:{}{:08x}:{}",
                fx.rng.token(),
                call_ref.0,
                fx.cfg.element_domain
            ),
            incident_id: format!(
                "urn:emergency:uid:incidentid:{}{:08x}:{}",
                fx.rng.token(),
                call_ref.0,
                fx.cfg.element_domain
            ),
        };
        fx.log(LogRecord::CallStarted(Box::new(CallStarted {
            call: call_ref,
            call_id: msg.call_id.clone(),
            emergency_call_id: emergency_ids.call_id.clone(),
            incident_id: emergency_ids.incident_id.clone(),
            flow,
            dialled: dialled.clone(),
            kind: kind.clone(),
            caller: identity.clone(),
        })));
        fx.log_sip(Some(call_ref), Direction::In, flow, raw.to_vec(), None);
        // Location never fails a call: whatever the body holds, the report lists it, and
        // each problem goes on the timeline with its reason.
        let location = crate::call::location::record(fx, call_ref, "invite", &req, true);
        // Number policies (issue 12): a test call is never subject to them.
        let caller = crate::call::policy::CallerFacts::of(
            &self.plan,
            &identity,
            &dialled,
            location.as_ref(),
        );
        let policy = match &kind {
            CallKind::Emergency { .. } => self
                .numbers
                .start_call(now, fx, call_ref, &self.plan, &caller),
            _ => Default::default(),
        };
        // Floods of emergency calls (issue 12 item 4): counted; under attack, a caller beyond
        // its limits must pass a challenge. A blocked number's call ends anyway.
        let challenge = match &kind {
            CallKind::Emergency { .. } if !policy.blocks() => {
                // A trusted source (a carrier's SBC) carries everyone: no source limit.
                let source =
                    Some(flow.remote.ip()).filter(|ip| !fx.cfg.trusted_sources.contains(*ip));
                let number = caller.number.as_ref();
                let facts = siaga_dialplan::NewCallFacts {
                    number,
                    source,
                    urn_with_location: caller.urn_with_location,
                    known_genuine: number.is_some_and(|n| self.genuine.contains(n)),
                };
                let challenge = crate::call::challenge::admit(now, fx, call_ref, &self.plan, facts);
                fx.flood_timer(now);
                challenge
            }
            _ => None,
        };

        let mut tx = ServerTxEntry::new(true, fx.cfg.timers, flow, Some(call_ref), LegId::Caller);
        tx.initial_invite = true;
        fx.txs.put_server(key.clone(), tx);
        let trying = build::response(&req, flow.remote, 100, &ResponseExtras::default());
        fx.respond(now, &key, 100, trying);

        if !self.accepting {
            let tag = Tag(fx.rng.token());
            let bytes = build::response(
                &req,
                flow.remote,
                503,
                &ResponseExtras {
                    to_tag: Some(&tag),
                    headers: vec![("Retry-After", "5".to_owned())],
                    ..Default::default()
                },
            );
            fx.respond(now, &key, 503, bytes);
            return fx.log(LogRecord::CallEnded {
                call: call_ref,
                reason: crate::end_reason::EndReason::RefusedDraining,
                detail: None,
            });
        }
        if let Some((status, headers)) = unsupported(&req) {
            // Emergency first: answer anyway, and say what we would have refused.
            let what: Vec<String> = headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
            fx.timeline(
                call_ref,
                CallEventKind::NotRefused,
                format!(
                    "would be {status} for a normal call ({}); answered as an emergency",
                    what.join("; ")
                ),
            );
        }
        let local_tag = Tag(fx.rng.token());
        let dialog = Dialog {
            call_id: msg.call_id.clone(),
            local_tag: local_tag.clone(),
            remote_tag: msg.from_tag.clone(),
            local_party: format!(
                "{};tag={local_tag}",
                header_value(&req, |h| matches!(h, Header::To(_))).unwrap_or_default()
            ),
            remote_party: header_value(&req, |h| matches!(h, Header::From(_))).unwrap_or_default(),
            remote_target: contact_uri(&req).unwrap_or_else(|| dialled.clone()),
            route_set: parse::record_routes(&req.headers),
            local_cseq: (fx.rng.next() % 10_000) as u32 + 1,
            remote_cseq: msg.cseq,
        };
        fx.dialogs
            .insert((msg.call_id.clone(), local_tag), (call_ref, LegId::Caller));
        fx.origins.insert(origin, call_ref);
        drop(_entered);
        let entry = match classified {
            Classified::Emergency(entry) => Some(entry),
            _ => None,
        };
        let mut call = Call {
            call_ref,
            kind: kind.clone(),
            plan: self.plan.clone(),
            entry,
            ivr: None,
            routed: None,
            location,
            identity,
            emergency_ids,
            agency: None,
            ended_at: None,
            flow,
            dialog,
            invite: req,
            invite_tx: key.clone(),
            awaiting_ack: None,
            state: CallState::Answered,
            session: None,
            hang_up_at: None,
            media_seen: false,
            pending_end: None,
            caller_silent: false,
            probe: Probe::Idle,
            merged_requests: 0,
            repeated_acks: 0,
            signals: Default::default(),
            priority: policy.priority,
            announcement: policy.announcement,
            policy_note: policy.note,
            challenge,
            span,
        };
        if kind == CallKind::Test {
            // RFC 6881 ED-77/78: a test call is answered and names the centre; no media.
            let text = format!(
                "{} answers: this is a test call to an emergency service. Test call received.\r\n",
                self.plan.centre().name
            );
            let bytes = call.response_for(200, Some(("text/plain", text.as_bytes())));
            call.awaiting_ack = Some((call.dialog.remote_cseq, key.clone()));
            // A test call whose BYE is lost must not live on: a minute is plenty.
            call.hang_up_at = Some(now + Duration::from_secs(60));
            self.calls.insert(call_ref, call);
            fx.respond(now, &key, 200, bytes);
            fx.log(LogRecord::CallAnswered { call: call_ref });
            return self.settle(call_ref);
        }
        let ringing = call.response_for(180, None);
        call.state = CallState::Ringing {
            answer_not_before: now + fx.cfg.ring_delay,
            media_local: None,
        };
        self.calls.insert(call_ref, call);
        fx.respond(now, &key, 180, ringing);
        fx.media(MediaCommand::Allocate {
            call: call_ref,
            leg: LegId::Caller,
            local_ip: flow.local.ip(),
            peer_ip: flow.remote.ip(),
        });
        self.settle(call_ref);
    }

    /// The same INVITE by another path: one caller, one call. The copies are answered 482.
    #[allow(clippy::too_many_arguments)]
    fn merged_request(
        &mut self,
        now: Instant,
        flow: Flow,
        msg: &Inbound,
        req: &Request,
        key: ServerTxKey,
        raw: &[u8],
        existing: CallRef,
    ) {
        let copies = self.calls.get_mut(&existing).map_or(0, |c| {
            c.merged_requests = c.merged_requests.saturating_add(1);
            c.merged_requests
        });
        if copies > VERBATIM_REPEATS {
            // Enough of them logged: a stateless 482 (the same bytes for each copy), no
            // transaction, no row; the count is on the timeline when the call ends.
            let bytes = self.stateless_response(flow, msg, req, 482, Vec::new());
            self.fx.transmit_unlogged(flow, bytes);
            return;
        }
        let note = Some(repeat_note("merged request", copies));
        self.fx
            .log_sip(Some(existing), Direction::In, flow, raw.to_vec(), note);
        // 4xx to an INVITE that creates no call.
        let tag = Tag(self.fx.rng.token());
        let extras = ResponseExtras {
            to_tag: Some(&tag),
            ..Default::default()
        };
        let bytes = build::response(req, flow.remote, 482, &extras);
        let entry = ServerTxEntry::new(
            true,
            self.fx.cfg.timers,
            flow,
            Some(existing),
            LegId::Caller,
        );
        self.fx.txs.put_server(key.clone(), entry);
        self.fx.respond(now, &key, 482, bytes);
    }
}

/// The caller's identity headers as received.
fn identity_of(req: &Request) -> CallerIdentity {
    let mut id = CallerIdentity::default();
    for h in req.headers.iter() {
        match h {
            Header::From(v) => id.from = v.value().to_owned(),
            Header::PAssertedIdentity(v) => id.p_asserted_identity.extend(
                parse::split_header_list(v.value())
                    .into_iter()
                    .map(str::to_owned),
            ),
            Header::Privacy(v) => id.privacy = Some(v.value().to_owned()),
            Header::Contact(v) if id.contact.is_none() => id.contact = Some(v.value().to_owned()),
            Header::UserAgent(v) => id.user_agent = Some(v.value().to_owned()),
            Header::Other(name, v) if name.eq_ignore_ascii_case("Remote-Party-ID") => {
                id.remote_party_id = Some(v.clone())
            }
            _ => {}
        }
    }
    id
}
