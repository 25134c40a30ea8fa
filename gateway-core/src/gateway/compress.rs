//! Transport compression (`compress=zlib-stream` / `zstd-stream`): one streaming context per
//! connection, flushed at the end of every message so the client can decode it at once.
//! zlib messages end with the sync-flush marker `00 00 ff ff`, which clients look for.
//!
//! The context keeps the whole connection's history (that is what makes it pay off), so every
//! recipient compresses its own copy: compressed sessions cannot share the dispatch payload.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::ws::handshake::Compression;
use flate2::{Compress, FlushCompress, Status};
use zstd::stream::raw::{Encoder, InBuffer, Operation, OutBuffer};

/// Compression failed (internal error: the connection should be closed with 4000).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompressError {
    /// zlib failed.
    #[error("zlib: {0}")]
    Zlib(#[from] flate2::CompressError),
    /// zstd failed.
    #[error("zstd: {0}")]
    Zstd(#[from] std::io::Error),
}

/// Level used for zlib: fast, since it runs once per recipient per event.
const ZLIB_LEVEL: u32 = 1;
/// Level used for zstd, for the same reason.
const ZSTD_LEVEL: i32 = 1;
/// Minimum free space handed to the compressor per step.
const STEP_BYTES: usize = 256;

/// A per-connection streaming compressor.
pub enum TransportCompressor {
    /// zlib-stream.
    Zlib(Box<Compress>),
    /// zstd-stream.
    Zstd(Box<Encoder<'static>>),
}

impl std::fmt::Debug for TransportCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportCompressor::Zlib(_) => "TransportCompressor::Zlib",
            TransportCompressor::Zstd(_) => "TransportCompressor::Zstd",
        })
    }
}

impl TransportCompressor {
    /// A compressor for the negotiated mode (`None` for no compression).
    pub fn new(kind: Compression) -> Result<Option<Self>, CompressError> {
        Ok(match kind {
            Compression::None => None,
            Compression::ZlibStream => Some(Self::Zlib(Box::new(Compress::new(
                flate2::Compression::new(ZLIB_LEVEL),
                true,
            )))),
            Compression::ZstdStream => Some(Self::Zstd(Box::new(Encoder::new(ZSTD_LEVEL)?))),
        })
    }

    /// Compresses one message given as consecutive parts, appending to `out` and flushing.
    pub fn compress_message(
        &mut self,
        parts: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<(), CompressError> {
        match self {
            TransportCompressor::Zlib(c) => {
                let last = parts.len().saturating_sub(1);
                for (i, part) in parts.iter().enumerate() {
                    let flush = if i == last {
                        FlushCompress::Sync
                    } else {
                        FlushCompress::None
                    };
                    zlib_part(c, part, flush, out)?;
                }
                if parts.is_empty() {
                    zlib_part(c, &[], FlushCompress::Sync, out)?;
                }
            }
            TransportCompressor::Zstd(e) => {
                for part in parts {
                    let mut input = InBuffer::around(part);
                    while input.pos() < part.len() {
                        out.reserve(STEP_BYTES.max(part.len() - input.pos()));
                        let mut o = OutBuffer::around_pos(out, out.len());
                        e.run(&mut input, &mut o)?;
                    }
                }
                loop {
                    out.reserve(STEP_BYTES);
                    let mut o = OutBuffer::around_pos(out, out.len());
                    if e.flush(&mut o)? == 0 {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

fn zlib_part(
    c: &mut Compress,
    input: &[u8],
    flush: FlushCompress,
    out: &mut Vec<u8>,
) -> Result<(), CompressError> {
    let mut consumed = 0usize;
    loop {
        out.reserve(STEP_BYTES.max(input.len().saturating_sub(consumed) / 2));
        let before = c.total_in();
        let rest = input.get(consumed..).unwrap_or(&[]);
        let status = c.compress_vec(rest, out, flush)?;
        consumed += c.total_in().saturating_sub(before) as usize;
        let room_left = out.len() < out.capacity();
        // Done when all input is taken and the compressor stopped with room to spare (it has
        // nothing more to emit for this flush).
        if consumed >= input.len() && (room_left || status == Status::StreamEnd) {
            return Ok(());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    #[test]
    fn zlib_messages_end_with_sync_marker_and_inflate_in_sequence() {
        let mut c = TransportCompressor::new(Compression::ZlibStream)
            .unwrap()
            .unwrap();
        let mut d = Decompress::new(true);
        let msgs: Vec<Vec<u8>> = (0..5)
            .map(|i| {
                format!(
                    "{{\"op\":0,\"s\":{i},\"t\":\"X\",\"d\":\"{}\"}}",
                    "ab".repeat(i * 300)
                )
                .into_bytes()
            })
            .collect();
        for m in &msgs {
            let mut out = Vec::new();
            let (a, b) = m.split_at(7);
            c.compress_message(&[a, b], &mut out).unwrap();
            assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
            let mut plain = Vec::with_capacity(m.len() + 64);
            d.decompress_vec(&out, &mut plain, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(&plain, m);
        }
    }

    #[test]
    fn zstd_messages_decode_in_sequence() {
        let mut c = TransportCompressor::new(Compression::ZstdStream)
            .unwrap()
            .unwrap();
        let mut d = zstd::stream::raw::Decoder::new().unwrap();
        for i in 0..4 {
            let m =
                format!("{{\"op\":0,\"s\":{i},\"d\":\"{}\"}}", "xyz".repeat(i * 500)).into_bytes();
            let mut out = Vec::new();
            c.compress_message(&[&m], &mut out).unwrap();
            let mut plain: Vec<u8> = Vec::with_capacity(m.len() + 64);
            let mut input = InBuffer::around(&out);
            while input.pos() < out.len() {
                let pos = plain.len();
                let mut o = OutBuffer::around_pos(&mut plain, pos);
                d.run(&mut input, &mut o).unwrap();
                plain.reserve(256);
            }
            assert_eq!(plain, m);
        }
    }
}
