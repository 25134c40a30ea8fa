//! Hearth's benchmark harness: load generators, server lifecycle, /proc sampling and the report
//! writer behind the `hearth-bench` binary, plus the reference echo peers' shared plumbing.
//!
//! Scenarios live in [`scenario`]; each one returns plain result structs that [`report`] turns into
//! JSON, Markdown and SVG. Adding a scenario (gateway storm, fan-out, store, voice) means a new
//! `scenario/<name>.rs`, a subcommand in [`cli`] and a writer in `report/`.

pub mod cli;
pub mod error;
pub mod gateway;
pub mod idle_client;
pub mod latency;
pub mod limits;
pub mod machine;
pub mod peer;
pub mod pingpong_client;
pub mod procfs;
pub mod report;
pub mod scenario;
pub mod schedule;
pub mod server;
pub mod store;
pub mod sys;
pub mod utc;
pub mod voice;

pub use error::BenchError;
