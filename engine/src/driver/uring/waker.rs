//! Cross-thread wake-ups through an eventfd the ring polls.
//!
//! Why not IORING_OP_MSG_RING: a MSG_RING is submitted on the *sender's* ring, so only threads that
//! own a ring could wake a shard, and the waker would need that ring at hand. An eventfd write works
//! from any thread (mailbox producers, the control plane, signal handlers), costs one syscall, and
//! coalesces: many writes before the shard runs produce one wake-up. MSG_RING between shard rings
//! is a later optimization for shard-to-shard hops.

use std::io;
use std::os::fd::RawFd;

use crate::driver::RemoteWaker;

/// Owns the eventfd; shared by the driver and every waker handle, closed when the last goes.
#[derive(Debug)]
pub(super) struct EventFd {
    fd: RawFd,
}

impl EventFd {
    /// A non-blocking, close-on-exec eventfd.
    pub(super) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall with constant flags.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EventFd { fd })
    }

    /// The descriptor to poll.
    pub(super) fn fd(&self) -> RawFd {
        self.fd
    }

    /// Reset the counter so the next write is a new event (non-blocking; empty is fine).
    pub(super) fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64.
        unsafe { libc::read(self.fd, (&mut v as *mut u64).cast(), 8) };
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: we own fd and nobody uses it after the last Arc is gone.
        unsafe { libc::close(self.fd) };
    }
}

impl RemoteWaker for EventFd {
    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64; EAGAIN (counter saturated) means a wake-up is
        // already pending, which is all we want.
        unsafe { libc::write(self.fd, (&one as *const u64).cast(), 8) };
    }
}
