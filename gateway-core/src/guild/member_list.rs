//! Lazy member lists (op 14 / `GUILD_MEMBER_LIST_UPDATE`) for one list of one guild, sans-IO.
//!
//! A list is the set of members who can view a channel; Discord names it by an id (`"everyone"`
//! when @everyone can view the channel, else a hash of its overwrites) that the caller computes
//! and passes in. Inputs are plain values, so this module knows nothing of guilds or roles
//! beyond what each call says.
//!
//! # Order
//!
//! The flat list is `[group header, members..., group header, members..., ...]`:
//! 1. one group per hoisted role holding the *online* members whose highest hoisted role it is,
//!    by role position descending (equal positions: lower role id first, the older role);
//! 2. `"online"`: online members without a hoisted role;
//! 3. `"offline"`: every offline member, whatever their roles.
//!
//! Inside a group, members sort by their display name folded to lower case with Unicode's
//! default mapping ([`str::to_lowercase`], no locale collation), then by user id; the id makes
//! the order total, so two members never tie. Only the first [`SORT_NAME_BYTES_MAX`] bytes of
//! the folded name take part. A group has a header only while it holds a member, and `groups`
//! in each payload lists exactly the groups with a header, so a client can count the rows:
//! sum of `count + 1`.
//!
//! # Index
//!
//! Headers and members live in one order-statistic tree (a treap with subtree sizes, below),
//! so a row's flat index is its rank: inserting, removing, moving a member and finding an index
//! cost O(log n) expected, and reading `k` rows from index `i` costs O(log n + k).
//!
//! # Updates
//!
//! Every change is applied as a short sequence of row splices (insert, delete, move, update).
//! Each subscriber's ranges are merged into *windows* (ranges that touch or overlap become one
//! window, so windows are at least one row apart) and every splice is translated, per window,
//! into ops that keep the window exact and leave the client's rows *after* the window where
//! they were: an insertion is `INSERT` at the row's index (or the window start when it lands
//! above the window) followed by `DELETE` of the row pushed past the window's end; a deletion
//! is `DELETE` followed by `INSERT` of the row that slides in at the window's end; a move
//! inside the list is one `DELETE` and one `INSERT` bounded by the window, or one `UPDATE`.
//! Because no window's ops shift another window, each window is handled alone, and windows
//! whose rows end up unchanged get nothing at all. `SYNC {range, items}` sets the range to
//! exactly `items` (fewer than the range when the list ends inside it); `INVALIDATE {range}`
//! tells the client to forget a range it no longer follows (sent when a resubscription drops
//! it). Rows at or beyond the end of the list are empty in a replica that follows these rules.
//!
//! When a window would get more ops than a `SYNC` of its ranges has items (large reorders),
//! it gets the `SYNC`s instead. Subscribers whose op lists are equal share one payload.
//!
//! [`MemberList::set_hoisted_roles`] (a role hoisted, unhoisted or moved) takes the new
//! highest hoisted role of every member it changes and moves them one by one; windows that end
//! up with the same rows as before get nothing, the others get the ops or a `SYNC`.
//!
//! # Costs
//!
//! Each change costs O(log n) for the index plus O(log n) per window of each *distinct*
//! range set that it touches; sessions with the same ranges (nearly everyone asks `[0, 99]`)
//! share one range set. Payloads are built once per distinct op list.
#![deny(clippy::unwrap_used)]

use crate::limits::LAZY_RANGES_PER_CHANNEL_MAX;
use serde_json::{Map, Value, json};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

/// Rows one subscribed range may span; Discord clients ask in blocks of 100 (`[0, 99]`).
pub const RANGE_ROWS_MAX: u32 = 100;
/// Ranges one subscriber may follow on one list, the bound op 14 puts on a channel.
pub const RANGES_PER_SUBSCRIBER_MAX: usize = LAZY_RANGES_PER_CHANNEL_MAX;
/// Sessions subscribed to one list at once.
pub const LIST_SUBSCRIBERS_MAX: usize = 1 << 18;
/// Members of one list; the index links rows with `u32`, so this stays far below `u32::MAX`.
pub const LIST_MEMBERS_MAX: usize = 1 << 24;
/// Distinct hoisted roles the members of one list may hold: Discord's role cap per guild.
pub const HOISTED_ROLES_MAX: usize = 250;
/// Bytes of the case-folded display name that take part in ordering.
pub const SORT_NAME_BYTES_MAX: usize = 128;

// Every row (members plus one header per hoisted role, online and offline) needs a u32 link.
const _: () = assert!(LIST_MEMBERS_MAX + HOISTED_ROLES_MAX + 2 < NIL as usize);
// A window is the union of a subscriber's ranges; its length bounds the ops it may collect.
const _: () = assert!((RANGE_ROWS_MAX as usize) * RANGES_PER_SUBSCRIBER_MAX <= 1 << 16);
const _: () = assert!(RANGES_PER_SUBSCRIBER_MAX > 0 && RANGE_ROWS_MAX > 0);

/// Why a member-list call was refused; nothing changed when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemberListError {
    /// The user is not in this list.
    #[error("unknown member {0}")]
    UnknownMember(u64),
    /// The list already holds [`LIST_MEMBERS_MAX`] members.
    #[error("member list full ({LIST_MEMBERS_MAX} members)")]
    ListFull,
    /// A role given at a position other than the one other members of the list hold it at.
    #[error("role {role_id} given at position {given}, held at {known} by other members")]
    RolePositionConflict {
        /// The role.
        role_id: u64,
        /// Position other members hold it at.
        known: u32,
        /// Position in the refused call.
        given: u32,
    },
    /// The call would make the members hold more than [`HOISTED_ROLES_MAX`] hoisted roles.
    #[error("more than {HOISTED_ROLES_MAX} hoisted roles")]
    TooManyHoistedRoles,
    /// More than [`RANGES_PER_SUBSCRIBER_MAX`] ranges.
    #[error("{0} ranges, at most {RANGES_PER_SUBSCRIBER_MAX}")]
    TooManyRanges(usize),
    /// A range with `start > end` or more than [`RANGE_ROWS_MAX`] rows.
    #[error("bad range [{start}, {end}]")]
    BadRange {
        /// First index.
        start: u32,
        /// Last index (inclusive).
        end: u32,
    },
    /// The list already has [`LIST_SUBSCRIBERS_MAX`] subscribers.
    #[error("member list has {LIST_SUBSCRIBERS_MAX} subscribers")]
    TooManySubscribers,
}

/// A group of the list: a hoisted role, or the online or offline bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupId {
    /// Online members whose highest hoisted role is this one.
    Role(u64),
    /// Online members without a hoisted role.
    Online,
    /// Offline members.
    Offline,
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupId::Role(id) => write!(f, "{id}"),
            GroupId::Online => f.write_str("online"),
            GroupId::Offline => f.write_str("offline"),
        }
    }
}

/// A group present in the list and how many members it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCount {
    /// The group.
    pub id: GroupId,
    /// Members in it (never 0: empty groups are not in the list).
    pub count: u32,
}

/// One `GUILD_MEMBER_LIST_UPDATE` to send to some subscribers.
#[derive(Debug, Clone, PartialEq)]
pub struct ListUpdate {
    /// Session keys that receive this payload, ascending.
    pub subscribers: Vec<u64>,
    /// The event's `d`: `{guild_id, id, member_count, online_count, groups, ops}`.
    pub payload: Value,
}

// Derived order: hoisted roles (position descending, then id), then online, then offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum GroupKey {
    Role { position: Reverse<u32>, id: u64 },
    Online,
    Offline,
}

impl GroupKey {
    fn id(self) -> GroupId {
        match self {
            GroupKey::Role { id, .. } => GroupId::Role(id),
            GroupKey::Online => GroupId::Online,
            GroupKey::Offline => GroupId::Offline,
        }
    }
}

// A header (`member: None`) sorts before the members of its group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RowKey {
    group: GroupKey,
    member: Option<(Box<str>, u64)>,
}

impl RowKey {
    fn header(group: GroupKey) -> Self {
        Self {
            group,
            member: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Member {
    sort_name: Box<str>,
    hoisted: Option<(u64, u32)>,
    online: bool,
    json: Value,
}

impl Member {
    fn group(&self) -> GroupKey {
        match (self.online, self.hoisted) {
            (false, _) => GroupKey::Offline,
            (true, Some((id, position))) => GroupKey::Role {
                position: Reverse(position),
                id,
            },
            (true, None) => GroupKey::Online,
        }
    }

    fn key(&self, user_id: u64) -> RowKey {
        RowKey {
            group: self.group(),
            member: Some((self.sort_name.clone(), user_id)),
        }
    }
}

fn sort_name(display_name: &str) -> Box<str> {
    let mut folded = display_name.to_lowercase();
    if folded.len() > SORT_NAME_BYTES_MAX {
        let mut cut = SORT_NAME_BYTES_MAX;
        while !folded.is_char_boundary(cut) {
            cut -= 1;
        }
        folded.truncate(cut);
    }
    folded.into_boxed_str()
}

#[derive(Debug, Clone, Copy)]
struct RoleRef {
    position: u32,
    members: u32,
}

// What a client row is, resolved to JSON only when a payload is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ItemRef {
    Member(u64),
    Group(GroupKey),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum OpRef {
    Sync([u32; 2]),
    Insert(usize, ItemRef),
    Update(usize, ItemRef),
    Delete(usize),
    Invalidate([u32; 2]),
}

// Row identity as a client sees it, to tell whether a window changed across a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowSnap {
    Member(u64),
    Group(GroupId, u32),
}

#[derive(Debug, Clone, Copy)]
enum Splice {
    Insert(usize),
    Delete(usize),
    Update(usize),
    // A row leaves `from` (old index) and lands at `to` (new index); the length is unchanged.
    Move { from: usize, to: usize },
}

#[derive(Debug, Clone)]
struct Window {
    start: usize,
    end: usize,
    ranges: Vec<[u32; 2]>,
}

impl Window {
    fn rows(&self) -> usize {
        self.end - self.start + 1
    }
}

#[derive(Debug)]
struct View {
    windows: Vec<Window>,
    sessions: BTreeSet<u64>,
}

impl View {
    // `ranges` is sorted and deduplicated.
    fn new(ranges: &[[u32; 2]]) -> Self {
        let mut windows: Vec<Window> = Vec::new();
        for &[s, e] in ranges {
            let (s, e) = (s as usize, e as usize);
            match windows.last_mut() {
                Some(w) if s <= w.end + 1 => {
                    w.end = w.end.max(e);
                    w.ranges.push([s as u32, e as u32]);
                }
                _ => windows.push(Window {
                    start: s,
                    end: e,
                    ranges: vec![[s as u32, e as u32]],
                }),
            }
        }
        Self {
            windows,
            sessions: BTreeSet::new(),
        }
    }
}

#[derive(Debug, Default)]
struct WindowOps {
    ops: Vec<OpRef>,
    resync: bool,
}

// Where each row of the list came from during one call: `Old(o)` rows hold the row that was
// at index `i - o` before the call, `Fresh` rows were inserted or rewritten. Kept as runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Old(isize),
    Fresh,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    len: usize,
    origin: Origin,
}

// Tells, after a call, which windows hold exactly the rows they held before it. Each splice
// costs O(runs), so past TRACKED_SPLICES_MAX splices (only batches get there) the map gives
// up and the caller falls back to comparing snapshots.
#[derive(Debug)]
struct Shape {
    runs: Vec<Run>,
    old_len: usize,
    splices: usize,
}

/// Splices per call for which the exact origin map is kept; single-member changes use at
/// most four.
const TRACKED_SPLICES_MAX: usize = 16;

impl Shape {
    fn new(len: usize) -> Self {
        let runs = if len == 0 {
            Vec::new()
        } else {
            vec![Run {
                len,
                origin: Origin::Old(0),
            }]
        };
        Self {
            runs,
            old_len: len,
            splices: 0,
        }
    }

    fn tracking(&self) -> bool {
        self.splices <= TRACKED_SPLICES_MAX
    }

    // Makes a run start at `p` and returns its position in `runs` (`runs.len()` at the end).
    fn cut(&mut self, p: usize) -> usize {
        let mut at = 0;
        for i in 0..self.runs.len() {
            let Some(run) = self.runs.get(i).copied() else {
                break;
            };
            if at == p {
                return i;
            }
            if p < at + run.len {
                let head = p - at;
                if let Some(r) = self.runs.get_mut(i) {
                    r.len = head;
                }
                self.runs.insert(
                    i + 1,
                    Run {
                        len: run.len - head,
                        origin: run.origin,
                    },
                );
                return i + 1;
            }
            at += run.len;
        }
        self.runs.len()
    }

    fn shift_from(&mut self, i: usize, by: isize) {
        for r in self.runs.iter_mut().skip(i) {
            if let Origin::Old(o) = &mut r.origin {
                *o += by;
            }
        }
    }

    fn record(&mut self, splice: Splice) {
        self.splices += 1;
        if !self.tracking() {
            return;
        }
        match splice {
            Splice::Insert(p) => self.insert(p),
            Splice::Delete(p) => self.delete(p),
            Splice::Update(p) => self.set(p, Origin::Fresh),
            Splice::Move { from, to } => {
                self.delete(from);
                self.insert(to);
            }
        }
    }

    fn insert(&mut self, p: usize) {
        let i = self.cut(p);
        self.runs.insert(
            i,
            Run {
                len: 1,
                origin: Origin::Fresh,
            },
        );
        self.shift_from(i + 1, 1);
    }

    fn delete(&mut self, p: usize) {
        let i = self.cut(p);
        self.cut(p + 1);
        if i < self.runs.len() {
            self.runs.remove(i);
        }
        self.shift_from(i, -1);
    }

    fn origin(&self, p: usize) -> Option<Origin> {
        let mut at = 0;
        for r in &self.runs {
            if p < at + r.len {
                return Some(r.origin);
            }
            at += r.len;
        }
        None
    }

    fn set(&mut self, p: usize, origin: Origin) {
        let i = self.cut(p);
        self.cut(p + 1);
        if let Some(r) = self.runs.get_mut(i) {
            r.origin = origin;
        }
    }

    // Whether rows `start..=end` are the rows that were there before the call; `None` once
    // the map gave up. `len` is the row count now.
    fn unchanged(&self, start: usize, end: usize, len: usize) -> Option<bool> {
        if !self.tracking() {
            return None;
        }
        let present = |n: usize| n.min(end + 1).saturating_sub(start);
        if present(len) != present(self.old_len) {
            return Some(false);
        }
        let stop = (end + 1).min(len);
        let mut at = 0;
        for r in &self.runs {
            if at >= stop {
                break;
            }
            if at + r.len > start && r.origin != Origin::Old(0) {
                return Some(false);
            }
            at += r.len;
        }
        Some(true)
    }
}

// Ops collected during one call, per view and window, and where the rows came from.
struct Batch {
    views: Vec<Vec<WindowOps>>,
    shape: Shape,
}

type Snapshot = Vec<Vec<Vec<RowSnap>>>;

/// The ordered rows of one member list, its subscribers and the updates they need.
#[derive(Debug)]
pub struct MemberList {
    guild_id: u64,
    list_id: String,
    rows: RankTree<RowKey>,
    members: HashMap<u64, Member>,
    groups: BTreeMap<GroupKey, u32>,
    roles: HashMap<u64, RoleRef>,
    online: usize,
    sessions: HashMap<u64, Vec<[u32; 2]>>,
    views: BTreeMap<Vec<[u32; 2]>, View>,
}

impl MemberList {
    /// An empty list `list_id` of guild `guild_id`.
    pub fn new(guild_id: u64, list_id: String) -> Self {
        Self {
            guild_id,
            list_id,
            rows: RankTree::new(),
            members: HashMap::new(),
            groups: BTreeMap::new(),
            roles: HashMap::new(),
            online: 0,
            sessions: HashMap::new(),
            views: BTreeMap::new(),
        }
    }

    /// The guild this list belongs to.
    pub fn guild_id(&self) -> u64 {
        self.guild_id
    }

    /// The list's id (`"everyone"` or an overwrite hash).
    pub fn list_id(&self) -> &str {
        &self.list_id
    }

    /// Members in the list, online or not.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Online members in the list.
    pub fn online_count(&self) -> usize {
        self.online
    }

    /// Rows of the flat list: members plus one header per present group.
    pub fn row_count(&self) -> usize {
        self.rows.len()
    }

    /// Present groups in list order with their member counts.
    pub fn groups(&self) -> Vec<GroupCount> {
        self.groups
            .iter()
            .map(|(g, &count)| GroupCount { id: g.id(), count })
            .collect()
    }

    /// Flat index of a member's row, in O(log n).
    pub fn index_of(&self, user_id: u64) -> Option<usize> {
        let m = self.members.get(&user_id)?;
        self.rows.rank(&m.key(user_id))
    }

    /// The rows `start..=end` as Discord items (`{"group": ..}` / `{"member": ..}`), cut at
    /// the end of the list.
    pub fn items(&self, start: usize, end: usize) -> Vec<Value> {
        if end < start {
            return Vec::new();
        }
        self.rows
            .range(start, end.saturating_add(1))
            .into_iter()
            .map(|k| self.item_json(item_ref(k)))
            .collect()
    }

    /// Sessions subscribed to this list.
    pub fn subscriber_count(&self) -> usize {
        self.sessions.len()
    }

    /// The ranges a session follows (sorted, deduplicated), if subscribed.
    pub fn ranges_of(&self, session: u64) -> Option<&[[u32; 2]]> {
        self.sessions.get(&session).map(Vec::as_slice)
    }

    /// Adds a member or replaces what the list knows of one. `hoisted_role` is the member's
    /// highest hoisted role as `(role id, role position)`; `member_json` is sent as the item's
    /// `member` object and never inspected.
    pub fn upsert_member(
        &mut self,
        user_id: u64,
        display_name: &str,
        hoisted_role: Option<(u64, u32)>,
        online: bool,
        member_json: Value,
    ) -> Result<Vec<ListUpdate>, MemberListError> {
        let old = self.members.get(&user_id);
        if old.is_none() && self.members.len() >= LIST_MEMBERS_MAX {
            return Err(MemberListError::ListFull);
        }
        let old_role = old.and_then(|m| m.hoisted).map(|(id, _)| id);
        if let Some((role_id, given)) = hoisted_role {
            match self.roles.get(&role_id) {
                Some(r) if r.position != given => {
                    // Only this member holds it: the role simply moved.
                    if !(r.members == 1 && old_role == Some(role_id)) {
                        return Err(MemberListError::RolePositionConflict {
                            role_id,
                            known: r.position,
                            given,
                        });
                    }
                }
                Some(_) => {}
                None => {
                    let frees_one = old_role
                        .and_then(|id| self.roles.get(&id))
                        .is_some_and(|r| r.members == 1);
                    if self.roles.len() >= HOISTED_ROLES_MAX && !frees_one {
                        return Err(MemberListError::TooManyHoistedRoles);
                    }
                }
            }
        }
        let new = Member {
            sort_name: sort_name(display_name),
            hoisted: hoisted_role,
            online,
            json: member_json,
        };
        let mut batch = self.batch();
        let old = self.members.remove(&user_id);
        let json_changed = old.as_ref().is_none_or(|o| o.json != new.json);
        let old = old.map(|o| Placement::of(&o, user_id));
        self.apply(user_id, old, Some(new), json_changed, &mut batch);
        Ok(self.finish(&batch, None))
    }

    /// Removes a member; unknown members are ignored.
    pub fn remove_member(&mut self, user_id: u64) -> Vec<ListUpdate> {
        let Some(old) = self.members.remove(&user_id) else {
            return Vec::new();
        };
        let mut batch = self.batch();
        self.apply(
            user_id,
            Some(Placement::of(&old, user_id)),
            None,
            false,
            &mut batch,
        );
        self.finish(&batch, None)
    }

    /// Moves a member between its hoisted or online group and the offline group. The item
    /// JSON stays as last given: callers that show presence in it use `upsert_member`.
    pub fn set_online(
        &mut self,
        user_id: u64,
        online: bool,
    ) -> Result<Vec<ListUpdate>, MemberListError> {
        let Some(mut m) = self.members.remove(&user_id) else {
            return Err(MemberListError::UnknownMember(user_id));
        };
        let old = Placement::of(&m, user_id);
        m.online = online;
        let mut batch = self.batch();
        self.apply(user_id, Some(old), Some(m), false, &mut batch);
        Ok(self.finish(&batch, None))
    }

    /// Applies hoisted-role changes after a role was hoisted, unhoisted or moved: `changes`
    /// gives the new highest hoisted role `(role id, position)` of each member whose role or
    /// role position changed (later entries for a user win). Every member still holding a
    /// role at an old position must be listed, else the call is refused. Subscribers whose
    /// windows end with the same rows get nothing; the others get ops or a `SYNC` per range.
    pub fn set_hoisted_roles(
        &mut self,
        changes: &[(u64, Option<(u64, u32)>)],
    ) -> Result<Vec<ListUpdate>, MemberListError> {
        let wanted: BTreeMap<u64, Option<(u64, u32)>> = changes.iter().copied().collect();
        self.check_role_changes(&wanted)?;
        let snapshot = self.snapshot();
        let mut batch = self.batch();
        for (&user_id, &hoisted) in &wanted {
            let Some(mut m) = self.members.remove(&user_id) else {
                continue;
            };
            let old = Placement::of(&m, user_id);
            m.hoisted = hoisted;
            self.apply(user_id, Some(old), Some(m), false, &mut batch);
        }
        Ok(self.finish(&batch, Some(&snapshot)))
    }

    /// Subscribes `session` to `ranges` (inclusive `[start, end]` row indices), replacing
    /// ranges it followed before, and returns the `d` to send it: `INVALIDATE` for each
    /// dropped range, then `SYNC` for each range. No ranges unsubscribes.
    pub fn subscribe(
        &mut self,
        session: u64,
        ranges: &[[u32; 2]],
    ) -> Result<Value, MemberListError> {
        if ranges.len() > RANGES_PER_SUBSCRIBER_MAX {
            return Err(MemberListError::TooManyRanges(ranges.len()));
        }
        if let Some(&[start, end]) = ranges
            .iter()
            .find(|[s, e]| s > e || e - s >= RANGE_ROWS_MAX)
        {
            return Err(MemberListError::BadRange { start, end });
        }
        let mut wanted = ranges.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        if !wanted.is_empty()
            && !self.sessions.contains_key(&session)
            && self.sessions.len() >= LIST_SUBSCRIBERS_MAX
        {
            return Err(MemberListError::TooManySubscribers);
        }
        let old = self.detach(session).unwrap_or_default();
        let mut ops: Vec<OpRef> = old
            .iter()
            .filter(|r| !wanted.contains(r))
            .map(|&r| OpRef::Invalidate(r))
            .collect();
        ops.extend(wanted.iter().map(|&r| OpRef::Sync(r)));
        if !wanted.is_empty() {
            self.views
                .entry(wanted.clone())
                .or_insert_with(|| View::new(&wanted))
                .sessions
                .insert(session);
            self.sessions.insert(session, wanted);
        }
        let mut payload = self.payload_base();
        payload.insert("ops".into(), self.ops_json(&ops));
        Ok(Value::Object(payload))
    }

    /// Drops a session's subscription; whether it had one.
    pub fn unsubscribe(&mut self, session: u64) -> bool {
        self.detach(session).is_some()
    }

    fn detach(&mut self, session: u64) -> Option<Vec<[u32; 2]>> {
        let ranges = self.sessions.remove(&session)?;
        if let Some(view) = self.views.get_mut(&ranges) {
            view.sessions.remove(&session);
            if view.sessions.is_empty() {
                self.views.remove(&ranges);
            }
        }
        Some(ranges)
    }

    fn check_role_changes(
        &self,
        wanted: &BTreeMap<u64, Option<(u64, u32)>>,
    ) -> Result<(), MemberListError> {
        let mut given: HashMap<u64, u32> = HashMap::new();
        // Per role: members that hold it now and are listed (they leave it or re-take it).
        let mut listed: HashMap<u64, u32> = HashMap::new();
        for (&user_id, &hoisted) in wanted {
            let Some(m) = self.members.get(&user_id) else {
                return Err(MemberListError::UnknownMember(user_id));
            };
            if let Some((id, _)) = m.hoisted {
                *listed.entry(id).or_insert(0) += 1;
            }
            if let Some((role_id, position)) = hoisted {
                match given.get(&role_id) {
                    Some(&known) if known != position => {
                        return Err(MemberListError::RolePositionConflict {
                            role_id,
                            known,
                            given: position,
                        });
                    }
                    _ => {
                        given.insert(role_id, position);
                    }
                }
            }
        }
        let mut kept = 0usize;
        for (&role_id, r) in &self.roles {
            let stays = r.members - listed.get(&role_id).copied().unwrap_or(0);
            if stays == 0 {
                continue;
            }
            kept += 1;
            if let Some(&position) = given.get(&role_id)
                && position != r.position
            {
                return Err(MemberListError::RolePositionConflict {
                    role_id,
                    known: r.position,
                    given: position,
                });
            }
        }
        let added = given
            .keys()
            .filter(|id| {
                self.roles
                    .get(id)
                    .is_none_or(|r| r.members == listed.get(id).copied().unwrap_or(0))
            })
            .count();
        if kept + added > HOISTED_ROLES_MAX {
            return Err(MemberListError::TooManyHoistedRoles);
        }
        Ok(())
    }

    fn batch(&self) -> Batch {
        Batch {
            views: self
                .views
                .values()
                .map(|v| v.windows.iter().map(|_| WindowOps::default()).collect())
                .collect(),
            shape: Shape::new(self.rows.len()),
        }
    }

    fn snapshot(&self) -> Snapshot {
        self.views
            .values()
            .map(|v| v.windows.iter().map(|w| self.window_rows(w)).collect())
            .collect()
    }

    fn window_rows(&self, w: &Window) -> Vec<RowSnap> {
        self.rows
            .range(w.start, w.end + 1)
            .into_iter()
            .map(|k| match item_ref(k) {
                ItemRef::Member(id) => RowSnap::Member(id),
                ItemRef::Group(g) => {
                    RowSnap::Group(g.id(), self.groups.get(&g).copied().unwrap_or(0))
                }
            })
            .collect()
    }

    // Moves one member from `old` to `new` (either may be absent), keeping counts, role
    // references and rows, and translating every row splice into ops. The member's new
    // record must already be out of `members` (it is put back here).
    fn apply(
        &mut self,
        user_id: u64,
        old: Option<Placement>,
        new: Option<Member>,
        json_changed: bool,
        batch: &mut Batch,
    ) {
        if let Some(o) = &old {
            self.unref_role(o.hoisted);
            if o.online {
                self.online -= 1;
            }
        }
        if let Some(n) = &new {
            self.ref_role(n.hoisted);
            if n.online {
                self.online += 1;
            }
        }
        let new_key = new.as_ref().map(|n| n.key(user_id));
        if let Some(n) = new {
            self.members.insert(user_id, n);
        }
        let old_key = old.map(|o| o.key);
        // Where the member's row was and what the origin map said of it, so that a row that
        // ends where it started, unchanged, does not count as a change.
        let before = old_key
            .as_ref()
            .and_then(|k| self.rows.rank(k))
            .map(|a| (a, batch.shape.origin(a)));
        self.move_rows(old_key, new_key.clone(), json_changed, batch);
        if let (Some((a, Some(origin))), Some(nk), false) = (before, new_key, json_changed)
            && self.rows.rank(&nk) == Some(a)
        {
            batch.shape.set(a, origin);
        }
    }

    fn move_rows(
        &mut self,
        old_key: Option<RowKey>,
        new_key: Option<RowKey>,
        json_changed: bool,
        batch: &mut Batch,
    ) {
        match (old_key, new_key) {
            (None, None) => {}
            (None, Some(nk)) => self.insert_row(nk, batch),
            (Some(ok), None) => self.remove_row(&ok, batch),
            (Some(ok), Some(nk)) if ok == nk => {
                if json_changed && let Some(p) = self.rows.rank(&ok) {
                    self.emit(batch, Splice::Update(p));
                }
            }
            (Some(ok), Some(nk)) => {
                let (og, ng) = (ok.group, nk.group);
                let headers_stay = og == ng
                    || (self.groups.get(&og).is_some_and(|&c| c > 1)
                        && self.groups.contains_key(&ng));
                if !headers_stay {
                    self.remove_row(&ok, batch);
                    self.insert_row(nk, batch);
                    return;
                }
                let Some(from) = self.rows.remove(&ok) else {
                    return;
                };
                let Some(to) = self.rows.insert(nk) else {
                    return;
                };
                if og != ng {
                    self.count_down(og);
                    self.count_up(ng);
                }
                if from != to || json_changed {
                    self.emit(batch, Splice::Move { from, to });
                }
                if og != ng {
                    for g in [og, ng] {
                        if let Some(h) = self.rows.rank(&RowKey::header(g)) {
                            self.emit(batch, Splice::Update(h));
                        }
                    }
                }
            }
        }
    }

    fn insert_row(&mut self, key: RowKey, batch: &mut Batch) {
        let group = key.group;
        let first = self.count_up(group) == 1;
        if first && let Some(h) = self.rows.insert(RowKey::header(group)) {
            self.emit(batch, Splice::Insert(h));
        }
        if let Some(p) = self.rows.insert(key) {
            self.emit(batch, Splice::Insert(p));
        }
        if !first && let Some(h) = self.rows.rank(&RowKey::header(group)) {
            self.emit(batch, Splice::Update(h));
        }
    }

    fn remove_row(&mut self, key: &RowKey, batch: &mut Batch) {
        let Some(p) = self.rows.remove(key) else {
            return;
        };
        self.emit(batch, Splice::Delete(p));
        let header = RowKey::header(key.group);
        if self.count_down(key.group) == 0 {
            if let Some(h) = self.rows.remove(&header) {
                self.emit(batch, Splice::Delete(h));
            }
        } else if let Some(h) = self.rows.rank(&header) {
            self.emit(batch, Splice::Update(h));
        }
    }

    fn count_up(&mut self, g: GroupKey) -> u32 {
        let c = self.groups.entry(g).or_insert(0);
        *c += 1;
        *c
    }

    fn count_down(&mut self, g: GroupKey) -> u32 {
        let Some(c) = self.groups.get_mut(&g) else {
            return 0;
        };
        *c = c.saturating_sub(1);
        let left = *c;
        if left == 0 {
            self.groups.remove(&g);
        }
        left
    }

    fn ref_role(&mut self, hoisted: Option<(u64, u32)>) {
        if let Some((id, position)) = hoisted {
            let r = self.roles.entry(id).or_insert(RoleRef {
                position,
                members: 0,
            });
            r.position = position;
            r.members += 1;
        }
    }

    fn unref_role(&mut self, hoisted: Option<(u64, u32)>) {
        if let Some((id, _)) = hoisted
            && let Some(r) = self.roles.get_mut(&id)
        {
            r.members = r.members.saturating_sub(1);
            if r.members == 0 {
                self.roles.remove(&id);
            }
        }
    }

    fn item(&self, index: usize) -> Option<ItemRef> {
        self.rows.select(index).map(item_ref)
    }

    // Called right after each splice, while the rows are in the state that follows it.
    fn emit(&self, batch: &mut Batch, splice: Splice) {
        batch.shape.record(splice);
        let len = self.rows.len();
        for (view, out) in self.views.values().zip(batch.views.iter_mut()) {
            for (w, wo) in view.windows.iter().zip(out.iter_mut()) {
                if wo.resync {
                    continue;
                }
                self.translate(w, splice, len, &mut wo.ops);
                // A SYNC of the whole window is cheaper from here on.
                if wo.ops.len() > w.rows() {
                    wo.resync = true;
                    wo.ops = Vec::new();
                }
            }
        }
    }

    // Window-local ops for one splice; `len` is the row count after it. See the module docs.
    fn translate(&self, w: &Window, splice: Splice, len: usize, ops: &mut Vec<OpRef>) {
        let (s, e) = (w.start, w.end);
        let push_item = |ops: &mut Vec<OpRef>, index: usize, insert: bool| {
            if let Some(item) = self.item(index) {
                ops.push(if insert {
                    OpRef::Insert(index, item)
                } else {
                    OpRef::Update(index, item)
                });
            }
        };
        match splice {
            Splice::Insert(p) => {
                let x = p.max(s);
                if p > e || x >= len {
                    return;
                }
                push_item(ops, x, true);
                // The row pushed past the window was a real row only if it was in the list.
                if e + 1 < len {
                    ops.push(OpRef::Delete(e + 1));
                }
            }
            Splice::Delete(p) => {
                let x = p.max(s);
                if p > e || x > len {
                    return;
                }
                ops.push(OpRef::Delete(x));
                if e < len {
                    push_item(ops, e, true);
                }
            }
            Splice::Update(p) => {
                if s <= p && p <= e && p < len {
                    push_item(ops, p, false);
                }
            }
            Splice::Move { from, to } => {
                let lo = from.min(to).max(s);
                let hi = from.max(to).min(e);
                if lo > hi || hi >= len {
                    return;
                }
                if lo == hi {
                    push_item(ops, lo, false);
                } else if from < to {
                    ops.push(OpRef::Delete(lo));
                    push_item(ops, hi, true);
                } else {
                    ops.push(OpRef::Delete(hi));
                    push_item(ops, lo, true);
                }
            }
        }
    }

    fn finish(&self, batch: &Batch, snapshot: Option<&Snapshot>) -> Vec<ListUpdate> {
        let mut distinct: HashMap<Vec<OpRef>, usize> = HashMap::new();
        let mut lists: Vec<(Vec<OpRef>, Vec<u64>)> = Vec::new();
        for (vi, (view, wops)) in self.views.values().zip(&batch.views).enumerate() {
            let mut ops = Vec::new();
            for (wi, (w, wo)) in view.windows.iter().zip(wops).enumerate() {
                if (wo.ops.is_empty() && !wo.resync)
                    || batch.shape.unchanged(w.start, w.end, self.rows.len()) == Some(true)
                {
                    continue;
                }
                let before = snapshot.and_then(|s| s.get(vi)).and_then(|v| v.get(wi));
                if before.is_some_and(|b| *b == self.window_rows(w)) {
                    continue;
                }
                let valid = self.rows.len().saturating_sub(w.start).min(w.rows());
                if wo.resync || wo.ops.len() > valid {
                    ops.extend(w.ranges.iter().map(|&r| OpRef::Sync(r)));
                } else {
                    ops.extend_from_slice(&wo.ops);
                }
            }
            if ops.is_empty() {
                continue;
            }
            match distinct.get(&ops) {
                Some(&i) => {
                    if let Some((_, subs)) = lists.get_mut(i) {
                        subs.extend(view.sessions.iter().copied());
                    }
                }
                None => {
                    distinct.insert(ops.clone(), lists.len());
                    lists.push((ops, view.sessions.iter().copied().collect()));
                }
            }
        }
        if lists.is_empty() {
            return Vec::new();
        }
        let base = self.payload_base();
        lists
            .into_iter()
            .map(|(ops, mut subscribers)| {
                subscribers.sort_unstable();
                let mut payload = base.clone();
                payload.insert("ops".into(), self.ops_json(&ops));
                ListUpdate {
                    subscribers,
                    payload: Value::Object(payload),
                }
            })
            .collect()
    }

    fn payload_base(&self) -> Map<String, Value> {
        let groups: Vec<Value> = self
            .groups
            .iter()
            .map(|(g, c)| json!({ "id": g.id().to_string(), "count": c }))
            .collect();
        let mut m = Map::new();
        m.insert("guild_id".into(), Value::String(self.guild_id.to_string()));
        m.insert("id".into(), Value::String(self.list_id.clone()));
        m.insert("member_count".into(), json!(self.members.len()));
        m.insert("online_count".into(), json!(self.online));
        m.insert("groups".into(), Value::Array(groups));
        m
    }

    fn ops_json(&self, ops: &[OpRef]) -> Value {
        Value::Array(
            ops.iter()
                .map(|op| match *op {
                    OpRef::Sync(r) => json!({
                        "op": "SYNC",
                        "range": r,
                        "items": self.items(r[0] as usize, r[1] as usize),
                    }),
                    OpRef::Insert(index, item) => {
                        json!({ "op": "INSERT", "index": index, "item": self.item_json(item) })
                    }
                    OpRef::Update(index, item) => {
                        json!({ "op": "UPDATE", "index": index, "item": self.item_json(item) })
                    }
                    OpRef::Delete(index) => json!({ "op": "DELETE", "index": index }),
                    OpRef::Invalidate(r) => json!({ "op": "INVALIDATE", "range": r }),
                })
                .collect(),
        )
    }

    fn item_json(&self, item: ItemRef) -> Value {
        match item {
            // Ops only name rows present after their splice, and members leave the map only
            // with their row, so a miss cannot happen; null keeps the payload well-formed.
            ItemRef::Member(id) => json!({
                "member": self.members.get(&id).map_or(Value::Null, |m| m.json.clone())
            }),
            // A group emptied later in the same batch: the row is gone by the last op.
            ItemRef::Group(g) => json!({
                "group": {
                    "id": g.id().to_string(),
                    "count": self.groups.get(&g).copied().unwrap_or(0),
                }
            }),
        }
    }
}

fn item_ref(k: &RowKey) -> ItemRef {
    match &k.member {
        Some((_, id)) => ItemRef::Member(*id),
        None => ItemRef::Group(k.group),
    }
}

// Where a member was before a change.
struct Placement {
    key: RowKey,
    hoisted: Option<(u64, u32)>,
    online: bool,
}

impl Placement {
    fn of(m: &Member, user_id: u64) -> Self {
        Self {
            key: m.key(user_id),
            hoisted: m.hoisted,
            online: m.online,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Order-statistic tree.
//
// Why a treap: keys (folded display names) arrive online and change at any time, so a
// Fenwick tree over a compacted key space would need the key space up front or periodic
// rebuilds; std's BTreeMap keeps no subtree counts, so it cannot rank. A treap whose nodes
// carry their subtree size answers rank and select in one root-to-leaf walk and needs only
// split and merge to stay balanced. Priorities come from a private generator, not from keys,
// so names chosen by users cannot skew its shape; nodes live in one arena linked by u32,
// which keeps a node at key + 24 bytes and the walks cache-friendly. Recursion depth is the
// tree height, O(log n) expected.
// ---------------------------------------------------------------------------------------------

const NIL: u32 = u32::MAX;

#[derive(Debug)]
struct Node<K> {
    key: K,
    prio: u64,
    left: u32,
    right: u32,
    size: u32,
}

#[derive(Debug)]
struct RankTree<K> {
    nodes: Vec<Node<K>>,
    free: Vec<u32>,
    root: u32,
    rng: u64,
}

// Indices below come from the tree's own links, never from input.
#[allow(clippy::indexing_slicing)]
impl<K: Ord> RankTree<K> {
    fn new() -> Self {
        Self {
            nodes: Vec::new(),
            free: Vec::new(),
            root: NIL,
            rng: 0x243F_6A88_85A3_08D3,
        }
    }

    fn len(&self) -> usize {
        self.size(self.root)
    }

    fn size(&self, t: u32) -> usize {
        if t == NIL {
            0
        } else {
            self.nodes[t as usize].size as usize
        }
    }

    fn fix(&mut self, t: u32) {
        let (l, r) = (self.nodes[t as usize].left, self.nodes[t as usize].right);
        // Bounded by LIST_MEMBERS_MAX plus headers, far below u32::MAX.
        self.nodes[t as usize].size = (1 + self.size(l) + self.size(r)) as u32;
    }

    // splitmix64: cheap, and every output is distinct for distinct states.
    fn next_prio(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Keys strictly less than `key`.
    fn count_less(&self, key: &K) -> usize {
        let (mut t, mut acc) = (self.root, 0);
        while t != NIL {
            let n = &self.nodes[t as usize];
            if n.key < *key {
                acc += self.size(n.left) + 1;
                t = n.right;
            } else {
                t = n.left;
            }
        }
        acc
    }

    fn rank(&self, key: &K) -> Option<usize> {
        let (mut t, mut acc) = (self.root, 0);
        while t != NIL {
            let n = &self.nodes[t as usize];
            match key.cmp(&n.key) {
                Ordering::Less => t = n.left,
                Ordering::Greater => {
                    acc += self.size(n.left) + 1;
                    t = n.right;
                }
                Ordering::Equal => return Some(acc + self.size(n.left)),
            }
        }
        None
    }

    fn select(&self, mut index: usize) -> Option<&K> {
        let mut t = self.root;
        while t != NIL {
            let n = &self.nodes[t as usize];
            let l = self.size(n.left);
            match index.cmp(&l) {
                Ordering::Less => t = n.left,
                Ordering::Equal => return Some(&n.key),
                Ordering::Greater => {
                    index -= l + 1;
                    t = n.right;
                }
            }
        }
        None
    }

    /// Inserts and returns the new key's rank; `None` (and no change) if already present.
    fn insert(&mut self, key: K) -> Option<usize> {
        if self.rank(&key).is_some() {
            return None;
        }
        let at = self.count_less(&key);
        let (l, r) = self.split(self.root, &key);
        let prio = self.next_prio();
        let node = Node {
            key,
            prio,
            left: NIL,
            right: NIL,
            size: 1,
        };
        let n = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        let left = self.merge(l, n);
        self.root = self.merge(left, r);
        Some(at)
    }

    /// Removes and returns the rank the key had; `None` if absent.
    fn remove(&mut self, key: &K) -> Option<usize> {
        let at = self.rank(key)?;
        self.root = self.remove_in(self.root, key);
        Some(at)
    }

    fn remove_in(&mut self, t: u32, key: &K) -> u32 {
        if t == NIL {
            return NIL;
        }
        match key.cmp(&self.nodes[t as usize].key) {
            Ordering::Less => {
                let l = self.remove_in(self.nodes[t as usize].left, key);
                self.nodes[t as usize].left = l;
            }
            Ordering::Greater => {
                let r = self.remove_in(self.nodes[t as usize].right, key);
                self.nodes[t as usize].right = r;
            }
            Ordering::Equal => {
                let (l, r) = (self.nodes[t as usize].left, self.nodes[t as usize].right);
                self.free.push(t);
                return self.merge(l, r);
            }
        }
        self.fix(t);
        t
    }

    // (keys < key, keys >= key)
    fn split(&mut self, t: u32, key: &K) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        if self.nodes[t as usize].key < *key {
            let (l, r) = self.split(self.nodes[t as usize].right, key);
            self.nodes[t as usize].right = l;
            self.fix(t);
            (t, r)
        } else {
            let (l, r) = self.split(self.nodes[t as usize].left, key);
            self.nodes[t as usize].left = r;
            self.fix(t);
            (l, t)
        }
    }

    // Every key of `a` is less than every key of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].prio > self.nodes[b as usize].prio {
            let r = self.merge(self.nodes[a as usize].right, b);
            self.nodes[a as usize].right = r;
            self.fix(a);
            a
        } else {
            let l = self.merge(a, self.nodes[b as usize].left);
            self.nodes[b as usize].left = l;
            self.fix(b);
            b
        }
    }

    /// Keys with ranks in `start..end`, in order, in O(log n + count).
    fn range(&self, start: usize, end: usize) -> Vec<&K> {
        let mut out = Vec::with_capacity(end.min(self.len()).saturating_sub(start));
        self.collect(self.root, 0, start, end, &mut out);
        out
    }

    fn collect<'a>(&'a self, t: u32, base: usize, lo: usize, hi: usize, out: &mut Vec<&'a K>) {
        if t == NIL || base >= hi || base + self.size(t) <= lo {
            return;
        }
        let n = &self.nodes[t as usize];
        self.collect(n.left, base, lo, hi, out);
        let at = base + self.size(n.left);
        if lo <= at && at < hi {
            out.push(&n.key);
        }
        self.collect(n.right, at + 1, lo, hi, out);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum TreeOp {
        Insert(u16),
        Remove(u16),
    }

    fn tree_op() -> impl Strategy<Value = TreeOp> {
        prop_oneof![
            3 => (0u16..400).prop_map(TreeOp::Insert),
            2 => (0u16..400).prop_map(TreeOp::Remove),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn rank_tree_matches_sorted_vec(ops in proptest::collection::vec(tree_op(), 1..300),
                                        probes in proptest::collection::vec(0u16..420, 8)) {
            let mut tree = RankTree::new();
            let mut model: Vec<u16> = Vec::new();
            for op in ops {
                match op {
                    TreeOp::Insert(k) => {
                        let want = match model.binary_search(&k) {
                            Ok(_) => None,
                            Err(i) => { model.insert(i, k); Some(i) }
                        };
                        prop_assert_eq!(tree.insert(k), want);
                    }
                    TreeOp::Remove(k) => {
                        let want = model.binary_search(&k).ok();
                        if let Some(i) = want { model.remove(i); }
                        prop_assert_eq!(tree.remove(&k), want);
                    }
                }
                prop_assert_eq!(tree.len(), model.len());
                for &p in &probes {
                    prop_assert_eq!(tree.rank(&p), model.binary_search(&p).ok());
                    prop_assert_eq!(tree.count_less(&p), model.partition_point(|&x| x < p));
                    let i = p as usize % (model.len() + 2);
                    prop_assert_eq!(tree.select(i), model.get(i));
                }
            }
            let all: Vec<u16> = tree.range(0, usize::MAX).into_iter().copied().collect();
            prop_assert_eq!(&all, &model);
            for &p in &probes {
                let (a, b) = (p as usize % 50, p as usize % 50 + p as usize % 37);
                let got: Vec<u16> = tree.range(a, b).into_iter().copied().collect();
                let want: Vec<u16> = model.iter().skip(a).take(b - a).copied().collect();
                prop_assert_eq!(got, want);
            }
        }
    }

    fn member(name: &str) -> Value {
        json!({ "user": { "id": "1" }, "nick": name })
    }

    fn ids(list: &MemberList) -> Vec<String> {
        list.items(0, list.row_count())
            .iter()
            .map(|v| match (v.get("group"), v.get("member")) {
                (Some(g), _) => format!("#{}:{}", g["id"].as_str().unwrap(), g["count"]),
                (_, Some(m)) => m["nick"].as_str().unwrap().to_string(),
                _ => panic!("{v}"),
            })
            .collect()
    }

    #[test]
    fn groups_order_headers_and_counts() {
        let mut l = MemberList::new(1, "everyone".into());
        // Role 10 at position 2 (hoisted, lower), role 20 at position 5 (higher).
        l.upsert_member(1, "zed", Some((10, 2)), true, member("zed"))
            .unwrap();
        l.upsert_member(2, "Amy", Some((20, 5)), true, member("Amy"))
            .unwrap();
        l.upsert_member(3, "bob", None, true, member("bob"))
            .unwrap();
        l.upsert_member(4, "al", Some((20, 5)), false, member("al"))
            .unwrap();
        l.upsert_member(5, "Carl", None, false, member("Carl"))
            .unwrap();
        l.upsert_member(6, "amy", Some((20, 5)), true, member("amy"))
            .unwrap();
        assert_eq!(
            ids(&l),
            [
                "#20:2",
                "Amy",
                "amy",
                "#10:1",
                "zed",
                "#online:1",
                "bob",
                "#offline:2",
                "al",
                "Carl"
            ]
        );
        assert_eq!(l.member_count(), 6);
        assert_eq!(l.online_count(), 4);
        assert_eq!(l.row_count(), 10);
        assert_eq!(
            l.groups(),
            vec![
                GroupCount {
                    id: GroupId::Role(20),
                    count: 2
                },
                GroupCount {
                    id: GroupId::Role(10),
                    count: 1
                },
                GroupCount {
                    id: GroupId::Online,
                    count: 1
                },
                GroupCount {
                    id: GroupId::Offline,
                    count: 2
                },
            ]
        );
        // Case-insensitive with the user id breaking the tie: "Amy" (2) before "amy" (6).
        assert_eq!(l.index_of(2), Some(1));
        assert_eq!(l.index_of(6), Some(2));
        assert_eq!(l.index_of(5), Some(9));
        assert_eq!(l.index_of(99), None);
    }

    #[test]
    fn empty_groups_lose_their_header() {
        let mut l = MemberList::new(1, "everyone".into());
        l.upsert_member(1, "a", Some((7, 1)), true, member("a"))
            .unwrap();
        l.upsert_member(2, "b", None, false, member("b")).unwrap();
        assert_eq!(ids(&l), ["#7:1", "a", "#offline:1", "b"]);
        l.set_online(1, false).unwrap();
        assert_eq!(ids(&l), ["#offline:2", "a", "b"]);
        l.set_online(2, true).unwrap();
        assert_eq!(ids(&l), ["#online:1", "b", "#offline:1", "a"]);
        l.remove_member(1);
        assert_eq!(ids(&l), ["#online:1", "b"]);
        assert_eq!(l.groups().len(), 1);
        l.remove_member(2);
        assert_eq!(l.row_count(), 0);
        assert!(l.groups().is_empty());
        assert_eq!(l.online_count(), 0);
    }

    #[test]
    fn equal_positions_put_the_lower_role_id_first() {
        let mut l = MemberList::new(1, "everyone".into());
        l.upsert_member(1, "a", Some((9, 3)), true, member("a"))
            .unwrap();
        l.upsert_member(2, "b", Some((4, 3)), true, member("b"))
            .unwrap();
        assert_eq!(ids(&l), ["#4:1", "b", "#9:1", "a"]);
    }

    #[test]
    fn long_names_sort_by_their_folded_prefix_then_id() {
        let long = "É".repeat(SORT_NAME_BYTES_MAX);
        let folded = sort_name(&long);
        assert!(folded.len() <= SORT_NAME_BYTES_MAX);
        assert!(folded.chars().all(|c| c == 'é'));
        let mut l = MemberList::new(1, "everyone".into());
        l.upsert_member(9, &format!("{long}b"), None, true, member("x"))
            .unwrap();
        l.upsert_member(3, &format!("{long}a"), None, true, member("y"))
            .unwrap();
        assert_eq!(l.index_of(3), Some(1));
        assert_eq!(l.index_of(9), Some(2));
    }

    #[test]
    fn role_positions_must_agree() {
        let mut l = MemberList::new(1, "everyone".into());
        l.upsert_member(1, "a", Some((7, 1)), true, member("a"))
            .unwrap();
        l.upsert_member(2, "b", Some((7, 1)), true, member("b"))
            .unwrap();
        assert_eq!(
            l.upsert_member(3, "c", Some((7, 2)), true, member("c")),
            Err(MemberListError::RolePositionConflict {
                role_id: 7,
                known: 1,
                given: 2
            })
        );
        // Moving a role must list every holder.
        assert_eq!(
            l.set_hoisted_roles(&[(1, Some((7, 4)))]),
            Err(MemberListError::RolePositionConflict {
                role_id: 7,
                known: 1,
                given: 4
            })
        );
        l.set_hoisted_roles(&[(1, Some((7, 4))), (2, Some((7, 4)))])
            .unwrap();
        assert_eq!(ids(&l), ["#7:2", "a", "b"]);
        assert_eq!(
            l.set_online(42, true),
            Err(MemberListError::UnknownMember(42))
        );
    }

    #[test]
    fn hoisted_roles_are_bounded() {
        let mut l = MemberList::new(1, "everyone".into());
        for i in 0..HOISTED_ROLES_MAX as u64 {
            l.upsert_member(i, "m", Some((1000 + i, i as u32)), true, member("m"))
                .unwrap();
        }
        let extra = HOISTED_ROLES_MAX as u64;
        assert_eq!(
            l.upsert_member(extra, "m", Some((5000, 1)), true, member("m")),
            Err(MemberListError::TooManyHoistedRoles)
        );
        // Replacing the only holder's role keeps the count.
        l.upsert_member(0, "m", Some((5000, 1)), true, member("m"))
            .unwrap();
        assert_eq!(l.groups().len(), HOISTED_ROLES_MAX);
    }

    #[test]
    fn windows_merge_touching_ranges_only() {
        let v = View::new(&[[0, 99], [100, 199], [300, 399], [350, 420]]);
        let w: Vec<(usize, usize)> = v.windows.iter().map(|w| (w.start, w.end)).collect();
        assert_eq!(w, [(0, 199), (300, 420)]);
        assert_eq!(v.windows[0].ranges, [[0, 99], [100, 199]]);
    }

    #[test]
    fn shape_knows_which_rows_stayed() {
        // Rows 0..100; a two-row block moves from 10..=11 to 48..=49.
        let mut sh = Shape::new(100);
        for sp in [
            Splice::Delete(11),
            Splice::Delete(10),
            Splice::Insert(48),
            Splice::Insert(49),
        ] {
            sh.record(sp);
        }
        assert_eq!(sh.unchanged(0, 9, 100), Some(true));
        assert_eq!(sh.unchanged(5, 20, 100), Some(false));
        assert_eq!(sh.unchanged(49, 49, 100), Some(false));
        assert_eq!(sh.unchanged(50, 99, 100), Some(true));
        assert_eq!(sh.unchanged(90, 150, 100), Some(true));
        assert_eq!(sh.origin(12), Some(Origin::Old(-2)));
        // A row put back where it was counts as unchanged.
        sh.set(48, Origin::Old(0));
        sh.set(49, Origin::Old(0));
        assert_eq!(sh.unchanged(45, 49, 100), Some(false));
        assert_eq!(sh.unchanged(48, 55, 100), Some(true));
        sh.record(Splice::Insert(200));
        assert_eq!(sh.unchanged(90, 150, 101), Some(false));
        for _ in 0..TRACKED_SPLICES_MAX {
            sh.record(Splice::Update(0));
        }
        assert_eq!(sh.unchanged(300, 399, 101), None);
    }
}
