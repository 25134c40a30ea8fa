//! Recovery: manifest, sorted files, commit-log replay, cleanup.

use super::*;

impl Store {
    // ---- recovery ----

    pub(super) fn fail_recovery(&mut self, e: StoreError) {
        self.events.push_back(Event::Error(e.clone()));
        self.phase = Phase::Failed(e);
    }

    pub(super) fn recovery_step(&mut self, result: IoResult) {
        let Phase::Recovering(mut rec) = std::mem::replace(&mut self.phase, Phase::Closed) else {
            return;
        };
        match self.recovery_advance(&mut rec, result) {
            Ok(true) => {
                self.phase = Phase::Ready;
                self.events.push_back(Event::Opened {
                    replayed: rec.replayed,
                });
            }
            Ok(false) => self.phase = Phase::Recovering(rec),
            Err(e) => self.fail_recovery(e),
        }
    }

    pub(super) fn new_handle(&mut self) -> FileHandle {
        self.next_handle += 1;
        FileHandle(self.next_handle)
    }

    /// Advances recovery by one completion; Ok(true) when done.
    pub(super) fn recovery_advance(
        &mut self,
        rec: &mut Recovery,
        result: IoResult,
    ) -> Result<bool, StoreError> {
        let sub = |io: &mut IoQueue, op| io.submit(Owner::Recovery, op);
        match rec.step {
            RStep::List => {
                let names = match result {
                    Ok(IoDone::Names(n)) => n,
                    Ok(_) => Vec::new(),
                    Err(e) => return Err(StoreError::io(".", e)),
                };
                let mut max_no = 0;
                let mut has_manifest = false;
                for n in names {
                    match parse_name(&n) {
                        Some((true, no)) => {
                            rec.seg_numbers.push(no);
                            max_no = max_no.max(no);
                        }
                        Some((false, no)) => {
                            max_no = max_no.max(no);
                            rec.other_names.push(n);
                        }
                        None if n == MANIFEST_NAME => has_manifest = true,
                        None if n == MANIFEST_TMP_NAME => rec.other_names.push(n),
                        None => {}
                    }
                }
                rec.seg_numbers.sort_unstable();
                self.manifest.next_file = max_no + 1;
                if has_manifest {
                    rec.handle = self.new_handle();
                    rec.step = RStep::ManifestOpen;
                    sub(
                        &mut self.io,
                        FileOp::Open {
                            handle: rec.handle,
                            name: MANIFEST_NAME.into(),
                            create: false,
                        },
                    );
                    return Ok(false);
                }
                self.recovery_next_sst(rec)
            }
            RStep::ManifestOpen => {
                result.map_err(|e| StoreError::io(MANIFEST_NAME, e))?;
                rec.step = RStep::ManifestRead;
                self.read_chunk(rec);
                Ok(false)
            }
            RStep::ManifestRead => {
                if !self.read_more(rec, result, MANIFEST_NAME, MANIFEST_BYTES_MAX)? {
                    return Ok(false);
                }
                let data = std::mem::take(&mut rec.buf);
                let m = Manifest::decode(&data).map_err(|error| StoreError::CorruptFile {
                    file: MANIFEST_NAME.into(),
                    error,
                })?;
                self.manifest.next_file = self.manifest.next_file.max(m.next_file);
                self.manifest.flushed_seq = m.flushed_seq;
                self.manifest.files = m.files;
                self.recovery_next_sst(rec)
            }
            RStep::SstOpen => {
                let f = self.sst_entry(rec.sst_idx)?;
                result.map_err(|e| StoreError::io(sst_name(f.number), e))?;
                if f.size < FOOTER_BYTES as u64 {
                    return Err(StoreError::CorruptFile {
                        file: sst_name(f.number),
                        error: crate::codec::FormatError::Truncated,
                    });
                }
                rec.step = RStep::SstFooter;
                sub(
                    &mut self.io,
                    FileOp::Read {
                        handle: rec.handle,
                        offset: f.size - FOOTER_BYTES as u64,
                        len: FOOTER_BYTES,
                    },
                );
                Ok(false)
            }
            RStep::SstFooter => {
                let f = self.sst_entry(rec.sst_idx)?;
                let data = read_data(result, &sst_name(f.number))?;
                let footer =
                    sst::decode_footer(&data, f.size).map_err(|error| StoreError::CorruptFile {
                        file: sst_name(f.number),
                        error,
                    })?;
                rec.footer = Some(footer);
                rec.step = RStep::SstMeta;
                sub(
                    &mut self.io,
                    FileOp::Read {
                        handle: rec.handle,
                        offset: footer.meta_offset,
                        len: footer.meta_len as usize,
                    },
                );
                Ok(false)
            }
            RStep::SstMeta => {
                let f = self.sst_entry(rec.sst_idx)?;
                let data = read_data(result, &sst_name(f.number))?;
                let footer = rec.footer.take().ok_or(StoreError::NotOpen)?;
                let meta =
                    sst::decode_meta(&data, footer).map_err(|error| StoreError::CorruptFile {
                        file: sst_name(f.number),
                        error,
                    })?;
                self.install_file(f.number, rec.handle, f.size, meta);
                rec.sst_idx += 1;
                self.recovery_next_sst(rec)
            }
            RStep::SegOpen => {
                let no = rec.seg_numbers.get(rec.seg_idx).copied().unwrap_or(0);
                result.map_err(|e| StoreError::io(segment_name(no), e))?;
                rec.step = RStep::SegRead;
                self.read_chunk(rec);
                Ok(false)
            }
            RStep::SegRead => {
                let no = rec.seg_numbers.get(rec.seg_idx).copied().unwrap_or(0);
                if !self.read_more(rec, result, &segment_name(no), SEGMENT_BYTES_MAX as usize)? {
                    return Ok(false);
                }
                self.io
                    .submit(Owner::Ignore, FileOp::Close { handle: rec.handle });
                rec.segs.push((no, std::mem::take(&mut rec.buf)));
                rec.seg_idx += 1;
                self.recovery_next_seg(rec)
            }
            RStep::Cleanup => {
                // Removals may find nothing; anything else failing is reported but harmless.
                if let Err(e) = result
                    && e != IoError::NotFound
                {
                    self.events
                        .push_back(Event::Error(StoreError::io("cleanup", e)));
                }
                match rec.cleanup.pop_front() {
                    Some(op) => {
                        sub(&mut self.io, op);
                        Ok(false)
                    }
                    None => Ok(true),
                }
            }
        }
    }

    /// Asks for the next chunk of the file being read whole.
    fn read_chunk(&mut self, rec: &Recovery) {
        self.io.submit(
            Owner::Recovery,
            FileOp::Read {
                handle: rec.handle,
                offset: rec.buf.len() as u64,
                len: RECOVERY_READ_CHUNK_BYTES,
            },
        );
    }

    /// Appends a chunk; Ok(true) once the file ended (short read). Files whose size is not known
    /// up front (the segment size may have changed since they were written) are read this way.
    fn read_more(
        &mut self,
        rec: &mut Recovery,
        result: IoResult,
        file: &str,
        max: usize,
    ) -> Result<bool, StoreError> {
        let data = read_data(result, file)?;
        let short = data.len() < RECOVERY_READ_CHUNK_BYTES;
        rec.buf.extend_from_slice(&data);
        if rec.buf.len() > max {
            return Err(StoreError::CorruptFile {
                file: file.into(),
                error: crate::codec::FormatError::TooLong(rec.buf.len()),
            });
        }
        if short {
            return Ok(true);
        }
        self.read_chunk(rec);
        Ok(false)
    }

    pub(super) fn sst_entry(&self, idx: usize) -> Result<FileEntry, StoreError> {
        self.manifest
            .files
            .get(idx)
            .copied()
            .ok_or(StoreError::NotOpen)
    }

    pub(super) fn recovery_next_sst(&mut self, rec: &mut Recovery) -> Result<bool, StoreError> {
        if let Some(f) = self.manifest.files.get(rec.sst_idx).copied() {
            rec.handle = self.new_handle();
            rec.step = RStep::SstOpen;
            self.io.submit(
                Owner::Recovery,
                FileOp::Open {
                    handle: rec.handle,
                    name: sst_name(f.number),
                    create: false,
                },
            );
            return Ok(false);
        }
        self.recovery_next_seg(rec)
    }

    pub(super) fn recovery_next_seg(&mut self, rec: &mut Recovery) -> Result<bool, StoreError> {
        if let Some(no) = rec.seg_numbers.get(rec.seg_idx).copied() {
            rec.handle = self.new_handle();
            rec.step = RStep::SegOpen;
            self.io.submit(
                Owner::Recovery,
                FileOp::Open {
                    handle: rec.handle,
                    name: segment_name(no),
                    create: false,
                },
            );
            return Ok(false);
        }
        self.replay(rec)?;
        rec.step = RStep::Cleanup;
        rec.cleanup.push_back(FileOp::SyncDir);
        self.recovery_advance(rec, Ok(IoDone::Unit))
    }

    /// Applies the log after the last flush; stops at the first bad record of each segment and
    /// checks that every segment starts where the good records before it end.
    pub(super) fn replay(&mut self, rec: &mut Recovery) -> Result<(), StoreError> {
        let flushed = self.manifest.flushed_seq;
        let mut records: Vec<Version> = Vec::new();
        let mut segments = Vec::new();
        let mut expected = flushed + 1;
        let mut first = true;
        for (no, data) in std::mem::take(&mut rec.segs) {
            let h = match wal::decode_header(&data) {
                HeaderState::Valid(h) => h,
                HeaderState::Empty | HeaderState::Invalid(_) => {
                    // Never held an acknowledged record (headers are written before any ack);
                    // losses are still caught by the next segment's start sequence.
                    rec.cleanup.push_front(FileOp::Remove {
                        name: segment_name(no),
                    });
                    continue;
                }
            };
            if h.start_seq > expected || (first && h.start_seq > flushed + 1) {
                return Err(StoreError::LogGap {
                    file: segment_name(no),
                    expected,
                    found: h.start_seq,
                });
            }
            first = false;
            records.retain(|v| v.seq < h.start_seq);
            let scan = wal::scan_records(&data, &h);
            let _clean_end = scan.stop == Stop::End;
            records.extend(scan.records);
            // Records up to `flushed` live in sorted files: a segment retired after a flush may
            // have come back with the directory, and its successor may start past its end.
            expected = records
                .last()
                .map_or(h.start_seq, |v| v.seq + 1)
                .max(h.start_seq)
                .max(flushed + 1);
            segments.push(Segment {
                number: no,
                start_seq: h.start_seq,
            });
        }
        let mut next_seq = flushed + 1;
        for v in records {
            if v.seq > flushed {
                next_seq = v.seq + 1;
                self.apply(v);
                rec.replayed += 1;
            }
        }
        let live: BTreeSet<u64> = self.manifest.files.iter().map(|f| f.number).collect();
        for n in std::mem::take(&mut rec.other_names) {
            let orphan = match parse_name(&n) {
                Some((false, no)) => !live.contains(&no),
                _ => n == MANIFEST_TMP_NAME,
            };
            if orphan {
                rec.cleanup.push_front(FileOp::Remove { name: n });
            }
        }
        let mut wal = WalWriter::new(self.config.segment_bytes, segments, next_seq);
        // The writer opens a fresh segment starting at next_seq; older ones go once flushed.
        for no in wal.retire_upto(flushed) {
            rec.cleanup.push_front(FileOp::Remove {
                name: segment_name(no),
            });
        }
        self.wal = Some(wal);
        Ok(())
    }

    pub(super) fn apply(&mut self, v: Version) {
        if let Key::Msg(p, _) = v.body.key() {
            self.directory
                .entry(p.channel_id)
                .or_default()
                .insert(p.bucket);
        }
        self.mem.insert(v);
    }

    pub(super) fn install_file(
        &mut self,
        number: u64,
        handle: FileHandle,
        size: u64,
        meta: SstMeta,
    ) {
        let mut window = None;
        for p in meta.parts.keys() {
            if let Part::Msg(k) = p {
                self.directory
                    .entry(k.channel_id)
                    .or_default()
                    .insert(k.bucket);
                window = Some(window.map_or(k.bucket, |w: u32| w.max(k.bucket)));
            }
        }
        self.files_version += 1;
        self.files.insert(
            number,
            LiveFile {
                handle,
                size,
                meta,
                window: window.unwrap_or(u32::MAX),
            },
        );
    }
}

fn read_data(result: IoResult, file: &str) -> Result<Vec<u8>, StoreError> {
    match result {
        Ok(IoDone::Data(d)) => Ok(d),
        Ok(_) => Ok(Vec::new()),
        Err(e) => Err(StoreError::io(file, e)),
    }
}
