//! A reactor's readiness set: a Linux epoll instance holding its legs' sockets and a waker.
//!
//! The reactor's thread blocks in [`Poller::wait`] until a datagram arrives, the manager
//! wakes it ([`Waker`]) or its next pacing tick is due; the wait reports which sockets have
//! datagrams queued, so an idle socket costs no system call. Level-triggered: a socket with
//! more than one datagram queued is simply reported again by the next wait.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

/// The token the waker is reported under.
pub(super) const WAKER_TOKEN: u64 = u64::MAX;

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

    /// Waits up to `timeout` for watched sockets to have datagrams (or an error) waiting and
    /// returns their tokens ([`WAKER_TOKEN`] for the waker); a zero timeout never blocks.
    pub(super) fn wait(&mut self, timeout: Duration) -> impl Iterator<Item = u64> + '_ {
        let capacity = libc::c_int::try_from(self.events.len()).unwrap_or(libc::c_int::MAX);
        // epoll counts whole milliseconds: round up, so a wait never ends before the tick.
        let millis = timeout.as_micros().div_ceil(1000);
        let millis = libc::c_int::try_from(millis).unwrap_or(libc::c_int::MAX);
        // SAFETY: `events` is valid for writes of `capacity` epoll_events.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                self.events.as_mut_ptr(),
                capacity,
                millis,
            )
        };
        // An error (EINTR) reads as nothing ready: the caller waits again.
        let n = usize::try_from(n).unwrap_or(0);
        self.events.iter().take(n).map(|e| e.u64)
    }
}

/// Wakes a reactor's thread from its wait (an eventfd in its epoll set): the manager has
/// queued commands for it.
#[derive(Clone)]
pub(super) struct Waker(Arc<OwnedFd>);

impl Waker {
    pub(super) fn new() -> io::Result<Waker> {
        // SAFETY: eventfd takes no pointers; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns or closes.
        Ok(Waker(Arc::new(unsafe { OwnedFd::from_raw_fd(fd) })))
    }

    /// Makes the waker readable until [`Waker::reset`].
    pub(super) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to an open eventfd. A full counter (never,
        // in practice) or an error leaves the eventfd readable anyway.
        unsafe { libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    /// Clears the wake-up (before the reactor reads its commands, so none is missed).
    pub(super) fn reset(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64 from an open non-blocking eventfd; an empty
        // one fails with EAGAIN, which is fine.
        unsafe { libc::read(self.0.as_raw_fd(), (&raw mut count).cast(), 8) };
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}
