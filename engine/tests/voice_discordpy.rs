//! discord.py[voice] with discord-ext-voice-recv (PyPI) and Debian's libopus0 against the real
//! `hearth` binary: one bot plays a tone, the other receives and decodes it through the SFU
//! (engine/tests/py/voice_discordpy.py checks ≥ 95% of frames, the tone by correlation, and the
//! attribution to the speaker). The test installs libopus0 itself when it is missing (as root),
//! and the virtualenv comes from scripts/py-venv.sh.

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

fn has_libopus() -> bool {
    Command::new("sh")
        .args(["-c", "ldconfig -p | grep -q 'libopus.so.0'"])
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs Debian's libopus0 when missing (needs root; the test machines run as root).
fn ensure_libopus() {
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

/// A running `hearth` on ephemeral loopback ports, killed on drop.
struct Server {
    child: Child,
    addr: String,
    _dir: TempDir,
}

impl Server {
    fn start(name: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("hearth-voice-{name}-{}", std::process::id()));
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
                assert_eq!(
                    v["voice"].as_array().map(Vec::len),
                    Some(2),
                    "a voice server per shard: {v}"
                );
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

#[test]
fn discordpy_bot_hears_another_bots_tone_through_the_sfu() {
    ensure_libopus();
    let py = python();
    let server = Server::start("dpy");
    let status = Command::new(py)
        .arg(repo_root().join("engine/tests/py/voice_discordpy.py"))
        .arg(&server.addr)
        .stdin(Stdio::null())
        .status()
        .expect("run python");
    assert!(status.success(), "voice_discordpy.py failed: {status}");
}
