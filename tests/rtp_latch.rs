//! Which RTP the gateway takes, through the whole binary: a SIPp caller whose phone starts its
//! audio 2 s after the answer, and a third party on another loopback IP that sends to the
//! gateway's RTP port first. The third party must get nothing back and never be recorded; the
//! caller must be latched when it speaks, also from behind a NAT, and again when its NAT port
//! changes mid-call (a SIPp call whose audio the test plays from two ports in turn).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Gateway, assert_sipp_ok, events, free_udp_port_pair, scenario_path, wait_until};
use siaga_media::{Codec, PayloadType, RtpHeader, RtpTimestamp, SequenceNumber, Ssrc};

/// The SIPp caller of `uac_late_voice.xml`, streaming from `media_port`, with `sdp` in its offer.
fn spawn_caller(gw: &Gateway, media_port: u16, sdp: SocketAddr) -> Child {
    let (ip, port) = (sdp.ip().to_string(), sdp.port().to_string());
    let keys = ["-key", "sdp_ip", &ip, "-key", "sdp_port", &port];
    spawn_sipp(gw, "uac_late_voice.xml", media_port, &keys)
}

/// A one-call SIPp caller of `scenario` (run where its audio files are), in the background.
fn spawn_sipp(gw: &Gateway, scenario: &str, media_port: u16, extra: &[&str]) -> Child {
    let media = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/media");
    Command::new("sipp")
        .current_dir(media)
        .arg(gw.udp.to_string())
        .arg("-sf")
        .arg(scenario_path(scenario))
        .args(["-s", "112", "-i", "127.0.0.1", "-m", "1"])
        .args(["-mp", &media_port.to_string()])
        .args(["-cp", &free_udp_port_pair().to_string()])
        .args(extra)
        .args([
            "-timeout",
            "60s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .args(["-error_file"])
        .arg(std::env::temp_dir().join(format!("sipp-latch-{media_port}-errors.log")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp is installed (apt-get install sip-tester)")
}

/// The gateway's RTP address for call 1, from the 200 OK it sent (as logged).
fn gateway_rtp(db: &rusqlite::Connection) -> Option<SocketAddr> {
    let raw: Vec<u8> = db
        .query_row(
            "SELECT raw FROM sip_messages WHERE call = 1 AND direction = 'out'
               AND first_line LIKE 'SIP/2.0 200%' AND leg = 'A' ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .ok()?;
    let text = String::from_utf8_lossy(&raw);
    let ip = text
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))?
        .trim();
    let port = text
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split(' ')
        .next()?;
    format!("{ip}:{port}").parse().ok()
}

/// Waits (20 s at most) for the gateway's 200 OK to call 1 and returns its RTP address.
fn answered_rtp(gw: &Gateway) -> SocketAddr {
    let db = gw.db();
    let mut target = None;
    wait_until(
        "the gateway's 200 OK in the call log",
        Duration::from_secs(20),
        || {
            target = gateway_rtp(&db);
            target.is_some()
        },
    );
    target.expect("found")
}

fn recording_path(db: &rusqlite::Connection) -> PathBuf {
    let path: String = db
        .query_row("SELECT recording_path FROM calls WHERE id = 1", [], |r| {
            r.get(0)
        })
        .expect("a recording for call 1");
    PathBuf::from(path)
}

/// The left channel (what the caller sent) of a stereo recording.
fn left_channel(path: &Path) -> Vec<i16> {
    let reader = hound::WavReader::open(path).expect("hound reads the recording");
    let all: Vec<i16> = reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("samples");
    all.iter().step_by(2).copied().collect()
}

/// Three 20 ms packets of the caller's voice, 1 s into the file, decoded as the gateway does.
fn caller_voice_sample() -> Vec<i16> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/media/caller_8k.alaw");
    let alaw = std::fs::read(file).expect("caller voice");
    let chunk = &alaw[8000..8000 + 480];
    let mut pcm = vec![0i16; chunk.len()];
    Codec::Pcma.decode(chunk, &mut pcm);
    pcm
}

fn contains(haystack: &[i16], needle: &[i16]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The longest run of samples equal to `value`.
fn longest_run(samples: &[i16], value: i16) -> usize {
    let (mut best, mut run) = (0, 0);
    for &s in samples {
        run = if s == value { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

/// What a third party on 127.0.0.2 did: packets sent, packets the gateway sent back to it,
/// and when it sent its first one (UTC ms).
struct Intrusion {
    sent: u64,
    received: u64,
    first_sent_ms: i64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Packet `n` (20 ms of PCMA each) of a stream into `packet` (12 bytes + the payload's length).
fn write_rtp(packet: &mut [u8], n: u16, ssrc: Ssrc, payload: &[u8]) {
    RtpHeader {
        marker: n == 0,
        payload_type: PayloadType(8),
        sequence: SequenceNumber(n),
        timestamp: RtpTimestamp(u32::from(n) * 160),
        ssrc,
    }
    .write(payload, packet)
    .expect("fits");
}

/// 160 PCMA codes of the constant `level`, and the sample the gateway decodes them to.
fn constant_tone(level: i16) -> ([u8; 160], i16) {
    let mut tone = [0u8; 160];
    Codec::Pcma.encode(&[level; 160], &mut tone);
    let mut decoded = [0i16; 1];
    Codec::Pcma.decode(&tone[..1], &mut decoded);
    (tone, decoded[0])
}

/// Sends a loud constant tone as RTP to `target` from 127.0.0.2, one packet per 20 ms, until
/// `caller` exits (at most 30 s), counting what comes back.
fn intrude(target: SocketAddr, payload: &[u8], caller: &mut Child) -> Intrusion {
    let socket = UdpSocket::bind("127.0.0.2:0").expect("127.0.0.2 is loopback on Linux");
    socket.set_nonblocking(true).expect("non-blocking");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut packet = vec![0u8; 12 + payload.len()];
    let mut out = Intrusion {
        sent: 0,
        received: 0,
        first_sent_ms: now_ms(),
    };
    let mut buf = [0u8; 2048];
    while caller.try_wait().expect("sipp status").is_none() && Instant::now() < deadline {
        let n = out.sent as u16;
        write_rtp(&mut packet, n, Ssrc(0x0bad_cafe), payload);
        socket.send_to(&packet, target).expect("send");
        out.sent += 1;
        while socket.recv_from(&mut buf).is_ok() {
            out.received += 1;
        }
        // The intruder's packet clock (20 ms of audio per packet), not a wait for anything.
        std::thread::sleep(Duration::from_millis(20));
    }
    out
}

#[test]
fn rtp_from_a_third_party_before_the_caller_is_refused_and_the_caller_is_latched() {
    let mut gw = Gateway::start(&[]);
    let media_port = free_udp_port_pair();
    let mut caller = spawn_caller(
        &gw,
        media_port,
        SocketAddr::from(([127, 0, 0, 1], media_port)),
    );
    let target = answered_rtp(&gw);

    // A loud constant: easy to find in a recording, impossible in speech for 5 ms on end.
    let (tone, decoded) = constant_tone(12_000);
    let intrusion = intrude(target, &tone, &mut caller);
    let out = caller.wait_with_output().expect("sipp");
    assert_sipp_ok(&out, "the late-talking caller");
    gw.stop();

    let db = gw.db();
    assert_eq!(
        intrusion.received, 0,
        "the gateway sent RTP to the third party"
    );
    let refused = events(&db, "rtp_refused");
    let latched = events(&db, "rtp_latched");
    assert_eq!(
        refused.len(),
        1,
        "one event for the one refused source: {refused:?}"
    );
    assert!(
        refused[0].1.contains("127.0.0.2:") && refused[0].1.starts_with("leg A:"),
        "{refused:?}"
    );
    let caller_source = format!("RTP from 127.0.0.1:{media_port}: the address in the peer's SDP");
    assert_eq!(latched.len(), 1, "{latched:?}");
    assert!(latched[0].1.contains(&caller_source), "{latched:?}");
    assert!(
        intrusion.first_sent_ms <= refused[0].0 && refused[0].0 < latched[0].0,
        "the third party was first (sent from {}, refused at {}, caller latched at {})",
        intrusion.first_sent_ms,
        refused[0].0,
        latched[0].0
    );
    // Every refused packet is counted, none is an event of its own.
    let total = events(&db, "rtp_refused_total");
    assert_eq!(total.len(), 1, "{total:?}");
    let counted: u64 = total[0]
        .1
        .trim_start_matches("leg A: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count");
    eprintln!(
        "third party: {} packets sent, {} answered, {counted} refused and counted; caller latched {} ms after the first refusal",
        intrusion.sent,
        intrusion.received,
        latched[0].0 - refused[0].0
    );
    assert!(
        (100..=intrusion.sent).contains(&counted),
        "{counted} of {} refused: {total:?}",
        intrusion.sent
    );

    let left = left_channel(&recording_path(&db));
    assert!(
        longest_run(&left, decoded) < 40,
        "the third party's tone is in the caller's channel"
    );
    assert!(
        contains(&left, &caller_voice_sample()),
        "the caller's voice is in the caller's channel"
    );
}

#[test]
fn a_caller_behind_nat_is_latched_from_its_signalling_ip() {
    let mut gw = Gateway::start(&[]);
    let media_port = free_udp_port_pair();
    // The offer names an address the phone does not send from (a NAT rewrote the source);
    // nobody listens there, so anything the gateway sends there is lost, as behind a NAT.
    let sdp = SocketAddr::from(([127, 0, 0, 3], media_port + 100));
    let caller = spawn_caller(&gw, media_port, sdp);
    let out = caller.wait_with_output().expect("sipp");
    assert_sipp_ok(&out, "the caller behind NAT");
    gw.stop();

    let db = gw.db();
    let latched = events(&db, "rtp_latched");
    assert_eq!(latched.len(), 1, "{latched:?}");
    assert!(
        latched[0]
            .1
            .contains(&format!("RTP from 127.0.0.1:{media_port}: learnt (NAT)")),
        "{latched:?}"
    );
    assert!(events(&db, "rtp_refused").is_empty());
    assert!(
        contains(&left_channel(&recording_path(&db)), &caller_voice_sample()),
        "the caller's voice is recorded"
    );
}

/// What the gateway sent back to each of three sockets.
#[derive(Debug, Default)]
struct Received {
    first_port: u64,
    new_port: u64,
    /// To the first port after the new one had heard from the gateway (it should have moved).
    first_port_after_move: u64,
    third_party: u64,
}

/// The roaming caller's media, 20 ms a packet from `start`: a tone from one port for 6 s (past
/// the 5 s learning window the latch once had), 700 ms of nothing (its NAT binding moves; a
/// third party on 127.0.0.2 sends meanwhile), then another tone from a new port for 1.5 s.
/// One stream throughout (SSRC, sequence and timestamps continue), as from one phone.
fn roam(target: SocketAddr, ports: [&UdpSocket; 3], tones: [&[u8]; 3], start: Instant) -> Received {
    let [first, new, third] = ports;
    let mut packet = vec![0u8; 12 + 160];
    let mut buf = [0u8; 2048];
    let mut got = Received::default();
    let ssrc = Ssrc(0x5eed_0112);
    for n in 0..410u16 {
        let at = Duration::from_millis(20 * u64::from(n));
        let (socket, tone, own_ssrc) = match at.as_millis() {
            0..6000 => (first, tones[0], ssrc),
            6000..6700 => (third, tones[2], Ssrc(0x0bad_cafe)),
            _ => (new, tones[1], ssrc),
        };
        write_rtp(&mut packet, n, own_ssrc, tone);
        socket.send_to(&packet, target).expect("send");
        while first.recv_from(&mut buf).is_ok() {
            got.first_port += 1;
            if got.new_port > 0 {
                got.first_port_after_move += 1;
            }
        }
        while new.recv_from(&mut buf).is_ok() {
            got.new_port += 1;
        }
        while third.recv_from(&mut buf).is_ok() {
            got.third_party += 1;
        }
        // The phone's packet clock, not a wait for anything.
        std::thread::sleep(
            (start + at + Duration::from_millis(20)).saturating_duration_since(Instant::now()),
        );
    }
    got
}

fn bound(ip: &str) -> UdpSocket {
    let socket = UdpSocket::bind((ip, 0)).expect("loopback socket");
    socket.set_nonblocking(true).expect("non-blocking");
    socket
}

/// A caller behind a NAT whose binding moves to another port 6 s into the call (CGNAT, a
/// Wi-Fi/LTE handover behind the same public IP): after half a second of silence the new port
/// is latched — the gateway sends there and records it — while a third party on another IP
/// that sent during the silence is still refused.
#[test]
fn a_caller_whose_nat_port_changes_mid_call_is_relatched_and_a_third_party_is_not() {
    let mut gw = Gateway::start(&[]);
    let media_port = free_udp_port_pair();
    // SIPp signals and names its -mp port in SDP but sends no RTP: the test plays the phone's
    // audio from its NAT's (changing) ports on the signalling IP.
    let caller = spawn_sipp(&gw, "uac_call.xml", media_port, &["-d", "12000", "-aa"]);
    let target = answered_rtp(&gw);
    let (first, new, third) = (bound("127.0.0.1"), bound("127.0.0.1"), bound("127.0.0.2"));
    let (first_tone, first_level) = constant_tone(4_000);
    let (new_tone, new_level) = constant_tone(-8_000);
    let (third_tone, third_level) = constant_tone(12_000);
    let got = roam(
        target,
        [&first, &new, &third],
        [&first_tone, &new_tone, &third_tone],
        Instant::now(),
    );
    let out = caller.wait_with_output().expect("sipp");
    assert_sipp_ok(&out, "the roaming caller");
    gw.stop();

    let port = |s: &UdpSocket| s.local_addr().expect("bound").port();
    let db = gw.db();
    let latched = events(&db, "rtp_latched");
    assert_eq!(latched.len(), 2, "{latched:?}");
    assert!(
        latched[0].1.contains(&format!(
            "RTP from 127.0.0.1:{}: learnt (NAT)",
            port(&first)
        )),
        "{latched:?}"
    );
    assert!(
        latched[1].1.contains(&format!(
            "RTP from 127.0.0.1:{}: re-latched (NAT moved)",
            port(&new)
        )),
        "{latched:?}"
    );
    assert!(
        latched[1].0 - latched[0].0 > 5_000,
        "the move came after the first 5 s: {latched:?}"
    );
    let refused = events(&db, "rtp_refused");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].1.contains("RTP from 127.0.0.2:"), "{refused:?}");
    eprintln!("gateway RTP received: {got:?}");
    assert_eq!(
        got.third_party, 0,
        "the gateway sent RTP to the third party"
    );
    assert!(
        got.first_port > 0,
        "the gateway never sent to the first port"
    );
    assert!(
        got.new_port > 0,
        "the gateway did not follow the caller to its new port"
    );
    // One or two packets may cross the move; a full second of them would be a failure.
    assert!(got.first_port_after_move < 10, "{got:?}");

    let left = left_channel(&recording_path(&db));
    let runs = [first_level, new_level, third_level].map(|v| longest_run(&left, v));
    eprintln!("longest runs in the caller's channel (first port, new port, third party): {runs:?}");
    assert!(
        runs[0] >= 8_000,
        "the first port's audio is missing: {runs:?}"
    );
    assert!(
        runs[1] >= 4_000,
        "the new port's audio is missing: {runs:?}"
    );
    assert!(
        runs[2] < 40,
        "the third party's tone is in the caller's channel: {runs:?}"
    );
}
