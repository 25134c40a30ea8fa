//! Why a guild operation was refused. Each variant maps to one REST error of Discord's API
//! (see [`GuildError::discord_code`]) so the engine can answer clients the way they expect.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

/// A refused guild operation; the guild is unchanged when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuildError {
    /// No channel with this id in the guild.
    #[error("unknown channel {0}")]
    UnknownChannel(u64),
    /// No role with this id in the guild.
    #[error("unknown role {0}")]
    UnknownRole(u64),
    /// The user is not a member.
    #[error("unknown member {0}")]
    UnknownMember(u64),
    /// No invite with this code.
    #[error("unknown invite")]
    UnknownInvite,
    /// The user is not banned.
    #[error("unknown ban {0}")]
    UnknownBan(u64),
    /// The actor lacks these permission bits.
    #[error("missing permissions {missing:#x}")]
    MissingPermission {
        /// Bits needed and not held.
        missing: u64,
    },
    /// The target role or member is at or above the actor's highest role.
    #[error("role hierarchy: the target is not below the actor's highest role")]
    Hierarchy,
    /// A text field's length (in characters) is out of bounds.
    #[error("{field} length {len} outside {min}..={max}")]
    InvalidLength {
        /// Field name as in the API.
        field: &'static str,
        /// Length given.
        len: usize,
        /// Shortest allowed.
        min: usize,
        /// Longest allowed.
        max: usize,
    },
    /// A number is out of bounds.
    #[error("{field} value {value} outside {min}..={max}")]
    OutOfRange {
        /// Field name as in the API.
        field: &'static str,
        /// Value given.
        value: u64,
        /// Lowest allowed.
        min: u64,
        /// Highest allowed.
        max: u64,
    },
    /// A count limit of the guild is reached.
    #[error("maximum number of {what} reached ({max})")]
    LimitReached {
        /// What is full.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// The parent is not a category (or a category was given a parent).
    #[error("channel {0} cannot be a parent here")]
    InvalidParent(u64),
    /// The field does not apply to this channel type.
    #[error("{field} does not apply to this channel type")]
    NotForChannelKind {
        /// Field name as in the API.
        field: &'static str,
    },
    /// A new id is already used in this guild.
    #[error("id {0} is already used")]
    IdTaken(u64),
    /// Every generated invite code collided.
    #[error("no free invite code")]
    InviteCodeTaken,
    /// The invite is past its lifetime.
    #[error("invite expired")]
    InviteExpired,
    /// The invite has no uses left.
    #[error("invite has no uses left")]
    InviteExhausted,
    /// The user is banned from the guild.
    #[error("user {0} is banned")]
    Banned(u64),
    /// The user is already a member.
    #[error("user {0} is already a member")]
    AlreadyMember(u64),
    /// The guild is full.
    #[error("the guild is full")]
    GuildFull,
    /// The owner cannot be kicked, banned, or leave.
    #[error("the guild owner cannot be the target of this")]
    Owner,
    /// Only the owner may do this (transfer ownership).
    #[error("only the guild owner may do this")]
    NotOwner,
    /// @everyone cannot be deleted, assigned, removed or moved.
    #[error("the @everyone role cannot be changed this way")]
    EveryoneRole,
    /// A managed role cannot be deleted, assigned or removed by hand.
    #[error("role {0} is managed by an integration")]
    ManagedRole(u64),
}

impl GuildError {
    /// Discord's JSON error code for this refusal (`code` of a REST error body).
    pub fn discord_code(&self) -> u32 {
        match self {
            Self::UnknownChannel(_) => 10003,
            Self::UnknownRole(_) => 10011,
            Self::UnknownMember(_) => 10007,
            Self::UnknownInvite => 10006,
            Self::UnknownBan(_) => 10026,
            Self::MissingPermission { .. } | Self::Hierarchy | Self::Owner | Self::NotOwner => {
                50013
            }
            Self::LimitReached { what, .. } => match *what {
                "channels" | "channels in category" => 30013,
                "roles" => 30005,
                "invites" => 30016,
                _ => 50035,
            },
            Self::GuildFull => 50035,
            Self::Banned(_) => 40007,
            Self::InviteExpired | Self::InviteExhausted => 10006,
            Self::ManagedRole(_) | Self::EveryoneRole => 50028,
            Self::InvalidLength { .. }
            | Self::OutOfRange { .. }
            | Self::InvalidParent(_)
            | Self::NotForChannelKind { .. }
            | Self::IdTaken(_)
            | Self::InviteCodeTaken
            | Self::AlreadyMember(_) => 50035,
        }
    }

    /// The HTTP status Discord answers with.
    pub fn http_status(&self) -> u16 {
        match self.discord_code() {
            10000..=10999 => 404,
            50013 | 40007 => 403,
            _ => 400,
        }
    }
}
