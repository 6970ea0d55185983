"""The WebSocket load generator of the benchmarks: one measurement, printed as one JSON line.

Two modes. ``rtt``: one connection sends a message and waits for its echo, again and again, for
``--duration`` seconds (after a short untimed warm-up). ``stream``: ``--connections`` connections
each keep ``--window`` messages in flight (a new one is sent as each echo arrives) until the
deadline, then drain. Connection set-up is outside the timed part. Prints messages, seconds, bytes
echoed, and p50 / p99 of the per-message round trip in microseconds (under load, for ``stream``).
It runs on uvloop when that imports. Run by benchmarks/run.py; by hand:
``.venv/bin/python benchmarks/ws_client.py --url ws://127.0.0.1:18090/ws --mode rtt``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import deque

import aiohttp


async def _round_trips(
    ws: aiohttp.ClientWebSocketResponse, payload: bytes, deadline: float, times: list[float]
) -> int:
    count = 0
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        await ws.send_bytes(payload)
        await ws.receive_bytes()
        times.append(time.perf_counter() - start)
        count += 1
    return count


async def _pipelined(
    ws: aiohttp.ClientWebSocketResponse,
    payload: bytes,
    window: int,
    deadline: float,
    times: list[float],
) -> int:
    in_flight: deque[float] = deque()
    for _ in range(window):
        in_flight.append(time.perf_counter())
        await ws.send_bytes(payload)
    count = 0
    while in_flight:
        await ws.receive_bytes()
        now = time.perf_counter()
        times.append(now - in_flight.popleft())
        count += 1
        if now < deadline:
            in_flight.append(now)
            await ws.send_bytes(payload)
    return count


def _percentile_us(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e6


async def run(args: argparse.Namespace) -> dict[str, float]:
    payload = b"x" * args.size
    times: list[float] = []
    timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        sockets = [
            await http.ws_connect(args.url, max_msg_size=0, autoping=True)
            for _ in range(args.connections)
        ]
        if args.mode == "rtt":
            await _round_trips(sockets[0], payload, time.perf_counter() + 0.05, [])
        start = time.perf_counter()
        deadline = start + args.duration
        if args.mode == "rtt":
            counts = [await _round_trips(sockets[0], payload, deadline, times)]
        else:
            counts = await asyncio.gather(
                *(_pipelined(ws, payload, args.window, deadline, times) for ws in sockets)
            )
        seconds = time.perf_counter() - start
        for ws in sockets:
            await ws.close()
    times.sort()
    messages = sum(counts)
    return {
        "messages": messages,
        "seconds": seconds,
        "bytes": messages * args.size,
        "p50_us": _percentile_us(times, 0.50),
        "p99_us": _percentile_us(times, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="ws://host:port/path")
    parser.add_argument("--mode", choices=("rtt", "stream"), default="rtt")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds (default 5)")
    parser.add_argument("--size", type=int, default=100, help="message bytes (default 100)")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--window", type=int, default=1, help="messages in flight per connection")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    result = asyncio.run(asyncio.wait_for(run(args), args.duration + 30))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
