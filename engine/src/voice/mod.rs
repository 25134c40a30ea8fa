//! Voice (issue 6): main-gateway op 4 on the guild's owner shard, and on every shard a voice
//! server: the voice gateway over TLS on the shard's own port and the SFU behind the shard's
//! own UDP port (base + shard index), so every packet of a room lands on the core that owns it.
//!
//! - `owner.rs`: voice states per guild, permission and user-limit checks, VOICE_STATE_UPDATE,
//!   the voice server choice, VOICE_SERVER_UPDATE, moving guilds off a failed server.
//! - `failover.rs`: the pure parts of failover: server choice and the health monitor.
//! - `admin.rs`: `/admin/voice/servers` (list, drain, undrain, fault injection).
//! - `server.rs`: participants, voice gateway sessions (`sfu::VoiceSession`), relays, the SFU.
//! - `tls.rs`: rustls (ring) configuration and the sans-IO TLS pipe of one connection.
//! - `udp.rs`: the UDP socket on the shard's driver.
//!
//! The shard loop (`shard.rs`) calls the `VoiceState` hooks below for connections of the
//! `Service::VoiceTls` listener and for completions whose token [`owns_token`] claims.

pub mod admin;
pub mod failover;
pub mod owner;
pub mod server;
pub mod tls;
pub mod udp;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use gateway_core::gateway::VoiceStateUpdate;

use crate::buf::{Pool, SendBuf};
use crate::ctx::{ConnRef, ShardCtx};
use crate::driver::{Completion, Driver, SocketId, Token};
use crate::gateway::SessionRef;

pub use server::{VoiceServer, VoiceStats};
pub use tls::{TlsFiles, TlsSetupError, VoiceTls};

/// How a node runs its voice servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoiceSpec {
    /// Run a voice server on every shard.
    pub enabled: bool,
    /// Shard i's voice gateway (TLS) port is this plus i; 0: an ephemeral port per shard.
    pub tls_base_port: u16,
    /// Shard i's voice UDP port is this plus i; 0: an ephemeral port per shard.
    pub udp_base_port: u16,
    /// Address both are bound on.
    pub bind_ip: IpAddr,
    /// Address clients are told to reach (VOICE_SERVER_UPDATE endpoint, Ready `ip`).
    pub public_ip: IpAddr,
    /// PEM certificate and key; `None`: a self-signed certificate made at start (dev).
    pub tls_files: Option<TlsFiles>,
    /// Heartbeat interval announced in the voice Hello.
    pub heartbeat_interval_ms: u64,
    /// Every shard pings every voice server this often (failover health check).
    pub health_interval_ms: u64,
    /// Consecutive unanswered pings after which a voice server is considered down.
    pub health_misses_max: u32,
}

impl Default for VoiceSpec {
    fn default() -> Self {
        VoiceSpec {
            enabled: true,
            tls_base_port: 0,
            udp_base_port: 0,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            public_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tls_files: None,
            heartbeat_interval_ms: sfu::limits::VOICE_HEARTBEAT_INTERVAL_MS,
            health_interval_ms: failover::VOICE_HEALTH_INTERVAL_MS,
            health_misses_max: failover::VOICE_HEALTH_MISSES_MAX,
        }
    }
}

impl VoiceSpec {
    /// The (TLS, UDP) bind addresses of shard `index`.
    pub fn addrs(&self, index: usize) -> (SocketAddr, SocketAddr) {
        let port = |base: u16| match base {
            0 => 0,
            b => u16::try_from(usize::from(b) + index).unwrap_or(0),
        };
        (
            SocketAddr::new(self.bind_ip, port(self.tls_base_port)),
            SocketAddr::new(self.bind_ip, port(self.udp_base_port)),
        )
    }
}

/// Node-wide voice facts every shard reads (control plane only: server choice, start-up).
#[derive(Debug)]
pub struct VoiceShared {
    /// Participants assigned to each shard's voice server.
    pub load: Vec<AtomicU64>,
    /// Whether each shard runs a voice server.
    pub serving: Vec<AtomicBool>,
    /// Whether an operator drained each shard's voice server (it takes no new guilds).
    pub drained: Vec<AtomicBool>,
    /// Each shard's bound (TLS, UDP) addresses, once it started.
    pub bound: Vec<OnceLock<(SocketAddr, SocketAddr)>>,
}

impl VoiceShared {
    /// For a node of `shards` shards.
    pub fn new(shards: usize) -> Arc<VoiceShared> {
        Arc::new(VoiceShared {
            load: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            serving: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            drained: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            bound: (0..shards).map(|_| OnceLock::new()).collect(),
        })
    }
}

/// What each shard needs to start its voice server (built once per node).
#[derive(Clone, Debug)]
pub struct VoiceSetup {
    /// Settings.
    pub spec: VoiceSpec,
    /// TLS configuration shared by all shards.
    pub tls: VoiceTls,
    /// Node-wide state.
    pub shared: Arc<VoiceShared>,
}

impl VoiceSetup {
    /// Builds the TLS configuration (loading or generating the certificate).
    pub fn new(spec: VoiceSpec, shards: usize) -> Result<VoiceSetup, TlsSetupError> {
        let tls = VoiceTls::new(spec.tls_files.as_ref(), &[spec.public_ip.to_string()])?;
        Ok(VoiceSetup {
            spec,
            tls,
            shared: VoiceShared::new(shards),
        })
    }
}

/// The voice layer of one shard (a field of [`ShardCtx`]).
pub struct VoiceState {
    /// Voice states of the guilds this shard owns.
    pub owner: owner::OwnerVoice,
    /// This shard's voice server, once started.
    pub server: Option<VoiceServer>,
    /// Node-wide state.
    pub shared: Arc<VoiceShared>,
    /// Owner-side counters (the server keeps its own).
    pub stats: VoiceStats,
    /// This shard's view of every voice server's health.
    pub health: failover::HealthMonitor,
    /// Fault injection (tests and failover drills, off unless an operator sets it through
    /// `POST /admin/voice/servers/{shard}/faults`): this shard's voice server leaves health
    /// pings unanswered, so the other shards declare it down and move its guilds away.
    pub ignore_health_pings: bool,
    pool: Pool<SendBuf>,
    id: usize,
}

impl std::fmt::Debug for VoiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceState")
            .field("guilds", &self.owner.guilds.len())
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl VoiceState {
    /// Shard `id` of `shards`, without a voice server until [`install`] runs.
    pub fn new(id: usize, shards: usize) -> VoiceState {
        VoiceState {
            owner: owner::OwnerVoice::default(),
            server: None,
            shared: VoiceShared::new(shards),
            stats: VoiceStats::default(),
            health: failover::HealthMonitor::new(shards, failover::HealthConfig::default()),
            ignore_health_pings: false,
            pool: udp::sendbuf_pool(),
            id,
        }
    }

    /// Counters for /metrics: owner-side ones plus the server's and its SFU's.
    pub fn snapshot(&self) -> VoiceStats {
        let mut s = self
            .server
            .as_ref()
            .map(VoiceServer::snapshot)
            .unwrap_or_default();
        let o = &self.stats;
        s.state_updates = o.state_updates;
        s.state_refused = o.state_refused;
        s.failover_moves_started = o.failover_moves_started;
        s.failover_guilds_moved = o.failover_guilds_moved;
        s.failover_server_updates = o.failover_server_updates;
        s.failover_users_dropped = o.failover_users_dropped;
        s.failover_no_target = o.failover_no_target;
        s.health_pings_sent = o.health_pings_sent;
        s.health_pongs = o.health_pongs;
        s.health_servers_down = o.health_servers_down;
        s.health_servers_up = o.health_servers_up;
        s.health_down_now = self.health.down_count() as u64;
        s.drained = u64::from(self.is_drained());
        s.ignoring_health_pings = u64::from(self.ignore_health_pings);
        s
    }

    /// Whether this shard's voice server is drained.
    pub fn is_drained(&self) -> bool {
        self.shared
            .drained
            .get(self.id)
            .is_some_and(|d| d.load(Ordering::Acquire))
    }

    /// Publishes this server's participant count for the voice server choice.
    pub fn publish_load(&self) {
        let n = self.server.as_ref().map_or(0, |s| s.member_count() as u64);
        if let Some(l) = self.shared.load.get(self.id) {
            l.store(n, Ordering::Release);
        }
    }

    // ----- hooks for the shard loop -----

    /// A connection on the voice TLS listener; false: refuse it (no voice server).
    pub fn on_accept(&mut self, c: ConnRef, now_ms: u64) -> bool {
        self.server.as_mut().is_some_and(|s| s.on_accept(c, now_ms))
    }

    /// Received bytes of a voice TLS connection.
    pub fn on_tls_bytes(&mut self, c: ConnRef, data: &[u8], now_ms: u64) {
        if let Some(s) = self.server.as_mut() {
            s.on_bytes(c, data, now_ms);
        }
    }

    /// Moves what is ready to send on `c` into `q`; true: close it once flushed.
    pub fn drain_tls(&mut self, c: ConnRef, q: &mut SendBuf) -> bool {
        let Some(s) = self.server.as_mut() else {
            return true;
        };
        let mut closed = false;
        q.write_with(|v| closed = s.drain(c, v));
        closed
    }

    /// A voice TLS connection closed (its session stays resumable).
    pub fn on_conn_closed(&mut self, c: ConnRef, now_ms: u64) {
        if let Some(s) = self.server.as_mut() {
            s.on_closed(c, now_ms);
        }
    }

    /// Voice TLS connections with output waiting.
    pub fn take_dirty(&mut self, out: &mut Vec<ConnRef>) {
        if let Some(s) = self.server.as_mut() {
            s.take_dirty(out);
        }
    }

    /// Whether the shard must not sleep: output waits to be collected.
    pub fn has_work(&self) -> bool {
        self.server.as_ref().is_some_and(VoiceServer::has_dirty)
    }

    /// A completion of the voice UDP socket ([`owns_token`] said so).
    pub fn on_completion<D: Driver>(&mut self, driver: &mut D, now_ms: u64, c: Completion) {
        match self.server.as_mut() {
            Some(s) => udp::on_completion(s, &mut self.pool, driver, now_ms, c),
            None => {
                if let crate::driver::CompletionKind::RecvFrom {
                    result: Ok((b, _, _)),
                    ..
                } = c.kind
                {
                    driver.release_buf(b);
                }
            }
        }
    }

    /// Once per turn: session clocks, repeated discovery answers that are due, then the UDP
    /// receive re-armed if it ended.
    pub fn pump<D: Driver>(&mut self, driver: &mut D, now_ms: u64) {
        if let Some(s) = self.server.as_mut() {
            s.sweep(now_ms);
            udp::send_due_repeats(s, &mut self.pool, driver, now_ms);
            udp::arm(s, driver);
        }
    }
}

/// Whether a completion token belongs to the voice UDP socket.
pub fn owns_token(t: Token) -> bool {
    udp::owns(t)
}

/// Installs shard `ctx.id`'s voice server on its bound sockets (called by the shard at start).
pub fn install<D: Driver>(
    ctx: &mut ShardCtx,
    driver: &mut D,
    setup: &VoiceSetup,
    tls_bound: SocketAddr,
    udp: SocketId,
    udp_bound: SocketAddr,
) {
    let endpoint = SocketAddr::new(setup.spec.public_ip, tls_bound.port());
    let mut server = VoiceServer::new(
        Arc::clone(&setup.tls.config),
        endpoint,
        setup.spec.public_ip,
        udp,
        udp_bound,
    );
    server.set_heartbeat_interval_ms(setup.spec.heartbeat_interval_ms);
    udp::arm(&mut server, driver);
    let id = ctx.id;
    ctx.voice.health = failover::HealthMonitor::new(
        ctx.shards(),
        failover::HealthConfig {
            interval_ms: setup.spec.health_interval_ms,
            misses_max: setup.spec.health_misses_max,
        },
    );
    ctx.voice.shared = Arc::clone(&setup.shared);
    ctx.voice.server = Some(server);
    if let Some(b) = setup.shared.bound.get(id) {
        let _ = b.set((tls_bound, udp_bound));
    }
    if let Some(s) = setup.shared.serving.get(id) {
        s.store(true, Ordering::Release);
    }
    ctx.voice.publish_load();
}

/// Once per turn (shard loop): a health round when one is due. Every shard pings every voice
/// server of the node through the mailboxes (a few tasks a second: control plane), and moves
/// the guilds it owns off a server that stays silent for `health_misses_max` rounds.
pub fn health_tick(ctx: &mut ShardCtx) {
    if !ctx.voice.health.due(ctx.now_ms) {
        return;
    }
    let shared = Arc::clone(&ctx.voice.shared);
    let mut actions = Vec::new();
    ctx.voice.health.poll(
        ctx.now_ms,
        |s| {
            shared
                .serving
                .get(s)
                .is_some_and(|b| b.load(Ordering::Acquire))
        },
        &mut actions,
    );
    let origin = ctx.id;
    for a in actions {
        match a {
            failover::HealthAction::Ping { shard, id } => {
                ctx.voice.stats.health_pings_sent += 1;
                // A full mailbox drops the ping: it counts as unanswered, which is fair for a
                // server that cannot take work.
                let _ = ctx.invoke_on(shard, move |t: &mut ShardCtx| answer_ping(t, origin, id));
            }
            other => on_health_change(ctx, other),
        }
    }
    owner::retry_stranded(ctx);
}

/// On the pinged shard: answers unless it has no voice server or its fault switch is on.
fn answer_ping(t: &mut ShardCtx, origin: usize, id: u64) {
    if t.voice.server.is_none() || t.voice.ignore_health_pings {
        return;
    }
    let me = t.id;
    let _ = t.invoke_on(origin, move |o: &mut ShardCtx| {
        o.voice.stats.health_pongs += 1;
        if let Some(change) = o.voice.health.on_pong(me, id) {
            on_health_change(o, change);
        }
    });
}

fn on_health_change(ctx: &mut ShardCtx, change: failover::HealthAction) {
    match change {
        failover::HealthAction::Down(s) => {
            ctx.voice.stats.health_servers_down += 1;
            tracing::warn!(
                shard = ctx.id,
                server = s,
                "voice server stopped answering health pings"
            );
            owner::move_guilds_off(ctx, s, owner::MoveReason::Down);
        }
        failover::HealthAction::Up(s) => {
            ctx.voice.stats.health_servers_up += 1;
            tracing::info!(
                shard = ctx.id,
                server = s,
                "voice server answers health pings again"
            );
        }
        failover::HealthAction::Ping { .. } => {}
    }
}

/// Op 4 from session `r`: forwarded to the guild's owner shard.
pub fn on_voice_state_update(ctx: &mut ShardCtx, r: SessionRef, v: VoiceStateUpdate) {
    let Some((session_id, user)) = ctx.gw.identity(r) else {
        ctx.voice.stats.state_refused += 1;
        return;
    };
    let req = owner::Op4 {
        guild: v.guild_id.0,
        channel: v.channel_id.map(|c| c.0),
        self_mute: v.self_mute,
        self_deaf: v.self_deaf,
        user,
        session_id,
        gateway_shard: ctx.id,
    };
    let owner = crate::app::owner_shard(req.guild, ctx.shards());
    ctx.invoke_on_reliably(owner, move |o: &mut ShardCtx| owner::apply(o, req));
}

/// Runs every loop turn: tells the owner shards of the guilds of every session that ended for
/// good here, one task per owner shard, so they drop the voice states those sessions held.
pub fn after_gateway_turn(ctx: &mut ShardCtx) {
    let mut ended = Vec::new();
    ctx.gw.take_ended_sessions(&mut ended);
    let shards = ctx.shards();
    for e in ended {
        let session_id: std::sync::Arc<str> = e.session_id.into();
        for owner in 0..shards {
            let guilds: Vec<u64> = e
                .guilds
                .iter()
                .copied()
                .filter(|&g| crate::app::owner_shard(g, shards) == owner)
                .collect();
            if guilds.is_empty() {
                continue;
            }
            let (user, sid) = (e.user, session_id.clone());
            ctx.invoke_on_reliably(owner, move |o: &mut ShardCtx| {
                owner::session_ended(o, user, &sid, &guilds);
            });
        }
    }
}

/// Renders every shard's voice counters (Prometheus text format), labelled by shard.
pub fn render_prometheus(shards: &[(usize, VoiceStats)], out: &mut String) {
    use std::fmt::Write;
    type Series = (
        &'static str,
        &'static str,
        &'static str,
        fn(&VoiceStats) -> u64,
    );
    const SERIES: &[Series] = &[
        (
            "voice_state_updates_total",
            "counter",
            "Op 4 commands applied on the guild owner shard.",
            |s| s.state_updates,
        ),
        (
            "voice_state_refused_total",
            "counter",
            "Op 4 commands refused (membership, CONNECT, user limit).",
            |s| s.state_refused,
        ),
        (
            "voice_connections_total",
            "counter",
            "Voice gateway connections accepted.",
            |s| s.connections,
        ),
        (
            "voice_identifies_total",
            "counter",
            "Voice sessions identified.",
            |s| s.identifies,
        ),
        (
            "voice_resumes_total",
            "counter",
            "Voice sessions resumed.",
            |s| s.resumes,
        ),
        (
            "voice_closes_total",
            "counter",
            "Voice sessions closed by the server.",
            |s| s.closes,
        ),
        (
            "voice_handshake_failures_total",
            "counter",
            "Failed TLS or WebSocket handshakes.",
            |s| s.handshake_failures,
        ),
        (
            "voice_participants",
            "gauge",
            "Participants assigned to the shard's voice server.",
            |s| s.participants,
        ),
        (
            "voice_datagrams_in_total",
            "counter",
            "UDP datagrams received.",
            |s| s.datagrams_in,
        ),
        (
            "voice_forwarded_total",
            "counter",
            "Encrypted copies sent to receivers.",
            |s| s.forwarded,
        ),
        (
            "voice_dropped_unknown_source_total",
            "counter",
            "Datagrams from unknown SSRCs or addresses.",
            |s| s.dropped_unknown_source,
        ),
        (
            "voice_dropped_bad_tag_total",
            "counter",
            "Datagrams failing authentication.",
            |s| s.dropped_bad_tag,
        ),
        (
            "voice_dropped_replay_total",
            "counter",
            "Replayed or too old datagrams.",
            |s| s.dropped_replay,
        ),
        (
            "voice_dropped_silence_total",
            "counter",
            "Opus silence frames not forwarded.",
            |s| s.dropped_silence,
        ),
        (
            "voice_dropped_muted_total",
            "counter",
            "Media of muted senders or senders without SPEAK.",
            |s| s.dropped_muted,
        ),
        (
            "voice_dropped_malformed_total",
            "counter",
            "Unparseable datagrams.",
            |s| s.dropped_malformed,
        ),
        (
            "voice_dropped_send_backlog_total",
            "counter",
            "Copies dropped for too many sends in flight.",
            |s| s.dropped_send_backlog,
        ),
        (
            "voice_keepalives_total",
            "counter",
            "UDP keepalives ignored.",
            |s| s.keepalives,
        ),
        (
            "voice_rtcp_absorbed_total",
            "counter",
            "RTCP packets absorbed.",
            |s| s.rtcp_absorbed,
        ),
        (
            "voice_discovery_answered_total",
            "counter",
            "IP discovery requests answered.",
            |s| s.discovery_answered,
        ),
        (
            "voice_send_errors_total",
            "counter",
            "UDP sends that failed.",
            |s| s.send_errors,
        ),
        (
            "voice_discovery_repeated_total",
            "counter",
            "IP discovery answers sent again to reconnecting participants.",
            |s| s.discovery_repeated,
        ),
        (
            "voice_failover_moves_started_total",
            "counter",
            "Guild moves off a drained or down voice server started by this owner shard.",
            |s| s.failover_moves_started,
        ),
        (
            "voice_failover_guilds_moved_total",
            "counter",
            "Guild moves finished by this owner shard.",
            |s| s.failover_guilds_moved,
        ),
        (
            "voice_failover_server_updates_total",
            "counter",
            "VOICE_SERVER_UPDATEs sent to users of moved guilds.",
            |s| s.failover_server_updates,
        ),
        (
            "voice_failover_users_dropped_total",
            "counter",
            "Users of moved guilds the new voice server could not take.",
            |s| s.failover_users_dropped,
        ),
        (
            "voice_failover_no_target_total",
            "counter",
            "Guild moves wanted with no other voice server available.",
            |s| s.failover_no_target,
        ),
        (
            "voice_failover_evicted_total",
            "counter",
            "Participants closed with 4014 because their guild moved to another voice server.",
            |s| s.failover_evicted,
        ),
        (
            "voice_health_pings_sent_total",
            "counter",
            "Health pings sent to voice servers.",
            |s| s.health_pings_sent,
        ),
        (
            "voice_health_pongs_total",
            "counter",
            "Health pings answered in time.",
            |s| s.health_pongs,
        ),
        (
            "voice_health_servers_down_total",
            "counter",
            "Voice servers declared down by this shard.",
            |s| s.health_servers_down,
        ),
        (
            "voice_health_servers_up_total",
            "counter",
            "Voice servers answering again after being declared down.",
            |s| s.health_servers_up,
        ),
        (
            "voice_health_servers_down",
            "gauge",
            "Voice servers this shard considers down.",
            |s| s.health_down_now,
        ),
        (
            "voice_server_drained",
            "gauge",
            "1 when the shard's voice server is drained.",
            |s| s.drained,
        ),
        (
            "voice_server_ignoring_health_pings",
            "gauge",
            "1 when the shard's voice server ignores health pings (fault injection).",
            |s| s.ignoring_health_pings,
        ),
    ];
    for (name, kind, help, f) in SERIES {
        let _ = writeln!(out, "# HELP hearth_{name} {help}");
        let _ = writeln!(out, "# TYPE hearth_{name} {kind}");
        for (shard, s) in shards {
            let _ = writeln!(out, "hearth_{name}{{shard=\"{shard}\"}} {}", f(s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_base_plus_index_or_ephemeral() {
        let mut spec = VoiceSpec::default();
        assert_eq!(spec.addrs(3).0.port(), 0);
        spec.tls_base_port = 50_000;
        spec.udp_base_port = 51_000;
        assert_eq!(
            spec.addrs(3),
            (
                "127.0.0.1:50003".parse().expect("addr"),
                "127.0.0.1:51003".parse().expect("addr")
            )
        );
    }

    #[test]
    fn metrics_render_every_series_per_shard() {
        let s = VoiceStats {
            dropped_replay: 7,
            ..VoiceStats::default()
        };
        let mut out = String::new();
        render_prometheus(&[(0, VoiceStats::default()), (1, s)], &mut out);
        assert!(out.contains("hearth_voice_dropped_replay_total{shard=\"1\"} 7\n"));
        assert!(out.contains("# TYPE hearth_voice_participants gauge\n"));
    }
}
