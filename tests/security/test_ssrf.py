"""Host confusion and SSRF: no request shape reaches anything but the service its path names.

A real rproxy at ``/user/a/`` fronts two recording upstreams: the main one, and ``ide`` mounted
with ``--service /ide/=...``. A third recorder, the victim, stands for any other machine; its
address is put everywhere an attacker could put it: in the path after ``@``, ``//``, ``\\``,
``%2F``, ``%5C``, ``%40``, dot segments plain and encoded, absolute-form and authority-form
request targets (``GET http://victim/``, ``CONNECT victim``), the Host header, X-Forwarded-Host,
Forwarded, X-Original-URL, WebSocket upgrades. Proven for every shape: the victim gets zero
connections, and the request reaches exactly the service its path is mounted under (or none),
so the ``ide`` mount cannot be used to reach the main service outside its path, nor the reverse.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest
from attack_support import Recorder, StartRecorder, exchange
from support import StartProxy

Where = Literal["main", "ide", "nowhere"]
WS = (
    "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)
# {v} is the victim's host:port, {h} its host alone.
SHAPES = [
    pytest.param("GET /user/a/@{v}/x", "", "main", id="at-in-path"),
    pytest.param("GET /user/a/%40{v}/x", "", "main", id="encoded-at"),
    pytest.param("GET /user/a//{v}/x", "", "main", id="double-slash"),
    pytest.param("GET /user/a/\\{v}/x", "", "main", id="backslash"),
    pytest.param("GET /user/a/\\\\{v}/x", "", "main", id="two-backslashes"),
    pytest.param("GET /user/a/%2F%2F{v}/x", "", "main", id="encoded-slashes"),
    pytest.param("GET /user/a/%5C%5C{v}/x", "", "main", id="encoded-backslashes"),
    pytest.param("GET /user/a/http://{v}/x", "", "main", id="url-in-path"),
    pytest.param("GET /user/a/x?next=http://{v}/&url=//{v}", "", "main", id="url-in-query"),
    pytest.param("GET /user/a/x#@{v}/", "", "main", id="fragment-at"),
    pytest.param("GET /user/a/..%2F..%2F{v}/x", "", "main", id="encoded-slash-dots"),
    pytest.param("GET /user/a/../../{v}/x", "", "nowhere", id="dot-dot"),
    pytest.param("GET /user/a/%2e%2e/%2E%2E/{v}/x", "", "nowhere", id="encoded-dot-dot"),
    pytest.param("GET /user/a/.%2e/{v}", "", "nowhere", id="half-encoded-dot-dot"),
    pytest.param("GET //{v}/user/a/x", "", "nowhere", id="scheme-relative-target"),
    pytest.param("GET @{v}/user/a/x", "", "nowhere", id="at-target"),
    pytest.param("GET {v}/user/a/x", "", "nowhere", id="authority-target"),
    pytest.param("GET http://{v}/user/a/x", "", "nowhere", id="absolute-form"),
    pytest.param("GET HTTP://{v}/user/a/x", "", "nowhere", id="absolute-form-caps"),
    pytest.param("GET https://{v}/user/a/x", "", "nowhere", id="absolute-form-https"),
    pytest.param("GET http://h@{v}/user/a/x", "", "nowhere", id="absolute-form-userinfo"),
    pytest.param(
        "POST http://{v}/user/a/x", "Content-Length: 0\r\n", "nowhere", id="absolute-form-post"
    ),
    pytest.param("OPTIONS http://{v}/", "", "nowhere", id="absolute-options"),
    pytest.param("CONNECT {v}", "", "nowhere", id="connect"),
    pytest.param("CONNECT /user/a/x", "", "nowhere", id="connect-path"),
    pytest.param("GET /user/a/x", "HOST-OVERRIDE", "main", id="host-is-victim"),
    pytest.param("GET /user/a/x", "X-Forwarded-Host: {v}\r\n", "main", id="x-forwarded-host"),
    pytest.param("GET /user/a/x", "Forwarded: host={v};proto=http\r\n", "main", id="forwarded"),
    pytest.param(
        "GET /user/a/x",
        "X-Original-URL: http://{v}/\r\nX-Rewrite-URL: //{v}/\r\n",
        "main",
        id="x-original-url",
    ),
    pytest.param(
        "GET /user/a/x",
        "X-Forwarded-Port: {p}\r\nX-Forwarded-Server: {h}\r\n",
        "main",
        id="x-forwarded-port",
    ),
    pytest.param("GET /user/a//{v}/ws", WS, "main", id="websocket-double-slash"),
    pytest.param("GET /user/a/@{v}/ws", WS, "main", id="websocket-at"),
    pytest.param("GET http://{v}/user/a/ws", WS, "nowhere", id="websocket-absolute"),
    pytest.param("GET /user/a/ws", WS + "HOST-OVERRIDE", "main", id="websocket-host"),
    pytest.param("GET /user/a/ide/x", "", "ide", id="ide-control"),
    pytest.param("GET /user/a/ide/@{v}/x", "", "ide", id="ide-at"),
    pytest.param("GET /user/a/ide//{v}/x", "", "ide", id="ide-double-slash"),
    pytest.param("GET /user/a/ide/%2F%2F{v}", "", "ide", id="ide-encoded-slashes"),
    pytest.param("GET /user/a/ide@{v}/x", "", "main", id="ide-lookalike-at"),
    pytest.param("GET /user/a/ide%2F..%2Fx", "", "main", id="ide-encoded-slash-mount"),
    pytest.param("GET /user/a/ide/../x", "", "nowhere", id="ide-dot-dot-to-main"),
    pytest.param("GET /user/a/ide/%2e%2e/x", "", "nowhere", id="ide-encoded-dot-dot-to-main"),
    pytest.param("GET /user/a/x/../ide/y", "", "nowhere", id="main-dot-dot-to-ide"),
    pytest.param("GET /user/a/x/%2E%2E/ide/y", "", "nowhere", id="main-encoded-dot-dot-to-ide"),
    pytest.param("GET /user/a/ide", "", "nowhere", id="ide-bare-mount-redirects"),
    pytest.param("GET /user/a/IDE/x", "", "main", id="ide-other-case"),
    pytest.param("GET /user/a/ide/ws", WS, "ide", id="ide-websocket"),
    pytest.param("GET /user/a/ide/..%2F{v}", WS, "ide", id="ide-websocket-encoded"),
]


@pytest.mark.parametrize(("line", "extra", "where"), SHAPES)
async def test_nothing_reaches_another_host_or_another_service(
    line: str,
    extra: str,
    where: Where,
    start_recorder: StartRecorder,
    victim: Recorder,
    start_proxy: StartProxy,
) -> None:
    main, ide = await start_recorder("main"), await start_recorder("ide")
    proxy = await start_proxy(main.url, prefix="/user/a/", service=[f"/ide/={ide.url}"])
    v = f"127.0.0.1:{victim.port}"
    host = f"Host: {v}\r\n" if "HOST-OVERRIDE" in extra else "Host: proxy.example\r\n"
    extra = extra.replace("HOST-OVERRIDE", "")
    request = f"{line} HTTP/1.1\r\n{host}{extra}Connection: close\r\n\r\n"
    request = request.format(v=v, h="127.0.0.1", p=victim.port)
    async with asyncio.timeout(15):
        answer = await exchange(proxy, request.encode())
    assert answer.closed
    assert len(answer.statuses) == 1
    assert victim.connections == 0
    assert bytes(victim.raw) == b""
    reached = {name for name, r in (("main", main), ("ide", ide)) if r.requests}
    assert reached == ({where} if where != "nowhere" else set()), answer.raw[:200]
    if where == "nowhere":
        assert 300 <= answer.statuses[0] < 500
        assert main.connections == ide.connections == 0
    for recorder in (main, ide):
        for request_seen in recorder.requests:  # the path kept, never an absolute form
            assert request_seen.target.startswith("/")
            assert not request_seen.target.startswith("/ide/") or recorder is not ide


async def test_the_victim_would_be_seen(victim: Recorder, start_proxy: StartProxy) -> None:
    """The control: a proxy configured to forward to the victim does reach it."""
    proxy = await start_proxy(victim.url)
    async with asyncio.timeout(15):
        answer = await exchange(proxy, b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert answer.statuses == [200]
    assert victim.connections == 1
    assert victim.targets == ["/x"]
