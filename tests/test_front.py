"""front.py's own edge cases, seen from a raw client socket: hand-offs to aiohttp's protocol in the
middle of a pipeline and of a head, deep pipelining and how much of a pipeline is read ahead,
responses cut short by the upstream, HTTP/1.0 keep-alive, large response heads, TLS, that both
protocols forward the same request headers, and what front.py adds to a response.

A real rproxy (``start_proxy``, as the command line runs it) in front of a real aiohttp upstream
(``Upstream``, from test_client_connections, whose raw-socket client this module shares) or of a
raw asyncio upstream (``RawUpstream``) where a response must be malformed or exactly as written.
A request front.py answers itself is called front-served here; one it hands to aiohttp's protocol
(a body, an expectation, a target that is not a plain forward...) aiohttp-served.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, cast

import pytest
from aiohttp import web
from multidict import CIMultiDict
from support import StartProxy, StartUpstream, make_certificates
from test_client_connections import (
    HOST,
    PREFIX,
    TIMEOUT,
    Client,
    MiB,
    Reply,
    Upstream,
    connect,
    request,
    streamed,
)
from yarl import URL

from rproxy.app import make_runner
from rproxy.rewriters.base import ResponseMeta, RewriteContext
from rproxy.serving import server_tls
from rproxy.sources import load_config

# front.py reads at most this much of what follows a request while answering it (its _BUFFERED)
FRONT_BUFFERED = 64 * 1024


@pytest.fixture
async def proxied(start_upstream: StartUpstream, start_proxy: StartProxy) -> tuple[Upstream, URL]:
    """rproxy in front of an ``Upstream``: the upstream's recorder and rproxy's URL."""
    recorder = Upstream()
    return recorder, await start_proxy(await start_upstream(recorder.app()), prefix=PREFIX)


def _echoed(reply: Reply, method: str, path: str, body: bytes = b"") -> None:
    """``reply`` is the upstream's echo of ``method`` ``/path`` (and of ``body``)."""
    assert (reply.status, reply.framing) == (200, "length"), reply
    assert reply.body == f"{method} /{path}\n".encode() + body


@asynccontextmanager
async def connect_with(
    url: URL, *, tls: ssl.SSLContext | None = None, receive_buffer: int | None = None
) -> AsyncIterator[Client]:
    """A client connection over TLS, or with a small receive buffer (so rproxy's writes to it
    soon pause): what ``connect`` does not offer."""
    assert url.host is not None
    assert url.port is not None
    sock = socket.socket()
    try:
        if receive_buffer is not None:  # before connecting: the window is agreed then
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        async with asyncio.timeout(TIMEOUT):
            await asyncio.get_running_loop().sock_connect(sock, (url.host, url.port))
            reader, writer = await asyncio.open_connection(
                sock=sock, ssl=tls, server_hostname=url.host if tls else None
            )
    except BaseException:
        sock.close()
        raise
    try:
        yield Client(reader, writer)
    finally:
        writer.transport.abort()  # what the client did not send is of no use now


async def _final_reply(client: Client, method: str = "GET") -> tuple[list[int], Reply]:
    """The interim (1xx) statuses read before the next final response, and that response."""
    interim: list[int] = []
    while (reply := await client.reply(method)).status < 200:
        interim.append(reply.status)
    return interim, reply


# -- a raw upstream: its responses are exactly the bytes a test gives ------------------------------


class RawUpstream:
    """An upstream on 127.0.0.1 that answers every request with ``response`` (and then closes the
    connection if ``close``); it reads requests with a Content-Length body only."""

    def __init__(self, response: bytes, *, close: bool) -> None:
        self._response = response
        self._close = close
        self.targets: list[str] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> URL:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return URL.build(scheme="http", host="127.0.0.1", port=port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *fields = head[:-4].split(b"\r\n")
                self.targets.append(line.split(b" ")[1].decode())
                for field in fields:
                    name, _, value = field.partition(b":")
                    if name.lower() == b"content-length":
                        await reader.readexactly(int(value))
                writer.write(self._response)
                await writer.drain()
                if self._close:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self._tasks.discard(task)
            writer.close()


StartRaw = Callable[..., Awaitable[tuple[RawUpstream, URL]]]


@pytest.fixture
async def raw_upstream() -> AsyncIterator[StartRaw]:
    """Start a ``RawUpstream(response, close=...)``; return it and its URL."""
    servers: list[RawUpstream] = []

    async def start(response: bytes, *, close: bool = False) -> tuple[RawUpstream, URL]:
        server = RawUpstream(response, close=close)
        servers.append(server)
        return server, await server.start()

    yield start
    for server in servers:
        await server.close()


# -- 1. a hand-off in the middle of a pipeline ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expected:
    """How rproxy answers a request, and what the upstream sees of it."""

    status: int
    body: bytes  # the whole body; with ``page``, only its start
    paths: tuple[str, ...] = ()  # the request targets the upstream saw
    interim: tuple[int, ...] = ()  # 1xx statuses before the response
    page: bool = False  # rproxy's own answer (an error page, its API), not the upstream's
    api_status: str | None = None  # rproxy's API: the "status" in its JSON
    fields: tuple[str, ...] = ()  # the upstream saw these X-Field-* lines, in this order


FORM = b"name=ann&text=" + b"x" * 5000
MANY = tuple(f"X-Field-{n:03}: value {n}" for n in range(120))  # more than front.py takes

HANDED_OFF = [
    pytest.param(
        request("form", method="POST", body=FORM),
        Expected(200, b"POST /form\n" + FORM, ("/form",)),
        id="post-with-length",
    ),
    pytest.param(
        request("up", "Transfer-Encoding: chunked", method="POST", body=b"")
        + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        Expected(200, b"POST /up\nhello world", ("/up",)),
        id="post-chunked",
    ),
    pytest.param(
        request("expect", "Expect: 100-continue", method="PUT", body=b"payload"),
        Expected(200, b"PUT /expect\npayload", ("/expect",), interim=(100,)),
        id="expect-100-continue",
    ),
    pytest.param(
        f"GET http://{HOST}{PREFIX}abs HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode(),
        Expected(400, b"400 Bad Request\n", page=True),
        id="absolute-form",
    ),
    pytest.param(
        request("api/status"),
        Expected(200, b"{", page=True, api_status="ok"),
        id="rproxy-api",
    ),
    pytest.param(
        f"GET /elsewhere HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode(),
        Expected(404, b"404 Not Found\n", page=True),
        id="outside-the-prefix",
    ),
    pytest.param(
        request("many", *MANY),
        Expected(200, b"GET /many\n", ("/many",), fields=MANY),
        id="many-headers",
    ),
]


def _check(reply: Reply, interim: list[int], expected: Expected) -> None:
    assert reply.status == expected.status, reply
    assert tuple(interim) == expected.interim
    if expected.page:
        assert reply.body.startswith(expected.body), reply
    else:
        assert reply.framing == "length"
        assert reply.body == expected.body


@pytest.mark.parametrize(("middle", "expected"), HANDED_OFF)
async def test_a_request_front_does_not_take_in_the_middle_of_a_pipeline(
    proxied: tuple[Upstream, URL], middle: bytes, expected: Expected
) -> None:
    recorder, proxy = proxied
    async with connect(proxy) as client:
        client.send(request("before") + middle + request("after"))
        _echoed(await client.reply(), "GET", "before")
        interim, reply = await _final_reply(client)
        _check(reply, interim, expected)
        _echoed(await client.reply(), "GET", "after")
        _echoed(await client.exchange(request("again")), "GET", "again")
    assert recorder.paths == ["/before", *expected.paths, "/after", "/again"]
    if expected.api_status is not None:
        assert json.loads(reply.body)["status"] == expected.api_status
    if expected.fields:
        seen = recorder.seen[1].headers.items()
        assert tuple(f"{k}: {v}" for k, v in seen if k.startswith("X-Field-")) == expected.fields


# -- 2. a head in pieces: plain at first, handed off once whole -----------------------------------

CHUNKED_GET = (
    f"GET {PREFIX}pieces HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    + b"5\r\nhello\r\n0\r\n\r\n"
)
LENGTH_GET = (
    f"GET {PREFIX}pieces HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\n\r\nhello".encode()
)
ABSOLUTE_GET = f"GET http://{HOST}{PREFIX}pieces HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
PLAIN_GET = f"GET {PREFIX}pieces HTTP/1.1\r\nHost: {HOST}\r\nAccept: */*\r\n\r\n".encode()


def _split_after(data: bytes, marker: bytes) -> tuple[bytes, bytes]:
    cut = data.index(marker) + len(marker)
    return data[:cut], data[cut:]


WITH_HELLO = Expected(200, b"GET /pieces\nhello", ("/pieces",))


PIECES = [
    pytest.param(
        *_split_after(CHUNKED_GET, f"Host: {HOST}\r\n".encode()),
        WITH_HELLO,
        id="chunked-after-a-whole-field",
    ),
    pytest.param(
        *_split_after(CHUNKED_GET, b"Transfer-Enc"),
        WITH_HELLO,
        id="chunked-inside-a-field-name",
    ),
    pytest.param(
        *_split_after(CHUNKED_GET, b"chunked\r\n\r"),
        WITH_HELLO,
        id="chunked-inside-the-empty-line",
    ),
    pytest.param(
        *_split_after(LENGTH_GET, b"\r\n"),
        WITH_HELLO,
        id="length-after-the-request-line",
    ),
    pytest.param(
        *_split_after(ABSOLUTE_GET, b"GET "),
        Expected(400, b"400 Bad Request\n", page=True),
        id="absolute-form-after-the-method",
    ),
    # and a plain head in pieces, answered by front.py: its end found across the pieces
    pytest.param(
        *_split_after(PLAIN_GET, b"*/*\r\n"),
        Expected(200, b"GET /pieces\n", ("/pieces",)),
        id="plain-before-the-empty-line",
    ),
    pytest.param(
        *_split_after(PLAIN_GET, b"*/*\r\n\r"),
        Expected(200, b"GET /pieces\n", ("/pieces",)),
        id="plain-inside-the-empty-line",
    ),
]


@pytest.mark.parametrize(("first", "rest", "expected"), PIECES)
async def test_a_head_in_pieces_is_judged_whole(
    proxied: tuple[Upstream, URL], first: bytes, rest: bytes, expected: Expected
) -> None:
    # front.py has looked at ``first`` once the response before it arrives: it answers a
    # request and then, at once, looks at what follows (and keeps an unfinished head)
    recorder, proxy = proxied
    async with connect(proxy) as client:
        _echoed(await client.exchange(request("before") + first), "GET", "before")
        client.send(rest)  # alone: nothing after it can stand in for its end
        interim, reply = await _final_reply(client)
        _check(reply, interim, expected)
        _echoed(await client.exchange(request("after")), "GET", "after")
    assert recorder.paths == ["/before", *expected.paths, "/after"]


# -- 3. deep pipelining ---------------------------------------------------------------------------

PAD = "X-Pad: " + "p" * 900  # a kilobyte a request: 300 of them are more than one read of 256 KiB


async def test_300_pipelined_requests_in_one_write_are_answered_in_order(
    proxied: tuple[Upstream, URL],
) -> None:
    recorder, proxy = proxied
    paths = [f"deep/{n}?n={n}" for n in range(300)]
    data = b"".join(request(path, PAD) for path in paths)
    assert len(data) > 4 * FRONT_BUFFERED  # front.py stops reading while it answers, and resumes
    async with connect(proxy) as client:
        client.send(data)
        for path in paths:
            _echoed(await client.reply(), "GET", path)
        _echoed(await client.exchange(request("after")), "GET", "after")
    assert recorder.paths == [f"/{path}" for path in paths] + ["/after"]


async def test_pipelined_requests_behind_a_large_response_read_only_after_writing_all(
    proxied: tuple[Upstream, URL],
) -> None:
    recorder, proxy = proxied
    size = 4 * MiB
    paths = [f"behind/{n}" for n in range(300)]
    data = request(f"stream/{size}") + b"".join(request(path, PAD) for path in paths)
    assert len(data) > 4 * FRONT_BUFFERED  # while the response is written, front.py stops reading
    async with connect_with(proxy, receive_buffer=16 * 1024) as client:  # rproxy's writes pause
        client.send(data)
        async with asyncio.timeout(TIMEOUT):
            await client.writer.drain()
        big = await client.reply()
        assert (big.status, big.framing) == (200, "chunked")
        assert big.body == streamed(size)
        for path in paths:
            _echoed(await client.reply(), "GET", path)
        _echoed(await client.exchange(request("after")), "GET", "after")
    assert recorder.paths == [f"/stream/{size}"] + [f"/{path}" for path in paths] + ["/after"]


def _body(size: int) -> bytes:
    return bytes(range(256)) * (size // 256)


def _held_response(size: int) -> bytes:
    """A response of ``size`` bytes that ``_HoldsEverything`` holds."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/x-held\r\nContent-Length: %d\r\n\r\n"
    return head % size + _body(size)


class _HoldsEverything:
    """A rewriter that gives a text/x-held body back whole at its end: one write of all of it."""

    name: ClassVar[str] = "holds-everything"

    def matches(self, meta: ResponseMeta) -> bool:
        return meta.mime_type == "text/x-held"

    def rewrite_headers(self, headers: CIMultiDict[str], ctx: RewriteContext) -> None:
        return None

    def open_body(self, ctx: RewriteContext) -> _Held:
        return _Held()


class _Held:
    def __init__(self) -> None:
        self._held = bytearray()

    def feed(self, chunk: bytes) -> bytes:
        self._held += chunk
        return b""

    def flush(self) -> bytes:
        return bytes(self._held)


async def test_requests_behind_a_response_whose_last_write_fills_the_socket_are_answered(
    raw_upstream: StartRaw, start_proxy: StartProxy
) -> None:
    # 6 MiB in one write is more than one send takes (Linux lets a socket buffer 4 MiB by
    # default): the response ends with rproxy's writing paused, and front.py answers the next
    # request when the client has read enough for writing to resume
    upstream, upstream_url = await raw_upstream(_held_response(6 * MiB))
    proxy = await start_proxy(upstream_url, prefix=PREFIX, rewriter_instances=[_HoldsEverything()])
    async with connect(proxy) as client:
        client.send(b"".join(request(f"held/{n}") for n in range(3)))
        for _ in range(3):
            reply = await client.reply()
            assert (reply.status, reply.framing) == (200, "chunked")
            assert reply.body == _body(6 * MiB)
    assert upstream.targets == [f"/held/{n}" for n in range(3)]


async def test_a_client_reading_nothing_cannot_make_front_read_its_pipeline_without_bound(
    raw_upstream: StartRaw, start_proxy: StartProxy
) -> None:
    # The response ends with rproxy's writing paused (as above) and the client reads nothing.
    # front.py must then read at most FRONT_BUFFERED (and one read) of what the client pipelines:
    # the client's writes stall once the sockets' buffers are full (some MiB), long before all
    # of ``flood`` is taken.
    upstream_url = (await raw_upstream(_held_response(6 * MiB)))[1]
    proxy = await start_proxy(upstream_url, prefix=PREFIX, rewriter_instances=[_HoldsEverything()])
    flood = request("more") * (32 * MiB // len(request("more")))
    async with connect(proxy) as client:
        client.send(request("held") + flood)
        drained = asyncio.ensure_future(client.writer.drain())
        try:
            done, _ = await asyncio.wait({drained}, timeout=2)
            assert not done, "rproxy took 32 MiB of pipelined requests while none was answered"
        finally:
            drained.cancel()
            client.writer.transport.abort()  # not to send the rest when the connection closes


# -- 4. an upstream that breaks off in the middle of the body -------------------------------------


async def _until_closed(client: Client) -> bytes:
    """Everything rproxy sends until it closes (or resets) the connection."""
    data = bytearray()
    async with asyncio.timeout(TIMEOUT):
        try:
            while chunk := await client.reader.read(64 * 1024):
                data += chunk
        except ConnectionResetError:
            pass
    return bytes(data)


async def _framed(data: bytes) -> Reply:
    """``data`` read as one response by the framing-aware reader, the connection ending after."""
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return await Client(reader, cast("asyncio.StreamWriter", None)).reply()


BROKEN_OFF = [
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: application/octet-stream\r\n\r\n"
        % MiB
        + b"l" * 100_000,
        id="length",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
        + b"4000\r\n%b\r\n" % (b"c" * 0x4000) * 6,
        id="chunked-without-its-last-chunk",
    ),
]


@pytest.mark.parametrize("cut", BROKEN_OFF)
async def test_a_response_the_upstream_breaks_off_is_not_completed_and_the_connection_ends(
    raw_upstream: StartRaw, start_proxy: StartProxy, cut: bytes
) -> None:
    upstream, upstream_url = await raw_upstream(cut, close=True)
    proxy = await start_proxy(upstream_url, prefix=PREFIX)
    async with connect(proxy) as client:
        client.send(request("cut") + request("behind"))
        received = await _until_closed(client)
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")  # the response had started
    assert not received.endswith(b"0\r\n\r\n")
    with pytest.raises(asyncio.IncompleteReadError):
        await _framed(received)
    assert upstream.targets == ["/cut"]  # nothing after it was answered


# -- 5. HTTP/1.0 clients asking for keep-alive ----------------------------------------------------

KEEP_ALIVE = "Connection: keep-alive"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("HEAD", "doc", 200, id="head-with-length"),
        pytest.param("HEAD", "stream/300000", 200, id="head-without-length"),
        pytest.param("GET", "status/204", 204, id="204"),
        pytest.param("GET", "status/304", 304, id="304"),
    ],
)
async def test_an_http_1_0_keep_alive_connection_goes_on_after_a_response_without_body(
    proxied: tuple[Upstream, URL], method: str, path: str, status: int
) -> None:
    recorder, proxy = proxied
    async with connect(proxy) as client:
        client.send(request(path, KEEP_ALIVE, method=method, version="1.0"))
        client.send(request("next", KEEP_ALIVE, version="1.0"))  # at once: no body byte between
        reply = await client.reply(method)
        following = await client.reply()
        _echoed(await client.exchange(request("last", version="1.0")), "GET", "last")
        assert await client.closed_by_peer()
    assert (reply.version, reply.status, reply.body) == ("HTTP/1.0", status, b"")
    assert reply.headers["Connection"].lower() == "keep-alive"
    assert "Transfer-Encoding" not in reply.headers
    _echoed(following, "GET", "next")
    assert following.headers["Connection"].lower() == "keep-alive"
    assert recorder.paths == [f"/{path}", "/next", "/last"]
    assert recorder.seen[0].method == method


# -- 6. large response heads from the upstream ----------------------------------------------------

COOKIE = "session=" + "s" * 6000 + "; HttpOnly; SameSite=Lax"
LONG = "L" * 7000
FIELDS = [(f"X-Field-{n:02}", f"value {n}:" + "v" * n) for n in range(90)]

SERVED_BY = [
    pytest.param(lambda path: request(path), id="front"),
    pytest.param(lambda path: request(path, method="POST", body=b"body"), id="aiohttp"),
]


def _ok_with(fields: list[tuple[str, str]]) -> bytes:
    """A 200 response with ``fields`` and the body ``ok``."""
    head = "".join(f"{name}: {value}\r\n" for name, value in fields)
    return f"HTTP/1.1 200 OK\r\n{head}Content-Length: 2\r\n\r\nok".encode()


@pytest.mark.parametrize("make", SERVED_BY)
async def test_long_header_values_from_the_upstream_pass_intact(
    raw_upstream: StartRaw, start_proxy: StartProxy, make: Callable[[str], bytes]
) -> None:
    fields = [("Set-Cookie", COOKIE), ("X-Long", LONG), ("Set-Cookie", "short=1")]
    _, upstream_url = await raw_upstream(_ok_with(fields))
    proxy = await start_proxy(upstream_url, prefix=PREFIX)
    async with connect(proxy) as client:
        reply = await client.exchange(make("long"))
        assert (await client.exchange(make("again"))).body == b"ok"
    assert (reply.status, reply.body) == (200, b"ok")
    assert reply.headers.getall("Set-Cookie") == [COOKIE, "short=1"]
    assert reply.headers["X-Long"] == LONG


@pytest.mark.parametrize("make", SERVED_BY)
async def test_ninety_header_fields_from_the_upstream_pass_intact_and_in_order(
    raw_upstream: StartRaw, start_proxy: StartProxy, make: Callable[[str], bytes]
) -> None:
    _, upstream_url = await raw_upstream(_ok_with(FIELDS))
    proxy = await start_proxy(upstream_url, prefix=PREFIX)
    async with connect(proxy) as client:
        reply = await client.exchange(make("many"))
        assert (await client.exchange(make("again"))).body == b"ok"
    assert (reply.status, reply.body) == (200, b"ok")
    assert [(k, v) for k, v in reply.headers.items() if k.startswith("X-Field-")] == FIELDS


# -- 7. TLS (JupyterHub's internal TLS): front.py's answers and a hand-off on one connection -------


@asynccontextmanager
async def _tls_proxy(upstream_url: URL, folder: Path) -> AsyncIterator[tuple[URL, ssl.SSLContext]]:
    """rproxy serving https with a certificate for 127.0.0.1; its URL and a context trusting it."""
    make_certificates(folder)
    environ = {
        "JUPYTERHUB_SSL_KEYFILE": str(folder / "server.key"),
        "JUPYTERHUB_SSL_CERTFILE": str(folder / "server.crt"),
    }
    config = load_config({"upstream": str(upstream_url), "prefix": PREFIX}, environ)
    tls = server_tls(config)
    assert tls is not None
    runner = make_runner(config)
    try:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
        host, port = runner.addresses[0][:2]
        yield (
            URL.build(scheme="https", host=host, port=port),
            ssl.create_default_context(cafile=str(folder / "ca.crt")),
        )
    finally:
        await runner.cleanup()


async def test_over_tls_a_plain_request_and_handed_off_ones_share_a_connection(
    start_upstream: StartUpstream, tmp_path: Path
) -> None:
    recorder = Upstream()
    upstream_url = await start_upstream(recorder.app())
    async with (
        _tls_proxy(upstream_url, tmp_path) as (proxy, trust),
        connect_with(proxy, tls=trust) as client,
    ):
        _echoed(await client.exchange(request("plain")), "GET", "plain")
        client.send(request("form", method="POST", body=FORM) + request("then"))
        _echoed(await client.reply(), "POST", "form", FORM)
        _echoed(await client.reply(), "GET", "then")
    assert recorder.paths == ["/plain", "/form", "/then"]
    for seen in recorder.seen:
        assert seen.headers["X-Forwarded-Proto"] == "https", seen.path


# -- 8. the same request headers upstream, whichever protocol read the request --------------------

CLIENT_HEADERS = (
    "User-Agent: test/1.0",
    "Accept: text/html, */*;q=0.1",
    "Cookie: a=1; b=2",
    "X-Forwarded-For: 10.9.9.9",
    "X-Forwarded-Proto: https",
    "X-Forwarded-Host: evil.test",
    "Forwarded: for=10.9.9.9",
    "Connection: keep-alive, X-Hop",
    "X-Hop: dropped",
    "X-Custom: kept",
)


async def test_front_and_aiohttp_send_the_upstream_the_same_headers(
    proxied: tuple[Upstream, URL],
) -> None:
    # the same GET on two connections: read by front.py on the first, by aiohttp's protocol on
    # the second, which a POST with a body has handed off
    recorder, proxy = proxied
    same = request("same?q=1", *CLIENT_HEADERS)
    async with connect(proxy) as front, connect(proxy) as handed_off:
        _echoed(await front.exchange(same), "GET", "same?q=1")
        posted = request("form", *CLIENT_HEADERS, method="POST", body=FORM)
        _echoed(await handed_off.exchange(posted), "POST", "form", FORM)
        _echoed(await handed_off.exchange(same), "GET", "same?q=1")
    by_front, post, by_aiohttp = recorder.seen
    assert list(by_front.headers.items()) == list(by_aiohttp.headers.items())
    forwarded = {k: v for k, v in by_front.headers.items() if k.startswith("X-Forwarded-")}
    assert forwarded == {k: v for k, v in post.headers.items() if k.startswith("X-Forwarded-")}
    assert forwarded["X-Forwarded-For"] == "127.0.0.1"
    assert forwarded["X-Forwarded-Proto"] == "http"
    assert forwarded["X-Forwarded-Host"] == HOST
    assert "X-Hop" not in by_front.headers


# -- 9. what front.py adds to a response ----------------------------------------------------------


async def test_front_adds_a_date_and_no_server_to_an_upstream_response_without_them(
    raw_upstream: StartRaw, start_proxy: StartProxy
) -> None:
    # aiohttp's protocol adds its own Server header (Python/... aiohttp/...); front.py adds none
    _, upstream_url = await raw_upstream(_ok_with([("X-Own", "1")]))
    proxy = await start_proxy(upstream_url, prefix=PREFIX)
    async with connect(proxy) as client:
        reply = await client.exchange(request("bare"))
    assert (reply.status, reply.body) == (200, b"ok")
    assert sorted(reply.headers) == ["Content-Length", "Date", "X-Own"]
