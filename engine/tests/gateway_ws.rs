//! The gateway over real sockets: a two-shard node on loopback, raw TCP clients speaking
//! RFC 6455 frames byte by byte, checking the handshake, the WebSocket rules (fragments, pings
//! between fragments, UTF-8, masking, size limits, the close handshake), the gateway protocol
//! (Hello, heartbeats, Identify, Ready, close codes, zombie detection), Resume across shards
//! and zlib-stream decoded by a real inflater.

mod wsclient;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use gateway_core::ws::OpCode;
use serde_json::{Value, json};
use wsclient::{Client, READ_TIMEOUT, create_user, http, start};

#[test]
fn handshake_hello_heartbeat_identify_ready() {
    let node = start(41_250, 10_000);
    let addr = node.addrs().http;
    let (id, token) = create_user(addr, "alice");
    let mut c = Client::connect(addr, "?v=10&encoding=json");
    assert_eq!(c.hello(), 41_250);
    c.send_json(json!({"op": 1, "d": null}));
    assert_eq!(c.json()["op"], 11);
    c.send_json(
        json!({"op": 2, "d": {"token": format!("Bot {token}"), "intents": 513,
        "properties": {"os": "linux", "browser": "t", "device": "t"}}}),
    );
    let ready = c.json();
    assert_eq!(ready["t"], "READY");
    assert_eq!(ready["s"], 1);
    let d = &ready["d"];
    assert_eq!(d["v"], 10);
    assert_eq!(d["user"]["id"], id.to_string());
    assert_eq!(d["user"]["username"], "alice");
    assert_eq!(d["session_id"].as_str().expect("sid").len(), 32);
    let url = d["resume_gateway_url"].as_str().expect("url");
    assert!(
        url.starts_with("ws://127.0.0.1:") && !url.ends_with('/'),
        "{url}"
    );
    assert_eq!(d["application"]["id"], id.to_string());
    // Identify again: 4005.
    c.send_json(json!({"op": 2, "d": {"token": token, "intents": 0, "properties": {}}}));
    assert_eq!(c.close_code(), 4005);
    c.expect_eof();
    // /metrics counts the identify.
    let (_, metrics) = http(addr, "GET", "/metrics", "");
    let n: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("hearth_gateway_identifies_total{"))
        .map(|l| {
            l.rsplit_once(' ')
                .expect("sample")
                .1
                .parse::<u64>()
                .expect("n")
        })
        .sum();
    assert_eq!(n, 1);
    node.stop();
    node.join().expect("clean stop");
}

#[test]
fn gateway_close_codes() {
    let node = start(41_250, 10_000);
    let addr = node.addrs().http;
    let (_, token) = create_user(addr, "bob");
    // 4004: forged token (valid shape, wrong signature).
    let mut c = Client::connect(addr, "?v=10");
    c.hello();
    let forged = format!("{}x", &token[..token.len() - 1]);
    c.send_json(json!({"op": 2, "d": {"token": forged, "intents": 0, "properties": {}}}));
    assert_eq!(c.close_code(), 4004);
    // 4003: a command before Identify.
    let mut c = Client::connect(addr, "?v=10");
    c.hello();
    c.send_json(
        json!({"op": 3, "d": {"since": null, "activities": [], "status": "online", "afk": false}}),
    );
    assert_eq!(c.close_code(), 4003);
    // 4001: unknown opcode.
    let mut c = Client::connect(addr, "?v=10");
    c.hello();
    c.send_json(json!({"op": 99, "d": null}));
    assert_eq!(c.close_code(), 4001);
    // 4002: not JSON, and a payload over 4096 bytes.
    let mut c = Client::connect(addr, "?v=10");
    c.hello();
    c.send_frame(OpCode::Text, true, b"{not json");
    assert_eq!(c.close_code(), 4002);
    let mut c = Client::connect(addr, "?v=10");
    c.hello();
    let big = json!({"op": 1, "d": null, "pad": "x".repeat(5000)}).to_string();
    c.send_frame(OpCode::Text, true, big.as_bytes());
    assert_eq!(c.close_code(), 4002);
    // 4012: wrong API version, at once.
    let mut c = Client::connect(addr, "?v=6");
    assert_eq!(c.close_code(), 4012);
    // 4013: unknown intent bits.
    let mut c = Client::connect(addr, "?v=10");
    c.hello();
    c.send_json(json!({"op": 2, "d": {"token": token, "intents": 1u64 << 40, "properties": {}}}));
    assert_eq!(c.close_code(), 4013);
    // 4010: invalid shard.
    let mut c = Client::connect(addr, "?v=10");
    c.hello();
    c.send_json(
        json!({"op": 2, "d": {"token": token, "intents": 0, "properties": {}, "shard": [3, 2]}}),
    );
    assert_eq!(c.close_code(), 4010);
    // 4008: more than 120 commands in the window.
    let mut c = Client::connect(addr, "?v=10");
    c.hello();
    for _ in 0..121 {
        c.send_json(json!({"op": 1, "d": null}));
    }
    assert_eq!(c.close_code(), 4008);
    // 4014: privileged intents the application was not granted.
    let (status, body) = http(
        addr,
        "POST",
        "/control/users",
        &json!({"username": "plain", "bot": true, "privileged_intents": 0}).to_string(),
    );
    assert_eq!(status, 200);
    let t: Value = serde_json::from_str(&body).expect("json");
    let mut c = Client::connect(addr, "?v=10");
    c.hello();
    c.send_json(json!({"op": 2, "d": {"token": t["token"], "intents": 1 << 15, "properties": {}}}));
    assert_eq!(c.close_code(), 4014);
    node.stop();
    node.join().expect("clean stop");
}

#[test]
fn rfc6455_fragments_pings_utf8_masking_limits_and_close() {
    let node = start(41_250, 10_000);
    let addr = node.addrs().http;
    let (_, token) = create_user(addr, "carol");
    // A fragmented Identify with a ping between the fragments: pong first, then READY.
    let mut c = Client::connect(addr, "?v=10");
    c.hello();
    let identify =
        json!({"op": 2, "d": {"token": token, "intents": 0, "properties": {}}}).to_string();
    let (a, b) = identify.as_bytes().split_at(identify.len() / 2);
    c.send_frame(OpCode::Text, false, a);
    c.send_frame(OpCode::Ping, true, b"between");
    c.send_frame(OpCode::Continuation, true, b);
    let pong = c.frame().expect("pong");
    assert_eq!(pong.opcode, OpCode::Pong);
    assert_eq!(pong.payload, b"between");
    assert_eq!(c.json()["t"], "READY");
    // Close handshake: our close is answered with a close echoing the code, then EOF.
    c.send_frame(OpCode::Close, true, &1000u16.to_be_bytes());
    let f = c.frame().expect("close reply");
    assert_eq!(f.opcode, OpCode::Close);
    assert!(f.fin);
    assert_eq!(u16::from_be_bytes([f.payload[0], f.payload[1]]), 1000);
    c.expect_eof();
    // Invalid UTF-8 in a text message: 1007.
    let mut c = Client::connect(addr, "?v=10");
    c.hello();
    c.send_frame(OpCode::Text, true, &[b'{', 0xff, 0xfe, b'}']);
    assert_eq!(c.close_code(), 1007);
    c.expect_eof();
    // Invalid UTF-8 split across fragments is caught too.
    let mut c = Client::connect(addr, "?v=10");
    c.hello();
    c.send_frame(OpCode::Text, false, &[b'"', 0xe2, 0x82]);
    c.send_frame(OpCode::Continuation, true, &[0x28, b'"']);
    assert_eq!(c.close_code(), 1007);
    // An unmasked client frame: 1002.
    let mut c = Client::connect(addr, "?v=10");
    c.hello();
    c.send_raw(&[0x81, 0x02, b'{', b'}']);
    assert_eq!(c.close_code(), 1002);
    c.expect_eof();
    // A frame over the message limit: 1009.
    let mut c = Client::connect(addr, "?v=10");
    c.hello();
    c.send_frame(OpCode::Text, true, &vec![b' '; 64 * 1024]);
    assert_eq!(c.close_code(), 1009);
    // A continuation without a start: 1002.
    let mut c = Client::connect(addr, "?v=10");
    c.hello();
    c.send_frame(OpCode::Continuation, true, b"x");
    assert_eq!(c.close_code(), 1002);
    // A bad handshake is refused with HTTP 400 and closed.
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    node.stop();
    node.join().expect("clean stop");
}

#[test]
fn silent_clients_are_closed_as_zombies_and_stay_resumable() {
    // A short interval so the zombie deadline (interval + grace) passes within the test.
    let node = start(300, 200);
    let addr = node.addrs().http;
    let (_, token) = create_user(addr, "dave");
    let mut c = Client::connect(addr, "?v=10");
    let ready = c.identify(&token);
    let sid = ready["d"]["session_id"].as_str().expect("sid").to_owned();
    let started = Instant::now();
    assert_eq!(c.close_code(), 4009);
    assert!(started.elapsed() >= Duration::from_millis(300));
    c.expect_eof();
    // An event while it is gone, then a Resume replays it.
    let (status, body) = http(
        addr,
        "POST",
        "/admin/broadcast",
        &json!({"t": "WHILE_AWAY", "d": {"n": 1}}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let mut c = Client::connect(addr, "?v=10");
    c.hello();
    c.send_json(json!({"op": 6, "d": {"token": token, "session_id": sid, "seq": 1}}));
    let replayed = c.json();
    assert_eq!(replayed["t"], "WHILE_AWAY");
    assert_eq!(replayed["s"], 2);
    let resumed = c.json();
    assert_eq!(resumed["t"], "RESUMED");
    assert_eq!(resumed["s"], 3);
    node.stop();
    node.join().expect("clean stop");
}

#[test]
fn resume_replays_missed_events_on_any_shard_and_refuses_stale_sessions() {
    let node = start(41_250, 10_000);
    let addr = node.addrs().http;
    let (_, token) = create_user(addr, "erin");
    // Several sessions, so that resumes land on both shards (SO_REUSEPORT spreads them).
    for round in 0..6 {
        let mut c = Client::connect(addr, "?v=10");
        let ready = c.identify(&token);
        let sid = ready["d"]["session_id"].as_str().expect("sid").to_owned();
        // Drop the TCP connection without a close frame (a network failure).
        c.s.shutdown(std::net::Shutdown::Both).expect("shutdown");
        drop(c);
        // Wait until the server noticed, then send events the client misses.
        let deadline = Instant::now() + READ_TIMEOUT;
        loop {
            let (_, body) = http(
                addr,
                "POST",
                "/admin/broadcast",
                &json!({"t": "PROBE", "d": {"round": round}}).to_string(),
            );
            let v: Value = serde_json::from_str(&body).expect("json");
            if v["deliveries"].as_u64() >= Some(1) || Instant::now() > deadline {
                break;
            }
        }
        for i in 0..3 {
            http(
                addr,
                "POST",
                "/admin/broadcast",
                &json!({"t": "MISSED", "d": {"i": i}}).to_string(),
            );
        }
        let mut c = Client::connect(addr, "?v=10");
        c.hello();
        c.send_json(
            json!({"op": 6, "d": {"token": format!("Bot {token}"), "session_id": sid, "seq": 1}}),
        );
        let mut names = Vec::new();
        loop {
            let v = c.json();
            let t = v["t"].as_str().expect("t").to_owned();
            names.push(t.clone());
            if t == "RESUMED" {
                break;
            }
        }
        let missed: Vec<_> = names.iter().filter(|n| *n == "MISSED").collect();
        assert_eq!(missed.len(), 3, "round {round}: {names:?}");
        c.send_frame(OpCode::Close, true, &1000u16.to_be_bytes());
        c.close_code();
        // A session closed with 1000 is over: resuming it gets op 9 d:false.
        let mut c = Client::connect(addr, "?v=10");
        c.hello();
        c.send_json(json!({"op": 6, "d": {"token": token, "session_id": sid, "seq": 1}}));
        let nine = c.json();
        assert_eq!(nine["op"], 9);
        assert_eq!(nine["d"], false);
    }
    // Unknown session ids and other users' sessions: op 9.
    let mut c = Client::connect(addr, "?v=10");
    c.hello();
    c.send_json(json!({"op": 6, "d": {"token": token, "session_id": "00".repeat(16), "seq": 0}}));
    assert_eq!(c.json()["op"], 9);
    node.stop();
    node.join().expect("clean stop");
}

#[test]
fn zlib_stream_frames_inflate_with_a_real_decompressor() {
    let node = start(41_250, 10_000);
    let addr = node.addrs().http;
    let (_, token) = create_user(addr, "fay");
    let mut c = Client::connect(addr, "?v=10&encoding=json&compress=zlib-stream");
    let mut z = flate2::Decompress::new(true);
    let mut inflate = |payload: &[u8]| -> Value {
        assert!(payload.ends_with(&[0, 0, 0xff, 0xff]), "sync flush suffix");
        let mut out = Vec::with_capacity(65536);
        z.decompress_vec(payload, &mut out, flate2::FlushDecompress::Sync)
            .expect("inflate");
        serde_json::from_slice(&out).expect("json")
    };
    let hello = c.frame().expect("hello");
    assert_eq!(hello.opcode, OpCode::Binary);
    assert_eq!(inflate(&hello.payload)["op"], 10);
    c.send_json(json!({"op": 2, "d": {"token": token, "intents": 0, "properties": {}}}));
    let ready = c.frame().expect("ready");
    assert_eq!(inflate(&ready.payload)["t"], "READY");
    for i in 0..3 {
        http(
            addr,
            "POST",
            "/admin/broadcast",
            &json!({"t": "ZEVENT", "d": {"i": i, "pad": "abc".repeat(50)}}).to_string(),
        );
        let f = c.frame().expect("event");
        let v = inflate(&f.payload);
        assert_eq!(v["t"], "ZEVENT");
        assert_eq!(v["d"]["i"], i);
        assert_eq!(v["s"], 2 + i);
    }
    node.stop();
    node.join().expect("clean stop");
}

#[test]
fn draining_sends_reconnect() {
    let node = start(41_250, 10_000);
    let addr = node.addrs().http;
    let (_, token) = create_user(addr, "gus");
    let mut c = Client::connect(addr, "?v=10");
    c.identify(&token);
    node.stop();
    let seven = c.json();
    assert_eq!(seven["op"], 7);
    c.expect_eof();
    node.join().expect("clean stop");
}

#[test]
fn a_client_that_does_not_read_is_disconnected_and_can_resume() {
    let node = start(41_250, 10_000);
    let addr = node.addrs().http;
    let (_, token) = create_user(addr, "slow");
    let mut c = Client::connect(addr, "?v=10");
    let ready = c.identify(&token);
    let sid = ready["d"]["session_id"].as_str().expect("sid").to_owned();
    // Stop reading, and flood: 64 events of 256 KB exceed the socket buffers plus the session's
    // bounded output queue (4 MiB), so the server must cut the session loose.
    let pad = "x".repeat(256 * 1024);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut slow = 0;
    while Instant::now() < deadline {
        for _ in 0..16 {
            http(
                addr,
                "POST",
                "/admin/broadcast",
                &json!({"t": "FLOOD", "d": {"pad": pad}}).to_string(),
            );
        }
        let (_, metrics) = http(addr, "GET", "/metrics", "");
        slow = metrics
            .lines()
            .filter(|l| l.starts_with("hearth_gateway_slow_consumers_total{"))
            .map(|l| {
                l.rsplit_once(' ')
                    .expect("sample")
                    .1
                    .parse::<u64>()
                    .expect("n")
            })
            .sum();
        if slow > 0 {
            break;
        }
    }
    assert_eq!(slow, 1, "the slow session was disconnected once");
    // What it had already been sent, then a close frame 4000 (resumable), then EOF.
    assert_eq!(c.close_code(), 4000);
    c.expect_eof();
    // The session stayed resumable, but its resume ring is bounded too (1 MiB): a Resume from
    // READY's sequence, long since evicted, is refused with op 9 d:false, never replayed partly.
    let mut c = Client::connect(addr, "?v=10");
    c.hello();
    c.send_json(json!({"op": 6, "d": {"token": token, "session_id": sid, "seq": 1}}));
    let first = c.json();
    assert_eq!(first["op"], 9, "{first}");
    assert_eq!(first["d"], false);
    node.stop();
    node.join().expect("clean stop");
}
