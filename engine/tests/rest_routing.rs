//! Routing: every route of the table parses with its ids under every accepted prefix; bad ids,
//! unknown paths, wrong methods and retired versions answer as Discord does.

use engine::rest::{ApiError, Auth, ROUTES, ReactionEmoji, Route, RouteKind, codes, route};
use serde_json::Value;

const GUILD: u64 = 81_384_788_765_712_384;
const CHANNEL: u64 = 81_384_788_765_712_385;
const MESSAGE: u64 = 1_100_000_000_000_000_001;
const USER: u64 = 80_351_110_224_678_912;
const ROLE: u64 = 41_771_983_423_143_936;
const THUMBS_UP_ENCODED: &str = "%F0%9F%91%8D";
const THUMBS_UP: &str = "\u{1F44D}";
const INVITE: &str = "hearth-1A_b";

/// A concrete path for `template`, with the segment text as a client sends it (encoded).
fn concrete(template: &str, encoded: bool) -> String {
    template
        .replace("{guild_id}", &GUILD.to_string())
        .replace("{channel_id}", &CHANNEL.to_string())
        .replace("{message_id}", &MESSAGE.to_string())
        .replace("{user_id}", &USER.to_string())
        .replace("{role_id}", &ROLE.to_string())
        .replace(
            "{emoji}",
            if encoded {
                THUMBS_UP_ENCODED
            } else {
                THUMBS_UP
            },
        )
        .replace("{invite_code}", INVITE)
}

fn body(e: &ApiError) -> Value {
    e.body()
}

#[test]
fn every_route_parses_with_its_ids_under_every_prefix() {
    for spec in ROUTES {
        let rel = concrete(spec.template, true);
        let prefixes: &[&str] = if spec.auth == Auth::Control {
            &[""]
        } else {
            &["/api/v10", "/api/v9", "/api"]
        };
        for prefix in prefixes {
            for trailing in ["", "/"] {
                let path = format!("{prefix}{rel}{trailing}");
                let r = route(spec.method, &path)
                    .unwrap_or_else(|e| panic!("{} {path}: {e}", spec.method));
                assert_eq!(r.kind(), spec.kind, "{} {path}", spec.method);
                assert_eq!(r.spec(), spec);
                assert_eq!(r.path(), concrete(spec.template, false), "{path}");
            }
        }
    }
}

#[test]
fn ids_land_in_the_right_fields() {
    let r = route(
        "DELETE",
        &format!("/api/v10/guilds/{GUILD}/members/{USER}/roles/{ROLE}"),
    )
    .unwrap();
    assert_eq!(
        r,
        Route::RemoveMemberRole {
            guild_id: GUILD,
            user_id: USER,
            role_id: ROLE
        }
    );
    assert_eq!(r.guild_id(), Some(GUILD));
    assert_eq!(r.major(), Some(GUILD));

    let r = route(
        "DELETE",
        &format!(
            "/api/v10/channels/{CHANNEL}/messages/{MESSAGE}/reactions/{THUMBS_UP_ENCODED}/{USER}"
        ),
    )
    .unwrap();
    assert_eq!(
        r,
        Route::RemoveUserReaction {
            channel_id: CHANNEL,
            message_id: MESSAGE,
            emoji: ReactionEmoji::Unicode(THUMBS_UP.to_owned()),
            user_id: USER
        }
    );
    assert_eq!(r.major(), Some(CHANNEL));
    assert_eq!(
        route("GET", "/api/v10/invites/abc").unwrap(),
        Route::GetInvite {
            invite_code: "abc".to_owned()
        }
    );
    assert_eq!(route("GET", "/api/v10/invites/abc").unwrap().major(), None);
    assert_eq!(route("GET", "/api/v10/users/1").unwrap().major(), None);
}

#[test]
fn literal_segments_win_over_parameters() {
    assert_eq!(
        route("GET", "/api/v10/users/@me").unwrap(),
        Route::GetCurrentUser {}
    );
    assert_eq!(
        route("GET", "/api/v10/users/%40me").unwrap(),
        Route::GetCurrentUser {}
    );
    assert_eq!(
        route("PATCH", "/api/v10/guilds/5/members/@me").unwrap(),
        Route::ModifyCurrentMember { guild_id: 5 }
    );
    assert_eq!(
        route("GET", "/api/v10/guilds/5/members/search").unwrap(),
        Route::SearchMembers { guild_id: 5 }
    );
    assert_eq!(
        route("POST", "/api/v10/channels/5/messages/bulk-delete").unwrap(),
        Route::BulkDeleteMessages { channel_id: 5 }
    );
    assert_eq!(
        route(
            "DELETE",
            &format!("/api/v10/channels/1/messages/2/reactions/{THUMBS_UP_ENCODED}/@me")
        )
        .unwrap()
        .kind(),
        RouteKind::RemoveOwnReaction
    );
}

#[test]
fn at_me_where_an_id_is_expected_is_a_coercion_error() {
    // Discord answers GET /guilds/{g}/members/@me with 400 NUMBER_TYPE_COERCE on user_id.
    let e = route("GET", "/api/v10/guilds/5/members/@me").unwrap_err();
    assert_eq!((e.status, e.code), (400, codes::INVALID_FORM_BODY));
    assert_eq!(
        body(&e)["errors"]["user_id"]["_errors"][0]["code"],
        "NUMBER_TYPE_COERCE"
    );
}

#[test]
fn bad_ids_are_400_with_the_parameter_named() {
    for (path, field) in [
        ("/api/v10/channels/abc/messages", "channel_id"),
        ("/api/v10/channels/-1", "channel_id"),
        ("/api/v10/channels/1.5", "channel_id"),
        ("/api/v10/channels/9223372036854775808", "channel_id"),
        ("/api/v10/channels/99999999999999999999999", "channel_id"),
        ("/api/v10/guilds/1/roles/x", "role_id"),
        ("/api/v10/users/me", "user_id"),
    ] {
        let method = if path.contains("roles") {
            "PATCH"
        } else {
            "GET"
        };
        let e = route(method, path).unwrap_err();
        assert_eq!(e.status, 400, "{path}");
        assert_eq!(e.code, codes::INVALID_FORM_BODY, "{path}");
        let b = body(&e);
        assert_eq!(b["message"], "Invalid Form Body");
        assert_eq!(
            b["errors"][field]["_errors"][0]["code"], "NUMBER_TYPE_COERCE",
            "{path}: {b}"
        );
    }
    // Every bad id of a path is reported at once.
    let e = route("GET", "/api/v10/channels/a/messages/b").unwrap_err();
    let b = body(&e);
    assert!(b["errors"]["channel_id"].is_object() && b["errors"]["message_id"].is_object());
    // The largest accepted id.
    assert_eq!(
        route("GET", "/api/v10/channels/9223372036854775807").unwrap(),
        Route::GetChannel {
            channel_id: i64::MAX as u64
        }
    );
}

#[test]
fn unknown_paths_are_404_code_0() {
    for path in [
        "/",
        "/api",
        "/api/",
        "/api/v10",
        "/api/v10/",
        "/api/v10/nope",
        "/api/v10//users/@me",
        "/api/v10/users/@me/extra",
        "/api/v10/channels/1/messages/2/reactions/x/y/z/w",
        "/api/v10/control/users",
        "/api/vX/users/@me",
        "/apiv10/users/@me",
        "/users/@me",
        "/control",
        "/control/nothing",
    ] {
        let e = route("GET", path).unwrap_err();
        assert_eq!((e.status, e.code), (404, 0), "{path}");
        assert_eq!(
            body(&e),
            serde_json::json!({"message": "404: Not Found", "code": 0}),
            "{path}"
        );
    }
}

#[test]
fn known_paths_with_other_methods_are_405() {
    for (method, path) in [
        ("DELETE", "/api/v10/users/@me"),
        ("POST", "/api/v10/gateway"),
        ("PUT", "/api/v10/channels/1/messages"),
        (
            "PUT",
            "/api/v10/channels/1/messages/2/reactions/%F0%9F%91%8D/42",
        ),
        ("GET", "/control/users"),
        ("HEAD", "/api/v10/users/1"),
        ("get", "/api/v10/users/1"),
    ] {
        let e = route(method, path).unwrap_err();
        assert_eq!((e.status, e.code), (405, 0), "{method} {path}");
        assert_eq!(
            body(&e),
            serde_json::json!({"message": "405: Method Not Allowed", "code": 0})
        );
    }
}

#[test]
fn retired_api_versions_are_50041() {
    for path in ["/api/v8/users/@me", "/api/v6/gateway", "/api/v11/users/@me"] {
        let e = route("GET", path).unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (400, codes::INVALID_API_VERSION),
            "{path}"
        );
    }
}

#[test]
fn reaction_emoji_forms() {
    let emoji = |seg: &str| -> Result<ReactionEmoji, ApiError> {
        route(
            "PUT",
            &format!("/api/v10/channels/1/messages/2/reactions/{seg}/@me"),
        )
        .map(|r| match r {
            Route::AddOwnReaction { emoji, .. } => emoji,
            other => panic!("{other:?}"),
        })
    };
    assert_eq!(
        emoji("blobcat:123").unwrap(),
        ReactionEmoji::Custom {
            name: "blobcat".to_owned(),
            id: 123
        }
    );
    assert_eq!(
        emoji("a:blob_dance:456").unwrap(),
        ReactionEmoji::Custom {
            name: "blob_dance".to_owned(),
            id: 456
        }
    );
    // Keycap one, a skin-toned thumbs up, a ZWJ family.
    for seg in [
        "1%EF%B8%8F%E2%83%A3",
        "%F0%9F%91%8D%F0%9F%8F%BD",
        "%F0%9F%91%A8%E2%80%8D%F0%9F%91%A9%E2%80%8D%F0%9F%91%A7",
    ] {
        assert!(matches!(emoji(seg), Ok(ReactionEmoji::Unicode(_))), "{seg}");
    }
    for bad in [
        "abc",
        "blobcat",
        "blobcat:",
        ":123",
        "bad name:123",
        "x:notanid",
        "%FF%FE",
        "%F0%9F%91%8D%0A",
        &"%F0%9F%91%8D".repeat(20),
    ] {
        let e = emoji(bad).unwrap_err();
        assert_eq!((e.status, e.code), (400, codes::UNKNOWN_EMOJI), "{bad}");
    }
}

#[test]
fn malformed_invite_codes_are_unknown_invite() {
    for bad in ["a.b", "a%20b", &"x".repeat(33)] {
        let e = route("GET", &format!("/api/v10/invites/{bad}")).unwrap_err();
        assert_eq!((e.status, e.code), (404, codes::UNKNOWN_INVITE), "{bad}");
    }
}

#[test]
fn route_table_is_consistent() {
    assert!(ROUTES.len() >= 50, "{}", ROUTES.len());
    let mut names: Vec<&str> = ROUTES.iter().map(|s| s.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ROUTES.len(), "operation names are unique");
    for (i, spec) in ROUTES.iter().enumerate() {
        assert_eq!(spec.kind as usize, i);
        assert_eq!(spec.kind.spec(), spec);
        assert_eq!(spec.is_control(), spec.template.starts_with("/control/"));
    }
    assert_eq!(
        route("GET", "/api/v10/gateway").unwrap().spec().auth,
        Auth::None
    );
}

#[test]
fn hostile_paths_do_not_panic() {
    for path in [
        "%",
        "/%",
        "/api/v10/%",
        "/api/v10/channels/%",
        "/api/v10/channels/%%%",
        "/api/v10/channels/1/messages/2/reactions/%E2%82/@me",
        "/api/v99999999999999999999999/users/@me",
        &format!("/api/v10/{}", "a/".repeat(10_000)),
        &format!("/api/v10/channels/{}", "9".repeat(100_000)),
    ] {
        assert!(
            route("GET", path).is_err(),
            "{}",
            &path[..path.len().min(40)]
        );
    }
}
