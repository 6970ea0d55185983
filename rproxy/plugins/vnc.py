"""VNC in the browser: a WebSocket <-> TCP (or Unix socket) bridge, and the noVNC client.

``{prefix}websockify`` (``--vnc-path``) accepts a WebSocket (binary frames; the legacy ``binary``
subprotocol is accepted) and connects it to the VNC server given by ``--vnc-upstream``
(``host:port``, or the absolute path of a Unix socket). Bytes cross unchanged both ways, with
TCP_NODELAY, and backpressure both ways: a slow browser slows the VNC server's reads and a slow VNC
server slows the browser's sends; memory per bridge stays bounded by one read each way. When
either side ends, the other is closed. The bridge and every message across it are use of the
desktop (``metrics.used``, JupyterHub's idle culler); noVNC's files are not. The route is behind
the same authentication middleware as everything else, so an unauthenticated upgrade gets 403
before any connection to the VNC server.

``{prefix}vnc/`` serves the noVNC client from ``--novnc-dir`` (Debian's package puts it in
/usr/share/novnc); its bare URL redirects to ``vnc.html`` with the bridge's path for whatever the
prefix is. noVNC is a dependency, not part of rproxy: without it the page says how to install it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import WSCloseCode, WSMsgType, web

from rproxy.errors import plain_response
from rproxy.metrics import ProxyMetrics
from rproxy.websocket import OpenSocket

logger = logging.getLogger(__name__)

_READ_SIZE = 64 * 1024
_CONNECT_TIMEOUT = 10.0


class VncTarget:
    """Where the VNC server listens: ``host:port`` or an absolute Unix socket path."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.socket_path: str | None = None
        self.host, self.port = "", 0
        if text.startswith(("/", "unix:")):
            self.socket_path = text.removeprefix("unix:")
            return
        host, _, port = text.rpartition(":")
        self.host, self.port = host.strip("[]") or "127.0.0.1", int(port)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with asyncio.timeout(_CONNECT_TIMEOUT):
            if self.socket_path is not None:
                return await asyncio.open_unix_connection(self.socket_path)
            reader, writer = await asyncio.open_connection(self.host, self.port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer


class VncRoutes:
    """rproxy's own VNC paths under the prefix: the bridge, and the noVNC client."""

    def __init__(self, target: VncTarget, bridge_path: str, novnc_dir: Path) -> None:
        self.target = target
        self.bridge_path = "/" + bridge_path.strip("/")
        self.novnc_dir = novnc_dir

    async def answer(
        self,
        request: web.Request,
        path: str,
        public_prefix: str,
        open_sockets: set[OpenSocket],
        heartbeat: float | None,
        metrics: ProxyMetrics,
    ) -> web.StreamResponse | None:
        """The answer for ``path`` (after the prefix) if it is one of ours, else None."""
        if path == self.bridge_path:
            return await bridge(request, self.target, open_sockets, metrics, heartbeat=heartbeat)
        if path == "/vnc":
            return plain_response(307, Location=f"{public_prefix}/vnc/")
        if path.startswith("/vnc/"):
            bridge_path = public_prefix + self.bridge_path
            return novnc_page(path.removeprefix("/vnc/"), self.novnc_dir, bridge_path)
        return None


async def bridge(
    request: web.Request,
    target: VncTarget,
    open_sockets: set[OpenSocket],
    metrics: ProxyMetrics,
    *,
    heartbeat: float | None = None,
) -> web.StreamResponse:
    """Relay the WebSocket ``request`` to the VNC server at ``target`` until either side ends."""
    # No permessage-deflate: VNC encodings are compressed already, deflating again costs CPU.
    response = web.WebSocketResponse(
        protocols=("binary",), heartbeat=heartbeat, max_msg_size=0, compress=False
    )
    if not response.can_prepare(request).ok:
        return plain_response(400, "This path takes WebSocket connections for the VNC viewer.")
    try:
        reader, writer = await target.connect()
    except (OSError, TimeoutError) as exc:
        logger.warning("VNC server at %s not reachable: %s", target.text, exc)
        return plain_response(502, "The VNC server is not reachable.")
    try:
        await response.prepare(request)
        open_sockets.add(response)
        metrics.used()
        pumps = {
            asyncio.create_task(_browser_to_vnc(response, writer, metrics)),
            asyncio.create_task(_vnc_to_browser(reader, response, metrics)),
        }
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.wait(pumps)
    finally:
        open_sockets.discard(response)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        await response.close()
    return response


async def _browser_to_vnc(
    ws: web.WebSocketResponse[Any], writer: asyncio.StreamWriter, metrics: ProxyMetrics
) -> None:
    async for msg in ws:
        if msg.type is WSMsgType.BINARY:
            writer.write(msg.data)
            metrics.used()
        elif msg.type is WSMsgType.TEXT:  # old noVNC sent base64 text; binary is all we speak
            await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"binary frames only")
            return
        await writer.drain()


async def _vnc_to_browser(
    reader: asyncio.StreamReader, ws: web.WebSocketResponse[Any], metrics: ProxyMetrics
) -> None:
    while data := await reader.read(_READ_SIZE):
        metrics.used()
        await ws.send_bytes(data)


def novnc_page(rest: str, novnc_dir: Path, bridge_path: str) -> web.StreamResponse:
    """``rest`` (the path after ``{prefix}vnc/``) of the noVNC client, or the redirect to it."""
    if not (novnc_dir / "vnc.html").is_file():
        return plain_response(
            503,
            f"The noVNC client is not installed in {novnc_dir}: install Debian's novnc package "
            "(apt-get install novnc) or give its folder with --novnc-dir.",
        )
    if rest == "":
        query = urlencode({"path": bridge_path.lstrip("/"), "autoconnect": "true",
                           "resize": "remote", "reconnect": "true"})  # fmt: skip
        return plain_response(307, Location=f"vnc.html?{query}")
    root = novnc_dir.resolve()
    path = (root / rest).resolve()
    if root not in path.parents or not path.is_file():
        return plain_response(404, "Not part of the noVNC client.")
    return web.FileResponse(path)
