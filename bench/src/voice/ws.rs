//! A small blocking WebSocket JSON client over any byte stream (plain TCP for the main gateway,
//! rustls for the voice gateway), for the voice scenario's set-up: upgrade, send text, read the
//! next text message (fragments joined), report close codes. Frames come from gateway-core's
//! codec. Not used on the measured path.

use std::io::{self, Read, Write};

use gateway_core::ws::{OpCode, Parsed, parse_frame, write_client_frame};
use serde_json::Value;

use crate::BenchError;

/// Largest message accepted from a server (a GUILD_CREATE of a 100-member guild is far less).
pub const MESSAGE_LEN_MAX: usize = 1 << 22;
/// Bytes read from the stream at a time.
const READ_CHUNK: usize = 16 * 1024;
/// The client's frame mask (servers must not care which).
const MASK: [u8; 4] = [0x5A, 0x17, 0xC3, 0x2E];
/// RFC 6455's sample key; the bench does not check the accept hash.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// What the next message was.
#[derive(Debug)]
pub enum Msg {
    /// A text message, parsed.
    Json(Value),
    /// The server closed with this code (0 when it gave none).
    Closed(u16),
}

/// One WebSocket over `S`.
#[derive(Debug)]
pub struct Ws<S> {
    /// The byte stream.
    pub s: S,
    buf: Vec<u8>,
    partial: Vec<u8>,
}

fn client_err(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Client(format!("{what}: {e}"))
}

impl<S: Read + Write> Ws<S> {
    /// Sends the upgrade for `path` and waits for `101`.
    pub fn upgrade(mut s: S, host: &str, path: &str) -> Result<Self, BenchError> {
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .and_then(|()| s.flush())
        .map_err(|e| client_err("send upgrade", e))?;
        let mut ws = Ws {
            s,
            buf: Vec::new(),
            partial: Vec::new(),
        };
        loop {
            if let Some(p) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head =
                    String::from_utf8_lossy(ws.buf.get(..p).unwrap_or_default()).into_owned();
                if !head.starts_with("HTTP/1.1 101") {
                    return Err(BenchError::Client(format!("upgrade refused: {head}")));
                }
                ws.buf.drain(..p + 4);
                return Ok(ws);
            }
            if ws.fill()? == 0 {
                return Err(BenchError::Client("connection ended during upgrade".into()));
            }
        }
    }

    /// Reads more bytes; 0 at end of stream.
    fn fill(&mut self) -> Result<usize, BenchError> {
        let mut tmp = [0u8; READ_CHUNK];
        let n = self.s.read(&mut tmp).map_err(|e| client_err("read", e))?;
        self.buf.extend_from_slice(tmp.get(..n).unwrap_or_default());
        Ok(n)
    }

    /// Sends one text message.
    pub fn send(&mut self, v: &Value) -> Result<(), BenchError> {
        let mut out = Vec::new();
        write_client_frame(OpCode::Text, true, MASK, v.to_string().as_bytes(), &mut out);
        self.s
            .write_all(&out)
            .and_then(|()| self.s.flush())
            .map_err(|e| client_err("send", e))
    }

    /// The next complete message already buffered, if any (no reading).
    pub fn buffered(&mut self) -> Result<Option<Msg>, BenchError> {
        loop {
            match parse_frame(&mut self.buf, false, MESSAGE_LEN_MAX) {
                Parsed::Frame(f) => {
                    let op = f.header.opcode;
                    let fin = f.header.fin;
                    let n = f.consumed;
                    match op {
                        OpCode::Text | OpCode::Continuation => {
                            self.partial.extend_from_slice(f.payload);
                            self.buf.drain(..n);
                            if self.partial.len() > MESSAGE_LEN_MAX {
                                return Err(BenchError::Client("message too long".into()));
                            }
                            if fin {
                                let text = std::mem::take(&mut self.partial);
                                let v = serde_json::from_slice(&text)
                                    .map_err(|e| client_err("server JSON", e))?;
                                return Ok(Some(Msg::Json(v)));
                            }
                        }
                        OpCode::Close => {
                            let code = match f.payload {
                                [a, b, ..] => u16::from_be_bytes([*a, *b]),
                                _ => 0,
                            };
                            self.buf.drain(..n);
                            return Ok(Some(Msg::Closed(code)));
                        }
                        _ => {
                            self.buf.drain(..n);
                        }
                    }
                }
                Parsed::NeedMore(_) => return Ok(None),
                Parsed::Error(e) => return Err(client_err("bad frame", format!("{e:?}"))),
            }
        }
    }

    /// The next message, reading as needed.
    pub fn next_msg(&mut self) -> Result<Msg, BenchError> {
        loop {
            if let Some(m) = self.buffered()? {
                return Ok(m);
            }
            if self.fill()? == 0 {
                return Ok(Msg::Closed(0));
            }
        }
    }

    /// Reads messages until `pred` accepts one; a close is an error naming `what`.
    pub fn until(
        &mut self,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, BenchError> {
        loop {
            match self.next_msg()? {
                Msg::Json(v) if pred(&v) => return Ok(v),
                Msg::Json(_) => {}
                Msg::Closed(code) => {
                    return Err(BenchError::Client(format!(
                        "closed with {code} while waiting for {what}"
                    )));
                }
            }
        }
    }

    /// Pulls whatever the stream has without blocking (the stream must be non-blocking);
    /// returns false at end of stream.
    pub fn pump(&mut self) -> Result<bool, BenchError> {
        let mut tmp = [0u8; READ_CHUNK];
        loop {
            match self.s.read(&mut tmp) {
                Ok(0) => return Ok(false),
                Ok(n) => self.buf.extend_from_slice(tmp.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(client_err("read", e)),
            }
        }
    }
}
