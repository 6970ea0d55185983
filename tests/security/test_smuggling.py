"""Request smuggling: a request whose framing two HTTP parsers could read differently never crosses.

Every case is written raw to a real rproxy whose upstream is a raw-socket ``Recorder`` that keeps
every byte it receives. Each ambiguous request (conflicting or repeated Content-Length and
Transfer-Encoding, obs-fold, bare CR or LF, odd Transfer-Encoding lists, whitespace before the
colon, malformed chunk sizes and chunk line ends, NUL, bad header names) carries a pipelined
``GET /smuggled`` behind it. Proven for each: one 400, the connection closed, and the upstream
received NOTHING (not one byte, not one connection). Requests that are odd but unambiguous
(``ChUnKeD``, a tab before the value, chunk extensions, trailers, HTTP/1.0 with chunked) are
re-framed by rproxy: the upstream gets exactly one well-formed request, with a Content-Length or
rproxy's own chunking (never both), the body the client meant, no trailer, no smuggled request.
Upgrade requests never turn the connection into a tunnel: h2c is never offered upstream, and after
an upstream refuses a WebSocket, the client's next bytes are parsed as HTTP again by rproxy.
"""

from __future__ import annotations

import asyncio

import pytest
from attack_support import Recorder, exchange
from support import StartProxy

FOLLOW_UP = b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"


def _post(headers: bytes, body: bytes, follow_up: bytes = FOLLOW_UP) -> bytes:
    return b"POST /p HTTP/1.1\r\nHost: h\r\n" + headers + b"\r\n" + body + follow_up


def _last(headers: bytes, body: bytes) -> bytes:
    """A request that asks the proxy to close the connection after it."""
    return _post(headers + b"Connection: close\r\n", body, b"")


CHUNKED = b"Transfer-Encoding: chunked\r\n"
REFUSED = [
    pytest.param(_post(b"Content-Length: 6\r\n" + CHUNKED, b"0\r\n\r\nX"), id="cl-then-te"),
    pytest.param(_post(CHUNKED + b"Content-Length: 6\r\n", b"0\r\n\r\nX"), id="te-then-cl"),
    pytest.param(_post(b"Content-Length: 3\r\nContent-Length: 40\r\n", b"abc"), id="two-cl"),
    pytest.param(_post(b"Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"), id="two-equal-cl"),
    pytest.param(_post(b"Content-Length: 3, 3\r\n", b"abc"), id="cl-list"),
    pytest.param(_post(b"Content-Length: +3\r\n", b"abc"), id="cl-plus"),
    pytest.param(_post(b"Content-Length: 0x3\r\n", b"abc"), id="cl-hex"),
    pytest.param(_post(b"Content-Length: -1\r\n", b"abc"), id="cl-negative"),
    pytest.param(_post(b"Content-Length: 1 2\r\n", b"abc"), id="cl-inner-space"),
    pytest.param(_post(b"Content-Length: 99999999999999999999\r\n", b"abc"), id="cl-overflow"),
    pytest.param(_post(b"Content-Length : 3\r\n", b"abc"), id="cl-space-before-colon"),
    pytest.param(_post(b"X-A: a\r\n b\r\n", b""), id="obs-fold"),
    pytest.param(_post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"), id="obs-fold-te"),
    pytest.param(
        _post(b"Content-Length: 0\r\n\tTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
        id="obs-fold-tab-te",
    ),
    pytest.param(_post(b"X-A: a\rb\r\n", b""), id="bare-cr-in-value"),
    pytest.param(_post(b"X-A: a\rTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), id="bare-cr-te"),
    pytest.param(
        b"POST /p HTTP/1.1\r\nHost: h\nContent-Length: 3\r\n\r\nabc" + FOLLOW_UP,
        id="bare-lf-line-end",
    ),
    pytest.param(
        b"POST /p HTTP/1.1\nHost: h\nContent-Length: 3\n\nabc" + FOLLOW_UP, id="bare-lf-everywhere"
    ),
    pytest.param(b"POST /p HTTP/1.1\rHost: h\r\n\r\n" + FOLLOW_UP, id="bare-cr-request-line"),
    pytest.param(
        _post(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"), id="te-chunked-identity"
    ),
    pytest.param(_post(b"Transfer-Encoding: identity\r\n", b"0\r\n\r\n"), id="te-identity"),
    pytest.param(_post(b"Transfer-Encoding: gzip\r\n", b"0\r\n\r\n"), id="te-gzip-only"),
    pytest.param(
        _post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"), id="te-chunked-twice"
    ),
    pytest.param(
        _post(CHUNKED + b"Transfer-Encoding: identity\r\n", b"0\r\n\r\n"), id="te-two-headers"
    ),
    pytest.param(_post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), id="te-xchunked"),
    pytest.param(_post(b"Transfer-Encoding: chunked\x00\r\n", b"0\r\n\r\n"), id="te-nul"),
    pytest.param(
        _post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"), id="te-space-before-colon"
    ),
    pytest.param(
        _post(b"Transfer-Encoding\t: chunked\r\n", b"0\r\n\r\n"), id="te-tab-before-colon"
    ),
    pytest.param(_post(b"Transfer-Encoding:\x0bchunked\r\n", b"0\r\n\r\n"), id="te-vertical-tab"),
    pytest.param(_post(b" Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"), id="te-leading-space"),
    pytest.param(_post(CHUNKED, b"0x3\r\nabc\r\n0\r\n\r\n"), id="chunk-size-0x"),
    pytest.param(_post(CHUNKED, b"-3\r\nabc\r\n0\r\n\r\n"), id="chunk-size-negative"),
    pytest.param(_post(CHUNKED, b"+3\r\nabc\r\n0\r\n\r\n"), id="chunk-size-plus"),
    pytest.param(
        _post(CHUNKED, b"10000000000000003\r\nabc\r\n0\r\n\r\n"), id="chunk-size-overflow"
    ),
    pytest.param(_post(CHUNKED, b"3 \r\nabc\r\n0\r\n\r\n"), id="chunk-size-trailing-space"),
    pytest.param(_post(CHUNKED, b" 3\r\nabc\r\n0\r\n\r\n"), id="chunk-size-leading-space"),
    pytest.param(_post(CHUNKED, b"\r\nabc\r\n0\r\n\r\n"), id="chunk-size-empty"),
    pytest.param(_post(CHUNKED, b"3\nabc\n0\n\n"), id="chunk-lf-only"),
    pytest.param(_post(CHUNKED, b"3;x\nabc\r\n0\r\n\r\n"), id="chunk-ext-bare-lf"),
    pytest.param(_post(CHUNKED, b"3\r\nabcdef\r\n0\r\n\r\n"), id="chunk-longer-than-size"),
    pytest.param(_post(CHUNKED, b"3\r\nabc0\r\n\r\n"), id="chunk-missing-crlf"),
    pytest.param(_post(CHUNKED, b"3\rabc\r\n0\r\n\r\n"), id="chunk-size-bare-cr"),
    pytest.param(_post(b"X-A: a\x00b\r\n", b""), id="nul-in-value"),
    pytest.param(_post(b"X A: b\r\n", b""), id="space-in-name"),
    pytest.param(_post(b"X-A\r\n", b""), id="no-colon"),
    pytest.param(_post(b"X-\x7f: b\r\n", b""), id="del-in-name"),
    pytest.param(b"POST /p HTTP/1.1\r\n Host: h\r\n\r\n" + FOLLOW_UP, id="space-after-start"),
    pytest.param(b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n" + FOLLOW_UP, id="space-in-target"),
    pytest.param(b"GET / HTTP/1.2\r\nHost: h\r\n\r\n" + FOLLOW_UP, id="http-1.2"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: h\r\nHost: other\r\n\r\n" + FOLLOW_UP, id="two-hosts"),
    pytest.param(
        b"POST /p HTTP/1.0\r\nHost: h\r\n" + CHUNKED + b"Content-Length: 3\r\n\r\n"
        b"0\r\n\r\n" + FOLLOW_UP,
        id="http10-te-and-cl",
    ),
    pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + FOLLOW_UP, id="h2-preface"),
]


@pytest.mark.parametrize("payload", REFUSED)
async def test_ambiguous_framing_is_refused_and_nothing_is_forwarded(
    payload: bytes, recorder: Recorder, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(recorder.url)
    async with asyncio.timeout(15):
        answer = await exchange(proxy, payload)
    assert answer.statuses == [400], answer.raw[:300]
    assert answer.closed, "the connection must be closed after a framing error"
    assert bytes(recorder.raw) == b""
    assert recorder.connections == 0


def _unambiguous(recorder: Recorder, body: bytes) -> None:
    """The upstream got one well-formed request with exactly ``body`` and one framing."""
    assert recorder.errors == []
    assert recorder.targets == ["/p"]
    (request,) = recorder.requests
    assert request.body == body
    lengths, codings = request.header("Content-Length"), request.header("Transfer-Encoding")
    assert not (lengths and codings)
    assert codings in ([], ["chunked"])
    assert lengths == [] or (
        len(lengths) == 1 and lengths[0].isdigit() and int(lengths[0]) == len(body)
    )
    assert b"X-Evil" not in recorder.raw  # a trailer never becomes a header upstream
    assert b"smuggled" not in recorder.raw


@pytest.mark.parametrize(
    ("payload", "body"),
    [
        pytest.param(
            _last(b"Transfer-Encoding: ChUnKeD\r\n", b"3\r\nabc\r\n0\r\n\r\n"),
            b"abc",
            id="te-odd-casing",
        ),
        pytest.param(
            _last(b"Transfer-Encoding:\tchunked \r\n", b"3\r\nabc\r\n0\r\n\r\n"),
            b"abc",
            id="te-tab-and-trailing-space",
        ),
        pytest.param(
            _last(CHUNKED, b'3;name="v"\r\nabc\r\n0\r\n\r\n'), b"abc", id="chunk-extension"
        ),
        pytest.param(_last(CHUNKED, b"3\r\nabc\r\n0\r\nX-Evil: 1\r\n\r\n"), b"abc", id="trailer"),
        pytest.param(_last(CHUNKED, b"0003\r\nabc\r\n0\r\n\r\n"), b"abc", id="chunk-size-zeros"),
        pytest.param(_last(b"Content-Length: 003\r\n", b"abc"), b"abc", id="cl-leading-zeros"),
    ],
)
async def test_odd_but_unambiguous_framing_is_reframed_and_nothing_is_smuggled(
    payload: bytes, body: bytes, recorder: Recorder, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(recorder.url)
    async with asyncio.timeout(15):
        answer = await exchange(proxy, payload)
    assert (answer.statuses, answer.closed) == ([200], True)
    _unambiguous(recorder, body)


async def test_http10_with_chunked_is_reframed_then_the_connection_closes(
    recorder: Recorder, start_proxy: StartProxy
) -> None:
    # RFC 9112 6.1: framing of an HTTP/1.0 message with Transfer-Encoding is faulty; the
    # connection must close after it, so the pipelined request behind it is not served.
    payload = b"POST /p HTTP/1.0\r\nHost: h\r\n" + CHUNKED + b"\r\n3\r\nabc\r\n0\r\n\r\n"
    proxy = await start_proxy(recorder.url)
    async with asyncio.timeout(15):
        alone = await exchange(proxy, payload)
        assert (alone.statuses, alone.closed) == ([200], True)
        _unambiguous(recorder, b"abc")
        piped = await exchange(proxy, payload + FOLLOW_UP)
    assert piped.closed
    assert b"smuggled" not in recorder.raw


async def test_a_well_formed_pipeline_reaches_the_upstream_in_order(
    recorder: Recorder, start_proxy: StartProxy
) -> None:
    """The control: the recorder does see what crosses, so the zero above means something."""
    proxy = await start_proxy(recorder.url)
    payload = (
        _post(b"Content-Length: 3\r\n", b"abc")
        + b"POST /q HTTP/1.1\r\nHost: h\r\n"
        + CHUNKED
        + b"\r\n2\r\nde\r\n0\r\n\r\n"
        + b"GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    async with asyncio.timeout(15):
        answer = await exchange(proxy, payload)
    assert answer.statuses == [200, 200, 200, 200]
    assert recorder.targets == ["/p", "/smuggled", "/q", "/last"]
    assert [r.body for r in recorder.requests] == [b"abc", b"", b"de", b""]
    assert recorder.errors == []


H2C = (
    b"GET /p HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
)


async def test_h2c_upgrade_is_never_offered_upstream(
    recorder: Recorder, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(recorder.url)
    async with asyncio.timeout(15):
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(H2C + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.readuntil(b"got GET /p")  # the whole body: the upstream has answered
        writer.close()
    assert head.startswith(b"HTTP/1.1 200 ")  # served as plain HTTP/1.1, never switched
    assert recorder.targets == ["/p"]
    raw = bytes(recorder.raw).lower()
    assert b"upgrade" not in raw
    assert b"http2-settings" not in raw
    assert b"pri *" not in raw


async def test_a_refused_websocket_never_becomes_a_tunnel(
    recorder: Recorder, start_proxy: StartProxy
) -> None:
    """The upstream answers the handshake with 200, not 101 (websocket smuggling): the client's
    next request is routed by rproxy again, so one outside the prefix never reaches the upstream."""
    proxy = await start_proxy(recorder.url, prefix="/user/a/")
    handshake = (
        b"GET /user/a/ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    outside = b"GET /internal HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    async with asyncio.timeout(15):
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(handshake)
        head = await reader.readuntil(b"\r\n\r\n")
        assert not head.startswith(b"HTTP/1.1 101")
        writer.write(outside)
        rest = await reader.read()
        writer.close()
    assert b"HTTP/1.1 404" in rest
    assert recorder.targets == ["/ws"]
    assert b"/internal" not in recorder.raw
