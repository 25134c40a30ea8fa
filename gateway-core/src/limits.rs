//! Every bound of this crate, in one place, with the relations between them checked at compile
//! time.

/// Largest HTTP upgrade request head accepted; real clients send well under 1 KiB.
pub const HANDSHAKE_REQUEST_BYTES_MAX: usize = 8 * 1024;
/// Header slots handed to httparse; a request with more headers is rejected.
pub const HANDSHAKE_HEADERS_MAX: usize = 32;

/// Largest single WebSocket frame payload accepted from a client (close 1009 above it).
pub const WS_FRAME_PAYLOAD_BYTES_MAX: usize = 16 * 1024;
/// Largest reassembled WebSocket message accepted from a client (close 1009 above it).
pub const WS_MESSAGE_BYTES_MAX: usize = 16 * 1024;
/// Longest WebSocket frame header: 2 bytes, 8 bytes of extended length, 4 bytes of mask.
pub const WS_FRAME_HEADER_BYTES_MAX: usize = 14;
/// Longest server frame header (servers never mask).
pub const WS_SERVER_HEADER_BYTES_MAX: usize = 10;
/// Control frames carry at most 125 bytes (RFC 6455 5.5).
pub const WS_CONTROL_PAYLOAD_BYTES_MAX: usize = 125;

/// Largest gateway command payload a client may send (close 4002 above it).
pub const GATEWAY_PAYLOAD_BYTES_MAX: usize = 4096;
/// Heartbeat interval announced in Hello.
pub const HEARTBEAT_INTERVAL_MS: u64 = 41_250;
/// Slack after a missed heartbeat before the session is declared a zombie (close 4009):
/// covers network jitter and the client's first, randomly delayed beat.
pub const HEARTBEAT_GRACE_MS: u64 = 10_000;
/// Client commands allowed per rate-limit window (close 4008 above it).
pub const COMMANDS_PER_WINDOW_MAX: u32 = 120;
/// Length of the command rate-limit window.
pub const COMMAND_WINDOW_MS: u64 = 60_000;

/// Dispatch events kept per session for Resume (op 6).
pub const RESUME_RING_EVENTS_MAX: usize = 256;
/// Payload bytes kept per session for Resume; the oldest events go first when exceeded.
pub const RESUME_RING_BYTES_MAX: usize = 1024 * 1024;

/// Frames queued for one session before it is disconnected (resumable).
pub const OUTPUT_QUEUE_FRAMES_MAX: usize = 1024;
/// Bytes queued for one session before it is disconnected (resumable): the default of
/// `GatewayConfig::output_queue_bytes_max`.
pub const OUTPUT_QUEUE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Smallest output bound a deployment may set: a Resume's replay of a full resume ring (plus
/// frame headers and RESUMED) must fit, or a resumed session would overflow again at once.
pub const OUTPUT_QUEUE_BYTES_MIN: usize = RESUME_RING_BYTES_MAX + 64 * 1024;
/// Bytes of a frame kept inline in an output entry (WebSocket header + JSON prefix or a
/// small control message such as a heartbeat ACK), so per-recipient work needs no allocation.
/// 55 plus the length byte fill seven words: an entry with its shared tail is 88 bytes, and
/// every session holds one inline.
pub const OUT_FRAME_INLINE_BYTES: usize = 55;

/// Longest token accepted; anything longer is a 4004 without being decoded.
pub const TOKEN_BYTES_MAX: usize = 256;
/// Longest session id accepted in Resume.
pub const SESSION_ID_BYTES_MAX: usize = 64;
/// Largest shard count a client may ask for.
pub const SHARD_COUNT_MAX: u32 = 4096;
/// Guilds one client shard may hold before sharding is required (4011), as Discord does.
pub const GUILDS_PER_SHARD_MAX: usize = 2_500;
/// Channels in one lazy member-list request (op 14).
pub const LAZY_CHANNELS_MAX: usize = 16;
/// Ranges per channel in one lazy member-list request (op 14).
pub const LAZY_RANGES_PER_CHANNEL_MAX: usize = 8;
/// User ids in one Request Guild Members (op 8).
pub const REQUEST_MEMBERS_USER_IDS_MAX: usize = 100;
/// Default and bounds of Identify's `large_threshold`.
pub const LARGE_THRESHOLD_DEFAULT: u32 = 50;
/// Lowest accepted `large_threshold`.
pub const LARGE_THRESHOLD_MIN: u32 = 50;
/// Highest accepted `large_threshold`.
pub const LARGE_THRESHOLD_MAX: u32 = 250;

const _: () = assert!(WS_MESSAGE_BYTES_MAX > GATEWAY_PAYLOAD_BYTES_MAX);
const _: () = assert!(WS_FRAME_PAYLOAD_BYTES_MAX <= WS_MESSAGE_BYTES_MAX);
const _: () = assert!(WS_CONTROL_PAYLOAD_BYTES_MAX < WS_FRAME_PAYLOAD_BYTES_MAX);
const _: () = assert!(HEARTBEAT_GRACE_MS < HEARTBEAT_INTERVAL_MS);
// A client must be able to heartbeat well within its command budget.
const _: () =
    assert!((COMMAND_WINDOW_MS / HEARTBEAT_INTERVAL_MS + 2) < COMMANDS_PER_WINDOW_MAX as u64);
const _: () = assert!(OUT_FRAME_INLINE_BYTES > WS_SERVER_HEADER_BYTES_MAX + 32);
const _: () =
    assert!(RESUME_RING_EVENTS_MAX > 0 && RESUME_RING_EVENTS_MAX <= OUTPUT_QUEUE_FRAMES_MAX);
const _: () = assert!(OUTPUT_QUEUE_BYTES_MIN <= OUTPUT_QUEUE_BYTES_MAX);
const _: () = assert!(LARGE_THRESHOLD_MIN <= LARGE_THRESHOLD_DEFAULT);
const _: () = assert!(LARGE_THRESHOLD_DEFAULT <= LARGE_THRESHOLD_MAX);
