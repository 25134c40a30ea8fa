//! Bot tokens: `base64url(user_id) "." base64url(issued_at) "." base64url(HMAC-SHA256(secret,
//! first two parts))`. Any shard holding the secret verifies a token without a lookup.
//!
//! The user id part is the decimal id (as Discord does); `issued_at` is seconds since the Unix
//! epoch as 8 big-endian bytes. All parts are unpadded URL-safe base64.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::base64::{self, Alphabet};
use crate::limits::TOKEN_BYTES_MAX;
use ring::hmac;

/// Why a token was refused (all map to gateway close 4004).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three dot-separated base64url parts of sane length.
    #[error("malformed token")]
    Malformed,
    /// The signature does not match.
    #[error("bad token signature")]
    BadSignature,
}

/// Fields carried by a valid token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenClaims {
    /// The bot user's id.
    pub user_id: u64,
    /// Issue time, seconds since the Unix epoch.
    pub issued_at_s: u64,
}

/// Signs and verifies tokens with one secret.
pub struct TokenKey {
    key: hmac::Key,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

/// Strips an optional `Bot ` prefix, as clients send both forms.
pub fn strip_bot_prefix(token: &str) -> &str {
    token.strip_prefix("Bot ").unwrap_or(token).trim()
}

impl TokenKey {
    /// A key from the deployment's secret.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// Issues a token for `user_id` at `issued_at_s`.
    pub fn issue(&self, user_id: u64, issued_at_s: u64) -> String {
        let mut out = Vec::with_capacity(96);
        base64::encode_into(user_id.to_string().as_bytes(), Alphabet::UrlNoPad, &mut out);
        out.push(b'.');
        base64::encode_into(&issued_at_s.to_be_bytes(), Alphabet::UrlNoPad, &mut out);
        let tag = hmac::sign(&self.key, &out);
        out.push(b'.');
        base64::encode_into(tag.as_ref(), Alphabet::UrlNoPad, &mut out);
        // Only base64url characters and dots were written.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Verifies a token, bare or prefixed with `Bot `. The signature comparison is constant
    /// time (ring's `hmac::verify`).
    pub fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        let token = strip_bot_prefix(token);
        if token.len() > TOKEN_BYTES_MAX {
            return Err(TokenError::Malformed);
        }
        let (signed, sig) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (id_part, iat_part) = signed.split_once('.').ok_or(TokenError::Malformed)?;
        let sig = base64::decode(sig.as_bytes(), Alphabet::UrlNoPad)
            .map_err(|_| TokenError::Malformed)?;
        hmac::verify(&self.key, signed.as_bytes(), &sig).map_err(|_| TokenError::BadSignature)?;
        let id = base64::decode(id_part.as_bytes(), Alphabet::UrlNoPad)
            .map_err(|_| TokenError::Malformed)?;
        let user_id = std::str::from_utf8(&id)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(TokenError::Malformed)?;
        let iat = base64::decode(iat_part.as_bytes(), Alphabet::UrlNoPad)
            .map_err(|_| TokenError::Malformed)?;
        let iat: [u8; 8] = iat
            .as_slice()
            .try_into()
            .map_err(|_| TokenError::Malformed)?;
        Ok(TokenClaims {
            user_id,
            issued_at_s: u64::from_be_bytes(iat),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn issue_verify_round_trip_with_and_without_prefix() {
        let k = TokenKey::new(b"secret");
        let t = k.issue(80351110224678912, 1_700_000_000);
        let claims = TokenClaims {
            user_id: 80351110224678912,
            issued_at_s: 1_700_000_000,
        };
        assert_eq!(k.verify(&t), Ok(claims));
        assert_eq!(k.verify(&format!("Bot {t}")), Ok(claims));
        assert!(t.starts_with("ODAzNTExMTAyMjQ2Nzg5MTI."), "{t}");
    }

    #[test]
    fn rejects_forgeries() {
        let k = TokenKey::new(b"secret");
        let other = TokenKey::new(b"other");
        let t = k.issue(42, 7);
        assert_eq!(other.verify(&t), Err(TokenError::BadSignature));
        // Swap the user id, keep the signature.
        let forged = format!(
            "{}{}",
            base64::encode(b"43", Alphabet::UrlNoPad),
            &t[t.find('.').unwrap()..]
        );
        assert_eq!(k.verify(&forged), Err(TokenError::BadSignature));
        for bad in ["", "a.b", "...", "a.b.!!", &"x".repeat(TOKEN_BYTES_MAX + 1)] {
            assert!(k.verify(bad).is_err(), "{bad}");
        }
    }
}
