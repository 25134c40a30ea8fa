//! Time-window compaction: a pure policy choosing what to merge, and the merge itself.

use std::collections::BTreeMap;

use crate::limits::{
    COMPACTION_INPUT_BYTES_MAX, COMPACTION_MAX_FILES, COMPACTION_MIN_FILES, COMPACTION_TIER_RATIO,
    TOMBSTONE_TTL_MS,
};
use crate::message::{Body, Key, Part, Version};

/// What the policy knows of one live file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    /// File number.
    pub number: u64,
    /// Size in bytes.
    pub size: u64,
    /// Newest message bucket in the file (`u32::MAX` if it holds only read states): its window.
    pub window: u32,
}

/// A chosen compaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Files to merge into one.
    pub inputs: Vec<u64>,
}

/// Time-window policy. The newest message window (and the read-state pseudo-window) is merged
/// once it has `COMPACTION_MIN_FILES` files; an older window, which receives no more writes,
/// is merged as soon as it has two, so each past window settles into one file. Within a window
/// the smallest files go first (size-tiered), bounded by `COMPACTION_MAX_FILES` and
/// `COMPACTION_INPUT_BYTES_MAX`, so a window that outgrew the byte bound still merges its fresh
/// flushes instead of stalling. In the newest window a larger file joins a merge only if it is
/// at most `COMPACTION_TIER_RATIO` times the smaller files chosen (tiers), which bounds how
/// often the same bytes are rewritten while the window fills.
pub fn choose(files: &[FileInfo]) -> Option<Plan> {
    let mut windows: BTreeMap<u32, Vec<&FileInfo>> = BTreeMap::new();
    for f in files {
        windows.entry(f.window).or_default().push(f);
    }
    let newest = windows.keys().copied().filter(|w| *w != u32::MAX).max();
    windows.into_iter().find_map(|(w, mut group)| {
        let min = if Some(w) == newest || w == u32::MAX {
            COMPACTION_MIN_FILES
        } else {
            2
        };
        let tiered = min == COMPACTION_MIN_FILES;
        group.sort_by_key(|f| (f.size, f.number));
        let mut inputs = Vec::new();
        let mut bytes = 0u64;
        for f in group {
            if inputs.len() == COMPACTION_MAX_FILES || bytes + f.size > COMPACTION_INPUT_BYTES_MAX {
                break;
            }
            // In a window still written to, a file joins the smaller ones only if it is at
            // most `COMPACTION_TIER_RATIO` times their total: fresh flushes merge with each
            // other, and the window's big file is rewritten only once there is new data of
            // comparable size to merge into it (rewriting it on every merge made compaction
            // write ~10x the appended bytes). A file too big for the run so far starts a new
            // run if the run is too short to merge (a small forced flush never blocks the rest).
            if tiered && !inputs.is_empty() && f.size > bytes.saturating_mul(COMPACTION_TIER_RATIO)
            {
                if inputs.len() >= min {
                    break;
                }
                inputs.clear();
                bytes = 0;
            }
            bytes += f.size;
            inputs.push(f.number);
        }
        inputs.sort_unstable();
        (inputs.len() >= min).then_some(Plan { inputs })
    })
}

/// A full merge of every file, for an explicit request.
pub fn choose_all(files: &[FileInfo]) -> Option<Plan> {
    let mut inputs = Vec::new();
    let mut bytes = 0u64;
    for f in files {
        if inputs.len() == COMPACTION_MAX_FILES || bytes + f.size > COMPACTION_INPUT_BYTES_MAX {
            break;
        }
        bytes += f.size;
        inputs.push(f.number);
    }
    (inputs.len() >= 2).then_some(Plan { inputs })
}

/// Merges inputs keeping the newest version per key. A tombstone is dropped once older than
/// the TTL and `older_elsewhere(part, seq)` says no file outside the merge may hold an older
/// version of its partition.
pub fn merge(
    inputs: impl IntoIterator<Item = Version>,
    now_ms: u64,
    older_elsewhere: &dyn Fn(&Part, u64) -> bool,
) -> Vec<Version> {
    let mut newest: BTreeMap<Key, Version> = BTreeMap::new();
    for v in inputs {
        let k = v.body.key();
        match newest.get(&k) {
            Some(old) if old.seq >= v.seq => {}
            _ => {
                newest.insert(k, v);
            }
        }
    }
    newest
        .into_iter()
        .filter(|(k, v)| keep(k, v, now_ms, older_elsewhere))
        .map(|(_, v)| v)
        .collect()
}

/// Whether a merge keeps the newest version `v` of key `k`: everything but a tombstone older
/// than the TTL whose partition no file outside the merge may hold older data of.
pub fn keep(
    k: &Key,
    v: &Version,
    now_ms: u64,
    older_elsewhere: &dyn Fn(&Part, u64) -> bool,
) -> bool {
    match v.body {
        Body::Tombstone { deleted_at_ms, .. } => {
            now_ms.saturating_sub(deleted_at_ms) < TOMBSTONE_TTL_MS
                || older_elsewhere(&k.partition(), v.seq)
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Message, PartitionKey};

    #[test]
    fn policy_settles_old_windows_and_waits_on_the_newest() {
        let f = |number, window| FileInfo {
            number,
            size: 10,
            window,
        };
        assert_eq!(choose(&[f(1, 5), f(2, 6), f(3, 6)]), None);
        assert_eq!(
            choose(&[f(1, 5), f(2, 6), f(3, 5)]),
            Some(Plan { inputs: vec![1, 3] })
        );
        let files = [f(2, 6), f(3, 6), f(4, 6), f(5, 6), f(6, 7)];
        assert_eq!(
            choose(&files),
            Some(Plan {
                inputs: vec![2, 3, 4, 5]
            })
        );
        let files = [f(2, 7), f(3, 7), f(4, 7), f(5, 7), f(6, u32::MAX)];
        assert_eq!(
            choose(&files),
            Some(Plan {
                inputs: vec![2, 3, 4, 5]
            })
        );
    }

    #[test]
    fn newest_window_merges_in_tiers() {
        let f = |number, size| FileInfo {
            number,
            size,
            window: 9,
        };
        // Three fresh flushes do not pull the window's big file in...
        assert_eq!(choose(&[f(1, 100), f(2, 10), f(3, 10), f(4, 10)]), None);
        // ...four merge with each other...
        assert_eq!(
            choose(&[f(1, 100), f(2, 10), f(3, 10), f(4, 10), f(5, 10)]),
            Some(Plan {
                inputs: vec![2, 3, 4, 5]
            })
        );
        // ...and the big file joins once they add up to half its size.
        assert_eq!(
            choose(&[f(1, 100), f(2, 10), f(3, 10), f(4, 10), f(5, 10), f(6, 10)]),
            Some(Plan {
                inputs: vec![1, 2, 3, 4, 5, 6]
            })
        );
        // A small forced flush does not hold the others back.
        assert_eq!(
            choose(&[f(1, 1), f(2, 10), f(3, 11), f(4, 10), f(5, 12)]),
            Some(Plan {
                inputs: vec![2, 3, 4, 5]
            })
        );
    }

    #[test]
    fn merge_keeps_newest_and_drops_expired_tombstones() {
        let m = |seq, content: &str| Version {
            seq,
            body: Body::Message(Message {
                id: 1 << 22,
                channel_id: 1,
                content: content.into(),
                ..Message::default()
            }),
        };
        let t = Version {
            seq: 5,
            body: Body::Tombstone {
                channel_id: 1,
                message_id: 2 << 22,
                deleted_at_ms: 0,
            },
        };
        let out = merge([m(1, "a"), m(3, "b"), t.clone()], 1, &|_, _| false);
        assert_eq!(out, vec![m(3, "b"), t.clone()]);
        let out = merge([m(3, "b"), t.clone()], TOMBSTONE_TTL_MS, &|_, _| false);
        assert_eq!(out, vec![m(3, "b")]);
        let out = merge([t.clone()], TOMBSTONE_TTL_MS, &|p, _| {
            *p == Part::Msg(PartitionKey::of(1, 2 << 22))
        });
        assert_eq!(out, vec![t]);
    }
}
