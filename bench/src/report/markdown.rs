//! Markdown summaries: one table of numbers per run and a table of Hearth ÷ peer ratios.

use std::fmt::Write;

use crate::machine::RunMeta;
use crate::scenario::Failure;
use crate::scenario::idle_conns::IdleRun;
use crate::scenario::pingpong::PingpongRun;
use crate::server::Target;

/// `hearth / peer`, or `None` when either figure is zero (nothing measured: no meaningful
/// ratio).
pub fn ratio(hearth: f64, peer: f64) -> Option<f64> {
    (peer > 0.0 && hearth > 0.0 && hearth.is_finite() && peer.is_finite()).then(|| hearth / peer)
}

fn fmt_ratio(r: Option<f64>) -> String {
    // Small ratios keep two significant digits instead of rounding to 0.00.
    r.map_or_else(
        || "n/a".into(),
        |r| {
            if r >= 0.1 {
                format!("{r:.2}×")
            } else if r >= 0.01 {
                format!("{r:.3}×")
            } else {
                format!("{r:.4}×")
            }
        },
    )
}

/// The summary's stamp lines: date, machine, kernel, commit and command.
pub fn stamp(out: &mut String, meta: &RunMeta) {
    let m = &meta.machine;
    let _ = writeln!(
        out,
        "- Date (UTC): {}\n- Machine: {} — {} vCPU, {}, {} MiB RAM, load average at start {}\n\
         - Kernel: {}\n- Git: {}{}\n- Command: `{}`\n",
        meta.date_utc,
        m.hostname,
        m.nproc,
        m.cpu_model,
        m.mem_total_kib / 1024,
        m.loadavg,
        m.kernel,
        meta.git.commit,
        if meta.git.dirty { " (dirty tree)" } else { "" },
        meta.command_line
    );
}

fn failures(out: &mut String, failures: &[Failure]) {
    if failures.is_empty() {
        return;
    }
    out.push_str("\n## Targets not measured\n\n");
    for f in failures {
        let _ = writeln!(out, "- **{}**: {}", f.target, f.error.replace('\n', " "));
    }
}

/// The pingpong summary.
pub fn pingpong(meta: &RunMeta, run: &PingpongRun) -> String {
    let p = &run.params;
    let mut out = String::new();
    let _ = writeln!(out, "# pingpong — {}\n", meta.date_utc);
    stamp(&mut out, meta);
    let _ = writeln!(
        out,
        "Load: {} connections, **{} req/s offered in total** (open loop: request *k* is due at \
         start + k/rate on connection k mod {}, one request in flight per connection), {}-byte \
         requests echoed back. Latency runs from each request's *scheduled* send time to the \
         end of its echo, so coordinated omission is accounted for: a request queued behind a \
         slow answer is charged its wait. Warm-up {} s, measured window {} s. Server pinned to \
         core {}, load generator (epoll, one thread, busy-polling within {} µs of a due time) to \
         core {}, both at nice {}. CPU is the server's schedstat run time over the window \
         divided by the answers received in it.\n",
        p.conns,
        p.offered_rate,
        p.conns,
        p.request_bytes,
        p.warmup_s,
        p.duration_s,
        p.server_core,
        p.client_spin_us,
        p.client_core,
        p.nice
    );
    out.push_str(
        "| target | offered req/s | achieved req/s | CPU µs/req | server CPU | p50 µs | p90 µs \
         | p99 µs | p99.9 µs | max µs | errors |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &run.results {
        let l = &r.latency;
        // No answered request in the window: percentiles would read as a misleading 0.
        let lat = |v: f64| {
            if l.count == 0 {
                "—".to_string()
            } else {
                format!("{v:.1}")
            }
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.2} | {:.1} % | {} | {} | {} | {} | {} | {} |",
            r.target,
            p.offered_rate,
            r.achieved_rate,
            r.cpu_us_per_req,
            r.server_cpu_util * 100.0,
            lat(l.p50_us),
            lat(l.p90_us),
            lat(l.p99_us),
            lat(l.p999_us),
            lat(l.max_us),
            r.error_total
        );
    }
    if let Some(h) = run.results.iter().find(|r| r.target == Target::Hearth) {
        out.push_str(
            "\n## Hearth ÷ peer\n\nBelow 1× Hearth uses less CPU or answers faster.\n\n\
             | peer | CPU µs/req | p50 | p99 | p99.9 | achieved rate |\n\
             |---|---:|---:|---:|---:|---:|\n",
        );
        for r in run.results.iter().filter(|r| r.target != Target::Hearth) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                r.target,
                fmt_ratio(ratio(h.cpu_us_per_req, r.cpu_us_per_req)),
                fmt_ratio(ratio(h.latency.p50_us, r.latency.p50_us)),
                fmt_ratio(ratio(h.latency.p99_us, r.latency.p99_us)),
                fmt_ratio(ratio(h.latency.p999_us, r.latency.p999_us)),
                fmt_ratio(ratio(h.achieved_rate, r.achieved_rate)),
            );
        }
    } else {
        out.push_str("\nNo Hearth result in this run, so no ratios.\n");
    }
    out.push_str(
        "\n## Load generator check\n\nThe client busy-polls near due times, so at high rates its \
         CPU reads close to 100 % by design; its dispatch lag (how late it sent requests that \
         were not waiting behind an answer) shows whether it kept to the schedule.\n\n\
         | target | client CPU | dispatch lag p99 µs | dispatch lag max µs | clean exit |\n\
         |---|---:|---:|---:|---|\n",
    );
    for r in &run.results {
        let _ = writeln!(
            out,
            "| {} | {:.1} % | {:.1} | {:.1} | {} |",
            r.target,
            r.client_cpu_util * 100.0,
            r.dispatch_lag_p99_us,
            r.dispatch_lag_max_us,
            if r.clean_exit { "yes" } else { "no" }
        );
    }
    failures(&mut out, &run.failures);
    out
}

/// The idle-conns summary.
pub fn idle(meta: &RunMeta, run: &IdleRun) -> String {
    let p = &run.params;
    let mut out = String::new();
    let _ = writeln!(out, "# idle-conns — {}\n", meta.date_utc);
    stamp(&mut out, meta);
    let _ = writeln!(
        out,
        "Load: {} idle TCP connections requested ({} per client process, loopback source \
         addresses from 127.0.0.2), each confirmed by a one-byte echo, then left idle. Server \
         pinned to core {} at nice {}; {} s settle before each reading. **RSS per connection** is the \
         server's VmRSS growth (user space only) divided by the open connections. Kernel \
         figures are system-wide deltas divided by the open connections and cover **both \
         ends** of each loopback connection; slab is noisy (other processes).\n",
        p.conns, p.conns_per_client, p.server_core, p.nice, p.settle_s
    );
    out.push_str(
        "| target | open | failed | RSS before MiB | RSS after MiB | RSS B/conn | kernel sock \
         buffers B/conn | kernel slab B/conn | server fds after |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &run.results {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {} |",
            r.target,
            r.conns_open,
            r.conns_failed,
            r.before.rss_kib as f64 / 1024.0,
            r.after.rss_kib as f64 / 1024.0,
            r.rss_bytes_per_conn,
            r.kernel_sockbuf_bytes_per_conn,
            r.kernel_slab_bytes_per_conn,
            r.after.fds
        );
    }
    if let Some(h) = run.results.iter().find(|r| r.target == Target::Hearth) {
        out.push_str(
            "\n## Hearth ÷ peer\n\nBelow 1× Hearth holds less memory per idle connection.\n\n\
             | peer | RSS B/conn | RSS after |\n|---|---:|---:|\n",
        );
        for r in run.results.iter().filter(|r| r.target != Target::Hearth) {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                r.target,
                fmt_ratio(ratio(h.rss_bytes_per_conn, r.rss_bytes_per_conn)),
                fmt_ratio(ratio(h.after.rss_kib as f64, r.after.rss_kib as f64)),
            );
        }
    } else {
        out.push_str("\nNo Hearth result in this run, so no ratios.\n");
    }
    failures(&mut out, &run.failures);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_needs_both_figures() {
        assert_eq!(ratio(1.0, 4.0), Some(0.25));
        assert_eq!(ratio(0.0, 4.0), None);
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(fmt_ratio(ratio(3.0, 2.0)), "1.50×");
        assert_eq!(fmt_ratio(None), "n/a");
        assert_eq!(fmt_ratio(ratio(38.9, 12_304.4)), "0.0032×");
        assert_eq!(fmt_ratio(ratio(1.0, 25.0)), "0.040×");
    }
}
