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

use super::server::VoiceServer;
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

/// The least loaded shard with a voice server; ties go to `prefer` (no hop for control work),
/// then to the lowest index.
fn choose_server(ctx: &ShardCtx, prefer: usize) -> Option<usize> {
    let shared = &ctx.voice.shared;
    (0..shared.load.len())
        .filter(|&s| {
            shared
                .serving
                .get(s)
                .is_some_and(|b| b.load(Ordering::Acquire))
        })
        .min_by_key(|&s| {
            let load = shared
                .load
                .get(s)
                .map_or(u64::MAX, |l| l.load(Ordering::Acquire));
            (load, s != prefer, s)
        })
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

fn apply_inner(ctx: &mut ShardCtx, req: &Op4) -> Result<(), Refusal> {
    let (g, u) = (req.guild, req.user);
    let prev = ctx
        .voice
        .owner
        .guilds
        .get(&g)
        .and_then(|gv| gv.states.get(&u))
        .cloned();
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
        via_server(ctx, server, g, data, None, move |v: &mut VoiceServer| {
            v.remove(g, u);
            None
        })?;
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
    via_server(ctx, server, g, data, home, move |v: &mut VoiceServer| {
        if new_session {
            let token = v.register(g, u, sid, channel, flags).ok()?;
            Some((token, v.endpoint))
        } else {
            v.update(g, u, channel, flags);
            None
        }
    })?;
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
    data: serde_json::Value,
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
            announce(o, g, data);
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
                gateway_shard: ctx.id,
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
