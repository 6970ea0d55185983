"""WebSocket passthrough: connect to the upstream first, then accept the client, then relay.

The client's handshake is answered only once the upstream has accepted its own, with the
subprotocol the upstream chose (or none) and the upstream handshake's Set-Cookie headers; an
upstream refusal reaches the client as that status, never as a 101 followed by a close. Frames are
relayed as they are: text stays text (not even decoded), binary stays binary, pings and pongs
cross, and each side's close code and reason reach the other. Each relay awaits the receiving side,
so a slow reader slows the sender's reads (aiohttp pauses the socket once its queue fills) and
memory per connection stays bounded by the message size limit.
Routing, auth and the X-Forwarded-* policy are the caller's: this module gets the headers to send.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from rproxy.errors import UpstreamTimeout, UpstreamUnavailable, error_response, plain_response
from rproxy.metrics import ProxyMetrics

logger = logging.getLogger(__name__)

_HANDSHAKE_HEADERS = (
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Protocol",
)
_UPSTREAM_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0)
# Close codes an endpoint may put on the wire (RFC 6455 7.4); others become 1011 or 1000.
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
Socket = web.WebSocketResponse[Any] | aiohttp.ClientWebSocketResponse[Any]
_Side = Literal["client", "upstream"]


def is_upgrade(request: web.BaseRequest) -> bool:
    """Whether ``request`` asks to become a WebSocket."""
    return request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket"


async def proxy_websocket(
    request: web.Request,
    client: aiohttp.ClientSession,
    url: URL,
    headers: CIMultiDict[str],
    *,
    max_message_size: int,
    heartbeat: float | None,
    open_sockets: set[web.WebSocketResponse[Any]],
    metrics: ProxyMetrics,
) -> web.StreamResponse:
    """Relay the WebSocket ``request`` to ``url``; returns when both sides are closed."""
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    deflate = "permessage-deflate" in request.headers.get("Sec-WebSocket-Extensions", "")
    unoffered = _without_offered_protocols(request) if any(offered) else request
    if not web.WebSocketResponse().can_prepare(unoffered).ok:
        return plain_response(400, "Not a valid WebSocket request.")
    for name in _HANDSHAKE_HEADERS:
        headers.popall(name, None)
    try:
        upstream = await client.ws_connect(
            url,
            headers=headers,
            protocols=[p for p in offered if p],
            autoclose=False,
            autoping=False,
            timeout=_UPSTREAM_TIMEOUT,
            max_msg_size=max_message_size,
            compress=15 if deflate else 0,
            decode_text=False,
        )
    except aiohttp.WSServerHandshakeError as exc:
        logger.info("upstream refused the WebSocket for %s with %d", url.path, exc.status)
        return _refusal(exc)
    except TimeoutError:
        logger.warning("upstream WebSocket for %s: connect timed out", url.path)
        return error_response(UpstreamTimeout())
    except (aiohttp.ClientError, OSError) as exc:
        logger.warning("upstream WebSocket for %s: %s", url.path, exc)
        return error_response(UpstreamUnavailable())
    response = web.WebSocketResponse(
        protocols=(upstream.protocol,) if upstream.protocol else (),
        autoclose=False,
        autoping=False,
        heartbeat=heartbeat,
        max_msg_size=max_message_size,
        compress=True,
        decode_text=False,
    )
    for cookie in _handshake_cookies(upstream):
        response.headers.add("Set-Cookie", cookie)
    try:
        await response.prepare(request if upstream.protocol else unoffered)
        open_sockets.add(response)
        await _relay(response, upstream, metrics)
    finally:
        open_sockets.discard(response)
        await upstream.close(code=WSCloseCode.GOING_AWAY)
    return response


def _without_offered_protocols(request: web.Request) -> web.Request:
    """``request`` without Sec-WebSocket-Protocol: the upstream chose none, so the client gets
    none, and aiohttp does not log the client's offer as a mismatch (apps such as Streamlit send
    a token there, and tokens never reach the log)."""
    headers = CIMultiDict(request.headers)
    headers.popall("Sec-WebSocket-Protocol")
    return request.clone(headers=headers)


def _handshake_cookies(upstream: aiohttp.ClientWebSocketResponse[Any]) -> list[str]:
    # aiohttp keeps the 101 response privately; its Set-Cookie headers must reach the client
    # (Streamlit and Jupyter set XSRF cookies there). tests/test_websocket.py guards this access.
    handshake = getattr(upstream, "_response", None)
    return list(handshake.headers.getall("Set-Cookie", ())) if handshake is not None else []


def _refusal(exc: aiohttp.WSServerHandshakeError) -> web.Response:
    status = exc.status if 400 <= exc.status < 600 else 502
    response = plain_response(status, "The service behind this proxy refused the WebSocket.")
    if exc.headers:
        for name in ("Set-Cookie", "WWW-Authenticate", "Location"):
            for value in exc.headers.getall(name, ()):
                response.headers.add(name, value)
    return response


@dataclass(frozen=True, slots=True)
class _End:
    """Why relaying stopped: which side ended, with which close code and reason."""

    side: _Side
    code: int | None = None
    reason: str = ""
    clean: bool = False  # a close frame arrived, rather than a lost or refused connection


async def _relay(
    client_side: web.WebSocketResponse[Any], upstream: Socket, metrics: ProxyMetrics
) -> None:
    """Pump both ways until one side ends, then close both with that side's code and reason."""
    pumps = {
        asyncio.create_task(_pump(client_side, upstream, "client", "upstream", metrics)),
        asyncio.create_task(_pump(upstream, client_side, "upstream", "client", metrics)),
    }
    try:
        done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pump in pumps:
            pump.cancel()
        await asyncio.wait(pumps)
    end = next(iter(done)).result()
    ended, other = (client_side, upstream) if end.side == "client" else (upstream, client_side)
    lost = WSCloseCode.GOING_AWAY if end.side == "client" else WSCloseCode.INTERNAL_ERROR
    code = _sendable(end.code, default=WSCloseCode.OK if end.clean else lost)
    await other.close(code=code, message=end.reason.encode())
    await ended.close(code=code)  # answers the close frame it sent; a no-op if it is gone


async def _pump(
    source: Socket, target: Socket, source_side: _Side, target_side: _Side, metrics: ProxyMetrics
) -> _End:
    """Copy frames from ``source`` to ``target`` until either ends; say how it ended.

    Each data message counts as activity (what JupyterHub's idle culler is told)."""
    clock = time.time
    while True:
        msg = await source.receive()
        kind = msg.type
        try:
            if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
                metrics.last_activity = clock()
                await target.send_frame(msg.data, kind)
            elif kind is WSMsgType.PING:
                await target.ping(msg.data)
            elif kind is WSMsgType.PONG:
                await target.pong(msg.data)
            elif kind is WSMsgType.CLOSE:
                return _End(source_side, msg.data, msg.extra or "", clean=True)
            elif kind is WSMsgType.ERROR:  # e.g. 1009: a message over the size limit
                return _End(source_side, source.close_code)
            else:  # CLOSED: the connection is gone; CLOSING: closed here, at shutdown
                return _End(source_side)
        except ConnectionError:
            return _End(target_side)


def _sendable(code: int | None, *, default: int) -> int:
    if code is None:
        return default
    return code if code in _SENDABLE or 3000 <= code <= 4999 else default
