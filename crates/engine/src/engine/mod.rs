//! The dispatcher: one owner, no locks, no clock. The shell feeds inputs with the time they
//! happened and drains every output after each input. The dispatcher parses, runs the
//! transaction table, routes each message, timer and media event to its call, and keeps the
//! one timer queue; what a call does is the call's own (`crate::call`, `crate::agency`).
//!
//! - `mod.rs` (here): inputs, routing to calls, transactions' timers and outcomes;
//! - `new_call`: an INVITE that starts a call (or is a merged copy of one);
//! - `stateless`: traffic outside every call, counted, sampled and rationed.

pub mod gauges;
mod new_call;
mod stateless;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rsipstack::sip::{Method, Request, Response};
use siaga_dialplan::{Dialplan, LocalTime};

use crate::call::{Call, CallState, LocalSession};
use crate::config::EngineConfig;
use crate::directory::Directory;
use crate::effects::{Effects, TimerKey};
use crate::end_reason::EndReason;
use crate::ids::{CallRef, LegId, LegNo};
use crate::io::{Input, MediaEvent, Output};
use crate::net::{Direction, Flow, Transport};
use crate::noncall::{NonCallGate, NonCallKind};
use crate::restart::OpenDialog;
use crate::sip::build::ack_for_failure;
use crate::sip::parse::{self, Framing, Inbound, Message};
use crate::sip::support::unsupported;
use crate::source_limits::Lane;
use crate::timeline::CallEventKind;
use crate::transaction::client::ResponseVerdict;
use crate::transaction::table::{ClientPurpose, ClientTxKey, TxKey, VERBATIM_REPEATS, repeat_note};
use crate::transaction::{ServerTxKey, TxEffect, TxEnd};
use stateless::Reply;

pub struct Engine {
    plan: Arc<Dialplan>,
    accepting: bool,
    /// The shell's latest probe of the call log and the recordings (OPTIONS says so).
    storage_healthy: bool,
    /// Sources whose OPTIONS learn about failing storage (`EngineConfig::load_balancers`).
    load_balancers: crate::source_limits::Trusted,
    calls: HashMap<CallRef, Call>,
    /// Everything calls act on: outputs, transactions, timers, shared tables.
    fx: Effects,
    /// Counts and samples traffic outside every call, and rations our replies to it.
    noncall: NonCallGate,
    /// Per-process secret for the To-tags of stateless replies (the same for a retransmission).
    tag_secret: u64,
    /// The supervisors' number lists and the recent calls per number (issue 12).
    numbers: crate::call::policy::NumberPolicies,
    /// Numbers with genuine calls in the call log (the shell reads them): never challenged
    /// during a flood.
    genuine: Arc<std::collections::HashSet<siaga_dialplan::CallerNumber>>,
}

impl Engine {
    /// `start` is the time of construction (the engine never reads a clock).
    pub fn new(cfg: EngineConfig, plan: Arc<Dialplan>, start: Instant) -> Self {
        let mut noncall = NonCallGate::new(cfg.noncall, start);
        noncall.set_trusted(cfg.trusted_sources.clone());
        let tag_secret = cfg.seed.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
        let local_time = "mon 12:00".parse().unwrap_or_else(|_| unreachable_time());
        let load_balancers = cfg.load_balancers.clone();
        let mut fx = Effects::new(cfg, local_time, start);
        fx.flood = siaga_dialplan::FloodGuard::new(plan.flood());
        fx.silent_rules = plan.classify_rules().clone();
        Self {
            numbers: crate::call::policy::NumberPolicies::new(&plan),
            genuine: Arc::default(),
            plan,
            accepting: true,
            storage_healthy: true,
            load_balancers,
            calls: HashMap::new(),
            fx,
            noncall,
            tag_secret,
        }
    }

    /// Where agency targets are; the shell resolves host names and local addresses.
    pub fn set_directory(&mut self, directory: Directory) {
        // An agency's keep-alives and stray requests are always answered.
        let agencies = directory.hops.values().map(|h| h.remote).collect();
        self.noncall.set_agencies(agencies);
        self.fx.directory = directory;
    }

    /// The local civil time (the shell updates it), for time-of-day route variants.
    pub fn set_local_time(&mut self, local_time: LocalTime) {
        self.fx.local_time = local_time;
    }

    /// A reloaded plan: new calls use it, calls in progress keep theirs.
    pub fn set_plan(&mut self, plan: Arc<Dialplan>) {
        self.numbers.plan_changed(&self.plan, &plan);
        if self.plan.flood() != plan.flood() {
            // New levels and limits count afresh; an attack in progress is re-detected.
            self.fx.flood = siaga_dialplan::FloodGuard::new(plan.flood());
            self.fx.flood_timer(self.fx.now);
        }
        self.fx.silent_rules = plan.classify_rules().clone();
        self.plan = plan;
    }

    /// The watch and block lists as the shell last read them. Entries expire at their own
    /// time, checked against each call's `now`, whether or not a newer snapshot comes.
    pub fn set_number_lists(&mut self, lists: Arc<siaga_dialplan::NumberLists>) {
        self.numbers.lists = lists;
    }

    /// The numbers with genuine calls in the call log, as the shell last read them: during a
    /// flood they are never challenged.
    pub fn set_genuine_numbers(
        &mut self,
        numbers: Arc<std::collections::HashSet<siaga_dialplan::CallerNumber>>,
    ) {
        self.genuine = numbers;
    }

    /// Whether the centre is under attack (a flood of emergency calls) now.
    pub fn under_attack(&self) -> bool {
        self.fx.flood.under_attack()
    }

    pub fn plan(&self) -> &Arc<Dialplan> {
        &self.plan
    }

    /// What OPTIONS answers: 503 while this node drains; to a load balancer also while it
    /// cannot keep its calls' records (log or recordings not writable); otherwise 200.
    fn options_status(&self, from: std::net::IpAddr) -> u16 {
        let storage_matters = self.load_balancers.contains(from);
        if !self.accepting || (storage_matters && !self.storage_healthy) {
            503
        } else {
            200
        }
    }

    pub fn active_calls(&self) -> usize {
        self.calls
            .values()
            .filter(|c| !matches!(c.state, CallState::Ended))
            .count()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.fx.poll_output()
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.fx.timers.earliest()
    }

    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        self.fx.now = now;
        match input {
            Input::Sip { flow, data } => self.on_sip(now, flow, data),
            Input::Timeout => self.on_timeout(now),
            Input::TransportError { flow, reason } => self.on_transport_error(now, flow, reason),
            Input::Media { call, leg, event } => self.on_media(now, call, leg, event),
            Input::HangUp { call } => {
                self.with_call(call, |c, fx| c.hang_up(now, fx, EndReason::GatewayHungUp));
            }
            Input::Drain => self.accepting = false,
            Input::StorageHealthy(healthy) => self.storage_healthy = healthy,
            Input::ByeAfterRestart(dialog) => self.bye_after_restart(*dialog),
        }
    }

    // ---- routing to calls ----

    /// Hands an input to its call, then settles what that changed. False if no such call.
    fn with_call(&mut self, call_ref: CallRef, act: impl FnOnce(&mut Call, &mut Effects)) -> bool {
        let Some(call) = self.calls.get_mut(&call_ref) else {
            return false;
        };
        act(call, &mut self.fx);
        self.settle(call_ref);
        true
    }

    /// After a call acted: other calls' queues may ring targets it freed; a finished call is
    /// forgotten; the call's timer follows its next deadline.
    fn settle(&mut self, call_ref: CallRef) {
        while !self.fx.freed_targets.is_empty() {
            let now = self.fx.now;
            for (by, uri) in std::mem::take(&mut self.fx.freed_targets) {
                let heads: Vec<CallRef> = self
                    .fx
                    .queues
                    .values()
                    .filter_map(|q| q.front())
                    .filter(|c| *c != by)
                    .collect();
                for head in heads {
                    if let Some(call) = self.calls.get_mut(&head)
                        && call.waits_for(&uri)
                    {
                        call.retry_from_queue(now, &mut self.fx);
                        self.settle_one(head);
                    }
                }
            }
        }
        self.settle_one(call_ref);
    }

    fn settle_one(&mut self, call_ref: CallRef) {
        let deadline = match self.calls.get(&call_ref) {
            Some(call) if call.is_finished() => {
                self.calls.remove(&call_ref);
                None
            }
            // A deadline that is already due and was not acted on would make the timer loop
            // spin and freeze every call: whatever the bug, wake again a millisecond later.
            Some(call) => call
                .next_deadline()
                .map(|d| d.max(self.fx.now + Duration::from_millis(1))),
            None => None,
        };
        self.fx.timers.set(TimerKey::Call(call_ref), deadline);
    }

    // ---- inbound SIP ----

    fn on_sip(&mut self, now: Instant, flow: Flow, data: &[u8]) {
        let framing = match flow.transport {
            Transport::Udp => Framing::Datagram,
            Transport::Tcp | Transport::Tls => Framing::Stream,
        };
        match parse::parse(data, framing) {
            Err(rejection) => {
                tracing::debug!(status = rejection.status, reason = %rejection.reason, "rejected message");
                let note = Some(format!(
                    "rejected {}: {}",
                    rejection.status, rejection.reason
                ));
                let reply = rejection.reply;
                let build = |_: &mut Self| reply.clone().unwrap_or_default();
                // An INVITE may be an emergency call: its error reply is never rationed (it
                // is no larger than the request, like the 100 every INVITE gets).
                let build = match (&reply, Lane::of(data)) {
                    (None, _) => Reply::None,
                    (Some(_), Lane::Invite) => Reply::Always(&build),
                    (Some(_), _) => Reply::Rationed(&build),
                };
                self.noncall_message(now, flow, NonCallKind::Garbage, data, note, build);
            }
            Ok(msg) => match &msg.message {
                Message::Request(req) => {
                    let req = req.clone();
                    self.on_request(now, flow, &msg, req, data);
                }
                Message::Response(resp) => {
                    let resp = resp.clone();
                    self.on_response(now, flow, &msg, &resp, data);
                }
            },
        }
    }

    fn on_request(&mut self, now: Instant, flow: Flow, msg: &Inbound, req: Request, raw: &[u8]) {
        let key = ServerTxKey::of(msg);
        match req.method {
            Method::Ack => return self.on_ack(now, flow, msg, &req, &key, raw),
            Method::Cancel => return self.on_cancel(now, flow, msg, &req, raw),
            _ => {}
        }
        if self.absorb_retransmission(&key, flow, raw) {
            return;
        }
        if let Some(to_tag) = &msg.to_tag {
            let dialog = (msg.call_id.clone(), to_tag.clone());
            return match self.fx.dialogs.get(&dialog).copied() {
                Some((call, LegId::Caller)) => {
                    self.fx
                        .log_sip(Some(call), Direction::In, flow, raw.to_vec(), None);
                    if self.calls.contains_key(&call) {
                        self.with_call(call, |c, fx| c.on_in_dialog(now, fx, flow, msg, req, key));
                    } else {
                        crate::call::reply_plain(
                            now,
                            &mut self.fx,
                            flow,
                            &req,
                            key,
                            481,
                            Some(call),
                        );
                    }
                }
                Some((call, LegId::Agency(n))) => {
                    self.log_agency_in(call, n, flow, raw);
                    self.with_call(call, |c, fx| {
                        c.on_agency_request(now, fx, flow, req, key, LegNo(n))
                    });
                }
                None => {
                    let kind = NonCallKind::StrayRequest;
                    self.noncall_request(now, flow, msg, &req, raw, kind, 481, Vec::new());
                }
            };
        }
        if req.method != Method::Invite
            && let Some((status, headers)) = unsupported(&req)
        {
            let kind = if req.method == Method::Options {
                NonCallKind::Options
            } else {
                NonCallKind::StrayRequest
            };
            return self.noncall_request(now, flow, msg, &req, raw, kind, status, headers);
        }
        let (kind, status) = match req.method {
            Method::Invite => return self.on_new_invite(now, flow, msg, req, key, raw),
            Method::Options => (NonCallKind::Options, self.options_status(flow.remote.ip())),
            Method::Bye | Method::Info | Method::Update | Method::PRack => {
                (NonCallKind::StrayRequest, 481)
            }
            // REGISTER, SUBSCRIBE, MESSAGE, …: an emergency gateway does not take them.
            _ => (NonCallKind::StrayRequest, 405),
        };
        self.noncall_request(now, flow, msg, &req, raw, kind, status, Vec::new());
    }

    /// A request that matches a server transaction is a retransmission: log it and let the
    /// transaction repeat its latest response. Returns false when no transaction matches.
    fn absorb_retransmission(&mut self, key: &ServerTxKey, flow: Flow, raw: &[u8]) -> bool {
        let Some(absorbed) = self.fx.txs.absorb(key) else {
            return false;
        };
        let (call, leg) = (absorbed.call, absorbed.leg);
        if absorbed.repeats > VERBATIM_REPEATS {
            // Counted (reported when the transaction ends); the answer is still repeated.
            if let Some(bytes) = absorbed.resend {
                self.fx.transmit_unlogged(absorbed.flow, bytes);
            }
            return true;
        }
        let note = Some(repeat_note("retransmission", absorbed.repeats));
        self.fx
            .log_sip_leg(call, leg, Direction::In, flow, raw.to_vec(), note);
        if let Some(bytes) = absorbed.resend {
            self.fx.transmit_leg(call, leg, absorbed.flow, bytes);
        }
        true
    }

    fn on_ack(
        &mut self,
        now: Instant,
        flow: Flow,
        msg: &Inbound,
        req: &Request,
        key: &ServerTxKey,
        raw: &[u8],
    ) {
        // ACK for a failure response: same branch as the INVITE.
        if let Some(call) = self.fx.txs.failure_ack(now, key) {
            self.fx
                .log_sip(call, Direction::In, flow, raw.to_vec(), None);
            self.fx.reschedule_tx(TxKey::Server(key.clone()));
            return;
        }
        // ACK for a 2xx: matched by dialog.
        let found = msg
            .to_tag
            .as_ref()
            .and_then(|t| self.fx.dialogs.get(&(msg.call_id.clone(), t.clone())))
            .copied();
        match found {
            Some((call, LegId::Agency(n))) => {
                // An ACK from an agency for a re-INVITE we answered.
                self.log_agency_in(call, n, flow, raw);
                self.with_call(call, |c, fx| c.agency_ack(fx, LegNo(n), msg.cseq));
            }
            Some((call, LegId::Caller)) => {
                self.with_call(call, |c, fx| c.on_ack(fx, flow, msg, req, raw));
            }
            None => {
                let note = Some("ACK matches no dialog".to_owned());
                self.noncall_message(now, flow, NonCallKind::StrayAck, raw, note, Reply::None);
            }
        }
    }

    fn on_cancel(&mut self, now: Instant, flow: Flow, msg: &Inbound, req: &Request, raw: &[u8]) {
        let cancel_key = ServerTxKey::of(msg);
        let invite_key = ServerTxKey::cancelled_invite(msg);
        if self.absorb_retransmission(&cancel_key, flow, raw) {
            return;
        }
        let Some((call, proceeding)) = self.fx.txs.cancel_target(&invite_key) else {
            let kind = NonCallKind::StrayRequest;
            return self.noncall_request(now, flow, msg, req, raw, kind, 481, Vec::new());
        };
        self.fx
            .log_sip(call, Direction::In, flow, raw.to_vec(), None);
        crate::call::reply_plain(now, &mut self.fx, flow, req, cancel_key, 200, call);
        if !proceeding {
            return; // already answered: the CANCEL has no effect (RFC 3261 §9.2)
        }
        if let Some(call_ref) = call {
            self.with_call(call_ref, |c, fx| c.on_cancel(now, fx, &invite_key));
        }
    }

    // ---- responses to our requests ----

    fn on_response(
        &mut self,
        now: Instant,
        flow: Flow,
        msg: &Inbound,
        resp: &Response,
        raw: &[u8],
    ) {
        let status = resp.status_code.code();
        let stray = NonCallKind::StrayResponse;
        let Some(branch) = msg.top_via.branch.clone() else {
            let note = Some("no branch".into());
            return self.noncall_message(now, flow, stray, raw, note, Reply::None);
        };
        let key = ClientTxKey::of_response(branch, &msg.cseq_method);
        let ack = || ack_for_failure(resp);
        let Some((fed, purpose, verdict)) = self.fx.txs.client_response(now, &key, status, ack)
        else {
            let note = Some("matches no transaction".into());
            return self.noncall_message(now, flow, stray, raw, note, Reply::None);
        };
        let (call, leg) = (fed.call, fed.leg);
        self.fx
            .log_sip_leg(call, leg, Direction::In, flow, raw.to_vec(), None);
        for effect in fed.effects {
            if let TxEffect::Transmit(bytes) = effect {
                self.fx.transmit_leg(call, leg, fed.flow, bytes);
            }
        }
        let Some(call) = call else {
            return self.fx.reschedule_tx(TxKey::Client(key));
        };
        let final_to_tu = verdict == ResponseVerdict::PassToTu && status >= 200;
        if purpose == ClientPurpose::Restart {
            if final_to_tu {
                self.restart_bye_outcome(call, leg, &format!("answered {status}"));
            }
            return self.fx.reschedule_tx(TxKey::Client(key));
        }
        match leg {
            LegId::Caller if final_to_tu => {
                self.with_call(call, |c, fx| c.on_caller_tx_done(now, fx, purpose, status));
            }
            LegId::Caller => {}
            LegId::Agency(n) => {
                self.with_call(call, |c, fx| {
                    c.on_agency_response(now, fx, LegNo(n), purpose, resp, verdict)
                });
            }
        }
        self.fx.reschedule_tx(TxKey::Client(key));
    }

    // ---- time, transport and media ----

    fn on_timeout(&mut self, now: Instant) {
        while let Some(key) = self.fx.timers.pop_due(now) {
            match key {
                TimerKey::Tx(TxKey::Server(k)) => self.server_tx_timer(now, k),
                TimerKey::Tx(TxKey::Client(k)) => self.client_tx_timer(now, k),
                TimerKey::Call(call_ref) => self.call_timer(now, call_ref),
                TimerKey::NonCall => self.roll_noncall(now),
                TimerKey::Signals(call_ref) => self.fx.voice_overdue(call_ref),
                TimerKey::Flood => crate::call::challenge::poll(now, &mut self.fx),
            }
        }
    }

    fn server_tx_timer(&mut self, now: Instant, key: ServerTxKey) {
        let Some((fed, initial)) = self.fx.txs.server_timeout(now, &key) else {
            return;
        };
        for effect in fed.effects {
            match effect {
                TxEffect::Transmit(bytes) => {
                    self.fx.transmit_leg(fed.call, fed.leg, fed.flow, bytes)
                }
                TxEffect::Terminated(TxEnd::NoAck) if initial => {
                    if let Some(call) = fed.call {
                        self.with_call(call, |c, fx| c.on_no_ack(now, fx));
                    }
                }
                TxEffect::Terminated(_) => {}
            }
        }
        self.fx.reschedule_tx(TxKey::Server(key));
    }

    fn client_tx_timer(&mut self, now: Instant, key: ClientTxKey) {
        let Some((fed, purpose)) = self.fx.txs.client_timeout(now, &key) else {
            return;
        };
        let (leg, flow) = (fed.leg, fed.flow);
        let Some(call) = fed.call else {
            return self.fx.reschedule_tx(TxKey::Client(key));
        };
        for effect in fed.effects {
            match (effect, leg) {
                (TxEffect::Transmit(bytes), _) => {
                    self.fx.transmit_leg(Some(call), leg, flow, bytes)
                }
                (TxEffect::Terminated(TxEnd::Timeout), _) if purpose == ClientPurpose::Restart => {
                    self.restart_bye_outcome(call, leg, "no response (Timer F)")
                }
                (TxEffect::Terminated(TxEnd::Timeout), LegId::Caller)
                    if purpose == ClientPurpose::Probe =>
                {
                    let why = "no response to OPTIONS (timeout)".to_owned();
                    self.with_call(call, |c, fx| c.probe_result(now, fx, Err(why)));
                }
                (TxEffect::Terminated(TxEnd::Timeout), LegId::Caller) => {
                    self.fx
                        .timeline(call, CallEventKind::ByeTimeout, "no response to our BYE");
                    self.with_call(call, |c, fx| c.finish_hang_up(fx));
                }
                (TxEffect::Terminated(TxEnd::Timeout), LegId::Agency(n)) => {
                    let why = format!("no response to {} (timeout)", purpose.method());
                    self.with_call(call, |c, fx| {
                        c.agency_tx_failed(now, fx, LegNo(n), purpose, &why)
                    });
                }
                (TxEffect::Terminated(_), _) => {}
            }
        }
        self.fx.reschedule_tx(TxKey::Client(key));
    }

    fn call_timer(&mut self, now: Instant, call_ref: CallRef) {
        let Some(call) = self.calls.get_mut(&call_ref) else {
            return;
        };
        match call.on_timer(now, &mut self.fx) {
            crate::call::TimerOutcome::Forget => {
                self.calls.remove(&call_ref);
                self.fx.timers.set(TimerKey::Call(call_ref), None);
            }
            crate::call::TimerOutcome::Kept => self.settle(call_ref),
        }
    }

    fn on_transport_error(&mut self, now: Instant, flow: Flow, reason: String) {
        let affected: Vec<CallRef> = self
            .calls
            .values()
            .filter(|c| c.flow == flow)
            .map(|c| c.call_ref)
            .collect();
        for call_ref in affected {
            self.with_call(call_ref, |c, fx| c.on_transport_error(fx, &reason));
        }
        for key in self.fx.txs.clients_on(flow) {
            if let Some((call, leg, purpose)) = self.fx.txs.client_transport_error(&key) {
                match leg {
                    _ if purpose == ClientPurpose::Restart => {
                        let why = format!("transport error: {reason}");
                        self.restart_bye_outcome(call, leg, &why);
                    }
                    LegId::Caller if purpose == ClientPurpose::Probe => {
                        self.with_call(call, |c, fx| c.probe_unsent(now, fx, &reason));
                    }
                    LegId::Caller => {
                        self.with_call(call, |c, fx| c.finish_hang_up(fx));
                    }
                    LegId::Agency(n) => {
                        let why = format!("transport error: {reason}");
                        self.with_call(call, |c, fx| {
                            c.agency_tx_failed(now, fx, LegNo(n), purpose, &why)
                        });
                    }
                }
            }
            self.fx.reschedule_tx(TxKey::Client(key));
        }
    }

    fn on_media(&mut self, now: Instant, call_ref: CallRef, leg: LegId, event: MediaEvent) {
        // The caller leg's voice totals usually come after its call is gone.
        if let (MediaEvent::VoiceActivity(totals), LegId::Caller) = (&event, leg)
            && !self.calls.contains_key(&call_ref)
        {
            self.fx.voice_arrived(call_ref, *totals);
            return;
        }
        self.with_call(call_ref, |c, fx| c.on_media(now, fx, leg, event));
    }

    fn log_agency_in(&mut self, call: CallRef, n: u32, flow: Flow, raw: &[u8]) {
        let leg = LegId::Agency(n);
        self.fx
            .log_sip_leg(Some(call), leg, Direction::In, flow, raw.to_vec(), None);
    }

    // ---- dialogs a crash left up ----

    /// Sends the BYE for a dialog the previous run left up, under its own client transaction.
    fn bye_after_restart(&mut self, dialog: OpenDialog) {
        let branch = self.fx.branch();
        let bytes = dialog.bye(&branch);
        let OpenDialog {
            call, leg, flow, ..
        } = dialog;
        self.fx.timeline(
            call,
            CallEventKind::RestartBye,
            format!(
                "leg {leg}: BYE to {} ({}) for the dialog left up by the gateway's stop",
                flow.remote, dialog.request_uri
            ),
        );
        let key = ClientTxKey {
            branch,
            method: "BYE",
        };
        self.fx
            .send_non_invite(key, call, leg, ClientPurpose::Restart, flow, bytes);
    }

    /// The outcome of such a BYE, for the call's timeline.
    fn restart_bye_outcome(&mut self, call: CallRef, leg: LegId, outcome: &str) {
        self.fx.timeline(
            call,
            CallEventKind::RestartByeDone,
            format!("leg {leg}: {outcome}"),
        );
    }

    // ---- shutdown and inspection ----

    /// Ends every live call now (shutdown after the drain time): BYE to callers and agencies,
    /// and a `CallEnded` for each.
    pub fn hang_up_all(&mut self, now: Instant) {
        self.fx.now = now;
        let live: Vec<CallRef> = self
            .calls
            .iter()
            .filter(|(_, c)| !matches!(c.state, CallState::Ended))
            .map(|(r, _)| *r)
            .collect();
        for call in live {
            self.fx.timeline(
                call,
                CallEventKind::Shutdown,
                "the gateway stopped with the call still up",
            );
            self.with_call(call, |c, fx| {
                c.hang_up(now, fx, EndReason::GatewayHungUp);
                let detail = Some("gateway shutdown".to_owned());
                c.end_call(fx, EndReason::GatewayHungUp, detail);
            });
        }
    }

    /// At stop, after the media side's last reports: the signals of ended calls still
    /// waiting for their callers' voice totals are logged without them.
    pub fn flush_call_signals(&mut self) {
        self.fx.flush_awaiting_voice();
    }

    /// Live calls (for the console and tests).
    pub fn call(&self, call: CallRef) -> Option<&Call> {
        self.calls.get(&call)
    }

    /// Every live call reference.
    pub fn call_refs(&self) -> Vec<CallRef> {
        self.calls.keys().copied().collect()
    }

    /// Calls still in their IVR or talking, for the drain on shutdown.
    pub fn is_idle(&self) -> bool {
        self.active_calls() == 0
    }

    /// How much per-message state the engine holds: (server transactions, client
    /// transactions, calls, sources in the non-call table). For tests and metrics.
    #[doc(hidden)]
    pub fn state_sizes(&self) -> (usize, usize, usize, usize) {
        let (server, client) = self.fx.txs.len();
        (
            server,
            client,
            self.calls.len(),
            self.noncall.tracked_sources(),
        )
    }

    #[doc(hidden)]
    pub fn session_of(&self, call: CallRef) -> Option<&LocalSession> {
        self.calls.get(&call).and_then(|c| c.session.as_ref())
    }
}

/// A fixed time for an engine that has not been told the local time yet.
fn unreachable_time() -> LocalTime {
    LocalTime {
        weekday: siaga_dialplan::Weekday::Mon,
        time: siaga_dialplan::ClockTime::new(12, 0).unwrap_or_else(|| unreachable!()),
    }
}
