//! Gateway benchmarks: `gw-identify-storm`, `gw-idle-sessions` and `gw-broadcast`, each run
//! against `hearth`'s WebSocket gateway and against nginx + Nchan in the same invocation.
//!
//! The harness process ([`storm`], [`idle`], [`broadcast`]) starts a server pinned to the
//! server core ([`servers`]), creates Hearth users over the control API ([`http`],
//! [`common`]), and spawns `hearth-bench gw-client` processes ([`fleet`]) on the client core;
//! each runs one epoll loop over thousands of sessions ([`client`]) speaking the client side of
//! the protocol ([`proto`], on gateway-core's frame codec) and reports over a line protocol
//! ([`wire`]). [`report`] writes JSON, Markdown and SVG like the other scenarios.

pub mod broadcast;
pub mod cli;
pub mod client;
pub mod common;
pub mod fanout;
pub mod fleet;
pub mod http;
pub mod idle;
pub mod limits;
pub mod net;
pub mod proto;
pub mod report;
pub mod servers;
pub mod storm;
pub mod target;
pub mod wire;
