"""Body streaming: request bodies to the upstream and response bodies to the client, chunk by chunk.

Chunks are passed on as they arrive and each write waits for the peer to drain, so memory per
request stays bounded whatever the body size (the upstream side by ``UpstreamResponse``'s water
marks, the client side by its transport's, with server.py's deadline on a client that stops
reading), and server-sent events reach the client one by one. The status line and headers leave
together with the first body bytes, in one send when the whole body is already here (the common
small response), and at once when no body byte is waiting, so a client of a slow stream still
sees the headers straight away.
A response no body rewriter wants passes byte for byte, still compressed. One that is rewritten
goes through a ``BodyPipeline``: decoded (gzip, deflate, br), through each body rewriter in order,
and encoded again the way it came, so Content-Encoding stays true.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import brotli
from aiohttp import HttpVersion11, hdrs, web
from multidict import CIMultiDict

from rproxy.errors import RproxyError, plain_response
from rproxy.metrics import RequestTiming

logger = logging.getLogger(__name__)

DECODABLE = frozenset({"", "identity", "gzip", "x-gzip", "deflate", "br"})
_INVENTED = (hdrs.CONTENT_TYPE, hdrs.SERVER)  # headers aiohttp adds that a relay must not


class BodySource(Protocol):
    """Where a response body comes from (``upstream_connection.UpstreamResponse``)."""

    def read_nowait(self) -> bytes | memoryview: ...
    async def readany(self) -> bytes | memoryview: ...
    def is_eof(self) -> bool: ...


class RewriteFailed(RproxyError):
    """A body rewriter raised after the response had started; the connection must be dropped."""


class _Stage(Protocol):
    def feed(self, chunk: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


class _Coding(Protocol):
    def decode(self, chunk: bytes) -> bytes: ...
    def decode_end(self) -> bytes: ...
    def encode(self, chunk: bytes) -> bytes: ...
    def encode_end(self) -> bytes: ...


class _ZlibCoding:
    def __init__(self, encoding: str) -> None:
        wbits = 31 if encoding in ("gzip", "x-gzip") else 15
        self._decoder = zlib.decompressobj(wbits if wbits == 31 else 47)
        self._encoder = zlib.compressobj(6, zlib.DEFLATED, wbits)

    def decode(self, chunk: bytes) -> bytes:
        return self._decoder.decompress(chunk)

    def decode_end(self) -> bytes:
        return self._decoder.flush()

    def encode(self, chunk: bytes) -> bytes:
        return self._encoder.compress(chunk) if chunk else b""

    def encode_end(self) -> bytes:
        return self._encoder.flush()


# brotli's default quality, 11, is for files compressed once: re-encoding code-server's 1.6 MB
# workbench.css took 4.3 s of the event loop at 11, 57 ms at 5 (output 21% larger); 5 is about
# gzip level 6's speed, as servers compressing on the fly choose
_BROTLI_QUALITY = 5


class _BrotliCoding:
    def __init__(self) -> None:
        self._decoder = brotli.Decompressor()
        self._encoder = brotli.Compressor(quality=_BROTLI_QUALITY)

    def decode(self, chunk: bytes) -> bytes:
        data: bytes = self._decoder.process(chunk)
        return data

    def decode_end(self) -> bytes:
        return b""

    def encode(self, chunk: bytes) -> bytes:
        data: bytes = self._encoder.process(chunk) if chunk else b""
        return data

    def encode_end(self) -> bytes:
        data: bytes = self._encoder.finish()
        return data


class BodyPipeline:
    """Decode, run the body rewriters in order, encode again: one ``feed`` / ``flush`` pair."""

    def __init__(
        self, stages: Sequence[tuple[str, _Stage]], encoding: str, failures: Counter[str]
    ) -> None:
        self._stages = stages
        self._failures = failures
        self.seconds: dict[str, float] = {}  # time spent in each rewriter, for the metrics
        self._coding: _Coding | None = None
        if encoding == "br":
            self._coding = _BrotliCoding()
        elif encoding not in ("", "identity"):
            self._coding = _ZlibCoding(encoding)

    def feed(self, chunk: bytes) -> bytes:
        data = self._coding.decode(chunk) if self._coding else chunk
        for name, stage in self._stages:
            data = self._run(name, stage.feed, data)
        return self._coding.encode(data) if self._coding else data

    def flush(self) -> bytes:
        data = self._coding.decode_end() if self._coding else b""
        for name, stage in self._stages:
            data = self._run(name, stage.feed, data) + self._run(name, stage.flush)
        if not self._coding:
            return data
        return self._coding.encode(data) + self._coding.encode_end()

    def _run(self, name: str, step: Any, *args: bytes) -> bytes:
        start = time.perf_counter()
        try:
            out: bytes = step(*args)
        except Exception as exc:
            self._failures[name] += 1
            logger.exception("rewriter %r failed in the middle of a body", name)
            raise RewriteFailed(f"rewriter {name!r} failed: {exc}") from exc
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        return out


class ResponseSink(Protocol):
    """Where a started response's body goes."""

    async def write(self, data: bytes | memoryview) -> None: ...
    async def write_eof(self, data: bytes = b"") -> None: ...


class ClientSide(Protocol):
    """The client's end of one forwarded request: aiohttp's server (``AiohttpSide``) or
    rproxy's own (front.py). ``start`` sends nothing yet: the status line and headers leave with
    the first body bytes (see the module docstring)."""

    async def start(
        self, status: int, reason: str | None, headers: CIMultiDict[str]
    ) -> ResponseSink: ...

    def close_after(self) -> None:
        """Close the connection after this response, which may be cut short."""


class AiohttpSide:
    """The ``ClientSide`` of a request aiohttp's server parsed: a ``RelayedResponse``."""

    __slots__ = ("_request", "response")

    def __init__(self, request: web.BaseRequest) -> None:
        self._request = request
        self.response: RelayedResponse | None = None

    async def start(
        self, status: int, reason: str | None, headers: CIMultiDict[str]
    ) -> ResponseSink:
        self.response = response = RelayedResponse(status=status, reason=reason, headers=headers)
        if self._request.version < HttpVersion11 and hdrs.CONTENT_LENGTH not in headers:
            response.force_close()  # the body ends with the connection (aiohttp forgets that)
        await response.prepare(self._request)
        return response

    def close_after(self) -> None:
        self._request.protocol.force_close()


class RelayedResponse(web.StreamResponse):
    """A StreamResponse that sends headers with the first body bytes and invents no headers.

    aiohttp would add ``Content-Type: application/octet-stream`` to a response that has none;
    for a proxy that changes what the browser does (a download instead of a sniffed page), so
    a Content-Type the upstream did not send is taken out again. So is the ``Server`` aiohttp
    would add (its name and version): a relayed response carries the upstream's, or none, as
    from front.py.
    """

    _send_headers_immediately = False

    async def _prepare_headers(self) -> None:
        invented = [name for name in _INVENTED if name not in self.headers]
        await super()._prepare_headers()
        for name in invented:
            self.headers.popall(name, None)


class BodyRefused(RproxyError):
    """The client's body stalled or grew past the limit; ``RequestBody.refusal`` answers it."""


class BodyReader(Protocol):
    """Where a request body comes from: aiohttp's ``request.content``, or front.py's connection."""

    async def readany(self) -> bytes: ...


class RequestBody:
    """The client's request body as it arrives, for the upstream pool to send on.

    A client silent for ``idle`` seconds mid-body, or a body past ``limit`` bytes (0: none), ends
    the upload with ``BodyRefused`` (the upstream connection is then closed, never handed a
    truncated body as whole) and leaves the client's answer, a 408 or 413, in ``refusal``.
    """

    def __init__(
        self, content: BodyReader, timing: RequestTiming, *, idle: float, limit: int
    ) -> None:
        self._content = content
        self._timing = timing
        self._idle = idle
        self._limit = limit
        self.refusal: web.Response | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        content, timing, received = self._content, self._timing, 0
        while True:
            try:
                async with asyncio.timeout(self._idle):
                    chunk = await content.readany()
            except TimeoutError:
                self.refusal = plain_response(408, "The request body stopped arriving.")
                self.refusal.force_close()
                raise BodyRefused("the client sent no body bytes for a while") from None
            if not chunk:
                return
            received += len(chunk)
            if self._limit and received > self._limit:
                self.refusal = too_large(self._limit)
                raise BodyRefused("the request body is too large")
            timing.bytes_in += len(chunk)
            yield chunk


def too_large(limit: int) -> web.Response:
    """413 for a request body over ``limit`` bytes; the connection closes (the rest is unread)."""
    response = plain_response(413, f"A request body may have at most {limit} bytes.")
    response.force_close()
    return response


async def _read(source: BodySource, timing: RequestTiming) -> bytes | memoryview:
    """The upstream's next chunk (b"" at the end); the wait for it is the upstream's time."""
    before = time.perf_counter()
    chunk = await source.readany()
    timing.upstream_wait += time.perf_counter() - before
    return chunk


async def relay_rewritten(
    source: BodySource, response: ResponseSink, pipeline: BodyPipeline, timing: RequestTiming
) -> None:
    """Copy ``source`` through ``pipeline`` to the prepared ``response`` and finish it."""
    await response.write(b"")  # the headers go now: a buffering rewriter may hold everything
    while chunk := await _read(source, timing):
        out = pipeline.feed(bytes(chunk))  # a rewriter is given bytes, never a view
        if out:
            await response.write(out)
            timing.bytes_out += len(out)
    out = pipeline.flush()
    await response.write_eof(out)
    timing.bytes_out += len(out)


async def relay_body(source: BodySource, response: ResponseSink, timing: RequestTiming) -> None:
    """Copy ``source`` to the prepared ``response`` and finish it."""
    ready = source.read_nowait()
    if source.is_eof() and isinstance(ready, bytes):  # a small body: one send with the headers
        await response.write_eof(ready)
        timing.bytes_out += len(ready)
        return
    await response.write(ready)  # also sends the headers, even when no byte is ready
    timing.bytes_out += len(ready)
    while chunk := await _read(source, timing):
        await response.write(chunk)
        timing.bytes_out += len(chunk)
    await response.write_eof()
