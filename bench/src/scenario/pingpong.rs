//! `pingpong`: each target in turn, pinned to the server core, gets the same fixed open-loop
//! load from the epoll client pinned to the client core.

use std::time::Duration;

use serde::Serialize;

use crate::BenchError;
use crate::cli::PingpongArgs;
use crate::latency::LatencySummary;
use crate::limits::PINGPONG_DRAIN_S;
use crate::pingpong_client::{self, ClientConfig, ErrorCounts};
use crate::procfs::CpuSource;
use crate::scenario::Failure;
use crate::server::{Binaries, Server, Target};

/// The offered load, identical for every target of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PingpongParams {
    /// Connections.
    pub conns: u32,
    /// Offered requests per second, total.
    pub offered_rate: u64,
    /// Request size, bytes.
    pub request_bytes: usize,
    /// Warm-up, seconds.
    pub warmup_s: u64,
    /// Measured window, seconds.
    pub duration_s: u64,
    /// Server core.
    pub server_core: usize,
    /// Client core.
    pub client_core: usize,
    /// Nice value of server and client.
    pub nice: i32,
    /// Client busy-poll threshold, µs.
    pub client_spin_us: u64,
}

/// One target's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PingpongResult {
    /// Which server.
    pub target: Target,
    /// Requests due in the window.
    pub scheduled: u64,
    /// Of those, answered.
    pub completed: u64,
    /// Answers per second received while the window was open.
    pub achieved_rate: f64,
    /// Actual window length, seconds.
    pub window_s: f64,
    /// Server CPU during the window, µs.
    pub server_cpu_us: f64,
    /// How server CPU was measured.
    pub server_cpu_source: CpuSource,
    /// Server CPU per answered request, µs.
    pub cpu_us_per_req: f64,
    /// Server CPU utilisation of its core during the window, 0..=1 per thread.
    pub server_cpu_util: f64,
    /// Load generator CPU utilisation during the window (close to 1 means it may lag).
    pub client_cpu_util: f64,
    /// Client dispatch lag behind schedule, p99, µs.
    pub dispatch_lag_p99_us: f64,
    /// Client dispatch lag behind schedule, max, µs.
    pub dispatch_lag_max_us: f64,
    /// Latency from scheduled send to full echo (coordinated omission accounted for).
    pub latency: LatencySummary,
    /// Failures by kind.
    pub errors: ErrorCounts,
    /// Sum of failures.
    pub error_total: u64,
    /// Whether the server exited 0 on SIGTERM.
    pub clean_exit: bool,
}

/// Everything a pingpong run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PingpongRun {
    /// The load.
    pub params: PingpongParams,
    /// Measured targets, in order.
    pub results: Vec<PingpongResult>,
    /// Targets that could not be measured.
    pub failures: Vec<Failure>,
}

/// Derives the reported figures from the client's raw outcome.
pub fn summarise(
    target: Target,
    out: &pingpong_client::ClientOutcome,
    clean_exit: bool,
) -> PingpongResult {
    let window_s = out.window_ns as f64 / 1e9;
    let per_s = |x: f64| if window_s > 0.0 { x / window_s } else { 0.0 };
    let cpu_us = out.server_cpu_ns as f64 / 1000.0;
    PingpongResult {
        target,
        scheduled: out.scheduled_in_window,
        completed: out.completed_in_window,
        achieved_rate: per_s(out.responses_during_window as f64),
        window_s,
        server_cpu_us: cpu_us,
        server_cpu_source: out.server_cpu_source,
        cpu_us_per_req: if out.responses_during_window > 0 {
            cpu_us / out.responses_during_window as f64
        } else {
            0.0
        },
        server_cpu_util: per_s(out.server_cpu_ns as f64 / 1e9),
        client_cpu_util: per_s(out.client_cpu_ns as f64 / 1e9),
        dispatch_lag_p99_us: out.dispatch_lag_ns.value_at_quantile(0.99) as f64 / 1000.0,
        dispatch_lag_max_us: out.dispatch_lag_ns.max() as f64 / 1000.0,
        latency: LatencySummary::from_ns(&out.latency_ns),
        errors: out.errors,
        error_total: out.errors.total(),
        clean_exit,
    }
}

/// Runs every target in turn.
pub fn run(args: &PingpongArgs) -> Result<PingpongRun, BenchError> {
    let c = &args.common;
    let bins = Binaries::locate(c.hearth_bin.clone(), c.hearth_arg.clone())?;
    crate::sys::raise_nofile().map_err(|e| BenchError::io("raise RLIMIT_NOFILE", e))?;
    crate::sys::pin_to_core(0, c.client_core)
        .map_err(|e| BenchError::io(format!("pin client to core {}", c.client_core), e))?;
    crate::sys::prioritise_tree(c.nice)
        .map_err(|e| BenchError::io(format!("nice {}", c.nice), e))?;
    let params = PingpongParams {
        conns: args.conns,
        offered_rate: args.rate,
        request_bytes: args.request_bytes,
        warmup_s: c.warmup_s,
        duration_s: c.duration_s,
        server_core: c.server_core,
        client_core: c.client_core,
        nice: c.nice,
        client_spin_us: args.client_spin_us,
    };
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for &target in &c.targets {
        eprintln!(
            "pingpong: {target}: {} conns, {} req/s, {} s warm-up + {} s",
            args.conns, args.rate, c.warmup_s, c.duration_s
        );
        match run_one(args, &bins, target) {
            Ok(r) => {
                eprintln!(
                    "pingpong: {target}: {:.0} req/s, {:.2} µs CPU/req, p50 {:.1} µs, \
                     p99 {:.1} µs, p99.9 {:.1} µs, errors {}",
                    r.achieved_rate,
                    r.cpu_us_per_req,
                    r.latency.p50_us,
                    r.latency.p99_us,
                    r.latency.p999_us,
                    r.error_total
                );
                results.push(r);
            }
            Err(e) => {
                eprintln!("pingpong: {target}: FAILED: {e}");
                failures.push(Failure {
                    target,
                    error: e.to_string(),
                });
            }
        }
    }
    Ok(PingpongRun {
        params,
        results,
        failures,
    })
}

fn run_one(
    args: &PingpongArgs,
    bins: &Binaries,
    target: Target,
) -> Result<PingpongResult, BenchError> {
    let mut server = Server::start(bins, target, args.common.server_core, args.common.nice)?;
    let cfg = ClientConfig {
        addr: server.echo,
        conns: args.conns,
        rate_per_s: args.rate,
        request_bytes: args.request_bytes,
        warmup: Duration::from_secs(args.common.warmup_s),
        duration: Duration::from_secs(args.common.duration_s),
        drain: Duration::from_secs(PINGPONG_DRAIN_S),
        server_pid: server.pid,
        spin: Duration::from_micros(args.client_spin_us),
    };
    let outcome = pingpong_client::run(&cfg)?;
    let clean_exit = server.stop();
    Ok(summarise(target, &outcome, clean_exit))
}
