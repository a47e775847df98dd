//! Prompts a call plays to its caller outside the IVR — a policy's announcement, the flood
//! challenge — one after another. Each kind tags its playbacks with its own bit, so the media
//! side's "finished" reaches the right owner and never the IVR.

use std::collections::VecDeque;
use std::path::PathBuf;

use crate::effects::Effects;
use crate::ids::{CallRef, LegId};
use crate::io::{MediaCommand, PlaybackId};
use crate::timeline::CallEventKind;

#[derive(Debug)]
pub(crate) struct PromptQueue {
    pending: VecDeque<PathBuf>,
    playing: Option<PlaybackId>,
    /// The playback id bit of this kind of prompt.
    tag: u64,
    /// On the timeline after each prompt's path: "(flood challenge)".
    label: &'static str,
}

impl PromptQueue {
    pub(crate) fn new(
        prompts: impl IntoIterator<Item = PathBuf>,
        tag: u64,
        label: &'static str,
    ) -> Self {
        PromptQueue {
            pending: prompts.into_iter().collect(),
            playing: None,
            tag,
            label,
        }
    }

    /// Starts the next prompt on the caller's leg, on the timeline; false when none is left.
    pub(crate) fn play_next(&mut self, call: CallRef, fx: &mut Effects) -> bool {
        let Some(prompt) = self.pending.pop_front() else {
            self.playing = None;
            return false;
        };
        fx.next_playback += 1;
        let playback = PlaybackId(self.tag | fx.next_playback);
        self.playing = Some(playback);
        fx.timeline(
            call,
            CallEventKind::PromptStarted,
            format!("play {} ({})", prompt.display(), self.label),
        );
        fx.media(MediaCommand::Play {
            call,
            leg: LegId::Caller,
            playback,
            prompt,
        });
        true
    }

    /// Whether `playback` is the prompt this queue is playing now.
    pub(crate) fn is_playing(&self, playback: PlaybackId) -> bool {
        self.playing == Some(playback)
    }

    /// Every prompt has played (or none was given).
    pub(crate) fn is_done(&self) -> bool {
        self.playing.is_none() && self.pending.is_empty()
    }

    /// Stops the prompt playing now, if any (the rest stay queued).
    pub(crate) fn stop(&mut self, call: CallRef, fx: &mut Effects) {
        if let Some(playback) = self.playing.take() {
            fx.media(MediaCommand::StopPlayback {
                call,
                leg: LegId::Caller,
                playback,
            });
        }
    }
}
