"""Reflected XSS in the pages rproxy writes itself (the class of CVE-2024-35225).

Markup payloads go into the path, the query, and request headers of requests that end in a page
rproxy writes: 502 (upstream down), 504 (upstream silent), the "starting" page, the "application
did not start" page (with the payload in the command's own output), the noVNC-missing page, the
404 outside the prefix, the 400 for a dot segment, the trailing-slash redirects, the refused
WebSocket, and the API's JSON. Proven for each: the payload never appears unescaped, the
Content-Type is the one the page is (text/plain, text/html, application/json) and
``X-Content-Type-Options: nosniff`` is set. The 400 for a request too malformed to parse (which
aiohttp's server writes, and rproxy/server.py words) is held to the same rule in
tests/test_server.py, with markup in the method, the target, a header and the version.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from attack_support import Exchange, Recorder, exchange
from support import CHILD, StartProxy, free_port, running, supervisor_of, without_own_reload

from rproxy.supervisor import ChildState

PAYLOADS = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(1)>",
)
RAW = "/<script>alert(1)</script>/%22%3E%3Cimg%20src=x%20onerror=alert(1)%3E"
QUERY = "?q=<script>alert(1)</script>&r=%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E"


def _request(target: str) -> bytes:
    return (
        f"GET {target} HTTP/1.1\r\nHost: proxy.example\r\n"
        f"User-Agent: {PAYLOADS[0]}\r\nReferer: {PAYLOADS[1]}\r\nX-Evil: {PAYLOADS[2]}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


def _safe(answer: Exchange, content_type: bytes) -> None:
    body = answer.body.lower()
    if answer.statuses[0] == 503 and content_type == b"text/html":  # the starting/failed page
        (policy,) = answer.headers("Content-Security-Policy")
        body = without_own_reload(answer.body, policy).lower()
    for marker in (b"<script", b"<img", b"<svg"):
        assert marker not in body, answer.raw[:400]
    assert answer.headers("X-Content-Type-Options") == [b"nosniff"], answer.head
    (given,) = answer.headers("Content-Type")
    assert given.split(b";")[0].strip() == content_type


@pytest.mark.parametrize(
    ("target", "status"),
    [
        pytest.param("/user/a/x" + RAW + QUERY, 502, id="502"),
        pytest.param("/elsewhere" + RAW + QUERY, 404, id="404-outside"),
        pytest.param("/user/a/%2e%2e" + RAW + QUERY, 400, id="400-dot-segment"),
        pytest.param("/user/a" + QUERY, 307, id="307-prefix"),
        pytest.param("/user/a/ide" + QUERY, 307, id="307-mount"),
        pytest.param("/user/a/vnc/" + RAW[1:] + QUERY, 503, id="503-novnc-missing"),
        pytest.param("/user/a/websockify" + QUERY, 400, id="400-not-a-websocket"),
    ],
)
async def test_plain_pages_never_reflect_markup(
    target: str, status: int, start_proxy: StartProxy, tmp_path: Path
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    proxy = await start_proxy(
        down,
        prefix="/user/a/",
        service=[f"/ide/={down}"],
        vnc_upstream="127.0.0.1:9",
        novnc_dir=str(tmp_path),
    )
    async with asyncio.timeout(15):
        answer = await exchange(proxy, _request(target))
    assert answer.statuses == [status]
    _safe(answer, b"text/plain")


async def test_the_504_page_never_reflects_markup(
    recorder: Recorder, start_proxy: StartProxy
) -> None:
    recorder.silent = True
    proxy = await start_proxy(recorder.url, request_timeout=0.2)
    async with asyncio.timeout(15):
        answer = await exchange(proxy, _request("/x" + RAW + QUERY))
    assert answer.statuses == [504]
    _safe(answer, b"text/plain")


@pytest.mark.parametrize("endpoint", ["api", "api/status", "api/user", "api/services"])
async def test_api_json_never_reflects_markup(
    endpoint: str, start_proxy: StartProxy, recorder: Recorder
) -> None:
    proxy = await start_proxy(recorder.url)
    async with asyncio.timeout(15):
        answer = await exchange(proxy, _request(f"/{endpoint}{QUERY}"))
    assert answer.statuses[0] in (200, 503)
    _safe(answer, b"application/json")


async def test_the_starting_and_failed_pages_escape_everything(tmp_path: Path) -> None:
    never = tmp_path / "never"
    say = [arg for payload in PAYLOADS for arg in ("--say", payload)]
    argv = ["--ready-timeout", "0.5", "--", *CHILD, *say, "--wait-for", str(never)]
    async with asyncio.timeout(60), running(*argv) as (url, launcher):
        supervisor = await supervisor_of(launcher)
        starting = await exchange(url, _request("/x" + RAW + QUERY))
        await supervisor.wait_for(ChildState.FAILED)
        failed = await exchange(url, _request("/x" + RAW + QUERY))
    assert starting.statuses == [503]
    _safe(starting, b"text/html")
    assert failed.statuses == [503]
    _safe(failed, b"text/html")
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in failed.body  # the output is there, escaped
    assert b"&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in failed.body
    assert failed.headers("Content-Security-Policy")
