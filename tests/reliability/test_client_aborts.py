"""Thousands of clients that go away in the middle of a body, downloading or uploading.

rproxy runs as its own process, so what it holds is its own: after a warm-up round, 2,000 more
aborted exchanges leave it with no more descriptors than before, no upstream connection open
(``rproxy_upstream_connections`` is 0), every upstream handler finished (rproxy dropped its side),
and resident memory within 20 MiB of where it was; it then still answers. A client leaving is
no failure of rproxy's or the upstream's: nothing is logged above INFO (an upload broken off is
not a 502 blamed on the upstream). Each abort happens while rproxy is provably mid-body: the
upstream holds back the rest of a download until the client has gone, and a client leaves an
upload only once the upstream has read part of it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from reliability_support import MiB, RproxyProcess, rproxy_process
from support import StartUpstream

_ABORTS, _BATCH = 2000, 50
_PIECE, _DOWNLOAD = 64 * 1024, 256 * 1024


class _Exchanges:
    """The upstream side: per request id, the moment to go on, and how many handlers ended."""

    def __init__(self) -> None:
        self.go: dict[str, asyncio.Event] = {}
        self.ended = 0
        self.target = 0
        self.all_ended = asyncio.Event()

    def event(self, key: str) -> asyncio.Event:
        return self.go.setdefault(key, asyncio.Event())

    def end(self) -> None:
        self.ended += 1
        if self.ended == self.target:
            self.all_ended.set()


def _upstream(exchanges: _Exchanges) -> web.Application:
    async def download(request: web.Request) -> web.StreamResponse:
        """256 KiB: 64 KiB, then the rest once the client has gone."""
        resp = web.StreamResponse(headers={"Content-Length": str(_DOWNLOAD)})
        await resp.prepare(request)
        try:
            await resp.write(b"d" * _PIECE)
            await exchanges.event(request.match_info["id"]).wait()
            for _ in range(_DOWNLOAD // _PIECE - 1):
                await resp.write(b"d" * _PIECE)
        except ConnectionError:
            pass  # rproxy dropped this connection: its client had gone
        finally:
            exchanges.go.pop(request.match_info["id"], None)
            exchanges.end()
        return resp

    async def upload(request: web.Request) -> web.Response:
        """Read 64 KiB, say so, then read on until rproxy drops the connection."""
        try:
            await request.content.readexactly(_PIECE)
            exchanges.event(request.match_info["id"]).set()
            await request.content.read()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            exchanges.end()
        return web.Response(text="never seen")

    app = web.Application()
    app.router.add_get("/download/{id}", download)
    app.router.add_post("/upload/{id}", upload)
    return app


async def _abort_download(port: int, key: str, exchanges: _Exchanges) -> None:
    gone = exchanges.event(key)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET /download/{key} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        await reader.readexactly(_PIECE)  # the first part: rproxy is mid-body
    finally:
        writer.transport.abort()
        gone.set()


async def _abort_upload(port: int, key: str, exchanges: _Exchanges) -> None:
    reached = exchanges.event(key)
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"POST /upload/{key} HTTP/1.1\r\nHost: x\r\nContent-Length: {MiB}\r\n\r\n".encode()
        )
        writer.write(b"u" * _PIECE)
        await reached.wait()  # the upstream has part of the body: rproxy is mid-upload
    finally:
        writer.transport.abort()
        exchanges.go.pop(key, None)


Abort = Callable[[int, str, _Exchanges], Awaitable[None]]


async def _settled(rproxy: RproxyProcess, http: aiohttp.ClientSession) -> dict[str, float]:
    """rproxy's metrics once it holds no client connection but the metrics request's own and no
    upstream connection (polling its real state, within the caller's timeout)."""
    while True:
        metrics = await rproxy.metrics(http)
        if metrics["rproxy_connections"] <= 1 and metrics["rproxy_upstream_connections"] == 0:
            return metrics
        await asyncio.sleep(0.05)


async def _descriptors_down_to(rproxy: RproxyProcess, count: int) -> int:
    """rproxy's descriptor count once it is ``count`` or less (a connection that just answered a
    request may take a moment to close); the count as it is after 5 s otherwise."""
    try:
        async with asyncio.timeout(5):
            while rproxy.fds() > count:  # noqa: ASYNC110 (/proc has no event to wait on)
                await asyncio.sleep(0.05)
    except TimeoutError:
        pass
    return rproxy.fds()


@pytest.mark.parametrize(
    ("abort", "warm_up"),
    [
        pytest.param(_abort_download, 500, id="downloads"),
        pytest.param(_abort_upload, 2000, id="uploads"),  # its memory settles later
    ],
)
async def test_thousands_of_clients_aborting_mid_body_leak_nothing(
    abort: Abort, warm_up: int, start_upstream: StartUpstream
) -> None:
    exchanges = _Exchanges()
    upstream = await start_upstream(_upstream(exchanges))
    async with (
        asyncio.timeout(90),
        rproxy_process("--upstream", str(upstream)) as rproxy,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
    ):
        port = rproxy.url.port
        assert port is not None

        async def round_of(count: int, first: int) -> None:
            exchanges.target += count
            exchanges.all_ended.clear()
            for start in range(first, first + count, _BATCH):
                await asyncio.gather(
                    *(abort(port, str(i), exchanges) for i in range(start, start + _BATCH))
                )
            await exchanges.all_ended.wait()
            await _settled(rproxy, http)

        await round_of(warm_up, 0)
        fds, rss = rproxy.fds(), rproxy.rss()
        await round_of(_ABORTS, warm_up)
        ended = exchanges.ended
        after = await _settled(rproxy, http)
        fds_after, rss_after = await _descriptors_down_to(rproxy, fds), rproxy.rss()
        async with http.get(rproxy.url / "download" / "last") as resp:
            assert resp.status == 200, "rproxy still serves"
            assert len(await resp.content.readexactly(_PIECE)) == _PIECE
            exchanges.event("last").set()
            assert len(await resp.read()) == _DOWNLOAD - _PIECE
    figures = (
        f"{_ABORTS} aborted: fds {fds} -> {fds_after}, rss {rss / MiB:.1f} -> "
        f"{rss_after / MiB:.1f} MiB, upstream connections {after['rproxy_upstream_connections']}"
    )
    print(figures, file=sys.stderr)
    assert ended == warm_up + _ABORTS, figures
    blamed = [line for line in rproxy.lines if b" WARNING " in line or b" ERROR " in line]
    assert not blamed, f"a client going away is nobody's failure: {blamed[:3]!r}"
    assert fds_after <= fds, f"descriptors leaked: {figures}"
    assert rss_after - rss < 20 * MiB, f"memory grew: {figures}"
