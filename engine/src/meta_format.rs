//! The on-disk format of a shard's metadata (users, guilds, members, bans), sans-IO: bytes in,
//! records and state out. [`crate::meta`] runs it on the driver.
//!
//! # Files (in `data_dir/shard-<i>/`, apart from the message store's)
//!
//! - `meta-<gen>.log`: the journal of generation `gen`, appended one group per loop turn.
//! - `meta.snap`: the snapshot (checkpoint) that the journal named in its header continues.
//!
//! Both start with the same 16-byte header: magic (8 bytes: `HRTHMLOG` or `HRTHSNAP`), format
//! version (u32 LE) and generation (u32 LE): for a snapshot, the generation of the journal that
//! follows it; for a journal, its own. A version this build does not know is refused with a
//! clear error instead of being misread.
//!
//! Then records, each `len: u32 LE | crc: u32 LE | payload[len]`, with `crc` the CRC32C of the
//! length bytes and the payload (so a torn length is caught as surely as a torn payload). The
//! payload is one [`Record`] as JSON: metadata is small next to messages and changes rarely, so
//! a self-describing encoding that is easy to evolve and to inspect is worth its bytes.
//!
//! # Reading
//!
//! A journal is read up to its first record that is incomplete or fails its CRC: with group
//! commit, only the group whose fdatasync had not completed can be torn, and nothing in it was
//! acknowledged. Everything after that point is dropped (the next start writes a new journal
//! generation, so the garbage is never appended after).
//!
//! A snapshot is written whole, synced and renamed into place before its journal is used, so any
//! damage in it (bad header, bad CRC, missing end record, count mismatch) is corruption, reported
//! as an error naming the file: silently starting empty would lose every guild.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap};

use gateway_core::gateway::Snowflake;
use gateway_core::gateway::ready::ReadyUser;
use gateway_core::guild::persist::GuildCore;
use gateway_core::guild::{Ban, Member};
use serde::{Deserialize, Serialize};

use crate::app::UserRecord;

/// Current format version of the metadata files.
pub const META_FORMAT_VERSION: u32 = 1;
/// Magic of a journal file.
pub const JOURNAL_MAGIC: [u8; 8] = *b"HRTHMLOG";
/// Magic of a snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"HRTHSNAP";
/// Bytes of a file header.
pub const HEADER_BYTES: usize = 16;
/// Bytes of a record's frame (length and CRC).
pub const FRAME_BYTES: usize = 8;
/// Largest record payload: a guild core at its limits (500 channels with 100 overwrites each,
/// 250 roles, 1000 invites) is a few MiB of JSON; a longer length field is damage, and is never
/// allocated.
pub const RECORD_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Name of the snapshot file.
pub const SNAPSHOT_NAME: &str = "meta.snap";
/// Name the snapshot is written under before it is renamed into place.
pub const SNAPSHOT_TMP_NAME: &str = "meta.snap.tmp";

/// Name of the journal of generation `gen`.
pub fn journal_name(generation: u32) -> String {
    format!("meta-{generation}.log")
}

/// The generation of a journal file name, if it is one.
pub fn parse_journal_name(name: &str) -> Option<u32> {
    name.strip_prefix("meta-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// Metadata files that cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaFormatError {
    /// The file does not start with a metadata header of the expected kind.
    #[error("{file}: not a metadata {kind} file (bad magic)")]
    BadMagic {
        /// The file.
        file: String,
        /// "journal" or "snapshot".
        kind: &'static str,
    },
    /// Written by a format version this build does not read.
    #[error("{file}: metadata format version {found}, this build reads version {expected}")]
    Version {
        /// The file.
        file: String,
        /// The version found.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    /// A snapshot is damaged (a snapshot is never torn: it is synced before it is used).
    #[error("{file}: corrupt snapshot at byte {offset}: {what}")]
    CorruptSnapshot {
        /// The file.
        file: String,
        /// Where.
        offset: usize,
        /// What is wrong.
        what: String,
    },
    /// A record passed its CRC but does not decode (written by a different build, or a bug).
    #[error("{file}: record at byte {offset} does not decode: {what}")]
    BadRecord {
        /// The file.
        file: String,
        /// Where.
        offset: usize,
        /// The decoder's complaint.
        what: String,
    },
}

/// A user as stored: the directory entry without what is derived (guild list, sessions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredUser {
    /// User id.
    pub id: u64,
    /// Username.
    pub username: String,
    /// Discriminator.
    pub discriminator: String,
    /// Display name.
    pub global_name: Option<String>,
    /// Avatar hash.
    pub avatar: Option<String>,
    /// Bot account.
    pub bot: bool,
    /// User flags.
    pub flags: u64,
    /// Public user flags.
    pub public_flags: u64,
    /// Locale.
    pub locale: String,
    /// The bot's application id.
    pub application_id: Option<u64>,
    /// Privileged intents granted.
    pub privileged: u64,
    /// The public user object of the application's owner, when the control plane named one.
    pub application_owner: Option<serde_json::Value>,
}

impl StoredUser {
    /// The stored form of a directory entry.
    pub fn of(u: &UserRecord, owner: Option<&serde_json::Value>) -> Self {
        StoredUser {
            id: u.user.id.0,
            username: u.user.username.clone(),
            discriminator: u.user.discriminator.clone(),
            global_name: u.user.global_name.clone(),
            avatar: u.user.avatar.clone(),
            bot: u.user.bot,
            flags: u.user.flags,
            public_flags: u.user.public_flags,
            locale: u.user.locale.clone(),
            application_id: u.application_id,
            privileged: u.privileged,
            application_owner: owner.cloned(),
        }
    }

    /// The directory entry (no guilds, no sessions: those are rebuilt and re-registered).
    pub fn to_record(&self) -> UserRecord {
        let mut user = ReadyUser::bot(self.id, &self.username);
        user.id = Snowflake(self.id);
        user.discriminator.clone_from(&self.discriminator);
        user.global_name.clone_from(&self.global_name);
        user.avatar.clone_from(&self.avatar);
        user.bot = self.bot;
        user.flags = self.flags;
        user.public_flags = self.public_flags;
        user.locale.clone_from(&self.locale);
        UserRecord {
            user,
            application_id: self.application_id,
            privileged: self.privileged,
            guilds: Vec::new(),
            sessions: Vec::new(),
        }
    }
}

/// One keyed change of a shard's metadata (a journal entry or a snapshot entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t")]
pub enum Record {
    /// A user, whole (key: user id).
    User(StoredUser),
    /// A guild's bounded part, whole (key: guild id).
    Guild(GuildCore),
    /// The guild and all its members and bans are gone.
    GuildDeleted {
        /// The guild.
        guild: u64,
    },
    /// A member, whole (key: guild, user).
    Member {
        /// The guild.
        guild: u64,
        /// The member.
        member: Member,
    },
    /// A member left, was kicked or banned.
    MemberRemoved {
        /// The guild.
        guild: u64,
        /// The user.
        user: u64,
    },
    /// A ban, whole (key: guild, user).
    Ban {
        /// The guild.
        guild: u64,
        /// The ban.
        ban: Ban,
    },
    /// A ban was lifted.
    BanRemoved {
        /// The guild.
        guild: u64,
        /// The user.
        user: u64,
    },
    /// Last record of a snapshot: how many records precede it (a truncated snapshot is caught).
    End {
        /// Records before this one.
        records: u64,
    },
}

/// A guild as stored: its core, members and bans.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredGuild {
    /// The bounded part (None until a `Guild` record arrives: members may be replayed first
    /// only if the journal is damaged, and such a guild is dropped).
    pub core: Option<GuildCore>,
    /// Members by user id.
    pub members: BTreeMap<u64, Member>,
    /// Bans by user id.
    pub bans: BTreeMap<u64, Ban>,
}

/// A shard's metadata as the files describe it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetaState {
    /// Users by id.
    pub users: HashMap<u64, StoredUser>,
    /// Guilds by id.
    pub guilds: HashMap<u64, StoredGuild>,
}

impl MetaState {
    /// Applies one record (keyed upserts and deletes: replaying a record twice changes nothing).
    pub fn apply(&mut self, r: Record) {
        match r {
            Record::User(u) => {
                self.users.insert(u.id, u);
            }
            Record::Guild(core) => {
                let id = core.id;
                self.guilds.entry(id).or_default().core = Some(core);
            }
            Record::GuildDeleted { guild } => {
                self.guilds.remove(&guild);
            }
            Record::Member { guild, member } => {
                self.guilds
                    .entry(guild)
                    .or_default()
                    .members
                    .insert(member.user.id, member);
            }
            Record::MemberRemoved { guild, user } => {
                if let Some(g) = self.guilds.get_mut(&guild) {
                    g.members.remove(&user);
                }
            }
            Record::Ban { guild, ban } => {
                self.guilds
                    .entry(guild)
                    .or_default()
                    .bans
                    .insert(ban.user.id, ban);
            }
            Record::BanRemoved { guild, user } => {
                if let Some(g) = self.guilds.get_mut(&guild) {
                    g.bans.remove(&user);
                }
            }
            Record::End { .. } => {}
        }
    }

    /// Every record that rebuilds this state, in a stable order (users, then each guild's core,
    /// members and bans), for a snapshot.
    pub fn records(&self) -> impl Iterator<Item = Record> + '_ {
        let mut users: Vec<&StoredUser> = self.users.values().collect();
        users.sort_by_key(|u| u.id);
        let mut guilds: Vec<(&u64, &StoredGuild)> = self.guilds.iter().collect();
        guilds.sort_by_key(|(id, _)| **id);
        users
            .into_iter()
            .map(|u| Record::User(u.clone()))
            .chain(guilds.into_iter().flat_map(|(&id, g)| {
                g.core
                    .iter()
                    .map(|c| Record::Guild(c.clone()))
                    .chain(g.members.values().map(move |m| Record::Member {
                        guild: id,
                        member: m.clone(),
                    }))
                    .chain(g.bans.values().map(move |b| Record::Ban {
                        guild: id,
                        ban: b.clone(),
                    }))
            }))
    }
}

/// Appends a file header.
pub fn write_header(out: &mut Vec<u8>, magic: [u8; 8], generation: u32) {
    out.extend_from_slice(&magic);
    out.extend_from_slice(&META_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&generation.to_le_bytes());
}

/// Appends one framed record. Fails only if the record cannot be serialized or is larger than
/// [`RECORD_BYTES_MAX`] (nothing is appended then).
pub fn write_record(out: &mut Vec<u8>, r: &Record) -> Result<(), serde_json::Error> {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_BYTES]);
    if let Err(e) = serde_json::to_writer(&mut *out, r) {
        out.truncate(start);
        return Err(e);
    }
    let len = out.len() - start - FRAME_BYTES;
    if len > RECORD_BYTES_MAX {
        out.truncate(start);
        return Err(serde::ser::Error::custom(
            "record larger than RECORD_BYTES_MAX",
        ));
    }
    let len_bytes = (len as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&len_bytes),
        out.get(start + FRAME_BYTES..).unwrap_or_default(),
    );
    let crc_bytes = crc.to_le_bytes();
    if let Some(dst) = out.get_mut(start..start + FRAME_BYTES) {
        for (d, b) in dst.iter_mut().zip(len_bytes.iter().chain(&crc_bytes)) {
            *d = *b;
        }
    }
    Ok(())
}

/// Reads a header of the `magic` kind; returns its generation.
fn read_header(
    file: &str,
    bytes: &[u8],
    magic: [u8; 8],
    kind: &'static str,
) -> Result<u32, MetaFormatError> {
    let bad_magic = || MetaFormatError::BadMagic {
        file: file.to_owned(),
        kind,
    };
    let h = bytes.get(..HEADER_BYTES).ok_or_else(bad_magic)?;
    if h.get(..8) != Some(&magic[..]) {
        return Err(bad_magic());
    }
    let word = |at: usize| -> u32 {
        let mut w = [0u8; 4];
        if let Some(b) = h.get(at..at + 4) {
            w.copy_from_slice(b);
        }
        u32::from_le_bytes(w)
    };
    let version = word(8);
    if version != META_FORMAT_VERSION {
        return Err(MetaFormatError::Version {
            file: file.to_owned(),
            found: version,
            expected: META_FORMAT_VERSION,
        });
    }
    Ok(word(12))
}

/// The next frame at `at`: `Ok(Some((payload, next)))`, `Ok(None)` at a clean end, `Err(what)`
/// for an incomplete or damaged record.
fn next_frame(bytes: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, &'static str> {
    if at == bytes.len() {
        return Ok(None);
    }
    let frame = bytes.get(at..at + FRAME_BYTES).ok_or("incomplete frame")?;
    let mut len_bytes = [0u8; 4];
    let mut crc_bytes = [0u8; 4];
    len_bytes.copy_from_slice(frame.get(..4).unwrap_or(&[0; 4]));
    crc_bytes.copy_from_slice(frame.get(4..).unwrap_or(&[0; 4]));
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > RECORD_BYTES_MAX {
        return Err("record length past the limit");
    }
    let start = at + FRAME_BYTES;
    let payload = bytes.get(start..start + len).ok_or("incomplete record")?;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload);
    if crc != u32::from_le_bytes(crc_bytes) {
        return Err("bad CRC");
    }
    Ok(Some((payload, start + len)))
}

/// What reading a journal found.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalRead {
    /// Its generation (from the header).
    pub generation: u32,
    /// Records, in order, up to the first damaged one.
    pub records: Vec<Record>,
    /// Bytes of the file that hold the header and those records.
    pub valid_bytes: usize,
    /// Bytes past them that were dropped (a torn last group), 0 for a clean end.
    pub dropped_bytes: usize,
}

/// Reads a journal file: records up to the torn tail, if any.
///
/// A file too short for a header is an empty journal (its creation was torn: nothing was ever
/// acknowledged in it). A full header with a wrong magic or version is an error.
pub fn read_journal(file: &str, bytes: &[u8]) -> Result<JournalRead, MetaFormatError> {
    if bytes.len() < HEADER_BYTES {
        return Ok(JournalRead {
            generation: parse_journal_name(file).unwrap_or(0),
            records: Vec::new(),
            valid_bytes: 0,
            dropped_bytes: bytes.len(),
        });
    }
    let generation = read_header(file, bytes, JOURNAL_MAGIC, "journal")?;
    let mut at = HEADER_BYTES;
    let mut records = Vec::new();
    loop {
        match next_frame(bytes, at) {
            Ok(None) | Err(_) => break,
            Ok(Some((payload, next))) => {
                let r: Record =
                    serde_json::from_slice(payload).map_err(|e| MetaFormatError::BadRecord {
                        file: file.to_owned(),
                        offset: at,
                        what: e.to_string(),
                    })?;
                records.push(r);
                at = next;
            }
        }
    }
    Ok(JournalRead {
        generation,
        records,
        valid_bytes: at,
        dropped_bytes: bytes.len() - at,
    })
}

/// Reads a snapshot file whole: its generation (of the journal that follows) and its state.
pub fn read_snapshot(file: &str, bytes: &[u8]) -> Result<(u32, MetaState), MetaFormatError> {
    let generation = read_header(file, bytes, SNAPSHOT_MAGIC, "snapshot")?;
    let corrupt = |offset: usize, what: String| MetaFormatError::CorruptSnapshot {
        file: file.to_owned(),
        offset,
        what,
    };
    let mut state = MetaState::default();
    let mut at = HEADER_BYTES;
    let mut count = 0u64;
    loop {
        let (payload, next) = match next_frame(bytes, at) {
            Ok(Some(f)) => f,
            Ok(None) => return Err(corrupt(at, "no end record (truncated)".into())),
            Err(what) => return Err(corrupt(at, what.into())),
        };
        let r: Record = serde_json::from_slice(payload).map_err(|e| corrupt(at, e.to_string()))?;
        if let Record::End { records } = r {
            if records != count {
                return Err(corrupt(
                    at,
                    format!("end record counts {records} records, found {count}"),
                ));
            }
            if next != bytes.len() {
                return Err(corrupt(next, "bytes after the end record".into()));
            }
            return Ok((generation, state));
        }
        state.apply(r);
        count += 1;
        at = next;
    }
}

/// Encodes a whole snapshot of `state`, followed by the journal of generation `generation`.
pub fn encode_snapshot(state: &MetaState, generation: u32) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    write_header(&mut out, SNAPSHOT_MAGIC, generation);
    let mut n = 0u64;
    for r in state.records() {
        write_record(&mut out, &r)?;
        n += 1;
    }
    write_record(&mut out, &Record::End { records: n })?;
    Ok(out)
}

/// Recovers a shard's state from its snapshot (if any) and the journals found in its directory.
///
/// `snapshot` is the snapshot's bytes; `journals` are (file name, bytes) of every journal file.
/// Only the journal whose generation the snapshot names is replayed (older ones were folded into
/// it; newer ones belong to a checkpoint that never got installed, and nothing in them was
/// acknowledged). Without a snapshot, generation 0 is replayed. Returns the state, the generation
/// replayed and how many torn bytes were dropped.
pub fn recover(
    snapshot: Option<&[u8]>,
    journals: &[(String, Vec<u8>)],
) -> Result<(MetaState, u32, usize), MetaFormatError> {
    let (generation, mut state) = match snapshot {
        Some(bytes) => read_snapshot(SNAPSHOT_NAME, bytes)?,
        None => (0, MetaState::default()),
    };
    let mut dropped = 0;
    for (name, bytes) in journals {
        if parse_journal_name(name) != Some(generation) {
            continue;
        }
        let read = read_journal(name, bytes)?;
        if read.valid_bytes >= HEADER_BYTES && read.generation != generation {
            return Err(MetaFormatError::BadRecord {
                file: name.clone(),
                offset: 12,
                what: format!("header names generation {}", read.generation),
            });
        }
        dropped += read.dropped_bytes;
        for r in read.records {
            state.apply(r);
        }
    }
    // A guild whose core never made it (only possible with a damaged journal) cannot be rebuilt.
    state.guilds.retain(|_, g| g.core.is_some());
    Ok((state, generation, dropped))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use gateway_core::guild::UserInfo;

    fn user(id: u64) -> StoredUser {
        StoredUser {
            id,
            username: format!("u{id}"),
            discriminator: "0".into(),
            global_name: None,
            avatar: None,
            bot: id.is_multiple_of(2),
            flags: 0,
            public_flags: 0,
            locale: "en-US".into(),
            application_id: Some(id),
            privileged: 3,
            application_owner: None,
        }
    }

    fn member(id: u64) -> Member {
        Member {
            user: UserInfo::new(id, "m"),
            nick: Some("n".into()),
            roles: vec![5, 6],
            joined_at_ms: 99,
            deaf: false,
            mute: true,
            flags: 0,
        }
    }

    fn core(id: u64) -> GuildCore {
        let mut next = id;
        let mut ids = || {
            next += 1;
            next
        };
        gateway_core::guild::Guild::new(id, "guild", UserInfo::new(1, "o"), 5, &mut ids)
            .unwrap()
            .to_core()
    }

    fn journal(records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        write_header(&mut out, JOURNAL_MAGIC, 0);
        for r in records {
            write_record(&mut out, r).unwrap();
        }
        out
    }

    fn sample() -> Vec<Record> {
        vec![
            Record::User(user(1)),
            Record::Guild(core(1000)),
            Record::Member {
                guild: 1000,
                member: member(1),
            },
            Record::Member {
                guild: 1000,
                member: member(2),
            },
            Record::MemberRemoved {
                guild: 1000,
                user: 2,
            },
            Record::Ban {
                guild: 1000,
                ban: Ban {
                    user: UserInfo::new(2, "m"),
                    reason: None,
                },
            },
            Record::User(user(2)),
        ]
    }

    #[test]
    fn journal_round_trips() {
        let bytes = journal(&sample());
        let r = read_journal("meta-0.log", &bytes).unwrap();
        assert_eq!(r.records, sample());
        assert_eq!(r.valid_bytes, bytes.len());
        assert_eq!(r.dropped_bytes, 0);
    }

    #[test]
    fn a_torn_tail_is_dropped_at_every_cut() {
        let all = sample();
        let full = journal(&all);
        let mut ends = vec![HEADER_BYTES];
        let mut at = HEADER_BYTES;
        while let Ok(Some((_, next))) = next_frame(&full, at) {
            ends.push(next);
            at = next;
        }
        for cut in HEADER_BYTES..full.len() {
            let r = read_journal("meta-0.log", &full[..cut]).unwrap();
            let whole = ends.iter().filter(|&&e| e <= cut).count() - 1;
            assert_eq!(r.records.len(), whole, "cut at {cut}");
            assert_eq!(r.records[..], all[..whole]);
            assert_eq!(r.valid_bytes + r.dropped_bytes, cut);
        }
    }

    #[test]
    fn a_bad_crc_ends_the_journal_there() {
        let mut bytes = journal(&sample());
        // Flip one payload byte of the third record.
        let mut at = HEADER_BYTES;
        for _ in 0..2 {
            at = next_frame(&bytes, at).unwrap().unwrap().1;
        }
        bytes[at + FRAME_BYTES + 3] ^= 0x40;
        let r = read_journal("meta-0.log", &bytes).unwrap();
        assert_eq!(r.records[..], sample()[..2]);
        assert_eq!(r.valid_bytes, at);
        // A corrupted length is caught by the CRC too (not trusted to allocate).
        let mut bytes = journal(&sample());
        bytes[HEADER_BYTES + 3] = 0x7f;
        let r = read_journal("meta-0.log", &bytes).unwrap();
        assert!(r.records.is_empty());
    }

    #[test]
    fn an_unknown_version_or_magic_is_refused() {
        let mut bytes = journal(&sample());
        bytes[8] = 9;
        let e = read_journal("meta-0.log", &bytes).unwrap_err();
        assert!(
            matches!(e, MetaFormatError::Version { found: 9, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("meta-0.log"));
        let mut bytes = journal(&sample());
        bytes[0] = b'X';
        assert!(matches!(
            read_journal("meta-0.log", &bytes),
            Err(MetaFormatError::BadMagic { .. })
        ));
        // Shorter than a header: an empty journal whose creation was torn.
        let r = read_journal("meta-3.log", &bytes[..5]).unwrap();
        assert!(r.records.is_empty());
    }

    #[test]
    fn snapshots_round_trip_and_damage_is_an_error_naming_the_file() {
        let mut state = MetaState::default();
        for r in sample() {
            state.apply(r);
        }
        let bytes = encode_snapshot(&state, 4).unwrap();
        let (generation, back) = read_snapshot(SNAPSHOT_NAME, &bytes).unwrap();
        assert_eq!((generation, &back), (4, &state));
        for cut in [HEADER_BYTES, bytes.len() / 2, bytes.len() - 1] {
            let e = read_snapshot(SNAPSHOT_NAME, &bytes[..cut]).unwrap_err();
            assert!(e.to_string().contains("meta.snap"), "{e}");
        }
        let mut bad = bytes.clone();
        bad[HEADER_BYTES + FRAME_BYTES + 2] ^= 1;
        assert!(matches!(
            read_snapshot(SNAPSHOT_NAME, &bad),
            Err(MetaFormatError::CorruptSnapshot { .. })
        ));
    }

    #[test]
    fn recovery_replays_only_the_journal_the_snapshot_names() {
        let mut state = MetaState::default();
        state.apply(Record::User(user(7)));
        let snap = encode_snapshot(&state, 2).unwrap();
        let mut j2 = Vec::new();
        write_header(&mut j2, JOURNAL_MAGIC, 2);
        write_record(&mut j2, &Record::User(user(8))).unwrap();
        let mut j1 = Vec::new();
        write_header(&mut j1, JOURNAL_MAGIC, 1);
        write_record(&mut j1, &Record::User(user(9))).unwrap();
        let journals = vec![("meta-1.log".to_owned(), j1), ("meta-2.log".to_owned(), j2)];
        let (s, generation, dropped) = recover(Some(&snap), &journals).unwrap();
        assert_eq!((generation, dropped), (2, 0));
        let mut ids: Vec<u64> = s.users.keys().copied().collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![7, 8]);
        let (s, generation, _) = recover(None, &journals).unwrap();
        assert_eq!((generation, s.users.len()), (0, 0));
    }

    #[test]
    fn deletes_are_keyed_and_idempotent() {
        let mut s = MetaState::default();
        for r in sample() {
            s.apply(r.clone());
            s.apply(r);
        }
        s.apply(Record::GuildDeleted { guild: 1000 });
        s.apply(Record::GuildDeleted { guild: 1000 });
        assert!(s.guilds.is_empty());
        assert_eq!(s.users.len(), 2);
    }
}
