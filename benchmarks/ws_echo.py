"""The WebSocket upstream of the benchmarks: echoes every text or binary message sent to /ws.

``GET /`` answers 200 so that readiness checks (rproxy's, jhsingle-native-proxy's) see it up. No
compression is negotiated, so every proxy relays the same raw frames. It runs on uvloop when that
imports. It is a fixed load partner, not a test double, and checks nothing.
Run: ``.venv/bin/python benchmarks/ws_echo.py --port 18090``.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import WSMsgType, web


async def _echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False, max_msg_size=0)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


async def _index(request: web.Request) -> web.Response:
    return web.Response(text="ws echo server\n")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", _index)
    app.router.add_get("/ws", _echo)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
