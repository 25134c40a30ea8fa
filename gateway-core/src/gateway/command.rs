//! Client commands: decoding of the JSON payloads a client may send (ops 1, 2, 3, 4, 6, 8, 14).
//! Snowflakes are accepted as strings or integers; sizes are bounded by the 4096-byte payload
//! limit and the counts in `limits.rs`.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::opcode::op;
use super::snowflake::Snowflake;
use crate::limits::{
    LAZY_CHANNELS_MAX, LAZY_RANGES_PER_CHANNEL_MAX, REQUEST_MEMBERS_USER_IDS_MAX,
    SESSION_ID_BYTES_MAX, TOKEN_BYTES_MAX,
};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// Not JSON, or not the shape of its opcode (close 4002).
    #[error("decode error: {0}")]
    Decode(String),
    /// An opcode clients may not send (close 4001).
    #[error("unknown opcode {0}")]
    UnknownOpcode(u64),
}

/// A decoded client command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Op 1, with the client's last sequence number.
    Heartbeat(Option<u64>),
    /// Op 2.
    Identify(Identify),
    /// Op 3.
    PresenceUpdate(PresenceUpdate),
    /// Op 4.
    VoiceStateUpdate(VoiceStateUpdate),
    /// Op 6.
    Resume(Resume),
    /// Op 8.
    RequestGuildMembers(RequestGuildMembers),
    /// Op 14.
    LazyRequest(LazyRequest),
}

impl Command {
    /// The opcode of this command.
    pub fn opcode(&self) -> u8 {
        match self {
            Command::Heartbeat(_) => op::HEARTBEAT,
            Command::Identify(_) => op::IDENTIFY,
            Command::PresenceUpdate(_) => op::PRESENCE_UPDATE,
            Command::VoiceStateUpdate(_) => op::VOICE_STATE_UPDATE,
            Command::Resume(_) => op::RESUME,
            Command::RequestGuildMembers(_) => op::REQUEST_GUILD_MEMBERS,
            Command::LazyRequest(_) => op::LAZY_REQUEST,
        }
    }
}

/// Identify's `properties`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct IdentifyProperties {
    /// Operating system.
    #[serde(alias = "$os")]
    pub os: String,
    /// Library name.
    #[serde(alias = "$browser")]
    pub browser: String,
    /// Library name.
    #[serde(alias = "$device")]
    pub device: String,
}

/// Op 2 payload.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Identify {
    /// Token as sent (bare or `Bot ...`).
    pub token: String,
    /// Gateway intents.
    #[serde(deserialize_with = "int_or_string")]
    pub intents: u64,
    /// Client properties.
    #[serde(default)]
    pub properties: IdentifyProperties,
    /// Per-payload compression; accepted and ignored (only transport compression exists).
    #[serde(default)]
    pub compress: bool,
    /// Member count above which a guild is "large".
    #[serde(default)]
    pub large_threshold: Option<u32>,
    /// `[shard_id, num_shards]`.
    #[serde(default)]
    pub shard: Option<[u64; 2]>,
    /// Initial presence.
    #[serde(default)]
    pub presence: Option<PresenceUpdate>,
}

/// Op 3 payload (also Identify's `presence`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct PresenceUpdate {
    /// Unix ms since idle, or null.
    pub since: Option<u64>,
    /// Activities, kept as JSON for the presence service to validate and re-serialize.
    pub activities: Vec<serde_json::Value>,
    /// `online`, `dnd`, `idle`, `invisible` or `offline`.
    pub status: String,
    /// Whether the client is AFK.
    pub afk: bool,
}

/// Op 4 payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct VoiceStateUpdate {
    /// Guild.
    pub guild_id: Snowflake,
    /// Channel to join; `None` leaves voice.
    pub channel_id: Option<Snowflake>,
    /// Self-muted.
    #[serde(default)]
    pub self_mute: bool,
    /// Self-deafened.
    #[serde(default)]
    pub self_deaf: bool,
}

/// Op 6 payload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Resume {
    /// Token as sent.
    pub token: String,
    /// Session to resume.
    pub session_id: String,
    /// Last sequence number the client saw (null taken as 0).
    #[serde(default)]
    pub seq: Option<u64>,
}

/// Op 8 payload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RequestGuildMembers {
    /// Guild.
    pub guild_id: Snowflake,
    /// Username prefix ("" for all).
    #[serde(default)]
    pub query: Option<String>,
    /// Maximum members (0 = no limit, with `query: ""`).
    #[serde(default)]
    pub limit: u32,
    /// Include presences.
    #[serde(default)]
    pub presences: bool,
    /// Specific users (one id or a list).
    #[serde(default, deserialize_with = "one_or_many")]
    pub user_ids: Vec<Snowflake>,
    /// Echoed in GUILD_MEMBERS_CHUNK.
    #[serde(default)]
    pub nonce: Option<String>,
}

/// Op 14 payload: member-list ranges per channel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LazyRequest {
    /// Guild.
    pub guild_id: Snowflake,
    /// Channel -> `[[start, end], ...]` inclusive index ranges.
    #[serde(default)]
    pub channels: BTreeMap<Snowflake, Vec<[u32; 2]>>,
    /// Subscribe to typing events.
    #[serde(default)]
    pub typing: Option<bool>,
    /// Subscribe to thread events.
    #[serde(default)]
    pub threads: Option<bool>,
    /// Subscribe to activities.
    #[serde(default)]
    pub activities: Option<bool>,
    /// Specific members to subscribe to.
    #[serde(default)]
    pub members: Vec<Snowflake>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    op: u64,
    #[serde(borrow, default)]
    d: Option<&'a RawValue>,
}

fn int_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an unsigned integer or a decimal string")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom("negative"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            v.parse().map_err(|_| E::custom("not a number"))
        }
    }
    d.deserialize_any(V)
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Snowflake>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Snowflake),
        Many(Vec<Snowflake>),
        Null(()),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
        OneOrMany::Null(()) => Vec::new(),
    })
}

fn decode_d<'a, T: Deserialize<'a>>(d: Option<&'a RawValue>) -> Result<T, CommandError> {
    let raw = d.ok_or_else(|| CommandError::Decode("missing d".into()))?;
    serde_json::from_str(raw.get()).map_err(|e| CommandError::Decode(e.to_string()))
}

fn bounded(ok: bool, what: &str) -> Result<(), CommandError> {
    if ok {
        Ok(())
    } else {
        Err(CommandError::Decode(format!("{what} out of bounds")))
    }
}

/// Decodes one client payload (the size limit is checked by the caller).
pub fn parse_command(payload: &[u8]) -> Result<Command, CommandError> {
    let env: Envelope<'_> =
        serde_json::from_slice(payload).map_err(|e| CommandError::Decode(e.to_string()))?;
    let opcode = u8::try_from(env.op).map_err(|_| CommandError::UnknownOpcode(env.op))?;
    Ok(match opcode {
        op::HEARTBEAT => Command::Heartbeat(env.d.and_then(|d| d.get().parse().ok())),
        op::IDENTIFY => {
            let id: Identify = decode_d(env.d)?;
            bounded(id.token.len() <= TOKEN_BYTES_MAX + 4, "token")?;
            Command::Identify(id)
        }
        op::PRESENCE_UPDATE => Command::PresenceUpdate(decode_d(env.d)?),
        op::VOICE_STATE_UPDATE => Command::VoiceStateUpdate(decode_d(env.d)?),
        op::RESUME => {
            let r: Resume = decode_d(env.d)?;
            bounded(r.token.len() <= TOKEN_BYTES_MAX + 4, "token")?;
            bounded(r.session_id.len() <= SESSION_ID_BYTES_MAX, "session_id")?;
            Command::Resume(r)
        }
        op::REQUEST_GUILD_MEMBERS => {
            let r: RequestGuildMembers = decode_d(env.d)?;
            bounded(r.user_ids.len() <= REQUEST_MEMBERS_USER_IDS_MAX, "user_ids")?;
            bounded(r.nonce.as_ref().is_none_or(|n| n.len() <= 32), "nonce")?;
            Command::RequestGuildMembers(r)
        }
        op::LAZY_REQUEST => {
            let r: LazyRequest = decode_d(env.d)?;
            bounded(r.channels.len() <= LAZY_CHANNELS_MAX, "channels")?;
            bounded(
                r.channels.values().all(|rs| {
                    rs.len() <= LAZY_RANGES_PER_CHANNEL_MAX && rs.iter().all(|[a, b]| a <= b)
                }),
                "ranges",
            )?;
            bounded(r.members.len() <= REQUEST_MEMBERS_USER_IDS_MAX, "members")?;
            Command::LazyRequest(r)
        }
        _ => return Err(CommandError::UnknownOpcode(env.op)),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_forms() {
        assert_eq!(
            parse_command(br#"{"op":1,"d":null}"#),
            Ok(Command::Heartbeat(None))
        );
        assert_eq!(
            parse_command(br#"{"op":1,"d":251}"#),
            Ok(Command::Heartbeat(Some(251)))
        );
        assert_eq!(parse_command(br#"{"op":1}"#), Ok(Command::Heartbeat(None)));
    }

    #[test]
    fn identify_full() {
        let p = br#"{"op":2,"d":{"token":"Bot abc","intents":"513","properties":{"os":"linux","browser":"discord.py","device":"discord.py"},"compress":true,"large_threshold":250,"shard":[1,2],"presence":{"status":"online","since":0,"activities":[],"afk":false}}}"#;
        let Ok(Command::Identify(id)) = parse_command(p) else {
            panic!()
        };
        assert_eq!(id.intents, 513);
        assert_eq!(id.shard, Some([1, 2]));
        assert_eq!(id.properties.browser, "discord.py");
        assert_eq!(id.presence.unwrap().status, "online");
    }

    #[test]
    fn snowflakes_as_ints_or_strings() {
        let a = parse_command(br#"{"op":4,"d":{"guild_id":41771983423143937,"channel_id":"127121515262115840","self_mute":true,"self_deaf":false}}"#);
        assert_eq!(
            a,
            Ok(Command::VoiceStateUpdate(VoiceStateUpdate {
                guild_id: Snowflake(41771983423143937),
                channel_id: Some(Snowflake(127121515262115840)),
                self_mute: true,
                self_deaf: false
            }))
        );
        let b = parse_command(br#"{"op":8,"d":{"guild_id":"5","user_ids":7,"nonce":"n"}}"#);
        let Ok(Command::RequestGuildMembers(r)) = b else {
            panic!("{b:?}")
        };
        assert_eq!(r.user_ids, vec![Snowflake(7)]);
        let c = parse_command(
            br#"{"op":8,"d":{"guild_id":5,"query":"","limit":0,"user_ids":["1",2]}}"#,
        );
        let Ok(Command::RequestGuildMembers(r)) = c else {
            panic!("{c:?}")
        };
        assert_eq!(r.user_ids, vec![Snowflake(1), Snowflake(2)]);
    }

    #[test]
    fn lazy_request_bounds() {
        let ok = parse_command(
            br#"{"op":14,"d":{"guild_id":"1","channels":{"2":[[0,99],[100,199]]},"typing":true}}"#,
        );
        let Ok(Command::LazyRequest(r)) = ok else {
            panic!("{ok:?}")
        };
        assert_eq!(
            r.channels.get(&Snowflake(2)),
            Some(&vec![[0, 99], [100, 199]])
        );
        assert!(matches!(
            parse_command(br#"{"op":14,"d":{"guild_id":"1","channels":{"2":[[5,1]]}}}"#),
            Err(CommandError::Decode(_))
        ));
    }

    #[test]
    fn errors() {
        assert!(matches!(parse_command(b"{"), Err(CommandError::Decode(_))));
        assert!(matches!(parse_command(b"[]"), Err(CommandError::Decode(_))));
        assert!(matches!(
            parse_command(br#"{"op":2}"#),
            Err(CommandError::Decode(_))
        ));
        assert!(matches!(
            parse_command(br#"{"op":2,"d":{"token":"x"}}"#),
            Err(CommandError::Decode(_))
        ));
        for op in [0u64, 5, 7, 9, 10, 11, 12, 13, 15, 300] {
            let p = format!(r#"{{"op":{op},"d":null}}"#);
            assert_eq!(
                parse_command(p.as_bytes()),
                Err(CommandError::UnknownOpcode(op))
            );
        }
    }
}
