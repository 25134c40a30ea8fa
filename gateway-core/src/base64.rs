//! Minimal base64: standard alphabet with padding for Sec-WebSocket-Accept and Key, URL-safe
//! without padding for tokens. Small enough to own rather than add a dependency.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Which base64 variant to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alphabet {
    /// RFC 4648 section 4, padded with `=`.
    Standard,
    /// RFC 4648 section 5, no padding.
    UrlNoPad,
}

/// Decoding failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Base64Error {
    /// A byte outside the alphabet, misplaced padding or an impossible length.
    #[error("invalid base64")]
    Invalid,
}

fn table(alphabet: Alphabet) -> &'static [u8; 64] {
    match alphabet {
        Alphabet::Standard => STD,
        Alphabet::UrlNoPad => URL,
    }
}

/// Appends the encoding of `input` to `out`.
pub fn encode_into(input: &[u8], alphabet: Alphabet, out: &mut Vec<u8>) {
    let t = table(alphabet);
    let sym = |v: u32| -> u8 { t.get((v & 63) as usize).copied().unwrap_or(b'A') };
    let mut chunks = input.chunks_exact(3);
    for c in &mut chunks {
        let n = u32::from(c.first().copied().unwrap_or(0)) << 16
            | u32::from(c.get(1).copied().unwrap_or(0)) << 8
            | u32::from(c.get(2).copied().unwrap_or(0));
        out.extend_from_slice(&[sym(n >> 18), sym(n >> 12), sym(n >> 6), sym(n)]);
    }
    let rest = chunks.remainder();
    let pad = alphabet == Alphabet::Standard;
    match rest {
        [a] => {
            let n = u32::from(*a) << 16;
            out.extend_from_slice(&[sym(n >> 18), sym(n >> 12)]);
            if pad {
                out.extend_from_slice(b"==");
            }
        }
        [a, b] => {
            let n = u32::from(*a) << 16 | u32::from(*b) << 8;
            out.extend_from_slice(&[sym(n >> 18), sym(n >> 12), sym(n >> 6)]);
            if pad {
                out.push(b'=');
            }
        }
        _ => {}
    }
}

/// Encodes `input` into a new string.
pub fn encode(input: &[u8], alphabet: Alphabet) -> String {
    let mut out = Vec::with_capacity(input.len().div_ceil(3) * 4);
    encode_into(input, alphabet, &mut out);
    // Only alphabet bytes were written, all ASCII.
    String::from_utf8(out).unwrap_or_default()
}

fn value(alphabet: Alphabet, c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' if alphabet == Alphabet::Standard => 62,
        b'/' if alphabet == Alphabet::Standard => 63,
        b'-' if alphabet == Alphabet::UrlNoPad => 62,
        b'_' if alphabet == Alphabet::UrlNoPad => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes `input`, appending to `out`. Rejects non-canonical trailing bits.
pub fn decode_into(input: &[u8], alphabet: Alphabet, out: &mut Vec<u8>) -> Result<(), Base64Error> {
    let body = match alphabet {
        Alphabet::Standard => {
            if !input.len().is_multiple_of(4) {
                return Err(Base64Error::Invalid);
            }
            let trimmed = input
                .strip_suffix(b"==")
                .or_else(|| input.strip_suffix(b"="));
            trimmed.unwrap_or(input)
        }
        Alphabet::UrlNoPad => input,
    };
    if body.len() % 4 == 1 {
        return Err(Base64Error::Invalid);
    }
    let mut chunks = body.chunks_exact(4);
    for c in &mut chunks {
        let mut n = 0u32;
        for &b in c {
            n = n << 6 | value(alphabet, b).ok_or(Base64Error::Invalid)?;
        }
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    let rest = chunks.remainder();
    let mut n = 0u32;
    for &b in rest {
        n = n << 6 | value(alphabet, b).ok_or(Base64Error::Invalid)?;
    }
    match rest.len() {
        0 => {}
        2 => {
            if n & 0xf != 0 {
                return Err(Base64Error::Invalid);
            }
            out.push((n >> 4) as u8);
        }
        3 => {
            if n & 0x3 != 0 {
                return Err(Base64Error::Invalid);
            }
            out.extend_from_slice(&[(n >> 10) as u8, (n >> 2) as u8]);
        }
        _ => return Err(Base64Error::Invalid),
    }
    Ok(())
}

/// Decodes `input` into a new vector.
pub fn decode(input: &[u8], alphabet: Alphabet) -> Result<Vec<u8>, Base64Error> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    decode_into(input, alphabet, &mut out)?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc4648_vectors() {
        let cases: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (raw, enc) in cases {
            assert_eq!(encode(raw, Alphabet::Standard), enc);
            assert_eq!(decode(enc.as_bytes(), Alphabet::Standard), Ok(raw.to_vec()));
        }
        assert_eq!(encode(b"fo", Alphabet::UrlNoPad), "Zm8");
        assert_eq!(encode(&[0xfb, 0xff], Alphabet::UrlNoPad), "-_8");
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode(b"Zm9", Alphabet::Standard).is_err());
        assert!(decode(b"Z===", Alphabet::Standard).is_err());
        assert!(decode(b"Zm9v!", Alphabet::UrlNoPad).is_err());
        assert!(
            decode(b"Zh", Alphabet::UrlNoPad).is_err(),
            "non-canonical trailing bits"
        );
        assert!(decode(b"Z", Alphabet::UrlNoPad).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn round_trips(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            for a in [Alphabet::Standard, Alphabet::UrlNoPad] {
                let e = encode(&data, a);
                prop_assert_eq!(decode(e.as_bytes(), a), Ok(data.clone()));
            }
        }
    }
}
