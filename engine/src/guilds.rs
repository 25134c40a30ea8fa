//! Guilds on their owner shard: creation, membership, channels, GUILD_CREATE for sessions and
//! the fan-out of guild events to every shard holding sessions of the guild.
//!
//! A guild lives on `owner_shard(guild_id)`; every operation on it runs there, serialized, with
//! no locks. Fan-out: the owner serializes each event once and sends each interested shard one
//! batch (the shared payloads plus, per event, the sorted list of users allowed to see it); the
//! shard delivers to its local sessions of the guild (`GatewayState::dispatch_guild`).

use std::collections::HashMap;
use std::sync::Arc;

use gateway_core::gateway::{SharedEvent, intents};
use gateway_core::guild::{
    Actor, Audience, ChannelKind, Guild, GuildCreateOptions, GuildError, GuildEvent, NewChannel,
    UserInfo,
};
use serde::Deserialize;

use crate::app::{UserRecord, json_error, owner_shard};
use crate::ctx::{ConnRef, ShardCtx};
use crate::gateway::SessionRef;
use crate::http::{Request, Response};
use crate::shard::Routed;

/// Most guilds one shard owns (a bound on control-API growth).
pub const GUILDS_PER_SHARD_MAX: usize = 100_000;
/// Most guilds a user may be a member of (Discord's limit for bots is higher; users 100/200).
pub const GUILDS_PER_USER_MAX: usize = 200;

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

/// A guild error as a Discord JSON error response.
pub fn guild_error(e: &GuildError) -> Response {
    let (status, code) = match e {
        GuildError::UnknownChannel(_) => (404, 10003),
        GuildError::UnknownRole(_) => (404, 10011),
        GuildError::UnknownMember(_) => (404, 10007),
        GuildError::UnknownInvite => (404, 10006),
        GuildError::UnknownBan(_) => (404, 10026),
        GuildError::MissingPermission { .. } | GuildError::Hierarchy => (403, 50013),
        GuildError::Banned(_) => (403, 40007),
        _ => (400, 50035),
    };
    json_error(status, code, &e.to_string())
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
            let e = c.app.guilds.by_id.get_mut(&g)?;
            if !e.guild.is_member(user) {
                return None;
            }
            e.session_shards |= 1 << me;
            let v = e
                .guild
                .to_guild_create(&GuildCreateOptions::for_user(user, large_threshold));
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

/// Subscribes every session of `user` (found through the user's home shard) to guild `g`.
fn subscribe_user_sessions(ctx: &mut ShardCtx, user: u64, g: u64) {
    ctx.invoke_on_reliably(owner_shard(user, ctx.shards()), move |h: &mut ShardCtx| {
        let sessions = h
            .app
            .users
            .get(&user)
            .map(|u| u.sessions.clone())
            .unwrap_or_default();
        for (shard, sid) in sessions {
            h.invoke_on_reliably(shard, move |c: &mut ShardCtx| {
                if let Some(r) = c.gw.find_by_id(&sid) {
                    request_guild_create(c, r, g, user, 50);
                }
            });
        }
    });
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGuildBody {
    name: String,
    owner_id: SnowflakeArg,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMemberBody {
    user_id: SnowflakeArg,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SnowflakeArg {
    Str(String),
    Int(u64),
}

impl SnowflakeArg {
    fn get(&self) -> Option<u64> {
        match self {
            SnowflakeArg::Str(s) => s.parse().ok(),
            SnowflakeArg::Int(i) => Some(*i),
        }
    }
}

fn bad_json() -> Routed {
    Routed::Now(json_error(
        400,
        50109,
        "The request body contains invalid JSON.",
    ))
}

fn reply(ctx: &mut ShardCtx, conn: ConnRef, resp: Response) {
    ctx.http_replies.push((conn, resp));
}

/// `POST /control/guilds {name, owner_id}`: a guild owned by an existing user.
pub fn control_create_guild(ctx: &mut ShardCtx, conn: ConnRef, req: &Request) -> Routed {
    let Ok(body) = serde_json::from_slice::<CreateGuildBody>(&req.body) else {
        return bad_json();
    };
    let Some(owner) = body.owner_id.get() else {
        return bad_json();
    };
    let name = body.name;
    let g = ctx.app.ids.next(ctx.wall_ms);
    let home = owner_shard(owner, ctx.shards());
    // 1. The owner's home shard adds the guild to the owner's list and returns the user.
    ctx.call(
        home,
        move |h: &mut ShardCtx| {
            let u = h.app.users.get_mut(&owner)?;
            if u.guilds.len() >= GUILDS_PER_USER_MAX {
                return None;
            }
            u.guilds.push(g);
            Some(user_info(u))
        },
        move |c: &mut ShardCtx, info: Option<UserInfo>| {
            let Some(info) = info else {
                reply(c, conn, json_error(404, 10013, "Unknown User"));
                return;
            };
            // 2. The guild's owner shard creates it.
            c.call(
                owner_shard(g, c.shards()),
                move |o: &mut ShardCtx| {
                    if o.app.guilds.by_id.len() >= GUILDS_PER_SHARD_MAX {
                        return Err(json_error(400, 30001, "Maximum number of guilds reached"));
                    }
                    let wall = o.wall_ms;
                    let ids = &mut o.app.ids;
                    let guild = Guild::new(g, &name, info, wall, &mut || ids.next(wall))
                        .map_err(|e| guild_error(&e))?;
                    let json = guild.to_guild_json();
                    let channels: Vec<u64> = guild.channels().map(|c| c.id).collect();
                    o.app.guilds.by_id.insert(
                        g,
                        GuildEntry {
                            guild,
                            session_shards: 0,
                            presence: Default::default(),
                        },
                    );
                    Ok((json, channels))
                },
                move |c: &mut ShardCtx, r: Result<(serde_json::Value, Vec<u64>), Response>| match r
                {
                    Ok((json, channels)) => {
                        announce_channels(c, g, &channels);
                        reply(c, conn, Response::json(200, json.to_string()));
                        subscribe_user_sessions(c, owner, g);
                    }
                    Err(resp) => reply(c, conn, resp),
                },
            );
        },
    );
    Routed::Later
}

/// Tells every shard which guild owns these channels (the channel directory).
fn announce_channels(ctx: &mut ShardCtx, g: u64, channels: &[u64]) {
    let list: Arc<Vec<u64>> = Arc::new(channels.to_vec());
    for s in 0..ctx.shards() {
        let l = Arc::clone(&list);
        ctx.invoke_on_reliably(s, move |c: &mut ShardCtx| {
            for &ch in l.iter() {
                c.app.channel_guild.insert(ch, g);
            }
        });
    }
}

/// `POST /control/guilds/{g}/members {user_id}`: adds a user without an invite.
pub fn control_add_member(ctx: &mut ShardCtx, conn: ConnRef, req: &Request, g: u64) -> Routed {
    let Ok(body) = serde_json::from_slice::<AddMemberBody>(&req.body) else {
        return bad_json();
    };
    let Some(user) = body.user_id.get() else {
        return bad_json();
    };
    ctx.call(
        owner_shard(user, ctx.shards()),
        move |h: &mut ShardCtx| {
            let u = h.app.users.get_mut(&user)?;
            if !u.guilds.contains(&g) && u.guilds.len() < GUILDS_PER_USER_MAX {
                u.guilds.push(g);
            }
            Some(user_info(u))
        },
        move |c: &mut ShardCtx, info: Option<UserInfo>| {
            let Some(info) = info else {
                reply(c, conn, json_error(404, 10013, "Unknown User"));
                return;
            };
            c.call(
                owner_shard(g, c.shards()),
                move |o: &mut ShardCtx| {
                    let wall = o.wall_ms;
                    let Some(e) = o.app.guilds.by_id.get_mut(&g) else {
                        return Err(json_error(404, 10004, "Unknown Guild"));
                    };
                    let events = e
                        .guild
                        .add_member(info, wall)
                        .map_err(|e| guild_error(&e))?;
                    let json = e.guild.member_json(user).unwrap_or_default();
                    fan_out(o, g, &events);
                    Ok(json)
                },
                move |c: &mut ShardCtx, r: Result<serde_json::Value, Response>| match r {
                    Ok(json) => {
                        reply(c, conn, Response::json(200, json.to_string()));
                        subscribe_user_sessions(c, user, g);
                    }
                    Err(resp) => reply(c, conn, resp),
                },
            );
        },
    );
    Routed::Later
}

#[derive(Deserialize)]
struct CreateChannelBody {
    name: String,
    #[serde(default, rename = "type")]
    kind: u64,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    parent_id: Option<SnowflakeArg>,
    #[serde(default)]
    nsfw: bool,
}

/// `POST /api/v10/guilds/{g}/channels`: creates a channel as `actor` (MANAGE_CHANNELS).
pub fn create_channel(
    ctx: &mut ShardCtx,
    conn: ConnRef,
    req: &Request,
    actor: u64,
    g: u64,
) -> Routed {
    let Ok(body) = serde_json::from_slice::<CreateChannelBody>(&req.body) else {
        return bad_json();
    };
    let Some(kind) = ChannelKind::from_code(body.kind) else {
        return Routed::Now(json_error(400, 50035, "Invalid Form Body"));
    };
    let mut spec = NewChannel::new(kind, &body.name);
    spec.topic = body.topic;
    spec.parent_id = body.parent_id.and_then(|p| p.get());
    spec.nsfw = body.nsfw;
    let id = ctx.app.ids.next(ctx.wall_ms);
    ctx.call(
        owner_shard(g, ctx.shards()),
        move |o: &mut ShardCtx| {
            let Some(e) = o.app.guilds.by_id.get_mut(&g) else {
                return Err(json_error(404, 10004, "Unknown Guild"));
            };
            let events = e
                .guild
                .create_channel(Actor::User(actor), id, spec)
                .map_err(|e| guild_error(&e))?;
            let json = e.guild.channel_json(id).unwrap_or_default();
            fan_out(o, g, &events);
            Ok(json)
        },
        move |c: &mut ShardCtx, r: Result<serde_json::Value, Response>| match r {
            Ok(json) => {
                announce_channels(c, g, &[id]);
                reply(c, conn, Response::json(201, json.to_string()));
            }
            Err(resp) => reply(c, conn, resp),
        },
    );
    Routed::Later
}
