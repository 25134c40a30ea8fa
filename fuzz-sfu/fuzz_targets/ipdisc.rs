//! IP discovery parsing, and re-encoding of whatever parses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = sfu::ipdisc::parse(data) {
        assert_eq!(data.len(), sfu::limits::IPDISC_PACKET_LEN);
        if let Ok(addr) = d.address() {
            let mut out = [0u8; sfu::limits::IPDISC_PACKET_LEN];
            if sfu::ipdisc::build_response(d.ssrc, addr, d.port, &mut out).is_ok() {
                let again = sfu::ipdisc::parse(&out).expect("own output parses");
                assert_eq!(again.address(), Ok(addr));
                assert_eq!(again.port, d.port);
            }
        }
    }
});
