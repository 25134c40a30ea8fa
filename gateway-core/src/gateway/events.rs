//! What a session reports to the engine.

use super::command::{
    Identify, LazyRequest, PresenceUpdate, RequestGuildMembers, VoiceStateUpdate,
};
use crate::token::TokenClaims;

/// An event for the engine, returned by the session's `handle_*` methods.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// A valid Identify (token verified, intents known, shard valid). The engine checks the
    /// application's privileged intents and sharding, then calls `Session::accept_identify` or
    /// `Session::close`.
    Identify {
        /// Token claims.
        claims: TokenClaims,
        /// The payload (`large_threshold` already clamped).
        identify: Box<Identify>,
    },
    /// A Resume with a valid token. The engine finds the old session by id and calls
    /// `Session::resume_from`, or `Session::invalid_session` when it has none.
    Resume {
        /// Token claims.
        claims: TokenClaims,
        /// Session to resume.
        session_id: String,
        /// Last sequence the client saw.
        seq: u64,
    },
    /// Op 3.
    PresenceUpdate(Box<PresenceUpdate>),
    /// Op 4.
    VoiceStateUpdate(VoiceStateUpdate),
    /// Op 8.
    RequestGuildMembers(Box<RequestGuildMembers>),
    /// Op 14.
    LazyRequest(Box<LazyRequest>),
    /// The session closed itself; its close frame is the last queued frame. Flush, then shut
    /// the connection. When `resumable`, keep the session for a later Resume.
    Close {
        /// Gateway (4xxx) or WebSocket close code sent.
        code: u16,
        /// Whether the client may resume this session.
        resumable: bool,
    },
}
