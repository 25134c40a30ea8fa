//! The shipped config and hardware profiles load, bad ones are refused with the field named,
//! and command-line flags override the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use engine::config::{Cli, Command, Config, ConfigError, LogFormat, check_config};
use engine::profile::HardwareProfile;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hearth-config-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn config_error(text: &str) -> String {
    Config::from_toml("test.toml", text)
        .unwrap_err()
        .to_string()
}

#[test]
fn every_profile_in_hardware_profiles_validates_and_is_built_in() {
    let dir = repo_root().join("hardware-profiles");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let profile = HardwareProfile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
        assert_eq!(
            profile.name,
            stem,
            "{} names itself differently",
            path.display()
        );
        assert_eq!(
            HardwareProfile::builtin(&stem).unwrap(),
            profile,
            "built-in {stem} is stale"
        );
        seen.push(stem);
    }
    seen.sort();
    assert_eq!(seen, ["dev", "pop-1s16c", "pop-2s64c"]);
}

#[test]
fn built_in_dev_matches_dev_toml() {
    let file = HardwareProfile::load(&repo_root().join("hardware-profiles/dev.toml")).unwrap();
    assert_eq!(file, HardwareProfile::dev());
}

#[test]
fn example_config_loads_and_documents_the_defaults() {
    let path = repo_root().join("hearth.example.toml");
    let config = Config::load(&path).unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(check_config(&path).unwrap(), "ok");
}

#[test]
fn defaults_need_no_file() {
    let resolved = Cli::try_parse_from(["hearth"])
        .unwrap()
        .resolve_on(&[0, 1])
        .unwrap();
    assert_eq!(resolved.config, Config::default());
    assert_eq!(
        resolved.config.listen.http_addr,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(resolved.config.gateway_url(), "ws://127.0.0.1:8080");
    assert_eq!(resolved.profile, HardwareProfile::dev());
    assert_eq!(resolved.shard_count(), 2);
    assert!(resolved.shards.iter().all(|s| s.core.is_none()));
}

#[test]
fn invalid_values_are_refused_naming_the_field() {
    assert_eq!(
        config_error("[node]\nworker_id = 40\n"),
        "config test.toml: node.worker_id = 40: must be below 32 (Snowflake ids hold 5 worker bits)"
    );
    let msg = config_error("[listen]\nhttp_addr = \"nope\"\n");
    assert!(
        msg.starts_with("config test.toml: line 2: listen.http_addr: "),
        "{msg}"
    );
    assert!(msg.contains("socket address"), "{msg}");
    let msg = config_error("[limits]\nhttp_header_bytes_max = 65536\nhttp_body_bytes_max = 1024\n");
    assert!(msg.contains("limits.http_header_bytes_max = 65536: must not exceed limits.http_body_bytes_max (1024)"), "{msg}");
    let msg = config_error("[limits]\ndrain_timeout_ms = 0\n");
    assert!(
        msg.contains("limits.drain_timeout_ms = 0: must be between 1 and"),
        "{msg}"
    );
    let msg = config_error("[log]\nformat = \"xml\"\n");
    assert!(msg.contains("log.format") && msg.contains("xml"), "{msg}");
    let msg = config_error("[listen]\ngateway_url = \"http://x\"\n");
    assert!(
        msg.contains("listen.gateway_url = \"http://x\": must be a ws:// or wss:// URL"),
        "{msg}"
    );
    let msg = config_error("[listen]\nvoice_public_ip = \"0.0.0.0\"\n");
    assert!(msg.contains("listen.voice_public_ip"), "{msg}");
    let msg = config_error("[node]\nname = \"has space\"\n");
    assert!(msg.contains("node.name = \"has space\""), "{msg}");
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let msg = config_error("[listen]\nhttp_adr = \"127.0.0.1:1\"\n");
    assert!(msg.contains("unknown field `http_adr`"), "{msg}");
    let msg = config_error("[nodes]\nname = \"x\"\n");
    assert!(msg.contains("unknown field `nodes`"), "{msg}");
}

#[test]
fn token_secret_is_checked_and_never_printed() {
    let good = "ab".repeat(32);
    let config =
        Config::from_toml("t", &format!("[secrets]\ntoken_secret = \"{good}\"\n")).unwrap();
    let secret = config.secrets.token_secret.as_ref().unwrap();
    assert_eq!(secret.as_bytes(), [0xab; 32]);
    assert!(!format!("{config:?}").contains(&good));
    let bad = "zz".repeat(32);
    let msg = config_error(&format!("[secrets]\ntoken_secret = \"{bad}\"\n"));
    assert!(
        msg.contains("secrets.token_secret") && !msg.contains(&bad),
        "{msg}"
    );
    let msg = config_error("[secrets]\ntoken_secret = \"abcd\"\n");
    assert!(msg.contains("hex digits"), "{msg}");
}

#[test]
fn control_secret_is_required_off_loopback_and_never_printed() {
    let msg = config_error("[listen]\nhttp_addr = \"0.0.0.0:8080\"\n");
    assert!(
        msg.contains("secrets.control_secret") && msg.contains("loopback"),
        "{msg}"
    );
    let good = "s3cret-s3cret-s3cret";
    let config = Config::from_toml(
        "t",
        &format!(
            "[listen]\nhttp_addr = \"0.0.0.0:8080\"\n[secrets]\ncontrol_secret = \"{good}\"\n"
        ),
    )
    .unwrap();
    let secret = config.secrets.control_secret.as_ref().unwrap();
    assert_eq!(secret.as_bytes(), good.as_bytes());
    assert!(!format!("{config:?}").contains(good));
    for bad in ["short", "has a space in it ok", &"x".repeat(513)] {
        let msg = config_error(&format!("[secrets]\ncontrol_secret = \"{bad}\"\n"));
        assert!(
            msg.contains("secrets.control_secret") && msg.contains("visible ASCII"),
            "{msg}"
        );
    }
}

#[test]
fn check_config_reports_a_bad_profile_file_by_field() {
    let dir = scratch("bad-profile");
    let profile = std::fs::read_to_string(repo_root().join("hardware-profiles/dev.toml"))
        .unwrap()
        .replace("recv_buffers = 256", "recv_buffers = 1000");
    write(&dir, "small.toml", &profile);
    let config = write(&dir, "hearth.toml", "profile = \"small.toml\"\n");
    let msg = check_config(&config).unwrap_err().to_string();
    assert!(
        msg.ends_with(
            "small.toml: recv_buffers = 1000: must be a power of two between 1 and 32768"
        ),
        "{msg}"
    );
    let config = write(&dir, "unknown.toml", "profile = \"pop-9s999c\"\n");
    let msg = check_config(&config).unwrap_err().to_string();
    assert!(msg.contains("pop-9s999c"), "{msg}");
    let config = write(
        &dir,
        "tls.toml",
        "[tls]\ncert_path = \"nope.pem\"\nkey_path = \"nope.pem\"\n",
    );
    let msg = check_config(&config).unwrap_err().to_string();
    assert!(
        msg.contains("tls.cert_path") && msg.contains("cannot read"),
        "{msg}"
    );
}

#[test]
fn flags_override_the_file() {
    let dir = scratch("overrides");
    let file = write(
        &dir,
        "hearth.toml",
        "[listen]\nhttp_addr = \"127.0.0.1:9000\"\n[storage]\ndata_dir = \"/var/lib/hearth\"\n\
         [log]\nformat = \"human\"\nlevel = \"warn\"\n",
    );
    let file_arg = file.to_str().unwrap();
    let only_file = Cli::try_parse_from(["hearth", "--config", file_arg])
        .unwrap()
        .resolve_on(&[0, 1])
        .unwrap();
    assert_eq!(only_file.config.listen.http_addr.port(), 9000);
    assert_eq!(only_file.config.log.level, "warn");

    let cli = Cli::try_parse_from([
        "hearth",
        "--config",
        file_arg,
        "--http-addr",
        "127.0.0.1:9100",
        "--echo-addr",
        "127.0.0.1:9200",
        "--data-dir",
        "/tmp/h",
        "--log-format",
        "json",
        "--log-level",
        "debug",
        "--shards",
        "1",
        "--ready-file",
        "/tmp/ready",
    ])
    .unwrap();
    let r = cli.resolve_on(&[0, 1]).unwrap();
    assert_eq!(
        r.config.listen.http_addr,
        "127.0.0.1:9100".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        r.config.listen.echo_addr,
        Some("127.0.0.1:9200".parse().unwrap())
    );
    assert_eq!(r.config.storage.data_dir, PathBuf::from("/tmp/h"));
    assert_eq!(r.config.log.format, LogFormat::Json);
    assert_eq!(r.config.log.level, "debug");
    assert_eq!(r.shard_count(), 1);
    assert_eq!(r.ready_file, Some(PathBuf::from("/tmp/ready")));

    let bad_level =
        Cli::try_parse_from(["hearth", "--config", file_arg, "--log-level", "info,=x=y"]).unwrap();
    let msg = bad_level.resolve_on(&[0, 1]).unwrap_err().to_string();
    assert!(
        msg.contains("+ command line") && msg.contains("log.level"),
        "{msg}"
    );
}

#[test]
fn relative_paths_in_a_file_are_relative_to_it() {
    let dir = scratch("relative");
    let profile = std::fs::read_to_string(repo_root().join("hardware-profiles/dev.toml"))
        .unwrap()
        .replace("name = \"dev\"", "name = \"mine\"");
    write(&dir, "mine.toml", &profile);
    let file = write(
        &dir,
        "hearth.toml",
        "profile = \"mine.toml\"\n[storage]\ndata_dir = \"data\"\n",
    );
    let r = Cli::try_parse_from(["hearth", "--config", file.to_str().unwrap()])
        .unwrap()
        .resolve_on(&[0, 1])
        .unwrap();
    assert_eq!(r.profile.name, "mine");
    assert_eq!(r.config.storage.data_dir, dir.join("data"));
}

#[test]
fn shards_follow_the_profile_and_the_machine() {
    let resolve = |args: &[&str], cpus: &[u32]| {
        let mut argv = vec!["hearth"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().resolve_on(cpus)
    };
    // An unpinned profile is capped to the CPUs available, unless --shards asks for more.
    assert_eq!(resolve(&[], &[0]).unwrap().shard_count(), 1);
    assert_eq!(
        resolve(&["--shards", "4"], &[0, 1]).unwrap().shard_count(),
        4
    );

    // A pinned profile uses those of its cores that exist, never core 0 here.
    let small = resolve(&["--profile", "pop-1s16c"], &[0, 1]).unwrap();
    assert_eq!(small.shards.len(), 1);
    assert_eq!(
        (small.shards[0].core, small.shards[0].numa_node),
        (Some(1), Some(0))
    );
    let err = resolve(&["--profile", "pop-1s16c", "--shards", "3"], &[0, 1]).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Flag {
                flag: "--shards",
                ..
            }
        ),
        "{err}"
    );
    let full: Vec<u32> = (0..16).collect();
    let r = resolve(&["--profile", "pop-1s16c"], &full).unwrap();
    assert_eq!(
        r.shards.iter().map(|s| s.core.unwrap()).collect::<Vec<_>>(),
        (1..16).collect::<Vec<_>>()
    );
    let err = resolve(&["--profile", "pop-1s16c"], &[0]).unwrap_err();
    assert!(matches!(err, ConfigError::Placement { .. }), "{err}");

    let all: Vec<u32> = (0..64).collect();
    let big = resolve(&["--profile", "pop-2s64c"], &all).unwrap();
    assert_eq!(big.shard_count(), 30);
    assert!(
        big.shards
            .iter()
            .all(|s| s.numa_node == Some(u32::from(s.core.unwrap() >= 16)))
    );
    assert!(big.shards.iter().zip(0u32..).all(|(s, i)| s.index == i));
}

#[test]
fn voice_ports_follow_the_shard_index() {
    let dir = scratch("voice");
    let file = write(
        &dir,
        "hearth.toml",
        "[listen]\nvoice_udp_base_port = 50000\n",
    );
    let r = Cli::try_parse_from(["hearth", "--config", file.to_str().unwrap()])
        .unwrap()
        .resolve_on(&[0, 1])
        .unwrap();
    assert_eq!((r.voice_udp_port(0), r.voice_udp_port(1)), (50000, 50001));
    let file = write(&dir, "edge.toml", "[listen]\nvoice_udp_base_port = 65535\n");
    let err = Cli::try_parse_from(["hearth", "--config", file.to_str().unwrap()])
        .unwrap()
        .resolve_on(&[0, 1])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("listen.voice_udp_base_port = 65535"),
        "{err}"
    );
}

#[test]
fn command_line_shapes() {
    let cli = Cli::try_parse_from(["hearth", "check-config", "x.toml"]).unwrap();
    assert_eq!(
        cli.command,
        Some(Command::CheckConfig {
            file: PathBuf::from("x.toml")
        })
    );
    assert!(Cli::try_parse_from(["hearth", "--shards", "0"]).is_err());
    assert!(Cli::try_parse_from(["hearth", "--shards", "33"]).is_err());
    assert!(Cli::try_parse_from(["hearth", "--http-addr", "nope"]).is_err());
    assert!(Cli::try_parse_from(["hearth", "--log-format", "xml"]).is_err());
}
