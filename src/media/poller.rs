//! A reactor's private readiness set: a Linux epoll instance that nobody ever blocks on.
//!
//! The reactor asks it, once per tick and without waiting, which of its legs' sockets have
//! datagrams queued, and reads only those. So an idle socket costs no system call, and —
//! unlike registering the sockets with tokio's driver — a datagram's arrival wakes nobody:
//! it only puts the socket on this set's ready list. Level-triggered: a socket with more
//! than one datagram queued is simply reported again by the next query.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Ready sockets reported per query; more wait for the next one.
const EVENTS: usize = 256;

pub(super) struct Poller {
    epoll: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Poller {
    pub(super) fn new() -> io::Result<Poller> {
        // SAFETY: epoll_create1 takes no pointers; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns or closes.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Poller {
            epoll,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS],
        })
    }

    /// Watches `socket` for incoming datagrams, reported with `token`.
    pub(super) fn add(&self, socket: &impl AsRawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, socket.as_raw_fd(), token)
    }

    /// Stops watching `socket` (closing it would too; this keeps the set exact).
    pub(super) fn remove(&self, socket: &impl AsRawFd) {
        if let Err(e) = self.ctl(libc::EPOLL_CTL_DEL, socket.as_raw_fd(), 0) {
            tracing::debug!(error = %e, "RTP socket was not watched");
        }
    }

    fn ctl(&self, op: libc::c_int, fd: libc::c_int, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: both descriptors are open for the duration of the call and `event` is a
        // valid, exclusively borrowed epoll_event.
        let r = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut event) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The tokens of watched sockets that have datagrams (or an error) waiting, now; never
    /// blocks.
    pub(super) fn ready(&mut self) -> impl Iterator<Item = u64> + '_ {
        let capacity = libc::c_int::try_from(self.events.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `events` is valid for writes of `capacity` epoll_events; a zero timeout
        // never blocks.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                self.events.as_mut_ptr(),
                capacity,
                0,
            )
        };
        // An error (EINTR) reads as nothing ready: the next tick asks again.
        let n = usize::try_from(n).unwrap_or(0);
        self.events.iter().take(n).map(|e| e.u64)
    }
}
