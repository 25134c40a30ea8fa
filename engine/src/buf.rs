//! Owned I/O buffers: gather lists for sends and aligned blocks for O_DIRECT file I/O, with pools.
//!
//! A buffer given to a driver in an `Op` comes back in its completion; until then the shard cannot
//! touch it, which is what makes handing raw pointers to the kernel sound.

use bytes::Bytes;

/// Alignment (and length granularity) required by O_DIRECT on the devices we target.
pub const DIRECT_ALIGN: usize = 4096;

/// Where one gather segment of a [`SendBuf`] lives.
#[derive(Clone, Debug)]
enum Seg {
    /// `len` bytes of the buffer's own arena starting at `start`.
    Arena { start: usize, len: usize },
    /// A shared payload (serialized once, sent to many) and the sub-range to send.
    Shared { bytes: Bytes },
}

/// A gather list to send: small bytes copied into an owned arena, large shared payloads by
/// reference, so fan-out writes a per-recipient header and points at one shared body.
///
/// Reused across sends: `clear` keeps the capacity, so a pooled `SendBuf` allocates nothing in
/// steady state.
#[derive(Debug, Default)]
pub struct SendBuf {
    arena: Vec<u8>,
    segs: Vec<Seg>,
    /// Bytes already sent from the front (after a partial send).
    sent: usize,
    total: usize,
}

impl SendBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        SendBuf::default()
    }

    /// An empty buffer whose arena holds `cap` bytes before growing.
    pub fn with_capacity(cap: usize) -> Self {
        SendBuf {
            arena: Vec::with_capacity(cap),
            ..SendBuf::default()
        }
    }

    /// Append a copy of `data` (for headers and small frames).
    pub fn push_bytes(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let start = self.arena.len();
        self.arena.extend_from_slice(data);
        // Merge with the previous arena segment when contiguous, to keep the iovec count low.
        if let Some(Seg::Arena { start: s, len }) = self.segs.last_mut()
            && *s + *len == start
        {
            *len += data.len();
        } else {
            self.segs.push(Seg::Arena {
                start,
                len: data.len(),
            });
        }
        self.total += data.len();
    }

    /// Append a shared payload without copying it.
    pub fn push_shared(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.total += bytes.len();
        self.segs.push(Seg::Shared { bytes });
    }

    /// Gives direct access to the arena to write into, e.g. `f(&mut vec)` then records the segment.
    pub fn write_with(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        let start = self.arena.len();
        f(&mut self.arena);
        let len = self.arena.len() - start;
        if len == 0 {
            return;
        }
        if let Some(Seg::Arena { start: s, len: l }) = self.segs.last_mut()
            && *s + *l == start
        {
            *l += len;
        } else {
            self.segs.push(Seg::Arena { start, len });
        }
        self.total += len;
    }

    /// Bytes not yet sent.
    pub fn remaining(&self) -> usize {
        self.total - self.sent
    }

    /// Whether nothing remains to be sent.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Mark `n` more bytes as sent (after a partial send); the rest is what a re-submit sends.
    pub fn advance(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.total);
    }

    /// Forget everything, keeping capacity.
    pub fn clear(&mut self) {
        self.arena.clear();
        self.segs.clear();
        self.sent = 0;
        self.total = 0;
    }

    /// Number of gather segments (an upper bound on the iovecs `for_each_unsent` yields).
    pub fn segment_count(&self) -> usize {
        self.segs.len()
    }

    /// Call `f` on each unsent slice, in order.
    pub fn for_each_unsent(&self, mut f: impl FnMut(&[u8])) {
        let mut skip = self.sent;
        for seg in &self.segs {
            let slice: &[u8] = match seg {
                Seg::Arena { start, len } => &self.arena[*start..*start + *len],
                Seg::Shared { bytes } => bytes,
            };
            if skip >= slice.len() {
                skip -= slice.len();
                continue;
            }
            f(&slice[skip..]);
            skip = 0;
        }
    }

    /// Copy the unsent bytes into `out` (tests and the simulation).
    pub fn copy_unsent_into(&self, out: &mut Vec<u8>) {
        self.for_each_unsent(|s| out.extend_from_slice(s));
    }
}

/// A heap block aligned to [`DIRECT_ALIGN`], for O_DIRECT reads and writes.
pub struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    cap: usize,
}

// SAFETY: AlignedBuf uniquely owns its allocation, like a Box<[u8]>.
unsafe impl Send for AlignedBuf {}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("cap", &self.cap)
            .finish()
    }
}

impl AlignedBuf {
    /// A zeroed block of `cap` bytes, rounded up to a multiple of [`DIRECT_ALIGN`].
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1).div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
        let layout = Self::layout(cap);
        // SAFETY: layout has non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(ptr) = std::ptr::NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        AlignedBuf { ptr, cap }
    }

    fn layout(cap: usize) -> std::alloc::Layout {
        match std::alloc::Layout::from_size_align(cap, DIRECT_ALIGN) {
            Ok(l) => l,
            // cap is a multiple of a power-of-two alignment and was allocatable before.
            Err(_) => unreachable!("aligned buffer layout"),
        }
    }

    /// Capacity in bytes (a multiple of [`DIRECT_ALIGN`]).
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Raw pointer for the kernel; valid for `capacity()` bytes while `self` lives.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Raw const pointer for the kernel.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr is valid and initialized (zeroed at allocation) for cap bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.cap) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in Deref, and we hold the unique reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.cap) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this exact layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) }
    }
}

/// A bounded free list of reusable values, so hot paths take and return instead of allocating.
#[derive(Debug)]
pub struct Pool<T> {
    free: Vec<T>,
    max_free: usize,
    make: fn() -> T,
    /// Times `take` found the free list empty and built a new value.
    pub misses: u64,
}

impl<T> Pool<T> {
    /// A pool that keeps at most `max_free` idle values and builds new ones with `make`.
    pub fn new(max_free: usize, make: fn() -> T) -> Self {
        Pool {
            free: Vec::with_capacity(max_free),
            max_free,
            make,
            misses: 0,
        }
    }

    /// Pre-build `n` values (start-up allocation).
    pub fn prefill(&mut self, n: usize) {
        while self.free.len() < n.min(self.max_free) {
            self.free.push((self.make)());
        }
    }

    /// Take a value, building one if none is idle.
    pub fn take(&mut self) -> T {
        match self.free.pop() {
            Some(v) => v,
            None => {
                self.misses += 1;
                (self.make)()
            }
        }
    }

    /// Return a value; beyond `max_free` idle values it is dropped.
    pub fn give(&mut self, v: T) {
        if self.free.len() < self.max_free {
            self.free.push(v);
        }
    }

    /// Idle values held.
    pub fn idle(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsent(b: &SendBuf) -> Vec<u8> {
        let mut v = Vec::new();
        b.copy_unsent_into(&mut v);
        v
    }

    #[test]
    fn gather_list_merges_and_advances_across_segments() {
        let mut b = SendBuf::new();
        b.push_bytes(b"ab");
        b.push_bytes(b"cd");
        assert_eq!(b.segment_count(), 1, "contiguous arena bytes merge");
        b.push_shared(Bytes::from_static(b"EFGH"));
        b.push_bytes(b"ij");
        assert_eq!(b.segment_count(), 3);
        assert_eq!(unsent(&b), b"abcdEFGHij");
        b.advance(3);
        assert_eq!(unsent(&b), b"dEFGHij");
        b.advance(3);
        assert_eq!(unsent(&b), b"GHij");
        b.advance(100);
        assert!(b.is_empty());
        b.clear();
        assert_eq!(b.remaining(), 0);
        b.push_bytes(b"x");
        assert_eq!(unsent(&b), b"x");
    }

    #[test]
    fn aligned_buf_is_aligned_and_rounded() {
        let mut a = AlignedBuf::new(5000);
        assert_eq!(a.capacity(), 8192);
        assert_eq!(a.as_mut_ptr() as usize % DIRECT_ALIGN, 0);
        a[8191] = 7;
        assert_eq!(a[8191], 7);
        assert_eq!(a[0], 0);
    }

    #[test]
    fn pool_reuses_and_bounds_idle() {
        let mut p: Pool<Vec<u8>> = Pool::new(2, Vec::new);
        let a = p.take();
        let b = p.take();
        let c = p.take();
        assert_eq!(p.misses, 3);
        p.give(a);
        p.give(b);
        p.give(c);
        assert_eq!(p.idle(), 2);
        let _ = p.take();
        assert_eq!(p.misses, 3);
    }
}
