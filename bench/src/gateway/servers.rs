//! Starting, sampling and stopping the two gateway servers: `hearth` (its ready file gives the
//! HTTP port that also upgrades to the gateway) and nginx + Nchan (a temporary prefix with a
//! generated config on a free loopback port, as many workers as Hearth has shards). Both are
//! pinned to the server core by the harness between fork and exec, and sampled over all their
//! processes (nginx: the master and its workers).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::BenchError;
use crate::gateway::limits::{
    GW_STOP_TIMEOUT_S, NCHAN_CHANNEL, NGINX_BACKLOG, NGINX_READY_TIMEOUT_S,
    NGINX_WORKER_CONNECTIONS,
};
use crate::gateway::proto::GATEWAY_PATH;
use crate::gateway::target::GwTarget;
use crate::limits::{NOFILE_HARD, READY_TIMEOUT_S};
use crate::procfs;

/// Where nginx and its Nchan module are on Debian.
pub const NGINX_BIN_DEFAULT: &str = "/usr/sbin/nginx";
/// The Debian package's Nchan module.
pub const NCHAN_MODULE_DEFAULT: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";

/// How a server is started.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Which server.
    pub target: GwTarget,
    /// `hearth` binary.
    pub hearth_bin: PathBuf,
    /// Extra `hearth` arguments (the bench profile by default).
    pub hearth_args: Vec<String>,
    /// nginx binary.
    pub nginx_bin: PathBuf,
    /// Nchan module.
    pub nchan_module: PathBuf,
    /// Hearth shards, and nginx workers.
    pub shards: u32,
    /// Core the server is pinned to.
    pub core: usize,
    /// Nice value.
    pub nice: i32,
}

/// hearth's ready file (`echo` is null when no echo listener is asked for).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct HearthReady {
    /// Process id.
    pub pid: u32,
    /// HTTP (and gateway) address.
    pub http: SocketAddr,
}

/// Parses hearth's ready file.
pub fn parse_hearth_ready(text: &str) -> Result<HearthReady, BenchError> {
    serde_json::from_str(text).map_err(|e| BenchError::Parse {
        file: "hearth ready file".into(),
        detail: e.to_string(),
    })
}

/// CPU time of a server's processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CpuTimes {
    /// Sum of every thread's schedstat run time, ns (what the reports use).
    pub schedstat_ns: u64,
    /// Sum of utime + stime from `/proc/PID/stat`, ns (clock-tick resolution; a cross-check).
    pub stat_ns: u64,
}

impl CpuTimes {
    /// `self - earlier`, never negative.
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            schedstat_ns: self.schedstat_ns.saturating_sub(earlier.schedstat_ns),
            stat_ns: self.stat_ns.saturating_sub(earlier.stat_ns),
        }
    }
}

/// Memory of a server's processes, summed over them (nginx: shared memory pages touched by
/// several processes count once per process in VmRSS and RssShmem).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProcMem {
    /// Processes summed.
    pub processes: u32,
    /// VmRSS, KiB.
    pub vm_rss_kib: u64,
    /// RssAnon (heap, stacks, anonymous mappings), KiB.
    pub rss_anon_kib: u64,
    /// RssFile, KiB.
    pub rss_file_kib: u64,
    /// RssShmem, KiB.
    pub rss_shmem_kib: u64,
    /// Open descriptors.
    pub fds: u64,
}

/// A running server; stopped and its scratch folder removed on drop.
#[derive(Debug)]
pub struct GwServer {
    /// Which server.
    pub target: GwTarget,
    /// The process the harness started (hearth, or nginx's master).
    pub pid: u32,
    /// Where clients connect (HTTP, upgrade, control API, publisher).
    pub addr: SocketAddr,
    child: Child,
    scratch: PathBuf,
    /// nginx workers seen at start-up, killed by pid if the master has to be killed.
    workers: Vec<u32>,
}

static SCRATCH_SEQ: AtomicU64 = AtomicU64::new(0);

fn scratch_dir(target: GwTarget) -> Result<PathBuf, BenchError> {
    let dir = std::env::temp_dir().join(format!(
        "hearth-bench-gw-{}-{}-{}",
        std::process::id(),
        target,
        SCRATCH_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).map_err(|e| BenchError::io("create scratch dir", e))?;
    Ok(dir)
}

fn log_files(path: &Path) -> Result<(fs::File, fs::File), BenchError> {
    let f = fs::File::create(path).map_err(|e| BenchError::io("create log", e))?;
    let g = f.try_clone().map_err(|e| BenchError::io("clone log", e))?;
    Ok((f, g))
}

/// The nginx configuration for Nchan on `port` with `workers` worker processes (PEERS.md):
/// subscribers upgrade on `/sub/<channel>`, publishers POST to `/pub/<channel>`.
pub fn nginx_conf(prefix: &Path, module: &Path, port: u16, workers: u32, as_root: bool) -> String {
    let p = prefix.display();
    let user = if as_root { "user root;\n" } else { "" };
    format!(
        "# Generated by hearth-bench for one run; removed with its folder.\n\
         load_module {module};\n\
         {user}worker_processes {workers};\n\
         worker_rlimit_nofile {NOFILE_HARD};\n\
         daemon off;\n\
         master_process on;\n\
         pid {p}/nginx.pid;\n\
         error_log {p}/error.log warn;\n\
         events {{\n    worker_connections {NGINX_WORKER_CONNECTIONS};\n}}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {p}/tmp/body;\n\
         \x20   proxy_temp_path {p}/tmp/proxy;\n\
         \x20   fastcgi_temp_path {p}/tmp/fastcgi;\n\
         \x20   uwsgi_temp_path {p}/tmp/uwsgi;\n\
         \x20   scgi_temp_path {p}/tmp/scgi;\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{port} backlog={NGINX_BACKLOG} reuseport;\n\
         \x20       location ~ /sub/(\\w+)$ {{\n\
         \x20           nchan_subscriber websocket;\n\
         \x20           nchan_channel_id $1;\n\
         \x20           nchan_subscriber_first_message newest;\n\
         \x20       }}\n\
         \x20       location ~ /pub/(\\w+)$ {{\n\
         \x20           nchan_publisher http websocket;\n\
         \x20           nchan_channel_id $1;\n\
         \x20       }}\n\
         \x20   }}\n\
         }}\n",
        module = module.display(),
    )
}

/// The upgrade path clients use on `target`.
pub fn upgrade_path(target: GwTarget) -> String {
    match target {
        GwTarget::Hearth => GATEWAY_PATH.to_owned(),
        GwTarget::Nchan => format!("/sub/{NCHAN_CHANNEL}"),
    }
}

fn free_port() -> Result<u16, BenchError> {
    // Bound and released at once: nginx needs a number in its config, and loopback ports are
    // not handed out again that quickly.
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| BenchError::io("find a free port", e))?;
    let port = l
        .local_addr()
        .map_err(|e| BenchError::io("find a free port", e))?
        .port();
    Ok(port)
}

/// Children of `pid`, from /proc (nginx's workers).
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // Field 4 (ppid) comes second after the `)` closing the command name.
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat.get(i + 1..))
            .and_then(|rest| rest.split_ascii_whitespace().nth(1))
            .and_then(|f| f.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out.sort_unstable();
    out
}

impl GwServer {
    /// Starts the server `spec` describes and waits until it accepts connections.
    pub fn start(spec: &ServerSpec) -> Result<Self, BenchError> {
        match spec.target {
            GwTarget::Hearth => Self::start_hearth(spec),
            GwTarget::Nchan => Self::start_nchan(spec),
        }
    }

    fn spawn(
        cmd: &mut Command,
        target: GwTarget,
        core: usize,
        nice: i32,
        log: &Path,
    ) -> Result<Child, BenchError> {
        let (out, err) = log_files(log)?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: the closure only makes async-signal-safe syscalls (prctl, sched_setaffinity,
        // setpriority, getrlimit/setrlimit) and does not allocate.
        unsafe {
            cmd.pre_exec(move || {
                // A harness killed from outside (timeout, SIGKILL) runs no destructors: the
                // kernel then sends the server SIGTERM, so no server outlives its run.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                crate::sys::child_setup(core, nice)
            });
        }
        cmd.spawn()
            .map_err(|e| BenchError::io(format!("spawn {target}"), e))
    }

    fn start_hearth(spec: &ServerSpec) -> Result<Self, BenchError> {
        let not_ready = |detail: String| BenchError::NotReady {
            target: "hearth".into(),
            detail,
        };
        if !spec.hearth_bin.is_file() {
            return Err(not_ready(format!(
                "binary {} not found",
                spec.hearth_bin.display()
            )));
        }
        let scratch = scratch_dir(GwTarget::Hearth)?;
        let data = scratch.join("data");
        fs::create_dir_all(&data).map_err(|e| BenchError::io("create data dir", e))?;
        let ready_file = scratch.join("ready.json");
        let log = scratch.join("server.log");
        let mut cmd = Command::new(&spec.hearth_bin);
        cmd.args(["--shards", &spec.shards.to_string()])
            .args(["--http-addr", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .arg("--ready-file")
            .arg(&ready_file)
            .args(&spec.hearth_args);
        let child = Self::spawn(&mut cmd, GwTarget::Hearth, spec.core, spec.nice, &log)?;
        let mut server = GwServer {
            target: GwTarget::Hearth,
            pid: child.id(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child,
            scratch,
            workers: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(READY_TIMEOUT_S);
        let mut last = String::from("no ready file");
        loop {
            if let Ok(text) = fs::read_to_string(&ready_file) {
                match parse_hearth_ready(&text) {
                    Ok(r) => {
                        server.addr = r.http;
                        return Ok(server);
                    }
                    Err(e) => last = format!("{e} in {text:?}"),
                }
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(not_ready(format!(
                    "exited early with {status}; log: {}",
                    server.log_tail()
                )));
            }
            if Instant::now() > deadline {
                return Err(not_ready(format!(
                    "{last} after {READY_TIMEOUT_S} s; log: {}",
                    server.log_tail()
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn start_nchan(spec: &ServerSpec) -> Result<Self, BenchError> {
        let not_ready = |detail: String| BenchError::NotReady {
            target: "nchan".into(),
            detail,
        };
        for (what, path) in [
            ("nginx", &spec.nginx_bin),
            ("Nchan module", &spec.nchan_module),
        ] {
            if !path.is_file() {
                return Err(not_ready(format!(
                    "{what} {} not found (apt-get install -y --no-install-recommends nginx \
                     libnginx-mod-nchan)",
                    path.display()
                )));
            }
        }
        let scratch = scratch_dir(GwTarget::Nchan)?;
        fs::create_dir_all(scratch.join("tmp")).map_err(|e| BenchError::io("create tmp", e))?;
        let port = free_port()?;
        // SAFETY: geteuid has no arguments and cannot fail.
        let as_root = unsafe { libc::geteuid() } == 0;
        let conf = scratch.join("nginx.conf");
        fs::write(
            &conf,
            nginx_conf(&scratch, &spec.nchan_module, port, spec.shards, as_root),
        )
        .map_err(|e| BenchError::io("write nginx.conf", e))?;
        let log = scratch.join("server.log");
        let mut cmd = Command::new(&spec.nginx_bin);
        cmd.arg("-p")
            .arg(&scratch)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(scratch.join("error.log"));
        let child = Self::spawn(&mut cmd, GwTarget::Nchan, spec.core, spec.nice, &log)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut server = GwServer {
            target: GwTarget::Nchan,
            pid: child.id(),
            addr,
            child,
            scratch,
            workers: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(NGINX_READY_TIMEOUT_S);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(not_ready(format!(
                    "exited early with {status}; log: {}",
                    server.log_tail()
                )));
            }
            let workers = children_of(server.pid);
            if workers.len() >= spec.shards as usize
                && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            {
                server.workers = workers;
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(not_ready(format!(
                    "not accepting on {addr} after {NGINX_READY_TIMEOUT_S} s; log: {}",
                    server.log_tail()
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let mut text = fs::read_to_string(self.scratch.join("server.log")).unwrap_or_default();
        if let Ok(e) = fs::read_to_string(self.scratch.join("error.log")) {
            text.push_str(&e);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines
            .get(lines.len().saturating_sub(20)..)
            .unwrap_or_default()
            .join(" | ")
    }

    /// Every process of the server (nginx: master and current workers).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.pid];
        if self.target == GwTarget::Nchan {
            pids.extend(children_of(self.pid));
        }
        pids
    }

    /// CPU used so far by every process of the server.
    pub fn cpu(&self) -> Result<CpuTimes, BenchError> {
        let mut t = CpuTimes::default();
        // SAFETY: sysconf only reads a configuration value.
        let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
            .ok()
            .filter(|h| *h > 0)
            .unwrap_or(100);
        for pid in self.pids() {
            t.schedstat_ns += procfs::read_process_cpu(pid)?.ns;
            let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_err(|e| BenchError::io(format!("read /proc/{pid}/stat"), e))?;
            t.stat_ns += procfs::parse_stat_ticks(&stat)? * (1_000_000_000 / hz);
        }
        Ok(t)
    }

    /// Memory of every process of the server.
    pub fn mem(&self) -> Result<ProcMem, BenchError> {
        let mut m = ProcMem::default();
        for pid in self.pids() {
            let status = fs::read_to_string(format!("/proc/{pid}/status"))
                .map_err(|e| BenchError::io(format!("read /proc/{pid}/status"), e))?;
            m.processes += 1;
            m.vm_rss_kib += procfs::parse_kib_field(&status, "VmRSS")?;
            m.rss_anon_kib += procfs::parse_kib_field(&status, "RssAnon")?;
            m.rss_file_kib += procfs::parse_kib_field(&status, "RssFile")?;
            m.rss_shmem_kib += procfs::parse_kib_field(&status, "RssShmem")?;
            m.fds += procfs::read_fd_count(pid)?;
        }
        Ok(m)
    }

    /// Whether the main process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the server: SIGTERM, then SIGKILL (and nginx's workers by pid) after
    /// [`GW_STOP_TIMEOUT_S`]. Returns whether it exited by itself with status 0.
    pub fn stop(&mut self) -> bool {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status.success();
        }
        let _ = crate::sys::signal(self.pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(GW_STOP_TIMEOUT_S);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                if !status.success() {
                    eprintln!(
                        "  {} exited with {status} after SIGTERM; log: {}",
                        self.target,
                        self.log_tail()
                    );
                }
                return status.success();
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for &w in &self.workers {
            let _ = crate::sys::signal(w, libc::SIGKILL);
        }
        eprintln!(
            "  {} did not exit within {GW_STOP_TIMEOUT_S} s of SIGTERM (killed); log: {}",
            self.target,
            self.log_tail()
        );
        false
    }
}

impl Drop for GwServer {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.scratch);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hearth_ready_file_without_echo() {
        let r = parse_hearth_ready(r#"{"pid":9,"http":"127.0.0.1:8080","echo":null,"shards":1}"#)
            .unwrap();
        assert_eq!(r.pid, 9);
        assert_eq!(r.http, "127.0.0.1:8080".parse().unwrap());
        assert!(parse_hearth_ready(r#"{"pid":9}"#).is_err());
    }

    #[test]
    fn nginx_conf_has_the_peer_essentials() {
        let c = nginx_conf(Path::new("/tmp/x"), Path::new("/m/nchan.so"), 4242, 2, true);
        assert!(c.starts_with("# Generated"));
        assert!(c.contains("load_module /m/nchan.so;"));
        assert!(c.contains("worker_processes 2;"));
        assert!(c.contains("worker_rlimit_nofile 20000;"));
        assert!(c.contains("worker_connections 65536;"));
        assert!(c.contains("listen 127.0.0.1:4242 backlog=4096 reuseport;"));
        assert!(c.contains("location ~ /sub/(\\w+)$ {"));
        assert!(c.contains("nchan_subscriber websocket;"));
        assert!(c.contains("nchan_publisher http websocket;"));
        assert!(c.contains("user root;"));
        assert!(c.contains("pid /tmp/x/nginx.pid;"));
        assert!(!nginx_conf(Path::new("/t"), Path::new("/m"), 1, 1, false).contains("user "));
        assert_eq!(c.matches('{').count(), c.matches('}').count());
    }

    #[test]
    fn process_samples_of_this_process() {
        let me = std::process::id();
        // This test's own process stands in for a server: the samplers read any pid.
        let kids = children_of(me);
        assert!(!kids.contains(&me));
        assert_eq!(upgrade_path(GwTarget::Nchan), "/sub/bench");
        assert_eq!(upgrade_path(GwTarget::Hearth), "/?v=10&encoding=json");
    }
}
