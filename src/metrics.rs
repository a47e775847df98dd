//! Prometheus metrics (`/metrics` on the HTTP listener): what the gateway does, in the names
//! and units Prometheus expects (`siaga_` prefix, `_total` counters, seconds, bytes).
//!
//! The engine is sans-IO, so the shell measures: it watches the engine's log records as they
//! are drained (calls started, answered, ended; agency attempts and answer times; queue
//! waits), counts SIP messages at the transport, reads the engine's gauges and transaction
//! totals once a second, and the media reactors, the recorder and the call-log writer count
//! their own work. Labels are bounded: call kinds, end reasons, the dialplan's routes and
//! targets, a fixed list of SIP methods, status codes.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use siaga_engine::Engine;
use siaga_engine::ids::CallRef;
use siaga_engine::io::LogRecord;
use siaga_engine::timeline::CallEventKind;

/// Buckets for times a person waits (answer, queue): 0.5 s to 2 min.
const WAIT_BUCKETS: &[f64] = &[0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0];
/// Buckets for the relay's added delay: 0.1 ms to 50 ms (see `media::reactor`).
pub const RELAY_DELAY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
];
/// Buckets for a call-log batch write: 1 ms to 5 s.
const WRITE_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// The process's metrics registry, rendered on each scrape.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

static INSTALLED: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

impl Metrics {
    /// Installs the process-wide recorder (once; later calls share it). `None` if another
    /// recorder was installed first.
    pub fn install() -> Option<Metrics> {
        let handle = INSTALLED.get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let builder = [
                ("siaga_agency_answer_seconds", WAIT_BUCKETS),
                ("siaga_queue_wait_seconds", WAIT_BUCKETS),
                ("siaga_rtp_relay_delay_seconds", RELAY_DELAY_BUCKETS),
                ("siaga_calllog_write_seconds", WRITE_BUCKETS),
            ]
            .into_iter()
            .try_fold(builder, |b, (name, buckets)| {
                b.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
            });
            let handle = builder.ok()?.install_recorder().ok()?;
            describe();
            register_zeroes();
            Some(handle)
        });
        handle.clone().map(|handle| Metrics { handle })
    }

    /// The text exposition of every metric, with the process figures read now.
    pub fn render(&self) -> String {
        process_metrics();
        self.handle.run_upkeep();
        self.handle.render()
    }
}

fn describe() {
    describe_counter!("siaga_calls_started_total", "Calls accepted, by kind");
    describe_counter!(
        "siaga_calls_answered_total",
        "Calls answered by the gateway, by kind"
    );
    describe_counter!(
        "siaga_calls_ended_total",
        "Calls ended, by kind, first route and end reason"
    );
    describe_gauge!("siaga_calls_active", "Calls now, by phase");
    describe_gauge!("siaga_queue_length", "Callers waiting in a route's queue");
    describe_histogram!(
        "siaga_queue_wait_seconds",
        metrics::Unit::Seconds,
        "Time a caller waited in a route's queue"
    );
    describe_counter!(
        "siaga_agency_attempts_total",
        "Agency legs, by route, target and outcome"
    );
    describe_histogram!(
        "siaga_agency_answer_seconds",
        metrics::Unit::Seconds,
        "From an agency leg's INVITE to its answer, by route"
    );
    describe_counter!(
        "siaga_sip_requests_total",
        "SIP requests, by direction and method"
    );
    describe_counter!(
        "siaga_sip_responses_total",
        "SIP responses, by direction and status"
    );
    describe_counter!(
        "siaga_sip_retransmissions_total",
        "Retransmissions, received (absorbed) and sent (on a timer)"
    );
    describe_counter!(
        "siaga_sip_transaction_timeouts_total",
        "Transactions that ended without the peer's answer"
    );
    describe_counter!(
        "siaga_rtp_packets_received_total",
        "RTP packets taken from peers"
    );
    describe_counter!(
        "siaga_rtp_packets_sent_total",
        "RTP packets sent: relayed as they came, or generated (prompts, silence, fills, transcoded)"
    );
    describe_counter!(
        "siaga_rtp_packets_lost_total",
        "RTP packets peers sent that never arrived (from sequence numbers)"
    );
    describe_counter!(
        "siaga_rtp_packets_late_total",
        "RTP packets that arrived after a later one, or twice"
    );
    describe_histogram!(
        "siaga_rtp_relay_delay_seconds",
        metrics::Unit::Seconds,
        "Time a relayed packet spent in the gateway (read to sent on)"
    );
    describe_counter!("siaga_recordings_finished_total", "Recordings closed");
    describe_counter!(
        "siaga_recording_failures_total",
        "Recordings that could not be written"
    );
    describe_counter!(
        "siaga_recording_bytes_total",
        metrics::Unit::Bytes,
        "Audio bytes written to recordings"
    );
    describe_gauge!(
        "siaga_calllog_queue_depth",
        "Call-log records waiting to be written"
    );
    describe_histogram!(
        "siaga_calllog_write_seconds",
        metrics::Unit::Seconds,
        "Time to write one batch of call-log records"
    );
    describe_counter!(
        "siaga_dialplan_reloads_total",
        "Dialplan reloads, by outcome"
    );
    describe_counter!(
        "siaga_tls_handshakes_total",
        "TLS handshakes, by side (server: peers connecting to us; client: us to agencies) and outcome"
    );
    describe_gauge!(
        "process_cpu_seconds_total",
        "CPU time of the process (only grows)"
    );
    describe_gauge!(
        "process_resident_memory_bytes",
        "Resident memory of the process"
    );
    describe_gauge!("process_open_fds", "Open file descriptors");
    describe_gauge!("process_max_fds", "The open-file limit");
}

/// Series that exist from the start, at zero, so a dashboard shows "none" rather than "no
/// data" for a failure that has not happened.
fn register_zeroes() {
    for name in [
        "siaga_recordings_finished_total",
        "siaga_recording_failures_total",
        "siaga_recording_bytes_total",
        "siaga_rtp_packets_received_total",
        "siaga_rtp_packets_lost_total",
        "siaga_rtp_packets_late_total",
    ] {
        counter!(name).increment(0);
    }
    for kind in ["relayed", "generated"] {
        counter!("siaga_rtp_packets_sent_total", "kind" => kind).increment(0);
    }
    for outcome in ["applied", "rejected"] {
        counter!("siaga_dialplan_reloads_total", "outcome" => outcome).increment(0);
    }
    gauge!("siaga_calllog_queue_depth").set(0.0);
    let _ = histogram!("siaga_rtp_relay_delay_seconds");
    let _ = histogram!("siaga_calllog_write_seconds");
}

/// Each route's histograms, at zero until its first call (at start and after a reload).
pub fn register_routes(plan: &siaga_engine::dialplan::Dialplan) {
    for route in plan.routes() {
        let id = route.base.id.as_str().to_owned();
        let _ = histogram!("siaga_agency_answer_seconds", "route" => id.clone());
        let _ = histogram!("siaga_queue_wait_seconds", "route" => id);
    }
}

/// SIP methods counted by name; any other is `other` (an outsider must not create labels).
const METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "INFO",
    "UPDATE",
    "PRACK",
    "REFER",
    "NOTIFY",
    "SUBSCRIBE",
    "MESSAGE",
    "PUBLISH",
];

/// Counts one SIP message in or out by its first line.
pub fn sip_message(direction: &'static str, bytes: &[u8]) {
    let first = bytes.split(|&b| b == b' ').next().unwrap_or_default();
    if first.starts_with(b"SIP/") {
        let status = bytes
            .get(first.len() + 1..first.len() + 4)
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| (100..700).contains(s));
        let status = status.map_or_else(|| "invalid".to_owned(), |s| s.to_string());
        counter!("siaga_sip_responses_total", "direction" => direction, "status" => status)
            .increment(1);
    } else {
        let method = METHODS
            .iter()
            .find(|m| m.as_bytes() == first)
            .copied()
            .unwrap_or("other");
        counter!("siaga_sip_requests_total", "direction" => direction, "method" => method)
            .increment(1);
    }
}

/// The engine's gauges and transaction totals, read once a second.
pub fn engine_gauges(engine: &Engine) {
    let gauges = engine.call_gauges();
    for phase in siaga_engine::CallPhase::ALL {
        let n = gauges.by_phase.get(&phase).copied().unwrap_or(0);
        gauge!("siaga_calls_active", "phase" => phase.as_str()).set(n as f64);
    }
    for route in engine.plan().routes() {
        let id = route.base.id.as_str();
        let n = gauges.queued_by_route.get(id).copied().unwrap_or(0);
        gauge!("siaga_queue_length", "route" => id.to_owned()).set(n as f64);
    }
    let tx = engine.tx_counters();
    counter!("siaga_sip_retransmissions_total", "direction" => "in")
        .absolute(tx.retransmissions_received);
    counter!("siaga_sip_retransmissions_total", "direction" => "out")
        .absolute(tx.retransmissions_sent);
    counter!("siaga_sip_transaction_timeouts_total").absolute(tx.timeouts);
    // 1 while a flood of emergency calls is detected (callers beyond their limits challenged).
    gauge!("siaga_under_attack").set(if engine.under_attack() { 1.0 } else { 0.0 });
}

/// A TLS handshake's end: side `server` or `client`; outcome `ok`, `failed`, `timeout`, or
/// `refused` (no handshake slot left for the source or in total).
pub fn tls_handshake(side: &'static str, outcome: &'static str) {
    counter!("siaga_tls_handshakes_total", "side" => side, "outcome" => outcome).increment(1);
}

/// A dialplan reload: `applied` or `rejected`.
pub fn dialplan_reload(outcome: &'static str) {
    counter!("siaga_dialplan_reloads_total", "outcome" => outcome).increment(1);
}

/// What the metrics remember of a call between its records.
#[derive(Default)]
struct Tracked {
    kind: &'static str,
    route: Option<String>,
    /// Agency legs by number: target URI and when its INVITE went.
    legs: HashMap<u32, (String, Instant)>,
    queued_at: Option<Instant>,
}

/// Most ended calls remembered while their signals are awaited; beyond it the oldest are
/// forgotten (their late agency events are then counted without a route).
const MAX_ENDED: usize = 100_000;

/// Follows the engine's log records to count calls and agency attempts with their labels.
/// Bounded: a call is forgotten at its last record (`CallSignals`), or once `MAX_ENDED` later
/// calls have ended; records of a call it does not know add nothing to it.
#[derive(Default)]
pub struct CallTracker {
    calls: HashMap<CallRef, Tracked>,
    ended: std::collections::VecDeque<CallRef>,
}

impl CallTracker {
    pub fn observe(&mut self, record: &LogRecord, now: Instant) {
        match record {
            LogRecord::CallStarted(started) => {
                let kind = started.kind.as_str();
                counter!("siaga_calls_started_total", "kind" => kind).increment(1);
                self.calls.insert(
                    started.call,
                    Tracked {
                        kind,
                        ..Tracked::default()
                    },
                );
            }
            LogRecord::CallAnswered { call } => {
                let kind = self.calls.get(call).map_or("unknown", |t| t.kind);
                counter!("siaga_calls_answered_total", "kind" => kind).increment(1);
            }
            LogRecord::CallEnded { call, reason, .. } => {
                let (kind, route) = self.calls.get(call).map_or_else(
                    || ("unknown", "none".to_owned()),
                    |t| (t.kind, route_label(t)),
                );
                counter!(
                    "siaga_calls_ended_total",
                    "kind" => kind,
                    "route" => route,
                    "reason" => reason.as_str()
                )
                .increment(1);
                self.ended.push_back(*call);
                if self.ended.len() > MAX_ENDED
                    && let Some(oldest) = self.ended.pop_front()
                {
                    self.calls.remove(&oldest);
                }
            }
            LogRecord::CallSignals { call, .. } => {
                // The call's last record: nothing more will come for it.
                self.calls.remove(call);
            }
            LogRecord::Timeline { call, kind, detail } => self.timeline(*call, *kind, detail, now),
            _ => {}
        }
    }

    fn timeline(&mut self, call: CallRef, kind: CallEventKind, detail: &str, now: Instant) {
        let mut unknown = Tracked::default();
        let tracked = self.calls.get_mut(&call).unwrap_or(&mut unknown);
        let outcome = match kind {
            CallEventKind::RouteStart => {
                // `route "police" (…)`: the call's first route labels its end.
                if tracked.route.is_none() {
                    tracked.route = quoted(detail).map(str::to_owned);
                }
                return;
            }
            CallEventKind::AgencyInvite => {
                if let (Some(n), Some(uri)) = (leg_number(detail), invited_uri(detail)) {
                    tracked.legs.insert(n, (uri.to_owned(), now));
                }
                return;
            }
            CallEventKind::QueueEnter => {
                tracked.queued_at.get_or_insert(now);
                return;
            }
            CallEventKind::QueueLeave | CallEventKind::QueueTimeout => {
                if let Some(since) = tracked.queued_at.take() {
                    histogram!("siaga_queue_wait_seconds", "route" => route_label(tracked))
                        .record(now.saturating_duration_since(since).as_secs_f64());
                }
                return;
            }
            CallEventKind::AgencyAnswered => "answered",
            CallEventKind::AgencyFailed => "failed",
            CallEventKind::AgencyTimeout => "no_answer",
            CallEventKind::AgencyUnreachable => "unreachable",
            CallEventKind::AgencyCancelled => "cancelled",
            _ => return,
        };
        let leg = leg_number(detail).and_then(|n| tracked.legs.remove(&n));
        let route = route_label(tracked);
        let target = leg
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), |(uri, _)| uri.clone());
        if let (Some((_, invited)), "answered") = (&leg, outcome) {
            histogram!("siaga_agency_answer_seconds", "route" => route.clone())
                .record(now.saturating_duration_since(*invited).as_secs_f64());
        }
        counter!(
            "siaga_agency_attempts_total",
            "route" => route,
            "target" => target,
            "outcome" => outcome
        )
        .increment(1);
    }
}

/// A call's first route as a label (`none`: it never reached one).
fn route_label(tracked: &Tracked) -> String {
    tracked.route.clone().unwrap_or_else(|| "none".to_owned())
}

/// The text between the first pair of double quotes.
fn quoted(detail: &str) -> Option<&str> {
    let (_, rest) = detail.split_once('"')?;
    rest.split_once('"').map(|(inside, _)| inside)
}

/// The agency leg number of a timeline detail that starts `leg B<n>`.
fn leg_number(detail: &str) -> Option<u32> {
    let rest = detail.strip_prefix("leg B")?;
    let digits: &str = rest.split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

/// The target of an `AgencyInvite` detail: `leg B<n> → <uri> (<transport>)`.
fn invited_uri(detail: &str) -> Option<&str> {
    let (_, rest) = detail.split_once("→ ")?;
    rest.rsplit_once(" (").map(|(uri, _)| uri)
}

/// The process's CPU time, memory and descriptors, from /proc (Linux).
fn process_metrics() {
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some((_, after_name)) = stat.rsplit_once(") ")
    {
        // Fields after the name: state is #3, utime #14, stime #15 (1-based).
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // SAFETY: sysconf takes no pointers.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        // A float of seconds: the counter type holds whole numbers only, so this is exposed
        // as a gauge that only ever grows (`rate()` works on it all the same).
        let cpu = (ticks(11) + ticks(12)) as f64 / per_second;
        gauge!("process_cpu_seconds_total").set(cpu);
    }
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|f| f.parse().ok())
            .unwrap_or(0);
        // SAFETY: sysconf takes no pointers.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
        gauge!("process_resident_memory_bytes").set((pages * page) as f64);
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        gauge!("process_open_fds").set(dir.count() as f64);
    }
    if let Ok((soft, _)) = crate::transport::fd_limit() {
        gauge!("process_max_fds").set(soft as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_details_give_route_leg_and_target() {
        assert_eq!(
            quoted("route \"police\" (Polisi), 2 target(s)"),
            Some("police")
        );
        assert_eq!(leg_number("leg B12 → sip:a@b (udp)"), Some(12));
        assert_eq!(leg_number("leg B3: 486 Busy Here"), Some(3));
        assert_eq!(
            invited_uri("leg B1 → sip:police@10.0.0.1:5060 (udp)"),
            Some("sip:police@10.0.0.1:5060")
        );
        assert_eq!(leg_number("queue"), None);
    }

    #[test]
    fn a_call_is_forgotten_at_its_last_record_and_late_events_add_nothing() {
        let mut tracker = CallTracker::default();
        let now = Instant::now();
        let event = |kind, detail: &str| LogRecord::Timeline {
            call: CallRef(7),
            kind,
            detail: detail.to_owned(),
        };
        tracker.observe(
            &event(CallEventKind::RouteStart, "route \"police\" (Polisi)"),
            now,
        );
        tracker.observe(
            &event(CallEventKind::AgencyInvite, "leg B1 → sip:p@h (udp)"),
            now,
        );
        assert!(
            tracker.calls.is_empty(),
            "a call it never saw start is not remembered"
        );
        for n in 0..=MAX_ENDED as u64 {
            let call = CallRef(n);
            tracker.calls.insert(call, Tracked::default());
            tracker.observe(
                &LogRecord::CallEnded {
                    call,
                    reason: siaga_engine::end_reason::EndReason::CallerHungUp,
                    detail: None,
                },
                now,
            );
        }
        assert_eq!(
            tracker.calls.len(),
            MAX_ENDED,
            "the oldest ended call is forgotten"
        );
        assert!(!tracker.calls.contains_key(&CallRef(0)));
    }
}
