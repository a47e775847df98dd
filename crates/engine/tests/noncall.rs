//! Traffic that belongs to no emergency call, in virtual time: floods of garbage, OPTIONS and
//! INVITEs to ordinary numbers, from one source and from thousands, cost a bounded number of
//! log records and a bounded table, get stateless answers within a per-source budget, and
//! never stand in the way of an emergency call from the same host.
#![allow(clippy::disallowed_methods)] // Instant::now() once, as the origin of virtual time

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use siaga_engine::EngineConfig;
use siaga_engine::harness::{Harness, default_plan};
use siaga_engine::io::{Flow, LogRecord, Transport};
use siaga_engine::noncall::{NonCallKind, NonCallLimits, NonCallTally};

/// What came out of the engine, counted (a flood must not be kept message by message).
#[derive(Default)]
struct Seen {
    transmitted: usize,
    /// `Sip` records of messages outside every call (samples and their replies).
    noncall_rows: usize,
    /// The largest of those, in bytes.
    largest_row: usize,
    tallies: Vec<NonCallTally>,
    calls_started: usize,
    /// First lines of the latest input's replies.
    last_replies: Vec<String>,
    last_reply_bytes: Vec<Vec<u8>>,
}

/// The gateway in the harness; its record is counted into `seen` and emptied after each step.
struct Net {
    h: Harness,
    seen: Seen,
}

impl Deref for Net {
    type Target = Harness;
    fn deref(&self) -> &Harness {
        &self.h
    }
}

impl DerefMut for Net {
    fn deref_mut(&mut self) -> &mut Harness {
        &mut self.h
    }
}

fn flow(source: u32) -> Flow {
    let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + source));
    Flow {
        transport: Transport::Udp,
        remote: SocketAddr::new(ip, 5060),
        local: "198.51.100.1:5060".parse().expect("addr"),
        conn: None,
    }
}

impl Net {
    fn new(limits: NonCallLimits) -> Self {
        Self::with_config(EngineConfig {
            noncall: limits,
            ..EngineConfig::default()
        })
    }

    fn with_config(cfg: EngineConfig) -> Self {
        Self {
            h: Harness::new(cfg, default_plan(), Instant::now()),
            seen: Seen::default(),
        }
    }

    fn send(&mut self, source: u32, text: &str) {
        self.seen.last_replies.clear();
        self.seen.last_reply_bytes.clear();
        self.h.sip(flow(source), text.as_bytes());
        self.count();
    }

    fn drain(&mut self) {
        self.h.drain();
        self.count();
    }

    fn advance(&mut self, d: Duration) {
        self.h.advance(d);
        self.count();
    }

    /// Moves the harness's record into the counts.
    fn count(&mut self) {
        for sent in self.h.sent.drain(..) {
            self.seen.transmitted += 1;
            let first = String::from_utf8_lossy(&sent.bytes)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            self.seen.last_replies.push(first);
            self.seen.last_reply_bytes.push(sent.bytes);
        }
        for record in self.h.logs.drain(..) {
            match record {
                LogRecord::Sip {
                    call: None, bytes, ..
                } => {
                    self.seen.noncall_rows += 1;
                    self.seen.largest_row = self.seen.largest_row.max(bytes.len());
                }
                LogRecord::NonCallCounts(t) => self.seen.tallies.push(*t),
                LogRecord::CallStarted(_) => self.seen.calls_started += 1,
                _ => {}
            }
        }
        self.h.media.clear();
    }

    fn total_counted(&self) -> u64 {
        self.seen.tallies.iter().map(NonCallTally::total).sum()
    }

    fn counted(&self, kind: NonCallKind) -> u64 {
        self.seen
            .tallies
            .iter()
            .flat_map(|t| t.seen.iter())
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| n)
            .sum()
    }
}

fn request(method: &str, uri: &str, call_id: &str, extra: &str) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:scanner@10.0.0.1>;tag=f{call_id}\r\nTo: <{uri}>{extra}\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nContact: <sip:scanner@10.0.0.1>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The i-th message of a flood: garbage, an OPTIONS, or an INVITE to an ordinary number.
fn flood_message(i: u32) -> String {
    match i % 3 {
        0 => format!("\u{1}\u{2}garbage {i}\r\n\r\n"),
        1 => request("OPTIONS", "sip:198.51.100.1", &format!("o{i}"), ""),
        _ => request("INVITE", "sip:100@198.51.100.1", &format!("i{i}"), ""),
    }
}

fn emergency_call_answered(net: &mut Net, source: u32, call_id: &str) {
    net.send(
        source,
        &request("INVITE", "sip:112@198.51.100.1", call_id, ""),
    );
    assert_eq!(
        net.seen.last_replies,
        [
            "SIP/2.0 100 Trying",
            "SIP/2.0 180 Ringing",
            "SIP/2.0 200 OK"
        ],
        "the emergency call from {source} is answered at once"
    );
}

#[test]
fn a_flood_from_one_source_is_counted_sampled_rationed_and_112_still_answered() {
    let limits = NonCallLimits::default();
    let mut net = Net::new(limits);
    let messages = 100_000u32;
    for i in 0..messages {
        net.send(1, &flood_message(i));
        // 10,000 messages a second for ten virtual seconds.
        net.now += Duration::from_micros(100);
    }
    // Nothing is kept per message: no transaction, no call, one table entry.
    assert_eq!(net.engine.state_sizes(), (0, 0, 0, 1));
    assert_eq!(
        net.seen.calls_started, 0,
        "an ordinary number is not a call"
    );
    // The first of each kind is stored with its reply (garbage this broken gets none),
    // nothing more.
    assert_eq!(net.seen.noncall_rows, 3 + 2);
    let replies = net.seen.transmitted as u64;
    // Replies: the burst, then the rate, over ten seconds; OPTIONS and the INVITEs have a
    // budget each.
    let budget = 2 * (limits.reply_burst + limits.replies_per_second * 10);
    assert!(
        net.seen.transmitted as u32 <= budget + 1,
        "{} replies",
        net.seen.transmitted
    );
    assert!(net.seen.transmitted as u32 >= budget - 2);

    // The flooding host's emergency call is never subject to the budget.
    emergency_call_answered(&mut net, 1, "sos-from-flooder");
    assert_eq!(net.seen.calls_started, 1);

    // The window closes: one record for the source holds the real numbers.
    net.advance(limits.window);
    assert_eq!(net.seen.tallies.len(), 1, "{:?}", net.seen.tallies);
    let tally = &net.seen.tallies[0];
    assert_eq!(tally.source, Some(flow(1).remote.ip()));
    assert_eq!(net.total_counted(), u64::from(messages));
    assert_eq!(net.counted(NonCallKind::Garbage), 33_334);
    assert_eq!(net.counted(NonCallKind::Options), 33_333);
    assert_eq!(net.counted(NonCallKind::NonEmergencyInvite), 33_333);
    assert_eq!(
        tally.unanswered,
        33_333 * 2 - replies,
        "every OPTIONS and INVITE left without a reply is counted"
    );
    assert_eq!(tally.sampled, 3);
    assert_eq!(net.engine.state_sizes().3, 0, "the table is empty again");
}

#[test]
fn a_flood_from_5000_sources_stays_within_the_table_and_the_record_bound() {
    let limits = NonCallLimits::default();
    let mut net = Net::new(limits);
    let messages = 100_000u32;
    for i in 0..messages {
        net.send(i % 5000, &flood_message(i / 5000 + i));
        net.now += Duration::from_micros(100);
        assert!(net.engine.state_sizes().3 <= limits.max_sources);
    }
    let (server, client, calls, sources) = net.engine.state_sizes();
    assert_eq!((server, client, calls), (0, 0, 0));
    assert_eq!(sources, limits.max_sources);
    // Samples: bounded per window over all sources (each with its reply).
    assert!(net.seen.noncall_rows <= 2 * limits.samples_per_window as usize);
    assert!(net.seen.noncall_rows >= limits.samples_per_window as usize);
    // A source in the table and one in the "other" row still get their emergency calls.
    emergency_call_answered(&mut net, 7, "sos-7");
    emergency_call_answered(&mut net, 4999, "sos-4999");
    net.advance(limits.window);
    assert_eq!(net.seen.tallies.len(), limits.max_sources + 1);
    assert_eq!(
        net.seen
            .tallies
            .iter()
            .filter(|t| t.source.is_none())
            .count(),
        1
    );
    assert_eq!(net.total_counted(), u64::from(messages));
    // Log records for the whole minute: counts plus samples, nowhere near one per message.
    let records = net.seen.tallies.len() + net.seen.noncall_rows;
    assert!(
        records <= limits.max_sources + 1 + 2 * limits.samples_per_window as usize,
        "{records}"
    );
}

#[test]
fn every_window_has_its_own_samples_and_counts() {
    let limits = NonCallLimits::default();
    let mut net = Net::new(limits);
    for minute in 0..5u32 {
        for i in 0..1000 {
            net.send(
                1,
                &request("OPTIONS", "sip:198.51.100.1", &format!("k{minute}-{i}"), ""),
            );
        }
        net.advance(limits.window);
    }
    // Per minute: one OPTIONS and its 200 stored, one count record.
    assert_eq!(net.seen.noncall_rows, 5 * 2);
    assert_eq!(net.seen.tallies.len(), 5);
    assert!(net.seen.tallies.iter().all(|t| t.total() == 1000));
    // Idle: no timer left behind.
    assert_eq!(net.engine.poll_timeout(), None);
}

#[test]
fn an_ordinary_number_gets_a_stateless_404_the_same_for_each_retransmission() {
    let mut net = Net::new(NonCallLimits::default());
    let invite = request("INVITE", "sip:0811223344@198.51.100.1", "plain1", "");
    net.send(3, &invite);
    assert_eq!(net.seen.last_replies, ["SIP/2.0 404 Not Found"]);
    let first = net.seen.last_reply_bytes.clone();
    net.send(3, &invite);
    assert_eq!(net.seen.last_reply_bytes, first, "same reply, same To-tag");
    assert_eq!(net.engine.state_sizes(), (0, 0, 0, 1));
    assert_eq!(net.seen.calls_started, 0);
    // The ACK for it (same branch, the 404's To-tag) is absorbed without a reply.
    let reply = String::from_utf8_lossy(&first[0]).into_owned();
    let tag = reply
        .lines()
        .find_map(|l| l.strip_prefix("To: "))
        .and_then(|to| to.split(";tag=").nth(1))
        .expect("a To-tag")
        .to_owned();
    let ack = request(
        "ACK",
        "sip:0811223344@198.51.100.1",
        "plain1",
        &format!(";tag={tag}"),
    );
    net.send(3, &ack);
    assert!(net.seen.last_replies.is_empty());
    // OPTIONS is answered statelessly too, and a retransmission gets the same 200.
    let options = request("OPTIONS", "sip:198.51.100.1", "opt1", "");
    net.send(3, &options);
    let first = net.seen.last_reply_bytes.clone();
    net.send(3, &options);
    assert_eq!(net.seen.last_reply_bytes, first);
    assert_eq!(net.engine.state_sizes(), (0, 0, 0, 1));
    net.advance(Duration::from_secs(60));
    assert_eq!(net.counted(NonCallKind::NonEmergencyInvite), 2);
    assert_eq!(net.counted(NonCallKind::StrayAck), 1);
    assert_eq!(net.counted(NonCallKind::Options), 2);
}

#[test]
fn the_counts_of_an_unfinished_window_are_flushed_at_shutdown() {
    let mut net = Net::new(NonCallLimits::default());
    net.send(1, &flood_message(0));
    net.now += Duration::from_secs(10);
    let now = net.now;
    net.engine.flush_noncall_counts(now);
    net.drain();
    assert_eq!(net.seen.tallies.len(), 1);
    assert_eq!(net.seen.tallies[0].window, Duration::from_secs(10));
    assert_eq!(net.engine.poll_timeout(), None);
}

#[test]
fn a_sample_and_its_reply_are_cut_to_the_configured_size() {
    let limits = NonCallLimits {
        sample_max_bytes: 256,
        ..NonCallLimits::default()
    };
    let mut net = Net::new(limits);
    let padding = format!("\r\nX-Padding: {}", "x".repeat(8000));
    net.send(1, &request("OPTIONS", "sip:198.51.100.1", "big1", &padding));
    assert_eq!(net.seen.last_replies, ["SIP/2.0 200 OK"]);
    assert_eq!(net.seen.noncall_rows, 2);
    assert_eq!(net.seen.largest_row, 256);
}

fn options_answered(net: &mut Net, source: u32, call_id: &str) -> bool {
    net.send(source, &request("OPTIONS", "sip:198.51.100.1", call_id, ""));
    net.seen.last_replies == ["SIP/2.0 200 OK"]
}

#[test]
fn a_carrier_sbc_flooding_ordinary_invites_still_gets_its_keep_alives_answered() {
    let limits = NonCallLimits::default();
    let mut net = Net::new(limits);
    // The SBC (source 1) carries an emergency call…
    emergency_call_answered(&mut net, 1, "sos-via-sbc");
    // …and, like every carrier trunk, INVITEs to ordinary numbers: 100 a second for a
    // minute, far beyond the reply budget, with an OPTIONS keep-alive every 5 s.
    for i in 0..6000u32 {
        net.send(
            1,
            &request("INVITE", "sip:0811@198.51.100.1", &format!("n{i}"), ""),
        );
        if i % 500 == 0 {
            assert!(
                options_answered(&mut net, 1, &format!("ka{i}")),
                "keep-alive {i} answered"
            );
        }
        net.now += Duration::from_millis(10);
    }
    // The next window: 5,000 other sources fill the table the moment it opens; the SBC,
    // which placed an emergency call, keeps a row (and budgets) of its own.
    net.advance(limits.window);
    for i in 0..20_000u32 {
        net.send(10 + i % 5000, &flood_message(i));
    }
    assert!(net.engine.state_sizes().3 >= limits.max_sources);
    assert!(
        !options_answered(&mut net, 9000, "late-stranger"),
        "a stranger shares the flood's row"
    );
    assert!(options_answered(&mut net, 1, "ka-after-rollover"));
    net.advance(limits.window);
    assert!(
        net.seen
            .tallies
            .iter()
            .any(|t| t.source == Some(flow(1).remote.ip()) && t.total() == 1),
        "the SBC's keep-alive is counted in its own row"
    );
}

#[test]
fn trusted_sources_and_agencies_are_answered_whatever_they_send() {
    let cfg = EngineConfig {
        trusted_sources: siaga_engine::source_limits::Trusted(vec![
            "10.0.0.2/32".parse().expect("net"),
        ]),
        ..EngineConfig::default()
    };
    let mut net = Net::with_config(cfg);
    // Source 3 is an agency of the plan (its address, from the directory).
    let mut directory = siaga_engine::Directory::default();
    directory.hops.insert(
        "agency:5060".into(),
        siaga_engine::Hop {
            remote: flow(3).remote,
            local_udp: None,
            local_tcp: None,
            local_tls: None,
        },
    );
    net.engine.set_directory(directory);
    for source in [2, 3] {
        let mut answered = 0;
        for i in 0..2000u32 {
            let uri = "sip:0811@198.51.100.1";
            net.send(
                source,
                &request("INVITE", uri, &format!("t{source}-{i}"), ""),
            );
            answered += net.seen.last_replies.len();
            answered += usize::from(options_answered(&mut net, source, &format!("o{i}")));
        }
        assert_eq!(answered, 4000, "source {source}: every message answered");
    }
    // An untrusted source is rationed as before.
    let mut answered = 0;
    for i in 0..2000u32 {
        answered += usize::from(options_answered(&mut net, 4, &format!("u{i}")));
    }
    assert_eq!(answered, NonCallLimits::default().reply_burst as usize);
}

#[test]
fn a_malformed_invite_is_always_told_why_even_over_the_budget() {
    let mut net = Net::new(NonCallLimits::default());
    // The source has used up its reply budget on INVITEs to ordinary numbers…
    for i in 0..1000u32 {
        let uri = "sip:0811@198.51.100.1";
        net.send(1, &request("INVITE", uri, &format!("b{i}"), ""));
    }
    assert!(net.seen.last_replies.is_empty(), "over the budget");
    // …then sends a broken INVITE to 112 (a body shorter than its Content-Length).
    let broken = request("INVITE", "sip:112@198.51.100.1", "broken1", "")
        .replace("Content-Length: 0", "Content-Length: 40");
    net.send(1, &broken);
    assert_eq!(net.seen.last_replies, ["SIP/2.0 400 Bad Request"]);
    // Other garbage from it stays rationed.
    net.send(1, "\u{1}garbage\r\n\r\n");
    assert!(net.seen.last_replies.is_empty());
    let options = request("OPTIONS", "sip:198.51.100.1", "broken2", "")
        .replace("Content-Length: 0", "Content-Length: 40");
    for _ in 0..200 {
        net.send(1, &options);
    }
    assert!(
        net.seen.last_replies.is_empty(),
        "a broken OPTIONS is rationed"
    );
    net.advance(Duration::from_secs(60));
    assert_eq!(net.counted(NonCallKind::Garbage), 202);
}
