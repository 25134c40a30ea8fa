//! RTP header parsing and classification on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sfu::rtp::classify(data);
    if let Ok(h) = sfu::rtp::parse(data) {
        assert!(h.aad_len() + sfu::limits::CRYPTO_OVERHEAD_LEN <= data.len());
        let _ = sfu::rtp::media_payload(&h, data);
    }
});
