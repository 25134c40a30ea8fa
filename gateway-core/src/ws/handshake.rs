//! HTTP/1.1 upgrade handshake (RFC 6455 4.2) and the gateway's URL query (`v`, `encoding`,
//! `compress`).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::base64::{self, Alphabet};
use crate::limits::{HANDSHAKE_HEADERS_MAX, HANDSHAKE_REQUEST_BYTES_MAX};

const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Transport compression asked for in the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Plain text frames.
    #[default]
    None,
    /// `compress=zlib-stream`: one zlib context per connection, sync flush per message.
    ZlibStream,
    /// `compress=zstd-stream`: one zstd context per connection, flush per message.
    ZstdStream,
}

/// The gateway parameters of the request URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GatewayQuery {
    /// `v`: `None` when absent (taken as 10); an unparsable value becomes `Some(0)` so that the
    /// session closes with 4012 like any other wrong version.
    pub version: Option<u32>,
    /// `compress`.
    pub compress: Compression,
}

/// A valid upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// Request path without the query.
    pub path: String,
    /// Parsed query.
    pub query: GatewayQuery,
    /// `Sec-WebSocket-Accept` value for the response.
    pub accept: [u8; 28],
}

/// Outcome of feeding the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeStatus {
    /// The request head is not complete yet.
    Partial,
    /// The head is complete; `consumed` bytes belong to it (anything after is WebSocket data).
    Complete {
        /// The parsed request.
        request: UpgradeRequest,
        /// Length of the request head.
        consumed: usize,
    },
}

/// Why an upgrade was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The head is larger than `HANDSHAKE_REQUEST_BYTES_MAX`.
    #[error("request head too large")]
    TooLarge,
    /// Not parsable as HTTP/1.1.
    #[error("malformed request")]
    Malformed,
    /// Method other than GET.
    #[error("method not GET")]
    NotGet,
    /// No `Upgrade: websocket`.
    #[error("missing Upgrade: websocket")]
    NoUpgrade,
    /// `Connection` lacks the `upgrade` token.
    #[error("missing Connection: upgrade")]
    NoConnectionUpgrade,
    /// `Sec-WebSocket-Version` missing or not 13.
    #[error("unsupported websocket version")]
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` missing or not 16 base64 bytes.
    #[error("bad Sec-WebSocket-Key")]
    BadKey,
    /// `encoding` other than `json`.
    #[error("unsupported encoding")]
    UnsupportedEncoding,
    /// `compress` other than `zlib-stream` or `zstd-stream`.
    #[error("unsupported compression")]
    UnsupportedCompression,
}

impl HandshakeError {
    /// HTTP status to answer with.
    pub fn status(self) -> u16 {
        match self {
            HandshakeError::UnsupportedVersion => 426,
            HandshakeError::NoUpgrade => 426,
            _ => 400,
        }
    }
}

fn header<'h>(headers: &'h [httparse::Header<'_>], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Computes `Sec-WebSocket-Accept` for a client key.
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(WS_GUID);
    let digest = ctx.finish();
    let mut enc = Vec::with_capacity(28);
    base64::encode_into(digest.as_ref(), Alphabet::Standard, &mut enc);
    let mut out = [0u8; 28];
    for (d, s) in out.iter_mut().zip(enc) {
        *d = s;
    }
    out
}

/// Parses the URL query of the gateway.
pub fn parse_query(query: &str) -> Result<GatewayQuery, HandshakeError> {
    let mut q = GatewayQuery::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "v" => q.version = Some(v.parse().unwrap_or(0)),
            "encoding" if v != "json" => return Err(HandshakeError::UnsupportedEncoding),
            "compress" => {
                q.compress = match v {
                    "zlib-stream" => Compression::ZlibStream,
                    "zstd-stream" => Compression::ZstdStream,
                    _ => return Err(HandshakeError::UnsupportedCompression),
                }
            }
            _ => {}
        }
    }
    Ok(q)
}

/// Parses an upgrade request from the bytes received so far.
pub fn parse_request(buf: &[u8]) -> Result<HandshakeStatus, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; HANDSHAKE_HEADERS_MAX];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Partial) => {
            return if buf.len() > HANDSHAKE_REQUEST_BYTES_MAX {
                Err(HandshakeError::TooLarge)
            } else {
                Ok(HandshakeStatus::Partial)
            };
        }
        Ok(httparse::Status::Complete(n)) => n,
        Err(_) => return Err(HandshakeError::Malformed),
    };
    if consumed > HANDSHAKE_REQUEST_BYTES_MAX {
        return Err(HandshakeError::TooLarge);
    }
    if req.method != Some("GET") {
        return Err(HandshakeError::NotGet);
    }
    let hs = &*req.headers;
    if !header(hs, "upgrade").is_some_and(|v| has_token(v, "websocket")) {
        return Err(HandshakeError::NoUpgrade);
    }
    if !header(hs, "connection").is_some_and(|v| has_token(v, "upgrade")) {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    if header(hs, "sec-websocket-version").map(<[u8]>::trim_ascii) != Some(b"13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = header(hs, "sec-websocket-key")
        .map(<[u8]>::trim_ascii)
        .ok_or(HandshakeError::BadKey)?;
    match base64::decode(key, Alphabet::Standard) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(HandshakeError::BadKey),
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(HandshakeStatus::Complete {
        request: UpgradeRequest {
            path: path.to_owned(),
            query: parse_query(query)?,
            accept: accept_key(key),
        },
        consumed,
    })
}

/// Appends the 101 response for an accepted request.
pub fn write_response(request: &UpgradeRequest, out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(&request.accept);
    out.extend_from_slice(b"\r\n\r\n");
}

/// Appends the error response for a refused request; close the connection after sending it.
pub fn write_error_response(err: HandshakeError, out: &mut Vec<u8>) {
    match err.status() {
        426 => out.extend_from_slice(
            b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n",
        ),
        _ => out.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\n"),
    }
    out.extend_from_slice(b"Connection: close\r\nContent-Length: 0\r\n\r\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /?v=10&encoding=json&compress=zlib-stream HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn rfc_accept_vector() {
        assert_eq!(
            &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn parses_good_request_split_anywhere() {
        for cut in 0..GOOD.len() {
            assert_eq!(
                parse_request(&GOOD.as_bytes()[..cut]),
                Ok(HandshakeStatus::Partial)
            );
        }
        let mut with_data = GOOD.as_bytes().to_vec();
        with_data.extend_from_slice(&[0x81, 0x80]);
        let Ok(HandshakeStatus::Complete { request, consumed }) = parse_request(&with_data) else {
            panic!("not complete");
        };
        assert_eq!(consumed, GOOD.len());
        assert_eq!(request.path, "/");
        assert_eq!(
            request.query,
            GatewayQuery {
                version: Some(10),
                compress: Compression::ZlibStream
            }
        );
        let mut out = Vec::new();
        write_response(&request, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 "));
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }

    #[test]
    fn rejections_map_to_status() {
        let cases = [
            (GOOD.replace("GET", "POST"), HandshakeError::NotGet, 400),
            (
                GOOD.replace("Upgrade: WebSocket", "Upgrade: h2c"),
                HandshakeError::NoUpgrade,
                426,
            ),
            (
                GOOD.replace("keep-alive, Upgrade", "keep-alive"),
                HandshakeError::NoConnectionUpgrade,
                400,
            ),
            (
                GOOD.replace("Version: 13", "Version: 8"),
                HandshakeError::UnsupportedVersion,
                426,
            ),
            (
                GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
                HandshakeError::BadKey,
                400,
            ),
            (
                GOOD.replace("encoding=json", "encoding=etf"),
                HandshakeError::UnsupportedEncoding,
                400,
            ),
            (
                GOOD.replace("zlib-stream", "gzip"),
                HandshakeError::UnsupportedCompression,
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost\r\n\r\n".to_owned(),
                HandshakeError::Malformed,
                400,
            ),
        ];
        for (req, err, status) in cases {
            assert_eq!(parse_request(req.as_bytes()), Err(err), "{req}");
            assert_eq!(err.status(), status);
            let mut out = Vec::new();
            write_error_response(err, &mut out);
            assert!(out.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
        }
        let huge = format!(
            "GET / HTTP/1.1\r\nX: {}",
            "a".repeat(HANDSHAKE_REQUEST_BYTES_MAX)
        );
        assert_eq!(
            parse_request(huge.as_bytes()),
            Err(HandshakeError::TooLarge)
        );
    }

    #[test]
    fn query_versions() {
        assert_eq!(parse_query("").unwrap().version, None);
        assert_eq!(parse_query("v=9").unwrap().version, Some(9));
        assert_eq!(parse_query("v=abc").unwrap().version, Some(0));
        assert_eq!(
            parse_query("compress=zstd-stream").unwrap().compress,
            Compression::ZstdStream
        );
    }
}
