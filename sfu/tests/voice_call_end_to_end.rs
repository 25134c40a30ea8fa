//! Two clients join a call the way discord.py does (voice WebSocket + UDP on one shard port),
//! and one hears the other: the glue the engine performs, driven by events.

use std::net::SocketAddr;

use serde_json::{Value, json};
use sfu::crypto::{Mode, TransportCipher};
use sfu::ipdisc;
use sfu::room::PacketOutcome;
use sfu::rtp;
use sfu::voice_gateway::{
    AuthRejection, Grant, IdentifyRequest, ResumeRequest, VoiceAuthority, VoiceEvent, VoiceOutbox,
    VoiceSession,
};
use sfu::{OutBatch, VoiceFlags, VoiceShard};

const GUILD: u64 = 1_000;

struct Auth<'a> {
    shard: &'a mut VoiceShard<SocketAddr>,
    key: [u8; 32],
}

impl VoiceAuthority for Auth<'_> {
    fn identify(&mut self, r: &IdentifyRequest<'_>) -> Result<Grant, AuthRejection> {
        if r.token != format!("token-{}", r.user_id) {
            return Err(AuthRejection::AuthenticationFailed);
        }
        Ok(Grant {
            ssrc: self
                .shard
                .allocate_ssrc()
                .ok_or(AuthRejection::ServerNotFound)?,
            ip: "127.0.0.1".into(),
            port: 50_000,
            secret_key: self.key,
        })
    }

    fn resume(&mut self, _: &ResumeRequest<'_>) -> Result<VoiceSession, AuthRejection> {
        Err(AuthRejection::SessionNoLongerValid)
    }
}

struct Peer {
    addr: SocketAddr,
    session: VoiceSession,
    frames: Vec<Value>,
    ssrc: u32,
    cipher: Option<TransportCipher>,
}

/// Applies session events to the shard and relays them to the other sessions, like the engine.
fn apply(
    shard: &mut VoiceShard<SocketAddr>,
    peers: &mut [Peer],
    from: usize,
    out: &mut VoiceOutbox,
) {
    let frames: Vec<Value> = out
        .frames
        .drain(..)
        .map(|f| serde_json::from_str(&f).expect("json"))
        .collect();
    peers[from].frames.extend(frames);
    let events: Vec<VoiceEvent> = out.events.drain(..).collect();
    for event in events {
        match event {
            VoiceEvent::Identified {
                server_id,
                user_id,
                ssrc,
            } => {
                shard
                    .admit(server_id, user_id, ssrc, VoiceFlags::default())
                    .expect("admit");
            }
            VoiceEvent::ProtocolSelected {
                user_id,
                mode,
                secret_key,
                ssrc,
                ..
            } => {
                shard
                    .set_transport(GUILD, user_id, mode, &secret_key)
                    .expect("transport");
                for (i, p) in peers.iter_mut().enumerate() {
                    if i != from {
                        let mut o = VoiceOutbox::default();
                        p.session.send_clients_connect(&[user_id], &mut o);
                        p.session.send_speaking(user_id, ssrc, 0, &mut o);
                        p.frames.extend(
                            o.frames
                                .iter()
                                .map(|f| serde_json::from_str::<Value>(f).expect("json")),
                        );
                    }
                }
            }
            VoiceEvent::Speaking {
                user_id,
                ssrc,
                speaking,
                ..
            } => {
                shard
                    .room_mut(GUILD)
                    .expect("room")
                    .set_speaking(user_id, speaking)
                    .expect("member");
                for (i, p) in peers.iter_mut().enumerate() {
                    if i != from {
                        let mut o = VoiceOutbox::default();
                        p.session.send_speaking(user_id, ssrc, speaking, &mut o);
                        p.frames.extend(
                            o.frames
                                .iter()
                                .map(|f| serde_json::from_str::<Value>(f).expect("json")),
                        );
                    }
                }
            }
            VoiceEvent::Video { .. } | VoiceEvent::Resumed { .. } => {}
        }
    }
}

fn connect(
    shard: &mut VoiceShard<SocketAddr>,
    peers: &mut Vec<Peer>,
    user_id: u64,
    mode: &str,
    key: [u8; 32],
) {
    let mut out = VoiceOutbox::default();
    let session = VoiceSession::open(0, &mut out);
    let addr: SocketAddr = format!("127.0.0.{user_id}:{}", 40_000 + user_id)
        .parse()
        .expect("addr");
    peers.push(Peer {
        addr,
        session,
        frames: Vec::new(),
        ssrc: 0,
        cipher: None,
    });
    let me = peers.len() - 1;
    apply(shard, peers, me, &mut out);

    let identify = json!({"op": 0, "d": {"server_id": GUILD.to_string(), "user_id": user_id.to_string(),
        "session_id": format!("s{user_id}"), "token": format!("token-{user_id}"), "max_dave_protocol_version": 1}});
    peers[me]
        .session
        .handle_text(1, &identify.to_string(), &mut Auth { shard, key }, &mut out)
        .expect("identify");
    apply(shard, peers, me, &mut out);
    let ready = peers[me]
        .frames
        .iter()
        .find(|f| f["op"] == 2)
        .expect("ready")
        .clone();
    let ssrc = ready["d"]["ssrc"].as_u64().expect("ssrc") as u32;
    peers[me].ssrc = ssrc;

    // UDP IP discovery before Select Protocol, as discord.py does.
    let mut req = [0u8; 74];
    ipdisc::build_request(ssrc, &mut req);
    let mut batch = OutBatch::new(4);
    assert_eq!(
        shard.handle_datagram(2, peers[me].addr, &mut req, &mut batch),
        PacketOutcome::DiscoveryAnswered
    );
    let (dest, answer) = batch.get(0).expect("answer");
    assert_eq!(dest, peers[me].addr);
    let found = ipdisc::parse(answer).expect("response");
    let (ip, port) = (found.address().expect("ascii").to_string(), found.port);

    let select = json!({"op": 1, "d": {"protocol": "udp", "data": {"address": ip, "port": port, "mode": mode}}});
    peers[me]
        .session
        .handle_text(3, &select.to_string(), &mut Auth { shard, key }, &mut out)
        .expect("select");
    apply(shard, peers, me, &mut out);
    let sd = peers[me]
        .frames
        .iter()
        .find(|f| f["op"] == 4)
        .expect("session description");
    let key: Vec<u8> = sd["d"]["secret_key"]
        .as_array()
        .expect("key")
        .iter()
        .map(|v| v.as_u64().expect("byte") as u8)
        .collect();
    let mode = Mode::from_name(sd["d"]["mode"].as_str().expect("mode")).expect("known mode");
    peers[me].cipher = Some(TransportCipher::new(
        mode,
        &key.try_into().expect("32 bytes"),
    ));
}

#[test]
fn discord_py_style_clients_hear_each_other() {
    let mut shard: VoiceShard<SocketAddr> = VoiceShard::new(8);
    let mut peers = Vec::new();
    connect(
        &mut shard,
        &mut peers,
        1,
        "aead_xchacha20_poly1305_rtpsize",
        [0xA1; 32],
    );
    connect(
        &mut shard,
        &mut peers,
        2,
        "aead_aes256_gcm_rtpsize",
        [0xB2; 32],
    );
    assert_ne!(peers[0].ssrc, peers[1].ssrc);

    // Peer 1 learnt that user 2 joined and which SSRC is theirs.
    assert!(
        peers[0]
            .frames
            .iter()
            .any(|f| f["op"] == 11 && f["d"]["user_ids"] == json!(["2"]))
    );

    // Peer 1 starts speaking: op 5 reaches peer 2 with user id and SSRC.
    let mut out = VoiceOutbox::default();
    let speaking = json!({"op": 5, "d": {"speaking": 1, "delay": 0, "ssrc": peers[0].ssrc}});
    peers[0]
        .session
        .handle_text(
            10,
            &speaking.to_string(),
            &mut Auth {
                shard: &mut shard,
                key: [0; 32],
            },
            &mut out,
        )
        .expect("speaking");
    apply(&mut shard, &mut peers, 0, &mut out);
    let op5 = peers[1]
        .frames
        .iter()
        .rev()
        .find(|f| f["op"] == 5)
        .expect("op 5");
    assert_eq!(op5["d"]["user_id"], "1");
    assert_eq!(op5["d"]["speaking"], 1);
    let ssrc_of_1 = op5["d"]["ssrc"].as_u64().expect("ssrc") as u32;
    assert_eq!(shard.room(GUILD).expect("room").speaking(1), Some(1));

    // Peer 1 sends three Opus frames exactly as discord.py frames them.
    let mut batch = OutBatch::new(4);
    for n in 0..3u32 {
        let mut header = [0u8; 12];
        header[0] = 0x80;
        header[1] = 0x78;
        header[2..4].copy_from_slice(&(n as u16).to_be_bytes());
        header[4..8].copy_from_slice(&(n * 960).to_be_bytes());
        header[8..12].copy_from_slice(&peers[0].ssrc.to_be_bytes());
        let opus = [0xFC, n as u8, 0xAA, 0xBB];
        let mut packet = [0u8; 64];
        let len = peers[0]
            .cipher
            .as_ref()
            .expect("cipher")
            .seal_into(n, &header, &opus, &mut packet)
            .expect("seal");
        let from = peers[0].addr;
        assert_eq!(
            shard.handle_datagram(20, from, &mut packet[..len], &mut batch),
            PacketOutcome::Forwarded {
                receivers: 1,
                batch_full: 0
            }
        );
        let (dest, datagram) = batch.get(0).expect("copy");
        assert_eq!(dest, peers[1].addr);
        let h = rtp::parse(datagram).expect("rtp");
        assert_eq!(
            h.ssrc, ssrc_of_1,
            "receiver maps the SSRC to user 1 through op 5"
        );
        assert_eq!(h.sequence, n as u16);
        let mut copy = datagram.to_vec();
        let opened = peers[1]
            .cipher
            .as_ref()
            .expect("cipher")
            .open_in_place(&mut copy, h.aad_len())
            .expect("peer 2 decrypts with its own key");
        assert_eq!(&copy[12..12 + opened.plaintext_len], &opus);
        batch.clear();
    }
    let totals = shard.counters();
    assert_eq!(
        (
            totals.media_accepted,
            totals.forwarded,
            totals.discovery_answered
        ),
        (3, 3, 2)
    );
    assert!(shard.room(GUILD).expect("room").is_voice_active(1, 20));
}

#[test]
fn media_before_select_protocol_is_not_forwarded() {
    let mut shard: VoiceShard<SocketAddr> = VoiceShard::new(8);
    let mut peers = Vec::new();
    connect(
        &mut shard,
        &mut peers,
        1,
        "aead_xchacha20_poly1305_rtpsize",
        [0xA1; 32],
    );
    // User 2 identified and discovered but has not selected a protocol yet.
    let ssrc2 = shard.allocate_ssrc().expect("ssrc");
    shard
        .admit(GUILD, 2, ssrc2, VoiceFlags::default())
        .expect("admit");
    let addr2: SocketAddr = "127.0.0.2:2".parse().expect("addr");
    let mut req = [0u8; 74];
    ipdisc::build_request(ssrc2, &mut req);
    let mut batch = OutBatch::new(4);
    assert_eq!(
        shard.handle_datagram(0, addr2, &mut req, &mut batch),
        PacketOutcome::DiscoveryAnswered
    );
    batch.clear();
    // Its packets cannot be authenticated yet, and it receives nothing from user 1.
    let mut pkt = [
        0x80u8, 0x78, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
        15, 16, 17, 18, 19, 20, 21,
    ];
    pkt[8..12].copy_from_slice(&ssrc2.to_be_bytes());
    assert!(matches!(
        shard.handle_datagram(0, addr2, &mut pkt, &mut batch),
        PacketOutcome::Dropped(_)
    ));
    let header = [0x80, 0x78, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut header = header;
    header[8..12].copy_from_slice(&peers[0].ssrc.to_be_bytes());
    let mut packet = [0u8; 64];
    let len = peers[0]
        .cipher
        .as_ref()
        .expect("cipher")
        .seal_into(0, &header, &[1, 2], &mut packet)
        .expect("seal");
    let from = peers[0].addr;
    assert_eq!(
        shard.handle_datagram(0, from, &mut packet[..len], &mut batch),
        PacketOutcome::Forwarded {
            receivers: 0,
            batch_full: 0
        }
    );
}
