//! The io_uring driver against real loopback sockets and a real file system.
//!
//! Every wait is bounded by a generous deadline (the machine is slow and shared); nothing asserts
//! on timing. Tests hold one lock so the descriptor-count check sees only its own descriptors.

mod procs;
use procs::raise_nofile;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use engine::buf::{AlignedBuf, SendBuf};
use engine::driver::uring::{RingMode, UringDriver};
use engine::driver::{
    Completion, CompletionKind, Driver, DriverConfig, Errno, FileOptions, Op, RecvChunk, SocketId,
    TcpOptions, Wait,
};

/// Longest any single test waits for an expected completion.
const PATIENCE: Duration = Duration::from_secs(30);

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn config(recv_buffers: u16, recv_buffer_bytes: u32) -> DriverConfig {
    DriverConfig {
        ring_entries: 64,
        recv_buffers,
        recv_buffer_bytes,
        defer_taskrun: true,
        max_sockets: 64,
        max_files: 8,
    }
}

/// A driver plus a queue of completions not yet looked at.
struct H {
    d: UringDriver,
    q: VecDeque<Completion>,
    out: Vec<Completion>,
}

impl H {
    fn new(cfg: DriverConfig) -> H {
        H {
            d: UringDriver::new(cfg).expect("io_uring driver"),
            q: VecDeque::new(),
            out: Vec::new(),
        }
    }

    fn pump(&mut self) {
        let deadline = self.d.now_ns() + 50_000_000;
        self.d
            .run(Wait::Until(deadline), &mut self.out)
            .expect("run");
        self.q.extend(self.out.drain(..));
    }

    /// The next completion with `token` (others stay queued).
    fn next_for(&mut self, token: u64) -> Completion {
        let start = Instant::now();
        loop {
            if let Some(i) = self.q.iter().position(|c| c.token == token) {
                return self.q.remove(i).unwrap_or_else(|| unreachable!());
            }
            assert!(
                start.elapsed() < PATIENCE,
                "no completion for token {token}"
            );
            self.pump();
        }
    }

    fn listen(&mut self, opts: &TcpOptions) -> (SocketId, SocketAddr) {
        self.d
            .listen_tcp(
                "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
                opts,
            )
            .expect("listen")
    }

    /// Accept exactly one connection on `listener` with token `tok`.
    fn accept_one(&mut self, tok: u64) -> (SocketId, SocketAddr) {
        match self.next_for(tok).kind {
            CompletionKind::Accept {
                result: Ok(c),
                more,
            } => {
                assert!(more, "multishot accept stays armed");
                c
            }
            other => panic!("expected accept, got {other:?}"),
        }
    }

    /// Receive on `sock` (token `tok`, already armed) until EOF, re-arming whenever the multishot
    /// ends early; `hold` buffers are kept unreleased at first, to force exhaustion.
    fn recv_to_eof(&mut self, sock: SocketId, tok: u64, mut hold: usize) -> (Vec<u8>, u32) {
        let mut data = Vec::new();
        let mut held = Vec::new();
        let mut nobufs = 0u32;
        loop {
            match self.next_for(tok).kind {
                CompletionKind::Recv {
                    socket,
                    result,
                    more,
                } => {
                    assert_eq!(socket, sock);
                    match result {
                        Ok(RecvChunk { buf: None, len: 0 }) => {
                            assert!(!more, "EOF ends the multishot receive");
                            break;
                        }
                        Ok(RecvChunk { buf: Some(b), len }) => {
                            data.extend_from_slice(self.d.recv_buf(b, len));
                            if hold > 0 {
                                hold -= 1;
                                held.push(b);
                            } else {
                                self.d.release_buf(b);
                            }
                        }
                        Ok(other) => panic!("odd chunk {other:?}"),
                        Err(e) => {
                            assert_eq!(e, Errno::NOBUFS, "only exhaustion may end it early");
                            assert!(!more);
                            nobufs += 1;
                            hold = 0;
                            for b in held.drain(..) {
                                self.d.release_buf(b);
                            }
                        }
                    }
                    if !more {
                        self.d
                            .submit(tok, Op::RecvMulti { socket: sock })
                            .expect("re-arm");
                    }
                }
                other => panic!("expected recv, got {other:?}"),
            }
        }
        for b in held {
            self.d.release_buf(b);
        }
        (data, nobufs)
    }

    /// Send all of `buf`, re-submitting after partial sends; returns how many sends it took.
    fn send_all(&mut self, sock: SocketId, tok: u64, mut buf: SendBuf) -> usize {
        let mut sends = 0;
        while !buf.is_empty() {
            self.d
                .submit(tok, Op::Send { socket: sock, buf })
                .expect("send");
            sends += 1;
            match self.next_for(tok).kind {
                CompletionKind::Send {
                    socket,
                    result: Ok(n),
                    buf: b,
                } => {
                    assert_eq!(socket, sock);
                    assert!(n > 0, "a blocking-socket send makes progress");
                    buf = b;
                    buf.advance(n);
                }
                other => panic!("expected send, got {other:?}"),
            }
        }
        sends
    }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(seed as u32) as u8
                ^ (i >> 8) as u8
        })
        .collect()
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

#[test]
fn multishot_accept_takes_several_connections() {
    let _g = serial();
    let mut h = H::new(config(64, 4096));
    let (l, addr) = h.listen(&TcpOptions::default());
    h.d.submit(1, Op::AcceptMulti { listener: l })
        .expect("accept");
    let (tx, rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let client = thread::spawn(move || {
        let conns: Vec<TcpStream> = (0..5)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        for c in &conns {
            tx.send(c.local_addr().expect("local addr")).expect("chan");
        }
        let _ = done_rx.recv_timeout(PATIENCE);
    });
    let mut peers = Vec::new();
    let mut socks = Vec::new();
    for _ in 0..5 {
        let (s, peer) = h.accept_one(1);
        socks.push(s);
        peers.push(peer);
    }
    let mut expected: Vec<SocketAddr> = (0..5).map(|_| rx.recv().expect("addr")).collect();
    expected.sort();
    peers.sort();
    assert_eq!(peers, expected, "peer addresses are the clients' addresses");
    socks.sort();
    socks.dedup();
    assert_eq!(socks.len(), 5, "distinct socket ids");
    done_tx.send(()).expect("chan");
    client.join().expect("client");
    h.d.submit(2, Op::Close { socket: l }).expect("close");
    match h.next_for(1).kind {
        CompletionKind::Accept {
            result: Err(e),
            more: false,
        } => assert_eq!(e, Errno::CANCELED),
        other => panic!("expected cancelled accept, got {other:?}"),
    }
    assert!(matches!(
        h.next_for(2).kind,
        CompletionKind::Close { result: Ok(()) }
    ));
}

fn recv_in_order(cfg: DriverConfig) -> H {
    let mut h = H::new(cfg);
    let (l, addr) = h.listen(&TcpOptions::default());
    h.d.submit(1, Op::AcceptMulti { listener: l })
        .expect("accept");
    let data = pattern(300_000, 7);
    let sent = data.clone();
    let client = thread::spawn(move || {
        let mut c = TcpStream::connect(addr).expect("connect");
        for chunk in sent.chunks(7919) {
            c.write_all(chunk).expect("write");
        }
    });
    let (s, _) = h.accept_one(1);
    h.d.submit(2, Op::RecvMulti { socket: s }).expect("recv");
    let (got, _) = h.recv_to_eof(s, 2, 0);
    client.join().expect("client");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes arrive exactly once and in order");
    let st = h.d.stats();
    assert_eq!(st.buffers_lent, 0, "every buffer went back");
    assert!(st.bytes_in >= data.len() as u64);
    h
}

#[test]
fn multishot_recv_delivers_data_in_order_then_eof() {
    let _g = serial();
    let h = recv_in_order(config(64, 4096));
    assert_eq!(
        h.d.mode(),
        RingMode::DeferTaskrun,
        "this kernel supports DEFER_TASKRUN"
    );
}

#[test]
fn coop_taskrun_ring_receives_in_order_too() {
    let _g = serial();
    let h = recv_in_order(DriverConfig {
        defer_taskrun: false,
        ..config(64, 4096)
    });
    assert_eq!(h.d.mode(), RingMode::CoopTaskrun);
}

#[test]
fn poll_mode_reaps_completions_without_blocking() {
    let _g = serial();
    let mut h = H::new(config(16, 4096));
    let deadline = h.d.now_ns() + 5_000_000;
    h.d.submit(
        1,
        Op::Timeout {
            deadline_ns: deadline,
        },
    )
    .expect("timeout");
    let start = Instant::now();
    let mut out = Vec::new();
    while out.is_empty() {
        assert!(
            start.elapsed() < PATIENCE,
            "Wait::Poll never reaped the timeout"
        );
        h.d.run(Wait::Poll, &mut out).expect("run");
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(out.len(), 1);
    assert!(matches!(
        out[0].kind,
        CompletionKind::Timeout { result: Ok(()) }
    ));
    let st = h.d.stats();
    assert_eq!((st.submissions, st.completions), (1, 1));
}

#[test]
fn cancel_by_token_ends_a_multishot_recv() {
    let _g = serial();
    let mut h = H::new(config(16, 4096));
    let (l, addr) = h.listen(&TcpOptions::default());
    h.d.submit(1, Op::AcceptMulti { listener: l })
        .expect("accept");
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let client = thread::spawn(move || {
        let mut c = TcpStream::connect(addr).expect("connect");
        c.write_all(b"hello").expect("write");
        let _ = done_rx.recv_timeout(PATIENCE);
    });
    let (s, _) = h.accept_one(1);
    h.d.submit(2, Op::RecvMulti { socket: s }).expect("recv");
    match h.next_for(2).kind {
        CompletionKind::Recv {
            result: Ok(RecvChunk { buf: Some(b), len }),
            more: true,
            ..
        } => {
            assert_eq!(h.d.recv_buf(b, len), b"hello");
            h.d.release_buf(b);
        }
        other => panic!("expected data, got {other:?}"),
    }
    h.d.submit(3, Op::Cancel { target: 2 }).expect("cancel");
    assert!(matches!(
        h.next_for(2).kind,
        CompletionKind::Recv {
            result: Err(Errno::CANCELED),
            more: false,
            ..
        }
    ));
    match h.next_for(3).kind {
        CompletionKind::Cancel { result } => assert_eq!(result, Ok(1)),
        other => panic!("expected cancel, got {other:?}"),
    }
    done_tx.send(()).expect("chan");
    client.join().expect("client");
}

#[test]
fn buffer_ring_exhaustion_then_refill_loses_nothing() {
    let _g = serial();
    let mut h = H::new(config(4, 64));
    let (l, addr) = h.listen(&TcpOptions::default());
    h.d.submit(1, Op::AcceptMulti { listener: l })
        .expect("accept");
    let data = pattern(64 * 1024, 3);
    let sent = data.clone();
    let client = thread::spawn(move || {
        let mut c = TcpStream::connect(addr).expect("connect");
        c.write_all(&sent).expect("write");
    });
    let (s, _) = h.accept_one(1);
    h.d.submit(2, Op::RecvMulti { socket: s }).expect("recv");
    // Hold all four buffers: the fifth chunk finds the ring empty.
    let (got, nobufs) = h.recv_to_eof(s, 2, 4);
    client.join().expect("client");
    assert!(nobufs >= 1, "holding every buffer must exhaust the ring");
    assert!(h.d.stats().buffer_exhaustions >= u64::from(nobufs));
    assert_eq!(got.len(), data.len());
    assert!(
        got == data,
        "every byte exactly once, in order, across re-arms"
    );
    assert_eq!(h.d.stats().buffers_lent, 0);
}

fn set_rcvbuf(s: &TcpStream, n: i32) {
    // SAFETY: setsockopt on a live socket with a correctly sized int.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&n as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

#[test]
fn partial_sends_are_resubmitted_until_all_bytes_arrive() {
    let _g = serial();
    let mut h = H::new(config(64, 4096));
    let opts = TcpOptions {
        send_buffer_bytes: Some(4096),
        ..TcpOptions::default()
    };
    let (l, addr) = h.listen(&opts);
    h.d.submit(1, Op::AcceptMulti { listener: l })
        .expect("accept");
    let total = 4 * 1024 * 1024;
    let client = thread::spawn(move || {
        let mut c = TcpStream::connect(addr).expect("connect");
        set_rcvbuf(&c, 16 * 1024);
        c.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let mut got = Vec::with_capacity(total);
        let mut chunk = vec![0u8; 8192];
        let mut reads = 0u32;
        while got.len() < total {
            let n = c.read(&mut chunk).expect("read");
            assert!(n > 0, "early EOF");
            got.extend_from_slice(&chunk[..n]);
            reads += 1;
            if reads < 64 {
                thread::sleep(Duration::from_millis(2));
            }
        }
        got
    });
    let (s, _) = h.accept_one(1);
    let body = pattern(total, 11);
    let mut buf = SendBuf::new();
    buf.push_shared(Bytes::from(body.clone()));
    let sends = h.send_all(s, 2, buf);
    let got = client.join().expect("client");
    assert!(sends > 1, "4 MiB cannot fit a 4 KiB send buffer in one go");
    assert_eq!(got.len(), body.len());
    assert!(got == body, "the client receives exactly the bytes sent");
    assert!(h.d.stats().bytes_out >= total as u64);
}

#[test]
fn gather_send_mixes_arena_and_shared_segments() {
    let _g = serial();
    let mut h = H::new(config(64, 4096));
    let (l, addr) = h.listen(&TcpOptions::default());
    h.d.submit(1, Op::AcceptMulti { listener: l })
        .expect("accept");
    let client = thread::spawn(move || {
        let mut c = TcpStream::connect(addr).expect("connect");
        let mut v = Vec::new();
        c.read_to_end(&mut v).expect("read");
        v
    });
    let (s, _) = h.accept_one(1);
    let shared = Bytes::from(pattern(100_000, 5));
    let mut buf = SendBuf::new();
    buf.push_bytes(b"HEADER:");
    buf.push_shared(shared.clone());
    buf.write_with(|v| v.extend_from_slice(b"|seq=42|"));
    buf.push_shared(shared.slice(10..20));
    buf.push_bytes(b"END");
    let mut expected = Vec::new();
    buf.copy_unsent_into(&mut expected);
    h.send_all(s, 2, buf);
    h.d.submit(3, Op::Close { socket: s }).expect("close");
    assert!(matches!(
        h.next_for(3).kind,
        CompletionKind::Close { result: Ok(()) }
    ));
    let got = client.join().expect("client");
    assert_eq!(got, expected);
}

/// Runs one blocking wait of `wait_ms` and returns what it delivered and how long it took.
fn one_wait(h: &mut H, wait_ms: u64) -> (Vec<Completion>, Duration) {
    let start = Instant::now();
    let deadline = h.d.now_ns() + wait_ms * 1_000_000;
    let mut out = Vec::new();
    h.d.run(Wait::Until(deadline), &mut out).expect("run");
    (out, start.elapsed())
}

#[test]
fn lazy_send_completions_wait_for_other_work_and_come_first() {
    let _g = serial();
    let mut h = H::new(config(64, 4096));
    let (l, addr) = h.listen(&TcpOptions::default());
    h.d.submit(1, Op::AcceptMulti { listener: l })
        .expect("accept");
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let client = thread::spawn(move || {
        let mut c = TcpStream::connect(addr).expect("connect");
        c.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let mut got = [0u8; 10];
        c.read_exact(&mut got[..5]).expect("first reply");
        // The server's next wait must see only its lazy send until this arrives.
        go_rx.recv().expect("go");
        thread::sleep(Duration::from_millis(100));
        c.write_all(b"ping").expect("write");
        c.read_exact(&mut got[5..]).expect("second reply");
        got
    });
    let (s, _) = h.accept_one(1);
    h.d.submit(2, Op::RecvMulti { socket: s }).expect("recv");

    // 1. Only a lazy send completes: the wait runs to its deadline, then hands the send over.
    let mut buf = SendBuf::new();
    buf.push_bytes(b"hello");
    h.d.submit(3, Op::SendLazy { socket: s, buf })
        .expect("send");
    let before = h.d.stats().lazy_rewaits;
    let (out, _) = one_wait(&mut h, 300);
    assert!(
        h.d.stats().lazy_rewaits > before,
        "the wait resumed after the lazy send instead of returning"
    );
    let sends: Vec<_> = out.iter().filter(|c| c.token == 3).collect();
    assert_eq!(
        sends.len(),
        1,
        "the held send is delivered when the wait ends"
    );
    assert!(matches!(
        &sends[0].kind,
        CompletionKind::Send { result: Ok(5), .. }
    ));

    // 2. A lazy send, then data from the client: one wait returns both, the send first.
    let mut buf = SendBuf::new();
    buf.push_bytes(b"world");
    h.d.submit(4, Op::SendLazy { socket: s, buf })
        .expect("send");
    go_tx.send(()).expect("go");
    let (out, took) = one_wait(&mut h, 20_000);
    assert!(took < Duration::from_secs(15), "the recv ended the wait");
    let pos = |t: u64| out.iter().position(|c| c.token == t);
    let (Some(send), Some(recv)) = (pos(4), pos(2)) else {
        panic!("expected the held send and the recv in one wait, got {out:?}");
    };
    assert!(
        send < recv,
        "a held completion comes ahead of what woke the wait"
    );
    if let CompletionKind::Recv {
        result: Ok(RecvChunk { buf: Some(b), .. }),
        ..
    } = out[recv].kind
    {
        h.d.release_buf(b);
    }
    let got = client.join().expect("client");
    assert_eq!(&got, b"helloworld");

    // 3. A remote wake-up ends a wait that holds a lazy send (it carries no completion of its
    //    own, so it must not be mistaken for "nothing new").
    let mut buf = SendBuf::new();
    buf.push_bytes(b"?");
    h.d.submit(6, Op::SendLazy { socket: s, buf })
        .expect("send");
    let w = h.d.remote_waker();
    let waker = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        w.wake();
    });
    let (out, took) = one_wait(&mut h, 60_000);
    waker.join().expect("waker thread");
    assert!(took < PATIENCE, "the wake-up ended the wait ({took:?})");
    assert!(
        out.iter().any(|c| c.token == 6),
        "the held send came back: {out:?}"
    );

    // 4. A plain send is never held: the wait returns as soon as it completes.
    let mut buf = SendBuf::new();
    buf.push_bytes(b"!");
    h.d.submit(5, Op::Send { socket: s, buf }).expect("send");
    let before = h.d.stats().lazy_rewaits;
    let (out, took) = one_wait(&mut h, 20_000);
    assert!(out.iter().any(|c| c.token == 5), "got {out:?}");
    assert!(took < Duration::from_secs(15));
    assert_eq!(h.d.stats().lazy_rewaits, before);
}

#[test]
fn timeouts_expire_and_cancel_reports_canceled() {
    let _g = serial();
    let mut h = H::new(config(64, 4096));
    let now = h.d.now_ns();
    h.d.submit(
        1,
        Op::Timeout {
            deadline_ns: now + 20_000_000,
        },
    )
    .expect("timeout");
    assert!(matches!(
        h.next_for(1).kind,
        CompletionKind::Timeout { result: Ok(()) }
    ));
    assert!(h.d.now_ns() >= now + 20_000_000, "not before its deadline");

    // Two far timeouts share token 5: one cancel takes both.
    let far = h.d.now_ns() + 3_600_000_000_000;
    h.d.submit(5, Op::Timeout { deadline_ns: far })
        .expect("timeout");
    h.d.submit(5, Op::Timeout { deadline_ns: far })
        .expect("timeout");
    h.pump();
    h.d.submit(6, Op::Cancel { target: 5 }).expect("cancel");
    for _ in 0..2 {
        match h.next_for(5).kind {
            CompletionKind::Timeout { result } => assert_eq!(result, Err(Errno::CANCELED)),
            other => panic!("expected timeout, got {other:?}"),
        }
    }
    match h.next_for(6).kind {
        CompletionKind::Cancel { result } => assert_eq!(result, Ok(2)),
        other => panic!("expected cancel, got {other:?}"),
    }
    h.d.submit(7, Op::Cancel { target: 999 }).expect("cancel");
    match h.next_for(7).kind {
        CompletionKind::Cancel { result } => assert_eq!(result, Err(Errno::NOENT)),
        other => panic!("expected cancel, got {other:?}"),
    }
    assert_eq!(h.d.in_flight(), 0);
}

#[test]
fn udp_recvmsg_multishot_and_sendto_round_trip() {
    let _g = serial();
    let mut h = H::new(config(16, 2048));
    let (u, addr) =
        h.d.bind_udp("127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()))
            .expect("bind");
    h.d.submit(1, Op::RecvFromMulti { socket: u })
        .expect("recv");
    let client = UdpSocket::bind("127.0.0.1:0").expect("client bind");
    client.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let client_addr = client.local_addr().expect("addr");
    for i in 0..20u32 {
        let msg = format!("ping-{i}-{}", "x".repeat(i as usize * 13));
        client.send_to(msg.as_bytes(), addr).expect("send");
        let (b, len, from) = match h.next_for(1).kind {
            CompletionKind::RecvFrom {
                socket,
                result: Ok(r),
                more,
            } => {
                assert_eq!(socket, u);
                assert!(more, "multishot recvmsg stays armed");
                r
            }
            other => panic!("expected datagram, got {other:?}"),
        };
        assert_eq!(from, client_addr, "source address");
        assert_eq!(h.d.recv_buf(b, len), msg.as_bytes(), "payload only");
        h.d.release_buf(b);
        let mut reply = SendBuf::new();
        reply.push_bytes(b"pong-");
        reply.push_shared(Bytes::from(i.to_string()));
        h.d.submit(
            2,
            Op::SendTo {
                socket: u,
                addr: from,
                buf: reply,
            },
        )
        .expect("sendto");
        match h.next_for(2).kind {
            CompletionKind::SendTo { result, .. } => {
                assert_eq!(result, Ok(5 + i.to_string().len()));
            }
            other => panic!("expected sendto, got {other:?}"),
        }
        let mut rb = [0u8; 64];
        let (n, src) = client.recv_from(&mut rb).expect("client recv");
        assert_eq!(src, addr);
        assert_eq!(&rb[..n], format!("pong-{i}").as_bytes());
    }
    h.d.submit(3, Op::Close { socket: u }).expect("close");
    assert!(matches!(
        h.next_for(1).kind,
        CompletionKind::RecvFrom {
            result: Err(Errno::CANCELED),
            more: false,
            ..
        }
    ));
    assert!(matches!(
        h.next_for(3).kind,
        CompletionKind::Close { result: Ok(()) }
    ));
}

#[test]
fn direct_write_fdatasync_and_read_back() {
    let _g = serial();
    let dir = std::env::temp_dir().join(format!("hearth-uring-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut h = H::new(config(16, 4096));
    let path = dir.join("direct.bin");
    let f = match h.d.open_file(
        &path,
        FileOptions {
            create: true,
            truncate: true,
            direct: true,
        },
    ) {
        Ok(f) => f,
        Err(e) => panic!(
            "O_DIRECT open of {} failed ({e}); the file system under the temp dir must support O_DIRECT",
            path.display()
        ),
    };
    let data = pattern(8192, 9);
    let mut wb = AlignedBuf::new(8192);
    wb.copy_from_slice(&data);
    h.d.submit(
        1,
        Op::WriteAt {
            file: f,
            offset: 4096,
            buf: wb,
            len: 8192,
        },
    )
    .expect("write");
    match h.next_for(1).kind {
        CompletionKind::WriteAt { result, .. } => {
            assert_eq!(
                result,
                Ok(8192),
                "O_DIRECT write (EINVAL means no O_DIRECT support)"
            )
        }
        other => panic!("expected write, got {other:?}"),
    }
    h.d.submit(2, Op::Fdatasync { file: f }).expect("sync");
    assert!(matches!(
        h.next_for(2).kind,
        CompletionKind::Fdatasync { result: Ok(()) }
    ));
    h.d.submit(
        3,
        Op::ReadAt {
            file: f,
            offset: 0,
            buf: AlignedBuf::new(16384),
            len: 16384,
        },
    )
    .expect("read");
    match h.next_for(3).kind {
        CompletionKind::ReadAt { result, buf } => {
            assert_eq!(result, Ok(12288), "short read at end of file");
            assert!(buf[..4096].iter().all(|&b| b == 0), "hole reads as zeros");
            assert!(buf[4096..12288] == data[..]);
        }
        other => panic!("expected read, got {other:?}"),
    }
    h.d.submit(4, Op::CloseFile { file: f }).expect("close");
    assert!(matches!(
        h.next_for(4).kind,
        CompletionKind::CloseFile { result: Ok(()) }
    ));
    assert!(
        h.d.submit(5, Op::Fdatasync { file: f }).is_err(),
        "closed file is unknown"
    );
    drop(h);
    let on_disk = std::fs::read(&path).expect("read back with std");
    assert_eq!(&on_disk[4096..], &data[..]);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn close_cancels_armed_recv_and_accept_without_leaking_fds() {
    let _g = serial();
    let mut h = H::new(config(16, 4096));
    let before = fd_count();
    let (l, addr) = h.listen(&TcpOptions::default());
    h.d.submit(1, Op::AcceptMulti { listener: l })
        .expect("accept");
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let client = thread::spawn(move || {
        let c = TcpStream::connect(addr).expect("connect");
        let _ = done_rx.recv_timeout(PATIENCE);
        drop(c);
    });
    let (s, _) = h.accept_one(1);
    h.d.submit(2, Op::RecvMulti { socket: s }).expect("recv");
    h.pump();
    h.d.submit(3, Op::Close { socket: s }).expect("close");
    match h.next_for(2).kind {
        CompletionKind::Recv {
            result: Err(e),
            more: false,
            ..
        } => assert_eq!(e, Errno::CANCELED),
        other => panic!("expected cancelled recv, got {other:?}"),
    }
    assert!(matches!(
        h.next_for(3).kind,
        CompletionKind::Close { result: Ok(()) }
    ));
    assert!(
        h.d.submit(4, Op::RecvMulti { socket: s }).is_err(),
        "a closed socket is unknown"
    );
    h.d.submit(5, Op::Close { socket: l })
        .expect("close listener");
    assert!(matches!(
        h.next_for(1).kind,
        CompletionKind::Accept {
            result: Err(Errno::CANCELED),
            more: false
        }
    ));
    assert!(matches!(
        h.next_for(5).kind,
        CompletionKind::Close { result: Ok(()) }
    ));
    done_tx.send(()).expect("chan");
    client.join().expect("client");
    assert_eq!(h.d.open_sockets(), 0);
    assert_eq!(h.d.in_flight(), 0);
    assert_eq!(fd_count(), before, "both descriptors closed by the ring");
}

#[test]
fn remote_waker_interrupts_a_blocked_run() {
    let _g = serial();
    let mut h = H::new(config(16, 4096));
    let waker = h.d.remote_waker();
    let mut out = Vec::new();

    // Woken while blocked, from another thread.
    let w = waker.clone();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        w.wake();
    });
    let start = Instant::now();
    let deadline = h.d.now_ns() + 600_000_000_000;
    h.d.run(Wait::Until(deadline), &mut out).expect("run");
    t.join().expect("waker thread");
    assert!(start.elapsed() < PATIENCE, "the wake-up ended the wait");
    assert!(out.is_empty(), "internal wake-ups are not completions");

    // Woken before blocking: the next blocking run returns at once.
    waker.wake();
    let start = Instant::now();
    let deadline = h.d.now_ns() + 600_000_000_000;
    h.d.run(Wait::Until(deadline), &mut out).expect("run");
    assert!(start.elapsed() < PATIENCE, "a pending wake-up is not lost");

    // And the waker keeps working after several uses.
    let w = waker.clone();
    let t = thread::spawn(move || {
        for _ in 0..3 {
            w.wake();
        }
    });
    t.join().expect("waker thread");
    let deadline = h.d.now_ns() + 600_000_000_000;
    let start = Instant::now();
    h.d.run(Wait::Until(deadline), &mut out).expect("run");
    assert!(start.elapsed() < PATIENCE);
    assert!(out.is_empty());
    assert!(h.d.stats().loop_iterations >= 3);
}

#[test]
fn dropping_the_driver_with_operations_in_flight_is_clean() {
    let _g = serial();
    let before = fd_count();
    {
        let mut h = H::new(config(16, 4096));
        let (l, _) = h.listen(&TcpOptions::default());
        h.d.submit(1, Op::AcceptMulti { listener: l })
            .expect("accept");
        let far = h.d.now_ns() + 3_600_000_000_000;
        h.d.submit(2, Op::Timeout { deadline_ns: far })
            .expect("timeout");
        h.pump();
        assert_eq!(h.d.in_flight(), 2);
    }
    assert_eq!(
        fd_count(),
        before,
        "ring, eventfd and listener closed on drop"
    );
}

#[test]
fn close_with_a_send_in_flight_returns_the_buffer_and_closes_once() {
    let _g = serial();
    let mut h = H::new(config(16, 4096));
    let before = fd_count();
    let opts = TcpOptions {
        send_buffer_bytes: Some(4096),
        ..TcpOptions::default()
    };
    let (l, addr) = h.listen(&opts);
    h.d.submit(1, Op::AcceptMulti { listener: l })
        .expect("accept");
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let client = thread::spawn(move || {
        // Connect and never read: the server's send stalls with most bytes unsent.
        let c = TcpStream::connect(addr).expect("connect");
        set_rcvbuf(&c, 4096);
        let _ = done_rx.recv_timeout(PATIENCE);
    });
    let (s, _) = h.accept_one(1);
    let mut buf = SendBuf::new();
    buf.push_shared(Bytes::from(pattern(8 * 1024 * 1024, 1)));
    h.d.submit(2, Op::Send { socket: s, buf }).expect("send");
    h.pump();
    h.d.submit(3, Op::Close { socket: s }).expect("close");
    match h.next_for(2).kind {
        CompletionKind::Send { result, buf, .. } => {
            assert_eq!(
                buf.remaining(),
                8 * 1024 * 1024,
                "the buffer comes back untouched"
            );
            if let Ok(n) = result {
                assert!(n < 8 * 1024 * 1024, "a stalled send cannot have finished");
            }
        }
        other => panic!("expected send, got {other:?}"),
    }
    assert!(matches!(
        h.next_for(3).kind,
        CompletionKind::Close { result: Ok(()) }
    ));
    h.d.submit(4, Op::Close { socket: l })
        .expect("close listener");
    let _ = h.next_for(1);
    let _ = h.next_for(4);
    done_tx.send(()).expect("chan");
    client.join().expect("client");
    assert_eq!(h.d.in_flight(), 0);
    assert_eq!(fd_count(), before);
}

#[test]
fn socket_table_is_bounded() {
    let _g = serial();
    let mut h = H::new(DriverConfig {
        max_sockets: 2,
        ..config(16, 4096)
    });
    let opts = TcpOptions::default();
    let _ = h.listen(&opts);
    let _ = h.listen(&opts);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!());
    assert!(matches!(
        h.d.listen_tcp(any, &opts),
        Err(engine::driver::DriverError::TableFull(_))
    ));
    assert!(h.d.bind_udp(any).is_err());
}

#[test]
fn blocking_run_returns_at_its_deadline_and_released_buffers_read_empty() {
    let _g = serial();
    let mut h = H::new(config(16, 4096));
    let mut out = Vec::new();
    let deadline = h.d.now_ns() + 20_000_000;
    h.d.run(Wait::Until(deadline), &mut out).expect("run");
    assert!(out.is_empty());
    assert!(
        h.d.now_ns() >= deadline,
        "returned at (not before) the deadline"
    );

    let (u, addr) = h.d.bind_udp(deadline_addr()).expect("bind");
    h.d.submit(1, Op::RecvFromMulti { socket: u })
        .expect("recv");
    let client = UdpSocket::bind("127.0.0.1:0").expect("client");
    client.send_to(b"abc", addr).expect("send");
    let (b, len) = match h.next_for(1).kind {
        CompletionKind::RecvFrom {
            result: Ok((b, len, _)),
            ..
        } => (b, len),
        other => panic!("expected datagram, got {other:?}"),
    };
    assert_eq!(h.d.recv_buf(b, len), b"abc");
    assert_eq!(h.d.stats().buffers_lent, 1);
    h.d.release_buf(b);
    h.d.release_buf(b);
    assert_eq!(h.d.stats().buffers_lent, 0, "double release is ignored");
    assert!(
        h.d.recv_buf(b, len).is_empty(),
        "a released buffer is not readable"
    );
}

fn deadline_addr() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!())
}

/// Accept `n` connections on `listener` (token `tok`), re-arming the multishot accept whenever
/// the kernel ends it (a small completion queue can).
fn accept_n(h: &mut H, listener: SocketId, tok: u64, n: usize) -> Vec<SocketId> {
    let start = Instant::now();
    let mut socks = Vec::with_capacity(n);
    while socks.len() < n {
        assert!(
            start.elapsed() < PATIENCE,
            "accepted {} of {n}",
            socks.len()
        );
        h.pump();
        let mut rest = VecDeque::new();
        for c in h.q.drain(..) {
            match c.kind {
                CompletionKind::Accept { result, more } if c.token == tok => {
                    if let Ok((s, _)) = result {
                        socks.push(s);
                    }
                    if !more {
                        h.d.submit(tok, Op::AcceptMulti { listener })
                            .expect("re-arm accept");
                    }
                }
                _ => rest.push_back(c),
            }
        }
        h.q = rest;
    }
    socks
}

#[test]
fn cq_overflow_ends_multishot_recvs_with_data_and_rearming_loses_nothing() {
    const CONNS: usize = 32;
    const BYTES: usize = 192 * 1024;
    let _g = serial();
    // An 8-entry completion queue: one pass of task work over 32 readable sockets posts more
    // CQEs than fit, so the kernel ends multishot receives on a data CQE without F_MORE.
    let mut h = H::new(DriverConfig {
        ring_entries: 4,
        recv_buffers: 512,
        recv_buffer_bytes: 4096,
        defer_taskrun: true,
        max_sockets: 64,
        max_files: 1,
    });
    let (l, addr) = h.listen(&TcpOptions::default());
    h.d.submit(1, Op::AcceptMulti { listener: l })
        .expect("accept");
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let client = thread::spawn(move || {
        let conns: Vec<TcpStream> = (0..CONNS)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        let _ = go_rx.recv_timeout(PATIENCE);
        let writers: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, mut c)| {
                thread::spawn(move || {
                    c.write_all(&pattern(BYTES, i as u8)).expect("write");
                    // The FIN follows the data: the server reads everything, then EOF.
                    c.shutdown(std::net::Shutdown::Write).expect("shutdown");
                })
            })
            .collect();
        for w in writers {
            w.join().expect("writer");
        }
    });
    let socks = accept_n(&mut h, l, 1, CONNS);
    let index_of = |s: SocketId| socks.iter().position(|&x| x == s);
    for (i, &s) in socks.iter().enumerate() {
        h.d.submit(100 + i as u64, Op::RecvMulti { socket: s })
            .expect("recv");
    }
    h.pump();
    go_tx.send(()).expect("chan");
    // Let the data pile up in the sockets without entering the ring, so that the next entry
    // runs every receive at once.
    thread::sleep(Duration::from_millis(300));
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); CONNS];
    let mut eof = [false; CONNS];
    let mut ended_with_data = 0u32;
    let start = Instant::now();
    while !eof.iter().all(|&e| e) {
        assert!(
            start.elapsed() < PATIENCE,
            "stalled: {} of {CONNS} connections at EOF (ended with data {ended_with_data} times)",
            eof.iter().filter(|&&e| e).count()
        );
        h.pump();
        for c in std::mem::take(&mut h.q) {
            let CompletionKind::Recv {
                socket,
                result,
                more,
            } = c.kind
            else {
                continue;
            };
            let i = index_of(socket).expect("known socket");
            assert_eq!(c.token, 100 + i as u64);
            match result {
                Ok(RecvChunk { buf: Some(b), len }) => {
                    got[i].extend_from_slice(h.d.recv_buf(b, len));
                    h.d.release_buf(b);
                    if !more {
                        ended_with_data += 1;
                    }
                }
                Ok(RecvChunk { buf: None, .. }) => {
                    assert!(!more);
                    eof[i] = true;
                }
                Err(e) => {
                    assert_eq!(e, Errno::NOBUFS, "only exhaustion may end it with an error");
                    assert!(!more);
                }
            }
            if !more && !eof[i] {
                // What the shard does: any end short of EOF is re-armed.
                h.d.submit(100 + i as u64, Op::RecvMulti { socket })
                    .expect("re-arm");
            }
        }
    }
    client.join().expect("client");
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.len(), BYTES, "connection {i}: every byte arrives");
        assert!(*g == pattern(BYTES, i as u8), "connection {i}: in order");
    }
    assert!(
        ended_with_data > 0,
        "the overflowing completion queue must have ended some receive on a data CQE"
    );
    assert_eq!(h.d.stats().buffers_lent, 0);
    eprintln!("multishot receives ended with data: {ended_with_data}");
}

#[test]
fn closing_thousands_of_connections_with_armed_receives_accounts_for_every_token() {
    let _g = serial();
    // Server and client ends both live in this process: two descriptors per connection.
    let limit = raise_nofile(20_000);
    let conns = 3000.min((limit as usize).saturating_sub(200) / 2);
    assert!(
        conns >= 500,
        "open-file limit {limit} is too low for this test"
    );
    let mut h = H::new(DriverConfig {
        ring_entries: 256,
        recv_buffers: 256,
        recv_buffer_bytes: 512,
        defer_taskrun: true,
        max_sockets: (conns + 16) as u32,
        max_files: 1,
    });
    let before = fd_count();
    let opts = TcpOptions {
        backlog: 4096,
        ..TcpOptions::default()
    };
    let (l, addr) = h.listen(&opts);
    h.d.submit(1, Op::AcceptMulti { listener: l })
        .expect("accept");
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let client = thread::spawn(move || {
        let mut cs: Vec<TcpStream> = (0..conns)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        // Every third connection has input the server has not consumed when it closes.
        for c in cs.iter_mut().step_by(3) {
            c.write_all(&pattern(2000, 9)).expect("write");
        }
        let _ = done_rx.recv_timeout(PATIENCE * 2);
        // The server closed every connection: each reads EOF (or a reset, for unread input).
        for c in &mut cs {
            c.set_read_timeout(Some(PATIENCE)).expect("timeout");
            let mut sink = Vec::new();
            match c.read_to_end(&mut sink) {
                Ok(_) => {}
                Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
            }
        }
    });
    let socks = accept_n(&mut h, l, 1, conns);
    const RECV: u64 = 1 << 32;
    const CLOSE: u64 = 2 << 32;
    for (i, &s) in socks.iter().enumerate() {
        h.d.submit(RECV | i as u64, Op::RecvMulti { socket: s })
            .expect("recv");
    }
    h.pump();
    let start = Instant::now();
    for (i, &s) in socks.iter().enumerate() {
        h.d.submit(CLOSE | i as u64, Op::Close { socket: s })
            .expect("close");
    }
    let mut recv_final = vec![0u32; conns];
    let mut closed = vec![0u32; conns];
    let mut chunks = 0u64;
    loop {
        let done = recv_final.iter().all(|&n| n == 1) && closed.iter().all(|&n| n == 1);
        if done {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "after closing {conns}: {} receives and {} closes finished",
            recv_final.iter().filter(|&&n| n > 0).count(),
            closed.iter().filter(|&&n| n > 0).count()
        );
        h.pump();
        for c in std::mem::take(&mut h.q) {
            let i = (c.token & 0xffff_ffff) as usize;
            match c.kind {
                CompletionKind::Recv { result, more, .. } => {
                    assert_eq!(c.token & !0xffff_ffff, RECV);
                    match result {
                        Ok(RecvChunk { buf: Some(b), .. }) => {
                            chunks += 1;
                            h.d.release_buf(b);
                        }
                        Ok(RecvChunk { buf: None, .. }) => panic!("the peer did not close"),
                        // NOBUFS: the pool ran dry before the close (not re-armed here).
                        Err(e) => assert!(
                            e == Errno::CANCELED || e == Errno::NOBUFS,
                            "connection {i}: {e}"
                        ),
                    }
                    if !more {
                        recv_final[i] += 1;
                    }
                }
                CompletionKind::Close { result } => {
                    assert_eq!(c.token & !0xffff_ffff, CLOSE);
                    assert_eq!(result, Ok(()), "connection {i}");
                    closed[i] += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let elapsed = start.elapsed();
    assert!(
        recv_final.iter().all(|&n| n == 1) && closed.iter().all(|&n| n == 1),
        "exactly one final completion per token"
    );
    assert_eq!(
        h.d.in_flight(),
        1,
        "nothing left in the kernel but the accept"
    );
    assert_eq!(h.d.open_sockets(), 1, "only the listener is left");
    assert_eq!(h.d.stats().buffers_lent, 0);
    done_tx.send(()).expect("chan");
    client.join().expect("client");
    h.d.submit(2, Op::Close { socket: l })
        .expect("close listener");
    let _ = h.next_for(1);
    let _ = h.next_for(2);
    assert_eq!(fd_count(), before, "every descriptor closed exactly once");
    eprintln!("closed {conns} connections in {elapsed:?} ({chunks} data chunks on the way)");
}

#[test]
fn shutdown_write_lets_the_peer_read_the_reply_while_its_input_is_drained() {
    const BODY: usize = 4 * 1024 * 1024;
    let _g = serial();
    let mut h = H::new(config(64, 4096));
    let before = fd_count();
    let (l, addr) = h.listen(&TcpOptions::default());
    h.d.submit(1, Op::AcceptMulti { listener: l })
        .expect("accept");
    let client = thread::spawn(move || {
        // A client that sends a body far larger than the socket buffers before reading.
        let mut c = TcpStream::connect(addr).expect("connect");
        c.set_read_timeout(Some(PATIENCE)).expect("timeout");
        c.write_all(&pattern(BODY, 5)).expect("write");
        let mut reply = Vec::new();
        c.read_to_end(&mut reply).expect("read to EOF");
        reply
    });
    let (s, _) = h.accept_one(1);
    h.d.submit(2, Op::RecvMulti { socket: s }).expect("recv");
    let mut reply = SendBuf::new();
    reply.push_bytes(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n");
    assert_eq!(h.send_all(s, 3, reply), 1);
    h.d.submit(4, Op::ShutdownWrite { socket: s })
        .expect("shutdown");
    assert!(matches!(
        h.next_for(4).kind,
        CompletionKind::ShutdownWrite { result: Ok(()), .. }
    ));
    // Sending after the shutdown fails.
    let mut late = SendBuf::new();
    late.push_bytes(b"late");
    h.d.submit(
        5,
        Op::Send {
            socket: s,
            buf: late,
        },
    )
    .expect("send");
    match h.next_for(5).kind {
        CompletionKind::Send { result, .. } => assert_eq!(result, Err(Errno::PIPE)),
        other => panic!("expected send, got {other:?}"),
    }
    // The receive side keeps working: the whole body, then EOF once the client closes.
    let (got, _) = h.recv_to_eof(s, 2, 0);
    let reply = client.join().expect("client");
    assert_eq!(
        reply,
        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n"
    );
    assert_eq!(got.len(), BODY);
    h.d.submit(6, Op::Close { socket: s }).expect("close");
    assert!(matches!(
        h.next_for(6).kind,
        CompletionKind::Close { result: Ok(()) }
    ));
    h.d.submit(7, Op::Close { socket: l })
        .expect("close listener");
    let _ = h.next_for(1);
    let _ = h.next_for(7);
    assert_eq!(h.d.in_flight(), 0);
    assert_eq!(fd_count(), before);
}
