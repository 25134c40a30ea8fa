//! No session without VIEW_CHANNEL ever receives a message of that channel: a guild with a
//! private channel (@everyone denied VIEW_CHANNEL, one role allowed, a member overwrite allowing
//! one user without the role and another denying one user with it), several users each with one
//! or two gateway sessions (spread over both shards by the kernel), many messages in the private
//! and the public channel; then every session is read up to a final marker message.
//!
//! Why the marker proves absence: all events of one guild leave its owner shard through one
//! mailbox per session shard, in order, so a session that has received the marker (sent last) has
//! received everything it was going to receive before it.

mod rest_e2e_support;
mod wsclient;

use std::collections::BTreeMap;

use rest_e2e_support::{Http, TestNode, User, collect_until, id_of, is_message, session};
use serde_json::{Value, json};
use wsclient::Client;

const VIEW_CHANNEL: u64 = 1 << 10;
/// Messages per channel per phase.
const MESSAGES_PER_CHANNEL: usize = 12;

/// The MESSAGE_CREATE ids a session received, per channel, in arrival order.
fn received(frames: &[Value]) -> BTreeMap<u64, Vec<u64>> {
    let mut out: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for f in frames.iter().filter(|f| f["t"] == "MESSAGE_CREATE") {
        out.entry(id_of(&f["d"], "channel_id"))
            .or_default()
            .push(id_of(&f["d"], "id"));
    }
    out
}

/// Whether any frame names `channel` (a message, a typing indicator, a channel event...).
fn mentions_channel(frames: &[Value], channel: u64) -> bool {
    let c = channel.to_string();
    frames.iter().any(|f| {
        f["d"]["channel_id"] == c
            || (f["t"].as_str().is_some_and(|t| t.starts_with("CHANNEL_")) && f["d"]["id"] == c)
    })
}

struct Member {
    user: User,
    sessions: Vec<Client>,
    sees_secret: bool,
}

#[test]
fn no_session_without_view_channel_receives_a_message_of_that_channel() {
    let node = TestNode::start_unlimited("visibility");
    let mut api = Http::connect(node.addr);
    let owner = api.user("owner");
    let guild = api.post("/guilds", &owner.token, json!({"name": "Visibility"}));
    assert_eq!(guild.status, 201, "{}", guild.body);
    let g = guild.id("id");
    let general = guild.id("system_channel_id");
    let role = api.post(
        &format!("/guilds/{g}/roles"),
        &owner.token,
        json!({"name": "insiders"}),
    );
    assert_eq!(role.status, 200, "{}", role.body);
    let r = role.id("id");
    let invite = api.post(
        &format!("/channels/{general}/invites"),
        &owner.token,
        json!({}),
    );
    assert_eq!(invite.status, 200, "{}", invite.body);
    let code = invite.body["code"].as_str().expect("code").to_owned();

    // (name, has the role, member overwrite on the secret channel)
    let plan: [(&str, bool, Option<bool>); 7] = [
        ("insider-a", true, None),
        ("insider-b", true, None),
        ("outsider-a", false, None),
        ("outsider-b", false, None),
        ("guest", false, Some(true)),
        ("excluded", true, Some(false)),
        ("another-outsider", false, None),
    ];
    let mut users = Vec::new();
    for (name, with_role, _) in plan {
        let u = api.user(name);
        let j = api.post(&format!("/invites/{code}"), &u.token, json!({}));
        assert_eq!(j.status, 200, "{}", j.body);
        if with_role {
            let a = api.put(
                &format!("/guilds/{g}/members/{}/roles/{r}", u.id),
                &owner.token,
            );
            assert_eq!(a.status, 204, "{}", a.body);
        }
        users.push(u);
    }
    let mut overwrites = vec![
        json!({"id": g.to_string(), "type": 0, "deny": VIEW_CHANNEL.to_string()}),
        json!({"id": r.to_string(), "type": 0, "allow": VIEW_CHANNEL.to_string()}),
    ];
    for ((_, _, member_ow), u) in plan.iter().zip(&users) {
        match member_ow {
            Some(true) => overwrites.push(
                json!({"id": u.id.to_string(), "type": 1, "allow": VIEW_CHANNEL.to_string()}),
            ),
            Some(false) => overwrites
                .push(json!({"id": u.id.to_string(), "type": 1, "deny": VIEW_CHANNEL.to_string()})),
            None => {}
        }
    }
    let secret = api.post(
        &format!("/guilds/{g}/channels"),
        &owner.token,
        json!({"name": "secret", "type": 0, "permission_overwrites": overwrites}),
    );
    assert_eq!(secret.status, 201, "{}", secret.body);
    let secret = secret.id("id");

    // Sessions: two for the owner and the first user of each kind, one for the others.
    let mut members = vec![Member {
        user: owner.clone(),
        sessions: (0..2).map(|_| session(node.addr, &owner, &[g])).collect(),
        sees_secret: true,
    }];
    for (i, ((_, with_role, member_ow), u)) in plan.iter().zip(&users).enumerate() {
        let n = if i == 0 || i == 2 { 2 } else { 1 };
        members.push(Member {
            user: u.clone(),
            sessions: (0..n).map(|_| session(node.addr, u, &[g])).collect(),
            sees_secret: member_ow.unwrap_or(*with_role),
        });
    }

    // Outsiders cannot post or read there, and their attempts store nothing.
    for m in members.iter().filter(|m| !m.sees_secret) {
        let r = api.post(
            &format!("/channels/{secret}/messages"),
            &m.user.token,
            json!({"content": "let me in"}),
        );
        assert_eq!(r.err(), (403, 50001), "{}", r.body);
        let r = api.get(&format!("/channels/{secret}/messages"), &m.user.token);
        assert_eq!(r.err(), (403, 50001), "{}", r.body);
    }

    // Phase 1: interleaved messages in both channels from several authors.
    let insider_a = &users[0];
    let outsider_a = &users[2];
    let guest = &users[4];
    let (mut in_secret, mut in_general) = (Vec::new(), Vec::new());
    for i in 0..MESSAGES_PER_CHANNEL {
        let author = [&owner, insider_a, guest][i % 3];
        in_secret.push(api.say(secret, author, &format!("secret {i}")));
        let author = [&owner, outsider_a][i % 2];
        in_general.push(api.say(general, author, &format!("public {i}")));
    }
    let marker = api.say(general, &owner, "marker 1");
    in_general.push(marker);
    for m in &mut members {
        for s in &mut m.sessions {
            let frames = collect_until(s, |v| is_message(v, marker));
            let got = received(&frames);
            assert_eq!(
                got.get(&general),
                Some(&in_general),
                "user {} general",
                m.user.id
            );
            if m.sees_secret {
                assert_eq!(
                    got.get(&secret),
                    Some(&in_secret),
                    "user {} secret",
                    m.user.id
                );
            } else {
                assert_eq!(
                    got.get(&secret),
                    None,
                    "user {} got secret messages",
                    m.user.id
                );
                assert!(
                    !mentions_channel(&frames, secret),
                    "user {}: {frames:?}",
                    m.user.id
                );
            }
        }
    }

    // Phase 2: insider-b loses the role; from then on it receives nothing of the channel.
    let insider_b = users[1].clone();
    let d = api.delete(
        &format!("/guilds/{g}/members/{}/roles/{r}", insider_b.id),
        &owner.token,
    );
    assert_eq!(d.status, 204, "{}", d.body);
    if let Some(m) = members.iter_mut().find(|m| m.user.id == insider_b.id) {
        m.sees_secret = false;
    }
    let mut in_secret = Vec::new();
    let mut in_general = Vec::new();
    for i in 0..MESSAGES_PER_CHANNEL {
        in_secret.push(api.say(
            secret,
            [&owner, insider_a][i % 2],
            &format!("later secret {i}"),
        ));
        in_general.push(api.say(general, &owner, &format!("later public {i}")));
    }
    let marker = api.say(general, &owner, "marker 2");
    in_general.push(marker);
    for m in &mut members {
        for s in &mut m.sessions {
            let frames = collect_until(s, |v| is_message(v, marker));
            let got = received(&frames);
            assert_eq!(
                got.get(&general),
                Some(&in_general),
                "user {} general",
                m.user.id
            );
            if m.sees_secret {
                assert_eq!(
                    got.get(&secret),
                    Some(&in_secret),
                    "user {} secret",
                    m.user.id
                );
            } else {
                assert_eq!(
                    got.get(&secret),
                    None,
                    "user {} got secret messages",
                    m.user.id
                );
            }
        }
    }
    let r = api.get(&format!("/channels/{secret}/messages"), &insider_b.token);
    assert_eq!(r.err(), (403, 50001), "{}", r.body);
    // What the insiders read back is exactly what was sent, nothing from the refused attempts.
    assert_eq!(
        api.history(secret, insider_a).len(),
        2 * MESSAGES_PER_CHANNEL
    );
}
