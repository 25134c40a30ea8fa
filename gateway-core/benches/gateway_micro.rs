//! Micro-benchmarks of the per-recipient dispatch cost and of frame decoding. Run with
//! `cargo bench -p gateway-core`; prints ns per operation. Short on purpose (2-core VM).
#![allow(clippy::unwrap_used, missing_docs)]

use gateway_core::gateway::ready::ready_event;
use gateway_core::gateway::{
    GatewayConfig, ReadyApplication, ReadyParams, ReadyUser, Session, SessionEvent, SharedEvent,
    Snowflake,
};
use gateway_core::ws::{Decoder, GatewayQuery, OpCode, WsEvent, write_client_frame};
use std::hint::black_box;
use std::time::Instant;

fn ready_sessions(n: usize) -> Vec<Session> {
    let cfg = GatewayConfig::new(b"bench");
    let token = cfg.token_key.issue(1, 0);
    let ident = format!(r#"{{"op":2,"d":{{"token":"{token}","intents":513}}}}"#);
    let user = ReadyUser::bot(1, "bench");
    let ready = ready_event(&ReadyParams {
        user: &user,
        guild_ids: &[],
        session_id: "s",
        resume_gateway_url: "ws://127.0.0.1:1",
        application: ReadyApplication {
            id: Snowflake(1),
            flags: 0,
        },
        shard: None,
    })
    .unwrap();
    (0..n)
        .map(|_| {
            let (mut s, _) = Session::new(&cfg, &GatewayQuery::default(), 0);
            let ev = s.handle_message(&cfg, ident.as_bytes(), 0);
            assert!(matches!(ev, Some(SessionEvent::Identify { .. })));
            s.accept_identify("s", &ready).unwrap();
            while s.output().pop().is_some() {}
            s
        })
        .collect()
}

fn dispatch_fanout() {
    // HEARTH_BENCH_SESSIONS shows how much is cache misses (try 10 vs 1000).
    let n = std::env::var("HEARTH_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let mut sessions = ready_sessions(n);
    let ev = SharedEvent::new(
        "MESSAGE_CREATE",
        &serde_json::json!({"id": "1", "channel_id": "2", "content": "x".repeat(200)}),
        1 << 9,
    )
    .unwrap();
    let rounds = 1_000_000 / n.max(1);
    let start = Instant::now();
    for _ in 0..rounds {
        for s in &mut sessions {
            black_box(s.dispatch(&ev).unwrap());
        }
        for s in &mut sessions {
            while let Some(f) = s.output().pop() {
                black_box(f.head().len() + f.tail().len());
            }
        }
    }
    let per = start.elapsed().as_nanos() as f64 / (rounds * sessions.len()) as f64;
    println!("dispatch+dequeue per recipient ({n} sessions): {per:.0} ns");
}

fn decode_frames() {
    let payload = br#"{"op":1,"d":12345}"#;
    let mut wire = Vec::new();
    for i in 0..10_000u32 {
        write_client_frame(OpCode::Text, true, i.to_le_bytes(), payload, &mut wire);
    }
    let template = wire.clone();
    let rounds = 20;
    let start = Instant::now();
    let mut msgs = 0usize;
    for _ in 0..rounds {
        wire.copy_from_slice(&template);
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let (n, r) = d.next(&mut wire[pos..], &mut out);
            pos += n;
            match r.unwrap() {
                WsEvent::Text(t) => {
                    black_box(t);
                    msgs += 1;
                }
                WsEvent::NeedMore(_) => break,
                _ => {}
            }
        }
    }
    let per = start.elapsed().as_nanos() as f64 / msgs as f64;
    println!("decode small masked text frame: {per:.0} ns");
}

fn main() {
    dispatch_fanout();
    decode_frames();
}
