//! A guild split into the parts a durable journal stores, and rebuilt from them (sans-IO).
//!
//! The split follows what grows: [`GuildCore`] holds the settings, channels (with their
//! overwrites), roles and invites, all bounded by [`super::limits`] and small, so the engine
//! rewrites it whole after a change; members and bans can number in the hundreds of thousands,
//! so each is its own keyed record and a join writes one member, not the guild.
//!
//! [`Guild::from_parts`] treats its input as hostile (it comes from disk, even if checksummed):
//! counts are checked against the model's limits and the guild's invariants (the @everyone role
//! exists, keys match their records) are verified; nothing panics.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Ban, Channel, Guild, Invite, Member, Role, limits};

/// The bounded part of a guild: settings, channels, roles and invites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuildCore {
    /// Guild id (also the @everyone role's id).
    pub id: u64,
    /// Name.
    pub name: String,
    /// Owner's user id.
    pub owner_id: u64,
    /// Icon hash.
    pub icon: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: u64,
    /// When this server started holding the guild, Unix milliseconds.
    pub joined_at_ms: u64,
    /// AFK voice channel.
    pub afk_channel_id: Option<u64>,
    /// AFK timeout in seconds.
    pub afk_timeout_s: u32,
    /// System channel.
    pub system_channel_id: Option<u64>,
    /// Verification level.
    pub verification_level: u8,
    /// Default notification level.
    pub default_message_notifications: u8,
    /// Explicit content filter.
    pub explicit_content_filter: u8,
    /// Every channel (with its overwrites).
    pub channels: Vec<Channel>,
    /// Every role, @everyone included.
    pub roles: Vec<Role>,
    /// Every invite (expired and used-up ones too, until pruned).
    pub invites: Vec<Invite>,
}

/// Stored parts that do not make a valid guild.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// More items of a kind than the model allows.
    #[error("guild {guild}: {count} {what}, more than {max}")]
    TooMany {
        /// The guild.
        guild: u64,
        /// What was counted.
        what: &'static str,
        /// How many there were.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A structural invariant does not hold.
    #[error("guild {guild}: {what}")]
    Invalid {
        /// The guild.
        guild: u64,
        /// Which invariant.
        what: &'static str,
    },
}

fn check_count(
    guild: u64,
    what: &'static str,
    count: usize,
    max: usize,
) -> Result<(), PersistError> {
    if count > max {
        return Err(PersistError::TooMany {
            guild,
            what,
            count,
            max,
        });
    }
    Ok(())
}

impl Guild {
    /// The bounded part of this guild, for storing.
    pub fn to_core(&self) -> GuildCore {
        GuildCore {
            id: self.id,
            name: self.name.clone(),
            owner_id: self.owner_id,
            icon: self.icon.clone(),
            description: self.description.clone(),
            created_at_ms: self.created_at_ms,
            joined_at_ms: self.joined_at_ms,
            afk_channel_id: self.afk_channel_id,
            afk_timeout_s: self.afk_timeout_s,
            system_channel_id: self.system_channel_id,
            verification_level: self.verification_level,
            default_message_notifications: self.default_message_notifications,
            explicit_content_filter: self.explicit_content_filter,
            channels: self.channels.values().cloned().collect(),
            roles: self.roles.values().cloned().collect(),
            invites: self.invites.values().cloned().collect(),
        }
    }

    /// Rebuilds a guild from its stored core, members and bans (each keyed by its own id, so
    /// duplicates collapse to the last one given).
    pub fn from_parts(
        core: GuildCore,
        members: impl IntoIterator<Item = Member>,
        bans: impl IntoIterator<Item = Ban>,
    ) -> Result<Guild, PersistError> {
        let id = core.id;
        check_count(id, "channels", core.channels.len(), limits::CHANNELS_MAX)?;
        check_count(id, "roles", core.roles.len(), limits::ROLES_MAX)?;
        check_count(id, "invites", core.invites.len(), limits::INVITES_MAX)?;
        let channels: BTreeMap<u64, Channel> =
            core.channels.into_iter().map(|c| (c.id, c)).collect();
        let roles: BTreeMap<u64, Role> = core.roles.into_iter().map(|r| (r.id, r)).collect();
        let invites: BTreeMap<String, Invite> = core
            .invites
            .into_iter()
            .map(|i| (i.code.clone(), i))
            .collect();
        if !roles.contains_key(&id) {
            return Err(PersistError::Invalid {
                guild: id,
                what: "no @everyone role",
            });
        }
        if channels
            .values()
            .any(|c| c.overwrites.len() > limits::OVERWRITES_PER_CHANNEL_MAX)
        {
            return Err(PersistError::Invalid {
                guild: id,
                what: "too many overwrites in a channel",
            });
        }
        let mut member_map = BTreeMap::new();
        for mut m in members {
            // Deleting a role takes it from every member without a member event, so member
            // records may still name it; the core written with the deletion says it is gone.
            m.roles.retain(|r| roles.contains_key(r));
            member_map.insert(m.user.id, m);
            check_count(id, "members", member_map.len(), limits::MEMBERS_MAX)?;
        }
        let mut ban_map = BTreeMap::new();
        for b in bans {
            ban_map.insert(b.user.id, b);
            check_count(id, "bans", ban_map.len(), limits::BANS_MAX)?;
        }
        Ok(Guild {
            id,
            name: core.name,
            owner_id: core.owner_id,
            icon: core.icon,
            description: core.description,
            created_at_ms: core.created_at_ms,
            joined_at_ms: core.joined_at_ms,
            afk_channel_id: core.afk_channel_id,
            afk_timeout_s: core.afk_timeout_s,
            system_channel_id: core.system_channel_id,
            verification_level: core.verification_level,
            default_message_notifications: core.default_message_notifications,
            explicit_content_filter: core.explicit_content_filter,
            channels,
            roles,
            members: member_map,
            bans: ban_map,
            invites,
            generation: 0,
            cache: RefCell::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guild::{Actor, NewRole, Overwrite, UserInfo};

    #[test]
    fn a_guild_survives_its_parts() {
        let mut next = 100u64;
        let mut ids = || {
            next += 1;
            next
        };
        let mut g = Guild::new(7, "gg", UserInfo::new(1, "owner"), 1_000, &mut ids)
            .unwrap_or_else(|e| panic!("{e}"));
        g.add_member(UserInfo::new(2, "two"), 2_000)
            .unwrap_or_else(|e| panic!("{e}"));
        g.create_role(
            Actor::System,
            50,
            NewRole {
                name: "mods".into(),
                permissions: 8,
                color: 3,
                hoist: true,
                mentionable: false,
                managed: false,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        g.add_member_role(Actor::System, 2, 50)
            .unwrap_or_else(|e| panic!("{e}"));
        let ch = g.channels().next().map(|c| c.id).unwrap_or(0);
        let patch = crate::guild::ChannelPatch {
            overwrites: Some(vec![Overwrite::role(50, 1, 2)]),
            ..Default::default()
        };
        g.update_channel(Actor::System, ch, patch)
            .unwrap_or_else(|e| panic!("{e}"));
        let core = g.to_core();
        let json = serde_json::to_vec(&core).unwrap_or_default();
        let back: GuildCore = serde_json::from_slice(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, core);
        let members: Vec<Member> = g.members().cloned().collect();
        let r = Guild::from_parts(back, members, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.to_core(), g.to_core());
        assert_eq!(r.to_guild_json(), g.to_guild_json());
        assert_eq!(r.permissions(2, ch), g.permissions(2, ch));
        assert_eq!(r.member_count(), 2);
    }

    #[test]
    fn parts_without_everyone_are_refused() {
        let mut next = 100u64;
        let mut ids = || {
            next += 1;
            next
        };
        let g = Guild::new(7, "gg", UserInfo::new(1, "owner"), 1_000, &mut ids)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut core = g.to_core();
        core.roles.clear();
        assert!(matches!(
            Guild::from_parts(core, Vec::new(), Vec::new()),
            Err(PersistError::Invalid { guild: 7, .. })
        ));
    }
}
