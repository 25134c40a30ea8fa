//! `gw-broadcast`: one serialized event fanned out to every identified session.
//!
//! N sessions reach READY (Nchan: N subscribers of one channel); warm-up events go out and are
//! checked; then K events are published at a paced rate (`POST /admin/broadcast` on Hearth,
//! `POST /pub/<channel>` on Nchan), each carrying its index and its CLOCK_MONOTONIC send time.
//! Every client counts each (session, event) once, checks order, and records send→receive
//! latency. The window runs from just before the first measured publish until every client has
//! seen the last event (or the drain time ran out): deliveries per server CPU-second is the
//! deliveries received in it over the server's CPU time in it (all threads, or all nginx
//! processes), the figure DESIGN.md's target (≥ 1M per core) is about.

use std::collections::BTreeMap;
use std::thread;
use std::time::Duration;

use serde::Serialize;

use crate::BenchError;
use crate::gateway::cli::GwBroadcastArgs;
use crate::gateway::common::{
    connect_fleet, fleet_spec, merged, prepare, reports, rustc_processes, server_spec, summary,
    total,
};
use crate::gateway::fleet::Fleet;
use crate::gateway::http::HttpClient;
use crate::gateway::limits::{BROADCAST_EVENT_BYTES_MAX, BROADCAST_EVENT_BYTES_MIN, NCHAN_CHANNEL};
use crate::gateway::net::mono_ns;
use crate::gateway::proto::{broadcast_body, nchan_body};
use crate::gateway::servers::GwServer;
use crate::gateway::target::{GwFailure, GwTarget};
use crate::gateway::wire::{Command, FailCounts, WorkerMsg, new_histogram};
use crate::latency::LatencySummary;

/// Pause after a command so every client has applied it before the next event can arrive.
const COMMAND_SETTLE_MS: u64 = 100;

/// The requested load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BroadcastParams {
    /// Sessions per target.
    pub sessions: u32,
    /// Measured events.
    pub events: u32,
    /// Warm-up events.
    pub warmup_events: u32,
    /// Events published per second (0: back to back).
    pub rate: f64,
    /// Target dispatch size, bytes.
    pub event_bytes: usize,
    /// Sessions per client process.
    pub sessions_per_client: u32,
    /// Hearth shards and nginx workers.
    pub shards: u32,
    /// Server core.
    pub server_core: usize,
    /// Client core.
    pub client_core: usize,
    /// Nice value.
    pub nice: i32,
    /// Drain limit, seconds.
    pub drain_s: u64,
    /// `rustc` processes running when the run started (other work on the 2 vCPUs).
    pub rustc_processes_at_start: u32,
}

/// One target's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BroadcastResult {
    /// Which server.
    pub target: GwTarget,
    /// Sessions READY (Nchan: subscribed).
    pub ready: u64,
    /// Sessions that failed to connect, by kind.
    pub failed: FailCounts,
    /// Client processes.
    pub client_procs: u32,
    /// Subscribers Nchan reported on the channel before the events (Hearth: none).
    pub nchan_subscribers: Option<u64>,
    /// Measured events published per second, achieved.
    pub publish_rate: f64,
    /// READY sessions × measured events.
    pub expected_deliveries: u64,
    /// Measured events received, each (session, event) once.
    pub deliveries: u64,
    /// Events (warm-up and measured) never received by a session that was READY.
    pub lost: u64,
    /// Events received twice or out of order.
    pub duplicates: u64,
    /// Sessions whose sequence numbers did not increase by one (Hearth).
    pub seq_errors: u64,
    /// Sum of the `deliveries` Hearth answered for the measured events.
    pub server_reported_deliveries: Option<u64>,
    /// Whether every client saw the last event before the drain limit.
    pub drained: bool,
    /// Window length, seconds.
    pub window_s: f64,
    /// Server CPU in the window (schedstat, all threads / processes), seconds.
    pub server_cpu_s: f64,
    /// The same from /proc/PID/stat utime + stime (10 ms ticks), seconds.
    pub server_cpu_stat_s: f64,
    /// Deliveries per server CPU-second.
    pub deliveries_per_cpu_s: f64,
    /// Deliveries per wall-clock second, first measured publish to last receipt.
    pub deliveries_per_s_wall: f64,
    /// Server CPU / window.
    pub server_cpu_util: f64,
    /// Client processes' CPU / window (near 1 means the clients, not the server, set the pace).
    pub client_cpu_util: f64,
    /// Publish → receipt.
    pub latency: Option<LatencySummary>,
    /// Publish → HTTP answer (Hearth answers once every shard has queued the event).
    pub publish_ack: Option<LatencySummary>,
    /// Smallest delivered event, bytes.
    pub event_bytes_min: u64,
    /// Largest delivered event, bytes.
    pub event_bytes_max: u64,
    /// READY sessions the server closed, by close code.
    pub closed_after_ready: BTreeMap<String, u64>,
    /// Messages the clients did not expect, by kind.
    pub unexpected: BTreeMap<String, u64>,
    /// Whether the server exited 0 on SIGTERM.
    pub clean_exit: bool,
}

/// Everything a broadcast run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BroadcastRun {
    /// The load.
    pub params: BroadcastParams,
    /// Measured targets.
    pub results: Vec<BroadcastResult>,
    /// Targets that could not be measured.
    pub failures: Vec<GwFailure>,
}

/// Runs every target in turn.
pub fn run(args: &GwBroadcastArgs) -> Result<BroadcastRun, BenchError> {
    let c = &args.common;
    if !(BROADCAST_EVENT_BYTES_MIN..=BROADCAST_EVENT_BYTES_MAX).contains(&args.event_bytes) {
        return Err(BenchError::Invalid(format!(
            "--event-bytes must be {BROADCAST_EVENT_BYTES_MIN}..={BROADCAST_EVENT_BYTES_MAX}"
        )));
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) || args.events == 0 {
        return Err(BenchError::Invalid(
            "--rate must be a finite number >= 0 and --events at least 1".into(),
        ));
    }
    let busy = rustc_processes();
    prepare(c)?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for &target in &c.targets {
        eprintln!(
            "gw-broadcast: {target}: {} sessions, {} + {} events at {}/s",
            args.sessions, args.warmup_events, args.events, args.rate
        );
        match run_one(args, target) {
            Ok(r) => {
                eprintln!(
                    "gw-broadcast: {target}: {} deliveries, lost {}, {:.0} deliveries per \
                     CPU-second, {:.0}/s wall, p50 {:.0} µs, p99 {:.0} µs",
                    r.deliveries,
                    r.lost,
                    r.deliveries_per_cpu_s,
                    r.deliveries_per_s_wall,
                    r.latency.as_ref().map_or(0.0, |l| l.p50_us),
                    r.latency.as_ref().map_or(0.0, |l| l.p99_us),
                );
                results.push(r);
            }
            Err(e) => {
                eprintln!("gw-broadcast: {target}: FAILED: {e}");
                failures.push(GwFailure {
                    target,
                    error: e.to_string(),
                });
            }
        }
    }
    Ok(BroadcastRun {
        params: BroadcastParams {
            rustc_processes_at_start: busy,
            sessions: args.sessions,
            events: args.events,
            warmup_events: args.warmup_events,
            rate: args.rate,
            event_bytes: args.event_bytes,
            sessions_per_client: c.sessions_per_client,
            shards: c.shards,
            server_core: c.server_core,
            client_core: c.client_core,
            nice: c.nice,
            drain_s: args.drain_s,
        },
        results,
        failures,
    })
}

/// Publishes bench events over one keep-alive connection, recording how long each POST took to
/// be answered.
struct Publisher<'a> {
    http: HttpClient,
    target: GwTarget,
    event_bytes: usize,
    ack_ns: &'a mut hdrhistogram::Histogram<u64>,
}

impl Publisher<'_> {
    fn publish(&mut self, k: u64) -> Result<Option<u64>, BenchError> {
        let ts = mono_ns();
        let (path, body) = match self.target {
            GwTarget::Hearth => (
                "/admin/broadcast".to_owned(),
                broadcast_body(k, ts, self.event_bytes),
            ),
            GwTarget::Nchan => (
                format!("/pub/{NCHAN_CHANNEL}"),
                nchan_body(k, ts, self.event_bytes),
            ),
        };
        let resp = self.http.post_json(&path, &body)?;
        self.ack_ns
            .saturating_record(mono_ns().saturating_sub(ts).max(1));
        if !(200..300).contains(&resp.status) {
            return Err(BenchError::Client(format!(
                "POST {path} answered {}: {}",
                resp.status,
                resp.text()
            )));
        }
        if self.target == GwTarget::Nchan {
            return Ok(None);
        }
        let v: serde_json::Value =
            serde_json::from_slice(&resp.body).map_err(|e| BenchError::Parse {
                file: "POST /admin/broadcast response".into(),
                detail: e.to_string(),
            })?;
        v.get("deliveries")
            .and_then(serde_json::Value::as_u64)
            .map(Some)
            .ok_or_else(|| BenchError::Parse {
                file: "POST /admin/broadcast response".into(),
                detail: format!("no deliveries in {}", resp.text()),
            })
    }

    /// Publishes events `from..to` at `rate` per second; returns the phase's start time and the
    /// sum of the deliveries Hearth reported.
    fn phase(&mut self, from: u64, to: u64, rate: f64) -> Result<(u64, u64), BenchError> {
        let start = mono_ns();
        let mut reported = 0;
        for (i, k) in (from..to).enumerate() {
            if rate > 0.0 {
                let due = start + (i as f64 * 1e9 / rate) as u64;
                let now = mono_ns();
                if due > now {
                    thread::sleep(Duration::from_nanos(due - now));
                }
            }
            reported += self
                .publish(k)
                .map_err(|e| {
                    BenchError::io(
                        format!("publishing event {k} (after {i} of events {from}..{to} went out)"),
                        std::io::Error::other(e.to_string()),
                    )
                })?
                .unwrap_or(0);
        }
        Ok((start, reported))
    }
}

fn wait_done(fleet: &mut Fleet, drain_s: u64) -> Result<bool, BenchError> {
    let got = fleet.collect(Duration::from_secs(drain_s), |m| match m {
        WorkerMsg::Done { .. } => Some(()),
        _ => None,
    })?;
    Ok(got.iter().all(Option::is_some))
}

fn nchan_subscribers(server: &GwServer) -> Result<u64, BenchError> {
    let mut http = HttpClient::new(server.addr);
    let resp = http.request(
        "GET",
        &format!("/pub/{NCHAN_CHANNEL}"),
        &[("Accept", "text/json")],
        b"",
    )?;
    let v: serde_json::Value =
        serde_json::from_slice(&resp.body).map_err(|e| BenchError::Parse {
            file: "Nchan channel info".into(),
            detail: format!("{e} in {}", resp.text()),
        })?;
    v.get("subscribers")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| BenchError::Parse {
            file: "Nchan channel info".into(),
            detail: format!("no subscribers in {}", resp.text()),
        })
}

fn run_one(args: &GwBroadcastArgs, target: GwTarget) -> Result<BroadcastResult, BenchError> {
    let c = &args.common;
    let mut server = GwServer::start(&server_spec(c, target)?)?;
    let (spec, _tokens) = fleet_spec(c, &server, args.sessions)?;
    let (mut fleet, ready, _) = connect_fleet(&spec)?;
    thread::sleep(Duration::from_secs(c.settle_s));
    let nchan_subscribers = match target {
        GwTarget::Nchan => Some(nchan_subscribers(&server)?),
        GwTarget::Hearth => None,
    };
    let mut ack_ns = new_histogram()?;
    let mut warm_ack = new_histogram()?;
    let (w, k) = (u64::from(args.warmup_events), u64::from(args.events));
    if w > 0 {
        fleet.send(Command::Expect {
            total: w,
            record_from: w,
        })?;
        thread::sleep(Duration::from_millis(COMMAND_SETTLE_MS));
        let mut warm = Publisher {
            http: HttpClient::new(server.addr),
            target,
            event_bytes: args.event_bytes,
            ack_ns: &mut warm_ack,
        };
        eprintln!("  warm-up: {w} events");
        warm.phase(0, w, args.rate)?;
        if !wait_done(&mut fleet, args.drain_s)? {
            eprintln!("  warm-up: not every client saw every event (counted as loss)");
        }
    }
    fleet.send(Command::Expect {
        total: w + k,
        record_from: w,
    })?;
    thread::sleep(Duration::from_millis(COMMAND_SETTLE_MS));
    let mut publisher = Publisher {
        http: HttpClient::new(server.addr),
        target,
        event_bytes: args.event_bytes,
        ack_ns: &mut ack_ns,
    };
    let cpu0 = server.cpu()?;
    let client0 = fleet.cpu_ns();
    let t0 = mono_ns();
    eprintln!("  measured: {k} events");
    let (first_send, reported) = publisher.phase(w, w + k, args.rate)?;
    let publish_end = mono_ns();
    let drained = wait_done(&mut fleet, args.drain_s)?;
    let t1 = mono_ns();
    let cpu = server.cpu()?.since(&cpu0);
    let client_ns = fleet.cpu_ns().saturating_sub(client0);
    let reps = reports(&mut fleet)?;
    fleet.send(Command::Quit)?;
    let client_procs = fleet.len() as u32;
    drop(fleet);
    let clean_exit = server.stop();

    let mut failed = FailCounts::default();
    let mut closed_after_ready = BTreeMap::new();
    let mut unexpected = BTreeMap::new();
    for r in &reps {
        failed.merge(&r.failed);
        for (key, v) in &r.closed_after_ready {
            *closed_after_ready.entry(key.clone()).or_insert(0) += v;
        }
        for (key, v) in &r.unexpected {
            *unexpected.entry(key.clone()).or_insert(0) += v;
        }
    }
    let deliveries = total(&reps, |r| r.bench_recorded);
    let window_s = t1.saturating_sub(t0) as f64 / 1e9;
    let last_rx = reps.iter().map(|r| r.last_rx_ns).max().unwrap_or(0);
    let wall_s = last_rx.saturating_sub(first_send) as f64 / 1e9;
    let server_cpu_s = cpu.schedstat_ns as f64 / 1e9;
    let publish_s = publish_end.saturating_sub(first_send) as f64 / 1e9;
    let per = |x: f64, over: f64| if over > 0.0 { x / over } else { 0.0 };
    Ok(BroadcastResult {
        target,
        ready,
        failed,
        client_procs,
        nchan_subscribers,
        publish_rate: per(k as f64, publish_s),
        expected_deliveries: ready * k,
        deliveries,
        lost: total(&reps, |r| r.bench_expected).saturating_sub(total(&reps, |r| r.bench_received)),
        duplicates: total(&reps, |r| r.bench_duplicates),
        seq_errors: total(&reps, |r| r.seq_errors),
        server_reported_deliveries: (target == GwTarget::Hearth).then_some(reported),
        drained,
        window_s,
        server_cpu_s,
        server_cpu_stat_s: cpu.stat_ns as f64 / 1e9,
        deliveries_per_cpu_s: per(deliveries as f64, server_cpu_s),
        deliveries_per_s_wall: per(deliveries as f64, wall_s),
        server_cpu_util: per(server_cpu_s, window_s),
        client_cpu_util: per(client_ns as f64 / 1e9, window_s),
        latency: summary(&merged(&reps, |r| &r.delivery)?),
        publish_ack: summary(&ack_ns),
        event_bytes_min: reps
            .iter()
            .map(|r| r.bench_bytes_min)
            .filter(|&b| b > 0)
            .min()
            .unwrap_or(0),
        event_bytes_max: reps.iter().map(|r| r.bench_bytes_max).max().unwrap_or(0),
        closed_after_ready,
        unexpected,
        clean_exit,
    })
}
