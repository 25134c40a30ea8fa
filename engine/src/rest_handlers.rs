//! The REST API on the shards. Every `/api/...` and `/control/...` request goes through the
//! sans-IO pipeline of [`crate::rest`] on the shard that received it (route, auth, that shard's
//! rate limiter with the wall clock, decode), then runs where its state lives:
//! - guild routes on the guild's owner shard (`owner_shard(guild_id)`);
//! - channel routes on the owner of the channel's guild, found in the receiving shard's copy of
//!   the channel directory (`AppState::channel_guild`); message routes go on to the message store
//!   of that shard ([`crate::messages`]);
//! - invite-code routes on the owner of the invite's guild (`AppState::invite_guild`);
//! - user routes on the user's home shard.
//!
//! The answer travels back to the shard holding the connection ([`Reply`]) with the
//! `X-RateLimit-*` headers of the bucket that admitted the request; refusals of the pipeline
//! (401, 404, 405, 429 with `retry_after` and `Via`, 400) are answered at once.
//!
//! Membership changes touch three places: the guild (owner shard), the user's directory entry
//! (home shard: the guild list Identify reads) and the user's sessions (the shards holding them:
//! which guilds they receive). A join changes the guild first, then the directory entry, then
//! subscribes the sessions (each receives GUILD_CREATE). A kick or a ban first asks the home shard
//! for the user's sessions, so that the owner can unsubscribe them right after the removal
//! through the same mailboxes as its fan-out: nothing the owner sends after the removal reaches
//! them ([`crate::guilds::evict_sessions`]).
//!
//! Multi-step changes (a member's roles, nick and voice flags; ownership plus settings; channel
//! moves plus positions) are applied one model operation at a time and undone as the system actor
//! when a later step is refused, so a refused request changes nothing and emits nothing.
//!
//! Decisions where Discord's behaviour is not copied:
//! - reads of a guild (channels, roles, members) need membership (403 50001 otherwise);
//!   `GET /guilds/{g}/channels` lists only the channels the caller can see, so a private
//!   channel's name never leaks;
//! - a ban needs a member (the model keeps bans of members only); `delete_message_seconds` is
//!   accepted and ignored (no messages are deleted);
//! - `channel_id` of a member update (moving in voice) is accepted and ignored;
//! - there are no guild emojis, so a custom emoji in a reaction is 400 10014 Unknown Emoji.

use std::cmp::Reverse;

use gateway_core::gateway::intents;
use gateway_core::gateway::ready::ReadyUser;
use gateway_core::guild::json::{invite_json, member_json, role_json, user_json};
use gateway_core::guild::{
    Actor, Audience, Channel, ChannelKind, ChannelPatch, Guild, GuildEvent, GuildPatch, NewChannel,
    NewInvite, NewRole, Overwrite, RolePatch, UserInfo, perms,
};
use serde_json::{Value, json};

use crate::app::{USERS_PER_SHARD_MAX, UserRecord, application_json, owner_shard};
use crate::ctx::{ConnRef, REPLY_BACKLOG_MAX, ShardCtx};
use crate::guilds::{self, GUILDS_PER_USER_MAX, GuildEntry, api_error};
use crate::http::{Request, Response};
use crate::messages::{self, MessageOp};
use crate::rest::{
    self, ApiError, Credentials, Input, OVERWRITE_TYPE_MEMBER, Patch, RateLimitConfig,
    RateLimitInfo, RateLimiter, ReactionEmoji, Route,
};
use crate::shard::Routed;

/// Where and how to answer a request: the shard holding the connection, the connection, and the
/// rate limit headers to add. Moves between shards with the work.
#[derive(Clone, Debug)]
pub struct Reply {
    origin: usize,
    conn: ConnRef,
    rate_limit: Option<RateLimitInfo>,
}

impl Reply {
    /// A reply to `conn` of shard `origin`, with the headers of `rate_limit` when given.
    pub fn new(origin: usize, conn: ConnRef, rate_limit: Option<RateLimitInfo>) -> Self {
        Reply {
            origin,
            conn,
            rate_limit,
        }
    }

    fn decorate(&self, mut resp: Response) -> Response {
        if let Some(rl) = &self.rate_limit {
            rl.apply(&mut resp);
        }
        resp
    }

    /// The answer, given at once by the shard holding the connection.
    pub fn now(&self, resp: Response) -> Routed {
        Routed::Now(self.decorate(resp))
    }

    /// An error answered at once.
    pub fn now_err(&self, e: ApiError) -> Routed {
        self.now(e.into_response())
    }

    /// Sends `resp` from any shard.
    pub fn send(self, ctx: &mut ShardCtx, resp: Response) {
        let resp = self.decorate(resp);
        let conn = self.conn;
        if ctx.id == self.origin {
            ctx.http_replies.push((conn, resp));
        } else {
            ctx.invoke_on_reliably(self.origin, move |c: &mut ShardCtx| {
                c.http_replies.push((conn, resp));
            });
        }
    }

    /// Sends a JSON body.
    pub fn json(self, ctx: &mut ShardCtx, status: u16, body: &Value) {
        self.send(ctx, Response::json(status, body.to_string()));
    }

    /// Sends 204 No Content.
    pub fn no_content(self, ctx: &mut ShardCtx) {
        self.send(ctx, Response::new(204, "application/json", ""));
    }

    /// Sends an error.
    pub fn error(self, ctx: &mut ShardCtx, e: ApiError) {
        self.send(ctx, e.into_response());
    }
}

/// What an operation on a guild's owner shard produced: the answer and the events to publish.
#[derive(Debug)]
pub struct Outcome {
    /// HTTP status of the answer.
    pub status: u16,
    /// JSON body (`None`: no body).
    pub body: Option<Value>,
    /// Events to publish before answering.
    pub events: Vec<GuildEvent>,
}

impl Outcome {
    /// A JSON answer.
    pub fn json(status: u16, body: Value, events: Vec<GuildEvent>) -> Self {
        Outcome {
            status,
            body: Some(body),
            events,
        }
    }

    /// 204 No Content.
    pub fn empty(events: Vec<GuildEvent>) -> Self {
        Outcome {
            status: 204,
            body: None,
            events,
        }
    }

    fn response(&self) -> Response {
        match &self.body {
            Some(b) => Response::json(self.status, b.to_string()),
            None => Response::new(self.status, "application/json", ""),
        }
    }
}

/// Runs `op` on the owner shard of guild `g`; its events are published, then it is answered.
pub fn on_owner(
    ctx: &mut ShardCtx,
    reply: Reply,
    g: u64,
    op: impl FnOnce(&mut ShardCtx) -> Result<Outcome, ApiError> + Send + 'static,
) -> Routed {
    ctx.invoke_on_reliably(
        owner_shard(g, ctx.shards()),
        move |o: &mut ShardCtx| match op(o) {
            Ok(out) => {
                guilds::publish(o, g, &out.events);
                // Held until the operation's metadata records are durable.
                crate::meta::send_when_durable(o, reply, out.response());
            }
            Err(e) => reply.error(o, e),
        },
    );
    Routed::Later
}

/// [`on_owner`] for a route naming channel `c`: its guild comes from this shard's directory.
fn on_channel(
    ctx: &mut ShardCtx,
    reply: Reply,
    c: u64,
    op: impl FnOnce(&mut ShardCtx, u64) -> Result<Outcome, ApiError> + Send + 'static,
) -> Routed {
    let Some(&g) = ctx.app.channel_guild.get(&c) else {
        return reply.now_err(ApiError::unknown_channel());
    };
    on_owner(ctx, reply, g, move |o| op(o, g))
}

/// The guild `g`, owned here.
fn entry(o: &mut ShardCtx, g: u64) -> Result<&mut GuildEntry, ApiError> {
    o.app
        .guilds
        .by_id
        .get_mut(&g)
        .ok_or_else(ApiError::unknown_guild)
}

/// The guild `g`, owned here, if `actor` is a member (else 403 50001).
fn as_member(o: &mut ShardCtx, g: u64, actor: u64) -> Result<&mut Guild, ApiError> {
    let e = entry(o, g)?;
    if !e.guild.is_member(actor) {
        return Err(ApiError::missing_access());
    }
    Ok(&mut e.guild)
}

/// Channel `c` of the guild, if `actor` may see it (unknown: 404 10003, hidden: 403 50001).
fn visible_channel(guild: &Guild, actor: u64, c: u64) -> Result<Channel, ApiError> {
    let ch = guild.channel(c).ok_or_else(ApiError::unknown_channel)?;
    if !guild.can_view(actor, c) {
        return Err(ApiError::missing_access());
    }
    Ok(ch.clone())
}

/// Fails with 403 50013 unless `actor` holds `bits` (in `channel` when given).
fn require(guild: &Guild, actor: u64, channel: Option<u64>, bits: u64) -> Result<(), ApiError> {
    let held = match channel {
        Some(c) => guild.permissions(actor, c),
        None => guild.base_permissions(actor),
    };
    if held & bits == bits {
        Ok(())
    } else {
        Err(ApiError::missing_permissions())
    }
}

/// GUILD_MEMBER_UPDATE with the member's current state (several changes of one request are
/// announced once).
fn member_update_event(guild: &Guild, user: u64) -> Option<GuildEvent> {
    let mut data = guild.member_json(user)?;
    data["guild_id"] = Value::String(guild.id().to_string());
    Some(GuildEvent {
        name: "GUILD_MEMBER_UPDATE",
        data,
        audience: Audience::Guild,
    })
}

fn patch_option<T>(p: Patch<T>) -> Option<Option<T>> {
    match p {
        Patch::Unchanged => None,
        Patch::Clear => Some(None),
        Patch::Set(v) => Some(Some(v)),
    }
}

fn overwrites(list: Vec<rest::Overwrite>) -> Vec<Overwrite> {
    list.into_iter()
        .map(|o| {
            if o.kind == OVERWRITE_TYPE_MEMBER {
                Overwrite::member(o.id, o.allow, o.deny)
            } else {
                Overwrite::role(o.id, o.allow, o.deny)
            }
        })
        .collect()
}

/// The entry point from [`crate::app::App`]: the pipeline, then the route's handler.
pub fn handle(ctx: &mut ShardCtx, conn: ConnRef, req: &Request) -> Routed {
    // Admission: while this shard cannot hand work to others, refuse new work (backpressure)
    // instead of growing the backlog.
    if ctx.backlog_len() >= REPLY_BACKLOG_MAX {
        return Routed::Now(ApiError::unavailable().into_response());
    }
    if ctx.app.rest_limiter.config().enabled != ctx.rest_rate_limits {
        ctx.app.rest_limiter = RateLimiter::new(if ctx.rest_rate_limits {
            RateLimitConfig::default()
        } else {
            RateLimitConfig::disabled()
        });
    }
    let prepared = rest::prepare(
        req,
        Credentials {
            token_key: &ctx.gw.cfg.token_key,
            control_secret: &ctx.app.control_secret,
        },
        &mut ctx.app.rest_limiter,
        ctx.wall_ms,
    );
    match prepared {
        Err(e) => Routed::Now(e.into_response()),
        Ok(p) => {
            let reply = Reply::new(ctx.id, conn, p.rate_limit);
            let actor = p.claims.map_or(0, |c| c.user_id);
            dispatch(ctx, reply, p.route, actor, p.input)
        }
    }
}

/// Takes the decoded input a route must have; anything else is a bug of the pipeline (500).
macro_rules! input {
    ($input:expr, $variant:ident, $reply:expr) => {
        match $input {
            Input::$variant(v) => v,
            _ => return $reply.now_err(ApiError::internal()),
        }
    };
}

fn dispatch(ctx: &mut ShardCtx, reply: Reply, route: Route, actor: u64, input: Input) -> Routed {
    match route {
        Route::GetGateway {} => reply.now(Response::json(
            200,
            json!({"url": ctx.app.gateway_url}).to_string(),
        )),
        Route::GetGatewayBot {} => reply.now(Response::json(
            200,
            json!({
                "url": ctx.app.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": SESSION_STARTS_PER_DAY, "remaining": SESSION_STARTS_PER_DAY,
                    "reset_after": SESSION_START_RESET_MS, "max_concurrency": 1,
                },
            })
            .to_string(),
        )),
        Route::GetCurrentUser {} => on_home(ctx, reply, actor, move |_, u| match u {
            Some(u) => Ok(u.user_json()),
            // A valid signature for a user this node does not know.
            None => Err(ApiError::unauthorized()),
        }),
        Route::GetCurrentApplication {} => on_home(ctx, reply, actor, move |h, u| match u {
            Some(u) => Ok(application_json(u, h)),
            None => Err(ApiError::unauthorized()),
        }),
        Route::GetUser { user_id } => on_home(ctx, reply, user_id, |_, u| {
            u.map(UserRecord::user_json)
                .ok_or_else(ApiError::unknown_user)
        }),
        Route::CreateGuild {} => {
            let b = input!(input, CreateGuild, reply);
            let settings = GuildPatch {
                verification_level: Some(b.verification_level),
                default_message_notifications: Some(b.default_message_notifications),
                explicit_content_filter: Some(b.explicit_content_filter),
                ..GuildPatch::default()
            };
            create_guild_flow(ctx, reply, actor, b.name, Some(settings), 201)
        }
        Route::GetGuild { guild_id } => {
            let q = input!(input, WithCounts, reply);
            on_owner(ctx, reply, guild_id, move |o| {
                let e = entry(o, guild_id)?;
                if !e.guild.is_member(actor) {
                    return Err(ApiError::missing_access());
                }
                let mut v = e.guild.to_guild_json();
                if q.with_counts {
                    v["approximate_member_count"] = json!(e.guild.member_count());
                    v["approximate_presence_count"] = json!(e.presence.online.len());
                }
                Ok(Outcome::json(200, v, Vec::new()))
            })
        }
        Route::ModifyGuild { guild_id } => {
            let b = input!(input, ModifyGuild, reply);
            on_owner(ctx, reply, guild_id, move |o| {
                let guild = as_member(o, guild_id, actor)?;
                modify_guild(guild, actor, b)
            })
        }
        Route::DeleteGuild { guild_id } => on_owner(ctx, reply, guild_id, move |o| {
            let guild = as_member(o, guild_id, actor)?;
            if guild.owner_id() != actor {
                return Err(ApiError::missing_permissions());
            }
            guilds::dissolve(o, guild_id);
            Ok(Outcome::empty(Vec::new()))
        }),
        Route::ListGuildChannels { guild_id } => on_owner(ctx, reply, guild_id, move |o| {
            let guild = as_member(o, guild_id, actor)?;
            let list: Vec<Value> = guild
                .channels()
                .filter(|c| guild.can_view(actor, c.id))
                .filter_map(|c| guild.channel_json(c.id))
                .collect();
            Ok(Outcome::json(200, Value::Array(list), Vec::new()))
        }),
        Route::CreateGuildChannel { guild_id } => {
            let b = input!(input, CreateChannel, reply);
            on_owner(ctx, reply, guild_id, move |o| {
                let id = o.app.ids.next(o.wall_ms);
                let guild = as_member(o, guild_id, actor)?;
                create_channel(guild, actor, id, b)
            })
        }
        Route::ModifyChannelPositions { guild_id } => {
            let list = input!(input, ChannelPositions, reply);
            on_owner(ctx, reply, guild_id, move |o| {
                let guild = as_member(o, guild_id, actor)?;
                move_channels(guild, actor, &list)
            })
        }
        Route::GetChannel { channel_id } => on_channel(ctx, reply, channel_id, move |o, g| {
            let guild = as_member(o, g, actor)?;
            visible_channel(guild, actor, channel_id)?;
            let v = guild
                .channel_json(channel_id)
                .ok_or_else(ApiError::unknown_channel)?;
            Ok(Outcome::json(200, v, Vec::new()))
        }),
        Route::ModifyChannel { channel_id } => {
            let b = input!(input, ModifyChannel, reply);
            on_channel(ctx, reply, channel_id, move |o, g| {
                let guild = as_member(o, g, actor)?;
                modify_channel(guild, actor, channel_id, b)
            })
        }
        Route::DeleteChannel { channel_id } => on_channel(ctx, reply, channel_id, move |o, g| {
            let guild = as_member(o, g, actor)?;
            visible_channel(guild, actor, channel_id)?;
            let before = guild
                .channel_json(channel_id)
                .ok_or_else(ApiError::unknown_channel)?;
            let events = guild
                .delete_channel(Actor::User(actor), channel_id)
                .map_err(|e| api_error(&e))?;
            Ok(Outcome::json(200, before, events))
        }),
        Route::ListRoles { guild_id } => on_owner(ctx, reply, guild_id, move |o| {
            let guild = as_member(o, guild_id, actor)?;
            Ok(Outcome::json(200, roles_json(guild), Vec::new()))
        }),
        Route::CreateRole { guild_id } => {
            let b = input!(input, CreateRole, reply);
            on_owner(ctx, reply, guild_id, move |o| {
                let id = o.app.ids.next(o.wall_ms);
                let guild = as_member(o, guild_id, actor)?;
                let everyone = guild.everyone_role().map_or(0, |r| r.permissions);
                let spec = NewRole {
                    name: b.name,
                    permissions: b.permissions.unwrap_or(everyone),
                    color: b.color,
                    hoist: b.hoist,
                    mentionable: b.mentionable,
                    managed: false,
                };
                let events = guild
                    .create_role(Actor::User(actor), id, spec)
                    .map_err(|e| api_error(&e))?;
                let role = guild.role(id).map(role_json).unwrap_or(Value::Null);
                Ok(Outcome::json(200, role, events))
            })
        }
        Route::ModifyRolePositions { guild_id } => {
            let list = input!(input, RolePositions, reply);
            on_owner(ctx, reply, guild_id, move |o| {
                let guild = as_member(o, guild_id, actor)?;
                let positions: Vec<(u64, u32)> = list
                    .iter()
                    .filter_map(|p| p.position.map(|pos| (p.id, pos)))
                    .collect();
                let events = guild
                    .reorder_roles(Actor::User(actor), &positions)
                    .map_err(|e| api_error(&e))?;
                Ok(Outcome::json(200, roles_json(guild), events))
            })
        }
        Route::ModifyRole { guild_id, role_id } => {
            let b = input!(input, ModifyRole, reply);
            on_owner(ctx, reply, guild_id, move |o| {
                let guild = as_member(o, guild_id, actor)?;
                let patch = RolePatch {
                    name: b.name,
                    permissions: b.permissions,
                    color: b.color,
                    hoist: b.hoist,
                    mentionable: b.mentionable,
                };
                let events = guild
                    .update_role(Actor::User(actor), role_id, patch)
                    .map_err(|e| api_error(&e))?;
                let role = guild
                    .role(role_id)
                    .map(role_json)
                    .ok_or_else(ApiError::unknown_role)?;
                Ok(Outcome::json(200, role, events))
            })
        }
        Route::DeleteRole { guild_id, role_id } => on_owner(ctx, reply, guild_id, move |o| {
            let guild = as_member(o, guild_id, actor)?;
            let events = guild
                .delete_role(Actor::User(actor), role_id)
                .map_err(|e| api_error(&e))?;
            Ok(Outcome::empty(events))
        }),
        Route::ListMembers { guild_id } => {
            let q = input!(input, ListMembers, reply);
            on_owner(ctx, reply, guild_id, move |o| {
                let guild = as_member(o, guild_id, actor)?;
                let list: Vec<Value> = guild
                    .members()
                    .filter(|m| m.user.id > q.after)
                    .take(q.limit as usize)
                    .map(member_json)
                    .collect();
                Ok(Outcome::json(200, Value::Array(list), Vec::new()))
            })
        }
        Route::SearchMembers { guild_id } => {
            let q = input!(input, SearchMembers, reply);
            on_owner(ctx, reply, guild_id, move |o| {
                let guild = as_member(o, guild_id, actor)?;
                let needle = q.query.to_lowercase();
                let starts = |s: &str| s.to_lowercase().starts_with(&needle);
                let list: Vec<Value> = guild
                    .members()
                    .filter(|m| {
                        starts(&m.user.username)
                            || m.nick.as_deref().is_some_and(starts)
                            || m.user.global_name.as_deref().is_some_and(starts)
                    })
                    .take(q.limit as usize)
                    .map(member_json)
                    .collect();
                Ok(Outcome::json(200, Value::Array(list), Vec::new()))
            })
        }
        Route::GetMember { guild_id, user_id } => on_owner(ctx, reply, guild_id, move |o| {
            let guild = as_member(o, guild_id, actor)?;
            let m = guild
                .member_json(user_id)
                .ok_or_else(ApiError::unknown_member)?;
            Ok(Outcome::json(200, m, Vec::new()))
        }),
        Route::ModifyMember { guild_id, user_id } => {
            let b = input!(input, ModifyMember, reply);
            on_owner(ctx, reply, guild_id, move |o| {
                let guild = as_member(o, guild_id, actor)?;
                modify_member(guild, actor, user_id, b)
            })
        }
        Route::ModifyCurrentMember { guild_id } => {
            let b = input!(input, ModifyCurrentMember, reply);
            on_owner(ctx, reply, guild_id, move |o| {
                let guild = as_member(o, guild_id, actor)?;
                let nick = match &b.nick {
                    Patch::Set(n) => Some(n.as_str()),
                    Patch::Clear => None,
                    Patch::Unchanged => {
                        let m = guild.member_json(actor).unwrap_or(Value::Null);
                        return Ok(Outcome::json(200, m, Vec::new()));
                    }
                };
                let events = guild
                    .set_nick(Actor::User(actor), actor, nick)
                    .map_err(|e| api_error(&e))?;
                let m = guild.member_json(actor).unwrap_or(Value::Null);
                Ok(Outcome::json(200, m, events))
            })
        }
        Route::AddMemberRole {
            guild_id,
            user_id,
            role_id,
        } => on_owner(ctx, reply, guild_id, move |o| {
            let guild = as_member(o, guild_id, actor)?;
            let events = guild
                .add_member_role(Actor::User(actor), user_id, role_id)
                .map_err(|e| api_error(&e))?;
            Ok(Outcome::empty(events))
        }),
        Route::RemoveMemberRole {
            guild_id,
            user_id,
            role_id,
        } => on_owner(ctx, reply, guild_id, move |o| {
            let guild = as_member(o, guild_id, actor)?;
            let events = guild
                .remove_member_role(Actor::User(actor), user_id, role_id)
                .map_err(|e| api_error(&e))?;
            Ok(Outcome::empty(events))
        }),
        Route::RemoveMember { guild_id, user_id } => {
            evict(ctx, reply, guild_id, actor, user_id, move |guild| {
                guild.kick(Actor::User(actor), user_id)
            })
        }
        Route::ListBans { guild_id } => {
            let q = input!(input, ListBans, reply);
            on_owner(ctx, reply, guild_id, move |o| {
                let guild = as_member(o, guild_id, actor)?;
                require(guild, actor, None, perms::BAN_MEMBERS)?;
                let ban_json = |b: &gateway_core::guild::Ban| json!({"reason": b.reason, "user": user_json(&b.user)});
                let list: Vec<Value> = match q.before {
                    Some(before) => {
                        let below: Vec<&gateway_core::guild::Ban> =
                            guild.bans().filter(|b| b.user.id < before).collect();
                        let skip = below.len().saturating_sub(q.limit as usize);
                        below.into_iter().skip(skip).map(ban_json).collect()
                    }
                    None => guild
                        .bans()
                        .filter(|b| b.user.id > q.after.unwrap_or(0))
                        .take(q.limit as usize)
                        .map(ban_json)
                        .collect(),
                };
                Ok(Outcome::json(200, Value::Array(list), Vec::new()))
            })
        }
        Route::CreateBan { guild_id, user_id } => {
            // `delete_message_seconds` is accepted and ignored (module docs).
            let _ = input!(input, CreateBan, reply);
            evict(ctx, reply, guild_id, actor, user_id, move |guild| {
                guild.ban(Actor::User(actor), user_id, None)
            })
        }
        Route::RemoveBan { guild_id, user_id } => on_owner(ctx, reply, guild_id, move |o| {
            let guild = as_member(o, guild_id, actor)?;
            let events = guild
                .unban(Actor::User(actor), user_id)
                .map_err(|e| api_error(&e))?;
            Ok(Outcome::empty(events))
        }),
        Route::CreateInvite { channel_id } => {
            let b = input!(input, CreateInvite, reply);
            on_channel(ctx, reply, channel_id, move |o, g| {
                let (seed, now) = (o.app.ids.next(o.wall_ms), o.wall_ms);
                let guild = as_member(o, g, actor)?;
                visible_channel(guild, actor, channel_id)?;
                let spec = NewInvite {
                    max_age_s: b.max_age,
                    max_uses: b.max_uses,
                    temporary: b.temporary,
                };
                // Expired and used-up invites count against the guild's cap until pruned; the
                // pruning is published even when the creation is refused.
                let mut events = guild.prune_invites(now);
                match guild.create_invite(Actor::User(actor), channel_id, spec, seed, now) {
                    Ok((invite, created)) => {
                        let v = invite_json(guild, &invite);
                        events.extend(created);
                        Ok(Outcome::json(200, v, events))
                    }
                    Err(e) => {
                        guilds::publish(o, g, &events);
                        Err(api_error(&e))
                    }
                }
            })
        }
        Route::ListChannelInvites { channel_id } => {
            on_channel(ctx, reply, channel_id, move |o, g| {
                let guild = as_member(o, g, actor)?;
                visible_channel(guild, actor, channel_id)?;
                require(guild, actor, Some(channel_id), perms::MANAGE_CHANNELS)?;
                let list: Vec<Value> = guild
                    .invites()
                    .filter(|i| i.channel_id == channel_id)
                    .map(|i| invite_json(guild, i))
                    .collect();
                Ok(Outcome::json(200, Value::Array(list), Vec::new()))
            })
        }
        Route::GetInvite { invite_code } => {
            let q = input!(input, WithCounts, reply);
            on_invite(ctx, reply, invite_code, move |o, g, code| {
                let now = o.wall_ms;
                let e = entry(o, g)?;
                let invite = e
                    .guild
                    .invite(&code)
                    .filter(|i| !i.is_expired(now) && !i.is_exhausted())
                    .ok_or_else(ApiError::unknown_invite)?;
                let mut v = invite_json(&e.guild, invite);
                if q.with_counts {
                    v["approximate_member_count"] = json!(e.guild.member_count());
                    v["approximate_presence_count"] = json!(e.presence.online.len());
                }
                Ok(Outcome::json(200, v, Vec::new()))
            })
        }
        Route::DeleteInvite { invite_code } => {
            on_invite(ctx, reply, invite_code, move |o, g, code| {
                let guild = as_member(o, g, actor)?;
                let invite = guild.invite(&code).ok_or_else(ApiError::unknown_invite)?;
                let v = invite_json(guild, invite);
                let events = guild
                    .delete_invite(Actor::User(actor), &code)
                    .map_err(|e| api_error(&e))?;
                Ok(Outcome::json(200, v, events))
            })
        }
        Route::JoinInvite { invite_code } => join_invite(ctx, reply, actor, invite_code),
        Route::ListMessages { channel_id } => {
            let q = input!(input, ListMessages, reply);
            messages::list(ctx, reply, actor, channel_id, q)
        }
        Route::CreateMessage { channel_id } => {
            let b = input!(input, CreateMessage, reply);
            messages::create(ctx, reply, actor, channel_id, *b)
        }
        Route::GetMessage {
            channel_id,
            message_id,
        } => messages::get_one(ctx, reply, actor, channel_id, message_id),
        Route::EditMessage {
            channel_id,
            message_id,
        } => {
            let b = input!(input, EditMessage, reply);
            let op = MessageOp::Edit {
                id: message_id,
                body: b,
            };
            messages::mutate(ctx, reply, actor, channel_id, op)
        }
        Route::DeleteMessage {
            channel_id,
            message_id,
        } => messages::mutate(
            ctx,
            reply,
            actor,
            channel_id,
            MessageOp::Delete { id: message_id },
        ),
        Route::BulkDeleteMessages { channel_id } => {
            let b = input!(input, BulkDelete, reply);
            if let Err(e) = b.check_age(ctx.wall_ms) {
                return reply.now_err(e);
            }
            let op = MessageOp::Bulk { ids: b.messages };
            messages::mutate(ctx, reply, actor, channel_id, op)
        }
        Route::ListPins { channel_id } => messages::list_pins(ctx, reply, actor, channel_id),
        Route::PinMessage {
            channel_id,
            message_id,
        } => messages::mutate(
            ctx,
            reply,
            actor,
            channel_id,
            MessageOp::Pin { id: message_id },
        ),
        Route::UnpinMessage {
            channel_id,
            message_id,
        } => messages::mutate(
            ctx,
            reply,
            actor,
            channel_id,
            MessageOp::Unpin { id: message_id },
        ),
        Route::AddOwnReaction {
            channel_id,
            message_id,
            emoji,
        } => {
            let emoji = match unicode_emoji(emoji) {
                Ok(e) => e,
                Err(e) => return reply.now_err(e),
            };
            let op = MessageOp::React {
                id: message_id,
                emoji,
            };
            messages::mutate(ctx, reply, actor, channel_id, op)
        }
        Route::RemoveOwnReaction {
            channel_id,
            message_id,
            emoji,
        } => {
            let emoji = match unicode_emoji(emoji) {
                Ok(e) => e,
                Err(e) => return reply.now_err(e),
            };
            let op = MessageOp::Unreact {
                id: message_id,
                emoji,
                user: actor,
            };
            messages::mutate(ctx, reply, actor, channel_id, op)
        }
        Route::RemoveUserReaction {
            channel_id,
            message_id,
            emoji,
            user_id,
        } => {
            let emoji = match unicode_emoji(emoji) {
                Ok(e) => e,
                Err(e) => return reply.now_err(e),
            };
            let op = MessageOp::Unreact {
                id: message_id,
                emoji,
                user: user_id,
            };
            messages::mutate(ctx, reply, actor, channel_id, op)
        }
        Route::ListReactions {
            channel_id,
            message_id,
            emoji,
        } => {
            let q = input!(input, ListReactions, reply);
            let emoji = match unicode_emoji(emoji) {
                Ok(e) => e,
                Err(e) => return reply.now_err(e),
            };
            messages::list_reactions(ctx, reply, actor, channel_id, message_id, emoji, q)
        }
        Route::RemoveEmojiReactions {
            channel_id,
            message_id,
            emoji,
        } => {
            let emoji = match unicode_emoji(emoji) {
                Ok(e) => e,
                Err(e) => return reply.now_err(e),
            };
            let op = MessageOp::ClearEmoji {
                id: message_id,
                emoji,
            };
            messages::mutate(ctx, reply, actor, channel_id, op)
        }
        Route::RemoveAllReactions {
            channel_id,
            message_id,
        } => messages::mutate(
            ctx,
            reply,
            actor,
            channel_id,
            MessageOp::ClearAll { id: message_id },
        ),
        Route::TriggerTyping { channel_id } => on_channel(ctx, reply, channel_id, move |o, g| {
            let now_s = o.wall_ms / 1000;
            let guild = as_member(o, g, actor)?;
            visible_channel(guild, actor, channel_id)?;
            require(guild, actor, Some(channel_id), perms::SEND_MESSAGES)?;
            let data = json!({
                "channel_id": channel_id.to_string(),
                "guild_id": g.to_string(),
                "user_id": actor.to_string(),
                "timestamp": now_s,
                "member": guild.member_json(actor),
            });
            let ev = GuildEvent {
                name: "TYPING_START",
                data,
                audience: Audience::Channel(channel_id),
            };
            Ok(Outcome::empty(vec![ev]))
        }),
        Route::AckMessage {
            channel_id,
            message_id,
        } => {
            let b = input!(input, Ack, reply);
            messages::ack(ctx, reply, actor, channel_id, message_id, b)
        }
        Route::ControlCreateUser {} => {
            let b = input!(input, ControlCreateUser, reply);
            let privileged = b.privileged_intents.unwrap_or(intents::PRIVILEGED);
            create_user(ctx, reply, &b.username, b.bot, privileged, None)
        }
        Route::ControlCreateApplication {} => {
            let b = input!(input, ControlCreateApplication, reply);
            create_application(ctx, reply, b.name, b.owner_id)
        }
        Route::ControlCreateGuild {} => {
            let b = input!(input, ControlCreateGuild, reply);
            create_guild_flow(ctx, reply, b.owner_id, b.name, None, 200)
        }
        Route::ControlAddGuildMember { guild_id } => {
            let b = input!(input, ControlAddGuildMember, reply);
            control_add_member(ctx, reply, guild_id, b)
        }
    }
}

/// Session starts announced by `GET /gateway/bot` (Identify is not limited per day here).
const SESSION_STARTS_PER_DAY: u32 = 1000;
/// When the announced session start budget resets (one day).
const SESSION_START_RESET_MS: u64 = 86_400_000;

/// Runs `f` on `user`'s home shard with the user's directory entry (and the owner of the user's
/// application, if the control plane named one) and answers what it returns.
fn on_home(
    ctx: &mut ShardCtx,
    reply: Reply,
    user: u64,
    f: impl FnOnce(Option<&Value>, Option<&UserRecord>) -> Result<Value, ApiError> + Send + 'static,
) -> Routed {
    ctx.invoke_on_reliably(owner_shard(user, ctx.shards()), move |h: &mut ShardCtx| {
        let owner = h.app.application_owners.get(&user);
        match f(owner, h.app.users.get(&user)) {
            Ok(v) => reply.json(h, 200, &v),
            Err(e) => reply.error(h, e),
        }
    });
    Routed::Later
}

/// [`on_owner`] for a route naming an invite code: its guild comes from this shard's directory.
fn on_invite(
    ctx: &mut ShardCtx,
    reply: Reply,
    code: String,
    op: impl FnOnce(&mut ShardCtx, u64, String) -> Result<Outcome, ApiError> + Send + 'static,
) -> Routed {
    let Some(&g) = ctx.app.invite_guild.get(&code) else {
        return reply.now_err(ApiError::unknown_invite());
    };
    on_owner(ctx, reply, g, move |o| op(o, g, code))
}

/// Reactions take Unicode emoji only: the model has no guild emojis.
fn unicode_emoji(e: ReactionEmoji) -> Result<String, ApiError> {
    match e {
        ReactionEmoji::Unicode(s) => Ok(s),
        ReactionEmoji::Custom { .. } => Err(ApiError::unknown_emoji()),
    }
}

/// Every role, lowest position first (ties: older first), as clients sort them.
fn roles_json(guild: &Guild) -> Value {
    let mut roles: Vec<&gateway_core::guild::Role> = guild.roles().collect();
    roles.sort_by_key(|r| (r.position, Reverse(r.id)));
    Value::Array(roles.into_iter().map(role_json).collect())
}

fn modify_guild(guild: &mut Guild, actor: u64, b: rest::ModifyGuild) -> Result<Outcome, ApiError> {
    let old_owner = guild.owner_id();
    let mut events = Vec::new();
    if let Some(new_owner) = b.owner_id {
        events.extend(
            guild
                .transfer_ownership(Actor::User(actor), new_owner)
                .map_err(|e| api_error(&e))?,
        );
    }
    let patch = GuildPatch {
        name: b.name,
        icon: None,
        description: patch_option(b.description),
        afk_channel_id: patch_option(b.afk_channel_id),
        afk_timeout_s: b.afk_timeout,
        system_channel_id: patch_option(b.system_channel_id),
        verification_level: b.verification_level,
        default_message_notifications: b.default_message_notifications,
        explicit_content_filter: b.explicit_content_filter,
    };
    // After a transfer the old owner keeps acting with the rights it had when it asked.
    let acting = if guild.owner_id() != old_owner {
        Actor::System
    } else {
        Actor::User(actor)
    };
    match guild.update_guild(acting, patch) {
        Ok(more) => events.extend(more),
        Err(e) => {
            if guild.owner_id() != old_owner {
                let _ = guild.transfer_ownership(Actor::System, old_owner);
            }
            return Err(api_error(&e));
        }
    }
    let v = guild.to_guild_json();
    // Both steps announce GUILD_UPDATE; one with the final state is enough.
    let events = if events.is_empty() {
        events
    } else {
        vec![GuildEvent {
            name: "GUILD_UPDATE",
            data: v.clone(),
            audience: Audience::Guild,
        }]
    };
    Ok(Outcome::json(200, v, events))
}

fn create_channel(
    guild: &mut Guild,
    actor: u64,
    id: u64,
    b: rest::CreateChannel,
) -> Result<Outcome, ApiError> {
    let kind = ChannelKind::from_code(u64::from(b.kind)).ok_or_else(|| {
        ApiError::invalid_field("type", "BASE_TYPE_CHOICES", "Unknown channel type.")
    })?;
    let mut spec = NewChannel::new(kind, &b.name);
    spec.parent_id = b.parent_id;
    spec.position = b.position;
    spec.nsfw = b.nsfw;
    spec.rate_limit_per_user = b.rate_limit_per_user.unwrap_or(0);
    spec.overwrites = overwrites(b.permission_overwrites);
    // Fields of other channel types are ignored, as Discord does.
    if kind.is_text() {
        spec.topic = b.topic;
    }
    if kind == ChannelKind::Voice {
        spec.bitrate = b.bitrate;
        spec.user_limit = b.user_limit;
    }
    let events = guild
        .create_channel(Actor::User(actor), id, spec)
        .map_err(|e| api_error(&e))?;
    let v = guild.channel_json(id).unwrap_or(Value::Null);
    Ok(Outcome::json(201, v, events))
}

fn modify_channel(
    guild: &mut Guild,
    actor: u64,
    c: u64,
    b: rest::ModifyChannel,
) -> Result<Outcome, ApiError> {
    let current = visible_channel(guild, actor, c)?;
    if let Some(kind) = b.kind
        && kind != current.kind.code()
    {
        // Converting text and announcement channels needs a community guild; we have none.
        return Err(ApiError::wrong_channel_type());
    }
    let patch = ChannelPatch {
        name: b.name,
        topic: patch_option(b.topic),
        position: b.position,
        parent_id: patch_option(b.parent_id),
        nsfw: b.nsfw,
        bitrate: match b.bitrate {
            Patch::Unchanged => None,
            Patch::Clear => Some(gateway_core::guild::limits::BITRATE_DEFAULT),
            Patch::Set(v) => Some(v),
        },
        user_limit: patch_option(b.user_limit).map(|v| v.unwrap_or(0)),
        rate_limit_per_user: patch_option(b.rate_limit_per_user).map(|v| v.unwrap_or(0)),
        overwrites: patch_option(b.permission_overwrites)
            .map(|v| overwrites(v.unwrap_or_default())),
    };
    let events = guild
        .update_channel(Actor::User(actor), c, patch)
        .map_err(|e| api_error(&e))?;
    let v = guild
        .channel_json(c)
        .ok_or_else(ApiError::unknown_channel)?;
    Ok(Outcome::json(200, v, events))
}

/// `PATCH /guilds/{g}/channels`: parents (and synced overwrites) first, then positions; undone
/// as a whole if a step is refused.
fn move_channels(
    guild: &mut Guild,
    actor: u64,
    list: &[rest::ChannelPosition],
) -> Result<Outcome, ApiError> {
    let mut saved: Vec<Channel> = Vec::new();
    let mut events = Vec::new();
    let mut step = |guild: &mut Guild, events: &mut Vec<GuildEvent>| -> Result<(), ApiError> {
        for p in list {
            if p.parent_id.is_unchanged() && !p.lock_permissions {
                continue;
            }
            let ch = guild
                .channel(p.id)
                .cloned()
                .ok_or_else(ApiError::unknown_channel)?;
            let parent = match p.parent_id {
                Patch::Unchanged => ch.parent_id,
                Patch::Clear => None,
                Patch::Set(id) => Some(id),
            };
            let synced = if p.lock_permissions {
                parent
                    .and_then(|id| guild.channel(id))
                    .map(|parent| parent.overwrites.clone())
            } else {
                None
            };
            saved.push(ch);
            let patch = ChannelPatch {
                parent_id: patch_option(p.parent_id),
                overwrites: synced,
                ..ChannelPatch::default()
            };
            events.extend(
                guild
                    .update_channel(Actor::User(actor), p.id, patch)
                    .map_err(|e| api_error(&e))?,
            );
        }
        let positions: Vec<(u64, u32)> = list
            .iter()
            .filter_map(|p| p.position.map(|pos| (p.id, pos)))
            .collect();
        if !positions.is_empty() {
            events.extend(
                guild
                    .reorder_channels(Actor::User(actor), &positions)
                    .map_err(|e| api_error(&e))?,
            );
        }
        Ok(())
    };
    if let Err(e) = step(guild, &mut events) {
        for old in saved.into_iter().rev() {
            let undo = ChannelPatch {
                parent_id: Some(old.parent_id),
                position: Some(old.position),
                overwrites: Some(old.overwrites),
                ..ChannelPatch::default()
            };
            let _ = guild.update_channel(Actor::System, old.id, undo);
        }
        return Err(e);
    }
    Ok(Outcome::empty(events))
}

/// `PATCH /guilds/{g}/members/{u}`: roles (additions first, then removals from the lowest), nick,
/// voice flags; undone as a whole if a step is refused, announced once.
fn modify_member(
    guild: &mut Guild,
    actor: u64,
    user: u64,
    b: rest::ModifyMember,
) -> Result<Outcome, ApiError> {
    let before = guild
        .member(user)
        .cloned()
        .ok_or_else(ApiError::unknown_member)?;
    let gid = guild.id();
    let mut changed = false;
    let apply = |guild: &mut Guild| -> Result<(), ApiError> {
        let who = Actor::User(actor);
        if let Some(wanted) = patch_option(b.roles) {
            let mut wanted = wanted.unwrap_or_default();
            wanted.retain(|&r| r != gid);
            wanted.sort_unstable();
            wanted.dedup();
            for &r in &wanted {
                if !before.roles.contains(&r) {
                    changed |= !guild
                        .add_member_role(who, user, r)
                        .map_err(|e| api_error(&e))?
                        .is_empty();
                }
            }
            let mut gone: Vec<u64> = before
                .roles
                .iter()
                .copied()
                .filter(|r| !wanted.contains(r))
                .collect();
            gone.sort_by_key(|&r| (guild.role(r).map_or(0, |x| x.position), Reverse(r)));
            for r in gone {
                changed |= !guild
                    .remove_member_role(who, user, r)
                    .map_err(|e| api_error(&e))?
                    .is_empty();
            }
        }
        if let Some(nick) = patch_option(b.nick) {
            changed |= !guild
                .set_nick(who, user, nick.as_deref())
                .map_err(|e| api_error(&e))?
                .is_empty();
        }
        if b.mute.is_some() || b.deaf.is_some() {
            changed |= !guild
                .set_voice_moderation(who, user, b.mute, b.deaf)
                .map_err(|e| api_error(&e))?
                .is_empty();
        }
        Ok(())
    };
    if let Err(e) = apply(guild) {
        restore_member(guild, &before);
        return Err(e);
    }
    let events = if changed {
        member_update_event(guild, user).into_iter().collect()
    } else {
        Vec::new()
    };
    let v = guild.member_json(user).unwrap_or(Value::Null);
    Ok(Outcome::json(200, v, events))
}

/// Puts a member back as it was (as the system: every check passed the first time).
fn restore_member(guild: &mut Guild, before: &gateway_core::guild::Member) {
    let user = before.user.id;
    let now: Vec<u64> = guild
        .member(user)
        .map(|m| m.roles.clone())
        .unwrap_or_default();
    for r in now.iter().filter(|r| !before.roles.contains(r)) {
        let _ = guild.remove_member_role(Actor::System, user, *r);
    }
    for r in before.roles.iter().filter(|r| !now.contains(r)) {
        let _ = guild.add_member_role(Actor::System, user, *r);
    }
    let _ = guild.set_nick(Actor::System, user, before.nick.as_deref());
    let _ = guild.set_voice_moderation(Actor::System, user, Some(before.mute), Some(before.deaf));
}

/// A kick or a ban: asks the target's home shard for their sessions, runs `op` on the owner,
/// publishes what it produced (except the GUILD_DELETE meant for the target, which goes with
/// their unsubscription) and evicts the target's sessions.
fn evict(
    ctx: &mut ShardCtx,
    reply: Reply,
    g: u64,
    actor: u64,
    target: u64,
    op: impl FnOnce(&mut Guild) -> gateway_core::guild::GuildResult + Send + 'static,
) -> Routed {
    ctx.invoke_on_reliably(
        owner_shard(target, ctx.shards()),
        move |h: &mut ShardCtx| {
            let sessions = h
                .app
                .users
                .get(&target)
                .map(|u| u.sessions.clone())
                .unwrap_or_default();
            h.invoke_on_reliably(owner_shard(g, h.shards()), move |o: &mut ShardCtx| {
                let done =
                    as_member(o, g, actor).and_then(|guild| op(guild).map_err(|e| api_error(&e)));
                match done {
                    Ok(mut events) => {
                        events.retain(|e| {
                            !(e.name == "GUILD_DELETE" && e.audience == Audience::User(target))
                        });
                        guilds::publish(o, g, &events);
                        guilds::evict_sessions(o, g, target, sessions);
                        let resp = Response::new(204, "application/json", "");
                        crate::meta::send_when_durable(o, reply, resp);
                    }
                    Err(e) => reply.error(o, e),
                }
            });
        },
    );
    Routed::Later
}

/// Creates a guild owned by `owner`: the owner's directory entry first (it bounds how many guilds
/// a user has), then the guild on its owner shard, then the owner's sessions are subscribed.
fn create_guild_flow(
    ctx: &mut ShardCtx,
    reply: Reply,
    owner: u64,
    name: String,
    settings: Option<GuildPatch>,
    status: u16,
) -> Routed {
    let g = ctx.app.ids.next(ctx.wall_ms);
    ctx.invoke_on_reliably(owner_shard(owner, ctx.shards()), move |h: &mut ShardCtx| {
        let info = match h.app.users.get_mut(&owner) {
            None => return reply.error(h, ApiError::unknown_user()),
            Some(u) if u.guilds.len() >= GUILDS_PER_USER_MAX => {
                return reply.error(h, ApiError::max_guilds(GUILDS_PER_USER_MAX));
            }
            Some(u) => {
                u.guilds.push(g);
                guilds::user_info(u)
            }
        };
        h.invoke_on_reliably(owner_shard(g, h.shards()), move |o: &mut ShardCtx| {
            match guilds::create_guild(o, g, &name, info, settings) {
                Ok(v) => {
                    crate::meta::json_when_durable(o, reply, status, &v);
                    guilds::subscribe_user_sessions(o, owner, g);
                }
                Err(e) => {
                    o.invoke_on_reliably(
                        owner_shard(owner, o.shards()),
                        move |h: &mut ShardCtx| {
                            if let Some(u) = h.app.users.get_mut(&owner) {
                                u.guilds.retain(|&x| x != g);
                            }
                        },
                    );
                    reply.error(o, e);
                }
            }
        });
    });
    Routed::Later
}

/// Adds `user` to guild `g`: the user's home shard gives the user's profile, the owner runs `join`
/// with it, then the guild goes into the user's directory entry and their sessions subscribe.
fn join_flow(
    ctx: &mut ShardCtx,
    reply: Reply,
    g: u64,
    user: u64,
    join: impl FnOnce(&mut ShardCtx, UserInfo) -> Result<Outcome, ApiError> + Send + 'static,
) -> Routed {
    ctx.invoke_on_reliably(owner_shard(user, ctx.shards()), move |h: &mut ShardCtx| {
        let info = match h.app.users.get(&user) {
            None => return reply.error(h, ApiError::unknown_user()),
            Some(u) if !u.guilds.contains(&g) && u.guilds.len() >= GUILDS_PER_USER_MAX => {
                return reply.error(h, ApiError::max_guilds(GUILDS_PER_USER_MAX));
            }
            Some(u) => guilds::user_info(u),
        };
        h.invoke_on_reliably(
            owner_shard(g, h.shards()),
            move |o: &mut ShardCtx| match join(o, info) {
                Ok(out) => {
                    guilds::publish(o, g, &out.events);
                    crate::meta::send_when_durable(o, reply, out.response());
                    guilds::subscribe_user_sessions(o, user, g);
                }
                Err(e) => reply.error(o, e),
            },
        );
    });
    Routed::Later
}

fn join_invite(ctx: &mut ShardCtx, reply: Reply, actor: u64, code: String) -> Routed {
    let Some(&g) = ctx.app.invite_guild.get(&code) else {
        return reply.now_err(ApiError::unknown_invite());
    };
    join_flow(ctx, reply, g, actor, move |o, info| {
        let now = o.wall_ms;
        let guild = &mut entry(o, g)?.guild;
        let events = guild
            .join_via_invite(&code, info, now)
            .map_err(|e| api_error(&e))?;
        let mut v = guild
            .invite(&code)
            .map(|i| invite_json(guild, i))
            .unwrap_or(Value::Null);
        v["new_member"] = json!(true);
        Ok(Outcome::json(200, v, events))
    })
}

fn control_add_member(
    ctx: &mut ShardCtx,
    reply: Reply,
    g: u64,
    b: rest::ControlAddGuildMember,
) -> Routed {
    let user = b.user_id;
    join_flow(ctx, reply, g, user, move |o, info| {
        let now = o.wall_ms;
        let guild = &mut entry(o, g)?.guild;
        if b.roles.iter().any(|&r| guild.role(r).is_none()) {
            return Err(ApiError::unknown_role());
        }
        guild.add_member(info, now).map_err(|e| api_error(&e))?;
        let setup = |guild: &mut Guild| -> Result<(), ApiError> {
            if let Some(n) = &b.nick {
                guild
                    .set_nick(Actor::System, user, Some(n))
                    .map_err(|e| api_error(&e))?;
            }
            for &r in b.roles.iter().filter(|&&r| r != g) {
                guild
                    .add_member_role(Actor::System, user, r)
                    .map_err(|e| api_error(&e))?;
            }
            Ok(())
        };
        if let Err(e) = setup(guild) {
            // Nobody heard of the join yet: taking it back emits nothing.
            let _ = guild.remove_member(user);
            return Err(e);
        }
        let v = guild.member_json(user).unwrap_or(Value::Null);
        let mut data = v.clone();
        data["guild_id"] = Value::String(g.to_string());
        let ev = GuildEvent {
            name: "GUILD_MEMBER_ADD",
            data,
            audience: Audience::Guild,
        };
        Ok(Outcome::json(200, v, vec![ev]))
    })
}

/// Creates a user (a bot when `bot`) on its home shard and answers its user object with a token.
fn create_user(
    ctx: &mut ShardCtx,
    reply: Reply,
    username: &str,
    bot: bool,
    privileged: u64,
    application: Option<Option<Value>>,
) -> Routed {
    let id = ctx.app.ids.next(ctx.wall_ms);
    let token = ctx.gw.cfg.token_key.issue(id, ctx.wall_ms / 1000);
    let mut user = ReadyUser::bot(id, username);
    user.bot = bot;
    if !bot {
        user.discriminator = "0".into();
    }
    let record = UserRecord {
        user,
        application_id: bot.then_some(id),
        privileged: privileged & intents::PRIVILEGED,
        guilds: Vec::new(),
        sessions: Vec::new(),
    };
    ctx.invoke_on_reliably(owner_shard(id, ctx.shards()), move |h: &mut ShardCtx| {
        if h.app.users.len() >= USERS_PER_SHARD_MAX {
            return reply.error(
                h,
                ApiError::new(
                    400,
                    rest::codes::MAX_GUILDS,
                    "Maximum number of users reached",
                ),
            );
        }
        let mut v = record.user_json();
        v["token"] = Value::String(token);
        if let Some(owner) = &application {
            if let Some(owner) = owner {
                h.app.application_owners.insert(id, owner.clone());
            }
            v["application"] = application_json(&record, owner.as_ref());
        }
        h.app.users.insert(id, record);
        // The token is only useful if the user survives a restart: answer once it is durable.
        h.app.meta.note_user(id);
        crate::meta::json_when_durable(h, reply, 200, &v);
    });
    Routed::Later
}

/// `POST /control/applications`: a bot user named like the application, owned by `owner_id`
/// (checked to exist) or by itself.
fn create_application(
    ctx: &mut ShardCtx,
    reply: Reply,
    name: String,
    owner_id: Option<u64>,
) -> Routed {
    let Some(owner) = owner_id else {
        return create_user(ctx, reply, &name, true, intents::PRIVILEGED, Some(None));
    };
    ctx.invoke_on_reliably(owner_shard(owner, ctx.shards()), move |h: &mut ShardCtx| {
        let Some(u) = h.app.users.get(&owner) else {
            return reply.error(h, ApiError::unknown_user());
        };
        let public = json!({
            "id": u.user.id.0.to_string(),
            "username": u.user.username,
            "discriminator": u.user.discriminator,
            "avatar": u.user.avatar,
            "global_name": u.user.global_name,
            "public_flags": u.user.public_flags,
            "flags": u.user.flags,
        });
        let origin = reply.origin;
        h.invoke_on_reliably(origin, move |c: &mut ShardCtx| {
            let _ = create_user(
                c,
                reply,
                &name,
                true,
                intents::PRIVILEGED,
                Some(Some(public)),
            );
        });
    });
    Routed::Later
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_map_to_model_options() {
        assert_eq!(patch_option::<u8>(Patch::Unchanged), None);
        assert_eq!(patch_option::<u8>(Patch::Clear), Some(None));
        assert_eq!(patch_option(Patch::Set(3u8)), Some(Some(3)));
    }

    #[test]
    fn custom_emoji_are_unknown() {
        let e = unicode_emoji(ReactionEmoji::Custom {
            name: "x".into(),
            id: 1,
        })
        .unwrap_err();
        assert_eq!((e.status, e.code), (400, rest::codes::UNKNOWN_EMOJI));
        assert_eq!(
            unicode_emoji(ReactionEmoji::Unicode("\u{1F44D}".into())).ok(),
            Some("\u{1F44D}".to_owned())
        );
    }
}
