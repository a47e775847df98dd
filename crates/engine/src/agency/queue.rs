//! Waiting for a busy route, and what the caller hears while no agency is on the line.

use std::time::{Duration, Instant};

use super::{ANNOUNCEMENT_PLAYBACK, AgencySide, CallerView, MIN_RINGBACK, Queued};
use crate::effects::Effects;
use crate::ids::{LegId, LegNo};
use crate::io::{MediaCommand, PlaybackId};
use crate::route_queue::{QueuePriority, RouteQueue};
use crate::timeline::CallEventKind;

impl AgencySide {
    /// Plays what is queued for the caller while no agency is on the line.
    pub(crate) fn announce(&mut self, now: Instant, call: &CallerView<'_>, fx: &mut Effects) {
        if self.connected.is_some() || self.announcer.playing.is_some() {
            return;
        }
        let id = PlaybackId(ANNOUNCEMENT_PLAYBACK | (fx.next_playback + 1));
        let (next, is_ringback) = match self.announcer.pending.pop_front() {
            Some(p) => (Some(p), false),
            None => (self.announcer.ringback.clone(), true),
        };
        let Some(prompt) = next else {
            return;
        };
        self.announcer.playing = Some((id, now, is_ringback));
        fx.next_playback += 1;
        fx.media(MediaCommand::Play {
            call: call.call_ref,
            leg: LegId::Caller,
            playback: id,
            prompt,
        });
    }

    /// An announcement of the agency side ended: play the next one (or ringback again).
    pub(crate) fn announcement_finished(
        &mut self,
        now: Instant,
        call: &CallerView<'_>,
        fx: &mut Effects,
        id: PlaybackId,
    ) {
        match self.announcer.playing {
            Some((playing, started, ringback)) if playing == id => {
                self.announcer.playing = None;
                if ringback && now.duration_since(started) < MIN_RINGBACK {
                    // No usable ringback file: silence rather than a busy loop.
                    self.announcer.ringback = None;
                }
            }
            _ => return,
        }
        self.announce(now, call, fx);
    }

    pub(super) fn stop_announcements(&mut self, call: &CallerView<'_>, fx: &mut Effects) {
        self.announcer.pending.clear();
        if let Some((playback, _, _)) = self.announcer.playing.take() {
            fx.media(MediaCommand::StopPlayback {
                call: call.call_ref,
                leg: LegId::Caller,
                playback,
            });
        }
    }

    pub(super) fn enter_queue(&mut self, now: Instant, call: &CallerView<'_>, fx: &mut Effects) {
        let call_ref = call.call_ref;
        let Some(queue) = self.route.queue.clone() else {
            return;
        };
        self.queued = Some(Queued {
            since: now,
            next_announce: now,
            give_up_at: queue.max_wait.map(|w| now + w),
        });
        let route_id = self.route_id.clone();
        let priority = call.priority;
        let position = fx
            .queues
            .entry(route_id.clone())
            .or_default()
            .push(call_ref, priority);
        let behind = match priority {
            QueuePriority::Normal => String::new(),
            QueuePriority::Low => ", at low priority (behind every normal caller)".to_owned(),
            QueuePriority::Lowest => {
                ", at the lowest priority (did not pass the flood challenge)".to_owned()
            }
        };
        fx.timeline(
            call_ref,
            CallEventKind::QueueEnter,
            format!(
                "every target of \"{route_id}\" busy; waiting as number {position} in the queue{behind}"
            ),
        );
        self.queue_tick(now, call, fx);
    }

    pub(super) fn leave_queue(&mut self, now: Instant, call: &CallerView<'_>, fx: &mut Effects) {
        let call_ref = call.call_ref;
        let mut left = None;
        for (route, q) in fx.queues.iter_mut() {
            if q.remove(call_ref) {
                left = Some(route.clone());
            }
        }
        if let Some(route) = left {
            let waited = self.queued.as_ref().map(|q| now.duration_since(q.since));
            let len = fx.queues.get(&route).map_or(0, RouteQueue::len);
            fx.timeline(
                call_ref,
                CallEventKind::QueueLeave,
                format!(
                    "left the \"{route}\" queue after {} s; {len} still waiting",
                    waited.map_or(0, |w| w.as_secs())
                ),
            );
        }
    }

    /// Queue housekeeping at the call's deadline: announce the position, retry at the head,
    /// give up to the fallback when the maximum wait has passed.
    pub(super) fn queue_tick(&mut self, now: Instant, call: &CallerView<'_>, fx: &mut Effects) {
        let call_ref = call.call_ref;
        let Some(q) = self.queued.clone() else { return };
        if q.give_up_at.is_some_and(|t| now >= t) {
            // The longest wait is over: stop ringing this route and move on at once.
            let pending: Vec<LegNo> = self
                .legs
                .values()
                .filter(|l| l.state.pending())
                .map(|l| l.n)
                .collect();
            fx.timeline(
                call_ref,
                CallEventKind::QueueTimeout,
                format!("waited {} s", now.duration_since(q.since).as_secs()),
            );
            for n in pending {
                self.cancel_leg(now, call, fx, n);
            }
            self.next_route(now, call, fx);
            return;
        }
        if now < q.next_announce {
            return;
        }
        let position = fx
            .queues
            .get(&self.route_id)
            .and_then(|q| q.position(call_ref))
            .map_or(1, |p| p) as u32;
        let prompts = call
            .plan
            .queue_announcement(&self.route, position, &self.languages);
        let every = self
            .route
            .queue
            .as_ref()
            .map_or(Duration::from_secs(20), |q| q.announce_every);
        let head = position == 1;
        if let Some(q) = self.queued.as_mut() {
            q.next_announce = now + every;
        }
        // The announcement replaces the ringback.
        self.announcer
            .pending
            .extend(prompts.into_iter().map(|p| p.path));
        if let Some((playback, _, true)) = self.announcer.playing {
            fx.media(MediaCommand::StopPlayback {
                call: call_ref,
                leg: LegId::Caller,
                playback,
            });
            self.announcer.playing = None;
        }
        fx.timeline(
            call_ref,
            CallEventKind::QueueAnnounce,
            format!("position {position}"),
        );
        self.announce(now, call, fx);
        if head {
            self.retry_from_queue(now, call, fx);
        }
    }

    /// The head of a queue rings the route's targets again.
    pub(crate) fn retry_from_queue(
        &mut self,
        now: Instant,
        call: &CallerView<'_>,
        fx: &mut Effects,
    ) {
        if self.connected.is_some() || self.legs.values().any(|l| l.state.pending()) {
            return;
        }
        self.next_target = 0;
        fx.timeline(
            call.call_ref,
            CallEventKind::QueueRetry,
            "ringing the route's targets again",
        );
        self.ring_next(now, call, fx);
    }
}
