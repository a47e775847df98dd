//! The media side of the shell: one RTP endpoint per call leg, driven by a few media
//! reactors on their own threads, so a burst of signalling cannot starve audio.
//!
//! Design — a reactor thread per core, not a task per leg. There is one reactor per core
//! (`available_parallelism`, at least 1); a call's legs always go to the same one
//! (`call % reactors`), which owns them. A reactor's thread blocks in one epoll set holding
//! its legs' sockets and a waker for the manager's commands, with its next 10 ms tick as the
//! timeout. When a socket has datagrams it reads them (at most 8 per wake-up, so a flooding
//! peer cannot starve the others) and a bridged leg's audio is sent on by the peer leg at
//! once: same law and packet time, its codes unchanged, inside the peer's own stream (its
//! SSRC, sequence numbers, the sender's timing in the timestamps). At each tick every leg
//! sends what its outbound stream has due — prompts, silence, audio that must be transcoded
//! or mixed, or a fill when the relayed packets paused — and every 10th tick (staggered) does
//! its housekeeping.
//! Why: with a task per leg, 200 bridged, recorded calls cost 0.15 CPU-s per call-minute,
//! most of it task machinery (a tokio wake-up per packet, a timer per leg firing 50 times a
//! second). A reactor thread pays one `epoll_wait` per wake-up for all the sockets ready at
//! that moment and has no per-leg timers; its sockets are plain non-blocking std sockets. An
//! earlier design read the sockets only at the 10 ms tick and relayed through a play-out
//! buffer: cheaper wake-ups, but ~30 ms of added delay each way (issue 17); forwarding on
//! arrival adds well under a millisecond. A reactor never blocks on anything but its wait:
//! file IO is on the recorder thread, prompts are decoded in the manager; a leg whose code
//! panics is dropped alone.
//!
//! - [`reactor`]: the reactor thread, its wake-ups and tick; [`poller`]: its epoll set and
//!   waker.
//! - [`leg`]: one leg — symmetric RTP, the continuous outbound stream (prompts, silence,
//!   relayed audio), DTMF (RFC 4733 and in-band, one event per press), media timeout, and the
//!   caller leg's feed of the call recording.
//! - [`recorder`]: the one thread that writes every recording, and start-up crash repair.
//!
//! The manager itself only binds ports, loads prompts (cached) and routes the engine's
//! commands to the reactors; it never waits on a thread, a socket or the disk.

mod leg;
mod poller;
mod reactor;
mod recorder;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use siaga_engine::ids::{CallRef, LegId};
use siaga_engine::io::{MediaCommand, MediaEvent, PlaybackId};
use siaga_engine::timeline::CallEventKind;
use siaga_media::{LatchConfig, Prompt};

use crate::calllog::CallLog;
use crate::config::{PortRange, Settings};
use leg::{LegCommand, LegSetup, RecordingFeed};
use reactor::ReactorCommand;
pub(crate) use recorder::recorded_ms;
use recorder::{RecorderHandle, RecorderThread, RecordingId};

/// An event from a leg for the engine.
pub struct MediaEventOut {
    pub call: CallRef,
    pub leg: LegId,
    pub event: MediaEvent,
}

/// A leg as the manager knows it: which reactor runs it, and its port.
struct LegHandle {
    reactor: usize,
    local: SocketAddr,
}

/// A running reactor thread, its command queue and the waker that makes it read the queue.
struct Reactor {
    commands: std::sync::mpsc::Sender<ReactorCommand>,
    waker: Option<poller::Waker>,
    thread: std::thread::JoinHandle<()>,
}

impl Reactor {
    fn start(index: usize) -> std::io::Result<Reactor> {
        let (commands, rx) = std::sync::mpsc::channel();
        let (poller, waker) = reactor::readiness();
        let thread_waker = waker.clone();
        let thread = std::thread::Builder::new()
            .name(format!("siaga-media-{index}"))
            .spawn(move || reactor::run(rx, poller, thread_waker))?;
        Ok(Reactor {
            commands,
            waker,
            thread,
        })
    }

    fn send(&self, cmd: ReactorCommand) {
        // A reactor that has ended has nothing left to do with the command.
        if self.commands.send(cmd).is_ok()
            && let Some(waker) = self.waker.as_ref()
        {
            waker.wake();
        }
    }

    /// Closes the queue; the reactor applies what was queued, finishes its legs and ends.
    fn stop(self) -> std::thread::JoinHandle<()> {
        let Reactor {
            commands,
            waker,
            thread,
        } = self;
        drop(commands);
        if let Some(waker) = waker {
            waker.wake();
        }
        thread
    }
}

/// How many reactors: one per core.
fn reactor_count() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// A decoded prompt and the file state it was decoded from.
struct CachedPrompt {
    modified: Option<SystemTime>,
    len: u64,
    prompt: Prompt,
}

/// How long shutdown waits for each reactor to hand over its legs' last audio.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

pub struct MediaManager {
    ports: PortRange,
    latch: LatchConfig,
    legs: HashMap<(CallRef, LegId), LegHandle>,
    /// The media reactors, started with the first leg (index: `call % reactor_count`).
    reactors: Vec<Reactor>,
    reactor_count: usize,
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
        unfinished: Vec<crate::calllog::UnfinishedRecording>,
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
            latch: LatchConfig::default(),
            legs: HashMap::new(),
            reactors: Vec::new(),
            reactor_count: reactor_count().max(1),
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
                peer_ip,
            } => Some(MediaEventOut {
                call,
                leg,
                event: self.allocate(call, leg, local_ip, peer_ip),
            }),
            MediaCommand::Start { call, leg, session } => {
                self.send(call, leg, LegCommand::Start(session));
                None
            }
            MediaCommand::PeerMoved { call, leg, peer_ip } => {
                self.send(call, leg, LegCommand::PeerMoved(peer_ip));
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
                self.send(call, leg, LegCommand::StopPlayback { playback });
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
                // The reactor finalises the recording and drops the leg; nobody waits for it.
                self.send(call, leg, LegCommand::Release);
                self.legs.remove(&(call, leg));
                None
            }
        }
    }

    /// Sends a command to a leg's reactor, if the leg exists.
    fn send(&self, call: CallRef, leg: LegId, cmd: LegCommand) {
        if let Some(r) = self
            .legs
            .get(&(call, leg))
            .and_then(|l| self.reactors.get(l.reactor))
        {
            r.send(ReactorCommand::Leg { call, leg, cmd });
        }
    }

    /// The reactor for a call's legs, starting the reactors with the first leg.
    fn reactor_for(&mut self, call: CallRef) -> usize {
        if self.reactors.is_empty() {
            self.reactors = (0..self.reactor_count)
                .filter_map(|index| match Reactor::start(index) {
                    Ok(reactor) => Some(reactor),
                    Err(e) => {
                        tracing::error!(error = %e, "media reactor thread not started");
                        None
                    }
                })
                .collect();
        }
        let count = self.reactors.len().max(1) as u64;
        usize::try_from(call.0 % count).unwrap_or(0)
    }

    fn allocate(
        &mut self,
        call: CallRef,
        leg: LegId,
        local_ip: IpAddr,
        peer_ip: IpAddr,
    ) -> MediaEvent {
        if self.legs.contains_key(&(call, leg)) {
            tracing::warn!(%call, %leg, "leg allocated twice; the earlier port is released");
            self.send(call, leg, LegCommand::Release);
            self.legs.remove(&(call, leg));
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
        let setup = LegSetup {
            call,
            leg,
            socket,
            events: self.events.clone(),
            calllog: self.calllog.clone(),
            media_timeout: self.media_timeout,
            recording,
            random: random_u64(call.0, leg),
            peer_ip,
            latch: self.latch,
        };
        let reactor = self.reactor_for(call);
        if let Some(r) = self.reactors.get(reactor) {
            r.send(ReactorCommand::Create(Box::new(setup)));
        }
        self.legs.insert((call, leg), LegHandle { reactor, local });
        tracing::debug!(%call, %leg, %local, "RTP port bound");
        MediaEvent::Allocated { local }
    }

    /// Binds a random free even port of the range (RTCP would take the odd one above). Random,
    /// so nobody can guess the next call's port and send to it before the caller does; the
    /// latch refuses such packets anyway, this only keeps them rare. The socket is
    /// non-blocking; its reactor watches it.
    fn bind(&mut self, ip: IpAddr) -> std::io::Result<std::net::UdpSocket> {
        let first_even = self.ports.first + self.ports.first % 2;
        if first_even > self.ports.last {
            return Err(std::io::Error::other("the range holds no even port"));
        }
        let count = u32::from(self.ports.last - first_even) / 2 + 1;
        let port_at = |index: u32| u16::try_from(u32::from(first_even) + 2 * index).ok();
        let mut last_err = std::io::Error::other("every port in the range is in use");
        // A few random picks find a free port unless the range is nearly full; then one pass
        // over every port from a random start, so a free port is never missed.
        let random_picks = (0..RANDOM_PICKS).map(|_| random_index(count));
        let sweep = std::iter::once(()).flat_map(|()| {
            let start = random_index(count);
            (0..count).map(move |i| (start + i) % count)
        });
        for port in random_picks.chain(sweep).filter_map(port_at) {
            match std::net::UdpSocket::bind(SocketAddr::new(ip, port)) {
                Ok(s) => {
                    s.set_nonblocking(true)?;
                    return Ok(s);
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
                self.calllog.timeline(
                    call,
                    CallEventKind::PromptFailed,
                    format!("{}: {why}", path.display()),
                );
                return finished_now;
            }
        };
        self.send(call, leg, LegCommand::Play { playback, prompt });
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
            self.calllog.timeline(
                call,
                CallEventKind::BridgeFailed,
                format!("no media for leg A or {agency}: audio cannot be relayed"),
            );
            return;
        };
        tracing::debug!(%call, %agency, caller = %caller.local, agent = %agent.local, "bridged");
        self.send(call, LegId::Caller, LegCommand::Bridge { peer: agency });
        self.send(
            call,
            agency,
            LegCommand::Bridge {
                peer: LegId::Caller,
            },
        );
        self.bridges.insert(call, agency);
    }

    fn unbridge(&mut self, call: CallRef) {
        if let Some(agency) = self.bridges.remove(&call) {
            for leg in [LegId::Caller, agency] {
                self.send(call, leg, LegCommand::Unbridge);
            }
        }
    }

    /// Ends every leg (finalising their recordings), then the recording writer.
    pub async fn shutdown(&mut self) {
        self.bridges.clear();
        self.legs.clear();
        // Closing its queue ends a reactor once it has applied what was queued; it then
        // finishes every leg it still has.
        let threads: Vec<std::thread::JoinHandle<()>> = std::mem::take(&mut self.reactors)
            .into_iter()
            .map(Reactor::stop)
            .collect();
        for thread in threads {
            let joined = tokio::task::spawn_blocking(move || thread.join());
            if tokio::time::timeout(SHUTDOWN_GRACE, joined).await.is_err() {
                tracing::warn!("a media reactor did not end in time");
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

/// Random port picks before the sweep over the whole range.
const RANDOM_PICKS: u32 = 16;

/// A random index below `count` (> 0), from the operating system's generator: RTP ports must
/// not be predictable from the ones a caller has seen. The modulo bias is below 2^-16 for any
/// port range.
fn random_index(count: u32) -> u32 {
    let r = getrandom::u64().unwrap_or_else(|_| random_u64(u64::from(count), LegId::Caller));
    u32::try_from(r % u64::from(count.max(1))).unwrap_or(0)
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
