//! The `hearth` binary end to end: starts on ephemeral loopback ports with the embedded defaults,
//! serves /healthz and /metrics, drains on SIGTERM and exits 0; `check-config` accepts and rejects.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod procs;
use procs::{TempDir, metric_sum, raise_nofile};

struct Server {
    child: Child,
    http: SocketAddr,
    echo: SocketAddr,
    _dir: TempDir,
}

fn hearth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
}

fn start(shards: u32) -> Server {
    start_in(TempDir::new("bin"), shards, None)
}

/// Start the binary with its data in `dir`, optionally with a config file (flags still override
/// the listen addresses, so it stays on ephemeral loopback ports).
fn start_in(dir: TempDir, shards: u32, config: Option<&Path>) -> Server {
    let ready = dir.path().join("ready.json");
    let mut cmd = hearth();
    if let Some(path) = config {
        cmd.arg("--config").arg(path);
    }
    let child = cmd
        .args(["--http-addr", "127.0.0.1:0", "--echo-addr", "127.0.0.1:0"])
        .args(["--shards", &shards.to_string()])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--ready-file")
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn hearth");
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        if let Ok(t) = std::fs::read_to_string(&ready) {
            break t;
        }
        assert!(Instant::now() < deadline, "hearth did not become ready");
        std::thread::sleep(Duration::from_millis(20));
    };
    let v: serde_json::Value = serde_json::from_str(&text).expect("ready json");
    assert_eq!(v["pid"].as_u64(), Some(u64::from(child.id())));
    assert_eq!(v["shards"].as_u64(), Some(u64::from(shards)));
    Server {
        child,
        http: v["http"].as_str().expect("http").parse().expect("addr"),
        echo: v["echo"].as_str().expect("echo").parse().expect("addr"),
        _dir: dir,
    }
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, "GET", path, "", "")
}

/// One request on a fresh connection (`headers`: extra lines, each ending in CRLF).
fn request(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn sigterm_and_wait(mut server: Server) -> std::process::ExitStatus {
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    let rc = unsafe { libc::kill(server.child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "hearth did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serves_health_and_metrics_then_exits_zero_on_sigterm() {
    let server = start(2);
    let (status, body) = get(server.http, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _) = get(server.http, "/readyz");
    assert_eq!(status, 200);
    let (status, body) = get(server.http, "/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("hearth_loop_iterations_total{shard=\"0\"}"));
    assert!(body.contains("hearth_loop_iterations_total{shard=\"1\"}"));
    let (status, body) = get(server.http, "/admin/shards");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["shards"].as_array().map(|a| a.len()), Some(2));

    // The echo listener answers on the same loop.
    let mut e = TcpStream::connect(server.echo).expect("echo connect");
    e.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    e.write_all(b"hearth").expect("write");
    let mut buf = [0u8; 6];
    e.read_exact(&mut buf).expect("echo");
    assert_eq!(&buf, b"hearth");

    // An idle keep-alive connection is open while we stop: drain must still exit promptly.
    let _idle = TcpStream::connect(server.http).expect("idle connect");
    let status = sigterm_and_wait(server);
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[test]
fn control_secret_from_the_config_guards_the_control_and_admin_apis() {
    const SECRET: &str = "correct-horse-battery-staple";
    let dir = TempDir::new("ctl");
    let config = dir.path().join("hearth.toml");
    std::fs::write(
        &config,
        format!("[secrets]\ncontrol_secret = \"{SECRET}\"\n"),
    )
    .expect("write config");
    let server = start_in(dir, 1, Some(&config));
    let user = r#"{"username":"alice"}"#;
    let (status, _) = request(server.http, "POST", "/control/users", "", user);
    assert_eq!(status, 401, "no credentials");
    let wrong = "Authorization: Bearer correct-horse-battery-stapler\r\n";
    let (status, _) = request(server.http, "POST", "/control/users", wrong, user);
    assert_eq!(status, 401, "wrong secret");
    let (status, _) = request(
        server.http,
        "POST",
        "/admin/disconnect",
        "",
        r#"{"user_id":"1"}"#,
    );
    assert_eq!(status, 401, "admin endpoints take the same secret");
    for (method, path) in [
        ("GET", "/admin/voice/servers"),
        ("POST", "/admin/voice/servers/0/drain"),
        ("POST", "/admin/voice/servers/0/faults"),
    ] {
        let (status, _) = request(server.http, method, path, "", "");
        assert_eq!(status, 401, "{method} {path} takes the secret too");
    }
    let right = format!("Authorization: Bearer {SECRET}\r\n");
    let (status, body) = request(server.http, "GET", "/admin/voice/servers", &right, "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = request(server.http, "POST", "/control/users", &right, user);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert!(v["token"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    // Health stays open for load balancers.
    assert_eq!(get(server.http, "/healthz").0, 200);
    let status = sigterm_and_wait(server);
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[test]
fn check_config_accepts_the_example_and_names_bad_fields() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hearth.example.toml");
    let out = hearth()
        .arg("check-config")
        .arg(&example)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));

    let dir = TempDir::new("cfg");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[node]\nworker_id = 40\n").expect("write");
    let out = hearth()
        .arg("check-config")
        .arg(&bad)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("worker_id"), "error names the field: {err}");
}

#[test]
fn help_lists_the_flags() {
    let out = hearth().arg("--help").output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--profile",
        "--http-addr",
        "--data-dir",
        "--shards",
        "check-config",
    ] {
        assert!(text.contains(flag), "--help mentions {flag}");
    }
}

#[test]
fn sigterm_with_thousands_of_idle_connections_exits_zero_within_the_drain_bound() {
    // Both ends of every connection count against this process's limit only for the client
    // side; the server is a child with its own table (it inherits the raised limit).
    let limit = raise_nofile(20_000);
    let http_conns = 3000.min((limit as usize).saturating_sub(600));
    let gateway_conns = 200;
    assert!(
        http_conns >= 1000,
        "open-file limit {limit} too low for this test"
    );
    const DRAIN_MS: u64 = 15_000;
    let dir = TempDir::new("drain");
    let config = dir.path().join("hearth.toml");
    // Idle connections must still be open when SIGTERM comes, however slowly they were opened:
    // the header timeout is pushed out of the way.
    std::fs::write(
        &config,
        format!("[limits]\nhttp_header_timeout_ms = 300000\ndrain_timeout_ms = {DRAIN_MS}\n"),
    )
    .expect("write config");
    let server = start_in(dir, 2, Some(&config));
    let mut idle: Vec<TcpStream> = Vec::with_capacity(http_conns);
    for _ in 0..http_conns {
        idle.push(TcpStream::connect(server.http).expect("connect"));
    }
    // Upgraded gateway connections that never identify: on drain each gets op 7, then a close.
    let mut gateway: Vec<TcpStream> = Vec::with_capacity(gateway_conns);
    for _ in 0..gateway_conns {
        let mut s = TcpStream::connect(server.http).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        s.write_all(
            b"GET /?v=10&encoding=json HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .expect("upgrade");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).expect("read head"), 1, "head cut short");
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "upgrade answered");
        gateway.push(s);
    }
    // Everything is accepted and open before the signal.
    let want = (http_conns + gateway_conns) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, text) = get(server.http, "/metrics");
        assert_eq!(status, 200);
        // The /metrics connection itself may or may not be counted yet.
        if metric_sum(&text, "hearth_connections") >= want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {want} connections open",
            metric_sum(&text, "hearth_connections")
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let start = Instant::now();
    let status = sigterm_and_wait(server);
    let elapsed = start.elapsed();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    // Idle connections close at once; only a busy one could take the whole drain timeout. The
    // bound is the configured one, plus generous room for a loaded machine to exit a process.
    assert!(
        elapsed < Duration::from_millis(DRAIN_MS) + Duration::from_secs(15),
        "exit took {elapsed:?}, drain bound {DRAIN_MS} ms"
    );
    // Every connection was closed by the server: an orderly EOF, nothing left hanging.
    for s in idle.iter_mut().chain(gateway.iter_mut()) {
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).expect("EOF from the server");
    }
    eprintln!(
        "{} connections: SIGTERM to exit in {elapsed:?}",
        http_conns + gateway_conns
    );
}
