//! The voice admin endpoints (issue 6, failover), served on every shard; each takes the control
//! secret like the other admin endpoints (`app::admin_allowed`):
//!
//! - `GET /admin/voice/servers`: every shard's voice server: endpoint, UDP address,
//!   participants, drained, healthy (no shard considers it down) and which shards consider it
//!   down, whether it ignores health pings.
//! - `POST /admin/voice/servers/{shard}/drain`: the server takes no new guilds, and every guild
//!   on it moves to another server (users get a new VOICE_SERVER_UPDATE; the old server closes
//!   their voice sessions with 4014). Answers once every owner shard started its moves.
//! - `POST /admin/voice/servers/{shard}/undrain`: the server takes guilds again (guilds that
//!   moved away stay where they are).
//! - `POST /admin/voice/servers/{shard}/faults` `{"ignore_health_pings": bool}`: a test and
//!   failover-drill tool, off by default: the server stops answering health pings (while still
//!   serving its participants), so the other shards declare it down and move its guilds away.

use std::sync::atomic::Ordering;

use serde::Deserialize;
use serde_json::json;

use super::owner::{MoveReason, move_guilds_off};
use crate::app::json_error;
use crate::ctx::{ConnRef, ShardCtx};
use crate::http::{Request, Response};
use crate::shard::Routed;

/// Path prefix of the voice server admin endpoints.
pub const SERVERS_PATH: &str = "/admin/voice/servers";

/// What one shard reports about its voice server and its view of the others.
#[derive(Debug, Clone)]
struct ShardReport {
    shard: usize,
    serving: bool,
    endpoint: Option<String>,
    udp: Option<String>,
    drained: bool,
    participants: u64,
    ignoring_health_pings: bool,
    /// Servers this shard's health monitor considers down.
    sees_down: Vec<usize>,
    /// Guilds this shard owns with someone in voice.
    voice_guilds_owned: usize,
}

fn report(c: &mut ShardCtx) -> ShardReport {
    let v = &c.voice;
    let bound = v.shared.bound.get(c.id).and_then(|b| b.get());
    ShardReport {
        shard: c.id,
        serving: v.server.is_some(),
        endpoint: v.server.as_ref().map(|s| s.endpoint.to_string()),
        udp: bound.map(|(_, u)| u.to_string()),
        drained: v.is_drained(),
        participants: v.server.as_ref().map_or(0, |s| s.member_count() as u64),
        ignoring_health_pings: v.ignore_health_pings,
        sees_down: (0..c.shards()).filter(|&s| v.health.is_down(s)).collect(),
        voice_guilds_owned: v.owner.guilds.len(),
    }
}

/// Body of `POST /admin/voice/servers/{shard}/faults`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Faults {
    ignore_health_pings: bool,
}

fn busy() -> Routed {
    Routed::Now(json_error(503, 0, "busy"))
}

/// Routes a request under [`SERVERS_PATH`] (the caller checked the admin secret).
pub fn handle(ctx: &mut ShardCtx, conn: ConnRef, req: &Request) -> Routed {
    let rest = req.path.strip_prefix(SERVERS_PATH).unwrap_or("");
    let method = req.method.as_str();
    if rest.is_empty() || rest == "/" {
        return match method {
            "GET" | "HEAD" => list(ctx, conn),
            _ => Routed::Now(json_error(405, 0, "405: Method Not Allowed")),
        };
    }
    let mut parts = rest.trim_start_matches('/').splitn(2, '/');
    let shard = parts.next().and_then(|s| s.parse::<usize>().ok());
    let action = parts.next().unwrap_or("");
    let Some(shard) = shard.filter(|&s| s < ctx.shards()) else {
        return Routed::Now(json_error(404, 0, "404: Not Found"));
    };
    if method != "POST" {
        return Routed::Now(json_error(405, 0, "405: Method Not Allowed"));
    }
    match action {
        "drain" => drain(ctx, conn, shard),
        "undrain" => {
            if let Some(d) = ctx.voice.shared.drained.get(shard) {
                d.store(false, Ordering::Release);
            }
            Routed::Now(Response::json(
                200,
                json!({"shard": shard, "drained": false}).to_string(),
            ))
        }
        "faults" => faults(ctx, conn, shard, req),
        _ => Routed::Now(json_error(404, 0, "404: Not Found")),
    }
}

fn list(ctx: &mut ShardCtx, conn: ConnRef) -> Routed {
    let health = ctx.voice.health.config();
    let started = ctx.map_reduce(
        report,
        Vec::new(),
        |mut acc: Vec<ShardReport>, r| {
            acc.push(r);
            acc
        },
        move |c: &mut ShardCtx, mut all| {
            all.sort_by_key(|r| r.shard);
            let servers: Vec<serde_json::Value> = all
                .iter()
                .map(|r| {
                    let down_according_to: Vec<usize> = all
                        .iter()
                        .filter(|o| o.sees_down.contains(&r.shard))
                        .map(|o| o.shard)
                        .collect();
                    json!({
                        "shard": r.shard,
                        "serving": r.serving,
                        "endpoint": r.endpoint,
                        "udp": r.udp,
                        "participants": r.participants,
                        "drained": r.drained,
                        "healthy": r.serving && down_according_to.is_empty(),
                        "down_according_to": down_according_to,
                        "ignoring_health_pings": r.ignoring_health_pings,
                        "voice_guilds_owned": r.voice_guilds_owned,
                    })
                })
                .collect();
            let body = json!({
                "servers": servers,
                "health_check": {
                    "interval_ms": health.interval_ms,
                    "misses_max": health.misses_max,
                },
            });
            c.http_replies
                .push((conn, Response::json(200, body.to_string())));
        },
    );
    if started { Routed::Later } else { busy() }
}

fn drain(ctx: &mut ShardCtx, conn: ConnRef, shard: usize) -> Routed {
    let serving = ctx
        .voice
        .shared
        .serving
        .get(shard)
        .is_some_and(|s| s.load(Ordering::Acquire));
    if !serving {
        return Routed::Now(json_error(404, 0, "no voice server on that shard"));
    }
    // Drained before any move starts, so no owner picks it again meanwhile.
    if let Some(d) = ctx.voice.shared.drained.get(shard) {
        d.store(true, Ordering::Release);
    }
    tracing::info!(server = shard, "voice server drained by an operator");
    let started = ctx.map_reduce(
        move |c: &mut ShardCtx| move_guilds_off(c, shard, MoveReason::Drained),
        0usize,
        |a, n| a + n,
        move |c: &mut ShardCtx, moved| {
            let body = json!({"shard": shard, "drained": true, "guilds_moving": moved});
            c.http_replies
                .push((conn, Response::json(200, body.to_string())));
        },
    );
    if started { Routed::Later } else { busy() }
}

fn faults(ctx: &mut ShardCtx, conn: ConnRef, shard: usize, req: &Request) -> Routed {
    let Ok(f) = serde_json::from_slice::<Faults>(&req.body) else {
        return Routed::Now(json_error(
            400,
            50109,
            "The request body contains invalid JSON.",
        ));
    };
    let on = f.ignore_health_pings;
    let started = ctx.call(
        shard,
        move |t: &mut ShardCtx| {
            if on != t.voice.ignore_health_pings {
                tracing::warn!(
                    server = t.id,
                    ignore_health_pings = on,
                    "voice fault injection changed"
                );
            }
            t.voice.ignore_health_pings = on;
        },
        move |c: &mut ShardCtx, ()| {
            let body = json!({"shard": shard, "ignore_health_pings": on});
            c.http_replies
                .push((conn, Response::json(200, body.to_string())));
        },
    );
    if started { Routed::Later } else { busy() }
}
