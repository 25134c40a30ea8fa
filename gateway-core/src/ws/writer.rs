//! Frame writer. Server frames are unmasked, so a payload shared by many recipients can follow
//! each recipient's small header in a vectored write without being copied.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::close::WsCloseCode;
use super::frame::{OpCode, apply_mask};
use crate::limits::{WS_CONTROL_PAYLOAD_BYTES_MAX, WS_SERVER_HEADER_BYTES_MAX};

/// Writes an unmasked frame header for `payload_len` bytes into `dst`; returns its length (2-10).
pub fn write_server_header(
    opcode: OpCode,
    fin: bool,
    payload_len: usize,
    dst: &mut [u8; WS_SERVER_HEADER_BYTES_MAX],
) -> usize {
    let b0 = if fin { 0x80 } else { 0 } | opcode.bits();
    let [h0, h1, rest @ ..] = dst;
    *h0 = b0;
    if payload_len < 126 {
        *h1 = payload_len as u8;
        2
    } else if let Ok(len16) = u16::try_from(payload_len) {
        *h1 = 126;
        if let Some(d) = rest.get_mut(..2) {
            d.copy_from_slice(&len16.to_be_bytes());
        }
        4
    } else {
        *h1 = 127;
        if let Some(d) = rest.get_mut(..8) {
            d.copy_from_slice(&(payload_len as u64).to_be_bytes());
        }
        10
    }
}

/// Appends a complete unmasked frame (header and payload) to `out`.
pub fn write_server_frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    let mut h = [0u8; WS_SERVER_HEADER_BYTES_MAX];
    let n = write_server_header(opcode, true, payload.len(), &mut h);
    out.extend_from_slice(h.get(..n).unwrap_or(&[]));
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and a reason cut to fit a control frame.
pub fn write_close_frame(code: WsCloseCode, reason: &str, out: &mut Vec<u8>) {
    let mut body = [0u8; WS_CONTROL_PAYLOAD_BYTES_MAX];
    let [c0, c1, rest @ ..] = &mut body;
    [*c0, *c1] = code.0.to_be_bytes();
    let mut n = reason.len().min(rest.len());
    // Cut on a char boundary so the reason stays valid UTF-8.
    while !reason.is_char_boundary(n) {
        n -= 1;
    }
    if let (Some(d), Some(s)) = (rest.get_mut(..n), reason.as_bytes().get(..n)) {
        d.copy_from_slice(s);
    }
    write_server_frame(OpCode::Close, body.get(..2 + n).unwrap_or(&[]), out);
}

/// Appends a masked (client-side) frame; used by tests, fuzzers and load generators.
pub fn write_client_frame(
    opcode: OpCode,
    fin: bool,
    mask: [u8; 4],
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    let mut h = [0u8; WS_SERVER_HEADER_BYTES_MAX];
    let n = write_server_header(opcode, fin, payload.len(), &mut h);
    if let Some(b1) = h.get_mut(1) {
        *b1 |= 0x80;
    }
    out.extend_from_slice(h.get(..n).unwrap_or(&[]));
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(p) = out.get_mut(start..) {
        apply_mask(p, mask, 0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::ws::frame::{Parsed, parse_frame};

    #[test]
    fn header_length_forms() {
        let mut h = [0u8; WS_SERVER_HEADER_BYTES_MAX];
        assert_eq!(write_server_header(OpCode::Text, true, 125, &mut h), 2);
        assert_eq!(&h[..2], &[0x81, 125]);
        assert_eq!(write_server_header(OpCode::Binary, true, 126, &mut h), 4);
        assert_eq!(&h[..4], &[0x82, 126, 0, 126]);
        assert_eq!(write_server_header(OpCode::Text, false, 70_000, &mut h), 10);
        assert_eq!(&h[..10], &[0x01, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }

    #[test]
    fn close_reason_is_cut_on_char_boundary() {
        let mut out = Vec::new();
        let reason = "é".repeat(100);
        write_close_frame(WsCloseCode::NORMAL, &reason, &mut out);
        assert_eq!(out[1] as usize, out.len() - 2);
        assert!(out.len() - 2 <= WS_CONTROL_PAYLOAD_BYTES_MAX);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }

    #[test]
    fn server_frame_parses_without_mask_requirement() {
        let mut out = Vec::new();
        write_server_frame(OpCode::Text, &[b'x'; 300], &mut out);
        match parse_frame(&mut out, false, 1024) {
            Parsed::Frame(f) => assert_eq!(f.payload, &[b'x'; 300][..]),
            other => panic!("{other:?}"),
        }
    }
}
