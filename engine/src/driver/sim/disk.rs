//! The simulated disk: files by path, writes volatile until fdatasync, crashes that lose or tear
//! unsynced writes at sector boundaries.
//!
//! A `SimDisk` outlives the world that wrote it, so a test can crash it and boot a new world
//! (a restarted node) on what survived.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::config::{SECTOR_BYTES, chance};

/// One file: what is durable, what reads see, and the unsynced writes in between, in order.
#[derive(Clone, Debug, Default)]
struct DiskFile {
    durable: Vec<u8>,
    current: Vec<u8>,
    unsynced: Vec<(u64, Vec<u8>)>,
}

/// A set of files keyed by path, with fdatasync durability and crash semantics.
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    files: BTreeMap<PathBuf, DiskFile>,
}

/// Copy `data` into `file` at `offset`, growing it with zeros as needed.
fn apply(file: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let end = start.saturating_add(data.len());
    if file.len() < end {
        file.resize(end, 0);
    }
    file[start..end].copy_from_slice(data);
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> Self {
        SimDisk::default()
    }

    /// Whether a file exists at `path`.
    pub fn exists(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }

    /// Paths of all files, in order.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.keys().map(PathBuf::as_path)
    }

    /// What a read would see now (synced and unsynced writes).
    pub fn contents(&self, path: &Path) -> Option<&[u8]> {
        self.files.get(path).map(|f| f.current.as_slice())
    }

    /// What would survive a crash for certain (the state at the last fdatasync).
    pub fn durable_contents(&self, path: &Path) -> Option<&[u8]> {
        self.files.get(path).map(|f| f.durable.as_slice())
    }

    /// Writes to `path` since its last fdatasync.
    pub fn unsynced_writes(&self, path: &Path) -> usize {
        self.files.get(path).map_or(0, |f| f.unsynced.len())
    }

    /// Lose power: per file, a random prefix of the unsynced writes reaches the platter and, with
    /// probability `torn_write_prob`, the first write after that prefix is torn (a random prefix of
    /// its 512-byte sectors lands). Everything else unsynced is lost.
    pub fn crash(&mut self, rng: &mut ChaCha8Rng, torn_write_prob: f64) {
        for file in self.files.values_mut() {
            let writes = std::mem::take(&mut file.unsynced);
            let kept = rng.random_range(0..=writes.len());
            for (offset, data) in writes.iter().take(kept) {
                apply(&mut file.durable, *offset, data);
            }
            if let Some((offset, data)) = writes.get(kept)
                && chance(rng, torn_write_prob)
            {
                let landed = torn_prefix_len(rng, *offset, data.len());
                if let Some(prefix) = data.get(..landed)
                    && !prefix.is_empty()
                {
                    apply(&mut file.durable, *offset, prefix);
                }
            }
            file.current.clone_from(&file.durable);
        }
    }

    /// Open (and maybe create or truncate) `path`; false if it is absent and `create` is off.
    pub(crate) fn open(&mut self, path: &Path, create: bool, truncate: bool) -> bool {
        if !self.files.contains_key(path) {
            if !create {
                return false;
            }
            // Directory entries are treated as durable at once: the sim models data, not metadata.
            self.files.insert(path.to_path_buf(), DiskFile::default());
        }
        if truncate && let Some(f) = self.files.get_mut(path) {
            *f = DiskFile::default();
        }
        true
    }

    /// Write `data` at `offset` (volatile until `sync`).
    pub(crate) fn write(&mut self, path: &Path, offset: u64, data: &[u8]) {
        if let Some(f) = self.files.get_mut(path) {
            apply(&mut f.current, offset, data);
            f.unsynced.push((offset, data.to_vec()));
        }
    }

    /// Read into `out` from `offset`; returns bytes read (short at end of file).
    pub(crate) fn read(&self, path: &Path, offset: u64, out: &mut [u8]) -> usize {
        let Some(f) = self.files.get(path) else {
            return 0;
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let Some(src) = f.current.get(start..) else {
            return 0;
        };
        let n = src.len().min(out.len());
        out[..n].copy_from_slice(&src[..n]);
        n
    }

    /// Make every write so far durable.
    pub(crate) fn sync(&mut self, path: &Path) {
        if let Some(f) = self.files.get_mut(path) {
            for (offset, data) in std::mem::take(&mut f.unsynced) {
                apply(&mut f.durable, offset, &data);
            }
            debug_assert_eq!(f.durable, f.current);
        }
    }
}

/// How many leading bytes of a `len`-byte write at `offset` land when it is torn: the distance
/// to a sector boundary inside the write, or 0 (a write within one sector is atomic: all or none,
/// and "all" is the survive case, so torn means none).
fn torn_prefix_len(rng: &mut ChaCha8Rng, offset: u64, len: usize) -> usize {
    let end = offset + len as u64;
    let first = (offset / SECTOR_BYTES + 1) * SECTOR_BYTES;
    if first >= end {
        return 0;
    }
    let interior = (end - 1 - first) / SECTOR_BYTES + 1;
    let pick = rng.random_range(0..=interior);
    if pick == 0 {
        0
    } else {
        usize::try_from(first + (pick - 1) * SECTOR_BYTES - offset).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn crash_loses_unsynced_and_keeps_synced() {
        let mut lost_seen = false;
        for seed in 0..64 {
            let mut d = SimDisk::new();
            assert!(d.open(&p("a"), true, false));
            d.write(&p("a"), 0, b"synced--");
            d.sync(&p("a"));
            d.write(&p("a"), 8, b"volatile");
            assert_eq!(d.contents(&p("a")).unwrap(), b"synced--volatile");
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            d.crash(&mut rng, 0.0);
            let after = d.contents(&p("a")).unwrap();
            assert!(
                after.starts_with(b"synced--"),
                "seed {seed}: synced data lost"
            );
            assert!(after == b"synced--" || after == b"synced--volatile");
            lost_seen |= after == b"synced--";
            assert_eq!(d.unsynced_writes(&p("a")), 0);
        }
        assert!(lost_seen, "no seed lost the unsynced write");
    }

    #[test]
    fn torn_write_lands_whole_sectors_only() {
        let mut torn_seen = false;
        for seed in 0..128 {
            let mut d = SimDisk::new();
            d.open(&p("f"), true, false);
            d.write(&p("f"), 0, &[0xAA; 4096]);
            d.sync(&p("f"));
            d.write(&p("f"), 0, &[0xBB; 4096]);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            d.crash(&mut rng, 1.0);
            let after = d.contents(&p("f")).unwrap();
            assert_eq!(after.len(), 4096);
            let new = after.iter().take_while(|&&b| b == 0xBB).count();
            assert!(new.is_multiple_of(512), "seed {seed}: tear inside a sector");
            assert!(
                after[new..].iter().all(|&b| b == 0xAA),
                "seed {seed}: not a prefix tear"
            );
            torn_seen |= new > 0 && new < 4096;
        }
        assert!(torn_seen, "no seed tore the write mid-way");
    }

    #[test]
    fn torn_prefix_respects_unaligned_offsets() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let n = torn_prefix_len(&mut rng, 100, 2000);
            assert!(
                n == 0 || (100 + n as u64).is_multiple_of(SECTOR_BYTES),
                "{n}"
            );
            assert!(n < 2000);
        }
        assert_eq!(torn_prefix_len(&mut rng, 0, 512), 0);
    }

    #[test]
    fn open_without_create_fails_and_truncate_empties() {
        let mut d = SimDisk::new();
        assert!(!d.open(&p("x"), false, false));
        d.open(&p("x"), true, false);
        d.write(&p("x"), 3, b"abc");
        assert_eq!(d.contents(&p("x")).unwrap(), b"\0\0\0abc");
        let mut out = [0u8; 8];
        assert_eq!(d.read(&p("x"), 4, &mut out), 2);
        assert_eq!(&out[..2], b"bc");
        assert_eq!(d.read(&p("x"), 10, &mut out), 0);
        d.open(&p("x"), false, true);
        assert_eq!(d.contents(&p("x")).unwrap(), b"");
    }
}
