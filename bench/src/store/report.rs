//! Writes a store run as `<out_dir>/store-<UTC stamp>/`: `results.json`, `summary.md` (tables,
//! Hearth ÷ RocksDB ratios, the targets) and SVG plots, all stamped like the other
//! scenarios' reports (machine, git revision, command line, date).

use std::fmt::Write;
use std::fs;
use std::path::{Path, PathBuf};

use crate::BenchError;
use crate::latency::LatencySummary;
use crate::machine::RunMeta;
use crate::report::markdown::{ratio, stamp};
use crate::report::svg::{self, Series};
use crate::report::{stamp_lines, to_json};

use super::limits::RATE_SUSTAINED_FRACTION;
use super::{EngineResult, StoreRun};

/// Target of issue 4: Hearth's durable appends/s at least this multiple of RocksDB's.
pub const TARGET_APPEND_RATIO: f64 = 2.0;
/// Target of issue 4: append p99, ms.
pub const TARGET_APPEND_P99_MS: f64 = 2.0;
/// Target of issue 4: latest-50 p99 hot, ms.
pub const TARGET_LATEST_P99_MS: f64 = 1.0;

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".into(), |r| format!("{r:.2}×"))
}

fn ms(us: f64) -> String {
    format!("{:.3}", us / 1000.0)
}

fn find<'a>(run: &'a StoreRun, engine: &str) -> Option<&'a EngineResult> {
    run.results.iter().find(|r| r.engine == engine)
}

/// The Markdown summary.
pub fn markdown(meta: &RunMeta, run: &StoreRun) -> String {
    let p = &run.params;
    let mut out = String::new();
    let _ = writeln!(out, "# store — {}\n", meta.date_utc);
    stamp(&mut out, meta);
    let _ = writeln!(
        out,
        "Workload: {} messages over {} channels, ids spanning {} days (10-day buckets), content \
         200–1000 bytes of word-like text, mean value {:.0} bytes (msgstore's encoding; RocksDB \
         keys are 20 bytes: channel, bucket, id), {:.1} MB of keys + values. **{} appends \
         outstanding** for both stores; every append is durable (fdatasync'd) before it is \
         acknowledged, both stores group concurrent appends into one log write + one \
         fdatasync. Everything runs on **core {}** (nice {}). Same memtable ({} MiB), block cache \
         ({} MiB), LZ4 blocks of 16 KiB for both.\n",
        p.messages,
        p.channels,
        p.history_days,
        p.value_bytes_mean,
        p.logical_bytes as f64 / 1e6,
        p.concurrency,
        p.core,
        p.nice,
        p.memtable_mib,
        p.cache_mib
    );

    if !run.device.is_empty() {
        out.push_str(
            "## The disk's own durable write\n\nBefore the stores: one 4 KiB write made durable \
             at a time on an already-written file in the data directory (no store can \
             acknowledge a durable append faster; this p99 bounds any append p99).\n\n\
             | method | writes | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |\n\
             |---|---:|---:|---:|---:|---:|---:|\n",
        );
        for d in &run.device {
            let l = &d.latency;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                d.method,
                l.count,
                ms(l.p50_us),
                ms(l.p90_us),
                ms(l.p99_us),
                ms(l.p999_us),
                ms(l.max_us)
            );
        }
        out.push('\n');
    }

    out.push_str(
        "## Durable appends\n\n\
         Log syncs: Hearth counts its group commits (one durable write each); RocksDB's figure comes from its \
         `rocksdb.dbstats` (rounded to thousands there).\n\n\
         | store | appends | appends/s | CPU µs/append | log syncs | appends/sync | p50 ms | \
         p90 ms | p99 ms | p99.9 ms | max ms | errors |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &run.results {
        let l = &r.append_latency;
        let groups = r.commit_groups.map_or("n/a".into(), |g| g.to_string());
        let per = r
            .commit_groups
            .filter(|g| *g > 0)
            .map_or("n/a".into(), |g| {
                format!("{:.1}", r.appends as f64 / g as f64)
            });
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.engine,
            r.appends,
            r.appends_per_s,
            r.cpu_us_per_append,
            groups,
            per,
            ms(l.p50_us),
            ms(l.p90_us),
            ms(l.p99_us),
            ms(l.p999_us),
            ms(l.max_us),
            r.append_errors
        );
    }

    if run.results.iter().any(|r| !r.rate_phases.is_empty()) {
        let _ = writeln!(
            out,
            "\n## Appends at fixed offered rates\n\nThe table above is the max-throughput phase \
             (first {} messages, closed loop: {} appends always outstanding, so its latency is \
             mostly queueing: mean latency = outstanding ÷ throughput). Then each store gets the \
             same fixed offered rates, open loop, {:.0} s each (at most {} outstanding): append k \
             is due at start + k / rate and its latency counts **from its due time** to its \
             durable acknowledgement, so falling behind costs every delayed append. Sustained = \
             acknowledged at least {:.0} % of the offered rate.\n\n\
             | offered /s | store | achieved /s | sustained | log syncs | appends/sync | p50 ms | \
             p90 ms | p99 ms | p99.9 ms | max ms | errors |\n\
             |---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            p.max_phase_messages,
            p.concurrency,
            p.rate_phase_s,
            p.concurrency,
            RATE_SUSTAINED_FRACTION * 100.0
        );
        for rate in &p.rates {
            for r in &run.results {
                for ph in r.rate_phases.iter().filter(|ph| ph.offered_per_s == *rate) {
                    let l = &ph.latency;
                    let groups = ph.commit_groups.map_or("n/a".into(), |g| g.to_string());
                    let per = ph
                        .commit_groups
                        .filter(|g| *g > 0)
                        .map_or("n/a".into(), |g| {
                            format!("{:.1}", ph.appends as f64 / g as f64)
                        });
                    let _ = writeln!(
                        out,
                        "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        ph.offered_per_s,
                        r.engine,
                        ph.achieved_per_s,
                        if ph.sustained { "yes" } else { "**no**" },
                        groups,
                        per,
                        ms(l.p50_us),
                        ms(l.p90_us),
                        ms(l.p99_us),
                        ms(l.p999_us),
                        ms(l.max_us),
                        ph.errors
                    );
                }
            }
        }
    }

    out.push_str(
        "\n## Reads\n\nLatest-50 hot: after one warm-up pass over every channel, random \
         channels. Paging: whole histories, 50 per page with `before`. Cold: after closing, \
         dropping the page cache and reopening; each channel read for the first time.\n\n\
         | store | latest-50 hot p50 ms | hot p99 ms | cold p50 ms | cold p99 ms | paging hot \
         msgs/s | page hot p99 ms | paging cold msgs/s | page cold p99 ms | reopen ms | cache \
         dropped |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in &run.results {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.0} | {} | {:.0} | {} | {:.1} | {} |",
            r.engine,
            ms(r.latest_hot.p50_us),
            ms(r.latest_hot.p99_us),
            ms(r.latest_cold.p50_us),
            ms(r.latest_cold.p99_us),
            r.paging_hot.messages_per_s,
            ms(r.paging_hot.page_latency.p99_us),
            r.paging_cold.messages_per_s,
            ms(r.paging_cold.page_latency.p99_us),
            r.reopen_ms,
            if r.caches_dropped { "yes" } else { "no" }
        );
    }

    out.push_str(
        "\n## Space after compaction\n\nBytes allocated on disk by the store's directory (log \
         segments, manifest and RocksDB's LOG/OPTIONS included) ÷ logical bytes (keys + values \
         appended). Hearth: flush, then its time-window policy settles; RocksDB: flush + full \
         CompactRange.\n\n\
         | store | logical MB | on disk MB | space amp | table files MB | table amp | table \
         files | flush + compaction s |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &run.results {
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {:.3} | {:.1} | {:.3} | {} | {:.2} |",
            r.engine,
            r.logical_bytes as f64 / 1e6,
            r.bytes_on_disk as f64 / 1e6,
            r.space_amp,
            r.table_bytes_on_disk as f64 / 1e6,
            r.table_space_amp,
            r.files_after_compaction,
            r.compaction_s
        );
    }

    match (find(run, "hearth"), find(run, "rocksdb")) {
        (Some(h), Some(k)) => {
            out.push_str(
                "\n## Hearth ÷ RocksDB\n\n| metric | ratio | better when |\n|---|---:|---|\n",
            );
            let rows: [(&str, f64, f64, &str); 10] = [
                (
                    "durable appends/s",
                    h.appends_per_s,
                    k.appends_per_s,
                    "above 1×",
                ),
                (
                    "CPU per append",
                    h.cpu_us_per_append,
                    k.cpu_us_per_append,
                    "below 1×",
                ),
                (
                    "append p50",
                    h.append_latency.p50_us,
                    k.append_latency.p50_us,
                    "below 1×",
                ),
                (
                    "append p99",
                    h.append_latency.p99_us,
                    k.append_latency.p99_us,
                    "below 1×",
                ),
                (
                    "latest-50 hot p99",
                    h.latest_hot.p99_us,
                    k.latest_hot.p99_us,
                    "below 1×",
                ),
                (
                    "latest-50 cold p99",
                    h.latest_cold.p99_us,
                    k.latest_cold.p99_us,
                    "below 1×",
                ),
                (
                    "paging hot msgs/s",
                    h.paging_hot.messages_per_s,
                    k.paging_hot.messages_per_s,
                    "above 1×",
                ),
                (
                    "paging cold msgs/s",
                    h.paging_cold.messages_per_s,
                    k.paging_cold.messages_per_s,
                    "above 1×",
                ),
                ("space amplification", h.space_amp, k.space_amp, "below 1×"),
                ("reopen time", h.reopen_ms, k.reopen_ms, "below 1×"),
            ];
            for (name, a, b, better) in rows {
                let _ = writeln!(out, "| {name} | {} | {better} |", fmt_ratio(ratio(a, b)));
            }
            let append_ratio = ratio(h.appends_per_s, k.appends_per_s).unwrap_or(0.0);
            let p99_ms = h.append_latency.p99_us / 1000.0;
            let latest_ms = h.latest_hot.p99_us / 1000.0;
            let met = |ok: bool| if ok { "**met**" } else { "**missed**" };
            let _ = writeln!(
                out,
                "\n## Targets of issue 4 (Hearth)\n\n| target | measured | |\n|---|---:|---|\n\
                 | ≥ {TARGET_APPEND_RATIO}× RocksDB durable appends/s | {append_ratio:.2}× | {} |\n\
                 | append p99 ≤ {TARGET_APPEND_P99_MS} ms at max throughput ({} outstanding) | \
                 {p99_ms:.3} ms | {} |",
                met(append_ratio >= TARGET_APPEND_RATIO),
                p.concurrency,
                met(p99_ms <= TARGET_APPEND_P99_MS),
            );
            for ph in &h.rate_phases {
                let ms99 = ph.latency.p99_us / 1000.0;
                let _ = writeln!(
                    out,
                    "| append p99 ≤ {TARGET_APPEND_P99_MS} ms at {} appends/s offered \
                     ({:.0} % of Hearth's max{}) | {ms99:.3} ms | {} |",
                    ph.offered_per_s,
                    ph.offered_per_s as f64 * 100.0 / h.appends_per_s.max(1e-9),
                    if ph.sustained { "" } else { ", not sustained" },
                    met(ph.sustained && ms99 <= TARGET_APPEND_P99_MS),
                );
            }
            let _ = writeln!(
                out,
                "| latest-50 p99 hot ≤ {TARGET_LATEST_P99_MS} ms | {latest_ms:.3} ms | {} |",
                met(latest_ms <= TARGET_LATEST_P99_MS),
            );
        }
        _ => out.push_str("\nNot both stores measured in this run, so no ratios.\n"),
    }

    out.push_str("\n## Checks\n\n");
    for r in &run.results {
        let _ = writeln!(
            out,
            "- **{}**: {} answers disagreed with the workload (every page walk must return \
             exactly the channel's messages, every latest-50 its newest); {} threads of the \
             process were not pinned to core {} during appends.",
            r.engine, r.check_failures, r.threads_off_core, p.core
        );
    }
    out.push_str("\n## Setup\n\n");
    for r in &run.results {
        let _ = writeln!(out, "- **{}**: {}", r.engine, r.setup);
    }
    if !run.notes.is_empty() {
        out.push_str("\n## Notes\n\n");
        for n in &run.notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    if !run.failures.is_empty() {
        out.push_str("\n## Stores not measured\n\n");
        for f in &run.failures {
            let _ = writeln!(out, "- **{}**: {}", f.engine, f.error.replace('\n', " "));
        }
    }
    out
}

fn curve(name: String, l: &LatencySummary) -> Series {
    Series {
        name,
        points: l.curve.iter().map(|c| (c.percentile, c.us)).collect(),
    }
}

/// The plots: append latency, latest-50 latency (hot and cold), appends/s, space amplification.
pub fn svgs(meta: &RunMeta, run: &StoreRun) -> Vec<(&'static str, String)> {
    let stamp = stamp_lines(meta);
    let p = &run.params;
    let appends: Vec<Series> = run
        .results
        .iter()
        .filter(|r| r.append_latency.count > 0)
        .map(|r| curve(r.engine.clone(), &r.append_latency))
        .collect();
    let mut reads = Vec::new();
    for r in &run.results {
        if r.latest_hot.count > 0 {
            reads.push(curve(format!("{} hot", r.engine), &r.latest_hot));
        }
        if r.latest_cold.count > 0 {
            reads.push(curve(format!("{} cold", r.engine), &r.latest_cold));
        }
    }
    let bars = |f: fn(&EngineResult) -> f64| -> Vec<(String, f64)> {
        run.results
            .iter()
            .map(|r| (r.engine.clone(), f(r)))
            .collect()
    };
    vec![
        (
            "append-latency.svg",
            svg::percentile_chart(
                &format!(
                    "durable append latency, {} outstanding, one core",
                    p.concurrency
                ),
                "latency µs (log)",
                &stamp,
                &appends,
            ),
        ),
        (
            "latest50-latency.svg",
            svg::percentile_chart(
                "latest-50 query latency (hot: cached; cold: after drop_caches + reopen)",
                "latency µs (log)",
                &stamp,
                &reads,
            ),
        ),
        (
            "appends-per-s.svg",
            svg::bar_chart(
                &format!(
                    "durable appends/s on one core ({} outstanding)",
                    p.concurrency
                ),
                "appends / s",
                &stamp,
                &bars(|r| r.appends_per_s),
            ),
        ),
        (
            "space-amp.svg",
            svg::bar_chart(
                "space amplification after compaction (on disk / logical)",
                "bytes on disk / logical bytes",
                &stamp,
                &bars(|r| r.space_amp),
            ),
        ),
    ]
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), BenchError> {
    let path = dir.join(name);
    fs::write(&path, text).map_err(|e| BenchError::io(format!("write {}", path.display()), e))
}

/// Writes the run; returns its folder.
pub fn write_store(out_dir: &Path, meta: &RunMeta, run: &StoreRun) -> Result<PathBuf, BenchError> {
    let dir = out_dir.join(format!("store-{}", meta.stamp));
    fs::create_dir_all(&dir).map_err(|e| BenchError::io(format!("create {}", dir.display()), e))?;
    write(&dir, "results.json", &to_json("store", meta, run)?)?;
    write(&dir, "summary.md", &markdown(meta, run))?;
    for (name, text) in svgs(meta, run) {
        write(&dir, name, &text)?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::LatencySummary;
    use crate::machine::{GitInfo, Machine};
    use crate::store::{PagingResult, RatePhase, StoreParams};
    use hdrhistogram::Histogram;

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
                commit: "0123456789abcdef".into(),
                dirty: false,
            },
            command_line: "store-bench --messages 10".into(),
            date_utc: "2026-11-23T12:00:00Z".into(),
            stamp: "20261123T120000Z".into(),
        }
    }

    /// A histogram whose every percentile is `us`.
    fn flat_hist(us: u64) -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        h.record(us * 1000).unwrap();
        h
    }

    /// A latency summary whose every percentile is `us`.
    fn flat(us: u64) -> LatencySummary {
        LatencySummary::from_ns(&flat_hist(us))
    }

    fn result(engine: &str, rate: f64, p99_us: u64, amp: f64) -> EngineResult {
        let paging = PagingResult {
            channels: 2,
            pages: 10,
            messages: 500,
            seconds: 0.01,
            messages_per_s: 50_000.0,
            page_latency: flat(100),
        };
        EngineResult {
            engine: engine.into(),
            setup: format!("{engine} setup"),
            writer_threads: 1,
            appends: 1000,
            append_errors: 0,
            append_s: 1000.0 / rate,
            appends_per_s: rate,
            append_cpu_s: 0.01,
            cpu_us_per_append: 10.0,
            rate_phases: vec![RatePhase::new(
                5000,
                40_000,
                0,
                8.0,
                Some(4000),
                &flat_hist(p99_us / 2),
            )],
            commit_groups: Some(100),
            threads_off_core: 0,
            append_latency: flat(p99_us),
            compaction_s: 0.5,
            files_after_compaction: 3,
            bytes_on_disk: (amp * 1e6) as u64,
            table_bytes_on_disk: 900_000,
            logical_bytes: 1_000_000,
            space_amp: amp,
            table_space_amp: 0.9,
            latest_hot: flat(p99_us / 10),
            paging_hot: paging.clone(),
            reopen_ms: 10.0,
            caches_dropped: true,
            latest_cold: flat(p99_us),
            paging_cold: paging,
            check_failures: 0,
        }
    }

    fn run() -> StoreRun {
        StoreRun {
            params: StoreParams {
                messages: 1000,
                channels: 10,
                history_days: 120,
                concurrency: 64,
                rates: vec![5000],
                rate_phase_s: 8.0,
                max_phase_messages: 1000,
                memtable_mib: 4,
                cache_mib: 32,
                io_threads: 4,
                hot_queries: 100,
                paging_channels: 2,
                cold_queries: 5,
                core: 0,
                seed: 1,
                data_dir: "/tmp/x".into(),
                engines: vec!["hearth".into(), "rocksdb".into()],
                nice: 0,
                logical_bytes: 1_000_000,
                value_bytes_mean: 700.0,
            },
            device: vec![super::super::device::DeviceProbe {
                method: "O_DIRECT 4 KiB pwrite + fdatasync".into(),
                latency: flat(200),
            }],
            results: vec![
                result("hearth", 30_000.0, 1000, 1.2),
                result("rocksdb", 10_000.0, 4000, 1.1),
            ],
            failures: vec![],
            notes: vec!["RocksDB has assertions enabled".into()],
        }
    }

    #[test]
    fn summary_has_ratios_targets_and_notes() {
        let md = markdown(&meta(), &run());
        assert!(
            md.contains("| durable appends/s | 3.00× | above 1× |"),
            "{md}"
        );
        assert!(md.contains("| append p99 | 0.25× | below 1× |"), "{md}");
        assert!(
            md.contains("| ≥ 2× RocksDB durable appends/s | 3.00× | **met** |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| append p99 ≤ 2 ms at max throughput (64 outstanding) | 1.000 ms | **met** |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| append p99 ≤ 2 ms at 5000 appends/s offered (17 % of Hearth's max) | 0.500 ms \
                 | **met** |"
            ),
            "{md}"
        );
        assert!(
            // 2 ms recorded at 3 significant digits reads back as its bucket's top, 2.001 ms.
            md.contains("| 5000 | rocksdb | 5000 | yes | 4000 | 10.0 | 2.001 |"),
            "{md}"
        );
        assert!(
            md.contains("| latest-50 p99 hot ≤ 1 ms | 0.100 ms | **met** |"),
            "{md}"
        );
        assert!(md.contains("- RocksDB has assertions enabled"));
        assert!(
            md.contains("| O_DIRECT 4 KiB pwrite + fdatasync | 1 | 0.200 |"),
            "{md}"
        );
        assert!(
            md.contains("| hearth | 1000 | 30000 | 10.00 | 100 | 10.0 |"),
            "{md}"
        );
    }

    #[test]
    fn missed_targets_say_so_and_files_are_written() {
        let mut r = run();
        r.results[0].appends_per_s = 15_000.0;
        r.results[0].append_latency = flat(3000);
        let md = markdown(&meta(), &r);
        assert!(md.contains("| 1.50× | **missed** |"), "{md}");
        assert!(
            md.contains(
                "| append p99 ≤ 2 ms at max throughput (64 outstanding) | 3.000 ms | **missed** |"
            ),
            "{md}"
        );
        let dir = std::env::temp_dir().join(format!("store-report-{}", std::process::id()));
        let out = write_store(&dir, &meta(), &r).unwrap();
        assert!(out.ends_with("store-20261123T120000Z"));
        for f in [
            "results.json",
            "summary.md",
            "append-latency.svg",
            "latest50-latency.svg",
            "appends-per-s.svg",
            "space-amp.svg",
        ] {
            assert!(out.join(f).is_file(), "{f}");
        }
        let v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
        assert_eq!(v["scenario"], "store");
        assert_eq!(v["run"]["results"][1]["engine"], "rocksdb");
        let svg = fs::read_to_string(out.join("latest50-latency.svg")).unwrap();
        assert_eq!(
            svg.matches("<polyline").count(),
            4,
            "hot and cold per store"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
