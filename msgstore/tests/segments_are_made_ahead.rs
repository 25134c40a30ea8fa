//! The next commit-log segment is made before it is needed: once the first segment is in use,
//! every later one was created, filled with written zeros, fdatasync'd and entered in the
//! directory before its first group, and no rollover puts a file-system call between a group's
//! appends and their acknowledgement.

use std::collections::HashMap;

use msgstore::io::parse_name;
use msgstore::sim::{MemDisk, sample_message};
use msgstore::wal::SEGMENT_MAGIC;
use msgstore::{Config, Event, FileHandle, FileOp, Store};

/// Segment size of the test: small, so many rollovers happen.
const SEGMENT_BYTES: u64 = 128 * 1024;

#[derive(Debug, Default, Clone, Copy)]
struct Made {
    zeroed: u64,
    synced: bool,
    dir_synced: bool,
}

#[test]
fn later_segments_are_zero_filled_and_synced_before_their_first_group() {
    let mut disk = MemDisk::new(7);
    let mut store = Store::new(Config {
        segment_bytes: SEGMENT_BYTES,
        auto_compact: false,
        ..Config::default()
    });
    store.open();
    let mut segments: HashMap<FileHandle, Made> = HashMap::new();
    let mut activated = Vec::new();
    let mut acked = 0u64;
    let mut next = 0u64;
    for _turn in 0..2000 {
        for _ in 0..8 {
            if store.is_open() {
                let id = ((600_000_000_000 + next) << 22) | 1;
                next += 1;
                let _ = store.append(id, sample_message(3, id));
            }
        }
        store.end_of_turn();
        while let Some(r) = store.poll_io() {
            match &r.op {
                FileOp::Open { handle, name, .. }
                    if matches!(parse_name(name), Some((true, _))) =>
                {
                    segments.insert(*handle, Made::default());
                }
                FileOp::Write {
                    handle,
                    offset,
                    data,
                }
                | FileOp::WriteDurable {
                    handle,
                    offset,
                    data,
                } => {
                    if let Some(m) = segments.get_mut(handle) {
                        // Later groups rewrite the header block while it is the tail block.
                        if *offset == 0 && data.starts_with(&SEGMENT_MAGIC) {
                            if !activated.iter().any(|(h, _)| h == handle) {
                                activated.push((*handle, *m));
                            }
                        } else if data.iter().all(|b| *b == 0) && *offset == m.zeroed {
                            m.zeroed += data.len() as u64;
                        }
                    }
                }
                FileOp::Fdatasync { handle } => {
                    if let Some(m) = segments.get_mut(handle)
                        && m.zeroed == SEGMENT_BYTES
                    {
                        m.synced = true;
                    }
                }
                FileOp::SyncDir => {
                    for m in segments.values_mut() {
                        if m.synced {
                            m.dir_synced = true;
                        }
                    }
                }
                _ => {}
            }
            let res = disk.execute(r.op);
            store.complete_io(r.id, res);
        }
        while let Some(e) = store.poll_event() {
            match e {
                Event::Acked { .. } => acked += 1,
                Event::Failed { error, .. } => panic!("append failed: {error}"),
                _ => {}
            }
        }
    }
    assert!(acked > 10_000, "acked {acked}");
    assert!(activated.len() > 20, "rollovers: {}", activated.len());
    // The first segment is made on demand (preallocated only); every later one ahead of time.
    for (handle, m) in activated.iter().skip(1) {
        assert_eq!(m.zeroed, SEGMENT_BYTES, "{handle:?} zero-filled whole");
        assert!(
            m.synced && m.dir_synced,
            "{handle:?} durable before use: {m:?}"
        );
    }
}
