//! The media side of the shell: one RTP endpoint per call leg, on its own task so a burst of
//! signalling cannot starve audio.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use siaga_engine::ids::{CallRef, LegId};
use siaga_engine::io::{MediaCommand, MediaEvent, MediaSession};

use crate::calllog::CallLog;
use crate::config::{PortRange, Settings};

/// An event from a leg's media task for the engine.
pub struct MediaEventOut {
    pub call: CallRef,
    pub leg: LegId,
    pub event: MediaEvent,
}

enum LegCommand {
    Start(MediaSession),
}

struct Leg {
    commands: mpsc::UnboundedSender<LegCommand>,
    task: JoinHandle<()>,
}

pub struct MediaManager {
    ports: PortRange,
    cursor: u16,
    legs: HashMap<(CallRef, LegId), Leg>,
    events: mpsc::Sender<MediaEventOut>,
    media_timeout: std::time::Duration,
    _calllog: CallLog,
}

impl MediaManager {
    pub fn new(settings: &Settings, events: mpsc::Sender<MediaEventOut>, calllog: CallLog) -> Self {
        Self {
            ports: settings.rtp_ports,
            cursor: settings.rtp_ports.first,
            legs: HashMap::new(),
            events,
            media_timeout: settings.media_timeout,
            _calllog: calllog,
        }
    }

    /// Handles a command; `Allocate` is answered at once (binding a port does not block).
    pub fn handle(&mut self, cmd: MediaCommand) -> Option<MediaEventOut> {
        match cmd {
            MediaCommand::Allocate {
                call,
                leg,
                local_ip,
            } => {
                let event = match self.bind(local_ip) {
                    Ok(socket) => {
                        let local = socket.local_addr().ok()?;
                        let (tx, rx) = mpsc::unbounded_channel();
                        let task = tokio::spawn(leg_task(
                            socket,
                            call,
                            leg,
                            rx,
                            self.events.clone(),
                            self.media_timeout,
                        ));
                        self.legs.insert((call, leg), Leg { commands: tx, task });
                        MediaEvent::Allocated { local }
                    }
                    Err(e) => MediaEvent::AllocationFailed {
                        reason: format!(
                            "no RTP port free in {}-{}: {e}",
                            self.ports.first, self.ports.last
                        ),
                    },
                };
                Some(MediaEventOut { call, leg, event })
            }
            MediaCommand::Start { call, leg, session } => {
                if let Some(l) = self.legs.get(&(call, leg)) {
                    let _ = l.commands.send(LegCommand::Start(session));
                }
                None
            }
            MediaCommand::Play { .. }
            | MediaCommand::StopPlayback { .. }
            | MediaCommand::Bridge { .. }
            | MediaCommand::Unbridge { .. } => None,
            MediaCommand::Release { call, leg } => {
                if let Some(l) = self.legs.remove(&(call, leg)) {
                    l.task.abort();
                }
                None
            }
        }
    }

    /// Binds an even port from the range (RTCP would take the odd one above it).
    fn bind(&mut self, ip: IpAddr) -> std::io::Result<tokio::net::UdpSocket> {
        let span = u32::from(self.ports.last - self.ports.first) + 1;
        let mut last_err = std::io::Error::other("port range exhausted");
        for _ in 0..span.div_ceil(2) {
            let port = self.cursor;
            self.cursor = if self.cursor >= self.ports.last.saturating_sub(1) {
                self.ports.first + (self.ports.first % 2)
            } else {
                self.cursor + 2 - (self.cursor % 2)
            };
            match std::net::UdpSocket::bind(SocketAddr::new(ip, port)) {
                Ok(s) => {
                    s.set_nonblocking(true)?;
                    return tokio::net::UdpSocket::from_std(s);
                }
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    pub async fn shutdown(&mut self) {
        for (_, leg) in self.legs.drain() {
            leg.task.abort();
        }
    }
}

async fn leg_task(
    socket: tokio::net::UdpSocket,
    call: CallRef,
    leg: LegId,
    mut commands: mpsc::UnboundedReceiver<LegCommand>,
    events: mpsc::Sender<MediaEventOut>,
    timeout: std::time::Duration,
) {
    let mut buf = [0u8; 2048];
    let mut seen = false;
    let mut _session = None;
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(LegCommand::Start(s)) => _session = Some(s),
                None => return,
            },
            r = tokio::time::timeout(timeout, socket.recv_from(&mut buf)) => match r {
                Ok(Ok(_)) if !seen => {
                    seen = true;
                    let _ = events.send(MediaEventOut { call, leg, event: MediaEvent::FirstPacket }).await;
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = events.send(MediaEventOut { call, leg, event: MediaEvent::Timeout { silent_for: timeout } }).await;
                }
            }
        }
    }
}
