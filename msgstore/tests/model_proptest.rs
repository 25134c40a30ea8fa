//! Random appends, edits, deletes, read acks, queries, flushes, compactions and restarts
//! against an in-memory model: every query answer must equal the model's.

mod common;

use std::collections::BTreeMap;

use common::{message, run_query, small_config};
use msgstore::limits::{PINS_MAX, UNREAD_COUNT_MAX};
use msgstore::sim::{CrashMode, Harness};
use msgstore::{Event, Message, Query, QueryResult, ReadState};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        channel: u64,
        gap_ms: u64,
        n: usize,
    },
    Edit {
        pick: usize,
    },
    Delete {
        pick: usize,
    },
    AckRead {
        user: u64,
        channel: u64,
        pick: usize,
        mentions: u32,
    },
    Query {
        kind: u8,
        channel: u64,
        pick: usize,
        limit: usize,
    },
    Flush,
    Compact,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3u64, prop_oneof![3 => 1..5_000u64, 1 => 300_000_000..1_500_000_000u64], 1..6usize)
            .prop_map(|(channel, gap_ms, n)| Op::Append { channel, gap_ms, n }),
        2 => any::<usize>().prop_map(|pick| Op::Edit { pick }),
        2 => any::<usize>().prop_map(|pick| Op::Delete { pick }),
        1 => (0..2u64, 0..3u64, any::<usize>(), 0..5u32)
            .prop_map(|(user, channel, pick, mentions)| Op::AckRead { user, channel, pick, mentions }),
        5 => (0..7u8, 0..3u64, any::<usize>(), 1..=100usize)
            .prop_map(|(kind, channel, pick, limit)| Op::Query { kind, channel, pick, limit }),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Restart),
    ]
}

#[derive(Default)]
struct Model {
    msgs: BTreeMap<(u64, u64), Message>,
    reads: BTreeMap<(u64, u64), ReadState>,
    ids: Vec<(u64, u64)>,
    versions: BTreeMap<u64, u32>,
}

impl Model {
    fn channel_desc(&self, ch: u64) -> Vec<Message> {
        self.msgs
            .range((ch, 0)..=(ch, u64::MAX))
            .rev()
            .map(|(_, m)| m.clone())
            .collect()
    }

    fn answer(&self, q: &Query) -> QueryResult {
        match *q {
            Query::Latest { channel_id, limit } => QueryResult::Messages(
                self.channel_desc(channel_id)
                    .into_iter()
                    .take(limit)
                    .collect(),
            ),
            Query::Before {
                channel_id,
                before,
                limit,
            } => QueryResult::Messages(
                self.channel_desc(channel_id)
                    .into_iter()
                    .filter(|m| m.id < before)
                    .take(limit)
                    .collect(),
            ),
            Query::After {
                channel_id,
                after,
                limit,
            } => {
                let mut v: Vec<Message> = self
                    .channel_desc(channel_id)
                    .into_iter()
                    .rev()
                    .filter(|m| m.id > after)
                    .take(limit)
                    .collect();
                v.reverse();
                QueryResult::Messages(v)
            }
            Query::Around {
                channel_id,
                around,
                limit,
            } => {
                let mut newer: Vec<Message> = self
                    .channel_desc(channel_id)
                    .into_iter()
                    .rev()
                    .filter(|m| m.id > around)
                    .take(limit / 2)
                    .collect();
                newer.reverse();
                let rest = limit - newer.len();
                newer.extend(
                    self.channel_desc(channel_id)
                        .into_iter()
                        .filter(|m| m.id <= around)
                        .take(rest),
                );
                QueryResult::Messages(newer)
            }
            Query::ById {
                channel_id,
                message_id,
            } => QueryResult::Message(self.msgs.get(&(channel_id, message_id)).cloned()),
            Query::Pins { channel_id } => QueryResult::Messages(
                self.channel_desc(channel_id)
                    .into_iter()
                    .filter(|m| m.pinned)
                    .take(PINS_MAX)
                    .collect(),
            ),
            Query::ReadState {
                user_id,
                channel_id,
            } => {
                let state = self.reads.get(&(user_id, channel_id)).copied();
                let last = state.map_or(0, |s| s.last_read_id);
                let unread = self
                    .channel_desc(channel_id)
                    .iter()
                    .filter(|m| m.id > last)
                    .count();
                QueryResult::ReadState {
                    state,
                    unread_count: unread.min(UNREAD_COUNT_MAX as usize) as u32,
                }
            }
        }
    }
}

/// Waits for the acks of `tokens`; every one must be acknowledged.
fn expect_acks(h: &mut Harness, tokens: &[u64]) {
    h.settle();
    for t in tokens {
        let pos = h
            .events
            .iter()
            .position(|e| *e == Event::Acked { token: *t });
        assert!(pos.is_some(), "token {t} not acked; events {:?}", h.events);
        if let Some(p) = pos {
            h.events.remove(p);
        }
    }
}

fn run(ops: Vec<Op>, seed: u64) {
    let mut h = Harness::new(small_config(), seed);
    assert!(h.store.is_open());
    let mut model = Model::default();
    let mut ts: u64 = 300_000_000_000;
    let mut seq: u64 = 0;
    let mut token: u64 = 0;
    let mut now = 1_000u64;
    for op in ops {
        now += 1000;
        match op {
            Op::Append { channel, gap_ms, n } => {
                let mut tokens = Vec::new();
                for _ in 0..n {
                    ts += gap_ms;
                    seq += 1;
                    let id = (ts << 22) | (seq & 0xfff);
                    let m = message(channel, id, 0);
                    token += 1;
                    h.store.append(token, m.clone()).expect("append accepted");
                    tokens.push(token);
                    model.msgs.insert((channel, id), m);
                    model.ids.push((channel, id));
                }
                expect_acks(&mut h, &tokens);
            }
            Op::Edit { pick } if !model.ids.is_empty() => {
                let (ch, id) = model.ids[pick % model.ids.len()];
                let v = model.versions.entry(id).or_default();
                *v += 1;
                let m = message(ch, id, *v);
                token += 1;
                h.store.edit(token, m.clone()).expect("edit accepted");
                expect_acks(&mut h, &[token]);
                model.msgs.insert((ch, id), m);
            }
            Op::Delete { pick } if !model.ids.is_empty() => {
                let (ch, id) = model.ids[pick % model.ids.len()];
                token += 1;
                h.store.delete(token, ch, id, now).expect("delete accepted");
                expect_acks(&mut h, &[token]);
                model.msgs.remove(&(ch, id));
            }
            Op::AckRead {
                user,
                channel,
                pick,
                mentions,
            } => {
                let last_read_id = model
                    .ids
                    .get(pick % model.ids.len().max(1))
                    .map_or(0, |x| x.1);
                let rs = ReadState {
                    user_id: user,
                    channel_id: channel,
                    last_read_id,
                    mention_count: mentions,
                };
                token += 1;
                h.store.ack_read(token, rs).expect("ack_read accepted");
                expect_acks(&mut h, &[token]);
                model.reads.insert((user, channel), rs);
            }
            Op::Query {
                kind,
                channel,
                pick,
                limit,
            } => {
                let id = model
                    .ids
                    .get(pick % model.ids.len().max(1))
                    .map_or(pick as u64, |x| x.1);
                let q = match kind {
                    0 => Query::Latest {
                        channel_id: channel,
                        limit,
                    },
                    1 => Query::Before {
                        channel_id: channel,
                        before: id,
                        limit,
                    },
                    2 => Query::After {
                        channel_id: channel,
                        after: id,
                        limit,
                    },
                    3 => Query::Around {
                        channel_id: channel,
                        around: id,
                        limit,
                    },
                    4 => Query::ById {
                        channel_id: channel,
                        message_id: id,
                    },
                    5 => Query::Pins {
                        channel_id: channel,
                    },
                    _ => Query::ReadState {
                        user_id: (pick % 2) as u64,
                        channel_id: channel,
                    },
                };
                token += 1;
                let got = run_query(&mut h, token, q.clone());
                assert_eq!(got, model.answer(&q), "query {q:?}");
            }
            Op::Flush => {
                h.store.flush();
                h.settle();
            }
            Op::Compact => {
                h.store
                    .set_now(now + 2 * msgstore::limits::TOMBSTONE_TTL_MS);
                h.store.compact();
                h.settle();
            }
            Op::Restart => {
                h.crash_and_reopen(CrashMode::LoseUnsynced);
                assert!(h.store.is_open(), "reopen failed: {:?}", h.store.failure());
            }
            _ => {}
        }
        assert!(
            !h.events
                .iter()
                .any(|e| matches!(e, Event::Error(_) | Event::Failed { .. })),
            "unexpected error: {:?}",
            h.events
        );
        h.events.retain(|e| matches!(e, Event::QueryDone { .. }));
    }
    // Final full check of every channel.
    for ch in 0..3 {
        token += 1;
        let q = Query::Latest {
            channel_id: ch,
            limit: 100,
        };
        assert_eq!(run_query(&mut h, token, q.clone()), model.answer(&q));
        let mut t = token;
        let all = common::scan_channel(&mut h, ch, &mut t);
        token = t;
        assert_eq!(all, model.channel_desc(ch));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..160), seed in any::<u64>()) {
        run(ops, seed);
    }
}
