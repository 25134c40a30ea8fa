//! Arbitrary bytes as an HTTP upgrade request: must answer Partial, Complete or an error.
#![no_main]

use gateway_core::ws::{HandshakeStatus, parse_request, write_error_response, write_response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    match parse_request(data) {
        Ok(HandshakeStatus::Complete { request, consumed }) => {
            assert!(consumed <= data.len());
            write_response(&request, &mut out);
        }
        Ok(HandshakeStatus::Partial) => {}
        Err(e) => {
            assert!(e.status() == 400 || e.status() == 426);
            write_error_response(e, &mut out);
        }
    }
});
