//! Every append of one loop turn goes out as one aligned durable write (the write and its
//! fdatasync as one operation), and is acknowledged only after it completes.

use msgstore::limits::IO_ALIGN_BYTES;
use msgstore::sim::{MemDisk, sample_message};
use msgstore::{Config, Event, FileOp, IoRequest, Store};

fn drain(store: &mut Store) -> Vec<IoRequest> {
    std::iter::from_fn(|| store.poll_io()).collect()
}

fn acks(store: &mut Store) -> usize {
    std::iter::from_fn(|| store.poll_event())
        .filter(|e| matches!(e, Event::Acked { .. }))
        .count()
}

/// Runs requests until only the group's durable write is pending; returns it.
fn run_until_write(store: &mut Store, disk: &mut MemDisk) -> IoRequest {
    for _ in 0..100 {
        for r in drain(store) {
            if matches!(r.op, FileOp::WriteDurable { .. }) {
                assert!(
                    store.poll_io().is_none(),
                    "nothing else issued with the group write"
                );
                return r;
            }
            let res = disk.execute(r.op);
            store.complete_io(r.id, res);
        }
        store.end_of_turn();
    }
    panic!("no group write");
}

#[test]
fn one_turn_one_durable_write() {
    let mut disk = MemDisk::new(1);
    let mut store = Store::new(Config {
        auto_compact: false,
        ..Config::default()
    });
    store.open();
    for _ in 0..10 {
        for r in drain(&mut store) {
            let res = disk.execute(r.op);
            store.complete_io(r.id, res);
        }
    }
    assert!(store.is_open());
    let mut prev_end = 0u64;
    for (turn, n) in [(0u64, 10u64), (1, 3), (2, 40)] {
        for i in 0..n {
            let id = ((600_000_000_000 + turn * 1000 + i) << 22) | 1;
            store.append(id, sample_message(5, id)).expect("append");
        }
        store.end_of_turn();
        let w = run_until_write(&mut store, &mut disk);
        let FileOp::WriteDurable {
            offset, ref data, ..
        } = w.op
        else {
            unreachable!()
        };
        assert_eq!(offset % IO_ALIGN_BYTES as u64, 0, "aligned offset");
        assert_eq!(data.len() % IO_ALIGN_BYTES, 0, "aligned length");
        // The tail block of the previous group is rewritten, never skipped.
        assert_eq!(offset, prev_end - prev_end % IO_ALIGN_BYTES as u64);
        prev_end = offset
            + data
                .iter()
                .rposition(|b| *b != 0)
                .map_or(0, |p| p as u64 + 1);
        // No ack while the durable write is in flight, even across turns.
        store.end_of_turn();
        assert_eq!(acks(&mut store), 0, "no ack before the write is durable");
        assert!(drain(&mut store).is_empty(), "one group in flight");
        let res = disk.execute(w.op);
        store.complete_io(w.id, res);
        assert_eq!(
            acks(&mut store),
            n as usize,
            "whole group acknowledged together"
        );
        assert!(drain(&mut store).is_empty(), "no fdatasync of its own");
    }
}
