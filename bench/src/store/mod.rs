//! The store benchmark (issue 4): Hearth's msgstore against RocksDB 7.8.3 on the same workload,
//! the same durability (every acknowledged append is fdatasync'd, appends grouped per commit)
//! and the same value sizes, on one core.
//!
//! Phases, per store, in one process (`store-bench`):
//! 1. **Appends**: `concurrency` appends outstanding at once until `messages` are durable.
//!    Hearth: one shard loop (the calling thread) keeps `concurrency` logical clients busy; each
//!    acknowledgement immediately issues that client's next append, every append of a loop turn
//!    goes out as one group (one durable write: write + fdatasync on the log I/O thread),
//!    acknowledged after it ([`hearth`]).
//!    RocksDB: `concurrency` writer threads, each a closed loop of `Put` with `sync = true`, so
//!    RocksDB's own group commit (a leader writes and syncs the WAL for the whole group) forms
//!    ([`rocks`]). Everything (store thread, I/O threads, writer threads, background threads) is
//!    pinned to `core`. Latency is per append, from the call to its acknowledgement.
//! 2. **Compaction**: flush and compact everything; space amplification = bytes allocated on
//!    disk / logical bytes (keys + values appended).
//! 3. **Hot reads**: latest-50 of random channels after a warm-up pass (block cache and page
//!    cache warm), then paging through whole histories with `before`, 50 per page.
//! 4. **Cold reads**: close, drop the page cache (`/proc/sys/vm/drop_caches`, root), reopen;
//!    latest-50 once per channel never read since, and paging through other channels.
//!
//! Results are checked: every page walk must return exactly the messages the workload put in the
//! channel, every latest-50 the channel's newest.

pub mod device;
pub mod exec;
pub mod hearth;
pub mod limits;
pub mod report;
#[cfg(feature = "rocksdb")]
pub mod rocks;
#[cfg(feature = "rocksdb")]
mod rocks_ffi;
pub mod trace;
pub mod workload;

use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::BenchError;
use crate::latency::LatencySummary;
use crate::limits::{LATENCY_MAX_NS, LATENCY_SIGFIGS};
use workload::{Workload, mix};

/// What a run was asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct StoreParams {
    /// Messages appended to each store.
    pub messages: u64,
    /// Channels they are spread over.
    pub channels: u64,
    /// Days of history the message ids span.
    pub history_days: u64,
    /// Appends outstanding at once (Hearth logical clients = RocksDB writer threads).
    pub concurrency: usize,
    /// Offered rates (appends/s) of the fixed-rate phases, run after the max-throughput phase,
    /// the same for every store.
    pub rates: Vec<u64>,
    /// Length of one fixed-rate phase, seconds (it appends `rate × rate_phase_s` messages).
    pub rate_phase_s: f64,
    /// Messages of the max-throughput (closed-loop) phase: the ones the rate phases leave.
    pub max_phase_messages: u64,
    /// Memtable size of both stores, MiB.
    pub memtable_mib: usize,
    /// Block cache of both stores, MiB.
    pub cache_mib: usize,
    /// Hearth's blocking I/O threads.
    pub io_threads: usize,
    /// Latest-50 queries measured hot.
    pub hot_queries: usize,
    /// Channels paged through (hot, and other ones cold).
    pub paging_channels: usize,
    /// Channels queried once after the cold reopen.
    pub cold_queries: usize,
    /// Core everything runs on.
    pub core: usize,
    /// Workload seed.
    pub seed: u64,
    /// Where the stores' directories are made.
    pub data_dir: PathBuf,
    /// Stores measured, in order.
    pub engines: Vec<String>,
    /// Nice value of the run.
    pub nice: i32,
    /// Bytes of keys and values appended (20-byte key + msgstore-encoded value per message).
    pub logical_bytes: u64,
    /// Mean value size, bytes.
    pub value_bytes_mean: f64,
}

/// A page walk through several channels' histories.
#[derive(Debug, Clone, Serialize)]
pub struct PagingResult {
    /// Channels walked.
    pub channels: usize,
    /// Pages read (each up to 50 messages).
    pub pages: u64,
    /// Messages returned.
    pub messages: u64,
    /// Wall time of the walk, seconds.
    pub seconds: f64,
    /// Messages per second over the walk.
    pub messages_per_s: f64,
    /// Latency of one page.
    pub page_latency: LatencySummary,
}

/// Everything measured for one store.
#[derive(Debug, Clone, Serialize)]
pub struct EngineResult {
    /// `hearth` or `rocksdb`.
    pub engine: String,
    /// How it was set up (threads, options).
    pub setup: String,
    /// Threads that took appends concurrently (1 for Hearth's shard loop).
    pub writer_threads: usize,
    /// Durable appends.
    pub appends: u64,
    /// Appends that failed.
    pub append_errors: u64,
    /// Wall time of the append phase, seconds.
    pub append_s: f64,
    /// Durable appends per second.
    pub appends_per_s: f64,
    /// Process CPU time (user + system, all threads) during appends, seconds.
    pub append_cpu_s: f64,
    /// CPU per durable append, µs.
    pub cpu_us_per_append: f64,
    /// Fixed-rate phases, in the order run (after the max-throughput phase).
    pub rate_phases: Vec<RatePhase>,
    /// Commit groups (fdatasyncs of the log) during appends, where known.
    pub commit_groups: Option<u64>,
    /// Threads of the process not pinned to the core at the end of the append phase.
    pub threads_off_core: usize,
    /// Append latency, call to durable acknowledgement.
    pub append_latency: LatencySummary,
    /// Flush + full compaction, seconds.
    pub compaction_s: f64,
    /// Sorted files after compaction.
    pub files_after_compaction: u64,
    /// Bytes allocated on disk by the store's directory after compaction.
    pub bytes_on_disk: u64,
    /// Of which sorted (table) files.
    pub table_bytes_on_disk: u64,
    /// Keys + values appended.
    pub logical_bytes: u64,
    /// bytes_on_disk / logical_bytes.
    pub space_amp: f64,
    /// table_bytes_on_disk / logical_bytes.
    pub table_space_amp: f64,
    /// Latest-50, block cache and page cache warm.
    pub latest_hot: LatencySummary,
    /// Page walk after the hot queries.
    pub paging_hot: PagingResult,
    /// Close + reopen after dropping the page cache, ms.
    pub reopen_ms: f64,
    /// Whether the page cache was dropped before the cold phase (needs root).
    pub caches_dropped: bool,
    /// Latest-50, first touch of each channel after the cold reopen.
    pub latest_cold: LatencySummary,
    /// Page walk of other channels after the cold reopen.
    pub paging_cold: PagingResult,
    /// Results that disagreed with the workload (must be 0).
    pub check_failures: u64,
}

/// One fixed-rate (open-loop) append phase.
///
/// Append `k` of the phase is due at `start + k / rate`; its latency counts from that due time,
/// not from when the harness got to issue it (coordinated omission accounted for, as the
/// pingpong client does), so a store that falls behind pays for every append it delayed.
#[derive(Debug, Clone, Serialize)]
pub struct RatePhase {
    /// Offered rate, appends/s.
    pub offered_per_s: u64,
    /// Appends issued (`offered × rate_phase_s`).
    pub appends: u64,
    /// Appends that failed.
    pub errors: u64,
    /// Wall time until the last acknowledgement, seconds.
    pub seconds: f64,
    /// Durable appends per second over the phase.
    pub achieved_per_s: f64,
    /// The store kept up: achieved at least `RATE_SUSTAINED_FRACTION` of the offered rate.
    pub sustained: bool,
    /// Commit groups (log fdatasyncs) in the phase, where known.
    pub commit_groups: Option<u64>,
    /// Latency from each append's due time to its durable acknowledgement.
    pub latency: LatencySummary,
}

impl RatePhase {
    /// The phase's figures from its counts, wall time and latency histogram.
    pub fn new(
        offered_per_s: u64,
        appends: u64,
        errors: u64,
        seconds: f64,
        commit_groups: Option<u64>,
        h: &Histogram<u64>,
    ) -> Self {
        let achieved_per_s = (appends - errors.min(appends)) as f64 / seconds.max(1e-9);
        RatePhase {
            offered_per_s,
            appends,
            errors,
            seconds,
            achieved_per_s,
            sustained: achieved_per_s >= offered_per_s as f64 * limits::RATE_SUSTAINED_FRACTION,
            commit_groups,
            latency: LatencySummary::from_ns(h),
        }
    }
}

/// Where each append phase's messages come from: the max-throughput phase takes the first
/// `max_phase_messages`, then each rate phase the next `rate × rate_phase_s`.
pub fn phase_ranges(p: &StoreParams) -> (std::ops::Range<u64>, Vec<(u64, std::ops::Range<u64>)>) {
    let mut from = p.max_phase_messages.min(p.messages);
    let max = 0..from;
    let mut phases = Vec::new();
    for &rate in &p.rates {
        let n = rate_phase_messages(rate, p.rate_phase_s);
        let to = (from + n).min(p.messages);
        phases.push((rate, from..to));
        from = to;
    }
    (max, phases)
}

/// Messages one rate phase appends.
pub fn rate_phase_messages(rate: u64, seconds: f64) -> u64 {
    (rate as f64 * seconds).round() as u64
}

/// Lowers this thread's timer slack to 1 ns, so sleeps until a due time wake on time (the
/// default 50 µs slack would show up as harness lateness in the fixed-rate latencies). Both
/// stores' issuing threads get it.
pub fn tight_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer and touches no memory.
    let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

/// A store that could not be measured.
#[derive(Debug, Clone, Serialize)]
pub struct StoreFailure {
    /// Which store.
    pub engine: String,
    /// Why.
    pub error: String,
}

/// One run: parameters, per-store results, failures, notes.
#[derive(Debug, Clone, Serialize)]
pub struct StoreRun {
    /// Parameters.
    pub params: StoreParams,
    /// The disk's own latency for one durable 4 KiB write, measured before the stores.
    pub device: Vec<device::DeviceProbe>,
    /// Results per store.
    pub results: Vec<EngineResult>,
    /// Stores not measured.
    pub failures: Vec<StoreFailure>,
    /// Caveats recorded by the run (machine load, RocksDB build).
    pub notes: Vec<String>,
}

/// Channels each read phase uses, drawn once so both stores read the same ones.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    /// Channel index of each hot latest-50 query.
    pub hot: Vec<u64>,
    /// Channels paged through hot.
    pub hot_paging: Vec<u64>,
    /// Channels read once, cold.
    pub cold: Vec<u64>,
    /// Channels paged through cold (none of them read since the reopen).
    pub cold_paging: Vec<u64>,
}

impl ReadPlan {
    /// The plan for `params`.
    pub fn new(p: &StoreParams) -> Self {
        let mut order: Vec<u64> = (0..p.channels).collect();
        // Fisher-Yates with the hash as the random source.
        for i in (1..order.len()).rev() {
            let j = (mix(p.seed ^ (i as u64) << 1) % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let cold_n = p.cold_queries.min(order.len() / 2);
        let page_n = p.paging_channels.min((order.len() - cold_n) / 2);
        let cold = order.get(..cold_n).unwrap_or_default().to_vec();
        let cold_paging = order
            .get(cold_n..cold_n + page_n)
            .unwrap_or_default()
            .to_vec();
        let hot_paging = order
            .get(cold_n + page_n..cold_n + 2 * page_n)
            .unwrap_or_default()
            .to_vec();
        let hot = (0..p.hot_queries as u64)
            .map(|q| mix(p.seed.rotate_left(29) ^ q) % p.channels.max(1))
            .collect();
        ReadPlan {
            hot,
            hot_paging,
            cold,
            cold_paging,
        }
    }
}

/// A latency histogram in nanoseconds with the harness's bounds.
pub fn histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, LATENCY_SIGFIGS)
        .map_err(|e| BenchError::Invalid(format!("histogram: {e}")))
}

/// Records `ns` (saturating at the histogram's top).
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns.clamp(1, LATENCY_MAX_NS));
}

/// Bytes of a directory's files: (apparent, allocated, allocated by table files `*.sst`).
pub fn dir_usage(dir: &Path) -> Result<(u64, u64, u64), BenchError> {
    use std::os::unix::fs::MetadataExt;
    let (mut apparent, mut allocated, mut tables) = (0, 0, 0);
    let rd =
        std::fs::read_dir(dir).map_err(|e| BenchError::io(format!("list {}", dir.display()), e))?;
    for e in rd {
        let e = e.map_err(|e| BenchError::io("list entry", e))?;
        let md = e.metadata().map_err(|e| BenchError::io("stat", e))?;
        if !md.is_file() {
            continue;
        }
        apparent += md.len();
        allocated += md.blocks() * 512;
        if e.file_name().to_string_lossy().ends_with(".sst") {
            tables += md.blocks() * 512;
        }
    }
    Ok((apparent, allocated, tables))
}

/// Writes dirty pages back and drops the page cache; false without permission.
pub fn drop_caches() -> bool {
    // SAFETY: sync has no arguments.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// CPU time of the whole process (user + system, every thread), seconds.
pub fn process_cpu_s() -> f64 {
    // SAFETY: rusage is plain data; zeroed is valid and getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid out-parameter for the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Threads of this process whose allowed CPUs are not exactly `core`.
pub fn threads_off_core(core: usize) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let want = core.to_string();
    tasks
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("status"))
                .ok()
                .and_then(|s| {
                    s.lines().find_map(|l| {
                        l.strip_prefix("Cpus_allowed_list:")
                            .map(|v| v.trim() != want)
                    })
                })
                .unwrap_or(false)
        })
        .count()
}

/// `ioprio_set` "who": one thread (a tid; 0 is the calling thread).
const IOPRIO_WHO_PROCESS: libc::c_long = 1;
/// I/O class "real time" shifted into place (`IOPRIO_CLASS_RT << IOPRIO_CLASS_SHIFT`), level 0.
const IOPRIO_RT_LEVEL0: libc::c_long = 1 << 13;

/// Gives the calling thread the real-time I/O class, so the block layer (mq-deadline here)
/// dispatches its requests ahead of background flush and compaction I/O. Both stores get it
/// on the threads that write their log: Hearth's log I/O thread, RocksDB's writer threads (the
/// group leader among them writes and syncs the WAL). Needs root; false if refused.
pub fn prioritise_log_io() -> bool {
    // SAFETY: ioprio_set takes three integers and touches no memory.
    unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0,
            IOPRIO_RT_LEVEL0,
        ) == 0
    }
}

/// Empties (or creates) a store directory.
pub fn fresh_dir(dir: &Path) -> Result<(), BenchError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| BenchError::io(format!("clear {}", dir.display()), e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| BenchError::io(format!("create {}", dir.display()), e))
}

/// Summary of a page walk.
pub fn paging_result(
    channels: usize,
    pages: u64,
    messages: u64,
    seconds: f64,
    h: &Histogram<u64>,
) -> PagingResult {
    PagingResult {
        channels,
        pages,
        messages,
        seconds,
        messages_per_s: if seconds > 0.0 {
            messages as f64 / seconds
        } else {
            0.0
        },
        page_latency: LatencySummary::from_ns(h),
    }
}

/// Logical bytes and mean value size of a workload (keys + msgstore-encoded values).
pub fn logical_size(w: &Workload) -> (u64, f64) {
    let mut total = 0u64;
    let mut buf = Vec::new();
    for i in 0..w.messages {
        workload::value(w.message(i), &mut buf);
        total += (workload::KEY_BYTES + buf.len()) as u64;
    }
    let mean = if w.messages > 0 {
        (total - w.messages * workload::KEY_BYTES as u64) as f64 / w.messages as f64
    } else {
        0.0
    };
    (total, mean)
}
