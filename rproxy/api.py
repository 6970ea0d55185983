"""rproxy's own endpoints under ``{prefix}{api_prefix}``: overview, status, user, services, metrics.

Only these exact paths, and only for GET and HEAD, are rproxy's: every other path under the API
prefix (an app's own ``/api/kernels``) and every other method goes to the upstream. The API prefix
is ``api`` by default (where JupyterHub looks), ``--api-prefix _rproxy/api`` moves it out of the
way of apps that own ``/api``, ``--no-api`` removes it. The endpoints sit behind the same
authentication middleware as everything else. JSON answers are never cached; ``status`` answers
503 while the wrapped service is not up, so it can serve as a health check.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from rproxy import __version__
from rproxy.config import api_paths
from rproxy.keys import (
    API,
    AUTHENTICATOR,
    CONFIG,
    CONNECTION_COUNT,
    METRICS,
    OPEN_WEBSOCKETS,
    PROMETHEUS,
    SERVICES,
)
from rproxy.services import Service, VncService
from rproxy.supervisor import ChildState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def api_routes(api_prefix: str | None) -> dict[str, Handler]:
    """The API's paths (as seen after the prefix is stripped) and their handlers."""
    if api_prefix is None:
        return {}
    handlers = (overview, status, user, services, metrics)
    return dict(zip(api_paths(api_prefix), handlers, strict=True))


def _json(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=_NO_STORE)


def _mode(request: web.Request) -> str:
    return "jupyterhub" if request.app[CONFIG].hub.authtype == "oauth" else "standalone"


async def overview(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    identity = await _identity(request)
    return _json(
        {
            "name": "rproxy",
            "version": __version__,
            "mode": _mode(request),
            "prefix": config.prefix,
            "user": identity["name"],
            "endpoints": [config.prefix + path[1:] for path in request.app[API]],
        }
    )


async def status(request: web.Request) -> web.Response:
    app = request.app
    services = app[SERVICES]
    service = services.main
    launcher = service.launcher
    supervisor = launcher.supervisor if launcher is not None else None
    state = launcher.state if launcher is not None else None
    # The upstream is probed only when it should answer: a child that is not ready is down.
    probe = await service.probe.check() if state in (None, ChildState.READY) else None
    others = {other.name: await _state(other) for other in services.all[1:]}
    required_ok = all(
        others[other.name] in ("ready", "reachable") for other in services.all[1:] if other.required
    )
    up = probe is not None and probe.reachable and required_ok
    child: dict[str, Any] | None = None
    if launcher is not None:
        child = {
            "state": str(state),
            "pid": supervisor.pid if supervisor else None,
            "restarts": supervisor.restarts if supervisor else 0,
            "uptime_seconds": _since(supervisor.started_at if supervisor else None),
        }
    metrics_ = app[METRICS]
    count = app.get(CONNECTION_COUNT)
    body = {
        "status": "ok" if up else (str(state) if state not in (None, ChildState.READY) else "down"),
        "upstream": {
            **_where(service),
            "reachable": probe.reachable if probe else None,
            "checked_seconds_ago": round(probe.age, 3) if probe else None,
            **({"problem": probe.problem} if probe and probe.problem else {}),
        },
        "child": child,
        **({"services": others} if others else {}),
        "uptime_seconds": round(time.monotonic() - metrics_.started, 3),
        "connections": count() if count is not None else None,
        "requests_in_flight": metrics_.in_flight,
        "websockets": len(app[OPEN_WEBSOCKETS]),
        "latency_ms": metrics_.latency_summary(),
    }
    return _json(body, 200 if up else 503)


async def user(request: web.Request) -> web.Response:
    return _json({"mode": _mode(request), **(await _identity(request))})


async def services(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    entries = []
    for service in request.app[SERVICES].all:
        if isinstance(service, VncService):
            entries.append(_vnc_entry(config.prefix, service))
            continue
        launcher = service.launcher
        supervisor = launcher.supervisor if launcher is not None else None
        command = (
            shlex.join(supervisor.spec.argv if supervisor else launcher.child.argv)
            if launcher is not None
            else None
        )
        entries.append(
            {
                "name": service.name,
                "path": config.prefix + service.mount[1:],
                **_where(service),
                "state": str(launcher.state) if launcher is not None else "external",
                "restarts": supervisor.restarts if supervisor else 0,
                "required": service.required,
                "description": service.description
                or command
                or f"the server at {service.upstream.describe()}",
            }
        )
    return _json({"services": entries})


def _vnc_entry(prefix: str, service: VncService) -> dict[str, Any]:
    target = service.routes.target
    server = service.desktop.server if service.desktop is not None else None
    return {
        "name": service.name,
        "path": prefix + service.mount[1:],
        "url": None,
        "port": target.port or None,
        "socket": target.socket_path,
        "state": str(server.state) if server is not None else "external",
        "restarts": server.restarts if server is not None else 0,
        "required": service.required,
        "description": service.description,
    }


async def _state(service: Service | VncService) -> str:
    """A service's child state, or for one rproxy does not run, whether it is reachable."""
    if isinstance(service, Service) and service.launcher is not None:
        return str(service.launcher.state)
    if isinstance(service, VncService) and service.desktop and service.desktop.server:
        return str(service.desktop.server.state)
    probe = await service.probe.check()
    return "reachable" if probe.reachable else "unreachable"


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format, or OpenMetrics when the scraper's Accept asks for it."""
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encode(request.app[PROMETHEUS])
    return web.Response(body=body, headers={"Content-Type": content_type, **_NO_STORE})


def _where(service: Service) -> dict[str, Any]:
    upstream, endpoint = service.upstream, service.endpoint
    return {
        "url": None if upstream.unix_socket else str(upstream.url),
        "port": endpoint.port if endpoint is not None else upstream.url.port,
        "socket": upstream.unix_socket,
    }


async def _identity(request: web.Request) -> dict[str, Any]:
    authenticator = request.app.get(AUTHENTICATOR)
    identity = await authenticator.identity(request) if authenticator is not None else None
    if identity is None:
        return {"authenticated": False, "name": None, "groups": [], "admin": False, "scopes": []}
    return {
        "authenticated": True,
        "name": identity.name,
        "groups": list(identity.groups),
        "admin": identity.admin,
        "scopes": list(identity.scopes),
    }


def _since(started: float | None) -> float | None:
    return None if started is None else round(time.monotonic() - started, 3)
