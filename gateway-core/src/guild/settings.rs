//! Guild-wide settings: name, icon, description, system and AFK channels, moderation levels,
//! and ownership transfer.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::limits::{
    AFK_TIMEOUT_S_MAX, GUILD_DESCRIPTION_CHARS_MAX, GUILD_NAME_CHARS_MAX, GUILD_NAME_CHARS_MIN,
    IMAGE_HASH_CHARS_MAX,
};
use super::model::ChannelKind;
use super::{Actor, Guild, GuildError, GuildResult, check_len, check_range, perms};

/// AFK timeouts Discord offers, in seconds.
const AFK_TIMEOUTS_S: [u32; 5] = [60, 300, 900, 1_800, 3_600];
/// Highest verification level (4 = verified phone).
const VERIFICATION_LEVEL_MAX: u8 = 4;
/// Highest default notification level (1 = only mentions).
const NOTIFICATIONS_LEVEL_MAX: u8 = 1;
/// Highest explicit content filter level (2 = all members).
const CONTENT_FILTER_LEVEL_MAX: u8 = 2;

const _: () = assert!(AFK_TIMEOUTS_S[4] == AFK_TIMEOUT_S_MAX);

/// Changes to the guild; `None` leaves a field as it is, `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuildPatch {
    /// New name.
    pub name: Option<String>,
    /// New icon hash.
    pub icon: Option<Option<String>>,
    /// New description.
    pub description: Option<Option<String>>,
    /// New AFK voice channel.
    pub afk_channel_id: Option<Option<u64>>,
    /// New AFK timeout (one of 60, 300, 900, 1800, 3600).
    pub afk_timeout_s: Option<u32>,
    /// New system (join messages) text channel.
    pub system_channel_id: Option<Option<u64>>,
    /// New verification level (0..=4).
    pub verification_level: Option<u8>,
    /// New default notification level (0..=1).
    pub default_message_notifications: Option<u8>,
    /// New explicit content filter (0..=2).
    pub explicit_content_filter: Option<u8>,
}

pub(super) fn check_guild_name(name: &str) -> Result<(), GuildError> {
    check_len("name", name, GUILD_NAME_CHARS_MIN, GUILD_NAME_CHARS_MAX)
}

impl Guild {
    /// Changes guild settings. Needs MANAGE_GUILD. Emits GUILD_UPDATE (nothing when nothing
    /// changed).
    pub fn update_guild(&mut self, actor: impl Into<Actor>, patch: GuildPatch) -> GuildResult {
        let actor = actor.into();
        self.check_actor(actor)?;
        self.require(actor, None, perms::MANAGE_GUILD)?;
        if let Some(n) = &patch.name {
            check_guild_name(n)?;
        }
        if let Some(Some(icon)) = &patch.icon {
            check_len("icon", icon, 1, IMAGE_HASH_CHARS_MAX)?;
        }
        if let Some(Some(d)) = &patch.description {
            check_len("description", d, 0, GUILD_DESCRIPTION_CHARS_MAX)?;
        }
        if let Some(Some(c)) = patch.afk_channel_id {
            self.check_channel_kind(c, "afk_channel_id", |k| k == ChannelKind::Voice)?;
        }
        if let Some(Some(c)) = patch.system_channel_id {
            self.check_channel_kind(c, "system_channel_id", |k| k == ChannelKind::Text)?;
        }
        if let Some(t) = patch.afk_timeout_s
            && !AFK_TIMEOUTS_S.contains(&t)
        {
            return Err(GuildError::OutOfRange {
                field: "afk_timeout",
                value: u64::from(t),
                min: 60,
                max: u64::from(AFK_TIMEOUT_S_MAX),
            });
        }
        let levels = [
            (
                "verification_level",
                patch.verification_level,
                VERIFICATION_LEVEL_MAX,
            ),
            (
                "default_message_notifications",
                patch.default_message_notifications,
                NOTIFICATIONS_LEVEL_MAX,
            ),
            (
                "explicit_content_filter",
                patch.explicit_content_filter,
                CONTENT_FILTER_LEVEL_MAX,
            ),
        ];
        for (field, value, max) in levels {
            if let Some(v) = value {
                check_range(field, u64::from(v), 0, u64::from(max))?;
            }
        }
        let before = self.to_guild_json();
        if let Some(v) = patch.name {
            self.name = v;
        }
        if let Some(v) = patch.icon {
            self.icon = v;
        }
        if let Some(v) = patch.description {
            self.description = v;
        }
        if let Some(v) = patch.afk_channel_id {
            self.afk_channel_id = v;
        }
        if let Some(v) = patch.afk_timeout_s {
            self.afk_timeout_s = v;
        }
        if let Some(v) = patch.system_channel_id {
            self.system_channel_id = v;
        }
        if let Some(v) = patch.verification_level {
            self.verification_level = v;
        }
        if let Some(v) = patch.default_message_notifications {
            self.default_message_notifications = v;
        }
        if let Some(v) = patch.explicit_content_filter {
            self.explicit_content_filter = v;
        }
        let after = self.to_guild_json();
        if after == before {
            return Ok(Vec::new());
        }
        Ok(vec![self.guild_event("GUILD_UPDATE", after)])
    }

    /// Hands the guild to another member. Only the owner (or the system) may. Emits
    /// GUILD_UPDATE.
    pub fn transfer_ownership(
        &mut self,
        actor: impl Into<Actor>,
        new_owner_id: u64,
    ) -> GuildResult {
        let actor = actor.into();
        if let Actor::User(u) = actor
            && u != self.owner_id
        {
            return Err(GuildError::NotOwner);
        }
        if !self.members.contains_key(&new_owner_id) {
            return Err(GuildError::UnknownMember(new_owner_id));
        }
        if new_owner_id == self.owner_id {
            return Ok(Vec::new());
        }
        let old = self.owner_id;
        self.owner_id = new_owner_id;
        self.invalidate_user(old);
        self.invalidate_user(new_owner_id);
        Ok(vec![self.guild_event("GUILD_UPDATE", self.to_guild_json())])
    }

    fn check_channel_kind(
        &self,
        channel_id: u64,
        field: &'static str,
        ok: impl Fn(ChannelKind) -> bool,
    ) -> Result<(), GuildError> {
        let c = self
            .channels
            .get(&channel_id)
            .ok_or(GuildError::UnknownChannel(channel_id))?;
        if !ok(c.kind) {
            return Err(GuildError::NotForChannelKind { field });
        }
        Ok(())
    }
}
