//! Reference peer: a plain TCP echo server on a glommio `LocalExecutor`, TCP_NODELAY on every
//! connection.

use std::process::ExitCode;

use bench::peer::{PeerArgs, write_ready_file};
use clap::Parser;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};

fn main() -> ExitCode {
    let args = PeerArgs::parse();
    if let Err(e) = bench::peer::exit_zero_on_sigterm() {
        eprintln!("echo-glommio: cannot handle SIGTERM ({e}); it will still stop the process");
    }
    // glommio locks its io_uring buffers; the default 8 MiB RLIMIT_MEMLOCK is too small.
    if let Err(e) = bench::sys::raise_memlock() {
        eprintln!("echo-glommio: cannot raise RLIMIT_MEMLOCK ({e}); continuing");
    }
    // Unbound: the harness pins the whole process to the server core before exec.
    let executor = match LocalExecutorBuilder::new(Placement::Unbound).make() {
        Ok(ex) => ex,
        Err(e) => {
            eprintln!("echo-glommio: cannot start executor: {e}");
            return ExitCode::FAILURE;
        }
    };
    match executor.run(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo-glommio: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: PeerArgs) -> std::io::Result<()> {
    let listener = TcpListener::bind(args.addr).map_err(std::io::Error::from)?;
    let local = listener.local_addr().map_err(std::io::Error::from)?;
    write_ready_file(&args.ready_file, local)?;
    loop {
        match listener.accept().await {
            Ok(stream) => {
                stream.set_nodelay(true).map_err(std::io::Error::from)?;
                glommio::spawn_local(echo(stream, args.buf_size)).detach();
            }
            // Out of fds or a connection reset before accept: keep serving the others.
            Err(e) => eprintln!("echo-glommio: accept: {e}"),
        }
    }
}

async fn echo(mut stream: TcpStream, buf_size: usize) {
    let mut buf = vec![0u8; buf_size];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let Some(data) = buf.get(..n) else { return };
        if stream.write_all(data).await.is_err() {
            return;
        }
    }
}
