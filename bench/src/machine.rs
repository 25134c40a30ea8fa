//! What every result is stamped with: the machine, the source revision, the command and the date.

use std::fs;
use std::process::Command;

use serde::Serialize;

use crate::utc::UtcTime;

/// The machine a run happened on.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Machine {
    /// Host name.
    pub hostname: String,
    /// Logical CPUs available to this process.
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Kernel release and version.
    pub kernel: String,
    /// Total memory, KiB.
    pub mem_total_kib: u64,
    /// `/proc/loadavg` when the run started: other work on the machine skews every figure.
    pub loadavg: String,
}

/// Source revision of the tree the binaries were built from.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GitInfo {
    /// `git rev-parse HEAD`, or `unknown`.
    pub commit: String,
    /// Whether tracked files differ from the commit (`git status --porcelain --untracked-files=no`).
    pub dirty: bool,
}

/// The stamp every report carries.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RunMeta {
    /// Where.
    pub machine: Machine,
    /// Which source.
    pub git: GitInfo,
    /// The exact command line, shell-quoted.
    pub command_line: String,
    /// When the run started, ISO 8601 UTC.
    pub date_utc: String,
    /// The same instant in file-name form.
    pub stamp: String,
}

impl RunMeta {
    /// Collects the stamp for a run starting now.
    pub fn collect() -> Self {
        let now = UtcTime::now();
        RunMeta {
            machine: Machine::collect(),
            git: GitInfo::collect(),
            command_line: command_line(std::env::args()),
            date_utc: now.iso(),
            stamp: now.compact(),
        }
    }

    /// One line for plots and tables.
    pub fn one_line(&self) -> String {
        format!(
            "{} | {} | {} vCPU | {} | {} MiB | load {} | git {}{} | {}",
            self.date_utc,
            self.machine.hostname,
            self.machine.nproc,
            self.machine.cpu_model,
            self.machine.mem_total_kib / 1024,
            self.machine
                .loadavg
                .split(' ')
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            short(&self.git.commit),
            if self.git.dirty { "+dirty" } else { "" },
            self.machine.kernel,
        )
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

impl Machine {
    /// Reads /proc and uname.
    pub fn collect() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let read = |p: &str| fs::read_to_string(p).map(|s| s.trim().to_owned());
        let kernel = match (
            read("/proc/sys/kernel/osrelease"),
            read("/proc/sys/kernel/version"),
        ) {
            (Ok(r), Ok(v)) => format!("Linux {r} {v}"),
            (Ok(r), Err(_)) => format!("Linux {r}"),
            _ => "unknown".into(),
        };
        let mem_total_kib = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| crate::procfs::parse_kib_field(&t, "MemTotal").ok())
            .unwrap_or(0);
        Machine {
            hostname: read("/proc/sys/kernel/hostname").unwrap_or_else(|_| "unknown".into()),
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            kernel,
            mem_total_kib,
            loadavg: read("/proc/loadavg").unwrap_or_default(),
        }
    }
}

impl GitInfo {
    /// Asks git about the source tree this crate was built from.
    pub fn collect() -> Self {
        let dir = env!("CARGO_MANIFEST_DIR");
        let run = |args: &[&str]| {
            Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        GitInfo {
            commit: run(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into()),
            dirty: run(&["status", "--porcelain", "--untracked-files=no"])
                .is_none_or(|s| !s.is_empty()),
        }
    }
}

/// Joins arguments into a line a shell would split back the same way.
pub fn command_line(args: impl IntoIterator<Item = String>) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c);
    args.into_iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(safe) {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_quotes_only_what_needs_it() {
        let args = [
            "hearth-bench",
            "pingpong",
            "--targets",
            "hearth,monoio",
            "a b",
            "it's",
            "",
        ];
        assert_eq!(
            command_line(args.iter().map(|s| s.to_string())),
            r"hearth-bench pingpong --targets hearth,monoio 'a b' 'it'\''s' ''"
        );
    }

    #[test]
    fn machine_has_cpus_and_memory() {
        let m = Machine::collect();
        assert!(m.nproc >= 1);
        assert!(m.mem_total_kib > 0);
        assert!(m.kernel.starts_with("Linux"));
    }
}
