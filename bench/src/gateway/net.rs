//! The few socket and clock calls the gateway clients need beyond std: a monotonic clock shared
//! by every process of a run, a small epoll wrapper, and non-blocking connects from a chosen
//! loopback source address.
//!
//! `unsafe` here is only FFI into libc with arguments built on the stack; each call says why it
//! is sound.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// CLOCK_MONOTONIC in nanoseconds. Unlike `Instant`, the number means the same in every
/// process of the machine, so a publisher can stamp an event and a client process can subtract.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-parameter; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Readiness a session waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Readable only (the usual state).
    Read,
    /// Readable and writable (a connect in progress, or output waiting).
    ReadWrite,
}

impl Interest {
    fn bits(self) -> u32 {
        match self {
            Interest::Read => libc::EPOLLIN as u32,
            Interest::ReadWrite => (libc::EPOLLIN | libc::EPOLLOUT) as u32,
        }
    }
}

/// An epoll instance (level-triggered).
#[derive(Debug)]
pub struct Epoll(OwnedFd);

impl Epoll {
    /// A new epoll instance.
    pub fn new() -> io::Result<Self> {
        // SAFETY: no pointer arguments.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, interest: Interest, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: interest.bits(),
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut ev) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Registers `fd` under `token`.
    pub fn add(&self, fd: RawFd, interest: Interest, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, interest, token)
    }

    /// Changes what `fd` waits for.
    pub fn modify(&self, fd: RawFd, interest: Interest, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, interest, token)
    }

    /// Unregisters `fd` (closing it would too; this keeps the order explicit).
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, Interest::Read, 0)
    }

    /// Waits up to `timeout_ms` for events; returns how many were written to `events`.
    pub fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: u64) -> io::Result<usize> {
        let max = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
        let timeout = libc::c_int::try_from(timeout_ms).unwrap_or(libc::c_int::MAX);
        // SAFETY: `events` is writable for `max` entries.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), events.as_mut_ptr(), max, timeout) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Outcome of starting a non-blocking connect.
#[derive(Debug)]
pub enum Connecting {
    /// Connected at once.
    Done(OwnedFd),
    /// In progress: wait for writability, then check [`take_socket_error`].
    InProgress(OwnedFd),
}

/// Starts a non-blocking TCP connect from `source` (port picked at connect time, so several
/// source addresses share the ephemeral range) to `dest`, with TCP_NODELAY set.
pub fn connect_nonblocking(source: Ipv4Addr, dest: SocketAddr) -> io::Result<Connecting> {
    let SocketAddr::V4(dest) = dest else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "IPv4 only"));
    };
    // SAFETY: plain socket(2); the fd is owned by the OwnedFd at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket we own; OwnedFd closes it on every path from here.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    for (level, opt) in [
        (libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT),
        (libc::IPPROTO_TCP, libc::TCP_NODELAY),
    ] {
        // SAFETY: the option value points at a live c_int of the given size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                opt,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let src = sockaddr_in(SocketAddrV4::new(source, 0));
    // SAFETY: `src` is a valid sockaddr_in of `len` bytes.
    if unsafe { libc::bind(fd, (&src as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let dst = sockaddr_in(dest);
    // SAFETY: `dst` is a valid sockaddr_in of `len` bytes.
    if unsafe { libc::connect(fd, (&dst as *const libc::sockaddr_in).cast(), len) } == 0 {
        return Ok(Connecting::Done(owned));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINPROGRESS) {
        Ok(Connecting::InProgress(owned))
    } else {
        Err(e)
    }
}

/// The pending error of a socket (`SO_ERROR`), which also clears it: `Ok(())` once a
/// non-blocking connect has succeeded.
pub fn take_socket_error(fd: RawFd) -> io::Result<()> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are valid out-parameters of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    Ok(())
}

/// `read(2)` into `buf`.
pub fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

/// `send(2)` of `buf` without SIGPIPE on a closed peer.
pub fn write_fd(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is readable for its length.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

/// Puts `fd` in non-blocking mode (the command pipe shares the client's epoll loop).
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl with F_GETFL/F_SETFL has no pointer arguments.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn nonblocking_connect_from_a_second_loopback_address() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let ep = Epoll::new().unwrap();
        let fd = match connect_nonblocking(Ipv4Addr::new(127, 0, 0, 3), addr).unwrap() {
            Connecting::Done(fd) | Connecting::InProgress(fd) => fd,
        };
        ep.add(fd.as_raw_fd(), Interest::ReadWrite, 7).unwrap();
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
        let n = ep.wait(&mut evs, 5_000).unwrap();
        assert_eq!(n, 1);
        let token = evs[0].u64;
        assert_eq!(token, 7);
        take_socket_error(fd.as_raw_fd()).unwrap();
        let (mut s, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
        assert_eq!(write_fd(fd.as_raw_fd(), b"ping").unwrap(), 4);
        let mut b = [0u8; 4];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ping");
        s.write_all(b"pong").unwrap();
        ep.modify(fd.as_raw_fd(), Interest::Read, 7).unwrap();
        assert_eq!(ep.wait(&mut evs, 5_000).unwrap(), 1);
        let mut got = [0u8; 16];
        assert_eq!(read_fd(fd.as_raw_fd(), &mut got).unwrap(), 4);
        ep.delete(fd.as_raw_fd()).unwrap();
        assert!(mono_ns() > 0);
    }
}
