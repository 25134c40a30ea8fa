//! Dispatch fan-out: an event is serialized once into a shared tail `"t":"NAME","d":{...}}`;
//! each recipient only writes `{"op":0,"s":<seq>,` plus its WebSocket header into a small
//! inline buffer, and the tail follows by reference (writev, no copy).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use bytes::Bytes;
use serde::Serialize;

/// Longest per-recipient JSON prefix: `{"op":0,"s":` + 20 digits + `,`.
pub const DISPATCH_PREFIX_BYTES_MAX: usize = 33;

/// One serialized event, shared by every recipient (cloning is a reference-count increment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedEvent {
    tail: Bytes,
    required_intents: u64,
}

impl SharedEvent {
    /// Serializes `d` once. `required_intents` comes from [`super::intents::required`]
    /// (0 = delivered to everyone).
    pub fn new<T: Serialize + ?Sized>(
        name: &str,
        d: &T,
        required_intents: u64,
    ) -> Result<Self, serde_json::Error> {
        let mut tail = Vec::with_capacity(128);
        tail.extend_from_slice(b"\"t\":");
        serde_json::to_writer(&mut tail, name)?;
        tail.extend_from_slice(b",\"d\":");
        serde_json::to_writer(&mut tail, d)?;
        tail.push(b'}');
        Ok(Self {
            // Exact size: a session keeps its READY in its resume ring for as long as it lives,
            // so the doubling slack of the serializer's buffer would be held per session.
            tail: Bytes::from(tail.into_boxed_slice()),
            required_intents,
        })
    }

    /// Builds from `d` already serialized as JSON (not re-validated: trusted engine input).
    pub fn from_raw(
        name: &str,
        d_json: &str,
        required_intents: u64,
    ) -> Result<Self, serde_json::Error> {
        let raw: &serde_json::value::RawValue = serde_json::from_str(d_json)?;
        Self::new(name, raw, required_intents)
    }

    /// The shared `"t":...,"d":...}` bytes.
    pub fn tail(&self) -> &Bytes {
        &self.tail
    }

    /// Intents of which a session needs one to receive this event (0 = all).
    pub fn required_intents(&self) -> u64 {
        self.required_intents
    }
}

/// Writes `{"op":0,"s":<seq>,` into `dst`; returns its length.
pub fn write_prefix(seq: u64, dst: &mut [u8; DISPATCH_PREFIX_BYTES_MAX]) -> usize {
    const HEAD: &[u8; 12] = b"{\"op\":0,\"s\":";
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = seq;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        i -= 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let digits = digits.get(i..).unwrap_or(&[]);
    let Some((head, rest)) = dst.split_first_chunk_mut::<12>() else {
        return 0;
    };
    *head = *HEAD;
    let Some((comma, num)) = rest
        .get_mut(..=digits.len())
        .and_then(|r| r.split_last_mut())
    else {
        return 0;
    };
    num.copy_from_slice(digits);
    *comma = b',';
    HEAD.len() + digits.len() + 1
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn prefix_plus_tail_is_the_full_payload() {
        let ev = SharedEvent::new(
            "MESSAGE_CREATE",
            &serde_json::json!({"id":"1","content":"hé \"x\""}),
            0,
        )
        .unwrap();
        for seq in [0u64, 7, 1234567, u64::MAX] {
            let mut p = [0u8; DISPATCH_PREFIX_BYTES_MAX];
            let n = write_prefix(seq, &mut p);
            let mut full = p[..n].to_vec();
            full.extend_from_slice(ev.tail());
            let v: serde_json::Value = serde_json::from_slice(&full).unwrap();
            assert_eq!(v["op"], 0);
            assert_eq!(v["s"], seq);
            assert_eq!(v["t"], "MESSAGE_CREATE");
            assert_eq!(v["d"]["content"], "hé \"x\"");
        }
    }

    #[test]
    fn raw_data_is_checked_json() {
        assert!(SharedEvent::from_raw("X", "{\"a\":1}", 0).is_ok());
        assert!(SharedEvent::from_raw("X", "{\"a\":", 0).is_err());
    }
}
