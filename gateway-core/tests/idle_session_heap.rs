//! Heap held by an identified idle session, counted by a global allocator: issue 3 budgets
//! 2 KiB of user-space memory per idle session for everything (slab, indexes, socket state), so
//! the session's own heap must stay near zero once READY is out and a heartbeat was answered.
//! One test in this binary, so no other test thread allocates while it counts.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use common::*;
use gateway_core::gateway::{GatewayConfig, Session, SessionEvent, SharedEvent};

/// Bytes currently allocated through the global allocator.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: forwards every call to the system allocator unchanged and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn pop_all(s: &mut Session) {
    while s.output().pop().is_some() {}
}

/// An identified session as the engine leaves it: Hello is written out at the upgrade, long
/// before READY comes back from the user's home shard, and READY is written out in turn.
fn identified(c: &GatewayConfig) -> Session {
    let mut s = new_session(0);
    pop_all(&mut s);
    let ev = s.handle_message(c, &identify_json(&token(USER), 1, None), 1);
    assert!(matches!(ev, Some(SessionEvent::Identify { .. })), "{ev:?}");
    ready_for(&mut s, "sess-1");
    pop_all(&mut s);
    s
}

#[test]
fn an_idle_identified_session_holds_almost_no_heap() {
    let c = cfg();
    let heartbeat = br#"{"op":1,"d":1}"#;
    // Warm-up: anything initialized once per process (lazily) is not the session's.
    drop(identified(&c));
    let before = live();
    // READY is dispatched and written out, but not kept for Resume: only its session id
    // ("sess-1", 6 bytes) stays on the heap.
    let mut s = identified(&c);
    let idle = live() - before;
    assert!(
        idle <= 16,
        "identified idle session holds {idle} heap bytes"
    );
    assert_eq!(s.seq(), 1);
    assert!(s.resume_ring().is_empty());

    // A heartbeat ACK is small enough to stay inline in the output queue.
    assert_eq!(s.handle_message(&c, heartbeat, 1_000), None);
    pop_all(&mut s);
    assert!(
        live() - before <= 16,
        "after a heartbeat: {}",
        live() - before
    );

    // A burst queues behind the inline frame and spills to the heap; the next heartbeat of the
    // drained session gives that storage back. The events themselves stay for Resume.
    let ev = SharedEvent::new("X", &serde_json::json!({"k": 1}), 0).unwrap();
    for _ in 0..8 {
        assert_eq!(s.dispatch(&ev), Ok(true));
    }
    assert!(s.output().spill_capacity_bytes() > 0);
    pop_all(&mut s);
    assert_eq!(s.handle_message(&c, heartbeat, 2_000), None);
    pop_all(&mut s);
    assert_eq!(s.output().spill_capacity_bytes(), 0);
    assert_eq!(s.resume_ring().len(), 8);
    drop(ev);
    let ring = s.resume_ring().bytes() as isize;
    let held = live() - before;
    // Ring: eight 32-byte handles in a deque of eight, one shared payload (with its refcount
    // header), and the session id.
    assert!(
        held <= ring + 8 * 32 + 64 + 16,
        "after a burst: {held} heap bytes (ring payload {ring})"
    );
    drop(s);
    assert!(live() - before <= 0, "a dropped session leaks nothing");
}
