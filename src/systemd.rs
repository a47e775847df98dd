//! Telling systemd how the gateway is doing (`Type=notify` units, see deploy/systemd/):
//! READY=1 once it takes calls, WATCHDOG=1 from the engine's loop (a hung loop gets the
//! service restarted), STOPPING=1 when it drains. Without `NOTIFY_SOCKET` every call is a
//! no-op, so the same binary runs under systemd, in a container or from a shell.

use std::time::Duration;

use sd_notify::NotifyState;

pub struct Notifier {
    /// Half the unit's `WatchdogSec`, as systemd recommends; None: no watchdog asked for.
    watchdog_every: Option<Duration>,
}

impl Notifier {
    pub fn from_env() -> Self {
        // As sd_watchdog_enabled(3): WATCHDOG_USEC asks for pings; WATCHDOG_PID, when set,
        // says which process must send them (the sd-notify crate also insists on it being set,
        // which systemd does not).
        let usec = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&usec| usec > 0);
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|pid| pid.parse::<u32>().ok() == Some(std::process::id()));
        let watchdog_every = usec
            .filter(|_| for_us)
            .map(|usec| Duration::from_micros(usec / 2));
        Self { watchdog_every }
    }

    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog_every
    }

    pub fn ready(&self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub fn stopping(&self, status: &str) {
        send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }

    pub fn status(&self, status: &str) {
        send(&[NotifyState::Status(status)]);
    }

    /// Called from the engine's loop every `watchdog_every`: a loop that hangs stops the
    /// pings and systemd restarts the service.
    pub fn alive(&self) {
        send(&[NotifyState::Watchdog]);
    }
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}
