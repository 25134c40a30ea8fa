//! The file operations the store emits and the completions it takes back.

/// Identifies one emitted request; echo it back in `Store::complete_io`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IoId(pub u64);

/// A file handle chosen by the store; the executor maps it to its own descriptor on `Open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileHandle(pub u32);

/// One file operation. Names are relative to the store's directory and never contain `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    /// Open `name` as `handle` for reading and writing, creating it when `create` (O_CREAT,
    /// no truncation). The commit log may be opened with O_DIRECT: its writes are aligned.
    Open {
        /// Handle later operations use.
        handle: FileHandle,
        /// File name in the store directory.
        name: String,
        /// Create the file if missing.
        create: bool,
    },
    /// Close a handle.
    Close {
        /// Handle to close.
        handle: FileHandle,
    },
    /// Write all of `data` at `offset`. The completion should hand the buffer back for reuse.
    Write {
        /// Target file.
        handle: FileHandle,
        /// Byte offset.
        offset: u64,
        /// Bytes to write.
        data: Vec<u8>,
    },
    /// Write all of `data` at `offset` and make it durable before completing, as `Write` then
    /// `Fdatasync` of the file would: the commit log's group write. One operation, so the
    /// executor can use a write with `RWF_DSYNC` (or FUA) or chain the fdatasync itself, and the
    /// store's loop is not needed between the two. The completion should hand the buffer back.
    WriteDurable {
        /// Target file.
        handle: FileHandle,
        /// Byte offset.
        offset: u64,
        /// Bytes to write.
        data: Vec<u8>,
    },
    /// Read up to `len` bytes at `offset`; fewer at end of file.
    Read {
        /// Source file.
        handle: FileHandle,
        /// Byte offset.
        offset: u64,
        /// Most bytes wanted.
        len: usize,
    },
    /// fdatasync.
    Fdatasync {
        /// File to sync.
        handle: FileHandle,
    },
    /// Shrink the file to `len` bytes (ftruncate). The store only shrinks files it is about
    /// to remove, a step at a time, so freeing a large file's blocks (and, on a file system
    /// mounted with online discard, trimming them) never holds the device for long in one go.
    Truncate {
        /// File to shrink.
        handle: FileHandle,
        /// New size.
        len: u64,
    },
    /// Reserve `len` bytes (fallocate, mode 0): later writes in range cannot fail for space.
    Preallocate {
        /// File to extend.
        handle: FileHandle,
        /// Size to reserve from offset 0.
        len: u64,
    },
    /// Atomically rename `from` to `to`, replacing `to`.
    Rename {
        /// Old name.
        from: String,
        /// New name.
        to: String,
    },
    /// Unlink a file.
    Remove {
        /// Name to remove.
        name: String,
    },
    /// fsync the store directory so creations, renames and removals are durable.
    SyncDir,
    /// List the names in the store directory.
    ListDir,
}

/// A request to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoRequest {
    /// Echo back on completion.
    pub id: IoId,
    /// What to do.
    pub op: FileOp,
}

/// Successful outcome of a `FileOp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoDone {
    /// Open, Close, Fdatasync, Truncate, Preallocate, Rename, Remove, SyncDir.
    Unit,
    /// Write, WriteDurable: the buffer given back (or empty if the executor kept it).
    Written(Vec<u8>),
    /// Read: the bytes read.
    Data(Vec<u8>),
    /// ListDir: the names.
    Names(Vec<String>),
}

/// Why a `FileOp` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IoError {
    /// ENOENT.
    #[error("file not found")]
    NotFound,
    /// ENOSPC or EDQUOT.
    #[error("no space left on device")]
    NoSpace,
    /// Any other errno, as a number.
    #[error("i/o error (errno {0})")]
    Os(i32),
}

/// What the executor reports for a request.
pub type IoResult = Result<IoDone, IoError>;

/// Name of commit-log segment `n`.
pub fn segment_name(n: u64) -> String {
    format!("wal-{n:016}.log")
}

/// Name of sorted file `n`.
pub fn sst_name(n: u64) -> String {
    format!("sst-{n:016}.sst")
}

/// The live manifest.
pub const MANIFEST_NAME: &str = "MANIFEST";
/// The manifest being written, renamed over `MANIFEST` once durable.
pub const MANIFEST_TMP_NAME: &str = "MANIFEST.tmp";

/// Parses `wal-N.log` or `sst-N.sst`; returns (is_segment, n).
pub fn parse_name(name: &str) -> Option<(bool, u64)> {
    if let Some(rest) = name
        .strip_prefix("wal-")
        .and_then(|r| r.strip_suffix(".log"))
    {
        return rest.parse().ok().map(|n| (true, n));
    }
    if let Some(rest) = name
        .strip_prefix("sst-")
        .and_then(|r| r.strip_suffix(".sst"))
    {
        return rest.parse().ok().map(|n| (false, n));
    }
    None
}
