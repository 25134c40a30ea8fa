//! Cross-shard work wakes a sleeping io_uring shard through its remote waker (the eventfd), rather
//! than waiting for the loop's idle timeout: after requests that every shard must answer, the
//! shards report wake-ups, and each request is answered by all of them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use engine::driver::DriverConfig;
use engine::node::{Node, NodeSpec};
use engine::shard::ShardConfig;

fn get(s: &mut TcpStream, path: &str) -> String {
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "closed early");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .expect("content-length");
            if buf.len() >= end + 4 + len {
                return String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
            }
        }
    }
}

#[test]
fn cross_shard_requests_wake_sleeping_shards() {
    let node = Node::start(NodeSpec {
        shards: 2,
        cores: Vec::new(),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        echo_addr: None,
        driver: DriverConfig {
            ring_entries: 128,
            recv_buffers: 64,
            ..DriverConfig::default()
        },
        shard: ShardConfig::default(),
        mailbox_capacity: 16,
        gateway: Default::default(),
        data_dir: None,
    })
    .expect("node");
    let http = node.addrs().http;
    let mut conns: Vec<TcpStream> = (0..4)
        .map(|_| {
            let s = TcpStream::connect(http).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            // The request goes out in several writes; without this the client's Nagle waits for
            // the server's delayed ACK on each one.
            s.set_nodelay(true).expect("nodelay");
            s
        })
        .collect();
    for round in 0..10 {
        for s in &mut conns {
            // Give the other shard time to go to sleep between requests.
            std::thread::sleep(Duration::from_millis(5));
            let body = get(s, "/admin/shards");
            let v: serde_json::Value = serde_json::from_str(&body).expect("json");
            assert_eq!(
                v["shards"].as_array().map(|a| a.len()),
                Some(2),
                "round {round}"
            );
        }
    }
    let text = get(&mut conns[0], "/metrics");
    let wakeups: u64 = text
        .lines()
        .filter(|l| l.starts_with("hearth_mailbox_wakeups_total{"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<u64>().ok()))
        .sum();
    assert!(wakeups > 0, "no remote wake-ups recorded:\n{text}");
    let tasks: u64 = text
        .lines()
        .filter(|l| l.starts_with("hearth_tasks_total{"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<u64>().ok()))
        .sum();
    // 40 gathers x 2 shards x (map + reply), at least.
    assert!(tasks >= 160, "tasks {tasks}");
    drop(conns);
    node.stop();
    node.join().expect("clean stop");
}
