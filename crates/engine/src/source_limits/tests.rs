#![allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

const BUDGET: Budget = Budget {
    rate_per_s: 100.0,
    burst: 10.0,
};
/// Call traffic gets ten times the rest, as by default.
const BUDGETS: Budgets = Budgets {
    invite: Budget {
        rate_per_s: 100.0,
        burst: 300.0,
    },
    call: Budget {
        rate_per_s: 1000.0,
        burst: 100.0,
    },
    bulk: BUDGET,
};

#[test]
fn a_flooding_source_gets_its_budget_and_no_more_while_others_get_theirs() {
    let t0 = Instant::now();
    let mut l = MessageLimiter::new(BUDGETS, Trusted::default(), 100, 7, t0);
    // 10,000 messages over one virtual second from one source, 1 every 100 µs.
    let mut passed = 0;
    for i in 0..10_000u64 {
        let now = t0 + Duration::from_micros(100 * i);
        if l.allow(now, ip("192.0.2.1"), Lane::Bulk, || false) {
            passed += 1;
        }
        // Another source at 50/s, within its budget, is never refused.
        if i % 200 == 0 {
            assert!(
                l.allow(now, ip("192.0.2.2"), Lane::Bulk, || false),
                "at {i}"
            );
            // The flooding source's own call traffic has its own budget.
            assert!(
                l.allow(now, ip("192.0.2.1"), Lane::Call, || false),
                "at {i}"
            );
            assert!(
                l.allow(now, ip("192.0.2.1"), Lane::Invite, || false),
                "at {i}"
            );
        }
    }
    // The burst plus one second at the rate (one token of rounding either way).
    assert!((109..=111).contains(&passed), "{passed}");
    let report = l.take_report();
    assert_eq!(report.dropped, 10_000 - passed);
    assert_eq!(report.sources, 1);
    assert_eq!(
        report.top,
        vec![(SourceKey::of(ip("192.0.2.1")), 10_000 - passed)]
    );
    assert!(report.to_string().contains("192.0.2.1"), "{report}");
    assert!(l.take_report().is_empty(), "counts reset");
}

#[test]
fn call_traffic_has_its_own_larger_budget() {
    let t0 = Instant::now();
    let mut l = MessageLimiter::new(BUDGETS, Trusted::default(), 100, 7, t0);
    // 5,000 responses in one virtual second: the call budget's burst plus its rate.
    let passed = (0..5000u64)
        .filter(|i| {
            let now = t0 + Duration::from_micros(200 * i);
            l.allow(now, ip("192.0.2.1"), Lane::Call, || false)
        })
        .count();
    assert!((1099..=1101).contains(&passed), "{passed}");
    // The bulk budget of the same source is untouched.
    assert_eq!(
        (0..10)
            .filter(|_| l.allow(
                t0 + Duration::from_secs(1),
                ip("192.0.2.1"),
                Lane::Bulk,
                || false
            ))
            .count(),
        10
    );
}

#[test]
fn trusted_networks_are_never_limited() {
    let t0 = Instant::now();
    let trusted = Trusted(vec!["10.0.0.0/8".parse().expect("net")]);
    let mut l = MessageLimiter::new(BUDGETS, trusted, 100, 7, t0);
    assert!((0..1000).all(|_| l.allow(t0, ip("10.1.2.3"), Lane::Bulk, || false)));
    assert!(!(0..1000).all(|_| l.allow(t0, ip("11.1.2.3"), Lane::Bulk, || false)));
}

#[test]
fn the_table_stays_bounded_and_sources_beyond_it_share_a_budget_per_network() {
    let t0 = Instant::now();
    let mut l = MessageLimiter::new(BUDGETS, Trusted::default(), 64, 7, t0);
    // 10,000 distinct sources at once (10.0.0.0 to 10.0.39.15: 40 /24 networks): the
    // table never exceeds its size.
    for i in 0..10_000u32 {
        let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0A00_0000 + i));
        l.allow(t0, a, Lane::Bulk, || false);
        assert!(l.sources() <= 64);
    }
    // The 9,936 sources beyond the table shared one burst of 10 per network.
    let report = l.take_report();
    assert_eq!(report.overflow_buckets, 40);
    assert_eq!(report.overflow, 10_000 - 64 - 40 * 10);
    // Once the sources are at rest again, a sweep frees the table for new ones.
    let later = t0 + Duration::from_secs(2);
    assert!(l.allow(later, ip("192.0.2.9"), Lane::Bulk, || false));
    assert!(l.sources() <= 2, "{}", l.sources());
}

/// 65,536 /64s of one IPv6 /48 fill the table and flood on; a quiet IPv4 peer that finds
/// the table full still has its responses and ACKs taken, from its own network's budget.
#[test]
fn a_flood_from_many_addresses_of_one_network_leaves_other_networks_their_budget() {
    let t0 = Instant::now();
    let mut l = MessageLimiter::new(BUDGETS, Trusted::default(), 256, 7, t0);
    let attacker = |i: u32| {
        IpAddr::V6(Ipv6Addr::from(
            (0x2001_0db8_0001u128 << 80) | (u128::from(i) << 64) | 1,
        ))
    };
    let mut peer_passed = 0;
    for i in 0..65_536u32 {
        let now = t0 + Duration::from_micros(u64::from(i) * 15);
        l.allow(now, attacker(i), Lane::Call, || false);
        if i % 1000 == 999 && l.allow(now, ip("198.51.100.7"), Lane::Call, || false) {
            peer_passed += 1;
        }
    }
    assert_eq!(peer_passed, 65, "the quiet peer lost messages to the flood");
    let report = l.take_report();
    assert!(report.overflow > 10_000, "{report}");
    assert!(l.sources() <= 256);
}

#[test]
fn agencies_of_the_plan_are_exempt_until_the_plan_changes() {
    let t0 = Instant::now();
    let mut l = MessageLimiter::new(BUDGETS, Trusted::default(), 100, 7, t0);
    l.set_agencies([ip("203.0.113.5")]);
    assert!(l.is_trusted(ip("::ffff:203.0.113.5")));
    assert!((0..1000).all(|_| l.allow(t0, ip("203.0.113.5"), Lane::Call, || false)));
    // Another address of the same network is not an agency.
    assert!(!(0..1000).all(|_| l.allow(t0, ip("203.0.113.6"), Lane::Bulk, || false)));
    l.set_agencies([]);
    assert!(!(0..1000).all(|_| l.allow(t0, ip("203.0.113.5"), Lane::Bulk, || false)));
}

fn default_plan() -> Dialplan {
    let text = include_str!("../../../../dialplans/default.toml");
    siaga_dialplan::validate(
        &[siaga_dialplan::Source::new("default.toml", text.to_owned())],
        &|_| true,
    )
    .expect("the default plan is valid")
}

fn invite(uri: &str) -> Vec<u8> {
    format!("INVITE {uri} SIP/2.0\r\nTo: <{uri}>\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

/// One source sends 10,000 INVITEs to a number outside the plan in a virtual second, with
/// an emergency INVITE every 100: the others are cut to the INVITE budget, every
/// emergency and test INVITE passes.
#[test]
fn invites_have_a_budget_and_over_it_only_emergency_and_test_calls_pass() {
    let plan = default_plan();
    let t0 = Instant::now();
    let mut l = MessageLimiter::new(BUDGETS, Trusted::default(), 100, 7, t0);
    let source = ip("192.0.2.1");
    let spam = invite("sip:0811111111@gw");
    let emergency = [
        invite("sip:112@gw;user=phone"),
        invite("tel:112"),
        invite("urn:service:sos.fire"),
        invite("urn:service:test.sos"),
        invite("sip:+62112@gw"),
    ];
    let (mut passed, mut urgent) = (0, 0);
    for i in 0..10_000u64 {
        let now = t0 + Duration::from_micros(100 * i);
        let msg = if i % 100 == 0 {
            &emergency[(i / 100) as usize % emergency.len()]
        } else {
            &spam
        };
        assert_eq!(Lane::of(msg), Lane::Invite);
        let ok = l.allow(now, source, Lane::Invite, || dials_emergency(&plan, msg));
        if i % 100 == 0 {
            assert!(ok, "emergency INVITE {i} refused");
            urgent += 1;
        } else if ok {
            passed += 1;
        }
    }
    assert_eq!(urgent, 100);
    // The burst plus one second at the rate, less the emergency INVITEs that took tokens.
    assert!((290..=400).contains(&passed), "{passed} of 9,900 passed");
    assert_eq!(l.take_report().dropped, 9_900 - passed);
}

#[test]
fn the_emergency_check_reads_only_the_request_line() {
    let plan = default_plan();
    assert!(dials_emergency(&plan, b"\r\nINVITE sip:112@gw SIP/2.0\r\n"));
    assert!(dials_emergency(&plan, b"INVITE urn:service:sos SIP/2.0"));
    assert!(!dials_emergency(
        &plan,
        b"INVITE sip:999@gw SIP/2.0\r\nTo: <sip:112@gw>\r\n"
    ));
    assert!(!dials_emergency(&plan, b"INVITE"));
    assert!(!dials_emergency(&plan, b"INVITE \xff\xfe SIP/2.0"));
    assert!(!dials_emergency(&plan, b""));
}

#[test]
fn a_source_holds_at_most_its_share_of_the_call_queue() {
    let mut q = QueueShare::new(3);
    assert!((0..3).all(|_| q.enter(ip("192.0.2.1"))));
    assert!(!q.enter(ip("192.0.2.1")));
    // IPv6: the whole /64 is one source.
    assert!((0..3).all(|_| q.enter(ip("2001:db8::1"))));
    assert!(!q.enter(ip("2001:db8::2")));
    assert!(q.enter(ip("192.0.2.2")));
    q.leave(ip("192.0.2.1"));
    assert!(q.enter(ip("192.0.2.1")));
    for _ in 0..3 {
        q.leave(ip("192.0.2.1"));
        q.leave(ip("2001:db8::3"));
    }
    q.leave(ip("192.0.2.2"));
    // Leaving more than entered changes nothing.
    q.leave(ip("192.0.2.2"));
    assert_eq!(q.sources(), 0);
}

#[test]
fn ipv6_sources_are_kept_per_64_and_mapped_v4_as_v4() {
    assert_eq!(
        SourceKey::of(ip("2001:db8:1:2:aaaa::1")),
        SourceKey::of(ip("2001:db8:1:2:bbbb::2"))
    );
    assert_ne!(
        SourceKey::of(ip("2001:db8:1:2::1")),
        SourceKey::of(ip("2001:db8:1:3::1"))
    );
    assert_eq!(
        SourceKey::of(ip("::ffff:192.0.2.1")),
        SourceKey::of(ip("192.0.2.1"))
    );
}

#[test]
fn networks_parse_and_match() {
    let n: IpNet = "192.168.0.0/16".parse().expect("net");
    assert!(n.contains(ip("192.168.200.1")));
    assert!(n.contains(ip("::ffff:192.168.1.1")));
    assert!(!n.contains(ip("192.169.0.1")));
    let one: IpNet = "203.0.113.7".parse().expect("addr");
    assert!(one.contains(ip("203.0.113.7")) && !one.contains(ip("203.0.113.8")));
    let v6: IpNet = "2001:db8::/32".parse().expect("v6");
    assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
    let all: IpNet = "0.0.0.0/0".parse().expect("all");
    assert!(all.contains(ip("8.8.8.8")));
    for bad in ["10.0.0.0/33", "10.0.0/8", "fe80::/129", "x", ""] {
        assert!(bad.parse::<IpNet>().is_err(), "{bad}");
    }
}

#[test]
fn lanes_come_from_the_first_token() {
    assert_eq!(Lane::of(b"INVITE sip:112@x SIP/2.0\r\n"), Lane::Invite);
    assert_eq!(
        Lane::of(b"\r\n\r\nINVITE sip:112@x SIP/2.0\r\n"),
        Lane::Invite
    );
    assert_eq!(Lane::of(b"BYE sip:x SIP/2.0\r\n"), Lane::Call);
    assert_eq!(Lane::of(b"SIP/2.0 200 OK\r\n"), Lane::Call);
    assert_eq!(Lane::of(b"OPTIONS sip:x SIP/2.0\r\n"), Lane::Bulk);
    // In a dialog (a To-tag): session checks and re-INVITEs are call traffic.
    let in_dialog = |method: &str, to: &str| {
        Lane::of(
            format!("{method} sip:x SIP/2.0\r\nVia: x\r\n{to}\r\nCall-ID: c\r\n\r\n").as_bytes(),
        )
    };
    assert_eq!(in_dialog("OPTIONS", "To: <sip:a@b>;tag=1"), Lane::Call);
    assert_eq!(in_dialog("OPTIONS", "t: sip:a@b ; TAG = 1"), Lane::Call);
    assert_eq!(
        in_dialog("INVITE", "to:\"x\" <sip:a@b>;foo;tag=9"),
        Lane::Call
    );
    assert_eq!(in_dialog("OPTIONS", "To: <sip:a@b>"), Lane::Bulk);
    assert_eq!(in_dialog("INVITE", "To: <sip:a@b>"), Lane::Invite);
    // A tag inside the URI or the display name is not the header's.
    assert_eq!(in_dialog("OPTIONS", "To: <sip:a@b;tag=1>"), Lane::Bulk);
    assert_eq!(
        in_dialog("INVITE", "To: \";tag=x\" <sip:a@b>"),
        Lane::Invite
    );
    // Only a To header counts, and only in the header section.
    assert_eq!(in_dialog("OPTIONS", "From: <sip:a@b>;tag=1"), Lane::Bulk);
    assert_eq!(
        Lane::of(b"OPTIONS sip:x SIP/2.0\r\n\r\nTo: <sip:a@b>;tag=1\r\n"),
        Lane::Bulk
    );
    assert_eq!(Lane::of(b"INVITEX sip:x SIP/2.0\r\n"), Lane::Bulk);
    assert_eq!(Lane::of(b"invite sip:x SIP/2.0\r\n"), Lane::Bulk);
    assert_eq!(Lane::of(b"INVITE"), Lane::Invite);
    assert_eq!(Lane::of(b""), Lane::Bulk);
    assert_eq!(Lane::of(&[0xff, 0, 1]), Lane::Bulk);
}

#[test]
fn connections_are_limited_per_source_and_in_total() {
    let t0 = Instant::now();
    let mut c = ConnLimiter::new(2, 5, Trusted(vec!["10.0.0.1".parse().expect("net")]));
    // Every connection carries a call: nothing may be evicted.
    let calls = |_| true;
    let open = |c: &mut ConnLimiter, a: &str, id: u64| c.open(ip(a), id, t0, calls);
    assert_eq!(open(&mut c, "192.0.2.1", 1), Ok(Opened { evict: None }));
    assert_eq!(open(&mut c, "192.0.2.1", 2), Ok(Opened { evict: None }));
    assert_eq!(open(&mut c, "192.0.2.1", 3), Err(Refusal::PerSource));
    assert!(open(&mut c, "192.0.2.2", 4).is_ok());
    // Trusted: beyond the per-source count, but not beyond the total.
    assert!(open(&mut c, "10.0.0.1", 5).is_ok());
    assert!(open(&mut c, "10.0.0.1", 6).is_ok());
    assert_eq!(open(&mut c, "10.0.0.1", 7), Err(Refusal::Total));
    c.close(1);
    assert_eq!(c.total(), 4);
    assert!(open(&mut c, "192.0.2.1", 8).is_ok());
    // Closing what was never opened (or twice) changes nothing.
    c.close(99);
    c.close(1);
    assert_eq!(c.total(), 5);
    assert_eq!(c.take_refused(), (1, 1, 0));
    assert_eq!(c.take_refused(), (0, 0, 0));
}

/// 32 networks fill the total with idle connections; a newcomer takes the place of the
/// one idle longest that carries no call, never one with a call.
#[test]
fn at_the_total_the_longest_idle_connection_without_a_call_makes_room() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut c = ConnLimiter::new(128, 4096, Trusted::default());
    let with_call = [0u64, 5];
    let calls = |id: u64| with_call.contains(&id);
    for id in 0..4096u64 {
        let net = id / 128;
        let a = IpAddr::V6(Ipv6Addr::from(
            (0x2001_0db8_u128 << 96) | (u128::from(net) << 64) | u128::from(id),
        ));
        assert_eq!(c.open(a, id, at(id), calls), Ok(Opened { evict: None }));
    }
    // Connection 1 sent a message lately: no longer the longest idle.
    c.activity(1, at(5000));
    assert_eq!(
        c.open(ip("192.0.2.1"), 5000, at(6000), calls),
        Ok(Opened { evict: Some(2) })
    );
    assert_eq!(
        c.open(ip("192.0.2.1"), 5001, at(6000), calls),
        Ok(Opened { evict: Some(3) })
    );
    assert_eq!(c.total(), 4096);
    assert_eq!(c.take_evicted(), 2);
    // The evicted connection's own close later changes nothing.
    c.close(2);
    assert_eq!(c.total(), 4096);
    // Only connections with calls left: a newcomer is refused.
    let mut c = ConnLimiter::new(128, 2, Trusted::default());
    assert!(c.open(ip("192.0.2.1"), 0, t0, calls).is_ok());
    assert!(c.open(ip("192.0.2.1"), 5, t0, calls).is_ok());
    assert_eq!(c.open(ip("192.0.2.2"), 7, t0, calls), Err(Refusal::Total));
}

#[test]
fn the_descriptor_reserve() {
    assert!(leaves_reserve(500, 1024, 512));
    assert!(!leaves_reserve(512, 1024, 512));
    assert_eq!(effective_reserve(1024, 512), 512);
    assert_eq!(effective_reserve(256, 512), 128);
}

const TIMEOUTS: StreamTimeouts = StreamTimeouts {
    message: Duration::from_secs(10),
    idle: Duration::from_secs(30),
    idle_with_call: Duration::from_secs(3600),
};

#[test]
fn a_message_trickled_byte_by_byte_expires_from_its_first_byte() {
    let t0 = Instant::now();
    let mut c = StreamClock::new(TIMEOUTS, t0);
    // One byte a second: a partial message from t0 + 1 s on, never complete.
    for s in 1..=20u64 {
        let now = t0 + Duration::from_secs(s);
        if let Some(why) = c.expired(now, false) {
            assert_eq!(why, StreamExpiry::IncompleteMessage(TIMEOUTS.message));
            assert_eq!(s, 11);
            return;
        }
        c.on_read(now, 0, true);
    }
    panic!("the trickle was never cut");
}

#[test]
fn complete_messages_keep_a_connection_and_a_call_keeps_it_longer() {
    let t0 = Instant::now();
    let mut c = StreamClock::new(TIMEOUTS, t0);
    c.on_read(t0 + Duration::from_secs(20), 1, false);
    assert_eq!(c.expired(t0 + Duration::from_secs(49), false), None);
    assert_eq!(
        c.next(false),
        (
            t0 + Duration::from_secs(50),
            StreamExpiry::Idle(TIMEOUTS.idle)
        )
    );
    assert_eq!(c.expired(t0 + Duration::from_secs(50), true), None);
    assert_eq!(
        c.expired(t0 + Duration::from_secs(3620), true),
        Some(StreamExpiry::Idle(TIMEOUTS.idle_with_call))
    );
    // A message that completes in a later read clears its deadline.
    c.on_read(t0 + Duration::from_secs(21), 0, true);
    c.on_read(t0 + Duration::from_secs(25), 1, false);
    assert_eq!(c.expired(t0 + Duration::from_secs(40), false), None);
    // Complete messages followed by the start of another: its deadline starts now.
    c.on_read(t0 + Duration::from_secs(26), 2, true);
    assert_eq!(
        c.next(true),
        (
            t0 + Duration::from_secs(36),
            StreamExpiry::IncompleteMessage(TIMEOUTS.message)
        )
    );
}
