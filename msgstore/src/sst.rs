//! Sorted-file format (v1): encoder and decoder.
//!
//! Layout: data blocks, then a meta section (block index, partition index, bloom filter, CRC32C),
//! then a 64-byte footer (magic `HMSGSST\0`, format version, meta offset and length, counts,
//! sequence range, CRC32C). A data block is: compression u8 (0 none, 1 lz4), uncompressed length
//! u32, payload, CRC32C u32 over all that precedes it. Uncompressed, a block holds entries
//! `len u32, encoded Version`, in key order, one version per key.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use crate::bloom::Bloom;
use crate::codec::{
    FormatError, KEY_BYTES, Reader, decode_key, decode_version, encode_key, encode_version,
};
use crate::limits::{BLOCK_BYTES_MAX, BLOCK_BYTES_TARGET, META_BYTES_MAX, RECORD_BYTES_MAX};
use crate::message::{Key, Part, PartitionKey, Version};

/// Footer magic.
pub const SST_MAGIC: [u8; 8] = *b"HMSGSST\0";
/// Format version written by this build.
pub const SST_FORMAT_VERSION: u32 = 1;
/// Footer size.
pub const FOOTER_BYTES: usize = 64;

/// Block compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Stored as is.
    None,
    /// lz4 block format.
    Lz4,
}

/// Where one data block lives and which keys it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHandle {
    /// File offset.
    pub offset: u64,
    /// Bytes on disk, trailer included.
    pub len: u32,
    /// Smallest key.
    pub first: Key,
    /// Largest key.
    pub last: Key,
}

/// Parsed footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// Meta section offset.
    pub meta_offset: u64,
    /// Meta section length.
    pub meta_len: u32,
    /// Entries in the file.
    pub entries: u64,
    /// Smallest sequence number.
    pub min_seq: u64,
    /// Largest sequence number.
    pub max_seq: u64,
}

/// In-memory description of a sorted file: everything but its data blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SstMeta {
    /// Footer fields.
    pub footer: Footer,
    /// Block index.
    pub blocks: Vec<BlockHandle>,
    /// Partition index: partition -> first and last block holding it.
    pub parts: BTreeMap<Part, (u32, u32)>,
    /// Bloom filter over partitions.
    pub bloom: Bloom,
}

impl SstMeta {
    /// Blocks that may hold keys in `[lo, hi]` of partition `part`.
    pub fn blocks_for(&self, part: &Part, lo: &Key, hi: &Key) -> std::ops::Range<u32> {
        if !self.bloom.may_contain(part) {
            return 0..0;
        }
        let Some(&(a, b)) = self.parts.get(part) else {
            return 0..0;
        };
        let mut first = a;
        let mut last = b;
        while first <= last
            && self
                .blocks
                .get(first as usize)
                .is_some_and(|h| h.last < *lo)
        {
            first += 1;
        }
        while last >= first
            && self
                .blocks
                .get(last as usize)
                .is_some_and(|h| h.first > *hi)
        {
            if last == 0 {
                return 0..0;
            }
            last -= 1;
        }
        if first > last { 0..0 } else { first..last + 1 }
    }
}

fn encode_part(p: &Part, out: &mut Vec<u8>) {
    match *p {
        Part::Msg(k) => {
            out.push(0);
            out.extend_from_slice(&k.channel_id.to_le_bytes());
            out.extend_from_slice(&k.bucket.to_le_bytes());
        }
        Part::Read(u) => {
            out.push(1);
            out.extend_from_slice(&u.to_le_bytes());
            out.extend_from_slice(&[0; 4]);
        }
    }
}

fn decode_part(r: &mut Reader<'_>) -> Result<Part, FormatError> {
    let tag = r.u8()?;
    let a = r.u64()?;
    let b = r.u32()?;
    match tag {
        0 => Ok(Part::Msg(PartitionKey {
            channel_id: a,
            bucket: b,
        })),
        1 => Ok(Part::Read(a)),
        t => Err(FormatError::BadTag(t)),
    }
}

/// Builds a whole sorted file in memory from versions in strictly increasing key order.
pub fn build<'a>(
    versions: impl Iterator<Item = &'a Version>,
    compression: Compression,
) -> (Vec<u8>, SstMeta) {
    let mut b = Builder::new(compression);
    for v in versions {
        b.add(v);
    }
    b.finish()
}

/// Builds a sorted file one version at a time, so the caller can spread the encoding and
/// compression of a large file over many loop turns (`raw_bytes` says how much work was done).
#[derive(Debug)]
pub struct Builder {
    compression: Compression,
    out: Vec<u8>,
    blocks: Vec<BlockHandle>,
    parts: BTreeMap<Part, (u32, u32)>,
    raw: Vec<u8>,
    scratch: Vec<u8>,
    first_last: Option<(Key, Key)>,
    entries: u64,
    min_seq: u64,
    max_seq: u64,
    raw_bytes: u64,
}

impl Builder {
    /// An empty file.
    pub fn new(compression: Compression) -> Self {
        Self::with_capacity(compression, 0)
    }

    /// An empty file whose output buffer has room for `bytes` from the start: a buffer that
    /// doubles as it grows copies the whole file so far in one `add` (tens of milliseconds for
    /// a merge output of tens of MiB), and reserving never touches the memory.
    pub fn with_capacity(compression: Compression, bytes: usize) -> Self {
        Self {
            compression,
            out: Vec::with_capacity(bytes),
            blocks: Vec::new(),
            parts: BTreeMap::new(),
            raw: Vec::with_capacity(BLOCK_BYTES_TARGET + RECORD_BYTES_MAX),
            scratch: Vec::new(),
            first_last: None,
            entries: 0,
            min_seq: u64::MAX,
            max_seq: 0,
            raw_bytes: 0,
        }
    }

    /// Uncompressed entry bytes added so far.
    pub fn raw_bytes(&self) -> u64 {
        self.raw_bytes
    }

    /// Adds the next version; keys must strictly increase.
    pub fn add(&mut self, v: &Version) {
        let key = v.body.key();
        let idx = self.blocks.len() as u32;
        self.parts
            .entry(key.partition())
            .and_modify(|e| e.1 = idx)
            .or_insert((idx, idx));
        self.scratch.clear();
        encode_version(v, &mut self.scratch);
        self.raw
            .extend_from_slice(&(self.scratch.len() as u32).to_le_bytes());
        self.raw.extend_from_slice(&self.scratch);
        self.raw_bytes += 4 + self.scratch.len() as u64;
        self.first_last = Some(match self.first_last {
            None => (key, key),
            Some((f, _)) => (f, key),
        });
        self.entries += 1;
        self.min_seq = self.min_seq.min(v.seq);
        self.max_seq = self.max_seq.max(v.seq);
        if self.raw.len() >= BLOCK_BYTES_TARGET {
            self.finish_block();
        }
    }

    fn finish_block(&mut self) {
        let Some((first, last)) = self.first_last.take() else {
            return;
        };
        let out = &mut self.out;
        let raw = &self.raw;
        let offset = out.len() as u64;
        let lz = (self.compression == Compression::Lz4).then(|| lz4_flex::block::compress(raw));
        match lz {
            Some(c) if c.len() < raw.len() => {
                out.push(1);
                out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
                out.extend_from_slice(&c);
            }
            _ => {
                out.push(0);
                out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
                out.extend_from_slice(raw);
            }
        }
        let crc = crc32c::crc32c(out.get(offset as usize..).unwrap_or_default());
        out.extend_from_slice(&crc.to_le_bytes());
        self.blocks.push(BlockHandle {
            offset,
            len: (out.len() as u64 - offset) as u32,
            first,
            last,
        });
        self.raw.clear();
    }

    /// Ends the last block and appends the meta section and the footer.
    pub fn finish(mut self) -> (Vec<u8>, SstMeta) {
        self.finish_block();
        let Builder {
            mut out,
            blocks,
            parts,
            entries,
            mut min_seq,
            max_seq,
            ..
        } = self;
        if entries == 0 {
            min_seq = 0;
        }
        let bloom = Bloom::build(parts.keys());
        let meta_offset = out.len() as u64;
        out.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
        for b in &blocks {
            out.extend_from_slice(&b.offset.to_le_bytes());
            out.extend_from_slice(&b.len.to_le_bytes());
            encode_key(&b.first, &mut out);
            encode_key(&b.last, &mut out);
        }
        out.extend_from_slice(&(parts.len() as u32).to_le_bytes());
        for (p, (a, b)) in &parts {
            encode_part(p, &mut out);
            out.extend_from_slice(&a.to_le_bytes());
            out.extend_from_slice(&b.to_le_bytes());
        }
        out.extend_from_slice(&(bloom.as_bytes().len() as u32).to_le_bytes());
        out.extend_from_slice(bloom.as_bytes());
        let crc = crc32c::crc32c(out.get(meta_offset as usize..).unwrap_or_default());
        out.extend_from_slice(&crc.to_le_bytes());
        let meta_len = (out.len() as u64 - meta_offset) as u32;
        let footer = Footer {
            meta_offset,
            meta_len,
            entries,
            min_seq,
            max_seq,
        };
        let fstart = out.len();
        out.extend_from_slice(&SST_MAGIC);
        out.extend_from_slice(&SST_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&meta_offset.to_le_bytes());
        out.extend_from_slice(&meta_len.to_le_bytes());
        out.extend_from_slice(&entries.to_le_bytes());
        out.extend_from_slice(&min_seq.to_le_bytes());
        out.extend_from_slice(&max_seq.to_le_bytes());
        out.resize(fstart + FOOTER_BYTES - 4, 0);
        let crc = crc32c::crc32c(out.get(fstart..).unwrap_or_default());
        out.extend_from_slice(&crc.to_le_bytes());
        (
            out,
            SstMeta {
                footer,
                blocks,
                parts,
                bloom,
            },
        )
    }
}

/// Parses the footer (the file's last `FOOTER_BYTES`), given the file size.
pub fn decode_footer(buf: &[u8], file_size: u64) -> Result<Footer, FormatError> {
    let body = buf.get(..FOOTER_BYTES - 4).ok_or(FormatError::Truncated)?;
    let mut r = Reader::new(buf);
    if r.take(8)? != SST_MAGIC {
        return Err(FormatError::Magic);
    }
    let version = r.u32()?;
    let meta_offset = r.u64()?;
    let meta_len = r.u32()?;
    let entries = r.u64()?;
    let min_seq = r.u64()?;
    let max_seq = r.u64()?;
    let mut tail = Reader::new(buf.get(FOOTER_BYTES - 4..).ok_or(FormatError::Truncated)?);
    if tail.u32()? != crc32c::crc32c(body) {
        return Err(FormatError::Checksum);
    }
    if version != SST_FORMAT_VERSION {
        return Err(FormatError::Version(version));
    }
    if meta_len as usize > META_BYTES_MAX
        || meta_offset.checked_add(u64::from(meta_len))
            != file_size.checked_sub(FOOTER_BYTES as u64)
    {
        return Err(FormatError::Invalid("meta section out of file"));
    }
    Ok(Footer {
        meta_offset,
        meta_len,
        entries,
        min_seq,
        max_seq,
    })
}

/// Parses the meta section.
pub fn decode_meta(buf: &[u8], footer: Footer) -> Result<SstMeta, FormatError> {
    let (body, crc) = buf
        .split_at_checked(buf.len().checked_sub(4).ok_or(FormatError::Truncated)?)
        .ok_or(FormatError::Truncated)?;
    if Reader::new(crc).u32()? != crc32c::crc32c(body) {
        return Err(FormatError::Checksum);
    }
    let mut r = Reader::new(body);
    let n = r.u32()? as usize;
    if n > body.len() / (12 + 2 * KEY_BYTES) {
        return Err(FormatError::TooLong(n));
    }
    let mut blocks = Vec::with_capacity(n);
    for _ in 0..n {
        let offset = r.u64()?;
        let len = r.u32()?;
        let first = decode_key(&mut r)?;
        let last = decode_key(&mut r)?;
        if len as usize > BLOCK_BYTES_MAX
            || offset.saturating_add(u64::from(len)) > footer.meta_offset
        {
            return Err(FormatError::Invalid("block out of data section"));
        }
        blocks.push(BlockHandle {
            offset,
            len,
            first,
            last,
        });
    }
    let n = r.u32()? as usize;
    if n > body.len() / 21 {
        return Err(FormatError::TooLong(n));
    }
    let mut parts = BTreeMap::new();
    for _ in 0..n {
        let p = decode_part(&mut r)?;
        let a = r.u32()?;
        let b = r.u32()?;
        if a > b || b as usize >= blocks.len() {
            return Err(FormatError::Invalid("partition index out of range"));
        }
        parts.insert(p, (a, b));
    }
    let n = r.u32()? as usize;
    let bloom = Bloom::from_bytes(r.take(n)?.to_vec());
    if r.remaining() != 0 {
        return Err(FormatError::Invalid("trailing bytes in meta"));
    }
    Ok(SstMeta {
        footer,
        blocks,
        parts,
        bloom,
    })
}

/// Verifies and decodes one data block.
pub fn decode_block(buf: &[u8]) -> Result<Vec<Version>, FormatError> {
    let (body, crc) = buf
        .split_at_checked(buf.len().checked_sub(4).ok_or(FormatError::Truncated)?)
        .ok_or(FormatError::Truncated)?;
    if Reader::new(crc).u32()? != crc32c::crc32c(body) {
        return Err(FormatError::Checksum);
    }
    let mut r = Reader::new(body);
    let kind = r.u8()?;
    let raw_len = r.u32()? as usize;
    if raw_len > BLOCK_BYTES_MAX {
        return Err(FormatError::TooLong(raw_len));
    }
    let payload = r.take(r.remaining())?;
    let owned;
    let raw: &[u8] = match kind {
        0 => payload,
        1 => {
            owned = lz4_flex::block::decompress(payload, raw_len)
                .map_err(|_| FormatError::Invalid("lz4"))?;
            &owned
        }
        t => return Err(FormatError::BadTag(t)),
    };
    if raw.len() != raw_len {
        return Err(FormatError::Invalid("block length"));
    }
    let mut r = Reader::new(raw);
    let mut out = Vec::new();
    while r.remaining() > 0 {
        let n = r.u32()? as usize;
        if n > RECORD_BYTES_MAX {
            return Err(FormatError::TooLong(n));
        }
        out.push(decode_version(r.take(n)?)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Body, Message};

    fn msgs(n: u64) -> Vec<Version> {
        (0..n)
            .map(|i| Version {
                seq: i + 1,
                body: Body::Message(Message {
                    id: (i + 1) << 22,
                    channel_id: 1 + i / 100,
                    content: "x".repeat(200),
                    ..Message::default()
                }),
            })
            .collect()
    }

    #[test]
    fn build_then_decode_every_block() {
        for c in [Compression::None, Compression::Lz4] {
            let v = msgs(500);
            let (bytes, meta) = build(v.iter(), c);
            let size = bytes.len() as u64;
            let footer = decode_footer(
                bytes.get(bytes.len() - FOOTER_BYTES..).unwrap_or_default(),
                size,
            );
            assert_eq!(footer, Ok(meta.footer));
            let m = meta.footer;
            let mbuf =
                bytes.get(m.meta_offset as usize..(m.meta_offset + u64::from(m.meta_len)) as usize);
            assert_eq!(decode_meta(mbuf.unwrap_or_default(), m).as_ref(), Ok(&meta));
            assert!(meta.blocks.len() > 2);
            let mut all = Vec::new();
            for b in &meta.blocks {
                let blk = bytes.get(b.offset as usize..(b.offset + u64::from(b.len)) as usize);
                all.extend(decode_block(blk.unwrap_or_default()).unwrap_or_default());
            }
            assert_eq!(all, v);
            let mut bad = bytes.clone();
            if let Some(x) = bad.get_mut(10) {
                *x ^= 1;
            }
            let b0 = meta.blocks.first().copied();
            let blk =
                b0.and_then(|b| bad.get(b.offset as usize..(b.offset + u64::from(b.len)) as usize));
            assert_eq!(
                decode_block(blk.unwrap_or_default()),
                Err(FormatError::Checksum)
            );
        }
    }
}
