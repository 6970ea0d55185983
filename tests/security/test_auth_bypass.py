"""JupyterHub mode: without a valid login nothing behind rproxy is reached (CVE-2024-28179 class).

A real rproxy with the JUPYTERHUB_* environment (``--authtype oauth``) fronts a recording main
upstream, a recording ``--service`` mount and a recording VNC server (``--vnc-upstream``), and
then the main upstream alone (where front.py answers plain requests itself). For
every method, every route kind (the app, its WebSocket, rproxy's own ``api/*`` endpoints, which
are all behind the login: none is public in this mode, the service mount, the VNC bridge and
noVNC) and every way of presenting no valid login (nothing, a forged, tampered or other
server's cookie, the state cookie passed off as a login, a client-sent identity header or query,
a jupyter-style ``?token=``), the answer is a 302 to the hub or a 403, and none of the three
upstreams gets a single connection. Tokens of other users and tokens without the access scope
are refused by a real hub in tests/test_jupyterhub_e2e.py.
"""

from __future__ import annotations

import asyncio

import pytest
from attack_support import StartRecorder, exchange
from support import StartProxy

from rproxy.plugins.cookies import CookieSigner

ENV = {
    "JUPYTERHUB_API_TOKEN": "api-token",
    "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api",  # nothing listens: never asked here
    "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-alice",
    "JUPYTERHUB_OAUTH_CALLBACK_URL": "/user/alice/oauth_callback",
    "JUPYTERHUB_OAUTH_ACCESS_SCOPES": '["access:servers!server=alice/"]',
    "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/",
    "JUPYTERHUB_USER": "alice",
}
COOKIE = "rproxy-jupyterhub-user-alice"
_OTHER = CookieSigner(b"another server's api token").sign(COOKIE, "stolen-token")
_GOOD = CookieSigner(b"api-token").sign(COOKIE, "a-token")
_STATE = CookieSigner(b"api-token").sign(f"{COOKIE}-oauth-AAAAAAAAAAAAAAAA", '"x"')
WS = (
    "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)
CREDENTIALS = [
    pytest.param("", id="none"),
    pytest.param(f"Cookie: {COOKIE}=forged.1.x\r\n", id="forged-cookie"),
    pytest.param(f"Cookie: {COOKIE}={_OTHER}\r\n", id="other-server-cookie"),
    pytest.param(f"Cookie: {COOKIE}={_GOOD[:-2]}xx\r\n", id="tampered-cookie"),
    pytest.param(f"Cookie: {COOKIE}={_STATE}\r\n", id="state-cookie-as-login"),
    pytest.param(f"Cookie: {COOKIE}-oauth-AAAAAAAAAAAAAAAA={_STATE}\r\n", id="state-cookie"),
    pytest.param('X-CDSDASHBOARDS-JH-USER: {"name": "alice"}\r\n', id="identity-header"),
    pytest.param("X-Forwarded-User: alice\r\nRemote-User: alice\r\n", id="proxy-user-headers"),
    pytest.param("Authorization: Basic YWxpY2U6eA==\r\n", id="basic-auth"),
    pytest.param("Authorization: token\r\n", id="empty-token"),
    pytest.param("Cookie: jupyterhub-session-id=x; _xsrf=x\r\n", id="hub-cookies"),
]
ROUTES = [
    pytest.param("GET", "/user/alice/", "", id="get-root"),
    pytest.param(
        "GET", "/user/alice/x?token=abc&CDSDASHBOARDS_JH_USER=alice", "", id="get-query-token"
    ),
    pytest.param("HEAD", "/user/alice/x", "", id="head"),
    pytest.param("POST", "/user/alice/x", "Content-Length: 2\r\n\r\nab", id="post"),
    pytest.param("PUT", "/user/alice/x", "Content-Length: 0\r\n", id="put"),
    pytest.param("DELETE", "/user/alice/x", "", id="delete"),
    pytest.param("PATCH", "/user/alice/x", "Content-Length: 0\r\n", id="patch"),
    pytest.param("OPTIONS", "/user/alice/x", "", id="options"),
    pytest.param("PROPFIND", "/user/alice/x", "", id="propfind"),
    pytest.param("TRACE", "/user/alice/x", "", id="trace"),
    pytest.param("GET", "/user/alice/ws", WS, id="websocket"),
    pytest.param("GET", "/user/alice/api", "", id="api"),
    pytest.param("GET", "/user/alice/api/status", "", id="api-status"),
    pytest.param("GET", "/user/alice/api/user", "", id="api-user"),
    pytest.param("GET", "/user/alice/api/services", "", id="api-services"),
    pytest.param("GET", "/user/alice/api/metrics", "", id="api-metrics"),
    pytest.param("HEAD", "/user/alice/api/status", "", id="api-status-head"),
    pytest.param("POST", "/user/alice/api/kernels", "Content-Length: 0\r\n", id="app-api"),
    pytest.param("GET", "/user/alice/ide/", "", id="service"),
    pytest.param("GET", "/user/alice/ide/ws", WS, id="service-websocket"),
    pytest.param("GET", "/user/alice/websockify", WS, id="vnc-bridge"),
    pytest.param("GET", "/user/alice/vnc/vnc.html", "", id="novnc"),
    pytest.param("GET", "/user/alice/%2e%2e/alice/x", "", id="encoded-dots"),
]


@pytest.mark.parametrize("mounts", [True, False], ids=["mounts", "app-only"])
@pytest.mark.parametrize("credentials", CREDENTIALS)
@pytest.mark.parametrize(("method", "target", "extra"), ROUTES)
async def test_without_a_valid_login_nothing_behind_rproxy_is_reached(
    method: str,
    target: str,
    extra: str,
    credentials: str,
    mounts: bool,
    start_recorder: StartRecorder,
    start_proxy: StartProxy,
) -> None:
    # app-only: no service or VNC mount, so a plain request reaches front.py (rproxy's own
    # protocol), which asks the authenticator's decide as aiohttp's path asks check
    main, ide, vnc = [await start_recorder(n) for n in ("main", "ide", "vnc")]
    options = {
        "service": [f"/ide/={ide.url}"],
        "vnc_upstream": f"127.0.0.1:{vnc.port}",
        "novnc_dir": "/usr/share/novnc",
    }
    proxy = await start_proxy(
        main.url, environ=ENV, last_activity_interval=0, **(options if mounts else {})
    )
    body = ""
    if "\r\n\r\n" in extra:
        extra, _, body = extra.partition("\r\n\r\n")
        extra += "\r\n"
    for accept in ("", "Accept: text/html\r\n"):
        request = (
            f"{method} {target} HTTP/1.1\r\nHost: proxy.example\r\n{accept}{credentials}{extra}"
            f"Connection: close\r\n\r\n{body}"
        )
        async with asyncio.timeout(15):
            answer = await exchange(proxy, request.encode())
        assert len(answer.statuses) == 1, answer.raw[:300]
        assert answer.statuses[0] in (302, 400, 403), answer.raw[:300]
        for location in answer.headers("Location"):
            assert b"/hub/api/oauth2/authorize" in location
        assert b"alice/" not in answer.body or answer.statuses[0] == 302
    assert main.connections == ide.connections == vnc.connections == 0


async def test_a_login_cookie_signed_here_is_what_the_hub_is_asked_about(
    start_recorder: StartRecorder, start_proxy: StartProxy
) -> None:
    """The control: a correctly signed cookie does get past the signature to the hub (which is
    down here, so 502): the refusals above are about the credentials, not a broken check."""
    main = await start_recorder("main")
    proxy = await start_proxy(main.url, environ=ENV, last_activity_interval=0)
    request = (
        f"GET /user/alice/x HTTP/1.1\r\nHost: h\r\nCookie: {COOKIE}={_GOOD}\r\n"
        "Connection: close\r\n\r\n"
    )
    async with asyncio.timeout(30):
        answer = await exchange(proxy, request.encode(), wait=25)
    assert answer.statuses == [502]
    assert main.connections == 0
