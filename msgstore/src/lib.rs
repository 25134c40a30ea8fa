//! Sans-IO message store: commit log, memtables, sorted table files, compaction and recovery.
//!
//! The store emits file operations (`Store::poll_io`) and takes their completions
//! (`Store::complete_io`); the engine runs them on io_uring or on its simulated disk. Appends
//! are acknowledged through `Store::poll_event` once their group commit is durable. See
//! `DESIGN.md` for formats and recovery rules.
//!
//! One loop turn of the engine: feed calls, call `end_of_turn` (seals the group commit and
//! advances background work), carry out `poll_io` requests, hand back `complete_io` results,
//! drain `poll_event`.
//!
//! ```
//! use msgstore::sim::{MemDisk, sample_message};
//! use msgstore::{Config, Event, Query, QueryResult, Store};
//!
//! let mut disk = MemDisk::new(1); // the engine uses io_uring or its simulated disk instead
//! let mut store = Store::new(Config::default());
//! let mut turn = |store: &mut Store, disk: &mut MemDisk| {
//!     store.end_of_turn();
//!     while let Some(req) = store.poll_io() {
//!         let result = disk.execute(req.op);
//!         store.complete_io(req.id, result);
//!     }
//!     std::iter::from_fn(|| store.poll_event()).collect::<Vec<Event>>()
//! };
//! store.open();
//! assert_eq!(turn(&mut store, &mut disk), vec![Event::Opened { replayed: 0 }]);
//!
//! let msg = sample_message(10, 1 << 22);
//! store.append(7, msg.clone()).unwrap();
//! assert_eq!(turn(&mut store, &mut disk), vec![Event::Acked { token: 7 }]);
//!
//! store.query(8, Query::Latest { channel_id: 10, limit: 50 }).unwrap();
//! let done = Event::QueryDone { token: 8, result: Ok(QueryResult::Messages(vec![msg])) };
//! assert_eq!(turn(&mut store, &mut disk), vec![done]);
//! ```

pub mod block_cache;
pub mod bloom;
pub mod codec;
pub mod compaction;
pub mod error;
pub mod io;
pub mod limits;
pub mod manifest;
pub mod memtable;
pub mod message;
pub mod query;
pub mod sim;
pub mod snowflake;
pub mod sst;
pub mod store;
pub mod wal;
pub mod wal_writer;

#[cfg(feature = "std-fs")]
pub mod blocking;

pub use error::StoreError;
pub use io::{FileHandle, FileOp, IoDone, IoError, IoId, IoRequest, IoResult};
pub use message::{Message, ReadState};
pub use query::{Query, QueryResult};
pub use sst::Compression;
pub use store::{Config, Event, Store};
