"""The upstream half of a WebSocket handshake, over a raw connection rproxy then tunnels frames on.

``open_upstream`` opens a new connection with the service's pool (TCP, TLS or a Unix socket,
within the connect timeout, timed like every upstream connect), sends the GET with the headers it
is given plus a fresh ``Sec-WebSocket-Key``, and reads the answer's head (parsed by ``http1``)
within the read timeout. A 101 whose ``Upgrade``, ``Connection`` and ``Sec-WebSocket-Accept`` are
right comes back as an ``Upgraded``: the connection with reading paused, the head, and any frame
bytes that came with it. Any other answer raises ``WebSocketRefused`` with its status and headers;
the connection is then closed. Failures surface as OSError, TimeoutError or BadUpstreamResponse.
``accept_key`` is the RFC 6455 answer to a key, for the client's side too. Which headers cross and
which mode the tunnel takes are websocket.py's; this module only speaks HTTP/1.1 to the upstream.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from multidict import CIMultiDict

from rproxy.errors import BadUpstreamResponse, RproxyError
from rproxy.http1 import HEAD_END, MAX_HEAD_BYTES, ResponseHead, parse_response_head, request_head
from rproxy.upstream import UpstreamPool

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocketRefused(RproxyError):
    """The upstream answered the handshake with something other than a valid 101."""

    def __init__(self, status: int, headers: CIMultiDict[str]) -> None:
        super().__init__(f"the upstream answered the WebSocket handshake with {status}")
        self.status = status
        self.headers = headers


@dataclass(slots=True)
class Upgraded:
    """An upstream that accepted: its connection (reading paused), its 101 head, and the bytes
    that followed the head (the first frames, if any)."""

    transport: asyncio.Transport
    head: ResponseHead
    early: bytes
    reader: HeadReader

    @property
    def lost(self) -> bool:
        """Whether the connection was lost before the tunnel took it."""
        return self.reader.lost


class HeadReader(asyncio.Protocol):
    """Collects the answer's head; once it is in, pauses reading and keeps what follows."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head_end: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's do not subclass it

    def data_received(self, data: bytes) -> None:
        checked = len(self.buffer) - len(HEAD_END) + 1  # where an end not yet seen may start
        self.buffer += data
        if self.head_end.done():
            return
        end = self.buffer.find(HEAD_END, max(0, checked))  # a head in many pieces: linear
        if end >= 0:
            assert self.transport is not None
            self.transport.pause_reading()  # frames wait until the client has its 101
            self.head_end.set_result(end + len(HEAD_END))
        elif len(self.buffer) > MAX_HEAD_BYTES:
            self.head_end.set_exception(BadUpstreamResponse("the response head is too long"))

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True
        if not self.head_end.done():
            self.head_end.set_exception(
                BadUpstreamResponse("the upstream closed the connection before answering")
            )


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value that answers ``key``."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


async def open_upstream(
    pool: UpstreamPool,
    target: str,
    headers: Iterable[tuple[str, str]],
    *,
    read_timeout: float,
) -> Upgraded:
    """Send the handshake for ``target`` (raw path and query) and return the accepted connection.

    ``headers`` are sent as they are (Host, the client's offers, X-Forwarded-*); this adds
    Upgrade, Connection, Sec-WebSocket-Version and a fresh Sec-WebSocket-Key. ValueError if a
    header holds CR, LF or NUL."""
    key = base64.b64encode(os.urandom(16)).decode()
    own = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
    ]
    head_bytes = request_head("GET", target, [*headers, *own])
    reader = await pool.connect(HeadReader)
    transport = reader.transport
    assert transport is not None
    try:
        transport.write(head_bytes)
        async with asyncio.timeout(read_timeout):
            end = await reader.head_end
        head = parse_response_head(bytes(reader.buffer[:end]), upgrade=True)
        if head.status != 101 or not _accepted(head.headers, key):
            raise WebSocketRefused(head.status, head.headers)
    except BaseException:
        reader.head_end.cancel()  # nobody waits for it any more
        transport.abort()
        raise
    return Upgraded(transport, head, bytes(reader.buffer[end:]), reader)


def _accepted(headers: CIMultiDict[str], key: str) -> bool:
    connection = {token.strip().lower() for token in headers.get("Connection", "").split(",")}
    return (
        headers.get("Upgrade", "").strip().lower() == "websocket"
        and "upgrade" in connection
        and headers.get("Sec-WebSocket-Accept", "").strip() == accept_key(key)
    )
