//! Manifest format (v1): the set of live sorted files, replaced atomically.
//!
//! Written whole to `MANIFEST.tmp`, fdatasync'd, renamed over `MANIFEST`, then the directory is
//! synced. Layout: magic `HMSGMAN\0`, version u32, next file number u64, flushed sequence u64,
//! file count u32, then per file (number u64, size u64), then CRC32C of everything before.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::codec::{FormatError, Reader};
use crate::limits::SST_FILES_MAX;

/// Manifest magic.
pub const MANIFEST_MAGIC: [u8; 8] = *b"HMSGMAN\0";
/// Format version written by this build.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

/// A live sorted file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileEntry {
    /// File number (name `sst-N.sst`).
    pub number: u64,
    /// Size in bytes.
    pub size: u64,
}

/// The durable state of the sorted files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// Next number for a new file (segments and sorted files share the counter).
    pub next_file: u64,
    /// Every version with seq <= this is in the sorted files.
    pub flushed_seq: u64,
    /// Live sorted files, oldest first.
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&MANIFEST_MAGIC);
        out.extend_from_slice(&MANIFEST_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.next_file.to_le_bytes());
        out.extend_from_slice(&self.flushed_seq.to_le_bytes());
        out.extend_from_slice(&(self.files.len() as u32).to_le_bytes());
        for f in &self.files {
            out.extend_from_slice(&f.number.to_le_bytes());
            out.extend_from_slice(&f.size.to_le_bytes());
        }
        let crc = crc32c::crc32c(out.get(start..).unwrap_or_default());
        out.extend_from_slice(&crc.to_le_bytes());
    }

    /// Decodes a whole manifest file.
    pub fn decode(buf: &[u8]) -> Result<Self, FormatError> {
        let (body, crc) = buf
            .split_at_checked(buf.len().checked_sub(4).ok_or(FormatError::Truncated)?)
            .ok_or(FormatError::Truncated)?;
        let mut r = Reader::new(body);
        if r.take(8)? != MANIFEST_MAGIC {
            return Err(FormatError::Magic);
        }
        if Reader::new(crc).u32()? != crc32c::crc32c(body) {
            return Err(FormatError::Checksum);
        }
        let version = r.u32()?;
        if version != MANIFEST_FORMAT_VERSION {
            return Err(FormatError::Version(version));
        }
        let next_file = r.u64()?;
        let flushed_seq = r.u64()?;
        let n = r.u32()? as usize;
        if n > SST_FILES_MAX {
            return Err(FormatError::TooLong(n));
        }
        let mut files = Vec::with_capacity(n);
        for _ in 0..n {
            files.push(FileEntry {
                number: r.u64()?,
                size: r.u64()?,
            });
        }
        if r.remaining() != 0 {
            return Err(FormatError::Invalid("trailing bytes in manifest"));
        }
        Ok(Self {
            next_file,
            flushed_seq,
            files,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_detected() {
        let m = Manifest {
            next_file: 9,
            flushed_seq: 100,
            files: vec![FileEntry {
                number: 3,
                size: 4096,
            }],
        };
        let mut buf = Vec::new();
        m.encode(&mut buf);
        assert_eq!(Manifest::decode(&buf), Ok(m));
        if let Some(b) = buf.get_mut(20) {
            *b ^= 1;
        }
        assert_eq!(Manifest::decode(&buf), Err(FormatError::Checksum));
    }
}
