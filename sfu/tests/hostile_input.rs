//! Hostile datagrams and messages: nothing panics, nothing unauthenticated is forwarded, every
//! datagram is counted exactly once, and a closed voice session stays closed.

use std::net::SocketAddr;

use proptest::prelude::*;
use sfu::crypto::{Mode, TransportCipher};
use sfu::room::{Join, PacketOutcome, Room, VoiceFlags};
use sfu::voice_gateway::{
    AuthRejection, Grant, IdentifyRequest, ResumeRequest, VoiceAuthority, VoiceClose, VoiceOutbox,
    VoiceSession,
};
use sfu::{OutBatch, RoomCounters};

fn member_addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], 4000 + u16::from(i)))
}

fn room() -> Room<SocketAddr> {
    let mut room = Room::new(8);
    let mut out = OutBatch::new(8);
    for i in 1..=3u8 {
        room.join(Join {
            user_id: u64::from(i),
            ssrc: u32::from(i),
            mode: Mode::XChaCha20Poly1305RtpSize,
            secret_key: [i; 32],
            flags: VoiceFlags::default(),
        })
        .expect("join");
        let mut req = [0u8; 74];
        sfu::ipdisc::build_request(u32::from(i), &mut req);
        room.handle_datagram(0, member_addr(i), &mut req, &mut out);
    }
    room
}

fn valid_packet(counter: u32, payload: &[u8]) -> Vec<u8> {
    let header = [0x80, 0x78, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    let mut buf = vec![0u8; 12 + payload.len() + 20];
    TransportCipher::new(Mode::XChaCha20Poly1305RtpSize, &[1; 32])
        .seal_into(counter, &header, payload, &mut buf)
        .expect("seal");
    buf
}

fn categorised(c: &RoomCounters) -> u64 {
    c.media_accepted
        + c.discovery_answered
        + c.keepalives
        + c.rtcp_absorbed
        + c.dropped_malformed
        + c.dropped_unknown_source
        + c.dropped_bad_tag
        + c.dropped_replay
        + c.dropped_silence
        + c.dropped_muted
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_datagrams_never_panic_and_are_counted(
        datagrams in proptest::collection::vec(
            (1u8..5, proptest::collection::vec(any::<u8>(), 0..200)), 1..20)
    ) {
        let mut room = room();
        let before = *room.counters();
        let mut out = OutBatch::new(8);
        for (who, mut d) in datagrams {
            let outcome = room.handle_datagram(1, member_addr(who), &mut d, &mut out);
            prop_assert!(!matches!(outcome, PacketOutcome::Forwarded { .. }), "random bytes authenticated");
            out.clear();
        }
        let c = room.counters();
        prop_assert_eq!(categorised(c), c.datagrams_in);
        prop_assert_eq!(c.forwarded, before.forwarded);
    }

    #[test]
    fn any_single_byte_change_to_a_valid_packet_is_refused(
        payload in proptest::collection::vec(any::<u8>(), 4..100),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let good = valid_packet(7, &payload);
        let mut bad = good.clone();
        let i = at.index(bad.len());
        bad[i] ^= flip;
        let mut room = room();
        let mut out = OutBatch::new(8);
        let outcome = room.handle_datagram(1, member_addr(1), &mut bad, &mut out);
        prop_assert!(!matches!(outcome, PacketOutcome::Forwarded { .. }), "byte {} accepted", i);
        // The untouched packet still goes through afterwards: a forgery did not poison the window.
        let mut ok = good;
        let outcome = room.handle_datagram(1, member_addr(1), &mut ok, &mut out);
        prop_assert_eq!(outcome, PacketOutcome::Forwarded { receivers: 2, batch_full: 0 });
    }
}

struct Anyone;

impl VoiceAuthority for Anyone {
    fn identify(&mut self, _: &IdentifyRequest<'_>) -> Result<Grant, AuthRejection> {
        Ok(Grant {
            ssrc: 9,
            ip: "127.0.0.1".into(),
            port: 1,
            secret_key: [0; 32],
        })
    }

    fn resume(&mut self, _: &ResumeRequest<'_>) -> Result<VoiceSession, AuthRejection> {
        Err(AuthRejection::SessionNoLongerValid)
    }
}

fn message() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r#"{"op":0,"d":{"server_id":"1","user_id":2,"session_id":"s","token":"t"}}"#.to_string()),
        Just(r#"{"op":1,"d":{"protocol":"udp","data":{"address":"1.2.3.4","port":5,"mode":"aead_aes256_gcm_rtpsize"}}}"#.to_string()),
        Just(r#"{"op":3,"d":{"t":1,"seq_ack":1}}"#.to_string()),
        Just(r#"{"op":5,"d":{"speaking":1,"delay":0,"ssrc":9}}"#.to_string()),
        Just(r#"{"op":7,"d":{"server_id":"1","session_id":"s","token":"t","seq_ack":0}}"#.to_string()),
        (0u64..40, "[a-z0-9{}\":,]{0,30}").prop_map(|(op, d)| format!(r#"{{"op":{op},"d":{d}}}"#)),
        ".{0,60}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn voice_sessions_survive_any_message_sequence(
        msgs in proptest::collection::vec((0u64..100_000, message()), 1..25)
    ) {
        let mut out = VoiceOutbox::default();
        let mut s = VoiceSession::open(0, &mut out);
        let mut closed: Option<VoiceClose> = None;
        let mut now = 0;
        for (dt, m) in msgs {
            now += dt;
            let r = match s.handle_timeout(now) {
                Err(c) => Err(c),
                Ok(()) => s.handle_text(now, &m, &mut Anyone, &mut out),
            };
            if let Some(c) = closed {
                prop_assert_eq!(r, Err(c), "a closed session reopened");
            }
            if let Err(c) = r {
                prop_assert!(VoiceClose::ALL.contains(&c));
                closed = Some(c);
            }
            for f in &out.frames {
                let v: serde_json::Value = serde_json::from_str(f).expect("frames are JSON");
                prop_assert!(v["op"].is_u64());
            }
            out.clear();
        }
    }
}
