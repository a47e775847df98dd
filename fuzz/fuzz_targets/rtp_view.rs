//! RTP header view (`RtpView::parse`) and the RFC 4733 telephone-event decoder.
//!
//! Input layout: byte 0 = the telephone-event payload type the decoder listens to (low 7
//! bits); then packets, each `[len: u8][len bytes]`, arriving 20 ms apart (a length of 0
//! repeats the previous packet: a retransmitted end packet). The whole tail is also parsed
//! as one packet. Property: no panic; a parsed header written back by `RtpHeader::write`
//! reads back the same.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use siaga_media::dtmf::TelephoneEventDecoder;
use siaga_media::rtp::{RtpHeader, RtpView};
use siaga_media::{Digit, DtmfSource, PayloadType};

fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

fn round_trip(view: &RtpView<'_>) {
    let _ = view.csrcs().count();
    let _ = view.csrc_count();
    let _ = view.extension().map(|e| (e.profile, e.data.len()));
    let header = RtpHeader {
        marker: view.marker,
        payload_type: view.payload_type,
        sequence: view.sequence,
        timestamp: view.timestamp,
        ssrc: view.ssrc,
    };
    let mut out = vec![0u8; 12 + view.payload.len()];
    let n = header.write(view.payload, &mut out).expect("buffer sized for the packet");
    let again = RtpView::parse(&out[..n]).expect("our own packet parses");
    assert_eq!(
        (again.marker, again.payload_type, again.sequence, again.timestamp, again.ssrc, again.payload),
        (view.marker, view.payload_type, view.sequence, view.timestamp, view.ssrc, view.payload),
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&pt, rest)) = data.split_first() else {
        return;
    };
    if let Ok(view) = RtpView::parse(rest) {
        round_trip(&view);
    }
    let mut decoder = TelephoneEventDecoder::new(PayloadType(pt & 0x7F));
    assert_eq!(decoder.payload_type(), PayloadType(pt & 0x7F));
    let mut at = 0;
    let mut now = t0();
    let mut previous: &[u8] = &[];
    while let Some(&len) = rest.get(at) {
        at += 1;
        let packet = if len == 0 {
            previous
        } else {
            let end = (at + usize::from(len)).min(rest.len());
            let p = &rest[at..end];
            at = end;
            p
        };
        previous = packet;
        if let Ok(view) = RtpView::parse(packet) {
            round_trip(&view);
            if let Some(event) = decoder.on_packet(&view, now) {
                assert_eq!(event.source, DtmfSource::Rfc4733);
                assert_eq!(Digit::from_event_code(event.digit.event_code()), Some(event.digit));
                assert!(event.at <= now, "a key press reported before it arrived");
            }
        }
        now += Duration::from_millis(20);
    }
});
