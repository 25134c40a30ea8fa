//! Every bound of the guild model, with the relations between them checked at compile time.
//!
//! Values follow what Discord enforces for an unboosted guild, so a client that validates
//! locally never sends something we refuse (or the other way round).

/// Channels (categories included) in one guild.
pub const CHANNELS_MAX: usize = 500;
/// Channels under one category.
pub const CHANNELS_PER_CATEGORY_MAX: usize = 50;
/// Roles in one guild, @everyone included.
pub const ROLES_MAX: usize = 250;
/// Members in one guild; also announced as `max_members`.
pub const MEMBERS_MAX: usize = 500_000;
/// Invites alive at once in one guild (expired ones count until pruned).
pub const INVITES_MAX: usize = 1_000;
/// Bans kept per guild; a ban list this long means the guild needs a real moderation tool.
pub const BANS_MAX: usize = 100_000;
/// Permission overwrites on one channel.
pub const OVERWRITES_PER_CHANNEL_MAX: usize = 100;
/// Roles or channels one reorder call may move.
pub const REORDER_ENTRIES_MAX: usize = CHANNELS_MAX;

/// Shortest guild name.
pub const GUILD_NAME_CHARS_MIN: usize = 2;
/// Longest guild name.
pub const GUILD_NAME_CHARS_MAX: usize = 100;
/// Longest guild description.
pub const GUILD_DESCRIPTION_CHARS_MAX: usize = 120;
/// Shortest channel name.
pub const CHANNEL_NAME_CHARS_MIN: usize = 1;
/// Longest channel name.
pub const CHANNEL_NAME_CHARS_MAX: usize = 100;
/// Longest channel topic.
pub const CHANNEL_TOPIC_CHARS_MAX: usize = 1_024;
/// Shortest role name.
pub const ROLE_NAME_CHARS_MIN: usize = 1;
/// Longest role name.
pub const ROLE_NAME_CHARS_MAX: usize = 100;
/// Shortest nickname (an empty one means "reset").
pub const NICK_CHARS_MIN: usize = 1;
/// Longest nickname.
pub const NICK_CHARS_MAX: usize = 32;
/// Longest ban reason.
pub const BAN_REASON_CHARS_MAX: usize = 512;
/// Longest icon or avatar hash we store (a hex MD5 plus an `a_` animation prefix fits).
pub const IMAGE_HASH_CHARS_MAX: usize = 64;

/// Lowest voice bitrate.
pub const BITRATE_MIN: u32 = 8_000;
/// Highest voice bitrate without boosts.
pub const BITRATE_MAX: u32 = 96_000;
/// Bitrate of a new voice channel.
pub const BITRATE_DEFAULT: u32 = 64_000;
/// Highest voice `user_limit` (0 means unlimited).
pub const USER_LIMIT_MAX: u32 = 99;
/// Longest slow mode.
pub const RATE_LIMIT_PER_USER_S_MAX: u32 = 21_600;
/// Highest role colour (24-bit RGB).
pub const ROLE_COLOR_MAX: u32 = 0xFF_FFFF;
/// Highest AFK timeout.
pub const AFK_TIMEOUT_S_MAX: u32 = 3_600;
/// AFK timeout of a new guild.
pub const AFK_TIMEOUT_S_DEFAULT: u32 = 300;

/// Longest invite lifetime (7 days); 0 means never expires.
pub const INVITE_MAX_AGE_S_MAX: u32 = 604_800;
/// Lifetime of an invite when the caller does not say (24 hours, as Discord).
pub const INVITE_MAX_AGE_S_DEFAULT: u32 = 86_400;
/// Highest `max_uses`; 0 means unlimited.
pub const INVITE_MAX_USES_MAX: u32 = 100;
/// Characters of an invite code.
pub const INVITE_CODE_CHARS: usize = 10;
/// Codes tried when a generated one collides before giving up.
pub const INVITE_CODE_ATTEMPTS_MAX: u32 = 8;

/// Cached (user, channel) permission entries before the cache is dropped wholesale; bounds
/// memory for huge guilds where fan-out would otherwise touch members x channels.
pub const PERM_CACHE_ENTRIES_MAX: usize = 262_144;

const _: () = assert!(CHANNELS_PER_CATEGORY_MAX <= CHANNELS_MAX);
const _: () = assert!(GUILD_NAME_CHARS_MIN <= GUILD_NAME_CHARS_MAX);
const _: () =
    assert!(CHANNEL_NAME_CHARS_MIN >= 1 && CHANNEL_NAME_CHARS_MIN <= CHANNEL_NAME_CHARS_MAX);
const _: () = assert!(ROLE_NAME_CHARS_MIN >= 1 && ROLE_NAME_CHARS_MIN <= ROLE_NAME_CHARS_MAX);
const _: () = assert!(NICK_CHARS_MIN >= 1 && NICK_CHARS_MIN <= NICK_CHARS_MAX);
const _: () = assert!(BITRATE_MIN <= BITRATE_DEFAULT && BITRATE_DEFAULT <= BITRATE_MAX);
const _: () = assert!(AFK_TIMEOUT_S_DEFAULT <= AFK_TIMEOUT_S_MAX);
const _: () = assert!(INVITE_MAX_AGE_S_DEFAULT <= INVITE_MAX_AGE_S_MAX);
// The defaults of a new guild (@everyone, two categories, two channels) must fit.
const _: () = assert!(ROLES_MAX >= 1 && CHANNELS_MAX >= 4);
// A reorder may name every channel at once.
const _: () = assert!(REORDER_ENTRIES_MAX >= CHANNELS_MAX && REORDER_ENTRIES_MAX >= ROLES_MAX);
// Base-62 codes of this length hold more than 2^59 values: collisions stay rare.
const _: () = assert!(INVITE_CODE_CHARS >= 8 && INVITE_CODE_CHARS <= 11);
