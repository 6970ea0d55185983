"""Every ``web.AppKey`` of rproxy in one place: the typed state an application carries.

State lives on the application, never in module globals; this module only names the slots.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client.registry import CollectorRegistry

from rproxy.auth import Authenticator
from rproxy.config import Config
from rproxy.escaped_paths import EscapedPaths
from rproxy.metrics import ProxyMetrics
from rproxy.plugins.vnc import VncRoutes
from rproxy.rewriters.base import Rewriter
from rproxy.services import ServiceTable
from rproxy.websocket import OpenSocket

CONFIG = web.AppKey("config", Config)
SERVICES = web.AppKey("services", ServiceTable)  # the upstreams and what rproxy keeps for each
OPEN_WEBSOCKETS: web.AppKey[set[OpenSocket]] = web.AppKey("open_websockets")  # tunnels, VNC
REWRITERS: web.AppKey[list[Rewriter]] = web.AppKey("rewriters")
METRICS = web.AppKey("metrics", ProxyMetrics)
PROMETHEUS = web.AppKey("prometheus", CollectorRegistry)
CONNECTION_COUNT: web.AppKey[Callable[[], int]] = web.AppKey("connection_count")
AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("authenticator")
# fields set on every response rproxy sends (JupyterHub's X-JupyterHub-Version), on both protocols
RESPONSE_HEADERS: web.AppKey[list[tuple[str, str]]] = web.AppKey("response_headers")
# the middlewares and response-prepare signals whose work front.py does itself (server.Runner)
FRONT_STANDS_IN: web.AppKey[frozenset[object]] = web.AppKey("front_stands_in")
API: web.AppKey[dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = web.AppKey(
    "api"
)
HUB_USER: web.RequestKey[dict[str, Any]] = web.RequestKey("hub_user", dict)  # hub's user model
VNC = web.AppKey("vnc", VncRoutes)
ESCAPED_PATHS = web.AppKey("escaped_paths", EscapedPaths)  # 404s outside the prefix, told once
