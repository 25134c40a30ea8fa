//! Hostile input never panics: arbitrary upgrade requests and arbitrary command payloads at
//! every session stage.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
use common::*;
use gateway_core::gateway::SessionEvent;
use gateway_core::gateway::command::parse_command;
use gateway_core::ws::{HandshakeStatus, parse_request};
use proptest::prelude::*;

fn json_like() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        "\\{\"op\":[0-9]{1,3}(,\"d\":(null|[0-9]{1,20}|\"[a-z]{0,5}\"|\\{\\}|\\[\\]|\\{\"guild_id\":[0-9\"]{1,5}\\}))?\\}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn handshake_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        match parse_request(&bytes) {
            Ok(HandshakeStatus::Complete { consumed, .. }) => prop_assert!(consumed <= bytes.len()),
            Ok(HandshakeStatus::Partial) => {}
            Err(e) => prop_assert!(e.status() == 400 || e.status() == 426),
        }
    }

    #[test]
    fn sessions_survive_arbitrary_commands(payloads in proptest::collection::vec(json_like(), 1..20), ready in any::<bool>()) {
        let _ = parse_command(&payloads[0]);
        let mut s = if ready { ready_session(0, 1) } else { new_session(0) };
        let mut closed = false;
        for (i, p) in payloads.iter().enumerate() {
            let ev = s.handle_message(&cfg(), p, 1 + i as u64);
            if closed {
                prop_assert_eq!(&ev, &None, "nothing after close");
            }
            if let Some(SessionEvent::Close { code, .. }) = ev {
                prop_assert!((4000..=4014).contains(&code));
                closed = true;
            }
        }
        prop_assert_eq!(closed, s.is_closed());
        drain(&mut s);
    }
}
