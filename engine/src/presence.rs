//! Presence (op 3), member requests (op 8) and lazy member lists (op 14).
//!
//! A user's presence is owned by the user's home shard (`owner_shard(user_id)`): sessions
//! coming and going, and op 3 updates, land there; changes are coalesced and flushed every
//! [`PRESENCE_FLUSH_INTERVAL_MS`] to the owner shard of each of the user's guilds, which keeps
//! the guild's online set, fans out PRESENCE_UPDATE and keeps the guild's lazy member list
//! current (only subscribers of affected ranges hear of it). A user whose last session went away
//! turns offline after [`PRESENCE_OFFLINE_GRACE_MS`] (a quick reconnect or resume is not a flap).
//!
//! Member lists: one list per guild ("everyone"), built on the first op 14 for it from the
//! guild's members and online set. Channels hidden from @everyone still use that list (a
//! documented simplification: Discord keys lists by the channel's overwrites).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use gateway_core::gateway::{LazyRequest, PresenceUpdate, RequestGuildMembers, SharedEvent};
use gateway_core::guild::json::member_json;
use gateway_core::guild::member_list::{ListUpdate, MemberList};
use gateway_core::guild::{Audience, Guild, GuildEvent, Member};
use serde_json::{Value, json};

use crate::app::owner_shard;
use crate::ctx::ShardCtx;
use crate::gateway::SessionRef;

/// How often a home shard sends its coalesced presence changes.
pub const PRESENCE_FLUSH_INTERVAL_MS: u64 = 250;
/// A user with no session left turns offline this long after the last one went away.
pub const PRESENCE_OFFLINE_GRACE_MS: u64 = 5_000;
/// Most members in one GUILD_MEMBERS_CHUNK.
pub const MEMBERS_CHUNK_MAX: usize = 1_000;
/// Most members answered for a `query` (Discord: 100).
pub const MEMBER_QUERY_LIMIT_MAX: usize = 100;
/// Most activities kept per presence.
pub const ACTIVITIES_MAX: usize = 8;
/// Statuses a client may set.
const STATUSES: [&str; 5] = ["online", "idle", "dnd", "invisible", "offline"];

/// The presence-related state of one guild on its owner shard.
#[derive(Debug, Default)]
pub struct GuildPresence {
    /// Visible presence objects of online members (absent: offline or invisible).
    pub online: HashMap<u64, Value>,
    /// The lazy member list, built on first use.
    pub list: Option<MemberList>,
}

/// One user's presence on their home shard.
#[derive(Debug, Default)]
struct UserPresence {
    /// One of `STATUSES` ("" before the first session): a static name, so an online user holds
    /// no heap for it.
    status: &'static str,
    activities: Vec<Value>,
    sessions: u32,
    offline_at_ms: Option<u64>,
    /// What was last sent to the guilds (to skip no-op flushes).
    sent: Option<(&'static str, usize)>,
}

/// The presence state a home shard keeps for its users.
#[derive(Debug, Default)]
pub struct HomePresence {
    users: HashMap<u64, UserPresence>,
    dirty: Vec<u64>,
    next_flush_ms: u64,
}

/// A member-list subscriber key: the session's shard, slot generation and index.
fn session_key(shard: usize, r: SessionRef) -> u64 {
    ((shard as u64) << 56) | (u64::from(r.generation & 0x00ff_ffff) << 32) | u64::from(r.index)
}

fn key_parts(key: u64) -> (usize, SessionRef) {
    (
        (key >> 56) as usize,
        SessionRef {
            index: key as u32,
            generation: ((key >> 32) as u32) & 0x00ff_ffff,
        },
    )
}

/// A session of `user` became Ready on this shard.
pub fn session_up(ctx: &mut ShardCtx, user: u64) {
    ctx.invoke_on_reliably(owner_shard(user, ctx.shards()), move |h: &mut ShardCtx| {
        let now = h.now_ms;
        let p = h.presence.users.entry(user).or_default();
        p.sessions += 1;
        p.offline_at_ms = None;
        if p.status.is_empty() || p.status == "offline" {
            p.status = "online";
            h.presence.dirty.push(user);
        }
        let _ = now;
    });
}

/// A session of `user` ended (closed for good, expired, or taken over by a resume).
pub fn session_down(ctx: &mut ShardCtx, user: u64) {
    ctx.invoke_on_reliably(owner_shard(user, ctx.shards()), move |h: &mut ShardCtx| {
        let now = h.now_ms;
        if let Some(p) = h.presence.users.get_mut(&user) {
            p.sessions = p.sessions.saturating_sub(1);
            if p.sessions == 0 {
                p.offline_at_ms = Some(now + PRESENCE_OFFLINE_GRACE_MS);
            }
        }
    });
}

/// Op 3 from session `r`.
pub fn on_presence_update(ctx: &mut ShardCtx, r: SessionRef, p: PresenceUpdate) {
    let Some((_, user)) = ctx.gw.identity(r) else {
        return;
    };
    let status = STATUSES
        .iter()
        .copied()
        .find(|s| *s == p.status)
        .unwrap_or("online");
    let mut activities = p.activities;
    activities.truncate(ACTIVITIES_MAX);
    ctx.invoke_on_reliably(owner_shard(user, ctx.shards()), move |h: &mut ShardCtx| {
        let u = h.presence.users.entry(user).or_default();
        u.status = status;
        u.activities = activities;
        h.presence.dirty.push(user);
    });
}

/// Runs every loop turn: reports this shard's session changes to the users' home shards, then
/// does the home-shard work of [`tick`].
pub fn after_gateway_turn(ctx: &mut ShardCtx) {
    let mut changes = Vec::new();
    ctx.gw.take_session_changes(&mut changes);
    for (user, up) in changes {
        if up {
            session_up(ctx, user);
        } else {
            session_down(ctx, user);
        }
    }
    tick(ctx);
}

/// Runs every loop turn: turns users offline after their grace and flushes coalesced changes.
pub fn tick(ctx: &mut ShardCtx) {
    let now = ctx.now_ms;
    if now < ctx.presence.next_flush_ms {
        return;
    }
    ctx.presence.next_flush_ms = now + PRESENCE_FLUSH_INTERVAL_MS;
    let mut dirty = std::mem::take(&mut ctx.presence.dirty);
    for (&user, p) in ctx.presence.users.iter_mut() {
        if p.offline_at_ms.is_some_and(|t| now >= t) {
            p.offline_at_ms = None;
            p.status = "offline";
            dirty.push(user);
        }
    }
    dirty.sort_unstable();
    dirty.dedup();
    for user in dirty {
        let Some(p) = ctx.presence.users.get_mut(&user) else {
            continue;
        };
        let visible = if p.status == "invisible" {
            "offline"
        } else {
            p.status
        };
        let key = (visible, p.activities.len());
        if p.sent.as_ref() == Some(&key) && visible != "online" {
            continue;
        }
        p.sent = Some(key);
        let online = visible != "offline";
        let presence = json!({
            "user": {"id": user.to_string()},
            "status": visible,
            "activities": if online { p.activities.clone() } else { Vec::new() },
            "client_status": if online { json!({"desktop": visible}) } else { json!({}) },
        });
        if !online {
            ctx.presence.users.remove(&user);
        }
        let guilds = ctx
            .app
            .users
            .get(&user)
            .map(|u| u.guilds.clone())
            .unwrap_or_default();
        let presence = Arc::new(presence);
        for g in guilds {
            let pr = Arc::clone(&presence);
            ctx.invoke_on_reliably(owner_shard(g, ctx.shards()), move |o: &mut ShardCtx| {
                apply_presence(o, g, user, online, &pr);
            });
        }
    }
}

/// On the guild's owner: records the presence, fans PRESENCE_UPDATE out, updates the list.
fn apply_presence(ctx: &mut ShardCtx, g: u64, user: u64, online: bool, presence: &Value) {
    let Some(e) = ctx.app.guilds.by_id.get_mut(&g) else {
        return;
    };
    if !e.guild.is_member(user) {
        return;
    }
    let mut d = presence.clone();
    d["guild_id"] = Value::String(g.to_string());
    if online {
        e.presence.online.insert(user, d.clone());
    } else {
        e.presence.online.remove(&user);
    }
    let updates = match e.presence.list.as_mut() {
        Some(list) => list.set_online(user, online).unwrap_or_default(),
        None => Vec::new(),
    };
    let event = GuildEvent {
        name: "PRESENCE_UPDATE",
        data: d,
        audience: Audience::Guild,
    };
    crate::guilds::fan_out(ctx, g, std::slice::from_ref(&event));
    deliver_list_updates(ctx, updates);
}

/// Sends each list update to its subscribers' sessions (one task per shard and update).
fn deliver_list_updates(ctx: &mut ShardCtx, updates: Vec<ListUpdate>) {
    for u in updates {
        let Ok(ev) = SharedEvent::new("GUILD_MEMBER_LIST_UPDATE", &u.payload, 0) else {
            continue;
        };
        let mut by_shard: BTreeMap<usize, Vec<SessionRef>> = BTreeMap::new();
        for key in u.subscribers {
            let (shard, r) = key_parts(key);
            by_shard.entry(shard).or_default().push(r);
        }
        for (shard, refs) in by_shard {
            if shard >= ctx.shards() {
                continue;
            }
            let ev = ev.clone();
            ctx.invoke_on_reliably(shard, move |c: &mut ShardCtx| {
                for r in refs {
                    c.gw.dispatch_to(r, &ev);
                }
            });
        }
    }
}

/// The highest hoisted role of a member: (role id, position).
fn hoisted(guild: &Guild, m: &Member) -> Option<(u64, u32)> {
    m.roles
        .iter()
        .filter_map(|&r| guild.role(r))
        .filter(|r| r.hoist)
        .max_by_key(|r| (r.position, std::cmp::Reverse(r.id)))
        .map(|r| (r.id, r.position))
}

fn display_name(m: &Member) -> &str {
    m.nick
        .as_deref()
        .or(m.user.global_name.as_deref())
        .unwrap_or(&m.user.username)
}

/// Builds the guild's member list from its members and online set.
fn build_list(g: u64, guild: &Guild, online: &HashMap<u64, Value>) -> MemberList {
    let mut list = MemberList::new(g, "everyone".into());
    for m in guild.members() {
        let _ = list.upsert_member(
            m.user.id,
            display_name(m),
            hoisted(guild, m),
            online.contains_key(&m.user.id),
            member_json(m),
        );
    }
    list
}

/// Op 14 from session `r`: subscribes it to ranges of the guild's member list and answers SYNC.
pub fn on_lazy_request(ctx: &mut ShardCtx, r: SessionRef, q: LazyRequest) {
    let Some((_, user)) = ctx.gw.identity(r) else {
        return;
    };
    let g = q.guild_id.0;
    let key = session_key(ctx.id, r);
    // All channels share the guild's one list: the union of the asked ranges is subscribed.
    let mut ranges: Vec<[u32; 2]> = q.channels.values().flatten().copied().collect();
    ranges.sort_unstable();
    ranges.dedup();
    ranges.truncate(gateway_core::guild::member_list::RANGES_PER_SUBSCRIBER_MAX);
    ctx.call(
        owner_shard(g, ctx.shards()),
        move |o: &mut ShardCtx| {
            let e = o.app.guilds.by_id.get_mut(&g)?;
            if !e.guild.is_member(user) {
                return None;
            }
            let list = match e.presence.list.as_mut() {
                Some(l) => l,
                None => e
                    .presence
                    .list
                    .insert(build_list(g, &e.guild, &e.presence.online)),
            };
            let payload = list.subscribe(key, &ranges).ok()?;
            SharedEvent::new("GUILD_MEMBER_LIST_UPDATE", &payload, 0).ok()
        },
        move |c: &mut ShardCtx, ev: Option<SharedEvent>| {
            if let Some(ev) = ev {
                c.gw.dispatch_to(r, &ev);
            }
        },
    );
}

/// Op 8 from session `r`: GUILD_MEMBERS_CHUNKs with the members asked for.
pub fn on_request_members(ctx: &mut ShardCtx, r: SessionRef, q: RequestGuildMembers) {
    let Some((_, user)) = ctx.gw.identity(r) else {
        return;
    };
    let g = q.guild_id.0;
    ctx.call(
        owner_shard(g, ctx.shards()),
        move |o: &mut ShardCtx| {
            let e = o.app.guilds.by_id.get(&g)?;
            if !e.guild.is_member(user) {
                return None;
            }
            Some(member_chunks(g, &e.guild, &e.presence.online, &q))
        },
        move |c: &mut ShardCtx, chunks: Option<Vec<SharedEvent>>| {
            for ev in chunks.unwrap_or_default() {
                c.gw.dispatch_to(r, &ev);
            }
        },
    );
}

/// The GUILD_MEMBERS_CHUNK events answering `q` (at least one, possibly empty).
fn member_chunks(
    g: u64,
    guild: &Guild,
    online: &HashMap<u64, Value>,
    q: &RequestGuildMembers,
) -> Vec<SharedEvent> {
    let mut not_found: Vec<String> = Vec::new();
    let members: Vec<&Member> = if !q.user_ids.is_empty() {
        q.user_ids
            .iter()
            .filter_map(|id| {
                let m = guild.member(id.0);
                if m.is_none() {
                    not_found.push(id.0.to_string());
                }
                m
            })
            .collect()
    } else {
        let query = q.query.as_deref().unwrap_or("").to_lowercase();
        let limit = match (query.is_empty(), q.limit) {
            (true, 0) => usize::MAX,
            (_, 0) => MEMBER_QUERY_LIMIT_MAX,
            (_, l) => (l as usize).min(if query.is_empty() {
                usize::MAX
            } else {
                MEMBER_QUERY_LIMIT_MAX
            }),
        };
        guild
            .members()
            .filter(|m| {
                query.is_empty()
                    || m.user.username.to_lowercase().starts_with(&query)
                    || m.nick
                        .as_deref()
                        .is_some_and(|n| n.to_lowercase().starts_with(&query))
            })
            .take(limit)
            .collect()
    };
    let chunks: Vec<&[&Member]> = if members.is_empty() {
        vec![&[]]
    } else {
        members.chunks(MEMBERS_CHUNK_MAX).collect()
    };
    let count = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .filter_map(|(i, part)| {
            let mut d = json!({
                "guild_id": g.to_string(),
                "members": part.iter().map(|m| member_json(m)).collect::<Vec<_>>(),
                "chunk_index": i,
                "chunk_count": count,
            });
            if q.presences {
                d["presences"] = Value::Array(
                    part.iter()
                        .filter_map(|m| online.get(&m.user.id).cloned())
                        .collect(),
                );
            }
            if i == 0 && !not_found.is_empty() {
                d["not_found"] = json!(not_found);
            }
            if let Some(n) = &q.nonce {
                d["nonce"] = Value::String(n.clone());
            }
            SharedEvent::new("GUILD_MEMBERS_CHUNK", &d, 0).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_keys_round_trip() {
        let r = SessionRef {
            index: 77,
            generation: 0x00ab_cdef,
        };
        assert_eq!(key_parts(session_key(5, r)), (5, r));
    }
}
