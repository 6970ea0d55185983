"""CPU per request of rproxy under JupyterHub: front.py (``decide``) against aiohttp's protocol.

rproxy runs with the JUPYTERHUB_* environment, ``--forward-user-info`` and its HubAuthenticator, in
front of nginx serving the 1 KiB file; wrk sends ``Authorization: token ...`` at concurrency 32.
The hub's REST API is a stand-in (``--hub-api``: ``GET /hub/api/user`` answers ann's user model
for the one token), asked once per instance: HubOAuth caches the answer, as it does under a real
hub. Two instances, measured in alternation on the proxy CPU:

- ``front``: rproxy as it runs (front.py asks the HubAuthenticator's ``decide``, then forwards);
- ``aiohttp``: the same HubAuthenticator without ``decide``, so every request goes through
  aiohttp's protocol and the auth middleware's ``check``, as before session 7.

Prints requests/s and CPU microseconds per request for each round, then the medians.
Run: ``.venv/bin/python benchmarks/hub_mode.py [--rounds 3] [--seconds 5]``. A measurement, not a
test; the proxy's CPU is read from /proc, the load generator's and nginx's are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]  # this checkout's rproxy, and the harness
from harness.loads import parse_wrk  # noqa: E402
from harness.procs import cpu_seconds, cpu_ticks, pinned, wait_http  # noqa: E402
from harness.targets import Bench, start_upstreams  # noqa: E402

TOKEN = "bench-token"
USER = {"kind": "user", "name": "ann", "admin": False, "groups": [], "scopes": []}
PROXY_CPU, LOAD_CPU = (1, 0) if (os.cpu_count() or 1) > 1 else (None, None)


def _hub_env(api_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "JUPYTERHUB_API_TOKEN": "api-token",
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{api_port}/hub/api",
        "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-ann",
        "JUPYTERHUB_SERVICE_PREFIX": "/user/ann/",
        "JUPYTERHUB_USER": "ann",
    }


async def _hub_api(port: int) -> None:
    """The stand-in for the hub's REST API: who owns ``TOKEN``."""
    from aiohttp import web

    async def user(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"token {TOKEN}":
            return web.Response(status=403)
        return web.json_response(USER)

    app = web.Application()
    app.router.add_get("/hub/api/user", user)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def _serve(kind: str, port: int, upstream: str) -> None:
    """rproxy under the hub's environment; ``aiohttp``: its HubAuthenticator without ``decide``."""
    from aiohttp import web

    from rproxy.app import make_runner
    from rproxy.plugins.jupyterhub import HubAuthenticator
    from rproxy.sources import load_config

    options = {"upstream": upstream, "forward_user_info": True, "log_level": "WARNING"}
    config = load_config(options, dict(os.environ))
    hub = HubAuthenticator(config)

    class CheckOnly:  # every request through aiohttp's protocol and the middleware
        check, identity = hub.check, hub.identity

    runner = make_runner(config, authenticator=hub if kind == "front" else CheckOnly())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def _measure(url: str, pid: int, seconds: int) -> tuple[float, float]:
    """wrk at concurrency 32 for ``seconds``: requests/s, and the proxy's CPU us per request."""
    auth = f"Authorization: token {TOKEN}"
    argv = ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", "-H", auth, url]
    before = cpu_ticks(pid, descendants=False)
    out = subprocess.run(pinned(argv, LOAD_CPU), capture_output=True, text=True, check=True)
    after = cpu_ticks(pid, descendants=False)
    load = parse_wrk(out.stdout)
    if load.errors:
        raise RuntimeError(f"{load.errors} requests failed: {out.stdout[-300:]}")
    return load.rate, cpu_seconds(before, after) * 1e6 / load.ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--hub-api", type=int, help=argparse.SUPPRESS)  # the stand-in's process
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)  # an rproxy instance's
    args = parser.parse_args()
    if args.hub_api:
        asyncio.run(_hub_api(args.hub_api))
        return
    if args.serve:
        import uvloop

        kind, port, upstream = args.serve
        uvloop.run(_serve(kind, int(port), upstream))
        return
    with tempfile.TemporaryDirectory(prefix="rproxy-hub-bench-") as tmp:
        bench = Bench(Path(tmp), PROXY_CPU, LOAD_CPU)
        procs = bench.processes("hub-mode")
        try:
            start_upstreams(bench, procs)
            api_port = bench.free_port()
            env = _hub_env(api_port)
            me = [sys.executable, __file__]
            procs.start("hub-api", [*me, "--hub-api", str(api_port)], cpu=LOAD_CPU, env=env)
            upstream = f"http://127.0.0.1:{bench.http_port}"
            urls: dict[str, tuple[str, int]] = {}
            for kind in ("front", "aiohttp"):
                port = bench.free_port()
                argv = [*me, "--serve", kind, str(port), upstream]
                proc = procs.start(kind, argv, cpu=PROXY_CPU, env=env)
                url = f"http://127.0.0.1:{port}/user/ann/1k.bin"
                wait_http(url, proc, 30)
                urls[kind] = (url, proc.pid)
                _measure(url, proc.pid, 1)  # warm-up, and the hub asked once
            runs: dict[str, list[tuple[float, float]]] = {kind: [] for kind in urls}
            for round_ in range(1, args.rounds + 1):
                for kind, (url, pid) in urls.items():
                    rate, cpu = _measure(url, pid, args.seconds)
                    runs[kind].append((rate, cpu))
                    print(f"round {round_}  {kind:8} {rate:9,.0f} req/s  {cpu:6.1f} us/request")
            summary: dict[str, Any] = {}
            for kind, values in runs.items():
                rate = statistics.median(r for r, _ in values)
                cpu = statistics.median(c for _, c in values)
                summary[kind] = {"req_per_s": rate, "cpu_us_per_request": cpu}
                print(f"median   {kind:8} {rate:9,.0f} req/s  {cpu:6.1f} us/request")
            print(json.dumps(summary))
        finally:
            procs.stop_all()


if __name__ == "__main__":
    main()
