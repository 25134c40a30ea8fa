//! Guilds on their owner shard: creation, membership, the directories every shard keeps, GUILD_CREATE
//! for sessions and the fan-out of guild events to every shard holding sessions of the guild.
//!
//! A guild lives on `owner_shard(guild_id)`; every operation on it runs there, serialized, with
//! no locks. Fan-out: the owner serializes each event once and sends each interested shard one
//! batch (the shared payloads plus, per event, the sorted list of users allowed to see it); the
//! shard delivers to its local sessions of the guild (`GatewayState::dispatch_guild`).
//!
//! Three kinds of state follow a guild around the node, and this file keeps them current:
//! - the directories every shard holds (`AppState::channel_guild`, `AppState::invite_guild`), so
//!   a request naming a channel or an invite code finds the owner without asking: [`publish`]
//!   reads them off the events of each operation (CHANNEL_CREATE/DELETE, INVITE_CREATE/DELETE);
//! - each user's guild list in the user directory, on the user's home shard (what Identify
//!   reads);
//! - which guilds each session receives (`SessionSlot::guilds`), on the session's shard: joins
//!   subscribe the user's sessions ([`subscribe_user_sessions`]), removals unsubscribe them with a
//!   GUILD_DELETE ([`evict_sessions`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use gateway_core::gateway::{SharedEvent, intents};
use gateway_core::guild::{
    Audience, Guild, GuildCreateOptions, GuildError, GuildEvent, GuildPatch, UserInfo,
};
use serde_json::json;

use crate::app::{UserRecord, owner_shard};
use crate::ctx::ShardCtx;
use crate::gateway::SessionRef;
use crate::rest::ApiError;

/// Most guilds one shard owns (a bound on control-API growth).
pub const GUILDS_PER_SHARD_MAX: usize = 100_000;
/// Most guilds a user may be a member of (Discord's limit for users is 100, 200 with Nitro).
pub const GUILDS_PER_USER_MAX: usize = 200;
/// `large_threshold` used for the GUILD_CREATE of a guild joined after Identify (Identify's own
/// value is not kept per session; 50 is Discord's default).
pub const LARGE_THRESHOLD_AFTER_JOIN: u32 = 50;

/// A guild and which shards hold sessions subscribed to it.
#[derive(Debug)]
pub struct GuildEntry {
    /// The guild state.
    pub guild: Guild,
    /// Bit `s` set: shard `s` has (or had) sessions receiving this guild's events.
    pub session_shards: u64,
    /// Presence layer state of this guild (owned by `presence.rs`).
    pub presence: crate::presence::GuildPresence,
}

/// The guilds this shard owns.
#[derive(Debug, Default)]
pub struct Guilds {
    /// By guild id.
    pub by_id: HashMap<u64, GuildEntry>,
}

/// A user's directory entry as the guild layer needs it.
pub fn user_info(u: &UserRecord) -> UserInfo {
    UserInfo {
        id: u.user.id.0,
        username: u.user.username.clone(),
        discriminator: u.user.discriminator.clone(),
        global_name: u.user.global_name.clone(),
        avatar: u.user.avatar.clone(),
        bot: u.user.bot,
    }
}

/// A refused guild operation as the REST error Discord answers with. Field errors (50035) name
/// the field in Discord's nested `errors` object, so clients can show which one was wrong.
pub fn api_error(e: &GuildError) -> ApiError {
    match e {
        GuildError::InvalidLength {
            field, min, max, ..
        } => ApiError::invalid_field(
            field,
            "BASE_TYPE_BAD_LENGTH",
            format!("Must be between {min} and {max} in length."),
        ),
        GuildError::OutOfRange {
            field, min, max, ..
        } => ApiError::invalid_field(
            field,
            "NUMBER_TYPE_MAX",
            format!("Must be between {min} and {max}."),
        ),
        GuildError::NotForChannelKind { field } => ApiError::invalid_field(
            field,
            "BASE_TYPE_CHOICES",
            "Not available for this channel type.".to_owned(),
        ),
        GuildError::InvalidParent(_) => ApiError::invalid_field(
            "parent_id",
            "CHANNEL_PARENT_INVALID",
            "Invalid parent channel.".to_owned(),
        ),
        GuildError::AlreadyMember(_) => ApiError::invalid_field(
            "user_id",
            "ALREADY_MEMBER",
            "The user is already a member of this guild.".to_owned(),
        ),
        other => ApiError::new(other.http_status(), other.discord_code(), other.to_string()),
    }
}

/// One batch for one shard: events with their allowed users (None: every session of the guild).
type Batch = Vec<(SharedEvent, Option<Arc<Vec<u64>>>)>;

/// Sends `events` of guild `g` (owned here) to every shard with sessions of it.
pub fn fan_out(ctx: &mut ShardCtx, g: u64, events: &[GuildEvent]) {
    let Some(entry) = ctx.app.guilds.by_id.get(&g) else {
        return;
    };
    let mut batch: Batch = Vec::with_capacity(events.len());
    for ev in events {
        let Ok(shared) = ev.to_shared() else {
            continue;
        };
        let allowed = match &ev.audience {
            Audience::Guild => None,
            other => {
                let mut v = entry.guild.recipients(other);
                v.sort_unstable();
                Some(Arc::new(v))
            }
        };
        batch.push((shared, allowed));
    }
    if batch.is_empty() {
        return;
    }
    let mask = entry.session_shards;
    for s in 0..ctx.shards() {
        if mask & (1 << s) == 0 {
            continue;
        }
        let b = batch.clone();
        ctx.invoke_on_reliably(s, move |c: &mut ShardCtx| {
            for (ev, allowed) in &b {
                c.gw.dispatch_guild(g, ev, None, allowed.as_deref().map(Vec::as_slice));
            }
        });
    }
}

/// Changes to the node-wide directories (channel -> guild, invite code -> guild).
#[derive(Debug, Default)]
struct DirectoryChange {
    add_channels: Vec<u64>,
    remove_channels: Vec<u64>,
    add_invites: Vec<String>,
    remove_invites: Vec<String>,
}

impl DirectoryChange {
    fn is_empty(&self) -> bool {
        self.add_channels.is_empty()
            && self.remove_channels.is_empty()
            && self.add_invites.is_empty()
            && self.remove_invites.is_empty()
    }

    /// What `events` say about the directories.
    fn from_events(events: &[GuildEvent]) -> Self {
        let mut d = DirectoryChange::default();
        for ev in events {
            let id = || ev.data["id"].as_str().and_then(|s| s.parse::<u64>().ok());
            let code = || ev.data["code"].as_str().map(str::to_owned);
            match ev.name {
                "CHANNEL_CREATE" => d.add_channels.extend(id()),
                "CHANNEL_DELETE" => d.remove_channels.extend(id()),
                "INVITE_CREATE" => d.add_invites.extend(code()),
                "INVITE_DELETE" => d.remove_invites.extend(code()),
                _ => {}
            }
        }
        d
    }

    /// Applies the change on every shard (this one included), in mailbox order: a request that
    /// an answer sent after this makes possible finds the directory already updated.
    fn broadcast(self, ctx: &mut ShardCtx, g: u64) {
        if self.is_empty() {
            return;
        }
        let change = Arc::new(self);
        for s in 0..ctx.shards() {
            let d = Arc::clone(&change);
            ctx.invoke_on_reliably(s, move |c: &mut ShardCtx| {
                for ch in &d.remove_channels {
                    c.app.channel_guild.remove(ch);
                }
                for ch in &d.add_channels {
                    c.app.channel_guild.insert(*ch, g);
                }
                for code in &d.remove_invites {
                    c.app.invite_guild.remove(code);
                }
                for code in &d.add_invites {
                    c.app.invite_guild.insert(code.clone(), g);
                }
            });
        }
    }
}

/// Publishes the events of an operation on guild `g` (owned here): fans them out and keeps the
/// channel and invite directories of every shard current.
pub fn publish(ctx: &mut ShardCtx, g: u64, events: &[GuildEvent]) {
    // Durable metadata: what the events say changed is journaled at the end of the turn.
    ctx.app.meta.note_events(g, events);
    fan_out(ctx, g, events);
    DirectoryChange::from_events(events).broadcast(ctx, g);
    // Voice (issue 6): role, member and channel changes re-evaluate who may be in voice.
    crate::voice::owner::after_guild_events(ctx, g, events);
}

/// Asks the owner of `g` for GUILD_CREATE for the user of session `r` and delivers it, then
/// subscribes the session to the guild's events.
pub fn request_guild_create(
    ctx: &mut ShardCtx,
    r: SessionRef,
    g: u64,
    user: u64,
    large_threshold: u32,
) {
    let me = ctx.id;
    ctx.call(
        owner_shard(g, ctx.shards()),
        move |c: &mut ShardCtx| {
            let voice_states = crate::voice::owner::guild_voice_states(c, g);
            let e = c.app.guilds.by_id.get_mut(&g)?;
            if !e.guild.is_member(user) {
                return None;
            }
            e.session_shards |= 1 << me;
            let v = e.guild.to_guild_create(&GuildCreateOptions {
                voice_states: &voice_states,
                ..GuildCreateOptions::for_user(user, large_threshold)
            });
            SharedEvent::new("GUILD_CREATE", &v, intents::GUILDS).ok()
        },
        move |c: &mut ShardCtx, ev: Option<SharedEvent>| {
            if let Some(ev) = ev {
                c.gw.add_guild(r, g);
                c.gw.dispatch_to(r, &ev);
            }
        },
    );
}

/// Records guild `g` in `user`'s directory entry (on the user's home shard) and subscribes every
/// session of the user to it (each receives GUILD_CREATE from the owner). Called after the user
/// became a member.
pub fn subscribe_user_sessions(ctx: &mut ShardCtx, user: u64, g: u64) {
    ctx.invoke_on_reliably(owner_shard(user, ctx.shards()), move |h: &mut ShardCtx| {
        let Some(u) = h.app.users.get_mut(&user) else {
            return;
        };
        if !u.guilds.contains(&g) && u.guilds.len() < GUILDS_PER_USER_MAX {
            u.guilds.push(g);
        }
        let sessions = u.sessions.clone();
        for (shard, sid) in sessions {
            h.invoke_on_reliably(shard, move |c: &mut ShardCtx| {
                if let Some(r) = c.gw.find_by_id(&sid) {
                    request_guild_create(c, r, g, user, LARGE_THRESHOLD_AFTER_JOIN);
                }
            });
        }
    });
}

/// GUILD_DELETE without `unavailable`: "you were removed from this guild".
fn guild_delete_event(g: u64) -> Option<SharedEvent> {
    SharedEvent::new(
        "GUILD_DELETE",
        &json!({"id": g.to_string()}),
        intents::GUILDS,
    )
    .ok()
}

/// On a session's shard: if session `sid` receives guild `g`, sends it GUILD_DELETE and stops its
/// subscription. Idempotent, so the fast and the late path of an eviction may both run it.
fn unsubscribe_session(ctx: &mut ShardCtx, sid: &str, g: u64, ev: &SharedEvent) {
    let Some(r) = ctx.gw.find_by_id(sid) else {
        return;
    };
    let subscribed = ctx.gw.get_mut(r).is_some_and(|s| s.guilds.contains(&g));
    if subscribed {
        ctx.gw.dispatch_to(r, ev);
        ctx.gw.remove_guild(r, g);
    }
}

/// Unsubscribes `sessions` (shard, session id) from guild `g`, one task per shard.
fn unsubscribe_all(ctx: &mut ShardCtx, g: u64, sessions: Vec<(usize, String)>) {
    let Some(ev) = guild_delete_event(g) else {
        return;
    };
    let mut by_shard: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (shard, sid) in sessions {
        if shard < ctx.shards() {
            by_shard.entry(shard).or_default().push(sid);
        }
    }
    for (shard, sids) in by_shard {
        let ev = ev.clone();
        ctx.invoke_on_reliably(shard, move |c: &mut ShardCtx| {
            for sid in &sids {
                unsubscribe_session(c, sid, g, &ev);
            }
        });
    }
}

/// After `user` left guild `g` (run on the owner, right after the removal): unsubscribes the
/// sessions known beforehand (`sessions`, asked from the home shard before the removal) through
/// the owner's mailboxes, so no event the owner sends after this reaches them; then drops the
/// guild from the user's directory entry and unsubscribes any session that became Ready in the
/// meantime.
pub fn evict_sessions(ctx: &mut ShardCtx, g: u64, user: u64, sessions: Vec<(usize, String)>) {
    unsubscribe_all(ctx, g, sessions);
    ctx.invoke_on_reliably(owner_shard(user, ctx.shards()), move |h: &mut ShardCtx| {
        let Some(u) = h.app.users.get_mut(&user) else {
            return;
        };
        u.guilds.retain(|&x| x != g);
        let now = u.sessions.clone();
        unsubscribe_all(h, g, now);
    });
}

/// Creates guild `g` on this (its owner) shard with `owner` as its owner, applies `settings`,
/// announces its channels to every shard and answers the guild object. The owner's directory
/// entry must already list `g`.
pub fn create_guild(
    ctx: &mut ShardCtx,
    g: u64,
    name: &str,
    owner: UserInfo,
    settings: Option<GuildPatch>,
) -> Result<serde_json::Value, ApiError> {
    if ctx.app.guilds.by_id.len() >= GUILDS_PER_SHARD_MAX {
        return Err(ApiError::max_guilds(GUILDS_PER_SHARD_MAX));
    }
    let wall = ctx.wall_ms;
    let ids = &mut ctx.app.ids;
    let mut guild =
        Guild::new(g, name, owner, wall, &mut || ids.next(wall)).map_err(|e| api_error(&e))?;
    if let Some(patch) = settings {
        // Nobody receives this guild's events yet: the events are dropped.
        guild
            .update_guild(gateway_core::guild::Actor::System, patch)
            .map_err(|e| api_error(&e))?;
    }
    let json = guild.to_guild_json();
    let channels: Vec<u64> = guild.channels().map(|c| c.id).collect();
    // Durable metadata: the new guild's core and its owner's membership.
    ctx.app.meta.note_guild(g);
    ctx.app.meta.note_member(g, guild.owner_id());
    ctx.app.guilds.by_id.insert(
        g,
        GuildEntry {
            guild,
            session_shards: 0,
            presence: Default::default(),
        },
    );
    DirectoryChange {
        add_channels: channels,
        ..DirectoryChange::default()
    }
    .broadcast(ctx, g);
    Ok(json)
}

/// Deletes guild `g` (owned here): removes it, clears its channels and invites from every
/// directory, drops it from each member's directory entry and sends each member's sessions
/// GUILD_DELETE. Its messages stay in the store, unreachable (no channel names them any more).
pub fn dissolve(ctx: &mut ShardCtx, g: u64) -> bool {
    let Some(e) = ctx.app.guilds.by_id.remove(&g) else {
        return false;
    };
    // Durable metadata: a dirty core of a missing guild is journaled as its deletion.
    ctx.app.meta.note_guild(g);
    DirectoryChange {
        remove_channels: e.guild.channels().map(|c| c.id).collect(),
        remove_invites: e.guild.invites().map(|i| i.code.clone()).collect(),
        ..DirectoryChange::default()
    }
    .broadcast(ctx, g);
    let mut by_home: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for m in e.guild.members() {
        by_home
            .entry(owner_shard(m.user.id, ctx.shards()))
            .or_default()
            .push(m.user.id);
    }
    for (home, users) in by_home {
        ctx.invoke_on_reliably(home, move |h: &mut ShardCtx| {
            let mut sessions = Vec::new();
            for user in users {
                if let Some(u) = h.app.users.get_mut(&user) {
                    u.guilds.retain(|&x| x != g);
                    sessions.extend(u.sessions.iter().cloned());
                }
            }
            unsubscribe_all(h, g, sessions);
        });
    }
    true
}
