//! The node's configuration: the TOML file, its defaults, the command line, and how they merge.
//!
//! `hearth` runs with no file at all ([`Config::default`] is a working single-node dev setup);
//! a file overrides the defaults, and command-line flags override the file. Everything is checked
//! before any socket is opened, and every error names the field (or flag), its value and the
//! reason. The hardware profile is a separate file (see [`crate::profile`]) because it describes
//! the machine, not the deployment.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::http::HttpLimits;
use crate::profile::{FieldError, HardwareProfile, ProfileError, SHARDS_MAX, toml_error_message};
use crate::snowflake;

/// Node names and regions are used in metrics labels and URLs: keep them short.
pub const NAME_BYTES_MAX: usize = 64;
/// Smallest header limit that still admits a request with a few ordinary headers.
pub const HTTP_HEADER_BYTES_MIN: u32 = 512;
/// Request heads larger than this are an attack, not a client.
pub const HTTP_HEADER_BYTES_MAX: u32 = 1 << 20;
/// Bodies are JSON documents (no uploads through this path).
pub const HTTP_BODY_BYTES_MAX: u32 = 256 << 20;
/// Every timeout is at least a millisecond and at most an hour.
pub const TIMEOUT_MS_MAX: u32 = 3_600_000;
/// Discord closes the gateway when a client sends a payload over 4096 bytes; we allow up to 1 MiB.
pub const GATEWAY_PAYLOAD_BYTES_MIN: u32 = 1024;
/// Largest gateway payload a config may allow.
pub const GATEWAY_PAYLOAD_BYTES_MAX: u32 = 1 << 20;
/// Heartbeat intervals a config may choose (Discord uses 41250 ms).
pub const HEARTBEAT_INTERVAL_MS_MIN: u32 = 1000;
/// Heartbeat intervals a config may choose.
pub const HEARTBEAT_INTERVAL_MS_MAX: u32 = 600_000;
/// One group commit writes at least a block.
pub const GROUP_COMMIT_BYTES_MIN: u32 = 4096;
/// One group commit writes at most this much (one aligned buffer).
pub const GROUP_COMMIT_BYTES_MAX: u32 = 64 << 20;
/// A write waits at most this long for others to join its group commit.
pub const GROUP_COMMIT_WAIT_US_MAX: u32 = 100_000;
/// Largest commit log segment.
pub const SEGMENT_BYTES_MAX: u64 = 4 << 30;
/// A token secret shorter than this is guessable.
pub const TOKEN_SECRET_BYTES_MIN: usize = 32;
/// A token secret longer than this is a mistake (a pasted file, not a key).
pub const TOKEN_SECRET_BYTES_MAX: usize = 1024;
/// A control secret shorter than this is guessable.
pub const CONTROL_SECRET_BYTES_MIN: usize = 16;
/// A control secret longer than this would not fit comfortably in one header line.
pub const CONTROL_SECRET_BYTES_MAX: usize = 512;

const _: () = assert!(HTTP_HEADER_BYTES_MAX <= HTTP_BODY_BYTES_MAX);
const _: () = assert!(GROUP_COMMIT_BYTES_MAX as u64 <= SEGMENT_BYTES_MAX);
const _: () = assert!(GATEWAY_PAYLOAD_BYTES_MIN >= 1024);

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {origin}: cannot read: {source}")]
    Read {
        /// The path as given.
        origin: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown, missing or mistyped keys.
    #[error("config {origin}: {message}")]
    Parse {
        /// The path.
        origin: String,
        /// The line, key and problem.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("config {origin}: {error}")]
    Invalid {
        /// The path, or `defaults`, plus `command line` when flags were applied.
        origin: String,
        /// The field and reason.
        error: FieldError,
    },
    /// A command-line flag cannot be honoured.
    #[error("{flag} {value}: {reason}")]
    Flag {
        /// The flag, e.g. `--shards`.
        flag: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: String,
    },
    /// The hardware profile is missing or invalid.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The profile's cores cannot be used on this machine.
    #[error("hardware profile {origin}: {reason}")]
    Placement {
        /// Where the profile came from.
        origin: String,
        /// Why no shard can be placed.
        reason: String,
    },
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `[node]`: who this node is in the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Unique node name (metrics label, service registry key).
    pub name: String,
    /// The Snowflake worker id, unique per node in the cluster (0..32).
    pub worker_id: u32,
    /// Region (for voice server choice across nodes).
    pub region: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "hearth-1".to_owned(),
            worker_id: 0,
            region: "local".to_owned(),
        }
    }
}

/// `[listen]`: addresses the node serves on and advertises.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// HTTP (REST, control API, gateway upgrades); one SO_REUSEPORT listener per shard.
    #[serde(deserialize_with = "socket_addr")]
    pub http_addr: SocketAddr,
    /// Public gateway URL given to clients (`ws://` or `wss://`); derived from `http_addr` when absent.
    pub gateway_url: Option<String>,
    /// Shard i's voice UDP port is this plus i; 0 lets the kernel choose (tests, dev).
    pub voice_udp_base_port: u16,
    /// Shard i's voice gateway (TLS) port is this plus i; 0 lets the kernel choose (issue 6).
    pub voice_tls_base_port: u16,
    /// The address voice clients send UDP to (returned by IP discovery and voice server updates).
    pub voice_public_ip: IpAddr,
    /// A raw TCP echo listener, used by benchmarks to measure the loop itself.
    #[serde(deserialize_with = "optional_socket_addr")]
    pub echo_addr: Option<SocketAddr>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            http_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            gateway_url: None,
            voice_udp_base_port: 0,
            voice_tls_base_port: 0,
            voice_public_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            echo_addr: None,
        }
    }
}

/// A socket address, with an error that shows the expected form.
fn socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not a socket address: expected IP:PORT, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\""
        ))
    })
}

/// [`socket_addr`] for an optional key (absent keys never reach it: the section has defaults).
fn optional_socket_addr<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    socket_addr(d).map(Some)
}

/// `[storage]`: where and how the message store writes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory holding every shard's store (created if missing).
    pub data_dir: PathBuf,
    /// Most bytes written by one group commit.
    pub group_commit_max_bytes: u32,
    /// Most microseconds a write waits for others to join its group commit (0: never waits).
    pub group_commit_max_wait_us: u32,
    /// Size at which a commit log segment is closed and a new one started.
    pub segment_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./data"),
            group_commit_max_bytes: 1 << 20,
            group_commit_max_wait_us: 1000,
            segment_bytes: 64 << 20,
        }
    }
}

/// `[limits]`: per-request and per-connection bounds.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most bytes of HTTP request line plus headers.
    pub http_header_bytes_max: u32,
    /// Most bytes of HTTP body.
    pub http_body_bytes_max: u32,
    /// A request's headers must be complete this long after its first byte.
    pub http_header_timeout_ms: u32,
    /// An idle keep-alive connection is closed after this long.
    pub http_keepalive_idle_ms: u32,
    /// On shutdown, connections still open this long after draining starts are closed.
    pub drain_timeout_ms: u32,
    /// Largest gateway payload a client may send (Discord: 4096).
    pub gateway_payload_bytes_max: u32,
    /// Heartbeat interval sent in Hello (Discord: 41250).
    pub gateway_heartbeat_interval_ms: u32,
    /// Whether REST requests are rate limited per route and token (off only for load tests).
    pub rest_rate_limits: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            http_header_bytes_max: 8192,
            http_body_bytes_max: 1 << 20,
            http_header_timeout_ms: 10_000,
            http_keepalive_idle_ms: 120_000,
            drain_timeout_ms: 10_000,
            gateway_payload_bytes_max: 4096,
            gateway_heartbeat_interval_ms: 41_250,
            rest_rate_limits: true,
        }
    }
}

impl LimitsConfig {
    /// The limits the HTTP parser applies.
    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            header_bytes_max: self.http_header_bytes_max as usize,
            body_bytes_max: self.http_body_bytes_max as usize,
        }
    }
}

/// `[tls]`: certificate and key (PEM) for `wss://` and `https://`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_path: PathBuf,
    /// PEM private key.
    pub key_path: PathBuf,
}

/// A secret key; its bytes are never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Decode hex digits (either case) into a secret of 32 to 1024 bytes.
    pub fn from_hex(hex: &str) -> Result<Secret, &'static str> {
        const REASON: &str = "must be an even number of hex digits, 64 to 2048 (32 to 1024 bytes)";
        let digits = hex.as_bytes();
        if !digits.len().is_multiple_of(2)
            || !(TOKEN_SECRET_BYTES_MIN..=TOKEN_SECRET_BYTES_MAX).contains(&(digits.len() / 2))
        {
            return Err(REASON);
        }
        let nibble = |c: u8| (c as char).to_digit(16).ok_or(REASON);
        digits
            .chunks_exact(2)
            .map(|pair| match pair {
                [hi, lo] => Ok(((nibble(*hi)? << 4) | nibble(*lo)?) as u8),
                _ => Err(REASON),
            })
            .collect::<Result<Vec<u8>, _>>()
            .map(Secret)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let hex = String::deserialize(d)?;
        Secret::from_hex(&hex).map_err(serde::de::Error::custom)
    }
}

/// The bearer secret of the control and admin APIs; its text is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ControlSecret(String);

impl ControlSecret {
    /// Check a secret: 16 to 512 visible ASCII characters (it travels in an HTTP header).
    pub fn new(text: &str) -> Result<ControlSecret, &'static str> {
        let ok_len = (CONTROL_SECRET_BYTES_MIN..=CONTROL_SECRET_BYTES_MAX).contains(&text.len());
        if ok_len && text.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(ControlSecret(text.to_owned()))
        } else {
            Err("must be 16 to 512 visible ASCII characters (no spaces)")
        }
    }

    /// The bytes clients send after `Authorization: Bearer `.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for ControlSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ControlSecret(<{} bytes redacted>)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for ControlSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ControlSecret::new(&text).map_err(serde::de::Error::custom)
    }
}

/// `[secrets]`: keys the node signs with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// HMAC key for session tokens, hex; when absent the node generates one per data directory.
    pub token_secret: Option<Secret>,
    /// Bearer secret of `/control/*` and `/admin/*`; when absent those endpoints are open, which
    /// is only allowed while `listen.http_addr` is a loopback address.
    pub control_secret: Option<ControlSecret>,
}

/// `[log]`: how the node logs.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Line format.
    pub format: LogFormat,
    /// A tracing filter: a level (`info`) or directives (`info,engine::shard=debug`).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".to_owned(),
        }
    }
}

/// The whole configuration file; every section and key is optional.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Hardware profile: a built-in name (`dev`, `pop-1s16c`, `pop-2s64c`) or a path to a
    /// `.toml` file, relative to the config file's directory.
    pub profile: String,
    /// `[node]`.
    pub node: NodeConfig,
    /// `[listen]`.
    pub listen: ListenConfig,
    /// `[storage]`.
    pub storage: StorageConfig,
    /// `[limits]`.
    pub limits: LimitsConfig,
    /// `[tls]`; plain `ws://` and `http://` when absent.
    pub tls: Option<TlsConfig>,
    /// `[secrets]`.
    pub secrets: SecretsConfig,
    /// `[log]`.
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            profile: "dev".to_owned(),
            node: NodeConfig::default(),
            listen: ListenConfig::default(),
            storage: StorageConfig::default(),
            limits: LimitsConfig::default(),
            tls: None,
            secrets: SecretsConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            origin: origin.clone(),
            source,
        })?;
        Config::from_toml(&origin, &text)
    }

    /// Parse and validate config TOML; `origin` names it in errors.
    pub fn from_toml(origin: &str, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: toml_error_message(text, &e),
        })?;
        config.validate().map_err(|error| ConfigError::Invalid {
            origin: origin.to_owned(),
            error,
        })?;
        Ok(config)
    }

    /// Check every field's range and how fields relate; the first problem found is returned.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.profile.trim().is_empty() {
            return Err(FieldError::new(
                "profile",
                "\"\"",
                "must name a profile or a .toml file",
            ));
        }
        self.validate_node()?;
        self.validate_listen()?;
        self.validate_storage()?;
        self.validate_limits()?;
        if let Some(tls) = &self.tls {
            for (field, path) in [
                ("tls.cert_path", &tls.cert_path),
                ("tls.key_path", &tls.key_path),
            ] {
                if path.as_os_str().is_empty() {
                    return Err(FieldError::new(field, "\"\"", "must be a file path"));
                }
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(FieldError::new(
                "log.level",
                format!("{:?}", self.log.level),
                format!("not a level or filter directive ({e})"),
            ));
        }
        Ok(())
    }

    fn validate_node(&self) -> Result<(), FieldError> {
        if self.node.worker_id >= u32::from(snowflake::WORKERS_MAX) {
            return Err(FieldError::new(
                "node.worker_id",
                self.node.worker_id,
                "must be below 32 (Snowflake ids hold 5 worker bits)",
            ));
        }
        for (field, value) in [
            ("node.name", &self.node.name),
            ("node.region", &self.node.region),
        ] {
            let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
            if value.is_empty() || value.len() > NAME_BYTES_MAX || !value.chars().all(ok_char) {
                return Err(FieldError::new(
                    field,
                    format!("{value:?}"),
                    "must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' or '.'",
                ));
            }
        }
        Ok(())
    }

    fn validate_listen(&self) -> Result<(), FieldError> {
        let l = &self.listen;
        if let Some(echo) = l.echo_addr
            && echo.port() != 0
            && echo == l.http_addr
        {
            return Err(FieldError::new(
                "listen.echo_addr",
                format!("\"{echo}\""),
                "must differ from listen.http_addr",
            ));
        }
        if let Some(url) = &l.gateway_url {
            let rest = url
                .strip_prefix("wss://")
                .or_else(|| url.strip_prefix("ws://"));
            let host_ok = rest.is_some_and(|r| {
                let host = r.split('/').next().unwrap_or("");
                !host.is_empty() && !r.contains(char::is_whitespace)
            });
            if !host_ok {
                return Err(FieldError::new(
                    "listen.gateway_url",
                    format!("{url:?}"),
                    "must be a ws:// or wss:// URL with a host",
                ));
            }
        }
        // An open control API on a reachable address would let anyone mint tokens and guilds.
        if !l.http_addr.ip().is_loopback() && self.secrets.control_secret.is_none() {
            return Err(FieldError::new(
                "secrets.control_secret",
                "(absent)",
                format!(
                    "required when listen.http_addr ({}) is not a loopback address",
                    l.http_addr
                ),
            ));
        }
        if l.voice_public_ip.is_unspecified() {
            return Err(FieldError::new(
                "listen.voice_public_ip",
                format!("\"{}\"", l.voice_public_ip),
                "must be an address clients can reach, not 0.0.0.0 or ::",
            ));
        }
        Ok(())
    }

    fn validate_storage(&self) -> Result<(), FieldError> {
        let s = &self.storage;
        if s.data_dir.as_os_str().is_empty() {
            return Err(FieldError::new(
                "storage.data_dir",
                "\"\"",
                "must be a directory path",
            ));
        }
        range(
            "storage.group_commit_max_bytes",
            s.group_commit_max_bytes,
            GROUP_COMMIT_BYTES_MIN,
            GROUP_COMMIT_BYTES_MAX,
        )?;
        range(
            "storage.group_commit_max_wait_us",
            s.group_commit_max_wait_us,
            0,
            GROUP_COMMIT_WAIT_US_MAX,
        )?;
        if s.segment_bytes < u64::from(s.group_commit_max_bytes)
            || s.segment_bytes > SEGMENT_BYTES_MAX
        {
            return Err(FieldError::new(
                "storage.segment_bytes",
                s.segment_bytes,
                format!(
                    "must be between storage.group_commit_max_bytes ({}) and {SEGMENT_BYTES_MAX}",
                    s.group_commit_max_bytes
                ),
            ));
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), FieldError> {
        let l = &self.limits;
        range(
            "limits.http_header_bytes_max",
            l.http_header_bytes_max,
            HTTP_HEADER_BYTES_MIN,
            HTTP_HEADER_BYTES_MAX,
        )?;
        range(
            "limits.http_body_bytes_max",
            l.http_body_bytes_max,
            1,
            HTTP_BODY_BYTES_MAX,
        )?;
        if l.http_header_bytes_max > l.http_body_bytes_max {
            return Err(FieldError::new(
                "limits.http_header_bytes_max",
                l.http_header_bytes_max,
                format!(
                    "must not exceed limits.http_body_bytes_max ({})",
                    l.http_body_bytes_max
                ),
            ));
        }
        range(
            "limits.http_header_timeout_ms",
            l.http_header_timeout_ms,
            1,
            TIMEOUT_MS_MAX,
        )?;
        range(
            "limits.http_keepalive_idle_ms",
            l.http_keepalive_idle_ms,
            1,
            TIMEOUT_MS_MAX,
        )?;
        range(
            "limits.drain_timeout_ms",
            l.drain_timeout_ms,
            1,
            TIMEOUT_MS_MAX,
        )?;
        range(
            "limits.gateway_payload_bytes_max",
            l.gateway_payload_bytes_max,
            GATEWAY_PAYLOAD_BYTES_MIN,
            GATEWAY_PAYLOAD_BYTES_MAX,
        )?;
        range(
            "limits.gateway_heartbeat_interval_ms",
            l.gateway_heartbeat_interval_ms,
            HEARTBEAT_INTERVAL_MS_MIN,
            HEARTBEAT_INTERVAL_MS_MAX,
        )?;
        Ok(())
    }

    /// Make relative paths in the file (data directory, TLS files) relative to `dir`, the config
    /// file's directory, so that a node started from any working directory finds the same files.
    /// The profile reference is resolved against `dir` separately (it may be a built-in name).
    pub fn rebase_paths(&mut self, dir: &Path) {
        if dir.as_os_str().is_empty() || dir == Path::new(".") {
            return;
        }
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        rebase(&mut self.storage.data_dir);
        if let Some(tls) = &mut self.tls {
            rebase(&mut tls.cert_path);
            rebase(&mut tls.key_path);
        }
    }

    /// The gateway URL clients are told to connect to: `listen.gateway_url`, or derived from
    /// `http_addr` (a wildcard address becomes loopback, `wss` when TLS is configured).
    pub fn gateway_url(&self) -> String {
        if let Some(url) = &self.listen.gateway_url {
            return url.clone();
        }
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let mut addr = self.listen.http_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        format!("{scheme}://{addr}")
    }
}

fn range(field: &str, value: u32, min: u32, max: u32) -> Result<(), FieldError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            value,
            format!("must be between {min} and {max}"),
        ))
    }
}

/// The `hearth` command line; flags override the config file.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "hearth",
    version,
    about = "Hearth: a shard-per-core community chat and voice node"
)]
pub struct Cli {
    /// Config file (TOML); built-in defaults when absent.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Hardware profile: a built-in name or a .toml path (relative to the current directory).
    #[arg(long, value_name = "NAME_OR_FILE")]
    pub profile: Option<String>,
    /// HTTP listen address (overrides listen.http_addr).
    #[arg(long, value_name = "ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Raw TCP echo listen address, for benchmarks (overrides listen.echo_addr).
    #[arg(long, value_name = "ADDR")]
    pub echo_addr: Option<SocketAddr>,
    /// Data directory (overrides storage.data_dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Number of shards (default: the profile's cores available to this process).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(SHARDS_MAX)))]
    pub shards: Option<u32>,
    /// Log format (overrides log.format).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log level or filter (overrides log.level).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Write the bound addresses to this file once every shard is serving (for scripts and tests).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// A subcommand instead of running the node.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands of `hearth`.
#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Validate a config file and the hardware profile it names; prints "ok" or the error.
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
}

/// Where one shard runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardPlacement {
    /// Shard index, 0-based (also the Snowflake shard id and the voice port offset).
    pub index: u32,
    /// The CPU to pin the shard's thread to (`None` when the profile does not pin).
    pub core: Option<u32>,
    /// The NUMA node the shard should allocate on, if the profile says.
    pub numa_node: Option<u32>,
}

/// The configuration the node runs with: file, defaults and flags merged, profile loaded, shards placed.
#[derive(Clone, Debug)]
pub struct ResolvedConfig {
    /// The merged, validated configuration (`profile` holds the reference actually used).
    pub config: Config,
    /// The hardware profile.
    pub profile: HardwareProfile,
    /// Where the profile came from (a path, or `NAME (built-in)`).
    pub profile_origin: String,
    /// One entry per shard, in shard order.
    pub shards: Vec<ShardPlacement>,
    /// Where to write the ready file, if asked.
    pub ready_file: Option<PathBuf>,
}

impl ResolvedConfig {
    /// Number of shards.
    pub fn shard_count(&self) -> u32 {
        // At most SHARDS_MAX entries.
        u32::try_from(self.shards.len()).unwrap_or(SHARDS_MAX)
    }

    /// The voice UDP port of shard `index` (0: ephemeral).
    pub fn voice_udp_port(&self, index: u32) -> u16 {
        match self.config.listen.voice_udp_base_port {
            0 => 0,
            // resolve() checked that base + shard count - 1 fits in a port.
            base => u16::try_from(u32::from(base) + index).unwrap_or(0),
        }
    }
}

impl Cli {
    /// Merge the config file (or defaults), the flags and the hardware profile, and place shards
    /// on the CPUs this process may use. The subcommand, if any, is ignored.
    pub fn resolve(self) -> Result<ResolvedConfig, ConfigError> {
        let cpus = available_cpus();
        self.resolve_on(&cpus)
    }

    /// [`Cli::resolve`] with the available CPU ids given (for tests and planning).
    pub fn resolve_on(self, available_cpus: &[u32]) -> Result<ResolvedConfig, ConfigError> {
        let (mut config, mut origin, base_dir) = match &self.config {
            Some(path) => {
                let dir = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let mut config = Config::load(path)?;
                config.rebase_paths(dir);
                (config, path.display().to_string(), dir.to_path_buf())
            }
            None => (Config::default(), "defaults".to_owned(), PathBuf::from(".")),
        };
        let overridden = self.http_addr.is_some()
            || self.echo_addr.is_some()
            || self.data_dir.is_some()
            || self.log_format.is_some()
            || self.log_level.is_some();
        if let Some(addr) = self.http_addr {
            config.listen.http_addr = addr;
        }
        if let Some(addr) = self.echo_addr {
            config.listen.echo_addr = Some(addr);
        }
        if let Some(dir) = self.data_dir {
            config.storage.data_dir = dir;
        }
        if let Some(format) = self.log_format {
            config.log.format = format;
        }
        if let Some(level) = self.log_level {
            config.log.level = level;
        }
        if overridden {
            origin.push_str(" + command line");
            config.validate().map_err(|error| ConfigError::Invalid {
                origin: origin.clone(),
                error,
            })?;
        }
        let (profile, profile_origin) = match self.profile {
            Some(reference) => {
                let found = HardwareProfile::find(&reference, Path::new("."))?;
                config.profile = reference;
                found
            }
            None => HardwareProfile::find(&config.profile, &base_dir)?,
        };
        let shards = place_shards(&profile, &profile_origin, self.shards, available_cpus)?;
        let count = u32::try_from(shards.len()).unwrap_or(SHARDS_MAX);
        let base = config.listen.voice_udp_base_port;
        if base != 0 && u32::from(base) + count - 1 > u32::from(u16::MAX) {
            return Err(ConfigError::Invalid {
                origin,
                error: FieldError::new(
                    "listen.voice_udp_base_port",
                    base,
                    format!("base + {count} shards runs past port 65535"),
                ),
            });
        }
        // Voice (issue 6): the same rule for the per-shard voice gateway ports.
        let base = config.listen.voice_tls_base_port;
        if base != 0 && u32::from(base) + count - 1 > u32::from(u16::MAX) {
            return Err(ConfigError::Invalid {
                origin,
                error: FieldError::new(
                    "listen.voice_tls_base_port",
                    base,
                    format!("base + {count} shards runs past port 65535"),
                ),
            });
        }
        Ok(ResolvedConfig {
            config,
            profile,
            profile_origin,
            shards,
            ready_file: self.ready_file,
        })
    }
}

/// Decide each shard's core: pinned profiles use their cores that this process may run on,
/// unpinned ones just count shards (capped to the CPUs available unless `--shards` says more).
fn place_shards(
    profile: &HardwareProfile,
    origin: &str,
    requested: Option<u32>,
    available: &[u32],
) -> Result<Vec<ShardPlacement>, ConfigError> {
    if let Some(n) = requested
        && !(1..=SHARDS_MAX).contains(&n)
    {
        return Err(ConfigError::Flag {
            flag: "--shards",
            value: n.to_string(),
            reason: format!("must be between 1 and {SHARDS_MAX}"),
        });
    }
    if profile.pin_threads {
        let cores = profile.core_ids(available);
        if cores.is_empty() {
            return Err(ConfigError::Placement {
                origin: origin.to_owned(),
                reason: format!(
                    "cores = {}: none is available to this process (available CPUs: {available:?})",
                    profile.cores
                ),
            });
        }
        let count = match requested {
            Some(n) if n as usize > cores.len() => {
                return Err(ConfigError::Flag {
                    flag: "--shards",
                    value: n.to_string(),
                    reason: format!(
                        "the profile pins one shard per core and only {} of its cores are available ({cores:?})",
                        cores.len()
                    ),
                });
            }
            Some(n) => n as usize,
            None => cores.len(),
        };
        Ok(cores
            .iter()
            .take(count)
            .zip(0u32..)
            .map(|(&core, index)| ShardPlacement {
                index,
                core: Some(core),
                numa_node: profile.numa_node_of(core),
            })
            .collect())
    } else {
        let available_count = u32::try_from(available.len()).unwrap_or(SHARDS_MAX).max(1);
        let count = requested.unwrap_or_else(|| profile.core_count().min(available_count));
        Ok((0..count)
            .map(|index| ShardPlacement {
                index,
                core: None,
                numa_node: profile.numa_node,
            })
            .collect())
    }
}

/// The CPU ids this process may run on (its affinity mask), from /proc; `0..n` if unreadable.
pub fn available_cpus() -> Vec<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .and_then(|list| parse_cpu_list(list.trim()))
        })
        .filter(|cpus| !cpus.is_empty())
        .unwrap_or_else(|| {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            (0..u32::try_from(n).unwrap_or(1)).collect()
        })
}

/// Parse a kernel CPU list such as `0-3,8,10-11`.
fn parse_cpu_list(list: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (
                lo.trim().parse::<u32>().ok()?,
                hi.trim().parse::<u32>().ok()?,
            ),
            None => {
                let c = part.trim().parse::<u32>().ok()?;
                (c, c)
            }
        };
        if lo > hi || hi > crate::profile::CORE_ID_MAX {
            return None;
        }
        cpus.extend(lo..=hi);
    }
    Some(cpus)
}

/// Validate a config file and the hardware profile it names (and that TLS files are readable).
/// Returns `"ok"`; the error otherwise names the file, field and reason.
pub fn check_config(path: &Path) -> Result<String, ConfigError> {
    let mut config = Config::load(path)?;
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    config.rebase_paths(base_dir);
    HardwareProfile::find(&config.profile, base_dir)?;
    if let Some(tls) = &config.tls {
        for (field, file) in [
            ("tls.cert_path", &tls.cert_path),
            ("tls.key_path", &tls.key_path),
        ] {
            if let Err(e) = std::fs::File::open(file) {
                return Err(ConfigError::Invalid {
                    origin: path.display().to_string(),
                    error: FieldError::new(
                        field,
                        format!("{:?}", file.display().to_string()),
                        format!("cannot read: {e}"),
                    ),
                });
            }
        }
    }
    Ok("ok".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_like_the_kernel_writes_them() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("5"), Some(vec![5]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("0-99999"), None);
        assert_eq!(parse_cpu_list("x"), None);
        assert!(!available_cpus().is_empty());
    }

    #[test]
    fn secrets_decode_hex_of_either_case() {
        let s = Secret::from_hex(&"aB".repeat(32)).unwrap();
        assert_eq!(s.as_bytes(), [0xab; 32]);
        assert!(Secret::from_hex(&"ab".repeat(31)).is_err());
        assert!(Secret::from_hex(&format!("{}a", "ab".repeat(32))).is_err());
        assert!(Secret::from_hex(&"g0".repeat(32)).is_err());
        assert_eq!(format!("{s:?}"), "Secret(<32 bytes redacted>)");
    }

    #[test]
    fn gateway_url_is_derived_from_the_listen_address() {
        let mut c = Config::default();
        c.listen.http_addr = "0.0.0.0:443".parse().unwrap();
        c.tls = Some(TlsConfig {
            cert_path: "c.pem".into(),
            key_path: "k.pem".into(),
        });
        assert_eq!(c.gateway_url(), "wss://127.0.0.1:443");
        c.listen.http_addr = "[::]:80".parse().unwrap();
        c.tls = None;
        assert_eq!(c.gateway_url(), "ws://[::1]:80");
        c.listen.gateway_url = Some("wss://gw.example".to_owned());
        assert_eq!(c.gateway_url(), "wss://gw.example");
    }

    #[test]
    fn toml_errors_name_the_table_and_key() {
        let text = "profile = \"dev\"\n[storage]\ngroup_commit_max_bytes = \"big\"\n";
        let msg = Config::from_toml("f.toml", text).unwrap_err().to_string();
        assert!(
            msg.starts_with("config f.toml: line 3: storage.group_commit_max_bytes: "),
            "{msg}"
        );
        let msg = Config::from_toml("f.toml", "profile = 3\n")
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("config f.toml: line 1: profile: "), "{msg}");
    }

    #[test]
    fn storage_and_limit_relations_are_checked() {
        let mut c = Config::default();
        c.storage.segment_bytes = 4096;
        assert_eq!(c.validate().unwrap_err().field, "storage.segment_bytes");
        let mut c = Config::default();
        c.limits.http_header_bytes_max = 100;
        assert_eq!(
            c.validate().unwrap_err().field,
            "limits.http_header_bytes_max"
        );
        let mut c = Config::default();
        c.listen.echo_addr = Some(c.listen.http_addr);
        assert_eq!(c.validate().unwrap_err().field, "listen.echo_addr");
        assert_eq!(
            Config::default().limits.http_limits().header_bytes_max,
            8192
        );
    }
}
