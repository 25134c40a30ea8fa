//! Gateway opcodes and close codes.

/// Gateway opcodes (API v10).
pub mod op {
    /// Server -> client event.
    pub const DISPATCH: u8 = 0;
    /// Client heartbeat (and server request for one).
    pub const HEARTBEAT: u8 = 1;
    /// Client identify.
    pub const IDENTIFY: u8 = 2;
    /// Client presence update.
    pub const PRESENCE_UPDATE: u8 = 3;
    /// Client voice state update.
    pub const VOICE_STATE_UPDATE: u8 = 4;
    /// Client resume.
    pub const RESUME: u8 = 6;
    /// Server asks the client to reconnect and resume.
    pub const RECONNECT: u8 = 7;
    /// Client requests guild members.
    pub const REQUEST_GUILD_MEMBERS: u8 = 8;
    /// Server: the session is invalid (`d` tells whether it is resumable).
    pub const INVALID_SESSION: u8 = 9;
    /// Server hello with the heartbeat interval.
    pub const HELLO: u8 = 10;
    /// Server heartbeat acknowledgement.
    pub const HEARTBEAT_ACK: u8 = 11;
    /// Client lazy member-list request (ranges per channel).
    pub const LAZY_REQUEST: u8 = 14;
}

/// Gateway close codes, sent in the WebSocket close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CloseCode {
    /// Unknown error; also used when a session's output queue overflows.
    UnknownError = 4000,
    /// Unknown or client-forbidden opcode.
    UnknownOpcode = 4001,
    /// Undecodable or oversized payload.
    DecodeError = 4002,
    /// Command before Identify.
    NotAuthenticated = 4003,
    /// Bad token.
    AuthenticationFailed = 4004,
    /// Identify or Resume on an authenticated session.
    AlreadyAuthenticated = 4005,
    /// Resume with a sequence the server never sent.
    InvalidSeq = 4007,
    /// Too many commands.
    RateLimited = 4008,
    /// No heartbeat in time.
    SessionTimedOut = 4009,
    /// Invalid shard in Identify.
    InvalidShard = 4010,
    /// Too many guilds for one shard.
    ShardingRequired = 4011,
    /// `v` other than 10.
    InvalidApiVersion = 4012,
    /// Unknown intent bits.
    InvalidIntents = 4013,
    /// Privileged intents the application may not use.
    DisallowedIntents = 4014,
}

impl CloseCode {
    /// The numeric code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// Whether the client may resume after this close (Discord's documented reconnect rules).
    pub fn resumable(self) -> bool {
        matches!(
            self,
            CloseCode::UnknownError
                | CloseCode::UnknownOpcode
                | CloseCode::DecodeError
                | CloseCode::NotAuthenticated
                | CloseCode::AlreadyAuthenticated
                | CloseCode::InvalidSeq
                | CloseCode::RateLimited
                | CloseCode::SessionTimedOut
        )
    }

    /// Short reason text for the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::UnknownError => "Unknown error.",
            CloseCode::UnknownOpcode => "Unknown opcode.",
            CloseCode::DecodeError => "Error while decoding payload.",
            CloseCode::NotAuthenticated => "Not authenticated.",
            CloseCode::AuthenticationFailed => "Authentication failed.",
            CloseCode::AlreadyAuthenticated => "Already authenticated.",
            CloseCode::InvalidSeq => "Invalid seq.",
            CloseCode::RateLimited => "Rate limited.",
            CloseCode::SessionTimedOut => "Session timed out.",
            CloseCode::InvalidShard => "Invalid shard.",
            CloseCode::ShardingRequired => "Sharding required.",
            CloseCode::InvalidApiVersion => "Invalid API version.",
            CloseCode::InvalidIntents => "Invalid intent(s).",
            CloseCode::DisallowedIntents => "Disallowed intent(s).",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_resumability() {
        assert_eq!(CloseCode::UnknownError.code(), 4000);
        assert_eq!(CloseCode::DisallowedIntents.code(), 4014);
        assert!(CloseCode::SessionTimedOut.resumable());
        for c in [
            CloseCode::AuthenticationFailed,
            CloseCode::InvalidShard,
            CloseCode::ShardingRequired,
            CloseCode::InvalidApiVersion,
            CloseCode::InvalidIntents,
            CloseCode::DisallowedIntents,
        ] {
            assert!(!c.resumable(), "{c:?}");
            assert!(c.reason().len() < 100);
        }
    }
}
