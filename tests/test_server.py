"""The client-facing server (rproxy/server.py): bad requests, slow clients, body limits.

A request aiohttp cannot parse is answered with fixed text (never the request's own bytes) and
nosniff, and reaches no upstream. One deadline, ``--client-timeout``, cuts off a client that sends
its request head too slowly (slowloris), stays idle, stops reading a response, or stops
sending its body; meanwhile other clients are served.
"""

from __future__ import annotations

import asyncio
import resource
import socket

import pytest
from aiohttp import web
from support import StartProxy, StartUpstream, raw_exchange, status_of
from yarl import URL

from rproxy.server import raise_open_file_limit

MARKUP = b"<script>alert(1)</script>"


class Upstream:
    """An upstream that counts what reaches it: whole requests, and bodies that broke off."""

    def __init__(self) -> None:
        self.requests = 0
        self.broken_bodies = 0
        self.whole_bodies = 0
        self.stream_ended = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/endless", self._endless)
        app.router.add_route("*", "/{tail:.*}", self._echo)
        return app

    async def _echo(self, request: web.Request) -> web.Response:
        self.requests += 1
        try:
            body = await request.read()
        except Exception:
            self.broken_bodies += 1
            raise
        self.whole_bodies += bool(body)
        return web.Response(text=f"{len(body)} bytes")

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b"x" * 65536
        try:
            while True:
                await response.write(chunk)
        finally:  # only when rproxy drops this connection (the handler is cancelled)
            self.stream_ended.set()


@pytest.fixture
async def upstream(start_upstream: StartUpstream) -> tuple[Upstream, URL]:
    recorder = Upstream()
    return recorder, await start_upstream(recorder.app())


@pytest.mark.parametrize(
    "request_line",
    [
        pytest.param(b"GET /x", id="no-version"),
        pytest.param(b"GET /x HTTP/0.9", id="http-0.9"),
        pytest.param(b"GET /x HTTP/2.0", id="http-2.0"),
    ],
)
async def test_request_lines_of_other_http_versions_get_505(
    upstream: tuple[Upstream, URL], start_proxy: StartProxy, request_line: bytes
) -> None:
    recorder, upstream_url = upstream
    proxy = await start_proxy(upstream_url)
    raw = await raw_exchange(proxy, request_line + b"\r\nHost: x\r\n\r\n")
    assert status_of(raw) == 505
    assert raw.endswith(b"rproxy speaks HTTP/1.1 and HTTP/1.0.\n")
    assert recorder.requests == 0


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"G" + MARKUP + b" / HTTP/1.1\r\nHost: x\r\n\r\n", id="markup-in-method"),
        pytest.param(b"GET / HTTP/1.1\r\nHo" + MARKUP + b"st: x\r\n\r\n", id="markup-header-name"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + MARKUP + b"\x00\r\n\r\n", id="nul"),
        pytest.param(b"GET /" + MARKUP + b" HTTP/9.9\r\nHost: x\r\n\r\n", id="markup-version"),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + MARKUP + b"\r\n\r\n",
            id="header-too-long",
        ),
        pytest.param(b"GET /" + b"a" * 9000 + MARKUP + b" HTTP/1.1\r\n\r\n", id="target-too-long"),
        pytest.param(b"\x16\x03\x01\x00\xa5\x01\x00" + MARKUP, id="tls-to-plain-port"),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\n" + MARKUP,
            id="length-and-chunked",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            id="two-lengths",
        ),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n " + MARKUP + b"\r\n\r\n", id="obs-fold"),
        pytest.param(b"GET / HTTP/1.1\nHost: x\n" + MARKUP + b"\n\n", id="bare-lf"),
    ],
)
async def test_a_malformed_request_gets_fixed_text_and_reaches_no_upstream(
    upstream: tuple[Upstream, URL], start_proxy: StartProxy, request_bytes: bytes
) -> None:
    recorder, upstream_url = upstream
    proxy = await start_proxy(upstream_url)
    raw = await raw_exchange(proxy, request_bytes)  # returns once rproxy closed the connection
    head, _, body = raw.partition(b"\r\n\r\n")
    assert status_of(raw) == 400, raw
    assert b"\r\nX-Content-Type-Options: nosniff\r\n" in head
    assert b"\r\nContent-Type: text/plain; charset=utf-8\r\n" in head
    assert body.startswith(b"400 Bad Request\n\n")
    assert b"<" not in body
    assert b"script" not in body
    assert b"aaaa" not in body
    assert recorder.requests == 0


async def _connect(url: URL) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert url.host is not None
    assert url.port is not None
    return await asyncio.open_connection(url.host, url.port)


async def _closed_by_peer(reader: asyncio.StreamReader) -> bytes:
    """What the peer sent until it closed (a reset counts as closed)."""
    try:
        return await reader.read()
    except ConnectionResetError:
        return b""


async def test_a_trickling_request_head_is_cut_off_while_others_are_served(
    upstream: tuple[Upstream, URL], start_proxy: StartProxy
) -> None:
    recorder, upstream_url = upstream
    proxy = await start_proxy(upstream_url, client_timeout=1.0)
    reader, writer = await _connect(proxy)
    closed = asyncio.ensure_future(_closed_by_peer(reader))
    sent = 0
    async with asyncio.timeout(15):
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        while not closed.done():  # a header line every 50 ms: never a whole head
            writer.write(b"X-Slow: %d\r\n" % sent)
            sent += 1
            if sent == 5:  # mid-trickle, another client is answered at once
                answer = await raw_exchange(
                    proxy, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                assert status_of(answer) == 200
            await asyncio.wait({closed}, timeout=0.05)
    writer.close()
    assert await closed == b""
    assert sent > 5  # it kept sending: the head's deadline, not an idle timer, closed it
    assert recorder.requests == 1


async def test_an_idle_connection_is_closed_after_the_client_timeout(
    upstream: tuple[Upstream, URL], start_proxy: StartProxy
) -> None:
    _, upstream_url = upstream
    proxy = await start_proxy(upstream_url, client_timeout=0.5)
    reader, writer = await _connect(proxy)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(10):
        answer = await _closed_by_peer(reader)  # one answer, then idle: rproxy closes
    writer.close()
    assert status_of(answer) == 200


async def test_a_client_that_stops_reading_is_dropped_and_frees_the_upstream(
    upstream: tuple[Upstream, URL], start_proxy: StartProxy
) -> None:
    recorder, upstream_url = upstream
    proxy = await start_proxy(upstream_url, client_timeout=1.0)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((proxy.host, proxy.port))
    sock.sendall(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        async with asyncio.timeout(20):  # the client reads nothing at all
            await recorder.stream_ended.wait()
        answer = await raw_exchange(
            proxy, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert status_of(answer) == 200
    finally:
        sock.close()


async def test_a_stalled_upload_gets_408_and_the_upstream_never_a_whole_body(
    upstream: tuple[Upstream, URL], start_proxy: StartProxy
) -> None:
    recorder, upstream_url = upstream
    proxy = await start_proxy(upstream_url, client_timeout=0.5)
    reader, writer = await _connect(proxy)
    writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"y" * 10)
    async with asyncio.timeout(10):  # the answer comes; the close may wait for aiohttp's linger
        head = await reader.readuntil(b"\r\n\r\n")
        body = await reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r")[0]))
    writer.close()
    assert status_of(head) == 408
    assert b"\r\nConnection: close\r\n" in head
    assert body.endswith(b"The request body stopped arriving.\n")
    assert recorder.whole_bodies == 0


@pytest.mark.parametrize("declared", [pytest.param(True, id="content-length"),
                                      pytest.param(False, id="chunked")])  # fmt: skip
async def test_a_body_over_the_limit_gets_413_and_the_upstream_never_a_whole_body(
    upstream: tuple[Upstream, URL], start_proxy: StartProxy, declared: bool
) -> None:
    recorder, upstream_url = upstream
    proxy = await start_proxy(upstream_url, max_body_size=1000)
    if declared:
        request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n" + b"z" * 1001
    else:
        chunks = b"".join(b"64\r\n" + b"z" * 100 + b"\r\n" for _ in range(11))
        request = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
        request += b"0\r\n\r\n"
    answer = await raw_exchange(proxy, request)
    assert status_of(answer) == 413
    assert answer.endswith(b"A request body may have at most 1000 bytes.\n")
    assert recorder.whole_bodies == 0
    assert recorder.requests == (0 if declared else 1)
    at_limit = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n"
        + b"z" * 1000
    )
    assert (await raw_exchange(proxy, at_limit)).endswith(b"1000 bytes")


@pytest.mark.parametrize("target", [b"127.0.0.1:9", b"/x"], ids=["authority", "path"])
async def test_connect_gets_405_and_reaches_no_upstream(
    upstream: tuple[Upstream, URL], start_proxy: StartProxy, target: bytes
) -> None:
    recorder, upstream_url = upstream
    proxy = await start_proxy(upstream_url)
    raw = await raw_exchange(proxy, b"CONNECT " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(raw) == 405
    assert b"nosniff" in raw
    assert recorder.requests == 0


async def test_expect_100_continue_is_answered_before_the_body_is_sent(
    upstream: tuple[Upstream, URL], start_proxy: StartProxy
) -> None:
    # rproxy hands requests to its handler without aiohttp's router (server.py): the route's
    # Expect handling must still run first
    recorder, upstream_url = upstream
    proxy = await start_proxy(upstream_url)
    assert proxy.host is not None
    assert proxy.port is not None
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(
            b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await reader.readuntil(b"\r\n\r\n")
        writer.write(b"hello")
        head = await reader.readuntil(b"\r\n\r\n")
        body = await reader.readexactly(int(head.lower().split(b"content-length: ")[1][:1]))
        writer.close()
        await writer.wait_closed()
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert (status_of(head), body) == (200, b"5 bytes")
    assert recorder.whole_bodies == 1


async def test_an_expectation_other_than_100_continue_gets_417(
    upstream: tuple[Upstream, URL], start_proxy: StartProxy
) -> None:
    recorder, upstream_url = upstream
    proxy = await start_proxy(upstream_url)
    raw = await raw_exchange(
        proxy,
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nExpect: teapot\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert status_of(raw) == 417
    assert recorder.requests == 0


def test_the_open_file_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if soft == hard and hard > 256:
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert raise_open_file_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
