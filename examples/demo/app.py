"""Demo web app to put behind rproxy and try it by hand.

It serves an HTML page with a stylesheet, an image, a form post, a server-sent event stream and a
WebSocket echo, plus ``/headers``, which shows the request headers and raw path the app received
(so you can see what the proxy forwards, cookies and ``Authorization`` included). Every URL in its
pages is root-relative on purpose (``/static/style.css``, ``/about``), so that it shows whether the
proxy maps those URLs when it serves the app under a prefix.

It does not do authentication, TLS, sessions or persistence, and it is not hardened for exposure
beyond a development machine. Run it with ``python -m examples.demo.app --host 127.0.0.1
--port 8000``; ``--port 0`` picks a free port. Once it serves, it writes one line
``demo listening on http://HOST:PORT/`` to stdout with the port it really bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import logging
import math
import signal
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from aiohttp import WSCloseCode, WSMsgType, web
from multidict import MultiMapping

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

MAX_EVENT_COUNT = 3600
MAX_EVENT_INTERVAL = 60.0
DEFAULT_EVENT_INTERVAL = 1.0

_Number = TypeVar("_Number", int, float)

_CLOSING = web.AppKey("closing", asyncio.Event)
_WEBSOCKETS = web.AppKey("websockets", weakref.WeakSet[web.WebSocketResponse])


def _html_page(title: str, body: str) -> web.Response:
    """Wrap ``body`` (already safe HTML) in a page that uses the demo stylesheet."""
    text = (
        "<!doctype html>\n"
        '<html lang="en">\n'
        "<head>\n"
        '  <meta charset="utf-8">\n'
        f"  <title>{html.escape(title)}</title>\n"
        '  <link rel="stylesheet" href="/static/style.css">\n'
        "</head>\n"
        f"<body>\n{body}\n</body>\n"
        "</html>\n"
    )
    return web.Response(text=text, content_type="text/html")


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


async def _about(request: web.Request) -> web.Response:
    return _html_page(
        "About the rproxy demo",
        "  <h1>About</h1>\n"
        "  <p>A small app to try rproxy with: static files, a form, server-sent events and a"
        " WebSocket, all at root-relative URLs.</p>\n"
        '  <p><a href="/">Back to the demo</a></p>',
    )


async def _echo(request: web.Request) -> web.Response:
    form = await request.post()
    message = form.get("message")
    if not isinstance(message, str):
        raise web.HTTPBadRequest(text="expected a text form field 'message'")
    return _html_page(
        "Echo",
        "  <h1>Echo</h1>\n"
        f'  <p>You sent: <output id="echo">{html.escape(message)}</output></p>\n'
        '  <p><a href="/">Back to the demo</a></p>',
    )


def _query_number(
    query: MultiMapping[str],
    name: str,
    parse: Callable[[str], _Number],
    default: _Number,
    minimum: _Number,
    maximum: _Number,
) -> _Number:
    """Read ``name`` from the query: ``default`` if absent, clamped to ``maximum``, else 400."""
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}={raw!r} is not a valid {parse.__name__}") from None
    if not math.isfinite(value) or value < minimum:
        raise web.HTTPBadRequest(text=f"{name} must be finite and >= {minimum}")
    return min(value, maximum)


async def _closing_within(closing: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds``; return whether the app started closing meanwhile."""
    if seconds > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closing.wait(), seconds)
    else:
        await asyncio.sleep(0)
    return closing.is_set()


async def _events(request: web.Request) -> web.StreamResponse:
    """Send ``data: tick N`` every ``interval`` seconds, ``count`` times, until the app closes."""
    count = _query_number(request.query, "count", int, MAX_EVENT_COUNT, 1, MAX_EVENT_COUNT)
    interval = _query_number(
        request.query, "interval", float, DEFAULT_EVENT_INTERVAL, 0.0, MAX_EVENT_INTERVAL
    )
    closing = request.app[_CLOSING]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    try:
        for tick in range(1, count + 1):
            if tick > 1 and await _closing_within(closing, interval):
                break
            await response.write(f"data: tick {tick}\n\n".encode())
        await response.write_eof()
    except ConnectionResetError:
        logger.debug("event stream client went away")
    return response


async def _ws_echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    websockets = request.app[_WEBSOCKETS]
    websockets.add(ws)
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type is WSMsgType.ERROR:
                logger.warning("websocket closed with error: %s", ws.exception())
    finally:
        websockets.discard(ws)
    return ws


async def _headers(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "method": request.method,
            "raw_path": request.raw_path,
            "headers": [[name, value] for name, value in request.headers.items()],
        }
    )


async def _on_shutdown(app: web.Application) -> None:
    """End open event streams and WebSockets so that shutdown does not wait for them."""
    app[_CLOSING].set()
    open_websockets = app[_WEBSOCKETS]
    for ws in list(open_websockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def make_demo_app() -> web.Application:
    """Build the demo app; see the module docstring for its routes."""
    app = web.Application()
    app[_CLOSING] = asyncio.Event()
    app[_WEBSOCKETS] = weakref.WeakSet()
    app.router.add_get("/", _index)
    app.router.add_get("/about", _about)
    app.router.add_post("/echo", _echo)
    app.router.add_get("/events", _events)
    app.router.add_get("/ws", _ws_echo)
    app.router.add_get("/headers", _headers)
    app.router.add_static("/static/", STATIC_DIR, name="static")
    app.on_shutdown.append(_on_shutdown)
    return app


def _port(raw: str) -> int:
    port = int(raw)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, not {port}")
    return port


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.demo.app", description="Demo web app to try rproxy with."
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=_port, default=8000, help="port to bind, 0 for any free one (default: 8000)"
    )
    return parser.parse_args(argv)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _serve(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(make_demo_app())
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        print(f"demo listening on http://{_url_host(bound_host)}:{bound_port}/", flush=True)
        await stop.wait()
        logger.info("shutting down")
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
