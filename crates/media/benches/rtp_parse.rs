//! Why the packet path reads RTP with our own view instead of `rtc-rtp`: the cost of reading
//! one 20 ms PCMA packet's header and payload, each way, as the reactors would have to.
//!
//! `cargo bench -p siaga-media --bench rtp_parse` prints nanoseconds per packet (median of
//! several rounds). `rtc-rtp` parses from `bytes::Bytes`; the reactors receive into one reused
//! buffer, so using it means a copy into a fresh `Bytes` (an allocation) per packet, measured
//! here as "copy + unmarshal". "unmarshal only" starts from a ready `Bytes` (a reference count,
//! no copy) and is the best `rtc-rtp` could do.

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use rtc_shared::marshal::Unmarshal;
use siaga_media::RtpView;

const PACKETS: u32 = 2_000_000;
const ROUNDS: usize = 7;

/// A PCMA packet as SIPp sends it: 12-byte header, 160 bytes of audio.
fn pcma_packet() -> Vec<u8> {
    let mut packet = vec![
        0x80, 0x08, 0x12, 0x34, 0, 0, 0x01, 0x40, 0xDE, 0xAD, 0xBE, 0xEF,
    ];
    packet.extend(std::iter::repeat_n(0xD5u8, 160));
    packet
}

/// Median nanoseconds per call of `read`, which returns something derived from the packet so
/// the work cannot be optimised away.
#[expect(
    clippy::disallowed_methods,
    reason = "a benchmark reads the clock; the crate itself never does"
)]
fn median_ns(mut read: impl FnMut() -> u64) -> f64 {
    let mut per_packet: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            let mut sink = 0u64;
            for _ in 0..PACKETS {
                sink = sink.wrapping_add(read());
            }
            black_box(sink);
            start.elapsed().as_nanos() as f64 / f64::from(PACKETS)
        })
        .collect();
    per_packet.sort_by(f64::total_cmp);
    per_packet[ROUNDS / 2]
}

fn main() {
    let packet = pcma_packet();
    let received: &[u8] = &packet;
    let ready = Bytes::copy_from_slice(received);

    let ours = median_ns(|| match RtpView::parse(black_box(received)) {
        Ok(view) => u64::from(view.sequence.0) + view.payload.len() as u64,
        Err(_) => 0,
    });
    let copy_and_unmarshal = median_ns(|| {
        let mut buf = Bytes::copy_from_slice(black_box(received));
        match rtc_rtp::Packet::unmarshal(&mut buf) {
            Ok(p) => u64::from(p.header.sequence_number) + p.payload.len() as u64,
            Err(_) => 0,
        }
    });
    let unmarshal_only = median_ns(|| {
        let mut buf = black_box(&ready).clone();
        match rtc_rtp::Packet::unmarshal(&mut buf) {
            Ok(p) => u64::from(p.header.sequence_number) + p.payload.len() as u64,
            Err(_) => 0,
        }
    });
    println!("RTP read, 172-byte PCMA packet, median of {ROUNDS} rounds of {PACKETS}:");
    println!("  siaga RtpView::parse            {ours:7.1} ns/packet");
    println!("  rtc-rtp copy + unmarshal        {copy_and_unmarshal:7.1} ns/packet");
    println!("  rtc-rtp unmarshal only          {unmarshal_only:7.1} ns/packet");
}
