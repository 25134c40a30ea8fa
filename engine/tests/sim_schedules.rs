//! Random connect/send/close schedules against an echo server written on the `Driver` trait, run
//! on the simulated driver. Each schedule is seeded; a failure prints `SEED=<n>`, and running with
//! that environment variable replays only that schedule (`SIM_SCHEDULES=<n>` changes the count).

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

use engine::buf::SendBuf;
use engine::driver::sim::{PeerId, SimConfig, SimDriver, SimWorld};
use engine::driver::{
    BufId, Completion, CompletionKind, Driver, DriverConfig, Errno, Op, RecvChunk, SocketId,
    TcpOptions, Wait,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SCHEDULES_DEFAULT: u64 = 10_000;
/// Driver runs per schedule before it is declared stuck.
const STEPS_MAX: usize = 20_000;

const TOKEN_ACCEPT: u64 = 1;
const TOKEN_CLOSE_LISTENER: u64 = 2;
const KIND_RECV: u64 = 1;
const KIND_SEND: u64 = 2;
const KIND_CLOSE: u64 = 3;

fn conn_token(sid: SocketId, kind: u64) -> u64 {
    (u64::from(sid.0) + 1) << 8 | kind
}

/// One accepted connection of the echo server.
#[derive(Default)]
struct EchoConn {
    recv_armed: bool,
    needs_rearm: bool,
    /// Received chunks not yet in a send (their buffers are still lent).
    pending: Vec<(BufId, usize)>,
    /// Buffers whose bytes are in the send in flight, released when it has fully gone.
    held: Vec<BufId>,
    /// The idle send buffer (None while a send is in flight).
    idle: Option<SendBuf>,
    eof: bool,
    closing: bool,
}

/// An echo server using only the `Driver` trait: multishot accept and receive, partial-send
/// resubmission, buffers released after use, re-arm after NOBUFS or a receive the kernel ended on
/// a data completion, close on EOF or error.
struct Echo {
    listener: SocketId,
    conns: BTreeMap<u32, EchoConn>,
    /// Keep received buffers lent until their echo is sent (creates pool pressure and NOBUFS).
    hold_buffers: bool,
    listener_closed: bool,
    trace: DefaultHasher,
    partial_sends: u64,
    send_errors: u64,
    accepted: u64,
    /// Multishot receives that ended on a data completion (and were re-armed).
    ended_with_data: u64,
}

impl Echo {
    fn new(listener: SocketId, hold_buffers: bool) -> Self {
        Echo {
            listener,
            conns: BTreeMap::new(),
            hold_buffers,
            listener_closed: false,
            trace: DefaultHasher::new(),
            partial_sends: 0,
            send_errors: 0,
            accepted: 0,
            ended_with_data: 0,
        }
    }

    fn handle(&mut self, d: &mut impl Driver, c: Completion) -> Result<(), String> {
        c.token.hash(&mut self.trace);
        format!("{:?}", c.kind).hash(&mut self.trace);
        d.now_ns().hash(&mut self.trace);
        match c.token {
            TOKEN_ACCEPT => self.on_accept(d, c.kind),
            TOKEN_CLOSE_LISTENER => match c.kind {
                CompletionKind::Close { result: Ok(()) } => {
                    self.listener_closed = true;
                    Ok(())
                }
                k => Err(format!("listener close: {k:?}")),
            },
            t => {
                let sid = SocketId(u32::try_from((t >> 8) - 1).map_err(|e| e.to_string())?);
                match t & 0xff {
                    KIND_RECV => self.on_recv(d, sid, c.kind),
                    KIND_SEND => self.on_send(d, sid, c.kind),
                    KIND_CLOSE => self.on_close(sid, c.kind),
                    _ => Err(format!("unknown token {t}")),
                }
            }
        }
    }

    fn on_accept(&mut self, d: &mut impl Driver, kind: CompletionKind) -> Result<(), String> {
        let CompletionKind::Accept { result, more } = kind else {
            return Err(format!("accept token got {kind:?}"));
        };
        match result {
            Ok((sid, _peer)) => {
                self.accepted += 1;
                if self.conns.contains_key(&sid.0) {
                    return Err(format!("accepted socket {sid:?} already in use"));
                }
                self.conns.insert(
                    sid.0,
                    EchoConn {
                        recv_armed: true,
                        idle: Some(SendBuf::new()),
                        ..EchoConn::default()
                    },
                );
                submit(d, conn_token(sid, KIND_RECV), Op::RecvMulti { socket: sid })?;
            }
            Err(Errno::CANCELED) => return Ok(()),
            Err(e) => return Err(format!("accept failed: {e}")),
        }
        if !more {
            return Err("multishot accept ended without error".into());
        }
        Ok(())
    }

    fn on_recv(
        &mut self,
        d: &mut impl Driver,
        sid: SocketId,
        kind: CompletionKind,
    ) -> Result<(), String> {
        let CompletionKind::Recv {
            socket,
            result,
            more,
        } = kind
        else {
            return Err(format!("recv token got {kind:?}"));
        };
        if socket != sid {
            return Err(format!("recv for {socket:?} under token of {sid:?}"));
        }
        let conn = self
            .conns
            .get_mut(&sid.0)
            .ok_or("recv on unknown connection")?;
        if !more {
            conn.recv_armed = false;
        }
        match result {
            Ok(RecvChunk { buf: Some(b), len }) => {
                if len == 0 || len > d.recv_buf(b, len).len() {
                    return Err(format!("bad chunk length {len}"));
                }
                if conn.closing {
                    d.release_buf(b);
                } else {
                    conn.pending.push((b, len));
                    if !more {
                        // Ended with data (CQ overflow in the kernel): the rest is still queued.
                        self.ended_with_data += 1;
                        conn.needs_rearm = true;
                    }
                }
            }
            Ok(RecvChunk { buf: None, .. }) => {
                if more {
                    return Err("EOF with more".into());
                }
                conn.eof = true;
            }
            Err(Errno::NOBUFS) => conn.needs_rearm = true,
            Err(Errno::CANCELED) => {}
            Err(e) => return Err(format!("recv failed: {e}")),
        }
        self.flush(d, sid)
    }

    fn on_send(
        &mut self,
        d: &mut impl Driver,
        sid: SocketId,
        kind: CompletionKind,
    ) -> Result<(), String> {
        let CompletionKind::Send {
            socket,
            result,
            mut buf,
        } = kind
        else {
            return Err(format!("send token got {kind:?}"));
        };
        if socket != sid {
            return Err(format!("send for {socket:?} under token of {sid:?}"));
        }
        let conn = self
            .conns
            .get_mut(&sid.0)
            .ok_or("send on unknown connection")?;
        match result {
            Ok(n) => {
                if n > buf.remaining() || (n == 0 && buf.remaining() > 0) {
                    return Err(format!("send reported {n} of {}", buf.remaining()));
                }
                buf.advance(n);
                if !buf.is_empty() && !conn.closing {
                    self.partial_sends += 1;
                    // A partial send: the rest goes next, before anything newer.
                    return submit(d, conn_token(sid, KIND_SEND), Op::Send { socket: sid, buf });
                }
            }
            Err(Errno::PIPE | Errno::CONNRESET | Errno::CANCELED) => {
                self.send_errors += 1;
                conn.eof = true;
                conn.pending.drain(..).for_each(|(b, _)| d.release_buf(b));
            }
            Err(e) => return Err(format!("send failed: {e}")),
        }
        conn.held.drain(..).for_each(|b| d.release_buf(b));
        buf.clear();
        conn.idle = Some(buf);
        self.flush(d, sid)
    }

    fn on_close(&mut self, sid: SocketId, kind: CompletionKind) -> Result<(), String> {
        let CompletionKind::Close { result: Ok(()) } = kind else {
            return Err(format!("close of {sid:?}: {kind:?}"));
        };
        let conn = self
            .conns
            .remove(&sid.0)
            .ok_or("close of unknown connection")?;
        if conn.recv_armed || conn.idle.is_none() {
            return Err(format!("close of {sid:?} completed before its operations"));
        }
        if !conn.pending.is_empty() || !conn.held.is_empty() {
            return Err(format!("connection {sid:?} closed holding buffers"));
        }
        Ok(())
    }

    /// Start a send of what is pending, or close after EOF once everything has gone.
    fn flush(&mut self, d: &mut impl Driver, sid: SocketId) -> Result<(), String> {
        let Some(conn) = self.conns.get_mut(&sid.0) else {
            return Ok(());
        };
        if conn.closing {
            return Ok(());
        }
        if !conn.pending.is_empty()
            && let Some(mut buf) = conn.idle.take()
        {
            for (b, len) in conn.pending.drain(..) {
                buf.push_bytes(d.recv_buf(b, len));
                if self.hold_buffers {
                    conn.held.push(b);
                } else {
                    d.release_buf(b);
                }
            }
            return submit(d, conn_token(sid, KIND_SEND), Op::Send { socket: sid, buf });
        }
        if conn.eof && conn.idle.is_some() && conn.pending.is_empty() {
            conn.closing = true;
            return submit(d, conn_token(sid, KIND_CLOSE), Op::Close { socket: sid });
        }
        Ok(())
    }

    /// Re-arm receives that ended with NOBUFS once a buffer is free again.
    fn rearm(&mut self, d: &mut impl Driver, pool: u64) -> Result<(), String> {
        for (&id, conn) in &mut self.conns {
            if conn.needs_rearm
                && !conn.recv_armed
                && !conn.closing
                && d.stats().buffers_lent < pool
            {
                conn.needs_rearm = false;
                conn.recv_armed = true;
                submit(
                    d,
                    conn_token(SocketId(id), KIND_RECV),
                    Op::RecvMulti {
                        socket: SocketId(id),
                    },
                )?;
            }
        }
        Ok(())
    }
}

fn submit(d: &mut impl Driver, token: u64, op: Op) -> Result<(), String> {
    d.submit(token, op).map_err(|e| e.to_string())
}

/// What one test peer does and has seen.
struct Peer {
    id: Option<PeerId>,
    msgs: Vec<Vec<u8>>,
    next_msg: usize,
    /// Close abruptly (instead of a clean half-close) after this many messages.
    abort_after: Option<usize>,
    sent: Vec<u8>,
    received: Vec<u8>,
    ended: bool,
}

/// What a schedule exercised, summed over the run to show the schedules reach the hard paths.
#[derive(Default)]
struct Outcome {
    trace: u64,
    bytes_echoed: u64,
    nobufs: u64,
    partial_sends: u64,
    send_errors: u64,
    aborted_peers: u64,
    /// Multishot receives the simulated kernel ended on a data completion.
    ended_with_data: u64,
    /// Schedules whose connections were served by more than one shard.
    spread_over_shards: u64,
}

fn run_schedule(seed: u64) -> Result<Outcome, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let cfg = SimConfig::chaotic(seed);
    let pool = rng.random_range(1..=6u16);
    let dcfg = DriverConfig {
        recv_buffers: pool,
        recv_buffer_bytes: rng.random_range(8..=512),
        ring_entries: 64,
        ..DriverConfig::default()
    };
    let world = SimWorld::new(cfg);
    let addr: SocketAddr = "0.0.0.0:7000".parse().map_err(|_| "addr")?;
    // One or two shards, each with its own listener on the port (SO_REUSEPORT), sharing the world.
    let hold_buffers = rng.random_bool(0.5);
    let mut shards: Vec<(SimDriver, Echo)> = Vec::new();
    for _ in 0..rng.random_range(1..=2) {
        let mut d: SimDriver = world.driver(dcfg);
        let (listener, bound) = d
            .listen_tcp(addr, &TcpOptions::default())
            .map_err(|e| e.to_string())?;
        if bound != addr {
            return Err(format!("bound {bound}, asked {addr}"));
        }
        submit(&mut d, TOKEN_ACCEPT, Op::AcceptMulti { listener })?;
        shards.push((d, Echo::new(listener, hold_buffers)));
    }

    let mut peers: Vec<Peer> = (0..rng.random_range(1..=4))
        .map(|_| {
            let msgs: Vec<Vec<u8>> = (0..rng.random_range(0..=4))
                .map(|_| {
                    (0..rng.random_range(1..=1500))
                        .map(|_| rng.random::<u8>())
                        .collect()
                })
                .collect();
            let abort_after = rng
                .random_bool(0.25)
                .then(|| rng.random_range(0..=msgs.len()));
            Peer {
                id: None,
                msgs,
                next_msg: 0,
                abort_after,
                sent: Vec::new(),
                received: Vec::new(),
                ended: false,
            }
        })
        .collect();

    let mut out = Vec::new();
    let mut steps = 0;
    loop {
        steps += 1;
        if steps > STEPS_MAX {
            return Err(format!(
                "stuck after {STEPS_MAX} steps: {} connections open",
                shards.iter().map(|(_, e)| e.conns.len()).sum::<usize>()
            ));
        }
        // The peers act: one random action per step, and reading is always allowed.
        let i = rng.random_range(0..peers.len());
        let p = &mut peers[i];
        match p.id {
            None => p.id = Some(world.connect(addr).map_err(|e| e.to_string())?),
            Some(id) if !p.ended => {
                if rng.random_bool(0.1) {
                    world.peer_set_window(id, rng.random_range(1..=4096));
                } else if p.abort_after == Some(p.next_msg) {
                    world.peer_close(id);
                    p.ended = true;
                } else if let Some(m) = p.msgs.get(p.next_msg) {
                    world.peer_send(id, m).map_err(|e| e.to_string())?;
                    p.sent.extend_from_slice(m);
                    p.next_msg += 1;
                } else {
                    world.peer_shutdown(id);
                    p.ended = true;
                }
            }
            Some(_) => {}
        }
        for p in &mut peers {
            if let Some(id) = p.id
                && !(p.ended && p.abort_after.is_some())
            {
                world.peer_recv(id, &mut p.received);
            }
        }

        // Each shard takes its turn; the clock is shared, so a later shard may see its
        // completions late, as a busy core would.
        let wait = world.now_ns() + rng.random_range(0..2_000_000);
        for (d, echo) in &mut shards {
            d.run(Wait::Until(wait), &mut out)
                .map_err(|e| e.to_string())?;
            for c in out.drain(..) {
                echo.handle(d, c)?;
            }
            echo.rearm(d, u64::from(pool))?;
        }

        let all_done = peers.iter().all(|p| {
            p.ended
                && p.id.is_some_and(|id| {
                    world.peer_is_closed_by_server(id)
                        && (p.abort_after.is_some() || world.peer_unread(id) == 0)
                })
        });
        if all_done && shards.iter().all(|(_, e)| e.conns.is_empty()) {
            break;
        }
    }

    // Shut the server down and check it left nothing behind.
    let mut trace = DefaultHasher::new();
    let mut nobufs = 0;
    let (mut partial_sends, mut send_errors, mut ended_with_data) = (0, 0, 0);
    for (d, echo) in &mut shards {
        let socket = echo.listener;
        submit(d, TOKEN_CLOSE_LISTENER, Op::Close { socket })?;
        while !echo.listener_closed {
            steps += 1;
            if steps > STEPS_MAX {
                return Err("listener close never completed".into());
            }
            let wait = d.now_ns() + 1_000_000;
            d.run(Wait::Until(wait), &mut out)
                .map_err(|e| e.to_string())?;
            for c in out.drain(..) {
                echo.handle(d, c)?;
            }
        }
        d.leak_check()?;
        if d.open_sockets() != 0 {
            return Err(format!("{} sockets left open", d.open_sockets()));
        }
        echo.trace.finish().hash(&mut trace);
        nobufs += d.stats().buffer_exhaustions;
        partial_sends += echo.partial_sends;
        send_errors += echo.send_errors;
        ended_with_data += echo.ended_with_data;
    }
    for (i, p) in peers.iter().enumerate() {
        if p.abort_after.is_some() {
            if !p.sent.starts_with(&p.received) {
                return Err(format!("peer {i}: echo is not a prefix of what it sent"));
            }
        } else if p.received != p.sent {
            return Err(format!(
                "peer {i}: sent {} bytes, got back {} (or different bytes)",
                p.sent.len(),
                p.received.len()
            ));
        }
    }
    Ok(Outcome {
        trace: trace.finish(),
        bytes_echoed: peers.iter().map(|p| p.received.len() as u64).sum(),
        nobufs,
        partial_sends,
        send_errors,
        ended_with_data,
        spread_over_shards: u64::from(shards.iter().filter(|(_, e)| e.accepted > 0).count() > 1),
        aborted_peers: peers.iter().filter(|p| p.abort_after.is_some()).count() as u64,
    })
}

/// Run one seed, turning panics and errors into a failure that names the seed.
fn check_seed(seed: u64) -> Outcome {
    let result = std::panic::catch_unwind(|| run_schedule(seed));
    match result {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => panic!("schedule failed: {e}\nreproduce with SEED={seed}"),
        Err(p) => {
            eprintln!("schedule panicked; reproduce with SEED={seed}");
            std::panic::resume_unwind(p)
        }
    }
}

#[test]
fn random_connect_send_close_schedules_echo_every_byte_once_in_order() {
    if let Some(seed) = std::env::var("SEED").ok().and_then(|s| s.parse().ok()) {
        check_seed(seed);
        return;
    }
    let count = std::env::var("SIM_SCHEDULES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SCHEDULES_DEFAULT);
    let mut total = Outcome::default();
    for seed in 0..count {
        let o = check_seed(seed);
        total.bytes_echoed += o.bytes_echoed;
        total.nobufs += o.nobufs;
        total.partial_sends += o.partial_sends;
        total.send_errors += o.send_errors;
        total.aborted_peers += o.aborted_peers;
        total.ended_with_data += o.ended_with_data;
        total.spread_over_shards += o.spread_over_shards;
    }
    eprintln!(
        "{count} schedules: {} bytes echoed, {} NOBUFS, {} receives ended with data, {} partial sends, {} failed sends, {} aborted peers, {} spread over shards",
        total.bytes_echoed,
        total.nobufs,
        total.ended_with_data,
        total.partial_sends,
        total.send_errors,
        total.aborted_peers,
        total.spread_over_shards
    );
    if count >= 1000 {
        assert!(total.bytes_echoed > 0 && total.nobufs > 0 && total.partial_sends > 0);
        assert!(
            total.ended_with_data > 0,
            "no receive was re-armed after ending with data"
        );
        assert!(total.send_errors > 0 && total.aborted_peers > 0 && total.spread_over_shards > 0);
    }
}

#[test]
fn same_seed_gives_the_same_completion_trace() {
    for seed in [3, 77, 1234] {
        let a = check_seed(seed).trace;
        let b = check_seed(seed).trace;
        assert_eq!(a, b, "seed {seed} is not deterministic");
    }
    assert_ne!(
        check_seed(3).trace,
        check_seed(4).trace,
        "different seeds gave one trace"
    );
}
