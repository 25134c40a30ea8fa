//! Every gateway opcode, server and client side, on the sans-IO session.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
use common::*;
use gateway_core::gateway::session::ResumeOutcome;
use gateway_core::gateway::{SessionEvent, SharedEvent, Snowflake};
use serde_json::json;

#[test]
fn op10_hello_first_with_interval() {
    let mut s = new_session(0);
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    let Out::Json(v) = &out[0] else { panic!() };
    assert_eq!(v["op"], 10);
    assert_eq!(v["d"]["heartbeat_interval"], 41250);
    assert!(v["s"].is_null() && v["t"].is_null());
    assert_eq!(s.poll_timeout(), Some(41_250 + 10_000));
}

#[test]
fn op1_heartbeat_before_identify_gets_op11() {
    let c = cfg();
    let mut s = new_session(0);
    drain(&mut s);
    assert_eq!(s.handle_message(&c, br#"{"op":1,"d":null}"#, 1_000), None);
    assert_eq!(s.handle_message(&c, br#"{"op":1,"d":5}"#, 2_000), None);
    assert_eq!(json_ops(&drain(&mut s)), vec![11, 11]);
    assert_eq!(s.poll_timeout(), Some(2_000 + 51_250));
}

#[test]
fn op2_identify_then_op0_ready_with_seq_1() {
    let c = cfg();
    let mut s = new_session(0);
    drain(&mut s);
    let ev = s.handle_message(
        &c,
        &identify_json(&format!("Bot {}", token(USER)), 513, Some([0, 1])),
        10,
    );
    let Some(SessionEvent::Identify { claims, identify }) = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(claims.user_id, USER);
    assert_eq!(identify.intents, 513);
    assert_eq!(identify.large_threshold, Some(50));
    assert_eq!(s.shard(), Some([0, 1]));
    ready_for(&mut s, "abc");
    let out = drain(&mut s);
    let Out::Json(v) = &out[0] else { panic!() };
    assert_eq!(
        (v["op"].as_u64(), v["s"].as_u64(), v["t"].as_str()),
        (Some(0), Some(1), Some("READY"))
    );
    assert_eq!(v["d"]["session_id"], "abc");
    assert_eq!(v["d"]["shard"], json!([0, 1]));
    assert_eq!(v["d"]["resume_gateway_url"], "ws://127.0.0.1:1");
    assert!(s.is_ready());
}

#[test]
fn op0_dispatch_splices_per_session_seq_into_shared_payload() {
    let mut a = ready_session(0, 1 << 9);
    let mut b = ready_session(0, 1 << 9);
    // b has one more event before, so the sequences differ for the same shared payload.
    let warm = SharedEvent::new("TYPING_START", &json!({}), 0).unwrap();
    b.dispatch(&warm).unwrap();
    drain(&mut b);
    let ev = SharedEvent::new(
        "MESSAGE_CREATE",
        &json!({"id": "9", "content": "hi"}),
        1 << 9,
    )
    .unwrap();
    assert!(a.dispatch(&ev).unwrap());
    assert!(b.dispatch(&ev).unwrap());
    let (fa, fb) = (a.output().pop().unwrap(), b.output().pop().unwrap());
    assert_eq!(fa.tail().as_ptr(), ev.tail().as_ptr());
    assert_eq!(fb.tail().as_ptr(), ev.tail().as_ptr());
    let parse = |f: gateway_core::gateway::OutFrame| {
        let mut w = Vec::new();
        f.write_to(&mut w);
        let gateway_core::ws::Parsed::Frame(fr) =
            gateway_core::ws::parse_frame(&mut w, false, 1 << 20)
        else {
            panic!()
        };
        serde_json::from_slice::<serde_json::Value>(fr.payload).unwrap()
    };
    let (va, vb) = (parse(fa), parse(fb));
    assert_eq!((va["s"].as_u64(), vb["s"].as_u64()), (Some(2), Some(3)));
    assert_eq!(va["d"], vb["d"]);
    assert_eq!(va["t"], "MESSAGE_CREATE");
}

#[test]
fn op3_op4_op8_op14_become_engine_events() {
    let c = cfg();
    let mut s = ready_session(0, 1);
    let ev = s.handle_message(&c, br#"{"op":3,"d":{"since":null,"activities":[{"name":"x","type":0}],"status":"dnd","afk":false}}"#, 1);
    let Some(SessionEvent::PresenceUpdate(p)) = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(p.status, "dnd");
    let ev = s.handle_message(
        &c,
        br#"{"op":4,"d":{"guild_id":5,"channel_id":null,"self_mute":false,"self_deaf":true}}"#,
        2,
    );
    let Some(SessionEvent::VoiceStateUpdate(v)) = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(
        (v.guild_id, v.channel_id, v.self_deaf),
        (Snowflake(5), None, true)
    );
    let ev = s.handle_message(
        &c,
        br#"{"op":8,"d":{"guild_id":"5","query":"","limit":0,"nonce":"abc"}}"#,
        3,
    );
    let Some(SessionEvent::RequestGuildMembers(r)) = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(r.nonce.as_deref(), Some("abc"));
    let ev = s.handle_message(
        &c,
        br#"{"op":14,"d":{"guild_id":"5","channels":{"6":[[0,99]]}}}"#,
        4,
    );
    let Some(SessionEvent::LazyRequest(l)) = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(l.channels.len(), 1);
    assert!(
        drain(&mut s).is_empty(),
        "no reply frames for engine-handled commands"
    );
}

#[test]
fn op6_resume_reports_claims_and_seq() {
    let c = cfg();
    let mut s = new_session(0);
    let p = format!(
        r#"{{"op":6,"d":{{"token":"{}","session_id":"sess-1","seq":7}}}}"#,
        token(USER)
    );
    let ev = s.handle_message(&c, p.as_bytes(), 1);
    let Some(SessionEvent::Resume {
        claims,
        session_id,
        seq,
    }) = ev
    else {
        panic!("{ev:?}")
    };
    assert_eq!(
        (claims.user_id, session_id.as_str(), seq),
        (USER, "sess-1", 7)
    );
}

#[test]
fn op7_reconnect_on_engine_request() {
    let mut s = ready_session(0, 1);
    s.reconnect().unwrap();
    assert_eq!(json_ops(&drain(&mut s)), vec![7]);
    assert!(s.is_ready(), "the session stays until the client leaves");
    assert!(
        s.peer_closed(Some(4000)),
        "kept resumable when the client closes to resume"
    );
}

#[test]
fn op9_invalid_session_is_false_and_allows_identify() {
    let c = cfg();
    let mut s = new_session(0);
    drain(&mut s);
    let p = format!(
        r#"{{"op":6,"d":{{"token":"{}","session_id":"gone","seq":1}}}}"#,
        token(USER)
    );
    assert!(matches!(
        s.handle_message(&c, p.as_bytes(), 1),
        Some(SessionEvent::Resume { .. })
    ));
    s.invalid_session().unwrap();
    let out = drain(&mut s);
    let Out::Json(v) = &out[0] else { panic!() };
    assert_eq!((v["op"].as_u64(), v["d"].as_bool()), (Some(9), Some(false)));
    let ev = s.handle_message(&c, &identify_json(&token(USER), 1, None), 2);
    assert!(matches!(ev, Some(SessionEvent::Identify { .. })));
}

#[test]
fn resume_outcome_is_reported() {
    // Covered in depth in gateway_resume.rs; here only that op 6 leads to RESUMED (op 0).
    let c = cfg();
    let mut old = ready_session(0, 1);
    assert!(old.peer_closed(None));
    let mut s = new_session(5);
    let p = format!(
        r#"{{"op":6,"d":{{"token":"{}","session_id":"sess-1","seq":1}}}}"#,
        token(USER)
    );
    s.handle_message(&c, p.as_bytes(), 6);
    drain(&mut s);
    assert_eq!(
        s.resume_from(&mut old, 1).unwrap(),
        ResumeOutcome::Resumed { replayed: 0 }
    );
    let out = drain(&mut s);
    let Out::Json(v) = &out[0] else { panic!() };
    assert_eq!(
        (v["op"].as_u64(), v["s"].as_u64(), v["t"].as_str()),
        (Some(0), Some(2), Some("RESUMED"))
    );
}

#[test]
fn server_only_opcodes_from_client_are_4001() {
    for op in [0, 7, 9, 10, 11, 5, 12, 13, 99] {
        let c = cfg();
        let mut s = ready_session(0, 1);
        let ev = s.handle_message(&c, format!(r#"{{"op":{op},"d":null}}"#).as_bytes(), 1);
        assert_eq!(
            ev,
            Some(SessionEvent::Close {
                code: 4001,
                resumable: true
            }),
            "op {op}"
        );
        assert_eq!(closed_with(&drain(&mut s)), Some(4001));
    }
}
