//! Role operations: create, update, delete, reorder, with Discord's hierarchy rules.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::json::role_json;
use super::limits::{
    REORDER_ENTRIES_MAX, ROLE_COLOR_MAX, ROLE_NAME_CHARS_MAX, ROLE_NAME_CHARS_MIN, ROLES_MAX,
};
use super::model::{OverwriteKind, Role};
use super::{
    Actor, Audience, Guild, GuildError, GuildEvent, GuildResult, check_len, check_range, perms,
};
use serde_json::json;

/// What a new role looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRole {
    /// Name.
    pub name: String,
    /// Permission bits.
    pub permissions: u64,
    /// RGB colour, 0 = none.
    pub color: u32,
    /// Shown apart in the member list.
    pub hoist: bool,
    /// Anyone may mention it.
    pub mentionable: bool,
    /// Owned by an integration (only [`Actor::System`] may create one).
    pub managed: bool,
}

impl Default for NewRole {
    fn default() -> Self {
        Self {
            name: "new role".into(),
            permissions: 0,
            color: 0,
            hoist: false,
            mentionable: false,
            managed: false,
        }
    }
}

impl NewRole {
    /// A role named `name` with `permissions`.
    pub fn new(name: &str, permissions: u64) -> Self {
        Self {
            name: name.to_owned(),
            permissions,
            ..Self::default()
        }
    }
}

/// Changes to a role; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolePatch {
    /// New name (not for @everyone).
    pub name: Option<String>,
    /// New permission bits.
    pub permissions: Option<u64>,
    /// New colour.
    pub color: Option<u32>,
    /// New hoist.
    pub hoist: Option<bool>,
    /// New mentionable.
    pub mentionable: Option<bool>,
}

impl Guild {
    /// Creates role `id` (a fresh snowflake from the caller) at the bottom of the hierarchy
    /// (position 1, just above @everyone). Needs MANAGE_ROLES and, unless owner or
    /// administrator, every bit it grants. Emits GUILD_ROLE_CREATE.
    pub fn create_role(&mut self, actor: impl Into<Actor>, id: u64, spec: NewRole) -> GuildResult {
        let actor = actor.into();
        self.check_actor(actor)?;
        self.require(actor, None, perms::MANAGE_ROLES)?;
        if self.roles.len() >= ROLES_MAX {
            return Err(GuildError::LimitReached {
                what: "roles",
                max: ROLES_MAX,
            });
        }
        if id == self.id || self.roles.contains_key(&id) || self.channels.contains_key(&id) {
            return Err(GuildError::IdTaken(id));
        }
        if spec.managed && actor != Actor::System {
            return Err(GuildError::ManagedRole(id));
        }
        check_len("name", &spec.name, ROLE_NAME_CHARS_MIN, ROLE_NAME_CHARS_MAX)?;
        check_range("color", u64::from(spec.color), 0, u64::from(ROLE_COLOR_MAX))?;
        check_range("permissions", spec.permissions & !perms::ALL, 0, 0)?;
        self.require_grantable(actor, spec.permissions)?;
        let role = Role {
            id,
            name: spec.name,
            color: spec.color,
            hoist: spec.hoist,
            mentionable: spec.mentionable,
            managed: spec.managed,
            permissions: spec.permissions,
            position: 1,
            flags: 0,
        };
        let data = json!({"guild_id": self.id.to_string(), "role": role_json(&role)});
        self.roles.insert(id, role);
        Ok(vec![self.guild_event("GUILD_ROLE_CREATE", data)])
    }

    /// Changes a role below the actor's highest (the owner may change any). Needs MANAGE_ROLES
    /// and, unless owner or administrator, every bit it adds. Emits GUILD_ROLE_UPDATE (nothing
    /// when nothing changed).
    pub fn update_role(
        &mut self,
        actor: impl Into<Actor>,
        role_id: u64,
        patch: RolePatch,
    ) -> GuildResult {
        let actor = actor.into();
        self.check_actor(actor)?;
        let old = self
            .roles
            .get(&role_id)
            .ok_or(GuildError::UnknownRole(role_id))?
            .clone();
        self.require(actor, None, perms::MANAGE_ROLES)?;
        self.check_role_below(actor, role_id)?;
        let mut r = old.clone();
        if let Some(name) = patch.name {
            if role_id == self.id && name != r.name {
                return Err(GuildError::EveryoneRole);
            }
            check_len("name", &name, ROLE_NAME_CHARS_MIN, ROLE_NAME_CHARS_MAX)?;
            r.name = name;
        }
        if let Some(p) = patch.permissions {
            check_range("permissions", p & !perms::ALL, 0, 0)?;
            self.require_grantable(actor, p & !old.permissions)?;
            r.permissions = p;
        }
        if let Some(c) = patch.color {
            check_range("color", u64::from(c), 0, u64::from(ROLE_COLOR_MAX))?;
            r.color = c;
        }
        if let Some(h) = patch.hoist {
            r.hoist = h;
        }
        if let Some(m) = patch.mentionable {
            r.mentionable = m;
        }
        if r == old {
            return Ok(Vec::new());
        }
        let perms_changed = r.permissions != old.permissions;
        let data = json!({"guild_id": self.id.to_string(), "role": role_json(&r)});
        self.roles.insert(role_id, r);
        if perms_changed {
            self.invalidate_all();
        }
        Ok(vec![self.guild_event("GUILD_ROLE_UPDATE", data)])
    }

    /// Deletes a role below the actor's highest. Needs MANAGE_ROLES; not @everyone, not a
    /// managed role (except by the system). Members lose it silently (clients drop it on
    /// GUILD_ROLE_DELETE); channel overwrites for it are removed (CHANNEL_UPDATE each).
    pub fn delete_role(&mut self, actor: impl Into<Actor>, role_id: u64) -> GuildResult {
        let actor = actor.into();
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
        self.require(actor, None, perms::MANAGE_ROLES)?;
        self.check_role_below(actor, role_id)?;
        let touched: Vec<u64> = self
            .channels
            .values()
            .filter(|c| {
                c.overwrites
                    .iter()
                    .any(|o| o.kind == OverwriteKind::Role && o.id == role_id)
            })
            .map(|c| c.id)
            .collect();
        let before: Vec<Vec<u64>> = touched.iter().map(|&c| self.viewers(c).collect()).collect();
        self.roles.remove(&role_id);
        for m in self.members.values_mut() {
            m.roles.retain(|&r| r != role_id);
        }
        for &c in &touched {
            if let Some(ch) = self.channels.get_mut(&c) {
                ch.overwrites
                    .retain(|o| !(o.kind == OverwriteKind::Role && o.id == role_id));
            }
        }
        self.invalidate_all();
        let mut events = vec![self.guild_event(
            "GUILD_ROLE_DELETE",
            json!({"guild_id": self.id.to_string(), "role_id": role_id.to_string()}),
        )];
        for (c, seen) in touched.into_iter().zip(before) {
            events.push(self.channel_event("CHANNEL_UPDATE", c, Some(seen)));
        }
        Ok(events)
    }

    /// Sets many roles' positions at once. Needs MANAGE_ROLES; each role moved and each new
    /// position must be below the actor's highest role (unless owner); @everyone stays at 0 and
    /// no other role may go there. Emits GUILD_ROLE_UPDATE for each role that moved.
    pub fn reorder_roles(
        &mut self,
        actor: impl Into<Actor>,
        positions: &[(u64, u32)],
    ) -> GuildResult {
        let actor = actor.into();
        self.check_actor(actor)?;
        self.require(actor, None, perms::MANAGE_ROLES)?;
        if positions.len() > REORDER_ENTRIES_MAX {
            return Err(GuildError::LimitReached {
                what: "reorder entries",
                max: REORDER_ENTRIES_MAX,
            });
        }
        for &(id, position) in positions {
            if !self.roles.contains_key(&id) {
                return Err(GuildError::UnknownRole(id));
            }
            if id == self.id {
                return Err(GuildError::EveryoneRole);
            }
            check_range("position", u64::from(position), 1, u64::from(u32::MAX))?;
            self.check_role_below(actor, id)?;
            self.check_position_below(actor, position)?;
        }
        let mut moved: Vec<u64> = Vec::new();
        for &(id, position) in positions {
            if let Some(r) = self.roles.get_mut(&id)
                && r.position != position
            {
                r.position = position;
                if !moved.contains(&id) {
                    moved.push(id);
                }
            }
        }
        let gid = self.id.to_string();
        Ok(moved
            .into_iter()
            .filter_map(|id| self.roles.get(&id))
            .map(|r| GuildEvent {
                name: "GUILD_ROLE_UPDATE",
                data: json!({"guild_id": gid, "role": role_json(r)}),
                audience: Audience::Guild,
            })
            .collect())
    }

    /// Fails unless the actor may hand out `bits` (owner, administrator, or holds them all).
    fn require_grantable(&self, actor: Actor, bits: u64) -> Result<(), GuildError> {
        let Actor::User(u) = actor else {
            return Ok(());
        };
        let held = self.base_permissions(u);
        if held & perms::ADMINISTRATOR != 0 {
            return Ok(());
        }
        let missing = bits & !held;
        if missing != 0 {
            return Err(GuildError::MissingPermission { missing });
        }
        Ok(())
    }
}
