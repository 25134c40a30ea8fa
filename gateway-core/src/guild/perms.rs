//! Permission bits of API v10 and the pure computation rules.
//!
//! The order is the one `DESIGN.md` fixes: the owner gets everything; base = @everyone | every
//! role of the member; ADMINISTRATOR gets everything; then the channel's overwrites apply in
//! three layers (@everyone, the member's roles together, the member), each deny before allow;
//! without VIEW_CHANNEL a member has nothing in that channel. Overwrites are per channel: a
//! category's overwrites are not inherited at compute time (Discord copies them when a channel
//! is synced, which is a write, not a read).

#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::model::{Overwrite, OverwriteKind};

/// Create instant invites.
pub const CREATE_INSTANT_INVITE: u64 = 1 << 0;
/// Kick members.
pub const KICK_MEMBERS: u64 = 1 << 1;
/// Ban members.
pub const BAN_MEMBERS: u64 = 1 << 2;
/// Every permission, bypassing channel overwrites.
pub const ADMINISTRATOR: u64 = 1 << 3;
/// Create, edit and delete channels.
pub const MANAGE_CHANNELS: u64 = 1 << 4;
/// Edit the guild.
pub const MANAGE_GUILD: u64 = 1 << 5;
/// Add reactions.
pub const ADD_REACTIONS: u64 = 1 << 6;
/// View the audit log.
pub const VIEW_AUDIT_LOG: u64 = 1 << 7;
/// Priority speaker in voice.
pub const PRIORITY_SPEAKER: u64 = 1 << 8;
/// Go live.
pub const STREAM: u64 = 1 << 9;
/// See a channel (and read it for text channels).
pub const VIEW_CHANNEL: u64 = 1 << 10;
/// Send messages.
pub const SEND_MESSAGES: u64 = 1 << 11;
/// Send text-to-speech messages.
pub const SEND_TTS_MESSAGES: u64 = 1 << 12;
/// Delete or pin other members' messages.
pub const MANAGE_MESSAGES: u64 = 1 << 13;
/// Links are embedded.
pub const EMBED_LINKS: u64 = 1 << 14;
/// Upload files.
pub const ATTACH_FILES: u64 = 1 << 15;
/// Read past messages.
pub const READ_MESSAGE_HISTORY: u64 = 1 << 16;
/// Mention @everyone and @here.
pub const MENTION_EVERYONE: u64 = 1 << 17;
/// Use emojis of other guilds.
pub const USE_EXTERNAL_EMOJIS: u64 = 1 << 18;
/// View guild insights.
pub const VIEW_GUILD_INSIGHTS: u64 = 1 << 19;
/// Join a voice channel.
pub const CONNECT: u64 = 1 << 20;
/// Speak in a voice channel.
pub const SPEAK: u64 = 1 << 21;
/// Server-mute members.
pub const MUTE_MEMBERS: u64 = 1 << 22;
/// Server-deafen members.
pub const DEAFEN_MEMBERS: u64 = 1 << 23;
/// Move members between voice channels.
pub const MOVE_MEMBERS: u64 = 1 << 24;
/// Voice activity detection.
pub const USE_VAD: u64 = 1 << 25;
/// Change one's own nickname.
pub const CHANGE_NICKNAME: u64 = 1 << 26;
/// Change other members' nicknames.
pub const MANAGE_NICKNAMES: u64 = 1 << 27;
/// Manage roles below one's highest role, and channel overwrites.
pub const MANAGE_ROLES: u64 = 1 << 28;
/// Manage webhooks.
pub const MANAGE_WEBHOOKS: u64 = 1 << 29;
/// Manage emojis, stickers and sounds.
pub const MANAGE_GUILD_EXPRESSIONS: u64 = 1 << 30;
/// Use application commands.
pub const USE_APPLICATION_COMMANDS: u64 = 1 << 31;
/// Request to speak in stage channels.
pub const REQUEST_TO_SPEAK: u64 = 1 << 32;
/// Manage scheduled events.
pub const MANAGE_EVENTS: u64 = 1 << 33;
/// Manage threads.
pub const MANAGE_THREADS: u64 = 1 << 34;
/// Create public threads.
pub const CREATE_PUBLIC_THREADS: u64 = 1 << 35;
/// Create private threads.
pub const CREATE_PRIVATE_THREADS: u64 = 1 << 36;
/// Use stickers of other guilds.
pub const USE_EXTERNAL_STICKERS: u64 = 1 << 37;
/// Send messages in threads.
pub const SEND_MESSAGES_IN_THREADS: u64 = 1 << 38;
/// Use activities.
pub const USE_EMBEDDED_ACTIVITIES: u64 = 1 << 39;
/// Time members out.
pub const MODERATE_MEMBERS: u64 = 1 << 40;
/// View creator monetization analytics.
pub const VIEW_CREATOR_MONETIZATION_ANALYTICS: u64 = 1 << 41;
/// Use the soundboard.
pub const USE_SOUNDBOARD: u64 = 1 << 42;
/// Create emojis, stickers and sounds.
pub const CREATE_GUILD_EXPRESSIONS: u64 = 1 << 43;
/// Create scheduled events.
pub const CREATE_EVENTS: u64 = 1 << 44;
/// Use sounds of other guilds.
pub const USE_EXTERNAL_SOUNDS: u64 = 1 << 45;
/// Send voice messages.
pub const SEND_VOICE_MESSAGES: u64 = 1 << 46;
/// Send polls.
pub const SEND_POLLS: u64 = 1 << 49;
/// Let user-installed apps answer publicly.
pub const USE_EXTERNAL_APPS: u64 = 1 << 50;
/// Pin messages.
pub const PIN_MESSAGES: u64 = 1 << 51;
/// Ignore slow mode.
pub const BYPASS_SLOWMODE: u64 = 1 << 52;

/// Every bit this server knows: what the owner and administrators get.
pub const ALL: u64 = CREATE_INSTANT_INVITE
    | KICK_MEMBERS
    | BAN_MEMBERS
    | ADMINISTRATOR
    | MANAGE_CHANNELS
    | MANAGE_GUILD
    | ADD_REACTIONS
    | VIEW_AUDIT_LOG
    | PRIORITY_SPEAKER
    | STREAM
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | SEND_TTS_MESSAGES
    | MANAGE_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | MENTION_EVERYONE
    | USE_EXTERNAL_EMOJIS
    | VIEW_GUILD_INSIGHTS
    | CONNECT
    | SPEAK
    | MUTE_MEMBERS
    | DEAFEN_MEMBERS
    | MOVE_MEMBERS
    | USE_VAD
    | CHANGE_NICKNAME
    | MANAGE_NICKNAMES
    | MANAGE_ROLES
    | MANAGE_WEBHOOKS
    | MANAGE_GUILD_EXPRESSIONS
    | USE_APPLICATION_COMMANDS
    | REQUEST_TO_SPEAK
    | MANAGE_EVENTS
    | MANAGE_THREADS
    | CREATE_PUBLIC_THREADS
    | CREATE_PRIVATE_THREADS
    | USE_EXTERNAL_STICKERS
    | SEND_MESSAGES_IN_THREADS
    | USE_EMBEDDED_ACTIVITIES
    | MODERATE_MEMBERS
    | VIEW_CREATOR_MONETIZATION_ANALYTICS
    | USE_SOUNDBOARD
    | CREATE_GUILD_EXPRESSIONS
    | CREATE_EVENTS
    | USE_EXTERNAL_SOUNDS
    | SEND_VOICE_MESSAGES
    | SEND_POLLS
    | USE_EXTERNAL_APPS
    | PIN_MESSAGES
    | BYPASS_SLOWMODE;

/// What @everyone holds in a new guild: a member can read, talk, react, invite and join voice,
/// but moderates nothing and cannot ping everyone.
pub const DEFAULT_EVERYONE: u64 = CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | STREAM
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | CONNECT
    | SPEAK
    | USE_VAD
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | REQUEST_TO_SPEAK
    | CREATE_PUBLIC_THREADS
    | CREATE_PRIVATE_THREADS
    | USE_EXTERNAL_STICKERS
    | SEND_MESSAGES_IN_THREADS
    | USE_EMBEDDED_ACTIVITIES
    | USE_SOUNDBOARD
    | CREATE_GUILD_EXPRESSIONS
    | CREATE_EVENTS
    | USE_EXTERNAL_SOUNDS
    | SEND_VOICE_MESSAGES
    | SEND_POLLS
    | USE_EXTERNAL_APPS;

const _: () = assert!(DEFAULT_EVERYONE & !ALL == 0);
const _: () = assert!(DEFAULT_EVERYONE & (ADMINISTRATOR | MENTION_EVERYONE) == 0);

/// Guild-level permissions from the @everyone role's bits and the member's roles' bits
/// (`roles` already OR-ed), for a member who is not the owner.
pub fn base(everyone: u64, roles: u64) -> u64 {
    let perms = everyone | roles;
    if perms & ADMINISTRATOR != 0 {
        ALL
    } else {
        perms
    }
}

/// Applies one channel's `overwrites` to `base` for a member with `member_roles` in
/// `guild_id` (whose @everyone role has the guild's id).
pub fn apply_overwrites(
    base: u64,
    guild_id: u64,
    user_id: u64,
    member_roles: &[u64],
    overwrites: &[Overwrite],
) -> u64 {
    if base & ADMINISTRATOR != 0 {
        return ALL;
    }
    let mut perms = base;
    if let Some(ow) = overwrites
        .iter()
        .find(|o| o.kind == OverwriteKind::Role && o.id == guild_id)
    {
        perms = (perms & !ow.deny) | ow.allow;
    }
    let (mut allow, mut deny) = (0u64, 0u64);
    for ow in overwrites {
        if ow.kind == OverwriteKind::Role && ow.id != guild_id && member_roles.contains(&ow.id) {
            allow |= ow.allow;
            deny |= ow.deny;
        }
    }
    perms = (perms & !deny) | allow;
    if let Some(ow) = overwrites
        .iter()
        .find(|o| o.kind == OverwriteKind::Member && o.id == user_id)
    {
        perms = (perms & !ow.deny) | ow.allow;
    }
    if perms & VIEW_CHANNEL == 0 { 0 } else { perms }
}

/// Names of the bits set in `perms`, lowest first (for errors and logs).
pub fn names(perms: u64) -> impl Iterator<Item = &'static str> {
    NAMES
        .iter()
        .filter(move |(bit, _)| perms & bit != 0)
        .map(|&(_, name)| name)
}

const NAMES: [(u64, &str); 51] = [
    (CREATE_INSTANT_INVITE, "CREATE_INSTANT_INVITE"),
    (KICK_MEMBERS, "KICK_MEMBERS"),
    (BAN_MEMBERS, "BAN_MEMBERS"),
    (ADMINISTRATOR, "ADMINISTRATOR"),
    (MANAGE_CHANNELS, "MANAGE_CHANNELS"),
    (MANAGE_GUILD, "MANAGE_GUILD"),
    (ADD_REACTIONS, "ADD_REACTIONS"),
    (VIEW_AUDIT_LOG, "VIEW_AUDIT_LOG"),
    (PRIORITY_SPEAKER, "PRIORITY_SPEAKER"),
    (STREAM, "STREAM"),
    (VIEW_CHANNEL, "VIEW_CHANNEL"),
    (SEND_MESSAGES, "SEND_MESSAGES"),
    (SEND_TTS_MESSAGES, "SEND_TTS_MESSAGES"),
    (MANAGE_MESSAGES, "MANAGE_MESSAGES"),
    (EMBED_LINKS, "EMBED_LINKS"),
    (ATTACH_FILES, "ATTACH_FILES"),
    (READ_MESSAGE_HISTORY, "READ_MESSAGE_HISTORY"),
    (MENTION_EVERYONE, "MENTION_EVERYONE"),
    (USE_EXTERNAL_EMOJIS, "USE_EXTERNAL_EMOJIS"),
    (VIEW_GUILD_INSIGHTS, "VIEW_GUILD_INSIGHTS"),
    (CONNECT, "CONNECT"),
    (SPEAK, "SPEAK"),
    (MUTE_MEMBERS, "MUTE_MEMBERS"),
    (DEAFEN_MEMBERS, "DEAFEN_MEMBERS"),
    (MOVE_MEMBERS, "MOVE_MEMBERS"),
    (USE_VAD, "USE_VAD"),
    (CHANGE_NICKNAME, "CHANGE_NICKNAME"),
    (MANAGE_NICKNAMES, "MANAGE_NICKNAMES"),
    (MANAGE_ROLES, "MANAGE_ROLES"),
    (MANAGE_WEBHOOKS, "MANAGE_WEBHOOKS"),
    (MANAGE_GUILD_EXPRESSIONS, "MANAGE_GUILD_EXPRESSIONS"),
    (USE_APPLICATION_COMMANDS, "USE_APPLICATION_COMMANDS"),
    (REQUEST_TO_SPEAK, "REQUEST_TO_SPEAK"),
    (MANAGE_EVENTS, "MANAGE_EVENTS"),
    (MANAGE_THREADS, "MANAGE_THREADS"),
    (CREATE_PUBLIC_THREADS, "CREATE_PUBLIC_THREADS"),
    (CREATE_PRIVATE_THREADS, "CREATE_PRIVATE_THREADS"),
    (USE_EXTERNAL_STICKERS, "USE_EXTERNAL_STICKERS"),
    (SEND_MESSAGES_IN_THREADS, "SEND_MESSAGES_IN_THREADS"),
    (USE_EMBEDDED_ACTIVITIES, "USE_EMBEDDED_ACTIVITIES"),
    (MODERATE_MEMBERS, "MODERATE_MEMBERS"),
    (
        VIEW_CREATOR_MONETIZATION_ANALYTICS,
        "VIEW_CREATOR_MONETIZATION_ANALYTICS",
    ),
    (USE_SOUNDBOARD, "USE_SOUNDBOARD"),
    (CREATE_GUILD_EXPRESSIONS, "CREATE_GUILD_EXPRESSIONS"),
    (CREATE_EVENTS, "CREATE_EVENTS"),
    (USE_EXTERNAL_SOUNDS, "USE_EXTERNAL_SOUNDS"),
    (SEND_VOICE_MESSAGES, "SEND_VOICE_MESSAGES"),
    (SEND_POLLS, "SEND_POLLS"),
    (USE_EXTERNAL_APPS, "USE_EXTERNAL_APPS"),
    (PIN_MESSAGES, "PIN_MESSAGES"),
    (BYPASS_SLOWMODE, "BYPASS_SLOWMODE"),
];

// Every known bit has a name and no name is given twice (indexing is checked by the compiler
// here: this runs at compile time).
#[allow(clippy::indexing_slicing)]
const _: () = {
    let mut acc = 0u64;
    let mut i = 0;
    while i < NAMES.len() {
        assert!(acc & NAMES[i].0 == 0);
        acc |= NAMES[i].0;
        i += 1;
    }
    assert!(acc == ALL);
};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn administrator_is_everything() {
        assert_eq!(base(ADMINISTRATOR, 0), ALL);
        assert_eq!(base(0, ADMINISTRATOR | SEND_MESSAGES), ALL);
        assert_eq!(
            base(VIEW_CHANNEL, SEND_MESSAGES),
            VIEW_CHANNEL | SEND_MESSAGES
        );
    }

    #[test]
    fn names_cover_bits() {
        let v: Vec<_> = names(VIEW_CHANNEL | ADMINISTRATOR).collect();
        assert_eq!(v, ["ADMINISTRATOR", "VIEW_CHANNEL"]);
        assert_eq!(names(ALL).count(), 51);
    }
}
