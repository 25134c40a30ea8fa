//! Property tests: the frame parser and decoder never panic on arbitrary bytes, and any stream
//! of frames split at arbitrary points decodes to the messages that were sent.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use gateway_core::ws::{Decoder, OpCode, Parsed, WsEvent, parse_frame, write_client_frame};
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq)]
enum Msg {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
}

fn msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        "\\PC{0,200}".prop_map(Msg::Text),
        proptest::collection::vec(any::<u8>(), 0..600).prop_map(Msg::Binary),
        proptest::collection::vec(any::<u8>(), 0..126).prop_map(Msg::Ping),
    ]
}

/// Serializes a message, fragmenting data messages at the given cut fractions (which may fall
/// inside a UTF-8 code point).
fn encode(m: &Msg, cuts: &[u16], mask: [u8; 4], out: &mut Vec<u8>) {
    let (op, bytes) = match m {
        Msg::Ping(p) => {
            write_client_frame(OpCode::Ping, true, mask, p, out);
            return;
        }
        Msg::Text(s) => (OpCode::Text, s.as_bytes()),
        Msg::Binary(b) => (OpCode::Binary, b.as_slice()),
    };
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|&c| usize::from(c) * bytes.len() / 65536)
        .collect();
    points.sort_unstable();
    points.dedup();
    let mut start = 0;
    let mut first = true;
    for p in points.into_iter().chain([bytes.len()]) {
        if p < start || (p == start && p != bytes.len()) {
            continue;
        }
        let fin = p == bytes.len();
        let o = if first { op } else { OpCode::Continuation };
        write_client_frame(o, fin, mask, &bytes[start..p], out);
        first = false;
        start = p;
        if fin {
            break;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..300), masked in any::<bool>(), max in 0usize..2000) {
        match parse_frame(&mut bytes, masked, max) {
            Parsed::NeedMore(n) => prop_assert!(n > 0),
            Parsed::Frame(f) => prop_assert!(f.consumed <= bytes.len()),
            Parsed::Error(_) => {}
        }
    }

    #[test]
    fn decoder_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut d = Decoder::with_limits(256, 512);
        let mut out = Vec::new();
        let mut pos = 0;
        // Each step consumes input or stops, so this ends.
        for _ in 0..bytes.len() + 1 {
            let (n, r) = d.next(&mut bytes[pos..], &mut out);
            pos += n;
            match r {
                Ok(WsEvent::NeedMore(_)) | Err(_) => break,
                Ok(_) => prop_assert!(n > 0),
            }
        }
        // Replies never amplify: a pong is smaller than its masked ping, a close reply is at
        // most one 4-byte frame.
        prop_assert!(out.len() <= pos + 4, "out {} for {} bytes in", out.len(), pos);
    }

    #[test]
    fn single_frame_round_trips_at_every_split(
        payload in proptest::collection::vec(any::<u8>(), 0..70_000),
        mask in any::<[u8; 4]>(),
        split_frac in any::<u16>(),
    ) {
        let mut wire = Vec::new();
        write_client_frame(OpCode::Binary, true, mask, &payload, &mut wire);
        let split = usize::from(split_frac) * wire.len() / 65536;
        let mut prefix = wire[..split].to_vec();
        match parse_frame(&mut prefix, true, 1 << 20) {
            Parsed::NeedMore(n) => prop_assert!(split + n <= wire.len()),
            other => prop_assert!(false, "prefix of {} gave {:?}", split, other),
        }
        match parse_frame(&mut wire, true, 1 << 20) {
            Parsed::Frame(f) => {
                prop_assert_eq!(f.payload, &payload[..]);
                prop_assert!(f.header.fin);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn message_stream_round_trips_split_anywhere(
        msgs in proptest::collection::vec((msg(), proptest::collection::vec(any::<u16>(), 0..4), any::<[u8; 4]>()), 1..8),
        chunk_cuts in proptest::collection::vec(any::<u16>(), 0..12),
    ) {
        let mut wire = Vec::new();
        for (m, cuts, mask) in &msgs {
            encode(m, cuts, *mask, &mut wire);
        }
        let mut points: Vec<usize> = chunk_cuts.iter().map(|&c| usize::from(c) * wire.len() / 65536).collect();
        points.push(wire.len());
        points.sort_unstable();

        let mut d = Decoder::new();
        let mut out = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut got = Vec::new();
        let mut fed = 0;
        for p in points {
            pending.extend_from_slice(&wire[fed..p]);
            fed = p;
            let mut pos = 0;
            loop {
                let (n, r) = d.next(&mut pending[pos..], &mut out);
                pos += n;
                match r.unwrap() {
                    WsEvent::NeedMore(_) => break,
                    WsEvent::Skipped => {}
                    WsEvent::Text(s) => got.push(Msg::Text(s.to_owned())),
                    WsEvent::Binary(b) => got.push(Msg::Binary(b.to_vec())),
                    WsEvent::Ping(b) => got.push(Msg::Ping(b.to_vec())),
                    other => prop_assert!(false, "{:?}", other),
                }
            }
            pending.drain(..pos);
        }
        prop_assert!(pending.is_empty());
        let sent: Vec<Msg> = msgs.into_iter().map(|(m, _, _)| m).collect();
        prop_assert_eq!(got, sent);
    }
}
