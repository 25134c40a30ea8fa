//! The shard's voice UDP socket on the driver: one multishot receive, each datagram through the
//! SFU where it lies (copied once out of the provided buffer, decrypted in place), and one
//! `SendTo` per receiver copy from a pool of send buffers. The sends of a turn reach the kernel
//! together at the driver's next `run` (one io_uring submission batch).

use crate::buf::{Pool, SendBuf};
use crate::driver::{Completion, CompletionKind, Driver, Errno, Op, Token};
use sfu::OutBatch;
use sfu::limits::PACKET_LEN_MAX;

use super::server::VoiceServer;

/// Top 8 bits of the tokens of voice UDP operations (the shard's own kinds and the store's
/// `0x40` are different).
pub const VOICE_TOKEN_KIND: u8 = 0x41;
const SUB_RECV: u64 = 1;
const SUB_SEND: u64 = 2;
/// Datagram sends one shard keeps in flight; copies beyond it are dropped and counted (a
/// receiver that cannot keep up must not grow memory without bound).
pub const VOICE_SENDS_IN_FLIGHT_MAX: usize = 8192;
/// Idle datagram buffers kept for reuse.
pub const VOICE_SENDBUF_POOL_MAX: usize = 4096;

fn token(sub: u64) -> Token {
    (u64::from(VOICE_TOKEN_KIND) << 56) | sub
}

/// Whether a completion belongs to the voice UDP socket.
pub fn owns(t: Token) -> bool {
    (t >> 56) as u8 == VOICE_TOKEN_KIND
}

fn new_datagram_buf() -> SendBuf {
    SendBuf::with_capacity(PACKET_LEN_MAX)
}

/// The pool of datagram send buffers.
pub fn sendbuf_pool() -> Pool<SendBuf> {
    Pool::new(VOICE_SENDBUF_POOL_MAX, new_datagram_buf)
}

/// Arms the multishot receive if it is not.
pub fn arm<D: Driver>(server: &mut VoiceServer, driver: &mut D) {
    if server.recv_armed {
        return;
    }
    let op = Op::RecvFromMulti { socket: server.udp };
    if driver.submit(token(SUB_RECV), op).is_ok() {
        server.recv_armed = true;
    }
}

/// Handles a completion of the voice socket.
pub fn on_completion<D: Driver>(
    server: &mut VoiceServer,
    pool: &mut Pool<SendBuf>,
    driver: &mut D,
    now_ms: u64,
    c: Completion,
) {
    match c.kind {
        CompletionKind::RecvFrom { result, more, .. } => {
            if !more {
                server.recv_armed = false;
            }
            match result {
                Ok((b, len, from)) => {
                    let data = driver.recv_buf(b, len);
                    // A datagram larger than any voice packet is truncated garbage: drop it.
                    let n = data.len();
                    let fits = n <= server.scratch.len();
                    if let (true, Some(dst)) = (fits, server.scratch.get_mut(..n)) {
                        dst.copy_from_slice(data);
                    }
                    driver.release_buf(b);
                    if !fits {
                        server.stats.datagrams_in += 1;
                        server.stats.dropped_malformed += 1;
                        return;
                    }
                    forward(server, pool, driver, now_ms, from, n);
                }
                // Pool ran dry or the socket errored: re-armed by the next `arm`.
                Err(e) if e == Errno::NOBUFS => {}
                Err(_) => {}
            }
        }
        CompletionKind::SendTo {
            result, mut buf, ..
        } => {
            server.sends_in_flight = server.sends_in_flight.saturating_sub(1);
            if result.is_err() {
                server.stats.send_errors += 1;
            }
            buf.clear();
            pool.give(buf);
        }
        _ => {}
    }
}

fn forward<D: Driver>(
    server: &mut VoiceServer,
    pool: &mut Pool<SendBuf>,
    driver: &mut D,
    now_ms: u64,
    from: std::net::SocketAddr,
    len: usize,
) {
    let Some(datagram) = server.scratch.get_mut(..len) else {
        return;
    };
    server
        .sfu
        .handle_datagram(now_ms, from, datagram, &mut server.batch);
    // Out of the server while its datagrams are sent (an empty batch allocates nothing).
    let mut batch = std::mem::replace(&mut server.batch, OutBatch::new(0));
    for (dest, bytes) in batch.iter() {
        if !server.discovery_repeat_ssrcs.is_empty() {
            server.note_sent(now_ms, dest, bytes);
        }
        send(server, pool, driver, dest, bytes);
    }
    batch.clear();
    server.batch = batch;
}

fn send<D: Driver>(
    server: &mut VoiceServer,
    pool: &mut Pool<SendBuf>,
    driver: &mut D,
    dest: std::net::SocketAddr,
    bytes: &[u8],
) {
    if server.sends_in_flight >= VOICE_SENDS_IN_FLIGHT_MAX {
        server.stats.dropped_send_backlog += 1;
        return;
    }
    let mut buf = pool.take();
    buf.push_bytes(bytes);
    let op = Op::SendTo {
        socket: server.udp,
        addr: dest,
        buf,
    };
    match driver.submit(token(SUB_SEND), op) {
        Ok(()) => server.sends_in_flight += 1,
        Err(_) => server.stats.send_errors += 1,
    }
}

/// Sends the repeated IP discovery answers that are due (see
/// [`super::server::VOICE_DISCOVERY_REPEAT_MS`]).
pub fn send_due_repeats<D: Driver>(
    server: &mut VoiceServer,
    pool: &mut Pool<SendBuf>,
    driver: &mut D,
    now_ms: u64,
) {
    while let Some((dest, answer)) = server.take_due_repeat(now_ms) {
        send(server, pool, driver, dest, &answer);
    }
}
