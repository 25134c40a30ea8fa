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

/// Encoding and compressing a flush's file is spread over turns too: with a budget of `step`
/// bytes per turn, a memtable of many times that takes many turns before its file is created,
/// instead of one long turn.
#[test]
fn a_flush_builds_its_file_over_many_turns() {
    let step = 8 * 1024;
    let config = Config {
        segment_bytes: 1 << 20,
        memtable_bytes: 1 << 20,
        block_cache_bytes: 1 << 20,
        compression: Compression::Lz4,
        step_io_bytes: step,
        auto_compact: false,
    };
    let mut store = Store::new(config);
    let mut disk = MemDisk::new(9);
    store.open();
    let mut run = |store: &mut Store| {
        let mut sst_created = false;
        while let Some(r) = store.poll_io() {
            if let FileOp::Open { name, .. } = &r.op {
                sst_created |= name.ends_with(".sst");
            }
            let res = disk.execute(r.op);
            store.complete_io(r.id, res);
        }
        sst_created
    };
    for _ in 0..5 {
        run(&mut store);
        store.end_of_turn();
    }
    assert!(store.is_open());
    let mut id = 900_000_000_000u64 << 22;
    let mut raw = 0usize;
    for _ in 0..400 {
        id += 1 << 22;
        let m = sample_message(id % 13, id);
        raw += m.content.len() + 60;
        store.append(id, m).expect("append");
    }
    store.end_of_turn();
    run(&mut store);
    store.flush();
    let mut turns = 0;
    loop {
        store.end_of_turn();
        turns += 1;
        if run(&mut store) {
            break;
        }
        assert!(turns < 10_000, "the flush never created its file");
    }
    assert!(
        turns >= raw / step / 2,
        "the file was built in {turns} turns for ~{raw} bytes at {step} per turn"
    );
    let mut flushed = false;
    for _ in 0..1000 {
        store.end_of_turn();
        run(&mut store);
        while let Some(e) = store.poll_event() {
            flushed |= matches!(e, Event::Flushed { .. });
        }
    }
    assert!(flushed, "the flush completed");
}
