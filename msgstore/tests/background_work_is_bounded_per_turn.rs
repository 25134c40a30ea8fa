//! Flushes and compactions advance in bounded steps: one loop turn never issues more than
//! `step_io_bytes` of sorted-file reads or writes, so foreground appends keep flowing.

use std::collections::HashMap;

use msgstore::sim::{MemDisk, sample_message};
use msgstore::{Compression, Config, Event, FileHandle, FileOp, Store};

#[test]
fn each_turn_stays_within_the_io_budget_while_appends_are_acked() {
    let step = 8 * 1024;
    let config = Config {
        segment_bytes: 1 << 20,
        memtable_bytes: 64 * 1024,
        block_cache_bytes: 1 << 20,
        compression: Compression::None,
        step_io_bytes: step,
        auto_compact: true,
    };
    let mut store = Store::new(config);
    let mut disk = MemDisk::new(5);
    store.open();
    let mut names: HashMap<FileHandle, String> = HashMap::new();
    let (mut flushes, mut compactions, mut acks, mut max_turn_bytes) = (0, 0, 0, 0usize);
    let mut backpressured = 0;
    let mut id = 900_000_000_000u64 << 22;
    for turn in 0..3000u64 {
        if store.is_open() {
            for _ in 0..4 {
                id += 1 << 22;
                match store.append(id, sample_message(turn % 7, id)) {
                    Ok(()) => {}
                    Err(msgstore::StoreError::Backpressure) => backpressured += 1,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        store.end_of_turn();
        // The whole turn, completions and their follow-ups included, runs synchronously here.
        let mut turn_bytes = 0;
        while let Some(r) = store.poll_io() {
            let sst = |h: &FileHandle| names.get(h).is_some_and(|n| n.ends_with(".sst"));
            match &r.op {
                FileOp::Open { handle, name, .. } => {
                    names.insert(*handle, name.clone());
                }
                FileOp::Write { handle, data, .. } if sst(handle) => turn_bytes += data.len(),
                FileOp::Read { handle, len, .. } if sst(handle) && store.is_open() => {
                    turn_bytes += *len
                }
                _ => {}
            }
            let res = disk.execute(r.op);
            store.complete_io(r.id, res);
        }
        max_turn_bytes = max_turn_bytes.max(turn_bytes);
        while let Some(e) = store.poll_event() {
            match e {
                Event::Acked { .. } => acks += 1,
                Event::Flushed { .. } => flushes += 1,
                Event::Compacted { .. } => compactions += 1,
                Event::Error(e) | Event::Failed { error: e, .. } => panic!("{e}"),
                _ => {}
            }
        }
    }
    assert!(
        flushes >= 5 && compactions >= 1,
        "flushes {flushes} compactions {compactions}"
    );
    assert!(
        max_turn_bytes <= step,
        "a turn issued {max_turn_bytes} bytes of background i/o"
    );
    assert!(acks > 10_000, "acks {acks}, pushed back {backpressured}");
}
