//! What every gateway scenario does the same way: pinning and prioritising the harness, starting
//! a target, creating Hearth users (and their tokens file) before anything is timed, spawning
//! the client fleet, and merging the clients' histograms.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

use crate::BenchError;
use crate::gateway::cli::GwCommonArgs;
use crate::gateway::fleet::{Fleet, FleetSpec};
use crate::gateway::http::HttpClient;
use crate::gateway::servers::{GwServer, ServerSpec, upgrade_path};
use crate::gateway::target::GwTarget;
use crate::gateway::wire::{HistWire, WorkerReport, new_histogram};
use crate::latency::LatencySummary;

/// Pins the harness (and so the client processes it spawns) to the client core, raises its
/// descriptor limit and applies `--nice` to its whole process tree.
pub fn prepare(c: &GwCommonArgs) -> Result<(), BenchError> {
    if c.shards == 0 {
        return Err(BenchError::Invalid("--shards must be at least 1".into()));
    }
    crate::sys::raise_nofile().map_err(|e| BenchError::io("raise RLIMIT_NOFILE", e))?;
    crate::sys::pin_to_core(0, c.client_core)
        .map_err(|e| BenchError::io(format!("pin harness to core {}", c.client_core), e))?;
    crate::sys::prioritise_tree(c.nice).map_err(|e| BenchError::io(format!("nice {}", c.nice), e))
}

/// How `target` is started for this run.
pub fn server_spec(c: &GwCommonArgs, target: GwTarget) -> Result<ServerSpec, BenchError> {
    let hearth_bin = match &c.hearth_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| BenchError::io("current_exe", e))?
            .parent()
            .map(|d| d.join("hearth"))
            .ok_or_else(|| BenchError::Invalid("executable has no parent folder".into()))?,
    };
    Ok(ServerSpec {
        target,
        hearth_bin,
        hearth_args: c.hearth_arg.clone(),
        nginx_bin: c.nginx_bin.clone(),
        nchan_module: c.nchan_module.clone(),
        shards: c.shards,
        core: c.server_core,
        nice: c.nice,
    })
}

/// Creates `n` bot users through `POST /control/users` on one keep-alive connection and
/// returns their tokens, in order.
pub fn create_users(server: &GwServer, n: u32) -> Result<Vec<String>, BenchError> {
    let mut http = HttpClient::new(server.addr);
    let mut tokens = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let body = serde_json::json!({"username": format!("bench-{i}"), "bot": true}).to_string();
        let resp = http.post_json("/control/users", &body)?;
        if resp.status != 200 {
            return Err(BenchError::Client(format!(
                "POST /control/users answered {}: {}",
                resp.status,
                resp.text()
            )));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&resp.body).map_err(|e| BenchError::Parse {
                file: "POST /control/users response".into(),
                detail: e.to_string(),
            })?;
        let token = v
            .get("token")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| BenchError::Parse {
                file: "POST /control/users response".into(),
                detail: format!("no token in {}", resp.text()),
            })?;
        tokens.push(token.to_owned());
    }
    Ok(tokens)
}

/// A tokens file for the client processes, removed on drop.
#[derive(Debug)]
pub struct TokensFile(PathBuf);

static TOKENS_SEQ: AtomicU64 = AtomicU64::new(0);

impl TokensFile {
    /// Writes `tokens`, one per line, to a fresh file in the temporary folder.
    pub fn write(tokens: &[String]) -> Result<Self, BenchError> {
        let path = std::env::temp_dir().join(format!(
            "hearth-bench-tokens-{}-{}.txt",
            std::process::id(),
            TOKENS_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut text = tokens.join("\n");
        text.push('\n');
        fs::write(&path, text).map_err(|e| BenchError::io("write tokens file", e))?;
        Ok(TokensFile(path))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TokensFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Users (Hearth) and the fleet spec for `sessions` sessions on `server`. The tokens file must
/// outlive the fleet's start-up.
pub fn fleet_spec(
    c: &GwCommonArgs,
    server: &GwServer,
    sessions: u32,
) -> Result<(FleetSpec, Option<TokensFile>), BenchError> {
    let tokens = match server.target {
        GwTarget::Hearth => {
            eprintln!("  creating {sessions} users");
            Some(TokensFile::write(&create_users(server, sessions)?)?)
        }
        GwTarget::Nchan => None,
    };
    Ok((
        FleetSpec {
            target: server.target,
            addr: server.addr,
            path: upgrade_path(server.target),
            tokens_file: tokens.as_ref().map(|t| t.path().to_path_buf()),
            sessions,
            per_client: c.sessions_per_client,
            inflight: c.inflight,
        },
        tokens,
    ))
}

/// Spawns the fleet and waits until every session is READY or failed; returns it with the
/// (ready, failed) totals.
pub fn connect_fleet(spec: &FleetSpec) -> Result<(Fleet, u64, u64), BenchError> {
    use crate::gateway::limits::CONNECT_PHASE_TIMEOUT_S;
    use crate::gateway::wire::WorkerMsg;
    let mut fleet = Fleet::spawn(spec)?;
    let counts = fleet.collect_all(
        std::time::Duration::from_secs(CONNECT_PHASE_TIMEOUT_S),
        "connect phase",
        |m| match m {
            WorkerMsg::Connected { ready, failed } => Some((ready, failed)),
            _ => None,
        },
    )?;
    let (ready, failed) = counts.iter().fold((0, 0), |(r, f), (a, b)| (r + a, f + b));
    eprintln!(
        "  {ready} sessions READY, {failed} failed, from {} client process(es)",
        fleet.len()
    );
    Ok((fleet, ready, failed))
}

/// Asks every client for its report.
pub fn reports(fleet: &mut Fleet) -> Result<Vec<WorkerReport>, BenchError> {
    use crate::gateway::wire::{Command, WorkerMsg};
    fleet.send(Command::Report)?;
    fleet.collect_all(std::time::Duration::from_secs(30), "report", |m| match m {
        WorkerMsg::Report(r) => Some(*r),
        _ => None,
    })
}

/// One histogram of every report's `pick` histogram.
pub fn merged(
    reports: &[WorkerReport],
    pick: impl Fn(&WorkerReport) -> &HistWire,
) -> Result<Histogram<u64>, BenchError> {
    let mut h = new_histogram()?;
    for r in reports {
        pick(r).add_to(&mut h);
    }
    Ok(h)
}

/// The summary of a merged histogram, or `None` when it is empty.
pub fn summary(h: &Histogram<u64>) -> Option<LatencySummary> {
    (!h.is_empty()).then(|| LatencySummary::from_ns(h))
}

/// Sum of a counter over reports.
pub fn total(reports: &[WorkerReport], f: impl Fn(&WorkerReport) -> u64) -> u64 {
    reports.iter().map(f).sum()
}

/// Compiler processes (`rustc`) running now: the 2 vCPUs here are shared with builds, and the
/// reports say how busy the machine was when a run started.
pub fn rustc_processes() -> u32 {
    let Ok(dir) = fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|e| {
            fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim_end() == "rustc")
        })
        .count() as u32
}
