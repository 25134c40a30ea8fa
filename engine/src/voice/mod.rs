//! Voice (issue 6): main-gateway op 4 on the guild's owner shard, and on every shard a voice
//! server: the voice gateway over TLS on the shard's own port and the SFU behind the shard's
//! own UDP port (base + shard index), so every packet of a room lands on the core that owns it.
//!
//! - `owner.rs`: voice states per guild, permission and user-limit checks, VOICE_STATE_UPDATE,
//!   the voice server choice, VOICE_SERVER_UPDATE.
//! - `server.rs`: participants, voice gateway sessions (`sfu::VoiceSession`), relays, the SFU.
//! - `tls.rs`: rustls (ring) configuration and the sans-IO TLS pipe of one connection.
//! - `udp.rs`: the UDP socket on the shard's driver.
//!
//! The shard loop (`shard.rs`) calls the `VoiceState` hooks below for connections of the
//! `Service::VoiceTls` listener and for completions whose token [`owns_token`] claims.

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
    /// Each shard's bound (TLS, UDP) addresses, once it started.
    pub bound: Vec<OnceLock<(SocketAddr, SocketAddr)>>,
}

impl VoiceShared {
    /// For a node of `shards` shards.
    pub fn new(shards: usize) -> Arc<VoiceShared> {
        Arc::new(VoiceShared {
            load: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            serving: (0..shards).map(|_| AtomicBool::new(false)).collect(),
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
        s.state_updates = self.stats.state_updates;
        s.state_refused = self.stats.state_refused;
        s
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

    /// Once per turn: session clocks, then the UDP receive re-armed if it ended.
    pub fn pump<D: Driver>(&mut self, driver: &mut D, now_ms: u64) {
        if let Some(s) = self.server.as_mut() {
            s.sweep(now_ms);
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
