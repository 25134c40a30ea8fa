//! The message path (DESIGN.md "Message path"): a REST request on any shard goes to the guild's
//! owner shard, which checks permissions (and slowmode), assigns the Snowflake, appends to its
//! message-store shard, and only once the append is durable answers the requesting shard and fans
//! the event out (serialized once; sessions without MESSAGE_CONTENT get a copy with the content
//! emptied) to the sessions allowed to view the channel.
//!
//! Reads (history, one message, pins, who reacted) are store queries on the owner shard, answered
//! when the store reports them done.
//!
//! Changes to existing messages (edit, delete, pin, reactions, bulk delete) read the current
//! version and write a whole new one (or a tombstone). Two of them racing on one message would
//! lose a write, and a reaction written after a delete would bring the message back (the newest
//! version wins), so they are serialized per channel: each channel has a queue on the owner
//! shard, and only its front change is between its read and its durable write. Sends are not
//! queued (a new message has a new id).
//!
//! What a stored message keeps besides the store's own fields goes into `extra_json`: embeds, the
//! tts flag, role and @everyone mentions, and who reacted with each emoji (the store's
//! `reactions` field keeps the counts). Its size bound (`msgstore::limits::EXTRA_JSON_BYTES_MAX`)
//! bounds the reactors a message can hold: past it a reaction is refused with 30010.
//!
//! Not done: `allowed_mentions` (every mention in the content is listed), replies
//! (`message_reference` is accepted and ignored), `enforce_nonce`, attachments.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use gateway_core::gateway::SharedEvent;
use gateway_core::gateway::intents::{self, Scope};
use gateway_core::guild::json::{member_json, user_json};
use gateway_core::guild::{
    Audience, Guild, GuildEvent, MessageView, UserInfo, message_json, perms,
};
use msgstore::limits::{EXTRA_JSON_BYTES_MAX, MENTIONS_MAX, NONCE_BYTES_MAX, REACTIONS_MAX};
use msgstore::{Event, Message, Query, QueryResult, ReadState, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::app::owner_shard;
use crate::ctx::ShardCtx;
use crate::http::Response;
use crate::rest::{
    Ack, ApiError, CreateMessage, EditMessage, FLAG_SUPPRESS_EMBEDS, ListMessagesQuery,
    ListReactionsQuery, MessageAnchor, Nonce, Patch,
};
use crate::rest_handlers::Reply;
use crate::shard::Routed;

/// Most writes and queries a shard keeps waiting for the store (beyond: 503).
pub const STORE_PENDING_MAX: usize = 65_536;
/// Most pinned messages per channel (Discord's limit).
pub const PINS_PER_CHANNEL_MAX: usize = 50;
/// Most changes waiting in one channel's queue (beyond: 503, the client retries).
pub const MUTATIONS_QUEUED_PER_CHANNEL_MAX: usize = 1024;
/// Most (channel, user) slowmode deadlines kept per shard; when full, expired ones are dropped
/// and, if none expired, all are (slowmode fails open rather than growing memory).
pub const SLOWMODE_ENTRIES_MAX: usize = 65_536;
/// Message type of a plain message (Discord's `DEFAULT`).
const MESSAGE_KIND_DEFAULT: u8 = 0;

// The pins query answers at most the store's cap: counting against our cap needs it to be lower.
const _: () = assert!(PINS_PER_CHANNEL_MAX <= msgstore::limits::PINS_MAX);

/// A change to an existing message (or to several, for bulk delete).
#[derive(Debug)]
pub enum MessageOp {
    /// New content, embeds or flags (author only).
    Edit {
        /// The message.
        id: u64,
        /// What changes.
        body: Box<EditMessage>,
    },
    /// Delete (author, or MANAGE_MESSAGES).
    Delete {
        /// The message.
        id: u64,
    },
    /// Pin (PIN_MESSAGES or MANAGE_MESSAGES).
    Pin {
        /// The message.
        id: u64,
    },
    /// Unpin.
    Unpin {
        /// The message.
        id: u64,
    },
    /// Add the actor's reaction.
    React {
        /// The message.
        id: u64,
        /// A Unicode emoji.
        emoji: String,
    },
    /// Remove a user's reaction (another user's: MANAGE_MESSAGES).
    Unreact {
        /// The message.
        id: u64,
        /// A Unicode emoji.
        emoji: String,
        /// Whose reaction.
        user: u64,
    },
    /// Remove every reaction with an emoji.
    ClearEmoji {
        /// The message.
        id: u64,
        /// A Unicode emoji.
        emoji: String,
    },
    /// Remove every reaction.
    ClearAll {
        /// The message.
        id: u64,
    },
    /// Delete many messages (ids not in the channel are ignored, as on Discord).
    Bulk {
        /// The messages.
        ids: Vec<u64>,
    },
}

impl MessageOp {
    /// The message read before writing (none for bulk delete, which writes tombstones only).
    fn target(&self) -> Option<u64> {
        match self {
            MessageOp::Edit { id, .. }
            | MessageOp::Delete { id }
            | MessageOp::Pin { id }
            | MessageOp::Unpin { id }
            | MessageOp::React { id, .. }
            | MessageOp::Unreact { id, .. }
            | MessageOp::ClearEmoji { id, .. }
            | MessageOp::ClearAll { id } => Some(*id),
            MessageOp::Bulk { .. } => None,
        }
    }

    /// Permission bits checked before reading: `Ok(bits)` all needed, `Err(bits)` any of them.
    fn needs(&self, actor: u64) -> Result<u64, u64> {
        match self {
            MessageOp::Edit { .. } | MessageOp::Delete { .. } => Ok(0),
            MessageOp::Pin { .. } | MessageOp::Unpin { .. } => {
                Err(perms::PIN_MESSAGES | perms::MANAGE_MESSAGES)
            }
            MessageOp::React { .. } => Ok(perms::READ_MESSAGE_HISTORY),
            MessageOp::Unreact { user, .. } if *user == actor => Ok(0),
            MessageOp::Unreact { .. }
            | MessageOp::ClearEmoji { .. }
            | MessageOp::ClearAll { .. }
            | MessageOp::Bulk { .. } => Ok(perms::MANAGE_MESSAGES),
        }
    }
}

/// Where a queued change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting in the queue.
    Queued,
    /// Counting pins (pin only).
    CountPins,
    /// Reading the message.
    Lookup,
    /// Writing; `writes_left` acknowledgements to go.
    Write,
}

/// An event to send once a change is durable.
#[derive(Debug)]
enum Outgoing {
    /// A message event: sessions without MESSAGE_CONTENT get it without content.
    Message(&'static str, Value),
    /// Any other event for the channel's viewers.
    Channel(&'static str, Value),
}

/// What a change does once durable: events, then the answer.
#[derive(Debug)]
struct Finish {
    events: Vec<Outgoing>,
    resp: Response,
}

/// A queued change of a channel's messages.
#[derive(Debug)]
struct Mutation {
    reply: Option<Reply>,
    actor: u64,
    guild: u64,
    channel: u64,
    op: MessageOp,
    stage: Stage,
    writes_left: usize,
    failed: bool,
    finish: Option<Finish>,
}

/// What a pending store operation answers once done.
#[derive(Debug)]
enum Pending {
    Create {
        reply: Reply,
        msg: Message,
        nonce: Option<Value>,
    },
    Read {
        reply: Reply,
        guild: u64,
        actor: u64,
    },
    Reactors {
        reply: Reply,
        guild: u64,
        emoji: String,
        after: u64,
        limit: usize,
    },
    Ack {
        reply: Reply,
    },
    /// A read or write of the front change of this channel's queue.
    Mutation {
        channel: u64,
    },
}

impl Pending {
    fn into_reply(self) -> Option<Reply> {
        match self {
            Pending::Create { reply, .. }
            | Pending::Read { reply, .. }
            | Pending::Reactors { reply, .. }
            | Pending::Ack { reply } => Some(reply),
            Pending::Mutation { .. } => None,
        }
    }
}

/// The message-store side of a shard's application state.
#[derive(Default)]
pub struct Messages {
    /// The store of this shard (None until the node gives it one).
    pub store: Option<msgstore::Store>,
    pending: HashMap<u64, Pending>,
    next_token: u64,
    /// Per channel: changes in order; the front one is in flight.
    mutations: HashMap<u64, VecDeque<Mutation>>,
    /// (channel, user) -> when the user may send again (wall ms).
    slowmode: HashMap<(u64, u64), u64>,
}

impl std::fmt::Debug for Messages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messages")
            .field("store", &self.store.is_some())
            .field("pending", &self.pending.len())
            .field("channels_changing", &self.mutations.len())
            .finish()
    }
}

fn store_error(e: &StoreError) -> ApiError {
    match e {
        StoreError::Limit(l) => {
            ApiError::invalid_field("content", "BASE_TYPE_MAX_LENGTH", l.to_string())
        }
        StoreError::NotOpen | StoreError::Backpressure => ApiError::unavailable(),
        _ => ApiError::internal(),
    }
}

impl Messages {
    /// Starts a store operation for `pending`; on refusal gives it back with the error.
    fn submit(
        &mut self,
        pending: Pending,
        op: impl FnOnce(&mut msgstore::Store, u64) -> Result<(), StoreError>,
    ) -> Result<(), Box<(Pending, ApiError)>> {
        if self.pending.len() >= STORE_PENDING_MAX {
            return Err(Box::new((pending, ApiError::unavailable())));
        }
        let Some(store) = self.store.as_mut() else {
            return Err(Box::new((pending, ApiError::unavailable())));
        };
        self.next_token = self.next_token.wrapping_add(1);
        let token = self.next_token;
        match op(store, token) {
            Ok(()) => {
                self.pending.insert(token, pending);
                Ok(())
            }
            Err(e) => Err(Box::new((pending, store_error(&e)))),
        }
    }
}

/// Submits, answering the request with the error when the store refuses.
fn submit_or_answer(
    ctx: &mut ShardCtx,
    pending: Pending,
    op: impl FnOnce(&mut msgstore::Store, u64) -> Result<(), StoreError>,
) {
    if let Err(refused) = ctx.app.messages.submit(pending, op) {
        let (p, e) = *refused;
        if let Some(reply) = p.into_reply() {
            reply.error(ctx, e);
        }
    }
}

/// What `extra_json` holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Extra {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    embeds: Vec<Value>,
    #[serde(default, skip_serializing_if = "is_false")]
    tts: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    mention_everyone: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    mention_roles: Vec<u64>,
    /// Who reacted with each emoji, in reaction order (the counts are `Message::reactions`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    reactors: BTreeMap<String, Vec<u64>>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Extra {
    fn of(m: &Message) -> Extra {
        if m.extra_json.is_empty() {
            return Extra::default();
        }
        // Written by this module only; an unreadable one (never expected) renders as empty.
        serde_json::from_slice(&m.extra_json).unwrap_or_default()
    }

    /// Stores `self` into `m`; refuses what would not fit the store's bound.
    fn store_into(&self, m: &mut Message) -> Result<(), ApiError> {
        let bytes = serde_json::to_vec(self).map_err(|_| ApiError::internal())?;
        if bytes.len() > EXTRA_JSON_BYTES_MAX {
            return Err(ApiError::max_reactions(REACTIONS_MAX));
        }
        m.extra_json = if bytes == b"{}" { Vec::new() } else { bytes };
        Ok(())
    }
}

fn author_of(guild: &Guild, author: u64) -> UserInfo {
    guild
        .member(author)
        .map(|m| m.user.clone())
        .unwrap_or_else(|| UserInfo::new(author, "Deleted User"))
}

/// The message object of a stored message; `viewer` sets each reaction's `me` (None: the
/// shared copy of an event, where `me` is false).
fn message_value(guild: &Guild, m: &Message, nonce: Option<&Value>, viewer: Option<u64>) -> Value {
    let extra = Extra::of(m);
    let author = author_of(guild, m.author_id);
    let mentions: Vec<UserInfo> = m
        .mentions
        .iter()
        .filter_map(|u| guild.member(*u).map(|x| x.user.clone()))
        .collect();
    let reactions: Vec<Value> = m
        .reactions
        .iter()
        .map(|(emoji, count)| {
            let me = viewer.is_some_and(|v| {
                extra
                    .reactors
                    .get(emoji)
                    .is_some_and(|users| users.contains(&v))
            });
            json!({
                "count": count,
                "count_details": {"burst": 0, "normal": count},
                "me": me,
                "me_burst": false,
                "emoji": {"id": null, "name": emoji},
                "burst_colors": [],
            })
        })
        .collect();
    let mut view = MessageView::new(m.id, m.channel_id, Some(m.guild_id), &author, &m.content);
    view.member = guild.member(m.author_id);
    view.pinned = m.pinned;
    view.edited_at_ms = m.edited_timestamp_ms;
    view.flags = m.flags;
    view.kind = m.kind;
    view.nonce = nonce;
    view.tts = extra.tts;
    view.embeds = &extra.embeds;
    view.mentions = &mentions;
    view.mention_roles = &extra.mention_roles;
    view.mention_everyone = extra.mention_everyone;
    view.reactions = &reactions;
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

fn send_events(ctx: &mut ShardCtx, g: u64, channel: u64, events: Vec<Outgoing>) {
    let mut others = Vec::new();
    for ev in events {
        match ev {
            Outgoing::Message(name, d) => fan_out_message(ctx, g, channel, name, &d),
            Outgoing::Channel(name, data) => others.push(GuildEvent {
                name,
                data,
                audience: Audience::Channel(channel),
            }),
        }
    }
    crate::guilds::fan_out(ctx, g, &others);
}

/// The guild of `g`, owned here, if `user` may see text channel `c` and holds `need` there.
fn check(ctx: &ShardCtx, g: u64, c: u64, user: u64, need: u64) -> Result<&Guild, ApiError> {
    let e = ctx
        .app
        .guilds
        .by_id
        .get(&g)
        .ok_or_else(ApiError::unknown_guild)?;
    if !e.guild.is_member(user) {
        return Err(ApiError::missing_access());
    }
    let ch = e.guild.channel(c).ok_or_else(ApiError::unknown_channel)?;
    let p = e.guild.permissions(user, c);
    if p & perms::VIEW_CHANNEL == 0 {
        return Err(ApiError::missing_access());
    }
    if !ch.kind.is_text() {
        return Err(ApiError::non_text_channel());
    }
    if p & need != need {
        return Err(ApiError::missing_permissions());
    }
    Ok(&e.guild)
}

/// Runs `f` on the owner of channel `c`'s guild (404 10003 when no guild has the channel).
fn on_channel_owner(
    ctx: &mut ShardCtx,
    reply: Reply,
    c: u64,
    f: impl FnOnce(&mut ShardCtx, Reply, u64) + Send + 'static,
) -> Routed {
    let Some(&g) = ctx.app.channel_guild.get(&c) else {
        return reply.now_err(ApiError::unknown_channel());
    };
    ctx.invoke_on_reliably(owner_shard(g, ctx.shards()), move |o: &mut ShardCtx| {
        f(o, reply, g)
    });
    Routed::Later
}

/// Users, roles and @everyone mentioned in `content`: `<@id>`, `<@!id>` of members (at most the
/// store's bound), `<@&id>` of roles, and `@everyone`/`@here` when `everyone_allowed`.
fn parse_mentions(
    guild: &Guild,
    content: &str,
    everyone_allowed: bool,
) -> (Vec<u64>, Vec<u64>, bool) {
    let (mut users, mut roles) = (Vec::new(), Vec::new());
    for part in content.split("<@").skip(1) {
        let Some((inner, _)) = part.split_once('>') else {
            continue;
        };
        if let Some(r) = inner.strip_prefix('&') {
            if let Ok(id) = r.parse::<u64>()
                && guild.role(id).is_some()
                && !roles.contains(&id)
                && roles.len() < MENTIONS_MAX
            {
                roles.push(id);
            }
        } else if let Ok(id) = inner.trim_start_matches('!').parse::<u64>()
            && guild.is_member(id)
            && !users.contains(&id)
            && users.len() < MENTIONS_MAX
        {
            users.push(id);
        }
    }
    let everyone = everyone_allowed && (content.contains("@everyone") || content.contains("@here"));
    (users, roles, everyone)
}

/// `POST /channels/{c}/messages` as `actor`.
pub fn create(ctx: &mut ShardCtx, reply: Reply, actor: u64, c: u64, body: CreateMessage) -> Routed {
    on_channel_owner(ctx, reply, c, move |o, reply, g| {
        let now = o.wall_ms;
        let prepared = (|| {
            let guild = check(o, g, c, actor, perms::SEND_MESSAGES)?;
            let held = guild.permissions(actor, c);
            let slow_s = guild.channel(c).map_or(0, |ch| ch.rate_limit_per_user);
            let bypass = perms::BYPASS_SLOWMODE | perms::MANAGE_MESSAGES | perms::MANAGE_CHANNELS;
            let slow = (slow_s > 0 && held & bypass == 0).then_some(u64::from(slow_s) * 1000);
            let (mentions, mention_roles, mention_everyone) =
                parse_mentions(guild, &body.content, held & perms::MENTION_EVERYONE != 0);
            let extra = Extra {
                embeds: body
                    .embeds
                    .iter()
                    .filter_map(|e| serde_json::to_value(e).ok())
                    .collect(),
                tts: body.tts && held & perms::SEND_TTS_MESSAGES != 0,
                mention_everyone,
                mention_roles,
                reactors: BTreeMap::new(),
            };
            Ok::<_, ApiError>((slow, mentions, extra))
        })();
        let (slow, mentions, extra) = match prepared {
            Ok(x) => x,
            Err(e) => return reply.error(o, e),
        };
        if let Some(window_ms) = slow
            && let Err(e) = slowmode(&mut o.app.messages.slowmode, c, actor, now, window_ms)
        {
            return reply.error(o, e);
        }
        let mut msg = Message {
            id: o.app.ids.next(now),
            channel_id: c,
            guild_id: g,
            author_id: actor,
            kind: MESSAGE_KIND_DEFAULT,
            content: body.content,
            flags: body.flags,
            mentions,
            nonce: match &body.nonce {
                Some(Nonce::Str(s)) if s.len() <= NONCE_BYTES_MAX => Some(s.clone()),
                Some(Nonce::Int(i)) => Some(i.to_string()),
                _ => None,
            },
            ..Message::default()
        };
        if extra.store_into(&mut msg).is_err() {
            // Embeds too large for the store's record.
            return reply.error(
                o,
                ApiError::invalid_field("embeds", "BASE_TYPE_MAX_LENGTH", "Embeds too large."),
            );
        }
        let nonce = body.nonce.and_then(|n| serde_json::to_value(n).ok());
        let m2 = msg.clone();
        submit_or_answer(o, Pending::Create { reply, msg, nonce }, |s, t| {
            s.append(t, m2)
        });
    })
}

/// Admits a send under slowmode, or answers how long to wait.
fn slowmode(
    map: &mut HashMap<(u64, u64), u64>,
    c: u64,
    user: u64,
    now: u64,
    window_ms: u64,
) -> Result<(), ApiError> {
    if let Some(&until) = map.get(&(c, user))
        && until > now
    {
        return Err(ApiError::slowmode(until - now));
    }
    if map.len() >= SLOWMODE_ENTRIES_MAX {
        map.retain(|_, until| *until > now);
        if map.len() >= SLOWMODE_ENTRIES_MAX {
            map.clear();
        }
    }
    map.insert((c, user), now.saturating_add(window_ms));
    Ok(())
}

/// Submits a read of channel `c` as `actor` (VIEW_CHANNEL and READ_MESSAGE_HISTORY).
fn read(ctx: &mut ShardCtx, reply: Reply, actor: u64, c: u64, q: Query) -> Routed {
    on_channel_owner(ctx, reply, c, move |o, reply, g| {
        if let Err(e) = check(o, g, c, actor, perms::READ_MESSAGE_HISTORY) {
            return reply.error(o, e);
        }
        let p = Pending::Read {
            reply,
            guild: g,
            actor,
        };
        submit_or_answer(o, p, |s, t| s.query(t, q));
    })
}

/// `GET /channels/{c}/messages`.
pub fn list(ctx: &mut ShardCtx, reply: Reply, actor: u64, c: u64, q: ListMessagesQuery) -> Routed {
    let limit = q.limit as usize;
    let query = match q.anchor {
        None => Query::Latest {
            channel_id: c,
            limit,
        },
        Some(MessageAnchor::Before(id)) => Query::Before {
            channel_id: c,
            before: id,
            limit,
        },
        Some(MessageAnchor::After(id)) => Query::After {
            channel_id: c,
            after: id,
            limit,
        },
        Some(MessageAnchor::Around(id)) => Query::Around {
            channel_id: c,
            around: id,
            limit,
        },
    };
    read(ctx, reply, actor, c, query)
}

/// `GET /channels/{c}/messages/{m}`.
pub fn get_one(ctx: &mut ShardCtx, reply: Reply, actor: u64, c: u64, id: u64) -> Routed {
    let q = Query::ById {
        channel_id: c,
        message_id: id,
    };
    read(ctx, reply, actor, c, q)
}

/// `GET /channels/{c}/pins`.
pub fn list_pins(ctx: &mut ShardCtx, reply: Reply, actor: u64, c: u64) -> Routed {
    read(ctx, reply, actor, c, Query::Pins { channel_id: c })
}

/// `GET .../reactions/{emoji}`: the users who reacted, in user id order.
pub fn list_reactions(
    ctx: &mut ShardCtx,
    reply: Reply,
    actor: u64,
    c: u64,
    id: u64,
    emoji: String,
    q: ListReactionsQuery,
) -> Routed {
    if q.burst {
        // No super reactions exist here.
        return reply.now(Response::json(200, "[]"));
    }
    on_channel_owner(ctx, reply, c, move |o, reply, g| {
        if let Err(e) = check(o, g, c, actor, perms::READ_MESSAGE_HISTORY) {
            return reply.error(o, e);
        }
        let p = Pending::Reactors {
            reply,
            guild: g,
            emoji,
            after: q.after.unwrap_or(0),
            limit: q.limit as usize,
        };
        let q = Query::ById {
            channel_id: c,
            message_id: id,
        };
        submit_or_answer(o, p, |s, t| s.query(t, q));
    })
}

/// `POST /channels/{c}/messages/{m}/ack`: stores the read state, answers `{"token": null}`.
pub fn ack(ctx: &mut ShardCtx, reply: Reply, actor: u64, c: u64, id: u64, body: Ack) -> Routed {
    on_channel_owner(ctx, reply, c, move |o, reply, g| {
        if let Err(e) = check(o, g, c, actor, 0) {
            return reply.error(o, e);
        }
        let state = ReadState {
            user_id: actor,
            channel_id: c,
            last_read_id: id,
            mention_count: if body.manual {
                body.mention_count.unwrap_or(0)
            } else {
                0
            },
        };
        submit_or_answer(o, Pending::Ack { reply }, |s, t| s.ack_read(t, state));
    })
}

/// A change to messages of channel `c`: queued behind the channel's other changes.
pub fn mutate(ctx: &mut ShardCtx, reply: Reply, actor: u64, c: u64, op: MessageOp) -> Routed {
    on_channel_owner(ctx, reply, c, move |o, reply, g| {
        let q = o.app.messages.mutations.entry(c).or_default();
        if q.len() >= MUTATIONS_QUEUED_PER_CHANNEL_MAX {
            return reply.error(o, ApiError::unavailable());
        }
        q.push_back(Mutation {
            reply: Some(reply),
            actor,
            guild: g,
            channel: c,
            op,
            stage: Stage::Queued,
            writes_left: 0,
            failed: false,
            finish: None,
        });
        if q.len() == 1 {
            start_next(o, c);
        }
    })
}

/// Answers the front change of channel `c` and starts the ones behind it.
fn finish_front(ctx: &mut ShardCtx, c: u64, resp: Response) {
    let front = ctx
        .app
        .messages
        .mutations
        .get_mut(&c)
        .and_then(VecDeque::pop_front);
    if let Some(reply) = front.and_then(|mut m| m.reply.take()) {
        reply.send(ctx, resp);
    }
    start_next(ctx, c);
}

/// Starts changes of channel `c` until one is in flight or the queue is empty.
fn start_next(ctx: &mut ShardCtx, c: u64) {
    loop {
        let Some(m) = ctx.app.messages.mutations.get(&c).and_then(VecDeque::front) else {
            ctx.app.messages.mutations.remove(&c);
            return;
        };
        let (actor, g, need, target) = (m.actor, m.guild, m.op.needs(m.actor), m.op.target());
        let allowed = check(ctx, g, c, actor, 0).and_then(|guild| {
            let held = guild.permissions(actor, c);
            match need {
                Ok(all) if held & all == all => Ok(()),
                Err(any) if held & any != 0 => Ok(()),
                _ => Err(ApiError::missing_permissions()),
            }
        });
        let started = match (&m.op, target) {
            _ if allowed.is_err() => allowed,
            (MessageOp::Bulk { ids }, _) => {
                let ids = ids.clone();
                write_tombstones(ctx, c, &ids)
            }
            (MessageOp::Pin { .. }, _) => {
                query_front(ctx, c, Stage::CountPins, Query::Pins { channel_id: c })
            }
            (_, Some(id)) => query_front(
                ctx,
                c,
                Stage::Lookup,
                Query::ById {
                    channel_id: c,
                    message_id: id,
                },
            ),
            (_, None) => Err(ApiError::internal()),
        };
        match started {
            Ok(()) => return,
            Err(e) => {
                let front = ctx
                    .app
                    .messages
                    .mutations
                    .get_mut(&c)
                    .and_then(VecDeque::pop_front);
                if let Some(reply) = front.and_then(|mut m| m.reply.take()) {
                    reply.error(ctx, e);
                }
            }
        }
    }
}

fn front_mut(ctx: &mut ShardCtx, c: u64) -> Option<&mut Mutation> {
    ctx.app
        .messages
        .mutations
        .get_mut(&c)
        .and_then(VecDeque::front_mut)
}

fn query_front(ctx: &mut ShardCtx, c: u64, stage: Stage, q: Query) -> Result<(), ApiError> {
    ctx.app
        .messages
        .submit(Pending::Mutation { channel: c }, |s, t| s.query(t, q))
        .map_err(|refused| refused.1)?;
    if let Some(m) = front_mut(ctx, c) {
        m.stage = stage;
    }
    Ok(())
}

fn write_tombstones(ctx: &mut ShardCtx, c: u64, ids: &[u64]) -> Result<(), ApiError> {
    let now = ctx.wall_ms;
    let mut written = 0;
    for &id in ids {
        match ctx
            .app
            .messages
            .submit(Pending::Mutation { channel: c }, |s, t| {
                s.delete(t, c, id, now)
            }) {
            Ok(()) => written += 1,
            // Tombstones already submitted will be acknowledged; the change then fails.
            Err(refused) if written == 0 => return Err(refused.1),
            Err(_) => {
                if let Some(m) = front_mut(ctx, c) {
                    m.failed = true;
                }
                break;
            }
        }
    }
    let g = front_mut(ctx, c).map_or(0, |m| m.guild);
    if let Some(m) = front_mut(ctx, c) {
        m.stage = Stage::Write;
        m.writes_left = written;
        m.finish = Some(Finish {
            events: vec![Outgoing::Message(
                "MESSAGE_DELETE_BULK",
                json!({
                    "ids": ids.iter().map(u64::to_string).collect::<Vec<_>>(),
                    "channel_id": c.to_string(),
                    "guild_id": g.to_string(),
                }),
            )],
            resp: Response::new(204, "application/json", ""),
        });
    }
    Ok(())
}

/// A reaction event's `d`.
fn reaction_data(guild: &Guild, m: &Message, emoji: &str, user: Option<u64>) -> Value {
    let mut d = json!({
        "channel_id": m.channel_id.to_string(),
        "message_id": m.id.to_string(),
        "guild_id": m.guild_id.to_string(),
        "emoji": {"id": null, "name": emoji},
    });
    if let Some(u) = user {
        d["user_id"] = Value::String(u.to_string());
        d["burst"] = json!(false);
        d["type"] = json!(0);
        d["message_author_id"] = Value::String(m.author_id.to_string());
        if let Some(member) = guild.member(u) {
            d["member"] = member_json(member);
        }
    }
    d
}

/// A store write to submit.
type StoreWrite = Box<dyn FnOnce(&mut msgstore::Store, u64) -> Result<(), StoreError>>;

/// What a change does to the message it read: write a new version or a tombstone (with what to
/// send once durable), or answer now.
enum Step {
    Write(Message, Finish),
    Tombstone(Finish),
    Answer(Response),
}

fn no_content() -> Response {
    Response::new(204, "application/json", "")
}

/// Applies the front change of a channel to the message read.
fn apply(ctx: &ShardCtx, m: &Mutation, mut msg: Message) -> Result<Step, ApiError> {
    let guild = &ctx
        .app
        .guilds
        .by_id
        .get(&m.guild)
        .ok_or_else(ApiError::unknown_guild)?
        .guild;
    let c = m.channel;
    let held = guild.permissions(m.actor, c);
    let mut extra = Extra::of(&msg);
    let update = |msg: &Message, viewer: u64| {
        (
            message_value(guild, msg, None, None),
            message_value(guild, msg, None, Some(viewer)),
        )
    };
    match &m.op {
        MessageOp::Edit { body, .. } => {
            if msg.author_id != m.actor {
                return Err(ApiError::new(
                    403,
                    50005,
                    "Cannot edit a message authored by another user",
                ));
            }
            match &body.content {
                Patch::Unchanged => {}
                Patch::Clear => msg.content.clear(),
                Patch::Set(s) => msg.content = s.clone(),
            }
            match &body.embeds {
                Patch::Unchanged => {}
                Patch::Clear => extra.embeds.clear(),
                Patch::Set(list) => {
                    extra.embeds = list
                        .iter()
                        .filter_map(|e| serde_json::to_value(e).ok())
                        .collect();
                }
            }
            if let Some(f) = body.flags {
                msg.flags = (msg.flags & !FLAG_SUPPRESS_EMBEDS) | (f & FLAG_SUPPRESS_EMBEDS);
            }
            if msg.content.trim().is_empty() && extra.embeds.is_empty() {
                return Err(ApiError::empty_message());
            }
            let (mentions, roles, everyone) =
                parse_mentions(guild, &msg.content, held & perms::MENTION_EVERYONE != 0);
            msg.mentions = mentions;
            extra.mention_roles = roles;
            extra.mention_everyone = everyone;
            extra.store_into(&mut msg).map_err(|_| {
                ApiError::invalid_field("embeds", "BASE_TYPE_MAX_LENGTH", "Embeds too large.")
            })?;
            msg.edited_timestamp_ms = Some(ctx.wall_ms);
            let (shared, mine) = update(&msg, m.actor);
            Ok(Step::Write(
                msg,
                Finish {
                    events: vec![Outgoing::Message("MESSAGE_UPDATE", shared)],
                    resp: Response::json(200, mine.to_string()),
                },
            ))
        }
        MessageOp::Delete { .. } => {
            if msg.author_id != m.actor && held & perms::MANAGE_MESSAGES == 0 {
                return Err(ApiError::missing_permissions());
            }
            Ok(Step::Tombstone(Finish {
                events: vec![Outgoing::Message(
                    "MESSAGE_DELETE",
                    json!({"id": msg.id.to_string(), "channel_id": c.to_string(),
                        "guild_id": m.guild.to_string()}),
                )],
                resp: no_content(),
            }))
        }
        MessageOp::Pin { .. } | MessageOp::Unpin { .. } => {
            let pin = matches!(m.op, MessageOp::Pin { .. });
            if msg.pinned == pin {
                return Ok(Step::Answer(no_content()));
            }
            msg.pinned = pin;
            let last_pin = if pin {
                json!(gateway_core::guild::time::iso8601(ctx.wall_ms))
            } else {
                Value::Null
            };
            let (shared, _) = update(&msg, m.actor);
            Ok(Step::Write(
                msg,
                Finish {
                    events: vec![
                        Outgoing::Message("MESSAGE_UPDATE", shared),
                        Outgoing::Channel(
                            "CHANNEL_PINS_UPDATE",
                            json!({"guild_id": m.guild.to_string(), "channel_id": c.to_string(),
                                "last_pin_timestamp": last_pin}),
                        ),
                    ],
                    resp: no_content(),
                },
            ))
        }
        MessageOp::React { emoji, .. } => {
            let users = extra.reactors.entry(emoji.clone()).or_default();
            if users.contains(&m.actor) {
                return Ok(Step::Answer(no_content()));
            }
            let existing = msg.reactions.iter().position(|(e, _)| e == emoji);
            if existing.is_none() {
                if held & perms::ADD_REACTIONS == 0 {
                    return Err(ApiError::missing_permissions());
                }
                if msg.reactions.len() >= REACTIONS_MAX {
                    return Err(ApiError::max_reactions(REACTIONS_MAX));
                }
            }
            users.push(m.actor);
            let count = u32::try_from(users.len()).unwrap_or(u32::MAX);
            match existing.and_then(|i| msg.reactions.get_mut(i)) {
                Some(slot) => slot.1 = count,
                None => msg.reactions.push((emoji.clone(), count)),
            }
            extra.store_into(&mut msg)?;
            let d = reaction_data(guild, &msg, emoji, Some(m.actor));
            Ok(Step::Write(
                msg,
                Finish {
                    events: vec![Outgoing::Channel("MESSAGE_REACTION_ADD", d)],
                    resp: no_content(),
                },
            ))
        }
        MessageOp::Unreact { emoji, user, .. } => {
            let Some(users) = extra.reactors.get_mut(emoji) else {
                return Ok(Step::Answer(no_content()));
            };
            let before = users.len();
            users.retain(|u| u != user);
            if users.len() == before {
                return Ok(Step::Answer(no_content()));
            }
            let left = users.len();
            if left == 0 {
                extra.reactors.remove(emoji);
                msg.reactions.retain(|(e, _)| e != emoji);
            } else if let Some(slot) = msg.reactions.iter_mut().find(|(e, _)| e == emoji) {
                slot.1 = u32::try_from(left).unwrap_or(u32::MAX);
            }
            extra.store_into(&mut msg)?;
            let mut d = reaction_data(guild, &msg, emoji, Some(*user));
            if let Some(o) = d.as_object_mut() {
                o.remove("member");
                o.remove("message_author_id");
            }
            Ok(Step::Write(
                msg,
                Finish {
                    events: vec![Outgoing::Channel("MESSAGE_REACTION_REMOVE", d)],
                    resp: no_content(),
                },
            ))
        }
        MessageOp::ClearEmoji { emoji, .. } => {
            if extra.reactors.remove(emoji).is_none() {
                return Ok(Step::Answer(no_content()));
            }
            msg.reactions.retain(|(e, _)| e != emoji);
            extra.store_into(&mut msg)?;
            let d = reaction_data(guild, &msg, emoji, None);
            Ok(Step::Write(
                msg,
                Finish {
                    events: vec![Outgoing::Channel("MESSAGE_REACTION_REMOVE_EMOJI", d)],
                    resp: no_content(),
                },
            ))
        }
        MessageOp::ClearAll { .. } => {
            if msg.reactions.is_empty() {
                return Ok(Step::Answer(no_content()));
            }
            extra.reactors.clear();
            msg.reactions.clear();
            extra.store_into(&mut msg)?;
            let d = json!({"channel_id": c.to_string(), "message_id": msg.id.to_string(),
                "guild_id": m.guild.to_string()});
            Ok(Step::Write(
                msg,
                Finish {
                    events: vec![Outgoing::Channel("MESSAGE_REACTION_REMOVE_ALL", d)],
                    resp: no_content(),
                },
            ))
        }
        MessageOp::Bulk { .. } => Err(ApiError::internal()),
    }
}

/// A read of the front change of channel `c` completed.
fn on_mutation_read(ctx: &mut ShardCtx, c: u64, result: Result<QueryResult, StoreError>) {
    let Some(m) = front_mut(ctx, c) else {
        return;
    };
    let stage = m.stage;
    let target = m.op.target();
    let result = match result {
        Ok(r) => r,
        Err(e) => return finish_front(ctx, c, store_error(&e).into_response()),
    };
    match (stage, result) {
        (Stage::CountPins, QueryResult::Messages(pins)) => {
            if target.is_some_and(|id| pins.iter().any(|p| p.id == id)) {
                return finish_front(ctx, c, no_content());
            }
            if pins.len() >= PINS_PER_CHANNEL_MAX {
                let e = ApiError::max_pins(PINS_PER_CHANNEL_MAX);
                return finish_front(ctx, c, e.into_response());
            }
            let Some(id) = target else {
                return finish_front(ctx, c, ApiError::internal().into_response());
            };
            let q = Query::ById {
                channel_id: c,
                message_id: id,
            };
            if let Err(e) = query_front(ctx, c, Stage::Lookup, q) {
                finish_front(ctx, c, e.into_response());
            }
        }
        (Stage::Lookup, QueryResult::Message(None)) => {
            finish_front(ctx, c, ApiError::unknown_message().into_response());
        }
        (Stage::Lookup, QueryResult::Message(Some(msg))) => {
            let step = match ctx.app.messages.mutations.get(&c).and_then(VecDeque::front) {
                Some(m) => apply(ctx, m, msg),
                None => return,
            };
            let now = ctx.wall_ms;
            let (write, finish): (StoreWrite, Finish) = match step {
                Err(e) => return finish_front(ctx, c, e.into_response()),
                Ok(Step::Answer(resp)) => return finish_front(ctx, c, resp),
                Ok(Step::Write(msg, f)) => (Box::new(move |s, t| s.edit(t, msg)), f),
                Ok(Step::Tombstone(f)) => {
                    let id = target.unwrap_or(0);
                    (Box::new(move |s, t| s.delete(t, c, id, now)), f)
                }
            };
            match ctx
                .app
                .messages
                .submit(Pending::Mutation { channel: c }, write)
            {
                Ok(()) => {
                    if let Some(m) = front_mut(ctx, c) {
                        m.stage = Stage::Write;
                        m.writes_left = 1;
                        m.finish = Some(finish);
                    }
                }
                Err(refused) => finish_front(ctx, c, refused.1.into_response()),
            }
        }
        _ => finish_front(ctx, c, ApiError::internal().into_response()),
    }
}

/// A write of the front change of channel `c` was acknowledged (`ok`) or failed.
fn on_mutation_written(ctx: &mut ShardCtx, c: u64, ok: bool) {
    let Some(m) = front_mut(ctx, c) else {
        return;
    };
    m.writes_left = m.writes_left.saturating_sub(1);
    m.failed |= !ok;
    if m.writes_left > 0 {
        return;
    }
    let (failed, g, finish) = (m.failed, m.guild, m.finish.take());
    let resp = match (failed, finish) {
        (false, Some(f)) => {
            send_events(ctx, g, c, f.events);
            f.resp
        }
        _ => ApiError::internal().into_response(),
    };
    finish_front(ctx, c, resp);
}

/// Handles what the store reported (called by the shard after each turn's completions).
pub fn on_store_event(ctx: &mut ShardCtx, ev: Event) {
    match ev {
        Event::Acked { token } => on_acked(ctx, token),
        Event::Failed { token, error } => {
            tracing::warn!(%error, "message store write failed");
            match ctx.app.messages.pending.remove(&token) {
                Some(Pending::Mutation { channel }) => on_mutation_written(ctx, channel, false),
                Some(p) => {
                    if let Some(reply) = p.into_reply() {
                        reply.error(ctx, ApiError::internal());
                    }
                }
                None => {}
            }
        }
        Event::QueryDone { token, result } => on_query(ctx, token, result),
        Event::Error(e) => tracing::error!(error = %e, "message store"),
        Event::Opened { replayed } => tracing::info!(replayed, "message store open"),
        Event::Flushed { .. } | Event::Compacted { .. } => {}
    }
}

fn on_acked(ctx: &mut ShardCtx, token: u64) {
    let Some(p) = ctx.app.messages.pending.remove(&token) else {
        return;
    };
    match p {
        Pending::Create { reply, msg, nonce } => {
            let Some(e) = ctx.app.guilds.by_id.get_mut(&msg.guild_id) else {
                return reply.error(ctx, ApiError::unknown_guild());
            };
            let _ = e.guild.note_message(msg.channel_id, msg.id);
            let d = message_value(&e.guild, &msg, nonce.as_ref(), None);
            fan_out_message(ctx, msg.guild_id, msg.channel_id, "MESSAGE_CREATE", &d);
            reply.json(ctx, 200, &d);
        }
        Pending::Ack { reply } => reply.json(ctx, 200, &json!({"token": null})),
        Pending::Mutation { channel } => on_mutation_written(ctx, channel, true),
        other => {
            if let Some(reply) = other.into_reply() {
                reply.error(ctx, ApiError::internal());
            }
        }
    }
}

fn on_query(ctx: &mut ShardCtx, token: u64, result: Result<QueryResult, StoreError>) {
    let Some(p) = ctx.app.messages.pending.remove(&token) else {
        return;
    };
    if let Pending::Mutation { channel } = p {
        return on_mutation_read(ctx, channel, result);
    }
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some(reply) = p.into_reply() {
                reply.error(ctx, store_error(&e));
            }
            return;
        }
    };
    match (p, result) {
        (
            Pending::Read {
                reply,
                guild,
                actor,
                ..
            },
            QueryResult::Messages(list),
        ) => {
            let Some(e) = ctx.app.guilds.by_id.get(&guild) else {
                return reply.error(ctx, ApiError::unknown_guild());
            };
            let v: Vec<Value> = list
                .iter()
                .map(|m| message_value(&e.guild, m, None, Some(actor)))
                .collect();
            reply.json(ctx, 200, &Value::Array(v));
        }
        (
            Pending::Read {
                reply,
                guild,
                actor,
                ..
            },
            QueryResult::Message(m),
        ) => {
            let resp = match (ctx.app.guilds.by_id.get(&guild), m) {
                (Some(e), Some(m)) => Response::json(
                    200,
                    message_value(&e.guild, &m, None, Some(actor)).to_string(),
                ),
                _ => ApiError::unknown_message().into_response(),
            };
            reply.send(ctx, resp);
        }
        (
            Pending::Reactors {
                reply,
                guild,
                emoji,
                after,
                limit,
            },
            QueryResult::Message(m),
        ) => {
            let (Some(e), Some(m)) = (ctx.app.guilds.by_id.get(&guild), m) else {
                return reply.error(ctx, ApiError::unknown_message());
            };
            let mut users = Extra::of(&m).reactors.remove(&emoji).unwrap_or_default();
            users.sort_unstable();
            let list: Vec<Value> = users
                .into_iter()
                .filter(|&u| u > after)
                .take(limit)
                .map(|u| user_json(&author_of(&e.guild, u)))
                .collect();
            reply.json(ctx, 200, &Value::Array(list));
        }
        (other, _) => {
            if let Some(reply) = other.into_reply() {
                reply.error(ctx, ApiError::internal());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_round_trips_and_stays_empty_when_unused() {
        let mut m = Message::default();
        Extra::default().store_into(&mut m).unwrap();
        assert!(m.extra_json.is_empty());
        let mut e = Extra::default();
        e.reactors.insert("x".into(), vec![1, 2]);
        e.tts = true;
        e.store_into(&mut m).unwrap();
        let back = Extra::of(&m);
        assert!(back.tts);
        assert_eq!(back.reactors["x"], vec![1, 2]);
    }

    #[test]
    fn reactors_beyond_the_store_bound_are_refused() {
        let mut m = Message::default();
        let mut e = Extra::default();
        e.reactors
            .insert("x".into(), (0..2000u64).map(|i| i << 22).collect());
        let err = e.store_into(&mut m).unwrap_err();
        assert_eq!(err.code, crate::rest::codes::MAX_REACTIONS);
    }

    #[test]
    fn slowmode_admits_once_per_window() {
        let mut map = HashMap::new();
        assert!(slowmode(&mut map, 1, 2, 1000, 5000).is_ok());
        let e = slowmode(&mut map, 1, 2, 2000, 5000).unwrap_err();
        assert_eq!(
            (e.status, e.retry.map(|r| r.retry_after_ms)),
            (429, Some(4000))
        );
        assert!(slowmode(&mut map, 1, 3, 2000, 5000).is_ok());
        assert!(slowmode(&mut map, 1, 2, 6000, 5000).is_ok());
    }
}
