//! Feeds arbitrary bytes, in arbitrary chunks, to the server-side WebSocket decoder.
#![no_main]

use gateway_core::ws::{Decoder, WsEvent, parse_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The raw parser on the whole input, both roles.
    let mut copy = data.to_vec();
    let _ = parse_frame(&mut copy, true, 1 << 16);
    let mut copy = data.to_vec();
    let _ = parse_frame(&mut copy, false, 1 << 16);

    // The decoder, with the first byte choosing the chunk size.
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut d = Decoder::with_limits(1024, 4096);
    let mut out = Vec::new();
    let mut pending = Vec::new();
    for piece in rest.chunks(chunk) {
        pending.extend_from_slice(piece);
        let mut pos = 0;
        loop {
            let (n, r) = d.next(&mut pending[pos..], &mut out);
            pos += n;
            match r {
                Ok(WsEvent::NeedMore(_)) => break,
                Err(_) => return,
                Ok(_) => assert!(n > 0, "an event always consumes a frame"),
            }
        }
        pending.drain(..pos);
        out.clear();
    }
});
