//! A voice room: who is in it, and what happens to each datagram that arrives on its port.
//!
//! Per RTP packet: find the sender by SSRC, check the source address, decrypt in place with the
//! sender's key, check the replay window, drop silence and muted senders, then seal the same
//! plaintext once per receiver with that receiver's key and nonce counter into the caller's
//! [`OutBatch`]. The sender never gets its own audio and deafened receivers get nothing. RTCP is
//! absorbed (counted, never forwarded); keepalives are ignored; IP discovery is answered.

#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::batch::OutBatch;
use crate::crypto::{Mode, TransportCipher};
use crate::ipdisc::{self, DiscoveryKind};
use crate::limits::{
    IPDISC_ADDRESS_LEN, IPDISC_PACKET_LEN, PARTICIPANT_SSRCS_MAX, ROOM_PARTICIPANTS_MAX,
    SECRET_KEY_LEN, SERVER_NONCE_COUNTER_START, SPEAKING_HOLD_MS,
};
use crate::replay::ReplayWindow;
use crate::rtcp;
use crate::rtp::{self, DatagramKind, OPUS_PAYLOAD_TYPE};

/// What the room needs from the engine's notion of a UDP peer address.
pub trait PeerAddr: Copy + Eq + std::fmt::Debug {
    /// The IP and port reported back to the client in an IP discovery response.
    fn discovery_endpoint(&self) -> (IpAddr, u16);
}

impl PeerAddr for SocketAddr {
    fn discovery_endpoint(&self) -> (IpAddr, u16) {
        // Dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d; clients expect a.b.c.d.
        (self.ip().to_canonical(), self.port())
    }
}

/// Room membership errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// The room already holds its maximum number of participants.
    #[error("room is full")]
    Full,
    /// The user is already in the room.
    #[error("user already in room")]
    DuplicateUser,
    /// Another participant owns this SSRC.
    #[error("ssrc already in use")]
    SsrcInUse,
    /// No such participant.
    #[error("unknown user")]
    UnknownUser,
    /// The participant already owns [`PARTICIPANT_SSRCS_MAX`] SSRCs.
    #[error("too many ssrcs for one participant")]
    TooManySsrcs,
}

/// Moderation and permission state that decides forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoiceFlags {
    /// Server-muted: the participant's media is dropped.
    pub muted: bool,
    /// Deafened: the participant receives nothing.
    pub deafened: bool,
    /// Holds the SPEAK permission in the channel; without it media is dropped.
    pub can_speak: bool,
}

impl Default for VoiceFlags {
    fn default() -> Self {
        VoiceFlags {
            muted: false,
            deafened: false,
            can_speak: true,
        }
    }
}

/// Everything needed to add a participant once its Select Protocol has been answered.
#[derive(Debug, Clone)]
pub struct Join {
    /// The user.
    pub user_id: u64,
    /// The audio SSRC handed out in Ready.
    pub ssrc: u32,
    /// The transport mode the client selected.
    pub mode: Mode,
    /// The key sent in Session Description.
    pub secret_key: [u8; SECRET_KEY_LEN],
    /// Initial moderation state.
    pub flags: VoiceFlags,
}

/// Plain counters for `/metrics`; every datagram lands in exactly one of the inbound ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomCounters {
    /// Datagrams handed to the room.
    pub datagrams_in: u64,
    /// RTP packets accepted from a sender (then fanned out to zero or more receivers).
    pub media_accepted: u64,
    /// Sealed copies put into output batches.
    pub forwarded: u64,
    /// Datagrams that parse as nothing we know, or RTP whose encrypted extension is cut short.
    pub dropped_malformed: u64,
    /// RTP/RTCP/discovery from an unknown SSRC or from an address other than the latched one.
    pub dropped_unknown_source: u64,
    /// Authentication failures.
    pub dropped_bad_tag: u64,
    /// Nonce counters seen before or too old.
    pub dropped_replay: u64,
    /// Opus silence frames.
    pub dropped_silence: u64,
    /// Media from muted participants or ones without SPEAK.
    pub dropped_muted: u64,
    /// Copies (or discovery answers) not made because the output batch was full.
    pub dropped_batch_full: u64,
    /// 8-byte keepalives.
    pub keepalives: u64,
    /// RTCP packets absorbed.
    pub rtcp_absorbed: u64,
    /// IP discovery requests answered.
    pub discovery_answered: u64,
}

impl RoomCounters {
    /// Adds another set of counters to this one (shard totals).
    pub fn absorb(&mut self, other: &RoomCounters) {
        let RoomCounters {
            datagrams_in,
            media_accepted,
            forwarded,
            dropped_malformed,
            dropped_unknown_source,
            dropped_bad_tag,
            dropped_replay,
            dropped_silence,
            dropped_muted,
            dropped_batch_full,
            keepalives,
            rtcp_absorbed,
            discovery_answered,
        } = *other;
        self.datagrams_in += datagrams_in;
        self.media_accepted += media_accepted;
        self.forwarded += forwarded;
        self.dropped_malformed += dropped_malformed;
        self.dropped_unknown_source += dropped_unknown_source;
        self.dropped_bad_tag += dropped_bad_tag;
        self.dropped_replay += dropped_replay;
        self.dropped_silence += dropped_silence;
        self.dropped_muted += dropped_muted;
        self.dropped_batch_full += dropped_batch_full;
        self.keepalives += keepalives;
        self.rtcp_absorbed += rtcp_absorbed;
        self.discovery_answered += discovery_answered;
    }
}

/// Why one datagram produced no output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Unparseable.
    Malformed,
    /// Unknown SSRC or wrong source address.
    UnknownSource,
    /// Authentication failed.
    BadTag,
    /// Replayed or too old.
    Replay,
    /// Opus silence.
    Silence,
    /// Sender muted or without SPEAK.
    Muted,
    /// No room left in the output batch.
    BatchFull,
}

/// What became of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketOutcome {
    /// Media accepted and sealed for `receivers` participants; `batch_full` more were skipped
    /// because the output batch ran out of slots.
    Forwarded {
        /// Copies written.
        receivers: usize,
        /// Copies not written for lack of slots.
        batch_full: usize,
    },
    /// An IP discovery response was written to the batch.
    DiscoveryAnswered,
    /// A keepalive, ignored.
    Keepalive,
    /// RTCP from a participant, absorbed.
    RtcpAbsorbed,
    /// Nothing sent.
    Dropped(DropReason),
}

#[derive(Debug)]
struct Participant<A> {
    user_id: u64,
    ssrcs: [u32; PARTICIPANT_SSRCS_MAX],
    ssrc_count: usize,
    /// `None` until Select Protocol: such a participant neither sends nor receives media.
    cipher: Option<TransportCipher>,
    addr: Option<A>,
    flags: VoiceFlags,
    replay: ReplayWindow,
    send_counter: u32,
    speaking: u32,
    last_voice_ms: Option<u64>,
}

/// One voice room, owned by one shard.
#[derive(Debug)]
pub struct Room<A> {
    participants: Vec<Participant<A>>,
    by_ssrc: HashMap<u32, usize>,
    max_participants: usize,
    counters: RoomCounters,
}

impl<A: PeerAddr> Default for Room<A> {
    fn default() -> Self {
        Self::new(ROOM_PARTICIPANTS_MAX)
    }
}

impl<A: PeerAddr> Room<A> {
    /// An empty room for up to `max_participants` (capped at [`ROOM_PARTICIPANTS_MAX`]); all
    /// memory is reserved here.
    pub fn new(max_participants: usize) -> Self {
        let max = max_participants.min(ROOM_PARTICIPANTS_MAX);
        Room {
            participants: Vec::with_capacity(max),
            by_ssrc: HashMap::with_capacity(max * PARTICIPANT_SSRCS_MAX),
            max_participants: max,
            counters: RoomCounters::default(),
        }
    }

    /// Participants in the room.
    pub fn len(&self) -> usize {
        self.participants.len()
    }

    /// True when nobody is in the room.
    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    /// The counters so far.
    pub fn counters(&self) -> &RoomCounters {
        &self.counters
    }

    /// Adds a participant with its transport already chosen: [`Room::admit`] then
    /// [`Room::set_transport`].
    pub fn join(&mut self, join: Join) -> Result<(), RoomError> {
        self.admit(join.user_id, join.ssrc, join.flags)?;
        self.set_transport(join.user_id, join.mode, &join.secret_key)
    }

    /// Adds a participant as soon as Ready gave it an SSRC, before it has chosen a mode: its IP
    /// discovery (which discord.py sends before Select Protocol) must already be answered. Its
    /// media is dropped and it receives nothing until [`Room::set_transport`]. Its address is
    /// learnt from its IP discovery request or, failing that, its first authenticated packet.
    pub fn admit(&mut self, user_id: u64, ssrc: u32, flags: VoiceFlags) -> Result<(), RoomError> {
        if self.index_of(user_id).is_some() {
            return Err(RoomError::DuplicateUser);
        }
        if self.by_ssrc.contains_key(&ssrc) {
            return Err(RoomError::SsrcInUse);
        }
        if self.participants.len() >= self.max_participants {
            return Err(RoomError::Full);
        }
        let mut ssrcs = [0; PARTICIPANT_SSRCS_MAX];
        if let Some(first) = ssrcs.first_mut() {
            *first = ssrc;
        }
        self.by_ssrc.insert(ssrc, self.participants.len());
        self.participants.push(Participant {
            user_id,
            ssrcs,
            ssrc_count: 1,
            cipher: None,
            addr: None,
            flags,
            replay: ReplayWindow::new(),
            send_counter: SERVER_NONCE_COUNTER_START,
            speaking: 0,
            last_voice_ms: None,
        });
        Ok(())
    }

    /// Sets (or replaces, after a new Select Protocol) the participant's mode and key. A new key
    /// starts a new nonce space, so the replay window and the outgoing counter restart.
    pub fn set_transport(
        &mut self,
        user_id: u64,
        mode: Mode,
        secret_key: &[u8; SECRET_KEY_LEN],
    ) -> Result<(), RoomError> {
        let p = self.participant_mut(user_id)?;
        p.cipher = Some(TransportCipher::new(mode, secret_key));
        p.replay = ReplayWindow::new();
        p.send_counter = SERVER_NONCE_COUNTER_START;
        Ok(())
    }

    /// Moves a participant into `to` with everything it has (SSRCs, key, latched address,
    /// replay window, counters): a channel move must not make a listen-only client, which never
    /// sends an authenticated packet, lose its address.
    pub fn move_to(&mut self, user_id: u64, to: &mut Room<A>) -> Result<(), RoomError> {
        let i = self.index_of(user_id).ok_or(RoomError::UnknownUser)?;
        if to.index_of(user_id).is_some() {
            return Err(RoomError::DuplicateUser);
        }
        if to.participants.len() >= to.max_participants {
            return Err(RoomError::Full);
        }
        let p = self.participants.get(i).ok_or(RoomError::UnknownUser)?;
        if p.ssrcs
            .iter()
            .take(p.ssrc_count)
            .any(|s| to.by_ssrc.contains_key(s))
        {
            return Err(RoomError::SsrcInUse);
        }
        let p = self.participants.remove(i);
        self.rebuild_ssrc_index();
        for &s in p.ssrcs.iter().take(p.ssrc_count) {
            to.by_ssrc.insert(s, to.participants.len());
        }
        to.participants.push(p);
        Ok(())
    }

    fn rebuild_ssrc_index(&mut self) {
        self.by_ssrc.clear();
        for (i, p) in self.participants.iter().enumerate() {
            for &s in p.ssrcs.iter().take(p.ssrc_count) {
                self.by_ssrc.insert(s, i);
            }
        }
    }

    /// Removes a participant; false when it was not there.
    pub fn leave(&mut self, user_id: u64) -> bool {
        let Some(i) = self.index_of(user_id) else {
            return false;
        };
        self.participants.remove(i);
        // Rare (joins and leaves, not packets): rebuild rather than patch indices.
        self.by_ssrc.clear();
        for (i, p) in self.participants.iter().enumerate() {
            for &s in p.ssrcs.iter().take(p.ssrc_count) {
                self.by_ssrc.insert(s, i);
            }
        }
        true
    }

    /// Gives a participant another SSRC (video, retransmissions), forwarded like its audio.
    pub fn add_ssrc(&mut self, user_id: u64, ssrc: u32) -> Result<(), RoomError> {
        let i = self.index_of(user_id).ok_or(RoomError::UnknownUser)?;
        if let Some(&owner) = self.by_ssrc.get(&ssrc) {
            return if owner == i {
                Ok(())
            } else {
                Err(RoomError::SsrcInUse)
            };
        }
        let p = self.participants.get_mut(i).ok_or(RoomError::UnknownUser)?;
        let slot = p
            .ssrcs
            .get_mut(p.ssrc_count)
            .ok_or(RoomError::TooManySsrcs)?;
        *slot = ssrc;
        p.ssrc_count += 1;
        self.by_ssrc.insert(ssrc, i);
        Ok(())
    }

    /// Updates mute, deafen and SPEAK state.
    pub fn set_flags(&mut self, user_id: u64, flags: VoiceFlags) -> Result<(), RoomError> {
        self.participant_mut(user_id)?.flags = flags;
        Ok(())
    }

    /// Records the speaking bitfield from the participant's op 5.
    pub fn set_speaking(&mut self, user_id: u64, speaking: u32) -> Result<(), RoomError> {
        self.participant_mut(user_id)?.speaking = speaking;
        Ok(())
    }

    /// The speaking bitfield last reported by the participant.
    pub fn speaking(&self, user_id: u64) -> Option<u32> {
        self.participant(user_id).map(|p| p.speaking)
    }

    /// True when the participant sent non-silent audio within [`SPEAKING_HOLD_MS`].
    pub fn is_voice_active(&self, user_id: u64, now_ms: u64) -> bool {
        self.participant(user_id)
            .and_then(|p| p.last_voice_ms)
            .is_some_and(|t| now_ms.saturating_sub(t) < SPEAKING_HOLD_MS)
    }

    /// Forgets the latched address (after a resume or a new Select Protocol), so the next IP
    /// discovery or authenticated packet sets it again.
    pub fn reset_address(&mut self, user_id: u64) -> Result<(), RoomError> {
        self.participant_mut(user_id)?.addr = None;
        Ok(())
    }

    /// The latched address of a participant.
    pub fn address_of(&self, user_id: u64) -> Option<A> {
        self.participant(user_id).and_then(|p| p.addr)
    }

    /// Who owns an SSRC.
    pub fn ssrc_owner(&self, ssrc: u32) -> Option<u64> {
        let &i = self.by_ssrc.get(&ssrc)?;
        self.participants.get(i).map(|p| p.user_id)
    }

    /// Handles one datagram received on the room's port. `datagram` is decrypted in place (its
    /// bytes are scratch afterwards). Output goes into `out`; the engine should flush `out`
    /// whenever `out.remaining()` is below `self.len()`.
    pub fn handle_datagram(
        &mut self,
        now_ms: u64,
        from: A,
        datagram: &mut [u8],
        out: &mut OutBatch<A>,
    ) -> PacketOutcome {
        self.counters.datagrams_in += 1;
        let outcome = match rtp::classify(datagram) {
            DatagramKind::Keepalive => PacketOutcome::Keepalive,
            DatagramKind::IpDiscovery => self.discovery(from, datagram, out),
            DatagramKind::Rtcp => self.rtcp(from, datagram),
            DatagramKind::Rtp => self.media(now_ms, from, datagram, out),
            DatagramKind::Unknown => PacketOutcome::Dropped(DropReason::Malformed),
        };
        self.count(outcome);
        outcome
    }

    fn count(&mut self, outcome: PacketOutcome) {
        let c = &mut self.counters;
        match outcome {
            PacketOutcome::Forwarded {
                receivers,
                batch_full,
            } => {
                c.media_accepted += 1;
                c.forwarded += receivers as u64;
                c.dropped_batch_full += batch_full as u64;
            }
            PacketOutcome::DiscoveryAnswered => c.discovery_answered += 1,
            PacketOutcome::Keepalive => c.keepalives += 1,
            PacketOutcome::RtcpAbsorbed => c.rtcp_absorbed += 1,
            PacketOutcome::Dropped(r) => {
                *match r {
                    DropReason::Malformed => &mut c.dropped_malformed,
                    DropReason::UnknownSource => &mut c.dropped_unknown_source,
                    DropReason::BadTag => &mut c.dropped_bad_tag,
                    DropReason::Replay => &mut c.dropped_replay,
                    DropReason::Silence => &mut c.dropped_silence,
                    DropReason::Muted => &mut c.dropped_muted,
                    DropReason::BatchFull => &mut c.dropped_batch_full,
                } += 1;
            }
        }
    }

    fn discovery(&mut self, from: A, datagram: &[u8], out: &mut OutBatch<A>) -> PacketOutcome {
        let Ok(req) = ipdisc::parse(datagram) else {
            return PacketOutcome::Dropped(DropReason::Malformed);
        };
        if req.kind != DiscoveryKind::Request {
            return PacketOutcome::Dropped(DropReason::Malformed);
        }
        let Some(p) = self
            .by_ssrc
            .get(&req.ssrc)
            .and_then(|&i| self.participants.get_mut(i))
        else {
            return PacketOutcome::Dropped(DropReason::UnknownSource);
        };
        // Latch once: SSRCs are public inside the room (op 5), so a later request from another
        // address must not be able to steer someone else's audio away.
        match p.addr {
            Some(a) if a != from => return PacketOutcome::Dropped(DropReason::UnknownSource),
            _ => {}
        }
        let (ip, port) = from.discovery_endpoint();
        let mut text = AddrText::default();
        if write!(text, "{ip}").is_err() {
            return PacketOutcome::Dropped(DropReason::Malformed);
        }
        let mut answer = [0u8; IPDISC_PACKET_LEN];
        if ipdisc::build_response(req.ssrc, text.as_str(), port, &mut answer).is_err() {
            return PacketOutcome::Dropped(DropReason::Malformed);
        }
        if !out.push(from, &answer) {
            return PacketOutcome::Dropped(DropReason::BatchFull);
        }
        p.addr = Some(from);
        PacketOutcome::DiscoveryAnswered
    }

    fn rtcp(&mut self, from: A, datagram: &[u8]) -> PacketOutcome {
        let Ok(header) = rtcp::parse(datagram) else {
            return PacketOutcome::Dropped(DropReason::Malformed);
        };
        match self
            .by_ssrc
            .get(&header.sender_ssrc)
            .and_then(|&i| self.participants.get(i))
        {
            Some(p) if p.addr == Some(from) => PacketOutcome::RtcpAbsorbed,
            _ => PacketOutcome::Dropped(DropReason::UnknownSource),
        }
    }

    fn media(
        &mut self,
        now_ms: u64,
        from: A,
        datagram: &mut [u8],
        out: &mut OutBatch<A>,
    ) -> PacketOutcome {
        let Ok(header) = rtp::parse(datagram) else {
            return PacketOutcome::Dropped(DropReason::Malformed);
        };
        let Some(&si) = self.by_ssrc.get(&header.ssrc) else {
            return PacketOutcome::Dropped(DropReason::UnknownSource);
        };
        let Some(sender) = self.participants.get_mut(si) else {
            return PacketOutcome::Dropped(DropReason::UnknownSource);
        };
        if sender.addr.is_some_and(|a| a != from) {
            return PacketOutcome::Dropped(DropReason::UnknownSource);
        }
        let aad_len = header.aad_len();
        // Cheap pre-check on the wire counter before paying for decryption; the window is only
        // updated once the packet has authenticated.
        let counter_hint = datagram
            .last_chunk::<4>()
            .map_or(0, |c| u32::from_be_bytes(*c));
        if sender
            .replay
            .check_extended(sender.replay.extend(counter_hint))
            .is_err()
        {
            return PacketOutcome::Dropped(DropReason::Replay);
        }
        let Some(cipher) = sender.cipher.as_ref() else {
            return PacketOutcome::Dropped(DropReason::UnknownSource);
        };
        let Ok(opened) = cipher.open_in_place(datagram, aad_len) else {
            return PacketOutcome::Dropped(DropReason::BadTag);
        };
        if sender.replay.check_and_update(opened.counter).is_err() {
            return PacketOutcome::Dropped(DropReason::Replay);
        }
        if sender.addr.is_none() {
            sender.addr = Some(from);
        }
        let Some(plaintext) = datagram.get(aad_len..aad_len + opened.plaintext_len) else {
            return PacketOutcome::Dropped(DropReason::Malformed);
        };
        let Some(media) = rtp::media_payload(&header, plaintext) else {
            return PacketOutcome::Dropped(DropReason::Malformed);
        };
        if sender.flags.muted || !sender.flags.can_speak {
            return PacketOutcome::Dropped(DropReason::Muted);
        }
        if rtp::is_opus_silence(&header, media) {
            return PacketOutcome::Dropped(DropReason::Silence);
        }
        if header.payload_type == OPUS_PAYLOAD_TYPE {
            sender.last_voice_ms = Some(now_ms);
        }
        let Some(aad) = datagram.get(..aad_len) else {
            return PacketOutcome::Dropped(DropReason::Malformed);
        };
        let mut receivers = 0;
        let mut batch_full = 0;
        for (ri, r) in self.participants.iter_mut().enumerate() {
            if ri == si || r.flags.deafened {
                continue;
            }
            let (Some(dest), Some(cipher)) = (r.addr, r.cipher.as_ref()) else {
                continue;
            };
            let counter = r.send_counter;
            let sealed = out.push_with(dest, |slot| {
                cipher.seal_into(counter, aad, plaintext, slot).ok()
            });
            if sealed {
                r.send_counter = counter.wrapping_add(1);
                receivers += 1;
            } else {
                batch_full += 1;
            }
        }
        PacketOutcome::Forwarded {
            receivers,
            batch_full,
        }
    }

    fn index_of(&self, user_id: u64) -> Option<usize> {
        self.participants.iter().position(|p| p.user_id == user_id)
    }

    fn participant(&self, user_id: u64) -> Option<&Participant<A>> {
        self.participants.iter().find(|p| p.user_id == user_id)
    }

    fn participant_mut(&mut self, user_id: u64) -> Result<&mut Participant<A>, RoomError> {
        self.participants
            .iter_mut()
            .find(|p| p.user_id == user_id)
            .ok_or(RoomError::UnknownUser)
    }
}

/// A stack buffer to format an IP address into without allocating.
struct AddrText {
    buf: [u8; IPDISC_ADDRESS_LEN],
    len: usize,
}

impl Default for AddrText {
    fn default() -> Self {
        AddrText {
            buf: [0; IPDISC_ADDRESS_LEN],
            len: 0,
        }
    }
}

impl AddrText {
    fn as_str(&self) -> &str {
        self.buf
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

impl std::fmt::Write for AddrText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dual_stack_peers_report_ipv4() {
        let a: SocketAddr = "[::ffff:198.51.100.4]:5000".parse().expect("addr");
        assert_eq!(
            a.discovery_endpoint(),
            ("198.51.100.4".parse().expect("ip"), 5000)
        );
        let mut t = AddrText::default();
        write!(t, "{}", a.discovery_endpoint().0).expect("fits");
        assert_eq!(t.as_str(), "198.51.100.4");
    }

    #[test]
    fn membership_rules() {
        let mut room: Room<SocketAddr> = Room::new(2);
        let j = |user_id, ssrc| Join {
            user_id,
            ssrc,
            mode: Mode::XChaCha20Poly1305RtpSize,
            secret_key: [1; 32],
            flags: VoiceFlags::default(),
        };
        room.join(j(1, 10)).expect("join");
        assert_eq!(room.join(j(1, 11)), Err(RoomError::DuplicateUser));
        assert_eq!(room.join(j(2, 10)), Err(RoomError::SsrcInUse));
        room.join(j(2, 20)).expect("join");
        assert_eq!(room.join(j(3, 30)), Err(RoomError::Full));
        room.add_ssrc(1, 12).expect("video");
        assert_eq!(room.add_ssrc(1, 12), Ok(()));
        assert_eq!(room.add_ssrc(2, 12), Err(RoomError::SsrcInUse));
        room.add_ssrc(1, 13).expect("rtx");
        room.add_ssrc(1, 14).expect("4th");
        assert_eq!(room.add_ssrc(1, 15), Err(RoomError::TooManySsrcs));
        assert_eq!(room.add_ssrc(9, 16), Err(RoomError::UnknownUser));
        assert_eq!(room.ssrc_owner(14), Some(1));
        assert!(room.leave(1));
        assert!(!room.leave(1));
        assert_eq!(room.ssrc_owner(14), None);
        assert_eq!(room.ssrc_owner(20), Some(2));
        assert_eq!(room.len(), 1);
        room.join(j(1, 10)).expect("rejoin");
        assert_eq!(room.set_speaking(1, 5), Ok(()));
        assert_eq!(room.speaking(1), Some(5));
        assert_eq!(
            room.set_flags(7, VoiceFlags::default()),
            Err(RoomError::UnknownUser)
        );
    }
}
