//! All the voice rooms of one shard behind its single UDP port.
//!
//! Every room of the shard receives on the same port, so datagrams are routed to their room by
//! SSRC, which is why SSRCs are allocated here: unique across the shard, not only the room.
//! Keepalives carry no SSRC and are counted here.

#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::HashMap;

use crate::batch::OutBatch;
use crate::crypto::Mode;
use crate::limits::{SECRET_KEY_LEN, SHARD_ROOMS_MAX, SHARD_SSRCS_MAX};
use crate::room::{
    DropReason, Join, PacketOutcome, PeerAddr, Room, RoomCounters, RoomError, VoiceFlags,
};
use crate::rtp::{self, DatagramKind};

/// The rooms of one shard, keyed by guild (server) id.
#[derive(Debug)]
pub struct VoiceShard<A> {
    rooms: HashMap<u64, Room<A>>,
    ssrc_room: HashMap<u32, u64>,
    next_ssrc: u32,
    room_size_max: usize,
    /// Counters of datagrams no room saw, plus those of rooms already closed.
    counters: RoomCounters,
}

impl<A: PeerAddr> VoiceShard<A> {
    /// An empty shard whose rooms hold at most `room_size_max` participants each.
    pub fn new(room_size_max: usize) -> Self {
        VoiceShard {
            rooms: HashMap::new(),
            ssrc_room: HashMap::new(),
            next_ssrc: 1,
            room_size_max,
            counters: RoomCounters::default(),
        }
    }

    /// Allocates an SSRC no participant of this shard uses (never 0). `None` only when
    /// [`SHARD_SSRCS_MAX`] are in use.
    pub fn allocate_ssrc(&mut self) -> Option<u32> {
        if self.ssrc_room.len() >= SHARD_SSRCS_MAX {
            return None;
        }
        // At most SHARD_SSRCS_MAX + 1 probes, since fewer than that many are taken.
        for _ in 0..=SHARD_SSRCS_MAX {
            let candidate = self.next_ssrc;
            self.next_ssrc = self.next_ssrc.checked_add(1).unwrap_or(1);
            if !self.ssrc_room.contains_key(&candidate) {
                return Some(candidate);
            }
        }
        None
    }

    /// Adds a participant with its transport chosen ([`VoiceShard::admit`] then
    /// [`VoiceShard::set_transport`]).
    pub fn join(&mut self, guild_id: u64, join: Join) -> Result<(), RoomError> {
        self.admit(guild_id, join.user_id, join.ssrc, join.flags)?;
        self.set_transport(guild_id, join.user_id, join.mode, &join.secret_key)
    }

    /// Sets a participant's mode and key after Select Protocol (see [`Room::set_transport`]).
    pub fn set_transport(
        &mut self,
        guild_id: u64,
        user_id: u64,
        mode: Mode,
        secret_key: &[u8; SECRET_KEY_LEN],
    ) -> Result<(), RoomError> {
        self.rooms
            .get_mut(&guild_id)
            .ok_or(RoomError::UnknownUser)?
            .set_transport(user_id, mode, secret_key)
    }

    /// Adds a participant to the room of `guild_id` when Ready is sent (see [`Room::admit`]),
    /// creating the room on first arrival, so its IP discovery is routed and answered.
    pub fn admit(
        &mut self,
        guild_id: u64,
        user_id: u64,
        ssrc: u32,
        flags: VoiceFlags,
    ) -> Result<(), RoomError> {
        if self.ssrc_room.contains_key(&ssrc) {
            return Err(RoomError::SsrcInUse);
        }
        if self.ssrc_room.len() >= SHARD_SSRCS_MAX {
            return Err(RoomError::Full);
        }
        if !self.rooms.contains_key(&guild_id) && self.rooms.len() >= SHARD_ROOMS_MAX {
            return Err(RoomError::Full);
        }
        let size = self.room_size_max;
        let room = self
            .rooms
            .entry(guild_id)
            .or_insert_with(|| Room::new(size));
        let result = room.admit(user_id, ssrc, flags);
        let empty = room.is_empty();
        match result {
            Ok(()) => {
                self.ssrc_room.insert(ssrc, guild_id);
            }
            Err(_) if empty => {
                self.rooms.remove(&guild_id);
            }
            Err(_) => {}
        }
        result
    }

    /// Gives a participant another SSRC (video), unique across the shard.
    pub fn add_ssrc(&mut self, guild_id: u64, user_id: u64, ssrc: u32) -> Result<(), RoomError> {
        match self.ssrc_room.get(&ssrc) {
            Some(&g) if g != guild_id => return Err(RoomError::SsrcInUse),
            Some(_) => {}
            None if self.ssrc_room.len() >= SHARD_SSRCS_MAX => return Err(RoomError::Full),
            None => {}
        }
        let room = self
            .rooms
            .get_mut(&guild_id)
            .ok_or(RoomError::UnknownUser)?;
        room.add_ssrc(user_id, ssrc)?;
        self.ssrc_room.insert(ssrc, guild_id);
        Ok(())
    }

    /// Removes a participant; an emptied room is closed and its counters kept in the totals.
    pub fn leave(&mut self, guild_id: u64, user_id: u64) -> bool {
        let Some(room) = self.rooms.get_mut(&guild_id) else {
            return false;
        };
        if !room.leave(user_id) {
            return false;
        }
        let room = &*room;
        self.ssrc_room
            .retain(|&s, g| *g != guild_id || room.ssrc_owner(s).is_some());
        if room.is_empty()
            && let Some(closed) = self.rooms.remove(&guild_id)
        {
            self.counters.absorb(closed.counters());
        }
        true
    }

    /// Moves a participant from room `from` to room `to` (a channel move when rooms are keyed
    /// by channel), keeping its SSRCs, key and address; an emptied room is closed.
    pub fn move_participant(&mut self, from: u64, to: u64, user_id: u64) -> Result<(), RoomError> {
        if from == to {
            return Ok(());
        }
        if !self.rooms.contains_key(&to) && self.rooms.len() >= SHARD_ROOMS_MAX {
            return Err(RoomError::Full);
        }
        let size = self.room_size_max;
        let mut source = self.rooms.remove(&from).ok_or(RoomError::UnknownUser)?;
        let target = self.rooms.entry(to).or_insert_with(|| Room::new(size));
        let result = source.move_to(user_id, target);
        if target.is_empty() {
            self.rooms.remove(&to);
        }
        if result.is_ok() {
            // Control plane (a move), not the packet path: a small list is fine.
            let moved: Vec<u32> = self
                .ssrc_room
                .iter()
                .filter(|&(s, g)| *g == from && source.ssrc_owner(*s).is_none())
                .map(|(s, _)| *s)
                .collect();
            for s in moved {
                self.ssrc_room.insert(s, to);
            }
        }
        if source.is_empty() {
            self.counters.absorb(source.counters());
        } else {
            self.rooms.insert(from, source);
        }
        result
    }

    /// The room of a guild.
    pub fn room(&self, guild_id: u64) -> Option<&Room<A>> {
        self.rooms.get(&guild_id)
    }

    /// The room of a guild, to change flags or speaking state.
    pub fn room_mut(&mut self, guild_id: u64) -> Option<&mut Room<A>> {
        self.rooms.get_mut(&guild_id)
    }

    /// Number of open rooms.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Counters over every room, open or closed, plus datagrams no room saw.
    pub fn counters(&self) -> RoomCounters {
        let mut total = self.counters;
        for room in self.rooms.values() {
            total.absorb(room.counters());
        }
        total
    }

    /// Routes one datagram from the shard's voice port to its room (see
    /// [`Room::handle_datagram`]).
    pub fn handle_datagram(
        &mut self,
        now_ms: u64,
        from: A,
        datagram: &mut [u8],
        out: &mut OutBatch<A>,
    ) -> PacketOutcome {
        let ssrc_at = match rtp::classify(datagram) {
            DatagramKind::Rtp => 8,
            DatagramKind::Rtcp | DatagramKind::IpDiscovery => 4,
            DatagramKind::Keepalive => {
                self.counters.datagrams_in += 1;
                self.counters.keepalives += 1;
                return PacketOutcome::Keepalive;
            }
            DatagramKind::Unknown => {
                self.counters.datagrams_in += 1;
                self.counters.dropped_malformed += 1;
                return PacketOutcome::Dropped(DropReason::Malformed);
            }
        };
        let room = datagram
            .get(ssrc_at..ssrc_at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .and_then(|ssrc| self.ssrc_room.get(&ssrc))
            .and_then(|g| self.rooms.get_mut(g));
        match room {
            Some(room) => room.handle_datagram(now_ms, from, datagram, out),
            None => {
                self.counters.datagrams_in += 1;
                self.counters.dropped_unknown_source += 1;
                PacketOutcome::Dropped(DropReason::UnknownSource)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ipdisc;
    use std::net::SocketAddr;

    fn join(user_id: u64, ssrc: u32) -> Join {
        Join {
            user_id,
            ssrc,
            mode: Mode::XChaCha20Poly1305RtpSize,
            secret_key: [user_id as u8; 32],
            flags: VoiceFlags::default(),
        }
    }

    #[test]
    fn routes_by_ssrc_and_keeps_counters_of_closed_rooms() {
        let mut shard: VoiceShard<SocketAddr> = VoiceShard::new(8);
        let s1 = shard.allocate_ssrc().unwrap();
        shard.join(100, join(1, s1)).unwrap();
        let s2 = shard.allocate_ssrc().unwrap();
        assert_ne!(s1, s2);
        shard.join(200, join(2, s2)).unwrap();
        assert_eq!(shard.join(200, join(3, s1)), Err(RoomError::SsrcInUse));
        assert_eq!(shard.room_count(), 2);

        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut out = OutBatch::new(4);
        let mut req = [0u8; 74];
        ipdisc::build_request(s2, &mut req);
        assert_eq!(
            shard.handle_datagram(0, a, &mut req, &mut out),
            PacketOutcome::DiscoveryAnswered
        );
        assert_eq!(shard.room(200).unwrap().address_of(2), Some(a));
        assert_eq!(shard.room(100).unwrap().address_of(1), None);
        ipdisc::build_request(77, &mut req);
        assert_eq!(
            shard.handle_datagram(0, a, &mut req, &mut out),
            PacketOutcome::Dropped(DropReason::UnknownSource)
        );
        assert_eq!(
            shard.handle_datagram(0, a, &mut [0; 8], &mut out),
            PacketOutcome::Keepalive
        );

        shard.add_ssrc(200, 2, 9000).unwrap();
        assert_eq!(shard.add_ssrc(100, 1, 9000), Err(RoomError::SsrcInUse));
        assert!(shard.leave(200, 2));
        assert!(!shard.leave(200, 2));
        assert_eq!(shard.room_count(), 1);
        // The closed room's counters survive in the totals.
        let c = shard.counters();
        assert_eq!(c.discovery_answered, 1);
        assert_eq!(c.datagrams_in, 3);
        assert_eq!(c.dropped_unknown_source, 1);
        // Its SSRCs are free again.
        shard.join(300, join(4, 9000)).unwrap();
    }

    #[test]
    fn move_keeps_address_and_key_and_reroutes_ssrcs() {
        let mut shard: VoiceShard<SocketAddr> = VoiceShard::new(8);
        let s1 = shard.allocate_ssrc().unwrap();
        shard.join(10, join(1, s1)).unwrap();
        let s2 = shard.allocate_ssrc().unwrap();
        shard.join(20, join(2, s2)).unwrap();
        let a: SocketAddr = "127.0.0.1:5".parse().unwrap();
        let mut out = OutBatch::new(4);
        let mut req = [0u8; 74];
        ipdisc::build_request(s1, &mut req);
        shard.handle_datagram(0, a, &mut req, &mut out);
        shard.move_participant(10, 20, 1).unwrap();
        assert!(shard.room(10).is_none(), "emptied room closed");
        let room = shard.room(20).unwrap();
        assert_eq!(room.len(), 2);
        assert_eq!(room.address_of(1), Some(a), "address survives the move");
        assert_eq!(room.ssrc_owner(s1), Some(1));
        // Discovery for s1 is now routed to room 20.
        out.clear();
        ipdisc::build_request(s1, &mut req);
        assert_eq!(
            shard.handle_datagram(0, a, &mut req, &mut out),
            PacketOutcome::DiscoveryAnswered
        );
        assert_eq!(
            shard.move_participant(10, 20, 1),
            Err(RoomError::UnknownUser)
        );
        assert_eq!(shard.counters().discovery_answered, 2);
    }

    #[test]
    fn allocated_ssrcs_skip_used_ones_and_zero() {
        let mut shard: VoiceShard<SocketAddr> = VoiceShard::new(8);
        shard.join(1, join(1, 1)).unwrap();
        shard.join(1, join(2, 2)).unwrap();
        assert_eq!(shard.allocate_ssrc(), Some(3));
        shard.next_ssrc = u32::MAX;
        assert_eq!(shard.allocate_ssrc(), Some(u32::MAX));
        assert_eq!(shard.allocate_ssrc(), Some(3));
    }
}
