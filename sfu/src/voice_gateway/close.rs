//! Voice gateway close codes: every protocol violation ends the connection with one of these.

/// Why the server closes a voice WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum VoiceClose {
    /// 4001: an opcode the server does not know.
    #[error("unknown opcode")]
    UnknownOpcode,
    /// 4002: not JSON, too large, or a payload missing required fields.
    #[error("failed to decode payload")]
    DecodeError,
    /// 4003: a command other than Identify, Resume or Heartbeat before identifying.
    #[error("not authenticated")]
    NotAuthenticated,
    /// 4004: the token is wrong for this server, user and session.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// 4005: a second Identify or Resume on one connection.
    #[error("already authenticated")]
    AlreadyAuthenticated,
    /// 4006: Resume for a session the server no longer has (or can no longer replay).
    #[error("session no longer valid")]
    SessionNoLongerValid,
    /// 4009: no heartbeat (or no Identify) in time.
    #[error("session timeout")]
    SessionTimeout,
    /// 4011: the server id is not served here.
    #[error("server not found")]
    ServerNotFound,
    /// 4012: Select Protocol asked for something other than `udp`.
    #[error("unknown protocol")]
    UnknownProtocol,
    /// 4014: the user was removed from the channel (kicked, moved, channel deleted).
    #[error("disconnected")]
    Disconnected,
    /// 4015: the voice server is going away; clients should resume elsewhere.
    #[error("voice server crashed")]
    VoiceServerCrashed,
    /// 4016: Select Protocol named a mode the server does not implement.
    #[error("unknown encryption mode")]
    UnknownEncryptionMode,
}

impl VoiceClose {
    /// Every close code, for tables and tests.
    pub const ALL: [VoiceClose; 12] = [
        VoiceClose::UnknownOpcode,
        VoiceClose::DecodeError,
        VoiceClose::NotAuthenticated,
        VoiceClose::AuthenticationFailed,
        VoiceClose::AlreadyAuthenticated,
        VoiceClose::SessionNoLongerValid,
        VoiceClose::SessionTimeout,
        VoiceClose::ServerNotFound,
        VoiceClose::UnknownProtocol,
        VoiceClose::Disconnected,
        VoiceClose::VoiceServerCrashed,
        VoiceClose::UnknownEncryptionMode,
    ];

    /// The WebSocket close code.
    pub fn code(self) -> u16 {
        match self {
            VoiceClose::UnknownOpcode => 4001,
            VoiceClose::DecodeError => 4002,
            VoiceClose::NotAuthenticated => 4003,
            VoiceClose::AuthenticationFailed => 4004,
            VoiceClose::AlreadyAuthenticated => 4005,
            VoiceClose::SessionNoLongerValid => 4006,
            VoiceClose::SessionTimeout => 4009,
            VoiceClose::ServerNotFound => 4011,
            VoiceClose::UnknownProtocol => 4012,
            VoiceClose::Disconnected => 4014,
            VoiceClose::VoiceServerCrashed => 4015,
            VoiceClose::UnknownEncryptionMode => 4016,
        }
    }

    /// The close code for a number, if it is one of ours.
    pub fn from_code(code: u16) -> Option<VoiceClose> {
        VoiceClose::ALL.into_iter().find(|c| c.code() == code)
    }

    /// Whether the engine should keep the session resumable after closing with this code.
    pub fn keeps_session(self) -> bool {
        matches!(
            self,
            VoiceClose::SessionTimeout | VoiceClose::VoiceServerCrashed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for c in VoiceClose::ALL {
            assert!(seen.insert(c.code()));
            assert_eq!(VoiceClose::from_code(c.code()), Some(c));
            assert!(!c.to_string().is_empty() && c.to_string().len() <= 123);
        }
        assert_eq!(VoiceClose::from_code(4000), None);
        assert!(VoiceClose::VoiceServerCrashed.keeps_session());
        assert!(!VoiceClose::Disconnected.keeps_session());
    }
}
