"""Client connections as a user sees them, over raw sockets: keep-alive, pipelining, framing.

A real rproxy in front of a real aiohttp upstream. These tests pin what a client of rproxy can
observe on its connection (the order and framing of responses, when the connection stays open and
when it closes, which headers cross, error pages, shutdown), not how the server side does it, so
that any other implementation of the client-facing protocol must pass them unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import pytest
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from support import StartProxy, StartUpstream, free_port, listen
from yarl import URL

from rproxy.app import make_runner
from rproxy.http1 import FIELD_LIMIT
from rproxy.sources import load_config

PREFIX = "/user/ann/"
HOST = "rproxy.test"
TIMEOUT = 10
MiB = 1 << 20
BLOCK = bytes(range(256)) * 256  # 64 KiB the streamed bodies repeat
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Framing = Literal["length", "chunked", "close", "none"]


@dataclass(frozen=True, slots=True)
class Reply:
    """One response as read off the wire."""

    version: str
    status: int
    headers: CIMultiDict[str]
    body: bytes
    framing: Framing


@dataclass(frozen=True, slots=True)
class Seen:
    """A request as it reached the upstream."""

    method: str
    path: str
    headers: CIMultiDict[str]


def request(
    path: str,
    *headers: str,
    method: str = "GET",
    body: bytes = b"",
    version: str = "1.1",
    host: str | None = HOST,
) -> bytes:
    """A raw request for ``PREFIX + path``; a Content-Length goes with any ``body``."""
    lines = [f"{method} {PREFIX}{path} HTTP/{version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines.extend(headers)
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def streamed(size: int) -> bytes:
    """The body the upstream's /stream/{size} sends."""
    whole, part = divmod(size, len(BLOCK))
    return BLOCK * whole + BLOCK[:part]


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailer fields
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        assert await reader.readexactly(2) == b"\r\n", "a chunk does not end with CRLF"


class Client:
    """One raw client connection to rproxy; every read is bounded by TIMEOUT."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def reply(self, method: str = "GET", within: float = TIMEOUT) -> Reply:
        """Read one response: status line, headers, then its body as its framing says."""
        async with asyncio.timeout(within):
            head = await self.reader.readuntil(b"\r\n\r\n")
            status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
            version, code, *_ = status_line.split(" ", 2)
            headers: CIMultiDict[str] = CIMultiDict()
            for line in lines:
                name, colon, value = line.partition(":")
                assert colon, f"a header line without a colon: {line!r}"
                headers.add(name, value.strip(" \t"))
            status = int(code)
            framing: Framing
            if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                body, framing = b"", "none"
            elif "chunked" in headers.get("Transfer-Encoding", "").lower():
                body, framing = await _read_chunked(self.reader), "chunked"
            elif "Content-Length" in headers:
                length = int(headers["Content-Length"])
                body, framing = await self.reader.readexactly(length), "length"
            else:
                body, framing = await self.reader.read(), "close"
        return Reply(version, status, headers, body, framing)

    async def exchange(self, data: bytes, method: str = "GET") -> Reply:
        self.send(data)
        return await self.reply(method)

    async def closed_by_peer(self) -> bool:
        """True once rproxy has closed the connection with nothing more sent (a reset counts)."""
        async with asyncio.timeout(TIMEOUT):
            try:
                return await self.reader.read(1) == b""
            except ConnectionResetError:
                return True


@asynccontextmanager
async def connect(url: URL) -> AsyncIterator[Client]:
    assert url.host is not None
    assert url.port is not None
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        yield Client(reader, writer)
    finally:
        writer.close()
        try:
            async with asyncio.timeout(TIMEOUT):
                await writer.wait_closed()
        except ConnectionError:
            pass


class Upstream:
    """The upstream app: echoes, streams without a length, waits on request; records requests."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/stream/{size}", self._stream)
        app.router.add_get("/status/{code}", self._status)
        app.router.add_get("/hop", self._hop)
        app.router.add_get("/wait", self._wait)
        app.router.add_get("/ws", self._ws)
        app.router.add_route("*", "/{tail:.*}", self._echo)
        return app

    @property
    def paths(self) -> list[str]:
        return [seen.path for seen in self.seen]

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.seen.append(Seen(request.method, request.path_qs, CIMultiDict(request.headers)))
        return await handler(request)

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(body=f"{request.method} {request.path_qs}\n".encode() + body)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # no Content-Length: chunked to an HTTP/1.1 client
        await response.prepare(request)
        body = streamed(int(request.match_info["size"]))
        for start in range(0, len(body), len(BLOCK)):
            await response.write(body[start : start + len(BLOCK)])
        await response.write_eof()
        return response

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), headers={"ETag": '"v1"'})

    async def _hop(self, request: web.Request) -> web.Response:
        headers = {
            "Date": "Tue, 01 Jan 2030 00:00:00 GMT",
            "Server": "upstream-app/1.0",
            "X-Custom": "kept",
            "Keep-Alive": "timeout=5, max=100",
            "Connection": "X-Hop-Secret",
            "X-Hop-Secret": "dropped",
        }
        return web.Response(text="hop", headers=headers)

    async def _wait(self, request: web.Request) -> web.Response:
        self.waiting.set()
        await self.release.wait()
        return web.Response(text="released")

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str("echo: " + msg.data)
        return ws


@pytest.fixture
async def upstream(start_upstream: StartUpstream) -> tuple[Upstream, URL]:
    recorder = Upstream()
    return recorder, await start_upstream(recorder.app())


@pytest.fixture
async def proxied(upstream: tuple[Upstream, URL], start_proxy: StartProxy) -> tuple[Upstream, URL]:
    recorder, url = upstream
    return recorder, await start_proxy(url, prefix=PREFIX)


def _echoed(reply: Reply, method: str, path: str, body: bytes = b"") -> None:
    """``reply`` is the upstream's echo of ``method`` ``/path``, framed by its Content-Length."""
    assert reply.status == 200, reply
    assert reply.framing == "length"
    assert reply.body == f"{method} /{path}\n".encode() + body


async def test_many_sequential_requests_on_one_keep_alive_connection(
    proxied: tuple[Upstream, URL],
) -> None:
    recorder, proxy = proxied
    sizes = [0, 1, 100, 65536, 70_000, 200_000]
    async with connect(proxy) as client:
        for n in range(30):
            if n % 2:
                size = sizes[n // 2 % len(sizes)]
                reply = await client.exchange(request(f"stream/{size}"))
                assert (reply.status, reply.framing) == (200, "chunked")
                assert reply.body == streamed(size)
            else:
                reply = await client.exchange(request(f"item/{n}?q={n}"))
                _echoed(reply, "GET", f"item/{n}?q={n}")
            assert reply.version == "HTTP/1.1"
            assert "close" not in reply.headers.get("Connection", "").lower()
        assert not client.reader.at_eof()
        _echoed(await client.exchange(request("last")), "GET", "last")
    assert len(recorder.seen) == 31


async def test_pipelined_requests_are_answered_in_order(proxied: tuple[Upstream, URL]) -> None:
    recorder, proxy = proxied
    async with connect(proxy) as client:
        client.send(request("one") + request("two") + request("three"))
        for path in ("one", "two", "three"):
            _echoed(await client.reply(), "GET", path)
        _echoed(await client.exchange(request("four")), "GET", "four")
    assert recorder.paths == ["/one", "/two", "/three", "/four"]


@pytest.mark.parametrize("pipelined", [False, True], ids=["one-by-one", "pipelined"])
async def test_kinds_of_requests_mixed_on_one_connection(
    proxied: tuple[Upstream, URL], pipelined: bool
) -> None:
    recorder, proxy = proxied
    payload = b"name=ann&text=" + b"x" * 5000
    requests = [
        request("first"),
        request("api/status"),
        request(
            "form", "Content-Type: application/x-www-form-urlencoded", method="POST", body=payload
        ),
        request("again"),
    ]
    async with connect(proxy) as client:
        if pipelined:
            client.send(b"".join(requests))
            replies = [await client.reply() for _ in requests]
        else:
            replies = [await client.exchange(data) for data in requests]
        _echoed(await client.exchange(request("after")), "GET", "after")
    first, status, form, again = replies
    _echoed(first, "GET", "first")
    assert status.status == 200
    assert status.headers["Content-Type"].startswith("application/json")
    assert json.loads(status.body)["status"] == "ok"
    _echoed(form, "POST", "form", payload)
    _echoed(again, "GET", "again")
    assert recorder.paths == ["/first", "/form", "/again", "/after"]  # the API is rproxy's own


def _masked_frame(opcode: int, payload: bytes) -> bytes:
    assert len(payload) < 126
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + masked


async def _server_frame(client: Client) -> tuple[int, bytes]:
    async with asyncio.timeout(TIMEOUT):
        first, second = await client.reader.readexactly(2)
        assert not second & 0x80, "a frame to the client is masked"
        assert second & 0x7F < 126
        return first, await client.reader.readexactly(second & 0x7F)


async def test_a_websocket_upgrade_after_a_plain_request_on_the_same_connection(
    proxied: tuple[Upstream, URL],
) -> None:
    recorder, proxy = proxied
    key = base64.b64encode(os.urandom(16)).decode()
    upgrade = request("ws", "Upgrade: websocket", "Connection: Upgrade",
                      f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13")  # fmt: skip
    async with connect(proxy) as client:
        _echoed(await client.exchange(request("page")), "GET", "page")
        switched = await client.exchange(upgrade)
        assert switched.status == 101
        assert switched.headers["Upgrade"].lower() == "websocket"
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        assert switched.headers["Sec-WebSocket-Accept"] == accept
        client.send(_masked_frame(0x1, b"hello"))
        assert await _server_frame(client) == (0x81, b"echo: hello")
        client.send(_masked_frame(0x8, (1000).to_bytes(2, "big")))
        first, payload = await _server_frame(client)
        assert (first, payload[:2]) == (0x88, (1000).to_bytes(2, "big"))
        assert await client.closed_by_peer()
    assert recorder.paths == ["/page", "/ws"]


async def test_http_1_0_without_keep_alive_is_closed_after_the_response(
    proxied: tuple[Upstream, URL],
) -> None:
    _, proxy = proxied
    async with connect(proxy) as client:
        reply = await client.exchange(request("old", version="1.0"))
        _echoed(reply, "GET", "old")
        assert await client.closed_by_peer()


async def test_http_1_0_with_keep_alive_stays_open_when_the_response_has_a_length(
    proxied: tuple[Upstream, URL],
) -> None:
    recorder, proxy = proxied
    async with connect(proxy) as client:
        for path in ("one", "two", "three"):
            reply = await client.exchange(request(path, "Connection: keep-alive", version="1.0"))
            _echoed(reply, "GET", path)
            assert reply.headers.get("Connection", "").lower() == "keep-alive"
        reply = await client.exchange(request("four", version="1.0"))  # no keep-alive: the last
        _echoed(reply, "GET", "four")
        assert await client.closed_by_peer()
    assert recorder.paths == ["/one", "/two", "/three", "/four"]


@pytest.mark.parametrize(
    "keep_alive",
    [
        pytest.param(False, id="plain"),
        # aiohttp's server kept such a connection open: the body ended only at the idle timeout
        pytest.param(True, id="keep-alive-asked"),
    ],
)
async def test_a_response_without_length_reaches_an_http_1_0_client_close_delimited(
    proxied: tuple[Upstream, URL], keep_alive: bool
) -> None:
    _, proxy = proxied
    size = 300_000
    headers = ["Connection: keep-alive"] if keep_alive else []
    async with connect(proxy) as client:
        client.send(request(f"stream/{size}", *headers, version="1.0"))
        reply = await client.reply(within=3)  # the idle timeout is 75 s
        assert reply.status == 200
        assert reply.framing == "close"
        assert "Transfer-Encoding" not in reply.headers
        assert reply.body == streamed(size)


async def test_a_response_without_length_reaches_an_http_1_1_client_chunked(
    proxied: tuple[Upstream, URL],
) -> None:
    _, proxy = proxied
    size = 300_000
    async with connect(proxy) as client:
        reply = await client.exchange(request(f"stream/{size}"))
        assert reply.status == 200
        assert reply.framing == "chunked"
        assert "Content-Length" not in reply.headers
        assert reply.body == streamed(size)
        _echoed(await client.exchange(request("next")), "GET", "next")


async def test_head_gets_the_upstreams_length_and_no_body_then_the_connection_goes_on(
    proxied: tuple[Upstream, URL],
) -> None:
    recorder, proxy = proxied
    async with connect(proxy) as client:
        head = await client.exchange(request("doc", method="HEAD"), method="HEAD")
        _echoed(await client.exchange(request("doc")), "GET", "doc")  # no body bytes came between
    assert head.status == 200
    assert head.headers["Content-Length"] == str(len(b"HEAD /doc\n"))
    assert recorder.paths == ["/doc", "/doc"]
    assert [seen.method for seen in recorder.seen] == ["HEAD", "GET"]


@pytest.mark.parametrize("code", [204, 304])
async def test_bodiless_statuses_carry_no_body_and_the_connection_goes_on(
    proxied: tuple[Upstream, URL], code: int
) -> None:
    _, proxy = proxied
    async with connect(proxy) as client:
        reply = await client.exchange(request(f"status/{code}"))
        assert reply.status == code
        assert reply.headers["ETag"] == '"v1"'
        assert "Transfer-Encoding" not in reply.headers
        assert reply.headers.get("Content-Length", "0") == "0"
        _echoed(await client.exchange(request("next")), "GET", "next")  # no body bytes between


async def test_connection_close_from_the_client_closes_after_the_response(
    proxied: tuple[Upstream, URL],
) -> None:
    recorder, proxy = proxied
    async with connect(proxy) as client:
        _echoed(await client.exchange(request("first")), "GET", "first")
        _echoed(await client.exchange(request("bye", "Connection: close")), "GET", "bye")
        assert await client.closed_by_peer()
    assert recorder.paths == ["/first", "/bye"]
    assert "close" not in recorder.seen[1].headers.get("Connection", "").lower()


@pytest.mark.parametrize(
    "malformed",
    [
        pytest.param(b"GET /user/ann/x HTTP/1.1 extra\r\nHost: x\r\n\r\n", id="bad-request-line"),
        pytest.param(
            b"GET /user/ann/x HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
            id="header-without-colon",
        ),
    ],
)
async def test_a_malformed_request_after_a_good_one_gets_the_fixed_page_and_a_close(
    proxied: tuple[Upstream, URL], malformed: bytes
) -> None:
    recorder, proxy = proxied
    async with connect(proxy) as client:
        _echoed(await client.exchange(request("good")), "GET", "good")
        refused = await client.exchange(malformed)
        assert await client.closed_by_peer()
    assert refused.status == 400
    assert refused.headers["X-Content-Type-Options"] == "nosniff"
    assert refused.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert refused.body.startswith(b"400 Bad Request\n\n")
    assert b"colon" not in refused.body
    assert b"extra" not in refused.body
    assert b"/user/ann/x" not in refused.body
    assert recorder.paths == ["/good"]


async def test_a_good_request_pipelined_before_a_malformed_one_is_answered_first(
    proxied: tuple[Upstream, URL],
) -> None:
    recorder, proxy = proxied
    malformed = b"GET /user/ann/x HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n"
    async with connect(proxy) as client:
        client.send(request("good") + malformed)
        _echoed(await client.reply(), "GET", "good")
        assert (await client.reply()).status == 400
        assert await client.closed_by_peer()
    assert recorder.paths == ["/good"]


def _with_big_header(value_size: int, *, first: bool) -> bytes:
    """A request with an ``X-Big`` header of ``value_size`` bytes of value, before or after Host."""
    big = "X-Big: " + "v" * value_size
    return request("big", big, f"Host: {HOST}", host=None) if first else request("big", big)


HEADER_POSITIONS = [pytest.param(True, id="first-header"), pytest.param(False, id="after-host")]


@pytest.mark.parametrize("first", HEADER_POSITIONS)
async def test_a_header_whose_name_and_value_make_the_field_limit_is_forwarded(
    proxied: tuple[Upstream, URL], first: bool
) -> None:
    # FIELD_LIMIT bytes of name and value (the line, with ": " and CRLF, is 4 bytes longer)
    recorder, proxy = proxied
    value_size = FIELD_LIMIT - len("X-Big")
    async with connect(proxy) as client:
        _echoed(await client.exchange(_with_big_header(value_size, first=first)), "GET", "big")
        _echoed(await client.exchange(request("next")), "GET", "next")
    assert recorder.seen[0].headers["X-Big"] == "v" * value_size
    assert recorder.paths == ["/big", "/next"]


@pytest.mark.parametrize("first", HEADER_POSITIONS)
async def test_a_header_value_over_the_field_limit_gets_400_and_a_close(
    proxied: tuple[Upstream, URL], first: bool
) -> None:
    recorder, proxy = proxied
    async with connect(proxy) as client:
        _echoed(await client.exchange(request("good")), "GET", "good")
        refused = await client.exchange(_with_big_header(FIELD_LIMIT + 1, first=first))
        assert await client.closed_by_peer()
    assert refused.status == 400
    assert refused.headers["X-Content-Type-Options"] == "nosniff"
    assert refused.body.startswith(b"400 Bad Request\n\n")
    assert str(FIELD_LIMIT).encode() in refused.body
    assert b"vvvv" not in refused.body
    assert recorder.paths == ["/good"]


async def test_a_request_line_at_the_limit_is_forwarded_and_one_byte_over_is_refused(
    proxied: tuple[Upstream, URL],
) -> None:
    # the limit counts the request target alone
    recorder, proxy = proxied
    query = "q=" + "a" * (FIELD_LIMIT - len(f"{PREFIX}long?q="))
    async with connect(proxy) as client:
        _echoed(await client.exchange(request(f"long?{query}")), "GET", f"long?{query}")
        refused = await client.exchange(request(f"long?{query}a"))
        assert await client.closed_by_peer()
    assert refused.status == 400
    assert refused.body.startswith(b"400 Bad Request\n\n")
    assert b"aaaa" not in refused.body
    assert recorder.paths == [f"/long?{query}"]


async def test_an_unreachable_upstream_gets_502_and_the_connection_goes_on(
    start_proxy: StartProxy,
) -> None:
    proxy = await start_proxy(f"http://127.0.0.1:{free_port()}", prefix=PREFIX)
    async with connect(proxy) as client:
        for _ in range(2):
            reply = await client.exchange(request("page"))
            assert reply.status == 502
            assert reply.framing == "length"
            assert reply.headers["X-Content-Type-Options"] == "nosniff"
            assert reply.body.startswith(b"502 Bad Gateway\n")
        assert not client.reader.at_eof()


async def test_a_client_leaving_mid_response_does_not_disturb_another(
    proxied: tuple[Upstream, URL],
) -> None:
    _, proxy = proxied
    size = 8 * MiB
    async with connect(proxy) as leaving, connect(proxy) as staying:
        leaving.send(request(f"stream/{size}"))
        staying.send(request(f"stream/{size}"))
        async with asyncio.timeout(TIMEOUT):
            for client in (leaving, staying):  # both responses have started
                await client.reader.readuntil(b"\r\n\r\n")
            await leaving.reader.readexactly(100_000)
        leaving.writer.transport.abort()
        async with asyncio.timeout(TIMEOUT):
            body = await _read_chunked(staying.reader)
        assert body == streamed(size)
        _echoed(await staying.exchange(request("after")), "GET", "after")


async def test_the_upstreams_own_headers_pass_and_its_hop_by_hop_headers_do_not(
    proxied: tuple[Upstream, URL],
) -> None:
    _, proxy = proxied
    async with connect(proxy) as client:
        reply = await client.exchange(request("hop"))
        _echoed(await client.exchange(request("next")), "GET", "next")
    assert reply.status == 200
    assert reply.body == b"hop"
    assert reply.headers["Date"] == "Tue, 01 Jan 2030 00:00:00 GMT"
    assert reply.headers["Server"] == "upstream-app/1.0"
    assert reply.headers["X-Custom"] == "kept"
    assert "Keep-Alive" not in reply.headers
    assert "X-Hop-Secret" not in reply.headers
    assert "x-hop-secret" not in reply.headers.get("Connection", "").lower()


async def test_x_forwarded_headers_reach_the_upstream_on_every_request_of_a_connection(
    proxied: tuple[Upstream, URL],
) -> None:
    recorder, proxy = proxied
    async with connect(proxy) as client:
        client.send(request("a") + request("b"))
        for path in ("a", "b"):
            _echoed(await client.reply(), "GET", path)
        _echoed(await client.exchange(request("c")), "GET", "c")
        forged = request("d", "X-Forwarded-For: 10.9.9.9", "X-Forwarded-Host: evil.test")
        _echoed(await client.exchange(forged), "GET", "d")
    assert len(recorder.seen) == 4
    for seen in recorder.seen:
        assert seen.headers.getall("X-Forwarded-For") == ["127.0.0.1"], seen.path
        assert seen.headers.getall("X-Forwarded-Proto") == ["http"], seen.path
        assert seen.headers.getall("X-Forwarded-Host") == [HOST], seen.path


async def test_shutdown_closes_idle_connections_and_lets_a_request_in_flight_finish(
    upstream: tuple[Upstream, URL],
) -> None:
    recorder, upstream_url = upstream
    config = load_config({"upstream": str(upstream_url), "prefix": PREFIX,
                          "grace_period": 20}, {})  # fmt: skip
    runner = make_runner(config)
    proxy = await listen(runner)
    cleanup: asyncio.Task[None] | None = None
    try:
        async with connect(proxy) as idle, connect(proxy) as busy:
            _echoed(await idle.exchange(request("before")), "GET", "before")
            busy.send(request("wait"))
            async with asyncio.timeout(TIMEOUT):
                await recorder.waiting.wait()
            cleanup = asyncio.create_task(runner.cleanup())
            assert await idle.closed_by_peer()
            with pytest.raises(ConnectionRefusedError):  # no new connections meanwhile
                async with connect(proxy):
                    pass
            assert not cleanup.done()  # it waits for the request in flight
            recorder.release.set()
            reply = await busy.reply()
            assert (reply.status, reply.body) == (200, b"released")
            assert await busy.closed_by_peer()
            async with asyncio.timeout(TIMEOUT):
                await cleanup
    finally:
        recorder.release.set()
        if cleanup is None:
            await runner.cleanup()
        elif not cleanup.done():
            cleanup.cancel()
            await asyncio.wait({cleanup})
    assert recorder.paths == ["/before", "/wait"]
