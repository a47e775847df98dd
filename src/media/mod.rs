//! The media side of the shell: one RTP endpoint per call leg, each on its own tokio task so
//! a burst of signalling cannot starve audio.
//!
//! - [`leg`]: the per-leg task — symmetric RTP, the continuous paced outbound stream
//!   (prompts, silence, relayed audio), DTMF (RFC 4733 and in-band, one event per press),
//!   media timeout, and the caller leg's feed of the call recording.
//! - [`relay`]: audio passed between the two legs of a bridged call.
//! - [`recorder`]: the one thread that writes every recording, and start-up crash repair.
//!
//! The manager itself only binds ports, loads prompts (cached) and routes the engine's
//! commands to the leg tasks; it never waits on a task, a socket or the disk.

mod digits;
mod leg;
mod recorder;
mod relay;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use siaga_engine::ids::{CallRef, LegId};
use siaga_engine::io::{MediaCommand, MediaEvent, PlaybackId};
use siaga_media::Prompt;

use crate::calllog::{self, CallLog, Write};
use crate::config::{PortRange, Settings};
use leg::{LegCommand, LegSetup, RecordingFeed};
use recorder::{RecorderHandle, RecorderThread, RecordingId};

/// An event from a leg's media task for the engine.
pub struct MediaEventOut {
    pub call: CallRef,
    pub leg: LegId,
    pub event: MediaEvent,
}

struct LegHandle {
    commands: mpsc::UnboundedSender<LegCommand>,
    task: JoinHandle<()>,
    local: SocketAddr,
}

impl LegHandle {
    fn send(&self, cmd: LegCommand) {
        // A task that has ended has nothing left to do with the command.
        let _ = self.commands.send(cmd);
    }
}

/// A decoded prompt and the file state it was decoded from.
struct CachedPrompt {
    modified: Option<SystemTime>,
    len: u64,
    prompt: Prompt,
}

/// How long shutdown waits for the leg tasks to hand over their last audio.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

pub struct MediaManager {
    ports: PortRange,
    /// Index (among the even ports of the range) to try first for the next leg.
    next_port: u32,
    legs: HashMap<(CallRef, LegId), LegHandle>,
    /// The agency leg each bridged call's caller is connected to.
    bridges: HashMap<CallRef, LegId>,
    events: mpsc::Sender<MediaEventOut>,
    media_timeout: Duration,
    calllog: CallLog,
    recordings: PathBuf,
    recorder: RecorderHandle,
    recorder_thread: RecorderThread,
    repair: Option<std::thread::JoinHandle<()>>,
    next_recording: u64,
    prompts: HashMap<PathBuf, CachedPrompt>,
}

impl MediaManager {
    /// Starts the recording writer and, in the background, the repair of recordings a
    /// crash left behind: every header under the recordings directory, and the `unfinished`
    /// recordings of the call log ([`calllog::Recovery::unfinished`]).
    pub fn new(
        settings: &Settings,
        events: mpsc::Sender<MediaEventOut>,
        calllog: CallLog,
        unfinished: Vec<(u64, PathBuf)>,
    ) -> Self {
        let started = SystemTime::now();
        let repair = recorder::start_repair(
            settings.recordings.clone(),
            started,
            unfinished,
            calllog.clone(),
        );
        let (recorder, recorder_thread) = RecorderThread::start(calllog.clone());
        Self {
            ports: settings.rtp_ports,
            next_port: 0,
            legs: HashMap::new(),
            bridges: HashMap::new(),
            events,
            media_timeout: settings.media_timeout,
            calllog,
            recordings: settings.recordings.clone(),
            recorder,
            recorder_thread,
            repair,
            next_recording: 1,
            prompts: HashMap::new(),
        }
    }

    /// Handles a command. `Allocate` is answered at once (binding a port does not block), and
    /// so is a `Play` whose prompt cannot be played; everything else is answered later
    /// through the events channel.
    pub fn handle(&mut self, cmd: MediaCommand) -> Option<MediaEventOut> {
        match cmd {
            MediaCommand::Allocate {
                call,
                leg,
                local_ip,
            } => Some(MediaEventOut {
                call,
                leg,
                event: self.allocate(call, leg, local_ip),
            }),
            MediaCommand::Start { call, leg, session } => {
                if let Some(l) = self.legs.get(&(call, leg)) {
                    l.send(LegCommand::Start(session));
                }
                None
            }
            MediaCommand::Play {
                call,
                leg,
                playback,
                prompt,
            } => self.play(call, leg, playback, &prompt),
            MediaCommand::StopPlayback {
                call,
                leg,
                playback,
            } => {
                if let Some(l) = self.legs.get(&(call, leg)) {
                    l.send(LegCommand::StopPlayback { playback });
                }
                None
            }
            MediaCommand::Bridge { call, agency } => {
                self.bridge(call, agency);
                None
            }
            MediaCommand::Unbridge { call } => {
                self.unbridge(call);
                None
            }
            MediaCommand::Release { call, leg } => {
                if leg == LegId::Caller || self.bridges.get(&call) == Some(&leg) {
                    self.unbridge(call);
                }
                if let Some(l) = self.legs.remove(&(call, leg)) {
                    // The task finalises the recording and ends; nobody waits for it.
                    l.send(LegCommand::Release);
                }
                None
            }
        }
    }

    fn allocate(&mut self, call: CallRef, leg: LegId, local_ip: IpAddr) -> MediaEvent {
        if let Some(old) = self.legs.remove(&(call, leg)) {
            tracing::warn!(%call, %leg, "leg allocated twice; the earlier port is released");
            old.send(LegCommand::Release);
        }
        let socket = match self.bind(local_ip) {
            Ok(socket) => socket,
            Err(e) => {
                return MediaEvent::AllocationFailed {
                    reason: format!(
                        "no RTP port free on {local_ip} in {}-{}: {e}",
                        self.ports.first, self.ports.last
                    ),
                };
            }
        };
        let local = match socket.local_addr() {
            Ok(local) => local,
            Err(e) => {
                return MediaEvent::AllocationFailed {
                    reason: format!("bound RTP socket has no address: {e}"),
                };
            }
        };
        let recording = (leg == LegId::Caller).then(|| {
            let id = RecordingId(self.next_recording);
            self.next_recording += 1;
            let path = recorder::recording_path(&self.recordings, call.0, SystemTime::now());
            self.recorder.open(id, call.0, path.clone());
            RecordingFeed::new(id, path, self.recorder.clone())
        });
        let (commands, rx) = mpsc::unbounded_channel();
        let setup = LegSetup {
            call,
            leg,
            socket,
            events: self.events.clone(),
            calllog: self.calllog.clone(),
            media_timeout: self.media_timeout,
            recording,
            random: random_u64(call.0, leg),
        };
        let task = tokio::spawn(leg::run(setup, rx));
        self.legs.insert(
            (call, leg),
            LegHandle {
                commands,
                task,
                local,
            },
        );
        tracing::debug!(%call, %leg, %local, "RTP port bound");
        MediaEvent::Allocated { local }
    }

    /// Binds the next free even port of the range (RTCP would take the odd one above).
    fn bind(&mut self, ip: IpAddr) -> std::io::Result<tokio::net::UdpSocket> {
        let first_even = self.ports.first + self.ports.first % 2;
        if first_even > self.ports.last {
            return Err(std::io::Error::other("the range holds no even port"));
        }
        let count = u32::from(self.ports.last - first_even) / 2 + 1;
        let mut last_err = std::io::Error::other("every port in the range is in use");
        for i in 0..count {
            let index = (self.next_port + i) % count;
            let Ok(port) = u16::try_from(u32::from(first_even) + 2 * index) else {
                continue;
            };
            match std::net::UdpSocket::bind(SocketAddr::new(ip, port)) {
                Ok(s) => {
                    self.next_port = (index + 1) % count;
                    s.set_nonblocking(true)?;
                    return tokio::net::UdpSocket::from_std(s);
                }
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    fn play(
        &mut self,
        call: CallRef,
        leg: LegId,
        playback: PlaybackId,
        path: &Path,
    ) -> Option<MediaEventOut> {
        let finished_now = Some(MediaEventOut {
            call,
            leg,
            event: MediaEvent::PromptFinished { playback },
        });
        if !self.legs.contains_key(&(call, leg)) {
            return finished_now;
        }
        let prompt = match self.load_prompt(path) {
            Ok(prompt) => prompt,
            Err(why) => {
                // The IVR must never stall on a bad file: log it and call it finished.
                tracing::error!(%call, prompt = %path.display(), why, "prompt cannot be played");
                self.calllog.send(Write::Event {
                    call: Some(call.0),
                    at_ms: calllog::now_ms(),
                    kind: "prompt_failed".into(),
                    detail: format!("{}: {why}", path.display()),
                });
                return finished_now;
            }
        };
        if let Some(l) = self.legs.get(&(call, leg)) {
            l.send(LegCommand::Play { playback, prompt });
        }
        None
    }

    /// Decodes a prompt file, or takes it from the cache while the file is unchanged.
    fn load_prompt(&mut self, path: &Path) -> Result<Prompt, String> {
        let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
        let modified = meta.modified().ok();
        if let Some(cached) = self.prompts.get(path)
            && cached.modified == modified
            && cached.len == meta.len()
        {
            return Ok(cached.prompt.clone());
        }
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let prompt = Prompt::from_wav(&bytes).map_err(|e| e.to_string())?;
        self.prompts.insert(
            path.to_path_buf(),
            CachedPrompt {
                modified,
                len: meta.len(),
                prompt: prompt.clone(),
            },
        );
        Ok(prompt)
    }

    fn bridge(&mut self, call: CallRef, agency: LegId) {
        self.unbridge(call);
        let (Some(caller), Some(agent)) = (
            self.legs.get(&(call, LegId::Caller)),
            self.legs.get(&(call, agency)),
        ) else {
            tracing::error!(%call, %agency, "bridge asked for a leg without media");
            self.calllog.send(Write::Event {
                call: Some(call.0),
                at_ms: calllog::now_ms(),
                kind: "bridge_failed".into(),
                detail: format!("no media for leg A or {agency}: audio cannot be relayed"),
            });
            return;
        };
        let caller_hears = relay::SharedRelay::default();
        let agency_hears = relay::SharedRelay::default();
        caller.send(LegCommand::Bridge {
            to_peer: agency_hears.clone(),
            from_peer: caller_hears.clone(),
        });
        agent.send(LegCommand::Bridge {
            to_peer: caller_hears,
            from_peer: agency_hears,
        });
        tracing::debug!(%call, %agency, caller = %caller.local, agent = %agent.local, "bridged");
        self.bridges.insert(call, agency);
    }

    fn unbridge(&mut self, call: CallRef) {
        if let Some(agency) = self.bridges.remove(&call) {
            for leg in [LegId::Caller, agency] {
                if let Some(l) = self.legs.get(&(call, leg)) {
                    l.send(LegCommand::Unbridge);
                }
            }
        }
    }

    /// Ends every leg (finalising their recordings), then the recording writer.
    pub async fn shutdown(&mut self) {
        self.bridges.clear();
        let tasks: Vec<JoinHandle<()>> = self
            .legs
            .drain()
            .map(|(_, l)| {
                l.send(LegCommand::Release);
                l.task
            })
            .collect();
        for task in tasks {
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                tracing::warn!("a media task did not end in time");
            }
        }
        self.recorder.shutdown();
        let mut thread = std::mem::replace(&mut self.recorder_thread, RecorderThread::none());
        let repair = self.repair.take();
        let joined = tokio::task::spawn_blocking(move || {
            thread.join();
            if let Some(r) = repair {
                let _ = r.join();
            }
        })
        .await;
        if joined.is_err() {
            tracing::error!("recording threads did not end cleanly");
        }
    }

    /// Waits for the start-up repair to finish (tests).
    #[cfg(test)]
    fn wait_for_repair(&mut self) {
        if let Some(r) = self.repair.take() {
            let _ = r.join();
        }
    }
}

/// Random bits for SSRC and first sequence number/timestamp (RFC 3550 §5.1). Not
/// cryptographic; std's per-process random hash keys are enough.
fn random_u64(call: u64, leg: LegId) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    call.hash(&mut h);
    leg.hash(&mut h);
    SystemTime::now().hash(&mut h);
    h.finish()
}
