//! The client side of the gateway wire protocol, pure: upgrade request and response, masked
//! frames out, unmasked frames in (gateway-core's parser with `require_mask = false`), gateway
//! payloads out (Identify, Heartbeat) and a classifier for what comes back.
//!
//! The classifier has a fast path for the broadcast scenario's events: a client core reads
//! hundreds of thousands of them per second, so it pulls the three numbers it needs out of the
//! text by a byte search instead of building a JSON tree. Everything else (Hello, READY, ACKs)
//! is rare and goes through serde_json.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use gateway_core::base64::{self, Alphabet};
use gateway_core::ws::frame::{OpCode, Parsed, parse_frame};
use gateway_core::ws::handshake::accept_key;
use gateway_core::ws::writer::write_client_frame;

use crate::gateway::limits::{
    CLIENT_FRAME_PAYLOAD_MAX, RESPONSE_HEADERS_MAX, UPGRADE_RESPONSE_BYTES_MAX,
};

/// The gateway's URL path and query for API v10 with JSON encoding, uncompressed.
pub const GATEWAY_PATH: &str = "/?v=10&encoding=json";
/// Event name of the broadcast scenario's dispatches.
pub const BENCH_EVENT_NAME: &str = "BENCH_EVENT";
/// Key of the event index in a bench event's `d`.
pub const BENCH_K_KEY: &str = "bench_k";
/// Key of the send time (CLOCK_MONOTONIC, ns) in a bench event's `d`.
pub const BENCH_TS_KEY: &str = "bench_ts";

/// A server that broke the protocol, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// The upgrade response was not HTTP.
    #[error("upgrade response: {0}")]
    BadResponse(String),
    /// The server answered the upgrade with something other than 101.
    #[error("upgrade refused with HTTP {0}")]
    Status(u16),
    /// `Sec-WebSocket-Accept` missing or not derived from our key.
    #[error("Sec-WebSocket-Accept does not match the key")]
    BadAccept,
    /// The upgrade response head did not end within the limit.
    #[error("upgrade response head over {UPGRADE_RESPONSE_BYTES_MAX} bytes")]
    ResponseTooBig,
    /// A malformed frame.
    #[error("frame: {0}")]
    Frame(gateway_core::ws::WsError),
    /// A reassembled message above the limit.
    #[error("message over {0} bytes")]
    MessageTooBig(usize),
    /// A text message that is not a gateway payload.
    #[error("not a gateway payload: {0}")]
    Json(String),
}

/// A `Sec-WebSocket-Key` for a 16-byte nonce (RFC 6455 4.1: base64 of 16 random bytes).
pub fn ws_key(nonce: [u8; 16]) -> String {
    base64::encode(&nonce, Alphabet::Standard)
}

/// The HTTP/1.1 upgrade request for `path` on `host` with `key`.
pub fn upgrade_request(host: &str, path: &str, key: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Parses the upgrade response at the front of `buf`. `Ok(None)`: the head is not complete
/// yet. `Ok(Some(n))`: a valid 101 whose head is `n` bytes; frames follow.
pub fn parse_upgrade_response(buf: &[u8], key: &str) -> Result<Option<usize>, ProtoError> {
    let mut headers = [httparse::EMPTY_HEADER; RESPONSE_HEADERS_MAX];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= UPGRADE_RESPONSE_BYTES_MAX {
                Err(ProtoError::ResponseTooBig)
            } else {
                Ok(None)
            };
        }
        Err(e) => return Err(ProtoError::BadResponse(e.to_string())),
    };
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        return Err(ProtoError::Status(code));
    }
    let accept = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|h| h.value.trim_ascii())
        .ok_or(ProtoError::BadAccept)?;
    if accept != accept_key(key.as_bytes()) {
        return Err(ProtoError::BadAccept);
    }
    Ok(Some(n))
}

/// The Identify payload (op 2) for `token`, intents 0, as the brief's contract gives it.
pub fn identify_payload(token: &str) -> Vec<u8> {
    serde_json::json!({
        "op": 2,
        "d": {
            "token": token,
            "intents": 0,
            "properties": {"os": "linux", "browser": "hearth-bench", "device": "hearth-bench"},
        }
    })
    .to_string()
    .into_bytes()
}

/// The Heartbeat payload (op 1) carrying the last sequence number seen, or null.
pub fn heartbeat_payload(seq: Option<u64>) -> Vec<u8> {
    match seq {
        Some(s) => format!("{{\"op\":1,\"d\":{s}}}").into_bytes(),
        None => b"{\"op\":1,\"d\":null}".to_vec(),
    }
}

/// Appends a masked text frame.
pub fn write_text(payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    write_client_frame(OpCode::Text, true, mask, payload, out);
}

/// Appends a masked ping frame (`payload` at most 125 bytes).
pub fn write_ping(payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    write_client_frame(OpCode::Ping, true, mask, payload, out);
}

/// Appends a masked pong frame answering a ping with `payload`.
pub fn write_pong(payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    write_client_frame(OpCode::Pong, true, mask, payload, out);
}

/// Appends a masked close frame with `code` and no reason.
pub fn write_close(code: u16, mask: [u8; 4], out: &mut Vec<u8>) {
    write_client_frame(OpCode::Close, true, mask, &code.to_be_bytes(), out);
}

/// One server frame found at the front of a buffer: where its payload is and how much it used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawFrame {
    /// Frame opcode.
    pub opcode: OpCode,
    /// Final fragment of its message.
    pub fin: bool,
    /// Payload start, from the front of the buffer.
    pub start: usize,
    /// Payload end (exclusive).
    pub end: usize,
    /// Bytes the frame used.
    pub consumed: usize,
}

/// Finds the next server frame at the front of `buf`. `Ok(None)`: more bytes are needed.
/// Server frames are unmasked, so the buffer is left as it is.
pub fn next_frame(buf: &mut [u8]) -> Result<Option<RawFrame>, ProtoError> {
    match parse_frame(buf, false, CLIENT_FRAME_PAYLOAD_MAX) {
        Parsed::NeedMore(_) => Ok(None),
        Parsed::Error(e) => Err(ProtoError::Frame(e)),
        Parsed::Frame(f) => Ok(Some(RawFrame {
            opcode: f.header.opcode,
            fin: f.header.fin,
            start: f.header.header_len,
            end: f.consumed,
            consumed: f.consumed,
        })),
    }
}

/// The close code of a close frame's payload (1005, "no status", when it has none).
pub fn close_code(payload: &[u8]) -> u16 {
    match payload {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 1005,
    }
}

/// One bench event as a client receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchEvent {
    /// Event index, 0-based over warm-up and measured events.
    pub k: u64,
    /// Send time, CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// The session's sequence number, if the payload has one (Nchan's copy has 0).
    pub s: Option<u64>,
}

/// What a text message from the server means to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GwMessage {
    /// op 10 with the heartbeat interval.
    Hello {
        /// Interval, milliseconds.
        heartbeat_interval_ms: u64,
    },
    /// A bench event (Hearth dispatch or Nchan message).
    Bench(BenchEvent),
    /// op 0 other than a bench event: READY, GUILD_CREATE, ...
    Dispatch {
        /// Event name.
        t: String,
        /// Sequence number.
        s: Option<u64>,
    },
    /// op 11.
    HeartbeatAck,
    /// op 1: the server asks for a heartbeat now.
    HeartbeatRequest,
    /// op 7.
    Reconnect,
    /// op 9, with whether the session is resumable.
    InvalidSession(bool),
    /// Any other opcode.
    Other(u64),
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    // Scan for the first byte, compare the rest only there: the client runs this on every
    // delivered event, and almost every position fails on its first byte.
    while let Some(i) = haystack.get(from..)?.iter().position(|&b| b == first) {
        let at = from + i;
        if haystack.get(at + 1..at + needle.len()) == Some(rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The unsigned integer after `"key":` (whitespace allowed around the colon) anywhere in
/// `text`; `None` when absent, null or not a plain integer.
pub fn find_u64_field(text: &[u8], key: &str) -> Option<u64> {
    let key = key.as_bytes();
    let mut from = 0;
    while let Some(i) = find(text.get(from..)?, key) {
        let at = from + i;
        from = at + 1;
        // Only a quoted key followed by a colon counts; the same text as a value does not.
        let quoted_before = at > 0 && text.get(at - 1) == Some(&b'"');
        let Some(after) = text.get(at + key.len()..) else {
            break;
        };
        let Some(after) = after.strip_prefix(b"\"") else {
            continue;
        };
        let Some(value) = after.trim_ascii_start().strip_prefix(b":") else {
            continue;
        };
        if !quoted_before {
            continue;
        }
        let value = value.trim_ascii_start();
        let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 20 {
            return None;
        }
        let mut n: u64 = 0;
        for &b in value.get(..digits)? {
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        return Some(n);
    }
    None
}

/// Classifies one text message.
pub fn classify(payload: &[u8]) -> Result<GwMessage, ProtoError> {
    if let (Some(k), Some(ts_ns)) = (
        find_u64_field(payload, BENCH_K_KEY),
        find_u64_field(payload, BENCH_TS_KEY),
    ) {
        return Ok(GwMessage::Bench(BenchEvent {
            k,
            ts_ns,
            s: find_u64_field(payload, "s"),
        }));
    }
    let v: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| ProtoError::Json(e.to_string()))?;
    let op = v
        .get("op")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| ProtoError::Json("no op".into()))?;
    Ok(match op {
        0 => GwMessage::Dispatch {
            t: v.get("t")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            s: v.get("s").and_then(serde_json::Value::as_u64),
        },
        1 => GwMessage::HeartbeatRequest,
        7 => GwMessage::Reconnect,
        9 => GwMessage::InvalidSession(
            v.get("d")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
        ),
        10 => GwMessage::Hello {
            heartbeat_interval_ms: v
                .get("d")
                .and_then(|d| d.get("heartbeat_interval"))
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| ProtoError::Json("Hello without heartbeat_interval".into()))?,
        },
        11 => GwMessage::HeartbeatAck,
        other => GwMessage::Other(other),
    })
}

/// The `d` object of bench event `k` sent at `ts_ns`, padded so that the whole dispatch the
/// client receives (`{"t":"BENCH_EVENT","s":N,"op":0,"d":...}` with a small N) is about
/// `event_bytes` long. Keys are in alphabetical order, as a server that re-serialises the
/// object through a sorted map writes them.
pub fn bench_d(k: u64, ts_ns: u64, event_bytes: usize) -> String {
    let bare = format!("{{\"{BENCH_K_KEY}\":{k},\"{BENCH_TS_KEY}\":{ts_ns},\"pad\":\"\"}}");
    let envelope = dispatch_envelope_len(&bare);
    let pad = event_bytes.saturating_sub(envelope);
    format!(
        "{{\"{BENCH_K_KEY}\":{k},\"{BENCH_TS_KEY}\":{ts_ns},\"pad\":\"{}\"}}",
        "x".repeat(pad)
    )
}

fn dispatch_envelope_len(d: &str) -> usize {
    // `{"t":"BENCH_EVENT","s":1,"op":0,"d":` + d + `}`
    format!("{{\"t\":\"{BENCH_EVENT_NAME}\",\"s\":1,\"op\":0,\"d\":{d}}}").len()
}

/// The body of `POST /admin/broadcast` for bench event `k`.
pub fn broadcast_body(k: u64, ts_ns: u64, event_bytes: usize) -> String {
    format!(
        "{{\"t\":\"{BENCH_EVENT_NAME}\",\"d\":{}}}",
        bench_d(k, ts_ns, event_bytes)
    )
}

/// The body published to Nchan for bench event `k`: the same dispatch text a Hearth session
/// receives (with `s` 0), so both servers carry frames of the same size.
pub fn nchan_body(k: u64, ts_ns: u64, event_bytes: usize) -> String {
    format!(
        "{{\"t\":\"{BENCH_EVENT_NAME}\",\"s\":0,\"op\":0,\"d\":{}}}",
        bench_d(k, ts_ns, event_bytes)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6455_key_and_accept() {
        // RFC 6455 1.3: the sample nonce and its accept value.
        let key = ws_key(*b"the sample nonce");
        assert_eq!(key, "dGhlIHNhbXBsZSBub25jZQ==");
        let resp = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x02hi";
        let n = parse_upgrade_response(resp, &key).unwrap().unwrap();
        assert_eq!(&resp[n..], b"\x81\x02hi");
        assert_eq!(parse_upgrade_response(&resp[..40], &key), Ok(None));
        assert_eq!(
            parse_upgrade_response(resp, "AAAAAAAAAAAAAAAAAAAAAA=="),
            Err(ProtoError::BadAccept)
        );
        assert_eq!(
            parse_upgrade_response(b"HTTP/1.1 400 Bad Request\r\n\r\n", &key),
            Err(ProtoError::Status(400))
        );
        assert!(matches!(
            parse_upgrade_response(b"SSH-2.0\r\n\r\n", &key),
            Err(ProtoError::BadResponse(_))
        ));
        let endless = vec![b'a'; UPGRADE_RESPONSE_BYTES_MAX];
        let mut partial = b"HTTP/1.1 101 OK\r\nX: ".to_vec();
        partial.extend_from_slice(&endless);
        assert_eq!(
            parse_upgrade_response(&partial, &key),
            Err(ProtoError::ResponseTooBig)
        );
    }

    #[test]
    fn field_search() {
        let t = br#"{"t":"BENCH_EVENT","s":17,"op":0,"d":{"bench_k":3,"bench_ts": 123456789,"pad":"s"}}"#;
        assert_eq!(find_u64_field(t, "bench_k"), Some(3));
        assert_eq!(find_u64_field(t, "bench_ts"), Some(123_456_789));
        assert_eq!(find_u64_field(t, "s"), Some(17));
        assert_eq!(find_u64_field(t, "op"), Some(0));
        assert_eq!(find_u64_field(t, "nope"), None);
        assert_eq!(find_u64_field(br#"{"s":null}"#, "s"), None);
        assert_eq!(find_u64_field(br#"{"x":"s","s":5}"#, "s"), Some(5));
        assert_eq!(
            find_u64_field(br#"{"s":99999999999999999999999}"#, "s"),
            None
        );
        assert_eq!(find_u64_field(br#"{"s":"#, "s"), None);
        // A longer key that ends in the one searched for is not it.
        assert_eq!(find_u64_field(br#"{"ts":1,"s":2}"#, "s"), Some(2));
        assert_eq!(find_u64_field(br#"{"ss":1}"#, "s"), None);
        assert_eq!(find_u64_field(br#"{"s" : 3}"#, "s"), Some(3));
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"abc", b""), None);
    }

    #[test]
    fn classify_gateway_payloads() {
        assert_eq!(
            classify(br#"{"op":10,"d":{"heartbeat_interval":41250}}"#).unwrap(),
            GwMessage::Hello {
                heartbeat_interval_ms: 41_250
            }
        );
        assert_eq!(
            classify(br#"{"t":"READY","s":1,"op":0,"d":{"v":10}}"#).unwrap(),
            GwMessage::Dispatch {
                t: "READY".into(),
                s: Some(1)
            }
        );
        assert_eq!(
            classify(br#"{"op":11,"d":null}"#).unwrap(),
            GwMessage::HeartbeatAck
        );
        assert_eq!(
            classify(br#"{"op":9,"d":true}"#).unwrap(),
            GwMessage::InvalidSession(true)
        );
        assert_eq!(
            classify(br#"{"op":7,"d":null}"#).unwrap(),
            GwMessage::Reconnect
        );
        assert_eq!(classify(br#"{"op":42}"#).unwrap(), GwMessage::Other(42));
        assert!(classify(b"not json").is_err());
        assert!(classify(br#"{"op":10,"d":{}}"#).is_err());
        assert!(classify(br#"{"d":1}"#).is_err());
    }

    #[test]
    fn bench_bodies_round_trip_through_the_classifier() {
        let body = nchan_body(7, 1_234_567_890_123, 250);
        assert_eq!(body.len(), 250, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["d"]["bench_k"], 7);
        assert_eq!(
            classify(body.as_bytes()).unwrap(),
            GwMessage::Bench(BenchEvent {
                k: 7,
                ts_ns: 1_234_567_890_123,
                s: Some(0)
            })
        );
        let admin: serde_json::Value =
            serde_json::from_str(&broadcast_body(7, 1_234_567_890_123, 250)).unwrap();
        assert_eq!(admin["t"], BENCH_EVENT_NAME);
        assert_eq!(admin["d"], v["d"]);
        // Too small a size leaves the pad empty instead of failing.
        assert!(bench_d(1, 2, 10).contains("\"pad\":\"\""));
    }

    #[test]
    fn frames_out_and_in() {
        let mut out = Vec::new();
        write_text(&identify_payload("tok"), [1, 2, 3, 4], &mut out);
        // Our own masked frame parses when masks are required, and carries the payload.
        match parse_frame(&mut out.clone(), true, 1 << 16) {
            Parsed::Frame(f) => {
                let v: serde_json::Value = serde_json::from_slice(f.payload).unwrap();
                assert_eq!(v["op"], 2);
                assert_eq!(v["d"]["token"], "tok");
                assert_eq!(v["d"]["properties"]["browser"], "hearth-bench");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(heartbeat_payload(None), br#"{"op":1,"d":null}"#);
        assert_eq!(heartbeat_payload(Some(42)), br#"{"op":1,"d":42}"#);
        let mut server = vec![0x81, 0x03, b'a', b'b', b'c', 0x88, 0x02, 0x0f];
        let f = next_frame(&mut server).unwrap().unwrap();
        assert_eq!(
            (f.opcode, f.fin, f.start, f.end),
            (OpCode::Text, true, 2, 5)
        );
        let rest = &mut server[f.consumed..];
        assert_eq!(next_frame(rest).unwrap(), None);
        let mut close = vec![0x88, 0x02, 0x0f, 0xa9];
        let f = next_frame(&mut close).unwrap().unwrap();
        assert_eq!(close_code(&close[f.start..f.end]), 4009);
        assert_eq!(close_code(&[]), 1005);
        let mut reserved = vec![0x83, 0x00];
        assert!(next_frame(&mut reserved).is_err());
    }
}
