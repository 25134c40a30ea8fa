//! The `hearth` binary end to end: starts on ephemeral loopback ports with the embedded defaults,
//! serves /healthz and /metrics, drains on SIGTERM and exits 0; `check-config` accepts and rejects.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    http: SocketAddr,
    echo: SocketAddr,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "hearth-test-{tag}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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
    let right = format!("Authorization: Bearer {SECRET}\r\n");
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
