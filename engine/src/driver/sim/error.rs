//! Errors of the test-side API of the simulation (the peers a test plays).

use std::net::SocketAddr;

/// Why a test-side peer action failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// Nothing listens on the address (the connection is refused).
    #[error("connection refused: nothing listens on {0}")]
    NoListener(SocketAddr),
    /// The peer id was not made by this world.
    #[error("unknown peer")]
    UnknownPeer,
    /// The peer already shut down its sending side or closed.
    #[error("peer already closed its side")]
    PeerClosed,
    /// The address is already bound.
    #[error("address in use: {0}")]
    AddrInUse(SocketAddr),
    /// The datagram is larger than the network carries.
    #[error("datagram of {0} bytes is too large")]
    DatagramTooLarge(usize),
}
