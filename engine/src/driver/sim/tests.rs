//! Behaviour of the simulated driver against the io_uring semantics it mirrors.

use super::*;
use crate::buf::AlignedBuf;

fn small(recv_buffers: u16, recv_buffer_bytes: u32) -> DriverConfig {
    DriverConfig {
        recv_buffers,
        recv_buffer_bytes,
        ..DriverConfig::default()
    }
}

/// Run until virtual time `until_ns`, collecting every completion on the way.
fn drive(d: &mut SimDriver, until_ns: u64) -> Vec<Completion> {
    let mut out = Vec::new();
    while d.now_ns() < until_ns {
        d.run(Wait::Until(until_ns), &mut out).unwrap();
    }
    d.run(Wait::Poll, &mut out).unwrap();
    out
}

/// Run for `delta_ns` of virtual time from now.
fn drive_for(d: &mut SimDriver, delta_ns: u64) -> Vec<Completion> {
    let until = d.now_ns() + delta_ns;
    drive(d, until)
}

/// How far a multi-shard harness lets the next shard wait: the earliest thing any shard or the
/// network has to do, recomputed before each shard's turn.
fn harness_bound(world: &SimWorld, shards: &[&SimDriver], far_ns: u64) -> u64 {
    shards
        .iter()
        .map(|d| d.next_deadline_ns())
        .chain(std::iter::once(world.next_event_ns()))
        .flatten()
        .min()
        .unwrap_or(far_ns)
}

fn any_addr() -> SocketAddr {
    "0.0.0.0:9000".parse().unwrap()
}

fn send_buf(data: &[u8]) -> SendBuf {
    let mut b = SendBuf::new();
    b.push_bytes(data);
    b
}

/// A listener with one accepted connection from a test peer.
fn accepted(d: &mut SimDriver) -> (SimWorld, PeerId, SocketId) {
    let (l, addr) = d.listen_tcp(any_addr(), &TcpOptions::default()).unwrap();
    d.submit(1, Op::AcceptMulti { listener: l }).unwrap();
    let world = d.world();
    let peer = world.connect(addr).unwrap();
    let until = d.now_ns() + 10_000_000;
    let out = drive(d, until);
    let Some(CompletionKind::Accept {
        result: Ok((sid, from)),
        more: true,
    }) = out.into_iter().map(|c| c.kind).next()
    else {
        panic!("no accept");
    };
    assert_eq!(Some(from), world.peer_addr(peer));
    (world, peer, sid)
}

#[test]
fn timeouts_fire_in_virtual_time_order_at_their_deadlines() {
    let mut d = SimDriver::new(SimConfig::new(1), small(4, 64));
    for (token, ms) in [(5, 5u64), (1, 1), (3, 3), (4, 4), (2, 2)] {
        d.submit(
            token,
            Op::Timeout {
                deadline_ns: ms * 1_000_000,
            },
        )
        .unwrap();
    }
    let mut out = Vec::new();
    d.run(Wait::Poll, &mut out).unwrap();
    assert!(out.is_empty());
    assert_eq!(d.now_ns(), 0, "Poll must not move the clock");
    let mut fired = Vec::new();
    while fired.len() < 5 {
        d.run(Wait::Until(u64::MAX), &mut out).unwrap();
        for c in out.drain(..) {
            assert!(matches!(c.kind, CompletionKind::Timeout { result: Ok(()) }));
            assert_eq!(d.now_ns(), c.token * 1_000_000, "fired off its deadline");
            fired.push(c.token);
        }
    }
    assert_eq!(fired, [1, 2, 3, 4, 5]);
    // Nothing left: a bounded wait jumps straight to its deadline.
    d.run(Wait::Until(9_000_000), &mut out).unwrap();
    assert!(out.is_empty());
    assert_eq!(d.now_ns(), 9_000_000);
    d.leak_check().unwrap();
}

#[test]
fn cancel_completes_every_matching_operation_once() {
    let mut d = SimDriver::new(SimConfig::new(2), small(4, 64));
    d.submit(
        7,
        Op::Timeout {
            deadline_ns: 1_000_000,
        },
    )
    .unwrap();
    d.submit(
        7,
        Op::Timeout {
            deadline_ns: 2_000_000,
        },
    )
    .unwrap();
    d.submit(
        8,
        Op::Timeout {
            deadline_ns: 3_000_000,
        },
    )
    .unwrap();
    d.submit(9, Op::Cancel { target: 7 }).unwrap();
    let out = drive(&mut d, 5_000_000);
    let mut cancelled = 0;
    let mut fired = Vec::new();
    for c in &out {
        match (&c.token, &c.kind) {
            (
                7,
                CompletionKind::Timeout {
                    result: Err(Errno::CANCELED),
                },
            ) => cancelled += 1,
            (9, CompletionKind::Cancel { result }) => assert_eq!(*result, Ok(2)),
            (8, CompletionKind::Timeout { result: Ok(()) }) => fired.push(8),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((cancelled, fired.len(), out.len()), (2, 1, 4));
    d.submit(10, Op::Cancel { target: 7 }).unwrap();
    let out = drive(&mut d, 6_000_000);
    assert!(matches!(
        out[0].kind,
        CompletionKind::Cancel {
            result: Err(Errno::NOENT)
        }
    ));
    d.leak_check().unwrap();
}

#[test]
fn close_cancels_in_flight_receive_before_completing_and_double_close_is_badf() {
    let mut d = SimDriver::new(SimConfig::new(3), small(4, 64));
    let (world, peer, sid) = accepted(&mut d);
    d.submit(20, Op::RecvMulti { socket: sid }).unwrap();
    d.submit(21, Op::Close { socket: sid }).unwrap();
    let out = drive_for(&mut d, 10_000_000);
    let tokens: Vec<u64> = out.iter().map(|c| c.token).collect();
    assert_eq!(
        tokens,
        [20, 21],
        "the cancelled receive must come before the close"
    );
    assert!(matches!(
        out[0].kind,
        CompletionKind::Recv {
            result: Err(Errno::CANCELED),
            more: false,
            ..
        }
    ));
    assert!(matches!(
        out[1].kind,
        CompletionKind::Close { result: Ok(()) }
    ));
    assert!(world.peer_is_closed_by_server(peer));
    d.submit(22, Op::Close { socket: sid }).unwrap();
    let out = drive_for(&mut d, 10_000_000);
    assert!(matches!(
        out[0].kind,
        CompletionKind::Close {
            result: Err(Errno::BADF)
        }
    ));
    // Only the listener (with its accept armed) remains.
    assert_eq!(d.open_sockets(), 1);
    assert!(
        d.leak_check().is_err(),
        "the armed accept is still in flight"
    );
}

#[test]
fn nobufs_ends_the_receive_and_leaves_the_data_queued() {
    let mut d = SimDriver::new(SimConfig::new(4), small(1, 8));
    let (world, peer, sid) = accepted(&mut d);
    let sent: Vec<u8> = (0..20).collect();
    world.peer_send(peer, &sent).unwrap();
    let mut got = Vec::new();
    let mut nobufs = 0;
    let mut rounds = 0;
    let mut armed = false;
    let mut eof = false;
    while !eof {
        rounds += 1;
        assert!(rounds < 50, "receive made no progress");
        if got.len() == sent.len() {
            world.peer_shutdown(peer);
        }
        if !armed {
            d.submit(30, Op::RecvMulti { socket: sid }).unwrap();
            armed = true;
        }
        for c in drive_for(&mut d, 10_000_000) {
            let CompletionKind::Recv { result, more, .. } = c.kind else {
                panic!("unexpected {c:?}");
            };
            armed = more;
            match result {
                Ok(RecvChunk { buf: Some(b), len }) => {
                    assert!(more && len <= 8);
                    got.extend_from_slice(d.recv_buf(b, len));
                    d.release_buf(b);
                }
                Ok(RecvChunk { buf: None, len: 0 }) => {
                    assert!(!more);
                    eof = true;
                }
                Err(Errno::NOBUFS) => {
                    assert!(!more);
                    nobufs += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(got, sent, "data must stay queued across NOBUFS, in order");
    assert!(nobufs >= 2, "a one-buffer pool must run dry");
    assert!(d.stats().buffer_exhaustions >= 2);
}

#[test]
fn slow_peer_window_makes_sends_partial_until_it_reads() {
    let mut d = SimDriver::new(SimConfig::new(5), small(4, 64));
    let (world, peer, sid) = accepted(&mut d);
    world.peer_set_window(peer, 10);
    let data: Vec<u8> = (0..25).collect();
    let mut buf = send_buf(&data);
    let mut received = Vec::new();
    let mut partial = false;
    let mut rounds = 0;
    while !buf.is_empty() {
        rounds += 1;
        assert!(rounds < 50, "send made no progress");
        d.submit(40, Op::Send { socket: sid, buf }).unwrap();
        // Without the peer reading, the send cannot finish: the window is full.
        let out = drive_for(&mut d, 10_000_000);
        let Some(CompletionKind::Send {
            result: Ok(n),
            buf: back,
            ..
        }) = out.into_iter().map(|c| c.kind).next()
        else {
            panic!("send did not complete while the window had room");
        };
        partial |= n < back.remaining();
        assert!(n <= 10);
        buf = back;
        buf.advance(n);
        world.peer_recv(peer, &mut received);
    }
    assert!(partial);
    let until = d.now_ns() + 10_000_000;
    drive(&mut d, until);
    world.peer_recv(peer, &mut received);
    assert_eq!(received, data);
    assert_eq!(d.stats().bytes_out, 25);
}

#[test]
fn stalled_send_waits_for_the_window() {
    let mut d = SimDriver::new(SimConfig::new(6), small(4, 64));
    let (world, peer, sid) = accepted(&mut d);
    world.peer_set_window(peer, 4);
    d.submit(
        50,
        Op::Send {
            socket: sid,
            buf: send_buf(b"abcd"),
        },
    )
    .unwrap();
    d.submit(
        51,
        Op::Send {
            socket: sid,
            buf: send_buf(b"efgh"),
        },
    )
    .unwrap();
    let out = drive_for(&mut d, 10_000_000);
    assert_eq!(out.len(), 1, "the second send must wait for the window");
    let mut got = Vec::new();
    world.peer_recv(peer, &mut got);
    let out = drive_for(&mut d, 10_000_000);
    assert_eq!(out.iter().map(|c| c.token).collect::<Vec<_>>(), [51]);
    world.peer_recv(peer, &mut got);
    assert_eq!(got, b"abcdefgh");
}

#[test]
fn sends_to_a_closed_peer_fail_with_epipe() {
    let mut d = SimDriver::new(SimConfig::new(7), small(4, 64));
    let (world, peer, sid) = accepted(&mut d);
    world.peer_close(peer);
    let until = d.now_ns() + 10_000_000;
    drive(&mut d, until);
    d.submit(
        60,
        Op::Send {
            socket: sid,
            buf: send_buf(b"late"),
        },
    )
    .unwrap();
    let out = drive_for(&mut d, 10_000_000);
    assert!(matches!(
        out[0].kind,
        CompletionKind::Send {
            result: Err(Errno::PIPE),
            ..
        }
    ));
}

#[test]
fn udp_duplicates_and_losses_follow_the_config() {
    let dup = SimConfig {
        udp_dup_prob: 1.0,
        ..SimConfig::new(8)
    };
    let mut d = SimDriver::new(dup, small(8, 64));
    let world = d.world();
    let (sock, addr) = d.bind_udp("0.0.0.0:0".parse().unwrap()).unwrap();
    let p = world.udp_peer("10.0.0.9:5000".parse().unwrap()).unwrap();
    world.udp_peer_send(p, addr, b"ping").unwrap();
    d.submit(70, Op::RecvFromMulti { socket: sock }).unwrap();
    let out = drive(&mut d, 10_000_000);
    assert_eq!(out.len(), 2, "duplication delivers twice");
    for c in out {
        let CompletionKind::RecvFrom {
            result: Ok((b, len, from)),
            more: true,
            ..
        } = c.kind
        else {
            panic!("{c:?}");
        };
        assert_eq!(d.recv_buf(b, len), b"ping");
        assert_eq!(Some(from), world.udp_peer_addr(p));
        d.release_buf(b);
    }
    d.submit(
        71,
        Op::SendTo {
            socket: sock,
            addr: world.udp_peer_addr(p).unwrap(),
            buf: send_buf(b"pong"),
        },
    )
    .unwrap();
    drive(&mut d, 20_000_000);
    assert_eq!(world.udp_peer_recv(p), Some((b"pong".to_vec(), addr)));
    assert_eq!(world.udp_peer_recv(p), Some((b"pong".to_vec(), addr)));
    assert_eq!(world.udp_peer_recv(p), None);

    let lossy = SimConfig {
        udp_loss_prob: 1.0,
        ..SimConfig::new(9)
    };
    let mut d = SimDriver::new(lossy, small(8, 64));
    let world = d.world();
    let (sock, addr) = d.bind_udp("0.0.0.0:0".parse().unwrap()).unwrap();
    let p = world.udp_peer("10.0.0.9:0".parse().unwrap()).unwrap();
    world.udp_peer_send(p, addr, b"lost").unwrap();
    d.submit(72, Op::RecvFromMulti { socket: sock }).unwrap();
    assert!(drive(&mut d, 10_000_000).is_empty());
}

#[test]
fn disk_writes_survive_a_crash_only_when_synced() {
    let path = Path::new("/data/log");
    let opts = FileOptions {
        create: true,
        ..FileOptions::default()
    };
    let mut lost = 0;
    for seed in 0..32 {
        let mut d = SimDriver::new(SimConfig::new(seed), small(4, 64));
        let f = d.open_file(path, opts).unwrap();
        let mut a = AlignedBuf::new(512);
        a[..4].copy_from_slice(b"keep");
        d.submit(
            1,
            Op::WriteAt {
                file: f,
                offset: 0,
                buf: a,
                len: 4,
            },
        )
        .unwrap();
        d.submit(2, Op::Fdatasync { file: f }).unwrap();
        let mut b = AlignedBuf::new(512);
        b[..4].copy_from_slice(b"gone");
        d.submit(
            3,
            Op::WriteAt {
                file: f,
                offset: 4,
                buf: b,
                len: 4,
            },
        )
        .unwrap();
        let out = drive(&mut d, 10_000_000);
        assert_eq!(out.len(), 3);
        let image = d.crash_disk_image();

        let mut d2 = SimDriver::new_with_disk(SimConfig::new(seed), small(4, 64), image);
        let f2 = d2.open_file(path, FileOptions::default()).unwrap();
        d2.submit(
            4,
            Op::ReadAt {
                file: f2,
                offset: 0,
                buf: AlignedBuf::new(512),
                len: 512,
            },
        )
        .unwrap();
        let out = drive(&mut d2, 10_000_000);
        let CompletionKind::ReadAt { result: Ok(n), buf } = &out[0].kind else {
            panic!("{:?}", out[0]);
        };
        assert!(
            buf[..*n].starts_with(b"keep"),
            "seed {seed}: synced write lost"
        );
        assert!(&buf[..*n] == b"keep" || &buf[..*n] == b"keepgone");
        lost += usize::from(*n == 4);
    }
    assert!(lost > 0, "no crash lost the unsynced write");
}

#[test]
fn read_after_a_torn_crash_returns_the_sector_mix() {
    let path = Path::new("torn");
    let opts = FileOptions {
        create: true,
        direct: true,
        ..FileOptions::default()
    };
    let mut torn_seen = false;
    for seed in 0..64 {
        let cfg = SimConfig {
            torn_write_prob: 1.0,
            ..SimConfig::new(seed)
        };
        let mut d = SimDriver::new(cfg.clone(), small(4, 64));
        let f = d.open_file(path, opts).unwrap();
        let mut old = AlignedBuf::new(8192);
        old.fill(0xAA);
        d.submit(
            1,
            Op::WriteAt {
                file: f,
                offset: 0,
                buf: old,
                len: 8192,
            },
        )
        .unwrap();
        d.submit(2, Op::Fdatasync { file: f }).unwrap();
        let mut new = AlignedBuf::new(8192);
        new.fill(0xBB);
        d.submit(
            3,
            Op::WriteAt {
                file: f,
                offset: 0,
                buf: new,
                len: 8192,
            },
        )
        .unwrap();
        drive(&mut d, 10_000_000);
        let mut d2 = SimDriver::new_with_disk(cfg, small(4, 64), d.crash_disk_image());
        let f2 = d2.open_file(path, opts).unwrap();
        d2.submit(
            4,
            Op::ReadAt {
                file: f2,
                offset: 0,
                buf: AlignedBuf::new(8192),
                len: 8192,
            },
        )
        .unwrap();
        let out = drive(&mut d2, 10_000_000);
        let CompletionKind::ReadAt {
            result: Ok(8192),
            buf,
        } = &out[0].kind
        else {
            panic!("{:?}", out[0]);
        };
        let new_bytes = buf.iter().take_while(|&&b| b == 0xBB).count();
        assert!(
            new_bytes.is_multiple_of(512),
            "seed {seed}: torn inside a sector"
        );
        assert!(buf[new_bytes..].iter().all(|&b| b == 0xAA));
        torn_seen |= new_bytes > 0 && new_bytes < 8192;
    }
    assert!(torn_seen);
}

#[test]
fn file_errors_badf_einval_and_injected_eio() {
    let cfg = SimConfig {
        disk_eio_prob: 1.0,
        ..SimConfig::new(10)
    };
    let mut d = SimDriver::new(cfg, small(4, 64));
    assert!(
        d.open_file(Path::new("missing"), FileOptions::default())
            .is_err()
    );
    let direct = FileOptions {
        create: true,
        direct: true,
        ..FileOptions::default()
    };
    let f = d.open_file(Path::new("f"), direct).unwrap();
    d.submit(
        1,
        Op::WriteAt {
            file: f,
            offset: 100,
            buf: AlignedBuf::new(4096),
            len: 4096,
        },
    )
    .unwrap();
    d.submit(
        2,
        Op::WriteAt {
            file: f,
            offset: 0,
            buf: AlignedBuf::new(4096),
            len: 4096,
        },
    )
    .unwrap();
    d.submit(
        5,
        Op::WriteAt {
            file: f,
            offset: SIM_FILE_BYTES_MAX,
            buf: AlignedBuf::new(4096),
            len: 4096,
        },
    )
    .unwrap();
    d.submit(3, Op::CloseFile { file: f }).unwrap();
    d.submit(4, Op::CloseFile { file: f }).unwrap();
    let out = drive(&mut d, 10_000_000);
    let by_token: BTreeMap<u64, &CompletionKind> = out.iter().map(|c| (c.token, &c.kind)).collect();
    assert!(matches!(
        by_token[&1],
        CompletionKind::WriteAt {
            result: Err(Errno(libc::EINVAL)),
            ..
        }
    ));
    assert!(matches!(
        by_token[&2],
        CompletionKind::WriteAt {
            result: Err(Errno::IO),
            ..
        }
    ));
    assert!(matches!(
        by_token[&5],
        CompletionKind::WriteAt {
            result: Err(Errno(libc::EFBIG)),
            ..
        }
    ));
    assert!(matches!(
        by_token[&3],
        CompletionKind::CloseFile { result: Ok(()) }
    ));
    assert!(matches!(
        by_token[&4],
        CompletionKind::CloseFile {
            result: Err(Errno::BADF)
        }
    ));
    assert_eq!(
        d.world()
            .with_disk(|disk| disk.contents(Path::new("f")).map(<[u8]>::len)),
        Some(0)
    );
}

#[test]
fn wall_clock_can_step_backwards_while_the_monotonic_clock_cannot() {
    let mut d = SimDriver::new(SimConfig::new(11), small(4, 64));
    let w0 = d.wall_ms();
    drive(&mut d, 5_000_000);
    assert_eq!(d.wall_ms(), w0 + 5);
    d.step_wall_clock(-60_000);
    assert_eq!(d.wall_ms(), w0 + 5 - 60_000);
    assert_eq!(d.now_ns(), 5_000_000);
}

#[test]
fn remote_wake_returns_a_blocking_run_without_moving_the_clock() {
    let mut d = SimDriver::new(SimConfig::new(12), small(4, 64));
    d.remote_waker().wake();
    let mut out = Vec::new();
    d.run(Wait::Until(1_000_000_000), &mut out).unwrap();
    assert_eq!(d.now_ns(), 0);
    d.run(Wait::Until(1_000_000_000), &mut out).unwrap();
    assert_eq!(d.now_ns(), 1_000_000_000, "the wake is consumed once");
}

#[test]
fn shards_of_one_world_share_listeners_and_the_clock() {
    let world = SimWorld::new(SimConfig::new(13));
    let mut a = world.driver(small(4, 64));
    let mut b = world.driver(small(4, 64));
    let (la, addr) = a.listen_tcp(any_addr(), &TcpOptions::default()).unwrap();
    let (lb, addr_b) = b.listen_tcp(addr, &TcpOptions::default()).unwrap();
    assert_eq!(addr, addr_b);
    a.submit(1, Op::AcceptMulti { listener: la }).unwrap();
    b.submit(1, Op::AcceptMulti { listener: lb }).unwrap();
    for _ in 0..40 {
        world.connect(addr).unwrap();
    }
    let (mut na, mut nb) = (0, 0);
    let mut out = Vec::new();
    while world.now_ns() < 50_000_000 {
        a.run(Wait::Poll, &mut out).unwrap();
        na += out.drain(..).count();
        b.run(Wait::Until(world.now_ns() + 1_000_000), &mut out)
            .unwrap();
        nb += out.drain(..).count();
    }
    assert_eq!(na + nb, 40);
    assert!(
        na > 0 && nb > 0,
        "reuse_port spreads connections: {na} / {nb}"
    );
    assert_eq!(a.now_ns(), b.now_ns());
}

#[test]
#[should_panic(expected = "seed 14")]
fn releasing_a_buffer_not_lent_panics_with_the_seed() {
    let mut d = SimDriver::new(SimConfig::new(14), small(4, 64));
    d.release_buf(BufId(0));
}

#[test]
fn leak_check_reports_lent_buffers() {
    let mut d = SimDriver::new(SimConfig::new(15), small(4, 64));
    let (world, peer, sid) = accepted(&mut d);
    world.peer_send(peer, b"hello").unwrap();
    d.submit(2, Op::RecvMulti { socket: sid }).unwrap();
    let out = drive_for(&mut d, 10_000_000);
    assert_eq!(out.len(), 1);
    let err = d.leak_check().unwrap_err();
    assert!(
        err.contains("buffers still lent") && err.contains("seed 15"),
        "{err}"
    );
}

#[test]
fn udp_reorder_delivers_every_datagram_but_out_of_order() {
    let cfg = SimConfig {
        udp_reorder_prob: 0.5,
        udp_reorder_delay_max_ns: 5_000_000,
        ..SimConfig::new(16)
    };
    let mut d = SimDriver::new(cfg, small(64, 64));
    let world = d.world();
    let (sock, addr) = d.bind_udp("0.0.0.0:0".parse().unwrap()).unwrap();
    let p = world.udp_peer("10.0.0.9:0".parse().unwrap()).unwrap();
    for i in 0..32u8 {
        world.udp_peer_send(p, addr, &[i]).unwrap();
    }
    d.submit(80, Op::RecvFromMulti { socket: sock }).unwrap();
    let mut got = Vec::new();
    for c in drive(&mut d, 20_000_000) {
        let CompletionKind::RecvFrom {
            result: Ok((b, 1, _)),
            ..
        } = c.kind
        else {
            panic!("{c:?}");
        };
        got.push(d.recv_buf(b, 1)[0]);
        d.release_buf(b);
    }
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..32).collect::<Vec<u8>>(),
        "no loss, no duplicates"
    );
    assert_ne!(got, sorted, "reorder must change the order");
}

#[test]
fn close_hands_back_a_stalled_send_buffer_as_cancelled() {
    let mut d = SimDriver::new(SimConfig::new(17), small(4, 64));
    let (world, peer, sid) = accepted(&mut d);
    world.peer_set_window(peer, 0);
    d.submit(
        90,
        Op::Send {
            socket: sid,
            buf: send_buf(b"stuck"),
        },
    )
    .unwrap();
    assert!(
        drive_for(&mut d, 10_000_000).is_empty(),
        "a zero window stalls the send"
    );
    d.submit(91, Op::Close { socket: sid }).unwrap();
    let out = drive_for(&mut d, 10_000_000);
    assert_eq!(out.iter().map(|c| c.token).collect::<Vec<_>>(), [90, 91]);
    let CompletionKind::Send {
        result: Err(Errno::CANCELED),
        buf,
        ..
    } = &out[0].kind
    else {
        panic!("{:?}", out[0]);
    };
    assert_eq!(buf.remaining(), 5, "the buffer comes back untouched");
}

#[test]
fn connections_to_a_closed_listener_are_refused() {
    let mut d = SimDriver::new(SimConfig::new(18), small(4, 64));
    let world = d.world();
    let (l, addr) = d.listen_tcp(any_addr(), &TcpOptions::default()).unwrap();
    // Connected but never accepted: closing the listener resets it.
    let early = world.connect(addr).unwrap();
    drive_for(&mut d, 10_000_000);
    d.submit(1, Op::Close { socket: l }).unwrap();
    let out = drive_for(&mut d, 10_000_000);
    assert!(matches!(
        out[0].kind,
        CompletionKind::Close { result: Ok(()) }
    ));
    assert!(world.peer_is_closed_by_server(early));
    assert!(matches!(world.connect(addr), Err(SimError::NoListener(_))));
    assert_eq!(d.open_sockets(), 0);
    d.leak_check().unwrap();
}

/// Regression: a shard with submissions not yet handed to the simulated kernel has work due now.
/// `next_deadline_ns` used to report only timers and queued completions, so a multi-shard harness
/// let another shard jump the shared clock to a far deadline (an HTTP header timeout) and a send
/// submitted right after a request arrived completed hundreds of milliseconds late.
#[test]
fn unstarted_submissions_are_due_now_for_a_multi_shard_harness() {
    let world = SimWorld::new(SimConfig::new(21));
    let mut a = world.driver(small(4, 64));
    let mut b = world.driver(small(4, 64));
    let (_world, peer, sid) = accepted(&mut b);
    let far_ns = world.now_ns() + 300_000_000;
    a.submit(
        9,
        Op::Timeout {
            deadline_ns: far_ns,
        },
    )
    .unwrap();
    let mut out = Vec::new();
    a.run(Wait::Poll, &mut out).unwrap();
    assert_eq!(a.next_deadline_ns(), Some(far_ns));

    b.submit(
        2,
        Op::Send {
            socket: sid,
            buf: send_buf(b"reply"),
        },
    )
    .unwrap();
    let now = world.now_ns();
    assert_eq!(b.next_deadline_ns(), Some(now), "the send must start now");

    // Step the shards the way a harness does: each waits at most until the earliest thing any
    // shard or the network has to do.
    let mut sent_at = None;
    while sent_at.is_none() && world.now_ns() < far_ns {
        let until = harness_bound(&world, &[&a, &b], far_ns);
        a.run(Wait::Until(until), &mut out).unwrap();
        out.clear();
        let until = harness_bound(&world, &[&a, &b], far_ns);
        b.run(Wait::Until(until), &mut out).unwrap();
        for c in out.drain(..) {
            if let CompletionKind::Send { result, .. } = c.kind {
                assert_eq!(result, Ok(5));
                sent_at = Some(world.now_ns());
            }
        }
    }
    let sent_at = sent_at.expect("send completed");
    assert!(
        sent_at < now + 1_000_000,
        "send completed at {sent_at} ns, submitted at {now} ns"
    );
    let mut got = Vec::new();
    world.advance_to(world.now_ns() + 1_000_000);
    world.peer_recv(peer, &mut got);
    assert_eq!(got, b"reply");
}

/// Regression: a socket whose state changed while another shard moved the clock (data arrived
/// for it) is due now for its own shard, which only looks at it inside its own `run`.
#[test]
fn sockets_changed_by_the_network_are_due_now_for_their_shard() {
    let world = SimWorld::new(SimConfig::new(22));
    let mut a = world.driver(small(4, 64));
    let mut b = world.driver(small(4, 64));
    let (_world, peer, sid) = accepted(&mut b);
    b.submit(3, Op::RecvMulti { socket: sid }).unwrap();
    let mut out = Vec::new();
    b.run(Wait::Poll, &mut out).unwrap();
    assert!(out.is_empty());
    assert_eq!(
        b.next_deadline_ns(),
        None,
        "nothing to do before the peer sends"
    );

    world.peer_send(peer, b"request").unwrap();
    let arrival = world.next_event_ns().expect("segment in flight");
    // Shard A waits up to the segment's arrival and delivers it to the network on the way.
    a.run(Wait::Until(arrival), &mut out).unwrap();
    assert_eq!(world.now_ns(), arrival);
    assert_eq!(
        b.next_deadline_ns(),
        Some(arrival),
        "B must run before anyone moves the clock again"
    );
    b.run(Wait::Until(arrival + 10_000_000), &mut out).unwrap();
    let Some(CompletionKind::Recv {
        result: Ok(RecvChunk {
            buf: Some(buf),
            len,
        }),
        ..
    }) = out.pop().map(|c| c.kind)
    else {
        panic!("no data");
    };
    assert_eq!(b.recv_buf(buf, len), b"request");
    b.release_buf(buf);
}
