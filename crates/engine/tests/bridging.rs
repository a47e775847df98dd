//! The B2BUA in virtual time: caller → IVR → digit → agency, with failover, fallback,
//! queueing, hang-ups, transfer and location passed on. Agencies are scripted here.
#![allow(clippy::disallowed_methods)] // Instant::now() once, as the origin of virtual time

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use siaga_dialplan::Dialplan;
use siaga_engine::EngineConfig;
use siaga_engine::call::EndReason;
use siaga_engine::harness::{self, Harness, MediaSide, Prompts, default_plan};
use siaga_engine::ids::{CallRef, LegId};
use siaga_engine::io::{Direction, Flow, Input, LogRecord, MediaCommand, MediaEvent, Transport};

fn plan_at(path: &str) -> Arc<Dialplan> {
    harness::plan(path, &std::fs::read_to_string(path).expect("plan"))
}

const CALLER: &str = "192.0.2.10:5070";
const GW: &str = "198.51.100.1:5060";
const POLICE_1: &str = "127.0.0.1:5081";
const POLICE_2: &str = "127.0.0.1:5082";
const TAKER_1: &str = "127.0.0.1:5080";
const TAKER_2: &str = "127.0.0.1:5089";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

/// The gateway in the harness, with the caller's call once it is in.
struct Sim {
    h: Harness,
    call: Option<CallRef>,
    caller_tag: String,
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

fn flow_from(remote: &str) -> Flow {
    Flow {
        transport: Transport::Udp,
        remote: addr(remote),
        local: addr(GW),
        conn: None,
    }
}

impl Sim {
    fn new() -> Self {
        Self::with_plan(default_plan())
    }

    fn with_plan(plan: Arc<Dialplan>) -> Self {
        let mut h = Harness::new(EngineConfig::default(), plan, Instant::now());
        // Prompts end at once: the tests are about signalling.
        h.media_side = MediaSide {
            prompts: Prompts::EndAtOnce,
            first_packet_on_start: false,
        };
        Self {
            h,
            call: None,
            caller_tag: String::new(),
        }
    }

    fn send_from(&mut self, remote: &str, text: &str) {
        self.h.sip(flow_from(remote), text.as_bytes());
    }

    /// Messages sent to `to` whose first line starts with `prefix`, removed from the record.
    fn take_to(&mut self, to: &str, prefix: &str) -> Vec<String> {
        self.h.take_to(addr(to), prefix)
    }

    fn timeline(&self, kind: &str) -> Vec<String> {
        self.logs
            .iter()
            .filter_map(|r| match r {
                LogRecord::Timeline {
                    kind: k, detail, ..
                } if k.as_str() == kind => Some(detail.clone()),
                _ => None,
            })
            .collect()
    }

    /// A caller dials, the gateway answers, the caller ACKs.
    fn call_in(&mut self, uri: &str, extra_headers: &str, body: Option<(&str, &str)>) {
        let (ct, body) = body.unwrap_or(("application/sdp", SDP));
        let invite = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKcaller1\r\nMax-Forwards: 70\r\n\
             From: \"Ani\" <sip:+6281234567890@192.0.2.10>;tag=caller1\r\nTo: <{uri}>\r\nCall-ID: call-a\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:ani@{CALLER}>\r\n{extra_headers}Content-Type: {ct}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.send_from(CALLER, &invite);
        let ok = self.take_to(CALLER, "SIP/2.0 200").pop().expect("answered");
        self.caller_tag = tag_of(&ok, "To");
        self.call = self.logs.iter().find_map(|r| match r {
            LogRecord::CallStarted(s) => Some(s.call),
            _ => None,
        });
        let ack = self.caller_request("ACK", 1, "z9hG4bKack");
        self.send_from(CALLER, &ack);
    }

    fn caller_request(&self, method: &str, cseq: u32, branch: &str) -> String {
        format!(
            "{method} sip:siaga@{GW} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch={branch}\r\nMax-Forwards: 70\r\n\
             From: \"Ani\" <sip:+6281234567890@192.0.2.10>;tag=caller1\r\nTo: <sip:112@{GW}>;tag={}\r\n\
             Call-ID: call-a\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            self.caller_tag
        )
    }

    fn digit(&mut self, d: char) {
        self.caller_media(MediaEvent::Digit {
            digit: d,
            source: "rfc4733",
        });
    }

    /// The agency at `from` answers the INVITE `invite` with `status` (SDP on 2xx/183).
    fn agency_reply(&mut self, from: &str, invite: &str, status: u16, tag: &str) {
        let via = header(invite, "Via");
        let sdp = String::from(
            "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 8 101\r\n\
             a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        );
        let body = if status == 200 || status == 183 {
            sdp
        } else {
            String::new()
        };
        let ct = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        let reply = format!(
            "SIP/2.0 {status} X\r\nVia: {via}\r\nFrom: {}\r\nTo: {};tag={tag}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
             Contact: <sip:agency@{from}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            header(invite, "From"),
            header(invite, "To"),
            header(invite, "Call-ID"),
            header(invite, "CSeq"),
            body.len()
        );
        self.send_from(from, &reply);
    }

    /// A request from the agency inside its dialog.
    fn agency_request(
        &mut self,
        from: &str,
        invite: &str,
        tag: &str,
        method: &str,
        cseq: u32,
        extra: &str,
    ) {
        let request = format!(
            "{method} sip:siaga@{GW} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKag{method}{cseq}\r\n\
             Max-Forwards: 70\r\nFrom: {};tag={tag}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
             {extra}Content-Length: 0\r\n\r\n",
            header(invite, "To"),
            header(invite, "From"),
            header(invite, "Call-ID"),
        );
        self.send_from(from, &request);
    }
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
    m=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

fn header(msg: &str, name: &str) -> String {
    harness::header(msg, &[name]).unwrap_or_default().to_owned()
}

fn tag_of(msg: &str, name: &str) -> String {
    harness::tag(&header(msg, name))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn police_digit_reaches_the_police_with_identity_category_and_emergency_ids() {
    let mut sim = Sim::new();
    sim.call_in(
        "sip:112@198.51.100.1",
        "P-Asserted-Identity: <tel:+6281234567890>\r\n",
        None,
    );
    sim.digit('1');
    let invite = sim
        .take_to(POLICE_1, "INVITE")
        .pop()
        .expect("INVITE to the police");
    assert!(
        invite.starts_with("INVITE sip:polisi@127.0.0.1:5081 SIP/2.0"),
        "{invite}"
    );
    assert_eq!(
        header(&invite, "P-Asserted-Identity"),
        "<tel:+6281234567890>"
    );
    assert_eq!(header(&invite, "X-Siaga-Category"), "police");
    assert_eq!(header(&invite, "Priority"), "emergency");
    let call_info = header(&invite, "Call-Info");
    assert!(
        call_info.contains("purpose=emergency-CallId")
            && call_info.contains("purpose=emergency-IncidentId")
    );
    assert_ne!(
        header(&invite, "Call-ID"),
        "call-a",
        "a new Call-ID on the agency leg"
    );
    assert!(
        invite.contains("m=audio 40002 RTP/AVP"),
        "our offer: {invite}"
    );
    sim.agency_reply(POLICE_1, &invite, 180, "pol1");
    sim.agency_reply(POLICE_1, &invite, 200, "pol1");
    let ack = sim.take_to(POLICE_1, "ACK").pop().expect("ACK to the 200");
    assert!(
        ack.starts_with("ACK sip:agency@127.0.0.1:5081 SIP/2.0"),
        "{ack}"
    );
    assert!(sim.media.iter().any(|m| matches!(
        m,
        MediaCommand::Bridge {
            agency: LegId::Agency(_),
            ..
        }
    )));
    assert_eq!(sim.timeline("agency_answered").len(), 1);
    // The ids the agency got are the ones in the call log.
    let logged = sim.logs.iter().find_map(|r| match r {
        LogRecord::CallStarted(s) => Some(s.emergency_call_id.clone()),
        _ => None,
    });
    assert!(call_info.contains(&logged.expect("logged id")));
}

#[test]
fn a_503_moves_to_the_second_police_target_at_once() {
    let mut sim = Sim::new();
    sim.call_in("sip:112@198.51.100.1", "", None);
    sim.digit('1');
    let first = sim.take_to(POLICE_1, "INVITE").pop().expect("first target");
    sim.agency_reply(POLICE_1, &first, 503, "p1");
    assert_eq!(sim.take_to(POLICE_1, "ACK").len(), 1, "the 503 is ACKed");
    // No time passes: the second target is rung at once.
    let second = sim
        .take_to(POLICE_2, "INVITE")
        .pop()
        .expect("second target at once");
    sim.agency_reply(POLICE_2, &second, 200, "p2");
    assert_eq!(sim.timeline("agency_failed").len(), 1);
    assert!(sim.timeline("agency_answered")[0].contains("5082"));
}

#[test]
fn ring_timeout_cancels_and_tries_the_next_target() {
    let mut sim = Sim::new();
    sim.call_in("sip:110@198.51.100.1", "", None);
    let first = sim.take_to(POLICE_1, "INVITE").pop().expect("first");
    sim.agency_reply(POLICE_1, &first, 180, "p1");
    sim.advance(Duration::from_secs(21));
    let cancel = sim
        .take_to(POLICE_1, "CANCEL")
        .pop()
        .expect("CANCEL at ring timeout");
    assert_eq!(header(&cancel, "Call-ID"), header(&first, "Call-ID"));
    assert!(
        sim.take_to(POLICE_2, "INVITE").pop().is_some(),
        "next target rung"
    );
    assert_eq!(sim.timeline("agency_timeout").len(), 1);
}

#[test]
fn every_police_target_failing_falls_back_to_the_call_takers_in_parallel() {
    let mut sim = Sim::new();
    sim.call_in("sip:110@198.51.100.1", "", None);
    let a = sim.take_to(POLICE_1, "INVITE").pop().expect("p1");
    sim.agency_reply(POLICE_1, &a, 486, "p1");
    let b = sim.take_to(POLICE_2, "INVITE").pop().expect("p2");
    sim.agency_reply(POLICE_2, &b, 503, "p2");
    let t1 = sim
        .take_to(TAKER_1, "INVITE")
        .pop()
        .expect("call-taker desk 1");
    let t2 = sim
        .take_to(TAKER_2, "INVITE")
        .pop()
        .expect("call-taker desk 2 at the same time");
    assert_eq!(sim.timeline("fallback").len(), 1);
    sim.agency_reply(TAKER_1, &t1, 180, "t1");
    sim.agency_reply(TAKER_2, &t2, 200, "t2");
    let cancel = sim
        .take_to(TAKER_1, "CANCEL")
        .pop()
        .expect("the other desk is cancelled");
    assert_eq!(header(&cancel, "Call-ID"), header(&t1, "Call-ID"));
}

#[test]
fn with_every_call_taker_busy_the_caller_queues_hears_the_position_and_is_connected_later() {
    let mut sim = Sim::new();
    sim.call_in("sip:112@198.51.100.1", "", None);
    sim.digit('0'); // straight to the call-takers
    let t1 = sim.take_to(TAKER_1, "INVITE").pop().expect("desk 1");
    let t2 = sim.take_to(TAKER_2, "INVITE").pop().expect("desk 2");
    sim.agency_reply(TAKER_1, &t1, 486, "a");
    sim.agency_reply(TAKER_2, &t2, 486, "b");
    assert_eq!(sim.timeline("queue_enter").len(), 1);
    let announced: Vec<String> = sim
        .media
        .iter()
        .filter_map(|m| match m {
            MediaCommand::Play { prompt, .. } => Some(prompt.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    assert!(
        announced.iter().any(|p| p.ends_with("all-busy.wav")),
        "{announced:?}"
    );
    assert!(
        announced.iter().any(|p| p.ends_with("number-1.wav")),
        "{announced:?}"
    );
    // The gateway never hangs up on a waiting caller; at the next announcement it retries.
    sim.advance(Duration::from_secs(21));
    assert!(sim.end_reasons().is_empty());
    let retry = sim.take_to(TAKER_1, "INVITE").pop().expect("retried");
    sim.agency_reply(TAKER_1, &retry, 200, "c");
    assert_eq!(sim.timeline("queue_leave").len(), 1);
    assert_eq!(sim.timeline("agency_answered").len(), 1);
}

#[test]
fn the_live_view_follows_a_call_from_the_menu_to_the_queue_to_a_desk() {
    use siaga_engine::CallPhase;
    let mut sim = Sim::new();
    sim.call_in("sip:112@198.51.100.1", "", None);
    let live = sim.engine.live_calls();
    assert_eq!(live.len(), 1);
    assert_eq!(
        (live[0].phase, live[0].route.as_deref()),
        (CallPhase::Ivr, None)
    );
    sim.digit('0');
    let live = sim.engine.live_calls();
    assert_eq!(live[0].phase, CallPhase::AgencyRinging);
    assert_eq!(live[0].route.as_deref(), Some("calltakers"));
    assert_eq!(
        live[0].agencies.len(),
        2,
        "both desks ring: {:?}",
        live[0].agencies
    );
    let t1 = sim.take_to(TAKER_1, "INVITE").pop().expect("desk 1");
    let t2 = sim.take_to(TAKER_2, "INVITE").pop().expect("desk 2");
    sim.agency_reply(TAKER_1, &t1, 486, "a");
    sim.agency_reply(TAKER_2, &t2, 486, "b");
    let live = sim.engine.live_calls();
    assert_eq!(
        (live[0].phase, live[0].queue_position),
        (CallPhase::Queued, Some(1))
    );
    sim.advance(Duration::from_secs(21));
    let retry = sim.take_to(TAKER_1, "INVITE").pop().expect("retried");
    sim.agency_reply(TAKER_1, &retry, 200, "c");
    let live = sim.engine.live_calls();
    assert_eq!(live[0].phase, CallPhase::Talking);
    assert_eq!(live[0].agencies.len(), 1, "{:?}", live[0].agencies);
    assert!(
        live[0].agencies[0].contains("127.0.0.1:5080"),
        "{:?}",
        live[0].agencies
    );
}

#[test]
fn the_agency_hanging_up_ends_the_callers_leg() {
    let mut sim = Sim::new();
    sim.call_in("sip:113@198.51.100.1", "", None);
    let inv = sim.take_to("127.0.0.1:5083", "INVITE").pop().expect("fire");
    sim.agency_reply("127.0.0.1:5083", &inv, 200, "f1");
    sim.agency_request("127.0.0.1:5083", &inv, "f1", "BYE", 2, "");
    assert_eq!(sim.take_to("127.0.0.1:5083", "SIP/2.0 200").len(), 1);
    let bye = sim.take_to(CALLER, "BYE").pop().expect("BYE to the caller");
    let reply = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: call-a\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        header(&bye, "Via"),
        header(&bye, "From"),
        header(&bye, "To"),
        header(&bye, "CSeq")
    );
    sim.send_from(CALLER, &reply);
    assert_eq!(sim.end_reasons(), vec![EndReason::AgencyHungUp]);
}

#[test]
fn a_caller_hanging_up_while_agencies_ring_is_abandoned_and_they_are_cancelled() {
    let mut sim = Sim::new();
    sim.call_in("sip:112@198.51.100.1", "", None);
    sim.digit('0');
    let t1 = sim.take_to(TAKER_1, "INVITE").pop().expect("desk 1");
    sim.agency_reply(TAKER_1, &t1, 180, "a");
    let t2 = sim.take_to(TAKER_2, "INVITE").pop().expect("desk 2");
    let bye = sim.caller_request("BYE", 2, "z9hG4bKbye");
    sim.send_from(CALLER, &bye);
    assert_eq!(sim.take_to(TAKER_1, "CANCEL").len(), 1);
    // Desk 2 sent nothing yet: RFC 3261 §9.1 holds its CANCEL until a provisional arrives.
    assert_eq!(sim.take_to(TAKER_2, "CANCEL").len(), 0);
    sim.agency_reply(TAKER_2, &t2, 180, "b");
    assert_eq!(sim.take_to(TAKER_2, "CANCEL").len(), 1);
    assert_eq!(
        sim.end_reasons(),
        vec![EndReason::AbandonedWaitingForAgency]
    );
    // The agencies' 487s are ACKed even though the caller is gone.
    sim.agency_reply(TAKER_1, &t1, 487, "a");
    assert_eq!(sim.take_to(TAKER_1, "ACK").len(), 1);
}

#[test]
fn a_refer_from_the_police_moves_the_caller_to_the_ambulance_with_one_recording() {
    let mut sim = Sim::new();
    sim.call_in("sip:110@198.51.100.1", "", None);
    let police = sim.take_to(POLICE_1, "INVITE").pop().expect("police");
    sim.agency_reply(POLICE_1, &police, 200, "p1");
    sim.agency_request(
        POLICE_1,
        &police,
        "p1",
        "REFER",
        2,
        "Refer-To: <sip:psc119@127.0.0.1:5084>\r\nReferred-By: <sip:polisi@127.0.0.1:5081>\r\n",
    );
    assert_eq!(sim.take_to(POLICE_1, "SIP/2.0 202").len(), 1);
    let notify = sim
        .take_to(POLICE_1, "NOTIFY")
        .pop()
        .expect("NOTIFY 100 Trying");
    assert!(notify.contains("SIP/2.0 100 Trying"));
    let ambulance = sim
        .take_to("127.0.0.1:5084", "INVITE")
        .pop()
        .expect("INVITE to the transfer target");
    assert_eq!(header(&ambulance, "X-Siaga-Category"), "police");
    sim.agency_reply("127.0.0.1:5084", &ambulance, 200, "amb");
    let done = sim.take_to(POLICE_1, "NOTIFY").pop().expect("NOTIFY 200");
    assert!(done.contains("SIP/2.0 200 OK"));
    assert_eq!(
        sim.take_to(POLICE_1, "BYE").len(),
        1,
        "the transferor is released"
    );
    let bridges = sim
        .media
        .iter()
        .filter(|m| matches!(m, MediaCommand::Bridge { .. }))
        .count();
    assert_eq!(
        bridges, 2,
        "caller bridged to police, then to the ambulance"
    );
    // The caller's leg (and so its recording) was never released.
    assert!(!sim.media.iter().any(|m| matches!(
        m,
        MediaCommand::Release {
            leg: LegId::Caller,
            ..
        }
    )));
    assert_eq!(sim.timeline("transfer_done").len(), 1);
    assert!(sim.end_reasons().is_empty());
}

#[test]
fn the_callers_pidf_lo_reaches_the_agency_byte_for_byte() {
    let pidf = "<?xml version=\"1.0\"?>\r\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
        xmlns:gp=\"urn:ietf:params:xml:ns:pidf:geopriv10\" xmlns:gml=\"http://www.opengis.net/gml\" \
        xmlns:gs=\"http://www.opengis.net/pidflo/1.0\" entity=\"pres:ani@example.com\">\
        <tuple id=\"t\"><status><gp:geopriv><gp:location-info><gs:Circle srsName=\"urn:ogc:def:crs:EPSG::4326\">\
        <gml:pos>-0.5022 117.1536</gml:pos><gs:radius uom=\"urn:ogc:def:uom:EPSG::9001\">850</gs:radius>\
        </gs:Circle></gp:location-info><gp:usage-rules/><gp:method>GPS</gp:method></gp:geopriv></status></tuple></presence>";
    let body = format!(
        "--b1\r\nContent-Type: application/sdp\r\n\r\n{SDP}\r\n--b1\r\nContent-Type: application/pidf+xml\r\n\
         Content-ID: <loc1@ani>\r\n\r\n{pidf}\r\n--b1--\r\n"
    );
    let mut sim = Sim::new();
    sim.call_in(
        "urn:service:sos.fire",
        "Geolocation: <cid:loc1@ani>\r\nGeolocation-Routing: yes\r\n",
        Some(("multipart/mixed;boundary=b1", &body)),
    );
    let invite = sim.take_to("127.0.0.1:5083", "INVITE").pop().expect("fire");
    assert!(invite.contains(pidf), "the PIDF-LO unchanged");
    assert!(header(&invite, "Geolocation").starts_with("<cid:loc1@ani>"));
    assert!(header(&invite, "Content-Type").starts_with("multipart/mixed"));
}

#[test]
fn an_agency_outside_the_trust_domain_does_not_learn_a_private_number() {
    let mut sim = Sim::new();
    // Ambulance at night rings both PSC 119 and the hospital (outside the trust domain) —
    // by day the hospital is the second target: fail the first to reach it.
    sim.call_in(
        "sip:118@198.51.100.1",
        "P-Asserted-Identity: <tel:+6281234567890>\r\nPrivacy: id\r\n",
        None,
    );
    let psc = sim
        .take_to("127.0.0.1:5084", "INVITE")
        .pop()
        .expect("PSC 119");
    assert_eq!(
        header(&psc, "P-Asserted-Identity"),
        "<tel:+6281234567890>",
        "trusted: identity kept"
    );
    assert_eq!(header(&psc, "Privacy"), "id");
    sim.agency_reply("127.0.0.1:5084", &psc, 486, "x");
    let igd = sim
        .take_to("127.0.0.1:5085", "INVITE")
        .pop()
        .expect("hospital");
    assert_eq!(
        header(&igd, "P-Asserted-Identity"),
        "",
        "no asserted identity outside"
    );
    assert!(header(&igd, "From").contains("anonymous"), "{igd}");
    assert!(
        !igd.contains("6281234567890"),
        "the number does not leave the trust domain"
    );
}

#[test]
fn a_queue_whose_wait_ends_while_a_desk_rings_moves_on_without_freezing() {
    // Ambulance: PSC 119 then the hospital, queue up to 30 s, then the call-takers.
    let mut sim = Sim::new();
    sim.call_in("sip:118@198.51.100.1", "", None);
    let psc = sim
        .take_to("127.0.0.1:5084", "INVITE")
        .pop()
        .expect("PSC 119");
    sim.agency_reply("127.0.0.1:5084", &psc, 486, "a");
    let igd = sim
        .take_to("127.0.0.1:5085", "INVITE")
        .pop()
        .expect("hospital");
    sim.agency_reply("127.0.0.1:5085", &igd, 486, "b");
    assert_eq!(sim.timeline("queue_enter").len(), 1);
    // The retry rings PSC 119, which rings and never answers; the 30 s wait ends meanwhile.
    sim.advance(Duration::from_secs(16));
    let retry = sim
        .take_to("127.0.0.1:5084", "INVITE")
        .pop()
        .expect("retry at the announcement");
    sim.agency_reply("127.0.0.1:5084", &retry, 180, "r");
    sim.advance(Duration::from_secs(24));
    assert_eq!(sim.timeline("queue_timeout").len(), 1);
    assert!(
        !sim.take_to(TAKER_1, "INVITE").is_empty(),
        "the call-takers are rung"
    );
    assert!(
        !sim.take_to("127.0.0.1:5084", "CANCEL").is_empty(),
        "the ringing desk is cancelled"
    );
    // The engine is still alive: time keeps moving and timers keep firing.
    sim.advance(Duration::from_secs(5));
    assert!(sim.engine.poll_timeout().is_some());
}

#[test]
fn a_blind_transfer_that_fails_after_the_transferor_left_rings_the_route_again() {
    let mut sim = Sim::new();
    sim.call_in("sip:110@198.51.100.1", "", None);
    let police = sim.take_to(POLICE_1, "INVITE").pop().expect("police");
    sim.agency_reply(POLICE_1, &police, 200, "p1");
    sim.agency_request(
        POLICE_1,
        &police,
        "p1",
        "REFER",
        2,
        "Refer-To: <sip:psc119@127.0.0.1:5084>\r\n",
    );
    sim.agency_request(POLICE_1, &police, "p1", "BYE", 3, "");
    assert!(
        sim.end_reasons().is_empty(),
        "the transferor leaving does not end the call"
    );
    let target = sim
        .take_to("127.0.0.1:5084", "INVITE")
        .pop()
        .expect("transfer target");
    sim.agency_reply("127.0.0.1:5084", &target, 486, "x");
    assert_eq!(sim.timeline("agency_lost").len(), 1);
    assert!(
        !sim.take_to(POLICE_1, "INVITE").is_empty(),
        "the police are rung again"
    );
    assert!(sim.end_reasons().is_empty());
}

#[test]
fn the_call_takers_queue_retries_without_ever_disconnecting() {
    let mut sim = Sim::new();
    sim.call_in("sip:112@198.51.100.1", "", None);
    sim.digit('5'); // search and rescue: no queue, fallback to the call-takers (queued)
    sim.advance(Duration::from_secs(2)); // the 5-or-55 wait
    let sar = sim.take_to("127.0.0.1:5087", "INVITE").pop().expect("SAR");
    sim.agency_reply("127.0.0.1:5087", &sar, 503, "s");
    // The call-takers have a queue in the default plan; their retries go on every 20 s.
    for round in 0..3 {
        let t1 = sim
            .take_to(TAKER_1, "INVITE")
            .pop()
            .unwrap_or_else(|| panic!("round {round}"));
        let t2 = sim
            .take_to(TAKER_2, "INVITE")
            .pop()
            .unwrap_or_else(|| panic!("round {round}"));
        sim.agency_reply(TAKER_1, &t1, 486, "a");
        sim.agency_reply(TAKER_2, &t2, 486, "b");
        sim.advance(Duration::from_secs(21));
    }
    assert!(
        sim.end_reasons().is_empty(),
        "never disconnected while waiting"
    );
}

#[test]
fn a_last_resort_without_a_queue_is_rung_again_and_again() {
    // The benchmark plan: 112 straight to one agency, which is the last resort, no queue.
    let mut sim = Sim::with_plan(plan_at(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../benches/bench-plan.toml"
    )));
    sim.call_in("sip:112@198.51.100.1", "", None);
    for round in 0..4 {
        let invite = sim
            .take_to("127.0.0.1:5090", "INVITE")
            .pop()
            .unwrap_or_else(|| panic!("rung again in round {round}"));
        sim.agency_reply("127.0.0.1:5090", &invite, 503, "x");
        sim.advance(Duration::from_secs(6));
    }
    assert!(sim.end_reasons().is_empty());
}

#[test]
fn a_second_answer_from_a_forking_proxy_is_acked_and_hung_up() {
    let mut sim = Sim::new();
    sim.call_in("sip:113@198.51.100.1", "", None);
    let invite = sim.take_to("127.0.0.1:5083", "INVITE").pop().expect("fire");
    sim.agency_reply("127.0.0.1:5083", &invite, 200, "desk1");
    assert_eq!(sim.take_to("127.0.0.1:5083", "ACK").len(), 1);
    // The same INVITE answered by another desk (another To tag).
    sim.agency_reply("127.0.0.1:5083", &invite, 200, "desk2");
    let acks = sim.take_to("127.0.0.1:5083", "ACK");
    let byes = sim.take_to("127.0.0.1:5083", "BYE");
    assert_eq!(acks.len(), 1);
    assert!(header(&acks[0], "To").contains("tag=desk2"));
    assert_eq!(byes.len(), 1);
    assert!(
        header(&byes[0], "To").contains("tag=desk2"),
        "only the stray dialog is hung up"
    );
    assert!(sim.end_reasons().is_empty(), "the caller stays with desk 1");
}

#[test]
fn an_agency_re_invite_is_answered_once_acked() {
    let mut sim = Sim::new();
    sim.call_in("sip:113@198.51.100.1", "", None);
    let invite = sim.take_to("127.0.0.1:5083", "INVITE").pop().expect("fire");
    sim.agency_reply("127.0.0.1:5083", &invite, 200, "f");
    sim.agency_request("127.0.0.1:5083", &invite, "f", "INVITE", 2, "");
    assert_eq!(sim.take_to("127.0.0.1:5083", "SIP/2.0 200").len(), 1);
    sim.agency_request("127.0.0.1:5083", &invite, "f", "ACK", 2, "");
    sim.advance(Duration::from_secs(40));
    assert!(
        sim.take_to("127.0.0.1:5083", "SIP/2.0 200").is_empty(),
        "no retransmission after its ACK"
    );
}

// ---- dead sessions: a caller whose RTP stopped is probed, and ended only if gone ----

impl Sim {
    /// A bridged call to the fire brigade (direct route, no menu), answered by the agency.
    fn bridged_fire_call(&mut self) {
        self.call_in("sip:113@198.51.100.1", "", None);
        let inv = self
            .take_to("127.0.0.1:5083", "INVITE")
            .pop()
            .expect("fire");
        self.agency_reply("127.0.0.1:5083", &inv, 200, "f1");
        assert_eq!(self.take_to("127.0.0.1:5083", "ACK").len(), 1);
    }

    fn caller_media(&mut self, event: MediaEvent) {
        let call = self.call.expect("call");
        self.h.media_event(call, LegId::Caller, event);
    }

    /// The media layer reports the caller silent; returns the OPTIONS the gateway sends.
    fn caller_goes_silent(&mut self) -> String {
        self.caller_media(MediaEvent::Timeout {
            silent_for: Duration::from_secs(30),
        });
        self.take_to(CALLER, "OPTIONS")
            .pop()
            .expect("an OPTIONS to the silent caller")
    }

    /// A plain response from `from` to a request the gateway sent.
    fn respond_from(&mut self, from: &str, request: &str, status: u16) {
        let reply = format!(
            "SIP/2.0 {status} X\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
            header(request, "Via"),
            header(request, "From"),
            header(request, "To"),
            header(request, "Call-ID"),
            header(request, "CSeq")
        );
        self.send_from(from, &reply);
    }
}

#[test]
fn a_silent_caller_whose_phone_says_481_is_lost_and_the_agency_gets_its_bye() {
    let mut sim = Sim::new();
    sim.bridged_fire_call();
    let options = sim.caller_goes_silent();
    // In the caller's dialog: our tag in From, the caller's in To, the caller's Contact.
    assert!(
        options.starts_with("OPTIONS sip:ani@192.0.2.10:5070 SIP/2.0"),
        "{options}"
    );
    assert_eq!(tag_of(&options, "From"), sim.caller_tag);
    assert_eq!(tag_of(&options, "To"), "caller1");
    assert_eq!(header(&options, "Call-ID"), "call-a");
    sim.respond_from(CALLER, &options, 481);
    assert_eq!(sim.end_reasons(), vec![EndReason::CallerLost]);
    assert!(EndReason::CallerLost.calls_for_call_back());
    assert_eq!(
        sim.take_to("127.0.0.1:5083", "BYE").len(),
        1,
        "agency leg ended"
    );
    assert!(
        sim.take_to(CALLER, "BYE").is_empty(),
        "no BYE into a dialog that is gone"
    );
    assert_eq!(sim.timeline("caller_lost").len(), 1);
}

#[test]
fn a_silent_caller_that_never_answers_is_lost_when_the_options_times_out() {
    let mut sim = Sim::new();
    sim.bridged_fire_call();
    sim.caller_goes_silent();
    // Timer F is 64·T1 = 32 s: until then the call stays up.
    sim.advance(Duration::from_secs(31));
    assert!(sim.end_reasons().is_empty());
    sim.advance(Duration::from_secs(2));
    assert_eq!(sim.end_reasons(), vec![EndReason::CallerLost]);
    assert!(!sim.take_to("127.0.0.1:5083", "BYE").is_empty());
}

#[test]
fn a_silent_caller_that_answers_200_stays_and_is_asked_again_while_silent() {
    let mut sim = Sim::new();
    sim.bridged_fire_call();
    let options = sim.caller_goes_silent();
    sim.respond_from(CALLER, &options, 200);
    sim.advance(Duration::from_secs(59));
    assert!(sim.take_to(CALLER, "OPTIONS").is_empty());
    sim.advance(Duration::from_secs(2));
    let again = sim.take_to(CALLER, "OPTIONS").pop().expect("asked again");
    assert_ne!(header(&again, "CSeq"), header(&options, "CSeq"));
    sim.respond_from(CALLER, &again, 200);
    sim.advance(Duration::from_secs(10));
    assert!(sim.end_reasons().is_empty());
    assert!(sim.take_to("127.0.0.1:5083", "BYE").is_empty());
}

#[test]
fn a_caller_whose_audio_comes_back_is_never_ended_even_if_the_probe_times_out() {
    let mut sim = Sim::new();
    sim.bridged_fire_call();
    let options = sim.caller_goes_silent();
    sim.caller_media(MediaEvent::Resumed {
        silent_for: Duration::from_secs(31),
    });
    sim.advance(Duration::from_secs(300));
    assert!(sim.end_reasons().is_empty());
    assert!(sim.take_to("127.0.0.1:5083", "BYE").is_empty());
    // Even a late 481 does not end a call with live audio.
    sim.respond_from(CALLER, &options, 481);
    assert!(sim.end_reasons().is_empty());
    // Only the one probe's retransmissions: no new probe while audio flows.
    let sent = sim.take_to(CALLER, "OPTIONS");
    assert!(
        sent.iter()
            .all(|o| header(o, "CSeq") == header(&options, "CSeq")),
        "{sent:?}"
    );
}

#[test]
fn agency_legs_are_numbered_per_call() {
    let mut sim = Sim::new();
    sim.bridged_fire_call();
    sim.agency_request(
        "127.0.0.1:5083",
        &sim.logs
            .iter()
            .find_map(|r| match r {
                LogRecord::Sip {
                    leg: LegId::Agency(_),
                    bytes,
                    ..
                } => Some(String::from_utf8_lossy(bytes).into_owned()),
                _ => None,
            })
            .expect("agency INVITE"),
        "f1",
        "BYE",
        2,
        "",
    );
    let bye = sim.take_to(CALLER, "BYE").pop().expect("BYE to the caller");
    sim.respond_from(CALLER, &bye, 200);
    // Let every transaction of the first call finish, then a second call comes in.
    sim.advance(Duration::from_secs(60));
    sim.sent.clear();
    sim.logs.clear();
    sim.bridged_fire_call();
    let legs: Vec<LegId> = sim
        .logs
        .iter()
        .filter_map(|r| match r {
            LogRecord::Sip {
                leg: l @ LegId::Agency(_),
                ..
            } => Some(*l),
            _ => None,
        })
        .collect();
    assert!(!legs.is_empty());
    assert!(legs.iter().all(|l| *l == LegId::Agency(1)), "{legs:?}");
}

#[test]
fn a_probe_that_cannot_be_sent_keeps_the_call_and_is_tried_again() {
    let mut sim = Sim::new();
    sim.bridged_fire_call();
    // The caller spoke, then went silent; its TCP connection has dropped, so the probe's
    // send fails at once.
    sim.caller_media(MediaEvent::FirstPacket);
    sim.caller_goes_silent();
    sim.input(Input::TransportError {
        flow: flow_from(CALLER),
        reason: "tcp send to 192.0.2.10:5070: connection closed".into(),
    });
    assert!(
        sim.end_reasons().is_empty(),
        "a send failure is not a lost caller"
    );
    assert!(sim.take_to("127.0.0.1:5083", "BYE").is_empty());
    assert!(
        sim.timeline("caller_probe")
            .iter()
            .any(|d| d.contains("transport error") && d.contains("kept")),
        "{:?}",
        sim.timeline("caller_probe")
    );
    // Still silent at the next interval: asked again; now the caller's UA says 481.
    sim.advance(Duration::from_secs(59));
    assert!(sim.take_to(CALLER, "OPTIONS").is_empty());
    sim.advance(Duration::from_secs(2));
    let again = sim.take_to(CALLER, "OPTIONS").pop().expect("probed again");
    sim.respond_from(CALLER, &again, 481);
    assert_eq!(sim.end_reasons(), vec![EndReason::CallerLost]);
    assert_eq!(sim.take_to("127.0.0.1:5083", "BYE").len(), 1);
}

#[test]
fn an_agency_re_invite_acked_after_our_bye_stops_our_200() {
    let mut sim = Sim::new();
    sim.call_in("sip:113@198.51.100.1", "", None);
    let invite = sim.take_to("127.0.0.1:5083", "INVITE").pop().expect("fire");
    sim.agency_reply("127.0.0.1:5083", &invite, 200, "f");
    sim.agency_request("127.0.0.1:5083", &invite, "f", "INVITE", 2, "");
    assert_eq!(sim.take_to("127.0.0.1:5083", "SIP/2.0 200").len(), 1);
    // The caller hangs up before the agency's ACK: the agency gets our BYE, then its ACK comes.
    let bye = sim.caller_request("BYE", 2, "z9hG4bKbye");
    sim.send_from(CALLER, &bye);
    assert_eq!(sim.take_to("127.0.0.1:5083", "BYE").len(), 1);
    sim.agency_request("127.0.0.1:5083", &invite, "f", "ACK", 2, "");
    sim.advance(Duration::from_secs(40));
    assert!(
        sim.take_to("127.0.0.1:5083", "SIP/2.0 200").is_empty(),
        "no retransmission of our 200 after its ACK, even with our BYE out"
    );
}

#[test]
fn a_transfer_asked_before_the_answer_keeps_the_caller_when_the_transferor_leaves() {
    let mut sim = Sim::new();
    sim.call_in("sip:110@198.51.100.1", "", None);
    let police = sim.take_to(POLICE_1, "INVITE").pop().expect("police");
    sim.agency_reply(POLICE_1, &police, 180, "p1");
    // In its early dialog the desk already asks to pass the caller on, then answers.
    sim.agency_request(
        POLICE_1,
        &police,
        "p1",
        "REFER",
        2,
        "Refer-To: <sip:psc119@127.0.0.1:5084>\r\n",
    );
    assert_eq!(sim.take_to(POLICE_1, "SIP/2.0 202").len(), 1);
    assert_eq!(sim.take_to("127.0.0.1:5084", "INVITE").len(), 1);
    sim.agency_reply(POLICE_1, &police, 200, "p1");
    sim.agency_request(POLICE_1, &police, "p1", "BYE", 3, "");
    assert!(
        sim.take_to(CALLER, "BYE").is_empty(),
        "the caller waits for the transfer target"
    );
    assert!(sim.take_to("127.0.0.1:5084", "CANCEL").is_empty());
    assert!(sim.end_reasons().is_empty());
}

#[test]
fn our_repeated_200_to_an_agency_re_invite_is_logged_on_the_agency_leg() {
    let mut sim = Sim::new();
    sim.call_in("sip:113@198.51.100.1", "", None);
    let invite = sim.take_to("127.0.0.1:5083", "INVITE").pop().expect("fire");
    sim.agency_reply("127.0.0.1:5083", &invite, 200, "f");
    sim.agency_request("127.0.0.1:5083", &invite, "f", "INVITE", 2, "");
    // No ACK: the 200 is sent again (Timer G); the supervisor's ladder shows it on leg B1.
    sim.advance(Duration::from_secs(2));
    let repeated_200s: Vec<LegId> = sim
        .h
        .logs
        .iter()
        .filter_map(|r| match r {
            LogRecord::Sip {
                direction: Direction::Out,
                leg,
                bytes,
                ..
            } if bytes.starts_with(b"SIP/2.0 200")
                && bytes.windows(9).any(|w| w == b"2 INVITE\r") =>
            {
                Some(*leg)
            }
            _ => None,
        })
        .collect();
    assert!(repeated_200s.len() >= 2, "{repeated_200s:?}");
    assert!(
        repeated_200s.iter().all(|l| *l == LegId::Agency(1)),
        "{repeated_200s:?}"
    );
}

// ---- the call's signals (issue 12) ----

fn signals_of(sim: &Sim) -> Vec<siaga_engine::io::CallSignals> {
    sim.logs
        .iter()
        .filter_map(|r| match r {
            LogRecord::CallSignals { signals, .. } => Some(*signals),
            _ => None,
        })
        .collect()
}

#[test]
fn a_call_with_a_digit_and_an_agency_answer_logs_its_signals_after_its_end() {
    let mut sim = Sim::new();
    sim.call_in(
        "sip:112@198.51.100.1",
        "P-Asserted-Identity: <tel:+6281234567890>\r\n",
        None,
    );
    sim.advance(Duration::from_secs(3));
    sim.digit('1');
    let invite = sim.take_to(POLICE_1, "INVITE").pop().expect("police");
    sim.advance(Duration::from_secs(2));
    sim.agency_reply(POLICE_1, &invite, 200, "pol1");
    sim.advance(Duration::from_secs(10));
    let bye = sim.caller_request("BYE", 2, "z9hG4bKbye");
    sim.send_from(CALLER, &bye);
    assert_eq!(sim.end_reasons(), vec![EndReason::CallerHungUp]);
    // The end is logged at once; the signals wait for the caller leg's voice totals.
    assert!(signals_of(&sim).is_empty());
    let call = sim.call.expect("call");
    let voice = siaga_media::VoiceTotals {
        frames: 750,
        speech_frames: 300,
        longest_speech_ms: 2400,
        voiced_frames: 280,
        longest_voiced_ms: 2400,
    };
    sim.h
        .media_event(call, LegId::Caller, MediaEvent::VoiceActivity(voice));
    let signals = signals_of(&sim);
    assert_eq!(signals.len(), 1, "{signals:?}");
    let s = signals[0];
    assert_eq!(s.digits, 1);
    assert_eq!(s.answered_for, Some(Duration::from_secs(15)));
    assert_eq!(s.agency_talk, Some(Duration::from_secs(10)));
    assert!(s.usable_identity);
    assert_eq!(s.voice, Some(voice));
    let ended = sim
        .logs
        .iter()
        .position(|r| matches!(r, LogRecord::CallEnded { .. }));
    let signalled = sim
        .logs
        .iter()
        .position(|r| matches!(r, LogRecord::CallSignals { .. }));
    assert!(ended < signalled);
    // Totals reported twice are not logged twice.
    sim.h
        .media_event(call, LegId::Caller, MediaEvent::VoiceActivity(voice));
    assert_eq!(signals_of(&sim).len(), 1);
}

#[test]
fn without_voice_totals_the_signals_come_two_seconds_after_the_end() {
    let mut sim = Sim::new();
    sim.call_in("sip:112@198.51.100.1", "", None);
    sim.advance(Duration::from_secs(1));
    let bye = sim.caller_request("BYE", 2, "z9hG4bKbye");
    sim.send_from(CALLER, &bye);
    assert_eq!(sim.end_reasons(), vec![EndReason::AbandonedInIvr]);
    sim.advance(Duration::from_millis(1900));
    assert!(signals_of(&sim).is_empty());
    sim.advance(Duration::from_millis(200));
    let signals = signals_of(&sim);
    assert_eq!(signals.len(), 1);
    let s = signals[0];
    assert_eq!((s.digits, s.agency_talk, s.voice), (0, None, None));
    assert_eq!(s.answered_for, Some(Duration::from_secs(1)));
    // The caller's From is a number (the test caller's "+6281234567890").
    assert!(s.usable_identity);
}

#[test]
fn at_stop_waiting_signals_are_logged_without_voice() {
    let mut sim = Sim::new();
    sim.call_in("sip:112@198.51.100.1", "", None);
    let bye = sim.caller_request("BYE", 2, "z9hG4bKbye");
    sim.send_from(CALLER, &bye);
    assert!(signals_of(&sim).is_empty());
    sim.h.engine.flush_call_signals();
    sim.h.drain();
    let signals = signals_of(&sim);
    assert_eq!(signals.len(), 1);
    assert_eq!(signals[0].voice, None);
    // Nothing is left waiting: no second record when the wait would have ended.
    sim.advance(Duration::from_secs(3));
    assert_eq!(signals_of(&sim).len(), 1);
}
