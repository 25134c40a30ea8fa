//! The gateway load generator: one single-threaded epoll loop driving thousands of WebSocket
//! sessions, run as `hearth-bench gw-client` processes (one per 10k sessions, so no process
//! needs more than the 20000 descriptors the machine allows).
//!
//! Per session: non-blocking connect from the process's loopback source address, HTTP upgrade
//! (checked against our key), then for Hearth Hello → Identify → READY, heartbeats on the
//! interval Hello gives (the first one after a random fraction of it, as Discord clients do),
//! and every dispatch after READY counted; for Nchan the upgrade alone subscribes. At most
//! `inflight` sessions are in their handshake at once.
//!
//! Reads go into one shared 64 KiB buffer, so an idle session holds no read buffer; only a
//! frame split across reads is kept per session. The harness drives the process through
//! [`crate::gateway::wire`] lines; events are timestamped once per `read` with CLOCK_MONOTONIC,
//! the clock the publisher stamps them with.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use gateway_core::ws::frame::OpCode;
use hdrhistogram::Histogram;

use crate::BenchError;
use crate::gateway::limits::{
    ALIVE_CHECK_TIMEOUT_S, CLIENT_EPOLL_EVENTS, CLIENT_MESSAGE_BYTES_MAX, CLIENT_READ_BYTES,
    CLIENT_TICK_MS, HANDSHAKE_TIMEOUT_S, HEARTBEAT_INTERVAL_MS_DEFAULT,
};
use crate::gateway::net::{
    Connecting, Epoll, Interest, connect_nonblocking, mono_ns, read_fd, set_nonblocking,
    take_socket_error, write_fd,
};
use crate::gateway::proto::{
    self, BenchEvent, GwMessage, classify, close_code, heartbeat_payload, identify_payload,
    next_frame, parse_upgrade_response, upgrade_request, ws_key,
};
use crate::gateway::target::GwTarget;
use crate::gateway::wire::{
    Command, FailCounts, HistWire, WorkerMsg, WorkerReport, new_histogram, parse_command,
};

/// epoll token of the command input; sessions use their index.
const CMD_TOKEN: u64 = u64::MAX;
/// Bytes read from the command input at once.
const CMD_READ_BYTES: usize = 4096;
/// Longest command line accepted.
const CMD_LINE_MAX: usize = 1024;

/// What one client process does.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Which server protocol to speak.
    pub target: GwTarget,
    /// The server's address.
    pub addr: SocketAddr,
    /// URL path and query of the upgrade.
    pub path: String,
    /// Hearth: one token per session (ignored for Nchan).
    pub tokens: Vec<String>,
    /// Sessions to open.
    pub sessions: u32,
    /// Loopback source address.
    pub source_ip: Ipv4Addr,
    /// Sessions in their handshake at once.
    pub inflight: u32,
    /// Seeds WebSocket keys, masks and heartbeat jitter.
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Upgrading,
    AwaitHello,
    AwaitReady,
    Ready,
    Dead,
}

impl Phase {
    fn in_handshake(self) -> bool {
        matches!(
            self,
            Phase::Connecting | Phase::Upgrading | Phase::AwaitHello | Phase::AwaitReady
        )
    }
}

/// Why a session ended.
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
            End::Timeout => format!("not ready within {HANDSHAKE_TIMEOUT_S} s"),
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
    /// Sec-WebSocket-Key until the upgrade is checked.
    key: String,
    t_connect_ns: u64,
    t_identify_ns: u64,
    /// Bytes of a frame (or upgrade head) split across reads.
    pending: Vec<u8>,
    /// A fragmented message being reassembled.
    msg: Vec<u8>,
    msg_active: bool,
    /// Output the socket did not take yet.
    out: Vec<u8>,
    want_write: bool,
    seq: Option<u64>,
    hb_interval_ns: u64,
    /// When the next heartbeat is due; 0 for none.
    next_hb_ns: u64,
    check_pending: bool,
    /// Next bench event index expected.
    next_k: u64,
}

impl Session {
    fn new(t_connect_ns: u64) -> Self {
        Session {
            fd: None,
            phase: Phase::Dead,
            key: String::new(),
            t_connect_ns,
            t_identify_ns: 0,
            pending: Vec::new(),
            msg: Vec::new(),
            msg_active: false,
            out: Vec::new(),
            want_write: false,
            seq: None,
            hb_interval_ns: 0,
            next_hb_ns: 0,
            check_pending: false,
            next_k: 0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Expect {
    total: u64,
    record_from: u64,
}

#[derive(Debug, Clone, Copy)]
struct Check {
    deadline_ns: u64,
    checked: u64,
    alive: u64,
    outstanding: u64,
}

/// splitmix64: a tiny, well-mixed generator for keys, masks and jitter (not cryptographic,
/// and a load generator needs nothing more).
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
        let (a, b) = (self.next().to_ne_bytes(), self.next().to_ne_bytes());
        let mut n = [0u8; 16];
        for (d, s) in n.iter_mut().zip(a.iter().chain(b.iter())) {
            *d = *s;
        }
        n
    }

    /// Uniform in [0, 1).
    fn fraction(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One client process's state.
pub struct Client<W: Write> {
    cfg: ClientConfig,
    host: String,
    epoll: Epoll,
    sessions: Vec<Session>,
    rbuf: Vec<u8>,
    tx: Vec<u8>,
    rng: Rng,
    inflight: u32,
    live: u64,
    report: WorkerReport,
    connect_ready: Histogram<u64>,
    identify_ready: Histogram<u64>,
    delivery: Histogram<u64>,
    expect: Option<Expect>,
    complete: u64,
    done_sent: bool,
    connected_sent: bool,
    check: Option<Check>,
    cmd_fd: RawFd,
    cmd_buf: Vec<u8>,
    out: W,
    quit: bool,
    next_tick_ns: u64,
}

impl<W: Write> Client<W> {
    /// A client reading commands from `cmd_fd` (made non-blocking) and writing lines to `out`.
    pub fn new(cfg: ClientConfig, cmd_fd: RawFd, out: W) -> Result<Self, BenchError> {
        if cfg.target == GwTarget::Hearth && cfg.tokens.len() < cfg.sessions as usize {
            return Err(BenchError::Invalid(format!(
                "{} sessions need as many tokens, got {}",
                cfg.sessions,
                cfg.tokens.len()
            )));
        }
        if cfg.inflight == 0 {
            return Err(BenchError::Invalid("inflight must be at least 1".into()));
        }
        let epoll = Epoll::new().map_err(|e| BenchError::io("epoll_create1", e))?;
        set_nonblocking(cmd_fd).map_err(|e| BenchError::io("command input O_NONBLOCK", e))?;
        epoll
            .add(cmd_fd, Interest::Read, CMD_TOKEN)
            .map_err(|e| BenchError::io("epoll add command input", e))?;
        Ok(Client {
            host: cfg.addr.to_string(),
            rng: Rng(cfg.seed),
            sessions: Vec::with_capacity(cfg.sessions as usize),
            cfg,
            epoll,
            rbuf: vec![0; CLIENT_READ_BYTES],
            tx: Vec::new(),
            inflight: 0,
            live: 0,
            report: WorkerReport::default(),
            connect_ready: new_histogram()?,
            identify_ready: new_histogram()?,
            delivery: new_histogram()?,
            expect: None,
            complete: 0,
            done_sent: false,
            connected_sent: false,
            check: None,
            cmd_fd,
            cmd_buf: Vec::new(),
            out,
            quit: false,
            next_tick_ns: 0,
        })
    }

    /// Runs until `quit` or the end of the command input.
    pub fn run(mut self) -> Result<W, BenchError> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; CLIENT_EPOLL_EVENTS];
        loop {
            let now = mono_ns();
            self.start_sessions();
            if now >= self.next_tick_ns {
                self.tick(now)?;
                self.next_tick_ns = now + CLIENT_TICK_MS * 1_000_000;
            }
            self.emit_progress()?;
            if self.quit {
                break;
            }
            let busy_starting = self.report.started < u64::from(self.cfg.sessions)
                && self.inflight < self.cfg.inflight;
            let timeout_ms = if busy_starting { 0 } else { CLIENT_TICK_MS };
            let n = self
                .epoll
                .wait(&mut events, timeout_ms)
                .map_err(|e| BenchError::io("epoll_wait", e))?;
            for ev in events.iter().take(n) {
                let (token, flags) = (ev.u64, ev.events);
                if token == CMD_TOKEN {
                    self.read_commands()?;
                } else {
                    self.on_event(token as usize, flags);
                }
            }
        }
        for idx in 0..self.sessions.len() {
            self.kill(idx, End::Quit);
        }
        Ok(self.out)
    }

    fn emit(&mut self, msg: &WorkerMsg) -> Result<(), BenchError> {
        let line = serde_json::to_string(msg)
            .map_err(|e| BenchError::Invalid(format!("serialise client message: {e}")))?;
        writeln!(self.out, "{line}")
            .and_then(|()| self.out.flush())
            .map_err(|e| BenchError::io("write to harness", e))
    }

    fn emit_progress(&mut self) -> Result<(), BenchError> {
        if !self.connected_sent
            && self.report.started == u64::from(self.cfg.sessions)
            && self.inflight == 0
        {
            self.connected_sent = true;
            let msg = WorkerMsg::Connected {
                ready: self.report.ready,
                failed: self.report.failed.total(),
            };
            self.emit(&msg)?;
        }
        if self.connected_sent
            && self.expect.is_some()
            && !self.done_sent
            && self.complete >= self.live
        {
            self.done_sent = true;
            let msg = WorkerMsg::Done {
                last_rx_ns: self.report.last_rx_ns,
                live: self.live,
            };
            self.emit(&msg)?;
        }
        Ok(())
    }

    fn start_sessions(&mut self) {
        while self.report.started < u64::from(self.cfg.sessions)
            && self.inflight < self.cfg.inflight
        {
            let idx = self.sessions.len();
            let t_connect = mono_ns();
            if self.report.first_connect_ns == 0 {
                self.report.first_connect_ns = t_connect;
            }
            let mut s = Session::new(t_connect);
            s.phase = Phase::Connecting;
            self.sessions.push(s);
            self.report.started += 1;
            self.inflight += 1;
            match connect_nonblocking(self.cfg.source_ip, self.cfg.addr) {
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
            let failed = flags & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
            if failed {
                let e = take_socket_error(fd).err().map_or_else(
                    || "connection refused or reset".to_owned(),
                    |e| e.to_string(),
                );
                self.kill(idx, End::Connect(e));
            } else if out {
                // Writable without an error: connected (no SO_ERROR call needed; a late
                // failure surfaces on the write).
                self.send_upgrade(idx);
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

    /// Sends `self.tx` on session `idx`, queueing what the socket does not take.
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
        let req = upgrade_request(&self.host, &self.cfg.path, &key);
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
            // A short read emptied the socket; level-triggered epoll reports any later data.
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
            // An empty carry-over gives its allocation back: idle sessions hold none.
            s.pending = if pending.is_empty() {
                Vec::new()
            } else {
                pending
            };
        }
        Ok(())
    }

    fn phase(&self, idx: usize) -> Phase {
        self.sessions.get(idx).map_or(Phase::Dead, |s| s.phase)
    }

    /// Handles the complete frames at the front of `data`; returns the bytes used.
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
                    self.on_upgraded(idx, now);
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

    fn on_upgraded(&mut self, idx: usize, now: u64) {
        if let Some(s) = self.sessions.get_mut(idx) {
            s.key = String::new();
            s.phase = Phase::AwaitHello;
        }
        if self.cfg.target == GwTarget::Nchan {
            self.on_ready(idx, now);
        }
    }

    fn on_ready(&mut self, idx: usize, now: u64) {
        let Some(s) = self.sessions.get_mut(idx) else {
            return;
        };
        s.phase = Phase::Ready;
        self.inflight = self.inflight.saturating_sub(1);
        self.live += 1;
        self.report.ready += 1;
        self.report.last_ready_ns = self.report.last_ready_ns.max(now);
        self.connect_ready
            .saturating_record(now.saturating_sub(s.t_connect_ns).max(1));
        if s.t_identify_ns > 0 {
            self.identify_ready
                .saturating_record(now.saturating_sub(s.t_identify_ns).max(1));
        }
        if let Some(e) = self.expect
            && s.next_k >= e.total
        {
            self.complete += 1;
        }
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
            OpCode::Pong => {
                self.answered_check(idx);
                Ok(())
            }
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
        *self.report.unexpected.entry(what).or_insert(0) += 1;
    }

    fn track_seq(&mut self, idx: usize, seq: Option<u64>) {
        if self.cfg.target != GwTarget::Hearth {
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
        let msg = classify(payload).map_err(|e| End::Protocol(e.to_string()))?;
        let phase = self.phase(idx);
        match msg {
            GwMessage::Hello {
                heartbeat_interval_ms,
            } if phase == Phase::AwaitHello && self.cfg.target == GwTarget::Hearth => {
                let interval_ns = heartbeat_interval_ms.max(1) * 1_000_000;
                let jitter = self.rng.fraction();
                let token = self
                    .cfg
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
                    s.t_identify_ns = mono_ns();
                }
                self.send_tx(idx);
            }
            GwMessage::Dispatch { t, s } => {
                self.track_seq(idx, s);
                if t == "READY" && phase == Phase::AwaitReady {
                    self.on_ready(idx, now);
                } else {
                    self.unexpected(format!("dispatch:{t}"));
                }
            }
            GwMessage::Bench(ev) if phase == Phase::Ready => {
                self.track_seq(idx, ev.s);
                self.on_bench(idx, ev, payload.len() as u64, now);
            }
            GwMessage::HeartbeatAck => {
                self.report.heartbeat_acks += 1;
                self.answered_check(idx);
            }
            GwMessage::HeartbeatRequest => self.heartbeat(idx),
            GwMessage::InvalidSession(_) if phase.in_handshake() => {
                return Err(End::InvalidSession);
            }
            GwMessage::InvalidSession(_) => self.unexpected("op9".into()),
            GwMessage::Reconnect => self.unexpected("op7".into()),
            GwMessage::Hello { .. } => self.unexpected("op10 again".into()),
            GwMessage::Bench(_) => self.unexpected("bench event before READY".into()),
            GwMessage::Other(op) => self.unexpected(format!("op{op}")),
        }
        Ok(())
    }

    fn on_bench(&mut self, idx: usize, ev: BenchEvent, bytes: u64, now: u64) {
        let Some(s) = self.sessions.get_mut(idx) else {
            return;
        };
        let r = &mut self.report;
        r.bench_bytes_min = if r.bench_bytes_min == 0 {
            bytes
        } else {
            r.bench_bytes_min.min(bytes)
        };
        r.bench_bytes_max = r.bench_bytes_max.max(bytes);
        if ev.k < s.next_k {
            r.bench_duplicates += 1;
            return;
        }
        r.bench_gaps += ev.k - s.next_k;
        r.bench_received += 1;
        let was_complete = self.expect.is_some_and(|e| s.next_k >= e.total);
        s.next_k = ev.k + 1;
        r.last_rx_ns = r.last_rx_ns.max(now);
        if let Some(e) = self.expect {
            if !was_complete && s.next_k >= e.total {
                self.complete += 1;
            }
            if ev.k >= e.record_from {
                r.bench_recorded += 1;
                if r.first_rx_ns == 0 || now < r.first_rx_ns {
                    r.first_rx_ns = now;
                }
                self.delivery
                    .saturating_record(now.saturating_sub(ev.ts_ns).max(1));
            }
        }
    }

    fn heartbeat(&mut self, idx: usize) {
        let Some(seq) = self.sessions.get(idx).map(|s| s.seq) else {
            return;
        };
        let mask = self.rng.mask();
        proto::write_text(&heartbeat_payload(seq), mask, &mut self.tx);
        self.report.heartbeats_sent += 1;
        self.send_tx(idx);
    }

    fn answered_check(&mut self, idx: usize) {
        let Some(s) = self.sessions.get_mut(idx) else {
            return;
        };
        if !s.check_pending {
            return;
        }
        s.check_pending = false;
        if let Some(c) = self.check.as_mut() {
            c.alive += 1;
            c.outstanding = c.outstanding.saturating_sub(1);
        }
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
        if s.check_pending {
            s.check_pending = false;
            if let Some(c) = self.check.as_mut() {
                c.outstanding = c.outstanding.saturating_sub(1);
            }
        }
        let next_k = s.next_k;
        if end == End::Quit {
            return;
        }
        if was.in_handshake() {
            self.inflight = self.inflight.saturating_sub(1);
            let f: &mut FailCounts = &mut self.report.failed;
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
            if self.expect.is_some_and(|e| next_k >= e.total) {
                self.complete = self.complete.saturating_sub(1);
            }
            *self
                .report
                .closed_after_ready
                .entry(end.after_ready_key())
                .or_insert(0) += 1;
        }
    }

    fn tick(&mut self, now: u64) -> Result<(), BenchError> {
        let timeout_ns = HANDSHAKE_TIMEOUT_S * 1_000_000_000;
        for idx in 0..self.sessions.len() {
            let Some(s) = self.sessions.get_mut(idx) else {
                continue;
            };
            if s.phase.in_handshake() && now.saturating_sub(s.t_connect_ns) > timeout_ns {
                self.kill(idx, End::Timeout);
                continue;
            }
            if matches!(s.phase, Phase::AwaitReady | Phase::Ready)
                && s.next_hb_ns != 0
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
        if let Some(c) = self.check
            && (c.outstanding == 0 || now >= c.deadline_ns)
        {
            self.check = None;
            for s in &mut self.sessions {
                s.check_pending = false;
            }
            self.emit(&WorkerMsg::Alive {
                checked: c.checked,
                alive: c.alive,
            })?;
        }
        Ok(())
    }

    fn read_commands(&mut self) -> Result<(), BenchError> {
        let mut buf = [0u8; CMD_READ_BYTES];
        loop {
            match read_fd(self.cmd_fd, &mut buf) {
                Ok(0) => {
                    // The harness is gone (or closed our input): stop.
                    self.quit = true;
                    let _ = self.epoll.delete(self.cmd_fd);
                    return Ok(());
                }
                Ok(n) => self
                    .cmd_buf
                    .extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(BenchError::io("read commands", e)),
            }
        }
        while let Some(nl) = self.cmd_buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.cmd_buf.drain(..=nl).collect();
            let text = String::from_utf8_lossy(&line);
            match parse_command(&text) {
                Some(cmd) => self.command(cmd)?,
                None => {
                    return Err(BenchError::Client(format!(
                        "unknown command {:?}",
                        text.trim()
                    )));
                }
            }
        }
        if self.cmd_buf.len() > CMD_LINE_MAX {
            return Err(BenchError::Client("command line too long".into()));
        }
        Ok(())
    }

    fn command(&mut self, cmd: Command) -> Result<(), BenchError> {
        match cmd {
            Command::Expect { total, record_from } => {
                self.expect = Some(Expect { total, record_from });
                self.done_sent = false;
                self.complete = self
                    .sessions
                    .iter()
                    .filter(|s| s.phase == Phase::Ready && s.next_k >= total)
                    .count() as u64;
            }
            Command::Check => {
                let mut checked = 0;
                for idx in 0..self.sessions.len() {
                    if self.phase(idx) != Phase::Ready {
                        continue;
                    }
                    if let Some(s) = self.sessions.get_mut(idx) {
                        s.check_pending = true;
                    }
                    checked += 1;
                    match self.cfg.target {
                        GwTarget::Hearth => self.heartbeat(idx),
                        GwTarget::Nchan => {
                            let mask = self.rng.mask();
                            proto::write_ping(b"alive", mask, &mut self.tx);
                            self.send_tx(idx);
                        }
                    }
                }
                self.check = Some(Check {
                    deadline_ns: mono_ns() + ALIVE_CHECK_TIMEOUT_S * 1_000_000_000,
                    checked,
                    alive: 0,
                    outstanding: checked,
                });
            }
            Command::Report => {
                let msg = WorkerMsg::Report(Box::new(self.final_report()));
                self.emit(&msg)?;
            }
            Command::Quit => self.quit = true,
        }
        Ok(())
    }

    fn final_report(&self) -> WorkerReport {
        let mut r = self.report.clone();
        r.live = self.live;
        r.connect_ready = HistWire::from_histogram(&self.connect_ready);
        r.identify_ready = HistWire::from_histogram(&self.identify_ready);
        r.delivery = HistWire::from_histogram(&self.delivery);
        r.bench_expected = self.expect.map_or(0, |e| e.total * r.ready);
        r
    }
}

/// Reads `count` tokens starting at line `first` of a file of one token per line.
pub fn read_tokens(
    path: &std::path::Path,
    first: u32,
    count: u32,
) -> Result<Vec<String>, BenchError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BenchError::io(format!("read {}", path.display()), e))?;
    let tokens: Vec<String> = text
        .lines()
        .skip(first as usize)
        .take(count as usize)
        .map(str::to_owned)
        .collect();
    if tokens.len() < count as usize {
        return Err(BenchError::Invalid(format!(
            "{} holds {} tokens from line {first}, {count} needed",
            path.display(),
            tokens.len()
        )));
    }
    Ok(tokens)
}

/// Body of `hearth-bench gw-client`: commands on stdin, lines on stdout.
pub fn main(cfg: ClientConfig) -> Result<(), BenchError> {
    crate::sys::raise_nofile().map_err(|e| BenchError::io("raise RLIMIT_NOFILE", e))?;
    let stdout = io::stdout();
    let result = Client::new(cfg, libc::STDIN_FILENO, stdout.lock()).and_then(Client::run);
    if let Err(e) = &result {
        let line = serde_json::to_string(&WorkerMsg::Error {
            message: e.to_string(),
        })
        .unwrap_or_default();
        let mut out = stdout.lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
    result.map(|_| ())
}
