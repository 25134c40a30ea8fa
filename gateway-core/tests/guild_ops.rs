//! Every guild operation: success and refusal, the events it produces (names, audiences, key
//! fields), invites, hierarchy, and the JSON shapes clients need (COMPAT.md).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use gateway_core::gateway::intents;
use gateway_core::guild::json::{channel_json, invite_json, member_json, role_json, user_json};
use gateway_core::guild::limits::{
    CHANNELS_MAX, CHANNELS_PER_CATEGORY_MAX, INVITE_MAX_AGE_S_MAX, INVITE_MAX_USES_MAX,
    OVERWRITES_PER_CHANNEL_MAX, ROLES_MAX,
};
use gateway_core::guild::perms::{self, ALL, VIEW_CHANNEL};
use gateway_core::guild::time::{DISCORD_EPOCH_MS, iso8601};
use gateway_core::guild::{
    Actor, Audience, ChannelKind, ChannelPatch, Guild, GuildCreateOptions, GuildError, GuildEvent,
    GuildPatch, MessageReference, MessageView, NewChannel, NewInvite, NewRole, Overwrite,
    OverwriteKind, RolePatch, UserInfo, invite_code, message_json,
};
use serde_json::{Value, json};

const G: u64 = 100;
const OWNER: u64 = 1;
/// A member holding the "mod" role.
const MOD: u64 = 2;
/// A plain member.
const ALICE: u64 = 3;
/// Another plain member.
const BOB: u64 = 4;
/// Never a member.
const STRANGER: u64 = 99;
const NOW: u64 = 1_795_444_081_123;

/// Ids of the default channels, in creation order.
const TEXT_CAT: u64 = 1_001;
const GENERAL: u64 = 1_002;
const VOICE_CAT: u64 = 1_003;
const VOICE: u64 = 1_004;

/// Roles made by [`setup`].
const ROLE_MOD: u64 = 2_001;
const ROLE_HELPER: u64 = 2_002;

fn new_guild() -> Guild {
    let mut next = 1_000;
    Guild::new(G, "Hearth", UserInfo::new(OWNER, "owner"), NOW, &mut || {
        next += 1;
        next
    })
    .unwrap()
}

/// Owner, MOD (role "mod": kick, ban, manage channels/roles/nicknames, above "helper"),
/// ALICE and BOB with no roles.
fn setup() -> Guild {
    let mut g = new_guild();
    for (id, name) in [(MOD, "mod"), (ALICE, "alice"), (BOB, "bob")] {
        g.add_member(UserInfo::new(id, name), NOW).unwrap();
    }
    let mod_perms = perms::KICK_MEMBERS
        | perms::BAN_MEMBERS
        | perms::MANAGE_CHANNELS
        | perms::MANAGE_ROLES
        | perms::MANAGE_NICKNAMES
        | perms::MUTE_MEMBERS;
    g.create_role(
        OWNER,
        ROLE_HELPER,
        NewRole::new("helper", perms::SEND_MESSAGES),
    )
    .unwrap();
    g.create_role(OWNER, ROLE_MOD, NewRole::new("mod", mod_perms))
        .unwrap();
    g.reorder_roles(OWNER, &[(ROLE_MOD, 3), (ROLE_HELPER, 2)])
        .unwrap();
    g.add_member_role(OWNER, MOD, ROLE_MOD).unwrap();
    g
}

fn names(events: &[GuildEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.name).collect()
}

fn one(events: Vec<GuildEvent>) -> GuildEvent {
    assert_eq!(events.len(), 1, "{:?}", names(&events));
    events.into_iter().next().unwrap()
}

fn missing(bits: u64) -> GuildError {
    GuildError::MissingPermission { missing: bits }
}

// ---------------------------------------------------------------- new guild

#[test]
fn a_new_guild_has_everyone_and_the_default_channels() {
    let g = new_guild();
    assert_eq!(g.id(), G);
    assert_eq!(g.name(), "Hearth");
    assert_eq!(g.owner_id(), OWNER);
    assert_eq!(g.member_count(), 1);
    assert_eq!(g.member(OWNER).unwrap().joined_at_ms, NOW);
    let everyone = g.everyone_role().unwrap();
    assert_eq!((everyone.id, everyone.position), (G, 0));
    assert_eq!(everyone.name, "@everyone");
    assert_eq!(everyone.permissions, perms::DEFAULT_EVERYONE);
    let chans: Vec<_> = g
        .channels()
        .map(|c| (c.id, c.kind, c.name.as_str(), c.parent_id, c.position))
        .collect();
    assert_eq!(
        chans,
        vec![
            (TEXT_CAT, ChannelKind::Category, "Text Channels", None, 0),
            (GENERAL, ChannelKind::Text, "general", Some(TEXT_CAT), 0),
            (VOICE_CAT, ChannelKind::Category, "Voice Channels", None, 1),
            (VOICE, ChannelKind::Voice, "General", Some(VOICE_CAT), 0),
        ]
    );
    assert_eq!(g.channel(VOICE).unwrap().bitrate, 64_000);
    assert_eq!(g.system_channel_id(), Some(GENERAL));
    assert_eq!(g.permissions(OWNER, GENERAL), ALL);
}

#[test]
fn a_guild_name_must_have_two_to_a_hundred_characters() {
    let mut n = 0;
    let mut ids = || {
        n += 1;
        n + 10
    };
    let owner = UserInfo::new(OWNER, "o");
    for bad in ["", "a", &"x".repeat(101)] {
        let err = Guild::new(G, bad, owner.clone(), NOW, &mut ids).unwrap_err();
        assert!(
            matches!(
                err,
                GuildError::InvalidLength {
                    field: "name",
                    min: 2,
                    max: 100,
                    ..
                }
            ),
            "{err:?}"
        );
    }
    // Characters, not bytes: 100 two-byte characters are fine.
    assert!(Guild::new(G, &"é".repeat(100), owner, NOW, &mut ids).is_ok());
}

#[test]
fn a_repeating_id_source_is_refused() {
    let owner = UserInfo::new(OWNER, "o");
    assert_eq!(
        Guild::new(G, "dup", owner.clone(), NOW, &mut || 7).unwrap_err(),
        GuildError::IdTaken(7)
    );
    assert_eq!(
        Guild::new(G, "dup", owner, NOW, &mut || G).unwrap_err(),
        GuildError::IdTaken(G)
    );
}

// ---------------------------------------------------------------- channels

#[test]
fn creating_a_channel_emits_channel_create_to_its_viewers() {
    let mut g = setup();
    let ev = one(g
        .create_channel(MOD, 5_000, NewChannel::text("news").in_category(TEXT_CAT))
        .unwrap());
    assert_eq!(ev.name, "CHANNEL_CREATE");
    assert_eq!(ev.audience, Audience::Channel(5_000));
    assert_eq!(ev.data["id"], "5000");
    assert_eq!(ev.data["guild_id"], "100");
    assert_eq!(ev.data["type"], 0);
    assert_eq!(ev.data["name"], "news");
    assert_eq!(ev.data["parent_id"], TEXT_CAT.to_string());
    // After "general" (position 0) in the same category.
    assert_eq!(ev.data["position"], 1);
    assert_eq!(g.recipients(&ev.audience), vec![OWNER, MOD, ALICE, BOB]);
    let shared = ev.to_shared().unwrap();
    assert_eq!(shared.required_intents(), intents::GUILDS);

    let ev = one(g
        .create_channel(OWNER, 5_001, NewChannel::voice("talk"))
        .unwrap());
    assert_eq!(ev.data["type"], 2);
    assert_eq!(ev.data["bitrate"], 64_000);
    assert_eq!(ev.data["user_limit"], 0);
    assert_eq!(ev.data["rtc_region"], Value::Null);
    assert_eq!(ev.data["parent_id"], Value::Null);
}

#[test]
fn a_private_channel_is_announced_only_to_who_can_see_it() {
    let mut g = setup();
    let spec = NewChannel {
        overwrites: vec![
            Overwrite::role(G, 0, VIEW_CHANNEL),
            Overwrite::member(ALICE, VIEW_CHANNEL, 0),
        ],
        ..NewChannel::text("secret")
    };
    let ev = one(g.create_channel(OWNER, 5_000, spec).unwrap());
    assert_eq!(g.recipients(&ev.audience), vec![OWNER, ALICE]);
    assert_eq!(
        ev.data["permission_overwrites"],
        json!([
            {"id": "100", "type": 0, "allow": "0", "deny": "1024"},
            {"id": "3", "type": 1, "allow": "1024", "deny": "0"},
        ])
    );
    // Overwrites need MANAGE_ROLES on top of MANAGE_CHANNELS; BOB has neither.
    let spec = NewChannel {
        overwrites: vec![Overwrite::role(G, 0, VIEW_CHANNEL)],
        ..NewChannel::text("x")
    };
    assert_eq!(
        g.create_channel(BOB, 5_001, spec),
        Err(missing(perms::MANAGE_CHANNELS | perms::MANAGE_ROLES))
    );
}

#[test]
fn channel_creation_is_validated() {
    let mut g = setup();
    let cases: Vec<(NewChannel, GuildError)> = vec![
        (
            NewChannel::text(""),
            GuildError::InvalidLength {
                field: "name",
                len: 0,
                min: 1,
                max: 100,
            },
        ),
        (
            NewChannel::text(&"n".repeat(101)),
            GuildError::InvalidLength {
                field: "name",
                len: 101,
                min: 1,
                max: 100,
            },
        ),
        (
            NewChannel::text("a").in_category(42),
            GuildError::UnknownChannel(42),
        ),
        (
            NewChannel::text("a").in_category(GENERAL),
            GuildError::InvalidParent(GENERAL),
        ),
        (
            NewChannel::category("c").in_category(TEXT_CAT),
            GuildError::InvalidParent(TEXT_CAT),
        ),
        (
            NewChannel {
                bitrate: Some(64_000),
                ..NewChannel::text("a")
            },
            GuildError::NotForChannelKind { field: "bitrate" },
        ),
        (
            NewChannel {
                topic: Some("t".into()),
                ..NewChannel::voice("v")
            },
            GuildError::NotForChannelKind { field: "topic" },
        ),
        (
            NewChannel {
                bitrate: Some(7_999),
                ..NewChannel::voice("v")
            },
            GuildError::OutOfRange {
                field: "bitrate",
                value: 7_999,
                min: 8_000,
                max: 96_000,
            },
        ),
        (
            NewChannel {
                user_limit: Some(100),
                ..NewChannel::voice("v")
            },
            GuildError::OutOfRange {
                field: "user_limit",
                value: 100,
                min: 0,
                max: 99,
            },
        ),
        (
            NewChannel {
                rate_limit_per_user: 21_601,
                ..NewChannel::text("a")
            },
            GuildError::OutOfRange {
                field: "rate_limit_per_user",
                value: 21_601,
                min: 0,
                max: 21_600,
            },
        ),
        (
            NewChannel {
                overwrites: vec![Overwrite::role(777, 0, 0)],
                ..NewChannel::text("a")
            },
            GuildError::UnknownRole(777),
        ),
        (
            NewChannel {
                overwrites: vec![
                    Overwrite::member(ALICE, 0, 0),
                    Overwrite::member(ALICE, 1, 0),
                ],
                ..NewChannel::text("a")
            },
            GuildError::IdTaken(ALICE),
        ),
        (
            NewChannel {
                overwrites: vec![Overwrite::member(ALICE, 1 << 60, 0)],
                ..NewChannel::text("a")
            },
            GuildError::OutOfRange {
                field: "permission_overwrites",
                value: 1 << 60,
                min: 0,
                max: ALL,
            },
        ),
        (
            NewChannel {
                overwrites: (0..=OVERWRITES_PER_CHANNEL_MAX as u64)
                    .map(|u| Overwrite::member(10_000 + u, 0, 0))
                    .collect(),
                ..NewChannel::text("a")
            },
            GuildError::LimitReached {
                what: "overwrites",
                max: OVERWRITES_PER_CHANNEL_MAX,
            },
        ),
    ];
    let before = g.channels().count();
    for (spec, err) in cases {
        assert_eq!(
            g.create_channel(OWNER, 5_000, spec.clone()),
            Err(err),
            "{spec:?}"
        );
    }
    assert_eq!(
        g.channels().count(),
        before,
        "a refused create changes nothing"
    );
    // Ids must be fresh: not a channel's, a role's or the guild's.
    for taken in [GENERAL, ROLE_MOD, G] {
        assert_eq!(
            g.create_channel(OWNER, taken, NewChannel::text("a")),
            Err(GuildError::IdTaken(taken))
        );
    }
    assert_eq!(
        g.create_channel(ALICE, 5_000, NewChannel::text("a")),
        Err(missing(perms::MANAGE_CHANNELS))
    );
    assert_eq!(
        g.create_channel(STRANGER, 5_000, NewChannel::text("a")),
        Err(GuildError::UnknownMember(STRANGER))
    );
}

#[test]
fn channel_counts_are_limited() {
    let mut g = new_guild();
    for i in 0..CHANNELS_PER_CATEGORY_MAX as u64 - 1 {
        g.create_channel(
            Actor::System,
            10_000 + i,
            NewChannel::text("c").in_category(TEXT_CAT),
        )
        .unwrap();
    }
    assert_eq!(
        g.create_channel(
            Actor::System,
            9_999,
            NewChannel::text("c").in_category(TEXT_CAT)
        ),
        Err(GuildError::LimitReached {
            what: "channels in category",
            max: CHANNELS_PER_CATEGORY_MAX
        })
    );
    let mut id = 20_000;
    while g.channels().count() < CHANNELS_MAX {
        g.create_channel(Actor::System, id, NewChannel::text("c"))
            .unwrap();
        id += 1;
    }
    assert_eq!(
        g.create_channel(Actor::System, id, NewChannel::text("c")),
        Err(GuildError::LimitReached {
            what: "channels",
            max: CHANNELS_MAX
        })
    );
}

#[test]
fn updating_a_channel() {
    let mut g = setup();
    let ev = one(g
        .update_channel(
            MOD,
            GENERAL,
            ChannelPatch {
                name: Some("lobby".into()),
                topic: Some(Some("hello".into())),
                nsfw: Some(true),
                rate_limit_per_user: Some(5),
                ..ChannelPatch::default()
            },
        )
        .unwrap());
    assert_eq!(ev.name, "CHANNEL_UPDATE");
    assert_eq!(ev.audience, Audience::Channel(GENERAL));
    assert_eq!(ev.data["name"], "lobby");
    assert_eq!(ev.data["topic"], "hello");
    assert_eq!(ev.data["nsfw"], true);
    assert_eq!(ev.data["rate_limit_per_user"], 5);
    // The same values again: nothing to say.
    let same = ChannelPatch {
        name: Some("lobby".into()),
        ..ChannelPatch::default()
    };
    assert_eq!(g.update_channel(MOD, GENERAL, same), Ok(vec![]));
    // Clearing the topic, moving out of the category.
    let ev = one(g
        .update_channel(
            OWNER,
            GENERAL,
            ChannelPatch {
                topic: Some(None),
                parent_id: Some(None),
                position: Some(7),
                ..ChannelPatch::default()
            },
        )
        .unwrap());
    assert_eq!(ev.data["topic"], Value::Null);
    assert_eq!(ev.data["parent_id"], Value::Null);
    assert_eq!(ev.data["position"], 7);
    // Voice fields.
    let ev = one(g
        .update_channel(
            OWNER,
            VOICE,
            ChannelPatch {
                bitrate: Some(96_000),
                user_limit: Some(10),
                ..ChannelPatch::default()
            },
        )
        .unwrap());
    assert_eq!(
        (ev.data["bitrate"].clone(), ev.data["user_limit"].clone()),
        (json!(96_000), json!(10))
    );
    // Refusals.
    let bitrate_on_text = ChannelPatch {
        bitrate: Some(64_000),
        ..ChannelPatch::default()
    };
    assert_eq!(
        g.update_channel(OWNER, GENERAL, bitrate_on_text),
        Err(GuildError::NotForChannelKind { field: "bitrate" })
    );
    let limit_on_text = ChannelPatch {
        user_limit: Some(3),
        ..ChannelPatch::default()
    };
    assert_eq!(
        g.update_channel(OWNER, GENERAL, limit_on_text),
        Err(GuildError::NotForChannelKind {
            field: "user_limit"
        })
    );
    let into_voice = ChannelPatch {
        parent_id: Some(Some(VOICE)),
        ..ChannelPatch::default()
    };
    assert_eq!(
        g.update_channel(OWNER, GENERAL, into_voice),
        Err(GuildError::InvalidParent(VOICE))
    );
    assert_eq!(
        g.update_channel(OWNER, 42, ChannelPatch::default()),
        Err(GuildError::UnknownChannel(42))
    );
    assert_eq!(
        g.update_channel(ALICE, GENERAL, ChannelPatch::default()),
        Err(missing(perms::MANAGE_CHANNELS))
    );
}

#[test]
fn changing_overwrites_needs_manage_roles_and_tells_who_lost_the_channel() {
    let mut g = setup();
    // A role that may manage channels but not roles.
    g.create_role(OWNER, 2_010, NewRole::new("chan", perms::MANAGE_CHANNELS))
        .unwrap();
    g.add_member_role(OWNER, BOB, 2_010).unwrap();
    let hide = ChannelPatch {
        overwrites: Some(vec![
            Overwrite::role(G, 0, VIEW_CHANNEL),
            Overwrite::role(ROLE_MOD, VIEW_CHANNEL, 0),
        ]),
        ..ChannelPatch::default()
    };
    assert_eq!(
        g.update_channel(BOB, GENERAL, hide.clone()),
        Err(missing(perms::MANAGE_ROLES))
    );
    assert!(g.can_view(ALICE, GENERAL));
    let gen_before = g.permission_generation();
    let ev = one(g.update_channel(MOD, GENERAL, hide).unwrap());
    assert!(g.permission_generation() > gen_before);
    assert!(!g.can_view(ALICE, GENERAL));
    assert!(g.can_view(MOD, GENERAL));
    // Everyone who saw it before hears of the change (so clients drop it), not only who sees
    // it now.
    assert_eq!(ev.audience, Audience::Users(vec![OWNER, MOD, ALICE, BOB]));
    assert_eq!(g.viewers(GENERAL).collect::<Vec<_>>(), vec![OWNER, MOD]);

    // One overwrite at a time.
    let ev = one(g
        .set_channel_overwrite(MOD, GENERAL, Overwrite::member(ALICE, VIEW_CHANNEL, 0))
        .unwrap());
    assert_eq!(ev.audience, Audience::Users(vec![OWNER, MOD, ALICE]));
    assert!(g.can_view(ALICE, GENERAL));
    // Replacing keeps one entry per target.
    g.set_channel_overwrite(
        MOD,
        GENERAL,
        Overwrite::member(ALICE, VIEW_CHANNEL, perms::SEND_MESSAGES),
    )
    .unwrap();
    assert_eq!(g.channel(GENERAL).unwrap().overwrites.len(), 3);
    assert_eq!(g.permissions(ALICE, GENERAL) & perms::SEND_MESSAGES, 0);
    let ev = one(g
        .delete_channel_overwrite(MOD, GENERAL, OverwriteKind::Member, ALICE)
        .unwrap());
    assert_eq!(ev.name, "CHANNEL_UPDATE");
    assert!(!g.can_view(ALICE, GENERAL));
    assert_eq!(
        g.delete_channel_overwrite(MOD, GENERAL, OverwriteKind::Member, ALICE),
        Ok(vec![])
    );
    assert_eq!(
        g.set_channel_overwrite(
            ALICE,
            VOICE,
            Overwrite::member(ALICE, ALL & !perms::ADMINISTRATOR, 0)
        ),
        Err(missing(perms::MANAGE_ROLES))
    );
    assert_eq!(
        g.set_channel_overwrite(MOD, GENERAL, Overwrite::role(31_337, 0, 0)),
        Err(GuildError::UnknownRole(31_337))
    );
}

#[test]
fn deleting_a_channel() {
    let mut g = setup();
    g.set_channel_overwrite(OWNER, GENERAL, Overwrite::member(BOB, 0, VIEW_CHANNEL))
        .unwrap();
    let (inv, _) = g
        .create_invite(ALICE, GENERAL, NewInvite::default(), 7, NOW)
        .unwrap();
    assert_eq!(
        g.delete_channel(ALICE, GENERAL),
        Err(missing(perms::MANAGE_CHANNELS))
    );
    let events = g.delete_channel(MOD, GENERAL).unwrap();
    assert_eq!(
        names(&events),
        ["CHANNEL_DELETE", "INVITE_DELETE", "GUILD_UPDATE"]
    );
    // Those who could see it, resolved before it vanished.
    assert_eq!(events[0].audience, Audience::Users(vec![OWNER, MOD, ALICE]));
    assert_eq!(events[0].data["id"], GENERAL.to_string());
    assert_eq!(events[1].data["code"], inv.code);
    assert_eq!(events[1].audience, Audience::Users(vec![OWNER, MOD]));
    assert_eq!(events[2].data["system_channel_id"], Value::Null);
    assert_eq!(g.system_channel_id(), None);
    assert!(g.invite(&inv.code).is_none());
    assert!(g.channel(GENERAL).is_none());
    assert_eq!(g.permissions(OWNER, GENERAL), 0);
    assert_eq!(
        g.delete_channel(MOD, GENERAL),
        Err(GuildError::UnknownChannel(GENERAL))
    );

    // A category's children move to the top level.
    let events = g.delete_channel(OWNER, VOICE_CAT).unwrap();
    assert_eq!(names(&events), ["CHANNEL_DELETE", "CHANNEL_UPDATE"]);
    assert_eq!(events[1].data["id"], VOICE.to_string());
    assert_eq!(events[1].data["parent_id"], Value::Null);
    assert_eq!(g.channel(VOICE).unwrap().parent_id, None);
}

#[test]
fn reordering_channels() {
    let mut g = setup();
    let events = g
        .reorder_channels(MOD, &[(GENERAL, 0), (VOICE_CAT, 0), (TEXT_CAT, 1)])
        .unwrap();
    // GENERAL did not move.
    assert_eq!(names(&events), ["CHANNEL_UPDATE", "CHANNEL_UPDATE"]);
    assert_eq!(events[0].data["id"], VOICE_CAT.to_string());
    assert_eq!(events[0].data["position"], 0);
    assert_eq!(events[1].data["position"], 1);
    // All or nothing.
    assert_eq!(
        g.reorder_channels(MOD, &[(VOICE_CAT, 5), (42, 1)]),
        Err(GuildError::UnknownChannel(42))
    );
    assert_eq!(g.channel(VOICE_CAT).unwrap().position, 0);
    assert_eq!(
        g.reorder_channels(ALICE, &[]),
        Err(missing(perms::MANAGE_CHANNELS))
    );
}

#[test]
fn last_message_ids_only_move_forward() {
    let mut g = setup();
    g.note_message(GENERAL, 50).unwrap();
    g.note_message(GENERAL, 40).unwrap();
    assert_eq!(g.channel(GENERAL).unwrap().last_message_id, Some(50));
    assert_eq!(g.channel_json(GENERAL).unwrap()["last_message_id"], "50");
    assert_eq!(g.note_message(42, 1), Err(GuildError::UnknownChannel(42)));
}

// ---------------------------------------------------------------- roles

#[test]
fn creating_roles() {
    let mut g = setup();
    let ev = one(g
        .create_role(
            MOD,
            3_000,
            NewRole {
                color: 0xFF0000,
                hoist: true,
                ..NewRole::new("red", perms::KICK_MEMBERS)
            },
        )
        .unwrap());
    assert_eq!(ev.name, "GUILD_ROLE_CREATE");
    assert_eq!(ev.audience, Audience::Guild);
    assert_eq!(ev.data["guild_id"], "100");
    let role = &ev.data["role"];
    assert_eq!(role["id"], "3000");
    assert_eq!(role["permissions"], "2");
    assert_eq!(role["position"], 1);
    assert_eq!(role["color"], 0xFF0000);
    assert_eq!(role["hoist"], true);
    assert!(role.get("tags").is_none());
    // Only bits one holds may be handed out.
    assert_eq!(
        g.create_role(
            MOD,
            3_001,
            NewRole::new("x", perms::ADMINISTRATOR | perms::KICK_MEMBERS)
        ),
        Err(missing(perms::ADMINISTRATOR))
    );
    assert!(
        g.create_role(OWNER, 3_001, NewRole::new("x", perms::ADMINISTRATOR))
            .is_ok()
    );
    assert_eq!(
        g.create_role(ALICE, 3_002, NewRole::default()),
        Err(missing(perms::MANAGE_ROLES))
    );
    assert_eq!(
        g.create_role(OWNER, 3_002, NewRole::new("", 0)),
        Err(GuildError::InvalidLength {
            field: "name",
            len: 0,
            min: 1,
            max: 100
        })
    );
    assert_eq!(
        g.create_role(
            OWNER,
            3_002,
            NewRole {
                color: 0x100_0000,
                ..NewRole::default()
            }
        ),
        Err(GuildError::OutOfRange {
            field: "color",
            value: 0x100_0000,
            min: 0,
            max: 0xFF_FFFF
        })
    );
    assert_eq!(
        g.create_role(OWNER, ROLE_MOD, NewRole::default()),
        Err(GuildError::IdTaken(ROLE_MOD))
    );
    assert_eq!(
        g.create_role(
            OWNER,
            3_002,
            NewRole {
                managed: true,
                ..NewRole::default()
            }
        ),
        Err(GuildError::ManagedRole(3_002))
    );
    assert!(
        g.create_role(
            Actor::System,
            3_002,
            NewRole {
                managed: true,
                ..NewRole::default()
            }
        )
        .is_ok()
    );
}

#[test]
fn role_count_is_limited() {
    let mut g = new_guild();
    let mut id = 10_000;
    while g.roles().count() < ROLES_MAX {
        g.create_role(OWNER, id, NewRole::default()).unwrap();
        id += 1;
    }
    assert_eq!(
        g.create_role(OWNER, id, NewRole::default()),
        Err(GuildError::LimitReached {
            what: "roles",
            max: ROLES_MAX
        })
    );
}

#[test]
fn updating_roles_follows_the_hierarchy() {
    let mut g = setup();
    // MOD's top role is "mod" (position 3): "helper" (2) is below it, "mod" itself is not.
    let ev = one(g
        .update_role(
            MOD,
            ROLE_HELPER,
            RolePatch {
                name: Some("helpers".into()),
                ..RolePatch::default()
            },
        )
        .unwrap());
    assert_eq!(ev.name, "GUILD_ROLE_UPDATE");
    assert_eq!(ev.data["role"]["name"], "helpers");
    assert_eq!(
        g.update_role(
            MOD,
            ROLE_MOD,
            RolePatch {
                color: Some(1),
                ..RolePatch::default()
            }
        ),
        Err(GuildError::Hierarchy)
    );
    // The owner is above everything.
    assert!(
        g.update_role(
            OWNER,
            ROLE_MOD,
            RolePatch {
                color: Some(1),
                ..RolePatch::default()
            }
        )
        .is_ok()
    );
    // Unchanged: no event.
    assert_eq!(
        g.update_role(
            OWNER,
            ROLE_MOD,
            RolePatch {
                color: Some(1),
                ..RolePatch::default()
            }
        ),
        Ok(vec![])
    );
    // Granting bits one lacks.
    assert_eq!(
        g.update_role(
            MOD,
            ROLE_HELPER,
            RolePatch {
                permissions: Some(perms::MANAGE_GUILD),
                ..RolePatch::default()
            }
        ),
        Err(missing(perms::MANAGE_GUILD))
    );
    // @everyone can be edited (it is below every role) but not renamed.
    assert!(
        g.update_role(
            MOD,
            G,
            RolePatch {
                permissions: Some(perms::VIEW_CHANNEL),
                ..RolePatch::default()
            }
        )
        .is_ok()
    );
    assert_eq!(
        g.update_role(
            MOD,
            G,
            RolePatch {
                name: Some("all".into()),
                ..RolePatch::default()
            }
        ),
        Err(GuildError::EveryoneRole)
    );
    // A member with no role ranks as @everyone: even holding MANAGE_ROLES (through
    // @everyone), no role is below them.
    assert_eq!(
        g.update_role(ALICE, G, RolePatch::default()),
        Err(missing(perms::MANAGE_ROLES))
    );
    let with_manage = RolePatch {
        permissions: Some(perms::VIEW_CHANNEL | perms::MANAGE_ROLES),
        ..RolePatch::default()
    };
    g.update_role(OWNER, G, with_manage).unwrap();
    let rename = RolePatch {
        color: Some(5),
        ..RolePatch::default()
    };
    assert_eq!(
        g.update_role(ALICE, G, rename.clone()),
        Err(GuildError::Hierarchy)
    );
    assert_eq!(
        g.update_role(ALICE, ROLE_HELPER, rename),
        Err(GuildError::Hierarchy)
    );
    assert_eq!(
        g.update_role(OWNER, 42, RolePatch::default()),
        Err(GuildError::UnknownRole(42))
    );
}

#[test]
fn role_permission_changes_reach_cached_permissions() {
    let mut g = setup();
    g.add_member_role(OWNER, ALICE, ROLE_HELPER).unwrap();
    assert_eq!(g.base_permissions(ALICE) & perms::KICK_MEMBERS, 0);
    assert!(g.can_view(ALICE, GENERAL));
    g.update_role(
        OWNER,
        ROLE_HELPER,
        RolePatch {
            permissions: Some(perms::KICK_MEMBERS),
            ..RolePatch::default()
        },
    )
    .unwrap();
    assert_ne!(g.base_permissions(ALICE) & perms::KICK_MEMBERS, 0);
    g.update_role(
        OWNER,
        G,
        RolePatch {
            permissions: Some(0),
            ..RolePatch::default()
        },
    )
    .unwrap();
    assert!(!g.can_view(ALICE, GENERAL));
    assert_eq!(g.viewers(GENERAL).collect::<Vec<_>>(), vec![OWNER]);
    g.update_role(
        OWNER,
        ROLE_HELPER,
        RolePatch {
            permissions: Some(perms::ADMINISTRATOR),
            ..RolePatch::default()
        },
    )
    .unwrap();
    assert_eq!(g.permissions(ALICE, GENERAL), ALL);
}

#[test]
fn deleting_roles() {
    let mut g = setup();
    g.add_member_role(OWNER, ALICE, ROLE_HELPER).unwrap();
    g.set_channel_overwrite(OWNER, GENERAL, Overwrite::role(G, 0, VIEW_CHANNEL))
        .unwrap();
    g.set_channel_overwrite(
        OWNER,
        GENERAL,
        Overwrite::role(ROLE_HELPER, VIEW_CHANNEL, 0),
    )
    .unwrap();
    assert!(g.can_view(ALICE, GENERAL));
    assert_eq!(g.delete_role(MOD, G), Err(GuildError::EveryoneRole));
    assert_eq!(g.delete_role(MOD, ROLE_MOD), Err(GuildError::Hierarchy));
    assert_eq!(
        g.delete_role(ALICE, ROLE_HELPER),
        Err(missing(perms::MANAGE_ROLES))
    );
    assert_eq!(g.delete_role(MOD, 42), Err(GuildError::UnknownRole(42)));
    let events = g.delete_role(MOD, ROLE_HELPER).unwrap();
    assert_eq!(names(&events), ["GUILD_ROLE_DELETE", "CHANNEL_UPDATE"]);
    assert_eq!(
        events[0].data,
        json!({"guild_id": "100", "role_id": "2002"})
    );
    // ALICE saw GENERAL through the role: she is told of the change.
    assert_eq!(events[1].audience, Audience::Users(vec![OWNER, ALICE]));
    assert_eq!(
        events[1].data["permission_overwrites"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(g.member(ALICE).unwrap().roles.is_empty());
    assert!(!g.can_view(ALICE, GENERAL));
    assert!(g.role(ROLE_HELPER).is_none());
    // Managed roles are the integration's.
    g.create_role(
        Actor::System,
        3_000,
        NewRole {
            managed: true,
            ..NewRole::default()
        },
    )
    .unwrap();
    assert_eq!(
        g.delete_role(OWNER, 3_000),
        Err(GuildError::ManagedRole(3_000))
    );
    assert!(g.delete_role(Actor::System, 3_000).is_ok());
}

#[test]
fn reordering_roles() {
    let mut g = setup();
    g.create_role(OWNER, 3_000, NewRole::new("low", 0)).unwrap();
    let events = g
        .reorder_roles(MOD, &[(3_000, 2), (ROLE_HELPER, 1)])
        .unwrap();
    assert_eq!(names(&events), ["GUILD_ROLE_UPDATE", "GUILD_ROLE_UPDATE"]);
    assert_eq!(events[0].data["role"]["id"], "3000");
    assert_eq!(events[0].data["role"]["position"], 2);
    // Not to or above one's own top position, not one's own role, not @everyone, not 0.
    assert_eq!(
        g.reorder_roles(MOD, &[(3_000, 3)]),
        Err(GuildError::Hierarchy)
    );
    assert_eq!(
        g.reorder_roles(MOD, &[(ROLE_MOD, 1)]),
        Err(GuildError::Hierarchy)
    );
    assert_eq!(
        g.reorder_roles(MOD, &[(G, 1)]),
        Err(GuildError::EveryoneRole)
    );
    assert_eq!(
        g.reorder_roles(MOD, &[(3_000, 0)]),
        Err(GuildError::OutOfRange {
            field: "position",
            value: 0,
            min: 1,
            max: u64::from(u32::MAX)
        })
    );
    assert_eq!(
        g.reorder_roles(MOD, &[(42, 1)]),
        Err(GuildError::UnknownRole(42))
    );
    assert_eq!(
        g.reorder_roles(ALICE, &[]),
        Err(missing(perms::MANAGE_ROLES))
    );
    // The owner may put anything anywhere above 0.
    assert_eq!(g.reorder_roles(OWNER, &[(3_000, 10)]).unwrap().len(), 1);
    // Now "low" outranks MOD's top role: MOD may no longer touch it.
    assert_eq!(
        g.update_role(
            MOD,
            3_000,
            RolePatch {
                hoist: Some(true),
                ..RolePatch::default()
            }
        ),
        Err(GuildError::Hierarchy)
    );
}

#[test]
fn equal_positions_rank_the_older_role_higher() {
    let mut g = setup();
    // Both at position 3: ROLE_MOD (2001) is older than 2500, so it ranks higher.
    g.create_role(OWNER, 2_500, NewRole::new("peer", 0))
        .unwrap();
    g.reorder_roles(OWNER, &[(2_500, 3)]).unwrap();
    assert!(
        g.update_role(
            MOD,
            2_500,
            RolePatch {
                hoist: Some(true),
                ..RolePatch::default()
            }
        )
        .is_ok()
    );
    g.add_member_role(OWNER, ALICE, 2_500).unwrap();
    assert!(g.kick(MOD, ALICE).is_ok());
}

// ---------------------------------------------------------------- members

#[test]
fn joining_and_leaving() {
    let mut g = new_guild();
    let ev = one(g
        .add_member(UserInfo::bot(ALICE, "alice"), NOW + 5)
        .unwrap());
    assert_eq!(ev.name, "GUILD_MEMBER_ADD");
    assert_eq!(ev.audience, Audience::Guild);
    assert_eq!(ev.data["guild_id"], "100");
    assert_eq!(ev.data["user"]["id"], "3");
    assert_eq!(ev.data["user"]["bot"], true);
    assert_eq!(ev.data["roles"], json!([]));
    assert_eq!(ev.data["joined_at"], iso8601(NOW + 5));
    assert_eq!(
        ev.to_shared().unwrap().required_intents(),
        intents::GUILD_MEMBERS
    );
    assert_eq!(
        g.add_member(UserInfo::new(ALICE, "alice"), NOW),
        Err(GuildError::AlreadyMember(ALICE))
    );
    assert!(g.can_view(ALICE, GENERAL));

    let events = g.remove_member(ALICE).unwrap();
    assert_eq!(names(&events), ["GUILD_MEMBER_REMOVE", "GUILD_DELETE"]);
    assert_eq!(events[0].audience, Audience::Guild);
    assert_eq!(events[0].data["user"]["id"], "3");
    assert_eq!(events[1].audience, Audience::User(ALICE));
    assert_eq!(events[1].data, json!({"id": "100"}));
    assert!(!g.can_view(ALICE, GENERAL));
    assert_eq!(
        g.remove_member(ALICE),
        Err(GuildError::UnknownMember(ALICE))
    );
    assert_eq!(g.remove_member(OWNER), Err(GuildError::Owner));
}

#[test]
fn kicking() {
    let mut g = setup();
    assert_eq!(g.kick(ALICE, BOB), Err(missing(perms::KICK_MEMBERS)));
    assert_eq!(g.kick(MOD, OWNER), Err(GuildError::Owner));
    assert_eq!(
        g.kick(MOD, STRANGER),
        Err(GuildError::UnknownMember(STRANGER))
    );
    // A second mod at the same rank cannot be kicked by the first.
    g.add_member_role(OWNER, BOB, ROLE_MOD).unwrap();
    assert_eq!(g.kick(MOD, BOB), Err(GuildError::Hierarchy));
    assert_eq!(g.kick(MOD, MOD), Err(GuildError::Hierarchy));
    let events = g.kick(MOD, ALICE).unwrap();
    assert_eq!(names(&events), ["GUILD_MEMBER_REMOVE", "GUILD_DELETE"]);
    assert!(!g.is_member(ALICE));
    // Kicked is not banned: she may come back.
    assert!(g.add_member(UserInfo::new(ALICE, "alice"), NOW).is_ok());
    assert!(g.kick(OWNER, BOB).is_ok());
}

#[test]
fn banning_blocks_rejoining_until_unbanned() {
    let mut g = setup();
    assert_eq!(g.ban(ALICE, BOB, None), Err(missing(perms::BAN_MEMBERS)));
    assert_eq!(g.ban(MOD, OWNER, None), Err(GuildError::Owner));
    assert_eq!(
        g.ban(MOD, ALICE, Some(&"r".repeat(513))),
        Err(GuildError::InvalidLength {
            field: "reason",
            len: 513,
            min: 0,
            max: 512
        })
    );
    let events = g.ban(MOD, ALICE, Some("spam")).unwrap();
    assert_eq!(
        names(&events),
        ["GUILD_BAN_ADD", "GUILD_MEMBER_REMOVE", "GUILD_DELETE"]
    );
    assert_eq!(events[0].data["user"]["id"], "3");
    assert_eq!(events[0].data["guild_id"], "100");
    assert_eq!(
        events[0].audience,
        Audience::Permission {
            channel_id: None,
            permission: perms::BAN_MEMBERS
        }
    );
    assert_eq!(g.recipients(&events[0].audience), vec![OWNER, MOD]);
    assert_eq!(
        events[0].to_shared().unwrap().required_intents(),
        intents::GUILD_MODERATION
    );
    assert_eq!(g.ban_record(ALICE).unwrap().reason.as_deref(), Some("spam"));
    assert!(g.is_banned(ALICE));
    assert!(!g.is_member(ALICE));
    assert_eq!(
        g.add_member(UserInfo::new(ALICE, "alice"), NOW),
        Err(GuildError::Banned(ALICE))
    );
    let (inv, _) = g
        .create_invite(OWNER, GENERAL, NewInvite::default(), 1, NOW)
        .unwrap();
    assert_eq!(
        g.join_via_invite(&inv.code, UserInfo::new(ALICE, "alice"), NOW),
        Err(GuildError::Banned(ALICE))
    );
    assert_eq!(
        g.invite(&inv.code).unwrap().uses,
        0,
        "a refused join uses nothing"
    );

    assert_eq!(g.unban(BOB, ALICE), Err(missing(perms::BAN_MEMBERS)));
    assert_eq!(g.unban(MOD, BOB), Err(GuildError::UnknownBan(BOB)));
    let ev = one(g.unban(MOD, ALICE).unwrap());
    assert_eq!(ev.name, "GUILD_BAN_REMOVE");
    assert_eq!(ev.data["user"]["username"], "alice");
    assert!(
        g.join_via_invite(&inv.code, UserInfo::new(ALICE, "alice"), NOW)
            .is_ok()
    );
    // Only members can be banned here (their user object is what the event carries).
    assert_eq!(
        g.ban(MOD, STRANGER, None),
        Err(GuildError::UnknownMember(STRANGER))
    );
}

#[test]
fn giving_and_taking_roles() {
    let mut g = setup();
    let gen_before = g.permission_generation();
    let ev = one(g.add_member_role(MOD, ALICE, ROLE_HELPER).unwrap());
    assert!(g.permission_generation() > gen_before);
    assert_eq!(ev.name, "GUILD_MEMBER_UPDATE");
    assert_eq!(ev.data["roles"], json!(["2002"]));
    assert_eq!(ev.data["guild_id"], "100");
    assert_eq!(ev.data["user"]["id"], "3");
    assert_eq!(g.add_member_role(MOD, ALICE, ROLE_HELPER), Ok(vec![]));
    assert_eq!(
        g.add_member_role(MOD, ALICE, ROLE_MOD),
        Err(GuildError::Hierarchy)
    );
    assert_eq!(
        g.add_member_role(MOD, ALICE, G),
        Err(GuildError::EveryoneRole)
    );
    assert_eq!(
        g.add_member_role(MOD, ALICE, 42),
        Err(GuildError::UnknownRole(42))
    );
    assert_eq!(
        g.add_member_role(MOD, STRANGER, ROLE_HELPER),
        Err(GuildError::UnknownMember(STRANGER))
    );
    assert_eq!(
        g.add_member_role(BOB, ALICE, ROLE_HELPER),
        Err(missing(perms::MANAGE_ROLES))
    );
    g.create_role(
        Actor::System,
        3_000,
        NewRole {
            managed: true,
            ..NewRole::default()
        },
    )
    .unwrap();
    assert_eq!(
        g.add_member_role(OWNER, ALICE, 3_000),
        Err(GuildError::ManagedRole(3_000))
    );
    assert!(g.add_member_role(Actor::System, ALICE, 3_000).is_ok());

    let ev = one(g.remove_member_role(MOD, ALICE, ROLE_HELPER).unwrap());
    assert_eq!(ev.data["roles"], json!(["3000"]));
    assert_eq!(g.remove_member_role(MOD, ALICE, ROLE_HELPER), Ok(vec![]));
    assert_eq!(
        g.remove_member_role(MOD, MOD, ROLE_MOD),
        Err(GuildError::Hierarchy)
    );
    assert!(g.remove_member_role(OWNER, MOD, ROLE_MOD).is_ok());
    assert_eq!(g.base_permissions(MOD) & perms::KICK_MEMBERS, 0);
}

#[test]
fn nicknames() {
    let mut g = setup();
    // Self, with CHANGE_NICKNAME from @everyone.
    let ev = one(g.set_nick(ALICE, ALICE, Some("Al")).unwrap());
    assert_eq!(ev.name, "GUILD_MEMBER_UPDATE");
    assert_eq!(ev.data["nick"], "Al");
    assert_eq!(g.set_nick(ALICE, ALICE, Some("Al")), Ok(vec![]));
    // Clearing with an empty string or None.
    assert_eq!(
        one(g.set_nick(ALICE, ALICE, Some("")).unwrap()).data["nick"],
        Value::Null
    );
    assert_eq!(
        g.set_nick(ALICE, ALICE, Some(&"n".repeat(33))),
        Err(GuildError::InvalidLength {
            field: "nick",
            len: 33,
            min: 1,
            max: 32
        })
    );
    // Others need MANAGE_NICKNAMES and rank.
    assert_eq!(
        g.set_nick(ALICE, BOB, Some("b")),
        Err(missing(perms::MANAGE_NICKNAMES))
    );
    assert!(g.set_nick(MOD, BOB, Some("b")).is_ok());
    assert_eq!(g.set_nick(MOD, OWNER, Some("boss")), Err(GuildError::Owner));
    assert!(g.set_nick(OWNER, OWNER, Some("boss")).is_ok());
    assert!(g.set_nick(Actor::System, OWNER, None).is_ok());
    assert_eq!(
        g.set_nick(MOD, STRANGER, None),
        Err(GuildError::UnknownMember(STRANGER))
    );
    // Without CHANGE_NICKNAME one's own nick is fixed too.
    g.update_role(
        OWNER,
        G,
        RolePatch {
            permissions: Some(VIEW_CHANNEL),
            ..RolePatch::default()
        },
    )
    .unwrap();
    assert_eq!(
        g.set_nick(ALICE, ALICE, Some("x")),
        Err(missing(perms::CHANGE_NICKNAME))
    );
}

#[test]
fn server_mute_and_deafen() {
    let mut g = setup();
    let ev = one(g
        .set_voice_moderation(MOD, ALICE, Some(true), None)
        .unwrap());
    assert_eq!(
        (ev.data["mute"].clone(), ev.data["deaf"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(
        g.set_voice_moderation(MOD, ALICE, Some(true), None),
        Ok(vec![])
    );
    assert_eq!(
        g.set_voice_moderation(MOD, ALICE, None, Some(true)),
        Err(missing(perms::DEAFEN_MEMBERS))
    );
    assert_eq!(
        g.set_voice_moderation(BOB, ALICE, Some(false), Some(false)),
        Err(missing(perms::MUTE_MEMBERS | perms::DEAFEN_MEMBERS))
    );
    assert!(g.member(ALICE).unwrap().mute);
}

#[test]
fn profile_changes_reach_members() {
    let mut g = setup();
    let mut u = g.member(ALICE).unwrap().user.clone();
    assert!(g.update_user(u.clone()).is_empty());
    u.avatar = Some("abc".into());
    let ev = one(g.update_user(u));
    assert_eq!(ev.data["user"]["avatar"], "abc");
    assert!(g.update_user(UserInfo::new(STRANGER, "x")).is_empty());
}

// ---------------------------------------------------------------- invites

#[test]
fn creating_invites() {
    let mut g = setup();
    let spec = NewInvite {
        max_age_s: 3_600,
        max_uses: 2,
        temporary: true,
    };
    let (inv, events) = g
        .create_invite(ALICE, GENERAL, spec, 0xC0FFEE, NOW)
        .unwrap();
    assert_eq!(inv.code, invite_code(0xC0FFEE));
    assert_eq!(inv.inviter_id, Some(ALICE));
    assert_eq!(inv.expires_at_ms(), Some(NOW + 3_600_000));
    let ev = one(events);
    assert_eq!(ev.name, "INVITE_CREATE");
    assert_eq!(
        ev.audience,
        Audience::Permission {
            channel_id: Some(GENERAL),
            permission: perms::MANAGE_CHANNELS
        }
    );
    assert_eq!(g.recipients(&ev.audience), vec![OWNER, MOD]);
    assert_eq!(ev.data["code"], inv.code);
    assert_eq!(ev.data["channel_id"], GENERAL.to_string());
    assert_eq!(ev.data["guild_id"], "100");
    assert_eq!(ev.data["max_age"], 3_600);
    assert_eq!(ev.data["max_uses"], 2);
    assert_eq!(ev.data["uses"], 0);
    assert_eq!(ev.data["temporary"], true);
    assert_eq!(ev.data["inviter"]["id"], "3");
    assert_eq!(ev.data["created_at"], iso8601(NOW));
    assert_eq!(ev.data["expires_at"], iso8601(NOW + 3_600_000));
    assert_eq!(
        ev.to_shared().unwrap().required_intents(),
        intents::GUILD_INVITES
    );

    // The same seed again: a derived code, not a clash.
    let (again, _) = g
        .create_invite(ALICE, GENERAL, spec, 0xC0FFEE, NOW)
        .unwrap();
    assert_ne!(again.code, inv.code);
    // The system makes invites with no inviter.
    let (sys, ev) = g
        .create_invite(Actor::System, VOICE, NewInvite::default(), 5, NOW)
        .unwrap();
    assert_eq!(sys.inviter_id, None);
    assert!(ev[0].data.get("inviter").is_none());
    assert_eq!(sys.max_age_s, 86_400);

    assert_eq!(
        g.create_invite(ALICE, TEXT_CAT, spec, 1, NOW),
        Err(GuildError::NotForChannelKind {
            field: "channel_id"
        })
    );
    assert_eq!(
        g.create_invite(ALICE, 42, spec, 1, NOW),
        Err(GuildError::UnknownChannel(42))
    );
    assert_eq!(
        g.create_invite(STRANGER, GENERAL, spec, 1, NOW),
        Err(GuildError::UnknownMember(STRANGER))
    );
    let too_old = NewInvite {
        max_age_s: INVITE_MAX_AGE_S_MAX + 1,
        ..spec
    };
    assert!(matches!(
        g.create_invite(ALICE, GENERAL, too_old, 1, NOW),
        Err(GuildError::OutOfRange {
            field: "max_age",
            ..
        })
    ));
    let too_many = NewInvite {
        max_uses: INVITE_MAX_USES_MAX + 1,
        ..spec
    };
    assert!(matches!(
        g.create_invite(ALICE, GENERAL, too_many, 1, NOW),
        Err(GuildError::OutOfRange {
            field: "max_uses",
            ..
        })
    ));
    g.set_channel_overwrite(
        OWNER,
        GENERAL,
        Overwrite::member(BOB, 0, perms::CREATE_INSTANT_INVITE),
    )
    .unwrap();
    assert_eq!(
        g.create_invite(BOB, GENERAL, spec, 1, NOW),
        Err(missing(perms::CREATE_INSTANT_INVITE))
    );
}

#[test]
fn joining_through_invites_counts_uses_and_honours_expiry() {
    let mut g = setup();
    let spec = NewInvite {
        max_age_s: 60,
        max_uses: 2,
        temporary: false,
    };
    let (inv, _) = g.create_invite(OWNER, GENERAL, spec, 9, NOW).unwrap();
    let ev = one(g
        .join_via_invite(&inv.code, UserInfo::new(10, "a"), NOW + 1)
        .unwrap());
    assert_eq!(ev.name, "GUILD_MEMBER_ADD");
    assert_eq!(ev.data["user"]["id"], "10");
    assert_eq!(g.invite(&inv.code).unwrap().uses, 1);
    assert_eq!(
        g.join_via_invite(&inv.code, UserInfo::new(10, "a"), NOW + 2),
        Err(GuildError::AlreadyMember(10))
    );
    assert_eq!(g.invite(&inv.code).unwrap().uses, 1);
    // The last millisecond of its life still works.
    assert!(
        g.join_via_invite(&inv.code, UserInfo::new(11, "b"), NOW + 59_999)
            .is_ok()
    );
    assert_eq!(
        g.join_via_invite(&inv.code, UserInfo::new(12, "c"), NOW + 1_000),
        Err(GuildError::InviteExhausted)
    );
    let (inv2, _) = g.create_invite(OWNER, GENERAL, spec, 10, NOW).unwrap();
    assert_eq!(
        g.join_via_invite(&inv2.code, UserInfo::new(12, "c"), NOW + 60_000),
        Err(GuildError::InviteExpired)
    );
    assert_eq!(
        g.join_via_invite("nope", UserInfo::new(12, "c"), NOW),
        Err(GuildError::UnknownInvite)
    );
    // Unlimited and permanent.
    let forever = NewInvite {
        max_age_s: 0,
        max_uses: 0,
        temporary: false,
    };
    let (inv3, _) = g.create_invite(OWNER, GENERAL, forever, 11, NOW).unwrap();
    assert_eq!(inv3.expires_at_ms(), None);
    for u in 20..40 {
        g.join_via_invite(&inv3.code, UserInfo::new(u, "m"), u64::MAX)
            .unwrap();
    }
    assert_eq!(g.invite(&inv3.code).unwrap().uses, 20);

    // Pruning drops the used-up and the expired, and says so.
    let events = g.prune_invites(NOW + 60_000);
    assert_eq!(names(&events), ["INVITE_DELETE", "INVITE_DELETE"]);
    let mut codes: Vec<_> = events
        .iter()
        .map(|e| e.data["code"].as_str().unwrap().to_owned())
        .collect();
    codes.sort();
    let mut want = vec![inv.code.clone(), inv2.code.clone()];
    want.sort();
    assert_eq!(codes, want);
    assert_eq!(g.invites().count(), 1);
}

#[test]
fn deleting_invites() {
    let mut g = setup();
    let (inv, _) = g
        .create_invite(ALICE, GENERAL, NewInvite::default(), 3, NOW)
        .unwrap();
    assert_eq!(
        g.delete_invite(ALICE, &inv.code),
        Err(missing(perms::MANAGE_GUILD))
    );
    let ev = one(g.delete_invite(MOD, &inv.code).unwrap());
    assert_eq!(ev.name, "INVITE_DELETE");
    assert_eq!(
        ev.data,
        json!({"channel_id": GENERAL.to_string(), "guild_id": "100", "code": inv.code})
    );
    assert_eq!(
        g.delete_invite(MOD, &inv.code),
        Err(GuildError::UnknownInvite)
    );
    // MANAGE_GUILD without MANAGE_CHANNELS is enough too.
    let (inv, _) = g
        .create_invite(ALICE, GENERAL, NewInvite::default(), 4, NOW)
        .unwrap();
    g.create_role(OWNER, 3_000, NewRole::new("admin-ish", perms::MANAGE_GUILD))
        .unwrap();
    g.add_member_role(OWNER, BOB, 3_000).unwrap();
    assert!(g.delete_invite(BOB, &inv.code).is_ok());
}

#[test]
fn invite_objects_have_their_metadata() {
    let mut g = setup();
    let (inv, _) = g
        .create_invite(ALICE, GENERAL, NewInvite::default(), 3, NOW)
        .unwrap();
    let v = invite_json(&g, &inv);
    assert_eq!(v["code"], inv.code);
    assert_eq!(v["guild"]["id"], "100");
    assert_eq!(v["guild"]["name"], "Hearth");
    assert_eq!(v["channel"]["id"], GENERAL.to_string());
    assert_eq!(v["channel"]["type"], 0);
    assert_eq!(v["inviter"]["id"], "3");
    assert_eq!(v["max_age"], 86_400);
    assert_eq!(v["uses"], 0);
    assert_eq!(v["expires_at"], iso8601(NOW + 86_400_000));
}

// ---------------------------------------------------------------- guild settings

#[test]
fn updating_the_guild() {
    let mut g = setup();
    assert_eq!(
        g.update_guild(
            MOD,
            GuildPatch {
                name: Some("x y".into()),
                ..GuildPatch::default()
            }
        ),
        Err(missing(perms::MANAGE_GUILD))
    );
    let ev = one(g
        .update_guild(
            OWNER,
            GuildPatch {
                name: Some("Hearth 2".into()),
                description: Some(Some("warm".into())),
                afk_channel_id: Some(Some(VOICE)),
                afk_timeout_s: Some(900),
                verification_level: Some(2),
                ..GuildPatch::default()
            },
        )
        .unwrap());
    assert_eq!(ev.name, "GUILD_UPDATE");
    assert_eq!(ev.audience, Audience::Guild);
    assert_eq!(ev.data["name"], "Hearth 2");
    assert_eq!(ev.data["description"], "warm");
    assert_eq!(ev.data["afk_channel_id"], VOICE.to_string());
    assert_eq!(ev.data["afk_timeout"], 900);
    assert_eq!(ev.data["verification_level"], 2);
    assert!(
        ev.data.get("members").is_none(),
        "GUILD_UPDATE is not GUILD_CREATE"
    );
    assert_eq!(g.name(), "Hearth 2");
    assert_eq!(
        g.update_guild(
            OWNER,
            GuildPatch {
                name: Some("Hearth 2".into()),
                ..GuildPatch::default()
            }
        ),
        Ok(vec![])
    );
    let refusals = [
        (
            GuildPatch {
                afk_channel_id: Some(Some(GENERAL)),
                ..GuildPatch::default()
            },
            GuildError::NotForChannelKind {
                field: "afk_channel_id",
            },
        ),
        (
            GuildPatch {
                system_channel_id: Some(Some(VOICE)),
                ..GuildPatch::default()
            },
            GuildError::NotForChannelKind {
                field: "system_channel_id",
            },
        ),
        (
            GuildPatch {
                system_channel_id: Some(Some(42)),
                ..GuildPatch::default()
            },
            GuildError::UnknownChannel(42),
        ),
        (
            GuildPatch {
                afk_timeout_s: Some(61),
                ..GuildPatch::default()
            },
            GuildError::OutOfRange {
                field: "afk_timeout",
                value: 61,
                min: 60,
                max: 3_600,
            },
        ),
        (
            GuildPatch {
                verification_level: Some(5),
                ..GuildPatch::default()
            },
            GuildError::OutOfRange {
                field: "verification_level",
                value: 5,
                min: 0,
                max: 4,
            },
        ),
        (
            GuildPatch {
                name: Some("x".into()),
                ..GuildPatch::default()
            },
            GuildError::InvalidLength {
                field: "name",
                len: 1,
                min: 2,
                max: 100,
            },
        ),
    ];
    for (patch, err) in refusals {
        assert_eq!(g.update_guild(OWNER, patch), Err(err));
    }
}

#[test]
fn transferring_ownership() {
    let mut g = setup();
    assert_eq!(g.transfer_ownership(MOD, ALICE), Err(GuildError::NotOwner));
    assert_eq!(
        g.transfer_ownership(OWNER, STRANGER),
        Err(GuildError::UnknownMember(STRANGER))
    );
    assert_eq!(g.transfer_ownership(OWNER, OWNER), Ok(vec![]));
    assert_eq!(g.permissions(ALICE, GENERAL) & perms::MANAGE_GUILD, 0);
    let ev = one(g.transfer_ownership(OWNER, ALICE).unwrap());
    assert_eq!(ev.name, "GUILD_UPDATE");
    assert_eq!(ev.data["owner_id"], "3");
    assert_eq!(g.owner_id(), ALICE);
    assert_eq!(g.permissions(ALICE, GENERAL), ALL);
    assert_ne!(g.permissions(OWNER, GENERAL), ALL);
    // The old owner can now be kicked by the new one, and the new one cannot leave.
    assert!(g.kick(ALICE, OWNER).is_ok());
    assert_eq!(g.remove_member(ALICE), Err(GuildError::Owner));
}

#[test]
fn errors_map_to_discord_codes() {
    assert_eq!(GuildError::UnknownChannel(1).discord_code(), 10003);
    assert_eq!(GuildError::UnknownChannel(1).http_status(), 404);
    assert_eq!(missing(1).discord_code(), 50013);
    assert_eq!(missing(1).http_status(), 403);
    assert_eq!(GuildError::Hierarchy.http_status(), 403);
    assert_eq!(GuildError::Banned(1).discord_code(), 40007);
    assert_eq!(
        GuildError::LimitReached {
            what: "roles",
            max: 250
        }
        .discord_code(),
        30005
    );
    assert_eq!(GuildError::InviteExpired.discord_code(), 10006);
    assert_eq!(
        GuildError::InvalidLength {
            field: "name",
            len: 0,
            min: 1,
            max: 2
        }
        .http_status(),
        400
    );
}

// ---------------------------------------------------------------- JSON shapes

const GUILD_KEYS: &[&str] = &[
    "id",
    "name",
    "icon",
    "icon_hash",
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
    "max_members",
    "vanity_url_code",
    "description",
    "banner",
    "premium_tier",
    "premium_subscription_count",
    "preferred_locale",
    "public_updates_channel_id",
    "nsfw_level",
    "stickers",
    "premium_progress_bar_enabled",
    "safety_alerts_channel_id",
];

const GUILD_CREATE_KEYS: &[&str] = &[
    "joined_at",
    "large",
    "unavailable",
    "member_count",
    "voice_states",
    "members",
    "channels",
    "threads",
    "presences",
    "stage_instances",
    "guild_scheduled_events",
];

const ROLE_KEYS: &[&str] = &[
    "id",
    "name",
    "color",
    "hoist",
    "icon",
    "unicode_emoji",
    "position",
    "permissions",
    "managed",
    "mentionable",
    "flags",
];

const MEMBER_KEYS: &[&str] = &[
    "user",
    "nick",
    "avatar",
    "roles",
    "joined_at",
    "premium_since",
    "deaf",
    "mute",
    "flags",
    "pending",
];

const USER_KEYS: &[&str] = &["id", "username", "discriminator", "global_name", "avatar"];

const CHANNEL_KEYS: &[&str] = &[
    "id",
    "type",
    "guild_id",
    "position",
    "permission_overwrites",
    "name",
    "nsfw",
    "parent_id",
    "flags",
];

fn assert_keys(v: &Value, keys: &[&str], what: &str) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not an object: {v}"));
    for k in keys {
        assert!(obj.contains_key(*k), "{what} lacks {k}: {v}");
    }
}

fn assert_snowflake(v: &Value, what: &str) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    assert!(s.parse::<u64>().is_ok(), "{what} is not a snowflake: {s}");
}

fn assert_iso8601(v: &Value, what: &str) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    // 2026-11-23T14:28:01.123000+00:00
    assert_eq!(s.len(), 32, "{what}: {s}");
    assert!(
        s.ends_with("+00:00") && s.as_bytes()[10] == b'T',
        "{what}: {s}"
    );
}

#[test]
fn guild_create_has_the_full_v10_shape() {
    let mut g = setup();
    g.set_channel_overwrite(
        OWNER,
        GENERAL,
        Overwrite::role(ROLE_MOD, VIEW_CHANNEL, perms::SEND_MESSAGES),
    )
    .unwrap();
    g.create_channel(
        OWNER,
        5_000,
        NewChannel::new(ChannelKind::Announcement, "news"),
    )
    .unwrap();
    g.set_nick(OWNER, ALICE, Some("Al")).unwrap();
    let presences = [json!({"user": {"id": "3"}, "status": "online"})];
    let opts = GuildCreateOptions {
        user_id: Some(ALICE),
        presences: &presences,
        ..GuildCreateOptions::default()
    };
    let v = g.to_guild_create(&opts);

    assert_keys(&v, GUILD_KEYS, "guild");
    assert_keys(&v, GUILD_CREATE_KEYS, "GUILD_CREATE");
    for k in ["id", "owner_id", "system_channel_id"] {
        assert_snowflake(&v[k], k);
    }
    assert_eq!(v["id"], "100");
    assert_eq!(v["owner_id"], "1");
    assert_eq!(v["unavailable"], false);
    assert_eq!(v["large"], false);
    assert_eq!(v["member_count"], 4);
    assert_eq!(v["preferred_locale"], "en-US");
    assert_eq!(v["premium_tier"], 0);
    assert_eq!(v["application_id"], Value::Null);
    assert_eq!(v["presences"], json!(presences));
    assert_eq!(v["joined_at"], iso8601(NOW));
    for empty in [
        "emojis",
        "features",
        "stickers",
        "threads",
        "voice_states",
        "stage_instances",
        "guild_scheduled_events",
    ] {
        assert_eq!(v[empty], json!([]), "{empty}");
    }

    let roles = v["roles"].as_array().unwrap();
    assert_eq!(roles.len(), 3);
    for r in roles {
        assert_keys(r, ROLE_KEYS, "role");
        assert_snowflake(&r["id"], "role id");
        let p = r["permissions"].as_str().expect("permissions is a string");
        assert!(p.parse::<u64>().is_ok());
        assert!(r.get("tags").is_none());
        assert_eq!(r["icon"], Value::Null);
        assert_eq!(r["unicode_emoji"], Value::Null);
    }
    let everyone = roles.iter().find(|r| r["id"] == "100").unwrap();
    assert_eq!(everyone["position"], 0);
    assert_eq!(everyone["permissions"], perms::DEFAULT_EVERYONE.to_string());

    let channels = v["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 5);
    for c in channels {
        assert_keys(c, CHANNEL_KEYS, "channel");
        assert_snowflake(&c["id"], "channel id");
        assert_eq!(c["guild_id"], "100");
        if !c["parent_id"].is_null() {
            assert_snowflake(&c["parent_id"], "parent_id");
        }
        for o in c["permission_overwrites"].as_array().unwrap() {
            assert_keys(o, &["id", "type", "allow", "deny"], "overwrite");
            assert_snowflake(&o["id"], "overwrite id");
            assert!(o["allow"].as_str().unwrap().parse::<u64>().is_ok());
            assert!(o["deny"].as_str().unwrap().parse::<u64>().is_ok());
        }
        match c["type"].as_u64().unwrap() {
            0 | 5 => assert_keys(
                c,
                &["topic", "last_message_id", "rate_limit_per_user"],
                "text channel",
            ),
            2 => {
                assert_keys(
                    c,
                    &[
                        "bitrate",
                        "user_limit",
                        "rtc_region",
                        "last_message_id",
                        "rate_limit_per_user",
                    ],
                    "voice channel",
                );
                assert_eq!(c["rtc_region"], Value::Null);
            }
            4 => assert!(c.get("bitrate").is_none()),
            t => panic!("unexpected channel type {t}"),
        }
    }
    let general = channels.iter().find(|c| c["id"] == "1002").unwrap();
    assert_eq!(
        general["permission_overwrites"],
        json!([{"id": "2001", "type": 0, "allow": "1024", "deny": "2048"}])
    );
    assert!(channels.iter().any(|c| c["type"] == 5));

    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 4);
    for m in members {
        assert_keys(m, MEMBER_KEYS, "member");
        assert_keys(&m["user"], USER_KEYS, "user");
        assert_snowflake(&m["user"]["id"], "user id");
        assert_iso8601(&m["joined_at"], "joined_at");
        for r in m["roles"].as_array().unwrap() {
            assert_snowflake(r, "member role");
        }
        assert_eq!(m["pending"], false);
        assert_eq!(m["premium_since"], Value::Null);
        assert_eq!(m["avatar"], Value::Null);
    }
    let modm = members.iter().find(|m| m["user"]["id"] == "2").unwrap();
    assert_eq!(modm["roles"], json!(["2001"]));
    let alice = members.iter().find(|m| m["user"]["id"] == "3").unwrap();
    assert_eq!(alice["nick"], "Al");
    // Valid JSON all the way down.
    let text = serde_json::to_string(&v).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
}

#[test]
fn large_guilds_list_only_the_receiving_member() {
    let mut g = setup();
    for u in 10..60 {
        g.add_member(UserInfo::new(u, "m"), NOW + u).unwrap();
    }
    assert_eq!(g.member_count(), 54);
    let v = g.to_guild_create(&GuildCreateOptions::for_user(30, 50));
    assert_eq!(v["large"], true);
    assert_eq!(v["member_count"], 54);
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["user"]["id"], "30");
    // joined_at is the receiving user's.
    assert_eq!(v["joined_at"], iso8601(NOW + 30));
    // Nobody in particular: no members at all.
    let v = g.to_guild_create(&GuildCreateOptions {
        large_threshold: 50,
        ..GuildCreateOptions::default()
    });
    assert_eq!(v["members"], json!([]));
    assert_eq!(v["joined_at"], iso8601(NOW));
    // A higher threshold lists everyone.
    let v = g.to_guild_create(&GuildCreateOptions::for_user(30, 250));
    assert_eq!(v["large"], false);
    assert_eq!(v["members"].as_array().unwrap().len(), 54);
}

#[test]
fn object_helpers() {
    let g = setup();
    let u = UserInfo {
        global_name: Some("Alice".into()),
        avatar: Some("a_1".into()),
        ..UserInfo::new(7, "alice")
    };
    let v = user_json(&u);
    assert_keys(&v, USER_KEYS, "user");
    assert_eq!(v["id"], "7");
    assert_eq!(v["discriminator"], "0");
    assert_eq!(v["global_name"], "Alice");
    assert_eq!(v["bot"], false);
    assert_eq!(user_json(&UserInfo::bot(8, "b"))["discriminator"], "0000");

    let r = role_json(g.role(ROLE_MOD).unwrap());
    assert_eq!(r["position"], 3);
    assert_eq!(r["name"], "mod");
    let m = member_json(g.member(MOD).unwrap());
    assert_eq!(m["roles"], json!(["2001"]));
    assert_eq!(g.member_json(MOD).unwrap(), m);
    assert!(g.member_json(STRANGER).is_none());
    let c = channel_json(G, g.channel(VOICE).unwrap());
    assert_eq!(c["type"], 2);
    assert_eq!(c["parent_id"], VOICE_CAT.to_string());
    assert_eq!(g.channel_json(VOICE), Some(c));
    let gj = g.to_guild_json();
    assert_keys(&gj, GUILD_KEYS, "guild");
    assert!(gj.get("members").is_none());
}

#[test]
fn message_create_shape() {
    let g = setup();
    let author = g.member(ALICE).unwrap();
    // A snowflake made 1000 ms after the Discord epoch.
    let id = (1_000u64 << 22) | 7;
    let mentioned = [UserInfo::new(BOB, "bob")];
    let roles = [ROLE_MOD];
    let nonce = json!("n-1");
    let referenced = json!({"id": "5", "content": "earlier"});
    let reactions = [json!({"count": 1, "me": false, "emoji": {"id": null, "name": "👍"}})];
    let msg = MessageView {
        member: Some(author),
        mentions: &mentioned,
        mention_roles: &roles,
        nonce: Some(&nonce),
        message_reference: Some(MessageReference {
            message_id: 5,
            channel_id: GENERAL,
            guild_id: Some(G),
        }),
        referenced_message: Some(&referenced),
        reactions: &reactions,
        kind: 19,
        edited_at_ms: Some(DISCORD_EPOCH_MS + 2_000),
        ..MessageView::new(id, GENERAL, Some(G), &author.user, "hi @bob")
    };
    let v = message_json(&msg);
    assert_keys(
        &v,
        &[
            "id",
            "channel_id",
            "guild_id",
            "type",
            "content",
            "author",
            "member",
            "mentions",
            "mention_roles",
            "mention_everyone",
            "attachments",
            "embeds",
            "pinned",
            "tts",
            "timestamp",
            "edited_timestamp",
            "flags",
            "nonce",
        ],
        "message",
    );
    assert_eq!(v["id"], id.to_string());
    assert_eq!(v["channel_id"], GENERAL.to_string());
    assert_eq!(v["guild_id"], "100");
    assert_eq!(v["type"], 19);
    assert_eq!(v["content"], "hi @bob");
    assert_eq!(v["author"]["id"], "3");
    assert!(
        v["member"].get("user").is_none(),
        "the message's member has no user"
    );
    assert_eq!(v["member"]["joined_at"], iso8601(NOW));
    assert_eq!(v["mentions"][0]["id"], "4");
    assert_eq!(v["mention_roles"], json!(["2001"]));
    assert_eq!(v["mention_everyone"], false);
    assert_eq!(v["timestamp"], "2015-01-01T00:00:01.000000+00:00");
    assert_eq!(v["edited_timestamp"], "2015-01-01T00:00:02.000000+00:00");
    assert_eq!(v["nonce"], "n-1");
    assert_eq!(v["message_reference"]["message_id"], "5");
    assert_eq!(v["message_reference"]["guild_id"], "100");
    assert_eq!(v["referenced_message"], referenced);
    assert_eq!(v["reactions"][0]["count"], 1);

    // A plain DM message: no guild, no member, no reply, no reactions.
    let plain = message_json(&MessageView::new(id, 9, None, &author.user, "yo"));
    for absent in [
        "guild_id",
        "member",
        "message_reference",
        "referenced_message",
        "reactions",
        "nonce",
    ] {
        assert!(plain.get(absent).is_none(), "{absent}");
    }
    assert_eq!(plain["edited_timestamp"], Value::Null);
    assert_eq!(plain["attachments"], json!([]));
    assert_eq!(plain["embeds"], json!([]));
    assert_eq!(plain["pinned"], false);
    assert_eq!(plain["tts"], false);
}
