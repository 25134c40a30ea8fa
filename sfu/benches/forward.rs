//! Micro-bench: one Opus packet in, decrypted once and sealed for every other participant.
//! Prints nanoseconds per inbound packet and per sealed copy for both modes. Run with
//! `cargo bench -p sfu --bench forward` (a few seconds).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use sfu::crypto::{Mode, TransportCipher};
use sfu::room::{Join, PacketOutcome, Room, VoiceFlags};
use sfu::{OutBatch, ipdisc};

const PARTICIPANTS: u8 = 10;
const PACKETS: u32 = 20_000;

fn run(mode: Mode) {
    let mut room: Room<SocketAddr> = Room::new(usize::from(PARTICIPANTS));
    let mut out = OutBatch::new(usize::from(PARTICIPANTS));
    for i in 1..=PARTICIPANTS {
        room.join(Join {
            user_id: u64::from(i),
            ssrc: u32::from(i),
            mode,
            secret_key: [i; 32],
            flags: VoiceFlags::default(),
        })
        .expect("join");
        let mut req = [0u8; 74];
        ipdisc::build_request(u32::from(i), &mut req);
        room.handle_datagram(0, SocketAddr::from(([127, 0, 0, i], 9)), &mut req, &mut out);
        out.clear();
    }
    let sender = TransportCipher::new(mode, &[1; 32]);
    let from = SocketAddr::from(([127, 0, 0, 1], 9));
    let header = [0x80, 0x78, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let opus = [0x5Au8; 120];
    let mut packet = [0u8; 12 + 120 + 20];
    let start = Instant::now();
    for counter in 0..PACKETS {
        let n = sender
            .seal_into(counter, &header, &opus, &mut packet)
            .expect("seal");
        let outcome = room.handle_datagram(0, from, &mut packet[..n], &mut out);
        assert!(matches!(outcome, PacketOutcome::Forwarded { .. }));
        black_box(out.get(0));
        out.clear();
    }
    let per_packet = start.elapsed().as_nanos() / u128::from(PACKETS);
    let copies = u128::from(PARTICIPANTS - 1);
    println!(
        "{}: {per_packet} ns per inbound packet (incl. client-side seal), {} ns per copy, {} receivers",
        mode.as_str(),
        per_packet / (copies + 1),
        copies
    );
}

/// The cipher alone, to separate crypto cost from the room's bookkeeping.
fn seal_only(mode: Mode) {
    let cipher = TransportCipher::new(mode, &[1; 32]);
    let header = [0x80, 0x78, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let opus = [0x5Au8; 120];
    let mut packet = [0u8; 12 + 120 + 20];
    let start = Instant::now();
    for counter in 0..PACKETS {
        black_box(
            cipher
                .seal_into(counter, &header, black_box(&opus), &mut packet)
                .expect("seal"),
        );
    }
    println!(
        "{}: {} ns per 120-byte seal",
        mode.as_str(),
        start.elapsed().as_nanos() / u128::from(PACKETS)
    );
}

fn main() {
    for mode in Mode::ALL {
        seal_only(mode);
        run(mode);
    }
}
