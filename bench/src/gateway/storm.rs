//! `gw-identify-storm`: N sessions connect, upgrade and (Hearth) Identify with a bounded number
//! of handshakes in flight. Measured: sessions READY per second from the first connect to the
//! last READY, connect→READY and Identify→READY latency, and the server's CPU per session.
//! Nchan's figure is connect→101 (the upgrade subscribes): it does less work per connection
//! than Hello + Identify + READY, and the report says so.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::BenchError;
use crate::gateway::cli::GwStormArgs;
use crate::gateway::common::{
    connect_fleet, fleet_spec, merged, prepare, reports, rustc_processes, server_spec, summary,
    total,
};
use crate::gateway::servers::GwServer;
use crate::gateway::target::{GwFailure, GwTarget};
use crate::gateway::wire::{Command, FailCounts};
use crate::latency::LatencySummary;

/// The requested load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StormParams {
    /// Sessions per target.
    pub sessions: u32,
    /// Handshakes in flight over all client processes.
    pub inflight: u32,
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
    /// `rustc` processes running when the run started (other work on the 2 vCPUs).
    pub rustc_processes_at_start: u32,
}

/// One target's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StormResult {
    /// Which server.
    pub target: GwTarget,
    /// Sessions that reached READY (Nchan: upgraded).
    pub ready: u64,
    /// Sessions that failed, by kind.
    pub failed: FailCounts,
    /// Client processes.
    pub client_procs: u32,
    /// First connect to last READY, seconds.
    pub elapsed_s: f64,
    /// READY sessions per second over that span.
    pub sessions_per_s: f64,
    /// connect(2) → READY (Nchan: → 101).
    pub connect_ready: Option<LatencySummary>,
    /// Identify sent → READY (Hearth only).
    pub identify_ready: Option<LatencySummary>,
    /// Server CPU over the connect phase, seconds (all threads / processes).
    pub server_cpu_s: f64,
    /// Server CPU per READY session, µs.
    pub server_cpu_us_per_session: f64,
    /// READY sessions per server CPU-second: the server's handshake capacity on one core,
    /// whatever the client could offer.
    pub sessions_per_server_cpu_s: f64,
    /// Client processes' CPU over the same span, seconds.
    pub client_cpu_s: f64,
    /// Client CPU ÷ (first connect → last READY): near 1 means the one client core, not the
    /// server, limited sessions/s.
    pub client_cpu_util: f64,
    /// READY sessions closed by the server before the end of the phase, by close code.
    pub closed_after_ready: BTreeMap<String, u64>,
    /// Messages the clients did not expect, by kind.
    pub unexpected: BTreeMap<String, u64>,
    /// Whether the server exited 0 on SIGTERM.
    pub clean_exit: bool,
}

/// Everything a storm run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StormRun {
    /// The load.
    pub params: StormParams,
    /// Measured targets.
    pub results: Vec<StormResult>,
    /// Targets that could not be measured.
    pub failures: Vec<GwFailure>,
}

/// Runs every target in turn.
pub fn run(args: &GwStormArgs) -> Result<StormRun, BenchError> {
    let c = &args.common;
    let busy = rustc_processes();
    prepare(c)?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for &target in &c.targets {
        eprintln!("gw-identify-storm: {target}: {} sessions", args.sessions);
        match run_one(args, target) {
            Ok(r) => {
                eprintln!(
                    "gw-identify-storm: {target}: {} READY, {} failed, {:.0} sessions/s, \
                     connect→READY p99 {:.0} µs, {:.1} µs server CPU/session",
                    r.ready,
                    r.failed.total(),
                    r.sessions_per_s,
                    r.connect_ready.as_ref().map_or(0.0, |l| l.p99_us),
                    r.server_cpu_us_per_session
                );
                results.push(r);
            }
            Err(e) => {
                eprintln!("gw-identify-storm: {target}: FAILED: {e}");
                failures.push(GwFailure {
                    target,
                    error: e.to_string(),
                });
            }
        }
    }
    Ok(StormRun {
        params: StormParams {
            rustc_processes_at_start: busy,
            sessions: args.sessions,
            inflight: c.inflight,
            sessions_per_client: c.sessions_per_client,
            shards: c.shards,
            server_core: c.server_core,
            client_core: c.client_core,
            nice: c.nice,
        },
        results,
        failures,
    })
}

fn run_one(args: &GwStormArgs, target: GwTarget) -> Result<StormResult, BenchError> {
    let c = &args.common;
    let mut server = GwServer::start(&server_spec(c, target)?)?;
    let (spec, _tokens) = fleet_spec(c, &server, args.sessions)?;
    std::thread::sleep(std::time::Duration::from_secs(c.settle_s));
    let cpu0 = server.cpu()?;
    let (mut fleet, _, _) = connect_fleet(&spec)?;
    let cpu1 = server.cpu()?;
    let client_cpu_ns = fleet.cpu_ns();
    let reps = reports(&mut fleet)?;
    fleet.send(Command::Quit)?;
    let client_procs = fleet.len() as u32;
    drop(fleet);
    if !server.running() {
        return Err(BenchError::Client(format!(
            "{target} exited during the storm"
        )));
    }
    let clean_exit = server.stop();
    let ready = total(&reps, |r| r.ready);
    let mut failed = FailCounts::default();
    let mut closed_after_ready = BTreeMap::new();
    let mut unexpected = BTreeMap::new();
    for r in &reps {
        failed.merge(&r.failed);
        for (k, v) in &r.closed_after_ready {
            *closed_after_ready.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &r.unexpected {
            *unexpected.entry(k.clone()).or_insert(0) += v;
        }
    }
    let first = reps
        .iter()
        .map(|r| r.first_connect_ns)
        .filter(|&t| t > 0)
        .min()
        .unwrap_or(0);
    let last = reps.iter().map(|r| r.last_ready_ns).max().unwrap_or(0);
    let elapsed_s = last.saturating_sub(first) as f64 / 1e9;
    let cpu = cpu1.since(&cpu0);
    let server_cpu_s = cpu.schedstat_ns as f64 / 1e9;
    Ok(StormResult {
        target,
        ready,
        failed,
        client_procs,
        elapsed_s,
        sessions_per_s: if elapsed_s > 0.0 {
            ready as f64 / elapsed_s
        } else {
            0.0
        },
        connect_ready: summary(&merged(&reps, |r| &r.connect_ready)?),
        identify_ready: summary(&merged(&reps, |r| &r.identify_ready)?),
        server_cpu_s,
        server_cpu_us_per_session: if ready > 0 {
            server_cpu_s * 1e6 / ready as f64
        } else {
            0.0
        },
        sessions_per_server_cpu_s: if server_cpu_s > 0.0 {
            ready as f64 / server_cpu_s
        } else {
            0.0
        },
        client_cpu_s: client_cpu_ns as f64 / 1e9,
        client_cpu_util: if elapsed_s > 0.0 {
            client_cpu_ns as f64 / 1e9 / elapsed_s
        } else {
            0.0
        },
        closed_after_ready,
        unexpected,
        clean_exit,
    })
}
