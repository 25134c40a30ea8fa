//! Per-shard counters and their Prometheus text rendering.
//!
//! Each shard owns plain (non-atomic) counters; `/metrics` gathers a snapshot from every shard with
//! `map_reduce` and renders them here, labelled by shard.

use std::fmt::Write;

use crate::driver::DriverStats;

/// Counters a shard keeps outside its driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShardStats {
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// Connections refused because the shard was at its connection limit.
    pub connections_refused: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// HTTP requests answered.
    pub http_requests: u64,
    /// HTTP requests refused as bad input (4xx from the parser) or timed out.
    pub http_errors: u64,
    /// Connections closed for not completing a request in time.
    pub timeouts: u64,
    /// Socket errors seen (resets, failed sends).
    pub socket_errors: u64,
    /// Cross-shard tasks run here.
    pub tasks_run: u64,
    /// Provided-buffer exhaustions that needed a re-arm.
    pub rearms: u64,
    /// Gateway commands (presence, voice state, member requests) with no owner to route to yet.
    pub gateway_commands_unrouted: u64,
}

/// One shard's snapshot as exported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShardSnapshot {
    /// Shard index.
    pub shard: usize,
    /// CPU core the shard is pinned to, if pinned.
    pub core: Option<usize>,
    /// Shard counters.
    pub stats: ShardStats,
    /// Messages waiting in this shard's incoming mailboxes.
    pub mailbox_depth: u64,
    /// Remote wake-ups received.
    pub wakeups: u64,
    /// Driver counters.
    #[serde(skip)]
    pub driver: DriverStats,
    /// Gateway counters.
    pub gateway: crate::gateway::GatewayStats,
    /// Gateway sessions held (attached or resumable).
    pub sessions: u64,
    /// Voice server counters.
    pub voice: crate::voice::VoiceStats,
    /// Metadata journal counters.
    pub meta: crate::meta::MetaStats,
}

/// A named counter series: name, help text, and how to read it from a snapshot.
type Series = (&'static str, &'static str, fn(&ShardSnapshot) -> u64);

fn metric(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    shards: &[ShardSnapshot],
    f: impl Fn(&ShardSnapshot) -> u64,
) {
    let _ = writeln!(out, "# HELP hearth_{name} {help}");
    let _ = writeln!(out, "# TYPE hearth_{name} {kind}");
    for s in shards {
        let _ = writeln!(out, "hearth_{name}{{shard=\"{}\"}} {}", s.shard, f(s));
    }
}

/// Render every shard's snapshot in the Prometheus text exposition format (version 0.0.4).
pub fn render_prometheus(shards: &[ShardSnapshot], out: &mut String) {
    let c = "counter";
    let g = "gauge";
    metric(
        out,
        "loop_iterations_total",
        c,
        "Completion-loop turns.",
        shards,
        |s| s.driver.loop_iterations,
    );
    metric(
        out,
        "lazy_rewaits_total",
        c,
        "Blocking waits resumed because only whole lazy sends had completed (turns saved).",
        shards,
        |s| s.driver.lazy_rewaits,
    );
    metric(
        out,
        "submissions_total",
        c,
        "Operations submitted to the driver.",
        shards,
        |s| s.driver.submissions,
    );
    metric(
        out,
        "completions_total",
        c,
        "Completions taken from the driver.",
        shards,
        |s| s.driver.completions,
    );
    metric(
        out,
        "bytes_in_total",
        c,
        "Bytes received on sockets.",
        shards,
        |s| s.driver.bytes_in,
    );
    metric(
        out,
        "bytes_out_total",
        c,
        "Bytes sent on sockets.",
        shards,
        |s| s.driver.bytes_out,
    );
    metric(
        out,
        "recv_buffer_exhaustions_total",
        c,
        "Times the provided receive buffers ran out.",
        shards,
        |s| s.driver.buffer_exhaustions,
    );
    metric(
        out,
        "recv_buffers_lent",
        g,
        "Provided receive buffers held by the shard.",
        shards,
        |s| s.driver.buffers_lent,
    );
    metric(
        out,
        "mailbox_depth",
        g,
        "Messages waiting in the shard's incoming mailboxes.",
        shards,
        |s| s.mailbox_depth,
    );
    metric(
        out,
        "mailbox_wakeups_total",
        c,
        "Remote wake-ups received.",
        shards,
        |s| s.wakeups,
    );
    metric(out, "connections", g, "Open connections.", shards, |s| {
        s.stats.connections_open
    });
    metric(
        out,
        "connections_accepted_total",
        c,
        "Accepted connections.",
        shards,
        |s| s.stats.connections_accepted,
    );
    metric(
        out,
        "connections_refused_total",
        c,
        "Connections refused at the per-shard limit.",
        shards,
        |s| s.stats.connections_refused,
    );
    metric(
        out,
        "http_requests_total",
        c,
        "HTTP requests answered.",
        shards,
        |s| s.stats.http_requests,
    );
    metric(
        out,
        "http_errors_total",
        c,
        "HTTP requests refused as bad input.",
        shards,
        |s| s.stats.http_errors,
    );
    metric(
        out,
        "timeouts_total",
        c,
        "Connections closed by a timeout.",
        shards,
        |s| s.stats.timeouts,
    );
    metric(out, "errors_total", c, "Socket errors.", shards, |s| {
        s.stats.socket_errors
    });
    metric(
        out,
        "tasks_total",
        c,
        "Cross-shard tasks run.",
        shards,
        |s| s.stats.tasks_run,
    );
    metric(
        out,
        "gateway_sessions",
        g,
        "Gateway sessions held (attached or resumable).",
        shards,
        |s| s.sessions,
    );
    let gw: [Series; 7] = [
        (
            "gateway_sessions_opened_total",
            "WebSocket upgrades accepted.",
            |s| s.gateway.sessions_opened,
        ),
        (
            "gateway_identifies_total",
            "Identifies answered with READY.",
            |s| s.gateway.identifies,
        ),
        ("gateway_resumes_total", "Resumes completed.", |s| {
            s.gateway.resumes
        }),
        (
            "gateway_resumes_refused_total",
            "Resumes answered with op 9.",
            |s| s.gateway.resumes_refused,
        ),
        (
            "gateway_deliveries_total",
            "Dispatches queued to sessions.",
            |s| s.gateway.deliveries,
        ),
        (
            "gateway_slow_consumers_total",
            "Sessions disconnected for a full output queue.",
            |s| s.gateway.slow_consumers,
        ),
        (
            "gateway_sessions_expired_total",
            "Detached sessions dropped after the resume window.",
            |s| s.gateway.expired,
        ),
    ];
    for (name, help, f) in gw {
        metric(out, name, c, help, shards, f);
    }
    metric(
        out,
        "gateway_commands_unrouted_total",
        c,
        "Gateway commands with no owner to route to.",
        shards,
        |s| s.stats.gateway_commands_unrouted,
    );
    let meta: [Series; 6] = [
        (
            "meta_groups_total",
            "Metadata journal group commits (one write and one fdatasync each).",
            |s| s.meta.groups,
        ),
        ("meta_records_total", "Metadata records written.", |s| {
            s.meta.records
        }),
        (
            "meta_bytes_total",
            "Bytes appended to the metadata journal.",
            |s| s.meta.bytes,
        ),
        (
            "meta_checkpoints_total",
            "Metadata snapshots written.",
            |s| s.meta.checkpoints,
        ),
        (
            "meta_failures_total",
            "Metadata writes, syncs or checkpoints that failed.",
            |s| s.meta.failures,
        ),
        (
            "meta_held_replies_total",
            "Replies held until their metadata change was durable.",
            |s| s.meta.held_replies,
        ),
    ];
    for (name, help, f) in meta {
        metric(out, name, c, help, shards, f);
    }
    let voice: Vec<(usize, crate::voice::VoiceStats)> =
        shards.iter().map(|s| (s.shard, s.voice)).collect();
    crate::voice::render_prometheus(&voice, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_series_with_help_and_type() {
        let mut a = ShardSnapshot {
            shard: 0,
            ..Default::default()
        };
        a.stats.http_requests = 3;
        a.driver.loop_iterations = 9;
        let b = ShardSnapshot {
            shard: 1,
            ..Default::default()
        };
        let mut out = String::new();
        render_prometheus(&[a, b], &mut out);
        assert!(out.contains("# TYPE hearth_http_requests_total counter\n"));
        assert!(out.contains("hearth_http_requests_total{shard=\"0\"} 3\n"));
        assert!(out.contains("hearth_http_requests_total{shard=\"1\"} 0\n"));
        assert!(out.contains("hearth_loop_iterations_total{shard=\"0\"} 9\n"));
        // Every sample line is `name{labels} value`.
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("hearth_") && name.ends_with('}'));
            value.parse::<u64>().unwrap();
        }
    }
}
