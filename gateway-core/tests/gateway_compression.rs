//! Transport compression end to end: every server message of a session inflates with one
//! client-side context, in order, each ending with a sync flush.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
use common::*;
use flate2::{Decompress, FlushDecompress};
use gateway_core::gateway::intents::GUILDS;
use gateway_core::gateway::{Session, SessionEvent, SharedEvent};
use gateway_core::ws::{Compression, GatewayQuery, OpCode};
use serde_json::{Value, json};

fn session(kind: Compression) -> Session {
    let (s, ev) = Session::new(
        &cfg(),
        &GatewayQuery {
            version: Some(10),
            compress: kind,
        },
        0,
    );
    assert_eq!(ev, None);
    s
}

fn drive(s: &mut Session) {
    let c = cfg();
    assert_eq!(s.handle_message(&c, br#"{"op":1,"d":null}"#, 1), None);
    let ev = s.handle_message(&c, &identify_json(&token(USER), GUILDS, None), 2);
    assert!(matches!(ev, Some(SessionEvent::Identify { .. })));
    ready_for(s, "z");
    for i in 0..4 {
        let ev = SharedEvent::new(
            "GUILD_UPDATE",
            &json!({"id": "1", "name": "x".repeat(i * 400)}),
            GUILDS,
        )
        .unwrap();
        s.dispatch(&ev).unwrap();
    }
}

fn expect_sequence(msgs: &[Value]) {
    let ops: Vec<u64> = msgs.iter().map(|m| m["op"].as_u64().unwrap()).collect();
    assert_eq!(ops, vec![10, 11, 0, 0, 0, 0, 0]);
    assert_eq!(msgs[2]["t"], "READY");
    assert_eq!(msgs[6]["s"], 5);
    assert_eq!(msgs[6]["d"]["name"].as_str().unwrap().len(), 1200);
}

#[test]
fn zlib_stream_inflates_across_messages() {
    let mut s = session(Compression::ZlibStream);
    drive(&mut s);
    let mut inflate = Decompress::new(true);
    let mut msgs = Vec::new();
    for (op, payload) in drain_raw(&mut s) {
        assert_eq!(op, OpCode::Binary);
        assert!(payload.ends_with(&[0, 0, 0xff, 0xff]));
        let mut plain = Vec::with_capacity(64 * 1024);
        inflate
            .decompress_vec(&payload, &mut plain, FlushDecompress::Sync)
            .unwrap();
        msgs.push(serde_json::from_slice::<Value>(&plain).unwrap());
    }
    expect_sequence(&msgs);
}

#[test]
fn zstd_stream_decodes_across_messages() {
    use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
    let mut s = session(Compression::ZstdStream);
    drive(&mut s);
    let mut d = Decoder::new().unwrap();
    let mut msgs = Vec::new();
    for (op, payload) in drain_raw(&mut s) {
        assert_eq!(op, OpCode::Binary);
        let mut plain: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut input = InBuffer::around(&payload);
        while input.pos() < payload.len() {
            let pos = plain.len();
            let mut o = OutBuffer::around_pos(&mut plain, pos);
            d.run(&mut input, &mut o).unwrap();
        }
        msgs.push(serde_json::from_slice::<Value>(&plain).unwrap());
    }
    expect_sequence(&msgs);
}

#[test]
fn close_frames_are_never_compressed() {
    let mut s = session(Compression::ZlibStream);
    s.handle_message(&cfg(), br#"{"op":77}"#, 1);
    let frames = drain_raw(&mut s);
    let (op, payload) = frames.last().unwrap();
    assert_eq!(*op, OpCode::Close);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 4001);
}
