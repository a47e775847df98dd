//! The transaction table: every server and client transaction the engine runs, keyed as RFC
//! 3261 §17 matches them, with what each belongs to (call, leg, purpose). The machines in
//! `server` and `client` decide; the table finds them, feeds them and says when they are done.

use std::collections::HashMap;
use std::time::Instant;

use super::client::{ClientInviteTx, ClientNonInviteTx, ResponseVerdict};
use super::server::{ServerInviteTx, ServerNonInviteTx};
use super::{Reliability, ServerTxKey, TimerConfig, TxEffect, TxEnd};
use crate::ids::{Branch, CallRef, LegId};
use crate::net::Flow;

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

impl ServerTxEntry {
    /// A fresh transaction for a request received on `flow` (INVITE or not).
    pub(crate) fn new(
        invite: bool,
        timers: TimerConfig,
        flow: Flow,
        call: Option<CallRef>,
        leg: LegId,
    ) -> Self {
        let reliability = Reliability::of(flow);
        let tx = if invite {
            ServerTx::Invite(ServerInviteTx::new(timers, reliability))
        } else {
            ServerTx::NonInvite(ServerNonInviteTx::new(timers, reliability))
        };
        Self {
            tx,
            flow,
            call,
            leg,
            initial_invite: false,
            repeats: 0,
        }
    }
}

/// Repeats of one message (retransmissions of a request, copies of an INVITE on other
/// branches, repeated ACKs) logged verbatim before they are only counted: one call must not
/// let an outsider write rows at line rate.
pub(crate) const VERBATIM_REPEATS: u32 = 10;

/// The log note of the `n`th logged repeat: the last one logged says what happens next.
pub(crate) fn repeat_note(what: &str, n: u32) -> String {
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
    pub(crate) fn method(self) -> &'static str {
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

impl ClientTxKey {
    /// The key of a response's transaction: its top Via branch and CSeq method (methods we
    /// never send match nothing).
    pub(crate) fn of_response(branch: Branch, cseq_method: &str) -> Self {
        let method = match cseq_method {
            "INVITE" => "INVITE",
            "CANCEL" => "CANCEL",
            "BYE" => "BYE",
            "NOTIFY" => "NOTIFY",
            "OPTIONS" => "OPTIONS",
            _ => "",
        };
        Self { branch, method }
    }
}

/// Either kind of transaction, for the one timer and clean-up path they share.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum TxKey {
    Server(ServerTxKey),
    Client(ClientTxKey),
}

/// A retransmitted request a server transaction absorbed.
pub(crate) struct Absorbed {
    pub(crate) call: Option<CallRef>,
    pub(crate) leg: LegId,
    /// Where the transaction answers (the request's original flow).
    pub(crate) flow: Flow,
    pub(crate) repeats: u32,
    /// The latest response, to send again, if the machine says so.
    pub(crate) resend: Option<Vec<u8>>,
}

/// What one transaction's event asks of its owner.
pub(crate) struct Fed {
    pub(crate) call: Option<CallRef>,
    pub(crate) leg: LegId,
    pub(crate) flow: Flow,
    pub(crate) effects: Vec<TxEffect>,
}

/// Running totals of the transaction layer since start, for the gateway's metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxCounters {
    /// Requests that matched a server transaction: the peer sent them again.
    pub retransmissions_received: u64,
    /// Requests and responses we sent again on a timer (Timers A, E, G).
    pub retransmissions_sent: u64,
    /// Transactions that ended without the peer's answer: no final response to our request
    /// (Timers B, F) or no ACK for our final response (Timer H).
    pub timeouts: u64,
}

impl TxCounters {
    fn count(&mut self, effects: &[TxEffect]) {
        for effect in effects {
            match effect {
                TxEffect::Transmit(_) => self.retransmissions_sent += 1,
                TxEffect::Terminated(TxEnd::Timeout | TxEnd::NoAck) => self.timeouts += 1,
                TxEffect::Terminated(TxEnd::Done) => {}
            }
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct TransactionTable {
    server: HashMap<ServerTxKey, ServerTxEntry>,
    client: HashMap<ClientTxKey, ClientTxEntry>,
    counters: TxCounters,
}

impl TransactionTable {
    pub(crate) fn len(&self) -> (usize, usize) {
        (self.server.len(), self.client.len())
    }

    pub(crate) fn counters(&self) -> TxCounters {
        self.counters
    }

    /// Adds a server transaction; an existing one under the key is kept.
    pub(crate) fn add_server(&mut self, key: ServerTxKey, entry: ServerTxEntry) {
        self.server.entry(key).or_insert(entry);
    }

    /// Replaces whatever is under the key (a new initial INVITE).
    pub(crate) fn put_server(&mut self, key: ServerTxKey, entry: ServerTxEntry) {
        self.server.insert(key, entry);
    }

    pub(crate) fn add_client(&mut self, key: ClientTxKey, entry: ClientTxEntry) {
        self.client.insert(key, entry);
    }

    /// A request matching a server transaction is a retransmission: counts it and returns
    /// what to resend. `None` when no transaction matches.
    pub(crate) fn absorb(&mut self, key: &ServerTxKey) -> Option<Absorbed> {
        let entry = self.server.get_mut(key)?;
        entry.repeats = entry.repeats.saturating_add(1);
        self.counters.retransmissions_received += 1;
        let resend = match &entry.tx {
            ServerTx::Invite(t) => t.on_invite_retransmission(),
            ServerTx::NonInvite(t) => t.on_retransmission(),
        };
        Some(Absorbed {
            call: entry.call,
            leg: entry.leg,
            flow: entry.flow,
            repeats: entry.repeats,
            resend,
        })
    }

    /// Passes a response to its server transaction; returns what to transmit, and where.
    pub(crate) fn respond(
        &mut self,
        now: Instant,
        key: &ServerTxKey,
        status: u16,
        bytes: Vec<u8>,
    ) -> Option<(Fed, Option<Vec<u8>>)> {
        let entry = self.server.get_mut(key)?;
        let out = match &mut entry.tx {
            ServerTx::Invite(t) => t.respond(now, status, bytes),
            ServerTx::NonInvite(t) => t.respond(now, status, bytes),
        };
        let fed = Fed {
            call: entry.call,
            leg: entry.leg,
            flow: entry.flow,
            effects: Vec::new(),
        };
        Some((fed, out))
    }

    /// The ACK for a 2xx arrived (or something proving it did): the INVITE server
    /// transaction stops repeating its 200.
    pub(crate) fn acked_2xx(&mut self, key: &ServerTxKey) {
        if let Some(entry) = self.server.get_mut(key)
            && let ServerTx::Invite(tx) = &mut entry.tx
        {
            tx.on_2xx_acked();
        }
    }

    /// An ACK for a failure response of ours: the INVITE server transaction takes it. Returns
    /// the call it belongs to, or `None` when no transaction awaits such an ACK.
    pub(crate) fn failure_ack(
        &mut self,
        now: Instant,
        key: &ServerTxKey,
    ) -> Option<Option<CallRef>> {
        let entry = self.server.get_mut(key)?;
        match &mut entry.tx {
            ServerTx::Invite(tx) if tx.awaits_failure_ack() => {
                tx.on_ack(now);
                Some(entry.call)
            }
            _ => None,
        }
    }

    /// The call of an INVITE server transaction, and whether it is still proceeding (no final
    /// response yet), for a CANCEL.
    pub(crate) fn cancel_target(&self, key: &ServerTxKey) -> Option<(Option<CallRef>, bool)> {
        self.server.get(key).map(|e| {
            let proceeding = matches!(&e.tx, ServerTx::Invite(t) if t.is_proceeding());
            (e.call, proceeding)
        })
    }

    /// A timer of a server transaction fired. The flag says whether it is the caller's
    /// initial INVITE (whose NoAck ends the call).
    pub(crate) fn server_timeout(
        &mut self,
        now: Instant,
        key: &ServerTxKey,
    ) -> Option<(Fed, bool)> {
        let entry = self.server.get_mut(key)?;
        let mut effects = Vec::new();
        match &mut entry.tx {
            ServerTx::Invite(t) => t.on_timeout(now, &mut effects),
            ServerTx::NonInvite(t) => t.on_timeout(now, &mut effects),
        }
        self.counters.count(&effects);
        let fed = Fed {
            call: entry.call,
            leg: entry.leg,
            flow: entry.flow,
            effects,
        };
        Some((fed, entry.initial_invite))
    }

    /// A timer of a client transaction fired.
    pub(crate) fn client_timeout(
        &mut self,
        now: Instant,
        key: &ClientTxKey,
    ) -> Option<(Fed, ClientPurpose)> {
        let entry = self.client.get_mut(key)?;
        let mut effects = Vec::new();
        match &mut entry.tx {
            ClientTx::Invite(t) => t.on_timeout(now, &mut effects),
            ClientTx::NonInvite(t) => t.on_timeout(now, &mut effects),
        }
        self.counters.count(&effects);
        let fed = Fed {
            call: Some(entry.call),
            leg: entry.leg,
            flow: entry.flow,
            effects,
        };
        Some((fed, entry.purpose))
    }

    /// A response to one of our requests. `ack` builds the ACK for a failure response of an
    /// INVITE (only called when one is due).
    pub(crate) fn client_response(
        &mut self,
        now: Instant,
        key: &ClientTxKey,
        status: u16,
        ack: impl FnOnce() -> Vec<u8>,
    ) -> Option<(Fed, ClientPurpose, ResponseVerdict)> {
        let entry = self.client.get_mut(key)?;
        let mut effects = Vec::new();
        let verdict = match &mut entry.tx {
            ClientTx::NonInvite(tx) => tx.on_response(now, status),
            ClientTx::Invite(tx) => {
                tx.on_response(now, status, Reliability::of(entry.flow), ack, &mut effects)
            }
        };
        let fed = Fed {
            call: Some(entry.call),
            leg: entry.leg,
            flow: entry.flow,
            effects,
        };
        Some((fed, entry.purpose, verdict))
    }

    /// Client transactions towards a peer whose transport failed (outbound flows have no
    /// connection id yet: matched by peer and transport).
    pub(crate) fn clients_on(&self, flow: Flow) -> Vec<ClientTxKey> {
        self.client
            .iter()
            .filter(|(_, e)| e.flow.remote == flow.remote && e.flow.transport == flow.transport)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Tells a client transaction its transport failed; returns its owner if that ended it.
    pub(crate) fn client_transport_error(
        &mut self,
        key: &ClientTxKey,
    ) -> Option<(CallRef, LegId, ClientPurpose)> {
        let entry = self.client.get_mut(key)?;
        let mut effects = Vec::new();
        match &mut entry.tx {
            ClientTx::Invite(t) => t.on_transport_error(&mut effects),
            ClientTx::NonInvite(t) => t.on_transport_error(&mut effects),
        }
        effects
            .iter()
            .any(|e| matches!(e, TxEffect::Terminated(_)))
            .then_some((entry.call, entry.leg, entry.purpose))
    }

    /// When the transaction needs waking next; a terminated one is removed (a server
    /// transaction is returned, for its count of absorbed retransmissions).
    pub(crate) fn settle(&mut self, key: &TxKey) -> (Option<Instant>, Option<ServerTxEntry>) {
        match key {
            TxKey::Server(k) => match self.server.get(k) {
                Some(e) if e.tx.is_terminated() => (None, self.server.remove(k)),
                Some(e) => (e.tx.next_deadline(), None),
                None => (None, None),
            },
            TxKey::Client(k) => match self.client.get(k) {
                Some(e) if e.tx.is_terminated() => {
                    self.client.remove(k);
                    (None, None)
                }
                Some(e) => (e.tx.next_deadline(), None),
                None => (None, None),
            },
        }
    }

    /// Drops a client transaction whatever its state (a cancelled INVITE never answered).
    pub(crate) fn forget_client(&mut self, key: &ClientTxKey) {
        self.client.remove(key);
    }
}
