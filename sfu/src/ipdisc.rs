//! IP discovery: the 74-byte UDP exchange a client uses to learn its public address and port.
//!
//! Layout (big-endian): type u16 (1 request, 2 response), length u16 (always 70), SSRC u32,
//! address as 64 NUL-padded ASCII bytes, port u16. discord.py sends a request with 66 zero bytes
//! after the SSRC and reads the address up to the first NUL and the port at byte 72.

#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::limits::{IPDISC_ADDRESS_LEN, IPDISC_BODY_LEN, IPDISC_PACKET_LEN};

/// Type field of a request.
pub const TYPE_REQUEST: u16 = 1;
/// Type field of a response.
pub const TYPE_RESPONSE: u16 = 2;

/// Why a datagram is not a valid IP discovery packet, or an answer cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IpDiscError {
    /// Not exactly 74 bytes.
    #[error("IP discovery packet must be 74 bytes, got {0}")]
    BadSize(usize),
    /// Type field neither 1 nor 2.
    #[error("unknown IP discovery type {0}")]
    BadType(u16),
    /// Length field not 70.
    #[error("IP discovery length field must be 70, got {0}")]
    BadLength(u16),
    /// The address is not ASCII, has no room for its NUL terminator, or contains a NUL.
    #[error("IP discovery address is not a NUL-terminated ASCII string of at most 63 bytes")]
    BadAddress,
}

/// Request or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryKind {
    /// Client to server.
    Request,
    /// Server to client.
    Response,
}

/// A parsed IP discovery packet. The address is kept as raw bytes; [`IpDiscovery::address`]
/// validates it, because requests legitimately carry zeros there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpDiscovery {
    /// Request or response.
    pub kind: DiscoveryKind,
    /// The SSRC the client was given in Ready.
    pub ssrc: u32,
    /// The address field, NUL padded.
    pub address_raw: [u8; IPDISC_ADDRESS_LEN],
    /// The port field.
    pub port: u16,
}

impl IpDiscovery {
    /// The address up to its first NUL, when it is ASCII and NUL-terminated.
    pub fn address(&self) -> Result<&str, IpDiscError> {
        let end = self
            .address_raw
            .iter()
            .position(|&b| b == 0)
            .ok_or(IpDiscError::BadAddress)?;
        let text = self.address_raw.get(..end).ok_or(IpDiscError::BadAddress)?;
        if !text.is_ascii() {
            return Err(IpDiscError::BadAddress);
        }
        std::str::from_utf8(text).map_err(|_| IpDiscError::BadAddress)
    }
}

/// Parses a request or response.
pub fn parse(packet: &[u8]) -> Result<IpDiscovery, IpDiscError> {
    let bytes: &[u8; IPDISC_PACKET_LEN] = packet
        .try_into()
        .map_err(|_| IpDiscError::BadSize(packet.len()))?;
    let (head, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or(IpDiscError::BadSize(packet.len()))?;
    let [t0, t1, l0, l1, s0, s1, s2, s3] = *head;
    let kind = match u16::from_be_bytes([t0, t1]) {
        TYPE_REQUEST => DiscoveryKind::Request,
        TYPE_RESPONSE => DiscoveryKind::Response,
        other => return Err(IpDiscError::BadType(other)),
    };
    let length = u16::from_be_bytes([l0, l1]);
    if usize::from(length) != IPDISC_BODY_LEN {
        return Err(IpDiscError::BadLength(length));
    }
    let (address_raw, port) = rest
        .split_first_chunk::<IPDISC_ADDRESS_LEN>()
        .ok_or(IpDiscError::BadSize(packet.len()))?;
    let &[p0, p1] = port else {
        return Err(IpDiscError::BadSize(packet.len()));
    };
    Ok(IpDiscovery {
        kind,
        ssrc: u32::from_be_bytes([s0, s1, s2, s3]),
        address_raw: *address_raw,
        port: u16::from_be_bytes([p0, p1]),
    })
}

/// Copies `src` into `out` starting at `at`; offsets here are constants inside the 74 bytes.
fn put(out: &mut [u8; IPDISC_PACKET_LEN], at: usize, src: &[u8]) {
    for (dst, &b) in out.iter_mut().skip(at).zip(src) {
        *dst = b;
    }
}

fn write_header(kind: u16, ssrc: u32, out: &mut [u8; IPDISC_PACKET_LEN]) {
    *out = [0; IPDISC_PACKET_LEN];
    put(out, 0, &kind.to_be_bytes());
    put(out, 2, &(IPDISC_BODY_LEN as u16).to_be_bytes());
    put(out, 4, &ssrc.to_be_bytes());
}

/// Writes a request (what a client sends) into `out`.
pub fn build_request(ssrc: u32, out: &mut [u8; IPDISC_PACKET_LEN]) {
    write_header(TYPE_REQUEST, ssrc, out);
}

/// Writes the response telling the client which address and port its request came from.
pub fn build_response(
    ssrc: u32,
    address: &str,
    port: u16,
    out: &mut [u8; IPDISC_PACKET_LEN],
) -> Result<(), IpDiscError> {
    let addr = address.as_bytes();
    // One byte stays NUL so readers that stop at the first NUL always find it.
    if addr.len() >= IPDISC_ADDRESS_LEN || !address.is_ascii() || addr.contains(&0) {
        return Err(IpDiscError::BadAddress);
    }
    write_header(TYPE_RESPONSE, ssrc, out);
    put(out, 8, addr);
    put(out, 8 + IPDISC_ADDRESS_LEN, &port.to_be_bytes());
    Ok(())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_a_discord_py_request() {
        let mut pkt = [0u8; 74];
        pkt[..8].copy_from_slice(&[0, 1, 0, 70, 0, 1, 0xE2, 0x40]);
        let d = parse(&pkt).expect("valid");
        assert_eq!(d.kind, DiscoveryKind::Request);
        assert_eq!(d.ssrc, 123_456);
        assert_eq!(d.port, 0);
        assert_eq!(d.address(), Ok(""));
    }

    #[test]
    fn response_has_discord_py_layout() {
        let mut out = [0xAAu8; 74];
        build_response(0x0102_0304, "203.0.113.7", 50_004, &mut out).expect("fits");
        assert_eq!(&out[..8], &[0, 2, 0, 70, 1, 2, 3, 4]);
        // discord.py: ip_start = 8; ip_end = data.index(0, ip_start); port at 72..74.
        let ip_end = out[8..].iter().position(|&b| b == 0).expect("nul") + 8;
        assert_eq!(&out[8..ip_end], b"203.0.113.7");
        assert!(out[ip_end..72].iter().all(|&b| b == 0));
        assert_eq!(u16::from_be_bytes([out[72], out[73]]), 50_004);
        let back = parse(&out).expect("round trip");
        assert_eq!(back.kind, DiscoveryKind::Response);
        assert_eq!(back.address(), Ok("203.0.113.7"));
        assert_eq!(back.port, 50_004);
        assert_eq!(back.ssrc, 0x0102_0304);
    }

    #[test]
    fn request_round_trips() {
        let mut out = [1u8; 74];
        build_request(77, &mut out);
        let d = parse(&out).expect("valid");
        assert_eq!((d.kind, d.ssrc, d.port), (DiscoveryKind::Request, 77, 0));
    }

    #[test]
    fn ipv6_address_fits() {
        let mut out = [0u8; 74];
        let v6 = "2001:db8:85a3:8d3:1319:8a2e:370:7348";
        build_response(1, v6, 1, &mut out).expect("fits");
        assert_eq!(parse(&out).expect("valid").address(), Ok(v6));
    }

    #[test]
    fn rejects_bad_packets() {
        assert_eq!(parse(&[0; 73]), Err(IpDiscError::BadSize(73)));
        assert_eq!(parse(&[0; 75]), Err(IpDiscError::BadSize(75)));
        let mut pkt = [0u8; 74];
        pkt[..4].copy_from_slice(&[0, 3, 0, 70]);
        assert_eq!(parse(&pkt), Err(IpDiscError::BadType(3)));
        pkt[..4].copy_from_slice(&[0, 1, 0, 74]);
        assert_eq!(parse(&pkt), Err(IpDiscError::BadLength(74)));
        // An address filling all 64 bytes has no terminator.
        pkt[..4].copy_from_slice(&[0, 2, 0, 70]);
        pkt[8..72].fill(b'1');
        assert_eq!(
            parse(&pkt).expect("well-formed").address(),
            Err(IpDiscError::BadAddress)
        );
        pkt[8] = 0xC3;
        pkt[9] = 0;
        assert_eq!(
            parse(&pkt).expect("well-formed").address(),
            Err(IpDiscError::BadAddress)
        );
    }

    #[test]
    fn refuses_addresses_that_do_not_fit() {
        let mut out = [0u8; 74];
        let long = "1".repeat(64);
        assert_eq!(
            build_response(1, &long, 1, &mut out),
            Err(IpDiscError::BadAddress)
        );
        assert_eq!(
            build_response(1, "a\0b", 1, &mut out),
            Err(IpDiscError::BadAddress)
        );
        assert_eq!(
            build_response(1, "é", 1, &mut out),
            Err(IpDiscError::BadAddress)
        );
        assert!(build_response(1, &"1".repeat(63), 1, &mut out).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            if let Ok(d) = parse(&bytes) {
                prop_assert_eq!(bytes.len(), 74);
                let _ = d.address();
            }
        }

        #[test]
        fn responses_round_trip(ssrc: u32, port: u16, addr in "[0-9a-f.:]{0,63}") {
            let mut out = [0u8; 74];
            build_response(ssrc, &addr, port, &mut out).expect("fits");
            let d = parse(&out).expect("valid");
            prop_assert_eq!(d.ssrc, ssrc);
            prop_assert_eq!(d.port, port);
            prop_assert_eq!(d.address(), Ok(addr.as_str()));
        }
    }
}
