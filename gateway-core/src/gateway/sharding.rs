//! Client sharding: which client shard sees a guild, and when a bot must shard.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::opcode::CloseCode;
use crate::limits::{GUILDS_PER_SHARD_MAX, SHARD_COUNT_MAX};

/// The client shard that receives events of `guild_id`: `(guild_id >> 22) % num_shards`.
/// `num_shards` of 0 is treated as 1.
pub fn shard_for_guild(guild_id: u64, num_shards: u32) -> u32 {
    ((guild_id >> 22) % u64::from(num_shards.max(1))) as u32
}

/// Validates Identify's `shard: [id, count]` (4010 when invalid).
pub fn check_shard(shard_id: u64, num_shards: u64) -> Result<(), CloseCode> {
    if num_shards == 0 || num_shards > u64::from(SHARD_COUNT_MAX) || shard_id >= num_shards {
        return Err(CloseCode::InvalidShard);
    }
    Ok(())
}

/// The engine calls this once it knows the bot's guild count: more guilds per shard than
/// allowed is 4011.
pub fn check_sharding_required(guild_count: usize, num_shards: u32) -> Result<(), CloseCode> {
    if guild_count.div_ceil(num_shards.max(1) as usize) > GUILDS_PER_SHARD_MAX {
        return Err(CloseCode::ShardingRequired);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn shard_formula() {
        let g = 197038439483310086u64;
        assert_eq!(shard_for_guild(g, 1), 0);
        assert_eq!(shard_for_guild(g, 16), ((g >> 22) % 16) as u32);
        assert_eq!(shard_for_guild(g, 0), 0);
        assert_eq!(shard_for_guild(5 << 22, 4), 1);
    }

    #[test]
    fn shard_checks() {
        assert!(check_shard(0, 1).is_ok());
        assert!(check_shard(3, 4).is_ok());
        assert_eq!(check_shard(4, 4), Err(CloseCode::InvalidShard));
        assert_eq!(check_shard(0, 0), Err(CloseCode::InvalidShard));
        assert_eq!(
            check_shard(0, u64::from(SHARD_COUNT_MAX) + 1),
            Err(CloseCode::InvalidShard)
        );
        assert!(check_sharding_required(GUILDS_PER_SHARD_MAX, 1).is_ok());
        assert_eq!(
            check_sharding_required(GUILDS_PER_SHARD_MAX + 1, 1),
            Err(CloseCode::ShardingRequired)
        );
        assert!(check_sharding_required(GUILDS_PER_SHARD_MAX + 1, 2).is_ok());
    }
}
