//! TLS for the voice gateway: the server configuration (rustls on the ring provider, a PEM
//! certificate from `[tls]` or a self-signed one made at start) and one connection's byte
//! pipeline (TLS records in, WebSocket frames of plaintext out), sans-IO over the shard's
//! receive and send.
//!
//! Clients only dial `wss://` for voice, so there is no plain-text variant.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection};

/// Plaintext bytes read out of rustls per call; records are at most 16 KiB.
const PLAINTEXT_CHUNK_BYTES: usize = 16 * 1024;
/// Plaintext a voice connection may hold undecoded (a partial WebSocket frame). Voice gateway
/// messages are capped far lower (`sfu::limits::VOICE_MESSAGE_LEN_MAX`).
pub const VOICE_INBUF_BYTES_MAX: usize = 64 * 1024;

/// Where a PEM certificate chain and key live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert_path: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
}

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// A PEM file could not be read or parsed.
    #[error("reading {path}: {detail}")]
    Pem {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The self-signed certificate could not be generated.
    #[error("generating the self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate or key.
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The server configuration every shard shares, and the certificate it presents (tests trust it).
#[derive(Clone, Debug)]
pub struct VoiceTls {
    /// rustls server configuration (ring provider).
    pub config: Arc<ServerConfig>,
    /// The leaf certificate, DER.
    pub cert_der: Vec<u8>,
}

impl VoiceTls {
    /// Loads `files`, or generates a self-signed certificate for `localhost` and `hosts` (the dev
    /// profile: clients must be told not to verify, or to trust `cert_der`).
    pub fn new(files: Option<&TlsFiles>, hosts: &[String]) -> Result<VoiceTls, TlsSetupError> {
        let (chain, key) = match files {
            Some(f) => load_pem(f)?,
            None => self_signed(hosts)?,
        };
        let cert_der = chain.first().map(|c| c.to_vec()).unwrap_or_default();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        Ok(VoiceTls {
            config: Arc::new(config),
            cert_der,
        })
    }
}

type CertAndKey = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn load_pem(f: &TlsFiles) -> Result<CertAndKey, TlsSetupError> {
    let pem_err = |path: &PathBuf, e: &dyn std::fmt::Display| TlsSetupError::Pem {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(&f.cert_path)
        .map_err(|e| pem_err(&f.cert_path, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(&f.cert_path, &e))?;
    if chain.is_empty() {
        return Err(pem_err(&f.cert_path, &"no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(&f.key_path).map_err(|e| pem_err(&f.key_path, &e))?;
    Ok((chain, key))
}

fn self_signed(hosts: &[String]) -> Result<CertAndKey, TlsSetupError> {
    let mut names = vec!["localhost".to_owned()];
    names.extend(hosts.iter().filter(|h| *h != "localhost").cloned());
    let ck = rcgen::generate_simple_self_signed(names)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    Ok((vec![ck.cert.der().clone()], key))
}

/// What a connection's bytes did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsStatus {
    /// Fine; plaintext (if any) was appended.
    Open,
    /// The peer sent close_notify or the TLS layer failed: flush what is queued, then close.
    Closed,
}

/// One TLS connection, sans-IO: ciphertext in with [`TlsPipe::feed`], plaintext out of
/// `plain`, plaintext to send with [`TlsPipe::write`], ciphertext to send with
/// [`TlsPipe::drain`].
pub struct TlsPipe {
    conn: ServerConnection,
    /// Decrypted bytes not yet consumed by the WebSocket layer.
    pub plain: Vec<u8>,
}

impl std::fmt::Debug for TlsPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPipe")
            .field("plain", &self.plain.len())
            .finish_non_exhaustive()
    }
}

impl TlsPipe {
    /// A new server-side connection.
    pub fn new(config: &Arc<ServerConfig>) -> Result<TlsPipe, rustls::Error> {
        Ok(TlsPipe {
            conn: ServerConnection::new(Arc::clone(config))?,
            plain: Vec::new(),
        })
    }

    /// Feeds received ciphertext; decrypted bytes are appended to `plain`.
    pub fn feed(&mut self, mut data: &[u8]) -> TlsStatus {
        let mut chunk = [0u8; PLAINTEXT_CHUNK_BYTES];
        while !data.is_empty() {
            match self.conn.read_tls(&mut data) {
                Ok(0) => return TlsStatus::Closed,
                Ok(_) => {}
                // rustls refuses more while its plaintext buffer is full; empty it below.
                Err(_) if self.drain_plaintext(&mut chunk) > 0 => continue,
                Err(_) => return TlsStatus::Closed,
            }
            if self.conn.process_new_packets().is_err() {
                // The alert is queued; `drain` sends it.
                return TlsStatus::Closed;
            }
            self.drain_plaintext(&mut chunk);
            if self.plain.len() > VOICE_INBUF_BYTES_MAX {
                return TlsStatus::Closed;
            }
        }
        // Ok(0) here means the peer's close_notify arrived (no data is ever left unread above).
        match self.conn.reader().read(&mut chunk) {
            Ok(0) => TlsStatus::Closed,
            Ok(n) => {
                self.plain
                    .extend_from_slice(chunk.get(..n).unwrap_or_default());
                TlsStatus::Open
            }
            Err(_) => TlsStatus::Open,
        }
    }

    fn drain_plaintext(&mut self, chunk: &mut [u8]) -> usize {
        let mut total = 0;
        loop {
            match self.conn.reader().read(chunk) {
                Ok(0) | Err(_) => return total,
                Ok(n) => {
                    self.plain
                        .extend_from_slice(chunk.get(..n).unwrap_or_default());
                    total += n;
                }
            }
        }
    }

    /// Queues plaintext to send (encrypted on the next [`TlsPipe::drain`]).
    pub fn write(&mut self, plaintext: &[u8]) {
        // Writes are buffered in rustls without limit once the handshake is done; ours are
        // bounded by the voice session (small JSON frames).
        let _ = self.conn.writer().write_all(plaintext);
    }

    /// Sends close_notify (queued for [`TlsPipe::drain`]).
    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }

    /// Appends every ciphertext byte ready to go to `out`.
    pub fn drain(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            match self.conn.write_tls(out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Whether ciphertext is waiting.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }
}
