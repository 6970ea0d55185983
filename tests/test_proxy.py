"""The proxy against real upstream servers: methods, streamed bodies, pooling, failures."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from support import StartProxy, StartUpstream, raw_exchange

MiB = 1 << 20


def _random_chunks(total: int, seed: int) -> list[bytes]:
    """Bytes totalling ``total`` in chunks of random sizes (1 byte to 256 KiB)."""
    rng = random.Random(seed)
    chunks, left = [], total
    while left:
        size = min(left, rng.choice((1, 7, 4096, 65536, 100_003, 262_144)))
        chunks.append(rng.randbytes(size))
        left -= size
    return chunks


def _digest(chunks: list[bytes]) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


async def _echo(request: web.Request) -> web.Response:
    h, length = hashlib.sha256(), 0
    async for chunk in request.content.iter_any():
        h.update(chunk)
        length += len(chunk)
    return web.json_response(
        {
            "method": request.method,
            "raw_path": request.raw_path,
            "sha256": h.hexdigest(),
            "length": length,
            "chunked": request.headers.get("Transfer-Encoding") == "chunked",
        },
        headers={"X-Method": request.method},
    )


def _echo_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _echo)
    return app


@pytest.mark.parametrize(
    "method",
    ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND", "PURGE"],
)
async def test_every_method_is_forwarded_with_its_body(
    method: str, start_upstream: StartUpstream, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(await start_upstream(_echo_app()))
    async with http.request(method, proxy / "thing", data=b"payload") as resp:
        assert resp.status == 200
        got = await resp.json()
    assert got["method"] == method
    assert got["raw_path"] == "/thing"
    assert got["sha256"] == hashlib.sha256(b"payload").hexdigest()


async def test_head_gets_headers_and_no_body(
    start_upstream: StartUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(await start_upstream(_echo_app()))
    raw = await raw_exchange(proxy, b"HEAD /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"X-Method: HEAD" in head
    assert body == b""


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "chunked"])
async def test_large_download_is_byte_exact(
    with_length: bool,
    start_upstream: StartUpstream,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
) -> None:
    chunks = _random_chunks(64 * MiB, seed=1)

    async def download(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        if with_length:
            resp.content_length = 64 * MiB
        await resp.prepare(request)
        for chunk in chunks:
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/big", download)
    proxy = await start_proxy(await start_upstream(app))
    h = hashlib.sha256()
    async with http.get(proxy / "big") as resp:
        assert resp.status == 200
        assert resp.headers.get("Content-Length") == (str(64 * MiB) if with_length else None)
        async for chunk in resp.content.iter_any():
            h.update(chunk)
    assert h.hexdigest() == _digest(chunks)


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "chunked"])
async def test_large_upload_is_byte_exact(
    with_length: bool,
    start_upstream: StartUpstream,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
) -> None:
    chunks = _random_chunks(64 * MiB, seed=2)

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    proxy = await start_proxy(await start_upstream(_echo_app()))
    headers = {"Content-Length": str(64 * MiB)} if with_length else {}
    async with http.put(proxy / "up", data=body(), headers=headers) as resp:
        got = await resp.json()
    assert got["length"] == 64 * MiB
    assert got["sha256"] == _digest(chunks)
    assert got["chunked"] is not with_length


async def test_upload_reaches_upstream_before_the_client_finishes(
    start_upstream: StartUpstream, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    first_arrived = asyncio.Event()

    async def upload(request: web.Request) -> web.Response:
        first = await request.content.readexactly(5)
        first_arrived.set()
        rest = await request.content.read()
        return web.Response(text=(first + rest).decode())

    async def body() -> AsyncIterator[bytes]:
        yield b"first"
        # If the proxy buffered the upload, the upstream could not see the first chunk yet.
        await asyncio.wait_for(first_arrived.wait(), timeout=10)
        yield b" second"

    app = web.Application()
    app.router.add_post("/up", upload)
    proxy = await start_proxy(await start_upstream(app))
    async with http.post(proxy / "up", data=body()) as resp:
        assert await resp.text() == "first second"


async def test_server_sent_events_arrive_one_by_one(
    start_upstream: StartUpstream, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    release = asyncio.Event()

    async def events(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: one\n\n")
        await release.wait()
        await resp.write(b"data: two\n\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/events", events)
    proxy = await start_proxy(await start_upstream(app))
    async with http.get(proxy / "events") as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), timeout=10)
        assert first == b"data: one\n\n"
        release.set()
        assert await resp.content.read() == b"data: two\n\n"


async def test_gzip_passes_through_untouched(
    start_upstream: StartUpstream, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    compressed = gzip.compress(b"hello world " * 1000)

    async def page(request: web.Request) -> web.Response:
        assert "Accept-Encoding" not in request.headers or request.query.get("ae")
        return web.Response(body=compressed, headers={"Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_get("/page", page)
    proxy = await start_proxy(await start_upstream(app))
    async with http.get(
        proxy / "page", params={"ae": "1"}, headers={"Accept-Encoding": "gzip"}
    ) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        assert r.headers["Content-Length"] == str(len(compressed))
        assert await r.read() == compressed


async def test_accept_encoding_is_not_invented_for_the_client(
    start_upstream: StartUpstream, start_proxy: StartProxy
) -> None:
    async def page(request: web.Request) -> web.Response:
        added = [h for h in ("Accept-Encoding", "Accept", "User-Agent") if h in request.headers]
        return web.Response(text=",".join(added) or "none")

    app = web.Application()
    app.router.add_get("/page", page)
    proxy = await start_proxy(await start_upstream(app))
    raw = await raw_exchange(proxy, b"GET /page HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert raw.endswith(b"\r\n\r\nnone")


async def test_upstream_connections_are_reused(
    start_upstream: StartUpstream, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    peers: list[object] = []

    async def hit(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/hit", hit)
    proxy = await start_proxy(await start_upstream(app))
    for _ in range(30):
        async with http.get(proxy / "hit") as resp:
            assert await resp.text() == "ok"
    assert len(peers) == 30
    assert len(set(peers)) <= 2


async def test_unix_socket_upstream(
    tmp_path: Path, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    socket_path = tmp_path / "up.sock"
    runner = web.AppRunner(_echo_app())
    await runner.setup()
    try:
        await web.UnixSite(runner, str(socket_path)).start()
        proxy = await start_proxy(f"unix:{socket_path}")
        async with http.post(proxy.with_path("/via/socket").with_query(q="1"), data=b"abc") as resp:
            got = await resp.json()
        assert got["raw_path"] == "/via/socket?q=1"
        assert got["sha256"] == hashlib.sha256(b"abc").hexdigest()
    finally:
        await runner.cleanup()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_upstream_down_gives_502_without_reflecting_the_request(
    start_proxy: StartProxy, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await start_proxy(f"http://127.0.0.1:{_closed_port()}")
    raw = await raw_exchange(
        proxy,
        b"GET /%3Cscript%3E<b>?x=<i> HTTP/1.1\r\nHost: <h>\r\nConnection: close\r\n\r\n",
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 502 ")
    assert b"Content-Type: text/plain" in head
    assert b"502 Bad Gateway" in body
    for reflected in (b"script", b"<b>", b"<i>", b"<h>", b"%3C"):
        assert reflected not in body
    assert any("502 for GET" in r.getMessage() for r in caplog.records)


async def test_client_leaving_mid_body_closes_the_upstream_side(
    start_upstream: StartUpstream, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    upstream_done = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        try:
            while True:
                await resp.write(b"x" * 65536)
        finally:
            upstream_done.set()

    app = web.Application()
    app.router.add_get("/endless", endless)
    proxy = await start_proxy(await start_upstream(app))
    resp = await http.get(proxy / "endless")
    assert len(await resp.content.readexactly(65536)) == 65536
    resp.close()
    await asyncio.wait_for(upstream_done.wait(), timeout=10)
    async with http.get(proxy / "missing") as resp:
        assert resp.status == 404, "the proxy keeps serving"
