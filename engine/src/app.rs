//! The application layer of a shard: the user directory (each user lives on its home shard),
//! the gateway flows that need it (Identify, Resume), and the HTTP routes of the control API and
//! of the Discord REST API that are served on every shard.
//!
//! Everything here runs on one shard at a time; reaching another shard's part of the directory
//! is a `call` through the mailboxes, never a lock.

use std::collections::HashMap;

use gateway_core::gateway::ready::{ReadyApplication, ReadyParams, ReadyUser, ready_event};
use gateway_core::gateway::session::ResumeOutcome;
use gateway_core::gateway::sharding::{check_sharding_required, shard_for_guild};
use gateway_core::gateway::{CloseCode, SessionEvent, SharedEvent, Snowflake, intents};
use gateway_core::token::TokenClaims;
use serde::Deserialize;

use crate::api::OpsApi;
use crate::ctx::{ConnRef, ShardCtx};
use crate::gateway::{SessionRef, shard_of_session_id};
use crate::http::{Request, Response};
use crate::shard::{HttpHandler, Routed};
use crate::snowflake::SnowflakeGen;

/// Longest accepted username (Discord: 2..=32).
pub const USERNAME_CHARS_MAX: usize = 32;
/// Shortest accepted username.
pub const USERNAME_CHARS_MIN: usize = 2;
/// Most users one node's directory holds per shard (a bound on control-API growth).
pub const USERS_PER_SHARD_MAX: usize = 1_000_000;
/// Most sessions the user registry lists per user (bots open one per client shard); sessions
/// past it still work but receive no user-targeted events.
pub const SESSIONS_PER_USER_MAX: usize = 64;
/// Application flag: presence intent granted.
pub const APP_FLAG_GATEWAY_PRESENCE: u64 = 1 << 12;
/// Application flag: guild members intent granted.
pub const APP_FLAG_GATEWAY_GUILD_MEMBERS: u64 = 1 << 14;
/// Application flag: message content intent granted.
pub const APP_FLAG_GATEWAY_MESSAGE_CONTENT: u64 = 1 << 18;

/// The shard owning `id` (a user's home or a guild's owner): a stable hash over the shard count.
pub fn owner_shard(id: u64, shards: usize) -> usize {
    // Snowflakes carry their creating shard in bits 12..17; mixing spreads them over every shard.
    let x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((x >> 32) as usize) % shards.max(1)
}

/// A user as the directory keeps it.
#[derive(Clone, Debug)]
pub struct UserRecord {
    /// The user object (READY shape).
    pub user: ReadyUser,
    /// The bot's application, if a bot.
    pub application_id: Option<u64>,
    /// Privileged intents the application may ask for.
    pub privileged: u64,
    /// Guilds the user is a member of.
    pub guilds: Vec<u64>,
    /// Sessions (shard, session id) currently Ready or resumable.
    pub sessions: Vec<(usize, String)>,
}

impl UserRecord {
    /// Application flags announcing the privileged intents granted.
    pub fn application_flags(&self) -> u64 {
        let mut f = 0;
        if self.privileged & intents::GUILD_PRESENCES != 0 {
            f |= APP_FLAG_GATEWAY_PRESENCE;
        }
        if self.privileged & intents::GUILD_MEMBERS != 0 {
            f |= APP_FLAG_GATEWAY_GUILD_MEMBERS;
        }
        if self.privileged & intents::MESSAGE_CONTENT != 0 {
            f |= APP_FLAG_GATEWAY_MESSAGE_CONTENT;
        }
        f
    }

    /// The public user object (REST shape).
    pub fn user_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.user.id.0.to_string(),
            "username": self.user.username,
            "discriminator": self.user.discriminator,
            "global_name": self.user.global_name,
            "avatar": self.user.avatar,
            "bot": self.user.bot,
            "system": false,
            "mfa_enabled": self.user.mfa_enabled,
            "banner": null,
            "accent_color": null,
            "locale": self.user.locale,
            "verified": self.user.verified,
            "email": null,
            "flags": self.user.flags,
            "premium_type": 0,
            "public_flags": self.user.public_flags,
        })
    }
}

/// The application state of one shard.
pub struct AppState {
    /// Users whose home is this shard.
    pub users: HashMap<u64, UserRecord>,
    /// This shard's Snowflake generator.
    pub ids: SnowflakeGen,
    /// URL clients are told to open the gateway at.
    pub gateway_url: String,
    /// Guilds this shard owns.
    pub guilds: crate::guilds::Guilds,
    /// This shard's message store and the requests waiting on it.
    pub messages: crate::messages::Messages,
    /// Channel id -> guild id, for every guild of the node (each shard holds a copy, so a
    /// request naming a channel finds the guild's owner without asking).
    pub channel_guild: HashMap<u64, u64>,
    /// Invite code -> guild id, for every live invite of the node (a copy on each shard, as
    /// `channel_guild`).
    pub invite_guild: HashMap<String, u64>,
    /// This shard's REST rate limiter: requests are limited on the shard that receives them.
    pub rest_limiter: crate::rest::RateLimiter,
    /// The control API's secret (`Authorization: Bearer <secret>` on `/control/*` and
    /// `/admin/*`). Empty: no secret configured, and those endpoints are open, which is meant
    /// for a node whose HTTP port only trusted hosts reach (loopback in development, tests and
    /// benchmarks).
    pub control_secret: Vec<u8>,
    /// Bot user id -> the public user object of its application's owner, for the bots whose
    /// home is this shard and whose owner the control plane named.
    pub application_owners: HashMap<u64, serde_json::Value>,
    /// Durable metadata: dirty keys and replies held until their group is durable.
    pub meta: crate::meta::Meta,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("users", &self.users.len())
            .finish()
    }
}

impl AppState {
    /// The state of shard `shard` of node `worker`.
    pub fn new(worker: u8, shard: usize, gateway_url: String) -> Self {
        AppState {
            users: HashMap::new(),
            ids: SnowflakeGen::masked(worker, (shard % 256) as u8),
            gateway_url,
            guilds: Default::default(),
            messages: Default::default(),
            channel_guild: HashMap::new(),
            invite_guild: HashMap::new(),
            rest_limiter: crate::rest::RateLimiter::new(crate::rest::RateLimitConfig::default()),
            control_secret: Vec::new(),
            application_owners: HashMap::new(),
            meta: Default::default(),
        }
    }
}

// ----- gateway flows -----

fn close_session(ctx: &mut ShardCtx, r: SessionRef, code: CloseCode) {
    if let Some(slot) = ctx.gw.get_mut(r) {
        slot.session.close(code);
        slot.decoder.note_close_sent();
    }
    ctx.gw.mark_dirty(r);
}

/// What Identify needs from the user's home shard.
struct IdentityInfo {
    user: ReadyUser,
    application: ReadyApplication,
    privileged: u64,
    guilds: Vec<u64>,
}

/// Handles what a session reported after reading a client message.
pub fn on_session_event(ctx: &mut ShardCtx, r: SessionRef, ev: SessionEvent) {
    match ev {
        SessionEvent::Identify { claims, identify } => identify_flow(
            ctx,
            r,
            claims,
            identify.intents,
            identify.large_threshold.unwrap_or(50),
        ),
        SessionEvent::Resume {
            claims,
            session_id,
            seq,
        } => resume_flow(ctx, r, claims, session_id, seq),
        // Closes are already queued by the session; the connection layer flushes and shuts.
        SessionEvent::Close { .. } => ctx.gw.mark_dirty(r),
        SessionEvent::PresenceUpdate(p) => crate::presence::on_presence_update(ctx, r, *p),
        SessionEvent::RequestGuildMembers(q) => crate::presence::on_request_members(ctx, r, *q),
        SessionEvent::LazyRequest(q) => crate::presence::on_lazy_request(ctx, r, *q),
        SessionEvent::VoiceStateUpdate(v) => crate::voice::on_voice_state_update(ctx, r, v),
    }
}

fn identify_flow(
    ctx: &mut ShardCtx,
    r: SessionRef,
    claims: TokenClaims,
    asked: u64,
    large_threshold: u32,
) {
    let user_id = claims.user_id;
    let home = owner_shard(user_id, ctx.shards());
    let started = ctx.call(
        home,
        move |c: &mut ShardCtx| {
            c.app.users.get(&user_id).map(|u| IdentityInfo {
                user: u.user.clone(),
                application: ReadyApplication {
                    id: Snowflake(u.application_id.unwrap_or(user_id)),
                    flags: u.application_flags(),
                },
                privileged: u.privileged,
                guilds: u.guilds.clone(),
            })
        },
        move |c: &mut ShardCtx, info: Option<IdentityInfo>| {
            finish_identify(c, r, asked, large_threshold, info)
        },
    );
    if !started {
        close_session(ctx, r, CloseCode::UnknownError);
    }
}

fn finish_identify(
    ctx: &mut ShardCtx,
    r: SessionRef,
    asked: u64,
    large_threshold: u32,
    info: Option<IdentityInfo>,
) {
    let Some(info) = info else {
        // A valid signature for a user that does not exist (deleted, or another node's key).
        close_session(ctx, r, CloseCode::AuthenticationFailed);
        return;
    };
    if let Err(code) = intents::check_privileged(asked, info.privileged) {
        close_session(ctx, r, code);
        return;
    }
    let Some(slot) = ctx.gw.get_mut(r) else {
        return;
    };
    let shard = slot.session.shard();
    let guilds: Vec<u64> = match shard {
        Some([id, n]) => info
            .guilds
            .iter()
            .copied()
            .filter(|&g| shard_for_guild(g, n) == id)
            .collect(),
        None => info.guilds.clone(),
    };
    if let Err(code) = check_sharding_required(guilds.len(), shard.map_or(1, |s| s[1])) {
        close_session(ctx, r, code);
        return;
    }
    let sid = ctx.gw.new_session_id();
    let resume_url = ctx.gw.resume_url.clone();
    let ready = ready_event(&ReadyParams {
        user: &info.user,
        guild_ids: &guilds,
        session_id: &sid,
        resume_gateway_url: &resume_url,
        application: info.application,
        shard,
    });
    let Ok(ready) = ready else {
        close_session(ctx, r, CloseCode::UnknownError);
        return;
    };
    let Some(slot) = ctx.gw.get_mut(r) else {
        return;
    };
    if slot.session.accept_identify(&sid, &ready).is_err() {
        close_session(ctx, r, CloseCode::UnknownError);
        return;
    }
    ctx.gw.register_ready(r);
    ctx.gw.mark_dirty(r);
    ctx.gw.stats.identifies += 1;
    let user_id = info.user.id.0;
    // Each guild follows as GUILD_CREATE from its owner shard (and subscribes the session).
    for g in guilds {
        crate::guilds::request_guild_create(ctx, r, g, user_id, large_threshold);
    }
    let me = ctx.id;
    let home = owner_shard(user_id, ctx.shards());
    // The registry entry is advisory (user-targeted events); a full mailbox only delays it.
    let _ = ctx.invoke_on(home, move |h: &mut ShardCtx| {
        if let Some(u) = h.app.users.get_mut(&user_id)
            && u.sessions.len() < SESSIONS_PER_USER_MAX
        {
            // Most users hold one session: room for exactly one instead of Vec's first four.
            if u.sessions.is_empty() {
                u.sessions.reserve_exact(1);
            }
            u.sessions.push((me, sid));
        }
    });
}

fn resume_flow(ctx: &mut ShardCtx, r: SessionRef, claims: TokenClaims, sid: String, seq: u64) {
    let user_id = claims.user_id;
    let Some(origin) = shard_of_session_id(&sid).filter(|&s| s < ctx.shards()) else {
        refuse_resume(ctx, r);
        return;
    };
    let sid2 = sid.clone();
    let started = ctx.call(
        origin,
        move |c: &mut ShardCtx| c.gw.take_for_resume(&sid2, user_id).map(Box::new),
        move |c: &mut ShardCtx, taken| {
            let Some(mut taken) = taken else {
                refuse_resume(c, r);
                return;
            };
            let Some(slot) = c.gw.get_mut(r) else {
                return;
            };
            match slot.session.resume_from(&mut taken.session, seq) {
                Ok(ResumeOutcome::Resumed { .. }) => {
                    slot.guilds = std::mem::take(&mut taken.guilds);
                    c.gw.register_ready(r);
                    c.gw.stats.resumes += 1;
                    let (me, home) = (c.id, owner_shard(user_id, c.shards()));
                    if me != origin {
                        let _ = c.invoke_on(home, move |h: &mut ShardCtx| {
                            if let Some(u) = h.app.users.get_mut(&user_id) {
                                for s in &mut u.sessions {
                                    if s.1 == sid {
                                        s.0 = me;
                                    }
                                }
                            }
                        });
                    }
                }
                Ok(ResumeOutcome::InvalidSession) => c.gw.stats.resumes_refused += 1,
                Ok(ResumeOutcome::Closed(_)) | Err(_) => {
                    if let Some(slot) = c.gw.get_mut(r) {
                        slot.decoder.note_close_sent();
                    }
                }
            }
            c.gw.mark_dirty(r);
        },
    );
    if !started {
        close_session(ctx, r, CloseCode::UnknownError);
    }
}

fn refuse_resume(ctx: &mut ShardCtx, r: SessionRef) {
    ctx.gw.stats.resumes_refused += 1;
    if let Some(slot) = ctx.gw.get_mut(r) {
        let _ = slot.session.invalid_session();
    }
    ctx.gw.mark_dirty(r);
}

// ----- HTTP -----

/// The HTTP handler of every shard: the Discord REST API under `/api` and the control API under
/// `/control` (both through [`crate::rest_handlers`]), `/openapi.json`, the admin endpoints and
/// the operator endpoints.
#[derive(Clone, Debug, Default)]
pub struct App {
    ops: OpsApi,
}

/// Body of `POST /admin/broadcast`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Broadcast {
    t: String,
    d: serde_json::Value,
}

/// A Discord-style JSON error.
pub fn json_error(status: u16, code: u32, message: &str) -> Response {
    Response::json(
        status,
        serde_json::json!({"code": code, "message": message}).to_string(),
    )
}

/// Whether the request may use the admin endpoints: they take the control API's secret (open
/// when none is configured, see [`AppState::control_secret`]).
fn admin_allowed(ctx: &ShardCtx, req: &Request) -> bool {
    crate::rest::authenticate_control(req, &ctx.app.control_secret).is_ok()
}

fn invalid_json() -> Routed {
    Routed::Now(json_error(
        400,
        50109,
        "The request body contains invalid JSON.",
    ))
}

impl App {
    fn broadcast(ctx: &mut ShardCtx, conn: ConnRef, req: &Request) -> Routed {
        let Ok(body) = serde_json::from_slice::<Broadcast>(&req.body) else {
            return invalid_json();
        };
        let Ok(ev) = SharedEvent::new(&body.t, &body.d, 0) else {
            return Routed::Now(json_error(400, 50035, "Invalid Form Body"));
        };
        let started = ctx.map_reduce(
            move |c: &mut ShardCtx| c.gw.broadcast(&ev),
            0usize,
            |a, n| a + n,
            move |c: &mut ShardCtx, total| {
                c.http_replies.push((
                    conn,
                    Response::json(200, format!("{{\"deliveries\":{total}}}")),
                ));
            },
        );
        if started {
            Routed::Later
        } else {
            Routed::Now(json_error(503, 0, "busy"))
        }
    }

    fn disconnect(ctx: &mut ShardCtx, conn: ConnRef, req: &Request) -> Routed {
        let user = serde_json::from_slice::<serde_json::Value>(&req.body)
            .ok()
            .and_then(|v| crate::rest::snowflake_from_value(&v["user_id"]));
        let Some(user) = user else {
            return invalid_json();
        };
        let started = ctx.map_reduce(
            move |c: &mut ShardCtx| c.gw.disconnect_user(user),
            0usize,
            |a, n| a + n,
            move |c: &mut ShardCtx, total| {
                c.http_replies.push((
                    conn,
                    Response::json(200, format!("{{\"disconnected\":{total}}}")),
                ));
            },
        );
        if started {
            Routed::Later
        } else {
            Routed::Now(json_error(503, 0, "busy"))
        }
    }
}

/// The application object of a bot (`GET /oauth2/applications/@me`); `owner` is the public user
/// object of the application's owner when the control plane named one (else the bot itself).
pub fn application_json(u: &UserRecord, owner: Option<&serde_json::Value>) -> serde_json::Value {
    let id = u.application_id.unwrap_or(u.user.id.0).to_string();
    let own = serde_json::json!({
        "id": u.user.id.0.to_string(),
        "username": u.user.username,
        "discriminator": u.user.discriminator,
        "avatar": null,
        "global_name": null,
        "public_flags": 0,
        "flags": 0,
    });
    serde_json::json!({
        "id": id,
        "name": u.user.username,
        "icon": null,
        "description": "",
        "summary": "",
        "type": null,
        "bot_public": true,
        "bot_require_code_grant": false,
        "verify_key": "0".repeat(64),
        "flags": u.application_flags(),
        "team": null,
        "owner": owner.cloned().unwrap_or(own),
        "bot": u.user_json(),
        "rpc_origins": [],
        "redirect_uris": [],
        "interactions_endpoint_url": null,
        "role_connections_verification_url": null,
        "tags": [],
        "install_params": null,
        "integration_types_config": {},
        "approximate_guild_count": u.guilds.len(),
    })
}

/// Whether `path` belongs to the REST layer: the Discord API under `/api` or the control API.
fn is_rest_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path.starts_with("/control/")
}

impl HttpHandler for App {
    fn handle(&mut self, ctx: &mut ShardCtx, conn: ConnRef, req: &Request) -> Routed {
        if is_rest_path(&req.path) {
            return crate::rest_handlers::handle(ctx, conn, req);
        }
        match (req.method.as_str(), req.path.as_str()) {
            ("GET" | "HEAD", "/openapi.json") => {
                Routed::Now(Response::json(200, crate::rest::OPENAPI_JSON))
            }
            ("POST", "/admin/broadcast" | "/admin/disconnect") if !admin_allowed(ctx, req) => {
                Routed::Now(crate::rest::ApiError::unauthorized().into_response())
            }
            ("POST", "/admin/broadcast") => Self::broadcast(ctx, conn, req),
            ("POST", "/admin/disconnect") => Self::disconnect(ctx, conn, req),
            // Voice (issue 6): voice server list, drain and fault injection (every method takes
            // the secret: a drain moves users, a fault switch breaks health checks).
            (_, p) if p.starts_with(crate::voice::admin::SERVERS_PATH) => {
                if admin_allowed(ctx, req) {
                    crate::voice::admin::handle(ctx, conn, req)
                } else {
                    Routed::Now(crate::rest::ApiError::unauthorized().into_response())
                }
            }
            _ => self.ops.handle(ctx, conn, req),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_shard_is_stable_and_spreads() {
        let mut counts = [0usize; 4];
        for i in 0..4000u64 {
            let id = (i << 22) | 0x1000;
            let s = owner_shard(id, 4);
            assert_eq!(s, owner_shard(id, 4));
            counts[s] += 1;
        }
        assert!(counts.iter().all(|&c| c > 500), "{counts:?}");
        assert_eq!(owner_shard(42, 1), 0);
    }
}
