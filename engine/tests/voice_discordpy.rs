//! discord.py[voice] with discord-ext-voice-recv (PyPI) and Debian's libopus0 against the real
//! `hearth` binary. The tests install libopus0 themselves when it is missing (as root), and the
//! virtualenv comes from scripts/py-venv.sh.
//!
//! - engine/tests/py/voice_discordpy.py: one bot plays a tone, the other receives and decodes
//!   it through the SFU (≥ 95% of frames, the tone by correlation, attribution to the speaker).
//! - engine/tests/py/voice_failover_discordpy.py: the same two bots with audio flowing, then
//!   their voice server is drained through the admin API: both get a new VOICE_SERVER_UPDATE,
//!   reconnect to the other shard's voice server, and the tone flows and decodes again.

mod pyserver;

use pyserver::{Server, ensure_libopus};

fn start(name: &str) -> Server {
    let server = Server::start(name);
    assert_eq!(
        server.ready["voice"].as_array().map(Vec::len),
        Some(2),
        "a voice server per shard: {}",
        server.ready
    );
    server
}

#[test]
fn discordpy_bot_hears_another_bots_tone_through_the_sfu() {
    ensure_libopus();
    let server = start("voice-dpy");
    server.run_script("voice_discordpy.py", &[]);
}

#[test]
fn discordpy_bots_reconnect_and_hear_the_tone_again_after_their_voice_server_is_drained() {
    ensure_libopus();
    let server = start("voice-failover-dpy");
    server.run_script("voice_failover_discordpy.py", &[]);
}
