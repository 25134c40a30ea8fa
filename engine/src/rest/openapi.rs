//! The OpenAPI 3.1 description of every route, generated from [`ROUTES`] plus a per-route
//! description here, and committed as `engine/openapi.json` (served at `/openapi.json`).
//!
//! The committed file is what is served; [`document`] is how it is made. A test compares the two,
//! so the file cannot drift from the route table: after changing a route, regenerate it with
//! `HEARTH_BLESS_OPENAPI=1 cargo test -p engine --test rest_openapi`.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use serde_json::{Map, Value, json};

use super::limits::{
    BANS_LIMIT_MAX, MEMBERS_LIMIT_DEFAULT, MEMBERS_LIMIT_MAX, MESSAGES_LIMIT_DEFAULT,
    MESSAGES_LIMIT_MAX, REACTIONS_LIMIT_DEFAULT, REACTIONS_LIMIT_MAX,
};
use super::routes::{Auth, ROUTES, RouteKind};

/// The committed document, to serve at `/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// What a route answers on success.
enum Reply {
    /// 200 with one object.
    One(&'static str),
    /// 201 with one object.
    Created(&'static str),
    /// 200 with an array of objects.
    Many(&'static str),
    /// 204 without a body.
    Empty,
}

/// A query parameter.
struct Param {
    name: &'static str,
    schema: Value,
    required: bool,
    description: &'static str,
}

/// The documentation of one route.
struct Op {
    summary: &'static str,
    body: Option<&'static str>,
    reply: Reply,
    query: Vec<Param>,
}

fn op(summary: &'static str, body: Option<&'static str>, reply: Reply) -> Op {
    Op {
        summary,
        body,
        reply,
        query: Vec::new(),
    }
}

fn snowflake_param(name: &'static str, description: &'static str) -> Param {
    Param {
        name,
        schema: json!({"$ref": "#/components/schemas/Snowflake"}),
        required: false,
        description,
    }
}

fn limit_param(min: u64, max: u64, default: u64) -> Param {
    Param {
        name: "limit",
        schema: json!({"type": "integer", "minimum": min, "maximum": max, "default": default}),
        required: false,
        description: "Page size.",
    }
}

fn bool_param(name: &'static str, description: &'static str) -> Param {
    Param {
        name,
        schema: json!({"type": "boolean", "default": false}),
        required: false,
        description,
    }
}

fn describe(kind: RouteKind) -> Op {
    use Reply::{Created, Empty, Many, One};
    use RouteKind as K;
    match kind {
        K::GetGateway => op("Get the gateway URL", None, One("Gateway")),
        K::GetGatewayBot => op(
            "Get the gateway URL with shard and session start advice",
            None,
            One("GatewayBot"),
        ),
        K::GetCurrentUser => op("Get the current user", None, One("User")),
        K::GetUser => op("Get a user", None, One("User")),
        K::GetCurrentApplication => op(
            "Get the current bot's application",
            None,
            One("Application"),
        ),
        K::CreateGuild => op("Create a guild", Some("CreateGuild"), Created("Guild")),
        K::GetGuild => Op {
            query: vec![bool_param(
                "with_counts",
                "Include approximate member and presence counts.",
            )],
            ..op("Get a guild", None, One("Guild"))
        },
        K::ModifyGuild => op("Modify a guild", Some("ModifyGuild"), One("Guild")),
        K::DeleteGuild => op("Delete a guild (owner only)", None, Empty),
        K::ListGuildChannels => op("List a guild's channels", None, Many("Channel")),
        K::CreateGuildChannel => op(
            "Create a channel",
            Some("CreateChannel"),
            Created("Channel"),
        ),
        K::ModifyChannelPositions => op("Reorder channels", Some("ChannelPositions"), Empty),
        K::GetChannel => op("Get a channel", None, One("Channel")),
        K::ModifyChannel => op("Modify a channel", Some("ModifyChannel"), One("Channel")),
        K::DeleteChannel => op(
            "Delete a channel; answers the deleted channel",
            None,
            One("Channel"),
        ),
        K::ListRoles => op("List a guild's roles", None, Many("Role")),
        K::CreateRole => op("Create a role", Some("CreateRole"), One("Role")),
        K::ModifyRolePositions => op("Reorder roles", Some("RolePositions"), Many("Role")),
        K::ModifyRole => op("Modify a role", Some("ModifyRole"), One("Role")),
        K::DeleteRole => op("Delete a role", None, Empty),
        K::ListMembers => Op {
            query: vec![
                limit_param(1, MEMBERS_LIMIT_MAX, MEMBERS_LIMIT_DEFAULT),
                snowflake_param("after", "Members with a user id above this one."),
            ],
            ..op("List members in user id order", None, Many("Member"))
        },
        K::SearchMembers => Op {
            query: vec![
                Param {
                    name: "query",
                    schema: json!({"type": "string", "minLength": 1, "maxLength": 100}),
                    required: true,
                    description: "Prefix of a username or nick.",
                },
                limit_param(1, MEMBERS_LIMIT_MAX, MEMBERS_LIMIT_DEFAULT),
            ],
            ..op("Search members by name prefix", None, Many("Member"))
        },
        K::GetMember => op("Get a member", None, One("Member")),
        K::ModifyMember => op("Modify a member", Some("ModifyMember"), One("Member")),
        K::RemoveMember => op("Kick a member", None, Empty),
        K::ModifyCurrentMember => op(
            "Modify the current member's nick",
            Some("ModifyCurrentMember"),
            One("Member"),
        ),
        K::AddMemberRole => op("Give a member a role", None, Empty),
        K::RemoveMemberRole => op("Take a role from a member", None, Empty),
        K::ListBans => Op {
            query: vec![
                limit_param(1, BANS_LIMIT_MAX, BANS_LIMIT_MAX),
                snowflake_param("before", "Bans of users with an id below this one."),
                snowflake_param("after", "Bans of users with an id above this one."),
            ],
            ..op("List bans", None, Many("Ban"))
        },
        K::CreateBan => op("Ban a user", Some("CreateBan"), Empty),
        K::RemoveBan => op("Lift a ban", None, Empty),
        K::CreateInvite => op("Create an invite", Some("CreateInvite"), One("Invite")),
        K::ListChannelInvites => op("List a channel's invites", None, Many("Invite")),
        K::GetInvite => Op {
            query: vec![
                bool_param("with_counts", "Include approximate member counts."),
                bool_param("with_expiration", "Include the expiry time."),
            ],
            ..op("Get an invite", None, One("Invite"))
        },
        K::DeleteInvite => op(
            "Delete an invite; answers the deleted invite",
            None,
            One("Invite"),
        ),
        K::JoinInvite => op("Join the invite's guild", None, One("Invite")),
        K::ListMessages => Op {
            query: vec![
                snowflake_param("around", "Messages around this id."),
                snowflake_param("before", "Messages older than this id."),
                snowflake_param("after", "Messages newer than this id."),
                limit_param(1, MESSAGES_LIMIT_MAX, MESSAGES_LIMIT_DEFAULT),
            ],
            ..op("List messages, newest first", None, Many("Message"))
        },
        K::CreateMessage => op("Send a message", Some("CreateMessage"), One("Message")),
        K::GetMessage => op("Get a message", None, One("Message")),
        K::EditMessage => op("Edit a message", Some("EditMessage"), One("Message")),
        K::DeleteMessage => op("Delete a message", None, Empty),
        K::BulkDeleteMessages => op(
            "Delete 2 to 100 messages under 14 days old",
            Some("BulkDelete"),
            Empty,
        ),
        K::ListPins => op("List pinned messages", None, Many("Message")),
        K::PinMessage => op("Pin a message", None, Empty),
        K::UnpinMessage => op("Unpin a message", None, Empty),
        K::AddOwnReaction => op("React to a message", None, Empty),
        K::RemoveOwnReaction => op("Remove the current user's reaction", None, Empty),
        K::RemoveUserReaction => op("Remove a user's reaction", None, Empty),
        K::ListReactions => Op {
            query: vec![
                snowflake_param("after", "Users with an id above this one."),
                limit_param(1, REACTIONS_LIMIT_MAX, REACTIONS_LIMIT_DEFAULT),
                Param {
                    name: "type",
                    schema: json!({"type": "integer", "enum": [0, 1], "default": 0}),
                    required: false,
                    description: "0: normal reactions, 1: super reactions (always empty).",
                },
            ],
            ..op("List users who reacted with an emoji", None, Many("User"))
        },
        K::RemoveEmojiReactions => op("Remove every reaction with an emoji", None, Empty),
        K::RemoveAllReactions => op("Remove every reaction", None, Empty),
        K::TriggerTyping => op("Show the typing indicator", None, Empty),
        K::AckMessage => op(
            "Mark the channel read up to a message",
            Some("Ack"),
            One("AckResult"),
        ),
        K::ControlCreateUser => op(
            "Create a user and a token for it",
            Some("ControlCreateUser"),
            One("ControlUserCreated"),
        ),
        K::ControlCreateApplication => op(
            "Create a bot user with its application and token",
            Some("ControlCreateApplication"),
            One("ControlApplicationCreated"),
        ),
        K::ControlCreateGuild => op(
            "Create a guild owned by an existing user",
            Some("ControlCreateGuild"),
            One("Guild"),
        ),
        K::ControlAddGuildMember => op(
            "Add a user to a guild without an invite",
            Some("ControlAddGuildMember"),
            One("Member"),
        ),
    }
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn path_param(name: &str) -> Value {
    let (schema, description) = match name {
        "emoji" => (
            json!({"type": "string"}),
            "A Unicode emoji or `name:id` of a guild emoji, percent-encoded.",
        ),
        "invite_code" => (
            json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"}),
            "An invite code.",
        ),
        _ => (schema_ref("Snowflake"), "A snowflake id."),
    };
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
}

fn operation(spec: &super::routes::RouteSpec) -> Value {
    let d = describe(spec.kind);
    let mut params: Vec<Value> = spec
        .template
        .split('/')
        .filter_map(|t| t.strip_prefix('{').and_then(|t| t.strip_suffix('}')))
        .map(path_param)
        .collect();
    params.extend(d.query.into_iter().map(|p| {
        json!({
            "name": p.name,
            "in": "query",
            "required": p.required,
            "description": p.description,
            "schema": p.schema,
        })
    }));
    let ok_headers = json!({
        "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
        "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
        "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"},
        "X-RateLimit-Reset-After": {"$ref": "#/components/headers/X-RateLimit-Reset-After"},
        "X-RateLimit-Bucket": {"$ref": "#/components/headers/X-RateLimit-Bucket"},
    });
    let (status, ok) = match d.reply {
        Reply::One(s) => (
            "200",
            json!({"description": "OK", "headers": ok_headers, "content": json_content(schema_ref(s))}),
        ),
        Reply::Created(s) => (
            "201",
            json!({"description": "Created", "headers": ok_headers, "content": json_content(schema_ref(s))}),
        ),
        Reply::Many(s) => (
            "200",
            json!({"description": "OK", "headers": ok_headers,
                   "content": json_content(json!({"type": "array", "items": schema_ref(s)}))}),
        ),
        Reply::Empty => (
            "204",
            json!({"description": "No Content", "headers": ok_headers}),
        ),
    };
    let mut responses = Map::new();
    responses.insert(status.to_owned(), ok);
    for (code, name) in [
        ("400", "BadRequest"),
        ("401", "Unauthorized"),
        ("403", "Forbidden"),
        ("404", "NotFound"),
        ("429", "RateLimited"),
    ] {
        if code == "429" && spec.auth == Auth::Control {
            continue;
        }
        responses.insert(
            code.to_owned(),
            json!({"$ref": format!("#/components/responses/{name}")}),
        );
    }
    let security = match spec.auth {
        Auth::None => json!([]),
        Auth::Token => json!([{"BotToken": []}]),
        Auth::Control => json!([{"ControlSecret": []}]),
    };
    let tag = if spec.auth == Auth::Control {
        "control"
    } else {
        spec.template.split('/').nth(1).unwrap_or("api")
    };
    let mut op = json!({
        "operationId": spec.name,
        "summary": d.summary,
        "tags": [tag],
        "security": security,
        "x-ratelimit-bucket": spec.bucket.id(),
        "parameters": params,
        "responses": responses,
    });
    if let (Some(body), Some(obj)) = (d.body, op.as_object_mut()) {
        obj.insert(
            "requestBody".to_owned(),
            json!({"required": true, "content": json_content(schema_ref(body))}),
        );
    }
    op
}

fn nullable(schema: Value) -> Value {
    json!({"anyOf": [schema, {"type": "null"}]})
}

fn object(required: &[&str], props: Value) -> Value {
    json!({"type": "object", "required": required, "properties": props})
}

fn schemas() -> Value {
    let sf = || schema_ref("Snowflake");
    let string = || json!({"type": "string"});
    let int = || json!({"type": "integer"});
    let boolean = || json!({"type": "boolean"});
    let ts = || json!({"type": "string", "format": "date-time"});
    let arr = |s: Value| json!({"type": "array", "items": s});
    let perms = || json!({"type": "string", "pattern": "^[0-9]+$", "description": "Permission bits as a decimal string."});
    let entries: Vec<(&str, Value)> = vec![
        (
            "Snowflake",
            json!({"type": "string", "pattern": "^[0-9]{1,19}$",
            "description": "A 64-bit id as a decimal string (requests may also send an integer)."}),
        ),
        (
            "Error",
            json!(object(
                &["code", "message"],
                json!({
                    "code": {"type": "integer", "description": "Discord JSON error code."},
                    "message": string(),
                    "errors": {"type": "object", "description": "Per-field errors of a 50035 answer: nested by field name (array elements by index), each leaf an `_errors` list of {code, message}."},
                })
            )),
        ),
        (
            "RateLimitError",
            json!(object(
                &["message", "retry_after", "global", "code"],
                json!({
                    "message": string(),
                    "retry_after": {"type": "number", "description": "Seconds to wait."},
                    "global": boolean(),
                    "code": int(),
                })
            )),
        ),
        ("Gateway", json!(object(&["url"], json!({"url": string()})))),
        (
            "GatewayBot",
            json!(object(
                &["url", "shards", "session_start_limit"],
                json!({
                    "url": string(),
                    "shards": int(),
                    "session_start_limit": object(&["total", "remaining", "reset_after", "max_concurrency"], json!({
                        "total": int(), "remaining": int(), "reset_after": int(), "max_concurrency": int(),
                    })),
                })
            )),
        ),
        (
            "User",
            json!(object(
                &["id", "username", "discriminator", "global_name", "avatar"],
                json!({
                    "id": sf(),
                    "username": string(),
                    "discriminator": string(),
                    "global_name": nullable(string()),
                    "avatar": nullable(string()),
                    "bot": boolean(),
                    "system": boolean(),
                    "mfa_enabled": boolean(),
                    "banner": nullable(string()),
                    "accent_color": nullable(int()),
                    "locale": string(),
                    "verified": boolean(),
                    "flags": int(),
                    "premium_type": int(),
                    "public_flags": int(),
                })
            )),
        ),
        (
            "Application",
            json!(object(
                &[
                    "id",
                    "name",
                    "icon",
                    "description",
                    "bot_public",
                    "bot_require_code_grant",
                    "verify_key",
                    "flags"
                ],
                json!({
                    "id": sf(),
                    "name": string(),
                    "icon": nullable(string()),
                    "description": string(),
                    "bot_public": boolean(),
                    "bot_require_code_grant": boolean(),
                    "owner": schema_ref("User"),
                    "bot": schema_ref("User"),
                    "verify_key": string(),
                    "flags": int(),
                })
            )),
        ),
        (
            "Guild",
            json!(object(
                &[
                    "id",
                    "name",
                    "icon",
                    "splash",
                    "discovery_splash",
                    "owner_id",
                    "afk_channel_id",
                    "afk_timeout",
                    "verification_level",
                    "default_message_notifications",
                    "explicit_content_filter",
                    "roles",
                    "emojis",
                    "features",
                    "mfa_level",
                    "application_id",
                    "system_channel_id",
                    "system_channel_flags",
                    "rules_channel_id",
                    "vanity_url_code",
                    "description",
                    "banner",
                    "premium_tier",
                    "preferred_locale",
                    "public_updates_channel_id",
                    "nsfw_level",
                    "premium_progress_bar_enabled"
                ],
                json!({
                    "id": sf(),
                    "name": string(),
                    "icon": nullable(string()),
                    "splash": nullable(string()),
                    "discovery_splash": nullable(string()),
                    "owner_id": sf(),
                    "afk_channel_id": nullable(sf()),
                    "afk_timeout": int(),
                    "verification_level": int(),
                    "default_message_notifications": int(),
                    "explicit_content_filter": int(),
                    "roles": arr(schema_ref("Role")),
                    "emojis": arr(json!({"type": "object"})),
                    "features": arr(string()),
                    "mfa_level": int(),
                    "application_id": nullable(sf()),
                    "system_channel_id": nullable(sf()),
                    "system_channel_flags": int(),
                    "rules_channel_id": nullable(sf()),
                    "vanity_url_code": nullable(string()),
                    "description": nullable(string()),
                    "banner": nullable(string()),
                    "premium_tier": int(),
                    "preferred_locale": string(),
                    "public_updates_channel_id": nullable(sf()),
                    "nsfw_level": int(),
                    "premium_progress_bar_enabled": boolean(),
                    "approximate_member_count": int(),
                    "approximate_presence_count": int(),
                })
            )),
        ),
        (
            "Overwrite",
            json!(object(
                &["id", "type", "allow", "deny"],
                json!({
                    "id": sf(),
                    "type": {"type": "integer", "enum": [0, 1], "description": "0 role, 1 member."},
                    "allow": perms(),
                    "deny": perms(),
                })
            )),
        ),
        (
            "Channel",
            json!(object(
                &["id", "type"],
                json!({
                    "id": sf(),
                    "type": {"type": "integer", "enum": [0, 2, 4, 5], "description": "0 text, 2 voice, 4 category, 5 announcement."},
                    "guild_id": sf(),
                    "position": int(),
                    "permission_overwrites": arr(schema_ref("Overwrite")),
                    "name": string(),
                    "topic": nullable(string()),
                    "nsfw": boolean(),
                    "last_message_id": nullable(sf()),
                    "bitrate": int(),
                    "user_limit": int(),
                    "rate_limit_per_user": int(),
                    "parent_id": nullable(sf()),
                    "last_pin_timestamp": nullable(ts()),
                    "flags": int(),
                })
            )),
        ),
        (
            "Role",
            json!(object(
                &[
                    "id",
                    "name",
                    "color",
                    "hoist",
                    "position",
                    "permissions",
                    "managed",
                    "mentionable",
                    "flags"
                ],
                json!({
                    "id": sf(),
                    "name": string(),
                    "color": int(),
                    "hoist": boolean(),
                    "icon": nullable(string()),
                    "unicode_emoji": nullable(string()),
                    "position": int(),
                    "permissions": perms(),
                    "managed": boolean(),
                    "mentionable": boolean(),
                    "flags": int(),
                })
            )),
        ),
        (
            "Member",
            json!(object(
                &["roles", "joined_at", "deaf", "mute", "flags"],
                json!({
                    "user": schema_ref("User"),
                    "nick": nullable(string()),
                    "avatar": nullable(string()),
                    "roles": arr(sf()),
                    "joined_at": ts(),
                    "premium_since": nullable(ts()),
                    "deaf": boolean(),
                    "mute": boolean(),
                    "flags": int(),
                    "pending": boolean(),
                    "communication_disabled_until": nullable(ts()),
                })
            )),
        ),
        (
            "Ban",
            json!(object(
                &["reason", "user"],
                json!({
                    "reason": nullable(string()),
                    "user": schema_ref("User"),
                })
            )),
        ),
        (
            "Invite",
            json!(object(
                &["type", "code", "channel"],
                json!({
                    "type": int(),
                    "code": string(),
                    "guild": {"type": "object", "description": "Partial guild."},
                    "channel": nullable(json!({"type": "object", "description": "Partial channel."})),
                    "inviter": schema_ref("User"),
                    "expires_at": nullable(ts()),
                    "approximate_member_count": int(),
                    "approximate_presence_count": int(),
                    "uses": int(),
                    "max_uses": int(),
                    "max_age": int(),
                    "temporary": boolean(),
                    "created_at": ts(),
                })
            )),
        ),
        (
            "Embed",
            json!({"type": "object", "properties": {
                "type": {"type": "string", "const": "rich"},
                "title": {"type": "string", "maxLength": 256},
                "description": {"type": "string", "maxLength": 4096},
                "url": string(),
                "timestamp": ts(),
                "color": {"type": "integer", "minimum": 0, "maximum": 16777215},
                "footer": object(&["text"], json!({"text": {"type": "string", "maxLength": 2048}, "icon_url": string()})),
                "image": object(&["url"], json!({"url": string()})),
                "thumbnail": object(&["url"], json!({"url": string()})),
                "author": object(&["name"], json!({"name": {"type": "string", "maxLength": 256}, "url": string(), "icon_url": string()})),
                "fields": {"type": "array", "maxItems": 25, "items": object(&["name", "value"], json!({
                    "name": {"type": "string", "minLength": 1, "maxLength": 256},
                    "value": {"type": "string", "minLength": 1, "maxLength": 1024},
                    "inline": boolean(),
                }))},
            }}),
        ),
        (
            "Reaction",
            json!(object(
                &["count", "me", "emoji"],
                json!({
                    "count": int(),
                    "count_details": object(&["burst", "normal"], json!({"burst": int(), "normal": int()})),
                    "me": boolean(),
                    "me_burst": boolean(),
                    "emoji": object(&["id", "name"], json!({"id": nullable(sf()), "name": nullable(string())})),
                    "burst_colors": arr(string()),
                })
            )),
        ),
        (
            "MessageReference",
            json!(object(
                &["message_id"],
                json!({
                    "type": {"type": "integer", "enum": [0]},
                    "message_id": sf(),
                    "channel_id": sf(),
                    "guild_id": sf(),
                    "fail_if_not_exists": {"type": "boolean", "default": true},
                })
            )),
        ),
        (
            "AllowedMentions",
            json!({"type": "object", "properties": {
                "parse": arr(json!({"type": "string", "enum": ["everyone", "roles", "users"]})),
                "roles": {"type": "array", "maxItems": 100, "items": sf()},
                "users": {"type": "array", "maxItems": 100, "items": sf()},
                "replied_user": boolean(),
            }}),
        ),
        (
            "Message",
            json!(object(
                &[
                    "id",
                    "channel_id",
                    "author",
                    "content",
                    "timestamp",
                    "edited_timestamp",
                    "tts",
                    "mention_everyone",
                    "mentions",
                    "mention_roles",
                    "attachments",
                    "embeds",
                    "pinned",
                    "type"
                ],
                json!({
                    "id": sf(),
                    "channel_id": sf(),
                    "guild_id": sf(),
                    "author": schema_ref("User"),
                    "member": schema_ref("Member"),
                    "content": string(),
                    "timestamp": ts(),
                    "edited_timestamp": nullable(ts()),
                    "tts": boolean(),
                    "mention_everyone": boolean(),
                    "mentions": arr(schema_ref("User")),
                    "mention_roles": arr(sf()),
                    "attachments": arr(json!({"type": "object"})),
                    "embeds": arr(schema_ref("Embed")),
                    "reactions": arr(schema_ref("Reaction")),
                    "nonce": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    "pinned": boolean(),
                    "type": int(),
                    "flags": int(),
                    "message_reference": schema_ref("MessageReference"),
                    "referenced_message": nullable(json!({"type": "object"})),
                })
            )),
        ),
        (
            "AckResult",
            json!(object(&["token"], json!({"token": {"type": "null"}}))),
        ),
        (
            "CreateGuild",
            json!(object(
                &["name"],
                json!({
                    "name": {"type": "string", "minLength": 2, "maxLength": 100},
                    "verification_level": {"type": "integer", "minimum": 0, "maximum": 4},
                    "default_message_notifications": {"type": "integer", "minimum": 0, "maximum": 1},
                    "explicit_content_filter": {"type": "integer", "minimum": 0, "maximum": 2},
                })
            )),
        ),
        (
            "ModifyGuild",
            json!(object(
                &[],
                json!({
                    "name": {"type": "string", "minLength": 2, "maxLength": 100},
                    "description": nullable(json!({"type": "string", "maxLength": 120})),
                    "verification_level": {"type": "integer", "minimum": 0, "maximum": 4},
                    "default_message_notifications": {"type": "integer", "minimum": 0, "maximum": 1},
                    "explicit_content_filter": {"type": "integer", "minimum": 0, "maximum": 2},
                    "afk_channel_id": nullable(sf()),
                    "afk_timeout": {"type": "integer", "enum": [60, 300, 900, 1800, 3600]},
                    "system_channel_id": nullable(sf()),
                    "owner_id": sf(),
                })
            )),
        ),
        (
            "CreateChannel",
            json!(object(
                &["name"],
                json!({
                    "name": {"type": "string", "minLength": 1, "maxLength": 100},
                    "type": {"type": "integer", "enum": [0, 2, 4, 5], "default": 0},
                    "topic": {"type": "string", "maxLength": 1024},
                    "position": {"type": "integer", "minimum": 0},
                    "parent_id": nullable(sf()),
                    "nsfw": boolean(),
                    "bitrate": {"type": "integer", "minimum": 8000, "maximum": 384000},
                    "user_limit": {"type": "integer", "minimum": 0, "maximum": 99},
                    "rate_limit_per_user": {"type": "integer", "minimum": 0, "maximum": 21600},
                    "permission_overwrites": {"type": "array", "maxItems": 100, "items": schema_ref("Overwrite")},
                })
            )),
        ),
        (
            "ModifyChannel",
            json!(object(
                &[],
                json!({
                    "name": {"type": "string", "minLength": 1, "maxLength": 100},
                    "type": {"type": "integer", "enum": [0, 5]},
                    "topic": nullable(json!({"type": "string", "maxLength": 1024})),
                    "position": nullable(json!({"type": "integer", "minimum": 0})),
                    "nsfw": boolean(),
                    "rate_limit_per_user": nullable(json!({"type": "integer", "minimum": 0, "maximum": 21600})),
                    "bitrate": nullable(json!({"type": "integer", "minimum": 8000, "maximum": 384000})),
                    "user_limit": nullable(json!({"type": "integer", "minimum": 0, "maximum": 99})),
                    "permission_overwrites": nullable(json!({"type": "array", "maxItems": 100, "items": schema_ref("Overwrite")})),
                    "parent_id": nullable(sf()),
                })
            )),
        ),
        (
            "ChannelPositions",
            json!({"type": "array", "minItems": 1, "maxItems": 500, "items": object(&["id"], json!({
                "id": sf(),
                "position": nullable(json!({"type": "integer", "minimum": 0})),
                "lock_permissions": nullable(boolean()),
                "parent_id": nullable(sf()),
            }))}),
        ),
        (
            "CreateRole",
            json!(object(
                &[],
                json!({
                    "name": {"type": "string", "maxLength": 100, "default": "new role"},
                    "permissions": perms(),
                    "color": {"type": "integer", "minimum": 0, "maximum": 16777215},
                    "hoist": boolean(),
                    "mentionable": boolean(),
                })
            )),
        ),
        (
            "ModifyRole",
            json!(object(
                &[],
                json!({
                    "name": {"type": "string", "minLength": 1, "maxLength": 100},
                    "permissions": perms(),
                    "color": {"type": "integer", "minimum": 0, "maximum": 16777215},
                    "hoist": boolean(),
                    "mentionable": boolean(),
                })
            )),
        ),
        (
            "RolePositions",
            json!({"type": "array", "minItems": 1, "maxItems": 500, "items": object(&["id"], json!({
                "id": sf(),
                "position": nullable(json!({"type": "integer", "minimum": 0})),
            }))}),
        ),
        (
            "ModifyMember",
            json!(object(
                &[],
                json!({
                    "nick": nullable(json!({"type": "string", "maxLength": 32})),
                    "roles": nullable(json!({"type": "array", "maxItems": 250, "items": sf()})),
                    "mute": boolean(),
                    "deaf": boolean(),
                    "channel_id": nullable(sf()),
                })
            )),
        ),
        (
            "ModifyCurrentMember",
            json!(object(
                &[],
                json!({
                    "nick": nullable(json!({"type": "string", "maxLength": 32})),
                })
            )),
        ),
        (
            "CreateInvite",
            json!(object(
                &[],
                json!({
                    "max_age": {"type": "integer", "minimum": 0, "maximum": 604800, "default": 86400},
                    "max_uses": {"type": "integer", "minimum": 0, "maximum": 100, "default": 0},
                    "temporary": boolean(),
                    "unique": boolean(),
                })
            )),
        ),
        (
            "CreateBan",
            json!(object(
                &[],
                json!({
                    "delete_message_seconds": {"type": "integer", "minimum": 0, "maximum": 604800, "default": 0},
                    "delete_message_days": {"type": "integer", "minimum": 0, "maximum": 7, "deprecated": true},
                })
            )),
        ),
        (
            "CreateMessage",
            json!({"type": "object", "description": "At least one of content or embeds must be non-empty (else 50006).", "properties": {
                "content": {"type": "string", "maxLength": 2000},
                "nonce": {"anyOf": [{"type": "string", "maxLength": 25}, {"type": "integer"}]},
                "tts": boolean(),
                "embeds": {"type": "array", "maxItems": 10, "items": schema_ref("Embed")},
                "allowed_mentions": schema_ref("AllowedMentions"),
                "message_reference": schema_ref("MessageReference"),
                "flags": {"type": "integer", "description": "Only SUPPRESS_EMBEDS (4) and SUPPRESS_NOTIFICATIONS (4096)."},
                "enforce_nonce": boolean(),
            }}),
        ),
        (
            "EditMessage",
            json!(object(
                &[],
                json!({
                    "content": nullable(json!({"type": "string", "maxLength": 2000})),
                    "embeds": nullable(json!({"type": "array", "maxItems": 10, "items": schema_ref("Embed")})),
                    "flags": int(),
                    "allowed_mentions": schema_ref("AllowedMentions"),
                })
            )),
        ),
        (
            "BulkDelete",
            json!(object(
                &["messages"],
                json!({
                    "messages": {"type": "array", "minItems": 2, "maxItems": 100, "items": sf()},
                })
            )),
        ),
        (
            "Ack",
            json!(object(
                &[],
                json!({
                    "token": {"type": ["string", "null"]},
                    "manual": boolean(),
                    "mention_count": int(),
                })
            )),
        ),
        (
            "ControlCreateUser",
            json!(object(
                &["username"],
                json!({
                    "username": {"type": "string", "minLength": 2, "maxLength": 32},
                    "bot": {"type": "boolean", "default": false},
                    "privileged_intents": {"type": "integer", "minimum": 0,
                        "description": "Privileged intents granted (GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT bits); default all."},
                })
            )),
        ),
        (
            "ControlCreateApplication",
            json!(object(
                &["name"],
                json!({
                    "name": {"type": "string", "minLength": 2, "maxLength": 32},
                    "owner_id": sf(),
                })
            )),
        ),
        (
            "ControlCreateGuild",
            json!(object(
                &["name", "owner_id"],
                json!({
                    "name": {"type": "string", "minLength": 2, "maxLength": 100},
                    "owner_id": sf(),
                })
            )),
        ),
        (
            "ControlAddGuildMember",
            json!(object(
                &["user_id"],
                json!({
                    "user_id": sf(),
                    "nick": {"type": "string", "maxLength": 32},
                    "roles": {"type": "array", "maxItems": 250, "items": sf()},
                })
            )),
        ),
        (
            "ControlUserCreated",
            json!({"description": "The user object with its token.", "allOf": [
                schema_ref("User"),
                object(&["token"], json!({
                    "token": {"type": "string", "description": "Send as `Authorization: <token>` (or `Bot <token>` for bots)."},
                })),
            ]}),
        ),
        (
            "ControlApplicationCreated",
            json!({"description": "The bot user object with its token and application.", "allOf": [
                schema_ref("User"),
                object(&["token", "application"], json!({
                    "token": {"type": "string", "description": "The bot token: `Authorization: Bot <token>`."},
                    "application": schema_ref("Application"),
                })),
            ]}),
        ),
    ];
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn components() -> Value {
    let error = |d: &str| json!({"description": d, "content": json_content(schema_ref("Error"))});
    json!({
        "schemas": schemas(),
        "securitySchemes": {
            "BotToken": {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`Bot <token>` or the bare token."},
            "ControlSecret": {"type": "http", "scheme": "bearer",
                "description": "The deployment's control API secret."},
        },
        "headers": {
            "X-RateLimit-Limit": {"description": "Requests per window of this bucket.", "schema": {"type": "integer"}},
            "X-RateLimit-Remaining": {"description": "Requests left in this window.", "schema": {"type": "integer"}},
            "X-RateLimit-Reset": {"description": "Epoch seconds (with milliseconds) when the window ends.", "schema": {"type": "string"}},
            "X-RateLimit-Reset-After": {"description": "Seconds (with milliseconds) until the window ends.", "schema": {"type": "string"}},
            "X-RateLimit-Bucket": {"description": "Opaque bucket id; routes with the same id share a limit.", "schema": {"type": "string"}},
        },
        "responses": {
            "BadRequest": error("Invalid body or query (50035, 50109, 50006, ...)."),
            "Unauthorized": error("Missing or invalid token."),
            "Forbidden": error("Missing access (50001) or permissions (50013)."),
            "NotFound": error("Unknown path (code 0) or resource (100xx)."),
            "RateLimited": {
                "description": "Rate limited.",
                "headers": {
                    "Retry-After": {"description": "Whole seconds to wait.", "schema": {"type": "integer"}},
                    "X-RateLimit-Scope": {"description": "user or global.", "schema": {"type": "string", "enum": ["user", "global", "shared"]}},
                    "X-RateLimit-Global": {"description": "Present on global limits.", "schema": {"type": "string"}},
                    "Via": {"description": "Always `1.1 hearth`.", "schema": {"type": "string"}},
                },
                "content": json_content(schema_ref("RateLimitError")),
            },
        },
    })
}

/// Generates the document from the route table.
pub fn document() -> Value {
    let mut paths = Map::new();
    for spec in ROUTES {
        let entry = paths
            .entry(spec.template.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(item) = entry.as_object_mut() {
            if spec.auth == Auth::Control {
                // Control routes live outside the Discord namespace.
                item.insert("servers".to_owned(), json!([{"url": "/"}]));
            }
            item.insert(spec.method.to_ascii_lowercase(), operation(spec));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Hearth REST API",
            "version": "10",
            "description": "The Discord API v10 subset Hearth serves, under /api/v10 (also /api/v9 and /api), and the control API for integrators under /control. Errors are {code, message} with Discord's JSON error codes; rate limits answer 429 with retry_after and X-RateLimit-* headers.",
        },
        "servers": [{"url": "/api/v10"}],
        "paths": paths,
        "components": components(),
    })
}
