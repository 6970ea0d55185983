"""Body streaming: request bodies to the upstream and response bodies to the client, chunk by chunk.

Chunks are passed on as they arrive and each write waits for the peer to drain, so memory per
request stays bounded by aiohttp's buffers whatever the body size, and server-sent events reach the
client one by one. The status line and headers leave together with the first body bytes, in one
send when the whole body is already here (the common small response), and at once when no body
byte is waiting, so a client of a slow stream still sees the headers straight away.
Content decoding and body rewriters join this pipeline with the rewriters issue; until then bodies
pass byte for byte, still compressed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import StreamReader, hdrs, web


class RelayedResponse(web.StreamResponse):
    """A StreamResponse that sends headers with the first body bytes and invents no headers.

    aiohttp would add ``Content-Type: application/octet-stream`` to a response that has none;
    for a proxy that changes what the browser does (a download instead of a sniffed page), so
    a Content-Type the upstream did not send is taken out again.
    """

    _send_headers_immediately = False

    async def _prepare_headers(self) -> None:
        invented = hdrs.CONTENT_TYPE not in self.headers
        await super()._prepare_headers()
        if invented:
            self.headers.popall(hdrs.CONTENT_TYPE, None)


async def request_body(request: web.BaseRequest) -> AsyncIterator[bytes]:
    """The client's request body as it arrives, for the upstream client to send on."""
    async for chunk in request.content.iter_any():
        yield chunk


async def relay_body(source: StreamReader, response: RelayedResponse) -> None:
    """Copy ``source`` to the prepared ``response`` and finish it."""
    ready = source.read_nowait()
    if source.is_eof():
        await response.write_eof(ready)
        return
    await response.write(ready)  # also sends the headers, even when no byte is ready
    async for chunk in source.iter_any():
        await response.write(chunk)
    await response.write_eof()
