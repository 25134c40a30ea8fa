//! WebSocket close codes (RFC 6455 7.4) and the protocol errors that lead to them.

/// Close codes this server sends or checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsCloseCode(pub u16);

impl WsCloseCode {
    /// 1000: normal closure.
    pub const NORMAL: Self = Self(1000);
    /// 1001: going away (server draining).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: unsupported data.
    pub const UNSUPPORTED: Self = Self(1003);
    /// 1007: invalid payload data (bad UTF-8).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: policy violation.
    pub const POLICY: Self = Self(1008);
    /// 1009: message too big.
    pub const TOO_BIG: Self = Self(1009);
    /// 1011: internal error.
    pub const INTERNAL: Self = Self(1011);

    /// Whether a peer may put this code on the wire (1005, 1006 and 1015 are reserved for
    /// local use; 1004 and 1012-2999 are unassigned or IANA-reserved for future use).
    pub fn valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999) && self.0 != 1015
    }
}

/// A protocol violation by the peer; the connection must be closed with [`WsError::close_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// A client frame without the mask bit.
    #[error("client frame not masked")]
    Unmasked,
    /// RSV1-3 set without a negotiated extension.
    #[error("reserved bits set")]
    ReservedBits,
    /// Opcode 3-7 or 11-15.
    #[error("reserved opcode {0}")]
    ReservedOpcode(u8),
    /// Control frame fragmented or longer than 125 bytes.
    #[error("bad control frame")]
    BadControlFrame,
    /// A continuation without a message started, or a new data frame inside a message.
    #[error("bad fragmentation")]
    BadFragmentation,
    /// 64-bit length with the top bit set, or a non-minimal length encoding.
    #[error("bad length encoding")]
    BadLength,
    /// Frame payload above the frame limit.
    #[error("frame too big")]
    FrameTooBig,
    /// Reassembled message above the message limit.
    #[error("message too big")]
    MessageTooBig,
    /// Text message or close reason that is not UTF-8.
    #[error("invalid utf-8")]
    InvalidUtf8,
    /// Close frame with a 1-byte payload or a code not allowed on the wire.
    #[error("bad close frame")]
    BadClose,
    /// Input after the close handshake finished.
    #[error("connection closed")]
    Closed,
}

impl WsError {
    /// The close code to send for this error.
    pub fn close_code(self) -> WsCloseCode {
        match self {
            WsError::FrameTooBig | WsError::MessageTooBig => WsCloseCode::TOO_BIG,
            WsError::InvalidUtf8 => WsCloseCode::INVALID_PAYLOAD,
            WsError::Unmasked
            | WsError::ReservedBits
            | WsError::ReservedOpcode(_)
            | WsError::BadControlFrame
            | WsError::BadFragmentation
            | WsError::BadLength
            | WsError::BadClose
            | WsError::Closed => WsCloseCode::PROTOCOL_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_validity() {
        for ok in [1000, 1001, 1002, 1003, 1007, 1011, 3000, 4000, 4999] {
            assert!(WsCloseCode(ok).valid_on_wire(), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert!(!WsCloseCode(bad).valid_on_wire(), "{bad}");
        }
    }
}
