//! Hand-written bindings to the part of RocksDB's C API (`rocksdb/c.h`, 7.8) the benchmark uses,
//! linked against the system `librocksdb` (Debian's `librocksdb-dev`). Only built with the
//! `rocksdb` feature. Safe wrappers live in `rocks.rs`.

use std::ffi::{c_char, c_double, c_int, c_uchar};

/// Opaque `rocksdb_t`.
#[repr(C)]
pub(super) struct Db {
    _private: [u8; 0],
}
/// Opaque `rocksdb_options_t`.
#[repr(C)]
pub(super) struct Options {
    _private: [u8; 0],
}
/// Opaque `rocksdb_block_based_table_options_t`.
#[repr(C)]
pub(super) struct TableOptions {
    _private: [u8; 0],
}
/// Opaque `rocksdb_cache_t`.
#[repr(C)]
pub(super) struct Cache {
    _private: [u8; 0],
}
/// Opaque `rocksdb_filterpolicy_t`.
#[repr(C)]
pub(super) struct FilterPolicy {
    _private: [u8; 0],
}
/// Opaque `rocksdb_writeoptions_t`.
#[repr(C)]
pub(super) struct WriteOptions {
    _private: [u8; 0],
}
/// Opaque `rocksdb_readoptions_t`.
#[repr(C)]
pub(super) struct ReadOptions {
    _private: [u8; 0],
}
/// Opaque `rocksdb_flushoptions_t`.
#[repr(C)]
pub(super) struct FlushOptions {
    _private: [u8; 0],
}
/// Opaque `rocksdb_iterator_t`.
#[repr(C)]
pub(super) struct Iter {
    _private: [u8; 0],
}

/// `rocksdb_lz4_compression` in c.h's compression enum.
pub(super) const LZ4_COMPRESSION: c_int = 4;

#[link(name = "rocksdb")]
unsafe extern "C" {
    pub(super) fn rocksdb_options_create() -> *mut Options;
    pub(super) fn rocksdb_options_destroy(o: *mut Options);
    pub(super) fn rocksdb_options_set_create_if_missing(o: *mut Options, v: c_uchar);
    pub(super) fn rocksdb_options_set_compression(o: *mut Options, v: c_int);
    pub(super) fn rocksdb_options_set_write_buffer_size(o: *mut Options, v: usize);
    pub(super) fn rocksdb_options_set_bytes_per_sync(o: *mut Options, v: u64);
    pub(super) fn rocksdb_options_set_block_based_table_factory(
        o: *mut Options,
        t: *mut TableOptions,
    );

    pub(super) fn rocksdb_block_based_options_create() -> *mut TableOptions;
    pub(super) fn rocksdb_block_based_options_destroy(t: *mut TableOptions);
    pub(super) fn rocksdb_block_based_options_set_block_size(t: *mut TableOptions, v: usize);
    pub(super) fn rocksdb_block_based_options_set_block_cache(t: *mut TableOptions, c: *mut Cache);
    pub(super) fn rocksdb_block_based_options_set_filter_policy(
        t: *mut TableOptions,
        f: *mut FilterPolicy,
    );

    pub(super) fn rocksdb_cache_create_lru(capacity: usize) -> *mut Cache;
    pub(super) fn rocksdb_cache_destroy(c: *mut Cache);
    pub(super) fn rocksdb_filterpolicy_create_bloom(bits_per_key: c_double) -> *mut FilterPolicy;

    pub(super) fn rocksdb_open(
        o: *const Options,
        name: *const c_char,
        err: *mut *mut c_char,
    ) -> *mut Db;
    pub(super) fn rocksdb_close(db: *mut Db);

    pub(super) fn rocksdb_writeoptions_create() -> *mut WriteOptions;
    pub(super) fn rocksdb_writeoptions_destroy(w: *mut WriteOptions);
    pub(super) fn rocksdb_writeoptions_set_sync(w: *mut WriteOptions, v: c_uchar);
    pub(super) fn rocksdb_put(
        db: *mut Db,
        w: *const WriteOptions,
        key: *const c_char,
        keylen: usize,
        val: *const c_char,
        vallen: usize,
        err: *mut *mut c_char,
    );

    pub(super) fn rocksdb_readoptions_create() -> *mut ReadOptions;
    pub(super) fn rocksdb_readoptions_destroy(r: *mut ReadOptions);
    pub(super) fn rocksdb_create_iterator(db: *mut Db, r: *const ReadOptions) -> *mut Iter;
    pub(super) fn rocksdb_iter_destroy(it: *mut Iter);
    pub(super) fn rocksdb_iter_valid(it: *const Iter) -> c_uchar;
    pub(super) fn rocksdb_iter_seek_for_prev(it: *mut Iter, k: *const c_char, klen: usize);
    pub(super) fn rocksdb_iter_prev(it: *mut Iter);
    pub(super) fn rocksdb_iter_key(it: *const Iter, klen: *mut usize) -> *const c_char;
    pub(super) fn rocksdb_iter_value(it: *const Iter, vlen: *mut usize) -> *const c_char;
    pub(super) fn rocksdb_iter_get_error(it: *const Iter, err: *mut *mut c_char);

    pub(super) fn rocksdb_flushoptions_create() -> *mut FlushOptions;
    pub(super) fn rocksdb_flushoptions_destroy(f: *mut FlushOptions);
    pub(super) fn rocksdb_flushoptions_set_wait(f: *mut FlushOptions, v: c_uchar);
    pub(super) fn rocksdb_flush(db: *mut Db, f: *const FlushOptions, err: *mut *mut c_char);
    pub(super) fn rocksdb_compact_range(
        db: *mut Db,
        start: *const c_char,
        start_len: usize,
        limit: *const c_char,
        limit_len: usize,
    );
    pub(super) fn rocksdb_property_value(db: *mut Db, name: *const c_char) -> *mut c_char;

    pub(super) fn rocksdb_free(p: *mut std::ffi::c_void);
}
