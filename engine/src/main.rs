//! The `hearth` binary: resolve config and profile, start one pinned shard per core, serve until
//! SIGTERM or SIGINT, then drain and exit 0.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use engine::config::{Cli, Command, LogFormat, ResolvedConfig, check_config};
use engine::node::{GatewaySpec, Node, NodeSpec};
use engine::shard::ShardConfig;

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

fn ms_to_ns(ms: u32) -> u64 {
    u64::from(ms) * 1_000_000
}

/// File in the data directory holding the generated token secret (hex).
const TOKEN_SECRET_FILE: &str = "token_secret";
/// Bytes of a generated token secret.
const TOKEN_SECRET_BYTES: usize = 32;

/// The token secret: from the config, else the one generated for this data directory (created
/// on first start, so tokens survive restarts).
fn token_secret(r: &ResolvedConfig) -> Result<Vec<u8>, String> {
    if let Some(s) = &r.config.secrets.token_secret {
        return Ok(s.as_bytes().to_vec());
    }
    let path = r.config.storage.data_dir.join(TOKEN_SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(hex) => engine::config::Secret::from_hex(hex.trim())
            .map(|s| s.as_bytes().to_vec())
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; TOKEN_SECRET_BYTES];
            // SAFETY: getrandom writes at most key.len() bytes into key.
            let n = unsafe { libc::getrandom(key.as_mut_ptr().cast(), key.len(), 0) };
            if n != key.len() as isize {
                return Err("getrandom failed while generating the token secret".into());
            }
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &hex)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            Ok(key.to_vec())
        }
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

fn node_spec(r: &ResolvedConfig, token_secret: Vec<u8>) -> NodeSpec {
    let limits = &r.config.limits;
    let p = &r.profile;
    let cores: Vec<usize> = if p.pin_threads {
        r.shards
            .iter()
            .map_while(|s| s.core.map(|c| c as usize))
            .collect()
    } else {
        Vec::new()
    };
    NodeSpec {
        shards: r.shards.len(),
        cores,
        http_addr: r.config.listen.http_addr,
        echo_addr: r.config.listen.echo_addr,
        driver: p.driver_config(),
        shard: ShardConfig {
            max_connections: p.max_connections_per_shard,
            http: limits.http_limits(),
            http_header_timeout_ns: ms_to_ns(limits.http_header_timeout_ms),
            http_idle_timeout_ns: ms_to_ns(limits.http_keepalive_idle_ms),
            drain_timeout_ns: ms_to_ns(limits.drain_timeout_ms),
            tcp: p.tcp_options(),
            core: None,
            ws_message_bytes_max: gateway_core::limits::WS_MESSAGE_BYTES_MAX,
            send_batch: p.send_batch as usize,
            mailbox_batch: p.mailbox_batch as usize,
        },
        mailbox_capacity: p.mailbox_capacity as usize,
        data_dir: Some(r.config.storage.data_dir.clone()),
        gateway: GatewaySpec {
            token_secret,
            url: r.config.listen.gateway_url.clone(),
            worker_id: (r.config.node.worker_id % 32) as u8,
            heartbeat_interval_ms: u64::from(limits.gateway_heartbeat_interval_ms),
            heartbeat_grace_ms: gateway_core::limits::HEARTBEAT_GRACE_MS,
            rest_rate_limits: limits.rest_rate_limits,
            session_output_queue_bytes: p.session_output_queue_bytes as usize,
            control_secret: r
                .config
                .secrets
                .control_secret
                .as_ref()
                .map(|s| s.as_bytes().to_vec())
                .unwrap_or_default(),
        },
    }
}

/// Block SIGTERM and SIGINT in every thread (shard threads inherit the mask), so that the main
/// thread alone takes them with `sigtimedwait`.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; pthread_sigmask reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Wait up to `timeout` for one of the blocked signals; returns it.
fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: set and ts are valid for the call; a null siginfo is allowed.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

fn run(r: ResolvedConfig) -> Result<(), String> {
    let data_dir = &r.config.storage.data_dir;
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("creating data dir {}: {e}", data_dir.display()))?;
    let spec = node_spec(&r, token_secret(&r)?);
    let drain_timeout = Duration::from_millis(u64::from(r.config.limits.drain_timeout_ms));
    let signals = block_signals();
    tracing::info!(
        shards = spec.shards,
        profile = %r.profile_origin,
        data_dir = %data_dir.display(),
        "starting"
    );
    // Voice (issue 6): per-shard voice gateway (TLS) and UDP ports, certificate from [tls].
    let voice = engine::voice::VoiceSpec {
        tls_base_port: r.config.listen.voice_tls_base_port,
        udp_base_port: r.config.listen.voice_udp_base_port,
        bind_ip: r.config.listen.http_addr.ip(),
        public_ip: r.config.listen.voice_public_ip,
        tls_files: r.config.tls.as_ref().map(|t| engine::voice::TlsFiles {
            cert_path: t.cert_path.clone(),
            key_path: t.key_path.clone(),
        }),
        ..engine::voice::VoiceSpec::default()
    };
    let node = Node::start_with_voice(spec, voice).map_err(|e| format!("starting: {e}"))?;
    let addrs = node.addrs();
    tracing::info!(http = %addrs.http, echo = ?addrs.echo, "serving");
    if let Some(path) = &r.ready_file {
        let ready = serde_json::json!({
            "pid": std::process::id(),
            "http": addrs.http.to_string(),
            "echo": addrs.echo.map(|a| a.to_string()),
            "shards": r.shards.len(),
            "voice": node.voice_addrs().iter()
                .map(|(t, u)| serde_json::json!({"tls": t.to_string(), "udp": u.to_string()}))
                .collect::<Vec<_>>(),
        });
        // Written to a temporary name and renamed, so a watcher never reads half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, ready.to_string())
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| format!("writing ready file {}: {e}", path.display()))?;
    }
    loop {
        if let Some(sig) = wait_signal(&signals, Duration::from_millis(200)) {
            tracing::info!(signal = sig, "stopping: draining connections");
            break;
        }
        if node.any_finished() {
            tracing::error!("a shard stopped unexpectedly");
            node.stop();
            return node.join().map_err(|e| e.to_string());
        }
    }
    node.stop();
    let started = Instant::now();
    // Shards close what is left at their drain timeout; the join is bounded by it.
    let r = node.join().map_err(|e| e.to_string());
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        limit_ms = drain_timeout.as_millis() as u64,
        "stopped"
    );
    r
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return match check_config(file) {
            Ok(msg) => {
                println!("{msg}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("hearth: {e}");
                ExitCode::from(2)
            }
        };
    }
    let resolved = match cli.resolve() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hearth: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(resolved.config.log.format, &resolved.config.log.level);
    match run(resolved) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("hearth: {e}");
            ExitCode::FAILURE
        }
    }
}
