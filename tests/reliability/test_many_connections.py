"""Thousands of idle keep-alive connections held open while other connections carry the load.

rproxy runs as its own process, started with the common soft RLIMIT_NOFILE of 1,024: it must
raise its own to the hard limit, or it could not hold them. 5,000 clients each make one request
and stay connected, idle; then 2,000 requests on 50 other connections all get their whole answer,
rproxy still holds every idle connection (``rproxy_connections``), each of them answers a second
request, and rproxy's resident memory stays bounded (under 32 KiB per idle connection above where
it started).
"""

from __future__ import annotations

import asyncio
import resource
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import aiohttp
import pytest
from aiohttp import web
from reliability_support import MiB, rproxy_process
from support import StartUpstream

_IDLE, _LOAD, _LOAD_CONNECTIONS, _BATCH = 5000, 2000, 50, 100
_BODY = bytes(range(256)) * 256  # 64 KiB for the load requests


@contextmanager
def _descriptor_limit(needed: int) -> Iterator[None]:
    """This process's soft RLIMIT_NOFILE raised to its hard limit for the test (a skip if that
    is below ``needed``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below the {needed} this test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
) -> tuple[bytes, bytes]:
    """One keep-alive request on a raw connection; its status line and body."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(int(line[15:]) for line in lines if line.lower().startswith(b"content-length:"))
    return lines[0], await reader.readexactly(length)


@asynccontextmanager
async def _idle_connections(
    port: int, count: int
) -> AsyncIterator[list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]:
    """``count`` connections to 127.0.0.1:``port``, each having made one request, left open."""
    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def open_one(n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        connections.append((reader, writer))
        status, body = await _exchange(reader, writer, f"/idle/{n}")
        assert (status, body) == (b"HTTP/1.1 200 OK", f"idle {n}".encode())

    try:
        for start in range(0, count, _BATCH):
            await asyncio.gather(*(open_one(n) for n in range(start, start + _BATCH)))
        yield connections
    finally:
        for _, writer in connections:
            writer.transport.abort()


async def test_thousands_of_idle_keep_alive_connections_and_load(
    start_upstream: StartUpstream,
) -> None:
    async def idle(request: web.Request) -> web.Response:
        return web.Response(text=f"idle {request.match_info['n']}")

    async def load(request: web.Request) -> web.Response:
        return web.Response(body=_BODY)

    app = web.Application()
    app.router.add_get("/idle/{n}", idle)
    app.router.add_get("/load", load)
    upstream = await start_upstream(app)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < _IDLE + 1000:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below the {_IDLE + 1000} this test needs")
    async with (
        asyncio.timeout(90),
        rproxy_process("--upstream", str(upstream), soft_file_limit=1024) as rproxy,
    ):
        soft = rproxy.open_files_limit()
        assert soft == hard, f"rproxy runs with a soft RLIMIT_NOFILE of {soft}"
        rss_start = rproxy.rss()
        with _descriptor_limit(_IDLE + 1000):
            port = rproxy.url.port
            assert port is not None
            async with _idle_connections(port, _IDLE) as idle_connections:
                rss_idle = rproxy.rss()
                connector = aiohttp.TCPConnector(limit=_LOAD_CONNECTIONS)
                async with aiohttp.ClientSession(connector=connector) as http:

                    async def one() -> bool:
                        async with http.get(rproxy.url / "load") as resp:
                            return resp.status == 200 and await resp.read() == _BODY

                    answered = await asyncio.gather(*(one() for _ in range(_LOAD)))
                    metrics = await rproxy.metrics(http)
                rss_load, fds = rproxy.rss(), rproxy.fds()
                for start in range(0, _IDLE, _BATCH * 5):  # every idle connection still answers
                    batch = idle_connections[start : start + _BATCH * 5]
                    again = await asyncio.gather(*(_exchange(r, w, "/idle/x") for r, w in batch))
                    assert set(again) == {(b"HTTP/1.1 200 OK", b"idle x")}
    figures = (
        f"rproxy soft RLIMIT_NOFILE {soft}; RSS {rss_start / MiB:.1f} MiB at start, "
        f"{rss_idle / MiB:.1f} with {_IDLE} idle, {rss_load / MiB:.1f} after {_LOAD} load "
        f"requests; {fds} descriptors; {metrics['rproxy_connections']:.0f} connections"
    )
    print(figures, file=sys.stderr)
    assert answered == [True] * _LOAD, figures
    assert metrics["rproxy_connections"] >= _IDLE, f"idle connections were dropped: {figures}"
    assert max(rss_idle, rss_load) - rss_start < _IDLE * 32 * 1024, figures
