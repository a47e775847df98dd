//! Which RTP the gateway takes, through the whole binary: a SIPp caller whose phone starts its
//! audio 2 s after the answer, and a third party on another loopback IP that sends to the
//! gateway's RTP port first. The third party must get nothing back and never be recorded; the
//! caller must be latched when it speaks, also from behind a NAT.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Gateway, assert_sipp_ok, events, free_udp_port_pair, scenario_path, wait_until};
use siaga_media::{Codec, PayloadType, RtpHeader, RtpTimestamp, SequenceNumber, Ssrc};

/// The SIPp caller of `uac_late_voice.xml`, streaming from `media_port`, with `sdp` in its offer.
fn spawn_caller(gw: &Gateway, media_port: u16, sdp: SocketAddr) -> Child {
    let media = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/media");
    Command::new("sipp")
        .current_dir(media)
        .arg(gw.udp.to_string())
        .arg("-sf")
        .arg(scenario_path("uac_late_voice.xml"))
        .args(["-s", "112", "-i", "127.0.0.1", "-m", "1"])
        .args(["-mp", &media_port.to_string()])
        .args(["-cp", &free_udp_port_pair().to_string()])
        .args(["-key", "sdp_ip", &sdp.ip().to_string()])
        .args(["-key", "sdp_port", &sdp.port().to_string()])
        .args([
            "-timeout",
            "60s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .args(["-error_file"])
        .arg(std::env::temp_dir().join(format!("sipp-late-voice-{media_port}-errors.log")))
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
        RtpHeader {
            marker: n == 0,
            payload_type: PayloadType(8),
            sequence: SequenceNumber(n),
            timestamp: RtpTimestamp(u32::from(n) * 160),
            ssrc: Ssrc(0x0bad_cafe),
        }
        .write(payload, &mut packet)
        .expect("fits");
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
    let target = target.expect("found");

    // A loud constant: easy to find in a recording, impossible in speech for 5 ms on end.
    let mut tone = [0u8; 160];
    Codec::Pcma.encode(&[12_000i16; 160], &mut tone);
    let mut decoded = [0i16; 1];
    Codec::Pcma.decode(&tone[..1], &mut decoded);
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
        longest_run(&left, decoded[0]) < 40,
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
