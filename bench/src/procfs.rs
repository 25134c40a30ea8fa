//! /proc readers: CPU time, resident memory, fd counts and kernel socket memory.
//!
//! Parsers take the file's text so they can be tested on captured samples; the `read_*`
//! functions do the file I/O.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::fs;

use crate::BenchError;

/// Where a CPU time figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuSource {
    /// Sum of `/proc/<pid>/task/*/schedstat` run times (nanosecond resolution).
    Schedstat,
    /// `/proc/<pid>/stat` utime + stime (clock-tick resolution, usually 10 ms).
    StatTicks,
}

/// CPU time a process has used so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSample {
    /// Nanoseconds on CPU, all threads.
    pub ns: u64,
    /// How it was measured.
    pub source: CpuSource,
}

fn parse_err(file: &str, detail: impl Into<String>) -> BenchError {
    BenchError::Parse {
        file: file.to_owned(),
        detail: detail.into(),
    }
}

/// First field of a `schedstat` file: time spent on the CPU, nanoseconds.
pub fn parse_schedstat(text: &str) -> Result<u64, BenchError> {
    text.split_ascii_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| parse_err("schedstat", "no run time field"))
}

/// utime + stime (clock ticks) from `/proc/<pid>/stat`. The command name may hold spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat_ticks(text: &str) -> Result<u64, BenchError> {
    let close = text
        .rfind(')')
        .ok_or_else(|| parse_err("stat", "no ')' after comm"))?;
    let rest = text.get(close + 1..).unwrap_or("");
    // After ')' come field 3 (state) onwards; utime is field 14 and stime field 15.
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let mut next = |name: &str| -> Result<u64, BenchError> {
        fields
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| parse_err("stat", format!("missing {name}")))
    };
    let utime = next("utime")?;
    let stime = next("stime")?;
    Ok(utime + stime)
}

/// A `Key:   123 kB` line from `/proc/<pid>/status` or `/proc/meminfo`, in KiB.
pub fn parse_kib_field(text: &str, key: &str) -> Result<u64, BenchError> {
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if k == key {
            return v
                .split_ascii_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| parse_err(key, format!("bad value {v:?}")));
        }
    }
    Err(parse_err(key, "field absent"))
}

/// The `mem` figure (pages) of the `TCP:` line of `/proc/net/sockstat`: memory held by TCP
/// socket buffers system-wide.
pub fn parse_sockstat_tcp_mem_pages(text: &str) -> Result<u64, BenchError> {
    let line = text
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .ok_or_else(|| parse_err("sockstat", "no TCP line"))?;
    let mut words = line.split_ascii_whitespace();
    while let Some(w) = words.next() {
        if w == "mem" {
            return words
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| parse_err("sockstat", "bad mem value"));
        }
    }
    Err(parse_err("sockstat", "no mem field"))
}

fn read(path: &str) -> Result<String, BenchError> {
    fs::read_to_string(path).map_err(|e| BenchError::io(format!("read {path}"), e))
}

/// CPU time of every thread of `pid`, from schedstat when the kernel has it.
pub fn read_process_cpu(pid: u32) -> Result<CpuSample, BenchError> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0u64;
    let mut seen = 0usize;
    if let Ok(tasks) = fs::read_dir(&dir) {
        for task in tasks.flatten() {
            let path = task.path().join("schedstat");
            // A thread may exit between listing and reading; it simply stops counting.
            if let Ok(text) = fs::read_to_string(&path) {
                total += parse_schedstat(&text)?;
                seen += 1;
            }
        }
    }
    if seen > 0 {
        return Ok(CpuSample {
            ns: total,
            source: CpuSource::Schedstat,
        });
    }
    let ticks = parse_stat_ticks(&read(&format!("/proc/{pid}/stat"))?)?;
    Ok(CpuSample {
        ns: ticks.saturating_mul(1_000_000_000 / clock_ticks_per_s()),
        source: CpuSource::StatTicks,
    })
}

fn clock_ticks_per_s() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// Resident set size of `pid`, KiB (user-space memory only).
pub fn read_rss_kib(pid: u32) -> Result<u64, BenchError> {
    parse_kib_field(&read(&format!("/proc/{pid}/status"))?, "VmRSS")
}

/// Number of open file descriptors of `pid`.
pub fn read_fd_count(pid: u32) -> Result<u64, BenchError> {
    let dir = format!("/proc/{pid}/fd");
    let entries = fs::read_dir(&dir).map_err(|e| BenchError::io(format!("list {dir}"), e))?;
    Ok(entries.count() as u64)
}

/// System-wide TCP socket buffer memory, pages.
pub fn read_tcp_mem_pages() -> Result<u64, BenchError> {
    parse_sockstat_tcp_mem_pages(&read("/proc/net/sockstat")?)
}

/// System-wide kernel slab memory, KiB (sockets, inodes, files: the rest of the kernel's share).
pub fn read_slab_kib() -> Result<u64, BenchError> {
    parse_kib_field(&read("/proc/meminfo")?, "Slab")
}

/// The page size in bytes.
pub fn page_size() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_first_field_is_run_time() {
        assert_eq!(parse_schedstat("123456789 2000 17\n").unwrap(), 123_456_789);
        assert!(parse_schedstat("").is_err());
        assert!(parse_schedstat("x 1 2").is_err());
    }

    #[test]
    fn stat_ticks_skip_a_comm_with_spaces_and_parens() {
        let text = "4242 (echo (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    37 5 0 0 20 0 3 0 12345 1000 200 18446744073709551615";
        assert_eq!(parse_stat_ticks(text).unwrap(), 42);
        assert!(parse_stat_ticks("4242 (x) S 1 2").is_err());
        assert!(parse_stat_ticks("no paren").is_err());
    }

    #[test]
    fn status_vmrss() {
        let text = "Name:\techo\nVmPeak:\t  9000 kB\nVmRSS:\t    4321 kB\nThreads:\t1\n";
        assert_eq!(parse_kib_field(text, "VmRSS").unwrap(), 4321);
        assert!(parse_kib_field(text, "VmSwap").is_err());
        assert!(parse_kib_field("VmRSS:\tlots kB\n", "VmRSS").is_err());
    }

    #[test]
    fn meminfo_slab() {
        let text =
            "MemTotal:       8000000 kB\nSlab:             123456 kB\nSReclaimable:      1 kB\n";
        assert_eq!(parse_kib_field(text, "Slab").unwrap(), 123_456);
    }

    #[test]
    fn sockstat_tcp_mem() {
        let text = "sockets: used 300\nTCP: inuse 20 orphan 0 tw 3 alloc 25 mem 17\n\
                    UDP: inuse 1 mem 2\n";
        assert_eq!(parse_sockstat_tcp_mem_pages(text).unwrap(), 17);
        assert!(parse_sockstat_tcp_mem_pages("UDP: inuse 1 mem 2\n").is_err());
        assert!(parse_sockstat_tcp_mem_pages("TCP: inuse 1\n").is_err());
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(read_rss_kib(pid).unwrap() > 0);
        assert!(read_fd_count(pid).unwrap() >= 3);
        read_process_cpu(pid).unwrap();
        read_tcp_mem_pages().unwrap();
    }
}
