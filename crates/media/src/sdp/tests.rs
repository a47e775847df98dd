use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

fn local() -> LocalAudio {
    LocalAudio {
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        port: 30000,
        session_id: 4242,
        session_version: 1,
    }
}

/// An offer with the given `c=` address, `m=` line tail and extra lines.
fn offer_with(connection: &str, media: &str, extra: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 {connection}\r\nt=0 0\r\nm=audio {media}\r\n{extra}"
    )
}

fn strictly_parses(sdp: &str) -> rtc_sdp::SessionDescription {
    rtc_sdp::SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes()))
        .unwrap_or_else(|e| panic!("rtc-sdp rejects our SDP ({e}):\n{sdp}"))
}

fn media_lines(sdp: &str) -> Vec<&str> {
    sdp.lines().filter(|l| l.starts_with("m=")).collect()
}

#[test]
fn sipp_default_offer_gets_pcmu() {
    let offer = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
                 c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let answer = answer(offer.as_bytes(), &local());
    assert_eq!(answer.warnings, vec![]);
    assert_eq!(
        answer.audio,
        NegotiatedAudio {
            remote: Some("127.0.0.1:6000".parse().expect("addr")),
            codec: Codec::Pcmu,
            payload_type: PayloadType(0),
            dtmf_payload_type: None,
            ptime: DEFAULT_PTIME,
            direction: Direction::SendRecv,
        }
    );
    strictly_parses(&answer.sdp);
    assert_eq!(media_lines(&answer.sdp), vec!["m=audio 30000 RTP/AVP 0"]);
    assert!(answer.sdp.contains("a=rtpmap:0 PCMU/8000\r\n"));
    assert!(answer.sdp.contains("c=IN IP4 192.0.2.10\r\n"));
}

#[test]
fn static_payload_types_without_rtpmap_follow_the_offerers_order() {
    let pcma_first = answer(
        offer_with("203.0.113.5", "4000 RTP/AVP 8 0", "").as_bytes(),
        &local(),
    );
    assert_eq!(pcma_first.warnings, vec![]);
    assert_eq!(pcma_first.audio.codec, Codec::Pcma);
    assert_eq!(pcma_first.audio.payload_type, PayloadType(8));
    assert_eq!(
        pcma_first.audio.remote,
        Some("203.0.113.5:4000".parse().expect("addr"))
    );

    let pcmu_first = answer(
        offer_with("203.0.113.5", "4000 RTP/AVP 0 8", "").as_bytes(),
        &local(),
    );
    assert_eq!(pcmu_first.audio.codec, Codec::Pcmu);
}

#[test]
fn telephone_event_keeps_the_offerers_dynamic_payload_type() {
    let offer = offer_with(
        "203.0.113.5",
        "4000 RTP/AVP 8 96",
        "a=rtpmap:8 PCMA/8000\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\n",
    );
    let answer = answer(offer.as_bytes(), &local());
    assert_eq!(answer.audio.dtmf_payload_type, Some(PayloadType(96)));
    assert_eq!(media_lines(&answer.sdp), vec!["m=audio 30000 RTP/AVP 8 96"]);
    assert!(
        answer
            .sdp
            .contains("a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\n")
    );
}

#[test]
fn telephone_event_at_another_clock_rate_is_not_taken() {
    let offer = offer_with(
        "203.0.113.5",
        "4000 RTP/AVP 0 97",
        "a=rtpmap:97 telephone-event/48000\r\n",
    );
    assert_eq!(
        answer(offer.as_bytes(), &local()).audio.dtmf_payload_type,
        None
    );
}

#[test]
fn g711_under_a_dynamic_payload_type_is_used_with_that_number() {
    let offer = offer_with(
        "203.0.113.5",
        "4000 RTP/AVP 98",
        "a=rtpmap:98 pcma/8000\r\n",
    );
    let answer = answer(offer.as_bytes(), &local());
    assert_eq!(answer.audio.codec, Codec::Pcma);
    assert_eq!(answer.audio.payload_type, PayloadType(98));
    assert!(answer.sdp.contains("a=rtpmap:98 PCMA/8000"));
}

#[test]
fn comfort_noise_is_not_accepted() {
    let offer = offer_with(
        "203.0.113.5",
        "4000 RTP/AVP 8 13",
        "a=rtpmap:13 CN/8000\r\n",
    );
    let answer = answer(offer.as_bytes(), &local());
    assert_eq!(media_lines(&answer.sdp), vec!["m=audio 30000 RTP/AVP 8"]);
    assert!(!answer.sdp.contains("CN"));
}

#[test]
fn ptime_is_taken_within_limits_and_replaced_outside() {
    let cases = [
        ("a=ptime:30\r\n", Duration::from_millis(30), false),
        ("a=ptime:10\r\n", Duration::from_millis(10), false),
        ("a=ptime:60\r\n", Duration::from_millis(60), false),
        ("a=ptime:20.0\r\n", Duration::from_millis(20), false),
        ("a=ptime:5\r\n", DEFAULT_PTIME, true),
        ("a=ptime:120\r\n", DEFAULT_PTIME, true),
        ("a=ptime:soon\r\n", DEFAULT_PTIME, true),
    ];
    for (line, expected, warned) in cases {
        let offer = offer_with("203.0.113.5", "4000 RTP/AVP 8", line);
        let answer = answer(offer.as_bytes(), &local());
        assert_eq!(answer.audio.ptime, expected, "{line}");
        assert_eq!(
            answer
                .warnings
                .iter()
                .any(|w| matches!(w, SdpWarning::UnusablePtime(_))),
            warned,
            "{line}"
        );
        assert!(
            answer
                .sdp
                .contains(&format!("a=ptime:{}\r\n", expected.as_millis()))
        );
        assert_eq!(
            answer.audio.samples_per_packet(),
            expected.as_millis() as usize * 8
        );
    }
}

#[test]
fn directions_are_mirrored_and_media_level_wins() {
    let cases = [
        ("", "", Direction::SendRecv),
        ("a=sendonly\r\n", "", Direction::RecvOnly),
        ("a=recvonly\r\n", "", Direction::SendOnly),
        ("a=inactive\r\n", "", Direction::Inactive),
        // Session-level attribute, before the m= line.
        ("", "a=sendonly\r\n", Direction::RecvOnly),
        // Media level overrides session level.
        ("a=sendrecv\r\n", "a=inactive\r\n", Direction::SendRecv),
    ];
    for (media_attr, session_attr, ours) in cases {
        let offer = format!(
            "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
             {session_attr}m=audio 4000 RTP/AVP 8\r\n{media_attr}"
        );
        let answer = answer(offer.as_bytes(), &local());
        assert_eq!(answer.warnings, vec![], "{media_attr}{session_attr}");
        assert_eq!(answer.audio.direction, ours, "{media_attr}{session_attr}");
        assert!(answer.sdp.contains(&format!("a={}\r\n", ours.attribute())));
    }
}

#[test]
fn old_style_hold_means_do_not_send_to_me() {
    let offer = offer_with("0.0.0.0", "4000 RTP/AVP 8", "");
    let answer = answer(offer.as_bytes(), &local());
    assert_eq!(answer.warnings, vec![]);
    assert_eq!(answer.audio.remote, None);
    assert_eq!(answer.audio.direction, Direction::RecvOnly);

    let inactive = offer_with("0.0.0.0", "4000 RTP/AVP 8", "a=recvonly\r\n");
    assert_eq!(
        super::answer(inactive.as_bytes(), &local()).audio.direction,
        Direction::Inactive
    );
}

#[test]
fn ipv6_offers_and_ipv6_local_addresses() {
    let offer = "v=0\r\no=- 1 1 IN IP6 2001:db8::7\r\ns=-\r\nc=IN IP6 2001:db8::7\r\nt=0 0\r\n\
                 m=audio 4000 RTP/AVP 8\r\n";
    let local = LocalAudio {
        addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10)),
        ..local()
    };
    let answer = answer(offer.as_bytes(), &local);
    assert_eq!(
        answer.audio.remote,
        Some("[2001:db8::7]:4000".parse().expect("addr"))
    );
    assert!(
        answer
            .sdp
            .contains("o=siaga 4242 1 IN IP6 2001:db8::10\r\n")
    );
    assert!(answer.sdp.contains("c=IN IP6 2001:db8::10\r\n"));
    strictly_parses(&answer.sdp);
}

#[test]
fn media_level_connection_overrides_session_level() {
    let offer = offer_with("203.0.113.5", "4000 RTP/AVP 8", "c=IN IP4 203.0.113.99\r\n");
    assert_eq!(
        answer(offer.as_bytes(), &local()).audio.remote,
        Some("203.0.113.99:4000".parse().expect("addr"))
    );
}

#[test]
fn a_host_name_address_is_a_warning_not_a_failure() {
    let offer = offer_with("pbx.example.net", "4000 RTP/AVP 8", "");
    let answer = answer(offer.as_bytes(), &local());
    assert_eq!(answer.audio.remote, None);
    assert_eq!(
        answer.warnings,
        vec![SdpWarning::UnusableAddress("pbx.example.net".into())]
    );
    assert_eq!(answer.audio.codec, Codec::Pcma);
}

#[test]
fn disabled_audio_is_answered_with_port_zero() {
    let offer = offer_with("203.0.113.5", "0 RTP/AVP 8", "");
    let answer = answer(offer.as_bytes(), &local());
    assert_eq!(answer.warnings, vec![SdpWarning::AudioDisabled]);
    assert_eq!(answer.audio.remote, None);
    assert_eq!(answer.audio.direction, Direction::Inactive);
    assert_eq!(media_lines(&answer.sdp), vec!["m=audio 0 RTP/AVP 8"]);
    strictly_parses(&answer.sdp);
}

#[test]
fn other_streams_are_rejected_in_place() {
    let offer = "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
                 m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
                 m=audio 4000 RTP/AVP 0 8\r\n";
    let answer = answer(offer.as_bytes(), &local());
    assert_eq!(answer.warnings, vec![]);
    assert_eq!(
        media_lines(&answer.sdp),
        vec!["m=video 0 RTP/AVP 96", "m=audio 30000 RTP/AVP 0"]
    );
    assert_eq!(answer.audio.codec, Codec::Pcmu);
    strictly_parses(&answer.sdp);
}

#[test]
fn no_g711_is_answered_with_g711_anyway() {
    let offer = offer_with(
        "203.0.113.5",
        "4000 RTP/AVP 18 9 101",
        "a=rtpmap:18 G729/8000\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
    );
    let answer = answer(offer.as_bytes(), &local());
    assert_eq!(answer.warnings, vec![SdpWarning::NoG711("18 9 101".into())]);
    assert_eq!(answer.audio.codec, Codec::Pcma);
    assert_eq!(answer.audio.payload_type, PayloadType(8));
    assert_eq!(answer.audio.dtmf_payload_type, Some(PayloadType(101)));
    assert_eq!(
        answer.audio.remote,
        Some("203.0.113.5:4000".parse().expect("addr"))
    );
    assert_eq!(
        media_lines(&answer.sdp),
        vec!["m=audio 30000 RTP/AVP 8 0 101"]
    );
}

#[test]
fn srtp_only_offer_is_answered_as_plain_rtp_with_a_warning() {
    let offer = offer_with(
        "203.0.113.5",
        "4000 RTP/SAVP 8",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n",
    );
    let answer = answer(offer.as_bytes(), &local());
    assert_eq!(
        answer.warnings,
        vec![SdpWarning::UnsupportedTransport("RTP/SAVP".into())]
    );
    assert_eq!(media_lines(&answer.sdp), vec!["m=audio 30000 RTP/AVP 8"]);
}

#[test]
fn unreadable_offer_still_gets_a_default_answer() {
    for garbage in [&b""[..], b"hello", b"\xFF\xFE\x00", b"v=0\r\nm=audio x"] {
        let answer = answer(garbage, &local());
        assert!(
            matches!(answer.warnings.as_slice(), [SdpWarning::Unreadable(_)]),
            "{:?}",
            answer.warnings
        );
        assert_eq!(answer.audio.remote, None);
        assert_eq!(answer.audio.direction, Direction::SendRecv);
        assert_eq!(
            media_lines(&answer.sdp),
            vec!["m=audio 30000 RTP/AVP 8 0 101"]
        );
        strictly_parses(&answer.sdp);
    }
}

#[test]
fn sloppy_sdp_is_read_leniently() {
    // No s= line, bare LF line endings and the attribute before t=: rtc-sdp refuses.
    let offer = "v=0\no=- 1 1 IN IP4 198.51.100.7\nc=IN IP4 203.0.113.5\na=sendonly\nt=0 0\n\
                 m=audio 4000 RTP/AVP 0 8 101\na=rtpmap:101 telephone-event/8000\na=ptime:30\n";
    let answer = answer(offer.as_bytes(), &local());
    assert!(matches!(
        answer.warnings.as_slice(),
        [SdpWarning::ReadLeniently(_)]
    ));
    assert_eq!(
        answer.audio,
        NegotiatedAudio {
            remote: Some("203.0.113.5:4000".parse().expect("addr")),
            codec: Codec::Pcmu,
            payload_type: PayloadType(0),
            dtmf_payload_type: Some(PayloadType(101)),
            ptime: Duration::from_millis(30),
            direction: Direction::RecvOnly,
        }
    );
}

#[test]
fn our_offer_is_strict_sdp_and_reads_back() {
    let offer = offer(&local());
    strictly_parses(&offer);
    assert_eq!(media_lines(&offer), vec!["m=audio 30000 RTP/AVP 8 0 101"]);
    assert!(offer.contains("a=ptime:20\r\na=sendrecv\r\n"));
    let seen_by_peer = accept_answer(offer.as_bytes()).expect("readable");
    assert_eq!(
        seen_by_peer,
        NegotiatedAudio {
            remote: Some("192.0.2.10:30000".parse().expect("addr")),
            codec: Codec::Pcma,
            payload_type: PayloadType(8),
            dtmf_payload_type: Some(PayloadType(101)),
            ptime: DEFAULT_PTIME,
            direction: Direction::SendRecv,
        }
    );
}

#[test]
fn accepting_an_answer() {
    let answer = offer_with(
        "203.0.113.5",
        "4000 RTP/AVP 0 101",
        "a=rtpmap:101 telephone-event/8000\r\na=ptime:30\r\na=recvonly\r\n",
    );
    assert_eq!(
        accept_answer(answer.as_bytes()),
        Ok(NegotiatedAudio {
            remote: Some("203.0.113.5:4000".parse().expect("addr")),
            codec: Codec::Pcmu,
            payload_type: PayloadType(0),
            dtmf_payload_type: Some(PayloadType(101)),
            ptime: Duration::from_millis(30),
            direction: Direction::SendOnly,
        })
    );
}

#[test]
fn unusable_answers_are_errors() {
    let rejected = offer_with("203.0.113.5", "0 RTP/AVP 8", "");
    assert_eq!(
        accept_answer(rejected.as_bytes()),
        Err(SdpError::AudioRejected)
    );
    let g729 = offer_with("203.0.113.5", "4000 RTP/AVP 18", "");
    assert_eq!(
        accept_answer(g729.as_bytes()),
        Err(SdpError::NoCommonCodec("18".into()))
    );
    let host = offer_with("agency.example", "4000 RTP/AVP 8", "");
    assert_eq!(
        accept_answer(host.as_bytes()),
        Err(SdpError::UnusableAddress("agency.example".into()))
    );
    assert!(matches!(
        accept_answer(b"nonsense"),
        Err(SdpError::Unreadable(_))
    ));
    let video_only = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n\
                      m=video 5000 RTP/AVP 96\r\n";
    assert_eq!(
        accept_answer(video_only.as_bytes()),
        Err(SdpError::NoAudioStream)
    );
}

#[test]
fn rerendering_bumps_only_the_version() {
    let offer = offer_with("203.0.113.5", "4000 RTP/AVP 8", "");
    let mut answer = answer(offer.as_bytes(), &local());
    let first = answer.sdp.clone();
    let second = answer.rerender_with_next_version().to_owned();
    assert_eq!(answer.local().session_version, 2);
    assert_eq!(
        second,
        first.replace("o=siaga 4242 1 IN", "o=siaga 4242 2 IN"),
    );
    assert_ne!(first, second);
}

fn any_direction() -> impl Strategy<Value = Option<&'static str>> {
    prop::option::of(prop::sample::select(vec![
        "sendrecv", "sendonly", "recvonly", "inactive",
    ]))
}

prop_compose! {
    /// Offers built from the pieces real phones send, in shuffled combinations.
    fn plausible_offer()(
        formats in prop::collection::vec(prop::sample::select(vec!["0", "8", "9", "18", "96", "101", "13"]), 1..5),
        te_pt in prop::sample::select(vec!["96", "101"]),
        port in prop::sample::select(vec![0u16, 4000, 65535]),
        address in prop::sample::select(vec!["203.0.113.5", "0.0.0.0", "2001:db8::5", "host.example"]),
        ptime in prop::option::of(0u32..200),
        direction in any_direction(),
        extra_video in any::<bool>(),
    ) -> String {
        let kind = if address.contains(':') { "IP6" } else { "IP4" };
        let mut sdp = format!("v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN {kind} {address}\r\nt=0 0\r\n");
        if extra_video {
            sdp.push_str("m=video 5002 RTP/AVP 97\r\n");
        }
        sdp.push_str(&format!("m=audio {port} RTP/AVP {}\r\n", formats.join(" ")));
        sdp.push_str(&format!("a=rtpmap:{te_pt} telephone-event/8000\r\n"));
        if let Some(ptime) = ptime {
            sdp.push_str(&format!("a=ptime:{ptime}\r\n"));
        }
        if let Some(direction) = direction {
            sdp.push_str(&format!("a={direction}\r\n"));
        }
        sdp
    }
}

proptest! {
    #[test]
    fn answer_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let answer = answer(&bytes, &local());
        prop_assert!(answer.sdp.starts_with("v=0\r\n"));
    }

    #[test]
    fn answer_never_panics_on_sdp_like_text(text in "(v=0\r\n)?([a-z]=[ -~]{0,40}\r?\n){0,12}") {
        let _ = answer(text.as_bytes(), &local());
        let _ = accept_answer(text.as_bytes());
    }

    /// Every answer is strict SDP, and the peer reading it sees our stream mirrored.
    #[test]
    fn answers_read_back_as_the_mirror_image(offer in plausible_offer()) {
        let answer = answer(offer.as_bytes(), &local());
        strictly_parses(&answer.sdp);
        prop_assert_eq!(media_lines(&answer.sdp).len(), media_lines(&offer).len());
        match accept_answer(answer.sdp.as_bytes()) {
            Ok(seen_by_peer) => {
                prop_assert_eq!(seen_by_peer.remote, Some(SocketAddr::new(local().addr, local().port)));
                prop_assert_eq!(seen_by_peer.codec, answer.audio.codec);
                prop_assert_eq!(seen_by_peer.payload_type, answer.audio.payload_type);
                prop_assert_eq!(seen_by_peer.dtmf_payload_type, answer.audio.dtmf_payload_type);
                prop_assert_eq!(seen_by_peer.ptime, answer.audio.ptime);
                prop_assert_eq!(seen_by_peer.direction, answer.audio.direction.reversed());
            }
            Err(SdpError::AudioRejected) => {
                prop_assert!(answer.warnings.contains(&SdpWarning::AudioDisabled));
            }
            Err(other) => prop_assert!(false, "answer unreadable: {other}"),
        }
    }
}

#[test]
fn the_fallback_session_is_our_default_line() {
    let fallback = NegotiatedAudio::fallback();
    assert_eq!(
        fallback,
        NegotiatedAudio {
            remote: None,
            codec: Codec::Pcma,
            payload_type: PayloadType(8),
            dtmf_payload_type: Some(OUR_TELEPHONE_EVENT_PT),
            ptime: DEFAULT_PTIME,
            direction: Direction::SendRecv,
        }
    );
    // What our own offer resolves to, and what an unreadable offer is answered with.
    let ours = accept_answer(offer(&local()).as_bytes()).expect("our offer reads back");
    assert_eq!(
        NegotiatedAudio {
            remote: None,
            ..ours
        },
        fallback
    );
    assert_eq!(answer(b"garbage", &local()).audio, fallback);
}
