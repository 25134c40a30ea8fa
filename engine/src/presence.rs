//! Presence (op 3), member requests (op 8) and lazy member lists (op 14) on the guild's owner
//! shard.

use std::collections::HashMap;

use gateway_core::gateway::{LazyRequest, PresenceUpdate, RequestGuildMembers};

use crate::ctx::ShardCtx;
use crate::gateway::SessionRef;

/// The presence-related state of one guild on its owner shard.
#[derive(Debug, Default)]
pub struct GuildPresence {
    /// Online members' presence objects (absent: offline).
    pub online: HashMap<u64, serde_json::Value>,
}

/// Op 3 from session `r`.
pub fn on_presence_update(ctx: &mut ShardCtx, r: SessionRef, p: PresenceUpdate) {
    let _ = (r, p);
    ctx.stats.gateway_commands_unrouted += 1;
}

/// Op 8 from session `r`.
pub fn on_request_members(ctx: &mut ShardCtx, r: SessionRef, q: RequestGuildMembers) {
    let _ = (r, q);
    ctx.stats.gateway_commands_unrouted += 1;
}

/// Op 14 from session `r`.
pub fn on_lazy_request(ctx: &mut ShardCtx, r: SessionRef, q: LazyRequest) {
    let _ = (r, q);
    ctx.stats.gateway_commands_unrouted += 1;
}
