//! One voice gateway session: handshake, heartbeats, resume buffer and relayed notifications.

#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::VecDeque;

use super::close::VoiceClose;
use super::messages::{self, ClientCommand};
use crate::crypto::Mode;
use crate::limits::{
    SECRET_KEY_LEN, VOICE_CLIENTS_CONNECT_MAX, VOICE_HEARTBEAT_INTERVAL_MS,
    VOICE_HEARTBEAT_TIMEOUT_MS, VOICE_IDENTIFY_TIMEOUT_MS, VOICE_RESUME_BUFFER_MAX,
};

/// What the engine checked and allocated for an Identify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// A fresh SSRC, unique in the room.
    pub ssrc: u32,
    /// The UDP address clients send media to (the shard's voice port).
    pub ip: String,
    /// The UDP port.
    pub port: u16,
    /// A fresh random key (the engine draws it from `ring::rand::SystemRandom`).
    pub secret_key: [u8; SECRET_KEY_LEN],
}

/// Why the engine refused an Identify or Resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthRejection {
    /// Wrong token: closes with 4004.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// The server id is not served here: closes with 4011.
    #[error("server not found")]
    ServerNotFound,
    /// No resumable session with that id: closes with 4006.
    #[error("session no longer valid")]
    SessionNoLongerValid,
}

impl From<AuthRejection> for VoiceClose {
    fn from(r: AuthRejection) -> Self {
        match r {
            AuthRejection::AuthenticationFailed => VoiceClose::AuthenticationFailed,
            AuthRejection::ServerNotFound => VoiceClose::ServerNotFound,
            AuthRejection::SessionNoLongerValid => VoiceClose::SessionNoLongerValid,
        }
    }
}

/// The fields of an Identify the engine checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentifyRequest<'a> {
    /// Guild (or DM channel) id.
    pub server_id: u64,
    /// The user.
    pub user_id: u64,
    /// The main gateway session id.
    pub session_id: &'a str,
    /// The voice token.
    pub token: &'a str,
    /// Highest DAVE version the client supports (this server always answers 0).
    pub max_dave_protocol_version: u16,
}

/// The fields of a Resume the engine checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeRequest<'a> {
    /// Guild (or DM channel) id.
    pub server_id: u64,
    /// The main gateway session id used to Identify.
    pub session_id: &'a str,
    /// The voice token.
    pub token: &'a str,
}

/// The engine's side of authentication and session lookup.
pub trait VoiceAuthority {
    /// Checks an Identify and allocates the SSRC, endpoint and key.
    fn identify(&mut self, request: &IdentifyRequest<'_>) -> Result<Grant, AuthRejection>;

    /// Checks a Resume and hands back the detached session it continues (taken out of the
    /// engine's table). The session's identity is checked again here.
    fn resume(&mut self, request: &ResumeRequest<'_>) -> Result<VoiceSession, AuthRejection>;
}

/// Things the engine must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoiceEvent {
    /// Identify accepted and Ready sent.
    Identified {
        /// Guild (or DM channel) id.
        server_id: u64,
        /// The user.
        user_id: u64,
        /// The SSRC granted.
        ssrc: u32,
    },
    /// Session Description sent: the participant can join the room with this mode and key.
    ProtocolSelected {
        /// The user.
        user_id: u64,
        /// Its audio SSRC.
        ssrc: u32,
        /// The mode it chose.
        mode: Mode,
        /// The key sent to it.
        secret_key: [u8; SECRET_KEY_LEN],
        /// The address the client says IP discovery gave it.
        address: String,
        /// The port the client says IP discovery gave it.
        port: u16,
    },
    /// The client's speaking state; relay it to the others with `send_speaking`.
    Speaking {
        /// The user.
        user_id: u64,
        /// Its audio SSRC (the granted one, whatever the client claimed).
        ssrc: u32,
        /// Bitfield: 1 microphone, 2 soundshare, 4 priority.
        speaking: u32,
        /// Client-reported delay.
        delay: u32,
    },
    /// The client announced video SSRCs (0 = none): the engine adds them to the room with
    /// `VoiceShard::add_ssrc` and relays them to the others with `send_video`.
    Video {
        /// The user.
        user_id: u64,
        /// Its audio SSRC (the granted one).
        audio_ssrc: u32,
        /// Video SSRC, 0 when video is off.
        video_ssrc: u32,
        /// Retransmission SSRC, 0 when none.
        rtx_ssrc: u32,
    },
    /// The session continued on this connection.
    Resumed {
        /// The user.
        user_id: u64,
        /// Its audio SSRC.
        ssrc: u32,
    },
}

impl VoiceEvent {
    /// For [`VoiceEvent::ProtocolSelected`], the room membership it calls for.
    pub fn to_join(&self, flags: crate::room::VoiceFlags) -> Option<crate::room::Join> {
        match self {
            VoiceEvent::ProtocolSelected {
                user_id,
                ssrc,
                mode,
                secret_key,
                ..
            } => Some(crate::room::Join {
                user_id: *user_id,
                ssrc: *ssrc,
                mode: *mode,
                secret_key: *secret_key,
                flags,
            }),
            _ => None,
        }
    }
}

/// Where a session writes what the engine must send and do. Reuse it across calls.
#[derive(Debug, Default)]
pub struct VoiceOutbox {
    /// Text frames to send, in order.
    pub frames: Vec<String>,
    /// Events, in order.
    pub events: Vec<VoiceEvent>,
}

impl VoiceOutbox {
    /// Empties both queues, keeping their memory.
    pub fn clear(&mut self) {
        self.frames.clear();
        self.events.clear();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingIdentify,
    AwaitingSelectProtocol,
    Established,
    Closed(VoiceClose),
}

#[derive(Debug, Clone)]
struct Identity {
    server_id: u64,
    user_id: u64,
    session_id: String,
    grant: Grant,
    mode: Option<Mode>,
}

/// One voice gateway session. It outlives its connection: after [`VoiceSession::detach`] the
/// engine keeps it until a Resume hands it back (through [`VoiceAuthority::resume`]) or the
/// resume window passes.
#[derive(Debug)]
pub struct VoiceSession {
    phase: Phase,
    attached: bool,
    heartbeat_interval_ms: u64,
    heartbeat_deadline_ms: u64,
    identify_deadline_ms: Option<u64>,
    identity: Option<Identity>,
    seq: u64,
    replay: VecDeque<(u64, String)>,
    /// Highest seq evicted from `replay` before the client acknowledged it.
    replay_floor: u64,
}

impl VoiceSession {
    /// A new connection: writes Hello to `out` and starts the Identify and heartbeat clocks.
    pub fn open(now_ms: u64, out: &mut VoiceOutbox) -> Self {
        Self::open_with_interval(now_ms, VOICE_HEARTBEAT_INTERVAL_MS, out)
    }

    /// Like [`VoiceSession::open`] with another heartbeat interval (tests, simulations). The
    /// heartbeat timeout stays in the same proportion as the defaults.
    pub fn open_with_interval(now_ms: u64, interval_ms: u64, out: &mut VoiceOutbox) -> Self {
        out.frames.push(messages::hello(interval_ms));
        let mut s = VoiceSession {
            phase: Phase::AwaitingIdentify,
            attached: true,
            heartbeat_interval_ms: interval_ms,
            heartbeat_deadline_ms: 0,
            identify_deadline_ms: Some(now_ms.saturating_add(VOICE_IDENTIFY_TIMEOUT_MS)),
            identity: None,
            seq: 0,
            replay: VecDeque::with_capacity(VOICE_RESUME_BUFFER_MAX),
            replay_floor: 0,
        };
        s.heartbeat_deadline_ms = now_ms.saturating_add(s.heartbeat_timeout_ms());
        s
    }

    fn heartbeat_timeout_ms(&self) -> u64 {
        self.heartbeat_interval_ms
            .saturating_mul(VOICE_HEARTBEAT_TIMEOUT_MS)
            / VOICE_HEARTBEAT_INTERVAL_MS
    }

    /// The user, once identified.
    pub fn user_id(&self) -> Option<u64> {
        self.identity.as_ref().map(|i| i.user_id)
    }

    /// The guild (server) id, once identified.
    pub fn server_id(&self) -> Option<u64> {
        self.identity.as_ref().map(|i| i.server_id)
    }

    /// The main gateway session id, once identified.
    pub fn session_id(&self) -> Option<&str> {
        self.identity.as_ref().map(|i| i.session_id.as_str())
    }

    /// The granted SSRC, once identified.
    pub fn ssrc(&self) -> Option<u32> {
        self.identity.as_ref().map(|i| i.grant.ssrc)
    }

    /// The selected mode, once Select Protocol succeeded.
    pub fn mode(&self) -> Option<Mode> {
        self.identity.as_ref().and_then(|i| i.mode)
    }

    /// True once Session Description was sent.
    pub fn is_established(&self) -> bool {
        self.phase == Phase::Established
    }

    /// The close code, once closed.
    pub fn closed(&self) -> Option<VoiceClose> {
        match self.phase {
            Phase::Closed(c) => Some(c),
            _ => None,
        }
    }

    /// Last sequence number given to a server message.
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// True while a connection is attached.
    pub fn is_attached(&self) -> bool {
        self.attached
    }

    /// When to call [`VoiceSession::handle_timeout`] next; `None` when detached or closed.
    pub fn poll_timeout(&self) -> Option<u64> {
        if !self.attached || self.closed().is_some() {
            return None;
        }
        Some(match self.identify_deadline_ms {
            Some(i) => i.min(self.heartbeat_deadline_ms),
            None => self.heartbeat_deadline_ms,
        })
    }

    /// Checks the clocks; an error means close the connection with that code.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<(), VoiceClose> {
        if let Phase::Closed(c) = self.phase {
            return Err(c);
        }
        if !self.attached {
            return Ok(());
        }
        let identify_late = self.identify_deadline_ms.is_some_and(|d| now_ms >= d);
        if identify_late || now_ms >= self.heartbeat_deadline_ms {
            return Err(self.fail(VoiceClose::SessionTimeout));
        }
        Ok(())
    }

    /// The connection went away without a close we chose; the session stays for a Resume.
    pub fn detach(&mut self) {
        self.attached = false;
    }

    /// Closes the session from the server side (4014 when the user is removed from the channel,
    /// 4015 when this voice server is going away). Returns the code to send.
    pub fn close(&mut self, reason: VoiceClose) -> VoiceClose {
        self.fail(reason)
    }

    fn fail(&mut self, reason: VoiceClose) -> VoiceClose {
        self.phase = Phase::Closed(reason);
        reason
    }

    /// Handles one text message from the client. On error the engine closes the WebSocket with
    /// that code; the session stays closed.
    pub fn handle_text(
        &mut self,
        now_ms: u64,
        text: &str,
        auth: &mut impl VoiceAuthority,
        out: &mut VoiceOutbox,
    ) -> Result<(), VoiceClose> {
        if let Phase::Closed(c) = self.phase {
            return Err(c);
        }
        let result = messages::decode(text).and_then(|cmd| self.dispatch(now_ms, cmd, auth, out));
        result.map_err(|c| self.fail(c))
    }

    fn dispatch(
        &mut self,
        now_ms: u64,
        cmd: ClientCommand,
        auth: &mut impl VoiceAuthority,
        out: &mut VoiceOutbox,
    ) -> Result<(), VoiceClose> {
        match cmd {
            ClientCommand::Heartbeat(hb) => {
                self.heartbeat_deadline_ms = now_ms.saturating_add(self.heartbeat_timeout_ms());
                if let Some(ack) = hb.seq_ack {
                    self.acknowledge(ack);
                }
                out.frames.push(messages::heartbeat_ack(&hb));
                Ok(())
            }
            ClientCommand::Identify(id) => self.identify(&id, auth, out),
            ClientCommand::Resume(r) => self.resume(now_ms, &r, auth, out),
            ClientCommand::SelectProtocol(sp) => self.select_protocol(&sp, out),
            ClientCommand::Speaking(s) => {
                let identity = self.identity.as_ref().ok_or(VoiceClose::NotAuthenticated)?;
                out.events.push(VoiceEvent::Speaking {
                    user_id: identity.user_id,
                    ssrc: identity.grant.ssrc,
                    speaking: s.speaking,
                    delay: s.delay,
                });
                Ok(())
            }
            ClientCommand::Video(v) => {
                let identity = self.identity.as_ref().ok_or(VoiceClose::NotAuthenticated)?;
                out.events.push(VoiceEvent::Video {
                    user_id: identity.user_id,
                    audio_ssrc: identity.grant.ssrc,
                    video_ssrc: v.video_ssrc,
                    rtx_ssrc: v.rtx_ssrc,
                });
                Ok(())
            }
            ClientCommand::Ignored(_) => {
                if self.identity.is_none() {
                    return Err(VoiceClose::NotAuthenticated);
                }
                Ok(())
            }
        }
    }

    fn identify(
        &mut self,
        id: &messages::Identify,
        auth: &mut impl VoiceAuthority,
        out: &mut VoiceOutbox,
    ) -> Result<(), VoiceClose> {
        if self.phase != Phase::AwaitingIdentify {
            return Err(VoiceClose::AlreadyAuthenticated);
        }
        let token = id.token.strip_prefix("Bot ").unwrap_or(&id.token);
        let grant = auth.identify(&IdentifyRequest {
            server_id: id.server_id,
            user_id: id.user_id,
            session_id: &id.session_id,
            token,
            max_dave_protocol_version: id.max_dave_protocol_version.unwrap_or(0),
        })?;
        let ready = |seq| {
            messages::ready(
                seq,
                grant.ssrc,
                &grant.ip,
                grant.port,
                self.heartbeat_interval_ms,
            )
        };
        let seq = self.seq + 1;
        let frame = ready(seq);
        out.events.push(VoiceEvent::Identified {
            server_id: id.server_id,
            user_id: id.user_id,
            ssrc: grant.ssrc,
        });
        self.identity = Some(Identity {
            server_id: id.server_id,
            user_id: id.user_id,
            session_id: id.session_id.clone(),
            grant,
            mode: None,
        });
        self.identify_deadline_ms = None;
        self.phase = Phase::AwaitingSelectProtocol;
        self.emit(seq, frame, out);
        Ok(())
    }

    fn select_protocol(
        &mut self,
        sp: &messages::SelectProtocol,
        out: &mut VoiceOutbox,
    ) -> Result<(), VoiceClose> {
        if self.phase == Phase::AwaitingIdentify {
            return Err(VoiceClose::NotAuthenticated);
        }
        if sp.protocol != "udp" {
            return Err(VoiceClose::UnknownProtocol);
        }
        let data = sp.udp_data()?;
        let mode = Mode::from_name(&data.mode).ok_or(VoiceClose::UnknownEncryptionMode)?;
        let seq = self.seq + 1;
        let identity = self.identity.as_mut().ok_or(VoiceClose::NotAuthenticated)?;
        identity.mode = Some(mode);
        let frame = messages::session_description(seq, mode, &identity.grant.secret_key);
        out.events.push(VoiceEvent::ProtocolSelected {
            user_id: identity.user_id,
            ssrc: identity.grant.ssrc,
            mode,
            secret_key: identity.grant.secret_key,
            address: data.address.clone(),
            port: data.port,
        });
        self.phase = Phase::Established;
        self.emit(seq, frame, out);
        Ok(())
    }

    fn resume(
        &mut self,
        now_ms: u64,
        r: &messages::Resume,
        auth: &mut impl VoiceAuthority,
        out: &mut VoiceOutbox,
    ) -> Result<(), VoiceClose> {
        if self.phase != Phase::AwaitingIdentify {
            return Err(VoiceClose::AlreadyAuthenticated);
        }
        let token = r.token.strip_prefix("Bot ").unwrap_or(&r.token);
        let mut old = auth.resume(&ResumeRequest {
            server_id: r.server_id,
            session_id: &r.session_id,
            token,
        })?;
        let same = old
            .identity
            .as_ref()
            .is_some_and(|i| i.server_id == r.server_id && i.session_id == r.session_id);
        if !same || old.closed().is_some() {
            return Err(VoiceClose::SessionNoLongerValid);
        }
        // Without seq_ack the client asks for nothing to be replayed.
        let ack = match r.seq_ack {
            Some(a) => u64::try_from(a).unwrap_or(0).min(old.seq),
            None => old.seq,
        };
        if ack < old.replay_floor {
            // Messages it missed were already evicted: it must Identify afresh.
            return Err(VoiceClose::SessionNoLongerValid);
        }
        old.attached = true;
        old.heartbeat_interval_ms = self.heartbeat_interval_ms;
        old.heartbeat_deadline_ms = now_ms.saturating_add(old.heartbeat_timeout_ms());
        old.identify_deadline_ms = None;
        old.acknowledge(ack);
        out.frames.push(messages::resumed());
        out.frames
            .extend(old.replay.iter().map(|(_, frame)| frame.clone()));
        if let Some(i) = old.identity.as_ref() {
            out.events.push(VoiceEvent::Resumed {
                user_id: i.user_id,
                ssrc: i.grant.ssrc,
            });
        }
        *self = old;
        Ok(())
    }

    /// Drops buffered messages the client has received.
    fn acknowledge(&mut self, ack: u64) {
        while self.replay.front().is_some_and(|(s, _)| *s <= ack) {
            self.replay.pop_front();
        }
    }

    /// Assigns `seq`, buffers the frame for a resume, and sends it when attached.
    fn emit(&mut self, seq: u64, frame: String, out: &mut VoiceOutbox) {
        self.seq = seq;
        if self.replay.len() >= VOICE_RESUME_BUFFER_MAX
            && let Some((evicted, _)) = self.replay.pop_front()
        {
            self.replay_floor = evicted;
        }
        if self.attached {
            out.frames.push(frame.clone());
        }
        self.replay.push_back((seq, frame));
    }

    fn can_notify(&self) -> bool {
        matches!(
            self.phase,
            Phase::AwaitingSelectProtocol | Phase::Established
        )
    }

    /// Tells this client that another user's speaking state changed (op 5); also how it learns
    /// which SSRC belongs to whom. Returns false before Identify or after close.
    pub fn send_speaking(
        &mut self,
        user_id: u64,
        ssrc: u32,
        speaking: u32,
        out: &mut VoiceOutbox,
    ) -> bool {
        if !self.can_notify() {
            return false;
        }
        let seq = self.seq + 1;
        self.emit(seq, messages::speaking(seq, user_id, ssrc, speaking), out);
        true
    }

    /// Tells this client that users joined (op 11), in chunks of at most
    /// [`VOICE_CLIENTS_CONNECT_MAX`] ids.
    pub fn send_clients_connect(&mut self, user_ids: &[u64], out: &mut VoiceOutbox) -> bool {
        if !self.can_notify() {
            return false;
        }
        for chunk in user_ids.chunks(VOICE_CLIENTS_CONNECT_MAX) {
            let seq = self.seq + 1;
            self.emit(seq, messages::clients_connect(seq, chunk), out);
        }
        true
    }

    /// Tells this client which video SSRCs another user sends on (op 12).
    pub fn send_video(
        &mut self,
        user_id: u64,
        audio_ssrc: u32,
        video_ssrc: u32,
        rtx_ssrc: u32,
        out: &mut VoiceOutbox,
    ) -> bool {
        if !self.can_notify() {
            return false;
        }
        let seq = self.seq + 1;
        let v = messages::Video {
            audio_ssrc,
            video_ssrc,
            rtx_ssrc,
        };
        self.emit(seq, messages::video(seq, user_id, &v), out);
        true
    }

    /// Tells this client that a user left (op 13).
    pub fn send_client_disconnect(&mut self, user_id: u64, out: &mut VoiceOutbox) -> bool {
        if !self.can_notify() {
            return false;
        }
        let seq = self.seq + 1;
        self.emit(seq, messages::client_disconnect(seq, user_id), out);
        true
    }
}
