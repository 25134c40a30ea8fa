//! Runs a shard's sans-IO `msgstore::Store` on any [`Driver`]: the store's `FileOp`s become
//! driver operations and their completions go back to the store.
//!
//! # Loop turn
//!
//! The shard calls, in every turn of its loop:
//! 1. `Driver::run`, then [`StoreIo::on_completion`] for each completion whose token
//!    [`StoreIo::owns`];
//! 2. its own work: `Store::append`, `Store::query`, ... and draining `Store::poll_event`;
//! 3. [`StoreIo::submit`] last: it ends the store's turn (`Store::end_of_turn` seals every
//!    append of this turn into one group) and hands every request the store has to the driver.
//!
//! So group commit is: all appends of one turn go out as ONE durable write
//! (`FileOp::WriteDurable`) on the O_DIRECT commit-log segment. The adapter carries it out as
//! ONE write and, when that completes, ONE fdatasync it submits itself at the next `submit`
//! (the driver has no write with `RWF_DSYNC` yet); the store acknowledges the group after that.
//! Appends made while a group is in flight wait for the next group (the store keeps one group in
//! flight, so the tail block is never written twice at once).
//!
//! # Tokens
//!
//! Every submission carries `kind << TOKEN_KIND_SHIFT | n` where `kind` is the 8-bit prefix the
//! caller chose (the shard's token layout keeps its top 8 bits for the operation kind) and `n`
//! counts this adapter's operations; `owns` tests the prefix.
//!
//! # What goes through the driver, and what does not
//!
//! Data operations are asynchronous driver operations: `Write` → `Op::WriteAt`, `WriteDurable`
//! → `Op::WriteAt` then `Op::Fdatasync`, `Read` → `Op::ReadAt`, `Fdatasync` → `Op::Fdatasync`,
//! `Close` → `Op::CloseFile`. `Open` uses
//! `Driver::open_file`, which is synchronous by contract (setup-time `open(2)` on io_uring).
//!
//! The driver has no operation for directory metadata, so `Rename`, `Remove`, `SyncDir`,
//! `ListDir` and `Preallocate` are a deliberately minimal **blocking fallback** behind the
//! [`StoreDir`] trait, run inside `submit` and completed at once: [`FsDir`] makes the system calls
//! (rename, unlink, fsync of the directory, readdir, fallocate) on the shard thread, and
//! [`SimDir`] keeps the directory of the simulated disk (which models file data only). They are
//! rare: a segment roll-over every `segment_bytes` of log, a manifest install per flush or
//! compaction, a directory listing at recovery; each costs the loop one system call's latency.
//! io_uring has RENAMEAT, UNLINKAT, FALLOCATE and FSYNC on a directory descriptor; moving them
//! into the driver later changes nothing for the store.
//!
//! # Files and O_DIRECT
//!
//! Commit-log segments the store creates (`wal-N.log`, `create: true`) are opened with O_DIRECT:
//! the store's group writes are 4096-aligned in offset and length, and bypassing the page cache
//! makes the write + fdatasync pair the only cost of durability. If the file system refuses
//! O_DIRECT (tmpfs answers EINVAL), the file is opened buffered instead; durability still comes
//! from fdatasync ([`StoreIoStats::direct_fallbacks`] counts it). Everything else (recovery
//! reads, sorted files, the manifest) is buffered: sorted-file reads are small and unaligned and
//! the page cache is the second cache level under the store's block cache.
//!
//! # Buffers
//!
//! Writes are copied into pooled [`AlignedBuf`]s (power-of-two classes up to
//! [`POOL_CLASS_MAX_BYTES`], a few idle ones kept per class); reads land in one and are copied out
//! into the `Vec` the store takes. A buffer is moved into its `Op` and comes back only with the
//! completion, so it cannot be reused or freed while the kernel may touch it. The store's write
//! `Vec` is kept while its write is in flight and handed back in `IoDone::Written`, so the store
//! reuses it (and finds the new tail block in it).
//!
//! # Short transfers and a full ring
//!
//! A short write is continued from where it stopped; a short read is continued until the range
//! is filled or a read returns 0 bytes (end of file), so the store's "short read = end of file"
//! rule holds even if the kernel splits a read. Each operation gets at most
//! [`SHORT_IO_RESUBMITS_MAX`] continuations. A request the driver refuses because its queue is
//! full waits in a bounded queue for the next `submit`; any other refusal becomes an I/O error for
//! the store, which knows what a failed operation means (a failed group moves to a new segment).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use msgstore::io::parse_name;
use msgstore::limits::{GROUP_BYTES_MAX, IO_ALIGN_BYTES, RECOVERY_READ_CHUNK_BYTES};
use msgstore::{FileHandle, FileOp, IoDone, IoError, IoId, IoRequest, IoResult, Store};

use crate::buf::{AlignedBuf, DIRECT_ALIGN};
use crate::driver::{
    Completion, CompletionKind, Driver, DriverError, FileId, FileOptions, Op, Token,
};

/// Position of the caller's 8-bit kind in a token (the shard keeps its top 8 bits for it).
pub const TOKEN_KIND_SHIFT: u32 = 56;
/// Low token bits: this adapter's operation counter.
const TOKEN_LOW_MASK: u64 = (1 << TOKEN_KIND_SHIFT) - 1;

/// Smallest pooled buffer.
pub const POOL_CLASS_MIN_BYTES: usize = DIRECT_ALIGN;
/// Largest pooled buffer: a whole group commit (its bytes, the rewritten tail block, padding)
/// and a recovery read chunk fit; anything larger (a big sorted-file meta section) gets a buffer
/// of its own that is freed when its operation completes.
pub const POOL_CLASS_MAX_BYTES: usize = 2 * 1024 * 1024;
/// Power-of-two classes between the smallest and the largest pooled buffer.
const POOL_CLASSES: usize =
    (POOL_CLASS_MAX_BYTES.trailing_zeros() - POOL_CLASS_MIN_BYTES.trailing_zeros()) as usize + 1;
/// Idle buffers kept per class; more are freed (the store has only a few writes in flight and
/// reads are bounded by its query limit, so a handful per class covers steady state).
pub const POOL_IDLE_PER_CLASS: usize = 8;
/// Continuations one short read or write may get before it fails with EIO (no progress).
pub const SHORT_IO_RESUBMITS_MAX: u32 = 16;
/// Requests held back while the driver's queue is full; past it a request fails with EAGAIN.
pub const DEFERRED_REQUESTS_MAX: usize = 4096;
/// Requests taken from the store per `submit` (a guard against a runaway chain of synchronous
/// completions; the rest wait in the store's own queue for the next turn).
pub const REQUESTS_PER_SUBMIT_MAX: usize = 1 << 16;

const _: () = assert!(POOL_CLASS_MIN_BYTES.is_power_of_two());
const _: () = assert!(POOL_CLASS_MAX_BYTES.is_power_of_two());
const _: () = assert!(IO_ALIGN_BYTES.is_multiple_of(DIRECT_ALIGN));
const _: () = assert!(POOL_CLASS_MAX_BYTES >= GROUP_BYTES_MAX + 2 * IO_ALIGN_BYTES);
const _: () = assert!(POOL_CLASS_MAX_BYTES >= RECOVERY_READ_CHUNK_BYTES);

/// Setting up an adapter's directory failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreIoError {
    /// Creating or opening the data directory failed.
    #[error("store directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Directory metadata operations the driver has no operation for (the blocking fallback).
///
/// Names are the store's file names (no `/`); paths are what `Driver::open_file` opens.
pub trait StoreDir {
    /// The path to open for `name`; `NotFound` if it does not exist and `create` is off. With
    /// `create` the name may be entered in the directory before the open succeeds.
    fn path_for(&mut self, name: &str, create: bool) -> Result<PathBuf, IoError>;
    /// The open of a name just created by `path_for` failed: forget the entry.
    fn abandon(&mut self, name: &str);
    /// Reserve `len` bytes of the file at `path` so later writes in range need no allocation.
    fn preallocate(&mut self, path: &Path, len: u64) -> Result<(), IoError>;
    /// Shrink the file at `path` to `len` bytes. The store shrinks only files it is about to
    /// remove, in steps, so freeing their blocks never holds the device for long; a directory
    /// that cannot shrink may skip it (the removal frees the rest).
    fn truncate(&mut self, _path: &Path, _len: u64) -> Result<(), IoError> {
        Ok(())
    }
    /// Atomically rename `from` to `to`, replacing `to`.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), IoError>;
    /// Remove `name`.
    fn remove(&mut self, name: &str) -> Result<(), IoError>;
    /// Make creations, renames and removals so far durable.
    fn sync(&mut self) -> Result<(), IoError>;
    /// The names in the directory.
    fn list(&mut self) -> Result<Vec<String>, IoError>;
}

/// Maps an OS error number to the store's I/O error.
pub fn io_error_of_errno(errno: i32) -> IoError {
    match errno {
        libc::ENOENT => IoError::NotFound,
        libc::ENOSPC | libc::EDQUOT => IoError::NoSpace,
        e => IoError::Os(e),
    }
}

fn io_error_of(e: &std::io::Error) -> IoError {
    match (e.raw_os_error(), e.kind()) {
        (Some(n), _) => io_error_of_errno(n),
        (None, std::io::ErrorKind::NotFound) => IoError::NotFound,
        (None, std::io::ErrorKind::StorageFull) => IoError::NoSpace,
        (None, _) => IoError::Os(libc::EIO),
    }
}

fn io_error_of_driver(e: &DriverError) -> IoError {
    match e {
        DriverError::Os { source, .. } => io_error_of(source),
        DriverError::TableFull(_) => IoError::Os(libc::EMFILE),
        DriverError::QueueFull => IoError::Os(libc::EAGAIN),
        _ => IoError::Os(libc::EIO),
    }
}

/// Store file names never contain a separator or climb out of the directory.
fn check_name(name: &str) -> Result<(), IoError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(IoError::Os(libc::EINVAL));
    }
    Ok(())
}

/// The store's directory on a real file system; metadata calls block the calling thread.
#[derive(Debug, Clone)]
pub struct FsDir {
    dir: PathBuf,
}

impl FsDir {
    /// The directory `dir`, created if missing.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, StoreIoError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| StoreIoError::Dir {
            path: dir.clone(),
            source,
        })?;
        Ok(FsDir { dir })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl StoreDir for FsDir {
    fn path_for(&mut self, name: &str, _create: bool) -> Result<PathBuf, IoError> {
        check_name(name)?;
        // open(2) itself decides existence (O_CREAT or ENOENT).
        Ok(self.dir.join(name))
    }

    fn abandon(&mut self, _name: &str) {}

    fn preallocate(&mut self, path: &Path, len: u64) -> Result<(), IoError> {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io_error_of(&e))?;
        let len = libc::off_t::try_from(len).map_err(|_| IoError::Os(libc::EFBIG))?;
        // Mode 0 allocates the blocks and extends the size, so group writes into the segment
        // never allocate (and never fail for space).
        // SAFETY: the descriptor is owned by `f` and open for the whole call; no memory is passed.
        let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len) };
        if rc != 0 {
            return Err(io_error_of(&std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn truncate(&mut self, path: &Path, len: u64) -> Result<(), IoError> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(len))
            .map_err(|e| io_error_of(&e))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), IoError> {
        check_name(from)?;
        check_name(to)?;
        std::fs::rename(self.dir.join(from), self.dir.join(to)).map_err(|e| io_error_of(&e))
    }

    fn remove(&mut self, name: &str) -> Result<(), IoError> {
        check_name(name)?;
        std::fs::remove_file(self.dir.join(name)).map_err(|e| io_error_of(&e))
    }

    fn sync(&mut self) -> Result<(), IoError> {
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error_of(&e))
    }

    fn list(&mut self) -> Result<Vec<String>, IoError> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io_error_of(&e))? {
            let entry = entry.map_err(|e| io_error_of(&e))?;
            // Names that are not UTF-8 are not the store's; recovery ignores unknown names anyway.
            if let Some(n) = entry.file_name().to_str() {
                names.push(n.to_owned());
            }
        }
        Ok(names)
    }
}

/// The store's directory on the simulated disk, which models file data but not names.
///
/// Each store name maps to a path on the `SimDisk`; a new file gets a fresh path (the name plus a
/// generation), a rename moves the mapping and a removal drops it (the simulated bytes stay
/// behind, unreachable: tests are short). Entries have POSIX durability: [`SimDir::crash`]
/// brings the directory back to its state at the last `sync`, as a power loss would. Keep the
/// value across a simulated crash, like the disk image, and hand it to the restarted node.
#[derive(Debug, Clone)]
pub struct SimDir {
    root: PathBuf,
    names: BTreeMap<String, PathBuf>,
    durable: BTreeMap<String, PathBuf>,
    next_generation: u64,
}

impl SimDir {
    /// An empty directory whose files live under `root` on the simulated disk.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SimDir {
            root: root.into(),
            names: BTreeMap::new(),
            durable: BTreeMap::new(),
            next_generation: 0,
        }
    }

    /// Lose power: creations, renames and removals since the last `sync` are undone.
    pub fn crash(&mut self) {
        self.names.clone_from(&self.durable);
    }

    /// The names present now.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(String::as_str)
    }
}

impl StoreDir for SimDir {
    fn path_for(&mut self, name: &str, create: bool) -> Result<PathBuf, IoError> {
        check_name(name)?;
        if let Some(p) = self.names.get(name) {
            return Ok(p.clone());
        }
        if !create {
            return Err(IoError::NotFound);
        }
        self.next_generation += 1;
        let p = self
            .root
            .join(format!("{name}.{:08}", self.next_generation));
        self.names.insert(name.to_owned(), p.clone());
        Ok(p)
    }

    fn abandon(&mut self, name: &str) {
        self.names.remove(name);
    }

    fn preallocate(&mut self, _path: &Path, _len: u64) -> Result<(), IoError> {
        // The simulated disk grows on write and never runs out of space unless told to fail.
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), IoError> {
        check_name(to)?;
        let p = self.names.remove(from).ok_or(IoError::NotFound)?;
        self.names.insert(to.to_owned(), p);
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<(), IoError> {
        self.names.remove(name).map(|_| ()).ok_or(IoError::NotFound)
    }

    fn sync(&mut self) -> Result<(), IoError> {
        self.durable.clone_from(&self.names);
        Ok(())
    }

    fn list(&mut self) -> Result<Vec<String>, IoError> {
        Ok(self.names.keys().cloned().collect())
    }
}

/// Counters of what the adapter did, by kind (group commit shows as one log write and one log
/// fdatasync per group).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreIoStats {
    /// Writes submitted to commit-log segments (continuations of short writes not counted).
    pub log_writes: u64,
    /// fdatasyncs submitted on commit-log segments.
    pub log_fdatasyncs: u64,
    /// Bytes submitted in commit-log writes.
    pub log_bytes_written: u64,
    /// Writes submitted to other files (sorted files, manifest).
    pub file_writes: u64,
    /// fdatasyncs submitted on other files.
    pub file_fdatasyncs: u64,
    /// Bytes submitted in writes to other files.
    pub file_bytes_written: u64,
    /// Reads submitted (continuations not counted).
    pub reads: u64,
    /// Bytes handed back to the store by reads.
    pub bytes_read: u64,
    /// Files opened through the driver.
    pub opens: u64,
    /// Commit-log segments opened buffered because O_DIRECT was refused.
    pub direct_fallbacks: u64,
    /// Metadata operations run by the blocking fallback.
    pub blocking_ops: u64,
    /// Continuations of short reads and writes.
    pub short_io_resubmits: u64,
    /// Requests held back because the driver's queue was full.
    pub deferred: u64,
    /// Requests the driver refused (reported to the store as I/O errors).
    pub refused: u64,
}

/// An open store file as the driver knows it.
#[derive(Debug)]
struct OpenFile {
    id: FileId,
    path: PathBuf,
    direct: bool,
    log: bool,
}

/// What an in-flight driver operation is doing for the store.
#[derive(Debug)]
enum Work {
    /// Writing `data` at `offset` (the store's buffer, handed back at the end); `done` bytes
    /// are on the file so far.
    Write {
        data: Vec<u8>,
        offset: u64,
        done: usize,
        /// A `WriteDurable`: an fdatasync follows before the store hears of it.
        durable: bool,
    },
    /// The fdatasync of a `WriteDurable` whose write completed; `data` goes back to the store.
    SyncAfterWrite { data: Vec<u8> },
    /// Reading `want` bytes from the store's `offset` into `out`.
    Read {
        out: Vec<u8>,
        want: usize,
        offset: u64,
    },
    /// An fdatasync.
    Sync,
    /// A close.
    Close,
}

/// One in-flight driver operation; `id` is the store's request (None: the adapter's own close).
#[derive(Debug)]
struct Pending {
    id: Option<IoId>,
    file: FileId,
    direct: bool,
    work: Work,
    resubmits: u32,
}

/// Pooled aligned buffers in power-of-two classes.
#[derive(Debug)]
struct BufPool {
    classes: Vec<Vec<AlignedBuf>>,
}

impl BufPool {
    fn new() -> Self {
        BufPool {
            classes: (0..POOL_CLASSES).map(|_| Vec::new()).collect(),
        }
    }

    /// The class whose buffers hold `len` bytes, if pooled.
    fn class_of(len: usize) -> Option<usize> {
        let size = len.max(POOL_CLASS_MIN_BYTES).checked_next_power_of_two()?;
        if size > POOL_CLASS_MAX_BYTES {
            return None;
        }
        Some((size.trailing_zeros() - POOL_CLASS_MIN_BYTES.trailing_zeros()) as usize)
    }

    fn take(&mut self, len: usize) -> AlignedBuf {
        match Self::class_of(len) {
            Some(c) => match self.classes.get_mut(c).and_then(Vec::pop) {
                Some(b) => b,
                None => AlignedBuf::new(POOL_CLASS_MIN_BYTES << c),
            },
            None => AlignedBuf::new(len),
        }
    }

    fn give(&mut self, buf: AlignedBuf) {
        let cap = buf.capacity();
        if !cap.is_power_of_two() {
            return;
        }
        if let Some(c) = Self::class_of(cap)
            && let Some(free) = self.classes.get_mut(c)
            && free.len() < POOL_IDLE_PER_CLASS
        {
            free.push(buf);
        }
    }

    fn idle(&self) -> usize {
        self.classes.iter().map(Vec::len).sum()
    }
}

/// Runs one `Store`'s file operations on a driver (see the module docs for the loop turn).
#[derive(Debug)]
pub struct StoreIo<S: StoreDir> {
    dir: S,
    kind: u64,
    next_op: u64,
    files: HashMap<FileHandle, OpenFile>,
    in_flight: HashMap<u64, Pending>,
    /// Continuations of short transfers, submitted at the next `submit` (the completion handler
    /// has no driver).
    resume: Vec<(u64, Op)>,
    deferred: VecDeque<IoRequest>,
    pool: BufPool,
    stats: StoreIoStats,
}

impl<S: StoreDir> StoreIo<S> {
    /// An adapter over `dir` whose tokens carry `token_kind` in their top 8 bits.
    pub fn new(dir: S, token_kind: u8) -> Self {
        StoreIo {
            dir,
            kind: u64::from(token_kind),
            next_op: 0,
            files: HashMap::new(),
            in_flight: HashMap::new(),
            resume: Vec::new(),
            deferred: VecDeque::new(),
            pool: BufPool::new(),
            stats: StoreIoStats::default(),
        }
    }

    // ---- getters ----

    /// Whether this adapter submitted the operation tagged `token`.
    pub fn owns(&self, token: Token) -> bool {
        token >> TOKEN_KIND_SHIFT == self.kind
    }

    /// Counters so far.
    pub fn stats(&self) -> StoreIoStats {
        self.stats
    }

    /// Driver operations not yet completed (continuations included).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Nothing in flight, nothing waiting for the driver.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.resume.is_empty() && self.deferred.is_empty()
    }

    /// Idle pooled buffers.
    pub fn pooled_buffers(&self) -> usize {
        self.pool.idle()
    }

    /// The directory.
    pub fn dir(&self) -> &S {
        &self.dir
    }

    /// Gives the directory back (e.g. a `SimDir` to crash and hand to a restarted node).
    pub fn into_dir(self) -> S {
        self.dir
    }

    // ---- the loop turn ----

    /// End of a loop turn: ends the store's turn (sealing this turn's appends into one group)
    /// and hands the driver everything the store asked for.
    pub fn submit<D: Driver>(&mut self, store: &mut Store, driver: &mut D) {
        // `end_of_turn` in one call: the driver starts nothing before its next `run` anyway, so
        // splitting `seal_group` from `step_background` would not overlap anything here.
        store.end_of_turn();
        for (key, op) in std::mem::take(&mut self.resume) {
            let token = self.token(key);
            if let Err(e) = driver.submit(token, op) {
                // The continuation's buffer went with the refused op; fail the operation.
                self.stats.refused += 1;
                if let Some(p) = self.in_flight.remove(&key) {
                    self.finish(store, p.id, Err(io_error_of_driver(&e)));
                }
            }
        }
        for _ in 0..self.deferred.len() {
            match self.deferred.pop_front() {
                Some(req) => self.start(store, driver, req),
                None => break,
            }
        }
        for _ in 0..REQUESTS_PER_SUBMIT_MAX {
            match store.poll_io() {
                Some(req) => self.start(store, driver, req),
                None => break,
            }
        }
    }

    /// Takes a completion of an operation this adapter submitted (`owns` its token); returns
    /// false and does nothing for any other token.
    pub fn on_completion(&mut self, store: &mut Store, c: Completion) -> bool {
        if !self.owns(c.token) {
            return false;
        }
        let key = c.token & TOKEN_LOW_MASK;
        let Some(mut p) = self.in_flight.remove(&key) else {
            return true;
        };
        let result = match (c.kind, &mut p.work) {
            (
                CompletionKind::WriteAt { result, buf },
                Work::Write {
                    data,
                    done,
                    durable,
                    ..
                },
            ) => {
                match result {
                    Ok(n) => {
                        *done += n;
                        if *done >= data.len() && *durable {
                            // Written: now its fdatasync, before the store hears of it.
                            self.pool.give(buf);
                            let data = std::mem::take(data);
                            return self.sync_after_write(key, p, data);
                        } else if *done >= data.len() {
                            self.pool.give(buf);
                            Ok(IoDone::Written(std::mem::take(data)))
                        } else {
                            return self.continue_write(store, key, p, buf, n);
                        }
                    }
                    Err(e) => {
                        self.pool.give(buf);
                        Err(io_error_of_errno(e.0))
                    }
                }
            }
            (CompletionKind::ReadAt { result, buf }, Work::Read { out, want, offset }) => {
                match result {
                    Ok(n) => {
                        // The buffer starts at the aligned-down position for direct files.
                        let pos = *offset + out.len() as u64;
                        let skip = if p.direct {
                            (pos % DIRECT_ALIGN as u64) as usize
                        } else {
                            0
                        };
                        let room = *want - out.len();
                        let got = n.saturating_sub(skip).min(room);
                        out.extend_from_slice(buf.get(skip..skip + got).unwrap_or_default());
                        self.pool.give(buf);
                        let end_of_file = got == 0 || (p.direct && n % DIRECT_ALIGN != 0);
                        if out.len() >= *want || end_of_file {
                            self.stats.bytes_read += out.len() as u64;
                            Ok(IoDone::Data(std::mem::take(out)))
                        } else {
                            return self.continue_read(store, key, p);
                        }
                    }
                    Err(e) => {
                        self.pool.give(buf);
                        Err(io_error_of_errno(e.0))
                    }
                }
            }
            (CompletionKind::Fdatasync { result }, Work::SyncAfterWrite { data }) => result
                .map(|()| IoDone::Written(std::mem::take(data)))
                .map_err(|e| io_error_of_errno(e.0)),
            (CompletionKind::Fdatasync { result }, Work::Sync)
            | (CompletionKind::CloseFile { result }, Work::Close) => result
                .map(|()| IoDone::Unit)
                .map_err(|e| io_error_of_errno(e.0)),
            // A completion of another kind than submitted cannot happen; fail the request
            // rather than leave the store waiting.
            _ => Err(IoError::Os(libc::EIO)),
        };
        self.finish(store, p.id, result);
        true
    }

    /// Submits a close of every file still open (clean shutdown); their completions are the
    /// adapter's own. The store must not be used with this adapter afterwards.
    pub fn close_files<D: Driver>(&mut self, driver: &mut D) {
        let files: Vec<OpenFile> = self.files.drain().map(|(_, f)| f).collect();
        for f in files {
            self.submit_own_close(driver, f.id);
        }
    }

    // ---- internals ----

    fn token(&self, key: u64) -> Token {
        (self.kind << TOKEN_KIND_SHIFT) | (key & TOKEN_LOW_MASK)
    }

    fn next_key(&mut self) -> u64 {
        self.next_op = (self.next_op + 1) & TOKEN_LOW_MASK;
        self.next_op
    }

    fn finish(&mut self, store: &mut Store, id: Option<IoId>, result: IoResult) {
        if let Some(id) = id {
            store.complete_io(id, result);
        }
    }

    fn submit_own_close<D: Driver>(&mut self, driver: &mut D, file: FileId) {
        let key = self.next_key();
        if driver
            .submit(self.token(key), Op::CloseFile { file })
            .is_ok()
        {
            self.in_flight.insert(
                key,
                Pending {
                    id: None,
                    file,
                    direct: false,
                    work: Work::Close,
                    resubmits: 0,
                },
            );
        }
    }

    /// Carries out one request: synchronously for open and metadata, else through the driver.
    fn start<D: Driver>(&mut self, store: &mut Store, driver: &mut D, req: IoRequest) {
        let IoRequest { id, op } = req;
        match op {
            FileOp::Open {
                handle,
                name,
                create,
            } => {
                let result = self.open(driver, handle, &name, create);
                store.complete_io(id, result);
            }
            FileOp::Preallocate { handle, len } => {
                self.stats.blocking_ops += 1;
                let result = match self.files.get(&handle) {
                    Some(f) => self.dir.preallocate(&f.path, len).map(|()| IoDone::Unit),
                    None => Err(IoError::Os(libc::EBADF)),
                };
                store.complete_io(id, result);
            }
            FileOp::Truncate { handle, len } => {
                self.stats.blocking_ops += 1;
                let result = match self.files.get(&handle) {
                    Some(f) => self.dir.truncate(&f.path, len).map(|()| IoDone::Unit),
                    None => Err(IoError::Os(libc::EBADF)),
                };
                store.complete_io(id, result);
            }
            FileOp::Rename { from, to } => {
                self.stats.blocking_ops += 1;
                let result = self.dir.rename(&from, &to).map(|()| IoDone::Unit);
                store.complete_io(id, result);
            }
            FileOp::Remove { name } => {
                self.stats.blocking_ops += 1;
                let result = self.dir.remove(&name).map(|()| IoDone::Unit);
                store.complete_io(id, result);
            }
            FileOp::SyncDir => {
                self.stats.blocking_ops += 1;
                let result = self.dir.sync().map(|()| IoDone::Unit);
                store.complete_io(id, result);
            }
            FileOp::ListDir => {
                self.stats.blocking_ops += 1;
                let result = self.dir.list().map(IoDone::Names);
                store.complete_io(id, result);
            }
            op @ (FileOp::Write { .. }
            | FileOp::WriteDurable { .. }
            | FileOp::Read { .. }
            | FileOp::Fdatasync { .. }
            | FileOp::Close { .. }) => self.start_data(store, driver, IoRequest { id, op }),
        }
    }

    fn open<D: Driver>(
        &mut self,
        driver: &mut D,
        handle: FileHandle,
        name: &str,
        create: bool,
    ) -> IoResult {
        let path = self.dir.path_for(name, create)?;
        let log = matches!(parse_name(name), Some((true, _)));
        // Only the writer creates segments; recovery reads old ones buffered (its 1 MiB reads
        // stop at end of file, and nothing about them needs to bypass the cache).
        let want_direct = log && create;
        let mut opts = FileOptions {
            create,
            truncate: false,
            direct: want_direct,
        };
        let mut opened = driver.open_file(&path, opts);
        if want_direct
            && matches!(&opened, Err(DriverError::Os { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL))
        {
            self.stats.direct_fallbacks += 1;
            opts.direct = false;
            opened = driver.open_file(&path, opts);
        }
        match opened {
            Ok(id) => {
                self.stats.opens += 1;
                let old = self.files.insert(
                    handle,
                    OpenFile {
                        id,
                        path,
                        direct: opts.direct,
                        log,
                    },
                );
                if let Some(old) = old {
                    // The store never reuses a handle; if it did, the older file must not leak.
                    self.submit_own_close(driver, old.id);
                }
                Ok(IoDone::Unit)
            }
            Err(e) => {
                if create {
                    self.dir.abandon(name);
                }
                Err(io_error_of_driver(&e))
            }
        }
    }

    /// Submits a write, read, fdatasync or close; a full queue defers it to the next `submit`.
    fn start_data<D: Driver>(&mut self, store: &mut Store, driver: &mut D, req: IoRequest) {
        let handle = match &req.op {
            FileOp::Write { handle, .. }
            | FileOp::WriteDurable { handle, .. }
            | FileOp::Read { handle, .. }
            | FileOp::Fdatasync { handle }
            | FileOp::Close { handle } => *handle,
            _ => return,
        };
        let Some(file) = self.files.get(&handle) else {
            store.complete_io(req.id, Err(IoError::Os(libc::EBADF)));
            return;
        };
        let (fid, direct, log) = (file.id, file.direct, file.log);
        let key = self.next_key();
        let token = self.token(key);
        let (op, work) = match &req.op {
            FileOp::Write { offset, data, .. } | FileOp::WriteDurable { offset, data, .. } => {
                let mut buf = self.pool.take(data.len());
                if let Some(dst) = buf.get_mut(..data.len()) {
                    dst.copy_from_slice(data);
                }
                let op = Op::WriteAt {
                    file: fid,
                    offset: *offset,
                    buf,
                    len: data.len(),
                };
                (op, None)
            }
            FileOp::Read { offset, len, .. } => {
                let (op, _) = self.read_op(fid, direct, *offset, *len);
                (op, None)
            }
            FileOp::Fdatasync { .. } => (Op::Fdatasync { file: fid }, Some(Work::Sync)),
            _ => (Op::CloseFile { file: fid }, Some(Work::Close)),
        };
        match driver.submit(token, op) {
            Ok(()) => {}
            Err(DriverError::QueueFull) if self.deferred.len() < DEFERRED_REQUESTS_MAX => {
                self.stats.deferred += 1;
                self.deferred.push_back(req);
                return;
            }
            Err(e) => {
                self.stats.refused += 1;
                store.complete_io(req.id, Err(io_error_of_driver(&e)));
                return;
            }
        }
        let work = match (work, req.op) {
            (Some(w), FileOp::Close { handle }) => {
                self.files.remove(&handle);
                w
            }
            (Some(w), _) => w,
            (None, op @ (FileOp::Write { .. } | FileOp::WriteDurable { .. })) => {
                let durable = matches!(op, FileOp::WriteDurable { .. });
                let (FileOp::Write { data, offset, .. }
                | FileOp::WriteDurable { data, offset, .. }) = op
                else {
                    return;
                };
                if log {
                    self.stats.log_writes += 1;
                    self.stats.log_bytes_written += data.len() as u64;
                } else {
                    self.stats.file_writes += 1;
                    self.stats.file_bytes_written += data.len() as u64;
                }
                // Its fdatasync follows the write (`sync_after_write`); counted here, once.
                match (durable, log) {
                    (true, true) => self.stats.log_fdatasyncs += 1,
                    (true, false) => self.stats.file_fdatasyncs += 1,
                    (false, _) => {}
                }
                Work::Write {
                    data,
                    offset,
                    done: 0,
                    durable,
                }
            }
            (None, FileOp::Read { offset, len, .. }) => {
                self.stats.reads += 1;
                Work::Read {
                    out: Vec::with_capacity(len),
                    want: len,
                    offset,
                }
            }
            (None, _) => Work::Sync,
        };
        if matches!(work, Work::Sync) {
            if log {
                self.stats.log_fdatasyncs += 1;
            } else {
                self.stats.file_fdatasyncs += 1;
            }
        }
        self.in_flight.insert(
            key,
            Pending {
                id: Some(req.id),
                file: fid,
                direct,
                work,
                resubmits: 0,
            },
        );
    }

    /// A read of `len` bytes at `offset`; on an O_DIRECT file widened to aligned bounds (the
    /// completion skips the leading bytes). Returns the op and the aligned length.
    fn read_op(&mut self, file: FileId, direct: bool, offset: u64, len: usize) -> (Op, usize) {
        let (start, span) = if direct {
            let a = DIRECT_ALIGN as u64;
            let start = offset - offset % a;
            let end = (offset + len as u64).next_multiple_of(a);
            (start, (end - start) as usize)
        } else {
            (offset, len)
        };
        let buf = self.pool.take(span);
        (
            Op::ReadAt {
                file,
                offset: start,
                buf,
                len: span,
            },
            span,
        )
    }

    /// Queues the rest of a short write (the returned buffer is reused for it).
    fn continue_write(
        &mut self,
        store: &mut Store,
        key: u64,
        mut p: Pending,
        mut buf: AlignedBuf,
        last: usize,
    ) -> bool {
        let Work::Write {
            data, offset, done, ..
        } = &p.work
        else {
            return true;
        };
        let aligned = !p.direct || done.is_multiple_of(DIRECT_ALIGN);
        if last == 0 || p.resubmits >= SHORT_IO_RESUBMITS_MAX || !aligned {
            self.pool.give(buf);
            self.finish(store, p.id, Err(IoError::Os(libc::EIO)));
            return true;
        }
        let rest = data.get(*done..).unwrap_or_default();
        if let Some(dst) = buf.get_mut(..rest.len()) {
            dst.copy_from_slice(rest);
        }
        let op = Op::WriteAt {
            file: p.file,
            offset: *offset + *done as u64,
            buf,
            len: rest.len(),
        };
        p.resubmits += 1;
        self.stats.short_io_resubmits += 1;
        self.in_flight.insert(key, p);
        self.resume.push((key, op));
        true
    }

    /// The write of a `WriteDurable` completed: queues its fdatasync (submitted at the next
    /// `submit`; the completion handler has no driver) under the same key and store request.
    fn sync_after_write(&mut self, key: u64, mut p: Pending, data: Vec<u8>) -> bool {
        p.work = Work::SyncAfterWrite { data };
        self.resume.push((key, Op::Fdatasync { file: p.file }));
        self.in_flight.insert(key, p);
        true
    }

    /// Queues the rest of a short read.
    fn continue_read(&mut self, store: &mut Store, key: u64, mut p: Pending) -> bool {
        let Work::Read { out, want, offset } = &p.work else {
            return true;
        };
        if p.resubmits >= SHORT_IO_RESUBMITS_MAX {
            self.finish(store, p.id, Err(IoError::Os(libc::EIO)));
            return true;
        }
        let pos = *offset + out.len() as u64;
        let rest = *want - out.len();
        let (op, _) = self.read_op(p.file, p.direct, pos, rest);
        p.resubmits += 1;
        self.stats.short_io_resubmits += 1;
        self.in_flight.insert(key, p);
        self.resume.push((key, op));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_classes_cover_the_range_and_bound_idle_buffers() {
        assert_eq!(BufPool::class_of(1), Some(0));
        assert_eq!(BufPool::class_of(POOL_CLASS_MIN_BYTES), Some(0));
        assert_eq!(BufPool::class_of(POOL_CLASS_MIN_BYTES + 1), Some(1));
        assert_eq!(
            BufPool::class_of(POOL_CLASS_MAX_BYTES),
            Some(POOL_CLASSES - 1)
        );
        assert_eq!(BufPool::class_of(POOL_CLASS_MAX_BYTES + 1), None);
        let mut pool = BufPool::new();
        let b = pool.take(5000);
        assert_eq!(b.capacity(), 8192, "rounded up to its class");
        pool.give(b);
        assert_eq!(pool.idle(), 1);
        let again = pool.take(8000);
        assert_eq!(pool.idle(), 0, "reused, not allocated");
        drop(again);
        for _ in 0..POOL_IDLE_PER_CLASS + 3 {
            pool.give(AlignedBuf::new(4096));
        }
        assert_eq!(pool.idle(), POOL_IDLE_PER_CLASS);
        let big = pool.take(POOL_CLASS_MAX_BYTES + 4096);
        assert!(big.capacity() > POOL_CLASS_MAX_BYTES);
        pool.give(big);
        assert_eq!(
            pool.idle(),
            POOL_IDLE_PER_CLASS,
            "oversized buffers are not kept"
        );
    }

    #[test]
    fn tokens_carry_the_kind_prefix() {
        let io = StoreIo::new(SimDir::new("/x"), 7);
        let t = io.token(12345);
        assert!(io.owns(t));
        assert_eq!(t >> TOKEN_KIND_SHIFT, 7);
        assert!(!io.owns(8 << TOKEN_KIND_SHIFT | 12345));
        assert!(!io.owns(12345));
    }

    #[test]
    fn sim_dir_renames_atomically_and_forgets_unsynced_entries_on_crash() {
        let mut d = SimDir::new("/sim");
        let a = d.path_for("MANIFEST.tmp", true).unwrap();
        assert_eq!(d.path_for("MANIFEST", false), Err(IoError::NotFound));
        d.rename("MANIFEST.tmp", "MANIFEST").unwrap();
        assert_eq!(d.path_for("MANIFEST", false).unwrap(), a);
        d.sync().unwrap();
        let b = d.path_for("MANIFEST.tmp", true).unwrap();
        assert_ne!(a, b, "a new file never reuses a renamed one's path");
        d.remove("MANIFEST").unwrap();
        assert_eq!(d.list().unwrap(), vec!["MANIFEST.tmp".to_string()]);
        d.crash();
        assert_eq!(d.list().unwrap(), vec!["MANIFEST".to_string()]);
        assert_eq!(d.path_for("MANIFEST", false).unwrap(), a);
        assert_eq!(d.remove("nope"), Err(IoError::NotFound));
        assert!(d.path_for("../x", true).is_err());
    }
}
