//! What a client process and the harness say to each other: one command per line on the
//! client's stdin, one JSON object per line on its stdout. Histograms travel as their non-empty
//! (value, count) buckets, so the harness merges exact distributions, not percentiles.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::BenchError;
use crate::limits::{LATENCY_MAX_NS, LATENCY_SIGFIGS};

/// A histogram of nanoseconds with the harness's bounds.
pub fn new_histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, LATENCY_SIGFIGS)
        .map_err(|e| BenchError::Invalid(format!("histogram: {e}")))
}

/// A histogram as `[value, count]` pairs of its non-empty buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistWire(pub Vec<[u64; 2]>);

impl HistWire {
    /// Captures `h`.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        HistWire(
            h.iter_recorded()
                .map(|v| [v.value_iterated_to(), v.count_at_value()])
                .collect(),
        )
    }

    /// Adds these samples to `h` (values beyond its range saturate at the top).
    pub fn add_to(&self, h: &mut Histogram<u64>) {
        for &[value, count] in &self.0 {
            h.saturating_record_n(value.max(1), count);
        }
    }

    /// Samples held.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|p| p[1]).sum()
    }
}

/// A command from the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Expect bench events `0..total` on every session; record latency from event
    /// `record_from` on; say `Done` once every live session has seen event `total - 1`.
    Expect {
        /// Events sent so far plus those about to be sent.
        total: u64,
        /// First event whose latency counts.
        record_from: u64,
    },
    /// Ask every READY session for a heartbeat ACK (Nchan: a pong) and say `Alive`.
    Check,
    /// Say `Report`.
    Report,
    /// Close every session and exit.
    Quit,
}

/// Parses one command line.
pub fn parse_command(line: &str) -> Option<Command> {
    let mut w = line.split_ascii_whitespace();
    let cmd = match w.next()? {
        "expect" => Command::Expect {
            total: w.next()?.parse().ok()?,
            record_from: w.next()?.parse().ok()?,
        },
        "check" => Command::Check,
        "report" => Command::Report,
        "quit" => Command::Quit,
        _ => return None,
    };
    w.next().is_none().then_some(cmd)
}

/// The text of a command line (without the newline).
pub fn command_line(cmd: Command) -> String {
    match cmd {
        Command::Expect { total, record_from } => format!("expect {total} {record_from}"),
        Command::Check => "check".into(),
        Command::Report => "report".into(),
        Command::Quit => "quit".into(),
    }
}

/// Why sessions never became READY (Nchan: never upgraded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailCounts {
    /// connect(2) failed.
    pub connect: u64,
    /// The upgrade was refused or malformed.
    pub upgrade: u64,
    /// The server broke the WebSocket or gateway protocol.
    pub protocol: u64,
    /// The server closed the connection (close frame or EOF) before READY.
    pub closed: u64,
    /// Op 9 Invalid Session instead of READY.
    pub invalid_session: u64,
    /// Not READY within the handshake timeout.
    pub timeout: u64,
    /// The first failure's description, for the report.
    pub first_error: Option<String>,
}

impl FailCounts {
    /// All failures.
    pub fn total(&self) -> u64 {
        self.connect
            + self.upgrade
            + self.protocol
            + self.closed
            + self.invalid_session
            + self.timeout
    }

    /// Adds another process's counts.
    pub fn merge(&mut self, o: &FailCounts) {
        self.connect += o.connect;
        self.upgrade += o.upgrade;
        self.protocol += o.protocol;
        self.closed += o.closed;
        self.invalid_session += o.invalid_session;
        self.timeout += o.timeout;
        if self.first_error.is_none() {
            self.first_error.clone_from(&o.first_error);
        }
    }
}

/// Everything one client process measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Sessions started (connect issued).
    pub started: u64,
    /// Sessions that reached READY (Nchan: upgraded).
    pub ready: u64,
    /// Sessions READY and still open.
    pub live: u64,
    /// Handshake failures by kind.
    pub failed: FailCounts,
    /// READY sessions the server closed afterwards, by close code (`eof` without a code,
    /// `error` for a socket or protocol error).
    pub closed_after_ready: BTreeMap<String, u64>,
    /// CLOCK_MONOTONIC ns of the first connect.
    pub first_connect_ns: u64,
    /// CLOCK_MONOTONIC ns of the last READY.
    pub last_ready_ns: u64,
    /// connect(2) → READY (Nchan: → 101), ns.
    pub connect_ready: HistWire,
    /// Identify sent → READY, ns (Hearth only).
    pub identify_ready: HistWire,
    /// Publish → receipt of recorded bench events, ns.
    pub delivery: HistWire,
    /// Heartbeats sent.
    pub heartbeats_sent: u64,
    /// Heartbeat ACKs received.
    pub heartbeat_acks: u64,
    /// Bench events received, each (session, k) once.
    pub bench_received: u64,
    /// Of those, with k at or past `record_from`.
    pub bench_recorded: u64,
    /// Bench events expected: `total` per session that was READY when `expect` arrived or
    /// became READY later.
    pub bench_expected: u64,
    /// Bench events that arrived more than once or out of order.
    pub bench_duplicates: u64,
    /// Bench events skipped over (a later one arrived first).
    pub bench_gaps: u64,
    /// Sequence numbers that did not increase by one from the previous dispatch.
    pub seq_errors: u64,
    /// CLOCK_MONOTONIC ns of the first recorded bench event's receipt.
    pub first_rx_ns: u64,
    /// CLOCK_MONOTONIC ns of the last bench event's receipt.
    pub last_rx_ns: u64,
    /// Smallest bench message, bytes.
    pub bench_bytes_min: u64,
    /// Largest bench message, bytes.
    pub bench_bytes_max: u64,
    /// Messages by kind that the client did not expect (e.g. `op7`, `dispatch:TYPING_START`).
    pub unexpected: BTreeMap<String, u64>,
}

/// A line from a client process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkerMsg {
    /// The connect phase is over: every session is READY or failed.
    Connected {
        /// READY sessions.
        ready: u64,
        /// Failed sessions.
        failed: u64,
    },
    /// Every live session has seen the last expected event.
    Done {
        /// CLOCK_MONOTONIC ns of the last receipt.
        last_rx_ns: u64,
        /// Live sessions.
        live: u64,
    },
    /// Result of a liveness check.
    Alive {
        /// Sessions asked.
        checked: u64,
        /// Sessions that answered.
        alive: u64,
    },
    /// The final numbers.
    Report(Box<WorkerReport>),
    /// The client process hit an error and stops.
    Error {
        /// What went wrong.
        message: String,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        for c in [
            Command::Expect {
                total: 220,
                record_from: 20,
            },
            Command::Check,
            Command::Report,
            Command::Quit,
        ] {
            assert_eq!(parse_command(&command_line(c)), Some(c));
        }
        assert_eq!(parse_command("expect 1"), None);
        assert_eq!(parse_command("expect 1 2 3"), None);
        assert_eq!(parse_command("dance"), None);
        assert_eq!(parse_command(""), None);
    }

    #[test]
    fn histograms_merge_exactly() {
        let mut a = new_histogram().unwrap();
        for v in [1_000u64, 2_000, 2_000, 50_000_000] {
            a.record(v).unwrap();
        }
        let wire = HistWire::from_histogram(&a);
        assert_eq!(wire.count(), 4);
        let text = serde_json::to_string(&wire).unwrap();
        let back: HistWire = serde_json::from_str(&text).unwrap();
        let mut b = new_histogram().unwrap();
        back.add_to(&mut b);
        back.add_to(&mut b);
        assert_eq!(b.len(), 8);
        assert_eq!(b.max(), a.max());
        assert_eq!(b.value_at_quantile(0.5), a.value_at_quantile(0.5));
    }

    #[test]
    fn messages_are_tagged_json_lines() {
        let m = WorkerMsg::Connected {
            ready: 5,
            failed: 1,
        };
        let line = serde_json::to_string(&m).unwrap();
        assert_eq!(line, r#"{"kind":"connected","ready":5,"failed":1}"#);
        let r = WorkerMsg::Report(Box::default());
        let back: WorkerMsg = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let mut f = FailCounts {
            connect: 1,
            ..FailCounts::default()
        };
        f.merge(&FailCounts {
            timeout: 2,
            first_error: Some("x".into()),
            ..FailCounts::default()
        });
        assert_eq!(f.total(), 3);
        assert_eq!(f.first_error.as_deref(), Some("x"));
    }
}
