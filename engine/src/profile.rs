//! Hardware profiles: which cores to run shards on and how big every ring, pool and batch is.
//!
//! A profile describes a machine class (a dev VM, a PoP server), not a deployment, so the same
//! file is shared by every node of that class. Profiles are TOML files in `hardware-profiles/`;
//! those are compiled into the binary and chosen by name, and any other file can be given by path.
//! Every field is checked up front, and an error names the file, the field, the value and the
//! reason, so a bad profile stops the node at start-up instead of failing under load.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::driver::{DriverConfig, TcpOptions};
use crate::snowflake;

/// Most shards one node runs: the Snowflake process field has 5 bits.
pub const SHARDS_MAX: u32 = snowflake::SHARDS_MAX as u32;
/// Largest CPU id a profile may name (glibc's `cpu_set_t` holds 1024 CPUs).
pub const CORE_ID_MAX: u32 = 1023;
/// Largest NUMA node id a profile may name.
pub const NUMA_NODE_MAX: u32 = 255;
/// io_uring refuses more submission queue entries than this (IORING_MAX_ENTRIES).
pub const RING_ENTRIES_MAX: u32 = 32768;
/// io_uring rejects rings smaller than this for our use: one batch of sends plus control ops.
pub const RING_ENTRIES_MIN: u32 = 8;
/// A provided-buffer ring is indexed by a u16 buffer id and must be a power of two.
pub const RECV_BUFFERS_MAX: u32 = 32768;
/// A receive buffer must hold a whole UDP datagram at Ethernet MTU: a truncated voice packet is lost.
pub const RECV_BUFFER_BYTES_MIN: u32 = 2048;
/// Larger receive buffers waste memory on the many small messages a gateway sees.
pub const RECV_BUFFER_BYTES_MAX: u32 = 1 << 20;
/// Provided buffers of one shard may pin at most this much memory.
pub const RECV_POOL_BYTES_MAX: u64 = 1 << 30;
/// Sockets a shard needs besides connections: listeners, UDP sockets, the echo listener.
pub const SOCKET_HEADROOM: u32 = 16;
/// Connections one shard may hold.
pub const CONNECTIONS_PER_SHARD_MAX: u32 = 1 << 20;
/// Files one shard may keep open.
pub const FILE_POOL_MAX: u32 = 65536;
/// Mailbox slots (between one pair of shards).
pub const MAILBOX_CAPACITY_MAX: u32 = 1 << 20;
/// sendmsg/sendmmsg take at most UIO_MAXIOV (1024) vectors or messages per call.
pub const BATCH_MAX: u32 = 1024;
/// listen(2) backlog is capped by net.core.somaxconn, at most 65535 on Linux.
pub const BACKLOG_MAX: u32 = 65535;
/// Socket buffer sizes a profile may ask for.
pub const SOCKET_BUFFER_BYTES_MIN: u32 = 4096;
/// Socket buffer sizes a profile may ask for (the kernel doubles and caps them anyway).
pub const SOCKET_BUFFER_BYTES_MAX: u32 = 1 << 30;
/// NIC queues a profile may describe.
pub const NIC_QUEUES_MAX: u32 = 1024;
/// O_DIRECT needs buffers aligned to the block size; our aligned buffers use 4096.
pub const DIRECT_IO_BLOCK_BYTES_MIN: u32 = crate::buf::DIRECT_ALIGN as u32;
/// The commit logs and the metadata journal are laid out in 4 KiB blocks (msgstore's
/// `IO_ALIGN_BYTES`), so this build takes no other block size: a profile asking for one is
/// refused rather than silently ignored.
pub const DIRECT_IO_BLOCK_BYTES_MAX: u32 = DIRECT_IO_BLOCK_BYTES_MIN;
const _: () = assert!(DIRECT_IO_BLOCK_BYTES_MAX as usize == msgstore::limits::IO_ALIGN_BYTES);
/// A session's output queue must hold a Resume's replay of its whole resume ring.
pub const SESSION_OUTPUT_QUEUE_BYTES_MIN: u32 = gateway_core::limits::OUTPUT_QUEUE_BYTES_MIN as u32;
/// A session's output queue beyond this is a memory leak under a slow client.
pub const SESSION_OUTPUT_QUEUE_BYTES_MAX: u32 = 64 << 20;

const _: () = assert!(RECV_BUFFERS_MAX <= u16::MAX as u32 + 1);
const _: () = assert!(RECV_BUFFER_BYTES_MIN >= 1500);
const _: () = assert!(
    CONNECTIONS_PER_SHARD_MAX
        .checked_add(SOCKET_HEADROOM)
        .is_some()
);
const _: () = assert!(DIRECT_IO_BLOCK_BYTES_MIN.is_power_of_two());

/// Names of the profiles compiled into the binary, with their TOML text.
const BUILTIN: &[(&str, &str)] = &[
    ("dev", include_str!("../../hardware-profiles/dev.toml")),
    (
        "pop-1s16c",
        include_str!("../../hardware-profiles/pop-1s16c.toml"),
    ),
    (
        "pop-2s64c",
        include_str!("../../hardware-profiles/pop-2s64c.toml"),
    ),
];

/// One invalid value: which field, what it was, and why it is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} = {value}: {reason}")]
pub struct FieldError {
    /// The field's key (dotted for nested tables, e.g. `listen.http_addr` or `numa[1].cores`).
    pub field: String,
    /// The offending value as written.
    pub value: String,
    /// Why it is refused, with the accepted range.
    pub reason: String,
}

impl FieldError {
    /// An error for `field` holding `value`.
    pub fn new(
        field: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Why a hardware profile could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The file could not be read.
    #[error("hardware profile {origin}: cannot read: {source}")]
    Read {
        /// The path as given.
        origin: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown, missing or mistyped keys.
    #[error("hardware profile {origin}: {message}")]
    Parse {
        /// The path (or built-in name).
        origin: String,
        /// The line, key and problem.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("hardware profile {origin}: {error}")]
    Invalid {
        /// The path (or built-in name).
        origin: String,
        /// The field and reason.
        error: FieldError,
    },
    /// A name that is neither a built-in profile nor a path.
    #[error(
        "hardware profile {name:?}: no built-in profile of that name (built-in: {known}); \
         give a path ending in .toml for another file"
    )]
    UnknownName {
        /// The name given.
        name: String,
        /// The built-in names.
        known: String,
    },
}

/// The cores a profile runs shards on: a count (the first free CPUs) or explicit CPU ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreSet {
    /// Use this many CPUs, the lowest-numbered available ones not in `reserved_cores`.
    Count(u32),
    /// Use exactly these CPU ids, one shard each, in this order.
    List(Vec<u32>),
}

impl<'de> Deserialize<'de> for CoreSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CoreSetVisitor;
        impl<'de> Visitor<'de> for CoreSetVisitor {
            type Value = CoreSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a core count (integer) or a list of CPU ids")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<CoreSet, E> {
                u32::try_from(v)
                    .map(CoreSet::Count)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<CoreSet, E> {
                u32::try_from(v)
                    .map(CoreSet::Count)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CoreSet, A::Error> {
                let mut ids = Vec::new();
                while let Some(id) = seq.next_element::<u32>()? {
                    if ids.len() > CORE_ID_MAX as usize {
                        return Err(de::Error::custom("too many CPU ids"));
                    }
                    ids.push(id);
                }
                Ok(CoreSet::List(ids))
            }
        }
        d.deserialize_any(CoreSetVisitor)
    }
}

impl fmt::Display for CoreSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreSet::Count(n) => write!(f, "{n}"),
            CoreSet::List(ids) => write!(f, "{ids:?}"),
        }
    }
}

/// The CPUs of one NUMA node that run shards: their memory and NIC queues should be local.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumaGroup {
    /// The NUMA node id (as in /sys/devices/system/node/nodeN).
    pub node: u32,
    /// CPU ids of this node that run shards; each must appear in the profile's `cores` list.
    pub cores: Vec<u32>,
}

/// A machine class: cores, pinning, NUMA layout, ring and pool sizes, batches, socket options.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareProfile {
    /// Short name, shown in logs and /metrics.
    pub name: String,
    /// What machine this is for and why.
    pub description: String,
    /// The cores that run shards (one shard per core).
    pub cores: CoreSet,
    /// CPUs never used for shards (left to NIC interrupts and the OS).
    #[serde(default)]
    pub reserved_cores: Vec<u32>,
    /// Pin each shard's thread to its core.
    pub pin_threads: bool,
    /// The NUMA node every shard allocates on, for single-socket machines.
    #[serde(default)]
    pub numa_node: Option<u32>,
    /// Per-node core groups, for multi-socket machines (exclusive with `numa_node`).
    #[serde(default)]
    pub numa: Vec<NumaGroup>,
    /// io_uring submission queue entries per shard (the completion queue is twice this).
    pub ring_entries: u32,
    /// Provided receive buffers per shard.
    pub recv_buffers: u32,
    /// Bytes of each provided receive buffer.
    pub recv_buffer_bytes: u32,
    /// Use IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN (Linux 6.1+) instead of COOP_TASKRUN.
    pub defer_taskrun: bool,
    /// Most client connections one shard holds; more are refused at accept.
    pub max_connections_per_shard: u32,
    /// Files one shard keeps open (commit log segments, snapshots).
    pub file_pool: u32,
    /// Block size for O_DIRECT writes of the message store (4096: the only size this build takes).
    pub direct_io_block_bytes: u32,
    /// Slots of each cross-shard mailbox.
    pub mailbox_capacity: u32,
    /// Most messages taken from one mailbox per loop turn, so one busy peer cannot starve others.
    pub mailbox_batch: u32,
    /// Most TCP sends submitted per loop turn.
    pub send_batch: u32,
    /// Bytes queued for one gateway session before it is disconnected as too slow.
    pub session_output_queue_bytes: u32,
    /// TCP_NODELAY on accepted connections.
    pub tcp_nodelay: bool,
    /// SO_RCVBUF for accepted connections (kernel default when absent).
    #[serde(default)]
    pub so_rcvbuf: Option<u32>,
    /// SO_SNDBUF for accepted connections (kernel default when absent).
    #[serde(default)]
    pub so_sndbuf: Option<u32>,
    /// listen(2) backlog of each shard's listener.
    pub backlog: u32,
    /// One SO_REUSEPORT listener per shard (else one shared listener).
    pub reuse_port: bool,
    /// NIC receive queues the machine has (informative: IRQ affinity is set outside Hearth).
    #[serde(default)]
    pub nic_queues: Option<u32>,
}

impl HardwareProfile {
    /// The built-in profile for a small VM or laptop; equal to `hardware-profiles/dev.toml`.
    pub fn dev() -> Self {
        HardwareProfile {
            name: "dev".to_owned(),
            description: "A 2-vCPU VM or laptop: small rings and pools, no pinning.".to_owned(),
            cores: CoreSet::Count(2),
            reserved_cores: Vec::new(),
            pin_threads: false,
            numa_node: None,
            numa: Vec::new(),
            ring_entries: 256,
            recv_buffers: 256,
            recv_buffer_bytes: 4096,
            defer_taskrun: true,
            max_connections_per_shard: 4096,
            file_pool: 64,
            direct_io_block_bytes: 4096,
            mailbox_capacity: 1024,
            mailbox_batch: 64,
            send_batch: 256,
            session_output_queue_bytes: gateway_core::limits::OUTPUT_QUEUE_BYTES_MAX as u32,
            tcp_nodelay: true,
            so_rcvbuf: None,
            so_sndbuf: None,
            backlog: 1024,
            reuse_port: true,
            nic_queues: None,
        }
    }

    /// Names of the profiles compiled into the binary.
    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        BUILTIN.iter().map(|(name, _)| *name)
    }

    /// A built-in profile by name (`dev` is [`HardwareProfile::dev`]).
    pub fn builtin(name: &str) -> Result<Self, ProfileError> {
        if name == "dev" {
            return Ok(Self::dev());
        }
        match BUILTIN.iter().find(|(n, _)| *n == name) {
            Some((n, text)) => Self::from_toml(&format!("{n} (built-in)"), text),
            None => Err(ProfileError::UnknownName {
                name: name.to_owned(),
                known: Self::builtin_names().collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// Whether a profile reference is a file path (has a separator or ends in `.toml`) or a name.
    pub fn is_path_reference(reference: &str) -> bool {
        reference.contains('/') || reference.contains('\\') || reference.ends_with(".toml")
    }

    /// Resolve a profile reference: a built-in name, or a path (relative ones against `base_dir`).
    /// Returns the profile and where it came from (for logs).
    pub fn find(reference: &str, base_dir: &Path) -> Result<(Self, String), ProfileError> {
        if Self::is_path_reference(reference) {
            let path: PathBuf = base_dir.join(reference);
            let profile = Self::load(&path)?;
            Ok((profile, path.display().to_string()))
        } else {
            let profile = Self::builtin(reference)?;
            Ok((profile, format!("{reference} (built-in)")))
        }
    }

    /// Read, parse and validate a profile file.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            origin: origin.clone(),
            source,
        })?;
        Self::from_toml(&origin, &text)
    }

    /// Parse and validate profile TOML; `origin` names it in errors.
    pub fn from_toml(origin: &str, text: &str) -> Result<Self, ProfileError> {
        let profile: HardwareProfile = toml::from_str(text).map_err(|e| ProfileError::Parse {
            origin: origin.to_owned(),
            message: toml_error_message(text, &e),
        })?;
        profile.validate().map_err(|error| ProfileError::Invalid {
            origin: origin.to_owned(),
            error,
        })?;
        Ok(profile)
    }

    /// Check every field's range and how fields relate; the first problem found is returned.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.name.trim().is_empty() {
            return Err(FieldError::new("name", "\"\"", "must not be empty"));
        }
        self.validate_cores()?;
        self.validate_numa()?;
        power_of_two_in(
            "ring_entries",
            self.ring_entries,
            RING_ENTRIES_MIN,
            RING_ENTRIES_MAX,
        )?;
        power_of_two_in("recv_buffers", self.recv_buffers, 1, RECV_BUFFERS_MAX)?;
        in_range(
            "recv_buffer_bytes",
            self.recv_buffer_bytes,
            RECV_BUFFER_BYTES_MIN,
            RECV_BUFFER_BYTES_MAX,
        )?;
        let pool_bytes = u64::from(self.recv_buffers) * u64::from(self.recv_buffer_bytes);
        if pool_bytes > RECV_POOL_BYTES_MAX {
            return Err(FieldError::new(
                "recv_buffer_bytes",
                self.recv_buffer_bytes,
                format!(
                    "recv_buffers * recv_buffer_bytes = {pool_bytes} bytes per shard, \
                     more than the {RECV_POOL_BYTES_MAX} allowed"
                ),
            ));
        }
        in_range(
            "max_connections_per_shard",
            self.max_connections_per_shard,
            1,
            CONNECTIONS_PER_SHARD_MAX,
        )?;
        in_range("file_pool", self.file_pool, 1, FILE_POOL_MAX)?;
        power_of_two_in(
            "direct_io_block_bytes",
            self.direct_io_block_bytes,
            DIRECT_IO_BLOCK_BYTES_MIN,
            DIRECT_IO_BLOCK_BYTES_MAX,
        )?;
        power_of_two_in(
            "mailbox_capacity",
            self.mailbox_capacity,
            2,
            MAILBOX_CAPACITY_MAX,
        )?;
        in_range(
            "mailbox_batch",
            self.mailbox_batch,
            1,
            self.mailbox_capacity,
        )
        .map_err(|e| with_reason(e, "must be between 1 and mailbox_capacity"))?;
        in_range(
            "send_batch",
            self.send_batch,
            1,
            BATCH_MAX.min(self.ring_entries),
        )
        .map_err(|e| with_reason(e, "must be between 1 and min(1024, ring_entries)"))?;
        in_range(
            "session_output_queue_bytes",
            self.session_output_queue_bytes,
            SESSION_OUTPUT_QUEUE_BYTES_MIN,
            SESSION_OUTPUT_QUEUE_BYTES_MAX,
        )?;
        for (field, value) in [("so_rcvbuf", self.so_rcvbuf), ("so_sndbuf", self.so_sndbuf)] {
            if let Some(v) = value {
                in_range(field, v, SOCKET_BUFFER_BYTES_MIN, SOCKET_BUFFER_BYTES_MAX)?;
            }
        }
        in_range("backlog", self.backlog, 1, BACKLOG_MAX)?;
        if let Some(q) = self.nic_queues {
            in_range("nic_queues", q, 1, NIC_QUEUES_MAX)?;
        }
        Ok(())
    }

    fn validate_cores(&self) -> Result<(), FieldError> {
        for (i, &id) in self.reserved_cores.iter().enumerate() {
            if id > CORE_ID_MAX {
                return Err(FieldError::new(
                    format!("reserved_cores[{i}]"),
                    id,
                    format!("CPU ids go up to {CORE_ID_MAX}"),
                ));
            }
        }
        match &self.cores {
            CoreSet::Count(n) => in_range("cores", *n, 1, SHARDS_MAX).map_err(|e| {
                with_reason(
                    e,
                    "must be between 1 and 32 (one shard per core; ids hold 5 shard bits)",
                )
            }),
            CoreSet::List(ids) => {
                if ids.is_empty() || ids.len() > SHARDS_MAX as usize {
                    return Err(FieldError::new(
                        "cores",
                        &self.cores,
                        "must list between 1 and 32 CPU ids (one shard per core; ids hold 5 shard bits)",
                    ));
                }
                for (i, &id) in ids.iter().enumerate() {
                    let field = || format!("cores[{i}]");
                    if id > CORE_ID_MAX {
                        return Err(FieldError::new(
                            field(),
                            id,
                            format!("CPU ids go up to {CORE_ID_MAX}"),
                        ));
                    }
                    if ids.iter().take(i).any(|&other| other == id) {
                        return Err(FieldError::new(field(), id, "listed twice"));
                    }
                    if self.reserved_cores.contains(&id) {
                        return Err(FieldError::new(field(), id, "is also in reserved_cores"));
                    }
                }
                Ok(())
            }
        }
    }

    fn validate_numa(&self) -> Result<(), FieldError> {
        if let Some(node) = self.numa_node {
            in_range("numa_node", node, 0, NUMA_NODE_MAX)?;
            if !self.numa.is_empty() {
                return Err(FieldError::new(
                    "numa_node",
                    node,
                    "give either numa_node (one node) or [[numa]] groups, not both",
                ));
            }
        }
        if self.numa.is_empty() {
            return Ok(());
        }
        let CoreSet::List(ids) = &self.cores else {
            return Err(FieldError::new(
                "cores",
                &self.cores,
                "[[numa]] groups need cores as an explicit list of CPU ids",
            ));
        };
        for (g, group) in self.numa.iter().enumerate() {
            in_range(&format!("numa[{g}].node"), group.node, 0, NUMA_NODE_MAX)?;
            if self
                .numa
                .iter()
                .take(g)
                .any(|other| other.node == group.node)
            {
                return Err(FieldError::new(
                    format!("numa[{g}].node"),
                    group.node,
                    "node listed in two groups",
                ));
            }
            if group.cores.is_empty() {
                return Err(FieldError::new(
                    format!("numa[{g}].cores"),
                    "[]",
                    "must not be empty",
                ));
            }
            for &core in &group.cores {
                if !ids.contains(&core) {
                    return Err(FieldError::new(
                        format!("numa[{g}].cores"),
                        format!("{:?}", group.cores),
                        format!("CPU {core} is not in cores"),
                    ));
                }
            }
        }
        for &core in ids {
            let groups = self.numa.iter().filter(|g| g.cores.contains(&core)).count();
            if groups != 1 {
                return Err(FieldError::new(
                    "numa",
                    format!("CPU {core}"),
                    format!(
                        "each CPU in cores must be in exactly one [[numa]] group (found {groups})"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Number of shards the profile asks for.
    pub fn core_count(&self) -> u32 {
        match &self.cores {
            CoreSet::Count(n) => *n,
            // Validation caps the list at 32 entries.
            CoreSet::List(ids) => u32::try_from(ids.len()).unwrap_or(u32::MAX),
        }
    }

    /// The CPU ids shards would run on, given the CPUs this process may use, in shard order.
    ///
    /// A count takes the lowest available CPUs not reserved; a list keeps the listed CPUs that
    /// are available (a big profile on a small machine shrinks instead of pinning to absent CPUs).
    pub fn core_ids(&self, available: &[u32]) -> Vec<u32> {
        match &self.cores {
            CoreSet::Count(n) => {
                let mut free: Vec<u32> = available
                    .iter()
                    .copied()
                    .filter(|c| !self.reserved_cores.contains(c))
                    .collect();
                free.sort_unstable();
                free.dedup();
                free.truncate(*n as usize);
                free
            }
            CoreSet::List(ids) => ids
                .iter()
                .copied()
                .filter(|c| available.contains(c))
                .collect(),
        }
    }

    /// The NUMA node whose memory a shard on `core` should use, if the profile says.
    pub fn numa_node_of(&self, core: u32) -> Option<u32> {
        self.numa
            .iter()
            .find(|g| g.cores.contains(&core))
            .map(|g| g.node)
            .or(self.numa_node)
    }

    /// The io_uring driver sizes for one shard.
    pub fn driver_config(&self) -> DriverConfig {
        DriverConfig {
            ring_entries: self.ring_entries,
            // Validation caps recv_buffers at 32768, which fits.
            recv_buffers: u16::try_from(self.recv_buffers).unwrap_or(RECV_BUFFERS_MAX as u16),
            recv_buffer_bytes: self.recv_buffer_bytes,
            defer_taskrun: self.defer_taskrun,
            max_sockets: self
                .max_connections_per_shard
                .saturating_add(SOCKET_HEADROOM),
            max_files: self.file_pool,
        }
    }

    /// Options for each shard's TCP listener and the connections it accepts.
    pub fn tcp_options(&self) -> TcpOptions {
        TcpOptions {
            reuse_port: self.reuse_port,
            backlog: self.backlog,
            nodelay: self.tcp_nodelay,
            recv_buffer_bytes: self.so_rcvbuf,
            send_buffer_bytes: self.so_sndbuf,
        }
    }
}

impl From<&HardwareProfile> for DriverConfig {
    fn from(p: &HardwareProfile) -> Self {
        p.driver_config()
    }
}

impl From<&HardwareProfile> for TcpOptions {
    fn from(p: &HardwareProfile) -> Self {
        p.tcp_options()
    }
}

fn in_range(field: &str, value: u32, min: u32, max: u32) -> Result<(), FieldError> {
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

fn power_of_two_in(field: &str, value: u32, min: u32, max: u32) -> Result<(), FieldError> {
    if value.is_power_of_two() && (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            value,
            format!("must be a power of two between {min} and {max}"),
        ))
    }
}

fn with_reason(mut e: FieldError, reason: &str) -> FieldError {
    reason.clone_into(&mut e.reason);
    e
}

/// One line for a TOML error: `line N: key: problem`, instead of toml's multi-line snippet.
pub(crate) fn toml_error_message(text: &str, err: &toml::de::Error) -> String {
    let Some(span) = err.span() else {
        return err.message().to_owned();
    };
    let start = span.start.min(text.len());
    let before = text.get(..start).unwrap_or("");
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text
        .get(line_start..)
        .and_then(|rest| rest.lines().next())
        .unwrap_or("");
    let one_line_span = !text
        .get(start..span.end.min(text.len()))
        .unwrap_or("")
        .contains('\n');
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| one_line_span && !k.is_empty() && !k.starts_with('#') && !k.starts_with('['));
    // The innermost table header above the line, so that keys read `listen.http_addr`.
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    match (table, key) {
        (Some(table), Some(key)) => format!("line {line_no}: {table}.{key}: {}", err.message()),
        (None, Some(key)) => format!("line {line_no}: {key}: {}", err.message()),
        _ => format!("line {line_no}: {}", err.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev_with(change: &str) -> String {
        let text = include_str!("../../hardware-profiles/dev.toml");
        let key = change.split('=').next().unwrap().trim();
        let mut out: Vec<String> = text
            .lines()
            .filter(|l| l.split('=').next().map(str::trim) != Some(key))
            .map(str::to_owned)
            .collect();
        out.push(change.to_owned());
        out.join("\n")
    }

    fn invalid(change: &str) -> String {
        HardwareProfile::from_toml("dev.toml", &dev_with(change))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn builtin_dev_equals_dev_toml() {
        let file = HardwareProfile::from_toml(
            "dev.toml",
            include_str!("../../hardware-profiles/dev.toml"),
        )
        .unwrap();
        assert_eq!(file, HardwareProfile::dev());
        HardwareProfile::dev().validate().unwrap();
    }

    #[test]
    fn every_builtin_validates() {
        for (name, text) in BUILTIN {
            let p = HardwareProfile::from_toml(name, text).unwrap();
            assert_eq!(p.name, *name);
            assert!(HardwareProfile::builtin(name).is_ok());
        }
    }

    #[test]
    fn recv_buffers_not_power_of_two_names_field_and_reason() {
        assert_eq!(
            invalid("recv_buffers = 1000"),
            "hardware profile dev.toml: recv_buffers = 1000: must be a power of two between 1 and 32768"
        );
        assert!(invalid("recv_buffers = 65536").contains("recv_buffers = 65536"));
    }

    #[test]
    fn unknown_key_is_named() {
        let msg = invalid("ring_entriess = 64");
        assert!(msg.contains("unknown field `ring_entriess`"), "{msg}");
        assert!(msg.starts_with("hardware profile dev.toml: line "), "{msg}");
    }

    #[test]
    fn mistyped_value_names_the_key() {
        let msg = invalid("backlog = \"lots\"");
        assert!(msg.contains("backlog"), "{msg}");
    }

    #[test]
    fn range_and_relation_errors_name_the_field() {
        assert!(
            invalid("ring_entries = 100").contains("ring_entries = 100: must be a power of two")
        );
        assert!(invalid("recv_buffer_bytes = 1024").contains("recv_buffer_bytes = 1024"));
        assert!(invalid("mailbox_capacity = 1000").contains("mailbox_capacity = 1000"));
        assert!(
            invalid("mailbox_batch = 2048")
                .contains("mailbox_batch = 2048: must be between 1 and mailbox_capacity")
        );
        assert!(invalid("send_batch = 512").contains("send_batch = 512"));
        assert!(invalid("cores = 33").contains("cores = 33"));
        assert!(invalid("cores = [1, 2, 1]").contains("cores[2] = 1: listed twice"));
        assert!(invalid("so_rcvbuf = 1").contains("so_rcvbuf = 1"));
        assert!(invalid("direct_io_block_bytes = 512").contains("direct_io_block_bytes = 512"));
        // The store writes 4 KiB blocks only: a larger block size is refused, not ignored.
        assert!(invalid("direct_io_block_bytes = 8192").contains("direct_io_block_bytes = 8192"));
        // Below the resume ring plus headroom, a resumed session would overflow at once.
        assert!(
            invalid("session_output_queue_bytes = 262144")
                .contains("session_output_queue_bytes = 262144")
        );
        assert!(invalid("send_batch = 0").contains("send_batch = 0"));
        assert!(invalid("backlog = 0").contains("backlog = 0"));
        assert!(invalid("max_connections_per_shard = 0").contains("max_connections_per_shard = 0"));
    }

    #[test]
    fn numa_groups_must_cover_the_core_list_exactly() {
        let base = include_str!("../../hardware-profiles/pop-2s64c.toml");
        let missing_core = base.replace(
            "cores = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]\n",
            "cores = [1, 2]\n",
        );
        let msg = HardwareProfile::from_toml("p.toml", &missing_core)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("numa = CPU 3"), "{msg}");
        let both = base.replace("nic_queues = 8", "nic_queues = 8\nnuma_node = 0");
        let msg = HardwareProfile::from_toml("p.toml", &both)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("numa_node = 0: give either"), "{msg}");
    }

    #[test]
    fn core_ids_skip_reserved_and_absent_cpus() {
        let mut p = HardwareProfile::dev();
        p.reserved_cores = vec![0];
        assert_eq!(p.core_ids(&[0, 1, 2, 3]), vec![1, 2]);
        let pop = HardwareProfile::builtin("pop-1s16c").unwrap();
        assert_eq!(pop.core_ids(&[0, 1]), vec![1]);
        let big = HardwareProfile::builtin("pop-2s64c").unwrap();
        assert_eq!(big.numa_node_of(17), Some(1));
        assert_eq!(big.numa_node_of(3), Some(0));
        assert_eq!(pop.numa_node_of(3), Some(0));
        assert_eq!(HardwareProfile::dev().numa_node_of(0), None);
    }

    #[test]
    fn converts_to_driver_and_tcp_options() {
        let p = HardwareProfile::builtin("pop-1s16c").unwrap();
        let d = p.driver_config();
        assert_eq!(d.ring_entries, 4096);
        assert_eq!(d.recv_buffers, 4096);
        assert_eq!(d.recv_buffer_bytes, 4096);
        assert_eq!(d.max_sockets, 65536 + SOCKET_HEADROOM);
        assert_eq!(d.max_files, 256);
        assert!(d.defer_taskrun);
        let t = TcpOptions::from(&p);
        assert_eq!((t.backlog, t.nodelay, t.reuse_port), (8192, true, true));
        assert_eq!(t.recv_buffer_bytes, None);
        let mut max = HardwareProfile::dev();
        max.recv_buffers = RECV_BUFFERS_MAX;
        max.validate().unwrap();
        assert_eq!(DriverConfig::from(&max).recv_buffers, 32768);
    }

    #[test]
    fn references_resolve_to_builtin_or_file() {
        let (p, origin) = HardwareProfile::find("pop-2s64c", Path::new("/nonexistent")).unwrap();
        assert_eq!(p.name, "pop-2s64c");
        assert!(origin.contains("built-in"));
        let err = HardwareProfile::find("nosuch", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"nosuch\"") && err.contains("dev, pop-1s16c, pop-2s64c"),
            "{err}"
        );
        let err = HardwareProfile::find("missing.toml", Path::new("/nonexistent")).unwrap_err();
        assert!(matches!(err, ProfileError::Read { .. }), "{err}");
    }
}
