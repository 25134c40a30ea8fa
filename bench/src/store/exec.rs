//! Carries out Hearth's `FileOp`s for the benchmark: blocking I/O threads behind queues,
//! completions back to the store's thread over a channel.
//!
//! Why not the engine: the bench crate may use the engine only as a black box over the network
//! (DESIGN.md), and the engine's `StoreIo` runs the store on its io_uring driver. This executor
//! keeps what matters for the measurement and behaves as io_uring does:
//! - the store's thread never blocks on a file operation: blocking work (writes, fdatasync,
//!   unlink, ...) goes to I/O threads, as io_uring hands it to its io-wq workers;
//! - a read the page cache can serve completes at once on the store's thread (`preadv2` with
//!   `RWF_NOWAIT`), as io_uring completes a cached buffered read inline;
//! - the commit log has an I/O thread of its own, so a group's write and fdatasync never wait in
//!   a queue behind a sorted-file sync or an unlink (io_uring gives every blocking request its
//!   own worker); that thread gets the real-time I/O class (root), as RocksDB's writer threads do
//!   in this benchmark, so the block layer serves log I/O before background I/O.
//!
//! Every thread is pinned to the store's core, so all of Hearth's work — the store thread, its
//! I/O threads and the kernel work they do — shares one core, as RocksDB's threads do.
//!
//! Unlike `StoreIo`, the commit log is written through the page cache (no O_DIRECT, which
//! would need aligned user buffers) and then fdatasync'd, the same mechanism RocksDB's WAL uses.
//! The store makes each next segment ahead of time (preallocated, filled with written zeros,
//! fdatasync'd), so a group's fdatasync never allocates blocks or converts unwritten extents.
//!
//! Writes to other files (sorted files, the manifest, the next segment's zero fill) are written
//! back before they complete (`sync_file_range` WAIT_BEFORE | WRITE | WAIT_AFTER: data on the
//! device, no cache flush, no metadata), as an O_DIRECT write would be. With the store keeping
//! at most `JOB_WRITES_IN_FLIGHT_MAX` writes of `JOB_WRITE_CHUNK_BYTES` in flight per job, a
//! group's write and fdatasync queue behind at most that much background data at the device,
//! instead of behind megabytes of a merge's writeback started all at once (measured: a 30 MB
//! merge output written in one burst held group commits for 2-10 ms). RocksDB starts table-file
//! writeback every `bytes_per_sync` = 1 MiB (see `rocks.rs`).
//!
//! `HEARTH_STORE_TRACE=<file>` records a timeline of every operation, background step and
//! append (see `trace`), for finding where slow appends come from.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use msgstore::{FileHandle, FileOp, IoDone, IoError, IoId, IoRequest, IoResult};

/// Files open by handle (and whether each is a commit-log segment), shared by the I/O threads.
type Files = Arc<Mutex<HashMap<FileHandle, (Arc<File>, bool)>>>;

fn map_err(e: &std::io::Error) -> IoError {
    match (e.kind(), e.raw_os_error()) {
        (ErrorKind::NotFound, _) => IoError::NotFound,
        (_, Some(libc::ENOSPC | libc::EDQUOT)) => IoError::NoSpace,
        (_, Some(n)) => IoError::Os(n),
        (_, None) => IoError::Os(libc::EIO),
    }
}

/// A pool of I/O threads for one store directory: one thread for the active commit-log
/// segment (the store keeps one group in flight, so its write and fdatasync never queue behind
/// a sorted-file sync, an unlink or the zero fill of the next segment, as with io_uring, where
/// every blocking request gets a worker of its own), the others for everything else.
#[derive(Debug)]
pub struct PoolExec {
    log_jobs: Option<Sender<IoRequest>>,
    jobs: Option<Sender<IoRequest>>,
    /// Handles of commit-log segments, known from their `Open`.
    log_handles: std::collections::HashSet<FileHandle>,
    /// The segment groups are written to (known from its header write), whose operations take
    /// the log lane.
    active_log: Option<FileHandle>,
    files: Files,
    threads: Vec<JoinHandle<()>>,
}

impl PoolExec {
    /// Starts `threads` I/O threads on `dir`; each completion is sent to `done`. The threads
    /// inherit the caller's CPU affinity.
    pub fn start(
        dir: &Path,
        threads: usize,
        done: &Sender<(IoId, IoResult)>,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let files: Files = Arc::new(Mutex::new(HashMap::new()));
        let mut handles = Vec::new();
        let mut spawn = |name: String, rx: Arc<Mutex<Receiver<IoRequest>>>, log: bool| {
            let files = Arc::clone(&files);
            let done = done.clone();
            let dir = dir.to_path_buf();
            std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    if log {
                        // Best effort (root only); the report says what the run had.
                        let _ = super::prioritise_log_io();
                    }
                    worker(&dir, &rx, &files, &done, log)
                })
                .map(|h| handles.push(h))
        };
        let (log_tx, log_rx) = channel::<IoRequest>();
        spawn("hearth-io-log".into(), Arc::new(Mutex::new(log_rx)), true)?;
        let (tx, rx) = channel::<IoRequest>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads.saturating_sub(1).max(1) {
            spawn(format!("hearth-io-{n}"), Arc::clone(&rx), false)?;
        }
        Ok(PoolExec {
            log_jobs: Some(log_tx),
            jobs: Some(tx),
            log_handles: std::collections::HashSet::new(),
            active_log: None,
            files,
            threads: handles,
        })
    }

    /// Queues a request; false if the pool has stopped.
    pub fn submit(&mut self, req: IoRequest) -> bool {
        let log = match &req.op {
            FileOp::Open { handle, name, .. } => {
                if matches!(msgstore::io::parse_name(name), Some((true, _))) {
                    self.log_handles.insert(*handle);
                }
                false
            }
            FileOp::Close { handle } => {
                self.log_handles.remove(handle);
                false
            }
            FileOp::Write {
                handle,
                offset,
                data,
            }
            | FileOp::WriteDurable {
                handle,
                offset,
                data,
            } => {
                // A segment's first group carries its header: from then on the segment is the
                // active one, and its writes and syncs take the log lane. Until then (the next
                // segment being made ahead: zero fill, its fdatasync) they go with the
                // background work, as io_uring would run them beside the log's.
                if *offset == 0
                    && self.log_handles.contains(handle)
                    && data.starts_with(&msgstore::wal::SEGMENT_MAGIC)
                {
                    self.active_log = Some(*handle);
                }
                self.active_log == Some(*handle)
            }
            FileOp::Read { handle, .. }
            | FileOp::Fdatasync { handle }
            | FileOp::Truncate { handle, .. }
            | FileOp::Preallocate { handle, .. } => self.active_log == Some(*handle),
            FileOp::Rename { .. } | FileOp::Remove { .. } | FileOp::SyncDir | FileOp::ListDir => {
                false
            }
        };
        let lane = if log { &self.log_jobs } else { &self.jobs };
        lane.as_ref().is_some_and(|j| j.send(req).is_ok())
    }

    /// Carries out a read on the calling thread if the page cache holds all of it (a
    /// non-blocking `preadv2` with `RWF_NOWAIT`), as io_uring completes a cached buffered read
    /// inline at submission; anything else goes back to the caller for the pool.
    pub fn try_inline(&self, req: IoRequest) -> Result<(IoId, IoResult), IoRequest> {
        let FileOp::Read {
            handle,
            offset,
            len,
        } = req.op
        else {
            return Err(req);
        };
        let (Ok(f), Ok(off)) = (file(&self.files, handle), libc::off_t::try_from(offset)) else {
            return Err(req);
        };
        let mut buf = vec![0u8; len];
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: len,
        };
        // SAFETY: `iov` points into `buf`, valid for `len` bytes for the whole call; the
        // descriptor belongs to `f`.
        let n = unsafe { libc::preadv2(f.as_raw_fd(), &iov, 1, off, libc::RWF_NOWAIT) };
        // A short count may be end of file or a partly cached range: only a full read is sure.
        match usize::try_from(n) {
            Ok(n) if n == len => Ok((req.id, Ok(IoDone::Data(buf)))),
            _ => Err(req),
        }
    }

    /// Stops the threads once the queues are empty and closes every file.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for PoolExec {
    fn drop(&mut self) {
        self.log_jobs = None;
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn worker(
    dir: &Path,
    rx: &Mutex<Receiver<IoRequest>>,
    files: &Files,
    done: &Sender<(IoId, IoResult)>,
    log_lane: bool,
) {
    loop {
        let req = {
            let guard = rx.lock().unwrap_or_else(PoisonError::into_inner);
            match guard.recv() {
                Ok(r) => r,
                Err(_) => return,
            }
        };
        let traced =
            super::trace::on().then(|| (op_kind(&req.op, log_lane), super::trace::now_ns()));
        let bytes = op_bytes(&req.op);
        let result = execute(dir, files, req.op, log_lane);
        if let Some((kind, t0)) = traced {
            super::trace::span(kind, t0, super::trace::now_ns(), bytes, 0);
        }
        if done.send((req.id, result)).is_err() {
            return;
        }
    }
}

/// Name of an operation in the trace, by lane.
fn op_kind(op: &FileOp, log_lane: bool) -> &'static str {
    match (op, log_lane) {
        (FileOp::WriteDurable { .. }, true) => "log-write-durable",
        (FileOp::WriteDurable { .. }, false) => "bg-write-durable",
        (FileOp::Write { .. }, true) => "log-write",
        (FileOp::Write { .. }, false) => "bg-write",
        (FileOp::Fdatasync { .. }, true) => "log-fdatasync",
        (FileOp::Fdatasync { .. }, false) => "bg-fdatasync",
        (FileOp::Read { .. }, _) => "bg-read",
        (FileOp::Open { .. }, _) => "open",
        (FileOp::Close { .. }, _) => "close",
        (FileOp::Preallocate { .. }, _) => "preallocate",
        (FileOp::Truncate { .. }, _) => "truncate",
        (FileOp::Rename { .. }, _) => "rename",
        (FileOp::Remove { .. }, _) => "remove",
        (FileOp::SyncDir, _) => "syncdir",
        (FileOp::ListDir, _) => "listdir",
    }
}

/// Bytes an operation moves, for the trace.
fn op_bytes(op: &FileOp) -> u64 {
    match op {
        FileOp::Write { data, .. } | FileOp::WriteDurable { data, .. } => data.len() as u64,
        FileOp::Read { len, .. } => *len as u64,
        _ => 0,
    }
}

fn file_and_kind(files: &Files, h: FileHandle) -> Result<(Arc<File>, bool), IoError> {
    files
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&h)
        .cloned()
        .ok_or(IoError::Os(libc::EBADF))
}

fn file(files: &Files, h: FileHandle) -> Result<Arc<File>, IoError> {
    file_and_kind(files, h).map(|(f, _)| f)
}

fn path(dir: &Path, name: &str) -> Result<PathBuf, IoError> {
    if name.is_empty() || name.contains('/') || name == ".." {
        return Err(IoError::Os(libc::EINVAL));
    }
    Ok(dir.join(name))
}

/// Carries out one operation with blocking system calls. Writes off the log lane start their
/// writeback at once.
fn execute(dir: &Path, files: &Files, op: FileOp, log_lane: bool) -> IoResult {
    match op {
        FileOp::Open {
            handle,
            name,
            create,
        } => {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(false)
                .open(path(dir, &name)?)
                .map_err(|e| map_err(&e))?;
            let log = matches!(msgstore::io::parse_name(&name), Some((true, _)));
            files
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(handle, (Arc::new(f), log));
            Ok(IoDone::Unit)
        }
        FileOp::Close { handle } => {
            files
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&handle);
            Ok(IoDone::Unit)
        }
        FileOp::Write {
            handle,
            offset,
            data,
        } => {
            let f = file(files, handle)?;
            f.write_all_at(&data, offset).map_err(|e| map_err(&e))?;
            if !log_lane {
                let off = libc::off64_t::try_from(offset).unwrap_or(0);
                let len = libc::off64_t::try_from(data.len()).unwrap_or(0);
                // Writes the range back and waits for it (no device cache flush, no
                // metadata): the write completes once its data reached the device, as an
                // O_DIRECT write would, so the store's one background write in flight
                // (`JOB_WRITES_IN_FLIGHT_MAX`) is all the background data queued at the
                // device ahead of a group's write. Durability still comes from the store's
                // fdatasync, so a failure here changes nothing and is ignored.
                // SAFETY: the descriptor belongs to `f`, open for the call; no memory passed.
                let _ = unsafe {
                    libc::sync_file_range(
                        f.as_raw_fd(),
                        off,
                        len,
                        libc::SYNC_FILE_RANGE_WAIT_BEFORE
                            | libc::SYNC_FILE_RANGE_WRITE
                            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                    )
                };
            }
            Ok(IoDone::Written(data))
        }
        FileOp::WriteDurable {
            handle,
            offset,
            data,
        } => {
            // The group commit: write, then fdatasync, on the same I/O thread with no trip
            // through the store's loop in between (as RocksDB's WAL leader writes and syncs).
            let f = file(files, handle)?;
            f.write_all_at(&data, offset).map_err(|e| map_err(&e))?;
            f.sync_data().map_err(|e| map_err(&e))?;
            Ok(IoDone::Written(data))
        }
        FileOp::Read {
            handle,
            offset,
            len,
        } => {
            let f = file(files, handle)?;
            let mut buf = vec![0; len];
            let mut got = 0;
            while got < len {
                let Some(rest) = buf.get_mut(got..) else {
                    break;
                };
                match f.read_at(rest, offset + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(map_err(&e)),
                }
            }
            buf.truncate(got);
            Ok(IoDone::Data(buf))
        }
        FileOp::Fdatasync { handle } => {
            file(files, handle)?.sync_data().map_err(|e| map_err(&e))?;
            Ok(IoDone::Unit)
        }
        FileOp::Truncate { handle, len } => {
            file(files, handle)?.set_len(len).map_err(|e| map_err(&e))?;
            Ok(IoDone::Unit)
        }
        FileOp::Preallocate { handle, len } => {
            let f = file(files, handle)?;
            let len = libc::off_t::try_from(len).map_err(|_| IoError::Os(libc::EFBIG))?;
            // SAFETY: the descriptor belongs to `f`, open for the whole call; no memory passed.
            let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len) };
            if rc != 0 {
                return Err(map_err(&std::io::Error::last_os_error()));
            }
            Ok(IoDone::Unit)
        }
        FileOp::Rename { from, to } => {
            std::fs::rename(path(dir, &from)?, path(dir, &to)?).map_err(|e| map_err(&e))?;
            Ok(IoDone::Unit)
        }
        FileOp::Remove { name } => {
            std::fs::remove_file(path(dir, &name)?).map_err(|e| map_err(&e))?;
            Ok(IoDone::Unit)
        }
        FileOp::SyncDir => {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| map_err(&e))?;
            Ok(IoDone::Unit)
        }
        FileOp::ListDir => {
            let mut names = Vec::new();
            for e in std::fs::read_dir(dir).map_err(|e| map_err(&e))? {
                if let Some(n) = e.map_err(|e| map_err(&e))?.file_name().to_str() {
                    names.push(n.to_owned());
                }
            }
            Ok(IoDone::Names(names))
        }
    }
}
