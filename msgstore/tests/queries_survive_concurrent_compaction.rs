//! Queries waiting on block reads while a compaction replaces their files still answer
//! correctly, and the replaced files are removed only once no read uses them.

use msgstore::sim::{CrashMode, Harness, sample_message};
use msgstore::{Compression, Config, Event, Message, Query, QueryResult};

#[test]
fn queries_in_flight_across_a_compaction_answer_correctly() {
    let config = Config {
        segment_bytes: 128 * 1024,
        memtable_bytes: 8 * 1024,
        block_cache_bytes: 4 * 1024,
        compression: Compression::Lz4,
        step_io_bytes: 4096,
        auto_compact: false,
    };
    let mut h = Harness::new(config, 21);
    let mut all: Vec<Message> = Vec::new();
    for i in 0..1500u64 {
        let id = (660_000_000_000 + i * 1000) << 22;
        let m = sample_message(i % 4, id);
        h.store.append(i, m.clone()).expect("append");
        all.push(m);
        if i % 25 == 0 {
            h.settle();
        }
    }
    h.settle();
    assert!(h.store.live_files().len() > 10);
    h.crash_and_reopen(CrashMode::LoseUnsynced);
    h.events.clear();
    let mut expected = Vec::new();
    for (t, m) in all.iter().step_by(37).enumerate() {
        let t = t as u64;
        if t.is_multiple_of(2) {
            h.store
                .query(
                    t,
                    Query::ById {
                        channel_id: m.channel_id,
                        message_id: m.id,
                    },
                )
                .expect("query");
            expected.push((t, QueryResult::Message(Some(m.clone()))));
        } else {
            h.store
                .query(
                    t,
                    Query::Before {
                        channel_id: m.channel_id,
                        before: m.id,
                        limit: 10,
                    },
                )
                .expect("query");
            let want: Vec<Message> = all
                .iter()
                .rev()
                .filter(|x| x.channel_id == m.channel_id && x.id < m.id)
                .take(10)
                .cloned()
                .collect();
            expected.push((t, QueryResult::Messages(want)));
        }
    }
    h.store.compact();
    for _ in 0..3 {
        h.turn();
    }
    h.store.compact();
    h.settle();
    for (t, want) in expected {
        let got = h.events.iter().find_map(|e| match e {
            Event::QueryDone { token, result } if *token == t => Some(result.clone()),
            _ => None,
        });
        assert_eq!(got, Some(Ok(want)), "query {t}");
    }
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, Event::Compacted { .. }))
    );
    let live = h.store.live_files();
    let on_disk = h
        .disk
        .names()
        .into_iter()
        .filter(|n| n.ends_with(".sst"))
        .count();
    assert_eq!(on_disk, live.len(), "retired files removed once unused");
}
