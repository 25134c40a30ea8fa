//! `voice-forward` (issue 6): voice packets forwarded per server CPU-second, added latency and
//! loss, for Hearth's per-shard SFU and for Janus 1.1.2's VideoRoom in the same run, over
//! rooms × participants × speakers configurations.
//!
//! **Hearth**: every participant joins through the real path (`hearth.rs`): control API → main
//! gateway → op 4 → voice gateway over TLS → IP discovery → Select Protocol → Session
//! Description; speakers send AEAD-sealed (`aead_aes256_gcm_rtpsize` by default) RTP with real
//! Opus frames at 50 packets/s; the SFU decrypts each packet and re-encrypts it for every other
//! participant of the room. **Janus**: one VideoRoom room per room, a remote (plain RTP)
//! publisher per speaker, one SRTP `rtp_forward` per (speaker, other participant): the same
//! packets in, the same number of encrypted copies out (`janus.rs`).
//!
//! Per configuration a fresh server is started pinned to `--server-core`; the harness (set-up,
//! keeper and the load loop, `load.rs`) runs pinned to `--client-core`. Measured in the window:
//! the server's CPU (schedstat of every thread; /proc/PID/stat as a cross-check), deliveries
//! received, forwarded packets per second and per server CPU-second, send → receipt latency
//! (p50/p99/p99.9), loss, and the load loop's own CPU share (near 100 % means the load
//! generator, not the server, set the limit).

pub mod hearth;
pub mod janus;
pub mod load;
pub mod opus;
pub mod payload;
pub mod report;
pub mod ws;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use clap::{Args, ValueEnum};
use serde::Serialize;
use sfu::crypto::{Mode, TransportCipher};

use crate::BenchError;
use crate::cli::HEARTH_PROFILE_ARG;
use crate::gateway::servers::{CpuTimes, GwServer, ServerSpec};
use crate::gateway::target::GwTarget;
use crate::latency::LatencySummary;
use crate::machine::RunMeta;
use load::{Endpoint, Phases, RecvKind, Speaker};

/// The scenario's name: the subcommand and the results folder's prefix.
pub const SCENARIO: &str = "voice-forward";
/// Configurations measured by default: rooms × participants × speakers.
pub const CONFIGS_DEFAULT: &str = "10x10x2,10x100x2,50x100x2,95x100x2";
/// Most participants in one room (the SFU's room limit, Discord's 99 + a bot).
pub const ROOM_PARTICIPANTS_MAX: usize = sfu::limits::ROOM_PARTICIPANTS_MAX;
/// Most participants in one configuration: the harness holds a UDP socket and a voice TLS
/// connection per participant in one process, and the hard descriptor limit here is 20000.
pub const PARTICIPANTS_MAX: usize = 9_900;
/// Seconds of sending before the window by default.
pub const WARMUP_S_DEFAULT: u64 = 3;
/// Window length by default, seconds.
pub const DURATION_S_DEFAULT: u64 = 10;
/// Receiving after sending stopped by default, ms.
pub const DRAIN_MS_DEFAULT: u64 = 500;
/// Pause after set-up before the load starts, so the server's set-up work does not spill into
/// the window, ms.
pub const SETTLE_MS: u64 = 1000;
/// Issue 6's target: forwarded packets per server CPU-second (one core), with encryption.
pub const TARGET_FORWARDED_PER_CPU_S: f64 = 1_000_000.0;
/// Issue 6's target: added latency p99, µs.
pub const TARGET_P99_US: f64 = 200.0;
/// Issue 6's target: Hearth ÷ Janus forwarded packets per CPU-second.
pub const TARGET_RATIO_VS_JANUS: f64 = 5.0;
/// Issue 6's target: voice participants one core serves.
pub const TARGET_PARTICIPANTS_PER_CORE: usize = 10_000;

/// The servers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum VoiceTarget {
    /// Hearth's per-shard SFU.
    Hearth,
    /// Janus 1.1.2 VideoRoom with SRTP RTP forwarders.
    Janus,
}

impl std::fmt::Display for VoiceTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VoiceTarget::Hearth => "hearth",
            VoiceTarget::Janus => "janus",
        })
    }
}

/// One rooms × participants × speakers point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Config {
    /// Rooms.
    pub rooms: usize,
    /// Participants per room (speakers included).
    pub participants: usize,
    /// Speakers per room.
    pub speakers: usize,
}

impl Config {
    /// Participants in all rooms.
    pub fn total_participants(&self) -> usize {
        self.rooms * self.participants
    }

    /// Speakers in all rooms.
    pub fn total_speakers(&self) -> usize {
        self.rooms * self.speakers
    }

    /// Forwarded packets per second the configuration asks for: every speaker's 50 packets/s to
    /// every other participant of its room.
    pub fn offered_forwards_per_s(&self) -> f64 {
        (self.total_speakers() * (self.participants - 1)) as f64 * 1e9
            / load::FRAME_INTERVAL_NS as f64
    }
}

impl std::fmt::Display for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.rooms, self.participants, self.speakers)
    }
}

impl FromStr for Config {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<usize> = s
            .split('x')
            .map(|p| p.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("{s}: expected ROOMSxPARTICIPANTSxSPEAKERS, e.g. 10x100x2"))?;
        let [rooms, participants, speakers] = parts[..] else {
            return Err(format!("{s}: expected three numbers"));
        };
        let c = Config {
            rooms,
            participants,
            speakers,
        };
        if rooms == 0 || speakers == 0 || participants < 2 {
            return Err(format!(
                "{s}: need rooms ≥ 1, participants ≥ 2, speakers ≥ 1"
            ));
        }
        if speakers > participants {
            return Err(format!("{s}: more speakers than participants"));
        }
        if participants > ROOM_PARTICIPANTS_MAX {
            return Err(format!(
                "{s}: at most {ROOM_PARTICIPANTS_MAX} participants per room"
            ));
        }
        if c.total_participants() > PARTICIPANTS_MAX {
            return Err(format!(
                "{s}: at most {PARTICIPANTS_MAX} participants (descriptor limit of the harness)"
            ));
        }
        Ok(c)
    }
}

/// `voice-forward` flags.
#[derive(Debug, Clone, Args)]
pub struct VoiceForwardArgs {
    /// Where result folders are written.
    #[arg(long, default_value = "bench/results")]
    pub out_dir: PathBuf,
    /// Core every server is pinned to (all its threads).
    #[arg(long, default_value_t = 0)]
    pub server_core: usize,
    /// Core the harness (set-up, keeper, load loop) is pinned to.
    #[arg(long, default_value_t = 1)]
    pub client_core: usize,
    /// Nice value of the servers and the harness (negative needs root).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub nice: i32,
    /// Servers to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "hearth,janus")]
    pub targets: Vec<VoiceTarget>,
    /// Configurations, ROOMSxPARTICIPANTSxSPEAKERS, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = CONFIGS_DEFAULT)]
    pub configs: Vec<Config>,
    /// Hearth shards (Janus gets the same cores: all its threads on `--server-core`).
    #[arg(long, default_value_t = 1)]
    pub shards: u32,
    /// Hearth's transport encryption mode.
    #[arg(long, default_value = "aead_aes256_gcm_rtpsize")]
    pub mode: String,
    /// Sending before the window, seconds.
    #[arg(long, default_value_t = WARMUP_S_DEFAULT)]
    pub warmup_s: u64,
    /// The measured window, seconds.
    #[arg(long, default_value_t = DURATION_S_DEFAULT)]
    pub duration_s: u64,
    /// Receiving after sending stops, ms.
    #[arg(long, default_value_t = DRAIN_MS_DEFAULT)]
    pub drain_ms: u64,
    /// The `hearth` binary (default: next to this executable).
    #[arg(long)]
    pub hearth_bin: Option<PathBuf>,
    /// Extra argument for `hearth` (repeatable); the default selects bench/hearth-profile.toml.
    #[arg(long, allow_hyphen_values = true, default_value = HEARTH_PROFILE_ARG)]
    pub hearth_arg: Vec<String>,
    /// The `janus` binary.
    #[arg(long, default_value = janus::JANUS_BIN_DEFAULT)]
    pub janus_bin: PathBuf,
    /// A line for the summary's notes (repeatable), e.g. how busy the machine was.
    #[arg(long)]
    pub note: Vec<String>,
}

/// The requested load.
#[derive(Debug, Clone, Serialize)]
pub struct VoiceParams {
    /// Configurations.
    pub configs: Vec<Config>,
    /// Hearth's mode.
    pub mode: String,
    /// Janus' SRTP suite.
    pub janus_srtp_suite: u32,
    /// Seconds.
    pub warmup_s: u64,
    /// Seconds.
    pub duration_s: u64,
    /// Ms.
    pub drain_ms: u64,
    /// Hearth shards; Janus runs on as many cores.
    pub shards: u32,
    /// Server core.
    pub server_core: usize,
    /// Client core.
    pub client_core: usize,
    /// Nice.
    pub nice: i32,
    /// Hearth's arguments besides addresses, data folder and ready file.
    pub hearth_args: Vec<String>,
    /// Opus frames replayed (one second of a 440 Hz tone at 64 kb/s), their sizes.
    pub opus_frame_bytes: Vec<usize>,
    /// `rustc` processes when the run started.
    pub rustc_at_start: u32,
    /// And when it ended.
    pub rustc_at_end: u32,
    /// Notes.
    pub notes: Vec<String>,
}

/// One (target, configuration) measurement.
#[derive(Debug, Clone, Serialize)]
pub struct VoiceResult {
    /// Which server.
    pub target: VoiceTarget,
    /// The configuration.
    pub config: Config,
    /// Participants that joined (Hearth) or got their forwards (Janus).
    pub participants: usize,
    /// Seconds of set-up (users, guilds and joins; Janus: rooms, publishers, forwarders).
    pub setup_s: f64,
    /// Window length, s.
    pub window_s: f64,
    /// Packets the speakers sent in the window.
    pub sent: u64,
    /// Deliveries expected from them.
    pub expected: u64,
    /// Deliveries received.
    pub received: u64,
    /// Expected − received.
    pub lost: u64,
    /// Lost ÷ expected.
    pub loss: f64,
    /// Receipts whose send time could not be read.
    pub unreadable: u64,
    /// Receipts of packets sent outside the window.
    pub outside_window: u64,
    /// Send errors of the load generator.
    pub send_errors: u64,
    /// Forwarded packets per second asked for.
    pub offered_per_s: f64,
    /// Deliveries received per wall second.
    pub forwarded_per_s: f64,
    /// Server CPU in the window (schedstat, all threads), s.
    pub server_cpu_s: f64,
    /// The same from /proc/PID/stat (clock ticks), s.
    pub server_cpu_stat_s: f64,
    /// Server CPU ÷ window.
    pub server_cpu_util: f64,
    /// Deliveries received per server CPU-second: the "per core" figure.
    pub forwarded_per_cpu_s: f64,
    /// Share of the window the server's core was busy (/proc/stat: everything but idle and
    /// iowait, so softirq work such as loopback delivery in ksoftirqd counts, and so would any
    /// other process on that core).
    pub server_core_busy: f64,
    /// Deliveries received per busy second of the server's core: a bound that charges the
    /// server with every cycle its core spent.
    pub forwarded_per_core_busy_s: f64,
    /// Load loop CPU ÷ window (near 1: the load generator set the limit).
    pub client_cpu_util: f64,
    /// Send → receipt latency.
    pub latency: Option<LatencySummary>,
    /// How late sends left after their due time.
    pub send_lag: Option<LatencySummary>,
    /// Hearth: voice gateway keeper counters (heartbeats, closes).
    pub keeper: Option<hearth::KeeperStats>,
    /// Janus: threads at the end of the window.
    pub server_threads: u64,
    /// Hearth: its voice counters from /metrics (summed over shards), change from just before
    /// the load started to just after the drain (warm-up and drain included): `forwarded` vs the
    /// deliveries received, and every drop counter, say where packets were lost.
    pub server_counters: BTreeMap<String, u64>,
}

/// A target × configuration that could not be measured.
#[derive(Debug, Clone, Serialize)]
pub struct VoiceFailure {
    /// Which server.
    pub target: VoiceTarget,
    /// Which configuration.
    pub config: Config,
    /// What went wrong.
    pub error: String,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct VoiceRun {
    /// The load.
    pub params: VoiceParams,
    /// Measurements.
    pub results: Vec<VoiceResult>,
    /// Failures.
    pub failures: Vec<VoiceFailure>,
}

/// `hearth-bench voice-forward`: runs, writes the report, prints its folder.
pub fn main(args: &VoiceForwardArgs) -> Result<(), BenchError> {
    let meta = RunMeta::collect();
    let run = run(args)?;
    let dir = report::write(&args.out_dir, &meta, &run)?;
    println!("{}", dir.display());
    Ok(())
}

/// Runs every target over every configuration.
pub fn run(args: &VoiceForwardArgs) -> Result<VoiceRun, BenchError> {
    let mode = Mode::from_name(&args.mode)
        .ok_or_else(|| BenchError::Invalid(format!("unknown mode {}", args.mode)))?;
    if args.configs.is_empty() || args.duration_s == 0 || args.shards == 0 {
        return Err(BenchError::Invalid(
            "need configurations, --duration-s ≥ 1 and --shards ≥ 1".into(),
        ));
    }
    let rustc_at_start = crate::gateway::common::rustc_processes();
    crate::sys::raise_nofile().map_err(|e| BenchError::io("raise RLIMIT_NOFILE", e))?;
    crate::sys::pin_to_core(0, args.client_core).map_err(|e| BenchError::io("pin harness", e))?;
    crate::sys::prioritise_tree(args.nice).map_err(|e| BenchError::io("nice", e))?;
    let frames = opus::tone_frames()?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for &config in &args.configs {
        for &target in &args.targets {
            eprintln!(
                "voice-forward: {target} {config}: {} participants, {} speakers, {:.0} forwards/s offered",
                config.total_participants(),
                config.total_speakers(),
                config.offered_forwards_per_s()
            );
            let r = match target {
                VoiceTarget::Hearth => run_hearth(args, config, mode, &frames),
                VoiceTarget::Janus => run_janus(args, config, &frames),
            };
            match r {
                Ok(r) => {
                    eprintln!(
                        "  {:.0} forwarded/s, {:.0} per server CPU-s (CPU {:.0} %), loss {:.4} %, p50 {} µs, p99 {} µs, client CPU {:.0} %",
                        r.forwarded_per_s,
                        r.forwarded_per_cpu_s,
                        r.server_cpu_util * 100.0,
                        r.loss * 100.0,
                        r.latency.as_ref().map_or(0.0, |l| l.p50_us),
                        r.latency.as_ref().map_or(0.0, |l| l.p99_us),
                        r.client_cpu_util * 100.0
                    );
                    results.push(r);
                }
                Err(e) => {
                    eprintln!("  FAILED: {e}");
                    failures.push(VoiceFailure {
                        target,
                        config,
                        error: e.to_string(),
                    });
                }
            }
        }
    }
    Ok(VoiceRun {
        params: VoiceParams {
            configs: args.configs.clone(),
            mode: mode.as_str().to_owned(),
            janus_srtp_suite: janus::SRTP_SUITE,
            warmup_s: args.warmup_s,
            duration_s: args.duration_s,
            drain_ms: args.drain_ms,
            shards: args.shards,
            server_core: args.server_core,
            client_core: args.client_core,
            nice: args.nice,
            hearth_args: args.hearth_arg.clone(),
            opus_frame_bytes: frames.iter().map(Vec::len).collect(),
            rustc_at_start,
            rustc_at_end: crate::gateway::common::rustc_processes(),
            notes: args.note.clone(),
        },
        results,
        failures,
    })
}

fn phases(args: &VoiceForwardArgs) -> Phases {
    Phases {
        warmup_ns: args.warmup_s * 1_000_000_000,
        window_ns: args.duration_s * 1_000_000_000,
        drain_ns: args.drain_ms * 1_000_000,
    }
}

/// Turns the load loop's outcome and the server's CPU over the window into a result.
#[allow(clippy::too_many_arguments)]
fn result(
    target: VoiceTarget,
    config: Config,
    participants: usize,
    setup_s: f64,
    o: &load::LoadOutcome,
    wcpu: WindowCpu,
    keeper: Option<hearth::KeeperStats>,
    server_threads: u64,
    server_counters: BTreeMap<String, u64>,
) -> VoiceResult {
    let cpu = wcpu.server;
    let window_s = (o.wall.1.saturating_sub(o.wall.0)) as f64 / 1e9;
    let core_busy_s = wcpu.core_busy_share * window_s;
    let cpu_s = cpu.schedstat_ns as f64 / 1e9;
    let lost = payload::lost(o.expected, o.received);
    VoiceResult {
        target,
        config,
        participants,
        setup_s,
        window_s,
        sent: o.sent,
        expected: o.expected,
        received: o.received,
        lost,
        loss: payload::share(lost, o.expected),
        unreadable: o.unreadable,
        outside_window: o.outside_window,
        send_errors: o.send_errors,
        offered_per_s: config.offered_forwards_per_s(),
        forwarded_per_s: if window_s > 0.0 {
            o.received as f64 / window_s
        } else {
            0.0
        },
        server_cpu_s: cpu_s,
        server_cpu_stat_s: cpu.stat_ns as f64 / 1e9,
        server_cpu_util: if window_s > 0.0 {
            cpu_s / window_s
        } else {
            0.0
        },
        forwarded_per_cpu_s: if cpu_s > 0.0 {
            o.received as f64 / cpu_s
        } else {
            0.0
        },
        server_core_busy: wcpu.core_busy_share,
        forwarded_per_core_busy_s: if core_busy_s > 0.0 {
            o.received as f64 / core_busy_s
        } else {
            0.0
        },
        client_cpu_util: if window_s > 0.0 {
            o.client_cpu_ns as f64 / 1e9 / window_s
        } else {
            0.0
        },
        latency: (!o.latency.is_empty()).then(|| LatencySummary::from_ns(&o.latency)),
        send_lag: (!o.send_lag.is_empty()).then(|| LatencySummary::from_ns(&o.send_lag)),
        keeper,
        server_threads,
        server_counters,
    }
}

/// Hearth's voice counters (`voice_*` series of /metrics, summed over shards and labels).
pub fn voice_counters(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if !name.contains("voice_") {
            continue;
        }
        if let Ok(v) = value.trim().parse::<f64>() {
            *out.entry(name.to_owned()).or_default() += v as u64;
        }
    }
    out
}

fn hearth_counters(addr: std::net::SocketAddr) -> BTreeMap<String, u64> {
    let mut http = crate::gateway::http::HttpClient::new(addr);
    http.request("GET", "/metrics", &[], b"")
        .ok()
        .filter(|r| r.status == 200)
        .map(|r| voice_counters(&r.text()))
        .unwrap_or_default()
}

fn counters_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(before.get(k).copied().unwrap_or(0)),
            )
        })
        .collect()
}

fn run_hearth(
    args: &VoiceForwardArgs,
    config: Config,
    mode: Mode,
    frames: &[Vec<u8>],
) -> Result<VoiceResult, BenchError> {
    let hearth_bin = match &args.hearth_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| BenchError::io("current_exe", e))?
            .parent()
            .map(|d| d.join("hearth"))
            .ok_or_else(|| BenchError::Invalid("executable has no parent folder".into()))?,
    };
    let mut server = GwServer::start(&ServerSpec {
        target: GwTarget::Hearth,
        hearth_bin,
        hearth_args: args.hearth_arg.clone(),
        nginx_bin: PathBuf::new(),
        nchan_module: PathBuf::new(),
        shards: args.shards,
        core: args.server_core,
        nice: args.nice,
    })?;
    let t0 = Instant::now();
    let rooms = hearth::create_rooms(server.addr, config.rooms, config.participants)?;
    eprintln!("  users and guilds in {:.1} s", t0.elapsed().as_secs_f64());
    let keeper = hearth::Keeper::start();
    let joined = hearth::join_all(server.addr, &rooms, config.speakers, mode, &keeper)?;
    let setup_s = t0.elapsed().as_secs_f64();
    eprintln!("  {} participants joined in {setup_s:.1} s", joined.len());
    let mut speakers = Vec::new();
    let mut endpoints = Vec::new();
    for j in joined {
        let speaker = (j.index < config.speakers).then(|| {
            speakers.push(Speaker {
                index: speakers.len(),
                dest: j.server,
                ssrc: j.ssrc,
                cipher: Some(TransportCipher::new(j.mode, &j.key)),
                fanout: (config.participants - 1) as u64,
                counter: 0,
                seq: 0,
            });
            speakers.len() - 1
        });
        endpoints.push(Endpoint {
            udp: j.udp,
            recv: RecvKind::Aead(TransportCipher::new(j.mode, &j.key)),
            speaker,
        });
    }
    std::thread::sleep(std::time::Duration::from_millis(SETTLE_MS));
    let before = hearth_counters(server.addr);
    let (outcome, cpu) = measure(
        &server_cpu_fn(&server),
        args.server_core,
        &endpoints,
        &mut speakers,
        frames,
        phases(args),
    )?;
    let counters = counters_delta(&before, &hearth_counters(server.addr));
    let ks = keeper.snapshot();
    let participants = endpoints.len();
    drop(endpoints);
    let _ = keeper.finish();
    server.stop();
    Ok(result(
        VoiceTarget::Hearth,
        config,
        participants,
        setup_s,
        &outcome,
        cpu,
        Some(ks),
        0,
        counters,
    ))
}

fn server_cpu_fn(server: &GwServer) -> impl Fn() -> Result<CpuTimes, BenchError> + '_ {
    move || server.cpu()
}

/// (busy, total) jiffies of one core from /proc/stat: busy is everything but idle and iowait,
/// so it includes interrupt and softirq time (loopback delivery a server's sends trigger may
/// run in ksoftirqd, which is not the server's process).
pub fn parse_core_jiffies(stat: &str, core: usize) -> Option<(u64, u64)> {
    let name = format!("cpu{core}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

fn core_jiffies(core: usize) -> Option<(u64, u64)> {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_core_jiffies(&s, core))
}

/// The server's CPU and its core's busy share over the window.
#[derive(Debug, Clone, Copy)]
struct WindowCpu {
    server: CpuTimes,
    core_busy_share: f64,
}

/// Runs the load loop and samples the server's CPU and its core when the window opens and
/// closes.
fn measure(
    cpu: &dyn Fn() -> Result<CpuTimes, BenchError>,
    core: usize,
    endpoints: &[Endpoint],
    speakers: &mut [Speaker],
    frames: &[Vec<u8>],
    phases: Phases,
) -> Result<(load::LoadOutcome, WindowCpu), BenchError> {
    let mut at_open = None;
    let mut at_close = None;
    let outcome = load::run(endpoints, speakers, frames, phases, |open| {
        let c = cpu().ok().zip(core_jiffies(core));
        if open {
            at_open = c;
        } else {
            at_close = c;
        }
    })?;
    let (Some((a, ja)), Some((b, jb))) = (at_open, at_close) else {
        return Err(BenchError::Client("could not read the server's CPU".into()));
    };
    let total = jb.1.saturating_sub(ja.1);
    Ok((
        outcome,
        WindowCpu {
            server: b.since(&a),
            core_busy_share: if total > 0 {
                jb.0.saturating_sub(ja.0) as f64 / total as f64
            } else {
                0.0
            },
        },
    ))
}

fn run_janus(
    args: &VoiceForwardArgs,
    config: Config,
    frames: &[Vec<u8>],
) -> Result<VoiceResult, BenchError> {
    let mut j = janus::Janus::start(&args.janus_bin, args.server_core, args.nice)?;
    let t0 = Instant::now();
    let mut endpoints = Vec::new();
    let mut speakers = Vec::new();
    for r in 0..config.rooms {
        let room = r as u64 + 1;
        j.create_room(room, config.speakers)?;
        let base = endpoints.len();
        for i in 0..config.participants {
            let udp = std::net::UdpSocket::bind("127.0.0.1:0")
                .map_err(|e| BenchError::io("bind udp", e))?;
            udp.set_nonblocking(true)
                .map_err(|e| BenchError::io("udp non-blocking", e))?;
            let speaker = if i < config.speakers {
                let dest = j.add_remote_publisher(room, (base + i) as u64 + 1)?;
                speakers.push(Speaker {
                    index: speakers.len(),
                    dest,
                    ssrc: janus::REMOTE_PUBLISHER_SSRC,
                    cipher: None,
                    fanout: (config.participants - 1) as u64,
                    counter: 0,
                    seq: 0,
                });
                Some(speakers.len() - 1)
            } else {
                None
            };
            endpoints.push(Endpoint {
                udp,
                recv: RecvKind::SeqMapped {
                    ssrc_base: janus::FORWARD_SSRC_BASE,
                },
                speaker,
            });
        }
        // Every speaker of the room is forwarded to every other participant of the room.
        for s in 0..config.speakers {
            let speaker_index = speakers.len() - config.speakers + s;
            for p in 0..config.participants {
                if p == s {
                    continue;
                }
                let port = endpoints
                    .get(base + p)
                    .and_then(|e: &Endpoint| e.udp.local_addr().ok())
                    .map(|a| a.port())
                    .ok_or_else(|| BenchError::Client("participant socket gone".into()))?;
                j.rtp_forward(
                    room,
                    (base + s) as u64 + 1,
                    port,
                    janus::FORWARD_SSRC_BASE + speaker_index as u32,
                )?;
            }
        }
    }
    let setup_s = t0.elapsed().as_secs_f64();
    eprintln!("  janus rooms, publishers and forwarders in {setup_s:.1} s");
    std::thread::sleep(std::time::Duration::from_millis(SETTLE_MS));
    let cpu = || j.cpu();
    let (outcome, cpu_used) = measure(
        &cpu,
        args.server_core,
        &endpoints,
        &mut speakers,
        frames,
        phases(args),
    )?;
    let threads = j.threads();
    let participants = endpoints.len();
    drop(endpoints);
    j.stop();
    Ok(result(
        VoiceTarget::Janus,
        config,
        participants,
        setup_s,
        &outcome,
        cpu_used,
        None,
        threads,
        BTreeMap::new(),
    ))
}
