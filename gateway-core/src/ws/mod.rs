//! RFC 6455 WebSocket, server side: upgrade handshake, incremental frame parser, message
//! reassembly with the close handshake, and a frame writer that keeps shared payloads shared.

pub mod close;
pub mod decoder;
pub mod frame;
pub mod handshake;
pub mod writer;

pub use close::{WsCloseCode, WsError};
pub use decoder::{Decoder, WsEvent};
pub use frame::{Frame, FrameHeader, OpCode, Parsed, parse_frame};
pub use handshake::{
    Compression, GatewayQuery, HandshakeError, HandshakeStatus, UpgradeRequest, parse_request,
    write_error_response, write_response,
};
pub use writer::{write_client_frame, write_close_frame, write_server_frame, write_server_header};
