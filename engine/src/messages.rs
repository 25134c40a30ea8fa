//! The message path (DESIGN.md "Message path"): a REST request on any shard goes to the guild's
//! owner shard, which checks permissions, assigns the Snowflake, appends to its message-store
//! shard, and only once the append is durable answers the requesting shard and fans the event
//! out (serialized once; sessions without MESSAGE_CONTENT get a copy with the content emptied).
//!
//! Reads (history, one message) are store queries on the owner shard, answered when the store
//! reports them done.

use std::collections::HashMap;
use std::sync::Arc;

use gateway_core::gateway::SharedEvent;
use gateway_core::gateway::intents::{self, Scope};
use gateway_core::guild::json::{partial_member_json, user_json};
use gateway_core::guild::{Guild, MessageView, UserInfo, message_json, perms};
use msgstore::{Event, Message, Query, QueryResult};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::{json_error, owner_shard};
use crate::ctx::{ConnRef, ShardCtx};
use crate::http::{Request, Response};
use crate::shard::Routed;

/// Longest message content, in characters.
pub const CONTENT_CHARS_MAX: usize = 2000;
/// Longest nonce, in bytes.
pub const NONCE_BYTES_MAX: usize = 25;
/// Default and largest page of `GET /channels/{id}/messages`.
pub const HISTORY_LIMIT_DEFAULT: usize = 50;
/// Largest page of history.
pub const HISTORY_LIMIT_MAX: usize = 100;
/// Most writes and queries a shard keeps waiting for the store (beyond: 503).
pub const STORE_PENDING_MAX: usize = 65_536;

/// What a pending store operation answers once done.
#[derive(Debug)]
enum Pending {
    Create {
        origin: usize,
        conn: ConnRef,
        msg: Message,
        nonce: Option<Value>,
    },
    Update {
        origin: usize,
        conn: ConnRef,
        msg: Message,
    },
    Delete {
        origin: usize,
        conn: ConnRef,
        guild: u64,
        channel: u64,
        id: u64,
    },
    /// A read-modify-write (edit): the current version was read, the edit applies next.
    EditLookup {
        origin: usize,
        conn: ConnRef,
        actor: u64,
        content: String,
    },
    /// A delete that first checks who wrote the message.
    DeleteLookup {
        origin: usize,
        conn: ConnRef,
        actor: u64,
    },
    History {
        origin: usize,
        conn: ConnRef,
        guild: u64,
        single: bool,
    },
}

/// The message-store side of a shard's application state.
#[derive(Default)]
pub struct Messages {
    /// The store of this shard (None until the node gives it one).
    pub store: Option<msgstore::Store>,
    pending: HashMap<u64, Pending>,
    next_token: u64,
}

impl std::fmt::Debug for Messages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messages")
            .field("store", &self.store.is_some())
            .field("pending", &self.pending.len())
            .finish()
    }
}

fn reply_to(ctx: &mut ShardCtx, origin: usize, conn: ConnRef, resp: Response) {
    if origin == ctx.id {
        ctx.http_replies.push((conn, resp));
    } else {
        ctx.invoke_on_reliably(origin, move |c: &mut ShardCtx| {
            c.http_replies.push((conn, resp))
        });
    }
}

fn author_of(guild: &Guild, author: u64) -> UserInfo {
    guild
        .member(author)
        .map(|m| m.user.clone())
        .unwrap_or_else(|| UserInfo::new(author, "Deleted User"))
}

/// MESSAGE_CREATE/UPDATE's `d` for a stored message.
fn message_value(guild: &Guild, m: &Message, nonce: Option<&Value>) -> Value {
    let author = author_of(guild, m.author_id);
    let mut view = MessageView::new(m.id, m.channel_id, Some(m.guild_id), &author, &m.content);
    view.member = guild.member(m.author_id);
    view.pinned = m.pinned;
    view.edited_at_ms = m.edited_timestamp_ms;
    view.flags = m.flags;
    view.kind = m.kind;
    view.nonce = nonce;
    message_json(&view)
}

/// Fans a message event of channel `channel` out to its viewers; sessions without the
/// MESSAGE_CONTENT intent get `d.content` emptied (and embeds/attachments), as on Discord.
fn fan_out_message(ctx: &mut ShardCtx, g: u64, channel: u64, name: &'static str, d: &Value) {
    let Some(entry) = ctx.app.guilds.by_id.get(&g) else {
        return;
    };
    let required = intents::required(name, Scope::Guild);
    let Ok(full) = SharedEvent::new(name, d, required) else {
        return;
    };
    let mut stripped_d = d.clone();
    intents::strip_message_content(&mut stripped_d);
    let Ok(stripped) = SharedEvent::new(name, &stripped_d, required) else {
        return;
    };
    let mut viewers: Vec<u64> = entry.guild.viewers(channel).collect();
    viewers.sort_unstable();
    let viewers = Arc::new(viewers);
    let mask = entry.session_shards;
    for s in 0..ctx.shards() {
        if mask & (1 << s) == 0 {
            continue;
        }
        let (f, st, v) = (full.clone(), stripped.clone(), Arc::clone(&viewers));
        ctx.invoke_on_reliably(s, move |c: &mut ShardCtx| {
            c.gw.dispatch_guild(g, &f, Some(&st), Some(v.as_slice()));
        });
    }
}

/// Checks that `user` may do `need` in channel `c` of guild `g` (owned here).
fn check(ctx: &ShardCtx, g: u64, c: u64, user: u64, need: u64) -> Result<(), Response> {
    let Some(e) = ctx.app.guilds.by_id.get(&g) else {
        return Err(json_error(404, 10004, "Unknown Guild"));
    };
    let Some(ch) = e.guild.channel(c) else {
        return Err(json_error(404, 10003, "Unknown Channel"));
    };
    if !ch.kind.is_text() {
        return Err(json_error(
            400,
            50008,
            "Cannot send messages in a non-text channel",
        ));
    }
    let p = e.guild.permissions(user, c);
    if p & perms::VIEW_CHANNEL == 0 {
        return Err(json_error(403, 50001, "Missing Access"));
    }
    if p & need != need {
        return Err(json_error(403, 50013, "Missing Permissions"));
    }
    Ok(())
}

impl Messages {
    fn token(&mut self) -> u64 {
        self.next_token = self.next_token.wrapping_add(1);
        self.next_token
    }

    fn full(&self) -> bool {
        self.pending.len() >= STORE_PENDING_MAX
    }
}

#[derive(Deserialize)]
struct CreateBody {
    #[serde(default)]
    content: String,
    #[serde(default)]
    nonce: Option<Value>,
    #[serde(default)]
    tts: bool,
}

#[derive(Deserialize)]
struct EditBody {
    content: Option<String>,
}

/// Validates the body of `POST /channels/{id}/messages`.
fn parse_create(body: &[u8]) -> Result<CreateBody, Response> {
    let b: CreateBody = serde_json::from_slice(body)
        .map_err(|_| json_error(400, 50109, "The request body contains invalid JSON."))?;
    if b.content.chars().count() > CONTENT_CHARS_MAX {
        return Err(Response::json(
            400,
            json!({"code": 50035, "message": "Invalid Form Body", "errors": {"content": {"_errors": [
                {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}}})
            .to_string(),
        ));
    }
    if b.content.trim().is_empty() {
        return Err(json_error(
            50006 / 125,
            50006,
            "Cannot send an empty message",
        ));
    }
    match &b.nonce {
        None | Some(Value::Null) | Some(Value::Number(_)) => {}
        Some(Value::String(s)) if s.len() <= NONCE_BYTES_MAX => {}
        Some(_) => return Err(json_error(400, 50035, "Invalid Form Body")),
    }
    Ok(b)
}

fn guild_of(ctx: &ShardCtx, channel: u64) -> Result<u64, Routed> {
    ctx.app
        .channel_guild
        .get(&channel)
        .copied()
        .ok_or_else(|| Routed::Now(json_error(404, 10003, "Unknown Channel")))
}

/// `POST /channels/{c}/messages` as `actor`.
pub fn create(ctx: &mut ShardCtx, conn: ConnRef, req: &Request, actor: u64, c: u64) -> Routed {
    let body = match parse_create(&req.body) {
        Ok(b) => b,
        Err(resp) => return Routed::Now(resp),
    };
    let g = match guild_of(ctx, c) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let origin = ctx.id;
    let _ = body.tts;
    ctx.invoke_on_reliably(owner_shard(g, ctx.shards()), move |o: &mut ShardCtx| {
        if let Err(resp) = check(o, g, c, actor, perms::SEND_MESSAGES) {
            return reply_to(o, origin, conn, resp);
        }
        let id = o.app.ids.next(o.wall_ms);
        let msg = Message {
            id,
            channel_id: c,
            guild_id: g,
            author_id: actor,
            kind: 0,
            content: body.content,
            nonce: match &body.nonce {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            },
            ..Message::default()
        };
        let m = &mut o.app.messages;
        let token = m.token();
        let stored = match m.store.as_mut() {
            Some(store) if !m.pending.len().ge(&STORE_PENDING_MAX) => {
                store.append(token, msg.clone())
            }
            _ => return reply_to(o, origin, conn, json_error(503, 0, "store unavailable")),
        };
        match stored {
            Ok(()) => {
                m.pending.insert(
                    token,
                    Pending::Create {
                        origin,
                        conn,
                        msg,
                        nonce: body.nonce,
                    },
                );
            }
            Err(e) => reply_to(o, origin, conn, json_error(400, 50035, &e.to_string())),
        }
    });
    Routed::Later
}

/// Parses history paging: `limit`, and at most one of `before`, `after`, `around`.
fn history_query(channel: u64, query: &str) -> Result<Query, Response> {
    let mut limit = HISTORY_LIMIT_DEFAULT;
    let mut anchor = None;
    for (k, v) in query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
    {
        match k {
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=HISTORY_LIMIT_MAX).contains(l))
                    .ok_or_else(|| json_error(400, 50035, "Invalid Form Body"))?;
            }
            "before" | "after" | "around" => {
                let id = v
                    .parse::<u64>()
                    .map_err(|_| json_error(400, 50035, "Invalid Form Body"))?;
                anchor = Some((k.to_owned(), id));
            }
            _ => {}
        }
    }
    Ok(match anchor {
        None => Query::Latest {
            channel_id: channel,
            limit,
        },
        Some((k, id)) if k == "before" => Query::Before {
            channel_id: channel,
            before: id,
            limit,
        },
        Some((k, id)) if k == "after" => Query::After {
            channel_id: channel,
            after: id,
            limit,
        },
        Some((_, id)) => Query::Around {
            channel_id: channel,
            around: id,
            limit,
        },
    })
}

/// Submits a store query on the owner shard for a pending reply.
/// Who asks for what in which channel.
#[derive(Clone, Copy)]
struct Access {
    guild: u64,
    channel: u64,
    actor: u64,
    /// Permission bits needed besides VIEW_CHANNEL.
    need: u64,
}

fn query_on_owner(
    ctx: &mut ShardCtx,
    a: Access,
    q: Query,
    mk: impl FnOnce(usize, ConnRef) -> Pending + Send + 'static,
    conn: ConnRef,
) {
    let origin = ctx.id;
    ctx.invoke_on_reliably(
        owner_shard(a.guild, ctx.shards()),
        move |o: &mut ShardCtx| {
            if let Err(resp) = check(o, a.guild, a.channel, a.actor, a.need) {
                return reply_to(o, origin, conn, resp);
            }
            let m = &mut o.app.messages;
            if m.full() {
                return reply_to(o, origin, conn, json_error(503, 0, "store busy"));
            }
            let token = m.token();
            let r = match m.store.as_mut() {
                Some(store) => store.query(token, q),
                None => return reply_to(o, origin, conn, json_error(503, 0, "store unavailable")),
            };
            match r {
                Ok(()) => {
                    m.pending.insert(token, mk(origin, conn));
                }
                Err(e) => reply_to(o, origin, conn, json_error(400, 50035, &e.to_string())),
            }
        },
    );
}

/// `GET /channels/{c}/messages`.
pub fn history(ctx: &mut ShardCtx, conn: ConnRef, req: &Request, actor: u64, c: u64) -> Routed {
    let g = match guild_of(ctx, c) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let q = match history_query(c, &req.query) {
        Ok(q) => q,
        Err(resp) => return Routed::Now(resp),
    };
    query_on_owner(
        ctx,
        Access {
            guild: g,
            channel: c,
            actor,
            need: perms::READ_MESSAGE_HISTORY,
        },
        q,
        move |origin, conn| Pending::History {
            origin,
            conn,
            guild: g,
            single: false,
        },
        conn,
    );
    Routed::Later
}

/// `GET /channels/{c}/messages/{m}`.
pub fn get_one(ctx: &mut ShardCtx, conn: ConnRef, actor: u64, c: u64, id: u64) -> Routed {
    let g = match guild_of(ctx, c) {
        Ok(g) => g,
        Err(r) => return r,
    };
    query_on_owner(
        ctx,
        Access {
            guild: g,
            channel: c,
            actor,
            need: perms::READ_MESSAGE_HISTORY,
        },
        Query::ById {
            channel_id: c,
            message_id: id,
        },
        move |origin, conn| Pending::History {
            origin,
            conn,
            guild: g,
            single: true,
        },
        conn,
    );
    Routed::Later
}

/// `PATCH /channels/{c}/messages/{m}`: only the author may change the content.
pub fn edit(
    ctx: &mut ShardCtx,
    conn: ConnRef,
    req: &Request,
    actor: u64,
    c: u64,
    id: u64,
) -> Routed {
    let g = match guild_of(ctx, c) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let Ok(body) = serde_json::from_slice::<EditBody>(&req.body) else {
        return Routed::Now(json_error(
            400,
            50109,
            "The request body contains invalid JSON.",
        ));
    };
    let content = body.content.unwrap_or_default();
    if content.chars().count() > CONTENT_CHARS_MAX {
        return Routed::Now(json_error(400, 50035, "Invalid Form Body"));
    }
    query_on_owner(
        ctx,
        Access {
            guild: g,
            channel: c,
            actor,
            need: 0,
        },
        Query::ById {
            channel_id: c,
            message_id: id,
        },
        move |origin, conn| Pending::EditLookup {
            origin,
            conn,
            actor,
            content,
        },
        conn,
    );
    Routed::Later
}

/// `DELETE /channels/{c}/messages/{m}`: the author, or MANAGE_MESSAGES.
pub fn delete(ctx: &mut ShardCtx, conn: ConnRef, actor: u64, c: u64, id: u64) -> Routed {
    let g = match guild_of(ctx, c) {
        Ok(g) => g,
        Err(r) => return r,
    };
    query_on_owner(
        ctx,
        Access {
            guild: g,
            channel: c,
            actor,
            need: 0,
        },
        Query::ById {
            channel_id: c,
            message_id: id,
        },
        move |origin, conn| Pending::DeleteLookup {
            origin,
            conn,
            actor,
        },
        conn,
    );
    Routed::Later
}

/// Handles what the store reported (called by the shard after each turn's completions).
pub fn on_store_event(ctx: &mut ShardCtx, ev: Event) {
    match ev {
        Event::Acked { token } => on_acked(ctx, token),
        Event::Failed { token, error } => {
            if let Some(p) = ctx.app.messages.pending.remove(&token) {
                let (origin, conn) = pending_origin(&p);
                tracing::warn!(%error, "message store write failed");
                reply_to(ctx, origin, conn, json_error(500, 0, "write failed"));
            }
        }
        Event::QueryDone { token, result } => on_query(ctx, token, result),
        Event::Error(e) => tracing::error!(error = %e, "message store"),
        Event::Opened { replayed } => tracing::info!(replayed, "message store open"),
        Event::Flushed { .. } | Event::Compacted { .. } => {}
    }
}

fn pending_origin(p: &Pending) -> (usize, ConnRef) {
    match p {
        Pending::Create { origin, conn, .. }
        | Pending::Update { origin, conn, .. }
        | Pending::Delete { origin, conn, .. }
        | Pending::EditLookup { origin, conn, .. }
        | Pending::DeleteLookup { origin, conn, .. }
        | Pending::History { origin, conn, .. } => (*origin, *conn),
    }
}

fn on_acked(ctx: &mut ShardCtx, token: u64) {
    let Some(p) = ctx.app.messages.pending.remove(&token) else {
        return;
    };
    match p {
        Pending::Create {
            origin,
            conn,
            msg,
            nonce,
        } => {
            let Some(e) = ctx.app.guilds.by_id.get_mut(&msg.guild_id) else {
                return reply_to(ctx, origin, conn, json_error(404, 10004, "Unknown Guild"));
            };
            let _ = e.guild.note_message(msg.channel_id, msg.id);
            let d = message_value(&e.guild, &msg, nonce.as_ref());
            fan_out_message(ctx, msg.guild_id, msg.channel_id, "MESSAGE_CREATE", &d);
            reply_to(ctx, origin, conn, Response::json(200, d.to_string()));
        }
        Pending::Update { origin, conn, msg } => {
            let Some(e) = ctx.app.guilds.by_id.get(&msg.guild_id) else {
                return reply_to(ctx, origin, conn, json_error(404, 10004, "Unknown Guild"));
            };
            let d = message_value(&e.guild, &msg, None);
            fan_out_message(ctx, msg.guild_id, msg.channel_id, "MESSAGE_UPDATE", &d);
            reply_to(ctx, origin, conn, Response::json(200, d.to_string()));
        }
        Pending::Delete {
            origin,
            conn,
            guild,
            channel,
            id,
        } => {
            let d = json!({"id": id.to_string(), "channel_id": channel.to_string(),
                "guild_id": guild.to_string()});
            fan_out_message(ctx, guild, channel, "MESSAGE_DELETE", &d);
            reply_to(
                ctx,
                origin,
                conn,
                Response::new(204, "application/json", ""),
            );
        }
        other => {
            let (origin, conn) = pending_origin(&other);
            reply_to(ctx, origin, conn, json_error(500, 0, "unexpected ack"));
        }
    }
}

fn on_query(ctx: &mut ShardCtx, token: u64, result: Result<QueryResult, msgstore::StoreError>) {
    let Some(p) = ctx.app.messages.pending.remove(&token) else {
        return;
    };
    let (origin, conn) = pending_origin(&p);
    let result = match result {
        Ok(r) => r,
        Err(e) => return reply_to(ctx, origin, conn, json_error(500, 0, &e.to_string())),
    };
    match (p, result) {
        (
            Pending::History {
                guild,
                single: false,
                ..
            },
            QueryResult::Messages(list),
        ) => {
            let Some(e) = ctx.app.guilds.by_id.get(&guild) else {
                return reply_to(ctx, origin, conn, json_error(404, 10004, "Unknown Guild"));
            };
            let v: Vec<Value> = list
                .iter()
                .map(|m| message_value(&e.guild, m, None))
                .collect();
            reply_to(
                ctx,
                origin,
                conn,
                Response::json(200, Value::Array(v).to_string()),
            );
        }
        (Pending::History { guild, .. }, QueryResult::Message(m)) => {
            let resp = match (ctx.app.guilds.by_id.get(&guild), m) {
                (Some(e), Some(m)) => {
                    Response::json(200, message_value(&e.guild, &m, None).to_string())
                }
                _ => json_error(404, 10008, "Unknown Message"),
            };
            reply_to(ctx, origin, conn, resp);
        }
        (Pending::EditLookup { actor, content, .. }, QueryResult::Message(m)) => {
            let Some(mut m) = m else {
                return reply_to(ctx, origin, conn, json_error(404, 10008, "Unknown Message"));
            };
            if m.author_id != actor {
                return reply_to(
                    ctx,
                    origin,
                    conn,
                    json_error(403, 50005, "Cannot edit a message authored by another user"),
                );
            }
            m.content = content;
            m.edited_timestamp_ms = Some(ctx.wall_ms);
            write_version(ctx, origin, conn, m);
        }
        (Pending::DeleteLookup { actor, .. }, QueryResult::Message(m)) => {
            let Some(m) = m else {
                return reply_to(ctx, origin, conn, json_error(404, 10008, "Unknown Message"));
            };
            let may = m.author_id == actor
                || ctx.app.guilds.by_id.get(&m.guild_id).is_some_and(|e| {
                    e.guild.permissions(actor, m.channel_id) & perms::MANAGE_MESSAGES != 0
                });
            if !may {
                return reply_to(
                    ctx,
                    origin,
                    conn,
                    json_error(403, 50013, "Missing Permissions"),
                );
            }
            let now = ctx.wall_ms;
            let msgs = &mut ctx.app.messages;
            let token = msgs.token();
            let r = match msgs.store.as_mut() {
                Some(s) => s.delete(token, m.channel_id, m.id, now),
                None => {
                    return reply_to(ctx, origin, conn, json_error(503, 0, "store unavailable"));
                }
            };
            match r {
                Ok(()) => {
                    msgs.pending.insert(
                        token,
                        Pending::Delete {
                            origin,
                            conn,
                            guild: m.guild_id,
                            channel: m.channel_id,
                            id: m.id,
                        },
                    );
                }
                Err(e) => reply_to(ctx, origin, conn, json_error(500, 0, &e.to_string())),
            }
        }
        _ => reply_to(
            ctx,
            origin,
            conn,
            json_error(500, 0, "unexpected query result"),
        ),
    }
}

fn write_version(ctx: &mut ShardCtx, origin: usize, conn: ConnRef, m: Message) {
    let msgs = &mut ctx.app.messages;
    let token = msgs.token();
    let r = match msgs.store.as_mut() {
        Some(s) => s.edit(token, m.clone()),
        None => return reply_to(ctx, origin, conn, json_error(503, 0, "store unavailable")),
    };
    match r {
        Ok(()) => {
            msgs.pending.insert(
                token,
                Pending::Update {
                    origin,
                    conn,
                    msg: m,
                },
            );
        }
        Err(e) => reply_to(ctx, origin, conn, json_error(500, 0, &e.to_string())),
    }
}

/// The user object of a member, for callers building other shapes.
pub fn member_user_json(guild: &Guild, user: u64) -> Option<Value> {
    guild.member(user).map(|m| {
        let mut v = partial_member_json(m);
        v["user"] = user_json(&m.user);
        v
    })
}
