"""The headers rewriter: each URL-bearing header, table by table, and through a running proxy."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import ClassVar

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict
from support import StartProxy, StartUpstream
from yarl import URL

from rproxy.rewriters.base import BodyRewriter, ResponseMeta, RewriteContext
from rproxy.rewriters.chain import rewrite_response
from rproxy.rewriters.headers import HeaderRewriter
from rproxy.urls import UrlMapper

URLS = UrlMapper("/user/alice/", URL("http://127.0.0.1:8888"))


def _rewrite(*pairs: tuple[str, str]) -> CIMultiDict[str]:
    return rewrite_response(
        [HeaderRewriter()],
        CIMultiDict(pairs),
        status=200,
        method="GET",
        path="/",
        urls=URLS,
        public_host="hub.example",
        failures=Counter(),
    ).headers


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        pytest.param(
            "Location", "/login?next=%2F", "/user/alice/login?next=%2F", id="root-relative"
        ),
        pytest.param(
            "Location", "http://127.0.0.1:8888/tree", "/user/alice/tree", id="upstream-origin"
        ),
        pytest.param("Location", "https://hub.example/x", "/user/alice/x", id="public-host"),
        pytest.param(
            "Location", "https://other.example/x", "https://other.example/x", id="other-origin"
        ),
        pytest.param(
            "Location", "//evil.example/x", "//evil.example/x", id="scheme-relative-other"
        ),
        pytest.param("Location", "relative/x", "relative/x", id="relative"),
        pytest.param("Location", "/user/alice/x", "/user/alice/x", id="already-prefixed"),
        pytest.param("Content-Location", "/doc", "/user/alice/doc", id="content-location"),
        pytest.param("Refresh", "5; url=/next", "5; url=/user/alice/next", id="refresh"),
        pytest.param("Refresh", "0;URL='/q'", "0;URL='/user/alice/q'", id="refresh-quoted"),
        pytest.param("Refresh", "10", "10", id="refresh-no-url"),
        pytest.param(
            "Link",
            "</a.css>; rel=preload; as=style, <https://cdn.example/b.js>; rel=preload",
            "</user/alice/a.css>; rel=preload; as=style, <https://cdn.example/b.js>; rel=preload",
            id="link",
        ),
        pytest.param(
            "Set-Cookie",
            "s=1; Path=/; HttpOnly",
            "s=1; Path=/user/alice/; HttpOnly",
            id="cookie-root",
        ),
        pytest.param("Set-Cookie", "s=1; path=/api", "s=1; path=/user/alice/api", id="cookie-path"),
        pytest.param("Set-Cookie", "s=1; HttpOnly", "s=1; HttpOnly", id="cookie-no-path"),
        pytest.param(
            "Set-Cookie", "s=/x; Path=/user/alice/", "s=/x; Path=/user/alice/", id="cookie-prefixed"
        ),
        pytest.param("X-Other", "/x", "/x", id="other-header"),
    ],
)
def test_header_urls_follow_the_url_policy(name: str, value: str, expected: str) -> None:
    assert _rewrite((name, value)).getall(name) == [expected]


def test_several_set_cookies_keep_their_order() -> None:
    headers = _rewrite(("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/b"))
    assert headers.getall("Set-Cookie") == ["a=1; Path=/user/alice/", "b=2; Path=/user/alice/b"]


def test_an_app_can_opt_a_response_out() -> None:
    headers = _rewrite(("Location", "/login"), ("X-Rproxy-Rewrite", "off"))
    assert headers.getall("Location") == ["/login"]
    assert "X-Rproxy-Rewrite" not in headers


class _Broken:
    name: ClassVar[str] = "broken"

    def matches(self, meta: ResponseMeta) -> bool:
        return True

    def rewrite_headers(self, headers: CIMultiDict[str], ctx: RewriteContext) -> None:
        headers["Location"] = "/half-done"
        raise RuntimeError("boom")

    def open_body(self, ctx: RewriteContext) -> BodyRewriter | None:
        return None


def test_a_failing_rewriter_leaves_the_headers_as_they_came(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures: Counter[str] = Counter()
    headers = rewrite_response(
        [HeaderRewriter(), _Broken()],
        CIMultiDict([("Location", "/login")]),
        status=302,
        method="GET",
        path="/x",
        urls=URLS,
        public_host=None,
        failures=failures,
    ).headers
    assert headers.getall("Location") == ["/login"]
    assert failures == Counter({"broken": 1})
    assert any("rewriter 'broken' failed" in r.getMessage() for r in caplog.records)


async def test_redirects_and_cookies_through_the_proxy(
    start_upstream: StartUpstream, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    async def login(request: web.Request) -> web.Response:
        response = web.Response(status=302, headers={"Location": "/home"})
        response.set_cookie("session", "s1", path="/")
        return response

    app = web.Application()
    app.router.add_get("/login", login)
    proxy = await start_proxy(await start_upstream(app), prefix="/user/alice/")
    async with http.get(proxy / "user/alice/login", allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == "/user/alice/home"
        assert "Path=/user/alice/" in resp.headers["Set-Cookie"]


async def test_no_rewrite_passes_headers_unchanged(
    start_upstream: StartUpstream, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    async def login(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/home"})

    app = web.Application()
    app.router.add_get("/login", login)
    proxy = await start_proxy(await start_upstream(app), prefix="/user/alice/", no_rewrite=True)
    async with http.get(proxy / "user/alice/login", allow_redirects=False) as resp:
        assert resp.headers["Location"] == "/home"


async def test_a_failing_rewriter_never_affects_other_requests(
    start_upstream: StartUpstream, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="ok", headers={"Location": "/elsewhere"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    upstream = await start_upstream(app)
    proxy = await start_proxy(upstream, prefix="/p/", rewriter_instances=[_Broken()])
    bodies = await asyncio.gather(*(_get(http, str(proxy / f"p/{n}")) for n in range(20)))
    assert bodies == [("ok", "/elsewhere")] * 20


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[str, str]:
    async with http.get(url, allow_redirects=False) as resp:
        return await resp.text(), resp.headers["Location"]
