"""Per-side mode: permessage-deflate with the client while the upstream speaks it uncompressed.

Browsers always offer permessage-deflate; many apps (tornado's: Jupyter, Streamlit) decline it. The
tunnel then keeps compressing towards the client, as a relay that ends the WebSocket on each side
would. This is done inside the tunnel, with the same takeover, close, heartbeat and backpressure
as tunnel mode, rather than by wrapping the upstream connection for aiohttp's relay: only the
data frames differ, so two small ``Side`` subclasses do it.

Each side here takes every frame whole (a frame is buffered until complete; a frame longer than
the message size limit closes both sides with 1009 first, so a frame in memory is bounded by that
limit, or by nothing with 0). ``Inflating`` reads the client: a compressed message (RSV1 on its
first frame) is unmasked, inflated with zlib and sent on masked with rproxy's own key, the
decompressed size counting against the limit (zlib never produces more than the limit allows, so
a small frame cannot inflate into a large allocation); an uncompressed message goes on as it is.
``Deflating`` reads the upstream and compresses each frame (RSV1 on a message's first frame;
``server_no_context_takeover`` and ``server_max_window_bits`` honoured). Control frames pass
through unchanged. ``negotiate`` answers the client's offer exactly as aiohttp's server would.
"""

from __future__ import annotations

import zlib

from aiohttp.http import ws_ext_gen, ws_ext_parse

from rproxy.ws_tunnel import PROTOCOL_ERROR, TOO_BIG, Side, Tunnel, frame, frame_size, masked

_TAIL = b"\x00\x00\xff\xff"  # what the sender strips from each message (RFC 7692 7.2.1)


def negotiate(offer: str) -> tuple[str, int, bool] | None:
    """The answer to the client's permessage-deflate ``offer``, with the window bits and
    no-context-takeover rproxy must then compress with; None when no offer is acceptable."""
    bits, no_takeover = ws_ext_parse(offer, isserver=True)
    if not bits:
        return None
    return (
        ws_ext_gen(compress=bits, isserver=True, server_notakeover=no_takeover),
        bits,
        no_takeover,
    )


class _WholeFrames(Side):
    """Takes each frame whole; data frames go through ``convert``."""

    def __init__(self, tunnel: Tunnel, *, masks: bool) -> None:
        super().__init__(tunnel, masks=masks)
        self.buffer = bytearray()

    def convert(self, first: int, payload: bytes) -> bytes | int:
        """The frame to send for a data frame (``first``: its first byte), or a close code."""
        raise NotImplementedError

    def data_received(self, data: bytes) -> None:
        if self.stopped:
            return
        self.heard = True
        buffer = self.buffer
        buffer += data
        end = len(buffer)
        pos = 0
        out: list[bytes] = []
        active = False
        while (size := frame_size(buffer, pos, end)) is not None:
            head, length = size
            first = buffer[pos]
            opcode = first & 0x0F
            stop = pos + head + length
            broken = 0
            if opcode & 0x08 and length > 125:
                broken = PROTOCOL_ERROR
            elif self.limit and length > self.limit and not opcode & 0x08:
                broken = TOO_BIG
            elif stop > end:
                break
            elif opcode == 0x08:
                self._send(out)
                self.tunnel.closed_by(self, bytes(buffer[pos:stop]))
                return
            elif opcode & 0x08:
                out.append(bytes(buffer[pos:stop]))
            else:
                payload = bytes(buffer[pos + head : stop])
                if buffer[pos + 1] & 0x80:
                    payload = masked(bytes(buffer[pos + head - 4 : pos + head]), payload)
                converted = self.convert(first, payload)
                if isinstance(converted, int):
                    broken = converted
                else:
                    out.append(converted)
                    active = True
            if broken:
                self._send(out)
                self.tunnel.fail(self, broken)
                return
            pos = stop
        del buffer[:pos]
        self._send(out)
        if active:
            self.metrics.used()

    def _send(self, frames: list[bytes]) -> None:
        if frames:
            try:
                self.peer.out.write(b"".join(frames))
            except RuntimeError:  # uvloop: the peer's connection closed, its connection_lost is due
                self.tunnel.abort()


class Inflating(_WholeFrames):
    """The client's side: its compressed messages reach the upstream uncompressed."""

    def __init__(self, tunnel: Tunnel) -> None:
        super().__init__(tunnel, masks=False)
        self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self.compressed = False

    def convert(self, first: int, payload: bytes) -> bytes | int:
        if first & 0x0F:
            self.compressed = bool(first & 0x40)
            self.size = 0
        if self.compressed:
            if first & 0x80:
                payload += _TAIL
            room = self.limit - self.size + 1 if self.limit else 0
            try:
                payload = self.inflater.decompress(payload, room)
            except zlib.error:
                return PROTOCOL_ERROR
            first &= 0xBF  # RSV1 off
        self.size += len(payload)
        if self.limit and self.size > self.limit:
            return TOO_BIG
        return frame(first, payload, mask=True)


class Deflating(_WholeFrames):
    """The upstream's side: its messages reach the client compressed."""

    def __init__(self, tunnel: Tunnel, bits: int, no_takeover: bool) -> None:
        super().__init__(tunnel, masks=True)
        self.bits = bits
        self.no_takeover = no_takeover
        self.deflater = self._deflater()

    def _deflater(self) -> zlib._Compress:
        return zlib.compressobj(zlib.Z_BEST_SPEED, zlib.DEFLATED, -self.bits)

    def convert(self, first: int, payload: bytes) -> bytes | int:
        if first & 0x0F:
            first |= 0x40  # RSV1 on the message's first frame: compressed
            self.size = 0
        self.size += len(payload)
        if self.limit and self.size > self.limit:
            return TOO_BIG
        deflater = self.deflater
        data = deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH)
        if first & 0x80:
            data = data[:-4]
            if self.no_takeover:
                self.deflater = self._deflater()
        return frame(first, data, mask=False)
