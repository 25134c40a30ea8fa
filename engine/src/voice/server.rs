//! One shard's voice server: the participants guild owner shards assigned to it, their voice
//! gateway connections (TLS + WebSocket + `sfu::VoiceSession`), the relays between the sessions
//! of a channel, and the SFU (`sfu::VoiceShard`) behind the shard's UDP port.
//!
//! Rooms are keyed by *channel* id: all voice channels of a guild share this server (and its
//! port), but only the users of one channel hear each other. Everything here runs on the
//! server's shard; guild owner shards reach it through `register` / `update` / `remove`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use gateway_core::ws::{Decoder, HandshakeStatus, OpCode, WsCloseCode, WsEvent};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::ServerConfig;
use sfu::limits::{
    IPDISC_PACKET_LEN, PACKET_LEN_MAX, ROOM_PARTICIPANTS_MAX, SECRET_KEY_LEN,
    VOICE_MESSAGE_LEN_MAX, VOICE_RESUME_WINDOW_MS,
};
use sfu::room::RoomCounters;
use sfu::voice_gateway::{
    AuthRejection, Grant, IdentifyRequest, ResumeRequest, VoiceAuthority, VoiceClose, VoiceEvent,
    VoiceOutbox, VoiceSession,
};
use sfu::{OutBatch, VoiceFlags, VoiceShard};

use super::tls::{TlsPipe, TlsStatus};
use crate::ctx::ConnRef;
use crate::driver::SocketId;

/// Random bytes in a voice token (hex-encoded in VOICE_SERVER_UPDATE).
pub const VOICE_TOKEN_BYTES: usize = 16;
/// A TLS connection must finish its WebSocket upgrade this soon after accept.
pub const VOICE_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// How often session clocks and resume windows are checked (heartbeat timeouts are ~27 s).
pub const VOICE_SWEEP_INTERVAL_MS: u64 = 500;
/// A participant identifying again (after a failover move or any reconnect) gets its IP
/// discovery answer a second time this much later. discord.py keeps its UDP socket and its
/// reader thread across reconnects and registers its discovery listener only after sending the
/// request, so on a fast path the first answer can be read before anyone listens for it and
/// the client waits forever; the copy arrives once it listens (and covers a lost datagram).
/// First connections are answered once: the reader thread only starts with the listener.
pub const VOICE_DISCOVERY_REPEAT_MS: u64 = 50;
/// Repeated discovery answers waiting for their time (further ones are not repeated).
pub const VOICE_DISCOVERY_REPEATS_MAX: usize = 1024;
/// Participants one voice server accepts (each holds up to four SSRCs on the shard's port).
pub const VOICE_MEMBERS_PER_SHARD_MAX: usize =
    sfu::limits::SHARD_SSRCS_MAX / sfu::limits::PARTICIPANT_SSRCS_MAX;

const _: () = assert!(VOICE_MEMBERS_PER_SHARD_MAX >= ROOM_PARTICIPANTS_MAX);

/// Counters of one shard's voice layer, for /metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VoiceStats {
    /// Op 4 commands applied on this (owner) shard.
    pub state_updates: u64,
    /// Op 4 commands refused (not a member, no CONNECT, channel full, not a voice channel).
    pub state_refused: u64,
    /// Voice gateway connections accepted.
    pub connections: u64,
    /// Voice sessions identified.
    pub identifies: u64,
    /// Voice sessions resumed.
    pub resumes: u64,
    /// Voice sessions closed by the server with a voice close code.
    pub closes: u64,
    /// TLS or WebSocket handshakes that failed.
    pub handshake_failures: u64,
    /// Participants assigned to this voice server now.
    pub participants: u64,
    /// UDP datagrams received.
    pub datagrams_in: u64,
    /// Encrypted copies sent to receivers.
    pub forwarded: u64,
    /// Datagrams from an unknown SSRC or an address other than the latched one.
    pub dropped_unknown_source: u64,
    /// Datagrams whose AEAD tag did not verify.
    pub dropped_bad_tag: u64,
    /// Replayed or too old datagrams.
    pub dropped_replay: u64,
    /// Opus silence frames not forwarded.
    pub dropped_silence: u64,
    /// Media of muted senders or senders without SPEAK.
    pub dropped_muted: u64,
    /// Unparseable datagrams.
    pub dropped_malformed: u64,
    /// Copies not sent because too many sends were in flight.
    pub dropped_send_backlog: u64,
    /// Keepalives ignored.
    pub keepalives: u64,
    /// RTCP packets absorbed.
    pub rtcp_absorbed: u64,
    /// IP discovery requests answered.
    pub discovery_answered: u64,
    /// UDP sends that failed.
    pub send_errors: u64,
    /// IP discovery answers sent a second time to reconnecting participants.
    pub discovery_repeated: u64,
    /// Failover (owner side): guild moves to another voice server started.
    pub failover_moves_started: u64,
    /// Failover (owner side): guild moves finished (users told where to go).
    pub failover_guilds_moved: u64,
    /// Failover (owner side): VOICE_SERVER_UPDATEs sent to users of moved guilds.
    pub failover_server_updates: u64,
    /// Failover (owner side): users the new server could not take (they left voice).
    pub failover_users_dropped: u64,
    /// Failover (owner side): moves wanted but no other voice server was available.
    pub failover_no_target: u64,
    /// Failover (server side): participants of moved guilds closed here with 4014.
    pub failover_evicted: u64,
    /// Health pings this shard sent to voice servers.
    pub health_pings_sent: u64,
    /// Health pings answered in time.
    pub health_pongs: u64,
    /// Times a voice server was declared down by this shard.
    pub health_servers_down: u64,
    /// Times a voice server declared down answered again.
    pub health_servers_up: u64,
    /// Gauge: voice servers this shard considers down now.
    pub health_down_now: u64,
    /// Gauge: 1 when this shard's voice server is drained.
    pub drained: u64,
    /// Gauge: 1 when this shard's voice server ignores health pings (fault injection).
    pub ignoring_health_pings: u64,
}

impl VoiceStats {
    /// Adds the SFU's packet counters.
    pub fn add_room_counters(&mut self, c: &RoomCounters) {
        self.datagrams_in += c.datagrams_in;
        self.forwarded += c.forwarded;
        self.dropped_unknown_source += c.dropped_unknown_source;
        self.dropped_bad_tag += c.dropped_bad_tag;
        self.dropped_replay += c.dropped_replay;
        self.dropped_silence += c.dropped_silence;
        self.dropped_muted += c.dropped_muted;
        self.dropped_malformed += c.dropped_malformed;
        self.dropped_send_backlog += c.dropped_batch_full;
        self.keepalives += c.keepalives;
        self.rtcp_absorbed += c.rtcp_absorbed;
        self.discovery_answered += c.discovery_answered;
    }
}

/// A participant assigned to this server by its guild's owner shard.
#[derive(Debug)]
struct Member {
    token: String,
    session_id: String,
    channel: u64,
    flags: VoiceFlags,
    /// The voice gateway connection carrying its session, while attached.
    conn: Option<ConnRef>,
    /// Its SSRC while it is in the SFU room.
    ssrc: Option<u32>,
    /// Its session after the connection dropped, with the time it did (resume window).
    detached: Option<(VoiceSession, u64)>,
    /// It came here from another server (failover), or identified here before: its client
    /// reuses a UDP socket, and its discovery answer is repeated.
    reconnecting: bool,
}

#[derive(Debug)]
struct WsSide {
    decoder: Decoder,
    session: VoiceSession,
    /// (guild, user) once identified or resumed.
    key: Option<(u64, u64)>,
}

#[derive(Debug)]
struct TlsConn {
    pipe: TlsPipe,
    ws: Option<WsSide>,
    opened_ms: u64,
    /// Close once queued output has been sent.
    closing: bool,
}

/// One shard's voice server.
pub struct VoiceServer {
    tls_config: Arc<ServerConfig>,
    /// Address announced in VOICE_SERVER_UPDATE (host:port of the TLS listener).
    pub endpoint: SocketAddr,
    /// The UDP socket's IP as announced in Ready.
    public_ip: IpAddr,
    /// The shard's UDP socket.
    pub udp: SocketId,
    /// Its bound address.
    pub udp_addr: SocketAddr,
    /// The SFU.
    pub sfu: VoiceShard<SocketAddr>,
    /// Output of the datagram being handled.
    pub batch: OutBatch<SocketAddr>,
    /// Where a received datagram is copied to be decrypted in place.
    pub scratch: Box<[u8]>,
    rng: SystemRandom,
    members: HashMap<(u64, u64), Member>,
    conns: HashMap<ConnRef, TlsConn>,
    dirty: Vec<ConnRef>,
    next_sweep_ms: u64,
    /// Whether the multishot UDP receive is armed.
    pub recv_armed: bool,
    /// UDP sends in flight.
    pub sends_in_flight: usize,
    /// Counters (the SFU's are added at snapshot time).
    pub stats: VoiceStats,
    outbox: VoiceOutbox,
    heartbeat_interval_ms: u64,
    /// SSRCs of reconnecting participants whose next discovery answer is to be repeated.
    pub discovery_repeat_ssrcs: std::collections::HashSet<u32>,
    /// Repeated discovery answers by due time (ms): (due, destination, answer).
    pub discovery_repeats: std::collections::VecDeque<(u64, SocketAddr, [u8; IPDISC_PACKET_LEN])>,
}

impl std::fmt::Debug for VoiceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceServer")
            .field("endpoint", &self.endpoint)
            .field("udp_addr", &self.udp_addr)
            .field("members", &self.members.len())
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
}

/// A participant moved here by failover (see [`VoiceServer::adopt`]).
#[derive(Debug, Clone)]
pub struct Adoptee {
    /// The user.
    pub user: u64,
    /// Their main gateway session.
    pub session_id: String,
    /// Their voice channel.
    pub channel: u64,
    /// What forwarding needs to know.
    pub flags: VoiceFlags,
}

/// The outcome of [`VoiceServer::adopt`] for one participant.
#[derive(Debug, Clone)]
pub struct Adopted {
    /// The user.
    pub user: u64,
    /// The session the token is for.
    pub session_id: String,
    /// The fresh token, or why the participant could not be taken.
    pub token: Result<String, RegisterError>,
}

/// Why a participant could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The server holds [`VOICE_MEMBERS_PER_SHARD_MAX`] participants.
    #[error("voice server full")]
    Full,
    /// The system random source failed.
    #[error("no randomness")]
    Random,
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Compares without an early exit, so the time taken says nothing about where tokens differ.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

struct Auth<'a> {
    members: &'a mut HashMap<(u64, u64), Member>,
    sfu: &'a mut VoiceShard<SocketAddr>,
    rng: &'a SystemRandom,
    ip: String,
    port: u16,
}

impl VoiceAuthority for Auth<'_> {
    fn identify(&mut self, r: &IdentifyRequest<'_>) -> Result<Grant, AuthRejection> {
        let m = self
            .members
            .get(&(r.server_id, r.user_id))
            .ok_or(AuthRejection::AuthenticationFailed)?;
        if !same_token(&m.token, r.token) || m.session_id != r.session_id {
            return Err(AuthRejection::AuthenticationFailed);
        }
        let ssrc = self
            .sfu
            .allocate_ssrc()
            .ok_or(AuthRejection::ServerNotFound)?;
        let mut secret_key = [0u8; SECRET_KEY_LEN];
        self.rng
            .fill(&mut secret_key)
            .map_err(|_| AuthRejection::ServerNotFound)?;
        Ok(Grant {
            ssrc,
            ip: self.ip.clone(),
            port: self.port,
            secret_key,
        })
    }

    fn resume(&mut self, r: &ResumeRequest<'_>) -> Result<VoiceSession, AuthRejection> {
        let m = self
            .members
            .iter_mut()
            .find(|((g, _), m)| *g == r.server_id && m.session_id == r.session_id)
            .map(|(_, m)| m)
            .ok_or(AuthRejection::SessionNoLongerValid)?;
        if !same_token(&m.token, r.token) {
            return Err(AuthRejection::AuthenticationFailed);
        }
        m.detached
            .take()
            .map(|(s, _)| s)
            .ok_or(AuthRejection::SessionNoLongerValid)
    }
}

fn ws_text(frame: &str, pipe: &mut TlsPipe, scratch: &mut Vec<u8>) {
    scratch.clear();
    gateway_core::ws::write_server_frame(OpCode::Text, frame.as_bytes(), scratch);
    pipe.write(scratch);
}

impl VoiceServer {
    /// A server on an already bound UDP socket; `endpoint` is its TLS listener as clients
    /// reach it, `public_ip` the UDP address announced in Ready.
    pub fn new(
        tls_config: Arc<ServerConfig>,
        endpoint: SocketAddr,
        public_ip: IpAddr,
        udp: SocketId,
        udp_addr: SocketAddr,
    ) -> VoiceServer {
        VoiceServer {
            tls_config,
            endpoint,
            public_ip,
            udp,
            udp_addr,
            sfu: VoiceShard::new(ROOM_PARTICIPANTS_MAX),
            batch: OutBatch::new(sfu::limits::FANOUT_PER_PACKET_MAX),
            scratch: vec![0u8; PACKET_LEN_MAX].into_boxed_slice(),
            rng: SystemRandom::new(),
            members: HashMap::new(),
            conns: HashMap::new(),
            dirty: Vec::new(),
            next_sweep_ms: 0,
            recv_armed: false,
            sends_in_flight: 0,
            stats: VoiceStats::default(),
            outbox: VoiceOutbox::default(),
            heartbeat_interval_ms: sfu::limits::VOICE_HEARTBEAT_INTERVAL_MS,
            discovery_repeat_ssrcs: std::collections::HashSet::new(),
            discovery_repeats: std::collections::VecDeque::new(),
        }
    }

    /// Uses another heartbeat interval in Hello (tests).
    pub fn set_heartbeat_interval_ms(&mut self, ms: u64) {
        self.heartbeat_interval_ms = ms;
    }

    /// Counters, with the SFU's packet counters included.
    pub fn snapshot(&self) -> VoiceStats {
        let mut s = self.stats;
        s.participants = self.members.len() as u64;
        s.add_room_counters(&self.sfu.counters());
        s
    }

    // ----- control plane, from guild owner shards -----

    /// Assigns (or re-assigns, for a new gateway session) a participant; returns its fresh token.
    pub fn register(
        &mut self,
        g: u64,
        u: u64,
        session_id: String,
        channel: u64,
        flags: VoiceFlags,
    ) -> Result<String, RegisterError> {
        if !self.members.contains_key(&(g, u)) && self.members.len() >= VOICE_MEMBERS_PER_SHARD_MAX
        {
            return Err(RegisterError::Full);
        }
        let mut raw = [0u8; VOICE_TOKEN_BYTES];
        self.rng.fill(&mut raw).map_err(|_| RegisterError::Random)?;
        let token = hex(&raw);
        let old_channel = self.members.get(&(g, u)).map(|m| m.channel);
        let same_session = self
            .members
            .get(&(g, u))
            .is_some_and(|m| m.session_id == session_id);
        if old_channel.is_some() && !same_session {
            // Another gateway session takes over the user's voice: the old one ends.
            self.end_participant(g, u, VoiceClose::SessionNoLongerValid);
            self.members.remove(&(g, u));
        }
        match self.members.get_mut(&(g, u)) {
            Some(m) => m.token = token.clone(),
            None => {
                self.members.insert(
                    (g, u),
                    Member {
                        token: token.clone(),
                        session_id,
                        channel,
                        flags,
                        conn: None,
                        ssrc: None,
                        detached: None,
                        reconnecting: false,
                    },
                );
            }
        }
        self.update(g, u, channel, flags);
        Ok(token)
    }

    /// A participant moved to another channel of the guild, or its flags changed.
    pub fn update(&mut self, g: u64, u: u64, channel: u64, flags: VoiceFlags) {
        let Some(m) = self.members.get_mut(&(g, u)) else {
            return;
        };
        let old = m.channel;
        m.flags = flags;
        m.channel = channel;
        let Some(ssrc) = m.ssrc else {
            return;
        };
        if old != channel {
            if self.sfu.move_participant(old, channel, u).is_err() {
                // The target room is full: the user is out of the SFU, and told so.
                self.end_participant(g, u, VoiceClose::Disconnected);
                return;
            }
            self.notify(g, old, u, |s, o| {
                s.send_client_disconnect(u, o);
            });
            self.introduce(g, channel, u, ssrc);
        }
        if let Some(room) = self.sfu.room_mut(channel) {
            let _ = room.set_flags(u, flags);
        }
    }

    /// The participant left voice: its session is closed with 4014 and it leaves the room.
    pub fn remove(&mut self, g: u64, u: u64) {
        self.end_participant(g, u, VoiceClose::Disconnected);
        self.members.remove(&(g, u));
    }

    /// Failover: registers the participants of guild `g` that move here from another server,
    /// each with a fresh token; returns (user, session id, token or why not) per participant.
    pub fn adopt(&mut self, g: u64, users: Vec<Adoptee>) -> Vec<Adopted> {
        users
            .into_iter()
            .map(|a| {
                let token = self.register(g, a.user, a.session_id.clone(), a.channel, a.flags);
                if let Some(m) = self.members.get_mut(&(g, a.user)) {
                    m.reconnecting = true;
                }
                Adopted {
                    user: a.user,
                    session_id: a.session_id,
                    token,
                }
            })
            .collect()
    }

    /// Failover: guild `g` now lives on another server. Its participants' sessions are closed
    /// with 4014 (discord.py then connects to the endpoint of its new VOICE_SERVER_UPDATE) and
    /// they leave their rooms. Returns how many participants there were.
    pub fn evict_guild(&mut self, g: u64) -> usize {
        let users: Vec<u64> = self
            .members
            .keys()
            .filter(|(mg, _)| *mg == g)
            .map(|&(_, u)| u)
            .collect();
        for &u in &users {
            self.end_participant(g, u, VoiceClose::Disconnected);
            self.members.remove(&(g, u));
        }
        self.stats.failover_evicted += users.len() as u64;
        users.len()
    }

    /// Called with every datagram the SFU sends: a discovery answer to a reconnecting
    /// participant is queued to go out again [`VOICE_DISCOVERY_REPEAT_MS`] later.
    pub fn note_sent(&mut self, now_ms: u64, dest: SocketAddr, bytes: &[u8]) {
        if self.discovery_repeat_ssrcs.is_empty() {
            return;
        }
        let Ok(answer) = <[u8; IPDISC_PACKET_LEN]>::try_from(bytes) else {
            return;
        };
        let Ok(d) = sfu::ipdisc::parse(&answer) else {
            return;
        };
        if d.kind != sfu::ipdisc::DiscoveryKind::Response
            || !self.discovery_repeat_ssrcs.remove(&d.ssrc)
            || self.discovery_repeats.len() >= VOICE_DISCOVERY_REPEATS_MAX
        {
            return;
        }
        self.discovery_repeats
            .push_back((now_ms + VOICE_DISCOVERY_REPEAT_MS, dest, answer));
    }

    /// Takes the next repeated discovery answer due at `now_ms`.
    pub fn take_due_repeat(
        &mut self,
        now_ms: u64,
    ) -> Option<(SocketAddr, [u8; IPDISC_PACKET_LEN])> {
        match self.discovery_repeats.front() {
            Some(&(due, _, _)) if due <= now_ms => {
                let (_, dest, answer) = self.discovery_repeats.pop_front()?;
                self.stats.discovery_repeated += 1;
                Some((dest, answer))
            }
            _ => None,
        }
    }

    /// Participants assigned here.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Closes the participant's session with `why` and takes it out of the SFU room.
    fn end_participant(&mut self, g: u64, u: u64, why: VoiceClose) {
        let Some(m) = self.members.get_mut(&(g, u)) else {
            return;
        };
        m.detached = None;
        if let Some(c) = m.conn.take() {
            self.close_conn_with(c, why);
        }
        self.leave_room(g, u);
    }

    fn leave_room(&mut self, g: u64, u: u64) {
        let Some(m) = self.members.get_mut(&(g, u)) else {
            return;
        };
        let Some(ssrc) = m.ssrc.take() else {
            return;
        };
        let channel = m.channel;
        // A discovery answer never asked for is not waited for any more (the set stays small).
        self.discovery_repeat_ssrcs.remove(&ssrc);
        self.sfu.leave(channel, u);
        self.notify(g, channel, u, |s, o| {
            s.send_client_disconnect(u, o);
        });
    }

    /// Sends a voice close code on a connection and closes it after the flush.
    fn close_conn_with(&mut self, c: ConnRef, why: VoiceClose) {
        let Some(tc) = self.conns.get_mut(&c) else {
            return;
        };
        Self::close_tls(tc, why);
        self.stats.closes += 1;
        self.dirty.push(c);
    }

    fn close_tls(tc: &mut TlsConn, why: VoiceClose) {
        if let Some(ws) = tc.ws.as_mut() {
            ws.session.close(why);
            let mut frame = Vec::new();
            if ws
                .decoder
                .start_close(WsCloseCode(why.code()), &why.to_string(), &mut frame)
            {
                tc.pipe.write(&frame);
            }
            // The connection no longer speaks for the participant.
            ws.key = None;
        }
        tc.pipe.close_notify();
        tc.closing = true;
    }

    // ----- relays between the sessions of a channel -----

    fn channel_users(&self, g: u64, channel: u64, except: u64) -> Vec<(u64, u32)> {
        // Control plane (joins, speaking changes): a scan of this server's participants.
        self.members
            .iter()
            .filter(|((mg, mu), m)| *mg == g && *mu != except && m.channel == channel)
            .filter_map(|((_, mu), m)| m.ssrc.map(|s| (*mu, s)))
            .collect()
    }

    /// Runs `f` on the session of every other participant of the channel and sends what it
    /// wrote (attached sessions) or keeps it for their resume (detached ones).
    fn notify(
        &mut self,
        g: u64,
        channel: u64,
        except: u64,
        mut f: impl FnMut(&mut VoiceSession, &mut VoiceOutbox),
    ) {
        for (u, _) in self.channel_users(g, channel, except) {
            self.with_session(g, u, &mut f);
        }
    }

    fn with_session(
        &mut self,
        g: u64,
        u: u64,
        f: &mut impl FnMut(&mut VoiceSession, &mut VoiceOutbox),
    ) {
        let Some(m) = self.members.get_mut(&(g, u)) else {
            return;
        };
        let mut out = std::mem::take(&mut self.outbox);
        out.clear();
        if let Some(c) = m.conn {
            if let Some(tc) = self.conns.get_mut(&c)
                && let Some(ws) = tc.ws.as_mut()
            {
                f(&mut ws.session, &mut out);
                let mut scratch = Vec::new();
                for frame in &out.frames {
                    ws_text(frame, &mut tc.pipe, &mut scratch);
                }
                if !out.frames.is_empty() {
                    self.dirty.push(c);
                }
            }
        } else if let Some((s, _)) = m.detached.as_mut() {
            f(s, &mut out);
        }
        out.clear();
        self.outbox = out;
    }

    /// Tells the channel that `u` (SSRC `ssrc`) is here, and tells `u` who else is.
    fn introduce(&mut self, g: u64, channel: u64, u: u64, ssrc: u32) {
        self.notify(g, channel, u, |s, o| {
            s.send_clients_connect(&[u], o);
            s.send_speaking(u, ssrc, 0, o);
        });
        let others = self.channel_users(g, channel, u);
        let ids: Vec<u64> = others.iter().map(|&(o, _)| o).collect();
        let speaking: Vec<(u64, u32, u32)> = others
            .iter()
            .map(|&(o, s)| {
                let now = self
                    .sfu
                    .room(channel)
                    .and_then(|r| r.speaking(o))
                    .unwrap_or(0);
                (o, s, now)
            })
            .collect();
        if ids.is_empty() {
            return;
        }
        self.with_session(g, u, &mut |s, o| {
            s.send_clients_connect(&ids, o);
            for &(other, ssrc, now) in &speaking {
                s.send_speaking(other, ssrc, now, o);
            }
        });
    }

    // ----- connections -----

    /// A voice gateway connection was accepted.
    pub fn on_accept(&mut self, c: ConnRef, now_ms: u64) -> bool {
        match TlsPipe::new(&self.tls_config) {
            Ok(pipe) => {
                self.conns.insert(
                    c,
                    TlsConn {
                        pipe,
                        ws: None,
                        opened_ms: now_ms,
                        closing: false,
                    },
                );
                self.stats.connections += 1;
                true
            }
            Err(_) => false,
        }
    }

    /// Bytes arrived on a voice gateway connection.
    pub fn on_bytes(&mut self, c: ConnRef, data: &[u8], now_ms: u64) {
        let Some(mut tc) = self.conns.remove(&c) else {
            return;
        };
        if !tc.closing {
            if tc.pipe.feed(data) == TlsStatus::Closed {
                if tc.ws.is_none() {
                    self.stats.handshake_failures += 1;
                }
                tc.closing = true;
            }
            if tc.ws.is_none() {
                self.upgrade(&mut tc, now_ms);
            }
            if tc.ws.is_some() {
                self.decode(c, &mut tc, now_ms);
            }
        }
        self.conns.insert(c, tc);
        self.dirty.push(c);
    }

    fn upgrade(&mut self, tc: &mut TlsConn, now_ms: u64) {
        match gateway_core::ws::parse_request(&tc.pipe.plain) {
            Ok(HandshakeStatus::Partial) => {}
            Ok(HandshakeStatus::Complete { request, consumed }) => {
                let mut head = Vec::new();
                gateway_core::ws::write_response(&request, &mut head);
                tc.pipe.write(&head);
                tc.pipe.plain.drain(..consumed.min(tc.pipe.plain.len()));
                let mut out = std::mem::take(&mut self.outbox);
                out.clear();
                let session =
                    VoiceSession::open_with_interval(now_ms, self.heartbeat_interval_ms, &mut out);
                let mut scratch = Vec::new();
                for frame in &out.frames {
                    ws_text(frame, &mut tc.pipe, &mut scratch);
                }
                out.clear();
                self.outbox = out;
                tc.ws = Some(WsSide {
                    decoder: Decoder::with_limits(VOICE_MESSAGE_LEN_MAX, VOICE_MESSAGE_LEN_MAX),
                    session,
                    key: None,
                });
            }
            Err(e) => {
                let mut head = Vec::new();
                gateway_core::ws::write_error_response(e, &mut head);
                tc.pipe.write(&head);
                tc.pipe.close_notify();
                tc.closing = true;
                self.stats.handshake_failures += 1;
            }
        }
    }

    fn decode(&mut self, c: ConnRef, tc: &mut TlsConn, now_ms: u64) {
        let mut texts: Vec<String> = Vec::new();
        let mut ctrl = Vec::new();
        let mut peer_closed = false;
        if let Some(ws) = tc.ws.as_mut() {
            let mut consumed = 0;
            let plain = &mut tc.pipe.plain;
            while consumed < plain.len() {
                let rest = plain.get_mut(consumed..).unwrap_or_default();
                let (n, ev) = ws.decoder.next(rest, &mut ctrl);
                consumed += n;
                match ev {
                    Ok(WsEvent::NeedMore(_)) => break,
                    Ok(WsEvent::Text(t)) => texts.push(t.to_owned()),
                    // DAVE binary frames cannot appear (we negotiate version 0); ignore any.
                    Ok(WsEvent::Binary(_) | WsEvent::Skipped | WsEvent::Ping(_))
                    | Ok(WsEvent::Pong(_)) => {}
                    Ok(WsEvent::Close { .. }) | Err(_) => {
                        peer_closed = true;
                        consumed = plain.len();
                        break;
                    }
                }
            }
            plain.drain(..consumed.min(plain.len()));
        }
        tc.pipe.write(&ctrl);
        for t in &texts {
            if tc.closing {
                break;
            }
            self.on_text(c, tc, t, now_ms);
        }
        if peer_closed {
            tc.pipe.close_notify();
            tc.closing = true;
        }
    }

    fn on_text(&mut self, c: ConnRef, tc: &mut TlsConn, text: &str, now_ms: u64) {
        let Some(ws) = tc.ws.as_mut() else {
            return;
        };
        let mut out = std::mem::take(&mut self.outbox);
        out.clear();
        let mut auth = Auth {
            members: &mut self.members,
            sfu: &mut self.sfu,
            rng: &self.rng,
            ip: self.public_ip.to_string(),
            port: self.udp_addr.port(),
        };
        let result = ws.session.handle_text(now_ms, text, &mut auth, &mut out);
        let mut scratch = Vec::new();
        for frame in &out.frames {
            ws_text(frame, &mut tc.pipe, &mut scratch);
        }
        let events = std::mem::take(&mut out.events);
        out.clear();
        self.outbox = out;
        for ev in events {
            self.apply(c, tc, ev);
        }
        if let Err(why) = result {
            let key = tc.ws.as_ref().and_then(|w| w.key);
            Self::close_tls(tc, why);
            self.stats.closes += 1;
            if let Some((g, u)) = key
                && let Some(m) = self.members.get_mut(&(g, u))
                && m.conn == Some(c)
            {
                // A session closed for an error cannot be resumed: its user leaves the room
                // until it identifies again.
                m.conn = None;
                self.leave_room(g, u);
            }
        }
    }

    fn apply(&mut self, c: ConnRef, tc: &mut TlsConn, ev: VoiceEvent) {
        match ev {
            VoiceEvent::Identified {
                server_id: g,
                user_id: u,
                ssrc,
            } => {
                self.stats.identifies += 1;
                let Some(m) = self.members.get_mut(&(g, u)) else {
                    return;
                };
                // An older session of this user (another connection, or detached) ends here.
                m.detached = None;
                let old = m.conn.take().filter(|&o| o != c);
                if let Some(o) = old {
                    self.close_conn_with(o, VoiceClose::SessionNoLongerValid);
                }
                self.leave_room(g, u);
                let Some(m) = self.members.get_mut(&(g, u)) else {
                    return;
                };
                // discord.py sends IP discovery before Select Protocol: admit now.
                if self.sfu.admit(m.channel, u, ssrc, m.flags).is_err() {
                    Self::close_tls(tc, VoiceClose::ServerNotFound);
                    self.stats.closes += 1;
                    return;
                }
                m.ssrc = Some(ssrc);
                m.conn = Some(c);
                if m.reconnecting && self.discovery_repeat_ssrcs.len() < VOICE_DISCOVERY_REPEATS_MAX
                {
                    self.discovery_repeat_ssrcs.insert(ssrc);
                }
                // Any later Identify of this participant comes from a client that already
                // has its UDP socket (and reader) running.
                m.reconnecting = true;
                if let Some(ws) = tc.ws.as_mut() {
                    ws.key = Some((g, u));
                }
            }
            VoiceEvent::ProtocolSelected {
                user_id: u,
                ssrc,
                mode,
                secret_key,
                ..
            } => {
                let Some((g, channel)) = self.key_channel(tc) else {
                    return;
                };
                if self
                    .sfu
                    .set_transport(channel, u, mode, &secret_key)
                    .is_err()
                {
                    return;
                }
                // The newcomer's own connection is out of the table while it is handled, so
                // `introduce` reaches the others; tell the newcomer about them here.
                self.introduce(g, channel, u, ssrc);
                let others = self.channel_users(g, channel, u);
                if let Some(ws) = tc.ws.as_mut()
                    && !others.is_empty()
                {
                    let mut out = std::mem::take(&mut self.outbox);
                    out.clear();
                    let ids: Vec<u64> = others.iter().map(|&(o, _)| o).collect();
                    ws.session.send_clients_connect(&ids, &mut out);
                    for &(o, s) in &others {
                        let now = self
                            .sfu
                            .room(channel)
                            .and_then(|r| r.speaking(o))
                            .unwrap_or(0);
                        ws.session.send_speaking(o, s, now, &mut out);
                    }
                    let mut scratch = Vec::new();
                    for frame in &out.frames {
                        ws_text(frame, &mut tc.pipe, &mut scratch);
                    }
                    out.clear();
                    self.outbox = out;
                }
            }
            VoiceEvent::Speaking {
                user_id: u,
                ssrc,
                speaking,
                ..
            } => {
                let Some((g, channel)) = self.key_channel(tc) else {
                    return;
                };
                if let Some(room) = self.sfu.room_mut(channel) {
                    let _ = room.set_speaking(u, speaking);
                }
                self.notify(g, channel, u, |s, o| {
                    s.send_speaking(u, ssrc, speaking, o);
                });
            }
            VoiceEvent::Video {
                user_id: u,
                audio_ssrc,
                video_ssrc,
                rtx_ssrc,
            } => {
                let Some((g, channel)) = self.key_channel(tc) else {
                    return;
                };
                for s in [video_ssrc, rtx_ssrc].into_iter().filter(|&s| s != 0) {
                    let _ = self.sfu.add_ssrc(channel, u, s);
                }
                self.notify(g, channel, u, |s, o| {
                    s.send_video(u, audio_ssrc, video_ssrc, rtx_ssrc, o);
                });
            }
            VoiceEvent::Resumed { user_id: u, .. } => {
                self.stats.resumes += 1;
                let g = tc.ws.as_ref().and_then(|w| w.session.server_id());
                if let Some(g) = g
                    && let Some(m) = self.members.get_mut(&(g, u))
                {
                    m.conn = Some(c);
                    if let Some(ws) = tc.ws.as_mut() {
                        ws.key = Some((g, u));
                    }
                }
            }
        }
    }

    fn key_channel(&self, tc: &TlsConn) -> Option<(u64, u64)> {
        let (g, u) = tc.ws.as_ref()?.key?;
        Some((g, self.members.get(&(g, u))?.channel))
    }

    /// Moves ciphertext ready for connection `c` into `out`; true when it must be closed after.
    pub fn drain(&mut self, c: ConnRef, out: &mut Vec<u8>) -> bool {
        let Some(tc) = self.conns.get_mut(&c) else {
            return true;
        };
        tc.pipe.drain(out);
        tc.closing
    }

    /// The connection is gone: its session stays resumable for `VOICE_RESUME_WINDOW_MS`.
    pub fn on_closed(&mut self, c: ConnRef, now_ms: u64) {
        let Some(tc) = self.conns.remove(&c) else {
            return;
        };
        let Some(ws) = tc.ws else {
            return;
        };
        let Some((g, u)) = ws.key else {
            return;
        };
        let Some(m) = self.members.get_mut(&(g, u)) else {
            return;
        };
        if m.conn != Some(c) {
            return;
        }
        m.conn = None;
        let mut session = ws.session;
        if session.closed().is_none() {
            session.detach();
            m.detached = Some((session, now_ms));
        }
    }

    /// Connections with output to move to the socket.
    pub fn take_dirty(&mut self, out: &mut Vec<ConnRef>) {
        out.append(&mut self.dirty);
    }

    /// Whether connections wait for their output to be collected.
    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Session clocks (heartbeat, Identify), handshake deadlines and resume windows.
    pub fn sweep(&mut self, now_ms: u64) {
        if now_ms < self.next_sweep_ms {
            return;
        }
        self.next_sweep_ms = now_ms + VOICE_SWEEP_INTERVAL_MS;
        let mut expired: Vec<(ConnRef, Option<VoiceClose>)> = Vec::new();
        for (&c, tc) in &mut self.conns {
            if tc.closing {
                continue;
            }
            match tc.ws.as_mut() {
                None if now_ms.saturating_sub(tc.opened_ms) >= VOICE_HANDSHAKE_TIMEOUT_MS => {
                    expired.push((c, None));
                }
                None => {}
                Some(ws) => {
                    if let Err(why) = ws.session.handle_timeout(now_ms) {
                        expired.push((c, Some(why)));
                    }
                }
            }
        }
        for (c, why) in expired {
            match why {
                Some(why) => {
                    let key = self
                        .conns
                        .get(&c)
                        .and_then(|tc| tc.ws.as_ref())
                        .and_then(|w| w.key);
                    self.close_conn_with(c, why);
                    if let Some((g, u)) = key
                        && let Some(m) = self.members.get_mut(&(g, u))
                        && m.conn == Some(c)
                    {
                        m.conn = None;
                        self.leave_room(g, u);
                    }
                }
                None => {
                    self.stats.handshake_failures += 1;
                    if let Some(tc) = self.conns.get_mut(&c) {
                        tc.pipe.close_notify();
                        tc.closing = true;
                    }
                    self.dirty.push(c);
                }
            }
        }
        let stale: Vec<(u64, u64)> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.detached
                    .as_ref()
                    .is_some_and(|(_, at)| now_ms.saturating_sub(*at) >= VOICE_RESUME_WINDOW_MS)
            })
            .map(|(k, _)| *k)
            .collect();
        for (g, u) in stale {
            if let Some(m) = self.members.get_mut(&(g, u)) {
                m.detached = None;
            }
            self.leave_room(g, u);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> VoiceServer {
        let tls = super::super::tls::VoiceTls::new(None, &["127.0.0.1".to_owned()]).expect("tls");
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        VoiceServer::new(tls.config, addr, addr.ip(), SocketId(0), addr)
    }

    fn adoptee(user: u64) -> Adoptee {
        Adoptee {
            user,
            session_id: format!("session-{user}"),
            channel: 7,
            flags: VoiceFlags::default(),
        }
    }

    #[test]
    fn adopted_participants_get_fresh_tokens_and_eviction_takes_only_their_guild() {
        let mut v = server();
        let first = v.register(1, 10, "session-10".into(), 7, VoiceFlags::default());
        let first = first.expect("registered");
        let adopted = v.adopt(1, vec![adoptee(10), adoptee(11)]);
        assert_eq!(adopted.len(), 2);
        let t10 = adopted[0].token.clone().expect("token");
        assert_ne!(t10, first, "a moved user gets a new token");
        assert_eq!(t10.len(), VOICE_TOKEN_BYTES * 2);
        assert_eq!(adopted[1].session_id, "session-11");
        v.adopt(2, vec![adoptee(20)]);
        assert_eq!(v.member_count(), 3);
        assert_eq!(v.evict_guild(1), 2);
        assert_eq!(v.member_count(), 1, "the other guild stays");
        assert_eq!(v.evict_guild(1), 0, "idempotent");
        assert_eq!(v.snapshot().failover_evicted, 2);
        assert_eq!(v.snapshot().participants, 1);
    }

    #[test]
    fn a_reconnecting_participants_discovery_answer_is_repeated_once_later() {
        let mut v = server();
        let dest: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let mut answer = [0u8; IPDISC_PACKET_LEN];
        sfu::ipdisc::build_response(42, "127.0.0.1", 5000, &mut answer).expect("answer");
        v.note_sent(0, dest, &answer);
        assert!(v.discovery_repeats.is_empty(), "first connections: once");
        v.discovery_repeat_ssrcs.insert(42);
        v.note_sent(10, dest, &[0x80, 0x78, 0, 1]);
        v.note_sent(10, dest, &answer);
        assert_eq!(v.take_due_repeat(10 + VOICE_DISCOVERY_REPEAT_MS - 1), None);
        assert_eq!(
            v.take_due_repeat(10 + VOICE_DISCOVERY_REPEAT_MS),
            Some((dest, answer))
        );
        v.note_sent(100, dest, &answer);
        assert_eq!(
            v.take_due_repeat(10_000),
            None,
            "repeated once per identify"
        );
        assert_eq!(v.snapshot().discovery_repeated, 1);
    }

    #[test]
    fn tokens_are_hex_and_compared_whole() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "abcd"));
    }
}
