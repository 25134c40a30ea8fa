//! The driver-independent state of a shard, and the Seastar-like cross-shard API on top of mailboxes.
//!
//! Work sent to another shard is a closure run there with that shard's [`ShardCtx`]: `invoke_on`
//! (fire and forget), `call` (run there, continue here with the result), `invoke_on_all` and
//! `map_reduce` (run everywhere, fold the results here). Closures are boxed, so these are for the
//! control plane and for batches; per-recipient hot paths send typed batches instead.

use std::any::Any;
use std::collections::{HashMap, VecDeque};

use gateway_core::gateway::GatewayConfig;

use crate::app::AppState;
use crate::driver::DriverStats;
use crate::gateway::GatewayState;
use crate::http::Response;
use crate::mailbox::{Endpoint, Full};
use crate::metrics::{ShardSnapshot, ShardStats};

/// A unit of work run on a shard.
pub type Task = Box<dyn FnOnce(&mut ShardCtx) + Send>;

/// What travels in the mailboxes between shards.
pub enum ShardMsg {
    /// Run this closure on the receiving shard.
    Task(Task),
}

/// A connection of a shard, stable across slot reuse (index and generation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnRef {
    /// Slot index.
    pub index: u32,
    /// Slot generation: a stale reference to a reused slot does not match.
    pub generation: u32,
}

/// Token key of a context nobody configured (unit tests); nodes always set their own.
pub const UNCONFIGURED_TOKEN_SECRET: &[u8] = b"hearth-unconfigured-token-secret";

/// Most replies a shard keeps waiting for room in a full mailbox; beyond it, `call` refuses work.
pub const REPLY_BACKLOG_MAX: usize = 4096;

trait Collector: Send {
    fn add(&mut self, r: Box<dyn Any + Send>);
    fn finish(self: Box<Self>, ctx: &mut ShardCtx);
}

struct Fold<R, A, F, D> {
    acc: Option<A>,
    fold: F,
    done: Option<D>,
    _r: std::marker::PhantomData<fn(R)>,
}

impl<R, A, F, D> Collector for Fold<R, A, F, D>
where
    R: Send + 'static,
    A: Send + 'static,
    F: FnMut(A, R) -> A + Send,
    D: FnOnce(&mut ShardCtx, A) + Send,
{
    fn add(&mut self, r: Box<dyn Any + Send>) {
        if let (Ok(r), Some(acc)) = (r.downcast::<R>(), self.acc.take()) {
            self.acc = Some((self.fold)(acc, *r));
        }
    }
    fn finish(mut self: Box<Self>, ctx: &mut ShardCtx) {
        if let (Some(acc), Some(done)) = (self.acc.take(), self.done.take()) {
            done(ctx, acc);
        }
    }
}

struct Pending {
    remaining: usize,
    collector: Box<dyn Collector>,
}

/// A shard's state that cross-shard tasks may touch; owned by exactly one thread.
pub struct ShardCtx {
    /// This shard's index.
    pub id: usize,
    /// This shard's mailbox endpoint.
    pub mail: Endpoint<ShardMsg>,
    /// Counters for /metrics.
    pub stats: ShardStats,
    /// The driver's counters, copied every turn.
    pub driver_stats: DriverStats,
    /// The CPU core this shard is pinned to, if any.
    pub core: Option<usize>,
    /// Whether the node is draining (stop accepting, finish what is open, then exit).
    pub draining: bool,
    /// HTTP responses produced by cross-shard work, for the connection layer to send.
    pub http_replies: Vec<(ConnRef, Response)>,
    /// Gateway sessions living on this shard.
    pub gw: GatewayState,
    /// Users, guilds and the REST/control API state owned by this shard.
    pub app: AppState,
    /// Whether REST requests are rate limited on this shard (`limits.rest_rate_limits`).
    pub rest_rate_limits: bool,
    /// Presence of the users whose home is this shard.
    pub presence: crate::presence::HomePresence,
    /// Monotonic milliseconds (driver clock), updated every turn.
    pub now_ms: u64,
    /// Wall-clock Unix milliseconds, updated every turn (Snowflakes, timestamps).
    pub wall_ms: u64,
    /// Voice (issue 6): op 4 state of owned guilds and this shard's voice server.
    pub voice: crate::voice::VoiceState,
    /// Messages that found their target's queue full; retried every turn, in order.
    backlog: VecDeque<(usize, ShardMsg)>,
    pending: HashMap<u64, Pending>,
    next_call_id: u64,
}

impl ShardCtx {
    /// A shard's context around its mailbox endpoint.
    pub fn new(mail: Endpoint<ShardMsg>) -> Self {
        let me = mail.me();
        let shards = mail.shards();
        ShardCtx {
            id: mail.me(),
            mail,
            stats: ShardStats::default(),
            driver_stats: DriverStats::default(),
            core: None,
            draining: false,
            http_replies: Vec::new(),
            gw: GatewayState::new(
                me,
                GatewayConfig::new(UNCONFIGURED_TOKEN_SECRET),
                String::from("ws://127.0.0.1"),
                me as u64,
            ),
            app: AppState::new(0, me, String::from("ws://127.0.0.1")),
            presence: Default::default(),
            rest_rate_limits: true,
            voice: crate::voice::VoiceState::new(me, shards),
            now_ms: 0,
            wall_ms: 0,
            backlog: VecDeque::new(),
            pending: HashMap::new(),
            next_call_id: 0,
        }
    }

    /// This shard's counters as exported by /metrics and /admin/shards.
    pub fn snapshot(&self) -> ShardSnapshot {
        ShardSnapshot {
            shard: self.id,
            core: self.core,
            stats: self.stats,
            mailbox_depth: self.mail.depth() as u64,
            wakeups: self.mail.wakeups_received(),
            driver: self.driver_stats,
            gateway: self.gw.stats,
            sessions: self.gw.session_count() as u64,
            voice: self.voice.snapshot(),
            meta: self.app.meta.stats,
        }
    }

    /// Number of shards in the node.
    pub fn shards(&self) -> usize {
        self.mail.shards()
    }

    /// Run `f` on shard `target`; a full mailbox hands the task back.
    pub fn invoke_on(
        &mut self,
        target: usize,
        f: impl FnOnce(&mut ShardCtx) + Send + 'static,
    ) -> Result<(), Full<Task>> {
        match self.mail.try_send(target, ShardMsg::Task(Box::new(f))) {
            Ok(()) => Ok(()),
            Err(Full(ShardMsg::Task(t))) => Err(Full(t)),
        }
    }

    /// Run `f` on every shard (this one included); returns the shards whose mailbox was full.
    pub fn invoke_on_all(
        &mut self,
        f: impl Fn(&mut ShardCtx) + Send + Sync + Clone + 'static,
    ) -> Vec<usize> {
        let mut full = Vec::new();
        for s in 0..self.shards() {
            let g = f.clone();
            if self.invoke_on(s, move |c| g(c)).is_err() {
                full.push(s);
            }
        }
        full
    }

    /// Run `f` on shard `target`, keeping it in order in the backlog when the mailbox is full
    /// (for work that must not be lost, such as fan-out batches; the backlog is retried every
    /// turn).
    pub fn invoke_on_reliably(
        &mut self,
        target: usize,
        f: impl FnOnce(&mut ShardCtx) + Send + 'static,
    ) {
        self.send_reliably(target, ShardMsg::Task(Box::new(f)));
    }

    /// Send a reply home even when the queue is momentarily full (kept in order in the backlog).
    fn send_reliably(&mut self, target: usize, msg: ShardMsg) {
        if !self.backlog.is_empty() {
            self.backlog.push_back((target, msg));
            return;
        }
        if let Err(Full(m)) = self.mail.try_send(target, msg) {
            self.backlog.push_back((target, m));
        }
    }

    /// Retry backlogged messages; called once per turn by the shard loop.
    pub fn flush_backlog(&mut self) {
        while let Some((target, msg)) = self.backlog.pop_front() {
            if let Err(Full(m)) = self.mail.try_send(target, msg) {
                self.backlog.push_front((target, m));
                break;
            }
        }
    }

    /// Messages waiting in the backlog.
    pub fn backlog_len(&self) -> usize {
        self.backlog.len()
    }

    /// Run `f` on every shard and fold the results here with `fold`, starting from `init`; then
    /// call `done` on this shard. Refused (returns false) while the reply backlog is over its bound.
    pub fn map_reduce<R, A>(
        &mut self,
        map: impl Fn(&mut ShardCtx) -> R + Send + Sync + Clone + 'static,
        init: A,
        fold: impl FnMut(A, R) -> A + Send + 'static,
        done: impl FnOnce(&mut ShardCtx, A) + Send + 'static,
    ) -> bool
    where
        R: Send + 'static,
        A: Send + 'static,
    {
        if self.backlog.len() >= REPLY_BACKLOG_MAX {
            return false;
        }
        let id = self.next_call_id;
        self.next_call_id += 1;
        let origin = self.id;
        self.pending.insert(
            id,
            Pending {
                remaining: self.shards(),
                collector: Box::new(Fold {
                    acc: Some(init),
                    fold,
                    done: Some(done),
                    _r: std::marker::PhantomData,
                }),
            },
        );
        for s in 0..self.shards() {
            let map = map.clone();
            let task: Task = Box::new(move |c: &mut ShardCtx| {
                let r: Box<dyn Any + Send> = Box::new(map(c));
                let reply: Task = Box::new(move |o: &mut ShardCtx| o.collect(id, r));
                c.send_reliably(origin, ShardMsg::Task(reply));
            });
            self.send_reliably(s, ShardMsg::Task(task));
        }
        true
    }

    /// Run `f` on `target` and then `then` here with its result.
    pub fn call<R: Send + 'static>(
        &mut self,
        target: usize,
        f: impl FnOnce(&mut ShardCtx) -> R + Send + 'static,
        then: impl FnOnce(&mut ShardCtx, R) + Send + 'static,
    ) -> bool {
        if self.backlog.len() >= REPLY_BACKLOG_MAX {
            return false;
        }
        let origin = self.id;
        let task: Task = Box::new(move |c: &mut ShardCtx| {
            let r = f(c);
            let reply: Task = Box::new(move |o: &mut ShardCtx| then(o, r));
            c.send_reliably(origin, ShardMsg::Task(reply));
        });
        self.send_reliably(target, ShardMsg::Task(task));
        true
    }

    fn collect(&mut self, id: u64, r: Box<dyn Any + Send>) {
        let finished = match self.pending.get_mut(&id) {
            Some(p) => {
                p.collector.add(r);
                p.remaining -= 1;
                p.remaining == 0
            }
            None => false,
        };
        if finished && let Some(p) = self.pending.remove(&id) {
            p.collector.finish(self);
        }
    }

    /// Run up to `max_per_source` incoming tasks from each shard; returns how many ran.
    pub fn run_incoming(&mut self, max_per_source: usize) -> usize {
        // Tasks need `&mut self`, so take them out of the queues first (bounded by the cap).
        let mut batch: Vec<Task> = Vec::new();
        self.mail.drain(max_per_source, |_, m| match m {
            ShardMsg::Task(t) => batch.push(t),
        });
        let n = batch.len();
        for t in batch {
            t(self);
        }
        self.stats.tasks_run += n as u64;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::Mesh;

    fn ctxs(n: usize, cap: usize) -> Vec<ShardCtx> {
        let mesh = Mesh::new(n, cap).unwrap();
        (0..n)
            .map(|i| ShardCtx::new(mesh.endpoint(i).unwrap()))
            .collect()
    }

    fn pump(cs: &mut [ShardCtx]) {
        for _ in 0..16 {
            for c in cs.iter_mut() {
                c.flush_backlog();
                c.run_incoming(8);
            }
        }
    }

    #[test]
    fn map_reduce_folds_every_shard_once() {
        let mut cs = ctxs(4, 2);
        for (i, c) in cs.iter_mut().enumerate() {
            c.stats.http_requests = (i as u64 + 1) * 10;
        }
        let started = cs[1].map_reduce(
            |c| (c.id, c.stats.http_requests),
            Vec::new(),
            |mut acc: Vec<(usize, u64)>, r| {
                acc.push(r);
                acc
            },
            |c, mut acc| {
                acc.sort();
                c.stats.tasks_run += 1000;
                assert_eq!(acc, vec![(0, 10), (1, 20), (2, 30), (3, 40)]);
                c.http_replies.push((
                    ConnRef {
                        index: 7,
                        generation: 1,
                    },
                    Response::text(200, format!("{acc:?}")),
                ));
            },
        );
        assert!(started);
        pump(&mut cs);
        assert_eq!(cs[1].http_replies.len(), 1, "done ran exactly once");
        assert!(cs[1].stats.tasks_run >= 1000);
    }

    #[test]
    fn call_round_trips_and_full_mailbox_is_backlogged_not_lost() {
        // Capacity 1 forces the backlog path.
        let mut cs = ctxs(2, 1);
        for i in 0..5u64 {
            assert!(cs[0].call(
                1,
                move |c| c.id as u64 * 100 + i,
                move |c, r| c.http_replies.push((
                    ConnRef {
                        index: r as u32,
                        generation: 0
                    },
                    Response::text(200, "")
                ))
            ));
        }
        assert!(cs[0].backlog_len() > 0);
        pump(&mut cs);
        let got: Vec<u32> = cs[0].http_replies.iter().map(|r| r.0.index).collect();
        assert_eq!(got, vec![100, 101, 102, 103, 104], "in order, none lost");
    }

    #[test]
    fn invoke_on_all_reaches_every_shard() {
        let mut cs = ctxs(3, 4);
        let full = cs[2].invoke_on_all(|c| c.draining = true);
        assert!(full.is_empty());
        pump(&mut cs);
        assert!(cs.iter().all(|c| c.draining));
    }
}
