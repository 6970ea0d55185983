"""An upstream that goes silent, while other requests go on through the same rproxy.

Proves: ``request_timeout`` (``--request-timeout``) bounds every wait on the upstream; silence
before the response head gives a 504 page (also when the upstream never reads a 16 MiB upload),
silence in the middle of a body aborts the client's response (never passed off as complete); and
requests in flight at the same time, to the same
upstream, are unaffected: short requests keep being answered, and a stream whose chunks keep
coming completes byte for byte although it lasts longer than the timeout (the timeout is per
wait, not per response). Likewise an upload that the upstream keeps reading is not cut by the
timeout, however long it lasts before the upstream answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from support import StartProxy, StartUpstream

_TIMEOUT = 1.0
_HANGING = 5


@pytest.mark.parametrize(
    ("path", "upload"),
    [
        pytest.param("/silent", 0, id="before-the-head"),
        pytest.param("/silent", 256 * 1024, id="before-the-head-after-an-upload"),
        pytest.param("/silent", 16 * 1024 * 1024, id="upload-never-read"),
        pytest.param("/stall-length", 0, id="mid-body-content-length"),
        pytest.param("/stall-chunked", 0, id="mid-body-chunked"),
    ],
)
async def test_a_silent_upstream_times_out_and_other_requests_are_unaffected(
    path: str,
    upload: int,
    start_upstream: StartUpstream,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
) -> None:
    release, arrived, finished = asyncio.Event(), asyncio.Queue[None](), asyncio.Event()
    acks: asyncio.Queue[None] = asyncio.Queue()
    rng = random.Random(path)
    streamed = hashlib.sha256()

    async def silent(request: web.Request) -> web.Response:
        arrived.put_nowait(None)
        await release.wait()
        return web.Response(text="too late")

    async def stall(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        if request.path == "/stall-length":
            resp.content_length = 1000
        await resp.prepare(request)
        await resp.write(b"x" * 10)
        arrived.put_nowait(None)
        await release.wait()
        return resp

    async def quick(request: web.Request) -> web.Response:
        return web.Response(text=f"quick {request.query['n']}")

    async def stream(request: web.Request) -> web.StreamResponse:
        """A chunk each time the client asks, until the silent requests have their answer."""
        resp = web.StreamResponse()
        await resp.prepare(request)
        while not finished.is_set():
            chunk = rng.randbytes(1024)
            streamed.update(chunk)
            await resp.write(chunk)
            await acks.get()
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/silent", silent)
    app.router.add_post("/silent", silent)
    app.router.add_get("/stall-length", stall)
    app.router.add_get("/stall-chunked", stall)
    app.router.add_get("/quick", quick)
    app.router.add_get("/stream", stream)
    proxy = await start_proxy(await start_upstream(app), request_timeout=_TIMEOUT)

    async def hanging() -> tuple[int, bytes | type[Exception]]:
        method, data = ("POST", io.BytesIO(b"u" * upload)) if upload else ("GET", None)
        async with http.request(method, proxy / path[1:], data=data) as resp:
            try:
                return resp.status, await resp.read()
            except aiohttp.ClientPayloadError as exc:
                return resp.status, type(exc)

    async def quick_requests() -> int:
        n = 0
        while not finished.is_set():
            async with http.get(proxy / "quick", params={"n": str(n)}) as resp:
                assert resp.status == 200
                assert await resp.text() == f"quick {n}"
            n += 1
        return n

    async def streaming() -> tuple[int, str]:
        received, digest = 0, hashlib.sha256()
        async with http.get(proxy / "stream") as resp:
            assert resp.status == 200
            async for chunk in resp.content.iter_any():
                digest.update(chunk)
                before, received = received, received + len(chunk)
                for _ in range(received // 1024 - before // 1024):  # one ack per whole chunk
                    acks.put_nowait(None)
                streaming_started.set()
        return received, digest.hexdigest()

    streaming_started = asyncio.Event()
    try:
        async with asyncio.timeout(30), asyncio.TaskGroup() as group:
            quick = group.create_task(quick_requests())
            stream = group.create_task(streaming())
            await streaming_started.wait()  # the stream starts before the silent requests
            hung = [group.create_task(hanging()) for _ in range(_HANGING)]
            for _ in range(_HANGING):
                await arrived.get()
            results = await asyncio.gather(*hung)
            finished.set()
    finally:
        release.set()
    quick_count, (received, digest) = quick.result(), stream.result()
    if path == "/silent":
        for status, body in results:
            assert status == 504
            assert isinstance(body, bytes)
            assert b"504 Gateway Timeout" in body
    else:
        assert results == [(200, aiohttp.ClientPayloadError)] * _HANGING
    assert quick_count >= 1
    assert received >= 1024
    assert digest == streamed.hexdigest(), "the stream lasting past the timeout arrived whole"


async def test_an_upload_outlasting_the_timeout_is_not_cut_while_its_bytes_flow(
    start_upstream: StartUpstream, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    acks: asyncio.Queue[None] = asyncio.Queue()
    rng = random.Random(7)

    async def upload(request: web.Request) -> web.Response:
        """Read the upload as it comes, asking for each next piece; answer only at its end."""
        digest = hashlib.sha256()
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            acks.put_nowait(None)
        return web.Response(text=digest.hexdigest())

    sent = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        until = time.monotonic() + 2.5 * _TIMEOUT  # the upload lasts well past the timeout
        while time.monotonic() < until:
            piece = rng.randbytes(1024)
            sent.update(piece)
            yield piece
            await acks.get()  # the upstream has it: no wait here is the upstream's silence

    app = web.Application()
    app.router.add_post("/upload", upload)
    proxy = await start_proxy(await start_upstream(app), request_timeout=_TIMEOUT)
    async with asyncio.timeout(30), http.post(proxy / "upload", data=body()) as resp:
        assert resp.status == 200, await resp.text()
        assert await resp.text() == sent.hexdigest()
