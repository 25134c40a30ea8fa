//! Background jobs: flush and compaction in bounded steps, manifest installs.

use super::*;
use crate::limits::SST_FILES_MAX;

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
                let (bytes, meta) = sst::build(frozen.iter(), self.config.compression);
                let max_seq = frozen.max_seq();
                self.start_write_job(FLUSH, JobKind::Flush { max_seq }, bytes, meta);
            }
        }
        if self.jobs[COMPACT].is_some() || self.job_backoff[COMPACT] > 0 {
            return;
        }
        let plan = if std::mem::take(&mut self.compact_requested) {
            compaction::choose_all(&self.file_infos())
        } else if self.config.auto_compact {
            compaction::choose(&self.file_infos())
        } else {
            None
        };
        if let Some(Plan { inputs }) = plan {
            let bufs = inputs
                .iter()
                .map(|n| vec![0; self.files.get(n).map_or(0, |f| f.size as usize)])
                .collect();
            self.jobs[COMPACT] = Some(Job {
                kind: JobKind::Compact {
                    inputs,
                    bufs,
                    next_input: 0,
                    next_offset: 0,
                },
                phase: JobPhase::Reading,
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
            });
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
                    bufs,
                    next_input,
                    next_offset,
                } = &mut job.kind
                else {
                    return 0;
                };
                while issued < budget {
                    let (Some(no), Some(buf)) = (inputs.get(*next_input), bufs.get(*next_input))
                    else {
                        break;
                    };
                    let Some(f) = self.files.get(no) else { break };
                    let len =
                        (buf.len() as u64 - *next_offset).min((budget - issued) as u64) as usize;
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
                    if *next_offset >= buf.len() as u64 {
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
                while issued < budget && job.next_off < job.bytes.len() {
                    let end = (job.next_off + budget - issued).min(job.bytes.len());
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
            JobPhase::Creating | JobPhase::Finishing => {}
        }
        issued
    }

    pub(super) fn finish_reading(&mut self, slot: usize) {
        let Some(mut job) = self.jobs[slot].take() else {
            return;
        };
        let JobKind::Compact { inputs, bufs, .. } = &mut job.kind else {
            return;
        };
        let mut versions = Vec::new();
        for (no, buf) in inputs.iter().zip(bufs.iter()) {
            let Some(f) = self.files.get(no) else {
                continue;
            };
            for b in &f.meta.blocks {
                let blk = buf
                    .get(b.offset as usize..(b.offset + u64::from(b.len)) as usize)
                    .unwrap_or_default();
                match sst::decode_block(blk) {
                    Ok(v) => versions.extend(v),
                    Err(error) => {
                        self.events.push_back(Event::Error(StoreError::CorruptFile {
                            file: sst_name(*no),
                            error,
                        }));
                        self.job_backoff[slot] = JOB_RETRY_TURNS;
                        return;
                    }
                }
            }
        }
        // A concurrent flush only adds files newer than every input, so this view of "older
        // data elsewhere" stays valid until the merge is installed.
        let input_set: BTreeSet<u64> = inputs.iter().copied().collect();
        let others: Vec<&LiveFile> = self
            .files
            .iter()
            .filter(|(n, _)| !input_set.contains(n))
            .map(|(_, f)| f)
            .collect();
        let older_elsewhere = |p: &Part, seq: u64| {
            others.iter().any(|f| {
                f.meta.footer.min_seq < seq
                    && f.meta.bloom.may_contain(p)
                    && f.meta.parts.contains_key(p)
            })
        };
        let merged = compaction::merge(versions, self.now_ms, &older_elsewhere);
        let (bytes, meta) = sst::build(merged.iter(), self.config.compression);
        let inputs = std::mem::take(inputs);
        self.start_write_job(
            slot,
            JobKind::Compact {
                inputs,
                bufs: Vec::new(),
                next_input: 0,
                next_offset: 0,
            },
            bytes,
            meta,
        );
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
            && let JobKind::Compact { inputs, bufs, .. } = &mut job.kind
        {
            if let Some(no) = inputs.get(input)
                && let Some(c) = self.reads_in_flight.get_mut(no)
            {
                *c = c.saturating_sub(1);
            }
            match &result {
                Ok(IoDone::Data(d)) => {
                    if let Some(dst) = bufs
                        .get_mut(input)
                        .and_then(|b| b.get_mut(offset as usize..offset as usize + d.len()))
                    {
                        dst.copy_from_slice(d);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let name = inputs.get(input).map_or_else(String::new, |n| sst_name(*n));
                    job.error.get_or_insert(StoreError::io(name, e.clone()));
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
            JobPhase::Reading | JobPhase::Writing => {}
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
        if job.phase != JobPhase::Reading {
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
                if let Some(wal) = self.wal.as_mut() {
                    for no in wal.retire_upto(flushed) {
                        self.io.submit(
                            Owner::Ignore,
                            FileOp::Remove {
                                name: segment_name(no),
                            },
                        );
                    }
                }
                self.events.push_back(Event::Flushed { file: job.number });
            }
            JobKind::Compact { inputs, .. } => {
                for no in &inputs {
                    if let Some(f) = self.files.remove(no) {
                        for i in 0..f.meta.blocks.len() {
                            self.cache.remove((*no, i as u32));
                        }
                        self.retired.push((*no, f.handle));
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
        let reads = &self.reads_in_flight;
        let io = &mut self.io;
        self.retired.retain(|(no, handle)| {
            if reads.get(no).copied().unwrap_or(0) > 0 {
                return true;
            }
            io.submit(Owner::Ignore, FileOp::Close { handle: *handle });
            io.submit(
                Owner::Ignore,
                FileOp::Remove {
                    name: sst_name(*no),
                },
            );
            false
        });
    }
}
