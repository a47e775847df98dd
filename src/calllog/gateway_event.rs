//! The kinds of gateway-wide events (the `gateway_events` table): the gateway's own life, not
//! a call's (a call's are [`siaga_engine::timeline::CallEventKind`]). Their text is stored and
//! looked for by operators' queries, so it never changes.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GatewayEventKind {
    /// The gateway started listening.
    Start,
    /// The gateway stopped (how many calls were still live).
    Stop,
    /// Calls the last stop left open get a BYE to every leg that was up.
    RestartByes,
    /// Start-up closed calls a crash left open.
    CrashRecovery,
    /// Start-up rewrote the header of a recording a crash left behind.
    RecordingRepaired,
    /// A new dialplan is served.
    DialplanReloaded,
    /// A new dialplan was refused; the old one is kept.
    DialplanRejected,
    /// Sources were rate limited.
    RateLimited,
    /// Traffic outside every call, counted per source and window.
    NonCallCounts,
    /// Call-log records were lost (writer held up, or a damaged spill file).
    LogRecordsLost,
    /// The call log could not be written for a while; records waited.
    LogGap,
    /// Free space fell under `log.low_space_mb`: sampled messages of no call are not stored.
    LogDiskLow,
    /// Free space is back over `log.low_space_mb`.
    LogDiskLowCleared,
    /// Free space fell under the alarm threshold.
    LogDiskAlarm,
    /// Free space is back over the alarm threshold.
    LogDiskAlarmCleared,
    /// The call log or the recordings stopped taking writes: OPTIONS answers 503, so a load
    /// balancer sends new calls elsewhere (calls that still come are answered).
    Unready,
    /// Both take writes again: OPTIONS answers 200.
    Ready,
    /// New or silent short emergency calls crossed the `[flood]` levels: under attack,
    /// callers beyond their limits are challenged.
    AttackStarted,
    /// Calm again: nobody is challenged.
    AttackEnded,
    /// Another node's heartbeat stopped: its open calls were closed as `node_lost`.
    NodeLost,
}

impl GatewayEventKind {
    /// Every kind, in the order above (for the test that no two share a text, and for
    /// `siaga report`, which looks for the kinds of attack events).
    pub const ALL: [GatewayEventKind; 20] = [
        GatewayEventKind::Start,
        GatewayEventKind::Stop,
        GatewayEventKind::RestartByes,
        GatewayEventKind::CrashRecovery,
        GatewayEventKind::RecordingRepaired,
        GatewayEventKind::DialplanReloaded,
        GatewayEventKind::DialplanRejected,
        GatewayEventKind::RateLimited,
        GatewayEventKind::NonCallCounts,
        GatewayEventKind::LogRecordsLost,
        GatewayEventKind::LogGap,
        GatewayEventKind::LogDiskLow,
        GatewayEventKind::LogDiskLowCleared,
        GatewayEventKind::LogDiskAlarm,
        GatewayEventKind::LogDiskAlarmCleared,
        GatewayEventKind::Unready,
        GatewayEventKind::Ready,
        GatewayEventKind::AttackStarted,
        GatewayEventKind::AttackEnded,
        GatewayEventKind::NodeLost,
    ];

    /// The text in the `kind` column: stored in existing databases, so never changed.
    pub const fn as_str(self) -> &'static str {
        match self {
            GatewayEventKind::Start => "start",
            GatewayEventKind::Stop => "stop",
            GatewayEventKind::RestartByes => "restart_byes",
            GatewayEventKind::CrashRecovery => "crash_recovery",
            GatewayEventKind::RecordingRepaired => "recording_repaired",
            GatewayEventKind::DialplanReloaded => "dialplan_reloaded",
            GatewayEventKind::DialplanRejected => "dialplan_rejected",
            GatewayEventKind::RateLimited => "rate_limited",
            GatewayEventKind::NonCallCounts => "noncall_counts",
            GatewayEventKind::LogRecordsLost => "log_records_lost",
            GatewayEventKind::LogGap => "log_gap",
            GatewayEventKind::LogDiskLow => "log_disk_low",
            GatewayEventKind::LogDiskLowCleared => "log_disk_low_cleared",
            GatewayEventKind::LogDiskAlarm => "log_disk_alarm",
            GatewayEventKind::LogDiskAlarmCleared => "log_disk_alarm_cleared",
            GatewayEventKind::Unready => "unready",
            GatewayEventKind::Ready => "ready",
            GatewayEventKind::AttackStarted => "attack_started",
            GatewayEventKind::AttackEnded => "attack_ended",
            GatewayEventKind::NodeLost => "node_lost",
        }
    }
}

impl fmt::Display for GatewayEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::GatewayEventKind;

    /// `ALL` holds every kind once, and no two share a text. The match stops compiling when a
    /// kind is added; giving the new one its number then fails this test until `ALL` lists it.
    #[test]
    fn all_lists_every_kind_once_with_its_own_text() {
        let number = |kind: GatewayEventKind| match kind {
            GatewayEventKind::Start => 0,
            GatewayEventKind::Stop => 1,
            GatewayEventKind::RestartByes => 2,
            GatewayEventKind::CrashRecovery => 3,
            GatewayEventKind::RecordingRepaired => 4,
            GatewayEventKind::DialplanReloaded => 5,
            GatewayEventKind::DialplanRejected => 6,
            GatewayEventKind::RateLimited => 7,
            GatewayEventKind::NonCallCounts => 8,
            GatewayEventKind::LogRecordsLost => 9,
            GatewayEventKind::LogGap => 10,
            GatewayEventKind::LogDiskLow => 11,
            GatewayEventKind::LogDiskLowCleared => 12,
            GatewayEventKind::LogDiskAlarm => 13,
            GatewayEventKind::LogDiskAlarmCleared => 14,
            GatewayEventKind::Unready => 15,
            GatewayEventKind::Ready => 16,
            GatewayEventKind::AttackStarted => 17,
            GatewayEventKind::AttackEnded => 18,
            GatewayEventKind::NodeLost => 19,
        };
        let mut listed: Vec<usize> = GatewayEventKind::ALL.iter().map(|&k| number(k)).collect();
        listed.sort_unstable();
        assert_eq!(listed, (0..GatewayEventKind::ALL.len()).collect::<Vec<_>>());
        let mut texts: Vec<&str> = GatewayEventKind::ALL.iter().map(|k| k.as_str()).collect();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), GatewayEventKind::ALL.len());
    }
}
