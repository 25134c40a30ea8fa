//! A room with two members fed arbitrary datagrams: nothing random may be forwarded.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use sfu::room::{Join, PacketOutcome, Room, VoiceFlags};
use sfu::{Mode, OutBatch};

fuzz_target!(|data: &[u8]| {
    let mut room: Room<SocketAddr> = Room::new(4);
    let mut out = OutBatch::new(4);
    for i in 1..=2u8 {
        let _ = room.join(Join {
            user_id: u64::from(i),
            ssrc: u32::from(i),
            mode: Mode::XChaCha20Poly1305RtpSize,
            secret_key: [i; 32],
            flags: VoiceFlags::default(),
        });
    }
    let from = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut datagram = data.to_vec();
    let outcome = room.handle_datagram(0, from, &mut datagram, &mut out);
    assert!(!matches!(outcome, PacketOutcome::Forwarded { receivers: 1.., .. }));
});
