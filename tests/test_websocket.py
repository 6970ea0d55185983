"""WebSocket passthrough against a real aiohttp WebSocket upstream."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from support import StartProxy, StartUpstream, listen
from yarl import URL

from examples.demo.app import make_demo_app
from rproxy.app import make_runner
from rproxy.auth import Identity
from rproxy.sources import load_config

MiB = 1 << 20
PREFIX = "/user/alice/"


class Upstream:
    """An upstream with WebSocket routes; it records what it saw."""

    def __init__(self) -> None:
        self.handshakes: list[dict[str, str]] = []
        self.closes: list[tuple[int | None, str]] = []
        self.pings: list[bytes] = []
        self.closed = asyncio.Event()
        self.slow_release = asyncio.Event()
        self.app = web.Application()
        for path, handler in (
            ("/echo", self.echo),
            ("/close-4000", self.close_4000),
            ("/refuse", self.refuse),
            ("/slow", self.slow),
            ("/ping-observer", self.ping_observer),
            ("/drop", self.drop),
            ("/no-subprotocol", self.no_subprotocol),
        ):
            self.app.router.add_get(path, handler)

    async def _open(self, request: web.Request, **kwargs: Any) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("chat.v2", "chat.v1"), **kwargs)
        ws.set_cookie("xsrf", "from-upstream")
        await ws.prepare(request)
        self.handshakes.append({**request.headers, "chosen": ws.ws_protocol or ""})
        return ws

    async def echo(self, request: web.Request) -> web.WebSocketResponse:
        ws = await self._open(request, max_msg_size=0)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        self.closes.append((ws.close_code, ""))
        return ws

    async def no_subprotocol(self, request: web.Request) -> web.WebSocketResponse:
        # Like Streamlit's server: reads the offer, chooses no subprotocol, logs nothing about it.
        self.handshakes.append(dict(request.headers))
        ws = web.WebSocketResponse()
        await ws.prepare(request.clone(headers={**request.headers, "Sec-WebSocket-Protocol": ""}))
        async for msg in ws:
            await ws.send_str(msg.data)
        return ws

    async def close_4000(self, request: web.Request) -> web.WebSocketResponse:
        ws = await self._open(request)
        await ws.close(code=4000, message=b"bye")
        return ws

    async def refuse(self, request: web.Request) -> web.Response:
        return web.Response(status=403, text="no", headers={"WWW-Authenticate": "Bearer"})

    async def slow(self, request: web.Request) -> web.WebSocketResponse:
        ws = await self._open(request, max_msg_size=0)
        await self.slow_release.wait()
        digest, count = hashlib.sha256(), 0
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                digest.update(msg.data)
                count += 1
                if msg.data == b"":
                    await ws.send_str(f"{count - 1} {digest.hexdigest()}")
        return ws

    async def drop(self, request: web.Request) -> web.WebSocketResponse:
        ws = await self._open(request)
        assert request.transport is not None
        request.transport.abort()
        return ws

    async def ping_observer(self, request: web.Request) -> web.WebSocketResponse:
        ws = await self._open(request, autoping=False, autoclose=False)
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.PING:
                self.pings.append(msg.data)
                await ws.pong(msg.data)
            elif msg.type is WSMsgType.CLOSE:
                self.closes.append((msg.data, msg.extra))
                self.closed.set()
                await ws.close()
                return ws
            else:
                return ws


@pytest.fixture
async def upstream(start_upstream: StartUpstream) -> AsyncIterator[tuple[Upstream, URL]]:
    server = Upstream()
    url = await start_upstream(server.app)
    yield server, url
    server.slow_release.set()


@pytest.fixture
async def proxied(upstream: tuple[Upstream, URL], start_proxy: StartProxy) -> tuple[Upstream, URL]:
    server, url = upstream
    return server, (await start_proxy(url, prefix=PREFIX)) / PREFIX.strip("/")


async def test_text_stays_text_and_binary_stays_binary(
    proxied: tuple[Upstream, URL], http: aiohttp.ClientSession
) -> None:
    _, url = proxied
    async with http.ws_connect(url / "echo") as ws:
        await ws.send_str("héllo")
        text = await ws.receive()
        await ws.send_bytes(b"\x00\xffbinary")
        binary = await ws.receive()
    assert (text.type, text.data) == (WSMsgType.TEXT, "héllo")
    assert (binary.type, binary.data) == (WSMsgType.BINARY, b"\x00\xffbinary")


async def test_handshake_carries_headers_subprotocol_and_cookies(
    proxied: tuple[Upstream, URL],
) -> None:
    server, url = proxied
    response_head, _, writer = await _raw_handshake(
        url / "echo",
        "Origin: https://hub.example\r\nCookie: session=s1\r\nConnection: Upgrade, X-Hop\r\n"
        "X-Hop: secret\r\nSec-WebSocket-Protocol: chat.v0, chat.v2, chat.v1\r\n",
    )
    writer.close()
    assert response_head.startswith("HTTP/1.1 101")
    assert "\r\nSec-WebSocket-Protocol: chat.v2\r\n" in response_head
    assert "Set-Cookie: xsrf=from-upstream" in response_head
    seen = server.handshakes[0]
    assert seen["Origin"] == "https://hub.example"
    assert seen["Cookie"] == "session=s1"
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert seen["X-Forwarded-Prefix"] == PREFIX.rstrip("/")
    assert "X-Hop" not in seen
    assert seen["Sec-WebSocket-Protocol"].replace(" ", "") == "chat.v0,chat.v2,chat.v1"
    assert seen["chosen"] == "chat.v2"


async def test_no_subprotocol_is_forced_on_the_client(
    proxied: tuple[Upstream, URL], http: aiohttp.ClientSession
) -> None:
    _, url = proxied
    async with http.ws_connect(url / "echo", protocols=("unknown",)) as ws:
        assert ws.protocol is None
    async with http.ws_connect(url / "echo", protocols=("chat.v1",)) as ws:
        assert ws.protocol == "chat.v1"


async def test_an_offer_the_upstream_ignores_is_not_logged(
    proxied: tuple[Upstream, URL], http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    # Streamlit offers "streamlit, <XSRF token>"; aiohttp would log the whole offer as a mismatch.
    server, url = proxied
    offer = ("streamlit", "2|secret-token-1234")
    async with http.ws_connect(url / "no-subprotocol", protocols=offer) as ws:
        await ws.send_str("still works")
        echoed = await ws.receive_str()
        assert ws.protocol is None
    assert echoed == "still works"
    assert "secret-token-1234" in server.handshakes[0]["Sec-WebSocket-Protocol"]
    assert not [r.getMessage() for r in caplog.records if "secret-token-1234" in r.getMessage()]


async def test_fragmented_messages_arrive_whole(proxied: tuple[Upstream, URL]) -> None:
    _, url = proxied
    _, reader, writer = await _raw_handshake(url / "echo", "")
    writer.write(_client_frame(0x1, b"frag", fin=False) + _client_frame(0x0, b"mented", fin=True))
    opcode, payload = await _read_server_frame(reader)
    writer.close()
    assert (opcode, payload) == (0x1, b"fragmented")


async def test_upstream_close_code_and_reason_reach_the_client(
    proxied: tuple[Upstream, URL], http: aiohttp.ClientSession
) -> None:
    _, url = proxied
    async with http.ws_connect(url / "close-4000") as ws:
        msg = await ws.receive()
    assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 4000, "bye")


async def test_client_close_code_and_pings_reach_the_upstream(
    proxied: tuple[Upstream, URL], http: aiohttp.ClientSession
) -> None:
    server, url = proxied
    async with http.ws_connect(url / "ping-observer", autoping=False) as ws:
        await ws.ping(b"are you there")
        pong = await ws.receive()
        await ws.close(code=4001, message=b"client-bye")
    assert (pong.type, pong.data) == (WSMsgType.PONG, b"are you there")
    assert server.pings == [b"are you there"]
    assert server.closes == [(4001, "client-bye")]


async def test_an_upstream_that_drops_closes_the_client_with_1011(
    proxied: tuple[Upstream, URL], http: aiohttp.ClientSession
) -> None:
    _, url = proxied
    async with http.ws_connect(url / "drop") as ws:
        msg = await asyncio.wait_for(ws.receive(), timeout=10)
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1011)


async def test_a_client_that_drops_closes_the_upstream_with_1001(
    proxied: tuple[Upstream, URL],
) -> None:
    server, url = proxied
    _, _, writer = await _raw_handshake(url / "ping-observer", "")
    writer.transport.abort()
    await asyncio.wait_for(server.closed.wait(), timeout=10)
    assert server.closes == [(1001, "")]


async def test_the_demo_apps_websocket_works_through_rproxy(
    start_upstream: StartUpstream, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(await start_upstream(make_demo_app()), prefix="/user/me/")
    browser_like = {"Origin": f"http://{proxy.authority}", "User-Agent": "Mozilla/5.0"}
    async with http.ws_connect(proxy / "user/me/ws", headers=browser_like) as ws:
        await ws.send_str("hello demo")
        assert await ws.receive_str() == "hello demo"
        await ws.send_bytes(b"\x01\x02")
        assert await ws.receive_bytes() == b"\x01\x02"


async def test_a_refused_upgrade_keeps_its_status(
    proxied: tuple[Upstream, URL], http: aiohttp.ClientSession
) -> None:
    _, url = proxied
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(url / "refuse")
    assert refused.value.status == 403
    assert refused.value.headers is not None
    assert refused.value.headers["WWW-Authenticate"] == "Bearer"


async def test_an_unreachable_upstream_gives_502(
    start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy("http://127.0.0.1:9")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(proxy / "echo")
    assert refused.value.status == 502


async def test_large_binary_round_trip_is_byte_exact(
    proxied: tuple[Upstream, URL], http: aiohttp.ClientSession
) -> None:
    _, url = proxied
    payload = os.urandom(32 * MiB)
    async with http.ws_connect(url / "echo", max_msg_size=0) as ws:
        await ws.send_bytes(payload)
        echoed = await ws.receive_bytes()
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()


async def test_many_concurrent_connections(
    proxied: tuple[Upstream, URL], http: aiohttp.ClientSession
) -> None:
    _, url = proxied

    async def talk(n: int) -> str:
        async with http.ws_connect(url / "echo") as ws:
            await ws.send_str(f"client {n}")
            return await ws.receive_str()

    replies = await asyncio.gather(*(talk(n) for n in range(200)))
    assert replies == [f"client {n}" for n in range(200)]


async def test_a_slow_reader_slows_the_sender(
    proxied: tuple[Upstream, URL], http: aiohttp.ClientSession
) -> None:
    server, url = proxied
    chunk = os.urandom(MiB)
    sent = 0
    async with http.ws_connect(url / "slow", max_msg_size=0) as ws:

        async def send_all() -> None:
            nonlocal sent
            for _ in range(512):
                await ws.send_bytes(chunk)
                sent += 1

        sending = asyncio.create_task(send_all())
        # The upstream reads nothing yet: without backpressure 512 MiB would be buffered.
        done, _ = await asyncio.wait({sending}, timeout=3)
        assert not done, "the sender was never slowed down"
        assert sent < 128, f"{sent} MiB went out before the reader read anything"
        server.slow_release.set()
        await asyncio.wait_for(sending, timeout=60)
        await ws.send_bytes(b"")
        count, digest = (await asyncio.wait_for(ws.receive_str(), timeout=60)).split()
    expected = hashlib.sha256()
    for _ in range(512):
        expected.update(chunk)
    assert (int(count), digest) == (512, expected.hexdigest())


async def test_message_size_limit_closes_with_1009(
    upstream: tuple[Upstream, URL], start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    _, upstream_url = upstream
    proxy = await start_proxy(upstream_url, websocket_max_message_size=1024)
    async with http.ws_connect(proxy / "echo") as ws:
        await ws.send_bytes(b"x" * 2048)
        msg = await ws.receive()
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1009)


async def test_heartbeat_drops_a_client_that_does_not_answer(
    upstream: tuple[Upstream, URL], start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    _, upstream_url = upstream
    proxy = await start_proxy(upstream_url, websocket_heartbeat=0.2)
    async with http.ws_connect(proxy / "echo", autoping=False) as ws:
        first = await asyncio.wait_for(ws.receive(), timeout=10)
        last = await asyncio.wait_for(ws.receive(), timeout=10)
    assert first.type is WSMsgType.PING
    assert last.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)


class _HeaderAuth:
    async def check(self, request: web.Request) -> web.StreamResponse | None:
        if request.headers.get("X-Test-Auth") == "let-me-in":
            return None
        return web.Response(status=403, text="403 Forbidden\n")

    async def identity(self, request: web.Request) -> Identity | None:
        return Identity("tester") if request.headers.get("X-Test-Auth") == "let-me-in" else None


async def test_an_unauthenticated_upgrade_gets_403_before_any_upstream_connection(
    upstream: tuple[Upstream, URL], start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    server, upstream_url = upstream
    url = await start_proxy(upstream_url, authenticator=_HeaderAuth()) / "echo"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(url)
    assert refused.value.status == 403
    assert server.handshakes == []
    async with http.ws_connect(url, headers={"X-Test-Auth": "let-me-in"}) as ws:
        await ws.send_str("in")
        assert await ws.receive_str() == "in"


async def test_shutdown_closes_open_websockets_with_1001(
    upstream: tuple[Upstream, URL], http: aiohttp.ClientSession
) -> None:
    server, upstream_url = upstream
    runner = make_runner(load_config({"upstream": str(upstream_url)}, {}))
    async with http.ws_connect(await listen(runner) / "ping-observer") as ws:
        shutdown = asyncio.create_task(runner.cleanup())
        msg = await asyncio.wait_for(ws.receive(), timeout=10)
        await asyncio.wait_for(shutdown, timeout=20)
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1001)
    assert [code for code, _ in server.closes] == [1001]


async def _raw_handshake(
    url: URL, extra_headers: str
) -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a WebSocket by hand; return the response head, reader and writer."""
    assert url.host is not None
    assert url.port is not None
    reader, writer = await asyncio.open_connection(url.host, url.port)
    key = base64.b64encode(os.urandom(16)).decode()
    connection = "" if "Connection:" in extra_headers else "Connection: Upgrade\r\n"
    writer.write(
        f"GET {url.raw_path} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\nUpgrade: websocket\r\n"
        f"{connection}Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra_headers}\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    return head.decode(), reader, writer


def _client_frame(opcode: int, payload: bytes, *, fin: bool) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + mask + masked


async def _read_server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await asyncio.wait_for(reader.readexactly(2), timeout=10)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    return first & 0x0F, await reader.readexactly(length)


@pytest.mark.parametrize("offered", [True, False], ids=["deflate-offered", "not-offered"])
async def test_permessage_deflate_is_negotiated_per_side(
    offered: bool, proxied: tuple[Upstream, URL]
) -> None:
    server, url = proxied
    extension = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if offered else ""
    head, _, writer = await _raw_handshake(url / "echo", extension)
    writer.close()
    assert ("permessage-deflate" in head) is offered
    assert ("permessage-deflate" in server.handshakes[0].get("Sec-WebSocket-Extensions", "")) is (
        offered
    )
