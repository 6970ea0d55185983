"""The pool of keep-alive HTTP/1.1 connections rproxy forwards requests on, one exchange at a time.

Each connection (``upstream_connection``) carries one request and its response at a time. A
connection goes back to the pool as soon as its response is complete and both sides said
keep-alive; a response that sends more than it announced, an upload the upstream did not read
to the end, or any doubt about where a response ends closes it instead. An idempotent request
without a body that fails on a reused connection before any response byte (the upstream closed
the idle connection as it was being reused) is sent once more on a new connection; any other
request gets the failure. With a connection limit, a request waits for a free connection as long
as opening one may take.

Timeouts: ``connect`` for opening a connection (or waiting for a free one), ``read`` for each
wait on the upstream (the head, each body chunk, each drain of an upload); an upload the upstream
keeps taking is no silence, so the wait for the head lasts as long as the upload moves.
Failures surface as OSError (connecting), TimeoutError, BadUpstreamResponse (anything after the
request went out), or RequestBodyBroken when the client's body broke off (not the upstream's
doing).
This module knows nothing of aiohttp's server side, headers policy or rewriting.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterable
from typing import TypeVar

from rproxy.config import Timeouts, Upstream
from rproxy.errors import BadUpstreamResponse, RequestBodyBroken
from rproxy.http1 import request_head
from rproxy.metrics import Histogram
from rproxy.upstream_connection import Connection, UpstreamResponse

logger = logging.getLogger(__name__)

_IDLE_SECONDS = 15.0  # an idle connection older than this is not reused (the upstream may drop it)
_P = TypeVar("_P", bound=asyncio.BaseProtocol)
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})  # RFC 9110 9.2.2


class UpstreamPool:
    """Keep-alive connections to one upstream (TCP or a Unix socket); ``limit`` 0 is no limit."""

    def __init__(
        self,
        upstream: Upstream,
        timeouts: Timeouts,
        *,
        limit: int = 0,
        connect_times: Histogram | None = None,
    ) -> None:
        self._upstream = upstream
        self._timeouts = timeouts
        secure = upstream.url.scheme == "https" and not upstream.unix_socket
        self._tls = ssl.create_default_context() if secure else None  # verifies, as browsers do
        self._limit = limit
        self._connect_times = connect_times
        self._idle: list[Connection] = []
        self._open: set[Connection] = set()
        self._connecting = 0
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._closed = False

    async def send(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: AsyncIterable[bytes] | None = None,
        *,
        chunked: bool = False,
    ) -> UpstreamResponse:
        """Send a request (``target``: raw path and query) and return once its head is in."""
        if chunked:
            headers = [*headers, ("Transfer-Encoding", "chunked")]
        head = request_head(method, target, headers)
        idle = self._idle_connection()  # the common case, without a coroutine
        connection, reused = (idle, True) if idle is not None else await self._acquire()
        response = self._start(connection, method, head, body, chunked)
        try:
            await response.wait_head()
            return response
        except BadUpstreamResponse:
            response.release()
            retry = reused and body is None and method in _IDEMPOTENT
            if not retry or response.received_any:
                raise
        except BaseException:
            response.release()
            raise
        # the upstream closed the reused idle connection just as it was reused: once more
        response = self._start(await self._new_connection(), method, head, body, chunked)
        try:
            await response.wait_head()
        except BaseException:
            response.release()
            raise
        return response

    def _start(
        self,
        connection: Connection,
        method: str,
        head: bytes,
        body: AsyncIterable[bytes] | None,
        chunked: bool,
    ) -> UpstreamResponse:
        response = UpstreamResponse(
            connection, head_request=method == "HEAD", read_timeout=self._timeouts.read
        )
        connection.response = response
        transport = connection.transport
        assert transport is not None
        transport.write(head)
        if body is not None:
            response.upload = asyncio.create_task(self._upload(connection, response, body, chunked))
        return response

    async def _upload(
        self,
        connection: Connection,
        response: UpstreamResponse,
        body: AsyncIterable[bytes],
        chunked: bool,
    ) -> None:
        transport = connection.transport
        assert transport is not None
        try:
            async for chunk in body:
                if connection.lost:
                    return
                if chunk:
                    if chunked:
                        transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                    else:
                        transport.write(chunk)
                    await connection.drain(self._timeouts.read)
                    response.upload_moved()
            if chunked and not connection.lost:
                transport.write(b"0\r\n\r\n")
        except (BadUpstreamResponse, TimeoutError):
            connection.close()
        except Exception as exc:  # the client's body broke off: the upstream must not take it whole
            logger.debug("request body broke off; closing the upstream connection", exc_info=True)
            response.fail(RequestBodyBroken(f"the request body broke off: {exc!r}"))
            connection.close()

    def _idle_connection(self) -> Connection | None:
        """The most recently used idle connection that may still be reused, if any."""
        if not self._idle:
            return None
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if connection.lost:
                continue
            if now - connection.idle_since > _IDLE_SECONDS:
                connection.close()
                continue
            return connection
        return None

    async def _acquire(self) -> tuple[Connection, bool]:
        """A connection when none is idle: a new one, or one handed over within the limit."""
        if self._limit and len(self._open) + self._connecting >= self._limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:  # a free connection within the connect timeout, as opening one would take
                async with asyncio.timeout(self._timeouts.connect):
                    handed = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():  # given just as this one gave up
                    if (given := waiter.result()) is not None:
                        self.release(given)
                    else:
                        self._offer_slot()
                raise
            if handed is not None:
                return handed, True
        return await self._new_connection(), False

    async def _new_connection(self) -> Connection:
        if self._closed:
            raise BadUpstreamResponse("the upstream pool is closed")
        self._connecting += 1
        try:
            connection = await self.connect(lambda: Connection(self))
        except BaseException:
            self._connecting -= 1
            self._offer_slot()
            raise
        self._connecting -= 1
        self._open.add(connection)
        return connection

    async def connect(self, factory: Callable[[], _P]) -> _P:
        """Open a new connection to the upstream (TCP, TLS or Unix socket) for ``factory``'s
        protocol, within the connect timeout, timed into ``connect_times``; the pool does not
        keep it (a WebSocket tunnel owns its connection)."""
        loop = asyncio.get_running_loop()
        upstream = self._upstream
        start = time.perf_counter()
        async with asyncio.timeout(self._timeouts.connect):
            if upstream.unix_socket:
                _, protocol = await loop.create_unix_connection(factory, upstream.unix_socket)
            else:
                url = upstream.url
                _, protocol = await loop.create_connection(
                    factory,
                    url.host or "localhost",
                    url.port or 80,
                    ssl=self._tls,
                    server_hostname=url.host if self._tls else None,
                )
        if self._connect_times is not None:
            self._connect_times.observe(time.perf_counter() - start)
        return protocol

    @property
    def open_connections(self) -> int:
        """Connections open or being opened, idle ones included (closing ones not)."""
        return sum(not connection.lost for connection in self._open) + self._connecting

    def release(self, connection: Connection) -> None:
        """``connection`` finished a response and may carry the next one."""
        if self._closed:
            connection.close()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        connection.idle_since = time.monotonic()
        self._idle.append(connection)

    def forget(self, connection: Connection) -> None:
        """``connection`` is gone; a request waiting for the limit may open a new one."""
        self._open.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)
        self._offer_slot()

    def _offer_slot(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close every connection; in-flight responses fail."""
        self._closed = True
        for connection in list(self._open):
            connection.close()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run connection_lost
