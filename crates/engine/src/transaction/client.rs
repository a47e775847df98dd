//! Client transactions: INVITE (RFC 3261 §17.1.1 + RFC 6026 Accepted) and non-INVITE
//! (§17.1.2). Used for our own BYE towards the caller and for the outbound agency legs.

use std::time::{Duration, Instant};

use super::server::ResponseClass;
use super::{Backoff, Reliability, TimerConfig, TxEffect, TxEnd};

/// What the engine should do with a response that matched a client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseVerdict {
    /// New information for the transaction user.
    PassToTu,
    /// A retransmission the transaction has already dealt with.
    Absorb,
}

#[derive(Debug)]
pub struct ClientInviteTx {
    cfg: TimerConfig,
    request: Vec<u8>,
    state: IctState,
}

#[derive(Debug)]
enum IctState {
    Calling {
        timer_a: Option<Backoff>,
        timer_b: Instant,
    },
    Proceeding,
    /// A failure arrived and was ACKed; re-ACK its retransmissions until Timer D.
    Completed {
        ack: Vec<u8>,
        timer_d: Instant,
    },
    /// A 2xx arrived (RFC 6026): further 2xx go to the TU (it ACKs them) until Timer M.
    Accepted {
        timer_m: Instant,
    },
    Terminated,
}

impl ClientInviteTx {
    /// Starts the transaction; the caller transmits `request` once now.
    pub fn new(now: Instant, cfg: TimerConfig, reliability: Reliability, request: Vec<u8>) -> Self {
        let timer_a = (reliability == Reliability::Unreliable).then(|| {
            // Timer A doubles without a cap (§17.1.1.2); Timer B bounds it.
            Backoff::start(now, cfg.t1, None)
        });
        Self {
            cfg,
            request,
            state: IctState::Calling {
                timer_a,
                timer_b: now + cfg.transaction_timeout(),
            },
        }
    }

    pub fn is_terminated(&self) -> bool {
        matches!(self.state, IctState::Terminated)
    }

    /// True while no final response has arrived: the INVITE may still be CANCELled.
    pub fn is_pending(&self) -> bool {
        matches!(self.state, IctState::Calling { .. } | IctState::Proceeding)
    }

    /// A response matched this transaction. For a 3xx–6xx, `ack` builds the ACK (the
    /// transaction sends it, §17.1.1.3); reliable transports end at once.
    pub fn on_response(
        &mut self,
        now: Instant,
        status: u16,
        reliability: Reliability,
        ack: impl FnOnce() -> Vec<u8>,
        effects: &mut Vec<TxEffect>,
    ) -> ResponseVerdict {
        match (&self.state, ResponseClass::of(status)) {
            (IctState::Calling { .. } | IctState::Proceeding, ResponseClass::Provisional) => {
                self.state = IctState::Proceeding;
                ResponseVerdict::PassToTu
            }
            (IctState::Calling { .. } | IctState::Proceeding, ResponseClass::Success) => {
                self.state = IctState::Accepted {
                    timer_m: now + self.cfg.transaction_timeout(),
                };
                ResponseVerdict::PassToTu
            }
            (IctState::Accepted { .. }, ResponseClass::Success) => ResponseVerdict::PassToTu,
            (IctState::Calling { .. } | IctState::Proceeding, ResponseClass::Failure) => {
                let ack = ack();
                effects.push(TxEffect::Transmit(ack.clone()));
                let linger = match reliability {
                    Reliability::Unreliable => Duration::from_secs(32).max(self.cfg.t1 * 64),
                    Reliability::Reliable => Duration::ZERO,
                };
                self.state = IctState::Completed {
                    ack,
                    timer_d: now + linger,
                };
                ResponseVerdict::PassToTu
            }
            (IctState::Completed { ack, .. }, ResponseClass::Failure) => {
                effects.push(TxEffect::Transmit(ack.clone()));
                ResponseVerdict::Absorb
            }
            _ => ResponseVerdict::Absorb,
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            IctState::Calling { timer_a, timer_b } => {
                Some(timer_a.map_or(*timer_b, |a| a.at.min(*timer_b)))
            }
            IctState::Completed { timer_d, .. } => Some(*timer_d),
            IctState::Accepted { timer_m } => Some(*timer_m),
            IctState::Proceeding | IctState::Terminated => None,
        }
    }

    pub fn on_timeout(&mut self, now: Instant, effects: &mut Vec<TxEffect>) {
        match &mut self.state {
            IctState::Calling { timer_a, timer_b } => {
                if now >= *timer_b {
                    self.state = IctState::Terminated;
                    effects.push(TxEffect::Terminated(TxEnd::Timeout));
                    return;
                }
                if let Some(a) = timer_a
                    && now >= a.at
                {
                    effects.push(TxEffect::Transmit(self.request.clone()));
                    a.advance();
                }
            }
            IctState::Completed { timer_d, .. } => {
                if now >= *timer_d {
                    self.state = IctState::Terminated;
                    effects.push(TxEffect::Terminated(TxEnd::Done));
                }
            }
            IctState::Accepted { timer_m } => {
                if now >= *timer_m {
                    self.state = IctState::Terminated;
                    effects.push(TxEffect::Terminated(TxEnd::Done));
                }
            }
            IctState::Proceeding | IctState::Terminated => {}
        }
    }

    /// The transport could not deliver the request: the transaction fails at once (§17.1.4).
    pub fn on_transport_error(&mut self, effects: &mut Vec<TxEffect>) {
        if !self.is_terminated() {
            self.state = IctState::Terminated;
            effects.push(TxEffect::Terminated(TxEnd::Timeout));
        }
    }
}

#[derive(Debug)]
pub struct ClientNonInviteTx {
    cfg: TimerConfig,
    reliability: Reliability,
    request: Vec<u8>,
    state: NictState,
}

#[derive(Debug)]
enum NictState {
    /// Trying and Proceeding differ only in Timer E's interval, which `Backoff` carries.
    Waiting {
        timer_e: Option<Backoff>,
        timer_f: Instant,
        provisional_seen: bool,
    },
    Completed {
        timer_k: Instant,
    },
    Terminated,
}

impl ClientNonInviteTx {
    pub fn new(now: Instant, cfg: TimerConfig, reliability: Reliability, request: Vec<u8>) -> Self {
        let timer_e = (reliability == Reliability::Unreliable)
            .then(|| Backoff::start(now, cfg.t1, Some(cfg.t2)));
        Self {
            cfg,
            reliability,
            request,
            state: NictState::Waiting {
                timer_e,
                timer_f: now + cfg.transaction_timeout(),
                provisional_seen: false,
            },
        }
    }

    pub fn is_terminated(&self) -> bool {
        matches!(self.state, NictState::Terminated)
    }

    pub fn on_response(&mut self, now: Instant, status: u16) -> ResponseVerdict {
        let NictState::Waiting {
            timer_e,
            provisional_seen,
            ..
        } = &mut self.state
        else {
            return ResponseVerdict::Absorb;
        };
        if ResponseClass::of(status) == ResponseClass::Provisional {
            if !*provisional_seen {
                *provisional_seen = true;
                // In Proceeding, Timer E fires every T2 (§17.1.2.2).
                if let Some(e) = timer_e {
                    *e = Backoff::start(now, self.cfg.t2, Some(self.cfg.t2));
                }
            }
            return ResponseVerdict::PassToTu;
        }
        let linger = match self.reliability {
            Reliability::Unreliable => self.cfg.t4,
            Reliability::Reliable => Duration::ZERO,
        };
        self.state = NictState::Completed {
            timer_k: now + linger,
        };
        ResponseVerdict::PassToTu
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            NictState::Waiting {
                timer_e, timer_f, ..
            } => Some(timer_e.map_or(*timer_f, |e| e.at.min(*timer_f))),
            NictState::Completed { timer_k } => Some(*timer_k),
            NictState::Terminated => None,
        }
    }

    pub fn on_timeout(&mut self, now: Instant, effects: &mut Vec<TxEffect>) {
        match &mut self.state {
            NictState::Waiting {
                timer_e, timer_f, ..
            } => {
                if now >= *timer_f {
                    self.state = NictState::Terminated;
                    effects.push(TxEffect::Terminated(TxEnd::Timeout));
                    return;
                }
                if let Some(e) = timer_e
                    && now >= e.at
                {
                    effects.push(TxEffect::Transmit(self.request.clone()));
                    e.advance();
                }
            }
            NictState::Completed { timer_k } => {
                if now >= *timer_k {
                    self.state = NictState::Terminated;
                    effects.push(TxEffect::Terminated(TxEnd::Done));
                }
            }
            NictState::Terminated => {}
        }
    }

    pub fn on_transport_error(&mut self, effects: &mut Vec<TxEffect>) {
        if !self.is_terminated() {
            self.state = NictState::Terminated;
            effects.push(TxEffect::Terminated(TxEnd::Timeout));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
    use super::*;

    fn drive(
        next: impl Fn() -> Option<Instant>,
        mut tick: impl FnMut(Instant, &mut Vec<TxEffect>),
        t0: Instant,
    ) -> (Vec<u128>, Option<(u128, TxEnd)>) {
        let mut sends = Vec::new();
        let mut fx = Vec::new();
        while let Some(at) = next() {
            tick(at, &mut fx);
            for e in fx.drain(..) {
                match e {
                    TxEffect::Transmit(_) => sends.push((at - t0).as_millis()),
                    TxEffect::Terminated(end) => {
                        return (sends, Some(((at - t0).as_millis(), end)));
                    }
                }
            }
        }
        (sends, None)
    }

    #[test]
    fn invite_timer_a_doubles_until_timer_b() {
        let t0 = Instant::now();
        let tx = std::cell::RefCell::new(ClientInviteTx::new(
            t0,
            TimerConfig::default(),
            Reliability::Unreliable,
            b"INVITE".to_vec(),
        ));
        let (sends, end) = drive(
            || tx.borrow().next_deadline(),
            |at, fx| tx.borrow_mut().on_timeout(at, fx),
            t0,
        );
        assert_eq!(sends, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(end, Some((32_000, TxEnd::Timeout)));
    }

    #[test]
    fn a_failure_is_acked_and_retransmissions_reacked() {
        let t0 = Instant::now();
        let mut tx = ClientInviteTx::new(
            t0,
            TimerConfig::default(),
            Reliability::Unreliable,
            b"INVITE".to_vec(),
        );
        let mut fx = Vec::new();
        let v = tx.on_response(
            t0,
            503,
            Reliability::Unreliable,
            || b"ACK".to_vec(),
            &mut fx,
        );
        assert_eq!(v, ResponseVerdict::PassToTu);
        let v = tx.on_response(
            t0,
            503,
            Reliability::Unreliable,
            || b"ACK".to_vec(),
            &mut fx,
        );
        assert_eq!(v, ResponseVerdict::Absorb);
        assert_eq!(fx.len(), 2);
        assert!(!tx.is_pending());
    }

    #[test]
    fn non_invite_e_caps_at_t2_and_f_times_out() {
        let t0 = Instant::now();
        let tx = std::cell::RefCell::new(ClientNonInviteTx::new(
            t0,
            TimerConfig::default(),
            Reliability::Unreliable,
            b"BYE".to_vec(),
        ));
        let (sends, end) = drive(
            || tx.borrow().next_deadline(),
            |at, fx| tx.borrow_mut().on_timeout(at, fx),
            t0,
        );
        assert_eq!(&sends[..5], &[500, 1500, 3500, 7500, 11500]);
        assert_eq!(end, Some((32_000, TxEnd::Timeout)));
    }

    #[test]
    fn non_invite_final_then_timer_k() {
        let t0 = Instant::now();
        let mut tx = ClientNonInviteTx::new(
            t0,
            TimerConfig::default(),
            Reliability::Unreliable,
            b"BYE".to_vec(),
        );
        assert_eq!(tx.on_response(t0, 200), ResponseVerdict::PassToTu);
        assert_eq!(tx.on_response(t0, 200), ResponseVerdict::Absorb);
        assert_eq!(tx.next_deadline(), Some(t0 + Duration::from_secs(5)));
    }
}
