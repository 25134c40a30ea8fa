//! Messages beyond send and read, through REST with their gateway events: edits, pins (kept as a
//! new version in the store), reactions (counts in the stored message, who reacted listed),
//! typing, read-state acks, bulk delete and delete; and concurrent changes of one message from
//! several connections, which the owner shard applies one after another without losing any.

mod rest_e2e_support;
mod wsclient;

use rest_e2e_support::{Http, TestNode, User, id_of, is_id, session, until};
use serde_json::{Value, json};

const THUMBS_UP: &str = "\u{1F44D}";
const THUMBS_UP_PATH: &str = "%F0%9F%91%8D";
const PARTY_PATH: &str = "%F0%9F%8E%89";
/// Users reacting at the same time in the concurrency part.
const CONCURRENT_USERS: usize = 6;

fn is(v: &Value, t: &str) -> bool {
    v["t"] == t
}

#[test]
fn edits_pins_reactions_typing_acks_and_deletes() {
    let node = TestNode::start_unlimited("messages");
    let mut api = Http::connect(node.addr);
    let owner = api.user("owner");
    let alice = api.user("alice");
    let guild = api.control(
        "/control/guilds",
        json!({"name": "Messages", "owner_id": owner.id.to_string()}),
    );
    let g = guild.id("id");
    let c = guild.id("system_channel_id");
    let r = api.control(
        &format!("/control/guilds/{g}/members"),
        json!({"user_id": alice.id.to_string(), "nick": "Alice"}),
    );
    assert_eq!((r.status, r.body["nick"].clone()), (200, json!("Alice")));
    let mut s_owner = session(node.addr, &owner, &[g]);
    let mut s_alice = session(node.addr, &alice, &[g]);
    let m1 = api.say(c, &owner, "first");
    let m2 = api.say(c, &owner, "second");
    let m3 = api.say(
        c,
        &owner,
        "third <@ALICE>"
            .replace("ALICE", &alice.id.to_string())
            .as_str(),
    );
    let m4 = api.say(c, &alice, "fourth");
    let ev = until(&mut s_alice, "mention", |v| {
        is(v, "MESSAGE_CREATE") && is_id(&v["d"]["id"], m3)
    });
    assert_eq!(ev["d"]["mentions"][0]["id"], alice.id.to_string());
    let msg = |id: u64| format!("/channels/{c}/messages/{id}");

    // Edit.
    let r = api.patch(&msg(m1), &owner.token, json!({"content": "first, edited"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["edited_timestamp"].is_string());
    let ev = until(&mut s_alice, "MESSAGE_UPDATE", |v| is(v, "MESSAGE_UPDATE"));
    assert_eq!(ev["d"]["content"], "first, edited");

    // Pins: a new version of the message with `pinned`, CHANNEL_PINS_UPDATE, listed in pins.
    let r = api.put(&format!("/channels/{c}/pins/{m2}"), &owner.token);
    assert_eq!(r.status, 204, "{}", r.body);
    let ev = until(&mut s_alice, "CHANNEL_PINS_UPDATE", |v| {
        is(v, "CHANNEL_PINS_UPDATE")
    });
    assert_eq!(id_of(&ev["d"], "channel_id"), c);
    assert!(ev["d"]["last_pin_timestamp"].is_string());
    let pins = api.get(&format!("/channels/{c}/pins"), &alice.token);
    assert_eq!(pins.body.as_array().map(Vec::len), Some(1));
    assert_eq!(pins.body[0]["id"], m2.to_string());
    assert_eq!(pins.body[0]["pinned"], true);
    assert_eq!(
        api.put(&format!("/channels/{c}/pins/{m2}"), &owner.token)
            .status,
        204
    );
    assert_eq!(
        api.delete(&format!("/channels/{c}/pins/{m2}"), &owner.token)
            .status,
        204
    );
    let pins = api.get(&format!("/channels/{c}/pins"), &alice.token);
    assert_eq!(pins.body, json!([]));
    assert_eq!(api.get(&msg(m2), &alice.token).body["pinned"], false);

    // Reactions.
    let react = |api: &mut Http, who: &User, emoji: &str| {
        api.put(
            &format!("/channels/{c}/messages/{m3}/reactions/{emoji}/@me"),
            &who.token,
        )
    };
    assert_eq!(react(&mut api, &alice, THUMBS_UP_PATH).status, 204);
    let ev = until(&mut s_owner, "MESSAGE_REACTION_ADD", |v| {
        is(v, "MESSAGE_REACTION_ADD")
    });
    assert_eq!(ev["d"]["user_id"], alice.id.to_string());
    assert_eq!(ev["d"]["emoji"]["name"], THUMBS_UP);
    assert_eq!(ev["d"]["message_id"], m3.to_string());
    assert_eq!(ev["d"]["member"]["nick"], "Alice");
    assert_eq!(
        react(&mut api, &alice, THUMBS_UP_PATH).status,
        204,
        "twice is a no-op"
    );
    assert_eq!(react(&mut api, &owner, THUMBS_UP_PATH).status, 204);
    assert_eq!(react(&mut api, &owner, PARTY_PATH).status, 204);
    let got = api.get(&msg(m3), &owner.token);
    let reactions = got.body["reactions"].as_array().expect("reactions").clone();
    assert_eq!(reactions.len(), 2);
    assert_eq!(reactions[0]["emoji"]["name"], THUMBS_UP);
    assert_eq!(
        (reactions[0]["count"].clone(), reactions[0]["me"].clone()),
        (json!(2), json!(true))
    );
    let who = api.get(
        &format!("/channels/{c}/messages/{m3}/reactions/{THUMBS_UP_PATH}"),
        &alice.token,
    );
    let ids: Vec<u64> = who
        .body
        .as_array()
        .expect("users")
        .iter()
        .map(|u| id_of(u, "id"))
        .collect();
    assert_eq!(ids, vec![owner.id, alice.id]);
    let r = api.delete(
        &format!("/channels/{c}/messages/{m3}/reactions/{THUMBS_UP_PATH}/@me"),
        &alice.token,
    );
    assert_eq!(r.status, 204);
    let ev = until(&mut s_owner, "MESSAGE_REACTION_REMOVE", |v| {
        is(v, "MESSAGE_REACTION_REMOVE")
    });
    assert_eq!(ev["d"]["user_id"], alice.id.to_string());
    let r = api.delete(
        &format!(
            "/channels/{c}/messages/{m3}/reactions/{PARTY_PATH}/{}",
            owner.id
        ),
        &alice.token,
    );
    assert_eq!(
        r.err(),
        (403, 50013),
        "someone else's reaction needs MANAGE_MESSAGES"
    );
    let r = api.put(
        &format!("/channels/{c}/messages/{m3}/reactions/custom:123/@me"),
        &alice.token,
    );
    assert_eq!(r.err(), (400, 10014), "no guild emojis here");
    let got = api.get(&msg(m3), &alice.token);
    assert_eq!(got.body["reactions"][0]["count"], 1);
    assert_eq!(got.body["reactions"][0]["me"], false);
    let r = api.delete(
        &format!("/channels/{c}/messages/{m3}/reactions"),
        &owner.token,
    );
    assert_eq!(r.status, 204);
    until(&mut s_alice, "MESSAGE_REACTION_REMOVE_ALL", |v| {
        is(v, "MESSAGE_REACTION_REMOVE_ALL")
    });
    assert_eq!(api.get(&msg(m3), &alice.token).body.get("reactions"), None);
    assert_eq!(
        api.get(&msg(m3), &alice.token).body["content"],
        format!("third <@{}>", alice.id)
    );

    // Concurrent reactions from several connections: none is lost.
    let mut reactors = Vec::new();
    for i in 0..CONCURRENT_USERS {
        let u = api.user(&format!("reactor-{i}"));
        let r = api.control(
            &format!("/control/guilds/{g}/members"),
            json!({"user_id": u.id.to_string()}),
        );
        assert_eq!(r.status, 200);
        reactors.push((u, Http::connect(node.addr)));
    }
    let reaction_path =
        format!("/api/v10/channels/{c}/messages/{m4}/reactions/{THUMBS_UP_PATH}/@me");
    let pin_path = format!("/api/v10/channels/{c}/pins/{m4}");
    // Requests go out on every connection before any answer is read.
    let answers: Vec<u16> = std::thread::scope(|scope| {
        let mut handles: Vec<_> = reactors
            .iter_mut()
            .map(|(u, conn)| {
                let path = reaction_path.clone();
                scope.spawn(move || conn.raw("PUT", &path, Some(&u.token), "").status)
            })
            .collect();
        let pin = scope.spawn(|| {
            let mut conn = Http::connect(node.addr);
            conn.raw("PUT", &pin_path, Some(&owner.token), "").status
        });
        handles.push(pin);
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert!(answers.iter().all(|&s| s == 204), "{answers:?}");
    let got = api.get(&msg(m4), &owner.token);
    assert_eq!(got.body["reactions"][0]["count"], CONCURRENT_USERS);
    assert_eq!(got.body["pinned"], true, "the pin survived the reactions");
    assert_eq!(got.body["content"], "fourth");

    // Typing and read-state acks.
    let r = api.post(&format!("/channels/{c}/typing"), &alice.token, json!({}));
    assert_eq!(r.status, 204, "{}", r.body);
    let ev = until(&mut s_owner, "TYPING_START", |v| is(v, "TYPING_START"));
    assert_eq!(ev["d"]["user_id"], alice.id.to_string());
    assert_eq!(id_of(&ev["d"], "channel_id"), c);
    let r = api.post(
        &format!("{}/ack", msg(m4)),
        &alice.token,
        json!({"token": null}),
    );
    assert_eq!((r.status, r.body.clone()), (200, json!({"token": null})));

    // Bulk delete (MANAGE_MESSAGES), then a delete by the author.
    let bulk = format!("/channels/{c}/messages/bulk-delete");
    let r = api.post(
        &bulk,
        &alice.token,
        json!({"messages": [m1.to_string(), m2.to_string()]}),
    );
    assert_eq!(r.err(), (403, 50013), "{}", r.body);
    let r = api.post(&bulk, &owner.token, json!({"messages": [m1.to_string()]}));
    assert_eq!(r.err(), (400, 50035), "{}", r.body);
    let r = api.post(
        &bulk,
        &owner.token,
        json!({"messages": [m1.to_string(), m2.to_string()]}),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let ev = until(&mut s_alice, "MESSAGE_DELETE_BULK", |v| {
        is(v, "MESSAGE_DELETE_BULK")
    });
    assert_eq!(ev["d"]["ids"], json!([m1.to_string(), m2.to_string()]));
    let r = api.delete(&msg(m3), &alice.token);
    assert_eq!(r.err(), (403, 50013), "not hers");
    let r = api.delete(&msg(m4), &alice.token);
    assert_eq!(r.status, 204, "{}", r.body);
    let ev = until(&mut s_owner, "MESSAGE_DELETE", |v| is(v, "MESSAGE_DELETE"));
    assert_eq!(id_of(&ev["d"], "id"), m4);
    assert_eq!(api.history(c, &owner), vec![m3]);
    assert_eq!(api.get(&msg(m4), &owner.token).err(), (404, 10008));
    // A change to a deleted message does not bring it back.
    let r = api.put(
        &format!("/channels/{c}/messages/{m4}/reactions/{THUMBS_UP_PATH}/@me"),
        &owner.token,
    );
    assert_eq!(r.err(), (404, 10008));
    assert_eq!(api.history(c, &owner), vec![m3]);
}
