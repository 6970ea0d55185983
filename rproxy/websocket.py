"""WebSocket passthrough: the upstream's handshake first, then the client's, then a frame tunnel.

rproxy opens its own connection to the upstream and sends the handshake (ws_handshake.py) with the
client's subprotocol and permessage-deflate offers and a fresh key. Only once the upstream
answered 101 does the client get its 101, with the subprotocol the upstream chose (or none) and
the upstream handshake's Set-Cookie headers. An upstream refusal reaches the client as that
status (4xx/5xx kept, anything else 502, with its Set-Cookie, WWW-Authenticate and Location),
never as a 101 followed by a close; a connect or answer that takes too long is a 504 page, a
connection that fails a 502 page. Then the client's connection is taken from aiohttp
(server.take_over) and both connections carry frames (ws_tunnel.py), in one of two modes:
- tunnel mode, when extensions can be end to end: the client offered no permessage-deflate, or
  the upstream accepted one of its offers (its answer reaches the client verbatim). Frames are
  copied as bytes both ways;
- per-side mode, when the client offered permessage-deflate and the upstream declined it
  (tornado apps do, browsers always offer it): rproxy compresses towards the client and inflates
  what the client sends (ws_deflate.py).
An upstream answer with an extension the client did not offer is the upstream's failure (502).
Open tunnels are in ``open_sockets`` (shutdown closes them with 1001, api/metrics count them).
Routing, auth and the X-Forwarded-* policy are the caller's: this module gets the headers to send.
"""

from __future__ import annotations

import logging
from typing import Protocol

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from rproxy.errors import (
    BadUpstreamResponse,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_response,
    plain_response,
)
from rproxy.metrics import ProxyMetrics
from rproxy.server import take_over
from rproxy.upstream import UpstreamPool
from rproxy.ws_deflate import Deflating, Inflating, negotiate
from rproxy.ws_handshake import WebSocketRefused, accept_key, open_upstream
from rproxy.ws_tunnel import Side, Tunnel

logger = logging.getLogger(__name__)

_HANDSHAKE_HEADERS = (
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Protocol",
)


class OpenSocket(Protocol):
    """What shutdown needs of an open WebSocket (a tunnel, or the VNC bridge's aiohttp one)."""

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...


def is_upgrade(request: web.BaseRequest) -> bool:
    """Whether ``request`` asks to become a WebSocket."""
    return request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket"


async def proxy_websocket(
    request: web.Request,
    pool: UpstreamPool,
    url: URL,
    headers: CIMultiDict[str],
    *,
    max_message_size: int,
    heartbeat: float | None,
    read_timeout: float,
    open_sockets: set[OpenSocket],
    metrics: ProxyMetrics,
) -> web.StreamResponse:
    """Tunnel the WebSocket ``request`` to ``url``; returns when both sides are closed."""
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    offered = [p for p in offered if p]
    if not web.WebSocketResponse().can_prepare(_without_offered_protocols(request)).ok:
        return plain_response(400, "Not a valid WebSocket request.")
    deflate = _deflate_offers(request.headers.getall("Sec-WebSocket-Extensions", ()))
    for name in _HANDSHAKE_HEADERS:
        headers.popall(name, None)
    if offered:
        headers["Sec-WebSocket-Protocol"] = ", ".join(offered)
    if deflate:
        headers["Sec-WebSocket-Extensions"] = deflate
    headers.setdefault("Host", url.raw_authority)
    try:
        upstream = await open_upstream(
            pool, url.raw_path_qs, headers.items(), read_timeout=read_timeout
        )
    except WebSocketRefused as exc:
        logger.info("upstream refused the WebSocket for %s with %d", url.path, exc.status)
        return _refusal(exc)
    except TimeoutError:
        logger.warning("upstream WebSocket for %s: connect timed out", url.path)
        return error_response(UpstreamTimeout())
    except (BadUpstreamResponse, OSError) as exc:
        logger.warning("upstream WebSocket for %s: %s", url.path, exc)
        return error_response(UpstreamUnavailable())
    except ValueError:
        return plain_response(400, "A request header cannot be forwarded.")
    try:
        accepted = _accept(request, upstream.head.headers, offered, deflate)
        if accepted is None:
            logger.warning("upstream WebSocket for %s: it chose an extension not offered", url.path)
            return error_response(UpstreamUnavailable())
        response, per_side = accepted
        await response.prepare(request)
        tunnel = Tunnel(metrics, max_message_size=max_message_size, heartbeat=heartbeat)
        client: Side
        upstream_side: Side
        if per_side is None:
            client, upstream_side = Side(tunnel, masks=False), Side(tunnel, masks=True)
        else:
            client, upstream_side = Inflating(tunnel), Deflating(tunnel, *per_side)
        taken = take_over(request, client)
        client.attach(taken.transport, on_lost=taken.lost)
        upstream.transport.set_protocol(upstream_side)
        upstream_side.attach(upstream.transport)
        tunnel.start(client, upstream_side)
        open_sockets.add(tunnel)
        try:
            if taken.early:
                client.data_received(taken.early)
            if upstream.early:
                upstream_side.data_received(upstream.early)
            if upstream.lost:
                upstream_side.connection_lost(None)
            else:
                upstream.transport.resume_reading()
            await tunnel.done
        finally:
            open_sockets.discard(tunnel)
            if not tunnel.done.done():
                tunnel.abort()
        return response
    finally:
        upstream.transport.abort()  # a no-op once the tunnel closed it


def _accept(
    request: web.Request, answer: CIMultiDict[str], offered: list[str], deflate: str
) -> tuple[web.StreamResponse, tuple[int, bool] | None] | None:
    """The client's 101 for the upstream's ``answer``, and the window bits and no-takeover of
    per-side compression (None: tunnel mode); None if the upstream chose an extension the
    client did not offer."""
    response = web.StreamResponse(
        status=101,
        headers={
            "Upgrade": "websocket",
            "Connection": "upgrade",
            "Sec-WebSocket-Accept": accept_key(request.headers["Sec-WebSocket-Key"]),
        },
    )
    chosen = answer.get("Sec-WebSocket-Protocol", "").strip()
    if chosen in offered:  # otherwise none, as aiohttp's client had it
        response.headers["Sec-WebSocket-Protocol"] = chosen
    per_side = None
    if extensions := ", ".join(answer.getall("Sec-WebSocket-Extensions", ())):
        if not _answers(extensions, deflate):
            return None
        response.headers["Sec-WebSocket-Extensions"] = extensions
    elif deflate and (negotiated := negotiate(deflate)) is not None:
        response.headers["Sec-WebSocket-Extensions"], bits, no_takeover = negotiated
        per_side = bits, no_takeover
    for cookie in answer.getall("Set-Cookie", ()):
        response.headers.add("Set-Cookie", cookie)
    response.force_close()
    return response, per_side


def _without_offered_protocols(request: web.Request) -> web.Request:
    """``request`` without Sec-WebSocket-Protocol, for aiohttp's validity check: it would log a
    client's offer as a mismatch (apps such as Streamlit send a token there, and tokens never
    reach the log)."""
    if "Sec-WebSocket-Protocol" not in request.headers:
        return request
    headers = CIMultiDict(request.headers)
    headers.popall("Sec-WebSocket-Protocol")
    return request.clone(headers=headers)


def _deflate_offers(values: list[str] | tuple[str, ...]) -> str:
    """The client's permessage-deflate offers, in its order; other extensions are not passed on
    (rproxy could not tell whether the upstream's answer to them is one the client can use)."""
    offers = [offer.strip() for value in values for offer in value.split(",")]
    return ", ".join(
        o for o in offers if o.split(";", 1)[0].strip().lower() == "permessage-deflate"
    )


def _answers(answer: str, offers: str) -> bool:
    """Whether the upstream's extensions ``answer`` is one permessage-deflate answer to the
    client's ``offers`` (client_max_window_bits only if the client offered it)."""
    if not offers or "," in answer:
        return False
    name, *params = (part.strip().lower() for part in answer.split(";"))
    names = {param.split("=", 1)[0].strip() for param in params}
    known = {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }
    if name != "permessage-deflate" or not names <= known:
        return False
    return "client_max_window_bits" not in names or "client_max_window_bits" in offers.lower()


def _refusal(exc: WebSocketRefused) -> web.Response:
    status = exc.status if 400 <= exc.status < 600 else 502
    response = plain_response(status, "The service behind this proxy refused the WebSocket.")
    for name in ("Set-Cookie", "WWW-Authenticate", "Location"):
        for value in exc.headers.getall(name, ()):
            response.headers.add(name, value)
    return response
