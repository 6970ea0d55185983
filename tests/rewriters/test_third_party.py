"""A third-party rewriter (examples/example-rewriter, installed by the set-up) runs in rproxy."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from support import StartProxy, StartUpstream

from rproxy.rewriters import registry


def test_the_example_plugin_is_discovered_but_not_enabled_by_default() -> None:
    installed = registry.discover()
    assert installed["shout"].value == "rproxy_example_rewriter:ShoutRewriter"
    assert "shout" not in registry.DEFAULT


async def test_an_enabled_plugin_rewrites_headers_and_body_in_its_place(
    start_upstream: StartUpstream, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    async def text(request: web.Request) -> web.Response:
        return web.Response(text="quiet words", headers={"Location": "/next"})

    app = web.Application()
    app.router.add_get("/t", text)
    upstream = await start_upstream(app)
    proxy = await start_proxy(upstream, prefix="/p/", rewriters="headers,shout")
    async with http.get(proxy / "p/t", allow_redirects=False) as resp:
        assert await resp.text() == "QUIET WORDS"
        assert resp.headers["X-Example-Rewriter"] == "shout"
        assert resp.headers["Location"] == "/p/next"
    plain = await start_proxy(upstream, prefix="/p/")
    async with http.get(plain / "p/t", allow_redirects=False) as resp:
        assert await resp.text() == "quiet words"
