//! Voice end to end through a real two-shard node: main-gateway op 4 gives VOICE_STATE_UPDATE
//! to the guild and VOICE_SERVER_UPDATE to the user; the voice gateway is reached over TLS
//! (rustls client pinning the node's generated certificate); IP discovery on the shard's UDP
//! port; two participants exchange XChaCha20-Poly1305 / AES-256-GCM rtpsize RTP through the SFU
//! and decrypt it with their own keys; speaking is relayed with user id and SSRC; replays,
//! muted senders and deafened receivers get nothing through.

mod wsclient;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_core::ws::{OpCode, Parsed, parse_frame, write_client_frame};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use serde_json::{Value, json};
use sfu::crypto::{Mode, TransportCipher};
use wsclient::{Client, create_user, http, http_with, start};

const VOICE_INTENTS: u64 = 1 | (1 << 7); // GUILDS | GUILD_VOICE_STATES
const WAIT: Duration = Duration::from_secs(20);

fn post(addr: SocketAddr, path: &str, body: Value) -> Value {
    let (status, body) = http(addr, "POST", path, &body.to_string());
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

fn identify(c: &mut Client, token: &str) {
    c.hello();
    c.send_json(
        json!({"op": 2, "d": {"token": token, "intents": VOICE_INTENTS, "properties": {}}}),
    );
    let ready = c.json();
    assert_eq!(ready["t"], "READY", "{ready}");
}

/// Reads gateway dispatches until `pred` matches one (skipping others).
fn until(c: &mut Client, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let v = c.json();
        if pred(&v) {
            return v;
        }
    }
    panic!("no {what}");
}

/// Trusts exactly the certificate the node generated (pinning), with real signature checks.
#[derive(Debug)]
struct Pinned(Vec<u8>);

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.0.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the pinned certificate".into()))
        }
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

/// A voice gateway client: WebSocket over TLS, as discord.py dials `wss://endpoint/?v=8`.
struct VoiceWs {
    s: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl VoiceWs {
    fn connect(endpoint: &str, cert: &[u8]) -> VoiceWs {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned(cert.to_vec())))
            .with_no_client_auth();
        let addr: SocketAddr = endpoint.parse().expect("endpoint is host:port");
        let name = ServerName::from(addr.ip());
        let conn = ClientConnection::new(Arc::new(config), name).expect("client");
        let tcp = TcpStream::connect(addr).expect("connect voice");
        tcp.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut s = StreamOwned::new(conn, tcp);
        write!(
            s,
            "GET /?v=8 HTTP/1.1\r\nHost: {endpoint}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .expect("upgrade");
        let mut ws = VoiceWs { s, buf: Vec::new() };
        loop {
            if let Some(p) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&ws.buf[..p]).into_owned();
                assert!(head.starts_with("HTTP/1.1 101"), "{head}");
                ws.buf.drain(..p + 4);
                return ws;
            }
            assert!(ws.fill() > 0, "eof during upgrade");
        }
    }

    fn fill(&mut self) -> usize {
        let mut tmp = [0u8; 16384];
        let n = self.s.read(&mut tmp).unwrap_or(0);
        self.buf.extend_from_slice(&tmp[..n]);
        n
    }

    fn send(&mut self, v: Value) {
        let mut out = Vec::new();
        write_client_frame(
            OpCode::Text,
            true,
            [9, 8, 7, 6],
            v.to_string().as_bytes(),
            &mut out,
        );
        self.s.write_all(&out).expect("send");
        self.s.flush().expect("flush");
    }

    /// The next frame: Ok(json) for text, Err(code) for a close.
    fn next(&mut self) -> Result<Value, u16> {
        loop {
            match parse_frame(&mut self.buf, false, 1 << 20) {
                Parsed::Frame(f) => {
                    let (op, payload, n) = (f.header.opcode, f.payload.to_vec(), f.consumed);
                    self.buf.drain(..n);
                    match op {
                        OpCode::Text => return Ok(serde_json::from_slice(&payload).expect("json")),
                        OpCode::Close => {
                            return Err(u16::from_be_bytes([payload[0], payload[1]]));
                        }
                        _ => {}
                    }
                }
                Parsed::NeedMore(_) => assert!(self.fill() > 0, "voice connection ended"),
                Parsed::Error(e) => panic!("bad frame {e:?}"),
            }
        }
    }

    /// Reads until a message with opcode `op`.
    fn op(&mut self, op: u64) -> Value {
        loop {
            let v = self.next().expect("open");
            if v["op"] == op {
                return v;
            }
        }
    }

    fn op_where(&mut self, op: u64, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self.op(op);
            if pred(&v) {
                return v;
            }
        }
    }
}

struct Participant {
    user: u64,
    gw: Client,
    ws: VoiceWs,
    udp: UdpSocket,
    server: SocketAddr,
    ssrc: u32,
    cipher: TransportCipher,
    counter: u32,
    seq: u16,
    /// What a reconnect needs: guild, main session, voice endpoint, certificate, mode.
    g: String,
    session_id: String,
    endpoint: String,
    cert: Vec<u8>,
    mode: String,
}

/// A voice gateway session after Session Description: (ws, UDP server, SSRC, cipher).
type Handshake = (VoiceWs, SocketAddr, u32, TransportCipher);

/// The voice handshake the way discord.py does it (IP discovery before Select Protocol), on
/// `udp` (kept across reconnects, as discord.py keeps its socket).
fn handshake(
    endpoint: &str,
    token: &str,
    ids: (&str, u64, &str),
    cert: &[u8],
    mode: &str,
    udp: &UdpSocket,
) -> Handshake {
    let (g, user, session_id) = ids;
    let mut ws = VoiceWs::connect(endpoint, cert);
    ws.send(
        json!({"op": 0, "d": {"server_id": g, "user_id": user.to_string(),
        "session_id": session_id, "token": token, "max_dave_protocol_version": 0}}),
    );
    let hello = ws.op(8);
    assert!(hello["d"]["heartbeat_interval"].as_u64().expect("interval") > 0);
    let ready = ws.op(2);
    let ssrc = ready["d"]["ssrc"].as_u64().expect("ssrc") as u32;
    let modes: Vec<&str> = ready["d"]["modes"]
        .as_array()
        .expect("modes")
        .iter()
        .map(|m| m.as_str().expect("mode"))
        .collect();
    assert!(
        modes.contains(&"aead_xchacha20_poly1305_rtpsize"),
        "{modes:?}"
    );
    assert!(modes.contains(&"aead_aes256_gcm_rtpsize"), "{modes:?}");
    let server: SocketAddr = format!(
        "{}:{}",
        ready["d"]["ip"].as_str().expect("ip"),
        ready["d"]["port"]
    )
    .parse()
    .expect("udp addr");

    let mut req = [0u8; 74];
    sfu::ipdisc::build_request(ssrc, &mut req);
    udp.send_to(&req, server).expect("discovery");
    let mut answer = [0u8; 1500];
    let found = loop {
        let (n, from) = udp.recv_from(&mut answer).expect("discovery answer");
        // Across a reconnect the socket may still hold a datagram of the old server.
        if from == server
            && let Ok(found) = sfu::ipdisc::parse(&answer[..n])
        {
            break found;
        }
    };
    let local = udp.local_addr().expect("local");
    assert_eq!(found.address().expect("ascii"), "127.0.0.1");
    assert_eq!(found.port, local.port());

    ws.send(
        json!({"op": 1, "d": {"protocol": "udp", "data": {"address": "127.0.0.1",
        "port": found.port, "mode": mode}}}),
    );
    let sd = ws.op(4);
    assert_eq!(sd["d"]["mode"], mode);
    assert_eq!(sd["d"]["dave_protocol_version"], 0);
    let key: Vec<u8> = sd["d"]["secret_key"]
        .as_array()
        .expect("key")
        .iter()
        .map(|b| b.as_u64().expect("byte") as u8)
        .collect();
    let key: [u8; 32] = key.try_into().expect("32-byte key");
    let cipher = TransportCipher::new(Mode::from_name(mode).expect("mode"), &key);
    (ws, server, ssrc, cipher)
}

impl Participant {
    /// Op 4, then the voice handshake the way discord.py does it (discovery before Select).
    fn join(
        mut gw: Client,
        user: u64,
        g: &str,
        channel: &str,
        cert: &[u8],
        mode: &str,
    ) -> Participant {
        gw.send_json(json!({"op": 4, "d": {"guild_id": g, "channel_id": channel,
            "self_mute": false, "self_deaf": false}}));
        let state = until(&mut gw, "own VOICE_STATE_UPDATE", |v| {
            v["t"] == "VOICE_STATE_UPDATE"
                && v["d"]["user_id"].as_str() == Some(user.to_string().as_str())
        });
        assert_eq!(state["d"]["channel_id"], channel);
        assert_eq!(state["d"]["guild_id"], g);
        assert_eq!(state["d"]["member"]["user"]["id"], user.to_string());
        let session_id = state["d"]["session_id"].as_str().expect("sid").to_owned();
        let server = until(&mut gw, "VOICE_SERVER_UPDATE", |v| {
            v["t"] == "VOICE_SERVER_UPDATE"
        });
        assert_eq!(server["d"]["guild_id"], g);
        let endpoint = server["d"]["endpoint"]
            .as_str()
            .expect("endpoint")
            .to_owned();
        assert!(endpoint.starts_with("127.0.0.1:"), "{endpoint}");
        let token = server["d"]["token"].as_str().expect("token").to_owned();

        let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
        udp.set_read_timeout(Some(WAIT)).expect("timeout");
        let (ws, server, ssrc, cipher) =
            handshake(&endpoint, &token, (g, user, &session_id), cert, mode, &udp);
        Participant {
            user,
            gw,
            ws,
            udp,
            server,
            ssrc,
            cipher,
            counter: 0,
            seq: 0,
            g: g.to_owned(),
            session_id,
            endpoint,
            cert: cert.to_vec(),
            mode: mode.to_owned(),
        }
    }

    /// Failover, as discord.py lives it: a VOICE_SERVER_UPDATE with a new token and another
    /// endpoint arrives on the main gateway, the old voice connection is closed with 4014, and
    /// the client identifies on the new endpoint (keeping its UDP socket, sequence and nonce).
    /// Returns the new endpoint.
    fn follow_move(&mut self) -> String {
        let update = until(&mut self.gw, "VOICE_SERVER_UPDATE after the move", |v| {
            v["t"] == "VOICE_SERVER_UPDATE"
        });
        assert_eq!(update["d"]["guild_id"], self.g.as_str());
        let endpoint = update["d"]["endpoint"]
            .as_str()
            .expect("endpoint")
            .to_owned();
        assert_ne!(endpoint, self.endpoint, "moved to another voice server");
        let token = update["d"]["token"].as_str().expect("token").to_owned();
        let closed = loop {
            match self.ws.next() {
                Ok(_) => continue,
                Err(code) => break code,
            }
        };
        assert_eq!(
            closed, 4014,
            "the old server closes with 4014 (voice server changed)"
        );
        let (ws, server, ssrc, cipher) = handshake(
            &endpoint,
            &token,
            (&self.g, self.user, &self.session_id),
            &self.cert,
            &self.mode,
            &self.udp,
        );
        assert_ne!(server, self.server, "the new server's own UDP port");
        (self.ws, self.server, self.ssrc, self.cipher) = (ws, server, ssrc, cipher);
        self.endpoint = endpoint.clone();
        endpoint
    }

    /// Seals one Opus frame tagged `tag` (first payload bytes) and returns the datagram.
    fn packet(&mut self, tag: u32) -> Vec<u8> {
        let mut header = [0u8; 12];
        header[0] = 0x80;
        header[1] = 0x78;
        header[2..4].copy_from_slice(&self.seq.to_be_bytes());
        header[4..8].copy_from_slice(&(u32::from(self.seq) * 960).to_be_bytes());
        header[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        let mut opus = [0xFCu8, 0, 0, 0, 0, 0x55, 0x66, 0x77];
        opus[1..5].copy_from_slice(&tag.to_be_bytes());
        let mut out = vec![0u8; 128];
        let n = self
            .cipher
            .seal_into(self.counter, &header, &opus, &mut out)
            .expect("seal");
        out.truncate(n);
        self.counter += 1;
        self.seq = self.seq.wrapping_add(1);
        out
    }

    fn send_tagged(&mut self, tag: u32) -> Vec<u8> {
        let p = self.packet(tag);
        self.udp.send_to(&p, self.server).expect("send rtp");
        p
    }

    /// The next media packet: (sender SSRC, tag), decrypted with this participant's key.
    fn recv_media(&self) -> (u32, u32) {
        let mut buf = [0u8; 1500];
        loop {
            let (n, from) = self.udp.recv_from(&mut buf).expect("media arrives");
            // A reconnecting client gets its discovery answer twice: skip the copy.
            if sfu::ipdisc::parse(&buf[..n])
                .is_ok_and(|d| d.kind == sfu::ipdisc::DiscoveryKind::Response)
            {
                continue;
            }
            assert_eq!(from, self.server);
            let h = sfu::rtp::parse(&buf[..n]).expect("rtp");
            let opened = self
                .cipher
                .open_in_place(&mut buf[..n], h.aad_len())
                .expect("decrypts with my own key");
            let p = &buf[12..12 + opened.plaintext_len];
            return (h.ssrc, u32::from_be_bytes([p[1], p[2], p[3], p[4]]));
        }
    }

    fn op4(&mut self, g: &str, channel: Option<&str>, mute: bool, deaf: bool) {
        self.gw
            .send_json(json!({"op": 4, "d": {"guild_id": g, "channel_id": channel,
            "self_mute": mute, "self_deaf": deaf}}));
    }
}

/// Alice, who owns a new guild, and Bob, a member of it.
struct TwoMembers {
    alice: u64,
    alice_token: String,
    bob: u64,
    bob_token: String,
    /// The guild's id.
    g: String,
}

/// Two users and a guild named `name` owned by the first with the second as a member.
fn guild_of_two(addr: SocketAddr, name: &str) -> TwoMembers {
    let (alice, alice_token) = create_user(addr, "alice");
    let (bob, bob_token) = create_user(addr, "bob");
    let guild = post(
        addr,
        "/control/guilds",
        json!({"name": name, "owner_id": alice.to_string()}),
    );
    let g = guild["id"].as_str().expect("id").to_owned();
    post(
        addr,
        &format!("/control/guilds/{g}/members"),
        json!({"user_id": bob.to_string()}),
    );
    TwoMembers {
        alice,
        alice_token,
        bob,
        bob_token,
        g,
    }
}

/// A gateway session identified with `token`, and its (only) guild's GUILD_CREATE.
fn identified(addr: SocketAddr, token: &str) -> (Client, Value) {
    let mut c = Client::connect(addr, "?v=10");
    identify(&mut c, token);
    let gc = until(&mut c, "GUILD_CREATE", |v| v["t"] == "GUILD_CREATE");
    (c, gc)
}

/// The id of the first voice channel of a GUILD_CREATE.
fn voice_channel_of(gc: &Value) -> String {
    gc["d"]["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .find(|c| c["type"] == 2)
        .expect("a voice channel")["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// Waits on `watcher`'s gateway for the state of `user` with the given flags.
fn state_seen(watcher: &mut Client, user: u64, mute: bool, deaf: bool) -> Value {
    until(watcher, "VOICE_STATE_UPDATE", |v| {
        v["t"] == "VOICE_STATE_UPDATE"
            && v["d"]["user_id"].as_str() == Some(user.to_string().as_str())
            && v["d"]["self_mute"] == mute
            && v["d"]["self_deaf"] == deaf
    })
}

#[test]
fn two_participants_talk_through_the_sfu_over_tls_and_udp() {
    let node = start(41_250, 10_000);
    let addr = node.addrs().http;
    let cert = node.voice_cert_der().expect("voice on").to_vec();
    assert_eq!(node.voice_addrs().len(), 2, "a voice server per shard");
    let (ports_tls, ports_udp): (Vec<u16>, Vec<u16>) = node
        .voice_addrs()
        .iter()
        .map(|(t, u)| (t.port(), u.port()))
        .unzip();
    assert_ne!(
        ports_tls[0], ports_tls[1],
        "each shard has its own voice TLS port"
    );
    assert_ne!(
        ports_udp[0], ports_udp[1],
        "each shard has its own UDP port"
    );

    let TwoMembers {
        alice,
        alice_token,
        bob,
        bob_token,
        g,
    } = guild_of_two(addr, "Voice Guild");
    let (ga, gc) = identified(addr, &alice_token);
    let voice_channel = voice_channel_of(&gc);
    let (mut gb, _) = identified(addr, &bob_token);

    // A voice token for someone else's session is refused with 4004.
    {
        let mut a = Participant::join(
            ga,
            alice,
            &g,
            &voice_channel,
            &cert,
            "aead_xchacha20_poly1305_rtpsize",
        );
        // Bob sees Alice's state on his gateway.
        let seen = state_seen(&mut gb, alice, false, false);
        assert_eq!(seen["d"]["channel_id"], voice_channel);
        let mut b = Participant::join(
            gb,
            bob,
            &g,
            &voice_channel,
            &cert,
            "aead_aes256_gcm_rtpsize",
        );
        assert_ne!(a.ssrc, b.ssrc);

        // Each learns the other's SSRC: op 11 then op 5.
        let connect = a.ws.op(11);
        assert_eq!(connect["d"]["user_ids"], json!([bob.to_string()]));
        let sp = a.ws.op(5);
        assert_eq!(sp["d"]["user_id"], bob.to_string());
        assert_eq!(sp["d"]["ssrc"], b.ssrc);
        let connect = b.ws.op(11);
        assert_eq!(connect["d"]["user_ids"], json!([alice.to_string()]));

        // Alice speaks: Bob is told with her user id and SSRC.
        a.ws.send(json!({"op": 5, "d": {"speaking": 1, "delay": 0, "ssrc": a.ssrc}}));
        let sp = b.ws.op_where(5, |v| v["d"]["speaking"] == 1);
        assert_eq!(sp["d"]["user_id"], alice.to_string());
        assert_eq!(sp["d"]["ssrc"], a.ssrc);

        // Heartbeat v8 is acknowledged with the nonce.
        a.ws.send(json!({"op": 3, "d": {"t": 1234, "seq_ack": 3}}));
        assert_eq!(a.ws.op(6)["d"]["t"], 1234);

        // 8-byte keepalives are ignored; audio flows both ways, each decrypting with its own key.
        b.udp.send_to(&[0u8; 8], b.server).expect("keepalive");
        for tag in 1..=20u32 {
            a.send_tagged(tag);
            assert_eq!(b.recv_media(), (a.ssrc, tag));
        }
        let last = a.send_tagged(21);
        assert_eq!(b.recv_media(), (a.ssrc, 21));
        b.send_tagged(500);
        assert_eq!(a.recv_media(), (b.ssrc, 500));

        // A replayed packet is dropped: the next thing Bob gets is the fresh one after it.
        a.udp.send_to(&last, a.server).expect("replay");
        a.send_tagged(22);
        assert_eq!(b.recv_media(), (a.ssrc, 22));

        // A forged packet (bad tag) is dropped too.
        let mut forged = a.packet(999);
        let n = forged.len();
        forged[n - 6] ^= 1;
        a.udp.send_to(&forged, a.server).expect("forged");
        a.send_tagged(23);
        assert_eq!(b.recv_media(), (a.ssrc, 23));

        // Self-muted: Alice's media is dropped until she unmutes.
        a.op4(&g, Some(&voice_channel), true, false);
        state_seen(&mut b.gw, alice, true, false);
        a.send_tagged(30);
        a.op4(&g, Some(&voice_channel), false, false);
        state_seen(&mut b.gw, alice, false, false);
        a.send_tagged(31);
        assert_eq!(
            b.recv_media(),
            (a.ssrc, 31),
            "muted media was not forwarded"
        );

        // Bob deafened: he receives nothing until he undeafens.
        b.op4(&g, Some(&voice_channel), false, true);
        state_seen(&mut a.gw, bob, false, true);
        a.send_tagged(40);
        b.op4(&g, Some(&voice_channel), false, false);
        state_seen(&mut a.gw, bob, false, false);
        a.send_tagged(41);
        assert_eq!(
            b.recv_media(),
            (a.ssrc, 41),
            "a deafened receiver got audio"
        );

        // Bob leaves voice: his voice connection is closed with 4014, Alice is told (op 13),
        // the guild sees a null channel.
        b.op4(&g, None, false, false);
        let left = state_seen(&mut a.gw, bob, false, false);
        assert_eq!(left["d"]["channel_id"], Value::Null);
        let closed = loop {
            match b.ws.next() {
                Ok(_) => continue,
                Err(code) => break code,
            }
        };
        assert_eq!(closed, 4014);
        let gone = a.ws.op(13);
        assert_eq!(gone["d"]["user_id"], bob.to_string());
        let _ = a.user;
    }

    // Identify with a wrong token: 4004.
    let (t, _) = node.voice_addrs()[0];
    let mut ws = VoiceWs::connect(&t.to_string(), &cert);
    ws.send(
        json!({"op": 0, "d": {"server_id": g, "user_id": alice.to_string(),
        "session_id": "x", "token": "wrong"}}),
    );
    let code = loop {
        match ws.next() {
            Ok(_) => continue,
            Err(code) => break code,
        }
    };
    assert_eq!(code, 4004);
    node.stop();
    node.join().expect("clean stop");
}

/// The voice server list of the admin API, by shard.
fn voice_servers(addr: SocketAddr) -> Vec<Value> {
    let (status, body) = http(addr, "GET", "/admin/voice/servers", "");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    v["servers"].as_array().expect("servers").clone()
}

/// Sum over shards of a Prometheus counter.
fn metric_sum(addr: SocketAddr, name: &str) -> u64 {
    let (status, body) = http(addr, "GET", "/metrics", "");
    assert_eq!(status, 200);
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Both directions carry audio again, each side decrypting with its own (new) key.
fn audio_flows(a: &mut Participant, b: &mut Participant, first_tag: u32) {
    for tag in first_tag..first_tag + 10 {
        a.send_tagged(tag);
        assert_eq!(b.recv_media(), (a.ssrc, tag));
    }
    b.send_tagged(first_tag + 500);
    assert_eq!(a.recv_media(), (b.ssrc, first_tag + 500));
}

/// Polls `pred` on the voice server list until it holds (health changes take a few rounds).
fn until_servers(addr: SocketAddr, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = voice_servers(addr);
        if pred(&list) {
            return list;
        }
        assert!(Instant::now() < deadline, "no {what}: {list:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn draining_or_silencing_a_voice_server_moves_its_guild_and_clients_reconnect() {
    // Long main-gateway heartbeats: this test does not heartbeat on the main gateway.
    let node = start(600_000, 60_000);
    let addr = node.addrs().http;
    let cert = node.voice_cert_der().expect("voice on").to_vec();
    let endpoints: Vec<String> = node
        .voice_addrs()
        .iter()
        .map(|(t, _)| t.to_string())
        .collect();
    let shard_of = |endpoint: &str| {
        endpoints
            .iter()
            .position(|e| e == endpoint)
            .expect("a shard's endpoint")
    };

    // The admin voice endpoints are guarded like the other admin endpoints.
    let (status, _) = http(addr, "POST", "/admin/voice/servers/9/drain", "{}");
    assert_eq!(status, 404, "no such shard");
    let listed = voice_servers(addr);
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|s| s["healthy"] == true && s["drained"] == false),
        "{listed:?}"
    );

    let TwoMembers {
        alice,
        alice_token,
        bob,
        bob_token,
        g,
    } = guild_of_two(addr, "Failover Guild");
    let (ga, gc) = identified(addr, &alice_token);
    assert_eq!(gc["d"]["voice_states"], json!([]), "nobody in voice yet");
    let voice_channel = voice_channel_of(&gc);
    let mut a = Participant::join(
        ga,
        alice,
        &g,
        &voice_channel,
        &cert,
        "aead_xchacha20_poly1305_rtpsize",
    );

    // A session identifying now finds Alice's voice state in GUILD_CREATE.
    let (gb, gc) = identified(addr, &bob_token);
    let states = gc["d"]["voice_states"].as_array().expect("voice_states");
    assert_eq!(states.len(), 1, "{states:?}");
    assert_eq!(states[0]["user_id"], alice.to_string());
    assert_eq!(states[0]["channel_id"], voice_channel);
    assert_eq!(states[0]["session_id"], a.session_id);

    let mut b = Participant::join(
        gb,
        bob,
        &g,
        &voice_channel,
        &cert,
        "aead_aes256_gcm_rtpsize",
    );
    assert_eq!(a.endpoint, b.endpoint, "one voice server per guild");
    audio_flows(&mut a, &mut b, 1);

    // 1. Drain: the guild moves to the other shard's voice server.
    let first = shard_of(&a.endpoint);
    let drained = post(
        addr,
        &format!("/admin/voice/servers/{first}/drain"),
        json!({}),
    );
    assert_eq!(drained["drained"], true);
    assert_eq!(drained["guilds_moving"], 1, "{drained}");
    let to = a.follow_move();
    assert_eq!(b.follow_move(), to);
    let second = shard_of(&to);
    assert_ne!(second, first);
    audio_flows(&mut a, &mut b, 100);
    let listed = voice_servers(addr);
    assert_eq!(listed[first]["drained"], true, "{listed:?}");
    assert_eq!(listed[first]["participants"], 0, "{listed:?}");
    assert_eq!(listed[second]["participants"], 2, "{listed:?}");
    assert!(metric_sum(addr, "hearth_voice_failover_server_updates_total") >= 2);
    assert!(metric_sum(addr, "hearth_voice_failover_evicted_total") >= 2);
    assert_eq!(metric_sum(addr, "hearth_voice_server_drained"), 1);
    // Moved clients get their discovery answer a second time, a moment later.
    let deadline = Instant::now() + WAIT;
    while metric_sum(addr, "hearth_voice_discovery_repeated_total") < 2 {
        assert!(Instant::now() < deadline, "no repeated discovery answers");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A drained server takes no new guilds: a second guild's voice goes to the other one.
    let other = post(
        addr,
        "/control/guilds",
        json!({"name": "Second Guild", "owner_id": alice.to_string()}),
    );
    let og = other["id"].as_str().expect("id").to_owned();
    let oc = until(&mut a.gw, "second GUILD_CREATE", |v| {
        v["t"] == "GUILD_CREATE" && v["d"]["id"] == og.as_str()
    })["d"]["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .find(|c| c["type"] == 2)
        .expect("a voice channel")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    a.op4(&og, Some(&oc), false, false);
    let update = until(&mut a.gw, "second guild's VOICE_SERVER_UPDATE", |v| {
        v["t"] == "VOICE_SERVER_UPDATE" && v["d"]["guild_id"] == og.as_str()
    });
    assert_eq!(
        update["d"]["endpoint"],
        to.as_str(),
        "not the drained server"
    );
    a.op4(&og, None, false, false);

    // 2. Both drained: nowhere to go, the guild stays. Once the first is undrained, the owner's
    // next health round moves the stranded guild there.
    let stuck = post(
        addr,
        &format!("/admin/voice/servers/{second}/drain"),
        json!({}),
    );
    assert_eq!(stuck["guilds_moving"], 0, "{stuck}");
    assert!(metric_sum(addr, "hearth_voice_failover_no_target_total") >= 1);
    post(
        addr,
        &format!("/admin/voice/servers/{first}/undrain"),
        json!({}),
    );
    let back = a.follow_move();
    assert_eq!(shard_of(&back), first);
    assert_eq!(b.follow_move(), back);
    audio_flows(&mut a, &mut b, 200);
    post(
        addr,
        &format!("/admin/voice/servers/{second}/undrain"),
        json!({}),
    );

    // 3. Health: the current server stops answering pings (fault injection); the owner
    // declares it down after the miss count and moves the guild to the other one.
    // Fresh voice heartbeats: the next move waits for several health rounds.
    for p in [&mut a, &mut b] {
        p.ws.send(json!({"op": 3, "d": {"t": 1, "seq_ack": 0}}));
    }
    let f = post(
        addr,
        &format!("/admin/voice/servers/{first}/faults"),
        json!({"ignore_health_pings": true}),
    );
    assert_eq!(f["ignore_health_pings"], true);
    let away = a.follow_move();
    assert_eq!(shard_of(&away), second);
    assert_eq!(b.follow_move(), away);
    audio_flows(&mut a, &mut b, 300);
    let listed = voice_servers(addr);
    assert_eq!(listed[first]["healthy"], false, "{listed:?}");
    assert_eq!(listed[first]["ignoring_health_pings"], true, "{listed:?}");
    assert_eq!(listed[first]["participants"], 0, "{listed:?}");
    assert!(metric_sum(addr, "hearth_voice_health_servers_down_total") >= 1);

    // The switch off: the server answers again and is healthy in every shard's view.
    post(
        addr,
        &format!("/admin/voice/servers/{first}/faults"),
        json!({"ignore_health_pings": false}),
    );
    until_servers(addr, "a healthy server after the fault", |l| {
        l.iter().all(|s| s["healthy"] == true)
    });
    node.stop();
    node.join().expect("clean stop");
}

/// A REST request with a bot token; returns (status, body).
fn rest(addr: SocketAddr, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let auth = format!("authorization: Bot {token}\r\n");
    http_with(addr, method, &format!("/api/v10{path}"), &auth, body)
}

/// Alice and Bob of [`guild_of_two`], both in its voice channel, with media checked to flow.
struct InVoice {
    a: Participant,
    b: Participant,
    alice_token: String,
    bob: u64,
    g: String,
    voice_channel: String,
}

/// A guild of two (named `name`) whose members both joined its voice channel.
fn both_in_voice(addr: SocketAddr, cert: &[u8], name: &str) -> InVoice {
    let TwoMembers {
        alice,
        alice_token,
        bob,
        bob_token,
        g,
    } = guild_of_two(addr, name);
    let (ga, gc) = identified(addr, &alice_token);
    let voice_channel = voice_channel_of(&gc);
    let (gb, _) = identified(addr, &bob_token);
    let mode = "aead_xchacha20_poly1305_rtpsize";
    let a = Participant::join(ga, alice, &g, &voice_channel, cert, mode);
    let mut b = Participant::join(gb, bob, &g, &voice_channel, cert, mode);
    b.send_tagged(1);
    assert_eq!(a.recv_media(), (b.ssrc, 1));
    InVoice {
        a,
        b,
        alice_token,
        bob,
        g,
        voice_channel,
    }
}

#[test]
fn a_server_mute_or_a_kick_is_applied_to_a_member_in_voice() {
    let node = start(600_000, 60_000);
    let addr = node.addrs().http;
    let cert = node.voice_cert_der().expect("voice on").to_vec();
    let InVoice {
        mut a,
        mut b,
        alice_token,
        bob,
        g,
        voice_channel,
    } = both_in_voice(addr, &cert, "Moderated Guild");

    // Server mute (PATCH member): announced as Bob's voice state, and his media stops.
    let server_muted = |a: &mut Participant, on: bool| {
        until(&mut a.gw, "server-muted VOICE_STATE_UPDATE", |v| {
            v["t"] == "VOICE_STATE_UPDATE"
                && v["d"]["user_id"].as_str() == Some(bob.to_string().as_str())
                && v["d"]["mute"] == on
        })
    };
    let member = format!("/guilds/{g}/members/{bob}");
    let (status, body) = rest(addr, "PATCH", &member, &alice_token, r#"{"mute":true}"#);
    assert_eq!(status, 200, "{body}");
    let st = server_muted(&mut a, true);
    assert_eq!(st["d"]["channel_id"], voice_channel);
    b.send_tagged(2);
    let (status, body) = rest(addr, "PATCH", &member, &alice_token, r#"{"mute":false}"#);
    assert_eq!(status, 200, "{body}");
    server_muted(&mut a, false);
    b.send_tagged(3);
    assert_eq!(
        a.recv_media(),
        (b.ssrc, 3),
        "a server-muted member's media was forwarded"
    );

    // Kicked: Bob leaves voice (4014 on his voice connection), the guild sees him leave.
    let (status, body) = rest(addr, "DELETE", &member, &alice_token, "");
    assert_eq!(status, 204, "{body}");
    let left = until(&mut a.gw, "kicked member's VOICE_STATE_UPDATE", |v| {
        v["t"] == "VOICE_STATE_UPDATE"
            && v["d"]["user_id"].as_str() == Some(bob.to_string().as_str())
            && v["d"]["channel_id"].is_null()
    });
    assert_eq!(left["d"]["guild_id"], g.as_str());
    let closed = loop {
        match b.ws.next() {
            Ok(_) => continue,
            Err(code) => break code,
        }
    };
    assert_eq!(closed, 4014);
    assert_eq!(a.ws.op(13)["d"]["user_id"], bob.to_string());
    node.stop();
    node.join().expect("clean stop");
}

#[test]
fn a_main_gateway_session_closed_for_good_leaves_voice() {
    let node = start(600_000, 60_000);
    let addr = node.addrs().http;
    let cert = node.voice_cert_der().expect("voice on").to_vec();
    let InVoice {
        mut a,
        mut b,
        alice_token,
        bob,
        g,
        ..
    } = both_in_voice(addr, &cert, "Leaving Guild");

    // A client close with 1000 ends Bob's session for good (not resumable): his voice state goes
    // with it, announced to the guild as a leave.
    b.gw.send_frame(OpCode::Close, true, &1000u16.to_be_bytes());
    let left = until(&mut a.gw, "VOICE_STATE_UPDATE leaving", |v| {
        v["t"] == "VOICE_STATE_UPDATE"
            && v["d"]["user_id"].as_str() == Some(bob.to_string().as_str())
            && v["d"]["channel_id"].is_null()
    });
    assert_eq!(left["d"]["guild_id"], g.as_str());

    // A new session sees only Alice in voice.
    let (_, gc) = identified(addr, &alice_token);
    let states = gc["d"]["voice_states"].as_array().expect("voice_states");
    assert_eq!(states.len(), 1, "{states:?}");
    assert_eq!(states[0]["user_id"], a.user.to_string());
    node.stop();
    node.join().expect("clean stop");
}
