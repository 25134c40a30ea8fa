//! The guild model (issue 5), sans-IO: channels, roles, members, bans and invites of one guild,
//! the permission computation with its cache, validated operations that return the dispatch
//! events they produced, and the API v10 JSON shapes (GUILD_CREATE, channel, role, member,
//! message...).
//!
//! A guild lives on one shard and is changed by one core only, so it uses no locks; the
//! permission cache sits in a `RefCell` so reads stay `&self`. Time is always an argument
//! (`now_ms`), and new ids come from the caller (the shard's snowflake generator), so replaying
//! the same calls gives the same guild and the same events.
//!
//! Decisions where Discord is silent or too large to copy:
//! - An [`Actor::System`] (the control plane, the engine itself) bypasses permission and
//!   hierarchy checks but not validation; an [`Actor::User`] must be a member.
//! - The hierarchy compares roles by (position, then lower id higher), so equal positions never
//!   tie; a member's rank is that of their highest role (@everyone when none).
//! - Creating a role requires holding every bit given to it (unless owner or administrator), as
//!   Discord does; overwrite edits require MANAGE_ROLES in the channel, but, unlike Discord, not
//!   holding each bit they allow or deny.
//! - Exhausted or expired invites stay listed (so joining through them reports why) until
//!   [`Guild::prune_invites`] drops them.
//! - Channel names are stored as given (Discord lower-cases text channel names client-side).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

mod channels;
mod error;
mod event;
mod invites;
pub mod json;
pub mod limits;
pub mod member_list;
mod members;
mod message;
mod model;
pub mod perms;
pub mod persist;
mod roles;
mod settings;
pub mod time;

pub use channels::{ChannelPatch, NewChannel};
pub use error::GuildError;
pub use event::{Audience, GuildEvent};
pub use invites::{NewInvite, invite_code};
pub use json::GuildCreateOptions;
pub use message::{MessageReference, MessageView, message_json};
pub use model::{
    Ban, Channel, ChannelKind, Invite, Member, Overwrite, OverwriteKind, Role, UserInfo,
};
pub use roles::{NewRole, RolePatch};
pub use settings::GuildPatch;

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// Who performs an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Actor {
    /// The server itself or its control plane: no permission or hierarchy checks.
    System,
    /// A member acting through the API: permissions and hierarchy apply.
    User(u64),
}

impl From<u64> for Actor {
    fn from(user_id: u64) -> Self {
        Self::User(user_id)
    }
}

// Guilds are built anywhere and then moved to their owner shard.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Guild>();
};

/// Result of an operation: the events to dispatch, in order.
pub type GuildResult = Result<Vec<GuildEvent>, GuildError>;

/// Rank of a role in the hierarchy: higher position wins, then the lower (older) id.
type Rank = (u32, Reverse<u64>);

/// One guild and everything in it.
#[derive(Debug, Clone)]
pub struct Guild {
    id: u64,
    name: String,
    owner_id: u64,
    icon: Option<String>,
    description: Option<String>,
    created_at_ms: u64,
    joined_at_ms: u64,
    afk_channel_id: Option<u64>,
    afk_timeout_s: u32,
    system_channel_id: Option<u64>,
    verification_level: u8,
    default_message_notifications: u8,
    explicit_content_filter: u8,
    channels: BTreeMap<u64, Channel>,
    roles: BTreeMap<u64, Role>,
    members: BTreeMap<u64, Member>,
    bans: BTreeMap<u64, Ban>,
    invites: BTreeMap<String, Invite>,
    /// Bumped on every change that can alter any permission.
    generation: u64,
    cache: RefCell<PermCache>,
}

/// Hashes one id with a multiply: ids are server-made snowflakes, not chosen by clients, so
/// SipHash's flooding protection would only slow the fan-out path down.
#[derive(Debug, Clone, Copy, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // The multiply leaves the best-mixed bits on top; hash tables index with the low ones.
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0xF135_7AEA_2E62_A9C5);
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Memoized permissions, dropped on every change that can alter them.
#[derive(Debug, Clone, Default)]
struct PermCache {
    users: IdMap<UserPerms>,
    entries: usize,
}

#[derive(Debug, Clone, Default)]
struct UserPerms {
    base: Option<u64>,
    channels: IdMap<u64>,
}

impl PermCache {
    fn clear(&mut self) {
        self.users.clear();
        self.entries = 0;
    }

    fn forget(&mut self, user_id: u64) {
        if let Some(u) = self.users.remove(&user_id) {
            self.entries = self
                .entries
                .saturating_sub(u.channels.len() + usize::from(u.base.is_some()));
        }
    }

    fn slot(&mut self, user_id: u64) -> &mut UserPerms {
        if self.entries >= limits::PERM_CACHE_ENTRIES_MAX {
            self.clear();
        }
        self.entries += 1;
        self.users.entry(user_id).or_default()
    }
}

impl Guild {
    /// A new guild owned by `owner`, with @everyone, a "Text Channels" category holding
    /// "general" (also the system channel) and a "Voice Channels" category holding "General".
    /// `ids` yields fresh snowflakes for the four channels (a repeated one is refused).
    pub fn new(
        id: u64,
        name: &str,
        owner: UserInfo,
        now_ms: u64,
        ids: &mut impl FnMut() -> u64,
    ) -> Result<Self, GuildError> {
        settings::check_guild_name(name)?;
        let everyone = Role {
            id,
            name: "@everyone".into(),
            color: 0,
            hoist: false,
            mentionable: false,
            managed: false,
            permissions: perms::DEFAULT_EVERYONE,
            position: 0,
            flags: 0,
        };
        let owner_id = owner.id;
        let mut g = Self {
            id,
            name: name.to_owned(),
            owner_id,
            icon: None,
            description: None,
            created_at_ms: now_ms,
            joined_at_ms: now_ms,
            afk_channel_id: None,
            afk_timeout_s: limits::AFK_TIMEOUT_S_DEFAULT,
            system_channel_id: None,
            verification_level: 0,
            default_message_notifications: 0,
            explicit_content_filter: 0,
            channels: BTreeMap::new(),
            roles: BTreeMap::from([(id, everyone)]),
            members: BTreeMap::new(),
            bans: BTreeMap::new(),
            invites: BTreeMap::new(),
            generation: 0,
            cache: RefCell::default(),
        };
        g.members
            .insert(owner_id, members::new_member(owner, now_ms));
        let defaults = [
            ("Text Channels", ChannelKind::Category, None, 0),
            ("general", ChannelKind::Text, Some(0), 0),
            ("Voice Channels", ChannelKind::Category, None, 1),
            ("General", ChannelKind::Voice, Some(2), 0),
        ];
        let mut made: Vec<u64> = Vec::with_capacity(defaults.len());
        for (name, kind, parent_index, position) in defaults {
            let cid = ids();
            if cid == id || g.channels.contains_key(&cid) || g.members.contains_key(&cid) {
                return Err(GuildError::IdTaken(cid));
            }
            let parent_id = parent_index.and_then(|i: usize| made.get(i).copied());
            let mut c = channels::blank(cid, kind, name);
            c.position = position;
            c.parent_id = parent_id;
            g.channels.insert(cid, c);
            made.push(cid);
        }
        g.system_channel_id = made.get(1).copied();
        Ok(g)
    }

    // --- getters ---

    /// Guild id (also the @everyone role's id).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Owner's user id.
    pub fn owner_id(&self) -> u64 {
        self.owner_id
    }

    /// Icon hash.
    pub fn icon(&self) -> Option<&str> {
        self.icon.as_deref()
    }

    /// Description.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Creation time, Unix milliseconds.
    pub fn created_at_ms(&self) -> u64 {
        self.created_at_ms
    }

    /// When this server started holding the guild, Unix milliseconds (GUILD_CREATE's
    /// `joined_at` for a viewer who is not a member).
    pub fn joined_at_ms(&self) -> u64 {
        self.joined_at_ms
    }

    /// Channel where join messages go.
    pub fn system_channel_id(&self) -> Option<u64> {
        self.system_channel_id
    }

    /// AFK voice channel.
    pub fn afk_channel_id(&self) -> Option<u64> {
        self.afk_channel_id
    }

    /// Seconds of silence before a member is moved to the AFK channel.
    pub fn afk_timeout_s(&self) -> u32 {
        self.afk_timeout_s
    }

    /// Verification level (0 none ..= 4 verified phone).
    pub fn verification_level(&self) -> u8 {
        self.verification_level
    }

    /// Default notification level (0 all messages, 1 only mentions).
    pub fn default_message_notifications(&self) -> u8 {
        self.default_message_notifications
    }

    /// Explicit content filter (0 off ..= 2 all members).
    pub fn explicit_content_filter(&self) -> u8 {
        self.explicit_content_filter
    }

    /// A channel.
    pub fn channel(&self, channel_id: u64) -> Option<&Channel> {
        self.channels.get(&channel_id)
    }

    /// Every channel, by id.
    pub fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.channels.values()
    }

    /// A role.
    pub fn role(&self, role_id: u64) -> Option<&Role> {
        self.roles.get(&role_id)
    }

    /// Every role, by id (@everyone first: it is the oldest id).
    pub fn roles(&self) -> impl Iterator<Item = &Role> {
        self.roles.values()
    }

    /// The @everyone role.
    pub fn everyone_role(&self) -> Option<&Role> {
        self.roles.get(&self.id)
    }

    /// A member.
    pub fn member(&self, user_id: u64) -> Option<&Member> {
        self.members.get(&user_id)
    }

    /// Every member, by user id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Whether the user is a member.
    pub fn is_member(&self, user_id: u64) -> bool {
        self.members.contains_key(&user_id)
    }

    /// Number of members.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// The ban of a user, if banned.
    pub fn ban_record(&self, user_id: u64) -> Option<&Ban> {
        self.bans.get(&user_id)
    }

    /// Whether the user is banned.
    pub fn is_banned(&self, user_id: u64) -> bool {
        self.bans.contains_key(&user_id)
    }

    /// Every ban, by user id.
    pub fn bans(&self) -> impl Iterator<Item = &Ban> {
        self.bans.values()
    }

    /// An invite.
    pub fn invite(&self, code: &str) -> Option<&Invite> {
        self.invites.get(code)
    }

    /// Every invite, by code.
    pub fn invites(&self) -> impl Iterator<Item = &Invite> {
        self.invites.values()
    }

    /// Changes whenever any permission may have changed: callers may memoize derived data
    /// (such as a channel's viewer list) keyed by it.
    pub fn permission_generation(&self) -> u64 {
        self.generation
    }

    // --- permissions ---

    /// Guild-level permissions of a user: ALL for the owner, 0 for a non-member.
    pub fn base_permissions(&self, user_id: u64) -> u64 {
        if user_id == self.owner_id && self.members.contains_key(&user_id) {
            return perms::ALL;
        }
        if let Ok(cache) = self.cache.try_borrow()
            && let Some(b) = cache.users.get(&user_id).and_then(|u| u.base)
        {
            return b;
        }
        let Some(member) = self.members.get(&user_id) else {
            return 0;
        };
        let b = self.compute_base(member);
        if let Ok(mut cache) = self.cache.try_borrow_mut() {
            cache.slot(user_id).base = Some(b);
        }
        b
    }

    /// Permissions of a user in a channel: 0 for a non-member or an unknown channel.
    pub fn permissions(&self, user_id: u64, channel_id: u64) -> u64 {
        if let Ok(cache) = self.cache.try_borrow()
            && let Some(&p) = cache
                .users
                .get(&user_id)
                .and_then(|u| u.channels.get(&channel_id))
        {
            return p;
        }
        let (Some(member), Some(channel)) =
            (self.members.get(&user_id), self.channels.get(&channel_id))
        else {
            return 0;
        };
        let p = if user_id == self.owner_id {
            perms::ALL
        } else {
            let base = self.base_permissions(user_id);
            perms::apply_overwrites(base, self.id, user_id, &member.roles, &channel.overwrites)
        };
        if let Ok(mut cache) = self.cache.try_borrow_mut() {
            cache.slot(user_id).channels.insert(channel_id, p);
        }
        p
    }

    /// Whether the user may see the channel.
    pub fn can_view(&self, user_id: u64, channel_id: u64) -> bool {
        self.permissions(user_id, channel_id) & perms::VIEW_CHANNEL != 0
    }

    /// Members allowed to see the channel, by user id (fan-out targets).
    pub fn viewers(&self, channel_id: u64) -> impl Iterator<Item = u64> + '_ {
        self.members
            .keys()
            .copied()
            .filter(move |&u| self.can_view(u, channel_id))
    }

    /// The user ids an event's audience resolves to now.
    pub fn recipients(&self, audience: &Audience) -> Vec<u64> {
        match audience {
            Audience::Guild => self.members.keys().copied().collect(),
            Audience::Channel(c) => self.viewers(*c).collect(),
            Audience::User(u) => vec![*u],
            Audience::Users(us) => us.clone(),
            Audience::Permission {
                channel_id,
                permission,
            } => self
                .members
                .keys()
                .copied()
                .filter(|&u| {
                    let p = match channel_id {
                        Some(c) => self.permissions(u, *c),
                        None => self.base_permissions(u),
                    };
                    p & permission == *permission
                })
                .collect(),
        }
    }

    fn compute_base(&self, member: &Member) -> u64 {
        let everyone = self.roles.get(&self.id).map_or(0, |r| r.permissions);
        let roles = member
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .fold(0, |acc, r| acc | r.permissions);
        perms::base(everyone, roles)
    }

    // --- cache invalidation ---

    /// Something every member's permissions depend on changed (roles, overwrites, ownership).
    fn invalidate_all(&mut self) {
        self.generation += 1;
        self.cache.get_mut().clear();
    }

    /// Only this user's permissions changed (join, leave, roles of this member).
    fn invalidate_user(&mut self, user_id: u64) {
        self.generation += 1;
        self.cache.get_mut().forget(user_id);
    }

    // --- checks shared by the operations ---

    /// Fails unless the actor holds `needed` (in `channel_id` when given).
    fn require(
        &self,
        actor: Actor,
        channel_id: Option<u64>,
        needed: u64,
    ) -> Result<(), GuildError> {
        let Actor::User(u) = actor else {
            return Ok(());
        };
        let held = match channel_id {
            Some(c) => self.permissions(u, c),
            None => self.base_permissions(u),
        };
        let missing = needed & !held;
        if missing != 0 {
            return Err(GuildError::MissingPermission { missing });
        }
        Ok(())
    }

    /// Whether the actor bypasses the hierarchy (system or owner).
    fn above_hierarchy(&self, actor: Actor) -> bool {
        match actor {
            Actor::System => true,
            Actor::User(u) => u == self.owner_id,
        }
    }

    fn role_rank(&self, role_id: u64) -> Rank {
        let position = self.roles.get(&role_id).map_or(0, |r| r.position);
        (position, Reverse(role_id))
    }

    /// Rank of the user's highest role (@everyone's when none).
    fn member_rank(&self, user_id: u64) -> Rank {
        let floor = self.role_rank(self.id);
        self.members.get(&user_id).map_or(floor, |m| {
            m.roles
                .iter()
                .map(|&r| self.role_rank(r))
                .max()
                .map_or(floor, |top| top.max(floor))
        })
    }

    /// Fails unless the role is strictly below the actor's highest role.
    fn check_role_below(&self, actor: Actor, role_id: u64) -> Result<(), GuildError> {
        match actor {
            _ if self.above_hierarchy(actor) => Ok(()),
            Actor::User(u) if self.role_rank(role_id) < self.member_rank(u) => Ok(()),
            _ => Err(GuildError::Hierarchy),
        }
    }

    /// Fails unless a role placed at `position` would sit strictly below the actor.
    fn check_position_below(&self, actor: Actor, position: u32) -> Result<(), GuildError> {
        match actor {
            _ if self.above_hierarchy(actor) => Ok(()),
            Actor::User(u) if position < self.member_rank(u).0 => Ok(()),
            _ => Err(GuildError::Hierarchy),
        }
    }

    /// Fails unless the target member can be moderated by the actor: never the owner, and
    /// (for a non-owner actor) only members strictly below the actor's highest role.
    fn check_member_below(&self, actor: Actor, target: u64) -> Result<(), GuildError> {
        if target == self.owner_id {
            return Err(GuildError::Owner);
        }
        match actor {
            _ if self.above_hierarchy(actor) => Ok(()),
            Actor::User(u) if self.member_rank(target) < self.member_rank(u) => Ok(()),
            _ => Err(GuildError::Hierarchy),
        }
    }

    /// Fails unless a user actor is a member (a system actor always passes).
    fn check_actor(&self, actor: Actor) -> Result<(), GuildError> {
        match actor {
            Actor::User(u) if !self.members.contains_key(&u) => Err(GuildError::UnknownMember(u)),
            _ => Ok(()),
        }
    }

    /// An event for every member.
    fn guild_event(&self, name: &'static str, data: serde_json::Value) -> GuildEvent {
        GuildEvent {
            name,
            data,
            audience: Audience::Guild,
        }
    }
}

/// Checks a text field's length in characters.
fn check_len(field: &'static str, s: &str, min: usize, max: usize) -> Result<(), GuildError> {
    // Counting stops past the bound so a huge string costs no more than a valid one.
    let len = s.chars().take(max.saturating_add(1)).count();
    if len < min || len > max {
        return Err(GuildError::InvalidLength {
            field,
            len,
            min,
            max,
        });
    }
    Ok(())
}

/// Checks a number's range.
fn check_range(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), GuildError> {
    if value < min || value > max {
        return Err(GuildError::OutOfRange {
            field,
            value,
            min,
            max,
        });
    }
    Ok(())
}
