//! REST rate limits on a virtual clock: remaining counts down, a 429 carries `retry_after`,
//! `Retry-After`, the scope and `Via`, buckets recover at their reset, the global limit applies
//! across routes, and the number of windows kept stays bounded.

use engine::http::Response;
use engine::rest::{
    ApiError, Bucket, BucketLimit, RateLimitConfig, RateLimiter, Route, VIA_HEADER_VALUE, route,
};

const T0: u64 = 1_760_000_000_000;
const ALICE: u64 = 111;
const BOB: u64 = 222;

fn send(channel: u64) -> Route {
    route("POST", &format!("/api/v10/channels/{channel}/messages")).unwrap()
}

fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn retry_after_ms(e: &ApiError) -> u64 {
    e.retry.as_ref().unwrap().retry_after_ms
}

#[test]
fn remaining_counts_down_then_429_then_recovers() {
    let mut rl = RateLimiter::new(RateLimitConfig::default());
    let limit = engine::rest::MESSAGE_CREATE_LIMIT;
    let mut now = T0;
    for expected_remaining in (0..limit.limit).rev() {
        let info = rl.check(ALICE, &send(1), now).unwrap().unwrap();
        assert_eq!(info.limit, limit.limit);
        assert_eq!(info.remaining, expected_remaining);
        assert_eq!(info.bucket, Bucket::MessageCreate);
        assert_eq!(info.reset_at_ms, T0 + limit.window_ms);
        let mut resp = Response::json(200, "{}");
        info.apply(&mut resp);
        assert_eq!(
            header(&resp, "X-RateLimit-Remaining"),
            Some(expected_remaining.to_string().as_str())
        );
        assert_eq!(
            header(&resp, "X-RateLimit-Limit"),
            Some(limit.limit.to_string().as_str())
        );
        assert_eq!(header(&resp, "X-RateLimit-Reset"), Some("1760000005.000"));
        assert_eq!(header(&resp, "X-RateLimit-Bucket"), Some("messages.create"));
        assert_eq!(
            header(&resp, "X-RateLimit-Reset-After").unwrap(),
            format!(
                "{}.{:03}",
                (T0 + 5000 - now) / 1000,
                (T0 + 5000 - now) % 1000
            )
        );
        now += 100;
    }

    let e = rl.check(ALICE, &send(1), now).unwrap_err();
    assert_eq!((e.status, e.code), (429, 0));
    let wait = retry_after_ms(&e);
    assert_eq!(wait, T0 + limit.window_ms - now);
    let body = e.body();
    assert_eq!(body["message"], "You are being rate limited.");
    assert_eq!(body["global"], false);
    assert_eq!(body["code"], 0);
    let retry_after = body["retry_after"].as_f64().unwrap();
    assert!(retry_after > 0.0);
    assert!((retry_after * 1000.0 - wait as f64).abs() < 1e-6);
    let resp = e.into_response();
    assert_eq!(resp.status, 429);
    assert_eq!(resp.content_type, "application/json");
    assert_eq!(header(&resp, "Via"), Some(VIA_HEADER_VALUE));
    assert_eq!(header(&resp, "X-RateLimit-Scope"), Some("user"));
    assert_eq!(header(&resp, "X-RateLimit-Remaining"), Some("0"));
    assert_eq!(header(&resp, "X-RateLimit-Bucket"), Some("messages.create"));
    assert_eq!(header(&resp, "X-RateLimit-Global"), None);
    assert_eq!(header(&resp, "Retry-After"), Some("5"));

    // Refused requests do not extend the window: one millisecond early is still refused, the
    // reset itself opens a new window.
    assert!(rl.check(ALICE, &send(1), now + wait - 1).is_err());
    let info = rl.check(ALICE, &send(1), now + wait).unwrap().unwrap();
    assert_eq!(info.remaining, limit.limit - 1);
    assert_eq!(info.reset_at_ms, now + wait + limit.window_ms);
}

#[test]
fn buckets_are_per_user_and_per_major_parameter() {
    let mut rl = RateLimiter::new(RateLimitConfig::default());
    for _ in 0..5 {
        rl.check(ALICE, &send(1), T0).unwrap();
    }
    assert!(rl.check(ALICE, &send(1), T0).is_err());
    // Another channel, another user, another bucket on the same channel: all fresh.
    assert_eq!(rl.check(ALICE, &send(2), T0).unwrap().unwrap().remaining, 4);
    assert_eq!(rl.check(BOB, &send(1), T0).unwrap().unwrap().remaining, 4);
    let get = route("GET", "/api/v10/channels/1/messages").unwrap();
    let info = rl.check(ALICE, &get, T0).unwrap().unwrap();
    assert_eq!(info.bucket, Bucket::MessageRead);
    // Routes sharing a bucket share its count.
    let put = route(
        "PUT",
        "/api/v10/channels/1/messages/2/reactions/%E2%9D%A4/@me",
    )
    .unwrap();
    let del = route(
        "DELETE",
        "/api/v10/channels/1/messages/2/reactions/%E2%9D%A4/@me",
    )
    .unwrap();
    rl.check(ALICE, &put, T0).unwrap();
    assert!(rl.check(ALICE, &del, T0).is_err());
    assert!(rl.check(ALICE, &del, T0 + 250).is_ok());
}

#[test]
fn global_limit_spans_routes() {
    let config = RateLimitConfig::default();
    let global = config.global;
    let mut rl = RateLimiter::new(config);
    // Each request on its own channel: no route bucket fills up.
    for i in 0..u64::from(global.limit) {
        rl.check(ALICE, &send(1000 + i), T0 + i).unwrap();
    }
    let now = T0 + u64::from(global.limit);
    let e = rl.check(ALICE, &send(1), now).unwrap_err();
    assert_eq!(e.status, 429);
    assert_eq!(e.body()["global"], true);
    assert_eq!(retry_after_ms(&e), T0 + global.window_ms - now);
    let resp = e.into_response();
    assert_eq!(header(&resp, "X-RateLimit-Global"), Some("true"));
    assert_eq!(header(&resp, "X-RateLimit-Scope"), Some("global"));
    assert_eq!(header(&resp, "Via"), Some(VIA_HEADER_VALUE));
    // Other users are not affected; the user recovers when the global window ends.
    assert!(rl.check(BOB, &send(1), now).is_ok());
    assert!(rl.check(ALICE, &send(1), T0 + global.window_ms).is_ok());
}

#[test]
fn window_count_is_bounded_and_expired_windows_go() {
    let cap = 100;
    let mut rl = RateLimiter::new(RateLimitConfig {
        buckets_max: cap,
        ..RateLimitConfig::default()
    });
    for i in 0..10_000u64 {
        rl.check(i % 997, &send(i), T0 + i / 100).unwrap();
        assert!(rl.len() <= cap);
    }
    assert_eq!(rl.len(), cap);
    // Long after every window ended, requests sweep the expired ones.
    let later = T0 + 3_600_000;
    for i in 0..cap as u64 {
        rl.check(5, &send(7), later + i * 10_000).ok();
    }
    assert!(rl.len() <= 2, "{}", rl.len());
}

#[test]
fn unlimited_routes_and_disabled_limits_add_nothing() {
    let mut rl = RateLimiter::new(RateLimitConfig::default());
    let control = route("POST", "/control/users").unwrap();
    for _ in 0..1000 {
        assert_eq!(rl.check(0, &control, T0).unwrap(), None);
    }
    assert!(rl.is_empty());
    let mut off = RateLimiter::new(RateLimitConfig::disabled());
    for _ in 0..1000 {
        assert_eq!(off.check(ALICE, &send(1), T0).unwrap(), None);
    }
}

#[test]
fn configured_limits_apply() {
    let mut config = RateLimitConfig::default();
    config.buckets[Bucket::MessageCreate as usize] = Some(BucketLimit {
        limit: 2,
        window_ms: 60_000,
    });
    config.global = BucketLimit {
        limit: 1_000,
        window_ms: 1_000,
    };
    let mut rl = RateLimiter::new(config);
    rl.check(ALICE, &send(1), T0).unwrap();
    rl.check(ALICE, &send(1), T0).unwrap();
    let e = rl.check(ALICE, &send(1), T0 + 1).unwrap_err();
    assert_eq!(retry_after_ms(&e), 59_999);
    assert_eq!(
        e.into_response()
            .headers
            .iter()
            .find(|(k, _)| *k == "Retry-After")
            .unwrap()
            .1,
        "60"
    );
}
