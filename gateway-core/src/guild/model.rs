//! The plain data of a guild: users, channels, roles, members, overwrites, invites and bans.
//!
//! These are read-only views for callers: [`super::Guild`] owns them and changes them only
//! through its operations, which validate input and keep the permission cache honest.
//!
//! They derive serde because the engine's metadata journal stores them ([`super::persist`]):
//! a change to a field here is a change of that on-disk format (bump its version).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

/// A user as the gateway shows it (the `user` object of API v10, without private fields).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserInfo {
    /// User id.
    pub id: u64,
    /// Username.
    pub username: String,
    /// Four-digit discriminator, or "0" for migrated users.
    pub discriminator: String,
    /// Display name.
    pub global_name: Option<String>,
    /// Avatar hash.
    pub avatar: Option<String>,
    /// Bot account.
    pub bot: bool,
}

impl UserInfo {
    /// A human user with a migrated username (discriminator "0") and no avatar.
    pub fn new(id: u64, username: &str) -> Self {
        Self {
            id,
            username: username.to_owned(),
            discriminator: "0".into(),
            global_name: None,
            avatar: None,
            bot: false,
        }
    }

    /// A bot user (discriminator "0000", as bot accounts keep one).
    pub fn bot(id: u64, username: &str) -> Self {
        Self {
            discriminator: "0000".into(),
            bot: true,
            ..Self::new(id, username)
        }
    }
}

/// Channel types this model holds (values of the API's `type` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ChannelKind {
    /// A text channel.
    Text = 0,
    /// A voice channel.
    Voice = 2,
    /// A category grouping other channels.
    Category = 4,
    /// An announcement channel.
    Announcement = 5,
}

impl ChannelKind {
    /// The API's `type` value.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// From the API's `type` value; other channel types are not modelled.
    pub fn from_code(code: u64) -> Option<Self> {
        match code {
            0 => Some(Self::Text),
            2 => Some(Self::Voice),
            4 => Some(Self::Category),
            5 => Some(Self::Announcement),
            _ => None,
        }
    }

    /// Text-like channels carry messages, a topic and slow mode.
    pub fn is_text(self) -> bool {
        matches!(self, Self::Text | Self::Announcement)
    }
}

/// Whether an overwrite targets a role or a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum OverwriteKind {
    /// A role (the @everyone overwrite is a role overwrite with the guild's id).
    Role = 0,
    /// A single member.
    Member = 1,
}

/// A channel permission overwrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Overwrite {
    /// Role or user id.
    pub id: u64,
    /// What `id` names.
    pub kind: OverwriteKind,
    /// Bits granted.
    pub allow: u64,
    /// Bits taken away (applied before `allow` of the same layer).
    pub deny: u64,
}

impl Overwrite {
    /// A role overwrite.
    pub fn role(id: u64, allow: u64, deny: u64) -> Self {
        Self {
            id,
            kind: OverwriteKind::Role,
            allow,
            deny,
        }
    }

    /// A member overwrite.
    pub fn member(id: u64, allow: u64, deny: u64) -> Self {
        Self {
            id,
            kind: OverwriteKind::Member,
            allow,
            deny,
        }
    }
}

/// A guild channel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Channel {
    /// Channel id.
    pub id: u64,
    /// Type.
    pub kind: ChannelKind,
    /// Name.
    pub name: String,
    /// Sorting position among its siblings.
    pub position: u32,
    /// Category it sits in.
    pub parent_id: Option<u64>,
    /// Topic (text-like channels only).
    pub topic: Option<String>,
    /// Age-restricted.
    pub nsfw: bool,
    /// Voice bitrate in bits per second (voice only; 0 otherwise).
    pub bitrate: u32,
    /// Voice member cap, 0 = none (voice only).
    pub user_limit: u32,
    /// Slow mode in seconds.
    pub rate_limit_per_user: u32,
    /// Permission overwrites, at most one per (kind, id).
    pub overwrites: Vec<Overwrite>,
    /// Newest message id, kept by whoever stores messages.
    pub last_message_id: Option<u64>,
}

/// A guild role.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Role {
    /// Role id (the guild's id for @everyone).
    pub id: u64,
    /// Name.
    pub name: String,
    /// RGB colour, 0 = none.
    pub color: u32,
    /// Shown apart in the member list.
    pub hoist: bool,
    /// Anyone may mention it.
    pub mentionable: bool,
    /// Owned by an integration (a bot's own role); nobody assigns or deletes it by hand.
    pub managed: bool,
    /// Permission bits.
    pub permissions: u64,
    /// Height in the hierarchy; @everyone is 0.
    pub position: u32,
    /// Role flags.
    pub flags: u64,
}

/// A guild member.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// The user.
    pub user: UserInfo,
    /// Guild nickname.
    pub nick: Option<String>,
    /// Role ids, never @everyone (every member holds it implicitly).
    pub roles: Vec<u64>,
    /// When the user joined, in Unix milliseconds.
    pub joined_at_ms: u64,
    /// Server-deafened.
    pub deaf: bool,
    /// Server-muted.
    pub mute: bool,
    /// Member flags.
    pub flags: u64,
}

/// An invite to a channel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Invite {
    /// The code in `discord.gg/<code>`.
    pub code: String,
    /// Channel the invite leads to.
    pub channel_id: u64,
    /// Who made it (none when the system did).
    pub inviter_id: Option<u64>,
    /// Uses allowed, 0 = unlimited.
    pub max_uses: u32,
    /// Uses so far.
    pub uses: u32,
    /// Lifetime in seconds, 0 = forever.
    pub max_age_s: u32,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: u64,
    /// Members who joined through it are temporary.
    pub temporary: bool,
}

impl Invite {
    /// When it stops working, Unix milliseconds (none for a permanent invite).
    pub fn expires_at_ms(&self) -> Option<u64> {
        (self.max_age_s != 0).then(|| {
            self.created_at_ms
                .saturating_add(u64::from(self.max_age_s) * 1000)
        })
    }

    /// Past its lifetime at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms().is_some_and(|at| now_ms >= at)
    }

    /// No uses left.
    pub fn is_exhausted(&self) -> bool {
        self.max_uses != 0 && self.uses >= self.max_uses
    }
}

/// A ban.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ban {
    /// The banned user as it was when banned.
    pub user: UserInfo,
    /// Why.
    pub reason: Option<String>,
}
