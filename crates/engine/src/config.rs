//! What the shell configures the engine with.

use std::sync::Arc;
use std::time::Duration;

use siaga_location::{CellTable, DefaultLocation};

use crate::noncall::NonCallLimits;
use crate::source_limits::Trusted;
use crate::transaction::TimerConfig;

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
    /// The load balancers in front of this node (Kamailio's dispatcher): while the call log
    /// or the recordings cannot be written, their OPTIONS probes get 503 so they send new
    /// calls to another node. Everyone else (a carrier's SBC with no other node to choose)
    /// still gets 200: a node with a failing disk answers 112 better than none.
    pub load_balancers: Trusted,
    /// Probing of callers whose RTP stopped (a lost BYE must not keep a call up for hours).
    pub silent_caller_probe: SilentCallerProbe,
    /// Whether INFO-level console lines may name the caller (personal data; off by default).
    pub log_personal_data: bool,
}

/// How a call whose caller sends no RTP is checked. The media layer's timeout starts it: the
/// caller gets an in-dialog OPTIONS; a 481 or 408, or no answer at all, while still silent,
/// ends the call as `caller_lost`. Any other answer keeps it, probed again every `reprobe`
/// while the silence lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SilentCallerProbe {
    /// `None` turns probing off (a silent call then lasts until BYE or the maximum duration).
    pub reprobe: Option<Duration>,
}

impl Default for SilentCallerProbe {
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
            load_balancers: Trusted::default(),
            silent_caller_probe: SilentCallerProbe::default(),
            log_personal_data: false,
        }
    }
}
