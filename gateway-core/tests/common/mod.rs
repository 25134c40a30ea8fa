//! Helpers shared by the integration tests: a fake client that reads the session's output.
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use gateway_core::gateway::ready::ready_event;
use gateway_core::gateway::{
    GatewayConfig, ReadyApplication, ReadyParams, ReadyUser, Session, SessionEvent, Snowflake,
};
use gateway_core::ws::{GatewayQuery, OpCode, Parsed, parse_frame};
use serde_json::{Value, json};

pub const SECRET: &[u8] = b"test-secret";
pub const USER: u64 = 80351110224678912;

pub fn cfg() -> GatewayConfig {
    GatewayConfig::new(SECRET)
}

pub fn token(user: u64) -> String {
    cfg().token_key.issue(user, 1_700_000_000)
}

/// A server frame as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Json(Value),
    Close(u16),
    Raw(OpCode, Vec<u8>),
}

/// Drains the session's output and parses every frame.
pub fn drain_raw(s: &mut Session) -> Vec<(OpCode, Vec<u8>)> {
    let mut wire = Vec::new();
    s.output().drain_into(&mut wire);
    let mut frames = Vec::new();
    let mut pos = 0;
    while pos < wire.len() {
        match parse_frame(&mut wire[pos..], false, 1 << 24) {
            Parsed::Frame(f) => {
                assert!(f.header.mask.is_none(), "server frames are unmasked");
                frames.push((f.header.opcode, f.payload.to_vec()));
                pos += f.consumed;
            }
            other => panic!("bad server frame: {other:?}"),
        }
    }
    frames
}

/// Drains and decodes plain (uncompressed) output.
pub fn drain(s: &mut Session) -> Vec<Out> {
    drain_raw(s)
        .into_iter()
        .map(|(op, p)| match op {
            OpCode::Text => Out::Json(serde_json::from_slice(&p).unwrap()),
            OpCode::Close => Out::Close(u16::from_be_bytes([p[0], p[1]])),
            other => Out::Raw(other, p),
        })
        .collect()
}

pub fn json_ops(out: &[Out]) -> Vec<u64> {
    out.iter()
        .filter_map(|o| match o {
            Out::Json(v) => v["op"].as_u64(),
            _ => None,
        })
        .collect()
}

pub fn new_session(now: u64) -> Session {
    let q = GatewayQuery {
        version: Some(10),
        ..GatewayQuery::default()
    };
    let (s, ev) = Session::new(&cfg(), &q, now);
    assert_eq!(ev, None);
    s
}

pub fn identify_json(token: &str, intents: u64, shard: Option<[u64; 2]>) -> Vec<u8> {
    let mut d = json!({
        "token": token,
        "intents": intents,
        "properties": {"os": "linux", "browser": "test", "device": "test"},
    });
    if let Some(s) = shard {
        d["shard"] = json!(s);
    }
    serde_json::to_vec(&json!({"op": 2, "d": d})).unwrap()
}

pub fn ready_for(s: &mut Session, session_id: &str) {
    let user = ReadyUser::bot(s.user_id(), "bot");
    let ready = ready_event(&ReadyParams {
        user: &user,
        guild_ids: &[1, 2],
        session_id,
        resume_gateway_url: "ws://127.0.0.1:1/",
        application: ReadyApplication {
            id: Snowflake(s.user_id()),
            flags: 0,
        },
        shard: s.shard(),
    })
    .unwrap();
    s.accept_identify(session_id, &ready).unwrap();
}

/// A session past Identify and READY, with its output drained.
pub fn ready_session(now: u64, intents: u64) -> Session {
    let c = cfg();
    let mut s = new_session(now);
    let ev = s.handle_message(&c, &identify_json(&token(USER), intents, None), now);
    assert!(matches!(ev, Some(SessionEvent::Identify { .. })), "{ev:?}");
    ready_for(&mut s, "sess-1");
    drain(&mut s);
    s
}

pub fn closed_with(out: &[Out]) -> Option<u16> {
    match out.last() {
        Some(Out::Close(c)) => Some(*c),
        _ => None,
    }
}
