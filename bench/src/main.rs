//! `hearth-bench`: runs a benchmark scenario and writes its report.

use std::process::ExitCode;

use bench::cli::{Cli, Command};
use bench::machine::RunMeta;
use bench::{BenchError, report, scenario};
use clap::Parser;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hearth-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), BenchError> {
    match cli.command {
        Command::Pingpong(args) => {
            let meta = RunMeta::collect();
            let run = scenario::pingpong::run(&args)?;
            let dir = report::write_pingpong(&args.common.out_dir, &meta, &run)?;
            println!("{}", dir.display());
            Ok(())
        }
        Command::IdleConns(args) => {
            let meta = RunMeta::collect();
            let run = scenario::idle_conns::run(&args)?;
            let dir = report::write_idle(&args.common.out_dir, &meta, &run)?;
            println!("{}", dir.display());
            Ok(())
        }
        Command::IdleClient(args) => {
            bench::idle_client::main(args.source_ip, args.addr, args.conns)
        }
        Command::GwIdentifyStorm(args) => {
            let meta = RunMeta::collect();
            let run = bench::gateway::storm::run(&args)?;
            let dir = bench::gateway::report::write_storm(&args.common.out_dir, &meta, &run)?;
            println!("{}", dir.display());
            Ok(())
        }
        Command::GwIdleSessions(args) => {
            let meta = RunMeta::collect();
            let run = bench::gateway::idle::run(&args)?;
            let dir = bench::gateway::report::write_idle(&args.common.out_dir, &meta, &run)?;
            println!("{}", dir.display());
            Ok(())
        }
        Command::GwBroadcast(args) => {
            let meta = RunMeta::collect();
            let run = bench::gateway::broadcast::run(&args)?;
            let dir = bench::gateway::report::write_broadcast(&args.common.out_dir, &meta, &run)?;
            println!("{}", dir.display());
            Ok(())
        }
        Command::GwFanout(args) => bench::gateway::fanout::main(&args),
        Command::VoiceForward(args) => bench::voice::main(&args),
        Command::GwClient(args) => bench::gateway::client::main(args.into_config()?),
    }
}
