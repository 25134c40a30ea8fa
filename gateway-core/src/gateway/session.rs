//! The per-connection gateway session state machine.
//!
//! Inputs: decoded WebSocket messages (`handle_message`), time (`handle_timeout`), and engine
//! decisions (`accept_identify`, `resume_from`, `invalid_session`, `reconnect`, `close`,
//! `dispatch`). Outputs: frames in [`OutputQueue`] (drain with `output()`), the next deadline
//! (`poll_timeout`) and [`SessionEvent`]s returned by the `handle_*` calls.
//!
//! States: Connected (Hello sent) -> Identifying (engine checks) -> Ready, or Connected ->
//! Resuming -> Ready; any state -> Closed. A Closed session that had been Ready stays resumable
//! unless its close code or the client's (1000/1001) says otherwise; while closed it keeps
//! numbering dispatched events into its resume ring so a Resume can replay them.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::command::{Command, CommandError, parse_command};
use super::compress::TransportCompressor;
use super::dispatch::{DISPATCH_PREFIX_BYTES_MAX, SharedEvent, write_prefix};
use super::events::SessionEvent;
use super::intents;
use super::opcode::CloseCode;
use super::output::{OutFrame, OutputQueue};
use super::ratelimit::CommandLimiter;
use super::resume_ring::ResumeRing;
use super::sharding::check_shard;
use crate::limits::{
    GATEWAY_PAYLOAD_BYTES_MAX, HEARTBEAT_GRACE_MS, HEARTBEAT_INTERVAL_MS, LARGE_THRESHOLD_DEFAULT,
    LARGE_THRESHOLD_MAX, LARGE_THRESHOLD_MIN, OUTPUT_QUEUE_BYTES_MAX, WS_CONTROL_PAYLOAD_BYTES_MAX,
};
use crate::token::TokenKey;
use crate::ws::frame::OpCode;
use crate::ws::handshake::GatewayQuery;
use bytes::Bytes;

/// The API version this gateway speaks.
pub const API_VERSION: u32 = 10;

/// Per-shard configuration, shared by every session of the shard and passed by reference.
#[derive(Debug)]
pub struct GatewayConfig {
    /// Verifies tokens in Identify and Resume.
    pub token_key: TokenKey,
    /// Announced in Hello.
    pub heartbeat_interval_ms: u64,
    /// Extra time before a missing heartbeat closes the session (4009).
    pub heartbeat_grace_ms: u64,
    /// Bytes queued for one session before it is disconnected as too slow (4000, resumable);
    /// raised to `OUTPUT_QUEUE_BYTES_MIN` if set lower.
    pub output_queue_bytes_max: usize,
}

impl GatewayConfig {
    /// The default timings with a token secret.
    pub fn new(token_secret: &[u8]) -> Self {
        Self {
            token_key: TokenKey::new(token_secret),
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
            heartbeat_grace_ms: HEARTBEAT_GRACE_MS,
            output_queue_bytes_max: OUTPUT_QUEUE_BYTES_MAX,
        }
    }
}

/// Misuse by the engine, or a session that could not take more output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The call does not fit the session's state (e.g. dispatch before Ready).
    #[error("session not in the right state")]
    WrongState,
    /// The output queue overflowed: the session closed itself with 4000 (resumable). Flush
    /// and disconnect.
    #[error("output queue overflow; session closed")]
    OutputOverflow,
    /// Transport compression failed: the session closed itself with 4000.
    #[error("compression failed; session closed")]
    Compression,
    /// Serializing a payload failed.
    #[error("serialization failed")]
    Serialize,
}

/// Result of [`Session::resume_from`].
#[derive(Debug, Clone, PartialEq)]
pub enum ResumeOutcome {
    /// Missed events replayed, then RESUMED dispatched.
    Resumed {
        /// Events replayed.
        replayed: usize,
    },
    /// Op 9 `d:false` sent (sequence too old, or the old session is not this user's or not
    /// resumable); the client may Identify again.
    InvalidSession,
    /// The session closed itself (4007 for a sequence never sent, or 4000 on overflow).
    Closed(SessionEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connected,
    Identifying,
    Resuming,
    Ready,
    Closed,
}

/// Frame output with optional per-connection compression, apart from the rest of the session
/// so replay can borrow the ring and the output at once.
#[derive(Debug, Default)]
struct Transmitter {
    out: OutputQueue,
    compressor: Option<TransportCompressor>,
}

impl Transmitter {
    fn send_message(&mut self, parts: &[&[u8]]) -> Result<(), SessionError> {
        let frame = match &mut self.compressor {
            Some(c) => {
                let len: usize = parts.iter().map(|p| p.len()).sum();
                let mut buf = Vec::with_capacity(len / 2 + 64);
                c.compress_message(parts, &mut buf)
                    .map_err(|_| SessionError::Compression)?;
                OutFrame::shared(OpCode::Binary, Bytes::from(buf))
            }
            None => match parts {
                [one] => OutFrame::message(OpCode::Text, one),
                _ => OutFrame::shared(OpCode::Text, Bytes::from(parts.concat())),
            },
        };
        self.out
            .push(frame)
            .map_err(|_| SessionError::OutputOverflow)
    }

    fn send_dispatch(&mut self, seq: u64, tail: &Bytes) -> Result<(), SessionError> {
        if self.compressor.is_none() {
            return self
                .out
                .push(OutFrame::dispatch(seq, tail))
                .map_err(|_| SessionError::OutputOverflow);
        }
        let mut prefix = [0u8; DISPATCH_PREFIX_BYTES_MAX];
        let n = write_prefix(seq, &mut prefix);
        self.send_message(&[prefix.get(..n).unwrap_or(&[]), tail])
    }
}

/// One client connection's gateway session.
#[derive(Debug)]
pub struct Session {
    state: State,
    /// Whether a Closed session may be resumed.
    resumable: bool,
    /// Reached Ready once: has a user, session id and sequence space worth resuming.
    identified: bool,
    close_code: Option<u16>,
    user_id: u64,
    /// Boxed, not a `String`: fixed once set, so no capacity word per session.
    session_id: Box<str>,
    intents: u64,
    shard: Option<[u32; 2]>,
    seq: u64,
    ring: ResumeRing,
    tx: Transmitter,
    limiter: CommandLimiter,
    last_heartbeat_ms: u64,
    heartbeat_timeout_ms: u64,
}

fn control_json(op: u8, d: &str, buf: &mut [u8; WS_CONTROL_PAYLOAD_BYTES_MAX]) -> usize {
    use std::io::Write;
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cur, "{{\"t\":null,\"s\":null,\"op\":{op},\"d\":{d}}}");
    cur.position() as usize
}

impl Session {
    /// A new session for an accepted upgrade; queues Hello, or closes at once with 4012 when the
    /// URL asked for another API version (then the event is returned).
    pub fn new(
        cfg: &GatewayConfig,
        query: &GatewayQuery,
        now_ms: u64,
    ) -> (Self, Option<SessionEvent>) {
        let mut s = Self {
            state: State::Connected,
            resumable: false,
            identified: false,
            close_code: None,
            user_id: 0,
            session_id: Box::default(),
            intents: 0,
            shard: None,
            seq: 0,
            ring: ResumeRing::default(),
            tx: Transmitter {
                out: OutputQueue::with_limit(cfg.output_queue_bytes_max),
                compressor: None,
            },
            limiter: CommandLimiter::default(),
            last_heartbeat_ms: now_ms,
            heartbeat_timeout_ms: cfg.heartbeat_interval_ms + cfg.heartbeat_grace_ms,
        };
        if query.version.is_some_and(|v| v != API_VERSION) {
            let ev = s.close_ev(CloseCode::InvalidApiVersion);
            return (s, Some(ev));
        }
        match TransportCompressor::new(query.compress) {
            Ok(c) => s.tx.compressor = c,
            Err(_) => {
                let ev = s.close_ev(CloseCode::UnknownError);
                return (s, Some(ev));
            }
        }
        let d = format!("{{\"heartbeat_interval\":{}}}", cfg.heartbeat_interval_ms);
        let ev = s.send_control(10, &d);
        (s, ev)
    }

    // ----- getters -----

    /// Frames waiting to be written, oldest first.
    pub fn output(&mut self) -> &mut OutputQueue {
        &mut self.tx.out
    }

    /// The session id given at Ready ("" before).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The authenticated user (0 before Identify/Resume).
    pub fn user_id(&self) -> u64 {
        self.user_id
    }

    /// Intents from Identify.
    pub fn intents(&self) -> u64 {
        self.intents
    }

    /// `[shard_id, num_shards]` from Identify.
    pub fn shard(&self) -> Option<[u32; 2]> {
        self.shard
    }

    /// Last sequence number dispatched.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether dispatches are being delivered.
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Whether the session has closed.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether a closed session can still be resumed.
    pub fn is_resumable(&self) -> bool {
        self.state == State::Closed && self.resumable
    }

    /// The close code sent or received, once closed.
    pub fn close_code(&self) -> Option<u16> {
        self.close_code
    }

    /// Events held for Resume.
    pub fn resume_ring(&self) -> &ResumeRing {
        &self.ring
    }

    /// When `handle_timeout` must next be called (None once closed).
    pub fn poll_timeout(&self) -> Option<u64> {
        (self.state != State::Closed).then(|| self.last_heartbeat_ms + self.heartbeat_timeout_ms)
    }

    // ----- inputs -----

    /// Handles one complete client message (text or binary JSON).
    pub fn handle_message(
        &mut self,
        cfg: &GatewayConfig,
        payload: &[u8],
        now_ms: u64,
    ) -> Option<SessionEvent> {
        if self.state == State::Closed {
            return None;
        }
        if payload.len() > GATEWAY_PAYLOAD_BYTES_MAX {
            return Some(self.close_ev(CloseCode::DecodeError));
        }
        if !self.limiter.allow(now_ms) {
            return Some(self.close_ev(CloseCode::RateLimited));
        }
        let cmd = match parse_command(payload) {
            Ok(c) => c,
            Err(CommandError::UnknownOpcode(_)) => {
                return Some(self.close_ev(CloseCode::UnknownOpcode));
            }
            Err(_) => return Some(self.close_ev(CloseCode::DecodeError)),
        };
        let authed = matches!(self.state, State::Identifying | State::Ready);
        match cmd {
            Command::Heartbeat(_) => {
                self.last_heartbeat_ms = now_ms;
                // A heartbeat is the idle session's pulse: storage a past burst left behind in
                // the output queue goes back to the allocator here, at most once per interval.
                self.tx.out.trim();
                self.send_control(11, "null")
            }
            Command::Identify(_) | Command::Resume(_) if self.state != State::Connected => {
                Some(self.close_ev(CloseCode::AlreadyAuthenticated))
            }
            Command::Identify(mut id) => {
                let Ok(claims) = cfg.token_key.verify(&id.token) else {
                    return Some(self.close_ev(CloseCode::AuthenticationFailed));
                };
                if let Err(code) = intents::check_known(id.intents) {
                    return Some(self.close_ev(code));
                }
                if let Some([shard_id, num_shards]) = id.shard {
                    if let Err(code) = check_shard(shard_id, num_shards) {
                        return Some(self.close_ev(code));
                    }
                    // Both fit: check_shard bounds them by SHARD_COUNT_MAX.
                    self.shard = Some([shard_id as u32, num_shards as u32]);
                }
                id.large_threshold = Some(
                    id.large_threshold
                        .unwrap_or(LARGE_THRESHOLD_DEFAULT)
                        .clamp(LARGE_THRESHOLD_MIN, LARGE_THRESHOLD_MAX),
                );
                self.user_id = claims.user_id;
                self.intents = id.intents;
                self.state = State::Identifying;
                Some(SessionEvent::Identify {
                    claims,
                    identify: Box::new(id),
                })
            }
            Command::Resume(r) => {
                let Ok(claims) = cfg.token_key.verify(&r.token) else {
                    return Some(self.close_ev(CloseCode::AuthenticationFailed));
                };
                self.user_id = claims.user_id;
                self.state = State::Resuming;
                Some(SessionEvent::Resume {
                    claims,
                    session_id: r.session_id,
                    seq: r.seq.unwrap_or(0),
                })
            }
            _ if !authed => Some(self.close_ev(CloseCode::NotAuthenticated)),
            Command::PresenceUpdate(p) => Some(SessionEvent::PresenceUpdate(Box::new(p))),
            Command::VoiceStateUpdate(v) => Some(SessionEvent::VoiceStateUpdate(v)),
            Command::RequestGuildMembers(r) => Some(SessionEvent::RequestGuildMembers(Box::new(r))),
            Command::LazyRequest(r) => Some(SessionEvent::LazyRequest(Box::new(r))),
        }
    }

    /// Checks the heartbeat deadline: a client silent for interval + grace is a zombie and is
    /// closed with 4009 (resumable).
    pub fn handle_timeout(&mut self, now_ms: u64) -> Option<SessionEvent> {
        match self.poll_timeout() {
            Some(deadline) if now_ms >= deadline => Some(self.close_ev(CloseCode::SessionTimedOut)),
            _ => None,
        }
    }

    /// The client sent a close frame (or the connection dropped: `None`). Frees the output and
    /// the compressor. Returns whether the session is resumable: a client close with 1000 or
    /// 1001 ends the session, as on Discord; 4000/4200 and drops keep it.
    pub fn peer_closed(&mut self, code: Option<u16>) -> bool {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.close_code = code;
            self.resumable = self.identified && !matches!(code, Some(1000 | 1001));
        }
        self.tx.out.clear();
        self.tx.compressor = None;
        self.is_resumable()
    }

    // ----- engine decisions -----

    /// Accepts an Identify: dispatches READY (sequence 1 of a fresh session).
    pub fn accept_identify(
        &mut self,
        session_id: &str,
        ready: &SharedEvent,
    ) -> Result<(), SessionError> {
        if self.state != State::Identifying {
            return Err(SessionError::WrongState);
        }
        self.session_id = session_id.into();
        self.state = State::Ready;
        self.identified = true;
        // READY is sequence 1 but is not kept for Resume: only a client that received it knows
        // the session id, so no Resume ever needs it replayed (Discord never replays READY
        // either), and it is the largest event an idle session would otherwise hold for life.
        self.dispatch_inner(ready, false).map(|_| ())
    }

    /// Resumes from `old` (the session the client named, found by the engine) after the client
    /// saw `client_seq`: replays every event after it, then dispatches RESUMED. `old` is left
    /// empty and not resumable when this one takes over.
    ///
    /// An `old` session that is still open (its connection not yet known dead, as with a
    /// zombie) is closed with 4000 first, so the engine must then flush and shut its transport.
    pub fn resume_from(
        &mut self,
        old: &mut Session,
        client_seq: u64,
    ) -> Result<ResumeOutcome, SessionError> {
        if self.state != State::Resuming {
            return Err(SessionError::WrongState);
        }
        if old.state == State::Ready && old.user_id == self.user_id {
            old.close_ev(CloseCode::UnknownError);
        }
        if !old.is_resumable() || old.user_id != self.user_id {
            self.invalid_session()?;
            return Ok(ResumeOutcome::InvalidSession);
        }
        if client_seq > old.seq {
            return Ok(ResumeOutcome::Closed(self.close_ev(CloseCode::InvalidSeq)));
        }
        if old.ring.replay_after(client_seq, old.seq).is_err() {
            self.invalid_session()?;
            return Ok(ResumeOutcome::InvalidSession);
        }
        old.resumable = false;
        self.ring = std::mem::take(&mut old.ring);
        self.session_id = std::mem::take(&mut old.session_id);
        self.seq = old.seq;
        self.intents = old.intents;
        self.shard = old.shard;
        self.identified = true;
        self.state = State::Ready;
        let mut replayed = 0;
        let mut failed = None;
        if let Ok(events) = self.ring.replay_after(client_seq, self.seq) {
            for (s, tail) in events {
                if let Err(e) = self.tx.send_dispatch(s, tail) {
                    failed = Some(e);
                    break;
                }
                replayed += 1;
            }
        }
        if let Some(e) = failed {
            return Ok(ResumeOutcome::Closed(self.fail(e)));
        }
        let resumed = SharedEvent::new(
            "RESUMED",
            &serde_json::json!({"_trace": ["hearth-gateway"]}),
            0,
        )
        .map_err(|_| SessionError::Serialize)?;
        if let Err(SessionError::OutputOverflow | SessionError::Compression) =
            self.dispatch(&resumed)
        {
            return Ok(ResumeOutcome::Closed(SessionEvent::Close {
                code: CloseCode::UnknownError.code(),
                resumable: true,
            }));
        }
        Ok(ResumeOutcome::Resumed { replayed })
    }

    /// Sends op 9 `d:false` (no session to resume, or the engine refuses it); the client may
    /// Identify again on this connection.
    pub fn invalid_session(&mut self) -> Result<(), SessionError> {
        if self.state == State::Closed {
            return Err(SessionError::WrongState);
        }
        self.state = State::Connected;
        match self.send_control(9, "false") {
            Some(_) => Err(SessionError::OutputOverflow),
            None => Ok(()),
        }
    }

    /// Sends op 7 Reconnect (the engine is draining this shard); the client will close and
    /// Resume elsewhere. The session stays as it is until the transport ends.
    pub fn reconnect(&mut self) -> Result<(), SessionError> {
        if self.state == State::Closed {
            return Err(SessionError::WrongState);
        }
        match self.send_control(7, "null") {
            Some(_) => Err(SessionError::OutputOverflow),
            None => Ok(()),
        }
    }

    /// Closes the session with `code` (engine decisions such as 4011 or 4014); the close frame
    /// is queued last.
    pub fn close(&mut self, code: CloseCode) -> SessionEvent {
        self.close_ev(code)
    }

    /// Delivers a dispatch event if this session's intents want it: numbers it, keeps it for
    /// Resume and queues the frame. Returns whether it was delivered. A closed but resumable
    /// session only numbers and keeps it.
    pub fn dispatch(&mut self, event: &SharedEvent) -> Result<bool, SessionError> {
        self.dispatch_inner(event, true)
    }

    // ----- internals -----

    /// [`Session::dispatch`]; `keep` false numbers and sends the event without keeping it for
    /// Resume (READY).
    fn dispatch_inner(&mut self, event: &SharedEvent, keep: bool) -> Result<bool, SessionError> {
        if !intents::delivers(self.intents, event.required_intents()) {
            return Ok(false);
        }
        match self.state {
            State::Ready => {}
            State::Closed if self.resumable => {}
            _ => return Err(SessionError::WrongState),
        }
        self.seq += 1;
        if keep {
            self.ring.push(self.seq, event.tail().clone());
        }
        if self.state == State::Ready
            && let Err(e) = self.tx.send_dispatch(self.seq, event.tail())
        {
            self.fail(e);
            return Err(e);
        }
        Ok(true)
    }

    fn fail(&mut self, e: SessionError) -> SessionEvent {
        let _ = e;
        self.close_ev(CloseCode::UnknownError)
    }

    /// Queues a small control message; on overflow closes and returns the close event.
    fn send_control(&mut self, op: u8, d: &str) -> Option<SessionEvent> {
        let mut buf = [0u8; WS_CONTROL_PAYLOAD_BYTES_MAX];
        let n = control_json(op, d, &mut buf);
        match self.tx.send_message(&[buf.get(..n).unwrap_or(&[])]) {
            Ok(()) => None,
            Err(e) => Some(self.fail(e)),
        }
    }

    fn close_ev(&mut self, code: CloseCode) -> SessionEvent {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.close_code = Some(code.code());
            self.resumable = self.identified && code.resumable();
            let reason = code.reason().as_bytes();
            let mut body = [0u8; WS_CONTROL_PAYLOAD_BYTES_MAX];
            let len = 2 + reason.len();
            if let Some(b) = body.get_mut(..len) {
                let (c, r) = b.split_at_mut(2);
                c.copy_from_slice(&code.code().to_be_bytes());
                r.copy_from_slice(reason);
            }
            self.tx.out.push_unbounded(OutFrame::message(
                OpCode::Close,
                body.get(..len).unwrap_or(&[]),
            ));
        }
        SessionEvent::Close {
            code: self.close_code.unwrap_or(CloseCode::UnknownError.code()),
            resumable: self.resumable,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn idle_session_stays_small() {
        // Per-connection memory matters at a million connections: an idle session owns no heap
        // besides its session id and its resume ring, and its inline state stays under a few
        // cache lines. The output queue's oldest frame is inline (88 bytes) so that sending
        // allocates no deque: one that had grown would hold at least four entries (352 bytes).
        let size = std::mem::size_of::<Session>();
        assert!(size <= 288, "Session is {size} bytes");
        assert!(std::mem::size_of::<OutFrame>() <= 88);
        assert!(std::mem::size_of::<crate::ws::Decoder>() <= 96);
    }
}
