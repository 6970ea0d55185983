"""Peak memory of an rproxy process while a large body streams through it, each way.

Starts rproxy as its own process in front of an in-process upstream, downloads and uploads
``--size`` MiB through it (hash-checked), and prints the proxy's peak RSS (VmHWM) before and after
each transfer. Linux only (reads /proc). Run: ``.venv/bin/python benchmarks/stream_memory.py``.
This is a measurement, not a test: it asserts byte integrity, never a memory limit.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

CHUNK = bytes(range(256)) * 256  # 64 KiB


def _peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match
    return int(match.group(1)) / 1024


async def _upstream(size: int) -> web.AppRunner:
    async def download(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = size
        await resp.prepare(request)
        for _ in range(size // len(CHUNK)):
            await resp.write(CHUNK)
        return resp

    async def upload(request: web.Request) -> web.Response:
        h = hashlib.sha256()
        async for chunk in request.content.iter_any():
            h.update(chunk)
        return web.Response(text=h.hexdigest())

    app = web.Application()
    app.router.add_get("/down", download)
    app.router.add_post("/up", upload)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def main(size_mib: int) -> None:
    size = size_mib * 1024 * 1024
    expected = hashlib.sha256()
    for _ in range(size // len(CHUNK)):
        expected.update(CHUNK)
    runner = await _upstream(size)
    port = runner.addresses[0][1]
    proxy = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rproxy", "--destport", str(port), "--ip", "127.0.0.1",
        "--port", "0", stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proxy.stderr
    try:
        match = None
        while match is None:  # rproxy logs a few lines before it listens
            line = await asyncio.wait_for(proxy.stderr.readline(), timeout=30)
            if not line:
                raise RuntimeError("rproxy exited before it listened")
            match = re.search(rb"listening on (http://\S+?)/? ->", line)
        base = match.group(1).decode()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            async with http.get(f"{base}/warm-up") as resp:  # 404 from the upstream
                await resp.read()
            print(f"proxy peak RSS after start-up: {_peak_rss_mib(proxy.pid):.1f} MiB")
            start, got = time.perf_counter(), hashlib.sha256()
            async with http.get(f"{base}/down") as resp:
                async for chunk in resp.content.iter_chunked(1 << 20):
                    got.update(chunk)
            took = time.perf_counter() - start
            assert got.hexdigest() == expected.hexdigest(), "download corrupted"
            print(
                f"download {size_mib} MiB: {size_mib / took:.0f} MiB/s, "
                f"proxy peak RSS {_peak_rss_mib(proxy.pid):.1f} MiB"
            )

            async def body() -> AsyncIterator[bytes]:
                for _ in range(size // len(CHUNK)):
                    yield CHUNK

            start = time.perf_counter()
            headers = {"Content-Length": str(size)}
            async with http.post(f"{base}/up", data=body(), headers=headers) as resp:
                digest = await resp.text()
            took = time.perf_counter() - start
            assert digest == expected.hexdigest(), "upload corrupted"
            print(
                f"upload {size_mib} MiB: {size_mib / took:.0f} MiB/s, "
                f"proxy peak RSS {_peak_rss_mib(proxy.pid):.1f} MiB"
            )
    finally:
        proxy.terminate()
        await proxy.wait()
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="MiB per transfer (default 1024)")
    asyncio.run(main(parser.parse_args().size))
