//! Media through the whole gateway: the `siaga` binary on loopback, SIPp as the caller
//! sending real RTP (`play_pcap_audio`, which needs raw-socket rights: root or CAP_NET_RAW),
//! then the call log and the recording read back.

mod common;

use std::path::{Path, PathBuf};

use common::{Gateway, assert_sipp_ok};
use sha2::{Digest, Sha256};
use siaga_media::{Codec, RtpView};

/// SIPp's bundled caller audio: 236 packets of 30 ms A-law (7.08 s), PT 8.
const G711A_PCAP: &str = "/usr/share/sip-tester/g711a.pcap";

/// The UDP payloads of a classic pcap (Ethernet / IPv4 / UDP), in capture order.
fn udp_payloads(pcap: &[u8]) -> Vec<Vec<u8>> {
    let little_endian = pcap.get(..4) == Some(&[0xD4, 0xC3, 0xB2, 0xA1][..]);
    let read_u32 = |at: usize| -> Option<usize> {
        let bytes: [u8; 4] = pcap.get(at..at + 4)?.try_into().ok()?;
        let v = if little_endian {
            u32::from_le_bytes(bytes)
        } else {
            u32::from_be_bytes(bytes)
        };
        usize::try_from(v).ok()
    };
    let mut out = Vec::new();
    let mut offset = 24;
    while let Some(captured) = read_u32(offset + 8) {
        let Some(frame) = pcap.get(offset + 16..offset + 16 + captured) else {
            break;
        };
        offset += 16 + captured;
        if frame.get(12..14) != Some(&[0x08, 0x00][..]) {
            continue;
        }
        let Some(ip) = frame.get(14..) else { continue };
        let header_len = usize::from(ip.first().copied().unwrap_or(0) & 0x0F) * 4;
        if ip.get(9) == Some(&17)
            && let Some(udp) = ip.get(header_len + 8..)
        {
            out.push(udp.to_vec());
        }
    }
    out
}

/// The caller audio SIPp sends, decoded as the gateway decodes it.
fn pcap_audio() -> Vec<i16> {
    let pcap = std::fs::read(G711A_PCAP).expect("sip-tester's g711a.pcap is installed");
    let mut audio = Vec::new();
    let mut previous_ts = None;
    for datagram in udp_payloads(&pcap) {
        let rtp = RtpView::parse(&datagram).expect("the capture is RTP");
        assert_eq!(rtp.payload_type.0, 8);
        if let Some(prev) = previous_ts {
            assert_eq!(rtp.timestamp.since(prev), 240, "contiguous 30 ms packets");
        }
        previous_ts = Some(rtp.timestamp);
        let mut pcm = vec![0i16; rtp.payload.len()];
        Codec::Pcma.decode(rtp.payload, &mut pcm);
        audio.extend_from_slice(&pcm);
    }
    audio
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `(left, right)` of a stereo 8 kHz recording, which must be one.
fn read_stereo(path: &Path) -> (Vec<i16>, Vec<i16>) {
    let reader = hound::WavReader::open(path).expect("hound reads the recording");
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 8000, 16)
    );
    let all: Vec<i16> = reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("samples");
    (
        all.iter().step_by(2).copied().collect(),
        all.iter().skip(1).step_by(2).copied().collect(),
    )
}

/// Where `needle` starts in `haystack`, sample for sample.
fn find(haystack: &[i16], needle: &[i16]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `(path, sha256, duration_ms)` logged for call 1.
fn logged_recording(db: &rusqlite::Connection) -> (PathBuf, Option<String>, Option<i64>) {
    let (path, sha, ms): (Option<String>, Option<String>, Option<i64>) = db
        .query_row(
            "SELECT recording_path, recording_sha256, recording_ms FROM calls WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("call 1");
    (PathBuf::from(path.expect("recording path logged")), sha, ms)
}

fn call_events(db: &rusqlite::Connection, kind: &str) -> Vec<String> {
    db.prepare("SELECT detail FROM call_events WHERE call = 1 AND kind = ?1 ORDER BY id")
        .expect("query")
        .query_map([kind], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn a_call_with_audio_is_recorded_on_a_true_timeline_and_its_digest_logged() {
    let expected = pcap_audio();
    let mut gw = Gateway::start(&[]);
    let out = gw.sipp(
        "media_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "9000"],
    );
    assert_sipp_ok(&out, "call with audio");
    gw.stop();
    let db = gw.db();
    let (path, sha, ms) = logged_recording(&db);
    assert!(path.starts_with(gw.recordings()), "{}", path.display());
    let bytes = std::fs::read(&path).expect("recording file");
    assert_eq!(sha, Some(sha256_hex(&bytes)), "logged digest is the file's");
    let (left, right) = read_stereo(&path);
    assert_eq!(right.len(), left.len());
    assert_eq!(ms, Some(left.len() as i64 / 8));
    // The call lasted ~9 s from the ACK; the recording starts at the first RTP packet.
    assert!(
        (8_500..10_500).contains(&(left.len() / 8)),
        "{} ms",
        left.len() / 8
    );
    // Every one of the caller's 56 640 samples is in the left channel, in place and in order:
    // placed by RTP timestamp, nothing squeezed out or stretched.
    let at = find(&left, &expected).expect("the caller's audio, sample for sample, on the left");
    assert!(at < 8000, "caller audio starts {} ms into the file", at / 8);
    assert_eq!(
        call_events(&db, "recording_started").len(),
        1,
        "the moment of 0:00 is in the timeline"
    );
    // The right channel holds what the caller heard: the welcome prompt, as the phone decodes
    // it after A-law, sample for sample.
    let prompt: Vec<i16> = hound::WavReader::open(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplans/prompts/id/welcome.wav"),
    )
    .expect("prompt")
    .samples::<i16>()
    .map(|s| s.expect("sample"))
    .map(|s| {
        let codec = siaga_media::g711::Codec::Pcma;
        codec.decode_sample(codec.encode_sample(s))
    })
    .collect();
    let heard = find(&right, &prompt).expect("the welcome prompt, sample for sample, on the right");
    assert!(heard < 8000, "prompt starts {} ms into the file", heard / 8);
    // Nine seconds of speech: not a single false digit from the in-band detector.
    assert!(
        call_events(&db, "dtmf").is_empty(),
        "speech produced no digit"
    );
}

#[test]
fn in_band_tones_become_one_digit_each() {
    let mut gw = Gateway::start(&[]);
    let out = common::sipp_caller_with_voice(gw.udp, "media_inband.xml", &["-s", "112", "-m", "1"]);
    assert_sipp_ok(&out, "call with in-band DTMF tones");
    gw.stop();
    let db = gw.db();
    assert_eq!(
        call_events(&db, "dtmf"),
        ["1 via inband", "5 via inband", "9 via inband"],
        "{}",
        gw.log()
    );
}

#[test]
fn rfc4733_key_presses_become_one_digit_each() {
    let mut gw = Gateway::start(&[]);
    let out = gw.sipp("media_dtmf.xml", false, &["-s", "112", "-m", "1"]);
    assert_sipp_ok(&out, "call with RFC 4733 digits");
    gw.stop();
    let db = gw.db();
    let digits: Vec<String> = db
        .prepare(
            "SELECT detail FROM call_events WHERE call = 1 AND detail LIKE '% via %' ORDER BY id",
        )
        .expect("query")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        digits,
        [
            "1 via rfc4733",
            "2 via rfc4733",
            "3 via rfc4733",
            "# via rfc4733"
        ],
        "{}",
        gw.log()
    );
}

#[test]
fn a_gateway_killed_mid_call_leaves_a_playable_recording_missing_at_most_a_second() {
    let expected = pcap_audio();
    let gw = Gateway::start(&[]);
    // SIPp itself runs `kill -9` after 4 s of caller audio: the kill lands at a known point
    // of the call with no sleeping here.
    let pid = gw.pid().to_string();
    let out = gw.sipp(
        "media_crash.xml",
        false,
        &["-s", "112", "-m", "1", "-set", "gwpid", &pid],
    );
    assert_sipp_ok(&out, "call during which the gateway is killed");
    let dir = gw.kill9();
    // Restart on the same directory: start-up recovers the interrupted recording.
    let mut gw = Gateway::start_in(dir, &[]);
    // Serving (and so listening for SIGTERM) once it answers OPTIONS: a SIGTERM right after
    // the "listening" lines can come before the handler is installed.
    assert_sipp_ok(
        &gw.sipp("uac_options.xml", false, &["-m", "1"]),
        "OPTIONS after restart",
    );
    gw.stop();
    let db = gw.db();
    let (path, sha, ms) = logged_recording(&db);
    let bytes = std::fs::read(&path).expect("recording file");
    assert_eq!(sha, Some(sha256_hex(&bytes)));
    let (left, _) = read_stereo(&path);
    let kept_ms = left.len() / 8;
    eprintln!("killed after ~4000 ms of caller audio: {kept_ms} ms kept");
    assert_eq!(ms, Some(kept_ms as i64));
    // Killed ~4 s after the audio started (which is when the recording starts, give or
    // take the ACK): at most the last second is lost.
    assert!((3_000..=4_500).contains(&kept_ms), "{kept_ms} ms kept");
    // What was kept is the caller's audio, sample for sample.
    let kept = &expected[..16_000];
    assert!(
        find(&left, kept).is_some(),
        "the first 2 s of caller audio, in place"
    );
    assert_eq!(
        call_events(&db, "recording_recovered").len(),
        1,
        "{}",
        gw.log()
    );
}
