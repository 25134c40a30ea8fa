//! The simulated network's state: listeners with backlogs, TCP connections as two in-order pipes
//! with a receive window towards the peer, and UDP endpoints.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use crate::driver::SocketId;

/// A remote TCP peer played by the test (the client side of one connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u32);

/// A remote UDP endpoint played by the test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UdpPeerId(pub u32);

/// A socket of one shard: (shard index, socket id in that shard's driver).
pub(crate) type ShardSocket = (usize, SocketId);

/// One listener on an address (several with SO_REUSEPORT, one per shard).
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) owner: ShardSocket,
    /// Connections whose SYN arrived, waiting for accept.
    pub(crate) backlog: VecDeque<PeerId>,
    pub(crate) backlog_max: usize,
}

/// One direction of a TCP connection: segments in flight are events; this holds what arrived.
#[derive(Debug, Default)]
pub(crate) struct Pipe {
    /// Bytes that arrived and were not yet read.
    pub(crate) arrived: VecDeque<u8>,
    /// Arrival time of the last segment sent, so later segments never overtake it (TCP order).
    pub(crate) last_arrival_ns: u64,
    /// The FIN was sent (no more data will be).
    pub(crate) fin_sent: bool,
    /// The FIN arrived: after `arrived` drains, the reader sees EOF.
    pub(crate) fin_arrived: bool,
}

/// What the test-side peer has done to its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PeerEnd {
    /// Reading and writing.
    Open,
    /// Half-closed (shutdown(SHUT_WR)): sent its FIN, still reads.
    WriteShut,
    /// Fully closed: sent its FIN, reads nothing more; data towards it is dropped.
    Closed,
}

/// One TCP connection between a test peer and a server socket.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) peer_addr: SocketAddr,
    pub(crate) listener_addr: SocketAddr,
    /// The listener the SYN was routed to.
    pub(crate) target: ShardSocket,
    /// The accepted server socket, once accepted.
    pub(crate) server: Option<ShardSocket>,
    pub(crate) to_server: Pipe,
    pub(crate) to_peer: Pipe,
    /// Bytes the server sent that the peer has not read yet (in flight or arrived).
    pub(crate) to_peer_outstanding: usize,
    pub(crate) peer_window: usize,
    pub(crate) peer_end: PeerEnd,
    /// The server closed its socket (or it was never accepted and its listener went away).
    pub(crate) server_closed: bool,
    /// The server's side sent a reset (closed with unread input, or input reached it closed).
    pub(crate) reset_sent: bool,
    /// That reset reached the peer: what it had not read yet was discarded.
    pub(crate) reset_arrived: bool,
}

/// Who owns a bound UDP address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UdpOwner {
    /// A shard's socket.
    Shard(ShardSocket),
    /// A test peer.
    Peer(UdpPeerId),
}

/// A bound UDP address and the datagrams queued for it.
#[derive(Debug)]
pub(crate) struct UdpEnd {
    pub(crate) owner: UdpOwner,
    pub(crate) rx: VecDeque<(Vec<u8>, SocketAddr)>,
}

/// Something the network delivers at a virtual time.
#[derive(Debug)]
pub(crate) enum NetEvent {
    /// A connection request reaches its listener.
    Syn { conn: PeerId },
    /// Bytes reach one end of a connection.
    Segment {
        conn: PeerId,
        to_server: bool,
        data: Vec<u8>,
    },
    /// A FIN reaches one end of a connection.
    Fin { conn: PeerId, to_server: bool },
    /// The server's reset reaches the peer.
    Reset { conn: PeerId },
    /// A datagram reaches an address.
    Datagram {
        to: SocketAddr,
        from: SocketAddr,
        data: Vec<u8>,
    },
}

/// All sockets of the world's network.
#[derive(Debug, Default)]
pub(crate) struct Net {
    pub(crate) listeners: BTreeMap<SocketAddr, Vec<Listener>>,
    pub(crate) conns: Vec<Conn>,
    pub(crate) udp: BTreeMap<SocketAddr, UdpEnd>,
    pub(crate) udp_peers: Vec<SocketAddr>,
}

impl Net {
    /// The connection of `peer` (ids are only made by `SimWorld::connect`).
    pub(crate) fn conn(&mut self, peer: PeerId) -> Option<&mut Conn> {
        self.conns.get_mut(peer.0 as usize)
    }

    /// The listener owned by `owner` on `addr`.
    pub(crate) fn listener(
        &mut self,
        addr: SocketAddr,
        owner: ShardSocket,
    ) -> Option<&mut Listener> {
        self.listeners
            .get_mut(&addr)?
            .iter_mut()
            .find(|l| l.owner == owner)
    }
}
