//! Voice gateway sessions fed arbitrary messages: split the input on NUL bytes into messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sfu::voice_gateway::{
    AuthRejection, Grant, IdentifyRequest, ResumeRequest, VoiceAuthority, VoiceOutbox,
    VoiceSession,
};

struct Anyone;

impl VoiceAuthority for Anyone {
    fn identify(&mut self, _: &IdentifyRequest<'_>) -> Result<Grant, AuthRejection> {
        Ok(Grant {
            ssrc: 1,
            ip: "127.0.0.1".into(),
            port: 1,
            secret_key: [0; 32],
        })
    }

    fn resume(&mut self, _: &ResumeRequest<'_>) -> Result<VoiceSession, AuthRejection> {
        Err(AuthRejection::SessionNoLongerValid)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut out = VoiceOutbox::default();
    let mut session = VoiceSession::open(0, &mut out);
    let _ = sfu::voice_gateway::messages::decode(&String::from_utf8_lossy(data));
    for (i, chunk) in data.split(|&b| b == 0).enumerate() {
        let text = String::from_utf8_lossy(chunk);
        let now = i as u64 * 1000;
        if session.handle_text(now, &text, &mut Anyone, &mut out).is_err() {
            break;
        }
        out.clear();
    }
});
