"""discord.py 2.7.1 and the message path (issue 5) against a running hearth.

A bot with a control-API token reaches on_ready with its guild, channels and roles; receives
on_message for a message another user sent over REST; answers with channel.send; reads it back
through history; receives the other user's edit and delete as events; and after a forced
disconnect resumes and receives the message it missed. Usage: discordpy_messages.py HOST:PORT.
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
        raw = r.read()
        return json.loads(raw) if raw else None


owner = call("POST", "/control/users", {"username": "alice", "bot": False})
bot = call("POST", "/control/users", {"username": "msgbot", "bot": True})
guild = call("POST", "/control/guilds", {"name": "Messages Guild", "owner_id": owner["id"]})
call("POST", f"/control/guilds/{guild['id']}/members", {"user_id": bot["id"]})
general = guild["system_channel_id"]

discord.http.Route.BASE = f"http://{ADDR}/api/v10"
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://{ADDR}/")
_from_client = discord.gateway.DiscordWebSocket.from_client.__func__


async def slow_from_client(cls, client, **kwargs):
    # Hold a resuming reconnect for a moment so the missed message is sent while away.
    if kwargs.get("resume"):
        await asyncio.sleep(1.0)
    return await _from_client(cls, client, **kwargs)

discord.gateway.DiscordWebSocket.from_client = classmethod(slow_from_client)

intents = discord.Intents.default()
intents.message_content = True
client = discord.Client(intents=intents)
ready = asyncio.Event()
resumed = asyncio.Event()
inbox = asyncio.Queue()
edits = asyncio.Queue()
deletes = asyncio.Queue()


@client.event
async def on_ready():
    ready.set()


@client.event
async def on_resumed():
    resumed.set()


@client.event
async def on_message(message):
    await inbox.put(message)


@client.event
async def on_raw_message_edit(payload):
    await edits.put(payload)


@client.event
async def on_raw_message_delete(payload):
    await deletes.put(payload)


async def next_from(q, pred):
    while True:
        item = await asyncio.wait_for(q.get(), TIMEOUT)
        if pred(item):
            return item


async def rest(*args, **kwargs):
    return await asyncio.get_running_loop().run_in_executor(None, lambda: call(*args, **kwargs))


async def scenario():
    await asyncio.wait_for(ready.wait(), TIMEOUT)
    g = client.get_guild(int(guild["id"]))
    assert g is not None and g.name == "Messages Guild"
    assert {c.name for c in g.text_channels} == {"general"}, g.text_channels
    assert g.default_role is not None and g.roles[0].name == "@everyone"
    channel = g.get_channel(int(general))
    assert isinstance(channel, discord.TextChannel)

    # Another user's message, sent over REST, arrives as on_message.
    sent = await rest("POST", f"/api/v10/channels/{general}/messages",
                      {"content": "hello from alice", "nonce": "n-1"}, token=owner["token"])
    m = await next_from(inbox, lambda m: m.id == int(sent["id"]))
    assert m.content == "hello from alice" and m.author.id == int(owner["id"]), m
    assert m.channel.id == channel.id and m.guild.id == g.id

    # The bot answers with channel.send; it sees its own message too.
    reply = await channel.send("hi alice, from the bot")
    assert reply.content == "hi alice, from the bot" and reply.author.id == client.user.id
    own = await next_from(inbox, lambda x: x.id == reply.id)
    assert own.author.id == client.user.id

    # History reads both back, newest first.
    history = [x async for x in channel.history(limit=10)]
    assert [x.id for x in history[:2]] == [reply.id, m.id], [(x.id, x.content) for x in history]
    assert history[1].content == "hello from alice"
    fetched = await channel.fetch_message(m.id)
    assert fetched.content == "hello from alice"

    # Edits and deletes by the other user arrive as events.
    await rest("PATCH", f"/api/v10/channels/{general}/messages/{m.id}",
               {"content": "hello from alice (edited)"}, token=owner["token"])
    e = await next_from(edits, lambda p: p.message_id == m.id)
    assert e.data["content"] == "hello from alice (edited)" and e.data["edited_timestamp"], e.data
    await rest("DELETE", f"/api/v10/channels/{general}/messages/{m.id}", token=owner["token"])
    d = await next_from(deletes, lambda p: p.message_id == m.id)
    assert d.channel_id == channel.id
    after = [x.id async for x in channel.history(limit=10)]
    assert m.id not in after and reply.id in after, after

    # Forced disconnect; a message sent while away arrives after the resume.
    session = client.ws.session_id
    dropped = await rest("POST", "/admin/disconnect", {"user_id": bot["id"]})
    assert dropped["disconnected"] == 1, dropped
    await asyncio.sleep(0.2)
    missed = await rest("POST", f"/api/v10/channels/{general}/messages",
                        {"content": "sent while you were away"}, token=owner["token"])
    await asyncio.wait_for(resumed.wait(), TIMEOUT)
    got = await next_from(inbox, lambda x: x.id == int(missed["id"]))
    assert got.content == "sent while you were away"
    assert client.ws.session_id == session
    print("discord.py messages: on_message, send, history, edit, delete, resume: all checks passed")


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
