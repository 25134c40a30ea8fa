//! Arbitrary payloads as client gateway commands, through a session at every stage.
#![no_main]

use gateway_core::gateway::command::parse_command;
use gateway_core::gateway::{GatewayConfig, Session};
use gateway_core::ws::GatewayQuery;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_command(data);
    let cfg = GatewayConfig::new(b"fuzz");
    let (mut s, _) = Session::new(&cfg, &GatewayQuery::default(), 0);
    // Split the input into several commands on NUL bytes, with a clock that moves.
    for (i, part) in data.split(|&b| b == 0).take(200).enumerate() {
        let _ = s.handle_message(&cfg, part, i as u64 * 1_000);
        while s.output().pop().is_some() {}
    }
    let _ = s.handle_timeout(u64::MAX / 2);
});
