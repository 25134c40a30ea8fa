//! REST rate limits, sans-IO: the caller passes `now_ms` (Unix milliseconds, wall clock, since the
//! reset headers are epoch times) and gets either the headers for the answer or a 429.
//!
//! # Model
//! Fixed windows, as Discord's headers describe them: a bucket allows `limit` requests per window;
//! the first request after the window ended opens a new one ending `window_ms` later. Two checks
//! per request:
//! - the route's bucket, keyed by (user, [`Bucket`], major parameter): limits on one channel or
//!   guild never spill over to another;
//! - the user's global limit ([`GLOBAL_LIMIT`] per [`GLOBAL_WINDOW_MS`]) across all routes.
//!
//! The global limit is checked first. A refused request consumes nothing.
//!
//! # Per shard
//! One `RateLimiter` lives on each shard, with no sharing between cores. A token's route buckets
//! are exact when its requests for a channel or guild are served by one shard; its global budget
//! is per shard that serves it: a client spreading its requests over N shards gets up to N times
//! the global limit unless the engine routes each token's requests to the user's home shard.
//!
//! # Bounded memory
//! At most [`RateLimitConfig::buckets_max`] windows are kept. A window that has ended carries no
//! information (the next request opens a new one), so expired windows are swept, a few per call,
//! oldest first. When the cap is reached with every window live, the window closest to its reset
//! is forgotten: the user it belonged to gets a fresh window a little early, nobody is refused.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::{BTreeSet, HashMap};

use super::error::{ApiError, RateLimitScope, seconds_string};
use super::limits::{
    GLOBAL_LIMIT, GLOBAL_WINDOW_MS, RATE_LIMIT_BUCKETS_MAX, RATE_LIMIT_SWEEP_PER_CALL_MAX,
};
use super::routes::{Bucket, Route};
use crate::http::Response;

/// How many requests a bucket allows per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketLimit {
    /// Requests per window (at least 1).
    pub limit: u32,
    /// Window length in milliseconds (at least 1).
    pub window_ms: u64,
}

/// Reads: 10 per second per resource.
pub const READ_LIMIT: BucketLimit = BucketLimit {
    limit: 10,
    window_ms: 1_000,
};
/// Guild, channel, role and invite changes: 5 per 5 seconds per resource.
pub const WRITE_LIMIT: BucketLimit = BucketLimit {
    limit: 5,
    window_ms: 5_000,
};
/// Member changes (roles, nicks, kicks, bans): 10 per 10 seconds per guild.
pub const MEMBER_WRITE_LIMIT: BucketLimit = BucketLimit {
    limit: 10,
    window_ms: 10_000,
};
/// Sending messages: 5 per 5 seconds per channel, Discord's long-standing limit.
pub const MESSAGE_CREATE_LIMIT: BucketLimit = BucketLimit {
    limit: 5,
    window_ms: 5_000,
};
/// Deleting one message: 5 per second per channel.
pub const MESSAGE_DELETE_LIMIT: BucketLimit = BucketLimit {
    limit: 5,
    window_ms: 1_000,
};
/// Bulk deletes: 1 per second per channel.
pub const BULK_DELETE_LIMIT: BucketLimit = BucketLimit {
    limit: 1,
    window_ms: 1_000,
};
/// Reactions: 1 per 250 ms per channel, as on Discord.
pub const REACTION_LIMIT: BucketLimit = BucketLimit {
    limit: 1,
    window_ms: 250,
};
/// The global limit per user.
pub const GLOBAL: BucketLimit = BucketLimit {
    limit: GLOBAL_LIMIT,
    window_ms: GLOBAL_WINDOW_MS,
};

impl Bucket {
    /// The default limit of this bucket; `None` for buckets that are not limited (control API).
    pub fn default_limit(self) -> Option<BucketLimit> {
        Some(match self {
            Bucket::Gateway
            | Bucket::Users
            | Bucket::GuildRead
            | Bucket::ChannelRead
            | Bucket::RoleRead
            | Bucket::MemberRead
            | Bucket::MessageRead => READ_LIMIT,
            Bucket::GuildWrite
            | Bucket::GuildCreate
            | Bucket::ChannelWrite
            | Bucket::RoleWrite
            | Bucket::Invites
            | Bucket::InviteJoin
            | Bucket::MessageEdit
            | Bucket::Pins
            | Bucket::Typing
            | Bucket::Ack => WRITE_LIMIT,
            Bucket::MemberWrite | Bucket::Bans => MEMBER_WRITE_LIMIT,
            Bucket::MessageCreate => MESSAGE_CREATE_LIMIT,
            Bucket::MessageDelete => MESSAGE_DELETE_LIMIT,
            Bucket::BulkDelete => BULK_DELETE_LIMIT,
            Bucket::Reactions => REACTION_LIMIT,
            Bucket::Control => return None,
        })
    }
}

/// Rate limit settings of one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// When false every request passes and no headers are added (benchmarks).
    pub enabled: bool,
    /// The per-user global limit.
    pub global: BucketLimit,
    /// Per bucket limits, indexed by `Bucket as usize`; `None`: not limited.
    pub buckets: [Option<BucketLimit>; Bucket::COUNT],
    /// Most windows kept (at least 2: one request may open two).
    pub buckets_max: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            global: GLOBAL,
            buckets: Bucket::ALL.map(Bucket::default_limit),
            buckets_max: RATE_LIMIT_BUCKETS_MAX,
        }
    }
}

impl RateLimitConfig {
    /// Every request passes.
    pub fn disabled() -> Self {
        RateLimitConfig {
            enabled: false,
            ..Self::default()
        }
    }

    /// The limit of `bucket`.
    pub fn limit(&self, bucket: Bucket) -> Option<BucketLimit> {
        self.buckets.get(bucket as usize).copied().flatten()
    }
}

/// The state of the bucket that admitted a request, for the `X-RateLimit-*` headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitInfo {
    /// The bucket.
    pub bucket: Bucket,
    /// Requests per window.
    pub limit: u32,
    /// Requests left in this window.
    pub remaining: u32,
    /// When the window ends, Unix milliseconds.
    pub reset_at_ms: u64,
    /// Milliseconds until the window ends.
    pub reset_after_ms: u64,
}

impl RateLimitInfo {
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset` (epoch seconds with milliseconds),
    /// `-Reset-After` (seconds with milliseconds) and `-Bucket`.
    pub fn headers(&self) -> [(&'static str, String); 5] {
        [
            ("X-RateLimit-Limit", self.limit.to_string()),
            ("X-RateLimit-Remaining", self.remaining.to_string()),
            ("X-RateLimit-Reset", seconds_string(self.reset_at_ms)),
            (
                "X-RateLimit-Reset-After",
                seconds_string(self.reset_after_ms),
            ),
            ("X-RateLimit-Bucket", self.bucket.id().to_owned()),
        ]
    }

    /// Adds the headers to a response.
    pub fn apply(&self, resp: &mut Response) {
        resp.headers.extend(self.headers());
    }
}

/// `Bucket as u8` for route buckets; this for the global window.
const GLOBAL_SLOT: u8 = u8::MAX;
const _: () = assert!(Bucket::COUNT < GLOBAL_SLOT as usize);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    user_id: u64,
    slot: u8,
    major: u64,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    count: u32,
    reset_at_ms: u64,
}

/// Per-shard REST rate limiter.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    windows: HashMap<Key, Window>,
    /// `(reset_at_ms, key)` of every window, soonest first: sweeping and eviction order.
    by_reset: BTreeSet<(u64, Key)>,
}

/// What a window would look like after one more request.
struct Pending {
    key: Key,
    window: Window,
    limit: BucketLimit,
}

impl RateLimiter {
    /// A limiter with `config`.
    pub fn new(mut config: RateLimitConfig) -> Self {
        config.buckets_max = config.buckets_max.max(2);
        RateLimiter {
            config,
            windows: HashMap::new(),
            by_reset: BTreeSet::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// How many windows are kept.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether no window is kept.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Admits or refuses one request of `user_id` on `route`. `Ok(None)` when the route is not
    /// limited (control API) or limits are disabled; `Ok(Some(info))` carries the headers for the
    /// answer; `Err` is the 429 to send. Unauthenticated routes pass user 0 (one shared budget).
    pub fn check(
        &mut self,
        user_id: u64,
        route: &Route,
        now_ms: u64,
    ) -> Result<Option<RateLimitInfo>, ApiError> {
        self.check_bucket(
            user_id,
            route.spec().bucket,
            route.major().unwrap_or(0),
            now_ms,
        )
    }

    /// [`Self::check`] for an explicit bucket and major parameter.
    pub fn check_bucket(
        &mut self,
        user_id: u64,
        bucket: Bucket,
        major: u64,
        now_ms: u64,
    ) -> Result<Option<RateLimitInfo>, ApiError> {
        if !self.config.enabled {
            return Ok(None);
        }
        let Some(route_limit) = self.config.limit(bucket) else {
            return Ok(None);
        };
        self.sweep(now_ms);
        let global = self.pending(
            Key {
                user_id,
                slot: GLOBAL_SLOT,
                major: 0,
            },
            self.config.global,
            now_ms,
        );
        if global.window.count > global.limit.limit {
            let retry = global.window.reset_at_ms.saturating_sub(now_ms);
            return Err(ApiError::rate_limited(retry, RateLimitScope::Global));
        }
        let route = self.pending(
            Key {
                user_id,
                slot: bucket as u8,
                major,
            },
            route_limit,
            now_ms,
        );
        let reset_after_ms = route.window.reset_at_ms.saturating_sub(now_ms);
        let mut info = RateLimitInfo {
            bucket,
            limit: route.limit.limit,
            remaining: route.limit.limit.saturating_sub(route.window.count),
            reset_at_ms: route.window.reset_at_ms,
            reset_after_ms,
        };
        if route.window.count > route.limit.limit {
            info.remaining = 0;
            let mut e = ApiError::rate_limited(reset_after_ms, RateLimitScope::User);
            e.headers.extend(info.headers());
            return Err(e);
        }
        self.commit(global);
        self.commit(route);
        Ok(Some(info))
    }

    /// The window of `key` with this request counted, without storing it.
    fn pending(&self, key: Key, limit: BucketLimit, now_ms: u64) -> Pending {
        let limit = BucketLimit {
            limit: limit.limit.max(1),
            window_ms: limit.window_ms.max(1),
        };
        match self.windows.get(&key) {
            Some(w) if now_ms < w.reset_at_ms => Pending {
                key,
                window: Window {
                    count: w.count.saturating_add(1),
                    reset_at_ms: w.reset_at_ms,
                },
                limit,
            },
            _ => Pending {
                key,
                window: Window {
                    count: 1,
                    reset_at_ms: now_ms.saturating_add(limit.window_ms),
                },
                limit,
            },
        }
    }

    fn commit(&mut self, p: Pending) {
        match self.windows.get(&p.key).map(|w| w.reset_at_ms) {
            None => {
                if self.windows.len() >= self.config.buckets_max {
                    // Forget the window closest to its reset: the least information is lost.
                    if let Some((_, victim)) = self.by_reset.pop_first() {
                        self.windows.remove(&victim);
                    }
                }
                self.by_reset.insert((p.window.reset_at_ms, p.key));
            }
            Some(old) if old != p.window.reset_at_ms => {
                self.by_reset.remove(&(old, p.key));
                self.by_reset.insert((p.window.reset_at_ms, p.key));
            }
            Some(_) => {}
        }
        self.windows.insert(p.key, p.window);
    }

    /// Drops up to [`RATE_LIMIT_SWEEP_PER_CALL_MAX`] windows that have ended.
    fn sweep(&mut self, now_ms: u64) {
        for _ in 0..RATE_LIMIT_SWEEP_PER_CALL_MAX {
            match self.by_reset.first() {
                Some(&(reset, key)) if reset <= now_ms => {
                    self.by_reset.pop_first();
                    self.windows.remove(&key);
                }
                _ => break,
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn index_mirrors_windows() {
        let mut rl = RateLimiter::new(RateLimitConfig {
            buckets_max: 8,
            ..RateLimitConfig::default()
        });
        let mut now = 1_700_000_000_000;
        for i in 0..200u64 {
            let _ = rl.check_bucket(i % 13, Bucket::Reactions, i % 5, now);
            now += 37;
            assert_eq!(rl.windows.len(), rl.by_reset.len());
            assert!(rl.windows.len() <= 8);
            for (reset, key) in &rl.by_reset {
                assert_eq!(rl.windows[key].reset_at_ms, *reset);
            }
        }
    }
}
