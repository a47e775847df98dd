//! What the anti-hijack latch costs on the packet path: one decision per received packet,
//! from the latched source (every packet of a normal call) and from a refused source (a
//! flooding third party, counted without an event).
//!
//! `cargo bench -p siaga-media --bench latch` prints nanoseconds per packet (median of rounds).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use siaga_media::{Latch, LatchConfig, Verdict};

const PACKETS: u32 = 5_000_000;
const ROUNDS: usize = 7;

#[expect(
    clippy::disallowed_methods,
    reason = "a benchmark reads the clock; the crate itself never does"
)]
fn median_ns(mut decide: impl FnMut(u32) -> bool) -> f64 {
    let mut per_packet: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            let mut accepted = 0u32;
            for i in 0..PACKETS {
                accepted += u32::from(decide(i));
            }
            black_box(accepted);
            start.elapsed().as_nanos() as f64 / f64::from(PACKETS)
        })
        .collect();
    per_packet.sort_by(f64::total_cmp);
    per_packet[ROUNDS / 2]
}

#[expect(
    clippy::disallowed_methods,
    reason = "a benchmark starts virtual time from one real Instant"
)]
fn main() {
    let t0 = Instant::now();
    let caller: SocketAddr = "198.51.100.7:4000".parse().expect("addr");
    let intruder: SocketAddr = "203.0.113.9:5555".parse().expect("addr");
    let mut latch = Latch::new(LatchConfig::default(), Some(caller.ip()));
    latch.set_remote(Some(caller));
    // Neither path reads the time once the SDP address has spoken; one instant will do.
    let now = t0 + Duration::from_secs(10);
    let latched = median_ns(|_| latch.on_packet(black_box(caller), now).0 == Verdict::Accept);
    let refused = median_ns(|_| latch.on_packet(black_box(intruder), now).0 == Verdict::Accept);
    println!("latch decision, median of {ROUNDS} rounds of {PACKETS} packets:");
    println!("  from the latched SDP address     {latched:6.1} ns/packet");
    println!("  from a refused (counted) source  {refused:6.1} ns/packet");
}
