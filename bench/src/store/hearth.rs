//! Hearth's side of the store benchmark: msgstore driven by one shard-style loop on the calling
//! thread (pinned to the store core), its file operations carried out by [`PoolExec`].
//!
//! A loop turn is what the engine's shard does: take I/O completions (blocking only when
//! something is in flight and nothing else is runnable), hand them to the store, act on its
//! events (an acknowledgement lets that logical client append its next message), then end the
//! turn: `end_of_turn` seals every append of the turn into one group, and the turn's requests go
//! to the I/O threads. The store keeps one group in flight: one durable write (the log I/O
//! thread writes it and fdatasyncs the segment).

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Instant;

use hdrhistogram::Histogram;

use msgstore::{
    Config, Event, FileHandle, FileOp, IoId, IoResult, Message, Query, QueryResult, Store,
    StoreError,
};

use super::exec::PoolExec;
use super::limits::{BLOCK_BYTES, PAGE_LIMIT, TURNS_MAX};
use super::trace;
use super::workload::Workload;
use super::{
    EngineResult, RatePhase, ReadPlan, StoreParams, dir_usage, drop_caches, fresh_dir, histogram,
    paging_result, phase_ranges, process_cpu_s, record, threads_off_core, tight_timer_slack,
};
use crate::BenchError;
use crate::latency::LatencySummary;
use msgstore::limits::{
    JOB_WRITE_CHUNK_BYTES, JOB_WRITES_IN_FLIGHT_MAX, RECLAIM_STEP_BYTES, STEP_IO_BYTES_DEFAULT,
};

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
        let t0 = trace::now_ns();
        self.store.seal_group();
        self.forward()?;
        let t1 = trace::now_ns();
        let c1 = trace::thread_cpu_ns();
        self.store.step_background();
        let c2 = trace::thread_cpu_ns();
        let t2 = trace::now_ns();
        self.forward()?;
        if trace::on() {
            trace::span("seal", t0, t1, 0, 0);
            let code = |p: &str| match p {
                "reading" => 1,
                "building" => 2,
                "creating" => 3,
                "writing" => 4,
                "finishing" => 5,
                _ => 0,
            };
            let [f, c] = self.store.job_phases();
            trace::span("step", t1, t2, c2 - c1, code(f) * 10 + code(c));
        }
        Ok(())
    }

    /// Hands every request the store has to the I/O threads.
    fn forward(&mut self) -> Result<(), BenchError> {
        while let Some(req) = self.store.poll_io() {
            match &req.op {
                FileOp::Open { handle, name, .. } if name.starts_with("wal-") => {
                    self.log_handles.insert(*handle);
                }
                // A group commit is one durable write; fdatasyncs of log files are the next
                // segment's, made ahead of time, not groups.
                FileOp::WriteDurable { handle, .. } if self.log_handles.contains(handle) => {
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

    /// Takes completions, waiting for one first if something is in flight, but not past
    /// `wake` (when given; with nothing in flight it sleeps until `wake`).
    fn take_completions_until(&mut self, wake: Option<Instant>) {
        match wake {
            None => return self.take_completions(true),
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if self.in_flight > 0 {
                    if let Ok((id, res)) = self.done.recv_timeout(left) {
                        self.in_flight -= 1;
                        self.store.complete_io(id, res);
                    }
                } else if !left.is_zero() {
                    std::thread::sleep(left);
                }
            }
        }
        self.take_completions(false);
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

/// How one append phase issues its appends.
#[derive(Debug, Clone, Copy)]
enum Pacing {
    /// Closed loop: `concurrency` appends outstanding, each acknowledgement issues the next;
    /// latency from the call.
    Closed,
    /// Open loop at this many appends/s (at most `concurrency` outstanding); latency from each
    /// append's due time.
    Rate(u64),
}

/// Appends messages `range` with `concurrency` outstanding at most; returns (latency, errors,
/// groups, seconds).
fn appends(
    shard: &mut Shard,
    w: &Workload,
    range: std::ops::Range<u64>,
    concurrency: usize,
    pacing: Pacing,
) -> Result<(Histogram<u64>, u64, u64, f64), BenchError> {
    let mut hist = histogram()?;
    let n = range.end - range.start;
    let trace_t0 = trace::now_ns();
    let mut started = vec![0u64; n as usize];
    let origin = Instant::now();
    let mut next = range.start;
    let mut done = 0u64;
    let mut errors = 0u64;
    let mut outstanding = 0usize;
    let mut retry: VecDeque<u64> = VecDeque::new();
    let syncs_before = shard.log_syncs_seen;
    let now_ns = |o: &Instant| o.elapsed().as_nanos() as u64;
    let due_ns = |i: u64| match pacing {
        Pacing::Closed => 0,
        Pacing::Rate(r) => {
            ((i - range.start) as u128 * 1_000_000_000 / u128::from(r.max(1))) as u64
        }
    };
    for _ in 0..TURNS_MAX {
        // Issue what is due (closed loop: whatever the outstanding bound allows); pushed-back
        // appends retry first.
        let now = now_ns(&origin);
        while outstanding < concurrency {
            let i = match retry.pop_front() {
                Some(i) => i,
                None if next < range.end && due_ns(next) <= now => {
                    let t0 = match pacing {
                        Pacing::Closed => now,
                        Pacing::Rate(_) => due_ns(next),
                    };
                    if let Some(s) = started.get_mut((next - range.start) as usize) {
                        *s = t0;
                    }
                    next += 1;
                    next - 1
                }
                None => break,
            };
            match shard.store.append(i, w.message(i)) {
                Ok(()) => outstanding += 1,
                Err(StoreError::Backpressure) => {
                    retry.push_front(i);
                    break;
                }
                Err(e) => return Err(store_err("append", &e)),
            }
        }
        shard.turns += 1;
        shard.submit()?;
        // Wait for a completion, but no later than the next append's due time.
        let wake = match pacing {
            Pacing::Rate(_)
                if next < range.end && outstanding < concurrency && retry.is_empty() =>
            {
                Some(origin + std::time::Duration::from_nanos(due_ns(next)))
            }
            _ => None,
        };
        shard.take_completions_until(wake);
        while let Some(e) = shard.events.pop_front() {
            match e {
                Event::Acked { token } => {
                    let t0 = started
                        .get((token - range.start) as usize)
                        .copied()
                        .unwrap_or(0);
                    let lat = now_ns(&origin).saturating_sub(t0);
                    record(&mut hist, lat);
                    if trace::on() {
                        let t = trace::now_ns();
                        trace::span("append", t.saturating_sub(lat), t, 0, token);
                    }
                    done += 1;
                    outstanding = outstanding.saturating_sub(1);
                }
                Event::Failed { .. } => {
                    // Counted and not retried: the report shows it.
                    errors += 1;
                    done += 1;
                    outstanding = outstanding.saturating_sub(1);
                }
                _ => {}
            }
        }
        if done >= n {
            let rate = match pacing {
                Pacing::Closed => 0,
                Pacing::Rate(r) => r,
            };
            trace::span("phase", trace_t0, trace::now_ns(), rate, 0);
            let groups = shard.log_syncs_seen - syncs_before;
            return Ok((hist, errors, groups, origin.elapsed().as_secs_f64()));
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
    trace::init();
    let mut failures = 0u64;
    let mut shard = Shard::open(&dir, config(p), p.io_threads)?;

    tight_timer_slack();
    let (max_range, rate_ranges) = phase_ranges(p);
    let cpu0 = process_cpu_s();
    let max_n = max_range.end - max_range.start;
    let (h, append_errors, groups, append_s) =
        appends(&mut shard, w, max_range, p.concurrency, Pacing::Closed)?;
    let append_latency = LatencySummary::from_ns(&h);
    let append_cpu_s = process_cpu_s() - cpu0;
    let off_core = threads_off_core(p.core);
    let durable = max_n - append_errors;
    let mut rate_phases = Vec::new();
    for (rate, range) in rate_ranges {
        let n = range.end - range.start;
        let (h, errors, groups, secs) =
            appends(&mut shard, w, range, p.concurrency, Pacing::Rate(rate))?;
        eprintln!(
            "store-bench: hearth at {rate}/s: p50 {:.3} ms, p99 {:.3} ms",
            h.value_at_quantile(0.5) as f64 / 1e6,
            h.value_at_quantile(0.99) as f64 / 1e6
        );
        rate_phases.push(RatePhase::new(rate, n, errors, secs, Some(groups), &h));
    }
    trace::dump();

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
            "msgstore (lz4 blocks of {} KiB, {} MiB memtable, {} MiB block cache, 8 MiB log \
             segments made ahead (preallocated, zero-filled, synced), time-window compaction, \
             background work {} KiB per turn, a quarter of it while appends are in flight; sorted-file \
             writes of {} KiB, {} in flight per job, each written back before it completes; \
             removed files shrunk {} MiB per step first) on one shard loop thread + {} blocking \
             I/O threads (one for the log, real-time I/O class), all on core \
             {}; log written through the page cache, one write + fdatasync per group; cached \
             reads completed inline (RWF_NOWAIT)",
            BLOCK_BYTES / 1024,
            p.memtable_mib,
            p.cache_mib,
            STEP_IO_BYTES_DEFAULT / 1024,
            JOB_WRITE_CHUNK_BYTES / 1024,
            JOB_WRITES_IN_FLIGHT_MAX,
            RECLAIM_STEP_BYTES >> 20,
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
        rate_phases,
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
