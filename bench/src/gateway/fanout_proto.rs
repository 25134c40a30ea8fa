//! gw-fanout's pure parts: the message content that carries the send time, the fast parser
//! the clients run on every delivery, the bodies sent to Hearth and Nchan, and the per-message
//! bookkeeping (receipts, last delivery, loss) the harness merges over client threads. No I/O.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use serde_json::Value;

/// Gateway intents every member session identifies with: GUILDS | GUILD_MESSAGES |
/// MESSAGE_CONTENT (1 | 512 | 32768), so MESSAGE_CREATE arrives with its content.
pub const FANOUT_INTENTS: u64 = 1 | 512 | 32_768;
/// Start of every bench message's content; the message index follows.
pub const CONTENT_MARKER: &str = "hearth-fanout k=";
/// Separates the index from the send time in the content.
pub const CONTENT_TS_MARKER: &str = " ts=";
/// Event name of the fanned-out dispatch.
pub const MESSAGE_EVENT: &str = "MESSAGE_CREATE";
/// Discord's content limit, characters (Hearth answers 400 above it).
pub const CONTENT_CHARS_MAX: usize = 2000;
/// Smallest content: the marker, a 20-digit index and a 20-digit time fit.
pub const CONTENT_BYTES_MIN: usize = 64;
/// The prefix Hearth writes before every dispatch's shared tail: `{"op":0,"s":<seq>,`.
const DISPATCH_PREFIX: &[u8] = br#"{"op":0,"s":"#;
/// The event name as it appears in a dispatch.
const EVENT_NEEDLE: &[u8] = br#""t":"MESSAGE_CREATE""#;
/// Digits of the longest u64.
const U64_DIGITS_MAX: usize = 20;

const _: () = assert!(CONTENT_BYTES_MIN <= CONTENT_CHARS_MAX);
const _: () = assert!(
    CONTENT_MARKER.len() + CONTENT_TS_MARKER.len() + 2 * U64_DIGITS_MAX < CONTENT_BYTES_MIN
);

/// The content of bench message `k` sent at `ts_ns` (CLOCK_MONOTONIC), padded with `x` to
/// `bytes` (ASCII, so bytes = characters; nothing in it needs JSON escaping).
pub fn content(k: u64, ts_ns: u64, bytes: usize) -> String {
    let mut s = format!("{CONTENT_MARKER}{k}{CONTENT_TS_MARKER}{ts_ns} ");
    while s.len() < bytes {
        s.push('x');
    }
    s
}

/// One bench message as a client receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutEvent {
    /// Message index, 0-based over the whole run of a target.
    pub k: u64,
    /// Send time, CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
    /// The dispatch's sequence number when it starts with Hearth's `{"op":0,"s":N,` prefix.
    pub seq: Option<u64>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(rest) = haystack.get(from..) {
        let at = from + rest.iter().position(|&b| b == first)?;
        if haystack.get(at..at + needle.len())? == needle {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The decimal number at the front of `text` and the bytes it used; `None` without digits or
/// on overflow.
fn leading_u64(text: &[u8]) -> Option<(u64, usize)> {
    let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > U64_DIGITS_MAX {
        return None;
    }
    let mut n: u64 = 0;
    for &b in text.get(..digits)? {
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((n, digits))
}

/// Recognises a bench MESSAGE_CREATE (Hearth's dispatch or Nchan's copy of it) without
/// building a JSON tree: the event name, then the content marker, index and send time. `None`
/// for anything else (READY, GUILD_CREATE, acks), which the caller classifies the slow way.
pub fn parse_event(payload: &[u8]) -> Option<FanoutEvent> {
    find(payload, EVENT_NEEDLE)?;
    let at = find(payload, CONTENT_MARKER.as_bytes())?;
    let rest = payload.get(at + CONTENT_MARKER.len()..)?;
    let (k, used) = leading_u64(rest)?;
    let rest = rest
        .get(used..)?
        .strip_prefix(CONTENT_TS_MARKER.as_bytes())?;
    let (ts_ns, _) = leading_u64(rest)?;
    let seq = payload
        .strip_prefix(DISPATCH_PREFIX)
        .and_then(leading_u64)
        .map(|(s, _)| s);
    Some(FanoutEvent { k, ts_ns, seq })
}

/// The Identify payload (op 2) of a member session.
pub fn identify_payload(token: &str) -> Vec<u8> {
    serde_json::json!({
        "op": 2,
        "d": {
            "token": token,
            "intents": FANOUT_INTENTS,
            "properties": {"os": "linux", "browser": "hearth-bench", "device": "hearth-bench"},
        }
    })
    .to_string()
    .into_bytes()
}

/// The body of `POST /api/v10/channels/{id}/messages`.
pub fn message_body(content: &str) -> String {
    serde_json::json!({ "content": content }).to_string()
}

/// The path of `POST .../messages` for `channel`.
pub fn messages_path(channel: u64) -> String {
    format!("/api/v10/channels/{channel}/messages")
}

/// The configuration file `hearth` gets for this scenario: REST sends are not rate limited
/// (the scenario posts up to 50 messages per second from one bot).
pub const HEARTH_CONFIG_TOML: &str = "# Written by hearth-bench gw-fanout for one run.\n\
                                      [limits]\nrest_rate_limits = false\n";

/// Smallest io_uring submission queue `hearth` accepts (engine/src/profile.rs).
pub const RING_ENTRIES_MIN: u32 = 8;
/// Largest io_uring submission queue `hearth` accepts (the kernel's limit).
pub const RING_ENTRIES_MAX: u32 = 32_768;

/// A hardware profile's text with its top-level `ring_entries` set to `entries` (replaced, or
/// added first when absent), for `--ring-entries`.
pub fn with_ring_entries(profile: &str, entries: u32) -> Result<String, String> {
    if !entries.is_power_of_two() || !(RING_ENTRIES_MIN..=RING_ENTRIES_MAX).contains(&entries) {
        return Err(format!(
            "ring entries must be a power of two in {RING_ENTRIES_MIN}..={RING_ENTRIES_MAX}"
        ));
    }
    let line = format!("ring_entries = {entries} # set by hearth-bench gw-fanout --ring-entries");
    let mut found = false;
    let mut in_table = false;
    let mut out: Vec<String> = Vec::new();
    for l in profile.lines() {
        let t = l.trim_start();
        in_table |= t.starts_with('[');
        let key = t.split('=').next().map(str::trim);
        if !in_table && key == Some("ring_entries") {
            out.push(line.clone());
            found = true;
        } else {
            out.push(l.to_owned());
        }
    }
    if !found {
        out.insert(0, line);
    }
    let mut text = out.join("\n");
    text.push('\n');
    Ok(text)
}

/// A Discord message object shaped like the ones Hearth fans out, for Nchan runs without a
/// Hearth run to copy from (ids and names are fixed; only the content changes per message).
pub fn default_message_template() -> Value {
    serde_json::json!({
        "id": "1311111111111111111",
        "channel_id": "1311111111111111112",
        "guild_id": "1311111111111111110",
        "author": {"id": "1311111111111111109", "username": "fanout-owner", "global_name": null,
                   "discriminator": "0", "avatar": null, "bot": true},
        "member": {"roles": [], "nick": null, "joined_at": "2026-11-23T12:00:00.000000+00:00",
                   "deaf": false, "mute": false, "flags": 0, "pending": false},
        "content": "",
        "timestamp": "2026-11-23T12:00:00.000000+00:00",
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": false,
        "type": 0,
        "flags": 0,
        "components": []
    })
}

/// The text published to Nchan for a message with `content`: the dispatch a Hearth session
/// receives (`{"op":0,"s":0,"t":"MESSAGE_CREATE","d":...}`, `d` being `template` with this
/// content), so both servers carry frames of about the same size.
pub fn nchan_body(template: &Value, content: &str) -> String {
    let mut d = template.clone();
    if let Some(o) = d.as_object_mut() {
        o.insert("content".into(), Value::String(content.to_owned()));
    }
    format!(r#"{{"op":0,"s":0,"t":"{MESSAGE_EVENT}","d":{d}}}"#)
}

/// What the client threads saw of one message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Receipts {
    /// Send time carried in the content, ns (0 until a copy arrived).
    pub ts_ns: u64,
    /// Sessions that received it (each session once).
    pub count: u64,
    /// First receipt, CLOCK_MONOTONIC ns (0: none).
    pub first_rx_ns: u64,
    /// Last receipt, ns.
    pub last_rx_ns: u64,
}

impl Receipts {
    /// Counts one receipt at `now` of a message sent at `ts_ns`.
    pub fn record(&mut self, ts_ns: u64, now: u64) {
        self.ts_ns = ts_ns;
        self.count += 1;
        if self.first_rx_ns == 0 || now < self.first_rx_ns {
            self.first_rx_ns = now;
        }
        self.last_rx_ns = self.last_rx_ns.max(now);
    }

    /// Adds another thread's receipts of the same message.
    pub fn merge(&mut self, o: &Receipts) {
        if o.count == 0 {
            return;
        }
        self.ts_ns = o.ts_ns;
        self.count += o.count;
        if self.first_rx_ns == 0 || (o.first_rx_ns != 0 && o.first_rx_ns < self.first_rx_ns) {
            self.first_rx_ns = o.first_rx_ns;
        }
        self.last_rx_ns = self.last_rx_ns.max(o.last_rx_ns);
    }

    /// Send → last receipt, ns; `None` when nobody received it.
    pub fn to_last_ns(&self) -> Option<u64> {
        (self.count > 0).then(|| self.last_rx_ns.saturating_sub(self.ts_ns).max(1))
    }
}

/// Merges per-message receipts of several threads, all indexed from the same first message.
pub fn merge_receipts(into: &mut Vec<Receipts>, from: &[Receipts]) {
    if into.len() < from.len() {
        into.resize(from.len(), Receipts::default());
    }
    for (a, b) in into.iter_mut().zip(from) {
        a.merge(b);
    }
}

/// Copies missing from `expected_each` sessions per message, summed over `messages` (a message
/// nobody received counts `expected_each` times).
pub fn lost(receipts: &[Receipts], messages: usize, expected_each: u64) -> u64 {
    (0..messages)
        .map(|i| {
            let got = receipts.get(i).map_or(0, |r| r.count);
            expected_each.saturating_sub(got)
        })
        .sum()
}

/// When message `i` of a phase started at `start_ns` is due at `rate` per second.
pub fn due_ns(start_ns: u64, i: u64, rate: f64) -> u64 {
    if rate <= 0.0 {
        return start_ns;
    }
    start_ns + (i as f64 * 1e9 / rate) as u64
}

/// Messages a phase of `duration_s` at `rate` per second sends (at least one).
pub fn messages_in(rate: f64, duration_s: u64) -> u64 {
    ((rate * duration_s as f64).round() as u64).max(1)
}

/// `x / over`, 0 when `over` is not positive.
pub fn per(x: f64, over: f64) -> f64 {
    if over > 0.0 { x / over } else { 0.0 }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn content_round_trips_through_a_hearth_dispatch() {
        let c = content(12, 987_654_321, 100);
        assert_eq!(c.len(), 100);
        let frame = format!(
            r#"{{"op":0,"s":41,"t":"MESSAGE_CREATE","d":{{"id":"1","content":"{c}","tts":false}}}}"#
        );
        assert_eq!(
            parse_event(frame.as_bytes()),
            Some(FanoutEvent {
                k: 12,
                ts_ns: 987_654_321,
                seq: Some(41)
            })
        );
    }

    #[test]
    fn other_events_are_not_bench_messages() {
        assert_eq!(
            parse_event(br#"{"op":0,"s":2,"t":"GUILD_CREATE","d":{}}"#),
            None
        );
        // Stripped content (a session without MESSAGE_CONTENT) is not counted either.
        assert_eq!(
            parse_event(br#"{"op":0,"s":3,"t":"MESSAGE_CREATE","d":{"content":""}}"#),
            None
        );
        let c = content(1, 2, 64);
        let update = format!(r#"{{"op":0,"s":4,"t":"MESSAGE_UPDATE","d":{{"content":"{c}"}}}}"#);
        assert_eq!(parse_event(update.as_bytes()), None);
        let overflow = format!(
            r#"{{"t":"MESSAGE_CREATE","d":{{"content":"{CONTENT_MARKER}99999999999999999999999 ts=1"}}}}"#
        );
        assert_eq!(parse_event(overflow.as_bytes()), None);
    }

    #[test]
    fn nchan_body_is_the_same_dispatch_shape() {
        let c = content(3, 5, 64);
        let body = nchan_body(&default_message_template(), &c);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["t"], MESSAGE_EVENT);
        assert_eq!(v["d"]["content"], c.as_str());
        let e = parse_event(body.as_bytes()).unwrap();
        assert_eq!((e.k, e.ts_ns, e.seq), (3, 5, Some(0)));
    }

    #[test]
    fn receipts_merge_and_loss() {
        let mut a = vec![Receipts::default(); 2];
        a[0].record(100, 250);
        a[0].record(100, 200);
        let mut b = vec![Receipts::default(); 3];
        b[0].record(100, 400);
        b[1].record(300, 350);
        merge_receipts(&mut a, &b);
        assert_eq!(a.len(), 3);
        assert_eq!(a[0].count, 3);
        assert_eq!((a[0].first_rx_ns, a[0].last_rx_ns), (200, 400));
        assert_eq!(a[0].to_last_ns(), Some(300));
        assert_eq!(a[2].to_last_ns(), None);
        // 3 sessions expected: message 0 misses none, 1 misses 2 copies, 2 (nobody got it) and 3
        // (beyond the array) miss all 3.
        assert_eq!(lost(&a, 4, 3), 2 + 3 + 3);
    }

    #[test]
    fn ring_entries_override() {
        let p = "# c\nname = \"bench\"\nring_entries = 1024\nrecv_buffers = 256\n";
        let t = with_ring_entries(p, 16_384).unwrap();
        assert!(t.contains("\nring_entries = 16384 #"), "{t}");
        assert!(!t.contains("1024"));
        assert!(t.contains("recv_buffers = 256"));
        let t = with_ring_entries("name = \"x\"\n[t]\nring_entries = 2\n", 64).unwrap();
        assert!(t.starts_with("ring_entries = 64 #"), "{t}");
        assert!(t.contains("[t]\nring_entries = 2"));
        assert!(with_ring_entries(p, 1000).is_err());
        assert!(with_ring_entries(p, 65_536).is_err());
    }

    #[test]
    fn pacing() {
        assert_eq!(due_ns(1_000, 0, 50.0), 1_000);
        assert_eq!(due_ns(1_000, 5, 50.0), 100_001_000);
        assert_eq!(due_ns(7, 9, 0.0), 7);
        assert_eq!(messages_in(50.0, 20), 1000);
        assert_eq!(messages_in(0.01, 1), 1);
        assert_eq!(per(10.0, 4.0), 2.5);
        assert_eq!(per(1.0, 0.0), 0.0);
    }
}
