//! The production driver: one io_uring per shard.
//!
//! # Ring
//!
//! Set up with `SINGLE_ISSUER | DEFER_TASKRUN | TASKRUN_FLAG` when `DriverConfig::defer_taskrun`
//! (completions are only produced when this thread enters the kernel to wait, so there is no
//! interrupting task work), else `COOP_TASKRUN | TASKRUN_FLAG`; if the kernel refuses the flags
//! the driver falls back to the next mode and finally to a plain ring ([`RingMode`] says which).
//! The completion queue has twice the submission entries. The kernel must support EXT_ARG (5.11+)
//! and provided buffer rings (5.19+); otherwise `new` fails with a clear error.
//!
//! With SINGLE_ISSUER the ring belongs to the thread that created it: build the driver on the
//! shard thread that runs it (the type is deliberately not `Send`).
//!
//! # Operations
//!
//! Every submitted [`Op`] takes a slot in a bounded table of boxed slots (`slots.rs`); the slot owns
//! the operation's buffers (`SendBuf`, `AlignedBuf`) and the kernel-visible memory (iovecs,
//! `msghdr`, destination address, timespec) until the operation's *last* CQE, so nothing is freed or
//! moved while the kernel may touch it. The SQE's user_data is the slot index plus a generation;
//! several operations may share one caller [`Token`], and `Op::Cancel` cancels all of them (one
//! AsyncCancel per in-flight match, found by a scan of the table: cancels are rare).
//!
//! Receives use one provided buffer ring (`buf_ring.rs`): multishot recv and multishot recvmsg pick
//! a buffer only when data arrives. A lent buffer stays out of the ring until `release_buf`. When
//! the ring runs dry the kernel ends the multishot receive with ENOBUFS; the data stays in the
//! socket and the shard re-arms after releasing buffers. For UDP the buffer starts with an
//! `io_uring_recvmsg_out` header and the peer address; the driver records where the payload starts
//! so `recv_buf` returns exactly the datagram (truncated to the buffer if it was larger).
//!
//! Close of a connected TCP socket: IORING_OP_SHUTDOWN(SHUT_RDWR) hard-linked to IORING_OP_CLOSE.
//! The shutdown wakes the socket's own waiters, so an armed multishot receive ends (EOF after any
//! queued data) and a blocked send fails, each in O(1); the close drops the descriptor, and the
//! socket itself is released when the last request holding a reference to it completes. No
//! per-socket ASYNC_CANCEL: a cancel by descriptor walks every armed request of the ring, so
//! closing N connections that way is O(N^2) (at 19k connections a drain spun in
//! io_async_cancel past its bound). The final completions of a closed socket's operations are
//! reported as CANCELED whatever ended them. Listeners and UDP sockets (a handful per shard) keep
//! an AsyncCancel by descriptor hard-linked to the close. Either way the descriptor is closed
//! exactly once, by the kernel, and the `SocketId` is reused only after the close and every
//! operation that referred to it have completed.
//!
//! # Remote wake-ups
//!
//! An eventfd polled by a multishot PollAdd on the ring (`waker.rs`); its completions are internal
//! and never reach the shard. Not MSG_RING: that is submitted on the *sender's* ring, so only ring
//! owners could wake a shard, while an eventfd write works from any thread (see `waker.rs`).
//!
//! # Unsafe
//!
//! Every block carries a `// SAFETY:` comment; by file:
//! - `sock.rs`: libc socket calls and `sockaddr` reads/writes on properly sized local storage.
//! - `buf_ring.rs`: mmap/munmap of the ring and buffers; writing ring entries and the release
//!   store of the tail (the producer half of the kernel protocol); slices of lent buffers.
//! - `slots.rs`: zero-initializing `msghdr`/`sockaddr_storage` (plain old data).
//! - `submit.rs`: pushing SQEs whose pointers (iovecs, `msghdr`, address, timespec, `SendBuf` and
//!   `AlignedBuf` memory) live in a boxed slot until the request's last CQE, or in the buffer ring.
//! - `waker.rs`: eventfd create/read/write/close.
//! - this file: registering the buffer ring, pushing the waker poll and the drop-time cancel (no
//!   user memory), `open(2)`, `clock_gettime`, and dropping the buffer ring only once no request can
//!   still fill a buffer (if `drop` cannot drain the ring in time it leaks instead of freeing).

mod buf_ring;
mod complete;
mod slots;
mod sock;
mod submit;
mod table;
mod waker;

use std::io;
use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, opcode, squeue};

use self::buf_ring::BufRing;
use self::slots::{INTERNAL_BIT, Kind, Slots};
use self::table::Table;
use self::waker::EventFd;
use super::{
    BufId, Completion, Driver, DriverConfig, DriverError, DriverStats, FileId, FileOptions, Op,
    RemoteWaker, SocketId, TcpOptions, Token, Wait,
};

/// The one buffer group all receives use.
const BGID: u16 = 0;
/// user_data of internal requests whose completion carries nothing (the shutdown or cancel that
/// precedes a socket close, the drop-time cancel).
const UD_IGNORE: u64 = INTERNAL_BIT;
/// user_data of the eventfd poll.
const UD_WAKER: u64 = INTERNAL_BIT | 1;
/// Most iovecs one send passes (the kernel's UIO_MAXIOV); more segments make a partial send.
const IOV_MAX: usize = 1024;
/// In-flight operations allowed per socket slot (a receive, a send, and a shutdown or close) ...
const INFLIGHT_PER_SOCKET: usize = 3;
/// ... plus this many per submission-queue entry (timers, file I/O, cancels).
const INFLIGHT_PER_SQ_ENTRY: usize = 4;
/// How long `drop` waits for cancelled operations before leaking their buffers instead.
const DROP_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Rounds of CQ reaping per `run`, so one call cannot spin forever under a flood.
const REAP_ROUNDS_MAX: usize = 4;

/// Which task-running mode the kernel accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingMode {
    /// SINGLE_ISSUER | DEFER_TASKRUN | TASKRUN_FLAG.
    DeferTaskrun,
    /// COOP_TASKRUN | TASKRUN_FLAG.
    CoopTaskrun,
    /// No task-running flags (old kernel).
    Plain,
}

#[derive(Debug)]
enum SockKind {
    Listener(TcpOptions),
    Tcp,
    Udp,
}

#[derive(Debug)]
struct SockEntry {
    fd: RawFd,
    kind: SockKind,
    /// A Close was submitted: no new operations.
    closing: bool,
    /// The kernel closed the descriptor.
    fd_closed: bool,
    /// Slots referring to this socket (the entry is reused only when this is 0 after close).
    inflight: u32,
}

#[derive(Debug)]
struct FileEntry {
    fd: RawFd,
    closing: bool,
}

/// The io_uring [`Driver`]: one per shard thread.
pub struct UringDriver {
    ring: IoUring,
    mode: RingMode,
    slots: Slots,
    /// Dropped explicitly, and only once no operation can still fill a buffer.
    bufs: ManuallyDrop<BufRing>,
    sockets: Table<SockEntry>,
    files: Table<FileEntry>,
    waker: Arc<EventFd>,
    waker_armed: bool,
    /// Completions made without the kernel (cancel with nothing to cancel).
    ready: Vec<Completion>,
    /// Completions of whole `Op::SendLazy` sends held back during a blocking `run`.
    held: Vec<Completion>,
    /// Whether `reap` may hold lazy send completions back (only inside a blocking `run`).
    hold_lazy: bool,
    /// A remote wake-up arrived during this `run`: it returns even with no completion.
    woken: bool,
    stats: DriverStats,
    /// Reused scratch: CQEs copied out of the ring, user_data of cancel targets.
    cqes: Vec<(u64, i32, u32)>,
    targets: Vec<u64>,
}

fn os_err(what: &'static str, source: io::Error) -> DriverError {
    DriverError::Os { what, source }
}

fn build_ring(cfg: &DriverConfig) -> Result<(IoUring, RingMode), DriverError> {
    let entries = cfg.ring_entries.max(1);
    let cq = entries.saturating_mul(2);
    let mut last = None;
    let modes: &[RingMode] = if cfg.defer_taskrun {
        &[
            RingMode::DeferTaskrun,
            RingMode::CoopTaskrun,
            RingMode::Plain,
        ]
    } else {
        &[RingMode::CoopTaskrun, RingMode::Plain]
    };
    for &mode in modes {
        let mut b = IoUring::builder();
        b.setup_cqsize(cq);
        match mode {
            RingMode::DeferTaskrun => {
                b.setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_taskrun_flag();
            }
            RingMode::CoopTaskrun => {
                b.setup_coop_taskrun().setup_taskrun_flag();
            }
            RingMode::Plain => {}
        }
        match b.build(entries) {
            Ok(r) => return Ok((r, mode)),
            Err(e) => {
                tracing::warn!(?mode, error = %e, "io_uring setup refused, trying a simpler mode");
                last = Some(e);
            }
        }
    }
    Err(os_err(
        "io_uring_setup (is io_uring disabled? see /proc/sys/kernel/io_uring_disabled)",
        last.unwrap_or_else(|| io::Error::from(io::ErrorKind::Unsupported)),
    ))
}

impl UringDriver {
    /// Create the ring, register the provided buffer ring and arm the remote-wake poll.
    pub fn new(cfg: DriverConfig) -> Result<Self, DriverError> {
        let (ring, mode) = build_ring(&cfg)?;
        if !ring.params().is_feature_ext_arg() {
            return Err(os_err(
                "io_uring lacks IORING_FEAT_EXT_ARG (kernel 5.11+ needed)",
                io::Error::from(io::ErrorKind::Unsupported),
            ));
        }
        let bufs = BufRing::new(cfg.recv_buffers, cfg.recv_buffer_bytes)?;
        // SAFETY: the ring mapping lives in `bufs`, which is dropped only after the buffer group
        // is unregistered (or never, if the kernel might still use it).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(bufs.ring_addr(), bufs.count(), BGID, 0)
        }
        .map_err(|e| os_err("IORING_REGISTER_PBUF_RING (kernel 5.19+ needed)", e))?;
        let waker = EventFd::new().map_err(|e| os_err("eventfd", e))?;
        let max_inflight = (cfg.max_sockets as usize)
            .saturating_mul(INFLIGHT_PER_SOCKET)
            .saturating_add((cfg.ring_entries as usize).saturating_mul(INFLIGHT_PER_SQ_ENTRY));
        let mut d = UringDriver {
            ring,
            mode,
            slots: Slots::new(max_inflight),
            bufs: ManuallyDrop::new(bufs),
            sockets: Table::new(cfg.max_sockets),
            files: Table::new(cfg.max_files),
            waker: Arc::new(waker),
            waker_armed: false,
            ready: Vec::new(),
            held: Vec::new(),
            hold_lazy: false,
            woken: false,
            stats: DriverStats::default(),
            cqes: Vec::new(),
            targets: Vec::new(),
        };
        d.arm_waker()?;
        d.ring
            .submit()
            .map_err(|e| os_err("io_uring_enter (first submit)", e))?;
        Ok(d)
    }

    /// The task-running mode the kernel accepted.
    pub fn mode(&self) -> RingMode {
        self.mode
    }

    /// Operations the kernel may still reference (for tests and shutdown checks).
    pub fn in_flight(&self) -> usize {
        self.slots.in_flight()
    }

    /// Open sockets in the table (including ones whose close is still in flight).
    pub fn open_sockets(&self) -> usize {
        self.sockets.entries.iter().filter(|e| e.is_some()).count()
    }

    /// Make room for `n` SQEs, submitting what is queued if needed.
    fn reserve_sq(&mut self, n: usize) -> Result<(), DriverError> {
        let free = {
            let sq = self.ring.submission();
            sq.capacity() - sq.len()
        };
        if free >= n {
            return Ok(());
        }
        match self.ring.submit() {
            Ok(_) => {}
            Err(e) if is_transient(&e) => {}
            Err(e) => return Err(os_err("io_uring_enter (submit)", e)),
        }
        let sq = self.ring.submission();
        if sq.capacity() - sq.len() >= n {
            Ok(())
        } else {
            Err(DriverError::QueueFull)
        }
    }

    /// Push one SQE; `reserve_sq` must have made room.
    ///
    /// # Safety
    /// Every pointer in `sqe` must stay valid until the request's last CQE.
    unsafe fn push(&mut self, sqe: &squeue::Entry) -> Result<(), DriverError> {
        // SAFETY: forwarded from the caller.
        unsafe { self.ring.submission().push(sqe) }.map_err(|_| DriverError::QueueFull)
    }

    fn arm_waker(&mut self) -> Result<(), DriverError> {
        self.reserve_sq(1)?;
        let sqe = opcode::PollAdd::new(Fd(self.waker.fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(UD_WAKER);
        // SAFETY: the poll refers only to the eventfd, which `self.waker` keeps open.
        unsafe { self.push(&sqe) }?;
        self.waker_armed = true;
        Ok(())
    }

    fn sock_fd(&self, id: SocketId) -> Result<RawFd, DriverError> {
        match self.sockets.get(id.0) {
            Some(e) if !e.closing => Ok(e.fd),
            _ => Err(DriverError::Unknown("socket")),
        }
    }

    fn file_fd(&self, id: FileId) -> Result<RawFd, DriverError> {
        match self.files.get(id.0) {
            Some(e) if !e.closing => Ok(e.fd),
            _ => Err(DriverError::Unknown("file")),
        }
    }

    /// Allocate a slot for `kind`, counting it against its socket.
    fn alloc(&mut self, token: Token, kind: Kind) -> Result<u32, DriverError> {
        let sock = kind.socket();
        let idx = self
            .slots
            .alloc(token, kind)
            .ok_or(DriverError::TableFull("in-flight operations"))?;
        if let Some(e) = sock.and_then(|s| self.sockets.get_mut(s.0)) {
            e.inflight += 1;
        }
        Ok(idx)
    }

    /// Free a slot after its last CQE and settle its socket's bookkeeping.
    fn free(&mut self, idx: u32) -> Option<(Token, Kind)> {
        let (token, kind) = self.slots.free(idx)?;
        if let Some(s) = kind.socket() {
            if let Kind::Close { .. } = kind
                && let Some(e) = self.sockets.get_mut(s.0)
            {
                e.fd_closed = true;
            }
            self.sock_op_done(s);
        }
        Some((token, kind))
    }

    fn sock_op_done(&mut self, s: SocketId) {
        let done = match self.sockets.get_mut(s.0) {
            Some(e) => {
                e.inflight = e.inflight.saturating_sub(1);
                e.closing && e.fd_closed && e.inflight == 0
            }
            None => false,
        };
        if done {
            self.sockets.remove(s.0);
        }
    }

    /// Enter the kernel: submit, and wait up to `block_ns` for one completion if given.
    fn enter(&mut self, block_ns: Option<u64>) -> Result<(), DriverError> {
        let r = match block_ns {
            None => self.ring.submit(),
            Some(ns) => {
                let ts = Timespec::from(Duration::from_nanos(ns));
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_transient(&e) => Ok(()),
            Err(e) => Err(os_err("io_uring_enter", e)),
        }
    }

    /// Take every ready CQE and turn it into completions.
    fn reap(&mut self, out: &mut Vec<Completion>) {
        let mut cqes = std::mem::take(&mut self.cqes);
        for _ in 0..REAP_ROUNDS_MAX {
            cqes.clear();
            {
                let mut cq = self.ring.completion();
                cq.sync();
                cqes.extend(cq.map(|e| (e.user_data(), e.result(), e.flags())));
            }
            if cqes.is_empty() {
                break;
            }
            for &(ud, res, flags) in &cqes {
                self.on_cqe(ud, res, flags, out);
            }
        }
        self.cqes = cqes;
    }
}

/// Errors of io_uring_enter that only mean "come back later".
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN)
    )
}

impl Driver for UringDriver {
    fn now_ns(&self) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes one timespec we own; CLOCK_MONOTONIC always exists on Linux.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
    }

    fn wall_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn listen_tcp(
        &mut self,
        addr: SocketAddr,
        opts: &TcpOptions,
    ) -> Result<(SocketId, SocketAddr), DriverError> {
        let (fd, local) = sock::listen_tcp(&addr, opts)?;
        match self.sockets.insert(SockEntry {
            fd,
            kind: SockKind::Listener(opts.clone()),
            closing: false,
            fd_closed: false,
            inflight: 0,
        }) {
            Some(id) => Ok((SocketId(id), local)),
            None => {
                sock::close_fd(fd);
                Err(DriverError::TableFull("sockets"))
            }
        }
    }

    fn bind_udp(&mut self, addr: SocketAddr) -> Result<(SocketId, SocketAddr), DriverError> {
        let (fd, local) = sock::bind_udp(&addr)?;
        match self.sockets.insert(SockEntry {
            fd,
            kind: SockKind::Udp,
            closing: false,
            fd_closed: false,
            inflight: 0,
        }) {
            Some(id) => Ok((SocketId(id), local)),
            None => {
                sock::close_fd(fd);
                Err(DriverError::TableFull("sockets"))
            }
        }
    }

    fn open_file(&mut self, path: &Path, opts: FileOptions) -> Result<FileId, DriverError> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| {
            os_err(
                "open: path contains NUL",
                io::Error::from(io::ErrorKind::InvalidInput),
            )
        })?;
        let mut flags = libc::O_RDWR | libc::O_CLOEXEC;
        if opts.create {
            flags |= libc::O_CREAT;
        }
        if opts.truncate {
            flags |= libc::O_TRUNC;
        }
        if opts.direct {
            flags |= libc::O_DIRECT;
        }
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        let fd = unsafe { libc::open(c.as_ptr(), flags, 0o644 as libc::c_uint) };
        if fd < 0 {
            return Err(os_err("open", io::Error::last_os_error()));
        }
        match self.files.insert(FileEntry { fd, closing: false }) {
            Some(id) => Ok(FileId(id)),
            None => {
                sock::close_fd(fd);
                Err(DriverError::TableFull("files"))
            }
        }
    }

    fn submit(&mut self, token: Token, op: Op) -> Result<(), DriverError> {
        self.submit_op(token, op)?;
        self.stats.submissions += 1;
        Ok(())
    }

    fn run(&mut self, wait: Wait, out: &mut Vec<Completion>) -> Result<(), DriverError> {
        self.stats.loop_iterations += 1;
        if !self.waker_armed {
            self.arm_waker()?;
        }
        let before = out.len();
        self.stats.completions += self.ready.len() as u64;
        out.append(&mut self.ready);
        let mut block_ns = match wait {
            Wait::Poll => None,
            Wait::Until(deadline) => {
                let now = self.now_ns();
                let idle = out.len() == before && self.ring.completion().is_empty();
                (idle && deadline > now).then(|| deadline - now)
            }
        };
        self.woken = false;
        loop {
            if !self.waker_armed {
                self.arm_waker()?;
            }
            self.enter(block_ns)?;
            self.hold_lazy = block_ns.is_some();
            self.reap(out);
            self.hold_lazy = false;
            // Woken only by sends that just went out whole (typically the ones this very
            // call submitted): nothing for the shard to do yet, so block again for the rest of
            // the wait instead of spending a loop turn on returning their buffers.
            if let (Some(_), Wait::Until(deadline)) = (block_ns, wait)
                && out.len() == before
                && !self.held.is_empty()
                && !self.woken
            {
                let now = self.now_ns();
                if deadline > now && self.ring.completion().is_empty() {
                    self.stats.lazy_rewaits += 1;
                    block_ns = Some(deadline - now);
                    continue;
                }
            }
            break;
        }
        if !self.held.is_empty() {
            // Ahead of what woke us, in the order they completed.
            let n = self.held.len();
            out.append(&mut self.held);
            out[before..].rotate_right(n);
        }
        Ok(())
    }

    fn recv_buf(&self, buf: BufId, len: usize) -> &[u8] {
        self.bufs.slice(buf.0, len)
    }

    fn release_buf(&mut self, buf: BufId) {
        self.bufs.release(buf.0);
    }

    fn remote_waker(&self) -> Arc<dyn RemoteWaker> {
        self.waker.clone()
    }

    fn stats(&self) -> DriverStats {
        DriverStats {
            buffers_lent: self.bufs.lent_count(),
            ..self.stats
        }
    }
}

impl Drop for UringDriver {
    fn drop(&mut self) {
        // Cancel everything, then wait for every slot's last CQE before freeing its buffers.
        let cancel_all = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(UD_IGNORE);
        if self.reserve_sq(1).is_ok() {
            // SAFETY: no user memory.
            let _ = unsafe { self.push(&cancel_all) };
        }
        let deadline = self.now_ns() + DROP_DRAIN_TIMEOUT.as_nanos() as u64;
        let mut sink = Vec::new();
        while self.slots.in_flight() > 0 && self.now_ns() < deadline {
            if self.enter(Some(10_000_000)).is_err() {
                break;
            }
            self.reap(&mut sink);
            // Dropping completions returns their buffers; lent receive buffers are just memory.
            sink.clear();
        }
        let drained = self.slots.in_flight() == 0;
        // A close still in flight owns its descriptor: closing it here could close a reused fd.
        for e in self.sockets.drain() {
            if !e.fd_closed && (!e.closing || drained) {
                sock::close_fd(e.fd);
            }
        }
        for f in self.files.drain() {
            if !f.closing || drained {
                sock::close_fd(f.fd);
            }
        }
        if drained {
            let _ = self.ring.submitter().unregister_buf_ring(BGID);
            // SAFETY: no operation is in flight, so the kernel can no longer select or fill a
            // provided buffer, and the group is unregistered; `bufs` is never used again.
            unsafe { ManuallyDrop::drop(&mut self.bufs) };
        } else {
            tracing::error!(
                in_flight = self.slots.in_flight(),
                "io_uring operations did not drain; leaking their buffers"
            );
            // Leak the slots (and the buffers they own) instead of freeing memory the kernel
            // may still write; `bufs` is ManuallyDrop and simply not dropped.
            std::mem::forget(std::mem::replace(&mut self.slots, Slots::new(0)));
        }
    }
}
