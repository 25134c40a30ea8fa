//! Real client libraries from PyPI against the real `hearth` binary: Python's `websockets`
//! (RFC 6455 and the gateway protocol) and discord.py. The virtualenv is created on first use
//! by `scripts/py-venv.sh` (pinned versions in `scripts/py-requirements.txt`).

mod pyserver;

use pyserver::Server;

#[test]
fn python_websockets_client_speaks_to_the_gateway() {
    let server = Server::start("ws");
    server.run_script("websockets_client.py", &[]);
}

#[test]
fn discordpy_bot_reaches_ready_with_its_guild_and_resumes_after_a_forced_disconnect() {
    let server = Server::start("dpy");
    server.run_script("discordpy_bot.py", &[]);
}

#[test]
fn discordpy_messages_send_history_edit_delete_and_resume() {
    let server = Server::start("dpy-msg");
    server.run_script("discordpy_messages.py", &[]);
}
