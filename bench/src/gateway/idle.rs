//! `gw-idle-sessions`: memory a server spends per identified idle session.
//!
//! Users are created first (their records are not sessions), the server settles, and its
//! memory is read; then N sessions connect and reach READY from several client processes, the
//! server settles again and is read again: (VmRSS after − before) / sessions is the user-space
//! cost of a session, RssAnon the same without file-backed pages. The sessions are then held
//! for `--hold-s` seconds, heartbeating on the interval Hello gave (Nchan: nothing to do), and
//! every one is asked for a heartbeat ACK (Nchan: a pong) to show it is still alive.

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::BenchError;
use crate::gateway::cli::GwIdleArgs;
use crate::gateway::common::{
    connect_fleet, fleet_spec, prepare, reports, rustc_processes, server_spec, total,
};
use crate::gateway::limits::ALIVE_CHECK_TIMEOUT_S;
use crate::gateway::servers::{GwServer, ProcMem};
use crate::gateway::target::{GwFailure, GwTarget};
use crate::gateway::wire::{Command, FailCounts, WorkerMsg};

/// The requested load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdleParams {
    /// Sessions per target.
    pub sessions: u32,
    /// Sessions per client process.
    pub sessions_per_client: u32,
    /// Handshakes in flight.
    pub inflight: u32,
    /// Settle time before each reading, seconds.
    pub settle_s: u64,
    /// Hold time after the reading, seconds.
    pub hold_s: u64,
    /// Hearth shards and nginx workers.
    pub shards: u32,
    /// Server core.
    pub server_core: usize,
    /// Nice value.
    pub nice: i32,
    /// `rustc` processes running when the run started (other work on the 2 vCPUs).
    pub rustc_processes_at_start: u32,
}

/// One target's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleGwResult {
    /// Which server.
    pub target: GwTarget,
    /// Sessions that reached READY.
    pub ready: u64,
    /// Sessions that failed, by kind.
    pub failed: FailCounts,
    /// Client processes.
    pub client_procs: u32,
    /// Seconds from spawning the clients to every session READY or failed.
    pub connect_s: f64,
    /// Before the sessions (users already created).
    pub before: ProcMem,
    /// With the sessions open and settled.
    pub after: ProcMem,
    /// After the hold and the liveness check.
    pub end: ProcMem,
    /// (VmRSS after − before) / READY sessions, bytes.
    pub rss_bytes_per_session: f64,
    /// (RssAnon after − before) / READY sessions, bytes.
    pub anon_bytes_per_session: f64,
    /// (VmRSS end − before) / READY sessions, bytes: whether holding them cost more.
    pub rss_bytes_per_session_end: f64,
    /// Seconds the sessions were held after the reading.
    pub held_s: f64,
    /// Sessions asked at the end.
    pub checked: u64,
    /// Sessions that answered the check.
    pub alive: u64,
    /// Heartbeats the clients sent over the whole run (checks included).
    pub heartbeats_sent: u64,
    /// Heartbeat ACKs received.
    pub heartbeat_acks: u64,
    /// READY sessions the server closed, by close code.
    pub closed_after_ready: BTreeMap<String, u64>,
    /// Messages the clients did not expect, by kind.
    pub unexpected: BTreeMap<String, u64>,
    /// Whether the server exited 0 on SIGTERM.
    pub clean_exit: bool,
}

/// Everything an idle run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleGwRun {
    /// The load.
    pub params: IdleParams,
    /// Measured targets.
    pub results: Vec<IdleGwResult>,
    /// Targets that could not be measured.
    pub failures: Vec<GwFailure>,
}

/// (after − before) KiB as bytes per session; shrinking counts as zero.
pub fn per_session(before_kib: u64, after_kib: u64, sessions: u64) -> f64 {
    if sessions == 0 {
        return 0.0;
    }
    after_kib.saturating_sub(before_kib) as f64 * 1024.0 / sessions as f64
}

/// Runs every target in turn.
pub fn run(args: &GwIdleArgs) -> Result<IdleGwRun, BenchError> {
    let c = &args.common;
    let busy = rustc_processes();
    prepare(c)?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for &target in &c.targets {
        eprintln!("gw-idle-sessions: {target}: {} sessions", args.sessions);
        match run_one(args, target) {
            Ok(r) => {
                eprintln!(
                    "gw-idle-sessions: {target}: {} READY, {:.0} B/session RSS ({:.0} anon), \
                     {}/{} alive after {:.0} s",
                    r.ready,
                    r.rss_bytes_per_session,
                    r.anon_bytes_per_session,
                    r.alive,
                    r.checked,
                    r.held_s
                );
                results.push(r);
            }
            Err(e) => {
                eprintln!("gw-idle-sessions: {target}: FAILED: {e}");
                failures.push(GwFailure {
                    target,
                    error: e.to_string(),
                });
            }
        }
    }
    Ok(IdleGwRun {
        params: IdleParams {
            rustc_processes_at_start: busy,
            sessions: args.sessions,
            sessions_per_client: c.sessions_per_client,
            inflight: c.inflight,
            settle_s: c.settle_s,
            hold_s: args.hold_s,
            shards: c.shards,
            server_core: c.server_core,
            nice: c.nice,
        },
        results,
        failures,
    })
}

fn run_one(args: &GwIdleArgs, target: GwTarget) -> Result<IdleGwResult, BenchError> {
    let c = &args.common;
    let settle = Duration::from_secs(c.settle_s);
    let mut server = GwServer::start(&server_spec(c, target)?)?;
    let (spec, _tokens) = fleet_spec(c, &server, args.sessions)?;
    thread::sleep(settle);
    let before = server.mem()?;
    let started = Instant::now();
    let (mut fleet, ready, _) = connect_fleet(&spec)?;
    let connect_s = started.elapsed().as_secs_f64();
    thread::sleep(settle);
    let after = server.mem()?;
    eprintln!(
        "  {ready} sessions READY in {connect_s:.1} s; VmRSS {:.1} → {:.1} MiB; holding {} s",
        before.vm_rss_kib as f64 / 1024.0,
        after.vm_rss_kib as f64 / 1024.0,
        args.hold_s
    );
    let hold_start = Instant::now();
    while hold_start.elapsed() < Duration::from_secs(args.hold_s) {
        if !server.running() {
            return Err(BenchError::Client(format!("{target} exited while idle")));
        }
        thread::sleep(Duration::from_millis(500));
    }
    fleet.send(Command::Check)?;
    let checks = fleet.collect_all(
        Duration::from_secs(ALIVE_CHECK_TIMEOUT_S + 10),
        "liveness check",
        |m| match m {
            WorkerMsg::Alive { checked, alive } => Some((checked, alive)),
            _ => None,
        },
    )?;
    let held_s = hold_start.elapsed().as_secs_f64();
    let end = server.mem()?;
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
        for (k, v) in &r.closed_after_ready {
            *closed_after_ready.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &r.unexpected {
            *unexpected.entry(k.clone()).or_insert(0) += v;
        }
    }
    Ok(IdleGwResult {
        target,
        ready,
        failed,
        client_procs,
        connect_s,
        before,
        after,
        end,
        rss_bytes_per_session: per_session(before.vm_rss_kib, after.vm_rss_kib, ready),
        anon_bytes_per_session: per_session(before.rss_anon_kib, after.rss_anon_kib, ready),
        rss_bytes_per_session_end: per_session(before.vm_rss_kib, end.vm_rss_kib, ready),
        held_s,
        checked: checks.iter().map(|c| c.0).sum(),
        alive: checks.iter().map(|c| c.1).sum(),
        heartbeats_sent: total(&reps, |r| r.heartbeats_sent),
        heartbeat_acks: total(&reps, |r| r.heartbeat_acks),
        closed_after_ready,
        unexpected,
        clean_exit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_per_session() {
        assert_eq!(per_session(1_000, 1_000 + 2 * 19, 19), 2048.0);
        assert_eq!(per_session(1_000, 900, 19), 0.0);
        assert_eq!(per_session(1, 2, 0), 0.0);
    }
}
