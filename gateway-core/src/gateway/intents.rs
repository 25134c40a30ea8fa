//! Gateway intents: validation of Identify's bitfield, which events a session receives, and
//! MESSAGE_CONTENT stripping.
//!
//! Content rule (kept simple on purpose): without MESSAGE_CONTENT a session still sees the
//! content of DMs, of messages that mention it and of its own messages; everything else gets
//! `content: ""` and empty `embeds`, `attachments` and `components` (and no `poll`). The engine
//! serializes at most two payloads per message (full and stripped) and picks one per session
//! with [`content_visible`].
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::opcode::CloseCode;

/// GUILDS
pub const GUILDS: u64 = 1 << 0;
/// GUILD_MEMBERS (privileged)
pub const GUILD_MEMBERS: u64 = 1 << 1;
/// GUILD_MODERATION
pub const GUILD_MODERATION: u64 = 1 << 2;
/// GUILD_EXPRESSIONS
pub const GUILD_EXPRESSIONS: u64 = 1 << 3;
/// GUILD_INTEGRATIONS
pub const GUILD_INTEGRATIONS: u64 = 1 << 4;
/// GUILD_WEBHOOKS
pub const GUILD_WEBHOOKS: u64 = 1 << 5;
/// GUILD_INVITES
pub const GUILD_INVITES: u64 = 1 << 6;
/// GUILD_VOICE_STATES
pub const GUILD_VOICE_STATES: u64 = 1 << 7;
/// GUILD_PRESENCES (privileged)
pub const GUILD_PRESENCES: u64 = 1 << 8;
/// GUILD_MESSAGES
pub const GUILD_MESSAGES: u64 = 1 << 9;
/// GUILD_MESSAGE_REACTIONS
pub const GUILD_MESSAGE_REACTIONS: u64 = 1 << 10;
/// GUILD_MESSAGE_TYPING
pub const GUILD_MESSAGE_TYPING: u64 = 1 << 11;
/// DIRECT_MESSAGES
pub const DIRECT_MESSAGES: u64 = 1 << 12;
/// DIRECT_MESSAGE_REACTIONS
pub const DIRECT_MESSAGE_REACTIONS: u64 = 1 << 13;
/// DIRECT_MESSAGE_TYPING
pub const DIRECT_MESSAGE_TYPING: u64 = 1 << 14;
/// MESSAGE_CONTENT (privileged)
pub const MESSAGE_CONTENT: u64 = 1 << 15;
/// GUILD_SCHEDULED_EVENTS
pub const GUILD_SCHEDULED_EVENTS: u64 = 1 << 16;
/// AUTO_MODERATION_CONFIGURATION
pub const AUTO_MODERATION_CONFIGURATION: u64 = 1 << 20;
/// AUTO_MODERATION_EXECUTION
pub const AUTO_MODERATION_EXECUTION: u64 = 1 << 21;
/// GUILD_MESSAGE_POLLS
pub const GUILD_MESSAGE_POLLS: u64 = 1 << 24;
/// DIRECT_MESSAGE_POLLS
pub const DIRECT_MESSAGE_POLLS: u64 = 1 << 25;

/// Every intent bit this server knows; others are 4013.
pub const KNOWN: u64 = GUILDS
    | GUILD_MEMBERS
    | GUILD_MODERATION
    | GUILD_EXPRESSIONS
    | GUILD_INTEGRATIONS
    | GUILD_WEBHOOKS
    | GUILD_INVITES
    | GUILD_VOICE_STATES
    | GUILD_PRESENCES
    | GUILD_MESSAGES
    | GUILD_MESSAGE_REACTIONS
    | GUILD_MESSAGE_TYPING
    | DIRECT_MESSAGES
    | DIRECT_MESSAGE_REACTIONS
    | DIRECT_MESSAGE_TYPING
    | MESSAGE_CONTENT
    | GUILD_SCHEDULED_EVENTS
    | AUTO_MODERATION_CONFIGURATION
    | AUTO_MODERATION_EXECUTION
    | GUILD_MESSAGE_POLLS
    | DIRECT_MESSAGE_POLLS;

/// Intents an application must be granted.
pub const PRIVILEGED: u64 = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT;

/// 4013 when unknown bits are set.
pub fn check_known(intents: u64) -> Result<(), CloseCode> {
    if intents & !KNOWN != 0 {
        return Err(CloseCode::InvalidIntents);
    }
    Ok(())
}

/// 4014 when privileged intents are asked for that `allowed_privileged` (supplied by the engine
/// from the application's flags) does not grant.
pub fn check_privileged(intents: u64, allowed_privileged: u64) -> Result<(), CloseCode> {
    if intents & PRIVILEGED & !allowed_privileged != 0 {
        return Err(CloseCode::DisallowedIntents);
    }
    Ok(())
}

/// Where an event happens, which decides between guild and DM intents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// In a guild.
    Guild,
    /// In a DM or group DM.
    Direct,
}

/// The intents of which a session needs at least one to receive the event `name`; 0 means
/// every session receives it (READY, RESUMED, member chunks, interactions, unknown events...).
pub fn required(name: &str, scope: Scope) -> u64 {
    let dm = scope == Scope::Direct;
    match name {
        "GUILD_CREATE"
        | "GUILD_UPDATE"
        | "GUILD_DELETE"
        | "GUILD_ROLE_CREATE"
        | "GUILD_ROLE_UPDATE"
        | "GUILD_ROLE_DELETE"
        | "CHANNEL_CREATE"
        | "CHANNEL_UPDATE"
        | "CHANNEL_DELETE"
        | "THREAD_CREATE"
        | "THREAD_UPDATE"
        | "THREAD_DELETE"
        | "THREAD_LIST_SYNC"
        | "THREAD_MEMBER_UPDATE"
        | "STAGE_INSTANCE_CREATE"
        | "STAGE_INSTANCE_UPDATE"
        | "STAGE_INSTANCE_DELETE" => GUILDS,
        "CHANNEL_PINS_UPDATE" if dm => DIRECT_MESSAGES,
        "CHANNEL_PINS_UPDATE" => GUILDS,
        "GUILD_MEMBER_ADD"
        | "GUILD_MEMBER_UPDATE"
        | "GUILD_MEMBER_REMOVE"
        | "THREAD_MEMBERS_UPDATE" => GUILD_MEMBERS,
        "GUILD_AUDIT_LOG_ENTRY_CREATE" | "GUILD_BAN_ADD" | "GUILD_BAN_REMOVE" => GUILD_MODERATION,
        "GUILD_EMOJIS_UPDATE"
        | "GUILD_STICKERS_UPDATE"
        | "GUILD_SOUNDBOARD_SOUND_CREATE"
        | "GUILD_SOUNDBOARD_SOUND_UPDATE"
        | "GUILD_SOUNDBOARD_SOUND_DELETE"
        | "GUILD_SOUNDBOARD_SOUNDS_UPDATE" => GUILD_EXPRESSIONS,
        "GUILD_INTEGRATIONS_UPDATE"
        | "INTEGRATION_CREATE"
        | "INTEGRATION_UPDATE"
        | "INTEGRATION_DELETE" => GUILD_INTEGRATIONS,
        "WEBHOOKS_UPDATE" => GUILD_WEBHOOKS,
        "INVITE_CREATE" | "INVITE_DELETE" => GUILD_INVITES,
        "VOICE_STATE_UPDATE" | "VOICE_CHANNEL_EFFECT_SEND" => GUILD_VOICE_STATES,
        "PRESENCE_UPDATE" => GUILD_PRESENCES,
        "MESSAGE_CREATE" | "MESSAGE_UPDATE" | "MESSAGE_DELETE" | "MESSAGE_DELETE_BULK" if dm => {
            DIRECT_MESSAGES
        }
        "MESSAGE_CREATE" | "MESSAGE_UPDATE" | "MESSAGE_DELETE" | "MESSAGE_DELETE_BULK" => {
            GUILD_MESSAGES
        }
        "MESSAGE_REACTION_ADD"
        | "MESSAGE_REACTION_REMOVE"
        | "MESSAGE_REACTION_REMOVE_ALL"
        | "MESSAGE_REACTION_REMOVE_EMOJI"
            if dm =>
        {
            DIRECT_MESSAGE_REACTIONS
        }
        "MESSAGE_REACTION_ADD"
        | "MESSAGE_REACTION_REMOVE"
        | "MESSAGE_REACTION_REMOVE_ALL"
        | "MESSAGE_REACTION_REMOVE_EMOJI" => GUILD_MESSAGE_REACTIONS,
        "TYPING_START" if dm => DIRECT_MESSAGE_TYPING,
        "TYPING_START" => GUILD_MESSAGE_TYPING,
        "GUILD_SCHEDULED_EVENT_CREATE"
        | "GUILD_SCHEDULED_EVENT_UPDATE"
        | "GUILD_SCHEDULED_EVENT_DELETE"
        | "GUILD_SCHEDULED_EVENT_USER_ADD"
        | "GUILD_SCHEDULED_EVENT_USER_REMOVE" => GUILD_SCHEDULED_EVENTS,
        "AUTO_MODERATION_RULE_CREATE"
        | "AUTO_MODERATION_RULE_UPDATE"
        | "AUTO_MODERATION_RULE_DELETE" => AUTO_MODERATION_CONFIGURATION,
        "AUTO_MODERATION_ACTION_EXECUTION" => AUTO_MODERATION_EXECUTION,
        "MESSAGE_POLL_VOTE_ADD" | "MESSAGE_POLL_VOTE_REMOVE" if dm => DIRECT_MESSAGE_POLLS,
        "MESSAGE_POLL_VOTE_ADD" | "MESSAGE_POLL_VOTE_REMOVE" => GUILD_MESSAGE_POLLS,
        _ => 0,
    }
}

/// Whether a session with `intents` receives an event needing `required_mask`.
pub fn delivers(intents: u64, required_mask: u64) -> bool {
    required_mask == 0 || intents & required_mask != 0
}

/// Whether a session sees message content: MESSAGE_CONTENT, a DM, a mention of the session's
/// user, or its own message.
pub fn content_visible(
    intents: u64,
    scope: Scope,
    mentions_self: bool,
    authored_by_self: bool,
) -> bool {
    intents & MESSAGE_CONTENT != 0 || scope == Scope::Direct || mentions_self || authored_by_self
}

/// Empties the content fields of a message object (`d` of MESSAGE_CREATE/UPDATE) in place.
pub fn strip_message_content(message: &mut serde_json::Value) {
    let Some(obj) = message.as_object_mut() else {
        return;
    };
    if obj.contains_key("content") {
        obj.insert("content".into(), serde_json::Value::String(String::new()));
    }
    for key in ["embeds", "attachments", "components"] {
        if obj.contains_key(key) {
            obj.insert(key.into(), serde_json::Value::Array(Vec::new()));
        }
    }
    obj.remove("poll");
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(check_known(KNOWN).is_ok());
        assert_eq!(check_known(1 << 17), Err(CloseCode::InvalidIntents));
        assert_eq!(check_known(1 << 40), Err(CloseCode::InvalidIntents));
        assert!(check_privileged(GUILDS | GUILD_MESSAGES, 0).is_ok());
        assert_eq!(
            check_privileged(MESSAGE_CONTENT, 0),
            Err(CloseCode::DisallowedIntents)
        );
        assert_eq!(
            check_privileged(GUILD_MEMBERS, GUILD_PRESENCES),
            Err(CloseCode::DisallowedIntents)
        );
        assert!(
            check_privileged(
                GUILD_MEMBERS | GUILD_PRESENCES,
                GUILD_MEMBERS | GUILD_PRESENCES
            )
            .is_ok()
        );
    }

    #[test]
    fn filtering() {
        let m = required("MESSAGE_CREATE", Scope::Guild);
        assert!(delivers(GUILD_MESSAGES, m));
        assert!(!delivers(DIRECT_MESSAGES | GUILDS, m));
        assert!(delivers(
            DIRECT_MESSAGES,
            required("MESSAGE_CREATE", Scope::Direct)
        ));
        assert!(!delivers(GUILDS, required("PRESENCE_UPDATE", Scope::Guild)));
        assert!(!delivers(0, required("GUILD_CREATE", Scope::Guild)));
        assert!(delivers(
            GUILD_MESSAGE_TYPING,
            required("TYPING_START", Scope::Guild)
        ));
        assert!(!delivers(
            GUILD_MESSAGE_TYPING,
            required("TYPING_START", Scope::Direct)
        ));
        for always in [
            "READY",
            "RESUMED",
            "GUILD_MEMBERS_CHUNK",
            "INTERACTION_CREATE",
            "VOICE_SERVER_UPDATE",
        ] {
            assert!(delivers(0, required(always, Scope::Guild)), "{always}");
        }
    }

    #[test]
    fn content_rules() {
        assert!(content_visible(MESSAGE_CONTENT, Scope::Guild, false, false));
        assert!(content_visible(0, Scope::Direct, false, false));
        assert!(content_visible(0, Scope::Guild, true, false));
        assert!(content_visible(0, Scope::Guild, false, true));
        assert!(!content_visible(GUILD_MESSAGES, Scope::Guild, false, false));
        let mut v = serde_json::json!({"id":"1","content":"hi","embeds":[{}],"attachments":[{}],"components":[{}],"poll":{},"tts":false});
        strip_message_content(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"id":"1","content":"","embeds":[],"attachments":[],"components":[],"tts":false})
        );
    }
}
