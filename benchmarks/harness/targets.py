"""The upstreams and the proxies under test, started as separate, pinned processes.

Upstreams (on the load CPU): nginx serving generated static files and ``ws_echo.py``. Targets: each
``start_*`` function returns a ``Target`` with an HTTP endpoint in front of nginx and a WebSocket
endpoint in front of the echo server (``None`` where the target cannot do WebSockets). A proxy that
takes one upstream runs twice (one instance per upstream); nginx-proxy routes both from one
instance. Only jhsingle-native-proxy cannot point at a running upstream (it test-binds the
destination port on all addresses before proxying and fails with a 500 when anything listens
there), so it wraps its own upstreams: the same nginx config and files, and the same echo server,
pinned to the load CPU; its CPU time excludes those children.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.peers import CHP_BIN, JHSINGLE_BIN, ensure_chp, ensure_jhsingle, which
from harness.procs import Proc, Processes, StartError, wait_http

BENCH = Path(__file__).resolve().parent.parent
FILES = {"1k.bin": 1024, "1m.bin": 1024 * 1024}
HTML_SIZE, HTML_LINKS = 100 * 1024, 1600


@dataclass(frozen=True)
class Endpoint:
    """Where the load goes, and whose CPU time a measurement reads (None: nobody's)."""

    url: str
    pid: int | None
    descendants: bool = True


@dataclass
class Target:
    """A started target: its endpoints, lines worth printing, and the pids whose RSS to report."""

    name: str
    http: Endpoint
    ws: Endpoint | None
    notes: list[str] = field(default_factory=list)
    rss_pids: list[int] = field(default_factory=list)


@dataclass
class Bench:
    """What every start function needs: where to put files and logs, the CPUs, the upstreams."""

    tmp: Path
    proxy_cpu: int | None
    load_cpu: int | None
    http_port: int = 0
    ws_port: int = 0
    _ports: set[int] = field(default_factory=set)

    def free_port(self) -> int:
        while True:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in self._ports:
                self._ports.add(port)
                return port

    def processes(self, name: str) -> Processes:
        logdir = self.tmp / "logs" / name
        logdir.mkdir(parents=True, exist_ok=True)
        return Processes(logdir)


def _html_page() -> bytes:
    head = "<!doctype html>\n<html><head><title>links</title></head><body>\n<ul>\n"
    links = [
        f'<li><a href="/docs/s{i % 40:02d}/page-{i:04d}.html">page {i:04d}</a></li>\n'
        for i in range(HTML_LINKS)
    ]
    body = head + "".join(links)
    filler = HTML_SIZE - len(body) - len("</ul>\n<p></p>\n</body></html>\n")
    text = ("Some ordinary paragraph text. " * (filler // 30 + 1))[: max(0, filler)]
    return (body + "</ul>\n<p>" + text + "</p>\n</body></html>\n").encode()


def write_files(docroot: Path) -> None:
    docroot.mkdir(parents=True, exist_ok=True)
    pattern = bytes(range(256))
    for name, size in FILES.items():
        (docroot / name).write_bytes((pattern * (size // 256 + 1))[:size])
    (docroot / "page.html").write_bytes(_html_page())
    for path in (docroot, *docroot.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)


def render_nginx(template: str, state: Path, values: dict[str, object]) -> Path:
    state.mkdir(parents=True, exist_ok=True)
    text = (BENCH / template).read_text()
    values = {"USER": "user root;" if os.geteuid() == 0 else "", "STATE": state, **values}
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    config = state / "nginx.conf"
    config.write_text(text)
    return config


def _nginx_argv(config: Path) -> list[str]:
    nginx = which("nginx")
    if nginx is None:
        raise StartError("nginx is not installed")
    return [nginx, "-c", str(config)]


def _echo_argv(port: int) -> list[str]:
    return [sys.executable, str(BENCH / "ws_echo.py"), "--port", str(port)]


def _check_http(url: str, proc: Proc, timeout: float = 20.0) -> None:
    """Wait for the endpoint and check that it really serves the upstream's 1 KiB file."""
    status, body = wait_http(f"{url}/1k.bin", proc, timeout)
    if status != 200 or len(body) != FILES["1k.bin"]:
        raise StartError(f"{url}/1k.bin gave {status} with {len(body)} bytes, not the file")


def _check_ws(url: str, proc: Proc, timeout: float = 20.0) -> None:
    """Wait for the endpoint: any answer to GET / from the echo server."""
    wait_http(f"{url}/", proc, timeout)


def start_upstreams(bench: Bench, procs: Processes) -> None:
    write_files(bench.tmp / "docroot")
    bench.http_port, bench.ws_port = bench.free_port(), bench.free_port()
    config = render_nginx(
        "nginx-upstream.conf.in",
        bench.tmp / "nginx-upstream",
        {"PORT": bench.http_port, "DOCROOT": bench.tmp / "docroot"},
    )
    nginx = procs.start("nginx", _nginx_argv(config), cpu=bench.load_cpu)
    echo = procs.start("ws-echo", _echo_argv(bench.ws_port), cpu=bench.load_cpu)
    _check_http(f"http://127.0.0.1:{bench.http_port}", nginx)
    _check_ws(f"http://127.0.0.1:{bench.ws_port}", echo)


def start_direct(bench: Bench, procs: Processes) -> Target:
    return Target(
        "direct",
        http=Endpoint(f"http://127.0.0.1:{bench.http_port}", None),
        ws=Endpoint(f"http://127.0.0.1:{bench.ws_port}", None),
    )


def _two_instances(
    bench: Bench,
    procs: Processes,
    name: str,
    argv: Callable[[int, int], list[str]],
    *,
    ws: bool = True,
) -> Target:
    """A proxy that takes one upstream: one instance in front of nginx, one of the echo server."""
    http_port = bench.free_port()
    http = procs.start(f"{name}-http", argv(bench.http_port, http_port), cpu=bench.proxy_cpu)
    target = Target(name, Endpoint(f"http://127.0.0.1:{http_port}", http.pid), None)
    target.rss_pids.append(http.pid)
    if ws:
        ws_port = bench.free_port()
        proc = procs.start(f"{name}-ws", argv(bench.ws_port, ws_port), cpu=bench.proxy_cpu)
        target.ws = Endpoint(f"http://127.0.0.1:{ws_port}", proc.pid)
        target.rss_pids.append(proc.pid)
        _check_ws(target.ws.url, proc)
    _check_http(target.http.url, http)
    return target


def start_rproxy(bench: Bench, procs: Processes) -> Target:
    rproxy = Path(sys.executable).with_name("rproxy")
    if not rproxy.exists():
        raise StartError(f"{rproxy} not found: install rproxy into this venv first")
    return _two_instances(
        bench,
        procs,
        "rproxy",
        lambda up, port: [
            str(rproxy), "--upstream", f"http://127.0.0.1:{up}", "--ip", "127.0.0.1",
            "--port", str(port), "--log-level", "WARNING",
        ],
    )  # fmt: skip


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def start_minimal(bench: Bench, procs: Processes) -> Target:
    uvloop = ["--uvloop"] if _has_uvloop() else []
    target = _two_instances(
        bench,
        procs,
        "minimal",
        lambda up, port: [
            sys.executable, str(BENCH / "minimal_proxy.py"), "--upstream",
            f"http://127.0.0.1:{up}", "--ip", "127.0.0.1", "--port", str(port), *uvloop,
        ],
        ws=False,
    )  # fmt: skip
    target.notes.append(f"minimal: {'on uvloop' if uvloop else 'on asyncio (no uvloop)'}")
    target.notes.append(
        "minimal: WebSocket scenarios skipped (minimal_proxy.py proxies no upgrades)"
    )
    return target


def start_nginx_proxy(bench: Bench, procs: Processes) -> Target:
    port = bench.free_port()
    config = render_nginx(
        "nginx-proxy.conf.in",
        bench.tmp / "nginx-proxy",
        {"PORT": port, "HTTP_UPSTREAM": bench.http_port, "WS_UPSTREAM": bench.ws_port},
    )
    proc = procs.start("nginx-proxy", _nginx_argv(config), cpu=bench.proxy_cpu)
    url = f"http://127.0.0.1:{port}"
    target = Target("nginx-proxy", Endpoint(url, proc.pid), Endpoint(url, proc.pid))
    _check_http(url, proc)
    return target


def start_chp(bench: Bench, procs: Processes) -> Target:
    ensure_chp()
    return _two_instances(
        bench,
        procs,
        "chp",
        lambda up, port: [
            str(CHP_BIN), "--ip", "127.0.0.1", "--port", str(port), "--api-ip", "127.0.0.1",
            "--api-port", str(bench.free_port()), "--default-target", f"http://127.0.0.1:{up}",
            "--log-level", "error",
        ],
    )  # fmt: skip


def start_jhsingle(bench: Bench, procs: Processes) -> Target:
    ensure_jhsingle()
    load_cpu = str(bench.load_cpu if bench.load_cpu is not None else 0)

    def start(kind: str, wrapped: list[str], dest: int) -> tuple[Proc, Endpoint]:
        port = bench.free_port()
        argv = [
            str(JHSINGLE_BIN), "--authtype=none", "--port", str(port), "--destport", str(dest),
            "--ip", "127.0.0.1", "--last-activity-interval", "0", "--",
            "taskset", "-c", load_cpu, *wrapped,
        ]  # fmt: skip
        proc = procs.start(f"jhsingle-{kind}", argv, cpu=bench.proxy_cpu)
        return proc, Endpoint(f"http://127.0.0.1:{port}", proc.pid, descendants=False)

    nginx_port, echo_port = bench.free_port(), bench.free_port()
    config = render_nginx(
        "nginx-upstream.conf.in",
        bench.tmp / "nginx-jhsingle",
        {"PORT": nginx_port, "DOCROOT": bench.tmp / "docroot"},
    )
    http_proc, http = start("http", _nginx_argv(config), nginx_port)
    ws_proc, ws = start("ws", _echo_argv(echo_port), echo_port)
    _check_http(http.url, http_proc, timeout=30)
    _check_ws(ws.url, ws_proc, timeout=30)
    target = Target("jhsingle", http, ws, rss_pids=[http_proc.pid, ws_proc.pid])
    target.notes.append(
        "jhsingle: wraps its own nginx and echo server (same config and files, on the load CPU); "
        "pointed at the shared upstream it answers 500 (its port check binds the busy port)"
    )
    return target


STARTERS: dict[str, Callable[[Bench, Processes], Target]] = {
    "direct": start_direct,
    "rproxy": start_rproxy,
    "minimal": start_minimal,
    "nginx-proxy": start_nginx_proxy,
    "chp": start_chp,
    "jhsingle": start_jhsingle,
}
