"""Is the upstream accepting connections? A cheap connect, its answer kept briefly.

``api/status`` asks this, never the request path: one TCP (or Unix socket) connect with a short
timeout, at most one under way at a time (concurrent askers share it), and its answer reused for
``ttl`` seconds, so a health checker polling often costs the upstream one connection per ``ttl``.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from rproxy.config import Upstream


@dataclass(frozen=True, slots=True)
class Reachability:
    reachable: bool
    age: float  # seconds since the connect was tried
    problem: str = ""


class UpstreamProbe:
    def __init__(self, upstream: Upstream, *, ttl: float = 2.0, timeout: float = 1.0) -> None:
        self._upstream = upstream
        self._ttl = ttl
        self._timeout = timeout
        self._last: tuple[float, bool, str] | None = None  # (when, reachable, problem)
        self._pending: asyncio.Task[tuple[float, bool, str]] | None = None

    async def check(self) -> Reachability:
        if self._last is None or time.monotonic() - self._last[0] >= self._ttl:
            if self._pending is None or self._pending.done():
                self._pending = asyncio.create_task(self._connect())
            self._last = await asyncio.shield(self._pending)
        when, reachable, problem = self._last
        return Reachability(reachable, time.monotonic() - when, problem)

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()

    async def _connect(self) -> tuple[float, bool, str]:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                if self._upstream.unix_socket:
                    _, writer = await asyncio.open_unix_connection(self._upstream.unix_socket)
                else:
                    url = self._upstream.url
                    _, writer = await asyncio.open_connection(url.host, url.port)
            writer.close()
        except TimeoutError:
            return started, False, f"no connection within {self._timeout:g} s"
        except OSError as exc:
            return started, False, os.strerror(exc.errno) if exc.errno else str(exc)
        return started, True, ""
