"""The container entrypoint, run directly (no Docker engine here): mode, privilege drop, exec.

The root tests need root (as CI runs); each uses its own home root under a temporary folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from support import CHILD, Refuse, StartProxy, StartUpstream
from yarl import URL

from rproxy.entrypoint import healthcheck, mode

ROOT = Path(__file__).resolve().parent.parent

ENTRYPOINT = [sys.executable, "-m", "rproxy.entrypoint"]
# The dropped user runs Debian's python: the test venv's lives under /root, which only root reads
# (in the image, Python and rproxy are installed for everyone).
SYSTEM_PYTHON = "/usr/bin/python3"
PRINT_ME = [SYSTEM_PYTHON, "-c",
            "import json, os, sys; print(json.dumps([os.getuid(), os.getgid(), os.getgroups(), "
            "os.getcwd(), os.environ['HOME'], sys.argv[1:]]))"]  # fmt: skip
TRICKY = ["a b", "it's", '"quoted"', "$HOME", "*", "--", ""]
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop needs root")


@pytest.fixture
def home_root() -> Iterator[Path]:
    """A folder the dropped user can reach (pytest's own tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="rproxy-homes-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({}, "standalone", id="nothing"),
        pytest.param({"JUPYTERHUB_API_TOKEN": "t"}, "standalone", id="token-alone"),
        pytest.param({"JUPYTERHUB_API_TOKEN": "t", "JUPYTERHUB_USER": "a"}, "jupyterhub",
                     id="token-user"),
        pytest.param({"JUPYTERHUB_API_TOKEN": "t", "JUPYTERHUB_SERVICE_PREFIX": "/user/a/"},
                     "jupyterhub", id="token-prefix"),
    ],
)  # fmt: skip
def test_mode_detection(environ: dict[str, str], expected: str) -> None:
    name, why = mode(environ)
    assert name == expected
    assert why


def _run(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ENTRYPOINT, *argv], env={**os.environ, **env}, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


@root_only
def test_as_root_the_command_runs_as_uid_1000_gid_100_with_arguments_intact(
    home_root: Path,
) -> None:
    tmp_path = home_root
    done = _run({"NB_USER": "tester", "RPROXY_HOME_ROOT": str(tmp_path)}, *PRINT_ME, *TRICKY)
    assert done.returncode == 0, done.stderr
    uid, gid, groups, cwd, home, args = json.loads(done.stdout)
    assert (uid, gid, groups) == (1000, 100, [100])
    assert home == cwd == str(tmp_path / "tester")
    assert args == TRICKY
    for folder in (tmp_path / "tester", tmp_path / "tester" / "work"):
        assert (folder.stat().st_uid, folder.stat().st_gid) == (1000, 100)
    assert "standalone mode" in done.stderr


@root_only
def test_chown_home_gives_the_whole_home_to_the_user(home_root: Path) -> None:
    tmp_path = home_root
    old = tmp_path / "tester" / "old" / "file"
    old.parent.mkdir(parents=True)
    old.write_text("x")
    env = {"NB_USER": "tester", "NB_UID": "1234", "RPROXY_HOME_ROOT": str(tmp_path),
           "CHOWN_HOME": "yes"}  # fmt: skip
    done = _run(env, "true")
    assert done.returncode == 0, done.stderr
    assert (old.stat().st_uid, old.parent.stat().st_uid) == (1234, 1234)


@root_only
def test_as_another_user_it_runs_as_is(home_root: Path) -> None:
    # The entrypoint is stdlib only: a copy where the user can read it stands in for the
    # installed one (this checkout may sit in a folder only root can enter).
    script = home_root / "entrypoint.py"
    shutil.copyfile(ROOT / "rproxy" / "entrypoint.py", script)
    script.chmod(0o644)
    done = subprocess.run(
        ["setpriv", "--reuid", "1000", "--regid", "100", "--clear-groups", SYSTEM_PYTHON,
         str(script), *PRINT_ME, "x y"],
        env={**os.environ, "HOME": str(home_root)}, cwd=home_root,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    uid, gid, _, _, home, args = json.loads(done.stdout)
    assert (uid, gid, home, args) == (1000, 100, str(home_root), ["x y"])
    assert "as started" in done.stderr


@root_only
def test_sigterm_to_the_entrypoint_stops_rproxy_and_its_app(home_root: Path) -> None:
    tmp_path = home_root
    argv = [*ENTRYPOINT, str(Path(sys.executable).with_name("rproxy")), "--port", "0",
            "--ip", "127.0.0.1", "--", *CHILD, "--port", "{port}"]  # fmt: skip
    # Root is kept here (RPROXY_ALLOW_ROOT): rproxy runs from the test venv, which only root can
    # read; what is tested is exec and signals, the privilege drop is tested above.
    env = {**os.environ, "RPROXY_ALLOW_ROOT": "yes", "RPROXY_HOME_ROOT": str(tmp_path)}
    with subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True) as process:
        assert process.stderr is not None
        child_pid = None
        for line in process.stderr:  # rproxy's log: the app's pid once it started
            if "started app (pid " in line:
                child_pid = int(line.split("started app (pid ", 1)[1].split(")", 1)[0])
            if "is ready" in line:
                break
        assert child_pid is not None
        process.send_signal(signal.SIGTERM)  # the entrypoint's pid is rproxy's after exec
        assert process.wait(timeout=30) == 0
    assert not Path(f"/proc/{child_pid}").exists() or _zombie(child_pid)


def _zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


async def test_the_healthcheck_follows_rproxys_status(
    start_upstream: StartUpstream, start_proxy: StartProxy
) -> None:
    up = await start_proxy(await start_upstream(web.Application()))
    down = await start_proxy("http://127.0.0.1:9")  # nothing listens there: api/status is 503
    refusing = await start_proxy(await start_upstream(web.Application()), authenticator=Refuse())

    def check(url: URL) -> int:
        return healthcheck({"JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{url.port}/"})

    assert await asyncio.to_thread(check, up) == 0
    assert await asyncio.to_thread(check, down) == 1
    assert await asyncio.to_thread(check, refusing) == 0  # a login wall: rproxy is serving
    assert await asyncio.to_thread(check, URL("http://127.0.0.1:9")) == 1  # nothing there


def test_the_dockerfile_is_ready_to_build() -> None:
    # No Docker engine here: the Dockerfile is read, not built.
    lines = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    instructions = [line.split(None, 1) for line in lines if line.strip() and line[0] != "#"]
    by_name: dict[str, list[str]] = {}
    for name, rest in instructions:
        by_name.setdefault(name, []).append(rest)
    assert by_name["FROM"][0].startswith("python:3.11")
    assert by_name["EXPOSE"] == ["8080 8081"]
    assert json.loads(by_name["ENTRYPOINT"][0]) == ["rproxy-entrypoint"]
    assert json.loads(by_name["CMD"][0])[0] == "rproxy"
    assert json.loads(by_name["HEALTHCHECK"][0].split("CMD ", 1)[1]) == ["rproxy-healthcheck"]
    assert any("--uid 1000 --gid 100" in run for run in by_name["RUN"])
    for copy in by_name["COPY"]:
        *sources, _ = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), source
    scripts = (ROOT / "pyproject.toml").read_text()
    assert 'rproxy-entrypoint = "rproxy.entrypoint:main"' in scripts
    assert 'rproxy-healthcheck = "rproxy.entrypoint:healthcheck_main"' in scripts
