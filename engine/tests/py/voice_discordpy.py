"""discord.py[voice] 2.7.1 and discord-ext-voice-recv against a running hearth (started by
engine/tests/voice_discordpy.rs): two bots join the guild's voice channel; bot A plays a 440 Hz
tone for three seconds; bot B receives it through the SFU, decodes it with libopus, and the
script checks that B got at least 95% of A's frames, that the decoded audio is the tone
(correlation with 440 Hz), and that the frames were attributed to A (the SSRC -> user mapping
comes from the server's op 5 Speaking relay). Usage: voice_discordpy.py HOST:PORT.
"""
import asyncio
import io
import json
import math
import struct
import sys
import urllib.request

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl
from discord.ext import voice_recv

ADDR = sys.argv[1]
TIMEOUT = 30
RATE = 48_000
TONE_HZ = 440.0
SECONDS = 3
FRAME_SAMPLES = 960  # 20 ms at 48 kHz


def call(method, path, body=None):
    headers = {"content-type": "application/json"}
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{ADDR}{path}", data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=20) as r:
        return json.load(r)


bot_a = call("POST", "/control/users", {"username": "tone-bot", "bot": True})
bot_b = call("POST", "/control/users", {"username": "ear-bot", "bot": True})
guild = call("POST", "/control/guilds", {"name": "Voice Test Guild", "owner_id": bot_a["id"]})
call("POST", f"/control/guilds/{guild['id']}/members", {"user_id": bot_b["id"]})

discord.http.Route.BASE = f"http://{ADDR}/api/v10"
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://{ADDR}/")


class CountingTone(discord.AudioSource):
    """Three seconds of a 440 Hz sine, stereo s16le, counting the frames handed to the player."""

    def __init__(self):
        self.frames = 0
        self.total = SECONDS * RATE // FRAME_SAMPLES

    def read(self):
        if self.frames >= self.total:
            return b""
        start = self.frames * FRAME_SAMPLES
        out = bytearray()
        for i in range(start, start + FRAME_SAMPLES):
            v = int(12000 * math.sin(2 * math.pi * TONE_HZ * i / RATE))
            out += struct.pack("<hh", v, v)
        self.frames += 1
        return bytes(out)


def make_client():
    intents = discord.Intents.default()
    return discord.Client(intents=intents)


client_a = make_client()
client_b = make_client()
ready = {"a": asyncio.Event(), "b": asyncio.Event()}


@client_a.event
async def on_ready():
    ready["a"].set()


@client_b.event
async def on_ready():  # noqa: F811 (a second client's handler)
    ready["b"].set()


def tone_ratio(samples):
    """Share of the signal's power at TONE_HZ (1.0 for a pure tone of that frequency)."""
    n = len(samples)
    if n == 0:
        return 0.0
    s = c = 0.0
    power = 0.0
    for i, x in enumerate(samples):
        ph = 2 * math.pi * TONE_HZ * i / RATE
        s += x * math.sin(ph)
        c += x * math.cos(ph)
        power += x * x
    if power == 0:
        return 0.0
    return 2 * (s * s + c * c) / (n * power)


async def scenario():
    await asyncio.wait_for(ready["a"].wait(), TIMEOUT)
    await asyncio.wait_for(ready["b"].wait(), TIMEOUT)
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

    tone = CountingTone()
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

    # Decoded audio is the tone: left channel of the frames in sequence order, skipping the
    # decoder's first frames (Opus warm-up).
    pcm = b"".join(received[k] for k in sorted(received))
    left = [v[0] for v in struct.iter_unpack("<hh", pcm)]
    body = left[FRAME_SAMPLES * 5:]
    ratio = tone_ratio(body)
    print(f"voice: power share at {TONE_HZ} Hz = {ratio:.3f}")
    assert ratio > 0.8, ratio

    await va.disconnect()
    await vb.disconnect()


async def main():
    async def start(client, token):
        # Self-signed voice gateway certificate (dev profile): do not verify, as COMPAT.md says.
        client.http.connector = aiohttp.TCPConnector(ssl=False)
        await client.start(token)

    tasks = [
        asyncio.create_task(start(client_a, bot_a["token"])),
        asyncio.create_task(start(client_b, bot_b["token"])),
    ]
    try:
        await asyncio.wait_for(scenario(), 90)
    finally:
        await client_a.close()
        await client_b.close()
        for t in tasks:
            t.cancel()
    print("voice_discordpy: ok")


asyncio.run(main())
