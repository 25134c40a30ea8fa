//! Bounded cross-shard mailboxes: one queue per ordered pair of shards, drained in batches.
//!
//! Shards share nothing on their hot paths; the only way to reach another shard is to put a message
//! in the queue from this shard to that one. A full queue is backpressure: `try_send` hands the
//! message back and the caller decides (answer 503, retry next turn, drop a presence update).
//!
//! Each queue has exactly one producer and one consumer thread. It is crossbeam's `ArrayQueue`
//! (bounded, lock-free, well tested) rather than a hand-written SPSC ring: the cross-shard hop
//! carries batches (one message per fan-out batch, not per recipient), so the extra CAS of an MPMC
//! queue is not where time goes, and it keeps `unsafe` out of the engine.
//!
//! Wake-ups: a shard about to block publishes `sleeping = true` and re-checks its queues; a
//! producer that pushed to it during a turn wakes it once at the end of that turn if it is sleeping
//! (`flush_wakeups`), through the driver's `RemoteWaker` (an eventfd in the io_uring driver). Both
//! sides use SeqCst on the flag so that either the consumer sees the message or the producer sees
//! the flag (no lost wake-up).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_queue::ArrayQueue;

use crate::driver::RemoteWaker;

/// Most shards one node runs; bounds the mesh (shard ids also fit the Snowflake's 5 bits).
pub const SHARDS_MAX: usize = 32;

/// Errors of the mailbox mesh.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MailboxError {
    /// The shard count is zero or above `SHARDS_MAX`.
    #[error("shard count {0} outside 1..={SHARDS_MAX}")]
    ShardCount(usize),
    /// The capacity is not a power of two or is zero.
    #[error("mailbox capacity {0} must be a non-zero power of two")]
    Capacity(usize),
    /// No such shard.
    #[error("no shard {0}")]
    NoShard(usize),
}

/// The queue from one shard to another was full; the message is handed back.
#[derive(Debug, PartialEq, Eq)]
pub struct Full<M>(pub M);

struct Inbox {
    sleeping: AtomicBool,
    waker: OnceLock<Arc<dyn RemoteWaker>>,
    wakeups: AtomicU64,
}

/// All queues of a node; shared by the shards' endpoints.
pub struct Mesh<M> {
    shards: usize,
    capacity: usize,
    /// `queues[from * shards + to]`.
    queues: Vec<ArrayQueue<M>>,
    inboxes: Vec<Inbox>,
}

impl<M: Send> Mesh<M> {
    /// A mesh of `shards` shards with `capacity` messages per ordered pair.
    pub fn new(shards: usize, capacity: usize) -> Result<Arc<Self>, MailboxError> {
        if shards == 0 || shards > SHARDS_MAX {
            return Err(MailboxError::ShardCount(shards));
        }
        if capacity == 0 || !capacity.is_power_of_two() {
            return Err(MailboxError::Capacity(capacity));
        }
        let queues = (0..shards * shards)
            .map(|_| ArrayQueue::new(capacity))
            .collect();
        let inboxes = (0..shards)
            .map(|_| Inbox {
                sleeping: AtomicBool::new(false),
                waker: OnceLock::new(),
                wakeups: AtomicU64::new(0),
            })
            .collect();
        Ok(Arc::new(Mesh {
            shards,
            capacity,
            queues,
            inboxes,
        }))
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Messages each queue holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The endpoint of shard `me` (one per shard; it is the only producer on its outgoing queues
    /// and the only consumer of its incoming ones).
    pub fn endpoint(self: &Arc<Self>, me: usize) -> Result<Endpoint<M>, MailboxError> {
        if me >= self.shards {
            return Err(MailboxError::NoShard(me));
        }
        Ok(Endpoint {
            mesh: Arc::clone(self),
            me,
            pending_wake: vec![false; self.shards],
            next_source: 0,
        })
    }

    fn queue(&self, from: usize, to: usize) -> &ArrayQueue<M> {
        &self.queues[from * self.shards + to]
    }
}

/// One shard's side of the mesh.
pub struct Endpoint<M> {
    mesh: Arc<Mesh<M>>,
    me: usize,
    pending_wake: Vec<bool>,
    /// Round-robin start so no source starves the others when batches are capped.
    next_source: usize,
}

impl<M: Send> Endpoint<M> {
    /// This shard's index.
    pub fn me(&self) -> usize {
        self.me
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.mesh.shards
    }

    /// Register the waker other shards use to wake this one (once, after its driver exists).
    pub fn register_waker(&self, waker: Arc<dyn RemoteWaker>) {
        let _ = self.mesh.inboxes[self.me].waker.set(waker);
    }

    /// Queue `msg` for shard `to` (which may be this shard); a full queue hands it back.
    pub fn try_send(&mut self, to: usize, msg: M) -> Result<(), Full<M>> {
        let Some(q) = self.mesh.queues.get(self.me * self.mesh.shards + to) else {
            return Err(Full(msg));
        };
        q.push(msg).map_err(Full)?;
        if to != self.me {
            self.pending_wake[to] = true;
        }
        Ok(())
    }

    /// Wake every shard this one sent to since the last call, if it is sleeping. Call once per turn.
    pub fn flush_wakeups(&mut self) {
        for to in 0..self.mesh.shards {
            if !std::mem::take(&mut self.pending_wake[to]) {
                continue;
            }
            let inbox = &self.mesh.inboxes[to];
            if inbox.sleeping.load(Ordering::SeqCst)
                && let Some(w) = inbox.waker.get()
            {
                inbox.wakeups.fetch_add(1, Ordering::Relaxed);
                w.wake();
            }
        }
    }

    /// Take up to `max_per_source` messages from each incoming queue, calling `f(from, msg)`.
    /// Returns how many were taken.
    pub fn drain(&mut self, max_per_source: usize, mut f: impl FnMut(usize, M)) -> usize {
        let n = self.mesh.shards;
        let mut taken = 0;
        for i in 0..n {
            let from = (self.next_source + i) % n;
            let q = self.mesh.queue(from, self.me);
            for _ in 0..max_per_source {
                match q.pop() {
                    Some(m) => {
                        taken += 1;
                        f(from, m);
                    }
                    None => break,
                }
            }
        }
        self.next_source = (self.next_source + 1) % n;
        taken
    }

    /// Messages waiting for this shard, over all sources.
    pub fn depth(&self) -> usize {
        (0..self.mesh.shards)
            .map(|from| self.mesh.queue(from, self.me).len())
            .sum()
    }

    /// Messages queued from this shard to `to` and not yet taken.
    pub fn outgoing_depth(&self, to: usize) -> usize {
        self.mesh
            .queues
            .get(self.me * self.mesh.shards + to)
            .map_or(0, |q| q.len())
    }

    /// Announce that this shard is about to block; returns false (and stays awake) when messages
    /// are already waiting, in which case the caller must not block.
    pub fn prepare_sleep(&self) -> bool {
        let inbox = &self.mesh.inboxes[self.me];
        inbox.sleeping.store(true, Ordering::SeqCst);
        if self.depth() > 0 {
            inbox.sleeping.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Announce that this shard is awake again.
    pub fn woke(&self) {
        self.mesh.inboxes[self.me]
            .sleeping
            .store(false, Ordering::SeqCst);
    }

    /// Remote wake-ups other shards sent this one (for /metrics).
    pub fn wakeups_received(&self) -> u64 {
        self.mesh.inboxes[self.me].wakeups.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn rejects_bad_shapes() {
        assert_eq!(
            Mesh::<u32>::new(0, 8).err(),
            Some(MailboxError::ShardCount(0))
        );
        assert_eq!(
            Mesh::<u32>::new(2, 6).err(),
            Some(MailboxError::Capacity(6))
        );
        let m = Mesh::<u32>::new(2, 8).unwrap();
        assert_eq!(m.endpoint(2).err(), Some(MailboxError::NoShard(2)));
    }

    #[test]
    fn per_pair_order_is_kept_and_full_is_backpressure() {
        let mesh = Mesh::<u32>::new(3, 4).unwrap();
        let mut a = mesh.endpoint(0).unwrap();
        let mut b = mesh.endpoint(1).unwrap();
        let mut c = mesh.endpoint(2).unwrap();
        for i in 0..4 {
            a.try_send(2, i).unwrap();
            b.try_send(2, 100 + i).unwrap();
        }
        assert_eq!(a.try_send(2, 99), Err(Full(99)), "queue 0->2 is full");
        assert_eq!(c.depth(), 8);
        let mut got = Vec::new();
        let n = c.drain(2, |from, m| got.push((from, m)));
        assert_eq!(n, 4, "batch cap per source");
        // The cap leaves messages behind, in order.
        c.drain(16, |from, m| got.push((from, m)));
        let from_a: Vec<u32> = got.iter().filter(|g| g.0 == 0).map(|g| g.1).collect();
        let from_b: Vec<u32> = got.iter().filter(|g| g.0 == 1).map(|g| g.1).collect();
        assert_eq!(from_a, vec![0, 1, 2, 3]);
        assert_eq!(from_b, vec![100, 101, 102, 103]);
        a.try_send(2, 5).unwrap();
    }

    struct CountWaker(AtomicUsize);
    impl RemoteWaker for CountWaker {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn wakes_only_sleeping_targets_once_per_turn() {
        let mesh = Mesh::<u32>::new(2, 8).unwrap();
        let mut a = mesh.endpoint(0).unwrap();
        let b = mesh.endpoint(1).unwrap();
        let w = Arc::new(CountWaker(AtomicUsize::new(0)));
        b.register_waker(w.clone());
        // Awake target: no wake-up.
        a.try_send(1, 1).unwrap();
        a.flush_wakeups();
        assert_eq!(w.0.load(Ordering::SeqCst), 0);
        // A target with waiting messages refuses to sleep.
        assert!(!b.prepare_sleep());
        let mut b = b;
        b.drain(8, |_, _| {});
        assert!(b.prepare_sleep());
        a.try_send(1, 2).unwrap();
        a.try_send(1, 3).unwrap();
        a.flush_wakeups();
        a.flush_wakeups();
        assert_eq!(w.0.load(Ordering::SeqCst), 1, "one wake per turn");
        b.woke();
        assert_eq!(b.wakeups_received(), 1);
    }

    #[test]
    fn threads_exchange_in_order_under_backpressure() {
        let mesh = Mesh::<u64>::new(2, 16).unwrap();
        let mut a = mesh.endpoint(0).unwrap();
        let mut b = mesh.endpoint(1).unwrap();
        const N: u64 = 50_000;
        let producer = std::thread::spawn(move || {
            let mut full = 0u64;
            for i in 0..N {
                let mut m = i;
                loop {
                    match a.try_send(1, m) {
                        Ok(()) => break,
                        Err(Full(back)) => {
                            full += 1;
                            m = back;
                            std::thread::yield_now();
                        }
                    }
                }
            }
            full
        });
        let mut next = 0u64;
        while next < N {
            b.drain(64, |from, m| {
                assert_eq!(from, 0);
                assert_eq!(m, next, "messages arrive in order");
                next += 1;
            });
            std::thread::yield_now();
        }
        let _full = producer.join().unwrap();
        assert_eq!(b.depth(), 0);
    }
}
