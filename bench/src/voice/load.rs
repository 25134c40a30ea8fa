//! The voice load generator's measured loop: one thread on the client core sends every
//! speaker's Opus packets at 50 per second and receives what the server forwards to every
//! participant, on one UDP socket per participant (epoll, non-blocking).
//!
//! Sends are spread evenly: with T speakers in all, packet j is due at `start + j × 20 ms / T`
//! and comes from speaker `j mod T`, so the server sees a steady stream, not bursts every 20 ms.
//! The send time (CLOCK_MONOTONIC ns, taken just before encryption and `sendto`) is in the
//! packet's RTP padding. A receipt's time is taken once per socket wake-up. Hearth's packets are
//! decrypted with the receiver's key (which also proves each was re-encrypted for it) and the
//! send time read from the payload; Janus' SRTP packets are not decrypted, their send time is
//! looked up by (speaker from the forwarder's SSRC, RTP sequence number, which Janus keeps).
//!
//! Loss is counted in send time: every packet sent inside the window is expected once at each
//! other participant of its room; receipts of packets sent inside the window are counted, after
//! a drain once sending stops.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use hdrhistogram::Histogram;
use sfu::crypto::TransportCipher;

use super::payload::{SeqLog, Window, build_packet, read_stamp, seq_ssrc};
use crate::BenchError;
use crate::gateway::net::{Epoll, Interest, mono_ns};
use crate::gateway::wire::new_histogram;

/// Opus frames are 20 ms: 50 packets per second per speaker.
pub const FRAME_INTERVAL_NS: u64 = 20_000_000;
/// Epoll events taken per wait.
pub const EPOLL_EVENTS_MAX: usize = 1024;
/// Datagrams read from one socket per wake-up before moving on (fairness between sockets).
pub const RECV_BURST_MAX: usize = 64;
/// Sends made before the loop looks at receipts again, when it is behind schedule.
pub const SEND_BURST_MAX: usize = 256;
/// Within this long of the next send the loop polls instead of sleeping in epoll.
pub const SPIN_NS: u64 = 1_000_000;
/// Largest datagram handled.
pub const DATAGRAM_LEN_MAX: usize = 1500;
/// Receive buffer asked for each participant socket, bytes (a burst of forwarded packets after
/// a scheduling hiccup of the client must not overflow it).
pub const SOCKET_RCVBUF_BYTES: libc::c_int = 1 << 20;

/// How a participant's receipts are read.
// One per participant, built once and never moved on the hot path: boxing the cipher would only
// add a pointer chase per packet.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum RecvKind {
    /// Hearth: decrypt with this key and read the send time from the payload.
    Aead(TransportCipher),
    /// Janus: speaker from `ssrc - base`, send time from the sequence-number log.
    SeqMapped {
        /// SSRC of speaker 0's forwarders.
        ssrc_base: u32,
    },
}

/// A speaker's sending state.
#[derive(Debug)]
pub struct Speaker {
    /// Index among all speakers (the sequence log's key).
    pub index: usize,
    /// Where its RTP goes (Hearth: the shard's UDP port; Janus: its publisher's port).
    pub dest: SocketAddr,
    /// SSRC it sends with.
    pub ssrc: u32,
    /// Hearth: its transport cipher (packets are sealed); Janus: `None` (plain RTP).
    pub cipher: Option<TransportCipher>,
    /// Receivers of each of its packets (the other participants of its room).
    pub fanout: u64,
    /// Next nonce counter.
    pub counter: u32,
    /// Next RTP sequence number.
    pub seq: u16,
}

/// One participant: its socket, how it reads, and whether it speaks.
#[derive(Debug)]
pub struct Endpoint {
    /// Its UDP socket (non-blocking).
    pub udp: UdpSocket,
    /// How receipts are read.
    pub recv: RecvKind,
    /// Index into the speakers, when it speaks.
    pub speaker: Option<usize>,
}

/// Phase lengths.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// Sending before the window, ns.
    pub warmup_ns: u64,
    /// The window, ns.
    pub window_ns: u64,
    /// Receiving after sending stopped, ns.
    pub drain_ns: u64,
}

/// What the loop measured.
#[derive(Debug)]
pub struct LoadOutcome {
    /// Send-time window.
    pub window: Window,
    /// Packets sent in the window.
    pub sent: u64,
    /// Deliveries expected from them.
    pub expected: u64,
    /// Deliveries of window packets received.
    pub received: u64,
    /// Receipts whose send time could not be read (bad tag, foreign padding, unknown seq).
    pub unreadable: u64,
    /// Receipts of packets sent outside the window.
    pub outside_window: u64,
    /// Send errors (e.g. a full socket buffer).
    pub send_errors: u64,
    /// Added latency, ns.
    pub latency: Histogram<u64>,
    /// How late sends left after their due time, ns.
    pub send_lag: Histogram<u64>,
    /// The loop thread's CPU in the window, ns (RUSAGE_THREAD).
    pub client_cpu_ns: u64,
    /// Wall-clock start and end of the window (CLOCK_MONOTONIC ns), for the server's CPU.
    pub wall: (u64, u64),
}

/// This thread's CPU time so far, ns.
pub fn thread_cpu_ns() -> u64 {
    // SAFETY: an all-zero rusage is valid and getrusage only writes it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid out-parameter.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return 0;
    }
    let tv = |t: libc::timeval| {
        u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000
            + u64::try_from(t.tv_usec).unwrap_or(0) * 1000
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn set_rcvbuf(udp: &UdpSocket) {
    let v = SOCKET_RCVBUF_BYTES;
    // SAFETY: `v` lives for the call and its size is given; a failure only leaves the default.
    unsafe {
        libc::setsockopt(
            udp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const v).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Runs warm-up, window and drain; calls `at_window(start)` and `at_window(end)` with the wall
/// clock when the window opens and closes, so the caller samples the server's CPU there.
pub fn run(
    endpoints: &[Endpoint],
    speakers: &mut [Speaker],
    frames: &[Vec<u8>],
    phases: Phases,
    mut at_window: impl FnMut(bool),
) -> Result<LoadOutcome, BenchError> {
    if speakers.is_empty() || frames.is_empty() {
        return Err(BenchError::Invalid(
            "voice load needs speakers and frames".into(),
        ));
    }
    let epoll = Epoll::new().map_err(|e| BenchError::io("epoll_create", e))?;
    for (i, e) in endpoints.iter().enumerate() {
        set_rcvbuf(&e.udp);
        epoll
            .add(e.udp.as_raw_fd(), Interest::Read, i as u64)
            .map_err(|e| BenchError::io("epoll_ctl", e))?;
    }
    let owner: Vec<usize> = {
        let mut o = vec![usize::MAX; speakers.len()];
        for (i, e) in endpoints.iter().enumerate() {
            if let Some(s) = e.speaker.and_then(|s| o.get_mut(s)) {
                *s = i;
            }
        }
        o
    };
    if owner.contains(&usize::MAX) {
        return Err(BenchError::Invalid("a speaker has no endpoint".into()));
    }
    let total = speakers.len() as u64;
    let step_ns = (FRAME_INTERVAL_NS / total).max(1);
    let start = mono_ns();
    let window = Window {
        start_ns: start + phases.warmup_ns,
        end_ns: start + phases.warmup_ns + phases.window_ns,
    };
    let stop_recv = window.end_ns + phases.drain_ns;
    let mut log = SeqLog::new(speakers.len());
    let mut out = LoadOutcome {
        window,
        sent: 0,
        expected: 0,
        received: 0,
        unreadable: 0,
        outside_window: 0,
        send_errors: 0,
        latency: new_histogram()?,
        send_lag: new_histogram()?,
        client_cpu_ns: 0,
        wall: (0, 0),
    };
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EPOLL_EVENTS_MAX];
    let mut plain = [0u8; DATAGRAM_LEN_MAX];
    let mut sealed = [0u8; DATAGRAM_LEN_MAX];
    let mut rbuf = [0u8; DATAGRAM_LEN_MAX];
    let mut j: u64 = 0;
    let mut in_window = false;
    let mut closed = false;
    let mut cpu_at_open = 0;
    loop {
        let now = mono_ns();
        if !in_window && now >= window.start_ns {
            in_window = true;
            cpu_at_open = thread_cpu_ns();
            out.wall.0 = now;
            at_window(true);
        }
        if in_window && !closed && now >= window.end_ns {
            closed = true;
            out.client_cpu_ns = thread_cpu_ns().saturating_sub(cpu_at_open);
            out.wall.1 = now;
            at_window(false);
        }
        if now >= stop_recv {
            break;
        }
        // Sends that are due (none once the window closed: only draining).
        let mut burst = 0;
        while !closed && burst < SEND_BURST_MAX {
            let due = start + j * step_ns;
            if due > mono_ns() || due >= window.end_ns {
                break;
            }
            let k = (j % total) as usize;
            let Some(sp) = speakers.get_mut(k) else { break };
            let frame = frames
                .get(usize::from(sp.seq) % frames.len())
                .map_or(&[][..], Vec::as_slice);
            let send_ns = mono_ns();
            let n = build_packet(&mut plain, sp.seq, sp.ssrc, frame, send_ns)
                .ok_or_else(|| BenchError::Invalid("Opus frame too long".into()))?;
            let bytes = match &sp.cipher {
                Some(c) => {
                    let m = c
                        .seal_into(
                            sp.counter,
                            plain.get(..12).unwrap_or_default(),
                            plain.get(12..n).unwrap_or_default(),
                            &mut sealed,
                        )
                        .map_err(|e| BenchError::Client(format!("seal: {e:?}")))?;
                    sp.counter = sp.counter.wrapping_add(1);
                    sealed.get(..m).unwrap_or_default()
                }
                None => plain.get(..n).unwrap_or_default(),
            };
            let sock = owner.get(k).and_then(|&o| endpoints.get(o)).map(|e| &e.udp);
            match sock.map(|s| s.send_to(bytes, sp.dest)) {
                Some(Ok(_)) => {}
                _ => out.send_errors += 1,
            }
            log.record(sp.index, sp.seq, send_ns);
            if window.contains(send_ns) {
                out.sent += 1;
                out.expected += sp.fanout;
                out.send_lag
                    .saturating_record(send_ns.saturating_sub(due).max(1));
            }
            sp.seq = sp.seq.wrapping_add(1);
            j += 1;
            burst += 1;
        }
        // Receipts.
        let next_due = start + j * step_ns;
        let now = mono_ns();
        let timeout_ms = if closed {
            1
        } else if next_due <= now + SPIN_NS {
            0
        } else {
            (next_due - now - SPIN_NS) / 1_000_000
        };
        let n = epoll
            .wait(&mut events, timeout_ms)
            .map_err(|e| BenchError::io("epoll_wait", e))?;
        for ev in events.get(..n).unwrap_or_default() {
            let Some(ep) = endpoints.get(ev.u64 as usize) else {
                continue;
            };
            let at = mono_ns();
            for _ in 0..RECV_BURST_MAX {
                let len = match ep.udp.recv(&mut rbuf) {
                    Ok(len) => len,
                    Err(_) => break,
                };
                let Some(pkt) = rbuf.get_mut(..len) else {
                    break;
                };
                let sent_at = match &ep.recv {
                    RecvKind::Aead(c) => sfu::rtp::parse(pkt).ok().and_then(|h| {
                        let aad = h.aad_len();
                        let o = c.open_in_place(pkt, aad).ok()?;
                        read_stamp(pkt.get(aad..aad + o.plaintext_len)?)
                    }),
                    RecvKind::SeqMapped { ssrc_base } => seq_ssrc(pkt).and_then(|(seq, ssrc)| {
                        log.lookup(ssrc.wrapping_sub(*ssrc_base) as usize, seq)
                    }),
                };
                match sent_at {
                    Some(t) if window.contains(t) => {
                        out.received += 1;
                        out.latency.saturating_record(at.saturating_sub(t).max(1));
                    }
                    Some(_) => out.outside_window += 1,
                    None => out.unreadable += 1,
                }
            }
        }
    }
    if !closed {
        out.client_cpu_ns = thread_cpu_ns().saturating_sub(cpu_at_open);
        out.wall.1 = mono_ns();
        at_window(false);
    }
    Ok(out)
}
