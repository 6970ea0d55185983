"""The client-facing HTTP server: aiohttp's, with rproxy's answer to bad requests and its deadlines.

aiohttp answers a request it cannot parse itself, before any handler or middleware runs, with a
text page that repeats the offending bytes. rproxy's ``Runner`` swaps in a request handler whose
answer is fixed text chosen by the kind of error (nothing from the request is echoed), with
``nosniff``, ``no-store`` and a closed connection, and which logs one line, not a traceback.
A connection begins with front.py's protocol, which answers plain forwards itself and hands the
connection here for anything else (``_Server``), unless the app has a middleware or a
response-prepare signal whose work front.py does not do (``Runner``).

One setting bounds how long a client may hold a connection without doing its part
(``--client-timeout``):
- a connection idle between requests is closed after it;
- a request head must be complete within it of the connection or the previous response
  (aiohttp's keep-alive deadline is not moved by bytes that trickle in: slowloris is cut off);
- a client that reads none of a response for that long has its connection aborted, so a
  stalled reader cannot hold an upstream connection and its buffers for ever
  (only the transport's own high-water mark is buffered meanwhile).
A stalled upload is bounded where the body is read (streams.py). ``take_over`` hands a connection
whose request was answered with a 101 to another protocol (a WebSocket tunnel): from then on none
of these deadlines applies to it, and it is closed, never kept alive, when that protocol is done.
``EveryTarget`` is the one route: every request target reaches rproxy's handler, where urls.py
decides. Since there is nothing for aiohttp's router to choose, the runner hands each request
straight to that route's handler (through the application's middlewares, chained once at
start-up), without the router's per-request URL parsing and resource walk. What this module does
not do: routing decisions, authentication, proxying (urls.py, auth.py, proxy.py).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    HttpProcessingError,
    InvalidURLError,
    LineTooLong,
)
from aiohttp.web_protocol import RequestHandler

from rproxy.errors import FAILED_HERE, plain_response
from rproxy.http1 import FIELD_LIMIT

logger = logging.getLogger(__name__)


def _explanation(exc: BaseException | None) -> str:
    """Fixed text for a request aiohttp refused: never any byte of the request itself."""
    if isinstance(exc, LineTooLong):
        return f"The request line or a header is longer than {FIELD_LIMIT} bytes."
    if isinstance(exc, BadHttpMethod):
        if "HTTPS" in str(exc):
            return "This port speaks plain HTTP, not HTTPS."
        return "The request method is not valid."
    if isinstance(exc, InvalidURLError):
        return "The request target is not a valid URL."
    return "The request is not valid HTTP/1.1."


class EveryTarget(web.DynamicResource):
    """The one route: every request target in any form (origin, absolute, authority, asterisk;
    any byte in the path) reaches rproxy's handler, whose URL policy decides (urls.py), so no
    request gets a page aiohttp's router wrote."""

    def __init__(self) -> None:
        super().__init__("/{target}")

    def _match(self, path: str) -> dict[str, str]:
        return {"target": path}


class _Handler(RequestHandler):
    """aiohttp's connection protocol with fixed error pages and a deadline on stalled readers."""

    __slots__ = ("_client_timeout", "_stalled_timer")

    def __init__(self, manager: web.Server, *, client_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._client_timeout = client_timeout
        self._stalled_timer: asyncio.TimerHandle | None = None

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("the response has started; the connection is dropped")
        if status >= 500:
            if exc is not None:
                logger.error("error answering %s", request.remote, exc_info=exc)
            response = plain_response(status, FAILED_HERE)
        else:
            logger.info(
                "refused a malformed request from %s: %s",
                request.remote,
                type(exc).__name__ if isinstance(exc, HttpProcessingError) else status,
            )
            response = plain_response(status, _explanation(exc))
        response.force_close()
        return response

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stalled_timer is None:
            loop = asyncio.get_running_loop()
            self._stalled_timer = loop.call_later(self._client_timeout, self._stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_stalled_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_stalled_timer()
        super().connection_lost(exc)

    def _cancel_stalled_timer(self) -> None:
        if self._stalled_timer is not None:
            self._stalled_timer.cancel()
            self._stalled_timer = None

    def _stalled(self) -> None:
        self._stalled_timer = None
        if self.transport is not None and self.writing_paused:
            logger.info(
                "a client read nothing for %gs; its connection is closed", self._client_timeout
            )
            self.transport.abort()


@dataclass(frozen=True, slots=True)
class TakenOver:
    """A client connection handed to another protocol by ``take_over``."""

    transport: asyncio.Transport
    early: bytes  # what the client sent after its request head, already read by aiohttp
    lost: Callable[[BaseException | None], None]  # the new protocol calls it from connection_lost


def take_over(request: web.BaseRequest, protocol: asyncio.BaseProtocol) -> TakenOver:
    """Hand ``request``'s connection (its 101 already sent) to ``protocol``.

    aiohttp's handler no longer reads, writes or times the connection: keep-alive is off (its
    idle and head deadlines cannot fire), the stalled-reader timer is off, and transport events go
    to ``protocol``. The handler's request stays in progress (graceful shutdown waits for it);
    ``protocol`` must call ``lost`` when the connection is lost, so aiohttp forgets the
    connection, and the handler then returns with the connection closed. ConnectionResetError if
    the client is already gone.
    """
    handler = request.protocol
    transport = handler.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client went away before its WebSocket started")
    handler.keep_alive(False)
    if isinstance(handler, _Handler):
        handler._cancel_stalled_timer()
    early = handler._message_tail  # aiohttp keeps the bytes after an upgrade request's head here
    handler._message_tail = b""
    transport.set_protocol(protocol)
    transport.resume_reading()  # aiohttp pauses reading once that tail grows large
    return TakenOver(transport, early, handler.connection_lost)


FrontFactory = Callable[[web.Server, Callable[[], asyncio.Protocol]], asyncio.Protocol]


class _Server(web.Server):
    """aiohttp's connection manager, making ``front`` protocols (front.py), which hand a
    connection to a ``_Handler`` when they need aiohttp, or ``_Handler`` protocols directly."""

    client_timeout: float
    front: FrontFactory | None

    def __call__(self) -> asyncio.Protocol:  # type: ignore[override]
        if self.front is not None:
            return self.front(self, self.handler)
        return self.handler()

    def handler(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, client_timeout=self.client_timeout, **self._kwargs)


class Runner(web.AppRunner):
    """An AppRunner whose connections are rproxy's ``_Handler`` (see the module docstring), or
    begin with ``front`` (front.py) when every middleware and response-prepare signal of the app
    is one of ``stands_in``, whose work front.py does itself: its requests have no aiohttp
    request or response for the others to see."""

    def __init__(
        self,
        app: web.Application,
        *,
        client_timeout: float,
        front: FrontFactory | None = None,
        stands_in: frozenset[object] = frozenset(),
        **kwargs: Any,
    ) -> None:
        super().__init__(
            app,
            keepalive_timeout=client_timeout,
            max_line_size=FIELD_LIMIT,
            max_field_size=FIELD_LIMIT,
            **kwargs,
        )
        self._client_timeout = client_timeout
        self._front = front
        self._stands_in = stands_in

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()  # the application is started and frozen now
        server.__class__ = _Server  # aiohttp offers no other way to choose the protocol class
        assert isinstance(server, _Server)
        server.client_timeout = self._client_timeout
        app, stands_in = self.app, self._stands_in
        plain = all(m in stands_in for m in app.middlewares) and all(
            s in stands_in for s in app.on_response_prepare
        )
        server.front = self._front if plain else None
        server.request_handler = _direct(self.app)
        return server


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _direct(app: web.Application) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """What ``Application._handle`` does for an application whose one route is ``EveryTarget``:
    the same match info on every request, ``Expect`` answered by the route, then the middlewares
    and the handler, chained once here rather than found again for each request."""
    [resource] = app.router.resources()
    assert isinstance(resource, EveryTarget), "rproxy's application has the one route"
    [route] = resource
    match_info = web.UrlMappingMatchInfo({}, route)
    match_info.add_app(app)
    match_info.freeze()
    handler: Handler = route.handler
    for middleware in reversed(app.middlewares):
        handler = partial(middleware, handler=handler)

    async def dispatch(request: web.BaseRequest) -> web.StreamResponse:
        assert isinstance(request, web.Request)
        request._match_info = match_info
        if request.headers.get(hdrs.EXPECT):
            answer = await route.handle_expect_header(request)
            await request.writer.drain()
            if answer is not None:
                return answer
        return await handler(request)

    return dispatch


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; return the new limit.

    Each client and each upstream connection is a file descriptor, and the usual soft limit
    (1,024) would refuse connections long before memory or CPU run short.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            logger.debug("cannot raise the open-file limit from %d: %s", soft, exc)
            return soft
    return hard
