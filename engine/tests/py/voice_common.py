"""Shared by the discord.py voice scripts (voice_discordpy.py, voice_failover_discordpy.py):
the control-API calls that make two bots and a guild, pointing discord.py at hearth, a counting
440 Hz tone source, the tone detector, and running two clients around a scenario.
"""
import asyncio
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

ADDR = sys.argv[1]
TIMEOUT = 30
RATE = 48_000
TONE_HZ = 440.0
FRAME_SAMPLES = 960  # 20 ms at 48 kHz


def call(method, path, body=None):
    headers = {"content-type": "application/json"}
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{ADDR}{path}", data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=20) as r:
        body = r.read()
        return json.loads(body) if body else None


def get_text(path):
    with urllib.request.urlopen(f"http://{ADDR}{path}", timeout=20) as r:
        return r.read().decode()


def make_bots_and_guild(name):
    """Bot A (the guild's owner) and bot B (a member) in a new guild; points discord.py here."""
    bot_a = call("POST", "/control/users", {"username": "tone-bot", "bot": True})
    bot_b = call("POST", "/control/users", {"username": "ear-bot", "bot": True})
    guild = call("POST", "/control/guilds", {"name": name, "owner_id": bot_a["id"]})
    call("POST", f"/control/guilds/{guild['id']}/members", {"user_id": bot_b["id"]})
    discord.http.Route.BASE = f"http://{ADDR}/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://{ADDR}/")
    return bot_a, bot_b, guild


class CountingTone(discord.AudioSource):
    """A 440 Hz sine, stereo s16le, counting the frames handed to the player; `total` frames,
    or endless (None) until `finish()`."""

    def __init__(self, total=None):
        self.frames = 0
        self.total = total
        self.finished = False

    def finish(self):
        self.finished = True

    def read(self):
        if self.finished or (self.total is not None and self.frames >= self.total):
            return b""
        start = self.frames * FRAME_SAMPLES
        out = bytearray()
        for i in range(start, start + FRAME_SAMPLES):
            v = int(12000 * math.sin(2 * math.pi * TONE_HZ * i / RATE))
            out += struct.pack("<hh", v, v)
        self.frames += 1
        return bytes(out)


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


def decoded_tone_ratio(frames_by_seq):
    """The tone share of decoded frames (left channel, in sequence order), skipping the
    decoder's first frames (Opus warm-up)."""
    pcm = b"".join(frames_by_seq[k] for k in sorted(frames_by_seq))
    left = [v[0] for v in struct.iter_unpack("<hh", pcm)]
    return tone_ratio(left[FRAME_SAMPLES * 5:])


def two_clients():
    """Two clients with the default intents, and an event per client set on its on_ready."""
    clients = []
    ready = []
    for _ in range(2):
        client = discord.Client(intents=discord.Intents.default())
        ev = asyncio.Event()

        async def on_ready(ev=ev):
            ev.set()

        client.event(on_ready)
        clients.append(client)
        ready.append(ev)
    return clients, ready


async def run(clients, tokens, scenario, seconds):
    """Starts the clients, runs `scenario()` within `seconds`, closes the clients."""
    async def start(client, token):
        # Self-signed voice gateway certificate (dev profile): do not verify, as COMPAT.md says.
        client.http.connector = aiohttp.TCPConnector(ssl=False)
        await client.start(token)

    tasks = [asyncio.create_task(start(c, t)) for c, t in zip(clients, tokens)]
    try:
        await asyncio.wait_for(scenario(), seconds)
    finally:
        for c in clients:
            await c.close()
        for t in tasks:
            t.cancel()
