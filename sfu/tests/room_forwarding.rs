//! Forwarding through a room: each receiver decrypts with its own key, and silence, mutes,
//! deafens, replays, forgeries and strangers are dropped and counted.

use std::net::SocketAddr;

use sfu::crypto::{Mode, TransportCipher};
use sfu::ipdisc;
use sfu::room::{DropReason, Join, PacketOutcome, Room, VoiceFlags};
use sfu::rtp::{self, OPUS_SILENCE_FRAME};
use sfu::{OutBatch, RoomCounters};

/// A client as discord.py behaves: a 12-byte header, payload, tag, 4-byte counter.
struct Client {
    user_id: u64,
    ssrc: u32,
    addr: SocketAddr,
    mode: Mode,
    key: [u8; 32],
    cipher: TransportCipher,
    counter: u32,
    sequence: u16,
}

impl Client {
    fn new(user_id: u64, mode: Mode) -> Self {
        let key = [user_id as u8; 32];
        Client {
            user_id,
            ssrc: 1000 + user_id as u32,
            addr: format!("127.0.0.{}:{}", user_id, 40_000 + user_id)
                .parse()
                .expect("addr"),
            mode,
            key,
            cipher: TransportCipher::new(mode, &key),
            counter: 0,
            sequence: 0,
        }
    }

    fn join(&self, flags: VoiceFlags) -> Join {
        Join {
            user_id: self.user_id,
            ssrc: self.ssrc,
            mode: self.mode,
            secret_key: self.key,
            flags,
        }
    }

    fn header(&self, payload_type: u8, ssrc: u32) -> [u8; 12] {
        let mut h = [0u8; 12];
        h[0] = 0x80;
        h[1] = payload_type;
        h[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        h[4..8].copy_from_slice(&(u32::from(self.sequence) * 960).to_be_bytes());
        h[8..12].copy_from_slice(&ssrc.to_be_bytes());
        h
    }

    fn packet_on(&mut self, payload_type: u8, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 12 + payload.len() + 20];
        let n = self
            .cipher
            .seal_into(
                self.counter,
                &self.header(payload_type, ssrc),
                payload,
                &mut buf,
            )
            .expect("seal");
        buf.truncate(n);
        self.counter = self.counter.wrapping_add(1);
        self.sequence = self.sequence.wrapping_add(1);
        buf
    }

    fn audio(&mut self, payload: &[u8]) -> Vec<u8> {
        let ssrc = self.ssrc;
        self.packet_on(120, ssrc, payload)
    }

    /// Opens a packet the room sent to this client: (sender ssrc, counter, payload).
    fn open(&self, datagram: &[u8]) -> (u32, u32, Vec<u8>) {
        let h = rtp::parse(datagram).expect("rtp");
        let mut copy = datagram.to_vec();
        let o = self
            .cipher
            .open_in_place(&mut copy, h.aad_len())
            .expect("decrypts with own key");
        (
            h.ssrc,
            o.counter,
            copy[h.aad_len()..h.aad_len() + o.plaintext_len].to_vec(),
        )
    }

    fn discover(&self, room: &mut Room<SocketAddr>, out: &mut OutBatch<SocketAddr>) {
        let mut req = [0u8; 74];
        ipdisc::build_request(self.ssrc, &mut req);
        assert_eq!(
            room.handle_datagram(0, self.addr, &mut req, out),
            PacketOutcome::DiscoveryAnswered
        );
    }
}

fn room_with(clients: &[&Client], out: &mut OutBatch<SocketAddr>) -> Room<SocketAddr> {
    let mut room = Room::new(16);
    for c in clients {
        room.join(c.join(VoiceFlags::default())).expect("join");
        c.discover(&mut room, out);
    }
    out.clear();
    room
}

#[test]
fn ip_discovery_answers_with_the_source_address_and_latches_it() {
    let c = Client::new(3, Mode::XChaCha20Poly1305RtpSize);
    let mut room = Room::new(4);
    room.join(c.join(VoiceFlags::default())).expect("join");
    let mut out = OutBatch::new(4);
    c.discover(&mut room, &mut out);
    let (dest, answer) = out.get(0).expect("answer");
    assert_eq!(dest, c.addr);
    let d = ipdisc::parse(answer).expect("valid response");
    assert_eq!(d.kind, ipdisc::DiscoveryKind::Response);
    assert_eq!(
        (d.ssrc, d.address(), d.port),
        (c.ssrc, Ok("127.0.0.3"), 40_003)
    );
    assert_eq!(room.address_of(3), Some(c.addr));

    // Someone else asking for the same SSRC gets nothing and steals nothing.
    let thief: SocketAddr = "203.0.113.9:9".parse().expect("addr");
    let mut req = [0u8; 74];
    ipdisc::build_request(c.ssrc, &mut req);
    assert_eq!(
        room.handle_datagram(1, thief, &mut req, &mut out),
        PacketOutcome::Dropped(DropReason::UnknownSource)
    );
    assert_eq!(room.address_of(3), Some(c.addr));
    // Unknown SSRC.
    ipdisc::build_request(999, &mut req);
    assert_eq!(
        room.handle_datagram(1, thief, &mut req, &mut out),
        PacketOutcome::Dropped(DropReason::UnknownSource)
    );
    // After a reset (resume, new Select Protocol) the next discovery latches again.
    room.reset_address(3).expect("member");
    ipdisc::build_request(c.ssrc, &mut req);
    assert_eq!(
        room.handle_datagram(1, thief, &mut req, &mut out),
        PacketOutcome::DiscoveryAnswered
    );
    assert_eq!(room.address_of(3), Some(thief));
}

#[test]
fn forwards_to_every_receiver_with_its_own_key_and_counter() {
    let mut out = OutBatch::new(16);
    let mut clients: Vec<Client> = (1..=6)
        .map(|i| {
            let mode = if i % 2 == 0 {
                Mode::Aes256GcmRtpSize
            } else {
                Mode::XChaCha20Poly1305RtpSize
            };
            Client::new(i, mode)
        })
        .collect();
    let refs: Vec<&Client> = clients.iter().collect();
    let mut room = room_with(&refs, &mut out);

    for round in 0..3u32 {
        let payload = [0xFC, 0xFF, 0xFE, round as u8, 1, 2, 3];
        let mut pkt = clients[0].audio(&payload);
        let outcome = room.handle_datagram(10, clients[0].addr, &mut pkt, &mut out);
        assert_eq!(
            outcome,
            PacketOutcome::Forwarded {
                receivers: 5,
                batch_full: 0
            }
        );
        assert_eq!(out.len(), 5);
        for (dest, datagram) in out.iter() {
            let receiver = clients
                .iter()
                .find(|c| c.addr == dest)
                .expect("a participant");
            assert_ne!(receiver.user_id, 1, "the sender never hears itself");
            let (ssrc, counter, plain) = receiver.open(datagram);
            assert_eq!(ssrc, clients[0].ssrc);
            assert_eq!(
                counter,
                sfu::limits::SERVER_NONCE_COUNTER_START + round,
                "each receiver has its own counter, half the space away from its own sending"
            );
            assert_eq!(plain, payload);
            assert_eq!(datagram.len(), 12 + payload.len() + 20);
            // Nobody else's key opens it.
            for other in clients.iter().filter(|c| c.addr != dest) {
                let mut copy = datagram.to_vec();
                assert!(other.cipher.open_in_place(&mut copy, 12).is_err());
            }
        }
        out.clear();
    }
    assert!(room.is_voice_active(1, 10));
    assert!(!room.is_voice_active(1, 10 + sfu::limits::SPEAKING_HOLD_MS));
    assert!(!room.is_voice_active(2, 10));
    let c = room.counters();
    assert_eq!((c.media_accepted, c.forwarded), (3, 15));
    clients.clear();
}

#[test]
fn opens_a_packet_built_by_discord_py() {
    // Produced by PyNaCl the way discord.py 2.7 builds voice packets (see crypto.rs tests).
    let hex = concat!(
        "8078123400bc614e0001e240",
        "91882abc5860233e80837e2e7b0160d2f33d38425e326a01533f0dd40047b099598e6c82b10237",
        "0edf59617d8e47f81670b760a1b118469534e48b",
        "00000005"
    );
    let mut pkt: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let key: [u8; 32] = core::array::from_fn(|i| ((i * 7 + 3) % 256) as u8);
    let sender_addr: SocketAddr = "127.0.0.1:50000".parse().expect("addr");
    let listener = Client::new(9, Mode::XChaCha20Poly1305RtpSize);
    let mut room = Room::new(4);
    room.join(Join {
        user_id: 1,
        ssrc: 123_456,
        mode: Mode::XChaCha20Poly1305RtpSize,
        secret_key: key,
        flags: VoiceFlags::default(),
    })
    .expect("join");
    room.join(listener.join(VoiceFlags::default()))
        .expect("join");
    let mut out = OutBatch::new(4);
    listener.discover(&mut room, &mut out);
    out.clear();
    // No discovery from the sender: its first authenticated packet latches its address.
    assert_eq!(
        room.handle_datagram(0, sender_addr, &mut pkt, &mut out),
        PacketOutcome::Forwarded {
            receivers: 1,
            batch_full: 0
        }
    );
    assert_eq!(room.address_of(1), Some(sender_addr));
    let (ssrc, _, plain) = listener.open(out.get(0).expect("copy").1);
    assert_eq!(ssrc, 123_456);
    let expected: Vec<u8> = [0xFC, 0xFF, 0xFE].into_iter().chain(0..40).collect();
    assert_eq!(plain, expected);
}

#[test]
fn silence_muted_deafened_and_no_speak_are_handled() {
    let mut out = OutBatch::new(16);
    let mut a = Client::new(1, Mode::XChaCha20Poly1305RtpSize);
    let b = Client::new(2, Mode::XChaCha20Poly1305RtpSize);
    let c = Client::new(3, Mode::Aes256GcmRtpSize);
    let mut room = room_with(&[&a, &b, &c], &mut out);

    let mut silence = a.audio(&OPUS_SILENCE_FRAME);
    assert_eq!(
        room.handle_datagram(0, a.addr, &mut silence, &mut out),
        PacketOutcome::Dropped(DropReason::Silence)
    );
    assert!(!room.is_voice_active(1, 0));

    // Deafened receivers get nothing.
    room.set_flags(
        2,
        VoiceFlags {
            deafened: true,
            ..VoiceFlags::default()
        },
    )
    .expect("member");
    let mut pkt = a.audio(&[1, 2, 3]);
    assert_eq!(
        room.handle_datagram(0, a.addr, &mut pkt, &mut out),
        PacketOutcome::Forwarded {
            receivers: 1,
            batch_full: 0
        }
    );
    assert_eq!(out.get(0).map(|(d, _)| d), Some(c.addr));
    out.clear();

    // Server-muted and SPEAK-less senders are dropped.
    room.set_flags(
        1,
        VoiceFlags {
            muted: true,
            ..VoiceFlags::default()
        },
    )
    .expect("member");
    let mut pkt = a.audio(&[4]);
    assert_eq!(
        room.handle_datagram(0, a.addr, &mut pkt, &mut out),
        PacketOutcome::Dropped(DropReason::Muted)
    );
    room.set_flags(
        1,
        VoiceFlags {
            can_speak: false,
            ..VoiceFlags::default()
        },
    )
    .expect("member");
    let mut pkt = a.audio(&[5]);
    assert_eq!(
        room.handle_datagram(0, a.addr, &mut pkt, &mut out),
        PacketOutcome::Dropped(DropReason::Muted)
    );
    assert!(out.is_empty());

    let counters = room.counters();
    assert_eq!(counters.dropped_silence, 1);
    assert_eq!(counters.dropped_muted, 2);
}

#[test]
fn replays_forgeries_strangers_and_junk_are_dropped_and_counted() {
    let mut out = OutBatch::new(16);
    let mut a = Client::new(1, Mode::XChaCha20Poly1305RtpSize);
    let b = Client::new(2, Mode::XChaCha20Poly1305RtpSize);
    let mut room = room_with(&[&a, &b], &mut out);

    let original = a.audio(&[9, 9, 9]);
    let mut first = original.clone();
    assert!(matches!(
        room.handle_datagram(0, a.addr, &mut first, &mut out),
        PacketOutcome::Forwarded { .. }
    ));
    let mut again = original.clone();
    assert_eq!(
        room.handle_datagram(0, a.addr, &mut again, &mut out),
        PacketOutcome::Dropped(DropReason::Replay)
    );

    let mut forged = a.audio(&[1, 2, 3]);
    forged[13] ^= 0xFF;
    assert_eq!(
        room.handle_datagram(0, a.addr, &mut forged, &mut out),
        PacketOutcome::Dropped(DropReason::BadTag)
    );
    // A forged packet must not advance the window: the genuine one with that counter still passes.
    a.counter -= 1;
    let mut genuine = a.audio(&[1, 2, 3]);
    assert!(matches!(
        room.handle_datagram(0, a.addr, &mut genuine, &mut out),
        PacketOutcome::Forwarded { .. }
    ));

    // Right SSRC, wrong address.
    let mut stolen = a.audio(&[7]);
    let elsewhere: SocketAddr = "198.51.100.1:1".parse().expect("addr");
    assert_eq!(
        room.handle_datagram(0, elsewhere, &mut stolen, &mut out),
        PacketOutcome::Dropped(DropReason::UnknownSource)
    );
    // Unknown SSRC.
    let mut stranger = Client::new(7, Mode::XChaCha20Poly1305RtpSize);
    let mut pkt = stranger.audio(&[1]);
    assert_eq!(
        room.handle_datagram(0, stranger.addr, &mut pkt, &mut out),
        PacketOutcome::Dropped(DropReason::UnknownSource)
    );
    // Keepalives, RTCP from a member, junk.
    let mut keepalive = [0u8; 8];
    assert_eq!(
        room.handle_datagram(0, a.addr, &mut keepalive, &mut out),
        PacketOutcome::Keepalive
    );
    let mut rr = vec![0x81, 201, 0, 7];
    rr.extend_from_slice(&a.ssrc.to_be_bytes());
    rr.extend_from_slice(&[0; 24 + 20]);
    assert_eq!(
        room.handle_datagram(0, a.addr, &mut rr, &mut out),
        PacketOutcome::RtcpAbsorbed
    );
    assert_eq!(
        room.handle_datagram(0, elsewhere, &mut rr, &mut out),
        PacketOutcome::Dropped(DropReason::UnknownSource)
    );
    let mut junk = [0x13u8; 30];
    assert_eq!(
        room.handle_datagram(0, a.addr, &mut junk, &mut out),
        PacketOutcome::Dropped(DropReason::Malformed)
    );

    let c: RoomCounters = *room.counters();
    assert_eq!(c.dropped_replay, 1);
    assert_eq!(c.dropped_bad_tag, 1);
    assert_eq!(c.dropped_unknown_source, 3);
    assert_eq!(c.keepalives, 1);
    assert_eq!(c.rtcp_absorbed, 1);
    assert_eq!(c.dropped_malformed, 1);
    assert_eq!(c.media_accepted, 2);
    assert_eq!(c.datagrams_in, 2 /* discovery */ + 10);
    // Every datagram lands in exactly one inbound category.
    let categorised = c.media_accepted
        + c.discovery_answered
        + c.keepalives
        + c.rtcp_absorbed
        + c.dropped_malformed
        + c.dropped_unknown_source
        + c.dropped_bad_tag
        + c.dropped_replay
        + c.dropped_silence
        + c.dropped_muted;
    assert_eq!(categorised, c.datagrams_in);
}

#[test]
fn video_ssrcs_forward_like_audio_and_full_batches_are_counted() {
    let mut out = OutBatch::new(2);
    let mut a = Client::new(1, Mode::XChaCha20Poly1305RtpSize);
    let b = Client::new(2, Mode::XChaCha20Poly1305RtpSize);
    let c = Client::new(3, Mode::XChaCha20Poly1305RtpSize);
    let d = Client::new(4, Mode::XChaCha20Poly1305RtpSize);
    let mut room = Room::new(8);
    for x in [&a, &b, &c, &d] {
        room.join(x.join(VoiceFlags::default())).expect("join");
        x.discover(&mut room, &mut out);
        out.clear();
    }
    room.add_ssrc(1, 5555).expect("video ssrc");
    // A video frame that happens to be F8 FF FE is not Opus silence.
    let mut video = a.packet_on(101, 5555, &OPUS_SILENCE_FRAME);
    assert_eq!(
        room.handle_datagram(0, a.addr, &mut video, &mut out),
        PacketOutcome::Forwarded {
            receivers: 2,
            batch_full: 1
        }
    );
    let (ssrc, _, plain) = b.open(out.get(0).expect("copy").1);
    assert_eq!((ssrc, plain.as_slice()), (5555, &OPUS_SILENCE_FRAME[..]));
    assert_eq!(room.counters().dropped_batch_full, 1);
    assert!(!room.is_voice_active(1, 0), "video does not count as voice");
}

#[test]
fn extension_headers_are_forwarded_intact() {
    let mut out = OutBatch::new(4);
    let a = Client::new(1, Mode::XChaCha20Poly1305RtpSize);
    let b = Client::new(2, Mode::Aes256GcmRtpSize);
    let mut room = room_with(&[&a, &b], &mut out);
    // One CSRC, one-byte extension of one word; the extension body is encrypted.
    let mut header = vec![0x91, 0x78, 0, 1, 0, 0, 3, 0xC0];
    header.extend_from_slice(&a.ssrc.to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 9, 0xBE, 0xDE, 0, 1]);
    let plain = [0x10, 0x42, 0, 0, 0xF8, 0xFF, 0xFE];
    let mut pkt = vec![0u8; header.len() + plain.len() + 20];
    a.cipher
        .seal_into(0, &header, &plain, &mut pkt)
        .expect("seal");
    // The media after the extension body is silence: dropped.
    assert_eq!(
        room.handle_datagram(0, a.addr, &mut pkt, &mut out),
        PacketOutcome::Dropped(DropReason::Silence)
    );
    let plain = [0x10, 0x42, 0, 0, 0xFC, 1, 2];
    let mut pkt = vec![0u8; header.len() + plain.len() + 20];
    a.cipher
        .seal_into(1, &header, &plain, &mut pkt)
        .expect("seal");
    assert!(matches!(
        room.handle_datagram(0, a.addr, &mut pkt, &mut out),
        PacketOutcome::Forwarded { receivers: 1, .. }
    ));
    let (_, datagram) = out.get(0).expect("copy");
    assert_eq!(&datagram[..header.len()], &header[..]);
    let h = rtp::parse(datagram).expect("rtp");
    let mut copy = datagram.to_vec();
    let o = b
        .cipher
        .open_in_place(&mut copy, h.aad_len())
        .expect("receiver key");
    assert_eq!(&copy[20..20 + o.plaintext_len], &plain);
    // An extension body longer than the plaintext is malformed.
    let mut bad_header = header.clone();
    bad_header[19] = 9;
    let mut pkt = vec![0u8; bad_header.len() + 3 + 20];
    a.cipher
        .seal_into(2, &bad_header, &[1, 2, 3], &mut pkt)
        .expect("seal");
    assert_eq!(
        room.handle_datagram(0, a.addr, &mut pkt, &mut out),
        PacketOutcome::Dropped(DropReason::Malformed)
    );
}
