"""Python's `websockets` client against a running hearth (started by engine/tests/python_clients.rs).

Usage: websockets_client.py HOST:PORT. Exits non-zero on the first failed assertion.
"""
import asyncio
import json
import sys
import urllib.request
import zlib

import websockets

ADDR = sys.argv[1]
URL = f"ws://{ADDR}/?v=10&encoding=json"


def post(path, body):
    req = urllib.request.Request(
        f"http://{ADDR}{path}", data=json.dumps(body).encode(), method="POST",
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=20) as r:
        return json.load(r)


async def recv_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), 20))


async def identify(ws, token, intents=513):
    hello = await recv_json(ws)
    assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] == 41250, hello
    await ws.send(json.dumps({"op": 1, "d": None}))
    assert (await recv_json(ws))["op"] == 11
    await ws.send(json.dumps({"op": 2, "d": {"token": token, "intents": intents,
                                             "properties": {"os": "linux", "browser": "py", "device": "py"}}}))
    ready = await recv_json(ws)
    assert ready["t"] == "READY" and ready["s"] == 1, ready
    return ready["d"]


async def main():
    user = post("/control/users", {"username": "pyclient", "bot": True})
    token = user["token"]

    # Plain JSON: identify, a fragmented heartbeat, ping/pong, an event, then an abrupt drop.
    async with websockets.connect(URL, max_size=2**20) as ws:
        ready = await identify(ws, "Bot " + token)
        assert ready["user"]["id"] == user["id"]
        sid = ready["session_id"]
        # A message sent as three fragments (websockets fragments an iterable).
        await ws.send(iter(['{"op":1,', '"d":', '1}']))
        assert (await recv_json(ws))["op"] == 11
        pong = await ws.ping(b"hi")
        await asyncio.wait_for(pong, 20)
        assert post("/admin/broadcast", {"t": "PY_EVENT", "d": {"n": 1}})["deliveries"] >= 1
        ev = await recv_json(ws)
        assert ev["t"] == "PY_EVENT" and ev["s"] == 2 and ev["d"] == {"n": 1}, ev
        ws.transport.abort()

    # Events while away, then Resume replays them in order and says RESUMED.
    for _ in range(100):
        if post("/admin/broadcast", {"t": "AWAY", "d": {"n": 0}})["deliveries"] >= 1:
            break
        await asyncio.sleep(0.05)
    for n in (1, 2):
        post("/admin/broadcast", {"t": "AWAY", "d": {"n": n}})
    async with websockets.connect(URL) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"op": 6, "d": {"token": token, "session_id": sid, "seq": 2}}))
        got = []
        while True:
            ev = await recv_json(ws)
            got.append((ev["t"], ev["s"]))
            if ev["t"] == "RESUMED":
                break
        assert got[-3:-1] == [("AWAY", got[-3][1]), ("AWAY", got[-3][1] + 1)], got
        assert [t for t, _ in got].count("AWAY") == 3, got
        seqs = [s for _, s in got]
        assert seqs == list(range(3, 3 + len(seqs))), got
        await ws.close(code=1000)
        assert ws.close_code == 1000, ws.close_code

    # Close codes arrive as real WebSocket close codes.
    async with websockets.connect(URL) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"op": 2, "d": {"token": token + "x", "intents": 0, "properties": {}}}))
        try:
            await asyncio.wait_for(ws.recv(), 20)
            raise AssertionError("expected a close")
        except websockets.ConnectionClosed as e:
            assert e.rcvd.code == 4004, e
    async with websockets.connect(URL) as ws:
        await recv_json(ws)
        await ws.send(b"\xff\xfe")  # binary, not JSON
        try:
            await asyncio.wait_for(ws.recv(), 20)
            raise AssertionError("expected a close")
        except websockets.ConnectionClosed as e:
            assert e.rcvd.code == 4002, e

    # zlib-stream: one inflater for the whole connection, every message ends with 00 00 ff ff.
    async with websockets.connect(URL + "&compress=zlib-stream") as ws:
        z = zlib.decompressobj()

        async def recv_z():
            data = await asyncio.wait_for(ws.recv(), 20)
            assert isinstance(data, bytes) and data.endswith(b"\x00\x00\xff\xff")
            return json.loads(z.decompress(data))
        assert (await recv_z())["op"] == 10
        await ws.send(json.dumps({"op": 2, "d": {"token": token, "intents": 0, "properties": {}}}))
        assert (await recv_z())["t"] == "READY"
        for n in range(3):
            post("/admin/broadcast", {"t": "ZB", "d": {"n": n, "pad": "hearth " * 40}})
            ev = await recv_z()
            assert ev["t"] == "ZB" and ev["d"]["n"] == n, ev
    print("websockets client: all checks passed")


asyncio.run(main())
