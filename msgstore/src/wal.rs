//! Commit-log segment format (v1).
//!
//! A segment starts with a 32-byte header: magic `HMSGWAL\0`, format version u32, segment number
//! u64, first sequence number u64, CRC32C of the previous 28 bytes. Records follow back to back:
//! length u32, CRC32C u32 over the length bytes and the payload, payload (an encoded `Version`).
//! A zero length ends the segment (the file is preallocated with zeros).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::codec::{FormatError, Reader, decode_version, encode_version};
use crate::limits::RECORD_BYTES_MAX;
use crate::message::Version;

/// Magic bytes of a segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"HMSGWAL\0";
/// Segment format version written by this build.
pub const SEGMENT_FORMAT_VERSION: u32 = 1;
/// Header size; records start here.
pub const HEADER_BYTES: usize = 32;
/// Per-record framing: length and checksum.
pub const RECORD_OVERHEAD_BYTES: usize = 8;

/// Parsed segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Segment number (also in the file name).
    pub number: u64,
    /// Sequence number of the first record written to this segment.
    pub start_seq: u64,
}

/// Appends a segment header.
pub fn encode_header(h: &SegmentHeader, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&SEGMENT_MAGIC);
    out.extend_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&h.number.to_le_bytes());
    out.extend_from_slice(&h.start_seq.to_le_bytes());
    let crc = crc32c::crc32c(out.get(start..).unwrap_or_default());
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Header state of a segment read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderState {
    /// Valid header.
    Valid(SegmentHeader),
    /// All zero: the segment was created but never written.
    Empty,
    /// Anything else.
    Invalid(FormatError),
}

/// Reads a segment header.
pub fn decode_header(buf: &[u8]) -> HeaderState {
    let Some(h) = buf.get(..HEADER_BYTES) else {
        return if buf.iter().all(|b| *b == 0) {
            HeaderState::Empty
        } else {
            HeaderState::Invalid(FormatError::Truncated)
        };
    };
    if h.iter().all(|b| *b == 0) {
        return HeaderState::Empty;
    }
    let parse = || -> Result<SegmentHeader, FormatError> {
        let mut r = Reader::new(h);
        if r.take(8)? != SEGMENT_MAGIC {
            return Err(FormatError::Magic);
        }
        let version = r.u32()?;
        let number = r.u64()?;
        let start_seq = r.u64()?;
        let crc = r.u32()?;
        if crc != crc32c::crc32c(h.get(..HEADER_BYTES - 4).unwrap_or_default()) {
            return Err(FormatError::Checksum);
        }
        if version != SEGMENT_FORMAT_VERSION {
            return Err(FormatError::Version(version));
        }
        Ok(SegmentHeader { number, start_seq })
    };
    match parse() {
        Ok(h) => HeaderState::Valid(h),
        Err(e) => HeaderState::Invalid(e),
    }
}

/// Appends one framed record; `scratch` is reused to avoid allocation.
pub fn encode_record(v: &Version, scratch: &mut Vec<u8>, out: &mut Vec<u8>) {
    scratch.clear();
    encode_version(v, scratch);
    let len = (scratch.len() as u32).to_le_bytes();
    let mut crc = crc32c::crc32c(&len);
    crc = crc32c::crc32c_append(crc, scratch);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(scratch);
}

/// Why a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// A zero length: the clean end.
    End,
    /// A record failed its checksum, length bound, decoding or sequence order.
    Bad(FormatError),
}

/// Result of scanning a segment body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Records in order, sequence numbers consecutive from the header's.
    pub records: Vec<Version>,
    /// Offset just past the last good record.
    pub end_offset: u64,
    /// Why the scan stopped.
    pub stop: Stop,
}

/// Scans records after a valid header, stopping at the first bad one.
pub fn scan_records(buf: &[u8], header: &SegmentHeader) -> Scan {
    let mut records = Vec::new();
    let mut off = HEADER_BYTES;
    let mut expect = header.start_seq;
    let stop = loop {
        let Some(rest) = buf.get(off..) else {
            break Stop::End;
        };
        match next_record(rest) {
            Ok(None) => break Stop::End,
            Ok(Some((v, used))) => {
                if v.seq != expect {
                    break Stop::Bad(FormatError::Invalid("sequence gap"));
                }
                expect += 1;
                records.push(v);
                off += used;
            }
            Err(e) => break Stop::Bad(e),
        }
    };
    Scan {
        records,
        end_offset: off as u64,
        stop,
    }
}

fn next_record(buf: &[u8]) -> Result<Option<(Version, usize)>, FormatError> {
    if buf.len() < RECORD_OVERHEAD_BYTES {
        return Ok(None);
    }
    let mut r = Reader::new(buf);
    let len_bytes = r.take(4)?;
    let len = r.u32()?;
    let n = u32::from_le_bytes(len_bytes.try_into().map_err(|_| FormatError::Truncated)?) as usize;
    if n == 0 {
        return if len == 0 {
            Ok(None)
        } else {
            Err(FormatError::Checksum)
        };
    }
    if n > RECORD_BYTES_MAX {
        return Err(FormatError::TooLong(n));
    }
    let payload = r.take(n)?;
    let crc = crc32c::crc32c_append(crc32c::crc32c(len_bytes), payload);
    if crc != len {
        return Err(FormatError::Checksum);
    }
    let v = decode_version(payload)?;
    Ok(Some((v, RECORD_OVERHEAD_BYTES + n)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Body, ReadState};

    fn rs(seq: u64) -> Version {
        Version {
            seq,
            body: Body::ReadState(ReadState {
                user_id: 1,
                channel_id: 2,
                last_read_id: seq,
                mention_count: 0,
            }),
        }
    }

    #[test]
    fn scan_stops_at_first_bad_record() {
        let h = SegmentHeader {
            number: 3,
            start_seq: 10,
        };
        let mut buf = Vec::new();
        encode_header(&h, &mut buf);
        let mut scratch = Vec::new();
        for s in 10..15 {
            encode_record(&rs(s), &mut scratch, &mut buf);
        }
        let third = HEADER_BYTES + 2 * (buf.len() - HEADER_BYTES) / 5;
        buf.resize(8192, 0);
        assert_eq!(decode_header(&buf), HeaderState::Valid(h));
        let scan = scan_records(&buf, &h);
        assert_eq!(scan.records.len(), 5);
        assert_eq!(scan.stop, Stop::End);
        if let Some(b) = buf.get_mut(third + 9) {
            *b ^= 0x40;
        }
        let scan = scan_records(&buf, &h);
        assert_eq!(scan.records.len(), 2);
        assert!(matches!(scan.stop, Stop::Bad(_)));
        assert_eq!(decode_header(&[0; 64]), HeaderState::Empty);
    }
}
