"""Several services behind one front door: routing, path stripping, per-service rewriting,
WebSockets, states in api/services and api/status, and one child crashing while others serve.

The services are real: aiohttp apps on 127.0.0.1 for the upstreams that are already running, and
tests/apps/child_app.py as child processes rproxy starts and supervises.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from support import CHILD, StartUpstream, listen, ready, running
from yarl import URL

from rproxy.app import make_runner
from rproxy.cli import parse_config
from rproxy.errors import ConfigError
from rproxy.keys import SERVICES
from rproxy.services import VncService
from rproxy.sources import load_config, read_config_file
from rproxy.supervisor import ChildState

PREFIX = "/user/me/"


def _echo(name: str) -> web.Application:
    """An upstream that says who it is, which path it got and the prefix it was told."""

    async def echo(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/page.html"):
            page = (
                '<html><body><a href="/next">n</a><a href="/user/me/keep/own">o</a></body></html>'
            )
            return web.Response(text=page, content_type="text/html")
        if request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await ws.send_str(f"{name}: {msg.data}")
            return ws
        return web.json_response(
            {"name": name, "path": request.raw_path,
             "prefix": request.headers.get("X-Forwarded-Prefix")}
        )  # fmt: skip

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


@pytest.fixture
async def front(start_upstream: StartUpstream) -> AsyncIterator[URL]:
    upstreams = {name: str(await start_upstream(_echo(name))) for name in "abcd"}
    config = load_config(
        {
            "upstream": upstreams["a"],
            "prefix": PREFIX,
            "services": [
                {"name": "docs", "path": "/docs/", "upstream": upstreams["b"]},
                {"name": "deep", "path": "docs/deep", "upstream": upstreams["c"], "rewriters": []},
                {
                    "name": "keep",
                    "path": "/keep/",
                    "upstream": upstreams["d"],
                    "strip_path": False,
                    "description": "keeps its mount",
                },
            ],
        },
        {},
    )
    runner = make_runner(config)
    try:
        yield await listen(runner) / PREFIX.strip("/")
    finally:
        await runner.cleanup()


async def _json(http: aiohttp.ClientSession, url: URL) -> Any:
    async with http.get(url, allow_redirects=False) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


@pytest.mark.parametrize(
    ("path", "name", "seen", "prefix"),
    [
        pytest.param("x?q=1", "a", "/x?q=1", "/user/me", id="main"),
        pytest.param("docs/a?q=1", "b", "/a?q=1", "/user/me/docs", id="mount-stripped"),
        pytest.param("docs/", "b", "/", "/user/me/docs", id="mount-root"),
        pytest.param("docs/deep/b", "c", "/b", "/user/me/docs/deep", id="longest-mount"),
        pytest.param("docs/deeper", "b", "/deeper", "/user/me/docs", id="not-a-segment-match"),
        pytest.param("keep/c", "d", "/user/me/keep/c", None, id="strip-path-false"),
        pytest.param("keeper", "a", "/keeper", "/user/me", id="outside-every-mount"),
    ],
)
async def test_a_path_goes_to_the_longest_mount_it_is_under(
    front: URL, http: aiohttp.ClientSession, path: str, name: str, seen: str, prefix: str | None
) -> None:
    got = await _json(http, URL(f"{front}/{path}", encoded=True))
    assert got == {"name": name, "path": seen, "prefix": prefix}


async def test_a_mount_without_its_slash_redirects_to_it(
    front: URL, http: aiohttp.ClientSession
) -> None:
    async with http.get(URL(f"{front}/docs?x=1", encoded=True), allow_redirects=False) as resp:
        assert resp.status == 307
        assert resp.headers["Location"] == "/user/me/docs/?x=1"


async def test_each_service_rewrites_with_its_own_mount_and_rewriters(
    front: URL, http: aiohttp.ClientSession
) -> None:
    async def page(path: str) -> str:
        async with http.get(URL(f"{front}/{path}", encoded=True)) as resp:
            return await resp.text()

    assert 'href="/user/me/next"' in await page("page.html")
    assert 'href="/user/me/docs/next"' in await page("docs/page.html")
    assert 'href="/next"' in await page("docs/deep/page.html"), "rewriters = [] leaves it"
    # a service that sees the whole path serves under its public mount path already: what it
    # sends there stays, a root-relative URL outside it is taken into it
    kept = await page("keep/page.html")
    assert 'href="/user/me/keep/own"' in kept
    assert 'href="/user/me/keep/next"' in kept


async def test_websockets_reach_each_service(front: URL, http: aiohttp.ClientSession) -> None:
    for path, name in (("ws", "a"), ("docs/ws", "b"), ("keep/ws", "d")):
        async with http.ws_connect(URL(f"{front}/{path}", encoded=True)) as ws:
            await ws.send_str("hi")
            assert await ws.receive_str() == f"{name}: hi"


async def test_api_services_lists_every_service(front: URL, http: aiohttp.ClientSession) -> None:
    listed = (await _json(http, front / "api/services"))["services"]
    assert [(s["name"], s["path"], s["state"]) for s in listed] == [
        ("default", "/user/me/", "external"),
        ("docs", "/user/me/docs/", "external"),
        ("deep", "/user/me/docs/deep/", "external"),
        ("keep", "/user/me/keep/", "external"),
    ]
    assert listed[3]["description"] == "keeps its mount"
    assert all(s["port"] and s["url"] for s in listed)
    status = await _json(http, front / "api/status")
    assert status["services"] == {"docs": "reachable", "deep": "reachable", "keep": "reachable"}


async def test_a_crashing_child_restarts_while_the_others_serve(
    http: aiohttp.ClientSession,
) -> None:
    child = [*CHILD, "--port", "{port}"]
    config = load_config(
        {
            "command": child,
            "ready_check_path": "/argv",
            "prefix": PREFIX,
            "services": [
                {"name": "one", "path": "/one/", "command": child, "ready_check_path": "/argv"},
                {
                    "name": "two",
                    "path": "/two/",
                    "command": child,
                    "ready_check_path": "/argv",
                    "required": False,
                },
            ],
        },
        {},
    )
    runner = make_runner(config)
    try:
        front = await listen(runner) / PREFIX.strip("/")
        main, one, two = runner.app[SERVICES].all
        supervisors = [await ready(s.launcher) for s in (main, one, two) if s.launcher]
        pids = [s.pid for s in supervisors]
        assert len(set(pids)) == 3, "each service has its own child"
        status = await _json(http, front / "api/status")
        assert status["services"] == {"one": "ready", "two": "ready"}

        async with http.get(front / "one/crash") as resp:  # answers, then the child exits
            assert resp.status == 200
        crashed = supervisors[1]
        await crashed.wait_for(ChildState.RESTARTING, ChildState.STARTING)
        for _ in range(5):  # the other children serve meanwhile
            assert await _json(http, front / "two/pid") == pids[2]
            assert await _json(http, front / "pid") == pids[0]
        await crashed.wait_for(ChildState.READY)
        assert await _json(http, front / "one/pid") != pids[1]
        listed = {s["name"]: s for s in (await _json(http, front / "api/services"))["services"]}
        assert (listed["one"]["restarts"], listed["two"]["restarts"]) == (1, 0)
        assert listed["one"]["state"] == listed["two"]["state"] == "ready"
    finally:
        await runner.cleanup()


async def test_status_is_503_while_a_required_service_is_down(
    start_upstream: StartUpstream, http: aiohttp.ClientSession
) -> None:
    main = await start_upstream(_echo("a"))
    gone = "http://127.0.0.1:9"  # nothing listens there
    for required, expected in ((True, 503), (False, 200)):
        config = load_config(
            {"upstream": str(main), "services": [
                {"name": "gone", "path": "/gone/", "upstream": gone, "required": required}]},
            {},
        )  # fmt: skip
        runner = make_runner(config)
        try:
            front = await listen(runner)
            async with http.get(front / "api/status") as resp:
                assert resp.status == expected
                assert (await resp.json())["services"] == {"gone": "unreachable"}
            async with http.get(front / "gone/x") as resp:
                assert resp.status == 502, "its own failure"
            assert (await _json(http, front / "x"))["name"] == "a", "the main one still serves"
        finally:
            await runner.cleanup()


@pytest.mark.parametrize(
    ("services", "problem"),
    [
        pytest.param([{"name": "x", "path": "/"}], "must not be /", id="root-path"),
        pytest.param(
            [{"name": "x", "path": "/x/"}], "one of upstream, command, vnc or desktop", id="neither"
        ),
        pytest.param(
            [{"name": "x", "path": "/x/", "upstream": "http://h:1", "command": ["a"]}],
            "one of upstream, command, vnc or desktop",
            id="both",
        ),
        pytest.param(
            [{"name": "Bad Name", "path": "/x/", "upstream": "http://h:1"}],
            "lower-case",
            id="bad-name",
        ),
        pytest.param(
            [{"name": "default", "path": "/x/", "upstream": "http://h:1"}],
            "main upstream",
            id="reserved-name",
        ),
        pytest.param(
            [{"name": "x", "path": "/a b/", "upstream": "http://h:1"}], "not allowed", id="bad-path"
        ),
        pytest.param(
            [
                {"name": "x", "path": "/x/", "upstream": "http://h:1"},
                {"name": "y", "path": "x", "upstream": "http://h:2"},
            ],
            "same path",
            id="same-path",
        ),
        pytest.param(
            [
                {"name": "x", "path": "/x/", "upstream": "http://h:1"},
                {"name": "x", "path": "/y/", "upstream": "http://h:2"},
            ],
            "same name",
            id="same-name",
        ),
        pytest.param([{"path": "/x/", "upstream": "http://h:1"}], "without a name", id="no-name"),
        pytest.param(
            [{"name": "x", "path": "/x/", "upstream": "http://h:1", "start": "request"}],
            "needs a command",
            id="lazy-upstream",
        ),
    ],
)
def test_a_bad_service_table_is_refused(services: list[dict[str, Any]], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_config({"upstream": "http://127.0.0.1:1", "services": services}, {})


@pytest.mark.parametrize(
    ("path", "options", "clash"),
    [
        pytest.param("/api/", {}, "covers /api, which rproxy's API answers", id="the-api"),
        pytest.param(
            "/api/status/", {}, "covers /api/status, which rproxy's API", id="an-endpoint"
        ),
        pytest.param("/_rproxy/", {"strip_prefix": False}, "covers /_rproxy/api,", id="moved-api"),
        pytest.param("/ours/", {"api_prefix": "ours"}, "covers /ours, which", id="api-prefix"),
        pytest.param(
            "/websockify/", {"vnc_upstream": "127.0.0.1:5901"}, "the VNC bridge", id="vnc-bridge"
        ),
        pytest.param(
            "/vnc/x/", {"vnc_upstream": "127.0.0.1:5901"}, "the noVNC client", id="novnc-client"
        ),
        pytest.param("/api/v2/", {}, None, id="beside-the-apis-endpoints"),
        pytest.param("/apis/", {}, None, id="a-longer-name"),
        pytest.param("/api/", {"no_api": True}, None, id="no-api"),
        pytest.param("/websockify/", {}, None, id="no-vnc-bridge"),
    ],
)
def test_a_service_over_rproxys_own_paths_is_refused(
    path: str, options: dict[str, Any], clash: str | None
) -> None:
    settings = {
        "upstream": "http://127.0.0.1:1",
        "services": [{"name": "x", "path": path, "upstream": "http://h:1"}],
        **options,
    }
    if clash is None:
        assert load_config(settings, {}).services[0].path == path
        return
    with pytest.raises(ConfigError, match=f"service 'x': its path {path} covers") as error:
        load_config(settings, {})
    assert clash in str(error.value)
    assert "give the service another path" in str(error.value)


def test_the_config_file_checks_each_service_table(tmp_path: Any) -> None:
    path = tmp_path / "rproxy.toml"
    path.write_text(
        'upstream = "http://127.0.0.1:1"\n[[services]]\nname = "x"\npath = "/x/"\nport = 1\n'
    )
    with pytest.raises(ConfigError, match="service 1: unknown setting 'port'"):
        read_config_file(str(path))
    path.write_text('[[services]]\nname = "x"\npath = "/x/"\ncommand = "not a list"\n')
    with pytest.raises(ConfigError, match="command must be list"):
        read_config_file(str(path))
    path.write_text(
        'upstream = "http://127.0.0.1:1"\n[[services]]\nname = "x"\npath = "/x/"\n'
        'command = ["app", "--port", "{port}"]\nstart = "request"\nstrip_path = false\n'
    )
    (service,) = load_config({}, {}, read_config_file(str(path))).services
    assert (service.start_on_request, service.strip_path, service.child is not None) == (
        True, False, True,
    )  # fmt: skip
    assert service.name == "x"


async def test_the_documented_example_runs(
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(__file__).parent.parent
    monkeypatch.chdir(root)  # the example's commands are relative to the repository
    example = read_config_file("examples/services.toml")
    assert "examples/services.toml" in (root / "docs" / "configuration.md").read_text()
    config = load_config({"ip": "127.0.0.1", "port": 0}, {}, example)
    runner = make_runner(config)
    try:
        front = await listen(runner) / "user/me"
        main, files, staging = runner.app[SERVICES].all
        assert staging.launcher is not None
        for service in (main, files):
            assert service.launcher is not None
            await ready(service.launcher)
        async with http.get(front / "") as resp:
            assert resp.status == 200
            assert "/user/me/static/" in await resp.text(), "the demo page, rewritten"
        async with http.get(front / "files/app.py") as resp:
            assert resp.status == 200
            assert "Demo web app" in await resp.text()
        assert (await _json(http, front / "api/status"))["status"] == "ok"
        async with http.get(front / "staging/") as resp:
            assert resp.status == 503, "starting on this first request"
        await ready(staging.launcher)
        async with http.get(front / "staging/about") as resp:
            assert resp.status == 200
    finally:
        await runner.cleanup()


async def test_a_vnc_service_gets_its_bridge_and_novnc_under_its_path(
    start_upstream: StartUpstream, http: aiohttp.ClientSession
) -> None:
    banner = b"RFB 003.008\n"

    async def fake_vnc(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(banner)  # then echoes what the viewer sends
        while data := await reader.read(65536):
            writer.write(data)
        writer.close()

    server = await asyncio.start_server(fake_vnc, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = load_config(
        {"upstream": str(await start_upstream(_echo("a"))), "prefix": PREFIX,
         "services": [{"name": "desktop", "path": "/desktop/", "vnc": f"127.0.0.1:{port}"}]},
        {},
    )  # fmt: skip
    runner = make_runner(config)
    try:
        front = await listen(runner) / "user/me"
        async with http.ws_connect(front / "desktop/websockify", protocols=("binary",)) as ws:
            assert await ws.receive_bytes() == banner
            await ws.send_bytes(b"\x01\x02\x03")
            assert await ws.receive_bytes() == b"\x01\x02\x03"
        async with http.get(front / "desktop/", allow_redirects=False) as resp:
            assert (resp.status, resp.headers["Location"]) == (307, "/user/me/desktop/vnc/")
        async with http.get(front / "desktop/vnc/", allow_redirects=False) as resp:
            if resp.status == 307:  # noVNC is installed (CI installs Debian's novnc)
                location = URL(resp.headers["Location"])
                assert location.query["path"] == "user/me/desktop/websockify"
            else:
                assert resp.status == 503
        async with http.get(front / "desktop/other") as resp:
            assert resp.status == 404
        assert (await _json(http, front / "x"))["name"] == "a", "the main upstream as before"
        listed = (await _json(http, front / "api/services"))["services"]
        desktop = listed[1]
        assert (desktop["name"], desktop["port"], desktop["state"]) == ("desktop", port, "external")
        status = await _json(http, front / "api/status")
        assert status["services"] == {"desktop": "reachable"}
    finally:
        await runner.cleanup()
        server.close()


async def test_a_desktop_service_runs_its_own_vnc_server_and_app(
    start_upstream: StartUpstream, http: aiohttp.ClientSession
) -> None:
    app = [sys.executable, "-c", "import time; time.sleep(600)"]  # stands in for an X app
    config = load_config(
        {"upstream": str(await start_upstream(_echo("a"))), "prefix": PREFIX,
         "services": [{"name": "desktop", "path": "/desktop/", "desktop": True, "command": app,
                       "desktop_geometry": "640x480"}]},
        {},
    )  # fmt: skip
    runner = make_runner(config)
    try:
        front = await listen(runner) / "user/me"
        desktop = runner.app[SERVICES].all[1]
        assert isinstance(desktop, VncService)
        assert desktop.desktop is not None
        assert await asyncio.wait_for(desktop.desktop.wait_ready(), 60) is ChildState.READY
        async with http.ws_connect(front / "desktop/websockify", protocols=("binary",)) as ws:
            assert (await ws.receive_bytes()).startswith(b"RFB 003.00"), "Xvnc's banner"
        listed = (await _json(http, front / "api/services"))["services"]
        assert (listed[1]["name"], listed[1]["state"]) == ("desktop", "ready")
        assert listed[1]["socket"]
        assert listed[1]["description"] == "a desktop rproxy runs"
        assert (await _json(http, front / "api/status"))["services"] == {"desktop": "ready"}
    finally:
        await runner.cleanup()


def test_the_command_line_shorthand_adds_running_servers() -> None:
    config = parse_config(
        ["--service", "/docs/=http://127.0.0.1:9000", "--service", "api/v2=unix:/run/api.sock",
         "--", "app", "--port", "{port}"],
        {},
    )  # fmt: skip
    docs, api = config.services
    assert (docs.name, docs.path, str(docs.upstream.url if docs.upstream else "")) == (
        "docs", "/docs/", "http://127.0.0.1:9000",
    )  # fmt: skip
    assert (api.name, api.path, api.upstream and api.upstream.unix_socket) == (
        "api-v2", "/api/v2/", "/run/api.sock",
    )  # fmt: skip
    assert config.child is not None, "the command stays the main service"
    with pytest.raises(ConfigError, match="give PATH=URL"):
        parse_config(["--service", "http://127.0.0.1:9000", "--upstream", "http://h:1"], {})


def _serves_under_its_base_url(base: str) -> web.Application:
    """An app that, as Jupyter Server, serves only under its base URL and answers 404 elsewhere."""

    async def app(request: web.Request) -> web.StreamResponse:
        if not request.raw_path.startswith(base):
            return web.Response(status=404, text="not under my base_url")
        rest = request.raw_path[len(base) :]
        if rest == "page.html":
            links = (
                f'<a href="{base}static/a.js">a</a><a href="http://{request.host}{base}abs">b</a>'
            )
            return web.Response(text=f"<html><body>{links}</body></html>", content_type="text/html")
        if rest == "redirect":
            raise web.HTTPFound(f"{base}lab")
        if rest == "ws":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for msg in ws:
                await ws.send_str(f"{request.raw_path}: {msg.data}")
            return ws
        return web.json_response(
            {"path": request.raw_path, "prefix": request.headers.get("X-Forwarded-Prefix")}
        )

    upstream = web.Application()
    upstream.router.add_route("*", "/{tail:.*}", app)
    return upstream


@pytest.fixture
async def keeps_prefix(start_upstream: StartUpstream) -> AsyncIterator[URL]:
    upstream = await start_upstream(_serves_under_its_base_url(PREFIX))
    config = load_config({"upstream": str(upstream), "prefix": PREFIX, "strip_prefix": False}, {})
    runner = make_runner(config)
    try:
        yield await listen(runner)
    finally:
        await runner.cleanup()


async def test_no_strip_prefix_gives_the_app_the_whole_path(
    keeps_prefix: URL, http: aiohttp.ClientSession
) -> None:
    got = await _json(http, keeps_prefix / "user/me/tree/x" % {"q": "1"})
    assert got == {"path": "/user/me/tree/x?q=1", "prefix": None}  # nothing was taken off
    async with http.get(keeps_prefix / "user/me", allow_redirects=False) as response:
        assert (response.status, response.headers["Location"]) == (307, "/user/me/")
    async with http.get(keeps_prefix / "elsewhere") as response:
        assert response.status == 404  # rproxy's: outside the prefix
        assert "not under my base_url" not in await response.text()
    async with http.ws_connect(keeps_prefix / "user/me/ws") as ws:
        await ws.send_str("hi")
        assert await ws.receive_str() == "/user/me/ws: hi"


async def test_no_strip_prefix_leaves_the_apps_api_to_it(
    keeps_prefix: URL, http: aiohttp.ClientSession
) -> None:
    assert (await _json(http, keeps_prefix / "user/me/api/status"))["path"] == "/user/me/api/status"
    own = await _json(http, keeps_prefix / "user/me/_rproxy/api/status")
    assert own["status"] == "ok"


async def test_no_strip_prefix_prefixes_nothing_twice(
    keeps_prefix: URL, http: aiohttp.ClientSession
) -> None:
    async with http.get(keeps_prefix / "user/me/page.html") as response:
        page = await response.text()
    assert 'href="/user/me/static/a.js"' in page
    assert 'href="/user/me/abs"' in page  # the app's own absolute URL, as a path
    async with http.get(keeps_prefix / "user/me/redirect", allow_redirects=False) as response:
        assert (response.status, response.headers["Location"]) == (302, "/user/me/lab")


def test_no_strip_prefix_moves_the_api_unless_told_where() -> None:
    def api(options: dict[str, Any]) -> str | None:
        return load_config({"upstream": "http://127.0.0.1:1", **options}, {}).api_prefix

    assert api({}) == "api"
    assert api({"strip_prefix": False}) == "_rproxy/api"
    assert api({"strip_prefix": False, "api_prefix": "ours"}) == "ours"
    parsed = parse_config(["--no-strip-prefix", "--", "app", "{port}"], {})
    assert (parsed.strip_prefix, parsed.api_prefix) == (False, "_rproxy/api")


async def test_no_strip_prefix_warns_of_a_command_without_base_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    argv = [*CHILD, "--port", "{port}"]
    config = load_config({"command": argv, "prefix": PREFIX, "strip_prefix": False}, {})
    runner = make_runner(config)
    try:
        await listen(runner)
    finally:
        await runner.cleanup()
    assert "its command has no {base_url}" in caplog.text
    assert "--no-strip-prefix" in caplog.text


@pytest.mark.parametrize(
    ("keep", "base_url", "hint"),
    [
        pytest.param(True, "/app", "or drop --no-strip-prefix", id="kept-but-served-elsewhere"),
        pytest.param(False, "{base_url}", "add --no-strip-prefix", id="stripped-but-served-there"),
        pytest.param(True, "{base_url}", None, id="kept-and-served-there"),
        pytest.param(False, "", None, id="stripped-and-served-at-root"),
    ],
)
async def test_an_app_that_cannot_use_the_prefix_is_named_once(
    caplog: pytest.LogCaptureFixture, keep: bool, base_url: str, hint: str | None
) -> None:
    """Its first page is a 404: the log says why, once, and what to change."""
    argv = [*CHILD, "--port", "{port}", "--base-url", base_url]
    options = ["--prefix", PREFIX, *(["--no-strip-prefix"] if keep else [])]
    async with running(*options, "--", *argv) as (url, launcher):
        await ready(launcher)
        async with aiohttp.ClientSession() as http:
            for _ in range(2):
                async with http.get(url / "user/me/argv") as response:
                    assert response.status == (404 if hint else 200)
    said = [r for r in caplog.records if "answers 404 for" in r.getMessage()]
    if hint is None:
        assert said == []
    else:
        assert len(said) == 1
        assert said[0].levelno == logging.WARNING
        assert hint in said[0].getMessage()
        assert "docs/apps.md" in said[0].getMessage()


async def test_no_strip_prefix_polls_readiness_under_the_prefix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An app that serves only under its prefix is asked there, not at "/" (a 404 in its log)."""
    caplog.set_level(logging.INFO, "rproxy.supervisor")
    argv = ["--prefix", PREFIX, "--no-strip-prefix", "--", sys.executable, "-m", "http.server",
            "--bind", "127.0.0.1", "{port}"]  # fmt: skip
    async with running(*argv) as (_, launcher):
        await ready(launcher)
    asked = [r.getMessage() for r in caplog.records if '"GET ' in r.getMessage()]
    assert asked  # http.server logs each request; its output is all read once it stopped
    assert all('"GET /user/me/ HTTP/1.1"' in line for line in asked), asked
