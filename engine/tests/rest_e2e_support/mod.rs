//! Shared by the `rest_e2e_*` tests: an in-process two-shard node with a message store in a
//! temporary directory, an HTTP/1.1 client that keeps its connection (so all its requests are
//! served by the same shard, whose rate limiter then sees them all), and gateway helpers on top of
//! the raw WebSocket client of `wsclient`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use engine::node::Node;
use serde_json::{Value, json};

use engine::driver::DriverConfig;
use engine::node::{GatewaySpec, NodeSpec};
use engine::shard::ShardConfig;

use crate::wsclient::{Client, READ_TIMEOUT, SECRET};

/// GUILDS | GUILD_MEMBERS | GUILD_MODERATION | GUILD_INVITES | GUILD_MESSAGES |
/// GUILD_MESSAGE_REACTIONS | GUILD_MESSAGE_TYPING | MESSAGE_CONTENT: everything these tests look
/// at, and no presences (their timing is not what is tested here).
pub const INTENTS: u64 =
    1 | (1 << 1) | (1 << 2) | (1 << 6) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 15);
/// Heartbeat interval of the test node: longer than any test, so no session is closed as a zombie.
const HEARTBEAT_MS: u64 = 41_250;
/// Extra grace before a silent session is closed.
const GRACE_MS: u64 = 10_000;

/// A running node with a message store, stopped and cleaned up on drop.
pub struct TestNode {
    node: Option<Node>,
    /// The HTTP address of every shard.
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl TestNode {
    /// Starts a two-shard node with REST rate limits, whose store lives in a fresh temporary
    /// directory.
    pub fn start(test: &str) -> TestNode {
        Self::start_with(test, true)
    }

    /// The same without REST rate limits (for tests that send many messages quickly).
    pub fn start_unlimited(test: &str) -> TestNode {
        Self::start_with(test, false)
    }

    fn start_with(test: &str, rest_rate_limits: bool) -> TestNode {
        let dir =
            std::env::temp_dir().join(format!("hearth-rest-e2e-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let node = Node::start(NodeSpec {
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
            data_dir: Some(dir.clone()),
            gateway: GatewaySpec {
                token_secret: SECRET.to_vec(),
                url: None,
                worker_id: 1,
                heartbeat_interval_ms: HEARTBEAT_MS,
                heartbeat_grace_ms: GRACE_MS,
                rest_rate_limits,
                ..GatewaySpec::default()
            },
        })
        .expect("node starts");
        let addr = node.addrs().http;
        TestNode {
            node: Some(node),
            addr,
            dir,
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            node.stop();
            let _ = node.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An answer.
#[derive(Debug)]
pub struct Resp {
    /// HTTP status.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Null` when empty).
    pub body: Value,
}

impl Resp {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The Discord error code of an error body.
    pub fn code(&self) -> u64 {
        self.body["code"].as_u64().unwrap_or(u64::MAX)
    }

    /// `(status, code)` of an error answer.
    pub fn err(&self) -> (u16, u64) {
        (self.status, self.code())
    }

    /// A snowflake field of the body.
    pub fn id(&self, field: &str) -> u64 {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field} in {}", self.body))
            .parse()
            .expect("snowflake")
    }
}

/// An HTTP/1.1 client on one keep-alive connection.
pub struct Http {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Http {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> Http {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
        s.set_nodelay(true).expect("nodelay");
        Http { s, buf: Vec::new() }
    }

    /// Sends a request with a raw body and reads the answer.
    pub fn raw(&mut self, method: &str, path: &str, token: Option<&str>, body: &str) -> Resp {
        let auth = token
            .map(|t| format!("authorization: Bot {t}\r\n"))
            .unwrap_or_default();
        write!(
            self.s,
            "{method} {path} HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let head_end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            self.fill();
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).expect("utf-8 head");
        let mut lines = head.split("\r\n");
        let status: u16 = lines.next().expect("status line")[9..12]
            .parse()
            .expect("status");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().expect("length"))
            .unwrap_or(0);
        while self.buf.len() < head_end + 4 + len {
            self.fill();
        }
        let body_bytes: Vec<u8> = self
            .buf
            .drain(..head_end + 4 + len)
            .skip(head_end + 4)
            .collect();
        let body = if body_bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body_bytes)
                .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&body_bytes)))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    fn fill(&mut self) {
        let mut tmp = [0u8; 65536];
        let n = self.s.read(&mut tmp).expect("read");
        assert!(n > 0, "connection closed by the server");
        self.buf.extend_from_slice(&tmp[..n]);
    }

    /// A request to the Discord API (`/api/v10` + `path`) with a JSON body.
    pub fn api(&mut self, method: &str, path: &str, token: &str, body: Option<Value>) -> Resp {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.raw(method, &format!("/api/v10{path}"), Some(token), &body)
    }

    /// `GET /api/v10{path}`.
    pub fn get(&mut self, path: &str, token: &str) -> Resp {
        self.api("GET", path, token, None)
    }

    /// `POST /api/v10{path}`.
    pub fn post(&mut self, path: &str, token: &str, body: Value) -> Resp {
        self.api("POST", path, token, Some(body))
    }

    /// `PATCH /api/v10{path}`.
    pub fn patch(&mut self, path: &str, token: &str, body: Value) -> Resp {
        self.api("PATCH", path, token, Some(body))
    }

    /// `PUT /api/v10{path}` without a body.
    pub fn put(&mut self, path: &str, token: &str) -> Resp {
        self.api("PUT", path, token, None)
    }

    /// `DELETE /api/v10{path}`.
    pub fn delete(&mut self, path: &str, token: &str) -> Resp {
        self.api("DELETE", path, token, None)
    }

    /// A control API request.
    pub fn control(&mut self, path: &str, body: Value) -> Resp {
        self.raw("POST", path, None, &body.to_string())
    }

    /// A new bot user through the control API.
    pub fn user(&mut self, name: &str) -> User {
        let r = self.control("/control/users", json!({"username": name, "bot": true}));
        assert_eq!(r.status, 200, "{}", r.body);
        User {
            id: r.id("id"),
            token: r.body["token"].as_str().expect("token").to_owned(),
        }
    }

    /// Sends a message and checks it was accepted; returns its id.
    pub fn say(&mut self, channel: u64, who: &User, content: &str) -> u64 {
        let r = self.post(
            &format!("/channels/{channel}/messages"),
            &who.token,
            json!({"content": content}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.id("id")
    }

    /// A channel's message ids, newest first, as `who` reads them.
    pub fn history(&mut self, channel: u64, who: &User) -> Vec<u64> {
        let r = self.get(
            &format!("/channels/{channel}/messages?limit=100"),
            &who.token,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
            .as_array()
            .expect("array")
            .iter()
            .map(|m| m["id"].as_str().expect("id").parse().expect("snowflake"))
            .collect()
    }
}

/// A user with its token.
#[derive(Clone, Debug)]
pub struct User {
    /// User id.
    pub id: u64,
    /// Bot token.
    pub token: String,
}

/// A snowflake field of a JSON value.
pub fn id_of(v: &Value, field: &str) -> u64 {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
        .parse()
        .expect("snowflake")
}

/// A gateway session: Hello, Identify with [`INTENTS`], READY, then GUILD_CREATE for each of
/// `guilds`.
pub fn session(addr: SocketAddr, who: &User, guilds: &[u64]) -> Client {
    let mut c = Client::connect(addr, "?v=10&encoding=json");
    c.hello();
    c.send_json(
        json!({"op": 2, "d": {"token": format!("Bot {}", who.token), "intents": INTENTS,
        "properties": {"os": "linux", "browser": "t", "device": "t"}}}),
    );
    let ready = c.json();
    assert_eq!(ready["t"], "READY", "{ready}");
    for &g in guilds {
        until(&mut c, "GUILD_CREATE", |v| {
            v["t"] == "GUILD_CREATE" && is_id(&v["d"]["id"], g)
        });
    }
    c
}

/// Reads dispatches until one matches `pred` (others are skipped); panics after the read timeout.
pub fn until(c: &mut Client, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + READ_TIMEOUT;
    while Instant::now() < deadline {
        let v = c.json();
        if pred(&v) {
            return v;
        }
    }
    panic!("no {what}");
}

/// Every dispatch up to and including the first that matches `pred`.
pub fn collect_until(c: &mut Client, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + READ_TIMEOUT + Duration::from_secs(5);
    let mut out = Vec::new();
    while Instant::now() < deadline {
        let v = c.json();
        let done = pred(&v);
        out.push(v);
        if done {
            return out;
        }
    }
    panic!("marker never arrived; got {out:?}");
}

/// Whether `v` is a MESSAGE_CREATE with this id.
pub fn is_message(v: &Value, id: u64) -> bool {
    v["t"] == "MESSAGE_CREATE" && is_id(&v["d"]["id"], id)
}

/// Whether `v` is the snowflake `id` written as a string.
pub fn is_id(v: &Value, id: u64) -> bool {
    v.as_str().and_then(|s| s.parse::<u64>().ok()) == Some(id)
}
