//! `gw-fanout`: guild messages fanned out to every member, against nginx + Nchan (issue 5).
//!
//! **Hearth**: one guild and its system channel; the owner (a bot) is member 1 and N − 1 bot
//! users are added over the control API before anything is timed. Every member holds one
//! gateway session (intents GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT), subscribed once its
//! GUILD_CREATE arrived. The owner sends `POST /api/v10/channels/{id}/messages` at a fixed rate
//! on one keep-alive connection (`rest_rate_limits = false`); Hearth answers once the message
//! is durable and every member session receives MESSAGE_CREATE. **Nchan**: N WebSocket
//! subscribers of one channel; the same dispatch text is published by `POST /pub/<channel>`
//! at the same rates. The content of message k carries k and its send time (CLOCK_MONOTONIC
//! ns); every client thread timestamps each receipt.
//!
//! One server per target; the member count grows step by step (1k → 5k → 10k by default) so
//! the guild always has exactly N members, all connected. At each step: warm-up messages
//! (checked, not timed), then each rate for `--duration-s`. Per step and rate: deliveries per
//! server CPU-second (utime + stime of every server process from /proc/PID/stat over the
//! window), wall deliveries/s, send → last delivery of each message and send → each delivery
//! (p50/p99/p99.9), loss. The window runs from just before the first send until every session
//! saw the last message (or the drain limit).

#[path = "fanout_client.rs"]
pub mod client;
#[path = "fanout_proto.rs"]
pub mod proto;
#[path = "fanout_report.rs"]
pub mod report;
#[path = "fanout_setup.rs"]
pub mod setup;

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

use crate::BenchError;
use crate::gateway::cli::GwCommonArgs;
use crate::gateway::common::{prepare, server_spec, summary};
use crate::gateway::http::HttpClient;
use crate::gateway::limits::{
    CONNECT_PHASE_TIMEOUT_S, NCHAN_CHANNEL, SESSIONS_PER_CLIENT_MAX, SOURCE_IP_FIRST_HOST,
    SOURCE_IPS_MAX,
};
use crate::gateway::net::mono_ns;
use crate::gateway::servers::{GwServer, upgrade_path};
use crate::gateway::target::{GwFailure, GwTarget};
use crate::gateway::wire::new_histogram;
use crate::latency::LatencySummary;
use crate::machine::RunMeta;
use client::{ClientCmd, ClientEvent, ClientHandle, ClientSpec, PhaseReport};
use proto::{
    CONTENT_BYTES_MIN, CONTENT_CHARS_MAX, HEARTH_CONFIG_TOML, Receipts, content,
    default_message_template, due_ns, lost, merge_receipts, message_body, messages_in,
    messages_path, nchan_body, per,
};
use setup::{GuildSetup, add_members, create_guild};

/// Member counts measured by default, ascending (issue 5: 1k, 5k and 10k).
pub const MEMBERS_DEFAULT: &str = "1000,5000,10000";
/// Message rates measured at every member count by default, per second.
pub const RATES_DEFAULT: &str = "10,50";
/// Seconds each rate is held by default.
pub const DURATION_S_DEFAULT: u64 = 20;
/// Messages sent and checked (not timed) at each member count before the first rate.
pub const WARMUP_MESSAGES_DEFAULT: u32 = 5;
/// Content length of a message by default, characters (a short chat line).
pub const CONTENT_BYTES_DEFAULT: usize = 64;
/// How long a phase waits for every session to see its last message, seconds.
pub const DRAIN_S_DEFAULT: u64 = 15;
/// Pause after `Expect` so every client thread has applied it before the first message.
const COMMAND_SETTLE_MS: u64 = 50;
/// Clock ticks per second when sysconf cannot say (Linux's USER_HZ).
const CLOCK_TICKS_FALLBACK: u64 = 100;
/// How long a client thread has to answer `Report`, seconds.
const REPORT_TIMEOUT_S: u64 = 30;
/// Most members: every session lives in the harness process and the server needs one
/// descriptor per session; both have at most 20000.
pub const MEMBERS_MAX: u32 = SESSIONS_PER_CLIENT_MAX;
/// Highest message rate accepted, per second (one keep-alive connection sends them in turn).
pub const RATE_MAX: f64 = 10_000.0;
/// How long client threads keep polling after events by default, µs: covers the gaps inside one
/// fan-out burst, so the server's sends rarely have to wake a sleeping reader on the other core
/// (on this VM a cross-core wake-up is an interrupt the sending core pays for).
pub const CLIENT_SPIN_US_DEFAULT: u64 = 500;
/// How the profile is given among the hearth arguments.
const PROFILE_ARG_PREFIX: &str = "--profile=";
/// Issue 5's target: deliveries per server CPU-second.
pub const TARGET_DELIVERIES_PER_CPU_S: f64 = 1_000_000.0;
/// Issue 5's target: p99 send → last delivery at the largest member count, ms.
pub const TARGET_P99_LAST_MS: f64 = 50.0;
/// Issue 5's target member count for the latency target.
pub const TARGET_LATENCY_MEMBERS: u32 = 10_000;
/// Issue 5's target: Hearth ÷ Nchan deliveries per CPU-second.
pub const TARGET_RATIO_VS_NCHAN: f64 = 10.0;

/// `gw-fanout` flags.
#[derive(Debug, Clone, Args)]
pub struct GwFanoutArgs {
    /// Common flags.
    #[command(flatten)]
    pub common: GwCommonArgs,
    /// Member counts (Nchan: subscribers), ascending; the guild grows from one to the next.
    #[arg(long, value_delimiter = ',', default_value = MEMBERS_DEFAULT)]
    pub members: Vec<u32>,
    /// Messages per second, each measured at every member count.
    #[arg(long, value_delimiter = ',', default_value = RATES_DEFAULT)]
    pub rates: Vec<f64>,
    /// Seconds each rate is held.
    #[arg(long, default_value_t = DURATION_S_DEFAULT)]
    pub duration_s: u64,
    /// Messages sent and checked for loss (latency not recorded) at each member count first.
    #[arg(long, default_value_t = WARMUP_MESSAGES_DEFAULT)]
    pub warmup_messages: u32,
    /// Message content length, characters (64..=2000).
    #[arg(long, default_value_t = CONTENT_BYTES_DEFAULT)]
    pub content_bytes: usize,
    /// Seconds to wait for every session to see a phase's last message.
    #[arg(long, default_value_t = DRAIN_S_DEFAULT)]
    pub drain_s: u64,
    /// A line for the summary's notes (repeatable), e.g. how busy the machine was.
    #[arg(long)]
    pub note: Vec<String>,
    /// Hearth: run with the `--profile=FILE` among the hearth arguments but this many io_uring
    /// submission entries (the completion queue is twice as many); 0 keeps the profile's.
    #[arg(long, default_value_t = 0)]
    pub ring_entries: u32,
    /// Client threads poll without sleeping for this many µs after handling events (0: always
    /// block in epoll).
    #[arg(long, default_value_t = CLIENT_SPIN_US_DEFAULT)]
    pub client_spin_us: u64,
}

/// The requested load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FanoutParams {
    /// Member counts.
    pub members: Vec<u32>,
    /// Rates, messages per second.
    pub rates: Vec<f64>,
    /// Seconds per rate.
    pub duration_s: u64,
    /// Warm-up messages per member count.
    pub warmup_messages: u32,
    /// Content length, characters.
    pub content_bytes: usize,
    /// Drain limit, seconds.
    pub drain_s: u64,
    /// Hearth shards and nginx workers.
    pub shards: u32,
    /// Server core.
    pub server_core: usize,
    /// Client core (client threads and the sender).
    pub client_core: usize,
    /// Nice value of the servers and the harness.
    pub nice: i32,
    /// Sessions per client thread at most.
    pub sessions_per_thread: u32,
    /// Handshakes in flight per client thread.
    pub inflight: u32,
    /// Gateway intents of the member sessions.
    pub intents: u64,
    /// Client threads' polling time after events, µs.
    pub client_spin_us: u64,
    /// Hearth's io_uring submission entries when `--ring-entries` overrode its profile.
    pub ring_entries_override: Option<u32>,
    /// The arguments `hearth` got besides its addresses, data folder and ready file.
    pub hearth_args: Vec<String>,
    /// `rustc` processes running when the run started (other builds on the shared cores).
    pub rustc_at_start: u32,
    /// `rustc` processes running when it ended.
    pub rustc_at_end: u32,
    /// Notes given on the command line.
    pub notes: Vec<String>,
}

/// One member-count step of a target: set-up and connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepInfo {
    /// Members (Nchan: subscribers) asked for.
    pub members: u32,
    /// Seconds creating users and adding members (Hearth).
    pub setup_s: f64,
    /// Seconds until every new session was subscribed or failed.
    pub connect_s: f64,
    /// Sessions subscribed and open after the step's connect phase.
    pub live: u64,
    /// Sessions that failed their handshake, over the run so far.
    pub failed: u64,
    /// First handshake failure, if any.
    pub first_error: Option<String>,
    /// Warm-up messages sent.
    pub warmup_messages: u64,
    /// Copies of warm-up messages that did not arrive.
    pub warmup_lost: u64,
}

/// One (target, members, rate) measurement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FanoutResult {
    /// Which server.
    pub target: GwTarget,
    /// Members (Nchan: subscribers) asked for.
    pub members: u32,
    /// Messages per second asked for.
    pub rate: f64,
    /// Sessions subscribed and open when the phase started.
    pub sessions: u64,
    /// Messages sent (fewer than rate × duration when the server answered too slowly: the
    /// sender has one request in flight and stops when the duration is over).
    pub messages: u64,
    /// Messages per second achieved, first to last send.
    pub send_rate: f64,
    /// Sessions × messages.
    pub expected_deliveries: u64,
    /// Deliveries received, each (session, message) once.
    pub deliveries: u64,
    /// Copies missing (expected − received per message, summed).
    pub lost: u64,
    /// Copies received twice or out of order.
    pub duplicates: u64,
    /// Messages skipped by a session (a later one came first).
    pub gaps: u64,
    /// Hearth dispatches whose sequence number did not follow the previous one.
    pub seq_errors: u64,
    /// Bench messages outside the phase (late copies of an earlier phase).
    pub out_of_phase: u64,
    /// Whether every session saw the last message before the drain limit.
    pub drained: bool,
    /// Window length, seconds (first send → every session saw the last message).
    pub window_s: f64,
    /// Server CPU in the window, utime + stime from /proc/PID/stat (all processes), seconds.
    pub server_cpu_s: f64,
    /// The same from schedstat (live threads only; a cross-check), seconds.
    pub server_cpu_schedstat_s: f64,
    /// Deliveries per server CPU-second (stat), the "per core" figure.
    pub deliveries_per_cpu_s: f64,
    /// Deliveries per wall-clock second, first send → last receipt.
    pub deliveries_per_s_wall: f64,
    /// Server CPU / window.
    pub server_cpu_util: f64,
    /// Harness process CPU (client threads + sender) / window; near 1 means the client core,
    /// not the server, set the pace.
    pub client_cpu_util: f64,
    /// Harness CPU per delivery, µs.
    pub client_cpu_us_per_delivery: f64,
    /// Share of the window the client threads spent handling socket events (their polling
    /// excluded; per thread, summed): near 1 means the client core set the pace.
    pub client_busy_util: f64,
    /// Send → last delivery of each message.
    pub latency_last: Option<LatencySummary>,
    /// Send → first delivery of each message.
    pub latency_first: Option<LatencySummary>,
    /// Send → each delivery.
    pub latency_each: Option<LatencySummary>,
    /// Send → HTTP answer (Hearth: the message is durable and queued for fan-out).
    pub send_ack: Option<LatencySummary>,
    /// How late sends left after their due time (the sender waits for each answer).
    pub send_lag: Option<LatencySummary>,
    /// Smallest delivered frame payload, bytes.
    pub frame_bytes_min: u64,
    /// Largest delivered frame payload, bytes.
    pub frame_bytes_max: u64,
}

/// Everything one target produced (partial when it failed part-way).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetRun {
    /// Which server.
    pub target: GwTarget,
    /// Set-up and connection per member count.
    pub steps: Vec<StepInfo>,
    /// Measurements.
    pub results: Vec<FanoutResult>,
    /// Subscribed sessions the server closed, by close code.
    pub closed_after_ready: BTreeMap<String, u64>,
    /// Messages the clients did not expect, by kind.
    pub unexpected: BTreeMap<String, u64>,
    /// Whether the server exited 0 on SIGTERM.
    pub clean_exit: bool,
}

/// Everything a gw-fanout run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FanoutRun {
    /// The load.
    pub params: FanoutParams,
    /// Per target.
    pub targets: Vec<TargetRun>,
    /// Targets that failed (their partial results stay in `targets`).
    pub failures: Vec<GwFailure>,
}

/// `hearth-bench gw-fanout`: runs, writes the report, prints its folder.
pub fn main(args: &GwFanoutArgs) -> Result<(), BenchError> {
    let meta = RunMeta::collect();
    let run = run(args)?;
    let dir = report::write(&args.common.out_dir, &meta, &run)?;
    println!("{}", dir.display());
    Ok(())
}

/// Checks the flags.
pub fn validate(args: &GwFanoutArgs) -> Result<(), BenchError> {
    let bad = |m: String| Err(BenchError::Invalid(m));
    if args.members.is_empty() || args.members.contains(&0) {
        return bad("--members needs at least one count, none 0".into());
    }
    if args.members.windows(2).any(|w| w.first() >= w.get(1)) {
        return bad("--members must be strictly ascending (the guild grows)".into());
    }
    if args.members.iter().any(|&m| m > MEMBERS_MAX) {
        return bad(format!(
            "--members at most {MEMBERS_MAX} (descriptor limit)"
        ));
    }
    if args.rates.is_empty()
        || args
            .rates
            .iter()
            .any(|r| !(r.is_finite() && *r > 0.0 && *r <= RATE_MAX))
    {
        return bad(format!("--rates must be in (0, {RATE_MAX}]"));
    }
    if args.duration_s == 0 {
        return bad("--duration-s must be at least 1".into());
    }
    if !(CONTENT_BYTES_MIN..=CONTENT_CHARS_MAX).contains(&args.content_bytes) {
        return bad(format!(
            "--content-bytes must be {CONTENT_BYTES_MIN}..={CONTENT_CHARS_MAX}"
        ));
    }
    let c = &args.common;
    if c.sessions_per_client == 0 || c.sessions_per_client > SESSIONS_PER_CLIENT_MAX {
        return bad(format!(
            "--sessions-per-client must be 1..={SESSIONS_PER_CLIENT_MAX}"
        ));
    }
    let last = args.members.last().copied().unwrap_or(0);
    if last.div_ceil(c.sessions_per_client) > u32::from(SOURCE_IPS_MAX) {
        return bad("too many client threads for the loopback source addresses".into());
    }
    if c.inflight == 0 {
        return bad("--inflight must be at least 1".into());
    }
    if args.ring_entries > 0 {
        proto::with_ring_entries("", args.ring_entries).map_err(BenchError::Invalid)?;
        if !c
            .hearth_arg
            .iter()
            .any(|a| a.starts_with(PROFILE_ARG_PREFIX))
        {
            return bad("--ring-entries needs a --profile=FILE hearth argument".into());
        }
    }
    Ok(())
}

/// Processes whose command name is `name` (e.g. running compilers), from /proc.
pub fn count_processes(name: &str) -> u32 {
    let Ok(dir) = fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter(|e| fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim_end() == name))
        .count() as u32
}

/// Runs every target in turn.
pub fn run(args: &GwFanoutArgs) -> Result<FanoutRun, BenchError> {
    validate(args)?;
    let c = &args.common;
    let rustc_at_start = count_processes("rustc");
    prepare(c)?;
    let mut targets = Vec::new();
    let mut failures = Vec::new();
    // Nchan publishes the message object Hearth answered, so both carry the same frames.
    let mut template: Option<Value> = None;
    for &target in &c.targets {
        eprintln!(
            "gw-fanout: {target}: members {:?}, rates {:?}/s for {} s each",
            args.members, args.rates, args.duration_s
        );
        let mut tr = TargetRun {
            target,
            steps: Vec::new(),
            results: Vec::new(),
            closed_after_ready: BTreeMap::new(),
            unexpected: BTreeMap::new(),
            clean_exit: false,
        };
        if let Err(e) = run_target(args, target, &mut tr, &mut template) {
            eprintln!("gw-fanout: {target}: FAILED: {e}");
            failures.push(GwFailure {
                target,
                error: e.to_string(),
            });
        }
        targets.push(tr);
    }
    Ok(FanoutRun {
        params: FanoutParams {
            members: args.members.clone(),
            rates: args.rates.clone(),
            duration_s: args.duration_s,
            warmup_messages: args.warmup_messages,
            content_bytes: args.content_bytes,
            drain_s: args.drain_s,
            shards: c.shards,
            server_core: c.server_core,
            client_core: c.client_core,
            nice: c.nice,
            sessions_per_thread: c.sessions_per_client,
            inflight: c.inflight,
            intents: proto::FANOUT_INTENTS,
            client_spin_us: args.client_spin_us,
            ring_entries_override: (args.ring_entries > 0).then_some(args.ring_entries),
            hearth_args: c.hearth_arg.clone(),
            rustc_at_start,
            rustc_at_end: count_processes("rustc"),
            notes: args.note.clone(),
        },
        targets,
        failures,
    })
}

/// A temporary file removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn write(stem: &str, text: &str) -> Result<Self, BenchError> {
        let path = std::env::temp_dir().join(format!("{stem}-{}.toml", std::process::id()));
        fs::write(&path, text)
            .map_err(|e| BenchError::io(format!("write {}", path.display()), e))?;
        Ok(TempFile(path))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Sends the bench messages of one target over one keep-alive connection.
struct Sender {
    http: HttpClient,
    target: GwTarget,
    path: String,
    auth: String,
    template: Value,
    content_bytes: usize,
    ack_ns: Histogram<u64>,
    lag_ns: Histogram<u64>,
    /// Hearth's answer to the first message (the message object), kept for Nchan.
    answered: Option<Value>,
}

impl Sender {
    fn send(&mut self, k: u64) -> Result<(), BenchError> {
        let ts = mono_ns();
        let text = content(k, ts, self.content_bytes);
        let resp = match self.target {
            GwTarget::Hearth => self.http.request(
                "POST",
                &self.path,
                &[
                    ("Content-Type", "application/json"),
                    ("Authorization", &self.auth),
                ],
                message_body(&text).as_bytes(),
            )?,
            GwTarget::Nchan => self
                .http
                .post_json(&self.path, &nchan_body(&self.template, &text))?,
        };
        self.ack_ns
            .saturating_record(mono_ns().saturating_sub(ts).max(1));
        if !(200..300).contains(&resp.status) {
            return Err(BenchError::Client(format!(
                "POST {} answered {}: {}",
                self.path,
                resp.status,
                resp.text()
            )));
        }
        if self.target == GwTarget::Hearth && self.answered.is_none() {
            self.answered = serde_json::from_slice(&resp.body).ok();
        }
        Ok(())
    }

    /// Sends messages `first_k..` at `rate` per second, each at its due time (late ones at
    /// once, as the sender waits for each answer), until `n` are sent or `duration_s` is over;
    /// returns (first send, last send, messages sent).
    fn phase(
        &mut self,
        first_k: u64,
        n: u64,
        rate: f64,
        duration_s: u64,
    ) -> Result<(u64, u64, u64), BenchError> {
        let start = mono_ns();
        let stop = start + duration_s * 1_000_000_000;
        let mut last = start;
        let mut sent = 0;
        while sent < n {
            let due = due_ns(start, sent, rate);
            let now = mono_ns();
            if now >= stop {
                break;
            }
            if due > now {
                thread::sleep(Duration::from_nanos(due - now));
            }
            last = mono_ns();
            self.lag_ns
                .saturating_record(last.saturating_sub(due).max(1));
            self.send(first_k + sent)?;
            sent += 1;
        }
        Ok((start, last, sent))
    }

    fn reset(&mut self) -> Result<(), BenchError> {
        self.ack_ns = new_histogram()?;
        self.lag_ns = new_histogram()?;
        Ok(())
    }
}

/// The client threads of one target and the channel they answer on.
struct Clients {
    handles: Vec<ClientHandle>,
    sessions: Vec<u32>,
    events: Receiver<ClientEvent>,
    events_tx: mpsc::Sender<ClientEvent>,
    spec: ClientSpec,
    per_thread: u32,
}

impl Clients {
    /// Adds `count` sessions (with `tokens` for Hearth), filling the last thread first;
    /// returns the threads that got some, with how many each wants in total.
    fn add(
        &mut self,
        mut tokens: Vec<String>,
        count: u32,
        base_k: u64,
    ) -> Result<BTreeMap<usize, u64>, BenchError> {
        let mut left = count;
        let mut touched = BTreeMap::new();
        while left > 0 {
            let last = self.sessions.len().checked_sub(1);
            let room = last
                .and_then(|i| self.sessions.get(i))
                .map_or(0, |&s| self.per_thread - s);
            let i = if room == 0 {
                let i = self.handles.len();
                let host = u8::try_from(i)
                    .ok()
                    .and_then(|i| SOURCE_IP_FIRST_HOST.checked_add(i))
                    .ok_or_else(|| BenchError::Invalid("too many client threads".into()))?;
                let spec = ClientSpec {
                    source_ip: Ipv4Addr::new(127, 0, 0, host),
                    seed: self.spec.seed + i as u64,
                    ..self.spec.clone()
                };
                self.handles
                    .push(client::spawn(i, spec, self.events_tx.clone())?);
                self.sessions.push(0);
                i
            } else {
                last.unwrap_or(0)
            };
            let room = self.per_thread - self.sessions.get(i).copied().unwrap_or(0);
            let n = left.min(room);
            let rest = tokens.split_off((n as usize).min(tokens.len()));
            let part = std::mem::replace(&mut tokens, rest);
            self.send_to(
                i,
                ClientCmd::Add {
                    tokens: part,
                    count: n,
                    base_k,
                },
            )?;
            if let Some(s) = self.sessions.get_mut(i) {
                *s += n;
                touched.insert(i, u64::from(*s));
            }
            left -= n;
        }
        Ok(touched)
    }

    fn send_to(&self, i: usize, cmd: ClientCmd) -> Result<(), BenchError> {
        self.handles
            .get(i)
            .ok_or_else(|| BenchError::Client(format!("no client thread {i}")))?
            .send(cmd)
    }

    fn send_all(&self, cmd: &ClientCmd) -> Result<(), BenchError> {
        for h in &self.handles {
            h.send(cmd.clone())?;
        }
        Ok(())
    }

    /// Waits until `pick` accepted one event from each of `threads`, or `timeout` passed;
    /// returns what it accepted per thread. A failed thread is an error.
    fn collect<T>(
        &self,
        threads: &[usize],
        timeout: Duration,
        mut pick: impl FnMut(ClientEvent) -> Option<(usize, T)>,
    ) -> Result<BTreeMap<usize, T>, BenchError> {
        let deadline = Instant::now() + timeout;
        let mut got = BTreeMap::new();
        while threads.iter().any(|t| !got.contains_key(t)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ClientEvent::Failed { thread, message }) => {
                    return Err(BenchError::Client(format!(
                        "client thread {thread}: {message}"
                    )));
                }
                Ok(ev) => {
                    if let Some((t, v)) = pick(ev) {
                        got.insert(t, v);
                    }
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(BenchError::Client("client threads gone".into()));
                }
            }
        }
        Ok(got)
    }

    fn all(&self) -> Vec<usize> {
        (0..self.handles.len()).collect()
    }

    fn reports(&self) -> Result<Vec<PhaseReport>, BenchError> {
        self.send_all(&ClientCmd::Report)?;
        let got = self.collect(
            &self.all(),
            Duration::from_secs(REPORT_TIMEOUT_S),
            |ev| match ev {
                ClientEvent::Report { thread, report } => Some((thread, *report)),
                _ => None,
            },
        )?;
        if got.len() != self.handles.len() {
            return Err(BenchError::Client(format!(
                "{} of {} client threads reported within {REPORT_TIMEOUT_S} s",
                got.len(),
                self.handles.len()
            )));
        }
        Ok(got.into_values().collect())
    }

    /// Starts a phase of messages `first_k..end_k` and waits a moment so every thread has it.
    fn expect(&self, first_k: u64, end_k: u64, record: bool) -> Result<(), BenchError> {
        self.send_all(&ClientCmd::Expect {
            first_k,
            end_k,
            record,
        })?;
        thread::sleep(Duration::from_millis(COMMAND_SETTLE_MS));
        Ok(())
    }

    /// Waits until every thread saw message `end_k - 1` on every session; whether all did.
    fn wait_done(&self, end_k: u64, drain_s: u64) -> Result<bool, BenchError> {
        let all = self.all();
        let got = self.collect(&all, Duration::from_secs(drain_s), |ev| match ev {
            ClientEvent::Done { thread, end_k: e } if e == end_k => Some((thread, ())),
            _ => None,
        })?;
        Ok(got.len() == all.len())
    }
}

/// The phase's reports merged: receipts per message, the delivery histogram and counters.
struct Merged {
    live: u64,
    received: u64,
    duplicates: u64,
    gaps: u64,
    seq_errors: u64,
    out_of_phase: u64,
    receipts: Vec<Receipts>,
    each: Histogram<u64>,
    bytes_min: u64,
    bytes_max: u64,
    closed_after_ready: BTreeMap<String, u64>,
    unexpected: BTreeMap<String, u64>,
}

fn merge(reports: &[PhaseReport]) -> Result<Merged, BenchError> {
    let mut m = Merged {
        live: 0,
        received: 0,
        duplicates: 0,
        gaps: 0,
        seq_errors: 0,
        out_of_phase: 0,
        receipts: Vec::new(),
        each: new_histogram()?,
        bytes_min: 0,
        bytes_max: 0,
        closed_after_ready: BTreeMap::new(),
        unexpected: BTreeMap::new(),
    };
    for r in reports {
        m.live += r.live;
        m.received += r.received;
        m.duplicates += r.duplicates;
        m.gaps += r.gaps;
        m.seq_errors += r.seq_errors;
        m.out_of_phase += r.out_of_phase;
        merge_receipts(&mut m.receipts, &r.receipts);
        m.each
            .add(&r.delivery)
            .map_err(|e| BenchError::Invalid(format!("merge histograms: {e}")))?;
        if r.bytes_min > 0 && (m.bytes_min == 0 || r.bytes_min < m.bytes_min) {
            m.bytes_min = r.bytes_min;
        }
        m.bytes_max = m.bytes_max.max(r.bytes_max);
        for (k, v) in &r.closed_after_ready {
            *m.closed_after_ready.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &r.unexpected {
            *m.unexpected.entry(k.clone()).or_insert(0) += v;
        }
    }
    Ok(m)
}

fn histogram_of(values: impl Iterator<Item = u64>) -> Result<Histogram<u64>, BenchError> {
    let mut h = new_histogram()?;
    for v in values {
        h.saturating_record(v.max(1));
    }
    Ok(h)
}

/// CPU used so far by this process (client threads and sender), utime + stime, ns.
fn harness_cpu_ns() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|h| *h > 0)
        .unwrap_or(CLOCK_TICKS_FALLBACK);
    fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| crate::procfs::parse_stat_ticks(&s).ok())
        .map_or(0, |t| t * (1_000_000_000 / hz))
}

fn run_target(
    args: &GwFanoutArgs,
    target: GwTarget,
    tr: &mut TargetRun,
    template: &mut Option<Value>,
) -> Result<(), BenchError> {
    let c = &args.common;
    let mut spec = server_spec(c, target)?;
    let config = TempFile::write("hearth-bench-fanout", HEARTH_CONFIG_TOML)?;
    let mut profile: Option<TempFile> = None;
    if target == GwTarget::Hearth {
        spec.hearth_args
            .push(format!("--config={}", config.0.display()));
        if args.ring_entries > 0 {
            for a in &mut spec.hearth_args {
                let Some(path) = a.strip_prefix(PROFILE_ARG_PREFIX) else {
                    continue;
                };
                let text = fs::read_to_string(path)
                    .map_err(|e| BenchError::io(format!("read profile {path}"), e))?;
                let t = TempFile::write(
                    "hearth-bench-fanout-profile",
                    &proto::with_ring_entries(&text, args.ring_entries)
                        .map_err(BenchError::Invalid)?,
                )?;
                *a = format!("{PROFILE_ARG_PREFIX}{}", t.0.display());
                profile = Some(t);
            }
        }
    }
    let mut server = GwServer::start(&spec)?;
    let guild: Option<GuildSetup> = match target {
        GwTarget::Hearth => Some(create_guild(server.addr)?),
        GwTarget::Nchan => None,
    };
    let (events_tx, events) = mpsc::channel();
    let mut clients = Clients {
        handles: Vec::new(),
        sessions: Vec::new(),
        events,
        events_tx,
        spec: ClientSpec {
            target,
            addr: server.addr,
            path: upgrade_path(target),
            source_ip: Ipv4Addr::new(127, 0, 0, SOURCE_IP_FIRST_HOST),
            inflight: c.inflight,
            seed: 1,
            spin_ns: args.client_spin_us.saturating_mul(1000),
        },
        per_thread: c.sessions_per_client,
    };
    let mut sender = Sender {
        http: HttpClient::new(server.addr),
        target,
        path: match &guild {
            Some(g) => messages_path(g.channel_id),
            None => format!("/pub/{NCHAN_CHANNEL}"),
        },
        auth: guild
            .as_ref()
            .map(|g| format!("Bot {}", g.owner_token))
            .unwrap_or_default(),
        template: template.clone().unwrap_or_else(default_message_template),
        content_bytes: args.content_bytes,
        ack_ns: new_histogram()?,
        lag_ns: new_histogram()?,
        answered: None,
    };
    let outcome = steps(
        args,
        &mut server,
        guild.as_ref(),
        &mut clients,
        &mut sender,
        tr,
    );
    if let Ok(reps) = clients.reports() {
        let m = merge(&reps)?;
        tr.closed_after_ready = m.closed_after_ready;
        tr.unexpected = m.unexpected;
    }
    if target == GwTarget::Hearth
        && let Some(mut d) = sender.answered.take()
    {
        if let Some(o) = d.as_object_mut() {
            o.insert("content".into(), Value::String(String::new()));
        }
        *template = Some(d);
    }
    drop(clients);
    tr.clean_exit = server.stop();
    drop(profile);
    outcome
}

fn steps(
    args: &GwFanoutArgs,
    server: &mut GwServer,
    guild: Option<&GuildSetup>,
    clients: &mut Clients,
    sender: &mut Sender,
    tr: &mut TargetRun,
) -> Result<(), BenchError> {
    let c = &args.common;
    let target = server.target;
    let mut have: u32 = 0;
    let mut next_k: u64 = 0;
    for &members in &args.members {
        let t_setup = Instant::now();
        let new = members - have;
        let tokens = match guild {
            Some(g) => {
                let mut t = Vec::with_capacity(new as usize);
                let mut from = have;
                if have == 0 {
                    t.push(g.owner_token.clone());
                    from = 1;
                }
                eprintln!("  {members} members: creating {} users", members - from);
                t.extend(add_members(server.addr, g.guild_id, from, members - from)?);
                t
            }
            None => Vec::new(),
        };
        let setup_s = t_setup.elapsed().as_secs_f64();
        let t_connect = Instant::now();
        let touched = clients.add(tokens, new, next_k)?;
        let threads: Vec<usize> = touched.keys().copied().collect();
        let got = clients.collect(
            &threads,
            Duration::from_secs(CONNECT_PHASE_TIMEOUT_S),
            |ev| match ev {
                ClientEvent::Connected {
                    thread,
                    wanted,
                    live,
                    failed,
                } if touched.get(&thread) == Some(&wanted) => Some((thread, (live, failed))),
                _ => None,
            },
        )?;
        if got.len() != threads.len() {
            return Err(BenchError::Client(format!(
                "connect phase of {members} not over within {CONNECT_PHASE_TIMEOUT_S} s"
            )));
        }
        let connect_s = t_connect.elapsed().as_secs_f64();
        have = members;
        let reps = clients.reports()?;
        let live: u64 = reps.iter().map(|r| r.live).sum();
        let failed: u64 = reps.iter().map(|r| r.failed.total()).sum();
        let first_error = reps.iter().find_map(|r| r.failed.first_error.clone());
        eprintln!(
            "  {members} members: {live} sessions subscribed, {failed} failed, in {connect_s:.1} s"
        );
        let mut step = StepInfo {
            members,
            setup_s,
            connect_s,
            live,
            failed,
            first_error,
            warmup_messages: u64::from(args.warmup_messages),
            warmup_lost: 0,
        };
        if live == 0 {
            tr.steps.push(step);
            return Err(BenchError::Client(format!(
                "no session subscribed at {members} members"
            )));
        }
        thread::sleep(Duration::from_secs(c.settle_s));
        let first_rate = args.rates.first().copied().unwrap_or(1.0);
        let w = u64::from(args.warmup_messages);
        if w > 0 {
            clients.expect(next_k, next_k + w, false)?;
            let (_, _, sent) = sender.phase(next_k, w, first_rate, args.duration_s)?;
            clients.send_all(&ClientCmd::SetEnd {
                end_k: next_k + sent,
            })?;
            let drained = clients.wait_done(next_k + sent, args.drain_s)?;
            let m = merge(&clients.reports()?)?;
            step.warmup_messages = sent;
            step.warmup_lost = lost(&m.receipts, sent as usize, live);
            if !drained {
                eprintln!("  warm-up: not every session saw every message");
            }
            next_k += sent;
        }
        tr.steps.push(step);
        for &rate in &args.rates {
            let n = messages_in(rate, args.duration_s);
            let r = measure(
                args, server, clients, sender, target, members, rate, next_k, n,
            )?;
            let sent = r.messages;
            eprintln!(
                "  {target} {members} members @ {rate}/s: {} deliveries, lost {}, {:.0}/CPU-s, \
                 {:.0}/s wall, last p50 {:.1} ms p99 {:.1} ms",
                r.deliveries,
                r.lost,
                r.deliveries_per_cpu_s,
                r.deliveries_per_s_wall,
                r.latency_last.as_ref().map_or(0.0, |l| l.p50_us / 1e3),
                r.latency_last.as_ref().map_or(0.0, |l| l.p99_us / 1e3),
            );
            tr.results.push(r);
            next_k += sent;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn measure(
    args: &GwFanoutArgs,
    server: &GwServer,
    clients: &Clients,
    sender: &mut Sender,
    target: GwTarget,
    members: u32,
    rate: f64,
    first_k: u64,
    n: u64,
) -> Result<FanoutResult, BenchError> {
    clients.expect(first_k, first_k + n, true)?;
    sender.reset()?;
    let before = clients.reports()?;
    let live0: u64 = before.iter().map(|r| r.live).sum();
    let busy0: u64 = before.iter().map(|r| r.busy_ns).sum();
    let cpu0 = server.cpu()?;
    let client0 = harness_cpu_ns();
    let t0 = mono_ns();
    let (first_send, last_send, sent) = sender.phase(first_k, n, rate, args.duration_s)?;
    clients.send_all(&ClientCmd::SetEnd {
        end_k: first_k + sent,
    })?;
    let drained = clients.wait_done(first_k + sent, args.drain_s)?;
    let t1 = mono_ns();
    let cpu = server.cpu()?.since(&cpu0);
    let client_ns = harness_cpu_ns().saturating_sub(client0);
    let after = clients.reports()?;
    let busy_ns = after
        .iter()
        .map(|r| r.busy_ns)
        .sum::<u64>()
        .saturating_sub(busy0);
    let m = merge(&after)?;
    let window_s = t1.saturating_sub(t0) as f64 / 1e9;
    let last_rx = m.receipts.iter().map(|r| r.last_rx_ns).max().unwrap_or(0);
    let wall_s = last_rx.saturating_sub(first_send) as f64 / 1e9;
    let server_cpu_s = cpu.stat_ns as f64 / 1e9;
    let deliveries = m.received;
    let to_last = histogram_of(m.receipts.iter().filter_map(Receipts::to_last_ns))?;
    let to_first = histogram_of(
        m.receipts
            .iter()
            .filter(|r| r.count > 0)
            .map(|r| r.first_rx_ns.saturating_sub(r.ts_ns)),
    )?;
    Ok(FanoutResult {
        target,
        members,
        rate,
        sessions: live0,
        messages: sent,
        send_rate: if sent > 1 {
            per(
                (sent - 1) as f64,
                last_send.saturating_sub(first_send) as f64 / 1e9,
            )
        } else {
            0.0
        },
        expected_deliveries: live0 * sent,
        deliveries,
        lost: lost(&m.receipts, sent as usize, live0),
        duplicates: m.duplicates,
        gaps: m.gaps,
        seq_errors: m.seq_errors,
        out_of_phase: m.out_of_phase,
        drained,
        window_s,
        server_cpu_s,
        server_cpu_schedstat_s: cpu.schedstat_ns as f64 / 1e9,
        deliveries_per_cpu_s: per(deliveries as f64, server_cpu_s),
        deliveries_per_s_wall: per(deliveries as f64, wall_s),
        server_cpu_util: per(server_cpu_s, window_s),
        client_cpu_util: per(client_ns as f64 / 1e9, window_s),
        client_cpu_us_per_delivery: per(client_ns as f64 / 1e3, deliveries as f64),
        client_busy_util: per(busy_ns as f64 / 1e9, window_s),
        latency_last: summary(&to_last),
        latency_first: summary(&to_first),
        latency_each: summary(&m.each),
        send_ack: summary(&sender.ack_ns),
        send_lag: summary(&sender.lag_ns),
        frame_bytes_min: m.bytes_min,
        frame_bytes_max: m.bytes_max,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_counted_by_name() {
        let me = fs::read_to_string("/proc/self/comm").unwrap();
        assert!(count_processes(me.trim_end()) >= 1);
        assert_eq!(count_processes("no-such-process-name-xyz"), 0);
    }
}
