//! In-memory disk with real fsync semantics and fault injection, and a harness that drives a
//! `Store` against it. Used by this crate's tests; the engine has its own simulated disk.

use std::collections::{BTreeMap, HashMap};

use crate::io::{FileHandle, FileOp, IoDone, IoError, IoRequest, IoResult};
use crate::store::{Config, Event, Store};

/// Granularity of torn writes.
pub const SECTOR_BYTES: usize = 512;

#[derive(Debug, Clone, Default)]
struct SimFile {
    data: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<(usize, usize)>,
}

/// What a crash does to writes that were not fdatasync'd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced write is lost.
    LoseUnsynced,
    /// Each unsynced write is kept, lost, torn at sector granularity, or corrupted in the
    /// bytes it changed, at random.
    Chaos,
}

/// A deterministic in-memory directory.
#[derive(Debug)]
pub struct MemDisk {
    inodes: HashMap<u64, SimFile>,
    names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    handles: HashMap<FileHandle, u64>,
    next_inode: u64,
    /// Total bytes the disk holds; writes past it fail with `NoSpace`.
    pub capacity_bytes: u64,
    /// Probability in parts per million that a write or fdatasync fails with EIO.
    pub eio_ppm: u32,
    rng: u64,
}

impl MemDisk {
    /// An empty disk seeded for its random choices.
    pub fn new(seed: u64) -> Self {
        Self {
            inodes: HashMap::new(),
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            handles: HashMap::new(),
            next_inode: 1,
            capacity_bytes: u64::MAX,
            eio_ppm: 0,
            rng: seed | 1,
        }
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn used(&self) -> u64 {
        self.inodes.values().map(|f| f.data.len() as u64).sum()
    }

    /// Adds a durable file (fixtures).
    pub fn insert_file(&mut self, name: &str, bytes: Vec<u8>) {
        let i = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(
            i,
            SimFile {
                data: bytes.clone(),
                durable: bytes,
                unsynced: Vec::new(),
            },
        );
        self.names.insert(name.to_owned(), i);
        self.durable_names.insert(name.to_owned(), i);
    }

    /// Names currently visible.
    pub fn names(&self) -> Vec<String> {
        self.names.keys().cloned().collect()
    }

    /// Current contents of a file.
    pub fn contents(&self, name: &str) -> Option<&[u8]> {
        self.names
            .get(name)
            .and_then(|i| self.inodes.get(i))
            .map(|f| f.data.as_slice())
    }

    /// Flips bits of one durable byte (corruption at rest); `xor` is forced non-zero.
    pub fn corrupt(&mut self, name: &str, offset: usize, xor: u8) {
        if let Some(f) = self.names.get(name).and_then(|i| self.inodes.get_mut(i))
            && let Some(a) = f.data.get_mut(offset)
        {
            *a ^= xor | 1;
            f.durable = f.data.clone();
        }
    }

    fn injected_eio(&mut self) -> bool {
        self.eio_ppm > 0 && self.rand() % 1_000_000 < u64::from(self.eio_ppm)
    }

    /// Carries out one operation.
    pub fn execute(&mut self, op: FileOp) -> IoResult {
        match op {
            FileOp::Open {
                handle,
                name,
                create,
            } => {
                let ino = match self.names.get(&name) {
                    Some(i) => *i,
                    None if create => {
                        let i = self.next_inode;
                        self.next_inode += 1;
                        self.inodes.insert(i, SimFile::default());
                        self.names.insert(name, i);
                        i
                    }
                    None => return Err(IoError::NotFound),
                };
                self.handles.insert(handle, ino);
                Ok(IoDone::Unit)
            }
            FileOp::Close { handle } => {
                self.handles.remove(&handle);
                Ok(IoDone::Unit)
            }
            FileOp::Write {
                handle,
                offset,
                data,
            } => {
                if self.injected_eio() {
                    return Err(IoError::Os(5));
                }
                let used = self.used();
                let cap = self.capacity_bytes;
                let f = self.file(handle)?;
                let end = offset as usize + data.len();
                let grow = end.saturating_sub(f.data.len()) as u64;
                if used + grow > cap {
                    return Err(IoError::NoSpace);
                }
                if f.data.len() < end {
                    f.data.resize(end, 0);
                }
                if let Some(dst) = f.data.get_mut(offset as usize..end) {
                    dst.copy_from_slice(&data);
                }
                f.unsynced.push((offset as usize, data.len()));
                Ok(IoDone::Written(data))
            }
            FileOp::WriteDurable {
                handle,
                offset,
                data,
            } => {
                // A write, then an fdatasync of the file, with the faults of both.
                let done = self.execute(FileOp::Write {
                    handle,
                    offset,
                    data,
                })?;
                self.execute(FileOp::Fdatasync { handle })?;
                Ok(done)
            }
            FileOp::Read {
                handle,
                offset,
                len,
            } => {
                let f = self.file(handle)?;
                let start = (offset as usize).min(f.data.len());
                let end = start.saturating_add(len).min(f.data.len());
                Ok(IoDone::Data(
                    f.data
                        .get(start..end)
                        .map(<[u8]>::to_vec)
                        .unwrap_or_default(),
                ))
            }
            FileOp::Fdatasync { handle } => {
                if self.injected_eio() {
                    return Err(IoError::Os(5));
                }
                let f = self.file(handle)?;
                f.durable = f.data.clone();
                f.unsynced.clear();
                Ok(IoDone::Unit)
            }
            FileOp::Truncate { handle, len } => {
                // Modelled as durable at once: the store shrinks only files it no longer
                // needs, so either outcome of a crash is one recovery must handle anyway.
                let f = self.file(handle)?;
                let len = len as usize;
                f.data.truncate(len);
                f.durable.truncate(len);
                f.unsynced = f
                    .unsynced
                    .iter()
                    .filter(|(o, _)| *o < len)
                    .map(|&(o, l)| (o, l.min(len - o)))
                    .collect();
                Ok(IoDone::Unit)
            }
            FileOp::Preallocate { handle, len } => {
                let used = self.used();
                let cap = self.capacity_bytes;
                let f = self.file(handle)?;
                let grow = (len as usize).saturating_sub(f.data.len()) as u64;
                if used + grow > cap {
                    return Err(IoError::NoSpace);
                }
                if f.data.len() < len as usize {
                    let old = f.data.len();
                    f.data.resize(len as usize, 0);
                    f.unsynced.push((old, len as usize - old));
                }
                Ok(IoDone::Unit)
            }
            FileOp::Rename { from, to } => {
                let i = self.names.remove(&from).ok_or(IoError::NotFound)?;
                self.names.insert(to, i);
                Ok(IoDone::Unit)
            }
            FileOp::Remove { name } => {
                self.names.remove(&name).ok_or(IoError::NotFound)?;
                Ok(IoDone::Unit)
            }
            FileOp::SyncDir => {
                self.durable_names = self.names.clone();
                self.gc();
                Ok(IoDone::Unit)
            }
            FileOp::ListDir => Ok(IoDone::Names(self.names.keys().cloned().collect())),
        }
    }

    fn file(&mut self, h: FileHandle) -> Result<&mut SimFile, IoError> {
        let ino = *self.handles.get(&h).ok_or(IoError::Os(9))?;
        self.inodes.get_mut(&ino).ok_or(IoError::Os(9))
    }

    fn gc(&mut self) {
        let live: std::collections::HashSet<u64> = self
            .names
            .values()
            .chain(self.durable_names.values())
            .chain(self.handles.values())
            .copied()
            .collect();
        self.inodes.retain(|i, _| live.contains(i));
    }

    /// Power loss: handles close, unsynced writes meet their fate, the directory reverts to its
    /// last sync (or, at random in `Chaos`, keeps every change).
    pub fn crash(&mut self, mode: CrashMode) {
        self.handles.clear();
        let keep_dir = mode == CrashMode::Chaos && self.rand().is_multiple_of(2);
        if !keep_dir {
            self.names = self.durable_names.clone();
        }
        let mut inos: Vec<u64> = self.inodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            let Some(mut f) = self.inodes.remove(&ino) else {
                continue;
            };
            let mut out = f.durable.clone();
            for (off, len) in std::mem::take(&mut f.unsynced) {
                let fate = if mode == CrashMode::Chaos {
                    self.rand() % 4
                } else {
                    1
                };
                let end = off + len;
                if fate == 1 {
                    continue;
                }
                if out.len() < end {
                    out.resize(end, 0);
                }
                let mut s = off;
                while s < end {
                    let e = (s - s % SECTOR_BYTES + SECTOR_BYTES).min(end);
                    let take = match fate {
                        0 => true,
                        _ => self.rand().is_multiple_of(2),
                    };
                    if take && let (Some(dst), Some(src)) = (out.get_mut(s..e), f.data.get(s..e)) {
                        // Garbage only where the write changed bytes: a device writes whole
                        // logical blocks atomically, so bytes rewritten with the same value
                        // (the commit log's tail block) are never damaged.
                        let changed = dst.iter().zip(src).position(|(a, b)| a != b);
                        dst.copy_from_slice(src);
                        if fate == 3
                            && self.rand().is_multiple_of(4)
                            && let Some(b) = changed.and_then(|i| dst.get_mut(i))
                        {
                            *b ^= 0x5a;
                        }
                    }
                    s = e;
                }
            }
            f.data = out.clone();
            f.durable = out;
            self.inodes.insert(ino, f);
        }
        self.gc();
    }
}

/// Drives a store against a `MemDisk`, completing requests in random order.
#[derive(Debug)]
pub struct Harness {
    /// The store under test.
    pub store: Store,
    /// Its disk.
    pub disk: MemDisk,
    /// Events seen, oldest first, drained by the test.
    pub events: Vec<Event>,
    config: Config,
    inflight: Vec<IoRequest>,
    rng: u64,
}

impl Harness {
    /// A fresh store on a fresh disk, opened.
    pub fn new(config: Config, seed: u64) -> Self {
        Self::with_disk(config, MemDisk::new(seed), seed)
    }

    /// A store opened on an existing disk.
    pub fn with_disk(config: Config, disk: MemDisk, seed: u64) -> Self {
        let mut h = Self {
            store: Store::new(config),
            disk,
            events: Vec::new(),
            config,
            inflight: Vec::new(),
            rng: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
        };
        h.store.open();
        h.settle();
        h
    }

    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// One loop turn: take new requests, complete some of the in-flight ones in random order,
    /// then end the turn.
    pub fn turn(&mut self) {
        while let Some(r) = self.store.poll_io() {
            self.inflight.push(r);
        }
        let n = self.inflight.len();
        if n > 0 {
            let k = 1 + (self.rand() as usize % n);
            for _ in 0..k {
                let i = self.rand() as usize % self.inflight.len();
                let r = self.inflight.swap_remove(i);
                let res = self.disk.execute(r.op);
                self.store.complete_io(r.id, res);
            }
        }
        self.store.end_of_turn();
        while let Some(e) = self.store.poll_event() {
            self.events.push(e);
        }
    }

    /// Turns until the store is idle with nothing in flight (bounded).
    pub fn settle(&mut self) {
        for _ in 0..100_000 {
            self.turn();
            if self.inflight.is_empty() && self.store.is_idle() {
                return;
            }
        }
        panic!("store did not settle");
    }

    /// Crashes the disk (requests in flight are lost) and recovers a new store on it.
    pub fn crash_and_reopen(&mut self, mode: CrashMode) {
        self.inflight.clear();
        self.disk.crash(mode);
        self.store = Store::new(self.config);
        self.store.open();
        self.settle();
    }
}

/// A message whose every field derives from its id, so a checker can rebuild it exactly.
pub fn sample_message(channel_id: u64, id: u64) -> crate::message::Message {
    crate::message::Message {
        id,
        channel_id,
        guild_id: 1,
        author_id: id % 97 + 1,
        kind: 0,
        content: format!("msg {id} {}", "x".repeat((id % 61) as usize)),
        flags: id % 3,
        edited_timestamp_ms: None,
        mentions: vec![id % 11],
        extra_json: Vec::new(),
        reactions: Vec::new(),
        pinned: id.is_multiple_of(13),
        referenced_message_id: None,
        nonce: Some(format!("n{id}")),
    }
}
