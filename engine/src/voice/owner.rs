//! Voice states on the guild's owner shard: main-gateway op 4 (join, move, leave, self mute and
//! deafen), the CONNECT / SPEAK / user-limit checks against the guild model, VOICE_STATE_UPDATE
//! to the guild, the choice of the guild's voice server (one shard for all its channels, the
//! least loaded one, remembered while anyone is in voice) and the hand-over to that server,
//! which mints the token that travels back to the user's session in VOICE_SERVER_UPDATE.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use gateway_core::gateway::SharedEvent;
use gateway_core::guild::{Audience, ChannelKind, Guild, GuildEvent, perms};
use serde_json::json;
use sfu::VoiceFlags;

use super::failover::{ServerView, pick_server};
use super::server::{Adopted, Adoptee, VoiceServer};
use crate::ctx::ShardCtx;

/// One user's voice state as the owner shard keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserVoice {
    /// The voice channel.
    pub channel: u64,
    /// The main gateway session that joined.
    pub session_id: String,
    /// Self-muted.
    pub self_mute: bool,
    /// Self-deafened.
    pub self_deaf: bool,
    /// The shard that held the session at its last op 4 (VOICE_SERVER_UPDATE goes there when
    /// the user's home shard does not know the session).
    pub gateway_shard: usize,
}

/// The voice of one guild.
#[derive(Debug, Default)]
pub struct GuildVoice {
    /// The shard serving every voice channel of the guild.
    pub server: usize,
    /// By user.
    pub states: HashMap<u64, UserVoice>,
}

/// The voice states of the guilds this shard owns.
#[derive(Debug, Default)]
pub struct OwnerVoice {
    /// By guild.
    pub guilds: HashMap<u64, GuildVoice>,
}

/// An op 4 as forwarded to the owner shard.
#[derive(Debug, Clone)]
pub struct Op4 {
    /// Guild.
    pub guild: u64,
    /// Channel to be in; `None` leaves voice.
    pub channel: Option<u64>,
    /// Self-muted.
    pub self_mute: bool,
    /// Self-deafened.
    pub self_deaf: bool,
    /// The user.
    pub user: u64,
    /// The session that sent it.
    pub session_id: String,
    /// The shard holding that session.
    pub gateway_shard: usize,
}

/// Why an op 4 was refused (Discord answers nothing; we count it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Unknown guild, or the user is not a member.
    #[error("not a member")]
    NotMember,
    /// Unknown channel or not a voice channel.
    #[error("not a voice channel")]
    NotVoice,
    /// VIEW_CHANNEL or CONNECT missing.
    #[error("missing CONNECT")]
    NoConnect,
    /// The channel's user limit is reached (MOVE_MEMBERS bypasses it).
    #[error("channel full")]
    ChannelFull,
    /// No shard of this node runs a voice server.
    #[error("no voice server")]
    NoServer,
    /// Too many cross-shard replies are waiting; try again.
    #[error("busy")]
    Busy,
}

/// The VOICE_STATE_UPDATE payload.
fn state_json(
    guild: &Guild,
    user: u64,
    channel: Option<u64>,
    sid: &str,
    s: (bool, bool),
) -> serde_json::Value {
    let (mute, deaf) = guild
        .member(user)
        .map_or((false, false), |m| (m.mute, m.deaf));
    json!({
        "guild_id": guild.id().to_string(),
        "channel_id": channel.map(|c| c.to_string()),
        "user_id": user.to_string(),
        "member": guild.member_json(user),
        "session_id": sid,
        "deaf": deaf,
        "mute": mute,
        "self_deaf": s.1,
        "self_mute": s.0,
        "self_stream": false,
        "self_video": false,
        "suppress": false,
        "request_to_speak_timestamp": null,
    })
}

/// What forwarding needs from the state, the member and the channel permissions.
fn flags(guild: &Guild, user: u64, channel: u64, self_mute: bool, self_deaf: bool) -> VoiceFlags {
    let (mute, deaf) = guild
        .member(user)
        .map_or((false, false), |m| (m.mute, m.deaf));
    VoiceFlags {
        muted: mute || self_mute,
        deafened: deaf || self_deaf,
        can_speak: guild.permissions(user, channel) & perms::SPEAK != 0,
    }
}

/// What this shard knows about every voice server: published load plus `extra` (participants
/// of moves it started that the target has not published yet), drained flags, its own health
/// view.
fn server_views(ctx: &ShardCtx, extra: &HashMap<usize, u64>) -> Vec<ServerView> {
    let shared = &ctx.voice.shared;
    (0..shared.load.len())
        .map(|s| ServerView {
            shard: s,
            serving: shared
                .serving
                .get(s)
                .is_some_and(|b| b.load(Ordering::Acquire)),
            drained: shared
                .drained
                .get(s)
                .is_some_and(|b| b.load(Ordering::Acquire)),
            down: ctx.voice.health.is_down(s),
            load: shared
                .load
                .get(s)
                .map_or(u64::MAX, |l| l.load(Ordering::Acquire))
                .saturating_add(extra.get(&s).copied().unwrap_or(0)),
        })
        .collect()
}

/// The least loaded available voice server (not drained, not down); ties go to `prefer`.
fn choose_server(ctx: &ShardCtx, prefer: usize) -> Option<usize> {
    pick_server(server_views(ctx, &HashMap::new()), prefer, None)
}

/// Checks op 4 against the guild; returns the flags for the channel to join.
fn check(ctx: &ShardCtx, req: &Op4, channel: u64) -> Result<VoiceFlags, Refusal> {
    let entry = ctx
        .app
        .guilds
        .by_id
        .get(&req.guild)
        .ok_or(Refusal::NotMember)?;
    let guild = &entry.guild;
    if !guild.is_member(req.user) {
        return Err(Refusal::NotMember);
    }
    let ch = guild.channel(channel).ok_or(Refusal::NotVoice)?;
    if ch.kind != ChannelKind::Voice {
        return Err(Refusal::NotVoice);
    }
    let p = guild.permissions(req.user, channel);
    let here = ctx
        .voice
        .owner
        .guilds
        .get(&req.guild)
        .and_then(|gv| gv.states.get(&req.user))
        .is_some_and(|s| s.channel == channel);
    if !here && p & (perms::VIEW_CHANNEL | perms::CONNECT) != perms::VIEW_CHANNEL | perms::CONNECT {
        return Err(Refusal::NoConnect);
    }
    if ch.user_limit > 0 && !here && p & perms::MOVE_MEMBERS == 0 {
        let inside = ctx.voice.owner.guilds.get(&req.guild).map_or(0, |gv| {
            gv.states
                .iter()
                .filter(|(u, s)| s.channel == channel && **u != req.user)
                .count()
        });
        if inside >= ch.user_limit as usize {
            return Err(Refusal::ChannelFull);
        }
    }
    Ok(flags(
        guild,
        req.user,
        channel,
        req.self_mute,
        req.self_deaf,
    ))
}

/// Applies op 4 on the guild's owner shard.
pub fn apply(ctx: &mut ShardCtx, req: Op4) {
    match apply_inner(ctx, &req) {
        Ok(()) => ctx.voice.stats.state_updates += 1,
        Err(why) => {
            ctx.voice.stats.state_refused += 1;
            tracing::debug!(guild = req.guild, user = req.user, %why, "op 4 refused");
        }
    }
}

/// The voice state of `user` in guild `g` (owned here), if in voice.
fn state_of(ctx: &ShardCtx, g: u64, user: u64) -> Option<&UserVoice> {
    ctx.voice.owner.guilds.get(&g)?.states.get(&user)
}

/// A gateway session of `user` ended for good: in each of `guilds` (owned here) where that
/// session holds the user's voice state, the user leaves voice, as Discord drops the voice state
/// of a session that is gone (a state taken over by a newer session is left alone).
pub fn session_ended(ctx: &mut ShardCtx, user: u64, session_id: &str, guilds: &[u64]) {
    for &g in guilds {
        let held = state_of(ctx, g, user).is_some_and(|s| s.session_id == session_id);
        if held {
            apply(
                ctx,
                Op4 {
                    guild: g,
                    channel: None,
                    self_mute: false,
                    self_deaf: false,
                    user,
                    session_id: session_id.to_owned(),
                    gateway_shard: ctx.id,
                },
            );
        }
    }
}

fn apply_inner(ctx: &mut ShardCtx, req: &Op4) -> Result<(), Refusal> {
    let (g, u) = (req.guild, req.user);
    let prev = state_of(ctx, g, u).cloned();
    let Some(channel) = req.channel else {
        // Leave: nothing to do for a user not in voice.
        let Some(prev) = prev else {
            return Ok(());
        };
        let entry = ctx.app.guilds.by_id.get(&g).ok_or(Refusal::NotMember)?;
        let data = state_json(
            &entry.guild,
            u,
            None,
            &prev.session_id,
            (req.self_mute, req.self_deaf),
        );
        let Some(gv) = ctx.voice.owner.guilds.get_mut(&g) else {
            return Ok(());
        };
        gv.states.remove(&u);
        let server = gv.server;
        if gv.states.is_empty() {
            ctx.voice.owner.guilds.remove(&g);
        }
        via_server(
            ctx,
            server,
            g,
            Some(data),
            None,
            move |v: &mut VoiceServer| {
                v.remove(g, u);
                None
            },
        )?;
        return Ok(());
    };
    let flags = check(ctx, req, channel)?;
    let server = match ctx.voice.owner.guilds.get(&g) {
        Some(gv) => gv.server,
        None => choose_server(ctx, ctx.id).ok_or(Refusal::NoServer)?,
    };
    let state = UserVoice {
        channel,
        session_id: req.session_id.clone(),
        self_mute: req.self_mute,
        self_deaf: req.self_deaf,
        gateway_shard: req.gateway_shard,
    };
    let new_session = prev.as_ref().is_none_or(|p| p.session_id != req.session_id);
    let entry = ctx.app.guilds.by_id.get(&g).ok_or(Refusal::NotMember)?;
    let data = state_json(
        &entry.guild,
        u,
        Some(channel),
        &req.session_id,
        (req.self_mute, req.self_deaf),
    );
    let home = Some((req.gateway_shard, req.session_id.clone()));
    let sid = req.session_id.clone();
    via_server(
        ctx,
        server,
        g,
        Some(data),
        home,
        move |v: &mut VoiceServer| {
            if new_session {
                let token = v.register(g, u, sid, channel, flags).ok()?;
                Some((token, v.endpoint))
            } else {
                v.update(g, u, channel, flags);
                None
            }
        },
    )?;
    ctx.voice
        .owner
        .guilds
        .entry(g)
        .or_insert_with(|| GuildVoice {
            server,
            states: HashMap::new(),
        })
        .states
        .insert(u, state);
    Ok(())
}

/// Runs `act` on the guild's voice server first and announces `data` (VOICE_STATE_UPDATE) from
/// here when it is done; then, if `act` minted a token, VOICE_SERVER_UPDATE goes to the session
/// `home`. So a client that sees the state change finds the server already applying it (a mute,
/// a deafen, a move), states are announced in the order they were applied, and the state
/// reaches the user's shard before the server update (mailboxes are FIFO per pair).
fn via_server(
    ctx: &mut ShardCtx,
    server: usize,
    g: u64,
    data: Option<serde_json::Value>,
    home: Option<(usize, String)>,
    act: impl FnOnce(&mut VoiceServer) -> Option<(String, std::net::SocketAddr)> + Send + 'static,
) -> Result<(), Refusal> {
    let started = ctx.call(
        server,
        move |v: &mut ShardCtx| {
            let granted = v.voice.server.as_mut().and_then(act);
            v.voice.publish_load();
            granted
        },
        move |o: &mut ShardCtx, granted: Option<(String, std::net::SocketAddr)>| {
            if let Some(data) = data {
                announce(o, g, data);
            }
            if let (Some((token, endpoint)), Some((shard, sid))) = (granted, home) {
                o.invoke_on_reliably(shard, move |c: &mut ShardCtx| {
                    deliver_server_update(c, &sid, g, &token, endpoint);
                });
            }
        },
    );
    if started { Ok(()) } else { Err(Refusal::Busy) }
}

/// VOICE_STATE_UPDATE to every session of the guild.
fn announce(ctx: &mut ShardCtx, g: u64, data: serde_json::Value) {
    let ev = GuildEvent {
        name: "VOICE_STATE_UPDATE",
        data,
        audience: Audience::Guild,
    };
    crate::guilds::fan_out(ctx, g, &[ev]);
}

/// Sends VOICE_SERVER_UPDATE to the session that asked, on its shard.
fn deliver_server_update(
    ctx: &mut ShardCtx,
    sid: &str,
    g: u64,
    token: &str,
    endpoint: std::net::SocketAddr,
) {
    let Some(r) = ctx.gw.find_by_id(sid) else {
        return;
    };
    let d = json!({
        "token": token,
        "guild_id": g.to_string(),
        "endpoint": endpoint.to_string(),
    });
    if let Ok(ev) = SharedEvent::new("VOICE_SERVER_UPDATE", &d, 0) {
        ctx.gw.dispatch_to(r, &ev);
    }
}

/// Re-reads the member and channel permissions of `user` (after a server mute or deafen, a role
/// or overwrite change): announces the new state and pushes the flags to the voice server.
/// Runs on the guild's owner shard.
pub fn refresh_member(ctx: &mut ShardCtx, g: u64, user: u64) {
    refresh(ctx, g, user, true);
}

/// [`refresh_member`]; `announce`: whether the guild hears VOICE_STATE_UPDATE even when only
/// permissions changed (the member's own updates announce; guild-wide role or channel changes
/// only push the flags, so one role edit does not send every voice state to every session).
fn refresh(ctx: &mut ShardCtx, g: u64, user: u64, announce: bool) {
    let Some(gv) = ctx.voice.owner.guilds.get(&g) else {
        return;
    };
    let Some(st) = gv.states.get(&user).cloned() else {
        return;
    };
    let server = gv.server;
    let Some(entry) = ctx.app.guilds.by_id.get(&g) else {
        return;
    };
    let guild = &entry.guild;
    let gone = !guild.is_member(user)
        || guild.permissions(user, st.channel) & perms::CONNECT == 0
        || guild.channel(st.channel).is_none();
    if gone {
        apply(
            ctx,
            Op4 {
                guild: g,
                channel: None,
                self_mute: st.self_mute,
                self_deaf: st.self_deaf,
                user,
                session_id: st.session_id,
                gateway_shard: st.gateway_shard,
            },
        );
        return;
    }
    let f = flags(guild, user, st.channel, st.self_mute, st.self_deaf);
    let data = state_json(
        guild,
        user,
        Some(st.channel),
        &st.session_id,
        (st.self_mute, st.self_deaf),
    );
    let channel = st.channel;
    let data = announce.then_some(data);
    let _ = via_server(ctx, server, g, data, None, move |v: &mut VoiceServer| {
        v.update(g, user, channel, f);
        None
    });
}

/// The voice states of a guild as GUILD_CREATE's `voice_states` carries them (owner shard).
pub fn guild_voice_states(ctx: &ShardCtx, g: u64) -> Vec<serde_json::Value> {
    let (Some(gv), Some(entry)) = (ctx.voice.owner.guilds.get(&g), ctx.app.guilds.by_id.get(&g))
    else {
        return Vec::new();
    };
    gv.states
        .iter()
        .map(|(&u, s)| {
            let mut v = state_json(
                &entry.guild,
                u,
                Some(s.channel),
                &s.session_id,
                (s.self_mute, s.self_deaf),
            );
            if let Some(o) = v.as_object_mut() {
                // Inside GUILD_CREATE the guild is implied and the member is listed apart.
                o.remove("guild_id");
                o.remove("member");
            }
            v
        })
        .collect()
}

/// Re-evaluates the voice users a guild change touches (called with every batch of guild events
/// the owner shard publishes): a member update or removal refreshes that member (a kicked
/// member, or one who lost CONNECT, leaves voice; a server mute takes effect on the SFU); role,
/// channel and guild changes refresh everyone in voice quietly.
pub fn after_guild_events(ctx: &mut ShardCtx, g: u64, events: &[GuildEvent]) {
    let Some(gv) = ctx.voice.owner.guilds.get(&g) else {
        // Nobody of this guild is in voice.
        return;
    };
    let mut named: Vec<u64> = Vec::new();
    let mut everyone = false;
    for e in events {
        match e.name {
            "GUILD_MEMBER_UPDATE" | "GUILD_MEMBER_REMOVE" => {
                if let Some(u) = e.data["user"]["id"]
                    .as_str()
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    named.push(u);
                }
            }
            "GUILD_ROLE_UPDATE" | "GUILD_ROLE_DELETE" | "CHANNEL_UPDATE" | "CHANNEL_DELETE"
            | "GUILD_UPDATE" => everyone = true,
            _ => {}
        }
    }
    named.retain(|u| gv.states.contains_key(u));
    named.sort_unstable();
    named.dedup();
    let mut quiet: Vec<u64> = if everyone {
        gv.states
            .keys()
            .copied()
            .filter(|u| !named.contains(u))
            .collect()
    } else {
        Vec::new()
    };
    quiet.sort_unstable();
    for u in named {
        refresh(ctx, g, u, true);
    }
    for u in quiet {
        refresh(ctx, g, u, false);
    }
}

// ----- failover -----

/// Why guilds move off a voice server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveReason {
    /// An operator drained it.
    Drained,
    /// It stopped answering health pings.
    Down,
}

/// The guilds of `owner` whose voice lives on `server`, in id order (deterministic moves).
pub fn guilds_on(owner: &OwnerVoice, server: usize) -> Vec<u64> {
    let mut gs: Vec<u64> = owner
        .guilds
        .iter()
        .filter(|(_, gv)| gv.server == server)
        .map(|(&g, _)| g)
        .collect();
    gs.sort_unstable();
    gs
}

/// Moves every guild this shard owns off voice server `from` (each to the least loaded
/// available server); returns how many moves started.
pub fn move_guilds_off(ctx: &mut ShardCtx, from: usize, why: MoveReason) -> usize {
    // Participants this sweep sends to each server before it publishes its new load, so one
    // sweep spreads guilds instead of piling them on the server that was least loaded first.
    let mut extra: HashMap<usize, u64> = HashMap::new();
    let mut started = 0;
    for g in guilds_on(&ctx.voice.owner, from) {
        let Some(to) = pick_server(server_views(ctx, &extra), ctx.id, Some(from)) else {
            ctx.voice.stats.failover_no_target += 1;
            tracing::warn!(
                guild = g,
                from,
                ?why,
                "voice failover: no other voice server"
            );
            continue;
        };
        if let Some(n) = move_guild(ctx, g, from, to) {
            *extra.entry(to).or_default() += n as u64;
            started += 1;
            tracing::info!(
                guild = g,
                from,
                to,
                users = n,
                ?why,
                "voice failover: moving guild"
            );
        }
    }
    started
}

/// Once per health round: guilds still on a drained or down server (their move found no other
/// server, or the mailboxes were too busy to start it) move as soon as a server can take them.
pub fn retry_stranded(ctx: &mut ShardCtx) {
    for from in 0..ctx.voice.shared.load.len() {
        let gone = ctx.voice.health.is_down(from)
            || ctx
                .voice
                .shared
                .drained
                .get(from)
                .is_some_and(|d| d.load(Ordering::Acquire));
        if !gone || !ctx.voice.owner.guilds.values().any(|gv| gv.server == from) {
            continue;
        }
        // Quiet while nowhere else can take them (the first attempt logged and counted that).
        if pick_server(server_views(ctx, &HashMap::new()), ctx.id, Some(from)).is_some() {
            let why = match ctx.voice.health.is_down(from) {
                true => MoveReason::Down,
                false => MoveReason::Drained,
            };
            move_guilds_off(ctx, from, why);
        }
    }
}

/// Starts moving guild `g` from server `from` to `to`: its voice states are registered there
/// (one task), and from now on every op 4 of the guild goes to `to` (mailboxes are FIFO, so
/// they arrive after the registration). Returns the number of users moved.
fn move_guild(ctx: &mut ShardCtx, g: u64, from: usize, to: usize) -> Option<usize> {
    let gv = ctx.voice.owner.guilds.get(&g)?;
    if gv.server != from {
        return None;
    }
    let guild = ctx.app.guilds.by_id.get(&g).map(|e| &e.guild);
    let users: Vec<Adoptee> = gv
        .states
        .iter()
        .map(|(&u, st)| Adoptee {
            user: u,
            session_id: st.session_id.clone(),
            channel: st.channel,
            flags: guild.map_or(
                // The guild is gone: the user hears and says nothing until their state ends.
                VoiceFlags {
                    muted: true,
                    deafened: true,
                    can_speak: false,
                },
                |guild| flags(guild, u, st.channel, st.self_mute, st.self_deaf),
            ),
        })
        .collect();
    let n = users.len();
    let started = ctx.call(
        to,
        move |t: &mut ShardCtx| {
            let adopted = t
                .voice
                .server
                .as_mut()
                .map(|v| (v.adopt(g, users), v.endpoint));
            t.voice.publish_load();
            adopted
        },
        move |o: &mut ShardCtx, adopted| finish_move(o, g, from, to, adopted),
    );
    if !started {
        return None;
    }
    if let Some(gv) = ctx.voice.owner.guilds.get_mut(&g) {
        gv.server = to;
    }
    ctx.voice.stats.failover_moves_started += 1;
    Some(n)
}

/// Back on the owner once `to` registered the users: each user still in the same session
/// gets VOICE_SERVER_UPDATE with the new token and endpoint; users `to` could not take leave
/// voice; then the old server closes the guild's sessions with 4014.
fn finish_move(
    o: &mut ShardCtx,
    g: u64,
    from: usize,
    to: usize,
    adopted: Option<(Vec<Adopted>, std::net::SocketAddr)>,
) {
    let mut dropped: Vec<(u64, UserVoice)> = Vec::new();
    let current = |o: &ShardCtx, u: u64, sid: &str| {
        o.voice
            .owner
            .guilds
            .get(&g)
            .filter(|gv| gv.server == to)
            .and_then(|gv| gv.states.get(&u))
            .filter(|st| st.session_id == sid)
            .cloned()
    };
    match adopted {
        Some((list, endpoint)) => {
            for a in list {
                // A user who left or rejoined meanwhile was handled by their own op 4.
                let Some(st) = current(o, a.user, &a.session_id) else {
                    continue;
                };
                match a.token {
                    Ok(token) => {
                        send_server_update(o, a.user, &st, g, token, endpoint);
                        o.voice.stats.failover_server_updates += 1;
                    }
                    Err(why) => {
                        tracing::warn!(guild = g, user = a.user, %why, "voice failover: user not taken");
                        dropped.push((a.user, st));
                    }
                }
            }
        }
        None => {
            // The target has no voice server after all: everyone moved there leaves voice.
            if let Some(gv) = o.voice.owner.guilds.get(&g).filter(|gv| gv.server == to) {
                dropped.extend(gv.states.iter().map(|(&u, st)| (u, st.clone())));
            }
        }
    }
    for (u, st) in dropped {
        o.voice.stats.failover_users_dropped += 1;
        apply(
            o,
            Op4 {
                guild: g,
                channel: None,
                self_mute: st.self_mute,
                self_deaf: st.self_deaf,
                user: u,
                session_id: st.session_id,
                gateway_shard: st.gateway_shard,
            },
        );
    }
    o.voice.stats.failover_guilds_moved += 1;
    o.invoke_on_reliably(from, move |s: &mut ShardCtx| {
        if let Some(v) = s.voice.server.as_mut() {
            v.evict_guild(g);
        }
        s.voice.publish_load();
    });
}

/// VOICE_SERVER_UPDATE for a user whose guild moved: the user's home shard knows which shard
/// holds the session now (it may have resumed elsewhere since its op 4).
fn send_server_update(
    ctx: &mut ShardCtx,
    user: u64,
    st: &UserVoice,
    g: u64,
    token: String,
    endpoint: std::net::SocketAddr,
) {
    let home = crate::app::owner_shard(user, ctx.shards());
    let (sid, fallback) = (st.session_id.clone(), st.gateway_shard);
    ctx.invoke_on_reliably(home, move |h: &mut ShardCtx| {
        let shard = h
            .app
            .users
            .get(&user)
            .and_then(|u| u.sessions.iter().find(|(_, s)| *s == sid).map(|(s, _)| *s))
            .unwrap_or(fallback);
        h.invoke_on_reliably(shard, move |c: &mut ShardCtx| {
            deliver_server_update(c, &sid, g, &token, endpoint);
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(channel: u64) -> UserVoice {
        UserVoice {
            channel,
            session_id: format!("s{channel}"),
            self_mute: false,
            self_deaf: false,
            gateway_shard: 0,
        }
    }

    #[test]
    fn guilds_on_lists_only_that_servers_guilds_in_order() {
        let mut o = OwnerVoice::default();
        for (g, server) in [(30u64, 1usize), (10, 1), (20, 0)] {
            let mut gv = GuildVoice {
                server,
                states: HashMap::new(),
            };
            gv.states.insert(g + 1, state(g + 2));
            o.guilds.insert(g, gv);
        }
        assert_eq!(guilds_on(&o, 1), vec![10, 30]);
        assert_eq!(guilds_on(&o, 0), vec![20]);
        assert!(guilds_on(&o, 2).is_empty());
    }
}
