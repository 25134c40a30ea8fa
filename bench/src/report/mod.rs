//! Writes a run's results under `--out-dir` as `<scenario>-<UTC stamp>/`: `results.json` (every
//! number), `summary.md` (tables and Hearth ÷ peer ratios) and SVG plots, all stamped with the
//! machine, git revision, command line and date.

pub mod markdown;
pub mod svg;

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::BenchError;
use crate::machine::RunMeta;
use crate::scenario::idle_conns::IdleRun;
use crate::scenario::pingpong::PingpongRun;

/// The JSON document of one run.
#[derive(Debug, Serialize)]
pub struct Document<'a, T> {
    /// Scenario name.
    pub scenario: &'a str,
    /// Provenance.
    pub meta: &'a RunMeta,
    /// Parameters, results and failures.
    pub run: &'a T,
}

/// Pretty JSON of a run.
pub fn to_json<T: Serialize>(
    scenario: &str,
    meta: &RunMeta,
    run: &T,
) -> Result<String, BenchError> {
    serde_json::to_string_pretty(&Document {
        scenario,
        meta,
        run,
    })
    .map_err(|e| BenchError::Invalid(format!("serialise results: {e}")))
}

/// The stamp an SVG plot carries: the run's one-line summary and its command.
pub fn stamp_lines(meta: &RunMeta) -> Vec<String> {
    vec![meta.one_line(), format!("$ {}", meta.command_line)]
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), BenchError> {
    let path = dir.join(name);
    fs::write(&path, text).map_err(|e| BenchError::io(format!("write {}", path.display()), e))
}

fn run_dir(out_dir: &Path, scenario: &str, meta: &RunMeta) -> Result<PathBuf, BenchError> {
    let dir = out_dir.join(format!("{scenario}-{}", meta.stamp));
    fs::create_dir_all(&dir).map_err(|e| BenchError::io(format!("create {}", dir.display()), e))?;
    Ok(dir)
}

/// The pingpong plots: latency curve, CPU per request, achieved throughput.
pub fn pingpong_svgs(meta: &RunMeta, run: &PingpongRun) -> Vec<(&'static str, String)> {
    let stamp = stamp_lines(meta);
    // A target with no answered request in the window has no curve to draw.
    let series: Vec<svg::Series> = run
        .results
        .iter()
        .filter(|r| r.latency.count > 0)
        .map(|r| svg::Series {
            name: r.target.to_string(),
            points: r
                .latency
                .curve
                .iter()
                .map(|c| (c.percentile, c.us))
                .collect(),
        })
        .collect();
    let bars = |f: fn(&crate::scenario::pingpong::PingpongResult) -> f64| -> Vec<(String, f64)> {
        run.results
            .iter()
            .map(|r| (r.target.to_string(), f(r)))
            .collect()
    };
    let p = &run.params;
    vec![
        (
            "latency.svg",
            svg::percentile_chart(
                &format!(
                    "pingpong latency, {} req/s over {} conns (from scheduled send)",
                    p.offered_rate, p.conns
                ),
                "latency µs (log)",
                &stamp,
                &series,
            ),
        ),
        (
            "cpu-per-request.svg",
            svg::bar_chart(
                &format!("server CPU per request at {} req/s", p.offered_rate),
                "CPU µs / request",
                &stamp,
                &bars(|r| r.cpu_us_per_req),
            ),
        ),
        (
            "throughput.svg",
            svg::bar_chart(
                &format!("achieved rate (offered {} req/s)", p.offered_rate),
                "requests / s",
                &stamp,
                &bars(|r| r.achieved_rate),
            ),
        ),
    ]
}

/// The idle-conns plots: user-space and kernel bytes per connection.
pub fn idle_svgs(meta: &RunMeta, run: &IdleRun) -> Vec<(&'static str, String)> {
    let stamp = stamp_lines(meta);
    let rss: Vec<(String, f64)> = run
        .results
        .iter()
        .map(|r| (r.target.to_string(), r.rss_bytes_per_conn))
        .collect();
    let kernel: Vec<(String, f64)> = run
        .results
        .iter()
        .map(|r| {
            (
                r.target.to_string(),
                r.kernel_sockbuf_bytes_per_conn + r.kernel_slab_bytes_per_conn,
            )
        })
        .collect();
    vec![
        (
            "rss-per-conn.svg",
            svg::bar_chart(
                &format!(
                    "server RSS per idle connection ({} conns)",
                    run.params.conns
                ),
                "bytes / connection",
                &stamp,
                &rss,
            ),
        ),
        (
            "kernel-per-conn.svg",
            svg::bar_chart(
                "kernel memory per connection (socket buffers + slab, both ends)",
                "bytes / connection",
                &stamp,
                &kernel,
            ),
        ),
    ]
}

/// Writes a pingpong run; returns its folder.
pub fn write_pingpong(
    out_dir: &Path,
    meta: &RunMeta,
    run: &PingpongRun,
) -> Result<PathBuf, BenchError> {
    let dir = run_dir(out_dir, "pingpong", meta)?;
    write(&dir, "results.json", &to_json("pingpong", meta, run)?)?;
    write(&dir, "summary.md", &markdown::pingpong(meta, run))?;
    for (name, text) in pingpong_svgs(meta, run) {
        write(&dir, name, &text)?;
    }
    Ok(dir)
}

/// Writes an idle-conns run; returns its folder.
pub fn write_idle(out_dir: &Path, meta: &RunMeta, run: &IdleRun) -> Result<PathBuf, BenchError> {
    let dir = run_dir(out_dir, "idle-conns", meta)?;
    write(&dir, "results.json", &to_json("idle-conns", meta, run)?)?;
    write(&dir, "summary.md", &markdown::idle(meta, run))?;
    for (name, text) in idle_svgs(meta, run) {
        write(&dir, name, &text)?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::{CurvePoint, LatencySummary};
    use crate::machine::{GitInfo, Machine};
    use crate::pingpong_client::ErrorCounts;
    use crate::procfs::CpuSource;
    use crate::scenario::Failure;
    use crate::scenario::idle_conns::{IdleParams, IdleResult, MemSample};
    use crate::scenario::pingpong::{PingpongParams, PingpongResult};
    use crate::server::Target;

    fn meta() -> RunMeta {
        RunMeta {
            machine: Machine {
                hostname: "box".into(),
                nproc: 2,
                cpu_model: "AMD EPYC".into(),
                kernel: "Linux 6.18".into(),
                mem_total_kib: 8 << 20,
                loadavg: "0.10 0.20 0.30 1/100 42".into(),
            },
            git: GitInfo {
                commit: "0123456789abcdef0123".into(),
                dirty: true,
            },
            command_line: "hearth-bench pingpong".into(),
            date_utc: "2026-11-23T12:00:00Z".into(),
            stamp: "20261123T120000Z".into(),
        }
    }

    fn latency(scale: f64) -> LatencySummary {
        let curve: Vec<CurvePoint> = crate::latency::CURVE_PERCENTILES
            .iter()
            .enumerate()
            .map(|(i, &p)| CurvePoint {
                percentile: p,
                us: scale * (20.0 + 10.0 * i as f64),
            })
            .collect();
        LatencySummary {
            count: 800_000,
            mean_us: scale * 25.0,
            p50_us: scale * 20.0,
            p90_us: scale * 40.0,
            p99_us: scale * 60.0,
            p999_us: scale * 80.0,
            p9999_us: scale * 100.0,
            max_us: scale * 110.0,
            curve,
        }
    }

    fn result(target: Target, cpu: f64, scale: f64) -> PingpongResult {
        PingpongResult {
            target,
            scheduled: 800_000,
            completed: 800_000,
            achieved_rate: 40_000.0,
            window_s: 20.0,
            server_cpu_us: cpu * 800_000.0,
            server_cpu_source: CpuSource::Schedstat,
            cpu_us_per_req: cpu,
            server_cpu_util: cpu * 0.04,
            client_cpu_util: 0.3,
            dispatch_lag_p99_us: 5.0,
            dispatch_lag_max_us: 50.0,
            latency: latency(scale),
            errors: ErrorCounts::default(),
            error_total: 0,
            clean_exit: true,
        }
    }

    fn pingpong_run() -> PingpongRun {
        PingpongRun {
            params: PingpongParams {
                conns: 1000,
                offered_rate: 40_000,
                request_bytes: 64,
                warmup_s: 5,
                duration_s: 20,
                server_core: 0,
                client_core: 1,
                nice: 0,
                client_spin_us: 200,
            },
            results: vec![
                result(Target::Hearth, 1.5, 1.0),
                result(Target::Monoio, 3.0, 2.0),
                result(Target::Glommio, 6.0, 4.0),
            ],
            failures: vec![],
        }
    }

    #[test]
    fn pingpong_json_has_meta_params_and_percentiles() {
        let run = pingpong_run();
        let v: serde_json::Value =
            serde_json::from_str(&to_json("pingpong", &meta(), &run).unwrap()).unwrap();
        assert_eq!(v["scenario"], "pingpong");
        assert_eq!(v["meta"]["machine"]["nproc"], 2);
        assert_eq!(v["meta"]["git"]["dirty"], true);
        assert_eq!(v["meta"]["command_line"], "hearth-bench pingpong");
        assert_eq!(v["run"]["params"]["offered_rate"], 40_000);
        let results = v["run"]["results"].as_array().unwrap();
        assert_eq!(results.len(), 3);
        assert_eq!(results[0]["target"], "hearth");
        assert_eq!(results[1]["latency"]["p99_us"], 120.0);
        assert_eq!(results[2]["cpu_us_per_req"], 6.0);
        assert_eq!(results[0]["server_cpu_source"], "schedstat");
        assert_eq!(
            results[0]["latency"]["curve"].as_array().unwrap().len(),
            crate::latency::CURVE_PERCENTILES.len()
        );
        assert_eq!(results[0]["errors"]["unanswered"], 0);
    }

    #[test]
    fn pingpong_markdown_has_the_table_and_ratios() {
        let md = markdown::pingpong(&meta(), &pingpong_run());
        assert!(md.contains("| target | offered req/s | achieved req/s | CPU µs/req"));
        assert!(
            md.contains(
                "| hearth | 40000 | 40000 | 1.50 | 6.0 % | 20.0 | 40.0 | 60.0 | 80.0 | 110.0 | 0 |"
            ),
            "{md}"
        );
        // Hearth ÷ monoio: CPU 1.5/3 and p99 60/120; ÷ glommio: 1.5/6 and 60/240.
        assert!(
            md.contains("| monoio | 0.50× | 0.50× | 0.50× | 0.50× | 1.00× |"),
            "{md}"
        );
        assert!(
            md.contains("| glommio | 0.25× | 0.25× | 0.25× | 0.25× | 1.00× |"),
            "{md}"
        );
        assert!(md.contains("coordinated omission"));
        assert!(md.contains("0123456789abcdef0123 (dirty tree)"));
    }

    #[test]
    fn markdown_without_hearth_says_no_ratios_and_lists_failures() {
        let mut run = pingpong_run();
        run.results.remove(0);
        run.failures.push(Failure {
            target: Target::Hearth,
            error: "binary not found".into(),
        });
        let md = markdown::pingpong(&meta(), &run);
        assert!(md.contains("no ratios"));
        assert!(md.contains("- **hearth**: binary not found"));
    }

    #[test]
    fn pingpong_svgs_are_stamped_and_have_one_polyline_per_target() {
        let svgs = pingpong_svgs(&meta(), &pingpong_run());
        let names: Vec<&str> = svgs.iter().map(|s| s.0).collect();
        assert_eq!(
            names,
            ["latency.svg", "cpu-per-request.svg", "throughput.svg"]
        );
        for (name, svg) in &svgs {
            assert!(svg.starts_with("<svg"), "{name}");
            assert!(svg.trim_end().ends_with("</svg>"), "{name}");
            assert!(svg.contains("box | 2 vCPU | AMD EPYC"), "{name}");
            assert!(svg.contains("load 0.10 0.20 0.30 |"), "{name}");
            assert!(svg.contains("$ hearth-bench pingpong"), "{name}");
        }
        let latency = &svgs[0].1;
        assert_eq!(latency.matches("<polyline").count(), 3);
        assert_eq!(latency.matches(" points=\"").count(), 3);

        let mut run = pingpong_run();
        run.results[0].latency.count = 0;
        let svgs = pingpong_svgs(&meta(), &run);
        assert_eq!(svgs[0].1.matches("<polyline").count(), 2);
    }

    #[test]
    fn idle_report_ratios_and_files() {
        let sample = |rss_kib, fds| MemSample {
            rss_kib,
            fds,
            tcp_mem_pages: 0,
            slab_kib: 0,
        };
        let res = |target, after_kib| IdleResult {
            target,
            conns_open: 19_000,
            conns_failed: 0,
            client_procs: 4,
            open_s: 3.0,
            before: sample(2_000, 10),
            after: sample(after_kib, 19_010),
            rss_bytes_per_conn: (after_kib - 2_000) as f64 * 1024.0 / 19_000.0,
            kernel_sockbuf_bytes_per_conn: 0.0,
            kernel_slab_bytes_per_conn: 4_000.0,
            clean_exit: true,
        };
        let run = IdleRun {
            params: IdleParams {
                conns: 19_000,
                conns_per_client: 5_000,
                settle_s: 3,
                server_core: 0,
                nice: 0,
            },
            results: vec![res(Target::Hearth, 21_000), res(Target::Monoio, 40_000)],
            failures: vec![],
        };
        let md = markdown::idle(&meta(), &run);
        assert!(md.contains("| hearth | 19000 | 0 |"));
        assert!(md.contains("| monoio | 0.50× |"), "{md}");
        let dir = std::env::temp_dir().join(format!("hearth-bench-report-{}", std::process::id()));
        let out = write_idle(&dir, &meta(), &run).unwrap();
        assert!(out.ends_with("idle-conns-20261123T120000Z"));
        for f in [
            "results.json",
            "summary.md",
            "rss-per-conn.svg",
            "kernel-per-conn.svg",
        ] {
            assert!(out.join(f).is_file(), "{f}");
        }
        let v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
        assert_eq!(v["run"]["results"][1]["after"]["rss_kib"], 40_000);
        fs::remove_dir_all(&dir).unwrap();
    }
}
