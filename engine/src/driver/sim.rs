//! The deterministic simulated driver: seeded PRNG, virtual clock, simulated network and disk.
//!
//! In the style of TigerBeetle's VOPR: a [`SimWorld`] owns one seeded ChaCha8 PRNG, a virtual
//! clock, the simulated network (TCP peers and UDP endpoints the test plays) and a [`SimDisk`].
//! Each shard gets a [`SimDriver`] from the world; shard code sees only the `Driver` trait and
//! behaves as on io_uring: multishot accept and receives, provided buffers lent until released,
//! NOBUFS ending a multishot receive with the data left queued, a multishot receive sometimes
//! ended on a data completion (as CQ overflow does; `SimConfig::recv_end_with_data_prob`),
//! partial sends under a receive window, cancellation by token, shutdown of the sending half,
//! close cancelling in-flight operations first. As Linux does, closing a connection with input
//! still unread resets it instead of sending a FIN, and so does input reaching a closed socket:
//! the peer then loses what it had not read yet (a response cut off by a reset).
//!
//! Time: the clock moves only inside `run(Wait::Until(d))` when nothing is ready to deliver: it
//! jumps to the next event (network arrival, this shard's timer or completion), never past `d`.
//! `Wait::Poll` never moves it, so a loop that only polls stands still; other shards' pending
//! completions do not move it either (they wait for their own shard's `run`). The clock is shared,
//! so a `run` never looks at another shard's work: a multi-shard harness must bound each shard's
//! wait by the minimum of every shard's [`SimDriver::next_deadline_ns`] (which is "now" while a
//! shard has unstarted submissions or sockets the network changed) and the world's next event,
//! recomputed before each shard's turn.
//!
//! Misuse is a bug in the code under test, so the simulation panics on it with the seed in the
//! message (releasing a buffer not lent, a completion for an operation not in flight).

mod bufs;
mod config;
mod disk;
mod error;
mod net;
#[cfg(test)]
mod tests;
mod world;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::Rng;

pub use config::{
    EPHEMERAL_PORT_FIRST, PEER_WINDOW_BYTES_DEFAULT, SECTOR_BYTES, SIM_FILE_BYTES_MAX, SimConfig,
    UDP_DATAGRAM_BYTES_MAX, UDP_RX_QUEUE_DATAGRAMS_MAX, WALL_CLOCK_START_MS,
};
pub use disk::SimDisk;
pub use error::SimError;
pub use net::{PeerId, UdpPeerId};
pub use world::SimWorld;

use self::bufs::BufPool;
use self::config::chance;
use self::net::{Listener, PeerEnd, UdpEnd, UdpOwner};
use self::world::World;
use super::{
    BufId, Completion, CompletionKind, Driver, DriverConfig, DriverError, DriverStats, Errno,
    FileId, FileOptions, Op, RecvChunk, RemoteWaker, SocketId, TcpOptions, Token, Wait,
};
use crate::buf::{DIRECT_ALIGN, SendBuf};

/// The remote waker: everything runs on one thread, so a flag that makes the next blocking `run`
/// return at once (before moving the clock) is all a mailbox producer needs.
#[derive(Debug, Default)]
struct SimWaker {
    flag: AtomicBool,
}

impl RemoteWaker for SimWaker {
    fn wake(&self) {
        self.flag.store(true, Ordering::Release);
    }
}

/// A completion waiting for its delivery time.
#[derive(Debug)]
struct Ready {
    at_ns: u64,
    seq: u64,
    completion: Completion,
    /// The last completion of its operation (not a `more: true` multishot one).
    finishes_op: bool,
    /// A closed socket whose id becomes reusable once this (its Close) is delivered.
    frees: Option<SocketId>,
}

impl PartialEq for Ready {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ns, self.seq) == (other.at_ns, other.seq)
    }
}
impl Eq for Ready {}
impl PartialOrd for Ready {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ready {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at_ns, self.seq).cmp(&(other.at_ns, other.seq))
    }
}

/// What a socket of this shard is.
#[derive(Clone, Copy, Debug)]
enum SockKind {
    Listener { addr: SocketAddr },
    Tcp { conn: PeerId },
    Udp { addr: SocketAddr },
}

/// An open socket and the operations armed on it.
#[derive(Debug)]
struct Sock {
    kind: SockKind,
    /// The armed multishot accept / receive, if any (one at a time).
    multishot: Option<u64>,
    /// Sends in submission order; the front one is the one in progress.
    sends: VecDeque<u64>,
    /// Completions of one socket are delivered in the order they happened.
    last_ready_ns: u64,
    /// `Op::ShutdownWrite` ran: the FIN is sent and later sends fail with EPIPE.
    write_shut: bool,
}

/// A socket table entry; `Closing` keeps the id taken until its Close completion is delivered.
#[derive(Debug)]
enum Slot {
    Free,
    Open(Sock),
    Closing,
}

/// An operation that waits for something (data, window, a connection, a deadline).
#[derive(Debug)]
enum PendingKind {
    Accept,
    Recv,
    RecvFrom,
    Send(SendBuf),
    Timeout,
}

#[derive(Debug)]
struct Pending {
    token: Token,
    socket: Option<SocketId>,
    kind: PendingKind,
}

#[derive(Debug)]
struct OpenFile {
    path: PathBuf,
    direct: bool,
}

/// One shard's driver on a simulated world (see the module docs).
pub struct SimDriver {
    world: SimWorld,
    shard: usize,
    cfg: DriverConfig,
    seed: u64,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    files: Vec<Option<OpenFile>>,
    ops: BTreeMap<u64, Pending>,
    next_op: u64,
    timers: BinaryHeap<Reverse<(u64, u64)>>,
    ready: BinaryHeap<Reverse<Ready>>,
    ready_seq: u64,
    submitted: VecDeque<(Token, Op)>,
    bufs: BufPool,
    waker: Arc<SimWaker>,
    stats: DriverStats,
    /// Submitted operations whose final completion has not been delivered.
    in_flight: u64,
}

impl std::fmt::Debug for SimDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDriver")
            .field("seed", &self.seed)
            .field("shard", &self.shard)
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

impl SimWorld {
    /// A driver for one more shard of this world.
    ///
    /// Panics if `cfg` has no receive buffers or zero-byte ones (a test setup error).
    pub fn driver(&self, cfg: DriverConfig) -> SimDriver {
        assert!(
            cfg.recv_buffers > 0 && cfg.recv_buffer_bytes > 0,
            "sim: empty buffer pool"
        );
        let mut w = self.inner.borrow_mut();
        let shard = w.dirty.len();
        w.dirty.push(Default::default());
        let seed = w.cfg.seed;
        SimDriver {
            world: self.clone(),
            shard,
            cfg,
            seed,
            slots: Vec::new(),
            free_slots: Vec::new(),
            files: Vec::new(),
            ops: BTreeMap::new(),
            next_op: 0,
            timers: BinaryHeap::new(),
            ready: BinaryHeap::new(),
            ready_seq: 0,
            submitted: VecDeque::new(),
            bufs: BufPool::new(cfg.recv_buffers, cfg.recv_buffer_bytes, seed),
            waker: Arc::new(SimWaker::default()),
            stats: DriverStats::default(),
            in_flight: 0,
        }
    }
}

fn os_error(what: &'static str, kind: std::io::ErrorKind) -> DriverError {
    DriverError::Os {
        what,
        source: std::io::Error::from(kind),
    }
}

impl SimDriver {
    /// A single-shard node on a fresh world with an empty disk.
    pub fn new(cfg: SimConfig, driver: DriverConfig) -> Self {
        SimWorld::new(cfg).driver(driver)
    }

    /// A single-shard node on a fresh world booting on `disk` (e.g. after a crash).
    pub fn new_with_disk(cfg: SimConfig, driver: DriverConfig, disk: SimDisk) -> Self {
        SimWorld::new_with_disk(cfg, disk).driver(driver)
    }

    /// The world this driver lives in (to play peers, crash the disk, step the wall clock).
    pub fn world(&self) -> SimWorld {
        self.world.clone()
    }

    /// This driver's shard index in its world.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// The world's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Step the world's wall clock by `delta_ms` (negative: backwards).
    pub fn step_wall_clock(&self, delta_ms: i64) {
        self.world.step_wall_clock(delta_ms);
    }

    /// What the disk would hold after losing power now (the world runs on unchanged).
    pub fn crash_disk_image(&self) -> SimDisk {
        self.world.crash_disk_image()
    }

    /// Stop this node and keep its disk as it is (no crash: a clean shutdown).
    pub fn into_disk(self) -> SimDisk {
        self.world.disk_snapshot()
    }

    /// Sockets open or closing (listeners included).
    pub fn open_sockets(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| !matches!(s, Slot::Free))
            .count()
    }

    /// Submitted operations whose final completion has not been delivered yet.
    pub fn in_flight_ops(&self) -> u64 {
        self.in_flight
    }

    /// Provided buffers currently lent to the shard.
    pub fn buffers_lent(&self) -> usize {
        self.bufs.lent_count()
    }

    /// The earliest time this shard has something of its own to do: now if it has submissions not
    /// yet handed to the simulated kernel or sockets whose state changed since its last run (both
    /// only progress inside its own `run`), else its next timer or completion. A multi-shard
    /// harness waits until the minimum of this over shards and the world's next event, so that no
    /// shard moves the shared clock past work another shard has not started yet.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        let (now, dirty) = {
            let w = self.world.inner.borrow();
            let dirty = w.dirty.get(self.shard).is_some_and(|s| !s.is_empty());
            (w.now_ns, dirty)
        };
        if !self.submitted.is_empty() || dirty {
            return Some(now);
        }
        self.next_own_event_ns()
    }

    /// This shard's next timer or completion time.
    fn next_own_event_ns(&self) -> Option<u64> {
        let timer = self.timers.peek().map(|Reverse((d, _))| *d);
        let ready = self.ready.peek().map(|Reverse(r)| r.at_ns);
        timer.into_iter().chain(ready).min()
    }

    /// After the shard has finished: no buffer still lent and no operation still in flight.
    pub fn leak_check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.bufs.lent_count() > 0 {
            problems.push(format!(
                "{} provided buffers still lent",
                self.bufs.lent_count()
            ));
        }
        if self.in_flight > 0 {
            let tokens: Vec<Token> = self.ops.values().map(|p| p.token).collect();
            problems.push(format!(
                "{} operations in flight (waiting tokens {:?}, {} undelivered completions, {} unsubmitted)",
                self.in_flight,
                tokens,
                self.ready.len(),
                self.submitted.len()
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "sim seed {} shard {}: {}",
                self.seed,
                self.shard,
                problems.join("; ")
            ))
        }
    }

    fn sock_mut(&mut self, sid: SocketId) -> Option<&mut Sock> {
        match self.slots.get_mut(sid.0 as usize) {
            Some(Slot::Open(s)) => Some(s),
            _ => None,
        }
    }

    fn alloc_socket(&mut self, kind: SockKind) -> Option<SocketId> {
        let sock = Slot::Open(Sock {
            kind,
            multishot: None,
            sends: VecDeque::new(),
            last_ready_ns: 0,
            write_shut: false,
        });
        if let Some(i) = self.free_slots.pop() {
            self.slots[i as usize] = sock;
            return Some(SocketId(i));
        }
        if self.slots.len() >= self.cfg.max_sockets as usize {
            return None;
        }
        self.slots.push(sock);
        Some(SocketId(u32::try_from(self.slots.len() - 1).ok()?))
    }

    /// Delivery time of the next completion on `sid`: a fresh latency, never before the previous one.
    fn sock_time(&mut self, w: &mut World, sid: SocketId) -> u64 {
        let at = w.now_ns + w.latency();
        match self.sock_mut(sid) {
            Some(s) => {
                s.last_ready_ns = s.last_ready_ns.max(at);
                s.last_ready_ns
            }
            None => at,
        }
    }

    fn complete(&mut self, at_ns: u64, token: Token, kind: CompletionKind, finishes_op: bool) {
        self.complete_freeing(at_ns, token, kind, finishes_op, None);
    }

    fn complete_freeing(
        &mut self,
        at_ns: u64,
        token: Token,
        kind: CompletionKind,
        finishes_op: bool,
        frees: Option<SocketId>,
    ) {
        self.ready_seq += 1;
        self.ready.push(Reverse(Ready {
            at_ns,
            seq: self.ready_seq,
            completion: Completion { token, kind },
            finishes_op,
            frees,
        }));
    }

    fn new_op(&mut self, token: Token, socket: Option<SocketId>, kind: PendingKind) -> u64 {
        self.next_op += 1;
        self.ops.insert(
            self.next_op,
            Pending {
                token,
                socket,
                kind,
            },
        );
        self.next_op
    }

    /// Take a waiting operation out of the table; it must be there (else the sim itself is wrong).
    fn take_op(&mut self, key: u64) -> Pending {
        match self.ops.remove(&key) {
            Some(p) => p,
            None => panic!("sim (seed {}): operation {key} finished twice", self.seed),
        }
    }

    /// The completion of a waiting operation that ends with `err`.
    fn fail_kind(p: Pending, err: Errno) -> CompletionKind {
        let socket = p.socket.unwrap_or(SocketId(u32::MAX));
        match p.kind {
            PendingKind::Accept => CompletionKind::Accept {
                result: Err(err),
                more: false,
            },
            PendingKind::Recv => CompletionKind::Recv {
                socket,
                result: Err(err),
                more: false,
            },
            PendingKind::RecvFrom => CompletionKind::RecvFrom {
                socket,
                result: Err(err),
                more: false,
            },
            PendingKind::Send(buf) => CompletionKind::Send {
                socket,
                result: Err(err),
                buf,
            },
            PendingKind::Timeout => CompletionKind::Timeout { result: Err(err) },
        }
    }

    /// Cancel one waiting operation: detach it from its socket and complete it with CANCELED.
    fn cancel_op(&mut self, w: &mut World, key: u64) {
        let p = self.take_op(key);
        let at = match p.socket {
            Some(sid) => {
                if let Some(s) = self.sock_mut(sid) {
                    if s.multishot == Some(key) {
                        s.multishot = None;
                    }
                    s.sends.retain(|k| *k != key);
                }
                self.sock_time(w, sid)
            }
            None => w.now_ns + w.latency(),
        };
        let token = p.token;
        self.complete(at, token, Self::fail_kind(p, Errno::CANCELED), true);
    }

    /// Arm a multishot accept/receive on `sid` if it is an open socket of the right kind.
    fn arm_multishot(
        &mut self,
        w: &mut World,
        token: Token,
        sid: SocketId,
        kind: PendingKind,
    ) -> Result<(), (Errno, PendingKind)> {
        let shard = self.shard;
        let fits = |k: &SockKind| {
            matches!(
                (k, &kind),
                (SockKind::Listener { .. }, PendingKind::Accept)
                    | (SockKind::Tcp { .. }, PendingKind::Recv)
                    | (SockKind::Udp { .. }, PendingKind::RecvFrom)
            )
        };
        match self.sock_mut(sid) {
            Some(s) if fits(&s.kind) => {
                if s.multishot.is_some() {
                    return Err((Errno(libc::EALREADY), kind));
                }
            }
            Some(_) => return Err((Errno(libc::ENOTSOCK), kind)),
            None => return Err((Errno::BADF, kind)),
        }
        let key = self.new_op(token, Some(sid), kind);
        if let Some(s) = self.sock_mut(sid) {
            s.multishot = Some(key);
        }
        w.mark_dirty((shard, sid));
        Ok(())
    }

    /// Hand a submitted operation to the simulated kernel.
    fn start(&mut self, w: &mut World, token: Token, op: Op) {
        match op {
            Op::AcceptMulti { listener: sid } => {
                self.start_multishot(w, token, sid, PendingKind::Accept)
            }
            Op::RecvMulti { socket } => self.start_multishot(w, token, socket, PendingKind::Recv),
            Op::RecvFromMulti { socket } => {
                self.start_multishot(w, token, socket, PendingKind::RecvFrom);
            }
            // The simulation delivers every completion as it happens: holding one back is only
            // a saving of loop turns, which virtual time does not charge.
            Op::Send { socket, buf } | Op::SendLazy { socket, buf } => {
                let shard = self.shard;
                match self.sock_mut(socket).map(|s| s.kind) {
                    Some(SockKind::Tcp { .. }) => {
                        let key = self.new_op(token, Some(socket), PendingKind::Send(buf));
                        if let Some(s) = self.sock_mut(socket) {
                            s.sends.push_back(key);
                        }
                        w.mark_dirty((shard, socket));
                    }
                    other => {
                        let err = if other.is_some() {
                            Errno(libc::ENOTCONN)
                        } else {
                            Errno::BADF
                        };
                        let at = w.now_ns + w.latency();
                        let kind = CompletionKind::Send {
                            socket,
                            result: Err(err),
                            buf,
                        };
                        self.complete(at, token, kind, true);
                    }
                }
            }
            Op::SendTo { socket, addr, buf } => self.start_send_to(w, token, socket, addr, buf),
            Op::Timeout { deadline_ns } => {
                if deadline_ns <= w.now_ns {
                    let at = w.now_ns;
                    self.complete(at, token, CompletionKind::Timeout { result: Ok(()) }, true);
                } else {
                    let key = self.new_op(token, None, PendingKind::Timeout);
                    self.timers.push(Reverse((deadline_ns, key)));
                }
            }
            Op::Cancel { target } => {
                let keys: Vec<u64> = self
                    .ops
                    .iter()
                    .filter(|(_, p)| p.token == target)
                    .map(|(k, _)| *k)
                    .collect();
                for &k in &keys {
                    self.cancel_op(w, k);
                }
                let result = match u32::try_from(keys.len()) {
                    Ok(0) => Err(Errno::NOENT),
                    Ok(n) => Ok(n),
                    Err(_) => Ok(u32::MAX),
                };
                let at = w.now_ns + w.latency();
                self.complete(at, token, CompletionKind::Cancel { result }, true);
            }
            Op::ShutdownWrite { socket } => self.shutdown_write(w, token, socket),
            Op::Close { socket } => self.close_socket(w, token, socket),
            Op::WriteAt {
                file,
                offset,
                buf,
                len,
            } => {
                let result = self
                    .check_file_io(file, offset, len, buf.capacity())
                    .and_then(|path| {
                        if chance(&mut w.rng, w.cfg.disk_eio_prob) {
                            Err(Errno::IO)
                        } else if chance(&mut w.rng, w.cfg.disk_nospc_prob) {
                            Err(Errno::NOSPC)
                        } else {
                            w.disk.write(&path, offset, &buf[..len]);
                            Ok(len)
                        }
                    });
                let at = w.now_ns + w.cfg.disk_write_latency_ns;
                self.complete(at, token, CompletionKind::WriteAt { result, buf }, true);
            }
            Op::ReadAt {
                file,
                offset,
                mut buf,
                len,
            } => {
                let result = self
                    .check_file_io(file, offset, len, buf.capacity())
                    .and_then(|path| {
                        if chance(&mut w.rng, w.cfg.disk_eio_prob) {
                            Err(Errno::IO)
                        } else {
                            Ok(w.disk.read(&path, offset, &mut buf[..len]))
                        }
                    });
                let at = w.now_ns + w.cfg.disk_read_latency_ns;
                self.complete(at, token, CompletionKind::ReadAt { result, buf }, true);
            }
            Op::Fdatasync { file } => {
                let result = match self.file_path(file) {
                    None => Err(Errno::BADF),
                    // A failed fdatasync leaves the writes unsynced (they may still be lost).
                    Some(_) if chance(&mut w.rng, w.cfg.disk_eio_prob) => Err(Errno::IO),
                    Some(path) => {
                        w.disk.sync(&path);
                        Ok(())
                    }
                };
                let at = w.now_ns + w.cfg.fsync_latency_ns;
                self.complete(at, token, CompletionKind::Fdatasync { result }, true);
            }
            Op::CloseFile { file } => {
                let result = match self.files.get_mut(file.0 as usize) {
                    Some(slot @ Some(_)) => {
                        *slot = None;
                        Ok(())
                    }
                    _ => Err(Errno::BADF),
                };
                let at = w.now_ns + w.latency();
                self.complete(at, token, CompletionKind::CloseFile { result }, true);
            }
        }
    }

    fn start_multishot(&mut self, w: &mut World, token: Token, sid: SocketId, kind: PendingKind) {
        if let Err((err, kind)) = self.arm_multishot(w, token, sid, kind) {
            let at = w.now_ns + w.latency();
            let p = Pending {
                token,
                socket: Some(sid),
                kind,
            };
            self.complete(at, token, Self::fail_kind(p, err), true);
        }
    }

    fn start_send_to(
        &mut self,
        w: &mut World,
        token: Token,
        socket: SocketId,
        to: SocketAddr,
        buf: SendBuf,
    ) {
        let from = match self.sock_mut(socket).map(|s| s.kind) {
            Some(SockKind::Udp { addr }) => Ok(addr),
            Some(_) => Err(Errno(libc::ENOTSOCK)),
            None => Err(Errno::BADF),
        };
        let result = from.and_then(|from| {
            let n = buf.remaining();
            if n > UDP_DATAGRAM_BYTES_MAX {
                return Err(Errno(libc::EMSGSIZE));
            }
            let mut data = Vec::with_capacity(n);
            buf.copy_unsent_into(&mut data);
            w.send_datagram(from, to, &data);
            Ok(n)
        });
        if let Ok(n) = result {
            self.stats.bytes_out += n as u64;
        }
        let at = self.sock_time(w, socket);
        self.complete(
            at,
            token,
            CompletionKind::SendTo {
                socket,
                result,
                buf,
            },
            true,
        );
    }

    fn file_path(&self, file: FileId) -> Option<PathBuf> {
        match self.files.get(file.0 as usize) {
            Some(Some(f)) => Some(f.path.clone()),
            _ => None,
        }
    }

    /// The path of `file` if the I/O is valid: an open file, `len` within the buffer, and
    /// O_DIRECT alignment when the file was opened with it.
    fn check_file_io(
        &self,
        file: FileId,
        offset: u64,
        len: usize,
        cap: usize,
    ) -> Result<PathBuf, Errno> {
        let Some(Some(f)) = self.files.get(file.0 as usize) else {
            return Err(Errno::BADF);
        };
        let align = DIRECT_ALIGN as u64;
        if len > cap
            || (f.direct && (!offset.is_multiple_of(align) || !(len as u64).is_multiple_of(align)))
        {
            return Err(Errno(libc::EINVAL));
        }
        if offset.saturating_add(len as u64) > SIM_FILE_BYTES_MAX {
            return Err(Errno(libc::EFBIG));
        }
        Ok(f.path.clone())
    }

    /// shutdown(SHUT_WR): the peer gets the FIN behind what was already sent; a send still
    /// waiting for window (and every later one) fails with EPIPE, as the kernel wakes it; the
    /// receive side is untouched.
    fn shutdown_write(&mut self, w: &mut World, token: Token, sid: SocketId) {
        let shard = self.shard;
        let result = match self.sock_mut(sid) {
            Some(s) => match s.kind {
                SockKind::Tcp { conn } => {
                    s.write_shut = true;
                    w.send_fin(conn, false);
                    w.mark_dirty((shard, sid));
                    Ok(())
                }
                _ => Err(Errno(libc::ENOTCONN)),
            },
            None => Err(Errno::BADF),
        };
        let at = self.sock_time(w, sid);
        self.complete(
            at,
            token,
            CompletionKind::ShutdownWrite {
                socket: sid,
                result,
            },
            true,
        );
    }

    /// Close a socket: cancel what is armed on it, tell the network, then complete the Close.
    fn close_socket(&mut self, w: &mut World, token: Token, sid: SocketId) {
        let keys: Vec<u64> = match self.sock_mut(sid) {
            Some(s) => s.multishot.iter().chain(s.sends.iter()).copied().collect(),
            None => {
                let at = w.now_ns + w.latency();
                self.complete(
                    at,
                    token,
                    CompletionKind::Close {
                        result: Err(Errno::BADF),
                    },
                    true,
                );
                return;
            }
        };
        for k in keys {
            self.cancel_op(w, k);
        }
        let at = self.sock_time(w, sid);
        let Some(Slot::Open(sock)) = self
            .slots
            .get_mut(sid.0 as usize)
            .map(|s| std::mem::replace(s, Slot::Closing))
        else {
            unreachable!("socket checked open above");
        };
        let owner = (self.shard, sid);
        match sock.kind {
            SockKind::Listener { addr } => {
                let mut refused = Vec::new();
                if let Some(list) = w.net.listeners.get_mut(&addr) {
                    if let Some(pos) = list.iter().position(|l| l.owner == owner) {
                        let l: Listener = list.remove(pos);
                        refused.extend(l.backlog);
                    }
                    if list.is_empty() {
                        w.net.listeners.remove(&addr);
                    }
                }
                for conn in refused {
                    if let Some(c) = w.net.conn(conn) {
                        c.server_closed = true;
                    }
                    w.send_fin(conn, false);
                }
            }
            SockKind::Tcp { conn } => {
                let mut unread = false;
                if let Some(c) = w.net.conn(conn) {
                    c.server_closed = true;
                    unread = !c.to_server.arrived.is_empty();
                    c.to_server.arrived.clear();
                }
                // Linux closes a socket with unread input by a reset, not a FIN.
                if unread {
                    w.send_reset(conn);
                } else {
                    w.send_fin(conn, false);
                }
            }
            SockKind::Udp { addr } => {
                w.net.udp.remove(&addr);
            }
        }
        if let Some(set) = w.dirty.get_mut(self.shard) {
            set.remove(&sid);
        }
        self.complete_freeing(
            at,
            token,
            CompletionKind::Close { result: Ok(()) },
            true,
            Some(sid),
        );
    }

    fn fire_timers(&mut self, w: &mut World) {
        while let Some(&Reverse((deadline, key))) = self.timers.peek() {
            if deadline > w.now_ns {
                break;
            }
            self.timers.pop();
            // A cancelled timer left its heap entry behind; skip it.
            if matches!(
                self.ops.get(&key),
                Some(Pending {
                    kind: PendingKind::Timeout,
                    ..
                })
            ) {
                let p = self.take_op(key);
                self.complete(
                    deadline,
                    p.token,
                    CompletionKind::Timeout { result: Ok(()) },
                    true,
                );
            }
        }
    }

    fn progress_dirty(&mut self, w: &mut World) {
        let Some(set) = w.dirty.get_mut(self.shard) else {
            return;
        };
        let dirty = std::mem::take(set);
        for sid in dirty {
            match self.sock_mut(sid).map(|s| s.kind) {
                Some(SockKind::Listener { addr }) => self.progress_accept(w, sid, addr),
                Some(SockKind::Tcp { conn }) => {
                    self.progress_recv(w, sid, conn);
                    self.progress_sends(w, sid, conn);
                }
                Some(SockKind::Udp { addr }) => self.progress_recv_from(w, sid, addr),
                None => {}
            }
        }
    }

    fn armed(&mut self, sid: SocketId) -> Option<(u64, Token)> {
        let key = self.sock_mut(sid)?.multishot?;
        self.ops.get(&key).map(|p| (key, p.token))
    }

    /// End the multishot operation armed on `sid` with `kind` as its last completion.
    fn end_multishot(&mut self, w: &mut World, sid: SocketId, key: u64, kind: CompletionKind) {
        let p = self.take_op(key);
        if let Some(s) = self.sock_mut(sid) {
            s.multishot = None;
        }
        let at = self.sock_time(w, sid);
        self.complete(at, p.token, kind, true);
    }

    fn progress_accept(&mut self, w: &mut World, sid: SocketId, addr: SocketAddr) {
        let owner = (self.shard, sid);
        while let Some((_, token)) = self.armed(sid) {
            let Some(conn) = w
                .net
                .listener(addr, owner)
                .and_then(|l| l.backlog.pop_front())
            else {
                return;
            };
            let result = match self.alloc_socket(SockKind::Tcp { conn }) {
                Some(new) => match w.net.conn(conn) {
                    Some(c) => {
                        c.server = Some((self.shard, new));
                        Ok((new, c.peer_addr))
                    }
                    None => unreachable!("backlog holds known connections"),
                },
                None => {
                    if let Some(c) = w.net.conn(conn) {
                        c.server_closed = true;
                    }
                    w.send_fin(conn, false);
                    Err(Errno(libc::EMFILE))
                }
            };
            let at = self.sock_time(w, sid);
            self.complete(
                at,
                token,
                CompletionKind::Accept { result, more: true },
                false,
            );
        }
    }

    fn progress_recv(&mut self, w: &mut World, sid: SocketId, conn: PeerId) {
        while let Some((key, token)) = self.armed(sid) {
            let World { rng, net, cfg, .. } = &mut *w;
            let Some(c) = net.conn(conn) else { return };
            let avail = c.to_server.arrived.len();
            if avail == 0 {
                if c.to_server.fin_arrived {
                    let kind = CompletionKind::Recv {
                        socket: sid,
                        result: Ok(RecvChunk { buf: None, len: 0 }),
                        more: false,
                    };
                    self.end_multishot(w, sid, key, kind);
                }
                return;
            }
            let most = avail.min(self.bufs.size());
            let want = if most > 1 && chance(rng, cfg.recv_split_prob) {
                rng.random_range(1..=most)
            } else {
                most
            };
            let lent = self.bufs.lend(rng, |dst| {
                for (d, s) in dst.iter_mut().zip(c.to_server.arrived.drain(..want)) {
                    *d = s;
                }
                want
            });
            match lent {
                Some((buf, len)) => {
                    self.stats.bytes_in += len as u64;
                    // Sometimes the kernel ends the multishot receive on a data completion (CQ
                    // overflow): the rest stays queued until the shard re-arms.
                    let ends = chance(&mut w.rng, w.cfg.recv_end_with_data_prob);
                    let kind = CompletionKind::Recv {
                        socket: sid,
                        result: Ok(RecvChunk {
                            buf: Some(buf),
                            len,
                        }),
                        more: !ends,
                    };
                    if ends {
                        self.end_multishot(w, sid, key, kind);
                        return;
                    }
                    let at = self.sock_time(w, sid);
                    self.complete(at, token, kind, false);
                }
                None => {
                    // The data stays queued in the socket until the shard re-arms.
                    self.stats.buffer_exhaustions += 1;
                    let kind = CompletionKind::Recv {
                        socket: sid,
                        result: Err(Errno::NOBUFS),
                        more: false,
                    };
                    self.end_multishot(w, sid, key, kind);
                    return;
                }
            }
        }
    }

    fn progress_sends(&mut self, w: &mut World, sid: SocketId, conn: PeerId) {
        loop {
            let Some((key, write_shut)) = self
                .sock_mut(sid)
                .and_then(|s| s.sends.front().map(|&k| (k, s.write_shut)))
            else {
                return;
            };
            let Some(Pending {
                kind: PendingKind::Send(buf),
                ..
            }) = self.ops.get(&key)
            else {
                unreachable!("send queue holds sends");
            };
            let remaining = buf.remaining();
            let World { rng, net, cfg, .. } = &mut *w;
            let Some(c) = net.conn(conn) else { return };
            let mut segment = None;
            let result = if write_shut || (c.peer_end == PeerEnd::Closed && c.to_server.fin_arrived)
            {
                Err(Errno::PIPE)
            } else if remaining == 0 || c.peer_end == PeerEnd::Closed {
                // A peer that closed but whose FIN is still on the way: the bytes go nowhere.
                Ok(remaining)
            } else {
                let space = c.peer_window.saturating_sub(c.to_peer_outstanding);
                if space == 0 {
                    return;
                }
                let mut n = remaining.min(space);
                if n > 1 && chance(rng, cfg.partial_send_prob) {
                    n = rng.random_range(1..n);
                }
                let mut data = Vec::with_capacity(n);
                buf.for_each_unsent(|s| {
                    let take = s.len().min(n - data.len());
                    data.extend_from_slice(&s[..take]);
                });
                c.to_peer_outstanding += n;
                segment = Some(data);
                Ok(n)
            };
            if let Some(data) = segment {
                w.send_segment(conn, false, data);
            }
            if let Ok(n) = result {
                self.stats.bytes_out += n as u64;
            }
            if let Some(s) = self.sock_mut(sid) {
                s.sends.pop_front();
            }
            let p = self.take_op(key);
            let PendingKind::Send(buf) = p.kind else {
                unreachable!("send queue holds sends");
            };
            let at = self.sock_time(w, sid);
            let kind = CompletionKind::Send {
                socket: sid,
                result,
                buf,
            };
            self.complete(at, p.token, kind, true);
        }
    }

    fn progress_recv_from(&mut self, w: &mut World, sid: SocketId, addr: SocketAddr) {
        while let Some((key, token)) = self.armed(sid) {
            let World { rng, net, .. } = &mut *w;
            let Some(end) = net.udp.get_mut(&addr) else {
                return;
            };
            let Some((data, from)) = end.rx.front() else {
                return;
            };
            let from = *from;
            // A datagram longer than a buffer is truncated, as recvmsg without MSG_TRUNC does.
            let lent = self.bufs.lend(rng, |dst| {
                let n = data.len().min(dst.len());
                dst[..n].copy_from_slice(&data[..n]);
                n
            });
            match lent {
                Some((buf, len)) => {
                    end.rx.pop_front();
                    self.stats.bytes_in += len as u64;
                    let at = self.sock_time(w, sid);
                    let kind = CompletionKind::RecvFrom {
                        socket: sid,
                        result: Ok((buf, len, from)),
                        more: true,
                    };
                    self.complete(at, token, kind, false);
                }
                None => {
                    self.stats.buffer_exhaustions += 1;
                    let kind = CompletionKind::RecvFrom {
                        socket: sid,
                        result: Err(Errno::NOBUFS),
                        more: false,
                    };
                    self.end_multishot(w, sid, key, kind);
                    return;
                }
            }
        }
    }

    fn deliver_ready(&mut self, now_ns: u64, out: &mut Vec<Completion>) {
        while let Some(Reverse(r)) = self.ready.peek() {
            if r.at_ns > now_ns {
                break;
            }
            let Some(Reverse(r)) = self.ready.pop() else {
                break;
            };
            if r.finishes_op {
                self.in_flight = match self.in_flight.checked_sub(1) {
                    Some(n) => n,
                    None => panic!(
                        "sim (seed {}): completion {:?} for an operation not in flight",
                        self.seed, r.completion
                    ),
                };
            }
            if let Some(sid) = r.frees {
                self.slots[sid.0 as usize] = Slot::Free;
                self.free_slots.push(sid.0);
            }
            self.stats.completions += 1;
            out.push(r.completion);
        }
    }

    fn start_submitted(&mut self, w: &mut World) {
        while let Some((token, op)) = self.submitted.pop_front() {
            self.start(w, token, op);
        }
    }
}

impl Driver for SimDriver {
    fn now_ns(&self) -> u64 {
        self.world.now_ns()
    }

    fn wall_ms(&self) -> u64 {
        self.world.wall_ms()
    }

    fn listen_tcp(
        &mut self,
        addr: SocketAddr,
        opts: &TcpOptions,
    ) -> Result<(SocketId, SocketAddr), DriverError> {
        let world = self.world.inner.clone();
        let mut w = world.borrow_mut();
        let mut addr = addr;
        if addr.port() == 0 {
            addr.set_port(w.ephemeral_port());
        }
        if w.net.listeners.get(&addr).is_some_and(|v| !v.is_empty()) && !opts.reuse_port {
            return Err(os_error("bind", std::io::ErrorKind::AddrInUse));
        }
        let sid = self
            .alloc_socket(SockKind::Listener { addr })
            .ok_or(DriverError::TableFull("sockets"))?;
        w.net.listeners.entry(addr).or_default().push(Listener {
            owner: (self.shard, sid),
            backlog: VecDeque::new(),
            backlog_max: opts.backlog.max(1) as usize,
        });
        Ok((sid, addr))
    }

    fn bind_udp(&mut self, addr: SocketAddr) -> Result<(SocketId, SocketAddr), DriverError> {
        let world = self.world.inner.clone();
        let mut w = world.borrow_mut();
        let mut addr = addr;
        if addr.port() == 0 {
            addr.set_port(w.ephemeral_port());
        }
        if w.net.udp.contains_key(&addr) {
            return Err(os_error("bind", std::io::ErrorKind::AddrInUse));
        }
        let sid = self
            .alloc_socket(SockKind::Udp { addr })
            .ok_or(DriverError::TableFull("sockets"))?;
        w.net.udp.insert(
            addr,
            UdpEnd {
                owner: UdpOwner::Shard((self.shard, sid)),
                rx: VecDeque::new(),
            },
        );
        Ok((sid, addr))
    }

    fn open_file(&mut self, path: &Path, opts: FileOptions) -> Result<FileId, DriverError> {
        let world = self.world.inner.clone();
        let mut w = world.borrow_mut();
        let slot = match self.files.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.files.len() < self.cfg.max_files as usize => {
                self.files.push(None);
                self.files.len() - 1
            }
            None => return Err(DriverError::TableFull("files")),
        };
        if !w.disk.open(path, opts.create, opts.truncate) {
            return Err(os_error("open", std::io::ErrorKind::NotFound));
        }
        self.files[slot] = Some(OpenFile {
            path: path.to_path_buf(),
            direct: opts.direct,
        });
        Ok(FileId(
            u32::try_from(slot).map_err(|_| DriverError::TableFull("files"))?,
        ))
    }

    fn submit(&mut self, token: Token, op: Op) -> Result<(), DriverError> {
        self.submitted.push_back((token, op));
        self.in_flight += 1;
        self.stats.submissions += 1;
        if self.submitted.len() >= self.cfg.ring_entries as usize {
            // A full submission queue goes to the kernel early, as io_uring_submit would.
            let world = self.world.inner.clone();
            let mut w = world.borrow_mut();
            self.start_submitted(&mut w);
        }
        Ok(())
    }

    fn run(&mut self, wait: Wait, out: &mut Vec<Completion>) -> Result<(), DriverError> {
        self.stats.loop_iterations += 1;
        let world = self.world.inner.clone();
        let mut w = world.borrow_mut();
        let before = out.len();
        self.start_submitted(&mut w);
        loop {
            w.process_due();
            self.fire_timers(&mut w);
            self.progress_dirty(&mut w);
            self.deliver_ready(w.now_ns, out);
            if out.len() > before {
                return Ok(());
            }
            let Wait::Until(deadline) = wait else {
                return Ok(());
            };
            if self.waker.flag.swap(false, Ordering::AcqRel) || deadline <= w.now_ns {
                return Ok(());
            }
            let next = w
                .next_event_ns()
                .into_iter()
                .chain(self.next_own_event_ns())
                .min();
            let to = next.map_or(deadline, |t| t.min(deadline));
            w.now_ns = w.now_ns.max(to);
        }
    }

    fn recv_buf(&self, buf: BufId, len: usize) -> &[u8] {
        self.bufs.bytes(buf, len)
    }

    fn release_buf(&mut self, buf: BufId) {
        self.bufs.release(buf);
    }

    fn remote_waker(&self) -> Arc<dyn RemoteWaker> {
        self.waker.clone()
    }

    fn stats(&self) -> DriverStats {
        DriverStats {
            buffers_lent: self.bufs.lent_count() as u64,
            ..self.stats
        }
    }
}
