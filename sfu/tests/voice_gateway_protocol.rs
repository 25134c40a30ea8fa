//! The voice gateway as discord.py drives it: handshake, heartbeats, speaking, resume and every
//! close code, stepped with a virtual clock.

use serde_json::{Value, json};
use sfu::limits::{
    VOICE_HEARTBEAT_INTERVAL_MS, VOICE_HEARTBEAT_TIMEOUT_MS, VOICE_IDENTIFY_TIMEOUT_MS,
    VOICE_RESUME_BUFFER_MAX,
};
use sfu::voice_gateway::{
    AuthRejection, Grant, IdentifyRequest, ResumeRequest, VoiceAuthority, VoiceClose, VoiceEvent,
    VoiceOutbox, VoiceSession,
};
use sfu::{Mode, VoiceFlags};

const GUILD: u64 = 41_771_983_423_143_937;
const USER: u64 = 80_351_110_224_678_912;
const KEY: [u8; 32] = [0x42; 32];

/// The engine side: one valid token, one served guild, a table of detached sessions.
#[derive(Default)]
struct Engine {
    detached: Vec<VoiceSession>,
    identifies: Vec<(u64, u64, String, u16)>,
}

impl VoiceAuthority for Engine {
    fn identify(&mut self, r: &IdentifyRequest<'_>) -> Result<Grant, AuthRejection> {
        self.identifies.push((
            r.server_id,
            r.user_id,
            r.token.to_string(),
            r.max_dave_protocol_version,
        ));
        if r.server_id != GUILD {
            return Err(AuthRejection::ServerNotFound);
        }
        if r.token != "voice-token" {
            return Err(AuthRejection::AuthenticationFailed);
        }
        Ok(Grant {
            ssrc: 1234,
            ip: "127.0.0.1".into(),
            port: 50_001,
            secret_key: KEY,
        })
    }

    fn resume(&mut self, r: &ResumeRequest<'_>) -> Result<VoiceSession, AuthRejection> {
        if r.token != "voice-token" {
            return Err(AuthRejection::AuthenticationFailed);
        }
        let i = self
            .detached
            .iter()
            .position(|s| s.session_id() == Some(r.session_id))
            .ok_or(AuthRejection::SessionNoLongerValid)?;
        Ok(self.detached.remove(i))
    }
}

fn parse(frame: &str) -> Value {
    serde_json::from_str(frame).expect("server frames are JSON")
}

fn identify_msg(token: &str) -> String {
    json!({"op": 0, "d": {"server_id": GUILD.to_string(), "user_id": USER.to_string(),
        "session_id": "sess-1", "token": token, "max_dave_protocol_version": 1}})
    .to_string()
}

fn select_msg(mode: &str) -> String {
    json!({"op": 1, "d": {"protocol": "udp", "data": {"address": "198.51.100.7", "port": 40_000, "mode": mode}}})
        .to_string()
}

/// Runs the discord.py handshake up to Session Description.
fn established(engine: &mut Engine) -> (VoiceSession, VoiceOutbox) {
    let mut out = VoiceOutbox::default();
    let mut s = VoiceSession::open(0, &mut out);
    s.handle_text(5, &identify_msg("voice-token"), engine, &mut out)
        .expect("identify");
    s.handle_text(
        50,
        &select_msg("aead_xchacha20_poly1305_rtpsize"),
        engine,
        &mut out,
    )
    .expect("select");
    (s, out)
}

#[test]
fn full_handshake_like_discord_py() {
    let mut engine = Engine::default();
    let mut out = VoiceOutbox::default();
    let mut s = VoiceSession::open(0, &mut out);
    let hello = parse(&out.frames[0]);
    assert_eq!(hello["op"], 8);
    assert!(hello["d"]["heartbeat_interval"].as_u64().expect("interval") > 0);
    out.clear();

    // discord.py identifies without waiting for Hello; a "Bot " prefix is tolerated.
    s.handle_text(1, &identify_msg("Bot voice-token"), &mut engine, &mut out)
        .expect("identify");
    assert_eq!(engine.identifies[0], (GUILD, USER, "voice-token".into(), 1));
    let ready = parse(&out.frames[0]);
    assert_eq!(ready["op"], 2);
    assert_eq!(ready["seq"], 1);
    assert_eq!(ready["d"]["ssrc"], 1234);
    assert_eq!(ready["d"]["ip"], "127.0.0.1");
    assert_eq!(ready["d"]["port"], 50_001);
    let modes: Vec<&str> = ready["d"]["modes"]
        .as_array()
        .expect("modes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(modes.contains(&"aead_xchacha20_poly1305_rtpsize"));
    assert!(modes.contains(&"aead_aes256_gcm_rtpsize"));
    assert_eq!(
        out.events,
        vec![VoiceEvent::Identified {
            server_id: GUILD,
            user_id: USER,
            ssrc: 1234
        }]
    );
    assert_eq!(
        (s.user_id(), s.ssrc(), s.session_id()),
        (Some(USER), Some(1234), Some("sess-1"))
    );
    out.clear();

    s.handle_text(
        30,
        &select_msg("aead_xchacha20_poly1305_rtpsize"),
        &mut engine,
        &mut out,
    )
    .expect("select");
    let sd = parse(&out.frames[0]);
    assert_eq!(sd["op"], 4);
    assert_eq!(sd["seq"], 2);
    assert_eq!(sd["d"]["mode"], "aead_xchacha20_poly1305_rtpsize");
    assert_eq!(sd["d"]["dave_protocol_version"], 0);
    let key: Vec<u8> = sd["d"]["secret_key"]
        .as_array()
        .expect("key")
        .iter()
        .map(|v| v.as_u64().expect("int") as u8)
        .collect();
    assert_eq!(key, KEY);
    assert_eq!(
        out.events,
        vec![VoiceEvent::ProtocolSelected {
            user_id: USER,
            ssrc: 1234,
            mode: Mode::XChaCha20Poly1305RtpSize,
            secret_key: KEY,
            address: "198.51.100.7".into(),
            port: 40_000
        }]
    );
    assert!(s.is_established());
    assert_eq!(s.mode(), Some(Mode::XChaCha20Poly1305RtpSize));
    let join = out.events[0].to_join(VoiceFlags::default()).expect("join");
    assert_eq!(
        (join.user_id, join.ssrc, join.mode, join.secret_key),
        (USER, 1234, Mode::XChaCha20Poly1305RtpSize, KEY)
    );
    out.clear();

    // Speaking: the granted SSRC wins over whatever the client claims.
    s.handle_text(
        40,
        r#"{"op":5,"d":{"speaking":1,"delay":0,"ssrc":999}}"#,
        &mut engine,
        &mut out,
    )
    .expect("speaking");
    assert_eq!(
        out.events,
        vec![VoiceEvent::Speaking {
            user_id: USER,
            ssrc: 1234,
            speaking: 1,
            delay: 0
        }]
    );
    assert!(out.frames.is_empty());
}

#[test]
fn aes_gcm_mode_can_be_selected() {
    let mut engine = Engine::default();
    let mut out = VoiceOutbox::default();
    let mut s = VoiceSession::open(0, &mut out);
    s.handle_text(1, &identify_msg("voice-token"), &mut engine, &mut out)
        .expect("identify");
    s.handle_text(
        2,
        &select_msg("aead_aes256_gcm_rtpsize"),
        &mut engine,
        &mut out,
    )
    .expect("select");
    assert_eq!(s.mode(), Some(Mode::Aes256GcmRtpSize));
}

#[test]
fn heartbeats_are_acked_and_keep_the_session_alive() {
    let mut engine = Engine::default();
    let (mut s, mut out) = established(&mut engine);
    out.clear();
    // Heartbeats at the announced cadence, starting one interval after the connection opened.
    let mut now = 0;
    for i in 0..10u64 {
        now += VOICE_HEARTBEAT_INTERVAL_MS;
        assert!(s.poll_timeout().expect("deadline") > now);
        assert_eq!(s.handle_timeout(now), Ok(()));
        let hb = json!({"op": 3, "d": {"t": 1000 + i, "seq_ack": 2}}).to_string();
        s.handle_text(now, &hb, &mut engine, &mut out)
            .expect("heartbeat");
        let ack = parse(out.frames.last().expect("ack"));
        assert_eq!(ack, json!({"op": 6, "d": {"t": 1000 + i}}));
    }
    // Legacy integer heartbeats are echoed as integers.
    s.handle_text(now, r#"{"op":3,"d":77}"#, &mut engine, &mut out)
        .expect("legacy");
    assert_eq!(
        parse(out.frames.last().expect("ack")),
        json!({"op": 6, "d": 77})
    );
    // Then silence: 4009 exactly at the deadline.
    let deadline = s.poll_timeout().expect("deadline");
    assert_eq!(deadline, now + VOICE_HEARTBEAT_TIMEOUT_MS);
    assert_eq!(s.handle_timeout(deadline - 1), Ok(()));
    assert_eq!(s.handle_timeout(deadline), Err(VoiceClose::SessionTimeout));
    assert_eq!(VoiceClose::SessionTimeout.code(), 4009);
    assert_eq!(s.closed(), Some(VoiceClose::SessionTimeout));
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn heartbeats_before_identify_are_fine_but_identify_has_a_deadline() {
    let mut engine = Engine::default();
    let mut out = VoiceOutbox::default();
    let mut s = VoiceSession::open(0, &mut out);
    s.handle_text(
        10,
        r#"{"op":3,"d":{"t":1,"seq_ack":-1}}"#,
        &mut engine,
        &mut out,
    )
    .expect("heartbeat before identify");
    assert_eq!(s.poll_timeout(), Some(VOICE_IDENTIFY_TIMEOUT_MS));
    assert_eq!(
        s.handle_timeout(VOICE_IDENTIFY_TIMEOUT_MS),
        Err(VoiceClose::SessionTimeout)
    );
}

#[test]
fn notifications_are_sequenced_and_acked() {
    let mut engine = Engine::default();
    let (mut s, mut out) = established(&mut engine);
    out.clear();
    assert!(s.send_clients_connect(&[7, 8], &mut out));
    assert!(s.send_speaking(7, 55, 1, &mut out));
    assert!(s.send_client_disconnect(8, &mut out));
    let frames: Vec<Value> = out.frames.iter().map(|f| parse(f)).collect();
    assert_eq!(frames[0]["op"], 11);
    assert_eq!(frames[0]["d"]["user_ids"], json!(["7", "8"]));
    assert_eq!(
        frames[1],
        json!({"op": 5, "seq": 4, "d": {"user_id": "7", "ssrc": 55, "speaking": 1}})
    );
    assert_eq!(
        frames[2],
        json!({"op": 13, "seq": 5, "d": {"user_id": "8"}})
    );
    assert_eq!(frames[0]["seq"], 3);
    assert_eq!(s.last_seq(), 5);

    // Before Identify there is nobody to notify.
    let mut fresh = VoiceSession::open(0, &mut out);
    assert!(!fresh.send_speaking(1, 2, 1, &mut out));
}

#[test]
fn resume_replays_missed_messages_in_order() {
    let mut engine = Engine::default();
    let (mut s, mut out) = established(&mut engine);
    s.handle_text(
        60,
        r#"{"op":3,"d":{"t":1,"seq_ack":2}}"#,
        &mut engine,
        &mut out,
    )
    .expect("heartbeat");
    out.clear();
    assert!(s.send_speaking(7, 55, 1, &mut out)); // seq 3, received
    // The connection drops; the engine keeps the session.
    s.detach();
    assert_eq!(s.poll_timeout(), None);
    assert!(s.send_speaking(8, 56, 1, &mut out)); // seq 4, buffered only
    assert!(s.send_client_disconnect(7, &mut out)); // seq 5, buffered only
    assert_eq!(out.frames.len(), 1, "a detached session sends nothing");
    engine.detached.push(s);
    out.clear();

    let mut s2 = VoiceSession::open(100_000, &mut out);
    out.clear();
    let resume = json!({"op": 7, "d": {"token": "voice-token", "server_id": GUILD.to_string(),
        "session_id": "sess-1", "seq_ack": 3}})
    .to_string();
    s2.handle_text(100_001, &resume, &mut engine, &mut out)
        .expect("resume");
    let frames: Vec<Value> = out.frames.iter().map(|f| parse(f)).collect();
    assert_eq!(frames[0], json!({"op": 9, "d": null}));
    assert_eq!(frames[1]["seq"], 4);
    assert_eq!(frames[1]["d"]["user_id"], "8");
    assert_eq!(frames[2]["seq"], 5);
    assert_eq!(frames[2]["op"], 13);
    assert_eq!(frames.len(), 3);
    assert_eq!(
        out.events,
        vec![VoiceEvent::Resumed {
            user_id: USER,
            ssrc: 1234
        }]
    );
    assert!(s2.is_established() && s2.is_attached());
    assert_eq!(
        s2.poll_timeout(),
        Some(100_001 + VOICE_HEARTBEAT_TIMEOUT_MS)
    );
    // The resumed session carries on numbering.
    out.clear();
    assert!(s2.send_speaking(9, 57, 0, &mut out));
    assert_eq!(parse(&out.frames[0])["seq"], 6);
    // A second Resume or Identify on the same connection is refused.
    assert_eq!(
        s2.handle_text(100_002, &resume, &mut engine, &mut out),
        Err(VoiceClose::AlreadyAuthenticated)
    );
}

#[test]
fn resume_after_buffer_overflow_is_refused_with_4006() {
    let mut engine = Engine::default();
    let (mut s, mut out) = established(&mut engine);
    s.detach();
    for i in 0..(VOICE_RESUME_BUFFER_MAX as u64 + 5) {
        s.send_speaking(i, 1, 1, &mut out);
    }
    engine.detached.push(s);
    let mut s2 = VoiceSession::open(0, &mut out);
    let resume = json!({"op": 7, "d": {"token": "voice-token", "server_id": GUILD,
        "session_id": "sess-1", "seq_ack": 2}})
    .to_string();
    assert_eq!(
        s2.handle_text(1, &resume, &mut engine, &mut out),
        Err(VoiceClose::SessionNoLongerValid)
    );
    assert_eq!(VoiceClose::SessionNoLongerValid.code(), 4006);
}

#[test]
fn resume_of_unknown_session_is_4006_and_bad_token_4004() {
    let mut engine = Engine::default();
    let mut out = VoiceOutbox::default();
    let mut s = VoiceSession::open(0, &mut out);
    let resume = |token: &str| {
        json!({"op": 7, "d": {"token": token, "server_id": GUILD, "session_id": "nope", "seq_ack": 0}})
            .to_string()
    };
    assert_eq!(
        s.handle_text(1, &resume("voice-token"), &mut engine, &mut out),
        Err(VoiceClose::SessionNoLongerValid)
    );
    let mut s = VoiceSession::open(0, &mut out);
    assert_eq!(
        s.handle_text(1, &resume("bad"), &mut engine, &mut out),
        Err(VoiceClose::AuthenticationFailed)
    );
}

/// Drives a fresh session through `setup` messages and returns what `last` closes it with.
fn close_code_after(setup: &[&str], last: &str) -> Result<(), VoiceClose> {
    let mut engine = Engine::default();
    let mut out = VoiceOutbox::default();
    let mut s = VoiceSession::open(0, &mut out);
    for m in setup {
        s.handle_text(1, m, &mut engine, &mut out)
            .expect("setup step");
    }
    let r = s.handle_text(2, last, &mut engine, &mut out);
    if let Err(c) = r {
        assert_eq!(s.closed(), Some(c));
        // A closed session stays closed.
        assert_eq!(
            s.handle_text(3, r#"{"op":3,"d":1}"#, &mut engine, &mut out),
            Err(c)
        );
    }
    r
}

#[test]
fn every_client_caused_close_code() {
    let id = identify_msg("voice-token");
    let cases: Vec<(Vec<&str>, String, VoiceClose, u16)> = vec![
        (vec![], r#"{"op":42,"d":{}}"#.into(), VoiceClose::UnknownOpcode, 4001),
        (vec![], "{not json".into(), VoiceClose::DecodeError, 4002),
        (vec![], r#"{"op":0,"d":{"server_id":1}}"#.into(), VoiceClose::DecodeError, 4002),
        (vec![], select_msg("aead_xchacha20_poly1305_rtpsize"), VoiceClose::NotAuthenticated, 4003),
        (vec![], r#"{"op":5,"d":{"speaking":1,"delay":0,"ssrc":1}}"#.into(), VoiceClose::NotAuthenticated, 4003),
        (vec![], identify_msg("wrong"), VoiceClose::AuthenticationFailed, 4004),
        (vec![id.as_str()], identify_msg("voice-token"), VoiceClose::AlreadyAuthenticated, 4005),
        (
            vec![],
            json!({"op": 0, "d": {"server_id": "1", "user_id": "2", "session_id": "s", "token": "voice-token"}}).to_string(),
            VoiceClose::ServerNotFound,
            4011,
        ),
        (
            vec![id.as_str()],
            r#"{"op":1,"d":{"protocol":"webrtc","data":"v=0"}}"#.into(),
            VoiceClose::UnknownProtocol,
            4012,
        ),
        (vec![id.as_str()], select_msg("xsalsa20_poly1305_lite"), VoiceClose::UnknownEncryptionMode, 4016),
        (vec![id.as_str()], r#"{"op":1,"d":{"protocol":"udp"}}"#.into(), VoiceClose::DecodeError, 4002),
    ];
    for (setup, last, close, code) in cases {
        assert_eq!(close_code_after(&setup, &last), Err(close), "{last}");
        assert_eq!(close.code(), code);
    }
}

#[test]
fn server_initiated_closes() {
    let mut engine = Engine::default();
    let (mut s, _) = established(&mut engine);
    assert_eq!(s.close(VoiceClose::Disconnected).code(), 4014);
    assert_eq!(s.closed(), Some(VoiceClose::Disconnected));
    let (mut s, _) = established(&mut engine);
    assert_eq!(s.close(VoiceClose::VoiceServerCrashed).code(), 4015);
    assert!(VoiceClose::VoiceServerCrashed.keeps_session());
}

#[test]
fn dave_commands_are_ignored_after_identify() {
    let mut engine = Engine::default();
    let (mut s, mut out) = established(&mut engine);
    out.clear();
    for m in [
        r#"{"op":23,"d":{"transition_id":0}}"#,
        r#"{"op":31,"d":{}}"#,
    ] {
        s.handle_text(60, m, &mut engine, &mut out)
            .expect("ignored");
    }
    assert!(out.frames.is_empty() && out.events.is_empty());
    let mut fresh = VoiceSession::open(0, &mut out);
    assert_eq!(
        fresh.handle_text(1, r#"{"op":23,"d":{}}"#, &mut engine, &mut out),
        Err(VoiceClose::NotAuthenticated)
    );
}

#[test]
fn video_ssrcs_are_reported_and_relayed() {
    let mut engine = Engine::default();
    let (mut s, mut out) = established(&mut engine);
    out.clear();
    let m = r#"{"op":12,"d":{"audio_ssrc":1234,"video_ssrc":1235,"rtx_ssrc":1236,"streams":[]}}"#;
    s.handle_text(60, m, &mut engine, &mut out).expect("video");
    assert_eq!(
        out.events,
        vec![VoiceEvent::Video {
            user_id: USER,
            audio_ssrc: 1234,
            video_ssrc: 1235,
            rtx_ssrc: 1236
        }]
    );
    out.clear();
    assert!(s.send_video(7, 70, 71, 72, &mut out));
    assert_eq!(
        parse(&out.frames[0]),
        json!({"op": 12, "seq": 3, "d": {"user_id": "7", "audio_ssrc": 70, "video_ssrc": 71, "rtx_ssrc": 72}})
    );
    let mut fresh = VoiceSession::open(0, &mut out);
    assert_eq!(
        fresh.handle_text(1, m, &mut engine, &mut out),
        Err(VoiceClose::NotAuthenticated)
    );
}

#[test]
fn resume_without_seq_ack_replays_nothing_and_negative_ack_replays_all() {
    let mut engine = Engine::default();
    let (mut s, mut out) = established(&mut engine);
    s.detach();
    assert!(s.send_speaking(7, 55, 1, &mut out)); // seq 3
    engine.detached.push(s);
    out.clear();
    let mut s2 = VoiceSession::open(0, &mut out);
    out.clear();
    let resume =
        json!({"op": 7, "d": {"token": "voice-token", "server_id": GUILD, "session_id": "sess-1"}});
    s2.handle_text(1, &resume.to_string(), &mut engine, &mut out)
        .expect("resume");
    assert_eq!(out.frames.len(), 1, "only Resumed");
    assert_eq!(parse(&out.frames[0])["op"], 9);

    // discord.py starts seq_ack at -1: nothing received, so everything still buffered comes back.
    let mut engine = Engine::default();
    let (mut s2, mut out) = established(&mut engine);
    s2.detach();
    assert!(s2.send_speaking(7, 55, 1, &mut out)); // seq 3
    engine.detached.push(s2);
    let mut s3 = VoiceSession::open(0, &mut out);
    out.clear();
    let resume = json!({"op": 7, "d": {"token": "voice-token", "server_id": GUILD,
        "session_id": "sess-1", "seq_ack": -1}});
    s3.handle_text(1, &resume.to_string(), &mut engine, &mut out)
        .expect("resume");
    let seqs: Vec<u64> = out.frames[1..]
        .iter()
        .map(|f| parse(f)["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
}

#[test]
fn a_closed_session_cannot_be_resumed() {
    let mut engine = Engine::default();
    let (mut s, mut out) = established(&mut engine);
    s.close(VoiceClose::Disconnected);
    engine.detached.push(s);
    let mut s2 = VoiceSession::open(0, &mut out);
    let resume = json!({"op": 7, "d": {"token": "voice-token", "server_id": GUILD,
        "session_id": "sess-1", "seq_ack": 2}});
    assert_eq!(
        s2.handle_text(1, &resume.to_string(), &mut engine, &mut out),
        Err(VoiceClose::SessionNoLongerValid)
    );
}
