//! After a crash, in virtual time: the BYE for a dialog the previous run left up goes out under
//! its own client transaction — retransmitted per Timer E, ended by a final response or by
//! Timer F — and every step is on the call's timeline.
#![allow(clippy::disallowed_methods)] // Instant::now() once, as the origin of virtual time

use std::time::{Duration, Instant};

use siaga_engine::EngineConfig;
use siaga_engine::harness::{Harness, default_plan};
use siaga_engine::ids::{CallRef, LegId};
use siaga_engine::io::{Direction, Flow, Input, LogRecord, Transport};
use siaga_engine::restart::{LoggedMessage, OpenDialog, left_open};

const OUR_INVITE: &str = "INVITE sip:police@192.0.2.20:5081 SIP/2.0\r\n\
    Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKb1;rport\r\nMax-Forwards: 70\r\n\
    From: <sip:+6281@siaga.invalid>;tag=gwb1\r\nTo: <sip:police@192.0.2.20:5081>\r\n\
    Call-ID: b-leg@gw\r\nCSeq: 1 INVITE\r\nContact: <sip:siaga@192.0.2.1:5060>\r\n\
    Content-Length: 0\r\n\r\n";
const AGENCY_200: &str = "SIP/2.0 200 OK\r\n\
    Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKb1;rport\r\n\
    From: <sip:+6281@siaga.invalid>;tag=gwb1\r\nTo: <sip:police@192.0.2.20:5081>;tag=pol9\r\n\
    Call-ID: b-leg@gw\r\nCSeq: 1 INVITE\r\nContact: <sip:desk@192.0.2.20:5081>\r\n\
    Content-Length: 0\r\n\r\n";

fn flow() -> Flow {
    Flow {
        transport: Transport::Udp,
        remote: "192.0.2.20:5081".parse().expect("addr"),
        local: "192.0.2.1:5060".parse().expect("addr"),
        conn: None,
    }
}

/// The agency leg of call 7, as the crashed run logged it.
fn open_agency_leg() -> OpenDialog {
    let messages = [
        LoggedMessage {
            leg: LegId::Agency(1),
            direction: Direction::Out,
            flow: flow(),
            raw: OUR_INVITE.as_bytes(),
        },
        LoggedMessage {
            leg: LegId::Agency(1),
            direction: Direction::In,
            flow: flow(),
            raw: AGENCY_200.as_bytes(),
        },
    ];
    let mut open = left_open(CallRef(7), &messages);
    assert_eq!(open.len(), 1);
    open.remove(0).expect("buildable")
}

struct Run {
    h: Harness,
    /// BYEs sent, with the virtual time each left.
    sent: Vec<(Duration, String)>,
    timeline: Vec<(CallRef, &'static str, String)>,
}

impl Run {
    fn start() -> Run {
        let t0 = Instant::now();
        let mut run = Run {
            h: Harness::new(EngineConfig::default(), default_plan(), t0),
            sent: Vec::new(),
            timeline: Vec::new(),
        };
        run.input(t0, Input::ByeAfterRestart(Box::new(open_agency_leg())));
        run
    }

    fn input(&mut self, now: Instant, input: Input<'_>) {
        self.h.now = now;
        self.h.input(input);
        self.take_record();
    }

    /// Runs the engine's timers up to `until` (virtual).
    fn run_until(&mut self, until: Duration) {
        self.h.advance_to(self.h.t0 + until);
        self.take_record();
    }

    /// Moves what the harness recorded into `sent` and `timeline`.
    fn take_record(&mut self) {
        for sent in self.h.sent.drain(..) {
            assert_eq!(sent.flow, flow());
            self.sent.push((sent.at, sent.text().to_owned()));
        }
        for record in self.h.logs.drain(..) {
            if let LogRecord::Timeline { call, kind, detail } = record {
                self.timeline.push((call, kind.as_str(), detail))
            }
        }
    }

    fn outcomes(&self) -> Vec<String> {
        self.timeline
            .iter()
            .filter(|(call, kind, _)| *call == CallRef(7) && *kind == "restart_bye_done")
            .map(|(_, _, detail)| detail.clone())
            .collect()
    }
}

#[test]
fn an_unanswered_restart_bye_is_retransmitted_per_timer_e_until_timer_f() {
    let mut run = Run::start();
    run.run_until(Duration::from_secs(60));
    let times: Vec<u64> = run.sent.iter().map(|(t, _)| t.as_millis() as u64).collect();
    // T1 = 500 ms, doubling to T2 = 4 s, until Timer F (64·T1 = 32 s).
    assert_eq!(
        times,
        [
            0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
    );
    assert!(
        run.sent.iter().all(|(_, m)| m == &run.sent[0].1),
        "identical"
    );
    assert!(
        run.sent[0]
            .1
            .starts_with("BYE sip:desk@192.0.2.20:5081 SIP/2.0\r\n")
    );
    assert!(
        run.timeline
            .iter()
            .any(|(call, kind, detail)| *call == CallRef(7)
                && *kind == "restart_bye"
                && detail.starts_with("leg B1: BYE to 192.0.2.20:5081"))
    );
    assert_eq!(run.outcomes(), ["leg B1: no response (Timer F)"]);
}

#[test]
fn a_final_response_ends_the_restart_bye_and_is_logged_once() {
    let mut run = Run::start();
    run.run_until(Duration::from_millis(600));
    assert_eq!(run.sent.len(), 2, "sent and retransmitted once");
    let bye = run.sent[0].1.clone();
    let via = bye
        .lines()
        .find(|l| l.starts_with("Via: "))
        .expect("Via")
        .to_owned();
    let ok = format!(
        "SIP/2.0 200 OK\r\n{via}\r\nFrom: <sip:+6281@siaga.invalid>;tag=gwb1\r\n\
         To: <sip:police@192.0.2.20:5081>;tag=pol9\r\nCall-ID: b-leg@gw\r\nCSeq: 2 BYE\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let at = run.h.t0 + Duration::from_millis(700);
    for _ in 0..2 {
        // The second is a retransmission of the 200: absorbed.
        run.input(
            at,
            Input::Sip {
                flow: flow(),
                data: ok.as_bytes(),
            },
        );
    }
    run.run_until(Duration::from_secs(60));
    assert_eq!(run.sent.len(), 2, "nothing more after the answer");
    assert_eq!(run.outcomes(), ["leg B1: answered 200"]);
}
