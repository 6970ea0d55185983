"""Tests for the bundled demo app in ``examples/demo``: its routes in-process, and its command line
as a real subprocess on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from yarl import URL

from examples.demo.app import MAX_EVENT_COUNT, make_demo_app

REPO_ROOT = Path(__file__).resolve().parents[2]
LISTENING_LINE = re.compile(r"demo listening on (http://127\.0\.0\.1:(\d+)/)")

DemoClient = TestClient[web.Request, web.Application]


class _UrlCollector(HTMLParser):
    """Collects the values of the attributes that hold URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"href", "src", "action"} and value is not None:
                self.urls.append(value)


def _page_urls(text: str) -> list[str]:
    collector = _UrlCollector()
    collector.feed(text)
    collector.close()
    return collector.urls


def _assert_root_relative(urls: list[str]) -> None:
    assert urls
    for url in urls:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url


def _events_body(count: int) -> str:
    return "".join(f"data: tick {tick}\n\n" for tick in range(1, count + 1))


@pytest.fixture
async def client(aiohttp_client: AiohttpClient) -> DemoClient:
    return await aiohttp_client(make_demo_app())


async def test_index_links_root_relative_urls(client: DemoClient) -> None:
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    text = await resp.text()
    urls = _page_urls(text)
    _assert_root_relative(urls)
    expected = {"/about", "/static/style.css", "/static/logo.svg", "/static/app.js", "/echo"}
    assert expected <= set(urls)
    assert '<form method="post" action="/echo">' in text
    assert 'name="message"' in text


async def test_app_js_uses_root_relative_endpoints(client: DemoClient) -> None:
    resp = await client.get("/static/app.js")
    assert resp.status == 200
    text = await resp.text()
    assert 'new EventSource("events")' in text
    assert 'new URL("ws", document.baseURI)' in text
    assert 'location.protocol === "https:" ? "wss:" : "ws:"' in text


async def test_about_links_back(client: DemoClient) -> None:
    resp = await client.get("/about")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    urls = _page_urls(await resp.text())
    _assert_root_relative(urls)
    assert "/" in urls


async def test_echo_escapes_message(client: DemoClient) -> None:
    resp = await client.post("/echo", data={"message": "<script>alert(1)</script> & co"})
    assert resp.status == 200
    assert resp.content_type == "text/html"
    text = await resp.text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in text
    assert "<script" not in text
    urls = _page_urls(text)
    _assert_root_relative(urls)
    assert "/" in urls


async def test_echo_without_message_is_bad_request(client: DemoClient) -> None:
    resp = await client.post("/echo", data={"other": "x"})
    assert resp.status == 400


async def test_events_streams_requested_count(client: DemoClient) -> None:
    resp = await client.get("/events", params={"count": "3", "interval": "0"})
    assert resp.status == 200
    assert resp.content_type == "text/event-stream"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert await resp.text() == _events_body(3)


async def test_events_count_is_capped(client: DemoClient) -> None:
    resp = await client.get("/events", params={"count": "1000000", "interval": "0"})
    assert resp.status == 200
    assert await resp.text() == _events_body(MAX_EVENT_COUNT)


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("count=abc", id="count-not-int"),
        pytest.param("count=1.5", id="count-float"),
        pytest.param("count=0", id="count-zero"),
        pytest.param("count=-2", id="count-negative"),
        pytest.param("interval=abc", id="interval-not-number"),
        pytest.param("interval=-1", id="interval-negative"),
        pytest.param("interval=nan", id="interval-nan"),
        pytest.param("interval=inf", id="interval-inf"),
    ],
)
async def test_events_rejects_bad_query(client: DemoClient, query: str) -> None:
    resp = await client.get(f"/events?{query}")
    assert resp.status == 400


async def test_websocket_echoes_text_and_binary(client: DemoClient) -> None:
    async with client.ws_connect("/ws") as ws:
        await ws.send_str("hello <ws>")
        text_msg = await ws.receive(timeout=5)
        assert text_msg.type is WSMsgType.TEXT
        assert text_msg.data == "hello <ws>"

        await ws.send_bytes(b"\x00\x01binary\xff")
        binary_msg = await ws.receive(timeout=5)
        assert binary_msg.type is WSMsgType.BINARY
        assert binary_msg.data == b"\x00\x01binary\xff"


@pytest.mark.parametrize(
    ("path", "content_type", "needle"),
    [
        pytest.param("/static/style.css", "text/css", "body {", id="stylesheet"),
        pytest.param("/static/logo.svg", "image/svg+xml", "<svg", id="logo"),
    ],
)
async def test_static_files_served(
    client: DemoClient, path: str, content_type: str, needle: str
) -> None:
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.content_type == content_type
    assert needle in await resp.text()


async def test_headers_reports_request(client: DemoClient) -> None:
    path = URL("/headers?next=%2Fabout", encoded=True)
    resp = await client.get(path, headers={"X-Demo": "yes"})
    assert resp.status == 200
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["method"] == "GET"
    assert body["raw_path"] == "/headers?next=%2Fabout"
    assert ["X-Demo", "yes"] in body["headers"]


async def test_command_line_serves_and_shuts_down_cleanly() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "examples.demo.app",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(20):
            line = (await proc.stdout.readline()).decode()
            match = LISTENING_LINE.fullmatch(line.rstrip("\n"))
            assert match is not None, line
            base_url = match.group(1)
            assert int(match.group(2)) > 0

            async with aiohttp.ClientSession(base_url=base_url) as session:
                async with session.get("/") as resp:
                    assert resp.status == 200
                    assert "/static/style.css" in await resp.text()

                async with (
                    session.get("/events", params={"interval": "30"}) as events,
                    session.ws_connect("/ws") as ws,
                ):
                    assert await events.content.readline() == b"data: tick 1\n"
                    proc.terminate()
                    close_msg = await ws.receive()
                    assert close_msg.type is WSMsgType.CLOSE
                    assert await events.content.read() == b"\n"

            stdout, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode()
        assert stdout == b""
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
