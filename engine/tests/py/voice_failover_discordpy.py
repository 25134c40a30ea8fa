"""Voice-server failover with discord.py[voice] 2.7.1 and discord-ext-voice-recv against a
running two-shard hearth (started by engine/tests/voice_discordpy.rs).

Both bots join the guild's voice channel; A plays an endless 440 Hz tone and B hears it. Then
the test drains their voice server through the admin API (`POST
/admin/voice/servers/{shard}/drain`). The server's guilds move to the other shard's voice
server: each bot gets a new VOICE_SERVER_UPDATE (new token, new endpoint) and its old voice
WebSocket is closed with 4014, on which discord.py connects to the new endpoint. The script
checks that both bots end up connected to the other server, that after the move B receives at
least 90% of the frames A sends (counted by RTP sequence over three seconds of tone),
attributed to A under A's new SSRC, that they decode to the tone, and that the admin endpoint
and /metrics show the drain and the moved users. Usage: voice_failover_discordpy.py HOST:PORT.
"""
import asyncio
import re
import time

import discord
from discord.ext import voice_recv

from voice_common import (
    TIMEOUT, TONE_HZ, CountingTone, call, decoded_tone_ratio, get_text, make_bots_and_guild, run,
    two_clients,
)

FLOW_FRAMES = 50  # one second of tone: audio flows before the drain
AFTER_SECONDS = 3  # tone measured after the move
MOVE_TIMEOUT = 45  # detection, VOICE_SERVER_UPDATE, reconnect of both bots on a loaded machine

bot_a, bot_b, guild = make_bots_and_guild("Voice Failover Guild")
(client_a, client_b), (ready_a, ready_b) = two_clients()
A_ID = int(bot_a["id"])


async def until(what, pred, timeout):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def servers():
    return call("GET", "/admin/voice/servers")["servers"]


async def scenario():
    await asyncio.wait_for(ready_a.wait(), TIMEOUT)
    await asyncio.wait_for(ready_b.wait(), TIMEOUT)
    ga = client_a.get_guild(int(guild["id"]))
    gb = client_b.get_guild(int(guild["id"]))
    assert ga is not None and gb is not None
    chan_a = next(c for c in ga.channels if isinstance(c, discord.VoiceChannel))
    chan_b = gb.get_channel(chan_a.id)

    # Frames from A by RTP sequence, in the phase they arrived in.
    phase = {"name": "before"}
    heard = {"before": {}, "after": {}}
    others = []

    def on_packet(user, data):
        if user is not None and user.id == A_ID:
            if data.packet is not None and data.pcm:
                heard[phase["name"]][data.packet.sequence] = data.pcm
        else:
            others.append(user)

    vb = await asyncio.wait_for(chan_b.connect(cls=voice_recv.VoiceRecvClient), TIMEOUT)
    vb.listen(voice_recv.BasicSink(on_packet))
    va = await asyncio.wait_for(chan_a.connect(), TIMEOUT)
    assert va.is_connected() and vb.is_connected()
    old_endpoint = va.endpoint
    assert vb.endpoint == old_endpoint, (va.endpoint, vb.endpoint)

    tone = CountingTone()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    va.play(tone, after=lambda e: loop.call_soon_threadsafe(done.set))
    await until("audio before the drain", lambda: len(heard["before"]) >= FLOW_FRAMES, TIMEOUT)
    print(f"failover: before the drain B decoded {len(heard['before'])} frames of A")

    listed = servers()
    old = next(s for s in listed if s["endpoint"] == old_endpoint)
    new = next(s for s in listed if s["shard"] != old["shard"])
    assert old["participants"] == 2 and old["healthy"] and not old["drained"], listed
    drained = call("POST", f"/admin/voice/servers/{old['shard']}/drain", {})
    assert drained["drained"] and drained["guilds_moving"] >= 1, drained
    print(f"failover: drained voice server {old['shard']} ({old_endpoint}) -> {new['endpoint']}")

    def moved(vc):
        return vc.is_connected() and vc.endpoint == new["endpoint"]

    await until("both bots on the new voice server", lambda: moved(va) and moved(vb), MOVE_TIMEOUT)
    print("failover: both bots reconnected to", new["endpoint"])

    # Audio flows again: wait for A's frames through the new server, then measure.
    heard["settle"] = {}
    phase["name"] = "settle"
    await until("audio after the move", lambda: len(heard["settle"]) >= 5, TIMEOUT)
    phase["name"] = "after"
    first = va.sequence
    await asyncio.sleep(AFTER_SECONDS)
    last = va.sequence
    tone.finish()
    await asyncio.wait_for(done.wait(), TIMEOUT)
    sent = (last - first) % 65536
    window = {(first + i) % 65536 for i in range(sent)}

    def got():
        return sum(1 for k in heard["after"] if k in window)

    # Trailing packets still in flight.
    for _ in range(40):
        if got() >= sent:
            break
        await asyncio.sleep(0.05)
    vb.stop_listening()
    after = {k: v for k, v in heard["after"].items() if k in window}
    print(f"failover: after the move A sent {sent} frames, B decoded {len(after)} attributed to A; "
          f"unattributed {len(others)}")
    assert sent >= 100, sent
    assert len(after) >= 0.9 * sent, (len(after), sent)
    ratio = decoded_tone_ratio(after)
    print(f"failover: power share at {TONE_HZ} Hz after the move = {ratio:.3f}")
    assert ratio > 0.8, ratio

    listed = {s["shard"]: s for s in servers()}
    assert listed[old["shard"]]["drained"], listed
    assert listed[old["shard"]]["participants"] == 0, listed
    assert listed[new["shard"]]["participants"] == 2, listed
    metrics = get_text("/metrics")
    updates = sum(int(v) for v in re.findall(
        r'^hearth_voice_failover_server_updates_total\{shard="\d+"\} (\d+)$', metrics, re.M))
    evicted = sum(int(v) for v in re.findall(
        r'^hearth_voice_failover_evicted_total\{shard="\d+"\} (\d+)$', metrics, re.M))
    assert updates >= 2 and evicted >= 2, (updates, evicted)

    await va.disconnect()
    await vb.disconnect()


asyncio.run(run([client_a, client_b], [bot_a["token"], bot_b["token"]], scenario, 150))
print("voice_failover_discordpy: ok")
