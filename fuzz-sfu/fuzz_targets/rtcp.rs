//! RTCP header parsing on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = sfu::rtcp::parse(data) {
        assert!(h.packet_len() <= data.len());
    }
});
