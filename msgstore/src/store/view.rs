//! Query execution: a merged view over memtables and sorted files, block reads.

use super::*;

impl Store {
    // ---- queries ----

    pub(super) fn run_query(&mut self, qid: u64) {
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        let mut missing = Vec::new();
        let mut src = View {
            files: &self.files,
            mem: &self.mem,
            frozen: self.frozen.as_ref(),
            cache: &mut self.cache,
            loaded: &mut q.loaded,
            missing: &mut missing,
            directory: &self.directory,
        };
        match query::evaluate(&q.query, &mut src) {
            Ok(result) => {
                let token = q.token;
                self.queries.remove(&qid);
                self.events.push_back(Event::QueryDone {
                    token,
                    result: Ok(result),
                });
            }
            Err(Missing) => {
                for id in missing {
                    let Some(f) = self.files.get(&id.0) else {
                        continue;
                    };
                    let Some(b) = f.meta.blocks.get(id.1 as usize) else {
                        continue;
                    };
                    self.io.submit(
                        Owner::Query(qid, id),
                        FileOp::Read {
                            handle: f.handle,
                            offset: b.offset,
                            len: b.len as usize,
                        },
                    );
                    *self.reads_in_flight.entry(id.0).or_default() += 1;
                    q.outstanding += 1;
                }
                if q.outstanding == 0 {
                    let token = q.token;
                    self.queries.remove(&qid);
                    self.events.push_back(Event::QueryDone {
                        token,
                        result: Err(StoreError::NotOpen),
                    });
                }
            }
        }
    }

    pub(super) fn query_complete(&mut self, qid: u64, id: BlockId, result: IoResult) {
        if let Some(c) = self.reads_in_flight.get_mut(&id.0) {
            *c = c.saturating_sub(1);
        }
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        q.outstanding = q.outstanding.saturating_sub(1);
        match result {
            Ok(IoDone::Data(d)) => match sst::decode_block(&d) {
                Ok(block) => {
                    let block = std::sync::Arc::new(block);
                    self.cache
                        .insert(id, std::sync::Arc::clone(&block), d.len());
                    q.loaded.insert(id, block);
                }
                Err(error) => {
                    q.error.get_or_insert(StoreError::CorruptFile {
                        file: sst_name(id.0),
                        error,
                    });
                }
            },
            Ok(_) => {}
            Err(e) => {
                q.error.get_or_insert(StoreError::io(sst_name(id.0), e));
            }
        }
        if q.outstanding > 0 {
            return;
        }
        if let Some(e) = q.error.take() {
            let token = q.token;
            self.queries.remove(&qid);
            self.events.push_back(Event::QueryDone {
                token,
                result: Err(e),
            });
            self.close_retired();
            return;
        }
        self.run_query(qid);
        self.close_retired();
    }
}

/// Merged view over sorted files, frozen and live memtables for one query evaluation.
struct View<'a> {
    files: &'a BTreeMap<u64, LiveFile>,
    mem: &'a Memtable,
    frozen: Option<&'a Memtable>,
    cache: &'a mut BlockCache,
    loaded: &'a mut HashMap<BlockId, crate::block_cache::Block>,
    missing: &'a mut Vec<BlockId>,
    directory: &'a BTreeMap<u64, BTreeSet<u32>>,
}

impl View<'_> {
    /// Newest version per key in `[lo, hi]` of `part` from the files, or Missing.
    pub(super) fn versions_in_files(
        &mut self,
        part: &Part,
        lo: &Key,
        hi: &Key,
    ) -> Result<BTreeMap<Key, Version>, Missing> {
        let mut ids = Vec::new();
        for (no, f) in self.files {
            for b in f.meta.blocks_for(part, lo, hi) {
                let id = (*no, b);
                if self.loaded.contains_key(&id) || self.cache.touch(id) {
                    ids.push(id);
                } else {
                    self.missing.push(id);
                }
            }
        }
        if !self.missing.is_empty() {
            return Err(Missing);
        }
        let cache: &BlockCache = self.cache;
        let blocks = ids.iter().filter_map(|id| {
            self.loaded
                .get(id)
                .map(|b| &**b)
                .or_else(|| cache.peek(*id))
        });
        let mut out: BTreeMap<Key, Version> = BTreeMap::new();
        for blk in blocks {
            for v in blk.iter() {
                let k = v.body.key();
                if k < *lo || k > *hi {
                    continue;
                }
                if out.get(&k).is_none_or(|o| o.seq < v.seq) {
                    out.insert(k, v.clone());
                }
            }
        }
        Ok(out)
    }
}

impl Source for View<'_> {
    fn buckets(&self, channel_id: u64) -> Vec<u32> {
        self.directory
            .get(&channel_id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    fn rows(
        &mut self,
        p: PartitionKey,
        lo: u64,
        hi: u64,
    ) -> Result<BTreeMap<u64, Message>, Missing> {
        let mut merged =
            self.versions_in_files(&Part::Msg(p), &Key::Msg(p, lo), &Key::Msg(p, hi))?;
        for m in [self.frozen, Some(self.mem)].into_iter().flatten() {
            if let Some(rows) = m.partition(&p) {
                for (id, v) in rows.range(lo..=hi) {
                    let k = Key::Msg(p, *id);
                    if merged.get(&k).is_none_or(|o| o.seq < v.seq) {
                        merged.insert(k, v.clone());
                    }
                }
            }
        }
        Ok(merged
            .into_values()
            .filter_map(|v| match v.body {
                Body::Message(m) => Some((m.id, m)),
                _ => None,
            })
            .collect())
    }

    fn read_state(&mut self, user_id: u64, channel_id: u64) -> Result<Option<ReadState>, Missing> {
        let k = Key::Read(user_id, channel_id);
        let mut best = self
            .versions_in_files(&Part::Read(user_id), &k, &k)?
            .remove(&k);
        for m in [self.frozen, Some(self.mem)].into_iter().flatten() {
            if let Some(v) = m.read_state(user_id, channel_id)
                && best.as_ref().is_none_or(|b| b.seq < v.seq)
            {
                best = Some(v.clone());
            }
        }
        Ok(best.and_then(|v| match v.body {
            Body::ReadState(r) => Some(r),
            _ => None,
        }))
    }
}
