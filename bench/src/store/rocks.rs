//! RocksDB's side of the store benchmark, over the system librocksdb (7.8.3 from Debian; that
//! build has assertions enabled, which the report says next to its numbers).
//!
//! Options match Hearth's where the two have the same knob: LZ4 blocks of 16 KiB, the same
//! memtable size and LRU block cache size, a 10 bits/key bloom filter (whole keys; Hearth's
//! filter is per partition), table-file writeback started every MiB (`bytes_per_sync`, as
//! Hearth's executor starts it after every write). Everything else is RocksDB's default, including its group commit
//! (concurrent `Put`s with `sync = true` join one WAL write + fdatasync led by the first writer)
//! and its background flush/compaction threads. The opening thread and every writer thread are
//! pinned to the store core before the database starts its threads, which inherit the affinity.
//!
//! `unsafe` here is FFI only: each call passes pointers this module created and keeps alive
//! (handles freed once in `Drop`, keys and values borrowed for the call), and reads RocksDB's
//! returned buffers only while the iterator that owns them is unchanged.

use std::ffi::{CStr, CString, c_char};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use msgstore::Message;
use msgstore::codec::decode_version;
use msgstore::message::Body;

use super::limits::{BLOCK_BYTES, BLOOM_BITS_PER_KEY, BYTES_PER_SYNC, PAGE_LIMIT};
use super::rocks_ffi as ffi;
use super::workload::{KEY_BYTES, Workload, key, value};
use super::{
    EngineResult, PagingResult, RatePhase, ReadPlan, StoreParams, dir_usage, drop_caches,
    fresh_dir, histogram, paging_result, phase_ranges, process_cpu_s, record, threads_off_core,
};
use crate::BenchError;
use crate::latency::LatencySummary;
use crate::sys::pin_to_core;

fn rocks_err(what: &str, err: *mut c_char) -> Result<(), BenchError> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: RocksDB set `err` to a NUL-terminated malloc'ed string that we now own.
    let msg = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: freed once, with RocksDB's allocator, after copying.
    unsafe { ffi::rocksdb_free(err.cast()) };
    Err(BenchError::Invalid(format!("rocksdb {what}: {msg}")))
}

/// An open database with the benchmark's options.
struct Rocks {
    db: *mut ffi::Db,
    opts: *mut ffi::Options,
    cache: *mut ffi::Cache,
}

// SAFETY: a RocksDB `DB` is safe for concurrent Put and iterator creation from many threads
// (RocksDB's documented thread-safety guarantee); the options and cache handles are only
// touched in `open` and `Drop`, which have exclusive access.
unsafe impl Send for Rocks {}
// SAFETY: as above.
unsafe impl Sync for Rocks {}

impl Rocks {
    fn open(dir: &Path, p: &StoreParams) -> Result<Self, BenchError> {
        let path = CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| BenchError::Invalid("rocksdb path contains NUL".into()))?;
        // SAFETY: every handle is created here and either stored in `Rocks` (freed in Drop)
        // or handed to RocksDB which copies it (table options) or takes ownership (filter).
        unsafe {
            let opts = ffi::rocksdb_options_create();
            ffi::rocksdb_options_set_create_if_missing(opts, 1);
            ffi::rocksdb_options_set_compression(opts, ffi::LZ4_COMPRESSION);
            ffi::rocksdb_options_set_write_buffer_size(opts, p.memtable_mib << 20);
            // Start writeback of table files every MiB, like Hearth's executor does.
            ffi::rocksdb_options_set_bytes_per_sync(opts, BYTES_PER_SYNC);
            let table = ffi::rocksdb_block_based_options_create();
            ffi::rocksdb_block_based_options_set_block_size(table, BLOCK_BYTES);
            let cache = ffi::rocksdb_cache_create_lru(p.cache_mib << 20);
            ffi::rocksdb_block_based_options_set_block_cache(table, cache);
            ffi::rocksdb_block_based_options_set_filter_policy(
                table,
                ffi::rocksdb_filterpolicy_create_bloom(BLOOM_BITS_PER_KEY),
            );
            ffi::rocksdb_options_set_block_based_table_factory(opts, table);
            ffi::rocksdb_block_based_options_destroy(table);
            let mut err = std::ptr::null_mut();
            let db = ffi::rocksdb_open(opts, path.as_ptr(), &mut err);
            let r = Rocks { db, opts, cache };
            rocks_err("open", err)?;
            if db.is_null() {
                return Err(BenchError::Invalid(
                    "rocksdb open returned no handle".into(),
                ));
            }
            Ok(r)
        }
    }

    fn put(&self, w: &WriteOpts, k: &[u8], v: &[u8]) -> Result<(), BenchError> {
        let mut err = std::ptr::null_mut();
        // SAFETY: db and write options are live; key and value are borrowed for the call.
        unsafe {
            ffi::rocksdb_put(
                self.db,
                w.0,
                k.as_ptr().cast(),
                k.len(),
                v.as_ptr().cast(),
                v.len(),
                &mut err,
            );
        }
        rocks_err("put", err)
    }

    fn flush_and_compact(&self) -> Result<(), BenchError> {
        let mut err = std::ptr::null_mut();
        // SAFETY: the flush options live for the call; null bounds mean the whole key range.
        unsafe {
            let f = ffi::rocksdb_flushoptions_create();
            ffi::rocksdb_flushoptions_set_wait(f, 1);
            ffi::rocksdb_flush(self.db, f, &mut err);
            ffi::rocksdb_flushoptions_destroy(f);
        }
        rocks_err("flush", err)?;
        // SAFETY: null bounds mean the whole key range.
        unsafe { ffi::rocksdb_compact_range(self.db, std::ptr::null(), 0, std::ptr::null(), 0) };
        Ok(())
    }

    fn property(&self, name: &str) -> Option<String> {
        let name = CString::new(name).ok()?;
        // SAFETY: db is live; a non-null result is a malloc'ed C string we own.
        unsafe {
            let v = ffi::rocksdb_property_value(self.db, name.as_ptr());
            if v.is_null() {
                return None;
            }
            let s = CStr::from_ptr(v).to_string_lossy().into_owned();
            ffi::rocksdb_free(v.cast());
            Some(s)
        }
    }

    /// Up to `limit` messages of `channel_id` with id < `before` (or the newest), newest first.
    fn page(
        &self,
        channel_id: u64,
        before: Option<u64>,
        limit: usize,
        out: &mut Vec<Message>,
    ) -> Result<(), BenchError> {
        out.clear();
        let target = match before {
            None => {
                let mut k = [0xffu8; KEY_BYTES];
                k[..8].copy_from_slice(&channel_id.to_be_bytes());
                k
            }
            Some(0) => return Ok(()),
            Some(b) => key(channel_id, b - 1),
        };
        let prefix = channel_id.to_be_bytes();
        let mut err = std::ptr::null_mut();
        // SAFETY: read options and iterator are created and destroyed here; key/value slices are
        // copied (decoded) before the iterator moves.
        unsafe {
            let ro = ffi::rocksdb_readoptions_create();
            let it = ffi::rocksdb_create_iterator(self.db, ro);
            ffi::rocksdb_iter_seek_for_prev(it, target.as_ptr().cast(), target.len());
            while out.len() < limit && ffi::rocksdb_iter_valid(it) != 0 {
                let mut klen = 0usize;
                let kp = ffi::rocksdb_iter_key(it, &mut klen);
                let k = std::slice::from_raw_parts(kp.cast::<u8>(), klen);
                if k.get(..8) != Some(&prefix[..]) {
                    break;
                }
                let mut vlen = 0usize;
                let vp = ffi::rocksdb_iter_value(it, &mut vlen);
                let v = std::slice::from_raw_parts(vp.cast::<u8>(), vlen);
                match decode_version(v) {
                    Ok(msgstore::message::Version {
                        body: Body::Message(m),
                        ..
                    }) => out.push(m),
                    _ => {
                        ffi::rocksdb_iter_destroy(it);
                        ffi::rocksdb_readoptions_destroy(ro);
                        return Err(BenchError::Invalid("rocksdb: undecodable value".into()));
                    }
                }
                ffi::rocksdb_iter_prev(it);
            }
            ffi::rocksdb_iter_get_error(it, &mut err);
            ffi::rocksdb_iter_destroy(it);
            ffi::rocksdb_readoptions_destroy(ro);
        }
        rocks_err("iterate", err)
    }
}

impl Drop for Rocks {
    fn drop(&mut self) {
        // SAFETY: each handle was created in `open` and is freed exactly once; the database is
        // closed before the options and the cache it uses.
        unsafe {
            if !self.db.is_null() {
                ffi::rocksdb_close(self.db);
            }
            ffi::rocksdb_options_destroy(self.opts);
            ffi::rocksdb_cache_destroy(self.cache);
        }
    }
}

/// Write options with `sync = true`, one per writer thread.
struct WriteOpts(*mut ffi::WriteOptions);

impl WriteOpts {
    fn sync() -> Self {
        // SAFETY: created here, destroyed in Drop.
        unsafe {
            let w = ffi::rocksdb_writeoptions_create();
            ffi::rocksdb_writeoptions_set_sync(w, 1);
            WriteOpts(w)
        }
    }
}

impl Drop for WriteOpts {
    fn drop(&mut self) {
        // SAFETY: created in `sync`, freed once.
        unsafe { ffi::rocksdb_writeoptions_destroy(self.0) };
    }
}

/// "Cumulative WAL: N writes, M syncs, ..." from `rocksdb.dbstats`: the number of syncs.
/// RocksDB prints large counts in a human form ("22K", "1M"), so the figure may be rounded.
fn wal_syncs(stats: &str) -> Option<u64> {
    let line = stats.lines().find(|l| l.starts_with("Cumulative WAL:"))?;
    let before = line.split(" syncs").next()?;
    let n = before.rsplit(' ').next()?;
    let (digits, scale) = match n.chars().last()? {
        'K' => (n.get(..n.len() - 1)?, 1_000),
        'M' => (n.get(..n.len() - 1)?, 1_000_000),
        'G' => (n.get(..n.len() - 1)?, 1_000_000_000),
        _ => (n, 1),
    };
    digits.parse::<u64>().ok().map(|d| d * scale)
}

/// One append phase over messages `range`: `concurrency` threads, each a loop of synchronous
/// puts. Closed loop (`rate` None): each thread puts its next message as soon as the last is
/// durable, latency from the call. Fixed rate: message `k` of the phase is due at `start +
/// k / rate`; the thread that takes it sleeps until then, latency counts from the due time.
/// Returns (latency, errors, threads off the core, seconds).
fn appends(
    db: &Rocks,
    w: &Workload,
    p: &StoreParams,
    range: std::ops::Range<u64>,
    rate: Option<u64>,
) -> Result<(Histogram<u64>, u64, usize, f64), BenchError> {
    let next = AtomicU64::new(range.start);
    let origin = Instant::now();
    let due = |i: u64| {
        rate.map(|r| {
            origin
                + std::time::Duration::from_nanos(
                    ((i - range.start) as u128 * 1_000_000_000 / u128::from(r.max(1))) as u64,
                )
        })
    };
    type WriterResult = Result<(Histogram<u64>, u64), BenchError>;
    let (results, off_core): (Vec<WriterResult>, usize) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..p.concurrency)
            .map(|_| {
                s.spawn(|| -> WriterResult {
                    pin_to_core(0, p.core).map_err(|e| BenchError::io("pin writer", e))?;
                    // As Hearth's log thread: best effort, root only.
                    let _ = super::prioritise_log_io();
                    super::tight_timer_slack();
                    let wo = WriteOpts::sync();
                    let mut h = histogram()?;
                    let mut buf = Vec::new();
                    let mut errors = 0u64;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= range.end {
                            return Ok((h, errors));
                        }
                        let m = w.message(i);
                        let k = key(m.channel_id, m.id);
                        value(m, &mut buf);
                        let t = match due(i) {
                            Some(at) => {
                                let left = at.saturating_duration_since(Instant::now());
                                if !left.is_zero() {
                                    std::thread::sleep(left);
                                }
                                at
                            }
                            None => Instant::now(),
                        };
                        if db.put(&wo, &k, &buf).is_err() {
                            errors += 1;
                        }
                        record(&mut h, t.elapsed().as_nanos() as u64);
                    }
                })
            })
            .collect();
        // Every writer and background thread exists now: check they all stay on the core.
        let off = threads_off_core(p.core);
        let results = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| BenchError::Invalid("rocksdb writer panicked".into()))
                    .and_then(|r| r)
            })
            .collect();
        (results, off)
    });
    let seconds = origin.elapsed().as_secs_f64();
    let mut all = histogram()?;
    let mut errors = 0;
    for r in results {
        let (h, e) = r?;
        all.add(&h)
            .map_err(|e| BenchError::Invalid(format!("histogram merge: {e}")))?;
        errors += e;
    }
    Ok((all, errors, off_core, seconds))
}

fn latest(
    db: &Rocks,
    w: &Workload,
    channels: &[u64],
    failures: &mut u64,
) -> Result<LatencySummary, BenchError> {
    let mut hist = histogram()?;
    let mut out = Vec::with_capacity(PAGE_LIMIT);
    for &c in channels {
        let t = Instant::now();
        db.page(w.channel_id(c), None, PAGE_LIMIT, &mut out)?;
        record(&mut hist, t.elapsed().as_nanos() as u64);
        let want_len = w.messages_in(c).min(PAGE_LIMIT as u64) as usize;
        if out.len() != want_len || out.first().map(|m| m.id) != w.newest_id(c) {
            *failures += 1;
        }
    }
    Ok(LatencySummary::from_ns(&hist))
}

fn paging(
    db: &Rocks,
    w: &Workload,
    channels: &[u64],
    failures: &mut u64,
) -> Result<PagingResult, BenchError> {
    let mut hist = histogram()?;
    let mut out = Vec::with_capacity(PAGE_LIMIT);
    let (mut pages, mut total) = (0u64, 0u64);
    let t_all = Instant::now();
    for &c in channels {
        let channel_id = w.channel_id(c);
        let mut before = None;
        let (mut seen, mut last) = (0u64, u64::MAX);
        loop {
            let t = Instant::now();
            db.page(channel_id, before, PAGE_LIMIT, &mut out)?;
            record(&mut hist, t.elapsed().as_nanos() as u64);
            pages += 1;
            for m in &out {
                if m.id >= last {
                    *failures += 1;
                }
                last = m.id;
            }
            seen += out.len() as u64;
            match out.last() {
                Some(m) if out.len() == PAGE_LIMIT => before = Some(m.id),
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

fn table_files(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".sst"))
            .count() as u64
    })
}

/// Runs every phase on RocksDB in `<data_dir>/rocksdb`. The calling thread must already be
/// pinned to the store core (RocksDB's threads inherit it).
pub fn run(p: &StoreParams, w: &Workload, plan: &ReadPlan) -> Result<EngineResult, BenchError> {
    let dir = p.data_dir.join("rocksdb");
    fresh_dir(&dir)?;
    let mut failures = 0u64;
    let db = Rocks::open(&dir, p)?;

    let (max_range, rate_ranges) = phase_ranges(p);
    let max_n = max_range.end - max_range.start;
    let cpu0 = process_cpu_s();
    let (h, append_errors, off_core, append_s) = appends(&db, w, p, max_range, None)?;
    let append_latency = LatencySummary::from_ns(&h);
    let append_cpu_s = process_cpu_s() - cpu0;
    let durable = max_n - append_errors;
    let groups = db
        .property("rocksdb.dbstats")
        .as_deref()
        .and_then(wal_syncs);
    let mut rate_phases = Vec::new();
    for (rate, range) in rate_ranges {
        let n = range.end - range.start;
        let (h, errors, _, secs) = appends(&db, w, p, range, Some(rate))?;
        eprintln!(
            "store-bench: rocksdb at {rate}/s: p50 {:.3} ms, p99 {:.3} ms",
            h.value_at_quantile(0.5) as f64 / 1e6,
            h.value_at_quantile(0.99) as f64 / 1e6
        );
        // RocksDB prints its sync counter rounded to thousands: no per-phase figure.
        rate_phases.push(RatePhase::new(rate, n, errors, secs, None, &h));
    }

    let t = Instant::now();
    db.flush_and_compact()?;
    let compaction_s = t.elapsed().as_secs_f64();
    let files = table_files(&dir);
    let (_, on_disk, tables) = dir_usage(&dir)?;

    let all: Vec<u64> = (0..w.channels).collect();
    latest(&db, w, &all, &mut failures)?;
    let latest_hot = latest(&db, w, &plan.hot, &mut failures)?;
    let paging_hot = paging(&db, w, &plan.hot_paging, &mut failures)?;

    drop(db);
    let caches_dropped = drop_caches();
    let t = Instant::now();
    let db = Rocks::open(&dir, p)?;
    let reopen_ms = t.elapsed().as_secs_f64() * 1000.0;
    let latest_cold = latest(&db, w, &plan.cold, &mut failures)?;
    let paging_cold = paging(&db, w, &plan.cold_paging, &mut failures)?;
    drop(db);

    Ok(EngineResult {
        engine: "rocksdb".into(),
        setup: format!(
            "RocksDB 7.8.3 (Debian librocksdb, assertions enabled), {} writer threads with \
             sync=true puts, lz4 blocks of {} KiB, {} MiB write buffer, {} MiB LRU block cache, \
             bloom {} bits/key, bytes_per_sync 1 MiB, default background jobs; all threads on core {}; flush + full \
             CompactRange before the space figure",
            p.concurrency,
            BLOCK_BYTES / 1024,
            p.memtable_mib,
            p.cache_mib,
            BLOOM_BITS_PER_KEY,
            p.core
        ),
        writer_threads: p.concurrency,
        appends: durable,
        append_errors,
        append_s,
        appends_per_s: durable as f64 / append_s.max(1e-9),
        append_cpu_s,
        cpu_us_per_append: append_cpu_s * 1e6 / durable.max(1) as f64,
        rate_phases,
        commit_groups: groups,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_syncs_parses_dbstats() {
        let s = "** DB Stats **\nUptime(secs): 3.0 total\nCumulative writes: 600K writes, 600K \
                 keys, 9000 commit groups, 66.7 writes per commit group\nCumulative WAL: 600000 \
                 writes, 9001 syncs, 66.66 writes per sync, written: 0.43 GB\n";
        assert_eq!(wal_syncs(s), Some(9001));
        assert_eq!(
            wal_syncs("Cumulative WAL: 600K writes, 22K syncs, 27.27 writes per sync"),
            Some(22_000)
        );
        assert_eq!(wal_syncs("nothing"), None);
    }
}
