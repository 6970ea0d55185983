"""The services behind rproxy's front door, and which one a request path belongs to.

A ``Service`` bundles one upstream and everything rproxy keeps for it: where it listens, the
``UrlMapper`` of the public prefix it is mounted at (what its responses' URLs are rewritten to,
and what it gets as X-Forwarded-Prefix), the keep-alive pool plain HTTP goes over, the aiohttp
client for its readiness checks, the reachability probe, its rewriters
and, when rproxy runs its command, the child's endpoint and launcher.

The main service is mounted at the prefix itself; each ``[[services]]`` entry at its own path
under it, a ``VncService`` when it is a VNC server (its bridge and noVNC client live there).
``ServiceTable.pick`` chooses by the longest mount point the path starts with and strips the
public path up to it: the prefix for the main service, prefix and mount for the others. A service
with ``strip_path`` off (``--no-strip-prefix`` for the main one) gets the whole public path
instead, and no X-Forwarded-Prefix, since nothing was taken off; either way its ``UrlMapper`` is
its public mount path, which is also its ``{base_url}``. A path equal to a mount point without its
slash is redirected to it. app.py builds the services in a cleanup context (the clients need a
running loop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from rproxy.config import Upstream
from rproxy.launch import Endpoint, Launcher
from rproxy.plugins.desktop import Desktop
from rproxy.plugins.vnc import VncRoutes
from rproxy.probe import UpstreamProbe
from rproxy.rewriters.base import Rewriter
from rproxy.upstream import UpstreamPool
from rproxy.urls import Forward, Redirect, UrlMapper


@dataclass(slots=True, eq=False)
class Service:
    name: str
    mount: str  # its path under the prefix: "/" for the main upstream, "/ide/" for another
    upstream: Upstream
    urls: UrlMapper
    pool: UpstreamPool
    client: aiohttp.ClientSession
    probe: UpstreamProbe
    rewriters: list[Rewriter]
    strip_path: bool = True  # False: it sees the whole public path, ``urls.prefix`` included
    description: str = ""
    required: bool = True
    endpoint: Endpoint | None = None  # set when rproxy runs the command: its port or socket
    launcher: Launcher | None = None  # set once the command's launcher exists

    @property
    def forwarded_prefix(self) -> str:
        """The public path taken off before the service sees a path: its X-Forwarded-Prefix."""
        return self.urls.public_prefix if self.strip_path else ""


@dataclass(slots=True, eq=False)
class VncService:
    """A VNC server under its own path: its WebSocket bridge and the noVNC client there."""

    name: str
    mount: str
    routes: VncRoutes
    probe: UpstreamProbe
    desktop: Desktop | None = None  # when rproxy runs the VNC server and its app
    description: str = ""
    required: bool = True
    strip_path: bool = True  # its paths are always its own: /websockify, /vnc/


class ServiceTable:
    """The main service and the others, each request sent to the one whose mount it is under."""

    def __init__(self, main: Service, others: Sequence[Service | VncService] = ()) -> None:
        self.main = main
        self.all: tuple[Service | VncService, ...] = (main, *others)
        self.http: tuple[Service, ...] = tuple(s for s in self.all if isinstance(s, Service))
        self._others = sorted(others, key=lambda service: len(service.mount), reverse=True)

    def public_path(self, service: Service | VncService) -> str:
        """Where ``service`` is mounted, as the browser sees it (with a trailing slash)."""
        return self.main.urls.prefix + service.mount[1:]

    def pick(self, route: Forward) -> tuple[Service | VncService, Forward] | Redirect:
        """The service for ``route`` (a path under the prefix) and the route it is given."""
        path = route.path
        for service in self._others:
            mount = service.mount
            if path.startswith(mount):
                return service, self._given(service, path, len(mount) - 1, route.query)
            if path == mount[:-1]:
                location = self.public_path(service)
                return Redirect(f"{location}?{route.query}" if route.query else location)
        return self.main, self._given(self.main, path, 0, route.query)

    def _given(self, service: Service | VncService, path: str, mount: int, query: str) -> Forward:
        """The route ``service`` gets for ``path`` (under the prefix, ``mount`` characters of it
        its mount point's): without the mount, or the whole public path when it keeps it."""
        if service.strip_path:
            return Forward(path[mount:], query)
        return Forward(self.main.urls.prefix + path[1:], query)
