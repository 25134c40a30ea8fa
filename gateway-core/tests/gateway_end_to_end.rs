//! A whole client conversation over bytes, wired the way the engine wires it: HTTP upgrade,
//! WebSocket decoder, session, output queue; the way discord.py talks (Hello, heartbeat,
//! Identify with "Bot " token, READY, dispatch, op 7, close 4000, resume on a new connection).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
use common::*;
use gateway_core::gateway::intents::{GUILD_MESSAGES, GUILDS};
use gateway_core::gateway::session::ResumeOutcome;
use gateway_core::gateway::{Session, SessionEvent, SharedEvent};
use gateway_core::ws::{
    Decoder, HandshakeStatus, OpCode, WsEvent, parse_request, write_client_frame, write_response,
};
use serde_json::{Value, json};

/// The server half of one connection.
struct Conn {
    decoder: Decoder,
    session: Session,
    inbox: Vec<u8>,
    wire_out: Vec<u8>,
}

impl Conn {
    fn accept(request: &[u8], now: u64) -> (Conn, Vec<u8>) {
        let Ok(HandshakeStatus::Complete { request, consumed }) = parse_request(request) else {
            panic!()
        };
        assert_eq!(consumed, request_len(request_text()));
        let mut resp = Vec::new();
        write_response(&request, &mut resp);
        let (session, ev) = Session::new(&cfg(), &request.query, now);
        assert_eq!(ev, None);
        (
            Conn {
                decoder: Decoder::new(),
                session,
                inbox: Vec::new(),
                wire_out: Vec::new(),
            },
            resp,
        )
    }

    /// Bytes from the client; returns the session events.
    fn receive(&mut self, bytes: &[u8], now: u64) -> Vec<SessionEvent> {
        self.inbox.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut pos = 0;
        loop {
            let (n, r) = self
                .decoder
                .next(&mut self.inbox[pos..], &mut self.wire_out);
            pos += n;
            match r.unwrap() {
                WsEvent::NeedMore(_) => break,
                WsEvent::Text(t) => {
                    events.extend(self.session.handle_message(&cfg(), t.as_bytes(), now))
                }
                WsEvent::Binary(b) => events.extend(self.session.handle_message(&cfg(), b, now)),
                WsEvent::Close { code, .. } => {
                    self.session.peer_closed(code);
                    break;
                }
                _ => {}
            }
        }
        self.inbox.drain(..pos);
        events
    }

    /// Everything the server would write now, as client-side messages.
    fn flush(&mut self) -> Vec<Value> {
        // Session frames first, then the decoder's control replies, so that an echoed close
        // is always the last frame on the wire.
        let mut wire = Vec::new();
        while let Some(f) = self.session.output().pop() {
            // The engine would writev(head, tail); appending is the same bytes.
            wire.extend_from_slice(f.head());
            wire.extend_from_slice(f.tail());
        }
        wire.append(&mut self.wire_out);
        let mut msgs = Vec::new();
        let mut pos = 0;
        while pos < wire.len() {
            let gateway_core::ws::Parsed::Frame(f) =
                gateway_core::ws::parse_frame(&mut wire[pos..], false, 1 << 20)
            else {
                panic!()
            };
            match f.header.opcode {
                OpCode::Text => msgs.push(serde_json::from_slice(f.payload).unwrap()),
                OpCode::Close => {
                    msgs.push(json!({"close": u16::from_be_bytes([f.payload[0], f.payload[1]])}))
                }
                other => msgs.push(json!({"other": format!("{other:?}")})),
            }
            pos += f.consumed;
        }
        msgs
    }
}

fn request_text() -> &'static str {
    "GET /?v=10&encoding=json HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version: 13\r\n\r\n"
}

fn request_len(s: &str) -> usize {
    s.len()
}

fn client(op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    write_client_frame(op, true, [9, 8, 7, 6], payload, &mut v);
    v
}

fn client_json(v: Value) -> Vec<u8> {
    client(OpCode::Text, &serde_json::to_vec(&v).unwrap())
}

#[test]
fn identify_dispatch_reconnect_resume() {
    let (mut conn, resp) = Conn::accept(request_text().as_bytes(), 0);
    assert!(
        String::from_utf8(resp)
            .unwrap()
            .contains("Sec-WebSocket-Accept: HSmrc0sMlYUkAGmm5OPpG2HaGWk=\r\n")
    );
    let hello = conn.flush();
    assert_eq!(hello[0]["op"], 10);

    // Heartbeat and Identify arrive in one read, the Identify split into two frames.
    let mut bytes = client_json(json!({"op": 1, "d": null}));
    let ident = serde_json::to_vec(&json!({"op": 2, "d": {"token": format!("Bot {}", token(USER)), "intents": GUILDS | GUILD_MESSAGES, "properties": {"os": "linux", "browser": "discord.py", "device": "discord.py"}, "compress": true, "large_threshold": 250}})).unwrap();
    let (a, b) = ident.split_at(10);
    write_client_frame(OpCode::Text, false, [1, 2, 3, 4], a, &mut bytes);
    write_client_frame(OpCode::Ping, true, [1, 2, 3, 4], b"keepalive", &mut bytes);
    write_client_frame(OpCode::Continuation, true, [5, 6, 7, 8], b, &mut bytes);
    let (first, second) = bytes.split_at(bytes.len() / 2);
    let mut events = conn.receive(first, 100);
    events.extend(conn.receive(second, 101));
    assert_eq!(events.len(), 1);
    let SessionEvent::Identify { claims, identify } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(claims.user_id, USER);
    assert_eq!(identify.large_threshold, Some(250));
    ready_for(&mut conn.session, "s1");
    let msgs = conn.flush();
    assert_eq!(msgs[0]["op"], 11);
    assert_eq!(
        (msgs[1]["t"].as_str(), msgs[1]["s"].as_u64()),
        (Some("READY"), Some(1))
    );
    assert_eq!(msgs[2]["other"], "Pong");

    let ev = SharedEvent::new(
        "MESSAGE_CREATE",
        &json!({"id": "10", "content": "hi"}),
        GUILD_MESSAGES,
    )
    .unwrap();
    conn.session.dispatch(&ev).unwrap();
    assert_eq!(conn.flush()[0]["s"], 2);

    // Draining: op 7, the client closes with 4000, two more events happen meanwhile.
    conn.session.reconnect().unwrap();
    assert_eq!(conn.flush()[0]["op"], 7);
    conn.receive(&client(OpCode::Close, &4000u16.to_be_bytes()), 200);
    assert_eq!(
        conn.flush(),
        vec![json!({"close": 4000})],
        "close echoed by the decoder"
    );
    assert!(conn.session.is_resumable());
    conn.session.dispatch(&ev).unwrap();
    conn.session.dispatch(&ev).unwrap();

    // New connection, Resume with the last seq seen (2).
    let (mut conn2, _) = Conn::accept(request_text().as_bytes(), 300);
    conn2.flush();
    let events = conn2.receive(
        &client_json(json!({"op": 6, "d": {"token": token(USER), "session_id": "s1", "seq": 2}})),
        301,
    );
    let [
        SessionEvent::Resume {
            session_id, seq, ..
        },
    ] = &events[..]
    else {
        panic!("{events:?}")
    };
    assert_eq!((session_id.as_str(), *seq), ("s1", 2));
    let out = conn2.session.resume_from(&mut conn.session, *seq).unwrap();
    assert_eq!(out, ResumeOutcome::Resumed { replayed: 2 });
    let msgs = conn2.flush();
    let seqs: Vec<(u64, &str)> = msgs
        .iter()
        .map(|m| (m["s"].as_u64().unwrap(), m["t"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seqs,
        vec![(3, "MESSAGE_CREATE"), (4, "MESSAGE_CREATE"), (5, "RESUMED")]
    );
}
