//! The shared simulated world: one seeded PRNG, one virtual clock, the network and the disk, with
//! the test-side API that plays remote peers. Every shard's `SimDriver` holds a handle to it.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::{
    EPHEMERAL_PORT_FIRST, SimConfig, UDP_DATAGRAM_BYTES_MAX, UDP_RX_QUEUE_DATAGRAMS_MAX,
    WALL_CLOCK_START_MS, between, chance,
};
use super::disk::SimDisk;
use super::error::SimError;
use super::net::{
    Conn, Net, NetEvent, PeerEnd, PeerId, Pipe, ShardSocket, UdpEnd, UdpOwner, UdpPeerId,
};
use crate::driver::SocketId;

/// A network event due at a virtual time; `seq` keeps events of equal time in scheduling order.
#[derive(Debug)]
struct Scheduled {
    at_ns: u64,
    seq: u64,
    ev: NetEvent,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ns, self.seq) == (other.at_ns, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at_ns, self.seq).cmp(&(other.at_ns, other.seq))
    }
}

/// The state behind a `SimWorld` handle.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) cfg: SimConfig,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) now_ns: u64,
    wall_offset_ms: i64,
    events: BinaryHeap<Reverse<Scheduled>>,
    event_seq: u64,
    pub(crate) net: Net,
    pub(crate) disk: SimDisk,
    /// Per shard: sockets whose state changed since the shard last looked at them.
    pub(crate) dirty: Vec<BTreeSet<SocketId>>,
    next_port: u16,
    next_peer_host: u32,
}

impl World {
    /// A random network latency from the config.
    pub(crate) fn latency(&mut self) -> u64 {
        between(
            &mut self.rng,
            self.cfg.latency_min_ns,
            self.cfg.latency_max_ns,
        )
    }

    /// The time of the next network event, if any.
    pub(crate) fn next_event_ns(&self) -> Option<u64> {
        self.events.peek().map(|Reverse(s)| s.at_ns)
    }

    fn schedule(&mut self, at_ns: u64, ev: NetEvent) {
        self.event_seq += 1;
        self.events.push(Reverse(Scheduled {
            at_ns,
            seq: self.event_seq,
            ev,
        }));
    }

    /// Ask `owner`'s shard to look at the socket at its next run.
    pub(crate) fn mark_dirty(&mut self, owner: ShardSocket) {
        if let Some(set) = self.dirty.get_mut(owner.0) {
            set.insert(owner.1);
        }
    }

    /// A port for a socket that bound port 0 (or a peer's source port).
    pub(crate) fn ephemeral_port(&mut self) -> u16 {
        let p = self.next_port;
        self.next_port = self
            .next_port
            .checked_add(1)
            .unwrap_or(EPHEMERAL_PORT_FIRST);
        p
    }

    /// Wall-clock milliseconds: start + virtual time + whatever the test stepped.
    pub(crate) fn wall_ms(&self) -> u64 {
        let ms = i128::from(WALL_CLOCK_START_MS)
            + i128::from(self.now_ns / 1_000_000)
            + i128::from(self.wall_offset_ms);
        u64::try_from(ms.max(0)).unwrap_or(u64::MAX)
    }

    /// The next arrival time on `pipe`: a fresh latency, never before the previous segment.
    fn pipe_arrival(now_ns: u64, latency: u64, pipe: &mut Pipe) -> u64 {
        let at = (now_ns + latency).max(pipe.last_arrival_ns);
        pipe.last_arrival_ns = at;
        at
    }

    /// Put `data` on the wire of `conn` in one direction, in order behind earlier segments.
    pub(crate) fn send_segment(&mut self, conn: PeerId, to_server: bool, data: Vec<u8>) {
        let lat = self.latency();
        let now = self.now_ns;
        let Some(c) = self.net.conn(conn) else { return };
        let pipe = if to_server {
            &mut c.to_server
        } else {
            &mut c.to_peer
        };
        let at = Self::pipe_arrival(now, lat, pipe);
        self.schedule(
            at,
            NetEvent::Segment {
                conn,
                to_server,
                data,
            },
        );
    }

    /// Send the FIN of one direction of `conn`, behind its data.
    pub(crate) fn send_fin(&mut self, conn: PeerId, to_server: bool) {
        let lat = self.latency();
        let now = self.now_ns;
        let Some(c) = self.net.conn(conn) else { return };
        let pipe = if to_server {
            &mut c.to_server
        } else {
            &mut c.to_peer
        };
        if pipe.fin_sent {
            return;
        }
        pipe.fin_sent = true;
        let at = Self::pipe_arrival(now, lat, pipe);
        self.schedule(at, NetEvent::Fin { conn, to_server });
    }

    /// The server side resets `conn`, as Linux does when a socket is closed with unread input or
    /// input reaches a closed socket: behind what is already on the wire, and on arrival the
    /// peer's unread data is discarded (a response not yet read is lost).
    pub(crate) fn send_reset(&mut self, conn: PeerId) {
        let lat = self.latency();
        let now = self.now_ns;
        let Some(c) = self.net.conn(conn) else { return };
        if c.reset_sent {
            return;
        }
        c.reset_sent = true;
        c.to_peer.fin_sent = true;
        let at = Self::pipe_arrival(now, lat, &mut c.to_peer);
        self.schedule(at, NetEvent::Reset { conn });
    }

    /// Send a datagram through the lossy network: maybe lost, maybe twice, maybe late.
    pub(crate) fn send_datagram(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        if chance(&mut self.rng, self.cfg.udp_loss_prob) {
            return;
        }
        let copies = if chance(&mut self.rng, self.cfg.udp_dup_prob) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut at = self.now_ns + self.latency();
            if chance(&mut self.rng, self.cfg.udp_reorder_prob) {
                at += between(&mut self.rng, 0, self.cfg.udp_reorder_delay_max_ns);
            }
            self.schedule(
                at,
                NetEvent::Datagram {
                    to,
                    from,
                    data: data.to_vec(),
                },
            );
        }
    }

    /// Deliver every network event due by `now_ns`, in time order.
    pub(crate) fn process_due(&mut self) {
        while let Some(Reverse(s)) = self.events.peek() {
            if s.at_ns > self.now_ns {
                break;
            }
            let Some(Reverse(s)) = self.events.pop() else {
                break;
            };
            self.deliver(s.ev);
        }
    }

    /// Move the clock to `t` (never backwards), delivering events on the way.
    pub(crate) fn advance_to(&mut self, t: u64) {
        while let Some(next) = self.next_event_ns() {
            if next > t {
                break;
            }
            self.now_ns = self.now_ns.max(next);
            self.process_due();
        }
        self.now_ns = self.now_ns.max(t);
    }

    fn deliver(&mut self, ev: NetEvent) {
        match ev {
            NetEvent::Syn { conn } => {
                let Some(c) = self.net.conn(conn) else { return };
                let (addr, target) = (c.listener_addr, c.target);
                let queued = match self.net.listener(addr, target) {
                    Some(l) if l.backlog.len() < l.backlog_max => {
                        l.backlog.push_back(conn);
                        true
                    }
                    _ => false,
                };
                if queued {
                    self.mark_dirty(target);
                } else if let Some(c) = self.net.conn(conn) {
                    // Refused (listener gone or backlog full): the peer sees the connection end.
                    c.server_closed = true;
                    c.to_peer.fin_arrived = true;
                }
            }
            NetEvent::Segment {
                conn,
                to_server,
                data,
            } => {
                let Some(c) = self.net.conn(conn) else { return };
                if to_server {
                    if c.server_closed {
                        // Input for a closed socket: the kernel answers with a reset.
                        self.send_reset(conn);
                        return;
                    }
                    c.to_server.arrived.extend(data);
                    if let Some(s) = c.server {
                        self.mark_dirty(s);
                    }
                } else if c.peer_end == PeerEnd::Closed {
                    c.to_peer_outstanding = c.to_peer_outstanding.saturating_sub(data.len());
                } else {
                    c.to_peer.arrived.extend(data);
                }
            }
            NetEvent::Fin { conn, to_server } => {
                let Some(c) = self.net.conn(conn) else { return };
                if to_server {
                    c.to_server.fin_arrived = true;
                    if let Some(s) = c.server {
                        self.mark_dirty(s);
                    }
                } else {
                    c.to_peer.fin_arrived = true;
                }
            }
            NetEvent::Reset { conn } => {
                let Some(c) = self.net.conn(conn) else { return };
                c.to_peer.arrived.clear();
                c.to_peer.fin_arrived = true;
                c.to_peer_outstanding = 0;
                c.reset_arrived = true;
            }
            NetEvent::Datagram { to, from, data } => {
                let Some(end) = self.net.udp.get_mut(&to) else {
                    return;
                };
                if end.rx.len() >= UDP_RX_QUEUE_DATAGRAMS_MAX {
                    return;
                }
                end.rx.push_back((data, from));
                if let UdpOwner::Shard(s) = end.owner {
                    self.mark_dirty(s);
                }
            }
        }
    }
}

/// A handle to one simulated world (network, disk, clock, PRNG), shared by the `SimDriver` of
/// each shard of a node and by the test, which plays the remote peers through it.
///
/// Single-threaded by design (`Rc`): the whole node runs on the test's thread.
#[derive(Clone)]
pub struct SimWorld {
    pub(crate) inner: Rc<RefCell<World>>,
}

impl std::fmt::Debug for SimWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let w = self.inner.borrow();
        f.debug_struct("SimWorld")
            .field("seed", &w.cfg.seed)
            .field("now_ns", &w.now_ns)
            .finish()
    }
}

impl SimWorld {
    /// A world with an empty disk.
    pub fn new(cfg: SimConfig) -> Self {
        SimWorld::new_with_disk(cfg, SimDisk::new())
    }

    /// A world booting on `disk` (e.g. one that survived a crash of a previous world).
    pub fn new_with_disk(cfg: SimConfig, disk: SimDisk) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        SimWorld {
            inner: Rc::new(RefCell::new(World {
                cfg,
                rng,
                now_ns: 0,
                wall_offset_ms: 0,
                events: BinaryHeap::new(),
                event_seq: 0,
                net: Net::default(),
                disk,
                dirty: Vec::new(),
                next_port: EPHEMERAL_PORT_FIRST,
                next_peer_host: 1,
            })),
        }
    }

    /// The seed everything random derives from.
    pub fn seed(&self) -> u64 {
        self.inner.borrow().cfg.seed
    }

    /// The virtual monotonic clock, ns.
    pub fn now_ns(&self) -> u64 {
        self.inner.borrow().now_ns
    }

    /// Virtual wall-clock milliseconds since the Unix epoch.
    pub fn wall_ms(&self) -> u64 {
        self.inner.borrow().wall_ms()
    }

    /// Step the wall clock by `delta_ms` (negative steps it backwards, as NTP may).
    pub fn step_wall_clock(&self, delta_ms: i64) {
        let mut w = self.inner.borrow_mut();
        w.wall_offset_ms = w.wall_offset_ms.saturating_add(delta_ms);
    }

    /// Move the clock forward to `t_ns`, delivering network events on the way (for tests that
    /// let time pass without a driver waiting).
    pub fn advance_to(&self, t_ns: u64) {
        self.inner.borrow_mut().advance_to(t_ns);
    }

    /// The time of the next pending network event, if any.
    pub fn next_event_ns(&self) -> Option<u64> {
        self.inner.borrow().next_event_ns()
    }

    /// A copy of the disk as it is now (unsynced writes included, as a running node sees it).
    pub fn disk_snapshot(&self) -> SimDisk {
        self.inner.borrow().disk.clone()
    }

    /// What the disk would hold after losing power now: a crashed copy, drawn from the world's
    /// PRNG; boot a new world on it with `SimWorld::new_with_disk`. This world runs on unchanged.
    pub fn crash_disk_image(&self) -> SimDisk {
        let mut w = self.inner.borrow_mut();
        let mut disk = w.disk.clone();
        let torn = w.cfg.torn_write_prob;
        disk.crash(&mut w.rng, torn);
        disk
    }

    /// Run `f` on the live disk (to inspect what the node wrote).
    pub fn with_disk<R>(&self, f: impl FnOnce(&SimDisk) -> R) -> R {
        f(&self.inner.borrow().disk)
    }

    /// Open a connection from a new peer to `listener`; it reaches the listener's accept after a
    /// network latency. With several listeners on the address (one per shard) one is picked at random.
    pub fn connect(&self, listener: SocketAddr) -> Result<PeerId, SimError> {
        let mut w = self.inner.borrow_mut();
        let count = w.net.listeners.get(&listener).map_or(0, Vec::len);
        if count == 0 {
            return Err(SimError::NoListener(listener));
        }
        let pick = w.rng.random_range(0..count);
        let Some(target) = w
            .net
            .listeners
            .get(&listener)
            .and_then(|v| v.get(pick))
            .map(|l| l.owner)
        else {
            return Err(SimError::NoListener(listener));
        };
        let host = w.next_peer_host;
        w.next_peer_host += 1;
        let port = w.ephemeral_port();
        let [_, a, b, c] = host.to_be_bytes();
        let peer_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, a, b, c)), port);
        let id = PeerId(u32::try_from(w.net.conns.len()).unwrap_or(u32::MAX));
        let syn_at = w.now_ns + w.latency();
        let peer_window = w.cfg.peer_window_bytes;
        w.net.conns.push(Conn {
            peer_addr,
            listener_addr: listener,
            target,
            server: None,
            // Data the peer sends right away travels behind its SYN.
            to_server: Pipe {
                last_arrival_ns: syn_at,
                ..Pipe::default()
            },
            to_peer: Pipe::default(),
            to_peer_outstanding: 0,
            peer_window,
            peer_end: PeerEnd::Open,
            server_closed: false,
            reset_sent: false,
            reset_arrived: false,
        });
        w.schedule(syn_at, NetEvent::Syn { conn: id });
        Ok(id)
    }

    /// The peer's own address (what the server's accept reports).
    pub fn peer_addr(&self, peer: PeerId) -> Option<SocketAddr> {
        self.inner.borrow_mut().net.conn(peer).map(|c| c.peer_addr)
    }

    /// The peer sends `data` to the server (in order; it arrives after a latency).
    pub fn peer_send(&self, peer: PeerId, data: &[u8]) -> Result<(), SimError> {
        let mut w = self.inner.borrow_mut();
        let c = w.net.conn(peer).ok_or(SimError::UnknownPeer)?;
        if c.peer_end != PeerEnd::Open {
            return Err(SimError::PeerClosed);
        }
        if !data.is_empty() {
            w.send_segment(peer, true, data.to_vec());
        }
        Ok(())
    }

    /// Append what the server sent that has arrived to `out`; returns the byte count. Reading
    /// opens the peer's window again.
    pub fn peer_recv(&self, peer: PeerId, out: &mut Vec<u8>) -> usize {
        let mut w = self.inner.borrow_mut();
        let Some(c) = w.net.conn(peer) else { return 0 };
        let n = c.to_peer.arrived.len();
        out.extend(c.to_peer.arrived.drain(..));
        c.to_peer_outstanding = c.to_peer_outstanding.saturating_sub(n);
        if let Some(s) = c.server
            && n > 0
        {
            w.mark_dirty(s);
        }
        n
    }

    /// Bytes arrived at the peer and not read yet.
    pub fn peer_unread(&self, peer: PeerId) -> usize {
        self.inner
            .borrow_mut()
            .net
            .conn(peer)
            .map_or(0, |c| c.to_peer.arrived.len())
    }

    /// Half-close: the peer sends its FIN (the server sees EOF after the data) and keeps reading.
    pub fn peer_shutdown(&self, peer: PeerId) {
        let mut w = self.inner.borrow_mut();
        let Some(c) = w.net.conn(peer) else { return };
        if c.peer_end == PeerEnd::Open {
            c.peer_end = PeerEnd::WriteShut;
            w.send_fin(peer, true);
        }
    }

    /// Full close: the peer sends its FIN and stops reading; what the server sends afterwards is
    /// dropped, and once the FIN has arrived the server's sends fail with EPIPE.
    pub fn peer_close(&self, peer: PeerId) {
        let mut w = self.inner.borrow_mut();
        let Some(c) = w.net.conn(peer) else { return };
        if c.peer_end == PeerEnd::Closed {
            return;
        }
        c.peer_end = PeerEnd::Closed;
        c.to_peer.arrived.clear();
        c.to_peer_outstanding = 0;
        let server = c.server;
        w.send_fin(peer, true);
        if let Some(s) = server {
            w.mark_dirty(s);
        }
    }

    /// Set how many bytes the peer buffers before the server's sends stall (a slow reader).
    pub fn peer_set_window(&self, peer: PeerId, bytes: usize) {
        let mut w = self.inner.borrow_mut();
        let Some(c) = w.net.conn(peer) else { return };
        c.peer_window = bytes;
        if let Some(s) = c.server {
            w.mark_dirty(s);
        }
    }

    /// Whether the server's FIN (or a refusal) has reached the peer; unread data may remain.
    pub fn peer_is_closed_by_server(&self, peer: PeerId) -> bool {
        self.inner
            .borrow_mut()
            .net
            .conn(peer)
            .is_some_and(|c| c.to_peer.fin_arrived)
    }

    /// Whether the server reset the connection (closed it with input unread, or input reached
    /// it closed); the peer lost whatever it had not read when the reset arrived.
    pub fn peer_was_reset(&self, peer: PeerId) -> bool {
        self.inner
            .borrow_mut()
            .net
            .conn(peer)
            .is_some_and(|c| c.reset_arrived)
    }

    /// Whether the server has accepted the peer's connection yet.
    pub fn peer_is_accepted(&self, peer: PeerId) -> bool {
        self.inner
            .borrow_mut()
            .net
            .conn(peer)
            .is_some_and(|c| c.server.is_some())
    }

    /// Bind a UDP endpoint played by the test (port 0 picks one).
    pub fn udp_peer(&self, addr: SocketAddr) -> Result<UdpPeerId, SimError> {
        let mut w = self.inner.borrow_mut();
        let mut addr = addr;
        if addr.port() == 0 {
            addr.set_port(w.ephemeral_port());
        }
        if w.net.udp.contains_key(&addr) {
            return Err(SimError::AddrInUse(addr));
        }
        let id = UdpPeerId(u32::try_from(w.net.udp_peers.len()).unwrap_or(u32::MAX));
        w.net.udp_peers.push(addr);
        w.net.udp.insert(
            addr,
            UdpEnd {
                owner: UdpOwner::Peer(id),
                rx: VecDeque::new(),
            },
        );
        Ok(id)
    }

    /// The address of a UDP peer.
    pub fn udp_peer_addr(&self, peer: UdpPeerId) -> Option<SocketAddr> {
        self.inner
            .borrow()
            .net
            .udp_peers
            .get(peer.0 as usize)
            .copied()
    }

    /// The UDP peer sends a datagram to `to` (subject to loss, duplication and reorder).
    pub fn udp_peer_send(
        &self,
        peer: UdpPeerId,
        to: SocketAddr,
        data: &[u8],
    ) -> Result<(), SimError> {
        if data.len() > UDP_DATAGRAM_BYTES_MAX {
            return Err(SimError::DatagramTooLarge(data.len()));
        }
        let mut w = self.inner.borrow_mut();
        let from = *w
            .net
            .udp_peers
            .get(peer.0 as usize)
            .ok_or(SimError::UnknownPeer)?;
        w.send_datagram(from, to, data);
        Ok(())
    }

    /// The next datagram that arrived at the UDP peer, with its sender.
    pub fn udp_peer_recv(&self, peer: UdpPeerId) -> Option<(Vec<u8>, SocketAddr)> {
        let mut w = self.inner.borrow_mut();
        let addr = *w.net.udp_peers.get(peer.0 as usize)?;
        w.net.udp.get_mut(&addr)?.rx.pop_front()
    }
}
