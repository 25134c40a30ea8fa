//! The seam between shard code and the kernel: a completion-based `Driver` with two implementations.
//!
//! `uring::UringDriver` runs operations on a per-core io_uring; `sim::SimDriver` runs the same
//! operations against a seeded, virtual-time simulation of sockets and a disk. Shard code only ever
//! talks to `Driver`, so every scenario can be replayed deterministically from a seed.
//!
//! The model follows io_uring: the shard submits [`Op`]s tagged with a [`Token`], and later takes
//! [`Completion`]s carrying that token. Buffers handed to the kernel are *owned* by the driver
//! until their completion returns them, so no buffer can be reused or freed while the kernel may
//! still touch it. Received data lands in driver-owned provided buffers ([`BufId`]) that the shard
//! reads with [`Driver::recv_buf`] and gives back with [`Driver::release_buf`].

pub mod sim;
pub mod uring;

use std::net::SocketAddr;
use std::path::Path;

use crate::buf::{AlignedBuf, SendBuf};

/// Caller-chosen tag of an operation, returned with each of its completions.
pub type Token = u64;

/// A connected TCP socket, a UDP socket or a listener, as known to one driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u32);

/// An open file, as known to one driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u32);

/// A provided receive buffer, lent to the shard by a completion until it calls `release_buf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufId(pub u16);

/// A negative result of an operation: the kernel's errno (or the simulation's equivalent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("os error {0}")]
pub struct Errno(pub i32);

impl Errno {
    /// No provided buffer was free: the multishot receive ended and must be re-armed.
    pub const NOBUFS: Errno = Errno(libc::ENOBUFS);
    /// The operation was cancelled (by `Op::Cancel` or by closing its socket).
    pub const CANCELED: Errno = Errno(libc::ECANCELED);
    /// The peer reset the connection.
    pub const CONNRESET: Errno = Errno(libc::ECONNRESET);
    /// Writing to a connection whose peer has gone.
    pub const PIPE: Errno = Errno(libc::EPIPE);
    /// A timeout operation expired (io_uring reports expiry as -ETIME).
    pub const TIME: Errno = Errno(libc::ETIME);
    /// No space left on the device.
    pub const NOSPC: Errno = Errno(libc::ENOSPC);
    /// A generic I/O error from the device.
    pub const IO: Errno = Errno(libc::EIO);
    /// A bad or already-closed descriptor.
    pub const BADF: Errno = Errno(libc::EBADF);
    /// The target of a cancel was not found (already completed).
    pub const NOENT: Errno = Errno(libc::ENOENT);
}

/// Options applied to TCP listeners and the connections they accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpOptions {
    /// Set SO_REUSEPORT so that each shard has its own listener on the same port.
    pub reuse_port: bool,
    /// Listen backlog.
    pub backlog: u32,
    /// Set TCP_NODELAY on accepted connections.
    pub nodelay: bool,
    /// SO_RCVBUF for accepted connections, if set.
    pub recv_buffer_bytes: Option<u32>,
    /// SO_SNDBUF for accepted connections, if set.
    pub send_buffer_bytes: Option<u32>,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            reuse_port: true,
            backlog: 1024,
            nodelay: true,
            recv_buffer_bytes: None,
            send_buffer_bytes: None,
        }
    }
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FileOptions {
    /// Create the file if it does not exist.
    pub create: bool,
    /// Truncate the file to zero length on open.
    pub truncate: bool,
    /// Open with O_DIRECT: offsets, lengths and buffers must be `crate::buf::DIRECT_ALIGN` aligned.
    pub direct: bool,
}

/// An operation submitted to a driver.
#[derive(Debug)]
pub enum Op {
    /// Multishot accept on a listener: one `Completion::Accept` per connection until `more` is false.
    AcceptMulti {
        /// The listener.
        listener: SocketId,
    },
    /// Multishot receive into provided buffers: one `Completion::Recv` per chunk until `more` is
    /// false (EOF, error, cancel, or `Errno::NOBUFS` when the pool ran dry and must be re-armed).
    RecvMulti {
        /// The connected socket.
        socket: SocketId,
    },
    /// Send the whole of `buf` once (the completion says how much went; the caller re-submits the
    /// rest after a partial send).
    Send {
        /// The connected socket.
        socket: SocketId,
        /// What to send; returned in the completion.
        buf: SendBuf,
    },
    /// `Send`, for a caller that needs a complete send's completion only to get its buffer back:
    /// while `run` blocks, the driver may hold such a completion back until something else
    /// completes or the wait ends, so a request/response exchange costs one loop turn, not two.
    /// Partial sends and errors are never held.
    SendLazy {
        /// The connected socket.
        socket: SocketId,
        /// What to send; returned in the (`Send`) completion.
        buf: SendBuf,
    },
    /// Multishot datagram receive into provided buffers: one `Completion::RecvFrom` per datagram.
    RecvFromMulti {
        /// The UDP socket.
        socket: SocketId,
    },
    /// Send one datagram to `addr`.
    SendTo {
        /// The UDP socket.
        socket: SocketId,
        /// Destination.
        addr: SocketAddr,
        /// The datagram; returned in the completion.
        buf: SendBuf,
    },
    /// Complete with `Completion::Timeout` when the driver's clock reaches `deadline_ns`.
    Timeout {
        /// Deadline on the driver's monotonic clock (`Driver::now_ns`).
        deadline_ns: u64,
    },
    /// Cancel every in-flight operation tagged `target`.
    Cancel {
        /// The token of the operation(s) to cancel.
        target: Token,
    },
    /// Shut down the sending half of a connected TCP socket (shutdown(2) with SHUT_WR): the peer
    /// reads EOF after everything already sent while receives go on, so a server can drain what
    /// the client is still sending before it closes (a close with unread input sends a reset
    /// that can destroy the response still in flight). Later sends fail with EPIPE.
    ShutdownWrite {
        /// The connected socket.
        socket: SocketId,
    },
    /// Close a socket (listener, TCP or UDP); its in-flight operations complete with CANCELED.
    Close {
        /// The socket.
        socket: SocketId,
    },
    /// Write `len` bytes of `buf` at `offset`.
    WriteAt {
        /// The file.
        file: FileId,
        /// Byte offset in the file.
        offset: u64,
        /// The data (its first `len` bytes); returned in the completion.
        buf: AlignedBuf,
        /// Number of bytes to write.
        len: usize,
    },
    /// Read up to `len` bytes at `offset` into `buf`.
    ReadAt {
        /// The file.
        file: FileId,
        /// Byte offset in the file.
        offset: u64,
        /// Destination; returned in the completion with the bytes read at its start.
        buf: AlignedBuf,
        /// Number of bytes to read.
        len: usize,
    },
    /// fdatasync the file: every completed write before it is durable when this completes.
    Fdatasync {
        /// The file.
        file: FileId,
    },
    /// Close a file.
    CloseFile {
        /// The file.
        file: FileId,
    },
}

/// A received chunk in a provided buffer; `len == 0` means the peer closed its side (EOF).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvChunk {
    /// The buffer holding the data (absent on EOF).
    pub buf: Option<BufId>,
    /// Bytes received.
    pub len: usize,
}

/// What an operation produced.
#[derive(Debug)]
pub enum CompletionKind {
    /// A connection was accepted (or accepting failed).
    Accept {
        /// The new connection and its peer address.
        result: Result<(SocketId, SocketAddr), Errno>,
        /// Whether the multishot accept is still armed.
        more: bool,
    },
    /// Data (or EOF) arrived on a connection.
    Recv {
        /// The socket the receive was armed on.
        socket: SocketId,
        /// The chunk, or the error that ended the multishot receive.
        result: Result<RecvChunk, Errno>,
        /// Whether the multishot receive is still armed.
        more: bool,
    },
    /// A send finished.
    Send {
        /// The socket.
        socket: SocketId,
        /// Bytes sent.
        result: Result<usize, Errno>,
        /// The buffer given to `Op::Send`, back to its owner.
        buf: SendBuf,
    },
    /// A datagram arrived.
    RecvFrom {
        /// The UDP socket.
        socket: SocketId,
        /// The buffer, its length and the sender, or the error that ended the multishot receive.
        result: Result<(BufId, usize, SocketAddr), Errno>,
        /// Whether the multishot receive is still armed.
        more: bool,
    },
    /// A datagram send finished.
    SendTo {
        /// The UDP socket.
        socket: SocketId,
        /// Bytes sent.
        result: Result<usize, Errno>,
        /// The buffer given to `Op::SendTo`, back to its owner.
        buf: SendBuf,
    },
    /// A timeout expired (`Ok`) or was cancelled (`Err(CANCELED)`).
    Timeout {
        /// The outcome.
        result: Result<(), Errno>,
    },
    /// A cancel finished: how many operations it cancelled, or NOENT.
    Cancel {
        /// The outcome.
        result: Result<u32, Errno>,
    },
    /// An `Op::ShutdownWrite` finished.
    ShutdownWrite {
        /// The socket.
        socket: SocketId,
        /// The outcome (ENOTCONN if the connection was already gone).
        result: Result<(), Errno>,
    },
    /// A socket close finished.
    Close {
        /// The outcome.
        result: Result<(), Errno>,
    },
    /// A file write finished.
    WriteAt {
        /// Bytes written.
        result: Result<usize, Errno>,
        /// The buffer given to `Op::WriteAt`.
        buf: AlignedBuf,
    },
    /// A file read finished.
    ReadAt {
        /// Bytes read (fewer than asked at end of file).
        result: Result<usize, Errno>,
        /// The buffer given to `Op::ReadAt`, holding the data at its start.
        buf: AlignedBuf,
    },
    /// An fdatasync finished.
    Fdatasync {
        /// The outcome.
        result: Result<(), Errno>,
    },
    /// A file close finished.
    CloseFile {
        /// The outcome.
        result: Result<(), Errno>,
    },
}

/// One completion: the token of its operation and what it produced.
#[derive(Debug)]
pub struct Completion {
    /// The token given at submission.
    pub token: Token,
    /// What happened.
    pub kind: CompletionKind,
}

/// How long `Driver::run` may block when nothing is ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Do not block: submit, then take whatever completions are ready.
    Poll,
    /// Block until at least one completion, a remote wake-up, or the deadline (driver clock, ns).
    Until(u64),
}

/// Setup-time errors of a driver (binding, opening files, creating the ring).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// A system call failed.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The submission queue is full even after submitting to the kernel.
    #[error("submission queue full")]
    QueueFull,
    /// Too many sockets or files for the driver's tables.
    #[error("table full: {0}")]
    TableFull(&'static str),
    /// An id that this driver does not know.
    #[error("unknown {0}")]
    Unknown(&'static str),
}

/// Wakes a shard's driver from another thread (a mailbox producer after pushing a batch).
pub trait RemoteWaker: Send + Sync {
    /// Make the driver's current or next blocking `run` return promptly.
    fn wake(&self);
}

/// A per-core completion loop: the only thing shard code uses to touch sockets, files and time.
pub trait Driver {
    /// The driver's monotonic clock in nanoseconds (virtual in the simulation).
    fn now_ns(&self) -> u64;

    /// Wall-clock milliseconds since the Unix epoch (may step backwards; the simulation can make it).
    fn wall_ms(&self) -> u64;

    /// Open a TCP listener on `addr` (setup-time, synchronous); returns it and its bound address.
    fn listen_tcp(
        &mut self,
        addr: SocketAddr,
        opts: &TcpOptions,
    ) -> Result<(SocketId, SocketAddr), DriverError>;

    /// Bind a UDP socket on `addr` (setup-time, synchronous); returns it and its bound address.
    fn bind_udp(&mut self, addr: SocketAddr) -> Result<(SocketId, SocketAddr), DriverError>;

    /// Open a file (setup-time, synchronous).
    fn open_file(&mut self, path: &Path, opts: FileOptions) -> Result<FileId, DriverError>;

    /// Queue an operation; it reaches the kernel at the next `run` (or earlier if the queue fills).
    fn submit(&mut self, token: Token, op: Op) -> Result<(), DriverError>;

    /// Submit queued operations, wait as `wait` says, and append ready completions to `out`.
    fn run(&mut self, wait: Wait, out: &mut Vec<Completion>) -> Result<(), DriverError>;

    /// The bytes of a provided buffer lent by a completion (`len` from that completion).
    fn recv_buf(&self, buf: BufId, len: usize) -> &[u8];

    /// Give a provided buffer back to the pool (and to the kernel's buffer ring).
    fn release_buf(&mut self, buf: BufId);

    /// A handle that wakes this driver from another thread.
    fn remote_waker(&self) -> std::sync::Arc<dyn RemoteWaker>;

    /// Counters for /metrics.
    fn stats(&self) -> DriverStats;
}

/// Counters every driver keeps, exported per shard in /metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Calls to `run`.
    pub loop_iterations: u64,
    /// Operations submitted.
    pub submissions: u64,
    /// Completions delivered.
    pub completions: u64,
    /// Times the provided-buffer pool ran dry (multishot receives ended with NOBUFS).
    pub buffer_exhaustions: u64,
    /// Provided buffers currently lent to the shard.
    pub buffers_lent: u64,
    /// Bytes received on sockets.
    pub bytes_in: u64,
    /// Bytes sent on sockets.
    pub bytes_out: u64,
    /// Blocking waits resumed because only `Op::SendLazy` completions had arrived: loop turns
    /// saved.
    pub lazy_rewaits: u64,
}

/// Sizes a driver is built with (from the hardware profile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// Submission queue entries (the completion queue is twice this).
    pub ring_entries: u32,
    /// Number of provided receive buffers (a power of two, at most 32768).
    pub recv_buffers: u16,
    /// Size of each provided receive buffer in bytes.
    pub recv_buffer_bytes: u32,
    /// Use IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN (else COOP_TASKRUN).
    pub defer_taskrun: bool,
    /// Most sockets (listeners, connections, UDP) open at once.
    pub max_sockets: u32,
    /// Most files open at once.
    pub max_files: u32,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            ring_entries: 1024,
            recv_buffers: 1024,
            recv_buffer_bytes: 4096,
            defer_taskrun: true,
            max_sockets: 32768,
            max_files: 256,
        }
    }
}
