"""The ``rproxy`` command as a user runs it: a real process, real sockets, real signals."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from support import CHILD, StartUpstream, alive, terminate
from yarl import URL

_LISTENING = re.compile(rb"rproxy listening on (http://127\.0\.0\.1:\d+)(\S*) -> (\S+)")


@asynccontextmanager
async def _rproxy(
    *args: str, env: Mapping[str, str] | None = None
) -> AsyncIterator[tuple[URL, str, asyncio.subprocess.Process]]:
    """Run ``python -m rproxy ARGS`` on a free port; yield its URL, prefix and process."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rproxy",
        "--ip",
        "127.0.0.1",
        "--port",
        "0",
        *args,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    assert process.stderr is not None
    try:
        seen: list[bytes] = []
        async with asyncio.timeout(20):
            while not (match := _LISTENING.search(line := await process.stderr.readline())):
                assert line, f"rproxy did not start: {b''.join(seen)!r}"
                seen.append(line)
        yield URL(match.group(1).decode()), match.group(2).decode(), process
    finally:
        await terminate(process)


async def _hello_upstream(start_upstream: StartUpstream) -> URL:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {request.raw_path}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    return await start_upstream(app)


async def test_command_proxies_and_stops_cleanly_on_sigterm(
    start_upstream: StartUpstream,
) -> None:
    upstream = await _hello_upstream(start_upstream)
    async with (
        _rproxy("--destport", str(upstream.port)) as (url, prefix, process),
        aiohttp.ClientSession() as http,
    ):
        assert prefix == "/"
        async with http.get(url / "a") as resp:
            assert await resp.text() == "hello /a"
        process.send_signal(signal.SIGTERM)
        assert process.stderr is not None
        rest = await asyncio.wait_for(process.stderr.read(), timeout=20)
        assert await process.wait() == 0
        assert b"shutting down" in rest


async def test_command_takes_the_prefix_from_jupyterhub_environment(
    start_upstream: StartUpstream,
) -> None:
    upstream = await _hello_upstream(start_upstream)
    env = {"JUPYTERHUB_SERVICE_PREFIX": "/user/alice/"}
    async with (
        _rproxy("--upstream", str(upstream), env=env) as (url, prefix, _),
        aiohttp.ClientSession() as http,
    ):
        assert prefix == "/user/alice/"
        async with http.get(url / "user/alice/b") as resp:
            assert await resp.text() == "hello /b"


async def test_command_flag_prefix_wins_over_environment(start_upstream: StartUpstream) -> None:
    upstream = await _hello_upstream(start_upstream)
    env = {"JUPYTERHUB_SERVICE_PREFIX": "/user/alice/"}
    async with _rproxy("--upstream", str(upstream), "--prefix", "/app/", env=env) as (_, p, _):
        assert p == "/app/"


async def test_command_refuses_a_bad_prefix_with_a_clear_error() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rproxy",
        "--destport",
        "9",
        "--prefix",
        '/a"><script>/',
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 2
    assert b"rproxy: error: URL prefix" in err
    assert b"is not allowed" in err


async def _lines_until(stream: asyncio.StreamReader, marker: bytes) -> list[bytes]:
    lines: list[bytes] = []
    async with asyncio.timeout(20):
        while marker not in (line := await stream.readline()):
            assert line, f"the process ended before printing {marker!r}: {lines!r}"
            lines.append(line)
    return [*lines, line]


async def test_sigterm_stops_rproxy_and_leaves_no_process_behind() -> None:
    command = ["--", *CHILD, "--port", "{port}", "--grandchild"]
    async with _rproxy(*command) as (_, _, process):
        assert process.stderr is not None
        lines = await _lines_until(process.stderr, b"is ready")
        child = int(re.search(rb"started app \(pid (\d+)\)", b"".join(lines)).group(1))  # type: ignore[union-attr]
        grandchild = int(re.search(rb"grandchild (\d+)", b"".join(lines)).group(1))  # type: ignore[union-attr]
        assert alive(child)
        assert alive(grandchild)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0
    assert not alive(child)
    assert not alive(grandchild)


async def test_sighup_is_forwarded_to_the_command() -> None:
    async with _rproxy("--", *CHILD, "--port", "{port}") as (_, _, process):
        assert process.stderr is not None
        await _lines_until(process.stderr, b"is ready")
        process.send_signal(signal.SIGHUP)
        await _lines_until(process.stderr, b"got SIGHUP")


@pytest.mark.parametrize(
    ("command", "status", "message"),
    [
        pytest.param([*CHILD, "--exit", "3"], 3, b"exited with status 3; giving up", id="exit-3"),
        pytest.param(["no-such-command-rproxy"], 127, b"cannot run", id="not-found"),
    ],
)
async def test_without_restart_the_exit_status_says_what_happened(
    command: list[str], status: int, message: bytes
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rproxy",
        "--port",
        "0",
        "--no-restart",
        "--",
        *command,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == status
    assert message in err


def _listeners(port: int) -> int:
    """How many sockets listen on 127.0.0.1 or 0.0.0.0 at ``port`` (from /proc/net/tcp)."""
    fields = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return sum(1 for f in fields if f[1].endswith(f":{port:04X}") and f[3] == "0A")


async def test_workers_share_the_port_once_the_command_is_ready() -> None:
    async with _rproxy("--workers", "2", "--", *CHILD, "--port", "{port}") as (url, _, process):
        assert process.stderr is not None
        lines = await _lines_until(process.stderr, b"more worker(s)")
        assert any(b"is ready" in line for line in lines), "workers start after readiness"
        await _lines_until(process.stderr, b"rproxy listening on")  # the worker's own line
        assert url.port is not None
        assert _listeners(url.port) == 2
        worker = int(re.search(rb"pids (\d+)", lines[-1]).group(1))  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as http:
            for _ in range(20):
                async with http.get(url / "pid", headers={"Connection": "close"}) as resp:
                    assert resp.status == 200
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0
    assert not alive(worker)


async def test_workers_proxy_to_the_services_of_the_first_process(tmp_path: Path) -> None:
    config = tmp_path / "rproxy.toml"
    child = ", ".join(f'"{part}"' for part in [*CHILD, "--port", "{port}"])
    config.write_text(f'[[services]]\nname = "svc"\npath = "/svc/"\ncommand = [{child}]\n')
    args = ("--workers", "2", "--config", str(config), "--", *CHILD, "--port", "{port}")
    async with _rproxy(*args) as (url, _, process):
        assert process.stderr is not None
        lines = await _lines_until(process.stderr, b"more worker(s)")
        assert sum(b"is ready" in line for line in lines) == 2, "workers wait for both children"
        await _lines_until(process.stderr, b"rproxy listening on")  # the worker's own line
        assert url.port is not None
        assert _listeners(url.port) == 2
        pids = set()
        async with aiohttp.ClientSession() as http:
            for _ in range(20):  # spread over both processes by the kernel
                async with http.get(url / "svc/pid", headers={"Connection": "close"}) as resp:
                    assert resp.status == 200
                    pids.add(await resp.json())
        assert len(pids) == 1, "one child for the service, run by the first process only"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0


async def test_a_killed_rproxy_takes_its_command_down() -> None:
    async with _rproxy("--", *CHILD, "--port", "{port}") as (_, _, process):
        assert process.stderr is not None
        lines = await _lines_until(process.stderr, b"is ready")
        child = int(re.search(rb"started app \(pid (\d+)\)", b"".join(lines)).group(1))  # type: ignore[union-attr]
        exited = asyncio.Event()
        pidfd = os.pidfd_open(child)
        asyncio.get_running_loop().add_reader(pidfd, exited.set)
        try:
            process.kill()
            await asyncio.wait_for(exited.wait(), timeout=20)
        finally:
            asyncio.get_running_loop().remove_reader(pidfd)
            os.close(pidfd)
    assert not alive(child)
