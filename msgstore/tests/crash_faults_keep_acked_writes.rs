//! Crashes with torn, lost and corrupted unsynced writes, and injected I/O errors: after each
//! recovery every acknowledged write (append, edit, delete) reads back exactly, writes of
//! unknown fate appear at most once, and nothing appears twice.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{message, run_query, scan_channel, small_config};
use msgstore::sim::{CrashMode, Harness};
use msgstore::{Event, Message, Query, QueryResult, StoreError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CHANNELS: u64 = 3;

/// Value of a key: a message, or deleted.
type Value = Option<Message>;

struct World {
    h: Harness,
    rng: ChaCha8Rng,
    ts: u64,
    token: u64,
    /// token -> (key, value) submitted and not yet resolved.
    in_flight: BTreeMap<u64, ((u64, u64), Value)>,
    /// Acknowledged value per key: must read back exactly unless a later write of unknown
    /// fate replaced it.
    acked: BTreeMap<(u64, u64), Value>,
    /// Values of unknown fate (in flight at a crash, or failed) written after the acked one.
    maybe: BTreeMap<(u64, u64), Vec<Value>>,
    versions: BTreeMap<u64, u32>,
    keys: Vec<(u64, u64)>,
    query_token: u64,
    no_space_seen: usize,
}

impl World {
    fn new(seed: u64) -> Self {
        Self {
            h: Harness::new(small_config(), seed),
            rng: ChaCha8Rng::seed_from_u64(seed),
            ts: 400_000_000_000,
            token: 0,
            in_flight: BTreeMap::new(),
            acked: BTreeMap::new(),
            maybe: BTreeMap::new(),
            versions: BTreeMap::new(),
            keys: Vec::new(),
            query_token: 1 << 40,
            no_space_seen: 0,
        }
    }

    fn collect_events(&mut self) {
        for e in std::mem::take(&mut self.h.events) {
            match e {
                Event::Acked { token } => {
                    let (key, v) = self
                        .in_flight
                        .remove(&token)
                        .expect("ack for a known token");
                    self.acked.insert(key, v);
                    self.maybe.remove(&key);
                }
                Event::Failed { token, error } => {
                    self.no_space_seen += usize::from(matches!(error, StoreError::NoSpace { .. }));
                    assert!(
                        matches!(error, StoreError::Io { .. } | StoreError::NoSpace { .. }),
                        "{error}"
                    );
                    let (key, v) = self
                        .in_flight
                        .remove(&token)
                        .expect("failure for a known token");
                    self.maybe.entry(key).or_default().push(v);
                }
                Event::Error(e) => {
                    self.no_space_seen += usize::from(matches!(e, StoreError::NoSpace { .. }));
                    assert!(
                        matches!(e, StoreError::Io { .. } | StoreError::NoSpace { .. }),
                        "{e}"
                    );
                }
                _ => {}
            }
        }
    }

    fn submit(&mut self, key: (u64, u64), v: Value) {
        self.token += 1;
        let r = match &v {
            Some(m) if self.versions.get(&key.1).copied().unwrap_or(0) == 0 => {
                self.h.store.append(self.token, m.clone())
            }
            Some(m) => self.h.store.edit(self.token, m.clone()),
            None => self.h.store.delete(self.token, key.0, key.1, 1),
        };
        match r {
            Ok(()) => {
                self.in_flight.insert(self.token, (key, v));
            }
            Err(StoreError::Backpressure) => {}
            Err(e) => panic!("write refused: {e}"),
        }
    }

    fn workload(&mut self, turns: usize) {
        for _ in 0..turns {
            for _ in 0..self.rng.random_range(0..6) {
                let roll = self.rng.random_range(0..100);
                if roll < 75 || self.keys.is_empty() {
                    self.ts += if self.rng.random_ratio(1, 60) {
                        900_000_000
                    } else {
                        self.rng.random_range(1..50)
                    };
                    let key = (self.rng.random_range(0..CHANNELS), self.ts << 22);
                    self.keys.push(key);
                    self.versions.insert(key.1, 0);
                    self.submit(key, Some(message(key.0, key.1, 0)));
                } else {
                    let key = self.keys[self.rng.random_range(0..self.keys.len())];
                    if roll < 90 {
                        let ver = self.versions.entry(key.1).or_default();
                        *ver += 1;
                        let ver = *ver;
                        self.submit(key, Some(message(key.0, key.1, ver)));
                    } else {
                        self.submit(key, None);
                    }
                }
            }
            self.h.turn();
            self.collect_events();
        }
    }

    fn crash(&mut self, mode: CrashMode) {
        for (_, (key, v)) in std::mem::take(&mut self.in_flight) {
            self.maybe.entry(key).or_default().push(v);
        }
        self.h.disk.eio_ppm = 0;
        self.h.crash_and_reopen(mode);
        assert!(
            self.h.store.is_open(),
            "recovery failed: {:?} {:?}",
            self.h.store.failure(),
            self.h.events
        );
        self.collect_events();
    }

    fn allowed(&self, key: &(u64, u64), got: &Value) -> bool {
        let acked = self.acked.get(key).cloned().unwrap_or(None);
        acked == *got || self.maybe.get(key).is_some_and(|vs| vs.contains(got))
    }

    fn verify(&mut self) {
        let mut seen: BTreeMap<(u64, u64), Message> = BTreeMap::new();
        for ch in 0..CHANNELS {
            let all = scan_channel(&mut self.h, ch, &mut self.query_token);
            for m in all {
                let key = (ch, m.id);
                assert!(!seen.contains_key(&key), "message {} listed twice", m.id);
                seen.insert(key, m);
            }
        }
        let keys: BTreeSet<(u64, u64)> = self
            .acked
            .keys()
            .chain(self.maybe.keys())
            .chain(seen.keys())
            .copied()
            .collect();
        for key in keys {
            let got = seen.get(&key).cloned();
            assert!(
                self.allowed(&key, &got),
                "key {key:?}: read {got:?}, acked {:?}, unknown-fate {:?}",
                self.acked.get(&key),
                self.maybe.get(&key)
            );
            if let Some(Some(m)) = self.acked.get(&key)
                && !self.maybe.contains_key(&key)
            {
                self.query_token += 1;
                let q = Query::ById {
                    channel_id: key.0,
                    message_id: key.1,
                };
                assert_eq!(
                    run_query(&mut self.h, self.query_token, q),
                    QueryResult::Message(Some(m.clone()))
                );
            }
            // Whatever survived is now the acknowledged state.
            self.acked.insert(key, got);
        }
        self.maybe.clear();
    }

    fn live_acked(&self) -> usize {
        self.acked.values().filter(|v| v.is_some()).count()
    }
}

#[test]
fn chaos_crashes_keep_every_acknowledged_message() {
    for seed in 0..24u64 {
        let mut w = World::new(seed);
        for round in 0..6 {
            let turns = w.rng.random_range(5..120);
            w.workload(turns);
            let mode = if round % 2 == 0 {
                CrashMode::Chaos
            } else {
                CrashMode::LoseUnsynced
            };
            w.crash(mode);
            w.verify();
        }
        assert!(
            w.acked.len() > 50,
            "seed {seed}: too little work done ({})",
            w.acked.len()
        );
    }
}

#[test]
fn io_errors_fail_writes_cleanly_and_recovery_keeps_acked_ones() {
    for seed in 100..112u64 {
        let mut w = World::new(seed);
        for _ in 0..4 {
            w.h.disk.eio_ppm = 30_000;
            let turns = w.rng.random_range(20..150);
            w.workload(turns);
            w.h.disk.eio_ppm = 0;
            w.workload(10);
            w.h.settle();
            w.collect_events();
            w.crash(CrashMode::Chaos);
            w.verify();
        }
    }
}

#[test]
fn disk_full_surfaces_as_no_space_and_store_recovers_when_space_returns() {
    let mut w = World::new(7);
    w.workload(50);
    w.h.settle();
    w.collect_events();
    // Leave a little room: the next segment rollover or flush hits the wall.
    let used: u64 =
        w.h.disk
            .names()
            .iter()
            .filter_map(|n| w.h.disk.contents(n))
            .map(|c| c.len() as u64)
            .sum();
    w.h.disk.capacity_bytes = used + 8 * 1024;
    let before_fail = w.live_acked();
    for _ in 0..400 {
        w.workload(1);
    }
    assert!(w.no_space_seen > 0, "disk full never surfaced");
    assert!(w.live_acked() + 50 >= before_fail);
    // Everything acknowledged so far still reads back while the disk is full.
    w.h.settle();
    w.collect_events();
    w.verify();
    w.h.disk.capacity_bytes = u64::MAX;
    let acked_at_full = w.live_acked();
    w.workload(300);
    w.h.settle();
    w.collect_events();
    assert!(
        w.acked.len() > acked_at_full + 100,
        "store did not resume after space returned"
    );
    w.crash(CrashMode::LoseUnsynced);
    w.verify();
}
