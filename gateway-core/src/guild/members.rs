//! Membership operations: join, leave, kick, ban, unban, roles of a member, nickname, server
//! mute and deafen, user profile changes.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::json::{member_json, user_json};
use super::limits::{BAN_REASON_CHARS_MAX, BANS_MAX, MEMBERS_MAX, NICK_CHARS_MAX, NICK_CHARS_MIN};
use super::model::{Ban, Member, UserInfo};
use super::{Actor, Audience, Guild, GuildError, GuildEvent, GuildResult, check_len, perms};
use serde_json::json;

/// A member who just joined: no roles, no nickname.
pub(super) fn new_member(user: UserInfo, now_ms: u64) -> Member {
    Member {
        user,
        nick: None,
        roles: Vec::new(),
        joined_at_ms: now_ms,
        deaf: false,
        mute: false,
        flags: 0,
    }
}

impl Guild {
    /// Adds a member (a join the server decided on: OAuth2 add, control plane). Refused for
    /// banned users, members, and when the guild is full. Emits GUILD_MEMBER_ADD; the joining
    /// user's own GUILD_CREATE is the engine's to send ([`Guild::to_guild_create`]), since it
    /// depends on each session's `large_threshold` and on presences.
    pub fn add_member(&mut self, user: UserInfo, now_ms: u64) -> GuildResult {
        self.check_can_join(user.id)?;
        let uid = user.id;
        self.members.insert(uid, new_member(user, now_ms));
        self.invalidate_user(uid);
        Ok(vec![self.member_event("GUILD_MEMBER_ADD", uid)])
    }

    /// The member leaves on their own (the owner cannot). Emits GUILD_MEMBER_REMOVE to the
    /// guild and GUILD_DELETE to the user.
    pub fn remove_member(&mut self, user_id: u64) -> GuildResult {
        if user_id == self.owner_id {
            return Err(GuildError::Owner);
        }
        if !self.members.contains_key(&user_id) {
            return Err(GuildError::UnknownMember(user_id));
        }
        Ok(self.drop_member(user_id))
    }

    /// Removes a member below the actor. Needs KICK_MEMBERS. Emits what
    /// [`Guild::remove_member`] emits.
    pub fn kick(&mut self, actor: impl Into<Actor>, user_id: u64) -> GuildResult {
        let actor = actor.into();
        self.check_actor(actor)?;
        self.require(actor, None, perms::KICK_MEMBERS)?;
        if !self.members.contains_key(&user_id) {
            return Err(GuildError::UnknownMember(user_id));
        }
        self.check_member_below(actor, user_id)?;
        Ok(self.drop_member(user_id))
    }

    /// Bans a member below the actor and removes them; they cannot join again until unbanned.
    /// Needs BAN_MEMBERS. Emits GUILD_BAN_ADD (to members who can ban), then what
    /// [`Guild::remove_member`] emits. Deleting their messages is the message store's job.
    pub fn ban(
        &mut self,
        actor: impl Into<Actor>,
        user_id: u64,
        reason: Option<&str>,
    ) -> GuildResult {
        let actor = actor.into();
        self.check_actor(actor)?;
        self.require(actor, None, perms::BAN_MEMBERS)?;
        let user = self
            .members
            .get(&user_id)
            .map(|m| m.user.clone())
            .ok_or(GuildError::UnknownMember(user_id))?;
        self.check_member_below(actor, user_id)?;
        if let Some(r) = reason {
            check_len("reason", r, 0, BAN_REASON_CHARS_MAX)?;
        }
        if self.bans.len() >= BANS_MAX {
            return Err(GuildError::LimitReached {
                what: "bans",
                max: BANS_MAX,
            });
        }
        let data = json!({"guild_id": self.id.to_string(), "user": user_json(&user)});
        self.bans.insert(
            user_id,
            Ban {
                user,
                reason: reason.filter(|r| !r.is_empty()).map(str::to_owned),
            },
        );
        let mut events = vec![GuildEvent {
            name: "GUILD_BAN_ADD",
            data,
            audience: Audience::Permission {
                channel_id: None,
                permission: perms::BAN_MEMBERS,
            },
        }];
        events.extend(self.drop_member(user_id));
        Ok(events)
    }

    /// Lifts a ban. Needs BAN_MEMBERS. Emits GUILD_BAN_REMOVE (to members who can ban).
    pub fn unban(&mut self, actor: impl Into<Actor>, user_id: u64) -> GuildResult {
        let actor = actor.into();
        self.check_actor(actor)?;
        self.require(actor, None, perms::BAN_MEMBERS)?;
        let ban = self
            .bans
            .remove(&user_id)
            .ok_or(GuildError::UnknownBan(user_id))?;
        Ok(vec![GuildEvent {
            name: "GUILD_BAN_REMOVE",
            data: json!({"guild_id": self.id.to_string(), "user": user_json(&ban.user)}),
            audience: Audience::Permission {
                channel_id: None,
                permission: perms::BAN_MEMBERS,
            },
        }])
    }

    /// Gives a member a role below the actor's highest. Needs MANAGE_ROLES; not @everyone, not
    /// a managed role (except by the system). Emits GUILD_MEMBER_UPDATE (nothing when the
    /// member already had it).
    pub fn add_member_role(
        &mut self,
        actor: impl Into<Actor>,
        user_id: u64,
        role_id: u64,
    ) -> GuildResult {
        let actor = actor.into();
        self.check_member_role_change(actor, user_id, role_id)?;
        let Some(m) = self.members.get_mut(&user_id) else {
            return Err(GuildError::UnknownMember(user_id));
        };
        if m.roles.contains(&role_id) {
            return Ok(Vec::new());
        }
        m.roles.push(role_id);
        self.invalidate_user(user_id);
        Ok(vec![self.member_event("GUILD_MEMBER_UPDATE", user_id)])
    }

    /// Takes a role from a member; same rules as [`Guild::add_member_role`]. Emits
    /// GUILD_MEMBER_UPDATE (nothing when the member did not have it).
    pub fn remove_member_role(
        &mut self,
        actor: impl Into<Actor>,
        user_id: u64,
        role_id: u64,
    ) -> GuildResult {
        let actor = actor.into();
        self.check_member_role_change(actor, user_id, role_id)?;
        let Some(m) = self.members.get_mut(&user_id) else {
            return Err(GuildError::UnknownMember(user_id));
        };
        let before = m.roles.len();
        m.roles.retain(|&r| r != role_id);
        if m.roles.len() == before {
            return Ok(Vec::new());
        }
        self.invalidate_user(user_id);
        Ok(vec![self.member_event("GUILD_MEMBER_UPDATE", user_id)])
    }

    /// Sets or clears (`None` or empty) a nickname. One's own needs CHANGE_NICKNAME (or
    /// MANAGE_NICKNAMES); another's needs MANAGE_NICKNAMES and a target below the actor (only
    /// the owner names the owner). Emits GUILD_MEMBER_UPDATE (nothing when unchanged).
    pub fn set_nick(
        &mut self,
        actor: impl Into<Actor>,
        user_id: u64,
        nick: Option<&str>,
    ) -> GuildResult {
        let actor = actor.into();
        self.check_actor(actor)?;
        let current = self
            .members
            .get(&user_id)
            .ok_or(GuildError::UnknownMember(user_id))?
            .nick
            .clone();
        match actor {
            Actor::System => {}
            Actor::User(u) if u == user_id => {
                let held = self.base_permissions(u);
                if held & (perms::CHANGE_NICKNAME | perms::MANAGE_NICKNAMES) == 0 {
                    return Err(GuildError::MissingPermission {
                        missing: perms::CHANGE_NICKNAME,
                    });
                }
            }
            Actor::User(_) => {
                self.require(actor, None, perms::MANAGE_NICKNAMES)?;
                self.check_member_below(actor, user_id)?;
            }
        }
        let nick = nick.filter(|n| !n.is_empty());
        if let Some(n) = nick {
            check_len("nick", n, NICK_CHARS_MIN, NICK_CHARS_MAX)?;
        }
        if current.as_deref() == nick {
            return Ok(Vec::new());
        }
        if let Some(m) = self.members.get_mut(&user_id) {
            m.nick = nick.map(str::to_owned);
        }
        Ok(vec![self.member_event("GUILD_MEMBER_UPDATE", user_id)])
    }

    /// Server-mutes and/or server-deafens a member (`None` leaves a flag alone). Needs
    /// MUTE_MEMBERS for `mute` and DEAFEN_MEMBERS for `deaf`; no hierarchy, as in Discord.
    /// Emits GUILD_MEMBER_UPDATE (nothing when unchanged).
    pub fn set_voice_moderation(
        &mut self,
        actor: impl Into<Actor>,
        user_id: u64,
        mute: Option<bool>,
        deaf: Option<bool>,
    ) -> GuildResult {
        let actor = actor.into();
        self.check_actor(actor)?;
        let mut needed = 0;
        if mute.is_some() {
            needed |= perms::MUTE_MEMBERS;
        }
        if deaf.is_some() {
            needed |= perms::DEAFEN_MEMBERS;
        }
        self.require(actor, None, needed)?;
        let Some(m) = self.members.get_mut(&user_id) else {
            return Err(GuildError::UnknownMember(user_id));
        };
        let before = (m.mute, m.deaf);
        m.mute = mute.unwrap_or(m.mute);
        m.deaf = deaf.unwrap_or(m.deaf);
        if before == (m.mute, m.deaf) {
            return Ok(Vec::new());
        }
        Ok(vec![self.member_event("GUILD_MEMBER_UPDATE", user_id)])
    }

    /// A member's user profile changed (name, avatar...). Emits GUILD_MEMBER_UPDATE (nothing
    /// when unchanged or not a member, since the user is then none of this guild's business).
    pub fn update_user(&mut self, user: UserInfo) -> Vec<GuildEvent> {
        let uid = user.id;
        match self.members.get_mut(&uid) {
            Some(m) if m.user != user => m.user = user,
            _ => return Vec::new(),
        }
        vec![self.member_event("GUILD_MEMBER_UPDATE", uid)]
    }

    /// Refuses a join by a banned user, a member, or into a full guild.
    pub(super) fn check_can_join(&self, user_id: u64) -> Result<(), GuildError> {
        if self.bans.contains_key(&user_id) {
            return Err(GuildError::Banned(user_id));
        }
        if self.members.contains_key(&user_id) {
            return Err(GuildError::AlreadyMember(user_id));
        }
        if self.members.len() >= MEMBERS_MAX {
            return Err(GuildError::GuildFull);
        }
        Ok(())
    }

    fn check_member_role_change(
        &self,
        actor: Actor,
        user_id: u64,
        role_id: u64,
    ) -> Result<(), GuildError> {
        self.check_actor(actor)?;
        let role = self
            .roles
            .get(&role_id)
            .ok_or(GuildError::UnknownRole(role_id))?;
        if role_id == self.id {
            return Err(GuildError::EveryoneRole);
        }
        if role.managed && actor != Actor::System {
            return Err(GuildError::ManagedRole(role_id));
        }
        if !self.members.contains_key(&user_id) {
            return Err(GuildError::UnknownMember(user_id));
        }
        self.require(actor, None, perms::MANAGE_ROLES)?;
        self.check_role_below(actor, role_id)
    }

    /// Removes a member and tells everyone, and the user, that they are gone.
    fn drop_member(&mut self, user_id: u64) -> Vec<GuildEvent> {
        let Some(m) = self.members.remove(&user_id) else {
            return Vec::new();
        };
        self.invalidate_user(user_id);
        vec![
            self.guild_event(
                "GUILD_MEMBER_REMOVE",
                json!({"guild_id": self.id.to_string(), "user": user_json(&m.user)}),
            ),
            // No `unavailable` field: the client takes it as "you were removed".
            GuildEvent {
                name: "GUILD_DELETE",
                data: json!({"id": self.id.to_string()}),
                audience: Audience::User(user_id),
            },
        ]
    }

    /// GUILD_MEMBER_ADD or GUILD_MEMBER_UPDATE for a member, with `guild_id`.
    fn member_event(&self, name: &'static str, user_id: u64) -> GuildEvent {
        let mut data = self
            .members
            .get(&user_id)
            .map_or(serde_json::Value::Null, member_json);
        if let Some(obj) = data.as_object_mut() {
            obj.insert("guild_id".into(), self.id.to_string().into());
        }
        self.guild_event(name, data)
    }
}
