//! Every bound and default of the harness, in one place.

/// Connections the pingpong scenario opens by default (the foundation benchmark's figure).
pub const PINGPONG_CONNS_DEFAULT: u32 = 1000;
/// Total offered request rate of pingpong, requests per second, summed over connections.
pub const PINGPONG_RATE_DEFAULT: u64 = 40_000;
/// Request (and echoed response) size of pingpong in bytes.
pub const PINGPONG_REQUEST_BYTES_DEFAULT: usize = 64;
/// Largest request pingpong accepts; one request is in flight per connection, so a request must
/// fit a socket buffer in one write.
pub const PINGPONG_REQUEST_BYTES_MAX: usize = 16 * 1024;
/// Smallest request: the first 8 bytes carry the sequence number used to check the echo.
pub const PINGPONG_REQUEST_BYTES_MIN: usize = 8;
/// The load generator busy-polls when its next send is due within this many µs.
pub const PINGPONG_SPIN_US_DEFAULT: u64 = 200;
/// How long pingpong waits for outstanding responses after the measured window closes.
pub const PINGPONG_DRAIN_S: u64 = 2;
/// epoll events handled per wake-up of the load generator.
pub const EPOLL_EVENTS_MAX: usize = 1024;

/// Histogram upper bound: one minute in nanoseconds; slower answers saturate here.
pub const LATENCY_MAX_NS: u64 = 60_000_000_000;
/// Histogram precision (significant decimal digits).
pub const LATENCY_SIGFIGS: u8 = 3;

/// Idle connections opened by default: the server needs this many fds plus a few.
pub const IDLE_CONNS_DEFAULT: u32 = 19_000;
/// The machine's hard RLIMIT_NOFILE; it cannot be raised (PEERS.md).
pub const NOFILE_HARD: u64 = 20_000;
/// Most connections one idle-client process holds, leaving room for its other fds.
pub const IDLE_CONNS_PER_PROC_MAX: u32 = 19_500;
/// Connections per idle-client process by default; several processes spread the load.
pub const IDLE_CONNS_PER_PROC_DEFAULT: u32 = 5_000;
/// Loopback source addresses idle clients rotate through (127.0.0.2 ..), so ephemeral ports
/// never run short.
pub const IDLE_SOURCE_IPS_MAX: u8 = 32;
/// Per-connection timeout for the idle client's one-byte handshake, seconds.
pub const IDLE_HANDSHAKE_TIMEOUT_S: u64 = 10;
/// Default settle time before and after opening idle connections, seconds.
pub const IDLE_SETTLE_S_DEFAULT: u64 = 3;

/// How long a server has to write its ready file.
pub const READY_TIMEOUT_S: u64 = 30;
/// How long a server has to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT_S: u64 = 5;

/// Echo peers' per-connection read buffer (a common default; an idle connection holds it).
pub const PEER_BUF_BYTES_DEFAULT: usize = 4096;
/// Echo peers' io_uring submission queue entries.
pub const PEER_RING_ENTRIES: u32 = 1024;
/// Echo peers' listen backlog.
pub const PEER_LISTEN_BACKLOG: i32 = 4096;

const _: () = assert!(IDLE_CONNS_PER_PROC_MAX as u64 + 64 <= NOFILE_HARD);
const _: () = assert!(IDLE_CONNS_PER_PROC_DEFAULT <= IDLE_CONNS_PER_PROC_MAX);
const _: () = assert!((IDLE_CONNS_DEFAULT as u64) + 64 <= NOFILE_HARD);
const _: () = assert!(PINGPONG_REQUEST_BYTES_MIN <= PINGPONG_REQUEST_BYTES_DEFAULT);
const _: () = assert!(PINGPONG_REQUEST_BYTES_DEFAULT <= PINGPONG_REQUEST_BYTES_MAX);
