//! The provided-buffer ring: one pool of equal receive buffers the kernel picks from when data
//! arrives, so an idle connection holds no read buffer.
//!
//! Two anonymous mappings: the ring of `io_uring_buf` entries shared with the kernel (page
//! aligned, as IORING_REGISTER_PBUF_RING requires) and the buffers themselves. A buffer is either
//! in the ring (the kernel may fill it), or lent to the shard (between its completion and
//! `release`). Re-adding writes an entry at the tail and publishes the new tail with a release
//! store, which is the whole producer protocol.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

use crate::driver::DriverError;

/// Largest ring the kernel accepts.
pub(super) const MAX_BUFFERS: u16 = 32768;

/// An anonymous private mapping, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize, what: &'static str) -> Result<Self, DriverError> {
        // SAFETY: anonymous private mapping with no address hint; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(DriverError::Os {
                what,
                source: io::Error::last_os_error(),
            });
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len come from a successful mmap and nothing refers to the mapping any more
        // (the owner guarantees the kernel is done with it before dropping).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The ring, the buffers, and which buffers are lent to the shard.
pub(super) struct BufRing {
    ring: Mapping,
    bufs: Mapping,
    count: u16,
    buf_bytes: u32,
    /// Our copy of the tail we last published.
    tail: u16,
    /// Per buffer: lent to the shard, and where its payload starts (UDP `recvmsg` header skip).
    lent: Vec<bool>,
    payload_off: Vec<u32>,
    lent_count: u64,
}

impl BufRing {
    /// Map `count` buffers of `buf_bytes` (count a power of two, at most [`MAX_BUFFERS`]).
    pub(super) fn new(count: u16, buf_bytes: u32) -> Result<Self, DriverError> {
        if !count.is_power_of_two() || count > MAX_BUFFERS || buf_bytes == 0 {
            return Err(DriverError::Os {
                what: "recv_buffers must be a power of two <= 32768 and recv_buffer_bytes > 0",
                source: io::Error::from(io::ErrorKind::InvalidInput),
            });
        }
        let ring_len = usize::from(count) * std::mem::size_of::<BufRingEntry>();
        let ring = Mapping::new(ring_len, "mmap buffer ring")?;
        let bufs = Mapping::new(
            usize::from(count) * buf_bytes as usize,
            "mmap receive buffers",
        )?;
        let mut r = BufRing {
            ring,
            bufs,
            count,
            buf_bytes,
            tail: 0,
            lent: vec![false; usize::from(count)],
            payload_off: vec![0; usize::from(count)],
            lent_count: 0,
        };
        for bid in 0..count {
            r.write_entry(bid);
        }
        r.publish();
        Ok(r)
    }

    /// Address of the ring for IORING_REGISTER_PBUF_RING.
    pub(super) fn ring_addr(&self) -> u64 {
        self.ring.ptr as u64
    }

    /// Number of entries of the ring.
    pub(super) fn count(&self) -> u16 {
        self.count
    }

    fn write_entry(&mut self, bid: u16) {
        let idx = usize::from(self.tail & (self.count - 1));
        let base = self.ring.ptr.cast::<BufRingEntry>();
        // SAFETY: idx < count so the entry lies inside the ring mapping; entries at and after the
        // published tail belong to the producer (us) until we publish, so the kernel is not
        // reading them. The buffer address is inside the buffer mapping since bid < count.
        unsafe {
            let e = &mut *base.add(idx);
            e.set_addr(
                self.bufs
                    .ptr
                    .add(usize::from(bid) * self.buf_bytes as usize) as u64,
            );
            e.set_len(self.buf_bytes);
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        let base = self.ring.ptr.cast::<BufRingEntry>();
        // SAFETY: the tail field overlays the `resv` field of entry 0, inside the page-aligned,
        // u16-aligned ring mapping; the kernel only reads it, and we publish with a release store
        // so the entries written before are visible first.
        let tail = unsafe { AtomicU16::from_ptr(BufRingEntry::tail(base).cast_mut()) };
        tail.store(self.tail, Ordering::Release);
    }

    /// Record that a completion lent buffer `bid` to the shard, payload starting at `off`.
    pub(super) fn lend(&mut self, bid: u16, off: u32) -> bool {
        let Some(l) = self.lent.get_mut(usize::from(bid)) else {
            return false;
        };
        if !*l {
            *l = true;
            self.lent_count += 1;
        }
        if let Some(o) = self.payload_off.get_mut(usize::from(bid)) {
            *o = off;
        }
        true
    }

    /// Give `bid` back to the kernel (called by `release_buf`, or internally for a buffer the
    /// shard never saw). Returns false if it was not lent (double release is ignored).
    pub(super) fn release(&mut self, bid: u16) -> bool {
        match self.lent.get_mut(usize::from(bid)) {
            Some(l) if *l => {
                *l = false;
                self.lent_count -= 1;
                self.recycle(bid);
                true
            }
            _ => false,
        }
    }

    /// Put a buffer the kernel selected but that carries nothing for the shard back in the ring.
    pub(super) fn recycle(&mut self, bid: u16) {
        if bid < self.count {
            self.write_entry(bid);
            self.publish();
        }
    }

    /// The payload bytes of a lent buffer (clamped to the buffer; empty for a bad id or a buffer
    /// that is back in the ring, which the kernel may be filling).
    pub(super) fn slice(&self, bid: u16, len: usize) -> &[u8] {
        if !self.lent.get(usize::from(bid)).copied().unwrap_or(false) {
            return &[];
        }
        let off = self.payload_off.get(usize::from(bid)).copied().unwrap_or(0) as usize;
        let size = self.buf_bytes as usize;
        let start = off.min(size);
        let len = len.min(size - start);
        // SAFETY: the range lies inside buffer `bid` of the mapping; the buffer is lent to the
        // shard (the kernel filled it before posting the completion and will not touch it until
        // it is re-added to the ring, which needs `&mut self`).
        unsafe {
            std::slice::from_raw_parts(self.bufs.ptr.add(usize::from(bid) * size + start), len)
        }
    }

    /// The whole raw buffer `bid` up to `len` bytes (for parsing `recvmsg` output).
    pub(super) fn raw(&self, bid: u16, len: usize) -> &[u8] {
        if bid >= self.count {
            return &[];
        }
        let size = self.buf_bytes as usize;
        // SAFETY: as in `slice`: inside the mapping, and just filled by the kernel.
        unsafe {
            std::slice::from_raw_parts(self.bufs.ptr.add(usize::from(bid) * size), len.min(size))
        }
    }

    /// Buffers currently lent to the shard.
    pub(super) fn lent_count(&self) -> u64 {
        self.lent_count
    }
}
