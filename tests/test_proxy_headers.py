"""Header handling through a running proxy: hop-by-hop, X-Forwarded-*, Host, Set-Cookie."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict
from support import StartProxy, StartUpstream, raw_exchange
from yarl import URL


async def _headers(request: web.Request) -> web.Response:
    return web.json_response({"headers": list(request.headers.items())})


@pytest.fixture
async def header_echo(start_upstream: StartUpstream) -> URL:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _headers)
    return await start_upstream(app)


async def _seen(proxy: URL, request_head: str) -> CIMultiDict[str]:
    """Send ``request_head`` raw and return the headers the upstream received."""
    raw = await raw_exchange(proxy, request_head.replace("\n", "\r\n").encode() + b"\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return CIMultiDict(json.loads(body)["headers"])


SPOOFING_REQUEST = """GET /h HTTP/1.1
Host: public.example
Connection: close, X-Hop
X-Hop: secret
Keep-Alive: timeout=5
TE: trailers
Proxy-Authorization: Basic abc
Proxy-Connection: keep-alive
X-Forwarded-For: 6.6.6.6
X-Forwarded-Host: evil.example
X-Forwarded-Proto: https
X-Forwarded-Prefix: /evil
X-Real-IP: 6.6.6.6
Forwarded: for=6.6.6.6
Cookie: a=1; b=2
Authorization: token t
Remote-User: admin
X-Forwarded-User: admin
X-Auth-Request-Email: admin@example.org
X-WEBAUTH-USER: admin
X-App: kept
"""
IDENTITY = ("Remote-User", "X-Forwarded-User", "X-Auth-Request-Email", "X-WEBAUTH-USER")


async def test_hop_by_hop_spoofed_forwarding_and_identity_headers_are_dropped(
    header_echo: URL, start_proxy: StartProxy
) -> None:
    seen = await _seen(await start_proxy(header_echo), SPOOFING_REQUEST)
    for dropped in (
        "X-Hop",
        "Keep-Alive",
        "TE",
        "Proxy-Authorization",
        "Proxy-Connection",
        "X-Real-IP",
        "Forwarded",
        "X-Forwarded-Prefix",
        *IDENTITY,
    ):
        assert dropped not in seen, dropped
    assert seen.getall("X-Forwarded-For") == ["127.0.0.1"]
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["X-Forwarded-Host"] == "public.example"
    assert seen["Host"] == "public.example"
    assert seen["Cookie"] == "a=1; b=2"
    assert seen["Authorization"] == "token t"
    assert seen["X-App"] == "kept"


@pytest.mark.parametrize("trusted", ["1", "127.0.0.1", "127.0.0.0/8,10.0.0.0/8"])
async def test_trusted_proxies_pass_their_forwarding_headers_on(
    trusted: str, header_echo: URL, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(header_echo, trusted_proxies=trusted, prefix="/user/a/")
    seen = await _seen(proxy, SPOOFING_REQUEST.replace("/h ", "/user/a/h "))
    assert seen["X-Forwarded-For"] == "6.6.6.6, 127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "https"
    assert seen["X-Forwarded-Host"] == "evil.example"
    assert seen["X-Forwarded-Prefix"] == "/evil/user/a"
    assert [seen[name] for name in IDENTITY] == ["admin", "admin", "admin@example.org", "admin"]


async def test_prefix_headers_name_the_public_prefix(
    header_echo: URL, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(header_echo, prefix="/user/alice/")
    seen = await _seen(proxy, "GET /user/alice/x HTTP/1.1\nHost: h\nConnection: close\n")
    assert seen["X-Forwarded-Prefix"] == "/user/alice"
    assert seen["X-Forwarded-Context"] == "/user/alice"
    assert seen["X-ProxyContextPath"] == "/user/alice"


async def test_host_header_can_name_the_upstream(header_echo: URL, start_proxy: StartProxy) -> None:
    proxy = await start_proxy(header_echo, host_header="upstream")
    seen = await _seen(proxy, "GET /x HTTP/1.1\nHost: public.example\nConnection: close\n")
    assert seen["Host"] == f"127.0.0.1:{header_echo.port}"
    assert seen["X-Forwarded-Host"] == "public.example"


@pytest.fixture
async def raw_upstream() -> AsyncIterator[tuple[URL, list[bytes]]]:
    """An upstream that answers every request with one fixed, hop-by-hop laden response."""
    received: list[bytes] = []
    response = (
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Length: 2\r\n"
        b"Connection: X-Secret-Hop\r\n"
        b"X-Secret-Hop: 1\r\n"
        b"Keep-Alive: timeout=5\r\n"
        b"Proxy-Authenticate: Basic\r\n"
        b"Trailer: X-T\r\n"
        b"Upgrade: h2c\r\n"
        b"Set-Cookie: a=1; Path=/\r\n"
        b"Set-Cookie: b=2; Path=/x; HttpOnly\r\n"
        b"Set-Cookie: c=3\r\n"
        b"X-App: kept\r\n"
        b"\r\n"
        b"ok"
    )

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(response)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield URL(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"), received
    server.close()
    await server.wait_closed()


async def test_response_hop_by_hop_dropped_and_every_set_cookie_kept(
    raw_upstream: tuple[URL, list[bytes]], start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(raw_upstream[0])
    async with http.get(proxy / "x") as resp:
        assert await resp.read() == b"ok"
        headers: Any = resp.headers
    assert headers.getall("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/x; HttpOnly", "c=3"]
    assert headers["X-App"] == "kept"
    for dropped in ("X-Secret-Hop", "Keep-Alive", "Proxy-Authenticate", "Trailer", "Upgrade"):
        assert dropped not in headers, dropped


async def test_no_content_type_is_invented(start_proxy: StartProxy) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        proxy = await start_proxy(f"http://127.0.0.1:{port}")
        raw = await raw_exchange(proxy, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    finally:
        server.close()
        await server.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert body == b"hello"
    assert b"content-type" not in head.lower()
