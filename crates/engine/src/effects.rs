//! What a call may do to the world outside itself, gathered in one place: send SIP, log,
//! command the media side, run transactions, and touch the few tables calls share (the
//! dialog index, route queues, target load). Call behaviour takes `&mut Effects`; the
//! dispatcher owns it and drains its outputs.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use siaga_dialplan::{LocalTime, RouteId};

use crate::config::EngineConfig;
use crate::directory::Directory;
use crate::ids::{Branch, CallId, CallRef, LegId, Tag};
use crate::io::{LogRecord, MediaCommand, Output};
use crate::net::{Direction, Flow};
use crate::timeline::CallEventKind;
use crate::timers::TimerQueue;
use crate::transaction::Reliability;
use crate::transaction::ServerTxKey;
use crate::transaction::client::ClientNonInviteTx;
use crate::transaction::table::{
    ClientPurpose, ClientTx, ClientTxEntry, ClientTxKey, ServerTxEntry, TransactionTable, TxKey,
    VERBATIM_REPEATS,
};

/// Small deterministic PRNG (xorshift64*): tags and branches need uniqueness, not secrecy.
#[derive(Debug)]
pub(crate) struct Rng(pub(crate) u64);

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

/// Who wants waking: transactions, calls, and the non-call counting window.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum TimerKey {
    Tx(TxKey),
    Call(CallRef),
    /// The end of the non-call counting window.
    NonCall,
    /// A call's signals waited long enough for the caller's voice totals.
    Signals(CallRef),
    /// Under attack: time to see whether it is calm again.
    Flood,
}

/// A key of the dialog index: Call-ID and our tag.
pub(crate) type DialogKey = (CallId, Tag);

pub(crate) struct Effects {
    pub(crate) cfg: EngineConfig,
    pub(crate) rng: Rng,
    pub(crate) txs: TransactionTable,
    pub(crate) timers: TimerQueue<TimerKey>,
    outputs: VecDeque<Output>,
    /// Where agency targets are (resolved by the shell).
    pub(crate) directory: Directory,
    /// Local civil time, for time-of-day route variants (the shell updates it).
    pub(crate) local_time: LocalTime,
    /// (Call-ID, our tag) → call and leg, for in-dialog requests from the caller or an agency.
    pub(crate) dialogs: HashMap<DialogKey, (CallRef, LegId)>,
    /// (Call-ID, From tag, CSeq) of live initial INVITEs: a copy on another branch is a
    /// merged request (RFC 3261 §8.2.2.2), not a second emergency call.
    pub(crate) origins: HashMap<(CallId, Option<Tag>, u32), CallRef>,
    /// Callers waiting for a busy route, in the order they are served.
    pub(crate) queues: HashMap<RouteId, crate::route_queue::RouteQueue>,
    /// Targets a call stopped using: the heads of other calls' queues may ring them now (the
    /// dispatcher does that, as it concerns other calls).
    pub(crate) freed_targets: Vec<(CallRef, String)>,
    pub(crate) next_playback: u64,
    /// The next call reference the dispatcher hands out (also seeds multipart boundaries).
    pub(crate) next_call_ref: u64,
    /// The time of the input being handled.
    pub(crate) now: Instant,
    /// Ended calls' signals waiting for the caller leg's voice totals (see `call::signals`).
    pub(crate) awaiting_voice: HashMap<CallRef, crate::io::CallSignals>,
    /// Floods of emergency calls: under attack or not, and who is challenged (issue 12).
    pub(crate) flood: siaga_dialplan::FloodGuard,
    /// The plan's class thresholds: which ended calls count as silent short calls.
    pub(crate) silent_rules: siaga_dialplan::ClassifyRules,
}

impl Effects {
    pub(crate) fn new(cfg: EngineConfig, local_time: LocalTime, start: Instant) -> Self {
        Self {
            rng: Rng(cfg.seed | 1),
            next_call_ref: cfg.first_call_ref,
            cfg,
            txs: TransactionTable::default(),
            timers: TimerQueue::default(),
            outputs: VecDeque::new(),
            directory: Directory::default(),
            local_time,
            dialogs: HashMap::new(),
            origins: HashMap::new(),
            queues: HashMap::new(),
            freed_targets: Vec::new(),
            next_playback: 0,
            now: start,
            awaiting_voice: HashMap::new(),
            flood: siaga_dialplan::FloodGuard::new(&siaga_dialplan::FloodRules::default()),
            silent_rules: siaga_dialplan::ClassifyRules::default(),
        }
    }

    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// A new Via branch (RFC 3261 magic cookie first).
    pub(crate) fn branch(&mut self) -> Branch {
        Branch(format!("z9hG4bK{}", self.rng.token()))
    }

    // ---- output ----

    /// Sends without logging (counted repeats, non-call replies the sampler decided on).
    pub(crate) fn transmit_unlogged(&mut self, flow: Flow, bytes: Vec<u8>) {
        self.outputs.push_back(Output::Transmit { flow, bytes });
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

    pub(crate) fn log_sip(
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

    pub(crate) fn log(&mut self, record: LogRecord) {
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

    // ---- transactions ----

    /// Starts a server transaction for a request (an existing one under the key is kept) and
    /// sends `status` through it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn respond_new(
        &mut self,
        now: Instant,
        key: &ServerTxKey,
        invite: bool,
        flow: Flow,
        call: Option<CallRef>,
        leg: LegId,
        status: u16,
        bytes: Vec<u8>,
    ) {
        let entry = ServerTxEntry::new(invite, self.cfg.timers, flow, call, leg);
        self.txs.add_server(key.clone(), entry);
        self.respond(now, key, status, bytes);
    }

    /// Sends a response through its server transaction.
    pub(crate) fn respond(&mut self, now: Instant, key: &ServerTxKey, status: u16, bytes: Vec<u8>) {
        let Some((fed, out)) = self.txs.respond(now, key, status, bytes) else {
            return;
        };
        if let Some(bytes) = out {
            self.transmit_leg(fed.call, fed.leg, fed.flow, bytes);
        }
        self.reschedule_tx(TxKey::Server(key.clone()));
    }

    /// The 2xx of an INVITE we answered is acknowledged: stop repeating it.
    pub(crate) fn acked_2xx(&mut self, key: &ServerTxKey) {
        self.txs.acked_2xx(key);
        self.reschedule_tx(TxKey::Server(key.clone()));
    }

    /// Arms a transaction's next timer, or removes it once terminated (a server transaction
    /// that absorbed many retransmissions leaves their count on the call's timeline).
    pub(crate) fn reschedule_tx(&mut self, key: TxKey) {
        let (deadline, finished) = self.txs.settle(&key);
        if let Some(entry) = &finished
            && entry.repeats > VERBATIM_REPEATS
            && let Some(call) = entry.call
            && let TxKey::Server(k) = &key
        {
            let detail = format!(
                "{} retransmissions of {} absorbed; the first {VERBATIM_REPEATS} logged",
                entry.repeats,
                k.method()
            );
            self.timeline(call, CallEventKind::Retransmissions, detail);
        }
        self.timers.set(TimerKey::Tx(key), deadline);
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
        let tx = ClientNonInviteTx::new(
            self.now,
            self.cfg.timers,
            Reliability::of(flow),
            bytes.clone(),
        );
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
        self.txs.add_client(key.clone(), entry);
        self.transmit_leg(Some(call), leg, flow, bytes);
        self.reschedule_tx(TxKey::Client(key));
    }

    /// Drops a client transaction at once (its timers too).
    pub(crate) fn forget_client_tx(&mut self, key: ClientTxKey) {
        self.txs.forget_client(&key);
        self.timers.set(TimerKey::Tx(TxKey::Client(key)), None);
    }
}
