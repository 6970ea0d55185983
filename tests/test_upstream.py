"""The upstream connection pool against scripted upstreams that send exact bytes.

Each scripted upstream is a real asyncio server on 127.0.0.1 that answers every request on a
connection with the next canned reply, so the tests see exactly how rproxy frames, reuses,
retries and refuses what comes back.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest
from support import make_certificates
from yarl import URL

from rproxy.config import Timeouts, Upstream
from rproxy.errors import BadUpstreamResponse, RequestBodyBroken
from rproxy.http1 import MAX_HEAD_BYTES, request_head
from rproxy.upstream import UpstreamPool
from rproxy.upstream_connection import UpstreamResponse

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
HEADERS = [("Host", "upstream")]


class Scripted:
    """An upstream that answers the n-th request on a connection with ``replies(n)``.

    A reply of None closes the connection without answering; with ``close`` every reply is
    followed by the close of the connection; with ``piece`` it is written that many bytes at a
    time, each drained before the next."""

    def __init__(
        self, replies: Callable[[int], bytes | None], *, close: bool = False, piece: int = 0
    ) -> None:
        self._replies = replies
        self._close = close
        self._piece = piece
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task[None]] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            n = 0
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                self.requests.append(head)
                reply = self._replies(n)
                n += 1
                if reply is None:
                    return
                try:
                    for i in range(0, len(reply), self._piece or len(reply) or 1):
                        writer.write(reply[i : i + (self._piece or len(reply))])
                        await writer.drain()
                except ConnectionError:  # the pool gave up on this response
                    return
                if self._close:
                    return
        finally:
            self.open -= 1
            writer.close()

    @property
    def upstream(self) -> Upstream:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return Upstream(URL(f"http://127.0.0.1:{port}"))


Replies = Callable[[int], bytes | None]
StartScripted = Callable[..., Awaitable[Scripted]]


@pytest.fixture
async def scripted() -> AsyncIterator[StartScripted]:
    scripts: list[Scripted] = []

    async def start(
        replies: Replies, *, close: bool = False, piece: int = 0, tls: ssl.SSLContext | None = None
    ) -> Scripted:
        script = Scripted(replies, close=close, piece=piece)
        script.server = await asyncio.start_server(script.serve, "127.0.0.1", 0, ssl=tls)
        scripts.append(script)
        return script

    yield start
    for script in scripts:
        assert script.server is not None
        script.server.close()
        if script.handlers:  # the pool closed its side, so each handler sees the end and returns
            await asyncio.wait(script.handlers, timeout=5)


def _pool(script: Scripted, **kwargs: object) -> UpstreamPool:
    timeouts = kwargs.pop("timeouts", Timeouts(connect=5, read=5))
    assert isinstance(timeouts, Timeouts)
    return UpstreamPool(script.upstream, timeouts, **kwargs)  # type: ignore[arg-type]


async def _body(response: UpstreamResponse) -> bytes:
    parts = [response.read_nowait()]
    while chunk := await response.readany():
        parts.append(chunk)
    response.release()
    return b"".join(parts)


async def _get(pool: UpstreamPool, method: str = "GET") -> tuple[int, bytes]:
    response = await pool.send(method, "/x", HEADERS)
    return response.status, await _body(response)


async def test_a_keep_alive_connection_carries_the_next_requests(scripted: StartScripted) -> None:
    script = await scripted(lambda n: OK)
    pool = _pool(script)
    for _ in range(5):
        assert await _get(pool) == (200, b"ok")
    await pool.close()
    assert script.connections == 1


async def test_bytes_beyond_the_content_length_are_cut_and_the_connection_dropped(
    scripted: StartScripted,
) -> None:
    script = await scripted(lambda n: OK + b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
    pool = _pool(script)
    assert await _get(pool) == (200, b"ok")
    assert await _get(pool) == (200, b"ok")
    await pool.close()
    assert script.connections == 2, "the smuggled response was never read as an answer"


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", id="bare-lf"),
        pytest.param(b"HTTP/1.1 200 OK\r\nX: a\nContent-Length: 2\r\n\r\nok", id="bare-lf-inside"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\n\r\n",
            id="length-and-chunked",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", id="two-lengths"
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", id="signed-length"),
        pytest.param(b"HELLO THERE\r\n\r\n", id="not-http"),
        pytest.param(b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n", id="obs-fold"),
        pytest.param(b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n", id="bad-name"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", id="head-too-large"
        ),
    ],
)
async def test_a_malformed_or_ambiguous_head_is_refused(
    scripted: StartScripted, reply: bytes
) -> None:
    script = await scripted(lambda n: reply)
    pool = _pool(script)
    with pytest.raises(BadUpstreamResponse):
        await pool.send("GET", "/x", HEADERS)
    await pool.close()


async def test_interim_responses_are_skipped(scripted: StartScripted) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
    script = await scripted(lambda n: interim + OK)
    pool = _pool(script)
    assert await _get(pool) == (200, b"ok")
    assert await _get(pool) == (200, b"ok")
    await pool.close()
    assert script.connections == 1


@pytest.mark.parametrize(
    ("method", "reply"),
    [
        pytest.param("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", id="head"),
        pytest.param("GET", b"HTTP/1.1 204 No Content\r\n\r\n", id="204"),
        pytest.param("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", id="304"),
    ],
)
async def test_responses_without_a_body_end_at_their_head(
    scripted: StartScripted, method: str, reply: bytes
) -> None:
    script = await scripted(lambda n: reply if n == 0 else OK)
    pool = _pool(script)
    status, body = await _get(pool, method)
    assert status != 200 or method == "HEAD"
    assert body == b""
    assert await _get(pool) == (200, b"ok"), "the next response is read from the same connection"
    await pool.close()
    assert script.connections == 1


async def test_a_body_without_length_runs_to_the_close(scripted: StartScripted) -> None:
    script = await scripted(lambda n: b"HTTP/1.0 200 OK\r\n\r\nuntil the end", close=True)
    pool = _pool(script)
    assert await _get(pool) == (200, b"until the end")
    assert await _get(pool) == (200, b"until the end")
    await pool.close()
    assert script.connections == 2


@pytest.mark.parametrize("piece", [1, 3, 0], ids=["1-byte", "3-byte", "whole"])
async def test_responses_written_in_pieces_read_the_same(
    scripted: StartScripted, piece: int
) -> None:
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    script = await scripted(lambda n: interim + (OK if n % 2 else chunked), piece=piece)
    pool = _pool(script)
    for _ in range(4):
        assert await _get(pool) == (200, b"ok")
    await pool.close()
    assert script.connections == 1


async def test_a_chunked_body_with_trailers_is_decoded(scripted: StartScripted) -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n10;ext=1\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\n"
    )
    script = await scripted(lambda n: reply)
    pool = _pool(script)
    assert await _get(pool) == (200, b"abc0123456789abcdef")
    assert await _get(pool) == (200, b"abc0123456789abcdef")
    await pool.close()
    assert script.connections == 1


async def test_a_malformed_chunk_fails_the_body(scripted: StartScripted) -> None:
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n"
    script = await scripted(lambda n: reply)
    pool = _pool(script)
    response = await pool.send("GET", "/x", HEADERS)
    with pytest.raises(BadUpstreamResponse):
        await _body(response)
    await pool.close()


async def test_a_reused_connection_closed_before_answering_is_retried_once(
    scripted: StartScripted,
) -> None:
    # each connection answers once, then closes on the next request (an idle timeout race)
    script = await scripted(lambda n: OK if n == 0 else None)
    pool = _pool(script)
    assert await _get(pool) == (200, b"ok")
    assert await _get(pool) == (200, b"ok")
    await pool.close()
    assert script.connections == 2


async def test_a_non_idempotent_request_is_not_sent_twice(scripted: StartScripted) -> None:
    script = await scripted(lambda n: OK if n == 0 else None)
    pool = _pool(script)
    assert await _get(pool) == (200, b"ok")
    with pytest.raises(BadUpstreamResponse):
        await pool.send("POST", "/x", HEADERS)  # no body, but POST: the upstream may have acted
    await pool.close()
    assert script.connections == 1


@pytest.mark.parametrize("upgrade", [b"Upgrade: h2c\r\nConnection: upgrade\r\n", b""])
async def test_an_unasked_protocol_switch_is_refused(
    scripted: StartScripted, upgrade: bytes
) -> None:
    script = await scripted(
        lambda n: b"HTTP/1.1 101 Switching Protocols\r\n" + upgrade + b"\r\n" + OK
    )
    pool = _pool(script)
    with pytest.raises(BadUpstreamResponse):
        await pool.send("GET", "/x", HEADERS)
    await pool.close()


async def test_a_request_with_a_body_is_not_sent_twice(scripted: StartScripted) -> None:
    script = await scripted(lambda n: OK if n == 0 else None)
    pool = _pool(script)
    assert await _get(pool) == (200, b"ok")

    async def body() -> AsyncIterator[bytes]:
        yield b"data"

    with pytest.raises(BadUpstreamResponse):
        await pool.send("POST", "/x", [*HEADERS, ("Content-Length", "4")], body())
    await pool.close()
    assert script.connections == 1


async def test_a_request_body_breaking_off_is_the_clients_failure(scripted: StartScripted) -> None:
    script = await scripted(lambda n: b"HTTP/1.1 200 OK\r\n")  # a head that never ends
    pool = _pool(script)

    async def body() -> AsyncIterator[bytes]:
        yield b"data"
        raise ConnectionResetError("Connection lost")  # how aiohttp reports a client gone

    with pytest.raises(RequestBodyBroken):
        await pool.send("POST", "/x", [*HEADERS, ("Content-Length", "8")], body())
    assert pool.open_connections == 0, "half an upload: the connection is closed, not reused"
    await pool.close()


async def test_an_answer_before_the_upload_ends_is_passed_on_and_the_connection_dropped(
    scripted: StartScripted,
) -> None:
    too_large = b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\n\r\nbig"
    replies = iter([too_large, OK])  # in order, whichever connection asks
    script = await scripted(lambda n: next(replies))
    pool = _pool(script)
    answered = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 1024
        await answered.wait()  # the rest would come after the upstream has answered
        yield b"y" * 1024

    response = await pool.send("POST", "/x", [*HEADERS, ("Content-Length", "2048")], body())
    answered.set()
    assert (response.status, await _body(response)) == (413, b"big")
    assert await _get(pool) == (200, b"ok")
    await pool.close()
    assert script.connections == 2, "a connection with half an upload on it is never reused"


async def test_abandoned_responses_close_their_connections_and_leak_none(
    scripted: StartScripted,
) -> None:
    size = 1024 * 1024
    script = await scripted(
        lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"z" * size
    )
    pool = _pool(script)
    for _ in range(50):
        response = await pool.send("GET", "/x", HEADERS)
        assert await response.readany()
        response.release()  # the client went away in the middle of the body
    assert pool.open_connections == 0, "each abandoned connection was closed at once"
    _, pending = await asyncio.wait(script.handlers, timeout=10)
    assert not pending, "the upstream saw every abandoned connection end"
    assert script.connections == 50
    await pool.close()


async def test_the_connection_limit_holds_under_concurrency(scripted: StartScripted) -> None:
    script = await scripted(lambda n: OK)
    pool = _pool(script, limit=2)
    results = await asyncio.gather(*(_get(pool) for _ in range(12)))
    assert results == [(200, b"ok")] * 12
    await pool.close()
    assert script.most_open <= 2


async def test_waiting_for_a_free_connection_times_out_like_connecting(
    scripted: StartScripted,
) -> None:
    script = await scripted(lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
    pool = _pool(script, limit=1, timeouts=Timeouts(connect=0.2, read=30))
    busy = await pool.send("GET", "/x", HEADERS)  # holds the only connection: 6 bytes to come
    with pytest.raises(TimeoutError):
        await pool.send("GET", "/x", HEADERS)
    busy.release()  # closes it: the next request may open a new one
    response = await pool.send("GET", "/x", HEADERS)
    assert response.status == 200
    response.release()
    await pool.close()
    assert script.connections == 2


async def test_a_silent_upstream_times_out(scripted: StartScripted) -> None:
    script = await scripted(lambda n: b"")  # reads the request, answers nothing
    pool = _pool(script, timeouts=Timeouts(connect=5, read=0.2))
    with pytest.raises(TimeoutError):
        await pool.send("GET", "/x", HEADERS)
    await pool.close()


async def test_a_body_that_stops_times_out_on_a_connection_an_earlier_response_used(
    scripted: StartScripted,
) -> None:
    # One silence check per connection serves every wait on it: the check the first response
    # armed must still time out the second response's stalled body, and only after the timeout.
    script = await scripted(
        lambda n: OK if n == 0 else b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf."
    )
    pool = _pool(script, timeouts=Timeouts(connect=5, read=0.3))
    first = await pool.send("GET", "/x", HEADERS)
    assert await _body(first) == b"ok"
    first.release()
    second = await pool.send("GET", "/x", HEADERS)
    loop = asyncio.get_running_loop()
    assert second.read_nowait() == b"half."
    started = loop.time()
    with pytest.raises(TimeoutError):
        await second.readany()
    assert loop.time() - started >= 0.3
    second.release()
    await pool.close()
    assert script.connections == 1


async def test_unread_bytes_stay_bounded_while_the_reader_is_slow(scripted: StartScripted) -> None:
    size = 16 * 1024 * 1024
    script = await scripted(
        lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"z" * size
    )
    pool = _pool(script)
    response = await pool.send("GET", "/x", HEADERS)
    received, most = len(response.read_nowait()), 0
    while chunk := await response.readany():
        received += len(chunk)
        most = max(most, response.buffered)
        await asyncio.sleep(0)  # a slow reader: the loop runs in between reads
    response.release()
    await pool.close()
    assert received == size
    assert most <= 1024 * 1024


async def test_pieces_held_by_the_reader_are_never_overwritten(scripted: StartScripted) -> None:
    body = os.urandom(8 * 1024 * 1024)
    script = await scripted(
        lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    pool = _pool(script)
    for _ in range(2):  # the second response reads into buffers the first one used
        response = await pool.send("GET", "/x", HEADERS)
        held = [response.read_nowait()]
        while chunk := await response.readany():
            held.append(chunk)  # kept as handed out: views of read buffers stay alive
        response.release()
        assert any(isinstance(piece, memoryview) for piece in held), "large reads are lent"
        assert b"".join(held) == body
    await pool.close()


async def test_an_https_upstream_is_verified(
    scripted: StartScripted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_certificates(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    script = await scripted(lambda n: OK, tls=tls)
    https = Upstream(URL(str(script.upstream.url).replace("http:", "https:")))
    timeouts = Timeouts(connect=5, read=5)
    untrusting = UpstreamPool(https, timeouts)
    with pytest.raises(ssl.SSLCertVerificationError):  # the proxy answers 502
        await untrusting.send("GET", "/x", HEADERS)
    await untrusting.close()
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.crt"))  # as an operator would
    trusting = UpstreamPool(https, timeouts)
    assert await _get(trusting) == (200, b"ok")
    await trusting.close()


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([("X", "a\r\nInjected: 1")], id="crlf-in-value"),
        pytest.param([("X", "a\nb")], id="lf-in-value"),
        pytest.param([("X", "a\rb")], id="cr-in-value"),
        pytest.param([("X\r\nY", "a")], id="crlf-in-name"),
        pytest.param([("X", "a\0b")], id="nul"),
    ],
)
def test_a_header_that_could_start_another_is_refused(headers: Sequence[tuple[str, str]]) -> None:
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        request_head("GET", "/", headers)


def test_the_request_head_is_plain_http_1_1() -> None:
    assert request_head("GET", "/a?b=c", [("Host", "h"), ("X", "é")]) == (
        "GET /a?b=c HTTP/1.1\r\nHost: h\r\nX: é\r\n\r\n".encode()
    )
