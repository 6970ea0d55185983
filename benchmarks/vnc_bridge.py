"""Throughput of rproxy's VNC bridge against websockify's, on the same machine, in one run.

A TCP server stands in for a VNC server: for "down" it sends SIZE bytes (framebuffer updates go
this way), for "up" it counts what arrives. A WebSocket client reads or writes SIZE bytes through
each bridge: rproxy (``--vnc-upstream``) and websockify (Debian's ``websockify`` package), each
pinned to CPU 1 while the client and the server share CPU 0. Runs are interleaved and repeated;
the medians are printed with the bridge's CPU time per MB.

    .venv/bin/python benchmarks/vnc_bridge.py [--size-mib 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

CHUNK = 64 * 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its live descendants (websockify forks one per connection)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            stats[int(entry.name)] = (int(fields[1]), ticks)
    tree, total, changed = {pid}, 0.0, True
    while changed:
        changed = False
        for child, (parent, _) in stats.items():
            if parent in tree and child not in tree:
                tree.add(child)
                changed = True
    for member in tree:
        total += stats.get(member, (0, 0.0))[1]
    return total


class FakeVnc:
    def __init__(self, size: int) -> None:
        self.size = size
        self.mode = "down"
        self.received = 0
        self.done = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        block = os.urandom(CHUNK)
        try:
            if self.mode == "down":
                for _ in range(self.size // CHUNK):
                    writer.write(block)
                    await writer.drain()
            else:
                while self.received < self.size and (data := await reader.read(CHUNK)):
                    self.received += len(data)
                self.done.set()
            await reader.read()  # until the bridge closes
        except ConnectionResetError:
            pass  # the client had all it wanted and closed while the last drain was pending
        writer.close()


async def _measure(url: str, vnc: FakeVnc, mode: str, pid: int) -> tuple[float, float]:
    """(MB/s, bridge CPU seconds per MB) for one transfer of vnc.size bytes."""
    vnc.mode, vnc.received = mode, 0
    vnc.done.clear()
    payload = os.urandom(CHUNK)
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, protocols=("binary",), max_msg_size=0) as ws,
    ):
        cpu, start = _cpu_seconds(pid), time.perf_counter()
        if mode == "down":
            got = 0
            while got < vnc.size:
                got += len(await ws.receive_bytes())
        else:
            for _ in range(vnc.size // CHUNK):
                await ws.send_bytes(payload)
            await asyncio.wait_for(vnc.done.wait(), timeout=120)
        seconds = time.perf_counter() - start
        cpu = _cpu_seconds(pid) - cpu
    megabytes = vnc.size / 1e6
    return megabytes / seconds, cpu / megabytes


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args[0]} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after 30 s")


def _start(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["taskset", "-c", "1", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def _run(size: int, repeat: int, websockify: str) -> None:
    vnc = FakeVnc(size)
    server = await asyncio.start_server(vnc.serve, "127.0.0.1", 0)
    vnc_port = server.sockets[0].getsockname()[1]
    rproxy_port, ws_port = _free_port(), _free_port()
    rproxy = Path(sys.executable).with_name("rproxy")
    bridges = await asyncio.to_thread(
        lambda: {
            "rproxy": _start([str(rproxy), "--vnc-upstream", f"127.0.0.1:{vnc_port}",
                              "--upstream", "http://127.0.0.1:1", "--ip", "127.0.0.1",
                              "--port", str(rproxy_port), "--log-level", "WARNING"]),
            "websockify": _start([websockify, f"127.0.0.1:{ws_port}", f"127.0.0.1:{vnc_port}"]),
        }
    )  # fmt: skip
    urls = {
        "rproxy": f"ws://127.0.0.1:{rproxy_port}/websockify",
        "websockify": f"ws://127.0.0.1:{ws_port}/",
    }
    try:
        await asyncio.to_thread(_wait_listening, rproxy_port, bridges["rproxy"])
        await asyncio.to_thread(_wait_listening, ws_port, bridges["websockify"])
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(repeat):
            for mode in ("down", "up"):
                for name, process in bridges.items():  # taskset execs: the pid is the bridge's
                    results.setdefault((name, mode), []).append(
                        await _measure(urls[name], vnc, mode, process.pid)
                    )
        print(f"{size // (1024 * 1024)} MiB per transfer, medians of {repeat} interleaved runs")
        print(f"{'bridge':12} {'direction':10} {'MB/s':>8} {'CPU ms/MB':>10}")
        for (name, mode), runs in results.items():
            rate = statistics.median(r for r, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            print(f"{name:12} {mode:10} {rate:8.1f} {cpu * 1e3:10.2f}")
    finally:
        for process in bridges.values():
            process.terminate()
            await asyncio.to_thread(process.wait, 30)
        server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    websockify = shutil.which("websockify")
    if websockify is None:
        print("websockify is missing: apt-get install websockify (or novnc, which brings it)")
        return 2
    os.sched_setaffinity(0, {0})
    asyncio.run(_run(args.size_mib * 1024 * 1024, args.repeat, websockify))
    return 0


if __name__ == "__main__":
    sys.exit(main())
