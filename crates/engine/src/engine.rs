//! The engine: one owner, no locks, no clock. The shell feeds inputs with the time they
//! happened and drains every output after each input.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rsipstack::sip::{Header, Method, Request, Response};
use siaga_dialplan::{
    Classified, Dialplan, IvrAction, IvrInput, IvrSession, LocalTime, RouteId, TimelineKind,
};
use siaga_location::{CellTable, DefaultLocation, LocationInput, LocationReport};

use crate::bridge::Directory;
use crate::call::{
    Call, CallState, Dialog, EmergencyIds, EndReason, LocalSession, Probe, RouteDecision,
};
use crate::ids::{Branch, CallId, CallRef, LegId, Tag};
use crate::io::{
    CallKind, CallStarted, CallerIdentity, Direction, Flow, Input, LogRecord, MediaCommand,
    MediaEvent, Output, PlaybackId, Transport,
};
use crate::noncall::{NonCallGate, NonCallKind, NonCallLimits, Verdict};
use crate::sip::build::{self, ALLOW, Body, ResponseExtras};
use crate::sip::parse::{self, Framing, Inbound, Message};
use crate::source_limits::{Lane, Trusted};
use crate::timeline::CallEventKind;
use crate::timers::TimerQueue;
use crate::transaction::client::{ClientInviteTx, ClientNonInviteTx, ResponseVerdict};
use crate::transaction::server::{ServerInviteTx, ServerNonInviteTx};
use crate::transaction::{Reliability, ServerTxKey, TimerConfig, TxEffect, TxEnd};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub timers: TimerConfig,
    /// First call reference to hand out (the shell passes one past the log's highest).
    pub first_call_ref: u64,
    /// Seed for tags and branches (the shell passes entropy; tests pass a constant).
    pub seed: u64,
    /// Time between 180 and 200. Zero answers as soon as the RTP port is ready.
    pub ring_delay: Duration,
    /// The gateway hangs up a call that lasts longer than this.
    pub max_call_duration: Option<Duration>,
    /// Cell ID → approximate location, for callers whose only hint is the serving cell.
    pub cells: Option<Arc<CellTable>>,
    /// The trunk's default location (RFC 6881 SP-22/23), for calls with no location at all.
    pub default_location: Option<DefaultLocation>,
    /// The domain in our NENA i3 call and incident identifiers.
    pub element_domain: String,
    /// Counting, sampling and reply budget for traffic that belongs to no call.
    pub noncall: NonCallLimits,
    /// Sources whose non-call messages are always answered (the transport's
    /// `trusted_sources`: the carriers' SBCs). The agencies' addresses are exempt too.
    pub trusted_sources: Trusted,
    /// Probing of callers whose RTP stopped (a lost BYE must not keep a call up for hours).
    pub dead_session: DeadSessionConfig,
    /// Whether INFO-level console lines may name the caller (personal data; off by default).
    pub log_personal_data: bool,
}

/// How a call whose caller sends no RTP is checked. The media layer's timeout starts it: the
/// caller gets an in-dialog OPTIONS; a 481 or 408, or no answer at all, while still silent,
/// ends the call as `caller_lost`. Any other answer keeps it, probed again every `reprobe`
/// while the silence lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadSessionConfig {
    /// `None` turns probing off (a silent call then lasts until BYE or the maximum duration).
    pub reprobe: Option<Duration>,
}

impl Default for DeadSessionConfig {
    fn default() -> Self {
        Self {
            reprobe: Some(Duration::from_secs(60)),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            timers: TimerConfig::default(),
            first_call_ref: 1,
            seed: 0x5149_4147_4131_3132,
            ring_delay: Duration::ZERO,
            max_call_duration: Some(Duration::from_secs(4 * 3600)),
            cells: None,
            default_location: None,
            element_domain: "siaga.invalid".to_owned(),
            noncall: NonCallLimits::default(),
            trusted_sources: Trusted::default(),
            dead_session: DeadSessionConfig::default(),
            log_personal_data: false,
        }
    }
}

#[derive(Debug)]
pub(crate) enum ServerTx {
    Invite(ServerInviteTx),
    NonInvite(ServerNonInviteTx),
}

impl ServerTx {
    fn next_deadline(&self) -> Option<Instant> {
        match self {
            ServerTx::Invite(t) => t.next_deadline(),
            ServerTx::NonInvite(t) => t.next_deadline(),
        }
    }
    fn is_terminated(&self) -> bool {
        match self {
            ServerTx::Invite(t) => t.is_terminated(),
            ServerTx::NonInvite(t) => t.is_terminated(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct ServerTxEntry {
    pub(crate) tx: ServerTx,
    pub(crate) flow: Flow,
    pub(crate) call: Option<CallRef>,
    pub(crate) leg: LegId,
    /// Set on the caller's initial INVITE transaction: its NoAck ends the call.
    pub(crate) initial_invite: bool,
    /// Retransmissions absorbed: the first [`VERBATIM_REPEATS`] are logged, the rest counted
    /// (one timeline event when the transaction ends).
    pub(crate) repeats: u32,
}

/// Repeats of one message (retransmissions of a request, copies of an INVITE on other
/// branches, repeated ACKs) logged verbatim before they are only counted: one call must not
/// let an outsider write rows at line rate.
pub(crate) const VERBATIM_REPEATS: u32 = 10;

/// The log note of the `n`th logged repeat: the last one logged says what happens next.
fn repeat_note(what: &str, n: u32) -> String {
    if n == VERBATIM_REPEATS {
        format!("{what}; further ones are counted, not logged")
    } else {
        what.to_owned()
    }
}

#[derive(Debug)]
pub(crate) enum ClientTx {
    Invite(ClientInviteTx),
    NonInvite(ClientNonInviteTx),
}

impl ClientTx {
    fn next_deadline(&self) -> Option<Instant> {
        match self {
            ClientTx::Invite(t) => t.next_deadline(),
            ClientTx::NonInvite(t) => t.next_deadline(),
        }
    }
    fn is_terminated(&self) -> bool {
        match self {
            ClientTx::Invite(t) => t.is_terminated(),
            ClientTx::NonInvite(t) => t.is_terminated(),
        }
    }
}

/// What a client transaction of ours is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientPurpose {
    Invite,
    Bye,
    Cancel,
    Notify,
    /// In-dialog OPTIONS to a silent caller: is the caller's UA still there?
    Probe,
    /// BYE for an extra dialog of a forked INVITE: its outcome changes nothing.
    Stray,
    /// BYE for a dialog a crash left up (no call of this run): only its outcome is logged.
    Restart,
}

impl ClientPurpose {
    fn method(self) -> &'static str {
        match self {
            ClientPurpose::Invite => "INVITE",
            ClientPurpose::Bye | ClientPurpose::Stray | ClientPurpose::Restart => "BYE",
            ClientPurpose::Cancel => "CANCEL",
            ClientPurpose::Notify => "NOTIFY",
            ClientPurpose::Probe => "OPTIONS",
        }
    }
}

#[derive(Debug)]
pub(crate) struct ClientTxEntry {
    pub(crate) tx: ClientTx,
    pub(crate) flow: Flow,
    pub(crate) call: CallRef,
    pub(crate) leg: LegId,
    pub(crate) purpose: ClientPurpose,
}

/// Client transactions are matched by branch and CSeq method (a CANCEL shares its INVITE's
/// branch, RFC 3261 §17.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ClientTxKey {
    pub(crate) branch: Branch,
    pub(crate) method: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum TimerKey {
    Server(ServerTxKey),
    Client(ClientTxKey),
    Call(CallRef),
    /// The end of the non-call counting window.
    NonCall,
}

/// Builds the reply to a message outside every call, only once its budget allows one.
type ReplyBuilder<'a> = &'a dyn Fn(&mut Engine) -> Vec<u8>;

/// The reply to a message outside every call, if any.
#[derive(Clone, Copy)]
enum Reply<'a> {
    None,
    /// Sent within the source's reply budget.
    Rationed(ReplyBuilder<'a>),
    /// Always sent (a malformed INVITE may be someone's emergency call: it is told why).
    Always(ReplyBuilder<'a>),
}

/// Small deterministic PRNG (xorshift64*): tags and branches need uniqueness, not secrecy.
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn token(&mut self) -> String {
        format!("{:016x}", self.next())
    }
}

pub struct Engine {
    pub(crate) cfg: EngineConfig,
    pub(crate) plan: Arc<Dialplan>,
    pub(crate) rng: Rng,
    pub(crate) next_call_ref: u64,
    accepting: bool,
    pub(crate) server_txs: HashMap<ServerTxKey, ServerTxEntry>,
    pub(crate) client_txs: HashMap<ClientTxKey, ClientTxEntry>,
    pub(crate) calls: HashMap<CallRef, Call>,
    /// (Call-ID, our tag) → call and leg, for in-dialog requests from the caller or an agency.
    pub(crate) dialogs: HashMap<(CallId, Tag), (CallRef, LegId)>,
    /// (Call-ID, From tag, CSeq) of live initial INVITEs: a copy on another branch is a
    /// merged request (RFC 3261 §8.2.2.2), not a second emergency call.
    origins: HashMap<(CallId, Option<Tag>, u32), CallRef>,
    pub(crate) timers: TimerQueue<TimerKey>,
    outputs: VecDeque<Output>,
    /// Where agency targets are (resolved by the shell).
    pub(crate) directory: Directory,
    /// Local civil time, for time-of-day route variants (the shell updates it).
    pub(crate) local_time: LocalTime,
    /// Callers waiting for a busy route, in arrival order.
    pub(crate) queues: HashMap<RouteId, VecDeque<CallRef>>,
    /// Our calls currently connected to each target URI.
    pub(crate) target_load: HashMap<String, u32>,
    pub(crate) next_playback: u64,
    /// Counts and samples traffic outside every call, and rations our replies to it.
    noncall: NonCallGate,
    /// Per-process secret for the To-tags of stateless replies (the same for a retransmission).
    tag_secret: u64,
    /// The time of the input being handled.
    pub(crate) now: Instant,
}

impl Engine {
    /// `start` is the time of construction (the engine never reads a clock).
    pub fn new(cfg: EngineConfig, plan: Arc<Dialplan>, start: Instant) -> Self {
        let mut noncall = NonCallGate::new(cfg.noncall, start);
        noncall.set_trusted(cfg.trusted_sources.clone());
        let tag_secret = cfg.seed.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
        Self {
            rng: Rng(cfg.seed | 1),
            next_call_ref: cfg.first_call_ref,
            cfg,
            plan,
            accepting: true,
            server_txs: HashMap::new(),
            client_txs: HashMap::new(),
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            origins: HashMap::new(),
            timers: TimerQueue::default(),
            outputs: VecDeque::new(),
            directory: Directory::default(),
            local_time: "mon 12:00".parse().unwrap_or_else(|_| unreachable_time()),
            queues: HashMap::new(),
            target_load: HashMap::new(),
            next_playback: 0,
            noncall,
            tag_secret,
            now: start,
        }
    }

    /// Where agency targets are; the shell resolves host names and local addresses.
    pub fn set_directory(&mut self, directory: Directory) {
        // An agency's keep-alives and stray requests are always answered.
        let agencies = directory.hops.values().map(|h| h.remote).collect();
        self.noncall.set_agencies(agencies);
        self.directory = directory;
    }

    /// The centre's local time (weekday + HH:MM) for time-of-day route variants.
    pub fn set_local_time(&mut self, local_time: LocalTime) {
        self.local_time = local_time;
    }

    /// Swaps the dialplan, all or nothing. Calls in progress keep the plan they started with.
    pub fn set_plan(&mut self, plan: Arc<Dialplan>) {
        self.plan = plan;
    }

    pub fn plan(&self) -> &Arc<Dialplan> {
        &self.plan
    }

    pub fn active_calls(&self) -> usize {
        self.calls
            .values()
            .filter(|c| !matches!(c.state, CallState::Ended))
            .count()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.timers.earliest()
    }

    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        self.now = now;
        match input {
            Input::Sip { flow, data } => self.on_sip(now, flow, data),
            Input::Timeout => self.on_timeout(now),
            Input::TransportError { flow, reason } => self.on_transport_error(now, flow, reason),
            Input::Media { call, leg, event } => self.on_media(now, call, leg, event),
            Input::HangUp { call } => self.hang_up(now, call, EndReason::GatewayHungUp),
            Input::Drain => self.accepting = false,
            Input::ByeAfterRestart(dialog) => self.bye_after_restart(*dialog),
        }
    }

    // ---- output helpers ----

    pub(crate) fn transmit(&mut self, call: Option<CallRef>, flow: Flow, bytes: Vec<u8>) {
        self.transmit_leg(call, LegId::Caller, flow, bytes);
    }

    pub(crate) fn transmit_leg(
        &mut self,
        call: Option<CallRef>,
        leg: LegId,
        flow: Flow,
        bytes: Vec<u8>,
    ) {
        self.log_sip_leg(call, leg, Direction::Out, flow, bytes.clone(), None);
        self.outputs.push_back(Output::Transmit { flow, bytes });
    }

    fn log_sip(
        &mut self,
        call: Option<CallRef>,
        direction: Direction,
        flow: Flow,
        bytes: Vec<u8>,
        note: Option<String>,
    ) {
        self.log_sip_leg(call, LegId::Caller, direction, flow, bytes, note);
    }

    pub(crate) fn log_sip_leg(
        &mut self,
        call: Option<CallRef>,
        leg: LegId,
        direction: Direction,
        flow: Flow,
        bytes: Vec<u8>,
        note: Option<String>,
    ) {
        self.outputs.push_back(Output::Log(LogRecord::Sip {
            call,
            leg,
            direction,
            flow,
            bytes,
            note,
        }));
    }

    fn log(&mut self, record: LogRecord) {
        self.outputs.push_back(Output::Log(record));
    }

    pub(crate) fn timeline(
        &mut self,
        call: CallRef,
        kind: CallEventKind,
        detail: impl Into<String>,
    ) {
        self.log(LogRecord::Timeline {
            call,
            kind,
            detail: detail.into(),
        });
    }

    pub(crate) fn media(&mut self, cmd: MediaCommand) {
        self.outputs.push_back(Output::Media(cmd));
    }

    /// Switches the storing of non-call samples on or off (e.g. when the log's disk runs
    /// low); their counts are kept either way.
    pub fn set_noncall_sampling(&mut self, on: bool) {
        self.noncall.set_sampling(on);
    }

    /// Logs the counts of the current non-call window now (at shutdown: nothing counted is
    /// lost).
    pub fn flush_noncall_counts(&mut self, now: Instant) {
        self.roll_noncall(now);
        for tally in self.noncall.flush(now) {
            self.log(LogRecord::NonCallCounts(Box::new(tally)));
        }
        self.timers.set(TimerKey::NonCall, None);
    }

    // ---- traffic outside every call ----

    /// Closes the non-call counting window if its time is up and logs its counts.
    fn roll_noncall(&mut self, now: Instant) {
        for tally in self.noncall.roll(now) {
            self.log(LogRecord::NonCallCounts(Box::new(tally)));
        }
        self.timers
            .set(TimerKey::NonCall, self.noncall.next_deadline());
    }

    /// Counts a message that belongs to no call, stores it only if it is the sample of its
    /// kind, and answers it with `reply` (built only when the source's budget allows).
    fn noncall_message(
        &mut self,
        now: Instant,
        flow: Flow,
        kind: NonCallKind,
        raw: &[u8],
        note: Option<String>,
        reply: Reply<'_>,
    ) {
        self.roll_noncall(now);
        let (reply, always) = match reply {
            Reply::None => (None, false),
            Reply::Rationed(build) => (Some(build), false),
            Reply::Always(build) => (Some(build), true),
        };
        let Verdict {
            reply: answer,
            sample,
        } = self
            .noncall
            .observe(now, flow.remote, kind, reply.is_some() && !always);
        let answer = answer || always;
        self.timers
            .set(TimerKey::NonCall, self.noncall.next_deadline());
        let max = self.noncall.limits().sample_max_bytes;
        if sample {
            let mut note = note.unwrap_or_default();
            if !note.is_empty() {
                note.push_str("; ");
            }
            note.push_str(&format!(
                "sample: the first {} from this source in this counting window",
                kind.as_str()
            ));
            if raw.len() > max {
                note.push_str(&format!(" (cut to {max} of {} bytes)", raw.len()));
            }
            let kept = raw.get(..max).unwrap_or(raw).to_vec();
            self.log_sip(None, Direction::In, flow, kept, Some(note));
        }
        let Some(build) = reply.filter(|_| answer) else {
            return;
        };
        let bytes = build(self);
        if sample {
            // The reply echoes the request's headers: cut it the same way.
            let kept = bytes.get(..max).unwrap_or(&bytes).to_vec();
            self.log_sip(None, Direction::Out, flow, kept, None);
        }
        self.outputs.push_back(Output::Transmit { flow, bytes });
    }

    /// A To-tag for a stateless reply: the same for every retransmission of the request
    /// (Call-ID and From-tag), unguessable without the per-process secret.
    fn stateless_tag(&self, msg: &Inbound) -> Tag {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        self.tag_secret.hash(&mut h);
        msg.call_id.hash(&mut h);
        msg.from_tag.hash(&mut h);
        Tag(format!("s{:016x}", h.finish()))
    }

    /// A final response sent without a server transaction (RFC 3261 §8.2.7): a retransmitted
    /// request simply gets it again.
    fn stateless_response(
        &self,
        flow: Flow,
        msg: &Inbound,
        req: &Request,
        status: u16,
        mut headers: Vec<(&'static str, String)>,
    ) -> Vec<u8> {
        let tag = self.stateless_tag(msg);
        headers.extend(plain_headers(req, status));
        build::response(
            req,
            flow.remote,
            status,
            &ResponseExtras {
                to_tag: Some(&tag),
                headers,
                ..Default::default()
            },
        )
    }

    /// A request outside every call answered statelessly with `status`, counted as `kind`.
    #[allow(clippy::too_many_arguments)]
    fn noncall_request(
        &mut self,
        now: Instant,
        flow: Flow,
        msg: &Inbound,
        req: &Request,
        raw: &[u8],
        kind: NonCallKind,
        status: u16,
        headers: Vec<(&'static str, String)>,
    ) {
        let build = move |engine: &mut Self| {
            engine.stateless_response(flow, msg, req, status, headers.clone())
        };
        self.noncall_message(now, flow, kind, raw, None, Reply::Rationed(&build));
    }

    // ---- inbound SIP ----

    fn on_sip(&mut self, now: Instant, flow: Flow, data: &[u8]) {
        let framing = match flow.transport {
            Transport::Udp => Framing::Datagram,
            Transport::Tcp => Framing::Stream,
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
            return match self.dialogs.get(&dialog).copied() {
                Some((call, LegId::Caller)) => {
                    self.on_in_dialog(now, flow, msg, req, key, call, raw)
                }
                Some((call, LegId::Agency(n))) => {
                    self.log_direction_in(call, n, flow, raw);
                    self.on_agency_request(now, flow, msg, req, key, call, n);
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
            Method::Options => (NonCallKind::Options, if self.accepting { 200 } else { 503 }),
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
        let Some(entry) = self.server_txs.get_mut(key) else {
            return false;
        };
        entry.repeats = entry.repeats.saturating_add(1);
        let (call, leg, entry_flow, repeats) = (entry.call, entry.leg, entry.flow, entry.repeats);
        let resend = match &entry.tx {
            ServerTx::Invite(t) => t.on_invite_retransmission(),
            ServerTx::NonInvite(t) => t.on_retransmission(),
        };
        if repeats > VERBATIM_REPEATS {
            // Counted (reported when the transaction ends); the answer is still repeated.
            if let Some(bytes) = resend {
                self.outputs.push_back(Output::Transmit {
                    flow: entry_flow,
                    bytes,
                });
            }
            return true;
        }
        let note = Some(repeat_note("retransmission", repeats));
        self.log_sip_leg(call, leg, Direction::In, flow, raw.to_vec(), note);
        if let Some(bytes) = resend {
            self.transmit_leg(call, leg, entry_flow, bytes);
        }
        true
    }

    /// Answers a non-INVITE request through a fresh server transaction (so retransmissions are
    /// absorbed) with a status and no dialog.
    fn reply_stateless_tx(
        &mut self,
        now: Instant,
        flow: Flow,
        req: &Request,
        key: ServerTxKey,
        status: u16,
        call: Option<CallRef>,
    ) {
        let tag = Tag(self.rng.token());
        let extras = ResponseExtras {
            to_tag: Some(&tag),
            headers: plain_headers(req, status),
            ..Default::default()
        };
        let bytes = build::response(req, flow.remote, status, &extras);
        let tx = ServerTx::NonInvite(ServerNonInviteTx::new(self.cfg.timers, reliability(flow)));
        self.server_txs.insert(
            key.clone(),
            ServerTxEntry {
                repeats: 0,
                tx,
                flow,
                call,
                initial_invite: false,
                leg: LegId::Caller,
            },
        );
        self.respond(now, &key, status, bytes);
    }

    /// Sends a response through its server transaction.
    pub(crate) fn respond(&mut self, now: Instant, key: &ServerTxKey, status: u16, bytes: Vec<u8>) {
        let Some(entry) = self.server_txs.get_mut(key) else {
            return;
        };
        let out = match &mut entry.tx {
            ServerTx::Invite(t) => t.respond(now, status, bytes),
            ServerTx::NonInvite(t) => t.respond(now, status, bytes),
        };
        let (call, flow, leg) = (entry.call, entry.flow, entry.leg);
        if let Some(bytes) = out {
            self.transmit_leg(call, leg, flow, bytes);
        }
        self.reschedule_server(key);
    }

    pub(crate) fn reschedule_server(&mut self, key: &ServerTxKey) {
        let (deadline, done) = match self.server_txs.get(key) {
            Some(e) => (e.tx.next_deadline(), e.tx.is_terminated()),
            None => (None, true),
        };
        if done
            && let Some(entry) = self.server_txs.remove(key)
            && entry.repeats > VERBATIM_REPEATS
            && let Some(call) = entry.call
        {
            let detail = format!(
                "{} retransmissions of {} absorbed; the first {VERBATIM_REPEATS} logged",
                entry.repeats,
                key.method()
            );
            self.timeline(call, CallEventKind::Retransmissions, detail);
        }
        self.timers
            .set(TimerKey::Server(key.clone()), deadline.filter(|_| !done));
    }

    pub(crate) fn reschedule_call(&mut self, call: CallRef) {
        // A deadline that is already due and was not acted on would make the timer loop spin
        // and freeze every call: whatever the bug, wake again a millisecond later instead.
        let floor = self.now + Duration::from_millis(1);
        let deadline = self
            .calls
            .get(&call)
            .and_then(Call::next_deadline)
            .map(|d| d.max(floor));
        self.timers.set(TimerKey::Call(call), deadline);
    }

    fn on_new_invite(
        &mut self,
        now: Instant,
        flow: Flow,
        msg: &Inbound,
        req: Request,
        key: ServerTxKey,
        raw: &[u8],
    ) {
        let origin = (msg.call_id.clone(), msg.from_tag.clone(), msg.cseq);
        if let Some(existing) = self.origins.get(&origin).copied() {
            // Same INVITE by another path: one caller, one call.
            let copies = self.calls.get_mut(&existing).map_or(0, |c| {
                c.merged_requests = c.merged_requests.saturating_add(1);
                c.merged_requests
            });
            if copies > VERBATIM_REPEATS {
                // Enough of them logged: a stateless 482 (the same bytes for each copy), no
                // transaction, no row; the count is on the timeline when the call ends.
                let bytes = self.stateless_response(flow, msg, &req, 482, Vec::new());
                self.outputs.push_back(Output::Transmit { flow, bytes });
                return;
            }
            let note = Some(repeat_note("merged request", copies));
            self.log_sip(Some(existing), Direction::In, flow, raw.to_vec(), note);
            return self.reply_invite_statelessly(now, flow, &req, key, Some(existing), 482);
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
        let call_ref = CallRef(self.next_call_ref);
        self.next_call_ref += 1;
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
        let caller = self.cfg.log_personal_data.then(|| {
            let asserted = identity.p_asserted_identity.first();
            crate::bridge::uri_of(asserted.unwrap_or(&identity.from))
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
                self.rng.token(),
                call_ref.0,
                self.cfg.element_domain
            ),
            incident_id: format!(
                "urn:emergency:uid:incidentid:{}{:08x}:{}",
                self.rng.token(),
                call_ref.0,
                self.cfg.element_domain
            ),
        };
        self.log(LogRecord::CallStarted(Box::new(CallStarted {
            call: call_ref,
            call_id: msg.call_id.clone(),
            emergency_call_id: emergency_ids.call_id.clone(),
            incident_id: emergency_ids.incident_id.clone(),
            flow,
            dialled: dialled.clone(),
            kind: kind.clone(),
            caller: identity.clone(),
        })));
        self.log_sip(Some(call_ref), Direction::In, flow, raw.to_vec(), None);
        // Location never fails a call: whatever the body holds, the report lists it, and
        // each problem goes on the timeline with its reason.
        let location = self.record_location(call_ref, "invite", &req, true);

        let tx = ServerTx::Invite(ServerInviteTx::new(self.cfg.timers, reliability(flow)));
        self.server_txs.insert(
            key.clone(),
            ServerTxEntry {
                repeats: 0,
                tx,
                flow,
                call: Some(call_ref),
                initial_invite: true,
                leg: LegId::Caller,
            },
        );
        let trying = build::response(&req, flow.remote, 100, &ResponseExtras::default());
        self.respond(now, &key, 100, trying);

        if !self.accepting {
            let tag = Tag(self.rng.token());
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
            self.respond(now, &key, 503, bytes);
            return self.log(LogRecord::CallEnded {
                call: call_ref,
                reason: EndReason::RefusedDraining,
                detail: None,
            });
        }
        if let Some((status, headers)) = unsupported(&req) {
            // Emergency first: answer anyway, and say what we would have refused.
            let what: Vec<String> = headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
            self.timeline(
                call_ref,
                CallEventKind::NotRefused,
                format!(
                    "would be {status} for a normal call ({}); answered as an emergency",
                    what.join("; ")
                ),
            );
        }
        let local_tag = Tag(self.rng.token());
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
            local_cseq: (self.rng.next() % 10_000) as u32 + 1,
            remote_cseq: msg.cseq,
        };
        self.dialogs
            .insert((msg.call_id.clone(), local_tag), (call_ref, LegId::Caller));
        self.origins.insert(origin, call_ref);
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
            bridging: None,
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
            next_leg: 1,
            caller_silent: false,
            probe: Probe::Idle,
            merged_requests: 0,
            repeated_acks: 0,
            span,
        };
        if kind == CallKind::Test {
            // RFC 6881 ED-77/78: a test call is answered and names the centre; no media.
            let text = format!(
                "{} answers: this is a test call to an emergency service. Test call received.\r\n",
                self.plan.centre().name
            );
            let bytes = self.response_for(&call, 200, Some(("text/plain", text.as_bytes())));
            call.awaiting_ack = Some((call.dialog.remote_cseq, key.clone()));
            // A test call whose BYE is lost must not live on: a minute is plenty.
            call.hang_up_at = Some(now + Duration::from_secs(60));
            self.calls.insert(call_ref, call);
            self.respond(now, &key, 200, bytes);
            self.log(LogRecord::CallAnswered { call: call_ref });
            self.reschedule_call(call_ref);
            return;
        }
        let ringing = self.response_for(&call, 180, None);
        call.state = CallState::Ringing {
            answer_not_before: now + self.cfg.ring_delay,
            media_local: None,
        };
        self.calls.insert(call_ref, call);
        self.respond(now, &key, 180, ringing);
        self.media(MediaCommand::Allocate {
            call: call_ref,
            leg: LegId::Caller,
            local_ip: flow.local.ip(),
            peer_ip: flow.remote.ip(),
        });
        self.reschedule_call(call_ref);
    }

    /// Reads every location hint in a request and logs it; returns the report when it holds a
    /// location (the latest one is what the agency is sent).
    fn record_location(
        &mut self,
        call_ref: CallRef,
        source: &'static str,
        req: &Request,
        initial: bool,
    ) -> Option<LocationReport> {
        let values = |name: &str| -> Vec<String> {
            req.headers
                .iter()
                .filter(|h| h.name().eq_ignore_ascii_case(name))
                .map(|h| h.value().to_owned())
                .collect()
        };
        let geolocation = values("Geolocation");
        let routing = values("Geolocation-Routing");
        let pani = values("P-Access-Network-Info");
        let content_type = header_value(req, |h| matches!(h, Header::ContentType(_)));
        let content_id = values("Content-ID").into_iter().next();
        let geolocation: Vec<&str> = geolocation.iter().map(String::as_str).collect();
        let routing: Vec<&str> = routing.iter().map(String::as_str).collect();
        let pani: Vec<&str> = pani.iter().map(String::as_str).collect();
        let nothing_sent =
            geolocation.is_empty() && pani.is_empty() && !req.body.windows(4).any(|w| w == b"pidf");
        if !initial && nothing_sent {
            return None; // a re-INVITE without location hints says nothing new
        }
        let input = LocationInput {
            geolocation: &geolocation,
            geolocation_routing: &routing,
            p_access_network_info: &pani,
            content_type: content_type.as_deref(),
            content_id: content_id.as_deref(),
            body: &req.body,
            default_location: if initial {
                self.cfg.default_location.as_ref()
            } else {
                None
            },
        };
        let report = siaga_location::extract(&input, self.cfg.cells.as_deref());
        for problem in &report.problems {
            self.timeline(
                call_ref,
                CallEventKind::LocationProblem,
                problem.to_string(),
            );
        }
        let has_location = !report.locations.is_empty();
        self.log(LogRecord::Location {
            call: call_ref,
            source,
            report: Box::new(report.clone()),
        });
        has_location.then_some(report)
    }

    /// 4xx–6xx to an INVITE that creates no call (merged request).
    fn reply_invite_statelessly(
        &mut self,
        now: Instant,
        flow: Flow,
        req: &Request,
        key: ServerTxKey,
        call: Option<CallRef>,
        status: u16,
    ) {
        let tag = Tag(self.rng.token());
        let bytes = build::response(
            req,
            flow.remote,
            status,
            &ResponseExtras {
                to_tag: Some(&tag),
                ..Default::default()
            },
        );
        self.server_txs.insert(
            key.clone(),
            ServerTxEntry {
                repeats: 0,
                tx: ServerTx::Invite(ServerInviteTx::new(self.cfg.timers, reliability(flow))),
                flow,
                call,
                initial_invite: false,
                leg: LegId::Caller,
            },
        );
        self.respond(now, &key, status, bytes);
    }

    /// A response to the call's INVITE with our tag, Contact and optional body.
    fn response_for(&self, call: &Call, status: u16, body: Option<(&str, &[u8])>) -> Vec<u8> {
        let contact = call.contact();
        let extras = ResponseExtras {
            to_tag: Some(&call.dialog.local_tag),
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
        build::response(&call.invite, call.flow.remote, status, &extras)
    }

    fn try_answer(&mut self, now: Instant, call_ref: CallRef) {
        let Some(call) = self.calls.get_mut(&call_ref) else {
            return;
        };
        let CallState::Ringing {
            answer_not_before,
            media_local,
        } = &call.state
        else {
            return;
        };
        if now < *answer_not_before {
            return;
        }
        let Some(local) = *media_local else {
            return;
        };
        let session_id = self.rng.next() >> 1;
        let offer = sdp_of(&call.invite);
        let (session, warnings) = match offer {
            Some(offer) => {
                let n = crate::session::answer(offer, local, session_id);
                (n.local, n.warnings)
            }
            None => (crate::session::offer(local, session_id), Vec::new()),
        };
        let call = self.calls.get_mut(&call_ref).expect("checked above");
        call.state = CallState::Answered;
        call.awaiting_ack = Some((call.dialog.remote_cseq, call.invite_tx.clone()));
        call.hang_up_at = self.cfg.max_call_duration.map(|d| now + d);
        call.session = Some(session.clone());
        let key = call.invite_tx.clone();
        let call = self.calls.get(&call_ref).expect("present");
        let bytes = self.response_for(call, 200, Some(("application/sdp", session.sdp.as_bytes())));
        for w in warnings {
            self.timeline(call_ref, CallEventKind::SdpWarning, w);
        }
        self.respond(now, &key, 200, bytes);
        self.log(LogRecord::CallAnswered { call: call_ref });
        // Even with the caller's address still unknown (no SDP in the INVITE), the leg needs
        // our codec, packet time and DTMF payload type; it latches the address from the first
        // packet.
        self.media(MediaCommand::Start {
            call: call_ref,
            leg: LegId::Caller,
            session: session.media,
        });
        // The IVR starts with the answer: the caller hears the centre at once, and prompts
        // reach the recording from the first packet.
        if let Some(call) = self.calls.get_mut(&call_ref)
            && let Some(entry) = call.entry.clone()
        {
            call.ivr = Some(IvrSession::start(call.plan.clone(), &entry, now));
            self.pump_ivr(call_ref);
        }
        self.reschedule_call(call_ref);
    }

    /// Carries out what the IVR asks for.
    fn pump_ivr(&mut self, call_ref: CallRef) {
        loop {
            let Some(call) = self.calls.get_mut(&call_ref) else {
                return;
            };
            let Some(action) = call.ivr.as_mut().and_then(IvrSession::poll_action) else {
                if call.ivr.as_ref().is_some_and(IvrSession::is_finished) {
                    call.ivr = None;
                }
                return;
            };
            match action {
                IvrAction::Play {
                    playback, prompt, ..
                } => self.media(MediaCommand::Play {
                    call: call_ref,
                    leg: LegId::Caller,
                    playback: PlaybackId(playback.0),
                    prompt: prompt.path,
                }),
                IvrAction::StopPlayback { playback } => self.media(MediaCommand::StopPlayback {
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
                    call.routed = Some(RouteDecision {
                        route: route.clone(),
                        reason,
                        urgent,
                    });
                    let now = self.now;
                    self.start_route(now, call_ref, route, reason.to_string(), urgent, languages);
                }
                IvrAction::Timeline(event) => {
                    let kind = timeline_kind(&event.kind);
                    self.timeline(call_ref, kind, event.kind.to_string());
                }
            }
        }
    }

    /// Feeds the IVR one input (digit, prompt end, timeout) and carries out its answer.
    fn ivr_input(&mut self, now: Instant, call_ref: CallRef, input: IvrInput) {
        let Some(ivr) = self.calls.get_mut(&call_ref).and_then(|c| c.ivr.as_mut()) else {
            return;
        };
        ivr.handle(now, input);
        self.pump_ivr(call_ref);
        self.reschedule_call(call_ref);
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
        if let Some(entry) = self.server_txs.get_mut(key)
            && let ServerTx::Invite(tx) = &mut entry.tx
            && tx.awaits_failure_ack()
        {
            let call = entry.call;
            tx.on_ack(now);
            self.log_sip(call, Direction::In, flow, raw.to_vec(), None);
            self.reschedule_server(key);
            return;
        }
        // ACK for a 2xx: matched by dialog.
        let found = msg
            .to_tag
            .as_ref()
            .and_then(|t| self.dialogs.get(&(msg.call_id.clone(), t.clone())))
            .copied();
        if let Some((call, LegId::Agency(n))) = found {
            // An ACK from an agency for a re-INVITE we answered.
            self.log_direction_in(call, n, flow, raw);
            self.agency_ack(call, n, msg.cseq);
            return;
        }
        let Some((call_ref, _)) = found else {
            let note = Some("ACK matches no dialog".to_owned());
            return self.noncall_message(now, flow, NonCallKind::StrayAck, raw, note, Reply::None);
        };
        let Some(call) = self.calls.get_mut(&call_ref) else {
            return;
        };
        let awaited = call
            .awaiting_ack
            .clone()
            .filter(|(cseq, _)| *cseq == msg.cseq);
        let Some((_, tx_key)) = awaited else {
            // A repeated ACK: the first few are logged, the rest counted (timeline at the end).
            call.repeated_acks = call.repeated_acks.saturating_add(1);
            let repeats = call.repeated_acks;
            if repeats <= VERBATIM_REPEATS {
                let note = Some(repeat_note("repeated ACK", repeats));
                self.log_sip(Some(call_ref), Direction::In, flow, raw.to_vec(), note);
            }
            return;
        };
        self.log_sip(Some(call_ref), Direction::In, flow, raw.to_vec(), None);
        let Some(call) = self.calls.get_mut(&call_ref) else {
            return;
        };
        call.awaiting_ack = None;
        if matches!(call.state, CallState::Answered) {
            call.state = CallState::Confirmed;
        }
        // An INVITE without SDP got our offer in the 200; the answer is in this ACK.
        let needs_answer = call
            .session
            .as_ref()
            .is_some_and(|s| s.media.remote.is_none());
        let remote = if needs_answer && !req.body.is_empty() {
            crate::session::remote_of(&req.body)
        } else {
            None
        };
        if let Some(remote) = remote
            && let Some(session) = call.session.as_mut()
        {
            session.media = remote;
            self.media(MediaCommand::Start {
                call: call_ref,
                leg: LegId::Caller,
                session: remote,
            });
        }
        if let Some(entry) = self.server_txs.get_mut(&tx_key)
            && let ServerTx::Invite(tx) = &mut entry.tx
        {
            tx.on_2xx_acked();
        }
        self.reschedule_server(&tx_key);
        self.reschedule_call(call_ref);
    }

    fn on_cancel(&mut self, now: Instant, flow: Flow, msg: &Inbound, req: &Request, raw: &[u8]) {
        let cancel_key = ServerTxKey::of(msg);
        let invite_key = ServerTxKey::cancelled_invite(msg);
        if self.absorb_retransmission(&cancel_key, flow, raw) {
            return;
        }
        let target = self.server_txs.get(&invite_key).map(|e| {
            let proceeding = matches!(&e.tx, ServerTx::Invite(t) if t.is_proceeding());
            (e.call, proceeding)
        });
        let Some((call, proceeding)) = target else {
            let kind = NonCallKind::StrayRequest;
            return self.noncall_request(now, flow, msg, req, raw, kind, 481, Vec::new());
        };
        self.log_sip(call, Direction::In, flow, raw.to_vec(), None);
        self.reply_stateless_tx(now, flow, req, cancel_key, 200, call);
        if !proceeding {
            return; // already answered: the CANCEL has no effect (RFC 3261 §9.2)
        }
        if let Some(call_ref) = call
            && let Some(c) = self.calls.get(&call_ref)
        {
            let bytes = self.response_for(c, 487, None);
            self.respond(now, &invite_key, 487, bytes);
            self.end_call(call_ref, EndReason::AbandonedBeforeAnswer, None);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_in_dialog(
        &mut self,
        now: Instant,
        flow: Flow,
        msg: &Inbound,
        req: Request,
        key: ServerTxKey,
        call_ref: CallRef,
        raw: &[u8],
    ) {
        self.log_sip(Some(call_ref), Direction::In, flow, raw.to_vec(), None);
        let Some(call) = self.calls.get_mut(&call_ref) else {
            return self.reply_stateless_tx(now, flow, &req, key, 481, Some(call_ref));
        };
        // A TCP caller may come back on a new connection: answer where it is now.
        let moved = call.flow.remote.ip() != flow.remote.ip();
        call.flow = flow;
        // Any request in the dialog proves the caller has our 200, even if its ACK was lost.
        if let Some((_, tx_key)) = call.awaiting_ack.take() {
            if matches!(call.state, CallState::Answered) {
                call.state = CallState::Confirmed;
            }
            if let Some(entry) = self.server_txs.get_mut(&tx_key)
                && let ServerTx::Invite(tx) = &mut entry.tx
            {
                tx.on_2xx_acked();
            }
            self.reschedule_server(&tx_key);
        }
        if moved {
            // A handover: the caller's RTP will come from its new IP too.
            self.media(MediaCommand::PeerMoved {
                call: call_ref,
                leg: LegId::Caller,
                peer_ip: flow.remote.ip(),
            });
        }
        let Some(call) = self.calls.get_mut(&call_ref) else {
            return;
        };
        if msg.cseq > call.dialog.remote_cseq {
            call.dialog.remote_cseq = msg.cseq;
        }
        match req.method {
            Method::Bye => {
                let reason = if call.kind == CallKind::Test {
                    EndReason::TestCallEnded
                } else if call.bridging.is_none() {
                    // Gone before the IVR chose an agency: a call the centre calls back.
                    EndReason::AbandonedInIvr
                } else {
                    EndReason::CallerHungUp
                };
                self.reply_stateless_tx(now, flow, &req, key, 200, Some(call_ref));
                self.end_call(call_ref, reason, None);
            }
            Method::Invite => self.on_reinvite(now, flow, msg, req, key, call_ref),
            Method::Update => {
                if let Some(report) = self.record_location(call_ref, "update", &req, false)
                    && let Some(c) = self.calls.get_mut(&call_ref)
                {
                    c.location = Some(report);
                }
                // A new offer gets the current session as answer; a session refresh without
                // an offer gets a 200 without a body (RFC 3311).
                let body = self.refresh_session(call_ref, &req);
                let body = body.filter(|_| sdp_of(&req).is_some());
                self.reply_in_dialog(now, flow, &req, key, call_ref, 200, body);
            }
            Method::Info => {
                let content_type = header_value(&req, |h| matches!(h, Header::ContentType(_)));
                self.reply_in_dialog(now, flow, &req, key, call_ref, 200, None);
                match siaga_media::dtmf::parse_sip_info(
                    content_type.as_deref().unwrap_or_default(),
                    &req.body,
                    now,
                ) {
                    Ok(event) => {
                        let digit = event.digit.as_char();
                        self.timeline(
                            call_ref,
                            CallEventKind::Dtmf,
                            format!("{digit} via sip_info"),
                        );
                        self.ivr_input(now, call_ref, IvrInput::Digit(digit));
                    }
                    Err(e) => self.timeline(
                        call_ref,
                        CallEventKind::SipInfo,
                        format!("not a digit: {e}"),
                    ),
                }
            }
            Method::Options | Method::PRack | Method::Notify => {
                self.reply_in_dialog(now, flow, &req, key, call_ref, 200, None);
            }
            _ => self.reply_in_dialog(now, flow, &req, key, call_ref, 405, None),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn reply_in_dialog(
        &mut self,
        now: Instant,
        flow: Flow,
        req: &Request,
        key: ServerTxKey,
        call_ref: CallRef,
        status: u16,
        sdp: Option<String>,
    ) {
        let Some(call) = self.calls.get(&call_ref) else {
            return;
        };
        let contact = call.contact();
        let extras = ResponseExtras {
            to_tag: Some(&call.dialog.local_tag),
            contact: Some(&contact),
            headers: vec![("Allow", ALLOW.to_owned())],
            body: sdp.as_ref().map(|s| Body {
                content_type: "application/sdp",
                bytes: s.as_bytes(),
            }),
        };
        let bytes = build::response(req, flow.remote, status, &extras);
        let is_invite = req.method == Method::Invite;
        let tx = if is_invite {
            ServerTx::Invite(ServerInviteTx::new(self.cfg.timers, reliability(flow)))
        } else {
            ServerTx::NonInvite(ServerNonInviteTx::new(self.cfg.timers, reliability(flow)))
        };
        self.server_txs.entry(key.clone()).or_insert(ServerTxEntry {
            repeats: 0,
            tx,
            flow,
            call: Some(call_ref),
            initial_invite: false,
            leg: LegId::Caller,
        });
        self.respond(now, &key, status, bytes);
    }

    /// Applies a new remote offer (re-INVITE/UPDATE) and returns our SDP for the answer.
    fn refresh_session(&mut self, call_ref: CallRef, req: &Request) -> Option<String> {
        let offer = sdp_of(req);
        let call = self.calls.get_mut(&call_ref)?;
        let session = call.session.as_mut()?;
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
            self.media(MediaCommand::Start {
                call: call_ref,
                leg: LegId::Caller,
                session: remote,
            });
            self.timeline(call_ref, CallEventKind::MediaUpdate, detail);
        }
        self.calls
            .get(&call_ref)
            .and_then(|c| c.session.as_ref())
            .map(|s| s.sdp.clone())
    }

    fn on_reinvite(
        &mut self,
        now: Instant,
        flow: Flow,
        msg: &Inbound,
        req: Request,
        key: ServerTxKey,
        call_ref: CallRef,
    ) {
        if let Some(report) = self.record_location(call_ref, "reinvite", &req, false)
            && let Some(c) = self.calls.get_mut(&call_ref)
        {
            c.location = Some(report);
        }
        let sdp = self.refresh_session(call_ref, &req);
        if let Some(call) = self.calls.get_mut(&call_ref) {
            call.awaiting_ack = Some((msg.cseq, key.clone()));
        }
        self.reply_in_dialog(now, flow, &req, key, call_ref, 200, sdp);
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
        let key = ClientTxKey {
            branch,
            method: match msg.cseq_method.as_str() {
                "INVITE" => "INVITE",
                "CANCEL" => "CANCEL",
                "BYE" => "BYE",
                "NOTIFY" => "NOTIFY",
                "OPTIONS" => "OPTIONS",
                _ => "",
            },
        };
        let Some(entry) = self.client_txs.get_mut(&key) else {
            let note = Some("matches no transaction".into());
            return self.noncall_message(now, flow, stray, raw, note, Reply::None);
        };
        let (call, leg, purpose, tx_flow) = (entry.call, entry.leg, entry.purpose, entry.flow);
        let mut effects = Vec::new();
        let verdict = match &mut entry.tx {
            ClientTx::NonInvite(tx) => tx.on_response(now, status),
            ClientTx::Invite(tx) => {
                let ack = || ack_for_failure(resp);
                tx.on_response(now, status, reliability(tx_flow), ack, &mut effects)
            }
        };
        self.log_sip_leg(Some(call), leg, Direction::In, flow, raw.to_vec(), None);
        for effect in effects {
            if let TxEffect::Transmit(bytes) = effect {
                self.transmit_leg(Some(call), leg, tx_flow, bytes);
            }
        }
        if purpose == ClientPurpose::Restart {
            if verdict == ResponseVerdict::PassToTu && status >= 200 {
                self.restart_bye_outcome(call, leg, &format!("answered {status}"));
            }
            return self.reschedule_client(&key);
        }
        match leg {
            LegId::Caller => {
                if verdict == ResponseVerdict::PassToTu && status >= 200 {
                    match purpose {
                        ClientPurpose::Probe => self.probe_result(now, call, Ok(status)),
                        _ => self.finish_hang_up(call),
                    }
                }
            }
            LegId::Agency(n) => {
                self.on_agency_response(now, call, n, purpose, msg, resp, verdict);
            }
        }
        self.reschedule_client(&key);
    }

    /// Sends a request under a new client non-INVITE transaction (RFC 3261 §17.1.2), which
    /// retransmits it until answered or timed out.
    pub(crate) fn send_non_invite(
        &mut self,
        key: ClientTxKey,
        call: CallRef,
        leg: LegId,
        purpose: ClientPurpose,
        flow: Flow,
        bytes: Vec<u8>,
    ) {
        let tx =
            ClientNonInviteTx::new(self.now, self.cfg.timers, reliability(flow), bytes.clone());
        let entry = ClientTxEntry {
            tx: ClientTx::NonInvite(tx),
            flow,
            call,
            leg,
            purpose,
        };
        self.start_client_tx(key, entry, bytes);
    }

    /// Sends a request under the client transaction in `entry` (INVITE or not) and arms its
    /// first timer.
    pub(crate) fn start_client_tx(
        &mut self,
        key: ClientTxKey,
        entry: ClientTxEntry,
        bytes: Vec<u8>,
    ) {
        let (call, leg, flow) = (entry.call, entry.leg, entry.flow);
        self.client_txs.insert(key.clone(), entry);
        self.transmit_leg(Some(call), leg, flow, bytes);
        self.reschedule_client(&key);
    }

    pub(crate) fn reschedule_client(&mut self, key: &ClientTxKey) {
        let (deadline, done) = match self.client_txs.get(key) {
            Some(e) => (e.tx.next_deadline(), e.tx.is_terminated()),
            None => (None, true),
        };
        if done {
            self.client_txs.remove(key);
        }
        self.timers
            .set(TimerKey::Client(key.clone()), deadline.filter(|_| !done));
    }

    // ---- ending calls ----

    /// The gateway ends a call: BYE if answered, a final response if still ringing.
    pub(crate) fn hang_up(&mut self, now: Instant, call_ref: CallRef, reason: EndReason) {
        let Some(call) = self.calls.get_mut(&call_ref) else {
            return;
        };
        match &call.state {
            CallState::HangingUp { .. } | CallState::Ended => {}
            CallState::Ringing { .. } => {
                let key = call.invite_tx.clone();
                let call = self.calls.get(&call_ref).expect("present");
                let bytes = self.response_for(call, 480, None);
                self.respond(now, &key, 480, bytes);
                self.end_call(call_ref, reason, None);
            }
            CallState::Answered | CallState::Confirmed => {
                let branch = Branch(format!("z9hG4bK{}", self.rng.token()));
                let why = vec![("Reason", format!("SIP;cause=200;text=\"{reason}\""))];
                let bytes = call.request_to_caller("BYE", &branch, why);
                call.state = CallState::HangingUp {
                    bye_branch: branch.clone(),
                };
                call.pending_end = Some(reason);
                let flow = call.flow;
                let key = ClientTxKey {
                    branch,
                    method: "BYE",
                };
                self.send_non_invite(
                    key,
                    call_ref,
                    LegId::Caller,
                    ClientPurpose::Bye,
                    flow,
                    bytes,
                );
                self.media(MediaCommand::Release {
                    call: call_ref,
                    leg: LegId::Caller,
                });
                self.release_agency_legs(now, call_ref);
                self.reschedule_call(call_ref);
            }
        }
    }

    /// Our BYE got its final response (or timed out): the call is over.
    fn finish_hang_up(&mut self, call_ref: CallRef) {
        let reason = self
            .calls
            .get(&call_ref)
            .and_then(|c| c.pending_end)
            .unwrap_or(EndReason::GatewayHungUp);
        self.end_call(call_ref, reason, None);
    }

    fn end_call(&mut self, call_ref: CallRef, reason: EndReason, detail: Option<String>) {
        let Some(call) = self.calls.get(&call_ref) else {
            return;
        };
        if matches!(call.state, CallState::Ended) {
            return;
        }
        // Our own hang-up crossed with the caller's: the reason we had is the true one.
        let reason = call.pending_end.unwrap_or(reason);
        // A caller who gives up while an agency is still being rung, or while queued, is an
        // abandoned call: the centre calls such callers back.
        let reason = match (reason, call.bridging.as_ref()) {
            (EndReason::CallerHungUp, Some(b)) if b.connected.is_none() => {
                EndReason::AbandonedWaitingForAgency
            }
            (r, _) => r,
        };
        {
            let _e = call.span.enter();
            tracing::info!(reason = reason.as_str(), "call ended");
        }
        let dialog_key = (call.dialog.call_id.clone(), call.dialog.local_tag.clone());
        let awaiting_ack = call.awaiting_ack.clone();
        let (merged, acks) = (call.merged_requests, call.repeated_acks);
        if merged > VERBATIM_REPEATS {
            let detail = format!(
                "{merged} copies of the INVITE on other branches answered 482; the first \
                 {VERBATIM_REPEATS} logged"
            );
            self.timeline(call_ref, CallEventKind::MergedRequests, detail);
        }
        if acks > VERBATIM_REPEATS {
            let detail = format!("{acks} repeated ACKs; the first {VERBATIM_REPEATS} logged");
            self.timeline(call_ref, CallEventKind::RepeatedAcks, detail);
        }
        let Some(call) = self.calls.get(&call_ref) else {
            return;
        };
        // Still ringing (a transport error, an early BYE): the INVITE gets its final answer.
        let unanswered = matches!(call.state, CallState::Ringing { .. })
            .then(|| (call.invite_tx.clone(), self.response_for(call, 487, None)));
        if let Some((key, bytes)) = unanswered {
            self.respond(self.now, &key, 487, bytes);
        }
        let now = self.now;
        self.release_agency_legs(now, call_ref);
        let Some(call) = self.calls.get_mut(&call_ref) else {
            return;
        };
        let previous = std::mem::replace(&mut call.state, CallState::Ended);
        call.ended_at = Some(now);
        call.ivr = None;
        self.dialogs.remove(&dialog_key);
        // A caller who sends BYE has our 200 even if its ACK was lost: stop repeating it.
        if let Some((_, tx_key)) = &awaiting_ack {
            if let Some(entry) = self.server_txs.get_mut(tx_key)
                && let ServerTx::Invite(tx) = &mut entry.tx
            {
                tx.on_2xx_acked();
            }
            self.reschedule_server(tx_key);
        }
        self.origins.retain(|_, c| *c != call_ref);
        if !matches!(previous, CallState::HangingUp { .. }) {
            self.media(MediaCommand::Release {
                call: call_ref,
                leg: LegId::Caller,
            });
        }
        self.log(LogRecord::CallEnded {
            call: call_ref,
            reason,
            detail,
        });
        // Agency legs may still need the call to finish their CANCEL/BYE; it lingers until
        // they are done (or LINGER passes).
        self.maybe_forget(call_ref);
        self.reschedule_call(call_ref);
    }

    // ---- time, transport and media ----

    fn on_timeout(&mut self, now: Instant) {
        let mut effects = Vec::new();
        while let Some(key) = self.timers.pop_due(now) {
            match key {
                TimerKey::Server(k) => {
                    let Some(entry) = self.server_txs.get_mut(&k) else {
                        continue;
                    };
                    match &mut entry.tx {
                        ServerTx::Invite(t) => t.on_timeout(now, &mut effects),
                        ServerTx::NonInvite(t) => t.on_timeout(now, &mut effects),
                    }
                    let (call, flow, initial) = (entry.call, entry.flow, entry.initial_invite);
                    for effect in effects.drain(..) {
                        match effect {
                            TxEffect::Transmit(bytes) => self.transmit(call, flow, bytes),
                            TxEffect::Terminated(TxEnd::NoAck) if initial => {
                                if let Some(call) = call {
                                    self.on_no_ack(now, call);
                                }
                            }
                            TxEffect::Terminated(_) => {}
                        }
                    }
                    self.reschedule_server(&k);
                }
                TimerKey::Client(k) => {
                    let Some(entry) = self.client_txs.get_mut(&k) else {
                        continue;
                    };
                    match &mut entry.tx {
                        ClientTx::Invite(t) => t.on_timeout(now, &mut effects),
                        ClientTx::NonInvite(t) => t.on_timeout(now, &mut effects),
                    }
                    let (call, flow, leg, purpose) =
                        (entry.call, entry.flow, entry.leg, entry.purpose);
                    for effect in effects.drain(..) {
                        match (effect, leg) {
                            (TxEffect::Transmit(bytes), _) => {
                                self.transmit_leg(Some(call), leg, flow, bytes)
                            }
                            (TxEffect::Terminated(TxEnd::Timeout), _)
                                if purpose == ClientPurpose::Restart =>
                            {
                                self.restart_bye_outcome(call, leg, "no response (Timer F)")
                            }
                            (TxEffect::Terminated(TxEnd::Timeout), LegId::Caller)
                                if purpose == ClientPurpose::Probe =>
                            {
                                let why = "no response to OPTIONS (timeout)".to_owned();
                                self.probe_result(now, call, Err(why));
                            }
                            (TxEffect::Terminated(TxEnd::Timeout), LegId::Caller) => {
                                self.timeline(
                                    call,
                                    CallEventKind::ByeTimeout,
                                    "no response to our BYE",
                                );
                                self.finish_hang_up(call);
                            }
                            (TxEffect::Terminated(TxEnd::Timeout), LegId::Agency(n)) => {
                                let why = format!("no response to {} (timeout)", purpose.method());
                                self.agency_tx_failed(now, call, n, purpose, &why);
                            }
                            (TxEffect::Terminated(_), _) => {}
                        }
                    }
                    self.reschedule_client(&k);
                }
                TimerKey::Call(c) => self.on_call_timer(now, c),
                TimerKey::NonCall => self.roll_noncall(now),
            }
        }
    }

    fn on_call_timer(&mut self, now: Instant, call_ref: CallRef) {
        let Some(call) = self.calls.get(&call_ref) else {
            return;
        };
        if call
            .ivr
            .as_ref()
            .and_then(IvrSession::next_timeout)
            .is_some_and(|at| now >= at)
        {
            self.ivr_input(now, call_ref, IvrInput::Timeout);
        }
        let Some(call) = self.calls.get(&call_ref) else {
            return;
        };
        match call.state {
            CallState::Ringing { .. } => self.try_answer(now, call_ref),
            CallState::Answered | CallState::Confirmed => {
                if call.hang_up_at.is_some_and(|at| now >= at) {
                    self.timeline(
                        call_ref,
                        CallEventKind::MaxDuration,
                        "maximum call duration reached",
                    );
                    self.hang_up(now, call_ref, EndReason::GatewayHungUp);
                    return;
                }
                if matches!(call.probe, Probe::Again(at) if now >= at) {
                    if let Some(c) = self.calls.get_mut(&call_ref) {
                        c.probe = Probe::Idle;
                    }
                    self.probe_caller(call_ref);
                }
                if self
                    .calls
                    .get(&call_ref)
                    .is_some_and(|c| c.bridging.is_some())
                {
                    self.bridge_timers(now, call_ref);
                }
            }
            CallState::HangingUp { .. } => {}
            CallState::Ended => {
                if call
                    .ended_at
                    .is_some_and(|at| now >= at + crate::bridge::LINGER)
                {
                    // Legs that never finished: give up on them.
                    self.calls.remove(&call_ref);
                    self.timers.set(TimerKey::Call(call_ref), None);
                    return;
                }
            }
        }
        self.reschedule_call(call_ref);
    }

    /// No ACK for our 200 after 64·T1. RFC 3261 says end the session; an emergency caller
    /// whose audio is reaching us is kept (a lost ACK is not a hang-up).
    fn on_no_ack(&mut self, now: Instant, call_ref: CallRef) {
        let Some(call) = self.calls.get(&call_ref) else {
            return;
        };
        if !matches!(call.state, CallState::Answered) {
            return;
        }
        if call.media_seen {
            self.timeline(
                call_ref,
                CallEventKind::NoAck,
                "no ACK for 200, kept: caller media is flowing",
            );
            if let Some(c) = self.calls.get_mut(&call_ref) {
                c.state = CallState::Confirmed;
            }
            return;
        }
        self.timeline(
            call_ref,
            CallEventKind::NoAck,
            "no ACK for 200 and no media: hanging up",
        );
        self.hang_up(now, call_ref, EndReason::NoAck);
    }

    fn on_transport_error(&mut self, now: Instant, flow: Flow, reason: String) {
        let affected: Vec<CallRef> = self
            .calls
            .values()
            .filter(|c| c.flow == flow)
            .map(|c| c.call_ref)
            .collect();
        for call_ref in affected {
            self.timeline(call_ref, CallEventKind::TransportError, reason.clone());
            let Some(call) = self.calls.get(&call_ref) else {
                continue;
            };
            // A caller whose audio still flows may come back on a new connection.
            if !call.media_seen {
                self.end_call(call_ref, EndReason::TransportError, Some(reason.clone()));
            }
        }
        let mut effects = Vec::new();
        // Outbound flows have no connection id yet: match them by peer and transport.
        let failed: Vec<ClientTxKey> = self
            .client_txs
            .iter()
            .filter(|(_, e)| e.flow.remote == flow.remote && e.flow.transport == flow.transport)
            .map(|(k, _)| k.clone())
            .collect();
        for key in failed {
            if let Some(entry) = self.client_txs.get_mut(&key) {
                match &mut entry.tx {
                    ClientTx::Invite(t) => t.on_transport_error(&mut effects),
                    ClientTx::NonInvite(t) => t.on_transport_error(&mut effects),
                }
                let (call, leg, purpose) = (entry.call, entry.leg, entry.purpose);
                if effects
                    .drain(..)
                    .any(|e| matches!(e, TxEffect::Terminated(_)))
                {
                    match leg {
                        _ if purpose == ClientPurpose::Restart => {
                            let why = format!("transport error: {reason}");
                            self.restart_bye_outcome(call, leg, &why);
                        }
                        LegId::Caller if purpose == ClientPurpose::Probe => {
                            self.probe_unsent(now, call, &reason);
                        }
                        LegId::Caller => self.finish_hang_up(call),
                        LegId::Agency(n) => {
                            let why = format!("transport error: {reason}");
                            self.agency_tx_failed(now, call, n, purpose, &why);
                        }
                    }
                }
            }
            self.reschedule_client(&key);
        }
    }

    fn on_media(&mut self, now: Instant, call_ref: CallRef, leg: LegId, event: MediaEvent) {
        let Some(call) = self.calls.get_mut(&call_ref) else {
            return;
        };
        match (event, leg) {
            (MediaEvent::Allocated { local }, LegId::Agency(n)) => {
                self.send_agency_invite(now, call_ref, n, local);
            }
            (MediaEvent::AllocationFailed { reason }, LegId::Agency(n)) => {
                // Ring the agency anyway: a human on the line beats no call; audio is logged
                // as failed.
                let fallback = SocketAddr::new(call.flow.local.ip(), 9);
                self.timeline(
                    call_ref,
                    CallEventKind::MediaFailed,
                    format!("leg B{n}: {reason}"),
                );
                self.send_agency_invite(now, call_ref, n, fallback);
            }
            (MediaEvent::Allocated { local }, LegId::Caller) => {
                if let CallState::Ringing { media_local, .. } = &mut call.state {
                    *media_local = Some(local);
                    self.try_answer(now, call_ref);
                }
            }
            (MediaEvent::AllocationFailed { reason }, LegId::Caller) => {
                // Answer anyway: a caller who can be heard later beats a refused call. The
                // SDP points at our signalling address with port 9 (discard).
                let fallback = SocketAddr::new(call.flow.local.ip(), 9);
                if let CallState::Ringing { media_local, .. } = &mut call.state {
                    *media_local = Some(fallback);
                }
                self.timeline(call_ref, CallEventKind::MediaFailed, reason);
                self.try_answer(now, call_ref);
            }
            (MediaEvent::FirstPacket, _) => {
                if leg == LegId::Caller {
                    call.media_seen = true;
                    call.caller_silent = false;
                }
                self.timeline(
                    call_ref,
                    CallEventKind::MediaStarted,
                    format!("first RTP on leg {leg}"),
                );
            }
            (MediaEvent::Digit { digit, source }, _) => {
                if leg == LegId::Caller {
                    self.timeline(
                        call_ref,
                        CallEventKind::Dtmf,
                        format!("{digit} via {source}"),
                    );
                    self.ivr_input(now, call_ref, IvrInput::Digit(digit));
                } else {
                    self.timeline(
                        call_ref,
                        CallEventKind::AgencyDtmf,
                        format!("{digit} via {source} on leg {leg}"),
                    );
                }
            }
            (MediaEvent::PromptFinished { playback }, _)
                if crate::bridge::is_bridge_playback(playback) =>
            {
                self.announcement_finished(now, call_ref, playback);
            }
            (MediaEvent::PromptFinished { playback }, _) => {
                let id = siaga_dialplan::PlaybackId(playback.0);
                self.ivr_input(now, call_ref, IvrInput::PromptFinished(id));
            }
            (MediaEvent::Timeout { silent_for }, _) => {
                if leg == LegId::Caller {
                    call.caller_silent = true;
                }
                self.timeline(
                    call_ref,
                    CallEventKind::MediaTimeout,
                    format!("no RTP for {} s on leg {leg}", silent_for.as_secs()),
                );
                if leg == LegId::Caller {
                    self.probe_caller(call_ref);
                }
            }
            (MediaEvent::Resumed { silent_for }, _) => {
                if leg == LegId::Caller {
                    call.caller_silent = false;
                    if matches!(call.probe, Probe::Again(_)) {
                        call.probe = Probe::Idle;
                    }
                }
                self.timeline(
                    call_ref,
                    CallEventKind::MediaResumed,
                    format!("RTP again on leg {leg} after {} s", silent_for.as_secs()),
                );
                self.reschedule_call(call_ref);
            }
        }
    }

    /// Asks a silent caller's UA whether the dialog still exists: an in-dialog OPTIONS
    /// (RFC 3261 §11; a 481 or 408 means the dialog is gone, RFC 5057). OPTIONS rather than an
    /// RFC 4028 session refresh: it needs nothing negotiated, every UA must answer it, and it
    /// cannot change the media session of an emergency call.
    fn probe_caller(&mut self, call_ref: CallRef) {
        if self.cfg.dead_session.reprobe.is_none() {
            return;
        }
        let Some(call) = self.calls.get_mut(&call_ref) else {
            return;
        };
        let up = matches!(call.state, CallState::Answered | CallState::Confirmed);
        if !up || !call.caller_silent || matches!(call.probe, Probe::Sent(_)) {
            return;
        }
        let branch = Branch(format!("z9hG4bK{}", self.rng.token()));
        let accept = vec![("Accept", "application/sdp".to_owned())];
        let bytes = call.request_to_caller("OPTIONS", &branch, accept);
        call.probe = Probe::Sent(branch.clone());
        let flow = call.flow;
        self.timeline(
            call_ref,
            CallEventKind::CallerProbe,
            "no RTP from the caller: OPTIONS sent in the dialog",
        );
        let key = ClientTxKey {
            branch,
            method: "OPTIONS",
        };
        let purpose = ClientPurpose::Probe;
        self.send_non_invite(key, call_ref, LegId::Caller, purpose, flow, bytes);
        self.reschedule_call(call_ref);
    }

    /// The probe's outcome: a final status, or why none came (timeout, transport error).
    fn probe_result(&mut self, now: Instant, call_ref: CallRef, outcome: Result<u16, String>) {
        let Some(call) = self.calls.get_mut(&call_ref) else {
            return;
        };
        call.probe = Probe::Idle;
        if !matches!(call.state, CallState::Answered | CallState::Confirmed) {
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
        if !call.caller_silent {
            return self.timeline(
                call_ref,
                CallEventKind::CallerProbe,
                format!("{what}; RTP is back: kept"),
            );
        }
        if !lost {
            call.probe = match self.cfg.dead_session.reprobe {
                Some(every) => Probe::Again(now + every),
                None => Probe::Idle,
            };
            self.timeline(
                call_ref,
                CallEventKind::CallerProbe,
                format!("{what}: kept"),
            );
            return self.reschedule_call(call_ref);
        }
        // The caller's UA has no such dialog, or is gone: a BYE lost on the way, a phone
        // that died. No BYE to it (it has nothing to end); the agency legs get theirs.
        let detail = format!("{what} and no RTP from the caller");
        self.timeline(call_ref, CallEventKind::CallerLost, detail.clone());
        self.end_call(call_ref, EndReason::CallerLost, Some(detail));
    }

    /// The probe could not be sent (the caller's TCP connection dropped). That says nothing
    /// about the caller's dialog: its SBC may come back on a new connection. The call is kept
    /// and the probe tried again at the next interval; only a 481/408 or Timer F ends it.
    fn probe_unsent(&mut self, now: Instant, call_ref: CallRef, reason: &str) {
        let Some(call) = self.calls.get_mut(&call_ref) else {
            return;
        };
        let every = self.cfg.dead_session.reprobe;
        call.probe = every.map_or(Probe::Idle, |every| Probe::Again(now + every));
        if !matches!(call.state, CallState::Answered | CallState::Confirmed) {
            return;
        }
        let next = every.map_or(String::new(), |e| {
            format!(", asked again in {} s", e.as_secs())
        });
        let detail = format!("OPTIONS not sent (transport error: {reason}): kept{next}");
        self.timeline(call_ref, CallEventKind::CallerProbe, detail);
        self.reschedule_call(call_ref);
    }

    /// Ends every live call now (shutdown after the drain time): BYE to callers and agencies,
    /// and a `CallEnded` for each.
    pub fn hang_up_all(&mut self, now: Instant) {
        self.now = now;
        let live: Vec<CallRef> = self
            .calls
            .iter()
            .filter(|(_, c)| !matches!(c.state, CallState::Ended))
            .map(|(r, _)| *r)
            .collect();
        for call in live {
            self.timeline(
                call,
                CallEventKind::Shutdown,
                "the gateway stopped with the call still up",
            );
            self.hang_up(now, call, EndReason::GatewayHungUp);
            self.end_call(
                call,
                EndReason::GatewayHungUp,
                Some("gateway shutdown".to_owned()),
            );
        }
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
        (
            self.server_txs.len(),
            self.client_txs.len(),
            self.calls.len(),
            self.noncall.tracked_sources(),
        )
    }

    #[doc(hidden)]
    pub fn session_of(&self, call: CallRef) -> Option<&LocalSession> {
        self.calls.get(&call).and_then(|c| c.session.as_ref())
    }
}

/// The headers a plain final response outside a dialog carries for its status.
fn plain_headers(req: &Request, status: u16) -> Vec<(&'static str, String)> {
    let mut headers = Vec::new();
    if matches!(status, 200 | 405) {
        headers.push(("Allow", ALLOW.to_owned()));
    }
    if status == 200 && req.method == Method::Options {
        headers.push(("Accept", "application/sdp".to_owned()));
    }
    if status == 503 {
        headers.push(("Retry-After", "5".to_owned()));
    }
    headers
}

/// Extensions we support (RFC 3261 §8.2.2.3): anything else in Require is refused with 420,
/// except on an emergency call, which is never refused for it.
const SUPPORTED: &[&str] = &["replaces", "timer", "path", "outbound", "gruu"];

/// Body types we can read.
const ACCEPTED_TYPES: &[&str] = &[
    "application/sdp",
    "multipart/mixed",
    "multipart/related",
    "application/pidf+xml",
    "application/dtmf-relay",
    "application/dtmf",
    "text/plain",
];

/// Why a request cannot be served as sent: `(status, extra headers)`.
fn unsupported(req: &Request) -> Option<(u16, Vec<(&'static str, String)>)> {
    let unknown: Vec<String> = req
        .headers
        .iter()
        .filter_map(|h| match h {
            Header::Require(v) => Some(v.value().to_owned()),
            _ => None,
        })
        .flat_map(|v| {
            v.split(',')
                .map(|t| t.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|t| !t.is_empty() && !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
        .collect();
    if !unknown.is_empty() {
        return Some((420, vec![("Unsupported", unknown.join(", "))]));
    }
    if !req.body.is_empty() {
        let content_type = header_value(req, |h| matches!(h, Header::ContentType(_)));
        let essence = content_type
            .as_deref()
            .and_then(|ct| ct.split(';').next())
            .map(|e| e.trim().to_ascii_lowercase());
        let encoding = header_value(req, |h| matches!(h, Header::ContentEncoding(_)));
        if essence.is_some_and(|e| !ACCEPTED_TYPES.contains(&e.as_str()))
            || encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"))
        {
            return Some((
                415,
                vec![
                    ("Accept", ACCEPTED_TYPES.join(", ")),
                    ("Accept-Encoding", "identity".to_owned()),
                ],
            ));
        }
    }
    if req.method == Method::Invite
        && let Some(accept) = header_value(req, |h| matches!(h, Header::Accept(_)))
    {
        let takes_sdp = accept.split(',').any(|a| {
            let a = a
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            matches!(a.as_str(), "application/sdp" | "application/*" | "*/*")
        });
        if !accept.trim().is_empty() && !takes_sdp {
            return Some((406, vec![("Accept", "application/sdp".to_owned())]));
        }
    }
    None
}

/// The ACK a client INVITE transaction sends for a 3xx–6xx (RFC 3261 §17.1.1.3): the
/// INVITE's Via (same branch), Call-ID, From and CSeq number, the response's To.
fn ack_for_failure(resp: &Response) -> Vec<u8> {
    let get = |pick: fn(&Header) -> bool| {
        resp.headers
            .iter()
            .find(|h| pick(h))
            .map(|h| h.value().to_owned())
            .unwrap_or_default()
    };
    let via = get(|h| matches!(h, Header::Via(_)));
    let via = parse::split_header_list(&via)
        .first()
        .map(|v| (*v).to_owned())
        .unwrap_or_default();
    let from = get(|h| matches!(h, Header::From(_)));
    let to = get(|h| matches!(h, Header::To(_)));
    let call_id = get(|h| matches!(h, Header::CallId(_)));
    let cseq = get(|h| matches!(h, Header::CSeq(_)));
    let num = cseq.split_whitespace().next().unwrap_or("1");
    let request_uri = crate::bridge::uri_of(&to);
    format!(
        "ACK {request_uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\n\
         Call-ID: {call_id}\r\nCSeq: {num} ACK\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A short, stable name for a timeline event kind (the log's `kind` column).
fn timeline_kind(kind: &TimelineKind) -> CallEventKind {
    match kind {
        TimelineKind::MenuEntered { .. } => CallEventKind::MenuEntered,
        TimelineKind::PromptStarted { .. } => CallEventKind::PromptStarted,
        TimelineKind::PromptInterrupted { .. } => CallEventKind::PromptInterrupted,
        TimelineKind::DigitReceived { .. } => CallEventKind::DigitReceived,
        TimelineKind::DigitIgnored { .. } => CallEventKind::DigitIgnored,
        TimelineKind::Timeout { .. } => CallEventKind::MenuTimeout,
        TimelineKind::InvalidChoice { .. } => CallEventKind::InvalidChoice,
        TimelineKind::Repeat => CallEventKind::Repeat,
        TimelineKind::Retry { .. } => CallEventKind::Retry,
        TimelineKind::LanguageSwitched { .. } => CallEventKind::LanguageSwitched,
        TimelineKind::RouteDecided { .. } => CallEventKind::RouteDecided,
    }
}

/// A fixed time for an engine that has not been told the local time yet.
fn unreachable_time() -> LocalTime {
    LocalTime {
        weekday: siaga_dialplan::Weekday::Mon,
        time: siaga_dialplan::ClockTime::new(12, 0).unwrap_or_else(|| unreachable!()),
    }
}

pub(crate) fn reliability(flow: Flow) -> Reliability {
    match flow.transport {
        Transport::Udp => Reliability::Unreliable,
        Transport::Tcp => Reliability::Reliable,
    }
}

pub(crate) fn header_value(req: &Request, pick: impl Fn(&Header) -> bool) -> Option<String> {
    req.headers
        .iter()
        .find(|h| pick(h))
        .map(|h| h.value().to_owned())
}

/// The URI inside the first Contact value.
fn contact_uri(req: &Request) -> Option<String> {
    let value = header_value(req, |h| matches!(h, Header::Contact(_)))?;
    let first = parse::split_header_list(&value)
        .into_iter()
        .next()?
        .to_owned();
    match (first.find('<'), first.find('>')) {
        (Some(a), Some(b)) if a < b => Some(first[a + 1..b].to_owned()),
        _ => first.split(';').next().map(|s| s.trim().to_owned()),
    }
}

/// The SDP of a request, whether the body is plain SDP or multipart with an SDP part.
pub(crate) fn sdp_of(req: &Request) -> Option<&[u8]> {
    if req.body.is_empty() {
        return None;
    }
    let content_type = header_value(req, |h| matches!(h, Header::ContentType(_)));
    siaga_location::find_sdp(content_type.as_deref(), &req.body)
}

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

/// The SDP of a response (plain or inside multipart).
pub(crate) fn sdp_of_response(resp: &Response) -> Option<&[u8]> {
    if resp.body.is_empty() {
        return None;
    }
    let content_type = resp
        .headers
        .iter()
        .find(|h| matches!(h, Header::ContentType(_)))
        .map(|h| h.value().to_owned());
    siaga_location::find_sdp(content_type.as_deref(), &resp.body)
}
