"""Serve a Config until told to stop: bind, log where, forward signals, add workers, shut down.

``serve`` builds the app's runner (app.py), raises the open-file limit, listens (with JupyterHub's
internal TLS when its certificate is given), forwards SIGHUP / SIGUSR1 / SIGUSR2 to the wrapped
command, starts ``--workers`` once every command started at launch is ready, and on SIGINT /
SIGTERM (or when the command gives up) stops them, the command and the server gracefully.
This module assembles no app (app.py) and holds no request logic (proxy.py).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from typing import Any

from aiohttp import web

from rproxy.app import make_runner
from rproxy.config import Config
from rproxy.keys import SERVICES
from rproxy.launch import Launcher
from rproxy.server import raise_open_file_limit
from rproxy.services import ServiceTable
from rproxy.supervisor import ChildState
from rproxy.workers import WorkerPool

logger = logging.getLogger(__name__)

_FORWARDED_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


async def serve(
    config: Config, *, stop: asyncio.Event | None = None, reuse_port: bool = False
) -> int:
    """Serve ``config`` until ``stop`` is set, SIGINT / SIGTERM arrives, or the command gives up.

    Returns the exit status: 0 after a requested stop, the command's when it could not be kept up.
    With ``config.workers`` above 1, more processes join on the same port once the app is ready.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    raise_open_file_limit()
    runner = make_runner(config)
    pool: WorkerPool | None = None
    spawning: asyncio.Future[None] | None = None
    try:
        await runner.setup()
        service = runner.app[SERVICES].main
        launcher = service.launcher
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if launcher is not None:
            for signum in _FORWARDED_SIGNALS:
                loop.add_signal_handler(signum, _forward, launcher, signum)
        reuse_port = reuse_port or config.workers > 1
        tls = server_tls(config)
        site = web.TCPSite(
            runner,
            config.ip,
            config.port,
            reuse_address=True,
            reuse_port=reuse_port,
            ssl_context=tls,
        )
        await site.start()
        for address in runner.addresses:
            host, port = address[0], address[1]
            logger.info(
                "rproxy listening on %s://%s:%d%s -> %s",
                "https" if tls else "http",
                f"[{host}]" if ":" in host else host,
                port,
                config.prefix,
                service.upstream.describe(),
            )
        if config.workers > 1:
            services = runner.app[SERVICES]
            upstreams = {s.name: s.upstream for s in services.http}
            pool = WorkerPool(config, upstreams, runner.addresses[0][1])
            spawning = asyncio.ensure_future(_start_workers(pool, config.workers - 1, services))
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


def server_tls(config: Config) -> ssl.SSLContext | None:
    """JupyterHub's internal TLS (JUPYTERHUB_SSL_*): the server's certificate, and the client
    certificates it requires when a client CA is given."""
    hub = config.hub
    if not hub.ssl_certfile:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=hub.ssl_client_ca or None)
    context.load_cert_chain(hub.ssl_certfile, hub.ssl_keyfile)
    if hub.ssl_client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def _start_workers(pool: WorkerPool, count: int, services: ServiceTable) -> None:
    """Start the workers once every command started at launch is ready."""
    for service in services.http:
        launcher = service.launcher
        if launcher is None or launcher.lazy:
            continue
        supervisor = await launcher.launched()
        if supervisor is None:
            return
        await supervisor.wait_for(ChildState.READY)
    pool.start(count)


def _forward(launcher: Launcher, signum: int) -> None:
    if launcher.supervisor is not None:
        launcher.supervisor.forward(signum)
