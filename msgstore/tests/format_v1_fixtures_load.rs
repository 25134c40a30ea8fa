//! Files written by format v1 (committed under tests/fixtures/v1) still load and read back.
//! Regenerate with `MSGSTORE_WRITE_FIXTURES=1 cargo test -p msgstore --test format_v1_fixtures_load`
//! only when introducing a new format version (then add a new directory, keep the old one).

use std::collections::BTreeMap;
use std::path::PathBuf;

use msgstore::sim::{Harness, MemDisk, sample_message};
use msgstore::{Compression, Config, Message, Query, QueryResult, ReadState};

fn config(compression: Compression) -> Config {
    Config {
        segment_bytes: 128 * 1024,
        memtable_bytes: 1 << 20,
        block_cache_bytes: 1 << 20,
        compression,
        step_io_bytes: 1 << 20,
        auto_compact: false,
    }
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

const CHANNELS: [u64; 2] = [11, 12];

/// The dataset: (expected messages by (channel, id), read state).
fn expected() -> (BTreeMap<(u64, u64), Message>, ReadState) {
    let mut m = BTreeMap::new();
    for i in 0..300u64 {
        let ch = CHANNELS[(i % 2) as usize];
        let id = (800_000_000_000 + i * 5_000_000) << 22;
        let mut msg = sample_message(ch, id);
        if i % 17 == 0 {
            msg.content = format!("edited {i}");
            msg.edited_timestamp_ms = Some(i);
        }
        if i % 23 != 5 {
            m.insert((ch, id), msg);
        }
    }
    let rs = ReadState {
        user_id: 3,
        channel_id: 11,
        last_read_id: (800_000_000_000 + 100 * 5_000_000) << 22,
        mention_count: 2,
    };
    (m, rs)
}

fn generate() {
    let mut h = Harness::new(config(Compression::Lz4), 1);
    let mut token = 0;
    // First half with lz4 blocks, flushed; the rest stays in the commit log.
    for i in 0..300u64 {
        let ch = CHANNELS[(i % 2) as usize];
        let id = (800_000_000_000 + i * 5_000_000) << 22;
        token += 1;
        h.store
            .append(token, sample_message(ch, id))
            .expect("append");
        if i % 17 == 0 {
            let mut e = sample_message(ch, id);
            e.content = format!("edited {i}");
            e.edited_timestamp_ms = Some(i);
            token += 1;
            h.store.edit(token, e).expect("edit");
        }
        if i % 23 == 5 {
            token += 1;
            h.store.delete(token, ch, id, 1).expect("delete");
        }
        h.settle();
        if i == 150 {
            h.store.flush();
            h.settle();
        }
    }
    let (_, rs) = expected();
    h.store.ack_read(token + 1, rs).expect("ack");
    h.settle();
    std::fs::create_dir_all(dir()).expect("fixture dir");
    for name in h.disk.names() {
        std::fs::write(
            dir().join(&name),
            h.disk.contents(&name).unwrap_or_default(),
        )
        .expect("write fixture");
    }
}

#[test]
fn v1_fixture_files_load_and_read_back() {
    if std::env::var_os("MSGSTORE_WRITE_FIXTURES").is_some() {
        generate();
    }
    let mut disk = MemDisk::new(9);
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir()).expect("fixtures present") {
        let e = e.expect("entry");
        let name = e.file_name().into_string().expect("utf-8 name");
        disk.insert_file(&name, std::fs::read(e.path()).expect("read fixture"));
        names.push(name);
    }
    assert!(names.iter().any(|n| n == "MANIFEST"));
    assert!(
        names.iter().any(|n| n.ends_with(".sst")),
        "a sorted file is part of the fixture"
    );
    assert!(
        names.iter().any(|n| n.ends_with(".log")),
        "a log segment is part of the fixture"
    );
    let mut h = Harness::with_disk(config(Compression::None), disk, 9);
    assert!(h.store.is_open(), "{:?}", h.store.failure());
    let (msgs, rs) = expected();
    let mut token = 0;
    for ch in CHANNELS {
        let want: Vec<Message> = msgs
            .range((ch, 0)..=(ch, u64::MAX))
            .rev()
            .map(|(_, m)| m.clone())
            .collect();
        let mut got = Vec::new();
        let mut before = u64::MAX;
        loop {
            token += 1;
            h.store
                .query(
                    token,
                    Query::Before {
                        channel_id: ch,
                        before,
                        limit: 100,
                    },
                )
                .expect("query");
            h.settle();
            let page = h.events.iter().find_map(|e| match e {
                msgstore::Event::QueryDone {
                    token: t,
                    result: Ok(QueryResult::Messages(m)),
                } if *t == token => Some(m.clone()),
                _ => None,
            });
            let page = page.expect("query answered");
            let Some(last) = page.last() else { break };
            before = last.id;
            got.extend(page);
        }
        assert_eq!(got, want);
    }
    token += 1;
    h.store
        .query(
            token,
            Query::ReadState {
                user_id: 3,
                channel_id: 11,
            },
        )
        .expect("query");
    h.settle();
    let unread = msgs
        .range((11, rs.last_read_id + 1)..=(11, u64::MAX))
        .count() as u32;
    let want = msgstore::Event::QueryDone {
        token,
        result: Ok(QueryResult::ReadState {
            state: Some(rs),
            unread_count: unread,
        }),
    };
    assert!(h.events.contains(&want), "{:?}", h.events);
}
