//! Sans-IO voice SFU: voice gateway protocol, RTP/RTCP, IP discovery, transport encryption and rooms.
//!
//! Nothing here opens a socket, reads a clock or spawns a thread: the engine feeds datagrams, text
//! messages and the current time in, and gets datagrams, text messages, events and deadlines out,
//! written into buffers it owns. See `DESIGN.md` next to this crate for the packet path.
//!
//! The engine's loop, in short:
//!
//! ```
//! use std::net::SocketAddr;
//! use sfu::{OutBatch, VoiceFlags, VoiceShard};
//! use sfu::voice_gateway::{AuthRejection, Grant, IdentifyRequest, ResumeRequest, VoiceAuthority,
//!     VoiceEvent, VoiceOutbox, VoiceSession};
//!
//! struct Auth { ssrc: u32 }
//! impl VoiceAuthority for Auth {
//!     fn identify(&mut self, _: &IdentifyRequest<'_>) -> Result<Grant, AuthRejection> {
//!         // Real engine: check the token, allocate the SSRC on the shard, draw a random key.
//!         Ok(Grant { ssrc: self.ssrc, ip: "203.0.113.1".into(), port: 50_000, secret_key: [7; 32] })
//!     }
//!     fn resume(&mut self, _: &ResumeRequest<'_>) -> Result<VoiceSession, AuthRejection> {
//!         Err(AuthRejection::SessionNoLongerValid)
//!     }
//! }
//!
//! let mut shard: VoiceShard<SocketAddr> = VoiceShard::new(sfu::limits::ROOM_PARTICIPANTS_MAX);
//! let mut auth = Auth { ssrc: shard.allocate_ssrc().expect("free ssrc") };
//! let mut outbox = VoiceOutbox::default();
//! let mut session = VoiceSession::open(0, &mut outbox); // queues Hello
//! for text in [
//!     r#"{"op":0,"d":{"server_id":"1","user_id":"2","session_id":"s","token":"t"}}"#,
//!     r#"{"op":1,"d":{"protocol":"udp","data":{"address":"198.51.100.2","port":4000,
//!         "mode":"aead_xchacha20_poly1305_rtpsize"}}}"#,
//! ] {
//!     session.handle_text(10, text, &mut auth, &mut outbox).expect("valid");
//! }
//! for event in outbox.events.drain(..) {
//!     match event {
//!         // Ready sent: admit at once, IP discovery comes before Select Protocol.
//!         VoiceEvent::Identified { server_id, user_id, ssrc } => shard
//!             .admit(server_id, user_id, ssrc, VoiceFlags::default())
//!             .expect("room has space"),
//!         VoiceEvent::ProtocolSelected { user_id, mode, secret_key, .. } => shard
//!             .set_transport(1, user_id, mode, &secret_key)
//!             .expect("admitted"),
//!         _ => {}
//!     }
//! }
//! // outbox.frames now holds Hello, Ready and Session Description for the WebSocket.
//! assert_eq!(outbox.frames.len(), 3);
//!
//! // UDP: every datagram on the shard's port goes through the shard.
//! let mut batch = OutBatch::new(sfu::limits::FANOUT_PER_PACKET_MAX);
//! let mut request = [0u8; 74];
//! sfu::ipdisc::build_request(auth.ssrc, &mut request);
//! let from: SocketAddr = "198.51.100.2:4000".parse().expect("addr");
//! shard.handle_datagram(20, from, &mut request, &mut batch);
//! for (dest, datagram) in batch.iter() {
//!     // sendmmsg / io_uring send of `datagram` to `dest`
//!     assert_eq!((dest, datagram.len()), (from, 74));
//! }
//! batch.clear();
//! ```

pub mod batch;
pub mod crypto;
pub mod ipdisc;
pub mod limits;
pub mod replay;
pub mod room;
pub mod rtcp;
pub mod rtp;
pub mod shard;
pub mod voice_gateway;

pub use batch::OutBatch;
pub use crypto::{CryptoError, Mode, TransportCipher};
pub use room::{Join, PacketOutcome, PeerAddr, Room, RoomCounters, RoomError, VoiceFlags};
pub use shard::VoiceShard;
pub use voice_gateway::{VoiceAuthority, VoiceClose, VoiceEvent, VoiceOutbox, VoiceSession};
