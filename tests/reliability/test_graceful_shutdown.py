"""SIGTERM to an rproxy process that wraps a command, with 20 streamed responses in flight.

Proves the graceful shutdown under load: rproxy stops listening at once (a new connection is
refused) while every response in flight, each held mid-body by the command, still arrives
complete and byte for byte once the command goes on; then the command is stopped (its process is
gone) and rproxy exits with status 0.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
from reliability_support import halves_body, rproxy_process
from support import CHILD, alive

_IN_FLIGHT, _SIZE = 20, 256 * 1024


def _listening(port: int) -> bool:
    """Whether a socket listens on ``port`` of 127.0.0.1 (from /proc/net/tcp)."""
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return any(row[1] == f"0100007F:{port:04X}" and row[3] == "0A" for row in rows)


async def test_sigterm_under_load_finishes_in_flight_responses_and_stops_the_command(
    tmp_path: Path,
) -> None:
    gate, body = tmp_path / "go-on", halves_body(_SIZE)
    async with (
        asyncio.timeout(60),
        rproxy_process("--", *CHILD, "--port", "{port}") as rproxy,
        aiohttp.ClientSession() as http,
    ):
        child = int((await rproxy.line_with(rb"started app \(pid (\d+)\)")).group(1))
        await rproxy.line_with(rb"is ready")
        url = rproxy.url.with_path("/halves").with_query(size=_SIZE, gate=str(gate))
        responses = await asyncio.gather(*(http.get(url) for _ in range(_IN_FLIGHT)))
        try:
            for resp in responses:  # each one is mid-body
                assert resp.status == 200
                assert await resp.content.readexactly(_SIZE // 2) == body[: _SIZE // 2]
            mark = len(rproxy.lines)
            rproxy.process.send_signal(signal.SIGTERM)
            await rproxy.line_with(rb"shutting down", start=mark)
            port = rproxy.url.port
            assert port is not None
            while _listening(port):  # noqa: ASYNC110 (no event says the socket closed)
                await asyncio.sleep(0.01)
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except ConnectionRefusedError:
                pass
            else:
                writer.close()
                raise AssertionError("a new connection was accepted during shutdown")
            assert rproxy.process.returncode is None
            assert alive(child), "the command runs until the responses in flight are done"
            gate.touch()
            rests = await asyncio.gather(*(resp.read() for resp in responses))
        finally:
            for resp in responses:
                resp.release()
        assert rests == [body[_SIZE // 2 :]] * _IN_FLIGHT, "a response in flight was cut"
        assert await rproxy.process.wait() == 0
    assert not alive(child)
