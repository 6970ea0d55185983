"""What counts as use of the app (``metrics.last_activity``, reported to JupyterHub's idle culler).

Only what an admitted client did: a request forwarded to the app, whatever it answered, a
WebSocket upgrade forwarded to it and the messages of that WebSocket. Nothing rproxy answers
itself counts: refusals, 404s outside the prefix, 400s, 405s, the bare prefix's redirect, rproxy's
API (monitoring tools poll it). Each case runs through both protocols: front.py (an authenticator
that decides from the head) and aiohttp's (one that only checks the request). The real hub, with
its login redirects and the real idle culler, is tests/test_jupyterhub_e2e.py's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from support import Doorkeeper, StartUpstream, listen, raw_exchange, status_of
from yarl import URL

from rproxy.app import make_runner
from rproxy.auth import Authenticator
from rproxy.keys import METRICS
from rproxy.metrics import ProxyMetrics
from rproxy.sources import load_config

OPEN = {"X-Key": "open"}  # the Doorkeeper's admitted user


class _ChecksOnly:
    """The Doorkeeper without ``decide``: every request goes through aiohttp's protocol."""

    def __init__(self) -> None:
        self._door = Doorkeeper()

    async def check(self, request: web.Request) -> web.StreamResponse | None:
        return await self._door.check(request)

    async def identity(self, request: web.Request) -> None:
        return None


async def _app(request: web.Request) -> web.StreamResponse:
    if request.path == "/ws":
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                await ws.send_str(message.data)
        return ws
    if request.path == "/missing":
        return web.Response(status=404, text="the app's own 404")
    return web.Response(text="the app")


class _Proxy:
    def __init__(self, url: URL, metrics: ProxyMetrics) -> None:
        self.url = url
        self.metrics = metrics


@pytest.fixture(params=["front", "aiohttp"])
async def proxy(
    request: pytest.FixtureRequest, start_upstream: StartUpstream
) -> AsyncIterator[_Proxy]:
    upstream = web.Application()
    upstream.router.add_route("*", "/{tail:.*}", _app)
    config = load_config(
        {"upstream": str(await start_upstream(upstream)), "prefix": "/user/ann/"}, {}
    )
    authenticator: Authenticator = Doorkeeper() if request.param == "front" else _ChecksOnly()
    runner = make_runner(config, authenticator=authenticator)
    url = await listen(runner)
    yield _Proxy(url, runner.app[METRICS])
    await runner.cleanup()


NOT_USE = [
    pytest.param(b"GET /user/ann/page HTTP/1.1\r\nHost: x\r\n\r\n", 403, id="refused-get"),
    pytest.param(
        b"POST /user/ann/page HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
        403,
        id="refused-post",
    ),
    pytest.param(
        b"GET /user/ann/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        403,
        id="refused-websocket",
    ),
    pytest.param(b"GET /elsewhere HTTP/1.1\r\nHost: x\r\nX-Key: open\r\n\r\n", 404, id="outside"),
    pytest.param(
        b"GET /user/ann HTTP/1.1\r\nHost: x\r\nX-Key: open\r\n\r\n", 307, id="bare-prefix"
    ),
    pytest.param(
        b"GET /user/ann/a/../b HTTP/1.1\r\nHost: x\r\nX-Key: open\r\n\r\n", 400, id="dot-segment"
    ),
    pytest.param(b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\nX-Key: open\r\n\r\n", 405, id="connect"),
    pytest.param(
        b"GET /user/ann/api/status HTTP/1.1\r\nHost: x\r\nX-Key: open\r\n\r\n", 200, id="own-api"
    ),
]


@pytest.mark.parametrize(("request_bytes", "status"), NOT_USE)
async def test_what_rproxy_answers_itself_is_no_use_of_the_app(
    proxy: _Proxy, request_bytes: bytes, status: int
) -> None:
    raw = await raw_exchange(
        proxy.url, request_bytes.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
    )
    assert status_of(raw) == status
    assert b"the app" not in raw
    assert proxy.metrics.last_activity == 0.0


@pytest.mark.parametrize(
    ("path", "status"),
    [pytest.param("page", 200, id="page"), pytest.param("missing", 404, id="the-apps-404")],
)
async def test_a_forwarded_request_is_use_whatever_the_app_answered(
    proxy: _Proxy, path: str, status: int
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(proxy.url / "user/ann" / path, headers=OPEN) as response,
    ):
        assert response.status == status
        assert "the app" in await response.text()
    assert proxy.metrics.last_activity > 0.0


async def test_a_websocket_and_its_messages_are_use(proxy: _Proxy) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(proxy.url / "user/ann/ws", headers=OPEN) as ws,
    ):
        assert proxy.metrics.last_activity > 0.0  # the upgrade
        proxy.metrics.last_activity = 0.0
        await ws.send_str("still here")
        assert await ws.receive_str() == "still here"
        assert proxy.metrics.last_activity > 0.0


async def test_the_vnc_bridge_and_its_messages_are_use() -> None:
    received = asyncio.Queue[bytes]()

    async def vnc_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"RFB 003.008\n")
        while data := await reader.read(65536):
            received.put_nowait(data)
        writer.close()

    server = await asyncio.start_server(vnc_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    options = {"upstream": "http://127.0.0.1:1", "prefix": "/user/ann/",
               "vnc_upstream": f"127.0.0.1:{port}"}  # fmt: skip
    runner = make_runner(load_config(options, {}), authenticator=Doorkeeper())
    url = await listen(runner) / "user/ann"
    metrics = runner.app[METRICS]
    try:
        async with aiohttp.ClientSession(headers=OPEN) as http:
            async with http.get(url / "vnc/", allow_redirects=False) as response:
                assert response.status == 307  # rproxy's own redirect to noVNC: no use
            assert metrics.last_activity == 0.0
            async with http.ws_connect(url / "websockify", protocols=("binary",)) as ws:
                assert (await ws.receive_bytes()).startswith(b"RFB")
                assert metrics.last_activity > 0.0
                metrics.last_activity = 0.0
                await ws.send_bytes(b"RFB 003.008\n")
                assert await asyncio.wait_for(received.get(), timeout=10) == b"RFB 003.008\n"
                assert metrics.last_activity > 0.0
    finally:
        await runner.cleanup()
        server.close()
