//! RFC 6455 behaviour of the server-side decoder: fragmentation, control frames between
//! fragments, UTF-8 validation (also across fragments), masking, size limits, close handshake.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use gateway_core::ws::{
    Decoder, OpCode, Parsed, WsCloseCode, WsError, WsEvent, parse_frame, write_client_frame,
};

#[derive(Debug, PartialEq)]
enum Ev {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    Err(WsError),
}

const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

fn cf(op: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    write_client_frame(op, fin, MASK, payload, &mut v);
    v
}

/// Feeds `wire` to the decoder, returning the events and the server's replies.
fn run(d: &mut Decoder, mut wire: Vec<u8>) -> (Vec<Ev>, Vec<u8>) {
    let mut out = Vec::new();
    let mut evs = Vec::new();
    let mut pos = 0;
    loop {
        let (n, r) = d.next(&mut wire[pos..], &mut out);
        pos += n;
        match r {
            Ok(WsEvent::NeedMore(_)) => break,
            Ok(WsEvent::Skipped) => {}
            Ok(WsEvent::Text(s)) => evs.push(Ev::Text(s.to_owned())),
            Ok(WsEvent::Binary(b)) => evs.push(Ev::Binary(b.to_vec())),
            Ok(WsEvent::Ping(b)) => evs.push(Ev::Ping(b.to_vec())),
            Ok(WsEvent::Pong(b)) => evs.push(Ev::Pong(b.to_vec())),
            Ok(WsEvent::Close { code, reason }) => evs.push(Ev::Close(code, reason.to_owned())),
            Err(e) => {
                evs.push(Ev::Err(e));
                break;
            }
        }
        if pos >= wire.len() {
            break;
        }
    }
    (evs, out)
}

/// Server frames in `out`.
fn server_frames(mut out: Vec<u8>) -> Vec<(OpCode, Vec<u8>)> {
    let mut v = Vec::new();
    let mut pos = 0;
    while pos < out.len() {
        let Parsed::Frame(f) = parse_frame(&mut out[pos..], false, 1 << 20) else {
            panic!("bad server frame")
        };
        assert!(f.header.mask.is_none());
        v.push((f.header.opcode, f.payload.to_vec()));
        pos += f.consumed;
    }
    v
}

fn close_code_of(out: Vec<u8>) -> u16 {
    let frames = server_frames(out);
    let (op, p) = frames.last().unwrap();
    assert_eq!(*op, OpCode::Close);
    u16::from_be_bytes([p[0], p[1]])
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn fragmented_text_is_reassembled() {
    let mut d = Decoder::new();
    let wire = cat(&[
        cf(OpCode::Text, false, b"Hel"),
        cf(OpCode::Continuation, false, b"lo"),
        cf(OpCode::Continuation, false, b""),
        cf(OpCode::Continuation, true, b" world"),
        cf(OpCode::Binary, false, &[1, 2]),
        cf(OpCode::Continuation, true, &[3]),
    ]);
    let (evs, out) = run(&mut d, wire);
    assert_eq!(
        evs,
        vec![Ev::Text("Hello world".into()), Ev::Binary(vec![1, 2, 3])]
    );
    assert!(out.is_empty());
}

#[test]
fn ping_between_fragments_is_answered_with_pong() {
    let mut d = Decoder::new();
    let wire = cat(&[
        cf(OpCode::Text, false, b"a"),
        cf(OpCode::Ping, true, b"are you there"),
        cf(OpCode::Pong, true, b"unsolicited"),
        cf(OpCode::Continuation, true, b"b"),
    ]);
    let (evs, out) = run(&mut d, wire);
    assert_eq!(
        evs,
        vec![
            Ev::Ping(b"are you there".to_vec()),
            Ev::Pong(b"unsolicited".to_vec()),
            Ev::Text("ab".into())
        ]
    );
    assert_eq!(
        server_frames(out),
        vec![(OpCode::Pong, b"are you there".to_vec())]
    );
}

#[test]
fn invalid_utf8_in_a_single_frame_is_1007() {
    let mut d = Decoder::new();
    let (evs, out) = run(&mut d, cf(OpCode::Text, true, &[b'o', b'k', 0xff]));
    assert_eq!(evs, vec![Ev::Err(WsError::InvalidUtf8)]);
    assert_eq!(close_code_of(out), 1007);
    assert!(d.is_closed());
}

#[test]
fn utf8_split_across_fragments() {
    // A valid code point cut between fragments is accepted.
    let euro = "€".as_bytes();
    let mut d = Decoder::new();
    let wire = cat(&[
        cf(OpCode::Text, false, &euro[..1]),
        cf(OpCode::Continuation, false, &euro[1..2]),
        cf(OpCode::Continuation, true, &euro[2..]),
    ]);
    assert_eq!(run(&mut d, wire).0, vec![Ev::Text("€".into())]);

    // A lead byte followed by a non-continuation byte in the next fragment: 1007 at that frame.
    let mut d = Decoder::new();
    let wire = cat(&[
        cf(OpCode::Text, false, &[0xe2, 0x82]),
        cf(OpCode::Continuation, false, b"("),
    ]);
    let (evs, out) = run(&mut d, wire);
    assert_eq!(evs, vec![Ev::Err(WsError::InvalidUtf8)]);
    assert_eq!(close_code_of(out), 1007);

    // Fails fast: a bad byte in the first fragment is caught before the message ends.
    let mut d = Decoder::new();
    let (evs, _) = run(&mut d, cf(OpCode::Text, false, &[b'a', 0xc0, 0x80]));
    assert_eq!(evs, vec![Ev::Err(WsError::InvalidUtf8)]);

    // A code point left incomplete by the final fragment.
    let mut d = Decoder::new();
    let wire = cat(&[
        cf(OpCode::Text, false, b"x"),
        cf(OpCode::Continuation, true, &euro[..2]),
    ]);
    let (evs, out) = run(&mut d, wire);
    assert_eq!(evs, vec![Ev::Err(WsError::InvalidUtf8)]);
    assert_eq!(close_code_of(out), 1007);

    // Binary messages are not checked.
    let mut d = Decoder::new();
    let wire = cat(&[
        cf(OpCode::Binary, false, &[0xff]),
        cf(OpCode::Continuation, true, &[0xfe]),
    ]);
    assert_eq!(run(&mut d, wire).0, vec![Ev::Binary(vec![0xff, 0xfe])]);
}

#[test]
fn unmasked_client_frame_is_1002() {
    let mut d = Decoder::new();
    let mut wire = Vec::new();
    gateway_core::ws::write_server_frame(OpCode::Text, b"hi", &mut wire);
    let (evs, out) = run(&mut d, wire);
    assert_eq!(evs, vec![Ev::Err(WsError::Unmasked)]);
    assert_eq!(close_code_of(out), 1002);
}

#[test]
fn oversized_frame_and_message_are_1009() {
    let mut d = Decoder::with_limits(100, 150);
    let (evs, out) = run(&mut d, cf(OpCode::Binary, true, &[0; 101]));
    assert_eq!(evs, vec![Ev::Err(WsError::FrameTooBig)]);
    assert_eq!(close_code_of(out), 1009);
    // The header alone is enough to refuse it: no need to buffer the payload.
    let mut d = Decoder::with_limits(100, 150);
    let head = cf(OpCode::Binary, true, &[0; 1000])[..8].to_vec();
    assert_eq!(run(&mut d, head).0, vec![Ev::Err(WsError::FrameTooBig)]);

    let mut d = Decoder::with_limits(100, 150);
    let wire = cat(&[
        cf(OpCode::Text, false, &[b'a'; 100]),
        cf(OpCode::Continuation, true, &[b'a'; 51]),
    ]);
    let (evs, out) = run(&mut d, wire);
    assert_eq!(evs, vec![Ev::Err(WsError::MessageTooBig)]);
    assert_eq!(close_code_of(out), 1009);

    let mut d = Decoder::with_limits(100, 150);
    let wire = cat(&[
        cf(OpCode::Text, false, &[b'a'; 100]),
        cf(OpCode::Continuation, true, &[b'a'; 50]),
    ]);
    assert_eq!(run(&mut d, wire).0, vec![Ev::Text("a".repeat(150))]);
}

#[test]
fn reserved_bits_opcodes_and_bad_sequences_are_1002() {
    let mut rsv = cf(OpCode::Text, true, b"x");
    rsv[0] |= 0x40;
    let mut op3 = cf(OpCode::Text, true, b"x");
    op3[0] = (op3[0] & 0xf0) | 0x3;
    let mut op_b = cf(OpCode::Ping, true, b"x");
    op_b[0] = (op_b[0] & 0xf0) | 0xb;
    let cases: Vec<(Vec<u8>, WsError)> = vec![
        (rsv, WsError::ReservedBits),
        (op3, WsError::ReservedOpcode(3)),
        (op_b, WsError::ReservedOpcode(0xb)),
        (cf(OpCode::Ping, false, b"x"), WsError::BadControlFrame),
        (cf(OpCode::Ping, true, &[0; 126]), WsError::BadControlFrame),
        (
            cf(OpCode::Continuation, true, b"x"),
            WsError::BadFragmentation,
        ),
        (
            cat(&[cf(OpCode::Text, false, b"x"), cf(OpCode::Text, true, b"y")]),
            WsError::BadFragmentation,
        ),
        (cf(OpCode::Close, true, &[3]), WsError::BadClose),
        (
            cf(OpCode::Close, true, &1005u16.to_be_bytes()),
            WsError::BadClose,
        ),
        (
            cf(OpCode::Close, true, &999u16.to_be_bytes()),
            WsError::BadClose,
        ),
    ];
    for (wire, err) in cases {
        let mut d = Decoder::new();
        let (evs, out) = run(&mut d, wire);
        assert_eq!(evs.last(), Some(&Ev::Err(err)));
        assert_eq!(close_code_of(out), 1002, "{err:?}");
        assert_eq!(err.close_code(), WsCloseCode::PROTOCOL_ERROR);
    }
}

#[test]
fn client_initiated_close_handshake() {
    let mut d = Decoder::new();
    let mut body = 1000u16.to_be_bytes().to_vec();
    body.extend_from_slice("bye ✓".as_bytes());
    let (evs, out) = run(&mut d, cf(OpCode::Close, true, &body));
    assert_eq!(evs, vec![Ev::Close(Some(1000), "bye ✓".into())]);
    assert_eq!(close_code_of(out), 1000, "the code is echoed");
    assert!(d.is_closed());
    // Nothing after the handshake: input is discarded, no replies.
    let (evs, out) = run(&mut d, cf(OpCode::Ping, true, b"x"));
    assert_eq!(evs, vec![Ev::Err(WsError::Closed)]);
    assert!(out.is_empty());

    let mut d = Decoder::new();
    let (evs, out) = run(&mut d, cf(OpCode::Close, true, b""));
    assert_eq!(evs, vec![Ev::Close(None, String::new())]);
    assert_eq!(server_frames(out), vec![(OpCode::Close, vec![])]);

    let mut d = Decoder::new();
    let mut body = 4000u16.to_be_bytes().to_vec();
    body.push(0xff);
    let (evs, out) = run(&mut d, cf(OpCode::Close, true, &body));
    assert_eq!(evs, vec![Ev::Err(WsError::InvalidUtf8)]);
    assert_eq!(close_code_of(out), 1007);
}

#[test]
fn server_initiated_close_handshake() {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    assert!(d.start_close(WsCloseCode::GOING_AWAY, "draining", &mut out));
    assert!(
        !d.start_close(WsCloseCode::NORMAL, "", &mut out),
        "only one close frame"
    );
    assert_eq!(close_code_of(out), 1001);
    // Data and pings after our close are consumed but not delivered or answered.
    let wire = cat(&[
        cf(OpCode::Text, true, b"late"),
        cf(OpCode::Ping, true, b"p"),
        cf(OpCode::Close, true, &1001u16.to_be_bytes()),
    ]);
    let (evs, out) = run(&mut d, wire);
    assert_eq!(
        evs,
        vec![
            Ev::Ping(b"p".to_vec()),
            Ev::Close(Some(1001), String::new())
        ]
    );
    assert!(out.is_empty(), "no pong and no second close");
    assert!(d.is_closed());
}

#[test]
fn gateway_close_codes_pass_through() {
    let mut d = Decoder::new();
    d.note_close_sent();
    let (evs, out) = run(&mut d, cf(OpCode::Close, true, &4009u16.to_be_bytes()));
    assert_eq!(evs, vec![Ev::Close(Some(4009), String::new())]);
    assert!(out.is_empty());
}
