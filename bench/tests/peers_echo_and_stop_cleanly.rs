//! The reference peers start pinned, announce themselves in the ready file, echo, and exit 0 on
//! SIGTERM; the pingpong client drives them with no errors.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use bench::pingpong_client::{self, ClientConfig};
use bench::server::{Binaries, Server, Target};

fn bins() -> Binaries {
    let monoio = PathBuf::from(env!("CARGO_BIN_EXE_echo-monoio"));
    Binaries {
        hearth: PathBuf::from("/nonexistent/hearth"),
        peers_dir: monoio.parent().unwrap().to_path_buf(),
        hearth_args: Vec::new(),
    }
}

fn check_peer(target: Target) {
    let mut server = Server::start(&bins(), target, 0, 0).unwrap();
    let mut s = TcpStream::connect(server.echo).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"hello hearth").unwrap();
    let mut got = [0u8; 12];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello hearth");
    drop(s);

    let cfg = ClientConfig {
        addr: server.echo,
        conns: 20,
        rate_per_s: 2_000,
        request_bytes: 64,
        warmup: Duration::from_millis(200),
        duration: Duration::from_millis(500),
        drain: Duration::from_secs(10),
        server_pid: server.pid,
        spin: Duration::from_micros(100),
    };
    let out = pingpong_client::run(&cfg).unwrap();
    assert_eq!(out.errors.total(), 0, "{:?}", out.errors);
    // 2000/s over 0.5 s is 1000 due requests (the rounding at the edges is at most one).
    assert!(
        (999..=1001).contains(&out.scheduled_in_window),
        "{}",
        out.scheduled_in_window
    );
    assert_eq!(out.completed_in_window, out.scheduled_in_window);
    assert_eq!(out.latency_ns.len(), out.completed_in_window);
    assert!(out.server_cpu_ns > 0);
    assert!(server.stop(), "{target} did not exit 0 on SIGTERM");
}

#[test]
fn monoio_peer_echoes_and_stops_cleanly() {
    check_peer(Target::Monoio);
}

#[test]
fn glommio_peer_echoes_and_stops_cleanly() {
    check_peer(Target::Glommio);
}

#[test]
fn missing_hearth_binary_is_reported_not_hung() {
    let err = Server::start(&bins(), Target::Hearth, 0, 0).unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}
