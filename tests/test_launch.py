"""Where and how the command is launched: Unix socket, {origin_host}, --repo, --conda-env, and
a command that is not told where rproxy waits for it."""

from __future__ import annotations

import asyncio
import logging
import stat
import subprocess
from pathlib import Path

import aiohttp
import pytest
from support import CHILD, ready, running, supervisor_of

from rproxy.app import make_runner
from rproxy.cli import parse_config
from rproxy.errors import ConfigError
from rproxy.supervisor import ChildState


async def test_unix_socket_command_lives_in_a_private_directory(
    http: aiohttp.ClientSession,
) -> None:
    argv = ["--unix-socket", "--", *CHILD, "--unix-socket", "{unix_socket}"]
    async with running(*argv) as (url, launcher):
        await ready(launcher)
        directory = launcher.endpoint.socket_dir
        assert directory is not None
        assert launcher.endpoint.port is None
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        socket_path = launcher.endpoint.upstream.unix_socket
        assert socket_path == str(directory / "app.sock")
        async with http.get(url / "argv") as resp:
            assert (await resp.json())[-1] == socket_path
    assert not directory.exists()


async def test_port_placeholder_with_a_unix_socket_is_refused_before_listening() -> None:
    config = parse_config(["--unix-socket", "--", *CHILD, "--port", "{port}"], {})
    runner = make_runner(config)
    with pytest.raises(ConfigError, match=r"\{port\}"):
        await runner.setup()
    await runner.cleanup()


async def test_origin_host_starts_the_command_on_the_first_request(
    http: aiohttp.ClientSession,
) -> None:
    argv = ["--", *CHILD, "--port", "{port}", "--origin", "{origin_host}"]
    async with running(*argv) as (url, launcher):
        assert launcher.lazy
        assert launcher.supervisor is None
        async with http.get(url / "x", headers={"Host": "bad host"}) as resp:
            assert resp.status == 400
        assert launcher.supervisor is None
        async with http.get(url / "x", headers={"Host": "hub.example:8443"}) as resp:
            assert resp.status == 503
        await ready(launcher)
        async with http.get(url / "argv") as resp:
            assert (await resp.json())[-2:] == ["--origin", "hub.example:8443"]


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def origin_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "origin"
    repo.mkdir()
    _git("init", "--quiet", "--initial-branch", "main", cwd=repo)
    (repo / "version.txt").write_text("1")
    _git("add", ".", cwd=repo)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one", cwd=repo)
    return repo


async def test_repo_is_cloned_then_updated_and_is_the_working_directory(
    origin_repo: Path, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    clone = tmp_path / "work" / "clone"
    argv = ["--repo", str(origin_repo), "--repobranch", "main", "--repofolder", str(clone)]
    async with running(*argv, "--", *CHILD, "--port", "{port}") as (url, launcher):
        await ready(launcher)
        async with http.get(url / "cwd") as resp:
            assert await resp.json() == str(clone)
    assert (clone / "version.txt").read_text() == "1"

    (origin_repo / "version.txt").write_text("2")
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "two", cwd=origin_repo)
    async with running(*argv, "--", *CHILD, "--port", "{port}") as (_, launcher):
        await ready(launcher)
    assert (clone / "version.txt").read_text() == "2"


async def test_a_repo_that_cannot_be_cloned_stops_rproxy(tmp_path: Path) -> None:
    argv = ["--repo", str(tmp_path / "missing"), "--repofolder", str(tmp_path / "c")]
    async with running(*argv, "--", *CHILD, "--port", "{port}") as (_, launcher):
        assert await launcher.finished == 1
        assert "git clone" in launcher.failure


async def test_conda_env_without_conda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONDA_EXE", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    config = parse_config(["--conda-env", "py", "--", *CHILD, "--port", "{port}"], {})
    runner = make_runner(config)
    with pytest.raises(ConfigError, match="needs conda"):
        await runner.setup()
    await runner.cleanup()


async def test_conda_env_runs_the_command_through_conda_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http: aiohttp.ClientSession
) -> None:
    # Conda cannot be installed on this machine: this stand-in for `conda run` records its
    # arguments and runs the command, which is the whole of what rproxy asks of conda.
    fake = tmp_path / "conda"
    record = tmp_path / "conda-args"
    fake.write_text(f'#!/bin/sh\necho "$@" > {record}\nshift 4\nexec "$@"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("CONDA_EXE", str(fake))
    async with running("--conda-env", "py311", "--", *CHILD, "--port", "{port}") as (_, launcher):
        await ready(launcher)
    assert record.read_text().startswith("run --no-capture-output --name py311 ")


@pytest.mark.parametrize(
    ("argv", "missing"),
    [
        # the app listens, on a port of its own choosing
        pytest.param(["--", *CHILD, "--port", "0"], "{port}", id="no-port"),
        pytest.param(["--unix-socket", "--", *CHILD, "--port", "0"], "{unix_socket}",
                     id="no-socket"),
        pytest.param(["--", *CHILD, "--port", "{port}"], None, id="port"),
        pytest.param(["--unix-socket", "--", *CHILD, "--unix-socket", "{unix_socket}"], None,
                     id="socket"),
        pytest.param(["--destport", "8123", "--", *CHILD, "--port", "0"], None,
                     id="destport-its-own"),
    ],
)  # fmt: skip
async def test_a_command_not_told_where_to_listen_is_named_at_start(
    argv: list[str], missing: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    async with running("--ready-timeout", "0.3", *argv) as (_, launcher):
        supervisor = await supervisor_of(launcher)
        said = [r for r in caplog.records if "command has no" in r.getMessage()]
        if missing is None:
            assert said == []
            return
        [warning] = said
        assert warning.levelno == logging.WARNING
        where = launcher.endpoint.upstream.unix_socket or str(launcher.endpoint.upstream.url)
        assert f"the app's command has no {missing}: rproxy waits for it at {where}" in (
            warning.getMessage()
        )
        # and when it is not ready in time, the error says where it was asked
        await asyncio.wait_for(supervisor.wait_for(ChildState.FAILED), timeout=20)
        assert f"not ready after 0.3 s at {where}" in supervisor.problem
