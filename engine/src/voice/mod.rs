//! Voice: main-gateway op 4 on the guild's owner shard, the voice gateway and the per-shard UDP
//! SFU loop (issue 6). Until the voice server is wired, op 4 is counted and ignored.

use gateway_core::gateway::VoiceStateUpdate;

use crate::ctx::ShardCtx;
use crate::gateway::SessionRef;

/// Op 4 from session `r`.
pub fn on_voice_state_update(ctx: &mut ShardCtx, r: SessionRef, v: VoiceStateUpdate) {
    let _ = (r, v);
    ctx.stats.gateway_commands_unrouted += 1;
}
