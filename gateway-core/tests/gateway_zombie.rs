//! Zombie detection: no heartbeat within interval + grace closes with 4009, on a virtual clock.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
use common::*;
use gateway_core::gateway::SessionEvent;
use gateway_core::gateway::intents::GUILDS;
use gateway_core::limits::{HEARTBEAT_GRACE_MS, HEARTBEAT_INTERVAL_MS};

const HB: &[u8] = br#"{"op":1,"d":null}"#;
const LIMIT: u64 = HEARTBEAT_INTERVAL_MS + HEARTBEAT_GRACE_MS;

#[test]
fn deadline_moves_with_each_heartbeat() {
    let c = cfg();
    let mut s = ready_session(1_000, GUILDS);
    assert_eq!(s.poll_timeout(), Some(1_000 + LIMIT));
    let mut now = 1_000;
    for _ in 0..10 {
        now += HEARTBEAT_INTERVAL_MS;
        assert_eq!(s.handle_timeout(now), None);
        assert_eq!(s.handle_message(&c, HB, now), None);
        assert_eq!(s.poll_timeout(), Some(now + LIMIT));
    }
    assert_eq!(
        s.handle_timeout(now + LIMIT - 1),
        None,
        "one ms early is not a zombie"
    );
    assert_eq!(
        s.handle_timeout(now + LIMIT),
        Some(SessionEvent::Close {
            code: 4009,
            resumable: true
        })
    );
    assert_eq!(closed_with(&drain(&mut s)), Some(4009));
    assert_eq!(s.handle_timeout(now + 10 * LIMIT), None, "reported once");
}

#[test]
fn other_commands_do_not_count_as_heartbeats() {
    let c = cfg();
    let mut s = ready_session(0, GUILDS);
    let presence = br#"{"op":3,"d":{"status":"idle","since":null,"activities":[],"afk":true}}"#;
    assert!(s.handle_message(&c, presence, LIMIT - 10).is_some());
    assert_eq!(
        s.handle_timeout(LIMIT),
        Some(SessionEvent::Close {
            code: 4009,
            resumable: true
        })
    );
}

#[test]
fn silent_connection_before_identify_times_out_unresumable() {
    let mut s = new_session(0);
    drain(&mut s);
    assert_eq!(
        s.handle_timeout(LIMIT),
        Some(SessionEvent::Close {
            code: 4009,
            resumable: false
        })
    );
}
