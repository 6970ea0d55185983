"""One keep-alive HTTP/1.1 connection to the upstream, and the response being read on it.

A ``Connection`` is an asyncio BufferedProtocol: reads go straight into its own buffers. The
response head is cut at its empty line and parsed by llhttp (``http1``); body bytes are then
counted against Content-Length, and a read of ``_LEND_MIN`` bytes or more is handed on as a view
of its buffer, without a copy. A buffer is reused only once no view of it is alive. Chunked
bodies go through llhttp. A response's unread bytes are capped (``_HIGH_WATER``): above it the
connection stops reading until the client has taken them, so a slow client slows the upstream
instead of filling memory. When a response is complete the connection goes back to its owner
(the pool) if both sides said keep-alive, and is closed otherwise.
Failures while reading surface as TimeoutError or BadUpstreamResponse, or as the error the pool
ended the response with (``fail``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol, cast

import httptools
from multidict import CIMultiDict

from rproxy.errors import BadUpstreamResponse
from rproxy.http1 import (
    HEAD_END,
    MAX_HEAD_BYTES,
    Framing,
    body_framing,
    chunked_parser,
    parse_response_head,
)

_HIGH_WATER = 512 * 1024  # unread response bytes at which the connection stops reading
_LOW_WATER = 128 * 1024
_READ_SIZE = 256 * 1024  # one read from the upstream, at most
_LEND_MIN = 16 * 1024  # a read at least this large is handed on as a view of the read buffer
_BUFFERS = 4  # read buffers a connection keeps for reuse
# Framing's members as globals: reading a member off an Enum class costs ~0.18 us on Python 3.11
_NONE, _LENGTH, _CHUNKED, _CLOSE = Framing.NONE, Framing.LENGTH, Framing.CHUNKED, Framing.CLOSE

Chunk = bytes | memoryview


def _new_buffer() -> bytearray:
    buffer = bytearray(_READ_SIZE)
    buffer.append(0)  # from now on the append/pop probe in _unused never reallocates
    del buffer[-1]
    return buffer


def _unused(buffer: bytearray) -> bool:
    """Whether no view of ``buffer`` is alive (a queued chunk, a transport's unsent data)."""
    try:
        buffer.append(0)  # a bytearray with live views refuses to change size
    except BufferError:
        return False
    del buffer[-1]
    return True


class ConnectionOwner(Protocol):
    """What a connection tells the pool it belongs to."""

    def release(self, connection: Connection) -> None: ...
    def forget(self, connection: Connection) -> None: ...


class Connection(asyncio.BufferedProtocol):
    """Reads straight into its own buffers; a large read goes on as a view of its buffer, and
    that buffer is reused only once nothing refers to it any more."""

    def __init__(self, owner: ConnectionOwner) -> None:
        self.owner = owner
        # once per connection: asyncio.get_running_loop() makes a getpid() system call each time
        self.loop = asyncio.get_running_loop()
        self._buffers: list[bytearray] = []
        self._filling = bytearray()
        self.transport: asyncio.Transport | None = None
        self.response: UpstreamResponse | None = None
        self.idle_since = 0.0
        self.lost = False
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        self._watch: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's do not subclass it

    def get_buffer(self, sizehint: int) -> bytearray:
        for buffer in self._buffers:
            if _unused(buffer):
                break
        else:
            buffer = _new_buffer()
            if len(self._buffers) < _BUFFERS:
                self._buffers.append(buffer)
        self._filling = buffer
        return buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self.response is None:  # bytes nobody asked for: where the next response starts is
            self.close()  # unknowable
            return
        with memoryview(self._filling) as whole:
            view = whole[:nbytes]
            self.response.feed(view if nbytes >= _LEND_MIN else bytes(view))

    def eof_received(self) -> bool:
        if self.response is not None:
            self.response.feed_eof(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self.response is not None:
            self.response.feed_eof(exc)
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(
                BadUpstreamResponse("the upstream closed the connection during the upload")
            )
        self.owner.forget(self)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109 (the read timeout, per wait)
        if self.lost:
            raise BadUpstreamResponse("the upstream closed the connection during the upload")
        if not self._paused:
            return
        self._drained = self.loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._drained
        finally:
            self._drained = None

    def watch(self, delay: float) -> None:
        """Check the current response for a silent upstream in ``delay`` seconds, unless a check
        is due already. One timer per connection, re-armed only when it fires, serves every wait
        of every response on it: no timer is made and cancelled per wait."""
        if self._watch is None and not self.lost:
            self._watch = self.loop.call_later(delay, self._check_silence)

    def _check_silence(self) -> None:
        self._watch = None
        response = self.response
        if response is not None and not self.lost:
            left = response.silence_left()
            if left is not None:
                self.watch(left)

    def close(self) -> None:
        if self.transport is not None and not self.lost:
            self.lost = True  # at once: the pool must not hand it out before connection_lost
            self.transport.abort()


class UpstreamResponse:
    """One response: ``status``, ``reason`` and ``headers`` once ``UpstreamPool.send`` returns,
    then the body through ``read_nowait`` / ``readany`` / ``is_eof``, then ``release``."""

    def __init__(self, connection: Connection, *, head_request: bool, read_timeout: float) -> None:
        self._connection = connection
        self._head_request = head_request
        self._read_timeout = read_timeout
        self._loop = connection.loop
        self._pending = bytearray()  # bytes of an unfinished head, grown in place
        self.status = 0
        self.reason = ""
        self.headers: CIMultiDict[str] = CIMultiDict()
        self._keep_alive = False
        self._framing: Framing | None = None  # None while the head is incomplete
        self._remaining = 0
        self._parser: httptools.HttpResponseParser | None = None
        self._chunks: deque[Chunk] = deque()
        self._buffered = 0
        self._paused = False
        self._done = False  # the whole response is in (or it failed)
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._active_at = 0.0  # when the upstream last showed life, for the read timeout
        self.received_any = False
        self.upload: asyncio.Task[None] | None = None

    # -- fed by the connection -------------------------------------------------------------

    def feed(self, data: Chunk) -> None:
        self.received_any = True
        if self._framing is None:
            self._feed_head(data)
        else:
            self._feed_body(data)

    def _feed_head(self, data: Chunk | bytearray) -> None:
        start = fresh = 0  # where to look for the head's end; where the bytes not yet checked begin
        if self._pending:  # a head split across reads (rare): grow it in place, look at the new
            joined, self._pending = self._pending, bytearray()
            fresh = len(joined)
            start = max(0, fresh - 3)
            joined += data
            data = joined
        # a view from buffer_updated starts at its buffer's first byte: search the buffer
        haystack = cast("bytearray", data.obj) if isinstance(data, memoryview) else data
        pos = 0
        while (
            end := haystack.find(HEAD_END, start, len(data))
        ) >= 0 and end + 4 - pos <= MAX_HEAD_BYTES:
            try:
                head = parse_response_head(bytes(data[pos : end + 4]))
            except BadUpstreamResponse as exc:
                self._fail(exc)
                return
            start = pos = end + 4
            if 100 <= head.status < 200:  # 100 Continue, 103 Early Hints: the real one follows
                continue
            try:
                framing, self._remaining = body_framing(
                    head.status, head_request=self._head_request, headers=head.headers
                )
            except BadUpstreamResponse as exc:
                self._fail(exc)
                return
            self.status, self.reason, self.headers = head.status, head.reason, head.headers
            self._keep_alive = head.keep_alive and framing is not _CLOSE
            self._framing = framing
            if framing is _CHUNKED:
                self._parser = chunked_parser(self)
            if pos >= len(data):
                rest: Chunk = b""
            else:  # a grown head is copied out; a view of the connection's buffer is not
                rest = bytes(data[pos:]) if isinstance(data, bytearray) else data[pos:]
            if framing is _NONE or (framing is _LENGTH and not self._remaining):
                if rest:  # bytes after a response without a body: not a response of ours
                    self._keep_alive = False
                self._finish()
            elif rest:
                self._feed_body(rest)
            self._wake()
            return
        if isinstance(data, bytearray) and not pos:
            pending = data  # still one unfinished head: no copy
        else:
            pending, fresh = bytearray(data[pos:]), max(0, fresh - pos)
        if len(pending) > MAX_HEAD_BYTES:
            self._fail(BadUpstreamResponse(f"the response head is over {MAX_HEAD_BYTES} bytes"))
        # only the new bytes (and the CR that may pair with their first LF) are checked
        elif pending.count(b"\n", fresh) != pending.count(b"\r\n", max(0, fresh - 1)):
            self._fail(BadUpstreamResponse("the response head has a bare LF line end"))
        else:
            self._pending = pending

    def _feed_body(self, data: Chunk) -> None:
        framing = self._framing
        if framing is _LENGTH:
            size = len(data)
            if size < self._remaining:
                self._remaining -= size
                self._push(data)
                return
            if size > self._remaining:
                data = data[: self._remaining]
                self._keep_alive = False  # more than announced: the rest is not a response
            self._remaining = 0
            self._push(data)
            self._finish()
        elif framing is _CHUNKED:
            assert self._parser is not None
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserError as exc:
                self._fail(BadUpstreamResponse(f"the chunked body is malformed: {exc}"))
        else:
            self._push(data)

    def on_body(self, data: bytes) -> None:  # httptools, for chunked bodies
        self._push(data)

    def on_message_complete(self) -> None:  # httptools, for chunked bodies
        self._finish()

    def on_message_begin(self) -> None:  # httptools: the synthetic head's message, then extra
        if self._done:
            self._reusable_no_more()

    def feed_eof(self, exc: BaseException | None) -> None:
        if self._done:
            return
        if self._framing is _CLOSE:
            self._keep_alive = False
            self._finish()
            return
        what = "before its response" if self._framing is None else "in the middle of the body"
        reason = f": {exc}" if exc else ""
        self._fail(BadUpstreamResponse(f"the upstream closed the connection {what}{reason}"))

    def _push(self, data: Chunk) -> None:
        if not data:
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > _HIGH_WATER and not self._paused and not self._done:
            transport = self._connection.transport
            if transport is not None and not self._connection.lost:
                transport.pause_reading()
                self._paused = True
        self._wake()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        connection = self._connection
        if connection.response is self:
            connection.response = None
        upload_done = self.upload is None or self.upload.done()
        if self._keep_alive and upload_done and not connection.lost:
            if self._paused and connection.transport is not None:
                connection.transport.resume_reading()
                self._paused = False
            connection.owner.release(connection)
        else:
            if self.upload is not None and not self.upload.done():
                self.upload.cancel()
            connection.close()
        self._wake()

    def _reusable_no_more(self) -> None:
        self._keep_alive = False
        self._connection.close()

    def fail(self, exc: BaseException) -> None:
        """End this response with ``exc`` for its reader, unless it is complete already."""
        self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self._done:
            return
        self._error = exc
        self._keep_alive = False
        self._finish()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = self._waiter = self._loop.create_future()
        self._active_at = self._loop.time()
        self._connection.watch(self._read_timeout)
        try:
            await waiter
        finally:
            self._waiter = None

    def silence_left(self) -> float | None:
        """For the connection's check: seconds until the wait under way times out (it is failed
        with TimeoutError once the upstream was silent for the read timeout); None when no wait
        is under way."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            return None
        if (quiet := self._loop.time() - self._active_at) < self._read_timeout:
            return self._read_timeout - quiet
        waiter.set_exception(TimeoutError())
        self._fail(TimeoutError())
        return None

    def upload_moved(self) -> None:
        """The upstream took more of the upload: it is not silent, the read timeout starts over."""
        self._active_at = self._loop.time()

    # -- read by the proxy -----------------------------------------------------------------

    async def wait_head(self) -> None:
        while self._framing is None:
            if self._error is not None:
                raise self._error
            await self._wait()

    def read_nowait(self) -> Chunk:
        """The next piece of the body if it is already here, else b"" (never a copy)."""
        if not self._chunks:
            if self._error is not None:
                raise self._error
            return b""
        data = self._chunks.popleft()
        self._taken(len(data))
        return data

    async def readany(self) -> Chunk:
        """The next piece of the body as it arrived; b"" at its end."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            await self._wait()
        data = self._chunks.popleft()
        self._taken(len(data))
        return data

    @property
    def buffered(self) -> int:
        """Body bytes received and not yet read."""
        return self._buffered

    def is_eof(self) -> bool:
        """Whether the whole body is in and has been read."""
        return self._done and not self._chunks and self._error is None

    def _taken(self, size: int) -> None:
        self._buffered -= size
        if self._paused and self._buffered < _LOW_WATER:
            self._paused = False
            transport = self._connection.transport
            if transport is not None and not self._connection.lost:
                transport.resume_reading()

    def release(self) -> None:
        """Done with this response; a connection still mid-response is closed, not reused."""
        if not self._done:
            self._fail(BadUpstreamResponse("the response was abandoned"))
        self._chunks.clear()
