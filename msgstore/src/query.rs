//! Queries and their evaluation over a merged view of memtables and sorted files.
//!
//! Evaluation is pure over a `Source`; when the source lacks a block it says so and the store
//! reads it, then evaluates again. Message lists come newest first.

use std::collections::BTreeMap;

use crate::limits::{PINS_MAX, QUERY_LIMIT_MAX, UNREAD_COUNT_MAX};
use crate::message::{Message, PartitionKey, ReadState};
use crate::snowflake::bucket_of;

/// A read request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// The newest `limit` messages.
    Latest {
        /// Channel.
        channel_id: u64,
        /// 1..=100.
        limit: usize,
    },
    /// Up to `limit` messages with id < `before`, nearest first.
    Before {
        /// Channel.
        channel_id: u64,
        /// Exclusive bound.
        before: u64,
        /// 1..=100.
        limit: usize,
    },
    /// Up to `limit` messages with id > `after`, the nearest ones.
    After {
        /// Channel.
        channel_id: u64,
        /// Exclusive bound.
        after: u64,
        /// 1..=100.
        limit: usize,
    },
    /// Up to `limit` messages around `around`: half newer, the rest at or older.
    Around {
        /// Channel.
        channel_id: u64,
        /// Center.
        around: u64,
        /// 1..=100.
        limit: usize,
    },
    /// One message.
    ById {
        /// Channel.
        channel_id: u64,
        /// Message id.
        message_id: u64,
    },
    /// Pinned messages of a channel, newest first.
    Pins {
        /// Channel.
        channel_id: u64,
    },
    /// A user's read state in a channel and the unread count.
    ReadState {
        /// Reader.
        user_id: u64,
        /// Channel.
        channel_id: u64,
    },
}

/// Answer to a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryResult {
    /// Message list, newest first.
    Messages(Vec<Message>),
    /// A single message, if it exists.
    Message(Option<Message>),
    /// Read state (None if never acked) and unread messages after it, capped at
    /// `UNREAD_COUNT_MAX`. Mention count is the stored one.
    ReadState {
        /// Stored state.
        state: Option<ReadState>,
        /// Live messages newer than `last_read_id`.
        unread_count: u32,
    },
}

/// Marker: the source lacks blocks; it has recorded which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missing;

/// A merged view the evaluator reads.
pub trait Source {
    /// Buckets holding data of `channel_id`, ascending.
    fn buckets(&self, channel_id: u64) -> Vec<u32>;
    /// Live rows of partition `p` with ids in `[lo, hi]`.
    fn rows(
        &mut self,
        p: PartitionKey,
        lo: u64,
        hi: u64,
    ) -> Result<BTreeMap<u64, Message>, Missing>;
    /// Newest read state.
    fn read_state(&mut self, user_id: u64, channel_id: u64) -> Result<Option<ReadState>, Missing>;
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// Limit outside 1..=100.
    #[error("limit must be 1..=100")]
    Limit,
}

/// Checks a query's arguments.
pub fn validate(q: &Query) -> Result<(), QueryError> {
    match q {
        Query::Latest { limit, .. }
        | Query::Before { limit, .. }
        | Query::After { limit, .. }
        | Query::Around { limit, .. }
            if *limit == 0 || *limit > QUERY_LIMIT_MAX =>
        {
            Err(QueryError::Limit)
        }
        _ => Ok(()),
    }
}

/// Walks buckets newest first collecting rows in `[lo, hi]` that pass `keep`, until `limit`.
fn collect_desc(
    src: &mut dyn Source,
    channel_id: u64,
    lo: u64,
    hi: u64,
    limit: usize,
    keep: &dyn Fn(&Message) -> bool,
) -> Result<Vec<Message>, Missing> {
    let mut out = Vec::new();
    let (blo, bhi) = (bucket_of(lo), bucket_of(hi));
    for b in src
        .buckets(channel_id)
        .into_iter()
        .rev()
        .filter(|b| *b >= blo && *b <= bhi)
    {
        let rows = src.rows(
            PartitionKey {
                channel_id,
                bucket: b,
            },
            lo,
            hi,
        )?;
        for m in rows.into_values().rev().filter(|m| keep(m)) {
            if out.len() == limit {
                return Ok(out);
            }
            out.push(m);
        }
    }
    Ok(out)
}

/// Oldest first from `lo`, up to `limit`, returned newest first.
fn collect_asc(
    src: &mut dyn Source,
    channel_id: u64,
    lo: u64,
    limit: usize,
) -> Result<Vec<Message>, Missing> {
    let mut out = Vec::new();
    let blo = bucket_of(lo);
    'outer: for b in src.buckets(channel_id).into_iter().filter(|b| *b >= blo) {
        let rows = src.rows(
            PartitionKey {
                channel_id,
                bucket: b,
            },
            lo,
            u64::MAX,
        )?;
        for m in rows.into_values() {
            if out.len() == limit {
                break 'outer;
            }
            out.push(m);
        }
    }
    out.reverse();
    Ok(out)
}

/// Evaluates `q`; `Err(Missing)` means read the recorded blocks and call again.
pub fn evaluate(q: &Query, src: &mut dyn Source) -> Result<QueryResult, Missing> {
    let all = |_: &Message| true;
    Ok(match *q {
        Query::Latest { channel_id, limit } => {
            QueryResult::Messages(collect_desc(src, channel_id, 0, u64::MAX, limit, &all)?)
        }
        Query::Before {
            channel_id,
            before,
            limit,
        } => {
            if before == 0 {
                return Ok(QueryResult::Messages(Vec::new()));
            }
            QueryResult::Messages(collect_desc(src, channel_id, 0, before - 1, limit, &all)?)
        }
        Query::After {
            channel_id,
            after,
            limit,
        } => QueryResult::Messages(if after == u64::MAX {
            Vec::new()
        } else {
            collect_asc(src, channel_id, after + 1, limit)?
        }),
        Query::Around {
            channel_id,
            around,
            limit,
        } => {
            let newer = if around == u64::MAX {
                Vec::new()
            } else {
                collect_asc(src, channel_id, around + 1, limit / 2)?
            };
            let older = collect_desc(src, channel_id, 0, around, limit - newer.len(), &all)?;
            let mut v = newer;
            v.extend(older);
            QueryResult::Messages(v)
        }
        Query::ById {
            channel_id,
            message_id,
        } => {
            let mut rows = src.rows(
                PartitionKey::of(channel_id, message_id),
                message_id,
                message_id,
            )?;
            QueryResult::Message(rows.remove(&message_id))
        }
        Query::Pins { channel_id } => {
            let pinned = |m: &Message| m.pinned;
            QueryResult::Messages(collect_desc(
                src,
                channel_id,
                0,
                u64::MAX,
                PINS_MAX,
                &pinned,
            )?)
        }
        Query::ReadState {
            user_id,
            channel_id,
        } => {
            let state = src.read_state(user_id, channel_id)?;
            let last = state.map_or(0, |s| s.last_read_id);
            let unread = if last == u64::MAX {
                0
            } else {
                collect_desc(
                    src,
                    channel_id,
                    last + 1,
                    u64::MAX,
                    UNREAD_COUNT_MAX as usize,
                    &all,
                )?
                .len()
            };
            QueryResult::ReadState {
                state,
                unread_count: unread as u32,
            }
        }
    })
}
