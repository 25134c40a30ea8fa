//! Guild administration through REST with the gateway events each step produces: creating a
//! guild (the creator owns it and gets GUILD_CREATE), invites (create, inspect, join, delete),
//! roles (create, modify, reorder, delete), members (roles, nick, own nick, list), kicks and bans
//! (the removed user's sessions get GUILD_DELETE and nothing of the guild afterwards), channels
//! (create, modify, reorder, delete) and finally deleting the guild.

mod rest_e2e_support;
mod wsclient;

use rest_e2e_support::{Http, TestNode, collect_until, id_of, is_id, session, until};
use serde_json::{Value, json};

const KICK_MEMBERS: u64 = 1 << 1;
const BAN_MEMBERS: u64 = 1 << 2;

fn is(v: &Value, t: &str) -> bool {
    v["t"] == t
}

#[test]
fn roles_members_invites_bans_and_channels_with_their_events() {
    let node = TestNode::start_unlimited("guild-flows");
    let mut api = Http::connect(node.addr);
    let owner = api.user("owner");
    let alice = api.user("alice");
    let bob = api.user("bob");
    let mut s_owner = session(node.addr, &owner, &[]);
    let mut s_alice = session(node.addr, &alice, &[]);
    let mut s_bob = session(node.addr, &bob, &[]);

    // The creator owns the new guild and its sessions receive it.
    let guild = api.post(
        "/guilds",
        &owner.token,
        json!({"name": "Flows", "verification_level": 1}),
    );
    assert_eq!(guild.status, 201, "{}", guild.body);
    let g = guild.id("id");
    let gs = g.to_string();
    assert_eq!(guild.body["owner_id"], owner.id.to_string());
    assert_eq!(guild.body["verification_level"], 1);
    let general = guild.id("system_channel_id");
    let created = until(&mut s_owner, "GUILD_CREATE", |v| is(v, "GUILD_CREATE"));
    assert_eq!(created["d"]["id"], gs);
    assert_eq!(
        created["d"]["members"][0]["user"]["id"],
        owner.id.to_string()
    );

    // Invites: created (INVITE_CREATE to those who manage the channel), inspected, used.
    let invite = api.post(
        &format!("/channels/{general}/invites"),
        &owner.token,
        json!({"max_age": 3600, "max_uses": 10}),
    );
    assert_eq!(invite.status, 200, "{}", invite.body);
    let code = invite.body["code"].as_str().expect("code").to_owned();
    assert_eq!(invite.body["guild"]["id"], gs);
    assert_eq!(invite.body["max_uses"], 10);
    let ev = until(&mut s_owner, "INVITE_CREATE", |v| is(v, "INVITE_CREATE"));
    assert_eq!(ev["d"]["code"], code);
    let seen = api.get(&format!("/invites/{code}?with_counts=true"), &bob.token);
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(seen.body["approximate_member_count"], 1);
    let joined = api.post(&format!("/invites/{code}"), &alice.token, json!({}));
    assert_eq!(joined.status, 200, "{}", joined.body);
    let ev = until(&mut s_alice, "GUILD_CREATE", |v| is(v, "GUILD_CREATE"));
    assert_eq!(ev["d"]["id"], gs);
    let ev = until(&mut s_owner, "GUILD_MEMBER_ADD", |v| {
        is(v, "GUILD_MEMBER_ADD")
    });
    assert_eq!(ev["d"]["user"]["id"], alice.id.to_string());
    assert_eq!(ev["d"]["guild_id"], gs);
    let seen = api.get(&format!("/invites/{code}?with_counts=true"), &bob.token);
    assert_eq!(seen.body["approximate_member_count"], 2);
    assert_eq!(seen.body["uses"], 1);
    let again = api.post(&format!("/invites/{code}"), &alice.token, json!({}));
    assert_eq!(again.status, 400, "already a member: {}", again.body);

    // Roles: create, modify, reorder.
    let mods = api.post(
        &format!("/guilds/{g}/roles"),
        &owner.token,
        json!({"name": "mods", "permissions": (KICK_MEMBERS | BAN_MEMBERS).to_string(),
            "hoist": true, "color": 0xff0000}),
    );
    assert_eq!(mods.status, 200, "{}", mods.body);
    let mods_id = mods.id("id");
    assert_eq!(
        mods.body["permissions"],
        (KICK_MEMBERS | BAN_MEMBERS).to_string()
    );
    for s in [&mut s_owner, &mut s_alice] {
        let ev = until(s, "GUILD_ROLE_CREATE", |v| is(v, "GUILD_ROLE_CREATE"));
        assert_eq!(ev["d"]["role"]["id"], mods_id.to_string());
    }
    let renamed = api.patch(
        &format!("/guilds/{g}/roles/{mods_id}"),
        &owner.token,
        json!({"name": "moderators"}),
    );
    assert_eq!(renamed.body["name"], "moderators");
    let ev = until(&mut s_alice, "GUILD_ROLE_UPDATE", |v| {
        is(v, "GUILD_ROLE_UPDATE")
    });
    assert_eq!(ev["d"]["role"]["name"], "moderators");
    let helpers = api.post(
        &format!("/guilds/{g}/roles"),
        &owner.token,
        json!({"name": "helpers"}),
    );
    let helpers_id = helpers.id("id");
    let order = api.patch(
        &format!("/guilds/{g}/roles"),
        &owner.token,
        json!([{"id": mods_id.to_string(), "position": 2}, {"id": helpers_id.to_string(), "position": 1}]),
    );
    assert_eq!(order.status, 200, "{}", order.body);
    let names: Vec<&str> = order
        .body
        .as_array()
        .expect("roles")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["@everyone", "helpers", "moderators"]);

    // Members: a role, then roles and nick in one update (one event), then the own nick.
    let r = api.put(
        &format!("/guilds/{g}/members/{}/roles/{helpers_id}", alice.id),
        &owner.token,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let ev = until(&mut s_alice, "GUILD_MEMBER_UPDATE", |v| {
        is(v, "GUILD_MEMBER_UPDATE")
    });
    assert_eq!(ev["d"]["roles"], json!([helpers_id.to_string()]));
    let r = api.patch(
        &format!("/guilds/{g}/members/{}", alice.id),
        &owner.token,
        json!({"nick": "ali", "roles": [helpers_id.to_string(), mods_id.to_string()]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["nick"], "ali");
    let ev = until(&mut s_owner, "GUILD_MEMBER_UPDATE", |v| {
        is(v, "GUILD_MEMBER_UPDATE") && v["d"]["nick"] == "ali"
    });
    assert_eq!(ev["d"]["roles"].as_array().map(Vec::len), Some(2));
    // A refused update changes nothing: alice may not give herself a role above hers.
    let r = api.patch(
        &format!("/guilds/{g}/members/{}", alice.id),
        &alice.token,
        json!({"nick": "boss", "roles": []}),
    );
    assert_eq!(r.err(), (403, 50013), "{}", r.body);
    let got = api.get(&format!("/guilds/{g}/members/{}", alice.id), &owner.token);
    assert_eq!(
        got.body["nick"], "ali",
        "the refused update changed nothing"
    );
    let me = api.patch(
        &format!("/guilds/{g}/members/@me"),
        &alice.token,
        json!({"nick": "alice!"}),
    );
    assert_eq!(me.status, 200, "{}", me.body);
    let ev = until(&mut s_owner, "own nick", |v| {
        is(v, "GUILD_MEMBER_UPDATE") && v["d"]["nick"] == "alice!"
    });
    assert_eq!(ev["d"]["roles"].as_array().map(Vec::len), Some(2));
    let got = api.get(&format!("/guilds/{g}/members/{}", alice.id), &owner.token);
    assert_eq!(got.body["nick"], "alice!");
    let page = api.get(&format!("/guilds/{g}/members?limit=1"), &alice.token);
    assert_eq!(page.body[0]["user"]["id"], owner.id.to_string());
    let page = api.get(
        &format!("/guilds/{g}/members?limit=5&after={}", owner.id),
        &alice.token,
    );
    assert_eq!(page.body.as_array().map(Vec::len), Some(1));
    assert_eq!(page.body[0]["user"]["id"], alice.id.to_string());
    let r = api.delete(
        &format!("/guilds/{g}/members/{}/roles/{mods_id}", alice.id),
        &owner.token,
    );
    assert_eq!(r.status, 204);
    // Below the owner in the hierarchy, alice cannot kick the owner.
    let r = api.delete(&format!("/guilds/{g}/members/{}", owner.id), &alice.token);
    assert_eq!(r.err(), (403, 50013), "{}", r.body);

    // Kick: bob's sessions get GUILD_DELETE and nothing of the guild until he rejoins.
    assert_eq!(
        api.post(&format!("/invites/{code}"), &bob.token, json!({}))
            .status,
        200
    );
    until(&mut s_bob, "GUILD_CREATE", |v| is(v, "GUILD_CREATE"));
    let r = api.delete(&format!("/guilds/{g}/members/{}", bob.id), &owner.token);
    assert_eq!(r.status, 204, "{}", r.body);
    let ev = until(&mut s_owner, "GUILD_MEMBER_REMOVE", |v| {
        is(v, "GUILD_MEMBER_REMOVE")
    });
    assert_eq!(ev["d"]["user"]["id"], bob.id.to_string());
    let ev = until(&mut s_bob, "GUILD_DELETE", |v| is(v, "GUILD_DELETE"));
    assert_eq!(ev["d"], json!({"id": gs}));
    let r = api.get(&format!("/guilds/{g}"), &bob.token);
    assert_eq!(r.err(), (403, 50001));
    let r = api.post(
        &format!("/guilds/{g}/roles"),
        &owner.token,
        json!({"name": "after kick"}),
    );
    assert_eq!(r.status, 200);
    let secret_word = api.say(general, &owner, "said after the kick");
    assert_eq!(
        api.post(&format!("/invites/{code}"), &bob.token, json!({}))
            .status,
        200
    );
    let frames = collect_until(&mut s_bob, |v| is(v, "GUILD_CREATE"));
    assert_eq!(
        frames.len(),
        1,
        "nothing between the kick and the rejoin: {frames:?}"
    );
    let rejoined = frames.last().expect("GUILD_CREATE");
    assert!(
        rejoined["d"]["channels"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    );
    let history = api.history(general, &bob);
    assert_eq!(
        history.first(),
        Some(&secret_word),
        "history is readable again"
    );

    // Ban: like a kick, and joining again is refused until the ban is lifted.
    let r = api.api(
        "PUT",
        &format!("/guilds/{g}/bans/{}", bob.id),
        &owner.token,
        Some(json!({"delete_message_seconds": 0})),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let ev = until(&mut s_owner, "GUILD_BAN_ADD", |v| is(v, "GUILD_BAN_ADD"));
    assert_eq!(ev["d"]["user"]["id"], bob.id.to_string());
    until(&mut s_owner, "GUILD_MEMBER_REMOVE", |v| {
        is(v, "GUILD_MEMBER_REMOVE")
    });
    until(&mut s_bob, "GUILD_DELETE", |v| is(v, "GUILD_DELETE"));
    let r = api.post(&format!("/invites/{code}"), &bob.token, json!({}));
    assert_eq!(r.err(), (403, 40007), "{}", r.body);
    let bans = api.get(&format!("/guilds/{g}/bans"), &owner.token);
    assert_eq!(bans.body[0]["user"]["id"], bob.id.to_string());
    let r = api.get(&format!("/guilds/{g}/bans"), &alice.token);
    assert_eq!(r.err(), (403, 50013));
    let during_ban = api.say(general, &owner, "said during the ban");
    let r = api.delete(&format!("/guilds/{g}/bans/{}", bob.id), &owner.token);
    assert_eq!(r.status, 204, "{}", r.body);
    until(&mut s_owner, "GUILD_BAN_REMOVE", |v| {
        is(v, "GUILD_BAN_REMOVE")
    });
    assert_eq!(
        api.post(&format!("/invites/{code}"), &bob.token, json!({}))
            .status,
        200
    );
    let frames = collect_until(&mut s_bob, |v| is(v, "GUILD_CREATE"));
    assert_eq!(frames.len(), 1, "nothing during the ban: {frames:?}");
    assert_eq!(api.history(general, &bob).first(), Some(&during_ban));

    // Deleting a role.
    let r = api.delete(&format!("/guilds/{g}/roles/{mods_id}"), &owner.token);
    assert_eq!(r.status, 204, "{}", r.body);
    let ev = until(&mut s_alice, "GUILD_ROLE_DELETE", |v| {
        is(v, "GUILD_ROLE_DELETE")
    });
    assert_eq!(ev["d"]["role_id"], mods_id.to_string());

    // Channels: create, modify, reorder, delete (the directory forgets it on every shard).
    let ops = api.post(
        &format!("/guilds/{g}/channels"),
        &owner.token,
        json!({"name": "ops", "topic": "first"}),
    );
    assert_eq!(ops.status, 201, "{}", ops.body);
    let ops_id = ops.id("id");
    let ev = until(&mut s_alice, "CHANNEL_CREATE", |v| is(v, "CHANNEL_CREATE"));
    assert_eq!(ev["d"]["id"], ops_id.to_string());
    let r = api.patch(
        &format!("/channels/{ops_id}"),
        &owner.token,
        json!({"name": "ops-2", "topic": null}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.body["name"].clone(), r.body["topic"].clone()),
        (json!("ops-2"), Value::Null)
    );
    let ev = until(&mut s_alice, "CHANNEL_UPDATE", |v| is(v, "CHANNEL_UPDATE"));
    assert_eq!(ev["d"]["name"], "ops-2");
    let r = api.patch(
        &format!("/guilds/{g}/channels"),
        &owner.token,
        json!([{"id": ops_id.to_string(), "position": 7}]),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        api.get(&format!("/channels/{ops_id}"), &alice.token).body["position"],
        7
    );
    let r = api.patch(
        &format!("/channels/{ops_id}"),
        &alice.token,
        json!({"name": "mine"}),
    );
    assert_eq!(r.err(), (403, 50013), "{}", r.body);
    let r = api.delete(&format!("/channels/{ops_id}"), &owner.token);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"], "ops-2");
    let ev = until(&mut s_alice, "CHANNEL_DELETE", |v| is(v, "CHANNEL_DELETE"));
    assert_eq!(id_of(&ev["d"], "id"), ops_id);
    let r = api.post(
        &format!("/channels/{ops_id}/messages"),
        &owner.token,
        json!({"content": "gone?"}),
    );
    assert_eq!(r.err(), (404, 10003), "{}", r.body);
    let listed = api.get(&format!("/guilds/{g}/channels"), &alice.token);
    assert!(
        listed
            .body
            .as_array()
            .is_some_and(|l| l.iter().all(|c| !is_id(&c["id"], ops_id)))
    );

    // Invite deletion.
    let r = api.delete(&format!("/invites/{code}"), &owner.token);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["code"], code);
    until(&mut s_owner, "INVITE_DELETE", |v| is(v, "INVITE_DELETE"));
    let r = api.get(&format!("/invites/{code}"), &alice.token);
    assert_eq!(r.err(), (404, 10006));

    // Guild settings, then the guild's end.
    let r = api.patch(
        &format!("/guilds/{g}"),
        &owner.token,
        json!({"name": "Renamed", "description": "d"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let ev = until(&mut s_alice, "GUILD_UPDATE", |v| is(v, "GUILD_UPDATE"));
    assert_eq!(ev["d"]["name"], "Renamed");
    let r = api.patch(
        &format!("/guilds/{g}"),
        &alice.token,
        json!({"name": "Mine"}),
    );
    assert_eq!(r.err(), (403, 50013));
    let r = api.get(&format!("/guilds/{g}?with_counts=true"), &alice.token);
    assert_eq!(r.body["approximate_member_count"], 3);
    let r = api.delete(&format!("/guilds/{g}"), &owner.token);
    assert_eq!(r.status, 204, "{}", r.body);
    for s in [&mut s_owner, &mut s_alice, &mut s_bob] {
        let ev = until(s, "GUILD_DELETE", |v| is(v, "GUILD_DELETE"));
        assert_eq!(ev["d"]["id"], gs);
    }
    assert_eq!(
        api.get(&format!("/guilds/{g}"), &owner.token).err(),
        (404, 10004)
    );
    let r = api.post(
        &format!("/channels/{general}/messages"),
        &owner.token,
        json!({"content": "x"}),
    );
    assert_eq!(r.err(), (404, 10003));
}
