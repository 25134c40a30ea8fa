"""discord.py 2.7.1 against a running hearth (started by engine/tests/python_clients.rs).

A bot logs in with a token from the control API, reaches on_ready with a guild created through
the control API (its channels and roles), is then disconnected by the server (TCP dropped, as by a
network failure), misses an event while away (a channel created over REST by the guild owner),
resumes, and receives that event. Usage: discordpy_bot.py HOST:PORT.
"""
import asyncio
import json
import sys
import urllib.request

import discord
import discord.gateway
import discord.http
import yarl

ADDR = sys.argv[1]
TIMEOUT = 30


def call(method, path, body=None, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = "Bot " + token
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{ADDR}{path}", data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=20) as r:
        return json.load(r)


owner = call("POST", "/control/users", {"username": "guild-owner", "bot": False})
bot = call("POST", "/control/users", {"username": "pybot", "bot": True})
guild = call("POST", "/control/guilds", {"name": "Hearth Test Guild", "owner_id": owner["id"]})
call("POST", f"/control/guilds/{guild['id']}/members", {"user_id": bot["id"]})

discord.http.Route.BASE = f"http://{ADDR}/api/v10"
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://{ADDR}/")

# Hold every resuming reconnect for a moment, so the missed event really happens while away.
resume_attempts = []
_from_client = discord.gateway.DiscordWebSocket.from_client.__func__


async def slow_from_client(cls, client, **kwargs):
    if kwargs.get("resume"):
        resume_attempts.append(kwargs.get("session"))
        await asyncio.sleep(1.0)
    return await _from_client(cls, client, **kwargs)

discord.gateway.DiscordWebSocket.from_client = classmethod(slow_from_client)

intents = discord.Intents.default()
client = discord.Client(intents=intents)
state = {"ready": asyncio.Event(), "resumed": asyncio.Event(), "channel": asyncio.Event(),
         "created": None}


@client.event
async def on_ready():
    state["ready"].set()


@client.event
async def on_resumed():
    state["resumed"].set()


@client.event
async def on_guild_channel_create(channel):
    state["created"] = channel
    state["channel"].set()


async def scenario():
    await asyncio.wait_for(state["ready"].wait(), TIMEOUT)
    assert client.user.id == int(bot["id"]), client.user
    assert client.user.name == "pybot"
    assert len(client.guilds) == 1, client.guilds
    g = client.guilds[0]
    assert g.id == int(guild["id"]) and g.name == "Hearth Test Guild", g
    assert g.owner_id == int(owner["id"])
    names = sorted(c.name for c in g.channels)
    assert names == ["General", "Text Channels", "Voice Channels", "general"], names
    assert any(isinstance(c, discord.TextChannel) and c.name == "general" for c in g.channels)
    assert any(isinstance(c, discord.VoiceChannel) and c.name == "General" for c in g.channels)
    assert g.default_role.name == "@everyone" and g.default_role.id == g.id
    assert g.get_member(int(bot["id"])) is not None
    session_id = client.ws.session_id
    seq_before = client.ws.sequence

    loop = asyncio.get_running_loop()
    dropped = await loop.run_in_executor(
        None, lambda: call("POST", "/admin/disconnect", {"user_id": bot["id"]}))
    assert dropped["disconnected"] == 1, dropped
    # While the bot waits to reconnect, the owner creates a channel over REST.
    await asyncio.sleep(0.2)
    created = await loop.run_in_executor(None, lambda: call(
        "POST", f"/api/v10/guilds/{guild['id']}/channels", {"name": "missed-while-away", "type": 0},
        token=owner["token"]))
    assert created["name"] == "missed-while-away" and created["guild_id"] == guild["id"], created

    await asyncio.wait_for(state["resumed"].wait(), TIMEOUT)
    await asyncio.wait_for(state["channel"].wait(), TIMEOUT)
    assert resume_attempts and resume_attempts[0] == session_id, resume_attempts
    assert client.ws.session_id == session_id, "resumed, not re-identified"
    assert client.ws.sequence > seq_before
    ch = state["created"]
    assert ch.name == "missed-while-away" and ch.id == int(created["id"]), ch
    assert client.get_channel(ch.id) is not None
    print("discord.py: ready with guild, resumed after a forced disconnect, missed event received")


async def main():
    async with client:
        task = asyncio.create_task(client.start(bot["token"]))
        try:
            await scenario()
        finally:
            await client.close()
            try:
                await asyncio.wait_for(task, 10)
            except Exception:
                pass


asyncio.run(main())
