//! Durable metadata: each shard journals the users it is home to and the guilds it owns (core,
//! members, bans) in its own files (`data_dir/shard-<i>/meta*`, format in
//! [`crate::meta_format`]), and recovers them at start before serving.
//!
//! # What is recorded, and when
//!
//! Handlers do not write records themselves: they mark keys dirty ([`Meta`] in `AppState`), and
//! at the end of the loop turn [`MetaIo::pump`] encodes the *current* value of every dirty key
//! (or its deletion) into one group. Marking is cheap and idempotent, so a key changed ten times
//! in a turn is written once, and the record always matches memory. Guild changes are marked from
//! the events every guild operation already publishes ([`Meta::note_events`]): member events mark
//! that member, ban events that ban, typing/message/presence/voice events nothing, and every
//! other event the guild's core. Creation and deletion of guilds and users are marked where they
//! happen.
//!
//! # Group commit and acknowledgement
//!
//! One group per turn: one write appended to the journal, then (when it completes) one
//! fdatasync, both on the shard's driver (io_uring or the simulated disk), like the message
//! store's commit log. While a group is in flight, new changes wait for the next one. A REST or
//! control reply of an operation on this shard goes through [`send_when_durable`]: it is held
//! until the group holding its changes (or, for a request that changed nothing, every group
//! before it) is durable, so an acknowledged change survives a crash. If a group fails, its held
//! replies get 500 and a checkpoint rewrites the whole state into a new journal generation.
//!
//! # Checkpoints
//!
//! When the journal passes [`JOURNAL_CHECKPOINT_BYTES`] (and once at every start, so a torn tail
//! is never appended after and replay stays bounded), the shard writes its whole state to
//! `meta.snap.tmp` and a fresh `meta-<gen+1>.log` holding only a header, fdatasyncs both, then
//! renames the snapshot into place, fsyncs the directory and removes older journals. The
//! snapshot names the journal that follows it, so recovery replays exactly one journal. Changes
//! made while a checkpoint is in flight wait for it and go into the new journal. The directory
//! operations use the blocking [`StoreDir`] fallback, as the message store's do: they happen
//! once per checkpoint.
//!
//! # Recovery
//!
//! [`recover_node`] runs in `Node::start` before any shard thread exists: it reads every shard's
//! snapshot and journal (blocking reads at start-up, like opening files), stops each journal at
//! its torn tail, refuses a corrupt snapshot with an error naming it, rebuilds the guilds and
//! checks that every key still belongs to the shard that holds it (a changed shard count would
//! move guilds and users between shards, and their messages with them: refused, not guessed).
//! It then derives what is not stored: the channel and invite directories every shard holds and
//! each user's guild list.
//!
//! # Not stored (volatile or derived)
//!
//! Sessions, presences, voice states and lazy member lists are volatile, as on Discord. A
//! user's guild list and the channel/invite directories are derived from the guilds. A channel's
//! `last_message_id` is kept by the message path without a guild event, so after a restart it is
//! the value of the guild's last core write (messages themselves are in msgstore). Reads answered
//! on the owner also wait for the groups before them, so a client never reads a change that a
//! crash could still take back.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use gateway_core::guild::persist::PersistError;
use gateway_core::guild::{Guild, GuildEvent};

use crate::app::{UserRecord, owner_shard};
use crate::buf::AlignedBuf;
use crate::ctx::ShardCtx;
use crate::driver::{
    Completion, CompletionKind, Driver, DriverError, FileId, FileOptions, Op, Token,
};
use crate::guilds::GuildEntry;
use crate::http::Response;
use crate::meta_format::{
    self, JOURNAL_MAGIC, MetaFormatError, MetaState, Record, SNAPSHOT_MAGIC, SNAPSHOT_NAME,
    SNAPSHOT_TMP_NAME, StoredUser, journal_name, parse_journal_name, write_header, write_record,
};
use crate::rest::ApiError;
use crate::rest_handlers::Reply;
use crate::store_io::{StoreDir, TOKEN_KIND_SHIFT};

/// Journal bytes past which the shard checkpoints (bounds replay at start to this much).
pub const JOURNAL_CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;
/// After a failed write or checkpoint, the next checkpoint attempt waits this long.
pub const RETRY_DELAY_NS: u64 = 1_000_000_000;
/// Continuations one short write may get before it counts as failed.
pub const SHORT_WRITE_RESUBMITS_MAX: u32 = 16;
/// Replies held for durability per shard. Each comes from one HTTP request, and a connection has
/// at most one request being answered, so connections bound it already; past this bound (a bug,
/// not load) a reply is refused with 503 rather than queued.
pub const HELD_REPLIES_MAX: usize = 1 << 20;

/// Top 8 bits of the tokens of metadata file operations (store is 0x40, voice 0x41).
pub const META_TOKEN_KIND: u8 = 0x42;
const TOKEN_LOW_MASK: u64 = (1 << TOKEN_KIND_SHIFT) - 1;

/// Recovering metadata at start failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// Reading a file or directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is damaged or of another format version.
    #[error("shard {shard}: {source}")]
    Format {
        /// The shard.
        shard: usize,
        /// What is wrong.
        source: MetaFormatError,
    },
    /// A stored guild does not rebuild.
    #[error("shard {shard}: {source}")]
    Guild {
        /// The shard.
        shard: usize,
        /// What is wrong.
        source: PersistError,
    },
    /// The data was written with a different shard count.
    #[error(
        "{dir}: holds {what} {id}, which belongs to shard {owner} with {shards} shards: the data \
         directory was written with a different shard count (re-sharding is not supported)"
    )]
    ShardCountChanged {
        /// The shard's directory.
        dir: PathBuf,
        /// "user" or "guild".
        what: &'static str,
        /// Its id.
        id: u64,
        /// The shard it belongs to now.
        owner: usize,
        /// Configured shards.
        shards: usize,
    },
}

/// A reply held until the group holding its changes is durable.
#[derive(Debug)]
struct Held {
    need: u64,
    reply: Reply,
    resp: Response,
}

/// The journal's view from the handlers: dirty keys, group numbers, held replies.
#[derive(Debug, Default)]
pub struct Meta {
    /// Whether this shard journals (it has a data directory).
    enabled: bool,
    users: BTreeSet<u64>,
    cores: BTreeSet<u64>,
    members: BTreeSet<(u64, u64)>,
    bans: BTreeSet<(u64, u64)>,
    /// The group collecting changes now (groups count from 1).
    open_seq: u64,
    /// The last group known durable.
    durable_seq: u64,
    held: VecDeque<Held>,
    /// Counters for tests and /metrics.
    pub stats: MetaStats,
}

/// What the journal did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MetaStats {
    /// Groups appended (one write + one fdatasync each).
    pub groups: u64,
    /// Records written in groups.
    pub records: u64,
    /// Bytes appended.
    pub bytes: u64,
    /// Checkpoints completed.
    pub checkpoints: u64,
    /// Writes, syncs or checkpoints that failed.
    pub failures: u64,
    /// Replies that waited for durability.
    pub held_replies: u64,
}

fn user_of(ev: &GuildEvent) -> Option<u64> {
    ev.data["user"]["id"].as_str().and_then(|s| s.parse().ok())
}

impl Meta {
    /// Whether this shard journals.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Something changed since the last group was formed.
    pub fn has_dirty(&self) -> bool {
        !(self.users.is_empty()
            && self.cores.is_empty()
            && self.members.is_empty()
            && self.bans.is_empty())
    }

    /// Replies waiting for durability.
    pub fn held_replies(&self) -> usize {
        self.held.len()
    }

    /// User `id` (homed here) changed.
    pub fn note_user(&mut self, id: u64) {
        if self.enabled {
            self.users.insert(id);
        }
    }

    /// Guild `g`'s core changed, or the guild was created or deleted.
    pub fn note_guild(&mut self, g: u64) {
        if self.enabled {
            self.cores.insert(g);
        }
    }

    /// Member `user` of guild `g` changed, joined or left.
    pub fn note_member(&mut self, g: u64, user: u64) {
        if self.enabled {
            self.members.insert((g, user));
        }
    }

    /// What the published events of an operation on guild `g` changed.
    pub fn note_events(&mut self, g: u64, events: &[GuildEvent]) {
        if !self.enabled {
            return;
        }
        for ev in events {
            match ev.name {
                // Not metadata (messages live in msgstore; presence and voice are volatile).
                "TYPING_START"
                | "PRESENCE_UPDATE"
                | "VOICE_STATE_UPDATE"
                | "VOICE_SERVER_UPDATE"
                | "GUILD_MEMBERS_CHUNK"
                | "GUILD_MEMBER_LIST_UPDATE" => {}
                n if n.starts_with("MESSAGE_") || n.starts_with("CHANNEL_PINS") => {}
                "GUILD_MEMBER_UPDATE" | "GUILD_MEMBER_REMOVE" => {
                    if let Some(u) = user_of(ev) {
                        self.members.insert((g, u));
                    } else {
                        self.cores.insert(g);
                    }
                }
                // A join may also count an invite use (part of the core).
                "GUILD_MEMBER_ADD" => {
                    if let Some(u) = user_of(ev) {
                        self.members.insert((g, u));
                    }
                    self.cores.insert(g);
                }
                "GUILD_BAN_ADD" | "GUILD_BAN_REMOVE" => match user_of(ev) {
                    Some(u) => {
                        self.bans.insert((g, u));
                        self.members.insert((g, u));
                    }
                    None => {
                        self.cores.insert(g);
                    }
                },
                // Anything else (guild, channel, role, invite, unknown) changes the core; being
                // wrong here costs one bounded rewrite, never a lost change.
                _ => {
                    self.cores.insert(g);
                }
            }
        }
    }

    /// Forms the next group: its number and the records of every dirty key, current values.
    fn take_group(
        &mut self,
        users: &HashMap<u64, UserRecord>,
        owners: &HashMap<u64, serde_json::Value>,
        guilds: &HashMap<u64, GuildEntry>,
        out: &mut Vec<u8>,
    ) -> (u64, u64) {
        let seq = self.open_seq;
        self.open_seq += 1;
        let mut n = 0u64;
        let mut put = |out: &mut Vec<u8>, r: Record| match write_record(out, &r) {
            Ok(()) => n += 1,
            // Only a record past RECORD_BYTES_MAX can fail, which the model's limits rule out.
            Err(e) => tracing::error!(error = %e, "metadata record not written"),
        };
        for id in std::mem::take(&mut self.users) {
            if let Some(u) = users.get(&id) {
                put(out, Record::User(StoredUser::of(u, owners.get(&id))));
            }
        }
        for g in std::mem::take(&mut self.cores) {
            match guilds.get(&g) {
                Some(e) => put(out, Record::Guild(e.guild.to_core())),
                None => put(out, Record::GuildDeleted { guild: g }),
            }
        }
        for (g, user) in std::mem::take(&mut self.members) {
            // A deleted guild's members went with its GuildDeleted record.
            if let Some(e) = guilds.get(&g) {
                match e.guild.member(user) {
                    Some(m) => put(
                        out,
                        Record::Member {
                            guild: g,
                            member: m.clone(),
                        },
                    ),
                    None => put(out, Record::MemberRemoved { guild: g, user }),
                }
            }
        }
        for (g, user) in std::mem::take(&mut self.bans) {
            if let Some(e) = guilds.get(&g) {
                match e.guild.ban_record(user) {
                    Some(b) => put(
                        out,
                        Record::Ban {
                            guild: g,
                            ban: b.clone(),
                        },
                    ),
                    None => put(out, Record::BanRemoved { guild: g, user }),
                }
            }
        }
        (seq, n)
    }

    /// Starts a checkpoint group: the snapshot covers every change so far.
    fn take_checkpoint_group(&mut self) -> u64 {
        let seq = self.open_seq;
        self.open_seq += 1;
        self.users.clear();
        self.cores.clear();
        self.members.clear();
        self.bans.clear();
        seq
    }
}

/// Answers `resp` through `reply` once every change made so far on this shard is durable (at
/// once when this shard does not journal, or nothing is pending).
pub fn send_when_durable(ctx: &mut ShardCtx, reply: Reply, resp: Response) {
    let m = &mut ctx.app.meta;
    if !m.enabled {
        return reply.send(ctx, resp);
    }
    let need = if m.has_dirty() {
        m.open_seq
    } else {
        m.open_seq.saturating_sub(1)
    };
    if need <= m.durable_seq {
        return reply.send(ctx, resp);
    }
    if m.held.len() >= HELD_REPLIES_MAX {
        return reply.error(ctx, ApiError::unavailable());
    }
    m.stats.held_replies += 1;
    m.held.push_back(Held { need, reply, resp });
}

/// [`send_when_durable`] with a JSON body.
pub fn json_when_durable(ctx: &mut ShardCtx, reply: Reply, status: u16, body: &serde_json::Value) {
    send_when_durable(ctx, reply, Response::json(status, body.to_string()));
}

/// Group `seq` is durable (`ok`) or failed: answers the replies waiting for it.
fn settle(ctx: &mut ShardCtx, seq: u64, ok: bool) {
    if ok {
        ctx.app.meta.durable_seq = ctx.app.meta.durable_seq.max(seq);
    }
    loop {
        let m = &mut ctx.app.meta;
        let Some(h) = m.held.front() else { break };
        if h.need > seq {
            break;
        }
        let Some(h) = m.held.pop_front() else { break };
        if ok || h.need < seq {
            h.reply.send(ctx, h.resp);
        } else {
            h.reply.error(ctx, ApiError::internal());
        }
    }
}

/// Which file an operation is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Journal,
    Snapshot,
    NewJournal,
}

/// One in-flight driver operation.
#[derive(Debug)]
struct Pending {
    target: Target,
    file: FileId,
    /// A write: its bytes, where they go and how many are on the file; None: an fdatasync.
    write: Option<(Vec<u8>, u64, usize)>,
    resubmits: u32,
}

/// What the adapter is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing in flight.
    Idle,
    /// Appending group `seq`: `syncing` once its write completed.
    Append { seq: u64, syncing: bool },
    /// Checkpoint `seq` into generation `generation`: `syncing` once both writes completed.
    Checkpoint {
        seq: u64,
        generation: u32,
        syncing: bool,
    },
}

/// Runs a shard's metadata journal on its driver (see the module docs).
#[derive(Debug)]
pub struct MetaIo<S: StoreDir> {
    dir: S,
    kind: u64,
    next_key: u64,
    generation: u32,
    journal: Option<FileId>,
    journal_bytes: u64,
    snapshot_file: Option<FileId>,
    new_journal: Option<FileId>,
    phase: Phase,
    in_flight: HashMap<u64, Pending>,
    /// Ops of the current stage still running, and whether one failed.
    stage_left: usize,
    stage_failed: bool,
    /// A checkpoint is due (at start, past the size bound, after a failure).
    need_checkpoint: bool,
    /// No checkpoint attempt before this (driver clock), after a failure.
    retry_at_ns: u64,
    /// Closes of files no longer used, submitted at the next pump.
    to_close: Vec<FileId>,
    /// The last group or checkpoint failed and no checkpoint has succeeded since.
    failing: bool,
    /// Journal bytes past which a checkpoint is due ([`JOURNAL_CHECKPOINT_BYTES`]; tests lower it).
    checkpoint_bytes: u64,
}

impl<S: StoreDir> MetaIo<S> {
    /// An adapter over `dir` whose recovered journal generation was `generation`; its first
    /// pump checkpoints into generation `generation + 1`.
    pub fn new(dir: S, generation: u32) -> Self {
        MetaIo {
            dir,
            kind: u64::from(META_TOKEN_KIND),
            next_key: 0,
            generation,
            journal: None,
            journal_bytes: 0,
            snapshot_file: None,
            new_journal: None,
            phase: Phase::Idle,
            in_flight: HashMap::new(),
            stage_left: 0,
            stage_failed: false,
            need_checkpoint: true,
            retry_at_ns: 0,
            to_close: Vec::new(),
            failing: false,
            checkpoint_bytes: JOURNAL_CHECKPOINT_BYTES,
        }
    }

    /// The same with checkpoints past `bytes` of journal (tests exercise checkpoints with it).
    pub fn with_checkpoint_bytes(mut self, bytes: u64) -> Self {
        self.checkpoint_bytes = bytes;
        self
    }

    /// Whether this adapter submitted the operation tagged `token`.
    pub fn owns(&self, token: Token) -> bool {
        token >> TOKEN_KIND_SHIFT == self.kind
    }

    /// Nothing in flight and nothing due.
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Idle && self.in_flight.is_empty() && !self.need_checkpoint
    }

    /// The current journal generation.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The directory.
    pub fn dir(&self) -> &S {
        &self.dir
    }

    /// Gives the directory back (a `SimDir` to crash and recover from).
    pub fn into_dir(self) -> S {
        self.dir
    }

    /// Whether the shard must not sleep: changes wait and nothing is in flight to wake it.
    pub fn busy(&self, meta: &Meta, now_ns: u64) -> bool {
        self.phase == Phase::Idle
            && ((meta.has_dirty() && !self.need_checkpoint)
                || (self.need_checkpoint && now_ns >= self.retry_at_ns))
    }

    /// Whether a draining shard may stop: nothing in flight, and nothing left to write (or the
    /// journal is failing, when waiting would not help).
    pub fn can_stop(&self, meta: &Meta) -> bool {
        self.phase == Phase::Idle
            && self.in_flight.is_empty()
            && (self.failing || (!self.need_checkpoint && !meta.has_dirty()))
    }

    fn token(&mut self) -> (u64, Token) {
        self.next_key = (self.next_key + 1) & TOKEN_LOW_MASK;
        (
            self.next_key,
            (self.kind << TOKEN_KIND_SHIFT) | self.next_key,
        )
    }

    /// End of a loop turn: starts a checkpoint or the next group if nothing is in flight.
    pub fn pump<D: Driver>(&mut self, ctx: &mut ShardCtx, driver: &mut D) {
        if !ctx.app.meta.enabled {
            return;
        }
        for file in std::mem::take(&mut self.to_close) {
            let (_, t) = self.token();
            let _ = driver.submit(t, Op::CloseFile { file });
        }
        if self.phase != Phase::Idle {
            return;
        }
        if self.need_checkpoint {
            if driver.now_ns() >= self.retry_at_ns {
                self.start_checkpoint(ctx, driver);
            }
            return;
        }
        if !ctx.app.meta.has_dirty() {
            return;
        }
        let Some(journal) = self.journal else {
            self.need_checkpoint = true;
            return;
        };
        let mut bytes = Vec::new();
        let app = &mut ctx.app;
        let (seq, n) = app.meta.take_group(
            &app.users,
            &app.application_owners,
            &app.guilds.by_id,
            &mut bytes,
        );
        if bytes.is_empty() {
            settle(ctx, seq, true);
            return;
        }
        let stats = &mut ctx.app.meta.stats;
        stats.groups += 1;
        stats.records += n;
        stats.bytes += bytes.len() as u64;
        let offset = self.journal_bytes;
        self.journal_bytes += bytes.len() as u64;
        self.phase = Phase::Append {
            seq,
            syncing: false,
        };
        self.stage_left = 0;
        self.stage_failed = false;
        self.submit_write(driver, Target::Journal, journal, bytes, offset);
        self.check_stage(ctx, driver);
    }

    /// Takes a completion of an operation this adapter submitted; false for any other token.
    pub fn on_completion<D: Driver>(
        &mut self,
        ctx: &mut ShardCtx,
        driver: &mut D,
        c: Completion,
    ) -> bool {
        if !self.owns(c.token) {
            return false;
        }
        let key = c.token & TOKEN_LOW_MASK;
        let Some(mut p) = self.in_flight.remove(&key) else {
            // A close of a retired file: nothing waits for it.
            return true;
        };
        let ok = match (c.kind, p.write.as_mut()) {
            (CompletionKind::WriteAt { result: Ok(n), .. }, Some((data, offset, done))) => {
                *done += n;
                if *done < data.len() {
                    if n > 0 && p.resubmits < SHORT_WRITE_RESUBMITS_MAX {
                        p.resubmits += 1;
                        let rest = data.get(*done..).unwrap_or_default().to_vec();
                        let at = *offset + *done as u64;
                        let (target, file) = (p.target, p.file);
                        self.stage_left -= 1;
                        self.submit_write(driver, target, file, rest, at);
                        self.check_stage(ctx, driver);
                        return true;
                    }
                    false
                } else {
                    true
                }
            }
            (CompletionKind::Fdatasync { result }, None) => result.is_ok(),
            (CompletionKind::WriteAt { result: Err(e), .. }, _) => {
                tracing::error!(error = %e, target = ?p.target, "metadata write failed");
                false
            }
            _ => false,
        };
        self.stage_left = self.stage_left.saturating_sub(1);
        self.stage_failed |= !ok;
        self.check_stage(ctx, driver);
        true
    }

    fn submit_write<D: Driver>(
        &mut self,
        driver: &mut D,
        target: Target,
        file: FileId,
        data: Vec<u8>,
        offset: u64,
    ) {
        let mut buf = AlignedBuf::new(data.len());
        if let Some(dst) = buf.get_mut(..data.len()) {
            dst.copy_from_slice(&data);
        }
        let (key, t) = self.token();
        let len = data.len();
        let op = Op::WriteAt {
            file,
            offset,
            buf,
            len,
        };
        self.stage_left += 1;
        match driver.submit(t, op) {
            Ok(()) => {
                self.in_flight.insert(
                    key,
                    Pending {
                        target,
                        file,
                        write: Some((data, offset, 0)),
                        resubmits: 0,
                    },
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "metadata write refused");
                self.stage_left -= 1;
                self.stage_failed = true;
            }
        }
    }

    fn submit_sync<D: Driver>(&mut self, driver: &mut D, target: Target, file: FileId) {
        let (key, t) = self.token();
        self.stage_left += 1;
        match driver.submit(t, Op::Fdatasync { file }) {
            Ok(()) => {
                self.in_flight.insert(
                    key,
                    Pending {
                        target,
                        file,
                        write: None,
                        resubmits: 0,
                    },
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "metadata fdatasync refused");
                self.stage_left -= 1;
                self.stage_failed = true;
            }
        }
    }

    /// Moves to the next stage once every operation of the current one completed.
    fn check_stage<D: Driver>(&mut self, ctx: &mut ShardCtx, driver: &mut D) {
        if self.stage_left > 0 {
            return;
        }
        let failed = std::mem::take(&mut self.stage_failed);
        match self.phase {
            Phase::Idle => {}
            Phase::Append { seq, .. } if failed => self.fail(ctx, driver, seq),
            Phase::Append {
                seq,
                syncing: false,
            } => {
                self.phase = Phase::Append { seq, syncing: true };
                if let Some(j) = self.journal {
                    self.submit_sync(driver, Target::Journal, j);
                }
                self.check_stage(ctx, driver);
            }
            Phase::Append { seq, syncing: true } => {
                self.phase = Phase::Idle;
                if self.journal_bytes >= self.checkpoint_bytes {
                    self.need_checkpoint = true;
                }
                settle(ctx, seq, true);
            }
            Phase::Checkpoint { seq, .. } if failed => self.fail(ctx, driver, seq),
            Phase::Checkpoint {
                seq,
                generation,
                syncing: false,
            } => {
                self.phase = Phase::Checkpoint {
                    seq,
                    generation,
                    syncing: true,
                };
                if let Some(f) = self.snapshot_file {
                    self.submit_sync(driver, Target::Snapshot, f);
                }
                if let Some(f) = self.new_journal {
                    self.submit_sync(driver, Target::NewJournal, f);
                }
                self.check_stage(ctx, driver);
            }
            Phase::Checkpoint {
                seq,
                generation,
                syncing: true,
            } => self.install_checkpoint(ctx, driver, seq, generation),
        }
    }

    /// A group or checkpoint failed: its replies get 500, and a checkpoint (after a delay)
    /// rewrites everything into a new journal.
    fn fail<D: Driver>(&mut self, ctx: &mut ShardCtx, driver: &mut D, seq: u64) {
        tracing::error!(
            seq,
            "metadata group failed; checkpointing into a new journal"
        );
        ctx.app.meta.stats.failures += 1;
        self.phase = Phase::Idle;
        self.need_checkpoint = true;
        self.failing = true;
        self.retry_at_ns = driver.now_ns() + RETRY_DELAY_NS;
        self.to_close.extend(self.snapshot_file.take());
        self.to_close.extend(self.new_journal.take());
        settle(ctx, seq, false);
    }

    fn open<D: Driver>(&mut self, driver: &mut D, name: &str) -> Result<FileId, String> {
        let path = self
            .dir
            .path_for(name, true)
            .map_err(|e| format!("{name}: {e:?}"))?;
        let opts = FileOptions {
            create: true,
            truncate: true,
            direct: false,
        };
        driver.open_file(&path, opts).map_err(|e: DriverError| {
            self.dir.abandon(name);
            format!("{}: {e}", path.display())
        })
    }

    /// Writes the whole state as a snapshot and a new, empty journal (see the module docs).
    fn start_checkpoint<D: Driver>(&mut self, ctx: &mut ShardCtx, driver: &mut D) {
        let generation = self.generation.wrapping_add(1);
        let seq = ctx.app.meta.take_checkpoint_group();
        let bytes = match encode_live_snapshot(ctx, generation) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "metadata snapshot not encoded");
                return self.fail(ctx, driver, seq);
            }
        };
        let files = self
            .open(driver, SNAPSHOT_TMP_NAME)
            .and_then(|s| Ok((s, self.open(driver, &journal_name(generation))?)));
        let (snap, log) = match files {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "metadata checkpoint: open failed");
                return self.fail(ctx, driver, seq);
            }
        };
        self.snapshot_file = Some(snap);
        self.new_journal = Some(log);
        self.need_checkpoint = false;
        self.phase = Phase::Checkpoint {
            seq,
            generation,
            syncing: false,
        };
        self.stage_left = 0;
        self.stage_failed = false;
        let mut header = Vec::new();
        write_header(&mut header, JOURNAL_MAGIC, generation);
        self.submit_write(driver, Target::Snapshot, snap, bytes, 0);
        self.submit_write(driver, Target::NewJournal, log, header, 0);
        self.check_stage(ctx, driver);
    }

    /// Both checkpoint files are durable: rename the snapshot into place, make that durable,
    /// switch to the new journal and drop the old ones.
    fn install_checkpoint<D: Driver>(
        &mut self,
        ctx: &mut ShardCtx,
        driver: &mut D,
        seq: u64,
        generation: u32,
    ) {
        let installed = self
            .dir
            .rename(SNAPSHOT_TMP_NAME, SNAPSHOT_NAME)
            .and_then(|()| self.dir.sync());
        if let Err(e) = installed {
            tracing::error!(error = ?e, "metadata checkpoint: rename failed");
            return self.fail(ctx, driver, seq);
        }
        // The snapshot now names the new journal: recovery no longer reads the old ones.
        self.to_close.extend(self.journal.take());
        self.to_close.extend(self.snapshot_file.take());
        self.journal = self.new_journal.take();
        self.journal_bytes = meta_format::HEADER_BYTES as u64;
        self.generation = generation;
        if let Ok(names) = self.dir.list() {
            for n in names {
                if parse_journal_name(&n).is_some_and(|g| g != generation) {
                    let _ = self.dir.remove(&n);
                }
            }
        }
        self.phase = Phase::Idle;
        self.failing = false;
        ctx.app.meta.stats.checkpoints += 1;
        settle(ctx, seq, true);
    }
}

/// The whole live state of a shard as a snapshot followed by journal `generation`.
fn encode_live_snapshot(ctx: &ShardCtx, generation: u32) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    write_header(&mut out, SNAPSHOT_MAGIC, generation);
    let mut n = 0u64;
    let mut users: Vec<&UserRecord> = ctx.app.users.values().collect();
    users.sort_by_key(|u| u.user.id.0);
    for u in users {
        let owner = ctx.app.application_owners.get(&u.user.id.0);
        write_record(&mut out, &Record::User(StoredUser::of(u, owner)))?;
        n += 1;
    }
    let mut guilds: Vec<&GuildEntry> = ctx.app.guilds.by_id.values().collect();
    guilds.sort_by_key(|e| e.guild.id());
    for e in guilds {
        let g = e.guild.id();
        write_record(&mut out, &Record::Guild(e.guild.to_core()))?;
        n += 1;
        for m in e.guild.members() {
            let r = Record::Member {
                guild: g,
                member: m.clone(),
            };
            write_record(&mut out, &r)?;
            n += 1;
        }
        for b in e.guild.bans() {
            let r = Record::Ban {
                guild: g,
                ban: b.clone(),
            };
            write_record(&mut out, &r)?;
            n += 1;
        }
    }
    write_record(&mut out, &Record::End { records: n })?;
    Ok(out)
}

/// A shard's recovered metadata, ready to install.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The journal generation replayed (the next checkpoint writes the one after).
    pub generation: u32,
    /// Users homed on this shard, with their guild lists filled in, and their application
    /// owners.
    pub users: Vec<(UserRecord, Option<serde_json::Value>)>,
    /// Guilds this shard owns.
    pub guilds: Vec<Guild>,
    /// Channel id -> guild id, for every guild of the node.
    pub channel_guild: HashMap<u64, u64>,
    /// Invite code -> guild id, for every guild of the node.
    pub invite_guild: HashMap<String, u64>,
}

/// The files of a shard directory: the snapshot's bytes and every journal's (name, bytes).
type ShardFiles = (Option<Vec<u8>>, Vec<(String, Vec<u8>)>);

fn read_shard_files(dir: &Path) -> Result<ShardFiles, MetaError> {
    let io = |path: &Path, source| MetaError::Io {
        path: path.to_owned(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, Vec::new())),
        Err(e) => return Err(io(dir, e)),
    };
    let mut snapshot = None;
    let mut journals = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io(dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let path = entry.path();
        if name == SNAPSHOT_NAME {
            snapshot = Some(std::fs::read(&path).map_err(|e| io(&path, e))?);
        } else if parse_journal_name(&name).is_some() {
            journals.push((name, std::fs::read(&path).map_err(|e| io(&path, e))?));
        }
    }
    Ok((snapshot, journals))
}

/// Recovers shard `shard`'s state from its files.
pub fn recover_shard(
    shard: usize,
    snapshot: Option<&[u8]>,
    journals: &[(String, Vec<u8>)],
) -> Result<(MetaState, u32), MetaError> {
    let (state, generation, dropped) = meta_format::recover(snapshot, journals)
        .map_err(|source| MetaError::Format { shard, source })?;
    if dropped > 0 {
        tracing::warn!(
            shard,
            dropped,
            "metadata journal: torn tail dropped (a group that was never acknowledged)"
        );
    }
    Ok((state, generation))
}

/// Turns every shard's recovered state into what each shard installs, deriving the directories
/// (channel and invite -> guild on every shard, each user's guild list on their home shard).
pub fn assemble(
    states: Vec<(PathBuf, MetaState, u32)>,
    shards: usize,
) -> Result<Vec<Recovered>, MetaError> {
    let mut out: Vec<Recovered> = (0..shards).map(|_| Recovered::default()).collect();
    let mut channel_guild = HashMap::new();
    let mut invite_guild = HashMap::new();
    let mut user_guilds: HashMap<u64, Vec<u64>> = HashMap::new();
    for (i, (dir, state, generation)) in states.into_iter().enumerate() {
        let moved = |what, id| MetaError::ShardCountChanged {
            dir: dir.clone(),
            what,
            id,
            owner: owner_shard(id, shards),
            shards,
        };
        if let Some((&id, _)) = state
            .users
            .iter()
            .find(|(id, _)| owner_shard(**id, shards) != i)
        {
            return Err(moved("user", id));
        }
        if let Some((&id, _)) = state
            .guilds
            .iter()
            .find(|(id, _)| owner_shard(**id, shards) != i)
        {
            return Err(moved("guild", id));
        }
        let Some(slot) = out.get_mut(i) else {
            // A directory past the shard count holding metadata: the first key says so.
            let id = state
                .users
                .keys()
                .chain(state.guilds.keys())
                .next()
                .copied()
                .unwrap_or(0);
            return Err(moved("data of", id));
        };
        slot.generation = generation;
        for (gid, sg) in state.guilds {
            let Some(core) = sg.core else { continue };
            let guild = Guild::from_parts(core, sg.members.into_values(), sg.bans.into_values())
                .map_err(|source| MetaError::Guild { shard: i, source })?;
            for c in guild.channels() {
                channel_guild.insert(c.id, gid);
            }
            for inv in guild.invites() {
                invite_guild.insert(inv.code.clone(), gid);
            }
            for m in guild.members() {
                user_guilds.entry(m.user.id).or_default().push(gid);
            }
            slot.guilds.push(guild);
        }
        for (_, u) in state.users {
            let owner = u.application_owner.clone();
            slot.users.push((u.to_record(), owner));
        }
    }
    for r in &mut out {
        for (u, _) in &mut r.users {
            if let Some(gs) = user_guilds.get(&u.user.id.0) {
                u.guilds = gs.clone();
                u.guilds.sort_unstable();
                u.guilds.truncate(crate::guilds::GUILDS_PER_USER_MAX);
            }
        }
        r.channel_guild.clone_from(&channel_guild);
        r.invite_guild.clone_from(&invite_guild);
    }
    Ok(out)
}

/// Recovers every shard of the node whose data lives in `data_dir` (`shard-<i>` each), before
/// any shard runs. Directories of shards past `shards` holding metadata are refused.
pub fn recover_node(data_dir: &Path, shards: usize) -> Result<Vec<Recovered>, MetaError> {
    let mut states = Vec::new();
    let mut i = 0;
    loop {
        let dir = data_dir.join(format!("shard-{i}"));
        if i >= shards && !dir.exists() {
            break;
        }
        let (snapshot, journals) = read_shard_files(&dir)?;
        let (state, generation) = recover_shard(i, snapshot.as_deref(), &journals)?;
        if i >= shards && state == MetaState::default() {
            break;
        }
        states.push((dir, state, generation));
        i += 1;
    }
    assemble(states, shards)
}

/// Installs a shard's recovered metadata in its state and turns its journal on.
pub fn install(ctx: &mut ShardCtx, r: Recovered) {
    for (u, owner) in r.users {
        let id = u.user.id.0;
        if let Some(o) = owner {
            ctx.app.application_owners.insert(id, o);
        }
        ctx.app.users.insert(id, u);
    }
    for guild in r.guilds {
        ctx.app.guilds.by_id.insert(
            guild.id(),
            GuildEntry {
                guild,
                session_shards: 0,
                presence: Default::default(),
            },
        );
    }
    ctx.app.channel_guild = r.channel_guild;
    ctx.app.invite_guild = r.invite_guild;
    enable(&mut ctx.app.meta);
}

/// Turns journaling on (the shard has a data directory and a [`MetaIo`]).
pub fn enable(m: &mut Meta) {
    m.enabled = true;
    m.open_seq = m.open_seq.max(1);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use gateway_core::guild::{Audience, UserInfo};
    use serde_json::json;

    fn ev(name: &'static str, data: serde_json::Value) -> GuildEvent {
        GuildEvent {
            name,
            data,
            audience: Audience::Guild,
        }
    }

    #[test]
    fn events_mark_the_keys_they_change() {
        let mut m = Meta::default();
        m.note_events(1, &[ev("GUILD_ROLE_CREATE", json!({}))]);
        assert!(!m.has_dirty(), "disabled: nothing is tracked");
        enable(&mut m);
        m.note_events(
            1,
            &[
                ev("TYPING_START", json!({})),
                ev("MESSAGE_CREATE", json!({})),
            ],
        );
        assert!(!m.has_dirty());
        m.note_events(
            1,
            &[ev("GUILD_MEMBER_UPDATE", json!({"user": {"id": "5"}}))],
        );
        assert_eq!(m.members.iter().copied().collect::<Vec<_>>(), vec![(1, 5)]);
        assert!(
            m.cores.is_empty(),
            "a member update does not rewrite the core"
        );
        m.note_events(1, &[ev("GUILD_BAN_ADD", json!({"user": {"id": "6"}}))]);
        assert!(m.bans.contains(&(1, 6)) && m.members.contains(&(1, 6)));
        m.note_events(2, &[ev("CHANNEL_UPDATE", json!({"id": "9"}))]);
        assert!(m.cores.contains(&2));
    }

    #[test]
    fn groups_hold_current_values_and_deletions() {
        let mut m = Meta::default();
        enable(&mut m);
        let mut next = 10u64;
        let mut ids = || {
            next += 1;
            next
        };
        let mut g = Guild::new(7, "gg", UserInfo::new(1, "o"), 5, &mut ids).unwrap();
        g.add_member(UserInfo::new(2, "t"), 6).unwrap();
        let mut guilds = HashMap::new();
        guilds.insert(
            7,
            GuildEntry {
                guild: g,
                session_shards: 0,
                presence: Default::default(),
            },
        );
        m.note_guild(7);
        m.note_member(7, 2);
        m.note_member(7, 3);
        m.note_guild(8);
        let mut out = Vec::new();
        let (seq, n) = m.take_group(&HashMap::new(), &HashMap::new(), &guilds, &mut out);
        assert_eq!((seq, n), (1, 4));
        assert!(!m.has_dirty());
        let mut j = Vec::new();
        write_header(&mut j, JOURNAL_MAGIC, 0);
        j.extend_from_slice(&out);
        let read = meta_format::read_journal("meta-0.log", &j).unwrap();
        assert!(matches!(read.records[0], Record::Guild(_)));
        assert_eq!(read.records[1], Record::GuildDeleted { guild: 8 });
        assert!(matches!(read.records[2], Record::Member { guild: 7, .. }));
        assert_eq!(read.records[3], Record::MemberRemoved { guild: 7, user: 3 });
    }
}
