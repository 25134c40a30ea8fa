//! The packets the voice load generator sends: real Opus frames in RTP, with the send time
//! carried in RTP padding (RFC 3550 5.1) so the payload stays a valid Opus frame for any receiver
//! that strips padding, and the bookkeeping that turns receipts into latency and loss.
//!
//! Layout of the plaintext after the 12-byte header (P bit set):
//! `opus frame | "HBV" | send time (u64 BE, CLOCK_MONOTONIC ns) | 12`; the last byte is the
//! padding length, as RTP requires. In Discord's `rtpsize` modes the padding is encrypted with
//! the frame, so only a receiver holding its key can read the send time.

/// RTP version 2 with the padding bit set, no extension, no CSRCs.
pub const RTP_V2_PADDED: u8 = 0x80 | 0x20;
/// Discord's Opus payload type.
pub const OPUS_PAYLOAD_TYPE: u8 = 120;
/// RTP timestamp step of one 20 ms Opus frame at 48 kHz.
pub const RTP_TIMESTAMP_STEP: u32 = 960;
/// Fixed RTP header length.
pub const RTP_HEADER_LEN: usize = 12;
/// Marks the padding as ours, so a stray packet is not read as a send time.
pub const STAMP_MAGIC: [u8; 3] = *b"HBV";
/// Padding bytes: magic, the 8-byte send time and the length byte; a multiple of 4 as RTP
/// padding is meant to align the packet.
pub const STAMP_LEN: usize = STAMP_MAGIC.len() + 8 + 1;
/// Largest Opus frame accepted for the payload (a 20 ms frame at 510 kb/s is 1275 bytes).
pub const OPUS_FRAME_LEN_MAX: usize = 1275;
/// Send times remembered per speaker for the sequence-number mapping (Janus receipts): 1024
/// frames are 20 s of audio, far longer than any packet stays in flight.
pub const SEQ_LOG_LEN: usize = 1024;

const _: () = assert!(STAMP_LEN.is_multiple_of(4) && STAMP_LEN <= u8::MAX as usize);
const _: () = assert!(SEQ_LOG_LEN.is_power_of_two());

/// Writes the plain RTP packet (header + Opus frame + stamped padding) into `out`; returns its
/// length, or `None` when `out` is too small or the frame too long.
pub fn build_packet(
    out: &mut [u8],
    seq: u16,
    ssrc: u32,
    opus: &[u8],
    send_ns: u64,
) -> Option<usize> {
    if opus.len() > OPUS_FRAME_LEN_MAX {
        return None;
    }
    let len = RTP_HEADER_LEN + opus.len() + STAMP_LEN;
    let dst = out.get_mut(..len)?;
    let (header, body) = dst.split_at_mut(RTP_HEADER_LEN);
    header[0] = RTP_V2_PADDED;
    header[1] = OPUS_PAYLOAD_TYPE;
    header[2..4].copy_from_slice(&seq.to_be_bytes());
    header[4..8].copy_from_slice(
        &u32::from(seq)
            .wrapping_mul(RTP_TIMESTAMP_STEP)
            .to_be_bytes(),
    );
    header[8..12].copy_from_slice(&ssrc.to_be_bytes());
    let (frame, stamp) = body.split_at_mut(opus.len());
    frame.copy_from_slice(opus);
    write_stamp(stamp, send_ns);
    Some(len)
}

/// Writes the stamped padding (exactly [`STAMP_LEN`] bytes).
fn write_stamp(stamp: &mut [u8], send_ns: u64) {
    if let Some(s) = stamp.get_mut(..STAMP_LEN) {
        s[..3].copy_from_slice(&STAMP_MAGIC);
        s[3..11].copy_from_slice(&send_ns.to_be_bytes());
        s[11] = STAMP_LEN as u8;
    }
}

/// Rewrites the send time of a packet [`build_packet`] made (the last padding bytes).
pub fn restamp(packet: &mut [u8], send_ns: u64) -> bool {
    let len = packet.len();
    match len
        .checked_sub(STAMP_LEN)
        .and_then(|at| packet.get_mut(at..))
    {
        Some(stamp) => {
            write_stamp(stamp, send_ns);
            true
        }
        None => false,
    }
}

/// The send time in a decrypted payload (`plaintext` after the header), or `None` when the
/// padding is not ours.
pub fn read_stamp(plaintext: &[u8]) -> Option<u64> {
    let at = plaintext.len().checked_sub(STAMP_LEN)?;
    let s = plaintext.get(at..)?;
    if s.get(..3)? != STAMP_MAGIC || *s.get(11)? as usize != STAMP_LEN {
        return None;
    }
    Some(u64::from_be_bytes(s.get(3..11)?.try_into().ok()?))
}

/// The Opus frame of a decrypted payload: the plaintext less its padding (RFC 3550: the last
/// byte counts the padding bytes).
pub fn opus_frame(plaintext: &[u8]) -> Option<&[u8]> {
    let pad = usize::from(*plaintext.last()?);
    plaintext.get(..plaintext.len().checked_sub(pad)?)
}

/// (sequence number, SSRC) of a plain RTP header; `None` for anything shorter.
pub fn seq_ssrc(packet: &[u8]) -> Option<(u16, u32)> {
    let h = packet.get(..RTP_HEADER_LEN)?;
    Some((
        u16::from_be_bytes([h[2], h[3]]),
        u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
    ))
}

/// Send times by (speaker, sequence number), for receipts whose payload cannot be read (Janus
/// encrypts with SRTP and the load generator does not decrypt it): the forwarded RTP header
/// keeps the publisher's sequence number in the clear.
#[derive(Debug, Clone)]
pub struct SeqLog {
    slots: Vec<(u16, u64)>,
}

impl SeqLog {
    /// For `speakers` speakers.
    pub fn new(speakers: usize) -> Self {
        SeqLog {
            slots: vec![(0, 0); speakers * SEQ_LOG_LEN],
        }
    }

    fn slot(speaker: usize, seq: u16) -> usize {
        speaker * SEQ_LOG_LEN + (usize::from(seq) & (SEQ_LOG_LEN - 1))
    }

    /// Remembers that `speaker` sent `seq` at `send_ns`.
    pub fn record(&mut self, speaker: usize, seq: u16, send_ns: u64) {
        if let Some(s) = self.slots.get_mut(Self::slot(speaker, seq)) {
            *s = (seq, send_ns);
        }
    }

    /// When `speaker` sent `seq`, if it is still remembered.
    pub fn lookup(&self, speaker: usize, seq: u16) -> Option<u64> {
        match self.slots.get(Self::slot(speaker, seq)) {
            Some(&(s, t)) if s == seq && t != 0 => Some(t),
            _ => None,
        }
    }
}

/// The measured window in send time: packets sent in `[start_ns, end_ns)` are expected and
/// timed; receipts of packets sent outside it (warm-up, drain) are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First send time counted.
    pub start_ns: u64,
    /// First send time no longer counted.
    pub end_ns: u64,
}

impl Window {
    /// Whether a packet sent at `send_ns` belongs to the window.
    pub fn contains(&self, send_ns: u64) -> bool {
        (self.start_ns..self.end_ns).contains(&send_ns)
    }
}

/// Deliveries that did not arrive: expected − received, never negative; received beyond the
/// expected count (duplicates) are reported apart.
pub fn lost(expected: u64, received: u64) -> u64 {
    expected.saturating_sub(received)
}

/// A share in [0, 1] (0 when nothing was expected).
pub fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_and_opus_is_intact() {
        let opus = [0xFCu8, 1, 2, 3, 4, 5, 6];
        let mut buf = [0u8; 64];
        let n = build_packet(&mut buf, 7, 0xDEAD_BEEF, &opus, 123_456_789).unwrap();
        assert_eq!(n, 12 + opus.len() + STAMP_LEN);
        let p = &buf[..n];
        assert_eq!(p[0], 0xA0, "version 2, padding bit");
        assert_eq!(p[1], 120);
        assert_eq!(seq_ssrc(p), Some((7, 0xDEAD_BEEF)));
        assert_eq!(&p[4..8], &(7u32 * 960).to_be_bytes());
        assert_eq!(read_stamp(&p[12..]), Some(123_456_789));
        assert_eq!(opus_frame(&p[12..]), Some(&opus[..]));
        let mut q = p.to_vec();
        assert!(restamp(&mut q, 42));
        assert_eq!(read_stamp(&q[12..]), Some(42));
        assert_eq!(opus_frame(&q[12..]), Some(&opus[..]));
    }

    #[test]
    fn foreign_padding_is_not_a_stamp() {
        assert_eq!(read_stamp(&[0u8; 5]), None);
        let mut p = [0u8; 20];
        p[19] = 12;
        assert_eq!(read_stamp(&p), None, "no magic");
        assert_eq!(
            opus_frame(&[1, 2, 9]),
            None,
            "padding longer than the payload"
        );
        let mut small = [0u8; 20];
        assert_eq!(build_packet(&mut small, 0, 0, &[0u8; 10], 1), None);
        assert_eq!(build_packet(&mut [0u8; 2000], 0, 0, &[0u8; 1300], 1), None);
    }

    #[test]
    fn seq_log_maps_and_forgets() {
        let mut log = SeqLog::new(2);
        log.record(1, 5, 100);
        assert_eq!(log.lookup(1, 5), Some(100));
        assert_eq!(log.lookup(0, 5), None);
        log.record(1, 5 + SEQ_LOG_LEN as u16, 200);
        assert_eq!(log.lookup(1, 5), None, "overwritten by a later lap");
        assert_eq!(log.lookup(1, 5 + SEQ_LOG_LEN as u16), Some(200));
        assert_eq!(log.lookup(9, 0), None, "no such speaker");
    }

    #[test]
    fn window_and_loss() {
        let w = Window {
            start_ns: 10,
            end_ns: 20,
        };
        assert!(w.contains(10) && w.contains(19) && !w.contains(20) && !w.contains(9));
        assert_eq!(lost(10, 7), 3);
        assert_eq!(lost(10, 12), 0);
        assert_eq!(share(1, 4), 0.25);
        assert_eq!(share(1, 0), 0.0);
    }
}
