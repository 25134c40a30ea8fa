//! One shard: a single-threaded completion loop over a [`Driver`], owning its listeners and
//! connections, its cross-shard context, and the services running on them (HTTP, echo).
//!
//! The same code runs on the io_uring driver in production and on the simulated driver in tests.
//! A turn: run cross-shard tasks, expire timers, handle completions, flush queued sends, re-arm
//! receives, then block in the driver until the next completion, wake-up or timer.
//!
//! Ownership rules that keep buffers safe: a connection slot is freed only after its close and
//! every operation it had in flight have completed, so no completion ever refers to a reused slot
//! (tokens also carry the slot generation). Each connection has at most one send in flight; what
//! it produces meanwhile queues in a second pooled `SendBuf`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;

use gateway_core::gateway::SessionEvent;
use gateway_core::ws::{HandshakeStatus, WsCloseCode};

use crate::buf::{Pool, SendBuf};
use crate::ctx::{ConnRef, ShardCtx};
use crate::driver::{
    Completion, CompletionKind, Driver, DriverError, Errno, Op, RecvChunk, SocketId, TcpOptions,
    Token, Wait,
};
use crate::gateway::SessionRef;
use crate::http::{HttpLimits, Parsed, Response};
use crate::metrics::ShardSnapshot;
use crate::store_io::{FsDir, StoreIo};

/// Longest a shard blocks in its driver with nothing to do (a safety net; wake-ups end it sooner).
pub const IDLE_WAIT_NS_MAX: u64 = 1_000_000_000;
/// Cross-shard tasks taken per source shard per turn.
pub const TASKS_PER_SOURCE_PER_TURN: usize = 64;
/// Default of `ShardConfig::send_batch`.
pub const SEND_BATCH_DEFAULT: usize = 256;
/// How often a turn reads the wall clock itself; in between it is the monotonic clock plus the
/// last offset, since a clock read costs ~80 ns in a VM and a busy shard turns ~50k times a
/// second. A wall-clock step shows up within this time.
pub const WALL_CLOCK_RESYNC_NS: u64 = 100_000_000;
/// Idle `SendBuf`s a shard keeps for reuse, and never more than its connection limit. A
/// broadcast puts one send in flight per connection; with a pool smaller than that, every event
/// past it freed and allocated a buffer per delivery.
pub const SENDBUF_POOL_MAX: usize = 65_536;
/// Bytes an echo connection may have queued before its receive is paused (backpressure).
pub const ECHO_QUEUE_BYTES_MAX: usize = 256 * 1024;
/// Bytes an HTTP connection may hold of a partial request beyond the header and body limits.
pub const HTTP_SLACK_BYTES: usize = 1024;
/// After an error response (400/408/413/431) the shard shuts down its sending half and reads and
/// discards what the client still sends for at most this long before closing: closing with
/// unread input makes the kernel send a reset, which can destroy the response in flight.
pub const HTTP_LINGER_NS_MAX: u64 = 2_000_000_000;
/// Bytes a lingering connection may discard before it is closed anyway.
pub const HTTP_LINGER_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Bytes of control replies (pongs) a gateway connection may have queued; a client pinging
/// faster than it reads is disconnected.
pub const WS_CONTROL_QUEUE_BYTES_MAX: usize = 64 * 1024;

/// What a listener's connections speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// HTTP/1.1: health, metrics, admin (and later the REST API and gateway upgrades).
    Http,
    /// Raw TCP echo, for benchmarking the loop itself.
    Echo,
    /// A connection upgraded from HTTP to the WebSocket gateway (never a listener's service).
    Gateway,
    /// The voice gateway over TLS (issue 6): bytes go to `crate::voice`.
    VoiceTls,
}

/// Per-shard settings, from the resolved config and hardware profile.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    /// Most connections open on this shard at once.
    pub max_connections: u32,
    /// HTTP request limits.
    pub http: HttpLimits,
    /// A request's headers must be complete this long after its first byte (or after accept).
    pub http_header_timeout_ns: u64,
    /// An idle keep-alive HTTP connection is closed after this long.
    pub http_idle_timeout_ns: u64,
    /// After drain starts, connections still open this long are closed.
    pub drain_timeout_ns: u64,
    /// Socket options for listeners.
    pub tcp: TcpOptions,
    /// The CPU core this shard is pinned to (reported in /admin/shards).
    pub core: Option<usize>,
    /// Largest WebSocket frame and message a gateway client may send.
    pub ws_message_bytes_max: usize,
    /// Most TCP sends submitted per loop turn (profile `send_batch`): a fan-out to thousands of
    /// sessions goes out over several turns, so completions, mailboxes and group commits are
    /// served in between instead of waiting behind one long submission.
    pub send_batch: usize,
    /// Most tasks taken from each peer's mailbox per loop turn (profile `mailbox_batch`).
    pub mailbox_batch: usize,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            max_connections: 20_000,
            http: HttpLimits::default(),
            http_header_timeout_ns: 10_000_000_000,
            http_idle_timeout_ns: 120_000_000_000,
            drain_timeout_ns: 10_000_000_000,
            tcp: TcpOptions::default(),
            core: None,
            ws_message_bytes_max: gateway_core::limits::WS_MESSAGE_BYTES_MAX,
            send_batch: SEND_BATCH_DEFAULT,
            mailbox_batch: TASKS_PER_SOURCE_PER_TURN,
        }
    }
}

// Token layout: kind (8 bits) | generation (24 bits) | index (32 bits).
const KIND_ACCEPT: u64 = 1;
const KIND_RECV: u64 = 2;
const KIND_SEND: u64 = 3;
const KIND_CLOSE: u64 = 4;
const KIND_CANCEL: u64 = 5;
const KIND_LISTENER_CLOSE: u64 = 6;
const KIND_SHUTDOWN: u64 = 7;
const GEN_MASK: u32 = 0x00ff_ffff;

fn token(kind: u64, generation: u32, index: u32) -> Token {
    (kind << 56) | (u64::from(generation & GEN_MASK) << 32) | u64::from(index)
}

fn untoken(t: Token) -> (u64, u32, u32) {
    (t >> 56, ((t >> 32) as u32) & GEN_MASK, t as u32)
}

struct Listener {
    socket: SocketId,
    service: Service,
    addr: SocketAddr,
    armed: bool,
    closed: bool,
}

#[derive(Debug)]
struct Conn {
    generation: u32,
    socket: SocketId,
    service: Service,
    /// Listener index that accepted it (for nothing but /admin detail today).
    recv_armed: bool,
    /// The multishot receive must be re-armed at the end of this turn.
    rearm: bool,
    /// Receive paused for backpressure (queued output over its bound).
    paused: bool,
    /// Operations in flight (recv, send, cancel, close).
    ops: u32,
    inbuf: Vec<u8>,
    queued: Option<SendBuf>,
    send_in_flight: bool,
    /// Close once queued output has been sent.
    close_after_flush: bool,
    /// Close submitted; the slot is freed when `ops` reaches zero.
    closing: bool,
    /// The close after the queued output is a lingering one (an HTTP error response: the client
    /// may still be sending).
    linger_on_close: bool,
    /// Sending half shut down; input is read and discarded until EOF, the deadline or
    /// `linger_left` bytes, then the connection closes.
    lingering: bool,
    /// Bytes a lingering connection may still discard.
    linger_left: usize,
    /// The driver took the Close (the slot may be freed once `ops` is zero).
    close_sent: bool,
    /// An HTTP response is being computed on other shards; later requests wait behind it.
    http_waiting: bool,
    /// The keep-alive decision for the response being computed.
    http_keep_alive: bool,
    deadline_ns: u64,
    /// The gateway session of an upgraded connection.
    session: Option<SessionRef>,
}

/// The outcome of routing one HTTP request.
pub enum Routed {
    /// Answer now.
    Now(Response),
    /// The answer will arrive through `ShardCtx::http_replies` for this connection.
    Later,
}

/// Routes HTTP requests; implemented by the API layer so the shard stays independent of it.
pub trait HttpHandler {
    /// Handle `req` that arrived on `conn` of the shard whose context is `ctx`.
    fn handle(&mut self, ctx: &mut ShardCtx, conn: ConnRef, req: &crate::http::Request) -> Routed;
}

/// A shard: its driver, listeners, connections and context.
pub struct Shard<D: Driver, H: HttpHandler> {
    /// Driver-independent state reachable from other shards.
    pub ctx: ShardCtx,
    driver: D,
    handler: H,
    cfg: ShardConfig,
    listeners: Vec<Listener>,
    conns: Vec<Option<Conn>>,
    free: Vec<u32>,
    next_generation: u32,
    completions: Vec<Completion>,
    sendbufs: Pool<SendBuf>,
    timers: BinaryHeap<Reverse<(u64, u32, u32)>>,
    /// Connections with queued output or a pending re-arm, handled at the end of the turn.
    dirty: Vec<u32>,
    drain_started_ns: Option<u64>,
    /// Monotonic time (ns) and wall time (ms) of the last wall-clock read.
    wall_sync: (u64, u64),
    /// Sends submitted by `flush_dirty` this turn (bounded by `ShardConfig::send_batch`).
    sends_this_turn: usize,
    /// Connections left dirty when this turn's send budget ran out: first in the next turn.
    dirty_carry: Vec<u32>,
    /// The driver clock as of this turn's start or its wait's end: deadlines of seconds are
    /// set from it rather than from a clock read per request.
    clock_ns: u64,
    /// Listener closes submitted and not yet completed.
    listener_closes: u32,
    /// Connections (index, generation) whose Close the driver refused (queue or table full).
    close_retry: Vec<(u32, u32)>,
    stopped: bool,
    /// Received WebSocket bytes being decoded (reused; holds nothing between receives).
    ws_scratch: Vec<u8>,
    /// Control replies produced while decoding.
    ws_ctrl: Vec<u8>,
    /// Session events produced while decoding.
    session_events: Vec<SessionEvent>,
    /// Connections named by the gateway state this turn.
    conn_scratch: Vec<ConnRef>,
    /// Runs this shard's message store on the driver, when it has one.
    store_io: Option<StoreIo<FsDir>>,
    /// Store events taken this turn.
    store_events: Vec<msgstore::Event>,
    /// Runs this shard's metadata journal on the driver, when it has a data directory.
    meta_io: Option<crate::meta::MetaIo<FsDir>>,
}

/// Top 8 bits of the tokens of message-store operations (the shard's own kinds are below).
pub const STORE_TOKEN_KIND: u8 = 0x40;

/// The live connection at `index` if its generation matches (a field-level borrow helper).
fn slot(conns: &mut [Option<Conn>], index: u32, generation: u32) -> Option<&mut Conn> {
    conns
        .get_mut(index as usize)
        .and_then(|c| c.as_mut())
        .filter(|c| c.generation == generation)
}

fn new_sendbuf() -> SendBuf {
    SendBuf::with_capacity(512)
}

impl<D: Driver, H: HttpHandler> Shard<D, H> {
    /// A shard around its driver, context and HTTP handler.
    pub fn new(driver: D, mut ctx: ShardCtx, handler: H, cfg: ShardConfig) -> Self {
        ctx.mail.register_waker(driver.remote_waker());
        ctx.core = cfg.core;
        let pool_max = cfg.max_connections as usize;
        Shard {
            ctx,
            driver,
            handler,
            cfg,
            listeners: Vec::new(),
            conns: Vec::new(),
            free: Vec::new(),
            next_generation: 1,
            completions: Vec::with_capacity(1024),
            sendbufs: Pool::new(SENDBUF_POOL_MAX.min(pool_max), new_sendbuf),
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            drain_started_ns: None,
            wall_sync: (0, 0),
            clock_ns: 0,
            sends_this_turn: 0,
            dirty_carry: Vec::new(),
            listener_closes: 0,
            close_retry: Vec::new(),
            stopped: false,
            ws_scratch: Vec::new(),
            ws_ctrl: Vec::new(),
            session_events: Vec::new(),
            conn_scratch: Vec::new(),
            store_io: None,
            store_events: Vec::new(),
            meta_io: None,
        }
    }

    /// Gives the shard its metadata journal (recovered state already installed); its first
    /// pump checkpoints, before which no change is acknowledged.
    pub fn attach_meta(&mut self, io: crate::meta::MetaIo<FsDir>) {
        crate::meta::enable(&mut self.ctx.app.meta);
        self.meta_io = Some(io);
    }

    /// Forms this turn's metadata group (or a checkpoint) and hands it to the driver.
    fn pump_meta(&mut self) {
        if let Some(io) = self.meta_io.as_mut() {
            io.pump(&mut self.ctx, &mut self.driver);
        }
    }

    /// Gives the shard its message store (opened here: recovery runs on the loop).
    pub fn attach_store(&mut self, io: StoreIo<FsDir>, mut store: msgstore::Store) {
        store.open();
        self.ctx.app.messages.store = Some(store);
        self.store_io = Some(io);
    }

    /// Hands the store's events to the message layer, then its requests to the driver.
    fn pump_store(&mut self, submit: bool) {
        let Some(store) = self.ctx.app.messages.store.as_mut() else {
            return;
        };
        store.set_now(self.ctx.wall_ms);
        let mut events = std::mem::take(&mut self.store_events);
        while let Some(ev) = store.poll_event() {
            events.push(ev);
        }
        for ev in events.drain(..) {
            crate::messages::on_store_event(&mut self.ctx, ev);
        }
        self.store_events = events;
        if submit
            && let (Some(io), Some(store)) =
                (self.store_io.as_mut(), self.ctx.app.messages.store.as_mut())
        {
            io.submit(store, &mut self.driver);
        }
    }

    /// Whether the store has work it can start without waiting for a completion.
    fn store_busy(&self) -> bool {
        match (&self.store_io, &self.ctx.app.messages.store) {
            (Some(io), Some(store)) => io.in_flight() == 0 && !store.is_idle(),
            _ => false,
        }
    }

    /// Open a listener for `service` on `addr`; returns the bound address.
    pub fn listen(
        &mut self,
        addr: SocketAddr,
        service: Service,
    ) -> Result<SocketAddr, DriverError> {
        let (socket, bound) = self.driver.listen_tcp(addr, &self.cfg.tcp)?;
        let index = self.listeners.len() as u32;
        self.listeners.push(Listener {
            socket,
            service,
            addr: bound,
            armed: false,
            closed: false,
        });
        self.arm_accept(index)?;
        Ok(bound)
    }

    /// Voice (issue 6): opens this shard's voice gateway listener (TLS) and UDP socket and
    /// installs its voice server. Returns the bound (TLS, UDP) addresses.
    pub fn start_voice(
        &mut self,
        setup: &crate::voice::VoiceSetup,
    ) -> Result<(SocketAddr, SocketAddr), DriverError> {
        let (tls_addr, udp_addr) = setup.spec.addrs(self.ctx.id);
        let tls = self.listen(tls_addr, Service::VoiceTls)?;
        let (udp, udp_bound) = self.driver.bind_udp(udp_addr)?;
        crate::voice::install(&mut self.ctx, &mut self.driver, setup, tls, udp, udp_bound);
        Ok((tls, udp_bound))
    }

    /// Voice (issue 6): moves the voice server's dirty connections to the connection layer.
    fn collect_voice_work(&mut self) {
        let mut conns = std::mem::take(&mut self.conn_scratch);
        self.ctx.voice.take_dirty(&mut conns);
        for c in conns.drain(..) {
            if slot(&mut self.conns, c.index, c.generation).is_some() {
                self.dirty.push(c.index);
            }
        }
        self.conn_scratch = conns;
    }

    /// A handle that wakes this shard's driver from another thread.
    pub fn driver_remote_waker(&self) -> std::sync::Arc<dyn crate::driver::RemoteWaker> {
        self.driver.remote_waker()
    }

    /// The driver (tests inspect it).
    pub fn driver(&self) -> &D {
        &self.driver
    }

    /// The driver, mutably (the simulation's peers are driven through it).
    pub fn driver_mut(&mut self) -> &mut D {
        &mut self.driver
    }

    /// Bound addresses of the listeners, in the order opened.
    pub fn listener_addrs(&self) -> Vec<(Service, SocketAddr)> {
        self.listeners.iter().map(|l| (l.service, l.addr)).collect()
    }

    /// Whether the shard has finished draining and closed everything.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.conns.iter().filter(|c| c.is_some()).count()
    }

    /// This shard's snapshot for /metrics and /admin/shards.
    pub fn snapshot(&mut self) -> ShardSnapshot {
        self.ctx.driver_stats = self.driver.stats();
        self.ctx.snapshot()
    }

    fn arm_accept(&mut self, index: u32) -> Result<(), DriverError> {
        let Some(l) = self.listeners.get_mut(index as usize) else {
            return Ok(());
        };
        if l.armed || l.closed {
            return Ok(());
        }
        l.armed = true;
        self.driver.submit(
            token(KIND_ACCEPT, 0, index),
            Op::AcceptMulti { listener: l.socket },
        )
    }

    /// Start draining: stop accepting, let open work finish, close the rest after the timeout.
    pub fn start_drain(&mut self) {
        if self.drain_started_ns.is_some() {
            return;
        }
        self.ctx.draining = true;
        self.drain_started_ns = Some(self.driver.now_ns());
        for (i, l) in self.listeners.iter_mut().enumerate() {
            if !l.closed {
                l.closed = true;
                if self
                    .driver
                    .submit(
                        token(KIND_LISTENER_CLOSE, 0, i as u32),
                        Op::Close { socket: l.socket },
                    )
                    .is_ok()
                {
                    self.listener_closes += 1;
                }
            }
        }
        // Gateway clients get op 7 Reconnect and are closed once it is sent; they resume on
        // another node or after the restart.
        let mut conns = std::mem::take(&mut self.conn_scratch);
        self.ctx.gw.reconnect_all(&mut conns);
        for c in conns.drain(..) {
            if let Some(conn) = slot(&mut self.conns, c.index, c.generation) {
                conn.close_after_flush = true;
                self.dirty.push(c.index);
            }
        }
        self.conn_scratch = conns;
        // Put the Reconnects on the wire first, so those connections count as busy below.
        self.collect_gateway_work();
        self.flush_dirty();
        // Close connections with nothing in progress now; busy ones close when they go idle.
        for i in 0..self.conns.len() as u32 {
            self.close_if_idle(i);
        }
    }

    fn close_if_idle(&mut self, index: u32) {
        let Some(c) = self.conns.get_mut(index as usize).and_then(|c| c.as_mut()) else {
            return;
        };
        let busy = c.send_in_flight
            || c.queued.as_ref().is_some_and(|q| !q.is_empty())
            || c.http_waiting
            || !c.inbuf.is_empty();
        if !busy {
            self.close_conn(index);
        } else {
            c.close_after_flush = true;
        }
    }

    fn alloc_conn(&mut self, socket: SocketId, service: Service) -> u32 {
        let generation = self.next_generation & GEN_MASK;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let conn = Conn {
            generation,
            socket,
            service,
            recv_armed: false,
            rearm: false,
            paused: false,
            ops: 0,
            inbuf: Vec::new(),
            queued: None,
            send_in_flight: false,
            close_after_flush: false,
            closing: false,
            linger_on_close: false,
            lingering: false,
            linger_left: 0,
            close_sent: false,
            http_waiting: false,
            http_keep_alive: true,
            deadline_ns: 0,
            session: None,
        };
        match self.free.pop() {
            Some(i) => {
                self.conns[i as usize] = Some(conn);
                i
            }
            None => {
                self.conns.push(Some(conn));
                (self.conns.len() - 1) as u32
            }
        }
    }

    fn conn_mut(&mut self, index: u32, generation: u32) -> Option<&mut Conn> {
        slot(&mut self.conns, index, generation)
    }

    fn set_deadline(&mut self, index: u32, deadline_ns: u64) {
        if let Some(c) = self.conns.get_mut(index as usize).and_then(|c| c.as_mut()) {
            c.deadline_ns = deadline_ns;
            if deadline_ns != 0 {
                self.timers
                    .push(Reverse((deadline_ns, index, c.generation)));
            }
        }
    }

    fn arm_recv(&mut self, index: u32) {
        let Some(c) = self.conns.get_mut(index as usize).and_then(|c| c.as_mut()) else {
            return;
        };
        if c.recv_armed || c.closing || c.paused {
            return;
        }
        let t = token(KIND_RECV, c.generation, index);
        let socket = c.socket;
        match self.driver.submit(t, Op::RecvMulti { socket }) {
            Ok(()) => {
                c.recv_armed = true;
                c.ops += 1;
            }
            Err(_) => self.close_conn(index),
        }
    }

    fn close_conn(&mut self, index: u32) {
        let Some(c) = self.conns.get_mut(index as usize).and_then(|c| c.as_mut()) else {
            return;
        };
        if c.closing {
            return;
        }
        c.closing = true;
        c.deadline_ns = 0;
        if let Some(r) = c.session.take() {
            self.ctx.gw.detach(r, self.ctx.now_ms);
        }
        if c.service == Service::VoiceTls {
            let conn = ConnRef {
                index,
                generation: c.generation,
            };
            self.ctx.voice.on_conn_closed(conn, self.ctx.now_ms);
        }
        let t = token(KIND_CLOSE, c.generation, index);
        let socket = c.socket;
        match self.driver.submit(t, Op::Close { socket }) {
            Ok(()) => {
                c.ops += 1;
                c.close_sent = true;
            }
            // The driver no longer knows the socket: nothing is left to close.
            Err(DriverError::Unknown(_)) => c.close_sent = true,
            // The submission queue or the in-flight table is full. The close must still happen:
            // dropped, the socket and a receive armed on it would outlive the connection, and a
            // drain would never finish. Retried each turn.
            Err(_) => self.close_retry.push((index, c.generation)),
        }
        self.maybe_free(index);
    }

    /// Submits the closes the driver refused earlier.
    fn retry_closes(&mut self) {
        let mut list = std::mem::take(&mut self.close_retry);
        for &(index, generation) in &list {
            let Some(c) = slot(&mut self.conns, index, generation) else {
                continue;
            };
            if c.close_sent {
                continue;
            }
            let t = token(KIND_CLOSE, generation, index);
            let socket = c.socket;
            match self.driver.submit(t, Op::Close { socket }) {
                Ok(()) => {
                    c.ops += 1;
                    c.close_sent = true;
                }
                Err(DriverError::Unknown(_)) => c.close_sent = true,
                Err(_) => self.close_retry.push((index, generation)),
            }
            self.maybe_free(index);
        }
        list.clear();
        if self.close_retry.is_empty() {
            self.close_retry = list;
        }
    }

    /// A lingering close: shut down the sending half (the client reads the whole response, then
    /// EOF) and read and discard its input until EOF or a bound, then close. A close with unread
    /// input would send a reset instead, which can destroy the response before it is read.
    fn start_linger(&mut self, index: u32) {
        let Some(c) = self.conns.get_mut(index as usize).and_then(|c| c.as_mut()) else {
            return;
        };
        let t = token(KIND_SHUTDOWN, c.generation, index);
        let socket = c.socket;
        if self.driver.submit(t, Op::ShutdownWrite { socket }).is_err() {
            self.close_conn(index);
            return;
        }
        c.ops += 1;
        c.lingering = true;
        c.linger_left = HTTP_LINGER_BYTES_MAX;
        c.inbuf = Vec::new();
        let d = self.clock_ns + HTTP_LINGER_NS_MAX;
        self.set_deadline(index, d);
        // The receive may have ended (with data, say): the discarding needs it armed.
        self.arm_recv(index);
    }

    fn maybe_free(&mut self, index: u32) {
        let done = self
            .conns
            .get(index as usize)
            .and_then(|c| c.as_ref())
            .is_some_and(|c| c.closing && c.close_sent && c.ops == 0);
        if done && let Some(mut c) = self.conns.get_mut(index as usize).and_then(|c| c.take()) {
            if let Some(mut q) = c.queued.take() {
                q.clear();
                self.sendbufs.give(q);
            }
            self.free.push(index);
            self.ctx.stats.connections_open = self.ctx.stats.connections_open.saturating_sub(1);
        }
    }

    fn queue_response(&mut self, index: u32, resp: &Response, keep_alive: bool, head: bool) {
        let Some(c) = self.conns.get_mut(index as usize).and_then(|c| c.as_mut()) else {
            return;
        };
        let q = c.queued.get_or_insert_with(|| self.sendbufs.take());
        q.write_with(|v| resp.write_to(keep_alive, head, v));
        if !keep_alive {
            c.close_after_flush = true;
        }
        self.dirty.push(index);
        self.ctx.stats.http_requests += 1;
        if resp.status >= 400 && resp.status < 500 {
            self.ctx.stats.http_errors += 1;
        }
    }

    /// Submit queued output, re-arm receives, and close connections that asked for it.
    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        if !self.dirty_carry.is_empty() {
            // Left over from the last turn's budget: they go first, so none waits twice. One
            // that is in both lists is looked at twice, which finds nothing the second time.
            let mut carry = std::mem::take(&mut self.dirty_carry);
            carry.append(&mut dirty);
            dirty = carry;
        }
        let budget = self.cfg.send_batch.max(1);
        let mut carry = std::mem::take(&mut self.dirty_carry);
        for (at, &index) in dirty.iter().enumerate() {
            if self.sends_this_turn >= budget {
                carry.extend_from_slice(&dirty[at..]);
                break;
            }
            let Some(c) = self.conns.get_mut(index as usize).and_then(|c| c.as_mut()) else {
                continue;
            };
            if c.closing {
                continue;
            }
            if c.service == Service::Gateway
                && !c.send_in_flight
                && let Some(r) = c.session
                && self.ctx.gw.has_output(r)
            {
                // Session frames move to the socket only when no send is in flight, so a slow
                // reader's backlog stays in the session's bounded queue (overflow closes it).
                let q = c.queued.get_or_insert_with(|| self.sendbufs.take());
                let closed = self.ctx.gw.drain_output(r, |head, tail| {
                    q.push_bytes(head);
                    q.push_shared(tail);
                });
                if closed {
                    c.close_after_flush = true;
                }
            }
            if c.service == Service::VoiceTls && !c.send_in_flight {
                // Voice (issue 6): TLS records waiting in the voice server.
                let conn = ConnRef {
                    index,
                    generation: c.generation,
                };
                let q = c.queued.get_or_insert_with(|| self.sendbufs.take());
                if self.ctx.voice.drain_tls(conn, q) {
                    c.close_after_flush = true;
                }
            }
            if !c.send_in_flight
                && c.queued.as_ref().is_some_and(|q| !q.is_empty())
                && let Some(buf) = c.queued.take()
            {
                {
                    let t = token(KIND_SEND, c.generation, index);
                    let socket = c.socket;
                    // Nothing but the buffer's return waits on this send's completion unless
                    // a close follows it; other output queued meanwhile comes from work that
                    // itself wakes the loop, and the held completion is handed over first.
                    let op = if c.close_after_flush || self.ctx.draining {
                        Op::Send { socket, buf }
                    } else {
                        Op::SendLazy { socket, buf }
                    };
                    match self.driver.submit(t, op) {
                        Ok(()) => {
                            c.send_in_flight = true;
                            c.ops += 1;
                            self.sends_this_turn += 1;
                        }
                        Err(_) => {
                            self.close_conn(index);
                            continue;
                        }
                    }
                }
            }
            let c = match self.conns.get_mut(index as usize).and_then(|c| c.as_mut()) {
                Some(c) => c,
                None => continue,
            };
            let queued = c.queued.as_ref().map_or(0, |q| q.remaining());
            // An idle connection holds no send buffer: an empty one goes back to the pool.
            if queued == 0
                && let Some(mut q) = c.queued.take()
            {
                q.clear();
                self.sendbufs.give(q);
            }
            if c.paused && queued == 0 {
                c.paused = false;
                c.rearm = true;
            }
            if c.rearm {
                c.rearm = false;
                self.arm_recv(index);
            }
            let c = match self.conns.get_mut(index as usize).and_then(|c| c.as_mut()) {
                Some(c) => c,
                None => continue,
            };
            if c.close_after_flush
                && !c.send_in_flight
                && queued == 0
                && !c.http_waiting
                && !c.lingering
            {
                if c.linger_on_close && !self.ctx.draining {
                    self.start_linger(index);
                } else {
                    self.close_conn(index);
                }
            }
        }
        dirty.clear();
        // Keep the allocation, and anything marked dirty while flushing.
        dirty.append(&mut self.dirty);
        self.dirty = dirty;
        self.dirty_carry = carry;
    }

    fn on_accept(
        &mut self,
        listener: u32,
        result: Result<(SocketId, SocketAddr), Errno>,
        more: bool,
    ) {
        let service = match self.listeners.get_mut(listener as usize) {
            Some(l) => {
                if !more {
                    l.armed = false;
                }
                l.service
            }
            None => return,
        };
        match result {
            Ok((socket, _peer)) => {
                let open = self.conns.len() - self.free.len();
                if self.ctx.draining || open as u32 >= self.cfg.max_connections {
                    self.ctx.stats.connections_refused += 1;
                    let _ = self
                        .driver
                        .submit(token(KIND_CLOSE, 0, u32::MAX), Op::Close { socket });
                } else {
                    let index = self.alloc_conn(socket, service);
                    self.ctx.stats.connections_accepted += 1;
                    self.ctx.stats.connections_open += 1;
                    if service == Service::Http {
                        let d = self.clock_ns + self.cfg.http_header_timeout_ns;
                        self.set_deadline(index, d);
                    }
                    let voice_ok = service != Service::VoiceTls || {
                        let generation = self.conns[index as usize]
                            .as_ref()
                            .map_or(0, |c| c.generation);
                        let conn = ConnRef { index, generation };
                        self.ctx.voice.on_accept(conn, self.ctx.now_ms)
                    };
                    if voice_ok {
                        self.arm_recv(index);
                    } else {
                        self.close_conn(index);
                    }
                }
            }
            // A listener closed for drain ends its accept with CANCELED: not an error.
            Err(e) if e == Errno::CANCELED => {}
            Err(_) => self.ctx.stats.socket_errors += 1,
        }
        if !more && !self.ctx.draining {
            let _ = self.arm_accept(listener);
        }
    }

    fn on_recv(
        &mut self,
        index: u32,
        generation: u32,
        result: Result<RecvChunk, Errno>,
        more: bool,
    ) {
        let Some(c) = self.conn_mut(index, generation) else {
            // A stale completion (slot reused) cannot happen because slots wait for their ops;
            // still, never leak a buffer.
            if let Ok(RecvChunk { buf: Some(b), .. }) = result {
                self.driver.release_buf(b);
            }
            return;
        };
        if !more {
            c.recv_armed = false;
            c.ops -= 1;
        }
        let service = c.service;
        let closing = c.closing;
        let lingering = c.lingering;
        // A multishot receive can end with data and no "more" flag (the kernel stops it when the
        // completion queue overflows, for one): the connection must be re-armed, or it is never
        // read again.
        if !more && !closing && matches!(result, Ok(RecvChunk { buf: Some(_), .. })) {
            c.rearm = true;
            self.dirty.push(index);
        }
        match result {
            Ok(RecvChunk { buf: Some(b), len }) if lingering => {
                // Discarded: the connection is being closed after an error response.
                self.driver.release_buf(b);
                if let Some(c) = self.conns[index as usize].as_mut() {
                    c.linger_left = c.linger_left.saturating_sub(len);
                    if c.linger_left == 0 && !closing {
                        self.close_conn(index);
                    }
                }
            }
            Ok(RecvChunk { buf: Some(b), len }) => {
                if !closing {
                    // Copy out, release at once: provided buffers go back to the ring as soon as
                    // possible so other connections can receive.
                    match service {
                        Service::Echo => {
                            let data = self.driver.recv_buf(b, len);
                            if let Some(c) = self.conns[index as usize].as_mut() {
                                let q = c.queued.get_or_insert_with(|| self.sendbufs.take());
                                q.push_bytes(data);
                                if q.remaining() > ECHO_QUEUE_BYTES_MAX && c.recv_armed && !c.paused
                                {
                                    c.paused = true;
                                    // Counted only if taken: a cancel that never completes
                                    // would keep the slot (and a drain) from ever finishing.
                                    if self
                                        .driver
                                        .submit(
                                            token(KIND_CANCEL, c.generation, index),
                                            Op::Cancel {
                                                target: token(KIND_RECV, c.generation, index),
                                            },
                                        )
                                        .is_ok()
                                    {
                                        c.ops += 1;
                                    }
                                }
                            }
                            self.dirty.push(index);
                        }
                        Service::Http => {
                            let data = self.driver.recv_buf(b, len);
                            if let Some(c) = self.conns[index as usize].as_mut()
                                && !c.close_after_flush
                            {
                                // Input after the response that ends the connection is never
                                // parsed: it is dropped rather than held without bound.
                                c.inbuf.extend_from_slice(data);
                            }
                        }
                        Service::VoiceTls => {
                            let data = self.driver.recv_buf(b, len);
                            let conn = ConnRef { index, generation };
                            self.ctx.voice.on_tls_bytes(conn, data, self.ctx.now_ms);
                            self.dirty.push(index);
                        }
                        Service::Gateway => {
                            let data = self.driver.recv_buf(b, len);
                            self.ws_scratch.clear();
                            if let Some(c) = self.conns[index as usize].as_mut() {
                                // A partial frame left by the last receive goes first; taking
                                // the Vec frees it, so idle connections hold no buffer.
                                let old = std::mem::take(&mut c.inbuf);
                                self.ws_scratch.extend_from_slice(&old);
                            }
                            self.ws_scratch.extend_from_slice(data);
                        }
                    }
                }
                self.driver.release_buf(b);
                if service == Service::Gateway && !closing {
                    self.process_ws(index);
                }
                if service == Service::Http && !closing {
                    self.process_http(index);
                }
            }
            Ok(RecvChunk { buf: None, .. }) => {
                // EOF: finish sending what is queued, then close (at once if lingering: the
                // client has stopped sending, so nothing is left to drain).
                if let Some(c) = self.conns[index as usize].as_mut() {
                    c.close_after_flush = true;
                    c.linger_on_close = false;
                    c.inbuf = Vec::new();
                }
                if lingering && !closing {
                    self.close_conn(index);
                }
                self.dirty.push(index);
            }
            Err(e) if e == Errno::NOBUFS => {
                // Data stays in the socket; re-arm once this turn has released buffers.
                self.ctx.stats.rearms += 1;
                if let Some(c) = self.conns[index as usize].as_mut() {
                    c.rearm = true;
                }
                self.dirty.push(index);
            }
            Err(e) if e == Errno::CANCELED => {
                // Paused for backpressure, or closing.
                self.dirty.push(index);
            }
            Err(_) => {
                self.ctx.stats.socket_errors += 1;
                self.close_conn(index);
            }
        }
        if !more {
            self.maybe_free(index);
        }
    }

    fn process_http(&mut self, index: u32) {
        loop {
            let Some(c) = self.conns.get_mut(index as usize).and_then(|c| c.as_mut()) else {
                return;
            };
            if c.http_waiting || c.closing || c.close_after_flush || c.inbuf.is_empty() {
                break;
            }
            let generation = c.generation;
            match crate::http::parse_request(&c.inbuf, &self.cfg.http) {
                Ok(Parsed::Partial) => {
                    // A request has started: its headers get the (shorter) header timeout, not
                    // the keep-alive idle timeout that followed the previous response.
                    let d = self.clock_ns + self.cfg.http_header_timeout_ns;
                    if c.deadline_ns == 0 || c.deadline_ns > d {
                        self.set_deadline(index, d);
                    }
                    break;
                }
                Ok(Parsed::Complete { request, consumed }) if request.upgrade_websocket => {
                    self.upgrade(index, consumed);
                    break;
                }
                Ok(Parsed::Complete { request, consumed }) => {
                    c.inbuf.drain(..consumed);
                    if c.inbuf.is_empty() {
                        // Idle connections hold no buffer.
                        c.inbuf = Vec::new();
                    }
                    let keep_alive = request.keep_alive && !self.ctx.draining;
                    let head = request.method == "HEAD";
                    let conn = ConnRef { index, generation };
                    match self.handler.handle(&mut self.ctx, conn, &request) {
                        Routed::Now(resp) => self.queue_response(index, &resp, keep_alive, head),
                        Routed::Later => {
                            if let Some(c) = self.conns[index as usize].as_mut() {
                                c.http_waiting = true;
                                c.http_keep_alive = keep_alive;
                            }
                        }
                    }
                    let d = self.clock_ns + self.cfg.http_idle_timeout_ns;
                    self.set_deadline(index, d);
                }
                Err(e) => {
                    c.inbuf = Vec::new();
                    // The client may still be sending (a body over the limit, say).
                    c.linger_on_close = true;
                    self.queue_response(index, &Response::for_error(e), false, false);
                    break;
                }
            }
        }
    }

    /// Switches HTTP connection `index` to the gateway after its upgrade request (the first
    /// `consumed` bytes of its input), or answers the handshake error and closes.
    fn upgrade(&mut self, index: u32, consumed: usize) {
        let now_ms = self.ctx.now_ms;
        let draining = self.ctx.draining;
        let payload_max = self.cfg.ws_message_bytes_max;
        let Some(c) = self.conns.get_mut(index as usize).and_then(|c| c.as_mut()) else {
            return;
        };
        let head = c.inbuf.get(..consumed).unwrap_or_default();
        let parsed = gateway_core::ws::parse_request(head);
        let q = c.queued.get_or_insert_with(|| self.sendbufs.take());
        self.dirty.push(index);
        self.ctx.stats.http_requests += 1;
        let request = match parsed {
            Ok(HandshakeStatus::Complete { request, .. }) if !draining => request,
            Ok(_) => {
                // Draining (or a head httparse accepted and the handshake parser did not).
                q.write_with(|v| Response::text(503, "draining\n").write_to(false, false, v));
                c.close_after_flush = true;
                c.inbuf = Vec::new();
                return;
            }
            Err(e) => {
                self.ctx.stats.http_errors += 1;
                q.write_with(|v| gateway_core::ws::write_error_response(e, v));
                c.close_after_flush = true;
                c.inbuf = Vec::new();
                return;
            }
        };
        q.write_with(|v| gateway_core::ws::write_response(&request, v));
        let rest = c.inbuf.split_off(consumed);
        c.inbuf = Vec::new();
        c.service = Service::Gateway;
        let conn = ConnRef {
            index,
            generation: c.generation,
        };
        let r = self.ctx.gw.open(conn, &request.query, payload_max, now_ms);
        if let Some(c) = self.conns.get_mut(index as usize).and_then(|c| c.as_mut()) {
            c.session = Some(r);
        }
        self.arm_session_timer(index, r);
        if !rest.is_empty() {
            self.ws_scratch.clear();
            self.ws_scratch.extend_from_slice(&rest);
            self.process_ws(index);
        }
    }

    /// Arms the connection's timer at the session's heartbeat deadline.
    fn arm_session_timer(&mut self, index: u32, r: SessionRef) {
        let deadline_ms = self
            .ctx
            .gw
            .get_mut(r)
            .and_then(|s| s.session.poll_timeout());
        let now_ms = self.ctx.now_ms;
        let now_ns = self.clock_ns;
        let d = match deadline_ms {
            Some(ms) => now_ns + ms.saturating_sub(now_ms) * 1_000_000,
            None => 0,
        };
        self.set_deadline(index, d);
    }

    /// Decodes the gateway connection's received bytes (in `ws_scratch`) through its session.
    fn process_ws(&mut self, index: u32) {
        let Some(c) = self.conns.get_mut(index as usize).and_then(|c| c.as_mut()) else {
            return;
        };
        let Some(r) = c.session else {
            return;
        };
        let mut scratch = std::mem::take(&mut self.ws_scratch);
        let mut events = std::mem::take(&mut self.session_events);
        self.ws_ctrl.clear();
        let outcome = self.ctx.gw.on_bytes(
            r,
            &mut scratch,
            &mut self.ws_ctrl,
            self.ctx.now_ms,
            &mut events,
        );
        if let Some(c) = self.conns.get_mut(index as usize).and_then(|c| c.as_mut()) {
            if let Some(left) = scratch.get(outcome.consumed..)
                && !left.is_empty()
                && !outcome.close
            {
                c.inbuf = left.to_vec();
            }
            if !self.ws_ctrl.is_empty() {
                let q = c.queued.get_or_insert_with(|| self.sendbufs.take());
                q.push_bytes(&self.ws_ctrl);
                if q.remaining() > WS_CONTROL_QUEUE_BYTES_MAX {
                    c.close_after_flush = true;
                }
            }
            if outcome.close {
                c.close_after_flush = true;
            }
        }
        scratch.clear();
        self.ws_scratch = scratch;
        for ev in events.drain(..) {
            crate::app::on_session_event(&mut self.ctx, r, ev);
        }
        self.session_events = events;
        self.dirty.push(index);
    }

    /// Moves what the gateway state produced (session output, connections to close) to the
    /// connection layer.
    fn collect_gateway_work(&mut self) {
        if !self.ctx.gw.has_work() {
            return;
        }
        let mut conns = std::mem::take(&mut self.conn_scratch);
        self.ctx.gw.take_dirty_conns(&mut conns);
        for c in conns.drain(..) {
            if slot(&mut self.conns, c.index, c.generation).is_some() {
                self.dirty.push(c.index);
            }
        }
        self.ctx.gw.take_kills(&mut conns);
        for c in conns.drain(..) {
            if let Some(conn) = slot(&mut self.conns, c.index, c.generation) {
                // Its session now lives on another connection (resumed): say so and close.
                conn.session = None;
                let q = conn.queued.get_or_insert_with(|| self.sendbufs.take());
                q.write_with(|v| {
                    gateway_core::ws::write_close_frame(
                        WsCloseCode(4000),
                        "session resumed elsewhere",
                        v,
                    )
                });
                conn.close_after_flush = true;
                self.dirty.push(c.index);
            }
        }
        self.ctx.gw.take_drops(&mut conns);
        for c in conns.drain(..) {
            if slot(&mut self.conns, c.index, c.generation).is_some() {
                self.close_conn(c.index);
            }
        }
        self.conn_scratch = conns;
    }

    fn deliver_http_replies(&mut self) {
        let replies = std::mem::take(&mut self.ctx.http_replies);
        for (conn, resp) in replies {
            let Some(c) = self.conn_mut(conn.index, conn.generation) else {
                continue;
            };
            if !c.http_waiting {
                continue;
            }
            c.http_waiting = false;
            let keep_alive = c.http_keep_alive && !self.ctx.draining;
            self.queue_response(conn.index, &resp, keep_alive, false);
            // Pipelined requests that waited behind this one.
            self.process_http(conn.index);
        }
    }

    fn on_send(
        &mut self,
        index: u32,
        generation: u32,
        result: Result<usize, Errno>,
        mut buf: crate::buf::SendBuf,
    ) {
        let Some(c) = slot(&mut self.conns, index, generation) else {
            buf.clear();
            self.sendbufs.give(buf);
            return;
        };
        c.ops -= 1;
        c.send_in_flight = false;
        match result {
            Ok(n) => {
                buf.advance(n);
                if !buf.is_empty() && !c.closing {
                    // Partial send: the rest goes first, ahead of anything queued since.
                    let t = token(KIND_SEND, c.generation, index);
                    let socket = c.socket;
                    match self.driver.submit(t, Op::Send { socket, buf }) {
                        Ok(()) => {
                            c.send_in_flight = true;
                            c.ops += 1;
                        }
                        Err(_) => self.close_conn(index),
                    }
                } else {
                    buf.clear();
                    self.sendbufs.give(buf);
                    self.dirty.push(index);
                }
            }
            Err(_) => {
                buf.clear();
                self.sendbufs.give(buf);
                self.ctx.stats.socket_errors += 1;
                self.close_conn(index);
            }
        }
        self.maybe_free(index);
        if self.ctx.draining {
            self.close_if_idle(index);
        }
    }

    fn on_completion(&mut self, c: Completion) {
        let (kind, generation, index) = untoken(c.token);
        match c.kind {
            CompletionKind::Accept { result, more } => self.on_accept(index, result, more),
            CompletionKind::Recv { result, more, .. } => {
                self.on_recv(index, generation, result, more)
            }
            CompletionKind::Send { result, buf, .. } => {
                self.on_send(index, generation, result, buf)
            }
            CompletionKind::Close { .. } if kind == KIND_CLOSE && index != u32::MAX => {
                if let Some(c) = self.conn_mut(index, generation) {
                    c.ops -= 1;
                }
                self.maybe_free(index);
            }
            CompletionKind::Close { .. } if kind == KIND_LISTENER_CLOSE => {
                self.listener_closes = self.listener_closes.saturating_sub(1);
            }
            CompletionKind::ShutdownWrite { result, .. } if kind == KIND_SHUTDOWN => {
                if let Some(c) = self.conn_mut(index, generation) {
                    c.ops -= 1;
                    if result.is_err() {
                        // The connection is already gone: nothing to linger for.
                        self.close_conn(index);
                    }
                }
                self.maybe_free(index);
            }
            CompletionKind::Cancel { .. } if kind == KIND_CANCEL => {
                if let Some(c) = self.conn_mut(index, generation) {
                    c.ops -= 1;
                }
                self.maybe_free(index);
            }
            // Listener closes, refused-connection closes, and operations this shard does not
            // issue (timeouts, files, UDP) carry nothing to do here.
            CompletionKind::RecvFrom {
                result: Ok((b, _, _)),
                ..
            } => self.driver.release_buf(b),
            _ => {}
        }
    }

    fn expire_timers(&mut self, now: u64) {
        while let Some(Reverse((deadline, index, generation))) = self.timers.peek().copied() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            let Some(c) = slot(&mut self.conns, index, generation) else {
                continue;
            };
            // Only the connection's current deadline counts (older heap entries are stale).
            if c.deadline_ns != deadline || c.closing {
                continue;
            }
            c.deadline_ns = 0;
            if c.lingering {
                // The lingering bound: close now, whatever the client is still sending.
                self.close_conn(index);
                continue;
            }
            if c.service == Service::Gateway {
                match c.session {
                    Some(r) => match self.ctx.gw.on_timer(r, self.ctx.now_ms) {
                        Some(_) => self.arm_session_timer(index, r),
                        // Zombie: the 4009 close frame is queued; flush it, then close.
                        None => {
                            self.ctx.stats.timeouts += 1;
                            if let Some(c) = slot(&mut self.conns, index, generation) {
                                c.close_after_flush = true;
                            }
                            self.dirty.push(index);
                        }
                    },
                    None => self.close_conn(index),
                }
                continue;
            }
            if c.http_waiting || c.send_in_flight {
                // Busy, not idle: look again after another idle period.
                let d = now + self.cfg.http_idle_timeout_ns;
                self.set_deadline(index, d);
                continue;
            }
            self.ctx.stats.timeouts += 1;
            if !c.inbuf.is_empty() {
                // Headers not complete in time.
                c.inbuf = Vec::new();
                c.linger_on_close = true;
                self.queue_response(
                    index,
                    &Response::text(408, "request timeout\n"),
                    false,
                    false,
                );
            } else {
                self.close_conn(index);
            }
        }
    }

    /// The earliest time this shard must run again for its own timers (HTTP deadlines, drain).
    pub fn next_timer_ns(&mut self) -> Option<u64> {
        let drain = self.drain_started_ns.map(|s| s + self.cfg.drain_timeout_ns);
        self.next_deadline().into_iter().chain(drain).min()
    }

    fn next_deadline(&mut self) -> Option<u64> {
        // Drop stale heap entries so the loop does not wake for nothing.
        while let Some(Reverse((deadline, index, generation))) = self.timers.peek().copied() {
            let live = self
                .conns
                .get(index as usize)
                .and_then(|c| c.as_ref())
                .is_some_and(|c| {
                    c.generation == generation && c.deadline_ns == deadline && !c.closing
                });
            if live {
                return Some(deadline);
            }
            self.timers.pop();
        }
        None
    }

    /// Wall-clock milliseconds at monotonic `now_ns`, read from the driver at most every
    /// `WALL_CLOCK_RESYNC_NS` (the first turn always reads it).
    fn wall_ms_at(&mut self, now_ns: u64) -> u64 {
        let (base_ns, base_ms) = self.wall_sync;
        if base_ms == 0 || now_ns.saturating_sub(base_ns) >= WALL_CLOCK_RESYNC_NS {
            let wall = self.driver.wall_ms();
            self.wall_sync = (now_ns, wall);
            return wall;
        }
        base_ms + (now_ns - base_ns) / 1_000_000
    }

    /// One turn of the loop, blocking at most until `wait_until_ns` (driver clock) when idle.
    pub fn turn(&mut self, wait_until_ns: Option<u64>) -> Result<(), DriverError> {
        let now = self.driver.now_ns();
        self.clock_ns = now;
        self.ctx.now_ms = now / 1_000_000;
        self.ctx.wall_ms = self.wall_ms_at(now);
        self.sends_this_turn = 0;
        self.ctx.run_incoming(self.cfg.mailbox_batch.max(1));
        self.ctx.gw.reap(self.ctx.now_ms);
        crate::presence::after_gateway_turn(&mut self.ctx);
        crate::voice::after_gateway_turn(&mut self.ctx);
        self.deliver_http_replies();
        if self.ctx.draining && self.drain_started_ns.is_none() {
            self.start_drain();
        }
        self.expire_timers(now);
        // Voice (issue 6): session clocks, UDP re-arm, connections with output.
        self.ctx.voice.pump(&mut self.driver, self.ctx.now_ms);
        crate::voice::health_tick(&mut self.ctx);
        self.collect_voice_work();
        self.collect_gateway_work();
        if let Some(start) = self.drain_started_ns
            && now >= start + self.cfg.drain_timeout_ns
        {
            for i in 0..self.conns.len() as u32 {
                self.close_conn(i);
            }
        }
        self.retry_closes();
        self.flush_dirty();
        // Every append of this turn goes out as one group commit.
        self.pump_store(true);
        // So do this turn's metadata changes (one write + one fdatasync).
        self.pump_meta();
        self.collect_gateway_work();
        self.flush_dirty();
        self.ctx.flush_backlog();
        self.ctx.mail.flush_wakeups();

        let busy = !self.dirty.is_empty()
            || !self.dirty_carry.is_empty()
            || !self.close_retry.is_empty()
            || self.store_busy()
            || self
                .meta_io
                .as_ref()
                .is_some_and(|m| m.busy(&self.ctx.app.meta, now))
            || self.ctx.gw.has_work()
            || self.ctx.voice.has_work()
            || !self.ctx.http_replies.is_empty()
            || self.ctx.mail.depth() > 0
            || self.ctx.backlog_len() > 0;
        let wait = if busy {
            Wait::Poll
        } else {
            let mut until = now + IDLE_WAIT_NS_MAX;
            if let Some(d) = self.next_deadline() {
                until = until.min(d);
            }
            if let Some(w) = wait_until_ns {
                until = until.min(w);
            }
            if let Some(start) = self.drain_started_ns {
                until = until.min(start + self.cfg.drain_timeout_ns);
            }
            Wait::Until(until)
        };
        let sleeping = matches!(wait, Wait::Until(_)) && self.ctx.mail.prepare_sleep();
        let wait = if matches!(wait, Wait::Until(_)) && !sleeping {
            Wait::Poll
        } else {
            wait
        };
        let mut completions = std::mem::take(&mut self.completions);
        let r = self.driver.run(wait, &mut completions);
        if sleeping {
            self.ctx.mail.woke();
        }
        r?;
        self.ctx.driver_stats = self.driver.stats();
        self.clock_ns = self.driver.now_ns();
        self.ctx.now_ms = self.clock_ns / 1_000_000;
        for c in completions.drain(..) {
            if crate::voice::owns_token(c.token) {
                self.ctx
                    .voice
                    .on_completion(&mut self.driver, self.ctx.now_ms, c);
                continue;
            }
            if let Some(io) = self.meta_io.as_mut()
                && io.owns(c.token)
            {
                io.on_completion(&mut self.ctx, &mut self.driver, c);
                continue;
            }
            if let Some(io) = self.store_io.as_mut()
                && io.owns(c.token)
            {
                if let Some(store) = self.ctx.app.messages.store.as_mut() {
                    io.on_completion(store, c);
                }
                continue;
            }
            self.on_completion(c);
        }
        self.completions = completions;
        self.pump_store(false);
        self.collect_voice_work();
        self.collect_gateway_work();
        self.flush_dirty();
        if self.drain_started_ns.is_some()
            && self.conns.iter().all(|c| c.is_none())
            && self.listener_closes == 0
            && self.ctx.backlog_len() == 0
            && self
                .meta_io
                .as_ref()
                .is_none_or(|m| m.can_stop(&self.ctx.app.meta))
        {
            self.stopped = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for (k, g, i) in [
            (KIND_RECV, 5, 7),
            (KIND_SEND, GEN_MASK, u32::MAX),
            (KIND_ACCEPT, 0, 0),
        ] {
            assert_eq!(untoken(token(k, g, i)), (k, g, i));
        }
        assert_eq!(
            untoken(token(KIND_CLOSE, GEN_MASK + 3, 1)).1,
            2,
            "generation wraps in 24 bits"
        );
    }
}
