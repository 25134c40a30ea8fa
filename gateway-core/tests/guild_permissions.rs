//! `Guild::permissions` against a plain reference model on 160,000 random guild states: 40,000
//! random guilds (roles, members, role grants, overwrites on every channel), each checked
//! then mutated three times and checked again, so a stale permission cache shows up as a
//! mismatch. Every state compares every (member or stranger, channel or unknown channel) pair,
//! over a million comparisons in all.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use gateway_core::guild::perms::{self, ADMINISTRATOR, ALL, VIEW_CHANNEL};
use gateway_core::guild::{
    Actor, Audience, ChannelPatch, Guild, NewChannel, NewRole, Overwrite, OverwriteKind, RolePatch,
    UserInfo,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

const SEED: u64 = 0x4845_4152_5448_0005;
const GUILDS: usize = 40_000;
const MUTATIONS_PER_GUILD: usize = 3;
// At least 100,000 random guild states are compared.
const _: () = assert!(GUILDS * (1 + MUTATIONS_PER_GUILD) >= 100_000);
const GUILD_ID: u64 = 1_000;
const OWNER: u64 = 10;
/// A user id that is never a member.
const STRANGER: u64 = 99;
/// A channel id that never exists.
const NO_CHANNEL: u64 = 9_999;

/// The reference: the rules of DESIGN.md written out step by step, nothing cached.
#[derive(Debug, Clone)]
struct Model {
    owner: u64,
    everyone: u64,
    roles: BTreeMap<u64, u64>,
    members: BTreeMap<u64, Vec<u64>>,
    channels: BTreeMap<u64, Vec<Overwrite>>,
}

impl Model {
    fn permissions(&self, user: u64, channel: u64) -> u64 {
        let Some(member_roles) = self.members.get(&user) else {
            return 0;
        };
        let Some(overwrites) = self.channels.get(&channel) else {
            return 0;
        };
        if user == self.owner {
            return ALL;
        }
        let base = self.base(user);
        if base & ADMINISTRATOR != 0 {
            return ALL;
        }
        let mut p = base;
        // 1. the @everyone overwrite
        for o in overwrites {
            if o.kind == OverwriteKind::Role && o.id == GUILD_ID {
                p &= !o.deny;
                p |= o.allow;
            }
        }
        // 2. the member's roles' overwrites, all together
        let mut allow = 0;
        let mut deny = 0;
        for o in overwrites {
            if o.kind == OverwriteKind::Role && member_roles.contains(&o.id) {
                allow |= o.allow;
                deny |= o.deny;
            }
        }
        p &= !deny;
        p |= allow;
        // 3. the member's own overwrite
        for o in overwrites {
            if o.kind == OverwriteKind::Member && o.id == user {
                p &= !o.deny;
                p |= o.allow;
            }
        }
        if p & VIEW_CHANNEL == 0 { 0 } else { p }
    }

    fn base(&self, user: u64) -> u64 {
        let Some(member_roles) = self.members.get(&user) else {
            return 0;
        };
        if user == self.owner {
            return ALL;
        }
        let mut p = self.everyone;
        for r in member_roles {
            p |= self.roles[r];
        }
        if p & ADMINISTRATOR != 0 { ALL } else { p }
    }
}

/// Mostly the bits that matter for visibility and messaging, sometimes anything, rarely
/// ADMINISTRATOR.
fn bits(rng: &mut ChaCha8Rng) -> u64 {
    const INTERESTING: [u64; 8] = [
        VIEW_CHANNEL,
        perms::SEND_MESSAGES,
        perms::MANAGE_MESSAGES,
        perms::READ_MESSAGE_HISTORY,
        perms::CONNECT,
        perms::SPEAK,
        perms::MANAGE_ROLES,
        perms::KICK_MEMBERS,
    ];
    let mut b = 0;
    for bit in INTERESTING {
        if rng.random_bool(0.4) {
            b |= bit;
        }
    }
    if rng.random_bool(0.15) {
        b |= rng.random::<u64>() & ALL & !ADMINISTRATOR;
    }
    if rng.random_bool(0.04) {
        b |= ADMINISTRATOR;
    }
    b
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> Option<T> {
    (!items.is_empty()).then(|| items[rng.random_range(0..items.len())])
}

struct Case {
    guild: Guild,
    model: Model,
    next_id: u64,
    next_user: u64,
}

impl Case {
    fn build(rng: &mut ChaCha8Rng) -> Self {
        let mut next_id = 3_000;
        let guild = Guild::new(
            GUILD_ID,
            "prop",
            UserInfo::new(OWNER, "owner"),
            0,
            &mut || {
                next_id += 1;
                next_id
            },
        )
        .unwrap();
        let model = Model {
            owner: OWNER,
            everyone: guild.everyone_role().unwrap().permissions,
            roles: BTreeMap::new(),
            members: BTreeMap::from([(OWNER, Vec::new())]),
            channels: guild.channels().map(|c| (c.id, Vec::new())).collect(),
        };
        let mut case = Self {
            guild,
            model,
            next_id: next_id + 1,
            next_user: OWNER + 1,
        };
        let everyone = bits(rng);
        case.guild
            .update_role(
                Actor::System,
                GUILD_ID,
                RolePatch {
                    permissions: Some(everyone),
                    ..RolePatch::default()
                },
            )
            .unwrap();
        case.model.everyone = everyone;
        for _ in 0..rng.random_range(0..4) {
            case.create_role(rng);
        }
        for _ in 0..rng.random_range(0..5) {
            case.add_member();
        }
        if rng.random_bool(0.3) {
            let id = case.fresh_id();
            case.guild
                .create_channel(Actor::System, id, NewChannel::text("extra"))
                .unwrap();
            case.model.channels.insert(id, Vec::new());
        }
        let members: Vec<u64> = case.model.members.keys().copied().collect();
        let roles: Vec<u64> = case.model.roles.keys().copied().collect();
        for &m in &members {
            for &r in &roles {
                if rng.random_bool(0.4) {
                    case.guild.add_member_role(Actor::System, m, r).unwrap();
                    case.model.members.get_mut(&m).unwrap().push(r);
                }
            }
        }
        // All of a channel's overwrites in one update, as a client's channel edit sends them.
        let channels: Vec<u64> = case.model.channels.keys().copied().collect();
        for c in channels {
            let mut list: Vec<Overwrite> = Vec::new();
            for _ in 0..rng.random_range(0..5) {
                let ow = case.random_overwrite(rng);
                if !list.iter().any(|o| o.kind == ow.kind && o.id == ow.id) {
                    list.push(ow);
                }
            }
            case.guild
                .update_channel(
                    Actor::System,
                    c,
                    ChannelPatch {
                        overwrites: Some(list.clone()),
                        ..ChannelPatch::default()
                    },
                )
                .unwrap();
            case.model.channels.insert(c, list);
        }
        case
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn create_role(&mut self, rng: &mut ChaCha8Rng) {
        let id = self.fresh_id();
        let p = bits(rng);
        self.guild
            .create_role(Actor::System, id, NewRole::new("r", p))
            .unwrap();
        self.model.roles.insert(id, p);
    }

    fn add_member(&mut self) {
        let uid = self.next_user;
        self.next_user += 1;
        self.guild
            .add_member(UserInfo::new(uid, "member"), 1)
            .unwrap();
        self.model.members.insert(uid, Vec::new());
    }

    fn random_overwrite(&self, rng: &mut ChaCha8Rng) -> Overwrite {
        let roles: Vec<u64> = self.model.roles.keys().copied().collect();
        let members: Vec<u64> = self.model.members.keys().copied().collect();
        let (allow, deny) = (bits(rng) & !ADMINISTRATOR, bits(rng) & !ADMINISTRATOR);
        match rng.random_range(0..4) {
            0 => Overwrite::role(GUILD_ID, allow, deny),
            1 => match pick(rng, &roles) {
                Some(r) => Overwrite::role(r, allow, deny),
                None => Overwrite::role(GUILD_ID, allow, deny),
            },
            // A member overwrite for someone who is not (yet) a member is legal.
            2 => Overwrite::member(self.next_user, allow, deny),
            _ => Overwrite::member(pick(rng, &members).unwrap_or(OWNER), allow, deny),
        }
    }

    fn set_random_overwrite(&mut self, rng: &mut ChaCha8Rng, channel: u64) {
        let ow = self.random_overwrite(rng);
        self.guild
            .set_channel_overwrite(Actor::System, channel, ow)
            .unwrap();
        let list = self.model.channels.get_mut(&channel).unwrap();
        match list.iter_mut().find(|o| o.kind == ow.kind && o.id == ow.id) {
            Some(o) => *o = ow,
            None => list.push(ow),
        }
    }

    /// One random change, applied to both.
    fn mutate(&mut self, rng: &mut ChaCha8Rng) {
        let roles: Vec<u64> = self.model.roles.keys().copied().collect();
        let members: Vec<u64> = self.model.members.keys().copied().collect();
        let non_owners: Vec<u64> = members
            .iter()
            .copied()
            .filter(|&m| m != self.model.owner)
            .collect();
        let channels: Vec<u64> = self.model.channels.keys().copied().collect();
        match rng.random_range(0..11) {
            0 => {
                let p = bits(rng);
                self.guild
                    .update_role(
                        Actor::System,
                        GUILD_ID,
                        RolePatch {
                            permissions: Some(p),
                            ..RolePatch::default()
                        },
                    )
                    .unwrap();
                self.model.everyone = p;
            }
            1 => {
                if let Some(r) = pick(rng, &roles) {
                    let p = bits(rng);
                    self.guild
                        .update_role(
                            Actor::System,
                            r,
                            RolePatch {
                                permissions: Some(p),
                                ..RolePatch::default()
                            },
                        )
                        .unwrap();
                    self.model.roles.insert(r, p);
                }
            }
            2 => {
                if let (Some(m), Some(r)) = (pick(rng, &members), pick(rng, &roles)) {
                    self.guild.add_member_role(Actor::System, m, r).unwrap();
                    let list = self.model.members.get_mut(&m).unwrap();
                    if !list.contains(&r) {
                        list.push(r);
                    }
                }
            }
            3 => {
                if let (Some(m), Some(r)) = (pick(rng, &members), pick(rng, &roles)) {
                    self.guild.remove_member_role(Actor::System, m, r).unwrap();
                    self.model.members.get_mut(&m).unwrap().retain(|&x| x != r);
                }
            }
            4 => {
                if let Some(c) = pick(rng, &channels) {
                    self.set_random_overwrite(rng, c);
                }
            }
            5 => {
                if let Some(c) = pick(rng, &channels) {
                    let list = self.model.channels[&c].clone();
                    if let Some(o) = pick(rng, &list) {
                        self.guild
                            .delete_channel_overwrite(Actor::System, c, o.kind, o.id)
                            .unwrap();
                        self.model.channels.get_mut(&c).unwrap().retain(|x| *x != o);
                    }
                }
            }
            6 => {
                if let Some(m) = pick(rng, &non_owners) {
                    if rng.random_bool(0.5) {
                        self.guild.kick(Actor::System, m).unwrap();
                    } else {
                        self.guild.remove_member(m).unwrap();
                    }
                    self.model.members.remove(&m);
                } else {
                    self.add_member();
                }
            }
            7 => self.add_member(),
            8 => {
                if let Some(m) = pick(rng, &non_owners) {
                    self.guild.transfer_ownership(Actor::System, m).unwrap();
                    self.model.owner = m;
                }
            }
            9 => {
                if let Some(r) = pick(rng, &roles) {
                    self.guild.delete_role(Actor::System, r).unwrap();
                    self.model.roles.remove(&r);
                    for list in self.model.members.values_mut() {
                        list.retain(|&x| x != r);
                    }
                    for list in self.model.channels.values_mut() {
                        list.retain(|o| !(o.kind == OverwriteKind::Role && o.id == r));
                    }
                } else {
                    self.create_role(rng);
                }
            }
            _ => {
                if channels.len() > 1
                    && let Some(c) = pick(rng, &channels)
                {
                    self.guild.delete_channel(Actor::System, c).unwrap();
                    self.model.channels.remove(&c);
                }
            }
        }
    }

    /// Every query of the guild agrees with the model; returns how many were compared.
    /// `step` is the mutation just made (0 = freshly built), for the failure message.
    fn check(&self, guild: usize, step: usize, audiences: bool) -> usize {
        let mut users: Vec<u64> = self.model.members.keys().copied().collect();
        users.push(STRANGER);
        let mut channels: Vec<u64> = self.model.channels.keys().copied().collect();
        channels.push(NO_CHANNEL);
        let mut compared = 0;
        for &u in &users {
            assert_eq!(
                self.guild.base_permissions(u),
                self.model.base(u),
                "seed {SEED:#x} guild {guild} step {step}: base of {u}"
            );
            for &c in &channels {
                let want = self.model.permissions(u, c);
                // Twice: the second answer comes from the cache.
                for _ in 0..2 {
                    assert_eq!(
                        self.guild.permissions(u, c),
                        want,
                        "seed {SEED:#x} guild {guild} step {step}: user {u} channel {c}\nmodel {:?}",
                        self.model
                    );
                }
                assert_eq!(self.guild.can_view(u, c), want & VIEW_CHANNEL != 0);
                compared += 1;
            }
        }
        for &c in &channels {
            let viewers: Vec<u64> = self.guild.viewers(c).collect();
            let want: Vec<u64> = self
                .model
                .members
                .keys()
                .copied()
                .filter(|&u| self.model.permissions(u, c) & VIEW_CHANNEL != 0)
                .collect();
            assert_eq!(
                viewers, want,
                "seed {SEED:#x} guild {guild} step {step}: viewers of {c}"
            );
            if !audiences {
                continue;
            }
            assert_eq!(self.guild.recipients(&Audience::Channel(c)), want);
            let managers: Vec<u64> = self
                .model
                .members
                .keys()
                .copied()
                .filter(|&u| self.model.permissions(u, c) & perms::MANAGE_MESSAGES != 0)
                .collect();
            assert_eq!(
                self.guild.recipients(&Audience::Permission {
                    channel_id: Some(c),
                    permission: perms::MANAGE_MESSAGES
                }),
                managers
            );
        }
        compared
    }
}

#[test]
fn permissions_match_the_reference_model_through_mutations() {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut compared = 0usize;
    let mut saw = Seen::default();
    for i in 0..GUILDS {
        let mut case = Case::build(&mut rng);
        compared += case.check(i, 0, false);
        for step in 1..=MUTATIONS_PER_GUILD {
            let before = case.guild.permission_generation();
            case.mutate(&mut rng);
            assert!(case.guild.permission_generation() >= before);
            compared += case.check(i, step, step == MUTATIONS_PER_GUILD);
        }
        saw.note(&case);
    }
    eprintln!("{compared} comparisons; final states met: {saw:?}");
    assert!(compared >= 1_000_000, "only {compared} comparisons");
    // The random guilds must actually reach the interesting cases.
    assert!(saw.administrator > 5_000, "{saw:?}");
    assert!(saw.hidden > 50_000, "{saw:?}");
    assert!(saw.member_overwrite_applied > 20_000, "{saw:?}");
    assert!(saw.owner_through_deny > 10_000, "{saw:?}");
}

/// Counts of interesting situations met, to prove the generator covers them.
#[derive(Debug, Default)]
struct Seen {
    administrator: usize,
    hidden: usize,
    member_overwrite_applied: usize,
    owner_through_deny: usize,
}

impl Seen {
    fn note(&mut self, case: &Case) {
        let m = &case.model;
        for &u in m.members.keys() {
            let admin = u != m.owner && m.base(u) == ALL;
            for (&c, ows) in &m.channels {
                let p = m.permissions(u, c);
                if admin {
                    self.administrator += 1;
                }
                if p == 0 {
                    self.hidden += 1;
                }
                if ows
                    .iter()
                    .any(|o| o.kind == OverwriteKind::Member && o.id == u)
                    && p != 0
                {
                    self.member_overwrite_applied += 1;
                }
                if u == m.owner
                    && ows
                        .iter()
                        .any(|o| o.id == GUILD_ID && o.deny & VIEW_CHANNEL != 0)
                {
                    self.owner_through_deny += 1;
                }
            }
        }
    }
}

#[test]
fn the_fixed_rules_by_hand() {
    let mut next = 500;
    let mut g = Guild::new(
        GUILD_ID,
        "rules",
        UserInfo::new(OWNER, "owner"),
        0,
        &mut || {
            next += 1;
            next
        },
    )
    .unwrap();
    let general = g.system_channel_id().unwrap();
    g.add_member(UserInfo::new(11, "a"), 0).unwrap();
    g.add_member(UserInfo::new(12, "b"), 0).unwrap();
    g.create_role(
        Actor::System,
        2_001,
        NewRole::new("mod", perms::MANAGE_MESSAGES),
    )
    .unwrap();
    g.create_role(Actor::System, 2_002, NewRole::new("admin", ADMINISTRATOR))
        .unwrap();
    g.add_member_role(Actor::System, 11, 2_001).unwrap();

    // Default @everyone: can view and talk, not manage messages.
    let p = g.permissions(12, general);
    assert_ne!(p & VIEW_CHANNEL, 0);
    assert_ne!(p & perms::SEND_MESSAGES, 0);
    assert_eq!(p & perms::MANAGE_MESSAGES, 0);
    assert_ne!(g.permissions(11, general) & perms::MANAGE_MESSAGES, 0);

    // Hide the channel from @everyone; the role overwrite brings it back for "mod"; a member
    // overwrite denies SEND_MESSAGES to 11 only.
    g.set_channel_overwrite(
        Actor::System,
        general,
        Overwrite::role(GUILD_ID, 0, VIEW_CHANNEL),
    )
    .unwrap();
    assert_eq!(g.permissions(12, general), 0);
    assert!(!g.can_view(11, general));
    g.set_channel_overwrite(
        Actor::System,
        general,
        Overwrite::role(2_001, VIEW_CHANNEL, 0),
    )
    .unwrap();
    assert!(g.can_view(11, general));
    assert!(!g.can_view(12, general));
    g.set_channel_overwrite(
        Actor::System,
        general,
        Overwrite::member(11, 0, perms::SEND_MESSAGES),
    )
    .unwrap();
    assert_eq!(g.permissions(11, general) & perms::SEND_MESSAGES, 0);
    assert!(g.can_view(11, general));
    // A member overwrite beats a role overwrite: deny VIEW to 11 personally.
    g.set_channel_overwrite(
        Actor::System,
        general,
        Overwrite::member(11, 0, VIEW_CHANNEL),
    )
    .unwrap();
    assert_eq!(g.permissions(11, general), 0);
    // Owner and administrators ignore all of it.
    assert_eq!(g.permissions(OWNER, general), ALL);
    g.add_member_role(Actor::System, 12, 2_002).unwrap();
    assert_eq!(g.permissions(12, general), ALL);
    assert_eq!(g.viewers(general).collect::<Vec<_>>(), vec![OWNER, 12]);
    // Strangers and unknown channels get nothing.
    assert_eq!(g.permissions(STRANGER, general), 0);
    assert_eq!(g.permissions(OWNER, NO_CHANNEL), 0);
    assert_eq!(g.base_permissions(STRANGER), 0);
}
