//! Authentication of REST requests: user/bot tokens for the Discord routes, a shared secret for
//! the control API.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use gateway_core::token::{TokenClaims, TokenKey};

use super::error::ApiError;
use crate::http::Request;

/// Checks `Authorization`: `Bot <token>` (what bots send) or the bare token (what user clients
/// send). Missing, malformed or forged tokens (the HMAC does not verify) are 401 code 0. Any other
/// scheme (`Bearer`: we issue no OAuth2 tokens) fails verification and is 401 too.
pub fn authenticate(req: &Request, key: &TokenKey) -> Result<TokenClaims, ApiError> {
    let raw = req
        .header("authorization")
        .ok_or_else(ApiError::unauthorized)?;
    let value = std::str::from_utf8(raw)
        .map_err(|_| ApiError::unauthorized())?
        .trim();
    if value.is_empty() {
        return Err(ApiError::unauthorized());
    }
    // `verify` strips the `Bot ` prefix itself and bounds the token's length.
    key.verify(value).map_err(|_| ApiError::unauthorized())
}

/// Checks `Authorization: Bearer <secret>` for the control API against the deployment's secret.
///
/// An empty configured secret means "no secret configured": the control API is open, as it is
/// for a node on a developer machine, in tests and in benchmarks (which bind to loopback). A
/// deployment that exposes the HTTP port beyond a trusted network must configure a secret; then
/// every control request needs it. The comparison does not stop at the first differing byte.
pub fn authenticate_control(req: &Request, secret: &[u8]) -> Result<(), ApiError> {
    if secret.is_empty() {
        return Ok(());
    }
    let given = req
        .header("authorization")
        .and_then(|v| v.strip_prefix(b"Bearer "))
        .map(<[u8]>::trim_ascii)
        .ok_or_else(ApiError::unauthorized)?;
    if given.len() == secret.len()
        && given
            .iter()
            .zip(secret)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}
