"""A service: one upstream behind rproxy's front door, and everything rproxy keeps for it.

A ``Service`` bundles where the upstream listens, the ``UrlMapper`` of the public prefix it is
mounted at, the keep-alive pool plain HTTP goes over, the aiohttp client for its WebSocket
handshakes and readiness checks, the reachability probe and, when rproxy runs its command, the
child's endpoint and launcher. The application keeps its service under ``keys.SERVICE``; app.py
builds it in a cleanup context (the client needs a running loop) and adds the launcher once the
child starts. Nothing here does I/O of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from rproxy.config import Upstream
from rproxy.launch import Endpoint, Launcher
from rproxy.probe import UpstreamProbe
from rproxy.upstream import UpstreamPool
from rproxy.urls import UrlMapper


@dataclass(slots=True, eq=False)
class Service:
    upstream: Upstream
    urls: UrlMapper
    pool: UpstreamPool
    client: aiohttp.ClientSession
    probe: UpstreamProbe
    endpoint: Endpoint | None = None  # set when rproxy runs the command: its port or socket
    launcher: Launcher | None = None  # set once the command's launcher exists
