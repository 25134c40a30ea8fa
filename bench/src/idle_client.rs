//! The idle-connection client, run as `hearth-bench idle-client` subprocesses so that no process
//! holds more than [`IDLE_CONNS_PER_PROC_MAX`] descriptors.
//!
//! Each connection sends one byte and waits for its echo, so the server has certainly accepted
//! it and run its read path once; then the connection sits idle until the parent closes our
//! stdin. Protocol with the parent: one line `ready <ok> <failed>` on stdout.

use std::io::{self, BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::time::Duration;

use crate::BenchError;
use crate::limits::{IDLE_CONNS_PER_PROC_MAX, IDLE_HANDSHAKE_TIMEOUT_S};

/// Opens a TCP connection from `source` (port chosen at connect time, so many sources share the
/// ephemeral range without exhausting it) to `dest`.
pub fn connect_from(source: Ipv4Addr, dest: SocketAddr) -> io::Result<TcpStream> {
    // SAFETY: plain socket(2); the fd is owned by the TcpStream below at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket we own; TcpStream closes it on every path from here.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: the option value points at a live c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let sin = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let SocketAddr::V4(dest) = dest else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "IPv4 only"));
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let src = sin(SocketAddrV4::new(source, 0));
    // SAFETY: `src` is a valid sockaddr_in of `len` bytes.
    if unsafe { libc::bind(fd, (&src as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let dst = sin(dest);
    // SAFETY: `dst` is a valid sockaddr_in of `len` bytes.
    if unsafe { libc::connect(fd, (&dst as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stream)
}

/// Opens `conns` connections from `source` to `dest`, one byte echoed on each; returns the
/// open streams and the number that failed.
pub fn open_idle(
    source: Ipv4Addr,
    dest: SocketAddr,
    conns: u32,
) -> Result<(Vec<TcpStream>, u32), BenchError> {
    if conns > IDLE_CONNS_PER_PROC_MAX {
        return Err(BenchError::Invalid(format!(
            "at most {IDLE_CONNS_PER_PROC_MAX} connections per client process"
        )));
    }
    let timeout = Some(Duration::from_secs(IDLE_HANDSHAKE_TIMEOUT_S));
    let mut open = Vec::with_capacity(conns as usize);
    let mut failed = 0;
    for _ in 0..conns {
        let one = || -> io::Result<TcpStream> {
            let mut s = connect_from(source, dest)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(timeout)?;
            s.write_all(b"h")?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b)?;
            if &b != b"h" {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "bad echo"));
            }
            Ok(s)
        };
        match one() {
            Ok(s) => open.push(s),
            Err(e) => {
                if failed == 0 {
                    eprintln!("idle-client: first failure: {e}");
                }
                failed += 1;
            }
        }
    }
    Ok((open, failed))
}

/// Body of `hearth-bench idle-client`: open, report, hold until stdin closes.
pub fn main(source: Ipv4Addr, dest: SocketAddr, conns: u32) -> Result<(), BenchError> {
    crate::sys::raise_nofile().map_err(|e| BenchError::io("raise RLIMIT_NOFILE", e))?;
    let (open, failed) = open_idle(source, dest, conns)?;
    let mut out = io::stdout().lock();
    writeln!(out, "ready {} {failed}", open.len())
        .and_then(|()| out.flush())
        .map_err(|e| BenchError::io("report to parent", e))?;
    // Hold the connections until the parent closes our stdin (or dies).
    let mut line = String::new();
    while io::stdin().lock().read_line(&mut line).unwrap_or(0) > 0 {
        line.clear();
    }
    drop(open);
    Ok(())
}

/// Parses the child's `ready <ok> <failed>` line.
pub fn parse_ready_line(line: &str) -> Option<(u32, u32)> {
    let mut w = line.split_ascii_whitespace();
    if w.next()? != "ready" {
        return None;
    }
    let ok = w.next()?.parse().ok()?;
    let failed = w.next()?.parse().ok()?;
    w.next().is_none().then_some((ok, failed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn ready_line() {
        assert_eq!(parse_ready_line("ready 5000 0\n"), Some((5000, 0)));
        assert_eq!(parse_ready_line("ready 1 2 3"), None);
        assert_eq!(parse_ready_line("ready x 0"), None);
        assert_eq!(parse_ready_line("nope 1 0"), None);
    }

    #[test]
    fn opens_connections_from_a_second_loopback_address() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut peers = Vec::new();
            for _ in 0..3 {
                let (mut s, peer) = listener.accept().unwrap();
                let mut b = [0u8; 1];
                s.read_exact(&mut b).unwrap();
                s.write_all(&b).unwrap();
                peers.push((s, peer));
            }
            peers
        });
        let (open, failed) = open_idle(Ipv4Addr::new(127, 0, 0, 2), addr, 3).unwrap();
        assert_eq!((open.len(), failed), (3, 0));
        let peers = server.join().unwrap();
        for (_, peer) in &peers {
            assert_eq!(peer.ip(), std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        }
    }
}
