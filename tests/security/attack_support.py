"""Helpers for the attack tests: a recording raw-socket upstream, raw exchanges, origin checks.

``Recorder`` is the upstream (or the "victim" another upstream must never reach): an asyncio
server that keeps every byte it receives and counts its connections, parses what it got with
llhttp in strict mode (httptools) and answers each complete request with 200 and the request's
path, so a test can tell exactly which requests crossed the proxy, and whether any byte that
crossed was not part of a well-formed request.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httptools
from yarl import URL


@dataclass
class Received:
    """One request as the upstream parsed it."""

    method: str
    target: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class _Parse:
    """httptools callbacks that collect requests, answering each one as it completes."""

    def __init__(self, recorder: Recorder, writer: asyncio.StreamWriter) -> None:
        self.recorder = recorder
        self.writer = writer
        self.parser = httptools.HttpRequestParser(self)
        self.current: Received | None = None
        self.url = b""

    def on_message_begin(self) -> None:
        self.current = Received("", "")
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.current is not None
        self.current.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        assert self.current is not None
        self.current.body += body

    def on_message_complete(self) -> None:
        assert self.current is not None
        self.current.method = self.parser.get_method().decode("latin-1")
        self.current.target = self.url.decode("latin-1")
        self.recorder.requests.append(self.current)
        self.writer.write(self.recorder.answer(self.current))


class Recorder:
    """A raw TCP upstream that records everything; see the module docstring."""

    def __init__(self, name: str = "upstream") -> None:
        self.name = name
        self.raw = bytearray()
        self.connections = 0
        self.requests: list[Received] = []
        self.errors: list[str] = []
        self.extra_headers = b""  # added to every answer: tests of response header rewriting
        self.status = b"200 OK"
        self.silent = False  # accept requests but never answer them
        self._server: asyncio.Server | None = None

    async def start(self) -> URL:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return URL(f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}")

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> URL:
        return URL(f"http://127.0.0.1:{self.port}")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def answer(self, request: Received) -> bytes:
        if self.silent:
            return b""
        body = f"{self.name} got {request.method} {request.target}".encode()
        return (
            b"HTTP/1.1 "
            + self.status
            + b"\r\nContent-Type: text/plain\r\nX-Recorder: "
            + self.name.encode()
            + b"\r\n"
            + self.extra_headers
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )

    @property
    def targets(self) -> list[str]:
        return [r.target for r in self.requests]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        parse = _Parse(self, writer)
        try:
            while data := await reader.read(65536):
                self.raw += data
                try:
                    parse.parser.feed_data(data)
                except httptools.HttpParserUpgrade:
                    self.errors.append("upgrade")  # a WebSocket handshake: answered 200 above
                    break
                except httptools.HttpParserError as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    break
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


StartRecorder = Callable[[str], Awaitable[Recorder]]


@dataclass(frozen=True)
class Exchange:
    raw: bytes
    closed: bool  # the proxy closed the connection (rather than the test's wait running out)

    @property
    def statuses(self) -> list[int]:
        return [int(s) for s in _STATUS_LINE.findall(self.raw)]

    @property
    def head(self) -> bytes:
        return self.raw.partition(b"\r\n\r\n")[0]

    @property
    def body(self) -> bytes:
        return self.raw.partition(b"\r\n\r\n")[2]

    def headers(self, name: str) -> list[bytes]:
        """Values of header ``name`` in the first response head."""
        lines = self.head.split(b"\r\n")[1:]
        key = name.lower().encode() + b":"
        return [line[len(key) :].strip() for line in lines if line.lower().startswith(key)]


_STATUS_LINE = re.compile(rb"HTTP/\d\.\d (\d{3}) ")  # bodies here never hold one


async def exchange(url: URL, data: bytes, *, wait: float = 5.0) -> Exchange:
    """Send ``data`` to ``url``'s host and port and read until the proxy closes or ``wait`` ends."""
    assert url.host is not None
    assert url.port is not None
    reader, writer = await asyncio.open_connection(url.host, url.port)
    got = bytearray()
    closed = False
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(wait):
            while chunk := await reader.read(65536):
                got += chunk
            closed = True
    except TimeoutError:
        pass
    except ConnectionResetError:
        closed = True
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return Exchange(bytes(got), closed)


def same_origin(location: str, request_url: str) -> bool:
    """Whether a browser at ``request_url`` that follows ``location`` stays on that origin.

    Resolved with urllib as RFC 3986 says, and again the way browsers read URLs (backslashes as
    slashes, tabs and newlines removed, leading control characters and spaces stripped).
    """
    browser = re.sub(r"[\t\n\r]", "", location).lstrip("\x00\x01\x02\x03\x04\x05\x06\x07\x08 ")
    browser = browser.replace("\\", "/")
    base = urlsplit(request_url)
    for candidate in (location, browser):
        resolved = urlsplit(urljoin(request_url, candidate))
        if (resolved.scheme, resolved.netloc) != (base.scheme, base.netloc):
            return False
    return True
