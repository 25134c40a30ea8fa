"""discord.py[voice] 2.7.1 and discord-ext-voice-recv against a running hearth (started by
engine/tests/voice_discordpy.rs): two bots join the guild's voice channel; bot A plays a 440 Hz
tone for three seconds; bot B receives it through the SFU, decodes it with libopus, and the
script checks that B got at least 95% of A's frames, that the decoded audio is the tone
(correlation with 440 Hz), and that the frames were attributed to A (the SSRC -> user mapping
comes from the server's op 5 Speaking relay). Usage: voice_discordpy.py HOST:PORT.
"""
import asyncio

import discord
from discord.ext import voice_recv

from voice_common import (
    FRAME_SAMPLES, RATE, TIMEOUT, TONE_HZ, CountingTone, decoded_tone_ratio, make_bots_and_guild,
    run, two_clients,
)

SECONDS = 3

bot_a, bot_b, guild = make_bots_and_guild("Voice Test Guild")
(client_a, client_b), (ready_a, ready_b) = two_clients()


async def scenario():
    await asyncio.wait_for(ready_a.wait(), TIMEOUT)
    await asyncio.wait_for(ready_b.wait(), TIMEOUT)
    ga = client_a.get_guild(int(guild["id"]))
    gb = client_b.get_guild(int(guild["id"]))
    assert ga is not None and gb is not None
    chan_a = next(c for c in ga.channels if isinstance(c, discord.VoiceChannel))
    chan_b = gb.get_channel(chan_a.id)

    received = {}  # rtp sequence -> pcm bytes, for frames attributed to A
    others = []

    def on_packet(user, data):
        if user is not None and user.id == int(bot_a["id"]):
            if data.packet is not None and data.pcm:
                received[data.packet.sequence] = data.pcm
        else:
            others.append(user)

    vb = await asyncio.wait_for(chan_b.connect(cls=voice_recv.VoiceRecvClient), TIMEOUT)
    vb.listen(voice_recv.BasicSink(on_packet))
    va = await asyncio.wait_for(chan_a.connect(), TIMEOUT)
    assert va.is_connected() and vb.is_connected()

    # B's voice state names A in the channel (VOICE_STATE_UPDATE reached B's guild cache).
    for _ in range(100):
        if any(m.id == int(bot_a["id"]) for m in chan_b.members):
            break
        await asyncio.sleep(0.05)
    assert any(m.id == int(bot_a["id"]) for m in chan_b.members), chan_b.members

    tone = CountingTone(SECONDS * RATE // FRAME_SAMPLES)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    va.play(tone, after=lambda e: loop.call_soon_threadsafe(done.set))
    await asyncio.wait_for(done.wait(), TIMEOUT)
    # Trailing packets still in flight.
    for _ in range(40):
        if len(received) >= tone.frames:
            break
        await asyncio.sleep(0.05)
    vb.stop_listening()

    sent = tone.frames
    got = len(received)
    print(f"voice: A sent {sent} frames, B decoded {got} attributed to A; unattributed {len(others)}")
    assert sent == SECONDS * RATE // FRAME_SAMPLES, sent
    assert got >= 0.95 * sent, (got, sent)

    # Decoded audio is the tone.
    ratio = decoded_tone_ratio(received)
    print(f"voice: power share at {TONE_HZ} Hz = {ratio:.3f}")
    assert ratio > 0.8, ratio

    await va.disconnect()
    await vb.disconnect()


asyncio.run(run([client_a, client_b], [bot_a["token"], bot_b["token"]], scenario, 90))
print("voice_discordpy: ok")
