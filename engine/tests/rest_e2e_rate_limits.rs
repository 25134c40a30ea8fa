//! REST rate limits through a real node: every answer of a limited route carries the
//! `X-RateLimit-*` headers of its bucket; past the bucket's limit the answer is 429 with
//! `retry_after` in the body and the `Via` header (without which discord.py takes it for a
//! Cloudflare ban), the refused request is not carried out, other channels and other users keep
//! their own budget, and the bucket admits again once its window is over.
//!
//! Limits are kept per shard (the shard that receives the request), so every request here goes
//! over one keep-alive connection, which the kernel keeps on one shard.

mod rest_e2e_support;
mod wsclient;

use std::time::Duration;

use rest_e2e_support::{Http, TestNode};
use serde_json::json;

/// Messages per channel per window (Discord's 5 per 5 seconds).
const MESSAGE_LIMIT: u64 = 5;

#[test]
fn over_the_limit_answers_429_with_retry_after_and_via_and_stores_nothing() {
    let node = TestNode::start("rate-limits");
    let mut api = Http::connect(node.addr);
    let owner = api.user("owner");
    let other = api.user("other");
    let guild = api.post("/guilds", &owner.token, json!({"name": "Limits"}));
    assert_eq!(guild.status, 201, "{}", guild.body);
    let g = guild.id("id");
    let general = guild.id("system_channel_id");
    let second = api.post(
        &format!("/guilds/{g}/channels"),
        &owner.token,
        json!({"name": "second"}),
    );
    assert_eq!(second.status, 201, "{}", second.body);
    let second = second.id("id");
    let invite = api.post(
        &format!("/channels/{general}/invites"),
        &owner.token,
        json!({}),
    );
    let code = invite.body["code"].as_str().expect("code").to_owned();
    assert_eq!(
        api.post(&format!("/invites/{code}"), &other.token, json!({}))
            .status,
        200
    );

    let path = format!("/channels/{general}/messages");
    let mut sent = Vec::new();
    for i in 0..MESSAGE_LIMIT {
        let r = api.post(&path, &owner.token, json!({"content": format!("m{i}")}));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
        let remaining = (MESSAGE_LIMIT - 1 - i).to_string();
        assert_eq!(r.header("x-ratelimit-remaining"), Some(remaining.as_str()));
        assert!(r.header("x-ratelimit-bucket").is_some());
        assert!(r.header("x-ratelimit-reset").is_some());
        assert!(r.header("x-ratelimit-reset-after").is_some());
        sent.push(r.id("id"));
    }
    let r = api.post(&path, &owner.token, json!({"content": "one too many"}));
    assert_eq!(r.err(), (429, 0), "{}", r.body);
    let retry_after = r.body["retry_after"].as_f64().expect("retry_after");
    assert!(retry_after > 0.0 && retry_after <= 5.0, "{retry_after}");
    assert_eq!(r.body["global"], false);
    assert_eq!(r.header("via"), Some("1.1 hearth"));
    assert_eq!(r.header("x-ratelimit-scope"), Some("user"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.header("content-type"), Some("application/json"));

    // Other channels and other users have their own budget.
    let r = api.post(
        &format!("/channels/{second}/messages"),
        &owner.token,
        json!({"content": "elsewhere"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api.post(&path, &other.token, json!({"content": "someone else"}));
    assert_eq!(r.status, 200, "{}", r.body);
    sent.push(r.id("id"));

    // The refused message was not stored.
    let mut history = api.history(general, &owner);
    history.reverse();
    assert_eq!(history, sent);

    // Once the window is over, the bucket admits again.
    std::thread::sleep(Duration::from_secs_f64(retry_after) + Duration::from_millis(100));
    let r = api.post(&path, &owner.token, json!({"content": "after the window"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-ratelimit-remaining"), Some("4"));

    // Unlimited routes (the control API) carry no rate limit headers.
    let r = api.control("/control/users", json!({"username": "plain"}));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-limit"), None);
}
