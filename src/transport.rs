//! SIP transports: UDP sockets and TCP connections feeding the engine task through one
//! channel. Sockets are bound by the caller (tests bind port 0).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use siaga_engine::ids::ConnId;
use siaga_engine::io::{Flow, Transport};
use siaga_engine::sip::framer::{Frame, StreamFramer};
use siaga_engine::sip::parse::MAX_MESSAGE_BYTES;

/// What the network tasks tell the engine task.
pub enum NetEvent {
    Sip {
        flow: Flow,
        data: Vec<u8>,
    },
    ConnOpened {
        conn: ConnId,
        remote: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
    },
    ConnClosed {
        flow: Flow,
        reason: String,
    },
}

/// Resolves the local address a peer sees when we are bound to a wildcard address: the
/// address the kernel would route from. Cached per remote IP.
#[derive(Default)]
pub struct LocalAddrCache {
    cache: HashMap<IpAddr, IpAddr>,
}

impl LocalAddrCache {
    pub fn resolve(&mut self, bound: SocketAddr, remote: SocketAddr) -> SocketAddr {
        if !bound.ip().is_unspecified() {
            return bound;
        }
        let ip = *self.cache.entry(remote.ip()).or_insert_with(|| {
            let any: SocketAddr = if remote.is_ipv4() {
                "0.0.0.0:0".parse().expect("literal")
            } else {
                "[::]:0".parse().expect("literal")
            };
            std::net::UdpSocket::bind(any)
                .and_then(|s| s.connect(remote).and_then(|()| s.local_addr()))
                .map(|a| a.ip())
                .unwrap_or(bound.ip())
        });
        SocketAddr::new(ip, bound.port())
    }
}

/// Reads datagrams from one UDP socket until the channel closes.
pub async fn udp_reader(socket: Arc<UdpSocket>, tx: mpsc::Sender<NetEvent>) {
    let bound = match socket.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let mut locals = LocalAddrCache::default();
    let mut buf = vec![0u8; MAX_MESSAGE_BYTES + 1];
    loop {
        let (n, remote) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP port unreachable from an earlier send shows up here on Linux; it is
                // not fatal for the socket.
                tracing::debug!(error = %e, "udp recv error");
                continue;
            }
        };
        let data = buf.get(..n).unwrap_or_default();
        // Keep-alive pings (CRLF) carry no message.
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let flow = Flow {
            transport: Transport::Udp,
            remote,
            local: locals.resolve(bound, remote),
            conn: None,
        };
        if tx
            .send(NetEvent::Sip {
                flow,
                data: data.to_vec(),
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Accepts TCP connections and runs one task per connection.
pub async fn tcp_acceptor(listener: TcpListener, tx: mpsc::Sender<NetEvent>, listener_index: u64) {
    // Acceptors of different listeners use disjoint id spaces (up to 64 listeners).
    let mut next = listener_index % 64;
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                continue;
            }
        };
        if OPEN_CONNECTIONS.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            // A flood of idle connections must not exhaust memory; existing ones go on.
            tracing::warn!(%remote, "too many TCP connections: refused");
            drop(stream);
            continue;
        }
        let conn = ConnId(next);
        next += 64;
        let local = stream.local_addr().unwrap_or(remote);
        let flow = Flow {
            transport: Transport::Tcp,
            remote,
            local,
            conn: Some(conn),
        };
        tokio::spawn(tcp_connection(stream, flow, tx.clone()));
    }
}

/// Open TCP connections (accepted and outbound), against [`MAX_CONNECTIONS`].
static OPEN_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);
/// More than any SBC cluster in front of a 112 centre would open.
const MAX_CONNECTIONS: usize = 4096;
/// A connection that carries nothing (not even a keep-alive) for this long is closed.
const IDLE: std::time::Duration = std::time::Duration::from_secs(3600);

async fn tcp_connection(stream: TcpStream, flow: Flow, tx: mpsc::Sender<NetEvent>) {
    let Some(conn) = flow.conn else { return };
    OPEN_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    struct Open;
    impl Drop for Open {
        fn drop(&mut self) {
            OPEN_CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let _open = Open;
    let mut last_activity = tokio::time::Instant::now();
    let (write_tx, mut write_rx) = mpsc::channel::<Vec<u8>>(256);
    if tx
        .send(NetEvent::ConnOpened {
            conn,
            remote: flow.remote,
            writer: write_tx.clone(),
        })
        .await
        .is_err()
    {
        return;
    }
    let (mut reader, mut writer) = stream.into_split();
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    let reason = loop {
        tokio::select! {
                        () = tokio::time::sleep_until(last_activity + IDLE) => {
                break format!("idle for {} s", IDLE.as_secs());
            }
            read = reader.read(&mut buf) => {
                let n = match read {
                    Ok(0) => break "connection closed by peer".to_owned(),
                    Ok(n) => n,
                    Err(e) => break format!("read error: {e}"),
                };
                last_activity = tokio::time::Instant::now();
                framer.push(buf.get(..n).unwrap_or_default());
                let mut failed = None;
                loop {
                    match framer.next_frame() {
                        Ok(Some(Frame::Message(data))) => {
                            if tx.send(NetEvent::Sip { flow, data }).await.is_err() {
                                return;
                            }
                        }
                        Ok(Some(Frame::KeepAlivePing)) => {
                            let _ = write_tx.try_send(b"\r\n".to_vec());
                        }
                        Ok(None) => break,
                        Err(e) => {
                            failed = Some(format!("unframeable stream: {e}"));
                            break;
                        }
                    }
                }
                if let Some(reason) = failed {
                    break reason;
                }
            }
            out = write_rx.recv() => {
                let Some(bytes) = out else { break "closed by gateway".to_owned() };
                if let Err(e) = writer.write_all(&bytes).await {
                    break format!("write error: {e}");
                }
            }
        }
    };
    tracing::debug!(%reason, remote = %flow.remote, "tcp connection ended");
    let _ = tx.send(NetEvent::ConnClosed { flow, reason }).await;
}

/// Opens a TCP connection to an agency; the connection then runs like an accepted one. A
/// failure is reported as a closed connection so the engine fails over at once.
pub async fn tcp_connect(remote: SocketAddr, tx: mpsc::Sender<NetEvent>, conn: ConnId) {
    let connected = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        TcpStream::connect(remote),
    )
    .await;
    match connected {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            let local = stream.local_addr().unwrap_or(remote);
            let flow = Flow {
                transport: Transport::Tcp,
                remote,
                local,
                conn: Some(conn),
            };
            tcp_connection(stream, flow, tx).await;
        }
        Ok(Err(e)) => failed_connect(remote, &tx, format!("tcp connect to {remote}: {e}")).await,
        Err(_) => failed_connect(remote, &tx, format!("tcp connect to {remote}: timed out")).await,
    }
}

async fn failed_connect(remote: SocketAddr, tx: &mpsc::Sender<NetEvent>, reason: String) {
    let flow = Flow {
        transport: Transport::Tcp,
        remote,
        local: remote,
        conn: None,
    };
    let _ = tx.send(NetEvent::ConnClosed { flow, reason }).await;
}

/// The gateway's TCP connections: accepted ones and those it opened to agencies, which are
/// reused for every request to the same address.
pub struct TcpPool {
    writers: HashMap<ConnId, mpsc::Sender<Vec<u8>>>,
    by_remote: HashMap<SocketAddr, ConnId>,
    /// Messages waiting for a connection being opened.
    pending: HashMap<SocketAddr, Vec<Vec<u8>>>,
    next_outbound: u64,
    events: mpsc::Sender<NetEvent>,
}

impl TcpPool {
    pub fn new(events: mpsc::Sender<NetEvent>) -> Self {
        Self {
            writers: HashMap::new(),
            by_remote: HashMap::new(),
            pending: HashMap::new(),
            // Outbound ids live far above the acceptors' ids.
            next_outbound: 1 << 40,
            events,
        }
    }

    pub fn opened(&mut self, conn: ConnId, remote: SocketAddr, writer: mpsc::Sender<Vec<u8>>) {
        for bytes in self.pending.remove(&remote).unwrap_or_default() {
            let _ = writer.try_send(bytes);
        }
        self.by_remote.entry(remote).or_insert(conn);
        self.writers.insert(conn, writer);
    }

    pub fn closed(&mut self, flow: &Flow) {
        if let Some(conn) = flow.conn {
            self.writers.remove(&conn);
            self.by_remote.retain(|_, c| *c != conn);
        }
        self.pending.remove(&flow.remote);
    }

    /// Sends on the flow's connection, on any open connection to the same peer, or opens one.
    pub fn send(&mut self, flow: Flow, bytes: Vec<u8>) -> Result<(), String> {
        let conn = flow
            .conn
            .filter(|c| self.writers.contains_key(c))
            .or_else(|| self.by_remote.get(&flow.remote).copied());
        if let Some(writer) = conn.and_then(|c| self.writers.get(&c)) {
            return writer
                .try_send(bytes)
                .map_err(|e| format!("tcp send to {}: {e}", flow.remote));
        }
        if let Some(queue) = self.pending.get_mut(&flow.remote) {
            queue.push(bytes);
            return Ok(());
        }
        self.pending.insert(flow.remote, vec![bytes]);
        let conn = ConnId(self.next_outbound);
        self.next_outbound += 1;
        tokio::spawn(tcp_connect(flow.remote, self.events.clone(), conn));
        Ok(())
    }
}
