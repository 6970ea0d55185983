"""The hub authenticator's own decisions, where no hub needs to answer: redirects, refusals, state.

Logging in all the way, tokens, scopes, activity and named servers are proven against a real
JupyterHub in tests/test_jupyterhub_e2e.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict
from support import StartProxy, StartUpstream
from yarl import URL

from rproxy.auth import Admitted, RequestHead
from rproxy.errors import ConfigError
from rproxy.plugins.cookies import CookieSigner
from rproxy.plugins.jupyterhub import HubAuthenticator
from rproxy.sources import load_config

PREFIX = "/user/alice/"
ENV = {
    "JUPYTERHUB_API_TOKEN": "api-token",
    "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api",  # nothing listens: never asked here
    "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-alice",
    "JUPYTERHUB_OAUTH_CALLBACK_URL": PREFIX + "oauth_callback",
    "JUPYTERHUB_OAUTH_ACCESS_SCOPES": '["access:servers!server=alice/"]',
    "JUPYTERHUB_SERVICE_PREFIX": PREFIX,
    "JUPYTERHUB_USER": "alice",
}
HTML = {"Accept": "text/html"}


@pytest.fixture
async def proxy(start_upstream: StartUpstream, start_proxy: StartProxy) -> URL:
    async def app(request: web.Request) -> web.Response:
        return web.Response(text="the app")

    upstream = web.Application()
    upstream.router.add_route("*", "/{tail:.*}", app)
    return await start_proxy(await start_upstream(upstream), environ=ENV, last_activity_interval=0)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def test_a_browser_is_sent_to_the_hub_with_state_and_pkce(
    proxy: URL, http: aiohttp.ClientSession
) -> None:
    async with http.get(proxy / "user/alice/page?x=1", headers=HTML, allow_redirects=False) as r:
        assert r.status == 302
        assert r.headers["X-JupyterHub-Version"]
        location = URL(r.headers["Location"])
        cookie = r.cookies
    assert location.path == "/hub/api/oauth2/authorize"
    assert location.query["client_id"] == ENV["JUPYTERHUB_CLIENT_ID"]
    assert location.query["redirect_uri"] == PREFIX + "oauth_callback"
    assert location.query["response_type"] == "code"
    assert location.query["code_challenge_method"] == "S256"
    state = location.query["state"]
    (name,) = cookie.keys()
    assert name.endswith(state[:16])
    morsel = cookie[name]
    assert (morsel["path"], morsel["httponly"], morsel["samesite"]) == (PREFIX, True, "Lax")


async def test_logout_under_the_prefix_goes_to_the_hubs_logout(
    proxy: URL, http: aiohttp.ClientSession
) -> None:
    """As jupyterhub-singleuser's: JupyterLab's Hub menu "Log Out" is {prefix}logout."""
    signer = CookieSigner(ENV["JUPYTERHUB_API_TOKEN"].encode())
    login = "rproxy-jupyterhub-user-alice"
    cookie = {"Cookie": f"{login}={signer.sign(login, 'some-token')}"}
    async with http.get(proxy / "user/alice/logout", headers=cookie, allow_redirects=False) as r:
        assert r.status == 302
        assert r.headers["Location"] == "/hub/logout"
        morsel = r.cookies[login]
    assert (morsel.value, morsel["path"]) == ("", PREFIX)  # rproxy forgets the login
    # only that path: the app's own paths beside it need a login as before
    async with http.get(proxy / "user/alice/logout/x", headers=HTML, allow_redirects=False) as r:
        assert URL(r.headers["Location"]).path == "/hub/api/oauth2/authorize"


UPGRADE = {
    **HTML,
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}
FORGED = {**HTML, "Cookie": "rproxy-jupyterhub-user-alice=forged.1.x"}


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        pytest.param("GET", {}, id="api-client"),
        pytest.param("POST", HTML, id="post"),
        pytest.param("GET", UPGRADE, id="upgrade"),
        pytest.param("GET", FORGED, id="forged-cookie"),
    ],
)
async def test_without_a_user_nothing_reaches_the_app(
    proxy: URL, http: aiohttp.ClientSession, method: str, headers: dict[str, str]
) -> None:
    async with http.request(
        method, proxy / "user/alice/x", headers=headers, allow_redirects=False
    ) as response:
        assert response.status in (302, 403)
        assert "the app" not in await response.text()
        if method != "GET" or "Upgrade" in headers or "Accept" not in headers:
            assert response.status == 403


async def test_a_cookie_signed_by_another_server_is_not_a_login(
    proxy: URL, http: aiohttp.ClientSession
) -> None:
    name = "rproxy-jupyterhub-user-alice"
    planted = CookieSigner(b"a neighbour's token").sign(name, "neighbour-token")
    headers = {**HTML, "Cookie": f"{name}={planted}"}
    async with http.get(proxy / "user/alice/", headers=headers, allow_redirects=False) as r:
        assert r.status == 302  # to the hub's login; the hub was never asked about the token


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("code=abc", id="no-state"),
        pytest.param("code=abc&state=AAAAAAAAAAAAAAAAAAAAAAAA", id="state-without-cookie"),
        pytest.param("code=abc&state=../../x", id="bad-state"),
        pytest.param("error=access_denied", id="hub-refused"),
    ],
)
async def test_a_callback_without_a_matching_login_is_refused(
    proxy: URL, http: aiohttp.ClientSession, query: str
) -> None:
    url = (proxy / "user/alice/oauth_callback").with_query(query)
    async with http.get(url, allow_redirects=False) as response:
        assert response.status in (400, 403)
        assert "Set-Cookie" not in response.headers


OUTSIDE = (
    "/user/bob/",
    "//evil.example/",
    "https://evil.example/user/alice/",
    "/user/alice/\\evil",
    "/user/alice/\r\nSet-Cookie: x",
    "/user/alicex/",
    "/user/alice/../bob/",
    "/user/alice/%2E%2e/bob/",
)


def test_a_login_returns_only_inside_the_prefix() -> None:
    auth = HubAuthenticator(load_config({"upstream": "http://127.0.0.1:1"}, ENV))
    inside = auth._inside  # the one place a post-login target is decided
    assert inside("/user/alice/tree?x=1") == "/user/alice/tree?x=1"
    for target in OUTSIDE:
        assert inside(target) == PREFIX, target


def _auth(**env: str) -> HubAuthenticator:
    return HubAuthenticator(load_config({"upstream": "http://127.0.0.1:1"}, {**ENV, **env}))


@pytest.mark.parametrize(
    ("env", "model", "allowed"),
    [
        pytest.param({}, {"name": "alice", "scopes": ["access:servers!server=alice/"]}, True,
                     id="scope"),
        pytest.param({}, {"name": "admin", "scopes": ["access:servers"]}, True, id="all-servers"),
        pytest.param({}, {"name": "bob", "scopes": ["access:servers!server=bob/"]}, False,
                     id="other-scope"),
        pytest.param({}, {"name": "alice", "scopes": []}, False, id="name-is-not-enough"),
        pytest.param({"JUPYTERHUB_GROUP": "team"}, {"name": "bob", "groups": ["team"],
                     "scopes": []}, True, id="group"),
        pytest.param({"JUPYTERHUB_ANYONE": "1"}, {"name": "eve", "scopes": []}, True,
                     id="anyone"),
        pytest.param({"JUPYTERHUB_OAUTH_ACCESS_SCOPES": "[]"}, {"name": "alice"}, True,
                     id="no-scopes-owner"),
        pytest.param({"JUPYTERHUB_OAUTH_ACCESS_SCOPES": "[]"}, {"name": "bob"}, False,
                     id="no-scopes-other"),
    ],
)  # fmt: skip
def test_who_may_use_the_server(
    env: dict[str, str], model: dict[str, object], allowed: bool
) -> None:
    assert _auth(**env)._allowed(model) is allowed


async def test_authtype_none_under_a_hub_says_so_loudly(
    start_upstream: StartUpstream,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream = web.Application()
    proxy = await start_proxy(
        await start_upstream(upstream), environ=ENV, authtype="none", last_activity_interval=0
    )
    # forwarded, first on its connection (after rproxy's own API, the connection is aiohttp's)
    async with http.get(proxy / "user/alice/page") as response:
        assert response.status == 404  # the upstream's
        assert response.headers["X-JupyterHub-Version"]
    async with http.get(proxy / "user/alice/api") as response:
        assert response.status == 200  # nobody asked
        assert response.headers["X-JupyterHub-Version"]
    assert any("NO AUTHENTICATION" in r.getMessage() for r in caplog.records)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _hub_said(
    auth: HubAuthenticator, token: str, model: dict[str, object] | None, session: str = ""
) -> None:
    """HubOAuth's cache holding the hub's answer about ``token`` in the hub session ``session``,
    under the key its ``user_for_token`` uses (jupyterhub.services.auth): the hub of ENV does not
    listen, so any question that reaches it gets the 502 page."""
    auth._oauth.cache[f"token:{session}:{hashlib.sha256(token.encode()).hexdigest()}"] = model


def _cookie_head(token: str, session: str | None = None, accept: str = "*/*") -> RequestHead:
    """A request with ``token`` in rproxy's cookie, and the hub's session cookie if given."""
    cookie = "rproxy-jupyterhub-user-alice"
    signed = CookieSigner(b"api-token").sign(cookie, token)
    cookies = f"{cookie}={signed}"
    if session is not None:
        cookies += f"; jupyterhub-session-id={session}"
    return RequestHead(
        "GET", PREFIX + "x", CIMultiDict(Cookie=cookies, Accept=accept), False, False
    )


def _heads(token: str, session: str | None = None) -> list[RequestHead]:
    """A request with ``token`` in an Authorization header, and one with it in the cookie."""
    headers = CIMultiDict(Authorization=f"token {token}")
    if session is not None:
        headers["Cookie"] = f"jupyterhub-session-id={session}"
    return [RequestHead("GET", PREFIX + "x", headers, False, False), _cookie_head(token, session)]


async def _statuses(auth: HubAuthenticator, heads: list[RequestHead]) -> list[object]:
    decisions = [await auth.decide(head) for head in heads]
    return [d if isinstance(d, Admitted) else getattr(d, "status", d) for d in decisions]


ALICE = {"name": "alice", "scopes": ["access:servers!server=alice/"]}


async def test_a_credential_let_in_is_let_in_again_for_ten_seconds_without_asking() -> None:
    clock = _Clock()
    auth = HubAuthenticator(load_config({"upstream": "http://127.0.0.1:1"}, ENV), clock=clock)
    _hub_said(auth, "alice-token", ALICE)
    alice, other = _heads("alice-token"), _heads("other-token")
    assert await _statuses(auth, alice) == [Admitted(ALICE)] * 2
    auth._oauth.cache.clear()  # from now on, every question goes to the hub, which is down
    clock.now += 9.9
    assert await _statuses(auth, alice) == [Admitted(ALICE)] * 2
    assert await _statuses(auth, other) == [502, 502]  # another credential: asked
    clock.now += 0.2
    assert await _statuses(auth, alice) == [502, 502]  # ten seconds on: asked again


async def test_a_refused_user_is_asked_about_every_time() -> None:
    auth = HubAuthenticator(load_config({"upstream": "http://127.0.0.1:1"}, ENV), clock=_Clock())
    _hub_said(auth, "bob-token", {"name": "bob", "scopes": ["access:servers!server=bob/"]})
    bob = _heads("bob-token")
    assert await _statuses(auth, bob) == [403, 403]
    auth._oauth.cache.clear()
    assert await _statuses(auth, bob) == [502, 502]


async def test_a_browser_login_is_remembered_only_in_its_hub_session() -> None:
    """As in jupyterhub-singleuser: logging out of the hub clears its session cookie, so nothing
    remembered about the login serves the browser's next request; the hub is asked (here: the
    hub is down, 502), which after a logout says the session's token is gone."""
    auth = HubAuthenticator(load_config({"upstream": "http://127.0.0.1:1"}, ENV), clock=_Clock())
    _hub_said(auth, "alice-token", ALICE, session="s1")
    assert await _statuses(auth, [_cookie_head("alice-token", "s1")]) == [Admitted(ALICE)]
    # admitted a moment ago in session s1: after a logout (no session cookie) or in another
    # session, neither HubOAuth's cache nor rproxy's own answers
    assert await _statuses(auth, [_cookie_head("alice-token")]) == [502]
    assert await _statuses(auth, [_cookie_head("alice-token", "s2")]) == [502]
    assert await _statuses(auth, [_cookie_head("alice-token", "s1")]) == [Admitted(ALICE)]


async def test_an_api_token_keeps_its_cache_whatever_the_session() -> None:
    auth = HubAuthenticator(load_config({"upstream": "http://127.0.0.1:1"}, ENV), clock=_Clock())
    _hub_said(auth, "alice-token", ALICE)
    token = _heads("alice-token")[0]
    in_session = _heads("alice-token", session="s1")[0]
    assert await _statuses(auth, [token, in_session]) == [Admitted(ALICE)] * 2


@pytest.mark.parametrize(
    ("accept", "status"),
    [pytest.param("text/html", 302, id="page"), pytest.param("*/*", 403, id="api-client")],
)
async def test_a_cookie_whose_token_the_hub_revoked_is_cleared(accept: str, status: int) -> None:
    auth = HubAuthenticator(load_config({"upstream": "http://127.0.0.1:1"}, ENV), clock=_Clock())
    _hub_said(auth, "revoked", None)  # the hub: no such token
    refusal = await auth.decide(_cookie_head("revoked", accept=accept))
    assert isinstance(refusal, web.StreamResponse)
    assert refusal.status == status
    cleared = refusal.cookies["rproxy-jupyterhub-user-alice"]
    assert (cleared.value, cleared["max-age"], cleared["path"]) == ("", "0", PREFIX)


async def test_hub_cache_seconds_bounds_every_cache_of_a_token() -> None:
    clock = _Clock()
    config = load_config({"upstream": "http://127.0.0.1:1", "hub_cache_seconds": 3}, ENV)
    auth = HubAuthenticator(config, clock=clock)
    assert auth._oauth.cache_max_age == 3  # HubOAuth keeps the hub's answers this long
    _hub_said(auth, "alice-token", ALICE)
    alice = _heads("alice-token")
    assert await _statuses(auth, alice) == [Admitted(ALICE)] * 2
    auth._oauth.cache.clear()
    clock.now += 2.9
    assert await _statuses(auth, alice) == [Admitted(ALICE)] * 2  # rproxy's own, within 3 s
    clock.now += 0.2
    assert await _statuses(auth, alice) == [502, 502]


async def test_hub_cache_seconds_zero_asks_the_hub_every_time() -> None:
    config = load_config({"upstream": "http://127.0.0.1:1", "hub_cache_seconds": 0}, ENV)
    auth = HubAuthenticator(config, clock=_Clock())
    _hub_said(auth, "alice-token", ALICE)  # what HubOAuth would answer from its cache: unused
    assert await _statuses(auth, _heads("alice-token")) == [502, 502]


def test_hub_cache_seconds_is_a_number_of_seconds() -> None:
    with pytest.raises(ConfigError, match="--hub-cache-seconds"):
        load_config({"upstream": "http://127.0.0.1:1", "hub_cache_seconds": -1}, ENV)
