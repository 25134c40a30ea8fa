//! Minimal RTCP recognition: the common header and the sender SSRC.
//!
//! The SFU absorbs RTCP (see `DESIGN.md`): reports describe one hop, so it only needs to know who
//! sent one. In the `rtpsize` modes the first [`RTCP_HEADER_LEN`] bytes are associated data and
//! the rest of the compound packet is ciphertext, so only this header is readable before
//! decryption.

#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::limits::{PACKET_LEN_MAX, RTCP_HEADER_LEN};
use crate::rtp::{RtpError, is_rtcp_type};

/// RTCP packet types this parser names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpType {
    /// 200 Sender Report.
    SenderReport,
    /// 201 Receiver Report.
    ReceiverReport,
    /// 202 Source Description.
    SourceDescription,
    /// 203 Goodbye.
    Bye,
    /// 204 Application-defined.
    App,
}

impl RtcpType {
    /// Maps the packet type byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            200 => Self::SenderReport,
            201 => Self::ReceiverReport,
            202 => Self::SourceDescription,
            203 => Self::Bye,
            204 => Self::App,
            _ => return None,
        })
    }
}

/// The first RTCP header of a (possibly compound, possibly encrypted) RTCP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpHeader {
    /// Padding bit.
    pub padding: bool,
    /// Report count / subtype (5 bits).
    pub count: u8,
    /// Packet type.
    pub packet_type: RtcpType,
    /// Length field: this packet's size in 32-bit words minus one.
    pub length_words: u16,
    /// SSRC of the sender of this report.
    pub sender_ssrc: u32,
}

impl RtcpHeader {
    /// Size in bytes of the first packet according to its length field.
    pub fn packet_len(&self) -> usize {
        (usize::from(self.length_words) + 1) * 4
    }
}

/// Parses the first RTCP header. The length field must fit in the datagram; trailing bytes (more
/// packets of a compound, or the tag and nonce of an encrypted one) are allowed.
pub fn parse(datagram: &[u8]) -> Result<RtcpHeader, RtpError> {
    let len = datagram.len();
    if len > PACKET_LEN_MAX {
        return Err(RtpError::TooLong { len });
    }
    let Some(&[b0, b1, l0, l1, s0, s1, s2, s3]) = datagram.get(..RTCP_HEADER_LEN) else {
        return Err(RtpError::TooShort { len });
    };
    if b0 >> 6 != 2 {
        return Err(RtpError::BadVersion(b0 >> 6));
    }
    if !is_rtcp_type(b1) {
        return Err(RtpError::UnknownRtcpType(b1));
    }
    let packet_type = RtcpType::from_byte(b1).ok_or(RtpError::UnknownRtcpType(b1))?;
    let header = RtcpHeader {
        padding: b0 & 0x20 != 0,
        count: b0 & 0x1F,
        packet_type,
        length_words: u16::from_be_bytes([l0, l1]),
        sender_ssrc: u32::from_be_bytes([s0, s1, s2, s3]),
    };
    if header.packet_len() > len {
        return Err(RtpError::RtcpLength {
            words: header.length_words,
        });
    }
    Ok(header)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_receiver_report() {
        // RR with one report block: 2 + 6 words = length 7.
        let mut pkt = vec![0x81, 201, 0, 7, 0xDE, 0xAD, 0xBE, 0xEF];
        pkt.extend_from_slice(&[0; 24]);
        let h = parse(&pkt).expect("valid");
        assert_eq!(h.packet_type, RtcpType::ReceiverReport);
        assert_eq!(h.count, 1);
        assert_eq!(h.sender_ssrc, 0xDEAD_BEEF);
        assert_eq!(h.packet_len(), 32);
    }

    #[test]
    fn parses_sender_report_and_bye() {
        let mut sr = vec![0x80, 200, 0, 6, 0, 0, 0, 9];
        sr.extend_from_slice(&[0; 20]);
        assert_eq!(
            parse(&sr).map(|h| h.packet_type),
            Ok(RtcpType::SenderReport)
        );
        let bye = [0x81, 203, 0, 1, 0, 0, 0, 9];
        let h = parse(&bye).expect("valid");
        assert_eq!((h.packet_type, h.sender_ssrc), (RtcpType::Bye, 9));
    }

    #[test]
    fn rejects_bad_rtcp() {
        assert_eq!(parse(&[0x80, 200, 0]), Err(RtpError::TooShort { len: 3 }));
        assert_eq!(
            parse(&[0x80, 199, 0, 1, 0, 0, 0, 0]),
            Err(RtpError::UnknownRtcpType(199))
        );
        assert_eq!(
            parse(&[0x00, 200, 0, 1, 0, 0, 0, 0]),
            Err(RtpError::BadVersion(0))
        );
        assert_eq!(
            parse(&[0x80, 200, 0, 9, 0, 0, 0, 0]),
            Err(RtpError::RtcpLength { words: 9 })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(h) = parse(&bytes) {
                prop_assert!(h.packet_len() <= bytes.len());
            }
        }
    }
}
