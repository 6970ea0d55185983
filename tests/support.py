"""Helpers shared by the tests that need bytes on the wire exactly as written."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from yarl import URL

StartUpstream = Callable[[web.Application], Awaitable[URL]]
StartProxy = Callable[..., Awaitable[URL]]


async def raw_exchange(url: URL, request: bytes) -> bytes:
    """Send raw bytes to ``url``'s host and port; return everything read until the peer closes."""
    assert url.host is not None
    assert url.port is not None
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection(url.host, url.port)
        try:
            writer.write(request)
            await writer.drain()
            return await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()


def status_of(raw: bytes) -> int:
    """The status code of a raw HTTP/1.1 response."""
    return int(raw.split(b" ", 2)[1])
