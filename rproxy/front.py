"""rproxy's own HTTP/1.1 server protocol for the requests it simply forwards, aiohttp's for others.

Every client connection starts here, unless the app has a middleware or a response-prepare
signal whose work this module does not do (server.Runner): it does the auth middleware's for an
authenticator that can ``decide`` from a request's head (auth.py), and it sets the fields every
response carries (``RESPONSE_HEADERS``: JupyterHub's version). A request head is read whole and
checked by llhttp (httptools). A request that is simply forwarded is answered here: HTTP/1.0 or
1.1, no body or one of a Content-Length, no upgrade or expectation, an origin-form target that
``proxy.plain_route`` sends straight to a ready HTTP service. ``proxy.forward_plain`` forwards it,
with this connection as its ``ClientSide`` and its body's ``BodyReader``; behind an
authenticator, only once ``decide`` admitted it (a refusal or a login is sent as the
authenticator wrote it). Any other request, and anything unusual (a head llhttp refuses, a bare
LF, a head over ``FIELD_LIMIT`` bytes, a repeated field, HTTP/1.1 without Host), hands the
connection, from that request on, to aiohttp's protocol (server.py's ``_Handler``) with every
byte not yet answered: aiohttp's parser, its limits and error pages, and the whole application
decide, as for every request before this module existed. Why: aiohttp's per-request machinery
(its request and response objects, its parser's URL, its writer) was about 40% of a small
request's CPU.

The deadlines are server.py's: a request head must be complete within ``client_timeout`` of the
connection or of the previous response (an idle connection is closed after it; bytes that trickle
in do not move it), and a client that reads nothing of a response for that long has its connection
aborted. Pipelined requests are answered in order; while a response is in progress, at most
``_BUFFERED`` bytes of what follows are read.
Responses: the status line and headers leave with the first body bytes. Content-Length when the
upstream gave one; else chunked to HTTP/1.1 clients and delimited by the close to HTTP/1.0 ones.
No body for HEAD, 1xx, 204 and 304. A Date is added when the upstream sent none; nothing else is
invented (no Server, no Content-Type). A response cut short is never completed: its connection
is aborted.
Graceful shutdown as aiohttp's: ``close`` closes an idle connection, ``shutdown`` lets a response in
progress finish within the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import cast

import httptools
from aiohttp import web
from aiohttp.helpers import rfc822_formatted_time
from multidict import CIMultiDict

from rproxy.auth import Admitted, Decision, RequestHead, head_decision
from rproxy.errors import FAILED_HERE, plain_response
from rproxy.forwarding import ClientView
from rproxy.http1 import FIELD_LIMIT, header_fields, response_head
from rproxy.keys import AUTHENTICATOR, CONFIG, RESPONSE_HEADERS
from rproxy.proxy import answer_plain, forward_plain, plain_route, send_page
from rproxy.services import Service
from rproxy.streams import ResponseSink
from rproxy.urls import Forward

logger = logging.getLogger(__name__)

_BUFFERED = 64 * 1024  # bytes of pipelined requests read while a response is in progress
_MAX_HEADERS = 100
# How a plain request's head begins (a method and an origin-form target), or a piece of that
_HEAD_START = re.compile(rb"[A-Z]{1,16}(?: (?:/|\Z)|\Z)")
_PHRASES = {status.value: status.phrase for status in HTTPStatus}
_SMALL = 64 * 1024  # a body piece up to this size is joined to the head: one send


class _Framing(enum.Enum):
    NONE = "none"
    LENGTH = "length"
    CHUNKED = "chunked"
    CLOSE = "close"


# the members as globals: reading a member off an Enum class costs ~0.18 us on Python 3.11
_NONE, _LENGTH, _CHUNKED, _CLOSE = _Framing.NONE, _Framing.LENGTH, _Framing.CHUNKED, _Framing.CLOSE


class Front(asyncio.Protocol):
    """One client connection, until a request needs aiohttp (see the module docstring)."""

    def __init__(
        self,
        manager: web.Server,
        aiohttp_protocol: Callable[[], asyncio.Protocol],
        app: web.Application,
    ) -> None:
        self._manager = manager
        self._aiohttp_protocol = aiohttp_protocol
        self._app = app
        self._timeout = app[CONFIG].timeouts.client
        # with an authenticator, only what it decides from the head is answered here
        self._guarded = AUTHENTICATOR in app
        self._decide = head_decision(app.get(AUTHENTICATOR))
        always: list[tuple[str, str]] = app[RESPONSE_HEADERS]  # set on every response
        self._always = tuple(always)
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._buffer = bytearray()
        self._searched = 0  # the head's end is not in buffer[:_searched - 3]
        self._peer = "unknown"
        self._scheme = "http"
        self._task: asyncio.Task[None] | None = None
        self._idle_since: float | None = None  # None while a request is in progress
        self._deadline: asyncio.TimerHandle | None = None
        self._stall: asyncio.TimerHandle | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._body_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._closing = False  # no further request is read: shutdown, or a close after this one
        self._lost = False
        self._handed_off = False
        # the request being parsed, then answered
        self._url = b""
        self._target = ""
        self._headers: CIMultiDict[str] = CIMultiDict()
        self._method = b""
        self._version = ""
        self._complete = False
        self._body_left = 0  # bytes of the request's body not yet read
        self._http11 = True
        self._head_request = False
        self._keep_alive = True
        self._pending: tuple[int, str | None, CIMultiDict[str]] | None = None
        self._framing = _NONE
        self._started = False
        self._finished = False

    # llhttp's callbacks (no on_header: header_fields splits them, quicker)
    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_headers_complete(self) -> None:
        parser = self._parser  # read here: llhttp forgets them once the message is complete
        self._method = parser.get_method()
        self._version = parser.get_http_version()
        self._keep_alive = parser.should_keep_alive()

    def on_message_complete(self) -> None:
        self._complete = True

    # asyncio's
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast("asyncio.Transport", transport)  # uvloop's: no subclass
        peer = transport.get_extra_info("peername")
        if isinstance(peer, (list, tuple)):
            self._peer = str(peer[0])
        elif peer:
            self._peer = str(peer)
        if transport.get_extra_info("sslcontext") is not None:
            self._scheme = "https"
        self._manager.connection_made(self, transport)  # type: ignore[arg-type]
        self._idle_since = self._loop.time()
        self._deadline = self._loop.call_later(self._timeout, self._check_deadline)

    def data_received(self, data: bytes) -> None:
        if self._closing and self._task is None:
            return  # (a request in progress may still be reading its body)
        self._buffer += data
        if self._task is None:
            self._next()  # may hand the connection off: then it is not this protocol's to pause
        else:
            waiter = self._body_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        if len(self._buffer) > _BUFFERED and not self._reading_paused and not self._handed_off:
            assert self._transport is not None
            self._transport.pause_reading()
            self._reading_paused = True

    def eof_received(self) -> None:
        return None  # as aiohttp: the transport closes; a response in progress fails to write

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self._stall is None:
            self._stall = self._loop.call_later(self._timeout, self._stalled)

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._task is None and self._buffer and not self._closing:
            self._next()
            self._resume_reading()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost = self._closing = True
        self._manager._connections.pop(self, None)  # type: ignore[call-overload]
        self._stop_timers()
        for waiter in (self._drain_waiter, self._body_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionResetError("the client went away"))
        self._drain_waiter = self._body_waiter = None

    # aiohttp's web.Server calls these on shutdown
    def close(self) -> None:
        self._closing = True
        if self._task is None and self._transport is not None:
            self._transport.close()

    async def shutdown(self, timeout: float | None = 15.0) -> None:  # noqa: ASYNC109 (aiohttp's)
        self.close()
        task = self._task
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                task.cancel()
                await asyncio.wait({task})
        if self._transport is not None:
            self._transport.close()

    # reading requests
    def _next(self) -> None:
        """Answer the buffer's next request, or hand the connection to aiohttp for it."""
        if self._writing_paused:
            return  # resume_writing comes back here
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n", self._searched)
        if end < 0:  # a head in pieces: aiohttp judges at once what cannot become a plain one
            if (
                len(buffer) > FIELD_LIMIT
                or not _HEAD_START.match(buffer)
                or buffer.count(b"\n") != buffer.count(b"\r\n")
            ):
                self._hand_off()
            else:
                self._searched = max(0, len(buffer) - 3)
            return
        end += 4
        self._searched = 0
        head = bytes(buffer[:end])
        plain = self._plain(head) if end <= FIELD_LIMIT else None
        if plain is None:
            self._hand_off()
            return
        del buffer[:end]
        if self._body_left:  # llhttp waits for the body, which is counted here: a fresh parser
            self._parser = httptools.HttpRequestParser(self)
        method = self._method.decode("ascii")
        self._head_request = method == "HEAD"
        self._idle_since = None
        self._task = self._loop.create_task(self._serve(method, *plain, head))

    def _plain(self, head: bytes) -> tuple[Service, Forward] | None:
        """The service and route of ``head``'s request when it is answered here, else None."""
        self._url, self._complete = b"", False
        try:
            self._parser.feed_data(head)  # (llhttp refuses a bare LF)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            return None
        headers = self._headers = header_fields(head)
        if (
            self._method == b"CONNECT"
            or "Transfer-Encoding" in headers
            or "Upgrade" in headers
            or "Expect" in headers
            or len(headers) > _MAX_HEADERS
            # a repeated field (Content-Length too): aiohttp refuses some (User-Agent, ...)
            or (len(headers) > 1 and len({name.lower() for name in headers}) < len(headers))
        ):
            return None
        length = headers.get("Content-Length", "0")
        if not (length.isascii() and length.isdigit()):  # llhttp checked it; so does this
            return None
        self._body_left = int(length)
        if not self._complete and not self._body_left:
            return None
        if self._version not in ("1.1", "1.0") or not self._url.startswith(b"/"):
            return None
        self._http11 = self._version == "1.1"
        if self._http11 and "Host" not in headers:
            return None  # aiohttp refuses it (RFC 9112 3.2)
        self._target = self._url.decode("utf-8", "surrogateescape")
        return plain_route(self._app, self._target)

    def _stop_timers(self) -> None:
        for timer in (self._deadline, self._stall):
            if timer is not None:
                timer.cancel()
        self._deadline = self._stall = None

    def _hand_off(self) -> None:
        """From now on aiohttp's protocol has this connection, and every byte not answered."""
        transport = self._transport
        assert transport is not None
        self._closing = self._handed_off = True  # this protocol is done with the connection
        self._manager._connections.pop(self, None)  # type: ignore[call-overload]
        self._stop_timers()
        data, self._buffer = bytes(self._buffer), bytearray()
        protocol = self._aiohttp_protocol()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self._reading_paused:
            transport.resume_reading()
        if data:
            protocol.data_received(data)

    async def _serve(self, method: str, service: Service, route: Forward, head: bytes) -> None:
        self._pending, self._started, self._finished = None, False, False
        headers = self._headers
        try:
            user = None
            if self._guarded:
                decision = await self._decision(method, headers)
                if not isinstance(decision, Admitted):
                    await self._not_admitted(method, decision, head)
                    return
                user = decision.user
            view = ClientView(self._peer, self._scheme, headers.get("Host"))
            length = self._body_left
            body = self if length else None
            await forward_plain(
                self._app, service, route, self, method, headers, view, body, length, user
            )
        except ConnectionError:  # the client went away as its page was sent
            logger.debug("client went away during %s %s", method, route.path)
        except Exception:
            logger.exception("error answering %s %s", method, route.path)
            if not self._started and not self._lost:
                page = plain_response(500, FAILED_HERE)
                page.force_close()
                with contextlib.suppress(ConnectionError):
                    await send_page(self, page)
        finally:
            self._task = None
            self._done()

    async def _decision(self, method: str, headers: CIMultiDict[str]) -> Decision:
        """The authenticator's decision on this request from its head (see auth.py)."""
        if self._decide is None:
            return None
        head = RequestHead(method, self._target, headers, self._scheme == "https", False)
        try:
            return await self._decide(head)
        except Exception:
            logger.exception(
                "the authenticator failed on %s; aiohttp's path decides", head.raw_path
            )
            return None

    async def _not_admitted(
        self, method: str, page: web.StreamResponse | None, head: bytes
    ) -> None:
        """Send the authenticator's ``page`` (a refusal, a login); when it has none (only aiohttp's
        path can answer), or the request has a body (aiohttp reads past a refused one; here the
        connection would close), the request and the connection go to aiohttp's protocol."""
        if page is not None and not self._body_left:
            await answer_plain(self._app, self, method, page)
        elif not self._lost and not self._closing:
            self._buffer[:0] = head
            self._hand_off()

    def _done(self) -> None:
        """After a response: close, or wait for the next request (perhaps already here)."""
        transport = self._transport
        assert transport is not None
        if self._lost or self._handed_off:
            return
        if not self._finished:
            transport.abort()  # a response cut short must not look complete
            return
        if not self._keep_alive or self._closing or self._body_left:
            self._closing = True  # (a body left unread hides where the next request begins)
            transport.close()
            return
        self._idle_since = self._loop.time()
        if self._deadline is None:
            self._deadline = self._loop.call_later(self._timeout, self._check_deadline)
        if self._buffer:
            self._next()
        self._resume_reading()

    def _resume_reading(self) -> None:
        """Read again once the requests waiting here fit in ``_BUFFERED``."""
        if self._reading_paused and len(self._buffer) <= _BUFFERED and not self._handed_off:
            assert self._transport is not None
            self._reading_paused = False
            self._transport.resume_reading()

    def _check_deadline(self) -> None:
        self._deadline = None
        if self._idle_since is None or self._closing:
            return  # busy: _done arms it again
        left = self._idle_since + self._timeout - self._loop.time()
        if left > 0:
            self._deadline = self._loop.call_later(left, self._check_deadline)
            return
        self._closing = True
        assert self._transport is not None
        self._transport.close()

    def _stalled(self) -> None:
        self._stall = None
        if self._transport is not None and self._writing_paused:
            logger.info("a client read nothing for %gs; its connection is closed", self._timeout)
            self._transport.abort()

    # the BodyReader of proxy.forward_plain
    async def readany(self) -> bytes:
        """The request body's next bytes as they arrive; b"" after its last."""
        while left := self._body_left:
            buffer = self._buffer
            if buffer:
                if len(buffer) <= left:
                    chunk = bytes(buffer)
                    buffer.clear()
                else:
                    chunk = bytes(buffer[:left])
                    del buffer[:left]
                self._body_left = left - len(chunk)
                self._resume_reading()
                return chunk
            if self._lost:
                raise ConnectionResetError("the client went away in the middle of its body")
            self._body_waiter = self._loop.create_future()
            try:
                await self._body_waiter
            finally:
                self._body_waiter = None
        return b""

    # the ClientSide of proxy.forward_plain
    async def start(
        self, status: int, reason: str | None, headers: CIMultiDict[str]
    ) -> ResponseSink:
        self._pending = (status, reason, headers)
        self._started = True
        return self

    def close_after(self) -> None:
        self._keep_alive = False

    async def write(self, data: bytes | memoryview) -> None:
        self._send(data, eof=False)
        if self._writing_paused:
            waiter = self._drain_waiter
            if waiter is None:
                waiter = self._drain_waiter = self._loop.create_future()
            await waiter

    async def write_eof(self, data: bytes = b"") -> None:
        self._send(data, eof=True)

    def _send(self, data: bytes | memoryview, *, eof: bool) -> None:
        transport = self._transport
        assert transport is not None
        if transport.is_closing():
            raise ConnectionResetError("the client went away")
        if self._pending is not None:
            head = self._head()
            if self._framing is _NONE:
                data = b""
            elif self._framing is _CHUNKED and data:
                data = b"%x\r\n%b\r\n" % (len(data), bytes(data))
            if eof and self._framing is _CHUNKED:
                data = bytes(data) + b"0\r\n\r\n"
            if len(data) <= _SMALL:
                transport.write(head + data)
            else:
                transport.writelines((head, data))
        elif self._framing is _CHUNKED:
            if data:
                transport.writelines(
                    (b"%x\r\n" % len(data), data, b"\r\n0\r\n\r\n" if eof else b"\r\n")
                )
            elif eof:
                transport.write(b"0\r\n\r\n")
        elif data and self._framing is not _NONE:
            transport.write(data)
        if eof:
            self._finished = True

    def _head(self) -> bytes:
        """The status line and headers, and how the body is framed."""
        assert self._pending is not None
        status, reason, headers = self._pending
        self._pending = None
        if self._head_request or status < 200 or status in (204, 304):
            self._framing = _NONE
            if status < 200 or status == 204:
                headers.popall("Content-Length", None)
            headers.popall("Transfer-Encoding", None)
        elif "Content-Length" in headers:
            self._framing = _LENGTH
        elif self._http11:
            self._framing = _CHUNKED
            headers["Transfer-Encoding"] = "chunked"
        else:
            self._framing = _CLOSE
            self._keep_alive = False
        if "Date" not in headers:
            headers["Date"] = rfc822_formatted_time()
        if self._keep_alive and not self._closing:
            if not self._http11:
                headers["Connection"] = "keep-alive"
        else:
            self._keep_alive = False
            if self._http11:
                headers["Connection"] = "close"
        for name, value in self._always:  # last, as aiohttp's signal sets them
            headers[name] = value
        version = "1.1" if self._http11 else "1.0"
        return response_head(version, status, reason or _PHRASES.get(status, ""), headers.items())
