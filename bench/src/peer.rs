//! What the reference echo peers (`echo-monoio`, `echo-glommio`) share: arguments and the ready
//! file, in the same shape as `hearth --ready-file`.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::limits::PEER_BUF_BYTES_DEFAULT;

/// Command line of an echo peer.
#[derive(Debug, clap::Parser)]
pub struct PeerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
    /// Where to write `{"pid":N,"echo":"IP:PORT"}` once listening.
    #[arg(long)]
    pub ready_file: PathBuf,
    /// Per-connection read buffer, bytes.
    #[arg(long, default_value_t = PEER_BUF_BYTES_DEFAULT)]
    pub buf_size: usize,
}

/// The ready-file contents for an echo listener on `echo`.
pub fn ready_json(pid: u32, echo: SocketAddr) -> String {
    serde_json::json!({ "pid": pid, "echo": echo.to_string() }).to_string()
}

/// Writes the ready file atomically (temp file + rename) so a poller never sees half of it.
pub fn write_ready_file(path: &Path, echo: SocketAddr) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, ready_json(std::process::id(), echo))?;
    fs::rename(&tmp, path)
}

extern "C" fn exit_now(_sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe; an echo server has nothing to flush.
    unsafe { libc::_exit(0) }
}

/// Makes SIGTERM end the process with status 0, as `hearth` does, so the harness can tell a
/// clean stop from a crash.
pub fn exit_zero_on_sigterm() -> io::Result<()> {
    let handler: extern "C" fn(libc::c_int) = exit_now;
    // SAFETY: installs a handler that only calls _exit.
    let prev = unsafe { libc::signal(libc::SIGTERM, handler as libc::sighandler_t) };
    if prev == libc::SIG_ERR {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_json_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&ready_json(7, "127.0.0.1:4000".parse().unwrap())).unwrap();
        assert_eq!(v["pid"], 7);
        assert_eq!(v["echo"], "127.0.0.1:4000");
    }
}
