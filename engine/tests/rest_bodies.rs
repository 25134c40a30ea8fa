//! Body and query decoding: each validator's accept and reject cases, with Discord's codes and
//! its nested `errors` tree.

use engine::rest::{
    Ack, ApiError, BulkDelete, ChannelPosition, ControlAddGuildMember, ControlCreateApplication,
    ControlCreateUser, CreateBan, CreateChannel, CreateGuild, CreateInvite, CreateMessage,
    CreateRole, EditMessage, Input, ListBansQuery, ListMembersQuery, ListMessagesQuery,
    ListReactionsQuery, MessageAnchor, ModifyChannel, ModifyCurrentMember, ModifyGuild,
    ModifyMember, ModifyRole, Nonce, Patch, RolePosition, SearchMembersQuery, WithCountsQuery,
    codes, decode, route,
};
use serde_json::{Value, json};

fn bytes(v: Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// The `_errors[0].code` at `path` of a 50035 answer.
fn field_code(e: &ApiError, path: &[&str]) -> String {
    assert_eq!(
        (e.status, e.code),
        (400, codes::INVALID_FORM_BODY),
        "{e}: {:?}",
        e.errors
    );
    let mut v = e.errors.as_ref().expect("errors");
    for p in path {
        v = &v[*p];
    }
    v["_errors"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error at {path:?}: {:?}", e.errors))
        .to_owned()
}

#[test]
fn message_content_length_counts_characters_not_bytes() {
    // 2000 four-byte characters: 8000 bytes, still within the limit.
    let ok = CreateMessage::parse(&bytes(json!({"content": "\u{1F980}".repeat(2000)}))).unwrap();
    assert_eq!(ok.content.chars().count(), 2000);
    let ok = CreateMessage::parse(&bytes(json!({"content": "é".repeat(2000)}))).unwrap();
    assert_eq!(ok.content.len(), 4000);
    let e = CreateMessage::parse(&bytes(json!({"content": "é".repeat(2001)}))).unwrap_err();
    assert_eq!(field_code(&e, &["content"]), "BASE_TYPE_MAX_LENGTH");
    assert_eq!(e.body()["message"], "Invalid Form Body");
}

#[test]
fn empty_messages_are_50006() {
    for body in [
        json!({}),
        json!({"content": ""}),
        json!({"content": "  \n\t "}),
        json!({"content": null, "embeds": []}),
        json!({"tts": true}),
    ] {
        let e = CreateMessage::parse(&bytes(body.clone())).unwrap_err();
        assert_eq!((e.status, e.code), (400, codes::EMPTY_MESSAGE), "{body}");
    }
    let e = CreateMessage::parse(b"").unwrap_err();
    assert_eq!(e.code, codes::EMPTY_MESSAGE);
    // An embed alone is a message.
    let m = CreateMessage::parse(&bytes(json!({"embeds": [{"title": "t"}]}))).unwrap();
    assert_eq!(m.embeds.len(), 1);
    assert_eq!(m.embeds[0].kind, "rich");
}

#[test]
fn invalid_json_is_50109() {
    for raw in [
        &b"{"[..],
        b"{\"content\": }",
        b"\xff\xfe",
        b"nul",
        b"{\"a\":1}x",
    ] {
        let e = CreateMessage::parse(raw).unwrap_err();
        assert_eq!((e.status, e.code), (400, codes::INVALID_JSON));
        assert_eq!(
            e.body()["message"],
            "The request body contains invalid JSON."
        );
    }
    let e = CreateChannel::parse(b"[1,").unwrap_err();
    assert_eq!(e.code, codes::INVALID_JSON);
}

#[test]
fn a_body_that_is_not_an_object_is_50035_at_the_top() {
    let e = CreateMessage::parse(b"[\"hi\"]").unwrap_err();
    assert_eq!(field_code(&e, &[]), "DICT_TYPE_CONVERT");
    let e = CreateGuild::parse(b"\"name\"").unwrap_err();
    assert_eq!(field_code(&e, &[]), "DICT_TYPE_CONVERT");
}

#[test]
fn message_fields_are_typed_and_checked() {
    let m = CreateMessage::parse(&bytes(json!({
        "content": "hi",
        "nonce": 1234567890123_i64,
        "tts": false,
        "allowed_mentions": {"parse": ["users"], "roles": ["1", 2], "replied_user": true},
        "message_reference": {"message_id": 99, "fail_if_not_exists": false},
        "flags": 4096,
        "sticker_ids": ["ignored"],
    })))
    .unwrap();
    assert_eq!(m.nonce, Some(Nonce::Int(1234567890123)));
    let am = m.allowed_mentions.unwrap();
    assert!(am.parse_users && !am.parse_roles && !am.parse_everyone && am.replied_user);
    assert_eq!(am.roles, vec![1, 2]);
    let r = m.message_reference.unwrap();
    assert_eq!((r.message_id, r.fail_if_not_exists), (99, false));
    assert_eq!(m.flags, 4096);

    let m = CreateMessage::parse(&bytes(json!({"content": "x", "nonce": "abc"}))).unwrap();
    assert_eq!(m.nonce, Some(Nonce::Str("abc".to_owned())));
    assert_eq!(serde_json::to_value(&m.nonce).unwrap(), json!("abc"));

    let e =
        CreateMessage::parse(&bytes(json!({"content": "x", "nonce": "n".repeat(26)}))).unwrap_err();
    assert_eq!(field_code(&e, &["nonce"]), "BASE_TYPE_MAX_LENGTH");
    let e = CreateMessage::parse(&bytes(json!({"content": "x", "tts": "yes"}))).unwrap_err();
    assert_eq!(field_code(&e, &["tts"]), "BOOLEAN_TYPE_COERCE");
    let e = CreateMessage::parse(&bytes(json!({"content": 5}))).unwrap_err();
    assert_eq!(field_code(&e, &["content"]), "STRING_TYPE_COERCE");
    let e = CreateMessage::parse(&bytes(json!({"content": "x", "flags": 1}))).unwrap_err();
    assert_eq!(field_code(&e, &["flags"]), "MESSAGE_FLAGS_INVALID");
    let e = CreateMessage::parse(&bytes(json!({
        "content": "x",
        "allowed_mentions": {"parse": ["users"], "users": ["1"]},
    })))
    .unwrap_err();
    assert_eq!(
        field_code(&e, &["allowed_mentions"]),
        "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE"
    );
    let e = CreateMessage::parse(&bytes(json!({
        "content": "x",
        "allowed_mentions": {"parse": ["nobody"]},
    })))
    .unwrap_err();
    assert_eq!(
        field_code(&e, &["allowed_mentions", "parse", "0"]),
        "BASE_TYPE_CHOICES"
    );
    let e = CreateMessage::parse(&bytes(json!({
        "content": "x",
        "message_reference": {"message_id": "nope"},
    })))
    .unwrap_err();
    assert_eq!(
        field_code(&e, &["message_reference", "message_id"]),
        "NUMBER_TYPE_COERCE"
    );
}

#[test]
fn several_bad_fields_are_all_reported() {
    let e = CreateMessage::parse(&bytes(json!({
        "content": "x".repeat(2001),
        "tts": 1,
        "embeds": [{"title": "t".repeat(257), "color": -1}, {"fields": [{"name": "n"}]}],
    })))
    .unwrap_err();
    assert_eq!(field_code(&e, &["content"]), "BASE_TYPE_MAX_LENGTH");
    assert_eq!(field_code(&e, &["tts"]), "BOOLEAN_TYPE_COERCE");
    assert_eq!(
        field_code(&e, &["embeds", "0", "title"]),
        "BASE_TYPE_MAX_LENGTH"
    );
    assert_eq!(field_code(&e, &["embeds", "0", "color"]), "NUMBER_TYPE_MIN");
    assert_eq!(
        field_code(&e, &["embeds", "1", "fields", "0", "value"]),
        "BASE_TYPE_REQUIRED"
    );
}

#[test]
fn embeds_are_validated_and_reserialized_without_unknown_keys() {
    let m = CreateMessage::parse(&bytes(json!({"embeds": [{
        "title": "T",
        "description": "D",
        "url": "https://example.com",
        "timestamp": "2025-01-02T03:04:05.000Z",
        "color": 0xFF_FFFF,
        "footer": {"text": "f"},
        "image": {"url": "https://example.com/a.png"},
        "author": {"name": "a", "url": "http://example.com"},
        "fields": [{"name": "n", "value": "v", "inline": true}],
        "video": {"url": "https://x"},
        "provider": {"name": "p"},
    }]})))
    .unwrap();
    let v = serde_json::to_value(&m.embeds[0]).unwrap();
    assert_eq!(v["type"], "rich");
    assert_eq!(v["fields"][0]["inline"], true);
    assert_eq!(v["color"], 0xFF_FFFF);
    assert!(v.get("video").is_none() && v.get("provider").is_none());
    assert!(v.get("thumbnail").is_none());

    for (embed, path) in [
        (json!({"url": "javascript:alert(1)"}), vec!["url"]),
        (json!({"timestamp": "yesterday"}), vec!["timestamp"]),
        (json!({"color": 0x100_0000}), vec!["color"]),
        (json!({"footer": {}}), vec!["footer", "text"]),
        (json!({"fields": "x"}), vec!["fields"]),
        (
            json!({"description": "d".repeat(4097)}),
            vec!["description"],
        ),
    ] {
        let e = CreateMessage::parse(&bytes(json!({"embeds": [embed.clone()]}))).unwrap_err();
        let mut full = vec!["embeds", "0"];
        full.extend(path);
        field_code(&e, &full);
    }
    let eleven: Vec<Value> = (0..11).map(|_| json!({"title": "t"})).collect();
    let e = CreateMessage::parse(&bytes(json!({"embeds": eleven}))).unwrap_err();
    assert_eq!(field_code(&e, &["embeds"]), "BASE_TYPE_MAX_LENGTH");
    // Two embeds within their own limits but over 6000 characters together.
    let big = json!({"description": "d".repeat(3500)});
    let e = CreateMessage::parse(&bytes(json!({"embeds": [big.clone(), big]}))).unwrap_err();
    assert_eq!(field_code(&e, &["embeds"]), "BASE_TYPE_MAX_LENGTH");
}

#[test]
fn edit_message_tells_absent_from_null() {
    let e = EditMessage::parse(&bytes(json!({"content": null}))).unwrap();
    assert_eq!(e.content, Patch::Clear);
    assert_eq!(e.embeds, Patch::Unchanged);
    let e = EditMessage::parse(&bytes(json!({"content": "new", "embeds": []}))).unwrap();
    assert_eq!(e.content, Patch::Set("new".to_owned()));
    assert_eq!(e.embeds, Patch::Set(Vec::new()));
    let e = EditMessage::parse(&bytes(json!({"content": "x".repeat(2001)}))).unwrap_err();
    assert_eq!(field_code(&e, &["content"]), "BASE_TYPE_MAX_LENGTH");
    assert_eq!(EditMessage::parse(b"").unwrap(), EditMessage::default());
}

#[test]
fn bulk_delete_takes_2_to_100_ids_as_strings_or_ints() {
    let b = BulkDelete::parse(&bytes(json!({"messages": ["10", 11, "10"]}))).unwrap();
    assert_eq!(b.messages, vec![10, 11]);
    let hundred: Vec<u64> = (1..=100).collect();
    assert_eq!(
        BulkDelete::parse(&bytes(json!({ "messages": hundred })))
            .unwrap()
            .messages
            .len(),
        100
    );
    for bad in [
        json!({"messages": ["1"]}),
        json!({"messages": (0..101).collect::<Vec<u64>>()}),
    ] {
        let e = BulkDelete::parse(&bytes(bad)).unwrap_err();
        assert_eq!(field_code(&e, &["messages"]), "BASE_TYPE_BAD_LENGTH");
    }
    let e = BulkDelete::parse(&bytes(json!({}))).unwrap_err();
    assert_eq!(field_code(&e, &["messages"]), "BASE_TYPE_REQUIRED");
    let e = BulkDelete::parse(&bytes(json!({"messages": ["1", "x"]}))).unwrap_err();
    assert_eq!(field_code(&e, &["messages", "1"]), "NUMBER_TYPE_COERCE");
}

#[test]
fn bulk_delete_refuses_messages_older_than_14_days() {
    let now_ms: u64 = 1_760_000_000_000;
    let id_at = |unix_ms: u64| engine::snowflake::from_parts(unix_ms, 0, 0, 0).unwrap();
    let day = 86_400_000;
    let fresh = BulkDelete {
        messages: vec![id_at(now_ms - day), id_at(now_ms - 13 * day)],
    };
    assert!(fresh.check_age(now_ms).is_ok());
    let stale = BulkDelete {
        messages: vec![id_at(now_ms - day), id_at(now_ms - 15 * day)],
    };
    let e = stale.check_age(now_ms).unwrap_err();
    assert_eq!((e.status, e.code), (400, codes::BULK_DELETE_TOO_OLD));
}

#[test]
fn channel_bodies() {
    let c = CreateChannel::parse(&bytes(json!({
        "name": "général",
        "type": 2,
        "parent_id": 7,
        "bitrate": 64000,
        "user_limit": 10,
        "permission_overwrites": [{"id": "5", "type": 0, "allow": "1024", "deny": 2048}],
    })))
    .unwrap();
    assert_eq!((c.kind, c.parent_id, c.bitrate), (2, Some(7), Some(64000)));
    assert_eq!(c.permission_overwrites[0].allow, 1024);
    assert_eq!(c.permission_overwrites[0].deny, 2048);
    assert_eq!(
        CreateChannel::parse(&bytes(json!({"name": "x"})))
            .unwrap()
            .kind,
        0
    );

    for (body, field, code) in [
        (json!({}), "name", "BASE_TYPE_REQUIRED"),
        (json!({"name": ""}), "name", "BASE_TYPE_BAD_LENGTH"),
        (
            json!({"name": "n".repeat(101)}),
            "name",
            "BASE_TYPE_BAD_LENGTH",
        ),
        (json!({"name": "n", "type": 3}), "type", "BASE_TYPE_CHOICES"),
        (
            json!({"name": "n", "topic": "t".repeat(1025)}),
            "topic",
            "BASE_TYPE_MAX_LENGTH",
        ),
        (
            json!({"name": "n", "bitrate": 100}),
            "bitrate",
            "NUMBER_TYPE_MIN",
        ),
        (
            json!({"name": "n", "user_limit": 100}),
            "user_limit",
            "NUMBER_TYPE_MAX",
        ),
        (
            json!({"name": "n", "rate_limit_per_user": 21601}),
            "rate_limit_per_user",
            "NUMBER_TYPE_MAX",
        ),
        (
            json!({"name": "n", "parent_id": "p"}),
            "parent_id",
            "NUMBER_TYPE_COERCE",
        ),
    ] {
        let e = CreateChannel::parse(&bytes(body.clone())).unwrap_err();
        assert_eq!(field_code(&e, &[field]), code, "{body}");
    }
    let e = CreateChannel::parse(&bytes(json!({
        "name": "n",
        "permission_overwrites": [{"id": "5", "type": 3, "allow": "x"}],
    })))
    .unwrap_err();
    assert_eq!(
        field_code(&e, &["permission_overwrites", "0", "type"]),
        "BASE_TYPE_CHOICES"
    );
    assert_eq!(
        field_code(&e, &["permission_overwrites", "0", "allow"]),
        "NUMBER_TYPE_COERCE"
    );

    let m = ModifyChannel::parse(&bytes(
        json!({"topic": null, "parent_id": "9", "name": "n"}),
    ))
    .unwrap();
    assert_eq!(m.topic, Patch::Clear);
    assert_eq!(m.parent_id, Patch::Set(9));
    assert_eq!(m.rate_limit_per_user, Patch::Unchanged);
    assert_eq!(m.name.as_deref(), Some("n"));
}

#[test]
fn position_arrays() {
    let p = ChannelPosition::parse_list(&bytes(json!([
        {"id": "1", "position": 0},
        {"id": 2, "position": 3, "parent_id": null, "lock_permissions": true},
    ])))
    .unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(
        (p[1].id, p[1].position, p[1].parent_id),
        (2, Some(3), Patch::Clear)
    );
    let r = RolePosition::parse_list(&bytes(json!([{"id": "8", "position": 1}]))).unwrap();
    assert_eq!((r[0].id, r[0].position), (8, Some(1)));

    let e = RolePosition::parse_list(&bytes(json!({"id": 1}))).unwrap_err();
    assert_eq!(field_code(&e, &[]), "LIST_TYPE_CONVERT");
    let e = RolePosition::parse_list(&bytes(json!([]))).unwrap_err();
    assert_eq!(field_code(&e, &[]), "BASE_TYPE_BAD_LENGTH");
    let e = RolePosition::parse_list(&bytes(json!([{"id": 1}, {"position": 2}, 5]))).unwrap_err();
    assert_eq!(field_code(&e, &["1", "id"]), "BASE_TYPE_REQUIRED");
    assert_eq!(field_code(&e, &["2"]), "DICT_TYPE_CONVERT");
}

#[test]
fn role_bodies() {
    let r = CreateRole::parse(b"").unwrap();
    assert_eq!(r.name, "new role");
    assert_eq!(r.permissions, None);
    let r = CreateRole::parse(&bytes(
        json!({"name": "mods", "permissions": "8", "color": 255, "hoist": true}),
    ))
    .unwrap();
    assert_eq!((r.permissions, r.color, r.hoist), (Some(8), 255, true));
    assert_eq!(
        CreateRole::parse(&bytes(json!({"permissions": 1024})))
            .unwrap()
            .permissions,
        Some(1024)
    );
    let e = CreateRole::parse(&bytes(json!({"permissions": "admin"}))).unwrap_err();
    assert_eq!(field_code(&e, &["permissions"]), "NUMBER_TYPE_COERCE");
    let e = CreateRole::parse(&bytes(json!({"color": 0x100_0000}))).unwrap_err();
    assert_eq!(field_code(&e, &["color"]), "NUMBER_TYPE_MAX");
    let m = ModifyRole::parse(&bytes(json!({"name": "x", "mentionable": false}))).unwrap();
    assert_eq!(
        (m.name.as_deref(), m.mentionable, m.hoist),
        (Some("x"), Some(false), None)
    );
    let e = ModifyRole::parse(&bytes(json!({"name": ""}))).unwrap_err();
    assert_eq!(field_code(&e, &["name"]), "BASE_TYPE_BAD_LENGTH");
}

#[test]
fn member_bodies() {
    let m = ModifyMember::parse(&bytes(
        json!({"nick": "", "roles": [1, "2"], "channel_id": null}),
    ))
    .unwrap();
    assert_eq!(m.nick, Patch::Clear);
    assert_eq!(m.roles, Patch::Set(vec![1, 2]));
    assert_eq!(m.channel_id, Patch::Clear);
    assert_eq!(m.mute, None);
    let m = ModifyMember::parse(&bytes(json!({"nick": "n", "mute": true}))).unwrap();
    assert_eq!(
        (m.nick, m.mute, m.roles),
        (Patch::Set("n".to_owned()), Some(true), Patch::Unchanged)
    );
    let e = ModifyMember::parse(&bytes(json!({"nick": "n".repeat(33)}))).unwrap_err();
    assert_eq!(field_code(&e, &["nick"]), "BASE_TYPE_MAX_LENGTH");
    let c = ModifyCurrentMember::parse(&bytes(json!({"nick": null}))).unwrap();
    assert_eq!(c.nick, Patch::Clear);
}

#[test]
fn guild_bodies() {
    let g = CreateGuild::parse(&bytes(json!({"name": "ab", "region": "ignored"}))).unwrap();
    assert_eq!(g.name, "ab");
    for name in [json!("a"), json!("n".repeat(101))] {
        let e = CreateGuild::parse(&bytes(json!({ "name": name }))).unwrap_err();
        assert_eq!(field_code(&e, &["name"]), "BASE_TYPE_BAD_LENGTH");
    }
    let e = CreateGuild::parse(b"{}").unwrap_err();
    assert_eq!(field_code(&e, &["name"]), "BASE_TYPE_REQUIRED");
    let m = ModifyGuild::parse(&bytes(
        json!({"afk_timeout": 300, "system_channel_id": null}),
    ))
    .unwrap();
    assert_eq!(
        (m.afk_timeout, m.system_channel_id),
        (Some(300), Patch::Clear)
    );
    let e = ModifyGuild::parse(&bytes(json!({"afk_timeout": 301}))).unwrap_err();
    assert_eq!(field_code(&e, &["afk_timeout"]), "BASE_TYPE_CHOICES");
}

#[test]
fn invite_ban_and_ack_bodies() {
    let i = CreateInvite::parse(b"").unwrap();
    assert_eq!(
        (i.max_age, i.max_uses, i.temporary, i.unique),
        (86_400, 0, false, false)
    );
    let i = CreateInvite::parse(&bytes(
        json!({"max_age": 0, "max_uses": 100, "unique": true}),
    ))
    .unwrap();
    assert_eq!((i.max_age, i.max_uses, i.unique), (0, 100, true));
    let e = CreateInvite::parse(&bytes(json!({"max_age": 604_801}))).unwrap_err();
    assert_eq!(field_code(&e, &["max_age"]), "NUMBER_TYPE_MAX");
    let e = CreateInvite::parse(&bytes(json!({"max_uses": 101}))).unwrap_err();
    assert_eq!(field_code(&e, &["max_uses"]), "NUMBER_TYPE_MAX");
    // Discord coerces numeric strings.
    assert_eq!(
        CreateInvite::parse(&bytes(json!({"max_age": "60"})))
            .unwrap()
            .max_age,
        60
    );

    assert_eq!(CreateBan::parse(b"").unwrap().delete_message_seconds, 0);
    assert_eq!(
        CreateBan::parse(&bytes(json!({"delete_message_days": 7})))
            .unwrap()
            .delete_message_seconds,
        604_800
    );
    let e = CreateBan::parse(&bytes(json!({"delete_message_seconds": 604_801}))).unwrap_err();
    assert_eq!(
        field_code(&e, &["delete_message_seconds"]),
        "NUMBER_TYPE_MAX"
    );

    assert_eq!(Ack::parse(b"").unwrap(), Ack::default());
    assert_eq!(
        Ack::parse(&bytes(json!({"token": null}))).unwrap(),
        Ack::default()
    );
    assert_eq!(Ack::parse(b"{bad").unwrap_err().code, codes::INVALID_JSON);
}

#[test]
fn control_bodies() {
    let u = ControlCreateUser::parse(&bytes(json!({"username": " alice "}))).unwrap();
    assert_eq!((u.username.as_str(), u.bot), ("alice", false));
    for bad in ["a", "every@one", "x#1", "here", "n".repeat(33).as_str()] {
        assert!(
            ControlCreateUser::parse(&bytes(json!({ "username": bad }))).is_err(),
            "{bad}"
        );
    }
    let e = ControlCreateUser::parse(b"{}").unwrap_err();
    assert_eq!(field_code(&e, &["username"]), "BASE_TYPE_REQUIRED");
    let a =
        ControlCreateApplication::parse(&bytes(json!({"name": "bot", "owner_id": "3"}))).unwrap();
    assert_eq!((a.name.as_str(), a.owner_id), ("bot", Some(3)));
    let m = ControlAddGuildMember::parse(&bytes(json!({"user_id": 42}))).unwrap();
    assert_eq!((m.user_id, m.nick, m.roles), (42, None, vec![]));
    let e = ControlAddGuildMember::parse(b"{}").unwrap_err();
    assert_eq!(field_code(&e, &["user_id"]), "BASE_TYPE_REQUIRED");
}

#[test]
fn message_list_query() {
    let q = ListMessagesQuery::parse("").unwrap();
    assert_eq!((q.anchor, q.limit), (None, 50));
    let q = ListMessagesQuery::parse("before=123&limit=100").unwrap();
    assert_eq!((q.anchor, q.limit), (Some(MessageAnchor::Before(123)), 100));
    let q = ListMessagesQuery::parse("after=5&around=7").unwrap();
    assert_eq!(q.anchor, Some(MessageAnchor::Around(7)));
    for (query, field, code) in [
        ("limit=0", "limit", "NUMBER_TYPE_MIN"),
        ("limit=101", "limit", "NUMBER_TYPE_MAX"),
        ("limit=-3", "limit", "NUMBER_TYPE_MIN"),
        ("limit=ten", "limit", "NUMBER_TYPE_COERCE"),
        ("before=abc", "before", "NUMBER_TYPE_COERCE"),
        ("around=1e3", "around", "NUMBER_TYPE_COERCE"),
    ] {
        let e = ListMessagesQuery::parse(query).unwrap_err();
        assert_eq!(field_code(&e, &[field]), code, "{query}");
    }
}

#[test]
fn other_queries() {
    let q = ListMembersQuery::parse("limit=1000&after=0").unwrap();
    assert_eq!((q.limit, q.after), (1000, 0));
    assert_eq!(ListMembersQuery::parse("").unwrap().limit, 1);
    assert!(ListMembersQuery::parse("limit=1001").is_err());
    let s = SearchMembersQuery::parse("query=al+ice&limit=10").unwrap();
    assert_eq!((s.query.as_str(), s.limit), ("al ice", 10));
    let e = SearchMembersQuery::parse("limit=10").unwrap_err();
    assert_eq!(field_code(&e, &["query"]), "BASE_TYPE_REQUIRED");
    let b = ListBansQuery::parse("after=9").unwrap();
    assert_eq!((b.limit, b.before, b.after), (1000, None, Some(9)));
    let r = ListReactionsQuery::parse("type=1&limit=100").unwrap();
    assert!(r.burst);
    assert_eq!(r.limit, 100);
    assert!(ListReactionsQuery::parse("type=2").is_err());
    assert!(WithCountsQuery::parse("with_counts=1").unwrap().with_counts);
    assert!(
        WithCountsQuery::parse("with_counts=true")
            .unwrap()
            .with_counts
    );
    assert!(!WithCountsQuery::parse("with_counts=0").unwrap().with_counts);
    assert!(WithCountsQuery::parse("with_counts=maybe").is_err());
}

#[test]
fn decode_dispatches_by_route() {
    let r = route("POST", "/api/v10/channels/1/messages").unwrap();
    match decode(&r, "", &bytes(json!({"content": "hello"}))).unwrap() {
        Input::CreateMessage(m) => assert_eq!(m.content, "hello"),
        other => panic!("{other:?}"),
    }
    let r = route("GET", "/api/v10/channels/1/messages").unwrap();
    assert_eq!(
        decode(&r, "limit=5", b"").unwrap(),
        Input::ListMessages(ListMessagesQuery {
            anchor: None,
            limit: 5
        })
    );
    // A body on a route that takes none is ignored, even if it is not JSON.
    let r = route("DELETE", "/api/v10/channels/1/messages/2").unwrap();
    assert_eq!(decode(&r, "", b"garbage").unwrap(), Input::None);
    let r = route("PATCH", "/api/v10/guilds/1/roles").unwrap();
    assert!(matches!(
        decode(&r, "", &bytes(json!([{"id": 1, "position": 2}]))).unwrap(),
        Input::RolePositions(_)
    ));
    let r = route("POST", "/control/users").unwrap();
    assert!(matches!(
        decode(&r, "", &bytes(json!({"username": "bob", "bot": true}))).unwrap(),
        Input::ControlCreateUser(ControlCreateUser { bot: true, .. })
    ));
}
