//! What the tests that drive real Python client libraries share: the virtualenv from
//! `scripts/py-venv.sh` (pinned PyPI packages), Debian's libopus0 for voice, and a running
//! `hearth` binary on ephemeral loopback ports that is stopped on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the binary may take to write its ready file.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// The virtualenv's python (created on first use).
pub fn python() -> String {
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

fn has_libopus() -> bool {
    Command::new("sh")
        .args(["-c", "ldconfig -p | grep -q 'libopus.so.0'"])
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs Debian's libopus0 when missing (needs root; the test machines run as root).
pub fn ensure_libopus() {
    if has_libopus() {
        return;
    }
    let install = "apt-get install -y --no-install-recommends libopus0 \
        || (apt-get update && apt-get install -y --no-install-recommends libopus0)";
    let status = Command::new("sh")
        .args(["-c", install])
        .stdin(Stdio::null())
        .status()
        .expect("run apt-get");
    assert!(status.success(), "installing libopus0 failed");
    assert!(
        has_libopus(),
        "libopus0 installed but not found by ldconfig"
    );
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running two-shard `hearth` on ephemeral loopback ports, stopped (SIGTERM) on drop.
pub struct Server {
    child: Child,
    /// The HTTP/gateway address, `host:port`.
    pub addr: String,
    /// The ready file's JSON (listen addresses, voice servers).
    pub ready: serde_json::Value,
    _dir: TempDir,
}

impl Server {
    /// Starts the binary with its data under a fresh temporary directory named after `name`.
    pub fn start(name: &str) -> Server {
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
        // From here on a failed start still stops the child (drop).
        let mut server = Server {
            child,
            addr: String::new(),
            ready: serde_json::Value::Null,
            _dir: TempDir(dir),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // The file is written whole once every shard listens; a partial read is retried.
            if let Ok(s) = std::fs::read_to_string(&ready)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&s)
            {
                server.addr = v["http"].as_str().expect("http").to_owned();
                server.ready = v;
                return server;
            }
            assert!(Instant::now() < deadline, "hearth did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `engine/tests/py/{script}` with the server's address and `args`; panics on failure.
    pub fn run_script(&self, script: &str, args: &[&str]) {
        let status = Command::new(python())
            .arg(repo_root().join("engine/tests/py").join(script))
            .arg(&self.addr)
            .args(args)
            .stdin(Stdio::null())
            .status()
            .expect("run python");
        assert!(status.success(), "{script} failed: {status}");
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
