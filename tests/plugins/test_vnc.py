"""The VNC bridge against a real TCP server that talks like a VNC server; the noVNC pages."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType
from support import Refuse, StartProxy
from yarl import URL

from rproxy.cli import parse_config
from rproxy.errors import ConfigError

BANNER = b"RFB 003.008\n"
MiB = 1 << 20


class FakeVnc:
    """A TCP server that sends the RFB banner, then does what the test asks of it."""

    def __init__(self) -> None:
        self.connections = 0
        self.received = bytearray()
        self.got = asyncio.Event()
        self.want = 0
        self.send_after_banner = b""
        self.blocked = asyncio.Event()  # its writes stopped draining: backpressure reached it
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(BANNER)
        await writer.drain()
        for start in range(0, len(self.send_after_banner), 256 * 1024):
            writer.write(self.send_after_banner[start : start + 256 * 1024])
            if writer.transport.get_write_buffer_size() > 0:
                self.blocked.set()
            await writer.drain()
        while len(self.received) < self.want:
            data = await reader.read(65536)
            if not data:
                break
            self.received += data
        self.got.set()
        writer.close()


@pytest.fixture
async def vnc() -> AsyncIterator[FakeVnc]:
    server = FakeVnc()
    yield server
    if server.server is not None:
        server.server.close()


async def _proxy(start_proxy: StartProxy, vnc: FakeVnc, **options: object) -> URL:
    port = await vnc.start()
    url = await start_proxy("http://127.0.0.1:1", prefix="/user/ann/",
                            vnc_upstream=f"127.0.0.1:{port}", **options)  # fmt: skip
    return url / "user/ann"


async def test_the_banner_and_big_messages_cross_unchanged(
    vnc: FakeVnc, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    payload = bytes(range(256)) * (8 * MiB // 256)
    vnc.want = len(BANNER) + len(payload)
    url = await _proxy(start_proxy, vnc)
    async with http.ws_connect(url / "websockify", protocols=("binary",)) as ws:
        assert ws.protocol == "binary"
        first = await ws.receive()
        assert (first.type, first.data) == (WSMsgType.BINARY, BANNER)
        await ws.send_bytes(BANNER)
        await ws.send_bytes(payload)  # one 8 MiB message
        await asyncio.wait_for(vnc.got.wait(), timeout=30)
    assert bytes(vnc.received[: len(BANNER)]) == BANNER
    assert hashlib.sha256(vnc.received[len(BANNER) :]).digest() == hashlib.sha256(payload).digest()


async def test_a_slow_browser_slows_the_vnc_server_and_loses_nothing(
    vnc: FakeVnc, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    vnc.send_after_banner = bytes(range(251)) * (32 * MiB // 251)
    url = await _proxy(start_proxy, vnc)
    async with http.ws_connect(url / "websockify") as ws:
        # The browser reads nothing until the VNC server's writes stop draining.
        await asyncio.wait_for(vnc.blocked.wait(), timeout=30)
        received = bytearray()
        while len(received) < len(BANNER) + len(vnc.send_after_banner):
            msg = await asyncio.wait_for(ws.receive(), timeout=30)
            assert msg.type is WSMsgType.BINARY
            received += msg.data
    assert bytes(received) == BANNER + vnc.send_after_banner


async def test_the_vnc_server_closing_closes_the_websocket(
    vnc: FakeVnc, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    url = await _proxy(start_proxy, vnc)
    async with http.ws_connect(url / "websockify") as ws:
        assert (await ws.receive()).data == BANNER  # then the server closes (want = 0)
        end = await asyncio.wait_for(ws.receive(), timeout=10)
    assert end.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)


async def test_text_frames_are_refused(
    vnc: FakeVnc, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    vnc.want = 100  # keeps the connection open
    url = await _proxy(start_proxy, vnc)
    async with http.ws_connect(url / "websockify") as ws:
        await ws.receive()
        await ws.send_str("UkZC")  # base64, as very old noVNC sent it
        end = await asyncio.wait_for(ws.receive(), timeout=10)
    assert (end.type, end.data) == (WSMsgType.CLOSE, 1003)


async def test_an_unauthenticated_upgrade_never_reaches_the_vnc_server(
    vnc: FakeVnc, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    url = await _proxy(start_proxy, vnc, authenticator=Refuse())
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(url / "websockify")
    assert refused.value.status == 403
    assert vnc.connections == 0


async def test_an_unreachable_vnc_server_is_a_502(
    start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy("http://127.0.0.1:1", vnc_upstream="127.0.0.1:1")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(url / "websockify")
    assert refused.value.status == 502


async def test_the_novnc_client_is_served_under_the_prefix(
    vnc: FakeVnc, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    url = await _proxy(start_proxy, vnc)
    async with http.get(url / "vnc", allow_redirects=False) as response:
        assert (response.status, response.headers["Location"]) == (307, "/user/ann/vnc/")
    async with http.get(url / "vnc/", allow_redirects=False) as response:
        target = URL(response.headers["Location"])
    assert target.path == "vnc.html"
    assert target.query["path"] == "user/ann/websockify"  # noVNC puts a "/" in front
    async with http.get(url / "vnc" / "vnc.html") as response:
        assert response.status == 200
        assert "noVNC" in await response.text()
    async with http.get(url / "vnc" / "core" / "rfb.js") as response:
        assert response.status == 200
    async with http.get(url / "vnc" / "missing.js") as response:
        assert response.status == 404


async def test_without_novnc_the_page_says_how_to_install_it(
    tmp_path: Path, vnc: FakeVnc, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    url = await _proxy(start_proxy, vnc, novnc_dir=str(tmp_path))
    async with http.get(url / "vnc/") as response:
        assert response.status == 503
        assert "apt-get install novnc" in await response.text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--desktop", "--desktop-geometry", "big"], "WIDTHxHEIGHT", id="geometry"),
        pytest.param(["--desktop", "--desktop-depth", "8"], "16, 24 or 32", id="depth"),
        pytest.param(["--desktop", "--upstream", "http://127.0.0.1:9"], "takes no", id="upstream"),
        pytest.param(["--upstream", "http://x:1", "--vnc-upstream", "x"], "host:port", id="target"),
        pytest.param(
            ["--upstream", "http://x:1", "--vnc-upstream", "h:1", "--vnc-path", "../x"],
            "--vnc-path",
            id="path",
        ),
    ],
)
def test_bad_vnc_settings_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(argv, {})


def test_desktop_mode_takes_the_command_as_its_app() -> None:
    config = parse_config(["--desktop", "--", "xclock", "-digital"], {})
    assert config.desktop is not None
    assert config.desktop.app == ("xclock", "-digital")
    assert (config.child, config.upstream) == (None, None)
