//! `store-bench`: Hearth's msgstore against RocksDB on the same message workload (issue 4).
//! See `bench/src/store/mod.rs` for what is measured and `bench/README.md` for how to run it.

use std::path::PathBuf;
use std::process::ExitCode;

use bench::machine::RunMeta;
use bench::store::limits::{
    CACHE_MIB_DEFAULT, CHANNELS_DEFAULT, COLD_QUERIES_DEFAULT, CONCURRENCY_DEFAULT,
    CONCURRENCY_MAX, HISTORY_DAYS_DEFAULT, HOT_QUERIES_DEFAULT, IO_THREADS_DEFAULT, IO_THREADS_MAX,
    MAX_PHASE_MESSAGES_MIN, MEMTABLE_MIB_DEFAULT, MESSAGES_DEFAULT, MESSAGES_MAX,
    PAGING_CHANNELS_DEFAULT, RATE_PHASE_S_DEFAULT, RATES_DEFAULT,
};
use bench::store::workload::Workload;
use bench::store::{
    EngineResult, ReadPlan, StoreFailure, StoreParams, StoreRun, drop_caches, logical_size,
};
use bench::sys::{pin_to_core, prioritise_tree};
use bench::{BenchError, store};
use clap::Parser;

/// Hearth's message store against RocksDB: durable appends, reads, space.
#[derive(Debug, Parser)]
#[command(name = "store-bench", version, about)]
struct Args {
    /// Messages appended to each store.
    #[arg(long, default_value_t = MESSAGES_DEFAULT)]
    messages: u64,
    /// Channels the messages are spread over.
    #[arg(long, default_value_t = CHANNELS_DEFAULT)]
    channels: u64,
    /// Days of history the message ids span.
    #[arg(long, default_value_t = HISTORY_DAYS_DEFAULT)]
    history_days: u64,
    /// Appends outstanding at once (Hearth: logical clients; RocksDB: writer threads).
    #[arg(long, default_value_t = CONCURRENCY_DEFAULT)]
    concurrency: usize,
    /// Offered rates (appends/s) of the fixed-rate phases after the max-throughput phase, the
    /// same for every store; empty for none.
    #[arg(long, value_delimiter = ',', default_value = RATES_DEFAULT)]
    rates: Vec<u64>,
    /// Length of each fixed-rate phase, seconds.
    #[arg(long, default_value_t = RATE_PHASE_S_DEFAULT)]
    rate_phase_s: f64,
    /// Memtable size of both stores, MiB.
    #[arg(long, default_value_t = MEMTABLE_MIB_DEFAULT)]
    memtable_mib: usize,
    /// Block cache of both stores, MiB.
    #[arg(long, default_value_t = CACHE_MIB_DEFAULT)]
    cache_mib: usize,
    /// Hearth's blocking I/O threads (pinned to the same core).
    #[arg(long, default_value_t = IO_THREADS_DEFAULT)]
    io_threads: usize,
    /// Latest-50 queries measured hot.
    #[arg(long, default_value_t = HOT_QUERIES_DEFAULT)]
    hot_queries: usize,
    /// Channels paged through hot (and as many others cold).
    #[arg(long, default_value_t = PAGING_CHANNELS_DEFAULT)]
    paging_channels: usize,
    /// Channels read once after the cold reopen.
    #[arg(long, default_value_t = COLD_QUERIES_DEFAULT)]
    cold_queries: usize,
    /// Core every thread of the stores runs on.
    #[arg(long, default_value_t = 0)]
    core: usize,
    /// Workload seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Parent of the stores' directories (wiped per store).
    #[arg(long, default_value = "/var/tmp/hearth-store-bench")]
    data_dir: PathBuf,
    /// Where the result folder is written.
    #[arg(long, default_value = "bench/results")]
    out_dir: PathBuf,
    /// Stores to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "hearth,rocksdb")]
    engines: Vec<String>,
    /// Nice value (negative needs root; -19 on a machine shared with builds).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    nice: i32,
    /// A note to record in the report (repeatable).
    #[arg(long)]
    note: Vec<String>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(dir) => {
            println!("{}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("store-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Processes named `rustc` running now: builds compete with the run for the two cores.
fn rustc_count() -> usize {
    std::fs::read_dir("/proc").map_or(0, |rd| {
        rd.filter_map(Result::ok)
            .filter(|e| {
                std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "rustc")
            })
            .count()
    })
}

fn run_engine(
    engine: &str,
    p: &StoreParams,
    w: &Workload,
    plan: &ReadPlan,
) -> Result<EngineResult, BenchError> {
    match engine {
        "hearth" => store::hearth::run(p, w, plan),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => store::rocks::run(p, w, plan),
        #[cfg(not(feature = "rocksdb"))]
        "rocksdb" => Err(BenchError::Invalid(
            "built without the `rocksdb` feature (needs librocksdb-dev); see bench/run-store.sh"
                .into(),
        )),
        other => Err(BenchError::Invalid(format!("unknown store {other}"))),
    }
}

fn run(a: Args) -> Result<PathBuf, BenchError> {
    if a.messages == 0 || a.messages > MESSAGES_MAX {
        return Err(BenchError::Invalid(format!(
            "--messages must be 1..={MESSAGES_MAX}"
        )));
    }
    if a.concurrency == 0 || a.concurrency > CONCURRENCY_MAX {
        return Err(BenchError::Invalid(format!(
            "--concurrency must be 1..={CONCURRENCY_MAX}"
        )));
    }
    if a.io_threads == 0 || a.io_threads > IO_THREADS_MAX {
        return Err(BenchError::Invalid(format!(
            "--io-threads must be 1..={IO_THREADS_MAX}"
        )));
    }
    if !(a.rate_phase_s > 0.0 && a.rate_phase_s <= 3600.0) || a.rates.contains(&0) {
        return Err(BenchError::Invalid(
            "--rates must be positive and --rate-phase-s within 0..=3600".into(),
        ));
    }
    let rate_messages: u64 = a
        .rates
        .iter()
        .map(|&r| store::rate_phase_messages(r, a.rate_phase_s))
        .sum();
    if rate_messages + MAX_PHASE_MESSAGES_MIN > a.messages {
        return Err(BenchError::Invalid(format!(
            "the rate phases take {rate_messages} messages: --messages must leave at least \
             {MAX_PHASE_MESSAGES_MIN} for the max-throughput phase"
        )));
    }
    let meta = RunMeta::collect();
    let mut notes = a.note.clone();
    let builds = rustc_count();
    if builds > 0 {
        notes.push(format!(
            "{builds} rustc processes were running when the run started (the 2 vCPUs are shared \
             with other engineers' builds); nice {}",
            a.nice
        ));
    }
    if a.nice != 0 {
        prioritise_tree(a.nice).map_err(|e| BenchError::io("set nice", e))?;
    }
    // Every thread either store starts inherits this affinity.
    pin_to_core(0, a.core).map_err(|e| BenchError::io("pin to core", e))?;
    let w = Workload::new(a.messages, a.channels, a.history_days, a.seed);
    let (logical_bytes, value_bytes_mean) = logical_size(&w);
    let p = StoreParams {
        messages: a.messages,
        channels: a.channels,
        history_days: a.history_days,
        concurrency: a.concurrency,
        rates: a.rates.clone(),
        rate_phase_s: a.rate_phase_s,
        max_phase_messages: a.messages - rate_messages,
        memtable_mib: a.memtable_mib,
        cache_mib: a.cache_mib,
        io_threads: a.io_threads,
        hot_queries: a.hot_queries,
        paging_channels: a.paging_channels,
        cold_queries: a.cold_queries,
        core: a.core,
        seed: a.seed,
        data_dir: a.data_dir.clone(),
        engines: a.engines.clone(),
        nice: a.nice,
        logical_bytes,
        value_bytes_mean,
    };
    let plan = ReadPlan::new(&p);
    if p.engines.iter().any(|e| e == "rocksdb") {
        notes.push(
            "RocksDB is Debian's librocksdb 7.8.3, built with assertions enabled: its CPU \
             figures include assertion checks a release build would not run."
                .into(),
        );
    }
    eprintln!("store-bench: device probe ...");
    let device = store::device::probe(&p.data_dir)?;
    for d in &device {
        eprintln!(
            "store-bench: device {}: p50 {:.3} ms, p99 {:.3} ms",
            d.method,
            d.latency.p50_us / 1000.0,
            d.latency.p99_us / 1000.0
        );
    }
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for engine in &p.engines {
        // Each store starts from a cold page cache.
        if !drop_caches() {
            notes.push("could not drop the page cache (not root): cold reads are warm".into());
        }
        eprintln!("store-bench: {engine} ...");
        match run_engine(engine, &p, &w, &plan) {
            Ok(r) => {
                eprintln!(
                    "store-bench: {engine}: {:.0} appends/s, append p99 {:.3} ms, latest-50 hot \
                     p99 {:.3} ms",
                    r.appends_per_s,
                    r.append_latency.p99_us / 1000.0,
                    r.latest_hot.p99_us / 1000.0
                );
                results.push(r);
            }
            Err(e) => failures.push(StoreFailure {
                engine: engine.clone(),
                error: e.to_string(),
            }),
        }
        let _ = std::fs::remove_dir_all(p.data_dir.join(engine));
    }
    notes.dedup();
    let run = StoreRun {
        params: p,
        device,
        results,
        failures,
        notes,
    };
    store::report::write_store(&a.out_dir, &meta, &run)
}
