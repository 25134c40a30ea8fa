//! Invites: create (with a code derived from a caller-supplied seed), join through one,
//! delete, prune.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::json::invite_event_json;
use super::limits::{
    INVITE_CODE_ATTEMPTS_MAX, INVITE_CODE_CHARS, INVITE_MAX_AGE_S_DEFAULT, INVITE_MAX_AGE_S_MAX,
    INVITE_MAX_USES_MAX, INVITES_MAX,
};
use super::model::{ChannelKind, Invite, UserInfo};
use super::{Actor, Audience, Guild, GuildError, GuildEvent, GuildResult, check_range, perms};
use serde_json::json;

/// Parameters of a new invite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewInvite {
    /// Lifetime in seconds, 0 = forever.
    pub max_age_s: u32,
    /// Uses allowed, 0 = unlimited.
    pub max_uses: u32,
    /// Members joining through it are temporary.
    pub temporary: bool,
}

impl Default for NewInvite {
    fn default() -> Self {
        Self {
            max_age_s: INVITE_MAX_AGE_S_DEFAULT,
            max_uses: 0,
            temporary: false,
        }
    }
}

const CODE_ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A code from a seed: the seed is scrambled first so consecutive seeds (a snowflake
/// counter) give codes that look unrelated and cannot be guessed from one another.
pub fn invite_code(seed: u64) -> String {
    let mut v = splitmix64(seed);
    let mut code = String::with_capacity(INVITE_CODE_CHARS);
    for _ in 0..INVITE_CODE_CHARS {
        let i = (v % 62) as usize;
        code.push(char::from(CODE_ALPHABET.get(i).copied().unwrap_or(b'0')));
        v /= 62;
    }
    code
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Guild {
    /// Creates an invite to a channel (not a category). Needs CREATE_INSTANT_INVITE there.
    /// `code_seed` should be fresh (a snowflake does); a collision tries a few derived codes.
    /// Returns the invite and INVITE_CREATE (to members who can manage the channel).
    pub fn create_invite(
        &mut self,
        actor: impl Into<Actor>,
        channel_id: u64,
        spec: NewInvite,
        code_seed: u64,
        now_ms: u64,
    ) -> Result<(Invite, Vec<GuildEvent>), GuildError> {
        let actor = actor.into();
        self.check_actor(actor)?;
        let channel = self
            .channels
            .get(&channel_id)
            .ok_or(GuildError::UnknownChannel(channel_id))?;
        if channel.kind == ChannelKind::Category {
            return Err(GuildError::NotForChannelKind {
                field: "channel_id",
            });
        }
        self.require(actor, Some(channel_id), perms::CREATE_INSTANT_INVITE)?;
        check_range(
            "max_age",
            u64::from(spec.max_age_s),
            0,
            u64::from(INVITE_MAX_AGE_S_MAX),
        )?;
        check_range(
            "max_uses",
            u64::from(spec.max_uses),
            0,
            u64::from(INVITE_MAX_USES_MAX),
        )?;
        if self.invites.len() >= INVITES_MAX {
            return Err(GuildError::LimitReached {
                what: "invites",
                max: INVITES_MAX,
            });
        }
        let code = (0..INVITE_CODE_ATTEMPTS_MAX)
            .map(|attempt| invite_code(seed_for_attempt(code_seed, attempt)))
            .find(|c| !self.invites.contains_key(c))
            .ok_or(GuildError::InviteCodeTaken)?;
        let invite = Invite {
            code: code.clone(),
            channel_id,
            inviter_id: match actor {
                Actor::User(u) => Some(u),
                Actor::System => None,
            },
            max_uses: spec.max_uses,
            uses: 0,
            max_age_s: spec.max_age_s,
            created_at_ms: now_ms,
            temporary: spec.temporary,
        };
        self.invites.insert(code, invite.clone());
        let event = GuildEvent {
            name: "INVITE_CREATE",
            data: invite_event_json(self, &invite),
            audience: manager_audience(channel_id),
        };
        Ok((invite, vec![event]))
    }

    /// Joins `user` through an invite: refused when unknown, expired at `now_ms`, used up, or
    /// when the user is banned, already a member, or the guild is full (no use is counted
    /// then). Emits GUILD_MEMBER_ADD.
    pub fn join_via_invite(&mut self, code: &str, user: UserInfo, now_ms: u64) -> GuildResult {
        let invite = self.invites.get(code).ok_or(GuildError::UnknownInvite)?;
        if invite.is_expired(now_ms) {
            return Err(GuildError::InviteExpired);
        }
        if invite.is_exhausted() {
            return Err(GuildError::InviteExhausted);
        }
        self.check_can_join(user.id)?;
        if let Some(i) = self.invites.get_mut(code) {
            i.uses = i.uses.saturating_add(1);
        }
        self.add_member(user, now_ms)
    }

    /// Deletes an invite. Needs MANAGE_CHANNELS in its channel or MANAGE_GUILD. Emits
    /// INVITE_DELETE (to members who can manage the channel).
    pub fn delete_invite(&mut self, actor: impl Into<Actor>, code: &str) -> GuildResult {
        let actor = actor.into();
        self.check_actor(actor)?;
        let channel_id = self
            .invites
            .get(code)
            .ok_or(GuildError::UnknownInvite)?
            .channel_id;
        if self
            .require(actor, Some(channel_id), perms::MANAGE_CHANNELS)
            .is_err()
        {
            self.require(actor, None, perms::MANAGE_GUILD)?;
        }
        let Some(invite) = self.invites.remove(code) else {
            return Err(GuildError::UnknownInvite);
        };
        Ok(vec![self.invite_delete_event(&invite)])
    }

    /// Drops invites expired at `now_ms` or used up; emits INVITE_DELETE for each.
    pub fn prune_invites(&mut self, now_ms: u64) -> Vec<GuildEvent> {
        let dead: Vec<String> = self
            .invites
            .values()
            .filter(|i| i.is_expired(now_ms) || i.is_exhausted())
            .map(|i| i.code.clone())
            .collect();
        let mut events = Vec::with_capacity(dead.len());
        for code in dead {
            if let Some(invite) = self.invites.remove(&code) {
                events.push(self.invite_delete_event(&invite));
            }
        }
        events
    }

    fn invite_delete_event(&self, invite: &Invite) -> GuildEvent {
        GuildEvent {
            name: "INVITE_DELETE",
            data: json!({
                "channel_id": invite.channel_id.to_string(),
                "guild_id": self.id.to_string(),
                "code": invite.code,
            }),
            audience: manager_audience(invite.channel_id),
        }
    }
}

/// Invite events reach only those who could list the channel's invites.
fn manager_audience(channel_id: u64) -> Audience {
    Audience::Permission {
        channel_id: Some(channel_id),
        permission: perms::MANAGE_CHANNELS,
    }
}

fn seed_for_attempt(seed: u64, attempt: u32) -> u64 {
    seed ^ u64::from(attempt).wrapping_mul(0xA076_1D64_78BD_642F)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_fixed_length_alphanumeric_and_spread() {
        let codes: std::collections::BTreeSet<String> = (0..10_000u64).map(invite_code).collect();
        assert_eq!(codes.len(), 10_000);
        for c in &codes {
            assert_eq!(c.len(), INVITE_CODE_CHARS);
            assert!(c.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
        assert_eq!(invite_code(42), invite_code(42));
    }
}
