//! Reports of the gateway scenarios, written like the other scenarios' (crate::report):
//! `<out-dir>/<scenario>-<UTC stamp>/` with `results.json`, `summary.md` (tables, Hearth ÷
//! Nchan ratios, the targets from issue 3) and SVG plots, all stamped with the machine, git
//! revision, command line and date.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::fs;
use std::path::{Path, PathBuf};

use crate::BenchError;
use crate::gateway::broadcast::BroadcastRun;
use crate::gateway::idle::IdleGwRun;
use crate::gateway::storm::StormRun;
use crate::gateway::target::{GwFailure, GwTarget};
use crate::gateway::wire::FailCounts;
use crate::latency::LatencySummary;
use crate::machine::RunMeta;
use crate::report::markdown::{ratio, stamp};
use crate::report::{stamp_lines, svg, to_json};

/// Issue 3's target for idle sessions: user-space bytes per identified idle session.
pub const IDLE_TARGET_BYTES_PER_SESSION: f64 = 2048.0;
/// Issue 3's target for broadcast: deliveries per server CPU-second.
pub const BROADCAST_TARGET_DELIVERIES_PER_CPU_S: f64 = 1_000_000.0;

/// What a Nchan comparison of handshakes has to say next to its numbers.
pub const NCHAN_LESS_WORK: &str = "**Nchan does less work per connection than Hearth's \
    Identify + READY**: its WebSocket upgrade alone subscribes the connection to one channel \
    (no Hello, no Identify to parse, no token to verify, no READY to build and send, no \
    session state, no heartbeats), so the ratios below flatter Nchan.";

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(
        || "n/a".into(),
        |r| {
            if r >= 0.1 {
                format!("{r:.2}×")
            } else {
                format!("{r:.4}×")
            }
        },
    )
}

fn busy(out: &mut String, rustc: u32, nice: i32, meta: &RunMeta) {
    if rustc > 0 {
        let _ = writeln!(
            out,
            "**The machine was busy**: {rustc} compiler (`rustc`) processes were running when \
             this run started (load average {}), so the server and clients ran at nice {nice}; \
             the figures carry that noise.\n",
            meta.machine.loadavg
        );
    }
}

fn failures(out: &mut String, failures: &[GwFailure]) {
    if failures.is_empty() {
        return;
    }
    out.push_str("\n## Targets not measured\n\n");
    for f in failures {
        let _ = writeln!(out, "- **{}**: {}", f.target, f.error.replace('\n', " "));
    }
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fail_text(f: &FailCounts) -> String {
    if f.total() == 0 {
        return "none".into();
    }
    format!(
        "connect {}, upgrade {}, protocol {}, closed {}, invalid session {}, timeout {}; first: {}",
        f.connect,
        f.upgrade,
        f.protocol,
        f.closed,
        f.invalid_session,
        f.timeout,
        f.first_error.as_deref().unwrap_or("-")
    )
}

fn lat(l: &Option<LatencySummary>, f: fn(&LatencySummary) -> f64) -> String {
    l.as_ref()
        .map_or_else(|| "–".into(), |l| format!("{:.0}", f(l)))
}

fn lat_value(l: &Option<LatencySummary>, f: fn(&LatencySummary) -> f64) -> f64 {
    l.as_ref().map_or(0.0, f)
}

fn curve(name: String, l: &Option<LatencySummary>) -> Option<svg::Series> {
    l.as_ref().map(|l| svg::Series {
        name,
        points: l.curve.iter().map(|c| (c.percentile, c.us)).collect(),
    })
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), BenchError> {
    let path = dir.join(name);
    fs::write(&path, text).map_err(|e| BenchError::io(format!("write {}", path.display()), e))
}

fn write_all(
    out_dir: &Path,
    scenario: &str,
    meta: &RunMeta,
    json: String,
    md: String,
    svgs: Vec<(&'static str, String)>,
) -> Result<PathBuf, BenchError> {
    let dir = out_dir.join(format!("{scenario}-{}", meta.stamp));
    fs::create_dir_all(&dir).map_err(|e| BenchError::io(format!("create {}", dir.display()), e))?;
    write(&dir, "results.json", &json)?;
    write(&dir, "summary.md", &md)?;
    for (name, text) in svgs {
        write(&dir, name, &text)?;
    }
    Ok(dir)
}

fn find<T>(results: &[T], target: GwTarget, of: fn(&T) -> GwTarget) -> Option<&T> {
    results.iter().find(|r| of(r) == target)
}

// ----- gw-identify-storm -----

/// The storm summary.
pub fn storm_markdown(meta: &RunMeta, run: &StormRun) -> String {
    let p = &run.params;
    let mut out = String::new();
    let _ = writeln!(out, "# gw-identify-storm — {}\n", meta.date_utc);
    stamp(&mut out, meta);
    busy(&mut out, p.rustc_processes_at_start, p.nice, meta);
    let _ = writeln!(
        out,
        "Load: {} sessions per target, at most {} handshakes in flight over the client \
         processes (≤ {} sessions each, one epoll thread each, non-blocking connects from \
         127.0.0.x), pinned to core {}; server pinned to core {} with {} shard(s) / nginx \
         worker(s); nice {}. **Hearth**: connect → HTTP upgrade → Hello → Identify → READY. \
         **Nchan**: connect → HTTP upgrade on `/sub/bench` (101 = subscribed). Sessions/s = \
         READY sessions / (last READY − first connect). Server CPU is schedstat over the connect \
         phase (every thread; nginx: master + workers) divided by READY sessions; users are \
         created before the phase.\n\n{NCHAN_LESS_WORK}\n",
        p.sessions,
        p.inflight,
        p.sessions_per_client,
        p.client_core,
        p.server_core,
        p.shards,
        p.nice
    );
    out.push_str(
        "| target | READY | failed | sessions/s | **sessions / server CPU-s** | connect→READY \
         p50 µs | p99 µs | p99.9 µs | max µs | Identify→READY p50 µs | p99 µs | p99.9 µs | \
         server CPU µs/session | server CPU s | client CPU | clean exit |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in &run.results {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | **{:.0}** | {} | {} | {} | {} | {} | {} | {} | {:.1} | \
             {:.2} | {:.0} % | {} |",
            r.target,
            r.ready,
            r.failed.total(),
            r.sessions_per_s,
            r.sessions_per_server_cpu_s,
            lat(&r.connect_ready, |l| l.p50_us),
            lat(&r.connect_ready, |l| l.p99_us),
            lat(&r.connect_ready, |l| l.p999_us),
            lat(&r.connect_ready, |l| l.max_us),
            lat(&r.identify_ready, |l| l.p50_us),
            lat(&r.identify_ready, |l| l.p99_us),
            lat(&r.identify_ready, |l| l.p999_us),
            r.server_cpu_us_per_session,
            r.server_cpu_s,
            r.client_cpu_util * 100.0,
            if r.clean_exit { "yes" } else { "no" }
        );
    }
    out.push_str(
        "\nClient CPU is the client processes' CPU time over the same span (they share one \
         core): near 100 % means the client, not the server, limited sessions/s; sessions per \
         server CPU-second does not depend on it.\n",
    );
    let h = find(&run.results, GwTarget::Hearth, |r| r.target);
    let n = find(&run.results, GwTarget::Nchan, |r| r.target);
    if let (Some(h), Some(n)) = (h, n) {
        out.push_str(
            "\n## Hearth ÷ Nchan\n\nSessions/s above 1× means Hearth completes more handshakes \
             per second; latency and CPU below 1× mean Hearth is faster or cheaper — for more \
             work per connection (see above).\n\n\
             | sessions/s | sessions / server CPU-s | connect→ready p50 | connect→ready p99 | \
             connect→ready p99.9 | server CPU/session |\n|---:|---:|---:|---:|---:|---:|\n",
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            fmt_ratio(ratio(h.sessions_per_s, n.sessions_per_s)),
            fmt_ratio(ratio(
                h.sessions_per_server_cpu_s,
                n.sessions_per_server_cpu_s
            )),
            fmt_ratio(ratio(
                lat_value(&h.connect_ready, |l| l.p50_us),
                lat_value(&n.connect_ready, |l| l.p50_us)
            )),
            fmt_ratio(ratio(
                lat_value(&h.connect_ready, |l| l.p99_us),
                lat_value(&n.connect_ready, |l| l.p99_us)
            )),
            fmt_ratio(ratio(
                lat_value(&h.connect_ready, |l| l.p999_us),
                lat_value(&n.connect_ready, |l| l.p999_us)
            )),
            fmt_ratio(ratio(
                h.server_cpu_us_per_session,
                n.server_cpu_us_per_session
            )),
        );
    } else {
        out.push_str("\nHearth and Nchan were not both measured, so no ratios.\n");
    }
    out.push_str("\n## Errors and surprises\n\n");
    for r in &run.results {
        let _ = writeln!(
            out,
            "- **{}**: failed sessions: {}; closed after READY: {}; unexpected messages: {}",
            r.target,
            fail_text(&r.failed),
            counts(&r.closed_after_ready),
            counts(&r.unexpected)
        );
    }
    failures(&mut out, &run.failures);
    out
}

/// The storm plots.
pub fn storm_svgs(meta: &RunMeta, run: &StormRun) -> Vec<(&'static str, String)> {
    let stamp = stamp_lines(meta);
    let mut series = Vec::new();
    for r in &run.results {
        let what = match r.target {
            GwTarget::Hearth => "connect→READY",
            GwTarget::Nchan => "connect→101",
        };
        series.extend(curve(format!("{} {what}", r.target), &r.connect_ready));
        series.extend(curve(
            format!("{} Identify→READY", r.target),
            &r.identify_ready,
        ));
    }
    let rate: Vec<(String, f64)> = run
        .results
        .iter()
        .map(|r| (r.target.to_string(), r.sessions_per_s))
        .collect();
    let cpu: Vec<(String, f64)> = run
        .results
        .iter()
        .map(|r| (r.target.to_string(), r.server_cpu_us_per_session))
        .collect();
    vec![
        (
            "latency.svg",
            svg::percentile_chart(
                &format!(
                    "identify storm: {} sessions, {} in flight",
                    run.params.sessions, run.params.inflight
                ),
                "latency µs (log)",
                &stamp,
                &series,
            ),
        ),
        (
            "sessions-per-s.svg",
            svg::bar_chart(
                "sessions READY per second (Nchan: upgraded)",
                "sessions / s",
                &stamp,
                &rate,
            ),
        ),
        (
            "cpu-per-session.svg",
            svg::bar_chart(
                "server CPU per session handshake",
                "CPU µs / session",
                &stamp,
                &cpu,
            ),
        ),
    ]
}

/// Writes a storm run; returns its folder.
pub fn write_storm(out_dir: &Path, meta: &RunMeta, run: &StormRun) -> Result<PathBuf, BenchError> {
    let scenario = "gw-identify-storm";
    write_all(
        out_dir,
        scenario,
        meta,
        to_json(scenario, meta, run)?,
        storm_markdown(meta, run),
        storm_svgs(meta, run),
    )
}

// ----- gw-idle-sessions -----

/// The idle summary.
pub fn idle_markdown(meta: &RunMeta, run: &IdleGwRun) -> String {
    let p = &run.params;
    let mut out = String::new();
    let _ = writeln!(out, "# gw-idle-sessions — {}\n", meta.date_utc);
    stamp(&mut out, meta);
    busy(&mut out, p.rustc_processes_at_start, p.nice, meta);
    let _ = writeln!(
        out,
        "Load: {} sessions per target from client processes of ≤ {} sessions (127.0.0.2, .3, …), \
         at most {} handshakes in flight. Hearth: each session is upgraded, identified (one \
         bot user per session, all users created *before* the first reading) and READY, then \
         idle, heartbeating on Hello's interval (first beat after a random fraction of it). \
         Nchan: each connection is upgraded and subscribed to one channel, then idle. Server on \
         core {} ({} shard(s) / worker(s)), nice {}; {} s settle before each reading. **B/session** \
         = (after − before) / READY sessions from `/proc/PID/status` (nginx: master + workers \
         summed). Then the sessions are held {} s and each is asked for a heartbeat ACK (Nchan: \
         a pong).\n\n{NCHAN_LESS_WORK}\n",
        p.sessions,
        p.sessions_per_client,
        p.inflight,
        p.server_core,
        p.shards,
        p.nice,
        p.settle_s,
        p.hold_s
    );
    out.push_str(
        "| target | READY | failed | VmRSS before MiB | VmRSS after MiB | RSS B/session | \
         RssAnon B/session | RSS B/session after hold | alive / checked | heartbeats sent / \
         ACKs | server fds | clean exit |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in &run.results {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {} / {} | {} / {} | {} | {} |",
            r.target,
            r.ready,
            r.failed.total(),
            r.before.vm_rss_kib as f64 / 1024.0,
            r.after.vm_rss_kib as f64 / 1024.0,
            r.rss_bytes_per_session,
            r.anon_bytes_per_session,
            r.rss_bytes_per_session_end,
            r.alive,
            r.checked,
            r.heartbeats_sent,
            r.heartbeat_acks,
            r.after.fds,
            if r.clean_exit { "yes" } else { "no" }
        );
    }
    if let Some(h) = find(&run.results, GwTarget::Hearth, |r| r.target) {
        let met = h.rss_bytes_per_session <= IDLE_TARGET_BYTES_PER_SESSION
            && h.alive == h.ready
            && h.ready > 0;
        let _ = writeln!(
            out,
            "\nIssue 3 target, ≤ {:.0} B of user-space memory per identified idle session with \
             every session alive at the end: **{}** ({:.0} B/session, {} of {} alive).",
            IDLE_TARGET_BYTES_PER_SESSION,
            if met { "met" } else { "not met" },
            h.rss_bytes_per_session,
            h.alive,
            h.ready
        );
    }
    let h = find(&run.results, GwTarget::Hearth, |r| r.target);
    let n = find(&run.results, GwTarget::Nchan, |r| r.target);
    if let (Some(h), Some(n)) = (h, n) {
        out.push_str(
            "\n## Hearth ÷ Nchan\n\nBelow 1× Hearth holds less memory per idle session (for \
             a full gateway session against a bare subscription).\n\n\
             | RSS B/session | RssAnon B/session | VmRSS after |\n|---:|---:|---:|\n",
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            fmt_ratio(ratio(h.rss_bytes_per_session, n.rss_bytes_per_session)),
            fmt_ratio(ratio(h.anon_bytes_per_session, n.anon_bytes_per_session)),
            fmt_ratio(ratio(h.after.vm_rss_kib as f64, n.after.vm_rss_kib as f64)),
        );
    } else {
        out.push_str("\nHearth and Nchan were not both measured, so no ratios.\n");
    }
    out.push_str("\n## Errors and surprises\n\n");
    for r in &run.results {
        let _ = writeln!(
            out,
            "- **{}**: failed sessions: {}; closed after READY: {}; unexpected messages: {}",
            r.target,
            fail_text(&r.failed),
            counts(&r.closed_after_ready),
            counts(&r.unexpected)
        );
    }
    failures(&mut out, &run.failures);
    out
}

/// The idle plot.
pub fn idle_svgs(meta: &RunMeta, run: &IdleGwRun) -> Vec<(&'static str, String)> {
    let stamp = stamp_lines(meta);
    let mut bars = Vec::new();
    for r in &run.results {
        bars.push((format!("{} VmRSS", r.target), r.rss_bytes_per_session));
        bars.push((format!("{} RssAnon", r.target), r.anon_bytes_per_session));
    }
    vec![(
        "rss-per-session.svg",
        svg::bar_chart(
            &format!(
                "server memory per idle session ({} sessions)",
                run.params.sessions
            ),
            "bytes / session",
            &stamp,
            &bars,
        ),
    )]
}

/// Writes an idle run; returns its folder.
pub fn write_idle(out_dir: &Path, meta: &RunMeta, run: &IdleGwRun) -> Result<PathBuf, BenchError> {
    let scenario = "gw-idle-sessions";
    write_all(
        out_dir,
        scenario,
        meta,
        to_json(scenario, meta, run)?,
        idle_markdown(meta, run),
        idle_svgs(meta, run),
    )
}

// ----- gw-broadcast -----

/// The broadcast summary.
pub fn broadcast_markdown(meta: &RunMeta, run: &BroadcastRun) -> String {
    let p = &run.params;
    let mut out = String::new();
    let _ = writeln!(out, "# gw-broadcast — {}\n", meta.date_utc);
    stamp(&mut out, meta);
    busy(&mut out, p.rustc_processes_at_start, p.nice, meta);
    let pace = if p.rate > 0.0 {
        format!("{} events/s", p.rate)
    } else {
        "back to back (each after the previous POST was answered)".into()
    };
    let _ = writeln!(
        out,
        "Load: {} sessions per target (Hearth: identified, READY; Nchan: WebSocket subscribers of \
         one channel), {} warm-up events then **{} measured events** published at {pace}, each \
         a ~{}-byte JSON dispatch carrying its index and CLOCK_MONOTONIC send time. Hearth: \
         `POST /admin/broadcast` (the node serialises the event once and queues it to every \
         READY session on every shard, answering once all have). Nchan: `POST /pub/bench` with \
         the same text. Clients: ≤ {} sessions per process, one epoll thread each, pinned to \
         core {}; server on core {} ({} shard(s) / worker(s)), nice {}. Each client counts every \
         (session, event) once and checks order; **latency** = receipt (taken once per \
         `read`) − send time stamped just before the POST. The **window** runs from just \
         before the first measured POST until every client saw the last event: \
         **deliveries / CPU-second** = measured deliveries ÷ the server's CPU time in the \
         window (schedstat, all threads / all nginx processes; the /proc/PID/stat utime+stime \
         figure is given as a cross-check). Wall-clock deliveries/s run from the first \
         measured POST to the last receipt. The publisher waits for each POST's answer before \
         the next (Hearth answers once every shard has queued the event), so when the server's \
         CPU is near 100 % wall-clock deliveries/s is its capacity on one core, and below that \
         it is the pace.\n",
        p.sessions,
        p.warmup_events,
        p.events,
        p.event_bytes,
        p.sessions_per_client,
        p.client_core,
        p.server_core,
        p.shards,
        p.nice
    );
    out.push_str(
        "| target | sessions | deliveries | expected | lost | dup / out of order | \
         **deliveries / CPU-s** | deliveries/s wall | server CPU s (stat) | server CPU | \
         client CPU | p50 µs | p99 µs | p99.9 µs | max µs | publish→answer p50 / p99 µs | \
         event bytes | clean exit |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in &run.results {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | **{:.0}** | {:.0} | {:.3} ({:.2}) | {:.0} % | \
             {:.0} % | {} | {} | {} | {} | {} / {} | {}–{} | {} |",
            r.target,
            r.ready,
            r.deliveries,
            r.expected_deliveries,
            r.lost,
            r.duplicates,
            r.deliveries_per_cpu_s,
            r.deliveries_per_s_wall,
            r.server_cpu_s,
            r.server_cpu_stat_s,
            r.server_cpu_util * 100.0,
            r.client_cpu_util * 100.0,
            lat(&r.latency, |l| l.p50_us),
            lat(&r.latency, |l| l.p99_us),
            lat(&r.latency, |l| l.p999_us),
            lat(&r.latency, |l| l.max_us),
            lat(&r.publish_ack, |l| l.p50_us),
            lat(&r.publish_ack, |l| l.p99_us),
            r.event_bytes_min,
            r.event_bytes_max,
            if r.clean_exit { "yes" } else { "no" }
        );
    }
    if let Some(h) = find(&run.results, GwTarget::Hearth, |r| r.target) {
        let met = h.deliveries_per_cpu_s >= BROADCAST_TARGET_DELIVERIES_PER_CPU_S
            && h.lost == 0
            && h.deliveries > 0;
        let _ = writeln!(
            out,
            "\nIssue 3 target, ≥ 1M deliveries per server CPU-second with no loss: **{}** \
             ({:.0} per CPU-second, {} lost). Hearth reported {} deliveries for the measured \
             events; the clients received {}.",
            if met { "met" } else { "not met" },
            h.deliveries_per_cpu_s,
            h.lost,
            h.server_reported_deliveries
                .map_or_else(|| "–".into(), |d| d.to_string()),
            h.deliveries
        );
    }
    if let Some(n) = find(&run.results, GwTarget::Nchan, |r| r.target) {
        let _ = writeln!(
            out,
            "\nNchan reported {} subscribers on the channel before the events.",
            n.nchan_subscribers
                .map_or_else(|| "–".into(), |s| s.to_string())
        );
    }
    let h = find(&run.results, GwTarget::Hearth, |r| r.target);
    let n = find(&run.results, GwTarget::Nchan, |r| r.target);
    if let (Some(h), Some(n)) = (h, n) {
        out.push_str(
            "\n## Hearth ÷ Nchan\n\nDeliveries per CPU-second above 1× means Hearth delivers \
             more per unit of CPU; latency below 1× means Hearth delivers sooner.\n\n\
             | deliveries / CPU-s | latency p50 | latency p99 | latency p99.9 |\n\
             |---:|---:|---:|---:|\n",
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            fmt_ratio(ratio(h.deliveries_per_cpu_s, n.deliveries_per_cpu_s)),
            fmt_ratio(ratio(
                lat_value(&h.latency, |l| l.p50_us),
                lat_value(&n.latency, |l| l.p50_us)
            )),
            fmt_ratio(ratio(
                lat_value(&h.latency, |l| l.p99_us),
                lat_value(&n.latency, |l| l.p99_us)
            )),
            fmt_ratio(ratio(
                lat_value(&h.latency, |l| l.p999_us),
                lat_value(&n.latency, |l| l.p999_us)
            )),
        );
    } else {
        out.push_str("\nHearth and Nchan were not both measured, so no ratios.\n");
    }
    out.push_str(
        "\n## Load generator check\n\nIf the clients' CPU nears 100 % of their core, they, \
         not the server, set the pace and the latency includes their queueing.\n\n\
         | target | client CPU | all clients saw the last event | sequence errors | \
         failed sessions | closed after READY | unexpected messages |\n\
         |---|---:|---|---:|---|---|---|\n",
    );
    for r in &run.results {
        let _ = writeln!(
            out,
            "| {} | {:.0} % | {} | {} | {} | {} | {} |",
            r.target,
            r.client_cpu_util * 100.0,
            if r.drained { "yes" } else { "no" },
            r.seq_errors,
            fail_text(&r.failed),
            counts(&r.closed_after_ready),
            counts(&r.unexpected)
        );
    }
    failures(&mut out, &run.failures);
    out
}

/// The broadcast plots.
pub fn broadcast_svgs(meta: &RunMeta, run: &BroadcastRun) -> Vec<(&'static str, String)> {
    let stamp = stamp_lines(meta);
    let series: Vec<svg::Series> = run
        .results
        .iter()
        .filter_map(|r| curve(r.target.to_string(), &r.latency))
        .collect();
    let per_cpu: Vec<(String, f64)> = run
        .results
        .iter()
        .map(|r| (r.target.to_string(), r.deliveries_per_cpu_s))
        .collect();
    vec![
        (
            "latency.svg",
            svg::percentile_chart(
                &format!(
                    "broadcast: publish → receipt, {} sessions × {} events",
                    run.params.sessions, run.params.events
                ),
                "latency µs (log)",
                &stamp,
                &series,
            ),
        ),
        (
            "deliveries-per-cpu-s.svg",
            svg::bar_chart(
                "deliveries per server CPU-second",
                "deliveries / CPU-s",
                &stamp,
                &per_cpu,
            ),
        ),
    ]
}

/// Writes a broadcast run; returns its folder.
pub fn write_broadcast(
    out_dir: &Path,
    meta: &RunMeta,
    run: &BroadcastRun,
) -> Result<PathBuf, BenchError> {
    let scenario = "gw-broadcast";
    write_all(
        out_dir,
        scenario,
        meta,
        to_json(scenario, meta, run)?,
        broadcast_markdown(meta, run),
        broadcast_svgs(meta, run),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::gateway::broadcast::{BroadcastParams, BroadcastResult};
    use crate::gateway::idle::{IdleGwResult, IdleParams};
    use crate::gateway::servers::ProcMem;
    use crate::gateway::storm::{StormParams, StormResult};
    use crate::gateway::wire::{HistWire, new_histogram};
    use crate::machine::{GitInfo, Machine};

    fn meta() -> RunMeta {
        RunMeta {
            machine: Machine {
                hostname: "box".into(),
                nproc: 2,
                cpu_model: "Xeon".into(),
                kernel: "Linux 6.18".into(),
                mem_total_kib: 8 << 20,
                loadavg: "0.10 0.20 0.30 1/100 42".into(),
            },
            git: GitInfo {
                commit: "0123456789abcdef0123".into(),
                dirty: false,
            },
            command_line: "hearth-bench gw-broadcast".into(),
            date_utc: "2026-11-23T12:00:00Z".into(),
            stamp: "20261123T120000Z".into(),
        }
    }

    fn latency(p50_us: u64) -> Option<LatencySummary> {
        let mut h = new_histogram().unwrap();
        for i in 1..=100u64 {
            h.record(p50_us * 1000 * i / 50).unwrap();
        }
        // Through the wire format, as the harness gets it.
        let mut back = new_histogram().unwrap();
        HistWire::from_histogram(&h).add_to(&mut back);
        crate::gateway::common::summary(&back)
    }

    fn storm(target: GwTarget, rate: f64, cpu_us: f64) -> StormResult {
        StormResult {
            target,
            ready: 5000,
            failed: FailCounts::default(),
            client_procs: 1,
            elapsed_s: 5000.0 / rate,
            sessions_per_s: rate,
            connect_ready: latency(1000),
            identify_ready: (target == GwTarget::Hearth).then(|| latency(500)).flatten(),
            server_cpu_s: cpu_us * 5000.0 / 1e6,
            server_cpu_us_per_session: cpu_us,
            sessions_per_server_cpu_s: 1e6 / cpu_us,
            client_cpu_s: 0.1,
            client_cpu_util: 0.5,
            closed_after_ready: BTreeMap::new(),
            unexpected: BTreeMap::new(),
            clean_exit: true,
        }
    }

    #[test]
    fn storm_summary_has_rows_ratios_and_the_caveat() {
        let run = StormRun {
            params: StormParams {
                rustc_processes_at_start: 0,
                sessions: 5000,
                inflight: 256,
                sessions_per_client: 10_000,
                shards: 1,
                server_core: 0,
                client_core: 1,
                nice: -19,
            },
            results: vec![
                storm(GwTarget::Hearth, 10_000.0, 40.0),
                storm(GwTarget::Nchan, 20_000.0, 20.0),
            ],
            failures: vec![],
        };
        let md = storm_markdown(&meta(), &run);
        assert!(md.contains(NCHAN_LESS_WORK));
        assert!(!md.contains("machine was busy"));
        let mut busy_run = run.clone();
        busy_run.params.rustc_processes_at_start = 3;
        assert!(
            storm_markdown(&meta(), &busy_run)
                .contains("**The machine was busy**: 3 compiler (`rustc`) processes")
        );
        assert!(
            md.contains("| hearth | 5000 | 0 | 10000 | **25000** |"),
            "{md}"
        );
        assert!(
            md.contains("| nchan | 5000 | 0 | 20000 | **50000** |"),
            "{md}"
        );
        // sessions/s 0.5×, per CPU-s 0.5×, latency equal, CPU/session 2×.
        assert!(
            md.contains("| 0.50× | 0.50× | 1.00× | 1.00× | 1.00× | 2.00× |"),
            "{md}"
        );
        let svgs = storm_svgs(&meta(), &run);
        assert_eq!(svgs.len(), 3);
        // Hearth has two curves (connect and Identify), Nchan one.
        assert_eq!(svgs[0].1.matches("<polyline").count(), 3);
        assert!(
            svgs.iter()
                .all(|(_, s)| s.contains("$ hearth-bench gw-broadcast"))
        );
    }

    fn mem(rss_kib: u64) -> ProcMem {
        ProcMem {
            processes: 1,
            vm_rss_kib: rss_kib,
            rss_anon_kib: rss_kib - 1000,
            rss_file_kib: 1000,
            rss_shmem_kib: 0,
            fds: 19_010,
        }
    }

    #[test]
    fn idle_summary_judges_the_target() {
        let res = |target, after_kib: u64, alive| IdleGwResult {
            target,
            ready: 19_000,
            failed: FailCounts::default(),
            client_procs: 2,
            connect_s: 2.0,
            before: mem(10_000),
            after: mem(after_kib),
            end: mem(after_kib),
            rss_bytes_per_session: crate::gateway::idle::per_session(10_000, after_kib, 19_000),
            anon_bytes_per_session: crate::gateway::idle::per_session(
                9_000,
                after_kib - 1000,
                19_000,
            ),
            rss_bytes_per_session_end: 0.0,
            held_s: 50.0,
            checked: 19_000,
            alive,
            heartbeats_sent: 19_000,
            heartbeat_acks: 19_000,
            closed_after_ready: BTreeMap::new(),
            unexpected: BTreeMap::new(),
            clean_exit: true,
        };
        let mut run = IdleGwRun {
            params: IdleParams {
                rustc_processes_at_start: 0,
                sessions: 19_000,
                sessions_per_client: 10_000,
                inflight: 256,
                settle_s: 3,
                hold_s: 50,
                shards: 1,
                server_core: 0,
                nice: 0,
            },
            // 19000 KiB over 19000 sessions: 1024 B each; Nchan 4 KiB each.
            results: vec![
                res(GwTarget::Hearth, 29_000, 19_000),
                res(GwTarget::Nchan, 86_000, 19_000),
            ],
            failures: vec![],
        };
        let md = idle_markdown(&meta(), &run);
        assert!(
            md.contains("| hearth | 19000 | 0 | 9.8 | 28.3 | 1024 | 1024 |"),
            "{md}"
        );
        assert!(
            md.contains("**met** (1024 B/session, 19000 of 19000 alive)"),
            "{md}"
        );
        assert!(md.contains("| 0.25× | 0.25× |"), "{md}");
        run.results[0].alive = 18_999;
        assert!(idle_markdown(&meta(), &run).contains("**not met**"));
        assert_eq!(
            idle_svgs(&meta(), &run)[0].1.matches("<rect").count(),
            2 + 4
        );
    }

    #[test]
    fn broadcast_summary_reports_loss_target_and_failures() {
        let res = |target, per_cpu: f64, lost| BroadcastResult {
            target,
            ready: 10_000,
            failed: FailCounts::default(),
            client_procs: 1,
            nchan_subscribers: (target == GwTarget::Nchan).then_some(10_000),
            publish_rate: 50.0,
            expected_deliveries: 2_000_000,
            deliveries: 2_000_000 - lost,
            lost,
            duplicates: 0,
            seq_errors: 0,
            server_reported_deliveries: (target == GwTarget::Hearth).then_some(2_000_000),
            drained: lost == 0,
            window_s: 4.0,
            server_cpu_s: 2_000_000.0 / per_cpu,
            server_cpu_stat_s: 2_000_000.0 / per_cpu,
            deliveries_per_cpu_s: per_cpu,
            deliveries_per_s_wall: 500_000.0,
            server_cpu_util: 0.5,
            client_cpu_util: 0.6,
            latency: latency(2000),
            publish_ack: latency(1000),
            event_bytes_min: 250,
            event_bytes_max: 252,
            closed_after_ready: BTreeMap::new(),
            unexpected: BTreeMap::new(),
            clean_exit: true,
        };
        let mut run = BroadcastRun {
            params: BroadcastParams {
                rustc_processes_at_start: 0,
                sessions: 10_000,
                events: 200,
                warmup_events: 20,
                rate: 50.0,
                event_bytes: 250,
                sessions_per_client: 10_000,
                shards: 1,
                server_core: 0,
                client_core: 1,
                nice: 0,
                drain_s: 30,
            },
            results: vec![
                res(GwTarget::Hearth, 1_250_000.0, 0),
                res(GwTarget::Nchan, 500_000.0, 0),
            ],
            failures: vec![],
        };
        let md = broadcast_markdown(&meta(), &run);
        assert!(
            md.contains("| hearth | 10000 | 2000000 | 2000000 | 0 | 0 | **1250000** |"),
            "{md}"
        );
        assert!(
            md.contains("**met** (1250000 per CPU-second, 0 lost)"),
            "{md}"
        );
        assert!(md.contains("| 2.50× | 1.00× | 1.00× | 1.00× |"), "{md}");
        assert!(md.contains("Nchan reported 10000 subscribers"));
        run.results[0].lost = 3;
        run.failures.push(GwFailure {
            target: GwTarget::Nchan,
            error: "nginx\nnot found".into(),
        });
        run.results.pop();
        let md = broadcast_markdown(&meta(), &run);
        assert!(md.contains("**not met**"));
        assert!(md.contains("- **nchan**: nginx not found"));
        assert!(md.contains("not both measured"));
        let dir = std::env::temp_dir().join(format!("gw-report-{}", std::process::id()));
        let out = write_broadcast(&dir, &meta(), &run).unwrap();
        assert!(out.ends_with("gw-broadcast-20261123T120000Z"));
        for f in [
            "results.json",
            "summary.md",
            "latency.svg",
            "deliveries-per-cpu-s.svg",
        ] {
            assert!(out.join(f).is_file(), "{f}");
        }
        let v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
        assert_eq!(v["scenario"], "gw-broadcast");
        assert_eq!(v["run"]["results"][0]["lost"], 3);
        assert_eq!(v["run"]["failures"][0]["target"], "nchan");
        fs::remove_dir_all(&dir).unwrap();
    }
}
