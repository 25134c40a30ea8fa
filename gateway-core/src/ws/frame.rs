//! Incremental frame parser: returns how many more bytes it needs instead of blocking, and
//! unmasks the payload in place in the caller's buffer.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::close::WsError;

/// Frame opcodes (RFC 6455 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0
    Continuation,
    /// 0x1
    Text,
    /// 0x2
    Binary,
    /// 0x8
    Close,
    /// 0x9
    Ping,
    /// 0xA
    Pong,
}

impl OpCode {
    /// Decodes the 4-bit opcode.
    pub fn from_bits(bits: u8) -> Result<Self, WsError> {
        Ok(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            other => return Err(WsError::ReservedOpcode(other)),
        })
    }

    /// The 4-bit wire value.
    pub fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Close, ping and pong.
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// Frame opcode.
    pub opcode: OpCode,
    /// Masking key, when the mask bit is set.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Bytes of header before the payload.
    pub header_len: usize,
}

/// A complete frame whose payload has been unmasked in place.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The header as read.
    pub header: FrameHeader,
    /// The unmasked payload, borrowed from the input buffer.
    pub payload: &'a [u8],
    /// Bytes of input this frame used (header + payload).
    pub consumed: usize,
}

/// Result of one parse attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// At least this many more bytes are needed before anything can be decided.
    NeedMore(usize),
    /// One whole frame.
    Frame(Frame<'a>),
    /// The peer broke the protocol.
    Error(WsError),
}

/// Parses just the header. `Ok(None)` with the number of bytes still needed for the header.
pub fn parse_header(
    buf: &[u8],
    require_mask: bool,
    payload_max: usize,
) -> Result<Result<FrameHeader, usize>, WsError> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(Err(2 - buf.len()));
    };
    if b0 & 0x70 != 0 {
        return Err(WsError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = OpCode::from_bits(b0 & 0x0f)?;
    let masked = b1 & 0x80 != 0;
    if require_mask && !masked {
        return Err(WsError::Unmasked);
    }
    let len7 = b1 & 0x7f;
    if opcode.is_control() && (!fin || len7 > 125) {
        return Err(WsError::BadControlFrame);
    }
    let ext_len = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask_len = if masked { 4 } else { 0 };
    // Length errors are decided as soon as the length bytes are in, before the mask.
    if buf.len() < 2 + ext_len {
        return Ok(Err(2 + ext_len - buf.len()));
    }
    let header_len = 2 + ext_len + mask_len;
    let ext = buf.get(2..2 + ext_len).ok_or(WsError::BadLength)?;
    let payload_len: u64 = match len7 {
        126 => {
            let v = ext.iter().fold(0u64, |a, &b| a << 8 | u64::from(b));
            if v < 126 {
                return Err(WsError::BadLength);
            }
            v
        }
        127 => {
            let v = ext.iter().fold(0u64, |a, &b| a << 8 | u64::from(b));
            if v >> 63 != 0 || v <= 0xffff {
                return Err(WsError::BadLength);
            }
            v
        }
        n => u64::from(n),
    };
    if payload_len > payload_max as u64 {
        return Err(WsError::FrameTooBig);
    }
    if buf.len() < header_len {
        return Ok(Err(header_len - buf.len()));
    }
    let mask = if masked {
        let m = buf.get(2 + ext_len..header_len).ok_or(WsError::BadLength)?;
        let mut key = [0u8; 4];
        key.copy_from_slice(m);
        Some(key)
    } else {
        None
    };
    Ok(Ok(FrameHeader {
        fin,
        opcode,
        mask,
        // Bounded by payload_max above.
        payload_len: payload_len as usize,
        header_len,
    }))
}

/// XORs `data` with `key`, where `data` starts at byte `offset` of the masked payload.
pub fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    let mut k = [0u8; 4];
    for (i, b) in k.iter_mut().enumerate() {
        *b = key.get((offset + i) % 4).copied().unwrap_or(0);
    }
    let word = u32::from_ne_bytes(k);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        let mut w = [0u8; 4];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u32::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(k) {
        *b ^= m;
    }
}

/// Parses one frame from the front of `buf`, unmasking its payload in place.
///
/// `require_mask` is true on the server side: an unmasked client frame is an error (1002).
pub fn parse_frame(buf: &mut [u8], require_mask: bool, payload_max: usize) -> Parsed<'_> {
    let header = match parse_header(buf, require_mask, payload_max) {
        Err(e) => return Parsed::Error(e),
        Ok(Err(more)) => return Parsed::NeedMore(more),
        Ok(Ok(h)) => h,
    };
    let total = header.header_len + header.payload_len;
    if buf.len() < total {
        return Parsed::NeedMore(total - buf.len());
    }
    let Some(payload) = buf.get_mut(header.header_len..total) else {
        return Parsed::NeedMore(1);
    };
    if let Some(key) = header.mask {
        apply_mask(payload, key, 0);
    }
    Parsed::Frame(Frame {
        header,
        payload,
        consumed: total,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn rfc_example_masked_hello() {
        // RFC 6455 5.7: a single-frame masked text message "Hello".
        let mut b = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        match parse_frame(&mut b, true, 1024) {
            Parsed::Frame(f) => {
                assert_eq!(f.payload, b"Hello");
                assert_eq!(f.consumed, 11);
                assert!(f.header.fin);
                assert_eq!(f.header.opcode, OpCode::Text);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn need_more_counts() {
        let mut b = [0x81u8];
        assert_eq!(parse_frame(&mut b, true, 1024), Parsed::NeedMore(1));
        let mut b = [0x81u8, 0x85];
        assert_eq!(parse_frame(&mut b, true, 1024), Parsed::NeedMore(4));
        let mut b = [0x81u8, 0x85, 1, 2, 3, 4, 0];
        assert_eq!(parse_frame(&mut b, true, 1024), Parsed::NeedMore(4));
        let mut b = [0x82u8, 0xfe, 0x01];
        assert_eq!(parse_frame(&mut b, true, 1024), Parsed::NeedMore(1));
        let mut b = [0x82u8, 0xfe, 0x00, 0x80];
        assert_eq!(parse_frame(&mut b, true, 1024), Parsed::NeedMore(4));
    }

    #[test]
    fn header_errors() {
        let cases: [(&[u8], WsError); 7] = [
            (&[0x81, 0x05], WsError::Unmasked),
            (&[0xc1, 0x80], WsError::ReservedBits),
            (&[0x83, 0x80], WsError::ReservedOpcode(3)),
            (&[0x89, 0xfe, 0, 200], WsError::BadControlFrame),
            (&[0x09, 0x80], WsError::BadControlFrame),
            (&[0x82, 0xfe, 0, 5, 0, 0, 0, 0], WsError::BadLength),
            (
                &[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
                WsError::BadLength,
            ),
        ];
        for (bytes, err) in cases {
            let mut b = bytes.to_vec();
            assert_eq!(
                parse_frame(&mut b, true, 1 << 20),
                Parsed::Error(err),
                "{bytes:?}"
            );
        }
        let mut b = vec![0x82, 0xfe, 0x10, 0x00];
        assert_eq!(
            parse_frame(&mut b, true, 1024),
            Parsed::Error(WsError::FrameTooBig)
        );
    }

    #[test]
    fn mask_offsets_compose() {
        let key = [1, 2, 3, 4];
        let mut whole = *b"abcdefghijk";
        apply_mask(&mut whole, key, 0);
        let mut split = *b"abcdefghijk";
        let (a, b) = split.split_at_mut(3);
        apply_mask(a, key, 0);
        apply_mask(b, key, 3);
        assert_eq!(whole, split);
    }
}
