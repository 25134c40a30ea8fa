//! Benchmark scenarios. Each takes its parsed flags and returns serialisable results; the
//! report module writes them.

pub mod idle_conns;
pub mod pingpong;

use serde::Serialize;

use crate::server::Target;

/// A target that could not be measured, and why; reports list these instead of numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Which target.
    pub target: Target,
    /// The error.
    pub error: String,
}
