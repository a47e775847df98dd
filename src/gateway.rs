//! The engine task: owns the engine, feeds it network and media events with the time they
//! happened, drains every output after each input, and keeps exactly one timer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

use siaga_engine::dialplan::Dialplan;
use siaga_engine::io::{Flow, Input, Output, Transport};
use siaga_engine::transaction::TimerConfig;
use siaga_engine::{Directory, Engine, EngineConfig, Hop};

use crate::calllog::{self, CallLog};
use crate::config::{Listen, Settings};
use crate::media::{MediaEventOut, MediaManager};
use crate::transport::{self, NetEvent};

/// Sockets bound before the gateway runs, so tests can bind port 0 and read the address.
pub struct Bound {
    pub udp: Vec<Arc<UdpSocket>>,
    pub tcp: Vec<TcpListener>,
    /// TLS listeners: TCP sockets whose connections start with a TLS handshake.
    pub tls: Vec<TcpListener>,
    /// Their certificate (see [`tls_server_for`]).
    pub tls_server: Option<Arc<crate::tls::TlsServer>>,
    /// The HTTP listener (metrics, health), if configured and bound.
    pub http: Option<TcpListener>,
}

impl Bound {
    /// The bound listener addresses by transport.
    pub fn listeners(&self) -> Vec<(Transport, SocketAddr)> {
        let mut out = Vec::new();
        for s in &self.udp {
            if let Ok(a) = s.local_addr() {
                out.push((Transport::Udp, a));
            }
        }
        for l in &self.tcp {
            if let Ok(a) = l.local_addr() {
                out.push((Transport::Tcp, a));
            }
        }
        for l in &self.tls {
            if let Ok(a) = l.local_addr() {
                out.push((Transport::Tls, a));
            }
        }
        out
    }

    /// The bound addresses as `udp ADDR` / `tcp ADDR` lines (printed at start-up).
    pub fn describe(&self) -> Vec<String> {
        self.listeners()
            .into_iter()
            .map(|(t, a)| format!("{} {a}", t.as_str()))
            .collect()
    }
}

fn socket_for(addr: SocketAddr, kind: socket2::Type) -> std::io::Result<socket2::Socket> {
    let domain = socket2::Domain::for_address(addr);
    let protocol = if kind == socket2::Type::DGRAM {
        socket2::Protocol::UDP
    } else {
        socket2::Protocol::TCP
    };
    let socket = socket2::Socket::new(domain, kind, Some(protocol))?;
    if addr.is_ipv6() {
        // [::] must not also claim IPv4, which has its own listener.
        socket.set_only_v6(true)?;
    }
    if kind == socket2::Type::STREAM {
        // On Linux this only lets a restart bind past connections in TIME_WAIT; a second
        // listener on the same port is still refused. On UDP it would let a second gateway
        // share the port and silently take the calls: never there.
        socket.set_reuse_address(true)?;
    }
    socket.set_nonblocking(true)?;
    if kind == socket2::Type::DGRAM {
        // Bursts of INVITEs must not overflow the kernel queue.
        let _ = socket.set_recv_buffer_size(4 << 20);
    }
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Binds every listener. An IPv6 wildcard that the host cannot provide is skipped with a
/// warning; anything else that fails to bind is an error naming the listener.
pub fn bind(listen: &[Listen]) -> anyhow::Result<Bound> {
    let mut bound = Bound {
        udp: Vec::new(),
        tcp: Vec::new(),
        tls: Vec::new(),
        tls_server: None,
        http: None,
    };
    for l in listen {
        let result = match l.transport {
            Transport::Udp => socket_for(l.addr, socket2::Type::DGRAM).and_then(|s| {
                let std_socket: std::net::UdpSocket = s.into();
                UdpSocket::from_std(std_socket).map(|s| bound.udp.push(Arc::new(s)))
            }),
            Transport::Tcp | Transport::Tls => {
                socket_for(l.addr, socket2::Type::STREAM).and_then(|s| {
                    s.listen(1024)?;
                    let std_listener: std::net::TcpListener = s.into();
                    let list = match l.transport {
                        Transport::Tls => &mut bound.tls,
                        _ => &mut bound.tcp,
                    };
                    TcpListener::from_std(std_listener).map(|l| list.push(l))
                })
            }
        };
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
                "cannot listen on {l}: the address is already in use (is another gateway \
                 running on it?)"
            ),
            Err(e) if l.addr.is_ipv6() && l.addr.ip().is_unspecified() => {
                tracing::warn!(listen = %l, error = %e, "IPv6 listener skipped");
            }
            Err(e) => return Err(e).with_context(|| format!("cannot listen on {l}")),
        }
    }
    Ok(bound)
}

/// Runs the gateway until `shutdown` resolves, then drains live calls.
pub async fn run(
    settings: Settings,
    plan: Arc<Dialplan>,
    mut bound: Bound,
    lock: Option<crate::restart::CallLogLock>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // Before the call log's recovery closes them: the calls a crash left open (their legs
    // get a BYE below, their recordings' ends decide their end times). `lock` says no other
    // gateway is on this log.
    // On a thread of its own: PostgreSQL's client runs a runtime of its own, which cannot be
    // started from this one's threads.
    let listeners = bound.listeners();
    let (left_open, started) = std::thread::scope(|s| {
        s.spawn(|| {
            let left_open = match &settings.log.url {
                None => crate::restart::prepare(&settings.db, &settings.log.spill_dir, &listeners),
                Some(url) => crate::restart::prepare_node(url, &settings.log.node, &listeners),
            };
            (
                left_open,
                CallLog::start_with(&settings.db, settings.log.clone()),
            )
        })
        .join()
    })
    .map_err(|_| anyhow::anyhow!("the call log's start-up panicked"))?;
    let (calllog, writer, recovery) = started?;
    let bound_description = bound.describe();
    // Held until the gateway stops: a later start on this log then knows its calls are live.
    let _call_log_lock = match (lock, &settings.log.url) {
        (Some(lock), _) => Some(lock),
        (None, None) => crate::restart::CallLogLock::acquire(&settings.db)?,
        (None, Some(_)) => None,
    };
    // A node of a shared database beats until the gateway stops, and closes lost nodes' calls.
    let _heartbeat = match &settings.log.url {
        Some(url) => Some(calllog::nodes::Heartbeat::start(
            url.clone(),
            settings.log.node.clone(),
        )?),
        None => None,
    };
    calllog.send(calllog::Write::Event {
        at_ms: calllog::now_ms(),
        kind: calllog::GatewayEventKind::Start,
        detail: format!("listening on {}", bound_description.join(", ")),
    });
    // Before any call: every call's class uses the thresholds of the plan running when its
    // signals are logged.
    calllog.send(calllog::Write::ClassRules(plan.classify_rules().clone()));
    let cfg = EngineConfig {
        timers: TimerConfig {
            t1: settings.t1,
            t2: settings.t2,
            t4: settings.t4,
        },
        first_call_ref: recovery.next_call_ref,
        seed: seed(),
        ring_delay: settings.ring_delay,
        max_call_duration: settings.max_call_duration,
        cells: load_cell_table(settings.cell_table.as_deref())?,
        default_location: settings.default_location.map(|(lat, lon, radius)| {
            siaga_location::DefaultLocation::circle(
                siaga_location::Coordinate::new(lat, lon),
                siaga_location::Meters(radius),
            )
        }),
        element_domain: settings.element_domain.clone(),
        noncall: settings.noncall,
        trusted_sources: settings.transport_limits.trusted.clone(),
        load_balancers: settings.load_balancers.clone(),
        silent_caller_probe: siaga_engine::SilentCallerProbe {
            reprobe: settings.probe_every,
        },
        log_personal_data: settings.log_personal_data,
    };
    let listeners = bound.listeners();
    let metrics = crate::metrics::Metrics::install();
    crate::metrics::register_routes(&plan);
    let health = Arc::new(crate::http::Health {
        draining: std::sync::atomic::AtomicBool::new(false),
        calllog: calllog.clone(),
        recordings: settings.recordings.clone(),
        spill_dir: settings.log.spill_dir.clone(),
    });
    // Issue 11 item 6: the daily retention sweep (off unless [retention] sets a period).
    crate::evidence::spawn_daily_retention(
        settings.db.clone(),
        settings.log.url.clone(),
        settings.log.node.clone(),
        settings.retention,
    );
    let console = crate::console::Console::new(crate::console::ConsoleSettings {
        db: settings.db.clone(),
        log_url: settings.log.url.clone(),
        recordings: settings.recordings.clone(),
        secure_cookies: settings.http_tls.is_some(),
        utc_offset_minutes: settings.utc_offset_minutes,
        routes: plan
            .routes()
            .map(|r| r.base.id.as_str().to_owned())
            .collect(),
        key_dir: settings.key_dir.clone(),
    });
    let http = bound.http.take().map(|listener| {
        tokio::spawn(crate::http::serve(
            listener,
            metrics.clone(),
            health.clone(),
            Some(console.clone()),
            settings.http_tls.clone(),
        ))
    });
    let mut gauges = tokio::time::interval(std::time::Duration::from_secs(1));
    gauges.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut engine = Engine::new(cfg, plan.clone(), Instant::now());
    engine.set_local_time(local_time(settings.utc_offset_minutes));
    let mut clock = tokio::time::interval(std::time::Duration::from_secs(20));
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

    let (net_tx, mut net_rx) = transport::NetTx::new();
    let (media_tx, mut media_rx) = mpsc::channel::<MediaEventOut>(65_536);
    let (fd_limit, _) = transport::fd_limit().context("reading the open-file limit")?;
    let shield = Arc::new(transport::Shield::new(
        &settings.transport_limits,
        fd_limit,
        plan.clone(),
    ));
    let tls_server = match bound.tls_server.take() {
        Some(server) => Some(server),
        None if bound.tls.is_empty() => None,
        None => tls_server_for(&settings)?,
    };
    let (directory, tls_peers) = directory_for(&plan, &listeners)
        .map_err(|e| anyhow::anyhow!("the dialplan's TLS targets:\n{e}"))?;
    shield.set_plan(plan.clone(), agency_addresses(&directory));
    engine.set_directory(directory);
    let mut udp_by_local: HashMap<(bool, u16), Arc<UdpSocket>> = HashMap::new();
    for s in &bound.udp {
        let local = s.local_addr()?;
        udp_by_local.insert((local.is_ipv4(), local.port()), s.clone());
        tokio::spawn(transport::udp_reader(
            s.clone(),
            net_tx.clone(),
            shield.clone(),
        ));
    }
    for (i, l) in bound.tcp.into_iter().enumerate() {
        tokio::spawn(transport::tcp_acceptor(
            l,
            net_tx.clone(),
            shield.clone(),
            i as u64 + 1,
        ));
    }
    if let Some(server) = &tls_server {
        for (i, l) in bound.tls.into_iter().enumerate() {
            tokio::spawn(transport::tls_acceptor(
                l,
                net_tx.clone(),
                shield.clone(),
                32 + i as u64,
                server.clone(),
            ));
        }
    }
    let reporter = tokio::spawn(report_limits(shield.clone(), calllog.clone()));
    crate::memory::spawn_trimmer();
    let mut media = MediaManager::new(&settings, media_tx, calllog.clone(), recovery.unfinished);
    let mut out = Outputs {
        udp: udp_by_local,
        calllog: calllog.clone(),
        tcp: transport::TcpPool::new(net_tx, shield.clone(), Arc::new(tls_peers)),
        calls: crate::metrics::CallTracker::default(),
        capture: crate::capture::Capture::start(&settings.capture).await?,
    };
    restart_byes(&mut engine, left_open, &calllog);
    drain(&mut engine, &mut out, &mut media).await;
    let systemd = crate::systemd::Notifier::from_env();
    let watchdog_on = systemd.watchdog_every().is_some();
    let mut watchdog = tokio::time::interval(
        systemd
            .watchdog_every()
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_millis(100)),
    );
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // The call log and the recordings are probed off the engine's task; OPTIONS follows.
    let (storage_tx, mut storage_rx) = tokio::sync::watch::channel(true);
    let storage_probe = tokio::spawn(probe_storage(health.clone(), storage_tx));
    systemd.ready(&format!("taking calls on {}", bound_description.join(", ")));

    tokio::pin!(shutdown);
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let mut draining_since: Option<Instant> = None;
    // Reloads read files and resolve agency host names (blocking DNS): off the engine task.
    let (reloaded_tx, mut reloaded_rx) = mpsc::channel::<Reloaded>(4);
    // The supervisors' number lists, re-read every few seconds and on SIGHUP.
    let (lists_tx, mut lists_rx) = mpsc::channel::<Vec<calllog::numbers::ListRow>>(2);
    let (reread_tx, reread_rx) = mpsc::channel::<()>(1);
    let lists_reader = tokio::spawn(read_number_lists(
        (settings.db.clone(), settings.log.url.clone()),
        settings.number_lists_every,
        lists_tx,
        reread_rx,
    ));
    let mut lists_in_force = None;
    // Numbers with genuine calls in the last year: never challenged during a flood.
    let (genuine_tx, mut genuine_rx) = mpsc::channel::<Vec<String>>(1);
    let genuine_reader = tokio::spawn(read_genuine_numbers(
        (settings.db.clone(), settings.log.url.clone()),
        genuine_tx,
    ));
    loop {
        // While draining, wake at the drain deadline too: a gateway with nothing left to do
        // must still notice that the time is up.
        let drain_deadline = draining_since.map(|since| since + settings.drain_timeout);
        let deadline = match (engine.poll_timeout(), drain_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = &mut shutdown, if draining_since.is_none() => {
                tracing::info!(live = engine.active_calls(), "draining: new calls get 503, live calls continue");
                draining_since = Some(Instant::now());
                health.draining.store(true, std::sync::atomic::Ordering::Relaxed);
                engine.handle_input(Instant::now(), Input::Drain);
                systemd.stopping(&format!("draining: {} live calls", engine.active_calls()));
            }
            _ = hangup.recv() => {
                let _ = reread_tx.try_send(());
                if let Some(server) = &tls_server {
                    reload_tls_certificate(server.clone());
                }
                let files = settings.dialplans.clone();
                let listeners = listeners.clone();
                let done = reloaded_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let result = crate::plan::load(&files).and_then(|plan| {
                        let (directory, peers) = directory_for(&plan, &listeners)?;
                        Ok((plan, directory, peers))
                    });
                    let _ = done.blocking_send(result);
                });
            }
            reloaded = reloaded_rx.recv() => {
                if let Some(result) = reloaded {
                    apply_reload(&mut engine, &shield, &mut out.tcp, result, &calllog);
                }
            }
            Some(rows) = lists_rx.recv() => {
                apply_number_lists(&mut engine, &rows, &mut lists_in_force);
            }
            Some(numbers) = genuine_rx.recv() => {
                let country = engine.plan().centre().country_code.clone();
                let set = numbers
                    .iter()
                    .filter_map(|n| siaga_dialplan::CallerNumber::normalise(n, country.as_deref()).ok())
                    .collect();
                engine.set_genuine_numbers(Arc::new(set));
            }
            _ = clock.tick() => {
                engine.set_local_time(local_time(settings.utc_offset_minutes));
            }
            _ = gauges.tick() => {
                crate::metrics::engine_gauges(&engine);
                console.set_live(engine.live_calls());
            }
            _ = watchdog.tick(), if watchdog_on => systemd.alive(),
            Ok(()) = storage_rx.changed() => {
                let healthy = *storage_rx.borrow_and_update();
                engine.handle_input(Instant::now(), Input::StorageHealthy(healthy));
                storage_changed(healthy, &calllog, &systemd);
            }
            ev = media_rx.recv() => {
                let Some(ev) = ev else { break };
                engine.handle_input(Instant::now(), Input::Media { call: ev.call, leg: ev.leg, event: ev.event });
            }
            ev = net_rx.priority.recv() => {
                let Some(ev) = ev else { break };
                handle_net(&mut engine, &mut out, ev);
            }
            () = sleep => {
                engine.handle_input(Instant::now(), Input::Timeout);
            }
            // Last: traffic that is not a call waits behind calls and timers.
            ev = net_rx.bulk.recv() => {
                let Some(ev) = ev else { break };
                handle_net(&mut engine, &mut out, ev);
            }
        }
        // A flood of SIP must not starve the timers (retransmissions, ring timeouts, the
        // IVR): whatever came in, due timers run before the next input.
        if engine.poll_timeout().is_some_and(|at| at <= Instant::now()) {
            engine.handle_input(Instant::now(), Input::Timeout);
        }
        drain(&mut engine, &mut out, &mut media).await;
        if let Some(since) = draining_since {
            if engine.is_idle() {
                break;
            }
            if since.elapsed() >= settings.drain_timeout {
                // Calls still up after the drain time: hang them up properly (BYE both
                // ways, a CallEnded each) rather than vanish.
                tracing::warn!(
                    live = engine.active_calls(),
                    "drain time over: hanging up the remaining calls"
                );
                engine.hang_up_all(Instant::now());
                drain(&mut engine, &mut out, &mut media).await;
                break;
            }
        }
    }
    tracing::info!(live = engine.active_calls(), "gateway stopped");
    // The HTTP task holds the call log (readiness): it ends before the log's writer is joined.
    if let Some(http) = http {
        http.abort();
        let _ = http.await;
    }
    storage_probe.abort();
    let _ = storage_probe.await;
    drop(health);
    shield.left_at_stop(&mut net_rx.bulk);
    engine.flush_noncall_counts(Instant::now());
    drain(&mut engine, &mut out, &mut media).await;
    // The reporter holds the call log open: stop it, then report what is left.
    lists_reader.abort();
    genuine_reader.abort();
    reporter.abort();
    let _ = reporter.await;
    report_once(&shield, &calllog);
    media.shutdown().await;
    // The legs released last report their callers' voice totals on the way out.
    while let Ok(ev) = media_rx.try_recv() {
        let input = Input::Media {
            call: ev.call,
            leg: ev.leg,
            event: ev.event,
        };
        engine.handle_input(Instant::now(), input);
    }
    engine.flush_call_signals();
    drain(&mut engine, &mut out, &mut media).await;
    calllog.send(calllog::Write::Event {
        at_ms: calllog::now_ms(),
        kind: calllog::GatewayEventKind::Stop,
        detail: format!("{} call(s) still live at stop", engine.active_calls()),
    });
    if let Some(capture) = out.capture.take() {
        capture.finish().await;
    }
    drop(out);
    drop(calllog);
    drop(media);
    writer.join();
    Ok(())
}

/// Probes the call log and the recordings every second and publishes whether both take
/// writes (the watch only wakes the engine's loop on a change).
async fn probe_storage(
    health: Arc<crate::http::Health>,
    healthy: tokio::sync::watch::Sender<bool>,
) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        let health = health.clone();
        let Ok((calllog, recordings)) = tokio::task::spawn_blocking(move || health.storage()).await
        else {
            continue;
        };
        healthy.send_if_modified(|was| {
            let now = calllog && recordings;
            if now != *was {
                if !now {
                    tracing::warn!(
                        calllog_writable = calllog,
                        recordings_writable = recordings,
                        "storage failing: OPTIONS answers 503 so a load balancer sends new calls elsewhere"
                    );
                }
                *was = now;
                true
            } else {
                false
            }
        });
    }
}

/// A change of the storage's health: on the gateway's events (the log may be the thing that
/// fails: the record waits in the writer's queue or spill) and in systemd's status.
fn storage_changed(healthy: bool, calllog: &CallLog, systemd: &crate::systemd::Notifier) {
    let (kind, detail) = if healthy {
        (
            calllog::GatewayEventKind::Ready,
            "call log and recordings take writes again: OPTIONS answers 200",
        )
    } else {
        (
            calllog::GatewayEventKind::Unready,
            "call log or recordings not writable: OPTIONS answers 503, calls that still come are answered",
        )
    };
    tracing::info!(healthy, "{detail}");
    systemd.status(detail);
    calllog.send(calllog::Write::Event {
        at_ms: calllog::now_ms(),
        kind,
        detail: detail.to_owned(),
    });
}

/// Hands the engine a BYE for every leg a crash left up; they leave with the first drain.
fn restart_byes(engine: &mut Engine, left: crate::restart::LeftOpen, calllog: &CallLog) {
    if left.calls == 0 {
        return;
    }
    let legs = left.dialogs.len();
    tracing::warn!(
        calls = left.calls,
        legs,
        "calls left open by a stop (crash or kill): BYE to every leg that was up"
    );
    calllog.send(calllog::Write::Event {
        at_ms: calllog::now_ms(),
        kind: calllog::GatewayEventKind::RestartByes,
        detail: format!(
            "{legs} leg(s) of the {} call(s) left open by the last stop were up: each gets a BYE",
            left.calls
        ),
    });
    for dialog in left.dialogs {
        engine.handle_input(Instant::now(), Input::ByeAfterRestart(Box::new(dialog)));
    }
}

/// The TLS listeners' certificate, when there are any: read before anything listens, so a
/// missing or bad file stops the start with its name.
pub fn tls_server_for(settings: &Settings) -> anyhow::Result<Option<Arc<crate::tls::TlsServer>>> {
    if !settings
        .listen
        .iter()
        .any(|l| l.transport == Transport::Tls)
    {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) else {
        anyhow::bail!(
            "a tls: listener needs a certificate and its key: set sip.tls_cert and sip.tls_key \
             (or --tls-cert and --tls-key)"
        );
    };
    let server = crate::tls::TlsServer::load(cert, key).with_context(|| {
        format!(
            "loading the TLS listener's certificate ({}, {})",
            settings.origin("sip.tls_cert"),
            settings.origin("sip.tls_key")
        )
    })?;
    if let Some(pin) = server.fingerprint() {
        tracing::info!(sha256 = %pin, "tls certificate loaded");
    }
    Ok(Some(Arc::new(server)))
}

/// SIGHUP: the TLS listener's certificate and key are read again, off the engine task; a bad
/// pair keeps the old one. Connections and calls already up are not touched.
fn reload_tls_certificate(server: Arc<crate::tls::TlsServer>) {
    tokio::task::spawn_blocking(move || match server.reload() {
        Ok(pin) => {
            tracing::info!(sha256 = %pin, "tls certificate reloaded");
            println!("tls certificate reloaded: sha256 {pin}");
        }
        Err(e) => {
            tracing::error!("tls certificate rejected, keeping the old one: {e:#}");
            println!("tls certificate rejected, keeping the old one");
        }
    });
}

/// Resolves every agency target of the plan: DNS for host names, and our local address on the
/// path to each (the engine puts it in Via, Contact and SDP). Unresolvable targets are left
/// out; the engine then skips them to the next target and logs why. TLS targets also get
/// their certificate checks and client certificates, read from their files: one that cannot
/// be read rejects the plan.
fn directory_for(
    plan: &Dialplan,
    listeners: &[(Transport, SocketAddr)],
) -> Result<(Directory, crate::tls::TlsPeers), String> {
    use std::net::ToSocketAddrs;
    let mut locals = transport::LocalAddrCache::default();
    let mut hops = HashMap::new();
    for target in plan.targets() {
        let Some(key) = Directory::key_of(target.uri.as_str()) else {
            continue;
        };
        if hops.contains_key(&key) {
            continue;
        }
        let transport = siaga_engine::agency_transport(target.transport);
        let port = target.uri.port().unwrap_or(transport.default_port());
        let remote = (target.uri.host(), port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next());
        let Some(remote) = remote else {
            tracing::warn!(target = %target.uri, "agency target does not resolve");
            continue;
        };
        let local_for = |t: Transport, locals: &mut transport::LocalAddrCache| {
            listeners
                .iter()
                .find(|(lt, a)| *lt == t && a.is_ipv4() == remote.is_ipv4())
                .map(|(_, a)| locals.resolve(*a, remote))
        };
        let hop = Hop {
            remote,
            local_udp: local_for(Transport::Udp, &mut locals),
            local_tcp: local_for(Transport::Tcp, &mut locals),
            local_tls: local_for(Transport::Tls, &mut locals),
        };
        hops.insert(key, hop);
    }
    let resolved = hops.iter().map(|(k, h)| (k.clone(), h.remote)).collect();
    let peers = crate::tls::peers_for(plan, &resolved)?;
    let directory = Directory {
        hops,
        listeners: listeners.to_vec(),
    };
    Ok((directory, peers))
}

/// The addresses of the plan's agencies: the transport exempts them from its budgets.
fn agency_addresses(directory: &Directory) -> Vec<std::net::IpAddr> {
    directory.hops.values().map(|hop| hop.remote.ip()).collect()
}

/// The centre's local civil time (weekday + HH:MM) from the clock and the configured offset.
fn local_time(utc_offset_minutes: i32) -> siaga_engine::dialplan::LocalTime {
    siaga_engine::dialplan::LocalTime::from_unix(calllog::now_ms() / 1000, utc_offset_minutes)
}

/// Reads the cell table; a bad line is an error naming file, line and what to change.
pub(crate) fn load_cell_table(
    path: Option<&std::path::Path>,
) -> anyhow::Result<Option<Arc<siaga_location::CellTable>>> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading cell table {}", path.display()))?;
    siaga_location::CellTable::parse_csv(&text)
        .map(|t| Some(Arc::new(t)))
        .map_err(|errors| {
            let lines: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {e}", path.display()))
                .collect();
            anyhow::anyhow!("the cell table has errors:\n{}", lines.join("\n"))
        })
}

/// A plan read and resolved off the engine task, or why it was refused.
type Reloaded = Result<(Arc<Dialplan>, Directory, crate::tls::TlsPeers), String>;

/// SIGHUP: swap the dialplan all-or-nothing. A bad plan is rejected and logged; the old one
/// stays, and calls in progress keep the plan they started with either way.
fn apply_reload(
    engine: &mut Engine,
    shield: &transport::Shield,
    streams: &mut transport::TcpPool,
    result: Reloaded,
    calllog: &CallLog,
) {
    let (kind, detail) = match result {
        Ok((plan, directory, tls_peers)) => {
            streams.set_tls_peers(Arc::new(tls_peers));
            let name = plan.centre().name.clone();
            shield.set_plan(plan.clone(), agency_addresses(&directory));
            crate::metrics::register_routes(&plan);
            calllog.send(calllog::Write::ClassRules(plan.classify_rules().clone()));
            engine.set_directory(directory);
            engine.set_plan(plan);
            tracing::info!("dialplan reloaded");
            println!("dialplan reloaded: now serving \"{name}\"");
            crate::metrics::dialplan_reload("applied");
            (
                calllog::GatewayEventKind::DialplanReloaded,
                format!("now serving \"{name}\""),
            )
        }
        Err(errors) => {
            tracing::error!("dialplan rejected, keeping the old one:\n{errors}");
            println!("dialplan rejected, keeping the old one");
            crate::metrics::dialplan_reload("rejected");
            (calllog::GatewayEventKind::DialplanRejected, errors)
        }
    };
    calllog.send(calllog::Write::Event {
        at_ms: calllog::now_ms(),
        kind,
        detail,
    });
}

/// Reads the live watch and block entries every `every` and when nudged (SIGHUP), off the
/// engine task. A log that cannot be read keeps the last snapshot in force (its entries
/// still expire on time) and is reported once per new reason.
async fn read_number_lists(
    (db, url): (std::path::PathBuf, Option<String>),
    every: std::time::Duration,
    out: mpsc::Sender<Vec<calllog::numbers::ListRow>>,
    mut reread: mpsc::Receiver<()>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_error = String::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            nudge = reread.recv() => if nudge.is_none() { return },
        }
        let (path, url) = (db.clone(), url.clone());
        let read = tokio::task::spawn_blocking(move || {
            let conn = calllog::open_reader(&path, url.as_deref())?;
            anyhow::Ok(calllog::numbers::live(&conn, calllog::now_ms())?)
        })
        .await;
        match read {
            Ok(Ok(rows)) => {
                last_error.clear();
                if out.send(rows).await.is_err() {
                    return;
                }
            }
            Ok(Err(e)) if e.to_string() != last_error => {
                last_error = e.to_string();
                tracing::warn!(error = %e, "cannot read the number lists; the last ones stay in force");
            }
            _ => {}
        }
    }
}

/// Reads the numbers with genuine calls in the last year at start and every minute (they
/// change slowly: a class is set when a call ends).
async fn read_genuine_numbers(
    (db, url): (std::path::PathBuf, Option<String>),
    out: mpsc::Sender<Vec<String>>,
) {
    const YEAR_MS: i64 = 365 * 24 * 3600 * 1000;
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let (path, url) = (db.clone(), url.clone());
        let read = tokio::task::spawn_blocking(move || {
            let conn = calllog::open_reader(&path, url.as_deref())?;
            let since = calllog::now_ms() - YEAR_MS;
            anyhow::Ok(calllog::numbers::genuine_numbers(&conn, since)?)
        })
        .await;
        match read {
            Ok(Ok(numbers)) => {
                if out.send(numbers).await.is_err() {
                    return;
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot read the numbers with genuine calls"),
            Err(_) => {}
        }
    }
}

/// Hands the engine the lists as read, expiries on its clock; says so when they change.
fn apply_number_lists(
    engine: &mut Engine,
    rows: &[calllog::numbers::ListRow],
    in_force: &mut Option<Vec<calllog::numbers::ListRow>>,
) {
    let country = engine.plan().centre().country_code.clone();
    let lists =
        calllog::numbers::snapshot(rows, calllog::now_ms(), Instant::now(), country.as_deref());
    if in_force.as_deref() != Some(rows) {
        // Also on stdout, like a reload's verdict: an operator (or a test) sees it applied.
        tracing::info!(entries = lists.len(), "number lists read");
        println!("number lists: {} entries in force", lists.len());
        *in_force = Some(rows.to_vec());
    }
    engine.set_number_lists(Arc::new(lists));
}

fn handle_net(engine: &mut Engine, out: &mut Outputs, ev: NetEvent) {
    match ev {
        NetEvent::Sip { flow, data, queued } => {
            crate::metrics::sip_message("in", &data);
            if flow.conn.is_some() {
                out.tcp.learn_alias(flow, &data);
            }
            let at = out.capture.as_ref().map(|_| std::time::SystemTime::now());
            engine.handle_input(Instant::now(), Input::Sip { flow, data: &data });
            drop(queued);
            // Issue 14: SIP capture (HEP) of what came in.
            if let (Some(capture), Some(at)) = (&out.capture, at) {
                capture.received(&flow, at, data);
            }
        }
        NetEvent::ConnOpened {
            conn,
            transport,
            remote,
            writer,
            calls,
            peer_certs,
        } => out
            .tcp
            .opened(conn, transport, remote, writer, calls, peer_certs),
        NetEvent::ConnClosed { flow, reason } => {
            out.tcp.closed(&flow);
            engine.handle_input(Instant::now(), Input::TransportError { flow, reason });
        }
    }
}

/// Reports what the per-source limits dropped or refused, once per interval at most: a flood
/// costs one log line and one gateway event per interval, never one per message.
async fn report_limits(shield: Arc<transport::Shield>, calllog: CallLog) {
    let mut tick = tokio::time::interval(transport::REPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        report_once(&shield, &calllog);
    }
}

fn report_once(shield: &transport::Shield, calllog: &CallLog) {
    let Some(detail) = shield.take_report() else {
        return;
    };
    tracing::warn!("rate limited: {detail}");
    calllog.send(calllog::Write::Event {
        at_ms: calllog::now_ms(),
        kind: calllog::GatewayEventKind::RateLimited,
        detail,
    });
}

struct Outputs {
    udp: HashMap<(bool, u16), Arc<UdpSocket>>,
    calllog: CallLog,
    tcp: transport::TcpPool,
    calls: crate::metrics::CallTracker,
    /// Issue 14: SIP capture (HEP), when configured.
    capture: Option<crate::capture::Capture>,
}

async fn drain(engine: &mut Engine, out: &mut Outputs, media: &mut MediaManager) {
    let at_ms = calllog::now_ms();
    while let Some(output) = engine.poll_output() {
        match output {
            Output::Transmit { flow, bytes } => {
                crate::metrics::sip_message("out", &bytes);
                if let Some(capture) = &out.capture {
                    capture.sent(&flow, std::time::SystemTime::now(), &bytes);
                }
                if let Err(reason) = send(out, flow, bytes).await {
                    // A lost UDP datagram is what retransmission is for; only a stream that
                    // cannot carry the message is a transport failure for the engine.
                    match flow.transport {
                        Transport::Udp => tracing::debug!(%reason, "udp send failed"),
                        Transport::Tcp | Transport::Tls => engine
                            .handle_input(Instant::now(), Input::TransportError { flow, reason }),
                    }
                }
            }
            Output::Log(record) => {
                out.tcp.observe(&record);
                out.calls.observe(&record, Instant::now());
                out.calllog.engine(at_ms, record);
            }
            Output::Media(cmd) => {
                if let Some(reply) = media.handle(cmd) {
                    engine.handle_input(
                        Instant::now(),
                        Input::Media {
                            call: reply.call,
                            leg: reply.leg,
                            event: reply.event,
                        },
                    );
                }
            }
        }
    }
}

async fn send(out: &mut Outputs, flow: Flow, bytes: Vec<u8>) -> Result<(), String> {
    match flow.transport {
        Transport::Udp => {
            let socket = out
                .udp
                .get(&(flow.remote.is_ipv4(), flow.local.port()))
                .or_else(|| {
                    out.udp.values().find(|s| {
                        s.local_addr()
                            .is_ok_and(|a| a.is_ipv4() == flow.remote.is_ipv4())
                    })
                })
                .ok_or_else(|| format!("no UDP socket for {}", flow.remote))?;
            socket
                .send_to(&bytes, flow.remote)
                .await
                .map(|_| ())
                .map_err(|e| format!("udp send to {}: {e}", flow.remote))
        }
        Transport::Tcp | Transport::Tls => out.tcp.send(flow, bytes),
    }
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    t ^ (u64::from(std::process::id()) << 32)
}
