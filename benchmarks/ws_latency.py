"""Round-trip latency of a small WebSocket message, direct and through rproxy, in one run.

Starts the demo app (its /ws route echoes) and rproxy in front of it as separate processes, then
sends ``--count`` 100-byte messages one at a time over each path, interleaved in rounds, and prints
p50 / p99 per path and the difference. Run: ``.venv/bin/python benchmarks/ws_latency.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


async def _start(*argv: str, pattern: bytes, stream: str) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE if stream == "stdout" else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE if stream == "stderr" else asyncio.subprocess.DEVNULL,
    )
    source = process.stdout if stream == "stdout" else process.stderr
    assert source is not None
    while not (match := re.search(pattern, await source.readline())):
        pass
    return process, match.group(1).decode()


async def _round_trips(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[float]:
    message = "x" * 100
    times = []
    for _ in range(count):
        start = time.perf_counter()
        await ws.send_str(message)
        await ws.receive_str()
        times.append(time.perf_counter() - start)
    return times


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1e6


async def main(count: int, rounds: int) -> None:
    demo, direct = await _start(
        sys.executable, "-m", "examples.demo.app", "--host", "127.0.0.1", "--port", "0",
        pattern=rb"demo listening on (http://\S+?)/\s*$", stream="stdout",
    )  # fmt: skip
    port = direct.rsplit(":", 1)[1]
    proxy, proxied = await _start(
        sys.executable, "-m", "rproxy", "--ip", "127.0.0.1", "--port", "0", "--destport", port,
        pattern=rb"listening on (http://\S+?)/? ->", stream="stderr",
    )  # fmt: skip
    results: dict[str, list[float]] = {"direct": [], "rproxy": []}
    try:
        async with aiohttp.ClientSession() as http:
            sockets = {
                "direct": await http.ws_connect(f"{direct}/ws"),
                "rproxy": await http.ws_connect(f"{proxied}/ws"),
            }
            for ws in sockets.values():
                await _round_trips(ws, 200)  # warm up
            for _ in range(rounds):
                for name, ws in sockets.items():
                    results[name] += await _round_trips(ws, count // rounds)
            for ws in sockets.values():
                await ws.close()
    finally:
        for process in (proxy, demo):
            process.terminate()
            await process.wait()
    for name, times in results.items():
        print(
            f"{name:7s} n={len(times)} p50={_percentile(times, 50):7.1f} us "
            f"p99={_percentile(times, 99):7.1f} us"
        )
    added = _percentile(results["rproxy"], 50) - _percentile(results["direct"], 50)
    print(f"added by rproxy at p50: {added:.1f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="round trips per path")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    args = parser.parse_args()
    asyncio.run(main(args.count, args.rounds))
