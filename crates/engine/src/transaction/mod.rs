//! RFC 3261 §17 transactions, one state machine per RFC machine (with RFC 6026's Accepted
//! state for 2xx to INVITE). Time is an argument; each machine says when it next needs to be
//! woken (`next_deadline`) and the engine keeps one timer queue for all of them.

pub mod client;
pub mod server;
pub mod table;

use std::time::{Duration, Instant};

use crate::ids::Branch;
use crate::sip::parse::Inbound;

/// RFC 3261 timer base values (§17.1.1.1, Table 4). Configurable because some carrier
/// networks run larger T1 on satellite links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate.
    pub t1: Duration,
    /// Cap on non-INVITE and 2xx retransmit intervals.
    pub t2: Duration,
    /// How long a message may stay in the network.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H, J, L, M.
    pub fn transaction_timeout(&self) -> Duration {
        self.t1 * 64
    }
}

/// Whether the transport retransmits for us (TCP) or we must (UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reliability {
    Unreliable,
    Reliable,
}

impl Reliability {
    pub fn of(flow: crate::net::Flow) -> Self {
        match flow.transport {
            crate::net::Transport::Udp => Reliability::Unreliable,
            crate::net::Transport::Tcp | crate::net::Transport::Tls => Reliability::Reliable,
        }
    }
}

/// A retransmission timer: fires at `at`, then again after a doubled interval (capped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub at: Instant,
    interval: Duration,
    cap: Option<Duration>,
}

impl Backoff {
    pub fn start(now: Instant, first: Duration, cap: Option<Duration>) -> Self {
        Self {
            at: now + first,
            interval: first,
            cap,
        }
    }

    /// Advances to the next firing after the current one.
    pub fn advance(&mut self) {
        let doubled = self.interval * 2;
        self.interval = match self.cap {
            Some(cap) => doubled.min(cap),
            None => doubled,
        };
        self.at += self.interval;
    }
}

/// The key a request is matched to its server transaction by (RFC 3261 §17.2.3), with the
/// RFC 2543 fallback for branches without the magic cookie.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServerTxKey {
    Rfc3261 {
        branch: Branch,
        sent_by: String,
        /// INVITE for INVITE and ACK; otherwise the request method.
        method: String,
    },
    Rfc2543 {
        call_id: String,
        from_tag: Option<String>,
        cseq: u32,
        top_via: String,
        method: String,
    },
}

impl ServerTxKey {
    /// The key of the transaction this request belongs to. ACK maps to its INVITE; CANCEL has
    /// its own transaction (use [`ServerTxKey::cancelled_invite`] to find the INVITE).
    pub fn of(msg: &Inbound) -> Self {
        let method = if msg.cseq_method == "ACK" {
            "INVITE".to_owned()
        } else {
            msg.cseq_method.clone()
        };
        Self::with_method(msg, method)
    }

    /// The method of the transaction's request (INVITE for an ACK).
    pub fn method(&self) -> &str {
        match self {
            ServerTxKey::Rfc3261 { method, .. } | ServerTxKey::Rfc2543 { method, .. } => method,
        }
    }

    /// The INVITE transaction a CANCEL targets (same branch, method INVITE).
    pub fn cancelled_invite(msg: &Inbound) -> Self {
        Self::with_method(msg, "INVITE".to_owned())
    }

    fn with_method(msg: &Inbound, method: String) -> Self {
        match &msg.top_via.branch {
            Some(branch) if msg.top_via.has_rfc3261_branch() => ServerTxKey::Rfc3261 {
                branch: branch.clone(),
                sent_by: msg.top_via.sent_by.to_ascii_lowercase(),
                method,
            },
            _ => ServerTxKey::Rfc2543 {
                call_id: msg.call_id.0.clone(),
                from_tag: msg.from_tag.as_ref().map(|t| t.0.clone()),
                cseq: msg.cseq,
                top_via: msg.top_via.raw.clone(),
                method,
            },
        }
    }
}

/// What a transaction asks of the engine after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEffect {
    /// Put these bytes on the wire towards the transaction's peer.
    Transmit(Vec<u8>),
    /// The transaction ended; `reason` says whether the TU must hear about it.
    Terminated(TxEnd),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxEnd {
    /// Normal end: nothing for the TU.
    Done,
    /// Server INVITE: no ACK for our final response (Timer H / Timer L for 2xx).
    NoAck,
    /// Client: no final response (Timer B / Timer F).
    Timeout,
}
