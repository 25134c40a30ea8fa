//! gw-fanout's untimed set-up on Hearth's control API: the owner (a bot user), the guild and
//! its system channel, and members in steps, each a user created and added to the guild. The
//! thousands of requests go over a few keep-alive connections in parallel threads (the
//! gateway's [`HttpClient`]), before anything is timed.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::thread;

use serde_json::Value;

use crate::BenchError;
use crate::gateway::http::{HttpClient, HttpResponse};

/// Keep-alive connections the member set-up uses in parallel: enough to hide the round trips
/// behind the server's work, few enough to leave the server core to the server.
pub const SETUP_CONNECTIONS: usize = 4;
/// Name of the guild under test.
pub const GUILD_NAME: &str = "hearth-bench fanout";
/// Username of the guild's owner, the member who sends every message.
pub const OWNER_NAME: &str = "fanout-owner";

/// The guild the scenario fans out in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuildSetup {
    /// Owner's user id.
    pub owner_id: u64,
    /// Owner's token (messages are sent as `Bot <token>`; the owner is also member 1).
    pub owner_token: String,
    /// Guild id.
    pub guild_id: u64,
    /// The guild's system channel (text, visible to everyone): where messages go.
    pub channel_id: u64,
    /// Members the guild reported right after creation (the owner: 1).
    pub initial_members: u64,
}

fn parse_err(what: &str, detail: String) -> BenchError {
    BenchError::Parse {
        file: what.into(),
        detail,
    }
}

fn json_ok(resp: &HttpResponse, what: &str) -> Result<Value, BenchError> {
    if resp.status != 200 {
        return Err(BenchError::Client(format!(
            "{what} answered {}: {}",
            resp.status,
            resp.text()
        )));
    }
    serde_json::from_slice(&resp.body).map_err(|e| parse_err(what, e.to_string()))
}

/// A snowflake field, given as a string (Discord's shape) or a number.
pub fn snowflake(v: &Value, key: &str) -> Option<u64> {
    match v.get(key)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn field_id(v: &Value, key: &str, what: &str) -> Result<u64, BenchError> {
    snowflake(v, key).ok_or_else(|| parse_err(what, format!("no {key} in {v}")))
}

/// Creates a bot user; returns (id, token).
pub fn create_user(http: &mut HttpClient, username: &str) -> Result<(u64, String), BenchError> {
    let what = "POST /control/users";
    let body = serde_json::json!({"username": username, "bot": true}).to_string();
    let v = json_ok(&http.post_json("/control/users", &body)?, what)?;
    let id = field_id(&v, "id", what)?;
    let token = v
        .get("token")
        .and_then(Value::as_str)
        .ok_or_else(|| parse_err(what, format!("no token in {v}")))?;
    Ok((id, token.to_owned()))
}

/// Creates the owner and the guild.
pub fn create_guild(addr: SocketAddr) -> Result<GuildSetup, BenchError> {
    let mut http = HttpClient::new(addr);
    let (owner_id, owner_token) = create_user(&mut http, OWNER_NAME)?;
    let what = "POST /control/guilds";
    let body =
        serde_json::json!({"name": GUILD_NAME, "owner_id": owner_id.to_string()}).to_string();
    let g = json_ok(&http.post_json("/control/guilds", &body)?, what)?;
    Ok(GuildSetup {
        owner_id,
        owner_token,
        guild_id: field_id(&g, "id", what)?,
        channel_id: field_id(&g, "system_channel_id", what)?,
        initial_members: g.get("member_count").and_then(Value::as_u64).unwrap_or(1),
    })
}

/// Adds user `user_id` to guild `guild_id`.
pub fn add_member(http: &mut HttpClient, guild_id: u64, user_id: u64) -> Result<(), BenchError> {
    let path = format!("/control/guilds/{guild_id}/members");
    let body = serde_json::json!({"user_id": user_id.to_string()}).to_string();
    let resp = http.post_json(&path, &body)?;
    if !(200..300).contains(&resp.status) {
        return Err(BenchError::Client(format!(
            "POST {path} answered {}: {}",
            resp.status,
            resp.text()
        )));
    }
    Ok(())
}

/// Member usernames: `fanout-<i>`, unique over a run.
pub fn member_name(i: u32) -> String {
    format!("fanout-{i}")
}

/// Creates users `first..first + count` and adds each to the guild, over
/// [`SETUP_CONNECTIONS`] connections in parallel; returns their tokens in order.
pub fn add_members(
    addr: SocketAddr,
    guild_id: u64,
    first: u32,
    count: u32,
) -> Result<Vec<String>, BenchError> {
    let per = count.div_ceil(SETUP_CONNECTIONS as u32).max(1);
    let mut handles = Vec::new();
    let mut from = first;
    while from < first + count {
        let n = per.min(first + count - from);
        let start = from;
        handles.push(thread::spawn(move || -> Result<Vec<String>, BenchError> {
            let mut http = HttpClient::new(addr);
            let mut tokens = Vec::with_capacity(n as usize);
            for i in start..start + n {
                let (id, token) = create_user(&mut http, &member_name(i))?;
                add_member(&mut http, guild_id, id)?;
                tokens.push(token);
            }
            Ok(tokens)
        }));
        from += n;
    }
    let mut tokens = Vec::with_capacity(count as usize);
    for h in handles {
        let part = h
            .join()
            .map_err(|_| BenchError::Client("a set-up thread panicked".into()))??;
        tokens.extend(part);
    }
    Ok(tokens)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn snowflakes_as_strings_or_numbers() {
        let v = serde_json::json!({"id": "1311111111111111111", "n": 7, "x": true});
        assert_eq!(snowflake(&v, "id"), Some(1_311_111_111_111_111_111));
        assert_eq!(snowflake(&v, "n"), Some(7));
        assert_eq!(snowflake(&v, "x"), None);
        assert_eq!(snowflake(&v, "missing"), None);
        assert_eq!(member_name(12), "fanout-12");
    }
}
