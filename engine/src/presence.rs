//! Presence (op 3), member requests (op 8) and lazy member lists (op 14) on the guild's owner
//! shard.

use std::collections::HashMap;

/// The presence-related state of one guild on its owner shard.
#[derive(Debug, Default)]
pub struct GuildPresence {
    /// Online members' presence objects (absent: offline).
    pub online: HashMap<u64, serde_json::Value>,
}
