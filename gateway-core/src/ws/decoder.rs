//! Per-connection message decoder: reassembles fragments, validates UTF-8 across them, answers
//! pings and runs the close handshake. Control replies go into a caller-owned output buffer.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::close::{WsCloseCode, WsError};
use super::frame::{OpCode, Parsed, parse_frame};
use super::writer::{write_close_frame, write_server_frame};
use crate::limits::{WS_FRAME_PAYLOAD_BYTES_MAX, WS_MESSAGE_BYTES_MAX};

/// What one call to [`Decoder::next`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum WsEvent<'a> {
    /// Nothing decodable yet: at least this many more bytes are needed.
    NeedMore(usize),
    /// A frame was consumed without completing anything (a fragment, or data after our close).
    Skipped,
    /// A complete, UTF-8 validated text message.
    Text(&'a str),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A ping; the pong has already been written to the output buffer.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer's close frame; when we had not started closing, the reply is already written.
    /// The connection is closed after this: flush the output, then shut the socket.
    Close {
        /// Status code, if the peer sent one.
        code: Option<u16>,
        /// Reason text (validated UTF-8).
        reason: &'a str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    CloseSent,
    Closed,
}

/// Server-side WebSocket decoder for one connection.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    /// Opcode of the message being reassembled, if a fragmented one is in progress.
    message: Option<OpCode>,
    /// Payload of a fragmented message so far; unfragmented messages never touch it.
    assembly: Vec<u8>,
    /// Prefix of `assembly` already known to be valid UTF-8 (text messages).
    utf8_valid: usize,
    /// `assembly` was handed out by the previous call and must be dropped now.
    release_assembly: bool,
    frame_max: usize,
    message_max: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder with the limits of `limits.rs`.
    pub fn new() -> Self {
        Self::with_limits(WS_FRAME_PAYLOAD_BYTES_MAX, WS_MESSAGE_BYTES_MAX)
    }

    /// A decoder with explicit frame and message limits (1009 above them).
    pub fn with_limits(frame_max: usize, message_max: usize) -> Self {
        Self {
            state: State::Open,
            message: None,
            assembly: Vec::new(),
            utf8_valid: 0,
            release_assembly: false,
            frame_max,
            message_max: message_max.max(frame_max),
        }
    }

    /// Whether the close handshake has finished (or failed): nothing more will be decoded.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether we have sent a close frame.
    pub fn close_sent(&self) -> bool {
        self.state != State::Open
    }

    /// Starts the close handshake from our side; returns false if a close was already sent.
    pub fn start_close(&mut self, code: WsCloseCode, reason: &str, out: &mut Vec<u8>) -> bool {
        if self.state != State::Open {
            return false;
        }
        write_close_frame(code, reason, out);
        self.state = State::CloseSent;
        true
    }

    /// Records that a close frame was sent by other means (the gateway session queues its
    /// own close frames), so the peer's close is not answered again.
    pub fn note_close_sent(&mut self) {
        if self.state == State::Open {
            self.state = State::CloseSent;
        }
    }

    /// Decodes at most one frame from the front of `buf` (unmasking it in place). Returns the
    /// bytes consumed and the event. On `Err` the close frame for the error has been written to
    /// `out` and the connection should be shut after flushing it.
    pub fn next<'a>(
        &'a mut self,
        buf: &'a mut [u8],
        out: &mut Vec<u8>,
    ) -> (usize, Result<WsEvent<'a>, WsError>) {
        if self.release_assembly {
            self.assembly = Vec::new();
            self.utf8_valid = 0;
            self.release_assembly = false;
        }
        if self.state == State::Closed {
            return (buf.len(), Err(WsError::Closed));
        }
        let frame = match parse_frame(buf, true, self.frame_max) {
            Parsed::NeedMore(n) => return (0, Ok(WsEvent::NeedMore(n))),
            Parsed::Error(e) => return (0, Err(self.fail(e, out))),
            Parsed::Frame(f) => f,
        };
        let consumed = frame.consumed;
        let (fin, opcode, payload) = (frame.header.fin, frame.header.opcode, frame.payload);
        let result = match opcode {
            OpCode::Ping => {
                if self.state == State::Open {
                    write_server_frame(OpCode::Pong, payload, out);
                }
                Ok(WsEvent::Ping(payload))
            }
            OpCode::Pong => Ok(WsEvent::Pong(payload)),
            OpCode::Close => self.on_close(payload, out),
            OpCode::Text | OpCode::Binary if self.message.is_some() => {
                Err(self.fail(WsError::BadFragmentation, out))
            }
            OpCode::Continuation if self.message.is_none() => {
                Err(self.fail(WsError::BadFragmentation, out))
            }
            OpCode::Text | OpCode::Binary if fin => {
                if self.state != State::Open {
                    Ok(WsEvent::Skipped)
                } else if opcode == OpCode::Text {
                    match std::str::from_utf8(payload) {
                        Ok(s) => Ok(WsEvent::Text(s)),
                        Err(_) => Err(self.fail(WsError::InvalidUtf8, out)),
                    }
                } else {
                    Ok(WsEvent::Binary(payload))
                }
            }
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                return (consumed, self.on_fragment(opcode, fin, payload, out));
            }
        };
        (consumed, result)
    }

    fn on_fragment<'a>(
        &'a mut self,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<WsEvent<'a>, WsError> {
        if opcode != OpCode::Continuation {
            self.message = Some(opcode);
            self.assembly.clear();
            self.utf8_valid = 0;
        }
        if self.assembly.len() + payload.len() > self.message_max {
            return Err(self.fail(WsError::MessageTooBig, out));
        }
        self.assembly.extend_from_slice(payload);
        let is_text = self.message == Some(OpCode::Text);
        if is_text {
            let pending = self.assembly.get(self.utf8_valid..).unwrap_or(&[]);
            match std::str::from_utf8(pending) {
                Ok(_) => self.utf8_valid = self.assembly.len(),
                // A code point cut at the fragment end is fine until the final fragment.
                Err(e) if e.error_len().is_none() && !fin => self.utf8_valid += e.valid_up_to(),
                Err(_) => return Err(self.fail(WsError::InvalidUtf8, out)),
            }
        }
        if !fin {
            return Ok(WsEvent::Skipped);
        }
        self.message = None;
        self.release_assembly = true;
        if self.state != State::Open {
            return Ok(WsEvent::Skipped);
        }
        if is_text {
            // Already validated incrementally; checked again because the borrow returned
            // must come from a successful conversion.
            if std::str::from_utf8(&self.assembly).is_err() {
                return Err(self.fail(WsError::InvalidUtf8, out));
            }
            std::str::from_utf8(&self.assembly)
                .map(WsEvent::Text)
                .map_err(|_| WsError::InvalidUtf8)
        } else {
            Ok(WsEvent::Binary(&self.assembly))
        }
    }

    fn on_close<'a>(
        &mut self,
        payload: &'a [u8],
        out: &mut Vec<u8>,
    ) -> Result<WsEvent<'a>, WsError> {
        let (code, reason) = match payload {
            [] => (None, ""),
            [_] => return Err(self.fail(WsError::BadClose, out)),
            [a, b, rest @ ..] => {
                let code = u16::from_be_bytes([*a, *b]);
                if !WsCloseCode(code).valid_on_wire() {
                    return Err(self.fail(WsError::BadClose, out));
                }
                let Ok(reason) = std::str::from_utf8(rest) else {
                    return Err(self.fail(WsError::InvalidUtf8, out));
                };
                (Some(code), reason)
            }
        };
        if self.state == State::Open {
            // Echo the peer's code, as RFC 6455 5.5.1 suggests.
            match code {
                Some(c) => write_close_frame(WsCloseCode(c), "", out),
                None => write_server_frame(OpCode::Close, &[], out),
            }
        }
        self.state = State::Closed;
        Ok(WsEvent::Close { code, reason })
    }

    fn fail(&mut self, e: WsError, out: &mut Vec<u8>) -> WsError {
        if self.state == State::Open {
            write_close_frame(e.close_code(), "", out);
        }
        self.state = State::Closed;
        self.message = None;
        self.assembly = Vec::new();
        e
    }
}
