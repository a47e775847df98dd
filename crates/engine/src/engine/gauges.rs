//! What the engine holds right now and has counted, read by the gateway's metrics: calls by
//! phase, queues by route, the transaction layer's totals. Read-only views; nothing here
//! changes a call.

use std::collections::BTreeMap;

use super::Engine;
use crate::call::CallState;
use crate::transaction::table::TxCounters;

/// Where a call is, as an operator's dashboard shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallPhase {
    /// Not answered yet (100/180 sent).
    Ringing,
    /// Answered and in the IVR (no agency chosen yet).
    Ivr,
    /// An agency is being rung (or the next one is about to be).
    AgencyRinging,
    /// Waiting in a route's queue for a free target.
    Queued,
    /// Bridged to an agency.
    Talking,
    /// We hung up and wait for the BYE's answer.
    Ending,
}

impl CallPhase {
    pub const ALL: [CallPhase; 6] = [
        CallPhase::Ringing,
        CallPhase::Ivr,
        CallPhase::AgencyRinging,
        CallPhase::Queued,
        CallPhase::Talking,
        CallPhase::Ending,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallPhase::Ringing => "ringing",
            CallPhase::Ivr => "ivr",
            CallPhase::AgencyRinging => "agency_ringing",
            CallPhase::Queued => "queued",
            CallPhase::Talking => "talking",
            CallPhase::Ending => "ending",
        }
    }
}

/// The calls by phase and the queues by route, at one moment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CallGauges {
    pub by_phase: BTreeMap<CallPhase, usize>,
    /// Callers waiting in each route's queue (routes with nobody waiting are absent).
    pub queued_by_route: BTreeMap<String, usize>,
}

impl Engine {
    /// The live calls by phase and the queues by route, now (one pass over the calls).
    pub fn call_gauges(&self) -> CallGauges {
        let mut gauges = CallGauges::default();
        // Calls over and logged (kept while agency legs are torn down) are not counted.
        for call in self
            .calls
            .values()
            .filter(|c| !matches!(c.state, CallState::Ended))
        {
            let phase = match (&call.state, &call.agency) {
                (CallState::HangingUp { .. }, _) => CallPhase::Ending,
                (CallState::Ringing { .. }, _) => CallPhase::Ringing,
                (_, None) => CallPhase::Ivr,
                (_, Some(agency)) if agency.connected.is_some() => CallPhase::Talking,
                (_, Some(agency)) if agency.queued.is_some() => {
                    *gauges
                        .queued_by_route
                        .entry(agency.route_id.as_str().to_owned())
                        .or_default() += 1;
                    CallPhase::Queued
                }
                (_, Some(_)) => CallPhase::AgencyRinging,
            };
            *gauges.by_phase.entry(phase).or_default() += 1;
        }
        gauges
    }

    /// The transaction layer's totals since start.
    pub fn tx_counters(&self) -> TxCounters {
        self.fx.txs.counters()
    }
}
