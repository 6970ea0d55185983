"""The assembled application: graceful shutdown."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from support import StartUpstream, listen

from rproxy.app import make_runner
from rproxy.sources import load_config


async def test_shutdown_refuses_new_connections_and_lets_in_flight_requests_finish(
    start_upstream: StartUpstream, http: aiohttp.ClientSession
) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text="finished")

    app = web.Application()
    app.router.add_get("/slow", slow)
    upstream = await start_upstream(app)
    runner = make_runner(load_config({"upstream": str(upstream)}, {}))
    url = await listen(runner)
    host, port = url.host, url.port

    async def fetch() -> str:
        async with http.get(f"http://{host}:{port}/slow") as resp:
            return await resp.text()

    in_flight = asyncio.create_task(fetch())
    await asyncio.wait_for(arrived.wait(), timeout=10)
    shutdown = asyncio.create_task(runner.cleanup())
    # aiohttp offers no event for "stopped listening"; its runner drops each site once it has.
    while runner.sites:  # noqa: ASYNC110
        await asyncio.sleep(0)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(host, port)
    assert not in_flight.done()
    release.set()
    assert await asyncio.wait_for(in_flight, timeout=10) == "finished"
    await asyncio.wait_for(shutdown, timeout=10)
