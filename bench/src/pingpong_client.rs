//! The pingpong load generator: a hand-rolled, single-threaded epoll loop (libc) over
//! non-blocking std `TcpStream`s, one request in flight per connection, requests issued on the
//! open-loop [`Schedule`] and latency measured from each request's due time.
//!
//! Why epoll and not an async runtime: the client must not share the servers' runtimes (it would
//! measure them twice), it must wake at exact due times (`epoll_pwait2` takes a nanosecond
//! timeout), and at 40k req/s it costs a write, a read and a fraction of an `epoll_pwait2` per
//! request, well within one core. Near a due time it busy-polls (`ClientConfig::spin`) rather
//! than sleep, so VM timer and wake-up costs do not make it late. The report shows the client's
//! own CPU and how late it dispatched, so a client that fell behind is visible.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::BenchError;
use crate::limits::{
    EPOLL_EVENTS_MAX, LATENCY_MAX_NS, LATENCY_SIGFIGS, PINGPONG_REQUEST_BYTES_MAX,
    PINGPONG_REQUEST_BYTES_MIN,
};
use crate::procfs::read_process_cpu;
use crate::schedule::Schedule;

/// What to offer.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Server echo address.
    pub addr: SocketAddr,
    /// Connections.
    pub conns: u32,
    /// Total offered requests per second.
    pub rate_per_s: u64,
    /// Request size, bytes.
    pub request_bytes: usize,
    /// Load before the measured window (not recorded).
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// How long to wait for answers after the window closes.
    pub drain: Duration,
    /// Server whose CPU time is sampled at the window's edges.
    pub server_pid: u32,
    /// Busy-poll instead of sleeping when the next due time is this close. Sleeping for a few
    /// tens of µs costs timer and halt exits in a VM and wakes late; at 40k req/s the client
    /// then spins on its own core all the time. Zero always sleeps.
    pub spin: Duration,
}

/// Failures, by kind. Requests count once each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// Writes that failed or were short (connection then dropped).
    pub write: u64,
    /// Reads that failed.
    pub read: u64,
    /// Connections the server closed.
    pub eof: u64,
    /// Echoes whose bytes differed from the request.
    pub bad_echo: u64,
    /// Bytes received with no request outstanding.
    pub unexpected_data: u64,
    /// Requests that could not be sent or answered because their connection had died.
    pub lost: u64,
    /// Requests still unanswered when the drain time ran out.
    pub unanswered: u64,
}

impl ErrorCounts {
    /// Sum of every kind.
    pub fn total(&self) -> u64 {
        self.write
            + self.read
            + self.eof
            + self.bad_echo
            + self.unexpected_data
            + self.lost
            + self.unanswered
    }
}

/// Raw outcome of one run.
#[derive(Debug)]
pub struct ClientOutcome {
    /// Latency from due time to complete echo, nanoseconds, requests due inside the window.
    pub latency_ns: Histogram<u64>,
    /// How late the client dispatched requests due inside the window relative to their due
    /// time (client-side lag only: requests queued behind a pending answer are not counted).
    pub dispatch_lag_ns: Histogram<u64>,
    /// Requests due inside the window.
    pub scheduled_in_window: u64,
    /// Requests due inside the window that were answered.
    pub completed_in_window: u64,
    /// Answers received while the window was open (the denominator for CPU per request).
    pub responses_during_window: u64,
    /// Actual window length between the two CPU samples, nanoseconds.
    pub window_ns: u64,
    /// Server CPU time used during the window, nanoseconds.
    pub server_cpu_ns: u64,
    /// Source of the server CPU figure.
    pub server_cpu_source: crate::procfs::CpuSource,
    /// This load generator's CPU time during the window, nanoseconds.
    pub client_cpu_ns: u64,
    /// Failures.
    pub errors: ErrorCounts,
}

struct Conn {
    stream: TcpStream,
    alive: bool,
    /// Sequence number of the request awaiting its echo.
    inflight: Option<u64>,
    /// Echo bytes received so far for `inflight`.
    got: usize,
    /// Due requests waiting behind `inflight`, oldest first, `queue_head` the oldest.
    queued: u32,
    queue_head: u64,
}

/// Writes request `seq`: its sequence number, then a fixed pattern.
pub fn fill_request(buf: &mut [u8], seq: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
    if let Some(head) = buf.get_mut(..8) {
        head.copy_from_slice(&seq.to_le_bytes());
    }
}

fn new_histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, LATENCY_SIGFIGS)
        .map_err(|e| BenchError::Invalid(format!("histogram: {e}")))
}

struct Epoll(libc::c_int);

impl Epoll {
    fn new() -> io::Result<Self> {
        // SAFETY: no pointer arguments.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(Epoll(fd))
        }
    }

    fn ctl(&self, op: libc::c_int, fd: libc::c_int, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.0, op, fd, &mut ev) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout_ns: u64) -> io::Result<usize> {
        let ts = libc::timespec {
            tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
        };
        let max = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `events` is writable for `max` entries; `ts` outlives the call; no sigmask.
        let n =
            unsafe { libc::epoll_pwait2(self.0, events.as_mut_ptr(), max, &ts, std::ptr::null()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.0) };
    }
}

/// Mutable state of one run, so the event handlers can be methods.
struct Run<'a> {
    cfg: &'a ClientConfig,
    sched: Schedule,
    conns: Vec<Conn>,
    tx: Vec<u8>,
    rx: Vec<u8>,
    expect: Vec<u8>,
    window_start: u64,
    window_end: u64,
    window_open: bool,
    /// Requests dispatched to a connection (queued or in flight) and not yet finished.
    outstanding: u64,
    out: ClientOutcome,
    epoll: Epoll,
}

impl Run<'_> {
    fn in_window(&self, due: u64) -> bool {
        due >= self.window_start && due < self.window_end
    }

    fn kill(&mut self, idx: usize) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        if !c.alive {
            return;
        }
        c.alive = false;
        let dropped = u64::from(c.inflight.is_some()) + u64::from(c.queued);
        c.inflight = None;
        c.queued = 0;
        let _ = self
            .epoll
            .ctl(libc::EPOLL_CTL_DEL, c.stream.as_raw_fd(), idx as u64);
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
        self.outstanding -= dropped;
        self.out.errors.lost += dropped;
    }

    fn send(&mut self, idx: usize, seq: u64) {
        fill_request(&mut self.tx, seq);
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        match c.stream.write(&self.tx) {
            Ok(n) if n == self.tx.len() => {
                c.inflight = Some(seq);
                c.got = 0;
            }
            _ => {
                // This request counts as a write error; kill() drops the queued ones as lost.
                c.inflight = None;
                self.outstanding -= 1;
                self.out.errors.write += 1;
                self.kill(idx);
            }
        }
    }

    fn dispatch(&mut self, seq: u64, now: u64) -> Result<(), BenchError> {
        let idx = self.sched.conn_of(seq) as usize;
        let due = self.sched.due_ns(seq);
        let in_window = self.in_window(due);
        if in_window {
            self.out.scheduled_in_window += 1;
        }
        let Some(c) = self.conns.get_mut(idx) else {
            return Err(BenchError::Invalid("connection index out of range".into()));
        };
        if !c.alive {
            self.out.errors.lost += 1;
            return Ok(());
        }
        self.outstanding += 1;
        if c.inflight.is_some() || c.queued > 0 {
            if c.queued == 0 {
                c.queue_head = seq;
            }
            c.queued += 1;
            return Ok(());
        }
        if in_window {
            self.out
                .dispatch_lag_ns
                .saturating_record(now.saturating_sub(due).max(1));
        }
        self.send(idx, seq);
        Ok(())
    }

    fn readable(&mut self, idx: usize, now: u64) {
        loop {
            let Some(c) = self.conns.get_mut(idx) else {
                return;
            };
            if !c.alive {
                return;
            }
            let Some(seq) = c.inflight else {
                // Nothing outstanding: anything readable is a protocol error (or EOF).
                let mut probe = [0u8; 1];
                match c.stream.read(&mut probe) {
                    Ok(0) => self.out.errors.eof += 1,
                    Ok(_) => self.out.errors.unexpected_data += 1,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(_) => self.out.errors.read += 1,
                }
                self.kill(idx);
                return;
            };
            let want = self.tx.len() - c.got;
            let Some(rx) = self.rx.get_mut(..want) else {
                return;
            };
            let n = match c.stream.read(rx) {
                Ok(0) => {
                    self.out.errors.eof += 1;
                    self.kill(idx);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.out.errors.read += 1;
                    self.kill(idx);
                    return;
                }
            };
            fill_request(&mut self.expect, seq);
            let matches = self.expect.get(c.got..c.got + n) == self.rx.get(..n);
            if !matches {
                self.out.errors.bad_echo += 1;
                self.kill(idx);
                return;
            }
            c.got += n;
            if c.got < self.tx.len() {
                continue;
            }
            // A complete echo.
            c.inflight = None;
            c.got = 0;
            self.outstanding -= 1;
            let due = self.sched.due_ns(seq);
            if due >= self.window_start && due < self.window_end {
                self.out.completed_in_window += 1;
                self.out
                    .latency_ns
                    .saturating_record(now.saturating_sub(due).max(1));
            }
            if self.window_open {
                self.out.responses_during_window += 1;
            }
            if c.queued > 0 {
                let next = c.queue_head;
                c.queued -= 1;
                c.queue_head = self.sched.next_on_conn(next);
                self.send(idx, next);
            }
            // Nothing else can be pending on this connection; skipping the read that would
            // return EAGAIN saves a syscall per request (level-triggered epoll reports any
            // stray bytes on the next wake-up).
            return;
        }
    }
}

/// Connects, runs warm-up, window and drain, and returns the raw outcome.
pub fn run(cfg: &ClientConfig) -> Result<ClientOutcome, BenchError> {
    if !(PINGPONG_REQUEST_BYTES_MIN..=PINGPONG_REQUEST_BYTES_MAX).contains(&cfg.request_bytes) {
        return Err(BenchError::Invalid(format!(
            "request size must be {PINGPONG_REQUEST_BYTES_MIN}..={PINGPONG_REQUEST_BYTES_MAX}"
        )));
    }
    // The default 50 µs timer slack would batch sends due every 25 µs and add up to 50 µs of
    // lateness to every request; the client wants its wake-ups on time.
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument only.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let epoll = Epoll::new().map_err(|e| BenchError::io("epoll_create1", e))?;
    let mut conns = Vec::with_capacity(cfg.conns as usize);
    for i in 0..cfg.conns {
        let stream = TcpStream::connect(cfg.addr)
            .map_err(|e| BenchError::io(format!("connect #{i} to {}", cfg.addr), e))?;
        stream
            .set_nodelay(true)
            .and_then(|()| stream.set_nonblocking(true))
            .map_err(|e| BenchError::io("socket options", e))?;
        epoll
            .ctl(libc::EPOLL_CTL_ADD, stream.as_raw_fd(), u64::from(i))
            .map_err(|e| BenchError::io("epoll_ctl", e))?;
        conns.push(Conn {
            stream,
            alive: true,
            inflight: None,
            got: 0,
            queued: 0,
            queue_head: 0,
        });
    }
    let origin = Instant::now();
    let now_ns = || u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
    // Start a little later so the first due times are not already past.
    let start = now_ns() + 1_000_000;
    let sched = Schedule::new(start, cfg.rate_per_s, cfg.conns)?;
    let window_start = start + u64::try_from(cfg.warmup.as_nanos()).unwrap_or(u64::MAX);
    let window_end = window_start + u64::try_from(cfg.duration.as_nanos()).unwrap_or(u64::MAX);
    let drain_end = window_end + u64::try_from(cfg.drain.as_nanos()).unwrap_or(u64::MAX);
    // Requests due before the window closes are the last ones sent.
    let last_seq_excl = sched.due_count(window_end.saturating_sub(1));

    let mut r = Run {
        cfg,
        sched,
        conns,
        tx: vec![0; cfg.request_bytes],
        rx: vec![0; cfg.request_bytes],
        expect: vec![0; cfg.request_bytes],
        window_start,
        window_end,
        window_open: false,
        outstanding: 0,
        out: ClientOutcome {
            latency_ns: new_histogram()?,
            dispatch_lag_ns: new_histogram()?,
            scheduled_in_window: 0,
            completed_in_window: 0,
            responses_during_window: 0,
            window_ns: 0,
            server_cpu_ns: 0,
            server_cpu_source: crate::procfs::CpuSource::Schedstat,
            client_cpu_ns: 0,
            errors: ErrorCounts::default(),
        },
        epoll,
    };
    let self_pid = std::process::id();
    let spin_ns = u64::try_from(cfg.spin.as_nanos()).unwrap_or(u64::MAX);
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EPOLL_EVENTS_MAX];
    let mut next_seq = 0u64;
    let mut opened_at = None;
    let mut closed = false;
    loop {
        let now = now_ns();
        if opened_at.is_none() && now >= window_start {
            let server = read_process_cpu(r.cfg.server_pid)?;
            let client = read_process_cpu(self_pid)?;
            opened_at = Some((now, server, client));
            r.window_open = true;
        }
        if !closed && now >= window_end {
            if let Some((t0, server0, client0)) = opened_at {
                let server1 = read_process_cpu(r.cfg.server_pid)?;
                let client1 = read_process_cpu(self_pid)?;
                r.out.window_ns = now - t0;
                r.out.server_cpu_ns = server1.ns.saturating_sub(server0.ns);
                r.out.server_cpu_source = server1.source;
                r.out.client_cpu_ns = client1.ns.saturating_sub(client0.ns);
            }
            r.window_open = false;
            closed = true;
        }
        let due = sched.due_count(now).min(last_seq_excl);
        while next_seq < due {
            r.dispatch(next_seq, now)?;
            next_seq += 1;
        }
        if closed && next_seq >= last_seq_excl && r.outstanding == 0 {
            break;
        }
        if now >= drain_end {
            r.out.errors.unanswered += r.outstanding;
            break;
        }
        let mut wake = drain_end;
        if next_seq < last_seq_excl {
            wake = wake.min(sched.due_ns(next_seq));
        }
        if opened_at.is_none() {
            wake = wake.min(window_start);
        }
        if !closed {
            wake = wake.min(window_end);
        }
        let timeout = wake.saturating_sub(now);
        // Sleep until `spin` before the deadline, then poll without sleeping.
        let timeout = timeout.saturating_sub(spin_ns);
        let n = r
            .epoll
            .wait(&mut events, timeout)
            .map_err(|e| BenchError::io("epoll_pwait2", e))?;
        let now = now_ns();
        for ev in events.iter().take(n) {
            let token = ev.u64;
            r.readable(token as usize, now);
        }
    }
    Ok(r.out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn request_carries_its_sequence_number() {
        let mut a = vec![0u8; 64];
        let mut b = vec![0u8; 64];
        fill_request(&mut a, 1);
        fill_request(&mut b, 2);
        assert_ne!(a, b);
        assert_eq!(a.get(..8).unwrap(), &1u64.to_le_bytes());
        assert_eq!(a.get(8..), b.get(8..));
    }

    #[test]
    fn error_total_sums_every_kind() {
        let e = ErrorCounts {
            write: 1,
            read: 2,
            eof: 3,
            bad_echo: 4,
            unexpected_data: 5,
            lost: 6,
            unanswered: 7,
        };
        assert_eq!(e.total(), 28);
    }
}
