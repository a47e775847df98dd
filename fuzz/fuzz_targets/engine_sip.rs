//! The whole engine on garbage: a fresh `Engine` (default config, the shipped default dial
//! plan) fed the input as one UDP datagram, then — on a second fresh engine — as a sequence
//! of datagrams split on the separator byte 0xFF, with virtual time advancing between them.
//! Each run ends with 10 virtual minutes of timers, a `HangUp` of every call left, and 10 more
//! minutes. The engine's own harness (`siaga_engine::harness`, shared with its tests) plays
//! the shell: it answers `Allocate` with `Allocated`, the first `Start` of a call with
//! `FirstPacket`, and `Play` with `PromptFinished` when virtual time next moves.
//!
//! Segment layout (second phase): `[control][message]`, where `control` picks
//! - bit 0: transport (UDP / TCP connection 1),
//! - bit 1: the caller's address, or the flow of the gateway's latest own request (an agency,
//!   or the caller for a BYE) once there is one,
//! - bits 2–4: virtual time to advance first (0, 10 ms, 100 ms, 500 ms, 2 s, 10 s, 40 s, 200 s),
//! - bits 5–7: an extra input after the message: 0–1 none, 2 the caller's RTP is back on
//!   every call, 3 a media timeout (the caller goes silent, so the gateway probes it) on
//!   every call, 4 a DTMF digit on every call, 5 hang up the first call, 6 a transport error
//!   on the flow, 7 drain.
//!
//! Placeholders let seeds (and the fuzzer) follow a dialog the gateway made: `$TAG` becomes
//! the To-tag of the gateway's latest response; `$FTAG` and `$CALLID` the From-tag and Call-ID
//! of the gateway's latest own request (an agency's in-dialog BYE or REFER needs them); a
//! message starting with `$REPLY ` becomes a
//! response (`$REPLY 200 OK`, the rest of the line is the status) to the gateway's latest own
//! request, copying its Via, From, To (adding `;tag=fuzzpeer`), Call-ID and CSeq, sent on the
//! flow that request went out on; the lines after it are appended as they are.
//!
//! Properties: no panic; no timer livelock (a due timer that handling `Timeout` does not
//! consume); with `SIAGA_FUZZ_IDLE_CHECK=1`, the engine is idle 10 minutes after every call
//! was hung up (no call or transaction left behind).
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use siaga_dialplan::Dialplan;
use siaga_engine::EngineConfig;
use siaga_engine::harness::{self, Harness, MediaSide, Prompts, header};
use siaga_engine::ids::{ConnId, LegId};
use siaga_engine::io::{Flow, Input, LogRecord, MediaEvent, Transport};

const SEPARATOR: u8 = 0xFF;

fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

fn plan() -> Arc<Dialplan> {
    static PLAN: OnceLock<Arc<Dialplan>> = OnceLock::new();
    PLAN.get_or_init(harness::default_plan).clone()
}

/// `SIAGA_FUZZ_TRACE=1` prints every message in and out (for reading a reproducer).
fn trace() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("SIAGA_FUZZ_TRACE").is_some_and(|v| v == "1"))
}

fn idle_check() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("SIAGA_FUZZ_IDLE_CHECK").is_some_and(|v| v == "1"))
}

/// The engine in the harness, plus what the placeholders of the next message refer to.
struct Shell {
    h: Harness,
    /// To-tag of the gateway's latest response.
    last_tag: Option<String>,
    /// The gateway's latest own request (to a caller or an agency), and where it went.
    last_request: Option<Vec<u8>>,
    last_request_flow: Option<Flow>,
}

fn flow(control: u8) -> Flow {
    let tcp = control & 1 == 1;
    let remote: SocketAddr = if control & 2 == 0 {
        "192.0.2.10:5070".parse().expect("addr")
    } else {
        "[2001:db8::10]:5060".parse().expect("addr")
    };
    Flow {
        transport: if tcp { Transport::Tcp } else { Transport::Udp },
        remote,
        local: "198.51.100.1:5060".parse().expect("addr"),
        conn: tcp.then_some(ConnId(1)),
    }
}

impl Shell {
    fn new() -> Self {
        let mut h = Harness::new(EngineConfig::default(), plan(), t0());
        h.media_side = MediaSide {
            prompts: Prompts::EndWhenTimeMoves,
            first_packet_on_start: true,
        };
        h.output_limit = 1_000_000;
        Shell {
            h,
            last_tag: None,
            last_request: None,
            last_request_flow: None,
        }
    }

    /// Reads the gateway's messages since the last step for the placeholders, and empties
    /// the harness's record (a run can send hundreds of thousands of messages).
    fn follow(&mut self) {
        for sent in self.h.sent.drain(..) {
            let text = String::from_utf8_lossy(&sent.bytes);
            if trace() {
                eprintln!("--- out at {:?}\n{text}", sent.at);
            }
            if !text.starts_with("SIP/2.0 ") {
                self.last_request = Some(sent.bytes);
                self.last_request_flow = Some(sent.flow);
            } else if let Some(tag) = header(&text, &["to", "t"]).and_then(harness::tag) {
                self.last_tag = Some(tag.to_owned());
            }
        }
        for record in self.h.logs.drain(..) {
            if let LogRecord::Timeline { kind, detail, .. } = &record {
                if trace() {
                    eprintln!("--- timeline {kind}: {detail}");
                }
            }
        }
        self.h.media.clear();
    }

    fn input(&mut self, input: Input<'_>) {
        self.h.input(input);
        self.follow();
    }

    /// Runs every timer due up to `by` from now (prompts playing end first), then sets the
    /// clock to it.
    fn advance(&mut self, by: Duration) {
        self.h.advance(by);
        self.follow();
    }

    fn sip(&mut self, flow: Flow, data: &[u8]) {
        if trace() {
            eprintln!(
                "--- in at {:?}\n{}",
                self.h.now - t0(),
                String::from_utf8_lossy(data)
            );
        }
        self.input(Input::Sip { flow, data });
    }

    /// Expands the placeholders of one segment's message.
    fn expand(&self, msg: &[u8]) -> Vec<u8> {
        if let Some(rest) = msg.strip_prefix(b"$REPLY ") {
            if let Some(req) = &self.last_request {
                let req = String::from_utf8_lossy(req);
                let (status, extra) = match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => (&rest[..i], &rest[i + 1..]),
                    None => (rest, &b""[..]),
                };
                let status = String::from_utf8_lossy(status);
                let mut out = format!("SIP/2.0 {}\r\n", status.trim_end());
                for line in req.lines().skip(1).take_while(|l| !l.is_empty()) {
                    let name = line.split(':').next().unwrap_or_default().trim();
                    let keep = ["via", "v", "from", "f", "call-id", "i", "cseq"]
                        .iter()
                        .any(|n| n.eq_ignore_ascii_case(name));
                    if keep {
                        out.push_str(line);
                        out.push_str("\r\n");
                    } else if name.eq_ignore_ascii_case("to") || name.eq_ignore_ascii_case("t") {
                        out.push_str(line);
                        if !line.contains(";tag=") {
                            out.push_str(";tag=fuzzpeer");
                        }
                        out.push_str("\r\n");
                    }
                }
                let mut out = out.into_bytes();
                if extra.is_empty() {
                    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
                } else {
                    out.extend_from_slice(extra);
                }
                return out;
            }
        }
        let req = self
            .last_request
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let call_id = header(&req, &["call-id", "i"])
            .unwrap_or_default()
            .to_owned();
        let from_tag = header(&req, &["from", "f"])
            .and_then(harness::tag)
            .unwrap_or_default()
            .to_owned();
        let subs: [(&[u8], &[u8]); 3] = [
            (b"$TAG", self.last_tag.as_deref().unwrap_or("").as_bytes()),
            (b"$FTAG", from_tag.as_bytes()),
            (b"$CALLID", call_id.as_bytes()),
        ];
        let mut out = Vec::with_capacity(msg.len());
        let mut i = 0;
        'bytes: while i < msg.len() {
            for (from, to) in subs {
                if msg[i..].starts_with(from) {
                    out.extend_from_slice(to);
                    i += from.len();
                    continue 'bytes;
                }
            }
            out.push(msg[i]);
            i += 1;
        }
        out
    }

    /// Ends the run: 10 virtual minutes for every transaction timer to fire (Timer B/F/H/J are
    /// 32 s), then the gateway hangs up every call left (a queued emergency call would otherwise
    /// retry its agencies until the 4 h maximum duration: tens of thousands of messages per
    /// input), then another 10 minutes for the BYEs to complete or time out.
    fn finish(&mut self) {
        self.advance(Duration::from_secs(600));
        for call in self.h.engine.call_refs() {
            self.input(Input::HangUp { call });
        }
        self.advance(Duration::from_secs(600));
        if idle_check() {
            assert!(
                self.h.engine.is_idle(),
                "engine not idle 10 min after hanging up every call: calls {:?}, next timer in {:?}",
                self.h.engine.call_refs(),
                self.h
                    .engine
                    .poll_timeout()
                    .map(|t| t.saturating_duration_since(self.h.now))
            );
        }
    }
}

const STEPS: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_millis(10),
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
    Duration::from_secs(10),
    Duration::from_secs(40),
    Duration::from_secs(200),
];

fuzz_target!(|data: &[u8]| {
    // Phase 1: the whole input as one datagram.
    let mut shell = Shell::new();
    shell.sip(flow(0), data);
    shell.finish();

    // Phase 2: a sequence of datagrams.
    if !data.contains(&SEPARATOR) {
        return;
    }
    let mut shell = Shell::new();
    for segment in data.split(|&b| b == SEPARATOR) {
        let Some((&control, msg)) = segment.split_first() else {
            continue;
        };
        let flow = match shell.last_request_flow {
            Some(f) if control & 2 != 0 || msg.starts_with(b"$REPLY ") => f,
            _ => flow(control),
        };
        shell.advance(STEPS[usize::from((control >> 2) & 7)]);
        let msg = shell.expand(msg);
        shell.sip(flow, &msg);
        match control >> 5 {
            2 | 3 => {
                let silent_for = Duration::from_secs(30);
                let event = if control >> 5 == 2 {
                    MediaEvent::Resumed { silent_for }
                } else {
                    MediaEvent::Timeout { silent_for }
                };
                for call in shell.h.engine.call_refs() {
                    shell.input(Input::Media {
                        call,
                        leg: LegId::Caller,
                        event: event.clone(),
                    });
                }
            }
            4 => {
                let digit = char::from(b"0123456789*#"[msg.len() % 12]);
                for call in shell.h.engine.call_refs() {
                    shell.input(Input::Media {
                        call,
                        leg: LegId::Caller,
                        event: MediaEvent::Digit {
                            digit,
                            source: "rfc4733",
                        },
                    });
                }
            }
            5 => {
                if let Some(call) = shell.h.engine.call_refs().first().copied() {
                    shell.input(Input::HangUp { call });
                }
            }
            6 => shell.input(Input::TransportError {
                flow,
                reason: "fuzz: connection reset".into(),
            }),
            7 => shell.input(Input::Drain),
            _ => {}
        }
    }
    shell.finish();
});
