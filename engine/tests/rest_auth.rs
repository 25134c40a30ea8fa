//! REST authentication: bare tokens and `Bot <token>` pass, forged, missing and malformed ones
//! are 401 code 0; the control API takes its own bearer secret.

use engine::http::Request;
use engine::rest::{authenticate, authenticate_control};
use gateway_core::token::TokenKey;

fn with_auth(value: &[u8]) -> Request {
    Request {
        method: "GET".to_owned(),
        path: "/api/v10/users/@me".to_owned(),
        headers: vec![("authorization".to_owned(), value.to_vec())],
        ..Request::default()
    }
}

fn assert_401(r: Result<impl std::fmt::Debug, engine::rest::ApiError>) {
    let e = r.unwrap_err();
    assert_eq!((e.status, e.code), (401, 0));
    assert_eq!(e.body()["message"], "401: Unauthorized");
    let resp = e.into_response();
    assert_eq!(resp.content_type, "application/json");
}

#[test]
fn bare_and_bot_prefixed_tokens_pass() {
    let key = TokenKey::new(b"deployment secret");
    let token = key.issue(80_351_110_224_678_912, 1_700_000_000);
    let c = authenticate(&with_auth(token.as_bytes()), &key).unwrap();
    assert_eq!(c.user_id, 80_351_110_224_678_912);
    assert_eq!(c.issued_at_s, 1_700_000_000);
    let c = authenticate(&with_auth(format!("Bot {token}").as_bytes()), &key).unwrap();
    assert_eq!(c.user_id, 80_351_110_224_678_912);
    // Surrounding whitespace from sloppy clients is tolerated.
    let c = authenticate(&with_auth(format!(" Bot {token} ").as_bytes()), &key).unwrap();
    assert_eq!(c.user_id, 80_351_110_224_678_912);
}

#[test]
fn forged_tokens_fail() {
    let key = TokenKey::new(b"deployment secret");
    let other = TokenKey::new(b"another secret");
    let forged = other.issue(1, 1);
    assert_401(authenticate(&with_auth(forged.as_bytes()), &key));
    // Someone else's id with a valid token's signature.
    let real = key.issue(42, 7);
    let (_, rest) = real.split_once('.').unwrap();
    let victim = key.issue(43, 7);
    let (victim_id, _) = victim.split_once('.').unwrap();
    assert_401(authenticate(
        &with_auth(format!("{victim_id}.{rest}").as_bytes()),
        &key,
    ));
    // A flipped signature character.
    let mut bytes = real.into_bytes();
    let last = bytes.len() - 1;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    assert_401(authenticate(&with_auth(&bytes), &key));
}

#[test]
fn missing_and_malformed_headers_fail() {
    let key = TokenKey::new(b"deployment secret");
    let token = key.issue(5, 5);
    let no_header = Request::default();
    assert_401(authenticate(&no_header, &key));
    for bad in [
        &b""[..],
        b"   ",
        b"Bot ",
        b"Bot",
        b"\xff\xfe",
        b"a.b.c",
        format!("Bearer {token}").as_bytes(),
        format!("bot {token}").as_bytes(),
        "x".repeat(10_000).as_bytes(),
    ] {
        assert_401(authenticate(&with_auth(bad), &key));
    }
}

#[test]
fn control_secret() {
    let req = with_auth(b"Bearer s3cret");
    assert!(authenticate_control(&req, b"s3cret").is_ok());
    assert_401(authenticate_control(&req, b"s3cres"));
    assert_401(authenticate_control(&req, b"s3cret-longer"));
    assert_401(authenticate_control(&with_auth(b"s3cret"), b"s3cret"));
    assert_401(authenticate_control(&Request::default(), b"s3cret"));
    // No configured secret: the control API is open (the documented default for loopback).
    assert!(authenticate_control(&with_auth(b"Bearer "), b"").is_ok());
    assert!(authenticate_control(&Request::default(), b"").is_ok());
}
