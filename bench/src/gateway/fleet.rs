//! The client processes of one measurement: spawned from this executable as `gw-client`, each
//! with its share of the sessions and of the handshake concurrency and its own loopback source
//! address; commanded over their stdin, heard over their stdout (a reader thread per process
//! feeds one channel, so the harness waits on all of them with one timeout).

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::BenchError;
use crate::gateway::limits::{SESSIONS_PER_CLIENT_MAX, SOURCE_IP_FIRST_HOST, SOURCE_IPS_MAX};
use crate::gateway::target::GwTarget;
use crate::gateway::wire::{self, WorkerMsg};
use crate::procfs;

/// What the fleet should do.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// Protocol.
    pub target: GwTarget,
    /// Server address.
    pub addr: SocketAddr,
    /// Upgrade path.
    pub path: String,
    /// Tokens file (Hearth).
    pub tokens_file: Option<PathBuf>,
    /// Sessions in total.
    pub sessions: u32,
    /// Sessions per process at most.
    pub per_client: u32,
    /// Handshakes in flight over all processes.
    pub inflight: u32,
}

/// One process's share: (first session, sessions, source address, in-flight handshakes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Index of its first session (and token).
    pub first: u32,
    /// Its sessions.
    pub sessions: u32,
    /// Its loopback source address.
    pub source_ip: Ipv4Addr,
    /// Its handshakes in flight.
    pub inflight: u32,
}

/// Splits `sessions` over processes of at most `per_client`, each with its own source address
/// and an equal part (rounded up) of `inflight`.
pub fn plan(sessions: u32, per_client: u32, inflight: u32) -> Result<Vec<Share>, BenchError> {
    if per_client == 0 || per_client > SESSIONS_PER_CLIENT_MAX {
        return Err(BenchError::Invalid(format!(
            "--sessions-per-client must be 1..={SESSIONS_PER_CLIENT_MAX}"
        )));
    }
    if inflight == 0 {
        return Err(BenchError::Invalid("--inflight must be at least 1".into()));
    }
    let procs = sessions.div_ceil(per_client);
    if procs > u32::from(SOURCE_IPS_MAX) {
        return Err(BenchError::Invalid(format!(
            "{sessions} sessions need {procs} client processes, at most {SOURCE_IPS_MAX}"
        )));
    }
    let mut out = Vec::new();
    let mut first = 0;
    for i in 0..procs {
        let k = (sessions - first).min(per_client);
        out.push(Share {
            first,
            sessions: k,
            source_ip: Ipv4Addr::new(127, 0, 0, SOURCE_IP_FIRST_HOST + i as u8),
            inflight: inflight.div_ceil(procs).max(1),
        });
        first += k;
    }
    Ok(out)
}

type Line = (usize, Result<WorkerMsg, String>);

/// Running client processes; closing their stdin on drop makes them exit.
pub struct Fleet {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    rx: Receiver<Line>,
}

impl Fleet {
    /// Spawns the processes of `spec` (they inherit this process's core and nice value).
    pub fn spawn(spec: &FleetSpec) -> Result<Self, BenchError> {
        let exe = std::env::current_exe().map_err(|e| BenchError::io("current_exe", e))?;
        let shares = plan(spec.sessions, spec.per_client, spec.inflight)?;
        let (tx, rx) = mpsc::channel();
        let mut fleet = Fleet {
            children: Vec::new(),
            stdins: Vec::new(),
            rx,
        };
        for (i, share) in shares.iter().enumerate() {
            let mut cmd = Command::new(&exe);
            cmd.arg("gw-client")
                .args(["--target", spec.target.name()])
                .args(["--addr", &spec.addr.to_string()])
                .args(["--path", &spec.path])
                .args(["--first", &share.first.to_string()])
                .args(["--sessions", &share.sessions.to_string()])
                .args(["--source-ip", &share.source_ip.to_string()])
                .args(["--inflight", &share.inflight.to_string()])
                .args(["--seed", &(i as u64 + 1).to_string()]);
            if let Some(f) = &spec.tokens_file {
                cmd.arg("--tokens-file").arg(f);
            }
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| BenchError::io("spawn gw-client", e))?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| BenchError::Client("gw-client has no stdout".into()))?;
            fleet.stdins.push(child.stdin.take());
            fleet.children.push(child);
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let msg = match line {
                        Ok(l) => serde_json::from_str::<WorkerMsg>(&l)
                            .map_err(|e| format!("bad line {l:?}: {e}")),
                        Err(e) => Err(e.to_string()),
                    };
                    if tx.send((i, msg)).is_err() {
                        return;
                    }
                }
                let _ = tx.send((i, Err("exited".into())));
            });
        }
        Ok(fleet)
    }

    /// Client processes.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Sends `cmd` to every process.
    pub fn send(&mut self, cmd: wire::Command) -> Result<(), BenchError> {
        let line = wire::command_line(cmd);
        for stdin in self.stdins.iter_mut().flatten() {
            writeln!(stdin, "{line}")
                .and_then(|()| stdin.flush())
                .map_err(|e| BenchError::io("command a client process", e))?;
        }
        Ok(())
    }

    /// Waits up to `timeout` for one message that `pick` accepts from each process. `None` for
    /// a process that did not answer in time; an error if one failed or exited.
    pub fn collect<T>(
        &mut self,
        timeout: Duration,
        pick: impl Fn(WorkerMsg) -> Option<T>,
    ) -> Result<Vec<Option<T>>, BenchError> {
        let deadline = Instant::now() + timeout;
        let mut got: Vec<Option<T>> = (0..self.children.len()).map(|_| None).collect();
        while got.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((i, Ok(WorkerMsg::Error { message }))) => {
                    return Err(BenchError::Client(format!("client {i}: {message}")));
                }
                Ok((i, Ok(msg))) => {
                    if let (Some(v), Some(slot)) = (pick(msg), got.get_mut(i)) {
                        *slot = Some(v);
                    }
                }
                Ok((i, Err(e))) => return Err(BenchError::Client(format!("client {i}: {e}"))),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(BenchError::Client("client processes gone".into()));
                }
            }
        }
        Ok(got)
    }

    /// Like [`Fleet::collect`], but a process that does not answer in time is an error.
    pub fn collect_all<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        pick: impl Fn(WorkerMsg) -> Option<T>,
    ) -> Result<Vec<T>, BenchError> {
        self.collect(timeout, pick)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                v.ok_or_else(|| {
                    BenchError::Client(format!(
                        "client {i}: no {what} within {} s",
                        timeout.as_secs()
                    ))
                })
            })
            .collect()
    }

    /// CPU used so far by the client processes, ns.
    pub fn cpu_ns(&self) -> u64 {
        self.children
            .iter()
            .filter_map(|c| procfs::read_process_cpu(c.id()).ok())
            .map(|s| s.ns)
            .sum()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // EOF on stdin is the clients' signal to close their sessions and exit.
        for stdin in &mut self.stdins {
            drop(stdin.take());
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_spreads_sessions_addresses_and_inflight() {
        let p = plan(19_000, 10_000, 256).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0],
            Share {
                first: 0,
                sessions: 10_000,
                source_ip: Ipv4Addr::new(127, 0, 0, 2),
                inflight: 128
            }
        );
        assert_eq!(p[1].first, 10_000);
        assert_eq!(p[1].sessions, 9_000);
        assert_eq!(p[1].source_ip, Ipv4Addr::new(127, 0, 0, 3));
        assert_eq!(plan(5_000, 10_000, 256).unwrap().len(), 1);
        assert_eq!(plan(10, 3, 1).unwrap()[3].sessions, 1);
        assert!(plan(0, 10, 1).unwrap().is_empty());
        assert!(plan(10, 0, 1).is_err());
        assert!(plan(10, SESSIONS_PER_CLIENT_MAX + 1, 1).is_err());
        assert!(plan(10, 1, 0).is_err());
        assert!(plan(1_000, 1, 1).is_err());
    }
}
