//! Reference peer: a plain TCP echo server on monoio's io_uring driver, ring set up with
//! IORING_SETUP_COOP_TASKRUN (DESIGN.md "The runtime decision"), TCP_NODELAY on every connection.

use std::process::ExitCode;

use bench::limits::{PEER_LISTEN_BACKLOG, PEER_RING_ENTRIES};
use bench::peer::{PeerArgs, write_ready_file};
use clap::Parser;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{ListenerOpts, TcpListener, TcpStream};

fn main() -> ExitCode {
    let args = PeerArgs::parse();
    if let Err(e) = bench::peer::exit_zero_on_sigterm() {
        eprintln!("echo-monoio: cannot handle SIGTERM ({e}); it will still stop the process");
    }
    let mut ring = io_uring_06::IoUring::builder();
    ring.setup_coop_taskrun();
    let runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(PEER_RING_ENTRIES)
        .uring_builder(ring)
        .build();
    let mut runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("echo-monoio: cannot build io_uring runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo-monoio: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: PeerArgs) -> std::io::Result<()> {
    let opts = ListenerOpts::new().backlog(PEER_LISTEN_BACKLOG);
    let listener = TcpListener::bind_with_config(args.addr, &opts)?;
    write_ready_file(&args.ready_file, listener.local_addr()?)?;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                stream.set_nodelay(true)?;
                monoio::spawn(echo(stream, args.buf_size));
            }
            // Out of fds or a connection reset before accept: keep serving the others.
            Err(e) => eprintln!("echo-monoio: accept: {e}"),
        }
    }
}

async fn echo(mut stream: TcpStream, buf_size: usize) {
    let mut buf = Vec::with_capacity(buf_size);
    loop {
        // monoio reads into the spare capacity from the start and only grows `len`.
        buf.clear();
        let (res, b) = stream.read(buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (res, b) = stream.write_all(buf).await;
        buf = b;
        if res.is_err() {
            return;
        }
    }
}
