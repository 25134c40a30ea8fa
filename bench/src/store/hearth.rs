//! Hearth's side of the store benchmark: msgstore driven by one shard-style loop on the calling
//! thread (pinned to the store core), its file operations carried out by [`PoolExec`].
//!
//! A loop turn is what the engine's shard does: take I/O completions (blocking only when
//! something is in flight and nothing else is runnable), hand them to the store, act on its
//! events (an acknowledgement lets that logical client append its next message), then end the
//! turn: `end_of_turn` seals every append of the turn into one group, and the turn's requests go
//! to the I/O threads. The store keeps one group in flight: its write, then its fdatasync.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Instant;

use msgstore::{
    Config, Event, FileHandle, FileOp, IoId, IoResult, Message, Query, QueryResult, Store,
    StoreError,
};

use super::exec::PoolExec;
use super::limits::{BLOCK_BYTES, PAGE_LIMIT, TURNS_MAX};
use super::workload::Workload;
use super::{
    EngineResult, ReadPlan, StoreParams, dir_usage, drop_caches, fresh_dir, histogram,
    paging_result, process_cpu_s, record, threads_off_core,
};
use crate::BenchError;
use crate::latency::LatencySummary;
use msgstore::limits::STEP_IO_BYTES_DEFAULT;

/// The store, its I/O threads and the loop state of one shard.
struct Shard {
    store: Store,
    exec: PoolExec,
    done: Receiver<(IoId, IoResult)>,
    in_flight: usize,
    events: VecDeque<Event>,
    next_query: u64,
    turns: u64,
    /// Handles of commit-log segments (opened under a `wal-` name).
    log_handles: HashSet<FileHandle>,
    log_syncs_seen: u64,
}

fn stuck(what: &str) -> BenchError {
    BenchError::Invalid(format!(
        "hearth: {what} did not finish within {TURNS_MAX} loop turns"
    ))
}

fn store_err(what: &str, e: &StoreError) -> BenchError {
    BenchError::Invalid(format!("hearth: {what}: {e}"))
}

impl Shard {
    /// Opens (recovers) the store in `dir` and waits for it to be ready.
    fn open(dir: &Path, config: Config, io_threads: usize) -> Result<Self, BenchError> {
        let (tx, rx): (Sender<(IoId, IoResult)>, _) = channel();
        let exec = PoolExec::start(dir, io_threads, &tx)
            .map_err(|e| BenchError::io("start hearth I/O threads", e))?;
        let mut s = Shard {
            store: Store::new(config),
            exec,
            done: rx,
            in_flight: 0,
            events: VecDeque::new(),
            next_query: 0,
            turns: 0,
            log_handles: HashSet::new(),
            log_syncs_seen: 0,
        };
        s.store.open();
        for _ in 0..TURNS_MAX {
            s.turn();
            while let Some(e) = s.events.pop_front() {
                match e {
                    Event::Opened { .. } => return Ok(s),
                    Event::Error(e) => return Err(store_err("open", &e)),
                    _ => {}
                }
            }
        }
        Err(stuck("open"))
    }

    /// End of a turn: seal the group and hand its write to the I/O threads at once, then run
    /// the store's background step (its CPU overlaps the group's write and fdatasync) and hand
    /// over what that step issued.
    fn submit(&mut self) -> Result<(), BenchError> {
        self.store.seal_group();
        self.forward()?;
        self.store.step_background();
        self.forward()
    }

    /// Hands every request the store has to the I/O threads.
    fn forward(&mut self) -> Result<(), BenchError> {
        while let Some(req) = self.store.poll_io() {
            match &req.op {
                FileOp::Open { handle, name, .. } if name.starts_with("wal-") => {
                    self.log_handles.insert(*handle);
                }
                FileOp::Fdatasync { handle } if self.log_handles.contains(handle) => {
                    self.log_syncs_seen += 1;
                }
                _ => {}
            }
            match self.exec.try_inline(req) {
                Ok((id, res)) => self.store.complete_io(id, res),
                Err(req) => {
                    if !self.exec.submit(req) {
                        return Err(BenchError::Invalid("hearth: I/O threads stopped".into()));
                    }
                    self.in_flight += 1;
                }
            }
        }
        Ok(())
    }

    /// Takes completions: waits for one first if `block` and something is in flight.
    fn take_completions(&mut self, block: bool) {
        if block && self.in_flight > 0 {
            match self.done.recv() {
                Ok((id, res)) => {
                    self.in_flight -= 1;
                    self.store.complete_io(id, res);
                }
                Err(_) => return,
            }
        }
        while let Ok((id, res)) = self.done.try_recv() {
            self.in_flight -= 1;
            self.store.complete_io(id, res);
        }
        while let Some(e) = self.store.poll_event() {
            self.events.push_back(e);
        }
    }

    /// One turn with no foreground work: submit, then wait for I/O if any is in flight.
    fn turn(&mut self) {
        self.turns += 1;
        if self.submit().is_err() {
            return;
        }
        self.take_completions(true);
    }

    /// Turns until the store is idle for a few turns in a row (background jobs start at turn
    /// ends, so one idle turn is not enough).
    fn settle(&mut self) -> Result<(), BenchError> {
        let mut idle = 0;
        for _ in 0..TURNS_MAX {
            self.turn();
            if self.in_flight == 0 && self.store.is_idle() {
                idle += 1;
                if idle >= 3 {
                    return Ok(());
                }
            } else {
                idle = 0;
            }
        }
        Err(stuck("settle"))
    }

    /// Runs one query to completion; returns its messages.
    fn query(&mut self, q: Query) -> Result<Vec<Message>, BenchError> {
        self.next_query += 1;
        let token = self.next_query;
        self.store
            .query(token, q)
            .map_err(|e| store_err("query", &e))?;
        for _ in 0..TURNS_MAX {
            while let Some(e) = self.store.poll_event() {
                self.events.push_back(e);
            }
            let found = self
                .events
                .iter()
                .position(|e| matches!(e, Event::QueryDone { token: t, .. } if *t == token));
            if let Some(Event::QueryDone { result, .. }) = found.and_then(|i| self.events.remove(i))
            {
                return match result {
                    Ok(QueryResult::Messages(m)) => Ok(m),
                    Ok(_) => Err(BenchError::Invalid(
                        "hearth: unexpected query result".into(),
                    )),
                    Err(e) => Err(store_err("query", &e)),
                };
            }
            self.turn();
        }
        Err(stuck("query"))
    }

    fn close(self) {
        let Shard { exec, .. } = self;
        exec.stop();
    }
}

fn config(p: &StoreParams) -> Config {
    Config {
        memtable_bytes: p.memtable_mib << 20,
        block_cache_bytes: p.cache_mib << 20,
        ..Config::default()
    }
}

/// Appends every message with `concurrency` outstanding; returns (latency, errors, groups).
fn appends(
    shard: &mut Shard,
    w: &Workload,
    concurrency: usize,
) -> Result<(LatencySummary, u64, u64), BenchError> {
    let mut hist = histogram()?;
    let n = w.messages;
    let mut started = vec![0u64; n as usize];
    let origin = Instant::now();
    let mut next = 0u64;
    let mut acked = 0u64;
    let mut errors = 0u64;
    let mut retry: VecDeque<u64> = VecDeque::new();
    let syncs_before = shard.log_syncs_seen;
    let now_ns = |o: &Instant| o.elapsed().as_nanos() as u64;
    // The logical clients' first appends.
    let mut want = concurrency.min(n as usize);
    for _ in 0..TURNS_MAX {
        // Clients whose previous append finished append again (and pushed-back ones retry).
        while want > 0 {
            let i = match retry.pop_front() {
                Some(i) => i,
                None if next < n => {
                    next += 1;
                    if let Some(s) = started.get_mut((next - 1) as usize) {
                        *s = now_ns(&origin);
                    }
                    next - 1
                }
                None => break,
            };
            match shard.store.append(i, w.message(i)) {
                Ok(()) => want -= 1,
                Err(StoreError::Backpressure) => {
                    retry.push_front(i);
                    break;
                }
                Err(e) => return Err(store_err("append", &e)),
            }
        }
        shard.turns += 1;
        shard.submit()?;
        shard.take_completions(true);
        while let Some(e) = shard.events.pop_front() {
            match e {
                Event::Acked { token } => {
                    let t0 = started.get(token as usize).copied().unwrap_or(0);
                    record(&mut hist, now_ns(&origin).saturating_sub(t0));
                    acked += 1;
                    want += 1;
                }
                Event::Failed { .. } => {
                    // Counted and not retried: the report shows it.
                    errors += 1;
                    want += 1;
                }
                _ => {}
            }
        }
        if acked + errors >= n {
            let groups = shard.log_syncs_seen - syncs_before;
            return Ok((LatencySummary::from_ns(&hist), errors, groups));
        }
    }
    Err(stuck("appends"))
}

/// Latest-50 of each channel in `channels`, timed; checks each answer against the workload.
fn latest(
    shard: &mut Shard,
    w: &Workload,
    channels: &[u64],
    failures: &mut u64,
) -> Result<LatencySummary, BenchError> {
    let mut hist = histogram()?;
    for &c in channels {
        let t = Instant::now();
        let msgs = shard.query(Query::Latest {
            channel_id: w.channel_id(c),
            limit: PAGE_LIMIT,
        })?;
        record(&mut hist, t.elapsed().as_nanos() as u64);
        let want_len = w.messages_in(c).min(PAGE_LIMIT as u64) as usize;
        if msgs.len() != want_len || msgs.first().map(|m| m.id) != w.newest_id(c) {
            *failures += 1;
        }
    }
    Ok(LatencySummary::from_ns(&hist))
}

/// Pages through each channel's whole history, 50 per page with `before`.
fn paging(
    shard: &mut Shard,
    w: &Workload,
    channels: &[u64],
    failures: &mut u64,
) -> Result<super::PagingResult, BenchError> {
    let mut hist = histogram()?;
    let (mut pages, mut total) = (0u64, 0u64);
    let t_all = Instant::now();
    for &c in channels {
        let channel_id = w.channel_id(c);
        let mut before: Option<u64> = None;
        let mut seen = 0u64;
        let mut last = u64::MAX;
        loop {
            let q = match before {
                None => Query::Latest {
                    channel_id,
                    limit: PAGE_LIMIT,
                },
                Some(b) => Query::Before {
                    channel_id,
                    before: b,
                    limit: PAGE_LIMIT,
                },
            };
            let t = Instant::now();
            let msgs = shard.query(q)?;
            record(&mut hist, t.elapsed().as_nanos() as u64);
            pages += 1;
            for m in &msgs {
                if m.id >= last {
                    *failures += 1;
                }
                last = m.id;
            }
            seen += msgs.len() as u64;
            match msgs.last() {
                Some(m) if msgs.len() == PAGE_LIMIT => before = Some(m.id),
                _ => break,
            }
        }
        if seen != w.messages_in(c) {
            *failures += 1;
        }
        total += seen;
    }
    Ok(paging_result(
        channels.len(),
        pages,
        total,
        t_all.elapsed().as_secs_f64(),
        &hist,
    ))
}

/// Runs every phase on Hearth in `<data_dir>/hearth`.
pub fn run(p: &StoreParams, w: &Workload, plan: &ReadPlan) -> Result<EngineResult, BenchError> {
    let dir = p.data_dir.join("hearth");
    fresh_dir(&dir)?;
    let mut failures = 0u64;
    let mut shard = Shard::open(&dir, config(p), p.io_threads)?;

    let cpu0 = process_cpu_s();
    let t = Instant::now();
    let (append_latency, append_errors, groups) = appends(&mut shard, w, p.concurrency)?;
    let append_s = t.elapsed().as_secs_f64();
    let append_cpu_s = process_cpu_s() - cpu0;
    let off_core = threads_off_core(p.core);
    let durable = w.messages - append_errors;

    let t = Instant::now();
    shard.store.flush();
    shard.settle()?;
    let compaction_s = t.elapsed().as_secs_f64();
    let files = shard.store.live_files().len() as u64;
    let (_, on_disk, tables) = dir_usage(&dir)?;

    // Hot: one warm-up pass over every channel, then the measured random queries.
    let all: Vec<u64> = (0..w.channels).collect();
    latest(&mut shard, w, &all, &mut failures)?;
    let latest_hot = latest(&mut shard, w, &plan.hot, &mut failures)?;
    let paging_hot = paging(&mut shard, w, &plan.hot_paging, &mut failures)?;

    // Cold: close, drop the page cache, reopen.
    shard.close();
    let caches_dropped = drop_caches();
    let t = Instant::now();
    let mut shard = Shard::open(&dir, config(p), p.io_threads)?;
    let reopen_ms = t.elapsed().as_secs_f64() * 1000.0;
    let latest_cold = latest(&mut shard, w, &plan.cold, &mut failures)?;
    let paging_cold = paging(&mut shard, w, &plan.cold_paging, &mut failures)?;
    shard.close();

    Ok(EngineResult {
        engine: "hearth".into(),
        setup: format!(
            "msgstore (lz4 blocks of {} KiB, {} MiB memtable, {} MiB block cache, 8 MiB \
             preallocated log segments, time-window compaction, background work {} KiB per \
             turn) on one shard loop thread + {} blocking I/O threads (one for the log, real-time \
             I/O class), all on core {}; log written through the page cache + one fdatasync per \
             group; cached reads completed inline (RWF_NOWAIT)",
            BLOCK_BYTES / 1024,
            p.memtable_mib,
            p.cache_mib,
            STEP_IO_BYTES_DEFAULT / 1024,
            p.io_threads.max(2),
            p.core
        ),
        writer_threads: 1,
        appends: durable,
        append_errors,
        append_s,
        appends_per_s: durable as f64 / append_s.max(1e-9),
        append_cpu_s,
        cpu_us_per_append: append_cpu_s * 1e6 / durable.max(1) as f64,
        commit_groups: Some(groups),
        threads_off_core: off_core,
        append_latency,
        compaction_s,
        files_after_compaction: files,
        bytes_on_disk: on_disk,
        table_bytes_on_disk: tables,
        logical_bytes: p.logical_bytes,
        space_amp: on_disk as f64 / p.logical_bytes.max(1) as f64,
        table_space_amp: tables as f64 / p.logical_bytes.max(1) as f64,
        latest_hot,
        paging_hot,
        reopen_ms,
        caches_dropped,
        latest_cold,
        paging_cold,
        check_failures: failures,
    })
}
