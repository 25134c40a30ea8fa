//! `idle-conns`: memory a server spends per idle connection.
//!
//! User space: the server's VmRSS before and after N connections, each of which has echoed one
//! byte (so the server accepted it and ran its read path), divided by N. Kernel: the change in
//! system-wide TCP buffer pages (`/proc/net/sockstat` mem) and in slab memory, divided by N.
//! Both kernel figures cover BOTH ends of each loopback connection (client and server sockets
//! live in the same kernel) and the slab figure is system-wide, so other activity on the
//! machine adds noise.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::BenchError;
use crate::cli::IdleConnsArgs;
use crate::idle_client::parse_ready_line;
use crate::limits::{IDLE_CONNS_PER_PROC_MAX, IDLE_SOURCE_IPS_MAX};
use crate::procfs;
use crate::scenario::Failure;
use crate::server::{Binaries, Server, Target};

/// The requested load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdleParams {
    /// Connections requested.
    pub conns: u32,
    /// Connections per client process.
    pub conns_per_client: u32,
    /// Settle time before each reading, seconds.
    pub settle_s: u64,
    /// Server core.
    pub server_core: usize,
    /// Nice value of server and clients.
    pub nice: i32,
}

/// One snapshot of the memory figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemSample {
    /// Server VmRSS, KiB.
    pub rss_kib: u64,
    /// Server open fds.
    pub fds: u64,
    /// System TCP buffer memory, pages.
    pub tcp_mem_pages: u64,
    /// System slab memory, KiB.
    pub slab_kib: u64,
}

impl MemSample {
    fn take(pid: u32) -> Result<Self, BenchError> {
        Ok(MemSample {
            rss_kib: procfs::read_rss_kib(pid)?,
            fds: procfs::read_fd_count(pid)?,
            tcp_mem_pages: procfs::read_tcp_mem_pages()?,
            slab_kib: procfs::read_slab_kib()?,
        })
    }
}

/// One target's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleResult {
    /// Which server.
    pub target: Target,
    /// Connections open and confirmed by an echo.
    pub conns_open: u32,
    /// Connections that failed to open or echo.
    pub conns_failed: u32,
    /// Client processes used.
    pub client_procs: u32,
    /// Seconds to open and confirm all connections.
    pub open_s: f64,
    /// Before the connections.
    pub before: MemSample,
    /// With the connections open and settled.
    pub after: MemSample,
    /// (RSS after - RSS before) / open connections, bytes: the server's user-space cost.
    pub rss_bytes_per_conn: f64,
    /// TCP buffer memory delta / open connections, bytes (both ends of each connection).
    pub kernel_sockbuf_bytes_per_conn: f64,
    /// Slab delta / open connections, bytes (both ends, system-wide, noisy).
    pub kernel_slab_bytes_per_conn: f64,
    /// Whether the server exited 0 on SIGTERM.
    pub clean_exit: bool,
}

/// Everything an idle-conns run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleRun {
    /// The load.
    pub params: IdleParams,
    /// Measured targets.
    pub results: Vec<IdleResult>,
    /// Targets that could not be measured.
    pub failures: Vec<Failure>,
}

/// Per-connection figures from two samples; a shrinking figure counts as zero growth.
pub fn per_conn(before: &MemSample, after: &MemSample, conns: u32, page: u64) -> (f64, f64, f64) {
    if conns == 0 {
        return (0.0, 0.0, 0.0);
    }
    let n = f64::from(conns);
    let d = |a: u64, b: u64| b.saturating_sub(a) as f64;
    (
        d(before.rss_kib, after.rss_kib) * 1024.0 / n,
        d(before.tcp_mem_pages, after.tcp_mem_pages) * page as f64 / n,
        d(before.slab_kib, after.slab_kib) * 1024.0 / n,
    )
}

/// How `conns` connections are split over client processes: (source address, count) each.
pub fn split_clients(conns: u32, per_client: u32) -> Result<Vec<(Ipv4Addr, u32)>, BenchError> {
    if per_client == 0 || per_client > IDLE_CONNS_PER_PROC_MAX {
        return Err(BenchError::Invalid(format!(
            "--conns-per-client must be 1..={IDLE_CONNS_PER_PROC_MAX}"
        )));
    }
    let mut out = Vec::new();
    let mut left = conns;
    let mut i = 0u32;
    while left > 0 {
        let k = left.min(per_client);
        let host = 2 + (i % u32::from(IDLE_SOURCE_IPS_MAX)) as u8;
        out.push((Ipv4Addr::new(127, 0, 0, host), k));
        left -= k;
        i += 1;
    }
    Ok(out)
}

/// Runs every target in turn.
pub fn run(args: &IdleConnsArgs) -> Result<IdleRun, BenchError> {
    let c = &args.common;
    let bins = Binaries::locate(c.hearth_bin.clone(), c.hearth_arg.clone())?;
    crate::sys::pin_to_core(0, c.client_core)
        .map_err(|e| BenchError::io(format!("pin client to core {}", c.client_core), e))?;
    crate::sys::prioritise_tree(c.nice)
        .map_err(|e| BenchError::io(format!("nice {}", c.nice), e))?;
    // Validate the split before starting anything.
    split_clients(args.conns, args.conns_per_client)?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for &target in &c.targets {
        eprintln!("idle-conns: {target}: {} connections", args.conns);
        match run_one(args, &bins, target) {
            Ok(r) => {
                eprintln!(
                    "idle-conns: {target}: {} open ({} failed), {:.0} B/conn RSS, \
                     {:.0} B/conn kernel socket buffers, {:.0} B/conn slab",
                    r.conns_open,
                    r.conns_failed,
                    r.rss_bytes_per_conn,
                    r.kernel_sockbuf_bytes_per_conn,
                    r.kernel_slab_bytes_per_conn
                );
                results.push(r);
            }
            Err(e) => {
                eprintln!("idle-conns: {target}: FAILED: {e}");
                failures.push(Failure {
                    target,
                    error: e.to_string(),
                });
            }
        }
    }
    Ok(IdleRun {
        params: IdleParams {
            conns: args.conns,
            conns_per_client: args.conns_per_client,
            settle_s: args.settle_s,
            server_core: c.server_core,
            nice: c.nice,
        },
        results,
        failures,
    })
}

/// Client subprocesses, closed (stdin EOF) and reaped on drop.
struct Clients(Vec<Child>);

impl Drop for Clients {
    fn drop(&mut self) {
        for child in &mut self.0 {
            drop(child.stdin.take());
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

fn run_one(
    args: &IdleConnsArgs,
    bins: &Binaries,
    target: Target,
) -> Result<IdleResult, BenchError> {
    let settle = Duration::from_secs(args.settle_s);
    let mut server = Server::start(bins, target, args.common.server_core, args.common.nice)?;
    thread::sleep(settle);
    let before = MemSample::take(server.pid)?;
    let exe = std::env::current_exe().map_err(|e| BenchError::io("current_exe", e))?;
    let started = Instant::now();
    let mut clients = Clients(Vec::new());
    let plan = split_clients(args.conns, args.conns_per_client)?;
    for (source, k) in &plan {
        let child = Command::new(&exe)
            .arg("idle-client")
            .arg("--addr")
            .arg(server.echo.to_string())
            .arg("--conns")
            .arg(k.to_string())
            .arg("--source-ip")
            .arg(source.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| BenchError::io("spawn idle-client", e))?;
        clients.0.push(child);
    }
    let (mut open, mut failed) = (0u32, 0u32);
    for child in &mut clients.0 {
        let Some(stdout) = child.stdout.take() else {
            return Err(BenchError::Client("no stdout".into()));
        };
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| BenchError::io("read idle-client", e))?;
        let (ok, bad) = parse_ready_line(&line)
            .ok_or_else(|| BenchError::Client(format!("unexpected output {line:?}")))?;
        open += ok;
        failed += bad;
    }
    let open_s = started.elapsed().as_secs_f64();
    thread::sleep(settle);
    let after = MemSample::take(server.pid)?;
    drop(clients);
    let clean_exit = server.stop();
    let (rss, sockbuf, slab) = per_conn(&before, &after, open, procfs::page_size());
    Ok(IdleResult {
        target,
        conns_open: open,
        conns_failed: failed,
        client_procs: plan.len() as u32,
        open_s,
        before,
        after,
        rss_bytes_per_conn: rss,
        kernel_sockbuf_bytes_per_conn: sockbuf,
        kernel_slab_bytes_per_conn: slab,
        clean_exit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_over_processes_and_source_addresses() {
        let plan = split_clients(19_000, 5_000).unwrap();
        assert_eq!(plan.iter().map(|p| p.1).sum::<u32>(), 19_000);
        assert_eq!(plan.len(), 4);
        assert_eq!(plan[3], (Ipv4Addr::new(127, 0, 0, 5), 4_000));
        assert!(split_clients(10, 0).is_err());
        assert!(split_clients(10, IDLE_CONNS_PER_PROC_MAX + 1).is_err());
        assert!(split_clients(0, 10).unwrap().is_empty());
    }

    #[test]
    fn per_connection_deltas() {
        let before = MemSample {
            rss_kib: 1000,
            fds: 5,
            tcp_mem_pages: 10,
            slab_kib: 50_000,
        };
        let after = MemSample {
            rss_kib: 1000 + 2 * 1000, // 2 KiB per connection over 1000
            fds: 1005,
            tcp_mem_pages: 10 + 250,
            slab_kib: 40_000, // shrank: counted as zero
        };
        let (rss, sock, slab) = per_conn(&before, &after, 1000, 4096);
        assert_eq!(rss, 2048.0);
        assert_eq!(sock, 1024.0);
        assert_eq!(slab, 0.0);
        assert_eq!(per_conn(&before, &after, 0, 4096), (0.0, 0.0, 0.0));
    }
}
