"""Every ``web.AppKey`` of rproxy in one place: the typed state an application carries.

State lives on the application, never in module globals; this module only names the slots.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import ClientSession, web

from rproxy.config import Config, Upstream
from rproxy.launch import Endpoint, Launcher
from rproxy.rewriters.base import Rewriter
from rproxy.urls import UrlMapper

CONFIG = web.AppKey("config", Config)
UPSTREAM = web.AppKey("upstream", Upstream)
URLS = web.AppKey("urls", UrlMapper)
UPSTREAM_CLIENT = web.AppKey("upstream_client", ClientSession)
ENDPOINT = web.AppKey("endpoint", Endpoint)
LAUNCHER = web.AppKey("launcher", Launcher)
OPEN_WEBSOCKETS: web.AppKey[set[web.WebSocketResponse[Any]]] = web.AppKey("open_websockets")
REWRITERS: web.AppKey[list[Rewriter]] = web.AppKey("rewriters")
REWRITE_FAILURES: web.AppKey[Counter[str]] = web.AppKey("rewrite_failures")
