//! The whole sans-IO pipeline (`prepare`): route, auth, rate limit, decode, in Discord's order;
//! and hostile input never panics any stage.

use engine::http::Request;
use engine::rest::{
    Credentials, Input, ROUTES, RateLimitConfig, RateLimiter, Route, codes, decode, prepare, route,
};
use gateway_core::token::TokenKey;
use proptest::prelude::*;

const NOW: u64 = 1_760_000_000_000;

fn request(method: &str, path: &str, auth: Option<&str>, body: &str) -> Request {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers: auth
            .map(|a| vec![("authorization".to_owned(), a.as_bytes().to_vec())])
            .unwrap_or_default(),
        body: body.as_bytes().to_vec(),
        keep_alive: true,
        upgrade_websocket: false,
    }
}

#[test]
fn a_good_request_comes_out_typed() {
    let key = TokenKey::new(b"k");
    let token = key.issue(77, 1);
    let creds = Credentials {
        token_key: &key,
        control_secret: b"ctl",
    };
    let mut rl = RateLimiter::new(RateLimitConfig::default());
    let req = request(
        "POST",
        "/api/v10/channels/9/messages",
        Some(&format!("Bot {token}")),
        r#"{"content": "hi", "nonce": "1"}"#,
    );
    let p = prepare(&req, creds, &mut rl, NOW).unwrap();
    assert_eq!(p.route, Route::CreateMessage { channel_id: 9 });
    assert_eq!(p.claims.unwrap().user_id, 77);
    assert_eq!(p.rate_limit.unwrap().remaining, 4);
    assert!(matches!(p.input, Input::CreateMessage(m) if m.content == "hi"));

    let req = request(
        "GET",
        "/api/v10/channels/9/messages?limit=3",
        Some(&token),
        "",
    );
    let p = prepare(&req, creds, &mut rl, NOW).unwrap();
    assert!(matches!(p.input, Input::ListMessages(q) if q.limit == 3));

    // No credentials needed for /gateway.
    let p = prepare(
        &request("GET", "/api/v10/gateway", None, ""),
        creds,
        &mut rl,
        NOW,
    )
    .unwrap();
    assert!(p.claims.is_none());

    let req = request(
        "POST",
        "/control/users",
        Some("Bearer ctl"),
        r#"{"username": "bob"}"#,
    );
    let p = prepare(&req, creds, &mut rl, NOW).unwrap();
    assert!(p.rate_limit.is_none());
    assert!(matches!(p.input, Input::ControlCreateUser(_)));
}

#[test]
fn stages_fail_in_order() {
    let key = TokenKey::new(b"k");
    let token = key.issue(77, 1);
    let creds = Credentials {
        token_key: &key,
        control_secret: b"ctl",
    };
    let mut rl = RateLimiter::new(RateLimitConfig::default());
    let status = |rl: &mut RateLimiter, m: &str, p: &str, a: Option<&str>, b: &str| {
        prepare(&request(m, p, a, b), creds, rl, NOW)
            .map(|_| (200, 0))
            .unwrap_or_else(|e| (e.status, e.code))
    };
    // Routing before auth: an unknown path is 404 even without a token.
    assert_eq!(status(&mut rl, "GET", "/api/v10/nope", None, ""), (404, 0));
    assert_eq!(
        status(&mut rl, "PUT", "/api/v10/users/@me", None, ""),
        (405, 0)
    );
    // Auth before validation.
    assert_eq!(
        status(&mut rl, "POST", "/api/v10/channels/1/messages", None, "{"),
        (401, 0)
    );
    assert_eq!(
        status(&mut rl, "POST", "/control/users", Some(&token), "{}"),
        (401, 0)
    );
    // Validation last.
    assert_eq!(
        status(
            &mut rl,
            "POST",
            "/api/v10/channels/1/messages",
            Some(&token),
            "{"
        ),
        (400, codes::INVALID_JSON)
    );
    assert_eq!(
        status(
            &mut rl,
            "POST",
            "/api/v10/channels/1/messages",
            Some(&token),
            "{}"
        ),
        (400, codes::EMPTY_MESSAGE)
    );
    // Rate limits before validation: three more requests fill the bucket of 5, invalid or not.
    for _ in 0..3 {
        status(
            &mut rl,
            "POST",
            "/api/v10/channels/1/messages",
            Some(&token),
            "{}",
        );
    }
    assert_eq!(
        status(
            &mut rl,
            "POST",
            "/api/v10/channels/1/messages",
            Some(&token),
            "{}"
        ),
        (429, 0)
    );
}

proptest! {
    #[test]
    fn arbitrary_paths_never_panic(method in "[A-Z]{0,7}", path in "(/[a-z0-9@%A-F:.-]{0,12}){0,9}") {
        let _ = route(&method, &path);
        let _ = route(&method, &format!("/api/v10{path}"));
    }

    #[test]
    fn arbitrary_bodies_and_queries_never_panic(
        index in 0..ROUTES.len(),
        body in proptest::collection::vec(any::<u8>(), 0..256),
        query in "[a-z_=&0-9%+-]{0,40}",
    ) {
        let spec = &ROUTES[index];
        let path = spec
            .template
            .replace("{emoji}", "%E2%9D%A4")
            .replace("{invite_code}", "abc")
            .replace(['{', '}'], "")
            .split('/')
            .map(|s| if s.ends_with("_id") { "12" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let full = if spec.is_control() { path } else { format!("/api/v10{path}") };
        let r = route(spec.method, &full).unwrap();
        let _ = decode(&r, &query, &body);
    }

    #[test]
    fn arbitrary_json_bodies_never_panic(
        index in 0..ROUTES.len(),
        json in arb_json(),
    ) {
        let spec = &ROUTES[index];
        let path = spec
            .template
            .replace("{emoji}", "%E2%9D%A4")
            .replace("{invite_code}", "abc")
            .replace(['{', '}'], "")
            .split('/')
            .map(|s| if s.ends_with("_id") { "12" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let full = if spec.is_control() { path } else { format!("/api/v10{path}") };
        let r = route(spec.method, &full).unwrap();
        let _ = decode(&r, "", json.to_string().as_bytes());
    }
}

/// JSON values biased towards the field names and shapes the decoders look at.
fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        "[0-9]{0,21}".prop_map(serde_json::Value::from),
        ".{0,8}".prop_map(serde_json::Value::from),
    ];
    let keys = prop_oneof![
        Just("content"),
        Just("embeds"),
        Just("name"),
        Just("id"),
        Just("messages"),
        Just("type"),
        Just("permission_overwrites"),
        Just("allowed_mentions"),
        Just("parse"),
        Just("fields"),
        Just("footer"),
        Just("nick"),
        Just("roles"),
        Just("max_age"),
        Just("position"),
        Just("message_reference"),
        Just("message_id"),
        Just("title"),
        Just("username"),
        Just("user_id"),
        Just("color"),
        Just("permissions"),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            proptest::collection::vec((keys.clone(), inner), 0..6).prop_map(|kv| {
                serde_json::Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}
