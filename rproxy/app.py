"""Assemble an rproxy ``web.Application`` from a Config, and serve it until told to stop.

``make_app`` takes its collaborators (the upstream ClientSession) so tests can pass their own; when
none is given, one pooled session is created and closed in ``cleanup_ctx``. ``serve`` binds the
listening socket, logs where it listens, and shuts down gracefully on SIGINT / SIGTERM.
This module holds no request logic (proxy.py) and parses no options (cli.py, config.py).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from rproxy.config import Config
from rproxy.keys import CONFIG, UPSTREAM_CLIENT, URLS
from rproxy.proxy import handle
from rproxy.urls import UrlMapper

logger = logging.getLogger(__name__)

# Headers aiohttp's client would add on its own; a proxy sends only what the client sent.
_NO_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
_SHUTDOWN_GRACE_SECONDS = 10.0


def make_app(config: Config, *, client: aiohttp.ClientSession | None = None) -> web.Application:
    """An application that proxies everything under ``config.prefix`` to ``config.upstream``."""
    app = web.Application()
    app[CONFIG] = config
    app[URLS] = UrlMapper(config.prefix, config.upstream.url)
    if client is not None:
        app[UPSTREAM_CLIENT] = client
    else:
        app.cleanup_ctx.append(_upstream_client)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def new_upstream_client(config: Config) -> aiohttp.ClientSession:
    """The pooled, keep-alive client session rproxy uses to talk to ``config.upstream``."""
    limit = config.upstream_connections
    connector: aiohttp.BaseConnector
    if config.upstream.unix_socket:
        connector = aiohttp.UnixConnector(config.upstream.unix_socket, limit=limit)
    else:
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0)
    timeouts = config.timeouts
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.connect,
            sock_connect=timeouts.connect,
            sock_read=timeouts.read,
        ),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=_NO_AUTO_HEADERS,
        trust_env=False,
    )


async def _upstream_client(app: web.Application) -> AsyncIterator[None]:
    async with new_upstream_client(app[CONFIG]) as client:
        app[UPSTREAM_CLIENT] = client
        yield


def make_runner(config: Config) -> web.AppRunner:
    """The runner for ``make_app(config)``: handlers are cancelled when their client goes away."""
    return web.AppRunner(
        make_app(config),
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=_SHUTDOWN_GRACE_SECONDS,
    )


async def serve(config: Config, *, stop: asyncio.Event | None = None) -> None:
    """Serve ``config`` until ``stop`` is set or SIGINT / SIGTERM arrives, then shut down."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = make_runner(config)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.ip, config.port, reuse_address=True)
        await site.start()
        for address in runner.addresses:
            host, port = address[0], address[1]
            logger.info(
                "rproxy listening on http://%s:%d%s -> %s",
                f"[{host}]" if ":" in host else host,
                port,
                config.prefix,
                config.upstream.describe(),
            )
        await stop.wait()
        logger.info("shutting down")
    finally:
        await runner.cleanup()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
