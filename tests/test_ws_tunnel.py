"""The WebSocket tunnel: which mode is taken, frames byte for byte, split reads, per-side deflate,
limits, interleaved control frames, takeover from aiohttp, and no leaks."""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from support import StartProxy, StartUpstream, make_certificates
from yarl import URL

from rproxy.metrics import ProxyMetrics
from rproxy.ws_handshake import accept_key
from rproxy.ws_tunnel import Side, Tunnel, frame

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TAIL = b"\x00\x00\xff\xff"


async def _raw_upstream(script: Script, extensions: str = "") -> tuple[URL, list[bytes]]:
    """A hand-written WebSocket server: answers 101 (with ``extensions``), then runs ``script``.
    Returns its URL and the list the request heads it got go into."""
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        heads.append(head)
        key = next(
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        extra = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept_key(key)}\r\n{extra}\r\n".encode()
        )
        try:
            await script(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    _raw_servers.append(server)
    port = server.sockets[0].getsockname()[1]
    return URL(f"http://127.0.0.1:{port}"), heads


_raw_servers: list[asyncio.Server] = []


@pytest.fixture(autouse=True)
async def _close_raw_servers() -> AsyncIterator[None]:
    yield
    while _raw_servers:
        server = _raw_servers.pop()
        server.close()


async def _client(
    url: URL, extra: str = "", first: bytes = b""
) -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw WebSocket client; ``first`` goes out in the same write as the handshake."""
    assert url.host is not None
    assert url.port is not None
    reader, writer = await asyncio.open_connection(url.host, url.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {url.raw_path} HTTP/1.1\r\nHost: {url.authority}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra}\r\n".encode()
        + first
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    return head.decode(), reader, writer


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One frame: its first byte (FIN, RSV1-3, opcode) and payload (servers never mask)."""
    first, second = await asyncio.wait_for(reader.readexactly(2), timeout=10)
    assert not second & 0x80, "a frame to the client is masked"
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return first, await asyncio.wait_for(reader.readexactly(length), timeout=10)


async def _read_client_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One frame as rproxy sends it upstream: masked; returns it unmasked."""
    first, second = await asyncio.wait_for(reader.readexactly(2), timeout=10)
    assert second & 0x80, "a frame to the upstream is not masked"
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    key = await reader.readexactly(4)
    payload = await reader.readexactly(length)
    return first, bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _compressed(*messages: bytes) -> list[bytes]:
    """Each message compressed as one permessage-deflate message (context kept)."""
    deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    return [(deflater.compress(m) + deflater.flush(zlib.Z_SYNC_FLUSH))[:-4] for m in messages]


UPSTREAM_FRAMES = (
    frame(0x01, b"frag", mask=False)  # text, FIN off
    + frame(0x89, b"ping-in-between", mask=False)
    + frame(0x80, b"mented" * 100, mask=False)  # continuation, FIN; 126-style length
    + frame(0x82, os.urandom(70_000), mask=False)  # binary; 127-style length
    + frame(0x8A, b"", mask=False)  # an unsolicited pong
)


async def test_tunnel_mode_passes_the_upstreams_frames_byte_for_byte(
    start_proxy: StartProxy,
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(UPSTREAM_FRAMES[:5])  # a frame head split across writes
        await writer.drain()
        writer.write(UPSTREAM_FRAMES[5:])
        await reader.read()

    upstream, _ = await _raw_upstream(script)
    head, reader, writer = await _client(await start_proxy(upstream) / "ws")
    assert head.startswith("HTTP/1.1 101")
    got = await asyncio.wait_for(reader.readexactly(len(UPSTREAM_FRAMES)), timeout=10)
    writer.close()
    assert got == UPSTREAM_FRAMES


async def test_the_clients_frames_reach_the_upstream_as_sent(start_proxy: StartProxy) -> None:
    received: asyncio.Queue[bytes] = asyncio.Queue()
    sent = (
        frame(0x01, b"a" * 200, mask=True)
        + frame(0x89, b"p", mask=True)
        + frame(0x80, b"b" * 70_000, mask=True)
    )

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await received.put(await reader.readexactly(len(sent)))

    upstream, _ = await _raw_upstream(script)
    # the first bytes travel with the handshake: aiohttp read them, the tunnel must pass them on
    _, _, writer = await _client(await start_proxy(upstream) / "ws", first=sent[:3])
    for index in range(3, len(sent), 997):  # then many small writes
        writer.write(sent[index : index + 997])
        await writer.drain()
    got = await asyncio.wait_for(received.get(), timeout=10)
    writer.close()
    assert got == sent


class _Sink:
    """A transport that keeps what is written to it."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, 4096])
async def test_frame_heads_split_at_every_byte_pass_through_whole(step: int) -> None:
    tunnel = Tunnel(ProxyMetrics(1.0), max_message_size=0, heartbeat=None)
    reading, writing = Side(tunnel, masks=False), Side(tunnel, masks=True)
    sink = _Sink()
    reading.attach(_Sink())  # type: ignore[arg-type]
    writing.attach(sink)  # type: ignore[arg-type]
    tunnel.start(reading, writing)
    for index in range(0, len(UPSTREAM_FRAMES), step):
        reading.data_received(UPSTREAM_FRAMES[index : index + step])
        written = bytes(sink.data)
        assert UPSTREAM_FRAMES.startswith(written)
    assert bytes(sink.data) == UPSTREAM_FRAMES
    assert (reading.remaining, reading.partial) == (0, b"")
    assert tunnel.metrics.last_activity > 0


async def test_an_extension_the_client_did_not_offer_is_a_502(start_proxy: StartProxy) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    upstream, _ = await _raw_upstream(script, extensions="permessage-deflate")
    head, _, writer = await _client(await start_proxy(upstream) / "ws")
    writer.close()
    assert head.startswith("HTTP/1.1 502")


class Echo:
    """An aiohttp upstream without permessage-deflate (like tornado's apps); it records."""

    def __init__(self) -> None:
        self.extensions: list[str] = []
        self.closes: list[int | None] = []
        self.open = 0
        self.all_closed = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_get("/ws", self.echo)

    async def echo(self, request: web.Request) -> web.WebSocketResponse:
        self.extensions.append(request.headers.get("Sec-WebSocket-Extensions", ""))
        ws = web.WebSocketResponse(compress=False, max_msg_size=0)
        await ws.prepare(request)
        self.open += 1
        self.all_closed.clear()
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await ws.send_str(msg.data)
                elif msg.type is WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
            self.closes.append(ws.close_code)
        finally:
            self.open -= 1
            if not self.open:
                self.all_closed.set()
        return ws


@pytest.fixture
async def echo(start_upstream: StartUpstream) -> tuple[Echo, URL]:
    server = Echo()
    return server, await start_upstream(server.app)


async def test_per_side_mode_compresses_towards_a_client_that_offered_deflate(
    echo: tuple[Echo, URL], start_proxy: StartProxy
) -> None:
    server, upstream = echo
    head, reader, writer = await _client(
        await start_proxy(upstream) / "ws",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    )
    assert head.startswith("HTTP/1.1 101")
    assert "Sec-WebSocket-Extensions: permessage-deflate" in head
    assert server.extensions == ["permessage-deflate; client_max_window_bits"]  # declined there
    inflater = zlib.decompressobj(-15)
    messages = [b"hello " * 50, b"hello " * 50, "héllo".encode()]
    for message, payload in zip(messages, _compressed(*messages), strict=True):
        writer.write(frame(0xC1, payload, mask=True))  # FIN, RSV1, text
        first, echoed = await _read_frame(reader)
        assert first == 0xC1, "the echo is not a compressed text frame"
        assert inflater.decompress(echoed + TAIL) == message
    assert len(echoed) < 100
    writer.write(frame(0x81, b"plain", mask=True))  # an uncompressed message is fine too
    first, echoed = await _read_frame(reader)
    assert inflater.decompress(echoed + TAIL) == b"plain"
    writer.close()


async def test_per_side_mode_with_aiohttps_client(
    echo: tuple[Echo, URL], start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    _, upstream = echo
    async with http.ws_connect(await start_proxy(upstream) / "ws", compress=15) as ws:
        assert ws.compress == 15
        for n in range(20):
            await ws.send_str(f"message {n} " * n)
            assert await ws.receive_str() == f"message {n} " * n
        big = os.urandom(300_000)
        await ws.send_bytes(big)
        assert await ws.receive_bytes() == big


async def test_per_side_mode_limits_the_decompressed_size_with_1009(
    echo: tuple[Echo, URL], start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    server, upstream = echo
    proxy = await start_proxy(upstream, websocket_max_message_size=1024)
    async with http.ws_connect(proxy / "ws", compress=15) as ws:
        await ws.send_str("x" * 1024)  # exactly the limit: fine
        assert await ws.receive_str() == "x" * 1024
        await ws.send_str("x" * 4096)  # a few bytes on the wire, too big inflated
        msg = await asyncio.wait_for(ws.receive(), timeout=10)
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1009)
    await asyncio.wait_for(server.all_closed.wait(), timeout=10)
    assert server.closes == [1009]


@pytest.mark.parametrize("deflate", [False, True], ids=["tunnel", "per-side"])
async def test_a_ping_inside_a_fragmented_message(
    deflate: bool, echo: tuple[Echo, URL], start_proxy: StartProxy
) -> None:
    _, upstream = echo
    offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
    head, reader, writer = await _client(await start_proxy(upstream) / "ws", offer)
    assert ("permessage-deflate" in head) is deflate
    message = b"fragmented " * 20
    payload = _compressed(message)[0] if deflate else message
    writer.write(
        frame(0x41 if deflate else 0x01, payload[:7], mask=True)
        + frame(0x89, b"mid", mask=True)
        + frame(0x80, payload[7:], mask=True)
    )
    first, pong = await _read_frame(reader)
    assert (first, pong) == (0x8A, b"mid")
    first, echoed = await _read_frame(reader)
    writer.close()
    assert first & 0x0F == 0x01
    if deflate:
        echoed = zlib.decompressobj(-15).decompress(echoed + TAIL)
    assert echoed == message


async def test_a_message_split_across_many_writes_is_byte_exact(
    echo: tuple[Echo, URL], start_proxy: StartProxy
) -> None:
    _, upstream = echo
    _, reader, writer = await _client(await start_proxy(upstream) / "ws")
    payload = os.urandom(200_000)
    sent = frame(0x02, payload[:100_000], mask=True) + frame(0x80, payload[100_000:], mask=True)
    for index in range(0, len(sent), 1000):
        writer.write(sent[index : index + 1000])
        await writer.drain()
    first, echoed = await _read_frame(reader)
    writer.close()
    assert (first, echoed) == (0x82, payload)


async def test_a_tunnel_outlives_the_client_timeout(
    echo: tuple[Echo, URL], start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    _, upstream = echo
    proxy = await start_proxy(upstream, client_timeout=0.2)
    async with http.ws_connect(proxy / "ws") as ws:
        await asyncio.sleep(1)  # time passing, not synchronisation: five client timeouts
        await ws.send_str("still here")
        assert await asyncio.wait_for(ws.receive_str(), timeout=10) == "still here"


async def test_a_unix_socket_upstream(
    tmp_path: Path, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    server = Echo()
    runner = web.AppRunner(server.app)
    await runner.setup()
    path = tmp_path / "app.sock"
    await web.UnixSite(runner, str(path)).start()
    try:
        async with http.ws_connect(await start_proxy(f"unix:{path}") / "ws") as ws:
            await ws.send_str("over a socket")
            assert await ws.receive_str() == "over a socket"
    finally:
        await runner.cleanup()


async def test_an_https_upstream_is_verified_and_tunnelled(
    tmp_path: Path,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_certificates(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    server = Echo()
    runner = web.AppRunner(server.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    try:
        port = runner.addresses[0][1]
        untrusting = await start_proxy(f"https://127.0.0.1:{port}")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(untrusting / "ws")
        assert refused.value.status == 502  # the certificate is not trusted: no tunnel
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.crt"))  # as an operator would
        trusting = await start_proxy(f"https://127.0.0.1:{port}")
        async with http.ws_connect(trusting / "ws") as ws:
            await ws.send_str("over TLS")
            assert await ws.receive_str() == "over TLS"
    finally:
        await runner.cleanup()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 (/proc has no event to wait on)
            await asyncio.sleep(0.01)


async def test_200_tunnels_leave_no_connection_task_or_fd_behind(
    echo: tuple[Echo, URL], start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    server, upstream = echo
    proxy = await start_proxy(upstream)
    async with http.ws_connect(proxy / "ws") as ws:  # warm up: pools, the client's connector
        await ws.send_str("warm")
        await ws.receive_str()
    await asyncio.wait_for(server.all_closed.wait(), timeout=10)
    fds, tasks = _open_fds(), len(asyncio.all_tasks())

    async def one(n: int) -> None:
        async with http.ws_connect(proxy / "ws") as ws:
            await ws.send_str(f"n{n}")
            assert await ws.receive_str() == f"n{n}"

    for batch in range(0, 200, 50):
        await asyncio.gather(*(one(n) for n in range(batch, batch + 50)))
        if batch == 100:  # a client that goes away without a close frame, and one closing
            _, _, writer = await _client(proxy / "ws")
            writer.transport.abort()
    await asyncio.wait_for(server.all_closed.wait(), timeout=10)
    assert server.open == 0
    assert len(server.closes) == 202
    await _until(lambda: _open_fds() <= fds and len(asyncio.all_tasks()) <= tasks)
    async with http.get(proxy / "api/status") as response:
        assert (await response.json())["websockets"] == 0


async def test_own_frames_wait_for_a_frame_boundary() -> None:
    tunnel = Tunnel(ProxyMetrics(1.0), max_message_size=0, heartbeat=None)
    upstream, client = Side(tunnel, masks=True), Side(tunnel, masks=False)
    to_client = _Sink()
    upstream.attach(_Sink())  # type: ignore[arg-type]
    client.attach(to_client)  # type: ignore[arg-type]
    tunnel.start(client, upstream)
    big = frame(0x82, b"x" * 1000, mask=False)
    upstream.data_received(big[:500])
    client.send_own(b"\x89\x00")  # a heartbeat ping, mid-frame: it waits
    assert bytes(to_client.data) == big[:500]
    upstream.data_received(big[500:] + frame(0x81, b"next", mask=False))
    assert bytes(to_client.data) == big + b"\x89\x00" + frame(0x81, b"next", mask=False)
    client.send_own(b"\x89\x00")  # at a boundary: at once
    assert to_client.data.endswith(b"next\x89\x00")


async def test_a_101_with_a_wrong_accept_key_never_becomes_a_tunnel(
    start_proxy: StartProxy,
) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"  # RFC 6455's example
        )
        await reader.read()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    _raw_servers.append(server)
    upstream = URL(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    head, _, writer = await _client(await start_proxy(upstream) / "ws")
    writer.close()
    assert head.startswith("HTTP/1.1 502")
