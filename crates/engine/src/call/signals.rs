//! The call's signals (issue 12): counted as the call goes, logged once after its end as
//! `LogRecord::CallSignals`.
//!
//! The caller's voice totals come from the media side when the caller's leg is released,
//! which is at the call's end: the end is logged at once, and the signals follow when the
//! totals arrive, or after `VOICE_WAIT` without them (`voice: None`).

use std::time::{Duration, Instant};

use siaga_media::VoiceTotals;

use super::Call;
use crate::effects::{Effects, TimerKey};
use crate::ids::CallRef;
use crate::io::{CallSignals, CallerIdentity, LogRecord};
use crate::sip::read::uri_of;

/// How long an ended call's signals wait for the caller leg's voice totals.
pub(crate) const VOICE_WAIT: Duration = Duration::from_secs(2);

/// What the call counts while it runs.
#[derive(Debug, Clone, Default)]
pub struct SignalCounters {
    /// Digits from the caller, any source.
    pub digits: u32,
    /// When we answered the caller.
    pub answered_at: Option<Instant>,
    /// The caller's RTP port is bound: its voice totals come when it is released.
    pub media_leg: bool,
    /// The caller leg's totals, if they came before the call's end.
    pub voice: Option<VoiceTotals>,
}

impl Call {
    /// At the call's end (after `CallEnded`): logs the signals now if nothing is awaited from
    /// the media side, else leaves them waiting for the voice totals.
    pub(crate) fn log_signals(&mut self, fx: &mut Effects) {
        let now = fx.now;
        let signals = CallSignals {
            digits: self.signals.digits,
            answered_for: self
                .signals
                .answered_at
                .map(|at| now.saturating_duration_since(at)),
            agency_talk: self.agency.as_ref().and_then(|a| a.talk_time(now)),
            usable_identity: usable_identity(&self.identity),
            voice: self.signals.voice,
        };
        let call = self.call_ref;
        if signals.voice.is_some() || !self.signals.media_leg {
            fx.count_silent_short(&signals);
            fx.log(LogRecord::CallSignals { call, signals });
        } else {
            fx.awaiting_voice.insert(call, signals);
            fx.timers
                .set(TimerKey::Signals(call), Some(now + VOICE_WAIT));
        }
    }

    /// The caller leg's totals: for the signals already waiting, or kept for the end.
    pub(crate) fn on_voice(&mut self, fx: &mut Effects, totals: VoiceTotals) {
        if !fx.voice_arrived(self.call_ref, totals) {
            self.signals.voice = Some(totals);
        }
    }
}

impl Effects {
    /// Voice totals for an ended call: its waiting signals are logged. False if none wait.
    pub(crate) fn voice_arrived(&mut self, call: CallRef, totals: VoiceTotals) -> bool {
        let Some(mut signals) = self.awaiting_voice.remove(&call) else {
            return false;
        };
        signals.voice = Some(totals);
        self.timers.set(TimerKey::Signals(call), None);
        self.count_silent_short(&signals);
        self.log(LogRecord::CallSignals { call, signals });
        true
    }

    /// The totals never came: the signals are logged without them.
    pub(crate) fn voice_overdue(&mut self, call: CallRef) {
        if let Some(signals) = self.awaiting_voice.remove(&call) {
            self.timers.set(TimerKey::Signals(call), None);
            self.count_silent_short(&signals);
            self.log(LogRecord::CallSignals { call, signals });
        }
    }

    /// Every waiting call's signals, without voice (the gateway stops).
    pub(crate) fn flush_awaiting_voice(&mut self) {
        let mut waiting: Vec<CallRef> = self.awaiting_voice.keys().copied().collect();
        waiting.sort_by_key(|c| c.0);
        for call in waiting {
            self.voice_overdue(call);
        }
    }
}

/// The caller sent a usable identity: the user part of a P-Asserted-Identity or of From is a
/// number (at least three digits, an optional `+` and visual separators), not `anonymous`.
pub fn usable_identity(identity: &CallerIdentity) -> bool {
    caller_number(identity).is_some()
}

/// The caller's number as sent (P-Asserted-Identity first, then From): digits with any
/// leading `+`, separators removed; `None` without a usable identity. Calls from one number
/// are counted by it; `+62…` and `0…` forms of one number are not matched with each other.
pub fn caller_number(identity: &CallerIdentity) -> Option<String> {
    identity
        .p_asserted_identity
        .iter()
        .chain([&identity.from])
        .filter_map(|value| user_part(value))
        .find(|user| is_number(user))
        .map(|user| {
            user.chars()
                .filter(|c| c.is_ascii_digit() || *c == '+')
                .collect()
        })
}

/// The user part of a name-addr or addr-spec (`sip:`, `sips:` or `tel:` URI).
fn user_part(value: &str) -> Option<String> {
    let uri = uri_of(value);
    let (scheme, rest) = uri.trim().split_once(':')?;
    let user = match scheme.to_ascii_lowercase().as_str() {
        "tel" => rest,
        "sip" | "sips" => rest.split_once('@')?.0,
        _ => return None,
    };
    user.split(';').next().map(str::to_owned)
}

fn is_number(user: &str) -> bool {
    let digits = user.strip_prefix('+').unwrap_or(user);
    let mut count = 0;
    for c in digits.chars() {
        match c {
            '0'..='9' => count += 1,
            '-' | '.' | '(' | ')' => {}
            _ => return false,
        }
    }
    count >= 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(value: &str) -> CallerIdentity {
        CallerIdentity {
            from: value.to_owned(),
            ..CallerIdentity::default()
        }
    }

    #[test]
    fn numbers_are_usable_identities() {
        for v in [
            "<sip:08123456789@ims.example>;tag=1",
            "\"Budi\" <sip:+62-812-3456-789@example.net;user=phone>;tag=x",
            "sip:0541123456@10.0.0.1;tag=2",
            "<tel:+62541123456>",
        ] {
            assert!(usable_identity(&from(v)), "{v}");
        }
    }

    #[test]
    fn anonymous_and_names_are_not() {
        for v in [
            "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=1",
            "<sip:unknown@example.net>;tag=2",
            "<sip:12@example.net>",
            "<sip:example.net>",
            "garbage",
            "",
        ] {
            assert!(!usable_identity(&from(v)), "{v}");
        }
    }

    #[test]
    fn the_number_is_taken_from_the_asserted_identity_first_without_separators() {
        let mut id = from("<sip:0541-123456@example.net>;tag=1");
        assert_eq!(caller_number(&id).as_deref(), Some("0541123456"));
        id.p_asserted_identity = vec!["<tel:+62-541-123456>".to_owned()];
        assert_eq!(caller_number(&id).as_deref(), Some("+62541123456"));
        assert_eq!(caller_number(&from("<sip:anonymous@x.invalid>")), None);
    }

    #[test]
    fn an_asserted_number_counts_even_behind_an_anonymous_from() {
        let mut id = from("<sip:anonymous@anonymous.invalid>;tag=1");
        id.p_asserted_identity = vec!["<tel:+62541123456>".to_owned()];
        assert!(usable_identity(&id));
    }
}
