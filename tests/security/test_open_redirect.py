"""Open redirects: no Location rproxy writes or rewrites sends a browser to another origin.

Three sources of Location, each through a real rproxy, each Location resolved with urllib the way
RFC 3986 says and again the way browsers read it (``attack_support.same_origin``):
- the upstream's own redirects, rewritten by the ``headers`` rewriter: a Location that was
  same-origin for the app stays same-origin for the browser, and one that was not is passed on
  unchanged (``//evil``, ``/\\evil``, ``https:evil``, tabs inside the scheme, userinfo tricks...);
- rproxy's redirects to the canonical prefix and to a service mount's trailing slash, for
  targets that try to smuggle another host into them;
- the JupyterHub plugin's post-login target (``next``), read back from the signed state cookie
  a login starts with: always a path inside the prefix.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from attack_support import Recorder, StartRecorder, exchange, same_origin
from support import StartProxy, StartUpstream
from yarl import URL

from rproxy.plugins.cookies import CookieSigner

PUBLIC = "http://proxy.example"
# {up} is the upstream's host:port; the app is at the upstream's root, the browser at /user/a/
LOCATIONS = [
    pytest.param("/x", id="root-relative"),
    pytest.param("x/y", id="relative"),
    pytest.param("../../x", id="parent-relative"),
    pytest.param("?q=1", id="query-only"),
    pytest.param("/user/a/x", id="already-prefixed"),
    pytest.param("http://{up}/x", id="upstream-absolute"),
    pytest.param("//{up}/x", id="upstream-scheme-relative"),
    pytest.param("http://{up}//evil.example/x", id="upstream-absolute-double-slash-path"),
    pytest.param("//{up}//evil.example/x", id="upstream-scheme-relative-double-slash-path"),
    pytest.param("http://{up}/\\evil.example/x", id="upstream-absolute-backslash-path"),
    pytest.param("http://proxy.example//evil.example/", id="public-host-double-slash-path"),
    pytest.param("http://{up}", id="upstream-origin-only"),
    pytest.param("/%2F%2Fevil.example", id="encoded-slashes"),
    pytest.param("/%5Cevil.example", id="encoded-backslash"),
    pytest.param("/%09/evil.example", id="encoded-tab"),
    pytest.param(" /x", id="leading-space"),
    pytest.param("/\t/evil.example", id="tab-between-slashes"),
    pytest.param("//evil.example/x", id="scheme-relative"),
    pytest.param("/\\evil.example/x", id="slash-backslash"),
    pytest.param("\\\\evil.example/x", id="two-backslashes"),
    pytest.param("\\/evil.example/x", id="backslash-slash"),
    pytest.param("https:evil.example", id="https-no-slashes"),
    pytest.param("https:/evil.example", id="https-one-slash"),
    pytest.param("http:/\\evil.example", id="http-slash-backslash"),
    pytest.param("https://evil.example/", id="other-origin"),
    pytest.param("ht\ttps://evil.example/", id="tab-in-scheme"),
    pytest.param("https:\t//evil.example/", id="tab-after-scheme"),
    pytest.param("java\tscript:alert(1)", id="tab-in-javascript"),
    pytest.param("http://{up}@evil.example/", id="upstream-as-userinfo"),
    pytest.param("http://evil.example\\@{up}/", id="backslash-userinfo"),
    pytest.param("//{up}@evil.example/", id="scheme-relative-userinfo"),
    pytest.param("http://{up}:80@evil.example/", id="port-userinfo"),
    pytest.param("HTTP://{up}/x", id="upstream-caps"),
    pytest.param("http://{up}./x", id="upstream-trailing-dot"),
    pytest.param("http://evil.example%2F@{up}/", id="encoded-slash-userinfo"),
]


@pytest.mark.parametrize("location", LOCATIONS)
async def test_upstream_redirects_never_become_cross_origin(
    location: str, recorder: Recorder, start_proxy: StartProxy
) -> None:
    value = location.format(up=f"127.0.0.1:{recorder.port}")
    recorder.status = b"302 Found"
    recorder.extra_headers = f"Location: {value}\r\nRefresh: 0; url={value}\r\n".encode()
    proxy = await start_proxy(recorder.url, prefix="/user/a/")
    request = b"GET /user/a/x HTTP/1.1\r\nHost: proxy.example\r\nConnection: close\r\n\r\n"
    async with asyncio.timeout(15):
        answer = await exchange(proxy, request)
    assert answer.statuses == [302]
    (out,) = answer.headers("Location")
    refresh = answer.headers("Refresh")[0].decode().removeprefix("0; url=")
    app_sees = f"http://127.0.0.1:{recorder.port}/x"
    for given in (out.decode(), refresh):
        if same_origin(value, app_sees):
            assert same_origin(given, PUBLIC + "/user/a/x"), given
        else:
            assert given == value or same_origin(given, PUBLIC + "/user/a/x"), given


def test_the_origin_check_sees_cross_origin_locations() -> None:
    """The control: the check used above does flag what a browser would leave the origin for."""
    base = PUBLIC + "/user/a/x"
    for bad in ("//evil.example/", "/\\evil.example", "https:evil.example", "/\t/evil.example",
                "ht\ttps://evil.example", "\\\\evil.example", " //evil.example"):  # fmt: skip
        assert not same_origin(bad, base), bad
    for good in ("/x", "x", "/user/a//evil.example", "/.//evil.example", "http:evil", "?a"):
        assert same_origin(good, base), good


# rproxy's own redirects: to the canonical prefix, a service mount's slash, noVNC's folder.
TARGETS = [
    pytest.param("/user/a", id="bare-prefix"),
    pytest.param("/user/a?next=//evil.example", id="bare-prefix-query"),
    pytest.param("/user/a?//evil.example", id="bare-prefix-query-slashes"),
    pytest.param("/user/%61", id="encoded-prefix"),
    pytest.param("/user/%61//evil.example/", id="encoded-prefix-double-slash"),
    pytest.param("/user/%61/%2F%2Fevil.example", id="encoded-prefix-encoded-slashes"),
    pytest.param("/user/%61/\\evil.example", id="encoded-prefix-backslash"),
    pytest.param("/user/%61//evil.example/..", id="encoded-prefix-dot-dot"),
    pytest.param("//evil.example/..", id="scheme-relative-dot-dot"),
    pytest.param("//evil.example/%2e%2e", id="scheme-relative-encoded-dot-dot"),
    pytest.param("/%2F%2Fevil.example", id="encoded-slashes"),
    pytest.param("/%5C%5Cevil.example", id="encoded-backslashes"),
    pytest.param("/user/a/ide", id="mount"),
    pytest.param("/user/a/ide?next=//evil.example", id="mount-query"),
    pytest.param("/user/a/ide?\\evil.example", id="mount-query-backslash"),
    pytest.param("/user/a/vnc", id="novnc-folder"),
    pytest.param("/user/a/vnc/", id="novnc-page"),
]


@pytest.mark.parametrize("target", TARGETS)
async def test_rproxy_redirects_stay_on_the_origin(
    target: str, start_recorder: StartRecorder, start_proxy: StartProxy
) -> None:
    main, ide = await start_recorder("main"), await start_recorder("ide")
    proxy = await start_proxy(
        main.url,
        prefix="/user/a/",
        service=[f"/ide/={ide.url}"],
        vnc_upstream="127.0.0.1:9",
        novnc_dir="/usr/share/novnc",
    )
    request = f"GET {target} HTTP/1.1\r\nHost: proxy.example\r\nConnection: close\r\n\r\n"
    async with asyncio.timeout(15):
        answer = await exchange(proxy, request.encode())
    assert len(answer.statuses) == 1
    for location in answer.headers("Location"):
        assert same_origin(location.decode(), PUBLIC + target), location
    if 300 <= answer.statuses[0] < 400:
        assert answer.headers("Location")


ENV = {
    "JUPYTERHUB_API_TOKEN": "api-token",
    "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api",  # never asked: no token is presented
    "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-alice",
    "JUPYTERHUB_OAUTH_CALLBACK_URL": "/user/alice/oauth_callback",
    "JUPYTERHUB_OAUTH_ACCESS_SCOPES": '["access:servers!server=alice/"]',
    "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/",
    "JUPYTERHUB_USER": "alice",
}
NEXT = [
    pytest.param("/user/alice//evil.example/", id="double-slash"),
    pytest.param("/user/alice/%2F%2Fevil.example", id="encoded-slashes"),
    pytest.param("/user/alice/\\evil.example", id="backslash"),
    pytest.param("/user/alice/%5Cevil.example", id="encoded-backslash"),
    pytest.param("/user/alice/%0d%0aLocation:%20//evil.example", id="encoded-crlf"),
    pytest.param("/user/alice/%09/evil.example", id="encoded-tab"),
    pytest.param("/user/alice/x?next=https://evil.example", id="next-in-query"),
    pytest.param("/user/alice/x?%2F%2Fevil", id="query-slashes"),
    pytest.param("/user/alice/@evil.example", id="at"),
]


@pytest.mark.parametrize("target", NEXT)
async def test_the_post_login_target_is_a_path_inside_the_prefix(
    target: str, start_upstream: StartUpstream, start_proxy: StartProxy
) -> None:
    from aiohttp import web

    proxy = await start_proxy(
        await start_upstream(web.Application()), environ=ENV, last_activity_interval=0
    )
    request = (
        f"GET {target} HTTP/1.1\r\nHost: proxy.example\r\nAccept: text/html\r\n"
        "Connection: close\r\n\r\n"
    )
    async with asyncio.timeout(15):
        answer = await exchange(proxy, request.encode())
    assert answer.statuses == [302]
    (cookie,) = [c for c in answer.headers("Set-Cookie") if b"-oauth-" in c]
    name, _, rest = cookie.decode().partition("=")
    value = rest.partition(";")[0].strip('"')
    stored = CookieSigner(ENV["JUPYTERHUB_API_TOKEN"].encode()).verify(name, value, 600)
    assert stored is not None
    after_login = json.loads(stored)["next"]
    assert after_login.startswith("/user/alice/")
    assert same_origin(after_login, PUBLIC + "/user/alice/oauth_callback")
    assert URL(PUBLIC + after_login).host == "proxy.example"
    assert not any(c < " " for c in after_login)
