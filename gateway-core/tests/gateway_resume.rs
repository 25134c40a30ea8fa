//! Resume (op 6): replay of missed events, RESUMED, and the edge cases that end in op 9 or 4007.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
use common::*;
use gateway_core::gateway::intents::GUILDS;
use gateway_core::gateway::session::ResumeOutcome;
use gateway_core::gateway::{Session, SessionEvent, SharedEvent};
use gateway_core::limits::RESUME_RING_EVENTS_MAX;
use serde_json::json;

fn ev(i: u64) -> SharedEvent {
    SharedEvent::new("GUILD_UPDATE", &json!({ "id": "1", "n": i }), GUILDS).unwrap()
}

fn resuming(user: u64, seq: u64, now: u64) -> Session {
    let mut s = new_session(now);
    drain(&mut s);
    // Heartbeats are allowed while resuming.
    assert_eq!(s.handle_message(&cfg(), br#"{"op":1,"d":null}"#, now), None);
    let p = format!(
        r#"{{"op":6,"d":{{"token":"Bot {}","session_id":"sess-1","seq":{seq}}}}}"#,
        token(user)
    );
    let e = s.handle_message(&cfg(), p.as_bytes(), now);
    assert!(matches!(e, Some(SessionEvent::Resume { .. })), "{e:?}");
    drain(&mut s);
    s
}

fn dispatched(out: &[Out]) -> Vec<(u64, String)> {
    out.iter()
        .filter_map(|o| match o {
            Out::Json(v) if v["op"] == 0 => Some((
                v["s"].as_u64().unwrap(),
                v["t"].as_str().unwrap().to_owned(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn replays_everything_after_seq_including_events_while_disconnected() {
    let mut old = ready_session(0, GUILDS); // READY is s=1
    for i in 0..5 {
        old.dispatch(&ev(i)).unwrap(); // s=2..=6
    }
    drain(&mut old);
    assert!(
        old.peer_closed(Some(4000)),
        "4000 from the client keeps the session"
    );
    old.dispatch(&ev(5)).unwrap(); // s=7, buffered only
    old.dispatch(&ev(6)).unwrap(); // s=8
    assert!(drain(&mut old).is_empty());

    let mut s = resuming(USER, 3, 100);
    assert_eq!(
        s.resume_from(&mut old, 3).unwrap(),
        ResumeOutcome::Resumed { replayed: 5 }
    );
    let out = drain(&mut s);
    let got = dispatched(&out);
    let want: Vec<(u64, String)> = (4..=8)
        .map(|s| (s, "GUILD_UPDATE".to_owned()))
        .chain([(9, "RESUMED".to_owned())])
        .collect();
    assert_eq!(got, want);
    // The payloads are the original ones.
    let Out::Json(v) = &out[0] else { panic!() };
    assert_eq!(v["d"]["n"], 2);
    assert_eq!(s.session_id(), "sess-1");
    assert!(s.is_ready());
    assert!(!old.is_resumable(), "the old session is consumed");
    // New events continue the same sequence.
    s.dispatch(&ev(7)).unwrap();
    assert_eq!(
        dispatched(&drain(&mut s)),
        vec![(10, "GUILD_UPDATE".to_owned())]
    );
}

#[test]
fn seq_equal_to_last_sends_only_resumed() {
    let mut old = ready_session(0, GUILDS);
    old.dispatch(&ev(0)).unwrap();
    old.peer_closed(None);
    let mut s = resuming(USER, 2, 10);
    assert_eq!(
        s.resume_from(&mut old, 2).unwrap(),
        ResumeOutcome::Resumed { replayed: 0 }
    );
    assert_eq!(dispatched(&drain(&mut s)), vec![(3, "RESUMED".to_owned())]);
}

#[test]
fn seq_older_than_the_ring_gets_op9_false() {
    let mut old = ready_session(0, GUILDS);
    for i in 0..(RESUME_RING_EVENTS_MAX as u64 + 5) {
        old.dispatch(&ev(i)).unwrap();
        drain(&mut old);
    }
    old.peer_closed(None);
    let last = old.seq();
    let oldest_kept = last - RESUME_RING_EVENTS_MAX as u64 + 1;
    // Just too old: the event after it was evicted.
    let mut s = resuming(USER, oldest_kept - 2, 10);
    assert_eq!(
        s.resume_from(&mut old, oldest_kept - 2).unwrap(),
        ResumeOutcome::InvalidSession
    );
    let out = drain(&mut s);
    let Out::Json(v) = &out[0] else { panic!() };
    assert_eq!((v["op"].as_u64(), v["d"].as_bool()), (Some(9), Some(false)));
    assert!(
        old.is_resumable(),
        "a failed attempt does not consume the old session"
    );
    // Just new enough: every kept event is replayed.
    let mut s = resuming(USER, oldest_kept - 1, 10);
    assert_eq!(
        s.resume_from(&mut old, oldest_kept - 1).unwrap(),
        ResumeOutcome::Resumed {
            replayed: RESUME_RING_EVENTS_MAX
        }
    );
}

#[test]
fn client_close_1000_ends_the_session() {
    for (code, resumable) in [
        (Some(1000), false),
        (Some(1001), false),
        (Some(4200), true),
        (None, true),
    ] {
        let mut old = ready_session(0, GUILDS);
        assert_eq!(old.peer_closed(code), resumable, "{code:?}");
        let mut s = resuming(USER, 1, 10);
        let want = if resumable {
            ResumeOutcome::Resumed { replayed: 0 }
        } else {
            ResumeOutcome::InvalidSession
        };
        assert_eq!(s.resume_from(&mut old, 1).unwrap(), want, "{code:?}");
    }
}

#[test]
fn another_users_token_cannot_take_a_session() {
    let mut old = ready_session(0, GUILDS);
    old.peer_closed(None);
    let mut s = resuming(USER + 1, 1, 10);
    assert_eq!(
        s.resume_from(&mut old, 1).unwrap(),
        ResumeOutcome::InvalidSession
    );
    assert!(old.is_resumable());
}

#[test]
fn zombie_closed_session_is_resumable() {
    let mut old = ready_session(0, GUILDS);
    assert_eq!(
        old.handle_timeout(60_000),
        Some(SessionEvent::Close {
            code: 4009,
            resumable: true
        })
    );
    old.dispatch(&ev(1)).unwrap();
    let mut s = resuming(USER, 1, 61_000);
    assert_eq!(
        s.resume_from(&mut old, 1).unwrap(),
        ResumeOutcome::Resumed { replayed: 1 }
    );
}

#[test]
fn sessions_that_never_got_ready_are_not_resumable() {
    let mut s = new_session(0);
    s.handle_message(&cfg(), &identify_json(&token(USER), GUILDS, None), 1);
    assert!(!s.peer_closed(None));
    let mut r = resuming(USER, 0, 10);
    assert_eq!(
        r.resume_from(&mut s, 0).unwrap(),
        ResumeOutcome::InvalidSession
    );
}

#[test]
fn resume_takes_over_a_session_whose_old_connection_is_still_open() {
    let mut old = ready_session(0, GUILDS);
    old.dispatch(&ev(0)).unwrap(); // s=2
    drain(&mut old);
    assert!(!old.is_closed());
    let mut s = resuming(USER, 1, 10);
    assert_eq!(
        s.resume_from(&mut old, 1).unwrap(),
        ResumeOutcome::Resumed { replayed: 1 }
    );
    assert!(old.is_closed(), "the old connection is told to go");
    assert_eq!(closed_with(&drain(&mut old)), Some(4000));
    assert!(!old.is_resumable());
}
