//! Every bound and default of the gateway scenarios, in one place, with the relations between
//! them checked at compile time.

use crate::limits::{IDLE_CONNS_PER_PROC_MAX, NOFILE_HARD};

/// Sessions the identify storm opens by default.
pub const STORM_SESSIONS_DEFAULT: u32 = 5_000;
/// Handshakes (connect + upgrade + Identify, not yet READY) in flight at once, over all client
/// processes: enough to keep a shard busy, few enough that the listen backlog never overflows.
pub const STORM_INFLIGHT_DEFAULT: u32 = 256;

/// Identified idle sessions by default: the server needs this many fds plus a few, and the hard
/// RLIMIT_NOFILE here is 20000 (PEERS.md).
pub const IDLE_SESSIONS_DEFAULT: u32 = 19_000;
/// How long idle sessions are held after the memory reading; longer than one heartbeat
/// interval so the run shows heartbeats keep every session alive.
pub const IDLE_HOLD_S_DEFAULT: u64 = 50;

/// Sessions (or Nchan subscribers) the broadcast reaches by default.
pub const BROADCAST_SESSIONS_DEFAULT: u32 = 10_000;
/// Measured broadcast events by default.
pub const BROADCAST_EVENTS_DEFAULT: u32 = 200;
/// Events sent (and checked for loss) before the measured window, so first-touch costs (page
/// faults in fresh output buffers, cold caches) do not count.
pub const BROADCAST_WARMUP_EVENTS_DEFAULT: u32 = 20;
/// Events published per second by default: 50 x 10k = 500k deliveries/s offered, which one
/// epoll client core still reads without falling behind.
pub const BROADCAST_RATE_DEFAULT: f64 = 50.0;
/// Target size of one delivered dispatch (the whole JSON text frame payload), bytes.
pub const BROADCAST_EVENT_BYTES_DEFAULT: usize = 250;
/// Smallest event size: the dispatch envelope and the two numeric fields need this much.
pub const BROADCAST_EVENT_BYTES_MIN: usize = 120;
/// Largest event size: stays inside one gateway payload a client could also send.
pub const BROADCAST_EVENT_BYTES_MAX: usize = 4096;
/// How long the broadcast waits for every client to see the last event, seconds.
pub const BROADCAST_DRAIN_S: u64 = 30;
/// Nchan channel every subscriber joins.
pub const NCHAN_CHANNEL: &str = "bench";

/// Sessions per client process by default (one process holds 10k; 19k idle sessions use two).
pub const SESSIONS_PER_CLIENT_DEFAULT: u32 = 10_000;
/// Most sessions one client process holds, leaving room for its other fds.
pub const SESSIONS_PER_CLIENT_MAX: u32 = IDLE_CONNS_PER_PROC_MAX;
/// First loopback source address of client processes is 127.0.0.<this>; process i uses
/// <this + i>, so ephemeral ports never run short.
pub const SOURCE_IP_FIRST_HOST: u8 = 2;
/// Loopback source addresses the client processes rotate through.
pub const SOURCE_IPS_MAX: u8 = 32;

/// Bytes read from a socket per `read` call; one call drains many queued frames.
pub const CLIENT_READ_BYTES: usize = 64 * 1024;
/// Largest server frame payload the client accepts (READY of a bench user is a few KiB).
pub const CLIENT_FRAME_PAYLOAD_MAX: usize = 1 << 20;
/// Largest reassembled message the client accepts.
pub const CLIENT_MESSAGE_BYTES_MAX: usize = 4 << 20;
/// Largest HTTP upgrade response head the client accepts.
pub const UPGRADE_RESPONSE_BYTES_MAX: usize = 8 * 1024;
/// Headers parsed in an upgrade or HTTP response.
pub const RESPONSE_HEADERS_MAX: usize = 32;
/// A session not READY (or not upgraded, for Nchan) this long after connect counts as failed.
pub const HANDSHAKE_TIMEOUT_S: u64 = 30;
/// epoll events handled per wake-up of a client process.
pub const CLIENT_EPOLL_EVENTS: usize = 1024;
/// How often a client process scans its sessions for due heartbeats and timeouts, ms.
pub const CLIENT_TICK_MS: u64 = 100;
/// Heartbeat interval assumed until Hello says otherwise (DESIGN.md: 41250 ms).
pub const HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 41_250;
/// How long the liveness check waits for every session's heartbeat ACK (or pong), seconds.
pub const ALIVE_CHECK_TIMEOUT_S: u64 = 30;

/// Timeout of one control-API or publish HTTP request, seconds.
pub const HTTP_TIMEOUT_S: u64 = 30;
/// Largest HTTP response body the control client accepts.
pub const HTTP_BODY_BYTES_MAX: usize = 1 << 20;
/// How long a client process has to report that its connect phase is over, seconds.
pub const CONNECT_PHASE_TIMEOUT_S: u64 = 300;
/// How long nginx has to accept connections after it is started, seconds.
pub const NGINX_READY_TIMEOUT_S: u64 = 15;
/// Listen backlog given to nginx, as hearth-profile.toml gives hearth.
pub const NGINX_BACKLOG: u32 = 4096;
/// nginx `worker_connections`: Nchan takes connection slots of its own besides the client
/// sockets (at 20000, 19000 subscribers make nginx "reuse connections", closing some), and a
/// slot costs no descriptor, so this sits well above the 20000 descriptors a worker may open.
pub const NGINX_WORKER_CONNECTIONS: u32 = 65_536;
/// How long a server has to exit after SIGTERM before it is killed: hearth drains its sessions
/// for up to 10 s (its drain_timeout_ms default), nginx closes at once.
pub const GW_STOP_TIMEOUT_S: u64 = 15;
/// Shards (and nginx workers) by default: one core for the server, one for the clients.
pub const SHARDS_DEFAULT: u32 = 1;

const _: () = assert!(SESSIONS_PER_CLIENT_DEFAULT <= SESSIONS_PER_CLIENT_MAX);
const _: () = assert!(SESSIONS_PER_CLIENT_MAX as u64 + 64 <= NOFILE_HARD);
const _: () = assert!((IDLE_SESSIONS_DEFAULT as u64) + 64 <= NOFILE_HARD);
const _: () = assert!(BROADCAST_EVENT_BYTES_MIN <= BROADCAST_EVENT_BYTES_DEFAULT);
const _: () = assert!(BROADCAST_EVENT_BYTES_DEFAULT <= BROADCAST_EVENT_BYTES_MAX);
const _: () = assert!(UPGRADE_RESPONSE_BYTES_MAX <= CLIENT_READ_BYTES);
const _: () = assert!(CLIENT_FRAME_PAYLOAD_MAX <= CLIENT_MESSAGE_BYTES_MAX);
const _: () = assert!(
    (IDLE_SESSIONS_DEFAULT as u64).div_ceil(SESSIONS_PER_CLIENT_DEFAULT as u64)
        <= SOURCE_IPS_MAX as u64
);
