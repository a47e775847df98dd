//! What the engine holds right now and has counted, read by the gateway's metrics: calls by
//! phase, queues by route, the transaction layer's totals. Read-only views; nothing here
//! changes a call.

use std::collections::BTreeMap;

use super::Engine;
use crate::agency::LegState;
use crate::call::CallState;
use crate::ids::CallRef;
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

/// One call in progress, as the supervisors' console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveCall {
    pub call: CallRef,
    pub phase: CallPhase,
    /// The route the call is on now (after the IVR chose one).
    pub route: Option<String>,
    /// Its place in the route's queue, 1 = next.
    pub queue_position: Option<usize>,
    /// The agency targets being rung, or the one on the line (`Talking`).
    pub agencies: Vec<String>,
}

impl Engine {
    /// Every call in progress with its phase, route, queue place and agencies (one pass).
    pub fn live_calls(&self) -> Vec<LiveCall> {
        let mut live: Vec<LiveCall> = self
            .calls
            .values()
            .filter(|c| !matches!(c.state, CallState::Ended))
            .map(|call| {
                let agency = call.agency.as_ref();
                let phase = phase_of(&call.state, agency);
                let agencies = match agency {
                    Some(a) => match a.connected.and_then(|n| a.legs.get(&n)) {
                        Some(leg) => vec![leg.target.uri.as_str().to_owned()],
                        None => a
                            .legs
                            .values()
                            .filter(|l| {
                                matches!(l.state, LegState::Allocating | LegState::Calling { .. })
                            })
                            .map(|l| l.target.uri.as_str().to_owned())
                            .collect(),
                    },
                    None => Vec::new(),
                };
                LiveCall {
                    call: call.call_ref,
                    phase,
                    route: agency.map(|a| a.route_id.as_str().to_owned()),
                    queue_position: agency.and_then(|a| {
                        a.queued.as_ref()?;
                        self.fx.queues.get(&a.route_id)?.position(call.call_ref)
                    }),
                    agencies,
                }
            })
            .collect();
        live.sort_by_key(|c| c.call);
        live
    }

    /// The live calls by phase and the queues by route, now (one pass over the calls).
    pub fn call_gauges(&self) -> CallGauges {
        let mut gauges = CallGauges::default();
        // Calls over and logged (kept while agency legs are torn down) are not counted.
        for call in self
            .calls
            .values()
            .filter(|c| !matches!(c.state, CallState::Ended))
        {
            let phase = phase_of(&call.state, call.agency.as_ref());
            if let (CallPhase::Queued, Some(agency)) = (phase, &call.agency) {
                *gauges
                    .queued_by_route
                    .entry(agency.route_id.as_str().to_owned())
                    .or_default() += 1;
            }
            *gauges.by_phase.entry(phase).or_default() += 1;
        }
        gauges
    }

    /// The transaction layer's totals since start.
    pub fn tx_counters(&self) -> TxCounters {
        self.fx.txs.counters()
    }
}

/// Where a call is: from its state and its agency side.
fn phase_of(state: &CallState, agency: Option<&crate::agency::AgencySide>) -> CallPhase {
    match (state, agency) {
        (CallState::HangingUp { .. }, _) => CallPhase::Ending,
        (CallState::Ringing { .. }, _) => CallPhase::Ringing,
        (_, None) => CallPhase::Ivr,
        (_, Some(agency)) if agency.connected.is_some() => CallPhase::Talking,
        (_, Some(agency)) if agency.queued.is_some() => CallPhase::Queued,
        (_, Some(_)) => CallPhase::AgencyRinging,
    }
}
