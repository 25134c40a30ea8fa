//! The voice WebSocket (voice gateway v8) as a sans-IO state machine.
//!
//! The engine owns the WebSocket codec: it hands decoded text messages to
//! [`VoiceSession::handle_text`] and sends the frames that appear in the [`VoiceOutbox`]. Token
//! checks, SSRC and key allocation and session lookup for Resume are the engine's, through
//! [`VoiceAuthority`]. Time is a `now_ms` argument; [`VoiceSession::poll_timeout`] says when to
//! call [`VoiceSession::handle_timeout`].

mod close;
pub mod messages;
mod session;

pub use close::VoiceClose;
pub use session::{
    AuthRejection, Grant, IdentifyRequest, ResumeRequest, VoiceAuthority, VoiceEvent, VoiceOutbox,
    VoiceSession,
};
