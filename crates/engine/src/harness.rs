//! The shell played in virtual time, for the engine's tests and its fuzz target (cargo feature
//! `harness`). It drives the engine through its public door only: time moves when the test says
//! (`advance`) and every timer due on the way fires in order; a scripted media side answers
//! the engine's commands as the real one would — a port for each `Allocate`, and, when asked,
//! the caller's first packet for `Start` and the end of each prompt for `Play`; every output is
//! recorded for the test to read. Pure like the rest of the crate: the start instant is an
//! argument, and there are no sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use siaga_dialplan::{Dialplan, Source};

use crate::call::EndReason;
use crate::ids::{CallRef, LegId};
use crate::io::{Flow, Input, LogRecord, MediaCommand, MediaEvent, Output, PlaybackId};
use crate::{Engine, EngineConfig};

/// Where the shipped default plan lives: its prompts are named relative to it.
const DEFAULT_PLAN_PATH: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../dialplans/default.toml");

/// A plan from its text; every prompt counts as present (the engine only names them).
pub fn plan(path: &str, text: &str) -> Arc<Dialplan> {
    let plan = siaga_dialplan::validate(&[Source::new(path, text)], &|_| true)
        .unwrap_or_else(|errors| panic!("{path} does not validate: {errors:?}"));
    Arc::new(plan)
}

/// The shipped `dialplans/default.toml` (built in, so the fuzz target needs no file either).
pub fn default_plan() -> Arc<Dialplan> {
    plan(
        DEFAULT_PLAN_PATH,
        include_str!("../../../dialplans/default.toml"),
    )
}

/// When the stand-in media side reports a prompt as finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prompts {
    /// Never by itself: the test sends `PromptFinished` when it wants (IVR timing).
    Manual,
    /// As soon as it starts (tests about signalling, not the menu).
    EndAtOnce,
    /// Whenever virtual time moves on, so IVR timers keep going however the input plays.
    EndWhenTimeMoves,
}

/// How the stand-in media side answers. It always gives `Allocate` a port at once: 40000 for
/// the caller, 40000 + 2n for agency leg n, on 198.51.100.1.
#[derive(Clone, Copy, Debug)]
pub struct MediaSide {
    pub prompts: Prompts,
    /// The first `Start` of each call is answered with `FirstPacket` on its leg; otherwise
    /// the test reports media itself (or never, to play a caller without RTP).
    pub first_packet_on_start: bool,
}

/// A message the gateway sent.
#[derive(Clone, Debug)]
pub struct Sent {
    /// Virtual time since the harness started.
    pub at: Duration,
    pub flow: Flow,
    pub bytes: Vec<u8>,
}

impl Sent {
    /// The message as text (the gateway's own messages are UTF-8).
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.bytes).expect("the gateway sends UTF-8")
    }
}

/// The engine, a virtual clock, a scripted media side and a record of everything out.
pub struct Harness {
    pub engine: Engine,
    /// The start of virtual time.
    pub t0: Instant,
    pub now: Instant,
    pub media_side: MediaSide,
    /// Messages the gateway sent, in order, unless the network lost them (`lose_out`).
    pub sent: Vec<Sent>,
    pub logs: Vec<LogRecord>,
    /// Every media command, in order.
    pub media: Vec<MediaCommand>,
    /// The network loses the gateway's next message whose first line starts with each of
    /// these (each entry once).
    pub lose_out: Vec<String>,
    /// Outputs in the whole run beyond which the engine is taken to be looping (a panic).
    pub output_limit: usize,
    outputs: usize,
    /// Prompts playing under `Prompts::EndWhenTimeMoves`.
    playing: Vec<(CallRef, LegId, PlaybackId)>,
    /// Calls whose first packet was reported under `first_packet_on_start`.
    media_flowing: Vec<CallRef>,
}

/// Timer rounds within one `advance` beyond which the timers are taken to be looping.
const MAX_TIMER_ROUNDS: u32 = 200_000;
/// Rounds at one deadline beyond which a timer is taken to be never consumed.
const MAX_ROUNDS_AT_ONE_INSTANT: u32 = 10_000;

impl Harness {
    /// A fresh engine at `t0`, with a media side that only allocates ports.
    pub fn new(cfg: EngineConfig, plan: Arc<Dialplan>, t0: Instant) -> Self {
        Self {
            engine: Engine::new(cfg, plan, t0),
            t0,
            now: t0,
            media_side: MediaSide {
                prompts: Prompts::Manual,
                first_packet_on_start: false,
            },
            sent: Vec::new(),
            logs: Vec::new(),
            media: Vec::new(),
            lose_out: Vec::new(),
            output_limit: usize::MAX,
            outputs: 0,
            playing: Vec::new(),
            media_flowing: Vec::new(),
        }
    }

    /// Hands `input` to the engine now and takes everything that comes out.
    pub fn input(&mut self, input: Input<'_>) {
        self.engine.handle_input(self.now, input);
        self.drain();
    }

    /// A datagram (or TCP message) arrives on `flow`.
    pub fn sip(&mut self, flow: Flow, data: &[u8]) {
        self.input(Input::Sip { flow, data });
    }

    /// The media side reports `event` on a leg of `call`.
    pub fn media_event(&mut self, call: CallRef, leg: LegId, event: MediaEvent) {
        self.input(Input::Media { call, leg, event });
    }

    /// Takes every pending output, answering media commands as the media side would.
    pub fn drain(&mut self) {
        while let Some(out) = self.engine.poll_output() {
            self.outputs += 1;
            assert!(
                self.outputs < self.output_limit,
                "the engine keeps producing output"
            );
            match out {
                Output::Transmit { flow, bytes } => {
                    let first = bytes.split(|&b| b == b'\r' || b == b'\n').next();
                    let first = String::from_utf8_lossy(first.unwrap_or_default());
                    if let Some(i) = self.lose_out.iter().position(|p| first.starts_with(p)) {
                        self.lose_out.remove(i);
                        continue;
                    }
                    let at = self.now.saturating_duration_since(self.t0);
                    self.sent.push(Sent { at, flow, bytes });
                }
                Output::Log(record) => self.logs.push(record),
                Output::Media(cmd) => {
                    self.answer(&cmd);
                    self.media.push(cmd);
                }
            }
        }
    }

    /// The media side's reply to one command (its outputs wait in the engine's queue).
    fn answer(&mut self, cmd: &MediaCommand) {
        match *cmd {
            MediaCommand::Allocate { call, leg, .. } => {
                let port = match leg {
                    LegId::Caller => 40000,
                    LegId::Agency(n) => 40000u16.wrapping_add((n as u16).wrapping_mul(2)),
                };
                let local = SocketAddr::new([198, 51, 100, 1].into(), port);
                let event = MediaEvent::Allocated { local };
                self.engine
                    .handle_input(self.now, Input::Media { call, leg, event });
            }
            MediaCommand::Start { call, leg, .. } => {
                if self.media_side.first_packet_on_start && !self.media_flowing.contains(&call) {
                    self.media_flowing.push(call);
                    let event = MediaEvent::FirstPacket;
                    self.engine
                        .handle_input(self.now, Input::Media { call, leg, event });
                }
            }
            MediaCommand::Play {
                call,
                leg,
                playback,
                ..
            } => match self.media_side.prompts {
                Prompts::Manual => {}
                Prompts::EndAtOnce => {
                    let event = MediaEvent::PromptFinished { playback };
                    self.engine
                        .handle_input(self.now, Input::Media { call, leg, event });
                }
                Prompts::EndWhenTimeMoves => {
                    self.playing.retain(|(c, l, _)| !(*c == call && *l == leg));
                    self.playing.push((call, leg, playback));
                }
            },
            MediaCommand::StopPlayback {
                call,
                leg,
                playback,
            } => self.playing.retain(|p| *p != (call, leg, playback)),
            MediaCommand::Release { call, .. } => self.playing.retain(|(c, _, _)| *c != call),
            MediaCommand::PeerMoved { .. }
            | MediaCommand::Bridge { .. }
            | MediaCommand::Unbridge { .. } => {}
        }
    }

    /// Under `Prompts::EndWhenTimeMoves`: every prompt playing reaches its end.
    fn end_prompts(&mut self) {
        for (call, leg, playback) in std::mem::take(&mut self.playing) {
            self.media_event(call, leg, MediaEvent::PromptFinished { playback });
        }
    }

    /// Moves virtual time on by `by`, firing every timer due on the way.
    pub fn advance(&mut self, by: Duration) {
        if !by.is_zero() {
            self.end_prompts();
        }
        self.advance_to(self.now + by);
    }

    /// Moves virtual time on to `until` (if later), firing every timer due on the way.
    /// Panics if the timers loop: too many rounds, or a deadline that firing does not consume.
    pub fn advance_to(&mut self, until: Instant) {
        let mut rounds = 0u32;
        let mut last = None;
        let mut rounds_at_last = 0u32;
        while let Some(at) = self.engine.poll_timeout() {
            if at > until {
                break;
            }
            rounds += 1;
            assert!(
                rounds <= MAX_TIMER_ROUNDS,
                "more than {MAX_TIMER_ROUNDS} timer rounds before {until:?}"
            );
            if last == Some(at) {
                rounds_at_last += 1;
                assert!(
                    rounds_at_last < MAX_ROUNDS_AT_ONE_INSTANT,
                    "timer livelock: deadline {at:?} keeps coming back"
                );
            } else {
                rounds_at_last = 0;
                last = Some(at);
            }
            self.now = self.now.max(at);
            self.input(Input::Timeout);
            self.end_prompts();
        }
        self.now = self.now.max(until);
    }

    /// Every message sent since the last take, as text.
    pub fn take_sent(&mut self) -> Vec<String> {
        self.sent.drain(..).map(|s| s.text().to_owned()).collect()
    }

    /// Messages sent to `to` whose first line starts with `prefix`, removed from the record.
    pub fn take_to(&mut self, to: SocketAddr, prefix: &str) -> Vec<String> {
        let (hit, keep): (Vec<Sent>, Vec<Sent>) = self
            .sent
            .drain(..)
            .partition(|s| s.flow.remote == to && s.text().starts_with(prefix));
        self.sent = keep;
        hit.iter().map(|s| s.text().to_owned()).collect()
    }

    /// The calls started so far, in order.
    pub fn started_calls(&self) -> Vec<CallRef> {
        self.logs
            .iter()
            .filter_map(|r| match r {
                LogRecord::CallStarted(s) => Some(s.call),
                _ => None,
            })
            .collect()
    }

    /// Why each call ended, in order.
    pub fn end_reasons(&self) -> Vec<EndReason> {
        self.logs
            .iter()
            .filter_map(|r| match r {
                LogRecord::CallEnded { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }
}

/// The value of the first header named one of `names` (case-insensitive, so compact forms can
/// be listed), trimmed; only the header section is searched.
pub fn header<'a>(message: &'a str, names: &[&str]) -> Option<&'a str> {
    message
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            let name = name.trim();
            names
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name))
                .then_some(value.trim())
        })
}

/// A UDP flow between two `ip:port` texts (test addresses; panics on a typo).
pub fn udp_flow(remote: &str, local: &str) -> Flow {
    Flow {
        transport: crate::io::Transport::Udp,
        remote: remote.parse().expect("a remote ip:port"),
        local: local.parse().expect("a local ip:port"),
        conn: None,
    }
}

/// A response to `request` (a peer's answer in a test): its Via, From, To (with `to_tag` added
/// when given), Call-ID and CSeq, then `extra` header lines and an optional typed body.
pub fn response_to(
    request: &str,
    status: u16,
    to_tag: Option<&str>,
    extra: &str,
    body: Option<(&str, &str)>,
) -> String {
    let h = |name: &str| header(request, &[name]).unwrap_or_default();
    let to = match to_tag {
        Some(tag) => format!("{};tag={tag}", h("To")),
        None => h("To").to_owned(),
    };
    let (content_type, body) = match body {
        Some((ct, body)) => (format!("Content-Type: {ct}\r\n"), body),
        None => (String::new(), ""),
    };
    format!(
        "SIP/2.0 {status} X\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
         {extra}{content_type}Content-Length: {}\r\n\r\n{body}",
        h("Via"),
        h("From"),
        h("Call-ID"),
        h("CSeq"),
        body.len()
    )
}

/// The `tag` parameter of a From or To value.
pub fn tag(name_addr: &str) -> Option<&str> {
    let rest = name_addr.split(";tag=").nth(1)?;
    rest.split([';', ' ', '>']).next()
}
