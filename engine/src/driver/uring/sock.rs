//! Setup-time socket calls (socket, bind, listen, options) and `sockaddr` conversions.
//!
//! These run synchronously with libc: they happen once per listener or per accepted connection,
//! and io_uring offers nothing faster for them on this kernel.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use crate::driver::{DriverError, TcpOptions};

/// Bytes reserved for a peer address in a multishot `recvmsg` buffer (fits IPv4 and IPv6).
pub(super) const NAME_BYTES: u32 = std::mem::size_of::<libc::sockaddr_in6>() as u32;

fn os(what: &'static str) -> DriverError {
    DriverError::Os {
        what,
        source: io::Error::last_os_error(),
    }
}

/// Encode `addr` into `out`, returning the length the kernel must be told.
pub(super) fn write_sockaddr(
    addr: &SocketAddr,
    out: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in, and
            // `out` is a valid exclusive reference.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Decode a kernel-written socket address from raw bytes (`None` for unknown families).
pub(super) fn read_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*b.first()?, *b.get(1)?]);
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    if i32::from(family) == libc::AF_INET {
        let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
        Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
    } else if i32::from(family) == libc::AF_INET6 {
        let flow: [u8; 4] = b.get(4..8)?.try_into().ok()?;
        let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
        let scope: [u8; 4] = b.get(24..28)?.try_into().ok()?;
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            u32::from_be_bytes(flow),
            u32::from_ne_bytes(scope),
        )))
    } else {
        None
    }
}

fn storage_bytes(st: &libc::sockaddr_storage) -> &[u8] {
    // SAFETY: sockaddr_storage is plain old data, fully initialized by the caller (zeroed then
    // written by the kernel), and the slice covers exactly its size.
    unsafe {
        std::slice::from_raw_parts(
            (st as *const libc::sockaddr_storage).cast::<u8>(),
            std::mem::size_of::<libc::sockaddr_storage>(),
        )
    }
}

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data for which all-zero bytes are valid.
    unsafe { std::mem::zeroed() }
}

fn set_int(
    fd: RawFd,
    level: i32,
    name: i32,
    value: i32,
    what: &'static str,
) -> Result<(), DriverError> {
    // SAFETY: `value` lives across the call and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(os(what)) }
}

/// Close a descriptor we own (setup failures and refused connections).
pub(super) fn close_fd(fd: RawFd) {
    // SAFETY: the caller owns `fd` and never uses it again.
    unsafe { libc::close(fd) };
}

fn local_addr(fd: RawFd) -> Result<SocketAddr, DriverError> {
    let mut st = zeroed_storage();
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `st` and `len` are valid for writes and `len` is st's size.
    let rc = unsafe {
        libc::getsockname(
            fd,
            (&mut st as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(os("getsockname"));
    }
    read_sockaddr(storage_bytes(&st)).ok_or(DriverError::Unknown("address family"))
}

/// The peer address of a connected socket.
pub(super) fn peer_addr(fd: RawFd) -> Option<SocketAddr> {
    let mut st = zeroed_storage();
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: as in `local_addr`.
    let rc = unsafe {
        libc::getpeername(
            fd,
            (&mut st as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    read_sockaddr(storage_bytes(&st))
}

fn new_socket(addr: &SocketAddr, ty: i32) -> Result<RawFd, DriverError> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain syscall with constant arguments.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 { Err(os("socket")) } else { Ok(fd) }
}

fn bind(fd: RawFd, addr: &SocketAddr) -> Result<(), DriverError> {
    let mut st = zeroed_storage();
    let len = write_sockaddr(addr, &mut st);
    // SAFETY: `st` holds a valid sockaddr of `len` bytes.
    let rc = unsafe { libc::bind(fd, (&st as *const libc::sockaddr_storage).cast(), len) };
    if rc == 0 { Ok(()) } else { Err(os("bind")) }
}

/// Close `fd` if `r` failed, so setup errors leak no descriptor.
fn or_close<T>(fd: RawFd, r: Result<T, DriverError>) -> Result<T, DriverError> {
    if r.is_err() {
        close_fd(fd);
    }
    r
}

/// A bound, listening TCP socket and its local address.
pub(super) fn listen_tcp(
    addr: &SocketAddr,
    opts: &TcpOptions,
) -> Result<(RawFd, SocketAddr), DriverError> {
    let fd = new_socket(addr, libc::SOCK_STREAM)?;
    let r = (|| {
        set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1, "SO_REUSEADDR")?;
        if opts.reuse_port {
            set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1, "SO_REUSEPORT")?;
        }
        bind(fd, addr)?;
        let backlog = i32::try_from(opts.backlog).unwrap_or(i32::MAX);
        // SAFETY: plain syscall on a socket we own.
        if unsafe { libc::listen(fd, backlog) } != 0 {
            return Err(os("listen"));
        }
        local_addr(fd)
    })();
    or_close(fd, r).map(|a| (fd, a))
}

/// A bound UDP socket and its local address.
pub(super) fn bind_udp(addr: &SocketAddr) -> Result<(RawFd, SocketAddr), DriverError> {
    let fd = new_socket(addr, libc::SOCK_DGRAM)?;
    let r = bind(fd, addr).and_then(|()| local_addr(fd));
    or_close(fd, r).map(|a| (fd, a))
}

/// Apply a listener's per-connection options to an accepted socket.
pub(super) fn configure_accepted(fd: RawFd, opts: &TcpOptions) -> Result<(), DriverError> {
    if opts.nodelay {
        set_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1, "TCP_NODELAY")?;
    }
    if let Some(n) = opts.recv_buffer_bytes {
        let n = i32::try_from(n).unwrap_or(i32::MAX);
        set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, n, "SO_RCVBUF")?;
    }
    if let Some(n) = opts.send_buffer_bytes {
        let n = i32::try_from(n).unwrap_or(i32::MAX);
        set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, n, "SO_SNDBUF")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trips_v4_and_v6() {
        for a in [
            "127.0.0.1:4242"
                .parse::<SocketAddr>()
                .unwrap_or_else(|_| unreachable!()),
            "[::1]:9".parse().unwrap_or_else(|_| unreachable!()),
            "[fe80::1%3]:65535"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        ] {
            let mut st = zeroed_storage();
            let len = write_sockaddr(&a, &mut st);
            let bytes = storage_bytes(&st);
            assert_eq!(read_sockaddr(&bytes[..len as usize]), Some(a));
        }
        assert_eq!(read_sockaddr(&[0, 0, 1]), None);
    }
}
