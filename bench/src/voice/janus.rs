//! Janus 1.1.2 as `voice-forward`'s peer (PEERS.md): the VideoRoom plugin behind the plain-HTTP
//! transport on 127.0.0.1, nothing else loaded (no other plugin, transport, event handler or
//! logger; no STUN, ICE restricted to loopback, sessions never time out). Per room a VideoRoom
//! room; per speaker `add_remote_publisher` (plain RTP in; the publisher's SSRC must be 1000);
//! per (speaker, other participant) one `rtp_forward` to that participant's UDP port with
//! `srtp_suite` 80 / `srtp_crypto`, so Janus encrypts every forwarded packet
//! (AES_CM_128_HMAC_SHA1_80), and its own SSRC so the receiver knows the speaker.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::BenchError;
use crate::gateway::http::HttpClient;
use crate::gateway::servers::CpuTimes;
use crate::procfs;

/// The Debian package's binary.
pub const JANUS_BIN_DEFAULT: &str = "/usr/bin/janus";
/// Where Debian puts Janus' plugins, transports, event handlers and loggers.
pub const JANUS_LIB_DIR: &str = "/usr/lib/x86_64-linux-gnu/janus";
/// The SSRC a remote publisher's audio must carry (Janus' REMOTE_PUBLISHER_BASE_SSRC + mindex 0).
pub const REMOTE_PUBLISHER_SSRC: u32 = 1000;
/// Forwarded packets carry this plus the speaker's index as SSRC.
pub const FORWARD_SSRC_BASE: u32 = 0x4842_0000;
/// libsrtp suite 80: AES_CM_128_HMAC_SHA1_80.
pub const SRTP_SUITE: u32 = 80;
/// The SRTP master key and salt (30 bytes, base64) every forwarder uses; fixed so a run can be
/// decrypted later from a capture.
pub const SRTP_CRYPTO: &str = "WbTBosdVUZqEb6Htqhn+m3z7wUh4RJVR8nE15GbN";
/// RTP/RTCP port range Janus may use.
pub const RTP_PORT_RANGE: &str = "40000-60000";
/// Log level (4: info, so errors and set-up steps are in the log but not per packet).
pub const DEBUG_LEVEL: u32 = 4;
/// How long Janus may take to answer on HTTP after start.
pub const READY_TIMEOUT_S: u64 = 20;
/// How long Janus has to exit after SIGTERM before SIGKILL.
pub const STOP_TIMEOUT_S: u64 = 10;
/// Poll interval while waiting for start or exit.
const POLL_MS: u64 = 50;

/// A running Janus, stopped and its folder removed on drop.
#[derive(Debug)]
pub struct Janus {
    /// Its process id.
    pub pid: u32,
    /// HTTP API address.
    pub addr: SocketAddr,
    child: Child,
    dir: PathBuf,
    http: HttpClient,
    session: u64,
    handle: u64,
    tx: u64,
}

fn free_port() -> Result<u16, BenchError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| BenchError::io("find a free port", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| BenchError::io("find a free port", e))
}

/// The configuration files of one run, in `dir`.
pub fn config_files(dir: &Path, http_port: u16) -> Vec<(PathBuf, String)> {
    let d = dir.display();
    vec![
        (
            dir.join("janus.jcfg"),
            format!(
                "general: {{\n  configs_folder = \"{d}\"\n  plugins_folder = \"{d}/plugins\"\n  \
                 transports_folder = \"{d}/transports\"\n  events_folder = \"{d}/none\"\n  \
                 loggers_folder = \"{d}/none\"\n  debug_level = {DEBUG_LEVEL}\n  \
                 session_timeout = 0\n  server_name = \"hearth-bench\"\n}}\n\
                 media: {{\n  rtp_port_range = \"{RTP_PORT_RANGE}\"\n}}\n\
                 nat: {{\n  ice_enforce_list = \"lo\"\n}}\n"
            ),
        ),
        (
            dir.join("janus.transport.http.jcfg"),
            format!(
                "general: {{\n  json = \"plain\"\n  base_path = \"/janus\"\n  http = true\n  \
                 port = {http_port}\n  ip = \"127.0.0.1\"\n  https = false\n}}\n\
                 admin: {{\n  admin_http = false\n  admin_https = false\n}}\n"
            ),
        ),
        (
            dir.join("janus.plugin.videoroom.jcfg"),
            "general: {\n}\n".to_owned(),
        ),
    ]
}

fn api_err(what: &str, v: &Value) -> BenchError {
    BenchError::Client(format!("janus {what}: {v}"))
}

impl Janus {
    /// Writes a configuration folder and starts Janus pinned to `core`.
    pub fn start(bin: &Path, core: usize, nice: i32) -> Result<Self, BenchError> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |e: std::io::Error| BenchError::io(what, e)
        };
        let dir = std::env::temp_dir().join(format!("hearth-bench-janus-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for sub in ["plugins", "transports", "none"] {
            fs::create_dir_all(dir.join(sub)).map_err(io("create janus folder"))?;
        }
        std::os::unix::fs::symlink(
            Path::new(JANUS_LIB_DIR).join("plugins/libjanus_videoroom.so"),
            dir.join("plugins/libjanus_videoroom.so"),
        )
        .map_err(io("link videoroom plugin"))?;
        std::os::unix::fs::symlink(
            Path::new(JANUS_LIB_DIR).join("transports/libjanus_http.so"),
            dir.join("transports/libjanus_http.so"),
        )
        .map_err(io("link http transport"))?;
        let port = free_port()?;
        for (path, text) in config_files(&dir, port) {
            fs::write(&path, text).map_err(io("write janus config"))?;
        }
        let log = dir.join("janus.log");
        let mut cmd = Command::new(bin);
        cmd.arg("-F")
            .arg(&dir)
            .arg("-C")
            .arg(dir.join("janus.jcfg"))
            .arg("-L")
            .arg(&log)
            .arg("-N")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: the closure only makes async-signal-safe syscalls (prctl, sched_setaffinity,
        // setpriority, getrlimit/setrlimit) and does not allocate.
        unsafe {
            cmd.pre_exec(move || {
                // Janus never outlives a killed harness.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                crate::sys::child_setup(core, nice)
            });
        }
        let child = cmd.spawn().map_err(io("spawn janus"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut j = Janus {
            pid: child.id(),
            addr,
            child,
            dir,
            http: HttpClient::new(addr),
            session: 0,
            handle: 0,
            tx: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(READY_TIMEOUT_S);
        loop {
            if let Ok(v) = j.post("/janus", json!({"janus": "create"})) {
                j.session = v["data"]["id"]
                    .as_u64()
                    .ok_or_else(|| api_err("create", &v))?;
                break;
            }
            if Instant::now() > deadline || matches!(j.child.try_wait(), Ok(Some(_))) {
                return Err(BenchError::NotReady {
                    target: "janus".into(),
                    detail: format!("no HTTP answer; log: {}", log.display()),
                });
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
            j.http = HttpClient::new(addr);
        }
        let v = j.post(
            &format!("/janus/{}", j.session),
            json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
        )?;
        j.handle = v["data"]["id"]
            .as_u64()
            .ok_or_else(|| api_err("attach", &v))?;
        Ok(j)
    }

    fn post(&mut self, path: &str, mut body: Value) -> Result<Value, BenchError> {
        self.tx += 1;
        body["transaction"] = json!(format!("t{}", self.tx));
        let resp = self.http.post_json(path, &body.to_string())?;
        if resp.status != 200 {
            return Err(BenchError::Client(format!(
                "janus {path} answered {}: {}",
                resp.status,
                resp.text()
            )));
        }
        serde_json::from_slice(&resp.body).map_err(|e| BenchError::Parse {
            file: "janus answer".into(),
            detail: e.to_string(),
        })
    }

    /// A synchronous VideoRoom request; returns its `plugindata.data`.
    pub fn request(&mut self, body: Value) -> Result<Value, BenchError> {
        let path = format!("/janus/{}/{}", self.session, self.handle);
        let what = body["request"].as_str().unwrap_or("request").to_owned();
        let v = self.post(&path, json!({"janus": "message", "body": body}))?;
        let data = v["plugindata"]["data"].clone();
        if v["janus"] != "success" || data.get("error").is_some() {
            return Err(api_err(&what, &v));
        }
        Ok(data)
    }

    /// Creates room `room` for up to `publishers` speakers.
    pub fn create_room(&mut self, room: u64, publishers: usize) -> Result<(), BenchError> {
        self.request(
            json!({"request": "create", "room": room, "publishers": publishers,
            "audiocodec": "opus", "is_private": true}),
        )?;
        Ok(())
    }

    /// Adds a remote (plain RTP) audio publisher; returns the UDP address to send its RTP to.
    pub fn add_remote_publisher(&mut self, room: u64, id: u64) -> Result<SocketAddr, BenchError> {
        let d = self.request(
            json!({"request": "add_remote_publisher", "room": room, "id": id,
            "display": format!("speaker-{id}"), "iface": "127.0.0.1",
            "streams": [{"type": "audio", "mindex": 0, "mid": "0", "codec": "opus"}]}),
        )?;
        let port = d["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| api_err("add_remote_publisher", &d))?;
        Ok(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// Forwards publisher `id`'s audio to `port` on 127.0.0.1, SRTP-encrypted, as `ssrc`.
    pub fn rtp_forward(
        &mut self,
        room: u64,
        id: u64,
        port: u16,
        ssrc: u32,
    ) -> Result<(), BenchError> {
        let d = self.request(
            json!({"request": "rtp_forward", "room": room, "publisher_id": id,
            "host": "127.0.0.1", "host_family": "ipv4",
            "streams": [{"mid": "0", "port": port, "ssrc": ssrc}],
            "srtp_suite": SRTP_SUITE, "srtp_crypto": SRTP_CRYPTO}),
        )?;
        let srtp = d["forwarders"]
            .as_array()
            .and_then(|f| f.first())
            .and_then(|f| f["srtp"].as_bool());
        if srtp != Some(true) {
            return Err(api_err("rtp_forward (not SRTP)", &d));
        }
        Ok(())
    }

    /// CPU used so far by Janus (all threads).
    pub fn cpu(&self) -> Result<CpuTimes, BenchError> {
        // SAFETY: sysconf only reads a configuration value.
        let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
            .ok()
            .filter(|h| *h > 0)
            .unwrap_or(100);
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .map_err(|e| BenchError::io("read janus stat", e))?;
        Ok(CpuTimes {
            schedstat_ns: procfs::read_process_cpu(self.pid)?.ns,
            stat_ns: procfs::parse_stat_ticks(&stat)? * (1_000_000_000 / hz),
        })
    }

    /// Threads Janus runs now.
    pub fn threads(&self) -> u64 {
        fs::read_dir(format!("/proc/{}/task", self.pid)).map_or(0, |d| d.count() as u64)
    }

    /// SIGTERM, then SIGKILL; whether it exited by itself with status 0.
    pub fn stop(&mut self) -> bool {
        let _ = crate::sys::signal(self.pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(STOP_TIMEOUT_S);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.success();
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn config_stays_on_loopback_with_only_http_and_videoroom() {
        let files = config_files(Path::new("/tmp/x"), 18088);
        let all: String = files.iter().map(|(_, t)| t.as_str()).collect();
        assert!(all.contains("ip = \"127.0.0.1\""));
        assert!(all.contains("session_timeout = 0"));
        assert!(all.contains("port = 18088"));
        assert!(!all.contains("stun"));
        assert_eq!(files.len(), 3);
    }
}
