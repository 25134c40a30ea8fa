//! Users, bots, guilds, channels, roles, overwrites, members, invites and bans survive a restart
//! of the `hearth` binary on the same data directory: after SIGTERM (clean drain) and after
//! SIGKILL right after the replies came back (every acknowledged change was durable). Everything
//! is read back through REST and compared with what was read before the stop, and the old bot
//! token still Identifies on the gateway and gets READY with the guild.
//!
//! The journal itself is also run on the simulated disk: random metadata changes, crashes with
//! torn writes at random points, and a check that every acknowledged change is recovered
//! (`SEED=<n>` replays one seed, `META_CRASH_SEEDS=<n>` changes how many run).
//!
//! Runs on 127.0.0.1 ephemeral ports; every wait is bounded (no assertion on timing).

mod procs;
mod rest_e2e_support;
mod wsclient;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use procs::{TempDir, metric_sum, metrics_text};
use rest_e2e_support::{Http, User, id_of, is_id, until};
use serde_json::{Value, json};
use wsclient::Client;

/// Shards of the node: guilds and users spread over both, so cross-shard directories matter.
const SHARDS: u32 = 2;
/// Longest the binary may take to become ready or to exit.
const PROCESS_WAIT: Duration = Duration::from_secs(60);
/// Gateway intents asked at Identify: GUILDS | GUILD_MEMBERS.
const INTENTS: u64 = 1 | (1 << 1);

/// A running `hearth` process.
struct Server {
    child: Child,
    http: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary with its data in `dir/data` (REST rate limits off: this test is about
/// durability, and it makes many requests with one token).
fn start(dir: &Path) -> Server {
    let ready = dir.join("ready.json");
    let _ = std::fs::remove_file(&ready);
    let config = dir.join("hearth.toml");
    std::fs::write(&config, "[limits]\nrest_rate_limits = false\n").expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--config")
        .arg(&config)
        .args(["--http-addr", "127.0.0.1:0", "--echo-addr", "127.0.0.1:0"])
        .args(["--shards", &SHARDS.to_string()])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--ready-file")
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn hearth");
    let mut server = Server {
        child,
        http: "127.0.0.1:1".parse().expect("addr"),
    };
    let deadline = Instant::now() + PROCESS_WAIT;
    let text = loop {
        if let Ok(t) = std::fs::read_to_string(&ready)
            && let Ok(v) = serde_json::from_str::<Value>(&t)
        {
            break v;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("hearth exited before it was ready: {status}");
        }
        assert!(Instant::now() < deadline, "hearth did not become ready");
        std::thread::sleep(Duration::from_millis(20));
    };
    server.http = text["http"].as_str().expect("http").parse().expect("addr");
    server
}

/// Sends `signal` and waits for the process to exit; returns its status.
fn stop(mut server: Server, signal: i32) -> std::process::ExitStatus {
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    let rc = unsafe { libc::kill(server.child.id() as libc::pid_t, signal) };
    assert_eq!(rc, 0);
    let deadline = Instant::now() + PROCESS_WAIT;
    loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "hearth did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the test built.
struct World {
    owner: User,
    member: User,
    banned: User,
    guild: u64,
    channel: u64,
    invite: String,
}

fn ok(r: &rest_e2e_support::Resp, what: &str) {
    assert!(
        (200..300).contains(&r.status),
        "{what}: {} {}",
        r.status,
        r.body
    );
}

/// Creates users, a bot, a guild with a role, a channel with overwrites, members, an invite and
/// a ban through the control and REST APIs.
fn build(addr: SocketAddr) -> World {
    let mut h = Http::connect(addr);
    let owner = h.user("owner-bot");
    let member = h.user("member-bot");
    let banned = h.user("banned-bot");
    let r = h.control(
        "/control/guilds",
        json!({"name": "durable guild", "owner_id": owner.id.to_string()}),
    );
    ok(&r, "create guild");
    let guild = r.id("id");
    let r = h.post(
        &format!("/guilds/{guild}/roles"),
        &owner.token,
        json!({"name": "mods", "permissions": "8192", "color": 255, "hoist": true}),
    );
    ok(&r, "create role");
    let role = r.id("id");
    let r = h.post(
        &format!("/guilds/{guild}/channels"),
        &owner.token,
        json!({"name": "secret", "type": 0, "topic": "kept",
        "permission_overwrites": [
            {"id": guild.to_string(), "type": 0, "allow": "0", "deny": "1024"},
            {"id": role.to_string(), "type": 0, "allow": "1024", "deny": "0"},
            {"id": member.id.to_string(), "type": 1, "allow": "2048", "deny": "0"},
        ]}),
    );
    ok(&r, "create channel");
    let channel = r.id("id");
    for (u, body) in [
        (
            &member,
            json!({"user_id": member.id.to_string(), "nick": "nicky", "roles": [role.to_string()]}),
        ),
        (&banned, json!({"user_id": banned.id.to_string()})),
    ] {
        let r = h.control(&format!("/control/guilds/{guild}/members"), body);
        ok(&r, &format!("add member {}", u.id));
    }
    let r = h.api(
        "PUT",
        &format!("/guilds/{guild}/bans/{}", banned.id),
        &owner.token,
        Some(json!({"delete_message_seconds": 0})),
    );
    ok(&r, "ban");
    let r = h.post(
        &format!("/channels/{channel}/invites"),
        &owner.token,
        json!({"max_age": 0, "max_uses": 5}),
    );
    ok(&r, "create invite");
    let invite = r.body["code"].as_str().expect("code").to_owned();
    let r = h.patch(
        &format!("/guilds/{guild}"),
        &owner.token,
        json!({"description": "it survives"}),
    );
    ok(&r, "modify guild");
    let r = h.patch(
        &format!("/guilds/{guild}/members/{}", member.id),
        &owner.token,
        json!({"nick": "renamed"}),
    );
    ok(&r, "modify member");
    World {
        owner,
        member,
        banned,
        guild,
        channel,
        invite,
    }
}

/// Everything the REST API says about the world, as (what, status, body).
fn read_all(addr: SocketAddr, w: &World) -> Vec<(String, u16, Value)> {
    let mut h = Http::connect(addr);
    let g = w.guild;
    let c = w.channel;
    let reads = [
        (format!("/guilds/{g}"), &w.owner),
        (format!("/guilds/{g}/channels"), &w.owner),
        (format!("/guilds/{g}/roles"), &w.owner),
        (format!("/guilds/{g}/members?limit=100"), &w.owner),
        (format!("/guilds/{g}/bans"), &w.owner),
        (format!("/channels/{c}"), &w.member),
        (format!("/channels/{c}/invites"), &w.owner),
        (format!("/invites/{}", w.invite), &w.member),
        ("/users/@me".to_owned(), &w.owner),
        ("/users/@me".to_owned(), &w.member),
        ("/users/@me".to_owned(), &w.banned),
        (format!("/users/{}", w.member.id), &w.owner),
        ("/oauth2/applications/@me".to_owned(), &w.owner),
        (format!("/guilds/{g}/members/{}", w.member.id), &w.member),
        (format!("/guilds/{g}"), &w.banned),
    ];
    reads
        .iter()
        .map(|(path, who)| {
            let r = h.get(path, &who.token);
            (path.clone(), r.status, r.body)
        })
        .collect()
}

/// The old token Identifies and gets READY listing the guild, then its GUILD_CREATE.
fn identify_sees_guild(addr: SocketAddr, who: &User, guild: u64) {
    let mut c = Client::connect(addr, "?v=10&encoding=json");
    c.hello();
    c.send_json(
        json!({"op": 2, "d": {"token": format!("Bot {}", who.token), "intents": INTENTS,
        "properties": {"os": "linux", "browser": "t", "device": "t"}}}),
    );
    let ready = c.json();
    assert_eq!(ready["t"], "READY", "{ready}");
    assert_eq!(id_of(&ready["d"]["user"], "id"), who.id);
    let listed = ready["d"]["guilds"]
        .as_array()
        .expect("guilds")
        .iter()
        .any(|g| is_id(&g["id"], guild));
    assert!(listed, "READY lists the guild: {ready}");
    let gc = until(&mut c, "GUILD_CREATE", |v| {
        v["t"] == "GUILD_CREATE" && is_id(&v["d"]["id"], guild)
    });
    assert_eq!(gc["d"]["name"], "durable guild");
}

fn survives(signal: i32, tag: &str) {
    let dir = TempDir::new(tag);
    let server = start(dir.path());
    let world = build(server.http);
    let before = read_all(server.http, &world);
    for (what, status, body) in &before {
        assert!(
            *status == 200 || what.ends_with(&format!("/guilds/{}", world.guild)),
            "{what}: {status} {body}"
        );
    }
    // Sanity of what was built (so "identical" below compares something meaningful).
    let members = &before[3].2;
    assert_eq!(members.as_array().map(Vec::len), Some(2), "{members}");
    assert_eq!(before[4].2.as_array().map(Vec::len), Some(1), "one ban");
    assert_eq!(before[14].1, 403, "the banned user is no member");
    identify_sees_guild(server.http, &world.member, world.guild);
    // The journal's work shows in /metrics: groups were committed and replies held for them.
    let metrics = metrics_text(server.http);
    for name in ["hearth_meta_groups_total", "hearth_meta_held_replies_total"] {
        assert!(metric_sum(&metrics, name) > 0, "{name} counted:\n{metrics}");
    }
    assert_eq!(metric_sum(&metrics, "hearth_meta_failures_total"), 0);

    let status = stop(server, signal);
    if signal == libc::SIGTERM {
        assert!(status.success(), "clean exit after SIGTERM: {status}");
    }
    let server = start(dir.path());
    let after = read_all(server.http, &world);
    for ((what, s0, b0), (_, s1, b1)) in before.iter().zip(&after) {
        assert_eq!((s0, b0), (s1, b1), "{what} changed across the restart");
    }
    identify_sees_guild(server.http, &world.owner, world.guild);
    identify_sees_guild(server.http, &world.member, world.guild);
    // The recovered state keeps working: a new change, then another restart.
    let mut h = Http::connect(server.http);
    let r = h.delete(
        &format!("/guilds/{}/bans/{}", world.guild, world.banned.id),
        &world.owner.token,
    );
    ok(&r, "unban after restart");
    let r = h.post(
        &format!("/invites/{}", world.invite),
        &world.banned.token,
        json!({}),
    );
    ok(&r, "join through the recovered invite");
    let status = stop(server, signal);
    if signal == libc::SIGTERM {
        assert!(status.success(), "clean exit after SIGTERM: {status}");
    }
    let server = start(dir.path());
    let mut h = Http::connect(server.http);
    let r = h.get(
        &format!("/guilds/{}/members/{}", world.guild, world.banned.id),
        &world.banned.token,
    );
    ok(&r, "the join survived the second restart");
    let r = h.get(&format!("/invites/{}", world.invite), &world.member.token);
    ok(&r, "invite");
    assert_eq!(r.body["uses"], 1, "{}", r.body);
    identify_sees_guild(server.http, &world.banned, world.guild);
    let _ = stop(server, libc::SIGTERM);
}

#[test]
fn metadata_survives_sigterm_and_restart() {
    survives(libc::SIGTERM, "term");
}

#[test]
fn metadata_survives_sigkill_after_the_replies() {
    survives(libc::SIGKILL, "kill");
}

// ---- the journal on the simulated disk ----

use engine::app::{AppState, UserRecord};
use engine::ctx::{ConnRef, ShardCtx, ShardMsg};
use engine::driver::sim::{SimConfig, SimDisk, SimDriver};
use engine::driver::{Completion, Driver, DriverConfig, Wait};
use engine::http::Response;
use engine::mailbox::Mesh;
use engine::meta::MetaIo;
use engine::rest_handlers::Reply;
use engine::store_io::{SimDir, StoreDir};
use gateway_core::gateway::ready::ReadyUser;
use gateway_core::guild::UserInfo;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Crash seeds run by default.
const CRASH_SEEDS_DEFAULT: u64 = 16;
/// Journal bytes past which the simulated shard checkpoints (a few groups).
const CHECKPOINT_BYTES: u64 = 4096;
/// Operations per seed.
const OPS_PER_SEED: usize = 120;

/// One change the test made, identified by the reply it waits for.
#[derive(Debug, Clone, Copy)]
enum Change {
    User(u64),
    Guild(u64),
    Member(u64, u64),
    GuildGone(u64),
}

/// A one-shard node's worth of journal: context, driver, adapter.
struct SimShard {
    ctx: ShardCtx,
    driver: SimDriver,
    io: MetaIo<SimDir>,
    completions: Vec<Completion>,
}

impl SimShard {
    fn new(seed: u64, disk: SimDisk, dir: SimDir, generation: u32) -> Self {
        let mut cfg = SimConfig::new(seed);
        cfg.torn_write_prob = 0.7;
        let driver = SimDriver::new_with_disk(
            cfg,
            DriverConfig {
                recv_buffers: 16,
                ..DriverConfig::default()
            },
            disk,
        );
        let mesh = Mesh::<ShardMsg>::new(1, 1024).expect("mesh");
        let mut ctx = ShardCtx::new(mesh.endpoint(0).expect("endpoint"));
        ctx.app = AppState::new(0, 0, "ws://sim".into());
        engine::meta::enable(&mut ctx.app.meta);
        // Small checkpoints, so crashes also land in and around them.
        let io = MetaIo::new(dir, generation).with_checkpoint_bytes(CHECKPOINT_BYTES);
        SimShard {
            ctx,
            driver,
            io,
            completions: Vec::new(),
        }
    }

    /// One loop turn: pump, run the driver, hand back completions.
    fn turn(&mut self) {
        self.ctx.wall_ms = self.driver.wall_ms();
        // Directory updates the guild layer sends to this (only) shard.
        self.ctx.run_incoming(1024);
        self.ctx.flush_backlog();
        self.io.pump(&mut self.ctx, &mut self.driver);
        let until = self.driver.now_ns() + 5_000_000;
        let mut cs = std::mem::take(&mut self.completions);
        self.driver
            .run(Wait::Until(until), &mut cs)
            .expect("driver run");
        for c in cs.drain(..) {
            let mine = self.io.on_completion(&mut self.ctx, &mut self.driver, c);
            assert!(mine, "only journal operations run here");
        }
        self.completions = cs;
    }

    /// Replies released so far (their changes are durable), by reply number.
    fn acked(&mut self) -> Vec<u32> {
        self.ctx
            .http_replies
            .drain(..)
            .map(|(c, _)| c.index)
            .collect()
    }
}

fn user_record(id: u64) -> UserRecord {
    UserRecord {
        user: ReadyUser::bot(id, &format!("u{id}")),
        application_id: Some(id),
        privileged: 0,
        guilds: Vec::new(),
        sessions: Vec::new(),
    }
}

/// Applies one random change to the shard and holds a reply for it.
fn random_change(s: &mut SimShard, rng: &mut ChaCha8Rng, n: u32, next_id: &mut u64) -> Change {
    let ctx = &mut s.ctx;
    let guilds: Vec<u64> = ctx.app.guilds.by_id.keys().copied().collect();
    let users: Vec<u64> = ctx.app.users.keys().copied().collect();
    *next_id += 1 << 22;
    let id = *next_id;
    let pick = rng.random_range(0..10);
    let change = if users.is_empty() || pick < 3 {
        ctx.app.users.insert(id, user_record(id));
        ctx.app.meta.note_user(id);
        Change::User(id)
    } else if guilds.is_empty() || pick < 5 {
        let owner = users[rng.random_range(0..users.len())];
        let info = UserInfo::bot(owner, "o");
        engine::guilds::create_guild(ctx, id, "sim guild", info, None).expect("create guild");
        Change::Guild(id)
    } else if pick < 9 {
        let g = guilds[rng.random_range(0..guilds.len())];
        let u = users[rng.random_range(0..users.len())];
        let now = ctx.wall_ms;
        let e = ctx.app.guilds.by_id.get_mut(&g).expect("guild");
        if e.guild.is_member(u) {
            return random_change(s, rng, n, next_id);
        }
        e.guild
            .add_member(UserInfo::bot(u, "m"), now)
            .expect("add member");
        ctx.app.meta.note_member(g, u);
        Change::Member(g, u)
    } else {
        let g = guilds[rng.random_range(0..guilds.len())];
        engine::guilds::dissolve(ctx, g);
        Change::GuildGone(g)
    };
    let reply = Reply::new(
        0,
        ConnRef {
            index: n,
            generation: 0,
        },
        None,
    );
    engine::meta::send_when_durable(ctx, reply, Response::new(204, "application/json", ""));
    change
}

/// Reads the shard's metadata off a crashed disk, through its directory.
fn recover_from(disk: &SimDisk, dir: &SimDir) -> (engine::meta_format::MetaState, u32) {
    let mut dir = dir.clone();
    let names = dir.list().expect("list");
    let mut snapshot = None;
    let mut journals = Vec::new();
    for n in names {
        let path = dir.path_for(&n, false).expect("path");
        let bytes = disk.contents(&path).unwrap_or_default().to_vec();
        if n == engine::meta_format::SNAPSHOT_NAME {
            snapshot = Some(bytes);
        } else if engine::meta_format::parse_journal_name(&n).is_some() {
            journals.push((n, bytes));
        }
    }
    engine::meta::recover_shard(0, snapshot.as_deref(), &journals).expect("recovers")
}

/// Every acknowledged change is in `state`, unless a later change (issued, maybe durable without
/// having been acknowledged yet) deleted its guild.
fn check_recovered(
    state: &engine::meta_format::MetaState,
    acked: &[Change],
    issued: &[Change],
    seed: u64,
) {
    let acked_gone: std::collections::BTreeSet<u64> = acked
        .iter()
        .filter_map(|c| match c {
            Change::GuildGone(g) => Some(*g),
            _ => None,
        })
        .collect();
    for g in &acked_gone {
        assert!(
            !state.guilds.contains_key(g),
            "SEED={seed}: acknowledged deletion of guild {g} undone"
        );
    }
    let gone: std::collections::BTreeSet<u64> = issued
        .iter()
        .filter_map(|c| match c {
            Change::GuildGone(g) => Some(*g),
            _ => None,
        })
        .collect();
    for c in acked {
        let ok = match *c {
            Change::User(u) => state.users.contains_key(&u),
            Change::Guild(g) if gone.contains(&g) => true,
            Change::Guild(g) => state.guilds.get(&g).is_some_and(|x| x.core.is_some()),
            Change::Member(g, _) if gone.contains(&g) => true,
            Change::Member(g, u) => state
                .guilds
                .get(&g)
                .is_some_and(|x| x.members.contains_key(&u)),
            Change::GuildGone(_) => true,
        };
        assert!(ok, "SEED={seed}: acknowledged {c:?} lost");
    }
}

#[test]
fn acknowledged_changes_survive_crashes_on_the_simulated_disk() {
    let seeds: Vec<u64> = match std::env::var("SEED").ok().and_then(|s| s.parse().ok()) {
        Some(s) => vec![s],
        None => {
            let n = std::env::var("META_CRASH_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(CRASH_SEEDS_DEFAULT);
            (0..n).collect()
        }
    };
    let (mut total_acked, mut boots, mut checkpoints, mut groups) = (0usize, 0u64, 0u64, 0u64);
    for seed in seeds {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4d45_5441);
        let mut disk = SimDisk::new();
        let mut dir = SimDir::new("/sim/shard-0");
        let mut generation = 0;
        let mut acked: Vec<Change> = Vec::new();
        let mut issued: Vec<Change> = Vec::new();
        let mut next_id = 1u64 << 40;
        for cycle in 0..3 {
            // Boot: recover what the (crashed) disk holds and install it, as `Node::start` does.
            let (state, _) = recover_from(&disk, &dir);
            let recovered =
                engine::meta::assemble(vec![(PathBuf::from("sim"), state, generation)], 1)
                    .expect("assemble")
                    .pop()
                    .expect("one shard");
            let mut s = SimShard::new(seed * 31 + cycle, disk, dir, generation);
            engine::meta::install(&mut s.ctx, recovered);
            let mut pending: Vec<Change> = Vec::new();
            let crash_at = rng.random_range(OPS_PER_SEED / 4..OPS_PER_SEED);
            for n in 0..OPS_PER_SEED {
                if n == crash_at {
                    break;
                }
                let c = random_change(&mut s, &mut rng, pending.len() as u32, &mut next_id);
                pending.push(c);
                issued.push(c);
                for _ in 0..rng.random_range(0..3) {
                    s.turn();
                }
                for i in s.acked() {
                    if let Some(c) = pending.get(i as usize) {
                        acked.push(*c);
                    }
                }
            }
            boots += 1;
            checkpoints += s.ctx.app.meta.stats.checkpoints;
            groups += s.ctx.app.meta.stats.groups;
            // Power loss now: whatever was not synced may be lost or torn.
            let crashed = s.driver.world().crash_disk_image();
            let mut crashed_dir = s.io.dir().clone();
            crashed_dir.crash();
            let (state, recovered_gen) = recover_from(&crashed, &crashed_dir);
            check_recovered(&state, &acked, &issued, seed);
            disk = crashed;
            dir = crashed_dir;
            generation = recovered_gen;
        }
        total_acked += acked.len();
    }
    // The scenario exercised what it claims: acknowledged changes, group commits, and
    // checkpoints past the start-up one.
    assert!(
        total_acked > 0 && groups > 0,
        "acked {total_acked}, groups {groups}"
    );
    assert!(
        checkpoints > boots,
        "checkpoints {checkpoints} over {boots} boots"
    );
}

#[test]
fn start_up_recovery_stops_at_a_torn_tail_and_refuses_a_corrupt_snapshot() {
    use engine::meta_format::{
        JOURNAL_MAGIC, MetaState, Record, StoredUser, encode_snapshot, journal_name, write_header,
        write_record,
    };
    let dir = TempDir::new("recovery");
    let shard0 = dir.path().join("shard-0");
    std::fs::create_dir_all(&shard0).expect("dir");
    // One shard: every key belongs to shard 0.
    let user = |id: u64| Record::User(StoredUser::of(&user_record(id), None));
    let mut snap_state = MetaState::default();
    snap_state.apply(user(1 << 22));
    let snap = encode_snapshot(&snap_state, 3).expect("snapshot");
    std::fs::write(shard0.join("meta.snap"), &snap).expect("write");
    let mut log = Vec::new();
    write_header(&mut log, JOURNAL_MAGIC, 3);
    write_record(&mut log, &user(2 << 22)).expect("record");
    let whole = log.len();
    write_record(&mut log, &user(3 << 22)).expect("record");
    // The last group was torn: half of its record reached the disk.
    log.truncate(whole + (log.len() - whole) / 2);
    std::fs::write(shard0.join(journal_name(3)), &log).expect("write");
    // A stale journal of an older generation is not replayed.
    let mut old = Vec::new();
    write_header(&mut old, JOURNAL_MAGIC, 2);
    write_record(&mut old, &user(4 << 22)).expect("record");
    std::fs::write(shard0.join(journal_name(2)), &old).expect("write");

    let r = engine::meta::recover_node(dir.path(), 1).expect("recovers");
    let mut ids: Vec<u64> = r[0].users.iter().map(|(u, _)| u.user.id.0).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        vec![1 << 22, 2 << 22],
        "snapshot + journal up to the torn record"
    );
    assert_eq!(r[0].generation, 3);

    // A damaged snapshot stops start-up with an error that names the file.
    let mut bad = snap.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    std::fs::write(shard0.join("meta.snap"), &bad).expect("write");
    let e = engine::meta::recover_node(dir.path(), 1).expect_err("corrupt snapshot");
    assert!(e.to_string().contains("meta.snap"), "{e}");

    // The same files read with another shard count are refused, not silently re-sharded.
    std::fs::write(shard0.join("meta.snap"), &snap).expect("write");
    let two = (0..64u64)
        .map(|i| (i + 1) << 22)
        .find(|&id| engine::app::owner_shard(id, 2) == 1)
        .expect("an id owned by shard 1 of 2");
    let mut moved = MetaState::default();
    moved.apply(user(two));
    std::fs::write(
        shard0.join("meta.snap"),
        encode_snapshot(&moved, 3).expect("snapshot"),
    )
    .expect("write");
    std::fs::remove_file(shard0.join(journal_name(3))).expect("rm");
    let e = engine::meta::recover_node(dir.path(), 2).expect_err("shard count changed");
    assert!(e.to_string().contains("different shard count"), "{e}");
}
