"""The WebSocket tunnel: frames copied as bytes between the client and the upstream connection.

After both handshakes, each connection gets a ``Side`` protocol. A side reads its connection and
writes what it read to the other one, one write per read, without copying: it only walks the
frame headers (2 to 14 bytes, which may be split across reads; the client's frames stay masked as
the client masked them) so it knows where frames and messages end. Knowing the boundaries, rproxy
puts its own frames (a heartbeat ping to the client, a close) only between frames: masked towards
the upstream, where rproxy is the client, unmasked towards the browser. Pings and pongs cross
like data (the upstream may see a pong that answered rproxy's ping: unsolicited pongs are allowed).

Limits and timers:
- a message whose payload (the sum of its fragments' lengths) exceeds ``max_message_size`` closes
  both sides with 1009. rproxy never holds a message, so memory per tunnel is a read and the
  transports' write buffers, whatever the message size;
- backpressure: when one side's transport stops taking writes (``pause_writing``), the other side
  stops reading until it resumes, so a slow reader slows the sender;
- ``heartbeat``: the client is pinged that often, and dropped when nothing came from it for one
  more period;
- every read that carries data frames, either way, counts as use (``metrics.used``: JupyterHub's
  idle culler).

Closing: a close frame passes through, and the other side's answer passes back; then both
connections close. A side that drops without a close frame makes rproxy close the other one
itself: 1011 to the client when the upstream dropped, 1001 to the upstream when the client did.
``close`` (shutdown) sends a close to both sides. Answers are awaited for ``_CLOSE_TIMEOUT``,
then the connections are aborted. Per-side compression is ws_deflate.py's (subclasses of ``Side``);
the handshakes and the choice of mode are websocket.py's.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from rproxy.metrics import ProxyMetrics

Lost = Callable[[BaseException | None], None] | None  # told when a side's connection is lost
_CLOSE_TIMEOUT = 10.0
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
TOO_BIG = 1009
INTERNAL_ERROR = 1011


def masked(key: bytes, data: bytes) -> bytes:
    """``data`` XOR the 4-byte ``key`` repeated (RFC 6455 5.3): masks and unmasks."""
    size = len(data)
    if not size:
        return data
    stream = (key * ((size >> 2) + 1))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(
        size, "little"
    )


def frame(first: int, payload: bytes, *, mask: bool) -> bytes:
    """One frame: ``first`` is its first byte (FIN, RSV, opcode); masked with a fresh key."""
    size = len(payload)
    bit = 0x80 if mask else 0
    if size < 126:
        head = bytes((first, bit | size))
    elif size < 0x10000:
        head = bytes((first, bit | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, bit | 127)) + size.to_bytes(8, "big")
    if mask:
        key = os.urandom(4)
        return head + key + masked(key, payload)
    return head + payload


def frame_size(data: bytes | bytearray, pos: int, end: int) -> tuple[int, int] | None:
    """The head size (mask key included) and payload length of the frame at ``pos`` in
    ``data[:end]``; None while the bytes giving its length are not all there yet."""
    if end - pos < 2:
        return None
    second = data[pos + 1]
    length = second & 0x7F
    head = 6 if second & 0x80 else 2
    if length == 126:
        head += 2
        if end - pos < 4:
            return None
        length = (data[pos + 2] << 8) | data[pos + 3]
    elif length == 127:
        head += 8
        if end - pos < 10:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 10], "big")
    return head, length


def close_frame(code: int, reason: bytes = b"", *, mask: bool) -> bytes:
    return frame(0x88, code.to_bytes(2, "big") + reason[:123], mask=mask)


class _Gone(asyncio.Transport):
    """Where frames go once a side is lost or has its close frame: nowhere."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


_NOWHERE = _Gone()


class Side(asyncio.Protocol):
    """One connection of a tunnel: reads frames and writes them to the other side (``peer``)."""

    def __init__(self, tunnel: Tunnel, *, masks: bool) -> None:
        self.tunnel = tunnel
        self.masks = masks  # rproxy's own frames to this side are masked: it is the upstream
        self.transport: asyncio.Transport = _NOWHERE  # set by ``attach``
        self.out: asyncio.Transport = _NOWHERE  # where frames to this side go; none after a close
        self.on_lost: Lost = None
        self.peer: Side = self  # set by Tunnel.start
        self.limit = tunnel.max_message_size
        self.metrics = tunnel.metrics
        self.remaining = 0  # payload bytes of the current frame still to come
        self.partial = b""  # a frame head (or a whole control frame) split across reads
        self.size = 0  # payload bytes of the current message so far
        self.pending = b""  # rproxy's own frames for this side, waiting for a frame boundary
        self.close_pending = False  # ``pending`` ends with a close frame
        self.heard = False  # read something since the last heartbeat
        self.stopped = False  # reads are ignored: after a close frame, or once the tunnel ends
        self.got_close = False
        self.sent_close = False
        self.lost = False

    def attach(self, transport: asyncio.Transport, *, on_lost: Lost = None) -> None:
        """This side's connection (this protocol is already its protocol)."""
        self.transport = self.out = transport
        self.on_lost = on_lost

    def data_received(self, data: bytes) -> None:
        if self.stopped:
            return
        self.heard = True
        remaining = self.remaining
        if remaining > len(data):  # all of it is payload of the current (data) frame
            self.remaining = remaining - len(data)
            try:
                self.peer.out.write(data)
            except RuntimeError:  # uvloop: the peer's connection closed, its connection_lost is due
                self.tunnel.abort()
            self.metrics.used()
            return
        if self.partial:
            data = self.partial + data
            self.partial = b""
        try:
            self._frames(data, remaining)
        except RuntimeError:  # uvloop: the peer's connection closed, its connection_lost is due
            self.tunnel.abort()

    def _frames(self, data: bytes, pos: int) -> None:
        """Walk the frame heads in ``data`` from ``pos`` (where one starts) and pass it all on."""
        end = len(data)
        peer = self.peer
        out = peer.out
        self.remaining = 0
        start = 0  # the first byte not written yet
        active = pos > 0  # the read finished a data frame's payload
        while pos < end:
            if peer.pending:  # rproxy's own frames go in at the first frame boundary
                out.write(data[start:pos] + peer.pending)
                out = peer.flushed()
                start = pos
            size = frame_size(data, pos, end)
            if size is None:
                break
            head, length = size
            opcode = data[pos] & 0x0F
            if opcode & 0x08:  # a control frame: taken whole
                stop = pos + head + length
                if length > 125:
                    out.write(data[start:pos])
                    self.tunnel.fail(self, PROTOCOL_ERROR)
                    return
                if stop > end:
                    break
                if opcode == 0x08:
                    out.write(data[start:pos])
                    self.tunnel.closed_by(self, data[pos:stop])
                    return
                pos = stop
                continue
            active = True
            self.size = self.size + length if opcode == 0 else length
            if self.limit and self.size > self.limit:
                out.write(data[start:pos])
                self.tunnel.fail(self, TOO_BIG)
                return
            pos += head + length
        if pos > end:
            self.remaining = pos - end
            out.write(data if start == 0 else data[start:])
        else:
            if pos < end:
                self.partial = data[pos:]
            chunk = data if start == 0 and pos == end else data[start:pos]
            if peer.pending:
                out.write(chunk + peer.pending)
                peer.flushed()
            elif chunk:
                out.write(chunk)
        if active:
            self.metrics.used()

    @property
    def at_boundary(self) -> bool:
        """Whether the bytes written to this side so far end with a whole frame."""
        return self.peer.remaining == 0

    def send_own(self, data: bytes, *, close: bool = False) -> None:
        """Write rproxy's own frame to this side at the next frame boundary; after a ``close``
        nothing more goes to it."""
        if self.at_boundary and not self.pending:
            self.out.write(data)
            if close:
                self.out = _NOWHERE
        else:
            self.pending += data
            self.close_pending = self.close_pending or close

    def flushed(self) -> asyncio.Transport:
        """``pending`` was written; where frames to this side go now."""
        self.pending = b""
        if self.close_pending:
            self.out = _NOWHERE
        return self.out

    def pause_writing(self) -> None:
        self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.peer.transport.resume_reading()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = self.stopped = True
        self.transport = self.out = _NOWHERE
        self.tunnel.lost(self)
        if self.on_lost is not None:
            self.on_lost(exc)


class Tunnel:
    """Both sides of one WebSocket, and how it ends; ``close`` is shutdown's way in."""

    client: Side
    upstream: Side

    def __init__(
        self, metrics: ProxyMetrics, *, max_message_size: int, heartbeat: float | None
    ) -> None:
        self.metrics = metrics
        self.max_message_size = max_message_size
        self._heartbeat = heartbeat
        self._loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self._loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._pinged = False
        self._ended = False

    def start(self, client: Side, upstream: Side) -> None:
        """Join the two sides (each already its transport's protocol) and start the heartbeat."""
        self.client, self.upstream = client, upstream
        client.peer, upstream.peer = upstream, client
        if self._heartbeat:
            self._timer = self._loop.call_later(self._heartbeat, self._beat)

    def closed_by(self, side: Side, close: bytes) -> None:
        """``side`` sent the close frame ``close``: pass it on unless the peer had one already."""
        side.got_close = side.stopped = True
        peer = side.peer
        if not peer.sent_close:
            peer.sent_close = True
            peer.out.write(close)  # at a boundary: this side's frames before it are out
            peer.out = _NOWHERE
        self._arm()
        self._maybe_end()

    def lost(self, side: Side) -> None:
        """``side``'s connection is gone; without its close frame, close the peer for it."""
        peer = side.peer
        if peer.lost:
            self._finish()
            return
        if self._ended:
            return
        if not peer.sent_close:
            if not peer.at_boundary:  # the peer is mid-frame and the rest will never come
                self._end()
                return
            self._send_close(peer, INTERNAL_ERROR if side is self.upstream else GOING_AWAY)
        self._arm()
        self._maybe_end()

    def fail(self, side: Side, code: int) -> None:
        """``side`` broke a rule (a message too big, a bad control frame): close both with
        ``code`` and end without waiting for answers."""
        side.stopped = True
        for each in (side.peer, side):
            if not each.sent_close and each.at_boundary:
                each.sent_close = True
                each.out.write(close_frame(code, mask=each.masks))
                each.out = _NOWHERE
        self._end()

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        """Close both sides with ``code`` and ``message`` (shutdown); return once both are gone."""
        if not self._ended:
            for side in (self.client, self.upstream):
                if not side.sent_close:
                    self._send_close(side, code, message)
            self._arm()
        await asyncio.shield(self.done)
        return True

    def _send_close(self, side: Side, code: int, reason: bytes = b"") -> None:
        side.sent_close = True
        side.send_own(close_frame(code, reason, mask=side.masks), close=True)

    def _beat(self) -> None:
        client = self.client
        if self._ended or client.sent_close or client.lost:
            return
        if self._pinged and not client.heard:
            client.transport.abort()  # no pong, no frame: gone; the upstream gets 1001
            return
        client.heard, self._pinged = False, True
        client.send_own(b"\x89\x00")
        assert self._heartbeat is not None
        self._timer = self._loop.call_later(self._heartbeat, self._beat)

    def _arm(self) -> None:
        """Closing has begun: answers are awaited for ``_CLOSE_TIMEOUT`` at most."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(_CLOSE_TIMEOUT, self._abort)

    def _maybe_end(self) -> None:
        if all(s.lost or (s.got_close and s.sent_close) for s in (self.client, self.upstream)):
            self._end()

    def _end(self) -> None:
        """Close both connections (what was written still goes out), aborting after a while."""
        if self._ended:
            return
        self._ended = True
        for side in (self.client, self.upstream):
            side.stopped = True
            side.transport.close()
        self._arm()

    def abort(self) -> None:
        """Drop both connections at once (the tunnel's task is going away)."""
        self._abort()

    def _abort(self) -> None:
        self._timer = None
        self._ended = True
        for side in (self.client, self.upstream):
            side.transport.abort()

    def _finish(self) -> None:
        self._ended = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.done.done():
            self.done.set_result(None)
