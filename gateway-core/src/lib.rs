//! Sans-IO Discord gateway (API v10): WebSocket codec, sessions, resume buffers, intents, rate
//! limits and event serialization.
//!
//! No sockets and no clocks: callers pass bytes and `now_ms` in, and take frames, events and
//! deadlines out. See `DESIGN.md` beside this crate's `Cargo.toml`.

pub mod base64;
pub mod gateway;
pub mod guild;
pub mod limits;
pub mod token;
pub mod ws;
