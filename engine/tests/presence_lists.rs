//! Presence, op 8 member requests and op 14 lazy member lists through a real node: members
//! coming online show up in PRESENCE_UPDATE and as list updates for subscribers of the affected
//! range only; op 8 answers GUILD_MEMBERS_CHUNK.

mod wsclient;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wsclient::{Client, create_user, http, start};

const PRESENCE_INTENTS: u64 = 1 | (1 << 1) | (1 << 8); // GUILDS | GUILD_MEMBERS | GUILD_PRESENCES

fn post(addr: std::net::SocketAddr, path: &str, body: Value) -> Value {
    let (status, body) = http(addr, "POST", path, &body.to_string());
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

fn identify(c: &mut Client, token: &str) -> Value {
    c.hello();
    c.send_json(
        json!({"op": 2, "d": {"token": token, "intents": PRESENCE_INTENTS,
        "properties": {}, "large_threshold": 50}}),
    );
    let ready = c.json();
    assert_eq!(ready["t"], "READY");
    ready
}

/// Reads dispatches until `pred` matches one (skipping others); panics after the timeout.
fn until(c: &mut Client, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let v = c.json();
        if pred(&v) {
            return v;
        }
    }
    panic!("no {what}");
}

#[test]
fn presence_member_chunks_and_lazy_lists() {
    let node = start(41_250, 10_000);
    let addr = node.addrs().http;
    let (owner, owner_token) = create_user(addr, "owner");
    let guild = post(
        addr,
        "/control/guilds",
        json!({"name": "Presence Guild", "owner_id": owner.to_string()}),
    );
    let g = guild["id"].as_str().expect("id").to_owned();
    // 60 members besides the owner: a large guild at large_threshold 50.
    let mut members = Vec::new();
    for i in 0..60 {
        let (id, token) = create_user(addr, &format!("member-{i:02}"));
        post(
            addr,
            &format!("/control/guilds/{g}/members"),
            json!({"user_id": id.to_string()}),
        );
        members.push((id, token));
    }
    let mut watcher = Client::connect(addr, "?v=10");
    identify(&mut watcher, &owner_token);
    let gc = until(&mut watcher, "GUILD_CREATE", |v| v["t"] == "GUILD_CREATE");
    assert_eq!(gc["d"]["member_count"], 61);
    assert_eq!(gc["d"]["large"], true);
    assert_eq!(gc["d"]["members"].as_array().expect("members").len(), 1);

    // The owner's own presence reaches the guild (coalesced, so it comes a moment later).
    let own = until(&mut watcher, "own presence", |v| {
        v["t"] == "PRESENCE_UPDATE"
    });
    assert_eq!(own["d"]["user"]["id"], owner.to_string());
    assert_eq!(own["d"]["status"], "online");

    // Op 8: every member, in one chunk, with the nonce.
    watcher
        .send_json(json!({"op": 8, "d": {"guild_id": g, "query": "", "limit": 0, "nonce": "n8"}}));
    let chunk = until(&mut watcher, "GUILD_MEMBERS_CHUNK", |v| {
        v["t"] == "GUILD_MEMBERS_CHUNK"
    });
    assert_eq!(chunk["d"]["members"].as_array().expect("m").len(), 61);
    assert_eq!(chunk["d"]["chunk_index"], 0);
    assert_eq!(chunk["d"]["chunk_count"], 1);
    assert_eq!(chunk["d"]["nonce"], "n8");
    // A prefix query and ids that do not exist.
    watcher.send_json(json!({"op": 8, "d": {"guild_id": g, "query": "member-1", "limit": 5}}));
    let chunk = until(&mut watcher, "query chunk", |v| {
        v["t"] == "GUILD_MEMBERS_CHUNK"
    });
    let names: Vec<&str> = chunk["d"]["members"]
        .as_array()
        .expect("m")
        .iter()
        .map(|m| m["user"]["username"].as_str().expect("name"))
        .collect();
    assert_eq!(names.len(), 5);
    assert!(names.iter().all(|n| n.starts_with("member-1")), "{names:?}");
    watcher.send_json(
        json!({"op": 8, "d": {"guild_id": g, "user_ids": ["1", members[0].0.to_string()]}}),
    );
    let chunk = until(&mut watcher, "ids chunk", |v| {
        v["t"] == "GUILD_MEMBERS_CHUNK"
    });
    assert_eq!(chunk["d"]["members"].as_array().expect("m").len(), 1);
    assert_eq!(chunk["d"]["not_found"], json!(["1"]));

    // Op 14: rows 0..=99 of the list: SYNC with the online owner first, everyone else offline.
    let general = guild["system_channel_id"]
        .as_str()
        .expect("channel")
        .to_owned();
    watcher.send_json(
        json!({"op": 14, "d": {"guild_id": g, "channels": {general.clone(): [[0, 99]]}}}),
    );
    let sync = until(&mut watcher, "SYNC", |v| {
        v["t"] == "GUILD_MEMBER_LIST_UPDATE" && v["d"]["ops"][0]["op"] == "SYNC"
    });
    assert_eq!(sync["d"]["member_count"], 61);
    assert_eq!(sync["d"]["online_count"], 1);
    let items = sync["d"]["ops"][0]["items"].as_array().expect("items");
    assert_eq!(items[0]["group"]["id"], "online");
    assert_eq!(items[1]["member"]["user"]["id"], owner.to_string());
    assert_eq!(items[2]["group"]["id"], "offline");
    assert_eq!(items.len(), 63, "two headers and 61 members");

    // A member comes online: PRESENCE_UPDATE and a list update for the subscriber.
    let (mid, mtoken) = &members[7];
    let mut m = Client::connect(addr, "?v=10");
    identify(&mut m, mtoken);
    let p = until(&mut watcher, "PRESENCE_UPDATE", |v| {
        v["t"] == "PRESENCE_UPDATE"
    });
    assert_eq!(p["d"]["user"]["id"], mid.to_string());
    assert_eq!(p["d"]["status"], "online");
    assert_eq!(p["d"]["guild_id"], g);
    let upd = until(&mut watcher, "list update", |v| {
        v["t"] == "GUILD_MEMBER_LIST_UPDATE" && v["d"]["ops"][0]["op"] != "SYNC"
    });
    assert_eq!(upd["d"]["online_count"], 2);
    let ops = upd["d"]["ops"].as_array().expect("ops");
    assert!(
        ops.iter().any(|o| o["op"] == "INSERT"
            && o["item"]["member"]["user"]["id"].as_str() == Some(mid.to_string().as_str())),
        "{ops:?}"
    );

    // Op 3 to idle, then the member's session ends: offline after the grace period.
    m.send_json(
        json!({"op": 3, "d": {"since": null, "activities": [], "status": "idle", "afk": true}}),
    );
    let idle = until(&mut watcher, "idle", |v| {
        v["t"] == "PRESENCE_UPDATE" && v["d"]["status"] == "idle"
    });
    assert_eq!(idle["d"]["user"]["id"], mid.to_string());
    m.send_frame(
        gateway_core::ws::OpCode::Close,
        true,
        &1000u16.to_be_bytes(),
    );
    m.close_code();
    let off = until(&mut watcher, "offline", |v| {
        v["t"] == "PRESENCE_UPDATE" && v["d"]["status"] == "offline"
    });
    assert_eq!(off["d"]["user"]["id"], mid.to_string());
    let upd = until(&mut watcher, "list update", |v| {
        v["t"] == "GUILD_MEMBER_LIST_UPDATE" && v["d"]["online_count"] == 1
    });
    assert!(!upd["d"]["ops"].as_array().expect("ops").is_empty());
    node.stop();
    node.join().expect("clean stop");
}
