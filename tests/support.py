"""Helpers shared by tests: raw HTTP exchanges, rproxy wrapping a real child process, Chromium,
and waiting for a server started as a process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from yarl import URL

from rproxy.app import make_runner
from rproxy.auth import Admitted, Decision, RequestHead
from rproxy.cli import parse_config
from rproxy.errors import plain_response
from rproxy.keys import HUB_USER, SERVICES
from rproxy.launch import Launcher
from rproxy.supervisor import ChildState, Supervisor

SLOW_APPS = Path(__file__).parents[1] / ".cache" / "slow-apps" / "bin"  # scripts/setup-slow-apps.sh
# scripts/setup-code-server.sh: code-server, and the Node major it needs (24), from npm
CODE_SERVER = Path(__file__).parents[1] / ".cache" / "code-server"
CODE_SERVER_NODE = CODE_SERVER / "node" / "node_modules" / ".bin" / "node"
CODE_SERVER_ENTRY = CODE_SERVER / "app/node_modules/code-server/out/node/entry.js"
SLOW_TESTS = os.environ.get("RPROXY_SLOW_TESTS") == "1"  # scripts/test.sh --slow: the slower group
HUB_HOST = (
    "hub.example.org"  # a public host name, as a hub's: ``hub_browser`` finds it at 127.0.0.1
)
CHROMIUM = "/usr/bin/chromium"  # Debian's package, installed by scripts/test.sh
FLAGS = [  # headless, and nothing that reaches for the network on its own
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

StartUpstream = Callable[[web.Application], Awaitable[URL]]
StartProxy = Callable[..., Awaitable[URL]]


async def listen(runner: web.AppRunner) -> URL:
    """Set ``runner`` up and serve it on a free port of 127.0.0.1; return its base URL."""
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return URL.build(scheme="http", host=host, port=port)


async def raw_exchange(url: URL, request: bytes) -> bytes:
    """Send raw bytes to ``url``'s host and port; return everything read until the peer closes."""
    assert url.host is not None
    assert url.port is not None
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection(url.host, url.port)
        try:
            writer.write(request)
            await writer.drain()
            return await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()


def status_of(raw: bytes) -> int:
    """The status code of a raw HTTP/1.1 response."""
    return int(raw.split(b" ", 2)[1])


CHILD = [sys.executable, str(Path(__file__).parent / "apps" / "child_app.py")]


@asynccontextmanager
async def running(
    *argv: str, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[URL, Launcher]]:
    """rproxy in this process, wrapping a command, on a free port; yields its URL and launcher."""
    config = parse_config(["--ip", "127.0.0.1", "--port", "0", *argv], env or {})
    runner = make_runner(config)
    try:
        url = await listen(runner)
        launcher = runner.app[SERVICES].main.launcher
        assert launcher is not None
        yield url, launcher
    finally:
        await runner.cleanup()


async def supervisor_of(launcher: Launcher) -> Supervisor:
    supervisor = await launcher.launched()
    assert supervisor is not None
    return supervisor


async def ready(launcher: Launcher) -> Supervisor:
    supervisor = await supervisor_of(launcher)
    await asyncio.wait_for(supervisor.wait_for(ChildState.READY), timeout=60)
    return supervisor


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def terminate(process: asyncio.subprocess.Process) -> None:
    """Stop ``process`` with SIGTERM (SIGKILL if that takes over 20 s) and reap it."""
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=20)
        except TimeoutError:
            process.kill()
    await process.wait()


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Refuse:
    """An authenticator that lets nobody in."""

    async def check(self, request: web.Request) -> web.StreamResponse | None:
        return web.Response(status=403, text="403 Forbidden\n")

    async def identity(self, request: web.Request) -> None:
        return None


ANN = {"kind": "user", "name": "ann", "admin": False, "groups": []}


class Doorkeeper:
    """An authenticator with ``decide`` (auth.DecidesByHead), as the hub's: it lets in the
    requests with ``X-Key: open`` (as the user ann) and refuses the others with 403; a path
    ending in ``/callback`` only ``check`` answers, as the hub's OAuth callback. It records the
    paths each question was asked about: ``decide`` is front.py's, ``check`` aiohttp's."""

    def __init__(self, *, stuck: bool = False) -> None:
        self.stuck = stuck  # decide raises
        self.decided: list[str] = []
        self.checked: list[str] = []

    async def check(self, request: web.Request) -> web.StreamResponse | None:
        self.checked.append(request.rel_url.raw_path)
        if request.rel_url.raw_path.endswith("/callback"):
            return plain_response(200, "The callback, answered by check.")
        if request.headers.get("X-Key") == "open":
            request[HUB_USER] = ANN
            return None
        return plain_response(403, "Not for you.")

    async def identity(self, request: web.Request) -> None:
        return None

    async def decide(self, head: RequestHead) -> Decision:
        self.decided.append(head.raw_path)
        if self.stuck:
            raise RuntimeError("the door is stuck")
        if head.raw_path.endswith("/callback"):
            return None
        if head.headers.get("X-Key") == "open":
            return Admitted(ANN)
        return plain_response(403, "Not for you.")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(folder: Path) -> None:
    """ca.crt/ca.key, and server.* and client.* certificates for 127.0.0.1 signed by it."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.crt", "-days", "1", "-subj", "/CN=test-ca", cwd=folder)  # fmt: skip
    (folder / "ip.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "1", "-extfile", "ip.ext",
                 cwd=folder)  # fmt: skip


def wait_for_server(
    url: URL, process: subprocess.Popen[bytes], log: Path, seconds: float = 60
) -> bytes:
    """The body of ``url``'s first 200, polled until the server ``process`` (its output in
    ``log``) answers; the test fails if the process exits or ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args!r} exited with {process.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(str(url), timeout=2) as response:
                if response.status == 200:
                    return bytes(response.read())
        except OSError:
            pass
        time.sleep(0.2)  # a server that gives no other sign: polled, bounded by the deadline
    pytest.fail(f"{url} did not answer within {seconds:g} s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


_OWN_RELOAD = re.compile(
    rb"<script>(setTimeout\(function\(\)\{location\.reload\(\)\},\d+\))</script>"
)


def without_own_reload(page: bytes, policy: bytes) -> bytes:
    """``page`` (one of rproxy's own 503 pages) without its one fixed reload script, once checked
    that the Content-Security-Policy ``policy`` lets that script alone run, by its hash."""
    [script] = _OWN_RELOAD.findall(page)
    digest = base64.b64encode(hashlib.sha256(script).digest())
    allowed = re.findall(rb"script-src ([^;]*)", policy)
    assert allowed == [b"'sha256-" + digest + b"'"], policy
    return _OWN_RELOAD.sub(b"", page)


def rproxy_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """rproxy's own warnings and errors (not the app's output, which it logs as ``[app] ...``)."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("rproxy")
        and record.levelno >= logging.WARNING
        and not record.getMessage().startswith("[app]")
    ]


def fruit_db(path: Path) -> Path:
    """A small SQLite database for Datasette: table fruit (name, colour), four rows."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE fruit (name TEXT PRIMARY KEY, colour TEXT)")
        db.executemany(
            "INSERT INTO fruit VALUES (?, ?)",
            [("apple", "red"), ("banana", "yellow"), ("cherry", "red"), ("kiwi", "green")],
        )
    return path
