//! `hearth-bench` command line: one subcommand per scenario, common flags flattened into each.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::limits::{
    IDLE_CONNS_DEFAULT, IDLE_CONNS_PER_PROC_DEFAULT, IDLE_SETTLE_S_DEFAULT, PINGPONG_CONNS_DEFAULT,
    PINGPONG_RATE_DEFAULT, PINGPONG_REQUEST_BYTES_DEFAULT, PINGPONG_SPIN_US_DEFAULT,
};
use crate::server::Target;

/// `hearth`'s profile for benchmarks, shipped beside this crate.
pub const HEARTH_PROFILE_ARG: &str = concat!(
    "--profile=",
    env!("CARGO_MANIFEST_DIR"),
    "/hearth-profile.toml"
);

/// Hearth's benchmark harness.
#[derive(Debug, Parser)]
#[command(name = "hearth-bench", version, about)]
pub struct Cli {
    /// The scenario to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Scenarios. Planned next: gateway storm, fan-out, store, voice.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fixed-rate open-loop TCP echo: CPU per request and latency percentiles.
    Pingpong(PingpongArgs),
    /// Memory per idle connection (user-space RSS, kernel socket memory).
    IdleConns(IdleConnsArgs),
    /// Internal: one client process of idle-conns.
    #[command(hide = true)]
    IdleClient(IdleClientArgs),
    /// Gateway: N sessions connect + upgrade + Identify → READY, bounded in flight (vs Nchan).
    GwIdentifyStorm(crate::gateway::cli::GwStormArgs),
    /// Gateway: server memory per identified idle session, all alive at the end (vs Nchan).
    GwIdleSessions(crate::gateway::cli::GwIdleArgs),
    /// Gateway: one event fanned out to every session: deliveries per CPU-second, latency, loss
    /// (vs Nchan).
    GwBroadcast(crate::gateway::cli::GwBroadcastArgs),
    /// Gateway: guild messages fanned out to 1k/5k/10k members at fixed rates (vs Nchan).
    GwFanout(crate::gateway::fanout::GwFanoutArgs),
    /// Voice: packets forwarded per server CPU-second, added latency and loss over rooms ×
    /// participants × speakers (vs Janus VideoRoom with SRTP forwarders).
    VoiceForward(crate::voice::VoiceForwardArgs),
    /// Internal: one client process of the gateway scenarios.
    #[command(hide = true)]
    GwClient(crate::gateway::cli::GwClientArgs),
}

/// Flags every scenario takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Where result folders are written.
    #[arg(long, default_value = "bench/results")]
    pub out_dir: PathBuf,
    /// Core the server under test is pinned to.
    #[arg(long, default_value_t = 0)]
    pub server_core: usize,
    /// Core the load generator is pinned to.
    #[arg(long, default_value_t = 1)]
    pub client_core: usize,
    /// Measured window, seconds.
    #[arg(long, default_value_t = 20)]
    pub duration_s: u64,
    /// Load before the measured window, seconds.
    #[arg(long, default_value_t = 5)]
    pub warmup_s: u64,
    /// Nice value for the server and the load generator (e.g. -19 on a machine shared with
    /// builds; negative needs root).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub nice: i32,
    /// Servers to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "hearth,monoio,glommio")]
    pub targets: Vec<Target>,
    /// The `hearth` binary (default: next to this executable).
    #[arg(long)]
    pub hearth_bin: Option<PathBuf>,
    /// Extra argument for `hearth` (repeatable); the default selects bench/hearth-profile.toml
    /// (room for 20000 connections on one shard).
    #[arg(long, allow_hyphen_values = true, default_value = HEARTH_PROFILE_ARG)]
    pub hearth_arg: Vec<String>,
}

/// `pingpong` flags.
#[derive(Debug, Clone, Args)]
pub struct PingpongArgs {
    /// Common flags.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Connections (one request in flight on each).
    #[arg(long, default_value_t = PINGPONG_CONNS_DEFAULT)]
    pub conns: u32,
    /// Total offered rate, requests per second.
    #[arg(long, default_value_t = PINGPONG_RATE_DEFAULT)]
    pub rate: u64,
    /// Request size in bytes (echoed back).
    #[arg(long, default_value_t = PINGPONG_REQUEST_BYTES_DEFAULT)]
    pub request_bytes: usize,
    /// The load generator busy-polls when the next send is due within this many µs (0: always
    /// sleep in epoll). At 40k req/s the default keeps it spinning on its core.
    #[arg(long, default_value_t = PINGPONG_SPIN_US_DEFAULT)]
    pub client_spin_us: u64,
}

/// `idle-conns` flags (`--duration-s`/`--warmup-s` are not used).
#[derive(Debug, Clone, Args)]
pub struct IdleConnsArgs {
    /// Common flags.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Idle connections to open.
    #[arg(long, default_value_t = IDLE_CONNS_DEFAULT)]
    pub conns: u32,
    /// Connections per client subprocess.
    #[arg(long, default_value_t = IDLE_CONNS_PER_PROC_DEFAULT)]
    pub conns_per_client: u32,
    /// Seconds to let the server settle before each memory reading.
    #[arg(long, default_value_t = IDLE_SETTLE_S_DEFAULT)]
    pub settle_s: u64,
}

/// `idle-client` flags (internal).
#[derive(Debug, Clone, Args)]
pub struct IdleClientArgs {
    /// Server echo address.
    #[arg(long)]
    pub addr: SocketAddr,
    /// Connections to open and hold.
    #[arg(long)]
    pub conns: u32,
    /// Loopback source address.
    #[arg(long, default_value = "127.0.0.2")]
    pub source_ip: Ipv4Addr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_foundation_benchmark() {
        let cli = Cli::try_parse_from(["hearth-bench", "pingpong"]).unwrap();
        let Command::Pingpong(a) = cli.command else {
            panic!("expected pingpong");
        };
        assert_eq!((a.conns, a.rate, a.request_bytes), (1000, 40_000, 64));
        assert_eq!(a.common.targets, Target::ALL.to_vec());
        assert_eq!((a.common.server_core, a.common.client_core), (0, 1));
        assert_eq!(a.common.hearth_arg, vec![HEARTH_PROFILE_ARG.to_string()]);
        assert!(
            std::path::Path::new(HEARTH_PROFILE_ARG.trim_start_matches("--profile=")).is_file()
        );
    }

    #[test]
    fn hearth_args_pass_through_with_leading_dashes() {
        let cli = Cli::try_parse_from([
            "hearth-bench",
            "pingpong",
            "--hearth-arg",
            "--log-level=debug",
            "--hearth-arg=--profile=x.toml",
        ])
        .unwrap();
        let Command::Pingpong(a) = cli.command else {
            panic!("expected pingpong");
        };
        assert_eq!(
            a.common.hearth_arg,
            ["--log-level=debug", "--profile=x.toml"]
        );
    }

    #[test]
    fn targets_are_a_comma_list() {
        let cli = Cli::try_parse_from([
            "hearth-bench",
            "idle-conns",
            "--targets",
            "monoio,glommio",
            "--conns",
            "100",
        ])
        .unwrap();
        let Command::IdleConns(a) = cli.command else {
            panic!("expected idle-conns");
        };
        assert_eq!(a.common.targets, vec![Target::Monoio, Target::Glommio]);
        assert_eq!(a.conns, 100);
        assert_eq!(a.common.nice, 0);
        let cli = Cli::try_parse_from(["hearth-bench", "pingpong", "--nice", "-19"]).unwrap();
        let Command::Pingpong(a) = cli.command else {
            panic!("expected pingpong");
        };
        assert_eq!(a.common.nice, -19);
        assert!(Cli::try_parse_from(["hearth-bench", "pingpong", "--targets", "tokio"]).is_err());
    }
}
