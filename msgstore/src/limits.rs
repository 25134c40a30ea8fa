//! Every limit of the store, decided up front. `Config` may lower the tunable ones.

/// Alignment of commit-log writes: O_DIRECT needs offset and length aligned to the logical block.
pub const IO_ALIGN_BYTES: usize = 4096;

/// Default size of one preallocated commit-log segment.
pub const SEGMENT_BYTES_DEFAULT: u64 = 8 * 1024 * 1024;
/// Smallest segment we accept: one header block plus one group of at least one full record.
pub const SEGMENT_BYTES_MIN: u64 = 128 * 1024;
/// Largest segment: it is read whole at recovery.
pub const SEGMENT_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Largest encoded record; bounds a hostile length prefix and one message's memory.
pub const RECORD_BYTES_MAX: usize = 32 * 1024;
/// Largest message content in bytes (Discord allows 4000 characters; 4 bytes each at worst).
pub const CONTENT_BYTES_MAX: usize = 16 * 1024;
/// Largest opaque attachments/embeds JSON blob per message.
pub const EXTRA_JSON_BYTES_MAX: usize = 8 * 1024;
/// Most mentions stored per message.
pub const MENTIONS_MAX: usize = 100;
/// Most distinct reaction emoji kept per message (Discord's limit is 20).
pub const REACTIONS_MAX: usize = 20;
/// Longest emoji name in a reaction.
pub const EMOJI_BYTES_MAX: usize = 64;
/// Longest nonce (Discord: 25 characters).
pub const NONCE_BYTES_MAX: usize = 32;

/// Zeros written per operation while filling the next commit-log segment ahead of time (one
/// such write outstanding, so a group never queues behind more than this on a shared lane).
pub const SEGMENT_ZERO_CHUNK_BYTES: usize = 64 * 1024;
/// Groups to wait before making the next segment again after making it failed (disk full):
/// the retry must not cost every group a failing open and fallocate.
pub const SPARE_RETRY_GROUPS: u32 = 64;

/// Most bytes of appends waiting for the next group commit before `append` pushes back.
pub const GROUP_BYTES_MAX: usize = 1024 * 1024;

/// Default memtable size that triggers a flush.
pub const MEMTABLE_BYTES_DEFAULT: usize = 4 * 1024 * 1024;
/// The memtable may grow to this multiple of its flush size while a flush or compaction runs;
/// past it appends push back.
pub const MEMTABLE_HARD_FACTOR: usize = 3;

/// Target uncompressed size of one sorted-file data block.
pub const BLOCK_BYTES_TARGET: usize = 16 * 1024;
/// Largest data block accepted when reading (hostile input bound).
pub const BLOCK_BYTES_MAX: usize = 1024 * 1024;
/// Largest index+bloom+partition section accepted when reading a sorted file.
pub const META_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Bloom filter bits per partition.
pub const BLOOM_BITS_PER_KEY: usize = 10;
/// Bloom filter probes.
pub const BLOOM_PROBES: u32 = 7;

/// Default block cache capacity.
pub const BLOCK_CACHE_BYTES_DEFAULT: usize = 32 * 1024 * 1024;

/// Recovery reads the manifest and log segments whole, in reads of this size.
pub const RECOVERY_READ_CHUNK_BYTES: usize = 1024 * 1024;
/// Largest manifest; it is read whole.
pub const MANIFEST_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Most live sorted files; past it flushes wait for compaction (and appends push back).
pub const SST_FILES_MAX: usize = 4096;

/// Bytes of reads or writes one background step may issue per loop turn.
pub const STEP_IO_BYTES_DEFAULT: usize = 256 * 1024;
/// While appends are waiting or in flight, a background step takes this fraction of
/// `step_io_bytes` (its CPU would delay their acknowledgement).
pub const BUSY_STEP_DIVISOR: usize = 4;
/// Writes of one background job (a sorted file's bytes) in flight at once. An executor that
/// completes a write only once its data reached the device (O_DIRECT, or writeback started and
/// waited for) then keeps at most this many chunks of background data queued at the device,
/// so a group commit's write and flush never wait behind megabytes of a flush or a merge.
pub const JOB_WRITES_IN_FLIGHT_MAX: usize = 2;
/// Largest write of a background job, whatever the turn's budget: a group commit's write may
/// queue at the device behind one such write (64 KiB is ~0.3-0.6 ms on the benchmark VM's
/// disk, 256 KiB up to ~2.5 ms).
pub const JOB_WRITE_CHUNK_BYTES: usize = 64 * 1024;
/// A file no longer needed is shrunk by this much per step before its removal: freeing (and
/// on an online-discard mount trimming) 32 MiB in one unlink held a concurrent 4 KiB
/// fdatasync for ~9 ms on the benchmark VM, 1 MiB steps for at most ~1.4 ms.
pub const RECLAIM_STEP_BYTES: u64 = 1024 * 1024;
/// Smallest background step while appends are busy, so background work always progresses.
pub const BUSY_STEP_BYTES_MIN: usize = 16 * 1024;
/// Files in one window before compaction merges them.
pub const COMPACTION_MIN_FILES: usize = 4;
/// In the newest window a file joins a merge of smaller ones only if it is at most this many
/// times their total size (size tiers: bytes are rewritten about log(window / flush) times).
pub const COMPACTION_TIER_RATIO: u64 = 2;
/// Most files merged by one compaction.
pub const COMPACTION_MAX_FILES: usize = 16;
/// Most input bytes of one compaction (it merges in memory).
pub const COMPACTION_INPUT_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// Tombstones younger than this are kept through compaction.
pub const TOMBSTONE_TTL_MS: u64 = 24 * 3600 * 1000;

/// Largest page a history query returns (Discord's limit).
pub const QUERY_LIMIT_MAX: usize = 100;
/// Most pins returned for a channel.
pub const PINS_MAX: usize = 250;
/// Unread counts stop at this value (clients show "99+" anyway).
pub const UNREAD_COUNT_MAX: u32 = 1000;
/// Most queries in flight; past it `query` pushes back.
pub const QUERIES_IN_FLIGHT_MAX: usize = 1024;

/// Width of a partition's time window: 10 days of Snowflake milliseconds.
pub const BUCKET_MS: u64 = 10 * 24 * 3600 * 1000;

const _: () = assert!(SEGMENT_BYTES_MIN as usize >= 2 * IO_ALIGN_BYTES + 2 * RECORD_BYTES_MAX);
const _: () = assert!(SEGMENT_BYTES_DEFAULT >= SEGMENT_BYTES_MIN);
const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!(SEGMENT_BYTES_DEFAULT.is_multiple_of(IO_ALIGN_BYTES as u64));
const _: () = assert!(SEGMENT_ZERO_CHUNK_BYTES.is_multiple_of(IO_ALIGN_BYTES));
const _: () = assert!(SEGMENT_ZERO_CHUNK_BYTES as u64 <= SEGMENT_BYTES_MIN);
const _: () =
    assert!(CONTENT_BYTES_MAX + EXTRA_JSON_BYTES_MAX + 8 * MENTIONS_MAX < RECORD_BYTES_MAX - 2048);
const _: () = assert!(GROUP_BYTES_MAX as u64 <= SEGMENT_BYTES_MIN * 16);
const _: () = assert!(BLOCK_BYTES_TARGET + RECORD_BYTES_MAX <= BLOCK_BYTES_MAX);
const _: () = assert!(COMPACTION_MIN_FILES >= 2 && COMPACTION_MIN_FILES <= COMPACTION_MAX_FILES);
const _: () = assert!(SST_FILES_MAX > 2 * COMPACTION_MAX_FILES);
const _: () = assert!(QUERY_LIMIT_MAX as u32 <= UNREAD_COUNT_MAX);
const _: () = assert!(JOB_WRITES_IN_FLIGHT_MAX >= 1);
const _: () =
    assert!(JOB_WRITE_CHUNK_BYTES >= 4096 && JOB_WRITE_CHUNK_BYTES <= STEP_IO_BYTES_DEFAULT);
const _: () = assert!(SEGMENT_ZERO_CHUNK_BYTES <= JOB_WRITE_CHUNK_BYTES);
