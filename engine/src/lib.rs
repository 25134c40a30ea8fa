//! Hearth's engine: one pinned io_uring loop per core, cross-shard mailboxes, HTTP and the binary.

pub mod api;
pub mod app;
pub mod buf;
pub mod config;
pub mod ctx;
pub mod driver;
pub mod gateway;
pub mod guilds;
pub mod http;
pub mod mailbox;
pub mod messages;
pub mod meta;
pub mod meta_format;
pub mod metrics;
pub mod node;
pub mod presence;
pub mod profile;
pub mod rest;
pub mod rest_handlers;
pub mod shard;
pub mod snowflake;
pub mod store_io;
pub mod voice;
