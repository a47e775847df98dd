//! SIP transports: UDP sockets and TCP and TLS connections feeding the engine task. Sockets
//! are bound by the caller (tests bind port 0).
//!
//! Everything an outsider can make us spend here is bounded per source and in total, before
//! any parsing: a message budget per source address and lane (over the INVITE budget only
//! INVITEs that dial an emergency or test number pass, checked against the current dialplan),
//! a share of the call queue per source, TCP connections per source and in total, a deadline for each whole
//! message on a stream, a short idle time for connections that carry no call, and a reserve of
//! file descriptors that TCP never eats into, so an emergency call always gets its RTP port and
//! recording. A TLS connection is a TCP connection first (the same counts and deadlines), and
//! its handshake holds one of a bounded number of slots, per source and in total, for at most
//! its deadline. What is dropped is counted and reported at a bounded rate.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};

use siaga_engine::dialplan::Dialplan;
use siaga_engine::ids::{CallRef, ConnId};
use siaga_engine::io::{Flow, LogRecord, Transport};
use siaga_engine::sip::framer::{Frame, StreamFramer};
use siaga_engine::sip::parse::MAX_MESSAGE_BYTES;
use siaga_engine::source_limits::{
    Budget, Budgets, ConnLimiter, HandshakeLimiter, HandshakeRefusal, Lane, MessageLimiter,
    QueueShare, Refusal, StreamClock, StreamTimeouts, Trusted,
};

use crate::tls::{TlsPeer, TlsPeers, TlsServer};

/// A TLS peer's certificate chain, end entity first.
pub type PeerCerts = Arc<[rustls_pki_types::CertificateDer<'static>]>;

/// What the network tasks tell the engine task.
pub enum NetEvent {
    Sip {
        flow: Flow,
        data: Vec<u8>,
        /// The message's place in its queue, given back when the engine is done.
        queued: Queued,
    },
    ConnOpened {
        conn: ConnId,
        transport: Transport,
        remote: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
        /// Live calls whose caller came in on this connection (kept by [`TcpPool`]).
        calls: Arc<AtomicU32>,
        /// The certificate chain the peer presented on a TLS connection it opened.
        peer_certs: Option<PeerCerts>,
    },
    ConnClosed {
        flow: Flow,
        reason: String,
    },
}

/// The transport's limits (the `[limits]` keys `source_*`, `trusted_sources`, `tcp_*` and
/// `fd_reserve`).
#[derive(Debug, Clone, PartialEq)]
pub struct TransportLimits {
    /// Messages per second a source may send on average that are neither INVITEs nor call
    /// traffic (OPTIONS, REGISTER, garbage, …).
    pub source_messages_per_s: u32,
    /// Of those, how many a source may send at once.
    pub source_burst: u32,
    /// In-dialog requests (ACK, BYE, CANCEL, …) and responses a source may send per second on
    /// average; twice that at once.
    pub source_call_messages_per_s: u32,
    /// New INVITEs a source may send per second on average; over it, only INVITEs that dial
    /// an emergency or test number pass.
    pub source_invites_per_s: u32,
    /// Of those, how many a source may send at once.
    pub source_invite_burst: u32,
    /// Messages of one source that may wait in the engine's call queue; beyond that they go
    /// the bulk way (emergency INVITEs excepted), so a few hosts cannot fill the queue.
    pub source_queue_share: u32,
    /// Sources with a budget of their own; beyond that, new sources share one.
    pub max_sources: usize,
    /// Networks exempt from every per-source limit (the centre's SBCs).
    pub trusted: Trusted,
    pub tcp_per_source: u32,
    pub tcp_max_connections: usize,
    pub tcp: StreamTimeouts,
    /// File descriptors TCP never takes, for RTP ports, recordings and the database.
    pub fd_reserve: u64,
    /// TLS handshakes in progress from one source (trusted sources excepted) and in total.
    pub tls_handshakes_per_source: u32,
    pub tls_max_handshakes: usize,
    /// How long a TLS handshake (ours or a peer's) may take.
    pub tls_handshake_timeout: Duration,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            // Non-call traffic: an SBC's keep-alives and probes are a few a second; more than
            // this from one address is a flood.
            source_messages_per_s: 1000,
            source_burst: 2000,
            // ~5 messages per call besides the INVITE: room for 4,000 calls a second from
            // one SBC (the gateway's set-up rate is ~1,300/s), so calls are never cut here;
            // it still caps what one source can push through the call lane.
            source_call_messages_per_s: 20_000,
            // New calls that are not emergency calls are rare from one address: a test line,
            // a misdial. More is a flood; emergency INVITEs pass over it anyway.
            source_invites_per_s: 100,
            source_invite_burst: 300,
            // The call queue holds 16,384: 32 hosts at their share fill it.
            source_queue_share: 512,
            max_sources: 16_384,
            trusted: Trusted::default(),
            // More than any SBC opens; far fewer than the total.
            tcp_per_source: 128,
            // More than any SBC cluster in front of a 112 centre would open.
            tcp_max_connections: 4096,
            tcp: StreamTimeouts {
                message: Duration::from_secs(10),
                idle: Duration::from_secs(30),
                idle_with_call: Duration::from_secs(3600),
            },
            // ~3 per call (2 RTP ports, 1 recording): room for 150+ calls at the common
            // limit of 1024, whatever TCP does.
            fd_reserve: 512,
            // A carrier opens one or two connections; a few at once is a restart.
            tls_handshakes_per_source: 16,
            // ~20-40 kB of buffers each while in progress: ~10 MB at most.
            tls_max_handshakes: 256,
            // A handshake is 2 round trips: seconds only on a broken path.
            tls_handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// The open-file limit: (soft, hard).
pub fn fd_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Raises the soft limit on open files to the hard limit (a service's soft limit is often
/// 1024, too few for TCP peers plus RTP ports and recordings) and returns the soft limit now
/// in force.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let (soft, hard) = fd_limit()?;
    if soft >= hard {
        return Ok(soft);
    }
    let raised = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: setrlimit only reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(hard)
}

/// The shared state of every network task: budgets, connection counts, drop counters.
pub struct Shield {
    messages: Mutex<MessageLimiter>,
    /// What each source holds in the call queue.
    share: Mutex<QueueShare>,
    /// The dialplan in force, for the emergency check of INVITEs over their budget; swapped
    /// on reload.
    plan: RwLock<Arc<Dialplan>>,
    conns: Mutex<ConnLimiter>,
    /// The accepted connections' live call counts and close signals, by connection id: the
    /// limiter asks which carry calls when it must make room, and closes the one it picks.
    accepted: Mutex<HashMap<u64, ConnHandle>>,
    timeouts: StreamTimeouts,
    fd_limit: u64,
    fd_reserve: u64,
    /// Bulk messages dropped because their queue was full (counted, reported).
    queue_full: AtomicU64,
    /// Messages still in the bulk queue when the gateway stopped, never handled (reported).
    left_at_stop: AtomicU64,
    /// Call traffic sent the bulk way because its source held its share of the call queue.
    over_share: AtomicU64,
    accept_errors: AtomicU64,
    handshakes: Mutex<HandshakeLimiter>,
    handshake_timeout: Duration,
    /// TLS handshakes refused for want of a slot: [per source, total].
    handshakes_refused: [AtomicU64; 2],
    /// TLS handshakes of accepted connections that failed or timed out, and the last reason.
    handshakes_failed: AtomicU64,
    last_handshake_failure: Mutex<Option<String>>,
}

/// A lock that survives a panicked holder: the counts stay usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shield {
    /// `fd_limit` is the open-file limit in force (see [`raise_fd_limit`]); `plan` is the
    /// dialplan, replaced with [`Shield::set_plan`] on reload.
    pub fn new(limits: &TransportLimits, fd_limit: u64, plan: Arc<Dialplan>) -> Self {
        let budgets = Budgets {
            invite: Budget {
                rate_per_s: f64::from(limits.source_invites_per_s),
                burst: f64::from(limits.source_invite_burst.max(1)),
            },
            call: Budget {
                rate_per_s: f64::from(limits.source_call_messages_per_s),
                burst: 2.0 * f64::from(limits.source_call_messages_per_s.max(1)),
            },
            bulk: Budget {
                rate_per_s: f64::from(limits.source_messages_per_s),
                burst: f64::from(limits.source_burst.max(1)),
            },
        };
        let fd_reserve =
            siaga_engine::source_limits::effective_reserve(fd_limit, limits.fd_reserve);
        if fd_reserve < limits.fd_reserve {
            tracing::warn!(
                fd_limit,
                fd_reserve,
                "the open-file limit is low: keeping only half of it for calls"
            );
        }
        Shield {
            messages: Mutex::new(MessageLimiter::new(
                budgets,
                limits.trusted.clone(),
                limits.max_sources,
                {
                    use std::hash::{BuildHasher, Hasher};
                    std::collections::hash_map::RandomState::new()
                        .build_hasher()
                        .finish()
                },
                Instant::now(),
            )),
            share: Mutex::new(QueueShare::new(limits.source_queue_share)),
            plan: RwLock::new(plan),
            conns: Mutex::new(ConnLimiter::new(
                limits.tcp_per_source,
                limits.tcp_max_connections,
                limits.trusted.clone(),
            )),
            accepted: Mutex::new(HashMap::new()),
            timeouts: limits.tcp,
            fd_limit,
            fd_reserve,
            queue_full: AtomicU64::new(0),
            left_at_stop: AtomicU64::new(0),
            over_share: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            handshakes: Mutex::new(HandshakeLimiter::new(
                limits.tls_handshakes_per_source,
                limits.tls_max_handshakes,
                limits.trusted.clone(),
            )),
            handshake_timeout: limits.tls_handshake_timeout,
            handshakes_refused: [AtomicU64::new(0), AtomicU64::new(0)],
            handshakes_failed: AtomicU64::new(0),
            last_handshake_failure: Mutex::new(None),
        }
    }

    /// A slot for a TLS handshake from `ip`, given back when the handshake ends.
    fn handshake_slot(self: &Arc<Self>, ip: IpAddr) -> Option<HandshakeSlot> {
        match lock(&self.handshakes).start(ip) {
            Ok(()) => Some(HandshakeSlot {
                shield: self.clone(),
                ip,
            }),
            Err(why) => {
                let i = match why {
                    HandshakeRefusal::PerSource => 0,
                    HandshakeRefusal::Total => 1,
                };
                if let Some(n) = self.handshakes_refused.get(i) {
                    n.fetch_add(1, Ordering::Relaxed);
                }
                crate::metrics::tls_handshake("server", "refused");
                None
            }
        }
    }

    /// The gateway stops: the messages still in the bulk queue (non-call traffic, and call
    /// traffic of a source over its share) are counted for the last report instead of
    /// vanishing.
    pub fn left_at_stop(&self, bulk: &mut mpsc::Receiver<NetEvent>) {
        let mut left = 0;
        while bulk.try_recv().is_ok() {
            left += 1;
        }
        self.left_at_stop.fetch_add(left, Ordering::Relaxed);
    }

    fn handshake_failed(&self, reason: String) {
        self.handshakes_failed.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_handshake_failure) = Some(reason);
    }

    /// A new dialplan: its Request-URIs for the emergency check, its agencies' addresses
    /// (exempt from the budgets: their answers to our INVITEs must never be dropped).
    pub fn set_plan(&self, plan: Arc<Dialplan>, agencies: impl IntoIterator<Item = IpAddr>) {
        *self
            .plan
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = plan;
        lock(&self.messages).set_agencies(agencies);
    }

    fn dials_emergency(&self, message: &[u8]) -> bool {
        let plan = self
            .plan
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        siaga_engine::source_limits::dials_emergency(&plan, message)
    }

    /// Where a message of `lane` from `ip` goes: `None` when it is over the source's budget
    /// (an emergency INVITE never is); the bulk queue for bulk traffic and for call traffic
    /// of a source that holds its share of the call queue (again, emergency INVITEs excepted).
    fn route(self: &Arc<Self>, lane: Lane, ip: IpAddr, message: &[u8]) -> Option<Route> {
        // Looked at only when a limit is reached, and at most once.
        let mut known = None;
        let mut emergency = || *known.get_or_insert_with(|| self.dials_emergency(message));
        if !lock(&self.messages).allow(Instant::now(), ip, lane, &mut emergency) {
            return None;
        }
        if lane == Lane::Bulk {
            return Some(Route::Bulk);
        }
        if lock(&self.share).enter(ip) {
            let held = ShareHeld {
                shield: self.clone(),
                ip,
            };
            return Some(Route::Call(Some(held)));
        }
        if lane == Lane::Invite && emergency() {
            return Some(Route::Call(None));
        }
        self.over_share.fetch_add(1, Ordering::Relaxed);
        Some(Route::Bulk)
    }

    /// Counts an accepted connection `conn` from `ip`, or says why it must be refused. At the
    /// total, the connection idle longest that carries no call is told to close instead.
    fn admit(
        self: &Arc<Self>,
        stream: &TcpStream,
        ip: IpAddr,
        conn: ConnId,
    ) -> Result<Admitted, Refusal> {
        let mut conns = lock(&self.conns);
        let fd = u64::try_from(stream.as_raw_fd()).unwrap_or(u64::MAX);
        if !siaga_engine::source_limits::leaves_reserve(fd, self.fd_limit, self.fd_reserve) {
            return Err(conns.refuse(Refusal::Descriptors));
        }
        let mut accepted = lock(&self.accepted);
        let carries_call = |id: u64| {
            accepted
                .get(&id)
                .is_some_and(|h| h.calls.load(Ordering::Relaxed) > 0)
        };
        let opened = conns.open(ip, conn.0, Instant::now(), carries_call)?;
        if let Some(victim) = opened.evict.and_then(|id| accepted.remove(&id)) {
            // Stored as a permit if its task is not waiting yet: the close is never lost.
            victim.close.notify_one();
        }
        let handle = ConnHandle::default();
        accepted.insert(conn.0, handle.clone());
        Ok(Admitted {
            shield: self.clone(),
            conn,
            handle,
        })
    }

    /// What was dropped or refused since the last call, as one line; `None` when nothing was.
    /// Called at a fixed interval, so floods cost a line per interval, not a line per message.
    pub fn take_report(&self) -> Option<String> {
        let drops = lock(&self.messages).take_report();
        let over_share = self.over_share.swap(0, Ordering::Relaxed);
        let (per_source, total, fds, evicted) = {
            let mut conns = lock(&self.conns);
            let (a, b, c) = conns.take_refused();
            (a, b, c, conns.take_evicted())
        };
        let queue_full = self.queue_full.swap(0, Ordering::Relaxed);
        let left_at_stop = self.left_at_stop.swap(0, Ordering::Relaxed);
        let accept_errors = self.accept_errors.swap(0, Ordering::Relaxed);
        let mut parts = Vec::new();
        if !drops.is_empty() {
            parts.push(drops.to_string());
        }
        if over_share > 0 {
            parts.push(format!(
                "{over_share} call message(s) sent the bulk way: their source held its share of the call queue"
            ));
        }
        if queue_full > 0 {
            parts.push(format!(
                "{queue_full} non-call message(s) dropped with the engine's queue full"
            ));
        }
        if left_at_stop > 0 {
            parts.push(format!(
                "{left_at_stop} message(s) of the non-call queue not handled: the gateway stopped"
            ));
        }
        for (n, why) in [
            (per_source, "the source had its share open"),
            (total, "the gateway had its total open"),
            (fds, "the descriptors left were kept for calls"),
        ] {
            if n > 0 {
                parts.push(format!("{n} TCP connection(s) refused: {why}"));
            }
        }
        if evicted > 0 {
            parts.push(format!(
                "{evicted} idle TCP connection(s) without a call closed to make room (the gateway had its total open)"
            ));
        }
        if accept_errors > 0 {
            parts.push(format!("{accept_errors} TCP accept error(s)"));
        }
        for (n, why) in [
            (
                &self.handshakes_refused[0],
                "the source had its share in progress",
            ),
            (
                &self.handshakes_refused[1],
                "the gateway had its total in progress",
            ),
        ] {
            let n = n.swap(0, Ordering::Relaxed);
            if n > 0 {
                parts.push(format!("{n} TLS connection(s) refused: {why}"));
            }
        }
        let failed = self.handshakes_failed.swap(0, Ordering::Relaxed);
        if failed > 0 {
            let last = lock(&self.last_handshake_failure)
                .take()
                .unwrap_or_default();
            parts.push(format!(
                "{failed} TLS handshake(s) failed or timed out (last: {last})"
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// What the shield keeps of one connection's task: its live calls (kept by [`TcpPool`]) and
/// a way to close it.
#[derive(Clone, Default)]
struct ConnHandle {
    calls: Arc<AtomicU32>,
    close: Arc<Notify>,
}

/// An accepted connection counted against its source; uncounted when dropped.
struct Admitted {
    shield: Arc<Shield>,
    conn: ConnId,
    handle: ConnHandle,
}

impl Admitted {
    /// A complete message arrived: the connection is not idle.
    fn activity(&self) {
        lock(&self.shield.conns).activity(self.conn.0, Instant::now());
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        lock(&self.shield.conns).close(self.conn.0);
        lock(&self.shield.accepted).remove(&self.conn.0);
    }
}

/// A TLS handshake in progress, counted against its source; uncounted when dropped.
struct HandshakeSlot {
    shield: Arc<Shield>,
    ip: IpAddr,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        lock(&self.shield.handshakes).finish(self.ip);
    }
}

/// Which queue a message goes to, from [`Shield::route`].
enum Route {
    /// The call queue, holding a place of the source's share (`None`: an emergency INVITE
    /// beyond the share, which is never turned away).
    Call(Option<ShareHeld>),
    Bulk,
}

/// A place of a source's share of the call queue; given back when dropped.
struct ShareHeld {
    shield: Arc<Shield>,
    ip: IpAddr,
}

impl Drop for ShareHeld {
    fn drop(&mut self) {
        lock(&self.shield.share).leave(self.ip);
    }
}

/// A message's place in its queue: its bytes and, in the call queue, its source's share.
/// Dropping it gives both back.
pub struct Queued {
    _bytes: OwnedSemaphorePermit,
    _share: Option<ShareHeld>,
}

impl Queued {
    /// Waits for `bytes` of a queue's byte bound.
    async fn wait(
        queue_bytes: &Arc<Semaphore>,
        bytes: u32,
        share: Option<ShareHeld>,
    ) -> Result<Queued, Closed> {
        let permit = queue_bytes
            .clone()
            .acquire_many_owned(bytes)
            .await
            .map_err(|_| Closed)?;
        Ok(Queued {
            _bytes: permit,
            _share: share,
        })
    }
}

/// Messages waiting for the engine, bounded in count and in bytes. Call traffic (INVITEs,
/// in-dialog requests, responses) has its own queue, served first, so a flood of other
/// messages never delays a call; when the bulk queue is full its messages are dropped, not
/// waited for, so the readers keep taking INVITEs off the sockets.
#[derive(Clone)]
pub struct NetTx {
    priority: mpsc::Sender<NetEvent>,
    priority_bytes: Arc<Semaphore>,
    bulk: mpsc::Sender<NetEvent>,
    bulk_bytes: Arc<Semaphore>,
}

pub struct NetRx {
    pub priority: mpsc::Receiver<NetEvent>,
    pub bulk: mpsc::Receiver<NetEvent>,
}

/// The engine task is gone.
struct Closed;

impl NetTx {
    pub fn new() -> (NetTx, NetRx) {
        let (priority, priority_rx) = mpsc::channel(16_384);
        let (bulk, bulk_rx) = mpsc::channel(4096);
        let tx = NetTx {
            priority,
            priority_bytes: Arc::new(Semaphore::new(32 << 20)),
            bulk,
            bulk_bytes: Arc::new(Semaphore::new(4 << 20)),
        };
        (
            tx,
            NetRx {
                priority: priority_rx,
                bulk: bulk_rx,
            },
        )
    }

    /// Connection events go with call traffic and are never dropped.
    async fn control(&self, ev: NetEvent) -> Result<(), Closed> {
        self.priority.send(ev).await.map_err(|_| Closed)
    }

    /// Queues a message where [`Shield::route`] sent it. The bulk queue never waits (a full
    /// one drops, counted), except for call traffic of a TCP connection sent there by its
    /// source's share: a stream cannot lose a message, and waiting holds up only that
    /// connection.
    async fn message(
        &self,
        flow: Flow,
        data: Vec<u8>,
        route: Route,
        lane: Lane,
        shield: &Shield,
    ) -> Result<(), Closed> {
        let bytes = u32::try_from(data.len()).unwrap_or(u32::MAX);
        match route {
            Route::Call(share) => {
                let queued = Queued::wait(&self.priority_bytes, bytes, share).await?;
                self.control(NetEvent::Sip { flow, data, queued }).await
            }
            Route::Bulk if lane != Lane::Bulk && flow.conn.is_some() => {
                let queued = Queued::wait(&self.bulk_bytes, bytes, None).await?;
                let ev = NetEvent::Sip { flow, data, queued };
                self.bulk.send(ev).await.map_err(|_| Closed)
            }
            Route::Bulk => {
                let Ok(permit) = self.bulk_bytes.clone().try_acquire_many_owned(bytes) else {
                    shield.queue_full.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                };
                let queued = Queued {
                    _bytes: permit,
                    _share: None,
                };
                match self.bulk.try_send(NetEvent::Sip { flow, data, queued }) {
                    Ok(()) => Ok(()),
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        shield.queue_full.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => Err(Closed),
                }
            }
        }
    }
}

const MAX_CACHED_LOCALS: usize = 4096;

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
        // Sources are chosen by outsiders (and may be spoofed): the cache is bounded, and
        // starting afresh costs only a lookup per source.
        if self.cache.len() >= MAX_CACHED_LOCALS && !self.cache.contains_key(&remote.ip()) {
            self.cache.clear();
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

/// Reads datagrams from one UDP socket until the engine task is gone.
pub async fn udp_reader(socket: Arc<UdpSocket>, tx: NetTx, shield: Arc<Shield>) {
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
        // Before any parsing or copying: the cheapest place to drop a flood.
        let lane = Lane::of(data);
        let Some(route) = shield.route(lane, remote.ip(), data) else {
            continue;
        };
        let flow = Flow {
            transport: Transport::Udp,
            remote,
            local: locals.resolve(bound, remote),
            conn: None,
        };
        if tx
            .message(flow, data.to_vec(), route, lane, &shield)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Accepts TCP connections and runs one task per connection. Refused connections are reset
/// at once (no handshake state or TIME_WAIT kept for them); resource errors (out of
/// descriptors or memory) back off instead of spinning, with one log line per interval.
pub async fn tcp_acceptor(
    listener: TcpListener,
    tx: NetTx,
    shield: Arc<Shield>,
    listener_index: u64,
) {
    accept_loop(listener, tx, shield, listener_index, None).await;
}

/// As [`tcp_acceptor`], with a TLS handshake (holding a slot, within its deadline) before the
/// connection carries SIP. The certificate is the one in force when the connection came.
pub async fn tls_acceptor(
    listener: TcpListener,
    tx: NetTx,
    shield: Arc<Shield>,
    listener_index: u64,
    server: Arc<TlsServer>,
) {
    accept_loop(listener, tx, shield, listener_index, Some(server)).await;
}

async fn accept_loop(
    listener: TcpListener,
    tx: NetTx,
    shield: Arc<Shield>,
    listener_index: u64,
    tls: Option<Arc<TlsServer>>,
) {
    // Acceptors of different listeners use disjoint id spaces (up to 64 listeners).
    let mut next = listener_index % 64;
    let mut backoff = Duration::ZERO;
    let mut last_line: Option<Instant> = None;
    let transport = if tls.is_some() {
        Transport::Tls
    } else {
        Transport::Tcp
    };
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(s) => {
                backoff = Duration::ZERO;
                s
            }
            Err(e) => {
                shield.accept_errors.fetch_add(1, Ordering::Relaxed);
                let resource = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                );
                // A connection that died in the backlog is nothing to wait for.
                backoff = if resource {
                    (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1))
                } else {
                    Duration::from_millis(1)
                };
                if last_line.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
                    last_line = Some(Instant::now());
                    tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "tcp accept failed (further failures are counted, not logged, for a while)");
                }
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let conn = ConnId(next);
        let reset = |stream: TcpStream| {
            // RST rather than FIN: nothing of the refused connection stays with us.
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            drop(stream);
        };
        let admitted = match shield.admit(&stream, remote.ip(), conn) {
            Ok(a) => a,
            Err(_) => {
                reset(stream);
                continue;
            }
        };
        next += 64;
        let local = stream.local_addr().unwrap_or(remote);
        let flow = Flow {
            transport,
            remote,
            local,
            conn: Some(conn),
        };
        match &tls {
            None => {
                let accepted = Accepted {
                    admitted,
                    peer_certs: None,
                };
                tokio::spawn(tcp_connection(
                    stream,
                    flow,
                    tx.clone(),
                    shield.clone(),
                    Some(accepted),
                ));
            }
            Some(server) => {
                let Some(slot) = shield.handshake_slot(remote.ip()) else {
                    drop(admitted);
                    reset(stream);
                    continue;
                };
                tokio::spawn(tls_accepted(
                    stream,
                    server.acceptor(),
                    flow,
                    tx.clone(),
                    shield.clone(),
                    (admitted, slot),
                ));
            }
        }
    }
}

/// The server side of a TLS handshake, bounded by its deadline; then the connection runs as
/// any other. A failed handshake is counted (and its reason kept for the next report), not
/// logged one line each: a scanner must not fill the log.
async fn tls_accepted(
    stream: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    flow: Flow,
    tx: NetTx,
    shield: Arc<Shield>,
    (admitted, slot): (Admitted, HandshakeSlot),
) {
    // The slot goes back before the connection closes, so a client that sees the close may
    // start again at once: the handshake (and the socket it holds) outlives `slot`.
    let mut accept = acceptor.accept(stream).into_fallible();
    let handshake = tokio::time::timeout(shield.handshake_timeout, &mut accept).await;
    drop(slot);
    match handshake {
        Ok(Ok(stream)) => {
            crate::metrics::tls_handshake("server", "ok");
            let peer_certs = stream.get_ref().1.peer_certificates().map(Arc::from);
            let accepted = Accepted {
                admitted,
                peer_certs,
            };
            tcp_connection(stream, flow, tx, shield, Some(accepted)).await;
        }
        Ok(Err((e, _socket))) => {
            crate::metrics::tls_handshake("server", "failed");
            let why = crate::tls::handshake_error(&e);
            tracing::debug!(remote = %flow.remote, error = %why, "tls handshake failed");
            shield.handshake_failed(format!("{}: {why}", flow.remote));
        }
        Err(_) => {
            crate::metrics::tls_handshake("server", "timeout");
            tracing::debug!(remote = %flow.remote, "tls handshake timed out");
            shield.handshake_failed(format!(
                "{}: no handshake within {} ms",
                flow.remote,
                shield.handshake_timeout.as_millis()
            ));
        }
    }
}

/// How often dropped and refused traffic is reported (and accept failures logged).
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// A connection a peer opened: counted against its source, with the certificate it presented
/// over TLS.
struct Accepted {
    admitted: Admitted,
    peer_certs: Option<PeerCerts>,
}

/// Runs one connection until the peer closes it, a deadline passes or the gateway drops it.
/// `accepted` is `None` for connections we opened to agencies: they always count as carrying
/// calls.
async fn tcp_connection<S>(
    stream: S,
    flow: Flow,
    tx: NetTx,
    shield: Arc<Shield>,
    accepted: Option<Accepted>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let Some(conn) = flow.conn else { return };
    let (admitted, peer_certs) = match accepted {
        Some(a) => (Some(a.admitted), a.peer_certs),
        None => (None, None),
    };
    let outbound = admitted.is_none();
    let handle = admitted
        .as_ref()
        .map(|a| a.handle.clone())
        .unwrap_or_default();
    let calls = handle.calls.clone();
    let (write_tx, mut write_rx) = mpsc::channel::<Vec<u8>>(256);
    let opened = NetEvent::ConnOpened {
        conn,
        transport: flow.transport,
        remote: flow.remote,
        writer: write_tx.clone(),
        calls: calls.clone(),
        peer_certs,
    };
    if tx.control(opened).await.is_err() {
        return;
    }
    let carries_call = || outbound || calls.load(Ordering::Relaxed) > 0;
    let mut clock = StreamClock::new(shield.timeouts, Instant::now());
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    let reason = loop {
        let (wake, _) = clock.next(carries_call());
        tokio::select! {
            () = handle.close.notified() => {
                break "closed to make room: the gateway had its total of connections open".to_owned();
            }
            () = tokio::time::sleep_until(wake.into()) => {
                // A call may have started on the connection since the sleep began.
                if let Some(expired) = clock.expired(Instant::now(), carries_call()) {
                    break expired.to_string();
                }
            }
            read = reader.read(&mut buf) => {
                let n = match read {
                    Ok(0) => break "connection closed by peer".to_owned(),
                    Ok(n) => n,
                    Err(e) => break format!("read error: {e}"),
                };
                framer.push(buf.get(..n).unwrap_or_default());
                let mut complete = 0;
                let mut failed = None;
                loop {
                    match framer.next_frame() {
                        Ok(Some(Frame::Message(data))) => {
                            complete += 1;
                            let lane = Lane::of(&data);
                            let Some(route) = shield.route(lane, flow.remote.ip(), &data) else {
                                continue;
                            };
                            if tx.message(flow, data, route, lane, &shield).await.is_err() {
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
                if let Some(a) = admitted.as_ref().filter(|_| complete > 0) {
                    a.activity();
                }
                clock.on_read(Instant::now(), complete, framer.in_message());
            }
            out = write_rx.recv() => {
                let Some(bytes) = out else { break "closed by gateway".to_owned() };
                // TLS buffers what it encrypts: flush so the record leaves now.
                let written = match writer.write_all(&bytes).await {
                    Ok(()) => writer.flush().await,
                    Err(e) => Err(e),
                };
                if let Err(e) = written {
                    break format!("write error: {e}");
                }
            }
        }
    };
    tracing::debug!(%reason, remote = %flow.remote, transport = flow.transport.as_str(), "stream connection ended");
    drop(admitted);
    let _ = tx.control(NetEvent::ConnClosed { flow, reason }).await;
}

/// Opens a TCP (and, for a TLS target, a TLS) connection to an agency; the connection then
/// runs like an accepted one. A failure — refused, timed out, a certificate that fails its
/// check — is reported as a closed connection so the engine fails over at once.
async fn stream_connect(
    remote: SocketAddr,
    tls: Option<TlsPeer>,
    tx: NetTx,
    shield: Arc<Shield>,
    conn: ConnId,
) {
    let transport = if tls.is_some() {
        Transport::Tls
    } else {
        Transport::Tcp
    };
    let what = transport.as_str();
    let connected = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        TcpStream::connect(remote),
    )
    .await;
    let reason = match connected {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            let local = stream.local_addr().unwrap_or(remote);
            let flow = Flow {
                transport,
                remote,
                local,
                conn: Some(conn),
            };
            let Some(peer) = tls else {
                tcp_connection(stream, flow, tx, shield, None).await;
                return;
            };
            let connector = tokio_rustls::TlsConnector::from(peer.config.clone());
            let handshake = tokio::time::timeout(
                shield.handshake_timeout,
                connector.connect(peer.name.clone(), stream),
            )
            .await;
            let outcome = match &handshake {
                Ok(Ok(_)) => "ok",
                Ok(Err(_)) => "failed",
                Err(_) => "timeout",
            };
            crate::metrics::tls_handshake("client", outcome);
            match handshake {
                Ok(Ok(stream)) => {
                    tcp_connection(stream, flow, tx, shield, None).await;
                    return;
                }
                Ok(Err(e)) => format!(
                    "tls handshake with {remote} ({}): {}",
                    peer.target,
                    crate::tls::handshake_error(&e)
                ),
                Err(_) => format!(
                    "tls handshake with {remote} ({}): no answer within {} ms",
                    peer.target,
                    shield.handshake_timeout.as_millis()
                ),
            }
        }
        Ok(Err(e)) => format!("{what} connect to {remote}: {e}"),
        Err(_) => format!("{what} connect to {remote}: timed out"),
    };
    if transport == Transport::Tls {
        tracing::warn!(%reason, "agency connection failed");
    }
    let flow = Flow {
        transport,
        remote,
        local: remote,
        conn: None,
    };
    let _ = tx.control(NetEvent::ConnClosed { flow, reason }).await;
}

/// Outbound connection ids live far above the acceptors' ids.
const FIRST_OUTBOUND: u64 = 1 << 40;

/// A stream peer: the transport and its address.
type PeerKey = (Transport, SocketAddr);

/// The gateway's TCP and TLS connections: accepted ones and those it opened to agencies,
/// which are reused for every request to the same address. A peer that opened a connection
/// and asked for it with `;alias` in its Via (RFC 5923) gets our requests on that connection.
pub struct TcpPool {
    writers: HashMap<ConnId, mpsc::Sender<Vec<u8>>>,
    by_remote: HashMap<PeerKey, ConnId>,
    /// Messages waiting for a connection being opened.
    pending: HashMap<PeerKey, Vec<Vec<u8>>>,
    /// Live calls per connection, shared with the connection's task (its idle time depends on
    /// it). Kept here, from the log records the engine emits anyway, rather than asked of the
    /// engine: the shell already sees every call start and end, and the engine stays as it is.
    calls: HashMap<ConnId, Arc<AtomicU32>>,
    call_conns: HashMap<CallRef, ConnId>,
    /// The certificates peers presented on the TLS connections they opened.
    peer_certs: HashMap<ConnId, PeerCerts>,
    next_outbound: u64,
    events: NetTx,
    shield: Arc<Shield>,
    /// How to reach each TLS target (from the plan; replaced on reload).
    tls_peers: Arc<TlsPeers>,
}

impl TcpPool {
    pub fn new(events: NetTx, shield: Arc<Shield>, tls_peers: Arc<TlsPeers>) -> Self {
        Self {
            writers: HashMap::new(),
            by_remote: HashMap::new(),
            pending: HashMap::new(),
            calls: HashMap::new(),
            call_conns: HashMap::new(),
            peer_certs: HashMap::new(),
            next_outbound: FIRST_OUTBOUND,
            events,
            shield,
            tls_peers,
        }
    }

    /// A reloaded plan's TLS targets. Connections we opened stay as they are (their
    /// certificates passed the checks in force when they opened); connections peers opened
    /// must pass the new checks again before they stand for a target.
    pub fn set_tls_peers(&mut self, peers: Arc<TlsPeers>) {
        self.tls_peers = peers;
        self.by_remote
            .retain(|(t, _), c| *t != Transport::Tls || c.0 >= FIRST_OUTBOUND);
    }

    /// Whether an accepted connection may carry requests for `addr`: over TLS, when the
    /// address is a target, only if the peer's certificate passes its checks (a carrier whose
    /// SBC connects from its own 5061 must not stand in for a pinned target unchecked).
    fn stands_for(
        &self,
        transport: Transport,
        addr: SocketAddr,
        certs: Option<&PeerCerts>,
    ) -> Result<(), String> {
        if transport != Transport::Tls {
            return Ok(());
        }
        match (self.tls_peers.get(&addr), certs) {
            (None, _) => Ok(()),
            (Some(peer), Some(certs)) => peer.vouches_for(certs),
            (Some(_), None) => Err("the peer presented no certificate".to_owned()),
        }
    }

    pub fn opened(
        &mut self,
        conn: ConnId,
        transport: Transport,
        remote: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
        calls: Arc<AtomicU32>,
        peer_certs: Option<PeerCerts>,
    ) {
        let accepted = conn.0 < FIRST_OUTBOUND;
        if !accepted
            || self
                .stands_for(transport, remote, peer_certs.as_ref())
                .is_ok()
        {
            self.by_remote.entry((transport, remote)).or_insert(conn);
        }
        if let Some(certs) = peer_certs {
            self.peer_certs.insert(conn, certs);
        }
        for bytes in self
            .pending
            .remove(&(transport, remote))
            .unwrap_or_default()
        {
            let _ = writer.try_send(bytes);
        }
        self.writers.insert(conn, writer);
        self.calls.insert(conn, calls);
    }

    pub fn closed(&mut self, flow: &Flow) {
        if let Some(conn) = flow.conn {
            self.writers.remove(&conn);
            self.calls.remove(&conn);
            self.peer_certs.remove(&conn);
            self.by_remote.retain(|_, c| *c != conn);
        }
        self.pending.remove(&(flow.transport, flow.remote));
    }

    /// RFC 5923: a request that came on a connection the peer opened, whose top Via asks
    /// with `;alias`, makes that connection the way to the Via's address. Only an address on
    /// the connection's own source IP is taken (the connection proves the IP, not a claim
    /// about another host), and a connection already serving that address stays. Over TLS the
    /// address must be a TLS target and the certificate the peer presented must pass that
    /// target's checks (§5): a pinned target is never reached over an unchecked connection.
    pub fn learn_alias(&mut self, flow: Flow, message: &[u8]) {
        let Some(conn) = flow.conn.filter(|c| c.0 < FIRST_OUTBOUND) else {
            return;
        };
        let Some(alias) =
            siaga_engine::sip::alias::via_alias(message, flow.transport.default_port())
        else {
            return;
        };
        if alias.ip() != flow.remote.ip() || !self.writers.contains_key(&conn) {
            return;
        }
        let key = (flow.transport, alias);
        let current = self.by_remote.get(&key).copied();
        if current == Some(conn) {
            return;
        }
        if flow.transport == Transport::Tls {
            let verdict = if self.tls_peers.contains_key(&alias) {
                self.stands_for(flow.transport, alias, self.peer_certs.get(&conn))
            } else {
                Err("not a TLS target of the dialplan".to_owned())
            };
            if let Err(why) = verdict {
                tracing::debug!(remote = %flow.remote, %alias, %why, "tls alias not taken");
                return;
            }
        }
        if current.is_none_or(|c| !self.writers.contains_key(&c)) {
            // One alias per connection: an earlier one of this connection is forgotten.
            self.by_remote
                .retain(|(_, addr), c| *c != conn || *addr == flow.remote);
            self.by_remote.insert(key, conn);
        }
    }

    /// Follows calls starting and ending on stream connections (from the engine's log records).
    pub fn observe(&mut self, record: &LogRecord) {
        match record {
            LogRecord::CallStarted(started) => {
                let Some(conn) = started.flow.conn else {
                    return;
                };
                if let Some(count) = self.calls.get(&conn) {
                    count.fetch_add(1, Ordering::Relaxed);
                    self.call_conns.insert(started.call, conn);
                }
            }
            LogRecord::CallEnded { call, .. } => {
                let Some(conn) = self.call_conns.remove(call) else {
                    return;
                };
                if let Some(count) = self.calls.get(&conn) {
                    count.fetch_sub(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }

    /// Sends on the flow's connection, on any open connection to the same peer, or opens one.
    pub fn send(&mut self, flow: Flow, bytes: Vec<u8>) -> Result<(), String> {
        let what = flow.transport.as_str();
        let key = (flow.transport, flow.remote);
        let conn = flow
            .conn
            .filter(|c| self.writers.contains_key(c))
            .or_else(|| self.by_remote.get(&key).copied());
        if let Some(writer) = conn.and_then(|c| self.writers.get(&c)) {
            return writer
                .try_send(bytes)
                .map_err(|e| format!("{what} send to {}: {e}", flow.remote));
        }
        if flow.conn.is_some_and(|c| c.0 < FIRST_OUTBOUND) {
            // The peer's connection is gone and its address is an ephemeral port: connecting
            // there would fail, and a source that keeps closing would have us keep trying.
            return Err(format!("{what} send to {}: connection closed", flow.remote));
        }
        let tls = match flow.transport {
            Transport::Tls => Some(self.tls_peers.get(&flow.remote).cloned().ok_or_else(|| {
                format!(
                    "tls to {}: not a TLS target of the dialplan, so there is no certificate \
                     check for it",
                    flow.remote
                )
            })?),
            _ => None,
        };
        if let Some(queue) = self.pending.get_mut(&key) {
            queue.push(bytes);
            return Ok(());
        }
        self.pending.insert(key, vec![bytes]);
        let conn = ConnId(self.next_outbound);
        self.next_outbound += 1;
        tokio::spawn(stream_connect(
            flow.remote,
            tls,
            self.events.clone(),
            self.shield.clone(),
            conn,
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shield(limits: &TransportLimits) -> Arc<Shield> {
        let plan = concat!(env!("CARGO_MANIFEST_DIR"), "/dialplans/default.toml");
        let plan = crate::plan::load(&[plan.into()]).expect("the default plan");
        Arc::new(Shield::new(limits, 1 << 20, plan))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// A source holding its share of the call queue has its further call traffic sent the
    /// bulk way, except emergency INVITEs; handled messages give their places back.
    #[test]
    fn a_source_at_its_share_of_the_call_queue_goes_the_bulk_way_but_not_its_112_invites() {
        let limits = TransportLimits {
            source_queue_share: 2,
            ..TransportLimits::default()
        };
        let shield = shield(&limits);
        let bye = b"BYE sip:x SIP/2.0\r\n\r\n";
        let queued: Vec<Route> = (0..2)
            .filter_map(|_| shield.route(Lane::Call, ip("192.0.2.1"), bye))
            .collect();
        assert!(queued.iter().all(|r| matches!(r, Route::Call(Some(_)))));
        let over = shield.route(Lane::Call, ip("192.0.2.1"), bye);
        assert!(matches!(over, Some(Route::Bulk)));
        let spam = b"INVITE sip:0811111111@gw SIP/2.0\r\n\r\n";
        assert!(matches!(
            shield.route(Lane::Invite, ip("192.0.2.1"), spam),
            Some(Route::Bulk)
        ));
        let call = b"INVITE sip:112@gw SIP/2.0\r\n\r\n";
        assert!(matches!(
            shield.route(Lane::Invite, ip("192.0.2.1"), call),
            Some(Route::Call(None))
        ));
        // Another source has its own share.
        assert!(matches!(
            shield.route(Lane::Call, ip("192.0.2.2"), bye),
            Some(Route::Call(Some(_)))
        ));
        drop(queued);
        assert!(matches!(
            shield.route(Lane::Call, ip("192.0.2.1"), bye),
            Some(Route::Call(Some(_)))
        ));
        let report = shield.take_report().expect("a report");
        assert!(
            report.contains("2 call message(s) sent the bulk way"),
            "{report}"
        );
    }

    /// Over the INVITE budget, what dials an emergency number passes by the plan in force:
    /// a reload that adds a number makes it pass too.
    #[test]
    fn the_emergency_check_follows_the_reloaded_plan() {
        let limits = TransportLimits {
            source_invites_per_s: 0,
            source_invite_burst: 1,
            ..TransportLimits::default()
        };
        let shield = shield(&limits);
        let other = b"INVITE sip:999@gw SIP/2.0\r\n\r\n";
        assert!(shield.route(Lane::Invite, ip("192.0.2.1"), other).is_some());
        assert!(shield.route(Lane::Invite, ip("192.0.2.1"), other).is_none());
        let dir = tempfile::tempdir().expect("dir");
        let text = include_str!("../dialplans/default.toml")
            .replace("numbers = [\"112\"]", "numbers = [\"112\", \"999\"]")
            .replace(
                "prompt_dir = \"prompts\"",
                concat!(
                    "prompt_dir = \"",
                    env!("CARGO_MANIFEST_DIR"),
                    "/dialplans/prompts\""
                ),
            );
        let path = dir.path().join("plan.toml");
        std::fs::write(&path, text).expect("write plan");
        let plan = crate::plan::load(&[path]).expect("the edited plan");
        shield.set_plan(plan, [ip("203.0.113.9")]);
        assert!(shield.route(Lane::Invite, ip("192.0.2.1"), other).is_some());
        // The plan's agencies are exempt from the budgets.
        assert!((0..10).all(|_| {
            shield
                .route(Lane::Invite, ip("203.0.113.9"), other)
                .is_some()
        }));
    }
}
