//! The 120-commands-per-60-s limit on a virtual clock.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
use common::*;
use gateway_core::gateway::SessionEvent;
use gateway_core::gateway::intents::GUILDS;
use gateway_core::limits::{COMMAND_WINDOW_MS, COMMANDS_PER_WINDOW_MAX};

const HB: &[u8] = br#"{"op":1,"d":null}"#;

#[test]
fn budget_refills_after_the_window() {
    let c = cfg();
    let mut s = new_session(0);
    for i in 0..COMMANDS_PER_WINDOW_MAX {
        assert_eq!(s.handle_message(&c, HB, u64::from(i) * 100), None);
    }
    // Next window: the budget is whole again.
    for i in 0..COMMANDS_PER_WINDOW_MAX {
        assert_eq!(
            s.handle_message(&c, HB, COMMAND_WINDOW_MS + u64::from(i)),
            None,
            "command {i}"
        );
    }
    assert_eq!(
        s.handle_message(&c, HB, COMMAND_WINDOW_MS * 2 - 1),
        Some(SessionEvent::Close {
            code: 4008,
            resumable: false
        })
    );
}

#[test]
fn every_command_kind_counts() {
    let c = cfg();
    let mut s = ready_session(0, GUILDS);
    let presence = br#"{"op":3,"d":{"status":"online","since":null,"activities":[],"afk":false}}"#;
    let mut closed = None;
    for i in 0..COMMANDS_PER_WINDOW_MAX {
        let p: &[u8] = if i % 2 == 0 { presence } else { HB };
        if let Some(SessionEvent::Close { code, .. }) = s.handle_message(&c, p, 1 + u64::from(i)) {
            closed = Some((i, code));
            break;
        }
    }
    // Identify used one command, so the 120th command of the loop is the 121st.
    assert_eq!(closed, Some((COMMANDS_PER_WINDOW_MAX - 1, 4008)));
    assert!(s.is_resumable());
}

#[test]
fn a_slow_steady_client_is_never_limited() {
    let c = cfg();
    let mut s = ready_session(0, GUILDS);
    // One command per second for ten minutes.
    for t in 1..600u64 {
        let ev = s.handle_message(&c, HB, t * 1_000);
        assert_eq!(ev, None, "t={t}");
    }
}
