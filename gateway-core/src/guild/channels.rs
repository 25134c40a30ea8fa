//! Channel operations: create, update (fields and overwrites), delete, reorder.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::json::channel_json;
use super::limits::{
    BITRATE_DEFAULT, BITRATE_MAX, BITRATE_MIN, CHANNEL_NAME_CHARS_MAX, CHANNEL_NAME_CHARS_MIN,
    CHANNEL_TOPIC_CHARS_MAX, CHANNELS_MAX, CHANNELS_PER_CATEGORY_MAX, OVERWRITES_PER_CHANNEL_MAX,
    RATE_LIMIT_PER_USER_S_MAX, REORDER_ENTRIES_MAX, USER_LIMIT_MAX,
};
use super::model::{Channel, ChannelKind, Overwrite, OverwriteKind};
use super::{
    Actor, Audience, Guild, GuildError, GuildEvent, GuildResult, check_len, check_range, perms,
};

/// What a new channel looks like; unset numbers take the kind's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChannel {
    /// Name.
    pub name: String,
    /// Type.
    pub kind: ChannelKind,
    /// Category to put it in.
    pub parent_id: Option<u64>,
    /// Position; by default after its last sibling.
    pub position: Option<u32>,
    /// Topic (text-like only).
    pub topic: Option<String>,
    /// Age-restricted.
    pub nsfw: bool,
    /// Voice bitrate (voice only).
    pub bitrate: Option<u32>,
    /// Voice member cap (voice only).
    pub user_limit: Option<u32>,
    /// Slow mode seconds.
    pub rate_limit_per_user: u32,
    /// Permission overwrites.
    pub overwrites: Vec<Overwrite>,
}

impl NewChannel {
    /// A channel of `kind` with every default.
    pub fn new(kind: ChannelKind, name: &str) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            parent_id: None,
            position: None,
            topic: None,
            nsfw: false,
            bitrate: None,
            user_limit: None,
            rate_limit_per_user: 0,
            overwrites: Vec::new(),
        }
    }

    /// A text channel.
    pub fn text(name: &str) -> Self {
        Self::new(ChannelKind::Text, name)
    }

    /// A voice channel.
    pub fn voice(name: &str) -> Self {
        Self::new(ChannelKind::Voice, name)
    }

    /// A category.
    pub fn category(name: &str) -> Self {
        Self::new(ChannelKind::Category, name)
    }

    /// The same, inside category `parent_id`.
    pub fn in_category(mut self, parent_id: u64) -> Self {
        self.parent_id = Some(parent_id);
        self
    }
}

/// Changes to a channel; `None` leaves a field as it is, `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelPatch {
    /// New name.
    pub name: Option<String>,
    /// New topic.
    pub topic: Option<Option<String>>,
    /// New position.
    pub position: Option<u32>,
    /// New category.
    pub parent_id: Option<Option<u64>>,
    /// New age restriction.
    pub nsfw: Option<bool>,
    /// New bitrate.
    pub bitrate: Option<u32>,
    /// New member cap.
    pub user_limit: Option<u32>,
    /// New slow mode.
    pub rate_limit_per_user: Option<u32>,
    /// New overwrites, replacing all of them (needs MANAGE_ROLES too).
    pub overwrites: Option<Vec<Overwrite>>,
}

/// An empty channel of `kind`.
pub(super) fn blank(id: u64, kind: ChannelKind, name: &str) -> Channel {
    Channel {
        id,
        kind,
        name: name.to_owned(),
        position: 0,
        parent_id: None,
        topic: None,
        nsfw: false,
        bitrate: if kind == ChannelKind::Voice {
            BITRATE_DEFAULT
        } else {
            0
        },
        user_limit: 0,
        rate_limit_per_user: 0,
        overwrites: Vec::new(),
        last_message_id: None,
    }
}

impl Guild {
    /// Creates channel `id` (a fresh snowflake from the caller). Needs MANAGE_CHANNELS (in the
    /// category when it has one), and MANAGE_ROLES when it comes with overwrites.
    /// Emits CHANNEL_CREATE to the channel's viewers.
    pub fn create_channel(
        &mut self,
        actor: impl Into<Actor>,
        id: u64,
        spec: NewChannel,
    ) -> GuildResult {
        let actor = actor.into();
        self.check_actor(actor)?;
        if let Some(p) = spec.parent_id {
            self.require_known_channel(p)?;
        }
        let mut needed = perms::MANAGE_CHANNELS;
        if !spec.overwrites.is_empty() {
            needed |= perms::MANAGE_ROLES;
        }
        self.require(actor, spec.parent_id, needed)?;
        if self.channels.len() >= CHANNELS_MAX {
            return Err(GuildError::LimitReached {
                what: "channels",
                max: CHANNELS_MAX,
            });
        }
        if id == self.id || self.channels.contains_key(&id) || self.roles.contains_key(&id) {
            return Err(GuildError::IdTaken(id));
        }
        let mut c = blank(id, spec.kind, &spec.name);
        c.parent_id = spec.parent_id;
        c.topic = spec.topic;
        c.nsfw = spec.nsfw;
        if let Some(b) = spec.bitrate {
            c.bitrate = b;
        }
        c.user_limit = spec.user_limit.unwrap_or(0);
        c.rate_limit_per_user = spec.rate_limit_per_user;
        c.overwrites = spec.overwrites;
        c.position = match spec.position {
            Some(p) => p,
            None => self
                .channels
                .values()
                .filter(|o| o.parent_id == c.parent_id)
                .map(|o| o.position.saturating_add(1))
                .max()
                .unwrap_or(0),
        };
        let kind_fields_given = spec.bitrate.is_some() || spec.user_limit.is_some();
        if kind_fields_given && c.kind != ChannelKind::Voice {
            return Err(GuildError::NotForChannelKind { field: "bitrate" });
        }
        self.validate_channel(&c, None)?;
        self.channels.insert(id, c);
        // Ids are never reused, but a stale cache line for this id must not survive anyway.
        self.invalidate_all();
        Ok(vec![self.channel_event("CHANNEL_CREATE", id, None)])
    }

    /// Changes a channel. Needs MANAGE_CHANNELS in it, and MANAGE_ROLES there too when the
    /// overwrites change. Emits CHANNEL_UPDATE (nothing when nothing changed); when the
    /// overwrites change it goes to everyone who could see the channel before or after.
    pub fn update_channel(
        &mut self,
        actor: impl Into<Actor>,
        channel_id: u64,
        patch: ChannelPatch,
    ) -> GuildResult {
        let actor = actor.into();
        self.check_actor(actor)?;
        let old = self.require_known_channel(channel_id)?.clone();
        let mut needed = perms::MANAGE_CHANNELS;
        if patch
            .overwrites
            .as_ref()
            .is_some_and(|o| *o != old.overwrites)
        {
            needed |= perms::MANAGE_ROLES;
        }
        self.require(actor, Some(channel_id), needed)?;
        let mut c = old.clone();
        if let Some(v) = patch.name {
            c.name = v;
        }
        if let Some(v) = patch.topic {
            c.topic = v;
        }
        if let Some(v) = patch.position {
            c.position = v;
        }
        if let Some(v) = patch.parent_id {
            c.parent_id = v;
        }
        if let Some(v) = patch.nsfw {
            c.nsfw = v;
        }
        if let Some(v) = patch.bitrate {
            if c.kind != ChannelKind::Voice {
                return Err(GuildError::NotForChannelKind { field: "bitrate" });
            }
            c.bitrate = v;
        }
        if let Some(v) = patch.user_limit {
            if c.kind != ChannelKind::Voice {
                return Err(GuildError::NotForChannelKind {
                    field: "user_limit",
                });
            }
            c.user_limit = v;
        }
        if let Some(v) = patch.rate_limit_per_user {
            c.rate_limit_per_user = v;
        }
        if let Some(v) = patch.overwrites {
            c.overwrites = v;
        }
        self.validate_channel(&c, Some(&old))?;
        Ok(self.replace_channel(old, c))
    }

    /// Adds or replaces one overwrite (Discord's "edit channel permissions"). Needs
    /// MANAGE_ROLES in the channel. Emits CHANNEL_UPDATE.
    pub fn set_channel_overwrite(
        &mut self,
        actor: impl Into<Actor>,
        channel_id: u64,
        overwrite: Overwrite,
    ) -> GuildResult {
        let actor = actor.into();
        self.check_actor(actor)?;
        let old = self.require_known_channel(channel_id)?.clone();
        self.require(actor, Some(channel_id), perms::MANAGE_ROLES)?;
        let mut c = old.clone();
        match c
            .overwrites
            .iter_mut()
            .find(|o| o.kind == overwrite.kind && o.id == overwrite.id)
        {
            Some(o) => *o = overwrite,
            None => c.overwrites.push(overwrite),
        }
        self.validate_channel(&c, Some(&old))?;
        Ok(self.replace_channel(old, c))
    }

    /// Removes one overwrite. Needs MANAGE_ROLES in the channel. Emits CHANNEL_UPDATE (nothing
    /// when there was no such overwrite).
    pub fn delete_channel_overwrite(
        &mut self,
        actor: impl Into<Actor>,
        channel_id: u64,
        kind: OverwriteKind,
        target_id: u64,
    ) -> GuildResult {
        let actor = actor.into();
        self.check_actor(actor)?;
        let old = self.require_known_channel(channel_id)?.clone();
        self.require(actor, Some(channel_id), perms::MANAGE_ROLES)?;
        let mut c = old.clone();
        c.overwrites
            .retain(|o| !(o.kind == kind && o.id == target_id));
        Ok(self.replace_channel(old, c))
    }

    /// Deletes a channel. Needs MANAGE_CHANNELS in it. Emits CHANNEL_DELETE to those who could
    /// see it; a category's children move to the top level (CHANNEL_UPDATE each); its invites go
    /// (INVITE_DELETE to those who could manage them); the guild's system or AFK channel is
    /// cleared if it was this one (GUILD_UPDATE).
    pub fn delete_channel(&mut self, actor: impl Into<Actor>, channel_id: u64) -> GuildResult {
        let actor = actor.into();
        self.check_actor(actor)?;
        self.require_known_channel(channel_id)?;
        self.require(actor, Some(channel_id), perms::MANAGE_CHANNELS)?;
        let viewers: Vec<u64> = self.viewers(channel_id).collect();
        let managers = self.recipients(&Audience::Permission {
            channel_id: Some(channel_id),
            permission: perms::MANAGE_CHANNELS,
        });
        let Some(removed) = self.channels.remove(&channel_id) else {
            return Err(GuildError::UnknownChannel(channel_id));
        };
        self.invalidate_all();
        let mut events = vec![GuildEvent {
            name: "CHANNEL_DELETE",
            data: channel_json(self.id, &removed),
            audience: Audience::Users(viewers),
        }];
        let children: Vec<u64> = self
            .channels
            .values()
            .filter(|c| c.parent_id == Some(channel_id))
            .map(|c| c.id)
            .collect();
        for child in children {
            if let Some(c) = self.channels.get_mut(&child) {
                c.parent_id = None;
            }
            events.push(self.channel_event("CHANNEL_UPDATE", child, None));
        }
        let codes: Vec<String> = self
            .invites
            .values()
            .filter(|i| i.channel_id == channel_id)
            .map(|i| i.code.clone())
            .collect();
        for code in codes {
            self.invites.remove(&code);
            events.push(GuildEvent {
                name: "INVITE_DELETE",
                data: serde_json::json!({
                    "channel_id": channel_id.to_string(),
                    "guild_id": self.id.to_string(),
                    "code": code,
                }),
                audience: Audience::Users(managers.clone()),
            });
        }
        let mut guild_changed = false;
        if self.system_channel_id == Some(channel_id) {
            self.system_channel_id = None;
            guild_changed = true;
        }
        if self.afk_channel_id == Some(channel_id) {
            self.afk_channel_id = None;
            guild_changed = true;
        }
        if guild_changed {
            events.push(self.guild_event("GUILD_UPDATE", self.to_guild_json()));
        }
        Ok(events)
    }

    /// Sets many channels' positions at once (Discord's bulk reorder). Needs MANAGE_CHANNELS.
    /// Emits CHANNEL_UPDATE for each channel that moved.
    pub fn reorder_channels(
        &mut self,
        actor: impl Into<Actor>,
        positions: &[(u64, u32)],
    ) -> GuildResult {
        let actor = actor.into();
        self.check_actor(actor)?;
        self.require(actor, None, perms::MANAGE_CHANNELS)?;
        if positions.len() > REORDER_ENTRIES_MAX {
            return Err(GuildError::LimitReached {
                what: "reorder entries",
                max: REORDER_ENTRIES_MAX,
            });
        }
        for &(id, _) in positions {
            self.require_known_channel(id)?;
        }
        let mut moved: Vec<u64> = Vec::new();
        for &(id, position) in positions {
            if let Some(c) = self.channels.get_mut(&id)
                && c.position != position
            {
                c.position = position;
                if !moved.contains(&id) {
                    moved.push(id);
                }
            }
        }
        Ok(moved
            .into_iter()
            .map(|id| self.channel_event("CHANNEL_UPDATE", id, None))
            .collect())
    }

    /// Records the newest message of a channel (for `last_message_id`); no event, since
    /// MESSAGE_CREATE already tells clients.
    pub fn note_message(&mut self, channel_id: u64, message_id: u64) -> Result<(), GuildError> {
        let c = self
            .channels
            .get_mut(&channel_id)
            .ok_or(GuildError::UnknownChannel(channel_id))?;
        if c.last_message_id.is_none_or(|last| message_id > last) {
            c.last_message_id = Some(message_id);
        }
        Ok(())
    }

    fn require_known_channel(&self, channel_id: u64) -> Result<&Channel, GuildError> {
        self.channels
            .get(&channel_id)
            .ok_or(GuildError::UnknownChannel(channel_id))
    }

    /// Stores `new` in place of `old` and describes the change; no event when nothing changed.
    fn replace_channel(&mut self, old: Channel, new: Channel) -> Vec<GuildEvent> {
        if old == new {
            return Vec::new();
        }
        let id = new.id;
        let overwrites_changed = old.overwrites != new.overwrites;
        let before: Option<Vec<u64>> = overwrites_changed.then(|| self.viewers(id).collect());
        self.channels.insert(id, new);
        if overwrites_changed {
            self.invalidate_all();
        }
        vec![self.channel_event("CHANNEL_UPDATE", id, before)]
    }

    /// A channel event for its current viewers, plus `also` (those who saw it before a change
    /// of overwrites: they must learn they lost it).
    pub(super) fn channel_event(
        &self,
        name: &'static str,
        channel_id: u64,
        also: Option<Vec<u64>>,
    ) -> GuildEvent {
        let data = self
            .channels
            .get(&channel_id)
            .map_or(serde_json::Value::Null, |c| channel_json(self.id, c));
        let audience = match also {
            None => Audience::Channel(channel_id),
            Some(mut users) => {
                users.extend(self.viewers(channel_id));
                users.sort_unstable();
                users.dedup();
                Audience::Users(users)
            }
        };
        GuildEvent {
            name,
            data,
            audience,
        }
    }

    /// Every rule a stored channel obeys; `old` is the channel being replaced, if any.
    fn validate_channel(&self, c: &Channel, old: Option<&Channel>) -> Result<(), GuildError> {
        check_len(
            "name",
            &c.name,
            CHANNEL_NAME_CHARS_MIN,
            CHANNEL_NAME_CHARS_MAX,
        )?;
        if let Some(t) = &c.topic {
            if !c.kind.is_text() {
                return Err(GuildError::NotForChannelKind { field: "topic" });
            }
            check_len("topic", t, 0, CHANNEL_TOPIC_CHARS_MAX)?;
        }
        if c.kind == ChannelKind::Voice {
            check_range(
                "bitrate",
                u64::from(c.bitrate),
                u64::from(BITRATE_MIN),
                u64::from(BITRATE_MAX),
            )?;
            check_range(
                "user_limit",
                u64::from(c.user_limit),
                0,
                u64::from(USER_LIMIT_MAX),
            )?;
        }
        check_range(
            "rate_limit_per_user",
            u64::from(c.rate_limit_per_user),
            0,
            u64::from(RATE_LIMIT_PER_USER_S_MAX),
        )?;
        if let Some(p) = c.parent_id
            && old.is_none_or(|o| o.parent_id != Some(p))
        {
            let parent = self.require_known_channel(p)?;
            if parent.kind != ChannelKind::Category || c.kind == ChannelKind::Category || p == c.id
            {
                return Err(GuildError::InvalidParent(p));
            }
            let siblings = self
                .channels
                .values()
                .filter(|o| o.parent_id == Some(p))
                .count();
            if siblings >= CHANNELS_PER_CATEGORY_MAX {
                return Err(GuildError::LimitReached {
                    what: "channels in category",
                    max: CHANNELS_PER_CATEGORY_MAX,
                });
            }
        }
        if c.overwrites.len() > OVERWRITES_PER_CHANNEL_MAX {
            return Err(GuildError::LimitReached {
                what: "overwrites",
                max: OVERWRITES_PER_CHANNEL_MAX,
            });
        }
        for (i, o) in c.overwrites.iter().enumerate() {
            let unknown_bits = (o.allow | o.deny) & !perms::ALL;
            if unknown_bits != 0 {
                return Err(GuildError::OutOfRange {
                    field: "permission_overwrites",
                    value: o.allow | o.deny,
                    min: 0,
                    max: perms::ALL,
                });
            }
            if o.kind == OverwriteKind::Role && !self.roles.contains_key(&o.id) {
                return Err(GuildError::UnknownRole(o.id));
            }
            let dup = c
                .overwrites
                .iter()
                .skip(i + 1)
                .any(|p| p.kind == o.kind && p.id == o.id);
            if dup {
                return Err(GuildError::IdTaken(o.id));
            }
        }
        Ok(())
    }
}
