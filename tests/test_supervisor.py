"""The wrapped command as a real child process: readiness, pages, restarts, output, stopping."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import aiohttp
import pytest
from support import CHILD, alive, ready, running, supervisor_of, without_own_reload

from rproxy.supervisor import ChildState


async def test_command_starts_on_its_port_and_is_proxied(http: aiohttp.ClientSession) -> None:
    async with running("--prefix", "/user/dan/", "--", *CHILD, "--port", "{port}") as (
        url,
        launcher,
    ):
        supervisor = await ready(launcher)
        async with http.get(url / "user/dan/argv") as resp:
            argv = await resp.json()
        assert argv[1:] == ["--port", str(launcher.endpoint.port)]
        async with http.get(url / "user/dan/pid") as resp:
            assert await resp.json() == supervisor.pid


async def test_requests_get_a_refreshing_503_until_the_command_isready(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    go = tmp_path / "go"
    async with running("--", *CHILD, "--port", "{port}", "--wait-for", str(go)) as (url, launcher):
        supervisor = await supervisor_of(launcher)
        async with http.get(url / "x") as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "2"
            page = await resp.text()
        assert '<meta http-equiv="refresh" content="2">' in page
        assert supervisor.state is ChildState.STARTING
        go.touch()
        await ready(launcher)
        async with http.get(url / "x") as resp:
            assert resp.status == 200


async def test_a_command_never_ready_gets_an_escaped_error_page(
    tmp_path: Path, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    never = tmp_path / "never"
    argv = [*CHILD, "--say", "<script>alert(1)</script>", "--wait-for", str(never)]
    async with running("--ready-timeout", "0.3", "--", *argv) as (url, launcher):
        supervisor = await supervisor_of(launcher)
        await asyncio.wait_for(supervisor.wait_for(ChildState.FAILED), timeout=20)
        async with http.get(url / "x") as resp:
            assert resp.status == 503
            policy = resp.headers["Content-Security-Policy"]
            page = without_own_reload(await resp.read(), policy.encode()).decode()
    assert "not ready after 0.3 s" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in page  # the one script is rproxy's reload, allowed by its hash
    assert "child_app.py" in page
    assert any("not ready after 0.3 s" in r.getMessage() for r in caplog.records)


async def test_a_crashed_command_is_restarted(http: aiohttp.ClientSession) -> None:
    async with running("--", *CHILD, "--port", "{port}") as (url, launcher):
        supervisor = await ready(launcher)
        first_pid = supervisor.pid
        async with http.get(url / "crash") as resp:
            assert resp.status == 200
        await asyncio.wait_for(supervisor.wait_for(ChildState.RESTARTING), timeout=20)
        await asyncio.wait_for(supervisor.wait_for(ChildState.READY), timeout=20)
        assert supervisor.restarts == 1
        assert first_pid is not None
        assert not alive(first_pid)
        async with http.get(url / "pid") as resp:
            assert await resp.json() == supervisor.pid != first_pid


async def test_without_restart_rproxy_gives_up_with_the_command_status() -> None:
    async with running("--no-restart", "--", *CHILD, "--exit", "3") as (_, launcher):
        assert await asyncio.wait_for(launcher.finished, timeout=20) == 3
        supervisor = await supervisor_of(launcher)
        assert supervisor.state is ChildState.FAILED
        assert supervisor.restarts == 0


async def test_a_crash_loop_backs_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "rproxy.supervisor")
    async with running("--restart-backoff-max", "1", "--", *CHILD, "--exit", "4") as (_, launcher):
        supervisor = await supervisor_of(launcher)
        while supervisor.restarts < 3:
            await asyncio.wait_for(supervisor.wait_for(ChildState.STARTING), timeout=20)
            await asyncio.wait_for(supervisor.wait_for(ChildState.RESTARTING), timeout=20)
    pauses = [r.args[3] for r in caplog.records if "restart" in r.msg and r.args]
    assert pauses[:3] == [0.5, 1.0, 1.0]


async def test_a_missing_command_gives_up_at_once(http: aiohttp.ClientSession) -> None:
    async with running("--", "no-such-command-rproxy", "{port}") as (url, launcher):
        assert await asyncio.wait_for(launcher.finished, timeout=20) == 127
        async with http.get(url / "x") as resp:
            assert resp.status == 503
            assert "cannot run &#x27;no-such-command-rproxy&#x27;" in await resp.text()


def _children(pid: int) -> list[int]:
    """The pids of the processes ``pid`` started, as Linux lists them."""
    return [int(n) for n in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def test_stopping_ends_the_whole_process_group(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "rproxy.supervisor")
    async with running("--", *CHILD, "--port", "{port}", "--grandchild") as (_, launcher):
        supervisor = await ready(launcher)
        child = supervisor.pid
        assert child is not None
        # started before the child listens; its output line may still be in the pipe
        (grandchild,) = _children(child)
    assert not alive(child)
    assert not alive(grandchild)


async def test_a_command_ignoring_sigterm_is_killed_after_the_grace_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    argv = ["--grace-period", "0.3", "--", *CHILD, "--port", "{port}", "--ignore-sigterm"]
    async with running(*argv) as (_, launcher):
        supervisor = await ready(launcher)
        child = supervisor.pid
    assert child is not None
    assert not alive(child)
    assert any("ignored SIGTERM" in r.getMessage() for r in caplog.records)


async def test_output_floods_never_block_the_command(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "rproxy.supervisor")
    async with running("--", *CHILD, "--port", "{port}", "--flood", "4096") as (_, launcher):
        supervisor = await ready(launcher)
        tail = supervisor.output_tail()
    assert "flood done" in tail
    cut = [r.getMessage() for r in caplog.records if "[line cut]" in r.getMessage()]
    assert len(cut) == 1
    assert len(cut[0]) < 5000
    floods = [r for r in caplog.records if r.getMessage().endswith("x" * 1023)]
    assert len(floods) == 4096


async def test_the_apps_stderr_is_logged_at_the_level_each_line_says(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Apps log to stderr: Jupyter's "[I ...]" lines are INFO, its "[W ...]" ones WARNING."""
    caplog.set_level(logging.INFO, "rproxy.supervisor")
    script = (
        "import sys\n"
        "print('[I ServerApp] Serving notebooks', file=sys.stderr)\n"
        "print('\\x1b[33m[W ServerApp] All authentication is disabled\\x1b[0m', file=sys.stderr)\n"
        "print('ready', flush=True)\n"
    )
    async with running("--no-restart", "--", sys.executable, "-c", script) as (_, launcher):
        await asyncio.wait_for(launcher.finished, timeout=20)  # its output all read by then
    lines = {
        r.getMessage(): r.levelno for r in caplog.records if r.getMessage().startswith("[app]")
    }
    assert lines == {
        "[app] [I ServerApp] Serving notebooks": logging.INFO,
        "[app] [W ServerApp] All authentication is disabled": logging.WARNING,
        "[app] ready": logging.INFO,
    }
