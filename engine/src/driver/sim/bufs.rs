//! The simulated provided-buffer pool, with lending checked: a buffer is lent once until released.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::driver::BufId;

/// `count` buffers of `size` bytes in one block; which are free and which are lent.
#[derive(Debug)]
pub(crate) struct BufPool {
    size: usize,
    data: Vec<u8>,
    free: Vec<u16>,
    lent: Vec<bool>,
    /// Printed in panics so a misuse can be replayed.
    seed: u64,
}

impl BufPool {
    /// A pool of `count` free buffers of `size` bytes each.
    pub(crate) fn new(count: u16, size: u32, seed: u64) -> Self {
        let size = size as usize;
        BufPool {
            size,
            data: vec![0; size * usize::from(count)],
            free: (0..count).collect(),
            lent: vec![false; usize::from(count)],
            seed,
        }
    }

    /// Bytes per buffer.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Buffers currently lent.
    pub(crate) fn lent_count(&self) -> usize {
        self.lent.len() - self.free.len()
    }

    /// Lend a random free buffer filled with `src` (at most `size` bytes), or None if none is free.
    /// Random choice, unlike a LIFO ring, shakes out code that assumes an order of buffer ids.
    pub(crate) fn lend(
        &mut self,
        rng: &mut ChaCha8Rng,
        src: impl FnOnce(&mut [u8]) -> usize,
    ) -> Option<(BufId, usize)> {
        if self.free.is_empty() {
            return None;
        }
        let i = rng.random_range(0..self.free.len());
        let id = self.free.swap_remove(i);
        let idx = usize::from(id);
        assert!(
            !self.lent[idx],
            "sim (seed {}): buffer {id} lent twice",
            self.seed
        );
        self.lent[idx] = true;
        let start = idx * self.size;
        let n = src(&mut self.data[start..start + self.size]);
        assert!(n <= self.size);
        Some((BufId(id), n))
    }

    /// The first `len` bytes of a lent buffer; panics on a buffer not lent (a use after release).
    pub(crate) fn bytes(&self, buf: BufId, len: usize) -> &[u8] {
        let idx = usize::from(buf.0);
        assert!(
            self.lent.get(idx).copied().unwrap_or(false),
            "sim (seed {}): recv_buf({buf:?}) of a buffer not lent",
            self.seed
        );
        assert!(
            len <= self.size,
            "sim (seed {}): recv_buf({buf:?}, {len}) beyond buffer size {}",
            self.seed,
            self.size
        );
        let start = idx * self.size;
        &self.data[start..start + len]
    }

    /// Give a buffer back; panics on a buffer not lent (a double release or a made-up id).
    pub(crate) fn release(&mut self, buf: BufId) {
        let idx = usize::from(buf.0);
        assert!(
            self.lent.get(idx).copied().unwrap_or(false),
            "sim (seed {}): release_buf({buf:?}) of a buffer not lent",
            self.seed
        );
        self.lent[idx] = false;
        self.free.push(buf.0);
    }
}
