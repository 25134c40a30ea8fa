//! READY payload with the full API v10 shape clients expect (see COMPAT.md).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::dispatch::SharedEvent;
use super::snowflake::Snowflake;
use serde::Serialize;

/// The connecting user (a bot user for Identify with a bot token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadyUser {
    /// User id.
    pub id: Snowflake,
    /// Username.
    pub username: String,
    /// Four-digit discriminator, or "0".
    pub discriminator: String,
    /// Display name.
    pub global_name: Option<String>,
    /// Avatar hash.
    pub avatar: Option<String>,
    /// Bot account.
    pub bot: bool,
    /// Official system user.
    pub system: bool,
    /// Two-factor enabled.
    pub mfa_enabled: bool,
    /// Email verified.
    pub verified: bool,
    /// Email (always null for bots).
    pub email: Option<String>,
    /// User flags.
    pub flags: u64,
    /// Public user flags.
    pub public_flags: u64,
    /// Banner hash.
    pub banner: Option<String>,
    /// Accent colour.
    pub accent_color: Option<u32>,
    /// Locale.
    pub locale: String,
    /// Nitro type.
    pub premium_type: u8,
}

impl ReadyUser {
    /// A bot user with the usual defaults.
    pub fn bot(id: u64, username: &str) -> Self {
        Self {
            id: Snowflake(id),
            username: username.to_owned(),
            discriminator: "0000".into(),
            global_name: None,
            avatar: None,
            bot: true,
            system: false,
            mfa_enabled: false,
            verified: true,
            email: None,
            flags: 0,
            public_flags: 0,
            banner: None,
            accent_color: None,
            locale: "en-US".into(),
            premium_type: 0,
        }
    }
}

/// `application` of READY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReadyApplication {
    /// Application id.
    pub id: Snowflake,
    /// Application flags (privileged intent grants live here).
    pub flags: u64,
}

/// What the engine knows when it accepts an Identify.
#[derive(Debug, Clone)]
pub struct ReadyParams<'a> {
    /// The user.
    pub user: &'a ReadyUser,
    /// Guilds of this client shard; sent as unavailable and followed by GUILD_CREATE each.
    pub guild_ids: &'a [u64],
    /// New session id.
    pub session_id: &'a str,
    /// Where to resume; any trailing `/` is removed (clients append `/?v=10`).
    pub resume_gateway_url: &'a str,
    /// The application.
    pub application: ReadyApplication,
    /// `[shard_id, num_shards]` when the client asked for sharding.
    pub shard: Option<[u32; 2]>,
}

#[derive(Serialize)]
struct UnavailableGuild {
    id: Snowflake,
    unavailable: bool,
}

#[derive(Serialize)]
struct Ready<'a> {
    v: u8,
    user: &'a ReadyUser,
    guilds: Vec<UnavailableGuild>,
    session_id: &'a str,
    session_type: &'static str,
    resume_gateway_url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard: Option<[u32; 2]>,
    application: ReadyApplication,
    private_channels: [(); 0],
    relationships: [(); 0],
    presences: [(); 0],
    guild_join_requests: [(); 0],
    geo_ordered_rtc_regions: [(); 0],
    user_settings: serde_json::Map<String, serde_json::Value>,
    _trace: [&'static str; 1],
}

/// Builds the READY event (delivered to every session regardless of intents).
pub fn ready_event(p: &ReadyParams<'_>) -> Result<SharedEvent, serde_json::Error> {
    let ready = Ready {
        v: 10,
        user: p.user,
        guilds: p
            .guild_ids
            .iter()
            .map(|&id| UnavailableGuild {
                id: Snowflake(id),
                unavailable: true,
            })
            .collect(),
        session_id: p.session_id,
        session_type: "normal",
        resume_gateway_url: p.resume_gateway_url.trim_end_matches('/'),
        shard: p.shard,
        application: p.application,
        private_channels: [],
        relationships: [],
        presences: [],
        guild_join_requests: [],
        geo_ordered_rtc_regions: [],
        user_settings: serde_json::Map::new(),
        _trace: ["[\"hearth-gateway\"]"],
    };
    SharedEvent::new("READY", &ready, 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let user = ReadyUser::bot(42, "hearth");
        let p = ReadyParams {
            user: &user,
            guild_ids: &[1, 2],
            session_id: "abc",
            resume_gateway_url: "ws://127.0.0.1:9000/",
            application: ReadyApplication {
                id: Snowflake(42),
                flags: 0,
            },
            shard: Some([0, 2]),
        };
        let ev = ready_event(&p).unwrap();
        let mut full = b"{\"op\":0,\"s\":1,".to_vec();
        full.extend_from_slice(ev.tail());
        let v: serde_json::Value = serde_json::from_slice(&full).unwrap();
        let d = &v["d"];
        assert_eq!(v["t"], "READY");
        assert_eq!(d["v"], 10);
        assert_eq!(d["user"]["id"], "42");
        assert_eq!(d["user"]["username"], "hearth");
        assert_eq!(d["user"]["discriminator"], "0000");
        assert!(d["user"]["avatar"].is_null());
        assert_eq!(d["user"]["bot"], true);
        assert_eq!(
            d["guilds"],
            serde_json::json!([{"id":"1","unavailable":true},{"id":"2","unavailable":true}])
        );
        assert_eq!(d["session_id"], "abc");
        assert_eq!(d["resume_gateway_url"], "ws://127.0.0.1:9000");
        assert_eq!(d["application"], serde_json::json!({"id":"42","flags":0}));
        assert_eq!(d["shard"], serde_json::json!([0, 2]));
        assert_eq!(d["private_channels"], serde_json::json!([]));
        let unsharded = ReadyParams { shard: None, ..p };
        let ev = ready_event(&unsharded).unwrap();
        assert!(!String::from_utf8_lossy(ev.tail()).contains("\"shard\""));
    }
}
