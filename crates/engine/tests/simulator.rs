//! Whole call flows against the engine in virtual time, with each message of the flow lost in
//! turn. The caller is scripted here; the gateway is the real engine. No sockets, no sleeps:
//! an hour of SIP timers runs in milliseconds.
#![allow(clippy::disallowed_methods)] // Instant::now() once, as the origin of virtual time

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use siaga_engine::EngineConfig;
use siaga_engine::call::EndReason;
use siaga_engine::harness::{Harness, default_plan};
use siaga_engine::ids::{CallRef, LegId};
use siaga_engine::io::{Flow, Input, LogRecord, MediaCommand, MediaEvent, PlaybackId, Transport};
use siaga_engine::source_limits::Trusted;

/// The gateway (in the harness: virtual clock, record of everything out, lost messages in
/// `lose_out`) plus a caller on one flow.
struct Sim {
    h: Harness,
    flow: Flow,
}

impl Deref for Sim {
    type Target = Harness;
    fn deref(&self) -> &Harness {
        &self.h
    }
}

impl DerefMut for Sim {
    fn deref_mut(&mut self) -> &mut Harness {
        &mut self.h
    }
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
    m=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:30\r\n";

impl Sim {
    fn new(transport: Transport) -> Self {
        Self::with_config(transport, EngineConfig::default())
    }

    fn with_config(transport: Transport, cfg: EngineConfig) -> Self {
        let remote: SocketAddr = "192.0.2.10:5070".parse().expect("addr");
        let local: SocketAddr = "198.51.100.1:5060".parse().expect("addr");
        Self {
            h: Harness::new(cfg, default_plan(), Instant::now()),
            flow: Flow {
                transport,
                remote,
                local,
                conn: None,
            },
        }
    }

    fn send(&mut self, text: &str) {
        let flow = self.flow;
        self.h.sip(flow, text.as_bytes());
    }

    fn statuses(&mut self) -> Vec<String> {
        self.take_sent()
            .iter()
            .map(|t| t.lines().next().unwrap_or_default().to_owned())
            .collect()
    }
}

fn invite(uri: &str, call_id: &str, branch: &str) -> String {
    format!(
        "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch={branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+6281234567890@192.0.2.10>;tag=caller1\r\nTo: <{uri}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@192.0.2.10:5070>\r\n\
         P-Asserted-Identity: <tel:+6281234567890>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
}

fn to_tag(response: &str) -> String {
    let to = response
        .lines()
        .find(|l| l.starts_with("To:"))
        .expect("To header");
    to.split(";tag=").nth(1).expect("tag").trim().to_owned()
}

fn in_dialog(method: &str, cseq: u32, call_id: &str, tag: &str, branch: &str) -> String {
    format!(
        "{method} sip:siaga@198.51.100.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch={branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+6281234567890@192.0.2.10>;tag=caller1\r\n\
         To: <sip:112@198.51.100.1>;tag={tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn cancel(call_id: &str, branch: &str) -> String {
    format!(
        "CANCEL sip:112@198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch={branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+6281234567890@192.0.2.10>;tag=caller1\r\nTo: <sip:112@198.51.100.1>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    )
}

fn ack_for_failure(call_id: &str, branch: &str, tag: &str) -> String {
    // Same branch as the INVITE, the 487's tag (RFC 3261 §17.1.1.3).
    in_dialog("ACK", 1, call_id, tag, branch)
}

/// Sets up an answered, ACKed call and returns the gateway's tag.
fn establish(sim: &mut Sim, call_id: &str) -> String {
    sim.send(&invite("sip:112@198.51.100.1", call_id, "z9hG4bKinv1"));
    let sent = sim.take_sent();
    let ok = sent
        .iter()
        .find(|t| t.starts_with("SIP/2.0 200"))
        .expect("answered");
    let tag = to_tag(ok);
    sim.send(&in_dialog("ACK", 1, call_id, &tag, "z9hG4bKack1"));
    tag
}

#[test]
fn an_emergency_call_is_answered_with_100_180_200_and_sdp() {
    let mut sim = Sim::new(Transport::Udp);
    sim.send(&invite("sip:112@198.51.100.1;user=phone", "c1", "z9hG4bK1"));
    let sent = sim.take_sent();
    let firsts: Vec<&str> = sent
        .iter()
        .map(|t| t.lines().next().unwrap_or(""))
        .collect();
    assert_eq!(
        firsts,
        [
            "SIP/2.0 100 Trying",
            "SIP/2.0 180 Ringing",
            "SIP/2.0 200 OK"
        ]
    );
    let ok = &sent[2];
    assert!(ok.contains("Content-Type: application/sdp"), "{ok}");
    assert!(ok.contains("m=audio 40000 RTP/AVP"), "{ok}");
    assert!(ok.contains("Contact: <sip:siaga@198.51.100.1:5060>"));
    assert!(
        !sent
            .iter()
            .any(|t| t.starts_with("SIP/2.0 401") || t.starts_with("SIP/2.0 407"))
    );
    // The caller's media is started towards its offer.
    assert!(sim.media.iter().any(|m| matches!(m,
        MediaCommand::Start { session, .. } if session.remote == Some("192.0.2.10:6000".parse().expect("addr"))
            && session.ptime == Duration::from_millis(30))));
}

#[test]
fn urn_and_tel_uris_are_emergency_and_other_numbers_get_404() {
    for (uri, expect) in [
        ("urn:service:sos", "SIP/2.0 200"),
        ("urn:service:sos.fire", "SIP/2.0 200"),
        ("tel:112", "SIP/2.0 200"),
        ("sip:0812345@198.51.100.1", "SIP/2.0 404"),
    ] {
        let mut sim = Sim::new(Transport::Udp);
        sim.send(&invite(uri, "c-uri", "z9hG4bKu"));
        let sent = sim.statuses();
        assert!(
            sent.iter().any(|s| s.starts_with(expect)),
            "{uri}: {sent:?}"
        );
    }
}

#[test]
fn a_test_call_gets_200_with_text_naming_the_centre() {
    let mut sim = Sim::new(Transport::Udp);
    sim.send(&invite("urn:service:test.sos", "t1", "z9hG4bKt"));
    let sent = sim.take_sent();
    let ok = sent
        .iter()
        .find(|t| t.starts_with("SIP/2.0 200"))
        .expect("200");
    assert!(ok.contains("Content-Type: text/plain"));
    assert!(ok.contains("Siaga 112 Kota Samarinda"), "{ok}");
    let tag = to_tag(ok);
    sim.send(&in_dialog("ACK", 1, "t1", &tag, "z9hG4bKta"));
    sim.send(&in_dialog("BYE", 2, "t1", &tag, "z9hG4bKtb"));
    assert_eq!(sim.end_reasons(), vec![EndReason::TestCallEnded]);
}

#[test]
fn caller_hangs_up_and_every_message_is_logged_to_the_call() {
    let mut sim = Sim::new(Transport::Udp);
    let tag = establish(&mut sim, "c2");
    sim.send(&in_dialog("BYE", 2, "c2", &tag, "z9hG4bKbye"));
    assert_eq!(sim.statuses(), vec!["SIP/2.0 200 OK"]);
    assert_eq!(sim.end_reasons(), vec![EndReason::AbandonedInIvr]);
    let call = sim.started_calls()[0];
    let linked = sim
        .logs
        .iter()
        .filter(|r| matches!(r, LogRecord::Sip { call: Some(c), .. } if *c == call))
        .count();
    // INVITE, 100, 180, 200, ACK, BYE, 200.
    assert_eq!(linked, 7);
    assert!(sim.media.iter().any(|m| matches!(
        m,
        MediaCommand::Release {
            leg: LegId::Caller,
            ..
        }
    )));
}

#[test]
fn a_lost_invite_is_retransmitted_and_makes_one_call() {
    let mut sim = Sim::new(Transport::Udp);
    // The first copy is lost on the way in: only the retransmission arrives...
    sim.now += Duration::from_millis(500);
    sim.send(&invite("sip:112@198.51.100.1", "c3", "z9hG4bKr"));
    // ...and then a late duplicate of the first copy arrives as well.
    sim.send(&invite("sip:112@198.51.100.1", "c3", "z9hG4bKr"));
    assert_eq!(sim.started_calls().len(), 1);
    let statuses = sim.statuses();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| s.starts_with("SIP/2.0 200"))
            .count(),
        2
    );
}

#[test]
fn lost_provisionals_do_not_matter() {
    let mut sim = Sim::new(Transport::Udp);
    sim.lose_out = vec!["SIP/2.0 100".into(), "SIP/2.0 180".into()];
    sim.send(&invite("sip:112@198.51.100.1", "c4", "z9hG4bK4"));
    assert_eq!(sim.statuses(), vec!["SIP/2.0 200 OK"]);
}

#[test]
fn a_lost_200_is_retransmitted_until_the_ack() {
    let mut sim = Sim::new(Transport::Udp);
    sim.lose_out = vec!["SIP/2.0 200".into()];
    sim.send(&invite("sip:112@198.51.100.1", "c5", "z9hG4bK5"));
    sim.take_sent();
    sim.advance(Duration::from_millis(600));
    let sent = sim.take_sent();
    assert_eq!(sent.len(), 1, "one retransmission at T1");
    assert!(sent[0].starts_with("SIP/2.0 200"));
    let tag = to_tag(&sent[0]);
    sim.send(&in_dialog("ACK", 1, "c5", &tag, "z9hG4bKa5"));
    sim.advance(Duration::from_secs(40));
    // (The silent caller is handed to the call-takers at 15 s: their INVITEs go out.)
    assert!(
        !sim.take_sent().iter().any(|t| t.starts_with("SIP/2.0 200")),
        "no retransmission after ACK"
    );
    assert!(sim.end_reasons().is_empty(), "call still up");
}

#[test]
fn a_lost_ack_is_recovered_by_the_retransmitted_200() {
    let mut sim = Sim::new(Transport::Udp);
    sim.send(&invite("sip:112@198.51.100.1", "c6", "z9hG4bK6"));
    let ok = sim.take_sent().pop().expect("200");
    let tag = to_tag(&ok);
    // ACK lost: the 200 comes again at 0.5 s, 1.5 s, …; the caller ACKs the third.
    sim.advance(Duration::from_millis(3600));
    let retransmits: Vec<(Duration, String)> = sim
        .sent
        .drain(..)
        .map(|s| (s.at, s.text().to_owned()))
        .collect();
    let at_ms: Vec<u128> = retransmits.iter().map(|(t, _)| t.as_millis()).collect();
    assert_eq!(at_ms, vec![500, 1500, 3500]);
    assert!(
        retransmits
            .iter()
            .all(|(_, t)| t.starts_with("SIP/2.0 200"))
    );
    sim.send(&in_dialog("ACK", 1, "c6", &tag, "z9hG4bKa6"));
    sim.advance(Duration::from_secs(60));
    assert!(!sim.take_sent().iter().any(|t| t.starts_with("SIP/2.0 200")));
    assert!(sim.end_reasons().is_empty());
}

#[test]
fn no_ack_at_all_and_no_media_ends_with_a_gateway_bye() {
    let mut sim = Sim::new(Transport::Udp);
    sim.send(&invite("sip:112@198.51.100.1", "c7", "z9hG4bK7"));
    sim.take_sent();
    sim.advance(Duration::from_secs(33));
    let sent = sim.take_sent();
    let bye = sent
        .iter()
        .find(|t| t.starts_with("BYE "))
        .expect("gateway BYE");
    assert!(bye.starts_with("BYE sip:caller@192.0.2.10:5070 SIP/2.0"));
    let branch = bye
        .lines()
        .find(|l| l.starts_with("Via:"))
        .and_then(|v| v.split("branch=").nth(1))
        .and_then(|b| b.split(';').next())
        .expect("branch")
        .to_owned();
    let reply = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.51.100.1:5060;branch={branch}\r\n\
         From: <sip:112@198.51.100.1>;tag=x\r\nTo: <sip:+6281234567890@192.0.2.10>;tag=caller1\r\n\
         Call-ID: c7\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    sim.send(&reply);
    assert_eq!(sim.end_reasons(), vec![EndReason::NoAck]);
}

#[test]
fn no_ack_but_caller_media_keeps_the_emergency_call() {
    let mut sim = Sim::new(Transport::Udp);
    sim.send(&invite("sip:112@198.51.100.1", "c8", "z9hG4bK8"));
    let call = sim.started_calls()[0];
    sim.media_event(call, LegId::Caller, MediaEvent::FirstPacket);
    sim.take_sent();
    sim.advance(Duration::from_secs(40));
    assert!(!sim.take_sent().iter().any(|t| t.starts_with("BYE")));
    assert!(sim.end_reasons().is_empty());
}

#[test]
fn a_lost_bye_and_a_lost_bye_response_end_the_call_once() {
    let mut sim = Sim::new(Transport::Udp);
    let tag = establish(&mut sim, "c9");
    sim.take_sent();
    // First BYE lost: the caller's retransmission arrives; its 200 is lost too.
    sim.lose_out = vec!["SIP/2.0 200".into()];
    sim.send(&in_dialog("BYE", 2, "c9", &tag, "z9hG4bKb9"));
    sim.send(&in_dialog("BYE", 2, "c9", &tag, "z9hG4bKb9"));
    assert_eq!(sim.statuses(), vec!["SIP/2.0 200 OK"]);
    assert_eq!(sim.end_reasons(), vec![EndReason::AbandonedInIvr]);
}

#[test]
fn cancel_before_answer_gives_200_and_487_and_an_abandoned_call() {
    let cfg = EngineConfig {
        ring_delay: Duration::from_secs(5),
        ..EngineConfig::default()
    };
    let mut sim = Sim::with_config(Transport::Udp, cfg);
    sim.send(&invite("sip:112@198.51.100.1", "c10", "z9hG4bK10"));
    assert_eq!(
        sim.statuses(),
        vec!["SIP/2.0 100 Trying", "SIP/2.0 180 Ringing"]
    );
    sim.advance(Duration::from_secs(1));
    // The first CANCEL is lost; the retransmission arrives. The 487 is lost once too.
    sim.lose_out = vec!["SIP/2.0 487".into()];
    sim.send(&cancel("c10", "z9hG4bK10"));
    let sent = sim.take_sent();
    assert!(sent[0].starts_with("SIP/2.0 200 OK") && sent[0].contains("CSeq: 1 CANCEL"));
    sim.advance(Duration::from_millis(600));
    let again = sim.take_sent();
    assert!(again[0].starts_with("SIP/2.0 487"), "{again:?}");
    let tag = to_tag(&again[0]);
    sim.send(&ack_for_failure("c10", "z9hG4bK10", &tag));
    sim.advance(Duration::from_secs(40));
    assert!(
        sim.take_sent().is_empty(),
        "487 retransmissions stop at the ACK"
    );
    assert_eq!(sim.end_reasons(), vec![EndReason::AbandonedBeforeAnswer]);
}

#[test]
fn the_gateway_hangs_up_and_retransmits_a_lost_bye() {
    let cfg = EngineConfig {
        max_call_duration: Some(Duration::from_secs(2)),
        ..EngineConfig::default()
    };
    let mut sim = Sim::with_config(Transport::Udp, cfg);
    establish(&mut sim, "c11");
    sim.take_sent();
    sim.lose_out = vec!["BYE".into()];
    sim.advance(Duration::from_millis(2600));
    let sent = sim.take_sent();
    assert_eq!(sent.len(), 1, "BYE retransmitted once after T1: {sent:?}");
    assert!(sent[0].starts_with("BYE "));
    assert!(
        sim.end_reasons().is_empty(),
        "not ended until the BYE is answered"
    );
    sim.advance(Duration::from_secs(40));
    // Timer F expired without an answer: the call is still closed.
    assert_eq!(sim.end_reasons(), vec![EndReason::GatewayHungUp]);
}

#[test]
fn reinvite_is_answered_with_the_current_session() {
    let mut sim = Sim::new(Transport::Tcp);
    let tag = establish(&mut sim, "c12");
    sim.take_sent();
    let reinvite = in_dialog("INVITE", 2, "c12", &tag, "z9hG4bKre").replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{}",
            SDP.len(),
            SDP
        ),
    );
    sim.send(&reinvite);
    let sent = sim.take_sent();
    let ok = sent
        .iter()
        .find(|t| t.starts_with("SIP/2.0 200"))
        .expect("200");
    assert!(ok.contains("m=audio 40000"), "{ok}");
    sim.send(&in_dialog("ACK", 2, "c12", &tag, "z9hG4bKra"));
    sim.advance(Duration::from_secs(60));
    assert!(!sim.take_sent().iter().any(|t| t.starts_with("SIP/2.0 200")));
}

/// After a handover the caller's SIP comes from a new IP: the media side is told, so the
/// caller's RTP from that IP can be latched; requests from the same IP change nothing.
#[test]
fn an_in_dialog_request_from_a_new_ip_tells_the_media_side() {
    let mut sim = Sim::new(Transport::Udp);
    let tag = establish(&mut sim, "c13");
    let moves = |sim: &Sim| -> Vec<MediaCommand> {
        sim.media
            .iter()
            .filter(|m| matches!(m, MediaCommand::PeerMoved { .. }))
            .cloned()
            .collect()
    };
    sim.send(&in_dialog("INFO", 2, "c13", &tag, "z9hG4bKi1"));
    assert!(moves(&sim).is_empty());
    sim.flow.remote = "203.0.113.77:5070".parse().expect("addr");
    sim.send(&in_dialog("INFO", 3, "c13", &tag, "z9hG4bKi2"));
    let call = sim.started_calls()[0];
    assert_eq!(
        moves(&sim),
        vec![MediaCommand::PeerMoved {
            call,
            leg: LegId::Caller,
            peer_ip: "203.0.113.77".parse().expect("ip"),
        }]
    );
}

#[test]
fn options_out_of_dialog_is_200_and_register_is_405() {
    let mut sim = Sim::new(Transport::Udp);
    let options = in_dialog("OPTIONS", 1, "o1", "x", "z9hG4bKo").replace(";tag=x", "");
    sim.send(&options);
    assert_eq!(sim.statuses(), vec!["SIP/2.0 200 OK"]);
    let register = in_dialog("REGISTER", 1, "r1", "x", "z9hG4bKr1").replace(";tag=x", "");
    sim.send(&register);
    assert_eq!(sim.statuses(), vec!["SIP/2.0 405 Method Not Allowed"]);
}

#[test]
fn a_bye_for_an_unknown_dialog_is_481() {
    let mut sim = Sim::new(Transport::Udp);
    sim.send(&in_dialog("BYE", 2, "nope", "zzz", "z9hG4bKn"));
    assert_eq!(
        sim.statuses(),
        vec!["SIP/2.0 481 Call/Transaction Does Not Exist"]
    );
}

#[test]
fn draining_refuses_new_calls_with_503_but_keeps_live_ones() {
    let mut sim = Sim::new(Transport::Udp);
    let tag = establish(&mut sim, "c13");
    sim.take_sent();
    sim.input(Input::Drain);
    sim.send(&invite("sip:112@198.51.100.1", "c14", "z9hG4bK14"));
    assert!(sim.statuses().iter().any(|s| s.starts_with("SIP/2.0 503")));
    sim.send(&in_dialog("BYE", 2, "c13", &tag, "z9hG4bKb13"));
    assert_eq!(
        sim.end_reasons(),
        vec![EndReason::RefusedDraining, EndReason::AbandonedInIvr]
    );
}

#[test]
fn options_tells_the_load_balancer_503_while_storage_fails_or_draining_and_calls_still_land() {
    // A front (Kamailio's dispatcher, 192.0.2.10 here) probes each node with OPTIONS and sends
    // new calls only to the nodes that answer 200.
    let cfg = EngineConfig {
        load_balancers: Trusted(vec!["192.0.2.10/32".parse().expect("net")]),
        ..EngineConfig::default()
    };
    let mut sim = Sim::with_config(Transport::Udp, cfg);
    let options = |n: u32| {
        in_dialog(
            "OPTIONS",
            1,
            &format!("probe{n}"),
            "x",
            &format!("z9hG4bKp{n}"),
        )
        .replace(";tag=x", "")
    };
    sim.send(&options(1));
    assert_eq!(sim.statuses(), vec!["SIP/2.0 200 OK"]);
    sim.input(Input::StorageHealthy(false));
    sim.send(&options(2));
    assert_eq!(sim.statuses(), vec!["SIP/2.0 503 Service Unavailable"]);
    // A carrier's SBC probing a single box has no other node to send 112 to: it keeps
    // hearing 200 while this node takes calls.
    let balancer = sim.flow.remote;
    sim.flow.remote = "203.0.113.5:5060".parse().expect("addr");
    sim.send(&options(3));
    assert_eq!(sim.statuses(), vec!["SIP/2.0 200 OK"]);
    sim.flow.remote = balancer;
    // A call that reaches this node anyway (the balancer not yet told) is answered: the
    // failing disk is the balancer's business, not the caller's.
    sim.send(&invite("sip:112@198.51.100.1", "s1", "z9hG4bKs1"));
    assert!(sim.statuses().iter().any(|s| s == "SIP/2.0 200 OK"));
    sim.input(Input::StorageHealthy(true));
    sim.send(&options(4));
    assert_eq!(sim.statuses(), vec!["SIP/2.0 200 OK"]);
    // Draining: everyone hears 503.
    sim.input(Input::Drain);
    sim.send(&options(5));
    assert_eq!(sim.statuses(), vec!["SIP/2.0 503 Service Unavailable"]);
    sim.flow.remote = "203.0.113.5:5060".parse().expect("addr");
    sim.send(&options(6));
    assert_eq!(sim.statuses(), vec!["SIP/2.0 503 Service Unavailable"]);
}

#[test]
fn a_thousand_calls_with_random_loss_all_complete() {
    // A small deterministic lossy network: every message to the caller has a 10 % chance to
    // vanish; the scripted caller retransmits INVITE/ACK/BYE like a UAC would.
    let mut sim = Sim::new(Transport::Udp);
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut lossy = |sent: Vec<String>| -> Vec<String> {
        sent.into_iter()
            .filter(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                !rng.is_multiple_of(10)
            })
            .collect()
    };
    for i in 0..1000 {
        let call_id = format!("load{i}");
        let inv = invite("sip:112@198.51.100.1", &call_id, &format!("z9hG4bKl{i}"));
        let mut tag = None;
        for _ in 0..7 {
            sim.send(&inv);
            sim.advance(Duration::from_millis(500));
            if let Some(ok) = lossy(sim.take_sent())
                .iter()
                .find(|t| t.starts_with("SIP/2.0 200"))
            {
                tag = Some(to_tag(ok));
                break;
            }
        }
        let tag = tag.expect("answered through retransmission");
        sim.send(&in_dialog(
            "ACK",
            1,
            &call_id,
            &tag,
            &format!("z9hG4bKla{i}"),
        ));
        let bye = in_dialog("BYE", 2, &call_id, &tag, &format!("z9hG4bKlb{i}"));
        let mut done = false;
        for _ in 0..7 {
            sim.send(&bye);
            if lossy(sim.take_sent())
                .iter()
                .any(|t| t.starts_with("SIP/2.0 200"))
            {
                done = true;
                break;
            }
            sim.advance(Duration::from_millis(500));
        }
        assert!(done, "call {i} BYE answered");
    }
    let ends = sim.end_reasons();
    assert_eq!(ends.len(), 1000);
    assert!(ends.iter().all(|r| *r == EndReason::AbandonedInIvr));
    sim.advance(Duration::from_secs(120));
    assert_eq!(sim.engine.active_calls(), 0);
}

impl Sim {
    /// Plays the part of the media side: every prompt the IVR starts "ends" after `length`.
    /// Returns the timeline kinds seen, in order, until the IVR routes or `limit` passes.
    fn run_ivr(&mut self, call: CallRef, length: Duration, limit: Duration) -> Option<String> {
        let end = self.now + limit;
        let mut done_plays = 0;
        while self.now < end {
            let plays: Vec<PlaybackId> = self
                .media
                .iter()
                .filter_map(|m| match m {
                    MediaCommand::Play { playback, .. } => Some(*playback),
                    _ => None,
                })
                .collect();
            let stopped: Vec<PlaybackId> = self
                .media
                .iter()
                .filter_map(|m| match m {
                    MediaCommand::StopPlayback { playback, .. } => Some(*playback),
                    _ => None,
                })
                .collect();
            if let Some(route) = self.route_of(call) {
                return Some(route);
            }
            if plays.len() > done_plays {
                self.advance(length);
                let playback = plays[done_plays];
                done_plays += 1;
                if !stopped.contains(&playback) {
                    self.media_event(call, LegId::Caller, MediaEvent::PromptFinished { playback });
                }
            } else {
                self.advance(Duration::from_millis(250));
            }
        }
        self.route_of(call)
    }

    fn route_of(&self, call: CallRef) -> Option<String> {
        self.logs.iter().find_map(|r| match r {
            LogRecord::Timeline {
                call: c,
                kind,
                detail,
            } if *c == call && kind.as_str() == "route" => Some(detail.clone()),
            _ => None,
        })
    }

    fn timeline_kinds(&self, call: CallRef) -> Vec<&'static str> {
        self.logs
            .iter()
            .filter_map(|r| match r {
                LogRecord::Timeline { call: c, kind, .. } if *c == call => Some(kind.as_str()),
                _ => None,
            })
            .collect()
    }

    fn digit(&mut self, call: CallRef, digit: char) {
        let event = MediaEvent::Digit {
            digit,
            source: "rfc4733",
        };
        self.media_event(call, LegId::Caller, event);
    }
}

#[test]
fn a_silent_caller_hears_the_menu_and_still_reaches_the_call_takers() {
    let mut sim = Sim::new(Transport::Udp);
    establish(&mut sim, "ivr1");
    let call = sim.started_calls()[0];
    assert!(
        sim.media
            .iter()
            .any(|m| matches!(m, MediaCommand::Play { prompt, .. } if prompt.to_string_lossy().contains("/id/"))),
        "the first prompt is in Bahasa Indonesia: {:?}",
        sim.media
    );
    let route = sim
        .run_ivr(call, Duration::from_secs(3), Duration::from_secs(300))
        .expect("routed");
    assert!(route.contains("calltakers"), "{route}");
    let kinds = sim.timeline_kinds(call);
    assert!(kinds.contains(&"prompt"), "{kinds:?}");
    assert!(kinds.contains(&"timeout"), "{kinds:?}");
    assert!(
        sim.end_reasons().is_empty(),
        "the silent caller is not hung up on"
    );
}

#[test]
fn a_digit_during_the_prompt_barges_in_and_routes() {
    let mut sim = Sim::new(Transport::Udp);
    establish(&mut sim, "ivr2");
    let call = sim.started_calls()[0];
    sim.advance(Duration::from_millis(800));
    sim.digit(call, '1');
    assert!(
        sim.media
            .iter()
            .any(|m| matches!(m, MediaCommand::StopPlayback { .. })),
        "barge-in stops the prompt"
    );
    let route = sim
        .run_ivr(call, Duration::from_secs(2), Duration::from_secs(30))
        .expect("routed");
    assert!(route.contains("police"), "{route}");
}

#[test]
fn a_sip_info_digit_drives_the_ivr_too() {
    let mut sim = Sim::new(Transport::Udp);
    let tag = establish(&mut sim, "ivr3");
    let call = sim.started_calls()[0];
    let body = "Signal=2\r\nDuration=160\r\n";
    let info = in_dialog("INFO", 2, "ivr3", &tag, "z9hG4bKinfo").replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/dtmf-relay\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    sim.send(&info);
    let route = sim
        .run_ivr(call, Duration::from_secs(2), Duration::from_secs(30))
        .expect("routed");
    assert!(route.contains("fire"), "{route}");
}

#[test]
fn a_direct_number_routes_without_a_menu() {
    let mut sim = Sim::new(Transport::Udp);
    sim.send(&invite("sip:113@198.51.100.1", "ivr4", "z9hG4bKi4"));
    let call = sim.started_calls()[0];
    let route = sim
        .run_ivr(call, Duration::from_secs(1), Duration::from_secs(5))
        .expect("routed");
    assert!(route.contains("fire"), "{route}");
}

#[test]
fn an_emergency_call_with_an_unknown_require_is_answered_not_refused() {
    let mut sim = Sim::new(Transport::Udp);
    let inv = invite("sip:112@198.51.100.1", "req1", "z9hG4bKreq").replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRequire: nothingSupportsThis\r\n",
    );
    sim.send(&inv);
    assert!(sim.statuses().iter().any(|s| s.starts_with("SIP/2.0 200")));
    let call = sim.started_calls()[0];
    assert!(sim.timeline_kinds(call).contains(&"not_refused"));
    // The same request to a normal number gets the 420 RFC 3261 asks for.
    let mut sim = Sim::new(Transport::Udp);
    sim.send(&inv.replace("sip:112@", "sip:0811@"));
    assert!(sim.statuses().iter().any(|s| s.starts_with("SIP/2.0 420")));
}

#[test]
fn a_bye_after_a_lost_ack_stops_the_200_retransmissions() {
    let mut sim = Sim::new(Transport::Udp);
    sim.send(&invite("sip:112@198.51.100.1", "c15", "z9hG4bK15"));
    let ok = sim.take_sent().pop().expect("200");
    let tag = to_tag(&ok);
    sim.send(&in_dialog("BYE", 2, "c15", &tag, "z9hG4bKb15"));
    assert_eq!(sim.statuses(), vec!["SIP/2.0 200 OK"]);
    sim.advance(Duration::from_secs(40));
    assert!(
        sim.take_sent().is_empty(),
        "no 200 retransmissions after the BYE"
    );
    assert_eq!(sim.end_reasons(), vec![EndReason::AbandonedInIvr]);
}

#[test]
fn a_malformed_pidf_lo_is_logged_with_its_reason_and_the_call_is_answered() {
    let mut sim = Sim::new(Transport::Udp);
    let body = format!(
        "--b1\r\nContent-Type: application/sdp\r\n\r\n{SDP}\r\n--b1\r\nContent-Type: application/pidf+xml\r\n\
         Content-ID: <loc@caller>\r\n\r\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\"><tuple>\r\n--b1--\r\n"
    );
    let inv = invite("urn:service:sos", "loc1", "z9hG4bKloc")
        .replace(
            "Content-Type: application/sdp\r\n",
            "Geolocation: <cid:loc@caller>\r\nContent-Type: multipart/mixed;boundary=b1\r\n",
        )
        .replace(
            &format!("Content-Length: {}\r\n\r\n{SDP}", SDP.len()),
            &format!("Content-Length: {}\r\n\r\n{body}", body.len()),
        );
    sim.send(&inv);
    assert!(
        sim.statuses().iter().any(|s| s.starts_with("SIP/2.0 200")),
        "answered"
    );
    let call = sim.started_calls()[0];
    assert!(sim.timeline_kinds(call).contains(&"location_problem"));
    assert!(
        sim.logs.iter().any(
            |r| matches!(r, LogRecord::Location { report, .. } if !report.problems.is_empty())
        )
    );
    // The SDP inside the multipart body was found and answered.
    assert!(
        sim.media
            .iter()
            .any(|m| matches!(m, MediaCommand::Start { session, .. } if session.remote.is_some()))
    );
}

#[test]
fn hang_up_all_sends_bye_and_logs_every_live_call_at_shutdown() {
    let mut sim = Sim::new(Transport::Udp);
    establish(&mut sim, "s1");
    sim.take_sent();
    let now = sim.now;
    sim.engine.hang_up_all(now);
    sim.drain();
    assert!(sim.take_sent().iter().any(|t| t.starts_with("BYE ")));
    assert_eq!(sim.end_reasons(), vec![EndReason::GatewayHungUp]);
    assert_eq!(sim.engine.active_calls(), 0);
}

#[test]
fn a_location_sent_mid_call_joins_the_calls_location_history() {
    let mut sim = Sim::new(Transport::Udp);
    let tag = establish(&mut sim, "loc2");
    let pidf = "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:gp=\"urn:ietf:params:xml:ns:pidf:geopriv10\" \
        xmlns:gml=\"http://www.opengis.net/gml\" entity=\"pres:a@b\"><tuple id=\"t\"><status><gp:geopriv>\
        <gp:location-info><gml:Point srsName=\"urn:ogc:def:crs:EPSG::4326\"><gml:pos>-0.50 117.15</gml:pos></gml:Point>\
        </gp:location-info><gp:usage-rules/></gp:geopriv></status></tuple></presence>";
    let body = format!(
        "--b2\r\nContent-Type: application/sdp\r\n\r\n{SDP}\r\n--b2\r\nContent-Type: application/pidf+xml\r\n\
         Content-ID: <moved@caller>\r\n\r\n{pidf}\r\n--b2--\r\n"
    );
    let reinvite = in_dialog("INVITE", 2, "loc2", &tag, "z9hG4bKmoved").replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Geolocation: <cid:moved@caller>\r\nContent-Type: multipart/mixed;boundary=b2\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    sim.send(&reinvite);
    let sources: Vec<&str> = sim
        .logs
        .iter()
        .filter_map(|r| match r {
            LogRecord::Location { source, .. } => Some(*source),
            _ => None,
        })
        .collect();
    assert_eq!(sources, vec!["invite", "reinvite"]);
    assert!(sim.logs.iter().any(|r| matches!(r,
        LogRecord::Location { source: "reinvite", report, .. } if report.locations.len() == 1)));
}

#[test]
fn a_call_without_location_gets_the_trunk_default_marked_as_such() {
    let cfg = EngineConfig {
        default_location: Some(siaga_location::DefaultLocation::circle(
            siaga_location::Coordinate::new(-0.5022, 117.1536),
            siaga_location::Meters(15_000.0),
        )),
        ..EngineConfig::default()
    };
    let mut sim = Sim::with_config(Transport::Udp, cfg);
    establish(&mut sim, "loc3");
    let report = sim
        .logs
        .iter()
        .find_map(|r| match r {
            LogRecord::Location { report, .. } => Some(report.clone()),
            _ => None,
        })
        .expect("location report");
    let chosen = report.chosen_location().expect("the default is chosen");
    let text = chosen.to_string();
    assert!(text.contains("Default"), "{text}");
}

#[test]
fn a_hundred_thousand_copies_of_an_emergency_invite_cost_a_bounded_number_of_log_records() {
    let mut sim = Sim::new(Transport::Udp);
    let tag = establish(&mut sim, "flood1");
    let call = sim.started_calls()[0];
    let records_before = sim.logs.len();
    // An outsider resends the call's INVITE at line rate for 100 virtual seconds: the same
    // branch (retransmissions), and every tenth copy on a new branch (merged requests),
    // with the ACK repeated too.
    let same = invite("sip:112@198.51.100.1", "flood1", "z9hG4bKinv1");
    let ack = in_dialog("ACK", 1, "flood1", &tag, "z9hG4bKack1");
    let mut replies = 0usize;
    for i in 0..100_000u32 {
        match i % 10 {
            0 => sim.send(&invite(
                "sip:112@198.51.100.1",
                "flood1",
                &format!("z9hG4bKcopy{i}"),
            )),
            5 => sim.send(&ack),
            _ => sim.send(&same),
        }
        sim.advance(Duration::from_millis(1));
        replies += sim.sent.len();
        sim.sent.clear();
    }
    assert!(replies > 50_000, "copies are still answered: {replies}");
    let records = sim.logs.len() - records_before;
    assert!(records < 1_000, "{records} log records for 100,000 copies");
    assert_eq!(sim.started_calls(), vec![call], "one caller, one call");
    let counted = |sim: &Sim, kind: &str| {
        sim.logs.iter().any(|r| {
            matches!(r, LogRecord::Timeline { kind: k, detail, .. }
                if k.as_str() == kind && detail.contains("the first 10 logged"))
        })
    };
    assert!(
        counted(&sim, "retransmissions"),
        "the INVITE's transaction ended with its count"
    );
    // The call goes on as normal: the caller hangs up and gets its 200.
    sim.send(&in_dialog("BYE", 2, "flood1", &tag, "z9hG4bKbye1"));
    assert_eq!(
        sim.statuses(),
        vec!["SIP/2.0 200 OK"],
        "the BYE is answered"
    );
    // After 100 s the silent caller has long been handed to the call-takers (offer_after, 15 s).
    assert_eq!(
        sim.end_reasons(),
        vec![EndReason::AbandonedWaitingForAgency]
    );
    assert!(counted(&sim, "merged_requests"));
    assert!(counted(&sim, "repeated_acks"));
}
