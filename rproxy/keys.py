"""Every ``web.AppKey`` of rproxy in one place: the typed state an application carries.

State lives on the application, never in module globals; this module only names the slots.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientSession, web
from prometheus_client.registry import CollectorRegistry

from rproxy.auth import Authenticator
from rproxy.config import Config, Upstream
from rproxy.launch import Endpoint, Launcher
from rproxy.metrics import ProxyMetrics
from rproxy.plugins.vnc import VncRoutes
from rproxy.probe import UpstreamProbe
from rproxy.rewriters.base import Rewriter
from rproxy.upstream import UpstreamPool
from rproxy.urls import UrlMapper

CONFIG = web.AppKey("config", Config)
UPSTREAM = web.AppKey("upstream", Upstream)
URLS = web.AppKey("urls", UrlMapper)
UPSTREAM_CLIENT = web.AppKey("upstream_client", ClientSession)  # WebSockets, readiness checks
UPSTREAM_POOL = web.AppKey("upstream_pool", UpstreamPool)  # every other request
ENDPOINT = web.AppKey("endpoint", Endpoint)
LAUNCHER = web.AppKey("launcher", Launcher)
OPEN_WEBSOCKETS: web.AppKey[set[web.WebSocketResponse[Any]]] = web.AppKey("open_websockets")
REWRITERS: web.AppKey[list[Rewriter]] = web.AppKey("rewriters")
METRICS = web.AppKey("metrics", ProxyMetrics)
PROMETHEUS = web.AppKey("prometheus", CollectorRegistry)
CONNECTION_COUNT: web.AppKey[Callable[[], int]] = web.AppKey("connection_count")
AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("authenticator")
API: web.AppKey[dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = web.AppKey(
    "api"
)
UPSTREAM_PROBE = web.AppKey("upstream_probe", UpstreamProbe)
HUB_USER: web.RequestKey[dict[str, Any]] = web.RequestKey("hub_user", dict)  # hub's user model
VNC = web.AppKey("vnc", VncRoutes)
