//! Every bound and default of the store benchmark, in one place.

/// Messages appended by default (about 440 MB of keys and values).
pub const MESSAGES_DEFAULT: u64 = 600_000;
/// Most messages a run accepts (append start times are kept per message: 8 bytes each).
pub const MESSAGES_MAX: u64 = 20_000_000;
/// Channels by default (about 600 messages, 12 pages of 50, each).
pub const CHANNELS_DEFAULT: u64 = 1000;
/// Days of history the ids span by default: 12 ten-day buckets.
pub const HISTORY_DAYS_DEFAULT: u64 = 120;
/// Appends outstanding at once, for both stores (Hearth: logical clients of the shard loop;
/// RocksDB: writer threads).
pub const CONCURRENCY_DEFAULT: usize = 64;
/// Most outstanding appends (RocksDB gets one thread each).
pub const CONCURRENCY_MAX: usize = 1024;
/// Memtable size for both stores, MiB (Hearth's default).
pub const MEMTABLE_MIB_DEFAULT: usize = 4;
/// Block cache for both stores, MiB (Hearth's default).
pub const CACHE_MIB_DEFAULT: usize = 32;
/// Sorted-file block size for both stores (Hearth's target).
pub const BLOCK_BYTES: usize = 16 * 1024;
/// Bloom filter bits per key for RocksDB (Hearth's per-partition filter uses the same).
pub const BLOOM_BITS_PER_KEY: f64 = 10.0;
/// RocksDB's `bytes_per_sync`: table-file writeback starts every this many bytes (Hearth's
/// executor writes back each sorted-file write, at most `JOB_WRITE_CHUNK_BYTES`, 64 KiB, before
/// completing it).
pub const BYTES_PER_SYNC: u64 = 1 << 20;
/// Blocking I/O threads that carry out Hearth's file operations (like io_uring's io-wq
/// workers); pinned to the store's core.
pub const IO_THREADS_DEFAULT: usize = 4;
/// Most I/O threads.
pub const IO_THREADS_MAX: usize = 64;

/// Offered rates of the fixed-rate append phases by default, appends/s: about half and 80 %
/// of RocksDB's durable maximum here (~11.5k/s) and about 80 % of Hearth's (~23k/s before this
/// change), the same rates for both stores.
pub const RATES_DEFAULT: &str = "5000,9000,18000";
/// Length of one fixed-rate phase by default, seconds.
pub const RATE_PHASE_S_DEFAULT: f64 = 8.0;
/// A rate phase counts as sustained if the store acknowledged at least this share of the
/// offered rate over the phase.
pub const RATE_SUSTAINED_FRACTION: f64 = 0.97;
/// Fewest messages left for the max-throughput phase once the rate phases took theirs.
pub const MAX_PHASE_MESSAGES_MIN: u64 = 10_000;

/// Durable 4 KiB writes per device probe method (a few seconds at this disk's speed).
pub const DEVICE_PROBE_WRITES: u64 = 4000;
/// Size of the device probe's file (written through before the probe, then cycled over).
pub const DEVICE_PROBE_FILE_BYTES: usize = 8 * 1024 * 1024;

/// Messages per history page (Discord's default page).
pub const PAGE_LIMIT: usize = 50;
/// Latest-N queries measured hot by default.
pub const HOT_QUERIES_DEFAULT: usize = 20_000;
/// Channels paged through hot, and again (others) cold.
pub const PAGING_CHANNELS_DEFAULT: usize = 40;
/// Channels queried once each after a cold reopen.
pub const COLD_QUERIES_DEFAULT: usize = 400;

/// Smallest message content, bytes.
pub const CONTENT_BYTES_MIN: usize = 200;
/// Largest message content, bytes.
pub const CONTENT_BYTES_MAX: usize = 1000;
/// Size of the text corpus contents are cut from.
pub const CORPUS_BYTES: usize = 4 * 1024 * 1024;
/// Distinct pseudo-words in the corpus.
pub const VOCABULARY_WORDS: usize = 4096;
/// Longest pseudo-word.
pub const WORD_LETTERS_MAX: usize = 9;

/// Loop turns any Hearth step may take before the run is declared stuck.
pub const TURNS_MAX: u64 = 50_000_000;

const _: () = assert!(CONTENT_BYTES_MIN < CONTENT_BYTES_MAX);
const _: () = assert!(CONTENT_BYTES_MAX <= msgstore::limits::CONTENT_BYTES_MAX);
const _: () = assert!(CORPUS_BYTES > 4 * CONTENT_BYTES_MAX);
const _: () = assert!(PAGE_LIMIT <= msgstore::limits::QUERY_LIMIT_MAX);
const _: () = assert!(CONCURRENCY_DEFAULT <= CONCURRENCY_MAX);
const _: () = assert!(IO_THREADS_DEFAULT <= IO_THREADS_MAX);
const _: () = assert!(MESSAGES_DEFAULT <= MESSAGES_MAX);
