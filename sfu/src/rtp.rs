//! RTP header parsing and datagram classification.
//!
//! In the `rtpsize` transport modes the associated data is the fixed header, the CSRC list and the
//! 4-byte extension preamble; the extension body travels encrypted at the front of the plaintext.
//! [`RtpHeader::aad_len`] and [`RtpHeader::extension_body_len`] give exactly those two sizes.

#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::limits::{
    CRYPTO_OVERHEAD_LEN, IPDISC_PACKET_LEN, KEEPALIVE_LEN, PACKET_LEN_MAX,
    RTP_EXTENSION_PREAMBLE_LEN, RTP_FIXED_HEADER_LEN,
};

/// Payload type Discord uses for Opus.
pub const OPUS_PAYLOAD_TYPE: u8 = 120;

/// The Opus frame clients send (five times) when they stop talking.
pub const OPUS_SILENCE_FRAME: [u8; 3] = [0xF8, 0xFF, 0xFE];

/// Why a datagram is not a usable RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    /// Fewer bytes than the header (plus crypto overhead) needs.
    #[error("packet too short: {len} bytes")]
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// Larger than [`PACKET_LEN_MAX`].
    #[error("packet too long: {len} bytes")]
    TooLong {
        /// Bytes received.
        len: usize,
    },
    /// The version bits are not 2.
    #[error("unsupported RTP/RTCP version {0}")]
    BadVersion(u8),
    /// The second byte is an RTCP packet type, not an RTP payload type.
    #[error("RTCP packet type where RTP was expected")]
    IsRtcp,
    /// The RTCP packet type is outside 200..=204.
    #[error("unknown RTCP packet type {0}")]
    UnknownRtcpType(u8),
    /// The RTCP length field disagrees with the datagram.
    #[error("RTCP length field says {words} words but the datagram is shorter")]
    RtcpLength {
        /// Length field value (32-bit words minus one).
        words: u16,
    },
}

/// What a datagram on the voice port looks like, decided from its first bytes and length alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    /// An 8-byte keepalive, ignored.
    Keepalive,
    /// A 74-byte IP discovery packet.
    IpDiscovery,
    /// RTP media (version 2, payload type outside the RTCP range).
    Rtp,
    /// RTCP (version 2, packet type 200..=204).
    Rtcp,
    /// Anything else.
    Unknown,
}

/// True when the second byte is an RTCP packet type (RFC 5761 demultiplexing; Discord sends SR
/// 200 and RR 201, and 200..=204 covers SR, RR, SDES, BYE and APP).
pub fn is_rtcp_type(second_byte: u8) -> bool {
    (200..=204).contains(&second_byte)
}

/// Sorts a datagram without parsing it fully.
pub fn classify(datagram: &[u8]) -> DatagramKind {
    if datagram.len() == KEEPALIVE_LEN {
        return DatagramKind::Keepalive;
    }
    let (Some(&b0), Some(&b1)) = (datagram.first(), datagram.get(1)) else {
        return DatagramKind::Unknown;
    };
    if datagram.len() == IPDISC_PACKET_LEN && b0 == 0 && (b1 == 1 || b1 == 2) {
        return DatagramKind::IpDiscovery;
    }
    if b0 >> 6 != 2 {
        return DatagramKind::Unknown;
    }
    if is_rtcp_type(b1) {
        DatagramKind::Rtcp
    } else {
        DatagramKind::Rtp
    }
}

/// The parts of an RTP header the SFU needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// The padding bit; padding sits inside the ciphertext and is forwarded untouched.
    pub padding: bool,
    /// The marker bit.
    pub marker: bool,
    /// Payload type (120 for Opus).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp (+960 per 20 ms Opus frame).
    pub timestamp: u32,
    /// Synchronisation source: identifies the sender.
    pub ssrc: u32,
    /// Number of CSRCs after the fixed header.
    pub csrc_count: u8,
    /// Header extension preamble, when the X bit is set.
    pub extension: Option<ExtensionPreamble>,
}

/// The 4-byte header extension preamble (RFC 3550 5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionPreamble {
    /// Profile-defined value (0xBEDE for one-byte extensions).
    pub profile: u16,
    /// Extension body length in 32-bit words.
    pub length_words: u16,
}

impl RtpHeader {
    /// Bytes of the packet that are associated data in the `rtpsize` modes: fixed header, CSRCs,
    /// and the extension preamble when present.
    pub fn aad_len(&self) -> usize {
        RTP_FIXED_HEADER_LEN
            + 4 * usize::from(self.csrc_count)
            + if self.extension.is_some() {
                RTP_EXTENSION_PREAMBLE_LEN
            } else {
                0
            }
    }

    /// Bytes at the front of the decrypted payload that are the extension body, not media.
    pub fn extension_body_len(&self) -> usize {
        self.extension
            .map_or(0, |e| 4 * usize::from(e.length_words))
    }
}

/// Parses the RTP header of an encrypted `rtpsize` packet. Checks that the datagram is long enough
/// for the header, the tag and the nonce suffix; the extension body length is checked after
/// decryption, since it lives in the ciphertext.
pub fn parse(packet: &[u8]) -> Result<RtpHeader, RtpError> {
    let len = packet.len();
    if len > PACKET_LEN_MAX {
        return Err(RtpError::TooLong { len });
    }
    let Some(fixed) = packet.get(..RTP_FIXED_HEADER_LEN) else {
        return Err(RtpError::TooShort { len });
    };
    let [b0, b1, s0, s1, t0, t1, t2, t3, c0, c1, c2, c3] = *fixed else {
        return Err(RtpError::TooShort { len });
    };
    if b0 >> 6 != 2 {
        return Err(RtpError::BadVersion(b0 >> 6));
    }
    if is_rtcp_type(b1) {
        return Err(RtpError::IsRtcp);
    }
    let csrc_count = b0 & 0x0F;
    let mut header = RtpHeader {
        padding: b0 & 0x20 != 0,
        marker: b1 & 0x80 != 0,
        payload_type: b1 & 0x7F,
        sequence: u16::from_be_bytes([s0, s1]),
        timestamp: u32::from_be_bytes([t0, t1, t2, t3]),
        ssrc: u32::from_be_bytes([c0, c1, c2, c3]),
        csrc_count,
        extension: None,
    };
    if b0 & 0x10 != 0 {
        let at = RTP_FIXED_HEADER_LEN + 4 * usize::from(csrc_count);
        let Some(&[p0, p1, l0, l1]) = packet.get(at..at + RTP_EXTENSION_PREAMBLE_LEN) else {
            return Err(RtpError::TooShort { len });
        };
        header.extension = Some(ExtensionPreamble {
            profile: u16::from_be_bytes([p0, p1]),
            length_words: u16::from_be_bytes([l0, l1]),
        });
    }
    if len < header.aad_len() + CRYPTO_OVERHEAD_LEN {
        return Err(RtpError::TooShort { len });
    }
    Ok(header)
}

/// The media bytes of a decrypted payload: the plaintext minus the encrypted extension body.
/// `None` when the extension body claims more bytes than the plaintext has.
pub fn media_payload<'a>(header: &RtpHeader, plaintext: &'a [u8]) -> Option<&'a [u8]> {
    plaintext.get(header.extension_body_len()..)
}

/// True for the Opus silence frame `F8 FF FE` on the Opus payload type.
pub fn is_opus_silence(header: &RtpHeader, media: &[u8]) -> bool {
    header.payload_type == OPUS_PAYLOAD_TYPE && media == OPUS_SILENCE_FRAME
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn discord_py_header() -> [u8; 12] {
        [
            0x80, 0x78, 0x12, 0x34, 0, 0xBC, 0x61, 0x4E, 0, 1, 0xE2, 0x40,
        ]
    }

    #[test]
    fn parses_discord_py_header() {
        let mut pkt = discord_py_header().to_vec();
        pkt.extend_from_slice(&[0; 3 + CRYPTO_OVERHEAD_LEN]);
        let h = parse(&pkt).expect("valid");
        assert_eq!(h.payload_type, OPUS_PAYLOAD_TYPE);
        assert_eq!(h.sequence, 0x1234);
        assert_eq!(h.timestamp, 12_345_678);
        assert_eq!(h.ssrc, 123_456);
        assert_eq!(h.aad_len(), 12);
        assert_eq!(h.extension_body_len(), 0);
        assert!(!h.marker);
    }

    #[test]
    fn csrcs_and_extension_extend_the_aad() {
        let mut pkt = vec![0x92, 0xF8, 0, 7, 0, 0, 3, 0xC0, 1, 2, 3, 4];
        pkt.extend_from_slice(&[9; 8]); // two CSRCs
        pkt.extend_from_slice(&[0xBE, 0xDE, 0, 2]);
        pkt.extend_from_slice(&[0; 8 + CRYPTO_OVERHEAD_LEN]);
        let h = parse(&pkt).expect("valid");
        assert_eq!(h.csrc_count, 2);
        assert!(h.marker);
        assert_eq!(h.payload_type, 120);
        assert_eq!(
            h.extension,
            Some(ExtensionPreamble {
                profile: 0xBEDE,
                length_words: 2
            })
        );
        assert_eq!(h.aad_len(), 12 + 8 + 4);
        assert_eq!(h.extension_body_len(), 8);
    }

    #[test]
    fn rejects_short_wrong_version_and_rtcp() {
        assert_eq!(parse(&[0x80; 11]), Err(RtpError::TooShort { len: 11 }));
        // Header alone, without room for tag and nonce.
        assert_eq!(
            parse(&discord_py_header()),
            Err(RtpError::TooShort { len: 12 })
        );
        let mut v1 = discord_py_header();
        v1[0] = 0x40;
        assert_eq!(parse(&v1), Err(RtpError::BadVersion(1)));
        let mut rtcp = [0u8; 40];
        rtcp[0] = 0x80;
        rtcp[1] = 200;
        assert_eq!(parse(&rtcp), Err(RtpError::IsRtcp));
        // Extension flag set but preamble cut off.
        let mut cut = vec![0x9F, 0x78];
        cut.extend_from_slice(&[0; 10 + 60]);
        assert_eq!(parse(&cut), Err(RtpError::TooShort { len: 72 }));
        assert_eq!(
            parse(&[0x80; PACKET_LEN_MAX + 1]),
            Err(RtpError::TooLong {
                len: PACKET_LEN_MAX + 1
            })
        );
    }

    #[test]
    fn classifies_datagrams() {
        assert_eq!(classify(&[0x80; 8]), DatagramKind::Keepalive);
        let mut disc = [0u8; 74];
        disc[1] = 1;
        assert_eq!(classify(&disc), DatagramKind::IpDiscovery);
        let mut rtp = [0u8; 40];
        rtp[0] = 0x80;
        rtp[1] = 0x78;
        assert_eq!(classify(&rtp), DatagramKind::Rtp);
        rtp[1] = 201;
        assert_eq!(classify(&rtp), DatagramKind::Rtcp);
        rtp[0] = 0x00;
        assert_eq!(classify(&rtp), DatagramKind::Unknown);
        assert_eq!(classify(&[]), DatagramKind::Unknown);
        assert!(is_rtcp_type(204) && !is_rtcp_type(205) && !is_rtcp_type(199));
    }

    #[test]
    fn silence_needs_opus_type_and_exact_frame() {
        let mut pkt = discord_py_header().to_vec();
        pkt.extend_from_slice(&[0; 3 + CRYPTO_OVERHEAD_LEN]);
        let mut h = parse(&pkt).expect("valid");
        assert!(is_opus_silence(&h, &OPUS_SILENCE_FRAME));
        assert!(!is_opus_silence(&h, &[0xF8, 0xFF, 0xFE, 0]));
        h.payload_type = 101;
        assert!(!is_opus_silence(&h, &OPUS_SILENCE_FRAME));
    }

    #[test]
    fn media_payload_skips_extension_body() {
        let h = RtpHeader {
            padding: false,
            marker: false,
            payload_type: 120,
            sequence: 0,
            timestamp: 0,
            ssrc: 1,
            csrc_count: 0,
            extension: Some(ExtensionPreamble {
                profile: 0xBEDE,
                length_words: 1,
            }),
        };
        assert_eq!(
            media_payload(&h, &[1, 2, 3, 4, 0xF8, 0xFF, 0xFE]),
            Some(&OPUS_SILENCE_FRAME[..])
        );
        assert_eq!(media_payload(&h, &[1, 2]), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn parse_and_classify_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = classify(&bytes);
            if let Ok(h) = parse(&bytes) {
                prop_assert!(h.aad_len() + CRYPTO_OVERHEAD_LEN <= bytes.len());
                let _ = media_payload(&h, &bytes);
            }
        }
    }
}
