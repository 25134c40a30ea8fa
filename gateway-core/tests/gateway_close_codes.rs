//! Every gateway close code: the close frame on the wire, the engine event and resumability.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
use common::*;
use gateway_core::gateway::intents::{self, GUILD_MEMBERS, GUILDS, MESSAGE_CONTENT};
use gateway_core::gateway::session::{ResumeOutcome, SessionError};
use gateway_core::gateway::sharding::check_sharding_required;
use gateway_core::gateway::{CloseCode, Session, SessionEvent, SharedEvent};
use gateway_core::limits::{
    COMMANDS_PER_WINDOW_MAX, GATEWAY_PAYLOAD_BYTES_MAX, GUILDS_PER_SHARD_MAX,
    OUTPUT_QUEUE_FRAMES_MAX,
};
use gateway_core::ws::{Compression, GatewayQuery};

fn expect_close(s: &mut Session, ev: Option<SessionEvent>, code: u16, resumable: bool) {
    assert_eq!(ev, Some(SessionEvent::Close { code, resumable }));
    assert_eq!(closed_with(&drain(s)), Some(code));
    assert!(s.is_closed());
    assert_eq!(s.close_code(), Some(code));
    assert_eq!(s.poll_timeout(), None);
    // Nothing is processed after the close.
    assert_eq!(
        s.handle_message(&cfg(), br#"{"op":1,"d":null}"#, 1_000_000),
        None
    );
    assert!(drain(s).is_empty());
}

#[test]
fn c4000_output_overflow_is_resumable() {
    let mut s = ready_session(0, GUILDS);
    let ev = SharedEvent::new("GUILD_UPDATE", &serde_json::json!({"id": "1"}), GUILDS).unwrap();
    let mut result = Ok(true);
    for _ in 0..=OUTPUT_QUEUE_FRAMES_MAX {
        result = s.dispatch(&ev);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(SessionError::OutputOverflow));
    assert!(s.is_resumable());
    let out = drain(&mut s);
    assert_eq!(closed_with(&out), Some(4000));
    // Later events keep being numbered into the ring for the resume.
    let before = s.seq();
    assert_eq!(s.dispatch(&ev), Ok(true));
    assert_eq!(s.seq(), before + 1);
    assert!(drain(&mut s).is_empty());
}

#[test]
fn c4001_unknown_opcode() {
    let mut s = new_session(0);
    drain(&mut s);
    let ev = s.handle_message(&cfg(), br#"{"op":42}"#, 1);
    expect_close(&mut s, ev, 4001, false);
}

#[test]
fn c4002_decode_errors_and_oversize() {
    let bad: [&[u8]; 5] = [
        b"not json",
        br#"{"op":"1"}"#,
        br#"{"d":1}"#,
        br#"{"op":4,"d":{"guild_id":"x"}}"#,
        br#"{"op":2,"d":{"token":"a","intents":-1}}"#,
    ];
    for p in bad {
        let mut s = new_session(0);
        drain(&mut s);
        let ev = s.handle_message(&cfg(), p, 1);
        expect_close(&mut s, ev, 4002, false);
    }
    let mut s = ready_session(0, GUILDS);
    let big = format!(
        r#"{{"op":1,"d":null,"pad":"{}"}}"#,
        "x".repeat(GATEWAY_PAYLOAD_BYTES_MAX)
    );
    let ev = s.handle_message(&cfg(), big.as_bytes(), 1);
    expect_close(&mut s, ev, 4002, true);
    // Exactly at the limit is fine.
    let mut s = ready_session(0, GUILDS);
    let head = r#"{"op":1,"d":null,"pad":""}"#;
    let edge = format!(
        r#"{{"op":1,"d":null,"pad":"{}"}}"#,
        "x".repeat(GATEWAY_PAYLOAD_BYTES_MAX - head.len())
    );
    assert_eq!(edge.len(), GATEWAY_PAYLOAD_BYTES_MAX);
    assert_eq!(s.handle_message(&cfg(), edge.as_bytes(), 1), None);
}

#[test]
fn c4003_commands_before_identify() {
    for p in [
        r#"{"op":3,"d":{"status":"online","since":null,"activities":[],"afk":false}}"#,
        r#"{"op":4,"d":{"guild_id":"1","channel_id":"2","self_mute":false,"self_deaf":false}}"#,
        r#"{"op":8,"d":{"guild_id":"1","query":"","limit":0}}"#,
        r#"{"op":14,"d":{"guild_id":"1"}}"#,
    ] {
        let mut s = new_session(0);
        drain(&mut s);
        let ev = s.handle_message(&cfg(), p.as_bytes(), 1);
        expect_close(&mut s, ev, 4003, false);
    }
}

#[test]
fn c4004_bad_tokens_on_identify_and_resume() {
    let forged = GatewayConfigForge::token();
    for t in ["", "garbage", forged.as_str()] {
        let mut s = new_session(0);
        drain(&mut s);
        let ev = s.handle_message(&cfg(), &identify_json(t, GUILDS, None), 1);
        expect_close(&mut s, ev, 4004, false);
        let mut s = new_session(0);
        drain(&mut s);
        let p = format!(r#"{{"op":6,"d":{{"token":"{t}","session_id":"x","seq":0}}}}"#);
        let ev = s.handle_message(&cfg(), p.as_bytes(), 1);
        expect_close(&mut s, ev, 4004, false);
    }
}

/// A token signed with another secret.
struct GatewayConfigForge;
impl GatewayConfigForge {
    fn token() -> String {
        gateway_core::token::TokenKey::new(b"not-the-secret").issue(USER, 1)
    }
}

#[test]
fn c4005_identify_twice_or_resume_after_identify() {
    let mut s = ready_session(0, GUILDS);
    let ev = s.handle_message(&cfg(), &identify_json(&token(USER), GUILDS, None), 1);
    expect_close(&mut s, ev, 4005, true);
    let mut s = new_session(0);
    drain(&mut s);
    s.handle_message(&cfg(), &identify_json(&token(USER), GUILDS, None), 1);
    let p = format!(
        r#"{{"op":6,"d":{{"token":"{}","session_id":"x","seq":0}}}}"#,
        token(USER)
    );
    let ev = s.handle_message(&cfg(), p.as_bytes(), 2);
    expect_close(&mut s, ev, 4005, false);
}

#[test]
fn c4007_resume_with_future_seq() {
    let mut old = ready_session(0, GUILDS);
    assert!(old.peer_closed(None));
    let mut s = new_session(0);
    drain(&mut s);
    let p = format!(
        r#"{{"op":6,"d":{{"token":"{}","session_id":"sess-1","seq":99}}}}"#,
        token(USER)
    );
    s.handle_message(&cfg(), p.as_bytes(), 1);
    let out = s.resume_from(&mut old, 99).unwrap();
    let ResumeOutcome::Closed(ev) = out else {
        panic!("{out:?}")
    };
    expect_close(&mut s, Some(ev), 4007, false);
    assert!(old.is_resumable(), "the old session is untouched");
}

#[test]
fn c4008_rate_limited() {
    let mut s = ready_session(0, GUILDS);
    // The Identify counted as one command.
    for i in 1..COMMANDS_PER_WINDOW_MAX {
        assert_eq!(
            s.handle_message(&cfg(), br#"{"op":1,"d":null}"#, u64::from(i)),
            None,
            "command {i}"
        );
    }
    let ev = s.handle_message(&cfg(), br#"{"op":1,"d":null}"#, 500);
    expect_close(&mut s, ev, 4008, true);
}

#[test]
fn c4009_session_timed_out() {
    let mut s = ready_session(0, GUILDS);
    let ev = s.handle_timeout(51_250);
    expect_close(&mut s, ev, 4009, true);
}

#[test]
fn c4010_invalid_shard() {
    for shard in [[1, 1], [0, 0], [5, 3], [0, 100_000]] {
        let mut s = new_session(0);
        drain(&mut s);
        let ev = s.handle_message(&cfg(), &identify_json(&token(USER), GUILDS, Some(shard)), 1);
        expect_close(&mut s, ev, 4010, false);
    }
}

#[test]
fn c4011_sharding_required_decided_by_engine() {
    let mut s = new_session(0);
    drain(&mut s);
    s.handle_message(&cfg(), &identify_json(&token(USER), GUILDS, None), 1);
    let code = check_sharding_required(GUILDS_PER_SHARD_MAX + 1, 1).unwrap_err();
    assert_eq!(code, CloseCode::ShardingRequired);
    let ev = s.close(code);
    expect_close(&mut s, Some(ev), 4011, false);
}

#[test]
fn c4012_invalid_api_version() {
    for v in [9, 0, 11] {
        let q = GatewayQuery {
            version: Some(v),
            compress: Compression::None,
        };
        let (mut s, ev) = Session::new(&cfg(), &q, 0);
        let out = drain(&mut s);
        assert_eq!(out.len(), 1, "no Hello, only the close");
        assert_eq!(
            ev,
            Some(SessionEvent::Close {
                code: 4012,
                resumable: false
            })
        );
        assert_eq!(closed_with(&out), Some(4012));
    }
    let (_, ev) = Session::new(&cfg(), &GatewayQuery::default(), 0);
    assert_eq!(ev, None, "a missing v is taken as 10");
}

#[test]
fn c4013_invalid_intents() {
    let mut s = new_session(0);
    drain(&mut s);
    let ev = s.handle_message(&cfg(), &identify_json(&token(USER), 1 << 17, None), 1);
    expect_close(&mut s, ev, 4013, false);
}

#[test]
fn c4014_disallowed_intents_decided_by_engine() {
    let mut s = new_session(0);
    drain(&mut s);
    let ev = s.handle_message(
        &cfg(),
        &identify_json(&token(USER), GUILDS | MESSAGE_CONTENT, None),
        1,
    );
    let Some(SessionEvent::Identify { identify, .. }) = ev else {
        panic!("{ev:?}")
    };
    assert!(intents::check_privileged(identify.intents, MESSAGE_CONTENT | GUILD_MEMBERS).is_ok());
    let code = intents::check_privileged(identify.intents, GUILD_MEMBERS).unwrap_err();
    let ev = s.close(code);
    expect_close(&mut s, Some(ev), 4014, false);
}
