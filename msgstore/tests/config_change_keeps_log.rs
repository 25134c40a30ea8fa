//! Reopening with a smaller segment size still replays every record of the older, larger
//! segments: recovery reads a segment until its end, not `segment_bytes`.

use msgstore::sim::{CrashMode, Harness, sample_message};
use msgstore::{Config, Event, Query, QueryResult};

#[test]
fn smaller_segment_size_after_restart_replays_everything() {
    let big = Config {
        segment_bytes: 4 << 20,
        memtable_bytes: 64 << 20,
        auto_compact: false,
        ..Config::default()
    };
    let mut h = Harness::new(big, 11);
    let n = 8000u64;
    for i in 0..n {
        let id = (650_000_000_000 + i) << 22;
        h.store.append(i, sample_message(4, id)).expect("append");
        if i % 50 == 0 {
            h.settle();
        }
    }
    h.settle();
    let acked = h
        .events
        .iter()
        .filter(|e| matches!(e, Event::Acked { .. }))
        .count();
    assert_eq!(acked as u64, n);
    let log_bytes: usize = h
        .disk
        .names()
        .iter()
        .filter(|n| n.ends_with(".log"))
        .filter_map(|n| h.disk.contents(n))
        .map(|c| c.iter().rposition(|b| *b != 0).unwrap_or(0))
        .sum();
    assert!(
        log_bytes > 1100 * 1024,
        "the log must outgrow the small segment size ({log_bytes})"
    );
    // Reopen with the smallest segment size.
    let mut h2 = Harness::with_disk(
        Config {
            segment_bytes: 128 * 1024,
            ..big
        },
        std::mem::replace(&mut h.disk, msgstore::sim::MemDisk::new(0)),
        12,
    );
    h2.crash_and_reopen(CrashMode::LoseUnsynced);
    assert!(h2.store.is_open());
    assert!(
        h2.events.contains(&Event::Opened {
            replayed: n as usize
        }),
        "{:?}",
        h2.events
    );
    h2.store
        .query(
            1,
            Query::ById {
                channel_id: 4,
                message_id: 650_000_000_000 << 22,
            },
        )
        .expect("query");
    h2.settle();
    let first = sample_message(4, 650_000_000_000 << 22);
    assert!(h2.events.contains(&Event::QueryDone {
        token: 1,
        result: Ok(QueryResult::Message(Some(first)))
    }));
}
