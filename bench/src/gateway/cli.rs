//! Flags of the gateway subcommands (`gw-identify-storm`, `gw-idle-sessions`, `gw-broadcast`
//! and the internal `gw-client`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Args;

use crate::cli::HEARTH_PROFILE_ARG;
use crate::gateway::limits::{
    BROADCAST_DRAIN_S, BROADCAST_EVENT_BYTES_DEFAULT, BROADCAST_EVENTS_DEFAULT,
    BROADCAST_RATE_DEFAULT, BROADCAST_SESSIONS_DEFAULT, BROADCAST_WARMUP_EVENTS_DEFAULT,
    IDLE_HOLD_S_DEFAULT, IDLE_SESSIONS_DEFAULT, SESSIONS_PER_CLIENT_DEFAULT, SHARDS_DEFAULT,
    STORM_INFLIGHT_DEFAULT, STORM_SESSIONS_DEFAULT,
};
use crate::gateway::servers::{NCHAN_MODULE_DEFAULT, NGINX_BIN_DEFAULT};
use crate::gateway::target::GwTarget;
use crate::limits::IDLE_SETTLE_S_DEFAULT;

/// Flags every gateway scenario takes.
#[derive(Debug, Clone, Args)]
pub struct GwCommonArgs {
    /// Where result folders are written.
    #[arg(long, default_value = "bench/results")]
    pub out_dir: PathBuf,
    /// Core the server under test is pinned to (all its threads or processes).
    #[arg(long, default_value_t = 0)]
    pub server_core: usize,
    /// Core the harness and its client processes are pinned to.
    #[arg(long, default_value_t = 1)]
    pub client_core: usize,
    /// Nice value for the servers and clients (e.g. -19 on a machine shared with builds;
    /// negative needs root).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub nice: i32,
    /// Servers to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "hearth,nchan")]
    pub targets: Vec<GwTarget>,
    /// Hearth shards, and nginx worker processes (the peer gets as many as Hearth).
    #[arg(long, default_value_t = SHARDS_DEFAULT)]
    pub shards: u32,
    /// The `hearth` binary (default: next to this executable).
    #[arg(long)]
    pub hearth_bin: Option<PathBuf>,
    /// Extra argument for `hearth` (repeatable); the default selects bench/hearth-profile.toml.
    #[arg(long, allow_hyphen_values = true, default_value = HEARTH_PROFILE_ARG)]
    pub hearth_arg: Vec<String>,
    /// The nginx binary.
    #[arg(long, default_value = NGINX_BIN_DEFAULT)]
    pub nginx_bin: PathBuf,
    /// The Nchan module nginx loads.
    #[arg(long, default_value = NCHAN_MODULE_DEFAULT)]
    pub nchan_module: PathBuf,
    /// Sessions per client process (each process holds at most 19500 descriptors).
    #[arg(long, default_value_t = SESSIONS_PER_CLIENT_DEFAULT)]
    pub sessions_per_client: u32,
    /// Seconds to let the server settle before a memory reading or a measured phase.
    #[arg(long, default_value_t = IDLE_SETTLE_S_DEFAULT)]
    pub settle_s: u64,
    /// Handshakes in flight at once, over all client processes.
    #[arg(long, default_value_t = STORM_INFLIGHT_DEFAULT)]
    pub inflight: u32,
}

/// `gw-identify-storm` flags.
#[derive(Debug, Clone, Args)]
pub struct GwStormArgs {
    /// Common flags.
    #[command(flatten)]
    pub common: GwCommonArgs,
    /// Sessions to open (connect + upgrade + Identify → READY).
    #[arg(long, default_value_t = STORM_SESSIONS_DEFAULT)]
    pub sessions: u32,
}

/// `gw-idle-sessions` flags.
#[derive(Debug, Clone, Args)]
pub struct GwIdleArgs {
    /// Common flags.
    #[command(flatten)]
    pub common: GwCommonArgs,
    /// Identified idle sessions to hold.
    #[arg(long, default_value_t = IDLE_SESSIONS_DEFAULT)]
    pub sessions: u32,
    /// Seconds to hold the sessions after the memory reading before checking they are alive.
    #[arg(long, default_value_t = IDLE_HOLD_S_DEFAULT)]
    pub hold_s: u64,
}

/// `gw-broadcast` flags.
#[derive(Debug, Clone, Args)]
pub struct GwBroadcastArgs {
    /// Common flags.
    #[command(flatten)]
    pub common: GwCommonArgs,
    /// Identified sessions (Nchan: subscribers of one channel) receiving every event.
    #[arg(long, default_value_t = BROADCAST_SESSIONS_DEFAULT)]
    pub sessions: u32,
    /// Measured events.
    #[arg(long, default_value_t = BROADCAST_EVENTS_DEFAULT)]
    pub events: u32,
    /// Events before the measured window (checked for loss, latency not recorded).
    #[arg(long, default_value_t = BROADCAST_WARMUP_EVENTS_DEFAULT)]
    pub warmup_events: u32,
    /// Events published per second (0: each as soon as the previous one is acknowledged).
    #[arg(long, default_value_t = BROADCAST_RATE_DEFAULT)]
    pub rate: f64,
    /// Size of one delivered dispatch, bytes (padded JSON).
    #[arg(long, default_value_t = BROADCAST_EVENT_BYTES_DEFAULT)]
    pub event_bytes: usize,
    /// Seconds to wait for every client to see the last event.
    #[arg(long, default_value_t = BROADCAST_DRAIN_S)]
    pub drain_s: u64,
}

/// `gw-client` flags (internal: one client process).
#[derive(Debug, Clone, Args)]
pub struct GwClientArgs {
    /// Protocol to speak.
    #[arg(long)]
    pub target: GwTarget,
    /// Server address.
    #[arg(long)]
    pub addr: SocketAddr,
    /// Upgrade path and query.
    #[arg(long)]
    pub path: String,
    /// File of tokens, one per line (Hearth).
    #[arg(long)]
    pub tokens_file: Option<PathBuf>,
    /// First line of the tokens file this process uses.
    #[arg(long, default_value_t = 0)]
    pub first: u32,
    /// Sessions to open.
    #[arg(long)]
    pub sessions: u32,
    /// Loopback source address.
    #[arg(long, default_value = "127.0.0.2")]
    pub source_ip: Ipv4Addr,
    /// Handshakes in flight at once in this process.
    #[arg(long, default_value_t = STORM_INFLIGHT_DEFAULT)]
    pub inflight: u32,
    /// Seed of keys, masks and heartbeat jitter.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl GwClientArgs {
    /// The client configuration, with the tokens read from the file.
    pub fn into_config(self) -> Result<crate::gateway::client::ClientConfig, crate::BenchError> {
        let tokens = match (&self.tokens_file, self.target) {
            (Some(f), _) => crate::gateway::client::read_tokens(f, self.first, self.sessions)?,
            (None, GwTarget::Nchan) => Vec::new(),
            (None, GwTarget::Hearth) => {
                return Err(crate::BenchError::Invalid(
                    "--tokens-file is needed for hearth sessions".into(),
                ));
            }
        };
        Ok(crate::gateway::client::ClientConfig {
            target: self.target,
            addr: self.addr,
            path: self.path,
            tokens,
            sessions: self.sessions,
            source_ip: self.source_ip,
            inflight: self.inflight,
            seed: self.seed,
        })
    }
}
