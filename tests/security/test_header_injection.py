"""Header injection: nothing copied into a header can start another header line.

Proven on the raw bytes each side receives, through a real rproxy:
- request paths and queries that rproxy puts into the Location of its own redirects (the bare
  prefix, a service mount without its slash): percent-encoded CR/LF stays encoded, a raw CR or
  NUL is refused by the parser, a raw CRLF ends the request line before any handler sees it;
- upstream Location, Refresh, Link, Content-Location and Set-Cookie values, rewritten by the
  ``headers`` rewriter: encoded CR/LF stays encoded; a raw CR, NUL, obs-fold or bare LF inside an
  upstream header makes the response a 502, never a client response with an extra line;
- the hub user rproxy forwards as ``X-CDSDASHBOARDS-JH-USER`` and the ``CDSDASHBOARDS_JH_USER``
  query: a user name with CR/LF (a hub would not allow one; an authenticator standing in for the
  hub supplies it) stays inside one JSON-escaped header line and one encoded query value.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from attack_support import Exchange, Recorder, StartRecorder, exchange
from support import StartProxy

from rproxy.keys import HUB_USER

INJECTED = (b"set-cookie: pwn", b"x-injected", b"location: //evil")


def _no_injected_line(head: bytes) -> None:
    for line in head.split(b"\r\n")[1:]:
        assert not line.lower().startswith(INJECTED), line
        assert b"\n" not in line
        assert b"\r" not in line


def _request(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: proxy.example\r\nConnection: close\r\n\r\n".encode()


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("/user/a?%0d%0aSet-Cookie:%20pwn=1", id="prefix-query"),
        pytest.param("/user/a?x=%0D%0ALocation:%20//evil", id="prefix-query-caps"),
        pytest.param("/user/%61/%0d%0aSet-Cookie:%20pwn=1", id="encoded-prefix-path"),
        pytest.param("/user/%61/%0aX-Injected:%201", id="encoded-prefix-lf"),
        pytest.param("/user/%61/%E5%98%8A%E5%98%8DSet-Cookie:%20pwn", id="utf8-crlf-lookalike"),
        pytest.param("/user/a/ide?%0d%0aSet-Cookie:%20pwn=1", id="mount-query"),
        pytest.param("/user/a/ide?%0d%0a%0d%0a<script>", id="mount-query-body"),
        pytest.param("/user/a/vnc?%0d%0aX-Injected:%201", id="novnc-query"),
    ],
)
async def test_encoded_crlf_in_a_redirect_target_stays_encoded(
    target: str, start_recorder: StartRecorder, start_proxy: StartProxy
) -> None:
    main, ide = await start_recorder("main"), await start_recorder("ide")
    proxy = await start_proxy(
        main.url, prefix="/user/a/", service=[f"/ide/={ide.url}"], vnc_upstream="127.0.0.1:9"
    )
    async with asyncio.timeout(15):
        answer = await exchange(proxy, _request(target))
    assert answer.statuses == [307]  # every target, line breaks included, reaches rproxy
    _no_injected_line(answer.head)
    for location in answer.headers("Location"):
        assert b"\r" not in location
        assert b"\n" not in location
        assert location.lower().count(b"%0") in (0, target.lower().count("%0"))  # or dropped
    assert main.connections == ide.connections == 0


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("/user/a?\r\nSet-Cookie: pwn=1", id="raw-crlf"),
        pytest.param("/user/a?\nSet-Cookie: pwn=1", id="raw-lf"),
        pytest.param("/user/a?\rSet-Cookie: pwn=1", id="raw-cr"),
        pytest.param("/user/a/ide?\x00X-Injected: 1", id="raw-nul"),
    ],
)
async def test_raw_crlf_in_a_target_never_reaches_a_header(
    target: str, recorder: Recorder, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(recorder.url, prefix="/user/a/", service=[f"/ide/={recorder.url}"])
    async with asyncio.timeout(15):
        answer = await exchange(proxy, _request(target))
    # a bare CR or NUL is a 400; CRLF ends the request line there (llhttp then reads an HTTP/0.9
    # style "GET /user/a?" whose headers are the rest: 505): either way no response header has it
    assert answer.statuses in ([400], [505])
    _no_injected_line(answer.head)
    assert recorder.connections == 0


REWRITTEN = (
    b"Location: {v}\r\nContent-Location: {v}\r\nRefresh: 0; url={v}\r\nLink: <{v}>; rel=next\r\n"
)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"/a%0d%0aSet-Cookie:%20pwn=1", id="encoded-crlf"),
        pytest.param(b"/a%0D%0A%0D%0A<script>", id="encoded-crlf-body"),
        pytest.param(b"http://UP/a%0aX-Injected:%201", id="upstream-absolute-encoded-lf"),
        pytest.param(b"/a\xe5\x98\x8a\xe5\x98\x8dSet-Cookie: pwn", id="utf8-crlf-lookalike"),
        pytest.param(b"/a\xc2\x85Set-Cookie: pwn", id="utf8-nel"),
        pytest.param(b"/a\x85Set-Cookie: pwn", id="latin1-nel"),
    ],
)
async def test_rewritten_upstream_headers_keep_their_line(
    value: bytes, recorder: Recorder, start_proxy: StartProxy
) -> None:
    value = value.replace(b"UP", f"127.0.0.1:{recorder.port}".encode())
    recorder.status = b"302 Found"
    recorder.extra_headers = REWRITTEN.replace(b"{v}", value) + (
        b"Set-Cookie: s=1; Path=" + value + b"\r\n"
    )
    proxy = await start_proxy(recorder.url, prefix="/user/a/")
    async with asyncio.timeout(15):
        answer = await exchange(proxy, _request("/user/a/x"))
    assert len(answer.statuses) == 1
    _no_injected_line(answer.head)
    if answer.statuses == [302]:
        assert len(answer.headers("Location")) == 1
        assert len(answer.headers("Set-Cookie")) == 1


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"Location: /a\rSet-Cookie: pwn=1\r\n", id="bare-cr"),
        pytest.param(b"Location: /a\nSet-Cookie: pwn=1\r\n", id="bare-lf"),
        pytest.param(b"Location: /a\r\n Set-Cookie: pwn=1\r\n", id="obs-fold"),
        pytest.param(b"Location: /a\x00Set-Cookie: pwn=1\r\n", id="nul"),
        pytest.param(b"Set-Cookie: a=1; Path=/\rX-Injected: 1\r\n", id="cookie-bare-cr"),
    ],
)
async def test_a_raw_line_break_inside_an_upstream_header_is_a_502(
    header: bytes, recorder: Recorder, start_proxy: StartProxy
) -> None:
    recorder.status = b"302 Found"
    recorder.extra_headers = header
    proxy = await start_proxy(recorder.url, prefix="/user/a/")
    async with asyncio.timeout(15):
        answer = await exchange(proxy, _request("/user/a/x"))
    assert answer.statuses == [502]
    _no_injected_line(answer.head)
    assert answer.headers("Location") == []


class StandInHub:
    """An authenticator in place of the hub (which would never admit such a name): it lets
    everyone in as a user whose name and group hold line breaks."""

    async def check(self, request: web.Request) -> web.StreamResponse | None:
        request[HUB_USER] = {"kind": "user", "name": "eve\r\nX-Injected: 1", "admin": False,
                             "groups": ["g\nSet-Cookie: pwn=1"]}  # fmt: skip
        return None

    async def identity(self, request: web.Request) -> None:
        return None


HUB_ENV = {
    "JUPYTERHUB_API_TOKEN": "api-token",
    "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api",
    "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-eve",
    "JUPYTERHUB_SERVICE_PREFIX": "/user/eve/",
    "JUPYTERHUB_USER": "eve",
}


async def test_the_forwarded_hub_user_stays_in_one_header_and_one_query_value(
    recorder: Recorder, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(
        recorder.url,
        environ=HUB_ENV,
        authenticator=StandInHub(),
        forward_user_info=True,
        query_user_info=True,
        last_activity_interval=0,
    )
    request = (
        b"GET /user/eve/x?CDSDASHBOARDS_JH_USER=%0d%0aX-Injected:1 HTTP/1.1\r\nHost: h\r\n"
        b"X-CDSDASHBOARDS-JH-USER: mallory\r\nConnection: close\r\n\r\n"
    )
    async with asyncio.timeout(15):
        answer: Exchange = await exchange(proxy, request)
    assert answer.statuses == [200]
    (seen,) = recorder.requests
    assert len(seen.header("X-CDSDASHBOARDS-JH-USER")) == 1
    assert "mallory" not in bytes(recorder.raw).decode("latin-1")
    for name, _ in seen.headers:
        assert name.lower() not in ("x-injected", "set-cookie")
    assert seen.target.count("CDSDASHBOARDS_JH_USER=") == 1
    assert "%0d%0aX-Injected" not in seen.target  # the client's copy is gone
    head = bytes(recorder.raw).partition(b"\r\n\r\n")[0]
    _no_injected_line(head)
