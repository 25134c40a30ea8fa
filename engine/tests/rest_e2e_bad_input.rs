//! Bad input through a real node: malformed JSON, unknown ids, oversized and empty content,
//! missing permissions and forged or missing tokens are each answered with Discord's HTTP status
//! and JSON error code, and nothing of it is stored or dispatched (checked by reading history
//! back and by a gateway session that must see only the good messages).

mod rest_e2e_support;
mod wsclient;

use gateway_core::token::TokenKey;
use rest_e2e_support::{Http, TestNode, collect_until, id_of, is_message, session};
use serde_json::json;

const SEND_MESSAGES: u64 = 1 << 11;
const UNKNOWN: u64 = 4_242_424_242_424_242;

/// Channel objects without `last_message_id` (the good messages move it).
fn without_last_message(mut channels: serde_json::Value) -> serde_json::Value {
    for c in channels.as_array_mut().into_iter().flatten() {
        if let Some(o) = c.as_object_mut() {
            o.remove("last_message_id");
        }
    }
    channels
}

#[test]
fn bad_requests_get_discord_errors_and_store_nothing() {
    let node = TestNode::start_unlimited("bad-input");
    let mut api = Http::connect(node.addr);
    let owner = api.user("owner");
    let member = api.user("member");
    let outsider = api.user("outsider");
    let guild = api.control(
        "/control/guilds",
        json!({"name": "Bad Input", "owner_id": owner.id.to_string()}),
    );
    assert_eq!(guild.status, 200, "{}", guild.body);
    let g = guild.id("id");
    let general = guild.id("system_channel_id");
    let added = api.control(
        &format!("/control/guilds/{g}/members"),
        json!({"user_id": member.id.to_string()}),
    );
    assert_eq!(added.status, 200, "{}", added.body);
    let readonly = api.post(
        &format!("/guilds/{g}/channels"),
        &owner.token,
        json!({"name": "announcements", "permission_overwrites": [
            {"id": g.to_string(), "type": 0, "deny": SEND_MESSAGES.to_string()}]}),
    );
    assert_eq!(readonly.status, 201, "{}", readonly.body);
    let readonly = readonly.id("id");
    let first = api.say(general, &owner, "the only good message");
    let mut watcher = session(node.addr, &owner, &[g]);
    let roles_before = api.get(&format!("/guilds/{g}/roles"), &owner.token).body;
    let channels_before =
        without_last_message(api.get(&format!("/guilds/{g}/channels"), &owner.token).body);
    let msgs = format!("/channels/{general}/messages");

    // Malformed JSON: 400 50109.
    for body in [
        r#"{"content": "hi""#,
        "not json",
        "{\"content\": \"\\ud800\"}x",
    ] {
        let r = api.raw("POST", &format!("/api/v10{msgs}"), Some(&owner.token), body);
        assert_eq!(r.err(), (400, 50109), "{body}: {}", r.body);
    }
    // A body of the wrong shape: 400 50035.
    let r = api.raw(
        "POST",
        &format!("/api/v10{msgs}"),
        Some(&owner.token),
        "[1, 2]",
    );
    assert_eq!(r.err(), (400, 50035), "{}", r.body);

    // Oversized content: 400 50035 naming the field.
    let long = "x".repeat(2001);
    let r = api.post(&msgs, &owner.token, json!({"content": long}));
    assert_eq!(r.err(), (400, 50035), "{}", r.body);
    assert_eq!(
        r.body["errors"]["content"]["_errors"][0]["code"],
        "BASE_TYPE_MAX_LENGTH"
    );
    // Exactly 2000 characters (multi-byte ones) is fine: checked below it was stored.
    let max = "é".repeat(2000);
    // Empty: 400 50006.
    for body in [json!({"content": ""}), json!({"content": "   "}), json!({})] {
        let r = api.post(&msgs, &owner.token, body.clone());
        assert_eq!(r.err(), (400, 50006), "{body}: {}", r.body);
    }

    // Unknown ids.
    let r = api.post(
        &format!("/channels/{UNKNOWN}/messages"),
        &owner.token,
        json!({"content": "x"}),
    );
    assert_eq!(r.err(), (404, 10003), "{}", r.body);
    let r = api.get(&format!("/channels/{UNKNOWN}"), &owner.token);
    assert_eq!(r.err(), (404, 10003), "{}", r.body);
    let r = api.get(&format!("/guilds/{UNKNOWN}"), &owner.token);
    assert_eq!(r.err(), (404, 10004), "{}", r.body);
    let r = api.post(&format!("/guilds/{UNKNOWN}/roles"), &owner.token, json!({}));
    assert_eq!(r.err(), (404, 10004), "{}", r.body);
    let r = api.get(&format!("/guilds/{UNKNOWN}/channels"), &owner.token);
    assert_eq!(r.err(), (404, 10004), "{}", r.body);
    for (method, path) in [
        ("GET", format!("{msgs}/{UNKNOWN}")),
        ("DELETE", format!("{msgs}/{UNKNOWN}")),
        ("PUT", format!("/channels/{general}/pins/{UNKNOWN}")),
        (
            "PUT",
            format!("{msgs}/{UNKNOWN}/reactions/%F0%9F%91%8D/@me"),
        ),
    ] {
        let r = api.api(method, &path, &owner.token, None);
        assert_eq!(r.err(), (404, 10008), "{method} {path}: {}", r.body);
    }
    let r = api.patch(
        &format!("{msgs}/{UNKNOWN}"),
        &owner.token,
        json!({"content": "x"}),
    );
    assert_eq!(r.err(), (404, 10008), "{}", r.body);
    let r = api.patch(
        &format!("/guilds/{g}/roles/{UNKNOWN}"),
        &owner.token,
        json!({"name": "x"}),
    );
    assert_eq!(r.err(), (404, 10011), "{}", r.body);
    let r = api.delete(&format!("/guilds/{g}/roles/{UNKNOWN}"), &owner.token);
    assert_eq!(r.err(), (404, 10011), "{}", r.body);
    let r = api.put(
        &format!("/guilds/{g}/members/{}/roles/{UNKNOWN}", member.id),
        &owner.token,
    );
    assert_eq!(r.err(), (404, 10011), "{}", r.body);
    let r = api.get(&format!("/guilds/{g}/members/{UNKNOWN}"), &owner.token);
    assert_eq!(r.err(), (404, 10007), "{}", r.body);
    let r = api.post("/invites/nosuchcode", &member.token, json!({}));
    assert_eq!(r.err(), (404, 10006), "{}", r.body);
    // An id that is not a snowflake at all: 400 50035 on the path parameter.
    let r = api.get("/channels/abc/messages", &owner.token);
    assert_eq!(r.err(), (400, 50035), "{}", r.body);

    // Missing permissions and access.
    let r = api.post(
        &format!("/channels/{readonly}/messages"),
        &member.token,
        json!({"content": "not allowed here"}),
    );
    assert_eq!(r.err(), (403, 50013), "{}", r.body);
    let r = api.post(&msgs, &outsider.token, json!({"content": "not a member"}));
    assert_eq!(r.err(), (403, 50001), "{}", r.body);
    let r = api.get(&format!("/guilds/{g}"), &outsider.token);
    assert_eq!(r.err(), (403, 50001), "{}", r.body);
    let r = api.post(
        &format!("/guilds/{g}/roles"),
        &member.token,
        json!({"name": "mine"}),
    );
    assert_eq!(r.err(), (403, 50013), "{}", r.body);
    let r = api.post(
        &format!("/guilds/{g}/channels"),
        &member.token,
        json!({"name": "mine"}),
    );
    assert_eq!(r.err(), (403, 50013), "{}", r.body);
    let r = api.delete(&format!("/guilds/{g}/members/{}", owner.id), &member.token);
    assert_eq!(r.err(), (403, 50013), "{}", r.body);
    let r = api.delete(&format!("/guilds/{g}"), &member.token);
    assert_eq!(r.err(), (403, 50013), "{}", r.body);
    let r = api.patch(
        &format!("{msgs}/{first}"),
        &member.token,
        json!({"content": "mine now"}),
    );
    assert_eq!(r.err(), (403, 50005), "{}", r.body);
    let r = api.delete(&format!("{msgs}/{first}"), &member.token);
    assert_eq!(r.err(), (403, 50013), "{}", r.body);
    let r = api.put(&format!("/channels/{general}/pins/{first}"), &member.token);
    assert_eq!(r.err(), (403, 50013), "{}", r.body);
    // An edit that would empty the message: 400 50006, and the message keeps its content.
    let r = api.patch(
        &format!("{msgs}/{first}"),
        &owner.token,
        json!({"content": ""}),
    );
    assert_eq!(r.err(), (400, 50006), "{}", r.body);

    // Forged, tampered and missing tokens: 401.
    let forged = TokenKey::new(b"someone else's secret").issue(owner.id, 1);
    // One character inside the signature (the last one may only carry padding bits).
    let mut tampered: Vec<char> = owner.token.chars().collect();
    let at = tampered.len() - 5;
    tampered[at] = if tampered[at] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    for token in [forged.as_str(), tampered.as_str(), "", "Bearer x"] {
        let r = api.post(&msgs, token, json!({"content": "forged"}));
        assert_eq!(r.err(), (401, 0), "{token}: {}", r.body);
    }
    let r = api.raw(
        "POST",
        &format!("/api/v10{msgs}"),
        None,
        r#"{"content": "anonymous"}"#,
    );
    assert_eq!(r.err(), (401, 0), "{}", r.body);
    let r = api.raw("GET", "/api/v10/users/@me", None, "");
    assert_eq!(r.err(), (401, 0), "{}", r.body);

    // Nothing was stored or changed; the session saw only the good messages.
    let last = api.say(general, &owner, &max);
    assert_eq!(api.history(general, &owner), vec![last, first]);
    assert_eq!(api.history(readonly, &owner), Vec::<u64>::new());
    let got = api.get(&format!("{msgs}/{first}"), &owner.token);
    assert_eq!(got.body["content"], "the only good message");
    assert_eq!(got.body["edited_timestamp"], serde_json::Value::Null);
    let got = api.get(&format!("{msgs}/{last}"), &owner.token);
    assert_eq!(
        got.body["content"].as_str().map(|s| s.chars().count()),
        Some(2000)
    );
    assert_eq!(
        api.get(&format!("/guilds/{g}/roles"), &owner.token).body,
        roles_before
    );
    assert_eq!(
        without_last_message(api.get(&format!("/guilds/{g}/channels"), &owner.token).body),
        channels_before
    );
    assert_eq!(
        api.get(&format!("/guilds/{g}/members/{}", owner.id), &owner.token)
            .status,
        200
    );
    let frames = collect_until(&mut watcher, |v| is_message(v, last));
    let created: Vec<u64> = frames
        .iter()
        .filter(|f| f["t"] == "MESSAGE_CREATE")
        .map(|f| id_of(&f["d"], "id"))
        .collect();
    assert_eq!(created, vec![last]);
    assert!(
        frames.iter().all(|f| f["t"] == "MESSAGE_CREATE"),
        "nothing else happened: {frames:?}"
    );
}
