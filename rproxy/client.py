"""The aiohttp ClientSession for readiness checks, its connects timed.

Plain HTTP forwarding does not use it: that goes over ``upstream.UpstreamPool``, which costs
about half as much CPU per request; WebSockets open their own connection with the pool
(``ws_handshake``). One session per HTTP service: keep-alive connections to the
upstream (TCP or a Unix socket), no headers of its own (a proxy sends only what the client sent),
no cookie jar, no decompression, no proxy settings from the environment. Its connector records
how long opening a new connection takes into the ``rproxy_upstream_connect_seconds`` histogram.
"""

from __future__ import annotations

import time

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientRequest
from aiohttp.tracing import Trace

from rproxy.config import Config, Upstream
from rproxy.metrics import Histogram

# Headers aiohttp's client would add on its own.
_NO_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


class _TimedConnect(aiohttp.BaseConnector):
    """Times the opening of each new connection; a connection from the pool costs nothing extra.

    ``_create_connection`` is the connectors' documented extension point (aiohttp's own docs and
    JupyterHub override it too); tests/test_metrics.py guards it."""

    connect_times: Histogram | None = None

    async def _create_connection(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature)
    ) -> ResponseHandler:
        start = time.perf_counter()
        try:
            return await super()._create_connection(req, traces, timeout)
        finally:
            if self.connect_times is not None:
                self.connect_times.observe(time.perf_counter() - start)


class _TimedTCPConnector(_TimedConnect, aiohttp.TCPConnector):
    pass


class _TimedUnixConnector(_TimedConnect, aiohttp.UnixConnector):
    pass


def new_upstream_client(
    upstream: Upstream, config: Config, connect_times: Histogram | None = None
) -> aiohttp.ClientSession:
    """The pooled, keep-alive client session rproxy uses to talk to ``upstream``."""
    limit = config.upstream_connections
    connector: _TimedConnect
    if upstream.unix_socket:
        connector = _TimedUnixConnector(upstream.unix_socket, limit=limit)
    else:
        connector = _TimedTCPConnector(limit=limit, limit_per_host=0)
    connector.connect_times = connect_times
    timeouts = config.timeouts
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.connect,
            sock_connect=timeouts.connect,
            sock_read=timeouts.read,
        ),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=_NO_AUTO_HEADERS,
        trust_env=False,
    )
