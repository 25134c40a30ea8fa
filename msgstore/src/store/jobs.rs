//! Background jobs: flush and compaction in bounded steps, manifest installs.
//!
//! Every step is bounded per loop turn by `step_io_bytes`, shared by the flush (first) and the
//! compaction: bytes read or written, and bytes of entries encoded while building an output
//! file. Building is incremental (a flush walks the frozen memtable from where it stopped, a
//! merge advances a cursor per input block), so no turn pays for a whole file's encoding and
//! compression at once.

use super::*;
use crate::limits::{JOB_WRITE_CHUNK_BYTES, JOB_WRITES_IN_FLIGHT_MAX, SST_FILES_MAX};

/// Work charged for a merged version that is dropped instead of written (an expired tombstone
/// or a superseded version), so a turn that only drops still ends.
const DROPPED_VERSION_COST_BYTES: usize = 64;

/// An output file being built.
#[derive(Debug)]
pub(super) struct BuildState {
    builder: sst::Builder,
    source: BuildSource,
}

/// Where the entries of a file being built come from.
#[derive(Debug)]
enum BuildSource {
    /// The frozen memtable, resuming after the last key added.
    Frozen { after: Option<Key> },
    /// A k-way merge of the compaction inputs read into memory (the job's `bufs`).
    Merge {
        cursors: Vec<MergeCursor>,
        /// Live files outside the merge, for the tombstone rule.
        others: Vec<u64>,
    },
}

/// Position in one merge input: the next block to decode and the rest of the current one.
#[derive(Debug)]
struct MergeCursor {
    input: usize,
    next_block: usize,
    rows: std::iter::Peekable<std::vec::IntoIter<Version>>,
}

impl Store {
    // ---- background jobs ----

    pub(super) fn file_infos(&self) -> Vec<FileInfo> {
        self.files
            .iter()
            .map(|(n, f)| FileInfo {
                number: *n,
                size: f.size,
                window: f.window,
            })
            .collect()
    }

    pub(super) fn maybe_start_jobs(&mut self) {
        // The manifest holds at most SST_FILES_MAX files: past that, flushes wait for merges.
        if self.jobs[FLUSH].is_none()
            && self.job_backoff[FLUSH] == 0
            && self.files.len() < SST_FILES_MAX - 1
        {
            if self.frozen.is_none()
                && (self.mem.bytes() >= self.config.memtable_bytes
                    || (self.flush_requested && !self.mem.is_empty()))
            {
                self.frozen = Some(std::mem::take(&mut self.mem));
            }
            self.flush_requested = false;
            if let Some(frozen) = self.frozen.as_ref() {
                let max_seq = frozen.max_seq();
                let mut job = Self::new_job(JobKind::Flush { max_seq }, JobPhase::Building);
                job.build = Some(Box::new(BuildState {
                    // The encoded file is at most about the memtable's size.
                    builder: sst::Builder::with_capacity(self.config.compression, frozen.bytes()),
                    source: BuildSource::Frozen { after: None },
                }));
                self.jobs[FLUSH] = Some(job);
            }
        }
        if self.jobs[COMPACT].is_some() || self.job_backoff[COMPACT] > 0 {
            return;
        }
        let plan = if std::mem::take(&mut self.compact_requested) {
            compaction::choose_all(&self.file_infos())
        } else if self.config.auto_compact && self.no_plan_version != Some(self.files_version) {
            let plan = compaction::choose(&self.file_infos());
            if plan.is_none() {
                self.no_plan_version = Some(self.files_version);
            }
            plan
        } else {
            None
        };
        if let Some(Plan { inputs }) = plan {
            // Reserved, not zeroed: the reads fill them in order.
            let bufs = inputs
                .iter()
                .map(|n| Vec::with_capacity(self.files.get(n).map_or(0, |f| f.size as usize)))
                .collect();
            self.jobs[COMPACT] = Some(Self::new_job(
                JobKind::Compact {
                    inputs,
                    bufs,
                    early: BTreeMap::new(),
                    next_input: 0,
                    next_offset: 0,
                },
                JobPhase::Reading,
            ));
        }
    }

    fn new_job(kind: JobKind, phase: JobPhase) -> Job {
        Job {
            kind,
            phase,
            outstanding: 0,
            bytes: Vec::new(),
            next_off: 0,
            number: 0,
            handle: FileHandle(0),
            meta: None,
            seq_ops: VecDeque::new(),
            new_manifest: None,
            renamed: false,
            error: None,
            build: None,
        }
    }

    pub(super) fn start_write_job(
        &mut self,
        slot: usize,
        kind: JobKind,
        bytes: Vec<u8>,
        meta: SstMeta,
    ) {
        let number = self.manifest.next_file;
        self.manifest.next_file += 1;
        let handle = self.new_handle();
        self.io.submit(
            Owner::Job(slot, JobTag::Seq),
            FileOp::Open {
                handle,
                name: sst_name(number),
                create: true,
            },
        );
        self.jobs[slot] = Some(Job {
            kind,
            phase: JobPhase::Creating,
            outstanding: 1,
            bytes,
            next_off: 0,
            number,
            handle,
            meta: Some(meta),
            seq_ops: VecDeque::new(),
            new_manifest: None,
            renamed: false,
            error: None,
            build: None,
        });
    }

    /// Issues up to `budget` bytes of a job's background I/O; returns the bytes issued.
    pub(super) fn job_step(&mut self, slot: usize, budget: usize) -> usize {
        let Some(job) = self.jobs[slot].as_mut() else {
            return 0;
        };
        if job.error.is_some() {
            return 0;
        }
        let mut issued = 0;
        match job.phase {
            JobPhase::Reading => {
                let JobKind::Compact {
                    inputs,
                    next_input,
                    next_offset,
                    ..
                } = &mut job.kind
                else {
                    return 0;
                };
                while issued < budget {
                    let Some(no) = inputs.get(*next_input) else {
                        break;
                    };
                    let Some(f) = self.files.get(no) else { break };
                    let size = f.size;
                    let len = (size - *next_offset).min((budget - issued) as u64) as usize;
                    if len > 0 {
                        let tag = JobTag::Read {
                            input: *next_input,
                            offset: *next_offset,
                        };
                        self.io.submit(
                            Owner::Job(slot, tag),
                            FileOp::Read {
                                handle: f.handle,
                                offset: *next_offset,
                                len,
                            },
                        );
                        *self.reads_in_flight.entry(*no).or_default() += 1;
                        job.outstanding += 1;
                        issued += len;
                        *next_offset += len as u64;
                    }
                    if *next_offset >= size {
                        *next_input += 1;
                        *next_offset = 0;
                    }
                }
                let done = *next_input >= inputs.len();
                if done && job.outstanding == 0 {
                    self.finish_reading(slot);
                }
            }
            JobPhase::Writing => {
                while issued < budget
                    && job.next_off < job.bytes.len()
                    && job.outstanding < JOB_WRITES_IN_FLIGHT_MAX
                {
                    let end = (job.next_off + (budget - issued).min(JOB_WRITE_CHUNK_BYTES))
                        .min(job.bytes.len());
                    let data = job
                        .bytes
                        .get(job.next_off..end)
                        .map(<[u8]>::to_vec)
                        .unwrap_or_default();
                    self.io.submit(
                        Owner::Job(slot, JobTag::Write),
                        FileOp::Write {
                            handle: job.handle,
                            offset: job.next_off as u64,
                            data,
                        },
                    );
                    job.outstanding += 1;
                    issued += end - job.next_off;
                    job.next_off = end;
                }
                // Manifest updates are serialized: a job whose file is written waits its turn.
                if job.next_off >= job.bytes.len() && job.outstanding == 0 && !self.manifest_busy {
                    self.start_finishing(slot);
                }
            }
            JobPhase::Building => return self.build_step(slot, budget),
            JobPhase::Creating | JobPhase::Finishing => {}
        }
        issued
    }

    /// Adds up to `budget` bytes of entries to the file being built; once every entry is in,
    /// finishes it and starts writing. Returns the work done.
    pub(super) fn build_step(&mut self, slot: usize, budget: usize) -> usize {
        let Some(mut job) = self.jobs[slot].take() else {
            return 0;
        };
        let Some(mut st) = job.build.take() else {
            self.jobs[slot] = Some(job);
            return 0;
        };
        let start = st.builder.raw_bytes();
        let mut dropped = 0usize;
        let spent = |b: &sst::Builder, dropped: usize| (b.raw_bytes() - start) as usize + dropped;
        let mut done = true;
        match &mut st.source {
            BuildSource::Frozen { after } => {
                if let Some(frozen) = self.frozen.as_ref() {
                    for v in frozen.iter_after(*after) {
                        if spent(&st.builder, dropped) >= budget {
                            done = false;
                            break;
                        }
                        st.builder.add(v);
                        *after = Some(v.body.key());
                    }
                }
            }
            BuildSource::Merge { cursors, others } => 'merge: {
                // Only compactions merge; anything else has nothing to add.
                let JobKind::Compact { inputs, bufs, .. } = &mut job.kind else {
                    break 'merge;
                };
                let others: Vec<&LiveFile> =
                    others.iter().filter_map(|n| self.files.get(n)).collect();
                let older_elsewhere = |p: &Part, seq: u64| {
                    others.iter().any(|f| {
                        f.meta.footer.min_seq < seq
                            && f.meta.bloom.may_contain(p)
                            && f.meta.parts.contains_key(p)
                    })
                };
                loop {
                    if spent(&st.builder, dropped) >= budget {
                        done = false;
                        break;
                    }
                    // Refill cursors whose block is used up; a corrupt block ends the job.
                    for c in cursors.iter_mut() {
                        if let Err(error) = self.refill(c, inputs, bufs) {
                            let file = inputs
                                .get(c.input)
                                .map_or_else(String::new, |n| sst_name(*n));
                            self.events
                                .push_back(Event::Error(StoreError::CorruptFile { file, error }));
                            self.job_backoff[slot] = JOB_RETRY_TURNS;
                            return 0;
                        }
                    }
                    let Some(key) = cursors
                        .iter_mut()
                        .filter_map(|c| c.rows.peek().map(|v| v.body.key()))
                        .min()
                    else {
                        break;
                    };
                    // The newest version of the key wins; on a tie the earlier input does.
                    let mut best: Option<Version> = None;
                    for c in cursors.iter_mut() {
                        if c.rows.peek().is_some_and(|v| v.body.key() == key)
                            && let Some(v) = c.rows.next()
                            && best.as_ref().is_none_or(|b| v.seq > b.seq)
                        {
                            best = Some(v);
                        }
                    }
                    if let Some(v) = best {
                        if compaction::keep(&key, &v, self.now_ms, &older_elsewhere) {
                            st.builder.add(&v);
                        } else {
                            dropped += DROPPED_VERSION_COST_BYTES;
                        }
                    }
                }
            }
        }
        let work = spent(&st.builder, dropped);
        if !done {
            job.build = Some(st);
            self.jobs[slot] = Some(job);
            return work;
        }
        let (bytes, meta) = st.builder.finish();
        let kind = match job.kind {
            JobKind::Compact { inputs, .. } => JobKind::Compact {
                inputs,
                bufs: Vec::new(),
                early: BTreeMap::new(),
                next_input: 0,
                next_offset: 0,
            },
            k @ JobKind::Flush { .. } => k,
        };
        self.start_write_job(slot, kind, bytes, meta);
        work
    }

    /// Decodes the next block of a merge input once the current one is used up; frees the
    /// input's bytes once its last block is decoded, so the merge gives memory back input by
    /// input rather than all at once in one turn.
    fn refill(
        &self,
        c: &mut MergeCursor,
        inputs: &[u64],
        bufs: &mut [Vec<u8>],
    ) -> Result<(), crate::codec::FormatError> {
        while c.rows.peek().is_none() {
            let (Some(no), Some(buf)) = (inputs.get(c.input), bufs.get_mut(c.input)) else {
                return Ok(());
            };
            let Some(b) = self
                .files
                .get(no)
                .and_then(|f| f.meta.blocks.get(c.next_block))
            else {
                *buf = Vec::new();
                return Ok(());
            };
            c.next_block += 1;
            let blk = buf
                .get(b.offset as usize..(b.offset + u64::from(b.len)) as usize)
                .unwrap_or_default();
            c.rows = sst::decode_block(blk)?.into_iter().peekable();
        }
        Ok(())
    }

    /// Every input is in memory: set up the merge cursors; the merge itself runs in
    /// `build_step`, a budget per turn.
    pub(super) fn finish_reading(&mut self, slot: usize) {
        let Some(job) = self.jobs[slot].as_mut() else {
            return;
        };
        let JobKind::Compact { inputs, bufs, .. } = &job.kind else {
            return;
        };
        // The output is at most about the inputs' size (the merge only drops versions).
        let capacity = bufs.iter().map(Vec::len).sum();
        // A concurrent flush only adds files newer than every input, so this view of "older
        // data elsewhere" stays valid until the merge is installed.
        let others = self
            .files
            .keys()
            .filter(|n| !inputs.contains(n))
            .copied()
            .collect();
        let cursors = (0..inputs.len())
            .map(|input| MergeCursor {
                input,
                next_block: 0,
                rows: Vec::new().into_iter().peekable(),
            })
            .collect();
        job.phase = JobPhase::Building;
        job.build = Some(Box::new(BuildState {
            builder: sst::Builder::with_capacity(self.config.compression, capacity),
            source: BuildSource::Merge { cursors, others },
        }));
    }

    pub(super) fn start_finishing(&mut self, slot: usize) {
        let Some(job) = self.jobs[slot].as_mut() else {
            return;
        };
        self.manifest_busy = true;
        job.phase = JobPhase::Finishing;
        let mut m = self.manifest.clone();
        m.files.push(FileEntry {
            number: job.number,
            size: job.bytes.len() as u64,
        });
        match &job.kind {
            JobKind::Flush { max_seq } => m.flushed_seq = m.flushed_seq.max(*max_seq),
            JobKind::Compact { inputs, .. } => m.files.retain(|f| !inputs.contains(&f.number)),
        }
        let mut buf = Vec::new();
        m.encode(&mut buf);
        job.new_manifest = Some(m);
        self.next_handle += 1;
        let mh = FileHandle(self.next_handle);
        job.seq_ops = VecDeque::from([
            FileOp::Remove {
                name: MANIFEST_TMP_NAME.into(),
            },
            FileOp::Open {
                handle: mh,
                name: MANIFEST_TMP_NAME.into(),
                create: true,
            },
            FileOp::Write {
                handle: mh,
                offset: 0,
                data: buf,
            },
            FileOp::Fdatasync { handle: mh },
            FileOp::Close { handle: mh },
            FileOp::Rename {
                from: MANIFEST_TMP_NAME.into(),
                to: MANIFEST_NAME.into(),
            },
            FileOp::SyncDir,
        ]);
        job.outstanding = 1;
        self.io.submit(
            Owner::Job(slot, JobTag::Seq),
            FileOp::Fdatasync { handle: job.handle },
        );
    }

    pub(super) fn job_complete(&mut self, slot: usize, tag: JobTag, result: IoResult) {
        let Some(job) = self.jobs[slot].as_mut() else {
            return;
        };
        job.outstanding = job.outstanding.saturating_sub(1);
        if let JobTag::Read { input, offset } = tag
            && let JobKind::Compact {
                inputs,
                bufs,
                early,
                ..
            } = &mut job.kind
        {
            if let Some(no) = inputs.get(input)
                && let Some(c) = self.reads_in_flight.get_mut(no)
            {
                *c = c.saturating_sub(1);
            }
            match result {
                Ok(IoDone::Data(d)) => {
                    // Reads of one input may complete out of order (several I/O workers):
                    // append in file order, holding early ones until the gap closes.
                    if let Some(buf) = bufs.get_mut(input) {
                        if buf.len() as u64 == offset {
                            buf.extend_from_slice(&d);
                            while let Some(next) = early.remove(&(input, buf.len() as u64)) {
                                buf.extend_from_slice(&next);
                            }
                        } else {
                            early.insert((input, offset), d);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let name = inputs.get(input).map_or_else(String::new, |n| sst_name(*n));
                    job.error.get_or_insert(StoreError::io(name, e));
                }
            }
        } else if let Err(e) = &result {
            let is_tmp_remove =
                tag == JobTag::Seq && *e == IoError::NotFound && job.phase == JobPhase::Finishing;
            if !is_tmp_remove {
                let name = if job.renamed {
                    MANIFEST_NAME.into()
                } else {
                    sst_name(job.number)
                };
                job.error.get_or_insert(StoreError::io(name, e.clone()));
            }
        }
        if job.outstanding > 0 {
            return;
        }
        if job.error.is_some() {
            self.job_abort(slot);
            return;
        }
        // Bulk reads and writes are issued only by `end_of_turn`, so a turn never exceeds its
        // budget however fast completions arrive.
        match job.phase {
            JobPhase::Reading | JobPhase::Building | JobPhase::Writing => {}
            JobPhase::Creating => job.phase = JobPhase::Writing,
            JobPhase::Finishing => {
                if tag == JobTag::Seq
                    && let Some(FileOp::SyncDir) = job.seq_ops.front()
                {
                    job.renamed = true;
                }
                match job.seq_ops.pop_front() {
                    Some(op) => {
                        job.outstanding = 1;
                        self.io.submit(Owner::Job(slot, JobTag::Seq), op);
                    }
                    None => self.job_install(slot),
                }
            }
        }
    }

    pub(super) fn job_abort(&mut self, slot: usize) {
        let Some(job) = self.jobs[slot].take() else {
            return;
        };
        if let Some(e) = job.error.clone() {
            self.events.push_back(Event::Error(e));
        }
        self.job_backoff[slot] = JOB_RETRY_TURNS;
        if job.renamed {
            // The new manifest is in place: only the directory sync failed. Keep it.
            self.jobs[slot] = Some(job);
            self.job_install(slot);
            return;
        }
        if job.phase == JobPhase::Finishing {
            self.manifest_busy = false;
        }
        // Before `Creating` no output file exists yet.
        if !matches!(job.phase, JobPhase::Reading | JobPhase::Building) {
            self.io
                .submit(Owner::Ignore, FileOp::Close { handle: job.handle });
            self.io.submit(
                Owner::Ignore,
                FileOp::Remove {
                    name: sst_name(job.number),
                },
            );
        }
    }

    pub(super) fn job_install(&mut self, slot: usize) {
        let Some(mut job) = self.jobs[slot].take() else {
            return;
        };
        self.manifest_busy = false;
        let (Some(meta), Some(m)) = (job.meta.take(), job.new_manifest.take()) else {
            return;
        };
        self.manifest.flushed_seq = m.flushed_seq;
        self.manifest.files = m.files;
        self.install_file(job.number, job.handle, job.bytes.len() as u64, meta);
        match job.kind {
            JobKind::Flush { .. } => {
                self.frozen = None;
                let flushed = self.manifest.flushed_seq;
                let gone = self
                    .wal
                    .as_mut()
                    .map(|wal| wal.retire_upto(flushed))
                    .unwrap_or_default();
                for no in gone {
                    // Reopened to be shrunk before its removal (its writer closed it).
                    let handle = self.new_handle();
                    self.reclaim.push_back(FileOp::Open {
                        handle,
                        name: segment_name(no),
                        create: false,
                    });
                    self.reclaim_file(handle, segment_name(no), self.config.segment_bytes);
                }
                self.events.push_back(Event::Flushed { file: job.number });
            }
            JobKind::Compact { inputs, .. } => {
                for no in &inputs {
                    if let Some(f) = self.files.remove(no) {
                        self.files_version += 1;
                        for i in 0..f.meta.blocks.len() {
                            self.cache.remove((*no, i as u32));
                        }
                        self.retired.push((*no, f.handle, f.size));
                    }
                }
                self.close_retired();
                self.events.push_back(Event::Compacted {
                    inputs,
                    output: job.number,
                });
            }
        }
    }

    pub(super) fn close_retired(&mut self) {
        if self.retired.is_empty() {
            return;
        }
        let reads = &self.reads_in_flight;
        let mut done = Vec::new();
        self.retired.retain(|&(no, handle, size)| {
            if reads.get(&no).copied().unwrap_or(0) > 0 {
                return true;
            }
            done.push((no, handle, size));
            false
        });
        for (no, handle, size) in done {
            self.reclaim_file(handle, sst_name(no), size);
        }
    }
}
