//! The media manager against real loopback sockets, without the engine: the tests issue
//! `MediaCommand`s themselves, act as the caller's (or agency's) RTP peer, and read the
//! call log and the recording afterwards. Real time, no sleeps: every wait is for a packet,
//! an event or a thread, with a deadline.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use siaga_engine::ids::{CallRef, LegId};
use siaga_engine::io::{MediaCommand, MediaEvent, MediaSession, PlaybackId};
use siaga_media::sdp::Direction;
use siaga_media::wav::{DATA_SIZE_OFFSET, HEADER_LEN, PcmFormat, RIFF_SIZE_OFFSET};
use siaga_media::{
    Codec, PayloadType, Prompt, RtpHeader, RtpTimestamp, RtpView, SequenceNumber, Ssrc,
};

use super::recorder::{self, RecorderThread, RecordingId};
use super::{MediaEventOut, MediaManager};
use crate::calllog::{CallLog, LogWriter};
use crate::config::{PortRange, Settings};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const CALL: CallRef = CallRef(1);
const MS: Duration = Duration::from_millis(1);

struct Harness {
    dir: tempfile::TempDir,
    manager: MediaManager,
    events: mpsc::Receiver<MediaEventOut>,
    calllog: CallLog,
    _log_writer: LogWriter,
    /// What the call log listed as unfinished at start (handed to the manager).
    unfinished: Vec<crate::calllog::UnfinishedRecording>,
}

struct Finished {
    dir: tempfile::TempDir,
    db: rusqlite::Connection,
}

fn settings(dir: &Path, ports: (u16, u16), media_timeout: Duration) -> Settings {
    Settings {
        db: dir.join("siaga.db"),
        recordings: dir.join("recordings"),
        rtp_ports: PortRange {
            first: ports.0,
            last: ports.1,
        },
        media_timeout,
        ..Settings::default()
    }
}

impl Harness {
    fn new(ports: (u16, u16)) -> Harness {
        Self::with(
            tempfile::tempdir().expect("temp dir"),
            ports,
            Duration::from_secs(30),
        )
    }

    fn with(dir: tempfile::TempDir, ports: (u16, u16), media_timeout: Duration) -> Harness {
        Self::with_settings(dir, |d| settings(d, ports, media_timeout))
    }

    fn with_settings(dir: tempfile::TempDir, make: impl FnOnce(&Path) -> Settings) -> Harness {
        let settings = make(dir.path());
        // A row for call 1, so the recording's path and digest have somewhere to go.
        {
            let conn = crate::calllog::open(&settings.db).expect("db");
            conn.execute(
                "INSERT OR IGNORE INTO calls (id, call_id, started_at, ended_at, kind, dialled, source, transport)
                 VALUES (1, 'test-call', 0, 1, 'emergency', '112', '127.0.0.1:5060', 'udp')",
                [],
            )
            .expect("insert call");
        }
        let (calllog, log_writer, recovery) = CallLog::start(&settings.db).expect("call log");
        let (tx, events) = mpsc::channel(1024);
        let unfinished = recovery.unfinished;
        let manager = MediaManager::new(&settings, tx, calllog.clone(), unfinished.clone());
        Harness {
            dir,
            manager,
            events,
            calllog,
            _log_writer: log_writer,
            unfinished,
        }
    }

    /// A phone (a peer socket) and the caller's leg started towards it, PCMA in 20 ms
    /// packets; returns the phone and the leg's local address.
    async fn caller_on_pcma(&mut self) -> (Arc<UdpSocket>, SocketAddr) {
        let phone = peer().await;
        let local = self.allocate(LegId::Caller);
        self.start(
            LegId::Caller,
            session(phone.local_addr().ok(), Codec::Pcma, 20),
        );
        (phone, local)
    }

    fn allocate(&mut self, leg: LegId) -> SocketAddr {
        let reply = self
            .manager
            .handle(MediaCommand::Allocate {
                call: CALL,
                leg,
                local_ip: LOCALHOST,
                peer_ip: LOCALHOST,
            })
            .expect("Allocate is answered at once");
        match reply.event {
            MediaEvent::Allocated { local } => local,
            other => panic!("allocation failed: {other:?}"),
        }
    }

    fn start(&mut self, leg: LegId, session: MediaSession) {
        assert!(
            self.manager
                .handle(MediaCommand::Start {
                    call: CALL,
                    leg,
                    session
                })
                .is_none()
        );
    }

    /// A caller and an agency leg, both PCMA 20 ms, bridged: the caller's and the agent's
    /// sockets, and the gateway's port for the agency.
    async fn bridged_pcma(&mut self) -> (Arc<UdpSocket>, Arc<UdpSocket>, SocketAddr) {
        let (caller, agent, _, agent_port) = self.bridged_pcma_ports().await;
        (caller, agent, agent_port)
    }

    /// As [`Harness::bridged_pcma`], with the gateway's ports for the caller and the agency.
    async fn bridged_pcma_ports(
        &mut self,
    ) -> (Arc<UdpSocket>, Arc<UdpSocket>, SocketAddr, SocketAddr) {
        let caller = peer().await;
        let agent = peer().await;
        let caller_port = self.allocate(LegId::Caller);
        let agent_port = self.allocate(LegId::Agency(1));
        for (leg, socket) in [(LegId::Caller, &caller), (LegId::Agency(1), &agent)] {
            self.start(leg, session(socket.local_addr().ok(), Codec::Pcma, 20));
        }
        self.manager.handle(MediaCommand::Bridge {
            call: CALL,
            agency: LegId::Agency(1),
        });
        (caller, agent, caller_port, agent_port)
    }

    /// Releases the legs (as the engine does when a call ends), in this order.
    fn release(&mut self, legs: &[LegId]) {
        for &leg in legs {
            self.manager
                .handle(MediaCommand::Release { call: CALL, leg });
        }
    }

    /// Releases the caller's leg and takes the voice totals it reports.
    async fn release_caller_for_its_voice_totals(&mut self) -> siaga_media::VoiceTotals {
        self.release(&[LegId::Caller]);
        self.events_for(500 * MS)
            .await
            .into_iter()
            .find_map(|e| match e {
                MediaEvent::VoiceActivity(v) => Some(v),
                _ => None,
            })
            .expect("the caller's voice totals at release")
    }

    fn play(&mut self, leg: LegId, playback: u64, prompt: &Path) -> Option<MediaEvent> {
        self.manager
            .handle(MediaCommand::Play {
                call: CALL,
                leg,
                playback: PlaybackId(playback),
                prompt: prompt.to_path_buf(),
            })
            .map(|r| r.event)
    }

    async fn event(&mut self, within: Duration) -> Option<MediaEvent> {
        tokio::time::timeout(within, self.events.recv())
            .await
            .ok()
            .flatten()
            .map(|e| e.event)
    }

    /// Every event until `within` has passed.
    async fn events_for(&mut self, within: Duration) -> Vec<MediaEvent> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::new();
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            out.push(e.event);
        }
        out
    }

    /// Shuts the manager down (finalising recordings) and opens the committed call log.
    async fn finish(mut self) -> Finished {
        self.manager.shutdown().await;
        assert!(
            self.calllog.barrier(Duration::from_secs(10)),
            "call log committed"
        );
        let db = rusqlite::Connection::open(self.dir.path().join("siaga.db")).expect("db");
        Finished { dir: self.dir, db }
    }
}

impl Finished {
    /// `(call, detail)` of call and gateway events of `kind`.
    fn events(&self, kind: &str) -> Vec<(Option<i64>, String)> {
        let mut stmt = self
            .db
            .prepare(
                "SELECT call, detail FROM call_events WHERE kind = ?1
                 UNION ALL SELECT NULL, detail FROM gateway_events WHERE kind = ?1",
            )
            .expect("query");
        stmt.query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    fn recording(&self) -> (Option<String>, Option<String>, Option<i64>) {
        self.db
            .query_row(
                "SELECT recording_path, recording_sha256, recording_ms FROM calls WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("call row")
    }
}

fn session(remote: Option<SocketAddr>, codec: Codec, ptime_ms: u64) -> MediaSession {
    MediaSession {
        remote,
        codec,
        payload_type: codec.static_payload_type(),
        dtmf_payload_type: Some(PayloadType(101)),
        ptime: Duration::from_millis(ptime_ms),
        direction: Direction::SendRecv,
    }
}

async fn peer() -> Arc<UdpSocket> {
    Arc::new(
        UdpSocket::bind((LOCALHOST, 0))
            .await
            .expect("bind peer socket"),
    )
}

/// One received RTP packet with its arrival time.
struct Received {
    at: Instant,
    marker: bool,
    payload_type: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: Vec<u8>,
}

async fn recv_rtp(socket: &UdpSocket, within: Duration) -> Option<Received> {
    let mut buf = [0u8; 2048];
    let (len, _) = tokio::time::timeout(within, socket.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    let at = Instant::now();
    let view = RtpView::parse(&buf[..len]).expect("the gateway sends RTP");
    Some(Received {
        at,
        marker: view.marker,
        payload_type: view.payload_type.0,
        seq: view.sequence.0,
        ts: view.timestamp.0,
        ssrc: view.ssrc.0,
        payload: view.payload.to_vec(),
    })
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 12 + payload.len()];
    RtpHeader {
        marker,
        payload_type: PayloadType(pt),
        sequence: SequenceNumber(seq),
        timestamp: RtpTimestamp(ts),
        ssrc: Ssrc(ssrc),
    }
    .write(payload, &mut out)
    .expect("fits");
    out
}

fn prompt_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dialplans/prompts/en")
        .join(name)
}

fn prompt_samples(path: &Path) -> Vec<i16> {
    let bytes = std::fs::read(path).expect("prompt file");
    Prompt::from_wav(&bytes)
        .expect("valid prompt")
        .samples()
        .to_vec()
}

/// What G.711 makes of `samples`.
fn through(codec: Codec, samples: &[i16]) -> Vec<i16> {
    samples
        .iter()
        .map(|&s| codec.decode_sample(codec.encode_sample(s)))
        .collect()
}

fn sine(freq: f32, amplitude: f32, from_sample: usize, len: usize) -> Vec<i16> {
    (from_sample..from_sample + len)
        .map(|i| {
            let t = i as f32 / 8000.0;
            (amplitude * (2.0 * std::f32::consts::PI * freq * t).sin()) as i16
        })
        .collect()
}

fn dtmf(key: char, from_sample: usize, len: usize) -> Vec<i16> {
    let (low, high) = match key {
        '3' => (697.0, 1477.0),
        '5' => (770.0, 1336.0),
        _ => unreachable!("only the keys the tests press"),
    };
    let a = sine(low, 7000.0, from_sample, len);
    let b = sine(high, 7000.0, from_sample, len);
    a.iter().zip(&b).map(|(x, y)| x + y).collect()
}

fn rms(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len().max(1) as f64).sqrt()
}

/// `(left, right)` of a stereo recording.
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
    let left = all.iter().step_by(2).copied().collect();
    let right = all.iter().skip(1).step_by(2).copied().collect();
    (left, right)
}

/// First and one-past-last index whose magnitude exceeds `threshold`.
fn loud_span(samples: &[i16], threshold: i16) -> Option<(usize, usize)> {
    let first = samples
        .iter()
        .position(|s| s.unsigned_abs() > threshold as u16)?;
    let last = samples
        .iter()
        .rposition(|s| s.unsigned_abs() > threshold as u16)?;
    Some((first, last + 1))
}

fn contains(haystack: &[i16], needle: &[i16]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_prompt_is_paced_numbered_marked_and_reported_finished() {
    let mut h = Harness::new((32000, 32099));
    let caller = peer().await;
    h.allocate(LegId::Caller);
    h.start(
        LegId::Caller,
        session(caller.local_addr().ok(), Codec::Pcma, 20),
    );
    let path = prompt_path("number-1.wav");
    let expected = prompt_samples(&path);
    assert!(h.play(LegId::Caller, 7, &path).is_none());

    let mut packets = Vec::new();
    let mut finished_at = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    // Until the prompt is over and five more packets (silence) have come.
    while finished_at.is_none() || packets.len() < expected.len() / 160 + 10 {
        tokio::select! {
            p = recv_rtp(&caller, Duration::from_secs(1)) => packets.push(p.expect("a packet every 20 ms")),
            e = h.event(Duration::from_secs(5)) => match e {
                Some(MediaEvent::PromptFinished { playback }) => {
                    assert_eq!(playback, PlaybackId(7));
                    assert!(finished_at.is_none(), "PromptFinished twice");
                    finished_at = Some(Instant::now());
                }
                other => panic!("unexpected event {other:?}"),
            },
            () = tokio::time::sleep_until(deadline) => panic!("prompt did not finish"),
        }
    }

    // One stream: same SSRC and payload type, sequence +1 and timestamp +160 per packet.
    for pair in packets.windows(2) {
        assert_eq!(pair[1].ssrc, pair[0].ssrc);
        assert_eq!(pair[1].payload_type, 8);
        assert_eq!(pair[1].seq, pair[0].seq.wrapping_add(1));
        assert_eq!(pair[1].ts, pair[0].ts.wrapping_add(160));
        assert_eq!(pair[1].payload.len(), 160);
    }
    // The marker bit on the prompt's first packet only, and the prompt's audio from there.
    let markers: Vec<usize> = (0..packets.len()).filter(|&i| packets[i].marker).collect();
    assert_eq!(markers.len(), 1, "marker on exactly one packet");
    let start = markers[0];
    let sent: Vec<u8> = packets[start..]
        .iter()
        .flat_map(|p| p.payload.clone())
        .collect();
    let mut encoded = vec![0u8; expected.len()];
    Codec::Pcma.encode(&expected, &mut encoded);
    assert_eq!(
        &sent[..encoded.len()],
        &encoded[..],
        "the prompt, byte for byte"
    );
    let prompt_packets = expected.len().div_ceil(160);
    assert!(
        sent[prompt_packets * 160..].iter().all(|&b| b == 0xD5),
        "A-law silence after the prompt"
    );
    // Paced, not burst: packets arrive at the prompt's pace, and the end is reported once the
    // last prompt packet is out.
    let span = packets[start + prompt_packets - 1].at - packets[start].at;
    let nominal = Duration::from_millis(20 * (prompt_packets as u64 - 1));
    assert!(span + 120 * MS >= nominal, "{span:?} for {nominal:?}");
    let finished_at = finished_at.expect("finished");
    assert!(finished_at + 30 * MS >= packets[start + prompt_packets - 1].at);

    // Barge-in: a stopped prompt reports nothing, and the stream goes on.
    assert!(h.play(LegId::Caller, 8, &path).is_none());
    let p = recv_rtp(&caller, Duration::from_secs(1))
        .await
        .expect("packet");
    h.manager.handle(MediaCommand::StopPlayback {
        call: CALL,
        leg: LegId::Caller,
        playback: PlaybackId(8),
    });
    let events = h.events_for(Duration::from_millis(800)).await;
    assert!(events.is_empty(), "{events:?}");
    let later = recv_rtp(&caller, Duration::from_secs(1))
        .await
        .expect("packet");
    assert!(later.seq.wrapping_sub(p.seq) < 100);
    assert!(later.payload.iter().all(|&b| b == 0xD5));
    h.finish().await;
}

#[tokio::test]
async fn caller_audio_latches_gives_digits_and_is_recorded_on_a_true_timeline() {
    let mut h = Harness::new((32100, 32199));
    let sdp_peer = peer().await; // what SDP says; the phone really sends from elsewhere (NAT)
    let phone = peer().await;
    let local = h.allocate(LegId::Caller);
    h.start(
        LegId::Caller,
        session(sdp_peer.local_addr().ok(), Codec::Pcma, 20),
    );
    let prompt = prompt_path("number-1.wav");
    assert!(h.play(LegId::Caller, 1, &prompt).is_none());
    // Before anything arrives we send where SDP said.
    assert!(recv_rtp(&sdp_peer, Duration::from_secs(1)).await.is_some());

    // 1.5 s of caller audio in 20 ms packets: a quiet 300 Hz hum, in-band '5' at 400 ms,
    // '3' both in-band and as RFC 4733 events at 900 ms (as many phones do), RFC 4733 '7'
    // at 1200 ms, and packets 30–34 lost (100 ms of silence, which must stay in the file).
    let sender = {
        let phone = phone.clone();
        tokio::spawn(async move {
            let ssrc = 0x1234_5678;
            let mut seq = 1000u16;
            let mut pace = tokio::time::interval(20 * MS);
            for k in 0..75usize {
                pace.tick().await;
                let ts = 50_000 + 160 * k as u32;
                let pcm = match k {
                    20..26 => dtmf('5', 160 * (k - 20), 160),
                    45..51 => dtmf('3', 160 * (k - 45), 160),
                    _ => sine(300.0, 1000.0, 160 * k, 160),
                };
                let mut payload = vec![0u8; 160];
                Codec::Pcma.encode(&pcm, &mut payload);
                seq = seq.wrapping_add(1);
                if !(30..35).contains(&k) {
                    let _ = phone
                        .send_to(&rtp(8, seq, ts, ssrc, k == 0, &payload), local)
                        .await;
                }
                for (key, first) in [(3u8, 45usize), (7, 60)] {
                    if (first..first + 6).contains(&k) {
                        let end = k == first + 5;
                        let duration = (160 * (k - first + 1)) as u16;
                        let event = [
                            key,
                            if end { 0x8A } else { 0x0A },
                            (duration >> 8) as u8,
                            duration as u8,
                        ];
                        let repeats = if end { 3 } else { 1 };
                        for _ in 0..repeats {
                            seq = seq.wrapping_add(1);
                            let ev_ts = 50_000 + 160 * first as u32;
                            let _ = phone
                                .send_to(&rtp(101, seq, ev_ts, ssrc, k == first, &event), local)
                                .await;
                        }
                    }
                }
            }
        })
    };
    // Symmetric RTP: once the phone's packets arrive, our stream follows them.
    assert!(
        recv_rtp(&phone, Duration::from_secs(1)).await.is_some(),
        "latched onto the real source"
    );
    sender.await.expect("sender");
    let events = h.events_for(Duration::from_millis(300)).await;
    let digits: Vec<(char, &str)> = events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Digit { digit, source } => Some((*digit, *source)),
            _ => None,
        })
        .collect();
    assert_eq!(
        events
            .iter()
            .filter(|e| **e == MediaEvent::FirstPacket)
            .count(),
        1
    );
    assert!(events.contains(&MediaEvent::PromptFinished {
        playback: PlaybackId(1)
    }));
    assert_eq!(digits.len(), 3, "{digits:?}");
    assert_eq!(digits[0], ('5', "inband"));
    assert_eq!(
        digits[1].0, '3',
        "one digit for a press signalled both ways"
    );
    assert_eq!(digits[2], ('7', "rfc4733"));

    // A re-INVITE moves the caller: we switch to the new address at once.
    let moved = peer().await;
    h.start(
        LegId::Caller,
        session(moved.local_addr().ok(), Codec::Pcma, 20),
    );
    assert!(
        recv_rtp(&moved, Duration::from_secs(1)).await.is_some(),
        "re-INVITE switched the remote"
    );

    h.release(&[LegId::Caller]);
    let done = h.finish().await;
    let (path, sha, ms) = done.recording();
    let path = PathBuf::from(path.expect("recording path in the call log"));
    assert!(path.starts_with(done.dir.path().join("recordings")));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    assert!(
        name.starts_with("call-1-") && name.ends_with(".wav"),
        "{name}"
    );
    let bytes = std::fs::read(&path).expect("recording");
    assert_eq!(
        sha.as_deref(),
        Some(recorder::sha256_file(&path).expect("hash").as_str())
    );
    assert_eq!(sha.map(|s| s.len()), Some(64));
    let (left, right) = read_stereo(&path);
    assert_eq!(ms, Some(left.len() as i64 / 8));
    assert_eq!(bytes.len(), HEADER_LEN + 4 * left.len());
    // Left: the caller's 1.5 s, the lost 100 ms kept as silence, not squeezed out.
    let (first, end) = loud_span(&left, 200).expect("caller audio in the left channel");
    let span_ms = (end - first) as f64 / 8.0;
    assert!(
        (span_ms - 1500.0).abs() <= 60.0,
        "left channel holds {span_ms} ms of 1500"
    );
    let gap = &left[first + 30 * 160 + 40..first + 35 * 160 - 40];
    assert!(
        gap.iter().all(|s| s.unsigned_abs() <= 8),
        "lost packets are silence in place"
    );
    // Right: what the caller heard, the prompt exactly.
    assert!(
        contains(&right, &through(Codec::Pcma, &prompt_samples(&prompt))),
        "prompt on the right channel"
    );
    assert!(done.events("recording_started").len() == 1);
    assert!(done.events("recording_failed").is_empty());
}

#[tokio::test]
async fn media_timeout_is_reported_once_per_silence() {
    let dir = tempfile::tempdir().expect("dir");
    let mut h = Harness::with(dir, (32200, 32299), Duration::from_millis(300));
    let (phone, local) = h.caller_on_pcma().await;
    let events = h.events_for(Duration::from_millis(1000)).await;
    assert!(
        matches!(events.as_slice(), [MediaEvent::Timeout { silent_for }] if *silent_for >= Duration::from_millis(300)),
        "{events:?}"
    );
    // Media comes back, then stops again: a new episode, a new report; FirstPacket only once.
    let payload = [0xD5u8; 160];
    phone
        .send_to(&rtp(8, 1, 160, 9, true, &payload), local)
        .await
        .expect("send");
    assert_eq!(
        h.event(Duration::from_secs(1)).await,
        Some(MediaEvent::FirstPacket)
    );
    phone
        .send_to(&rtp(8, 2, 320, 9, false, &payload), local)
        .await
        .expect("send");
    let events = h.events_for(Duration::from_millis(800)).await;
    assert!(
        matches!(events.as_slice(), [MediaEvent::Timeout { .. }]),
        "{events:?}"
    );
    h.finish().await;
}

#[tokio::test]
async fn bridged_legs_relay_audio_across_codecs_and_packet_times() {
    let mut h = Harness::new((32300, 32399));
    let caller = peer().await;
    let agent = peer().await;
    let caller_port = h.allocate(LegId::Caller);
    let agent_port = h.allocate(LegId::Agency(1));
    h.start(
        LegId::Caller,
        session(caller.local_addr().ok(), Codec::Pcma, 30),
    );
    h.start(
        LegId::Agency(1),
        session(agent.local_addr().ok(), Codec::Pcmu, 20),
    );
    h.manager.handle(MediaCommand::Bridge {
        call: CALL,
        agency: LegId::Agency(1),
    });

    // The agent speaks (µ-law, 20 ms) and so does the caller (A-law, 30 ms), for 1 s.
    let talk = |socket: Arc<UdpSocket>, to: SocketAddr, codec: Codec, ptime: usize, freq: f32| {
        tokio::spawn(async move {
            let n = 8 * ptime;
            let mut pace = tokio::time::interval(Duration::from_millis(ptime as u64));
            for k in 0..1000 / ptime {
                pace.tick().await;
                let pcm = sine(freq, 8000.0, n * k, n);
                let mut payload = vec![0u8; n];
                codec.encode(&pcm, &mut payload);
                let pt = codec.static_payload_type().0;
                let _ = socket
                    .send_to(&rtp(pt, k as u16, (n * k) as u32, 77, false, &payload), to)
                    .await;
            }
        })
    };
    let agent_talks = talk(agent.clone(), agent_port, Codec::Pcmu, 20, 1000.0);
    let caller_talks = talk(caller.clone(), caller_port, Codec::Pcma, 30, 500.0);

    let mut to_caller = Vec::new();
    let mut to_agent = Vec::new();
    while to_caller.len() < 40 || to_agent.len() < 60 {
        tokio::select! {
            p = recv_rtp(&caller, Duration::from_secs(1)) => to_caller.push(p.expect("caller gets a packet every 30 ms")),
            p = recv_rtp(&agent, Duration::from_secs(1)) => to_agent.push(p.expect("agent gets a packet every 20 ms")),
        }
    }
    agent_talks.await.expect("agent");
    caller_talks.await.expect("caller");
    for (packets, pt, samples, codec) in [
        (&to_caller, 8, 240, Codec::Pcma),
        (&to_agent, 0, 160, Codec::Pcmu),
    ] {
        for pair in packets.windows(2) {
            assert_eq!(pair[1].payload_type, pt);
            assert_eq!(pair[1].ssrc, pair[0].ssrc);
            assert_eq!(pair[1].seq, pair[0].seq.wrapping_add(1));
            assert_eq!(pair[1].ts, pair[0].ts.wrapping_add(samples));
            assert_eq!(pair[1].payload.len(), samples as usize);
        }
        let loud = packets
            .iter()
            .filter(|p| {
                let mut pcm = vec![0i16; p.payload.len()];
                codec.decode(&p.payload, &mut pcm);
                rms(&pcm) > 3000.0
            })
            .count();
        assert!(
            loud * 10 >= packets.len() * 6,
            "{loud} of {} packets carry the other side",
            packets.len()
        );
    }
    h.release(&[LegId::Agency(1), LegId::Caller]);
    let done = h.finish().await;
    let (path, _, _) = done.recording();
    let (left, right) = read_stereo(Path::new(&path.expect("recording")));
    // Both voices are in the file: the caller's on the left, the agent's (as the caller
    // heard it) on the right, about a second each.
    for (channel, name) in [(&left, "left"), (&right, "right")] {
        let loud = channel.chunks(80).filter(|c| rms(c) > 3000.0).count();
        assert!(
            (80..=110).contains(&loud),
            "{name}: {loud} loud 10 ms blocks"
        );
    }
}

#[tokio::test]
async fn a_same_law_bridge_passes_the_codes_through_unchanged() {
    let mut h = Harness::new((32400, 32499));
    let (caller, agent, agent_port) = h.bridged_pcma().await;

    // The agent sends 0.6 s of a counting pattern of codes.
    let silence = Codec::Pcma.silence();
    let sent: Vec<u8> = (0..30 * 160).map(|i| (i % 199) as u8).collect();
    let agent_talks = {
        let (agent, sent) = (agent.clone(), sent.clone());
        tokio::spawn(async move {
            let mut pace = tokio::time::interval(Duration::from_millis(20));
            for (k, payload) in sent.chunks(160).enumerate() {
                pace.tick().await;
                let packet = rtp(8, k as u16, (160 * k) as u32, 78, false, payload);
                let _ = agent.send_to(&packet, agent_port).await;
            }
        })
    };
    let mut heard = Vec::new();
    while heard.len() < sent.len() + 20 * 160 {
        let packet = recv_rtp(&caller, Duration::from_secs(1))
            .await
            .expect("the caller gets a packet every 20 ms");
        heard.extend_from_slice(&packet.payload);
    }
    agent_talks.await.expect("agent");
    // The pattern never holds the silence code, so the relayed codes are the rest: should the
    // agent's pacing stall, the play-out buffer pauses with silence but loses nothing.
    let relayed: Vec<u8> = heard.into_iter().filter(|&c| c != silence).collect();
    assert!(!sent.contains(&silence));
    assert!(relayed == sent, "the codes changed on the way");
    h.release(&[LegId::Agency(1), LegId::Caller]);
    let done = h.finish().await;
    let (path, _, _) = done.recording();
    let (_, right) = read_stereo(Path::new(&path.expect("recording")));
    // What the caller heard is recorded as it decodes.
    let mut decoded = vec![0i16; sent.len()];
    Codec::Pcma.decode(&sent, &mut decoded);
    assert!(
        contains(&right, &decoded[..1600]),
        "the relayed audio is in the recording"
    );
}

#[tokio::test]
async fn relayed_packets_keep_the_senders_timing_and_none_is_lost_at_the_end() {
    let mut h = Harness::new((32500, 32599));
    let (caller, agent, caller_port, _) = h.bridged_pcma_ports().await;
    let silence = Codec::Pcma.silence();
    // 40 packets of distinct codes (never the silence code); packet 20 is "lost" on the way
    // in, so the sender's timestamps jump by two packets there.
    let sent: Vec<(u32, Vec<u8>)> = (0..40u32)
        .filter(|&k| k != 20)
        .map(|k| (160 * k, vec![(k % 100 + 1) as u8; 160]))
        .collect();
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    for (n, (ts, payload)) in sent.iter().enumerate() {
        pace.tick().await;
        let packet = rtp(8, n as u16, 9000 + ts, 4242, n == 0, payload);
        caller.send_to(&packet, caller_port).await.expect("send");
    }
    // The call ends right after the caller's last packet.
    h.release(&[LegId::Caller, LegId::Agency(1)]);
    let mut heard = Vec::new();
    while let Some(packet) = recv_rtp(&agent, Duration::from_millis(500)).await {
        heard.push(packet);
    }
    let relayed: Vec<&Received> = heard.iter().filter(|p| p.payload[0] != silence).collect();
    let payloads: Vec<Vec<u8>> = relayed.iter().map(|p| p.payload.clone()).collect();
    let expected: Vec<Vec<u8>> = sent.iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(
        payloads, expected,
        "every caller packet reaches the agency, unchanged, in order"
    );
    // The agency sees the caller's timing (the gap included) inside the gateway's own stream:
    // one SSRC, sequence numbers without a hole.
    for (pair, sender) in relayed.windows(2).zip(sent.windows(2)) {
        assert_eq!(
            pair[1].ts.wrapping_sub(pair[0].ts),
            sender[1].0 - sender[0].0
        );
    }
    for pair in heard.windows(2) {
        assert_eq!(pair[1].ssrc, pair[0].ssrc);
        assert_eq!(pair[1].seq, pair[0].seq.wrapping_add(1));
        assert!(
            pair[1].ts.wrapping_sub(pair[0].ts) < 1 << 31,
            "timestamps never go back"
        );
    }
    h.finish().await;
}

#[tokio::test]
async fn a_third_party_sending_to_an_agency_leg_is_neither_relayed_nor_answered() {
    let mut h = Harness::new((32500, 32599));
    let (caller, agent, agent_port) = h.bridged_pcma().await;
    let intruder = Arc::new(
        UdpSocket::bind(("127.0.0.2", 0))
            .await
            .expect("127.0.0.2 is loopback on Linux"),
    );
    let silence = Codec::Pcma.silence();
    let talk = |from: Arc<UdpSocket>, packets: usize, ssrc: u32| {
        tokio::spawn(async move {
            let mut pace = tokio::time::interval(Duration::from_millis(20));
            let payload: Vec<u8> = (0..160).map(|i| 0x2A + (i % 7) as u8).collect();
            for k in 0..packets {
                pace.tick().await;
                let packet = rtp(8, k as u16, (160 * k) as u32, ssrc, false, &payload);
                let _ = from.send_to(&packet, agent_port).await;
            }
        })
    };
    // The third party talks first, for 0.6 s: the caller hears only our silence.
    let intrusion = talk(intruder.clone(), 30, 0xBAD);
    let mut heard = Vec::new();
    for _ in 0..40 {
        let packet = recv_rtp(&caller, Duration::from_secs(1))
            .await
            .expect("the caller gets a packet every 20 ms");
        heard.extend(packet.payload.into_iter().filter(|&c| c != silence));
    }
    intrusion.await.expect("intruder");
    assert!(
        heard.is_empty(),
        "the third party's audio reached the caller"
    );
    assert!(
        recv_rtp(&intruder, Duration::from_millis(300))
            .await
            .is_none(),
        "the gateway answered the third party"
    );
    // Then the agency speaks: it is latched and relayed.
    let agency_talks = talk(agent.clone(), 20, 0xA6E);
    while heard.len() < 10 * 160 {
        let packet = recv_rtp(&caller, Duration::from_secs(1))
            .await
            .expect("the caller gets a packet every 20 ms");
        heard.extend(packet.payload.into_iter().filter(|&c| c != silence));
    }
    agency_talks.await.expect("agency");
    h.release(&[LegId::Agency(1), LegId::Caller]);
    let done = h.finish().await;
    let refused = done.events("rtp_refused");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].1.starts_with("leg B1: RTP from 127.0.0.2:"),
        "{refused:?}"
    );
    let total = done.events("rtp_refused_total");
    assert_eq!(total.len(), 1, "{total:?}");
    assert!(
        total[0].1.starts_with("leg B1: 30 RTP packet(s) refused"),
        "{total:?}"
    );
    let latched = done.events("rtp_latched");
    let agency = format!("leg B1: RTP from {}", agent.local_addr().expect("addr"));
    assert!(
        latched.iter().any(|(_, d)| d.starts_with(&agency)),
        "{latched:?}"
    );
}

#[tokio::test]
async fn ports_are_even_busy_ones_are_skipped_and_exhaustion_is_reported() {
    let mut h = Harness::new((39991, 39994));
    // 39991 is odd and never used; 39992 and 39994 are the range's ports. Take 39992.
    let busy = std::net::UdpSocket::bind((LOCALHOST, 39992)).expect("port 39992 free for the test");
    let first = h.allocate(LegId::Caller);
    assert_eq!(first.port(), 39994);
    let reply = h
        .manager
        .handle(MediaCommand::Allocate {
            call: CALL,
            leg: LegId::Agency(1),
            local_ip: LOCALHOST,
            peer_ip: LOCALHOST,
        })
        .expect("answered");
    assert!(
        matches!(reply.event, MediaEvent::AllocationFailed { .. }),
        "{:?}",
        reply.event
    );
    drop(busy);
    assert_eq!(h.allocate(LegId::Agency(2)).port(), 39992);
    h.finish().await;
}

#[tokio::test]
async fn ports_are_drawn_at_random_so_the_next_one_cannot_be_guessed() {
    let mut h = Harness::new((33000, 33999));
    let ports: Vec<u16> = (1..=20)
        .map(|n| h.allocate(LegId::Agency(n)).port())
        .collect();
    assert!(
        ports
            .iter()
            .all(|p| p % 2 == 0 && (33000..=33999).contains(p)),
        "{ports:?}"
    );
    let mut distinct = ports.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), ports.len(), "{ports:?}");
    // In order, each port would be the previous one + 2. Drawn from 500, that happens by
    // chance about once in 250 pairs.
    let in_order = ports.windows(2).filter(|w| w[1] == w[0] + 2).count();
    assert!(in_order <= 3, "ports follow each other: {ports:?}");
    h.finish().await;
}

#[tokio::test]
async fn a_bad_prompt_is_logged_and_finishes_at_once() {
    let mut h = Harness::new((32400, 32499));
    h.allocate(LegId::Caller);
    let not_wav = h.dir.path().join("not-a-prompt.wav");
    std::fs::write(&not_wav, b"this is not audio").expect("write");
    let stereo = h.dir.path().join("stereo.wav");
    std::fs::write(&stereo, PcmFormat::STEREO_8K.header(0)).expect("write");
    for (i, path) in [h.dir.path().join("missing.wav"), not_wav, stereo]
        .iter()
        .enumerate()
    {
        assert_eq!(
            h.play(LegId::Caller, i as u64, path),
            Some(MediaEvent::PromptFinished {
                playback: PlaybackId(i as u64)
            })
        );
    }
    // A leg that does not exist cannot stall the IVR either.
    let reply = h.manager.handle(MediaCommand::Play {
        call: CallRef(99),
        leg: LegId::Caller,
        playback: PlaybackId(5),
        prompt: prompt_path("number-1.wav"),
    });
    assert_eq!(
        reply.map(|r| r.event),
        Some(MediaEvent::PromptFinished {
            playback: PlaybackId(5)
        })
    );
    let done = h.finish().await;
    assert_eq!(done.events("prompt_failed").len(), 3);
}

#[tokio::test]
async fn a_recording_that_cannot_be_written_does_not_stop_the_call() {
    let dir = tempfile::tempdir().expect("dir");
    // The recordings "directory" is a file: nothing can be created under it.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, b"").expect("write");
    let mut h = Harness::with_settings(dir, |d| Settings {
        recordings: blocked.clone(),
        ..settings(d, (32500, 32599), Duration::from_secs(30))
    });
    let (phone, local) = h.caller_on_pcma().await;
    for k in 0..10u16 {
        phone
            .send_to(
                &rtp(8, k, 160 * u32::from(k), 5, false, &[0x55; 160]),
                local,
            )
            .await
            .expect("send");
    }
    assert_eq!(
        h.event(Duration::from_secs(1)).await,
        Some(MediaEvent::FirstPacket)
    );
    for _ in 0..5 {
        assert!(
            recv_rtp(&phone, Duration::from_secs(1)).await.is_some(),
            "the caller still hears us"
        );
    }
    h.release(&[LegId::Caller]);
    let done = h.finish().await;
    let failed = done.events("recording_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, Some(1));
    assert_eq!(done.recording().0, None);
}

/// Writes a recording of `call` through the writer thread exactly as a call would.
fn write_recording(calllog: &CallLog, call: u64, path: &Path, frames: usize) {
    let (handle, mut thread) = RecorderThread::start(calllog.clone());
    handle.open(RecordingId(1), call, path.to_path_buf());
    let samples: Vec<i16> = (0..frames * 2).map(|i| (i % 1000) as i16).collect();
    for (n, chunk) in samples.chunks(1600).enumerate() {
        handle
            .chunk(RecordingId(1), n as i64 * 800, chunk.to_vec())
            .expect("queued");
    }
    handle.close(RecordingId(1));
    handle.shutdown();
    thread.join();
}

/// `(path, sha256, ms)` of one call's recording.
fn recording_of(
    db: &rusqlite::Connection,
    call: i64,
) -> (Option<String>, Option<String>, Option<i64>) {
    db.query_row(
        "SELECT recording_path, recording_sha256, recording_ms FROM calls WHERE id = ?1",
        [call],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .expect("call row")
}

#[test]
fn the_call_log_knows_a_recording_from_its_creation() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("siaga.db");
    insert_calls(&db, &[1]);
    let (calllog, _writer, _) = CallLog::start(&db).expect("log");
    let (handle, mut thread) = RecorderThread::start(calllog.clone());
    let path = dir.path().join("recordings/live.wav");
    handle.open(RecordingId(1), 1, path.clone());
    handle
        .chunk(RecordingId(1), 0, vec![7; 1600])
        .expect("queued");
    // Waits (with a deadline) for the writer to have created the file and logged it.
    let conn = rusqlite::Connection::open(&db).expect("db");
    let deadline = Instant::now() + Duration::from_secs(5);
    let logged = loop {
        assert!(calllog.barrier(Duration::from_secs(10)));
        let logged = recording_of(&conn, 1);
        if logged.0.is_some() || Instant::now() > deadline {
            break logged;
        }
        std::thread::yield_now();
    };
    assert_eq!(
        logged,
        (Some(path.display().to_string()), None, None),
        "path at once, digest and duration not yet"
    );
    assert!(
        !Path::new(&format!("{}.recording", path.display())).exists(),
        "no marker file"
    );
    handle.close(RecordingId(1));
    handle.shutdown();
    thread.join();
    assert!(calllog.barrier(Duration::from_secs(10)));
    let (logged, sha, ms) = recording_of(&conn, 1);
    assert_eq!(logged, Some(path.display().to_string()));
    assert_eq!(sha, recorder::sha256_file(&path).ok());
    assert_eq!(ms, Some(100));
    let files: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
        .expect("list")
        .collect();
    assert_eq!(files.len(), 1, "only the recording itself: {files:?}");
}

/// Rows for `calls`, ended, without a recording.
fn insert_calls(db: &Path, calls: &[i64]) {
    let conn = crate::calllog::open(db).expect("db");
    for id in calls {
        conn.execute(
            "INSERT OR IGNORE INTO calls (id, call_id, started_at, ended_at, kind, dialled, source, transport)
             VALUES (?1, 'test-call', 0, 1, 'emergency', '112', '127.0.0.1:5060', 'udp')",
            [id],
        )
        .expect("insert call");
    }
}

#[tokio::test]
async fn recordings_left_by_a_crash_are_repaired_and_recovered_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    let day = dir.path().join("recordings/2026-11-27");
    std::fs::create_dir_all(&day).expect("dir");
    let db = dir.path().join("siaga.db");
    insert_calls(&db, &[1, 2, 3, 4, 5]);
    let (calllog, writer, _) = CallLog::start(&db).expect("log");
    let killed = day.join("call-1-20261127T100000.wav");
    let interrupted = day.join("call-2-20261127T100100.wav");
    let cut = day.join("call-3-20261127T100200.wav");
    let fine = day.join("call-4-20261127T100300.wav");
    let gone = day.join("call-5-20261127T100400.wav");
    for (call, path) in [(1, &killed), (2, &interrupted), (3, &cut), (4, &fine)] {
        write_recording(&calllog, call, path, 24_000); // 3 s
    }
    assert!(calllog.barrier(Duration::from_secs(10)));
    drop(calllog);
    writer.join();
    // Call 1: the process died before its first header patch (sizes still 0), and call 2
    // after one (header right): neither got its digest. Call 5's file was lost with it.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&killed)
        .expect("open");
    use std::os::unix::fs::FileExt;
    file.write_all_at(&0u32.to_le_bytes(), DATA_SIZE_OFFSET as u64)
        .expect("zero");
    file.write_all_at(&36u32.to_le_bytes(), RIFF_SIZE_OFFSET as u64)
        .expect("zero");
    {
        let conn = rusqlite::Connection::open(&db).expect("db");
        let finished: i64 = conn
            .query_row(
                "SELECT count(*) FROM calls WHERE recording_sha256 IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(finished, 4, "every normal end logged its digest");
        conn.execute(
            "UPDATE calls SET recording_sha256 = NULL, recording_ms = NULL WHERE id IN (1, 2)",
            [],
        )
        .expect("unfinish");
        conn.execute(
            "UPDATE calls SET recording_path = ?1 WHERE id = 5",
            [gone.display().to_string()],
        )
        .expect("gone");
    }
    // Call 3: the disk lost the tail (header claims more than is there, and half a frame).
    let cut_len = (HEADER_LEN + 4 * 16_000 + 2) as u64;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .expect("open")
        .set_len(cut_len)
        .expect("cut");
    // A prompt copied into the directory is not ours and must not be touched.
    let foreign = day.join("prompt.wav");
    std::fs::copy(prompt_path("number-1.wav"), &foreign).expect("copy");
    let foreign_before = std::fs::read(&foreign).expect("read");
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    for path in [&killed, &interrupted, &cut, &fine, &foreign] {
        std::fs::File::options()
            .write(true)
            .open(path)
            .expect("open")
            .set_modified(hour_ago)
            .expect("mtime");
    }
    let fine_before = std::fs::read(&fine).expect("read");
    let fine_logged = recording_of(&rusqlite::Connection::open(&db).expect("db"), 4);
    assert_eq!(
        hound::WavReader::open(&killed).expect("opens").duration(),
        0,
        "empty before repair"
    );

    let mut h = Harness::with(dir, (32600, 32699), Duration::from_secs(30));
    assert_eq!(
        h.unfinished
            .iter()
            .map(|u| (u.call, u.path.clone(), u.failure_logged))
            .collect::<Vec<_>>(),
        vec![
            (1, killed.clone(), false),
            (2, interrupted.clone(), false),
            (5, gone.clone(), false)
        ],
        "the call log lists the recordings that never got a digest"
    );
    h.manager.wait_for_repair();
    let done = h.finish().await;
    let repaired = done.events("recording_repaired");
    assert_eq!(repaired.len(), 2, "{repaired:?}");
    assert!(
        repaired.iter().all(|(call, _)| call.is_none()),
        "gateway events"
    );
    assert!(
        repaired
            .iter()
            .any(|(_, d)| d.contains("call-1-") && d.contains("3.0 s"))
    );
    assert!(
        repaired
            .iter()
            .any(|(_, d)| d.contains("call-3-") && d.contains("2.0 s"))
    );
    assert_eq!(
        hound::WavReader::open(&killed).expect("opens").duration(),
        24_000
    );
    assert_eq!(
        hound::WavReader::open(&cut).expect("opens").duration(),
        16_000
    );
    assert_eq!(
        std::fs::read(&fine).expect("read"),
        fine_before,
        "untouched"
    );
    assert_eq!(recording_of(&done.db, 4), fine_logged, "its row too");
    assert_eq!(std::fs::read(&foreign).expect("read"), foreign_before);
    // The interrupted calls get their recording as if they had ended normally.
    let mut recovered = done.events("recording_recovered");
    recovered.sort();
    assert_eq!(recovered.len(), 2, "{recovered:?}");
    assert_eq!(recovered[0].0, Some(1));
    assert_eq!(recovered[1].0, Some(2));
    assert!(recovered[0].1.contains("call-1-") && recovered[0].1.contains("3.0 s kept"));
    for (call, path) in [(1, &killed), (2, &interrupted)] {
        let (logged, sha, ms) = recording_of(&done.db, call);
        assert_eq!(logged.as_deref(), path.to_str());
        assert_eq!(sha, recorder::sha256_file(path).ok());
        assert_eq!(ms, Some(3000));
    }
    // A recording whose file is gone is said to be lost, not recovered.
    let failed = done.events("recording_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, Some(5));
    assert!(
        failed[0].1.contains("call-5-") && failed[0].1.contains("no longer exists"),
        "{failed:?}"
    );
    assert_eq!(
        recording_of(&done.db, 5),
        (Some(gone.display().to_string()), None, None),
        "the evidence's path stays in the row"
    );
    // The next start tries again (the file may come back) without logging the loss again.
    let mut again = Harness::with(done.dir, (32600, 32699), Duration::from_secs(30));
    assert_eq!(
        again
            .unfinished
            .iter()
            .map(|u| (u.call, u.failure_logged))
            .collect::<Vec<_>>(),
        vec![(5, true)]
    );
    again.manager.wait_for_repair();
    let done = again.finish().await;
    assert_eq!(done.events("recording_failed").len(), 1, "logged once");
}

#[tokio::test]
async fn a_recording_in_progress_is_playable_from_disk_within_a_second() {
    // What a kill -9 would find: without closing, the file on disk is a valid WAV holding
    // all but the last flush interval of the audio handed to the writer.
    let dir = tempfile::tempdir().expect("dir");
    let (calllog, _writer, _) = CallLog::start(&dir.path().join("siaga.db")).expect("log");
    let (handle, mut thread) = RecorderThread::start(calllog.clone());
    let path = dir.path().join("recordings/live.wav");
    handle.open(RecordingId(1), 1, path.clone());
    let started = Instant::now();
    let mut pace = tokio::time::interval(100 * MS);
    for n in 0..20i64 {
        pace.tick().await;
        handle
            .chunk(RecordingId(1), n * 800, vec![1000; 1600])
            .expect("queued");
    }
    let handed_over = 2000.0;
    let elapsed = started.elapsed();
    let on_disk = hound::WavReader::open(&path)
        .expect("valid while recording")
        .duration();
    let on_disk_ms = f64::from(on_disk) / 8.0;
    assert!(
        on_disk_ms >= handed_over - 1000.0,
        "{on_disk_ms} ms on disk of {handed_over} ms handed over in {elapsed:?}"
    );
    handle.close(RecordingId(1));
    handle.shutdown();
    thread.join();
    assert_eq!(
        hound::WavReader::open(&path).expect("final").duration(),
        16_000
    );
}

#[test]
fn recording_paths_are_per_day_in_utc() {
    let root = Path::new("/rec");
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    assert_eq!(
        recorder::recording_path(root, 42, at),
        Path::new("/rec/2023-11-14/call-42-20231114T221320.wav")
    );
    let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_251_199); // 2024-02-29 23:59:59
    assert_eq!(
        recorder::recording_path(root, 7, leap),
        Path::new("/rec/2024-02-29/call-7-20240229T235959.wav")
    );
}

/// Streams A-law `audio` from `phone` to the caller leg at `local` in 20 ms packets, paced as
/// a phone sends them, from RTP sequence number `first`; returns the caller leg's events.
async fn stream_caller_audio(
    h: &mut Harness,
    phone: &UdpSocket,
    local: SocketAddr,
    audio: &[u8],
    first: usize,
) -> Vec<MediaEvent> {
    let mut pace = tokio::time::interval(20 * MS);
    for (k, payload) in audio.chunks_exact(160).enumerate() {
        pace.tick().await;
        let n = first + k;
        let packet = rtp(8, n as u16, 160 * n as u32, 0x5252, n == 0, payload);
        let _ = phone.send_to(&packet, local).await;
    }
    h.events_for(200 * MS).await
}

#[tokio::test]
async fn the_caller_leg_hears_speech_in_one_word_but_not_in_loud_steady_noise() {
    let mut h = Harness::new((32800, 32899));
    let (phone, local) = h.caller_on_pcma().await;
    // 2 s of loud low rumble, as from an open line by a road: seconds of speech energy while
    // the meter's floor rises to it, but no voice.
    let noise = siaga_media::voice::rumble_alaw(16_000, 0x2545_F491_4F6C_DD1D);
    let events = stream_caller_audio(&mut h, &phone, local, &noise, 0).await;
    assert!(
        !events.iter().any(|e| matches!(e, MediaEvent::Speech)),
        "no speech in noise: {events:?}"
    );
    // Then the caller says one word: "Tolong," the first 0.6 s of the recorded caller.
    let recorded = include_bytes!("../../tests/data/media/caller_8k.alaw");
    let word = recorded.get(..4800).expect("0.6 s");
    let events = stream_caller_audio(&mut h, &phone, local, word, 100).await;
    assert!(
        events.iter().any(|e| matches!(e, MediaEvent::Speech)),
        "speech in one word: {events:?}"
    );
    let voice = h.release_caller_for_its_voice_totals().await;
    // The rumble was heard as speech energy, a run of a second or more; only the word was
    // voiced.
    assert!(voice.longest_speech_ms >= 1000, "{voice:?}");
    assert!((300..=600).contains(&voice.longest_voiced_ms), "{voice:?}");
    h.finish().await;
}

#[tokio::test]
async fn the_callers_voice_totals_come_with_the_release_of_its_leg() {
    let mut h = Harness::new((32700, 32799));
    let (phone, local) = h.caller_on_pcma().await;
    // 1 s of a loud tone (about −15 dBFS), then 1 s of digital silence, in 20 ms packets.
    let mut pace = tokio::time::interval(20 * MS);
    for k in 0..100usize {
        pace.tick().await;
        let pcm = if k < 50 {
            sine(440.0, 8000.0, 160 * k, 160)
        } else {
            vec![0; 160]
        };
        let mut payload = vec![0u8; 160];
        Codec::Pcma.encode(&pcm, &mut payload);
        let packet = rtp(8, k as u16, 160 * k as u32, 0x5151, k == 0, &payload);
        let _ = phone.send_to(&packet, local).await;
    }
    // The last packets reach the leg within a tick or two; then the engine releases it.
    let before = h.events_for(100 * MS).await;
    assert!(
        !before
            .iter()
            .any(|e| matches!(e, MediaEvent::VoiceActivity(_))),
        "totals only at release: {before:?}"
    );
    let voice = h.release_caller_for_its_voice_totals().await;
    // The last silent packets may still be in the socket when the leg goes (a busy CPU).
    assert!((90..=100).contains(&voice.frames), "{voice:?}");
    assert_eq!(voice.speech_frames, 50);
    assert_eq!(voice.longest_speech_ms, 1000);
    h.finish().await;
}
