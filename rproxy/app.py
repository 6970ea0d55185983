"""Assemble an rproxy ``web.Application`` from a Config, and serve it until told to stop.

``make_app`` takes its collaborators (the upstream ClientSession) so tests can pass their own; when
none is given, one pooled session is created and closed in ``cleanup_ctx``. ``serve`` binds the
listening socket, logs where it listens, and shuts down gracefully on SIGINT / SIGTERM.
This module holds no request logic (proxy.py) and parses no options (cli.py, config.py).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
from collections import Counter
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, web

from rproxy.auth import Authenticator, auth_middleware
from rproxy.config import Config, Upstream
from rproxy.keys import (
    CONFIG,
    ENDPOINT,
    LAUNCHER,
    OPEN_WEBSOCKETS,
    REWRITE_FAILURES,
    REWRITERS,
    UPSTREAM,
    UPSTREAM_CLIENT,
    URLS,
)
from rproxy.launch import Launcher, allocate_endpoint
from rproxy.proxy import handle
from rproxy.rewriters import registry
from rproxy.rewriters.base import Rewriter
from rproxy.supervisor import ChildState
from rproxy.urls import UrlMapper
from rproxy.workers import WorkerPool

logger = logging.getLogger(__name__)

# Headers aiohttp's client would add on its own; a proxy sends only what the client sent.
_NO_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
_FORWARDED_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def make_app(
    config: Config,
    *,
    client: aiohttp.ClientSession | None = None,
    authenticator: Authenticator | None = None,
    rewriters: list[Rewriter] | None = None,
) -> web.Application:
    """An application that proxies everything under ``config.prefix`` to its upstream.

    The upstream (and, with a command, the child's port or socket) is settled at start-up.
    ``authenticator``, when given, decides on every request before anything is forwarded;
    ``rewriters``, when given, replace the ones ``config.rewriters`` names.
    """
    app = web.Application(middlewares=[auth_middleware(authenticator)] if authenticator else [])
    app[CONFIG] = config
    app[REWRITERS] = registry.load(config.rewriters) if rewriters is None else rewriters
    app[REWRITE_FAILURES] = Counter()
    app[OPEN_WEBSOCKETS] = set()
    app.on_shutdown.append(_close_websockets)
    app.cleanup_ctx.append(partial(_upstream, client=client))
    if config.child is not None:
        app.cleanup_ctx.append(_child)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def new_upstream_client(upstream: Upstream, config: Config) -> aiohttp.ClientSession:
    """The pooled, keep-alive client session rproxy uses to talk to ``upstream``."""
    limit = config.upstream_connections
    connector: aiohttp.BaseConnector
    if upstream.unix_socket:
        connector = aiohttp.UnixConnector(upstream.unix_socket, limit=limit)
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


async def _upstream(
    app: web.Application, *, client: aiohttp.ClientSession | None
) -> AsyncIterator[None]:
    config = app[CONFIG]
    endpoint = allocate_endpoint(config.child) if config.child is not None else None
    if endpoint is not None:
        app[ENDPOINT] = endpoint
    upstream = endpoint.upstream if endpoint is not None else config.upstream
    if upstream is None:
        raise ValueError("a Config has either an upstream or a command")
    app[UPSTREAM] = upstream
    app[URLS] = UrlMapper(config.prefix, upstream.url)
    try:
        if client is not None:
            app[UPSTREAM_CLIENT] = client
            yield
        else:
            async with new_upstream_client(upstream, config) as own_client:
                app[UPSTREAM_CLIENT] = own_client
                yield
    finally:
        if endpoint is not None and endpoint.socket_dir is not None:
            shutil.rmtree(endpoint.socket_dir, ignore_errors=True)


async def _child(app: web.Application) -> AsyncIterator[None]:
    launcher = Launcher(app[CONFIG], app[ENDPOINT])
    app[LAUNCHER] = launcher
    if not launcher.lazy:
        launcher.begin(app[UPSTREAM_CLIENT], app[URLS], origin_host="")
    try:
        yield
    finally:
        await launcher.close()


async def _close_websockets(app: web.Application) -> None:
    sockets = [*app[OPEN_WEBSOCKETS]]
    if sockets:
        logger.info("closing %d WebSocket(s): going away", len(sockets))
    going_away = WSCloseCode.GOING_AWAY
    await asyncio.gather(*(ws.close(code=going_away, message=b"shutting down") for ws in sockets))


def make_runner(
    config: Config,
    *,
    authenticator: Authenticator | None = None,
    rewriters: list[Rewriter] | None = None,
) -> web.AppRunner:
    """The runner for ``make_app(config)``.

    Handlers are not cancelled when their client goes away (aiohttp's handler_cancellation costs
    an extra task per request, about 15% of the CPU time of a small request): a relay notices a
    gone client at its next write, and ``--request-timeout`` bounds a wait on a silent upstream.
    """
    return web.AppRunner(
        make_app(config, authenticator=authenticator, rewriters=rewriters),
        access_log=None,
        shutdown_timeout=config.grace_period,
    )


async def serve(
    config: Config, *, stop: asyncio.Event | None = None, reuse_port: bool = False
) -> int:
    """Serve ``config`` until ``stop`` is set, SIGINT / SIGTERM arrives, or the command gives up.

    Returns the exit status: 0 after a requested stop, the command's when it could not be kept up.
    With ``config.workers`` above 1, more processes join on the same port once the app is ready.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    runner = make_runner(config)
    pool: WorkerPool | None = None
    spawning: asyncio.Future[None] | None = None
    try:
        await runner.setup()
        app = runner.app
        launcher = app.get(LAUNCHER)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if launcher is not None:
            for signum in _FORWARDED_SIGNALS:
                loop.add_signal_handler(signum, _forward, launcher, signum)
        reuse_port = reuse_port or config.workers > 1
        site = web.TCPSite(
            runner, config.ip, config.port, reuse_address=True, reuse_port=reuse_port
        )
        await site.start()
        for address in runner.addresses:
            host, port = address[0], address[1]
            logger.info(
                "rproxy listening on http://%s:%d%s -> %s",
                f"[{host}]" if ":" in host else host,
                port,
                config.prefix,
                app[UPSTREAM].describe(),
            )
        if config.workers > 1:
            pool = WorkerPool(config, app[UPSTREAM], runner.addresses[0][1])
            spawning = asyncio.ensure_future(_start_workers(pool, config.workers - 1, launcher))
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
        if launcher is not None:
            waiters.append(launcher.finished)
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        waiters[0].cancel()
        if launcher is not None and launcher.finished.done():
            return launcher.finished.result()
        logger.info("shutting down")
        return 0
    finally:
        if spawning is not None:
            spawning.cancel()
            await asyncio.wait({spawning})
        if pool is not None:
            await pool.stop(config.grace_period)
        await runner.cleanup()
        for signum in (signal.SIGINT, signal.SIGTERM, *_FORWARDED_SIGNALS):
            loop.remove_signal_handler(signum)


async def _start_workers(pool: WorkerPool, count: int, launcher: Launcher | None) -> None:
    if launcher is not None:
        supervisor = await launcher.launched()
        if supervisor is None:
            return
        await supervisor.wait_for(ChildState.READY)
    pool.start(count)


def _forward(launcher: Launcher, signum: int) -> None:
    if launcher.supervisor is not None:
        launcher.supervisor.forward(signum)
