//! gw-fanout offline: flags and their checks, the message content and its fast parser on the
//! exact frame shapes Hearth and Nchan deliver, loss and last-delivery bookkeeping, and the
//! report (tables, ratios, targets hit or missed, stamps). No server is started.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use bench::cli::{Cli, Command};
use bench::gateway::fanout::proto::{
    CONTENT_MARKER, FANOUT_INTENTS, HEARTH_CONFIG_TOML, Receipts, content, identify_payload, lost,
    merge_receipts, message_body, messages_path, nchan_body, parse_event,
};
use bench::gateway::fanout::{
    FanoutParams, FanoutResult, FanoutRun, GwFanoutArgs, StepInfo, TargetRun, report, validate,
};
use bench::gateway::target::{GwFailure, GwTarget};
use bench::latency::LatencySummary;
use bench::machine::{GitInfo, Machine, RunMeta};
use clap::Parser;
use hdrhistogram::Histogram;

fn parse(extra: &[&str]) -> GwFanoutArgs {
    let mut argv = vec!["hearth-bench", "gw-fanout"];
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv).unwrap().command {
        Command::GwFanout(a) => a,
        other => panic!("expected gw-fanout, got {other:?}"),
    }
}

#[test]
fn defaults_are_the_issue_5_load() {
    let a = parse(&[]);
    assert_eq!(a.members, [1000, 5000, 10_000]);
    assert_eq!(a.rates, [10.0, 50.0]);
    assert_eq!(a.duration_s, 20);
    assert_eq!(a.common.shards, 1);
    assert_eq!((a.common.server_core, a.common.client_core), (0, 1));
    assert_eq!(a.common.targets, [GwTarget::Hearth, GwTarget::Nchan]);
    validate(&a).unwrap();
    let a = parse(&[
        "--members",
        "10,20",
        "--rates",
        "5",
        "--nice",
        "-19",
        "--note",
        "busy",
    ]);
    assert_eq!(
        (a.members.clone(), a.rates.clone()),
        (vec![10, 20], vec![5.0])
    );
    assert_eq!(
        (a.common.nice, a.note.clone()),
        (-19, vec!["busy".to_string()])
    );
    validate(&a).unwrap();
}

#[test]
fn impossible_loads_are_refused() {
    for bad in [
        &["--members", "5000,1000"][..],
        &["--members", "1000,1000"],
        &["--members", "0"],
        &["--members", "30000"],
        &["--rates", "0"],
        &["--rates=-5"],
        &["--duration-s", "0"],
        &["--content-bytes", "10"],
        &["--content-bytes", "2001"],
        &["--inflight", "0"],
        &["--ring-entries", "1000"],
        &["--ring-entries", "1024", "--hearth-arg=--log-level=info"],
    ] {
        let a = parse(bad);
        assert!(validate(&a).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn hearth_and_nchan_frames_parse_the_same() {
    let c = content(1234, 5_000_000_000, 64);
    assert_eq!(c.len(), 64);
    assert!(c.starts_with(CONTENT_MARKER));
    // Hearth: per-recipient prefix, then the shared tail with the message object.
    let hearth = format!(
        r#"{{"op":0,"s":17,"t":"MESSAGE_CREATE","d":{{"type":0,"tts":false,"timestamp":"2026-11-23T12:00:00.000000+00:00","pinned":false,"nonce":null,"mentions":[],"member":{{"roles":[]}},"id":"1","flags":0,"embeds":[],"edited_timestamp":null,"content":"{c}","components":[],"channel_id":"2","author":{{"username":"fanout-owner","id":"3"}},"attachments":[],"guild_id":"4"}}}}"#
    );
    let e = parse_event(hearth.as_bytes()).unwrap();
    assert_eq!((e.k, e.ts_ns, e.seq), (1234, 5_000_000_000, Some(17)));
    let template: serde_json::Value = serde_json::from_str(&hearth).unwrap();
    let nchan = nchan_body(&template["d"], &c);
    let e = parse_event(nchan.as_bytes()).unwrap();
    assert_eq!((e.k, e.ts_ns), (1234, 5_000_000_000));
    // Same bytes but for the sequence number: the frames are the same size.
    assert_eq!(nchan.len() + 1, hearth.len());
    assert_eq!(parse_event(br#"{"op":0,"s":1,"t":"READY","d":{}}"#), None);
}

#[test]
fn request_bodies_and_identify() {
    let b: serde_json::Value = serde_json::from_str(&message_body("hi \"there\"")).unwrap();
    assert_eq!(b["content"], "hi \"there\"");
    assert_eq!(messages_path(42), "/api/v10/channels/42/messages");
    let id: serde_json::Value = serde_json::from_slice(&identify_payload("tok")).unwrap();
    assert_eq!(id["op"], 2);
    assert_eq!(id["d"]["intents"], 33_281);
    assert_eq!(FANOUT_INTENTS, 1 | 512 | 32_768);
    let cfg: String = HEARTH_CONFIG_TOML
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(cfg, "[limits]\nrest_rate_limits = false");
}

#[test]
fn last_delivery_and_loss_over_threads() {
    // Two threads, three messages sent at 1000, 2000, 3000 ns, two sessions per thread.
    let mut t1 = vec![Receipts::default(); 3];
    let mut t2 = vec![Receipts::default(); 3];
    for (k, ts) in [1000u64, 2000, 3000].into_iter().enumerate() {
        t1[k].record(ts, ts + 100);
        t1[k].record(ts, ts + 150);
        t2[k].record(ts, ts + 400);
        if k != 2 {
            t2[k].record(ts, ts + 300);
        }
    }
    let mut all = Vec::new();
    merge_receipts(&mut all, &t1);
    merge_receipts(&mut all, &t2);
    let last: Vec<u64> = all.iter().filter_map(Receipts::to_last_ns).collect();
    assert_eq!(last, [400, 400, 400]);
    assert_eq!(all[0].first_rx_ns, 1100);
    assert_eq!(lost(&all, 3, 4), 1);
}

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
            dirty: false,
        },
        command_line: "hearth-bench gw-fanout".into(),
        date_utc: "2026-11-23T12:00:00Z".into(),
        stamp: "20261123T120000Z".into(),
    }
}

fn lat(ms: f64) -> Option<LatencySummary> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    h.record((ms * 1e6) as u64).unwrap();
    Some(LatencySummary::from_ns(&h))
}

fn result(target: GwTarget, members: u32, rate: f64, per_cpu: f64, p99_ms: f64) -> FanoutResult {
    let messages = (rate * 20.0) as u64;
    FanoutResult {
        target,
        members,
        rate,
        sessions: u64::from(members),
        messages,
        send_rate: rate,
        expected_deliveries: u64::from(members) * messages,
        deliveries: u64::from(members) * messages,
        lost: 0,
        duplicates: 0,
        gaps: 0,
        seq_errors: 0,
        out_of_phase: 0,
        drained: true,
        window_s: 20.0,
        server_cpu_s: 1.0,
        server_cpu_schedstat_s: 1.0,
        deliveries_per_cpu_s: per_cpu,
        deliveries_per_s_wall: f64::from(members) * rate,
        server_cpu_util: 0.05,
        client_cpu_util: 0.2,
        client_cpu_us_per_delivery: 1.5,
        client_busy_util: 0.15,
        latency_last: lat(p99_ms),
        latency_first: lat(1.0),
        latency_each: lat(p99_ms / 2.0),
        send_ack: lat(2.0),
        send_lag: lat(0.1),
        frame_bytes_min: 700,
        frame_bytes_max: 701,
    }
}

fn target_run(target: GwTarget, results: Vec<FanoutResult>) -> TargetRun {
    TargetRun {
        target,
        steps: vec![StepInfo {
            members: 10_000,
            setup_s: 5.0,
            connect_s: 3.0,
            live: 10_000,
            failed: 0,
            first_error: None,
            warmup_messages: 5,
            warmup_lost: 0,
        }],
        results,
        closed_after_ready: BTreeMap::new(),
        unexpected: BTreeMap::new(),
        clean_exit: true,
    }
}

fn sample_run() -> FanoutRun {
    FanoutRun {
        params: FanoutParams {
            members: vec![10_000],
            rates: vec![50.0],
            duration_s: 20,
            warmup_messages: 5,
            content_bytes: 64,
            drain_s: 15,
            shards: 1,
            server_core: 0,
            client_core: 1,
            nice: -19,
            sessions_per_thread: 10_000,
            inflight: 256,
            intents: FANOUT_INTENTS,
            client_spin_us: 500,
            ring_entries_override: Some(16_384),
            hearth_args: vec!["--profile=bench/hearth-profile.toml".into()],
            rustc_at_start: 2,
            rustc_at_end: 0,
            notes: vec!["waited 600 s for rustc".into()],
        },
        targets: vec![
            target_run(
                GwTarget::Hearth,
                vec![result(GwTarget::Hearth, 10_000, 50.0, 2_000_000.0, 30.0)],
            ),
            target_run(
                GwTarget::Nchan,
                vec![result(GwTarget::Nchan, 10_000, 50.0, 400_000.0, 60.0)],
            ),
        ],
        failures: vec![],
    }
}

#[test]
fn summary_has_results_ratios_targets_and_notes() {
    let md = report::markdown(&meta(), &sample_run());
    assert!(md.starts_with("# gw-fanout — 2026-11-23T12:00:00Z"));
    assert!(md.contains("Command: `hearth-bench gw-fanout`"));
    assert!(
        md.contains("| hearth | 10000 | 50 | 10000 | 1000 | 10000000 | 0 | 2000000 |"),
        "{md}"
    );
    // Hearth ÷ Nchan: 5× per CPU-second, half the p99 to last delivery.
    assert!(
        md.contains("| 10000 | 50 | 5.00× | 1.00× | 0.50× | 0.50× |"),
        "{md}"
    );
    assert!(
        md.contains("10000 members @ 50 msg/s: 2000000 → **met**"),
        "{md}"
    );
    assert!(
        md.contains("at 10000 members @ 50 msg/s: 30.0 ms → **met**"),
        "{md}"
    );
    assert!(md.contains("msg/s: 5.00× → **missed**"), "{md}");
    assert!(md.contains("2 at the start, 0 at the end"));
    assert!(md.contains("- waited 600 s for rustc"));
    assert!(md.contains("`ring_entries` overridden to 16384 (completion queue 32768)"));
    assert!(!md.contains("Flags:"), "{md}");
}

#[test]
fn saturation_and_shortfalls_are_flagged() {
    let mut run = sample_run();
    let r = &mut run.targets[0].results[0];
    r.server_cpu_util = 0.97;
    r.send_rate = 12.5;
    r.messages = 250;
    let md = report::markdown(&meta(), &run);
    assert!(md.contains("- hearth 10000 members @ 50 msg/s: server core saturated (97 %); sent 12.5 msg/s of 50 asked (250 messages)"), "{md}");
}

#[test]
fn a_failed_target_is_listed_and_ratios_say_so() {
    let mut run = sample_run();
    run.targets.truncate(1);
    run.failures.push(GwFailure {
        target: GwTarget::Nchan,
        error: "nginx not found".into(),
    });
    let md = report::markdown(&meta(), &run);
    assert!(md.contains("no ratios"));
    assert!(md.contains("- **nchan**: nginx not found"));
}

#[test]
fn plots_are_stamped() {
    let svgs = report::svgs(&meta(), &sample_run());
    let names: Vec<&str> = svgs.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "deliveries-per-cpu-s.svg",
            "p99-to-last-ms.svg",
            "latency-to-last.svg",
            "latency-to-each.svg"
        ]
    );
    for (name, svg) in &svgs {
        assert!(svg.starts_with("<svg"), "{name}");
        assert!(svg.contains("$ hearth-bench gw-fanout"), "{name}");
        assert!(svg.contains("box | 2 vCPU"), "{name}");
    }
    assert_eq!(svgs[2].1.matches("<polyline").count(), 2);
}
