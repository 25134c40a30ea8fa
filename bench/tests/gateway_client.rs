//! The gateway load generator's client, checked offline: its frames against gateway-core's
//! server-side parser, and its whole session loop against a small in-process mock gateway
//! (gateway-core's handshake and frame codec on blocking std sockets) — no `hearth` needed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use bench::gateway::client::{Client, ClientConfig};
use bench::gateway::net::mono_ns;
use bench::gateway::proto::{
    self, GwMessage, bench_d, classify, heartbeat_payload, identify_payload, next_frame,
    parse_upgrade_response, upgrade_request, ws_key,
};
use bench::gateway::target::GwTarget;
use bench::gateway::wire::{WorkerMsg, WorkerReport};
use gateway_core::ws::frame::{OpCode, Parsed, parse_frame};
use gateway_core::ws::handshake::{HandshakeStatus, parse_request, write_response};
use gateway_core::ws::writer::{write_server_frame, write_server_header};

// ----- frames, offline -----

#[test]
fn client_frames_parse_with_the_servers_mask_requirement() {
    for payload in [
        identify_payload("Bot abc.def"),
        heartbeat_payload(Some(7)),
        vec![b'x'; 126],
        vec![b'y'; 70_000],
    ] {
        let mut out = Vec::new();
        proto::write_text(&payload, [0xde, 0xad, 0xbe, 0xef], &mut out);
        // Masked on the wire: the payload bytes do not appear as they are.
        assert_ne!(&out[out.len() - payload.len()..], &payload[..]);
        match parse_frame(&mut out, true, 1 << 20) {
            Parsed::Frame(f) => {
                assert_eq!(f.header.opcode, OpCode::Text);
                assert!(f.header.fin);
                assert_eq!(f.payload, &payload[..]);
                assert_eq!(f.consumed, out.len());
            }
            other => panic!("{other:?}"),
        }
    }
    let mut close = Vec::new();
    proto::write_close(1000, [1, 2, 3, 4], &mut close);
    match parse_frame(&mut close, true, 125) {
        Parsed::Frame(f) => {
            assert_eq!(f.header.opcode, OpCode::Close);
            assert_eq!(proto::close_code(f.payload), 1000);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn server_frames_of_every_length_form_decode() {
    let mut wire = Vec::new();
    let payloads: Vec<Vec<u8>> = vec![
        b"{\"op\":11}".to_vec(),
        vec![b'a'; 126],
        vec![b'b'; 65_535],
        vec![b'c'; 65_536],
    ];
    for p in &payloads {
        write_server_frame(OpCode::Text, p, &mut wire);
    }
    let mut off = 0;
    for p in &payloads {
        // Every strict prefix of the frame asks for more bytes.
        let f = next_frame(&mut wire[off..]).unwrap().unwrap();
        assert_eq!(&wire[off + f.start..off + f.end], &p[..]);
        for cut in [1, 2, f.start, f.consumed - 1] {
            let mut part = wire[off..off + cut].to_vec();
            assert_eq!(next_frame(&mut part).unwrap(), None, "cut {cut}");
        }
        off += f.consumed;
    }
    assert_eq!(off, wire.len());
    // A masked frame from a server is legal to parse; a reserved opcode is not.
    let mut bad = vec![0x8b, 0x00];
    assert!(next_frame(&mut bad).is_err());
}

#[test]
fn upgrade_request_is_accepted_by_the_gateway_handshake() {
    let key = ws_key(*b"0123456789abcdef");
    let req = upgrade_request("127.0.0.1:1", "/?v=10&encoding=json", &key);
    let HandshakeStatus::Complete { request, consumed } = parse_request(&req).unwrap() else {
        panic!("partial");
    };
    assert_eq!(consumed, req.len());
    assert_eq!(request.path, "/");
    assert_eq!(request.query.version, Some(10));
    let mut resp = Vec::new();
    write_response(&request, &mut resp);
    resp.extend_from_slice(b"\x81\x00");
    assert_eq!(
        parse_upgrade_response(&resp, &key).unwrap(),
        Some(resp.len() - 2)
    );
    let other = ws_key(*b"fedcba9876543210");
    assert!(parse_upgrade_response(&resp, &other).is_err());
}

#[test]
fn bench_events_classify_as_the_server_would_send_them() {
    let d = bench_d(12, 987_654_321, 250);
    let text = format!("{{\"t\":\"BENCH_EVENT\",\"s\":44,\"op\":0,\"d\":{d}}}");
    assert!((245..=255).contains(&text.len()), "{}", text.len());
    match classify(text.as_bytes()).unwrap() {
        GwMessage::Bench(ev) => assert_eq!((ev.k, ev.ts_ns, ev.s), (12, 987_654_321, Some(44))),
        other => panic!("{other:?}"),
    }
    // Re-serialised with other spacing and key order, it still classifies.
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let pretty = serde_json::to_string_pretty(&v).unwrap();
    assert!(matches!(
        classify(pretty.as_bytes()).unwrap(),
        GwMessage::Bench(ev) if ev.k == 12 && ev.s == Some(44)
    ));
}

// ----- the session loop against a mock gateway -----

/// What the mock does with an upgrade.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MockMode {
    /// Hello, READY (in two fragments every other session), ACKs, a ping first.
    Gateway,
    /// 101 only; answers pings (Nchan's shape).
    Subscribe,
    /// 400 to every upgrade.
    Refuse,
}

struct MockConn {
    writer: TcpStream,
    seq: u64,
}

struct Mock {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<Arc<Mutex<MockConn>>>>>,
    /// (connection number, what) notes from the per-connection threads.
    notes: Receiver<(usize, String)>,
}

fn send_frame(c: &mut MockConn, opcode: OpCode, payload: &[u8]) {
    let mut out = Vec::new();
    write_server_frame(opcode, payload, &mut out);
    c.writer.write_all(&out).unwrap();
}

fn serve_conn(
    n: usize,
    mut s: TcpStream,
    mode: MockMode,
    conns: Arc<Mutex<Vec<Arc<Mutex<MockConn>>>>>,
    notes: Sender<(usize, String)>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let request = loop {
        let k = s.read(&mut chunk).unwrap();
        assert!(k > 0, "client closed during the upgrade");
        buf.extend_from_slice(&chunk[..k]);
        if let HandshakeStatus::Complete { request, consumed } = parse_request(&buf).unwrap() {
            buf.drain(..consumed);
            break request;
        }
    };
    if mode == MockMode::Refuse {
        s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        return;
    }
    let mut head = Vec::new();
    write_response(&request, &mut head);
    let conn = Arc::new(Mutex::new(MockConn {
        writer: s.try_clone().unwrap(),
        seq: 0,
    }));
    {
        let mut c = conn.lock().unwrap();
        c.writer.write_all(&head).unwrap();
        if mode == MockMode::Gateway {
            send_frame(&mut c, OpCode::Ping, b"are you there");
            send_frame(
                &mut c,
                OpCode::Text,
                br#"{"op":10,"d":{"heartbeat_interval":41250},"s":null,"t":null}"#,
            );
        }
    }
    if mode == MockMode::Subscribe {
        conns.lock().unwrap().push(conn.clone());
    }
    loop {
        let frame = match parse_frame(&mut buf, true, 1 << 16) {
            Parsed::Frame(f) => Some((f.header.opcode, f.payload.to_vec(), f.consumed)),
            Parsed::NeedMore(_) => None,
            Parsed::Error(e) => panic!("client sent a bad frame: {e}"),
        };
        let Some((op, payload, used)) = frame else {
            let k = s.read(&mut chunk).unwrap_or(0);
            if k == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..k]);
            continue;
        };
        buf.drain(..used);
        match op {
            OpCode::Text => {
                let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                let mut c = conn.lock().unwrap();
                match v["op"].as_u64() {
                    Some(2) => {
                        notes
                            .send((n, format!("identify {}", v["d"]["token"])))
                            .unwrap();
                        c.seq = 1;
                        let ready = br#"{"t":"READY","s":1,"op":0,"d":{"v":10,"session_id":"x","user":{"id":"1"},"guilds":[]}}"#;
                        if n.is_multiple_of(2) {
                            // Fragmented: text without FIN, then a continuation with FIN.
                            let (a, b) = ready.split_at(20);
                            let mut h = [0u8; 10];
                            let k = write_server_header(OpCode::Text, false, a.len(), &mut h);
                            c.writer.write_all(&h[..k]).unwrap();
                            c.writer.write_all(a).unwrap();
                            let k =
                                write_server_header(OpCode::Continuation, true, b.len(), &mut h);
                            c.writer.write_all(&h[..k]).unwrap();
                            c.writer.write_all(b).unwrap();
                        } else {
                            send_frame(&mut c, OpCode::Text, ready);
                        }
                        drop(c);
                        conns.lock().unwrap().push(conn.clone());
                    }
                    Some(1) => {
                        notes.send((n, "heartbeat".into())).unwrap();
                        send_frame(&mut c, OpCode::Text, br#"{"op":11,"d":null}"#);
                    }
                    other => panic!("unexpected op {other:?}"),
                }
            }
            OpCode::Ping => {
                let mut c = conn.lock().unwrap();
                send_frame(&mut c, OpCode::Pong, &payload);
            }
            OpCode::Pong => notes.send((n, "pong".into())).unwrap(),
            OpCode::Close => {
                notes
                    .send((n, format!("close {}", proto::close_code(&payload))))
                    .unwrap();
                return;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

impl Mock {
    fn start(mode: MockMode) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (tx, notes) = mpsc::channel();
        let c = conns.clone();
        thread::spawn(move || {
            for (n, s) in listener.incoming().enumerate() {
                let Ok(s) = s else { return };
                let (c, tx) = (c.clone(), tx.clone());
                thread::spawn(move || serve_conn(n, s, mode, c, tx));
            }
        });
        Mock { addr, conns, notes }
    }

    /// Sends bench event `k` to every registered session; `skip(i)` leaves session i out,
    /// `twice(i)` sends it twice with the same sequence number.
    fn broadcast(&self, k: u64, skip: impl Fn(usize) -> bool, twice: impl Fn(usize) -> bool) {
        for (i, conn) in self.conns.lock().unwrap().iter().enumerate() {
            if skip(i) {
                continue;
            }
            let mut c = conn.lock().unwrap();
            c.seq += 1;
            let text = format!(
                "{{\"t\":\"BENCH_EVENT\",\"s\":{},\"op\":0,\"d\":{}}}",
                c.seq,
                bench_d(k, mono_ns(), 250)
            );
            send_frame(&mut c, OpCode::Text, text.as_bytes());
            if twice(i) {
                send_frame(&mut c, OpCode::Text, text.as_bytes());
            }
        }
    }

    fn note(&self, want: &str) -> usize {
        loop {
            let (n, what) = self
                .notes
                .recv_timeout(Duration::from_secs(30))
                .expect("mock note");
            if what == want {
                return n;
            }
        }
    }
}

struct Driven {
    cmd: UnixStream,
    lines: std::io::Lines<BufReader<UnixStream>>,
    handle: JoinHandle<()>,
}

impl Driven {
    fn start(target: GwTarget, addr: SocketAddr, sessions: u32) -> Driven {
        let (cmd, cmd_theirs) = UnixStream::pair().unwrap();
        let (out_theirs, out) = UnixStream::pair().unwrap();
        out.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let cfg = ClientConfig {
            target,
            addr,
            path: proto::GATEWAY_PATH.into(),
            tokens: (0..sessions).map(|i| format!("token-{i}")).collect(),
            sessions,
            source_ip: Ipv4Addr::new(127, 0, 0, 2),
            inflight: 4,
            seed: 7,
        };
        let handle = thread::spawn(move || {
            let client = Client::new(cfg, cmd_theirs.as_raw_fd(), out_theirs).unwrap();
            client.run().unwrap();
            drop(cmd_theirs);
        });
        Driven {
            cmd,
            lines: BufReader::new(out).lines(),
            handle,
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.cmd, "{line}").unwrap();
    }

    fn next(&mut self) -> WorkerMsg {
        let line = self.lines.next().expect("a line").expect("readable");
        serde_json::from_str(&line).unwrap()
    }

    fn report(&mut self) -> WorkerReport {
        self.send("report");
        match self.next() {
            WorkerMsg::Report(r) => *r,
            other => panic!("{other:?}"),
        }
    }

    fn quit(mut self) {
        self.send("quit");
        self.handle.join().unwrap();
    }
}

#[test]
fn gateway_sessions_identify_count_events_and_stay_alive() {
    const N: u32 = 20;
    let mock = Mock::start(MockMode::Gateway);
    let mut client = Driven::start(GwTarget::Hearth, mock.addr, N);
    assert_eq!(
        client.next(),
        WorkerMsg::Connected {
            ready: 20,
            failed: 0
        }
    );
    // Every session answered the mock's ping before Hello.
    for _ in 0..N {
        mock.note("pong");
    }

    client.send("expect 5 2");
    // Let the client apply the command before events can arrive.
    thread::sleep(Duration::from_millis(100));
    for k in 0..5 {
        mock.broadcast(k, |i| i == 0 && k == 3, |i| i == 1 && k == 2);
    }
    match client.next() {
        WorkerMsg::Done { live, last_rx_ns } => {
            assert_eq!(live, 20);
            assert!(last_rx_ns > 0);
        }
        other => panic!("{other:?}"),
    }

    client.send("check");
    assert_eq!(
        client.next(),
        WorkerMsg::Alive {
            checked: 20,
            alive: 20
        }
    );

    // The server closes one session with 4009; the client answers the close.
    {
        let conns = mock.conns.lock().unwrap();
        let mut c = conns[5].lock().unwrap();
        send_frame(&mut c, OpCode::Close, &4009u16.to_be_bytes());
    }
    mock.note("close 4009");

    let r = client.report();
    assert_eq!((r.started, r.ready, r.live), (20, 20, 19));
    assert_eq!(r.failed.total(), 0);
    assert_eq!(r.connect_ready.count(), 20);
    assert_eq!(r.identify_ready.count(), 20);
    assert_eq!(r.bench_expected, 100);
    assert_eq!(r.bench_received, 99, "one event skipped on one session");
    assert_eq!(r.bench_gaps, 1);
    assert_eq!(r.bench_duplicates, 1);
    // Events 2..5 recorded: 18 sessions × 3, one session missing event 3, the duplicate once.
    assert_eq!(r.bench_recorded, 18 * 3 + 2 + 3);
    assert_eq!(r.delivery.count(), r.bench_recorded);
    // The duplicate repeated its sequence number.
    assert_eq!(r.seq_errors, 1);
    assert_eq!(r.heartbeat_acks, 20);
    assert!(r.heartbeats_sent >= 20);
    assert_eq!(r.closed_after_ready.get("4009"), Some(&1));
    assert!(r.unexpected.is_empty(), "{:?}", r.unexpected);
    assert!(
        (245..=255).contains(&r.bench_bytes_min),
        "{}",
        r.bench_bytes_min
    );
    assert!(r.first_connect_ns > 0 && r.last_ready_ns >= r.first_connect_ns);
    client.quit();
}

#[test]
fn subscriber_sessions_need_no_identify_and_answer_pings() {
    const N: u32 = 6;
    let mock = Mock::start(MockMode::Subscribe);
    let mut client = Driven::start(GwTarget::Nchan, mock.addr, N);
    assert_eq!(
        client.next(),
        WorkerMsg::Connected {
            ready: 6,
            failed: 0
        }
    );
    client.send("expect 3 0");
    thread::sleep(Duration::from_millis(100));
    for k in 0..3 {
        mock.broadcast(k, |_| false, |_| false);
    }
    assert!(matches!(client.next(), WorkerMsg::Done { live: 6, .. }));
    client.send("check");
    assert_eq!(
        client.next(),
        WorkerMsg::Alive {
            checked: 6,
            alive: 6
        }
    );
    let r = client.report();
    assert_eq!((r.ready, r.bench_received, r.bench_recorded), (6, 18, 18));
    assert_eq!(r.identify_ready.count(), 0);
    assert_eq!(r.heartbeats_sent, 0);
    assert_eq!(r.seq_errors, 0);
    client.quit();
}

#[test]
fn refused_upgrades_are_counted_not_fatal() {
    let mock = Mock::start(MockMode::Refuse);
    let mut client = Driven::start(GwTarget::Hearth, mock.addr, 5);
    assert_eq!(
        client.next(),
        WorkerMsg::Connected {
            ready: 0,
            failed: 5
        }
    );
    let r = client.report();
    assert_eq!(r.failed.upgrade, 5);
    assert!(
        r.failed
            .first_error
            .as_deref()
            .unwrap_or("")
            .contains("400"),
        "{:?}",
        r.failed.first_error
    );
    client.quit();
}

#[test]
fn connect_failures_are_counted() {
    // A port nobody listens on: bind one, note it, close it.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut client = Driven::start(GwTarget::Nchan, addr, 3);
    assert_eq!(
        client.next(),
        WorkerMsg::Connected {
            ready: 0,
            failed: 3
        }
    );
    assert_eq!(client.report().failed.connect, 3);
    client.quit();
}
