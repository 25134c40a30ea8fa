//! Hearth's side of `voice-forward`: every participant joins through the real path, as a
//! Discord client does. Set-up (untimed): per room a guild whose owner is participant 0, the
//! other participants created and added over the control API. Join: main gateway (upgrade,
//! Hello, Identify → READY, GUILD_CREATE names the voice channel), op 4 → VOICE_STATE_UPDATE +
//! VOICE_SERVER_UPDATE, then the voice gateway over TLS on the endpoint it names (Identify,
//! Hello, Ready with SSRC and UDP port), IP discovery on the shard's UDP port, Select Protocol
//! and Session Description (mode and 32-byte key); speakers also send Speaking. The main gateway
//! connection is then closed (the voice state stays; one descriptor less per participant),
//! and a keeper thread heartbeats every voice gateway connection for the rest of the run.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use serde_json::{Value, json};
use sfu::crypto::Mode;

use super::ws::{Msg, Ws};
use crate::BenchError;
use crate::gateway::fanout::setup::{add_member, create_user, snowflake};
use crate::gateway::http::HttpClient;
use crate::gateway::proto::GATEWAY_PATH;

/// GUILDS | GUILD_VOICE_STATES: what a voice client identifies with.
pub const VOICE_INTENTS: u64 = 1 | (1 << 7);
/// Voice gateway version the participants speak (discord.py's).
pub const VOICE_GATEWAY_PATH: &str = "/?v=8";
/// Discord's voice channel type.
const CHANNEL_TYPE_VOICE: u64 = 2;
/// Threads joining participants in parallel (they wait on the server most of the time, so
/// more threads than the one client core keeps the server busy during set-up).
pub const JOIN_THREADS: usize = 4;
/// Threads creating users and memberships over the control API.
pub const SETUP_THREADS: usize = 4;
/// Blocking reads during set-up give up after this long.
pub const SETUP_READ_TIMEOUT_S: u64 = 30;
/// How often the keeper reads every voice connection and sends due heartbeats.
pub const KEEPER_TICK_MS: u64 = 200;
/// The keeper heartbeats at this share of the announced interval (Discord clients send on time;
/// a little early leaves room for a slow tick).
pub const HEARTBEAT_EARLY_SHARE: f64 = 0.8;
/// Heartbeat interval assumed when Hello gives none, ms (Discord's voice servers send 13750).
const HEARTBEAT_INTERVAL_FALLBACK_MS: u64 = 13_750;

/// TLS stream of one voice gateway connection.
pub type VoiceStream = StreamOwned<ClientConnection, TcpStream>;

/// One room's guild and its participants' credentials.
#[derive(Debug, Clone)]
pub struct RoomUsers {
    /// Guild id (the room).
    pub guild_id: u64,
    /// (user id, token) per participant; participant 0 owns the guild.
    pub users: Vec<(u64, String)>,
}

/// A participant that finished joining: its UDP side for the load, its key.
#[derive(Debug)]
pub struct JoinedUdp {
    /// Room index.
    pub room: usize,
    /// Participant index within the room.
    pub index: usize,
    /// Its UDP socket (discovered by the server).
    pub udp: UdpSocket,
    /// The shard's voice UDP address.
    pub server: SocketAddr,
    /// SSRC from Ready.
    pub ssrc: u32,
    /// The Session Description's mode.
    pub mode: Mode,
    /// The Session Description's key.
    pub key: [u8; 32],
}

/// Accepts the node's self-signed certificate while still checking handshake signatures: the
/// bench runs on loopback against a server it started, so it does not authenticate it (a
/// production client verifies the chain).
#[derive(Debug)]
struct AcceptAny;

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The TLS client configuration every participant shares.
pub fn tls_config() -> Result<Arc<ClientConfig>, BenchError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BenchError::Client(format!("rustls: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn parse_err(what: &str, v: &Value) -> BenchError {
    BenchError::Parse {
        file: what.into(),
        detail: v.to_string(),
    }
}

fn str_field<'a>(v: &'a Value, ptr: &str, what: &str) -> Result<&'a str, BenchError> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .ok_or_else(|| parse_err(what, v))
}

fn json_ok(resp: &crate::gateway::http::HttpResponse, what: &str) -> Result<Value, BenchError> {
    if resp.status != 200 {
        return Err(BenchError::Client(format!(
            "{what} answered {}: {}",
            resp.status,
            resp.text()
        )));
    }
    serde_json::from_slice(&resp.body).map_err(|e| BenchError::Parse {
        file: what.into(),
        detail: e.to_string(),
    })
}

/// Creates `rooms` guilds with `participants` members each (owner included), over
/// [`SETUP_THREADS`] keep-alive connections.
pub fn create_rooms(
    addr: SocketAddr,
    rooms: usize,
    participants: usize,
) -> Result<Vec<RoomUsers>, BenchError> {
    let mut handles = Vec::new();
    for t in 0..SETUP_THREADS {
        handles.push(thread::spawn(
            move || -> Result<Vec<(usize, RoomUsers)>, BenchError> {
                let mut http = HttpClient::new(addr);
                let mut out = Vec::new();
                for r in (t..rooms).step_by(SETUP_THREADS) {
                    let owner = create_user(&mut http, &format!("voice-{r}-0"))?;
                    let what = "POST /control/guilds";
                    let body = json!({"name": format!("voice room {r}"),
                    "owner_id": owner.0.to_string()})
                    .to_string();
                    let g = json_ok(&http.post_json("/control/guilds", &body)?, what)?;
                    let guild_id = snowflake(&g, "id").ok_or_else(|| parse_err(what, &g))?;
                    let mut users = vec![owner];
                    for i in 1..participants {
                        let u = create_user(&mut http, &format!("voice-{r}-{i}"))?;
                        add_member(&mut http, guild_id, u.0)?;
                        users.push(u);
                    }
                    out.push((r, RoomUsers { guild_id, users }));
                }
                Ok(out)
            },
        ));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(
            h.join()
                .map_err(|_| BenchError::Client("a set-up thread panicked".into()))??,
        );
    }
    all.sort_by_key(|(r, _)| *r);
    Ok(all.into_iter().map(|(_, u)| u).collect())
}

/// A voice gateway connection the keeper looks after.
struct Kept {
    ws: Ws<VoiceStream>,
    interval_ms: u64,
    next_beat: Instant,
    seq: i64,
    alive: bool,
}

/// What the keeper saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct KeeperStats {
    /// Voice connections looked after.
    pub connections: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// Heartbeat ACKs received.
    pub acks: u64,
    /// Messages received (op 5, 6, 11, ...).
    pub messages: u64,
    /// Connections the server closed, by close code ("eof" without a close frame).
    pub closed: BTreeMap<String, u64>,
    /// Read or write errors.
    pub errors: u64,
}

/// Heartbeats every voice connection it is given until stopped.
pub struct Keeper {
    tx: Option<Sender<(Ws<VoiceStream>, u64)>>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<KeeperStats>>,
    stats: Arc<Mutex<KeeperStats>>,
}

impl Keeper {
    /// Starts the keeper thread.
    pub fn start() -> Self {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(KeeperStats::default()));
        let (s, st) = (stop.clone(), stats.clone());
        let handle = thread::spawn(move || keeper_loop(&rx, &s, &st));
        Keeper {
            tx: Some(tx),
            stop,
            handle: Some(handle),
            stats,
        }
    }

    /// A sender for joining threads.
    pub fn sender(&self) -> Option<Sender<(Ws<VoiceStream>, u64)>> {
        self.tx.clone()
    }

    /// What it saw so far.
    pub fn snapshot(&self) -> KeeperStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops it (the voice connections close) and returns what it saw.
    pub fn finish(mut self) -> KeeperStats {
        self.tx = None;
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

fn keeper_loop(
    rx: &Receiver<(Ws<VoiceStream>, u64)>,
    stop: &AtomicBool,
    shared: &Mutex<KeeperStats>,
) -> KeeperStats {
    let mut kept: Vec<Kept> = Vec::new();
    let mut stats = KeeperStats::default();
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        while let Ok((ws, interval_ms)) = rx.try_recv() {
            let ms = (interval_ms as f64 * HEARTBEAT_EARLY_SHARE) as u64;
            kept.push(Kept {
                ws,
                interval_ms: ms.max(1),
                next_beat: Instant::now() + Duration::from_millis(ms),
                seq: -1,
                alive: true,
            });
            stats.connections += 1;
        }
        let now = Instant::now();
        for k in kept.iter_mut().filter(|k| k.alive) {
            match k.ws.pump() {
                Ok(true) => {}
                Ok(false) => {
                    k.alive = false;
                    *stats.closed.entry("eof".into()).or_default() += 1;
                    continue;
                }
                Err(_) => {
                    k.alive = false;
                    stats.errors += 1;
                    continue;
                }
            }
            loop {
                match k.ws.buffered() {
                    Ok(Some(Msg::Json(v))) => {
                        stats.messages += 1;
                        if let Some(s) = v.get("seq").and_then(Value::as_i64) {
                            k.seq = s;
                        }
                        if v.get("op").and_then(Value::as_u64) == Some(6) {
                            stats.acks += 1;
                        }
                    }
                    Ok(Some(Msg::Closed(code))) => {
                        k.alive = false;
                        *stats.closed.entry(code.to_string()).or_default() += 1;
                        break;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        k.alive = false;
                        stats.errors += 1;
                        break;
                    }
                }
            }
            if k.alive && now >= k.next_beat {
                let nonce = start.elapsed().as_millis() as u64;
                match k
                    .ws
                    .send(&json!({"op": 3, "d": {"t": nonce, "seq_ack": k.seq}}))
                {
                    Ok(()) => stats.heartbeats += 1,
                    // A full socket buffer on a non-blocking stream: rustls keeps the bytes
                    // and the next read flushes them.
                    Err(_) => stats.errors += 1,
                }
                k.next_beat = now + Duration::from_millis(k.interval_ms);
            }
        }
        if let Ok(mut s) = shared.lock() {
            *s = stats.clone();
        }
        thread::sleep(Duration::from_millis(KEEPER_TICK_MS));
    }
    stats
}

/// Joins participant `index` of room `room` through the whole path; hands its voice gateway
/// connection to the keeper and returns its UDP side.
// Each argument is one fact of the join; a struct would only be built to be taken apart here.
#[allow(clippy::too_many_arguments)]
pub fn join(
    http: SocketAddr,
    tls: &Arc<ClientConfig>,
    room: usize,
    index: usize,
    guild_id: u64,
    user: &(u64, String),
    mode: Mode,
    speaker: bool,
    keeper: &Sender<(Ws<VoiceStream>, u64)>,
) -> Result<JoinedUdp, BenchError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |e: std::io::Error| BenchError::io(what, e)
    };
    let timeout = Some(Duration::from_secs(SETUP_READ_TIMEOUT_S));
    let (user_id, token) = (user.0, user.1.as_str());
    let me = user_id.to_string();

    // Main gateway: Identify, find the voice channel, op 4.
    let tcp = TcpStream::connect(http).map_err(io("connect gateway"))?;
    tcp.set_read_timeout(timeout).map_err(io("timeout"))?;
    tcp.set_nodelay(true).map_err(io("nodelay"))?;
    let mut gw = Ws::upgrade(tcp, "127.0.0.1", GATEWAY_PATH)?;
    gw.until("Hello", |v| v["op"] == 10)?;
    gw.send(
        &json!({"op": 2, "d": {"token": token, "intents": VOICE_INTENTS,
        "properties": {"os": "linux", "browser": "hearth-bench", "device": "hearth-bench"}}}),
    )?;
    gw.until("READY", |v| v["t"] == "READY")?;
    let gc = gw.until("GUILD_CREATE", |v| {
        v["t"] == "GUILD_CREATE" && snowflake(&v["d"], "id") == Some(guild_id)
    })?;
    let channel = gc["d"]["channels"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == CHANNEL_TYPE_VOICE))
        .and_then(|c| c["id"].as_str())
        .ok_or_else(|| parse_err("GUILD_CREATE without a voice channel", &gc))?
        .to_owned();
    gw.send(
        &json!({"op": 4, "d": {"guild_id": guild_id.to_string(), "channel_id": channel,
        "self_mute": false, "self_deaf": false}}),
    )?;
    let mut session_id = None;
    let mut server = None;
    while session_id.is_none() || server.is_none() {
        match gw.next_msg()? {
            Msg::Json(v) if v["t"] == "VOICE_STATE_UPDATE" && v["d"]["user_id"] == me.as_str() => {
                session_id = Some(str_field(&v, "/d/session_id", "VOICE_STATE_UPDATE")?.to_owned());
            }
            Msg::Json(v) if v["t"] == "VOICE_SERVER_UPDATE" => {
                let endpoint = str_field(&v, "/d/endpoint", "VOICE_SERVER_UPDATE")?.to_owned();
                let vtoken = str_field(&v, "/d/token", "VOICE_SERVER_UPDATE")?.to_owned();
                server = Some((endpoint, vtoken));
            }
            Msg::Json(_) => {}
            Msg::Closed(code) => {
                return Err(BenchError::Client(format!(
                    "gateway closed with {code} after op 4"
                )));
            }
        }
    }
    let (Some(session_id), Some((endpoint, vtoken))) = (session_id, server) else {
        return Err(BenchError::Client("op 4 answer incomplete".into()));
    };

    // Voice gateway over TLS.
    let addr: SocketAddr = endpoint
        .parse()
        .map_err(|_| BenchError::Client(format!("endpoint {endpoint} is not host:port")))?;
    let conn = ClientConnection::new(tls.clone(), ServerName::from(addr.ip()))
        .map_err(|e| BenchError::Client(format!("rustls: {e}")))?;
    let tcp = TcpStream::connect(addr).map_err(io("connect voice gateway"))?;
    tcp.set_read_timeout(timeout).map_err(io("timeout"))?;
    tcp.set_nodelay(true).map_err(io("nodelay"))?;
    let mut ws = Ws::upgrade(StreamOwned::new(conn, tcp), &endpoint, VOICE_GATEWAY_PATH)?;
    ws.send(
        &json!({"op": 0, "d": {"server_id": guild_id.to_string(), "user_id": me,
        "session_id": session_id, "token": vtoken, "max_dave_protocol_version": 0}}),
    )?;
    let hello = ws.until("voice Hello", |v| v["op"] == 8)?;
    let interval_ms = hello["d"]["heartbeat_interval"]
        .as_f64()
        .map_or(HEARTBEAT_INTERVAL_FALLBACK_MS, |f| f as u64);
    let ready = ws.until("voice Ready", |v| v["op"] == 2)?;
    let ssrc = ready["d"]["ssrc"]
        .as_u64()
        .and_then(|s| u32::try_from(s).ok())
        .ok_or_else(|| parse_err("voice Ready ssrc", &ready))?;
    let ip = str_field(&ready, "/d/ip", "voice Ready")?;
    let port = ready["d"]["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| parse_err("voice Ready port", &ready))?;
    let server: SocketAddr = format!("{ip}:{port}")
        .parse()
        .map_err(|_| parse_err("voice Ready address", &ready))?;

    // IP discovery on the shard's UDP port.
    let udp = UdpSocket::bind("127.0.0.1:0").map_err(io("bind udp"))?;
    udp.set_read_timeout(timeout).map_err(io("timeout"))?;
    let mut req = [0u8; sfu::limits::IPDISC_PACKET_LEN];
    sfu::ipdisc::build_request(ssrc, &mut req);
    udp.send_to(&req, server).map_err(io("send discovery"))?;
    let mut answer = [0u8; sfu::limits::PACKET_LEN_MAX];
    let (n, _) = udp.recv_from(&mut answer).map_err(io("discovery answer"))?;
    let found = sfu::ipdisc::parse(answer.get(..n).unwrap_or_default())
        .map_err(|e| BenchError::Client(format!("discovery answer: {e:?}")))?;
    let address = found
        .address()
        .map_err(|e| BenchError::Client(format!("discovery address: {e:?}")))?
        .to_owned();
    ws.send(
        &json!({"op": 1, "d": {"protocol": "udp", "data": {"address": address,
        "port": found.port, "mode": mode.as_str()}}}),
    )?;
    let sd = ws.until("Session Description", |v| v["op"] == 4)?;
    let key: Vec<u8> = sd["d"]["secret_key"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|b| b.as_u64())
                .map(|b| b as u8)
                .collect()
        })
        .unwrap_or_default();
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| parse_err("Session Description key", &sd))?;
    if speaker {
        ws.send(&json!({"op": 5, "d": {"speaking": 1, "delay": 0, "ssrc": ssrc}}))?;
    }
    // The main gateway is no longer needed: the voice state lives on the owner shard.
    drop(gw);
    ws.s.sock
        .set_nonblocking(true)
        .map_err(io("voice gateway non-blocking"))?;
    keeper
        .send((ws, interval_ms))
        .map_err(|_| BenchError::Client("keeper stopped".into()))?;
    udp.set_nonblocking(true).map_err(io("udp non-blocking"))?;
    Ok(JoinedUdp {
        room,
        index,
        udp,
        server,
        ssrc,
        mode,
        key,
    })
}

/// Joins every participant of `rooms` (speakers first in each room) over [`JOIN_THREADS`]
/// threads; returns them by (room, index).
pub fn join_all(
    http: SocketAddr,
    rooms: &[RoomUsers],
    speakers: usize,
    mode: Mode,
    keeper: &Keeper,
) -> Result<Vec<JoinedUdp>, BenchError> {
    let tls = tls_config()?;
    let mut work = Vec::new();
    for (r, room) in rooms.iter().enumerate() {
        for (i, u) in room.users.iter().enumerate() {
            work.push((r, i, room.guild_id, u.clone()));
        }
    }
    let work = Arc::new(Mutex::new(work.into_iter()));
    let mut handles = Vec::new();
    for _ in 0..JOIN_THREADS {
        let (work, tls) = (work.clone(), tls.clone());
        let tx = keeper
            .sender()
            .ok_or_else(|| BenchError::Client("keeper stopped".into()))?;
        handles.push(thread::spawn(
            move || -> Result<Vec<JoinedUdp>, BenchError> {
                let mut out = Vec::new();
                loop {
                    let next = work.lock().ok().and_then(|mut w| w.next());
                    let Some((r, i, g, u)) = next else {
                        return Ok(out);
                    };
                    let j =
                        join(http, &tls, r, i, g, &u, mode, i < speakers, &tx).map_err(|e| {
                            BenchError::Client(format!("room {r} participant {i}: {e}"))
                        })?;
                    out.push(j);
                }
            },
        ));
    }
    let mut all = Vec::new();
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(v)) => all.extend(v),
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => {
                first_err = first_err.or(Some(BenchError::Client("a join thread panicked".into())))
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    all.sort_by_key(|j| (j.room, j.index));
    Ok(all)
}
