//! Lazy member lists, one behaviour at a time: payload shape, range validation, resubscribing,
//! the exact ops of small changes, shared payloads and silence for untouched ranges.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use gateway_core::guild::member_list::{
    GroupId, ListUpdate, MemberList, MemberListError, RANGE_ROWS_MAX, RANGES_PER_SUBSCRIBER_MAX,
};
use serde_json::{Value, json};

const GUILD: u64 = 81384788765712384;
const MOD: u64 = 900;

fn member(id: u64, nick: &str) -> Value {
    json!({ "user": { "id": id.to_string() }, "nick": nick })
}

/// `#MOD:1 ann | #online:2 bea cid | #offline:1 dan`
fn small() -> MemberList {
    let mut l = MemberList::new(GUILD, "everyone".into());
    l.upsert_member(1, "ann", Some((MOD, 3)), true, member(1, "ann"))
        .unwrap();
    l.upsert_member(2, "bea", None, true, member(2, "bea"))
        .unwrap();
    l.upsert_member(3, "cid", None, true, member(3, "cid"))
        .unwrap();
    l.upsert_member(4, "dan", Some((MOD, 3)), false, member(4, "dan"))
        .unwrap();
    l
}

fn group(id: &str, count: u64) -> Value {
    json!({ "group": { "id": id, "count": count } })
}

fn item(id: u64, nick: &str) -> Value {
    json!({ "member": member(id, nick) })
}

fn ops_for(updates: &[ListUpdate], session: u64) -> Option<Value> {
    updates
        .iter()
        .find(|u| u.subscribers.contains(&session))
        .map(|u| u.payload["ops"].clone())
}

#[test]
fn subscribe_answers_sync_with_the_full_payload() {
    let mut l = small();
    let d = l.subscribe(7, &[[0, 99]]).unwrap();
    assert_eq!(
        d,
        json!({
            "guild_id": GUILD.to_string(),
            "id": "everyone",
            "member_count": 4,
            "online_count": 3,
            "groups": [
                { "id": MOD.to_string(), "count": 1 },
                { "id": "online", "count": 2 },
                { "id": "offline", "count": 1 },
            ],
            "ops": [{
                "op": "SYNC",
                "range": [0, 99],
                "items": [
                    group(&MOD.to_string(), 1), item(1, "ann"),
                    group("online", 2), item(2, "bea"), item(3, "cid"),
                    group("offline", 1), item(4, "dan"),
                ],
            }],
        })
    );
    assert_eq!(l.subscriber_count(), 1);
    assert_eq!(l.ranges_of(7), Some(&[[0, 99]][..]));
    assert_eq!(l.groups()[0].id, GroupId::Role(MOD));
}

#[test]
fn bad_ranges_are_refused_and_change_nothing() {
    let mut l = small();
    l.subscribe(7, &[[0, 9]]).unwrap();
    assert_eq!(
        l.subscribe(7, &[[5, 4]]),
        Err(MemberListError::BadRange { start: 5, end: 4 })
    );
    assert_eq!(
        l.subscribe(7, &[[0, RANGE_ROWS_MAX]]),
        Err(MemberListError::BadRange {
            start: 0,
            end: RANGE_ROWS_MAX
        })
    );
    let many: Vec<[u32; 2]> = (0..=RANGES_PER_SUBSCRIBER_MAX as u32)
        .map(|i| [i * 100, i * 100 + 99])
        .collect();
    assert_eq!(
        l.subscribe(7, &many),
        Err(MemberListError::TooManyRanges(many.len()))
    );
    assert_eq!(l.ranges_of(7), Some(&[[0, 9]][..]));
    // The largest allowed request is accepted.
    let most = &many[..RANGES_PER_SUBSCRIBER_MAX];
    let d = l.subscribe(8, most).unwrap();
    assert_eq!(
        d["ops"].as_array().unwrap().len(),
        RANGES_PER_SUBSCRIBER_MAX
    );
    assert_eq!(l.subscriber_count(), 2);
}

#[test]
fn resubscribing_invalidates_dropped_ranges_then_syncs() {
    let mut l = small();
    l.subscribe(7, &[[0, 2], [4, 6]]).unwrap();
    let d = l.subscribe(7, &[[4, 6], [3, 3]]).unwrap();
    assert_eq!(
        d["ops"],
        json!([
            { "op": "INVALIDATE", "range": [0, 2] },
            { "op": "SYNC", "range": [3, 3], "items": [item(2, "bea")] },
            { "op": "SYNC", "range": [4, 6], "items": [item(3, "cid"), group("offline", 1), item(4, "dan")] },
        ])
    );
    // No ranges: the old ones are invalidated and the session is gone.
    let d = l.subscribe(7, &[]).unwrap();
    assert_eq!(
        d["ops"],
        json!([
            { "op": "INVALIDATE", "range": [3, 3] },
            { "op": "INVALIDATE", "range": [4, 6] },
        ])
    );
    assert_eq!(l.subscriber_count(), 0);
    assert!(
        l.upsert_member(5, "eve", None, true, member(5, "eve"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_join_inside_a_window_is_insert_then_the_row_pushed_out() {
    let mut l = small();
    l.subscribe(7, &[[0, 4]]).unwrap();
    // Rows after the window: untouched by an insertion far below.
    l.subscribe(8, &[[0, 1]]).unwrap();
    let u = l
        .upsert_member(5, "bob", None, true, member(5, "bob"))
        .unwrap();
    // "bob" lands at 4 (after "bea"); "cid" is pushed to 5, out of [0, 4]; the online header
    // at 2 counts 3 now.
    assert_eq!(
        ops_for(&u, 7).unwrap(),
        json!([
            { "op": "INSERT", "index": 4, "item": item(5, "bob") },
            { "op": "DELETE", "index": 5 },
            { "op": "UPDATE", "index": 2, "item": group("online", 3) },
        ])
    );
    assert_eq!(ops_for(&u, 8), None);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].payload["online_count"], 4);
    assert_eq!(u[0].payload["member_count"], 5);
}

#[test]
fn a_leave_is_delete_then_the_row_that_slides_in() {
    let mut l = small();
    l.subscribe(7, &[[3, 5]]).unwrap();
    let u = l.remove_member(2);
    // Rows were: #MOD ann #online bea cid #offline dan; now: #MOD ann #online cid #offline dan.
    assert_eq!(
        ops_for(&u, 7).unwrap(),
        json!([
            { "op": "DELETE", "index": 3 },
            { "op": "INSERT", "index": 5, "item": item(4, "dan") },
        ])
    );
    assert!(l.remove_member(2).is_empty());
}

#[test]
fn a_nick_change_in_place_is_one_update_and_a_move_is_bounded_by_the_window() {
    let mut l = small();
    l.subscribe(7, &[[0, 99]]).unwrap();
    let u = l
        .upsert_member(2, "Bee", None, true, member(2, "Bee"))
        .unwrap();
    assert_eq!(
        ops_for(&u, 7).unwrap(),
        json!([{ "op": "UPDATE", "index": 3, "item": item(2, "Bee") }])
    );
    // Renaming "Bee" to "zed" moves it after "cid": one DELETE and one INSERT.
    let u = l
        .upsert_member(2, "zed", None, true, member(2, "zed"))
        .unwrap();
    assert_eq!(
        ops_for(&u, 7).unwrap(),
        json!([
            { "op": "DELETE", "index": 3 },
            { "op": "INSERT", "index": 4, "item": item(2, "zed") },
        ])
    );
    // The same values again: nothing to send.
    assert!(
        l.upsert_member(2, "zed", None, true, member(2, "zed"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_header_swap_leaves_rows_below_it_alone() {
    let mut l = MemberList::new(GUILD, "everyone".into());
    l.upsert_member(1, "solo", None, true, member(1, "solo"))
        .unwrap();
    for i in 2..=10 {
        let n = format!("m{i:02}");
        l.upsert_member(i, &n, None, false, member(i, &n)).unwrap();
    }
    // #online solo | #offline m02..m10
    l.subscribe(7, &[[0, 0]]).unwrap();
    l.subscribe(8, &[[1, 1]]).unwrap();
    l.subscribe(9, &[[5, 9]]).unwrap();
    // The only online member gets a hoisted role: the "online" header becomes the role's.
    // Four splices touch row 0, more ops than its one row: it is re-synced instead.
    let u = l
        .upsert_member(1, "solo", Some((MOD, 1)), true, member(1, "solo"))
        .unwrap();
    assert_eq!(
        ops_for(&u, 7).unwrap(),
        json!([{ "op": "SYNC", "range": [0, 0], "items": [group(&MOD.to_string(), 1)] }])
    );
    // "solo" is still row 1 and rows 5..=9 did not move: nothing for them.
    assert_eq!(ops_for(&u, 8), None);
    assert_eq!(ops_for(&u, 9), None);
}

#[test]
fn same_ops_share_one_payload_whatever_the_ranges() {
    let mut l = small();
    l.subscribe(7, &[[0, 99]]).unwrap();
    l.subscribe(8, &[[0, 9]]).unwrap();
    l.subscribe(9, &[[0, 1], [3, 3]]).unwrap();
    l.subscribe(10, &[[5, 6]]).unwrap();
    let u = l
        .upsert_member(2, "bea", None, true, json!({ "nick": "bea", "x": 1 }))
        .unwrap();
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].subscribers, [7, 8, 9]);
    assert_eq!(
        u[0].payload["ops"],
        json!([{ "op": "UPDATE", "index": 3, "item": { "member": { "nick": "bea", "x": 1 } } }])
    );
    assert!(l.unsubscribe(8));
    assert!(!l.unsubscribe(8));
    let u = l.set_online(3, false).unwrap();
    assert!(u.iter().all(|u| !u.subscribers.contains(&8)));
    assert_eq!(
        l.set_online(99, true),
        Err(MemberListError::UnknownMember(99))
    );
}

#[test]
fn moving_a_role_without_passing_another_changes_nothing_visible() {
    let mut l = small();
    l.upsert_member(5, "eve", Some((901, 8)), true, member(5, "eve"))
        .unwrap();
    l.subscribe(7, &[[0, 99]]).unwrap();
    // MOD goes from position 3 to 5: still below 901 (8), still above the online group.
    let u = l
        .set_hoisted_roles(&[(1, Some((MOD, 5))), (4, Some((MOD, 5)))])
        .unwrap();
    assert!(u.is_empty(), "{u:?}");
    // Moving it above 901 swaps the two role groups.
    let u = l
        .set_hoisted_roles(&[(1, Some((MOD, 9))), (4, Some((MOD, 9)))])
        .unwrap();
    let mut rows: Vec<Value> = l.subscribe(8, &[[0, 99]]).unwrap()["ops"][0]["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        rows.drain(..4).collect::<Vec<_>>(),
        [
            group(&MOD.to_string(), 1),
            item(1, "ann"),
            group("901", 1),
            item(5, "eve"),
        ]
    );
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].subscribers, [7]);
}
