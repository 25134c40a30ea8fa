//! The gateway sessions of one shard: the slab of [`Session`]s living on this shard, their
//! indexes (by session id, user and guild), delivery of shared events to them, and the
//! bookkeeping of resume (sessions kept after their connection dropped, taken over by a Resume
//! that may arrive on any shard).
//!
//! This lives in [`crate::ctx::ShardCtx`] so that cross-shard tasks (fan-out batches from a
//! guild's owner shard, resume hand-overs) reach the sessions directly; the connection layer in
//! `shard.rs` only moves bytes between sockets and these sessions.
//!
//! A session id is 32 lower-case hex digits whose first two name the shard holding the session,
//! so a Resume landing on another shard (SO_REUSEPORT spreads connections) knows where to ask.

use std::collections::HashMap;

use bytes::Bytes;
use gateway_core::gateway::{GatewayConfig, Session, SessionEvent, SharedEvent};
use gateway_core::ws::Decoder;
use gateway_core::ws::decoder::WsEvent;
use gateway_core::ws::handshake::GatewayQuery;
use rand::RngCore;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

use crate::ctx::ConnRef;

/// A session whose connection dropped stays resumable this long, then it is dropped.
pub const RESUME_WINDOW_MS: u64 = 180_000;
/// How often detached sessions are swept.
pub const REAP_INTERVAL_MS: u64 = 1_000;
/// Length of a session id (hex digits).
pub const SESSION_ID_LEN: usize = 32;
/// Most WebSocket messages handled from one connection per receive, so one chatty client cannot
/// hold the loop (the rest waits in the connection's input buffer for the next turn).
pub const WS_MESSAGES_PER_RECV_MAX: usize = 256;

/// A session slot of this shard, stable across slot reuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionRef {
    /// Slot index.
    pub index: u32,
    /// Slot generation.
    pub generation: u32,
}

/// One session and what this shard knows about it.
#[derive(Debug)]
pub struct SessionSlot {
    generation: u32,
    /// The protocol state machine.
    pub session: Session,
    /// The WebSocket decoder of the attached connection.
    pub decoder: Decoder,
    /// The connection carrying it, while attached.
    pub conn: Option<ConnRef>,
    /// Guilds this session receives (indexed in `by_guild`).
    pub guilds: Vec<u64>,
    /// When the connection dropped (resume window start).
    detached_at_ms: u64,
    /// Indexed by id and user (after Ready).
    indexed: bool,
}

/// A session that ended for good on this shard (closed without resume, or expired): what the
/// guilds' owner shards need to drop the voice state it may hold.
#[derive(Debug)]
pub struct EndedSession {
    /// Its user.
    pub user: u64,
    /// Its id.
    pub session_id: Box<str>,
    /// The guilds it received.
    pub guilds: Vec<u64>,
}

/// A session handed from one shard to another by Resume.
#[derive(Debug)]
pub struct TakenSession {
    /// The old session (closed, resumable).
    pub session: Session,
    /// Its guilds.
    pub guilds: Vec<u64>,
}

/// What the connection layer learns from decoding received bytes.
#[derive(Debug, Default)]
pub struct WsOutcome {
    /// Bytes of the input consumed (the rest is an incomplete frame, or was left for next turn).
    pub consumed: usize,
    /// The connection must be closed once its output is flushed.
    pub close: bool,
}

/// Counters of the gateway for /metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GatewayStats {
    /// Sessions opened (upgrades accepted).
    pub sessions_opened: u64,
    /// Identifies accepted (READY sent).
    pub identifies: u64,
    /// Resumes completed.
    pub resumes: u64,
    /// Resumes answered with op 9.
    pub resumes_refused: u64,
    /// Dispatches queued to sessions.
    pub deliveries: u64,
    /// Sessions closed for a full output queue.
    pub slow_consumers: u64,
    /// Detached sessions dropped at the end of their resume window.
    pub expired: u64,
}

/// The gateway state of one shard.
pub struct GatewayState {
    /// Shared configuration of this shard's sessions.
    pub cfg: GatewayConfig,
    /// `resume_gateway_url` given in READY.
    pub resume_url: String,
    /// Counters.
    pub stats: GatewayStats,
    shard: usize,
    slots: Vec<Option<SessionSlot>>,
    free: Vec<u32>,
    next_generation: u32,
    by_id: HashMap<[u8; SESSION_ID_LEN], u32>,
    by_user: HashMap<u64, Vec<u32>>,
    by_guild: HashMap<u64, Vec<u32>>,
    dirty: Vec<u32>,
    kill: Vec<ConnRef>,
    drop_conns: Vec<ConnRef>,
    /// Users whose session became Ready (+1) or ended (-1) since the last call, for presence.
    session_changes: Vec<(u64, bool)>,
    /// Sessions ended for good since the last call, for voice (drained every turn).
    ended: Vec<EndedSession>,
    rng: ChaCha8Rng,
    next_reap_ms: u64,
}

impl std::fmt::Debug for GatewayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayState")
            .field("shard", &self.shard)
            .field("sessions", &self.session_count())
            .finish()
    }
}

fn id_key(id: &str) -> Option<[u8; SESSION_ID_LEN]> {
    id.as_bytes().try_into().ok()
}

/// The shard holding the session `id`, from its first two hex digits.
pub fn shard_of_session_id(id: &str) -> Option<usize> {
    if id.len() != SESSION_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    usize::from_str_radix(id.get(..2)?, 16).ok()
}

impl GatewayState {
    /// The gateway of shard `shard`, with a seed for session ids.
    pub fn new(shard: usize, cfg: GatewayConfig, resume_url: String, seed: u64) -> Self {
        GatewayState {
            cfg,
            resume_url,
            stats: GatewayStats::default(),
            shard,
            slots: Vec::new(),
            free: Vec::new(),
            next_generation: 1,
            by_id: HashMap::new(),
            by_user: HashMap::new(),
            by_guild: HashMap::new(),
            dirty: Vec::new(),
            kill: Vec::new(),
            drop_conns: Vec::new(),
            session_changes: Vec::new(),
            ended: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed ^ (shard as u64).rotate_left(32)),
            next_reap_ms: 0,
        }
    }

    /// Sessions held (attached or waiting for a Resume).
    pub fn session_count(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Sessions with a connection attached.
    pub fn attached_count(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|s| s.conn.is_some())
            .count()
    }

    /// A fresh session id naming this shard.
    pub fn new_session_id(&mut self) -> String {
        let mut raw = [0u8; 15];
        self.rng.fill_bytes(&mut raw);
        let mut s = format!("{:02x}", self.shard);
        for b in raw {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// Opens a session for a connection that just upgraded (Hello queued, or closed at once).
    pub fn open(
        &mut self,
        conn: ConnRef,
        query: &GatewayQuery,
        payload_max: usize,
        now_ms: u64,
    ) -> SessionRef {
        let (session, _ev) = Session::new(&self.cfg, query, now_ms);
        let generation = self.next_generation;
        // 24 bits, so a session's slot and generation fit in one u64 key with its shard.
        self.next_generation = (self.next_generation.wrapping_add(1) & 0x00ff_ffff).max(1);
        let slot = SessionSlot {
            generation,
            session,
            decoder: Decoder::with_limits(payload_max, payload_max),
            conn: Some(conn),
            guilds: Vec::new(),
            detached_at_ms: 0,
            indexed: false,
        };
        let index = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i as usize) {
                    *s = Some(slot);
                }
                i
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        self.stats.sessions_opened += 1;
        self.dirty.push(index);
        SessionRef { index, generation }
    }

    /// The live slot `r` refers to.
    pub fn get_mut(&mut self, r: SessionRef) -> Option<&mut SessionSlot> {
        self.slots
            .get_mut(r.index as usize)
            .and_then(|s| s.as_mut())
            .filter(|s| s.generation == r.generation)
    }

    /// Notes that the session has new output for its connection.
    pub fn mark_dirty(&mut self, r: SessionRef) {
        self.dirty.push(r.index);
    }

    /// Connections of sessions with new output since the last call (deduplicated).
    pub fn take_dirty_conns(&mut self, out: &mut Vec<ConnRef>) {
        self.dirty.sort_unstable();
        self.dirty.dedup();
        for &i in &self.dirty {
            if let Some(Some(s)) = self.slots.get(i as usize)
                && let Some(c) = s.conn
            {
                out.push(c);
            }
        }
        self.dirty.clear();
    }

    /// The Ready (or resumable) session with this id on this shard.
    pub fn find_by_id(&self, id: &str) -> Option<SessionRef> {
        let index = *self.by_id.get(&id_key(id)?)?;
        let slot = self.slots.get(index as usize)?.as_ref()?;
        Some(SessionRef {
            index,
            generation: slot.generation,
        })
    }

    /// Drops the connections of `user`'s sessions without a close frame, as a network failure
    /// would (operators and tests); the sessions stay resumable. Returns how many.
    pub fn disconnect_user(&mut self, user: u64) -> usize {
        let Some(list) = self.by_user.get(&user) else {
            return 0;
        };
        let mut n = 0;
        for &i in list {
            if let Some(Some(s)) = self.slots.get(i as usize)
                && let Some(c) = s.conn
            {
                self.drop_conns.push(c);
                n += 1;
            }
        }
        n
    }

    /// Connections to close at once, without a close frame.
    pub fn take_drops(&mut self, out: &mut Vec<ConnRef>) {
        out.append(&mut self.drop_conns);
    }

    /// Users whose sessions came (true) or went (false) since the last call.
    pub fn take_session_changes(&mut self, out: &mut Vec<(u64, bool)>) {
        out.append(&mut self.session_changes);
    }

    /// Moves the sessions ended for good since the last call into `out`.
    pub fn take_ended_sessions(&mut self, out: &mut Vec<EndedSession>) {
        out.append(&mut self.ended);
    }

    /// Connections whose session was taken away (resumed elsewhere): close them.
    pub fn take_kills(&mut self, out: &mut Vec<ConnRef>) {
        out.append(&mut self.kill);
    }

    /// Whether anything waits for the connection layer.
    pub fn has_work(&self) -> bool {
        !self.dirty.is_empty() || !self.kill.is_empty() || !self.drop_conns.is_empty()
    }

    /// Feeds received bytes of the connection of `r` through its decoder and session. Control
    /// replies (pong, close) are appended to `ctrl`; session events for the engine to decide
    /// (Identify, Resume, presence, voice...) are appended to `events`.
    pub fn on_bytes(
        &mut self,
        r: SessionRef,
        buf: &mut [u8],
        ctrl: &mut Vec<u8>,
        now_ms: u64,
        events: &mut Vec<SessionEvent>,
    ) -> WsOutcome {
        let mut out = WsOutcome::default();
        let Some(slot) = self
            .slots
            .get_mut(r.index as usize)
            .and_then(|s| s.as_mut())
            .filter(|s| s.generation == r.generation)
        else {
            out.consumed = buf.len();
            out.close = true;
            return out;
        };
        let mut handled = 0;
        while out.consumed < buf.len() && handled < WS_MESSAGES_PER_RECV_MAX {
            let rest = buf.get_mut(out.consumed..).unwrap_or_default();
            let (n, ev) = slot.decoder.next(rest, ctrl);
            out.consumed += n;
            match ev {
                Ok(WsEvent::NeedMore(_)) => break,
                Ok(WsEvent::Skipped | WsEvent::Ping(_) | WsEvent::Pong(_)) => {}
                Ok(WsEvent::Text(t)) => {
                    handled += 1;
                    if let Some(e) = slot.session.handle_message(&self.cfg, t.as_bytes(), now_ms) {
                        events.push(e);
                    }
                }
                Ok(WsEvent::Binary(b)) => {
                    handled += 1;
                    if let Some(e) = slot.session.handle_message(&self.cfg, b, now_ms) {
                        events.push(e);
                    }
                }
                Ok(WsEvent::Close { code, .. }) => {
                    slot.session.peer_closed(code);
                    out.close = true;
                    out.consumed = buf.len();
                    break;
                }
                Err(_) => {
                    // The decoder wrote the close frame (1002/1007/1009...) into `ctrl`.
                    slot.session.peer_closed(None);
                    out.close = true;
                    out.consumed = buf.len();
                    break;
                }
            }
            if slot.session.is_closed() {
                slot.decoder.note_close_sent();
                break;
            }
        }
        if slot.session.is_closed() {
            out.close = true;
        }
        self.dirty.push(r.index);
        out
    }

    /// Checks the heartbeat deadline of `r`: returns the next deadline (ms) to wait for, or None
    /// when the session closed (zombie: close frame 4009 queued) or is gone.
    pub fn on_timer(&mut self, r: SessionRef, now_ms: u64) -> Option<u64> {
        let slot = self.get_mut(r)?;
        slot.session.handle_timeout(now_ms);
        if slot.session.is_closed() {
            slot.decoder.note_close_sent();
            self.dirty.push(r.index);
            return None;
        }
        slot.session.poll_timeout()
    }

    /// The connection of `r` is gone. A resumable session stays for [`RESUME_WINDOW_MS`];
    /// anything else is dropped.
    pub fn detach(&mut self, r: SessionRef, now_ms: u64) {
        let Some(slot) = self.get_mut(r) else {
            return;
        };
        slot.conn = None;
        let resumable = slot.session.peer_closed(None);
        if resumable {
            slot.detached_at_ms = now_ms;
        } else {
            self.remove(r.index);
        }
    }

    fn remove(&mut self, index: u32) {
        let Some(slot) = self.slots.get_mut(index as usize).and_then(|s| s.take()) else {
            return;
        };
        if slot.indexed {
            if let Some(k) = id_key(slot.session.session_id()) {
                self.by_id.remove(&k);
            }
            let user = slot.session.user_id();
            self.session_changes.push((user, false));
            if let Some(v) = self.by_user.get_mut(&user) {
                v.retain(|&i| i != index);
                if v.is_empty() {
                    self.by_user.remove(&user);
                }
            }
        }
        for g in &slot.guilds {
            if let Some(v) = self.by_guild.get_mut(g) {
                v.retain(|&i| i != index);
                if v.is_empty() {
                    self.by_guild.remove(g);
                }
            }
        }
        self.free.push(index);
        if slot.indexed && !slot.guilds.is_empty() {
            self.ended.push(EndedSession {
                user: slot.session.user_id(),
                session_id: slot.session.session_id().into(),
                guilds: slot.guilds,
            });
        }
    }

    /// Indexes a session that just became Ready (by id and user) with its guilds.
    pub fn register_ready(&mut self, r: SessionRef) {
        let Some(slot) = self.get_mut(r) else {
            return;
        };
        if slot.indexed {
            return;
        }
        slot.indexed = true;
        let user = slot.session.user_id();
        let key = id_key(slot.session.session_id());
        let guilds = slot.guilds.clone();
        self.session_changes.push((user, true));
        if let Some(k) = key {
            self.by_id.insert(k, r.index);
        }
        self.by_user.entry(user).or_default().push(r.index);
        for g in guilds {
            self.by_guild.entry(g).or_default().push(r.index);
        }
    }

    /// Adds guild `g` to what session `r` receives.
    pub fn add_guild(&mut self, r: SessionRef, g: u64) {
        let Some(slot) = self.get_mut(r) else {
            return;
        };
        if slot.guilds.contains(&g) {
            return;
        }
        slot.guilds.push(g);
        let indexed = slot.indexed;
        if indexed {
            self.by_guild.entry(g).or_default().push(r.index);
        }
    }

    /// Removes guild `g` from what session `r` receives.
    pub fn remove_guild(&mut self, r: SessionRef, g: u64) {
        let Some(slot) = self.get_mut(r) else {
            return;
        };
        slot.guilds.retain(|&x| x != g);
        if let Some(v) = self.by_guild.get_mut(&g) {
            v.retain(|&i| i != r.index);
            if v.is_empty() {
                self.by_guild.remove(&g);
            }
        }
    }

    /// Takes session `id` of `user` away for a Resume on another connection. A session whose
    /// connection is still open (a zombie the client gave up on) loses that connection.
    pub fn take_for_resume(&mut self, id: &str, user: u64) -> Option<TakenSession> {
        let key = id_key(id)?;
        let index = *self.by_id.get(&key)?;
        let slot = self.slots.get_mut(index as usize)?.as_mut()?;
        if slot.session.user_id() != user {
            return None;
        }
        if let Some(c) = slot.conn.take() {
            self.kill.push(c);
        }
        let guilds = slot.guilds.clone();
        let slot = self.slots.get_mut(index as usize)?.take()?;
        self.by_id.remove(&key);
        self.session_changes.push((user, false));
        if let Some(v) = self.by_user.get_mut(&user) {
            v.retain(|&i| i != index);
            if v.is_empty() {
                self.by_user.remove(&user);
            }
        }
        for g in &guilds {
            if let Some(v) = self.by_guild.get_mut(g) {
                v.retain(|&i| i != index);
                if v.is_empty() {
                    self.by_guild.remove(g);
                }
            }
        }
        self.free.push(index);
        Some(TakenSession {
            session: slot.session,
            guilds,
        })
    }

    /// Dispatches `event` to every session of this shard; returns how many received it.
    pub fn broadcast(&mut self, event: &SharedEvent) -> usize {
        let mut n = 0;
        for i in 0..self.slots.len() as u32 {
            n += usize::from(self.deliver_index(i, event));
        }
        n
    }

    /// Dispatches to the sessions of guild `g`; `allowed` (sorted user ids) narrows it to the
    /// users who may see the event; sessions without the MESSAGE_CONTENT intent get
    /// `without_content` when given. Returns the deliveries.
    pub fn dispatch_guild(
        &mut self,
        g: u64,
        event: &SharedEvent,
        without_content: Option<&SharedEvent>,
        allowed: Option<&[u64]>,
    ) -> usize {
        // Take the list out (no copy per event on the fan-out path) so sessions can be borrowed
        // mutably; delivering never changes the guild index, so it goes back unchanged.
        let Some(list) = self.by_guild.get_mut(&g).map(std::mem::take) else {
            return 0;
        };
        let mut n = 0;
        for &i in &list {
            let Some(Some(slot)) = self.slots.get(i as usize) else {
                continue;
            };
            if let Some(a) = allowed
                && a.binary_search(&slot.session.user_id()).is_err()
            {
                continue;
            }
            let ev = match without_content {
                Some(w)
                    if slot.session.intents() & gateway_core::gateway::intents::MESSAGE_CONTENT
                        == 0 =>
                {
                    w
                }
                _ => event,
            };
            n += usize::from(self.deliver_index(i, ev));
        }
        self.by_guild.insert(g, list);
        n
    }

    /// Dispatches to every session of `user` on this shard.
    pub fn dispatch_user(&mut self, user: u64, event: &SharedEvent) -> usize {
        let Some(list) = self.by_user.get(&user).cloned() else {
            return 0;
        };
        list.into_iter()
            .map(|i| usize::from(self.deliver_index(i, event)))
            .sum()
    }

    /// Dispatches to one session.
    pub fn dispatch_to(&mut self, r: SessionRef, event: &SharedEvent) -> bool {
        if self.get_mut(r).is_none() {
            return false;
        }
        self.deliver_index(r.index, event)
    }

    fn deliver_index(&mut self, i: u32, event: &SharedEvent) -> bool {
        let Some(Some(slot)) = self.slots.get_mut(i as usize) else {
            return false;
        };
        if !(slot.session.is_ready() || slot.session.is_resumable()) {
            return false;
        }
        match slot.session.dispatch(event) {
            Ok(true) => {
                self.stats.deliveries += 1;
                if slot.conn.is_some() {
                    self.dirty.push(i);
                }
                true
            }
            Ok(false) => false,
            Err(_) => {
                // Output overflow: the session closed itself (resumable); its close frame goes
                // out and the connection is shut.
                self.stats.slow_consumers += 1;
                slot.decoder.note_close_sent();
                self.dirty.push(i);
                false
            }
        }
    }

    /// Drops detached sessions past their resume window (cheap to call every turn).
    pub fn reap(&mut self, now_ms: u64) {
        if now_ms < self.next_reap_ms {
            return;
        }
        self.next_reap_ms = now_ms + REAP_INTERVAL_MS;
        for i in 0..self.slots.len() as u32 {
            let expired = matches!(
                self.slots.get(i as usize),
                Some(Some(s)) if s.conn.is_none() && now_ms >= s.detached_at_ms + RESUME_WINDOW_MS
            );
            if expired {
                self.stats.expired += 1;
                self.remove(i);
            }
        }
    }

    /// Queues op 7 Reconnect on every attached session (drain); returns their connections.
    pub fn reconnect_all(&mut self, out: &mut Vec<ConnRef>) {
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let Some(s) = s
                && let Some(c) = s.conn
            {
                let _ = s.session.reconnect();
                self.dirty.push(i as u32);
                out.push(c);
            }
        }
    }

    /// Whether `r` has frames waiting, or has closed (its close must still reach the socket).
    pub fn has_output(&mut self, r: SessionRef) -> bool {
        self.get_mut(r)
            .is_none_or(|s| s.session.is_closed() || !s.session.output().is_empty())
    }

    /// Moves the queued frames of `r` into `f` (head to copy, shared tail handed over; empty
    /// for frames without one); returns whether the session has closed (the connection is shut
    /// once this output is sent).
    pub fn drain_output(&mut self, r: SessionRef, mut f: impl FnMut(&[u8], Bytes)) -> bool {
        let Some(slot) = self.get_mut(r) else {
            return true;
        };
        while let Some(mut frame) = slot.session.output().pop() {
            let tail = frame.take_tail();
            f(frame.head(), tail);
        }
        slot.session.is_closed()
    }

    /// The session id and user of `r`, once Ready.
    pub fn identity(&mut self, r: SessionRef) -> Option<(String, u64)> {
        let s = self.get_mut(r)?;
        s.session
            .is_ready()
            .then(|| (s.session.session_id().to_owned(), s.session.user_id()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_name_their_shard() {
        let mut g = GatewayState::new(7, GatewayConfig::new(b"k"), "ws://x".into(), 1);
        let id = g.new_session_id();
        assert_eq!(id.len(), SESSION_ID_LEN);
        assert_eq!(shard_of_session_id(&id), Some(7));
        assert_ne!(id, g.new_session_id());
        assert_eq!(shard_of_session_id("zz"), None);
        assert_eq!(shard_of_session_id(&"g".repeat(32)), None);
    }
}
