//! Real client libraries from PyPI against the real `hearth` binary: Python's `websockets`
//! (RFC 6455 and the gateway protocol) and discord.py. The virtualenv is created on first use
//! by `scripts/py-venv.sh` (pinned versions in `scripts/py-requirements.txt`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(20);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

fn python() -> String {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/py-venv.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/py-venv.sh");
    assert!(out.status.success(), "creating the Python venv failed");
    String::from_utf8(out.stdout)
        .expect("utf-8 path")
        .trim()
        .to_owned()
}

/// A running `hearth` on an ephemeral loopback port, killed on drop.
struct Server {
    child: Child,
    addr: String,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Server {
    fn start(name: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("hearth-py-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ready = dir.join("ready.json");
        let child = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args([
                "--http-addr",
                "127.0.0.1:0",
                "--shards",
                "2",
                "--log-level",
                "warn",
            ])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn hearth");
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            if let Ok(s) = std::fs::read_to_string(&ready) {
                let v: serde_json::Value = serde_json::from_str(&s).expect("ready json");
                break v["http"].as_str().expect("http").to_owned();
            }
            assert!(Instant::now() < deadline, "hearth did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        Server {
            child,
            addr,
            _dir: TempDir(dir),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

fn run_script(script: &str, server: &Server) {
    let py = python();
    let status = Command::new(py)
        .arg(repo_root().join("engine/tests/py").join(script))
        .arg(&server.addr)
        .stdin(Stdio::null())
        .status()
        .expect("run python");
    assert!(status.success(), "{script} failed: {status}");
}

#[test]
fn python_websockets_client_speaks_to_the_gateway() {
    let server = Server::start("ws");
    run_script("websockets_client.py", &server);
}

#[test]
fn discordpy_bot_reaches_ready_with_its_guild_and_resumes_after_a_forced_disconnect() {
    let server = Server::start("dpy");
    run_script("discordpy_bot.py", &server);
}

#[test]
fn discordpy_messages_send_history_edit_delete_and_resume() {
    let server = Server::start("dpy-msg");
    run_script("discordpy_messages.py", &server);
}
