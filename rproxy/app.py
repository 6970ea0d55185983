"""Assemble an rproxy ``web.Application`` from a Config, and the runner that serves it.

``make_app`` takes its collaborators (the main service's ClientSession, the authenticator, the
rewriters) so tests can pass their own; everything else is created in ``cleanup_ctx``: for each
service its upstream pool, its ClientSession (readiness probes), its probe and its command.
``make_runner`` wraps the app in server.py's Runner; serving.py runs it until told to stop.
This module holds no request logic (proxy.py) and parses no options (cli.py, config.py).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

import aiohttp
from aiohttp import WSCloseCode, web
from yarl import URL

from rproxy.api import api_routes
from rproxy.auth import Authenticator, auth_middleware, head_decision
from rproxy.client import new_upstream_client
from rproxy.config import Config, ServiceConfig, Upstream
from rproxy.escaped_paths import EscapedPaths
from rproxy.front import Front
from rproxy.keys import (
    API,
    AUTHENTICATOR,
    CONFIG,
    CONNECTION_COUNT,
    ESCAPED_PATHS,
    FRONT_STANDS_IN,
    METRICS,
    OPEN_WEBSOCKETS,
    PROMETHEUS,
    RESPONSE_HEADERS,
    REWRITERS,
    SERVICES,
    VNC,
)
from rproxy.launch import Endpoint, Launcher, allocate_endpoint, desktop_endpoint
from rproxy.metrics import Gauges, ProxyMetrics, registry_for, watch_loop_lag
from rproxy.plugins.desktop import Desktop
from rproxy.plugins.vnc import VncRoutes, VncTarget
from rproxy.probe import UpstreamProbe
from rproxy.proxy import handle
from rproxy.rewriters import registry
from rproxy.rewriters.base import Rewriter
from rproxy.server import EveryTarget, Runner
from rproxy.services import Service, ServiceTable, VncService
from rproxy.supervisor import ChildState
from rproxy.upstream import UpstreamPool
from rproxy.urls import UrlMapper

logger = logging.getLogger(__name__)


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
    app = web.Application()
    app[CONFIG] = config
    app[REWRITERS] = registry.load(config.rewriters) if rewriters is None else rewriters
    app[OPEN_WEBSOCKETS] = set()
    app[METRICS] = metrics = ProxyMetrics(config.slow_request_ms / 1000)
    app[ESCAPED_PATHS] = EscapedPaths(config.prefix)
    app[PROMETHEUS] = registry_for(metrics, _gauges(app))
    app[API] = api_routes(config.api_prefix)
    if config.vnc_upstream is not None:
        app[VNC] = VncRoutes(
            VncTarget(config.vnc_upstream), config.vnc_path, Path(config.novnc_dir)
        )
    app[RESPONSE_HEADERS] = []
    if config.hub.api_token:  # started by JupyterHub; the plugin imports jupyterhub, so only now
        from rproxy.plugins import jupyterhub

        authenticator = jupyterhub.setup(app, config, authenticator)
    stands_in: set[object] = set()  # what front.py does itself: see server.Runner
    if app[RESPONSE_HEADERS]:
        app.on_response_prepare.append(_response_headers)
        stands_in.add(_response_headers)
    if authenticator is not None:
        middleware = auth_middleware(authenticator)
        app.middlewares.append(middleware)
        app[AUTHENTICATOR] = authenticator
        if head_decision(authenticator) is not None:
            stands_in.add(middleware)
    app[FRONT_STANDS_IN] = frozenset(stands_in)
    app.on_shutdown.append(_close_websockets)
    app.cleanup_ctx.append(partial(_upstream, client=client))
    app.cleanup_ctx.append(_loop_lag)
    if config.child is not None or any(s.child is not None for s in config.services):
        app.cleanup_ctx.append(_children)
    if config.desktop is not None:
        app.cleanup_ctx.append(_desktop)
    every_target = EveryTarget()
    app.router.register_resource(every_target)
    every_target.add_route("*", handle)
    return app


async def _response_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in request.app[RESPONSE_HEADERS]:
        response.headers[name] = value


async def _upstream(
    app: web.Application, *, client: aiohttp.ClientSession | None
) -> AsyncIterator[None]:
    config = app[CONFIG]
    endpoint = allocate_endpoint(config.child) if config.child is not None else None
    if config.desktop is not None:  # the upstream is the VNC server rproxy starts
        endpoint = desktop_endpoint()
        socket_path = endpoint.upstream.unix_socket or ""
        app[VNC] = VncRoutes(VncTarget(socket_path), config.vnc_path, Path(config.novnc_dir))
    upstream = endpoint.upstream if endpoint is not None else config.upstream
    if upstream is None:
        raise ValueError("a Config has either an upstream or a command")
    async with AsyncExitStack() as owned:
        main = await _open_service(app, owned, upstream, endpoint, client=client)
        others: list[Service | VncService] = []
        for spec in config.services:
            if spec.vnc is not None or spec.desktop is not None:
                others.append(_vnc_service(spec, owned, others, config))
                continue
            where = allocate_endpoint(spec.child) if spec.child is not None else None
            found = where.upstream if where is not None else spec.upstream
            assert found is not None  # a ServiceConfig has an upstream or a command
            others.append(await _open_service(app, owned, found, where, spec=spec))
        app[SERVICES] = ServiceTable(main, others)
        yield


def _vnc_service(
    spec: ServiceConfig,
    owned: AsyncExitStack,
    others: list[Service | VncService],
    config: Config,
) -> VncService:
    """A VNC server's service; for a desktop, rproxy starts it on a private socket now."""
    desktop = None
    if spec.desktop is not None:
        endpoint = desktop_endpoint()
        assert endpoint.socket_dir is not None
        owned.callback(shutil.rmtree, endpoint.socket_dir, ignore_errors=True)
        text = endpoint.upstream.unix_socket or ""
        desktop = Desktop(spec.desktop, text, config.grace_period,
                          avoid=_displays(others))  # fmt: skip
        desktop.start()
        owned.push_async_callback(desktop.close)
    else:
        assert spec.vnc is not None
        text = spec.vnc
    target = VncTarget(text)
    address = Upstream(URL("http://localhost"), target.socket_path) if target.socket_path else (
        Upstream(URL.build(scheme="http", host=target.host, port=target.port))
    )  # fmt: skip
    probe = UpstreamProbe(address)  # a TCP or socket connect says whether it is up
    owned.callback(probe.close)
    routes = VncRoutes(target, "websockify", Path(config.novnc_dir))
    what = "a desktop rproxy runs" if desktop else f"the VNC server at {spec.vnc}"
    return VncService(spec.name, spec.path, routes, probe, desktop,
                      description=spec.description or what, required=spec.required)  # fmt: skip


def _displays(services: Sequence[Service | VncService]) -> frozenset[int]:
    """The X displays the desktops among ``services`` have taken."""
    return frozenset(s.desktop.display for s in services if isinstance(s, VncService) and s.desktop)


async def _open_service(
    app: web.Application,
    owned: AsyncExitStack,
    upstream: Upstream,
    endpoint: Endpoint | None,
    *,
    spec: ServiceConfig | None = None,
    client: aiohttp.ClientSession | None = None,
) -> Service:
    """The main service (no ``spec``) or another; ``owned`` closes its pool, probe, client and
    socket folder at the end."""
    config = app[CONFIG]
    if endpoint is not None and endpoint.socket_dir is not None:
        owned.callback(shutil.rmtree, endpoint.socket_dir, ignore_errors=True)
    probe = UpstreamProbe(upstream)
    owned.callback(probe.close)
    pool = UpstreamPool(
        upstream,
        config.timeouts,
        limit=config.upstream_connections,
        connect_times=app[METRICS].connect,
    )
    owned.push_async_callback(pool.close)
    if client is None:
        new = new_upstream_client(upstream, config, app[METRICS].connect)
        client = await owned.enter_async_context(new)
    if spec is None:
        urls = UrlMapper(config.prefix, upstream.url)
        return Service("default", "/", upstream, urls, pool, client, probe, app[REWRITERS],
                       strip_path=config.strip_prefix, endpoint=endpoint)  # fmt: skip
    # its public mount path: what its responses' URLs are rewritten to, and its {base_url}
    urls = UrlMapper(config.prefix + spec.path[1:], upstream.url)
    rewriters = app[REWRITERS] if spec.rewriters is None else registry.load(spec.rewriters)
    return Service(spec.name, spec.path, upstream, urls, pool, client, probe, rewriters,
                   strip_path=spec.strip_path, description=spec.description,
                   required=spec.required, endpoint=endpoint)  # fmt: skip


async def _desktop(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    assert config.desktop is not None
    services = app[SERVICES]
    socket_path = services.main.upstream.unix_socket or ""
    desktop = Desktop(config.desktop, socket_path, config.grace_period,
                      avoid=_displays(services.all))  # fmt: skip
    desktop.start()
    try:
        yield
    finally:
        await desktop.close()


async def _loop_lag(app: web.Application) -> AsyncIterator[None]:
    watcher = asyncio.create_task(watch_loop_lag(app[METRICS]))
    yield
    watcher.cancel()
    await asyncio.wait({watcher})


def _gauges(app: web.Application) -> Gauges:
    def connections() -> int:
        count = app.get(CONNECTION_COUNT)
        return count() if count is not None else 0

    def launcher() -> Launcher | None:
        services = app.get(SERVICES)
        return services.main.launcher if services is not None else None

    def child_restarts() -> int | None:
        child = launcher()
        if child is None:
            return None
        return child.supervisor.restarts if child.supervisor else 0

    def child_up() -> bool | None:
        child = launcher()
        return None if child is None else child.state is ChildState.READY

    def upstream_connections() -> int:
        services = app.get(SERVICES)
        return sum(s.pool.open_connections for s in services.http) if services is not None else 0

    return Gauges(
        connections,
        upstream_connections,
        lambda: len(app[OPEN_WEBSOCKETS]),
        child_restarts,
        child_up,
    )


async def _children(app: web.Application) -> AsyncIterator[None]:
    """Start the command of every service that has one (unless it starts on a request)."""
    config = app[CONFIG]
    specs = {spec.name: spec for spec in config.services}
    launchers = []
    try:
        for service in app[SERVICES].http:
            spec = specs.get(service.name)
            child = spec.child if spec is not None else config.child
            if child is None or service.endpoint is None:
                continue
            launcher = service.launcher = Launcher(
                child,
                service.endpoint,
                base_url=service.urls.public_prefix,
                keeps_prefix=not service.strip_path,
                service=None if spec is None else service.name,
                grace_period=config.grace_period,
                lazy=spec is not None and spec.start_on_request,
            )
            launchers.append(launcher)
            if not launcher.lazy:
                launcher.begin(service.client, service.urls, origin_host="")
        yield
    finally:
        await asyncio.gather(*(launcher.close() for launcher in launchers))


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
    """The runner for ``make_app(config)``, with rproxy's client deadlines (server.py).

    Handlers are not cancelled when their client goes away (aiohttp's handler_cancellation costs
    an extra task per request, about 15% of the CPU time of a small request): a relay notices a
    gone client at its next write, and ``--request-timeout`` bounds a wait on a silent upstream.
    """
    app = make_app(config, authenticator=authenticator, rewriters=rewriters)
    runner = Runner(
        app,
        client_timeout=config.timeouts.client,
        front=partial(Front, app=app),  # for plain forwards, when the app allows (server.py)
        stands_in=app[FRONT_STANDS_IN],
        access_log=None,
        shutdown_timeout=config.grace_period,
    )
    app[CONNECTION_COUNT] = lambda: len(runner.server.connections) if runner.server else 0
    return runner
