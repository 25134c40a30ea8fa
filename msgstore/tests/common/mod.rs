//! Shared helpers for the integration tests.
#![allow(dead_code)]

use msgstore::sim::Harness;
use msgstore::{Compression, Config, Event, Message, Query, QueryResult};

/// A configuration small enough that flushes, rollovers, cache misses and compactions happen
/// within a few hundred writes.
pub fn small_config() -> Config {
    Config {
        segment_bytes: 128 * 1024,
        memtable_bytes: 6 * 1024,
        block_cache_bytes: 24 * 1024,
        compression: Compression::Lz4,
        step_io_bytes: 4096,
        auto_compact: true,
    }
}

/// A message with deterministic content derived from its id.
pub fn message(channel_id: u64, id: u64, version: u32) -> Message {
    Message {
        id,
        channel_id,
        guild_id: 7,
        author_id: id % 5 + 1,
        kind: 0,
        content: format!(
            "message {id} v{version} {}",
            "lorem ipsum ".repeat((id % 7) as usize)
        ),
        flags: 0,
        edited_timestamp_ms: (version > 0).then_some(u64::from(version)),
        mentions: vec![id % 3 + 1],
        extra_json: if id.is_multiple_of(4) {
            b"{\"embeds\":[]}".to_vec()
        } else {
            Vec::new()
        },
        reactions: if version > 1 {
            vec![("👍".into(), version)]
        } else {
            Vec::new()
        },
        pinned: id.is_multiple_of(5) && version.is_multiple_of(2),
        referenced_message_id: None,
        nonce: Some(format!("{id}")),
    }
}

/// Runs a query to completion and returns its result.
pub fn run_query(h: &mut Harness, token: u64, q: Query) -> QueryResult {
    h.store.query(token, q.clone()).expect("query accepted");
    for _ in 0..100_000 {
        if let Some(pos) = h
            .events
            .iter()
            .position(|e| matches!(e, Event::QueryDone { token: t, .. } if *t == token))
        {
            let Event::QueryDone { result, .. } = h.events.remove(pos) else {
                unreachable!()
            };
            return result.unwrap_or_else(|e| panic!("query {q:?} failed: {e}"));
        }
        h.turn();
    }
    panic!("query {q:?} never finished");
}

/// Every live message of a channel, newest first, by paging with `Before`.
pub fn scan_channel(h: &mut Harness, channel_id: u64, token: &mut u64) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    let mut before = u64::MAX;
    loop {
        *token += 1;
        let QueryResult::Messages(page) = run_query(
            h,
            *token,
            Query::Before {
                channel_id,
                before,
                limit: 100,
            },
        ) else {
            panic!("wrong result kind")
        };
        let Some(last) = page.last() else { return out };
        before = last.id;
        out.extend(page);
    }
}
