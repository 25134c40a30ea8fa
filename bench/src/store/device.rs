//! What the disk itself gives a durable append, measured in the same run as the stores: one
//! 4 KiB write made durable, one at a time, on a file in the data directory whose blocks are
//! already written (as a commit-log segment made ahead of time is), two ways:
//! - `O_DIRECT` `pwrite` then `fdatasync` (the engine's commit-log path);
//! - buffered `pwrite` then `fdatasync` (the benchmark executor's and RocksDB's WAL path).
//!
//! No store can acknowledge a durable append faster than this; its p99 bounds any append p99.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::limits::{DEVICE_PROBE_FILE_BYTES, DEVICE_PROBE_WRITES};
use super::{histogram, record};
use crate::BenchError;
use crate::latency::LatencySummary;

/// Block written per probe, and the alignment `O_DIRECT` needs.
const PROBE_BLOCK_BYTES: usize = 4096;

/// One way of making a 4 KiB write durable, and its latency.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceProbe {
    /// How the write was made durable.
    pub method: String,
    /// Latency of write + sync, one at a time.
    pub latency: LatencySummary,
}

/// Runs every probe in `dir` (a file made there and removed after).
pub fn probe(dir: &Path) -> Result<Vec<DeviceProbe>, BenchError> {
    std::fs::create_dir_all(dir).map_err(|e| BenchError::io("create probe dir", e))?;
    let path = dir.join("device-probe");
    // Written blocks first (zeros, synced), as the store's segments are before use.
    std::fs::write(&path, vec![0u8; DEVICE_PROBE_FILE_BYTES])
        .map_err(|e| BenchError::io("write probe file", e))?;
    let mut out = Vec::new();
    for (method, direct) in [
        ("O_DIRECT 4 KiB pwrite + fdatasync", true),
        ("buffered 4 KiB pwrite + fdatasync", false),
    ] {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true);
        if direct {
            opts.custom_flags(libc::O_DIRECT);
        }
        let f = opts
            .open(&path)
            .map_err(|e| BenchError::io("open probe file", e))?;
        f.sync_all()
            .map_err(|e| BenchError::io("sync probe file", e))?;
        // An aligned block inside an over-sized buffer: O_DIRECT needs an aligned address.
        let mut backing = vec![0xa5u8; 2 * PROBE_BLOCK_BYTES];
        let start = backing.as_ptr().align_offset(PROBE_BLOCK_BYTES);
        let block = backing
            .get_mut(start..start + PROBE_BLOCK_BYTES)
            .ok_or_else(|| BenchError::Invalid("probe buffer alignment".into()))?;
        let mut h = histogram()?;
        let blocks = (DEVICE_PROBE_FILE_BYTES / PROBE_BLOCK_BYTES) as u64;
        for i in 0..DEVICE_PROBE_WRITES {
            let offset = (i % blocks) as libc::off_t * PROBE_BLOCK_BYTES as libc::off_t;
            let t = Instant::now();
            // SAFETY: `block` is valid for PROBE_BLOCK_BYTES bytes for the whole call and the
            // descriptor belongs to `f`, open for the call.
            let n = unsafe {
                libc::pwrite(
                    f.as_raw_fd(),
                    block.as_ptr().cast(),
                    PROBE_BLOCK_BYTES,
                    offset,
                )
            };
            if n != PROBE_BLOCK_BYTES as isize {
                return Err(BenchError::io(
                    "probe write",
                    std::io::Error::last_os_error(),
                ));
            }
            f.sync_data()
                .map_err(|e| BenchError::io("probe fdatasync", e))?;
            record(&mut h, t.elapsed().as_nanos() as u64);
        }
        out.push(DeviceProbe {
            method: method.into(),
            latency: LatencySummary::from_ns(&h),
        });
    }
    let _ = std::fs::remove_file(&path);
    Ok(out)
}
