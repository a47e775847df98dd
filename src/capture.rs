//! SIP capture to a Homer or sngrep collector (HEP v3 over UDP): every SIP message the
//! gateway receives or sends, on both legs and every transport, with the Call-ID as the
//! correlation id.
//!
//! Capture must never slow a call: the engine task only stamps the time and hands the bytes
//! to a bounded queue (full: the message is dropped and counted); a sender task encodes and
//! sends. Drops and send failures are reported once a minute at most, never per message.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use siaga_engine::io::{Flow, Transport};
use siaga_hep::{CaptureAgentId, IpProto, ProtoType, Timestamp};

/// The `[capture]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSettings {
    /// Where to send HEP packets; `None`: no capture.
    pub hep: Option<HepCollector>,
    /// The capture agent id the collector shows for this gateway.
    pub agent_id: u32,
    /// The collector's password (HEP auth key chunk), if it wants one.
    pub password: Option<String>,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        CaptureSettings {
            hep: None,
            // Any number the centre's collectors tell apart; 2001 is what Kamailio's siptrace
            // examples use, so a Homer set up from them shows the gateway as a node of its own.
            agent_id: 2001,
            password: None,
        }
    }
}

/// A HEP collector: `udp:HOST:PORT`, resolved when the settings are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HepCollector {
    /// As written, for messages.
    pub spec: String,
    pub addr: SocketAddr,
}

impl std::str::FromStr for HepCollector {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some(host_port) = s.strip_prefix("udp:") else {
            return Err(format!(
                "{s:?}: write udp:HOST:PORT, e.g. udp:10.0.0.5:9060 (HEP goes over UDP)"
            ));
        };
        let addr = host_port
            .to_socket_addrs()
            .map_err(|e| format!("{s:?}: {host_port:?} does not resolve: {e}"))?
            .next()
            .ok_or_else(|| format!("{s:?}: {host_port:?} resolves to no address"))?;
        Ok(HepCollector {
            spec: s.to_owned(),
            addr,
        })
    }
}

impl std::fmt::Display for HepCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.spec)
    }
}

/// Messages waiting for the sender: enough for a burst of several thousand calls' messages
/// while the sender is held up, small enough that a stuck collector costs little memory.
const QUEUE_MESSAGES: usize = 8192;
const QUEUE_BYTES: usize = 16 << 20;
/// Drops and send failures are reported at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// One message on its way to the collector.
struct Captured {
    time: Timestamp,
    source: SocketAddr,
    destination: SocketAddr,
    proto: IpProto,
    bytes: Vec<u8>,
}

/// The engine task's end of the capture: cheap to call per message.
pub struct Capture {
    tx: mpsc::Sender<Captured>,
    queued_bytes: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
    sender: tokio::task::JoinHandle<()>,
}

impl Capture {
    /// Starts the sender for `settings`; `None` when capture is off.
    pub async fn start(settings: &CaptureSettings) -> anyhow::Result<Option<Capture>> {
        let Some(collector) = settings.hep.clone() else {
            return Ok(None);
        };
        let any: SocketAddr = if collector.addr.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let socket = UdpSocket::bind(any).await.map_err(|e| {
            anyhow::anyhow!("capture.hep {collector}: cannot open a UDP socket: {e}")
        })?;
        let (tx, rx) = mpsc::channel(QUEUE_MESSAGES);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let sender = Sender {
            socket,
            collector,
            agent: CaptureAgentId(settings.agent_id),
            password: settings.password.clone().map(String::into_bytes),
            queued_bytes: queued_bytes.clone(),
            dropped: dropped.clone(),
        };
        tracing::info!(collector = %sender.collector, agent_id = settings.agent_id, "SIP capture (HEP v3) on");
        let sender = tokio::spawn(sender.run(rx));
        Ok(Some(Capture {
            tx,
            queued_bytes,
            dropped,
            sender,
        }))
    }

    /// At stop: sends what is queued (the last BYEs too), for a few seconds at most.
    pub async fn finish(self) {
        drop(self.tx);
        let mut sender = self.sender;
        if tokio::time::timeout(Duration::from_secs(5), &mut sender)
            .await
            .is_err()
        {
            sender.abort();
            tracing::warn!("SIP capture: the last messages were not all sent at stop");
        }
    }

    /// A message that arrived on `flow`.
    pub fn received(&self, flow: &Flow, at: SystemTime, bytes: Vec<u8>) {
        self.queue(flow.remote, flow.local, flow.transport, at, bytes);
    }

    /// A message about to be sent on `flow`.
    pub fn sent(&self, flow: &Flow, at: SystemTime, bytes: &[u8]) {
        // Checked before copying: a full queue costs nothing but the count.
        if self.has_room(bytes.len()) {
            self.queue(flow.local, flow.remote, flow.transport, at, bytes.to_vec());
        }
    }

    fn has_room(&self, len: usize) -> bool {
        let room = self.queued_bytes.load(Ordering::Relaxed) + len <= QUEUE_BYTES;
        if !room {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        room
    }

    fn queue(
        &self,
        source: SocketAddr,
        destination: SocketAddr,
        transport: Transport,
        at: SystemTime,
        bytes: Vec<u8>,
    ) {
        let len = bytes.len();
        if !self.has_room(len) {
            return;
        }
        let captured = Captured {
            time: Timestamp::from_unix(at.duration_since(UNIX_EPOCH).unwrap_or_default()),
            source,
            destination,
            proto: match transport {
                Transport::Udp => IpProto::Udp,
                Transport::Tcp | Transport::Tls => IpProto::Tcp,
            },
            bytes,
        };
        match self.tx.try_send(captured) {
            Ok(()) => {
                self.queued_bytes.fetch_add(len, Ordering::Relaxed);
            }
            // Closed: the sender task ended (it only does when the gateway stops).
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The sender task: encodes and sends, counts what it cannot send.
struct Sender {
    socket: UdpSocket,
    collector: HepCollector,
    agent: CaptureAgentId,
    password: Option<Vec<u8>>,
    queued_bytes: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<Captured>) {
        let mut packet = Vec::with_capacity(4096);
        let mut report = tokio::time::interval(REPORT_EVERY);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut failed = 0u64;
        let mut last_error: Option<String> = None;
        let mut told = false;
        let mut unencodable = 0u64;
        loop {
            tokio::select! {
                next = rx.recv() => {
                    let Some(captured) = next else { break };
                    self.queued_bytes.fetch_sub(captured.bytes.len(), Ordering::Relaxed);
                    let capture = siaga_hep::Capture {
                        source: captured.source,
                        destination: captured.destination,
                        proto: captured.proto,
                        time: captured.time,
                        agent: self.agent,
                        proto_type: ProtoType::SIP,
                        auth_key: self.password.as_deref(),
                        correlation_id: siaga_hep::call_id_of(&captured.bytes),
                        payload: &captured.bytes,
                    };
                    if siaga_hep::encode_into(&capture, &mut packet).is_err() {
                        unencodable += 1;
                        continue;
                    }
                    if let Err(e) = self.socket.send_to(&packet, self.collector.addr).await {
                        // The first failure is told at once; later ones wait for the report.
                        if !told {
                            told = true;
                            tracing::warn!(collector = %self.collector, error = %e, "SIP capture: send failed (further failures are counted and reported once a minute)");
                        }
                        failed += 1;
                        last_error = Some(e.to_string());
                    }
                }
                _ = report.tick() => {
                    let dropped = self.dropped.swap(0, Ordering::Relaxed);
                    if dropped + failed + unencodable > 0 {
                        tracing::warn!(
                            collector = %self.collector,
                            dropped_queue_full = dropped,
                            send_failed = failed,
                            too_large = unencodable,
                            last_error = last_error.as_deref().unwrap_or(""),
                            "SIP capture: messages not delivered in the last minute"
                        );
                    }
                    failed = 0;
                    unencodable = 0;
                    last_error = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> Flow {
        Flow {
            transport: Transport::Udp,
            remote: SocketAddr::from(([192, 0, 2, 1], 5060)),
            local: SocketAddr::from(([192, 0, 2, 2], 5060)),
            conn: None,
        }
    }

    /// A sender that cannot keep up never holds up the engine task: past the queue's bound
    /// messages are dropped and counted, and what was queued still goes out.
    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let collector = UdpSocket::bind("127.0.0.1:0").await.expect("collector");
        let settings = CaptureSettings {
            hep: Some(
                format!("udp:{}", collector.local_addr().expect("addr"))
                    .parse()
                    .expect("collector spec"),
            ),
            ..CaptureSettings::default()
        };
        let capture = Capture::start(&settings)
            .await
            .expect("starts")
            .expect("on");
        let message = b"OPTIONS sip:gw SIP/2.0\r\nCall-ID: q\r\n\r\n";
        // On this single-threaded runtime the sender cannot run until the test yields.
        let extra = 100;
        for _ in 0..QUEUE_MESSAGES + extra {
            capture.sent(&flow(), SystemTime::now(), message);
        }
        assert_eq!(capture.dropped.load(Ordering::Relaxed), extra as u64);
        capture.finish().await;
        let mut buf = [0u8; 512];
        let n = collector
            .recv(&mut buf)
            .await
            .expect("the queued ones are sent");
        let packet = siaga_hep::decode::decode(&buf[..n]).expect("HEP");
        assert_eq!(packet.correlation_id.as_deref(), Some(&b"q"[..]));
        assert_eq!(packet.source, flow().local, "sent: from the gateway");
        assert_eq!(packet.agent, CaptureAgentId(2001));
    }

    #[test]
    fn the_capture_keys_are_read_and_a_bad_collector_names_its_line() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("siaga.toml");
        let read = |text: &str| {
            std::fs::write(&path, text).expect("write");
            let mut s = crate::config::Settings::default();
            crate::config::apply_file(&mut s, &path).map(|()| s)
        };
        let s = read(
            "[capture]\nhep = \"udp:127.0.0.1:9060\"\nhep_agent_id = 7\nhep_password = \"pw\"\n\
             [log]\nconsole_format = \"json\"\n",
        )
        .expect("valid");
        assert_eq!(
            s.capture.hep.map(|c| c.addr),
            Some(SocketAddr::from(([127, 0, 0, 1], 9060)))
        );
        assert_eq!(
            (s.capture.agent_id, s.capture.password.as_deref()),
            (7, Some("pw"))
        );
        assert_eq!(s.log_format, crate::logging::LogFormat::Json);
        let defaults = read("").expect("empty");
        assert_eq!(
            (defaults.capture.hep, defaults.capture.agent_id),
            (None, 2001)
        );
        assert_eq!(defaults.log_format, crate::logging::LogFormat::Text);
        for (text, line, what) in [
            (
                "[capture]\n\nhep = \"tcp:127.0.0.1:9060\"\n",
                3,
                "capture.hep",
            ),
            ("[capture]\nhep = \"udp:nowhere\"\n", 2, "capture.hep"),
            (
                "[log]\n\nconsole_format = \"xml\"\n",
                3,
                "log.console_format",
            ),
        ] {
            let err = read(text).expect_err(text).to_string();
            assert!(
                err.contains(&format!("siaga.toml:{line}: {what}")),
                "{text:?} gave {err:?}"
            );
        }
    }
}
