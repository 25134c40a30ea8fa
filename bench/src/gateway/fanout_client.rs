//! gw-fanout's member sessions: client threads in the harness process (pinned with it to the
//! client core), each one epoll loop over thousands of WebSocket sessions, commanded over a
//! channel. Sessions are added in steps (1k, then 4k more, ...) so one server and one guild
//! grow through every member count.
//!
//! Per session: non-blocking connect from the thread's loopback source address, HTTP upgrade
//! checked against our key (the gateway's [`crate::gateway::proto`] codec and
//! [`crate::gateway::net`] sockets), then for Hearth Hello → Identify (GUILDS | GUILD_MESSAGES |
//! MESSAGE_CONTENT) → READY → GUILD_CREATE; the session counts as subscribed only once
//! GUILD_CREATE arrived. Nchan's upgrade alone subscribes. Heartbeats follow Hello's interval.
//! Every MESSAGE_CREATE is timestamped (CLOCK_MONOTONIC, once per `read`) and checked: each
//! session must see every message once, in order.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::{self, JoinHandle};

use gateway_core::ws::frame::OpCode;
use hdrhistogram::Histogram;

use crate::BenchError;
use crate::gateway::fanout::proto::{FanoutEvent, Receipts, identify_payload, parse_event};
use crate::gateway::limits::{
    CLIENT_EPOLL_EVENTS, CLIENT_MESSAGE_BYTES_MAX, CLIENT_READ_BYTES, CLIENT_TICK_MS,
    HANDSHAKE_TIMEOUT_S, HEARTBEAT_INTERVAL_MS_DEFAULT,
};
use crate::gateway::net::{
    Connecting, Epoll, Interest, connect_nonblocking, mono_ns, read_fd, take_socket_error, write_fd,
};
use crate::gateway::proto::{
    self, GwMessage, classify, close_code, heartbeat_payload, next_frame, parse_upgrade_response,
    upgrade_request, ws_key,
};
use crate::gateway::target::GwTarget;
use crate::gateway::wire::{FailCounts, new_histogram};

/// How long the loop sleeps in epoll at most before it looks at its command channel, ms: a
/// phase's `Expect` is applied well within the harness's settle pause.
const COMMAND_POLL_MS: u64 = 5;
/// Most messages one phase may expect: bounds the per-message receipts array (a 20 s phase at
/// 1000 messages/s is 20000).
pub const PHASE_MESSAGES_MAX: u64 = 1 << 20;

/// Where and how a client thread connects.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// Server protocol.
    pub target: GwTarget,
    /// Server address.
    pub addr: SocketAddr,
    /// Upgrade path and query.
    pub path: String,
    /// Loopback source address of this thread's sessions.
    pub source_ip: Ipv4Addr,
    /// Handshakes in flight at once in this thread.
    pub inflight: u32,
    /// Seeds WebSocket keys, masks and heartbeat jitter.
    pub seed: u64,
    /// After handling events, poll without sleeping for this long (ns) before blocking in
    /// epoll again: a sleeping reader costs the sending core a cross-core wake-up per delivery.
    pub spin_ns: u64,
}

/// A command from the harness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCmd {
    /// Open `count` more sessions (Hearth: one per token, `tokens.len()` must equal `count`);
    /// once subscribed, each expects messages from `base_k` on.
    Add {
        /// Hearth tokens, one per new session.
        tokens: Vec<String>,
        /// New sessions.
        count: u32,
        /// First message index the new sessions will be sent.
        base_k: u64,
    },
    /// A phase: messages `first_k..end_k` are about to be sent; latency is recorded if
    /// `record`. Resets the phase counters; `Done` follows once every live session saw
    /// `end_k - 1`.
    Expect {
        /// First message of the phase.
        first_k: u64,
        /// One past its last message.
        end_k: u64,
        /// Whether per-delivery latency goes into the phase histogram.
        record: bool,
    },
    /// The phase ended early: only messages before `end_k` were sent. `Done` follows (again)
    /// once every live session saw `end_k - 1`.
    SetEnd {
        /// One past the last message sent.
        end_k: u64,
    },
    /// Send a `Report` of the current phase.
    Report,
    /// Close every session and end the thread.
    Quit,
}

/// What one thread measured in the current phase (counters since the last `Expect`), plus its
/// connection totals.
#[derive(Debug, Clone)]
pub struct PhaseReport {
    /// Sessions subscribed and open.
    pub live: u64,
    /// Sessions that ever subscribed.
    pub ready_total: u64,
    /// Handshake failures by kind, since the thread started.
    pub failed: FailCounts,
    /// Subscribed sessions the server closed, by close code, since the thread started.
    pub closed_after_ready: BTreeMap<String, u64>,
    /// Messages the thread did not expect, by kind, since the thread started.
    pub unexpected: BTreeMap<String, u64>,
    /// Bench deliveries of this phase's messages, each (session, message) once.
    pub received: u64,
    /// Copies of a message a session had already seen (or an older one after a newer).
    pub duplicates: u64,
    /// Messages a session skipped (a later one came first).
    pub gaps: u64,
    /// Messages older than the session's first expected one (sent before it subscribed).
    pub stale: u64,
    /// Bench messages outside the phase's range.
    pub out_of_phase: u64,
    /// Hearth dispatches whose sequence number did not follow the previous one.
    pub seq_errors: u64,
    /// Send → receipt of every delivery (when recorded), ns.
    pub delivery: Histogram<u64>,
    /// Per message of the phase (index `k - first_k`).
    pub receipts: Vec<Receipts>,
    /// Smallest bench frame payload, bytes.
    pub bytes_min: u64,
    /// Largest bench frame payload, bytes.
    pub bytes_max: u64,
    /// Time spent handling socket events since the thread started (spinning excluded), ns.
    pub busy_ns: u64,
}

/// What a client thread tells the harness.
#[derive(Debug)]
pub enum ClientEvent {
    /// Every session added so far is subscribed or failed.
    Connected {
        /// Thread index.
        thread: usize,
        /// Sessions asked for so far.
        wanted: u64,
        /// Sessions subscribed and open.
        live: u64,
        /// Handshake failures so far.
        failed: u64,
    },
    /// Every live session saw the phase's last message.
    Done {
        /// Thread index.
        thread: usize,
        /// The phase's `end_k`, so a late answer is never taken for a later phase's.
        end_k: u64,
    },
    /// The answer to `Report`.
    Report {
        /// Thread index.
        thread: usize,
        /// The numbers.
        report: Box<PhaseReport>,
    },
    /// The thread hit an error and stopped.
    Failed {
        /// Thread index.
        thread: usize,
        /// What went wrong.
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Upgrading,
    AwaitHello,
    AwaitReady,
    AwaitGuild,
    Ready,
    Dead,
}

impl Phase {
    fn in_handshake(self) -> bool {
        matches!(
            self,
            Phase::Connecting
                | Phase::Upgrading
                | Phase::AwaitHello
                | Phase::AwaitReady
                | Phase::AwaitGuild
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Connect(String),
    Eof,
    Closed(u16),
    Upgrade(String),
    Protocol(String),
    Io(String),
    InvalidSession,
    Timeout,
    Quit,
}

impl End {
    fn describe(&self) -> String {
        match self {
            End::Connect(e) => format!("connect: {e}"),
            End::Eof => "connection closed by the server".into(),
            End::Closed(c) => format!("close frame {c}"),
            End::Upgrade(e) => format!("upgrade: {e}"),
            End::Protocol(e) => format!("protocol: {e}"),
            End::Io(e) => format!("socket: {e}"),
            End::InvalidSession => "op 9 Invalid Session".into(),
            End::Timeout => format!("not subscribed within {HANDSHAKE_TIMEOUT_S} s"),
            End::Quit => "quit".into(),
        }
    }

    fn after_ready_key(&self) -> String {
        match self {
            End::Closed(c) => c.to_string(),
            End::Eof => "eof".into(),
            End::Io(_) => "io".into(),
            End::Protocol(_) => "protocol".into(),
            End::Connect(_) | End::Upgrade(_) | End::InvalidSession | End::Timeout | End::Quit => {
                "other".into()
            }
        }
    }
}

#[derive(Debug)]
struct Session {
    fd: Option<OwnedFd>,
    phase: Phase,
    key: String,
    t_connect_ns: u64,
    pending: Vec<u8>,
    msg: Vec<u8>,
    msg_active: bool,
    out: Vec<u8>,
    want_write: bool,
    seq: Option<u64>,
    hb_interval_ns: u64,
    next_hb_ns: u64,
    next_k: u64,
    got_any: bool,
}

impl Session {
    fn new(t_connect_ns: u64) -> Self {
        Session {
            fd: None,
            phase: Phase::Connecting,
            key: String::new(),
            t_connect_ns,
            pending: Vec::new(),
            msg: Vec::new(),
            msg_active: false,
            out: Vec::new(),
            want_write: false,
            seq: None,
            hb_interval_ns: 0,
            next_hb_ns: 0,
            next_k: 0,
            got_any: false,
        }
    }
}

/// splitmix64 for keys, masks and jitter (not cryptographic; a load generator needs no more).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn mask(&mut self) -> [u8; 4] {
        (self.next() as u32).to_ne_bytes()
    }

    fn nonce(&mut self) -> [u8; 16] {
        let mut n = [0u8; 16];
        let (a, b) = (self.next().to_ne_bytes(), self.next().to_ne_bytes());
        for (d, s) in n.iter_mut().zip(a.iter().chain(b.iter())) {
            *d = *s;
        }
        n
    }

    fn fraction(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Clone, Copy)]
struct Expect {
    first_k: u64,
    end_k: u64,
    record: bool,
}

struct Client {
    id: usize,
    spec: ClientSpec,
    host: String,
    epoll: Epoll,
    sessions: Vec<Session>,
    tokens: Vec<String>,
    wanted: u64,
    base_k: u64,
    inflight: u32,
    live: u64,
    ready_total: u64,
    failed: FailCounts,
    closed_after_ready: BTreeMap<String, u64>,
    unexpected: BTreeMap<String, u64>,
    rbuf: Vec<u8>,
    tx: Vec<u8>,
    rng: Rng,
    expect: Option<Expect>,
    complete: u64,
    done_sent: bool,
    connected_sent: bool,
    report: PhaseReport,
    cmds: Receiver<ClientCmd>,
    events: Sender<ClientEvent>,
    quit: bool,
    next_tick_ns: u64,
    last_event_ns: u64,
    busy_ns: u64,
}

/// A running client thread; dropping it closes its sessions and joins it.
pub struct ClientHandle {
    cmds: Sender<ClientCmd>,
    join: Option<JoinHandle<()>>,
}

impl ClientHandle {
    /// Sends a command (an error if the thread has stopped).
    pub fn send(&self, cmd: ClientCmd) -> Result<(), BenchError> {
        self.cmds
            .send(cmd)
            .map_err(|_| BenchError::Client("client thread stopped".into()))
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        let _ = self.cmds.send(ClientCmd::Quit);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

fn empty_report() -> Result<PhaseReport, BenchError> {
    Ok(PhaseReport {
        live: 0,
        ready_total: 0,
        failed: FailCounts::default(),
        closed_after_ready: BTreeMap::new(),
        unexpected: BTreeMap::new(),
        received: 0,
        duplicates: 0,
        gaps: 0,
        stale: 0,
        out_of_phase: 0,
        seq_errors: 0,
        delivery: new_histogram()?,
        receipts: Vec::new(),
        bytes_min: 0,
        bytes_max: 0,
        busy_ns: 0,
    })
}

/// Starts client thread `id` (it inherits the caller's core and nice value); it reports to
/// `events`.
pub fn spawn(
    id: usize,
    spec: ClientSpec,
    events: Sender<ClientEvent>,
) -> Result<ClientHandle, BenchError> {
    if spec.inflight == 0 {
        return Err(BenchError::Invalid("inflight must be at least 1".into()));
    }
    let (tx, rx) = mpsc::channel();
    let epoll = Epoll::new().map_err(|e| BenchError::io("epoll_create1", e))?;
    let client = Client {
        id,
        host: spec.addr.to_string(),
        rng: Rng(spec.seed),
        spec,
        epoll,
        sessions: Vec::new(),
        tokens: Vec::new(),
        wanted: 0,
        base_k: 0,
        inflight: 0,
        live: 0,
        ready_total: 0,
        failed: FailCounts::default(),
        closed_after_ready: BTreeMap::new(),
        unexpected: BTreeMap::new(),
        rbuf: vec![0; CLIENT_READ_BYTES],
        tx: Vec::new(),
        expect: None,
        complete: 0,
        done_sent: false,
        connected_sent: true,
        report: empty_report()?,
        cmds: rx,
        events: events.clone(),
        quit: false,
        next_tick_ns: 0,
        last_event_ns: 0,
        busy_ns: 0,
    };
    let join = thread::Builder::new()
        .name(format!("fanout-client-{id}"))
        .spawn(move || {
            if let Err(e) = client.run() {
                let _ = events.send(ClientEvent::Failed {
                    thread: id,
                    message: e.to_string(),
                });
            }
        })
        .map_err(|e| BenchError::io("spawn client thread", e))?;
    Ok(ClientHandle {
        cmds: tx,
        join: Some(join),
    })
}

impl Client {
    fn run(mut self) -> Result<(), BenchError> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; CLIENT_EPOLL_EVENTS];
        loop {
            self.read_commands()?;
            self.start_sessions();
            let now = mono_ns();
            if now >= self.next_tick_ns {
                self.tick(now);
                self.next_tick_ns = now + CLIENT_TICK_MS * 1_000_000;
            }
            self.emit_progress();
            if self.quit {
                break;
            }
            let busy =
                (self.sessions.len() as u64) < self.wanted && self.inflight < self.spec.inflight;
            let spinning = now < self.last_event_ns.saturating_add(self.spec.spin_ns);
            let timeout_ms = if busy || spinning { 0 } else { COMMAND_POLL_MS };
            let n = self
                .epoll
                .wait(&mut events, timeout_ms)
                .map_err(|e| BenchError::io("epoll_wait", e))?;
            if n > 0 {
                let t0 = mono_ns();
                for ev in events.iter().take(n) {
                    let (token, flags) = (ev.u64, ev.events);
                    self.on_event(token as usize, flags);
                }
                let t1 = mono_ns();
                self.busy_ns += t1.saturating_sub(t0);
                self.last_event_ns = t1;
            }
        }
        for idx in 0..self.sessions.len() {
            self.kill(idx, End::Quit);
        }
        Ok(())
    }

    fn emit(&self, ev: ClientEvent) {
        // The harness gone means the run is over; nothing to tell.
        let _ = self.events.send(ev);
    }

    fn read_commands(&mut self) -> Result<(), BenchError> {
        loop {
            match self.cmds.try_recv() {
                Ok(cmd) => self.command(cmd)?,
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => {
                    self.quit = true;
                    return Ok(());
                }
            }
        }
    }

    fn command(&mut self, cmd: ClientCmd) -> Result<(), BenchError> {
        match cmd {
            ClientCmd::Add {
                tokens,
                count,
                base_k,
            } => {
                if self.spec.target == GwTarget::Hearth && tokens.len() != count as usize {
                    return Err(BenchError::Invalid(format!(
                        "{count} sessions need as many tokens, got {}",
                        tokens.len()
                    )));
                }
                self.tokens.extend(tokens);
                self.wanted += u64::from(count);
                self.base_k = base_k;
                self.connected_sent = false;
            }
            ClientCmd::Expect {
                first_k,
                end_k,
                record,
            } => {
                let n = end_k.saturating_sub(first_k);
                if n == 0 || n > PHASE_MESSAGES_MAX {
                    return Err(BenchError::Invalid(format!(
                        "a phase expects 1..={PHASE_MESSAGES_MAX} messages, not {n}"
                    )));
                }
                self.expect = Some(Expect {
                    first_k,
                    end_k,
                    record,
                });
                let mut r = empty_report()?;
                r.receipts = vec![Receipts::default(); n as usize];
                self.report = r;
                self.done_sent = false;
                self.complete = self
                    .sessions
                    .iter()
                    .filter(|s| s.phase == Phase::Ready && s.next_k >= end_k)
                    .count() as u64;
            }
            ClientCmd::SetEnd { end_k } => {
                if let Some(e) = self.expect.as_mut() {
                    e.end_k = end_k.clamp(e.first_k, e.end_k);
                    let end = e.end_k;
                    self.done_sent = false;
                    self.complete = self
                        .sessions
                        .iter()
                        .filter(|s| s.phase == Phase::Ready && s.next_k >= end)
                        .count() as u64;
                }
            }
            ClientCmd::Report => {
                let mut r = self.report.clone();
                r.live = self.live;
                r.ready_total = self.ready_total;
                r.failed = self.failed.clone();
                r.closed_after_ready = self.closed_after_ready.clone();
                r.unexpected = self.unexpected.clone();
                r.busy_ns = self.busy_ns;
                self.emit(ClientEvent::Report {
                    thread: self.id,
                    report: Box::new(r),
                });
            }
            ClientCmd::Quit => self.quit = true,
        }
        Ok(())
    }

    fn emit_progress(&mut self) {
        if !self.connected_sent && self.sessions.len() as u64 == self.wanted && self.inflight == 0 {
            self.connected_sent = true;
            self.emit(ClientEvent::Connected {
                thread: self.id,
                wanted: self.wanted,
                live: self.live,
                failed: self.failed.total(),
            });
        }
        if let Some(e) = self.expect
            && !self.done_sent
            && self.complete >= self.live
        {
            self.done_sent = true;
            self.emit(ClientEvent::Done {
                thread: self.id,
                end_k: e.end_k,
            });
        }
    }

    fn start_sessions(&mut self) {
        while (self.sessions.len() as u64) < self.wanted && self.inflight < self.spec.inflight {
            let idx = self.sessions.len();
            self.sessions.push(Session::new(mono_ns()));
            self.inflight += 1;
            match connect_nonblocking(self.spec.source_ip, self.spec.addr) {
                Ok(Connecting::Done(fd)) => {
                    let raw = fd.as_raw_fd();
                    if let Some(s) = self.sessions.get_mut(idx) {
                        s.fd = Some(fd);
                    }
                    if let Err(e) = self.epoll.add(raw, Interest::Read, idx as u64) {
                        self.kill(idx, End::Connect(e.to_string()));
                        continue;
                    }
                    self.send_upgrade(idx);
                }
                Ok(Connecting::InProgress(fd)) => {
                    let raw = fd.as_raw_fd();
                    if let Some(s) = self.sessions.get_mut(idx) {
                        s.fd = Some(fd);
                        s.want_write = true;
                    }
                    if let Err(e) = self.epoll.add(raw, Interest::ReadWrite, idx as u64) {
                        self.kill(idx, End::Connect(e.to_string()));
                    }
                }
                Err(e) => self.kill(idx, End::Connect(e.to_string())),
            }
        }
    }

    fn phase(&self, idx: usize) -> Phase {
        self.sessions.get(idx).map_or(Phase::Dead, |s| s.phase)
    }

    fn on_event(&mut self, idx: usize, flags: u32) {
        let Some(s) = self.sessions.get(idx) else {
            return;
        };
        let Some(fd) = s.fd.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        let out = flags & libc::EPOLLOUT as u32 != 0;
        let inn = flags & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
        if s.phase == Phase::Connecting {
            if out || inn {
                match take_socket_error(fd) {
                    Ok(()) => self.send_upgrade(idx),
                    Err(e) => self.kill(idx, End::Connect(e.to_string())),
                }
            }
            return;
        }
        if out {
            self.flush(idx);
        }
        if inn {
            self.on_readable(idx);
        }
    }

    fn set_interest(&mut self, idx: usize, write: bool) {
        let Some(s) = self.sessions.get_mut(idx) else {
            return;
        };
        if s.want_write == write {
            return;
        }
        s.want_write = write;
        let Some(fd) = s.fd.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        let interest = if write {
            Interest::ReadWrite
        } else {
            Interest::Read
        };
        if let Err(e) = self.epoll.modify(fd, interest, idx as u64) {
            self.kill(idx, End::Io(e.to_string()));
        }
    }

    fn send_tx(&mut self, idx: usize) {
        let tx = std::mem::take(&mut self.tx);
        self.send(idx, &tx);
        self.tx = tx;
        self.tx.clear();
    }

    fn send(&mut self, idx: usize, bytes: &[u8]) {
        let Some(s) = self.sessions.get_mut(idx) else {
            return;
        };
        let Some(fd) = s.fd.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        if !s.out.is_empty() {
            s.out.extend_from_slice(bytes);
            return;
        }
        match write_fd(fd, bytes) {
            Ok(n) if n == bytes.len() => {}
            Ok(n) => {
                s.out.extend_from_slice(bytes.get(n..).unwrap_or(&[]));
                self.set_interest(idx, true);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                s.out.extend_from_slice(bytes);
                self.set_interest(idx, true);
            }
            Err(e) => self.kill(idx, End::Io(e.to_string())),
        }
    }

    fn flush(&mut self, idx: usize) {
        let Some(s) = self.sessions.get_mut(idx) else {
            return;
        };
        let Some(fd) = s.fd.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        while !s.out.is_empty() {
            match write_fd(fd, &s.out) {
                Ok(n) => {
                    s.out.drain(..n.min(s.out.len()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.kill(idx, End::Io(e.to_string()));
                    return;
                }
            }
        }
        s.out = Vec::new();
        self.set_interest(idx, false);
    }

    fn send_upgrade(&mut self, idx: usize) {
        let key = ws_key(self.rng.nonce());
        let req = upgrade_request(&self.host, &self.spec.path, &key);
        if let Some(s) = self.sessions.get_mut(idx) {
            s.phase = Phase::Upgrading;
            s.key = key;
        }
        self.set_interest(idx, false);
        self.send(idx, &req);
    }

    fn on_readable(&mut self, idx: usize) {
        loop {
            let Some(fd) = self
                .sessions
                .get(idx)
                .and_then(|s| s.fd.as_ref())
                .map(AsRawFd::as_raw_fd)
            else {
                return;
            };
            let mut buf = std::mem::take(&mut self.rbuf);
            let r = read_fd(fd, &mut buf);
            let full = match r {
                Ok(0) => {
                    self.rbuf = buf;
                    self.kill(idx, End::Eof);
                    return;
                }
                Ok(n) => {
                    let now = mono_ns();
                    let res = self.feed(idx, &mut buf, n, now);
                    self.rbuf = buf;
                    if let Err(end) = res {
                        self.kill(idx, end);
                        return;
                    }
                    n == self.rbuf.len()
                }
                Err(e) => {
                    self.rbuf = buf;
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return,
                        io::ErrorKind::Interrupted => true,
                        _ => {
                            self.kill(idx, End::Io(e.to_string()));
                            return;
                        }
                    }
                }
            };
            // A short read emptied the socket; level-triggered epoll reports later data.
            if !full {
                return;
            }
        }
    }

    fn feed(&mut self, idx: usize, buf: &mut [u8], n: usize, now: u64) -> Result<(), End> {
        let Some(s) = self.sessions.get_mut(idx) else {
            return Ok(());
        };
        let mut pending = std::mem::take(&mut s.pending);
        let data = buf.get_mut(..n).unwrap_or_default();
        if pending.is_empty() {
            let used = self.consume(idx, data, now)?;
            pending.extend_from_slice(data.get(used..).unwrap_or(&[]));
        } else {
            pending.extend_from_slice(data);
            let used = self.consume(idx, &mut pending, now)?;
            pending.drain(..used.min(pending.len()));
        }
        if let Some(s) = self.sessions.get_mut(idx)
            && s.phase != Phase::Dead
        {
            s.pending = if pending.is_empty() {
                Vec::new()
            } else {
                pending
            };
        }
        Ok(())
    }

    fn consume(&mut self, idx: usize, data: &mut [u8], now: u64) -> Result<usize, End> {
        let mut off = 0;
        if self.phase(idx) == Phase::Upgrading {
            let key = self
                .sessions
                .get(idx)
                .map(|s| s.key.clone())
                .unwrap_or_default();
            match parse_upgrade_response(data, &key) {
                Ok(None) => return Ok(0),
                Ok(Some(n)) => {
                    off = n;
                    if let Some(s) = self.sessions.get_mut(idx) {
                        s.key = String::new();
                        s.phase = Phase::AwaitHello;
                    }
                    if self.spec.target == GwTarget::Nchan {
                        self.on_subscribed(idx);
                    }
                }
                Err(e) => return Err(End::Upgrade(e.to_string())),
            }
        }
        while self.phase(idx) != Phase::Dead {
            let Some(rest) = data.get_mut(off..) else {
                break;
            };
            if rest.is_empty() {
                break;
            }
            let Some(f) = next_frame(rest).map_err(|e| End::Protocol(e.to_string()))? else {
                break;
            };
            let payload = rest.get(f.start..f.end).unwrap_or(&[]);
            self.on_frame(idx, f.opcode, f.fin, payload, now)?;
            off += f.consumed;
        }
        Ok(off)
    }

    fn on_frame(
        &mut self,
        idx: usize,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
        now: u64,
    ) -> Result<(), End> {
        match opcode {
            OpCode::Text | OpCode::Binary => {
                let Some(s) = self.sessions.get_mut(idx) else {
                    return Ok(());
                };
                if s.msg_active {
                    return Err(End::Protocol(
                        "data frame inside a fragmented message".into(),
                    ));
                }
                if fin {
                    self.on_message(idx, payload, now)
                } else {
                    s.msg_active = true;
                    s.msg.clear();
                    s.msg.extend_from_slice(payload);
                    Ok(())
                }
            }
            OpCode::Continuation => {
                let Some(s) = self.sessions.get_mut(idx) else {
                    return Ok(());
                };
                if !s.msg_active {
                    return Err(End::Protocol("continuation without a message".into()));
                }
                if s.msg.len() + payload.len() > CLIENT_MESSAGE_BYTES_MAX {
                    return Err(End::Protocol(
                        proto::ProtoError::MessageTooBig(CLIENT_MESSAGE_BYTES_MAX).to_string(),
                    ));
                }
                s.msg.extend_from_slice(payload);
                if fin {
                    s.msg_active = false;
                    let msg = std::mem::take(&mut s.msg);
                    self.on_message(idx, &msg, now)?;
                }
                Ok(())
            }
            OpCode::Ping => {
                let mask = self.rng.mask();
                proto::write_pong(payload, mask, &mut self.tx);
                self.send_tx(idx);
                Ok(())
            }
            OpCode::Pong => Ok(()),
            OpCode::Close => {
                let code = close_code(payload);
                let mask = self.rng.mask();
                proto::write_close(code, mask, &mut self.tx);
                self.send_tx(idx);
                Err(End::Closed(code))
            }
        }
    }

    fn unexpected(&mut self, what: String) {
        *self.unexpected.entry(what).or_insert(0) += 1;
    }

    fn track_seq(&mut self, idx: usize, seq: Option<u64>) {
        if self.spec.target != GwTarget::Hearth {
            return;
        }
        let Some(s) = self.sessions.get_mut(idx) else {
            return;
        };
        if let Some(new) = seq {
            if let Some(old) = s.seq
                && new != old + 1
            {
                self.report.seq_errors += 1;
            }
            s.seq = Some(new);
        }
    }

    fn on_message(&mut self, idx: usize, payload: &[u8], now: u64) -> Result<(), End> {
        let phase = self.phase(idx);
        if let Some(ev) = parse_event(payload) {
            self.track_seq(idx, ev.seq);
            if phase == Phase::Ready {
                self.on_bench(idx, ev, payload.len() as u64, now);
            } else {
                self.unexpected("message before GUILD_CREATE".into());
            }
            return Ok(());
        }
        let msg = classify(payload).map_err(|e| End::Protocol(e.to_string()))?;
        match msg {
            GwMessage::Hello {
                heartbeat_interval_ms,
            } if phase == Phase::AwaitHello && self.spec.target == GwTarget::Hearth => {
                let interval_ns = heartbeat_interval_ms.max(1) * 1_000_000;
                let jitter = self.rng.fraction();
                let token = self
                    .tokens
                    .get(idx)
                    .cloned()
                    .ok_or_else(|| End::Protocol("no token for this session".into()))?;
                let mask = self.rng.mask();
                proto::write_text(&identify_payload(&token), mask, &mut self.tx);
                if let Some(s) = self.sessions.get_mut(idx) {
                    s.hb_interval_ns = interval_ns;
                    s.next_hb_ns = now + (interval_ns as f64 * jitter) as u64;
                    s.phase = Phase::AwaitReady;
                }
                self.send_tx(idx);
            }
            GwMessage::Dispatch { t, s } => {
                self.track_seq(idx, s);
                match (t.as_str(), phase) {
                    ("READY", Phase::AwaitReady) => {
                        if let Some(s) = self.sessions.get_mut(idx) {
                            s.phase = Phase::AwaitGuild;
                        }
                    }
                    ("GUILD_CREATE", Phase::AwaitGuild) => self.on_subscribed(idx),
                    _ => self.unexpected(format!("dispatch:{t}")),
                }
            }
            GwMessage::HeartbeatAck => {}
            GwMessage::HeartbeatRequest => self.heartbeat(idx),
            GwMessage::InvalidSession(_) if phase.in_handshake() => {
                return Err(End::InvalidSession);
            }
            GwMessage::InvalidSession(_) => self.unexpected("op9".into()),
            GwMessage::Reconnect => self.unexpected("op7".into()),
            GwMessage::Hello { .. } => self.unexpected("op10 again".into()),
            GwMessage::Bench(_) => self.unexpected("broadcast event".into()),
            GwMessage::Other(op) => self.unexpected(format!("op{op}")),
        }
        Ok(())
    }

    fn on_subscribed(&mut self, idx: usize) {
        let base_k = self.base_k;
        let Some(s) = self.sessions.get_mut(idx) else {
            return;
        };
        s.phase = Phase::Ready;
        s.next_k = base_k;
        s.got_any = false;
        self.inflight = self.inflight.saturating_sub(1);
        self.live += 1;
        self.ready_total += 1;
        if let Some(e) = self.expect
            && base_k >= e.end_k
        {
            self.complete += 1;
        }
    }

    fn on_bench(&mut self, idx: usize, ev: FanoutEvent, bytes: u64, now: u64) {
        let Some(s) = self.sessions.get_mut(idx) else {
            return;
        };
        let r = &mut self.report;
        r.bytes_min = if r.bytes_min == 0 {
            bytes
        } else {
            r.bytes_min.min(bytes)
        };
        r.bytes_max = r.bytes_max.max(bytes);
        if ev.k < s.next_k {
            if s.got_any {
                r.duplicates += 1;
            } else {
                r.stale += 1;
            }
            return;
        }
        r.gaps += ev.k - s.next_k;
        let before = s.next_k;
        s.next_k = ev.k + 1;
        s.got_any = true;
        let Some(e) = self.expect else {
            r.out_of_phase += 1;
            return;
        };
        if before < e.end_k && s.next_k >= e.end_k {
            self.complete += 1;
        }
        let Some(slot) =
            ev.k.checked_sub(e.first_k)
                .filter(|_| ev.k < e.end_k)
                .and_then(|i| r.receipts.get_mut(i as usize))
        else {
            r.out_of_phase += 1;
            return;
        };
        slot.record(ev.ts_ns, now);
        r.received += 1;
        if e.record {
            r.delivery
                .saturating_record(now.saturating_sub(ev.ts_ns).max(1));
        }
    }

    fn heartbeat(&mut self, idx: usize) {
        let Some(seq) = self.sessions.get(idx).map(|s| s.seq) else {
            return;
        };
        let mask = self.rng.mask();
        proto::write_text(&heartbeat_payload(seq), mask, &mut self.tx);
        self.send_tx(idx);
    }

    fn kill(&mut self, idx: usize, end: End) {
        let Some(s) = self.sessions.get_mut(idx) else {
            return;
        };
        if s.phase == Phase::Dead {
            return;
        }
        let was = s.phase;
        s.phase = Phase::Dead;
        if let Some(fd) = s.fd.take() {
            let _ = self.epoll.delete(fd.as_raw_fd());
        }
        s.pending = Vec::new();
        s.msg = Vec::new();
        s.out = Vec::new();
        s.key = String::new();
        let next_k = s.next_k;
        if end == End::Quit {
            return;
        }
        if was.in_handshake() {
            self.inflight = self.inflight.saturating_sub(1);
            let f = &mut self.failed;
            match &end {
                End::Connect(_) => f.connect += 1,
                End::Upgrade(_) => f.upgrade += 1,
                End::Protocol(_) => f.protocol += 1,
                End::Eof | End::Closed(_) | End::Io(_) => f.closed += 1,
                End::InvalidSession => f.invalid_session += 1,
                End::Timeout | End::Quit => f.timeout += 1,
            }
            if f.first_error.is_none() {
                f.first_error = Some(end.describe());
            }
        } else {
            self.live = self.live.saturating_sub(1);
            if self.expect.is_some_and(|e| next_k >= e.end_k) {
                self.complete = self.complete.saturating_sub(1);
            }
            *self
                .closed_after_ready
                .entry(end.after_ready_key())
                .or_insert(0) += 1;
        }
    }

    fn tick(&mut self, now: u64) {
        let timeout_ns = HANDSHAKE_TIMEOUT_S * 1_000_000_000;
        for idx in 0..self.sessions.len() {
            let Some(s) = self.sessions.get_mut(idx) else {
                continue;
            };
            if s.phase.in_handshake() && now.saturating_sub(s.t_connect_ns) > timeout_ns {
                self.kill(idx, End::Timeout);
                continue;
            }
            if matches!(
                s.phase,
                Phase::AwaitReady | Phase::AwaitGuild | Phase::Ready
            ) && s.next_hb_ns != 0
                && now >= s.next_hb_ns
            {
                let interval = if s.hb_interval_ns > 0 {
                    s.hb_interval_ns
                } else {
                    HEARTBEAT_INTERVAL_MS_DEFAULT * 1_000_000
                };
                s.next_hb_ns = (s.next_hb_ns + interval).max(now + 1);
                self.heartbeat(idx);
            }
        }
    }
}
