"""Every ``web.AppKey`` of rproxy in one place: the typed state an application carries.

State lives on the application, never in module globals; this module only names the slots.
"""

from __future__ import annotations

from aiohttp import ClientSession, web

from rproxy.config import Config
from rproxy.urls import UrlMapper

CONFIG = web.AppKey("config", Config)
URLS = web.AppKey("urls", UrlMapper)
UPSTREAM_CLIENT = web.AppKey("upstream_client", ClientSession)
