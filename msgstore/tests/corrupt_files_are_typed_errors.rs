//! A corrupt sorted file or manifest is a typed error naming the file, never a silent skip.

use msgstore::io::{MANIFEST_NAME, sst_name};
use msgstore::sim::{CrashMode, Harness, sample_message};
use msgstore::{Config, Event, Query, StoreError};

fn filled() -> (Harness, String) {
    let mut h = Harness::new(
        Config {
            auto_compact: false,
            ..Config::default()
        },
        3,
    );
    for i in 0..200u64 {
        let id = (700_000_000_000 + i) << 22;
        h.store.append(i, sample_message(9, id)).expect("append");
        if i % 10 == 0 {
            h.settle();
        }
    }
    h.store.flush();
    h.settle();
    let files = h.store.live_files();
    assert_eq!(files.len(), 1);
    (h, sst_name(files[0]))
}

#[test]
fn corrupt_data_block_fails_the_query_naming_the_file() {
    let (mut h, name) = filled();
    h.crash_and_reopen(CrashMode::LoseUnsynced);
    assert!(h.store.is_open());
    h.disk.corrupt(&name, 20, 0x10);
    h.events.clear();
    h.store
        .query(
            1,
            Query::Latest {
                channel_id: 9,
                limit: 50,
            },
        )
        .expect("query");
    h.settle();
    let done = h.events.iter().find_map(|e| match e {
        Event::QueryDone { token: 1, result } => Some(result.clone()),
        _ => None,
    });
    match done {
        Some(Err(StoreError::CorruptFile { file, .. })) => assert_eq!(file, name),
        other => panic!("expected a corrupt-file error, got {other:?}"),
    }
}

#[test]
fn corrupt_footer_stops_recovery_naming_the_file() {
    let (mut h, name) = filled();
    let len = h.disk.contents(&name).map_or(0, <[u8]>::len);
    h.disk.corrupt(&name, len - 10, 0x01);
    h.crash_and_reopen(CrashMode::LoseUnsynced);
    assert!(!h.store.is_open());
    assert!(
        matches!(h.store.failure(), Some(StoreError::CorruptFile { file, .. }) if *file == name)
    );
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, Event::Error(StoreError::CorruptFile { .. })))
    );
    assert_eq!(
        h.store.append(1, sample_message(9, 1 << 22)),
        Err(StoreError::NotOpen)
    );
}

#[test]
fn corrupt_manifest_stops_recovery_naming_it() {
    let (mut h, _) = filled();
    h.disk.corrupt(MANIFEST_NAME, 30, 0x80);
    h.crash_and_reopen(CrashMode::LoseUnsynced);
    assert!(
        matches!(h.store.failure(), Some(StoreError::CorruptFile { file, .. }) if file == MANIFEST_NAME)
    );
}
