"""Helpers of the reliability tests: rproxy as a separate process, and the child app's bodies.

``rproxy_process`` runs rproxy as its own process, for tests that measure it: its descriptors,
memory and metrics. Unlike tests/test_cli.py, which reads rproxy's stderr line by line itself,
it drains stderr in the background from the start (a test that makes rproxy log thousands of
lines must never block it on a full pipe) and lets the test wait for a line.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from support import terminate
from yarl import URL

_LISTENING = re.compile(rb"rproxy listening on (http://127\.0\.0\.1:\d+)")
MiB = 1 << 20


class RproxyProcess:
    """A running ``python -m rproxy``: its URL, process, and the lines it wrote to stderr."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.url = URL()
        self.lines: list[bytes] = []
        self._new_line = asyncio.Condition()
        self._reader = asyncio.create_task(self._read_stderr())

    @property
    def pid(self) -> int:
        return self.process.pid

    async def _read_stderr(self) -> None:
        stderr = self.process.stderr
        assert stderr is not None
        while line := await stderr.readline():
            async with self._new_line:
                self.lines.append(line)
                self._new_line.notify_all()
        async with self._new_line:
            self._new_line.notify_all()

    async def line_with(self, pattern: bytes, *, start: int = 0) -> re.Match[bytes]:
        """The first line from index ``start`` on matching ``pattern``, once it is written."""
        regex = re.compile(pattern)
        async with self._new_line:
            while True:
                for line in self.lines[start:]:
                    if match := regex.search(line):
                        return match
                start = len(self.lines)
                assert not self._reader.done(), f"rproxy ended without {pattern!r}: {self.log()}"
                await self._new_line.wait()

    def log(self) -> str:
        return b"".join(self.lines[-40:]).decode(errors="replace")

    def fds(self) -> int:
        """Descriptors rproxy has open."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss(self) -> int:
        """rproxy's resident memory in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def open_files_limit(self) -> int:
        """rproxy's soft RLIMIT_NOFILE."""
        for line in Path(f"/proc/{self.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
        raise AssertionError("no open files limit")

    async def metrics(self, http: aiohttp.ClientSession) -> dict[str, float]:
        """rproxy's unlabelled Prometheus samples, by name."""
        async with http.get(self.url / "api/metrics", headers={"Connection": "close"}) as resp:
            assert resp.status == 200
            text = await resp.text()
        samples = (line.split() for line in text.splitlines() if not line.startswith("#"))
        return {s[0]: float(s[1]) for s in samples if len(s) == 2 and "{" not in s[0]}


@asynccontextmanager
async def rproxy_process(
    *args: str, soft_file_limit: int | None = None
) -> AsyncIterator[RproxyProcess]:
    """Run ``python -m rproxy --ip 127.0.0.1 --port 0 ARGS``; yield it once it listens.

    ``soft_file_limit``: the soft RLIMIT_NOFILE it starts with (else this process's).
    On the way out it is stopped with SIGTERM (SIGKILL if that takes over 20 s).
    """

    def limit_files() -> None:
        if soft_file_limit is not None:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft_file_limit, hard))

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rproxy", "--ip", "127.0.0.1", "--port", "0", *args,
        stderr=asyncio.subprocess.PIPE, preexec_fn=limit_files,
    )  # fmt: skip
    running = RproxyProcess(process)
    try:
        async with asyncio.timeout(20):
            match = await running.line_with(_LISTENING.pattern)
        running.url = URL(match.group(1).decode())
        yield running
    finally:
        await terminate(process)
        await running._reader


def halves_body(size: int) -> bytes:
    """What tests/apps/child_app.py's /halves sends: byte i is i % 251."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]
