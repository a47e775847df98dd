//! Traffic outside every call, answered without state (RFC 3261 §8.2.7): counted per source,
//! only a sample stored, replies rationed (see `crate::noncall`).

use std::time::Instant;

use rsipstack::sip::Request;

use super::Engine;
use crate::effects::TimerKey;
use crate::ids::Tag;
use crate::io::LogRecord;
use crate::net::{Direction, Flow};
use crate::noncall::{NonCallKind, Verdict};
use crate::sip::build::{self, ResponseExtras};
use crate::sip::parse::Inbound;
use crate::sip::support::plain_headers;

/// Builds the reply to a message outside every call, only once its budget allows one.
type ReplyBuilder<'a> = &'a dyn Fn(&mut Engine) -> Vec<u8>;

/// The reply to a message outside every call, if any.
#[derive(Clone, Copy)]
pub(super) enum Reply<'a> {
    None,
    /// Sent within the source's reply budget.
    Rationed(ReplyBuilder<'a>),
    /// Always sent (a malformed INVITE may be someone's emergency call: it is told why).
    Always(ReplyBuilder<'a>),
}

impl Engine {
    /// Switches the storing of non-call samples on or off (e.g. when the log's disk runs
    /// low); their counts are kept either way.
    pub fn set_noncall_sampling(&mut self, on: bool) {
        self.noncall.set_sampling(on);
    }

    /// Logs the counts of the current non-call window now (at shutdown: nothing counted is
    /// lost).
    pub fn flush_noncall_counts(&mut self, now: Instant) {
        self.roll_noncall(now);
        for tally in self.noncall.flush(now) {
            self.fx.log(LogRecord::NonCallCounts(Box::new(tally)));
        }
        self.fx.timers.set(TimerKey::NonCall, None);
    }

    // ---- traffic outside every call ----

    /// Closes the non-call counting window if its time is up and logs its counts.
    pub(super) fn roll_noncall(&mut self, now: Instant) {
        for tally in self.noncall.roll(now) {
            self.fx.log(LogRecord::NonCallCounts(Box::new(tally)));
        }
        self.fx
            .timers
            .set(TimerKey::NonCall, self.noncall.next_deadline());
    }

    /// Counts a message that belongs to no call, stores it only if it is the sample of its
    /// kind, and answers it with `reply` (built only when the source's budget allows).
    pub(super) fn noncall_message(
        &mut self,
        now: Instant,
        flow: Flow,
        kind: NonCallKind,
        raw: &[u8],
        note: Option<String>,
        reply: Reply<'_>,
    ) {
        self.roll_noncall(now);
        let (reply, always) = match reply {
            Reply::None => (None, false),
            Reply::Rationed(build) => (Some(build), false),
            Reply::Always(build) => (Some(build), true),
        };
        let Verdict {
            reply: answer,
            sample,
        } = self
            .noncall
            .observe(now, flow.remote, kind, reply.is_some() && !always);
        let answer = answer || always;
        self.fx
            .timers
            .set(TimerKey::NonCall, self.noncall.next_deadline());
        let max = self.noncall.limits().sample_max_bytes;
        if sample {
            let mut note = note.unwrap_or_default();
            if !note.is_empty() {
                note.push_str("; ");
            }
            note.push_str(&format!(
                "sample: the first {} from this source in this counting window",
                kind.as_str()
            ));
            if raw.len() > max {
                note.push_str(&format!(" (cut to {max} of {} bytes)", raw.len()));
            }
            let kept = raw.get(..max).unwrap_or(raw).to_vec();
            self.fx.log_sip(None, Direction::In, flow, kept, Some(note));
        }
        let Some(build) = reply.filter(|_| answer) else {
            return;
        };
        let bytes = build(self);
        if sample {
            // The reply echoes the request's headers: cut it the same way.
            let kept = bytes.get(..max).unwrap_or(&bytes).to_vec();
            self.fx.log_sip(None, Direction::Out, flow, kept, None);
        }
        self.fx.transmit_unlogged(flow, bytes);
    }

    /// A To-tag for a stateless reply: the same for every retransmission of the request
    /// (Call-ID and From-tag), unguessable without the per-process secret.
    fn stateless_tag(&self, msg: &Inbound) -> Tag {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        self.tag_secret.hash(&mut h);
        msg.call_id.hash(&mut h);
        msg.from_tag.hash(&mut h);
        Tag(format!("s{:016x}", h.finish()))
    }

    /// A final response sent without a server transaction (RFC 3261 §8.2.7): a retransmitted
    /// request simply gets it again.
    pub(super) fn stateless_response(
        &self,
        flow: Flow,
        msg: &Inbound,
        req: &Request,
        status: u16,
        mut headers: Vec<(&'static str, String)>,
    ) -> Vec<u8> {
        let tag = self.stateless_tag(msg);
        headers.extend(plain_headers(req, status));
        build::response(
            req,
            flow.remote,
            status,
            &ResponseExtras {
                to_tag: Some(&tag),
                headers,
                ..Default::default()
            },
        )
    }

    /// A request outside every call answered statelessly with `status`, counted as `kind`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn noncall_request(
        &mut self,
        now: Instant,
        flow: Flow,
        msg: &Inbound,
        req: &Request,
        raw: &[u8],
        kind: NonCallKind,
        status: u16,
        headers: Vec<(&'static str, String)>,
    ) {
        let build = move |engine: &mut Self| {
            engine.stateless_response(flow, msg, req, status, headers.clone())
        };
        self.noncall_message(now, flow, kind, raw, None, Reply::Rationed(&build));
    }
}
