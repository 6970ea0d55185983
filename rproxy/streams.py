"""Body streaming: request bodies to the upstream and response bodies to the client, chunk by chunk.

Chunks are passed on as they arrive and each write waits for the peer to drain, so memory per
request stays bounded by aiohttp's buffers whatever the body size, and server-sent events reach the
client one by one. Content decoding and body rewriters join this pipeline with the rewriters issue;
until then bodies pass byte for byte, still compressed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import StreamReader, web


async def request_body(request: web.BaseRequest) -> AsyncIterator[bytes]:
    """The client's request body as it arrives, for the upstream client to send on."""
    async for chunk in request.content.iter_any():
        yield chunk


async def relay_body(source: StreamReader, response: web.StreamResponse) -> int:
    """Copy ``source`` to the prepared ``response``; return the number of bytes written."""
    sent = 0
    async for chunk in source.iter_any():
        await response.write(chunk)
        sent += len(chunk)
    return sent
