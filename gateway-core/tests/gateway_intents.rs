//! Intents filtering of dispatches and MESSAGE_CONTENT stripping.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
use common::*;
use gateway_core::gateway::SharedEvent;
use gateway_core::gateway::intents::{
    self, DIRECT_MESSAGES, GUILD_MESSAGES, GUILD_PRESENCES, GUILDS, MESSAGE_CONTENT, Scope,
};
use serde_json::json;

#[test]
fn sessions_only_get_events_their_intents_ask_for() {
    let mut guilds_only = ready_session(0, GUILDS);
    let mut messages = ready_session(0, GUILDS | GUILD_MESSAGES);
    let mut dms = ready_session(0, DIRECT_MESSAGES);
    let events = [
        SharedEvent::new(
            "MESSAGE_CREATE",
            &json!({"id":"1"}),
            intents::required("MESSAGE_CREATE", Scope::Guild),
        )
        .unwrap(),
        SharedEvent::new(
            "MESSAGE_CREATE",
            &json!({"id":"2"}),
            intents::required("MESSAGE_CREATE", Scope::Direct),
        )
        .unwrap(),
        SharedEvent::new(
            "PRESENCE_UPDATE",
            &json!({}),
            intents::required("PRESENCE_UPDATE", Scope::Guild),
        )
        .unwrap(),
        SharedEvent::new(
            "GUILD_UPDATE",
            &json!({}),
            intents::required("GUILD_UPDATE", Scope::Guild),
        )
        .unwrap(),
        SharedEvent::new(
            "GUILD_MEMBERS_CHUNK",
            &json!({}),
            intents::required("GUILD_MEMBERS_CHUNK", Scope::Guild),
        )
        .unwrap(),
    ];
    let deliver = |s: &mut gateway_core::gateway::Session| -> Vec<bool> {
        events.iter().map(|e| s.dispatch(e).unwrap()).collect()
    };
    assert_eq!(
        deliver(&mut guilds_only),
        vec![false, false, false, true, true]
    );
    assert_eq!(deliver(&mut messages), vec![true, false, false, true, true]);
    assert_eq!(deliver(&mut dms), vec![false, true, false, false, true]);
    // Filtered events take no sequence number: the client sees no gaps.
    let seqs: Vec<u64> = drain(&mut guilds_only)
        .iter()
        .map(|o| match o {
            Out::Json(v) => v["s"].as_u64().unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seqs, vec![2, 3]);
    let _ = GUILD_PRESENCES;
}

#[test]
fn message_content_needs_the_intent_except_dms_mentions_and_own() {
    let full = json!({"id":"1","channel_id":"2","content":"secret","embeds":[{"title":"t"}],"attachments":[{"id":"3"}],"components":[{"type":1}],"mentions":[]});
    let mut stripped = full.clone();
    intents::strip_message_content(&mut stripped);
    let req = intents::required("MESSAGE_CREATE", Scope::Guild);
    let full_ev = SharedEvent::new("MESSAGE_CREATE", &full, req).unwrap();
    let stripped_ev = SharedEvent::new("MESSAGE_CREATE", &stripped, req).unwrap();
    for (session_intents, mentioned, want_content) in [
        (GUILD_MESSAGES | MESSAGE_CONTENT, false, "secret"),
        (GUILD_MESSAGES, false, ""),
        (GUILD_MESSAGES, true, "secret"),
    ] {
        let mut s = ready_session(0, session_intents);
        let pick = if intents::content_visible(s.intents(), Scope::Guild, mentioned, false) {
            &full_ev
        } else {
            &stripped_ev
        };
        assert!(s.dispatch(pick).unwrap());
        let out = drain(&mut s);
        let Out::Json(v) = &out[0] else { panic!() };
        assert_eq!(v["d"]["content"], want_content);
        if want_content.is_empty() {
            assert_eq!(v["d"]["embeds"], json!([]));
            assert_eq!(v["d"]["attachments"], json!([]));
            assert_eq!(v["d"]["components"], json!([]));
        }
    }
}
