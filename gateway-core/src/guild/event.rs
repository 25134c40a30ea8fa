//! Dispatch events produced by guild operations, with who may receive them.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::gateway::SharedEvent;
use crate::gateway::intents::{self, Scope};

/// Which sessions may receive an event. Resolved against the guild *after* the operation that
/// produced it (see [`super::Guild::recipients`]); lists that must be taken before the change
/// (a deleted channel's viewers) are already resolved into [`Audience::Users`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Every member's sessions.
    Guild,
    /// Members with VIEW_CHANNEL in the channel.
    Channel(u64),
    /// One user's sessions (member or not: a kicked user still hears of it).
    User(u64),
    /// Exactly these users.
    Users(Vec<u64>),
    /// Members holding every bit of `permission`, in `channel_id` when given, else guild-wide.
    Permission {
        /// Channel whose overwrites apply, or none for guild-level permissions.
        channel_id: Option<u64>,
        /// Bits required.
        permission: u64,
    },
}

/// One dispatch event of API v10: `t` and `d`, plus its audience.
#[derive(Debug, Clone, PartialEq)]
pub struct GuildEvent {
    /// Event name (`t`), e.g. `CHANNEL_CREATE`.
    pub name: &'static str,
    /// Payload (`d`), in Discord's shape, ids as strings, `guild_id` included.
    pub data: serde_json::Value,
    /// Who may receive it.
    pub audience: Audience,
}

impl GuildEvent {
    /// Serializes once for fan-out, tagged with the intents a session needs to receive it.
    pub fn to_shared(&self) -> Result<SharedEvent, serde_json::Error> {
        SharedEvent::new(
            self.name,
            &self.data,
            intents::required(self.name, Scope::Guild),
        )
    }
}
