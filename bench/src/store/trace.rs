//! Optional timeline of Hearth's store run, for finding where slow appends come from.
//!
//! Off unless `HEARTH_STORE_TRACE` names a file: then every file operation the executor carries
//! out (start, end, kind, bytes), every background step of the loop (its CPU time) and every
//! append (due time, acknowledgement) is recorded, and written to that file as CSV when the run
//! ends. Off, each hook is one relaxed atomic load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Instant;

/// Most records kept (about 48 bytes each): a bounded buffer, later records are dropped.
const RECORDS_MAX: usize = 20_000_000;

static ON: AtomicBool = AtomicBool::new(false);
static ORIGIN: OnceLock<Instant> = OnceLock::new();
static RECORDS: Mutex<Vec<Rec>> = Mutex::new(Vec::new());

#[derive(Debug, Clone, Copy)]
struct Rec {
    kind: &'static str,
    start_ns: u64,
    end_ns: u64,
    bytes: u64,
    extra: u64,
}

/// Turns tracing on if `HEARTH_STORE_TRACE` is set.
pub fn init() {
    if std::env::var_os("HEARTH_STORE_TRACE").is_some() {
        ORIGIN.get_or_init(Instant::now);
        ON.store(true, Ordering::Relaxed);
    }
}

/// True while tracing.
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Nanoseconds since tracing started (0 when off).
pub fn now_ns() -> u64 {
    if !on() {
        return 0;
    }
    ORIGIN.get().map_or(0, |o| {
        u64::try_from(o.elapsed().as_nanos()).unwrap_or(u64::MAX)
    })
}

/// CPU time of the calling thread, nanoseconds (0 when off).
pub fn thread_cpu_ns() -> u64 {
    if !on() {
        return 0;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the whole call.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Records one span.
pub fn span(kind: &'static str, start_ns: u64, end_ns: u64, bytes: u64, extra: u64) {
    if !on() {
        return;
    }
    let mut r = RECORDS.lock().unwrap_or_else(PoisonError::into_inner);
    if r.len() < RECORDS_MAX {
        r.push(Rec {
            kind,
            start_ns,
            end_ns,
            bytes,
            extra,
        });
    }
}

/// Writes the records to the file `HEARTH_STORE_TRACE` names, if tracing.
pub fn dump() {
    if !on() {
        return;
    }
    let Some(path) = std::env::var_os("HEARTH_STORE_TRACE") else {
        return;
    };
    let r = RECORDS.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = String::from("kind,start_ns,end_ns,bytes,extra\n");
    for x in r.iter() {
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            x.kind, x.start_ns, x.end_ns, x.bytes, x.extra
        ));
    }
    let _ = std::fs::write(path, out);
}
