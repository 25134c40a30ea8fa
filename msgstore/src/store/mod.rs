//! The store state machine: takes calls and I/O completions, emits I/O requests and events.
//!
//! Split by concern: `recovery` (open), `jobs` (flush and compaction), `view` (queries);
//! this file holds the state, the public API and the commit-log glue.

mod jobs;
mod recovery;
mod view;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::block_cache::{BlockCache, BlockId};
use crate::codec::check_message;
use crate::compaction::{self, FileInfo, Plan};
use crate::error::StoreError;
use crate::io::{
    FileHandle, FileOp, IoDone, IoError, IoId, IoRequest, IoResult, MANIFEST_NAME,
    MANIFEST_TMP_NAME, parse_name, segment_name, sst_name,
};
use crate::limits::{
    BLOCK_CACHE_BYTES_DEFAULT, BUSY_STEP_BYTES_MIN, BUSY_STEP_DIVISOR, MANIFEST_BYTES_MAX,
    MEMTABLE_BYTES_DEFAULT, MEMTABLE_HARD_FACTOR, QUERIES_IN_FLIGHT_MAX, RECLAIM_STEP_BYTES,
    RECOVERY_READ_CHUNK_BYTES, SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN,
    STEP_IO_BYTES_DEFAULT,
};
use crate::manifest::{FileEntry, Manifest};
use crate::memtable::Memtable;
use crate::message::{Body, Key, Message, Part, PartitionKey, ReadState, Version};
use crate::query::{self, Missing, Query, QueryResult, Source};
use crate::sst::{self, Compression, FOOTER_BYTES, SstMeta};
use crate::wal::{self, HeaderState, Stop};
use crate::wal_writer::{Outcome, Segment, WalWriter};

/// Tunables; every one is bounded by `limits.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Commit-log segment size (multiple of 4096, within the limits).
    pub segment_bytes: u64,
    /// Memtable size that triggers a flush.
    pub memtable_bytes: usize,
    /// Block cache capacity.
    pub block_cache_bytes: usize,
    /// Compression of sorted-file blocks.
    pub compression: Compression,
    /// Bytes of background reads or writes issued per loop turn.
    pub step_io_bytes: usize,
    /// Run the compaction policy on its own.
    pub auto_compact: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            memtable_bytes: MEMTABLE_BYTES_DEFAULT,
            block_cache_bytes: BLOCK_CACHE_BYTES_DEFAULT,
            compression: Compression::Lz4,
            step_io_bytes: STEP_IO_BYTES_DEFAULT,
            auto_compact: true,
        }
    }
}

/// What the store tells its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Recovery finished; `replayed` log records were applied.
    Opened {
        /// Records replayed from the commit log.
        replayed: usize,
    },
    /// The write with this token is durable.
    Acked {
        /// Caller's token.
        token: u64,
    },
    /// The write with this token was not stored.
    Failed {
        /// Caller's token.
        token: u64,
        /// Why.
        error: StoreError,
    },
    /// A query finished.
    QueryDone {
        /// Caller's token.
        token: u64,
        /// Answer.
        result: Result<QueryResult, StoreError>,
    },
    /// A memtable became sorted file `file`.
    Flushed {
        /// File number.
        file: u64,
    },
    /// Files were merged into `output`.
    Compacted {
        /// Merged files.
        inputs: Vec<u64>,
        /// New file.
        output: u64,
    },
    /// A background or recovery error. After a recovery error the store stays closed.
    Error(StoreError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Ignore,
    Recovery,
    Wal,
    /// The making of the next commit-log segment.
    WalSpare,
    /// The step of a file's removal in flight (see `Store::reclaim`).
    Reclaim,
    Job(usize, JobTag),
    Query(u64, BlockId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobTag {
    Read { input: usize, offset: u64 },
    Write,
    Seq,
}

#[derive(Debug, Default)]
struct IoQueue {
    next_id: u64,
    out: VecDeque<IoRequest>,
    owners: HashMap<IoId, Owner>,
}

impl IoQueue {
    fn submit(&mut self, owner: Owner, op: FileOp) {
        self.next_id += 1;
        let id = IoId(self.next_id);
        self.owners.insert(id, owner);
        self.out.push_back(IoRequest { id, op });
    }
}

#[derive(Debug)]
struct LiveFile {
    handle: FileHandle,
    size: u64,
    meta: SstMeta,
    window: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RStep {
    List,
    ManifestOpen,
    ManifestRead,
    SstOpen,
    SstFooter,
    SstMeta,
    SegOpen,
    SegRead,
    Cleanup,
}

#[derive(Debug)]
struct Recovery {
    step: RStep,
    handle: FileHandle,
    sst_idx: usize,
    footer: Option<sst::Footer>,
    seg_numbers: Vec<u64>,
    seg_idx: usize,
    segs: Vec<(u64, Vec<u8>)>,
    cleanup: VecDeque<FileOp>,
    replayed: usize,
    other_names: Vec<String>,
    /// Whole-file read in progress (manifest or segment), in `RECOVERY_READ_CHUNK_BYTES` steps.
    buf: Vec<u8>,
}

#[derive(Debug)]
enum Phase {
    Closed,
    Recovering(Box<Recovery>),
    Ready,
    Failed(StoreError),
}

#[derive(Debug)]
enum JobKind {
    Flush {
        max_seq: u64,
    },
    Compact {
        inputs: Vec<u64>,
        /// Each input's bytes, filled in file order as reads complete (never zero-filled up
        /// front: zeroing tens of MiB stalled the turn that started the merge).
        bufs: Vec<Vec<u8>>,
        /// Reads that completed ahead of an earlier one of the same input, by (input, offset).
        early: BTreeMap<(usize, u64), Vec<u8>>,
        next_input: usize,
        next_offset: u64,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum JobPhase {
    Reading,
    /// Encoding (and for a compaction merging) the output file, `step_io_bytes` of entries
    /// per turn, so a flush or a merge never stalls a loop turn for the whole file.
    Building,
    Creating,
    Writing,
    Finishing,
}

#[derive(Debug)]
struct Job {
    kind: JobKind,
    phase: JobPhase,
    outstanding: usize,
    bytes: Vec<u8>,
    next_off: usize,
    number: u64,
    handle: FileHandle,
    meta: Option<SstMeta>,
    seq_ops: VecDeque<FileOp>,
    new_manifest: Option<Manifest>,
    renamed: bool,
    error: Option<StoreError>,
    /// The output being built, in the `Building` phase.
    build: Option<Box<jobs::BuildState>>,
}

#[derive(Debug)]
struct QueryState {
    token: u64,
    query: Query,
    loaded: HashMap<BlockId, crate::block_cache::Block>,
    outstanding: usize,
    error: Option<StoreError>,
}

/// Job slot of the flush; it runs beside a compaction so a long merge never stalls flushes.
const FLUSH: usize = 0;
/// Job slot of the compaction.
const COMPACT: usize = 1;

/// Turns after a failed background job before it is retried.
const JOB_RETRY_TURNS: u32 = 64;

/// The sans-IO message store of one shard.
#[derive(Debug)]
pub struct Store {
    config: Config,
    phase: Phase,
    io: IoQueue,
    events: VecDeque<Event>,
    next_handle: u32,
    manifest: Manifest,
    files: BTreeMap<u64, LiveFile>,
    mem: Memtable,
    frozen: Option<Memtable>,
    wal: Option<WalWriter>,
    cache: BlockCache,
    queries: HashMap<u64, QueryState>,
    next_query: u64,
    jobs: [Option<Job>; 2],
    job_backoff: [u32; 2],
    manifest_busy: bool,
    /// Merged-away files (number, handle, size) kept open until no query reads them.
    retired: Vec<(u64, FileHandle, u64)>,
    /// Steps removing files no longer needed: each is shrunk `RECLAIM_STEP_BYTES` at a time,
    /// then closed and removed, one step in flight and at most one started per turn, so
    /// freeing (and discarding) tens of MiB never stalls a group commit's sync behind it.
    reclaim: VecDeque<FileOp>,
    /// A reclaim step is in flight.
    reclaim_busy: bool,
    /// Bumped whenever a file enters or leaves `files`: the compaction policy is a pure
    /// function of the file set, so it is asked again only once this moved.
    files_version: u64,
    /// `files_version` at which the policy last found nothing to merge.
    no_plan_version: Option<u64>,
    reads_in_flight: HashMap<u64, usize>,
    flush_requested: bool,
    compact_requested: bool,
    now_ms: u64,
    directory: BTreeMap<u64, BTreeSet<u32>>,
    acked_scratch: Vec<(u64, Version)>,
}

impl Store {
    /// A closed store; call `open` to recover.
    pub fn new(mut config: Config) -> Self {
        config.segment_bytes = config
            .segment_bytes
            .clamp(SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX)
            .next_multiple_of(4096);
        config.step_io_bytes = config.step_io_bytes.max(4096);
        Self {
            config,
            phase: Phase::Closed,
            io: IoQueue::default(),
            events: VecDeque::new(),
            next_handle: 0,
            manifest: Manifest::default(),
            files: BTreeMap::new(),
            mem: Memtable::default(),
            frozen: None,
            wal: None,
            cache: BlockCache::new(config.block_cache_bytes),
            queries: HashMap::new(),
            next_query: 0,
            jobs: [None, None],
            job_backoff: [0, 0],
            manifest_busy: false,
            retired: Vec::new(),
            reclaim: VecDeque::new(),
            reclaim_busy: false,
            files_version: 0,
            no_plan_version: None,
            reads_in_flight: HashMap::new(),
            flush_requested: false,
            compact_requested: false,
            now_ms: 0,
            directory: BTreeMap::new(),
            acked_scratch: Vec::new(),
        }
    }

    // ---- getters ----

    /// True once recovery finished.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// True when nothing is queued, in flight or waiting for a group commit.
    pub fn is_idle(&self) -> bool {
        self.io.out.is_empty()
            && self.io.owners.values().all(|o| *o == Owner::Ignore)
            && self.wal.as_ref().is_none_or(|w| w.backlog() == 0)
            && self.jobs.iter().all(Option::is_none)
            && self.queries.is_empty()
            && self.reclaim.is_empty()
            && !self.reclaim_busy
    }

    /// The error that stopped recovery, if any.
    pub fn failure(&self) -> Option<&StoreError> {
        match &self.phase {
            Phase::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Numbers of the live sorted files.
    pub fn live_files(&self) -> Vec<u64> {
        self.files.keys().copied().collect()
    }

    /// What the flush and the compaction job are doing (`"idle"` when not running), for
    /// tracing where foreground latency goes.
    pub fn job_phases(&self) -> [&'static str; 2] {
        self.jobs
            .each_ref()
            .map(|j| match j.as_ref().map(|j| &j.phase) {
                None => "idle",
                Some(JobPhase::Reading) => "reading",
                Some(JobPhase::Building) => "building",
                Some(JobPhase::Creating) => "creating",
                Some(JobPhase::Writing) => "writing",
                Some(JobPhase::Finishing) => "finishing",
            })
    }

    /// Bytes held by the block cache.
    pub fn cache_bytes(&self) -> usize {
        self.cache.used_bytes()
    }

    // ---- mutators ----

    /// Starts recovery: list the directory, load the manifest and sorted files, replay the log.
    pub fn open(&mut self) {
        if !matches!(self.phase, Phase::Closed) {
            return;
        }
        self.phase = Phase::Recovering(Box::new(Recovery {
            step: RStep::List,
            handle: FileHandle(0),
            sst_idx: 0,
            footer: None,
            seg_numbers: Vec::new(),
            seg_idx: 0,
            segs: Vec::new(),
            cleanup: VecDeque::new(),
            replayed: 0,
            other_names: Vec::new(),
            buf: Vec::new(),
        }));
        self.io.submit(Owner::Recovery, FileOp::ListDir);
    }

    /// Gives the store the caller's clock (tombstone expiry).
    pub fn set_now(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    /// Appends a new message; `Acked{token}` follows once durable.
    pub fn append(&mut self, token: u64, msg: Message) -> Result<(), StoreError> {
        check_message(&msg)?;
        self.push(token, Body::Message(msg))
    }

    /// Stores a whole new version of a message (edit, reaction, pin): the newest wins.
    pub fn edit(&mut self, token: u64, msg: Message) -> Result<(), StoreError> {
        self.append(token, msg)
    }

    /// Deletes a message with a tombstone.
    pub fn delete(
        &mut self,
        token: u64,
        channel_id: u64,
        message_id: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.set_now(now_ms);
        self.push(
            token,
            Body::Tombstone {
                channel_id,
                message_id,
                deleted_at_ms: now_ms,
            },
        )
    }

    /// Records a read state.
    pub fn ack_read(&mut self, token: u64, state: ReadState) -> Result<(), StoreError> {
        self.push(token, Body::ReadState(state))
    }

    fn push(&mut self, token: u64, body: Body) -> Result<(), StoreError> {
        if !self.is_open() {
            return Err(StoreError::NotOpen);
        }
        if self.mem.bytes() > self.config.memtable_bytes * MEMTABLE_HARD_FACTOR {
            return Err(StoreError::Backpressure);
        }
        let wal = self.wal.as_mut().ok_or(StoreError::NotOpen)?;
        if !wal.push(token, body) {
            return Err(StoreError::Backpressure);
        }
        Ok(())
    }

    /// Asks for the memtable to be flushed now.
    pub fn flush(&mut self) {
        self.flush_requested = true;
    }

    /// Asks for a merge of the oldest files now, whatever the policy says.
    pub fn compact(&mut self) {
        self.compact_requested = true;
    }

    /// Starts a query; `QueryDone{token}` follows, at once when memory and cache suffice.
    pub fn query(&mut self, token: u64, q: Query) -> Result<(), StoreError> {
        if !self.is_open() {
            return Err(StoreError::NotOpen);
        }
        query::validate(&q)?;
        if self.queries.len() >= QUERIES_IN_FLIGHT_MAX {
            return Err(StoreError::Backpressure);
        }
        self.next_query += 1;
        let qid = self.next_query;
        self.queries.insert(
            qid,
            QueryState {
                token,
                query: q,
                loaded: HashMap::new(),
                outstanding: 0,
                error: None,
            },
        );
        self.run_query(qid);
        Ok(())
    }

    /// Ends a loop turn: seals the group commit and advances background work by one step
    /// (`seal_group` then `step_background`).
    pub fn end_of_turn(&mut self) {
        self.seal_group();
        self.step_background();
    }

    /// First half of `end_of_turn`: seals this turn's appends into one group and emits its
    /// write. A caller that can start I/O at once hands that write to the disk before calling
    /// `step_background`, so the group's write and fdatasync overlap the background CPU work.
    pub fn seal_group(&mut self) {
        if !self.is_open() {
            return;
        }
        if let Some(wal) = self.wal.as_mut() {
            let io = &mut self.io;
            wal.seal(
                &mut self.manifest.next_file,
                &mut self.next_handle,
                &mut |op| io.submit(Owner::Wal, op),
            );
        }
        self.submit_detached();
    }

    /// Second half of `end_of_turn`: advances flush and compaction by one bounded step.
    pub fn step_background(&mut self) {
        if !self.is_open() || self.background_idle() {
            return;
        }
        for b in &mut self.job_backoff {
            *b = b.saturating_sub(1);
        }
        self.maybe_start_jobs();
        // One budget per turn for all background work; the flush goes first. Building may
        // overshoot the budget by one entry.
        let budget = self.step_budget();
        let left = budget.saturating_sub(self.job_step(FLUSH, budget));
        self.job_step(COMPACT, left);
        self.close_retired();
        if !self.reclaim_busy
            && let Some(op) = self.reclaim.pop_front()
        {
            self.reclaim_busy = true;
            self.io.submit(Owner::Reclaim, op);
        }
    }

    /// True when a background step would do nothing: no job running or waiting to retry,
    /// nothing to flush or merge (the policy already said so for this file set), no file to
    /// close or remove. Checked first on every turn, so an idle store's turn costs a few loads.
    fn background_idle(&self) -> bool {
        self.jobs.iter().all(Option::is_none)
            && self.job_backoff.iter().all(|b| *b == 0)
            && self.frozen.is_none()
            && !self.flush_requested
            && !self.compact_requested
            && self.mem.bytes() < self.config.memtable_bytes
            && (!self.config.auto_compact || self.no_plan_version == Some(self.files_version))
            && self.retired.is_empty()
            && self.reclaim.is_empty()
    }

    /// Queues the removal of file `name` of `size` bytes, open as `handle`: shrink it step by
    /// step from the end, close it, remove it.
    fn reclaim_file(&mut self, handle: FileHandle, name: String, size: u64) {
        let mut len = size;
        while len > 0 {
            len = len.saturating_sub(RECLAIM_STEP_BYTES);
            self.reclaim.push_back(FileOp::Truncate { handle, len });
        }
        self.reclaim.push_back(FileOp::Close { handle });
        self.reclaim.push_back(FileOp::Remove { name });
    }

    /// Background bytes this turn may take. While appends wait for or ride a group commit, the
    /// step's CPU (encoding, compressing, merging) delays their acknowledgement and the next
    /// group's seal, so it gets a `BUSY_STEP_DIVISOR`th of the budget; the whole budget again
    /// once the flush falls behind (the active memtable full while the frozen one is still
    /// being flushed), so appends never end up pushed back for want of flush progress. (Small
    /// steps whenever appends were recent, tried against the 1-core bench, raised append p50:
    /// spread thin, background work overlapped more appends than in short full-budget bursts.)
    fn step_budget(&self) -> usize {
        let busy = self.wal.as_ref().is_some_and(|w| w.backlog() > 0);
        let behind = self.frozen.is_some() && self.mem.bytes() >= self.config.memtable_bytes;
        if busy && !behind {
            (self.config.step_io_bytes / BUSY_STEP_DIVISOR)
                .max(BUSY_STEP_BYTES_MIN)
                .min(self.config.step_io_bytes)
        } else {
            self.config.step_io_bytes
        }
    }

    // ---- polls ----

    /// Next I/O request to carry out.
    pub fn poll_io(&mut self) -> Option<IoRequest> {
        self.io.out.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Takes the result of a request emitted by `poll_io`.
    pub fn complete_io(&mut self, id: IoId, result: IoResult) {
        let Some(owner) = self.io.owners.remove(&id) else {
            return;
        };
        match owner {
            Owner::Ignore => {}
            Owner::Recovery => self.recovery_step(result),
            Owner::Wal => self.wal_complete(result),
            Owner::WalSpare => self.wal_spare_complete(result),
            // A failed step changes nothing the store relies on: the file is unused, and a
            // leftover is removed at the next recovery (orphan sorted file, flushed segment).
            Owner::Reclaim => self.reclaim_busy = false,
            Owner::Job(slot, tag) => self.job_complete(slot, tag, result),
            Owner::Query(qid, block) => self.query_complete(qid, block, result),
        }
    }

    // ---- commit log ----

    pub(super) fn wal_complete(&mut self, result: IoResult) {
        let Some(wal) = self.wal.as_mut() else { return };
        match wal.complete(result) {
            Outcome::Pending => {}
            Outcome::Acked => {
                let mut items = std::mem::take(&mut self.acked_scratch);
                wal.take_acked(&mut items);
                for (token, v) in items.drain(..) {
                    self.apply(v);
                    self.events.push_back(Event::Acked { token });
                }
                self.acked_scratch = items;
            }
            failed @ Outcome::Failed(..) => self.wal_outcome(failed),
        }
        if let Some(wal) = self.wal.as_mut()
            && wal.take_rolled_over()
        {
            let io = &mut self.io;
            wal.seal(
                &mut self.manifest.next_file,
                &mut self.next_handle,
                &mut |op| io.submit(Owner::Wal, op),
            );
        }
        self.submit_detached();
    }

    fn wal_spare_complete(&mut self, result: IoResult) {
        let Some(wal) = self.wal.as_mut() else { return };
        let outcome = wal.spare_complete(result);
        self.wal_outcome(outcome);
        if let Some(wal) = self.wal.as_mut()
            && wal.take_rolled_over()
        {
            let io = &mut self.io;
            wal.seal(
                &mut self.manifest.next_file,
                &mut self.next_handle,
                &mut |op| io.submit(Owner::Wal, op),
            );
        }
        self.submit_detached();
    }

    /// Reports appends that failed with the commit log.
    fn wal_outcome(&mut self, outcome: Outcome) {
        if let Outcome::Failed(tokens, e) = outcome {
            for token in tokens {
                self.events.push_back(Event::Failed {
                    token,
                    error: StoreError::io("commit log", e.clone()),
                });
            }
        }
    }

    pub(super) fn submit_detached(&mut self) {
        if let Some(wal) = self.wal.as_mut() {
            for op in wal.detached.drain(..) {
                self.io.submit(Owner::Ignore, op);
            }
            for op in wal.spare_ops.drain(..) {
                self.io.submit(Owner::WalSpare, op);
            }
        }
    }
}

// The engine may build a shard's store on one thread and move it to its core.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Store>();
};
