//! A raw WebSocket gateway client and HTTP helpers for tests against an in-process node.
#![allow(dead_code, missing_docs)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use engine::driver::DriverConfig;
use engine::node::{GatewaySpec, Node, NodeSpec};
use engine::shard::ShardConfig;
use gateway_core::ws::{OpCode, Parsed, parse_frame, write_client_frame};
use serde_json::{Value, json};

pub const SECRET: &[u8] = b"gateway-ws-test-secret-0123456789abcdef";
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

pub fn start(heartbeat_interval_ms: u64, grace_ms: u64) -> Node {
    start_with(heartbeat_interval_ms, grace_ms, None)
}

/// A two-shard node, with a message store under `data_dir` when given.
pub fn start_with(
    heartbeat_interval_ms: u64,
    grace_ms: u64,
    data_dir: Option<std::path::PathBuf>,
) -> Node {
    Node::start(NodeSpec {
        shards: 2,
        cores: Vec::new(),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        echo_addr: None,
        driver: DriverConfig {
            ring_entries: 256,
            recv_buffers: 64,
            ..DriverConfig::default()
        },
        shard: ShardConfig::default(),
        mailbox_capacity: 64,
        data_dir,
        gateway: GatewaySpec {
            token_secret: SECRET.to_vec(),
            url: None,
            worker_id: 1,
            heartbeat_interval_ms,
            heartbeat_grace_ms: grace_ms,
            rest_rate_limits: true,
            ..GatewaySpec::default()
        },
    })
    .expect("node starts")
}

/// One HTTP/1.1 request on a fresh connection; returns (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    http_with(addr, method, path, "", body)
}

/// [`http`] with extra header lines (`headers`: each ending in CRLF).
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\n{headers}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out[9..12].parse().expect("status");
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_owned())
}

pub fn create_user(addr: SocketAddr, name: &str) -> (u64, String) {
    let (status, body) = http(
        addr,
        "POST",
        "/control/users",
        &json!({"username": name, "bot": true}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    (
        v["id"].as_str().expect("id").parse().expect("snowflake"),
        v["token"].as_str().expect("token").to_owned(),
    )
}

/// A frame as the client saw it.
#[derive(Debug)]
pub struct Got {
    /// Frame opcode.
    pub opcode: OpCode,
    /// Final fragment.
    pub fin: bool,
    /// Payload.
    pub payload: Vec<u8>,
}

pub struct Client {
    /// The socket.
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr, query: &str) -> Client {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
        s.set_nodelay(true).expect("nodelay");
        write!(
            s,
            "GET /{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .expect("write");
        let mut c = Client { s, buf: Vec::new() };
        let head = c.read_until_head();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "RFC 6455 sample key: {head}"
        );
        c
    }

    pub fn read_until_head(&mut self) -> String {
        loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..p + 4]).into_owned();
                self.buf.drain(..p + 4);
                return head;
            }
            self.fill();
        }
    }

    pub fn fill(&mut self) -> usize {
        let mut tmp = [0u8; 65536];
        let n = self.s.read(&mut tmp).expect("read");
        self.buf.extend_from_slice(&tmp[..n]);
        n
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("send");
    }

    pub fn send_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        let mut out = Vec::new();
        write_client_frame(opcode, fin, [1, 2, 3, 4], payload, &mut out);
        self.send_raw(&out);
    }

    pub fn send_json(&mut self, v: Value) {
        self.send_frame(OpCode::Text, true, v.to_string().as_bytes());
    }

    /// The next frame, or None at EOF.
    pub fn frame(&mut self) -> Option<Got> {
        loop {
            match parse_frame(&mut self.buf, false, 1 << 24) {
                Parsed::Frame(f) => {
                    let got = Got {
                        opcode: f.header.opcode,
                        fin: f.header.fin,
                        payload: f.payload.to_vec(),
                    };
                    let n = f.consumed;
                    self.buf.drain(..n);
                    return Some(got);
                }
                Parsed::NeedMore(_) => {
                    if self.fill() == 0 {
                        return None;
                    }
                }
                Parsed::Error(e) => panic!("server sent a bad frame: {e:?}"),
            }
        }
    }

    pub fn json(&mut self) -> Value {
        let f = self.frame().expect("frame");
        assert_eq!(f.opcode, OpCode::Text, "{f:?}");
        serde_json::from_slice(&f.payload).expect("json")
    }

    /// Reads until a close frame; returns its code.
    pub fn close_code(&mut self) -> u16 {
        loop {
            let f = self.frame().expect("a close frame before EOF");
            if f.opcode == OpCode::Close {
                return u16::from_be_bytes([f.payload[0], f.payload[1]]);
            }
        }
    }

    pub fn expect_eof(&mut self) {
        let deadline = Instant::now() + READ_TIMEOUT;
        while Instant::now() < deadline {
            if self.frame().is_none() {
                return;
            }
        }
        panic!("connection not closed");
    }

    pub fn hello(&mut self) -> u64 {
        let h = self.json();
        assert_eq!(h["op"], 10);
        h["d"]["heartbeat_interval"].as_u64().expect("interval")
    }

    pub fn identify(&mut self, token: &str) -> Value {
        self.hello();
        self.send_json(json!({"op": 2, "d": {"token": token, "intents": 513,
            "properties": {"os": "linux", "browser": "t", "device": "t"}}}));
        let ready = self.json();
        assert_eq!(ready["t"], "READY", "{ready}");
        ready
    }
}
