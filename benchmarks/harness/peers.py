"""Installs the tools and peers the benchmark needs, idempotently, and reports their versions.

System tools (wrk, nginx) come from Debian's packages, installed with apt-get only when missing
and only as root. configurable-http-proxy goes into ``benchmarks/.peers/node`` (npm) and
jhsingle-native-proxy into its own venv ``benchmarks/.peers/jhsingle-venv`` (pip); both are
git-ignored. A peer that cannot be installed raises ``Unavailable`` with a one-line reason; this
module never decides what to skip.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
PEERS = BENCH / ".peers"
CHP_BIN = PEERS / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
JHSINGLE_VENV = PEERS / "jhsingle-venv"
JHSINGLE_BIN = JHSINGLE_VENV / "bin" / "jhsingle-native-proxy"
_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
_APT_PACKAGES = {"wrk": "wrk", "nginx": "nginx-light"}


class Unavailable(RuntimeError):
    """A tool or peer that is not installed and could not be installed."""


def which(name: str) -> str | None:
    return shutil.which(name, path=_SBIN_PATH)


def _run(argv: list[str], timeout: float, cwd: Path | None = None) -> str:
    """Run an installer step; raise Unavailable with the last lines of its output if it fails."""
    try:
        done = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise Unavailable(f"{argv[0]}: {error}") from error
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise Unavailable(f"{' '.join(argv[:3])} failed ({done.returncode}): {tail}")
    return done.stdout


def ensure_system_tools() -> list[str]:
    """Install wrk and nginx when missing (as root, via apt-get); return notes for the log."""
    missing = [tool for tool in _APT_PACKAGES if which(tool) is None]
    if not missing:
        return []
    packages = [_APT_PACKAGES[tool] for tool in missing]
    if os.geteuid() != 0:
        return [f"not root: skipping apt-get install {' '.join(packages)}"]
    print(f"installing {' '.join(packages)} with apt-get ...", flush=True)
    try:
        _run(["apt-get", "update"], timeout=600)
        _run(["apt-get", "install", "-y", "--no-install-recommends", *packages], timeout=900)
    except Unavailable as error:
        return [f"apt-get could not install {' '.join(packages)}: {error}"]
    return [f"installed {' '.join(packages)}"]


def ensure_chp() -> Path:
    """configurable-http-proxy from npm in benchmarks/.peers/node."""
    if CHP_BIN.exists():
        return CHP_BIN
    if which("node") is None or which("npm") is None:
        raise Unavailable("node and npm are needed for configurable-http-proxy")
    print("installing configurable-http-proxy with npm ...", flush=True)
    (PEERS / "node").mkdir(parents=True, exist_ok=True)
    _run(
        ["npm", "install", "--prefix", str(PEERS / "node"), "--no-audit", "--no-fund",
         "configurable-http-proxy"],
        timeout=600,
    )  # fmt: skip
    if not CHP_BIN.exists():
        raise Unavailable(f"npm install did not create {CHP_BIN}")
    return CHP_BIN


def ensure_jhsingle() -> Path:
    """jhsingle-native-proxy (with jupyterhub and tornado) in its own venv."""
    if JHSINGLE_BIN.exists():
        return JHSINGLE_BIN
    print("installing jhsingle-native-proxy into its own venv ...", flush=True)
    if not (JHSINGLE_VENV / "bin" / "python").exists():
        _run([sys.executable, "-m", "venv", str(JHSINGLE_VENV)], timeout=300)
    _run(
        [str(JHSINGLE_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "jhsingle-native-proxy"],
        timeout=900,
    )  # fmt: skip
    if not JHSINGLE_BIN.exists():
        raise Unavailable(f"pip install did not create {JHSINGLE_BIN}")
    return JHSINGLE_BIN


def _first_line(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].strip() if lines else None


def _package_version(python: Path | str, name: str) -> str | None:
    code = f"import importlib.metadata as m; print(m.version({name!r}))"
    return _first_line([str(python), "-c", code]) if Path(python).exists() else None


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info() -> dict[str, object]:
    """What the numbers were measured on, for the JSON and the header of the report."""
    chp_package = PEERS / "node" / "node_modules" / "configurable-http-proxy" / "package.json"
    nginx = which("nginx")
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": _package_version(sys.executable, "aiohttp"),
        "uvloop": _package_version(sys.executable, "uvloop"),
        "rproxy": _package_version(sys.executable, "rproxy"),
        "nginx": _first_line([nginx, "-v"]) if nginx else None,
        "wrk": _first_line(["wrk", "-v"]) if which("wrk") else None,
        "node": _first_line(["node", "--version"]) if which("node") else None,
        "configurable_http_proxy": (
            json.loads(chp_package.read_text())["version"] if chp_package.exists() else None
        ),
        "jhsingle_native_proxy": _package_version(
            JHSINGLE_VENV / "bin" / "python", "jhsingle-native-proxy"
        ),
    }
