//! gw-fanout's report, written like the other scenarios' (crate::report): a folder
//! `gw-fanout-<UTC stamp>/` with `results.json` (every number), `summary.md` (tables, Hearth ÷
//! Nchan ratios, issue 5's targets hit or missed, the checks) and SVG plots, all stamped with
//! the machine, git revision, command line and date.

use std::fmt::Write;
use std::fs;
use std::path::{Path, PathBuf};

use crate::BenchError;
use crate::gateway::fanout::{
    FanoutResult, FanoutRun, TARGET_DELIVERIES_PER_CPU_S, TARGET_LATENCY_MEMBERS,
    TARGET_P99_LAST_MS, TARGET_RATIO_VS_NCHAN,
};
use crate::gateway::target::GwTarget;
use crate::latency::LatencySummary;
use crate::machine::RunMeta;
use crate::report::markdown::{ratio, stamp};
use crate::report::{stamp_lines, svg, to_json};

/// The scenario's name: the subcommand and the results folder's prefix.
pub const SCENARIO: &str = "gw-fanout";
/// A core busy this share of the window counts as saturated in the summary's flags.
pub const SATURATED_UTIL: f64 = 0.9;
/// An achieved send rate below this share of the asked one is flagged.
pub const SEND_RATE_SHORTFALL: f64 = 0.95;

fn ms(l: &Option<LatencySummary>, f: fn(&LatencySummary) -> f64) -> String {
    l.as_ref()
        .map_or_else(|| "–".into(), |l| format!("{:.1}", f(l) / 1e3))
}

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

fn members_label(m: u32) -> String {
    if m >= 1000 && m.is_multiple_of(1000) {
        format!("{}k", m / 1000)
    } else {
        m.to_string()
    }
}

fn all_results(run: &FanoutRun) -> impl Iterator<Item = &FanoutResult> {
    run.targets.iter().flat_map(|t| t.results.iter())
}

fn find(run: &FanoutRun, target: GwTarget, members: u32, rate: f64) -> Option<&FanoutResult> {
    all_results(run).find(|r| r.target == target && r.members == members && r.rate == rate)
}

fn p99_last_ms(r: &FanoutResult) -> Option<f64> {
    r.latency_last.as_ref().map(|l| l.p99_us / 1e3)
}

fn results_table(out: &mut String, run: &FanoutRun) {
    out.push_str(
        "| target | members | msg/s | sessions | messages | deliveries | lost | \
         deliveries / server CPU-s | wall deliveries/s | server CPU | client busy | \
         → last p50 ms | p99 | p99.9 | max | → each p50 ms | p99 | p99.9 | → first p50 ms | \
         send ack p50 ms | frame bytes |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\
         ---:|---:|---:|---:|\n",
    );
    for r in all_results(run) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.1} % | {:.1} % | {} | {} | \
             {} | {} | {} | {} | {} | {} | {} | {} |",
            r.target,
            r.members,
            r.rate,
            r.sessions,
            r.messages,
            r.deliveries,
            r.lost,
            r.deliveries_per_cpu_s,
            r.deliveries_per_s_wall,
            r.server_cpu_util * 100.0,
            r.client_busy_util * 100.0,
            ms(&r.latency_last, |l| l.p50_us),
            ms(&r.latency_last, |l| l.p99_us),
            ms(&r.latency_last, |l| l.p999_us),
            ms(&r.latency_last, |l| l.max_us),
            ms(&r.latency_each, |l| l.p50_us),
            ms(&r.latency_each, |l| l.p99_us),
            ms(&r.latency_each, |l| l.p999_us),
            ms(&r.latency_first, |l| l.p50_us),
            ms(&r.send_ack, |l| l.p50_us),
            if r.frame_bytes_min == r.frame_bytes_max {
                r.frame_bytes_min.to_string()
            } else {
                format!("{}–{}", r.frame_bytes_min, r.frame_bytes_max)
            },
        );
    }
}

fn flags(out: &mut String, run: &FanoutRun) {
    let mut lines = String::new();
    for r in all_results(run) {
        let mut why = Vec::new();
        if r.server_cpu_util >= SATURATED_UTIL {
            why.push(format!(
                "server core saturated ({:.0} %)",
                r.server_cpu_util * 100.0
            ));
        }
        if r.client_busy_util >= SATURATED_UTIL {
            why.push(format!(
                "client threads busy {:.0} % of the window: latency includes their own backlog",
                r.client_busy_util * 100.0
            ));
        }
        if r.send_rate < r.rate * SEND_RATE_SHORTFALL {
            why.push(format!(
                "sent {:.1} msg/s of {} asked ({} messages): answers came later than the \
                 interval and the sender keeps one request in flight",
                r.send_rate, r.rate, r.messages
            ));
        }
        if r.lost > 0 || !r.drained {
            why.push(format!(
                "{} copies lost{}",
                r.lost,
                if r.drained { "" } else { ", not drained" }
            ));
        }
        if !why.is_empty() {
            let _ = writeln!(
                lines,
                "- {} {} members @ {} msg/s: {}",
                r.target,
                r.members,
                r.rate,
                why.join("; ")
            );
        }
    }
    if !lines.is_empty() {
        out.push_str("\nFlags:\n\n");
        out.push_str(&lines);
    }
}

fn ratios_table(out: &mut String, run: &FanoutRun) {
    let mut rows = String::new();
    for h in all_results(run).filter(|r| r.target == GwTarget::Hearth) {
        let Some(n) = find(run, GwTarget::Nchan, h.members, h.rate) else {
            continue;
        };
        let lat = |r: &FanoutResult| p99_last_ms(r).unwrap_or(0.0);
        let _ = writeln!(
            rows,
            "| {} | {} | {} | {} | {} | {} |",
            h.members,
            h.rate,
            fmt_ratio(ratio(h.deliveries_per_cpu_s, n.deliveries_per_cpu_s)),
            fmt_ratio(ratio(h.deliveries_per_s_wall, n.deliveries_per_s_wall)),
            fmt_ratio(ratio(lat(h), lat(n))),
            fmt_ratio(ratio(
                h.latency_each.as_ref().map_or(0.0, |l| l.p99_us),
                n.latency_each.as_ref().map_or(0.0, |l| l.p99_us)
            )),
        );
    }
    out.push_str("\n## Hearth ÷ Nchan\n\n");
    if rows.is_empty() {
        out.push_str("No member count and rate was measured on both targets: no ratios.\n");
        return;
    }
    out.push_str(
        "Deliveries per CPU-second and per second: above 1× Hearth does more. Latency: below 1× \
         Hearth is faster.\n\n\
         | members | msg/s | deliveries / CPU-s | wall deliveries/s | p99 → last | p99 → each |\n\
         |---:|---:|---:|---:|---:|---:|\n",
    );
    out.push_str(&rows);
}

fn verdict(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**missed**" }
}

fn targets_section(out: &mut String, run: &FanoutRun) {
    out.push_str("\n## Issue 5's targets\n\n");
    let hearth: Vec<&FanoutResult> = all_results(run)
        .filter(|r| r.target == GwTarget::Hearth)
        .collect();
    if hearth.is_empty() {
        out.push_str("Hearth was not measured.\n");
        return;
    }
    for r in &hearth {
        let _ = writeln!(
            out,
            "- ≥ {:.0} deliveries per server CPU-second — {} members @ {} msg/s: {:.0} → {}",
            TARGET_DELIVERIES_PER_CPU_S,
            r.members,
            r.rate,
            r.deliveries_per_cpu_s,
            verdict(r.deliveries_per_cpu_s >= TARGET_DELIVERIES_PER_CPU_S)
        );
    }
    let big: Vec<&&FanoutResult> = hearth
        .iter()
        .filter(|r| r.members == TARGET_LATENCY_MEMBERS)
        .collect();
    if big.is_empty() {
        let _ = writeln!(
            out,
            "- p99 send → last delivery < {TARGET_P99_LAST_MS} ms at {TARGET_LATENCY_MEMBERS} \
             members: not measured at that member count"
        );
    }
    for r in big {
        let p = p99_last_ms(r);
        let _ = writeln!(
            out,
            "- p99 send → last delivery < {TARGET_P99_LAST_MS} ms at {} members @ {} msg/s: {} \
             ms → {}",
            r.members,
            r.rate,
            p.map_or_else(|| "–".into(), |p| format!("{p:.1}")),
            verdict(p.is_some_and(|p| p < TARGET_P99_LAST_MS) && r.lost == 0)
        );
    }
    for r in &hearth {
        let Some(n) = find(run, GwTarget::Nchan, r.members, r.rate) else {
            continue;
        };
        let x = ratio(r.deliveries_per_cpu_s, n.deliveries_per_cpu_s);
        let _ = writeln!(
            out,
            "- ≥ {TARGET_RATIO_VS_NCHAN}× Nchan deliveries per CPU-second — {} members @ {} \
             msg/s: {} → {}",
            r.members,
            r.rate,
            fmt_ratio(x),
            verdict(x.is_some_and(|x| x >= TARGET_RATIO_VS_NCHAN))
        );
    }
    let lossless = hearth.iter().all(|r| r.lost == 0 && r.drained);
    let _ = writeln!(
        out,
        "- No loss (every session received every message): {}",
        verdict(lossless)
    );
}

fn counts(map: &std::collections::BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn checks_section(out: &mut String, run: &FanoutRun) {
    out.push_str(
        "\n## Checks\n\n\
         | target | members | msg/s | expected | received | lost | duplicates | gaps | \
         seq errors | out of phase | drained | send rate | send lag p99 ms | server CPU s (stat) \
         | (schedstat) | harness CPU (polling included) | harness CPU µs/delivery |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in all_results(run) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {:.3} | \
             {:.3} | {:.1} % | {:.2} |",
            r.target,
            r.members,
            r.rate,
            r.expected_deliveries,
            r.deliveries,
            r.lost,
            r.duplicates,
            r.gaps,
            r.seq_errors,
            r.out_of_phase,
            if r.drained { "yes" } else { "no" },
            r.send_rate,
            ms(&r.send_lag, |l| l.p99_us),
            r.server_cpu_s,
            r.server_cpu_schedstat_s,
            r.client_cpu_util * 100.0,
            r.client_cpu_us_per_delivery,
        );
    }
    out.push_str(
        "\n| target | members | set-up s | connect s | subscribed | failed (run so far) | \
         warm-up lost | first failure |\n|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for t in &run.targets {
        for s in &t.steps {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {:.1} | {} | {} | {} | {} |",
                t.target,
                s.members,
                s.setup_s,
                s.connect_s,
                s.live,
                s.failed,
                s.warmup_lost,
                s.first_error.as_deref().unwrap_or("–")
            );
        }
    }
    out.push('\n');
    for t in &run.targets {
        let _ = writeln!(
            out,
            "- {}: sessions closed by the server after subscribing: {}; unexpected messages: {}; \
             clean exit on SIGTERM: {}",
            t.target,
            counts(&t.closed_after_ready),
            counts(&t.unexpected),
            if t.clean_exit { "yes" } else { "no" }
        );
    }
}

fn failures(out: &mut String, run: &FanoutRun) {
    if run.failures.is_empty() {
        return;
    }
    out.push_str("\n## Targets that failed (partial results above)\n\n");
    for f in &run.failures {
        let _ = writeln!(out, "- **{}**: {}", f.target, f.error.replace('\n', " "));
    }
}

/// The Markdown summary.
pub fn markdown(meta: &RunMeta, run: &FanoutRun) -> String {
    let p = &run.params;
    let mut out = String::new();
    let _ = writeln!(out, "# {SCENARIO} — {}\n", meta.date_utc);
    stamp(&mut out, meta);
    let _ = writeln!(
        out,
        "Load: one guild, one text channel; members {:?} (the guild grows from one count to \
         the next on one server per target, so it always has exactly that many members, every \
         one connected); messages at {:?} per second for {} s each after {} warm-up messages per \
         member count; content {} characters carrying the message index and its send time \
         (CLOCK_MONOTONIC ns). Server pinned to core {} with {} shard(s) / nginx worker(s); \
         client threads (one epoll loop per ≤ {} sessions, polling {} µs after events before \
         sleeping) and the sender pinned to core {}; nice {}. **Hearth**: member sessions identify with intents {} (GUILDS | GUILD_MESSAGES \
         | MESSAGE_CONTENT) and count once GUILD_CREATE arrived; the owner (member 1) sends \
         `POST /api/v10/channels/{{id}}/messages` on one keep-alive connection, REST rate limits \
         off; Hearth answers once the message is durable, and every member session (the \
         sender's too) receives MESSAGE_CREATE. **Nchan**: subscribers on `/sub/bench`, the \
         same dispatch text (Hearth's message object when Hearth ran first) published by `POST \
         /pub/bench`.\n",
        p.members,
        p.rates,
        p.duration_s,
        p.warmup_messages,
        p.content_bytes,
        p.server_core,
        p.shards,
        p.sessions_per_thread,
        p.client_spin_us,
        p.client_core,
        p.nice,
        p.intents,
    );
    out.push_str(
        "Deliveries / server CPU-s = deliveries received in the window ÷ utime + stime of \
         every server process (/proc/PID/stat; nginx: master + workers) over the window, which \
         runs from just before the first send until every session saw the last message. \
         → last: send → the last session's receipt of each message (one sample per message); \
         → each: send → every receipt; → first: send → the first receipt. Receipts are \
         timestamped once per `read`.\n\n",
    );
    let _ = writeln!(
        out,
        "Hearth arguments: `{}`{}.\n",
        p.hearth_args.join(" "),
        p.ring_entries_override
            .map_or_else(String::new, |n| format!(
                "; its profile's `ring_entries` overridden to {n} (completion queue {}) by \
             `--ring-entries`",
                2 * u64::from(n)
            ))
    );
    results_table(&mut out, run);
    flags(&mut out, run);
    ratios_table(&mut out, run);
    targets_section(&mut out, run);
    checks_section(&mut out, run);
    failures(&mut out, run);
    out.push_str("\n## Notes\n\n");
    let _ = writeln!(
        out,
        "- `rustc` processes running (other builds on the same 2 vCPUs): {} at the start, {} at \
         the end.",
        p.rustc_at_start, p.rustc_at_end
    );
    for n in &p.notes {
        let _ = writeln!(out, "- {n}");
    }
    out.push_str(
        "- Loopback: the kernel's receive processing for the clients' sockets runs mostly on \
         the sending (server) core, so both servers' CPU includes part of the clients' TCP \
         receive work; the same holds for both targets.\n\
         - Hearth fans a message out only after it is durable (msgstore group commit + \
         fdatasync) and routed through its owner shard; Nchan keeps messages in memory. → first \
         shows that difference.\n\
         - One client core reads every delivery: at high member counts the time to the last \
         delivery includes the client threads' own work through ~N reads (client busy: time \
         spent handling events, their polling excluded); it bounds both targets alike.\n",
    );
    out
}

/// The plots: deliveries per CPU-second per (target, members, rate); p99 send → last
/// delivery per the same; latency curves (→ last, → each) at the largest member count.
pub fn svgs(meta: &RunMeta, run: &FanoutRun) -> Vec<(String, String)> {
    let stamp = stamp_lines(meta);
    let label =
        |r: &FanoutResult| format!("{} {} @{}/s", r.target, members_label(r.members), r.rate);
    let bars = |f: fn(&FanoutResult) -> f64| -> Vec<(String, f64)> {
        all_results(run).map(|r| (label(r), f(r))).collect()
    };
    let top = run.params.members.last().copied().unwrap_or(0);
    let curves = |pick: fn(&FanoutResult) -> &Option<LatencySummary>| -> Vec<svg::Series> {
        all_results(run)
            .filter(|r| r.members == top)
            .filter_map(|r| {
                pick(r).as_ref().map(|l| svg::Series {
                    name: format!("{} @{}/s", r.target, r.rate),
                    points: l.curve.iter().map(|c| (c.percentile, c.us / 1e3)).collect(),
                })
            })
            .collect()
    };
    vec![
        (
            "deliveries-per-cpu-s.svg".into(),
            svg::bar_chart(
                "deliveries per server CPU-second (utime + stime)",
                "deliveries / CPU-s",
                &stamp,
                &bars(|r| r.deliveries_per_cpu_s),
            ),
        ),
        (
            "p99-to-last-ms.svg".into(),
            svg::bar_chart(
                "p99 send → last delivery of each message",
                "ms",
                &stamp,
                &bars(|r| p99_last_ms(r).unwrap_or(0.0)),
            ),
        ),
        (
            "latency-to-last.svg".into(),
            svg::percentile_chart(
                &format!("send → last delivery, {} members", members_label(top)),
                "ms (log)",
                &stamp,
                &curves(|r| &r.latency_last),
            ),
        ),
        (
            "latency-to-each.svg".into(),
            svg::percentile_chart(
                &format!("send → each delivery, {} members", members_label(top)),
                "ms (log)",
                &stamp,
                &curves(|r| &r.latency_each),
            ),
        ),
    ]
}

fn write_file(dir: &Path, name: &str, text: &str) -> Result<(), BenchError> {
    let path = dir.join(name);
    fs::write(&path, text).map_err(|e| BenchError::io(format!("write {}", path.display()), e))
}

/// Writes the run under `out_dir`; returns its folder.
pub fn write(out_dir: &Path, meta: &RunMeta, run: &FanoutRun) -> Result<PathBuf, BenchError> {
    let dir = out_dir.join(format!("{SCENARIO}-{}", meta.stamp));
    fs::create_dir_all(&dir).map_err(|e| BenchError::io(format!("create {}", dir.display()), e))?;
    write_file(&dir, "results.json", &to_json(SCENARIO, meta, run)?)?;
    write_file(&dir, "summary.md", &markdown(meta, run))?;
    for (name, text) in svgs(meta, run) {
        write_file(&dir, &name, &text)?;
    }
    Ok(dir)
}
