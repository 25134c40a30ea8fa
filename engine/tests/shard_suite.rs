//! The shard-level suite: the same scenarios against shards on the io_uring driver (real loopback
//! sockets, two shard threads) and on the simulated driver (two shards stepped in one thread over a
//! seeded virtual network). Each scenario is written once against the `Harness` trait.

mod harness;

use engine::shard::Service;
use gateway_core::ws::{OpCode, Parsed, parse_frame, write_client_frame};
use harness::{Harness, SimHarness, UringHarness, read_response};
use serde_json::{Value, json};

fn echo_round_trips_many_connections<H: Harness>(h: &mut H) {
    let clients: Vec<usize> = (0..8).map(|_| h.connect(Service::Echo)).collect();
    for (i, &c) in clients.iter().enumerate() {
        let msg = format!("hello from {i}");
        h.send(c, msg.as_bytes());
        assert_eq!(h.recv_exact(c, msg.len()), msg.as_bytes());
    }
    // A large payload exceeds the socket buffers: partial sends and re-arms must keep it exact.
    let big: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let c = clients[3];
    h.send(c, &big);
    assert_eq!(h.recv_exact(c, big.len()), big);
    for &c in &clients {
        h.close(c);
    }
    h.stop();
}

fn http_health_keepalive_and_pipelining<H: Harness>(h: &mut H) {
    let c = h.connect(Service::Http);
    h.send(c, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let (status, _, body) = read_response(h, c);
    assert_eq!(status, 200);
    assert_eq!(body, b"ok\n");
    // Two pipelined requests, the first answered through every shard (map_reduce): in order.
    h.send(
        c,
        b"GET /admin/shards HTTP/1.1\r\n\r\nGET /readyz HTTP/1.1\r\n\r\n",
    );
    let (status, headers, body) = read_response(h, c);
    assert_eq!(status, 200);
    assert!(headers.contains("content-type: application/json"));
    let v: serde_json::Value = serde_json::from_slice(&body).expect("admin json");
    let shards = v["shards"].as_array().expect("shards array");
    assert_eq!(shards.len(), h.shard_count());
    let (status, _, body) = read_response(h, c);
    assert_eq!(status, 200);
    assert_eq!(body, b"ready\n");
    h.close(c);
    h.stop();
}

fn metrics_cover_every_shard<H: Harness>(h: &mut H) {
    let c = h.connect(Service::Http);
    h.send(c, b"GET /metrics HTTP/1.1\r\n\r\n");
    let (status, headers, body) = read_response(h, c);
    assert_eq!(status, 200);
    assert!(headers.contains("text/plain; version=0.0.4"));
    let text = String::from_utf8(body).expect("utf8");
    for shard in 0..h.shard_count() {
        for name in [
            "hearth_loop_iterations_total",
            "hearth_submissions_total",
            "hearth_completions_total",
            "hearth_mailbox_depth",
            "hearth_connections",
            "hearth_bytes_in_total",
            "hearth_bytes_out_total",
            "hearth_errors_total",
        ] {
            let series = format!("{name}{{shard=\"{shard}\"}} ");
            assert!(text.contains(&series), "missing {series} in\n{text}");
        }
    }
    // The connection that asked is open and counted on some shard.
    let open: u64 = text
        .lines()
        .filter(|l| l.starts_with("hearth_connections{"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<u64>().ok()))
        .sum();
    assert!(open >= 1);
    h.close(c);
    h.stop();
}

fn bad_http_is_answered_and_closed<H: Harness>(h: &mut H) {
    let cases: [(&[u8], u16); 4] = [
        (b"\x16\x03\x01garbage that is not http\r\n\r\n", 400),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            400,
        ),
        (b"POST /x HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
        (
            b"GET /nothing-here HTTP/1.1\r\nConnection: close\r\n\r\n",
            404,
        ),
    ];
    for (req, want) in cases {
        let c = h.connect(Service::Http);
        h.send(c, req);
        let all = h.recv_until_closed(c);
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {want} ")),
            "wanted {want}, got {text:?}"
        );
    }
    // Oversized headers: 431 and close.
    let c = h.connect(Service::Http);
    let mut req = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 20_000));
    h.send(c, &req);
    let all = h.recv_until_closed(c);
    assert!(
        all.starts_with(b"HTTP/1.1 431 "),
        "{:?}",
        String::from_utf8_lossy(&all)
    );
    h.stop();
}

/// A body over the limit is answered (413) while the client is still sending it. The shard must
/// shut down its sending half and drain that input before it closes: a close with unread input
/// is a reset, and a reset that arrives before the client has read the response destroys it.
fn error_response_survives_a_client_still_sending<H: Harness>(h: &mut H) {
    const BODY: usize = 3 * 1024 * 1024;
    let c = h.connect(Service::Http);
    h.send(
        c,
        format!("POST /x HTTP/1.1\r\nContent-Length: {BODY}\r\n\r\n").as_bytes(),
    );
    // Written in pieces small enough that the real-socket harness writes them from this thread:
    // like a simple client, it reads the response only once the whole body is out.
    let piece = vec![b'x'; 32 * 1024];
    for _ in 0..BODY.div_ceil(piece.len()) {
        h.send(c, &piece);
    }
    let all = h.recv_until_closed(c);
    assert!(
        all.starts_with(b"HTTP/1.1 413 "),
        "the whole response arrives: {:?}",
        String::from_utf8_lossy(&all)
    );
    h.stop();
}

fn incomplete_headers_time_out<H: Harness>(h: &mut H) {
    let c = h.connect(Service::Http);
    h.send(c, b"GET /healthz HTTP/1.1\r\nHost: slow");
    // The shard's header timeout (short in the harness) closes it with 408.
    let all = h.recv_until_closed(c);
    assert!(
        all.starts_with(b"HTTP/1.1 408 "),
        "{:?}",
        String::from_utf8_lossy(&all)
    );
    // A connection that never sends anything is closed too.
    let c = h.connect(Service::Http);
    assert!(h.recv_until_closed(c).is_empty());
    h.stop();
}

fn drain_closes_idle_and_stops<H: Harness>(h: &mut H) {
    let idle = h.connect(Service::Http);
    let echo = h.connect(Service::Echo);
    h.send(echo, b"ping");
    assert_eq!(h.recv_exact(echo, 4), b"ping");
    h.begin_drain();
    assert!(h.recv_until_closed(idle).is_empty());
    assert!(h.recv_until_closed(echo).is_empty());
    h.stop();
}

fn http_json<H: Harness>(h: &mut H, method: &str, path: &str, body: &Value) -> Value {
    let c = h.connect(Service::Http);
    let body = body.to_string();
    h.send(
        c,
        format!(
            "{method} {path} HTTP/1.1\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let (status, _, resp) = read_response(h, c);
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&resp));
    h.close(c);
    serde_json::from_slice(&resp).expect("json")
}

/// Opens a gateway connection: upgrade, then Hello.
fn ws_open<H: Harness>(h: &mut H) -> usize {
    let c = h.connect(Service::Gateway);
    h.send(
        c,
        b"GET /?v=10 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    let mut buf = Vec::new();
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        buf.extend(h.recv_some(c));
    };
    assert!(buf.starts_with(b"HTTP/1.1 101"));
    h.unread(c, buf.split_off(end));
    assert_eq!(ws_json(h, c)["op"], 10);
    c
}

fn ws_send<H: Harness>(h: &mut H, c: usize, v: &Value) {
    let mut out = Vec::new();
    write_client_frame(
        OpCode::Text,
        true,
        [9, 8, 7, 6],
        v.to_string().as_bytes(),
        &mut out,
    );
    h.send(c, &out);
}

/// The next text frame as JSON.
fn ws_json<H: Harness>(h: &mut H, c: usize) -> Value {
    let mut buf = Vec::new();
    loop {
        match parse_frame(&mut buf, false, 1 << 20) {
            Parsed::Frame(f) => {
                assert_eq!(f.header.opcode, OpCode::Text);
                let v = serde_json::from_slice(f.payload).expect("json");
                let n = f.consumed;
                h.unread(c, buf.split_off(n));
                return v;
            }
            Parsed::NeedMore(_) => buf.extend(h.recv_some(c)),
            Parsed::Error(e) => panic!("bad frame: {e:?}"),
        }
    }
}

/// Identify, an event, a dropped connection, events missed, and a Resume that replays them:
/// on real sockets and on the seeded simulated network alike.
fn gateway_identify_dispatch_and_resume<H: Harness>(h: &mut H) {
    let user = http_json(
        h,
        "POST",
        "/control/users",
        &json!({"username": "simuser", "bot": true}),
    );
    let token = user["token"].as_str().expect("token").to_owned();
    let c = ws_open(h);
    ws_send(
        h,
        c,
        &json!({"op": 2, "d": {"token": token, "intents": 0, "properties": {}}}),
    );
    let ready = ws_json(h, c);
    assert_eq!(ready["t"], "READY");
    let sid = ready["d"]["session_id"].as_str().expect("sid").to_owned();
    let n = http_json(h, "POST", "/admin/broadcast", &json!({"t": "ONE", "d": 1}));
    assert_eq!(n["deliveries"], 1);
    let ev = ws_json(h, c);
    assert_eq!((ev["t"].as_str(), ev["s"].as_u64()), (Some("ONE"), Some(2)));
    h.close(c);
    for i in 0..3 {
        http_json(
            h,
            "POST",
            "/admin/broadcast",
            &json!({"t": "MISSED", "d": i}),
        );
    }
    let c = ws_open(h);
    ws_send(
        h,
        c,
        &json!({"op": 6, "d": {"token": token, "session_id": sid, "seq": 2}}),
    );
    for i in 0..3u64 {
        let ev = ws_json(h, c);
        assert_eq!(ev["t"], "MISSED");
        assert_eq!(ev["d"], i);
        assert_eq!(ev["s"], 3 + i);
    }
    assert_eq!(ws_json(h, c)["t"], "RESUMED");
    h.close(c);
    h.stop();
}

macro_rules! both_drivers {
    ($($name:ident),* $(,)?) => {
        mod uring {
            use super::*;
            $(#[test] fn $name() { super::$name(&mut UringHarness::new()); })*
        }
        mod sim {
            use super::*;
            $(#[test] fn $name() {
                for seed in harness::sim_seeds() {
                    let mut h = SimHarness::new(seed);
                    super::$name(&mut h);
                }
            })*
        }
    };
}

both_drivers!(
    echo_round_trips_many_connections,
    http_health_keepalive_and_pipelining,
    metrics_cover_every_shard,
    bad_http_is_answered_and_closed,
    error_response_survives_a_client_still_sending,
    incomplete_headers_time_out,
    drain_closes_idle_and_stops,
    gateway_identify_dispatch_and_resume,
);
