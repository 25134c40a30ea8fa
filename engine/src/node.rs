//! A node: one pinned thread per shard, each running its own io_uring loop, plus start and stop.
//!
//! Shard 0 binds first so that an ephemeral port (`:0`) is resolved once; the other shards then bind
//! the same concrete address with SO_REUSEPORT, and the kernel spreads connections across them.
//! Stopping sets a flag and wakes every shard; each drains (stops accepting, finishes what is open,
//! closes the rest after the drain timeout) and its thread returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::app::{App, AppState};
use gateway_core::gateway::GatewayConfig;

use crate::ctx::{ShardCtx, ShardMsg};
use crate::driver::uring::UringDriver;
use crate::driver::{DriverConfig, DriverError, RemoteWaker};
use crate::gateway::GatewayState;
use crate::mailbox::{MailboxError, Mesh};
use crate::shard::{STORE_TOKEN_KIND, Service, Shard, ShardConfig};
use crate::store_io::{FsDir, StoreIo};

/// What a node is started with (resolved from the config file, profile and flags).
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Number of shards.
    pub shards: usize,
    /// The core each shard is pinned to (`None`: not pinned). Shorter than `shards`: unpinned rest.
    pub cores: Vec<usize>,
    /// HTTP listener address.
    pub http_addr: SocketAddr,
    /// Raw TCP echo listener address (benchmarks), if any.
    pub echo_addr: Option<SocketAddr>,
    /// Driver sizes.
    pub driver: DriverConfig,
    /// Shard settings (its `core` is filled per shard).
    pub shard: ShardConfig,
    /// Messages per mailbox (per ordered pair of shards).
    pub mailbox_capacity: usize,
    /// The gateway and the application layer.
    pub gateway: GatewaySpec,
    /// Where each shard keeps its message store (`<dir>/shard-<i>`); None: no store (REST
    /// message routes answer 503).
    pub data_dir: Option<std::path::PathBuf>,
}

/// Gateway settings of a node.
#[derive(Clone)]
pub struct GatewaySpec {
    /// HMAC key of session tokens (the same on every shard, so any shard verifies any token).
    pub token_secret: Vec<u8>,
    /// URL announced to clients; `None`: `ws://` plus the bound HTTP address.
    pub url: Option<String>,
    /// Node id in Snowflakes (below 32).
    pub worker_id: u8,
    /// Heartbeat interval announced in Hello.
    pub heartbeat_interval_ms: u64,
    /// Extra time after a missed heartbeat before the session is closed as a zombie (4009).
    pub heartbeat_grace_ms: u64,
    /// Whether REST requests are rate limited.
    pub rest_rate_limits: bool,
    /// Bearer secret of `/control/*` and `/admin/*`; empty: those endpoints are open.
    pub control_secret: Vec<u8>,
    /// Bytes queued for one session before it is disconnected as too slow (profile
    /// `session_output_queue_bytes`).
    pub session_output_queue_bytes: usize,
}

impl std::fmt::Debug for GatewaySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySpec")
            .field("url", &self.url)
            .field("worker_id", &self.worker_id)
            .field("heartbeat_interval_ms", &self.heartbeat_interval_ms)
            .finish_non_exhaustive()
    }
}

impl Default for GatewaySpec {
    fn default() -> Self {
        GatewaySpec {
            token_secret: crate::ctx::UNCONFIGURED_TOKEN_SECRET.to_vec(),
            url: None,
            worker_id: 0,
            heartbeat_interval_ms: gateway_core::limits::HEARTBEAT_INTERVAL_MS,
            heartbeat_grace_ms: gateway_core::limits::HEARTBEAT_GRACE_MS,
            rest_rate_limits: true,
            control_secret: Vec::new(),
            session_output_queue_bytes: gateway_core::limits::OUTPUT_QUEUE_BYTES_MAX,
        }
    }
}

/// Addresses the node listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundAddrs {
    /// HTTP.
    pub http: SocketAddr,
    /// Echo, if enabled.
    pub echo: Option<SocketAddr>,
}

/// Why a node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The mailbox mesh could not be built.
    #[error("mailboxes: {0}")]
    Mailbox(#[from] MailboxError),
    /// A shard's driver failed.
    #[error("shard {shard}: {source}")]
    Driver {
        /// The shard.
        shard: usize,
        /// The driver error.
        source: DriverError,
    },
    /// Pinning a shard thread to its core failed.
    #[error("shard {shard}: pinning to core {core}: {source}")]
    Pin {
        /// The shard.
        shard: usize,
        /// The core.
        core: usize,
        /// The OS error.
        source: std::io::Error,
    },
    /// A shard thread could not be spawned or panicked.
    #[error("shard {0}: thread failed")]
    Thread(usize),
    /// Voice (issue 6): the voice gateway's TLS configuration could not be built.
    #[error("voice tls: {0}")]
    Voice(#[from] crate::voice::TlsSetupError),
    /// The metadata (users, guilds) in the data directory could not be recovered.
    #[error("metadata recovery: {0}")]
    Meta(#[from] crate::meta::MetaError),
}

/// A running node.
pub struct Node {
    stop: Arc<AtomicBool>,
    wakers: Vec<Arc<dyn RemoteWaker>>,
    threads: Vec<(usize, JoinHandle<Result<(), NodeError>>)>,
    addrs: BoundAddrs,
    /// Voice (issue 6): the voice servers' setup, when enabled.
    voice: Option<crate::voice::VoiceSetup>,
}

/// Pin the calling thread to `core`.
pub fn pin_current_thread(core: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set; CPU_SET bounds-checks the index
    // against the set size (we check it too), and sched_setaffinity reads the set we pass.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if core >= libc::CPU_SETSIZE as usize {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// 64 random bits from the kernel (session-id seeds; not a key).
fn seed_from_os() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // Not a secret: fall back to the clock.
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    }
    u64::from_le_bytes(b)
}

type Ready = Result<(BoundAddrs, Arc<dyn RemoteWaker>), NodeError>;

// One argument per thing the thread takes ownership of; bundling them would only move the list.
#[allow(clippy::too_many_arguments)]
fn shard_main(
    index: usize,
    spec: NodeSpec,
    mesh: Arc<Mesh<ShardMsg>>,
    addrs: BoundAddrs,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<Ready>,
    voice: Option<crate::voice::VoiceSetup>,
    recovered: Option<crate::meta::Recovered>,
) -> Result<(), NodeError> {
    let core = spec.cores.get(index).copied();
    let setup = || -> Result<Shard<UringDriver, App>, NodeError> {
        if let Some(core) = core {
            pin_current_thread(core).map_err(|source| NodeError::Pin {
                shard: index,
                core,
                source,
            })?;
        }
        // The ring is created on the thread that uses it (SINGLE_ISSUER).
        let driver = UringDriver::new(spec.driver).map_err(|source| NodeError::Driver {
            shard: index,
            source,
        })?;
        let ctx = ShardCtx::new(mesh.endpoint(index)?);
        let mut cfg = spec.shard.clone();
        cfg.core = core;
        Ok(Shard::new(driver, ctx, App::default(), cfg))
    };
    let mut shard = match setup() {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(NodeError::Thread(index)));
            return Err(e);
        }
    };
    let driver_err = |source| NodeError::Driver {
        shard: index,
        source,
    };
    let bound = (|| -> Result<BoundAddrs, DriverError> {
        let http = shard.listen(addrs.http, Service::Http)?;
        let echo = match addrs.echo {
            Some(a) => Some(shard.listen(a, Service::Echo)?),
            None => None,
        };
        // Voice (issue 6): this shard's own voice TLS port and UDP port.
        if let Some(v) = &voice {
            shard.start_voice(v)?;
        }
        Ok(BoundAddrs { http, echo })
    })();
    let bound = match bound {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(NodeError::Thread(index)));
            return Err(driver_err(e));
        }
    };
    let url = spec
        .gateway
        .url
        .clone()
        .unwrap_or_else(|| format!("ws://{}", bound.http));
    let mut gw_cfg = GatewayConfig::new(&spec.gateway.token_secret);
    gw_cfg.heartbeat_interval_ms = spec.gateway.heartbeat_interval_ms;
    gw_cfg.heartbeat_grace_ms = spec.gateway.heartbeat_grace_ms;
    gw_cfg.output_queue_bytes_max = spec.gateway.session_output_queue_bytes;
    let seed = seed_from_os() ^ index as u64;
    shard.ctx.gw = GatewayState::new(index, gw_cfg, url.clone(), seed);
    shard.ctx.app = AppState::new(spec.gateway.worker_id, index, url);
    shard.ctx.app.control_secret = spec.gateway.control_secret.clone();
    shard.ctx.rest_rate_limits = spec.gateway.rest_rate_limits;
    if let Some(dir) = &spec.data_dir {
        let dir = dir.join(format!("shard-{index}"));
        match FsDir::new(&dir) {
            Ok(fs) => shard.attach_store(
                StoreIo::new(fs, STORE_TOKEN_KIND),
                msgstore::Store::new(msgstore::Config::default()),
            ),
            Err(e) => {
                tracing::error!(shard = index, dir = %dir.display(), error = %e, "message store");
                let _ = ready.send(Err(NodeError::Thread(index)));
                return Err(NodeError::Thread(index));
            }
        }
    }
    // Durable metadata: the recovered users and guilds go in before the shard serves anything.
    if let (Some(dir), Some(r)) = (&spec.data_dir, recovered) {
        let dir = dir.join(format!("shard-{index}"));
        let generation = r.generation;
        crate::meta::install(&mut shard.ctx, r);
        match FsDir::new(&dir) {
            Ok(fs) => shard.attach_meta(crate::meta::MetaIo::new(fs, generation)),
            Err(e) => {
                tracing::error!(shard = index, dir = %dir.display(), error = %e, "metadata");
                let _ = ready.send(Err(NodeError::Thread(index)));
                return Err(NodeError::Thread(index));
            }
        }
    }
    let _ = ready.send(Ok((bound, shard.driver_remote_waker())));
    drop(ready);
    tracing::info!(shard = index, ?core, http = %bound.http, "shard running");
    while !shard.is_stopped() {
        if stop.load(Ordering::Acquire) && !shard.ctx.draining {
            tracing::info!(shard = index, "draining");
            shard.start_drain();
        }
        shard.turn(None).map_err(driver_err)?;
    }
    tracing::info!(shard = index, "stopped");
    Ok(())
}

impl Node {
    /// Start every shard; returns once all listen.
    pub fn start(spec: NodeSpec) -> Result<Node, NodeError> {
        Node::start_with_voice(spec, crate::voice::VoiceSpec::default())
    }

    /// Start every shard with voice servers as `voice` says; returns once all listen.
    pub fn start_with_voice(
        spec: NodeSpec,
        voice: crate::voice::VoiceSpec,
    ) -> Result<Node, NodeError> {
        let voice = match voice.enabled {
            true => Some(crate::voice::VoiceSetup::new(voice, spec.shards)?),
            false => None,
        };
        // Durable metadata is read before any shard exists, so no shard serves a partial state.
        let mut recovered: Vec<Option<crate::meta::Recovered>> = match &spec.data_dir {
            Some(dir) => crate::meta::recover_node(dir, spec.shards)?
                .into_iter()
                .map(Some)
                .collect(),
            None => Vec::new(),
        };
        let mesh = Mesh::<ShardMsg>::new(spec.shards, spec.mailbox_capacity)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(spec.shards);
        let mut wakers = Vec::with_capacity(spec.shards);
        let mut addrs = BoundAddrs {
            http: spec.http_addr,
            echo: spec.echo_addr,
        };
        let mut failure = None;
        for index in 0..spec.shards {
            let (tx, rx) = mpsc::channel();
            let (spec2, mesh2, stop2) = (spec.clone(), Arc::clone(&mesh), Arc::clone(&stop));
            let voice2 = voice.clone();
            let recovered2 = recovered.get_mut(index).and_then(Option::take);
            let handle = std::thread::Builder::new()
                .name(format!("shard-{index}"))
                .spawn(move || {
                    shard_main(index, spec2, mesh2, addrs, stop2, tx, voice2, recovered2)
                })
                .map_err(|_| NodeError::Thread(index))?;
            match rx.recv() {
                Ok(Ok((bound, waker))) => {
                    // Later shards bind the concrete ports shard 0 got.
                    addrs = bound;
                    wakers.push(waker);
                    threads.push((index, handle));
                }
                _ => {
                    failure = Some(match handle.join() {
                        Ok(Err(e)) => e,
                        _ => NodeError::Thread(index),
                    });
                    break;
                }
            }
        }
        let node = Node {
            stop,
            wakers,
            threads,
            addrs,
            voice,
        };
        if let Some(e) = failure {
            node.stop();
            let _ = node.join();
            return Err(e);
        }
        Ok(node)
    }

    /// The bound addresses.
    pub fn addrs(&self) -> BoundAddrs {
        self.addrs
    }

    /// Voice (issue 6): each shard's bound (voice TLS, voice UDP) addresses, by shard index
    /// (empty without voice).
    pub fn voice_addrs(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.voice.as_ref().map_or_else(Vec::new, |v| {
            v.shared
                .bound
                .iter()
                .filter_map(|b| b.get().copied())
                .collect()
        })
    }

    /// Voice (issue 6): the voice gateway's certificate (DER), for clients that pin it.
    pub fn voice_cert_der(&self) -> Option<&[u8]> {
        self.voice.as_ref().map(|v| v.tls.cert_der.as_slice())
    }

    /// Ask every shard to drain and stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        for w in &self.wakers {
            w.wake();
        }
    }

    /// Whether any shard thread has exited.
    pub fn any_finished(&self) -> bool {
        self.threads.iter().any(|(_, h)| h.is_finished())
    }

    /// Wait for every shard to stop; the first error, if any.
    pub fn join(self) -> Result<(), NodeError> {
        let mut first = Ok(());
        for (index, h) in self.threads {
            let r = h.join().unwrap_or(Err(NodeError::Thread(index)));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}
