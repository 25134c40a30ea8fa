//! Servers under test: which binary, how it is started pinned to its core, how the harness
//! learns its address (the ready file) and how it is stopped.

use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::BenchError;
use crate::limits::{READY_TIMEOUT_S, STOP_TIMEOUT_S};

/// One server implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The real `hearth` binary's echo listener.
    Hearth,
    /// `echo-monoio` (io_uring, COOP_TASKRUN).
    Monoio,
    /// `echo-glommio`.
    Glommio,
}

impl Target {
    /// Every target, in report order.
    pub const ALL: [Target; 3] = [Target::Hearth, Target::Monoio, Target::Glommio];

    /// Lower-case name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Target::Hearth => "hearth",
            Target::Monoio => "monoio",
            Target::Glommio => "glommio",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown target {s:?} (hearth, monoio, glommio)"))
    }
}

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The `hearth` server.
    pub hearth: PathBuf,
    /// Folder holding `echo-monoio` and `echo-glommio` (the bench binary's own folder).
    pub peers_dir: PathBuf,
    /// Extra arguments appended to `hearth`'s command line.
    pub hearth_args: Vec<String>,
}

impl Binaries {
    /// Peers next to the running executable; `hearth` there too unless given.
    pub fn locate(hearth: Option<PathBuf>, hearth_args: Vec<String>) -> Result<Self, BenchError> {
        let exe = std::env::current_exe().map_err(|e| BenchError::io("current_exe", e))?;
        let dir = exe
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| BenchError::Invalid("executable has no parent folder".into()))?;
        Ok(Binaries {
            hearth: hearth.unwrap_or_else(|| dir.join("hearth")),
            peers_dir: dir,
            hearth_args,
        })
    }

    /// Path of `target`'s binary.
    pub fn path(&self, target: Target) -> PathBuf {
        match target {
            Target::Hearth => self.hearth.clone(),
            Target::Monoio => self.peers_dir.join("echo-monoio"),
            Target::Glommio => self.peers_dir.join("echo-glommio"),
        }
    }
}

/// What a server's ready file says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Ready {
    /// The server's pid.
    pub pid: u32,
    /// The echo listener's address.
    pub echo: SocketAddr,
}

/// Parses a ready file's JSON; extra fields (hearth's `http`) are ignored.
pub fn parse_ready(text: &str) -> Result<Ready, BenchError> {
    serde_json::from_str(text).map_err(|e| BenchError::Parse {
        file: "ready file".into(),
        detail: e.to_string(),
    })
}

/// A running server; stopped (SIGTERM, then SIGKILL) and its scratch folder removed on drop.
#[derive(Debug)]
pub struct Server {
    /// Which implementation.
    pub target: Target,
    /// Its pid (the process the harness spawned).
    pub pid: u32,
    /// Its echo address.
    pub echo: SocketAddr,
    child: Child,
    scratch: PathBuf,
}

impl Server {
    /// Starts `target` pinned to `core` at `nice` and waits for its ready file.
    pub fn start(
        bins: &Binaries,
        target: Target,
        core: usize,
        nice: i32,
    ) -> Result<Self, BenchError> {
        let bin = bins.path(target);
        if !bin.is_file() {
            return Err(BenchError::NotReady {
                target: target.to_string(),
                detail: format!("binary {} not found", bin.display()),
            });
        }
        let scratch = std::env::temp_dir().join(format!(
            "hearth-bench-{}-{}-{}",
            std::process::id(),
            target,
            SCRATCH_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&scratch).map_err(|e| BenchError::io("create scratch dir", e))?;
        let ready_file = scratch.join("ready.json");
        let log = scratch.join("server.log");
        let log_file = fs::File::create(&log).map_err(|e| BenchError::io("create log", e))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| BenchError::io("clone log", e))?;
        let mut cmd = Command::new(&bin);
        match target {
            Target::Hearth => {
                let data = scratch.join("data");
                fs::create_dir_all(&data).map_err(|e| BenchError::io("create data dir", e))?;
                cmd.args(["--shards", "1", "--http-addr", "127.0.0.1:0"])
                    .args(["--echo-addr", "127.0.0.1:0", "--data-dir"])
                    .arg(&data)
                    .args(&bins.hearth_args);
            }
            Target::Monoio | Target::Glommio => {
                cmd.args(["--addr", "127.0.0.1:0"]);
            }
        }
        cmd.arg("--ready-file")
            .arg(&ready_file)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        // SAFETY: the closure only makes async-signal-safe syscalls (sched_setaffinity,
        // getrlimit/setrlimit) and does not allocate.
        unsafe {
            cmd.pre_exec(move || crate::sys::child_setup(core, nice));
        }
        let child = cmd
            .spawn()
            .map_err(|e| BenchError::io(format!("spawn {}", bin.display()), e))?;
        let mut server = Server {
            target,
            pid: child.id(),
            echo: SocketAddr::from(([127, 0, 0, 1], 0)),
            child,
            scratch,
        };
        let ready = server.wait_ready(&ready_file, &log)?;
        server.echo = ready.echo;
        Ok(server)
    }

    fn wait_ready(&mut self, ready_file: &Path, log: &Path) -> Result<Ready, BenchError> {
        let deadline = Instant::now() + Duration::from_secs(READY_TIMEOUT_S);
        let fail = |detail: String| BenchError::NotReady {
            target: self.target.to_string(),
            detail: format!(
                "{detail}; log: {}",
                fs::read_to_string(log).unwrap_or_default().trim()
            ),
        };
        let mut last_error = String::from("no ready file");
        loop {
            if let Ok(text) = fs::read_to_string(ready_file) {
                match parse_ready(&text) {
                    Ok(ready) => return Ok(ready),
                    // e.g. `"echo": null` from a hearth started without an echo listener.
                    Err(e) => last_error = format!("{e} in {text:?}"),
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(fail(format!("exited early with {status}")));
            }
            if Instant::now() > deadline {
                return Err(fail(format!("{last_error} after {READY_TIMEOUT_S} s")));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server: SIGTERM, then SIGKILL after [`STOP_TIMEOUT_S`]. Returns whether it
    /// exited by itself with status 0.
    pub fn stop(&mut self) -> bool {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status.success();
        }
        let _ = crate::sys::signal(self.pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(STOP_TIMEOUT_S);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.scratch);
    }
}

/// Distinguishes scratch folders of servers started by one harness process.
static SCRATCH_SEQ: AtomicU64 = AtomicU64::new(0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip_by_name() {
        for t in Target::ALL {
            assert_eq!(t.name().parse::<Target>().unwrap(), t);
        }
        assert!("tokio".parse::<Target>().is_err());
    }

    #[test]
    fn ready_file_of_hearth_and_peers() {
        let h =
            parse_ready(r#"{"pid":12,"http":"127.0.0.1:8080","echo":"127.0.0.1:9000"}"#).unwrap();
        assert_eq!(h.pid, 12);
        assert_eq!(h.echo, "127.0.0.1:9000".parse().unwrap());
        assert!(parse_ready(r#"{"pid":12}"#).is_err());
        assert!(parse_ready(r#"{"pid":12,"echo":"127.0.0."#).is_err());
    }
}
