"""An upstream that dies in the middle of a response.

Proves: the client gets a truncated, aborted response, never one that looks complete, whatever
the framing and however the upstream goes (FIN or RST); rproxy keeps serving; and when the
upstream is rproxy's own child process, killed with SIGKILL mid-response, the supervisor starts
it again and the next request is answered by the new process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
from pathlib import Path

import aiohttp
import pytest
from reliability_support import halves_body
from support import CHILD, StartProxy, alive, ready, running

from rproxy.supervisor import ChildState

_CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
_LENGTH_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"


@pytest.mark.parametrize(
    ("head", "part", "reset"),
    [
        pytest.param(_CHUNKED_HEAD, b"5\r\nhello\r\n", False, id="chunked-closed"),
        pytest.param(_CHUNKED_HEAD, b"5\r\nhello\r\n", True, id="chunked-reset"),
        pytest.param(_CHUNKED_HEAD, b"10\r\nhello", False, id="chunked-closed-inside-a-chunk"),
        pytest.param(_LENGTH_HEAD, b"x" * 5000, False, id="length-closed"),
        pytest.param(_LENGTH_HEAD, b"x" * 5000, True, id="length-reset"),
    ],
)
async def test_upstream_dying_mid_body_is_never_passed_off_as_complete(
    head: bytes, part: bytes, reset: bool, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    served = 0

    async def half_response(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        await reader.readuntil(b"\r\n\r\n")
        served += 1
        if served > 1:  # the request after the broken one: a whole response
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            writer.close()
            return
        writer.write(head + part)
        await writer.drain()
        if reset:  # RST instead of FIN
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    server = await asyncio.start_server(half_response, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(20):
            proxy = await start_proxy(f"http://127.0.0.1:{port}")
            async with http.get(proxy / "x") as resp:
                assert resp.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    await resp.read()
            async with http.get(proxy / "x") as resp:
                assert resp.status == 200, "the proxy keeps serving after a broken response"
                assert await resp.read() == b"ok"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_child_killed_mid_response_is_restarted_and_serves_again(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    size, never = 1 << 20, tmp_path / "never-created"
    async with (
        asyncio.timeout(60),
        running("--", *CHILD, "--port", "{port}") as (url, launcher),
    ):
        supervisor = await ready(launcher)
        first = supervisor.pid
        assert first is not None
        halves = url.with_path("/halves").with_query(size=size, gate=str(never))
        responses = [await http.get(halves) for _ in range(3)]
        try:
            for resp in responses:
                assert resp.status == 200
                assert resp.headers["Content-Length"] == str(size)
                got = await resp.content.readexactly(size // 2)
                assert got == halves_body(size)[: size // 2]
            os.kill(first, signal.SIGKILL)
            for resp in responses:
                with pytest.raises(aiohttp.ClientPayloadError):
                    await resp.read()
        finally:
            for resp in responses:
                resp.release()
        await supervisor.wait_for(ChildState.RESTARTING)
        async with http.get(url / "api/status") as resp:  # rproxy itself answers all along
            child = (await resp.json())["child"]
        assert (resp.status, child["state"]) in (
            (503, "restarting"),
            (503, "starting"),
            (200, "ready"),  # only if this machine stalled past the backoff
        ), child
        await supervisor.wait_for(ChildState.READY)
        assert supervisor.restarts == 1
        assert not alive(first)
        async with http.get(url / "pid") as resp:
            assert resp.status == 200
            assert await resp.json() == supervisor.pid != first
        async with http.get(url.with_path("/halves").with_query(size=size, gate=__file__)) as resp:
            assert await resp.read() == halves_body(size), "the new child serves whole bodies"
