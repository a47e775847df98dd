//! Number policies in virtual time (issue 12): a blocked number hears the announcement and is
//! let go, yet reaches a call-taker when it keeps calling or dials a URN with a location; a
//! block expires on time without a new snapshot; watched callers are warned and wait behind
//! normal callers in a busy queue.
#![allow(clippy::disallowed_methods)] // Instant::now() once, as the origin of virtual time

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use siaga_dialplan::{CallerNumber, ListEntry, ListKind, NumberLists};
use siaga_engine::EngineConfig;
use siaga_engine::call::EndReason;
use siaga_engine::harness::{self, Harness, MediaSide, Prompts, default_plan};
use siaga_engine::ids::{CallRef, LegId};
use siaga_engine::io::{Flow, LogRecord, MediaCommand, MediaEvent, PlaybackId};
use siaga_media::VoiceTotals;

const CALLER: &str = "192.0.2.10:5070";
const GW: &str = "198.51.100.1:5060";
const TAKER_1: &str = "127.0.0.1:5080";
const TAKER_2: &str = "127.0.0.1:5089";
const BLOCKED: &str = "+628123456789";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn flow_from(remote: &str) -> Flow {
    harness::udp_flow(remote, GW)
}

fn header(msg: &str, name: &str) -> String {
    harness::header(msg, &[name]).unwrap_or_default().to_owned()
}

fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
    m=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

/// The gateway in virtual time with prompts that end at once, and the calls placed so far.
struct Sim {
    h: Harness,
    calls: u32,
}

/// One caller's call as the test sees it.
struct Placed {
    call: CallRef,
    call_id: String,
    from: String,
    to_tag: String,
}

impl Sim {
    fn new() -> Self {
        Self::with_plan(default_plan())
    }

    fn with_plan(plan: Arc<siaga_dialplan::Dialplan>) -> Self {
        Self::with_config(EngineConfig::default(), plan)
    }

    fn with_config(cfg: EngineConfig, plan: Arc<siaga_dialplan::Dialplan>) -> Self {
        let mut h = Harness::new(cfg, plan, Instant::now());
        h.media_side = MediaSide {
            prompts: Prompts::EndAtOnce,
            first_packet_on_start: false,
        };
        Sim { h, calls: 0 }
    }

    /// Hands the engine a snapshot with `number` on `kind`'s list until `until`.
    fn list(&mut self, number: &str, kind: ListKind, until: Instant) {
        let number = CallerNumber::normalise(number, Some("62")).expect("number");
        let entry = ListEntry {
            kind,
            expires_at: until,
            by: "sari".into(),
            why: "prank calls".into(),
        };
        let lists = NumberLists::new([(number, entry)]);
        self.h.engine.set_number_lists(Arc::new(lists));
    }

    /// `number` dials `uri`; the gateway answers and the caller ACKs.
    fn call(&mut self, number: &str, uri: &str, extra: &str, body: Option<(&str, &str)>) -> Placed {
        self.calls += 1;
        let n = self.calls;
        let call_id = format!("call-{n}");
        let from = format!("<sip:{number}@192.0.2.10>;tag=caller{n}");
        let (ct, body) = body.unwrap_or(("application/sdp", SDP));
        let invite = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKinv{n}\r\nMax-Forwards: 70\r\n\
             From: {from}\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:caller@{CALLER}>\r\n{extra}Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let before = self.h.started_calls().len();
        self.h.sip(flow_from(CALLER), invite.as_bytes());
        let call = self.h.started_calls()[before];
        let ok = self
            .h
            .take_to(addr(CALLER), "SIP/2.0 200")
            .into_iter()
            .find(|m| header(m, "Call-ID") == call_id)
            .expect("every call is answered");
        let to_tag = harness::tag(&header(&ok, "To")).expect("tag").to_owned();
        let placed = Placed {
            call,
            call_id,
            from,
            to_tag,
        };
        let ack = self.in_dialog(&placed, "ACK", 1);
        self.h.sip(flow_from(CALLER), ack.as_bytes());
        placed
    }

    fn in_dialog(&self, placed: &Placed, method: &str, cseq: u32) -> String {
        format!(
            "{method} sip:siaga@{GW} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK{method}{cseq}{}\r\n\
             Max-Forwards: 70\r\nFrom: {}\r\nTo: <sip:112@{GW}>;tag={}\r\nCall-ID: {}\r\n\
             CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            placed.call_id, placed.from, placed.to_tag, placed.call_id
        )
    }

    fn digit(&mut self, placed: &Placed, digit: char) {
        let event = MediaEvent::Digit {
            digit,
            source: "rfc4733",
        };
        self.h.media_event(placed.call, LegId::Caller, event);
    }

    /// The caller answers a request the gateway sent it (its BYE) with 200.
    fn caller_ok(&mut self, request: &str) {
        let reply = harness::response_to(request, 200, None, "", None);
        self.h.sip(flow_from(CALLER), reply.as_bytes());
    }

    /// An agency answers an INVITE of ours with `status` (and an SDP answer on 200).
    fn agency_reply(&mut self, from: &str, invite: &str, status: u16, tag: &str) {
        let sdp = "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 7000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
        let body = (status == 200).then_some(("application/sdp", sdp));
        let contact = format!("Contact: <sip:agency@{from}>\r\n");
        let reply = harness::response_to(invite, status, Some(tag), &contact, body);
        self.h.sip(flow_from(from), reply.as_bytes());
    }

    /// Timeline events of `kind` for `call`.
    fn timeline(&self, call: CallRef, kind: &str) -> Vec<String> {
        self.h
            .logs
            .iter()
            .filter_map(|r| match r {
                LogRecord::Timeline {
                    call: c,
                    kind: k,
                    detail,
                } if *c == call && k.as_str() == kind => Some(detail.clone()),
                _ => None,
            })
            .collect()
    }

    fn end_reason(&self, call: CallRef) -> Option<EndReason> {
        self.h.logs.iter().find_map(|r| match r {
            LogRecord::CallEnded {
                call: c, reason, ..
            } if *c == call => Some(*reason),
            _ => None,
        })
    }

    /// The prompt files played to `call`, by file name.
    fn played(&self, call: CallRef) -> Vec<String> {
        self.h
            .media
            .iter()
            .filter_map(|m| match m {
                MediaCommand::Play {
                    call: c, prompt, ..
                } if *c == call => Some(
                    prompt
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ),
                _ => None,
            })
            .collect()
    }

    /// INVITEs the gateway sent to a call-taker desk for `number` (From carries it).
    fn desk_invites(&mut self, desk: &str, number: &str) -> Vec<String> {
        self.h
            .take_to(addr(desk), "INVITE")
            .into_iter()
            .filter(|m| header(m, "From").contains(number))
            .collect()
    }

    /// A blocked call: announcement, BYE from the gateway (answered), ended as blocked.
    fn assert_blocked(&mut self, placed: &Placed) {
        let bye = self
            .h
            .take_to(addr(CALLER), "BYE")
            .into_iter()
            .find(|m| header(m, "Call-ID") == placed.call_id)
            .expect("the gateway hangs up on a blocked number");
        self.caller_ok(&bye);
        assert_eq!(self.end_reason(placed.call), Some(EndReason::BlockedNumber));
        assert_eq!(self.timeline(placed.call, "policy_blocked").len(), 1);
        assert_eq!(
            self.played(placed.call),
            ["number-blocked.wav", "number-blocked.wav"],
            "the blocked announcement in each language, and no menu"
        );
    }
}

#[test]
fn a_blocked_number_calling_repeatedly_reaches_a_call_taker_and_its_block_expires_on_time() {
    let mut sim = Sim::new();
    let t0 = sim.h.now;
    // Blocked for an hour; the snapshot is never refreshed after this.
    sim.list(BLOCKED, ListKind::Block, t0 + minutes(60));

    // Dialled nationally, it is the same number: blocked.
    let first = sim.call("0812-3456-789", "sip:112@198.51.100.1", "", None);
    sim.assert_blocked(&first);
    let detail = &sim.timeline(first.call, "policy_blocked")[0];
    assert!(
        detail.contains("set by sari (prank calls), 1h left"),
        "{detail}"
    );

    sim.h.advance(minutes(1));
    let second = sim.call(BLOCKED, "sip:112@198.51.100.1", "", None);
    sim.assert_blocked(&second);

    // The third call within 15 minutes reaches a person: warned, then the menu; silent, it
    // goes to the call-takers.
    sim.h.advance(minutes(1));
    let third = sim.call(BLOCKED, "sip:112@198.51.100.1", "", None);
    let overridden = sim.timeline(third.call, "policy_block_overridden");
    assert_eq!(overridden.len(), 1);
    assert!(
        overridden[0].contains("3 calls within 15min"),
        "{overridden:?}"
    );
    assert_eq!(
        sim.played(third.call)[..3],
        ["misuse-warning.wav", "misuse-warning.wav", "welcome.wav"]
    );
    sim.h.advance(Duration::from_secs(20));
    let desk = sim.desk_invites(TAKER_1, "628123456789");
    assert!(!desk.is_empty(), "the blocked number reached a call-taker");
    assert_eq!(
        header(&desk[0], "X-Siaga-Policy"),
        "blocked number, let through: called again",
        "the call-taker is told why the caller was warned"
    );
    assert_eq!(sim.end_reason(third.call), None, "nobody hung up on it");

    // The block ends at t0 + 60 min by its own expiry, with no new snapshot.
    sim.h
        .advance_to(t0 + minutes(60) - Duration::from_millis(1));
    let last_minute = sim.call(BLOCKED, "sip:112@198.51.100.1", "", None);
    sim.assert_blocked(&last_minute);
    sim.h.advance(Duration::from_millis(1));
    let after = sim.call(BLOCKED, "sip:112@198.51.100.1", "", None);
    for kind in [
        "policy_blocked",
        "policy_block_overridden",
        "policy_watched",
    ] {
        assert!(sim.timeline(after.call, kind).is_empty(), "{kind}");
    }
    assert_eq!(sim.played(after.call)[0], "welcome.wav");
    assert_eq!(sim.end_reason(after.call), None);
}

#[test]
fn a_blocked_number_dialling_a_urn_with_a_pidf_lo_always_reaches_a_call_taker() {
    let pidf = "<?xml version=\"1.0\"?>\r\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
        xmlns:gp=\"urn:ietf:params:xml:ns:pidf:geopriv10\" xmlns:gml=\"http://www.opengis.net/gml\" \
        entity=\"pres:ani@example.com\"><tuple id=\"t\"><status><gp:geopriv><gp:location-info>\
        <gml:Point srsName=\"urn:ogc:def:crs:EPSG::4326\"><gml:pos>-0.5022 117.1536</gml:pos></gml:Point>\
        </gp:location-info><gp:usage-rules/><gp:method>GPS</gp:method></gp:geopriv></status></tuple></presence>";
    let body = format!(
        "--b1\r\nContent-Type: application/sdp\r\n\r\n{SDP}\r\n--b1\r\nContent-Type: application/pidf+xml\r\n\
         Content-ID: <loc1@ani>\r\n\r\n{pidf}\r\n--b1--\r\n"
    );
    let mut sim = Sim::new();
    let t0 = sim.h.now;
    sim.list(BLOCKED, ListKind::Block, t0 + minutes(60));
    // Without a location a URN call is blocked like any other…
    let plain = sim.call(BLOCKED, "urn:service:sos", "", None);
    sim.assert_blocked(&plain);
    // …with one, it reaches the call-takers at once, unwarned (its first call this time).
    let located = sim.call(
        BLOCKED,
        "urn:service:sos",
        "Geolocation: <cid:loc1@ani>\r\n",
        Some(("multipart/mixed;boundary=b1", &body)),
    );
    let overridden = sim.timeline(located.call, "policy_block_overridden");
    assert_eq!(overridden.len(), 1);
    assert!(overridden[0].contains("PIDF-LO"), "{overridden:?}");
    assert_eq!(sim.played(located.call)[0], "welcome.wav", "no warning");
    sim.digit(&located, '0');
    assert!(!sim.desk_invites(TAKER_1, "628123456789").is_empty());
    assert_eq!(sim.end_reason(located.call), None);
}

#[test]
fn a_watched_caller_is_warned_and_waits_behind_normal_callers_in_a_busy_queue() {
    let mut sim = Sim::new();
    let t0 = sim.h.now;
    let watched = "+628111111111";
    sim.list(watched, ListKind::Watch, t0 + minutes(60));

    // A normal caller takes desk 1; desk 2 is busy.
    let first = sim.call("+628222222222", "sip:112@198.51.100.1", "", None);
    sim.digit(&first, '0');
    let d1 = sim
        .desk_invites(TAKER_1, "628222222222")
        .pop()
        .expect("desk 1");
    let d2 = sim
        .desk_invites(TAKER_2, "628222222222")
        .pop()
        .expect("desk 2");
    sim.agency_reply(TAKER_2, &d2, 486, "busy2");
    sim.agency_reply(TAKER_1, &d1, 200, "on-line");

    // The watched caller hears the warning, then the menu, and queues (both desks busy).
    let w = sim.call(watched, "sip:112@198.51.100.1", "", None);
    assert_eq!(sim.timeline(w.call, "policy_watched").len(), 1);
    assert_eq!(
        sim.played(w.call)[..2],
        ["misuse-warning.wav", "misuse-warning.wav"]
    );
    sim.digit(&w, '0');
    for desk in [TAKER_1, TAKER_2] {
        let invite = sim.desk_invites(desk, "628111111111").pop().expect("rung");
        sim.agency_reply(desk, &invite, 486, "busy");
    }
    let entered = sim.timeline(w.call, "queue_enter");
    assert!(
        entered[0].contains("number 1") && entered[0].contains("low priority"),
        "{entered:?}"
    );

    // A normal caller who comes later is put ahead of it.
    let n = sim.call("+628333333333", "sip:112@198.51.100.1", "", None);
    assert!(sim.played(n.call).iter().all(|p| p != "misuse-warning.wav"));
    sim.digit(&n, '0');
    for desk in [TAKER_1, TAKER_2] {
        let invite = sim.desk_invites(desk, "628333333333").pop().expect("rung");
        sim.agency_reply(desk, &invite, 486, "busy");
    }
    let entered = sim.timeline(n.call, "queue_enter");
    assert!(entered[0].contains("number 1 in the queue"), "{entered:?}");

    // Desk 1's call-taker hangs up: the freed desk rings for the normal caller first.
    let bye = format!(
        "BYE sip:siaga@{GW} SIP/2.0\r\nVia: SIP/2.0/UDP {TAKER_1};branch=z9hG4bKdeskbye\r\n\
         Max-Forwards: 70\r\nFrom: {};tag=on-line\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\n\
         Content-Length: 0\r\n\r\n",
        header(&d1, "To"),
        header(&d1, "From"),
        header(&d1, "Call-ID"),
    );
    sim.h.sip(flow_from(TAKER_1), bye.as_bytes());
    let to_caller = sim
        .h
        .take_to(addr(CALLER), "BYE")
        .into_iter()
        .find(|m| header(m, "Call-ID") == first.call_id)
        .expect("the first caller is released");
    sim.caller_ok(&to_caller);
    assert_eq!(sim.end_reason(first.call), Some(EndReason::AgencyHungUp));
    assert_eq!(sim.desk_invites(TAKER_1, "628333333333").len(), 1);
    assert!(
        sim.desk_invites(TAKER_1, "628111111111").is_empty(),
        "the watched caller waits behind the normal one"
    );
}

#[test]
fn a_blocked_caller_hanging_up_during_the_announcement_is_not_a_call_back() {
    let mut sim = Sim::new();
    let t0 = sim.h.now;
    sim.list(BLOCKED, ListKind::Block, t0 + minutes(60));
    // Prompts play until the test says otherwise: the caller hangs up in the middle.
    sim.h.media_side.prompts = Prompts::Manual;
    let placed = sim.call(BLOCKED, "sip:112@198.51.100.1", "", None);
    assert_eq!(sim.played(placed.call), ["number-blocked.wav"]);
    let bye = sim.in_dialog(&placed, "BYE", 2);
    sim.h.sip(flow_from(CALLER), bye.as_bytes());
    assert_eq!(sim.end_reason(placed.call), Some(EndReason::BlockedNumber));
    assert!(!EndReason::BlockedNumber.calls_for_call_back());
}

#[test]
fn with_the_repeat_caller_path_on_the_fifth_call_in_ten_minutes_is_warned_and_still_answered() {
    let text = include_str!("../../../dialplans/default.toml").replace(
        "repeat_caller = { calls = 0, within = \"10min\" }",
        "repeat_caller = { calls = 5, within = \"10min\" }",
    );
    let plan = harness::plan(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../dialplans/default.toml"),
        &text,
    );
    assert!(plan.policies().repeat_caller.is_some(), "the edit applied");
    let mut sim = Sim::with_plan(plan);
    let number = "+628444444444";
    let mut calls = Vec::new();
    for i in 0..6u64 {
        calls.push(sim.call(number, "sip:112@198.51.100.1", "", None));
        sim.h.advance(minutes(1) + Duration::from_secs(i));
    }
    for placed in &calls[..4] {
        assert!(sim.timeline(placed.call, "policy_repeat_caller").is_empty());
        assert_eq!(sim.played(placed.call)[0], "welcome.wav");
    }
    for placed in &calls[4..] {
        let repeat = sim.timeline(placed.call, "policy_repeat_caller");
        assert_eq!(repeat.len(), 1);
        assert!(
            repeat[0].starts_with("5 calls from this number within 10min"),
            "{repeat:?}"
        );
        assert_eq!(
            sim.played(placed.call)[..3],
            ["misuse-warning.wav", "misuse-warning.wav", "welcome.wav"],
            "warned, then the menu as for anyone"
        );
    }
    // Anonymous callers are never counted.
    for _ in 0..6 {
        let placed = sim.call("anonymous", "sip:112@198.51.100.1", "", None);
        assert_eq!(sim.played(placed.call)[0], "welcome.wav");
    }
}

#[test]
fn a_warned_silent_caller_still_reaches_the_call_takers_15_s_after_the_answer() {
    let mut sim = Sim::new();
    let t0 = sim.h.now;
    let watched = "+628555555555";
    sim.list(watched, ListKind::Watch, t0 + minutes(60));
    // Prompts end when the test says: the warning takes 4 s in each language.
    sim.h.media_side.prompts = Prompts::Manual;
    let placed = sim.call(watched, "sip:112@198.51.100.1", "", None);
    for _ in 0..2 {
        sim.h.advance(Duration::from_secs(4));
        let playback = sim
            .h
            .media
            .iter()
            .rev()
            .find_map(|m| match m {
                MediaCommand::Play { call, playback, .. } if *call == placed.call => {
                    Some(*playback)
                }
                _ => None,
            })
            .expect("a prompt plays");
        let event = MediaEvent::PromptFinished { playback };
        sim.h.media_event(placed.call, LegId::Caller, event);
    }
    assert_eq!(
        sim.played(placed.call)[2],
        "welcome.wav",
        "the menu after 8 s"
    );
    // Silent: handed to the call-takers 15 s after the answer, as any silent caller.
    sim.h.advance_to(t0 + Duration::from_millis(14_999));
    assert!(sim.desk_invites(TAKER_1, "628555555555").is_empty());
    sim.h.advance_to(t0 + Duration::from_secs(15));
    assert_eq!(sim.desk_invites(TAKER_1, "628555555555").len(), 1);
}

impl Sim {
    /// Every caller comes through one carrier SBC (a trusted source): numbers count, the
    /// source does not.
    fn behind_sbc() -> Self {
        let cfg = EngineConfig {
            trusted_sources: siaga_engine::source_limits::Trusted(vec![
                "192.0.2.0/24".parse().expect("net"),
            ]),
            ..EngineConfig::default()
        };
        Self::with_config(cfg, default_plan())
    }

    /// Behind the SBC, after a flood of 30 silent short calls: the gateway is under attack.
    fn under_attack_behind_sbc() -> Self {
        let mut sim = Self::behind_sbc();
        sim.silent_flood(30, 0);
        sim.h.advance(Duration::from_secs(5));
        assert!(sim.h.engine.under_attack());
        sim
    }

    /// The caller hangs up (BYE), and the gateway's answer is taken.
    fn caller_hangs_up(&mut self, placed: &Placed) {
        let bye = self.in_dialog(placed, "BYE", 2);
        self.h.sip(flow_from(CALLER), bye.as_bytes());
        self.h.take_to(addr(CALLER), "SIP/2.0");
    }

    /// `count` silent calls from new numbers, each hung up after a second: a flood of silent
    /// short calls (the media side never reports speech).
    fn silent_flood(&mut self, count: u32, first_number: u64) {
        for i in 0..u64::from(count) {
            let placed = self.call(
                &format!("+62813{:08}", first_number + i),
                "sip:112@198.51.100.1",
                "",
                None,
            );
            self.h.advance(Duration::from_secs(1));
            self.caller_hangs_up(&placed);
        }
    }

    /// The gateway events about attacks so far: (started?, detail).
    fn attacks(&self) -> Vec<(bool, String)> {
        self.h
            .logs
            .iter()
            .filter_map(|r| match r {
                LogRecord::Attack(change) => Some((
                    matches!(change, siaga_dialplan::AttackChange::Started { .. }),
                    change.detail(),
                )),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn a_flood_of_silent_calls_starts_an_attack_that_calm_ends_and_then_nobody_is_challenged() {
    let mut sim = Sim::behind_sbc();
    // The default plan: 30 silent short calls within a minute.
    sim.silent_flood(29, 0);
    assert!(sim.attacks().is_empty(), "29 are under the level");
    sim.silent_flood(1, 29);
    // Signals wait a moment for the caller leg's voice totals, which never come here.
    sim.h.advance(Duration::from_secs(5));
    assert_eq!(
        sim.attacks(),
        [(
            true,
            "silent short calls reached 30 calls within 1min".to_owned()
        )]
    );
    assert!(sim.h.engine.under_attack());
    // Calm: under half the level for the plan's 5 minutes.
    sim.h.advance(minutes(7));
    let attacks = sim.attacks();
    assert_eq!(attacks.len(), 2, "{attacks:?}");
    assert!(!attacks[1].0, "{attacks:?}");
    assert!(attacks[1].1.starts_with("calm again after"), "{attacks:?}");
    // A number's third call in ten minutes, now calm: the menu at once.
    for _ in 0..2 {
        let call = sim.call("+628555555555", "sip:112@198.51.100.1", "", None);
        sim.caller_hangs_up(&call);
    }
    let third = sim.call("+628555555555", "sip:112@198.51.100.1", "", None);
    assert_eq!(sim.played(third.call)[0], "welcome.wav");
    assert!(sim.timeline(third.call, "challenge_started").is_empty());
}

#[test]
fn under_attack_a_caller_beyond_its_limit_is_challenged_a_key_passes_and_silence_still_reaches_a_call_taker()
 {
    let mut sim = Sim::under_attack_behind_sbc();

    // Two calls from a number are within its limit (2 in 10 min); the third is challenged.
    let prank = "+628777777777";
    for _ in 0..2 {
        let call = sim.call(prank, "sip:112@198.51.100.1", "", None);
        assert!(sim.timeline(call.call, "challenge_started").is_empty());
        sim.caller_hangs_up(&call);
    }
    let third = sim.call(prank, "sip:112@198.51.100.1", "", None);
    let why = sim.timeline(third.call, "challenge_started");
    assert_eq!(why.len(), 1);
    assert!(
        why[0].contains("number made 3 calls, limit 2 calls within 10min"),
        "{why:?}"
    );
    assert_eq!(
        sim.played(third.call),
        ["challenge.wav", "challenge.wav"],
        "the challenge in each language, before any menu"
    );
    // A key passes; the menu follows and the key was not taken as a menu choice.
    sim.digit(&third, '7');
    assert_eq!(
        sim.timeline(third.call, "challenge_passed"),
        ["key 7; challenged because under attack: number made 3 calls, limit 2 calls within 10min"]
    );
    assert_eq!(sim.played(third.call)[2], "welcome.wav");
    sim.caller_hangs_up(&third);
    // Passed: its next call in this attack is not asked again.
    let fourth = sim.call(prank, "sip:112@198.51.100.1", "", None);
    let exempt = sim.timeline(fourth.call, "challenge_exempt");
    assert_eq!(
        exempt,
        ["under attack; not challenged: passed a challenge in this attack"]
    );
    sim.caller_hangs_up(&fourth);

    // A silent caller beyond its limit: after the 10 s the call goes on at the lowest
    // priority, hears the menu, and (silent) reaches a call-taker through the menu's
    // no-input path — not by the early offer 15 s after the answer, which would hand every
    // silent flood call to a call-taker; nobody hangs up on it.
    let quiet = "+628666666666";
    for _ in 0..2 {
        let call = sim.call(quiet, "sip:112@198.51.100.1", "", None);
        sim.caller_hangs_up(&call);
    }
    // Prompts take 3 s each here, as recorded prompts do (both languages: 6 s per prompt).
    sim.h.media_side.prompts = Prompts::Manual;
    let silent = sim.call(quiet, "sip:112@198.51.100.1", "", None);
    let answered = sim.h.now;
    let mut playing: Vec<(PlaybackId, Instant)> = Vec::new();
    let mut seen = sim.h.media.len();
    let mut desk_at = None;
    for tenth in 1..=900u64 {
        sim.h
            .advance_to(answered + Duration::from_millis(100 * tenth));
        let now = sim.h.now;
        for m in &sim.h.media[seen..] {
            if let MediaCommand::Play { call, playback, .. } = m
                && *call == silent.call
            {
                playing.push((*playback, now));
            }
        }
        seen = sim.h.media.len();
        let (done, still): (Vec<_>, Vec<_>) = playing
            .iter()
            .partition(|(_, at)| now.duration_since(*at) >= Duration::from_secs(3));
        playing = still;
        for (playback, _) in done {
            let event = MediaEvent::PromptFinished { playback };
            sim.h.media_event(silent.call, LegId::Caller, event);
        }
        if tenth == 100 {
            let failed = sim.timeline(silent.call, "challenge_failed");
            assert_eq!(failed.len(), 1, "{failed:?}");
            assert!(
                failed[0].contains("behind every other caller"),
                "{failed:?}"
            );
        }
        if desk_at.is_none() && !sim.desk_invites(TAKER_1, "628666666666").is_empty() {
            desk_at = Some(now.duration_since(answered));
        }
    }
    assert_eq!(sim.played(silent.call)[2], "welcome.wav");
    let desk_at = desk_at.expect("the caller who did not pass still reached a call-taker");
    assert_eq!(sim.end_reason(silent.call), None);
    // Through the menu's own no-input path after the challenge's 10 s and the whole menu,
    // not by the early offer 15 s after the answer (which would give a call-taker every
    // silent flood call that lasts 15 s).
    assert_eq!(
        sim.timeline(silent.call, "timeout"),
        ["no key pressed (first-digit timeout)"]
    );
    assert!(desk_at > Duration::from_secs(20), "{desk_at:?}");
}

#[test]
fn under_attack_a_challenged_caller_who_speaks_passes() {
    let mut sim = Sim::under_attack_behind_sbc();
    let number = "+628444444444";
    for _ in 0..2 {
        let call = sim.call(number, "sip:112@198.51.100.1", "", None);
        sim.caller_hangs_up(&call);
    }
    let third = sim.call(number, "sip:112@198.51.100.1", "", None);
    assert_eq!(sim.timeline(third.call, "challenge_started").len(), 1);
    // The media side reports speech only for a voiced run (a word, not loud noise).
    sim.h.advance(Duration::from_secs(2));
    sim.h
        .media_event(third.call, LegId::Caller, MediaEvent::Speech);
    assert_eq!(
        sim.timeline(third.call, "challenge_passed"),
        [
            "speech; challenged because under attack: number made 3 calls, limit 2 calls within 10min"
        ]
    );
    assert_eq!(sim.played(third.call)[2], "welcome.wav");
}

#[test]
fn short_calls_of_loud_noise_without_a_voice_count_toward_a_flood() {
    let mut sim = Sim::behind_sbc();
    // Each call: a second of loud noise when the line opens (a run of speech energy longer
    // than the 400 ms speech run), then quiet; nobody speaks, so no voiced run.
    let noise_burst = VoiceTotals {
        frames: 200,
        speech_frames: 3,
        longest_speech_ms: 1_000,
        voiced_frames: 0,
        longest_voiced_ms: 0,
    };
    for i in 0..30u64 {
        let placed = sim.call(&format!("+62815{i:08}"), "sip:112@198.51.100.1", "", None);
        sim.h.advance(Duration::from_secs(1));
        sim.caller_hangs_up(&placed);
        sim.h.media_event(
            placed.call,
            LegId::Caller,
            MediaEvent::VoiceActivity(noise_burst),
        );
    }
    assert_eq!(
        sim.attacks(),
        [(
            true,
            "silent short calls reached 30 calls within 1min".to_owned()
        )]
    );
}
