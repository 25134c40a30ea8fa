//! voice-forward offline: configuration parsing and limits, the payload's send-time stamp as a
//! receiver reads it after AEAD decryption with the SFU's own cipher, and the report's tables
//! and target lines on a hand-made run (no servers, no load).

use bench::voice::payload::{build_packet, opus_frame, read_stamp};
use bench::voice::report::markdown;
use bench::voice::{Config, VoiceParams, VoiceResult, VoiceRun, VoiceTarget};
use sfu::crypto::{Mode, TransportCipher};

#[test]
fn configs_parse_and_respect_the_limits() {
    let c: Config = "10x100x2".parse().expect("valid");
    assert_eq!((c.rooms, c.participants, c.speakers), (10, 100, 2));
    assert_eq!(c.total_participants(), 1000);
    assert_eq!(c.offered_forwards_per_s(), 20.0 * 99.0 * 50.0);
    assert_eq!(c.to_string(), "10x100x2");
    for bad in [
        "10x101x2",
        "10x5x6",
        "0x10x1",
        "10x1x1",
        "100x100x1",
        "10x10",
        "axbxc",
    ] {
        assert!(bad.parse::<Config>().is_err(), "{bad} accepted");
    }
}

#[test]
fn the_stamp_survives_the_sfu_cipher_and_opus_stays_intact() {
    let key = [7u8; 32];
    let opus = [0x78u8; 160];
    for mode in [Mode::Aes256GcmRtpSize, Mode::XChaCha20Poly1305RtpSize] {
        let cipher = TransportCipher::new(mode, &key);
        let mut plain = [0u8; 512];
        let n = build_packet(&mut plain, 9, 42, &opus, 1_234_567).expect("fits");
        let mut sealed = [0u8; 512];
        let m = cipher
            .seal_into(5, &plain[..12], &plain[12..n], &mut sealed)
            .expect("seal");
        let pkt = &mut sealed[..m];
        let h = sfu::rtp::parse(pkt).expect("rtp");
        assert!(h.padding, "the P bit tells receivers to strip the stamp");
        let o = cipher.open_in_place(pkt, h.aad_len()).expect("open");
        let pt = &pkt[12..12 + o.plaintext_len];
        assert_eq!(read_stamp(pt), Some(1_234_567));
        assert_eq!(opus_frame(pt), Some(&opus[..]));
    }
}

fn result(target: VoiceTarget, per_cpu: f64, p99: f64) -> VoiceResult {
    let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    h.record((p99 * 1000.0) as u64).expect("record");
    VoiceResult {
        target,
        config: "2x10x1".parse().expect("config"),
        participants: 20,
        setup_s: 1.0,
        window_s: 10.0,
        sent: 1000,
        expected: 9000,
        received: 9000,
        lost: 0,
        loss: 0.0,
        unreadable: 0,
        outside_window: 0,
        send_errors: 0,
        offered_per_s: 900.0,
        forwarded_per_s: 900.0,
        server_cpu_s: 9000.0 / per_cpu,
        server_cpu_stat_s: 9000.0 / per_cpu,
        server_cpu_util: 0.5,
        forwarded_per_cpu_s: per_cpu,
        server_core_busy: 0.6,
        forwarded_per_core_busy_s: per_cpu * 0.8,
        client_cpu_util: 0.95,
        latency: Some(bench::latency::LatencySummary::from_ns(&h)),
        send_lag: None,
        keeper: None,
        server_threads: 0,
        server_counters: Default::default(),
    }
}

#[test]
fn hearth_voice_counters_are_summed_over_shards() {
    let text = "# HELP x\nhearth_voice_forwarded_total{shard=\"0\"} 10\n\
                hearth_voice_forwarded_total{shard=\"1\"} 5\nhearth_other 3\nbad\n";
    let c = bench::voice::voice_counters(text);
    assert_eq!(c.get("hearth_voice_forwarded_total"), Some(&15));
    assert_eq!(c.len(), 1);
}

#[test]
fn core_jiffies_count_softirq_as_busy() {
    let stat = "cpu  1 2 3 4 5 6 7 8 0 0\ncpu0 10 0 5 80 5 1 4 0 0 0\ncpu1 1 1 1 1 1 1 1 1 0 0\n";
    assert_eq!(bench::voice::parse_core_jiffies(stat, 0), Some((20, 105)));
    assert_eq!(bench::voice::parse_core_jiffies(stat, 1), Some((6, 8)));
    assert_eq!(bench::voice::parse_core_jiffies(stat, 2), None);
}

#[test]
fn report_gives_ratios_targets_and_flags() {
    let run = VoiceRun {
        params: VoiceParams {
            configs: vec!["2x10x1".parse().expect("config")],
            mode: "aead_aes256_gcm_rtpsize".into(),
            janus_srtp_suite: 80,
            warmup_s: 1,
            duration_s: 10,
            drain_ms: 500,
            shards: 1,
            server_core: 0,
            client_core: 1,
            nice: 0,
            hearth_args: vec![],
            opus_frame_bytes: vec![160, 200],
            rustc_at_start: 0,
            rustc_at_end: 0,
            notes: vec!["a note".into()],
        },
        results: vec![
            result(VoiceTarget::Hearth, 1_200_000.0, 150.0),
            result(VoiceTarget::Janus, 200_000.0, 400.0),
        ],
        failures: vec![],
    };
    let md = markdown(&bench::machine::RunMeta::collect(), &run);
    assert!(md.contains("| 2x10x1 | 6.00× |"), "{md}");
    assert!(md.contains("best 1200000 → met"), "{md}");
    assert!(md.contains("lowest ratio 6.00× → met"), "{md}");
    assert!(
        md.contains("largest configuration served (loss ≤ 1 %) 20 → **missed**"),
        "{md}"
    );
    assert!(md.contains("load loop CPU 95 %"), "{md}");
    assert!(md.contains("a note"), "{md}");
}
