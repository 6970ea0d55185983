"""The API endpoints: shapes and status codes with the upstream up, down, starting, restarting."""

from __future__ import annotations

import asyncio
import shlex
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from support import CHILD, StartProxy, StartUpstream, ready, running, supervisor_of
from yarl import URL

from rproxy import __version__
from rproxy.auth import Identity
from rproxy.cli import parse_config
from rproxy.errors import ConfigError
from rproxy.supervisor import ChildState

PREFIX = "/user/ann/"
ENDPOINTS = ("api", "api/status", "api/user", "api/services", "api/metrics")


def _upstream_app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        seen = {"from_upstream": True, "method": request.method, "path": request.path}
        return web.json_response(seen)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


@pytest.fixture
async def upstream(start_upstream: StartUpstream) -> URL:
    return await start_upstream(_upstream_app())


async def _get(http: aiohttp.ClientSession, url: URL, method: str = "GET") -> tuple[int, Any]:
    async with http.request(method, url) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def test_the_overview_lists_the_endpoints(
    upstream: URL, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(upstream, prefix=PREFIX)
    async with http.get(proxy / "user/ann/api") as response:
        assert response.headers["Cache-Control"] == "no-store"
        overview = await response.json()
    assert overview == {
        "name": "rproxy",
        "version": __version__,
        "mode": "standalone",
        "prefix": PREFIX,
        "user": None,
        "endpoints": [PREFIX + name for name in ENDPOINTS],
    }
    for endpoint in overview["endpoints"]:  # each one answers, none reaches the upstream
        status, body = await _get(http, proxy.with_path(endpoint))
        assert status == 200, endpoint
        assert "from_upstream" not in body


async def test_status_is_200_while_the_upstream_answers(
    upstream: URL, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(upstream, prefix=PREFIX)
    await _get(http, proxy / "user/ann/some/page")
    status, body = await _get(http, proxy / "user/ann/api/status")
    assert status == 200
    assert body["status"] == "ok"
    assert body["upstream"]["reachable"] is True
    assert body["upstream"]["url"] == str(upstream.origin())
    assert body["upstream"]["port"] == upstream.port
    assert body["child"] is None
    assert body["connections"] >= 1
    assert body["websockets"] == 0
    assert body["requests_in_flight"] == 1  # this one
    assert body["latency_ms"]["total"]["count"] == 1
    assert 0 <= body["latency_ms"]["overhead"]["p50"] <= body["latency_ms"]["total"]["p99"]


async def test_status_is_503_when_the_upstream_is_down(
    start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    proxy = await start_proxy(f"http://127.0.0.1:{port}")
    status, body = await _get(http, proxy / "api/status")
    assert status == 503
    assert body["status"] == "down"
    assert body["upstream"]["reachable"] is False
    assert "refused" in body["upstream"]["problem"].lower()
    status, _ = await _get(http, proxy / "api/status", "HEAD")
    assert status == 503


async def test_status_follows_the_child_starting_ready_and_restarting(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    go = tmp_path / "go"
    argv = ["--", *CHILD, "--port", "{port}", "--wait-for", str(go)]
    async with running(*argv) as (url, launcher):
        supervisor = await supervisor_of(launcher)
        status, body = await _get(http, url / "api/status")
        assert (status, body["status"], body["child"]["state"]) == (503, "starting", "starting")
        assert body["upstream"]["reachable"] is None  # not probed: the child is not ready
        go.touch()
        await ready(launcher)
        status, body = await _get(http, url / "api/status")
        assert (status, body["status"]) == (200, "ok")
        assert body["child"]["pid"] == supervisor.pid
        assert body["child"]["restarts"] == 0
        assert body["child"]["uptime_seconds"] >= 0
        async with http.get(url / "crash") as response:
            assert response.status == 200
        await asyncio.wait_for(supervisor.wait_for(ChildState.RESTARTING), timeout=20)
        status, body = await _get(http, url / "api/status")
        assert status == 503
        assert body["status"] in ("restarting", "starting")
        assert body["child"]["restarts"] == 1
        await ready(launcher)
        status, body = await _get(http, url / "api/services")
    assert status == 200
    (service,) = body["services"]
    assert service["state"] == "ready"
    assert service["restarts"] == 1
    assert service["port"] == launcher.endpoint.port
    assert service["description"] == shlex.join([*CHILD, "--port", str(launcher.endpoint.port),
                                                  "--wait-for", str(go)])  # fmt: skip


async def test_services_describes_an_external_upstream(
    upstream: URL, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(upstream, prefix=PREFIX)
    status, body = await _get(http, proxy / "user/ann/api/services")
    assert status == 200
    assert body == {
        "services": [
            {
                "name": "default",
                "path": PREFIX,
                "url": str(upstream.origin()),
                "port": upstream.port,
                "socket": None,
                "state": "external",
                "restarts": 0,
                "required": True,
                "description": f"the server at {upstream.origin()}",
            }
        ]
    }


class _TokenAuth:
    async def check(self, request: web.Request) -> web.StreamResponse | None:
        if request.headers.get("Authorization") == "token ann-token":
            return None
        return web.Response(status=403, text="403 Forbidden\n")

    async def identity(self, request: web.Request) -> Identity | None:
        return Identity("ann", groups=("staff",), scopes=("access:servers!user=ann",))


async def test_user_shows_what_the_authenticator_knows(
    upstream: URL, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    plain = await start_proxy(upstream)
    status, body = await _get(http, plain / "api/user")
    assert status == 200
    assert body == {
        "mode": "standalone",
        "authenticated": False,
        "name": None,
        "groups": [],
        "admin": False,
        "scopes": [],
    }
    guarded = await start_proxy(upstream, authenticator=_TokenAuth())
    for endpoint in ENDPOINTS:  # behind the same authentication as everything else
        assert (await _get(http, guarded / endpoint))[0] == 403
    async with http.get(guarded / "api/user", headers={"Authorization": "token ann-token"}) as r:
        assert await r.json() == {
            "mode": "standalone",
            "authenticated": True,
            "name": "ann",
            "groups": ["staff"],
            "admin": False,
            "scopes": ["access:servers!user=ann"],
        }


@pytest.mark.parametrize(
    ("options", "ours", "theirs"),
    [
        pytest.param({}, "api/status", ["api/kernels", "api/statuses", "api/status/x"], id="api"),
        pytest.param(
            {"api_prefix": "_rproxy/api"},
            "_rproxy/api/status",
            ["api", "api/status", "api/metrics", "_rproxy/api/other"],
            id="moved",
        ),
        pytest.param({"no_api": True}, None, ["api", "api/status", "api/metrics"], id="none"),
    ],
)
async def test_only_the_exact_endpoints_are_intercepted(
    options: dict[str, Any],
    ours: str | None,
    theirs: list[str],
    upstream: URL,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
) -> None:
    proxy = await start_proxy(upstream, prefix=PREFIX, **options)
    for path in theirs:
        status, body = await _get(http, proxy / "user/ann" / path)
        assert (status, body["path"]) == (200, "/" + path)
    if ours is not None:
        status, body = await _get(http, proxy / "user/ann" / ours)
        assert status == 200
        assert "from_upstream" not in body
        # Other methods on rproxy's own paths belong to the app.
        status, body = await _get(http, proxy / "user/ann" / ours, "POST")
        assert (status, body["method"]) == (200, "POST")


@pytest.mark.parametrize(
    "value", ["../x", "a//b", "a b", "api?x", "%2e%2e", ".", "a/./b", "<x>", ""]
)
def test_a_bad_api_prefix_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="--api-prefix"):
        parse_config(["--upstream", "http://127.0.0.1:1", "--api-prefix", value], {})


def test_the_api_prefix_is_normalised() -> None:
    config = parse_config(["--upstream", "http://127.0.0.1:1", "--api-prefix", "/_r/api/"], {})
    assert config.api_prefix == "_r/api"
    assert parse_config(["--upstream", "http://x:1", "--no-api"], {}).api_prefix is None
