//! Every limit of the REST layer, in one place, with the reason for its value.
//!
//! Field limits follow Discord's API v10 documentation so that a request Discord accepts is
//! accepted here and one it refuses is refused with the same field named. Rate limit defaults are
//! what [`super::ratelimit::RateLimitConfig::default`] uses; deployments override them.

/// Largest snowflake accepted: Discord validates ids as signed 64-bit integers, and our ids keep the
/// top bit clear until 2084 (42 timestamp bits from 2015).
pub const SNOWFLAKE_MAX: u64 = i64::MAX as u64;
/// Most decimal digits a snowflake can have (`i64::MAX` has 19); longer strings are refused before
/// parsing so that a hostile id costs nothing.
pub const SNOWFLAKE_DIGITS_MAX: usize = 19;

/// Most path segments of any route (`/channels/{c}/messages/{m}/reactions/{e}/{u}` has 7), plus the
/// `/api/vN` prefix; longer paths are 404 without further work.
pub const PATH_SEGMENTS_MAX: usize = 10;
/// Most path parameters of any route template.
pub const PATH_PARAMS_MAX: usize = 4;
/// Most bytes of a decoded reaction emoji segment (`name:id` with a 32-character name and a 19-digit
/// id fits, as does any ZWJ emoji sequence).
pub const EMOJI_BYTES_MAX: usize = 64;
/// Most bytes of a custom emoji name.
pub const EMOJI_NAME_BYTES_MAX: usize = 32;
/// Most bytes of an invite code (ours are 8; vanity codes may be longer).
pub const INVITE_CODE_BYTES_MAX: usize = 32;
/// Most `key=value` pairs read from a query string; the rest is ignored (no route has more than 4).
pub const QUERY_PAIRS_MAX: usize = 16;
/// Most field errors listed in one 50035 answer; a hostile body with thousands of bad entries gets
/// the first ones, which is all a client needs to fix it.
pub const FORM_ERRORS_MAX: usize = 32;
/// Most characters of a refused value echoed back in an error message.
pub const ERROR_ECHO_CHARS_MAX: usize = 64;

/// Most characters (Unicode scalar values) of message content.
pub const MESSAGE_CONTENT_CHARS_MAX: usize = 2000;
/// Most characters of a message nonce given as a string.
pub const MESSAGE_NONCE_CHARS_MAX: usize = 25;
/// Most embeds on one message.
pub const EMBEDS_MAX: usize = 10;
/// Most characters of an embed title.
pub const EMBED_TITLE_CHARS_MAX: usize = 256;
/// Most characters of an embed description.
pub const EMBED_DESCRIPTION_CHARS_MAX: usize = 4096;
/// Most fields of one embed.
pub const EMBED_FIELDS_MAX: usize = 25;
/// Most characters of an embed field name.
pub const EMBED_FIELD_NAME_CHARS_MAX: usize = 256;
/// Most characters of an embed field value.
pub const EMBED_FIELD_VALUE_CHARS_MAX: usize = 1024;
/// Most characters of an embed footer text.
pub const EMBED_FOOTER_CHARS_MAX: usize = 2048;
/// Most characters of an embed author name.
pub const EMBED_AUTHOR_CHARS_MAX: usize = 256;
/// Most characters of all text of all embeds of a message together.
pub const EMBEDS_TOTAL_CHARS_MAX: usize = 6000;
/// Most characters of a URL inside an embed.
pub const EMBED_URL_CHARS_MAX: usize = 2048;
/// Largest embed or role color (24-bit RGB).
pub const COLOR_MAX: u64 = 0xFF_FFFF;
/// Most user or role ids in `allowed_mentions.users` / `.roles`.
pub const ALLOWED_MENTIONS_IDS_MAX: usize = 100;
/// Fewest message ids in a bulk delete.
pub const BULK_DELETE_MIN: usize = 2;
/// Most message ids in a bulk delete.
pub const BULK_DELETE_MAX: usize = 100;
/// Oldest message a bulk delete may remove (14 days), as Discord.
pub const BULK_DELETE_AGE_MAX_MS: u64 = 14 * 24 * 60 * 60 * 1000;

/// Fewest characters of a channel name.
pub const CHANNEL_NAME_CHARS_MIN: usize = 1;
/// Most characters of a channel name.
pub const CHANNEL_NAME_CHARS_MAX: usize = 100;
/// Most characters of a channel topic.
pub const CHANNEL_TOPIC_CHARS_MAX: usize = 1024;
/// Lowest voice bitrate in bits per second.
pub const BITRATE_MIN: u64 = 8_000;
/// Highest voice bitrate (Discord's ceiling for boosted guilds; we have no boosts, so all get it).
pub const BITRATE_MAX: u64 = 384_000;
/// Most users of a voice channel (0 means no limit).
pub const USER_LIMIT_MAX: u64 = 99;
/// Longest slowmode, in seconds (6 hours).
pub const RATE_LIMIT_PER_USER_MAX_S: u64 = 21_600;
/// Most permission overwrites on one channel.
pub const OVERWRITES_MAX: usize = 100;
/// Highest channel or role position (Discord's positions are 32-bit signed integers).
pub const POSITION_MAX: u64 = i32::MAX as u64;
/// Most entries in one position update (Discord's channel cap per guild).
pub const POSITIONS_MAX: usize = 500;

/// Fewest characters of a guild name.
pub const GUILD_NAME_CHARS_MIN: usize = 2;
/// Most characters of a guild name.
pub const GUILD_NAME_CHARS_MAX: usize = 100;
/// Most characters of a guild description.
pub const GUILD_DESCRIPTION_CHARS_MAX: usize = 120;
/// AFK timeouts a guild may choose, in seconds.
pub const AFK_TIMEOUTS_S: [u64; 5] = [60, 300, 900, 1800, 3600];
/// Highest verification level (4 = very high).
pub const VERIFICATION_LEVEL_MAX: u64 = 4;
/// Highest default message notification level (1 = only mentions).
pub const MESSAGE_NOTIFICATIONS_MAX: u64 = 1;
/// Highest explicit content filter level (2 = all members).
pub const CONTENT_FILTER_MAX: u64 = 2;

/// Most characters of a role name.
pub const ROLE_NAME_CHARS_MAX: usize = 100;
/// Most characters of a member nickname.
pub const NICK_CHARS_MAX: usize = 32;
/// Most role ids given in a member update (Discord's role cap per guild).
pub const MEMBER_ROLES_MAX: usize = 250;

/// Longest invite lifetime in seconds (7 days); 0 means never expires.
pub const INVITE_MAX_AGE_MAX_S: u64 = 604_800;
/// Default invite lifetime in seconds (24 hours).
pub const INVITE_MAX_AGE_DEFAULT_S: u64 = 86_400;
/// Most uses an invite may be limited to; 0 means unlimited.
pub const INVITE_MAX_USES_MAX: u64 = 100;

/// Longest window of messages a ban deletes, in seconds (7 days).
pub const BAN_DELETE_SECONDS_MAX: u64 = 604_800;
/// Longest window of the legacy `delete_message_days` field.
pub const BAN_DELETE_DAYS_MAX: u64 = 7;

/// Fewest characters of a username.
pub const USERNAME_CHARS_MIN: usize = 2;
/// Most characters of a username.
pub const USERNAME_CHARS_MAX: usize = 32;
/// Fewest characters of an application name.
pub const APPLICATION_NAME_CHARS_MIN: usize = 2;
/// Most characters of an application name.
pub const APPLICATION_NAME_CHARS_MAX: usize = 32;

/// Default page size of `GET /channels/{c}/messages`.
pub const MESSAGES_LIMIT_DEFAULT: u64 = 50;
/// Largest page of `GET /channels/{c}/messages`.
pub const MESSAGES_LIMIT_MAX: u64 = 100;
/// Default page size of `GET /guilds/{g}/members` and its search.
pub const MEMBERS_LIMIT_DEFAULT: u64 = 1;
/// Largest page of `GET /guilds/{g}/members` and its search.
pub const MEMBERS_LIMIT_MAX: u64 = 1000;
/// Most characters of a member search query.
pub const MEMBER_SEARCH_QUERY_CHARS_MAX: usize = 100;
/// Default and largest page of `GET /guilds/{g}/bans`.
pub const BANS_LIMIT_MAX: u64 = 1000;
/// Default page size of `GET .../reactions/{emoji}`.
pub const REACTIONS_LIMIT_DEFAULT: u64 = 25;
/// Largest page of `GET .../reactions/{emoji}`.
pub const REACTIONS_LIMIT_MAX: u64 = 100;

/// Requests per user per global window (Discord's documented 50 per second).
pub const GLOBAL_LIMIT: u32 = 50;
/// Length of the global window.
pub const GLOBAL_WINDOW_MS: u64 = 1_000;
/// Most rate limit buckets one shard tracks; at the cap the bucket closest to its reset is
/// forgotten. 64k buckets cost a few MiB, and only an abusive number of active (user, route,
/// resource) triples reaches it.
pub const RATE_LIMIT_BUCKETS_MAX: usize = 65_536;
/// Most expired buckets swept per request, so one request never pays for a long idle period.
pub const RATE_LIMIT_SWEEP_PER_CALL_MAX: usize = 64;

const _: () = assert!(MESSAGES_LIMIT_DEFAULT <= MESSAGES_LIMIT_MAX);
const _: () = assert!(MEMBERS_LIMIT_DEFAULT <= MEMBERS_LIMIT_MAX);
const _: () = assert!(REACTIONS_LIMIT_DEFAULT <= REACTIONS_LIMIT_MAX);
const _: () = assert!(INVITE_MAX_AGE_DEFAULT_S <= INVITE_MAX_AGE_MAX_S);
const _: () = assert!(BULK_DELETE_MIN <= BULK_DELETE_MAX);
const _: () = assert!(BAN_DELETE_DAYS_MAX * 86_400 <= BAN_DELETE_SECONDS_MAX);
// A request creates at most two buckets (its route's and the global one); sweeping at least as
// many per call keeps expired buckets from piling up faster than they are removed.
const _: () = assert!(RATE_LIMIT_SWEEP_PER_CALL_MAX >= 2);
// A custom emoji `name:id` must fit the segment limit.
const _: () = assert!(EMOJI_NAME_BYTES_MAX + 1 + SNOWFLAKE_DIGITS_MAX <= EMOJI_BYTES_MAX);
