//! Server transactions: INVITE (RFC 3261 §17.2.1 + RFC 6026 Accepted) and non-INVITE (§17.2.2).

use std::time::Instant;

use super::{Backoff, Reliability, TimerConfig, TxEffect, TxEnd};

/// INVITE server transaction. States carry only what is valid in them.
#[derive(Debug)]
pub struct ServerInviteTx {
    cfg: TimerConfig,
    reliability: Reliability,
    state: IstState,
}

#[derive(Debug)]
enum IstState {
    Proceeding {
        last_provisional: Option<Vec<u8>>,
    },
    /// A 3xx–6xx was sent; retransmit it (Timer G) until ACK or Timer H.
    Completed {
        response: Vec<u8>,
        timer_g: Option<Backoff>,
        timer_h: Instant,
    },
    /// ACK received; absorb ACK retransmissions until Timer I.
    Confirmed {
        timer_i: Instant,
    },
    /// A 2xx was sent (RFC 6026). Until the ACK, the 2xx is retransmitted with T1 doubling to
    /// T2 (RFC 3261 §13.3.1.4, our TU's duty, kept here so the call code stays simple).
    /// Timer L ends the state either way so late INVITE retransmissions stay absorbed.
    Accepted {
        response: Vec<u8>,
        retransmit: Option<Backoff>,
        timer_l: Instant,
        acked: bool,
    },
    Terminated,
}

/// The status class of a response the TU hands to a server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseClass {
    Provisional,
    Success,
    Failure,
}

impl ResponseClass {
    pub fn of(status: u16) -> Self {
        match status {
            100..=199 => Self::Provisional,
            200..=299 => Self::Success,
            _ => Self::Failure,
        }
    }
}

impl ServerInviteTx {
    pub fn new(cfg: TimerConfig, reliability: Reliability) -> Self {
        Self {
            cfg,
            reliability,
            state: IstState::Proceeding {
                last_provisional: None,
            },
        }
    }

    pub fn is_terminated(&self) -> bool {
        matches!(self.state, IstState::Terminated)
    }

    /// True until a final response has been sent: CANCEL still applies.
    pub fn is_proceeding(&self) -> bool {
        matches!(self.state, IstState::Proceeding { .. })
    }

    /// A 3xx–6xx was sent: an ACK with this transaction's key belongs to it. (An ACK for a
    /// 2xx is the dialog's, RFC 6026, even when a peer reuses the INVITE's branch.)
    pub fn awaits_failure_ack(&self) -> bool {
        matches!(self.state, IstState::Completed { .. })
    }

    /// The TU sends a response. Returns what to transmit (nothing if a final was already sent:
    /// a second final response is a TU bug we refuse rather than put on the wire).
    pub fn respond(&mut self, now: Instant, status: u16, bytes: Vec<u8>) -> Option<Vec<u8>> {
        let IstState::Proceeding { last_provisional } = &mut self.state else {
            return None;
        };
        let unreliable = self.reliability == Reliability::Unreliable;
        match ResponseClass::of(status) {
            ResponseClass::Provisional => {
                *last_provisional = Some(bytes.clone());
            }
            ResponseClass::Success => {
                self.state = IstState::Accepted {
                    response: bytes.clone(),
                    retransmit: Some(Backoff::start(now, self.cfg.t1, Some(self.cfg.t2))),
                    timer_l: now + self.cfg.transaction_timeout(),
                    acked: false,
                };
            }
            ResponseClass::Failure => {
                self.state = IstState::Completed {
                    response: bytes.clone(),
                    timer_g: unreliable
                        .then(|| Backoff::start(now, self.cfg.t1, Some(self.cfg.t2))),
                    timer_h: now + self.cfg.transaction_timeout(),
                };
            }
        }
        Some(bytes)
    }

    /// A retransmission of the INVITE arrived: repeat our latest response, if any.
    pub fn on_invite_retransmission(&self) -> Option<Vec<u8>> {
        match &self.state {
            IstState::Proceeding { last_provisional } => last_provisional.clone(),
            IstState::Completed { response, .. } => Some(response.clone()),
            IstState::Accepted {
                response, acked, ..
            } => (!acked).then(|| response.clone()),
            IstState::Confirmed { .. } | IstState::Terminated => None,
        }
    }

    /// ACK for a non-2xx final response (same branch).
    pub fn on_ack(&mut self, now: Instant) {
        if let IstState::Completed { .. } = self.state {
            self.state = match self.reliability {
                Reliability::Unreliable => IstState::Confirmed {
                    timer_i: now + self.cfg.t4,
                },
                Reliability::Reliable => IstState::Terminated,
            };
        }
    }

    /// The dialog saw the ACK for our 2xx: stop retransmitting it.
    pub fn on_2xx_acked(&mut self) {
        if let IstState::Accepted {
            retransmit, acked, ..
        } = &mut self.state
        {
            *acked = true;
            *retransmit = None;
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            IstState::Proceeding { .. } | IstState::Terminated => None,
            IstState::Completed {
                timer_g, timer_h, ..
            } => Some(timer_g.map_or(*timer_h, |g| g.at.min(*timer_h))),
            IstState::Confirmed { timer_i } => Some(*timer_i),
            IstState::Accepted {
                retransmit,
                timer_l,
                ..
            } => Some(retransmit.map_or(*timer_l, |r| r.at.min(*timer_l))),
        }
    }

    pub fn on_timeout(&mut self, now: Instant, effects: &mut Vec<TxEffect>) {
        match &mut self.state {
            IstState::Proceeding { .. } | IstState::Terminated => {}
            IstState::Completed {
                response,
                timer_g,
                timer_h,
            } => {
                if now >= *timer_h {
                    self.state = IstState::Terminated;
                    effects.push(TxEffect::Terminated(TxEnd::NoAck));
                    return;
                }
                if let Some(g) = timer_g
                    && now >= g.at
                {
                    effects.push(TxEffect::Transmit(response.clone()));
                    g.advance();
                }
            }
            IstState::Confirmed { timer_i } => {
                if now >= *timer_i {
                    self.state = IstState::Terminated;
                    effects.push(TxEffect::Terminated(TxEnd::Done));
                }
            }
            IstState::Accepted {
                response,
                retransmit,
                timer_l,
                acked,
            } => {
                if now >= *timer_l {
                    let end = if *acked { TxEnd::Done } else { TxEnd::NoAck };
                    self.state = IstState::Terminated;
                    effects.push(TxEffect::Terminated(end));
                    return;
                }
                if let Some(r) = retransmit
                    && now >= r.at
                {
                    effects.push(TxEffect::Transmit(response.clone()));
                    r.advance();
                }
            }
        }
    }
}

/// Non-INVITE server transaction (§17.2.2).
#[derive(Debug)]
pub struct ServerNonInviteTx {
    cfg: TimerConfig,
    reliability: Reliability,
    state: NistState,
}

#[derive(Debug)]
enum NistState {
    Trying,
    Proceeding {
        provisional: Vec<u8>,
    },
    /// Final sent; absorb request retransmissions until Timer J.
    Completed {
        response: Vec<u8>,
        timer_j: Instant,
    },
    Terminated,
}

impl ServerNonInviteTx {
    pub fn new(cfg: TimerConfig, reliability: Reliability) -> Self {
        Self {
            cfg,
            reliability,
            state: NistState::Trying,
        }
    }

    pub fn is_terminated(&self) -> bool {
        matches!(self.state, NistState::Terminated)
    }

    pub fn has_final(&self) -> bool {
        matches!(
            self.state,
            NistState::Completed { .. } | NistState::Terminated
        )
    }

    pub fn respond(&mut self, now: Instant, status: u16, bytes: Vec<u8>) -> Option<Vec<u8>> {
        match (&self.state, ResponseClass::of(status)) {
            (NistState::Completed { .. } | NistState::Terminated, _) => None,
            (_, ResponseClass::Provisional) => {
                self.state = NistState::Proceeding {
                    provisional: bytes.clone(),
                };
                Some(bytes)
            }
            (_, _) => {
                let linger = match self.reliability {
                    Reliability::Unreliable => self.cfg.transaction_timeout(),
                    Reliability::Reliable => std::time::Duration::ZERO,
                };
                self.state = NistState::Completed {
                    response: bytes.clone(),
                    timer_j: now + linger,
                };
                Some(bytes)
            }
        }
    }

    pub fn on_retransmission(&self) -> Option<Vec<u8>> {
        match &self.state {
            NistState::Proceeding { provisional } => Some(provisional.clone()),
            NistState::Completed { response, .. } => Some(response.clone()),
            NistState::Trying | NistState::Terminated => None,
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            NistState::Completed { timer_j, .. } => Some(*timer_j),
            _ => None,
        }
    }

    pub fn on_timeout(&mut self, now: Instant, effects: &mut Vec<TxEffect>) {
        if let NistState::Completed { timer_j, .. } = self.state
            && now >= timer_j
        {
            self.state = NistState::Terminated;
            effects.push(TxEffect::Terminated(TxEnd::Done));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
    use super::*;
    use std::time::Duration;

    fn run_until(
        tx: &mut ServerInviteTx,
        start: Instant,
        end: Duration,
    ) -> (Vec<Duration>, Option<(Duration, TxEnd)>) {
        let mut sends = Vec::new();
        let mut fx = Vec::new();
        while let Some(at) = tx.next_deadline() {
            if at > start + end {
                break;
            }
            tx.on_timeout(at, &mut fx);
            for e in fx.drain(..) {
                match e {
                    TxEffect::Transmit(_) => sends.push(at - start),
                    TxEffect::Terminated(end) => return (sends, Some((at - start, end))),
                }
            }
        }
        (sends, None)
    }

    #[test]
    fn a_failure_is_retransmitted_g_then_h_gives_no_ack() {
        let t0 = Instant::now();
        let mut tx = ServerInviteTx::new(TimerConfig::default(), Reliability::Unreliable);
        tx.respond(t0, 486, b"486".to_vec());
        let (sends, end) = run_until(&mut tx, t0, Duration::from_secs(60));
        let ms: Vec<u128> = sends.iter().map(Duration::as_millis).collect();
        // G: 0.5, 1.5, 3.5, 7.5, then every 4 s (T2) until H at 32 s.
        assert_eq!(&ms[..5], &[500, 1500, 3500, 7500, 11500]);
        assert!(ms.iter().all(|&m| m < 32_000));
        assert_eq!(end, Some((Duration::from_secs(32), TxEnd::NoAck)));
    }

    #[test]
    fn ack_stops_g_and_timer_i_ends_quietly() {
        let t0 = Instant::now();
        let mut tx = ServerInviteTx::new(TimerConfig::default(), Reliability::Unreliable);
        tx.respond(t0, 487, b"487".to_vec());
        tx.on_ack(t0 + Duration::from_millis(100));
        let (sends, end) = run_until(&mut tx, t0, Duration::from_secs(60));
        assert!(sends.is_empty());
        assert_eq!(end, Some((Duration::from_millis(5100), TxEnd::Done)));
    }

    #[test]
    fn a_2xx_is_retransmitted_until_acked() {
        let t0 = Instant::now();
        let mut tx = ServerInviteTx::new(TimerConfig::default(), Reliability::Reliable);
        tx.respond(t0, 200, b"200".to_vec());
        let mut fx = Vec::new();
        tx.on_timeout(t0 + Duration::from_millis(500), &mut fx);
        assert_eq!(fx, vec![TxEffect::Transmit(b"200".to_vec())]);
        tx.on_2xx_acked();
        assert_eq!(tx.on_invite_retransmission(), None);
        let (sends, end) = run_until(&mut tx, t0, Duration::from_secs(60));
        assert!(sends.is_empty());
        assert_eq!(end, Some((Duration::from_secs(32), TxEnd::Done)));
    }

    #[test]
    fn an_unacked_2xx_ends_with_no_ack_after_64_t1() {
        let t0 = Instant::now();
        let mut tx = ServerInviteTx::new(TimerConfig::default(), Reliability::Unreliable);
        tx.respond(t0, 200, b"200".to_vec());
        let (sends, end) = run_until(&mut tx, t0, Duration::from_secs(60));
        assert_eq!(sends.first(), Some(&Duration::from_millis(500)));
        assert_eq!(end, Some((Duration::from_secs(32), TxEnd::NoAck)));
    }

    #[test]
    fn a_second_final_response_is_refused() {
        let t0 = Instant::now();
        let mut tx = ServerInviteTx::new(TimerConfig::default(), Reliability::Unreliable);
        assert!(tx.respond(t0, 200, b"200".to_vec()).is_some());
        assert!(tx.respond(t0, 487, b"487".to_vec()).is_none());
    }

    #[test]
    fn non_invite_absorbs_retransmissions_until_j() {
        let t0 = Instant::now();
        let mut tx = ServerNonInviteTx::new(TimerConfig::default(), Reliability::Unreliable);
        assert_eq!(tx.on_retransmission(), None);
        tx.respond(t0, 200, b"200".to_vec());
        assert_eq!(tx.on_retransmission(), Some(b"200".to_vec()));
        assert_eq!(tx.next_deadline(), Some(t0 + Duration::from_secs(32)));
        let mut fx = Vec::new();
        tx.on_timeout(t0 + Duration::from_secs(32), &mut fx);
        assert!(tx.is_terminated());
    }
}
