//! Knobs of the simulation (latencies, fault probabilities, the seed) and its fixed limits.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Receive window of a new simulated TCP peer: how much the server may have in flight to it
/// before its sends stall (a slow reader is modelled by lowering it with `peer_set_window`).
pub const PEER_WINDOW_BYTES_DEFAULT: usize = 64 * 1024;
/// Datagrams a simulated UDP socket queues before dropping, like a full SO_RCVBUF.
pub const UDP_RX_QUEUE_DATAGRAMS_MAX: usize = 256;
/// Largest datagram the simulated network carries (an IPv4 UDP payload).
pub const UDP_DATAGRAM_BYTES_MAX: usize = 65_507;
/// Atomic unit of the simulated disk: a crash can tear a write only at multiples of this.
pub const SECTOR_BYTES: u64 = 512;
/// Wall-clock start of every simulation (2026-09-21), so times look like real epochs.
pub const WALL_CLOCK_START_MS: u64 = 1_790_000_000_000;
/// Largest simulated file: an I/O reaching past it fails with EFBIG instead of exhausting memory.
pub const SIM_FILE_BYTES_MAX: u64 = 1 << 32;
/// First port handed out when a socket binds port 0 or a peer connects.
pub const EPHEMERAL_PORT_FIRST: u16 = 40_000;

const _: () = assert!(SECTOR_BYTES.is_power_of_two());
const _: () = assert!((crate::buf::DIRECT_ALIGN as u64).is_multiple_of(SECTOR_BYTES));

/// How a simulated world behaves; everything random derives from `seed`.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Seed of the world's PRNG: the same seed and the same calls give the same run.
    pub seed: u64,
    /// Least latency of a network delivery or socket completion, ns.
    pub latency_min_ns: u64,
    /// Greatest latency of a network delivery or socket completion, ns.
    pub latency_max_ns: u64,
    /// Probability that a TCP send takes only a random prefix of what would fit.
    pub partial_send_prob: f64,
    /// Probability that a TCP receive takes only a random prefix of what has arrived.
    pub recv_split_prob: f64,
    /// Receive window of each new TCP peer, bytes.
    pub peer_window_bytes: usize,
    /// Probability that a multishot TCP receive ends with a data completion (no "more" flag), as
    /// the kernel ends one when its completion queue overflows: the shard must re-arm it.
    pub recv_end_with_data_prob: f64,
    /// Probability that a datagram is lost.
    pub udp_loss_prob: f64,
    /// Probability that a datagram is delivered twice.
    pub udp_dup_prob: f64,
    /// Probability that a datagram is held back by up to `udp_reorder_delay_max_ns`.
    pub udp_reorder_prob: f64,
    /// Extra delay of a reordered datagram, at most, ns.
    pub udp_reorder_delay_max_ns: u64,
    /// Latency of a file read, ns.
    pub disk_read_latency_ns: u64,
    /// Latency of a file write, ns.
    pub disk_write_latency_ns: u64,
    /// Latency of an fdatasync, ns.
    pub fsync_latency_ns: u64,
    /// Probability that a file read, write or fdatasync fails with EIO.
    pub disk_eio_prob: f64,
    /// Probability that a file write fails with ENOSPC.
    pub disk_nospc_prob: f64,
    /// Probability, at a crash, that the first lost write of a file is torn rather than lost.
    pub torn_write_prob: f64,
}

impl SimConfig {
    /// A benign world: 10-100 µs latencies, no faults, no partial sends.
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            latency_min_ns: 10_000,
            latency_max_ns: 100_000,
            partial_send_prob: 0.0,
            recv_split_prob: 0.0,
            recv_end_with_data_prob: 0.0,
            peer_window_bytes: PEER_WINDOW_BYTES_DEFAULT,
            udp_loss_prob: 0.0,
            udp_dup_prob: 0.0,
            udp_reorder_prob: 0.0,
            udp_reorder_delay_max_ns: 1_000_000,
            disk_read_latency_ns: 50_000,
            disk_write_latency_ns: 50_000,
            fsync_latency_ns: 500_000,
            disk_eio_prob: 0.0,
            disk_nospc_prob: 0.0,
            torn_write_prob: 0.5,
        }
    }

    /// A hostile world whose knobs are themselves drawn from `seed`: partial sends, split
    /// receives, multishot receives ended with data, small windows, UDP loss/duplication/reorder (disk faults stay off: callers opt in).
    pub fn chaotic(seed: u64) -> Self {
        use rand::SeedableRng;
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_c0de_0bad_f00d);
        let latency_min_ns = rng.random_range(0..50_000);
        SimConfig {
            seed,
            latency_min_ns,
            latency_max_ns: latency_min_ns + rng.random_range(0..2_000_000),
            partial_send_prob: rng.random_range(0.0..0.8),
            recv_split_prob: rng.random_range(0.0..0.8),
            peer_window_bytes: rng.random_range(1..4096),
            udp_loss_prob: rng.random_range(0.0..0.3),
            udp_dup_prob: rng.random_range(0.0..0.3),
            udp_reorder_prob: rng.random_range(0.0..0.5),
            // Drawn last, so the knobs above stay what they were for every seed.
            recv_end_with_data_prob: rng.random_range(0.0..0.3),
            ..SimConfig::new(seed)
        }
    }
}

/// True with probability `p` (never draws when `p <= 0`, so benign configs keep the stream short).
pub(crate) fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    p > 0.0 && rng.random::<f64>() < p
}

/// A value in `[min, max]` (min when the range is empty).
pub(crate) fn between(rng: &mut ChaCha8Rng, min: u64, max: u64) -> u64 {
    if max > min {
        rng.random_range(min..=max)
    } else {
        min
    }
}
