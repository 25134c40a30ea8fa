//! Two ways to run shards under one scenario: real io_uring shard threads with std clients, and
//! simulated shards stepped in this thread with simulated peers.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use engine::app::App;
use engine::ctx::ShardCtx;
use engine::driver::DriverConfig;
use engine::driver::sim::{PeerId, SimConfig, SimDriver, SimWorld};
use engine::mailbox::Mesh;
use engine::node::{Node, NodeSpec};
use engine::shard::{Service, Shard, ShardConfig};

/// Shards every harness runs (two, so cross-shard paths are exercised).
pub const SHARDS: usize = 2;
/// Header timeout used by the suite (short so tests stay fast in real time).
pub const HEADER_TIMEOUT_NS: u64 = 300_000_000;

/// The shard settings both harnesses use. Send and mailbox budgets are tiny, so every
/// scenario's output and cross-shard work is spread over many turns (leftovers carried over).
pub fn shard_config() -> ShardConfig {
    ShardConfig {
        http_header_timeout_ns: HEADER_TIMEOUT_NS,
        http_idle_timeout_ns: 2_000_000_000,
        drain_timeout_ns: 2_000_000_000,
        send_batch: 3,
        mailbox_batch: 2,
        ..ShardConfig::default()
    }
}

/// A small provided-buffer pool so exhaustion and re-arming happen under load.
pub fn driver_config() -> DriverConfig {
    DriverConfig {
        ring_entries: 256,
        recv_buffers: 16,
        recv_buffer_bytes: 4096,
        ..DriverConfig::default()
    }
}

/// Client operations a scenario uses; each implementation panics (with its seed) on a stall.
pub trait Harness {
    /// Shards in the node.
    fn shard_count(&self) -> usize;
    /// Open a client connection to a service; returns the client id.
    fn connect(&mut self, svc: Service) -> usize;
    /// Send bytes.
    fn send(&mut self, c: usize, data: &[u8]);
    /// Receive at least one byte; an empty result means the server closed.
    fn recv_some(&mut self, c: usize) -> Vec<u8>;
    /// Close the client side.
    fn close(&mut self, c: usize);
    /// Put bytes back to be returned first by the next `recv_some` (pipelined responses).
    fn unread(&mut self, c: usize, rest: Vec<u8>);
    /// Ask the node to drain.
    fn begin_drain(&mut self);
    /// Drain, wait for every shard to stop, and check nothing leaked.
    fn stop(&mut self);

    /// Receive exactly `n` bytes.
    fn recv_exact(&mut self, c: usize, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let got = self.recv_some(c);
            assert!(
                !got.is_empty(),
                "server closed after {} of {n} bytes",
                out.len()
            );
            out.extend_from_slice(&got);
        }
        assert_eq!(out.len(), n, "received more than expected");
        out
    }

    /// Receive until the server closes.
    fn recv_until_closed(&mut self, c: usize) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let got = self.recv_some(c);
            if got.is_empty() {
                return out;
            }
            out.extend_from_slice(&got);
        }
    }
}

/// Read one HTTP response: status, the header block (lower-cased), and the body.
pub fn read_response<H: Harness + ?Sized>(h: &mut H, c: usize) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let got = h.recv_some(c);
        assert!(!got.is_empty(), "closed before a response head");
        buf.extend_from_slice(&got);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    while buf.len() < head_end + len {
        let got = h.recv_some(c);
        assert!(!got.is_empty(), "closed inside a body");
        buf.extend_from_slice(&got);
    }
    let body = buf[head_end..head_end + len].to_vec();
    h.unread(c, buf[head_end + len..].to_vec());
    (status, head, body)
}

/// Shards on io_uring threads; clients are blocking std sockets with timeouts.
pub struct UringHarness {
    node: Option<Node>,
    http: SocketAddr,
    echo: SocketAddr,
    clients: Vec<Option<TcpStream>>,
    leftover: Vec<Vec<u8>>,
}

impl UringHarness {
    /// Start a two-shard node on loopback ephemeral ports.
    pub fn new() -> Self {
        let spec = NodeSpec {
            shards: SHARDS,
            cores: Vec::new(),
            http_addr: "127.0.0.1:0".parse().expect("addr"),
            echo_addr: Some("127.0.0.1:0".parse().expect("addr")),
            driver: driver_config(),
            shard: shard_config(),
            mailbox_capacity: 64,
            gateway: Default::default(),
            data_dir: None,
        };
        let node = Node::start(spec).expect("node starts");
        let addrs = node.addrs();
        UringHarness {
            http: addrs.http,
            echo: addrs.echo.expect("echo bound"),
            node: Some(node),
            clients: Vec::new(),
            leftover: Vec::new(),
        }
    }
}

impl Harness for UringHarness {
    fn shard_count(&self) -> usize {
        SHARDS
    }
    fn connect(&mut self, svc: Service) -> usize {
        let addr = match svc {
            Service::Http | Service::Gateway => self.http,
            Service::Echo => self.echo,
            // Voice (issue 6) is tested through a node (tests/voice_e2e.rs), not this harness.
            Service::VoiceTls => panic!("the harness opens no voice listener"),
        };
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        s.set_nodelay(true).expect("nodelay");
        self.clients.push(Some(s));
        self.leftover.push(Vec::new());
        self.clients.len() - 1
    }
    fn send(&mut self, c: usize, data: &[u8]) {
        let s = self.clients[c].as_mut().expect("open client");
        // Echo replies flow back while we write: write from a helper thread for big payloads so
        // neither side's socket buffer deadlocks the other.
        if data.len() > 64 * 1024 {
            let mut w = s.try_clone().expect("clone");
            let data = data.to_vec();
            std::thread::spawn(move || {
                let _ = w.write_all(&data);
            });
        } else {
            s.write_all(data).expect("send");
        }
    }
    fn unread(&mut self, c: usize, rest: Vec<u8>) {
        self.leftover[c] = rest;
    }
    fn recv_some(&mut self, c: usize) -> Vec<u8> {
        if !self.leftover[c].is_empty() {
            return std::mem::take(&mut self.leftover[c]);
        }
        let s = self.clients[c].as_mut().expect("open client");
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    return buf;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Vec::new(),
                Err(e) => panic!("client {c} read failed (stall?): {e}"),
            }
        }
    }
    fn close(&mut self, c: usize) {
        self.clients[c] = None;
    }
    fn begin_drain(&mut self) {
        if let Some(n) = &self.node {
            n.stop();
        }
    }
    fn stop(&mut self) {
        self.clients.clear();
        if let Some(n) = self.node.take() {
            n.stop();
            n.join().expect("every shard stops cleanly");
        }
    }
}

impl Drop for UringHarness {
    fn drop(&mut self) {
        if let Some(n) = self.node.take() {
            n.stop();
            let _ = n.join();
        }
    }
}

/// The seeds each simulated scenario runs (`SEED=n` runs just one).
pub fn sim_seeds() -> Vec<u64> {
    match std::env::var("SEED").ok().and_then(|s| s.parse().ok()) {
        Some(s) => vec![s],
        None => (1..=8).collect(),
    }
}

/// Most virtual time a simulated client waits for anything before declaring a stall.
const SIM_STALL_NS: u64 = 60_000_000_000;

/// Simulated shards stepped round-robin; clients are simulated peers.
pub struct SimHarness {
    seed: u64,
    world: SimWorld,
    shards: Vec<Shard<SimDriver, App>>,
    addrs: Vec<(SocketAddr, SocketAddr)>,
    clients: Vec<PeerId>,
    leftover: Vec<Vec<u8>>,
    next_shard: usize,
    draining: bool,
}

impl SimHarness {
    /// Two simulated shards with partial sends, split receives, receives ended with data and
    /// jittered latency.
    pub fn new(seed: u64) -> Self {
        let mut cfg = SimConfig::new(seed);
        cfg.partial_send_prob = 0.3;
        cfg.recv_split_prob = 0.3;
        // Some receives end on a data completion, as on CQ overflow: the shard must re-arm them.
        cfg.recv_end_with_data_prob = 0.1;
        let world = SimWorld::new(cfg);
        let mesh = Mesh::new(SHARDS, 64).expect("mesh");
        let mut shards = Vec::new();
        let mut addrs = Vec::new();
        for i in 0..SHARDS {
            let driver = world.driver(driver_config());
            let ctx = ShardCtx::new(mesh.endpoint(i).expect("endpoint"));
            let mut s = Shard::new(driver, ctx, App::default(), shard_config());
            let http = s
                .listen("127.0.0.1:0".parse().expect("addr"), Service::Http)
                .expect("listen http");
            let echo = s
                .listen("127.0.0.1:0".parse().expect("addr"), Service::Echo)
                .expect("listen echo");
            addrs.push((http, echo));
            shards.push(s);
        }
        SimHarness {
            seed,
            world,
            shards,
            addrs,
            clients: Vec::new(),
            leftover: Vec::new(),
            next_shard: 0,
            draining: false,
        }
    }

    /// The earliest thing any shard or the network has to do (at most a second ahead): nothing
    /// may move the shared clock past work some shard could already be doing.
    fn next_event_ns(&mut self) -> u64 {
        let now = self.world.now_ns();
        let mut until = now + 1_000_000_000;
        if let Some(t) = self.world.next_event_ns() {
            until = until.min(t);
        }
        for s in &mut self.shards {
            // Cross-shard work waiting for a shard is due now: on real cores it would run at once,
            // in parallel with whatever the other shards do.
            if s.ctx.mail.depth() > 0 || s.ctx.backlog_len() > 0 || !s.ctx.http_replies.is_empty() {
                until = now;
            }
            if let Some(t) = s.driver().next_deadline_ns() {
                until = until.min(t);
            }
            if let Some(t) = s.next_timer_ns() {
                until = until.min(t);
            }
        }
        until.max(now)
    }

    /// One turn of every shard. The clock is shared, so the bound each shard may wait to is
    /// computed just before its turn: a shard that turned earlier in this step may have submitted
    /// work (or sent a segment) that must not be skipped over by a later shard moving the clock.
    fn step(&mut self) {
        for i in 0..self.shards.len() {
            let until = self.next_event_ns();
            // Stopped shards still turn: their last closes complete here.
            self.shards[i]
                .turn(Some(until))
                .unwrap_or_else(|e| panic!("SEED={}: shard turn failed: {e}", self.seed));
        }
    }

    fn pump_until(&mut self, what: &str, mut done: impl FnMut(&mut Self) -> bool) {
        let start = self.world.now_ns();
        let mut steps = 0u64;
        while !done(self) {
            self.step();
            steps += 1;
            assert!(
                self.world.now_ns() - start < SIM_STALL_NS && steps < 5_000_000,
                "SEED={}: stalled waiting for {what}",
                self.seed
            );
        }
    }
}

impl Harness for SimHarness {
    fn shard_count(&self) -> usize {
        SHARDS
    }
    fn connect(&mut self, svc: Service) -> usize {
        // Spread clients over the shards like SO_REUSEPORT would.
        let (http, echo) = self.addrs[self.next_shard % SHARDS];
        self.next_shard += 1;
        let addr = match svc {
            Service::Http | Service::Gateway => http,
            Service::Echo => echo,
            Service::VoiceTls => panic!("SEED={}: the harness opens no voice listener", self.seed),
        };
        let p = self
            .world
            .connect(addr)
            .unwrap_or_else(|e| panic!("SEED={}: connect: {e}", self.seed));
        self.clients.push(p);
        self.leftover.push(Vec::new());
        self.clients.len() - 1
    }
    fn send(&mut self, c: usize, data: &[u8]) {
        let p = self.clients[c];
        self.world
            .peer_send(p, data)
            .unwrap_or_else(|e| panic!("SEED={}: send: {e}", self.seed));
    }
    fn unread(&mut self, c: usize, rest: Vec<u8>) {
        self.leftover[c] = rest;
    }
    fn recv_some(&mut self, c: usize) -> Vec<u8> {
        if !self.leftover[c].is_empty() {
            return std::mem::take(&mut self.leftover[c]);
        }
        let p = self.clients[c];
        let mut out = Vec::new();
        self.pump_until("data or close", |h| {
            h.world.peer_recv(p, &mut out) > 0 || h.world.peer_is_closed_by_server(p)
        });
        out
    }
    fn close(&mut self, c: usize) {
        let p = self.clients[c];
        self.world.peer_close(p);
    }
    fn begin_drain(&mut self) {
        if !self.draining {
            self.draining = true;
            for s in &mut self.shards {
                s.start_drain();
            }
        }
    }
    fn stop(&mut self) {
        for c in 0..self.clients.len() {
            let p = self.clients[c];
            self.world.peer_close(p);
        }
        self.begin_drain();
        self.pump_until("every shard to stop", |h| {
            h.shards.iter().all(|s| s.is_stopped())
        });
        // Let closes and cancels complete, then check nothing leaked.
        self.pump_until("in-flight operations to finish", |h| {
            h.shards.iter().all(|s| s.driver().in_flight_ops() == 0)
        });
        for s in &self.shards {
            if let Err(e) = s.driver().leak_check() {
                panic!("SEED={}: leak: {e}", self.seed);
            }
        }
    }
}
