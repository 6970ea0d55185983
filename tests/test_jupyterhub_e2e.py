"""rproxy as the single-user server of a REAL JupyterHub, behind configurable-http-proxy.

Every test runs against two hubs: the newest JupyterHub 6.x (or later) of ``.venv``, and the
newest 5.x from ``.cache/hub5`` (scripts/setup.sh makes both); each hub spawns the rproxy of its own
environment, so rproxy's OAuth client runs on that hub's jupyterhub package (PKCE on 6.x, the
plain flow on 5.x, which has no PKCE helpers).

The hub (DummyAuthenticator, SimpleLocalProcessSpawner) spawns ``rproxy [options] -- <app>``: the
demo app for the default server, the small child app for a named one. A client logs in to the hub,
follows the OAuth redirects through rproxy and reaches the app; a second user and anonymous
clients are refused on HTTP and WebSocket; logging out of the hub ends access at once; activity
reaches the hub, and JupyterHub's idle culler (a hub service) stops a server that only anonymous
clients knocked on, never one whose user keeps using it. Everything runs on 127.0.0.1; the whole
module takes about a minute per hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from jupyter_pages import run_one_plus_one
from playwright.async_api import Browser, BrowserContext, Page, expect
from playwright.async_api import TimeoutError as PlaywrightTimeout
from support import (
    CHILD,
    CODE_SERVER_ENTRY,
    CODE_SERVER_NODE,
    HUB_HOST,
    SLOW_APPS,
    SLOW_TESTS,
    alive,
    free_port,
    fruit_db,
    raw_exchange,
    status_of,
    wait_for_server,
)
from yarl import URL

ROOT = Path(__file__).resolve().parent.parent
CHP = ROOT / ".cache" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
# where each hub's jupyterhub, rproxy and idle culler are installed, by the hub's major version
HUB_ENVIRONMENTS = {6: Path(sys.executable).parent, 5: ROOT / ".cache" / "hub5" / "bin"}
CULL_TIMEOUT = 6  # seconds without activity before the idle culler stops a server
CULL_EVERY = 2
DEMO = [sys.executable, str(ROOT / "examples" / "demo" / "app.py"), "--port", "{port}"]
BIN = Path(sys.executable).parent  # .venv's, which has the apps that are not Jupyter
TEST_APPS = ROOT / "tests" / "apps"


def _apps(data: Path) -> dict[str, tuple[list[str], list[str]]]:
    """docs/apps.md's commands by the start of the user's name: rproxy's options, the app's
    command; the slower group's data (a database, an event log) in ``data``."""
    slow = SLOW_APPS
    return {
        "panel-": ([], [str(BIN / "panel"), "serve", str(TEST_APPS / "panel_app.py"),
                        "--address", "127.0.0.1", "--port", "{port}"]),
        "streamlit-": ([], [str(BIN / "streamlit"), "hello", "--server.port", "{port}",
                            "--server.headless", "true"]),
        "bokeh-": ([], [str(BIN / "bokeh"), "serve", str(TEST_APPS / "bokeh_app.py"),
                        "--address", "127.0.0.1", "--port", "{port}"]),
        "marimo-": ([], [str(BIN / "marimo"), "run", str(TEST_APPS / "marimo_notebook.py"),
                         "--host", "127.0.0.1", "--port", "{port}", "--headless", "--no-token"]),
        "gradio-": (["--ready-timeout", "60"],
                    ["env", "GRADIO_ANALYTICS_ENABLED=False", sys.executable,
                     str(TEST_APPS / "gradio_app.py"), "--port", "{port}",
                     "--root-path", "{base_url}"]),
        "dash-": ([], [sys.executable, str(TEST_APPS / "dash_app.py"), "--port", "{port}",
                       "--requests-prefix", "{base_url}/"]),
        "voila-": (["--ready-timeout", "60"],
                   [str(BIN / "voila"), str(TEST_APPS / "voila_widgets.ipynb"), "--port={port}",
                    "--no-browser", "--Voila.base_url={base_url}/", "--Voila.server_url=/"]),
        "datasette-": (["--unix-socket"],
                       [str(slow / "datasette"), "serve", str(data / "fruit.db"),
                        "--uds", "{unix_socket}", "--setting", "base_url", "{base_url}/"]),
        "shiny-": (["--unix-socket"],
                   [str(slow / "uvicorn"), "shiny_app:app", "--app-dir", str(TEST_APPS),
                    "--uds", "{unix_socket}"]),
        "tensorboard-": ([], [str(slow / "tensorboard"), "--logdir", str(data / "logs"),
                              "--host", "127.0.0.1", "--port", "{port}", "--load_fast=false"]),
        "code-server-": (["--unix-socket", "--rewriters", "headers,html"],
                         ["env", f"XDG_RUNTIME_DIR={data / 'run'}", f"TMPDIR={data / 'run'}",
                          str(CODE_SERVER_NODE), str(CODE_SERVER_ENTRY), "--auth", "none",
                          "--socket", "{unix_socket}", "--disable-telemetry",
                          "--disable-update-check", "--abs-proxy-base-path", "{base_url}",
                          str(data / "project")]),
        # started by the first request that passed the hub's login: {origin_host} is the
        # browser's host name, never the hub's own checks'
        "mlflow-": (["--unix-socket", "--ready-timeout", "120", "--ready-check-path", "/health"],
                    ["env", "MLFLOW_DISABLE_TELEMETRY=true", str(slow / "mlflow"), "server",
                     "--backend-store-uri", f"sqlite:///{data / 'mlflow.db'}",
                     "--artifacts-destination", str(data / "mlartifacts"), "--workers", "1",
                     "--uvicorn-opts", "--uds {unix_socket}", "--allowed-hosts", "{origin_host}",
                     "--cors-allowed-origins", "http://{origin_host},https://{origin_host}"]),
    }  # fmt: skip


ADMIN_TOKEN = secrets.token_hex(16)
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
LOGIN_COOKIE = "rproxy-jupyterhub-user-{}"  # rproxy's, for the OAuth client of user {}'s server


_CONFIG = """
c = get_config()  # noqa
c.JupyterHub.bind_url = "http://127.0.0.1:{port}/"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}/"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.auth_token = {proxy_token!r}
c.JupyterHub.db_url = "sqlite:///{state}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{state}/cookie_secret"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{state}/home/{{username}}"
c.JupyterHub.allow_named_servers = True
c.Spawner.cmd = [{rproxy!r}, "--last-activity-interval", "1", "--forward-user-info",
                 "--ready-timeout", "30"]
c.Spawner.args = ["--", *{demo!r}]
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.Spawner.environment = {{"PYTHONPATH": {root!r}, "JUPYTER_CONFIG_DIR": "{state}/jupyter"}}
c.JupyterHub.services = [
    {{"name": "tester", "api_token": {admin_token!r}}},
    {{"name": "idle-culler",
      "command": [{python!r}, "-m", "jupyterhub_idle_culler", "--timeout={cull_timeout}",
                  "--cull-every={cull_every}"]}},
]
c.JupyterHub.load_roles = [
    {{"name": "tester", "services": ["tester"],
      "scopes": ["admin:users", "admin:servers", "tokens", "list:users", "read:users"]}},
    {{"name": "idle-culler", "services": ["idle-culler"],
      "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]}},
]

def _jupyter(spawner, app):  # docs/apps.md's recipe; --allow-root: the tests run as root
    return {{
        "cmd": [*spawner.cmd, "--no-strip-prefix", "--unix-socket", "--"],
        "args": [{jupyter!r}, app, "--no-browser", "--allow-root",
                 "--ServerApp.sock={{unix_socket}}", "--ServerApp.base_url={{base_url}}/",
                 "--IdentityProvider.token=", "--ServerApp.allow_remote_access=True",
                 "--ServerApp.tornado_settings=hub_prefix=/hub/",
                 "--ServerApp.tornado_settings=hub_host=", "--ServerApp.tornado_settings=user="],
        "default_url": "/lab" if app == "lab" else "/tree",
    }}

def _per_server(spawner):
    if spawner.name == "child":  # a named server runs the child app
        spawner.args = ["--", *{child!r}, "--port", "{{port}}"]
    if spawner.user.name.startswith("cull-"):  # real activity only: the culler may stop it
        spawner.cmd = [*spawner.cmd, "--no-force-alive"]
    for start, app in (("lab-", "lab"), ("nb-", "notebook")):  # JupyterLab, Notebook 7
        if spawner.user.name.startswith(start):
            for name, value in _jupyter(spawner, app).items():
                setattr(spawner, name, value)
    for start, (options, args) in {apps!r}.items():  # not Jupyter, as docs/apps.md runs them
        if spawner.user.name.startswith(start):
            spawner.cmd = [*spawner.cmd, *options]
            spawner.args = ["--", *args]

c.Spawner.pre_spawn_hook = _per_server
"""


class Hub:
    def __init__(
        self,
        url: URL,
        process: subprocess.Popen[bytes],
        log: Path,
        version: str,
        routes: tuple[URL, str],
    ) -> None:
        self.url = url
        self.process = process
        self.log = log
        self.version = version  # as the hub's API says
        self.routes = routes  # configurable-http-proxy's route table and its token

    def api(self, path: str) -> URL:
        return self.url / "hub/api" / path


@pytest.fixture(
    scope="module", params=sorted(HUB_ENVIRONMENTS, reverse=True), ids="jupyterhub-{}".format
)
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    if not CHP.exists():
        pytest.fail(f"{CHP} is missing: run scripts/setup.sh (it installs it with npm)")
    major: int = request.param
    where = HUB_ENVIRONMENTS[major]
    if not (where / "jupyterhub").exists():
        pytest.fail(f"{where / 'jupyterhub'} is missing: run scripts/setup.sh (it installs it)")
    state = tmp_path_factory.mktemp(f"hub{major}")
    port, api_port, proxy_token = free_port(), free_port(), secrets.token_hex(16)
    config = _CONFIG.format(
        port=port, hub_port=free_port(), api_port=api_port, chp=str(CHP),
        proxy_token=proxy_token, state=state, rproxy=str(where / "rproxy"), demo=DEMO,
        jupyter=str(where / "jupyter"),
        root=str(ROOT), admin_token=ADMIN_TOKEN, child=CHILD, python=str(where / "python"),
        cull_timeout=CULL_TIMEOUT, cull_every=CULL_EVERY, apps=_apps(state / "data"),
    )  # fmt: skip
    (state / "jupyterhub_config.py").write_text(config)
    # JupyterLab asks to rebuild itself, in a dialog over the page, when an installed package
    # brings an old-style extension (dash does); the tests' users have no use for that
    if SLOW_TESTS:  # the data of the slower group's apps: Datasette's database, an event log
        (state / "data").mkdir()
        fruit_db(state / "data" / "fruit.db")
        events = [str(SLOW_APPS / "python"), str(TEST_APPS / "tensorboard_events.py")]
        subprocess.run([*events, str(state / "data" / "logs")], check=True, timeout=60)
        (state / "data" / "run").mkdir()  # code-server's sockets, and its folder
        (state / "data" / "project").mkdir()
        (state / "data" / "project" / "hello.py").write_text('print("hello from rproxy")\n')
    labconfig = state / "jupyter" / "labconfig"
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text('{"buildCheck": false, "buildAvailable": false}')
    log = state / "hub.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(where / "jupyterhub"), "-f", "jupyterhub_config.py"],
            cwd=state,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PATH": f"{where}:{os.environ['PATH']}"},
        )
    url = URL(f"http://127.0.0.1:{port}")
    try:
        # the hub answers its API through the proxy: both are up and the route is set
        version = str(json.loads(wait_for_server(url / "hub/api/", process, log))["version"])
        assert int(version.split(".")[0]) >= major if major > 5 else version.startswith("5.")
        routes = (URL(f"http://127.0.0.1:{api_port}/api/routes"), proxy_token)
        yield Hub(url, process, log, version, routes)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
async def admin() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        headers={"Authorization": f"token {ADMIN_TOKEN}"},
        timeout=aiohttp.ClientTimeout(total=60),
    ) as session:
        yield session


async def _browser(hub: Hub, user: str) -> aiohttp.ClientSession:
    """A client with the hub's login cookie for ``user``, as a browser has after logging in."""
    session = aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=60)
    )
    async with session.get(hub.url / "hub/login") as response:
        page = await response.text()
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page)
    form = {"username": user, "password": "any", **({"_xsrf": xsrf.group(1)} if xsrf else {})}
    async with session.post(hub.url / "hub/login", data=form, allow_redirects=False) as response:
        assert response.status == 302, await response.text()
    return session


async def _ensure_user(hub: Hub, admin: aiohttp.ClientSession, user: str) -> None:
    async with admin.post(hub.api("users"), json={"usernames": [user]}) as response:
        assert response.status in (201, 409), await response.text()  # 409: made by another test


async def _start(
    hub: Hub, admin: aiohttp.ClientSession, user: str, server: str = "", *, lazy: bool = False
) -> None:
    """Start ``user``'s server and wait until its app is ready; ``lazy``: until the hub counts
    it as started (rproxy starts the app on the first request that passes the login)."""
    await _ensure_user(hub, admin, user)
    if server in (await _user_model(admin, hub, user))["servers"]:
        return  # started by an earlier test of this module
    path = f"users/{user}/servers/{server}" if server else f"users/{user}/server"
    async with admin.post(hub.api(path)) as response:
        assert response.status in (201, 202), await response.text()
    if lazy:
        async with asyncio.timeout(90):
            while not (await _user_model(admin, hub, user))["servers"][server]["ready"]:  # noqa: ASYNC110 (the hub pushes nothing: poll, bounded by the timeout)
                await asyncio.sleep(0.3)
        return
    # The hub counts the server as up once rproxy answers (as with jhsingle-native-proxy: rproxy
    # shows its own "starting" page meanwhile); the app is ready when api/status says 200.
    status = hub.url / "user" / user / (f"{server}/" if server else "") / "api/status"
    token = {"Authorization": f"token {await _token(admin, hub, user)}"}
    async with asyncio.timeout(90):
        while True:  # no push from either side: poll until ready, bounded by the timeout
            async with admin.get(status, headers=token) as response:
                if response.status == 200:
                    return
            await asyncio.sleep(0.3)


async def _user_model(admin: aiohttp.ClientSession, hub: Hub, user: str) -> Any:
    async with admin.get(hub.api(f"users/{user}")) as response:
        assert response.status == 200
        return await response.json()


async def _token(
    admin: aiohttp.ClientSession, hub: Hub, user: str, scopes: list[str] | None = None
) -> str:
    await _ensure_user(hub, admin, user)
    model: dict[str, Any] = {"note": "test"}
    if scopes is not None:
        model["scopes"] = scopes
    async with admin.post(hub.api(f"users/{user}/tokens"), json=model) as response:
        assert response.status == 201, await response.text()
        return str((await response.json())["token"])


async def test_a_user_logs_in_through_oauth_and_reaches_the_app(
    hub: Hub, admin: aiohttp.ClientSession
) -> None:
    await _start(hub, admin, "alice")
    browser = await _browser(hub, "alice")
    async with browser:
        async with browser.get(hub.url / "user/alice/", headers=HTML) as response:
            assert response.status == 200
            assert "rproxy demo" in (await response.text()).lower()
            hops = [URL(str(r.headers["Location"])) for r in response.history]
        # rproxy sent the browser to the hub's authorize endpoint (not under the user's prefix),
        # with state and PKCE, and took it back at its own oauth_callback
        authorize = next(u for u in hops if "oauth2/authorize" in u.path)
        assert authorize.path == "/hub/api/oauth2/authorize"
        assert {"state", "client_id", "redirect_uri"} <= set(authorize.query)
        if hub.version.startswith("5."):  # no PKCE helpers in jupyterhub 5.x: the plain flow
            assert "code_challenge" not in authorize.query
        else:
            assert authorize.query["code_challenge_method"] == "S256"
            assert authorize.query["code_challenge"]
        assert any(u.path == "/user/alice/oauth_callback" for u in hops)
        cookie = next(c for c in browser.cookie_jar if c.key.startswith("rproxy-"))
        assert cookie["path"] == "/user/alice/"
        assert cookie["httponly"]
        # with the cookie: no more redirects; the app sees the real user, never a forged one
        forged = {"X-CDSDASHBOARDS-JH-USER": '{"name": "mallory"}'}
        async with browser.get(hub.url / "user/alice/headers", headers=forged) as response:
            assert response.history == ()
            assert response.headers["X-JupyterHub-Version"]  # on forwarded pages too
            seen = await response.json()
        identities = [v for k, v in seen["headers"] if k.lower() == "x-cdsdashboards-jh-user"]
        assert len(identities) == 1
        assert json.loads(identities[0])["name"] == "alice"
        cookies = " ".join(v for k, v in seen["headers"] if k.lower() == "cookie")
        assert "rproxy-" not in cookies  # the login token stays between the browser and rproxy
        async with browser.ws_connect(hub.url / "user/alice/ws") as ws:
            await ws.send_str("through the hub")
            assert "through the hub" in await ws.receive_str()
        async with browser.get(hub.url / "user/alice/api") as response:
            assert response.headers["X-JupyterHub-Version"]
            overview = await response.json()
        assert (overview["mode"], overview["user"]) == ("jupyterhub", "alice")
    # rproxy's log (the spawner's output, in the hub's) has none of the INFO lines alembic writes
    # when jupyterhub is imported
    assert not re.search(r"^\S+ \S+ INFO alembic", hub.log.read_text(), re.MULTILINE)


async def test_others_are_refused_on_http_and_websocket(
    hub: Hub, admin: aiohttp.ClientSession
) -> None:
    await _start(hub, admin, "alice")
    bob = await _token(admin, hub, "bob")
    alice = await _token(admin, hub, "alice")
    # alice's own token, but without access to her server; and the hub admin service's token
    narrow = await _token(admin, hub, "alice", scopes=["read:users:name!user=alice"])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as anon:
        async with anon.get(hub.url / "user/alice/", allow_redirects=False) as response:
            assert response.status == 403  # an API client: no redirect to a login page
        async with anon.get(hub.url / "user/alice/", headers=HTML, allow_redirects=False) as r:
            assert r.status == 302
            assert URL(r.headers["Location"]).path == "/hub/api/oauth2/authorize"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await anon.ws_connect(hub.url / "user/alice/ws")
        assert refused.value.status == 403
        for token in (bob, narrow, ADMIN_TOKEN):
            as_other = {"Authorization": f"token {token}"}
            async with anon.get(hub.url / "user/alice/", headers=as_other) as response:
                assert response.status == 403
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await anon.ws_connect(hub.url / "user/alice/ws", headers=as_other)
            assert refused.value.status == 403
        as_alice = {"Authorization": f"token {alice}"}
        async with anon.get(hub.url / "user/alice/api/status", headers=as_alice) as response:
            assert response.status == 200
            assert (await response.json())["status"] == "ok"
        async with anon.ws_connect(hub.url / "user/alice/ws", headers=as_alice) as ws:
            await ws.send_str("token")
            assert "token" in await ws.receive_str()


async def test_activity_reaches_the_hub(hub: Hub, admin: aiohttp.ClientSession) -> None:
    await _start(hub, admin, "alice")
    before = (await _user_model(admin, hub, "alice"))["servers"][""]["last_activity"]
    async with asyncio.timeout(30):
        while True:  # rproxy reports every second (--last-activity-interval 1)
            model = await _user_model(admin, hub, "alice")
            if model["servers"][""]["last_activity"] != before:
                break
            await asyncio.sleep(0.3)
    assert model["servers"][""]["last_activity"] > before


async def test_a_named_server_and_its_shutdown(hub: Hub, admin: aiohttp.ClientSession) -> None:
    await _start(hub, admin, "carol", "child")
    browser = await _browser(hub, "carol")
    async with browser, browser.get(hub.url / "user/carol/child/pid", headers=HTML) as response:
        assert response.status == 200
        pid = await response.json()
        hops = [URL(str(r.headers["Location"])) for r in response.history]
    assert any(u.path == "/hub/api/oauth2/authorize" for u in hops)
    assert any(u.path == "/user/carol/child/oauth_callback" for u in hops)
    assert alive(pid)
    async with admin.delete(hub.api("users/carol/servers/child")) as response:
        assert response.status in (202, 204)
    await asyncio.wait_for(_exited(pid), timeout=60)  # the hub stops rproxy, rproxy its command


async def _exited(pid: int) -> None:
    """Return when process ``pid`` (not our child) has exited: its pidfd becomes readable."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    gone = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, gone.set)
    try:
        await gone.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


@pytest.mark.parametrize(
    "logout",
    [
        pytest.param("hub/logout", id="the-hubs-logout"),
        # JupyterLab's Hub menu "Log Out": as jupyterhub-singleuser, rproxy sends it to the hub's
        pytest.param("user/dave/logout", id="the-servers-logout"),
    ],
)
async def test_logging_out_of_the_hub_ends_access_at_once(
    hub: Hub, admin: aiohttp.ClientSession, logout: str
) -> None:
    await _start(hub, admin, "dave")
    browser = await _browser(hub, "dave")
    async with browser:
        async with browser.get(hub.url / "user/dave/", headers=HTML) as response:
            assert response.status == 200  # logged in through OAuth
        async with browser.get(hub.url / "user/dave/headers") as response:
            assert (response.status, response.history) == (200, ())  # from rproxy's cookie
        async with browser.get(hub.url / logout) as response:
            assert response.status == 200
            assert response.url.path == "/hub/login"  # the hub's logout ends at its login
        assert not [c for c in browser.cookie_jar if c.key == "jupyterhub-session-id"]
        # the very next requests: the hub revoked the session's token; nothing cached serves it
        async with browser.get(
            hub.url / "user/dave/", headers=HTML, allow_redirects=False
        ) as response:
            assert response.status == 302
            assert URL(response.headers["Location"]).path == "/hub/api/oauth2/authorize"
            assert "the app" not in await response.text()
        # rproxy cleared its login cookie along (the new login's state cookie stays)
        assert LOGIN_COOKIE.format("dave") not in {c.key for c in browser.cookie_jar}
    # the stale login cookie, kept by a browser that ignored the clearing: still refused
    stale = await _browser(hub, "dave")
    async with stale:
        async with stale.get(hub.url / "user/dave/", headers=HTML) as response:
            assert response.status == 200
        login = next(c for c in stale.cookie_jar if c.key == LOGIN_COOKIE.format("dave"))
        cookie = {"Cookie": f"{login.key}={login.value}"}
        async with stale.get(hub.url / "hub/logout") as response:
            assert response.status == 200
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=60)
    ) as replay:
        async with replay.get(hub.url / "user/dave/headers", headers=cookie) as response:
            assert response.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await replay.ws_connect(hub.url / "user/dave/ws", headers=cookie)
        assert refused.value.status == 403


async def _direct(hub: Hub, user: str) -> URL:
    """rproxy's own address for ``user``'s default server, from configurable-http-proxy's routes."""
    table, token = hub.routes
    async with (
        aiohttp.ClientSession() as session,
        session.get(table, headers={"Authorization": f"token {token}"}) as response,
    ):
        routes = await response.json()
    route = routes.get(f"/user/{user}") or routes[f"/user/{user}/"]
    return URL(route["target"])


async def _server_running(admin: aiohttp.ClientSession, hub: Hub, user: str) -> bool:
    return "" in (await _user_model(admin, hub, user))["servers"]


async def _knock_anonymously(direct: URL, user: str) -> None:
    """What anyone who can reach the server's port can send without a login, until it is gone
    (the culler may stop it at any moment): refusals, a login redirect, rproxy's 404, 307, 405."""
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=30)
    ) as anon:
        prefix = direct / "user" / user
        try:
            for method, url, headers, status in [
                ("GET", prefix / "", HTML, 302),  # to the hub's login
                ("GET", prefix / "api/status", {}, 403),
                ("POST", prefix / "x", {}, 403),
                ("TRACE", prefix / "", {}, 403),
                ("GET", direct / "elsewhere", {}, 404),  # outside the prefix
                ("GET", prefix, {}, 307),  # the bare prefix
            ]:
                async with anon.request(
                    method, url, headers=headers, allow_redirects=False
                ) as response:
                    assert response.status == status, (method, url)
                    if status == 302:
                        location = URL(response.headers["Location"])
                        assert location.path == "/hub/api/oauth2/authorize"
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await anon.ws_connect(prefix / "ws")
            assert refused.value.status == 403
            raw = await raw_exchange(direct, b"CONNECT x:1 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status_of(raw) == 405
        except (aiohttp.ClientConnectionError, ConnectionError):
            return  # culled: rproxy stopped (or is stopping) mid-knock


async def _keep_using(hub: Hub, token: str, user: str) -> None:
    """What a user does, at a user's pace, until cancelled: a page through the hub's proxy and a
    WebSocket message, again and again."""
    headers = {"Authorization": f"token {token}"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.ws_connect(hub.url / "user" / user / "ws", headers=headers) as ws,
    ):
        while True:
            async with session.get(hub.url / "user" / user / "headers", headers=headers) as r:
                assert r.status == 200
            await ws.send_str("still here")
            assert "still here" in await ws.receive_str()
            await asyncio.sleep(0.5)  # a user's pace; the culler runs on its own clock


async def test_the_idle_culler_stops_a_server_only_anonymous_clients_knock_on(
    hub: Hub, admin: aiohttp.ClientSession
) -> None:
    await _start(hub, admin, "cull-busy")
    user = asyncio.create_task(_keep_using(hub, await _token(admin, hub, "cull-busy"), "cull-busy"))
    try:
        await _start(hub, admin, "cull-idle")
        direct = await _direct(hub, "cull-idle")
        async with asyncio.timeout(CULL_TIMEOUT * 6):
            while await _server_running(admin, hub, "cull-idle"):  # until the culler stops it
                await _knock_anonymously(direct, "cull-idle")
        # culled; the one in use stays through as long again, whatever the culler does
        observed = asyncio.create_task(asyncio.sleep(CULL_TIMEOUT + 2 * CULL_EVERY))
        await asyncio.wait({user, observed}, return_when=asyncio.FIRST_COMPLETED)
        assert not user.done(), user  # the user's requests all went through
        assert await _server_running(admin, hub, "cull-busy")
    finally:
        user.cancel()
        await asyncio.wait({user})
    culler = [line for line in hub.log.read_text().splitlines() if "cull-" in line]
    assert any("Culling server cull-idle" in line for line in culler), "\n".join(culler[-20:])
    assert not any("Culling server cull-busy" in line for line in culler)


JUPYTER_HOST = HUB_HOST  # a host name, as on a real hub: Jupyter's own Host check sees it


async def _log_in(page: Page, base: URL, user: str) -> None:
    """Log in on the hub's own login page, as a person does."""
    await page.goto(str(base / "hub/login"))
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", "any")
    async with page.expect_navigation():
        await page.click("[type=submit]")


async def _logged_in(
    hub: Hub, hub_browser: Browser, user: str
) -> tuple[BrowserContext, Page, str, list[str]]:
    """A new browser context logged in to the hub, by its host name, as ``user``: the context, its
    page, the user's server's URL (with its slash), and the page's failed requests, kept on."""
    base = hub.url.with_host(JUPYTER_HOST)
    context = await hub_browser.new_context()
    page = await context.new_page()
    failed: list[str] = []
    _record_failures(page, failed)
    await _log_in(page, base, user)
    return context, page, str(base / "user" / user) + "/", failed


def _record_failures(page: Page, failed: list[str]) -> None:
    """Add "<status or error> <url>" to ``failed`` for each request of ``page`` that fails."""
    page.on("requestfailed", lambda r: failed.append(f"{r.failure} {r.url}"))
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)


@pytest.mark.parametrize(
    ("user", "app"),
    [
        pytest.param("lab-ann", "lab", id="jupyterlab"),
        pytest.param("nb-ann", "tree", id="notebook7"),
    ],
)
@pytest.mark.slow_on("jupyterhub-5")
async def test_jupyter_in_place_of_jupyterhub_singleuser(
    hub: Hub, admin: aiohttp.ClientSession, hub_browser: Browser, user: str, app: str
) -> None:
    """docs/apps.md's recipe: JupyterLab (or Notebook 7) under its prefix with --no-strip-prefix,
    Jupyter's own authentication off, rproxy logging the browser in through the hub.
    On the 5.x hub in the slower group only: what differs there, the OAuth flow without PKCE,
    is proven in CI by the other tests of this module."""
    await _start(hub, admin, user)  # until {prefix}api/status answers: Jupyter's own, here
    context, page, ours, failed = await _logged_in(hub, hub_browser, user)
    await page.goto(ours + app)
    if app == "lab":
        await page.locator(".jp-LauncherCard").first.click()  # a new notebook
        notebook = page
    else:
        async with context.expect_page() as opened:  # Notebook 7 opens it in a new tab
            await page.get_by_text("New", exact=True).first.click()
            await page.locator(".lm-Menu-itemLabel", has_text="Python 3").click()
        notebook = await opened.value
        _record_failures(notebook, failed)
        select = notebook.get_by_role("button", name="Select Kernel")
        with contextlib.suppress(PlaywrightTimeout):  # asked only when there is a choice
            await select.click(timeout=10_000)
    assert await run_one_plus_one(notebook) == "2"  # through the kernel's WebSocket
    await notebook.screenshot(path=str(hub.log.parent / f"{user}.png"))
    # every request of the app's that failed, but those the page cancelled itself (a poll that
    # a newer one replaced: net::ERR_ABORTED)
    failures = [f for f in failed if f.partition(" ")[2].startswith(ours)]
    assert [f for f in failures if not f.startswith("net::ERR_ABORTED ")] == []
    await notebook.get_by_text("File", exact=True).first.click()
    async with context.expect_page() as opened:
        await notebook.get_by_text("Hub Control Panel").click()
    panel = await opened.value
    await panel.wait_for_load_state()
    assert URL(panel.url).path == "/hub/home"
    assert await panel.get_by_text("Stop My Server").count() == 1
    # File → Log Out: the server's {prefix}logout, which rproxy sends on to the hub's logout
    notebook.on("dialog", lambda dialog: dialog.accept())  # "leave the unsaved notebook?"
    await notebook.bring_to_front()
    await notebook.get_by_text("File", exact=True).first.click()
    await notebook.get_by_text("Log Out", exact=True).first.click()  # the Hub's and Jupyter's
    await notebook.wait_for_url(re.compile(r".*/hub/login(\?.*)?$"))
    await notebook.goto(ours + app)  # logged out of the hub: back to its login, not to Jupyter
    assert URL(notebook.url).path == "/hub/login"
    await context.close()


async def _click(page: Page, button: str, after: str) -> None:
    await page.click(button)
    await page.wait_for_selector(f"text={after}", timeout=30_000)


async def _gradio(page: Page) -> None:
    await page.locator("#name textarea").fill("Ann")
    await page.get_by_role("button", name="Submit").click()
    greeting = page.locator("#greeting textarea")
    await expect(greeting).to_have_value("Hello, Ann! (from gradio)", timeout=30_000)


async def _dash(page: Page) -> None:
    await page.locator("#name").fill("Ann")
    await expect(page.locator("#greeting")).to_have_text("Hello, Ann! (from dash)", timeout=30_000)


async def _datasette(page: Page) -> None:  # a table, then its next page: the prefix once
    await page.goto(page.url + "fruit/fruit?_size=1")
    await page.get_by_role("link", name="Next page").click()
    await expect(page.get_by_text("banana", exact=True)).to_be_visible(timeout=30_000)
    path = URL(page.url).path
    assert path.endswith("/fruit/fruit")
    assert path.count("/user/") == 1, path  # Datasette's base_url, rproxy's prefix: not twice


async def _shiny(page: Page) -> None:  # the server's output follows the input
    await page.locator("#name").fill("Ann")
    await expect(page.locator("#greeting")).to_have_text("Hello, Ann! (from shiny)", timeout=30_000)


async def _tensorboard(page: Page) -> None:  # the loss chart of both runs
    card = page.locator("scalar-card", has_text="loss")
    await expect(card.locator("line-chart")).to_be_visible(timeout=30_000)
    await expect(card.locator("tb-data-table-content-row")).to_have_count(2, timeout=30_000)


async def _mlflow(page: Page) -> None:  # its experiments page, from its own link
    await page.get_by_role("link", name="Experiments").first.click()
    await expect(page.get_by_role("link", name="Default")).to_be_visible(timeout=30_000)


async def _code_server(page: Page) -> None:  # a file opened from the explorer shows its text
    await page.locator(".explorer-folders-view .monaco-list-row", has_text="hello.py").click()
    lines = page.locator(".part.editor .monaco-editor .view-lines")
    await expect(lines).to_contain_text("hello from rproxy", timeout=60_000)


# What an app's own page gets from it, as without rproxy, as (status, end of the path under the
# server's prefix): MLflow's UI asks who the user is (there is no login without --app-name
# basic-auth); code-server's asks for vsda, Microsoft's module, not in code-server; and rproxy's
# "Starting…" page of an app that starts on the first request, at the prefix itself ("").
_APPS_OWN_ANSWERS = {
    "mlflow-": {("503", ""), ("404", "ajax-api/2.0/mlflow/users/current")},
    "code-server-": {("404", "/vsda.js"), ("404", "/vsda_bg.wasm")},
}
# how long the first page may take to show, in ms, where it is more than 30 s
_SLOW_TO_SHOW = {"mlflow-": 150_000, "code-server-": 90_000}


def _own_answer(user: str, failure: str) -> bool:
    status, _, path = failure.partition(" ")
    own = next((v for k, v in _APPS_OWN_ANSWERS.items() if user.startswith(k)), set())
    return any(status == s and (path == end or (end and path.endswith(end))) for s, end in own)


_SLOW = pytest.mark.slow  # tested standalone in CI; on a hub in the slower group


@pytest.mark.parametrize(
    ("user", "path", "before", "interact"),
    [
        # Panel: a button whose Python callback, over the WebSocket, changes the page
        pytest.param("panel-ann", "panel_app", "Server says: 3",
                     lambda p: _click(p, ".add-one button", "Server says: 4"), id="panel"),
        # Streamlit: its page is drawn from the WebSocket's messages; a link in it loads a demo
        pytest.param("streamlit-ann", "", "Welcome to Streamlit",
                     lambda p: _click(p, "text=Plotting demo", "Plotting demo"), id="streamlit",
                     marks=_SLOW),
        pytest.param("bokeh-ann", "bokeh_app", "Clicked 0 times",
                     lambda p: _click(p, ".click-me button", "Clicked 1 times"), id="bokeh",
                     marks=_SLOW),
        pytest.param("marimo-ann", "", "marimo says 42, clicked 0 times",
                     lambda p: _click(p, "button:has-text('Add one')", "clicked 1 times"),
                     id="marimo", marks=_SLOW),
        pytest.param("gradio-ann", "", "rproxy gradio test", _gradio, id="gradio", marks=_SLOW),
        pytest.param("dash-ann", "", "Hello, nobody! (from dash)", _dash, id="dash", marks=_SLOW),
        # Voila: an ipywidgets button whose callback runs in the kernel, over its WebSocket
        pytest.param("voila-ann", "", "voila says 42, clicked 0 times",
                     lambda p: _click(p, "button:has-text('Add one')", "clicked 1 times"),
                     id="voila", marks=_SLOW),
        # the apps of .cache/slow-apps (scripts/setup-slow-apps.sh)
        pytest.param("datasette-ann", "", "4 rows in 1 table", _datasette, id="datasette",
                     marks=_SLOW),
        pytest.param("shiny-ann", "", "rproxy shiny test", _shiny, id="shiny", marks=_SLOW),
        pytest.param("tensorboard-ann", "", "alpha-run", _tensorboard, id="tensorboard",
                     marks=_SLOW),
        # MLflow starts on the browser's first request, by its host name (10 to 65 s): the
        # user sees rproxy's "Starting…" page, which reloads itself until MLflow answers
        pytest.param("mlflow-ann", "", "Welcome to MLflow", _mlflow, id="mlflow",
                     marks=[_SLOW, pytest.mark.timeout(300)]),
        pytest.param("code-server-ann", "", "hello.py", _code_server, id="code-server",
                     marks=[_SLOW, pytest.mark.timeout(240)]),
    ],
)  # fmt: skip
@pytest.mark.slow_on("jupyterhub-5")
async def test_apps_that_are_not_jupyter_on_the_hub(
    hub: Hub,
    admin: aiohttp.ClientSession,
    hub_browser: Browser,
    user: str,
    path: str,
    before: str,
    interact: Callable[[Page], Awaitable[None]],
) -> None:
    """docs/apps.md's recipes with the prefix stripped, spawned by the hub, in Chromium reaching
    the hub by a host name: the user logs in, the app renders, no request under the server's
    prefix fails, its WebSocket (if it has one) connects there, and an interaction makes a round
    trip. Panel in CI on the newest hub; the others, and the 5.x hub, in the slower group."""
    lazy = user.startswith("mlflow-")
    await _start(hub, admin, user, lazy=lazy)
    context, page, ours, failed = await _logged_in(hub, hub_browser, user)
    sockets: list[str] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    await page.goto(ours + path)
    to_show = next((v for k, v in _SLOW_TO_SHOW.items() if user.startswith(k)), 30_000)
    await page.wait_for_selector(f"text={before}", timeout=to_show)
    await interact(page)
    await page.screenshot(path=str(hub.log.parent / f"{user}.png"))
    failures = [f.replace(ours, "", 1) for f in failed if f.partition(" ")[2].startswith(ours)]
    failures = [f for f in failures if not f.startswith("net::ERR_ABORTED ")]
    assert [f for f in failures if not _own_answer(user, f)] == []
    assert all(URL(socket).path.startswith(f"/user/{user}/") for socket in sockets), sockets
    if user.startswith(("panel-", "streamlit-", "bokeh-", "marimo-", "voila-", "shiny-", "code-")):
        assert sockets  # their pages live on a WebSocket
    await context.close()
