"""Prefix stripping, redirects, 404s and exact path forwarding through a running proxy.

Requests are written raw, so the proxy sees exactly the bytes of each case (a client library
would normalise ``..``, ``#`` and escapes before sending).
"""

from __future__ import annotations

import pytest
from aiohttp import web
from support import StartProxy, StartUpstream, raw_exchange, status_of
from yarl import URL

PREFIX = "/user/alice@x/"
SEEN = web.AppKey("seen", list[str])


async def _raw_path(request: web.Request) -> web.Response:
    request.app[SEEN].append(request.raw_path)
    return web.Response(text=request.raw_path, headers={"X-Upstream": "yes"})


def _path_echo() -> web.Application:
    app = web.Application()
    app[SEEN] = []
    app.router.add_route("*", r"/{tail:[\s\S]*}", _raw_path)
    return app


async def _get(proxy: URL, target: str, method: str = "GET", extra: str = "") -> bytes:
    request = f"{method} {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n{extra}\r\n"
    return await raw_exchange(proxy, request.encode())


@pytest.mark.parametrize(
    ("target", "upstream_path"),
    [
        pytest.param(PREFIX, "/", id="prefix-root"),
        pytest.param(PREFIX + "?a=1&b=%20", "/?a=1&b=%20", id="root-query"),
        pytest.param(PREFIX + "a%2Fb/c", "/a%2Fb/c", id="encoded-slash"),
        pytest.param(PREFIX + "%E2%82%AC/caf%C3%A9?q=%41%26&x=1/2",
                     "/%E2%82%AC/caf%C3%A9?q=%41%26&x=1/2", id="non-ascii"),
        pytest.param(PREFIX + "a;b=c,d!$'()*+:@", "/a;b=c,d!$'()*+:@", id="reserved"),
        pytest.param(PREFIX + "a#frag", "/a", id="fragment-dropped"),
        pytest.param(PREFIX + "/evil.example/x", "//evil.example/x", id="double-slash"),
        pytest.param(PREFIX + "@evil.example/", "/@evil.example/", id="at-sign"),
        pytest.param(PREFIX + "a%0Ab%0D", "/a%0Ab%0D", id="encoded-line-breaks"),
    ],
)  # fmt: skip
async def test_path_and_query_are_forwarded_exactly(
    target: str, upstream_path: str, start_upstream: StartUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(await start_upstream(_path_echo()), prefix=PREFIX)
    raw = await _get(proxy, target)
    assert status_of(raw) == 200
    assert raw.endswith(b"\r\n\r\n" + upstream_path.encode())


@pytest.mark.parametrize(
    ("method", "target", "location"),
    [
        pytest.param("GET", "/user/alice@x", PREFIX, id="bare-prefix"),
        pytest.param("GET", "/user/alice@x?a=1", PREFIX + "?a=1", id="bare-prefix-query"),
        pytest.param("POST", "/user/alice@x", PREFIX, id="bare-prefix-post"),
        pytest.param("GET", "/user/alice%40x", PREFIX, id="encoded-bare"),
        pytest.param("GET", "/user/alice%40x/p/q?z=%2F", PREFIX + "p/q?z=%2F", id="encoded-prefix"),
        pytest.param("GET", "/user/%61lice%40x/", PREFIX, id="encoded-letters"),
    ],
)
async def test_prefix_variants_are_redirected_to_the_canonical_prefix(
    method: str,
    target: str,
    location: str,
    start_upstream: StartUpstream,
    start_proxy: StartProxy,
) -> None:
    upstream = _path_echo()
    proxy = await start_proxy(await start_upstream(upstream), prefix=PREFIX)
    raw = await _get(proxy, target, method, extra="Content-Length: 0\r\n")
    assert status_of(raw) == 307
    assert f"\r\nLocation: {location}\r\n".encode() in raw
    assert upstream[SEEN] == []


@pytest.mark.parametrize(
    ("target", "status"),
    [
        pytest.param("/", 404, id="root"),
        pytest.param("/user/bob/", 404, id="other-user"),
        pytest.param("/user/alice@xy/", 404, id="longer-name"),
        pytest.param("/favicon.ico", 404, id="outside"),
        pytest.param(PREFIX + "../bob/", 400, id="dot-dot"),
        pytest.param(PREFIX + "%2e%2e/bob/", 400, id="encoded-dot-dot"),
        pytest.param(PREFIX + "./a", 400, id="dot"),
        pytest.param("*", 400, id="asterisk"),
    ],
)
async def test_targets_outside_the_prefix_never_reach_the_upstream(
    target: str,
    status: int,
    start_upstream: StartUpstream,
    start_proxy: StartProxy,
) -> None:
    upstream = _path_echo()
    proxy = await start_proxy(await start_upstream(upstream), prefix=PREFIX)
    raw = await _get(proxy, target)
    assert status_of(raw) == status
    assert b"X-Upstream" not in raw
    assert upstream[SEEN] == []


async def test_prefix_from_the_environment_applies(
    start_upstream: StartUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(await start_upstream(_path_echo()), prefix="user/alice@x")
    raw = await _get(proxy, PREFIX + "ok")
    assert raw.endswith(b"\r\n\r\n/ok")


async def test_no_target_can_reach_another_host(
    start_upstream: StartUpstream, start_proxy: StartProxy
) -> None:
    upstream, evil = _path_echo(), _path_echo()
    evil_url = await start_upstream(evil)
    evil_authority = f"127.0.0.1:{evil_url.port}"
    proxy = await start_proxy(await start_upstream(upstream))
    for target in (
        f"//{evil_authority}/x",
        f"/@{evil_authority}/x",
        f"/%2F{evil_authority}/x",
        f"/\\{evil_authority}/x",
    ):
        assert status_of(await _get(proxy, target)) == 200, target
    assert (
        status_of(await _get(proxy, "/x", extra=f"X-Forwarded-Host: {evil_authority}\r\n")) == 200
    )
    raw = await raw_exchange(
        proxy, f"GET /x HTTP/1.1\r\nHost: {evil_authority}\r\nConnection: close\r\n\r\n".encode()
    )
    assert status_of(raw) == 200
    absolute = await _get(proxy, f"http://{evil_authority}/x")
    assert status_of(absolute) == 400
    assert evil[SEEN] == []
    assert len(upstream[SEEN]) == 6
