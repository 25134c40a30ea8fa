//! Every bound the SFU enforces, in one place, with the relations between them checked at compile
//! time. The engine may lower the runtime ones (room size, batch slots) from its hardware profile but
//! never raise them past these.

/// Largest UDP datagram the SFU accepts or emits. Voice packets are ~100 bytes and video packets are
/// packetised under the path MTU, so anything larger is hostile or broken.
pub const PACKET_LEN_MAX: usize = 1500;

/// Fixed RTP header: V/P/X/CC, M/PT, sequence, timestamp, SSRC.
pub const RTP_FIXED_HEADER_LEN: usize = 12;

/// CSRC count is a 4-bit field.
pub const RTP_CSRC_COUNT_MAX: usize = 15;

/// Size of the RTP header extension preamble (profile u16 + length in words u16). In the `rtpsize`
/// modes it is part of the associated data while the extension body is encrypted.
pub const RTP_EXTENSION_PREAMBLE_LEN: usize = 4;

/// RTCP common header plus the sender SSRC: the associated data of an `rtpsize` RTCP packet.
pub const RTCP_HEADER_LEN: usize = 8;

/// Length of the UDP keepalive some clients (discord-ext-voice-recv) send; it is ignored.
pub const KEEPALIVE_LEN: usize = 8;

/// Poly1305 and GCM tags are both 16 bytes.
pub const AEAD_TAG_LEN: usize = 16;

/// The big-endian nonce counter appended after the tag in the `rtpsize` modes.
pub const NONCE_SUFFIX_LEN: usize = 4;

/// Bytes every encrypted packet carries beyond its header and plaintext.
pub const CRYPTO_OVERHEAD_LEN: usize = AEAD_TAG_LEN + NONCE_SUFFIX_LEN;

/// Transport keys are 256-bit for both modes.
pub const SECRET_KEY_LEN: usize = 32;

/// IP discovery datagram: type, length, SSRC, 64-byte address, port.
pub const IPDISC_PACKET_LEN: usize = 74;

/// Value of the IP discovery length field: the bytes after type and length.
pub const IPDISC_BODY_LEN: usize = 70;

/// NUL-padded address field of an IP discovery packet.
pub const IPDISC_ADDRESS_LEN: usize = 64;

/// First nonce counter the server uses towards each receiver. Discord's protocol gives one key
/// for both directions, and clients (discord.py) count their own packets from 0; starting the
/// server half the 32-bit space away keeps the two directions from ever sealing under the same
/// (key, nonce) pair unless a client sends 2^31 packets (~497 days of 20 ms frames).
pub const SERVER_NONCE_COUNTER_START: u32 = 1 << 31;

/// Nonce counters remembered per sender. 1024 packets is ~20 s of 20 ms Opus frames, far more
/// reordering than a jitter buffer tolerates, at 128 bytes per sender.
pub const REPLAY_WINDOW_LEN: u64 = 1024;

/// Largest voice room. Discord caps voice channels at 99 users; one slot spare for a bot.
pub const ROOM_PARTICIPANTS_MAX: usize = 100;

/// Voice rooms one shard serves at once.
pub const SHARD_ROOMS_MAX: usize = 10_000;

/// SSRCs in use on one shard's port; bounds the routing table.
pub const SHARD_SSRCS_MAX: usize = 100_000;

/// SSRCs one participant may own: audio, video and their retransmission streams.
pub const PARTICIPANT_SSRCS_MAX: usize = 4;

/// Output slots a packet can fill at most: every other participant once.
pub const FANOUT_PER_PACKET_MAX: usize = ROOM_PARTICIPANTS_MAX - 1;

/// How long after the last non-silent audio frame a participant still counts as speaking.
pub const SPEAKING_HOLD_MS: u64 = 500;

/// Heartbeat interval announced in the voice Hello (what Discord's voice servers send).
pub const VOICE_HEARTBEAT_INTERVAL_MS: u64 = 13_750;

/// Silence after which a voice WebSocket is closed with 4009: two missed heartbeats.
pub const VOICE_HEARTBEAT_TIMEOUT_MS: u64 = 2 * VOICE_HEARTBEAT_INTERVAL_MS;

/// A connection must Identify or Resume this soon after opening.
pub const VOICE_IDENTIFY_TIMEOUT_MS: u64 = 20_000;

/// Largest voice gateway text message accepted; real ones are a few hundred bytes.
pub const VOICE_MESSAGE_LEN_MAX: usize = 4096;

/// Sequenced server messages kept for a buffered resume (voice gateway v8).
pub const VOICE_RESUME_BUFFER_MAX: usize = 64;

/// How long the engine should keep a detached voice session resumable.
pub const VOICE_RESUME_WINDOW_MS: u64 = 60_000;

/// Longest token, session id or address string accepted in voice gateway payloads.
pub const VOICE_STRING_LEN_MAX: usize = 256;

/// User ids per Clients Connect (op 11) message.
pub const VOICE_CLIENTS_CONNECT_MAX: usize = ROOM_PARTICIPANTS_MAX;

const _: () = assert!(PACKET_LEN_MAX <= u16::MAX as usize);
const _: () = assert!(
    RTP_FIXED_HEADER_LEN
        + 4 * RTP_CSRC_COUNT_MAX
        + RTP_EXTENSION_PREAMBLE_LEN
        + CRYPTO_OVERHEAD_LEN
        < PACKET_LEN_MAX
);
const _: () = assert!(IPDISC_PACKET_LEN == 4 + IPDISC_BODY_LEN);
const _: () = assert!(IPDISC_BODY_LEN == 4 + IPDISC_ADDRESS_LEN + 2);
const _: () = assert!(IPDISC_PACKET_LEN <= PACKET_LEN_MAX);
const _: () = assert!(KEEPALIVE_LEN < RTP_FIXED_HEADER_LEN);
const _: () = assert!(REPLAY_WINDOW_LEN.is_power_of_two() && REPLAY_WINDOW_LEN.is_multiple_of(64));
const _: () = assert!(REPLAY_WINDOW_LEN < 1 << 31);
const _: () = assert!(FANOUT_PER_PACKET_MAX + 1 == ROOM_PARTICIPANTS_MAX);
const _: () = assert!(VOICE_HEARTBEAT_TIMEOUT_MS > VOICE_HEARTBEAT_INTERVAL_MS);
const _: () = assert!(VOICE_CLIENTS_CONNECT_MAX <= ROOM_PARTICIPANTS_MAX);
const _: () = assert!(VOICE_RESUME_BUFFER_MAX > 0);
const _: () = assert!(SHARD_SSRCS_MAX >= ROOM_PARTICIPANTS_MAX * PARTICIPANT_SSRCS_MAX);
const _: () = assert!((SHARD_SSRCS_MAX as u64) < u32::MAX as u64);
